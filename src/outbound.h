/* SPDX-License-Identifier: MIT */
/* outbound: HTTP requests the host makes (sb.http.request, the HTTP bot), without blocking.
 *
 * One outbound per engine worker: a libcurl multi handle whose sockets and timer live in the
 * worker's epoll loop. A call finishes by calling its `done` function from outbound_on_socket or
 * outbound_on_timer (never from inside outbound_start), so the worker decides when waiting code
 * resumes. Connections to the same host are kept alive and reused.
 * libcurl is loaded by the first request of the process, and each multi handle is made by its
 * worker's first request (curl_lib.h): a host that makes none never maps libcurl.
 * Each finished call is counted in metrics by host and status class.
 * Uses: curl_lib (libcurl), buffer, list, timers (its clock), metrics, log. */
#ifndef SB_OUTBOUND_H
#define SB_OUTBOUND_H

#include <stddef.h>
#include <stdint.h>

struct outbound;
struct outbound_call;

struct outbound_header {
    const char *name;
    const char *value;
};

struct outbound_request {
    const char *method;             /* "GET", "POST", ... */
    const char *url;                /* http:// or https:// */
    const struct outbound_header *headers;
    size_t header_count;
    const char *body;               /* copied; may be NULL */
    size_t body_len;
    double timeout;                 /* seconds for the whole exchange */
    const char *ca_file;            /* extra CA bundle for HTTPS, or NULL for the system's */
    const char *proxy;              /* proxy URL (http://, https://, socks5://...), or NULL for
                                     * the environment's (http_proxy, https_proxy, no_proxy) */
    const char *request_id;         /* for log lines */
};

struct outbound_result {
    int ok;                         /* 1: an HTTP answer arrived (any status) */
    long status;
    const char *error;              /* !ok: what went wrong ("Connection refused", "timed out") */
    const char *body;               /* borrowed for the duration of the done call */
    size_t body_len;
    const struct outbound_header *headers; /* names lower-case; borrowed likewise */
    size_t header_count;
};

typedef void (*outbound_done_fn)(void *ctx, const struct outbound_result *result);

/* The tag the worker's epoll events for outbound sockets carry in data.u64's high half. */
#define OUTBOUND_EPOLL_TAG 0x5342u

/* An outbound whose multi handle will register its sockets in epfd. Loads nothing yet. Returns
 * NULL with err. */
struct outbound *outbound_create(int epfd, char *err, size_t errlen);
/* Cancels every call (no done calls) and frees. */
void outbound_destroy(struct outbound *o);

/* 1 when the URL's scheme is one outbound requests support (http:// or https://). */
int outbound_url_supported(const char *url);

/* Start a call. Returns it, or NULL with err (bad URL, libcurl cannot be loaded, out of memory):
 * done is then not called. */
struct outbound_call *outbound_start(struct outbound *o, const struct outbound_request *req,
                                     outbound_done_fn done, void *ctx, char *err, size_t errlen);
/* Make the request and wait for it (the thread blocks): for code that runs outside the workers'
 * loops, such as a channel's startup hook. done is called before this returns. Returns 0, or -1
 * with err when the request could not be made at all (done is then not called). */
int outbound_perform_blocking(const struct outbound_request *req, outbound_done_fn done,
                              void *ctx, char *err, size_t errlen);
/* Abandon a call: done will not be called. */
void outbound_cancel(struct outbound *o, struct outbound_call *call);

/* Feed an epoll event of one of its sockets (data.u64 low half is the fd). */
void outbound_on_socket(struct outbound *o, int fd, uint32_t epoll_events);
/* Milliseconds until outbound_on_timer is due, or -1. */
long outbound_timeout_ms(const struct outbound *o);
void outbound_on_timer(struct outbound *o);

#endif
