/* SPDX-License-Identifier: MIT */
/* main: the command line (docs/contract.md §1) and signals; nothing else. */
#include "bot.h"
#include "buffer.h"
#include "channel.h"
#include "config.h"
#include "engine.h"
#include "http.h"
#include "log.h"
#include "offline.h"
#include "scaffold.h"
#include "scripts.h"
#include "watch.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_CORS 32

struct cli {
    const char *command;          /* "run", "check" or "test" */
    const char *credentials;
    const char *endpoints;
    unsigned port;
    const char *interface;
    const char *connector;
    const char *record_dir;       /* run --record DIR */
    double response_timeout;
    const char *cors[MAX_CORS + 1];
    size_t cors_count;
    const char *log_level;
    const char *log_format;
    int access_log;
    const char *ssl_certificate;
    const char *ssl_keyfile;
    const char *const *test_paths; /* test: the paths given */
    int test_count;
    /* try */
    const char *try_channel, *try_method, *try_path, *try_data;
    const char *try_headers[MAX_CORS + 1], *try_query[MAX_CORS + 1];
    int try_header_count, try_query_count, try_echo, try_sign;
    const char *new_name, *new_dir; /* new channel NAME [--dir DIR] */
};

static const char usage[] =
    "Usage:\n"
    "  switchboard run   [--credentials FILE] [--endpoints FILE] [-p|--port 5005]\n"
    "                    [-i|--interface 0.0.0.0] [--connector NAME] [--response-timeout SECONDS]\n"
    "                    [--cors ORIGIN ...] [--log-level debug|info|warning|error]\n"
    "                    [--log-format text|json] [--access-log]\n"
    "                    [--ssl-certificate FILE --ssl-keyfile FILE] [--record DIR]\n"
    "  switchboard check [--credentials FILE] [--endpoints FILE]\n"
    "  switchboard test  [PATH ...]\n"
    "  switchboard try   CHANNEL [--data BODY|@FILE] [-H 'Name: value'] [--query k=v]\n"
    "                    [--method M] [--path P] [--echo] [--sign]\n"
    "                    [--credentials FILE] [--endpoints FILE]\n"
    "  switchboard new channel NAME [--dir DIR]\n"
    "  switchboard --version | --help\n"
    "\n"
    "run    serve the channels of credentials.yml and hand their messages to the bot of\n"
    "       endpoints.yml (default: the bundled demo bot)\n"
    "check  load and validate every file and script, then exit (0: all good)\n"
    "test   run the case files in PATH (files, or folders searched for *.yml, *.yaml and *.json\n"
    "       files with `cases:`; default: .) offline, one line per case (docs/testing.md)\n"
    "try    send one request to a channel offline and print the messages the bot got, the\n"
    "       outbound calls (each answered 200 {\"ok\":true}) and the answer (--echo: an echo\n"
    "       bot instead of the configured one; --sign: signed as the platform would)\n"
    "new    write NAME.lua, NAME.cases/basic.yml and .luarc.json to start a channel from\n"
    "\n"
    "--log-format json writes one JSON object per log line; --access-log logs one line per\n"
    "answer at info level. --record DIR saves each request a channel receives, with its answer,\n"
    "as a case file for switchboard test, secrets redacted (docs/testing.md). GET /metrics and GET /status answer local clients, or whoever\n"
    "sends server.admin_token (docs/operations.md).\n"
    "\n"
    "Both files default to credentials.yml and endpoints.yml in the working directory when they\n"
    "exist. Docs: docs/configuration.md.\n";

static int fail_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "switchboard: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see switchboard --help)\n");
    return 2;
}

