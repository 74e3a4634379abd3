/* SPDX-License-Identifier: MIT */
/* offline: channels run without a socket (docs/testing.md). `switchboard test` runs case files:
 * each request goes through the real channel, pipeline and bot code in a real Lua state, the
 * platform's answers to the channel's outbound calls come from the case, sb.sleep returns at
 * once, and the answer, the UserMessages the bot got and the outbound calls are compared with
 * what the case expects (lua/switchboard/cases.lua). `switchboard try` runs one request the same
 * way and prints what happened.
 * Uses: cfg_tree, config, scripts, lua_state, lua_request, lua_sb, router, job (the answer
 * contract), log. */
#ifndef SB_OFFLINE_H
#define SB_OFFLINE_H

#include "lua_state.h"

/* `switchboard test [PATH...]`: returns the exit code (0 all passed, 1 a case failed, 2 a file
 * could not be run). */
int offline_test(const char *const *paths, int count, const struct lua_paths *lua_paths,
                 const struct lua_limits *limits);

#endif
