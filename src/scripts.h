/* SPDX-License-Identifier: MIT */
/* scripts: one loaded version ("generation") of every channel script and of the bot
 * (docs/contract.md §7).
 *
 * A generation is made from a configuration (credentials.yml + endpoints.yml): the channels are
 * resolved and loaded into as many Lua states as there are workers, with the pipeline set up in
 * each. Loading is all-or-nothing: any script that does not compile or whose init raises fails
 * the whole generation with one "file:line: reason" line, and the running one stays. A generation
 * also lists the Lua files its scripts loaded, for the file watcher. States are created by the
 * thread that loads them and then handed to one worker each.
 * Uses: config (plain data), channel, bot, lua_state, lua_sb, router, log. */
#ifndef SB_SCRIPTS_H
#define SB_SCRIPTS_H

#include <lua.h>
#include <stdatomic.h>
#include <stddef.h>

#include "channel.h"
#include "config.h"
#include "lua_state.h"
#include "router.h"

/* What a generation is loaded from. Reference-counted: whoever read it holds one reference, and
 * each generation loaded from it holds one (generations borrow channel parameters from it), so a
 * configuration replaced by SIGHUP is freed once the last generation using it is gone. */
struct script_config {
    struct credentials credentials;
    int have_credentials;          /* 0: no credentials file (or an empty one): rest alone */
    struct endpoints endpoints;
    atomic_int refs;
};

struct script_options {
    struct lua_paths paths;        /* project_dir is taken from the configuration */
    struct lua_limits limits;
    const char *connector;         /* --connector, or NULL */
    const char *record_dir;        /* --record: requests become case files there, or NULL */
    void (*push_host)(lua_State *L); /* pushes the host table pipeline.setup receives */
};

struct generation {
    unsigned number;
    struct script_config *config;  /* a reference of its own */
    struct channel_set channels;
    struct route_table routes;
    char **files;                  /* absolute paths of the Lua files to watch */
    size_t file_count;
    atomic_int refs;               /* one per script_state */
};

/* One Lua state loaded with a generation, used by one worker. */
struct script_state {
    lua_State *L;
    int *channel_refs;             /* registry refs of the channel tables, in channel order */
    int run_ref;                   /* pipeline.run */
    int connection_ref;            /* pipeline.connection: a connection's events */
    struct generation *gen;
    unsigned jobs;                 /* jobs running on this state (the worker's count) */
    size_t memory_after_gc;        /* bytes in use after the last full collection */
    struct idle_coroutine { lua_State *co; int ref; } idle[64]; /* finished coroutines to reuse */
    size_t idle_count;
    struct script_state *next;     /* the worker's retired states */
};

/* Load generation `number` into `count` states (states[0..count)). With run_startup, each
 * channel's startup(config) hook then runs once, in the first state, in the calling thread (it
 * may make blocking outbound requests; a failure is logged, not fatal). Returns the generation,
 * or NULL with err (nothing is left loaded). */
struct generation *generation_load(struct script_config *config,
                                   const struct script_options *opt, unsigned number,
                                   struct script_state **states, unsigned count, int run_startup,
                                   char *err, size_t errlen);
/* Close a state; the last state of a generation frees the generation. */
void script_state_close(struct script_state *s);

/* A configuration read from the files (paths may be NULL: the defaults of docs/contract.md §1
 * apply), with one reference for the caller. Returns NULL with err. */
struct script_config *script_config_read(const char *credentials_path, const char *endpoints_path,
                                         char *err, size_t errlen);
/* A configuration made of parts already loaded (offline runs), which it takes over. */
struct script_config *script_config_new(struct credentials *credentials,
                                        struct endpoints *endpoints, char *err, size_t errlen);
/* Take another reference / drop one (the last frees the configuration). Any thread. */
void script_config_ref(struct script_config *c);
void script_config_unref(struct script_config *c);
/* The folder that holds the project's scripts: the credentials file's, or the working folder. */
const char *script_config_project_dir(const struct script_config *c);

#endif