static int parse_number(const char *text, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* switchboard try CHANNEL [--data BODY|@FILE] [-H 'Name: value']... [--query k=v]...
 * [--method M] [--path P] [--echo] [--sign] [--credentials F] [--endpoints F] */
static int parse_try(int argc, char **argv, struct cli *c)
{
    c->command = argv[1];
    c->try_method = "POST";
    c->try_path = "/webhook";
    c->try_data = "";
    for (int i = 2; i < argc; i++) {
        const char *opt = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(opt, "--echo") == 0) {
            c->try_echo = 1;
            continue;
        }
        if (strcmp(opt, "--sign") == 0) {
            c->try_sign = 1;
            continue;
        }
        if (opt[0] != '-') {
            if (c->try_channel)
                return fail_usage("try takes one channel, not also '%s'", opt);
            c->try_channel = opt;
            continue;
        }
        if (!value)
            return fail_usage("%s needs a value", opt);
        i++;
        if (strcmp(opt, "--data") == 0 || strcmp(opt, "-d") == 0) {
            c->try_data = value;
        } else if (strcmp(opt, "-H") == 0 || strcmp(opt, "--header") == 0) {
            if (c->try_header_count == MAX_CORS)
                return fail_usage("%s", "too many -H headers");
            c->try_headers[c->try_header_count++] = value;
        } else if (strcmp(opt, "--query") == 0) {
            if (c->try_query_count == MAX_CORS)
                return fail_usage("%s", "too many --query arguments");
            c->try_query[c->try_query_count++] = value;
        } else if (strcmp(opt, "--method") == 0 || strcmp(opt, "-X") == 0) {
            c->try_method = value;
        } else if (strcmp(opt, "--path") == 0) {
            c->try_path = value;
        } else if (strcmp(opt, "--credentials") == 0) {
            c->credentials = value;
        } else if (strcmp(opt, "--endpoints") == 0) {
            c->endpoints = value;
        } else {
            return fail_usage("unknown option for try: %s", opt);
        }
    }
    if (!c->try_channel)
        return fail_usage("%s", "try needs a channel: switchboard try CHANNEL [--data BODY]");
    return 0;
}

