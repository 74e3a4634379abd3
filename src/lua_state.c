/* SPDX-License-Identifier: MIT */
/* lua_state: see lua_state.h. */
#include "lua_state.h"

#include "channel_hooks.h"
#include "config.h"
#include "lua_budget.h"
#include "lua_message.h"
#include "lua_request.h"
#include "lua_sandbox.h"
#include "lua_sb.h"

#include <lauxlib.h>
#include <lua-cjson.h>
#include <lualib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The allocator of a state: counts what Lua holds (for the memory cap) and keeps freed small
 * blocks in per-size free lists, because a request allocates and frees hundreds of small
 * objects and malloc/free were the largest single cost on the rest echo benchmark. A state is
 * only ever used by one thread, so the lists need no lock. */
#define SMALL_LIMIT 256
#define SMALL_CLASSES (SMALL_LIMIT / 16)

struct lua_memory {
    size_t used;
    size_t limit;
    void *free_lists[SMALL_CLASSES]; /* class i holds blocks of (i + 1) * 16 bytes */
    double cpu_budget;               /* seconds of Lua per entry; 0 = none */
    char host_source[4200];          /* "@<data_dir>/lua/switchboard/": the host's own Lua */
    size_t host_source_len;
};

static size_t size_class(size_t size) { return (size - 1) / 16; }

static void *block_new(struct lua_memory *m, size_t size)
{
    if (size > SMALL_LIMIT)
        return malloc(size);
    size_t c = size_class(size);
    void *p = m->free_lists[c];
    if (p) {
        m->free_lists[c] = *(void **)p;
        return p;
    }
    return malloc((c + 1) * 16);
}

static void block_free(struct lua_memory *m, void *p, size_t size)
{
    if (size > SMALL_LIMIT) {
        free(p);
        return;
    }
    size_t c = size_class(size);
    *(void **)p = m->free_lists[c];
    m->free_lists[c] = p;
}

static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct lua_memory *m = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        if (ptr)
            block_free(m, ptr, osize);
        m->used -= old;
        return NULL;
    }
    /* Refusing a growth makes Lua raise "not enough memory" in the script that asked. */
    if (m->limit && nsize > old && m->used + (nsize - old) > m->limit)
        return NULL;
    void *p;
    if (!ptr) {
        p = block_new(m, nsize);
    } else if (osize <= SMALL_LIMIT && nsize <= SMALL_LIMIT &&
               size_class(osize) == size_class(nsize)) {
        p = ptr; /* the block already has room */
    } else if (osize > SMALL_LIMIT && nsize > SMALL_LIMIT) {
        p = realloc(ptr, nsize);
    } else {
        p = block_new(m, nsize);
        if (p) {
            memcpy(p, ptr, osize < nsize ? osize : nsize);
            block_free(m, ptr, osize);
        }
    }
    if (p)
        m->used = m->used - old + nsize;
    return p;
}

static void free_lists_release(struct lua_memory *m)
{
    for (size_t c = 0; c < SMALL_CLASSES; c++) {
        while (m->free_lists[c]) {
            void *next = *(void **)m->free_lists[c];
            free(m->free_lists[c]);
            m->free_lists[c] = next;
        }
    }
}

size_t lua_state_memory(lua_State *L)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return ((struct lua_memory *)ud)->used;
}

/* The Lua files a state loaded (scripts and the modules they require), for the file watcher. */
static char key_loaded_files;

static void remember_file(lua_State *L, const char *path)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_loaded_files);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &key_loaded_files);
    }
    lua_pushstring(L, path);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 1);
}

void lua_state_loaded_files(lua_State *L, void (*fn)(void *ctx, const char *path), void *ctx)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_loaded_files);
    lua_Integer n = lua_istable(L, -1) ? (lua_Integer)lua_rawlen(L, -1) : 0;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        char path[PATH_MAX];
        if (realpath(lua_tostring(L, -1), path))
            fn(ctx, path);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static struct lua_memory *state_info(lua_State *L);

/* The loader of one of the host's own modules (lua/switchboard/): runs the chunk and gives
 * require a read-only proxy of what it returns, so no script can change the host's tables.
 * Upvalues: the chunk, the module name. */
