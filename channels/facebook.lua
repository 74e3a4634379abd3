-- SPDX-License-Identifier: MIT
-- The facebook channel (docs/contract.md §8), the counterpart of Rasa's FacebookInput /
-- MessengerBot: Facebook Messenger through a Facebook app subscribed to a page's `messages` and
-- `messaging_postbacks` webhook fields.
--
-- facebook:
--   verify: "my-verify-token"              # the Verify Token typed into the app's webhook settings
--   secret: "${FB_APP_SECRET}"             # the app secret: webhook calls are signed with it (required)
--   page-access-token: "${FB_PAGE_TOKEN}"  # the page's access token, for the Send API (required)
--   api_url: "https://graph.facebook.com/v23.0"   # the Graph API base (default)
--   sender_actions: false                  # true: mark_seen + typing_on before each message,
--                                          #   typing_off after the bot answered
--   timeout: 10                            # seconds per Send API call
--   dedupe_ttl: 129600                     # seconds a message's mid is remembered (redeliveries)
--
-- GET  /webhooks/facebook/webhook  the subscription handshake (hub.challenge)
-- POST /webhooks/facebook/webhook  signed events: every messaging event of every entry; answers
--                                  200 "success" once the bot's replies have been sent; a
--                                  message whose mid was already received (Meta redelivers a
--                                  batch that got no 200) is not handed to the bot again
-- Replies go to POST <api_url>/me/messages?access_token=<token>&appsecret_proof=<proof>, the
-- proof being hex HMAC-SHA256(app secret, token). See docs/channels/facebook.md.
local sb = require "switchboard"
local output = require "switchboard.output"
local util = require "switchboard.channel"

local json = sb.json
local nonempty_string, non_null, copy = util.nonempty_string, util.non_null, util.copy
local id_text = util.id_text

local channel = { name = "facebook" }

local DEFAULT_API_URL = "https://graph.facebook.com/v23.0"
local MAX_TEMPLATE_BUTTONS = 3
local MAX_ID_BYTES = 200   -- of a mid in the log

channel.parameters = {
  verify = { type = "string", secret = true },
  secret = { type = "string", required = true, secret = true },
  ["page-access-token"] = { type = "string", required = true, secret = true },
  api_url = { type = "base_url", default = DEFAULT_API_URL },
  sender_actions = { type = "flag", default = false },
  timeout = { type = "seconds", default = 10 },
  dedupe_ttl = { type = "seconds", default = 129600 },
}

-- hex HMAC-SHA256 of the page token keyed with the app secret.
local function appsecret_proof(secret, token)
  return sb.hex(sb.hmac("sha256", secret, token))
end

-- The proof is derived from two secrets: `switchboard run --record` replaces it in case files by
-- the proof of the redacted values, which is what a replay computes (docs/testing.md).
function channel.derived_secrets(values)
  return { appsecret_proof = appsecret_proof(values.secret, values["page-access-token"]) }
end

function channel.init(config)
  local p = util.params(config, channel, { needs = { "verify", "secret", "page-access-token" } })
  local v = p:values()
  channel.verify_token = v.verify
  channel.secret = v.secret
  channel.access_token = v["page-access-token"]
  channel.api_url = v.api_url
  -- appsecret_proof proves the call comes from the app's server; the Graph API requires it when
  -- the app's "Require App Secret" setting is on, and checks it whenever it is sent.
  channel.send_url = channel.api_url .. "/me/messages?" .. sb.urlencode({
    access_token = channel.access_token,
    appsecret_proof = appsecret_proof(channel.secret, channel.access_token),
  })
  channel.sender_actions = v.sender_actions
  channel.timeout = v.timeout
  channel.dedupe_ttl = v.dedupe_ttl
end

---------------------------------------------------------------------------------------------------
-- Incoming: the subscription handshake, signatures, events.