/* Returns 0, 1 when the program should exit 0 (help, version), or 2 for a usage error. */
static int parse_cli(int argc, char **argv, struct cli *c)
{
    memset(c, 0, sizeof *c);
    c->port = 5005;
    c->interface = "0.0.0.0";
    c->response_timeout = 30;
    c->log_level = "info";
    c->log_format = "text";
    if (argc < 2)
        return fail_usage("%s", "missing command: run, check, test, try or new");
    if (strcmp(argv[1], "--version") == 0) {
        printf("Switchboard %s\n", SB_VERSION);
        return 1;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage, stdout);
        return 1;
    }
    if (strcmp(argv[1], "test") == 0) {
        c->command = argv[1];
        c->test_paths = (const char *const *)argv + 2;
        c->test_count = argc - 2;
        for (int i = 2; i < argc; i++)
            if (argv[i][0] == '-' && strcmp(argv[i], "-") != 0)
                return fail_usage("unknown option for test: %s", argv[i]);
        return 0;
    }
    if (strcmp(argv[1], "try") == 0)
        return parse_try(argc, argv, c);
    if (strcmp(argv[1], "new") == 0) {
        c->command = argv[1];
        if (argc < 4 || strcmp(argv[2], "channel") != 0)
            return fail_usage("%s", "usage: switchboard new channel NAME [--dir DIR]");
        c->new_name = argv[3];
        c->new_dir = ".";
        for (int i = 4; i < argc; i++) {
            if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
                c->new_dir = argv[++i];
            else
                return fail_usage("unknown option for new: %s", argv[i]);
        }
        return 0;
    }
    if (strcmp(argv[1], "run") != 0 && strcmp(argv[1], "check") != 0)
        return fail_usage("unknown command '%s': expected run, check, test, try or new", argv[1]);
    c->command = argv[1];
    int run = strcmp(c->command, "run") == 0;

    for (int i = 2; i < argc; i++) {
        const char *opt = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            fputs(usage, stdout);
            return 1;
        }
        if (strcmp(opt, "--access-log") == 0) {
            if (!run)
                return fail_usage("%s is an option of `run`", opt);
            c->access_log = 1;
            continue;
        }
        if (strcmp(opt, "--cors") == 0) {
            if (!run)
                return fail_usage("%s is an option of `run`", opt);
            int any = 0;
            while (i + 1 < argc && argv[i + 1][0] != '-') {
                if (c->cors_count == MAX_CORS)
                    return fail_usage("%s", "too many --cors origins");
                c->cors[c->cors_count++] = argv[++i];
                any = 1;
            }
            if (!any)
                return fail_usage("%s needs at least one origin (or *)", opt);
            continue;
        }
        static const char *const valued[] = {"--credentials", "--endpoints", "-p", "--port",
                                             "-i", "--interface", "--connector",
                                             "--response-timeout", "--log-level",
                                             "--log-format", "--record",
                                             "--ssl-certificate", "--ssl-keyfile", NULL};
        int known = 0;
        for (const char *const *v = valued; *v && !known; v++)
            known = strcmp(opt, *v) == 0;
        if (!known)
            return fail_usage("unknown option: %s", opt);
        int for_both = strcmp(opt, "--credentials") == 0 || strcmp(opt, "--endpoints") == 0;
        if (!run && !for_both)
            return fail_usage("unknown option for check: %s", opt);
        if (!value)
            return fail_usage("%s needs a value", opt);
        i++;
        if (strcmp(opt, "--credentials") == 0) {
            c->credentials = value;
        } else if (strcmp(opt, "--endpoints") == 0) {
            c->endpoints = value;
        } else if (strcmp(opt, "-p") == 0 || strcmp(opt, "--port") == 0) {
            double port;
            if (parse_number(value, 0, 65535, &port) != 0 || port != (unsigned)port)
                return fail_usage("--port must be a whole number from 0 to 65535, not '%s'",
                                  value);
            c->port = (unsigned)port;
        } else if (strcmp(opt, "-i") == 0 || strcmp(opt, "--interface") == 0) {
            c->interface = value;
        } else if (strcmp(opt, "--connector") == 0) {
            c->connector = value;
        } else if (strcmp(opt, "--response-timeout") == 0) {
            if (parse_number(value, 0.001, 86400, &c->response_timeout) != 0)
                return fail_usage("--response-timeout must be a number of seconds > 0, not '%s'",
                                  value);
        } else if (strcmp(opt, "--log-level") == 0) {
            enum log_level level;
            if (log_parse_level(value, &level) != 0)
                return fail_usage("--log-level must be debug, info, warning or error, not '%s'",
                                  value);
            c->log_level = value;
        } else if (strcmp(opt, "--log-format") == 0) {
            enum log_format format;
            if (log_parse_format(value, &format) != 0)
                return fail_usage("--log-format must be text or json, not '%s'", value);
            c->log_format = value;
        } else if (strcmp(opt, "--record") == 0) {
            c->record_dir = value;
        } else if (strcmp(opt, "--ssl-certificate") == 0) {
            c->ssl_certificate = value;
        } else {
            c->ssl_keyfile = value;
        }
    }
    if (!c->ssl_certificate != !c->ssl_keyfile)
        return fail_usage("%s", "--ssl-certificate and --ssl-keyfile go together");
    return 0;
}

static int file_readable(const char *path) { return access(path, R_OK) == 0; }

/* The folder holding lua/ and channels/: $SWITCHBOARD_HOME, the install prefix next to the
 * binary, the source tree of a build, or the configured install folder. */
