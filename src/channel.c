/* SPDX-License-Identifier: MIT */
/* channel: see channel.h. */
#include "channel.h"

#include "cfg_tree.h"
#include "channel_hooks.h"
#include "config.h"
#include "log.h"
#include "lua_state.h"

#include <dirent.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int file_exists(const char *path) { return access(path, R_OK) == 0; }

static int ends_with_lua(const char *s)
{
    size_t n = strlen(s);
    return n >= 4 && strcmp(s + n - 4, ".lua") == 0;
}

/* ---- typos ---------------------------------------------------------------------------------- */

#define TYPO_MAX_LEN 64

/* The optimal string alignment distance of a and b (an insertion, a deletion, a change or a swap
 * of two neighbours counts one); a name longer than TYPO_MAX_LEN counts as far from everything. */
static size_t typo_distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > TYPO_MAX_LEN || m > TYPO_MAX_LEN)
        return TYPO_MAX_LEN + 1;
    size_t rows[3][TYPO_MAX_LEN + 1];
    size_t *before = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= m; j++)
        prev[j] = j;
    for (size_t i = 1; i <= n; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= m; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            size_t best = prev[j - 1] + cost;
            if (prev[j] + 1 < best)
                best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                before[j - 2] + 1 < best)
                best = before[j - 2] + 1;
            cur[j] = best;
        }
        size_t *t = before;
        before = prev;
        prev = cur;
        cur = t;
    }
    return prev[m];
}

/* How far a name may be from `known` and still be taken for a slip of it. `strict` is for the
 * hook names: a channel keeps its own fields in its table, and only a near miss is an error. */
static size_t typo_limit(const char *known, int strict)
{
    size_t len = strlen(known);
    if (strict)
        return len < 8 ? 1 : 2;
    return len <= 4 ? 1 : len <= 10 ? 2 : 3;
}

/* The nearest of `count` names to `name` within the limit (ties: the first), or NULL. */
static const char *typo_nearest(const char *name, const char *const *names, size_t count,
                                int strict)
{
    const char *best = NULL;
    size_t best_distance = (size_t)-1, len = strlen(name);
    for (size_t i = 0; i < count; i++) {
        if (!names[i] || strcmp(names[i], name) == 0)
            continue;
        size_t limit = typo_limit(names[i], strict), other = strlen(names[i]);
        if ((len > other ? len - other : other - len) > limit)
            continue; /* the lengths alone are too far apart */
        size_t d = typo_distance(name, names[i]);
        if (d <= limit && d < best_distance) {
            best = names[i];
            best_distance = d;
        }
    }
    return best;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* ---- finding scripts ------------------------------------------------------------------------ */

/* The channel names a key could have meant: "<name>.lua" files in dir (with `prefix`, "pkg."
 * for a subfolder), as module names, or with ".lua" kept when `files` is set. Appends to
 * names (malloc'ed strings), up to `cap`. */
static void list_scripts(const char *dir, const char *prefix, int files, int depth, char **names,
                         size_t *count, size_t cap)
{
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) && *count < cap) {
        if (e->d_name[0] == '.')
            continue;
        size_t len = strlen(e->d_name);
        char name[512];
        if (len > 4 && strcmp(e->d_name + len - 4, ".lua") == 0 && len < 256) {
            snprintf(name, sizeof name, "%s%.*s", prefix, (int)(files ? len : len - 4),
                     e->d_name);
            if (!(names[*count] = strdup(name)))
                break;
            (*count)++;
        } else if (depth > 0 && !files && len < 200) {
            char sub[4096], sub_prefix[512];
            snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
            snprintf(sub_prefix, sizeof sub_prefix, "%s%s.", prefix, e->d_name);
            list_scripts(sub, sub_prefix, 0, depth - 1, names, count, cap);
        }
    }
    closedir(d);
}

/* " (did you mean 'x'?)" for an unknown key, from the local and bundled scripts; and the
 * bundled names, sorted, as "a, b, c". */
