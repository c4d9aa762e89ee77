/* The socket transport: TCP and Unix stream sockets under the transport base.
 *
 * This file moves bytes; transport.c owns the contract with the protocol (state
 * checks, watermarks, deferred connection_made / connection_lost) and this file only
 * reports to it through the tide__transport_* helpers. One tide__io per socket (the
 * loop's own epoll set on Linux): read is wanted while the base wants input, write
 * only while bytes are queued, so an idle or drained connection never wakes the loop.
 *
 * Writes go to the socket at once when nothing is queued; only what the kernel does
 * not take is copied into a per-transport ring buffer that is reused across writes
 * and flushed with one sendmsg over its (at most two) contiguous pieces. Reads land
 * in the loop's shared scratch buffer, or straight into a buffered protocol's memory.
 *
 * Reentrancy: every protocol callback reached from here (data_received, eof_received,
 * resume_writing, get_buffer, ...) may write, close, abort or pause the transport.
 * The transport itself is never freed inside such a callback (release runs only
 * after the deferred connection_lost), so after each callback this file re-reads the
 * state it depends on instead of trusting what it saw before. All on the loop's
 * thread; the only global touched is the tide__sys table. */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "core/buf.h"
#include "transports/transport_int.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif
/* Bounded so the iovec array on the stack stays small (16 KiB). */
#define IOV_BATCH (IOV_MAX < 1024 ? IOV_MAX : 1024)

/* A drained ring up to this size is kept for the next burst, so a connection that
 * queues now and then does not allocate each time; a bigger one (grown by a large
 * burst) is freed so idle connections stay small. */
#define RING_KEEP (256 * 1024)
#define RING_MIN 4096

/* The write queue: bytes in order, starting at head, wrapping at cap. */
typedef struct ring {
    unsigned char *buf;
    size_t cap;
    size_t head;
    size_t len;
} ring;

typedef struct sock {
    struct tide_transport base; /* first: the base hands us back this pointer */
    int fd;
    bool shut_pending; /* write_eof asked for while bytes were still queued */
    bool shut_done;
    tide__io io; /* read while the base wants input, write while bytes are queued */
    ring wq;
    /* The peer of a TCP connection, cached: after a reset the kernel no longer knows
     * it, and describe() and connection_lost handlers still want to name it. Unix
     * addresses (up to 110 bytes, mostly unnamed) and the local address are asked
     * from the kernel when wanted, which keeps an idle connection small. */
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } peer;
    socklen_t peer_len; /* 0: not cached */
} sock;

static sock *as_sock(tide_transport_t *t) { return TIDE_CONTAINER_OF(t, sock, base); }
static const sock *as_csock(const tide_transport_t *t) {
    return (const sock *)(const void *)((const char *)t - offsetof(sock, base));
}

/* ---- the write queue ---------------------------------------------------------- */

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

/* Makes room for `extra` more bytes. Growth copies the queue once into a larger,
 * linear buffer; doubling keeps that amortised. */
static int ring_reserve(ring *r, size_t extra) {
    if (extra > SIZE_MAX - r->len)
        return TIDE_ENOMEM;
    size_t need = r->len + extra;
    if (need <= r->cap)
        return 0;
    size_t cap = r->cap ? r->cap : RING_MIN;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    unsigned char *buf = tide__buf_alloc(cap);
    if (buf == NULL)
        return TIDE_ENOMEM;
    if (r->len > 0) {
        size_t first = min_size(r->len, r->cap - r->head);
        memcpy(buf, r->buf + r->head, first);
        memcpy(buf + first, r->buf, r->len - first);
    }
    free(r->buf);
    r->buf = buf;
    r->cap = cap;
    r->head = 0;
    return 0;
}

/* Appends n bytes; room was reserved. */
static void ring_put(ring *r, const void *data, size_t n) {
    size_t tail = r->head + r->len;
    if (tail >= r->cap)
        tail -= r->cap;
    size_t first = min_size(n, r->cap - tail);
    memcpy(r->buf + tail, data, first);
    memcpy(r->buf, (const unsigned char *)data + first, n - first);
    r->len += n;
}

