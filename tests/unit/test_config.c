/* SPDX-License-Identifier: MIT */
/* test_config: the YAML tree (scalar typing, nesting, positions, ${VAR}, errors) and the two
 * loaders (credentials.yml, endpoints.yml) against files written to a fresh temporary folder. */
#include "../../src/config.h"
#include "check.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[PATH_MAX];  /* realpath of the folder the fixtures are written to */
#define MAX_FIXTURES 64
static char tmpfiles[MAX_FIXTURES][PATH_MAX];
static int ntmpfiles;

static char err[512];

/* Writes `text` to tmpdir/name and returns the path (static storage, one per file). */
static const char *fixture(const char *name, const char *text)
{
    char *path;
    FILE *f;

    if (ntmpfiles >= MAX_FIXTURES)
        abort();
    path = tmpfiles[ntmpfiles];
    if (snprintf(path, PATH_MAX, "%s/%s", tmpdir, name) >= PATH_MAX)
        abort();
    f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        abort();
    }
    ntmpfiles++;
    return path;
}

static cfg_value *parse(const char *yaml)
{
    cfg_value *v = NULL;

    err[0] = '\0';
    if (cfg_parse_string("t.yml", yaml, strlen(yaml), &v, err, sizeof err) != 0)
        return NULL;
    return v;
}

/* Parses text that must fail; returns the message. */
static const char *parse_error(const char *yaml)
{
    cfg_value *v = parse(yaml);

    if (v) {
        cfg_free(v);
        return "(parsed)";
    }
    return err;
}

static const cfg_value *get(const cfg_value *map, const char *key)
{
    return cfg_map_get(map, key);
}

/* ---- the tree ------------------------------------------------------------------------------- */

static void test_scalar_types(void)
{
    cfg_value *v = parse("n1:\n"
                         "n2: ~\n"
                         "n3: null\n"
                         "n4: NULL\n"
                         "n5: Null\n"
                         "b1: true\n"
                         "b2: False\n"
                         "b3: TRUE\n"
                         "s_yes: yes\n"
                         "s_mixed: tRue\n"
                         "s_nul: nULL\n"
                         "i1: 42\n"
                         "i2: -7\n"
                         "i3: +3\n"
                         "i4: 0x1F\n"
                         "i5: 0o17\n"
                         "i6: 0\n"
                         "s_0x: 0x\n"
                         "s_0o8: 0o8\n"
                         "f_big: 99999999999999999999\n"
                         "s_bighex: 0xFFFFFFFFFFFFFFFF\n"
                         "f1: 1.5\n"
                         "f2: -.5\n"
                         "f3: 1.\n"
                         "f4: 1e3\n"
                         "f5: 2.5E-2\n"
                         "f6: .inf\n"
                         "f7: -.Inf\n"
                         "f8: +.INF\n"
                         "f9: .nan\n"
                         "f10: .NaN\n"
                         "s_dot: .\n"
                         "s_e: 1e\n"
                         "s_e3: e3\n"
                         "s_ver: 1.2.3\n"
                         "s_negnan: -.nan\n"
                         "s_word: hello world\n"
                         "q1: \"42\"\n"
                         "q2: 'true'\n"
                         "q3: ''\n"
                         "q4: \"~\"\n"
                         "tag: !!str 12\n"
                         "block: |\n"
                         "  12\n");
    const cfg_value *x;

    CHECK(v != NULL);
    if (!v) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    CHECK(v->type == CFG_MAP);
    CHECK(get(v, "n1")->type == CFG_NULL);
    CHECK_STR(get(v, "n1")->text, "");
    CHECK(get(v, "n2")->type == CFG_NULL);
    CHECK_STR(get(v, "n2")->text, "~");
    CHECK(get(v, "n3")->type == CFG_NULL);
    CHECK(get(v, "n4")->type == CFG_NULL);
    CHECK(get(v, "n5")->type == CFG_NULL);

    CHECK(get(v, "b1")->type == CFG_BOOL && get(v, "b1")->boolean == 1);
    CHECK(get(v, "b2")->type == CFG_BOOL && get(v, "b2")->boolean == 0);
    CHECK_STR(get(v, "b2")->text, "False");
    CHECK(get(v, "b3")->type == CFG_BOOL && get(v, "b3")->boolean == 1);
    CHECK(get(v, "s_yes")->type == CFG_STRING); /* YAML 1.2: yes is a string */
    CHECK(get(v, "s_mixed")->type == CFG_STRING);
    CHECK(get(v, "s_nul")->type == CFG_STRING);

    x = get(v, "i1");
    CHECK(x->type == CFG_INT && x->integer == 42 && x->number == 42.0);
    CHECK_STR(x->text, "42");
    CHECK(get(v, "i2")->type == CFG_INT && get(v, "i2")->integer == -7);
    CHECK(get(v, "i3")->type == CFG_INT && get(v, "i3")->integer == 3);
    CHECK(get(v, "i4")->type == CFG_INT && get(v, "i4")->integer == 31);
    CHECK_STR(get(v, "i4")->text, "0x1F");
    CHECK(get(v, "i5")->type == CFG_INT && get(v, "i5")->integer == 15);
    CHECK(get(v, "i6")->type == CFG_INT && get(v, "i6")->integer == 0);
    CHECK(get(v, "s_0x")->type == CFG_STRING);
    CHECK(get(v, "s_0o8")->type == CFG_STRING);
    CHECK(get(v, "f_big")->type == CFG_FLOAT && get(v, "f_big")->number > 9e19);
    CHECK(get(v, "s_bighex")->type == CFG_STRING);

    CHECK(get(v, "f1")->type == CFG_FLOAT && get(v, "f1")->number == 1.5);
    CHECK_STR(get(v, "f1")->text, "1.5");
    CHECK(get(v, "f2")->type == CFG_FLOAT && get(v, "f2")->number == -0.5);
    CHECK(get(v, "f3")->type == CFG_FLOAT && get(v, "f3")->number == 1.0);
    CHECK(get(v, "f4")->type == CFG_FLOAT && get(v, "f4")->number == 1000.0);
    CHECK(get(v, "f5")->type == CFG_FLOAT && get(v, "f5")->number == 0.025);
    CHECK(get(v, "f6")->type == CFG_FLOAT && isinf(get(v, "f6")->number) &&
          get(v, "f6")->number > 0);
    CHECK(get(v, "f7")->type == CFG_FLOAT && isinf(get(v, "f7")->number) &&
          get(v, "f7")->number < 0);
    CHECK(get(v, "f8")->type == CFG_FLOAT && isinf(get(v, "f8")->number));
    CHECK(get(v, "f9")->type == CFG_FLOAT && isnan(get(v, "f9")->number));
    CHECK(get(v, "f10")->type == CFG_FLOAT && isnan(get(v, "f10")->number));
    CHECK(get(v, "s_dot")->type == CFG_STRING);
    CHECK(get(v, "s_e")->type == CFG_STRING);
    CHECK(get(v, "s_e3")->type == CFG_STRING);
    CHECK(get(v, "s_ver")->type == CFG_STRING);
    CHECK(get(v, "s_negnan")->type == CFG_STRING);
    CHECK(get(v, "s_word")->type == CFG_STRING);
    CHECK_STR(get(v, "s_word")->text, "hello world");

    CHECK(get(v, "q1")->type == CFG_STRING);
    CHECK_STR(get(v, "q1")->text, "42");
    CHECK(get(v, "q2")->type == CFG_STRING);
    CHECK(get(v, "q3")->type == CFG_STRING);
    CHECK_STR(get(v, "q3")->text, "");
    CHECK(get(v, "q4")->type == CFG_STRING);
    CHECK(get(v, "tag")->type == CFG_STRING);
    CHECK(get(v, "block")->type == CFG_STRING);
    CHECK_STR(get(v, "block")->text, "12\n");
    cfg_free(v);
}

