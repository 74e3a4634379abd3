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

struct channel_set;
/* A reload's self-test: every channel whose script X.lua has a folder X.cases/ beside it runs
 * those cases (quietly). Returns 0, or -1 with the channel, the count and the first failing case
 * in err. */
int offline_self_test(const struct channel_set *set, const struct lua_paths *paths,
                      const struct lua_limits *limits, char *err, size_t errlen);

/* One request for `switchboard try`, from the command line. */
struct offline_request {
    const char *credentials, *endpoints; /* the project's files (endpoints may be NULL) */
    const char *channel;                 /* the channel's name or key */
    const char *method, *path;           /* default POST /webhook */
    const char *body;
    size_t body_len;
    const char *const *headers;          /* "Name: value" */
    int header_count;
    const char *const *query;            /* "name=value" */
    int query_count;
    int echo, sign;                      /* an echo bot; sign as the platform would */
};

/* `switchboard try`: the request through the channel offline, printing the messages the bot
 * got, the outbound calls (answered 200 {"ok":true}) and the answer. Returns 0, or 2 when it could not
 * run. */
int offline_try(const struct offline_request *t, const struct lua_paths *paths,
                const struct lua_limits *limits);

#endif
