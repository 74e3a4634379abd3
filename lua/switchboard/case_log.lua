-- SPDX-License-Identifier: MIT
-- What an offline run saw (docs/testing.md): the UserMessages the bot got, shared by the case bot
-- (which records them) and the runner (which takes them after each request). Functions only: the
-- module is read-only to scripts.
local M = {}
local messages = {}

function M.record(msg)
  local copy = {}
  for k, v in pairs(msg) do copy[k] = v end
  messages[#messages + 1] = copy
end

function M.take()
  local taken = messages
  messages = {}
  return taken
end

return M