static int l_load_host_module(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    lua_sandbox_push_readonly(L, -1, lua_tostring(L, lua_upvalueindex(2)));
    return 1;
}

/* This searcher is the last one, so "not found" is raised here, on one line (a load error keeps
 * only the first line of Lua's own message, which would lose the paths): the script and line of
 * the `require`, the module, and every file looked for.  [-0,+0,v] */
static int module_not_found(lua_State *L, const char *name)
{
    char file[1024], path[8192];
    snprintf(file, sizeof file, "%s", name);
    for (char *c = file; *c; c++)
        if (*c == '.')
            *c = '/';
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    snprintf(path, sizeof path, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
    lua_pop(L, 2);
    int pieces = 0;
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
            const char *src = ar.source[0] == '@' ? ar.source + 1 : ar.short_src;
            lua_pushfstring(L, "%s:%d: ", src, ar.currentline);
            pieces++;
            break;
        }
    }
    lua_pushfstring(L, "module '%s' not found; looked for ", name);
    pieces++;
    char *save = NULL;
    int first = 1;
    for (char *t = strtok_r(path, ";", &save); t; t = strtok_r(NULL, ";", &save)) {
        luaL_checkstack(L, 2, "module_not_found");
        lua_pushstring(L, first ? "" : ", ");
        luaL_gsub(L, t, "?", file);
        lua_concat(L, 2);
        pieces++;
        first = 0;
    }
    lua_concat(L, pieces);
    return lua_error(L);
}

/* package.searchers[2] replacement: like Lua's own file searcher, but loads text only, and the
 * module runs in an environment of its own. */
static int l_search_text_module(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchpath");
    lua_pushstring(L, name);
    lua_getfield(L, -3, "path");
    lua_call(L, 2, 2);
    if (lua_isnil(L, -2))
        return module_not_found(L, name);
    const char *filename = lua_tostring(L, -2);
    /* One line that points at the module: the compiler's "file:line: message" already does;
     * other failures (a binary chunk, an unreadable file) get the file and module named. */
    if (luaL_loadfilex(L, filename, "t") != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        if (msg && strncmp(msg, filename, strlen(filename)) == 0)
            return lua_error(L);
        return luaL_error(L, "%s: %s (module '%s')", filename, msg ? msg : "cannot load", name);
    }
    lua_sandbox_push_env(L);
    lua_setupvalue(L, -2, 1);
    remember_file(L, filename);
    const struct lua_memory *m = state_info(L);
    if (strncmp(filename, m->host_source + 1, m->host_source_len - 1) == 0) {
        lua_pushvalue(L, 1);
        lua_pushcclosure(L, l_load_host_module, 2);
    }
    lua_pushstring(L, filename);
    return 2;
}

/* ---- the CPU budget (lua_budget does the work; the state knows its size and host code) ---- */

static struct lua_memory *state_info(lua_State *L)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return ud;
}

int lua_state_budget_exceeded(void) { return lua_budget_exceeded(); }

void lua_state_budget_begin(lua_State *L)
{
    const struct lua_memory *m = state_info(L);
    lua_budget_begin(L, m->cpu_budget, m->host_source);
}

int lua_state_budget_end(lua_State *L)
{
    int exceeded = lua_budget_end();
    lua_sandbox_entry_end(L);
    return exceeded;
}

static void set_package_paths(lua_State *L, const struct lua_paths *paths)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    if (paths->project_dir) {
        luaL_addstring(&b, paths->project_dir);
        luaL_addstring(&b, "/?.lua;");
        luaL_addstring(&b, paths->project_dir);
        luaL_addstring(&b, "/?/init.lua;");
    }
    luaL_addstring(&b, paths->data_dir);
    luaL_addstring(&b, "/lua/?.lua;");
    luaL_addstring(&b, paths->data_dir);
    luaL_addstring(&b, "/lua/?/init.lua;");
    luaL_addstring(&b, paths->data_dir);
    luaL_addstring(&b, "/channels/?.lua");
    luaL_pushresult(&b);

    lua_getglobal(L, "package");
    lua_insert(L, -2);
    lua_setfield(L, -2, "path");
    /* Native modules could block a worker or take the process down: none are loaded. */
    lua_pushliteral(L, "");
    lua_setfield(L, -2, "cpath");
    lua_getfield(L, -1, "searchers");
    lua_pushcfunction(L, l_search_text_module);
    lua_rawseti(L, -2, 2);
    lua_pushnil(L);
    lua_rawseti(L, -2, 4); /* the all-in-one C searcher */
    lua_pushnil(L);
    lua_rawseti(L, -2, 3); /* the C searcher */
    lua_pop(L, 2);
}

