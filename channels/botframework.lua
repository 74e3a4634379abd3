-- SPDX-License-Identifier: MIT
-- The botframework channel: Microsoft Teams and the other Bot Framework channels, the
-- counterpart of Rasa's BotFrameworkInput (incoming) and BotFramework (replies).
-- docs/channels/botframework.md is the user's guide.
--
-- Incoming: the Bot Connector posts one Activity (JSON) per request, with
-- `Authorization: Bearer <JWT>`. The token is checked against the keys the OpenID metadata names
-- (RS256, issuer https://api.botframework.com, audience app_id, 5 minutes' leeway, the key's
-- endorsements naming the activity's channelId), and its serviceurl claim must be the
-- activity's serviceUrl: replies go there, with our own token. A message activity becomes one
-- message (sender: from.id); every other activity is answered "success" and dropped. The answer
-- goes out at once (async): Teams sends an activity again when the answer takes 15 s, and an
-- activity id seen before is answered and not processed again.
--
-- Replies: POST <serviceUrl>v3/conversations/<conversation id>/activities, authenticated with an
-- OAuth2 client-credentials token from login_url (kept until shortly before it expires).
--
-- botframework:
--   app_id: "..."                 # required: the bot's Microsoft App ID
--   app_password: "..."           # required: its client secret
--   openid_url: "https://login.botframework.com/v1/.well-known/openidconfiguration"
--   login_url: "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token"
--   timeout: 10                   # seconds per outbound call
--   refetch_interval: 30          # seconds between two fetches of the keys for an unknown kid
--   dedupe_ttl: 3600              # seconds an activity id is remembered (redeliveries)
local sb = require "switchboard"
local util = require "switchboard.channel"

local json = sb.json
local non_null, nonempty_string, as_text = util.non_null, util.nonempty_string, util.as_text

local channel = { name = "botframework" }

channel.parameters = {
  app_id = { type = "string", required = true, hint = "the bot's Microsoft App ID" },
  app_password = { type = "string", required = true, secret = true,
    hint = "the client secret of the bot's app registration" },
  openid_url = { type = "url",
    default = "https://login.botframework.com/v1/.well-known/openidconfiguration" },
  login_url = { type = "url",
    default = "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token" },
  timeout = { type = "seconds", default = 10 },
  refetch_interval = { type = "seconds", default = 30 },
  dedupe_ttl = { type = "seconds", default = 3600 },
}

local ISSUER = "https://api.botframework.com"
local SCOPE = "https://api.botframework.com/.default"
local LEEWAY = 300          -- Microsoft: "industry-standard clock-skew is 5 minutes"
local METADATA_TTL = 86400  -- the OpenID metadata is fetched again after a day, as Rasa does

-- The parameters, the token cache and the OpenID state, set by init (one copy per worker).
local cfg = {}
local tokens
local openid = { keys = nil, refresh_at = 0 }

function channel.init(config)
  local v = util.params(config, channel, { number_as_text = true }):values()
  cfg = v
  tokens = util.oauth_token_cache({
    token_url = v.login_url, client_id = v.app_id, client_secret = v.app_password,
    scope = SCOPE, timeout = v.timeout,
  })
  openid = { keys = nil, refresh_at = 0 }
end

-- ---- incoming: the token ---------------------------------------------------------------------

-- The keys of the OpenID metadata's jwks_uri (a util.jwks_cache), the metadata fetched once a day.
-- A failed fetch keeps the keys known so far; nil and why when there are none.
local function signing_keys()
  if openid.keys and sb.now() < openid.refresh_at then
    return openid.keys
  end
  local res, err = util.request({ url = cfg.openid_url, timeout = cfg.timeout })
  local meta = res and res.json
  local uri = type(meta) == "table" and meta.jwks_uri
  if res and res.status == 200 and nonempty_string(uri) and uri:lower():match("^https?://.") then
    if not openid.keys or openid.keys.url ~= uri then
      openid.keys = util.jwks_cache(uri, { timeout = cfg.timeout,
        refetch_interval = cfg.refetch_interval })
    end
    openid.refresh_at = sb.now() + METADATA_TTL
    return openid.keys
  end
  local why = err or ("answered HTTP %d without a jwks_uri"):format(res.status)
  if openid.keys then
    sb.log.warn("botframework: fetching the OpenID metadata %s failed (%s): the keys known " ..
      "so far are kept", cfg.openid_url, why)
    openid.refresh_at = sb.now() + cfg.refetch_interval
    return openid.keys
  end
  return nil, ("cannot fetch the OpenID metadata %s: %s"):format(cfg.openid_url, why)
end

-- Whether the key that signed the token (by the header's kid) endorses the activity's channel:
-- a key with endorsements signs only for those channels (as the Bot Framework SDKs check).
local function endorsed(keys, kid, channel_id)
  if not nonempty_string(channel_id) or not nonempty_string(kid) then
    return true
  end
  local doc = keys:keys()
  for _, key in ipairs(doc and doc.keys or {}) do
    if key.kid == kid and type(key.endorsements) == "table" and key.endorsements[1] ~= nil then
      for _, e in ipairs(key.endorsements) do
        if e == channel_id then
          return true
        end
      end
      return false
    end
  end
  return true
end

-- Refusals: the reason for the log, and Rasa's answer for each kind (401, text).
local NO_HEADER = "no Authorization header"
local NO_BEARER = "the Authorization header holds no Bearer token"
local UNAVAILABLE = "cannot check the token now: "

function channel.verify(req)
  local auth = req.headers.authorization
  if not nonempty_string(auth) then
    return false, NO_HEADER
  end
  local token = auth:match("^Bearer%s+(%S+)%s*$")
  if not token then
    return false, NO_BEARER
  end
  local keys, err = signing_keys()
  if not keys then
    return false, UNAVAILABLE .. err
  end
  local claims, header = keys:verify(token, { iss = ISSUER, aud = cfg.app_id, leeway = LEEWAY,
    algorithms = "RS256", require = "exp" })
  if not claims then
    return false, "token refused: " .. header
  end
  local activity = req.json
  if not util.is_object(activity, req.body) then
    sb.http_error(400, "invalid_body", "a Bot Framework activity must be a JSON object")
  end
  local claimed = claims.serviceurl
  if claimed == nil then
    claimed = claims.serviceUrl
  end
  if claimed ~= activity.serviceUrl then
    return false, ("token refused: its serviceurl claim (%s) is not the activity's serviceUrl " ..
      "(%s)"):format(as_text(claimed), as_text(activity.serviceUrl))
  end
  if not endorsed(keys, header.kid, activity.channelId) then
    return false, ("token refused: key %s does not endorse the channel %s"):format(
      as_text(header.kid), as_text(activity.channelId))
  end
  return true
end

local function text_answer(status, body)
  return { status = status, body = body, content_type = "text/plain; charset=utf-8" }
end

function channel.reject(_, reason)
  if reason == NO_HEADER then
    return text_answer(401, "No authorization header provided.")
  elseif reason == NO_BEARER then
    return text_answer(401, "No Bearer token provided in Authorization header.")
  elseif reason:sub(1, #UNAVAILABLE) == UNAVAILABLE then
    return text_answer(503, "Could not fetch the keys to validate the JWT token.")
  end
  return text_answer(401, "Could not validate JWT token.")
end

-- ---- incoming: the activity ------------------------------------------------------------------

-- The text Rasa takes (`text`, "" when absent); without one, the `value` a card action sends
-- (an Adaptive Card's Action.Submit data as its JSON text).
local function text_of(activity)
  local text = activity.text
  if nonempty_string(text) then
    return text
  end
  local value = activity.value
  if type(value) == "string" and value ~= "" then
    return value
  elseif type(value) == "table" then
    return json.encode(value)
  end
  if text == nil then
    return ""
  end
  return text
end

-- What the replies need (serviceUrl, conversation, the bot's account) and what the bot may want.
local function metadata_of(activity)
  local metadata = {
    serviceUrl = activity.serviceUrl,
    channelId = activity.channelId,
    conversation = activity.conversation,
    from = activity.from,
    recipient = activity.recipient,
    activity_id = activity.id,
    locale = activity.locale,
  }
  if non_null(activity.value) then
    metadata.value = activity.value
  end
  if non_null(activity.channelData) then
    metadata.channelData = activity.channelData
  end
  -- Rasa's add_attachments_to_metadata: only when there are some.
  if type(activity.attachments) == "table" and activity.attachments[1] ~= nil then
    metadata.attachments = activity.attachments
  end
  return metadata
end

function channel.receive(req)
  local activity = req.json
  if not util.is_object(activity, req.body) then
    sb.http_error(400, "invalid_body", "a Bot Framework activity must be a JSON object")
  end
  if activity.type ~= "message" then
    sb.log.info("botframework: %s activity ignored (not a message)", as_text(activity.type))
    return {}
  end
  local from, conversation = activity.from, activity.conversation
  if type(from) ~= "table" or util.id_text(from.id) == nil or type(conversation) ~= "table"
      or util.id_text(conversation.id) == nil then
    sb.log.error("botframework: a message activity without from.id or conversation.id; dropped")
    return {}
  end
  local delivery = util.id_text(activity.id)
  if delivery and not util.first_delivery(channel.name,
      util.id_text(conversation.id) .. " " .. delivery, cfg.dedupe_ttl) then
    sb.log.info("botframework: activity %s was already received: answered, not processed again",
      delivery:sub(1, 200))
    return {}
  end
  return { { sender_id = from.id, text = text_of(activity), metadata = metadata_of(activity) } }
end

-- The answer goes before the bot runs: the Bot Connector waits 15 s at most, then Teams sends
-- the activity again.
channel.async = true

function channel.ack()
  return text_answer(200, "success")
end

-- ---- replies ---------------------------------------------------------------------------------

-- encodeURIComponent, as the Bot Framework SDKs encode the conversation id in the path.
local function encode_component(s)
  return (s:gsub("[^%w%-_%.!~%*'%(%)]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- Where replies to `msg` go, and the bot's account, from what receive put in its metadata.
local function target(msg)
  local md = type(msg) == "table" and msg.metadata
  if type(md) ~= "table" or not nonempty_string(md.serviceUrl)
      or type(md.conversation) ~= "table" or util.id_text(md.conversation.id) == nil then
    error("botframework: the message carries no serviceUrl and conversation in its metadata " ..
      "(replies go to the conversation an activity came from)", 0)
  end
  local base = md.serviceUrl
  if base:sub(-1) ~= "/" then
    base = base .. "/"
  end
  return base .. "v3/conversations/" .. encode_component(util.id_text(md.conversation.id)) ..
    "/activities", md.recipient
end

local function post_once(url, activity)
  local token, err = tokens:get()
  if not token then
    return nil, "could not get a Bot Framework token: " .. err
  end
  return util.request({ method = "POST", url = url, json = activity, timeout = cfg.timeout,
    headers = { Authorization = "Bearer " .. token } })
end

-- POST one activity. A 401 means the token was refused: a new one is fetched and the activity
-- sent once more. A failure is logged (as Rasa does) and the next replies still go out.
local function send(msg, activity, recipient_id)
  local url = target(msg)
  local res, err = post_once(url, activity)
  if res and res.status == 401 then
    tokens:invalidate()
    res, err = post_once(url, activity)
  end
  if not res then
    sb.log.error("botframework: sending to %s failed: %s", as_text(recipient_id), err)
  elseif not util.succeeded(res) then
    sb.log.error("botframework: the Bot Connector refused an activity to %s: HTTP %d: %s",
      as_text(recipient_id), res.status, res.body:sub(1, 300))
  end
end

-- Rasa's prepare_message: the defaults, then the message's own keys over them.
local function prepare(recipient_id, msg, fields)
  local _, bot = target(msg)
  local activity = {
    type = "message",
    recipient = { id = recipient_id },
    from = bot,
    channelData = { notification = { alert = "true" } },
    text = "",
  }
  for k, v in pairs(fields) do
    activity[k] = v
  end
  return activity
end

function channel.send_text_message(recipient_id, text, _, msg)
  for _, part in ipairs(util.text_parts(text)) do
    send(msg, prepare(recipient_id, msg, { text = part }), recipient_id)
  end
end

local HERO = "application/vnd.microsoft.card.hero"

function channel.send_image_url(recipient_id, image, _, msg)
  send(msg, prepare(recipient_id, msg, { attachments = { {
    contentType = HERO, content = { images = { { url = as_text(image) } } } } } }), recipient_id)
end

-- A button as a CardAction: one with a `type` is the bot's own and goes as it is; Rasa's
-- {title, payload} becomes an imBack of the payload, {title, url} an openUrl.
local function card_action(button)
  if type(button) ~= "table" or non_null(button.type) then
    return button
  end
  local action = {}
  for k, v in pairs(button) do
    if k ~= "payload" and k ~= "url" then
      action[k] = v
    end
  end
  if nonempty_string(button.url) then
    action.type, action.value = "openUrl", button.url
  else
    action.type, action.value = "imBack", button.payload
  end
  return action
end

function channel.send_text_with_buttons(recipient_id, text, buttons, _, msg)
  local actions = json.array()
  for i, button in ipairs(type(buttons) == "table" and buttons or {}) do
    actions[i] = card_action(button)
  end
  local content = { buttons = actions }
  if non_null(text) then
    content.subtitle = as_text(text)
  end
  send(msg, prepare(recipient_id, msg, { attachments = { { contentType = HERO,
    content = content } } }), recipient_id)
end

-- Each element is an activity of its own: its keys over the defaults (Rasa's send_elements).
function channel.send_elements(recipient_id, elements, _, msg)
  for _, element in ipairs(type(elements) == "table" and elements or {}) do
    if util.is_object(element) then
      send(msg, prepare(recipient_id, msg, element), recipient_id)
    end
  end
end

-- Rasa's send_custom_json: the value is the activity; the defaults fill what it leaves out
-- (type, recipient.id, from, channelData.notification.alert, text).
function channel.send_custom_json(recipient_id, value, _, msg)
  if not util.is_object(value) then
    sb.log.error("botframework: custom JSON must be an object (an activity); nothing sent")
    return
  end
  local _, bot = target(msg)
  local activity = util.copy(value)
  if activity.type == nil then
    activity.type = "message"
  end
  local recipient = util.is_object(activity.recipient) and util.copy(activity.recipient) or {}
  if activity.recipient == nil or util.is_object(activity.recipient) then
    if recipient.id == nil then
      recipient.id = recipient_id
    end
    activity.recipient = recipient
  end
  if activity.from == nil then
    activity.from = bot
  end
  if activity.channelData == nil or util.is_object(activity.channelData) then
    local data = util.copy(activity.channelData or {})
    local notification = util.is_object(data.notification) and util.copy(data.notification) or {}
    if data.notification == nil or util.is_object(data.notification) then
      if notification.alert == nil then
        notification.alert = "true"
      end
      data.notification = notification
    end
    activity.channelData = data
  end
  if activity.text == nil then
    activity.text = ""
  end
  send(msg, activity, recipient_id)
end

return channel