static void test_nesting(void)
{
    cfg_value *v = parse("top:\n"
                         "  list:\n"
                         "    - 1\n"
                         "    - {c: d, e: [x, y]}\n"
                         "    -\n"
                         "  empty_list: []\n"
                         "  empty_map: {}\n"
                         "zeta: last\n"
                         "alpha: first\n");
    const cfg_value *top, *list, *m;

    CHECK(v != NULL);
    if (!v)
        return;
    CHECK(v->count == 3);
    CHECK_STR(v->keys[0], "top"); /* file order, not sorted */
    CHECK_STR(v->keys[1], "zeta");
    CHECK_STR(v->keys[2], "alpha");
    CHECK(v->text == NULL);
    top = get(v, "top");
    CHECK(top && top->type == CFG_MAP && top->count == 3);
    list = get(top, "list");
    CHECK(list && list->type == CFG_SEQ && list->count == 3);
    CHECK(list && list->keys == NULL);
    if (list && list->count == 3) {
        CHECK(list->items[0].type == CFG_INT && list->items[0].integer == 1);
        m = &list->items[1];
        CHECK(m->type == CFG_MAP && m->count == 2);
        CHECK_STR(get(m, "c")->text, "d");
        CHECK(get(m, "e")->type == CFG_SEQ && get(m, "e")->count == 2);
        CHECK_STR(get(m, "e")->items[1].text, "y");
        CHECK(list->items[2].type == CFG_NULL);
    }
    CHECK(get(top, "empty_list")->type == CFG_SEQ && get(top, "empty_list")->count == 0);
    CHECK(get(top, "empty_map")->type == CFG_MAP && get(top, "empty_map")->count == 0);
    CHECK(get(get(top, "empty_map"), "x") == NULL);
    CHECK(get(v, "missing") == NULL);
    CHECK(get(list, "0") == NULL);          /* not a map */
    CHECK(get(get(v, "zeta"), "x") == NULL); /* a scalar */
    CHECK(cfg_map_get(NULL, "x") == NULL);
    cfg_free(v);
}