static void preload(lua_State *L, const char *name, lua_CFunction open)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, open);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

/* sb.json.array([t]) -> t, refusing a table whose metatable is protected (a library's proxy, an
 * `out`, ...) other than the JSON array mark itself. Upvalues: the module's own array, the
 * metatable of JSON arrays.  [-0,+1,e] */
static int l_json_array_checked(lua_State *L)
{
    if (lua_istable(L, 1) && lua_getmetatable(L, 1)) {
        lua_pushliteral(L, "__metatable");
        if (lua_rawget(L, -2) != LUA_TNIL && !lua_rawequal(L, -2, lua_upvalueindex(2)))
            return luaL_error(L, "sb.json.array: the table has a protected metatable");
        lua_pop(L, 2);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* The metatables the switchboard module shares between every JSON array and every HTTP error:
 * scripts see read-only views of them. */
static void protect_switchboard(lua_State *L, int sb)
{
    if (lua_getfield(L, sb, "json") == LUA_TTABLE &&
        lua_getfield(L, -1, "array") == LUA_TFUNCTION) {
        int json = lua_gettop(L) - 1;
        lua_pushvalue(L, -1);
        lua_call(L, 0, 1); /* a marked array */
        lua_sandbox_protect_metatable(L, -1, "the metatable of JSON arrays", 1);
        if (lua_getmetatable(L, -1)) {
            lua_remove(L, -2);
            lua_pushcclosure(L, l_json_array_checked, 2);
            lua_setfield(L, json, "array");
        }
    }
    lua_settop(L, sb);
    if (lua_getfield(L, sb, "http_error") == LUA_TFUNCTION) {
        lua_pushinteger(L, 500);
        lua_pushliteral(L, "error");
        lua_pushliteral(L, "");
        if (lua_pcall(L, 3, 0, 0) != LUA_OK)
            lua_sandbox_protect_metatable(L, -1, "the metatable of HTTP errors", 0);
    }
    lua_settop(L, sb);
}

/* The switchboard module as require gives it: a read-only proxy shared by every script. */
static int l_open_switchboard(lua_State *L)
{
    lua_settop(L, 0);
    lua_pushcfunction(L, luaopen_switchboard);
    lua_call(L, 0, 1);
    protect_switchboard(L, 1);
    lua_sandbox_push_readonly(L, 1, "switchboard");
    return 1;
}

/* A module of the host written in C as require gives it: read-only, nested tables too.
 * Upvalues: the function that pushes its table, its name. */
static int l_open_c_module(lua_State *L)
{
    lua_settop(L, 0);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_call(L, 0, 1);
    lua_sandbox_push_readonly(L, 1, lua_tostring(L, lua_upvalueindex(2)));
    return 1;
}

static void preload_c_module(lua_State *L, const char *name, lua_CFunction open)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, open);
    lua_pushstring(L, name);
    lua_pushcclosure(L, l_open_c_module, 2);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

/* lua-cjson 2.1.0's safe variant (the library has it; its header does not declare it). */
extern int luaopen_cjson_safe(lua_State *L);

lua_State *lua_state_new(const struct lua_paths *paths, const struct lua_limits *limits, char *err,
                         size_t errlen)
{
    struct lua_memory *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->limit = limits ? limits->memory_limit : 0;
    m->cpu_budget = limits ? limits->cpu_budget : 0;
    snprintf(m->host_source, sizeof m->host_source, "@%s/lua/switchboard/", paths->data_dir);
    m->host_source_len = strlen(m->host_source);
    lua_State *L = lua_newstate(counting_alloc, m);
    if (!L) {
        free(m);
        snprintf(err, errlen, "cannot create a Lua state (memory limit too small?)");
        return NULL;
    }
    /* No task outside requests; coroutines copy the main thread's extra space. */
    lua_task_bind(L, NULL);
    luaL_openlibs(L);
    /* Most objects live for one request: the generational collector handles that pattern with
     * less work than the incremental one (measured on the rest echo benchmark). */
    lua_gc(L, LUA_GCGEN, 0, 0);
    set_package_paths(L, paths);
    /* The real globals stay the host's; scripts get the sandbox's view (lua_sandbox.h). */
    lua_sandbox_apply(L);
    /* lua-cjson's settings belong to its instance: each script environment opens its own. */
    lua_sandbox_per_env_module(L, "cjson", luaopen_cjson);
    lua_sandbox_per_env_module(L, "cjson.safe", luaopen_cjson_safe);
    preload(L, "switchboard", l_open_switchboard);
    preload_c_module(L, "switchboard.hooks", channel_hooks_open);   /* the hook names */
    preload_c_module(L, "switchboard.message", lua_message_open);   /* the UserMessage rules */
    lua_request_open(L);
    return L;
}

void lua_state_close(lua_State *L)
{
    if (!L)
        return;
    void *ud = NULL;
    lua_getallocf(L, &ud);
    lua_close(L);
    free_lists_release(ud);
    free(ud);
}

/* Message handler: string errors get a traceback, anything else (host HTTP errors) passes. */
static int message_handler(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TTABLE)
        return 1;
    const char *msg = lua_tostring(L, 1);
    if (!msg)
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int lua_state_pcall(lua_State *L, int nargs, int nresults, char *err, size_t errlen)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, message_handler);
    lua_insert(L, base);
    lua_state_budget_begin(L);
    int rc = lua_pcall(L, nargs, nresults, base);
    lua_state_budget_end(L);
    lua_remove(L, base);
    if (rc == LUA_OK)
        return 0;
    if (err) {
        const char *msg = lua_tostring(L, -1);
        if (!msg && lua_type(L, -1) == LUA_TTABLE) {
            lua_getfield(L, -1, "message");
            snprintf(err, errlen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "error");
            lua_pop(L, 1);
        } else {
            snprintf(err, errlen, "%s", msg ? msg : "unknown error");
        }
    }
    return -1;
}

