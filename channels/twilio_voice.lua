-- SPDX-License-Identifier: MIT
-- The twilio_voice channel, the counterpart of Rasa's TwilioVoiceInput: phone calls to a Twilio
-- number (or SIP domain) whose "A call comes in" webhook points here. Each webhook call is one
-- turn of the call, answered with TwiML: the bot's texts as <Say>, the last one inside a
-- <Gather input="speech"> whose action is this webhook again.
--
-- twilio_voice:
--   auth_token: "${TWILIO_AUTH_TOKEN}"     # required: checks X-Twilio-Signature (Rasa: none)
--   initial_prompt: "hello"                 # the user text of a new call (CallStatus ringing)
--   reprompt_fallback_phrase: "I'm sorry I didn't get that could you rephrase."
--   assistant_voice: "woman"                # man, woman, alice or one of Rasa's Polly voices
--   speech_timeout: "5"                     # whole seconds, or auto (numbers_and_commands only)
--   speech_model: "default"                 # default, numbers_and_commands or phone_call
--   enhanced: false                         # true: phone_call model only
--   call_ttl: 3600                          # seconds a call's last message is kept for a reprompt
--   dedupe_ttl: 3600                        # seconds a turn's idempotency token is remembered
--
-- POST /webhooks/twilio_voice/webhook  form-encoded, signed with X-Twilio-Signature; From is
--                                      the sender, SpeechResult the text; answers TwiML
--                                      (application/xml). See docs/channels/twilio_voice.md.
local sb = require "switchboard"
local util = require "switchboard.channel"
local signature = require "switchboard.twilio_signature"

local store = sb.store

local channel = { name = "twilio_voice" }

local DEFAULT_PROMPT = "hello"
local DEFAULT_FALLBACK = "I'm sorry I didn't get that could you rephrase."
-- Rasa's Gather action: the webhook itself, relative to the URL Twilio called.
local ACTION = "/webhooks/twilio_voice/webhook"
local CONTENT_TYPE = "application/xml"
local MAX_KEY_ID = 200        -- longer ids are stored by their SHA-256 (keys are <= 1024 bytes)
local ANSWER_TTL = 120        -- seconds a turn's TwiML is kept for Twilio's retries (<= 15 s)
local REPLAY_WAIT = 15        -- seconds a retry waits for the first try's answer (Twilio's max)
local REPLAY_POLL = 0.1

-- Rasa's SUPPORTED_VOICES, exactly.
local VOICES = {
  "man", "woman", "alice",
  "Polly.Mads", "Polly.Naja", "Polly.Lotte", "Polly.Reuben", "Polly.Nicole", "Polly.Russell",
  "Polly.Amy", "Polly.Brian", "Polly.Emma", "Polly.Amy-Neural", "Polly.Emma-Neural",
  "Polly.Brian-Neural", "Polly.Raveena", "Polly.Ivy", "Polly.Joanna", "Polly.Joey",
  "Polly.Justin", "Polly.Kendra", "Polly.Kimberly", "Polly.Matthew", "Polly.Salli",
  "Polly.Ivy-Neural", "Polly.Joanna-Neural", "Polly.Kendra-Neural", "Polly.Kimberly-Neural",
  "Polly.Sally-Neural", "Polly.Joey-Neural", "Polly.Justin-Neural", "Polly.Matthew-Neural",
  "Polly.Geraint", "Polly.Celine", "Polly.Mathieu", "Polly.Chantal", "Polly.Hans",
  "Polly.Marlene", "Polly.Vicki", "Polly.Dora", "Polly.Karl", "Polly.Carla", "Polly.Giorgio",
  "Polly.Mizuki", "Polly.Takumi", "Polly.Liv", "Polly.Jacek", "Polly.Jan", "Polly.Ewa",
  "Polly.Maja", "Polly.Ricardo", "Polly.Vitoria", "Polly.Camila-Neural", "Polly.Cristiano",
  "Polly.Ines", "Polly.Carmen", "Polly.Maxim", "Polly.Tatyana", "Polly.Conchita",
  "Polly.Enrique", "Polly.Miguel", "Polly.Penelope", "Polly.Lupe-Neural", "Polly.Astrid",
  "Polly.Filiz", "Polly.Gwyneth",
}

