/* loadgen: the benchmark's load generator. One thread, one epoll set, N connections to
 * an echo server; optionally over TLS (OpenSSL, client side only).
 *
 *   loadgen --port P [--host H] [--mode rr|stream|idle|handshake] [-c N] [-s BYTES]
 *           [--warmup SEC] [--duration SEC] [--server-pid PID] [--tls]
 *
 * rr         every connection sends a message of S bytes, waits for all S bytes of the
 *            echo (each byte checked) and sends the next; latency is measured from
 *            the first send to the last byte received.
 * stream     every connection keeps writing S-byte chunks and reading the echo, with
 *            at most max(16 S, 1 MiB) bytes in flight; throughput counts echoed bytes.
 * idle       opens N connections, prints "connected N" and holds them until stdin
 *            closes or SIGTERM (the runner measures the server's memory meanwhile).
 * handshake  (with --tls) every connection connects, completes a full TLS handshake,
 *            echoes one byte, sends close_notify and closes, then starts again.
 *
 * Only the window after the warm-up counts. With --server-pid the server's CPU time
 * (sum of its threads' on-CPU nanoseconds from /proc/PID/task/<tid>/schedstat) is
 * read at the window's start and end. The result is one JSON line on stdout. Any
 * wrong byte or lost connection is an error: the exit status is then 1.
 *
 * Bytes sent are pattern[(offset) % 251 ...], so the echo is checked with one memcmp
 * against the same pattern and no per-connection receive buffer is needed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "bench_common.h"

#define PERIOD 251
#define SCRATCH (256 * 1024)

enum mode { MODE_RR, MODE_STREAM, MODE_IDLE, MODE_HANDSHAKE };
enum state { ST_CONNECTING, ST_HANDSHAKE, ST_RUNNING, ST_CLOSED };

typedef struct conn {
    int fd;
    int idx;
    enum state state;
    SSL *ssl;
    uint32_t events;   /* current epoll interest */
    uint64_t seq;      /* rr: message number */
    size_t woff, roff; /* rr: progress in the current message */
    uint64_t sent, recvd; /* stream: bytes */
    uint64_t t0;       /* rr: send time of the current message (ns) */
    bool ran;          /* has reached ST_RUNNING once (handshake mode reconnects) */
} conn;

static struct {
    const char *host;
    int port;
    enum mode mode;
    int nconn;
    size_t size;
    double warmup, duration;
    int server_pid;
    bool tls;
} opt = {"127.0.0.1", 0, MODE_RR, 1, 1024, 1.0, 3.0, 0, false};

static unsigned char *pattern;
static unsigned char scratch[SCRATCH];
static int epfd;
static conn *conns;
static SSL_CTX *ctx;
static struct sockaddr_in addr;
static volatile sig_atomic_t stop_flag;

/* Window accounting. */
static bool in_window;
static uint64_t win_rt, win_bytes, total_rt, errors;
static uint64_t *lat;
static size_t nlat, caplat;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void fail(conn *c, const char *what) {
    if (!stop_flag)
        fprintf(stderr, "loadgen: connection %d: %s\n", c->idx, what);
    errors++;
    exit(1);
}

static void set_events(conn *c, uint32_t ev) {
    if (c->events == ev)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e) != 0)
        die("epoll_ctl");
    c->events = ev;
}

/* ---- I/O wrappers: plain or TLS; return > 0, 0 for would-block, -1 for EOF/error ---- */

static ssize_t c_send(conn *c, const void *p, size_t n, bool *want_read) {
    *want_read = false;
    if (c->ssl == NULL) {
        ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        return r < 0 ? -1 : r;
    }
    int r = SSL_write(c->ssl, p, (int)(n > INT32_MAX ? INT32_MAX : n));
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_WRITE)
        return 0;
    if (e == SSL_ERROR_WANT_READ) {
        *want_read = true;
        return 0;
    }
    return -1;
}

static ssize_t c_recv(conn *c, void *p, size_t n) {
    if (c->ssl == NULL) {
        ssize_t r = recv(c->fd, p, n, 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        return r <= 0 ? -1 : r;
    }
    int r = SSL_read(c->ssl, p, (int)n);
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    return -1;
}

/* ---- connections ------------------------------------------------------------------ */

static void conn_open(conn *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->state = ST_CONNECTING;
    c->ssl = NULL;
    c->woff = c->roff = 0;
    c->sent = c->recvd = 0;
    c->seq = 0;
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) != 0 && errno != EINPROGRESS)
        die("connect");
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
    c->events = EPOLLOUT;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &e) != 0)
        die("epoll_ctl add");
}

