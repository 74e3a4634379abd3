/* SPDX-License-Identifier: MIT */
/* http: see http.h.
 *
 * libmicrohttpd runs in external epoll mode: each engine worker owns one daemon, all daemons
 * accept on the same listening socket, and the worker's loop calls MHD_run() when the daemon's
 * epoll fd is readable. The access handler follows MHD's three phases: the first call carries the
 * headers, body chunks follow (appended to a bounded buffer), the last call delivers the request.
 * An exchange that has no answer yet is suspended and resumed when the engine finishes it.
 * Per-exchange state is freed only once both MHD (completed callback) and the engine (answer
 * sent) are done with it.
 *
 * Hardening (docs/configuration.md#malformed-http, docs/architecture.md#http-limits): the first
 * access-handler call checks the head (http_checks.c) before any body is read and refuses
 * with our JSON error and "Connection: close". A Content-Length that libmicrohttpd itself cannot
 * parse never reaches the handler (0.9.75 then sends its own header block twice): its error log
 * line is the only hook, and the answer is written on the socket directly. Each connection has
 * a deadline for its request head (server.header_timeout), kept in a list oldest first; at the
 * connection limit the oldest connection still waiting for a head makes room for a new client. */
#include "http.h"

#include "buffer.h"
#include "http_checks.h"
#include "json_writer.h"
#include "list.h"
#include "log.h"
#include "metrics.h"
#include "timers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* libmicrohttpd's connection memory: twice our own head limit (http_checks.h), so that a head
 * over our limits is still read whole and gets our JSON answer instead of libmicrohttpd's HTML
 * 414/431, and so that a head within them leaves room to read the body (libmicrohttpd stops
 * reading a socket when its memory is full) and to build the answer's head. libmicrohttpd clears
 * all of it between two requests of a connection: 32 KiB cost 24,500 instructions more per
 * request than 16 KiB (docs/performance.md, "The HTTP layer"). */
#ifndef MHD_CONNECTION_MEMORY /* -D for measurements (docs/performance.md) */
#define MHD_CONNECTION_MEMORY 16384u
#endif
/* More libmicrohttpd daemon flags, for measurements only (docs/performance.md, "The HTTP
 * layer"): e.g. -DSB_MHD_EXTRA_FLAGS=MHD_USE_TURBO. */
#ifndef SB_MHD_EXTRA_FLAGS
#define SB_MHD_EXTRA_FLAGS 0
#endif
/* At the connection limit, how often to look for new clients waiting in the listen backlog
 * (libmicrohttpd does not watch the listening socket then), and how long a connection must
 * have waited for its head before it may be closed to make room. */
#define LIMIT_POLL_MS 20
#define EVICT_MIN_WAIT_MS 100

/* A connection, from accept to close (MHD's connection notifications). While it waits for a
 * request head it is in the server's `waiting` list, oldest first, for the head deadline. When
 * MHD called us about it during a run, it is in the `touched` list until the run is over. */
struct http_conn {
    struct http_conn *prev, *next;   /* waiting list */
    struct http_conn *tprev, *tnext; /* touched list */
    struct http_exchange *x;         /* its current request, from on_uri to on_completed */
    int fd;
    char remote_addr[INET6_ADDRSTRLEN]; /* the client's address as text, made once */
    uint64_t waiting_since_ms;
    unsigned waiting : 1;
    unsigned touched : 1;
    unsigned cut : 1; /* shut down by us: libmicrohttpd closes it at its next run */
    unsigned upgraded : 1; /* switched protocols: its socket belongs to the engine */
};

/* A 101 answer on its way, then the socket it handed over (http_upgrade). */
struct http_upgraded {
    http_upgrade_fn fn;
    void *ctx;
    struct http_server *s;
    struct http_conn *c;
    struct MHD_UpgradeResponseHandle *urh; /* NULL until the 101 is sent, or once given back */
    int own_fd;                    /* plain HTTP: our duplicate of the socket (-1: MHD's) */
    unsigned closed : 1;
};

struct http_server {
    struct MHD_Daemon *daemon;
    const struct http_options *opt;
    int listen_fd;
    uint64_t header_timeout_ms;   /* 0: no head deadline */
    unsigned connections;         /* open connections of this daemon */
    int was_full;                 /* reached its connection limit since the last run */
    struct http_conn *waiting_head, *waiting_tail;
    struct http_conn *touched;
    http_request_fn on_request;
    void *ctx;
    uint64_t id_base;    /* random per server, so ids from different servers differ */
    uint64_t id_counter;
    struct http_exchange *live; /* every exchange not yet freed (for shutdown) */
    atomic_ulong answers[6];    /* answers sent, by status class: [2] counts 2xx */
    int quiesced;               /* no longer accepting connections */
};

struct http_exchange {
    struct http_server *server;
    struct MHD_Connection *conn;    /* NULL once MHD is done with the connection */
    struct http_exchange *prev, *next;
    struct http_request req;
    char id[65];
    char remote_addr[INET6_ADDRSTRLEN];
    char *raw_uri;
    struct timespec arrived;   /* for the latency metric and the access log line */
    int channel_id;            /* metrics' id of the channel that answers (0: none yet) */
    const char *method;        /* MHD's, valid for the request */
    uintptr_t uri_at;          /* where MHD had the raw target, and its length up to the first */
    size_t uri_len;            /* NUL: to spot a NUL byte inside it (see target_has_nul) */
    struct buffer body;        /* as received, NUL-terminated */