/* The queued bytes as at most two pieces, oldest first. */
static size_t ring_pieces(const ring *r, tide_iovec_t piece[2]) {
    size_t first = min_size(r->len, r->cap - r->head);
    piece[0].base = r->buf + r->head;
    piece[0].len = first;
    piece[1].base = r->buf;
    piece[1].len = r->len - first;
    return piece[1].len > 0 ? 2 : 1;
}

static void ring_consume(ring *r, size_t n) {
    r->len -= n;
    r->head += n;
    if (r->head >= r->cap)
        r->head -= r->cap;
    if (r->len == 0)
        r->head = 0; /* the next burst starts linear: one piece, one send */
}

static void ring_free(ring *r) {
    free(r->buf);
    r->buf = NULL;
    r->cap = r->head = r->len = 0;
}

/* ---- sending ------------------------------------------------------------------- */

/* A read position in a caller's array of buffers. Empty buffers are skipped so the
 * kernel never sees a zero-length piece. */
typedef struct cursor {
    const tide_iovec_t *bufs;
    size_t n;
    size_t i;
    size_t off;
} cursor;

static void cursor_settle(cursor *c) {
    while (c->i < c->n && c->off >= c->bufs[c->i].len) {
        c->i++;
        c->off = 0;
    }
}

static void cursor_init(cursor *c, const tide_iovec_t *bufs, size_t n) {
    c->bufs = bufs;
    c->n = n;
    c->i = 0;
    c->off = 0;
    cursor_settle(c);
}

static void cursor_skip(cursor *c, size_t bytes) {
    while (bytes > 0) {
        size_t left = c->bufs[c->i].len - c->off;
        if (bytes < left) {
            c->off += bytes;
            break;
        }
        bytes -= left;
        c->i++;
        c->off = 0;
    }
    cursor_settle(c);
}

/* One send (one piece) or sendmsg (several), always with MSG_NOSIGNAL so a dead peer
 * gives EPIPE instead of killing the process. EINTR is retried. Returns the bytes the
 * kernel took (0 when it would block) or a negative code. */
static ssize_t send_pieces(int fd, struct iovec *iov, size_t cnt) {
    ssize_t r;
    do {
        if (cnt == 1) {
            r = tide__sys.send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
        } else {
            struct msghdr msg;
            memset(&msg, 0, sizeof(msg));
            msg.msg_iov = iov;
            msg.msg_iovlen = cnt;
            r = tide__sys.sendmsg(fd, &msg, MSG_NOSIGNAL);
        }
    } while (r < 0 && errno == EINTR);
    if (r >= 0)
        return r;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
    return tide_err_from_errno(errno);
}

/* Sends from the cursor until everything went or the kernel took less than offered
 * (its buffer is full: asking again now would only return EAGAIN). Advances the
 * cursor and adds to *sent. Returns 0 or a negative code for a dead connection. */
static int send_cursor(int fd, cursor *c, size_t *sent) {
    struct iovec iov[IOV_BATCH];
    while (c->i < c->n) {
        size_t cnt = 0, offered = 0;
        for (size_t i = c->i; i < c->n && cnt < IOV_BATCH; i++) {
            size_t off = i == c->i ? c->off : 0;
            if (c->bufs[i].len == off)
                continue;
            iov[cnt].iov_base = (void *)((const unsigned char *)c->bufs[i].base + off);
            iov[cnt].iov_len = c->bufs[i].len - off;
            offered += iov[cnt].iov_len;
            cnt++;
        }
        ssize_t r = send_pieces(fd, iov, cnt);
        if (r < 0)
            return (int)r;
        cursor_skip(c, (size_t)r);
        *sent += (size_t)r;
        if ((size_t)r < offered)
            break;
    }
    return 0;
}