static void conn_close(conn *c) {
    if (c->ssl != NULL) {
        SSL_shutdown(c->ssl); /* sends close_notify; the answer is not awaited */
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = ST_CLOSED;
}

static void start_message(conn *c);
static void pump(conn *c);

static void running(conn *c) {
    c->state = ST_RUNNING;
    c->ran = true;
    switch (opt.mode) {
    case MODE_IDLE:
        set_events(c, EPOLLIN);
        break;
    case MODE_RR:
        start_message(c);
        break;
    case MODE_HANDSHAKE:
        /* One byte out and back proves the server finished its side too. */
        opt.size = 1;
        start_message(c);
        break;
    case MODE_STREAM:
        pump(c);
        break;
    }
}

static void handshake_step(conn *c) {
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        running(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        set_events(c, EPOLLIN);
    else if (e == SSL_ERROR_WANT_WRITE)
        set_events(c, EPOLLOUT);
    else {
        ERR_print_errors_fp(stderr);
        fail(c, "TLS handshake failed");
    }
}

static void connected(conn *c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
        errno = err;
        die("connect");
    }
    if (!opt.tls) {
        running(c);
        return;
    }
    c->ssl = SSL_new(ctx);
    if (c->ssl == NULL)
        fail(c, "SSL_new");
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_connect_state(c->ssl);
    c->state = ST_HANDSHAKE;
    handshake_step(c);
}

/* ---- rr and handshake modes ------------------------------------------------------------ */

static void rr_write(conn *c) {
    const unsigned char *msg = pattern + c->seq % PERIOD;
    while (c->woff < opt.size) {
        bool want_read;
        ssize_t n = c_send(c, msg + c->woff, opt.size - c->woff, &want_read);
        if (n < 0)
            fail(c, "send failed");
        if (n == 0) {
            set_events(c, want_read ? EPOLLIN : EPOLLIN | EPOLLOUT);
            return;
        }
        c->woff += (size_t)n;
    }
    set_events(c, EPOLLIN);
}

static void start_message(conn *c) {
    c->seq++;
    c->woff = c->roff = 0;
    c->t0 = now_ns();
    rr_write(c);
}

static void record(uint64_t ns) {
    if (nlat == caplat) {
        caplat = caplat ? caplat * 2 : 1 << 16;
        lat = realloc(lat, caplat * sizeof *lat);
        if (lat == NULL)
            die("realloc");
    }
    lat[nlat++] = ns;
}

static void rr_read(conn *c) {
    const unsigned char *msg = pattern + c->seq % PERIOD;
    for (;;) {
        size_t want = opt.size - c->roff;
        if (want > SCRATCH)
            want = SCRATCH;
        ssize_t n = c_recv(c, scratch, want);
        if (n < 0)
            fail(c, "connection lost (EOF or error) during a round trip");
        if (n == 0)
            return;
        if (memcmp(scratch, msg + c->roff, (size_t)n) != 0)
            fail(c, "echoed bytes differ from those sent");
        c->roff += (size_t)n;
        if (c->roff < opt.size)
            continue;
        if (c->woff < opt.size)
            fail(c, "echo longer than what was sent");
        uint64_t t = now_ns();
        total_rt++;
        if (in_window) {
            win_rt++;
            win_bytes += opt.size;
            record(t - c->t0);
        }
        if (opt.mode == MODE_HANDSHAKE) {
            conn_close(c);
            conn_open(c);
            return;
        }
        start_message(c);
        /* With TLS, decrypted bytes may wait inside OpenSSL: keep reading. */
        if (c->ssl == NULL)
            return;
        msg = pattern + c->seq % PERIOD;
    }
}

/* ---- stream mode ------------------------------------------------------------------- */

/* Enough in flight that neither side waits for the other (the socket buffers
 * alone hold a few MB on loopback). */
static size_t window_bytes(void) {
    size_t w = 16 * opt.size;
    return w < 1024 * 1024 ? 1024 * 1024 : w;
}

static void pump(conn *c) {
    uint32_t ev = EPOLLIN;
    while (c->sent - c->recvd < window_bytes()) {
        size_t n = opt.size;
        bool want_read;
        ssize_t r = c_send(c, pattern + c->sent % PERIOD, n, &want_read);
        if (r < 0)
            fail(c, "send failed");
        if (r == 0) {
            if (!want_read)
                ev |= EPOLLOUT;
            break;
        }
        c->sent += (uint64_t)r;
    }
    set_events(c, ev);
}

static void stream_read(conn *c) {
    /* The pattern holds opt.size + PERIOD bytes: never compare more than opt.size. */
    size_t chunk = opt.size < SCRATCH ? opt.size : SCRATCH;
    for (;;) {
        ssize_t n = c_recv(c, scratch, chunk);
        if (n < 0)
            fail(c, "connection lost (EOF or error) while streaming");
        if (n == 0)
            break;
        if (memcmp(scratch, pattern + c->recvd % PERIOD, (size_t)n) != 0)
            fail(c, "echoed bytes differ from those sent");
        c->recvd += (uint64_t)n;
        if (c->recvd > c->sent)
            fail(c, "echo longer than what was sent");
        if (in_window)
            win_bytes += (uint64_t)n;
    }
    pump(c);
}

/* ---- event dispatch ------------------------------------------------------------------ */

static void on_event(conn *c, uint32_t ev) {
    if (c->state == ST_CONNECTING) {
        connected(c);
        return;
    }
    if (c->state == ST_HANDSHAKE) {
        handshake_step(c);
        return;
    }
    if (c->state != ST_RUNNING)
        return;
    switch (opt.mode) {
    case MODE_IDLE:
        if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
            fail(c, "idle connection closed by the server");
        break;
    case MODE_RR:
    case MODE_HANDSHAKE:
        if (ev & (EPOLLOUT | EPOLLIN)) {
            if (c->woff < opt.size)
                rr_write(c);
            if (c->state == ST_RUNNING && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                rr_read(c);
            /* A TLS write that wanted to read may continue now. */
            if (c->state == ST_RUNNING && c->ssl != NULL && c->woff < opt.size)
                rr_write(c);
        } else if (ev & (EPOLLHUP | EPOLLERR)) {
            fail(c, "connection reset");
        }
        break;
    case MODE_STREAM:
        if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
            stream_read(c);
        else
            pump(c);
        break;
    }
}

static int run_until(uint64_t deadline, bool until_connected) {
    struct epoll_event evs[256];
    for (;;) {
        uint64_t t = now_ns();
        if (stop_flag)
            return -1;
        if (until_connected) {
            int ready = 0;
            for (int i = 0; i < opt.nconn; i++)
                ready += conns[i].state == ST_RUNNING;
            if (ready == opt.nconn)
                return 0;
        } else if (t >= deadline) {
            return 0;
        }
        int timeout = until_connected ? 100 : (int)((deadline - t) / 1000000u) + 1;
        int n = epoll_wait(epfd, evs, 256, timeout);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events);
    }
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void on_term(int sig) {
    (void)sig;
    stop_flag = 1;
}

static void usage(void) {
    fprintf(stderr, "usage: loadgen --port P [--host H] [--mode rr|stream|idle|handshake] [-c N]\n"
                    "               [-s BYTES] [--warmup SEC] [--duration SEC] [--server-pid PID]"
                    " [--tls]\n");
    exit(2);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--tls") == 0) {
            opt.tls = true;
            continue;
        }
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (strcmp(a, "--host") == 0)
            opt.host = v;
        else if (strcmp(a, "--port") == 0)
            opt.port = atoi(v);
        else if (strcmp(a, "-c") == 0)
            opt.nconn = atoi(v);
        else if (strcmp(a, "-s") == 0)
            opt.size = (size_t)atol(v);
        else if (strcmp(a, "--warmup") == 0)
            opt.warmup = atof(v);
        else if (strcmp(a, "--duration") == 0)
            opt.duration = atof(v);
        else if (strcmp(a, "--server-pid") == 0)
            opt.server_pid = atoi(v);
        else if (strcmp(a, "--mode") == 0) {
            if (strcmp(v, "rr") == 0)
                opt.mode = MODE_RR;
            else if (strcmp(v, "stream") == 0)
                opt.mode = MODE_STREAM;
            else if (strcmp(v, "idle") == 0)
                opt.mode = MODE_IDLE;
            else if (strcmp(v, "handshake") == 0)
                opt.mode = MODE_HANDSHAKE;
            else
                usage();
        } else
            usage();
    }
    if (opt.port <= 0 || opt.nconn <= 0 || opt.size == 0 || opt.duration <= 0)
        usage();
    if (opt.mode == MODE_HANDSHAKE && !opt.tls)
        usage();

    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)opt.port);
    if (inet_pton(AF_INET, opt.host, &addr.sin_addr) != 1) {
        fprintf(stderr, "loadgen: --host must be an IPv4 address\n");
        return 2;
    }
    size_t plen = opt.size + PERIOD;
    pattern = malloc(plen);
    if (pattern == NULL)
        die("malloc");
    for (size_t i = 0; i < plen; i++)
        pattern[i] = (unsigned char)(i % PERIOD);

    if (opt.tls) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (ctx == NULL)
            return 1;
        /* mbedTLS 2.28 speaks TLS 1.2 only: every server is measured at 1.2. */
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    conns = calloc((size_t)opt.nconn, sizeof *conns);
    if (conns == NULL)
        die("calloc");
    /* Connect in batches so the server's accept backlog never overflows (an overflow
     * costs a one-second SYN retransmission). */
    const int batch = 64;
    for (int i = 0; i < opt.nconn; i += batch) {
        int end = i + batch < opt.nconn ? i + batch : opt.nconn;
        for (int j = i; j < end; j++) {
            conns[j].idx = j;
            conn_open(&conns[j]);
        }
        struct epoll_event evs[256];
        for (;;) {
            /* Counted once: in handshake mode a connection that finished reconnects at
             * once, so all of them are rarely running at the same moment. */
            int pending = 0;
            for (int j = i; j < end; j++)
                pending += !conns[j].ran;
            if (pending == 0 || stop_flag)
                break;
            int n = epoll_wait(epfd, evs, 256, 100);
            for (int k = 0; k < n; k++)
                on_event(evs[k].data.ptr, evs[k].events);
        }
    }

    if (opt.mode == MODE_IDLE) {
        printf("connected %d\n", opt.nconn);
        fflush(stdout);
        /* Hold until stdin closes (or a signal); any server-side close is an error. */
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
        epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &e);
        struct epoll_event evs[64];
        while (!stop_flag) {
            int n = epoll_wait(epfd, evs, 64, 1000);
            for (int k = 0; k < n; k++) {
                if (evs[k].data.ptr == NULL) {
                    char b[64];
                    if (read(0, b, sizeof b) <= 0)
                        stop_flag = 1;
                } else {
                    on_event(evs[k].data.ptr, evs[k].events);
                }
            }
        }
        return 0;
    }

    uint64_t t0 = now_ns();
    run_until(t0 + (uint64_t)(opt.warmup * 1e9), false);
    in_window = true;
    int64_t cpu0 = opt.server_pid ? proc_cpu_ns(opt.server_pid) : -1;
    double self0 = self_cpu_s();
    uint64_t w0 = now_ns();
    run_until(w0 + (uint64_t)(opt.duration * 1e9), false);
    uint64_t w1 = now_ns();
    int64_t cpu1 = opt.server_pid ? proc_cpu_ns(opt.server_pid) : -1;
    double self1 = self_cpu_s();
    in_window = false;
    if (stop_flag)
        return 1;

    double secs = (double)(w1 - w0) / 1e9;
    double p50 = 0, p99 = 0;
    if (nlat > 0) {
        qsort(lat, nlat, sizeof *lat, cmp_u64);
        p50 = (double)lat[nlat / 2] / 1e3;
        p99 = (double)lat[(size_t)((double)nlat * 0.99)] / 1e3;
    }
    double server_cpu = cpu0 >= 0 && cpu1 >= 0 ? (double)(cpu1 - cpu0) / 1e9 : -1;
    uint64_t units = opt.mode == MODE_STREAM ? win_bytes / opt.size : win_rt;
    printf("{\"mode\": \"%s\", \"conns\": %d, \"size\": %zu, \"tls\": %s, \"window_s\": %.4f, "
           "\"round_trips\": %llu, \"rt_per_s\": %.1f, \"mb_per_s\": %.2f, \"p50_us\": %.1f, "
           "\"p99_us\": %.1f, \"server_cpu_s\": %.4f, \"server_cpu_us_per_rt\": %.3f, "
           "\"server_busy\": %.3f, \"client_busy\": %.3f, \"errors\": %llu}\n",
           opt.mode == MODE_RR ? "rr" : opt.mode == MODE_STREAM ? "stream" : "handshake",
           opt.nconn, opt.size, opt.tls ? "true" : "false", secs, (unsigned long long)win_rt,
           (double)win_rt / secs, (double)win_bytes / secs / 1e6, p50, p99, server_cpu,
           server_cpu >= 0 && units > 0 ? server_cpu * 1e6 / (double)units : -1.0,
           server_cpu >= 0 ? server_cpu / secs : -1.0, (self1 - self0) / secs,
           (unsigned long long)errors);
    for (int i = 0; i < opt.nconn; i++)
        if (conns[i].fd >= 0)
            conn_close(&conns[i]);
    return 0;
}
