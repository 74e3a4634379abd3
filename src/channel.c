/* SPDX-License-Identifier: MIT */
/* channel: see channel.h. */
#include "channel.h"

#include "channel_hooks.h"
#include "config.h"
#include "lua_state.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int file_exists(const char *path) { return access(path, R_OK) == 0; }


/* Module path "a.b" -> "a/b" (a key ending in .lua is a file path and is not converted). */
static void module_to_path(const char *key, char *out, size_t size)
{
    snprintf(out, size, "%s", key);
    for (char *p = out; *p; p++)
        if (*p == '.')
            *p = '/';
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Find the script of one key; returns a malloc'ed absolute path or NULL with err. */
static char *find_script(const char *key, const char *project_dir, const char *data_dir,
                         const char *where, char *err, size_t errlen)
{
    char path[4096];
    if (ends_with(key, ".lua")) {
        if (key[0] == '/')
            snprintf(path, sizeof path, "%s", key);
        else
            snprintf(path, sizeof path, "%s/%s", project_dir, key);
        if (file_exists(path))
            return realpath(path, NULL);
        snprintf(err, errlen, "%s: channel '%s': the file %s does not exist or cannot be read",
                 where, key, path);
        return NULL;
    }
    char module[1024];
    module_to_path(key, module, sizeof module);
    const char *dirs[2] = {project_dir, NULL};
    char bundled[4096];
    snprintf(bundled, sizeof bundled, "%s/channels", data_dir);
    dirs[1] = bundled;
    for (int i = 0; i < 2; i++) {
        if (!dirs[i])
            continue;
        snprintf(path, sizeof path, "%s/%s.lua", dirs[i], module);
        if (file_exists(path))
            return realpath(path, NULL);
        snprintf(path, sizeof path, "%s/%s/init.lua", dirs[i], module);
        if (file_exists(path))
            return realpath(path, NULL);
    }
    snprintf(err, errlen,
             "%s: unknown channel '%s': no %s.lua or %s/init.lua in %s or in the bundled "
             "channels (%s)",
             where, key, module, module, project_dir ? project_dir : "(no project folder)",
             bundled);
    return NULL;
}

int channel_resolve(const struct credentials *cred, const char *data_dir, struct channel_set *out,
                    char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    size_t count = cred ? cred->count : 1;
    out->source = strdup(cred ? cred->path : "(no credentials)");
    out->defs = calloc(count ? count : 1, sizeof *out->defs);
    if (!out->source || !out->defs) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < count; i++) {
        struct channel_def *d = &out->defs[i];
        const char *key = cred ? cred->channels[i].key : "rest";
        char where[512];
        if (cred) {
            d->line = cred->channels[i].line;
            d->column = cred->channels[i].column;
            d->params = cred->channels[i].params;
            snprintf(where, sizeof where, "%s:%d:%d", cred->path, d->line, d->column);
        } else {
            snprintf(where, sizeof where, "(no credentials)");
        }
        d->key = strdup(key);
        out->count = i + 1;
        d->script = find_script(key, cred ? cred->dir : NULL, data_dir, where, err, errlen);
        if (!d->key || !d->script)
            goto fail;
    }
    return 0;
fail:
    channel_set_free(out);
    return -1;
}

void channel_set_free(struct channel_set *set)
{
    for (size_t i = 0; i < set->count; i++) {
        free(set->defs[i].key);
        set->defs[i].key = NULL;
        free(set->defs[i].script);
        set->defs[i].script = NULL;
        free(set->defs[i].name);
        set->defs[i].name = NULL;
    }
    free(set->defs);
    set->defs = NULL;
    free(set->source);
    set->source = NULL;
    set->count = 0;
}

