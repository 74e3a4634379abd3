-- The twilio channel (SPEC §8), the counterpart of Rasa's TwilioInput / TwilioOutput: SMS, MMS
-- and WhatsApp through a Twilio phone number whose "A message comes in" webhook points here.
--
-- twilio:
--   account_sid: "ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"   # required
--   auth_token: "${TWILIO_AUTH_TOKEN}"                 # required: signs every webhook call
--   twilio_number: "+14155550100"                      # required, quoted (or "whatsapp:+1...")
--   api_url: "https://api.twilio.com"                  # the REST API base (default)
--   timeout: 10                                        # seconds per Messages API call
--
-- POST /webhooks/twilio/webhook  form-encoded, signed with X-Twilio-Signature; From is the
--                                sender, Body the text; answers 204 once the replies are sent
-- Replies go to POST <api_url>/2010-04-01/Accounts/<account_sid>/Messages.json. See
-- docs/channels/twilio.md.
local sb = require "switchboard"
local util = require "switchboard.channel"

local json = sb.json

local channel = { name = "twilio" }

local DEFAULT_API_URL = "https://api.twilio.com"

-- Every value must be a string: YAML turns +14155550100 into the integer 14155550100 (and may
-- read an auth token as a number), so util.params refuses numbers rather than guess.
function channel.init(config)
  local p = util.params(config, "twilio",
    { needs = { "account_sid", "auth_token", "twilio_number" } })
  channel.account_sid = p:string("account_sid", { required = true })
  channel.auth_token = p:string("auth_token", { required = true })
  channel.twilio_number = p:string("twilio_number", { required = true })
  channel.api_url = p:base_url("api_url", DEFAULT_API_URL)
  channel.messages_url = ("%s/2010-04-01/Accounts/%s/Messages.json"):format(channel.api_url,
    sb.urlencode(channel.account_sid))
  channel.authorization = "Basic " .. sb.base64(channel.account_sid .. ":" .. channel.auth_token)
  channel.timeout = p:seconds("timeout", 10)
end

---------------------------------------------------------------------------------------------------
-- Incoming: the signature and the message.

-- Every name/value pair of a form-encoded body, repeated names included (req.form keeps only
-- the first value per name, the signature needs them all).
local function form_pairs(body)
  local list = {}
  for pair in body:gmatch("[^&]+") do
    local name, value = pair:match("^([^=]*)=?(.*)$")
    if name ~= "" then
      list[#list + 1] = { sb.urldecode(name), sb.urldecode(value) }
    end
  end
  return list
end

-- The signed parameter string: names sorted, each name followed by each of its distinct values,
-- sorted (Twilio's RequestValidator).
local function signed_params(body)
  local values, names = {}, {}
  for _, p in ipairs(form_pairs(body)) do
    local name, value = p[1], p[2]
    local set = values[name]
    if not set then
      set = {}
      values[name] = set
      names[#names + 1] = name
    end
    set[value] = true
  end
  table.sort(names)
  local out = {}
  for _, name in ipairs(names) do
    local list = {}
    for value in pairs(values[name]) do list[#list + 1] = value end
    table.sort(list)
    for _, value in ipairs(list) do
      out[#out + 1] = name .. value
    end
  end
  return table.concat(out)
end

-- Twilio signs the URL as configured in the console: with or without the port. Try the URL
-- with the scheme's default port added and with any port removed, as Twilio's helpers do.
local function url_variants(url)
  local scheme, authority, rest = url:match("^(%a[%w+.-]*)://([^/?#]*)(.*)$")
  if not scheme then
    return { url }
  end
  local host, port = authority:match("^(.*):(%d+)$")
  if not host then
    host = authority
    port = scheme:lower() == "https" and "443" or "80"
  end
  return {
    ("%s://%s:%s%s"):format(scheme, host, port, rest),
    ("%s://%s%s"):format(scheme, host, rest),
  }
end

local function is_form(req)
  local content_type = req.headers["content-type"] or ""
  return content_type:lower():find("application/x-www-form-urlencoded", 1, true) ~= nil
end

-- X-Twilio-Signature = base64(HMAC-SHA1(auth token, URL .. sorted POST parameters)). A JSON
-- body is signed through the URL's bodySHA256 query parameter instead.
function channel.verify(req)
  local signature = req.headers["x-twilio-signature"]
  if signature == nil or signature == "" then
    return false, "missing X-Twilio-Signature header"
  end
  local params = ""
  local body_hash = req.query.bodySHA256
  if body_hash then
    if not sb.secure_compare(sb.hex(sb.digest("sha256", req.body)), body_hash:lower()) then
      return false, "the body does not match the bodySHA256 query parameter"
    end
  elseif is_form(req) then
    params = signed_params(req.body)
  end
  for _, url in ipairs(url_variants(req.url)) do
    local expected = sb.base64(sb.hmac("sha1", channel.auth_token, url .. params))
    if sb.secure_compare(expected, signature) then
      return true
    end
  end
  return false, ("X-Twilio-Signature does not match %s (check `auth_token`; behind a proxy, "
    .. "pass X-Forwarded-Proto and X-Forwarded-Host so the URL is the one Twilio calls)")
    :format(req.url)
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

function channel.receive(req)
  local form = req.form
  local sender, text = form.From, form.Body
  if sender == nil or sender == "" then
    sb.log.debug("twilio: ignoring a webhook call without From")
    return {}
  end
  if text ~= nil then
    text = text:gsub("\194\161", "@")      -- some carriers turn "@" into "¡" (as Rasa does)
  end
  local metadata = metadata_of(form)
  if text == nil and not metadata.location and not metadata.media then
    sb.log.debug("twilio: ignoring a webhook call without Body")
    return {}
  end
  return { {
    sender_id = sender,
    text = text,
    message_id = form.MessageSid or form.SmsMessageSid,
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