static int find_data_dir(char *out, size_t size)
{
    char exe[PATH_MAX], candidate[PATH_MAX + 64];
    const char *env = getenv("SWITCHBOARD_HOME");
    const char *fixed[] = {env, NULL, SB_SOURCE_DIR, SB_INSTALL_DATADIR};
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char installed[PATH_MAX + 64] = "";
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        snprintf(installed, sizeof installed, "%s/../share/switchboard", exe);
        fixed[1] = installed;
    }
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        if (!fixed[i] || !*fixed[i])
            continue;
        snprintf(candidate, sizeof candidate, "%s/lua/switchboard/pipeline.lua", fixed[i]);
        if (file_readable(candidate) && realpath(fixed[i], out))
            return 0;
        if (i == 0) {
            fprintf(stderr, "switchboard: SWITCHBOARD_HOME=%s has no lua/switchboard/pipeline.lua\n",
                    env);
            return -1;
        }
    }
    (void)size;
    fprintf(stderr, "switchboard: cannot find the bundled Lua files (lua/, channels/); set "
                    "SWITCHBOARD_HOME to the folder that holds them\n");
    return -1;
}

/* The whole file, NUL-terminated (the caller frees it), or NULL after a message naming `what`. */
static char *read_whole_file(const char *path, const char *what)
{
    struct buffer text = {0};
    if (buffer_read_file(&text, path) != 0 || buffer_reserve(&text, 0) != 0) {
        fprintf(stderr, "switchboard: %s %s: %s\n", what, path, strerror(errno));
        buffer_free(&text);
        return NULL;
    }
    text.data[text.len] = '\0';
    return text.data;
}

/* The configuration files: the flag, else the file of that name in the working folder. */
static const char *credentials_path(const struct cli *c)
{
    if (c->credentials)
        return c->credentials;
    return file_readable("credentials.yml") ? "credentials.yml" : NULL;
}

static const char *endpoints_path(const struct cli *c)
{
    if (c->endpoints)
        return c->endpoints;
    return file_readable("endpoints.yml") ? "endpoints.yml" : NULL;
}

/* Options shared by run and check; takes ownership of nothing yet. */
/* --record DIR: the folder (made when missing) as an absolute path, which must be writable. */
static const char *record_folder(const char *dir)
{
    static char path[PATH_MAX];
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "switchboard: --record %s: %s\n", dir, strerror(errno));
        return NULL;
    }
    struct stat st;
    errno = 0;
    if (!realpath(dir, path) || stat(path, &st) != 0 || !S_ISDIR(st.st_mode) ||
        access(path, W_OK) != 0) {
        fprintf(stderr, "switchboard: --record %s: %s\n", dir,
                errno ? strerror(errno) : "not a folder");
        return NULL;
    }
    return path;
}

static int engine_options_init(struct engine_options *o, const struct cli *c, char *data_dir,
                               size_t data_dir_size)
{
    memset(o, 0, sizeof *o);
    if (find_data_dir(data_dir, data_dir_size) != 0)
        return -1;
    char err[4096];
    o->config = script_config_read(credentials_path(c), endpoints_path(c), err, sizeof err);
    if (!o->config) {
        fprintf(stderr, "switchboard: %s\n", err);
        return -1;
    }
    const struct server_limits *server = &o->config->endpoints.server;
    o->paths.data_dir = data_dir;
    o->limits.memory_limit = server->lua_memory_limit;
    o->limits.cpu_budget = server->lua_cpu_budget;
    o->connector = c->connector;
    if (c->record_dir && !(o->record_dir = record_folder(c->record_dir))) {
        script_config_unref(o->config);
        o->config = NULL;
        return -1;
    }
    o->workers = server->workers;
    o->response_timeout = c->response_timeout;
    o->http.max_body_size = server->max_body_size;
    o->http.connection_timeout = server->connection_timeout;
    o->http.header_timeout = server->header_timeout;
    o->http.connection_limit = server->connection_limit;
    o->http.trust_forwarded = server->trust_forwarded_headers;
    o->websocket.max_message = server->websocket_max_message;
    o->websocket.send_queue = server->websocket_send_queue;
    o->websocket.ping_interval_ms = (uint64_t)(server->websocket_ping_interval * 1000.0 + 0.5);
    o->listen_fd = -1;
    return 0;
}