    unsigned started : 1;      /* first access-handler call seen */
    unsigned too_large : 1;    /* body over the limit: answer 413 */
    unsigned delivered : 1;    /* handed to the engine */
    unsigned in_handler : 1;   /* inside on_request: answers are queued on return */
    unsigned suspended : 1;
    unsigned engine_done : 1;  /* the engine will not touch the exchange again */
    unsigned mhd_done : 1;     /* MHD's completed callback ran */
    unsigned refused : 1;      /* answered on the socket directly (see refuse_on_socket) */
    unsigned early : 1;        /* answered from its head, before any body (413, refusals) */
    unsigned in_flight : 1;    /* counted in the in-flight gauge (delivered, not answered) */

    struct MHD_Response *pending; /* answer built, not yet queued */
    unsigned pending_status;
    struct http_upgraded *upgrade; /* a 101 answer queued: not yet handed over */

    /* Streaming: chunks wait in `stream` until MHD's reader takes them. */
    unsigned streaming : 1;
    unsigned stream_queued : 1;
    unsigned stream_finished : 1;
    struct buffer stream;
    size_t stream_off;             /* bytes of `stream` already handed to MHD */
};

/* ---- small helpers ------------------------------------------------------------------------- */

/* Escape `s` as the inside of a JSON string into out (always NUL-terminated, truncated to fit):
 * for log lines that quote a client's bytes. */
static void http_json_escape(const char *s, char *out, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (; *s && n + 7 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else if (c < 0x20) {
            memcpy(out + n, "\\u00", 4);
            out[n + 4] = hex[c >> 4];
            out[n + 5] = hex[c & 15];
            n += 6;
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
}

static void exchange_free(struct http_exchange *x)
{
    struct http_server *s = x->server;
    if (x->in_flight)
        metrics_requests_in_flight_add(-1); /* the client went away before the answer */
    LIST_UNLINK(s->live, x, prev, next);
    if (x->pending)
        MHD_destroy_response(x->pending);
    free(x->raw_uri);
    x->raw_uri = NULL;
    buffer_free(&x->body);
    buffer_free(&x->stream);
    free(x);
}

/* ---- connections and the deadline of a request head ---------------------------------------- */


static struct http_conn *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info =
        conn ? MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT) : NULL;
    return info ? info->socket_context : NULL;
}

static void waiting_remove(struct http_server *s, struct http_conn *c)
{
    if (!c->waiting)
        return;
    LIST_UNLINK_TAIL(s->waiting_head, s->waiting_tail, c, prev, next);
    c->waiting = 0;
}

/* The connection starts waiting for a request head: at its accept, or when the answer to its
 * previous request is sent (keep-alive). Appending keeps the list oldest first. */
static void waiting_add(struct http_server *s, struct http_conn *c)
{
    waiting_remove(s, c);
    if (c->cut || c->upgraded)
        return;
    c->waiting_since_ms = timers_now_ms();
    LIST_APPEND(s->waiting_head, s->waiting_tail, c, prev, next);
    c->waiting = 1;
}

/* MHD called us about this connection during the current run (see close_abandoned). */
static void touch(struct http_server *s, struct http_conn *c)
{
    if (!c || c->touched)
        return;
    LIST_PUSH(s->touched, c, tprev, tnext);
    c->touched = 1;
}

static void untouch(struct http_server *s, struct http_conn *c)
{
    if (!c->touched)
        return;
    LIST_UNLINK(s->touched, c, tprev, tnext);
    c->touched = 0;
}

/* Close a connection under libmicrohttpd: it sees the end of the stream at its next run and
 * closes the connection itself (it owns the fd). */
static void conn_cut(struct http_server *s, struct http_conn *c)
{
    waiting_remove(s, c);
    if (c->upgraded)
        return; /* the engine owns its socket now */
    if (!c->cut && c->fd >= 0)
        shutdown(c->fd, SHUT_RDWR);
    c->cut = 1;
}

/* The client's address as text, into out (empty when libmicrohttpd does not say). */
static void format_remote_addr(struct MHD_Connection *conn, char out[INET6_ADDRSTRLEN])
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    out[0] = '\0';
    if (!info || !info->client_addr)
        return;
    const struct sockaddr *sa = info->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, INET6_ADDRSTRLEN);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, INET6_ADDRSTRLEN);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct http_server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        metrics_connections_add(1);
        if (++s->connections >= s->opt->connection_limit)
            s->was_full = 1;
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        int fd = info ? info->connect_fd : -1;
        struct http_conn *c = calloc(1, sizeof *c);
        if (!c) {
            /* Without its record it would escape the head deadline: refuse it instead. */
            if (fd >= 0)
                shutdown(fd, SHUT_RDWR);
            return;
        }
        c->fd = fd;
        format_remote_addr(conn, c->remote_addr);
        *socket_context = c;
        waiting_add(s, c);
        return;
    }
    if (s->connections)
        s->connections--;
    metrics_connections_add(-1);
    struct http_conn *c = *socket_context;
    if (c) {
        waiting_remove(s, c);
        untouch(s, c);
        free(c);
        *socket_context = NULL;
    }
}

/* Has the client closed its side? Only asked right after MHD read from the socket, while the
 * request is incomplete, so a pending end of stream is the next thing to read. */
