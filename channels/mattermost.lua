-- SPDX-License-Identifier: MIT
-- The mattermost channel, the counterpart of Rasa's MattermostInput (incoming) and MattermostBot
-- (replies). docs/channels/mattermost.md is the user's guide.
--
-- Incoming: Mattermost's outgoing webhooks (JSON or form-encoded) and the interactive message
-- actions of the buttons the bot posted, both to POST /webhooks/mattermost/webhook. A webhook
-- call is the text without its first word when it carries a trigger word (as Rasa strips the
-- @mention); a button press is the button's payload (context.action). The sender is the user;
-- replies go to the channel the call came from (metadata.channel_id).
--
-- Replies: POST <url>/posts with the bot's token: texts (one post per part split on blank
-- lines), buttons as interactive message actions that call webhook_url, images as message
-- attachments, custom JSON as the post itself.
--
-- mattermost:
--   url: "https://chat.example.com/api/v4"   # required: the REST API base, with /api/v4
--   token: "${MATTERMOST_TOKEN}"             # required: the bot account's access token
--   webhook_url: "https://bot.example.com/webhooks/mattermost/webhook"  # what buttons call
--   webhook_token: "${MATTERMOST_HOOK_TOKEN}"   # optional: the outgoing webhook's token
--   timeout: 10                              # seconds per API call
--   dedupe_ttl: 3600                         # seconds a post_id is remembered
--
-- Mattermost does not retry a webhook call, but one post reaches the webhook once per outgoing
-- webhook that matches it (a channel hook and a trigger-word hook, say): each post_id is handed
-- to the bot once (util.first_delivery). Button presses are never deduplicated (each is a press).
-- The bot's own posts also trigger a channel's outgoing webhook: they are dropped (the bot's user
-- id comes from GET <url>/users/me, asked once per worker), or the bot would answer itself.
--
-- Every call is answered 200 {} once the replies are sent: Mattermost reads the answer as JSON
-- (a `text` in it would be posted), and logs an error for one that is not JSON.
local sb = require "switchboard"
local util = require "switchboard.channel"

local json = sb.json
local as_text, id_text, nonempty_string = util.as_text, util.id_text, util.nonempty_string

local channel = { name = "mattermost" }

channel.parameters = {
  url = { type = "base_url", required = true,
    hint = "the REST API base of your server, e.g. https://chat.example.com/api/v4" },
  token = { type = "string", required = true, secret = true,
    hint = "the bot account's access token" },
  webhook_url = { type = "url" },
  webhook_token = { type = "string", secret = true },
  timeout = { type = "seconds", default = 10 },
  dedupe_ttl = { type = "seconds", default = 3600 },
}

local cfg = {}
-- The URL Mattermost last called the webhook with (per worker): what buttons call back when
-- webhook_url is not set.
local seen_webhook_url
-- The bot account's user id, from GET <url>/users/me, once known (per worker).
local bot_user_id

function channel.init(config)
  local v = util.params(config, channel, { number_as_text = true, needs = { "url", "token" } })
    :values()
  cfg = {
    url = v.url,
    token = v.token,
    webhook_url = v.webhook_url,
    webhook_token = v.webhook_token,
    timeout = v.timeout,
    dedupe_ttl = v.dedupe_ttl,
  }
  seen_webhook_url, bot_user_id = nil, nil
end

---------------------------------------------------------------------------------------------------
-- Incoming.

local function is_form(req)
  local content_type = (req.headers["content-type"] or ""):lower()
  return content_type:find("application/x-www-form-urlencoded", 1, true) ~= nil
end

-- The call's fields: the form of a form-encoded outgoing webhook, else the JSON object.
local function fields(req)
  if is_form(req) then
    return req.form
  end
  local body = req.json
  if not util.is_object(body, req.body) then
    sb.http_error(400, "invalid_body", "a Mattermost call must be a JSON object")
  end
  return body
end

local function is_action(body)
  return type(body.context) == "table"
end

-- The signature a button's context carries when webhook_token is set: a press must return it.
local function action_signature(action)
  return sb.hex(sb.hmac("sha256", cfg.webhook_token, action))
end

-- With webhook_token: a webhook call carries the token Mattermost gave the outgoing webhook, a
-- button press the signature of its action (Mattermost sends the context it was given).
function channel.verify(req)
  if not cfg.webhook_token then
    return true
  end
  local body = fields(req)
  if is_action(body) then
    local action, given = body.context.action, body.context.signature
    if action == nil or type(given) ~= "string" then
      return false, "the button press carries no signature"
    end
    if not sb.secure_compare(action_signature(as_text(action)), given) then
      return false, "the button press's signature does not match its action"
    end
    return true
  end
  if type(body.token) ~= "string" or body.token == "" then
    return false, "the outgoing webhook call carries no token"
  end
  if not sb.secure_compare(body.token, cfg.webhook_token) then
    return false, "the outgoing webhook's token does not match webhook_token"
  end
  return true
end

channel.reject = util.forbidden

local function string_or_nil(v)
  return nonempty_string(v) and v or nil
end

local function metadata_of(body)
  local metadata = {}
  for _, key in ipairs({ "channel_id", "channel_name", "team_id", "team_domain", "post_id",
      "user_name", "trigger_word" }) do
    metadata[key] = string_or_nil(body[key])
  end
  return metadata
end

