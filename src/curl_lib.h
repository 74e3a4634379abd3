/* SPDX-License-Identifier: MIT */
/* curl_lib: libcurl, loaded when the first outbound HTTP request needs it.
 *
 * The binary does not link libcurl: a host whose configuration makes no outbound request (a Lua
 * bot, no sb.http.request) never maps libcurl, OpenSSL's libssl and libcurl's dozen other
 * dependencies, and never runs curl_global_init (which initializes OpenSSL). The first caller of
 * curl_lib_get, on whichever thread, loads libcurl.so.4 with dlopen, resolves the functions
 * outbound.c uses into one table and runs curl_global_init; concurrent callers wait for it.
 * The library stays loaded for the life of the process. Types and constants still come from
 * <curl/curl.h>. Uses: log. */
#ifndef SB_CURL_LIB_H
#define SB_CURL_LIB_H

#include <curl/curl.h>
#include <stddef.h>

/* The soname loaded, that of Debian's libcurl4 package. */
#define CURL_LIB_SONAME "libcurl.so.4"

/* Every libcurl function the host calls: member `name` is curl_<name>. */
#define CURL_LIB_FUNCTIONS(X)                                                                      \
    X(global_init)                                                                                 \
    X(easy_init)                                                                                   \
    X(easy_setopt)                                                                                 \
    X(easy_getinfo)                                                                                \
    X(easy_perform)                                                                                \
    X(easy_cleanup)                                                                                \
    X(easy_strerror)                                                                               \
    X(slist_append)                                                                                \
    X(slist_free_all)                                                                              \
    X(multi_init)                                                                                  \
    X(multi_setopt)                                                                                \
    X(multi_add_handle)                                                                            \
    X(multi_remove_handle)                                                                         \
    X(multi_assign)                                                                                \
    X(multi_socket_action)                                                                         \
    X(multi_info_read)                                                                             \
    X(multi_cleanup)

/* Pointers with the exact types <curl/curl.h> declares. */
struct curl_lib {
#define CURL_LIB_MEMBER(name) __typeof__(curl_##name) *name;
    CURL_LIB_FUNCTIONS(CURL_LIB_MEMBER)
#undef CURL_LIB_MEMBER
};

/* The loaded library, or NULL with err when it cannot be loaded or initialized (then every later
 * call fails the same way without trying again; the failure is logged once). Thread-safe. */
const struct curl_lib *curl_lib_get(char *err, size_t errlen);

#endif