static int peer_closed(int fd)
{
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* libmicrohttpd 0.9.75 in epoll mode (edge-triggered) takes a read shorter than its buffer as
 * "nothing more to read" and waits for the next readiness edge. A client's close that arrived
 * together with its last bytes makes no new edge: MHD keeps waiting for the rest of the request
 * until the connection timeout, the socket in CLOSE-WAIT (aborted POSTs piled up that way).
 * After each run, a connection MHD read from whose request is still incomplete is closed if
 * its client has gone. Returns how many. */
static unsigned close_abandoned(struct http_server *s)
{
    unsigned cut = 0;
    while (s->touched) {
        struct http_conn *c = s->touched;
        untouch(s, c);
        const struct http_exchange *x = c->x;
        if (c->cut || !x || x->delivered || x->early || x->refused)
            continue;
        if (c->fd >= 0 && peer_closed(c->fd)) {
            conn_cut(s, c);
            cut++;
        }
    }
    return cut;
}

/* Clients waiting in the listen backlog (shared by every server). */
static unsigned backlog_length(int listen_fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (getsockopt(listen_fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
        ti.tcpi_state == TCP_LISTEN)
        return ti.tcpi_unacked; /* for a listening socket: connections ready for accept() */
    struct pollfd p = {.fd = listen_fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN) ? 1 : 0;
}

/* Close the connections whose request head is overdue; at the connection limit, close the ones
 * that have waited longest for a head, one per client in the listen backlog (libmicrohttpd
 * would leave those clients there until a connection ends by itself). Returns how many. */
static unsigned enforce_head_limits(struct http_server *s)
{
    if (!s->waiting_head)
        return 0;
    uint64_t now = timers_now_ms();
    unsigned overdue = 0, evicted = 0;
    while (s->header_timeout_ms && s->waiting_head &&
           now - s->waiting_head->waiting_since_ms >= s->header_timeout_ms) {
        conn_cut(s, s->waiting_head);
        overdue++;
    }
    if (!s->quiesced && s->connections >= s->opt->connection_limit && s->waiting_head &&
        now - s->waiting_head->waiting_since_ms >= EVICT_MIN_WAIT_MS) {
        unsigned pending = backlog_length(s->listen_fd);
        if (pending > 64)
            pending = 64;
        while (evicted < pending && s->waiting_head &&
               now - s->waiting_head->waiting_since_ms >= EVICT_MIN_WAIT_MS) {
            conn_cut(s, s->waiting_head);
            evicted++;
        }
    }
    if (overdue)
        log_msg(LOG_DEBUG, NULL, "closed %u connection(s) without a complete request head after "
                "%.3g s (server.header_timeout)", overdue, s->opt->header_timeout);
    if (evicted)
        log_msg(LOG_DEBUG, NULL, "at the connection limit: closed %u connection(s) waiting for a "
                "request head to make room for new clients", evicted);
    return overdue + evicted;
}

/* CORS (docs/contract.md §2, --cors): the value of Access-Control-Allow-Origin for this request,
 * or NULL. */
static const char *cors_allow_origin(struct http_exchange *x)
{
    const char *const *origins = x->server->opt->cors_origins;
    if (!origins || !x->conn)
        return NULL;
    const char *origin = MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "Origin");
    for (; *origins; origins++) {
        if (strcmp(*origins, "*") == 0)
            return "*";
        if (origin && strcmp(*origins, origin) == 0)
            return origin;
    }
    return NULL;
}

/* Headers every answer carries: the request id and CORS. */
static void add_common_headers(struct http_exchange *x, struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "X-Request-Id", x->id);
    const char *allow = cors_allow_origin(x);
    if (allow) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", allow);
        if (strcmp(allow, "*") != 0)
            MHD_add_response_header(resp, "Vary", "Origin");
    }
}

static struct MHD_Response *build_response(struct http_exchange *x, const struct http_response *r)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        r->body_len, (void *)(r->body ? r->body : ""), MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return NULL;
    if (r->content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    for (size_t i = 0; i < r->header_count; i++) {
        if (MHD_add_response_header(resp, r->headers[i].name, r->headers[i].value) != MHD_YES)
            log_msg(LOG_WARNING, x->id, "response header '%s' refused (invalid name or value)",
                    r->headers[i].name);
    }
    add_common_headers(x, resp);
    return resp;
}

/* Queue a ready answer from inside the access handler. */
static double seconds_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

/* An answer is decided (for a stream: its head): count it, time it, log it. Every answer is
 * logged at debug level, or at info level with --access-log: method, target, status,
 * milliseconds since arrival. */
static void note_answer(struct http_exchange *x, unsigned status)
{
    double seconds = seconds_since(&x->arrived);
    metrics_request(x->channel_id, (int)status, seconds);
    if (x->in_flight) {
        x->in_flight = 0;
        metrics_requests_in_flight_add(-1);
    }
    enum log_level level = x->server->opt->access_log ? LOG_INFO : LOG_DEBUG;
    if (!log_enabled(level))
        return;
    log_msg_in(level, x->id, x->channel_id ? metrics_channel_name(x->channel_id) : NULL,
               "%s %s -> %u (%.1f ms)", x->method ? x->method : "-",
               x->raw_uri ? x->raw_uri : "-", status, seconds * 1e3);
}

static enum MHD_Result queue_pending(struct http_exchange *x)
{
    if (!x->delivered)
        x->early = 1;
    unsigned cls = x->pending_status / 100;
    if (cls >= 1 && cls <= 5)
        atomic_fetch_add_explicit(&x->server->answers[cls], 1, memory_order_relaxed);
    note_answer(x, x->pending_status);
    enum MHD_Result ret = MHD_queue_response(x->conn, x->pending_status, x->pending);
    MHD_destroy_response(x->pending);
    x->pending = NULL;
    return ret;
}

static void set_pending(struct http_exchange *x, unsigned status, struct MHD_Response *resp)
{
    if (x->pending)
        MHD_destroy_response(x->pending);
    x->pending = resp;
    x->pending_status = status;
}

/* The JSON error body every error answer carries (docs/contract.md §2). */
static void error_body(char *out, size_t size, const char *code, const char *message)
{
    json_error_body(out, size, code, message);
}