/* switchboard test [PATH...]: the case files, offline (docs/testing.md). */
static int command_test(const struct cli *c)
{
    char data_dir[PATH_MAX];
    if (find_data_dir(data_dir, sizeof data_dir) != 0)
        return 2;
    struct endpoints defaults;
    endpoints_defaults(&defaults);
    struct lua_paths paths = {.data_dir = data_dir};
    struct lua_limits limits = {.memory_limit = defaults.server.lua_memory_limit,
                                .cpu_budget = defaults.server.lua_cpu_budget};
    log_set_level(LOG_ERROR); /* the cases' own lines, not the host's info lines */
    return offline_test(c->test_paths, c->test_count, &paths, &limits);
}

/* switchboard try CHANNEL ...: one request offline (docs/testing.md). */
static int command_try(const struct cli *c)
{
    char data_dir[PATH_MAX];
    if (find_data_dir(data_dir, sizeof data_dir) != 0)
        return 2;
    char *body = NULL;
    struct offline_request t = {
        .credentials = credentials_path(c), .endpoints = endpoints_path(c),
        .channel = c->try_channel, .method = c->try_method, .path = c->try_path,
        .body = c->try_data, .body_len = strlen(c->try_data),
        .headers = c->try_headers, .header_count = c->try_header_count,
        .query = c->try_query, .query_count = c->try_query_count,
        .echo = c->try_echo, .sign = c->try_sign};
    if (c->try_data[0] == '@') {
        body = read_whole_file(c->try_data + 1, "--data");
        if (!body)
            return 2;
        t.body = body;
        t.body_len = strlen(body);
    }
    struct endpoints defaults;
    endpoints_defaults(&defaults);
    struct lua_paths paths = {.data_dir = data_dir};
    struct lua_limits limits = {.memory_limit = defaults.server.lua_memory_limit,
                                .cpu_budget = defaults.server.lua_cpu_budget};
    log_set_level(LOG_ERROR);
    int rc = offline_try(&t, &paths, &limits);
    free(body);
    return rc;
}

/* switchboard new channel NAME [--dir DIR]: files to start a channel from. */
static int command_new(const struct cli *c)
{
    char data_dir[PATH_MAX], err[8600];
    if (find_data_dir(data_dir, sizeof data_dir) != 0)
        return 1;
    if (scaffold_channel(c->new_name, c->new_dir, data_dir, err, sizeof err) != 0) {
        fprintf(stderr, "switchboard: %s\n", err);
        return 1;
    }
    return 0;
}

static int command_check(const struct cli *c)
{
    char data_dir[PATH_MAX], err[4096];
    struct engine_options o;
    if (engine_options_init(&o, c, data_dir, sizeof data_dir) != 0)
        return 1;
    char check_summary[2048];
    int rc = engine_check(&o, check_summary, sizeof check_summary, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "switchboard: %s\n", err);
    } else {
        char bot[1024];
        bot_describe(&o.config->endpoints, data_dir, bot, sizeof bot);
        printf("configuration OK: %s; bot: %s\n", check_summary, bot);
    }
    script_config_unref(o.config);
    return rc == 0 ? 0 : 1;
}

/* SIGHUP: read both files again and reload everything from them, all or nothing. */
/* What a SIGHUP cannot change: the sections read once, at startup. */
struct startup_only {
    struct server_limits server;
    struct store_config store;
};

/* Whether two store: sections name the same store with the same settings (where they were
 * written in the file does not matter). */
static int same_store(const struct store_config *a, const struct store_config *b)
{
    struct store_config x = *a, y = *b;
    x.line = y.line = x.column = y.column = 0;
    return memcmp(&x, &y, sizeof x) == 0;
}