static void suggest_channel(const char *key, const char *project_dir, const char *bundled,
                            char *hint, size_t hintlen, char *list, size_t listlen)
{
    enum { CAP = 512 };
    char *names[CAP];
    size_t count = 0, local = 0;
    int file_key = ends_with_lua(key);
    list_scripts(project_dir, "", file_key, 1, names, &count, CAP);
    local = count;
    if (!file_key)
        list_scripts(bundled, "", 0, 0, names, &count, CAP);
    const char *near = typo_nearest(key, (const char *const *)names, count, 0);
    if (near)
        snprintf(hint, hintlen, " (did you mean '%s'?)", near);
    else
        hint[0] = '\0';
    list[0] = '\0';
    size_t bundled_count = file_key ? 0 : count - local;
    if (bundled_count) {
        qsort(names + local, bundled_count, sizeof names[0], compare_names);
        for (size_t i = local; i < count; i++) {
            size_t used = strlen(list);
            snprintf(list + used, listlen - used, "%s%s", i > local ? ", " : "", names[i]);
        }
    }
    for (size_t i = 0; i < count; i++) {
        free(names[i]);
        names[i] = NULL;
    }
}


/* Module path "a.b" -> "a/b" (a key ending in .lua is a file path and is not converted). */
static void module_to_path(const char *key, char *out, size_t size)
{
    snprintf(out, size, "%s", key);
    for (char *p = out; *p; p++)
        if (*p == '.')
            *p = '/';
}


/* Find the script of one key; returns a malloc'ed absolute path or NULL with err. */
static char *find_script(const char *key, const char *project_dir, const char *data_dir,
                         const char *where, char *err, size_t errlen)
{
    char path[4096], hint[600], list[1024];
    char bundled[4096];
    snprintf(bundled, sizeof bundled, "%s/channels", data_dir);
    if (ends_with_lua(key)) {
        if (key[0] == '/')
            snprintf(path, sizeof path, "%s", key);
        else
            snprintf(path, sizeof path, "%s/%s", project_dir, key);
        if (file_exists(path))
            return realpath(path, NULL);
        suggest_channel(key, project_dir, bundled, hint, sizeof hint, list, sizeof list);
        snprintf(err, errlen, "%s: channel '%s'%s: the file %s does not exist or cannot be read",
                 where, key, hint, path);
        return NULL;
    }
    char module[1024];
    module_to_path(key, module, sizeof module);
    const char *dirs[2] = {project_dir, bundled};
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
    suggest_channel(key, project_dir, bundled, hint, sizeof hint, list, sizeof list);
    snprintf(err, errlen,
             "%s: unknown channel '%s'%s: no %s.lua or %s/init.lua in %s or in the bundled "
             "channels (%s); bundled channels: %s",
             where, key, hint, module, module,
             project_dir ? project_dir : "(no project folder)", bundled, list[0] ? list : "none");
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

/* A field one slip away from a hook of the same type is a misspelt hook (`recieve`), which
 * would otherwise be silently ignored. Fields further away are the channel's own. */
static int check_hook_typos(lua_State *L, const char *where, char *err, size_t errlen)
{
    const char *names[64];
    size_t count = channel_hook_count < 64 ? channel_hook_count : 64;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 1);
            continue;
        }
        const char *field = lua_tostring(L, -2);
        int type = lua_type(L, -1);
        for (size_t i = 0; i < count; i++)
            names[i] = channel_hooks[i].type == type ? channel_hooks[i].name : NULL;
        const char *hook = typo_nearest(field, names, count, 1);
        if (hook) {
            for (size_t i = 0; i < count; i++)
                if (strcmp(channel_hooks[i].name, field) == 0)
                    hook = NULL; /* a hook itself */
        }
        if (hook) {
            snprintf(err, errlen,
                     "%s: channel.%s is not a channel hook: did you mean '%s'? (a field of the "
                     "channel's own needs a name further from the hook names)",
                     where, field, hook);
            lua_pop(L, 2);
            return -1;
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* channel.parameters: name = { type = <one of channel_parameter_types>, ... }. */
static int check_declaration(lua_State *L, const char *where, char *err, size_t errlen)
{
    if (lua_getfield(L, -1, "parameters") != LUA_TTABLE) {
        lua_pop(L, 1);
        return 0;
    }
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            snprintf(err, errlen, "%s: channel.parameters keys must be parameter names (strings)",
                     where);
            lua_pop(L, 3);
            return -1;
        }
        const char *key = lua_tostring(L, -2);
        if (!lua_istable(L, -1)) {
            snprintf(err, errlen,
                     "%s: channel.parameters.%s must be a table such as { type = \"string\" }, "
                     "not a %s",
                     where, key, luaL_typename(L, -1));
            lua_pop(L, 3);
            return -1;
        }
        lua_getfield(L, -1, "type");
        const char *type = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        size_t i = 0;
        while (type && i < channel_parameter_type_count &&
               strcmp(type, channel_parameter_types[i]) != 0)
            i++;
        if (!type || i == channel_parameter_type_count) {
            char known[256] = "";
            for (size_t k = 0; k < channel_parameter_type_count; k++) {
                size_t used = strlen(known);
                snprintf(known + used, sizeof known - used, "%s%s",
                         k == 0                                  ? ""
                         : k + 1 == channel_parameter_type_count ? " or "
                                                                 : ", ",
                         channel_parameter_types[k]);
            }
            if (type)
                snprintf(err, errlen, "%s: channel.parameters.%s: unknown type '%s' (%s)", where,
                         key, type, known);
            else
                snprintf(err, errlen, "%s: channel.parameters.%s needs a type (%s)", where, key,
                         known);
            lua_pop(L, 4);
            return -1;
        }
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    return 0;
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
    if (check_hook_typos(L, where, err, errlen) != 0)
        return -1;
    return check_declaration(L, where, err, errlen);
}

