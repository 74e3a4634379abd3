/* SPDX-License-Identifier: MIT */
/* scripts: see scripts.h. */
#include "scripts.h"

#include "bot.h"
#include "log.h"
#include "lua_sb.h"

#include <lauxlib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- configurations ------------------------------------------------------------------------- */

struct script_config_storage {
    struct script_config config;
    char cwd[PATH_MAX];
};

struct script_config *script_config_read(const char *credentials_path, const char *endpoints_path,
                                         char *err, size_t errlen)
{
    struct script_config_storage *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    struct script_config *c = &s->config;
    atomic_init(&c->refs, 1);
    endpoints_defaults(&c->endpoints);
    if (!getcwd(s->cwd, sizeof s->cwd))
        snprintf(s->cwd, sizeof s->cwd, ".");
    if (credentials_path) {
        if (credentials_load(credentials_path, &c->credentials, err, errlen) != 0)
            goto fail;
        c->have_credentials = 1;
        if (c->credentials.count == 0)
            log_msg(LOG_WARNING, NULL, "%s names no channels: serving the rest channel alone",
                    credentials_path);
    } else {
        log_msg(LOG_WARNING, NULL, "no credentials.yml here and no --credentials given: serving "
                                   "the rest channel alone");
    }
    if (endpoints_path && endpoints_load(endpoints_path, &c->endpoints, err, errlen) != 0)
        goto fail;
    return c;
fail:
    script_config_unref(c);
    return NULL;
}

struct script_config *script_config_new(struct credentials *credentials,
                                        struct endpoints *endpoints, char *err, size_t errlen)
{
    struct script_config_storage *s = calloc(1, sizeof *s);
    if (!s) {
        credentials_free(credentials);
        endpoints_free(endpoints);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    struct script_config *c = &s->config;
    atomic_init(&c->refs, 1);
    c->credentials = *credentials;
    c->have_credentials = 1;
    c->endpoints = *endpoints;
    memset(credentials, 0, sizeof *credentials);
    endpoints_defaults(endpoints);
    snprintf(s->cwd, sizeof s->cwd, "%s", c->credentials.dir ? c->credentials.dir : ".");
    return c;
}

void script_config_ref(struct script_config *c) { atomic_fetch_add(&c->refs, 1); }

void script_config_unref(struct script_config *c)
{
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    endpoints_free(&c->endpoints);
    if (c->have_credentials)
        credentials_free(&c->credentials);
    free(c);
}

const char *script_config_project_dir(const struct script_config *c)
{
    if (c->have_credentials)
        return c->credentials.dir;
    return ((const struct script_config_storage *)c)->cwd;
}

/* ---- states --------------------------------------------------------------------------------- */

static int uses_credentials(const struct script_config *c)
{
    return c->have_credentials && c->credentials.count > 0;
}

struct state_fill {
    struct generation *gen;
    const struct script_options *opt;
    struct script_state *s;
    struct route_table *routes;
    char *err;
    size_t errlen;
    int rc;
};

/* host.record = {dir =, channels = {[name] = {key =, params =, file =}}}: what the recorder
 * (lua/switchboard/recorder.lua) needs to write case files. `file`, the script's path, only for
 * a channel that is not bundled (a case file names it by path).  [-0,+0,m] */
static void push_record_config(lua_State *L, const struct generation *gen,
                               const struct script_options *opt)
{
    char bundled[4096];
    snprintf(bundled, sizeof bundled, "%s/channels/", opt->paths.data_dir);
    lua_createtable(L, 0, 2);
    lua_pushstring(L, opt->record_dir);
    lua_setfield(L, -2, "dir");
    lua_createtable(L, 0, (int)gen->channels.count);
    for (size_t i = 0; i < gen->channels.count; i++) {
        const struct channel_def *d = &gen->channels.defs[i];
        lua_createtable(L, 0, 3);
        lua_pushstring(L, d->key);
        lua_setfield(L, -2, "key");
        lua_push_cfg(L, d->params);
        lua_setfield(L, -2, "params");
        if (strncmp(d->script, bundled, strlen(bundled)) != 0) {
            lua_pushstring(L, d->script);
            lua_setfield(L, -2, "file");
        }
        lua_setfield(L, -2, d->name);
    }
    lua_setfield(L, -2, "channels");
    lua_setfield(L, -2, "record");
}

/* The channels, the bot and the pipeline, loaded into the state; runs inside a protected call,
 * since a script's table may raise from a metamethod and every step allocates. Expected
 * failures set rc and err.  [-0,+0,e] */
static int l_state_fill(lua_State *L)
{
    struct state_fill *f = lua_touserdata(L, 1);
    lua_settop(L, 0);
    int bot_ref;
    f->rc = -1;
    if (channel_load_all(L, &f->gen->channels, f->s->channel_refs, f->routes, f->err,
                         f->errlen) != 0 ||
        bot_load(L, &f->gen->config->endpoints, f->opt->paths.data_dir, &bot_ref, f->err,
                 f->errlen) != 0)
        return 0;
    char lua_err[2048];
    lua_getglobal(L, "require");
    lua_pushliteral(L, "switchboard.pipeline");
    if (lua_state_pcall(L, 1, 1, lua_err, sizeof lua_err) != 0) {
        snprintf(f->err, f->errlen, "loading the pipeline: %s", lua_err);
        return 0;
    }
    lua_getfield(L, -1, "setup");
    f->opt->push_host(L);
    if (f->opt->record_dir)
        push_record_config(L, f->gen, f->opt);
    lua_rawgeti(L, LUA_REGISTRYINDEX, bot_ref);
    lua_call(L, 2, 0);
    lua_getfield(L, -1, "run");
    f->s->run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "connection");
    f->s->connection_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, 0);
    f->rc = 0;
    return 0;
}