static void reload_configuration(struct engine *engine, const struct cli *c,
                                 const struct startup_only *running)
{
    char err[4096];
    struct script_config *config =
        script_config_read(credentials_path(c), endpoints_path(c), err, sizeof err);
    if (!config) {
        log_msg(LOG_ERROR, NULL, "SIGHUP: configuration rejected, the running one stays: %s", err);
        engine_note_reload_error(engine, err);
        return;
    }
    if (memcmp(&config->endpoints.server, &running->server, sizeof running->server) != 0)
        log_msg(LOG_WARNING, NULL, "SIGHUP: changes to the server: section apply at the next "
                                   "restart");
    if (!same_store(&config->endpoints.store, &running->store))
        log_msg(LOG_WARNING, NULL, "SIGHUP: changes to the store: section apply at the next "
                                   "restart");
    if (engine_reload(engine, config, err, sizeof err) != 0)
        log_msg(LOG_ERROR, NULL, "SIGHUP: reload rejected, generation %u keeps serving: %s",
                engine_generation(engine), err);
    else
        log_msg(LOG_INFO, NULL, "SIGHUP: configuration reloaded (generation %u)",
                engine_generation(engine));
}

/* A watched script changed: reload the scripts (the configuration stays). `changed` names the
 * files, or is NULL for a change seen at startup. */
static void reload_scripts(struct engine *engine, const char *changed)
{
    char err[4096];
    if (engine_reload(engine, NULL, err, sizeof err) != 0)
        log_msg(LOG_ERROR, NULL, "script change rejected, generation %u keeps serving: %s",
                engine_generation(engine), err);
    else
        log_msg(LOG_INFO, NULL, "scripts reloaded (generation %u) after a change to %s",
                engine_generation(engine),
                changed && *changed ? changed : "a script while starting");
}

static void watch_current_files(struct watch *watch, const struct engine *engine)
{
    char *const *files;
    size_t count;
    engine_watched_files(engine, &files, &count);
    watch_set(watch, files, count);
}

/* File modification times come from the kernel's coarse clock (engine_files_changed_since).
 * Loading starts on a fresh tick of it: every file written before then has an earlier time,
 * every file written after has this tick's time or a later one, so a time equal to `at` means
 * "after" without doubt. Waits a tick at most (a few milliseconds). */
static void start_of_next_tick(struct timespec *at)
{
    struct timespec first, pause = {0, 200000};
    clock_gettime(CLOCK_REALTIME_COARSE, &first);
    for (int i = 0; i < 250; i++) {
        clock_gettime(CLOCK_REALTIME_COARSE, at);
        if (at->tv_sec != first.tv_sec || at->tv_nsec != first.tv_nsec)
            return;
        nanosleep(&pause, NULL);
    }
}

/* The main thread's loop: signals and script changes, until SIGINT or SIGTERM. Returns the
 * number of workers the drain left behind (see engine_drain). */
