-- SPDX-License-Identifier: MIT
-- The HTTP bot (docs/contract.md §5.1): each UserMessage is POSTed to `url` in the JSON of Rasa's
-- REST channel, and each bot message of the JSON array it answers is dispatched as in
-- docs/contract.md §4.1. A refused connection, a non-2xx answer, invalid JSON or a timeout raises
-- a failure that carries its kind (refused, timeout, bad_status, bad_json), which the pipeline
-- logs and hands to the channel's on_bot_error (the answer keeps what was collected before).
-- Everything it uses from outside is captured here, at load (docs/reloading-and-guards.md, "What
-- scripts cannot do").
local type, ipairs, pcall, error, getmetatable, setmetatable =
  type, ipairs, pcall, error, getmetatable, setmetatable
local format, sub, gsub = string.format, string.sub, string.gsub

local sb = require "switchboard"

local request, decode, null = sb.http.request, sb.json.decode, sb.json.null
local bot = {}
-- What getmetatable gives for every marked array (the same read-only view each time).
local JSON_ARRAY = getmetatable(sb.json.array())

-- Rasa's REST channel sends every key; an absent value is null.
local function value_or_null(v)
  if v == nil then
    return null
  end
  return v
end

local function is_array(v)
  return type(v) == "table" and (v[1] ~= nil or getmetatable(v) == JSON_ARRAY)
end

-- A failure: {kind =, message =, status =} that reads as its message (tostring, the log). The
-- pipeline knows it by its metatable's name (getmetatable gives "switchboard.bot_failure").
local FAILURE = {
  __tostring = function(failure) return failure.message end,
  __metatable = "switchboard.bot_failure",
}

local function fail(kind, status, fmt, ...)
  local message = gsub(format(fmt, ...), "[\r\n]+", " ")
  error(setmetatable({ kind = kind, status = status, message = message }, FAILURE), 0)
end

-- What sb.http.request's `err` means: no answer in time, an answer too large to read, or none
-- at all (connection refused, name not resolved, TLS failure).
local function no_answer_kind(err)
  if err == "timed out" then
    return "timeout"
  elseif err == "the answer is larger than 16 MiB" then
    return "bad_json"
  end
  return "refused"
end

function bot.init(config)
  bot.url = config.url
  bot.timeout = config.timeout or 10
  bot.headers = config.headers
end

function bot.handle(msg, out)
  local res, err = request({
    method = "POST",
    url = bot.url,
    headers = bot.headers,
    timeout = bot.timeout,
    json = {
      sender = msg.sender_id,
      message = value_or_null(msg.text),
      metadata = value_or_null(msg.metadata),
      input_channel = msg.input_channel,
      message_id = msg.message_id,
    },
  })
  if not res then
    fail(no_answer_kind(err), nil, "the HTTP bot at %s did not answer: %s", bot.url, err)
  end
  if res.status < 200 or res.status > 299 then
    fail("bad_status", res.status, "the HTTP bot at %s answered %d: %s", bot.url, res.status,
      sub(res.body, 1, 200))
  end
  local ok, messages = pcall(decode, res.body)
  if not ok or not is_array(messages) then
    fail("bad_json", nil,
      "the HTTP bot at %s answered something that is not a JSON array of messages: %s",
      bot.url, sub(res.body, 1, 200))
  end
  for _, message in ipairs(messages) do
    if type(message) == "table" then
      message.recipient_id = nil
      out:send_response(message)
    end
  end
end

return bot
