/* SPDX-License-Identifier: MIT */
/* lua_message: the UserMessage rules of docs/contract.md §3.5 (what a channel returns becomes
 * exactly what the bot gets), as the host module `switchboard.message`:
 * normalize_all(list, channel_name, headers), for a channel's whole array of messages. In C
 * because every message of every channel goes through them (docs/performance.md). Uses: Lua, lua_sb (uuid, strip, HTTP errors). */
#ifndef SB_LUA_MESSAGE_H
#define SB_LUA_MESSAGE_H

#include <lua.h>

/* Push the module table.  [-0,+1,m] */
int lua_message_open(lua_State *L);

#endif
