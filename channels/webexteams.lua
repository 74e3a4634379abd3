-- SPDX-License-Identifier: MIT
-- The webexteams channel, the counterpart of Rasa's WebexTeamsInput (incoming) and
-- WebexTeamsBot (replies). docs/channels/webexteams.md is the user's guide.
--
-- Incoming: Webex posts a webhook notification per event to POST /webhooks/webexteams/webhook.
-- For a new message (resource "messages", event "created") the channel fetches the message
-- (GET <api_url>/v1/messages/<data.id>: notifications carry no text), ignores the bot's own
-- messages (the bot's id comes from GET /v1/people/me, asked once per worker) and hands the text
-- to the bot; the sender is the room (as Rasa 3). With `secret`, X-Spark-Signature (the hex
-- HMAC-SHA1 of the raw body, keyed with the webhook's secret) must match, else 403.
--
-- Replies: POST <api_url>/v1/messages with the bot's token: a text per part split on blank lines,
-- images as `files`, custom JSON as the message itself.
--
-- webexteams:
--   access_token: "${WEBEX_TOKEN}"   # required: the bot's access token
--   room: "Y2lzY29..."               # optional: the room texts and images always go to
--   secret: "${WEBEX_SECRET}"        # optional: the secret the webhook was created with
--   api_url: "https://webexapis.com" # the REST API base
--   timeout: 10                      # seconds per API call
--   dedupe_ttl: 3600                 # seconds a message id is remembered
--
-- Webex does not document retries, but the same message reaches the webhook once per webhook
-- registered for it (a bot that creates its webhook at every start has several): each message id
-- is handed to the bot once (util.first_delivery).
local sb = require "switchboard"
local util = require "switchboard.channel"

local as_text, id_text, nonempty_string = util.as_text, util.id_text, util.nonempty_string

local channel = { name = "webexteams" }

channel.parameters = {
  access_token = { type = "string", required = true, secret = true,
    hint = "the bot's access token from developer.webex.com" },
  room = { type = "string" },
  secret = { type = "string", secret = true },
  api_url = { type = "base_url", default = "https://webexapis.com" },
  timeout = { type = "seconds", default = 10 },
  dedupe_ttl = { type = "seconds", default = 3600 },
}

local cfg = {}
-- The bot's person id from GET /v1/people/me, once known (per worker).
local bot_id

function channel.init(config)
  local v = util.params(config, channel, { number_as_text = true, needs = { "access_token" } })
    :values()
  cfg = {
    token = v.access_token,
    room = v.room,
    secret = v.secret,
    api = v.api_url .. "/v1/",
    timeout = v.timeout,
    dedupe_ttl = v.dedupe_ttl,
  }
  bot_id = nil
end

---------------------------------------------------------------------------------------------------
-- The REST API.

local function api_error(res)
  local body = res.json
  return type(body) == "table" and nonempty_string(body.message) and body.message or nil
end

-- GET <api_url>/v1/<path>: the decoded object, or nil and why.
local function get(path)
  local res, err = util.request({
    method = "GET",
    url = cfg.api .. path,
    headers = { Authorization = "Bearer " .. cfg.token },
    timeout = cfg.timeout,
  })
  if not res then
    return nil, err
  end
  if not util.succeeded(res) or type(res.json) ~= "table" then
    return nil, ("HTTP %d: %s"):format(res.status, api_error(res) or res.body:sub(1, 300))
  end
  return res.json
end

-- A 502 for the platform: the failure is logged at ERROR with the request id first.
local function unreachable(fmt, ...)
  local message = fmt:format(...)
  sb.log.error("webexteams: %s", message)
  sb.http_error(502, "webex_unreachable", message)
end

local function the_bot_id()
  if not bot_id then
    local me, err = get("people/me")
    if not me or not nonempty_string(me.id) then
      unreachable("cannot ask who the bot is (people/me): %s", err or "no id in the answer")
    end
    bot_id = me.id
  end
  return bot_id
end

---------------------------------------------------------------------------------------------------
-- Incoming.

function channel.verify(req)
  if not cfg.secret then
    return true
  end
  local given = req.headers["x-spark-signature"]
  if not nonempty_string(given) then
    return false, "the X-Spark-Signature header is missing"
  end
  local expected = sb.hex(sb.hmac("sha1", cfg.secret, req.body))
  if not sb.secure_compare(expected, given) then
    return false, "X-Spark-Signature does not match the body (check `secret`)"
  end
  return true
end

channel.reject = util.forbidden

-- Rasa answers "OK" for the bot's own message and "" otherwise.
local OWN = { status = 200, body = "OK", content_type = "text/plain" }
local ANSWER = { status = 200, body = "", content_type = "text/plain" }

local function string_or_nil(v)
  return nonempty_string(v) and v or nil
end

function channel.receive(req)
  local hook = req.json
  if not util.is_object(hook, req.body) or (hook.data ~= nil and not util.is_object(hook.data)) then
    sb.http_error(400, "invalid_body", "a Webex notification must be a JSON object")
  end
  local data = hook.data or {}
  local id = id_text(data.id)
  -- Rasa fetches data.id whatever the event: only a new message has one to fetch.
  if (hook.resource ~= nil and hook.resource ~= "messages")
      or (hook.event ~= nil and hook.event ~= "created") or not id then
    sb.log.debug("webexteams: a %s %s notification: ignored", as_text(hook.resource),
      as_text(hook.event))
    return {}, ANSWER
  end
  local me = the_bot_id()
  if data.personId == me then       -- the notification says so: no need to fetch the message
    return {}, OWN
  end
  local message, err = get("messages/" .. sb.urlencode(id))
  if not message then
    unreachable("cannot fetch message %s: %s", id:sub(1, 200), err)
  end
  if message.personId == me then
    return {}, OWN
  end
  local room = id_text(message.roomId)
  if not room then
    sb.log.debug("webexteams: message %s has no roomId: ignored", id:sub(1, 200))
    return {}, ANSWER
  end
  if not util.first_delivery(channel.name, id, cfg.dedupe_ttl) then
    sb.log.info("webexteams: message %s was already received: answered, not processed again",
      id:sub(1, 200))
    return {}, ANSWER
  end
  local metadata = {
    person_id = string_or_nil(message.personId),
    person_email = string_or_nil(message.personEmail),
    room_type = string_or_nil(message.roomType),
    parent_id = string_or_nil(message.parentId),
  }
  if type(message.files) == "table" and message.files[1] ~= nil then
    metadata.files = message.files
  end
  -- A message with only files has no text: the bot gets none, as in Rasa.
  return { { sender_id = room, text = type(message.text) == "string" and message.text or nil,
    message_id = id, metadata = metadata } }, ANSWER
end

---------------------------------------------------------------------------------------------------
-- Replies, as Rasa's WebexTeamsBot sends them.

-- POST <api_url>/v1/messages; a failure is logged (with the request id) and the next reply
-- still goes.
local function create_message(message, what)
  util.deliver({
    method = "POST",
    url = cfg.api .. "messages",
    headers = { Authorization = "Bearer " .. cfg.token },
    json = message,
    timeout = cfg.timeout,
  }, { channel = "webexteams", api = "the messages API", what = what,
       to = "room " .. as_text(message.roomId), detail = api_error })
end

function channel.send_text_message(recipient_id, text)
  local room = cfg.room or recipient_id
  for _, part in ipairs(util.text_parts(text)) do
    create_message({ roomId = room, text = part }, "a text")
  end
end

function channel.send_image_url(recipient_id, image)
  create_message({ roomId = cfg.room or recipient_id, files = { as_text(image) } }, "an image")
end

-- The message itself (text, markdown, files, attachments such as adaptive cards, parentId,
-- toPersonEmail, ...); roomId defaults to the recipient, as in Rasa (not to `room`).
function channel.send_custom_json(recipient_id, value)
  if not util.is_object(value) then
    error("webexteams: custom JSON must be an object (the fields of a message)", 0)
  end
  local message = util.copy(value)
  if not util.non_null(message.roomId) and not util.non_null(message.toPersonId)
      and not util.non_null(message.toPersonEmail) then
    message.roomId = recipient_id
  end
  create_message(message, "custom JSON")
end

return channel
