/* SPDX-License-Identifier: MIT */
/* outbound: see outbound.h. libcurl's multi-socket interface: curl tells us which sockets to
 * watch (socket callback) and when to call it back (timer callback); we tell curl what happened
 * (curl_multi_socket_action) and collect finished transfers (curl_multi_info_read).
 * libcurl is loaded by the first request (curl_lib), so the multi handle is made then too. */
#include "outbound.h"

#include "buffer.h"
#include "curl_lib.h"
#include "list.h"
#include "log.h"
#include "metrics.h"
#include "timers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

/* A larger answer is cut off: nothing a bot or a platform API sends back is this big. */
#define MAX_RESPONSE_BYTES (16u * 1024u * 1024u)
#define MAX_RESPONSE_HEADERS 64

struct outbound {
    const struct curl_lib *curl; /* with multi: NULL until the first request */
    CURLM *multi;
    int epfd;
    int64_t timer_due_ms;  /* -1: no timer */
    struct outbound_call *calls; /* in flight, for outbound_destroy */
};

struct outbound_call {
    const struct curl_lib *curl;
    struct outbound *owner;
    struct outbound_call *prev, *next;
    CURL *easy;
    struct curl_slist *request_headers;
    char *body;
    struct buffer response;
    struct buffer header_text;  /* "name\0value\0" pairs, names lower-case */
    size_t header_count;
    int too_large;
    outbound_done_fn done;
    void *ctx;
    char error[CURL_ERROR_SIZE];
    char host[256];             /* the URL's host, for the metrics */
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct outbound_call *call = userp;
    size_t len = size * nmemb;
    if (call->response.len + len > MAX_RESPONSE_BYTES) {
        call->too_large = 1;
        return 0; /* makes curl fail the transfer with CURLE_WRITE_ERROR */
    }
    return buffer_append(&call->response, data, len) == 0 ? len : 0;
}

/* Each header line "Name: value\r\n" is stored as "name\0value\0"; a new status line (after a
 * 100 Continue or a redirect) starts the list over. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    struct outbound_call *call = userp;
    size_t len = size * nmemb;
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        call->header_text.len = 0;
        call->header_count = 0;
        return len;
    }
    const char *colon = memchr(data, ':', len);
    if (!colon || call->header_count >= MAX_RESPONSE_HEADERS)
        return len;
    size_t name_len = (size_t)(colon - data);
    const char *value = colon + 1;
    size_t value_len = len - name_len - 1;
    while (value_len && (*value == ' ' || *value == '\t'))
        value++, value_len--;
    while (value_len && (value[value_len - 1] == '\r' || value[value_len - 1] == '\n' ||
                         value[value_len - 1] == ' '))
        value_len--;
    char name[128];
    if (name_len == 0 || name_len >= sizeof name)
        return len;
    for (size_t i = 0; i < name_len; i++)
        name[i] = (char)((data[i] >= 'A' && data[i] <= 'Z') ? data[i] + 32 : data[i]);
    if (buffer_append(&call->header_text, name, name_len) != 0 ||
        buffer_append(&call->header_text, "", 1) != 0 ||
        buffer_append(&call->header_text, value, value_len) != 0 ||
        buffer_append(&call->header_text, "", 1) != 0)
        return 0;
    call->header_count++;
    return len;
}

static void call_free(struct outbound_call *call)
{
    call->curl->slist_free_all(call->request_headers);
    free(call->body);
    call->body = NULL;
    buffer_free(&call->response);
    buffer_free(&call->header_text);
    free(call);
}

/* Detach from the multi handle and free. */
static void call_finish(struct outbound *o, struct outbound_call *call)
{
    o->curl->multi_remove_handle(o->multi, call->easy);
    o->curl->easy_cleanup(call->easy);
    LIST_UNLINK(o->calls, call, prev, next);
    call_free(call);
}

/* The host of an http(s) URL, lower-case, without user name, password or port ("" if none). */
static void url_host(const char *url, char *out, size_t size)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    size_t authority = strcspn(p, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < authority; i++)
        if (p[i] == '@')
            at = p + i; /* the last one: a password may hold '@' only percent-encoded */
    if (at) {
        authority -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    size_t len;
    if (authority && p[0] == '[') {
        const char *close = memchr(p, ']', authority);
        len = close ? (size_t)(close - p) + 1 : authority;
    } else {
        len = strcspn(p, ":/?#");
        if (len > authority)
            len = authority;
    }
    if (len >= size)
        len = size - 1;
    for (size_t i = 0; i < len; i++)
        out[i] = (char)((p[i] >= 'A' && p[i] <= 'Z') ? p[i] + 32 : p[i]);
    out[len] = '\0';
}