/* An answer with the JSON error body (its status is given when it is queued). */
static struct MHD_Response *error_response(struct http_exchange *x, const char *code,
                                           const char *message)
{
    char body[1200];
    error_body(body, sizeof body, code, message);
    struct http_response r = {.content_type = "application/json", .body = body,
                              .body_len = strlen(body)};
    return build_response(x, &r);
}

static enum MHD_Result answer_error_now(struct http_exchange *x, unsigned status,
                                        const char *code, const char *message)
{
    char body[1200];
    error_body(body, sizeof body, code, message);
    struct http_response r = {.status = (int)status, .content_type = "application/json",
                              .body = body, .body_len = strlen(body)};
    struct MHD_Response *resp = build_response(x, &r);
    if (!resp)
        return MHD_NO;
    set_pending(x, status, resp);
    return queue_pending(x);
}

/* ---- refusing a malformed head -------------------------------------------------------------- */

static void count_answer(struct http_server *s, int status)
{
    int cls = status / 100;
    if (cls >= 1 && cls <= 5)
        atomic_fetch_add_explicit(&s->answers[cls], 1, memory_order_relaxed);
}

static void log_refusal(const struct http_exchange *x, struct http_verdict v)
{
    char target[256];
    http_json_escape(x->raw_uri ? x->raw_uri : "-", target, sizeof target);
    log_msg(LOG_INFO, x->id, "%s %s: %d %s", x->method ? x->method : "request", target, v.status,
            v.message);
}

/* Refuse from the first access-handler call, before any body is read: our JSON error, and the
 * connection closed after it, so nothing sent behind this head is ever read as a request. */
static enum MHD_Result refuse(struct http_exchange *x, struct http_verdict v)
{
    log_refusal(x, v);
    char body[1200];
    error_body(body, sizeof body, v.code, v.message);
    struct http_response r = {.status = v.status, .content_type = "application/json",
                              .body = body, .body_len = strlen(body)};
    struct MHD_Response *resp = build_response(x, &r);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    set_pending(x, (unsigned)v.status, resp);
    return queue_pending(x);
}

static enum MHD_Result framing_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    http_framing_field(cls, key, strlen(key), value ? value : "", value ? strlen(value) : 0);
    return MHD_YES;
}

static struct http_verdict head_framing(struct MHD_Connection *conn, struct http_framing *f)
{
    http_framing_init(f);
    MHD_get_connection_values(conn, MHD_HEADER_KIND, framing_field, f);
    return http_framing_verdict(f);
}

/* libmicrohttpd gives on_uri the target as a C string, so a NUL byte in it silently cuts it
 * ("GET /status\0junk" was served as /status). In 0.9.75 the raw target and the HTTP version lie
 * in one buffer, the version right after the NUL that ends the target: a version further on
 * means a NUL byte came earlier. The bounds make a false alarm unlikely should the layout
 * differ (the version would have to follow a NUL within 64 KiB after the target). */
static int target_has_nul(const struct http_exchange *x, const char *version)
{
    if (!x->uri_at || !version || !version[0])
        return 0;
    uintptr_t v = (uintptr_t)version, first_nul = x->uri_at + x->uri_len;
    return v > first_nul + 1 && v - x->uri_at < 65536 && version[-1] == '\0';
}

/* Every check of the head (http_checks.h), in the first access-handler call. */
static struct http_verdict check_head(struct http_exchange *x, struct MHD_Connection *conn,
                                      const char *version, struct http_framing *f)
{
    struct http_verdict v = {0, NULL, NULL};
    http_framing_init(f);
    if (x->raw_uri)
        v = http_check_target(x->raw_uri, x->uri_len + (target_has_nul(x, version) ? 1 : 0));
    if (!v.status) {
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
        int fields = MHD_get_connection_values(conn, MHD_HEADER_KIND, NULL, NULL) +
                     MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, NULL, NULL) +
                     MHD_get_connection_values(conn, MHD_COOKIE_KIND, NULL, NULL);
        v = http_check_head_size(info ? info->header_size : 0, fields > 0 ? (size_t)fields : 0);
    }
    if (!v.status)
        v = head_framing(conn, f);
    return v;
}

/* Refuse by writing the answer on the socket ourselves and shutting it down, for a head that
 * libmicrohttpd refuses without calling the access handler. Over TLS the bytes cannot be
 * written past libmicrohttpd's TLS session: the connection is only closed. */
