-- SPDX-License-Identifier: MIT
-- The twilio channel (docs/contract.md §8), the counterpart of Rasa's TwilioInput / TwilioOutput:
-- SMS, MMS and WhatsApp through a Twilio phone number whose "A message comes in" webhook points
-- here.
--
-- twilio:
--   account_sid: "ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"   # required
--   auth_token: "${TWILIO_AUTH_TOKEN}"                 # required: signs every webhook call
--   twilio_number: "+14155550100"                      # required, quoted (or "whatsapp:+1...")
--   api_url: "https://api.twilio.com"                  # the REST API base (default)
--   timeout: 10                                        # seconds per Messages API call
--   dedupe_ttl: 3600                                   # seconds a MessageSid is remembered
--
-- POST /webhooks/twilio/webhook  form-encoded, signed with X-Twilio-Signature; From is the
--                                sender, Body the text (a shared location: Rasa's
--                                /locationData{...}); answers 204 once the replies are sent; a
--                                MessageSid already received (a retry) is not processed again
-- Replies go to POST <api_url>/2010-04-01/Accounts/<account_sid>/Messages.json. See
-- docs/channels/twilio.md.
local sb = require "switchboard"
local util = require "switchboard.channel"
local signature = require "switchboard.twilio_signature"

local json = sb.json

local channel = { name = "twilio" }

local DEFAULT_API_URL = "https://api.twilio.com"
local MAX_ID_BYTES = 200   -- of a sid in the log

-- Every value must be a string: YAML turns +14155550100 into the integer 14155550100 (and may
-- read an auth token as a number), so util.params refuses numbers rather than guess.
channel.parameters = {
  account_sid = { type = "string", required = true },
  auth_token = { type = "string", required = true, secret = true },
  twilio_number = { type = "string", required = true },
  api_url = { type = "base_url", default = DEFAULT_API_URL },
  timeout = { type = "seconds", default = 10 },
  dedupe_ttl = { type = "seconds", default = 3600 },
}

function channel.init(config)
  local p = util.params(config, channel,
    { needs = { "account_sid", "auth_token", "twilio_number" } })
  local v = p:values()
  channel.account_sid = v.account_sid
  channel.auth_token = v.auth_token
  channel.twilio_number = v.twilio_number
  channel.api_url = v.api_url
  channel.messages_url = ("%s/2010-04-01/Accounts/%s/Messages.json"):format(channel.api_url,
    sb.urlencode(channel.account_sid))
  channel.authorization = "Basic " .. sb.base64(channel.account_sid .. ":" .. channel.auth_token)
  channel.timeout = v.timeout
  channel.dedupe_ttl = v.dedupe_ttl
end

---------------------------------------------------------------------------------------------------
-- Incoming: the signature and the message.

-- The signature: lua/switchboard/twilio_signature.lua.
function channel.verify(req)
  return signature.verify(req, channel.auth_token)
end

channel.reject = util.forbidden

local function coordinate(v)
  local n = tonumber(v)
  if n and n == n then return n end
  return nil
end