/* Call the call's done function with its result (which borrows the call's buffers). */
static void report(struct outbound_call *call, CURLcode code)
{
    struct outbound_header headers[MAX_RESPONSE_HEADERS];
    struct outbound_result r = {0};
    if (code == CURLE_OK) {
        r.ok = 1;
        call->curl->easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &r.status);
        r.body = call->response.data ? call->response.data : "";
        r.body_len = call->response.len;
        const char *p = call->header_text.data;
        for (size_t i = 0; p && i < call->header_count; i++) {
            headers[i].name = p;
            p += strlen(p) + 1;
            headers[i].value = p;
            p += strlen(p) + 1;
        }
        r.headers = headers;
        r.header_count = call->header_count;
    } else if (call->too_large) {
        r.error = "the answer is larger than 16 MiB";
    } else if (code == CURLE_OPERATION_TIMEDOUT) {
        r.error = "timed out";
    } else {
        r.error = call->error[0] ? call->error : call->curl->easy_strerror(code);
    }
    metrics_outbound(call->host, r.ok ? r.status : 0);
    call->done(call->ctx, &r);
}

static void deliver(struct outbound *o, struct outbound_call *call, CURLcode code)
{
    report(call, code);
    call_finish(o, call);
}

static void collect_finished(struct outbound *o)
{
    CURLMsg *msg;
    int left;
    while ((msg = o->curl->multi_info_read(o->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct outbound_call *call = NULL;
        o->curl->easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&call);
        if (call)
            deliver(o, call, msg->data.result);
    }
}

/* curl: start, change or stop watching a socket. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    struct outbound *o = userp;
    struct epoll_event ev = {0};
    ev.data.u64 = ((uint64_t)OUTBOUND_EPOLL_TAG << 32) | (uint32_t)fd;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(o->epfd, EPOLL_CTL_DEL, fd, NULL);
        o->curl->multi_assign(o->multi, fd, NULL);
        return 0;
    }
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    if (socketp) {
        epoll_ctl(o->epfd, EPOLL_CTL_MOD, fd, &ev);
    } else {
        epoll_ctl(o->epfd, EPOLL_CTL_ADD, fd, &ev);
        o->curl->multi_assign(o->multi, fd, o); /* non-NULL marks "registered" */
    }
    return 0;
}

/* curl: call me back in timeout_ms (-1: no timer). */
static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct outbound *o = userp;
    o->timer_due_ms = timeout_ms < 0 ? -1 : (int64_t)timers_now_ms() + timeout_ms;
    return 0;
}

struct outbound *outbound_create(int epfd, char *err, size_t errlen)
{
    struct outbound *o = calloc(1, sizeof *o);
    if (!o) {
        snprintf(err, errlen, "cannot create the outbound HTTP client: out of memory");
        return NULL;
    }
    o->epfd = epfd;
    o->timer_due_ms = -1;
    return o;
}

/* The multi handle, made by the worker's first request (which loads libcurl). 0, or -1 with
 * err. */
static int ensure_multi(struct outbound *o, char *err, size_t errlen)
{
    if (o->multi)
        return 0;
    const struct curl_lib *curl = curl_lib_get(err, errlen);
    if (!curl)
        return -1;
    CURLM *multi = curl->multi_init();
    if (!multi) {
        snprintf(err, errlen, "cannot create the outbound HTTP client");
        return -1;
    }
    curl->multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl->multi_setopt(multi, CURLMOPT_SOCKETDATA, o);
    curl->multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl->multi_setopt(multi, CURLMOPT_TIMERDATA, o);
    o->curl = curl;
    o->multi = multi;
    return 0;
}

void outbound_destroy(struct outbound *o)
{
    if (!o)
        return;
    while (o->calls)
        call_finish(o, o->calls);
    if (o->multi)
        o->curl->multi_cleanup(o->multi);
    free(o);
}

static int add_header(struct outbound_call *call, const char *name, const char *value)
{
    char line[8192];
    if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
        return -1; /* header injection */
    snprintf(line, sizeof line, "%s: %s", name, value);
    struct curl_slist *l = call->curl->slist_append(call->request_headers, line);
    if (!l)
        return -1;
    call->request_headers = l;
    return 0;
}

