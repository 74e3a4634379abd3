-- SPDX-License-Identifier: MIT
-- The rocketchat channel, the counterpart of Rasa's RocketChatInput (incoming) and RocketChatBot
-- (replies). docs/channels/rocketchat.md is the user's guide.
--
-- Incoming, to POST /webhooks/rocketchat/webhook: Rocket.Chat's outgoing webhooks (the sender is
-- the room, channel_id; the text is `text`) and Omnichannel (Livechat) webhooks (the sender is
-- the Livechat room, `_id`; the text is the first of `messages`). The bot's own messages are
-- ignored, as Rasa does (by user name; here also by the user id the login reported).
--
-- Replies: POST <server_url>/api/v1/chat.postMessage as the bot user. The channel logs in once
-- (POST /api/v1/login) and sends X-Auth-Token / X-User-Id with every call; a call answered 401
-- (the session expired or was logged out) logs in again and is sent once more.
--
-- rocketchat:
--   user: "rasa-bot"                       # required: the bot user's name (or e-mail)
--   password: "${ROCKETCHAT_PASSWORD}"     # required
--   server_url: "https://chat.example.com" # required: the server's base URL
--   webhook_token: "${ROCKETCHAT_TOKEN}"   # optional: the outgoing webhook's token / the
--                                          # Livechat webhook's secret token
--   timeout: 10                            # seconds per API call
--   dedupe_ttl: 3600                       # seconds a message id is remembered
--
-- Rocket.Chat retries a webhook call that failed (outgoing webhooks with "Retry Failed Url
-- Calls", Livechat webhooks up to ten times): each message id (message_id, or the Livechat
-- message's _id) is handed to the bot once (util.first_delivery).
local sb = require "switchboard"
local util = require "switchboard.channel"

local json = sb.json
local as_text, id_text, nonempty_string = util.as_text, util.id_text, util.nonempty_string

local channel = { name = "rocketchat" }

channel.parameters = {
  user = { type = "string", required = true, hint = "the bot user's name" },
  password = { type = "string", required = true, secret = true },
  server_url = { type = "base_url", required = true,
    hint = "the server's base URL, e.g. https://chat.example.com" },
  webhook_token = { type = "string", secret = true },
  timeout = { type = "seconds", default = 10 },
  dedupe_ttl = { type = "seconds", default = 3600 },
}

local cfg = {}
-- The login session (per worker): {token =, user_id =, username =}, or nil.
local session
-- Whether a login is under way in this worker (the others wait for it).
local logging_in = false

function channel.init(config)
  local v = util.params(config, channel,
    { number_as_text = true, needs = { "user", "password", "server_url" } }):values()
  cfg = {
    user = v.user,
    password = v.password,
    api = v.server_url .. "/api/v1/",
    webhook_token = v.webhook_token,
    timeout = v.timeout,
    dedupe_ttl = v.dedupe_ttl,
  }
  session, logging_in = nil, false
end

---------------------------------------------------------------------------------------------------
-- Incoming.

local function string_or_nil(v)
  return nonempty_string(v) and v or nil
end

local function is_livechat(body)
  return body.visitor ~= nil
end

-- With webhook_token: an outgoing webhook call carries it as `token`, a Livechat webhook in the
-- X-RocketChat-Livechat-Token header.
function channel.verify(req)
  if not cfg.webhook_token then
    return true
  end
  local body = req.json
  if not util.is_object(body, req.body) then
    sb.http_error(400, "invalid_body", "a Rocket.Chat webhook call must be a JSON object")
  end
  local given, what
  if is_livechat(body) then
    given = req.headers["x-rocketchat-livechat-token"]
    what = "the X-RocketChat-Livechat-Token header"
  else
    given, what = body.token, "the outgoing webhook's token"
  end
  if not nonempty_string(given) then
    return false, what .. " is missing"
  end
  if not sb.secure_compare(given, cfg.webhook_token) then
    return false, what .. " does not match webhook_token"
  end
  return true
end

channel.reject = util.forbidden

-- Whether a message was written by the bot itself: Rasa compares the user name with `user`;
-- once logged in, the name and id the login reported count too (`user` may be an e-mail).
local function is_own(user_name, user_id)
  if user_name ~= nil and user_name == cfg.user then
    return true
  end
  if session then
    return (user_name ~= nil and user_name == session.username)
      or (user_id ~= nil and user_id == session.user_id)
  end
  return false
end

-- {sender, text, id, user_name, user_id, metadata} of a call, or nil and why it is ignored.
local function read_outgoing(body)
  local room = id_text(body.channel_id)
  if not room or type(body.text) ~= "string" then
    return nil, "an outgoing webhook call without channel_id or text"
  end
  local metadata = {
    user_id = string_or_nil(body.user_id),
    user_name = string_or_nil(body.user_name),
    channel_name = string_or_nil(body.channel_name),
    message_id = string_or_nil(body.message_id),
  }
  return { sender = room, text = body.text, id = metadata.message_id,
    user_name = metadata.user_name, user_id = metadata.user_id, metadata = metadata }
end

-- Rasa reads the first of `messages`. Only "Message" events carry a new message: the others
-- (a session that starts, closes, is taken or forwarded) repeat the room's messages.
local function read_livechat(body)
  if body.type ~= nil and body.type ~= "Message" then
    return nil, ("a Livechat %s event"):format(as_text(body.type))
  end
  local first = type(body.messages) == "table" and body.messages[1]
  local room = id_text(body._id)
  if type(first) ~= "table" or type(first.msg) ~= "string" or not room then
    return nil, "a Livechat event without a room or a message"
  end
  local visitor = type(body.visitor) == "table" and body.visitor or {}
  local metadata = {
    user_name = string_or_nil(first.username),
    message_id = string_or_nil(first._id),
    visitor = { _id = string_or_nil(visitor._id), name = string_or_nil(visitor.name),
      username = string_or_nil(visitor.username) },
  }
  return { sender = room, text = first.msg, id = metadata.message_id,
    user_name = metadata.user_name, user_id = string_or_nil(first.agentId),
    metadata = metadata }
end

-- Rasa answers every call with an empty 200.
local ANSWER = { status = 200, body = "", content_type = "text/plain" }

function channel.receive(req)
  local body = req.json
  if not util.is_object(body, req.body) then
    sb.http_error(400, "invalid_body", "a Rocket.Chat webhook call must be a JSON object")
  end
  local m, why
  if is_livechat(body) then
    m, why = read_livechat(body)
  else
    m, why = read_outgoing(body)
  end
  if not m then
    sb.log.debug("rocketchat: %s: ignored", why)
    return {}, ANSWER
  end
  if is_own(m.user_name, m.user_id) then
    sb.log.debug("rocketchat: the bot's own message: ignored")
    return {}, ANSWER
  end
  if not util.first_delivery(channel.name, m.id, cfg.dedupe_ttl) then
    sb.log.info("rocketchat: message %s was already received: answered, not processed again",
      m.id:sub(1, 200))
    return {}, ANSWER
  end
  return { { sender_id = m.sender, text = m.text, message_id = m.id, metadata = m.metadata } },
    ANSWER
end

---------------------------------------------------------------------------------------------------
-- The REST API: one login per worker, shared by every reply.

local function api_error(res)
  local body = res.json
  if type(body) ~= "table" then
    return nil
  end
  return string_or_nil(body.error) or string_or_nil(body.message)
end

-- The login form as rocketchat_API (Rasa's client) sends it: an e-mail as `user`, a name as
-- `username`.
local function login_form()
  local form = { password = cfg.password }
  if cfg.user:match("^[%w._%-]+@[%w%-]+[%w.%-]*%.%a+$") then
    form.user = cfg.user
  else
    form.username = cfg.user
  end
  return form
end

-- POST /api/v1/login: the new session, or nil and why.
local function login()
  local res, err = util.request({ method = "POST", url = cfg.api .. "login", form = login_form(),
    timeout = cfg.timeout })
  if not res then
    return nil, err
  end
  local data = type(res.json) == "table" and res.json.data
  if res.status ~= 200 or type(data) ~= "table" or not nonempty_string(data.authToken)
      or not nonempty_string(data.userId) then
    return nil, ("HTTP %d: %s"):format(res.status, api_error(res) or res.body:sub(1, 300))
  end
  local me = type(data.me) == "table" and data.me or {}
  return { token = data.authToken, user_id = data.userId, username = string_or_nil(me.username) }
end

-- The session to use: the current one, else one another request of this worker is making
-- (waited for), else a new login. nil and why when the login fails.
local function current_session()
  local waited = 0
  while logging_in and waited <= cfg.timeout + 1 do
    sb.sleep(0.05)
    waited = waited + 0.05
  end
  if session then
    return session
  end
  logging_in = true
  local ok, s, err = pcall(login)
  logging_in = false
  if not ok then
    error(s, 0)
  end
  session = s
  return s, err
end

-- One chat.postMessage; a failure is logged with the request id and the next reply still goes.
local function post_message(message, what, to)
  for attempt = 1, 2 do
    local s, err = current_session()
    if not s then
      sb.log.error("rocketchat: cannot log in as %s: %s; %s to %s not sent", cfg.user, err, what,
        to)
      return false
    end
    local res
    res, err = util.request({
      method = "POST",
      url = cfg.api .. "chat.postMessage",
      headers = { ["X-Auth-Token"] = s.token, ["X-User-Id"] = s.user_id },
      json = message,
      timeout = cfg.timeout,
    })
    if not res then
      sb.log.error("rocketchat: sending %s to %s failed: %s", what, to, err)
      return false
    end
    if res.status == 401 and attempt == 1 then
      -- The session expired: forget it (unless another request already renewed it), log in
      -- again and send once more.
      if session == s then
        session = nil
      end
    elseif util.succeeded(res)
        and not (type(res.json) == "table" and res.json.success == false) then
      return res
    else
      sb.log.error("rocketchat: chat.postMessage refused %s to %s: HTTP %d: %s", what, to,
        res.status, api_error(res) or res.body:sub(1, 300))
      return false
    end
  end
  return false
end

---------------------------------------------------------------------------------------------------
-- Replies, as Rasa's RocketChatBot sends them.

function channel.send_text_message(recipient_id, text)
  for _, part in ipairs(util.text_parts(text)) do
    post_message({ roomId = recipient_id, text = part }, "a text", recipient_id)
  end
end

function channel.send_image_url(recipient_id, image)
  post_message({ roomId = recipient_id,
    attachments = { { image_url = as_text(image), collapsed = false } } }, "an image",
    recipient_id)
end

function channel.send_attachment(recipient_id, attachment)
  post_message({ roomId = recipient_id, attachments = { attachment } }, "an attachment",
    recipient_id)
end

function channel.send_elements(recipient_id, elements)
  local list = json.array()
  for i, element in ipairs(type(elements) == "table" and elements or {}) do
    list[i] = element
  end
  post_message({ roomId = recipient_id, attachments = list }, "elements", recipient_id)
end

-- Buttons are message actions that send their payload into the room when pressed
-- (Rocket.Chat 0.69 and later).
function channel.send_text_with_buttons(recipient_id, text, buttons)
  local actions = json.array()
  for _, button in ipairs(type(buttons) == "table" and buttons or {}) do
    actions[#actions + 1] = {
      text = as_text(button.title or button.payload or ""),
      msg = as_text(button.payload or button.title or ""),
      type = "button",
      msg_in_chat_window = true,
    }
  end
  local message = { roomId = recipient_id, attachments = { { actions = actions } } }
  if util.non_null(text) and text ~= "" then
    message.text = as_text(text)
  end
  post_message(message, "buttons", recipient_id)
end

-- The chat.postMessage fields: `text`, and `channel` (then any room_id is dropped) or `room_id`
-- (default: the recipient); every other key as it is (alias, emoji, avatar, attachments, ...).
function channel.send_custom_json(recipient_id, value)
  if not util.is_object(value) then
    error("rocketchat: custom JSON must be an object of chat.postMessage fields", 0)
  end
  local message = util.copy(value)
  local room = message.room_id
  message.room_id = nil
  if util.non_null(message.channel) then
    if util.non_null(room) then
      sb.log.warn("rocketchat: custom JSON names both `channel` and `room_id`: sent to `channel`")
    end
  elseif not util.non_null(message.roomId) then
    message.roomId = util.non_null(room) and room or recipient_id
  end
  if not util.non_null(message.text) then
    message.text = nil
  end
  post_message(message, "custom JSON", as_text(message.channel or message.roomId))
end

return channel
