/* SPDX-License-Identifier: MIT */
/* test_budget_threads: the CPU budget (lua_budget.c) on several threads at once.
 *
 * Each thread has its own timer on its own CPU clock and its own entry state; the signal handler
 * is process-wide and installed by whichever thread starts the first budgeted entry. Here every
 * thread starts its first entry at the same moment, so the installation races unless it is done
 * once for all (the TSan build reports the race), and each looping script must still be stopped
 * at its own budget. The loop allocates on every turn: under TSan a timer signal is delivered at
 * the next intercepted libc call, and a loop that never leaves liblua5.4.a makes none.
 * Runs threads: meant for the TSan build too. */
#include "../../src/lua_budget.h"
#include "check.h"

#include <lauxlib.h>
#include <lualib.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#define THREADS 4
#define BUDGET 0.05 /* seconds of CPU */

static pthread_barrier_t start;

struct result {
    int status;          /* of the protected call */
    int exceeded;        /* what lua_budget_end said */
    char error[256];
    double seconds;      /* wall time of the entry */
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *spin(void *arg)
{
    struct result *r = arg;
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    int loaded = luaL_loadstring(L, "local t while true do t = {} end");
    pthread_barrier_wait(&start);
    double t0 = now();
    lua_budget_begin(L, BUDGET, NULL); /* the first budgeted entry of every thread at once */
    r->status = loaded == LUA_OK ? lua_pcall(L, 0, 0, 0) : loaded;
    r->exceeded = lua_budget_end();
    r->seconds = now() - t0;
    const char *msg = lua_tostring(L, -1);
    snprintf(r->error, sizeof r->error, "%s", msg ? msg : "");
    lua_budget_thread_exit();
    lua_close(L);
    return NULL;
}

int main(void)
{
    pthread_t threads[THREADS];
    struct result results[THREADS];
    memset(results, 0, sizeof results);
    pthread_barrier_init(&start, NULL, THREADS);
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&threads[i], NULL, spin, &results[i]) == 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < THREADS; i++) {
        CHECK(results[i].status == LUA_ERRRUN);
        CHECK(results[i].exceeded == 1);
        CHECK(strstr(results[i].error, "CPU budget") != NULL);
        /* Stopped at its own budget, not after the other threads' (loose for a loaded machine
         * and sanitizer builds: the budget is 0.05 s of CPU). */
        CHECK(results[i].seconds < 20.0);
        fprintf(stderr, "thread %d: %.3f s, %s\n", i, results[i].seconds, results[i].error);
    }
    return CHECK_DONE();
}
