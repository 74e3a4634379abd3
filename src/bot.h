/* SPDX-License-Identifier: MIT */
/* bot: the bot behind the pipeline (docs/contract.md §5.1), loaded into a worker's Lua state.
 *
 * Every kind of bot ends up as a Lua table with handle(msg, out): a Lua bot is its own script
 * (init(config) receives the `bot:` map without `script`), the bundled demo bot answers when no
 * bot is configured. Uses: config (plain data), lua_state, outbound (the URL check). */
#ifndef SB_BOT_H
#define SB_BOT_H

#include <lua.h>
#include <stddef.h>

struct endpoints;

/* A one-line description for logs ("Lua bot /x/faq.lua", "demo bot"). */
void bot_describe(const struct endpoints *e, const char *data_dir, char *out, size_t size);

/* Load the bot into L; *ref receives a registry reference to its table. Returns 0 or -1 with
 * "file:line: reason" in err. */
int bot_load(lua_State *L, const struct endpoints *e, const char *data_dir, int *ref, char *err,
             size_t errlen);

#endif