static void refuse_on_socket(struct http_exchange *x, struct http_verdict v)
{
    struct http_server *s = x->server;
    x->refused = 1;
    log_refusal(x, v);
    struct http_conn *c = conn_of(x->conn);
    const union MHD_ConnectionInfo *info =
        c ? NULL : MHD_get_connection_info(x->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    int fd = c ? c->fd : info ? info->connect_fd : -1;
    if (fd < 0)
        return;
    if (!s->opt->tls_cert_pem) {
        char body[1200], out[1600];
        error_body(body, sizeof body, v.code, v.message);
        const char *reason = MHD_get_reason_phrase_for((unsigned)v.status);
        int n = snprintf(out, sizeof out,
                         "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: application/json\r\n"
                         "X-Request-Id: %s\r\nContent-Length: %zu\r\n\r\n%s",
                         v.status, reason ? reason : "Error", x->id, strlen(body), body);
        size_t len = n > 0 && (size_t)n < sizeof out ? (size_t)n : 0, off = 0;
        while (off < len) {
            ssize_t k = send(fd, out + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0)
                break;
            off += (size_t)k;
        }
        if (off == len && len) {
            count_answer(s, v.status);
            note_answer(x, (unsigned)v.status);
        }
        /* Read what the client already sent, so closing does not reset the connection (a reset
         * could discard the answer before the client reads it). */
        char scratch[4096];
        for (int i = 0; i < 16; i++)
            if (recv(fd, scratch, sizeof scratch, MSG_DONTWAIT) <= 0)
                break;
    }
    if (c)
        conn_cut(s, c);
    else
        shutdown(fd, SHUT_RDWR);
}

/* libmicrohttpd 0.9.75 refuses a Content-Length it cannot parse ("-1", "+30", "0x1e", "30, 30",
 * too many digits) with its own HTML page, sends that page's header block twice, and never
 * calls the access handler. The only hook is its log line, written while it parses that head:
 * the connection is the one whose head is complete (it has a header size), that has no answer
 * queued yet, and that the access handler has not seen. Our answer goes out first and the
 * socket is shut down, so libmicrohttpd's own bytes are never sent. */
static void refuse_mhd_length_error(struct http_server *s)
{
    for (struct http_exchange *x = s->live; x; x = x->next) {
        if (!x->conn || x->started || x->refused || x->mhd_done)
            continue;
        if (!MHD_get_connection_info(x->conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE) ||
            MHD_get_connection_info(x->conn, MHD_CONNECTION_INFO_HTTP_STATUS))
            continue;
        struct http_framing f;
        struct http_verdict v = head_framing(x->conn, &f);
        if (!v.status)
            v = (struct http_verdict){400, "bad_request", "the Content-Length header is not valid"};
        refuse_on_socket(x, v);
    }
}

/* ---- the exchange as the engine uses it ----------------------------------------------------- */

struct each_ctx {
    void (*fn)(void *ctx, const char *name, const char *value);
    void *ctx;
    int lower;
};

static enum MHD_Result each_value(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    (void)kind;
    struct each_ctx *e = cls;
    if (!e->lower) {
        e->fn(e->ctx, key, value ? value : "");
        return MHD_YES;
    }
    char name[256];
    size_t i = 0;
    for (; key[i] && i + 1 < sizeof name; i++)
        name[i] = (char)((key[i] >= 'A' && key[i] <= 'Z') ? key[i] + 32 : key[i]);
    name[i] = '\0';
    e->fn(e->ctx, name, value ? value : "");
    return MHD_YES;
}

void http_each_header(struct http_exchange *x,
                      void (*fn)(void *ctx, const char *name, const char *value), void *ctx)
{
    struct each_ctx e = {fn, ctx, 1};
    if (x->conn)
        MHD_get_connection_values(x->conn, MHD_HEADER_KIND, each_value, &e);
}

const char *http_header_value(struct http_exchange *x, const char *name)
{
    return x->conn ? MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, name) : NULL;
}

void http_set_channel(struct http_exchange *x, const char *channel)
{
    x->channel_id = metrics_channel_id(channel);
}

void http_each_query_arg(struct http_exchange *x,
                         void (*fn)(void *ctx, const char *name, const char *value), void *ctx)
{
    struct each_ctx e = {fn, ctx, 0};
    if (x->conn)
        MHD_get_connection_values(x->conn, MHD_GET_ARGUMENT_KIND, each_value, &e);
}

/* The engine is done: free now if MHD is done too; else wake the connection so MHD sends what
 * was prepared. */
static void engine_finished(struct http_exchange *x)
{
    x->engine_done = 1;
    if (x->mhd_done) {
        exchange_free(x);
        return;
    }
    if (x->suspended && !x->in_handler) {
        x->suspended = 0;
        MHD_resume_connection(x->conn);
    }
}

static void wake_connection(struct http_exchange *x)
{
    if (x->suspended && !x->in_handler && !x->mhd_done) {
        x->suspended = 0;
        MHD_resume_connection(x->conn);
    }
}

void http_respond(struct http_exchange *x, const struct http_response *r)
{
    if (!x->mhd_done) {
        struct MHD_Response *resp = build_response(x, r);
        if (resp)
            set_pending(x, (unsigned)r->status, resp);
        else
            log_msg(LOG_ERROR, x->id, "out of memory building the answer");
    }
    engine_finished(x);
}

void http_respond_error(struct http_exchange *x, int status, const char *code, const char *message)
{
    char body[1200];
    error_body(body, sizeof body, code, message);
    struct http_response r = {.status = status, .content_type = "application/json",
                              .body = body, .body_len = strlen(body)};
    http_respond(x, &r);
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct http_exchange *x = cls;
    size_t avail = x->stream.len - x->stream_off;
    if (avail > 0) {
        size_t n = avail < max ? avail : max;
        memcpy(buf, x->stream.data + x->stream_off, n);
        x->stream_off += n;
        if (x->stream_off == x->stream.len)
            x->stream_off = x->stream.len = 0;
        return (ssize_t)n;
    }
    if (x->stream_finished)
        return MHD_CONTENT_READER_END_OF_STREAM;
    /* Nothing to send yet: park the connection until the engine writes (MHD's documented way to
     * avoid busy waiting in a content reader). */
    x->suspended = 1;
    MHD_suspend_connection(x->conn);
    return 0;
}

void http_stream_start(struct http_exchange *x, int status, const char *content_type,
                       const struct http_header *headers, size_t header_count)
{
    if (x->mhd_done || x->streaming)
        return;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, x, NULL);
    if (!resp) {
        log_msg(LOG_ERROR, x->id, "out of memory starting a stream");
        return;
    }
    if (content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    for (size_t i = 0; i < header_count; i++)
        MHD_add_response_header(resp, headers[i].name, headers[i].value);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    add_common_headers(x, resp);
    x->streaming = 1;
    set_pending(x, (unsigned)status, resp);
    wake_connection(x);
}

