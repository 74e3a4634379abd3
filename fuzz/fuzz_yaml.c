/* SPDX-License-Identifier: MIT */
/* fuzz_yaml: the YAML loader (src/cfg_tree.c, src/config.c) on arbitrary text.
 *
 * Each input goes through cfg_parse_string; text that parses is then written to a scratch
 * credentials.yml and endpoints.yml and loaded by credentials_load and endpoints_load, the way the
 * host reads them, and its tree is pushed into a Lua state as channel parameters are.
 * Checked besides memory errors: a failure always says where ("NAME:..."), a tree is consistent
 * (every key found by cfg_map_get at its own index, since duplicate keys are refused, positions
 * 1-based), and the two loaders agree with the tree. ${SB_FUZZ_VAR} and ${SB_FUZZ_EMPTY} are set,
 * so expansion is reached; any other variable is unset. Uses: config, lua_state. */
#include "config.h"
#include "lua_state.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NAME "fuzz.yml"

static char scratch_dir[32], credentials_path[64], endpoints_path[64];
static lua_State *L;

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_yaml: %s\n", what);
        abort();
    }
}

static void remove_scratch(void)
{
    unlink(credentials_path);
    unlink(endpoints_path);
    rmdir(scratch_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setenv("SB_FUZZ_VAR", "expanded value", 1);
    setenv("SB_FUZZ_EMPTY", "", 1);
    snprintf(scratch_dir, sizeof scratch_dir, "/tmp/sb-fuzz-yaml.XXXXXX");
    check(mkdtemp(scratch_dir) != NULL, "cannot make a scratch folder");
    snprintf(credentials_path, sizeof credentials_path, "%s/credentials.yml", scratch_dir);
    snprintf(endpoints_path, sizeof endpoints_path, "%s/endpoints.yml", scratch_dir);
    atexit(remove_scratch);
    L = luaL_newstate();
    check(L != NULL, "no Lua state");
    return 0;
}

static void check_tree(const cfg_value *v, int depth)
{
    check(v->line >= 1 && v->column >= 1, "a value without a position");
    check(depth < 10000, "absurd nesting");
    switch (v->type) {
    case CFG_MAP:
        for (size_t i = 0; i < v->count; i++) {
            check(v->keys[i] != NULL, "a map key is NULL");
            check(v->key_pos[i].line >= 1 && v->key_pos[i].column >= 1, "a key without position");
            check(cfg_map_get(v, v->keys[i]) == &v->items[i], "cfg_map_get misses a key");
            check_tree(&v->items[i], depth + 1);
        }
        break;
    case CFG_SEQ:
        for (size_t i = 0; i < v->count; i++)
            check_tree(&v->items[i], depth + 1);
        break;
    case CFG_NULL:
        break;
    default:
        check(v->text != NULL, "a scalar without text");
        check(strstr(v->text, "${SB_FUZZ_VAR}") == NULL, "a variable left unexpanded");
        break;
    }
}

static int write_file(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t written = fwrite(data, 1, size, f);
    return fclose(f) == 0 && written == size ? 0 : -1;
}

static void check_loaders(const uint8_t *data, size_t size, const cfg_value *tree)
{
    char err[4096];
    check(write_file(credentials_path, data, size) == 0, "cannot write the scratch file");
    struct credentials c;
    err[0] = '\0';
    if (credentials_load(credentials_path, &c, err, sizeof err) == 0) {
        size_t expect = tree->type == CFG_MAP ? tree->count : 0;
        check(c.count == expect, "credentials: not one channel per key");
        for (size_t i = 0; i < c.count; i++)
            check(strcmp(c.channels[i].key, tree->keys[i]) == 0, "credentials: keys out of order");
        credentials_free(&c);
    } else {
        check(strncmp(err, credentials_path, strlen(credentials_path)) == 0,
              "credentials: an error that does not name the file");
    }

    check(rename(credentials_path, endpoints_path) == 0, "cannot rename the scratch file");
    struct endpoints e;
    endpoints_defaults(&e);
    err[0] = '\0';
    if (endpoints_load(endpoints_path, &e, err, sizeof err) == 0) {
        check(e.bot.kind != BOT_SCRIPT || (e.bot.script && e.bot.script[0] == '/'),
              "endpoints: a relative bot script path");
        check(e.bot.kind != BOT_HTTP || e.bot.url != NULL, "endpoints: an HTTP bot without url");
        endpoints_free(&e);
    } else {
        check(strncmp(err, endpoints_path, strlen(endpoints_path)) == 0,
              "endpoints: an error that does not name the file");
        endpoints_free(&e);
    }
}

/* Channel parameters reach init() as Lua tables built from the tree. */
static int push_tree(lua_State *S)
{
    lua_push_cfg(S, lua_touserdata(S, 1));
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cfg_value *tree = NULL;
    char err[4096];
    err[0] = '\0';
    if (cfg_parse_string(NAME, (const char *)data, size, &tree, err, sizeof err) != 0) {
        check(strncmp(err, NAME ":", strlen(NAME) + 1) == 0, "an error that does not say where");
        return 0;
    }
    check(tree != NULL, "success without a tree");
    check_tree(tree, 0);
    check_loaders(data, size, tree);

    lua_settop(L, 0);
    lua_pushcfunction(L, push_tree);
    lua_pushlightuserdata(L, tree);
    check(lua_pcall(L, 1, 1, 0) == LUA_OK, "lua_push_cfg raised");
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT);
    cfg_free(tree);
    return 0;
}
