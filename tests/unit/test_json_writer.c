/* SPDX-License-Identifier: MIT */
/* Unit tests of json_writer: the JSON the host writes in C (the status page, error bodies). */
#include "../../src/json_writer.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>

static void test_nesting_and_commas(void)
{
    struct json_writer w;
    json_writer_init(&w);
    json_object_begin(&w);
    json_key(&w, "a");
    json_integer(&w, -12);
    json_key(&w, "list");
    json_array_begin(&w);
    json_string(&w, "x");
    json_null(&w);
    json_object_begin(&w);
    json_object_end(&w);
    json_array_begin(&w);
    json_array_end(&w);
    json_array_end(&w);
    json_key(&w, "none");
    json_string(&w, NULL);
    json_object_end(&w);
    size_t len = 0;
    char *text = json_writer_finish(&w, &len);
    CHECK_STR(text, "{\"a\":-12,\"list\":[\"x\",null,{},[]],\"none\":null}");
    CHECK(len == strlen(text));
    free(text);
}

static void test_escaping(void)
{
    struct json_writer w;
    json_writer_init(&w);
    json_array_begin(&w);
    json_string(&w, "q\"b\\s/n\nr\rt\tc\001\037 \xc3\xa9");
    json_array_end(&w);
    char *text = json_writer_finish(&w, NULL);
    CHECK_STR(text, "[\"q\\\"b\\\\s/n\\nr\\rt\\tc\\u0001\\u001f \xc3\xa9\"]");
    free(text);
}

static void test_error_bodies(void)
{
    char body[64];
    json_error_body(body, sizeof body, "not_found", "no \"route\"");
    CHECK_STR(body, "{\"error\":\"not_found\",\"message\":\"no \\\"route\\\"\"}");
    /* Truncated to fit, never in the middle of an escape or a UTF-8 sequence: still JSON. */
    json_error_body(body, 48, "e", "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"\"\"\"\"\"\"\"\"\"");
    size_t len = strlen(body);
    CHECK(len < 48);
    CHECK(strcmp(body + len - 2, "\"}") == 0);
    CHECK(body[len - 3] != '\\' || body[len - 4] == '\\');
    CHECK_STR(body, "{\"error\":\"e\",\"message\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                    "\\\"\\\"\\\"\\\"\\\"\"}");
    char tiny[8];
    json_error_body(tiny, sizeof tiny, "e", "m");
    CHECK_STR(tiny, "");
}

int main(void)
{
    test_nesting_and_commas();
    test_escaping();
    test_error_bodies();
    return CHECK_DONE();
}
