/* SPDX-License-Identifier: MIT */
/* cfg_tree: YAML text into a tree of plain C values with positions (cfg_value): the YAML 1.2
 * core schema for scalars, `${VAR}` expansion, no aliases, duplicate keys refused (found through
 * a hash set, so a map of any size is checked in linear time), nesting bounded. Every error is one
 * line "NAME:LINE:COLUMN: reason" naming the key or variable at fault, never a value.
 * Uses: libyaml (this is the only file that includes <yaml.h>), buffer. */
#ifndef SB_CFG_TREE_H
#define SB_CFG_TREE_H

#include <stddef.h>

typedef enum {
    CFG_NULL,   /* empty value, ~, null */
    CFG_STRING, /* quoted scalars, plain scalars that are not one of the others, expanded ${VAR} */
    CFG_BOOL,   /* plain true/false (any case, YAML 1.2 core schema) */
    CFG_INT,    /* plain decimal, 0x hex, 0o octal integers that fit in long long */
    CFG_FLOAT,  /* plain decimal floats, .inf, -.inf, .nan */
    CFG_MAP,
    CFG_SEQ
} cfg_type;

typedef struct cfg_value {
    cfg_type type;
    int line, column;        /* 1-based position of the value in its file */
    char *text;              /* scalars: the text after ${VAR} expansion (owned); NULL otherwise */
    int boolean;             /* CFG_BOOL */
    long long integer;       /* CFG_INT */
    double number;           /* CFG_FLOAT (also set for CFG_INT) */
    size_t count;            /* CFG_MAP: number of pairs; CFG_SEQ: number of items */
    char **keys;             /* CFG_MAP: keys in file order (owned) */
    struct cfg_pos {
        int line, column;    /* 1-based */
    } *key_pos;              /* CFG_MAP: position of each key, parallel to keys (owned); may be
                              * NULL in a map built by hand */
    struct cfg_value *items; /* CFG_MAP: values, parallel to keys; CFG_SEQ: items (owned) */
} cfg_value;

/* Parse YAML text. `name` is used in error messages. Returns 0 and a tree the caller owns (an empty
 * document gives a CFG_NULL value), or -1 with "NAME:LINE:COLUMN: reason" in err. Scalars holding
 * ${VAR} are expanded from the environment; an unset variable is an error naming it. */
int cfg_parse_string(const char *name, const char *text, size_t len, cfg_value **out, char *err,
                     size_t errlen);
/* Same for a file; an unreadable file is "PATH: cannot read: <strerror>". */
int cfg_parse_file(const char *path, cfg_value **out, char *err, size_t errlen);
void cfg_free(cfg_value *v);
/* The value under `key` in a map, or NULL (also when `map` is not a map). Borrowed. */
const cfg_value *cfg_map_get(const cfg_value *map, const char *key);

/* Type v by its text as a plain scalar is typed (YAML 1.2 core schema): null, bool, int, float
 * or string. v->text must be set and stays v's. */
void cfg_resolve_plain(cfg_value *v);
/* Find `key` in a map: 1 and its index, or 0. */
int cfg_map_find(const cfg_value *map, const char *key, size_t *index);
/* "string", "an integer", "a map", ... for messages. */
const char *cfg_type_name(cfg_type t);
/* Write "NAME:LINE:COLUMN: reason" (or "NAME: reason" when line is 0) into err; returns -1. */
__attribute__((format(printf, 6, 7))) int cfg_error(char *err, size_t errlen, const char *name,
                                                    int line, int column, const char *fmt, ...);
/* The same at a value's position. */
__attribute__((format(printf, 5, 6))) int cfg_value_error(char *err, size_t errlen,
                                                          const char *name, const cfg_value *v,
                                                          const char *fmt, ...);

#endif