/* Sends what is queued. Returns 0 (progress in *sent) or a negative code. */
static int flush_queue(sock *s, size_t *sent) {
    tide_iovec_t piece[2];
    cursor c;
    *sent = 0;
    if (s->wq.len == 0)
        return 0;
    cursor_init(&c, piece, ring_pieces(&s->wq, piece));
    int rc = send_cursor(s->fd, &c, sent);
    ring_consume(&s->wq, *sent);
    return rc;
}

static void do_shutdown(sock *s) {
    s->shut_pending = false;
    if (s->shut_done)
        return;
    s->shut_done = true;
    if (tide__sys.shutdown(s->fd, SHUT_WR) < 0)
        tide__transport_fatal(&s->base, tide_err_from_errno(errno));
}

/* The queue just became empty (or was empty when a flush was due): stop watching for
 * writability, then finish what was waiting on the flush. */
static void queue_drained(sock *s) {
    tide__io_stop(&s->io, TIDE__IO_WRITE);
    if (s->wq.cap > RING_KEEP)
        ring_free(&s->wq);
    if (tide__transport_closing(&s->base)) {
        tide__transport_lost(&s->base, 0);
        return;
    }
    if (s->shut_pending)
        do_shutdown(s);
}

static void on_writable(sock *s) {
    tide_transport_t *t = &s->base;
    size_t sent;
    int rc = flush_queue(s, &sent);
    if (rc < 0) {
        tide__transport_fatal(t, rc);
        return;
    }
    if (sent > 0) {
        /* resume_writing may run here, and the protocol may write, close or abort. */
        tide__transport_check_resume(t);
        if (t->state & (TIDE__T_ABORTED | TIDE__T_LOST))
            return;
    }
    if (s->wq.len == 0)
        queue_drained(s);
}

/* ---- reading ------------------------------------------------------------------- */

static void on_readable(sock *s) {
    tide_transport_t *t = &s->base;
    if (!tide__transport_wants_read(t)) {
        tide__io_stop(&s->io, TIDE__IO_READ);
        return;
    }
    bool buffered = tide__transport_is_buffered(t);
    void *buf;
    size_t len = 0;
    if (buffered) {
        buf = tide__transport_get_buffer(t, 0, &len);
        if (buf == NULL)
            return; /* the base failed the transport */
        /* get_buffer is protocol code: it may have paused, closed or aborted. */
        if (!tide__transport_wants_read(t))
            return;
    } else {
        buf = tide__loop_scratch(t->loop, &len);
        if (buf == NULL) {
            tide__transport_fatal(t, TIDE_ENOMEM);
            return;
        }
    }
    ssize_t n = tide__sys.recv(s->fd, buf, len, 0);
    if (n > 0) {
        if (buffered)
            tide__transport_buffer_updated(t, (size_t)n);
        else
            tide__transport_data(t, buf, (size_t)n);
    } else if (n == 0) {
        tide__io_stop(&s->io, TIDE__IO_READ);
        tide__transport_eof(t);
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        /* A reset is an error, never an EOF: eof_received is not called. */
        tide__transport_fatal(t, tide_err_from_errno(errno));
    }
}

/* Both directions may be ready at once: the read first, then the write if the read's
 * callbacks left it wanted (they may have flushed, closed or aborted). */
static void on_io(tide__io *io, unsigned events) {
    sock *s = TIDE_CONTAINER_OF(io, sock, io);
    if (events & TIDE__IO_READ)
        on_readable(s);
    if ((events & TIDE__IO_WRITE) && (s->io.events & TIDE__IO_WRITE))
        on_writable(s);
}

/* Starts watching for writability; a failure (the kernel could not add the
 * descriptor to the poll set) fails the connection, which cannot flush otherwise. */
static void want_write(sock *s) {
    int rc = tide__io_start(&s->io, TIDE__IO_WRITE);
    if (rc != 0)
        tide__transport_fatal(&s->base, rc);
}

/* ---- transport ops --------------------------------------------------------------- */

/* Everything a write does beyond one send that took it all: EINTR and EAGAIN, errors,
 * several buffers, and queueing what the kernel did not take. `tried` is what the fast
 * path's send returned, or NO_SEND when it did not send. */