static void test_positions(void)
{
    cfg_value *v = parse("# a comment\n"
                         "a:\n"
                         "  b: 1\n"
                         "  c:\n"
                         "    - x\n"
                         "    -   'y'\n"
                         "d: {e: f}\n");
    const cfg_value *a, *c;

    CHECK(v != NULL);
    if (!v)
        return;
    CHECK(v->line == 2 && v->column == 1);
    a = get(v, "a");
    CHECK(a->line == 3 && a->column == 3);
    CHECK(get(a, "b")->line == 3 && get(a, "b")->column == 6);
    c = get(a, "c");
    CHECK(c->line == 5 && c->column == 5);
    CHECK(c->items[0].line == 5 && c->items[0].column == 7);
    CHECK(c->items[1].line == 6 && c->items[1].column == 9);
    CHECK(get(v, "d")->line == 7 && get(v, "d")->column == 4);
    CHECK(get(get(v, "d"), "e")->line == 7 && get(get(v, "d"), "e")->column == 8);
    /* key positions, parallel to keys */
    CHECK(v->key_pos != NULL);
    if (v->key_pos) {
        CHECK(v->key_pos[0].line == 2 && v->key_pos[0].column == 1); /* a */
        CHECK(v->key_pos[1].line == 7 && v->key_pos[1].column == 1); /* d */
    }
    CHECK(a->key_pos != NULL);
    if (a->key_pos) {
        CHECK(a->key_pos[0].line == 3 && a->key_pos[0].column == 3); /* b */
        CHECK(a->key_pos[1].line == 4 && a->key_pos[1].column == 3); /* c */
    }
    CHECK(get(v, "d")->key_pos && get(v, "d")->key_pos[0].line == 7 &&
          get(v, "d")->key_pos[0].column == 5); /* e in {e: f} */
    CHECK(c->key_pos == NULL);                  /* a list has no keys */
    CHECK(get(a, "b")->key_pos == NULL);        /* nor has a scalar */
    cfg_free(v);

    /* more keys than the first allocation holds: positions follow their keys as the map grows */
    v = parse("k0: 0\nk1: 1\nk2: 2\nk3: 3\nk4: 4\n  # gap\nk5: 5\nk6: {x: 1,  y: 2}\n");
    CHECK(v != NULL && v->count == 7);
    if (v && v->count == 7 && v->key_pos) {
        static const int lines[7] = {1, 2, 3, 4, 5, 7, 8};
        size_t i;

        for (i = 0; i < 7; i++)
            CHECK(v->key_pos[i].line == lines[i] && v->key_pos[i].column == 1);
        CHECK(get(v, "k6")->key_pos[1].line == 8 && get(v, "k6")->key_pos[1].column == 13);
    }
    cfg_free(v);
}

static void test_empty_documents(void)
{
    cfg_value *v;

    v = parse("");
    CHECK(v && v->type == CFG_NULL && v->line == 1 && v->column == 1);
    cfg_free(v);
    v = parse("# only a comment\n\n# and another\n");
    CHECK(v && v->type == CFG_NULL);
    cfg_free(v);
    v = parse("---\n");
    CHECK(v && v->type == CFG_NULL);
    cfg_free(v);
    v = NULL;
    CHECK(cfg_parse_string("t.yml", NULL, 0, &v, err, sizeof err) == 0 && v &&
          v->type == CFG_NULL);
    cfg_free(v);
    cfg_free(NULL);
}

static void test_env_vars(void)
{
    cfg_value *v;

    setenv("SB_T_A", "alpha", 1);
    setenv("SB_T_EMPTY", "", 1);
    setenv("SB_T_NUM", "42", 1);
    unsetenv("SB_T_UNSET");
    v = parse("one: ${SB_T_A}\n"
              "multi: \"pre-${SB_T_A}-${SB_T_A}/${SB_T_EMPTY}end\"\n"
              "num: ${SB_T_NUM}\n"
              "quoted: '${SB_T_A}'\n"
              "list:\n  - x${SB_T_A}y\n"
              "dollar: a $ b $SB_T_A\n"
              "unclosed: \"${SB_T_A\"\n"
              "empty_name: ${}\n"
              "nested: ${A${SB_T_A}}\n"
              "${SB_T_A}_key: 1\n"
              "plain: 12\n");
    CHECK(v != NULL);
    if (!v) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    CHECK_STR(get(v, "one")->text, "alpha");
    CHECK(get(v, "one")->type == CFG_STRING);
    CHECK_STR(get(v, "multi")->text, "pre-alpha-alpha/end");
    CHECK_STR(get(v, "num")->text, "42");
    CHECK(get(v, "num")->type == CFG_STRING); /* an expanded scalar is a string */
    CHECK_STR(get(v, "quoted")->text, "alpha");
    CHECK_STR(get(v, "list")->items[0].text, "xalphay");
    CHECK_STR(get(v, "dollar")->text, "a $ b $SB_T_A");
    CHECK_STR(get(v, "unclosed")->text, "${SB_T_A");
    CHECK_STR(get(v, "empty_name")->text, "${}");
    CHECK_STR(get(v, "nested")->text, "${Aalpha}");
    CHECK(get(v, "alpha_key") != NULL);
    CHECK(get(v, "plain")->type == CFG_INT);
    cfg_free(v);

    CHECK_STR(parse_error("a: 1\nslack_token: \"secret-${SB_T_UNSET}\"\n"),
              "t.yml:2:14: environment variable SB_T_UNSET is not set (key 'slack_token')");
    CHECK(strstr(err, "secret") == NULL);
    CHECK_STR(parse_error("ok: ${SB_T_A}\nbad: [1, \"${SB_T_UNSET}\"]\n"),
              "t.yml:2:10: environment variable SB_T_UNSET is not set (key 'bad')");
    CHECK_STR(parse_error("${SB_T_UNSET}\n"),
              "t.yml:1:1: environment variable SB_T_UNSET is not set");
    CHECK_STR(parse_error("${SB_T_A} ${SB_T_UNSET}: 1\n"),
              "t.yml:1:1: environment variable SB_T_UNSET is not set");
}