/* Run fn(ud) in a protected call; an error it raises becomes "what: message" in err. */
static int run_protected(lua_State *L, lua_CFunction fn, void *ud, const char *what, char *err,
                         size_t errlen)
{
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, ud);
    if (lua_pcall(L, 1, 0, 0) == LUA_OK)
        return 0;
    snprintf(err, errlen, "%s: %s", what,
             lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                            : "an error that is not a message");
    lua_pop(L, 1);
    return -1;
}

/* Load the channels, the bot and the pipeline into a new state. The first state of a generation
 * (routes != NULL) learns the channel names and routes. */
static struct script_state *state_load(struct generation *gen, const struct script_options *opt,
                                       struct route_table *routes, char *err, size_t errlen)
{
    struct script_state *s = calloc(1, sizeof *s);
    if (s)
        s->channel_refs = calloc(gen->channels.count + 1, sizeof *s->channel_refs);
    if (!s || !s->channel_refs) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->gen = gen;
    struct lua_paths paths = opt->paths;
    paths.project_dir = script_config_project_dir(gen->config);
    s->L = lua_state_new(&paths, &opt->limits, err, errlen);
    if (!s->L)
        goto fail;
    struct state_fill fill = {gen, opt, s, routes, err, errlen, -1};
    if (run_protected(s->L, l_state_fill, &fill, "loading the scripts", err, errlen) != 0 ||
        fill.rc != 0)
        goto fail;
    return s;
fail:
    lua_state_close(s->L);
    free(s->channel_refs);
    free(s);
    return NULL;
}

static void generation_free(struct generation *gen)
{
    route_table_free(&gen->routes);
    channel_set_free(&gen->channels);
    for (size_t i = 0; i < gen->file_count; i++)
        free(gen->files[i]);
    free(gen->files);
    script_config_unref(gen->config);
    free(gen);
}

void script_state_close(struct script_state *s)
{
    if (!s)
        return;
    lua_state_close(s->L);
    s->L = NULL;
    free(s->channel_refs);
    s->channel_refs = NULL;
    struct generation *gen = s->gen;
    free(s);
    if (gen && atomic_fetch_sub(&gen->refs, 1) == 1)
        generation_free(gen);
}

/* --connector (docs/contract.md §1): keep one channel. A key is known before loading; a name only
 * after, so matching a name loads every channel once in a scratch state. */