/* ---- parameters in credentials.yml ---------------------------------------------------------- */

/* "FILE:LINE:COL: channel 'KEY': " for key i of the channel's parameter map. */
static void key_where(const struct channel_set *set, const struct channel_def *d, size_t i,
                      char *out, size_t size)
{
    const cfg_value *p = d->params;
    int line = p->key_pos ? p->key_pos[i].line : p->line;
    int column = p->key_pos ? p->key_pos[i].column : p->column;
    snprintf(out, size, "%s:%d:%d: channel '%s'", set->source, line, column, d->key);
}

/* Keys the host reads itself, valid under every channel and not passed to its init: `cases`,
 * the folder of case files a reload runs first (docs/testing.md). */
static int host_parameter(const char *key)
{
    return strcmp(key, "cases") == 0;
}

static int has_parameters(const struct channel_def *d)
{
    return d->params && d->params->type == CFG_MAP && d->params->count > 0;
}

/* With channel.parameters (the table on top of the stack has it): every key of the channel's
 * map must be declared. The first one that is not fails the load, with the nearest declared name
 * or the list of them. */
static int check_declared_keys(lua_State *L, const struct channel_set *set,
                               const struct channel_def *d, const char *name, char *err,
                               size_t errlen)
{
    if (lua_getfield(L, -1, "parameters") != LUA_TTABLE || !has_parameters(d)) {
        lua_pop(L, 1);
        return 0;
    }
    int rc = 0;
    const cfg_value *p = d->params;
    for (size_t i = 0; i < p->count && rc == 0; i++) {
        int declared = lua_getfield(L, -1, p->keys[i]) != LUA_TNIL;
        lua_pop(L, 1);
        if (declared || host_parameter(p->keys[i]))
            continue;
        enum { CAP = 256 };
        const char *names[CAP];
        size_t count = 0;
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (lua_type(L, -2) == LUA_TSTRING && count < CAP)
                names[count++] = lua_tostring(L, -2); /* anchored in the declaration */
            lua_pop(L, 1);
        }
        char where[1200], known[1024] = "";
        key_where(set, d, i, where, sizeof where);
        const char *near = typo_nearest(p->keys[i], names, count, 0);
        qsort(names, count, sizeof names[0], compare_names);
        for (size_t k = 0; k < count; k++) {
            size_t used = strlen(known);
            snprintf(known + used, sizeof known - used, "%s%s", k ? ", " : "", names[k]);
        }
        if (near)
            snprintf(err, errlen, "%s: unknown parameter '%s' (did you mean '%s'?)", where,
                     p->keys[i], near);
        else if (count)
            snprintf(err, errlen, "%s: unknown parameter '%s' (the %s channel's parameters: %s)",
                     where, p->keys[i], name, known);
        else
            snprintf(err, errlen, "%s: unknown parameter '%s' (the %s channel takes no parameters)",
                     where, p->keys[i], name);
        rc = -1;
    }
    lua_pop(L, 1);
    return rc;
}

