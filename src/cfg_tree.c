/* SPDX-License-Identifier: MIT */
/* cfg_tree: YAML text into a tree of plain C values (interface in cfg_tree.h).
 *
 * The YAML is read with libyaml's event API rather than its document API: events let us refuse an
 * alias before anything is expanded (no alias bombs, no cycles), catch a duplicate key where it
 * appears, and keep the position of every key. Error texts name keys, types and positions, never
 * the value of a scalar: values are often secrets. */
#include "cfg_tree.h"

#include "buffer.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* Deep enough for any configuration, shallow enough that the recursive builder cannot exhaust the
 * stack on hostile input. */
#define CFG_MAX_DEPTH 100

#define DIGITS "0123456789"

/* ---- errors --------------------------------------------------------------------------------- */

static int verrorf(char *err, size_t errlen, const char *name, int line, int column,
                   const char *fmt, va_list ap)
{
    int n;

    if (!err || errlen == 0)
        return -1;
    if (line > 0)
        n = snprintf(err, errlen, "%s:%d:%d: ", name, line, column);
    else
        n = snprintf(err, errlen, "%s: ", name);
    if (n >= 0 && (size_t)n < errlen)
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    return -1;
}

int cfg_error(char *err, size_t errlen, const char *name, int line, int column, const char *fmt,
              ...)
{
    va_list ap;

    va_start(ap, fmt);
    verrorf(err, errlen, name, line, column, fmt, ap);
    va_end(ap);
    return -1;
}

int cfg_value_error(char *err, size_t errlen, const char *name, const cfg_value *v,
                    const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    verrorf(err, errlen, name, v->line, v->column, fmt, ap);
    va_end(ap);
    return -1;
}

const char *cfg_type_name(cfg_type t)
{
    switch (t) {
    case CFG_NULL: return "empty";
    case CFG_STRING: return "a string";
    case CFG_BOOL: return "a boolean";
    case CFG_INT: return "an integer";
    case CFG_FLOAT: return "a float";
    case CFG_MAP: return "a map";
    case CFG_SEQ: return "a list";
    }
    return "an unknown type";
}

/* ---- scalars: the YAML 1.2 core schema -------------------------------------------------------- */

static int one_of(const char *s, const char *const *words)
{
    for (; *words; words++)
        if (strcmp(s, *words) == 0)
            return 1;
    return 0;
}

static int all_of(const char *s, const char *chars)
{
    return *s && strspn(s, chars) == strlen(s);
}

/* [-+]?[0-9]+, 0x[0-9a-fA-F]+, 0o[0-7]+ that fit in long long. A decimal that does not fit falls
 * through to the float rule (the text matches it too); a hex or octal one stays a string. */
static int int_text(const char *s, long long *out)
{
    const char *digits = (*s == '-' || *s == '+') ? s + 1 : s;
    unsigned long long u;

    errno = 0;
    if (s[0] == '0' && s[1] == 'x' && all_of(s + 2, DIGITS "abcdefABCDEF"))
        u = strtoull(s + 2, NULL, 16);
    else if (s[0] == '0' && s[1] == 'o' && all_of(s + 2, "01234567"))
        u = strtoull(s + 2, NULL, 8);
    else if (all_of(digits, DIGITS)) {
        *out = strtoll(s, NULL, 10);
        return errno == 0;
    } else
        return 0;
    if (errno != 0 || u > LLONG_MAX)
        return 0;
    *out = (long long)u;
    return 1;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?, [-+]?.inf, .nan */
static int float_text(const char *s, double *out)
{
    static const char *const nans[] = {".nan", ".NaN", ".NAN", NULL};
    static const char *const infs[] = {".inf", ".Inf", ".INF", NULL};
    const char *p = (*s == '-' || *s == '+') ? s + 1 : s;
    size_t whole, frac = 0;

    if (one_of(s, nans)) {
        *out = NAN;
        return 1;
    }
    if (one_of(p, infs)) {
        *out = *s == '-' ? -INFINITY : INFINITY;
        return 1;
    }
    whole = strspn(p, DIGITS);
    p += whole;
    if (*p == '.') {
        frac = strspn(p + 1, DIGITS);
        p += 1 + frac;
    }
    if (whole == 0 && frac == 0)
        return 0;
    if (*p == 'e' || *p == 'E') {
        p += (p[1] == '-' || p[1] == '+') ? 2 : 1;
        if (strspn(p, DIGITS) == 0)
            return 0;
        p += strspn(p, DIGITS);
    }
    if (*p)
        return 0;
    *out = strtod(s, NULL);
    return 1;
}

/* Types a plain scalar by its text (v->text must be set). */
void cfg_resolve_plain(cfg_value *v)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    static const char *const trues[] = {"true", "True", "TRUE", NULL};
    static const char *const falses[] = {"false", "False", "FALSE", NULL};

    if (one_of(v->text, nulls)) {
        v->type = CFG_NULL;
    } else if (one_of(v->text, trues) || one_of(v->text, falses)) {
        v->type = CFG_BOOL;
        v->boolean = one_of(v->text, trues);
    } else if (int_text(v->text, &v->integer)) {
        v->type = CFG_INT;
        v->number = (double)v->integer;
    } else if (float_text(v->text, &v->number)) {
        v->type = CFG_FLOAT;
    } else {
        v->type = CFG_STRING;
    }
}

