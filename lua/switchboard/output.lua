-- SPDX-License-Identifier: MIT
-- Where bot messages go: the dispatch of one bot message (docs/contract.md §4.1) and the collected
-- shapes (docs/contract.md §4.2), mirroring Rasa's OutputChannel and CollectingOutputChannel.
--
-- A "sink" is an object whose senders are methods taking the recipient first, then the values,
-- then a table of extras, and last the UserMessage being answered:
-- sink:send_text_message(recipient_id, text, extras, msg), ... The collector below is the sink
-- of collect and stream mode; channel_sink(channel) wraps a push channel's plain functions, which
-- get the same arguments (a channel that replies in a thread or channel reads them from msg).
-- A sender the sink lacks falls back as Rasa's OutputChannel does. This is Lua, not C, because a
-- sender may wait (sb.http, sb.sleep), which needs every frame between it and the job's
-- coroutine to be yieldable.
--
-- Everything this file uses from outside is captured here, at load, and the metatables of the
-- objects a bot gets (`out`, its sink) are protected: a script can change neither
-- (docs/reloading-and-guards.md, "What scripts cannot do").
local type, tostring, next, pairs, ipairs, error, pcall, setmetatable =
  type, tostring, next, pairs, ipairs, error, pcall, setmetatable
local find, sub, format = string.find, string.sub, string.format
local sort, concat, pack, unpack = table.sort, table.concat, table.pack, table.unpack

local sb = require "switchboard"

local encode, null, array = sb.json.encode, sb.json.null, sb.json.array
local log_error = sb.log.error
local M = {}

-- The per-kind senders, from the host's one list of hook names (channel_hooks.c).
M.SENDERS = require("switchboard.hooks").senders

-- Rasa tests message.get(key): nil, JSON null, false, "", 0 and empty tables count as absent.
local function present(v)
  if v == nil or v == false or v == null or v == "" or v == 0 then
    return false
  end
  return type(v) ~= "table" or next(v) ~= nil
end
M.present = present

-- A shallow copy.
local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end
M.copy = copy

local fallback = {}

-- Call sender `name` of the sink, or its fallback.
local function call(sink, name, recipient, ...)
  local sender = sink[name]
  if sender then
    return sender(sink, recipient, ...)
  end
  return fallback[name](sink, recipient, ...)
end
M.call = call

-- A table as its JSON text, anything else through tostring.
local function as_text(v)
  if type(v) == "table" then
    return encode(v)
  end
  return tostring(v)
end
M.as_text = as_text