-- Rasa's SUPPORTED_SPEECH_MODELS.
local SPEECH_MODELS = { "default", "numbers_and_commands", "phone_call" }

channel.parameters = {
  auth_token = { type = "string", required = true, secret = true,
                 hint = "the Auth Token of your Twilio account: it checks X-Twilio-Signature" },
  initial_prompt = { type = "string", default = DEFAULT_PROMPT },
  reprompt_fallback_phrase = { type = "string", default = DEFAULT_FALLBACK },
  assistant_voice = { type = "string", default = "woman" },
  speech_timeout = { type = "string", default = "5", number_as_text = true },
  speech_model = { type = "string", default = "default", choices = SPEECH_MODELS },
  enhanced = { type = "flag", default = false },
  call_ttl = { type = "seconds", default = 3600 },
  dedupe_ttl = { type = "seconds", default = 3600 },
}

---------------------------------------------------------------------------------------------------
-- Startup: Rasa's checks of the options (TwilioVoiceInput._validate_configuration).

-- The edit distance of two strings (insert, delete, replace one byte), for "did you mean".
local function distance(a, b)
  local previous = {}
  for j = 0, #b do previous[j] = j end
  for i = 1, #a do
    local current = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      current[j] = math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
    end
    previous = current
  end
  return previous[#b]
end

local function nearest_voice(voice)
  local best, best_distance = nil, 3
  for _, known in ipairs(VOICES) do
    local d = distance(voice:lower(), known:lower())
    if d < best_distance then
      best, best_distance = known, d
    end
  end
  return best
end

local function check_voice(p, voice)
  for _, known in ipairs(VOICES) do
    if voice == known then
      return voice
    end
  end
  local near = nearest_voice(voice)
  p:fail("assistant_voice", "must be man, woman, alice or one of Rasa's Polly voices "
    .. "(docs/channels/twilio_voice.md lists them), not %s%s", voice,
    near and (" (did you mean " .. near .. "?)") or "")
end

-- Whole seconds (as Twilio's speechTimeout takes them) or "auto".
local function check_timeout(p, timeout)
  if timeout:lower() == "auto" then
    return "auto"
  end
  if not timeout:match("^%d+$") then
    p:fail("speech_timeout", "must be a whole number of seconds or auto, not %s", timeout)
  end
  return (timeout:gsub("^0+(%d)", "%1"))
end

function channel.init(config)
  local p = util.params(config, channel, { needs = { "auth_token" } })
  local v = p:values()
  channel.auth_token = v.auth_token
  channel.initial_prompt = v.initial_prompt
  channel.reprompt_fallback_phrase = v.reprompt_fallback_phrase
  channel.assistant_voice = check_voice(p, v.assistant_voice)
  channel.speech_timeout = check_timeout(p, v.speech_timeout)
  channel.speech_model = v.speech_model
  channel.enhanced = v.enhanced
  channel.call_ttl = v.call_ttl
  channel.dedupe_ttl = v.dedupe_ttl
  if channel.enhanced and channel.speech_model ~= "phone_call" then
    error(("twilio_voice: `enhanced: true` needs `speech_model: phone_call`, not %s")
      :format(channel.speech_model), 0)
  end
  if channel.speech_timeout == "auto" and channel.speech_model ~= "numbers_and_commands" then
    error(("twilio_voice: `speech_timeout: auto` needs `speech_model: numbers_and_commands`, "
      .. "not %s"):format(channel.speech_model), 0)
  end
end

---------------------------------------------------------------------------------------------------
-- Incoming: the signature. Twilio signs voice webhooks exactly as messaging ones: the check of
-- lua/switchboard/twilio_signature.lua (docs/channels/twilio.md, "Signatures").

function channel.verify(req)
  return signature.verify(req, channel.auth_token)
end

channel.reject = util.forbidden

---------------------------------------------------------------------------------------------------
-- TwiML, as twilio.twiml.VoiceResponse writes it.

-- What XML 1.0 cannot carry is dropped (C0 controls but tab, LF and CR; U+FFFE, U+FFFF), after
-- invalid UTF-8 became U+FFFD: Twilio would refuse the whole document.
local function xml_chars(s)
  s = signature.utf8_repaired(s)
  s = s:gsub("[\0-\8\11\12\14-\31]", "")
  return (s:gsub("\239\191[\190\191]", ""))
end

local TEXT_ESCAPES = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ["\r"] = "&#xD;" }
local ATTR_ESCAPES = { ["&"] = "&amp;", ["<"] = "&lt;", ['"'] = "&quot;", ["\t"] = "&#x9;",
                       ["\n"] = "&#xA;", ["\r"] = "&#xD;" }

local function text_escape(s)
  return (s:gsub("[&<>\r]", TEXT_ESCAPES))
end

local function attr_escape(s)
  return (s:gsub('[&<"\t\n\r]', ATTR_ESCAPES))
end

local function say(text)
  return ('<Say voice="%s">%s</Say>'):format(attr_escape(channel.assistant_voice),
    text_escape(text))
end

-- Rasa's Gather, its attributes in the order the Python library writes them (sorted).
local function gather_open()
  return ('<Gather action="%s" actionOnEmptyResult="true" enhanced="%s" input="speech" '
    .. 'speechModel="%s" speechTimeout="%s">'):format(attr_escape(ACTION),
    channel.enhanced and "true" or "false", attr_escape(channel.speech_model),
    attr_escape(channel.speech_timeout))
end

-- Rasa's _build_twilio_voice_response: each text said, a one-second pause after each but the
-- last, which is said inside the Gather that listens for the answer. After a hangup the last
-- text is said as the others, followed by <Hangup/>. No text at all is an empty Response, which
-- ends the call.
local function twiml(texts, hangup)
  local out = { '<?xml version="1.0" encoding="UTF-8"?>' }
  if #texts == 0 and not hangup then
    out[2] = "<Response/>"
    return table.concat(out)
  end
  out[#out + 1] = "<Response>"
  for i, text in ipairs(texts) do
    local last = i == #texts
    if last and not hangup then
      out[#out + 1] = gather_open() .. say(text) .. "</Gather>"
    else
      out[#out + 1] = say(text)
      if not last then
        out[#out + 1] = '<Pause length="1"/>'
      end
    end
  end
  if hangup then
    out[#out + 1] = "<Hangup/>"
  end
  out[#out + 1] = "</Response>"
  return table.concat(out)
end

local function answer(body)
  return { status = 200, body = body, content_type = CONTENT_TYPE }
end

---------------------------------------------------------------------------------------------------
-- What the bot said: the collected replies become the texts to say.

-- Code points a voice cannot say (Rasa warns about emoji too).
local function has_emoji(text)
  for _, c in utf8.codes(text) do
    if (c >= 0x1F000 and c <= 0x1FAFF) or (c >= 0x2600 and c <= 0x27BF)
        or (c >= 0x2B00 and c <= 0x2BFF) or c == 0xFE0F then
      return true
    end
  end
  return false
end

local function is_hangup(custom)
  return type(custom) == "table" and custom.hangup == true
end

local function plural(n, one, many)
  return n == 1 and one or many
end

-- The collected shapes -> the texts to say (Rasa's TwilioVoiceCollectingOutputChannel: texts,
-- then the titles of buttons and quick replies; images left out with a warning) and whether
-- the bot hung up.
local function spoken(messages)
  local texts, hangup, dropped, emoji = {}, false, 0, false
  local function add(text)
    if type(text) ~= "string" and type(text) ~= "number" then
      return
    end
    text = xml_chars(tostring(text))
    if sb.strip(text) == "" then
      return
    end
    if not emoji and has_emoji(text) then
      emoji = true
      sb.log.warn("twilio_voice: a text has an emoji, which a call reads out by its name or "
        .. "skips; give the voice channel a text without one: %s", text)
    end
    texts[#texts + 1] = text
  end
  for _, m in ipairs(messages) do
    if hangup then
      dropped = dropped + 1
    elseif is_hangup(m.custom) then
      hangup = true
    else
      add(m.text)
      if type(m.buttons) == "table" then
        for _, button in ipairs(m.buttons) do
          if type(button) == "table" then add(button.title) end
        end
      end
      if m.image ~= nil then
        sb.log.warn("twilio_voice: an image was left out of the answer (a call cannot show it; "
          .. "give the voice channel a text instead): %s", util.as_text(m.image))
      end
      if m.attachment ~= nil then
        sb.log.warn("twilio_voice: an attachment was left out of the answer (a call cannot "
          .. "send it): %s", util.as_text(m.attachment))
      end
      if m.custom ~= nil then
        sb.log.warn("twilio_voice: a custom payload was left out of the answer (only "
          .. '{"hangup": true} means something on a call): %s', util.as_text(m.custom))
      end
    end
  end
  if dropped > 0 then
    sb.log.warn("twilio_voice: %d %s after the hangup %s left out", dropped,
      plural(dropped, "message", "messages"), plural(dropped, "was", "were"))
  end
  return texts, hangup
end

---------------------------------------------------------------------------------------------------
-- What a call remembers in sb.store: its last message (for a reprompt) and each turn's answer
-- (for Twilio's retries).

local function nonempty(v)
  return util.nonempty_string(v) and v or nil
end

local function key_id(id)
  return #id > MAX_KEY_ID and sb.hex(sb.digest("sha256", id)) or id
end

local function last_key(call_sid)
  return "twilio_voice:last:" .. key_id(call_sid)
end

local function answer_key(turn)
  return "twilio_voice:answer:" .. key_id(turn)
end

-- A store call that fails (Redis unreachable) is logged and reads as nil: the call goes on.
local function safely(fn, ...)
  local ok, value, err = pcall(fn, ...)
  if not ok or (value == nil and err ~= nil) then
    sb.log.warn("twilio_voice: the store failed: %s", tostring(ok and err or value))
    return nil
  end
  return value
end

-- The turn a request is: its CallSid and the I-Twilio-Idempotency-Token Twilio sends again with
-- each retry of a webhook call; nil without a token (each try is then processed).
local function turn_of(req, call_sid)
  local token = nonempty(req.headers["i-twilio-idempotency-token"])
  return token and ((call_sid or "") .. ":" .. token) or nil
end

-- Rasa's answer when the caller said nothing: the last message said in this call, else
-- reprompt_fallback_phrase.
local function reprompt(call_sid)
  local last = call_sid and safely(store.get, last_key(call_sid))
  if type(last) ~= "string" or last == "" then
    last = xml_chars(channel.reprompt_fallback_phrase)
  end
  return answer(twiml({ last }, false))
end

-- A retried turn: the answer its first try made, once there is one.
local function replay(turn, call_sid)
  local waited = 0
  while true do
    local body = safely(store.get, answer_key(turn))
    if type(body) == "string" then
      return answer(body)
    end
    if waited >= REPLAY_WAIT then
      break
    end
    sb.sleep(REPLAY_POLL)
    waited = waited + REPLAY_POLL
  end
  sb.log.warn("twilio_voice: the first try of turn %s gave no answer within %d s: this try "
    .. "repeats the call's last message", turn, REPLAY_WAIT)
  return reprompt(call_sid)
end

local function metadata_of(form)
  return {
    call_sid = nonempty(form.CallSid),
    call_status = nonempty(form.CallStatus),
    to = nonempty(form.To),
    confidence = tonumber(form.Confidence),
  }
end

---------------------------------------------------------------------------------------------------
-- A turn.

function channel.receive(req)
  local form = req.form
  local call_sid = nonempty(form.CallSid)
  local text = form.SpeechResult
  if text ~= nil and sb.strip(text) == "" then
    text = nil                              -- Twilio heard nothing
  end
  if text == nil and form.CallStatus == "ringing" then
    text = channel.initial_prompt           -- a new call: Rasa's greeting text
  end
  if text == nil then
    return {}, reprompt(call_sid)
  end
  local turn = turn_of(req, call_sid)
  if turn and not util.first_delivery(channel.name, turn, channel.dedupe_ttl) then
    sb.log.info("twilio_voice: turn %s was already received: answered as the first time, not "
      .. "processed again", turn)
    return {}, replay(turn, call_sid)
  end
  return { { sender_id = nonempty(form.From), text = text, metadata = metadata_of(form) } }
end

function channel.respond(messages, req)
  local call_sid = nonempty(req.form.CallSid)
  local texts, hangup = spoken(messages)
  local body = twiml(texts, hangup)
  if call_sid and hangup then
    safely(store.del, last_key(call_sid))
  elseif call_sid and #texts > 0 then
    safely(store.set, last_key(call_sid), texts[#texts], channel.call_ttl)
  end
  local turn = turn_of(req, call_sid)
  if turn then
    safely(store.set, answer_key(turn), body, ANSWER_TTL)
  end
  return answer(body)
end

return channel
