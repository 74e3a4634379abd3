-- SPDX-License-Identifier: MIT
-- The bot of an offline run (`switchboard test`, `switchboard try`, docs/testing.md): it records
-- every UserMessage it gets, then answers with the case's scripted replies, with a recording's
-- turns, with a Lua bot of the project (`lua`), or by echoing the text.
--
-- bot:
--   replies: [{text: "Hi"}, {image: "https://x/y.png"}]   # sent for every message, in order
--   turns:                                                 # or one entry per message, in order
--     - replies: [{text: "Hi"}, {out: send_text_message, args: ["raw"]}]
--       fail: {kind: timeout, message: "...", status: 504} # then the bot fails like this
--   lua: bots/faq.lua                                      # or a Lua bot, relative to the case
--   echo: true                                             # the default without the others
local record = require("switchboard.case_log").record

local type, pairs, ipairs, error, setmetatable, unpack = type, pairs, ipairs, error, setmetatable,
  table.unpack

local bot = {}
local replies, turns, inner
local turn_count = 0

-- How the HTTP bot's failures look to the pipeline (http_bot.lua): the pipeline knows them by
-- the metatable's name and hands their kind to channel.on_bot_error.
local FAILURE = {
  __metatable = "switchboard.bot_failure",
  __tostring = function(f) return f.message end,
}

local function fail(failure)
  local kind, message = failure.kind, failure.message or "the bot failed"
  if kind == "script_error" or kind == "deadline" or type(kind) ~= "string" then
    error(message, 0) -- the deadline's text is what the pipeline recognises it by
  end
  local status = math.tointeger(failure.status)
  error(setmetatable({ kind = kind, status = status, message = message }, FAILURE), 0)
end

-- One reply: a bot message in Rasa's shape, or a direct sender call {out = name, args = [...]}.
local function send(out, reply)
  if type(reply) == "table" and type(reply.out) == "string" then
    local args, n = reply.args or {}, 0
    for k in pairs(args) do
      if type(k) == "number" and k > n then n = k end
    end
    local sender = out[reply.out]
    if type(sender) ~= "function" then
      error(("bot turn: out has no sender %q"):format(reply.out), 0)
    end
    return sender(out, unpack(args, 1, n))
  end
  return out:send_response(reply)
end

function bot.init(config)
  config = config or {}
  replies, turns = config.replies, config.turns
  turn_count = 0
  if config.lua then
    inner = dofile(config.lua)
    if type(inner) ~= "table" or type(inner.handle) ~= "function" then
      error(("%s: a bot must return a table with handle(msg, out)"):format(config.lua), 0)
    end
    if inner.init then
      inner.init(config)
    end
  end
end

function bot.handle(msg, out)
  record(msg)
  if inner then
    return inner.handle(msg, out)
  end
  if turns then
    turn_count = turn_count + 1
    local turn = turns[turn_count] or {}
    for _, reply in ipairs(turn.replies or {}) do
      send(out, reply)
    end
    if turn.fail then
      fail(turn.fail)
    end
    return
  end
  if replies then
    for _, reply in ipairs(replies) do
      send(out, reply)
    end
    return
  end
  if msg.text ~= nil then
    out:send_text_message(msg.text)
  end
end

return bot