/* ---- the tree builder ------------------------------------------------------------------------ */

struct builder {
    yaml_parser_t parser;
    const char *name;         /* for messages */
    const char *text;         /* the input, to place reader errors that carry only an offset */
    size_t len;
    char *err;
    size_t errlen;
    int depth;
};

__attribute__((format(printf, 3, 4))) static int mark_error(struct builder *b, yaml_mark_t mark,
                                                            const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    verrorf(b->err, b->errlen, b->name, (int)mark.line + 1, (int)mark.column + 1, fmt, ap);
    va_end(ap);
    return -1;
}

static int out_of_memory(struct builder *b)
{
    return cfg_error(b->err, b->errlen, b->name, 0, 0, "out of memory");
}

/* The reader reports invalid encodings by byte offset only; turn it into a line and column. */
static yaml_mark_t offset_mark(const struct builder *b, size_t offset)
{
    yaml_mark_t m = {0, 0, 0};
    size_t i;

    for (i = 0; i < offset && i < b->len; i++) {
        if (b->text[i] == '\n') {
            m.line++;
            m.column = 0;
        } else {
            m.column++;
        }
    }
    return m;
}

static int syntax_error(struct builder *b)
{
    const yaml_parser_t *p = &b->parser;
    yaml_mark_t mark = p->problem_mark;
    const char *problem = p->problem ? p->problem : "invalid YAML";

    if (p->error == YAML_MEMORY_ERROR)
        return out_of_memory(b);
    if (p->error == YAML_READER_ERROR)
        mark = offset_mark(b, p->problem_offset);
    if (p->context)
        return mark_error(b, mark, "%s (%s at line %d, column %d)", problem, p->context,
                          (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
    return mark_error(b, mark, "%s", problem);
}

static int next_event(struct builder *b, yaml_event_t *ev)
{
    if (yaml_parser_parse(&b->parser, ev))
        return 0;
    return syntax_error(b);
}

/* Reads one event whose type the grammar already fixes (stream and document markers). */
static int skip_event(struct builder *b)
{
    yaml_event_t ev;

    if (next_event(b, &ev) < 0)
        return -1;
    yaml_event_delete(&ev);
    return 0;
}

/* Releases what a value owns and leaves it an empty CFG_NULL. */
static void free_value(cfg_value *v)
{
    size_t i;

    free(v->text); v->text = NULL;
    for (i = 0; v->keys && i < v->count; i++) {
        free(v->keys[i]); v->keys[i] = NULL;
    }
    for (i = 0; v->items && i < v->count; i++)
        free_value(&v->items[i]);
    free(v->keys); v->keys = NULL;
    free(v->key_pos); v->key_pos = NULL;
    free(v->items); v->items = NULL;
    memset(v, 0, sizeof *v);
}

/* Copies `raw`, replacing every ${NAME} by the environment variable NAME (as Rasa does). Text that
 * is not a well-formed ${NAME} is copied as is, so a lone '$' or an unclosed '${' stays. Sets
 * *expanded when a variable was substituted. `key` is only for the message. */
static int expand_vars(struct builder *b, const char *raw, yaml_mark_t mark, const char *key,
                       char **out, int *expanded)
{
    char *buf = NULL, *name = NULL;
    size_t size = 0;
    FILE *f = NULL;
    const char *p = raw, *open, *close, *value;

    *expanded = 0;
    if (!strstr(raw, "${")) {
        *out = strdup(raw);
        return *out ? 0 : out_of_memory(b);
    }
    f = open_memstream(&buf, &size);
    if (!f) {
        out_of_memory(b);
        goto fail;
    }
    while ((open = strstr(p, "${")) && (close = strchr(open + 2, '}'))) {
        fwrite(p, 1, (size_t)(open - p), f);
        p = open + 2;
        if (close == p || memchr(p, '{', (size_t)(close - p))) {
            fputs("${", f); /* not a variable reference: keep the text */
            continue;
        }
        name = strndup(p, (size_t)(close - p));
        if (!name) {
            out_of_memory(b);
            goto fail;
        }
        value = getenv(name);
        if (!value) {
            if (key)
                mark_error(b, mark, "environment variable %s is not set (key '%s')", name, key);
            else
                mark_error(b, mark, "environment variable %s is not set", name);
            goto fail;
        }
        fputs(value, f);
        free(name); name = NULL;
        p = close + 1;
        *expanded = 1;
    }
    fputs(p, f);
    if (fclose(f) != 0) {
        f = NULL;
        out_of_memory(b);
        goto fail;
    }
    *out = buf;
    return 0;
fail:
    if (f)
        fclose(f);
    free(buf); buf = NULL;
    free(name); name = NULL;
    return -1;
}

/* A scalar is typed by the core schema only when it is plain and not tagged as a string: quoted
 * and block scalars, `!!str x` and `! x` are strings. */
static int schema_typed(const yaml_event_t *ev)
{
    const char *tag = (const char *)ev->data.scalar.tag;

    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    return !tag || (strcmp(tag, YAML_STR_TAG) != 0 && strcmp(tag, "!") != 0);
}

static int build_scalar(struct builder *b, const yaml_event_t *ev, const char *key,
                        cfg_value *out)
{
    int expanded;

    if (expand_vars(b, (const char *)ev->data.scalar.value, ev->start_mark, key, &out->text,
                    &expanded) < 0)
        return -1;
    if (expanded || !schema_typed(ev))
        out->type = CFG_STRING;
    else
        cfg_resolve_plain(out);
    return 0;
}

/* Returns a bigger copy of `arr` (twice the capacity) and updates *cap, or NULL with `arr` intact. */
static void *grow(void *arr, size_t *cap, size_t size)
{
    size_t n = *cap ? *cap * 2 : 4;
    void *p = reallocarray(arr, n, size);

    if (p)
        *cap = n;
    return p;
}

static int build_node(struct builder *b, yaml_event_t *ev, const char *key, cfg_value *out);

/* `key` is the nearest map key above, for messages. */
static int build_seq(struct builder *b, const char *key, cfg_value *out)
{
    yaml_event_t ev;
    size_t cap = 0;
    void *p;

    out->type = CFG_SEQ;
    for (;;) {
        if (next_event(b, &ev) < 0)
            goto fail;
        if (ev.type == YAML_SEQUENCE_END_EVENT)
            break;
        if (out->count == cap) {
            if (!(p = grow(out->items, &cap, sizeof *out->items))) {
                yaml_event_delete(&ev);
                out_of_memory(b);
                goto fail;
            }
            out->items = p;
        }
        if (build_node(b, &ev, key, &out->items[out->count]) < 0)
            goto fail;
        out->count++;
    }
    yaml_event_delete(&ev);
    return 0;
fail:
    free_value(out);
    return -1;
}

/* Room for one more pair: values, keys and key positions grow together. */
static int map_reserve(cfg_value *map, size_t *cap)
{
    size_t n = *cap ? *cap * 2 : 4;
    cfg_value *items;
    struct cfg_pos *pos;
    char **keys;

    if (!(items = reallocarray(map->items, n, sizeof *items)))
        return -1;
    map->items = items;
    if (!(keys = reallocarray(map->keys, n, sizeof *keys)))
        return -1;
    map->keys = keys;
    if (!(pos = reallocarray(map->key_pos, n, sizeof *pos)))
        return -1;
    map->key_pos = pos;
    *cap = n;
    return 0;
}

int cfg_map_find(const cfg_value *map, const char *key, size_t *index)
{
    size_t i;

    for (i = 0; i < map->count; i++) {
        if (strcmp(map->keys[i], key) == 0) {
            *index = i;
            return 1;
        }
    }
    return 0;
}

/* The keys of a map being built, hashed, so a duplicate is found in constant time: a map with
 * hundreds of thousands of keys must not take minutes to check. Open addressing; a slot holds
 * the key's index + 1 (0: empty); the table is kept at most half full. */
struct key_index {
    size_t *slots;
    size_t cap; /* a power of two, or 0 */
};

static size_t key_hash(const char *key)
{
    size_t h = 14695981039346656037u; /* FNV-1a */
    for (; *key; key++)
        h = (h ^ (unsigned char)*key) * 1099511628211u;
    return h;
}

/* The slot where `key` is, or the empty slot where it would go. */
static size_t *key_slot(const struct key_index *ix, const cfg_value *map, const char *key)
{
    size_t mask = ix->cap - 1;
    for (size_t i = key_hash(key) & mask;; i = (i + 1) & mask) {
        size_t *slot = &ix->slots[i];
        if (*slot == 0 || strcmp(map->keys[*slot - 1], key) == 0)
            return slot;
    }
}

/* Record key number `n` of the map (its keys[n] is set). Returns 0, or -1 when out of memory. */
static int key_index_add(struct key_index *ix, const cfg_value *map, size_t n)
{
    if (2 * (n + 1) > ix->cap) {
        struct key_index grown = {calloc(ix->cap ? 2 * ix->cap : 16, sizeof(size_t)),
                                  ix->cap ? 2 * ix->cap : 16};
        if (!grown.slots)
            return -1;
        for (size_t i = 0; i < n; i++)
            *key_slot(&grown, map, map->keys[i]) = i + 1;
        free(ix->slots);
        *ix = grown;
    }
    *key_slot(ix, map, map->keys[n]) = n + 1;
    return 0;
}

/* Reads the value after the key event `key_ev` (consumed) and appends the pair. */
static int map_add_pair(struct builder *b, cfg_value *map, struct key_index *ix,
                        yaml_event_t *key_ev, const char *parent_key)
{
    cfg_value key;
    yaml_event_t ev;
    size_t first;

    if (key_ev->type == YAML_MAPPING_START_EVENT || key_ev->type == YAML_SEQUENCE_START_EVENT) {
        mark_error(b, key_ev->start_mark, "a map key must be a scalar, not %s",
                   key_ev->type == YAML_MAPPING_START_EVENT ? "a map" : "a list");
        yaml_event_delete(key_ev);
        return -1;
    }
    if (build_node(b, key_ev, parent_key, &key) < 0)
        return -1;
    size_t *seen = ix->cap ? key_slot(ix, map, key.text) : NULL;
    if (seen && *seen) {
        first = *seen - 1;
        cfg_error(b->err, b->errlen, b->name, key.line, key.column,
                 "duplicate key '%s' (first at line %d)", key.text, map->key_pos[first].line);
        goto fail;
    }
    if (next_event(b, &ev) < 0)
        goto fail;
    if (build_node(b, &ev, key.text, &map->items[map->count]) < 0)
        goto fail;
    map->keys[map->count] = key.text;
    key.text = NULL; /* now owned by map->keys */
    map->key_pos[map->count].line = key.line;
    map->key_pos[map->count].column = key.column;
    map->count++;
    if (key_index_add(ix, map, map->count - 1) < 0) {
        out_of_memory(b);
        return -1;
    }
    return 0;
fail:
    free(key.text); key.text = NULL;
    return -1;
}

static int build_map(struct builder *b, const char *key, cfg_value *out)
{
    yaml_event_t ev;
    size_t cap = 0;
    struct key_index ix = {NULL, 0};

    out->type = CFG_MAP;
    for (;;) {
        if (next_event(b, &ev) < 0)
            goto fail;
        if (ev.type == YAML_MAPPING_END_EVENT)
            break;
        if (out->count == cap && map_reserve(out, &cap) < 0) {
            yaml_event_delete(&ev);
            out_of_memory(b);
            goto fail;
        }
        if (map_add_pair(b, out, &ix, &ev, key) < 0)
            goto fail;
    }
    yaml_event_delete(&ev);
    free(ix.slots);
    return 0;
fail:
    free(ix.slots);
    free_value(out);
    return -1;
}

/* Builds the node that starts with `ev` (consumed) into `out`. On failure `out` owns nothing. */
static int build_node(struct builder *b, yaml_event_t *ev, const char *key, cfg_value *out)
{
    int rc = -1;

    memset(out, 0, sizeof *out);
    out->line = (int)ev->start_mark.line + 1;
    out->column = (int)ev->start_mark.column + 1;
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        rc = build_scalar(b, ev, key, out);
        break;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        if (b->depth >= CFG_MAX_DEPTH) {
            mark_error(b, ev->start_mark, "nested deeper than %d levels", CFG_MAX_DEPTH);
            break;
        }
        b->depth++;
        if (ev->type == YAML_SEQUENCE_START_EVENT)
            rc = build_seq(b, key, out);
        else
            rc = build_map(b, key, out);
        b->depth--;
        break;
    case YAML_ALIAS_EVENT:
        /* Refused rather than expanded: a few aliases can expand to gigabytes. */
        mark_error(b, ev->start_mark, "aliases (*name) are not supported; write the value out");
        break;
    default:
        mark_error(b, ev->start_mark, "unexpected YAML structure");
        break;
    }
    yaml_event_delete(ev);
    return rc;
}

/* stream: nothing (an empty value) or exactly one document. */
static int build_stream(struct builder *b, cfg_value *root)
{
    yaml_event_t ev;
    int have_root = 0;

    root->type = CFG_NULL;
    root->line = root->column = 1;
    if (skip_event(b) < 0) /* STREAM-START */
        goto fail;
    if (next_event(b, &ev) < 0)
        goto fail;
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        return 0;
    }
    yaml_event_delete(&ev); /* DOCUMENT-START */
    if (next_event(b, &ev) < 0 || build_node(b, &ev, NULL, root) < 0)
        goto fail;
    have_root = 1;
    if (skip_event(b) < 0 || next_event(b, &ev) < 0) /* DOCUMENT-END, then the next one */
        goto fail;
    if (ev.type != YAML_STREAM_END_EVENT) {
        mark_error(b, ev.start_mark, "only one YAML document is allowed in this file");
        yaml_event_delete(&ev);
        goto fail;
    }
    yaml_event_delete(&ev);
    return 0;
fail:
    if (have_root)
        free_value(root);
    return -1;
}

