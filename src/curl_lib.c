/* SPDX-License-Identifier: MIT */
/* curl_lib: see curl_lib.h. */
#include "curl_lib.h"

#include "log.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
/* Written only inside load_once, read only after it: pthread_once orders the two. */
static struct curl_lib lib;
static int loaded;
static char load_error[512];

static void load(void)
{
    /* RTLD_LOCAL: libcurl's symbols stay out of the global namespace Lua and the rest see. */
    void *handle = dlopen(CURL_LIB_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *why = dlerror();
        snprintf(load_error, sizeof load_error,
                 "outbound HTTP requests are unavailable: cannot load " CURL_LIB_SONAME
                 " (%s); install libcurl4",
                 why ? why : "unknown error");
        log_msg(LOG_ERROR, NULL, "%s", load_error);
        return;
    }
#define CURL_LIB_RESOLVE(name)                                                                     \
    if (!(lib.name = (__typeof__(lib.name))dlsym(handle, "curl_" #name))) {                        \
        snprintf(load_error, sizeof load_error,                                                    \
                 "outbound HTTP requests are unavailable: " CURL_LIB_SONAME                        \
                 " has no curl_" #name);                                                           \
        log_msg(LOG_ERROR, NULL, "%s", load_error);                                                \
        dlclose(handle);                                                                           \
        return;                                                                                    \
    }
    CURL_LIB_FUNCTIONS(CURL_LIB_RESOLVE)
#undef CURL_LIB_RESOLVE
    CURLcode code = lib.global_init(CURL_GLOBAL_DEFAULT);
    if (code != CURLE_OK) {
        /* libcurl may have set up part of itself: the library stays mapped. */
        snprintf(load_error, sizeof load_error,
                 "outbound HTTP requests are unavailable: curl_global_init failed (%s)",
                 lib.easy_strerror(code));
        log_msg(LOG_ERROR, NULL, "%s", load_error);
        return;
    }
    log_msg(LOG_DEBUG, NULL, "loaded " CURL_LIB_SONAME " for outbound HTTP requests");
    loaded = 1;
}

const struct curl_lib *curl_lib_get(char *err, size_t errlen)
{
    pthread_once(&load_once, load);
    if (loaded)
        return &lib;
    snprintf(err, errlen, "%s", load_error);
    return NULL;
}