-- The form's extra data for the bot (Rasa passes none): the Twilio number written to, the
-- WhatsApp profile name, a shared location and the media URLs of an MMS / WhatsApp message.
local function metadata_of(form)
  local metadata = {
    to = form.To,
    profile_name = form.ProfileName,
    wa_id = form.WaId,
  }
  local lat, lng = coordinate(form.Latitude), coordinate(form.Longitude)
  if lat and lng then
    metadata.location = { lat = lat, lng = lng, address = form.Address, label = form.Label }
  end
  local count = math.tointeger(tonumber(form.NumMedia) or 0) or 0
  if count > 0 then
    local media = json.array()
    for i = 0, count - 1 do
      local url = form["MediaUrl" .. i]
      if url then
        media[#media + 1] = { url = url, content_type = form["MediaContentType" .. i] }
      end
    end
    metadata.media = media
  end
  return metadata
end

-- Rasa's TwilioInput text for a shared location: both form values as they were sent, when both
-- are non-empty (whatever Body says).
local function location_text(form)
  local lat, lng = form.Latitude, form.Longitude
  if util.nonempty_string(lat) and util.nonempty_string(lng) then
    return "/locationData{'Latitude': " .. lat .. ",'Longitude': " .. lng .. "}"
  end
  return nil
end

-- Whether the message (its sid) is seen for the first time; a call without a sid counts as new.
local function first_delivery(sid)
  if not util.nonempty_string(sid) then
    return true
  end
  return util.first_delivery(channel.name, sid, channel.dedupe_ttl)
end

function channel.receive(req)
  local form = req.form
  local sender = form.From
  if sender == nil or sender == "" then
    sb.log.debug("twilio: ignoring a webhook call without From")
    return {}
  end
  local text = location_text(form) or form.Body
  if text ~= nil then
    text = text:gsub("\194\161", "@")      -- some carriers turn "@" into "¡" (as Rasa does)
  end
  local metadata = metadata_of(form)
  if text == nil and not metadata.location and not metadata.media then
    sb.log.debug("twilio: ignoring a webhook call without Body")
    return {}
  end
  local sid = form.MessageSid or form.SmsMessageSid
  if not first_delivery(sid) then
    sb.log.info("twilio: message %s was already received: answered, not processed again",
      sid:sub(1, MAX_ID_BYTES))
    return {}
  end
  return { {
    sender_id = sender,
    text = text,
    message_id = sid,
    metadata = metadata,
  } }
end

-- Twilio's own answer to a messaging webhook: nothing to say (no TwiML).
function channel.ack()
  return { status = 204, body = "" }
end

---------------------------------------------------------------------------------------------------
-- Outgoing: the Messages API.

-- The number to send from: a WhatsApp sender ("whatsapp:+1...") is answered from the WhatsApp
-- form of twilio_number, an SMS sender from its plain form.
local function from_for(recipient)
  local number = channel.twilio_number
  local plain = number:gsub("^[Ww][Hh][Aa][Tt][Ss][Aa][Pp][Pp]:", "")
  if recipient:lower():find("^whatsapp:") then
    return "whatsapp:" .. plain
  end
  return plain
end

-- Twilio's error object, as a line of the log.
local function twilio_error(res)
  local e = res.json
  if type(e) == "table" then
    return ("%s (code %s)"):format(tostring(e.message), util.id_text(e.code))
  end
  return nil
end

-- POST one Messages API request; a failure is logged.
local function create(fields, what)
  return util.deliver({
    method = "POST", url = channel.messages_url, form = fields, timeout = channel.timeout,
    headers = { Authorization = channel.authorization, Accept = "application/json" },
  }, {
    channel = "twilio", api = "the Messages API", what = what, to = tostring(fields.To),
    detail = twilio_error,
  }) and true
end

-- Rasa's TwilioOutput.send_text_message: one message per "\n\n" part of the text. Empty parts
-- are skipped (Twilio refuses a message without Body or media).
function channel.send_text_message(recipient_id, text)
  recipient_id = tostring(recipient_id)
  local from = from_for(recipient_id)
  for _, part in ipairs(util.text_parts(text)) do
    create({ From = from, To = recipient_id, Body = part }, "a text")
  end
end

function channel.send_image_url(recipient_id, url)
  recipient_id = tostring(recipient_id)
  create({ From = from_for(recipient_id), To = recipient_id, MediaUrl = tostring(url) },
    "an image")
end

-- Rasa's snake_case names (media_url, from_, messaging_service_sid) -> Twilio's (MediaUrl, From,
-- MessagingServiceSid); names already written Twilio's way are kept.
local function api_name(key)
  key = tostring(key):gsub("_+$", "")
  if not key:find("_", 1, true) and key:find("^%u") then
    return key
  end
  return (key:gsub("^(%l)", string.upper):gsub("_(%w)", string.upper))
end

local function form_value(v)
  if type(v) == "table" then
    if v[1] ~= nil then
      local list = {}
      for i, item in ipairs(v) do list[i] = form_value(item) end
      return list
    end
    return json.encode(v)             -- ContentVariables and the like are JSON strings
  end
  return tostring(v)
end

-- Custom JSON: the Messages API parameters themselves, as in Rasa; To defaults to the sender,
-- From to twilio_number (unless a MessagingServiceSid is given), Body to "" without media.
function channel.send_custom_json(recipient_id, value)
  if not util.is_object(value) then
    error("twilio custom JSON must be an object of Messages API parameters", 0)
  end
  recipient_id = tostring(recipient_id)
  local fields = {}
  for k, v in pairs(value) do
    if v ~= json.null then
      fields[api_name(k)] = form_value(v)
    end
  end
  fields.To = fields.To or recipient_id
  if not fields.MessagingServiceSid then
    fields.From = fields.From or from_for(fields.To)
  end
  if not fields.MediaUrl and not fields.ContentSid then
    fields.Body = fields.Body or ""
  end
  create(fields, "custom JSON")
end

return channel
