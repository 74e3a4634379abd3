// SPDX-License-Identifier: MIT
/* The load of bench/socketio_echo.py: SESSIONS Socket.IO sessions (Engine.IO v4 / Socket.IO v5
 * over the WebSocket transport, as socket.io-client with transports: ["websocket"] speaks it)
 * to 127.0.0.1:PORT, each sending user_uttered and waiting for its bot_uttered, again and again
 * for SECONDS. One process, one thread, one epoll loop, so that the load costs far less CPU per
 * message than the servers it measures.
 *
 *     sio_load PORT SESSIONS SECONDS
 *
 * Every session is connected and confirmed (session_request -> session_confirm) before the
 * timed window opens; in the window each one sends a message, waits for the answer that echoes
 * it, records the latency, and sends the next. Answers still on their way when the window
 * closes are not counted. Prints one JSON line {messages, seconds, errors, p50_ms, p99_ms,
 * cpu_s} (cpu_s: this process's user + system time in the window). Any protocol error (a wrong
 * answer, a close from the server, a refused connection) ends the run at once with a message on
 * stderr and exit code 1, without the JSON line (so errors is always 0 in it); no message
 * answered in the window exits 1 as well.
 *
 * Uses libcrypto for SHA-1 and base64 (Sec-WebSocket-Accept):
 *     cc -O2 -Wall -Wextra -Werror sio_load.c -o sio_load $(pkg-config --cflags --libs libcrypto)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_MESSAGE (64 * 1024) /* largest text message accepted from a server */
#define MAX_HEAD 8192           /* largest HTTP response head */
#define STARTUP_SECONDS 30.0    /* every session confirmed within this, or fail */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum phase {
    CONNECTING,   /* TCP connect in progress */
    UPGRADING,    /* GET sent, waiting for 101 */
    WAIT_OPEN,    /* waiting for Engine.IO 0{...} */
    WAIT_CONNECT, /* sent 40, waiting for 40{"sid":...} */
    WAIT_CONFIRM, /* sent session_request, waiting for session_confirm */
    READY,        /* confirmed, waiting for the window to open */
    WAIT_ANSWER,  /* sent user_uttered n, waiting for its bot_uttered */
};

struct buf {
    char *data;
    size_t len, cap;
};

struct session {
    int fd;
    enum phase phase;
    char id[48];
    char accept[32]; /* the Sec-WebSocket-Accept expected */
    struct buf in;   /* bytes read, not parsed yet */
    struct buf out;  /* bytes to write */
    size_t out_off;  /* bytes of out already written */
    struct buf msg;  /* a fragmented message being put together */
    int msg_open;    /* a fragmented text message is in progress */
    int want_out;    /* EPOLLOUT is registered */
    unsigned long n; /* number of the message waiting for its answer */
    double sent_at;
};

static int epfd;
static int window_open;
static unsigned long messages;
static unsigned long errors;
static uint32_t *latencies; /* microseconds */
static size_t nlat, caplat;
static uint64_t rng;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* xorshift64*: the masks need to be unpredictable to intermediaries, not secret; seeded from
 * the kernel so each run differs, and cheap enough to draw one per frame. */