-- Python's json.dumps(d, sort_keys=True) layout, for the extra keys of a button.
local function sorted_json(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    parts[i] = encode(k) .. ": " .. encode(t[k])
  end
  return "{" .. concat(parts, ", ") .. "}"
end

-- "<n>: <title> (<payload>)" as Rasa's button_to_string writes it.
function M.button_to_string(button, index)
  local rest = copy(button)
  local title = rest.title or ""
  rest.title = nil
  local payload = ""
  if rest.payload ~= nil then
    payload = " (" .. as_text(rest.payload) .. ")"
    rest.payload = nil
  end
  local details = next(rest) ~= nil and (" - " .. sorted_json(rest)) or ""
  return format("%d: %s%s%s", index, as_text(title), payload, details)
end

function fallback.send_text_message(sink)
  error("the channel defines no send_text_message, which every other sender falls back to", 0)
end

function fallback.send_image_url(sink, recipient, image, _, msg)
  return call(sink, "send_text_message", recipient, "Image: " .. as_text(image), {}, msg)
end

function fallback.send_attachment(sink, recipient, attachment, _, msg)
  return call(sink, "send_text_message", recipient, "Attachment: " .. as_text(attachment), {},
    msg)
end

function fallback.send_text_with_buttons(sink, recipient, text, buttons, _, msg)
  if text ~= nil and text ~= null then
    call(sink, "send_text_message", recipient, text, {}, msg)
  end
  for i, button in ipairs(buttons or {}) do
    call(sink, "send_text_message", recipient, M.button_to_string(button, i), {}, msg)
  end
end

-- As Rasa 3's OutputChannel.send_quick_replies: the quick replies as buttons, without the
-- message's other keys (extras such as button_type are not passed on).
function fallback.send_quick_replies(sink, recipient, text, quick_replies, _, msg)
  return call(sink, "send_text_with_buttons", recipient, text, quick_replies, {}, msg)
end

function fallback.send_elements(sink, recipient, elements, _, msg)
  for _, element in ipairs(elements) do
    local text = format("%s : %s", as_text(element.title or ""), as_text(element.subtitle or ""))
    call(sink, "send_text_with_buttons", recipient, text, element.buttons or array(), {}, msg)
  end
end

function fallback.send_custom_json(sink, recipient, value, _, msg)
  return call(sink, "send_text_message", recipient, encode(value), {}, msg)
end

-- What follows the text part of a message, in Rasa's order: key, sender.
local AFTER_TEXT = {
  { "custom", "send_custom_json" },
  { "image", "send_image_url" },
  { "attachment", "send_attachment" },
  { "elements", "send_elements" },
}

-- Dispatch one bot message in Rasa's order. A sink with send_response handles it whole. `msg`
-- is the UserMessage being answered (passed on to every sender).
function M.dispatch(sink, recipient, message, msg)
  if type(message) ~= "table" then
    error(format("a bot message must be a table, not %s", type(message)), 2)
  end
  if sink.send_response then
    return sink:send_response(recipient, message, msg)
  end
  local m = copy(message)
  local function take(key)
    local v = m[key]
    m[key] = nil
    return v
  end
  if present(m.quick_replies) then
    local text, quick_replies = take("text"), take("quick_replies")
    call(sink, "send_quick_replies", recipient, text, quick_replies, copy(m), msg)
  elseif present(m.buttons) then
    local text, buttons = take("text"), take("buttons")
    call(sink, "send_text_with_buttons", recipient, text, buttons, copy(m), msg)
  elseif present(m.text) then
    call(sink, "send_text_message", recipient, take("text"), copy(m), msg)
  end
  for _, after in ipairs(AFTER_TEXT) do
    local key, sender = after[1], after[2]
    if present(m[key]) then
      call(sink, sender, recipient, take(key), copy(m), msg)
    end
  end
end

-- Split on blank lines exactly as Python's text.split("\n\n") does (parts are not stripped).
local function split_blank_lines(text)
  local parts, start = {}, 1
  while true do
    local i = find(text, "\n\n", start, true)
    if not i then
      parts[#parts + 1] = sub(text, start)
      return parts
    end
    parts[#parts + 1] = sub(text, start, i - 1)
    start = i + 2
  end
end

local strip = sb.strip

-- The collecting sink: stores the §4.2 shapes in a JSON array and calls on_message(shape) for
-- each one as it is stored (streaming writes it out there). Returns sink, array. The methods
-- live in a table of their own, so no `sink.__index` leads a script to them.
local Collector = {}
local collector_mt = { __index = Collector, __metatable = false }

function M.collector(on_message)
  local sink = setmetatable({ messages = array(), on_message = on_message }, collector_mt)
  return sink, sink.messages
end

function Collector:store(shape)
  local messages = self.messages
  messages[#messages + 1] = shape
  if self.on_message then
    self.on_message(shape)
  end
end

function Collector:send_text_message(recipient, text)
  if text == nil or text == null then
    return
  end
  text = strip(as_text(text))
  if not find(text, "\n\n", 1, true) then
    return self:store({ recipient_id = recipient, text = text })
  end
  for _, part in ipairs(split_blank_lines(text)) do
    self:store({ recipient_id = recipient, text = part })
  end
end

function Collector:send_text_with_buttons(recipient, text, buttons)
  if text == null then text = nil end
  self:store({ recipient_id = recipient, text = text, buttons = buttons })
end

function Collector:send_quick_replies(recipient, text, quick_replies)
  return self:send_text_with_buttons(recipient, text, quick_replies)
end

function Collector:send_image_url(recipient, image)
  self:store({ recipient_id = recipient, image = image })
end

function Collector:send_attachment(recipient, attachment)
  self:store({ recipient_id = recipient, attachment = attachment })
end

function Collector:send_custom_json(recipient, value)
  self:store({ recipient_id = recipient, custom = value })
end

-- A push channel as a sink: its senders are plain functions (recipient_id, ..., extras). A
-- channel with send_response but without some per-kind sender gets that kind as a message
-- table through send_response, so every bot message reaches it. Made once per channel table and
-- shared by its requests, so the bot gets it read-only.
local channel_sinks = setmetatable({}, { __mode = "k" })
-- A channel's sink -> the senders the channel defines itself, for PushingOut below.
local own_senders = setmetatable({}, { __mode = "k" })

local function refuse_write()
  error("a channel's sink is read-only (shared by every request of the channel)", 2)
end

local function with(extras, fields)
  local message = copy(extras or {})
  for k, v in pairs(fields) do message[k] = v end
  return message
end

-- Per kind: how many values precede msg, and the message table a sender call stands for.
local ARITY = {
  send_text_message = 2, send_image_url = 2, send_attachment = 2, send_elements = 2,
  send_custom_json = 2, send_text_with_buttons = 3, send_quick_replies = 3,
}
local AS_MESSAGE = {
  send_text_message = function(text, extras) return with(extras, { text = text }) end,
  send_image_url = function(url, extras) return with(extras, { image = url }) end,
  send_attachment = function(value, extras) return with(extras, { attachment = value }) end,
  send_text_with_buttons = function(text, buttons, extras)
    return with(extras, { text = text, buttons = buttons })
  end,
  send_quick_replies = function(text, quick_replies, extras)
    return with(extras, { text = text, quick_replies = quick_replies })
  end,
  send_elements = function(elements, extras) return with(extras, { elements = elements }) end,
  send_custom_json = function(value, extras) return with(extras, { custom = value }) end,
}

function M.channel_sink(channel)
  local sink = channel_sinks[channel]
  if sink then
    return sink
  end
  sink = {}
  local own = {}
  local send_response = channel.send_response
  for _, name in ipairs(M.SENDERS) do
    local f = channel[name]
    if f then
      own[name] = f
      sink[name] = function(_, ...) return f(...) end
    elseif send_response then
      local as_message, arity = AS_MESSAGE[name], ARITY[name]
      sink[name] = function(_, recipient, ...)
        local args = pack(...)
        return send_response(recipient, as_message(unpack(args, 1, arity)), args[arity + 1])
      end
    end
  end
  if send_response then
    sink.send_response = function(_, recipient, message, msg)
      return send_response(recipient, message, msg)
    end
  end
  sink = setmetatable({}, { __index = sink, __newindex = refuse_write, __metatable = false })
  channel_sinks[channel] = sink
  own_senders[sink] = own
  return sink
end

-- The `out` object a Lua bot gets: the senders bound to the message's sender. With `protect`
-- (push channels) a sender that raises is logged and the bot goes on (docs/contract.md §4 item 3).
local Out = {}
local out_mt = { __index = Out, __metatable = false }

-- With a collecting sink (collect and stream mode) the senders store their shape at once: the
-- same result as the dispatch through `send` below, without its calls and extras tables.
local CollectingOut = setmetatable({}, { __index = Out })
local collecting_out_mt = { __index = CollectingOut, __metatable = false }

-- With a push channel's sink, a sender the channel defines itself is called at once, protected,
-- with the arguments the dispatch through `send` would give it.
local PushingOut = setmetatable({}, { __index = Out })
local pushing_out_mt = { __index = PushingOut, __metatable = false }

function M.new_out(sink, recipient, protect, msg)
  local mt = out_mt
  if sink.store == Collector.store then
    mt = collecting_out_mt
  elseif protect and own_senders[sink] then
    mt = pushing_out_mt
  end
  return setmetatable({ sink = sink, recipient_id = recipient, protect = protect, msg = msg }, mt)
end

-- A protected send whose sender raised: logged, and the bot goes on.
local function send_failed(self, err)
  log_error("sending to %s failed: %s", tostring(self.recipient_id), tostring(err))
end

-- Callers pass the sender's values, extras, then msg.
local function send(self, name, ...)
  if not self.protect then
    return call(self.sink, name, self.recipient_id, ...)
  end
  local ok, err = pcall(call, self.sink, name, self.recipient_id, ...)
  if not ok then send_failed(self, err) end
end

-- Every sender takes extras last; the bot may leave them out.
function Out:send_text_message(text, extras)
  return send(self, "send_text_message", text, extras or {}, self.msg)
end
function Out:send_image_url(url, extras)
  return send(self, "send_image_url", url, extras or {}, self.msg)
end
function Out:send_attachment(value, extras)
  return send(self, "send_attachment", value, extras or {}, self.msg)
end
function Out:send_text_with_buttons(text, buttons, extras)
  return send(self, "send_text_with_buttons", text, buttons, extras or {}, self.msg)
end
function Out:send_quick_replies(text, quick_replies, extras)
  return send(self, "send_quick_replies", text, quick_replies, extras or {}, self.msg)
end
function Out:send_elements(elements, extras)
  return send(self, "send_elements", elements, extras or {}, self.msg)
end
function Out:send_custom_json(value, extras)
  return send(self, "send_custom_json", value, extras or {}, self.msg)
end

function CollectingOut:send_text_message(text)
  return Collector.send_text_message(self.sink, self.recipient_id, text)
end
function CollectingOut:send_text_with_buttons(text, buttons)
  return Collector.send_text_with_buttons(self.sink, self.recipient_id, text, buttons)
end
function CollectingOut:send_quick_replies(text, quick_replies)
  return Collector.send_text_with_buttons(self.sink, self.recipient_id, text, quick_replies)
end
function CollectingOut:send_image_url(url)
  return Collector.send_image_url(self.sink, self.recipient_id, url)
end
function CollectingOut:send_attachment(value)
  return Collector.send_attachment(self.sink, self.recipient_id, value)
end
function CollectingOut:send_custom_json(value)
  return Collector.send_custom_json(self.sink, self.recipient_id, value)
end

-- The senders taking one value (then extras), and those taking two (text and buttons).
for name, arity in pairs(ARITY) do
  if arity == 2 then
    PushingOut[name] = function(self, value, extras)
      local f = own_senders[self.sink][name]
      if not f then
        return Out[name](self, value, extras)
      end
      local ok, err = pcall(f, self.recipient_id, value, extras or {}, self.msg)
      if not ok then send_failed(self, err) end
    end
  else
    PushingOut[name] = function(self, text, values, extras)
      local f = own_senders[self.sink][name]
      if not f then
        return Out[name](self, text, values, extras)
      end
      local ok, err = pcall(f, self.recipient_id, text, values, extras or {}, self.msg)
      if not ok then send_failed(self, err) end
    end
  end
end

function Out:send_response(message)
  if not self.protect then
    return M.dispatch(self.sink, self.recipient_id, message, self.msg)
  end
  local ok, err = pcall(M.dispatch, self.sink, self.recipient_id, message, self.msg)
  if not ok then send_failed(self, err) end
end

return M