#define NO_SEND (-2)

static int write_rest(sock *s, const tide_iovec_t *bufs, size_t n, size_t total, ssize_t tried) {
    tide_transport_t *t = &s->base;
    cursor c;
    size_t sent = 0;
    cursor_init(&c, bufs, n);
    if (s->wq.len == 0) {
        int rc = 0;
        if (tried == NO_SEND) {
            rc = send_cursor(s->fd, &c, &sent);
        } else {
            ssize_t r = tried;
            if (r < 0 && errno == EINTR) {
                struct iovec iov = {(void *)bufs[0].base, total};
                r = send_pieces(s->fd, &iov, 1);
            } else if (r < 0) {
                r = (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : tide_err_from_errno(errno);
            }
            if (r < 0)
                rc = (int)r;
            else
                sent = (size_t)r;
            if (sent == total)
                return TIDE__WRITE_SENT;
            cursor_skip(&c, sent);
        }
        if (rc < 0) {
            /* The write itself succeeds; the stored error fails the next ones and
             * connection_lost reports it. */
            tide__transport_fatal(t, rc);
            return 0;
        }
        if (sent == total)
            return TIDE__WRITE_SENT;
    }
    if (ring_reserve(&s->wq, total - sent) < 0) {
        if (sent == 0)
            return TIDE_ENOMEM;
        /* Part of it is on the wire already, so the write cannot be refused whole;
         * the byte stream has a hole now and the connection cannot go on. */
        tide__transport_fatal(t, TIDE_ENOMEM);
        return 0;
    }
    for (; c.i < c.n; c.i++, c.off = 0)
        if (c.bufs[c.i].len > c.off) /* an empty piece may have no base at all */
            ring_put(&s->wq, (const unsigned char *)c.bufs[c.i].base + c.off,
                     c.bufs[c.i].len - c.off);
    want_write(s);
    return 0;
}

/* The common case, one buffer and nothing queued, is one send and no bookkeeping: the
 * cursor, the ring and errno are looked at only when bytes remain. */
static int sock_write(tide_transport_t *t, const tide_iovec_t *bufs, size_t n, size_t total) {
    sock *s = as_sock(t);
    if (TIDE__LIKELY(s->wq.len == 0 && n == 1)) {
        ssize_t r = tide__sys.send(s->fd, bufs[0].base, total, MSG_NOSIGNAL);
        if (TIDE__LIKELY(r >= 0 && (size_t)r == total))
            return TIDE__WRITE_SENT;
        return write_rest(s, bufs, n, total, r);
    }
    return write_rest(s, bufs, n, total, NO_SEND);
}

static int sock_write_eof(tide_transport_t *t) {
    sock *s = as_sock(t);
    if (s->wq.len == 0)
        do_shutdown(s);
    else
        s->shut_pending = true;
    return 0;
}

static void sock_close(tide_transport_t *t) {
    sock *s = as_sock(t);
    tide__io_stop(&s->io, TIDE__IO_READ);
    if (s->wq.len == 0)
        queue_drained(s);
    else
        want_write(s);
}

static void sock_abort(tide_transport_t *t) {
    sock *s = as_sock(t);
    tide__io_stop(&s->io, TIDE__IO_READ | TIDE__IO_WRITE);
    ring_free(&s->wq);
    s->shut_pending = false;
}

static void sock_pause_reading(tide_transport_t *t) {
    tide__io_stop(&as_sock(t)->io, TIDE__IO_READ);
}

static void sock_resume_reading(tide_transport_t *t) {
    int rc = tide__io_start(&as_sock(t)->io, TIDE__IO_READ);
    if (rc != 0)
        tide__transport_fatal(t, rc);
}

static size_t sock_write_buffer_size(const tide_transport_t *t) { return as_csock(t)->wq.len; }

/* A getsockname()/getpeername() result, from the kernel: truncated to *len, the full
 * length reported. */
static int kernel_addr(int (*get)(int, struct sockaddr *, socklen_t *), int fd,
                       struct sockaddr *addr, socklen_t *len) {
    return get(fd, addr, len) < 0 ? TIDE_ENOTCONN : 0;
}

static int sock_peername(const tide_transport_t *t, struct sockaddr *addr, socklen_t *len) {
    const sock *s = as_csock(t);
    if (s->peer_len == 0)
        return kernel_addr(tide__sys.getpeername, s->fd, addr, len);
    memcpy(addr, &s->peer, *len < s->peer_len ? *len : s->peer_len);
    *len = s->peer_len;
    return 0;
}

static int sock_sockname(const tide_transport_t *t, struct sockaddr *addr, socklen_t *len) {
    return kernel_addr(tide__sys.getsockname, as_csock(t)->fd, addr, len);
}

static int sock_fd(const tide_transport_t *t) { return as_csock(t)->fd; }

static void format_name(const tide_transport_t *t,
                        int (*get)(const tide_transport_t *, struct sockaddr *, socklen_t *),
                        char *buf, size_t size) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (get(t, (struct sockaddr *)&ss, &len) != 0 || len == 0)
        snprintf(buf, size, "?");
    else
        tide_format_address((const struct sockaddr *)&ss, len, buf, size);
}