static int valid_name(const char *name)
{
    if (!*name)
        return 0;
    for (const char *p = name; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

/* Check the channel table on top of the stack. `where` names file and key for messages. */
static int check_table(lua_State *L, const char *where, char *err, size_t errlen)
{
    if (!lua_istable(L, -1)) {
        snprintf(err, errlen, "%s: the script must return a table, not %s", where,
                 luaL_typename(L, -1));
        return -1;
    }
    if (lua_getfield(L, -1, "name") != LUA_TSTRING || !valid_name(lua_tostring(L, -1))) {
        snprintf(err, errlen,
                 "%s: `name` must be a non-empty string of letters, digits, '_', '-' or '.'",
                 where);
        lua_pop(L, 1);
        return -1;
    }
    lua_pop(L, 1);
    for (size_t i = 0; i < channel_hook_count; i++) {
        const struct channel_hook *h = &channel_hooks[i];
        int type = lua_getfield(L, -1, h->name);
        lua_pop(L, 1);
        if (type != LUA_TNIL && type != h->type) {
            snprintf(err, errlen, "%s: channel.%s must be a %s, not a %s", where, h->name,
                     lua_typename(L, h->type), lua_typename(L, type));
            return -1;
        }
    }
    return 0;
}

/* Parse channel.routes of the table on top of the stack into rc (when rc is not NULL). */
static int load_routes(lua_State *L, const char *where, struct route_channel *rc, char *err,
                       size_t errlen)
{
    if (lua_getfield(L, -1, "routes") != LUA_TTABLE) {
        lua_pop(L, 1);
        return 0;
    }
    int rc_status = 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        struct route r;
        const char *spec = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        if (!spec || route_parse(spec, &r) != 0) {
            snprintf(err, errlen, "%s: channel.routes keys must look like \"GET /path\", not %s",
                     where, spec ? spec : luaL_typename(L, -2));
            lua_pop(L, 2);
            rc_status = -1;
            break;
        }
        if (!lua_isfunction(L, -1)) {
            snprintf(err, errlen, "%s: channel.routes[\"%s\"] must be a function", where, spec);
            route_free(&r);
            lua_pop(L, 2);
            rc_status = -1;
            break;
        }
        if (rc) {
            struct route *grown = realloc(rc->routes, (rc->count + 1) * sizeof *grown);
            if (!grown) {
                route_free(&r);
                lua_pop(L, 2);
                snprintf(err, errlen, "out of memory");
                rc_status = -1;
                break;
            }
            rc->routes = grown;
            rc->routes[rc->count++] = r;
        } else {
            route_free(&r);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return rc_status;
}

/* Load channel `d` into L and leave its table on the stack. */
static int load_one(lua_State *L, const struct channel_set *set, struct channel_def *d,
                    struct route_channel *rc, char *err, size_t errlen)
{
    char where[1200];
    snprintf(where, sizeof where, "%s (channel '%s' at %s:%d:%d)", d->script, d->key,
             set->source, d->line, d->column);
    char lua_err[2048];
    if (lua_state_dofile(L, d->script, lua_err, sizeof lua_err) != 0) {
        lua_error_first_line(lua_err);
        snprintf(err, errlen, "%s (channel '%s' at %s:%d:%d)", lua_err, d->key, set->source,
                 d->line, d->column);
        return -1;
    }
    if (check_table(L, where, err, errlen) != 0 || load_routes(L, where, rc, err, errlen) != 0)
        goto fail;
    lua_getfield(L, -1, "name");
    const char *name = lua_tostring(L, -1);
    if (d->name && strcmp(d->name, name) != 0) {
        snprintf(err, errlen, "%s: the name changed from '%s' to '%s' while loading", where,
                 d->name, name);
        lua_pop(L, 1);
        goto fail;
    }
    if (!d->name)
        d->name = strdup(name);
    lua_pop(L, 1);

    if (lua_getfield(L, -1, "init") == LUA_TFUNCTION) {
        lua_push_cfg(L, d->params);
        if (lua_state_pcall(L, 1, 0, lua_err, sizeof lua_err) != 0) {
            lua_pop(L, 1);
            lua_error_first_line(lua_err);
            snprintf(err, errlen, "%s (in init of channel '%s' at %s:%d:%d)", lua_err, d->key,
                     set->source, d->line, d->column);
            goto fail;
        }
    } else {
        lua_pop(L, 1);
    }
    return 0;
fail:
    lua_pop(L, 1);
    return -1;
}

int channel_load_all(lua_State *L, struct channel_set *set, int *refs, struct route_table *routes,
                     char *err, size_t errlen)
{
    if (routes) {
        memset(routes, 0, sizeof *routes);
        routes->channels = calloc(set->count ? set->count : 1, sizeof *routes->channels);
        if (!routes->channels) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    for (size_t i = 0; i < set->count; i++) {
        struct channel_def *d = &set->defs[i];
        struct route_channel *rc = routes ? &routes->channels[i] : NULL;
        if (routes)
            routes->count = i + 1;
        if (load_one(L, set, d, rc, err, errlen) != 0)
            goto fail;
        refs[i] = luaL_ref(L, LUA_REGISTRYINDEX);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(set->defs[j].name, d->name) == 0) {
                snprintf(err, errlen,
                         "%s:%d:%d: channel '%s' is named '%s' like channel '%s' (line %d): "
                         "two channels cannot share a name (it is their URL prefix)",
                         set->source, d->line, d->column, d->key, d->name, set->defs[j].key,
                         set->defs[j].line);
                goto fail;
            }
        }
        if (rc && !(rc->name = strdup(d->name))) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    return 0;
fail:
    if (routes)
        route_table_free(routes);
    return -1;
}

int channel_filter(struct channel_set *set, const char *connector, char *err, size_t errlen)
{
    size_t keep = set->count;
    for (size_t i = 0; i < set->count && keep == set->count; i++)
        if (strcmp(set->defs[i].key, connector) == 0)
            keep = i;
    for (size_t i = 0; i < set->count && keep == set->count; i++)
        if (set->defs[i].name && strcmp(set->defs[i].name, connector) == 0)
            keep = i;
    if (keep == set->count) {
        char known[1024] = "";
        for (size_t i = 0; i < set->count; i++) {
            size_t used = strlen(known);
            snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "", set->defs[i].key);
        }
        snprintf(err, errlen, "--connector %s: no channel with that key or name in %s (keys: %s)",
                 connector, set->source, set->count ? known : "none");
        return -1;
    }
    for (size_t i = 0; i < set->count; i++) {
        if (i == keep)
            continue;
        free(set->defs[i].key);
        free(set->defs[i].script);
        free(set->defs[i].name);
    }
    set->defs[0] = set->defs[keep];
    set->count = 1;
    return 0;
}