static unsigned control_loop(struct engine *engine, const struct cli *c, int signal_fd,
                         struct watch *watch, const struct startup_only *running,
                         const struct timespec *loaded_at, int *listen_fd)
{
    watch_current_files(watch, engine);
    /* A script saved while the first generation was loading is not seen by the new watches. */
    if (engine_files_changed_since(engine, loaded_at)) {
        reload_scripts(engine, NULL);
        watch_current_files(watch, engine);
    }
    for (;;) {
        struct pollfd fds[2] = {{signal_fd, POLLIN, 0}, {watch_fd(watch), POLLIN, 0}};
        if (poll(fds, 2, -1) < 0)
            continue;
        if (fds[1].revents && watch_changed(watch)) {
            /* Editors save in several steps: wait until the files are quiet for 20 ms. */
            struct pollfd quiet = {watch_fd(watch), POLLIN, 0};
            while (poll(&quiet, 1, 20) > 0)
                watch_changed(watch);
            char changed[2048];
            watch_take_changes(watch, changed, sizeof changed);
            reload_scripts(engine, changed);
            watch_current_files(watch, engine);
        }
        if (!fds[0].revents)
            continue;
        struct signalfd_siginfo info;
        if (read(signal_fd, &info, sizeof info) != (ssize_t)sizeof info)
            continue;
        if (info.ssi_signo == SIGHUP) {
            reload_configuration(engine, c, running);
            watch_current_files(watch, engine);
            continue;
        }
        log_msg(LOG_INFO, NULL, "%s received: finishing the requests in flight, then stopping",
                info.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
        unsigned stuck = engine_drain(engine, c->response_timeout + 1);
        *listen_fd = -1; /* closed by the drain */
        return stuck;
    }
}

static int command_run(const struct cli *c)
{
    enum log_level level = LOG_INFO;
    log_parse_level(c->log_level, &level);
    log_set_level(level);
    enum log_format format = LOG_TEXT;
    log_parse_format(c->log_format, &format);
    log_set_format(format);

    char data_dir[PATH_MAX], err[4096];
    struct engine_options o;
    if (engine_options_init(&o, c, data_dir, sizeof data_dir) != 0)
        return 1;
    int rc = 1, signal_fd = -1;
    char *cert = NULL, *key = NULL;
    struct engine *engine = NULL;
    struct watch *watch = NULL;
    struct startup_only running = {o.config->endpoints.server, o.config->endpoints.store};
    o.http.cors_origins = c->cors_count ? c->cors : NULL;
    o.http.access_log = c->access_log;
    if (c->ssl_certificate) {
        cert = read_whole_file(c->ssl_certificate, "--ssl-certificate");
        key = read_whole_file(c->ssl_keyfile, "--ssl-keyfile");
        if (!cert || !key) {
            script_config_unref(o.config);
            goto done;
        }
        o.http.tls_cert_pem = cert;
        o.http.tls_key_pem = key;
    }
    unsigned workers = o.workers ? o.workers : engine_cpu_count();
    o.http.connection_limit = (o.http.connection_limit + workers - 1) / workers;

    /* Signals reach this thread through a signalfd; workers inherit the blocked mask. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal_fd = signalfd(-1, &signals, SFD_CLOEXEC);
    watch = watch_new(err, sizeof err);
    if (signal_fd < 0 || !watch) {
        script_config_unref(o.config);
        goto fail;
    }

    o.listen_fd = http_listen(c->interface, c->port, err, sizeof err);
    if (o.listen_fd < 0) {
        script_config_unref(o.config);
        goto fail;
    }
    struct timespec loaded_at;
    start_of_next_tick(&loaded_at);
    engine = engine_create(&o, err, sizeof err); /* owns o.config from here */
    if (!engine || engine_start(engine, err, sizeof err) != 0)
        goto fail;

    char routes[2048];
    engine_describe_channels(engine, routes, sizeof routes);
    log_msg(LOG_INFO, NULL, "Switchboard %s listening on %s://%s:%u (%u workers); channels: %s",
            SB_VERSION, cert ? "https" : "http", c->interface, http_bound_port(o.listen_fd),
            engine_worker_count(engine), routes);
    if (o.record_dir)
        log_msg(LOG_WARNING, NULL, "recording every request a channel receives as a case file in "
                                   "%s (secrets redacted, message texts kept; docs/testing.md)",
                o.record_dir);
    if (control_loop(engine, c, signal_fd, watch, &running, &loaded_at, &o.listen_fd) > 0) {
        /* A worker is still inside a script: answer what the others hold, then leave at once
         * (exit handlers would run while that worker still uses the memory they free). */
        engine_destroy(engine);
        fflush(stderr);
        _exit(0);
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "switchboard: %s\n", err);
done:
    engine_destroy(engine);
    watch_free(watch);
    if (signal_fd >= 0)
        close(signal_fd);
    if (o.listen_fd >= 0)
        close(o.listen_fd);
    free(cert);
    free(key);
    return rc;
}

int main(int argc, char **argv)
{
    struct cli c;
    int rc = parse_cli(argc, argv, &c);
    if (rc == 1)
        return 0;
    if (rc != 0)
        return rc;
    if (strcmp(c.command, "check") == 0)
        return command_check(&c);
    if (strcmp(c.command, "test") == 0)
        return command_test(&c);
    if (strcmp(c.command, "try") == 0)
        return command_try(&c);
    if (strcmp(c.command, "new") == 0)
        return command_new(&c);
    return command_run(&c);
}