void http_stream_write(struct http_exchange *x, const char *data, size_t len)
{
    if (x->mhd_done || !x->streaming || len == 0)
        return;
    if (buffer_append(&x->stream, data, len) != 0) {
        log_msg(LOG_ERROR, x->id, "out of memory buffering a stream chunk");
        return;
    }
    wake_connection(x);
}

void http_stream_finish(struct http_exchange *x)
{
    x->stream_finished = 1;
    engine_finished(x);
}

/* ---- switching protocols ---------------------------------------------------------------- */

/* libmicrohttpd sent the 101: the socket is the engine's from now on. */
static void on_upgraded(void *cls, struct MHD_Connection *conn, void *con_cls,
                        const char *extra_in, size_t extra_in_size, MHD_socket sock,
                        struct MHD_UpgradeResponseHandle *urh)
{
    (void)conn;
    struct http_upgraded *u = cls;
    struct http_exchange *x = con_cls;
    if (x && x->upgrade == u)
        x->upgrade = NULL; /* handed over: the exchange no longer reports a failure */
    u->urh = urh;
    if (u->c) {
        u->c->upgraded = 1;
        waiting_remove(u->s, u->c);
    }
    /* Over plain HTTP the socket is the client's own: keep a duplicate and let libmicrohttpd
     * end its connection now, which frees its per-connection memory (32 KiB of pool), the larger
     * part of an idle WebSocket's cost. Over TLS libmicrohttpd must stay: it forwards the bytes
     * through a socket pair. */
    u->own_fd = -1;
    if (!u->s->opt->tls_cert_pem) {
        int mine = fcntl((int)sock, F_DUPFD_CLOEXEC, 0);
        if (mine >= 0) {
            u->own_fd = mine;
            MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
            u->urh = NULL;
            sock = mine;
        }
    }
    u->fn(u->ctx, u, (int)sock, extra_in, extra_in_size);
}

void http_upgrade(struct http_exchange *x, const struct http_header *headers, size_t count,
                  http_upgrade_fn fn, void *ctx)
{
    struct http_upgraded *u = x->mhd_done ? NULL : calloc(1, sizeof *u);
    struct MHD_Response *resp = u ? MHD_create_response_for_upgrade(on_upgraded, u) : NULL;
    if (!resp) {
        free(u);
        if (!x->mhd_done)
            log_msg(LOG_ERROR, x->id, "out of memory switching protocols");
        engine_finished(x);
        fn(ctx, NULL, -1, NULL, 0);
        return;
    }
    for (size_t i = 0; i < count; i++)
        MHD_add_response_header(resp, headers[i].name, headers[i].value);
    add_common_headers(x, resp);
    u->fn = fn;
    u->ctx = ctx;
    u->s = x->server;
    u->c = conn_of(x->conn);
    x->upgrade = u;
    set_pending(x, MHD_HTTP_SWITCHING_PROTOCOLS, resp);
    engine_finished(x);
}

void http_upgraded_close(struct http_upgraded *u)
{
    if (!u || u->closed)
        return;
    u->closed = 1;
    if (u->own_fd >= 0)
        close(u->own_fd);
    else if (u->urh)
        MHD_upgrade_action(u->urh, MHD_UPGRADE_ACTION_CLOSE);
    free(u);
}

/* ---- libmicrohttpd callbacks ---------------------------------------------------------------- */

/* Runs before the request line is parsed: the only place the raw request target is available.
 * Its return value becomes the connection's per-request pointer. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct http_server *s = cls;
    struct http_exchange *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->server = s;
    x->conn = conn;
    x->raw_uri = strdup(uri ? uri : "/");
    x->uri_at = (uintptr_t)uri;
    x->uri_len = x->raw_uri ? strlen(x->raw_uri) : 0;
    struct http_conn *c = conn_of(conn);
    if (c) {
        c->x = x;
        touch(s, c);
        memcpy(x->remote_addr, c->remote_addr, sizeof x->remote_addr);
    } else {
        format_remote_addr(conn, x->remote_addr);
    }
    clock_gettime(CLOCK_MONOTONIC, &x->arrived);
    /* 8 hex digits of the server's random base, then a counter: unique and cheap. */
    static const char digits[] = "0123456789abcdef";
    uint64_t v = (s->id_base << 24) | (++s->id_counter & 0xffffff);
    for (int i = 13; i >= 0; i--, v >>= 4)
        x->id[i] = digits[v & 15];
    x->id[14] = '\0';
    LIST_PUSH(s->live, x, prev, next);
    return x;
}

/* A client (a proxy, a platform) that sends X-Request-Id gets its id used in the log and in the
 * answer, so lines can be followed across systems; anything but a short plain token is ignored. */
static void adopt_client_request_id(struct http_exchange *x)
{
    const char *id = MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "X-Request-Id");
    if (!id || !http_request_id_acceptable(id, sizeof x->id - 1))
        return;
    size_t len = strlen(id);
    memcpy(x->id, id, len + 1);
}