static void test_syntax_errors(void)
{
    CHECK_STR(parse_error("rest:\nslack:\n  token: x\nfoo: bar: baz\n"),
              "t.yml:4:9: mapping values are not allowed in this context");
    CHECK_STR(parse_error("a: b\nc\nd: e\n"),
              "t.yml:3:1: could not find expected ':' (while scanning a simple key at line 2, "
              "column 1)");
    CHECK(strncmp(parse_error("a: [1, 2\n"), "t.yml:2:1: did not find expected ',' or ']'", 42) ==
          0);
    CHECK(strncmp(parse_error("a: \"abc\n"), "t.yml:2:1: found unexpected end of stream", 40) ==
          0);
    CHECK_STR(parse_error("a: \xff\n"), "t.yml:1:4: invalid leading UTF-8 octet");
    CHECK_STR(parse_error("a: 1\n---\nb: 2\n"),
              "t.yml:2:1: only one YAML document is allowed in this file");
}

static void test_structure_errors(void)
{
    CHECK_STR(parse_error("a: 1\nb: 2\na: 3\n"), "t.yml:3:1: duplicate key 'a' (first at line 1)");
    CHECK_STR(parse_error("x:\n  k: 1\n  j: 2\n  k: 3\n"),
              "t.yml:4:3: duplicate key 'k' (first at line 2)");
    CHECK_STR(parse_error("{a: 1, a: 1}"), "t.yml:1:8: duplicate key 'a' (first at line 1)");
    CHECK_STR(parse_error("? [a]\n: 1\n"), "t.yml:1:3: a map key must be a scalar, not a list");
    CHECK_STR(parse_error("? {a: 1}\n: 1\n"), "t.yml:1:3: a map key must be a scalar, not a map");
    CHECK_STR(parse_error("a: &x 1\nb: *x\n"),
              "t.yml:2:4: aliases (*name) are not supported; write the value out");
    CHECK_STR(parse_error("a: &x [1]\n*x : 2\n"),
              "t.yml:2:1: aliases (*name) are not supported; write the value out");
}

static void test_depth_limit(void)
{
    char deep[512];
    size_t i;
    cfg_value *v;

    for (i = 0; i < 150; i++)
        deep[i] = '[';
    for (; i < 300; i++)
        deep[i] = ']';
    deep[i] = '\0';
    CHECK(strstr(parse_error(deep), "nested deeper than") != NULL);
    deep[50] = '\0'; /* 50 levels are fine */
    for (i = 0; i < 50; i++)
        deep[50 + i] = ']';
    deep[100] = '\0';
    v = parse(deep);
    CHECK(v != NULL && v->type == CFG_SEQ);
    cfg_free(v);
}

static void test_parse_file(void)
{
    cfg_value *v = NULL;
    const char *p = fixture("plain.yml", "k: v\n");
    char missing[PATH_MAX + 16];

    CHECK(cfg_parse_file(p, &v, err, sizeof err) == 0);
    CHECK(v && v->type == CFG_MAP && strcmp(get(v, "k")->text, "v") == 0);
    cfg_free(v);
    v = NULL;
    p = fixture("bad.yml", "k: v\n  x: y: z\n");
    CHECK(cfg_parse_file(p, &v, err, sizeof err) == -1 && v == NULL);
    CHECK(strncmp(err, p, strlen(p)) == 0 && strstr(err, ":2:") != NULL);
    snprintf(missing, sizeof missing, "%s/missing.yml", tmpdir);
    CHECK(cfg_parse_file(missing, &v, err, sizeof err) == -1);
    CHECK(strstr(err, "missing.yml: cannot read: No such file or directory") != NULL);
    CHECK(cfg_parse_file(tmpdir, &v, err, sizeof err) == -1);
    CHECK(strstr(err, ": cannot read: Is a directory") != NULL);
}

/* ---- credentials.yml ------------------------------------------------------------------------ */