static int apply_connector(struct generation *gen, const struct script_options *opt, char *err,
                           size_t errlen)
{
    for (size_t i = 0; i < gen->channels.count; i++)
        if (strcmp(gen->channels.defs[i].key, opt->connector) == 0)
            return channel_filter(&gen->channels, opt->connector, err, errlen);
    struct route_table routes = {0};
    struct script_state *scratch = state_load(gen, opt, &routes, err, errlen);
    if (!scratch) {
        route_table_free(&routes);
        return -1;
    }
    route_table_free(&routes);
    scratch->gen = NULL;
    script_state_close(scratch);
    return channel_filter(&gen->channels, opt->connector, err, errlen);
}

static void add_file(void *ctx, const char *path)
{
    struct generation *gen = ctx;
    for (size_t i = 0; i < gen->file_count; i++)
        if (strcmp(gen->files[i], path) == 0)
            return;
    char **grown = realloc(gen->files, (gen->file_count + 1) * sizeof *grown);
    char *copy = strdup(path);
    if (!grown || !copy) {
        free(copy);
        if (grown)
            gen->files = grown;
        return; /* out of memory: the file is not watched, nothing else breaks */
    }
    gen->files = grown;
    gen->files[gen->file_count++] = copy;
}

struct startup_run {
    struct generation *gen;
    struct script_state *s;
};

/* Each channel's startup(config) hook, once per generation, in the first state. A failing hook
 * is logged and the generation serves anyway (a platform that is down at startup must not keep
 * the host from starting).  [-0,+0,e] */
static int l_run_startup_hooks(lua_State *L)
{
    struct startup_run *run = lua_touserdata(L, 1);
    lua_settop(L, 0);
    for (size_t i = 0; i < run->gen->channels.count; i++) {
        const struct channel_def *d = &run->gen->channels.defs[i];
        lua_rawgeti(L, LUA_REGISTRYINDEX, run->s->channel_refs[i]);
        if (lua_getfield(L, -1, "startup") != LUA_TFUNCTION) {
            lua_pop(L, 2);
            continue;
        }
        lua_push_cfg(L, d->params);
        char lua_err[2048];
        lua_sb_allow_blocking(1);
        int rc = lua_state_pcall(L, 1, 0, lua_err, sizeof lua_err);
        lua_sb_allow_blocking(0);
        if (rc != 0) {
            lua_error_first_line(lua_err);
            log_msg(LOG_ERROR, NULL, "channel '%s': startup failed: %s", d->name, lua_err);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    return 0;
}

static void run_startup_hooks(struct generation *gen, struct script_state *s)
{
    struct startup_run run = {gen, s};
    char err[2048];
    if (run_protected(s->L, l_run_startup_hooks, &run, "running the startup hooks", err,
                      sizeof err) != 0)
        log_msg(LOG_ERROR, NULL, "%s", err);
}

struct generation *generation_load(struct script_config *config,
                                   const struct script_options *opt, unsigned number,
                                   struct script_state **states, unsigned count, int run_startup,
                                   char *err, size_t errlen)
{
    struct generation *gen = calloc(1, sizeof *gen);
    if (!gen) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    gen->number = number;
    gen->config = config;
    script_config_ref(config);
    unsigned loaded = 0;
    if (channel_resolve(uses_credentials(config) ? &config->credentials : NULL,
                        opt->paths.data_dir, &gen->channels, err, errlen) != 0)
        goto fail;
    if (opt->connector && apply_connector(gen, opt, err, errlen) != 0)
        goto fail;
    atomic_store(&gen->refs, (int)count);
    for (; loaded < count; loaded++) {
        states[loaded] = state_load(gen, opt, loaded == 0 ? &gen->routes : NULL, err, errlen);
        if (!states[loaded])
            goto fail;
    }
    for (size_t i = 0; i < gen->channels.count; i++)
        add_file(gen, gen->channels.defs[i].script);
    if (count > 0)
        lua_state_loaded_files(states[0]->L, add_file, gen);
    if (run_startup && count > 0)
        run_startup_hooks(gen, states[0]);
    return gen;
fail:
    for (unsigned i = 0; i < loaded; i++) {
        states[i]->gen = NULL;
        script_state_close(states[i]);
    }
    generation_free(gen);
    return NULL;
}
