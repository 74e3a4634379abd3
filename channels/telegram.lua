-- SPDX-License-Identifier: MIT
-- The telegram channel (docs/contract.md §8), the counterpart of Rasa's TelegramInput (incoming)
-- and TelegramOutput (replies). docs/channels/telegram.md is the user's guide.
--
-- Incoming: Telegram posts one Update (JSON) per request to the webhook. Text messages, edited
-- text messages, callback queries (inline button presses) and locations become messages; the
-- sender is the chat id. Everything else is answered 200 "success" and dropped. The answer goes out
-- after the bot's replies were sent (Telegram redelivers an update that fails).
--
-- Replies: Bot API calls to <api_url>/bot<access_token>/<method>: sendMessage (text, buttons as
-- keyboards), sendPhoto (images), and for custom JSON the method its keys name.
--
-- telegram:
--   access_token: "123456:ABC..."        # required: the token @BotFather gave
--   verify: "my_bot"                     # the bot's username: checked once against getMe
--   webhook_url: "https://example.com/webhooks/telegram/webhook"   # registered at startup
--                                                                     # (and by GET /set_webhook)
--   secret_token: "..."                  # optional: required in X-Telegram-Bot-Api-Secret-Token
--   api_url: "https://api.telegram.org"
--   timeout: 10                          # seconds per Bot API call
--   dedupe_ttl: 86400                    # seconds an update_id is remembered (redeliveries)
--
-- Telegram redelivers an update that got no answer in time (it keeps one up to 24 h): each
-- update_id is handed to the bot once (util.first_delivery), a repeat is answered "success".
local sb = require "switchboard"
local util = require "switchboard.channel"

local non_null, nonempty_string, as_text = util.non_null, util.nonempty_string, util.as_text
local id_text = util.id_text

local channel = { name = "telegram" }

channel.parameters = {
  access_token = { type = "string", required = true, secret = true,
    hint = "the bot token @BotFather gave you" },
  verify = { type = "string" },
  webhook_url = { type = "string" },
  secret_token = { type = "string", secret = true },
  api_url = { type = "base_url", default = "https://api.telegram.org" },
  timeout = { type = "seconds", default = 10 },
  dedupe_ttl = { type = "seconds", default = 86400 },
}

local MAX_ID_BYTES = 200 -- of an update_id in the log

-- The parameters, set by init (one copy per worker).
local cfg = {}
-- The username getMe reported for access_token, once known (per worker).
local bot_username