static void test_credentials(void)
{
    struct credentials c;
    const char *p = fixture("credentials.yml",
                            "# channels\n"
                            "rest:\n"
                            "slack:\n"
                            "  slack_token: \"xoxb\"\n"
                            "  slack_channel: 12\n"
                            "mypackage.myio:\n"
                            "  username: \"user_name\"\n"
                            "channels/x.lua: {}\n"
                            "  \n"
                            "callback: ~\n");

    CHECK(credentials_load(p, &c, err, sizeof err) == 0);
    CHECK(c.count == 5);
    if (c.count != 5) {
        fprintf(stderr, "%s\n", err);
        credentials_free(&c);
        return;
    }
    CHECK_STR(c.path, p);
    CHECK_STR(c.dir, tmpdir);
    CHECK(c.root != NULL);
    CHECK_STR(c.channels[0].key, "rest");
    CHECK(c.channels[0].params == NULL);
    CHECK(c.channels[0].line == 2 && c.channels[0].column == 1);
    CHECK_STR(c.channels[1].key, "slack");
    CHECK(c.channels[1].line == 3 && c.channels[1].column == 1);
    CHECK(c.channels[1].params && c.channels[1].params->type == CFG_MAP);
    CHECK_STR(get(c.channels[1].params, "slack_token")->text, "xoxb");
    CHECK(get(c.channels[1].params, "slack_channel")->type == CFG_INT);
    CHECK_STR(c.channels[2].key, "mypackage.myio");
    CHECK(c.channels[2].line == 6);
    CHECK_STR(c.channels[3].key, "channels/x.lua");
    CHECK(c.channels[3].params && c.channels[3].params->count == 0);
    CHECK_STR(c.channels[4].key, "callback");
    CHECK(c.channels[4].params == NULL);
    CHECK(c.channels[4].line == 10);
    credentials_free(&c);
    CHECK(c.root == NULL && c.channels == NULL && c.count == 0);
    credentials_free(&c); /* twice is harmless */
}

static void test_credentials_empty(void)
{
    struct credentials c;

    CHECK(credentials_load(fixture("empty.yml", ""), &c, err, sizeof err) == 0);
    CHECK(c.count == 0 && c.channels == NULL && c.dir != NULL);
    credentials_free(&c);
    CHECK(credentials_load(fixture("comments.yml", "# rest:\n\n# nothing here\n"), &c, err,
                           sizeof err) == 0);
    CHECK(c.count == 0);
    credentials_free(&c);
}

/* Loads credentials that must fail; returns the message with the folder cut off. */
static const char *credentials_error(const char *name, const char *text)
{
    struct credentials c;
    const char *p = fixture(name, text);

    if (credentials_load(p, &c, err, sizeof err) == 0) {
        credentials_free(&c);
        return "(loaded)";
    }
    CHECK(c.root == NULL && c.channels == NULL && c.path == NULL);
    return strncmp(err, tmpdir, strlen(tmpdir)) == 0 ? err + strlen(tmpdir) + 1 : err;
}

static void test_credentials_errors(void)
{
    CHECK_STR(credentials_error("c1.yml", "rest:\nslack: \"xoxb-secret\"\n"),
              "c1.yml:2:8: channel 'slack': parameters must be a map, not a string");
    CHECK(strstr(err, "xoxb-secret") == NULL);
    CHECK_STR(credentials_error("c2.yml", "rest:\nslack:\n  - a\n"),
              "c2.yml:3:3: channel 'slack': parameters must be a map, not a list");
    CHECK_STR(credentials_error("c3.yml", "rest: 5\n"),
              "c3.yml:1:7: channel 'rest': parameters must be a map, not an integer");
    CHECK_STR(credentials_error("c4.yml", "- rest\n- slack\n"),
              "c4.yml:1:1: the top level must be a map of channel names to their parameters");
    CHECK_STR(credentials_error("c5.yml", "rest\n"),
              "c5.yml:1:1: the top level must be a map of channel names to their parameters");
    CHECK_STR(credentials_error("c6.yml", "rest:\nslack:\nrest:\n"),
              "c6.yml:3:1: duplicate key 'rest' (first at line 1)");
    CHECK_STR(credentials_error("c7.yml", "rest:\nslack:\n  slack_token: ${SB_T_UNSET}\n"),
              "c7.yml:3:16: environment variable SB_T_UNSET is not set (key 'slack_token')");
    CHECK_STR(credentials_error("c8.yml", "rest:\n  a: 1\n b: 2\n"),
              "c8.yml:3:2: did not find expected key (while parsing a block mapping at line 1, "
              "column 1)");
}

/* ---- endpoints.yml -------------------------------------------------------------------------- */

