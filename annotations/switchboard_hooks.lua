---@meta switchboard.hooks
-- SPDX-License-Identifier: MIT
-- Editor annotations (lua-language-server) for `require "switchboard.hooks"`, the host's list of
-- channel-table fields (src/channel_hooks.c), read-only. Never loaded by the host.

---@alias switchboard.HookKind "lifecycle"|"request"|"field"|"sender"|"setting"

---@alias switchboard.ParameterType "string"|"url"|"base_url"|"flag"|"number"|"seconds"|"list"|"map"

---@class switchboard.hooks
---@field fields string[] The per-field hooks the default `receive` calls, in order.
---@field senders string[] The per-kind senders (`send_response` is not one of them).
---@field kinds table<string, switchboard.HookKind> Every known field of a channel table, and its kind.
---@field parameter_types switchboard.ParameterType[] The types a `parameters` declaration may give.
local hooks = {}

return hooks