channel.routes = {
  -- Facebook calls this once when the webhook is set up in the app dashboard.
  ["GET /webhook"] = function(req)
    local q = req.query
    local token = q["hub.verify_token"]
    if q["hub.mode"] == "subscribe" and channel.verify_token and type(token) == "string"
        and sb.secure_compare(token, channel.verify_token) then
      return { status = 200, body = q["hub.challenge"] or "", content_type = "text/plain" }
    end
    local reason
    if not channel.verify_token then
      reason = "no `verify` parameter is configured for the facebook channel"
    elseif q["hub.mode"] ~= "subscribe" then
      reason = "hub.mode is not 'subscribe'"
    else
      reason = "hub.verify_token does not match the `verify` parameter"
    end
    sb.log.warn("facebook: webhook verification refused: %s", reason)
    return { status = 403, json = { error = "forbidden", message = reason } }
  end,
}

-- X-Hub-Signature-256: "sha256=" .. hex(HMAC-SHA256(app secret, raw body)); the older
-- X-Hub-Signature ("sha1=...") counts only when the SHA-256 header is absent.
function channel.verify(req)
  local headers = req.headers
  local header, alg = "X-Hub-Signature-256", "sha256"
  local value = headers["x-hub-signature-256"]
  if value == nil then
    header, alg, value = "X-Hub-Signature", "sha1", headers["x-hub-signature"]
  end
  if value == nil then
    return false, "missing X-Hub-Signature-256 header"
  end
  local given = value:lower():match("^" .. alg .. "=(%x+)$")
  if not given then
    return false, ("malformed %s header (expected %s=<hex>)"):format(header, alg)
  end
  local expected = sb.hex(sb.hmac(alg, channel.secret, req.body))
  if not sb.secure_compare(expected, given) then
    return false, ("%s does not match the body (check the `secret` parameter: it is the app "
      .. "secret)"):format(header)
  end
  return true
end

channel.reject = util.forbidden

local function is_table(v)
  return type(v) == "table"
end

-- One messaging event -> a message table, or nil (with the reason) when it is not for the bot.
local function event_message(entry, event)
  if not is_table(event) then
    return nil, "not an object"
  end
  local sender = is_table(event.sender) and event.sender.id or nil
  if sender == nil or sender == json.null or sender == "" then
    return nil, "no sender.id"
  end
  local text, kind, mid, attachments
  local m = event.message
  if is_table(m) then
    if m.is_echo then
      return nil, "an echo of the page's own message"
    end
    mid = m.mid
    local quick_reply = m.quick_reply
    if is_table(quick_reply) and nonempty_string(quick_reply.payload) then
      text, kind = quick_reply.payload, "quick_reply"      -- before text: both carry `text`
    elseif type(m.text) == "string" then
      text, kind = m.text, "message"
    elseif is_table(m.attachments) and is_table(m.attachments[1]) then
      attachments = m.attachments
      local payload = m.attachments[1].payload
      if is_table(payload) and nonempty_string(payload.url) then
        text, kind = payload.url, "attachment"
      end
    end
    if not text then
      return nil, "a message without text, quick reply payload or attachment URL"
    end
  elseif is_table(event.postback) then
    local payload = event.postback.payload
    if type(payload) ~= "string" then
      return nil, "a postback without payload"
    end
    text, kind, mid = payload, "postback", event.postback.mid
  else
    -- delivery, read, reaction, optin, referral, ... are not messages for the bot
    for _, name in ipairs({ "delivery", "read", "reaction", "optin", "referral", "account_linking",
                            "policy_enforcement", "pass_thread_control", "take_thread_control" }) do
      if event[name] ~= nil then
        return nil, name
      end
    end
    return nil, "an event of an unknown kind"
  end
  local recipient = is_table(event.recipient) and event.recipient.id or nil
  if recipient == json.null then recipient = nil end
  local page_id = recipient
  if page_id == nil and is_table(entry) and entry.id ~= json.null then
    page_id = entry.id
  end
  return {
    sender_id = sender,
    text = text,
    message_id = (mid ~= json.null) and mid or nil,
    metadata = {
      page_id = page_id,
      event = kind,
      timestamp = event.timestamp,
      attachments = attachments,
    },
  }