static void test_endpoints_defaults(void)
{
    struct endpoints e;

    memset(&e, 0x5a, sizeof e);
    endpoints_defaults(&e);
    CHECK(e.path == NULL && e.dir == NULL && e.root == NULL);
    CHECK(e.bot.kind == BOT_DEMO);
    CHECK(e.bot.script == NULL && e.bot.url == NULL && e.bot.params == NULL);
    CHECK(e.bot.headers == NULL && e.bot.line == 0 && e.bot.column == 0);
    CHECK(e.server.max_body_size == 1048576);
    CHECK(e.server.connection_timeout == 30);
    CHECK(e.server.connection_limit == 10000);
    CHECK(e.server.lua_cpu_budget == 1.0);
    CHECK(e.server.lua_memory_limit == 268435456);
    CHECK(e.server.workers == 0);

    CHECK(endpoints_load(fixture("e_empty.yml", "# nothing\n"), &e, err, sizeof err) == 0);
    CHECK(e.bot.kind == BOT_DEMO && e.server.max_body_size == 1048576);
    CHECK(e.path != NULL && e.root != NULL);
    CHECK_STR(e.dir, tmpdir);
    endpoints_free(&e);
    CHECK(e.path == NULL && e.root == NULL && e.bot.kind == BOT_DEMO);
    endpoints_free(&e);
}

static void test_endpoints_script_bot(void)
{
    struct endpoints e;
    char want[PATH_MAX + 32];

    CHECK(endpoints_load(fixture("e_script.yml",
                                 "action_endpoint:\n  url: http://localhost:5055/webhook\n"
                                 "bot:\n"
                                 "  script: bots/faq.lua\n"
                                 "  greeting: hello\n"),
                         &e, err, sizeof err) == 0);
    CHECK(e.bot.kind == BOT_SCRIPT);
    snprintf(want, sizeof want, "%s/bots/faq.lua", tmpdir);
    CHECK_STR(e.bot.script, want);
    CHECK(e.bot.url == NULL);
    CHECK(e.bot.line == 3 && e.bot.column == 1);
    CHECK(e.bot.params && e.bot.params->type == CFG_MAP);
    CHECK_STR(get(e.bot.params, "greeting")->text, "hello");
    endpoints_free(&e);

    CHECK(endpoints_load(fixture("e_abs.yml", "bot:\n  script: /opt/bots/b.lua\n"), &e, err,
                         sizeof err) == 0);
    CHECK_STR(e.bot.script, "/opt/bots/b.lua");
    endpoints_free(&e);

    CHECK(endpoints_load(fixture("e_null_bot.yml", "server:\nbot:\n"), &e, err, sizeof err) == 0);
    CHECK(e.bot.kind == BOT_DEMO && e.bot.params == NULL && e.bot.line == 2);
    endpoints_free(&e);
}

static void test_endpoints_url_bot(void)
{
    struct endpoints e;

    setenv("SB_T_TOKEN", "tok123", 1);
    CHECK(endpoints_load(fixture("e_url.yml",
                                 "bot:\n"
                                 "  url: http://localhost:5006/webhooks/rest/webhook\n"
                                 "  timeout: 2.5\n"
                                 "  headers: { Authorization: \"Bearer ${SB_T_TOKEN}\", X-N: 3 }\n"),
                         &e, err, sizeof err) == 0);
    CHECK(e.bot.kind == BOT_HTTP);
    CHECK_STR(e.bot.url, "http://localhost:5006/webhooks/rest/webhook");
    CHECK(e.bot.script == NULL);
    CHECK(e.bot.timeout == 2.5);
    CHECK(e.bot.headers && e.bot.headers->count == 2);
    if (e.bot.headers && e.bot.headers->count == 2) {
        CHECK_STR(e.bot.headers->keys[0], "Authorization");
        CHECK_STR(e.bot.headers->items[0].text, "Bearer tok123");
        CHECK_STR(get(e.bot.headers, "X-N")->text, "3");
    }
    CHECK(e.bot.params && get(e.bot.params, "timeout") != NULL);
    endpoints_free(&e);

    CHECK(endpoints_load(fixture("e_url2.yml", "bot: {url: \"http://b/x\", timeout: 3}\n"), &e,
                         err, sizeof err) == 0);
    CHECK(e.bot.kind == BOT_HTTP && e.bot.timeout == 3.0 && e.bot.headers == NULL);
    endpoints_free(&e);

    CHECK(endpoints_load(fixture("e_url3.yml", "bot:\n  url: http://b/x\n"), &e, err,
                         sizeof err) == 0);
    CHECK(e.bot.kind == BOT_HTTP && e.bot.timeout == 10.0);
    endpoints_free(&e);
}

/* Loads endpoints that must fail; returns the message with the folder cut off. */
static const char *endpoints_error(const char *text)
{
    static int n;
    char name[32];
    struct endpoints e;
    const char *p;

    snprintf(name, sizeof name, "ee%d.yml", n++);
    p = fixture(name, text);
    if (endpoints_load(p, &e, err, sizeof err) == 0) {
        endpoints_free(&e);
        return "(loaded)";
    }
    CHECK(e.root == NULL && e.path == NULL && e.bot.url == NULL && e.bot.script == NULL);
    CHECK(e.bot.kind == BOT_DEMO && e.server.workers == 0);
    return strncmp(err, tmpdir, strlen(tmpdir)) == 0 ? err + strlen(tmpdir) + 1 : err;
}

