/* SPDX-License-Identifier: MIT */
/* lua_budget: see lua_budget.h. */
#include "lua_budget.h"

#include <lauxlib.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_TRACKED 256

/* What the signal handler may look at: written in normal context with the entry inactive. */
static _Thread_local struct {
    volatile sig_atomic_t active;   /* an entry is running */
    volatile sig_atomic_t exceeded; /* its budget is used up */
    volatile sig_atomic_t ticks;    /* timer ticks seen during the entry */
    int tick_limit;                 /* more ticks than this: used up */
    double seconds;
    const char *host_prefix;
    lua_State *threads[MAX_TRACKED]; /* the entry's thread, then coroutines it resumed */
    volatile sig_atomic_t thread_count;
    int timer_ready;
    timer_t timer;
    long tick_ns;
} budget;

static int budget_signal(void) { return SIGRTMIN + 3; }

static int is_host_code(lua_State *L, lua_Debug *ar)
{
    if (!lua_getinfo(L, "S", ar) || !ar->source || !budget.host_prefix)
        return 0;
    return strncmp(ar->source, budget.host_prefix, strlen(budget.host_prefix)) == 0;
}

/* Installed once the budget is used up: raise at every instruction of script code. */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
    if (!budget.exceeded || is_host_code(L, ar))
        return;
    char text[96];
    snprintf(text, sizeof text, "the script used up its CPU budget (%g s of Lua)", budget.seconds);
    luaL_where(L, 0); /* inside a hook, level 0 is the function that was running */
    lua_pushstring(L, text);
    lua_concat(L, 2);
    lua_error(L);
}

/* The CPU-clock timer's tick: count it against the running entry. */
static void on_tick(int sig)
{
    (void)sig;
    if (!budget.active || budget.exceeded)
        return;
    budget.ticks = budget.ticks + 1;
    if (budget.ticks <= budget.tick_limit)
        return;
    budget.exceeded = 1;
    for (int i = 0; i < budget.thread_count; i++)
        lua_sethook(budget.threads[i], budget_hook, LUA_MASKCOUNT, 1);
}

static void install_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_tick;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(budget_signal(), &sa, NULL);
}

/* Once per process, whichever thread starts the first budgeted entry: the host's main thread
 * does before it starts the workers, but nothing else orders threads that start together. */
static void install_handler_once(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, install_handler);
}

/* A timer on this thread's CPU clock, ticking every tick_ns of CPU it uses. */
static int ensure_timer(long tick_ns)
{
    if (budget.timer_ready && budget.tick_ns == tick_ns)
        return 0;
    install_handler_once();
    if (!budget.timer_ready) {
        struct sigevent sev;
        memset(&sev, 0, sizeof sev);
        sev.sigev_notify = SIGEV_THREAD_ID;
        sev.sigev_signo = budget_signal();
        sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
        if (timer_create(CLOCK_THREAD_CPUTIME_ID, &sev, &budget.timer) != 0)
            return -1;
        budget.timer_ready = 1;
    }
    struct itimerspec its = {
        .it_interval = {tick_ns / 1000000000L, tick_ns % 1000000000L},
        .it_value = {tick_ns / 1000000000L, tick_ns % 1000000000L},
    };
    if (timer_settime(budget.timer, 0, &its, NULL) != 0)
        return -1;
    budget.tick_ns = tick_ns;
    return 0;
}

void lua_budget_begin(lua_State *L, double seconds, const char *host_prefix)
{
    budget.active = 0;
    if (seconds <= 0)
        return;
    /* Eight ticks to a budget (at least 5 ms each): it is used up between 8/8 and 9/8 of it. */
    long tick_ns = (long)(seconds * 1e9 / 8);
    if (tick_ns < 5000000L)
        tick_ns = 5000000L;
    if (ensure_timer(tick_ns) != 0)
        return; /* no timer: the entry runs without a budget rather than failing */
    budget.seconds = seconds;
    budget.host_prefix = host_prefix;
    budget.tick_limit = (int)(seconds * 1e9 / (double)tick_ns + 0.5);
    budget.ticks = 0;
    budget.exceeded = 0;
    budget.threads[0] = L;
    budget.thread_count = 1;
    budget.active = 1;
}

int lua_budget_end(void)
{
    int exceeded = budget.exceeded;
    budget.active = 0;
    if (exceeded) {
        for (int i = 0; i < budget.thread_count; i++)
            lua_sethook(budget.threads[i], NULL, 0, 0);
    }
    budget.exceeded = 0;
    budget.thread_count = 0;
    return exceeded;
}

int lua_budget_exceeded(void) { return budget.exceeded; }

void lua_budget_track(lua_State *co)
{
    if (!budget.active)
        return;
    for (int i = 0; i < budget.thread_count; i++)
        if (budget.threads[i] == co)
            return;
    if (budget.thread_count == MAX_TRACKED) {
        /* Too many to track: this one checks the old way, a count hook of its own. */
        lua_sethook(co, budget_hook, LUA_MASKCOUNT, 1000);
        return;
    }
    budget.threads[budget.thread_count] = co;
    budget.thread_count = budget.thread_count + 1;
    if (budget.exceeded)
        lua_sethook(co, budget_hook, LUA_MASKCOUNT, 1);
}

void lua_budget_thread_exit(void)
{
    budget.active = 0;
    if (budget.timer_ready)
        timer_delete(budget.timer);
    budget.timer_ready = 0;
}