/* ---- the tree API ----------------------------------------------------------------------------- */

int cfg_parse_string(const char *name, const char *text, size_t len, cfg_value **out, char *err,
                     size_t errlen)
{
    struct builder b = {.name = name, .text = text ? text : "", .len = text ? len : 0,
                        .err = err, .errlen = errlen};
    cfg_value *root = NULL;

    *out = NULL;
    if (!yaml_parser_initialize(&b.parser))
        return out_of_memory(&b);
    yaml_parser_set_input_string(&b.parser, (const unsigned char *)b.text, b.len);
    if (!(root = calloc(1, sizeof *root))) {
        out_of_memory(&b);
        goto fail;
    }
    if (build_stream(&b, root) < 0)
        goto fail;
    yaml_parser_delete(&b.parser);
    *out = root;
    return 0;
fail:
    yaml_parser_delete(&b.parser);
    free(root); root = NULL; /* build_stream leaves nothing in it on failure */
    return -1;
}

int cfg_parse_file(const char *path, cfg_value **out, char *err, size_t errlen)
{
    struct buffer text = {0};
    int rc;

    *out = NULL;
    if (buffer_read_file(&text, path) < 0) {
        rc = cfg_error(err, errlen, path, 0, 0, "cannot read: %s", strerror(errno));
        buffer_free(&text);
        return rc;
    }
    rc = cfg_parse_string(path, text.data ? text.data : "", text.len, out, err, errlen);
    buffer_free(&text);
    return rc;
}

void cfg_free(cfg_value *v)
{
    if (!v)
        return;
    free_value(v);
    free(v);
}

const cfg_value *cfg_map_get(const cfg_value *map, const char *key)
{
    size_t i;

    if (!map || map->type != CFG_MAP || !key || !map->keys)
        return NULL;
    return cfg_map_find(map, key, &i) ? &map->items[i] : NULL;
}