static void test_endpoints_bot_errors(void)
{
    CHECK_STR(endpoints_error("x: 1\nbot:\n  url: http://a\n  script: b.lua\n"),
              "ee0.yml:2:1: bot: give either 'url' or 'script', not both");
    CHECK_STR(endpoints_error("bot:\n  timeout: 3\n"),
              "ee1.yml:1:1: bot: needs 'url' (an HTTP bot) or 'script' (a Lua bot)");
    CHECK_STR(endpoints_error("bot: http://a\n"),
              "ee2.yml:1:6: 'bot' must be a map with 'url' or 'script', not a string");
    CHECK_STR(endpoints_error("bot:\n  url: 12\n"),
              "ee3.yml:2:8: bot: 'url' must be a string, not an integer");
    CHECK_STR(endpoints_error("bot:\n  script:\n"),
              "ee4.yml:2:10: bot: 'script' must be a string, not empty");
    CHECK_STR(endpoints_error("bot:\n  script: ''\n"),
              "ee5.yml:2:11: bot: 'script' must not be empty");
    CHECK_STR(endpoints_error("bot:\n  url: http://a\n  timeout: 0\n"),
              "ee6.yml:3:12: bot: 'timeout' must be a number of seconds greater than 0 and at most 86400");
    CHECK_STR(endpoints_error("bot:\n  url: http://a\n  timeout: soon\n"),
              "ee7.yml:3:12: bot: 'timeout' must be a number of seconds, not a string");
    CHECK_STR(endpoints_error("bot:\n  url: http://a\n  headers: [a]\n"),
              "ee8.yml:3:12: bot: 'headers' must be a map, not a list");
    CHECK_STR(endpoints_error("bot:\n  url: http://a\n  headers:\n    A: {b: c}\n"),
              "ee9.yml:4:8: bot: header 'A' must have a scalar value, not a map");
    CHECK_STR(endpoints_error("- bot\n"),
              "ee10.yml:1:1: the top level must be a map of sections (bot, server, ...)");
}

static void test_endpoints_server(void)
{
    struct endpoints e;

    setenv("SB_T_WORKERS", "4", 1);
    CHECK(endpoints_load(fixture("e_server.yml",
                                 "tracker_store:\n  type: redis\n  port: 6379\n"
                                 "lock_store: {type: in_memory}\n"
                                 "models: {url: http://x}\n"
                                 "nlg:\n"
                                 "server:\n"
                                 "  max_body_size: 2048\n"
                                 "  connection_timeout: 5\n"
                                 "  connection_limit: 7\n"
                                 "  lua_cpu_budget: 0.25\n"
                                 "  lua_memory_limit: 1048576\n"
                                 "  workers: ${SB_T_WORKERS}\n"),
                         &e, err, sizeof err) == 0);
    CHECK(e.server.max_body_size == 2048);
    CHECK(e.server.connection_timeout == 5);
    CHECK(e.server.connection_limit == 7);
    CHECK(e.server.lua_cpu_budget == 0.25);
    CHECK(e.server.lua_memory_limit == 1048576);
    CHECK(e.server.workers == 4);
    CHECK(e.bot.kind == BOT_DEMO);
    endpoints_free(&e);

    CHECK(endpoints_load(fixture("e_server2.yml", "server:\n  lua_cpu_budget: 2\n  workers: 0\n"),
                         &e, err, sizeof err) == 0);
    CHECK(e.server.lua_cpu_budget == 2.0 && e.server.workers == 0);
    CHECK(e.server.max_body_size == 1048576); /* untouched keys keep their defaults */
    CHECK_STR(e.server.admin_token, "");      /* no token: admin routes for loopback only */
    endpoints_free(&e);

    setenv("SB_T_TOKEN", "s3cr3t-token", 1);
    CHECK(endpoints_load(fixture("e_server3.yml", "server:\n  admin_token: ${SB_T_TOKEN}\n"),
                         &e, err, sizeof err) == 0);
    CHECK_STR(e.server.admin_token, "s3cr3t-token");
    endpoints_free(&e);
    CHECK(endpoints_load(fixture("e_server4.yml", "server:\n  admin_token: 12345\n"),
                         &e, err, sizeof err) == 0);
    CHECK_STR(e.server.admin_token, "12345"); /* digits are a token too */
    endpoints_free(&e);
}

