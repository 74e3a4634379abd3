/* SPDX-License-Identifier: MIT */
/* http: the HTTP side of the host (docs/contract.md §2), the only file that includes
 * <microhttpd.h>.
 *
 * Provides: one listening socket shared by several servers, each server driven by the event loop
 * of one engine worker (external epoll mode: no thread of its own); per request an exchange that
 * carries the parsed request to the engine and takes back one answer or a stream of chunks, at
 * once or later (the connection is suspended meanwhile). Owns the parts of HTTP that need no
 * script: body size limit (413), CORS and preflight, request ids, the connection timeout, the
 * checks of a request head (malformed framing, target and size: 400, 414, 431, 501), the
 * deadline of a request head and room for new clients at the connection limit.
 * Counts every answer, its latency, the requests in flight and the open connections in metrics.
 * Uses: libmicrohttpd, http_checks, json_writer, buffer, list, timers (its clock), metrics, log.
 * Knows nothing of Lua. */
#ifndef SB_HTTP_H
#define SB_HTTP_H

#include <stddef.h>

struct http_exchange;
struct http_server;

struct http_header {
    const char *name;
    const char *value;
};

/* The request as the engine sees it. Every pointer is owned by the exchange and stays valid until
 * the engine finishes the exchange (http_respond or http_stream_finish). */
struct http_request {
    const char *id;          /* request id, also sent back as X-Request-Id */
    const char *method;
    const char *path;        /* percent-decoded path, without the query */
    const char *raw_uri;     /* the request target as sent: path and query, not decoded */
    const char *scheme;      /* "http" or "https" (X-Forwarded-Proto when sent and trusted) */
    const char *host;        /* Host header (X-Forwarded-Host when sent and trusted), or "" */
    const char *remote_addr; /* peer address, no port */
    const char *body;        /* exactly as received; NUL-terminated for convenience */
    size_t body_len;
    /* A request made without a connection (offline.c) carries its headers (names in lower case)
     * and query arguments (decoded) here; a served one reads them from its exchange. */
    const struct http_header *headers;
    size_t header_count;
    const struct http_header *query;
    size_t query_count;
};

struct http_response {
    int status;
    const char *content_type;        /* NULL: no Content-Type */
    const struct http_header *headers;
    size_t header_count;
    const char *body;
    size_t body_len;
};

/* Called by a server for every request whose body is complete (413 and preflights never reach
 * it). The callee must finish the exchange exactly once, now or later, from the thread that runs
 * this server. */
typedef void (*http_request_fn)(void *ctx, struct http_exchange *x, const struct http_request *r);

struct http_options {
    size_t max_body_size;
    unsigned connection_timeout;  /* seconds */
    double header_timeout;        /* seconds from a request's start to the end of its headers */
    unsigned connection_limit;    /* per server */
    const char *const *cors_origins; /* NULL-terminated list, or NULL for no CORS */
    const char *tls_cert_pem;     /* both set: serve HTTPS */
    const char *tls_key_pem;
    int trust_forwarded;          /* scheme and host from X-Forwarded-Proto/-Host when sent */
    int access_log;               /* log one line per answer at info level (else debug) */
};

/* Open the listening socket. Returns the fd, or -1 with "cannot listen on HOST:PORT: reason". */
int http_listen(const char *interface, unsigned port, char *err, size_t errlen);
/* The port a listening socket is bound to (for port 0). */
unsigned http_bound_port(int listen_fd);

/* A server on a shared listening socket; borrows fd and options (they must outlive it). */
struct http_server *http_server_create(int listen_fd, const struct http_options *opt,
                                       http_request_fn on_request, void *ctx, char *err,
                                       size_t errlen);
/* Resume every suspended exchange with 503, stop, free. */
void http_server_destroy(struct http_server *s);
/* An fd that becomes readable when the server has work; call http_server_run then. */
int http_server_fd(const struct http_server *s);
void http_server_run(struct http_server *s);
/* Stop accepting new connections (graceful stop); the listening socket stays open. */
void http_server_stop_accepting(struct http_server *s);
/* Requests handed to the engine whose answer is not completely sent yet. */
unsigned http_server_busy(const struct http_server *s);
/* Milliseconds until the server needs running for its own timeouts (libmicrohttpd's, the
 * deadline of a request head, a look at the listen backlog at the connection limit), or -1. */
long http_server_timeout_ms(struct http_server *s);
/* Add the answers this server has sent, by status class (counts[2] for 2xx), to counts.
 * May be called from any thread. */
void http_server_answers(struct http_server *s, unsigned long counts[6]);

/* Iteration over the request's headers (names are passed in lower case). */
void http_each_header(struct http_exchange *x,
                      void (*fn)(void *ctx, const char *name, const char *value), void *ctx);
/* The value of a request header (name in any case), or NULL. */
const char *http_header_value(struct http_exchange *x, const char *name);
/* The channel that answers this exchange, for the metrics and the access log line (the name is
 * copied). Set it before answering. */
void http_set_channel(struct http_exchange *x, const char *channel);
/* Query arguments in order, percent-decoded; a name may come more than once. */
void http_each_query_arg(struct http_exchange *x,
                         void (*fn)(void *ctx, const char *name, const char *value), void *ctx);

/* Finish with one answer (copied). */
void http_respond(struct http_exchange *x, const struct http_response *r);
/* Or stream: start (status, content type, headers copied), write chunks (copied) as they come,
 * finish once. Chunked transfer encoding on HTTP/1.1. */
void http_stream_start(struct http_exchange *x, int status, const char *content_type,
                       const struct http_header *headers, size_t header_count);
void http_stream_write(struct http_exchange *x, const char *data, size_t len);
void http_stream_finish(struct http_exchange *x);

/* Switching protocols (WebSocket): answer 101 with these headers (copied; Upgrade and
 * Connection included by the caller) and hand the socket over once the answer is sent. fn runs on
 * this server's thread: with the socket, and any bytes the client sent after its request (treat
 * them as read from the socket); or with u NULL and fd -1 when the answer could not be sent. The
 * socket may be read, written and shut down, never closed: http_upgraded_close ends it. */
struct http_upgraded;
typedef void (*http_upgrade_fn)(void *ctx, struct http_upgraded *u, int fd, const char *extra,
                                size_t extra_len);
void http_upgrade(struct http_exchange *x, const struct http_header *headers, size_t count,
                  http_upgrade_fn fn, void *ctx);
void http_upgraded_close(struct http_upgraded *u);

/* A JSON error body {"error": code, "message": message} (message JSON-escaped) as an answer. */
void http_respond_error(struct http_exchange *x, int status, const char *code,
                        const char *message);

#endif
