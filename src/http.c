/* http: see http.h.
 *
 * libmicrohttpd runs in external epoll mode: each engine worker owns one daemon, all daemons
 * accept on the same listening socket, and the worker's loop calls MHD_run() when the daemon's
 * epoll fd is readable. The access handler follows MHD's three phases: the first call carries the
 * headers, body chunks follow (appended to a bounded buffer), the last call delivers the request.
 * An exchange that has no answer yet is suspended and resumed when the engine finishes it.
 * Per-exchange state is freed only once both MHD (completed callback) and the engine (answer
 * sent) are done with it. */
#include "http.h"

#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
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

struct http_server {
    struct MHD_Daemon *daemon;
    const struct http_options *opt;
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
    struct timespec arrived;   /* for the access log line (debug level) */
    const char *method;        /* MHD's, valid for the request */
    char *body;
    size_t body_len, body_cap;

    unsigned started : 1;      /* first access-handler call seen */
    unsigned too_large : 1;    /* body over the limit: answer 413 */
    unsigned delivered : 1;    /* handed to the engine */
    unsigned in_handler : 1;   /* inside on_request: answers are queued on return */
    unsigned suspended : 1;
    unsigned engine_done : 1;  /* the engine will not touch the exchange again */
    unsigned mhd_done : 1;     /* MHD's completed callback ran */

    struct MHD_Response *pending; /* answer built, not yet queued */
    unsigned pending_status;

    /* Streaming: chunks wait in `stream` until MHD's reader takes them. */
    unsigned streaming : 1;
    unsigned stream_queued : 1;
    unsigned stream_finished : 1;
    char *stream;
    size_t stream_len, stream_off, stream_cap;
};

/* ---- small helpers ------------------------------------------------------------------------- */

void http_json_escape(const char *s, char *out, size_t size)
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

static int grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t cap2 = *cap ? *cap : 256;
    while (cap2 < need)
        cap2 *= 2;
    char *p = realloc(*buf, cap2);
    if (!p)
        return -1;
    *buf = p;
    *cap = cap2;
    return 0;
}

static void exchange_free(struct http_exchange *x)
{
    struct http_server *s = x->server;
    if (x->prev)
        x->prev->next = x->next;
    else
        s->live = x->next;
    if (x->next)
        x->next->prev = x->prev;
    if (x->pending)
        MHD_destroy_response(x->pending);
    free(x->raw_uri);
    x->raw_uri = NULL;
    free(x->body);
    x->body = NULL;
    free(x->stream);
    x->stream = NULL;
    free(x);
}

/* CORS (SPEC §2, --cors): the value of Access-Control-Allow-Origin for this request, or NULL. */
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
/* At debug level every answer is logged: method, target, status, milliseconds since arrival. */
static void log_access(const struct http_exchange *x)
{
    if (!log_enabled(LOG_DEBUG))
        return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double ms = (double)(now.tv_sec - x->arrived.tv_sec) * 1e3 +
                (double)(now.tv_nsec - x->arrived.tv_nsec) / 1e6;
    log_msg(LOG_DEBUG, x->id, "%s %s -> %u (%.1f ms)", x->method ? x->method : "-",
            x->raw_uri ? x->raw_uri : "-", x->pending_status, ms);
}

static enum MHD_Result queue_pending(struct http_exchange *x)
{
    unsigned cls = x->pending_status / 100;
    if (cls >= 1 && cls <= 5)
        atomic_fetch_add_explicit(&x->server->answers[cls], 1, memory_order_relaxed);
    log_access(x);
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

static void error_body(char *out, size_t size, const char *code, const char *message)
{
    char escaped[1024];
    http_json_escape(message, escaped, sizeof escaped);
    snprintf(out, size, "{\"error\":\"%s\",\"message\":\"%s\"}", code, escaped);
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
    size_t avail = x->stream_len - x->stream_off;
    if (avail > 0) {
        size_t n = avail < max ? avail : max;
        memcpy(buf, x->stream + x->stream_off, n);
        x->stream_off += n;
        if (x->stream_off == x->stream_len)
            x->stream_off = x->stream_len = 0;
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
    if (grow(&x->stream, &x->stream_cap, x->stream_len + len) != 0) {
        log_msg(LOG_ERROR, x->id, "out of memory buffering a stream chunk");
        return;
    }
    memcpy(x->stream + x->stream_len, data, len);
    x->stream_len += len;
    wake_connection(x);
}

void http_stream_finish(struct http_exchange *x)
{
    x->stream_finished = 1;
    engine_finished(x);
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
    if (log_enabled(LOG_DEBUG))
        clock_gettime(CLOCK_MONOTONIC, &x->arrived);
    /* 8 hex digits of the server's random base, then a counter: unique and cheap. */
    static const char digits[] = "0123456789abcdef";
    uint64_t v = (s->id_base << 24) | (++s->id_counter & 0xffffff);
    for (int i = 13; i >= 0; i--, v >>= 4)
        x->id[i] = digits[v & 15];
    x->id[14] = '\0';
    x->next = s->live;
    if (s->live)
        s->live->prev = x;
    s->live = x;
    return x;
}

static void fill_remote_addr(struct http_exchange *x)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(x->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!info || !info->client_addr)
        return;
    const struct sockaddr *sa = info->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, x->remote_addr,
                  sizeof x->remote_addr);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, x->remote_addr,
                  sizeof x->remote_addr);
}