static void sock_describe(const tide_transport_t *t, char *buf, size_t size) {
    char local[128], peer[128];
    format_name(t, sock_sockname, local, sizeof(local));
    format_name(t, sock_peername, peer, sizeof(peer));
    snprintf(buf, size, "%s transport fd %d %s -> %s", t->ops->kind, as_csock(t)->fd, local,
             peer);
}

static void sock_release(tide_transport_t *t) {
    sock *s = as_sock(t);
    tide__io_stop(&s->io, TIDE__IO_READ | TIDE__IO_WRITE);
    tide__sys.close(s->fd);
    ring_free(&s->wq);
    free(s);
}

/* clang-format off */
#define SOCK_OPS(name)                                   \
    {                                                    \
        .kind = name,                                    \
        .write = sock_write,                             \
        .write_eof = sock_write_eof,                     \
        .close = sock_close,                             \
        .abort = sock_abort,                             \
        .pause_reading = sock_pause_reading,             \
        .resume_reading = sock_resume_reading,           \
        .get_write_buffer_size = sock_write_buffer_size, \
        .get_peername = sock_peername,                   \
        .get_sockname = sock_sockname,                   \
        .get_fd = sock_fd,                               \
        .describe = sock_describe,                       \
        .release = sock_release,                         \
    }
/* clang-format on */

static const tide__transport_ops tcp_ops = SOCK_OPS("tcp");
static const tide__transport_ops unix_ops = SOCK_OPS("unix");

int tide__socket_transport_new(tide_loop_t *loop, int fd, tide_protocol_t *protocol,
                               tide_transport_t **out) {
    sock *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return TIDE_ENOMEM;
    s->fd = fd;
    struct sockaddr_storage local;
    socklen_t local_len = sizeof(local);
    if (tide__sys.getsockname(fd, (struct sockaddr *)&local, &local_len) < 0) {
        int err = tide_err_from_errno(errno);
        free(s);
        return err;
    }
    int family = local.ss_family;
    s->peer_len = sizeof(s->peer);
    if (family == AF_UNIX ||
        tide__sys.getpeername(fd, &s->peer.sa, &s->peer_len) < 0 || s->peer_len > sizeof(s->peer))
        s->peer_len = 0;
    if (family == AF_INET || family == AF_INET6) {
        int on = 1;
        /* Best effort: a protocol that writes whole messages wants them sent now,
         * and a failure here leaves a working (if slower) connection. */
        (void)tide__sys.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    }

    tide__io_init(loop, &s->io, fd, on_io);
    tide__transport_init(&s->base, loop, family == AF_UNIX ? &unix_ops : &tcp_ops, protocol);
    *out = &s->base;
    return 0;
}
