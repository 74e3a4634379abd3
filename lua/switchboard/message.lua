-- SPDX-License-Identifier: MIT
-- The UserMessage rules of docs/contract.md §3.5: what a channel returns becomes exactly what the
-- bot gets. Everything it uses from outside is captured here, at load
-- (docs/reloading-and-guards.md, "What scripts cannot do").
local type, tostring, next, error = type, tostring, next, error
local math_type, floor = math.type, math.floor
local format = string.format

local sb = require "switchboard"

local null = sb.json.null
local http_error, uuid = sb.http_error, sb.uuid
local M = {}

local function absent(v)
  return v == nil or v == null
end

-- Ids become strings: 123 (or the float 123.0) -> "123".
local function id_string(v, field)
  local t = type(v)
  if t == "string" then
    return v
  elseif t == "number" then
    if math_type(v) == "float" and v == floor(v) and v > -2 ^ 63 and v < 2 ^ 63 then
      return format("%d", v)
    end
    return tostring(v)
  elseif t == "boolean" then
    return tostring(v)
  end
  http_error(400, "invalid_message", format("%s must be a string or a number, not a %s", field, t))
end

local strip = sb.strip

-- Python's truthiness, which Rasa's `value or default` relies on.
local function falsy(v)
  return v == nil or v == null or v == false or v == 0 or v == ""
    or (type(v) == "table" and next(v) == nil)
end

-- Normalize message table `m` from channel `channel_name`; `headers` are the request headers.
function M.normalize(m, channel_name, headers)
  if type(m) ~= "table" then
    error(format("channel.receive must return an array of message tables; an element is a %s",
      type(m)), 0)
  end
  local text = m.text
  if absent(text) then
    text = nil
  elseif type(text) == "string" then
    text = strip(text)
  else
    http_error(400, "invalid_message",
      format("the message text must be a string, not a %s", type(text)))
  end
  local input_channel = m.input_channel
  if falsy(input_channel) then
    input_channel = channel_name
  else
    input_channel = id_string(input_channel, "input_channel")
  end
  local metadata = m.metadata
  if metadata == null then metadata = nil end
  return {
    text = text,
    sender_id = absent(m.sender_id) and "default" or id_string(m.sender_id, "sender_id"),
    message_id = absent(m.message_id) and uuid() or id_string(m.message_id, "message_id"),
    input_channel = input_channel,
    metadata = metadata,
    parse_data = m.parse_data,
    headers = headers,
  }
end

return M