static uint32_t rand32(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (uint32_t)((rng * 0x2545F4914F6CDD1DULL) >> 32);
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("sio_load: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p)
        die("out of memory");
    return p;
}

static void buf_reserve(struct buf *b, size_t more)
{
    if (b->len + more <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more)
        cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

static void buf_add(struct buf *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

/* Drops the first n bytes of b. */
static void consume(struct buf *b, size_t n)
{
    if (!n)
        return;
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

/* A protocol error: counted, reported, and the run fails (the sessions of a load generator that
 * got a wrong answer are not worth measuring). */
static void fail(struct session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sio_load: session %s: ", s->id);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    errors++;
    exit(1);
}

static void set_events(struct session *s, int want_out)
{
    if (s->want_out == want_out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = s};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
    s->want_out = want_out;
}

/* Writes what is queued; what the socket does not take waits for EPOLLOUT. */
static void flush(struct session *s)
{
    while (s->out_off < s->out.len) {
        ssize_t w = send(s->fd, s->out.data + s->out_off, s->out.len - s->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            fail(s, "send: %s", strerror(errno));
        }
        s->out_off += (size_t)w;
    }
    if (s->out_off == s->out.len) {
        s->out.len = s->out_off = 0;
        set_events(s, 0);
    } else {
        set_events(s, 1);
    }
}

/* Queues one masked client frame (FIN set) and tries to write it. */
static void send_frame(struct session *s, int opcode, const char *payload, size_t n)
{
    unsigned char head[14];
    size_t h = 0;
    head[h++] = (unsigned char)(0x80 | opcode);
    if (n < 126) {
        head[h++] = (unsigned char)(0x80 | n);
    } else if (n < 65536) {
        head[h++] = 0x80 | 126;
        head[h++] = (unsigned char)(n >> 8);
        head[h++] = (unsigned char)n;
    } else {
        head[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            head[h++] = (unsigned char)((uint64_t)n >> (8 * i));
    }
    uint32_t m = rand32();
    unsigned char mask[4] = {(unsigned char)(m >> 24), (unsigned char)(m >> 16),
                             (unsigned char)(m >> 8), (unsigned char)m};
    memcpy(head + h, mask, 4);
    h += 4;
    buf_add(&s->out, head, h);
    buf_reserve(&s->out, n);
    unsigned char *dst = (unsigned char *)s->out.data + s->out.len;
    for (size_t i = 0; i < n; i++)
        dst[i] = (unsigned char)payload[i] ^ mask[i & 3];
    s->out.len += n;
    flush(s);
}

static void send_text(struct session *s, const char *text)
{
    send_frame(s, 1, text, strlen(text));
}

static void send_message(struct session *s)
{
    char text[160];
    s->n++;
    snprintf(text, sizeof text,
             "42[\"user_uttered\",{\"message\":\"hello %lu\",\"session_id\":\"%s\"}]", s->n, s->id);
    s->phase = WAIT_ANSWER;
    s->sent_at = now();
    send_text(s, text);
}

static void record(double seconds)
{
    if (nlat == caplat) {
        caplat = caplat ? caplat * 2 : 65536;
        latencies = xrealloc(latencies, caplat * sizeof *latencies);
    }
    latencies[nlat++] = (uint32_t)(seconds * 1e6 + 0.5);
}

static int starts(const char *p, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    return n >= k && memcmp(p, prefix, k) == 0;
}

/* One complete Engine.IO packet (a WebSocket text message). */
static void on_packet(struct session *s, const char *p, size_t n)
{
    if (n == 1 && p[0] == '2') { /* Engine.IO ping */
        send_text(s, "3");
        return;
    }
    switch (s->phase) {
    case WAIT_OPEN:
        if (!starts(p, n, "0{") || !memmem(p, n, "\"sid\"", 5))
            fail(s, "expected the Engine.IO open packet, got %.*s", (int)(n > 200 ? 200 : n), p);
        s->phase = WAIT_CONNECT;
        send_text(s, "40");
        return;
    case WAIT_CONNECT:
        if (!starts(p, n, "40{") || !memmem(p, n, "\"sid\"", 5))
            fail(s, "expected 40{\"sid\":...}, got %.*s", (int)(n > 200 ? 200 : n), p);
        s->phase = WAIT_CONFIRM;
        {
            char text[128];
            snprintf(text, sizeof text, "42[\"session_request\",{\"session_id\":\"%s\"}]", s->id);
            send_text(s, text);
        }
        return;
    case WAIT_CONFIRM:
        if (!starts(p, n, "42[\"session_confirm\""))
            fail(s, "expected session_confirm, got %.*s", (int)(n > 200 ? 200 : n), p);
        s->phase = READY;
        if (window_open)
            send_message(s);
        return;
    case WAIT_ANSWER: {
        if (!starts(p, n, "42[\"bot_uttered\","))
            fail(s, "expected bot_uttered, got %.*s", (int)(n > 200 ? 200 : n), p);
        char echo[40];
        int k = snprintf(echo, sizeof echo, "hello %lu\"", s->n);
        if (!memmem(p, n, echo, (size_t)k))
            fail(s, "the answer does not echo \"hello %lu\": %.*s", s->n, (int)(n > 200 ? 200 : n),
                 p);
        messages++;
        record(now() - s->sent_at);
        send_message(s);
        return;
    }
    default:
        fail(s, "unexpected packet %.*s", (int)(n > 200 ? 200 : n), p);
    }
}

/* Parses the complete frames at the start of s->in; returns the bytes they took. */
static size_t on_frames(struct session *s)
{
    const unsigned char *b = (const unsigned char *)s->in.data;
    size_t len = s->in.len, off = 0;
    while (len - off >= 2) {
        const unsigned char *f = b + off;
        size_t avail = len - off, h = 2;
        int fin = f[0] & 0x80, opcode = f[0] & 0x0f;
        if (f[0] & 0x70)
            fail(s, "a server frame with RSV bits set");
        if (f[1] & 0x80)
            fail(s, "a masked server frame");
        uint64_t plen = f[1] & 0x7f;
        if (plen == 126) {
            if (avail < 4)
                break;
            plen = (uint64_t)f[2] << 8 | f[3];
            h = 4;
        } else if (plen == 127) {
            if (avail < 10)
                break;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = plen << 8 | f[2 + i];
            h = 10;
        }
        if (plen > MAX_MESSAGE)
            fail(s, "a frame of %llu bytes (at most %d)", (unsigned long long)plen, MAX_MESSAGE);
        if (avail - h < plen)
            break;
        const char *payload = (const char *)f + h;
        size_t n = (size_t)plen;
        off += h + n;
        switch (opcode) {
        case 0x1: /* text */
            if (s->msg_open)
                fail(s, "a text frame inside a fragmented message");
            if (fin) {
                on_packet(s, payload, n);
            } else {
                s->msg_open = 1;
                s->msg.len = 0;
                buf_add(&s->msg, payload, n);
            }
            break;
        case 0x0: /* continuation */
            if (!s->msg_open)
                fail(s, "a continuation frame outside a message");
            if (s->msg.len + n > MAX_MESSAGE)
                fail(s, "a message over %d bytes", MAX_MESSAGE);
            buf_add(&s->msg, payload, n);
            if (fin) {
                s->msg_open = 0;
                on_packet(s, s->msg.data, s->msg.len);
            }
            break;
        case 0x9: /* ping: the pong echoes its payload */
            if (!fin || n > 125)
                fail(s, "a bad ping frame");
            send_frame(s, 0xA, payload, n);
            break;
        case 0xA: /* pong */
            break;
        case 0x8:
            fail(s, "the server closed the WebSocket (%.*s)", (int)(n > 2 ? n - 2 : 0),
                 payload + (n > 2 ? 2 : 0));
            break;
        default:
            fail(s, "an unexpected frame, opcode %d", opcode);
        }
    }
    return off;
}

/* A response head with its length; checks the 101 and the accept key. */
static size_t on_head(struct session *s)
{
    char *end = memmem(s->in.data, s->in.len, "\r\n\r\n", 4);
    if (!end) {
        if (s->in.len > MAX_HEAD)
            fail(s, "a response head over %d bytes", MAX_HEAD);
        return 0;
    }
    *end = '\0';
    if (strncmp(s->in.data, "HTTP/1.1 101", 12) != 0)
        fail(s, "the upgrade was answered %.*s", (int)strcspn(s->in.data, "\r"), s->in.data);
    int upgrade = 0, connection = 0, accept = 0;
    for (char *line = strstr(s->in.data, "\r\n"); line; line = strstr(line, "\r\n")) {
        line += 2;
        char *colon = strchr(line, ':'), *eol = strstr(line, "\r\n");
        if (!colon || (eol && colon > eol))
            continue;
        size_t klen = (size_t)(colon - line);
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t vlen = eol ? (size_t)(eol - v) : strlen(v);
        while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
            vlen--;
        if (klen == 7 && strncasecmp(line, "upgrade", 7) == 0)
            upgrade = vlen == 9 && strncasecmp(v, "websocket", 9) == 0;
        else if (klen == 10 && strncasecmp(line, "connection", 10) == 0)
            connection = memmem(v, vlen, "pgrade", 6) != NULL; /* Upgrade or upgrade */
        else if (klen == 20 && strncasecmp(line, "sec-websocket-accept", 20) == 0)
            accept = vlen == strlen(s->accept) && memcmp(v, s->accept, vlen) == 0;
    }
    if (!upgrade || !connection || !accept)
        fail(s, "the 101 lacks %s",
             !upgrade      ? "Upgrade: websocket"
             : !connection ? "Connection: Upgrade"
                           : "the right Sec-WebSocket-Accept");
    s->phase = WAIT_OPEN;
    return (size_t)(end + 4 - s->in.data);
}

static void on_readable(struct session *s)
{
    for (;;) {
        buf_reserve(&s->in, 16384);
        ssize_t r = recv(s->fd, s->in.data + s->in.len, s->in.cap - s->in.len, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            fail(s, "recv: %s", strerror(errno));
        }
        if (r == 0)
            fail(s, "the server closed the connection");
        s->in.len += (size_t)r;
        size_t used = 0;
        if (s->phase == UPGRADING) {
            used = on_head(s);
            if (!used)
                goto more;
        }
        if (s->phase != UPGRADING) {
            consume(&s->in, used);
            consume(&s->in, on_frames(s));
        }
    more:
        /* A read that filled the room may have left more behind; otherwise wait for epoll. */
        if (s->in.len < s->in.cap)
            return;
    }
}

static void on_connected(struct session *s)
{
    int err = 0;
    socklen_t elen = sizeof err;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err)
        fail(s, "connect: %s", strerror(err ? err : errno));
    unsigned char raw[16], digest[EVP_MAX_MD_SIZE];
    char key[32], src[96], req[512];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
        die("getrandom: %s", strerror(errno));
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof raw);
    snprintf(src, sizeof src, "%s%s", key, WS_GUID);
    unsigned dlen = 0;
    if (!EVP_Digest(src, strlen(src), digest, &dlen, EVP_sha1(), NULL))
        die("EVP_Digest failed");
    EVP_EncodeBlock((unsigned char *)s->accept, digest, (int)dlen);
    int n = snprintf(req, sizeof req,
                     "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                     "Host: 127.0.0.1\r\n"
                     "Connection: Upgrade\r\n"
                     "Upgrade: websocket\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "\r\n",
                     key);
    s->phase = UPGRADING;
    buf_add(&s->out, req, (size_t)n);
    flush(s);
}

static void start(struct session *s, int port)
{
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0)
        die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->phase = CONNECTING;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = s};
    s->want_out = 1;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
    if (connect(s->fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS)
        fail(s, "connect: %s", strerror(errno));
}

static void on_event(struct session *s, uint32_t events)
{
    if (s->phase == CONNECTING) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            on_connected(s);
        return;
    }
    if (events & EPOLLOUT)
        flush(s);
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(s);
}

static void poll_once(int timeout_ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(epfd, evs, 256, timeout_ms);
    if (n < 0 && errno != EINTR)
        die("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++)
        on_event(evs[i].data.ptr, evs[i].events);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static double quantile_ms(double q)
{
    if (!nlat)
        return 0;
    return latencies[(size_t)(q * (double)(nlat - 1))] / 1e3;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        die("usage: sio_load PORT SESSIONS SECONDS");
    int port = atoi(argv[1]), count = atoi(argv[2]);
    double seconds = atof(argv[3]);
    if (port <= 0 || port > 65535 || count <= 0 || !(seconds > 0))
        die("usage: sio_load PORT SESSIONS SECONDS");
    if (getrandom(&rng, sizeof rng, 0) != (ssize_t)sizeof rng || !rng)
        rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid();
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1: %s", strerror(errno));

    struct session *ss = calloc((size_t)count, sizeof *ss);
    if (!ss)
        die("out of memory");
    for (int i = 0; i < count; i++) {
        /* ids unique per process, so that several loads can share a server */
        snprintf(ss[i].id, sizeof ss[i].id, "c%d-%d", (int)getpid(), i);
        start(&ss[i], port);
    }

    /* Startup: every session confirmed before the window opens. */
    double give_up = now() + STARTUP_SECONDS;
    for (;;) {
        int ready = 0;
        for (int i = 0; i < count; i++)
            ready += ss[i].phase == READY;
        if (ready == count)
            break;
        double left = give_up - now();
        if (left <= 0)
            die("%d of %d sessions confirmed after %.0f s", ready, count, STARTUP_SECONDS);
        poll_once((int)(left * 1000) + 1);
    }

    double t0 = now(), cpu0 = cpu_now(), deadline = t0 + seconds, t;
    window_open = 1;
    for (int i = 0; i < count; i++)
        send_message(&ss[i]);
    while ((t = now()) < deadline)
        poll_once((int)((deadline - t) * 1000) + 1);
    double elapsed = now() - t0, cpu = cpu_now() - cpu0;

    for (int i = 0; i < count; i++)
        close(ss[i].fd);
    qsort(latencies, nlat, sizeof *latencies, cmp_u32);
    printf("{\"messages\": %lu, \"seconds\": %.3f, \"errors\": %lu, \"p50_ms\": %.3f, "
           "\"p99_ms\": %.3f, \"cpu_s\": %.3f}\n",
           messages, elapsed, errors, quantile_ms(0.5), quantile_ms(0.99), cpu);
    return errors || !messages ? 1 : 0;
}