/* A configured transfer for `req`, not yet started; NULL with err. */
static struct outbound_call *call_new(const struct curl_lib *curl,
                                      const struct outbound_request *req, outbound_done_fn done,
                                      void *ctx, char *err, size_t errlen)
{
    struct outbound_call *call = calloc(1, sizeof *call);
    if (!call || !(call->easy = curl->easy_init())) {
        free(call);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    call->curl = curl;
    call->done = done;
    call->ctx = ctx;
    url_host(req->url, call->host, sizeof call->host);
    CURL *e = call->easy;
    curl->easy_setopt(e, CURLOPT_URL, req->url);
    curl->easy_setopt(e, CURLOPT_PRIVATE, call);
    curl->easy_setopt(e, CURLOPT_ERRORBUFFER, call->error);
    curl->easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl->easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl->easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl->easy_setopt(e, CURLOPT_WRITEDATA, call);
    curl->easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl->easy_setopt(e, CURLOPT_HEADERDATA, call);
    curl->easy_setopt(e, CURLOPT_TIMEOUT_MS,
                      (long)(req->timeout > 0 ? req->timeout * 1000 : 30000));
    curl->easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    if (req->ca_file)
        curl->easy_setopt(e, CURLOPT_CAINFO, req->ca_file);
    if (req->proxy)
        curl->easy_setopt(e, CURLOPT_PROXY, req->proxy);
    if (strcmp(req->method, "GET") != 0 || req->body) {
        if (req->body) {
            call->body = malloc(req->body_len ? req->body_len : 1);
            if (!call->body)
                goto oom;
            memcpy(call->body, req->body, req->body_len);
        }
        curl->easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl->easy_setopt(e, CURLOPT_POSTFIELDS, call->body ? call->body : "");
        if (strcmp(req->method, "POST") != 0)
            curl->easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
        if (strcmp(req->method, "HEAD") == 0)
            curl->easy_setopt(e, CURLOPT_NOBODY, 1L);
    }
    for (size_t i = 0; i < req->header_count; i++) {
        if (add_header(call, req->headers[i].name, req->headers[i].value) != 0) {
            snprintf(err, errlen, "invalid header '%s'", req->headers[i].name);
            goto fail;
        }
    }
    /* libcurl would send "Expect: 100-continue" for larger bodies and wait for it. */
    if (add_header(call, "Expect", "") != 0)
        goto oom;
    curl->easy_setopt(e, CURLOPT_HTTPHEADER, call->request_headers);
    return call;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    curl->easy_cleanup(call->easy);
    call_free(call);
    return NULL;
}

int outbound_url_supported(const char *url)
{
    return strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0;
}

/* Checked before libcurl is loaded: a URL it would refuse loads nothing. */
static int check_url(const struct outbound_request *req, char *err, size_t errlen)
{
    if (outbound_url_supported(req->url))
        return 0;
    snprintf(err, errlen, "only http:// and https:// URLs are supported");
    return -1;
}

struct outbound_call *outbound_start(struct outbound *o, const struct outbound_request *req,
                                     outbound_done_fn done, void *ctx, char *err, size_t errlen)
{
    if (check_url(req, err, errlen) != 0)
        return NULL;
    if (ensure_multi(o, err, errlen) != 0)
        return NULL;
    struct outbound_call *call = call_new(o->curl, req, done, ctx, err, errlen);
    if (!call)
        return NULL;
    if (o->curl->multi_add_handle(o->multi, call->easy) != CURLM_OK) {
        snprintf(err, errlen, "cannot start the request");
        o->curl->easy_cleanup(call->easy);
        call_free(call);
        return NULL;
    }
    call->owner = o;
    LIST_PUSH(o->calls, call, prev, next);
    return call;
}

int outbound_perform_blocking(const struct outbound_request *req, outbound_done_fn done,
                              void *ctx, char *err, size_t errlen)
{
    if (check_url(req, err, errlen) != 0)
        return -1;
    const struct curl_lib *curl = curl_lib_get(err, errlen);
    if (!curl)
        return -1;
    struct outbound_call *call = call_new(curl, req, done, ctx, err, errlen);
    if (!call)
        return -1;
    CURLcode code = curl->easy_perform(call->easy);
    report(call, code);
    curl->easy_cleanup(call->easy);
    call_free(call);
    return 0;
}

void outbound_cancel(struct outbound *o, struct outbound_call *call)
{
    if (call)
        call_finish(o, call);
}

void outbound_on_socket(struct outbound *o, int fd, uint32_t epoll_events)
{
    int flags = 0, running;
    if (epoll_events & EPOLLIN)
        flags |= CURL_CSELECT_IN;
    if (epoll_events & EPOLLOUT)
        flags |= CURL_CSELECT_OUT;
    if (epoll_events & (EPOLLERR | EPOLLHUP))
        flags |= CURL_CSELECT_ERR;
    o->curl->multi_socket_action(o->multi, fd, flags, &running);
    collect_finished(o);
}

long outbound_timeout_ms(const struct outbound *o)
{
    if (o->timer_due_ms < 0)
        return -1;
    int64_t left = o->timer_due_ms - (int64_t)timers_now_ms();
    return left > 0 ? (long)left : 0;
}

void outbound_on_timer(struct outbound *o)
{
    if (o->timer_due_ms < 0 || o->timer_due_ms > (int64_t)timers_now_ms())
        return;
    int running;
    o->timer_due_ms = -1;
    o->curl->multi_socket_action(o->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    collect_finished(o);
}