static void fill_request(struct http_exchange *x, const char *url, const char *method)
{
    struct http_request *r = &x->req;
    r->id = x->id;
    r->method = method;
    r->path = url;
    r->raw_uri = x->raw_uri ? x->raw_uri : url;
    /* Behind a TLS proxy the URL a platform signed is the proxy's: its X-Forwarded-* headers
     * say what it was (server.trust_forwarded_headers turns this off for direct exposure). */
    int trust = x->server->opt->trust_forwarded;
    const char *proto =
        trust ? MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "X-Forwarded-Proto") : NULL;
    r->scheme = proto && (strcasecmp(proto, "https") == 0 || strcasecmp(proto, "http") == 0)
                    ? (strcasecmp(proto, "https") == 0 ? "https" : "http")
                    : (x->server->opt->tls_cert_pem ? "https" : "http");
    const char *host =
        trust ? MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "X-Forwarded-Host") : NULL;
    if (!host)
        host = MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    r->host = host ? host : "";
    r->remote_addr = x->remote_addr;
    r->body = x->body.data ? x->body.data : "";
    r->body_len = x->body.len;
}

/* OPTIONS with CORS configured: answer the preflight here, no route needed. */
static enum MHD_Result answer_preflight(struct http_exchange *x)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    add_common_headers(x, resp);
    MHD_add_response_header(resp, "Access-Control-Allow-Methods",
                            "GET, POST, PUT, PATCH, DELETE, OPTIONS");
    const char *asked = MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND,
                                                    "Access-Control-Request-Headers");
    if (asked)
        MHD_add_response_header(resp, "Access-Control-Allow-Headers", asked);
    MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    set_pending(x, MHD_HTTP_NO_CONTENT, resp);
    return queue_pending(x);
}

static int body_append(struct http_exchange *x, const char *data, size_t len)
{
    size_t limit = x->server->opt->max_body_size;
    if (x->too_large || x->body.len + len > limit) {
        x->too_large = 1;
        return 0;
    }
    return buffer_append(&x->body, data, len);
}

static void too_large_message(struct http_exchange *x, char *out, size_t size)
{
    snprintf(out, size, "request body is larger than the limit of %zu bytes",
             x->server->opt->max_body_size);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **con_cls)
{
    struct http_server *s = cls;
    struct http_exchange *x = *con_cls;
    if (!x)
        return MHD_NO; /* on_uri could not allocate: drop the connection */
    struct http_conn *c = conn_of(conn);
    touch(s, c);

    if (!x->started) {
        x->started = 1;
        x->method = method;
        if (c)
            waiting_remove(s, c); /* the head is complete: its deadline no longer applies */
        adopt_client_request_id(x);
        struct http_framing framing;
        struct http_verdict verdict = check_head(x, conn, version, &framing);
        if (verdict.status)
            return refuse(x, verdict);
        if (s->opt->cors_origins && strcmp(method, "OPTIONS") == 0 &&
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin"))
            return answer_preflight(x);
        if (framing.content_lengths && framing.content_length > s->opt->max_body_size) {
            char message[160];
            too_large_message(x, message, sizeof message);
            log_msg(LOG_WARNING, x->id, "%s %s: 413 %s", method, url, message);
            return answer_error_now(x, MHD_HTTP_CONTENT_TOO_LARGE, "payload_too_large", message);
        }
        return MHD_YES;
    }

    if (*upload_data_size) {
        if (body_append(x, upload_data, *upload_data_size) != 0)
            return MHD_NO;
        *upload_data_size = 0;
        return MHD_YES;
    }

    if (x->too_large && !x->delivered) {
        char message[160];
        too_large_message(x, message, sizeof message);
        log_msg(LOG_WARNING, x->id, "%s %s: 413 %s", method, url, message);
        x->delivered = 1;
        x->engine_done = 1;
        return answer_error_now(x, MHD_HTTP_CONTENT_TOO_LARGE, "payload_too_large", message);
    }

    if (!x->delivered) {
        x->delivered = 1;
        x->in_flight = 1;
        metrics_requests_in_flight_add(1);
        fill_request(x, url, method);
        x->in_handler = 1;
        s->on_request(s->ctx, x, &x->req);
        x->in_handler = 0;
    }

    if (x->pending) {
        if (x->streaming)
            x->stream_queued = 1;
        return queue_pending(x);
    }
    if (x->streaming && x->stream_queued)
        return MHD_YES; /* resumed to send stream chunks: the reader does the work */
    x->suspended = 1;
    MHD_suspend_connection(conn);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_server *s = cls;
    struct http_conn *c = conn_of(conn);
    if (c) {
        c->x = NULL;
        /* Answer sent: a kept-alive connection now waits for its next head (when it is closed
         * instead, the close notification takes it out again). */
        if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
            waiting_add(s, c);
    }
    struct http_exchange *x = *con_cls;
    if (!x)
        return;
    *con_cls = NULL;
    x->mhd_done = 1;
    x->conn = NULL;
    if (x->upgrade && toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
        /* The 101 never went out (the client left first): the engine learns it has no socket. */
        struct http_upgraded *u = x->upgrade;
        x->upgrade = NULL;
        u->fn(u->ctx, NULL, -1, NULL, 0);
        free(u);
    }
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && x->delivered && !x->engine_done)
        log_msg(LOG_INFO, x->id, "client went away before the answer was complete");
    if (!x->delivered || x->engine_done)
        exchange_free(x);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    if (strstr(fmt, "Content-Length' header"))
        refuse_mhd_length_error(cls);
    char message[512];
    vsnprintf(message, sizeof message, fmt, ap);
    size_t len = strlen(message);
    while (len && (message[len - 1] == '\n' || message[len - 1] == ' '))
        message[--len] = '\0';
    log_msg(LOG_DEBUG, NULL, "http: %s", message);
}

/* ---- servers -------------------------------------------------------------------------------- */

int http_listen(const char *interface, unsigned port, char *err, size_t errlen)
{
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%u", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *found = NULL;
    int rc = getaddrinfo(interface, port_text, &hints, &found);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s:%u: %s", interface, port, gai_strerror(rc));
        return -1;
    }
    int fd = socket(found->ai_family, found->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, found->ai_addr, found->ai_addrlen) != 0 || listen(fd, 4096) != 0)
        goto fail;
    freeaddrinfo(found);
    return fd;