int lua_state_push_protected(lua_State *L, lua_CFunction fn, void *ud)
{
    lua_settop(L, 0);
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, ud);
    return lua_pcall(L, 1, LUA_MULTRET, 0);
}

void lua_error_first_line(char *text)
{
    char *nl = strchr(text, '\n');
    if (nl)
        *nl = '\0';
}

int lua_state_dofile(lua_State *L, const char *path, char *err, size_t errlen)
{
    remember_file(L, path);
    if (luaL_loadfilex(L, path, "t") != LUA_OK) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    /* Each script file has globals of its own: a stray one changes nothing else. */
    lua_sandbox_push_env(L);
    lua_setupvalue(L, -2, 1);
    if (lua_state_pcall(L, 0, 1, err, errlen) != 0) {
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

void lua_push_cfg(lua_State *L, const struct cfg_value *v)
{
    /* Each level of nesting holds two slots (its table and the value being built), and Lua
     * guarantees only 20: a deep tree must ask for room first. */
    luaL_checkstack(L, 4, "configuration nested too deeply");
    if (!v) {
        lua_pushnil(L);
        return;
    }
    switch (v->type) {
    case CFG_NULL:
        lua_pushnil(L);
        break;
    case CFG_STRING:
        lua_pushstring(L, v->text);
        break;
    case CFG_BOOL:
        lua_pushboolean(L, v->boolean);
        break;
    case CFG_INT:
        lua_pushinteger(L, (lua_Integer)v->integer);
        break;
    case CFG_FLOAT:
        lua_pushnumber(L, v->number);
        break;
    case CFG_MAP:
        lua_createtable(L, 0, (int)v->count);
        for (size_t i = 0; i < v->count; i++) {
            lua_push_cfg(L, &v->items[i]);
            lua_setfield(L, -2, v->keys[i]);
        }
        break;
    case CFG_SEQ:
        lua_createtable(L, (int)v->count, 0);
        for (size_t i = 0; i < v->count; i++) {
            lua_push_cfg(L, &v->items[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    }
}