/* A client (a proxy, a platform) that sends X-Request-Id gets its id used in the log and in the
 * answer, so lines can be followed across systems; anything but a short plain token is ignored. */
static void adopt_client_request_id(struct http_exchange *x)
{
    const char *id = MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "X-Request-Id");
    if (!id)
        return;
    size_t len = strlen(id);
    if (len == 0 || len >= sizeof x->id)
        return;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':'))
            return;
    }
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
    fill_remote_addr(x);
    r->remote_addr = x->remote_addr;
    if (!x->body) {
        x->body = malloc(1);
        if (x->body)
            x->body[0] = '\0';
    }
    r->body = x->body ? x->body : "";
    r->body_len = x->body_len;
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
    if (x->too_large || x->body_len + len > limit) {
        x->too_large = 1;
        return 0;
    }
    if (grow(&x->body, &x->body_cap, x->body_len + len + 1) != 0)
        return -1;
    memcpy(x->body + x->body_len, data, len);
    x->body_len += len;
    x->body[x->body_len] = '\0';
    return 0;
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
    (void)version;
    struct http_server *s = cls;
    struct http_exchange *x = *con_cls;
    if (!x)
        return MHD_NO; /* on_uri could not allocate: drop the connection */

    if (!x->started) {
        x->started = 1;
        x->method = method;
        adopt_client_request_id(x);
        if (s->opt->cors_origins && strcmp(method, "OPTIONS") == 0 &&
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin"))
            return answer_preflight(x);
        const char *length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                         MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (length && strtoull(length, NULL, 10) > s->opt->max_body_size) {
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
    (void)cls;
    (void)conn;
    struct http_exchange *x = *con_cls;
    if (!x)
        return;
    *con_cls = NULL;
    x->mhd_done = 1;
    x->conn = NULL;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && x->delivered && !x->engine_done)
        log_msg(LOG_INFO, x->id, "client went away before the answer was complete");
    if (!x->delivered || x->engine_done)
        exchange_free(x);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
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
    s->on_request = on_request;
    s->ctx = ctx;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    s->id_base = ((uint64_t)now.tv_nsec * 2654435761u) ^ (uint64_t)(uintptr_t)s ^
                 ((uint64_t)getpid() << 16);

    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (opt->tls_cert_pem && opt->tls_key_pem)
        flags |= MHD_USE_TLS;
    struct MHD_OptionItem tls_options[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)opt->tls_cert_pem},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)opt->tls_key_pem},
        {MHD_OPTION_END, 0, NULL},
    };
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, s,
        MHD_OPTION_LISTEN_SOCKET, listen_fd,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)opt->connection_timeout,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)opt->connection_limit,
        /* Request line and headers must fit here (MHD answers 431 otherwise); MHD clears it
         * between the requests of a connection, so it is kept to what headers need. */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
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
                set_pending(x, MHD_HTTP_SERVICE_UNAVAILABLE,
                            MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT));
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

void http_server_run(struct http_server *s) { MHD_run(s->daemon); }

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
    MHD_UNSIGNED_LONG_LONG timeout;
    if (MHD_get_timeout(s->daemon, &timeout) != MHD_YES)
        return -1;
    return timeout > 60000 ? 60000 : (long)timeout;
}

void http_server_answers(struct http_server *s, unsigned long counts[6])
{
    for (int i = 0; i < 6; i++)
        counts[i] += atomic_load_explicit(&s->answers[i], memory_order_relaxed);
}