end

local send_action

-- Whether a message is seen for the first time: Meta redelivers a whole batch that got no 200, so
-- each mid is handed to the bot once. A message without mid (an older postback) counts as new.
local function first_delivery(msg)
  return util.first_delivery(channel.name, id_text(msg.message_id), channel.dedupe_ttl)
end

-- Every messaging event of every entry, in order.
function channel.receive(req)
  local body = req.json
  if not is_table(body) or not is_table(body.entry) then
    sb.http_error(400, "invalid_body",
      "expected a Messenger webhook event: a JSON object with an `entry` array")
  end
  local messages = {}
  for _, entry in ipairs(body.entry) do
    local events = is_table(entry) and entry.messaging
    if is_table(events) then
      for _, event in ipairs(events) do
        local msg, why = event_message(entry, event)
        if msg and not first_delivery(msg) then
          sb.log.info("facebook: message %s was already received: not processed again",
            tostring(msg.message_id):sub(1, MAX_ID_BYTES))
        elseif msg then
          messages[#messages + 1] = msg
        else
          sb.log.debug("facebook: ignoring a messaging event: %s", why)
        end
      end
    end
  end
  return messages
end

-- Sender actions, as Rasa's Messenger channel sends them around each message: seen and typing
-- while the bot works, typing off once it is done. In the message's turn, so in order.
function channel.before_message(msg)
  if channel.sender_actions then
    send_action(msg.sender_id, "mark_seen")
    send_action(msg.sender_id, "typing_on")
  end
end

function channel.after_message(msg)
  if channel.sender_actions then
    send_action(msg.sender_id, "typing_off")
  end
end

---------------------------------------------------------------------------------------------------
-- Outgoing: the Send API.

-- The Graph API's error object, as a line of the log.
local function graph_error(res)
  local e = is_table(res.json) and is_table(res.json.error) and res.json.error or nil
  if e then
    return ("%s (type %s, code %s)"):format(tostring(e.message), tostring(e.type),
      id_text(e.code))
  end
  return nil
end

-- POST one Send API request; a failure is logged (never with the URL: it holds the token).
local function post(recipient_id, fields, what)
  local body = copy(fields)
  body.recipient = { id = id_text(recipient_id) }
  return util.deliver({
    method = "POST", url = channel.send_url, json = body, timeout = channel.timeout,
  }, {
    channel = "facebook", api = "the Send API", what = what, to = body.recipient.id,
    detail = graph_error,
  }) and true
end

local function send_message(recipient_id, message, what)
  return post(recipient_id, { message = message, messaging_type = "RESPONSE" }, what)
end

function send_action(recipient_id, action)
  return post(recipient_id, { sender_action = action }, action)
end

local function payload_text(v)
  return non_null(v) and util.as_text(v) or nil
end

-- A Rasa button -> a Messenger button: a `type` is kept as given, a `url` makes a web_url
-- button, anything else is a postback button carrying `payload`.
local function messenger_button(button)
  if not is_table(button) then
    error(("a button must be a table, not %s"):format(type(button)), 0)
  end
  local b = copy(button)
  if b.type == nil then
    if nonempty_string(b.url) then
      b.type = "web_url"
      b.payload = nil
    else
      b.type = "postback"
    end
  end
  if b.type == "postback" then
    b.payload = payload_text(b.payload)
  end
  return b
end

local function messenger_buttons(buttons)
  local list = json.array()
  for i, button in ipairs(buttons) do
    list[i] = messenger_button(button)
  end
  return list
end

-- Rasa's MessengerBot.send_text_message: one message per "\n\n" part of the stripped text.
-- Blank parts are skipped (the Send API refuses empty text).
function channel.send_text_message(recipient_id, text)
  for _, part in ipairs(util.text_parts(text)) do
    send_message(recipient_id, { text = part }, "a text")
  end
end

function channel.send_image_url(recipient_id, url)
  send_message(recipient_id, { attachment = { type = "image", payload = { url = url } } },
    "an image")
end

-- A table is a Messenger attachment ({type = "file", payload = {url = ...}}); anything else
-- falls back to the text "Attachment: <value>" as Rasa's OutputChannel does.
function channel.send_attachment(recipient_id, value)
  if is_table(value) then
    return send_message(recipient_id, { attachment = value }, "an attachment")
  end
  return channel.send_text_message(recipient_id, "Attachment: " .. tostring(value))
end

-- A button template; more than three buttons cannot be one (the Send API refuses them), so the
-- text and each button are then sent as text lines (Rasa's OutputChannel fallback) rather than
-- dropped as Rasa's MessengerBot does.
function channel.send_text_with_buttons(recipient_id, text, buttons)
  if #buttons > MAX_TEMPLATE_BUTTONS then
    sb.log.warn("facebook: a button template holds at most %d buttons; sending %d buttons as text",
      MAX_TEMPLATE_BUTTONS, #buttons)
    channel.send_text_message(recipient_id, text)
    for i, button in ipairs(buttons) do
      channel.send_text_message(recipient_id, output.button_to_string(button, i))
    end
    return
  end
  send_message(recipient_id, {
    attachment = {
      type = "template",
      payload = {
        template_type = "button",
        text = (text ~= json.null) and text or nil,
        buttons = messenger_buttons(buttons),
      },
    },
  }, "a button template")
end

-- Quick replies: content_type "text" (unless given) with title and payload, as Rasa requires.
function channel.send_quick_replies(recipient_id, text, quick_replies)
  local list = json.array()
  for i, qr in ipairs(quick_replies) do
    if not is_table(qr) then
      error(("a quick reply must be a table, not %s"):format(type(qr)), 0)
    end
    local content_type = qr.content_type or "text"
    local item = { content_type = content_type, image_url = qr.image_url }
    if content_type == "text" then
      for _, field in ipairs({ "title", "payload" }) do
        if not non_null(qr[field]) then
          error(('Facebook quick replies must define a "%s" field'):format(field), 0)
        end
      end
      item.title = tostring(qr.title)
      item.payload = payload_text(qr.payload)
    end
    list[i] = item
  end
  send_message(recipient_id, {
    text = (text ~= json.null) and text or nil,
    quick_replies = list,
  }, "quick replies")
end

-- Elements: one generic template; their buttons get a type as in send_text_with_buttons.
function channel.send_elements(recipient_id, elements)
  local list = json.array()
  for i, element in ipairs(elements) do
    if not is_table(element) then
      error(("an element must be a table, not %s"):format(type(element)), 0)
    end
    local e = copy(element)
    if is_table(e.buttons) then
      e.buttons = messenger_buttons(e.buttons)
    end
    list[i] = e
  end
  send_message(recipient_id, {
    attachment = { type = "template", payload = { template_type = "generic", elements = list } },
  }, "a generic template")
end

-- Custom JSON is the Send API `message` itself. A `sender = {id = ...}` key in it names another
-- recipient and is removed (Rasa). An array is sent as one message per element.
local function send_custom(recipient_id, value)
  if not is_table(value) then
    error(("facebook custom JSON must be an object (the Send API message), not %s")
      :format(type(value)), 0)
  end
  local message = copy(value)
  local sender = message.sender
  if sender ~= nil then
    message.sender = nil
    if is_table(sender) and non_null(sender.id) then
      recipient_id = sender.id
    end
  end
  send_message(recipient_id, message, "custom JSON")
end

function channel.send_custom_json(recipient_id, value)
  if is_table(value) and value[1] ~= nil then
    for _, item in ipairs(value) do
      send_custom(recipient_id, item)
    end
    return
  end
  send_custom(recipient_id, value)
end

return channel
