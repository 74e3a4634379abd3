-- SPDX-License-Identifier: MIT
-- The floor of the rest echo (bench/run.sh, row "floor"; docs/performance.md, "The floor"): a
-- pipeline that does only what any implementation of the contract must do for one rest
-- request, to measure how far below the real one (lua/switchboard/pipeline.lua) a faster
-- implementation, a C one included, could go. It decodes the body, makes the UserMessage (the C
-- rules, with the request's headers), takes the sender's turn and the deadline, calls the bot
-- protected with an `out` that collects, and encodes the answer. It leaves out what the
-- default hooks would let a shortcut skip: the hook dispatch, the response table, the channel's
-- before/after hooks, streaming, pushing, recording and the detailed error answers. Never used
-- to serve: run.sh starts a second host with SWITCHBOARD_HOME pointing at a copy of lua/ where
-- this file replaces pipeline.lua.
local sb = require "switchboard"
local output = require "switchboard.output"
local message = require "switchboard.message"

local encode, normalize_all = sb.json.encode, message.normalize_all
local collector, new_out = output.collector, output.new_out

local M = {}
local host, bot

function M.setup(host_functions, bot_table)
  host, bot = host_functions, bot_table
end

function M.run(_, channel, req)
  local body = req.json
  local msg = normalize_all({ { sender_id = body.sender, text = body.message } }, channel.name,
    req.headers)[1]
  local sink, collected = collector()
  host.message_begin(msg.sender_id) -- the sender's turn and the response deadline
  local ok, err = pcall(bot.handle, msg, new_out(sink, msg.sender_id, false, msg))
  host.message_end()
  if not ok then
    return 500, "application/json", encode({ error = "bot_error", message = tostring(err) })
  end
  return 200, "application/json", encode(collected)
end

function M.connection() end

return M
