-- SPDX-License-Identifier: MIT
-- The hangouts channel: Google Chat (formerly Hangouts Chat), the counterpart of Rasa's
-- HangoutsInput (incoming) and HangoutsOutput (the answer). docs/channels/hangouts.md is the
-- user's guide.
--
-- Incoming: Google Chat posts one event (JSON) per request. MESSAGE gives the message's text,
-- CARD_CLICKED the clicked action's method name, ADDED_TO_SPACE and REMOVED_FROM_SPACE the
-- configured intent names; the sender is the user's display name (Rasa's), the metadata names
-- the room. Other events are answered {} and dropped. With project_id, the request's bearer
-- token must be an RS256 JWT from chat@system.gserviceaccount.com for that audience, signed by a
-- key whose certificate certs_url lists.
--
-- The answer: the bot's replies merged into one Google Chat message, as Rasa's HangoutsOutput
-- merges them: texts joined with a space; once any reply is a card, every text becomes a
-- textParagraph card and the cards are listed in order.
--
-- hangouts:
--   project_id: "123456789012"               # optional: check the tokens (the audience)
--   hangouts_user_added_intent_name: /user_added
--   hangouts_room_added_intent_name: /room_added
--   hangouts_removed_intent_name: /bot_removed
--   certs_url: "https://www.googleapis.com/service_accounts/v1/metadata/x509/chat@system.gserviceaccount.com"
--   timeout: 10                              # seconds for a fetch of the certificates
--   refetch_interval: 30                     # seconds between two fetches for an unknown kid
local sb = require "switchboard"
local util = require "switchboard.channel"

local json = sb.json
local non_null, nonempty_string, as_text = util.non_null, util.nonempty_string, util.as_text

local channel = { name = "hangouts" }

channel.parameters = {
  project_id = { type = "string", number_as_text = true },
  hangouts_user_added_intent_name = { type = "string", default = "/user_added" },
  hangouts_room_added_intent_name = { type = "string", default = "/room_added" },
  hangouts_removed_intent_name = { type = "string", default = "/bot_removed" },
  certs_url = { type = "url", default = "https://www.googleapis.com/service_accounts/v1/" ..
    "metadata/x509/chat@system.gserviceaccount.com" },
  timeout = { type = "seconds", default = 10 },
  refetch_interval = { type = "seconds", default = 30 },
}

local ISSUER = "chat@system.gserviceaccount.com"
local LEEWAY = 10       -- seconds of clock difference allowed in exp, nbf and iat
local MAX_AGE = 3600    -- seconds the certificates are kept when the answer says nothing

-- The parameters and Google's certificates (a map of kid -> PEM certificate, which
-- util.jwks_cache keeps as it keeps a JWK set), per worker.
local cfg = {}
local certs

function channel.init(config)
  cfg = util.params(config, channel):values()
  certs = util.jwks_cache(cfg.certs_url, { refetch_interval = cfg.refetch_interval,
    timeout = cfg.timeout, max_age = MAX_AGE })
end

-- ---- incoming: the token ---------------------------------------------------------------------

function channel.verify(req)
  if not cfg.project_id then
    return true
  end
  local auth = req.headers.authorization
  local token = nonempty_string(auth) and auth:match("^Bearer%s+(%S+)%s*$")
  if not token then
    return false, "no Bearer token in the Authorization header"
  end
  local claims, reason = certs:verify(token, { algorithms = "RS256", iss = ISSUER,
    aud = cfg.project_id, leeway = LEEWAY, require = "exp" })
  if not claims then
    return false, "token refused: " .. reason
  end
  return true
end

-- ---- incoming: the event ---------------------------------------------------------------------

local function field(t, key)
  return type(t) == "table" and t[key] or nil
end

-- The room's name (Rasa's _extract_room): a space of type ROOM (or, in events without the old
-- `type`, of spaceType SPACE); nil in a direct message.
local function room_of(space)
  if type(space) ~= "table" then
    return nil
  end
  if space.type == "ROOM" or (space.type == nil and space.spaceType == "SPACE") then
    return space.displayName
  end
  return nil
end

-- The event's text (Rasa's _extract_message), or nil for an event Rasa has no text for.
local function text_of(event, room)
  local kind = event.type
  if kind == "MESSAGE" then
    return field(event.message, "text")
  elseif kind == "CARD_CLICKED" then
    return field(event.action, "actionMethodName")
  elseif kind == "ADDED_TO_SPACE" then
    return room and cfg.hangouts_room_added_intent_name or cfg.hangouts_user_added_intent_name
  elseif kind == "REMOVED_FROM_SPACE" then
    return cfg.hangouts_removed_intent_name
  end
  return nil