/* config's __index while an undeclared channel's init runs: notes each name init looked up and
 * did not find (a name it found is no typo).  [-0,+1,m] */
static int l_note_missing(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TSTRING) {
        lua_pushvalue(L, 2);
        lua_pushboolean(L, 1);
        lua_rawset(L, lua_upvalueindex(1));
    }
    lua_pushnil(L);
    return 1;
}

/* Without a declaration the host knows only the names init looked up and found missing
 * (`missing`, a set at `index`): a key close to one of them is logged as a likely typo. A
 * channel without init uses no parameter at all. Warnings only; once per load. */
static void warn_undeclared_keys(lua_State *L, const struct channel_set *set,
                                 const struct channel_def *d, int index, int has_init)
{
    const cfg_value *p = d->params;
    char where[1200];
    if (!has_init) {
        size_t shown = p->count < 10 ? p->count : 10;
        for (size_t i = 0; i < shown; i++) {
            if (host_parameter(p->keys[i]))
                continue;
            key_where(set, d, i, where, sizeof where);
            log_msg(LOG_WARNING, NULL,
                    "%s: parameter '%s' is not used (the channel has no init and declares no "
                    "parameters)",
                    where, p->keys[i]);
        }
        if (p->count > shown)
            log_msg(LOG_WARNING, NULL, "%s:%d:%d: channel '%s': and %zu more parameters not used",
                    set->source, d->line, d->column, d->key, p->count - shown);
        return;
    }
    enum { CAP = 64 };
    const char *names[CAP];
    size_t count = 0;
    lua_pushnil(L);
    while (lua_next(L, index)) {
        if (count < CAP)
            names[count++] = lua_tostring(L, -2);
        lua_pop(L, 1);
    }
    if (!count)
        return;
    size_t warned = 0;
    for (size_t i = 0; i < p->count && warned < 10; i++) {
        const char *near = typo_nearest(p->keys[i], names, count, 0);
        if (!near)
            continue;
        key_where(set, d, i, where, sizeof where);
        log_msg(LOG_WARNING, NULL, "%s: unknown parameter '%s' (did you mean '%s'?)", where,
                p->keys[i], near);
        warned++;
    }
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
        char why[160] = "";
        const char *spec = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        if (!spec || route_parse_why(spec, &r, why, sizeof why) != 0) {
            snprintf(err, errlen,
                     "%s: channel.routes keys must look like \"GET /path\", not %s%s%s%s", where,
                     spec ? spec : luaL_typename(L, -2), why[0] ? " (" : "", why,
                     why[0] ? ")" : "");
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

/* channel.websocket = "/path": a WebSocket route below /webhooks/<name> (docs/lua-api.md,
 * "Connections"); its connections need on_message. Added to rc as a GET route whose spec is
 * CHANNEL_WEBSOCKET_ROUTE, which the engine knows. */
static int load_websocket(lua_State *L, const char *where, struct route_channel *rc, char *err,
                          size_t errlen)
{
    int type = lua_getfield(L, -1, "websocket");
    if (type == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    char spec[512];
    struct route r;
    const char *path = type == LUA_TSTRING ? lua_tostring(L, -1) : "";
    snprintf(spec, sizeof spec, "GET %s", path);
    if (type != LUA_TSTRING || path[0] != '/' || route_parse(spec, &r) != 0) {
        snprintf(err, errlen, "%s: channel.websocket must be a path below the channel's URL, such "
                              "as \"/ws\"", where);
        lua_pop(L, 1);
        return -1;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, -1, "on_message") != LUA_TFUNCTION) {
        lua_pop(L, 1);
        route_free(&r);
        snprintf(err, errlen, "%s: a channel with a websocket route needs on_message(conn, data, "
                              "binary)", where);
        return -1;
    }
    lua_pop(L, 1);
    char *marker = strdup(CHANNEL_WEBSOCKET_ROUTE);
    struct route *grown =
        rc && marker ? realloc(rc->routes, (rc->count + 1) * sizeof *grown) : NULL;
    if (!rc || !marker || !grown) {
        route_free(&r);
        free(marker);
        if (!rc)
            return 0;
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    free(r.spec);
    r.spec = marker;
    rc->routes = grown;
    rc->routes[rc->count++] = r;
    return 0;
}

/* channel.mount = "/prefix": the channel's routes and websocket are below this path instead of
 * /webhooks/<name> (its webhook stays there), for a protocol with a fixed path such as
 * Socket.IO's /socket.io. The host's own paths cannot be taken. */
static int load_mount(lua_State *L, const char *where, struct route_channel *rc, char *err,
                      size_t errlen)
{
    int type = lua_getfield(L, -1, "mount");
    if (type == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    const char *mount = type == LUA_TSTRING ? lua_tostring(L, -1) : "";
    static const char *const taken[] = {"/webhooks", "/status", "/metrics", "/conversations"};
    int bad = mount[0] != '/' || strlen(mount) < 2 || strlen(mount) > 200 ||
              strchr(mount, '{') != NULL;
    for (size_t i = 0; i < sizeof taken / sizeof taken[0] && !bad; i++) {
        size_t n = strlen(taken[i]);
        bad = strncmp(mount, taken[i], n) == 0 && (mount[n] == '\0' || mount[n] == '/');
    }
    if (bad) {
        snprintf(err, errlen, "%s: channel.mount must be a path such as \"/socket.io\", not the "
                              "root and not one of the host's own (/webhooks, /status, /metrics, "
                              "/conversations)", where);
        lua_pop(L, 1);
        return -1;
    }
    if (rc && !rc->mount) {
        size_t len = strlen(mount);
        while (len > 1 && mount[len - 1] == '/')
            len--;
        rc->mount = strndup(mount, len);
        if (!rc->mount) {
            lua_pop(L, 1);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    lua_pop(L, 1);
    return 0;
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
    if (check_table(L, where, err, errlen) != 0)
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

    if (check_declared_keys(L, set, d, d->name, err, errlen) != 0)
        goto fail;
    /* The first load of a generation (the one that learns the routes) warns about keys an
     * undeclared channel does not use; the other workers' loads would only repeat it. */
    lua_getfield(L, -1, "parameters");
    int track = rc && has_parameters(d) && lua_isnil(L, -1);
    lua_pop(L, 1);
    int has_init = lua_getfield(L, -1, "init") == LUA_TFUNCTION;
    if (!has_init) {
        lua_pop(L, 1);
        if (track)
            warn_undeclared_keys(L, set, d, 0, 0);
        goto routes;
    }
    lua_push_cfg(L, d->params);
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        lua_setfield(L, -2, "cases");
    }
    if (track) {
        /* [chan, init, config] -> [chan, missing, metatable, config, init, config] */
        lua_newtable(L);
        lua_newtable(L);
        lua_pushvalue(L, -2);
        lua_pushcclosure(L, l_note_missing, 1);
        lua_setfield(L, -2, "__index");
        lua_pushvalue(L, -1);
        lua_setmetatable(L, -4);
        lua_rotate(L, -4, 2);        /* [chan, missing, metatable, init, config] */
        lua_pushvalue(L, -1);
        lua_rotate(L, -3, 1);        /* [chan, missing, metatable, config, init, config] */
    }
    if (lua_state_pcall(L, 1, 0, lua_err, sizeof lua_err) != 0) {
        lua_pop(L, track ? 4 : 1);
        lua_error_first_line(lua_err);
        snprintf(err, errlen, "%s (in init of channel '%s' at %s:%d:%d)", lua_err, d->key,
                 set->source, d->line, d->column);
        goto fail;
    }
    if (track) {
        /* The channel keeps a plain table: take the metatable off unless init set its own. */
        if (lua_getmetatable(L, -1)) {
            if (lua_rawequal(L, -1, -3)) {
                lua_pushnil(L);
                lua_setmetatable(L, -3);
            }
            lua_pop(L, 1);
        }
        warn_undeclared_keys(L, set, d, lua_gettop(L) - 2, 1);
        lua_pop(L, 3);
    }
routes:
    /* After init: a channel may set its routes from its parameters (a configurable path). */
    if (load_routes(L, where, rc, err, errlen) != 0 ||
        load_websocket(L, where, rc, err, errlen) != 0 ||
        load_mount(L, where, rc, err, errlen) != 0)
        goto fail;
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