fail:
    snprintf(err, errlen, "cannot listen on %s:%u: %s", interface, port, strerror(errno));
    if (fd >= 0)
        close(fd);
    freeaddrinfo(found);
    return -1;
}

unsigned http_bound_port(int listen_fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(listen_fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

struct http_server *http_server_create(int listen_fd, const struct http_options *opt,
                                       http_request_fn on_request, void *ctx, char *err,
                                       size_t errlen)
{
    struct http_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->opt = opt;
    s->listen_fd = listen_fd;
    if (opt->header_timeout > 0) {
        double ms = opt->header_timeout * 1000.0;
        s->header_timeout_ms = ms < 1.0 ? 1 : (uint64_t)(ms + 0.5);
    }
    s->on_request = on_request;
    s->ctx = ctx;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    s->id_base = ((uint64_t)now.tv_nsec * 2654435761u) ^ (uint64_t)(uintptr_t)s ^
                 ((uint64_t)getpid() << 16);

    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE |
                     MHD_USE_ERROR_LOG | SB_MHD_EXTRA_FLAGS;
    if (opt->tls_cert_pem && opt->tls_key_pem)
        flags |= MHD_USE_TLS;
    struct MHD_OptionItem tls_options[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)opt->tls_cert_pem},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)opt->tls_key_pem},
        {MHD_OPTION_END, 0, NULL},
    };
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, s,
        /* First, or libmicrohttpd warns that messages before it go to its own logger. */
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
        MHD_OPTION_LISTEN_SOCKET, listen_fd,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)opt->connection_timeout,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)opt->connection_limit,
        /* The request head must fit here, or MHD answers 414/431 with its own HTML page; our
         * own limits (http_checks.h) are below it. MHD clears it between the requests of a
         * connection, so it is kept to what a head, a read buffer and an answer's head need. */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)MHD_CONNECTION_MEMORY,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
        MHD_OPTION_ARRAY, (flags & MHD_USE_TLS) ? tls_options : tls_options + 2,
        MHD_OPTION_END);
    if (!s->daemon) {
        snprintf(err, errlen, "cannot start the HTTP server%s",
                 (flags & MHD_USE_TLS) ? " (check the TLS certificate and key)" : "");
        free(s);
        return NULL;
    }
    return s;
}

void http_server_destroy(struct http_server *s)
{
    if (!s)
        return;
    /* The listening socket is shared and belongs to the caller: take it back from MHD first, or
     * MHD_stop_daemon would close it under the other servers. */
    http_server_stop_accepting(s);
    /* MHD may not be stopped with suspended connections: answer those first. */
    for (struct http_exchange *x = s->live; x; x = x->next) {
        if (x->delivered && !x->engine_done) {
            if (x->streaming)
                x->stream_finished = 1;
            else
                set_pending(x, MHD_HTTP_SERVICE_UNAVAILABLE, error_response(x, "shutting_down",
                            "the host is stopping; the request was not completed"));
            x->engine_done = 1;
            wake_connection(x);
        }
    }
    MHD_run(s->daemon);
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
    while (s->live)
        exchange_free(s->live);
    free(s);
}

int http_server_fd(const struct http_server *s)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    return info ? info->epoll_fd : -1;
}

void http_server_run(struct http_server *s)
{
    unsigned cut = enforce_head_limits(s);
    MHD_run(s->daemon);
    cut += close_abandoned(s);
    if (cut)
        MHD_run(s->daemon); /* MHD sees the connections cut above end, and closes them */
    /* At its connection limit MHD stops watching the listening socket, and watches it again
     * only at the start of a run once below the limit: without one more run now, clients that
     * come meanwhile would wait in the backlog until something else wakes this loop. */
    if (s->was_full && s->connections < s->opt->connection_limit) {
        s->was_full = 0;
        MHD_run(s->daemon);
    }
}

void http_server_stop_accepting(struct http_server *s)
{
    if (!s->quiesced)
        MHD_quiesce_daemon(s->daemon);
    s->quiesced = 1;
}

unsigned http_server_busy(const struct http_server *s)
{
    unsigned n = 0;
    for (const struct http_exchange *x = s->live; x; x = x->next)
        if (x->delivered && !x->mhd_done)
            n++;
    return n;
}

long http_server_timeout_ms(struct http_server *s)
{
    long t = -1;
    MHD_UNSIGNED_LONG_LONG timeout;
    if (MHD_get_timeout(s->daemon, &timeout) == MHD_YES)
        t = timeout > 60000 ? 60000 : (long)timeout;
    if (s->touched)
        return 0; /* connections MHD read from after the last check: look at them now */
    const struct http_conn *oldest = s->waiting_head;
    if (!oldest)
        return t;
    uint64_t now = timers_now_ms();
    if (s->header_timeout_ms) {
        uint64_t due = oldest->waiting_since_ms + s->header_timeout_ms;
        long left = due > now ? (long)(due - now) : 0;
        if (t < 0 || left < t)
            t = left;
    }
    if (!s->quiesced && s->connections >= s->opt->connection_limit && (t < 0 || t > LIMIT_POLL_MS))
        t = LIMIT_POLL_MS; /* look at the listen backlog (enforce_head_limits) */
    return t;
}

void http_server_answers(struct http_server *s, unsigned long counts[6])
{
    for (int i = 0; i < 6; i++)
        counts[i] += atomic_load_explicit(&s->answers[i], memory_order_relaxed);
}