end

local EMPTY = { json = {} }   -- Google Chat's "no answer": an empty message object

function channel.receive(req)
  local event = req.json
  if not util.is_object(event, req.body) then
    sb.http_error(400, "invalid_body", "a Google Chat event must be a JSON object")
  end
  local room = room_of(event.space)
  local text = text_of(event, room)
  if text == nil then
    sb.log.info("hangouts: %s event ignored", as_text(event.type))
    return {}, EMPTY
  end
  -- Rasa's _extract_sender: the display name of the message's sender, else of the event's user.
  local user = event.type == "MESSAGE" and field(event.message, "sender") or event.user
  return { {
    sender_id = field(user, "displayName"),
    text = text,
    metadata = {
      room = room or json.null,
      space = field(event.space, "name"),
      user = field(user, "name"),
      thread = field(field(event.message, "thread"), "name"),
    },
  } }
end

-- ---- the answer: Rasa's HangoutsOutput -------------------------------------------------------

-- Python's truthiness, which HangoutsOutput tests its keys with.
local function truthy(v)
  return v ~= nil and v ~= false and v ~= json.null and v ~= "" and v ~= 0
    and not (type(v) == "table" and next(v) == nil)
end

local function card(widgets)
  return { sections = { { widgets = widgets } } }
end

local function text_card(text)
  return card({ { textParagraph = { text = text } } })
end

-- Rasa's _text_button_card: every button needs a title and a payload, else nil.
local function button_card(text, buttons)
  local widgets = json.array()
  for i, b in ipairs(type(buttons) == "table" and buttons or {}) do
    if type(b) ~= "table" or b.title == nil or b.payload == nil then
      return nil
    end
    widgets[i] = { textButton = { text = b.title,
      onClick = { action = { actionMethodName = b.payload } } } }
  end
  local list = {}
  if non_null(text) then
    list[1] = { textParagraph = { text = text } }
  end
  list[#list + 1] = { buttons = widgets }
  return { cards = { card(list) } }
end

local function combine(a, b)
  local cards = {}
  for _, c in ipairs(a.cards) do cards[#cards + 1] = c end
  for _, c in ipairs(b.cards) do cards[#cards + 1] = c end
  return { cards = cards }
end

-- Rasa's _persist_message: the answer so far and one more message -> the answer.
local function persist(current, message)
  local state = truthy(current.text) and "text" or (truthy(current.cards) and "cards" or nil)
  local new = truthy(message.text) and "text" or (truthy(message.cards) and "cards" or nil)
  if not new then
    return nil, "a message to Google Chat must contain 'text' or 'cards'"
  end
  if new == "text" and state == "text" then
    return { text = as_text(current.text) .. " " .. as_text(message.text) }
  elseif new == "cards" and state == "cards" then
    return combine(current, message)
  elseif new == "text" and state == "cards" then
    return combine(current, { cards = { text_card(message.text) } })
  elseif new == "cards" and state == "text" then
    return combine({ cards = { text_card(current.text) } }, message)
  elseif new == "text" then
    return { text = message.text }
  end
  return message
end

-- One collected shape as the message HangoutsOutput persists for it.
local function message_of(shape)
  if shape.buttons ~= nil then
    local m = button_card(shape.text, shape.buttons)
    if not m then
      return nil, "buttons must be a list of dicts with 'title' and 'payload' as keys"
    end
    return m
  elseif shape.text ~= nil then
    return { text = shape.text }
  elseif shape.image ~= nil then
    return { cards = { card({ { image = { imageUrl = shape.image } } }) } }
  elseif shape.attachment ~= nil then
    return { text = as_text(shape.attachment) }
  elseif util.is_object(shape.custom) then
    return shape.custom
  end
  return nil, "custom JSON must be an object (a Google Chat message)"
end

function channel.respond(messages)
  local answer = {}
  for _, shape in ipairs(messages) do
    local message, err = message_of(shape)
    local merged
    if message then
      merged, err = persist(answer, message)
    end
    if merged then
      answer = merged
    else
      sb.log.error("hangouts: a reply is left out of the answer: %s", err)
    end
  end
  return { status = 200, json = answer }
end

return channel