function channel.init(config)
  local p = util.params(config, channel, { number_as_text = true })
  local v = p:values()
  local secret = v.secret_token
  if secret and (not secret:match("^[%w_%-]+$") or #secret > 256) then
    p:fail("secret_token", "must be 1-256 characters of A-Z, a-z, 0-9, _ and - " ..
      "(Telegram's rule for setWebhook)")
  end
  cfg = {
    token = v.access_token,
    verify = v.verify and v.verify:gsub("^@", ""):lower() or nil,
    webhook_url = v.webhook_url,
    secret = secret,
    api_url = v.api_url,
    timeout = v.timeout,
    dedupe_ttl = v.dedupe_ttl,
  }
  bot_username = nil
end

-- ---- the Bot API -----------------------------------------------------------------------------

-- POST <api_url>/bot<token>/<method> with a JSON body. Returns the decoded answer and the HTTP
-- status, or nil and an error text (never containing the token).
local function call(method, body)
  local res, err = util.request({
    method = "POST",
    url = cfg.api_url .. "/bot" .. cfg.token .. "/" .. method,
    json = body or {},
    timeout = cfg.timeout,
  })
  if not res then
    return nil, ("%s: %s"):format(method, err)
  end
  local answer = res.json
  if type(answer) ~= "table" then
    return nil, ("%s answered HTTP %d without Telegram's JSON"):format(method, res.status)
  end
  return answer, res.status
end

-- A call whose failure is an error (senders: the host logs it with the request id).
local function must_call(method, body)
  local answer, status = call(method, body)
  if not answer then
    error("telegram: " .. status, 0)
  end
  if answer.ok ~= true then
    error(("telegram: %s failed: %s"):format(method,
      tostring(answer.description or ("HTTP " .. tostring(status)))), 0)
  end
  return answer
end

-- ---- incoming --------------------------------------------------------------------------------

function channel.verify(req)
  if not cfg.secret then
    return true
  end
  local got = req.headers["x-telegram-bot-api-secret-token"]
  if not nonempty_string(got) then
    return false, "the X-Telegram-Bot-Api-Secret-Token header is missing"
  end
  if not sb.secure_compare(got, cfg.secret) then
    return false, "X-Telegram-Bot-Api-Secret-Token does not match secret_token"
  end
  return true
end

channel.reject = util.forbidden

-- Rasa checks that access_token belongs to the bot named by `verify` (getMe) before it handles an
-- update. Here the username is fetched once per worker and kept.
local function check_username()
  if not cfg.verify then
    return true
  end
  if not bot_username then
    local answer, status = call("getMe")
    if not answer then
      sb.http_error(502, "telegram_unreachable",
        "cannot check the bot's username with getMe: " .. tostring(status))
    end
    if answer.ok ~= true or type(answer.result) ~= "table"
        or not nonempty_string(answer.result.username) then
      sb.log.error("telegram: getMe failed (%s): check access_token",
        tostring(answer.description or status))
      return false
    end
    bot_username = answer.result.username:lower()
  end
  if bot_username ~= cfg.verify then
    sb.log.error("telegram: access_token belongs to @%s, but `verify` names @%s; update dropped",
      bot_username, cfg.verify)
    return false
  end
  return true
end

-- A float as Python's str() writes it (Rasa formats the location with str.format).
local function python_float(v)
  if v == math.floor(v) and math.abs(v) < 1e16 then
    return ("%.1f"):format(v)
  end
  for precision = 1, 17 do
    local text = ("%." .. precision .. "g"):format(v)
    if tonumber(text) == v then
      return text
    end
  end
  return ("%.17g"):format(v)
end

-- "/start@my_bot" -> "/start" when my_bot is this bot (commands in groups name the bot).
local function strip_bot_name(text)
  if not cfg.verify then
    return text
  end
  local command, name, rest = text:match("^(/[%w_]+)@([%w_]+)(.*)$")
  if command and name:lower() == cfg.verify then
    return command .. rest
  end
  return text
end

local function chat_of(message)
  if type(message) == "table" and type(message.chat) == "table" then
    return id_text(message.chat.id)
  end
  return nil
end

-- The text and the chat of an update, or nil and why it is ignored. The order is Rasa's: a
-- callback query, an edited message, a message.
local function read_update(update)
  local query = update.callback_query
  if type(query) == "table" then
    if not nonempty_string(query.data) then
      return nil, "a callback query without data"
    end
    -- An inline-mode message has no `message`: answer the user who pressed the button.
    local chat = chat_of(query.message) or (type(query.from) == "table" and id_text(query.from.id))
    return query.data, chat
  end
  local edited = update.edited_message
  if type(edited) == "table" then
    if not nonempty_string(edited.text) then
      return nil, "an edited message without text"
    end
    return strip_bot_name(edited.text), chat_of(edited)
  end
  local message = update.message
  if type(message) ~= "table" then
    return nil, "an update without a message"
  end
  if type(message.text) == "string" then
    return strip_bot_name(message.text), chat_of(message)
  end
  local location = message.location
  if type(location) == "table" and type(location.longitude) == "number"
      and type(location.latitude) == "number" then
    return ('{"lng":%s, "lat":%s}'):format(python_float(location.longitude),
      python_float(location.latitude)), chat_of(message)
  end
  return nil, "a message without text or location"
end

local FAILED = { status = 200, body = "failed", content_type = "text/plain" }

-- Whether this update_id is seen for the first time (a redelivery is not). An update without an
-- id counts as new.
local function first_delivery(update)
  return util.first_delivery(channel.name, id_text(update.update_id), cfg.dedupe_ttl)
end

function channel.receive(req)
  local update = req.json
  if not util.is_object(update, req.body) then
    sb.http_error(400, "invalid_body", "a Telegram update must be a JSON object")
  end
  if not check_username() then
    return {}, FAILED
  end
  local text, chat = read_update(update)
  if not text then
    sb.log.debug("telegram: update %s ignored: %s", id_text(update.update_id) or "?", chat)
    return {}
  end
  if not chat then
    sb.log.debug("telegram: update %s ignored: no chat", id_text(update.update_id) or "?")
    return {}
  end
  if not first_delivery(update) then
    sb.log.info("telegram: update %s was already received: answered, not processed again",
      id_text(update.update_id):sub(1, MAX_ID_BYTES))
    return {}
  end
  if text == "/restart" then
    return { { sender_id = chat, text = text }, { sender_id = chat, text = "/start" } }
  end
  return { { sender_id = chat, text = text } }
end

-- ---- replies ---------------------------------------------------------------------------------

-- The chat id as the Bot API's Integer when it is one, else as given ("@channelusername").
local function chat_id(recipient_id)
  if type(recipient_id) == "string" and recipient_id:match("^%-?%d+$") then
    local n = math.tointeger(tonumber(recipient_id))
    if n then
      return n
    end
  end
  return recipient_id
end

-- One sendMessage per part of the text split on blank lines, as Rasa's TelegramOutput does.
function channel.send_text_message(recipient_id, text)
  for _, part in ipairs(util.text_parts(text)) do
    must_call("sendMessage", { chat_id = chat_id(recipient_id), text = part })
  end
end

function channel.send_image_url(recipient_id, image)
  must_call("sendPhoto", { chat_id = chat_id(recipient_id), photo = as_text(image) })
end

local function inline_button(button)
  local b = { text = as_text(button.title or button.payload or "") }
  if nonempty_string(button.url) then
    b.url = button.url
  else
    b.callback_data = as_text(button.payload or button.title or "")
  end
  return b
end

local function keyboard_button(button)
  return { text = as_text(button.title or button.payload or "") }
end

-- Rasa's button types: "inline" (one row), "vertical" (one button per row), "reply" (a reply
-- keyboard, one button per row unless a button is itself a list: that list is one row).
local function reply_markup(buttons, button_type)
  local rows = {}
  if button_type == "inline" then
    local row = {}
    for _, button in ipairs(buttons) do
      row[#row + 1] = inline_button(button)
    end
    rows[1] = row
    return { inline_keyboard = rows }
  elseif button_type == "vertical" then
    for _, button in ipairs(buttons) do
      rows[#rows + 1] = { inline_button(button) }
    end
    return { inline_keyboard = rows }
  elseif button_type == "reply" then
    for _, button in ipairs(buttons) do
      if button[1] ~= nil then
        local row = {}
        for _, b in ipairs(button) do
          row[#row + 1] = keyboard_button(b)
        end
        rows[#rows + 1] = row
      else
        rows[#rows + 1] = { keyboard_button(button) }
      end
    end
    -- Rasa's ReplyKeyboardMarkup(resize_keyboard=False, one_time_keyboard=True).
    return { keyboard = rows, resize_keyboard = false, one_time_keyboard = true }
  end
  return nil
end

function channel.send_text_with_buttons(recipient_id, text, buttons, extras)
  local button_type = type(extras) == "table" and extras.button_type or nil
  if not non_null(button_type) then
    button_type = "inline"
  end
  local markup = reply_markup(type(buttons) == "table" and buttons or {}, button_type)
  if not markup then
    error(("telegram: unknown button_type %s (use inline, vertical or reply)")
      :format(tostring(button_type)), 0)
  end
  if not non_null(text) then
    error("telegram: buttons need a text (sendMessage requires one)", 0)
  end
  must_call("sendMessage", {
    chat_id = chat_id(recipient_id), text = as_text(text), reply_markup = markup,
  })
end

-- Quick replies are buttons, with the message's button_type (Rasa's OutputChannel passes the
-- extras on; the host's generic fallback does not).
function channel.send_quick_replies(recipient_id, text, quick_replies, extras)
  channel.send_text_with_buttons(recipient_id, text, quick_replies, extras)
end

-- Rasa's TelegramOutput.send_custom_json: each Bot API method whose required keys are all in the
-- value is called, in this order, with those keys and the keys still left (parse_mode,
-- reply_markup, caption, ...). A `chat_id` key overrides the recipient.
local CUSTOM_METHODS = {
  { { "text" }, "sendMessage" },
  { { "photo" }, "sendPhoto" },
  { { "audio" }, "sendAudio" },
  { { "document" }, "sendDocument" },
  { { "sticker" }, "sendSticker" },
  { { "video" }, "sendVideo" },
  { { "video_note" }, "sendVideoNote" },
  { { "animation" }, "sendAnimation" },
  { { "voice" }, "sendVoice" },
  { { "media" }, "sendMediaGroup" },
  { { "latitude", "longitude", "title", "address" }, "sendVenue" },
  { { "latitude", "longitude" }, "sendLocation" },
  { { "phone_number", "first_name" }, "sendContact" },
  { { "game_short_name" }, "sendGame" },
  { { "action" }, "sendChatAction" },
  { { "title", "description", "payload", "provider_token", "currency", "prices" }, "sendInvoice" },
}

function channel.send_custom_json(recipient_id, value)
  if not util.is_object(value) then
    error("telegram: custom JSON must be an object of Bot API parameters", 0)
  end
  local rest = {}
  for k, v in pairs(value) do
    if non_null(v) then
      rest[k] = v
    end
  end
  local chat = rest.chat_id or chat_id(recipient_id)
  rest.chat_id = nil
  local called = false
  for _, entry in ipairs(CUSTOM_METHODS) do
    local keys, method = entry[1], entry[2]
    local all = true
    for _, key in ipairs(keys) do
      if rest[key] == nil then
        all = false
        break
      end
    end
    if all then
      local body = {}
      for _, key in ipairs(keys) do
        body[key] = rest[key]
        rest[key] = nil
      end
      for k, v in pairs(rest) do
        body[k] = v
      end
      body.chat_id = chat
      must_call(method, body)
      called = true
    end
  end
  if not called then
    sb.log.warn("telegram: custom JSON names no Bot API method (keys such as text, photo, " ..
      "document, latitude/longitude); nothing sent")
  end
end

-- ---- GET /set_webhook ------------------------------------------------------------------------

-- Registers webhook_url (and secret_token) with setWebhook and answers what Telegram said.
local function set_webhook()
  if not cfg.webhook_url then
    return { status = 500, json = { error = "not_configured",
      message = "set `webhook_url` for the telegram channel in credentials.yml" } }
  end
  local body = { url = cfg.webhook_url }
  if cfg.secret then
    body.secret_token = cfg.secret
  end
  local answer, status = call("setWebhook", body)
  if not answer then
    sb.log.error("telegram: setWebhook failed: %s", status)
    return { status = 502, json = { error = "telegram_unreachable", message = status } }
  end
  if answer.ok ~= true then
    sb.log.warn("telegram: setWebhook refused: %s", tostring(answer.description))
    return { status = 502, json = answer }
  end
  sb.log.info("telegram: webhook set")
  return { status = 200, json = answer }
end

channel.routes = {
  ["GET /set_webhook"] = set_webhook,
  ["POST /set_webhook"] = set_webhook,
}

-- At every (re)load, once: register webhook_url when it is set, as Rasa does at startup. A
-- failure is logged (set_webhook logs it) and the host serves anyway; GET /set_webhook retries.
function channel.startup()
  if cfg.webhook_url then
    set_webhook()
  end
end

return channel