static void test_endpoints_server_errors(void)
{
    CHECK_STR(endpoints_error("server:\n  max_body_size: \"hunter2\"\n"),
              "ee11.yml:2:18: server: 'max_body_size' must be a positive integer (bytes), not a "
              "string");
    CHECK(strstr(err, "hunter2") == NULL);
    CHECK_STR(endpoints_error("server:\n  max_body_size: 0\n"),
              "ee12.yml:2:18: server: 'max_body_size' must be a positive integer (bytes)");
    CHECK_STR(endpoints_error("server:\n  connection_timeout: 1.5\n"),
              "ee13.yml:2:23: server: 'connection_timeout' must be an integer of at least 1 "
              "(seconds), not a float");
    CHECK_STR(endpoints_error("server:\n  connection_timeout: 0\n"),
              "ee14.yml:2:23: server: 'connection_timeout' must be an integer of at least 1 "
              "(seconds)");
    CHECK_STR(endpoints_error("server:\n  connection_limit: -3\n"),
              "ee15.yml:2:21: server: 'connection_limit' must be an integer of at least 1 "
              "(connections)");
    CHECK_STR(endpoints_error("server:\n  connection_limit: true\n"),
              "ee16.yml:2:21: server: 'connection_limit' must be an integer of at least 1 "
              "(connections), not a boolean");
    CHECK_STR(endpoints_error("server:\n  lua_cpu_budget: 0\n"),
              "ee17.yml:2:19: server: 'lua_cpu_budget' must be a number of seconds greater than 0 and at most 3600");
    CHECK_STR(endpoints_error("server:\n  lua_cpu_budget: .inf\n"),
              "ee18.yml:2:19: server: 'lua_cpu_budget' must be a number of seconds greater than 0 and at most 3600");
    CHECK_STR(endpoints_error("server:\n  lua_cpu_budget: [1]\n"),
              "ee19.yml:2:19: server: 'lua_cpu_budget' must be a number of seconds greater than 0 and at most 3600, "
              "not a list");
    CHECK_STR(endpoints_error("server:\n  lua_memory_limit: 1048575\n"),
              "ee20.yml:2:21: server: 'lua_memory_limit' must be an integer of at least 1048576 "
              "(bytes)");
    CHECK_STR(endpoints_error("server:\n  workers: -1\n"),
              "ee21.yml:2:12: server: 'workers' must be an integer of at least 0 (0 = one per CPU)");
    CHECK_STR(endpoints_error("server:\n  workers:\n"),
              "ee22.yml:2:11: server: 'workers' must be an integer of at least 0 (0 = one per "
              "CPU), not empty");
    CHECK_STR(endpoints_error("server:\n  workers: 99999999999\n"),
              "ee23.yml:2:12: server: 'workers' is too large");
    CHECK_STR(endpoints_error("server:\n  workers: 2\n  max_body: 10\n"),
              "ee24.yml:3:3: server: unknown key 'max_body' (known keys: max_body_size, "
              "connection_timeout, connection_limit, lua_cpu_budget, header_timeout, "
              "lua_memory_limit, workers, trust_forwarded_headers, admin_token, push_token, "
              "store_max_bytes, websocket_max_message, websocket_send_queue, websocket_ping_interval)");
    CHECK_STR(endpoints_error("server: 5\n"), "ee25.yml:1:9: 'server' must be a map, not an integer");
    /* Huge numbers are refused, not overflowed into a tiny budget. */
    CHECK_STR(endpoints_error("server:\n  lua_cpu_budget: 1e300\n"),
              "ee26.yml:2:19: server: 'lua_cpu_budget' must be a number of seconds greater than 0 "
              "and at most 3600");
    CHECK_STR(endpoints_error("bot:\n  url: http://a\n  timeout: 1e300\n"),
              "ee27.yml:3:12: bot: 'timeout' must be a number of seconds greater than 0 and at "
              "most 86400");
    CHECK_STR(endpoints_error("server:\n  header_timeout: 0\n"),
              "ee28.yml:2:19: server: 'header_timeout' must be a number of seconds greater than 0 "
              "and at most 3600");
    CHECK_STR(endpoints_error("server:\n  admin_token: [1]\n"),
              "ee29.yml:2:16: server: 'admin_token' must be a string, not a list");
    CHECK_STR(endpoints_error("server:\n  admin_token: \"\"\n"),
              "ee30.yml:2:16: server: 'admin_token' must have 1 to 255 characters");
}

/* ---- the temporary folder ------------------------------------------------------------------- */

static int make_tmpdir(void)
{
    char tmpl[] = "/tmp/sb_test_config_XXXXXX";

    if (!mkdtemp(tmpl) || !realpath(tmpl, tmpdir)) {
        perror("mkdtemp");
        return -1;
    }
    return 0;
}

static void remove_tmpdir(void)
{
    int i;

    for (i = 0; i < ntmpfiles; i++)
        unlink(tmpfiles[i]);
    rmdir(tmpdir);
}

int main(void)
{
    if (make_tmpdir() < 0)
        return 1;
    test_scalar_types();
    test_nesting();
    test_positions();
    test_empty_documents();
    test_env_vars();
    test_syntax_errors();
    test_structure_errors();
    test_depth_limit();
    test_parse_file();
    test_credentials();
    test_credentials_empty();
    test_credentials_errors();
    test_endpoints_defaults();
    test_endpoints_script_bot();
    test_endpoints_url_bot();
    test_endpoints_bot_errors();
    test_endpoints_server();
    test_endpoints_server_errors();
    remove_tmpdir();
    return CHECK_DONE();
}