-- Rasa drops the first word (the @mention or trigger word); a text of one word stays whole. A
-- call without a trigger word (a webhook on a channel) keeps its text.
local function without_trigger(text, trigger_word)
  if not nonempty_string(trigger_word) then
    return text
  end
  local rest = text:match("^[^ ]* (.*)$")
  return rest or text
end

-- Mattermost decodes the answer as JSON (Rasa's text `success` makes it log an error): an empty
-- object posts nothing and changes nothing.
local ANSWER = { status = 200, body = "{}", content_type = "application/json" }

local function api_error(res)
  return type(res.json) == "table" and type(res.json.message) == "string" and res.json.message
    or nil
end

local function authorization()
  return { Authorization = "Bearer " .. cfg.token }
end

-- The bot account's user id (GET <url>/users/me, once per worker), or nil when Mattermost cannot
-- tell (logged; the message is then handled, better than dropped).
local function the_bot_user_id()
  if bot_user_id then
    return bot_user_id
  end
  local res, err = util.request({ method = "GET", url = cfg.url .. "/users/me",
    headers = authorization(), timeout = cfg.timeout })
  if res and util.succeeded(res) and type(res.json) == "table" and nonempty_string(res.json.id) then
    bot_user_id = res.json.id
    return bot_user_id
  end
  sb.log.warn("mattermost: cannot ask who the bot is (users/me): %s",
    res and ("HTTP %d: %s"):format(res.status, api_error(res) or res.body:sub(1, 300)) or err)
  return nil
end

function channel.receive(req)
  local body = fields(req)
  seen_webhook_url = req.url:gsub("[?#].*$", "")
  local sender = id_text(body.user_id)
  if is_action(body) then
    local action = body.context.action
    if action == nil or action == json.null or not sender then
      sb.log.debug("mattermost: a button press without an action or a user: ignored")
      return {}, ANSWER
    end
    return { { sender_id = sender, text = as_text(action), metadata = metadata_of(body) } },
      ANSWER
  end
  if body.trigger_word == nil or type(body.text) ~= "string" or not sender then
    sb.log.debug("mattermost: a call that is neither an outgoing webhook nor an action: ignored")
    return {}, ANSWER
  end
  if sender == the_bot_user_id() then
    sb.log.debug("mattermost: the bot's own post: ignored")
    return {}, ANSWER
  end
  local post_id = string_or_nil(body.post_id)
  if not util.first_delivery(channel.name, post_id, cfg.dedupe_ttl) then
    sb.log.info("mattermost: post %s was already received: answered, not processed again",
      post_id:sub(1, 200))
    return {}, ANSWER
  end
  return { {
    sender_id = sender,
    text = without_trigger(body.text, body.trigger_word),
    message_id = post_id,
    metadata = metadata_of(body),
  } }, ANSWER
end

---------------------------------------------------------------------------------------------------
-- Replies.

-- The channel the message came from: replies are posted there.
local function channel_of(msg)
  local metadata = type(msg) == "table" and msg.metadata
  local id = type(metadata) == "table" and string_or_nil(metadata.channel_id)
  if not id then
    error("mattermost: no channel to post in (the message came without a channel_id)", 0)
  end
  return id
end

-- POST <url>/posts; a failure is logged (with the request id) and the next reply still goes.
local function create_post(post, what)
  util.deliver({
    method = "POST",
    url = cfg.url .. "/posts",
    headers = authorization(),
    json = post,
    timeout = cfg.timeout,
  }, { channel = "mattermost", api = "the posts API", what = what,
       to = "channel " .. tostring(post.channel_id), detail = api_error })
end

function channel.send_text_message(_, text, _, msg)
  local channel_id = channel_of(msg)
  for _, part in ipairs(util.text_parts(text)) do
    create_post({ channel_id = channel_id, message = part }, "a text")
  end
end

function channel.send_image_url(_, image, _, msg)
  create_post({ channel_id = channel_of(msg),
    props = { attachments = { { image_url = as_text(image) } } } }, "an image")
end

-- Buttons are interactive message actions (Mattermost's message buttons): a press makes
-- Mattermost POST the action's context to its integration URL, this webhook.
function channel.send_text_with_buttons(_, text, buttons, _, msg)
  local channel_id = channel_of(msg)
  local actions = json.array()
  for _, button in ipairs(type(buttons) == "table" and buttons or {}) do
    local payload = as_text(button.payload or button.title or "")
    local context = { action = payload }
    if cfg.webhook_token then
      context.signature = action_signature(payload)
    end
    actions[#actions + 1] = {
      name = as_text(button.title or button.payload or ""),
      integration = { url = cfg.webhook_url or seen_webhook_url or json.null, context = context },
    }
  end
  create_post({ channel_id = channel_id, message = as_text(text or ""),
    props = { attachments = { { actions = actions } } } }, "buttons")
end

-- The post itself, as Rasa sends it: channel_id and message default to the conversation's
-- channel and "".
function channel.send_custom_json(_, value, _, msg)
  if not util.is_object(value) then
    error("mattermost: custom JSON must be an object (the fields of a post)", 0)
  end
  local post = util.copy(value)
  if not util.non_null(post.channel_id) then
    post.channel_id = channel_of(msg)
  end
  if not util.non_null(post.message) then
    post.message = ""
  end
  create_post(post, "custom JSON")
end

return channel
