/* Datagram endpoints: the transport (asyncio's _SelectorDatagramTransport) for UDP over
 * IPv4 and IPv6 and for Unix datagram sockets.
 *
 * Receiving: one readiness event reads up to RX_PER_EVENT datagrams. UDP endpoints use
 * recvmmsg into a per-endpoint batch of RX_SLOTS slots, each larger than the largest
 * UDP payload, allocated on the first read (pages the kernel never writes cost no
 * memory, so small datagrams touch one page per slot); Unix endpoints, whose datagrams
 * may be larger, read one at a time into the loop's 256 KiB scratch; buffered
 * protocols receive straight into their own memory. A datagram flagged MSG_TRUNC is
 * counted and reported to error_received, never delivered. Datagrams already read
 * when the protocol pauses reading wait in the batch and are delivered on resume.
 *
 * Sending: sendto tries the kernel at once when nothing is queued; a datagram it
 * cannot take now is copied and queued whole, and the queue is flushed with sendmmsg
 * when the socket is writable (or, after ENOBUFS, when a short timer fires: the socket
 * may stay writable while the device queue is full). Errors of the user's own sendto
 * are returned by it; errors of queued datagrams go to error_received. While a read
 * event delivers datagrams the endpoint is corked: what the protocol sends meanwhile
 * (a server's answers) is queued, up to the low-water mark, and leaves with one
 * sendmmsg after the batch, which is what makes a busy echo cost what a hand-written
 * recvmmsg/sendmmsg server costs.
 *
 * Reentrancy: every protocol callback may close, abort, pause or swap the protocol, so
 * the state is re-read after each one. The endpoint is freed only from its deferred
 * connection_lost, which runs from the loop's ready queue, never inside one of its own
 * callbacks. */
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "transports/transport_int.h"

#define RX_SLOTS 16
#define RX_SLOT_SIZE ((size_t)65536) /* > 65,527, the largest UDP payload over IPv6 */
#define RX_PER_EVENT 64
#define TX_BATCH 32
#define ENOBUFS_RETRY 0.002 /* seconds */
#define UDP4_MAX 65507
#define UDP6_MAX 65527

#define OP(p, name) TIDE_DATAGRAM_PROTOCOL_OP(p, name)

enum {
    D_MADE = 1u << 0,
    D_CLOSING = 1u << 1,
    D_ABORTED = 1u << 2,
    D_LOST = 1u << 3,
    D_READ_PAUSED = 1u << 4,
    D_WRITE_PAUSED = 1u << 5,
    D_CONNECTED = 1u << 6, /* connect()ed: sends carry no address */
    D_FIXED_PEER = 1u << 7 /* a remote address that sendto must match */
};

typedef struct addr_buf {
    struct sockaddr_storage ss;
    socklen_t len;
} addr_buf;

/* One queued datagram, its payload after it. */
typedef struct txq {
    struct txq *next;
    size_t len;
    socklen_t addrlen; /* 0: the connected peer */
    struct sockaddr_storage addr;
    unsigned char data[];
} txq;

/* The receive batch: datagrams [next, count) were read and not yet delivered. */
typedef struct rx_batch {
    unsigned char *mem; /* RX_SLOTS * RX_SLOT_SIZE, page-aligned */
    struct mmsghdr msgs[RX_SLOTS];
    struct iovec iov[RX_SLOTS];
    struct sockaddr_storage names[RX_SLOTS];
    unsigned next, count;
    /* Answers whose payload lies in this batch's memory (an echo), borrowed until the
     * batch's sendmmsg: no copy, no allocation. */
    struct cork {
        const void *data;
        size_t len;
        socklen_t alen; /* 0: the connected peer */
        struct sockaddr_storage addr;
    } cork[RX_SLOTS];
    unsigned ncork;
} rx_batch;

struct tide_datagram {
    tide_loop_t *loop;
    tide_datagram_protocol_t *protocol;
    tide__resource resource;
    unsigned state;
    int fd;
    int family;
    int lost_status;
    size_t max_dgram;
    size_t high_water, low_water, max_buffer;
    tide__io io;         /* read: wants_read; write: a queue waits for room */
    tide__call deferred; /* connection_made, then connection_lost */
    tide__call rx_call;  /* delivers a batch left over by pause_reading */
    tide__timer retry;   /* flush again after ENOBUFS */
    rx_batch *rx;
    txq *head, *tail;
    size_t queued_bytes, queued_count;
    addr_buf peer;
    char *unix_path; /* the file we bound, removed at the end if still ours */
    dev_t unix_dev;
    ino_t unix_ino;
    tide_datagram_stats_t stats;
    tide__queue drains; /* tide__dgram_drain: tasks in sendto_await */
    bool corked;        /* delivering a batch: answers wait for one sendmmsg */
    /* Another kind than a socket (the memory pair): its ops, its data, its name. */
    const tide__dgram_kind *kind;
    void *kind_data;
    addr_buf local;
    void (*made_cb)(tide_datagram_t *ep, void *arg);
    void *made_arg;
};

static bool wants_read(const tide_datagram_t *ep) {
    return (ep->state & (D_MADE | D_READ_PAUSED | D_CLOSING)) == D_MADE;
}

/* ---- lifetime --------------------------------------------------------------------- */

static void describe(const tide__resource *res, char *buf, size_t size) {
    const tide_datagram_t *ep = TIDE__QUEUE_DATA(res, tide_datagram_t, resource);
    char local[128] = "?";
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (tide__sys.getsockname(ep->fd, (struct sockaddr *)&ss, &len) == 0)
        tide_format_address((struct sockaddr *)&ss, len, local, sizeof(local));
    snprintf(buf, size, "datagram endpoint fd %d %s (%zu queued)", ep->fd, local, ep->queued_count);
}

static void queue_free(tide_datagram_t *ep) {
    while (ep->head) {
        txq *q = ep->head;
        ep->head = q->next;
        free(q);
    }
    ep->tail = NULL;
    ep->queued_bytes = ep->queued_count = 0;
}

static void stop_io(tide_datagram_t *ep) {
    tide__io_stop(&ep->io, TIDE__IO_READ | TIDE__IO_WRITE);
    tide__timer_stop(&ep->retry);
    tide__loop_undefer(&ep->rx_call);
    if (ep->rx)
        ep->rx->next = ep->rx->count = ep->rx->ncork = 0;
}

static bool cork_pending(const tide_datagram_t *ep) { return ep->rx && ep->rx->ncork > 0; }

static void release(tide_datagram_t *ep) {
    stop_io(ep);
    queue_free(ep);
    if (ep->kind)
        ep->kind->release(ep);
    else
        tide__sys.close(ep->fd);
    struct stat st;
    if (ep->unix_path && stat(ep->unix_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
        st.st_dev == ep->unix_dev && st.st_ino == ep->unix_ino)
        unlink(ep->unix_path);
    free(ep->unix_path);
    if (ep->rx)
        free(ep->rx->mem);
    free(ep->rx);
    free(ep);
}

static void fatal(tide_datagram_t *ep, int err);

/* The loop could not watch the socket (epoll_ctl failed): the endpoint would stall, so
 * it ends with that error instead. */
static void watch(tide_datagram_t *ep, unsigned events) {
    int rc = tide__io_start(&ep->io, events);
    if (rc != 0)
        fatal(ep, rc);
}

/* Watching for input starts (connection_made returned, or resume_reading). */
static void start_reading(tide_datagram_t *ep) {
    if (ep->kind)
        ep->kind->start_reading(ep);
    else
        watch(ep, TIDE__IO_READ);
}

static void run_deferred(tide__call *call) {
    tide_datagram_t *ep = TIDE__QUEUE_DATA(call, tide_datagram_t, deferred);
    if (!(ep->state & D_MADE)) {
        ep->state |= D_MADE;
        void (*made)(tide_datagram_protocol_t *, tide_datagram_t *) =
            OP(ep->protocol, connection_made);
        if (made)
            made(ep->protocol, ep);
        /* Reading starts only now, and not at all if the protocol paused it. */
        if (wants_read(ep))
            start_reading(ep);
        void (*cb)(tide_datagram_t *, void *) = ep->made_cb;
        ep->made_cb = NULL;
        if (cb)
            cb(ep, ep->made_arg);
        if (ep->state & D_LOST)
            tide__loop_defer(ep->loop, &ep->deferred);
        return;
    }
    if (!(ep->state & D_LOST))
        return;
    void (*lost)(tide_datagram_protocol_t *, int) = OP(ep->protocol, connection_lost);
    if (lost)
        lost(ep->protocol, ep->lost_status);
    tide__loop_unregister(ep->loop, &ep->resource);
    release(ep);
}

static void wake_drains(tide_datagram_t *ep, int status) {
    while (!tide__queue_empty(&ep->drains)) {
        tide__queue *n = tide__queue_head(&ep->drains);
        tide__queue_remove(n);
        tide__task_wake(&TIDE__QUEUE_DATA(n, tide__dgram_drain, node)->w, status);
    }
}

bool tide__datagram_write_paused(const tide_datagram_t *ep) {
    return (ep->state & D_WRITE_PAUSED) != 0;
}

void tide__datagram_drain_add(tide_datagram_t *ep, tide__dgram_drain *d) {
    tide__queue_insert_tail(&ep->drains, &d->node);
}

static void schedule_lost(tide_datagram_t *ep, int status) {
    if (ep->state & D_LOST)
        return;
    wake_drains(ep, TIDE_ECLOSED);
    ep->state |= D_LOST | D_CLOSING;
    ep->lost_status = status;
    tide__loop_defer(ep->loop, &ep->deferred);
}

/* The socket itself failed: nothing more can be sent or received. */
static void fatal(tide_datagram_t *ep, int err) {
    if (ep->state & D_LOST)
        return;
    ep->state |= D_CLOSING | D_ABORTED;
    stop_io(ep);
    queue_free(ep);
    schedule_lost(ep, err);
    tide__log(ep->loop, TIDE_LOG_DEBUG, "datagram endpoint failed: %s", tide_strerror(err));
}

/* recv/send errors that mean the descriptor is unusable, as opposed to a network
 * condition reported for one datagram. */
static bool is_fatal(int err) {
    return err == EBADF || err == ENOTSOCK || err == EFAULT || err == EINVAL || err == ENOMEM;
}

static void report(tide_datagram_t *ep, int err) {
    void (*cb)(tide_datagram_protocol_t *, int) = OP(ep->protocol, error_received);
    if (cb)
        cb(ep->protocol, err);
}

/* ---- receiving --------------------------------------------------------------------- */

static bool is_buffered(const tide_datagram_t *ep) { return OP(ep->protocol, get_buffer) != NULL; }

static void truncated(tide_datagram_t *ep) {
    ep->stats.truncated++;
    report(ep, TIDE_EDGRAM_TRUNCATED);
}

/* The buffered protocol's memory for the next datagram, or NULL after failing the
 * endpoint (no memory) or when get_buffer itself paused or closed it. */
static void *protocol_buffer(tide_datagram_t *ep, size_t *room) {
    *room = 0;
    void *buf = ep->protocol->ops->get_buffer(ep->protocol, room);
    if (buf == NULL || *room == 0) {
        tide__log(ep->loop, TIDE_LOG_ERROR, "datagram get_buffer returned no memory");
        fatal(ep, TIDE_ENOBUFS);
        return NULL;
    }
    return wants_read(ep) ? buf : NULL;
}

/* nbytes of one whole datagram are at the start of the buffered protocol's memory. */
static void updated(tide_datagram_t *ep, size_t nbytes, const struct sockaddr *addr,
                    socklen_t alen) {
    ep->stats.received++;
    void (*cb)(tide_datagram_protocol_t *, size_t, const struct sockaddr *, socklen_t) =
        OP(ep->protocol, datagram_updated);
    if (cb)
        cb(ep->protocol, nbytes, addr, alen);
}

/* Gives one datagram read into tide's memory (the batch, the scratch, a memory pair's
 * inbox) to the protocol; a protocol swapped to a buffered one meanwhile gets a copy
 * in its own. Returns false when the datagram was not taken: get_buffer paused or
 * ended reading first (the caller keeps it for later, or drops it when closing). */
static bool deliver(tide_datagram_t *ep, const unsigned char *data, size_t len, bool trunc,
                    const struct sockaddr *addr, socklen_t alen) {
    if (trunc) {
        truncated(ep);
        return true;
    }
    if (is_buffered(ep)) {
        size_t room;
        void *buf = protocol_buffer(ep, &room);
        if (buf == NULL)
            return false; /* get_buffer paused or ended reading: keep the datagram */
        if (room < len) {
            truncated(ep);
            return true;
        }
        memcpy(buf, data, len);
        updated(ep, len, addr, alen);
        return true;
    }
    ep->stats.received++;
    void (*received)(tide_datagram_protocol_t *, const void *, size_t, const struct sockaddr *,
                     socklen_t) = OP(ep->protocol, datagram_received);
    if (received)
        received(ep->protocol, data, len, addr, alen);
    return true;
}

/* Delivers what the batch still holds while the protocol wants it. */
static void drain_batch(tide_datagram_t *ep) {
    rx_batch *rx = ep->rx;
    while (rx->next < rx->count && wants_read(ep)) {
        unsigned i = rx->next;
        struct mmsghdr *m = &rx->msgs[i];
        if (!deliver(ep, rx->mem + (size_t)i * RX_SLOT_SIZE, m->msg_len,
                     (m->msg_hdr.msg_flags & MSG_TRUNC) != 0, (struct sockaddr *)&rx->names[i],
                     m->msg_hdr.msg_namelen))
            break;
        /* Only now: a callback that paused reading leaves the rest for resume. */
        if (rx->count > 0)
            rx->next = i + 1;
    }
}

/* A sender without a name (an unnamed Unix socket; the kernel then reports length
 * 0) is passed on as a bare family, as getpeername reports it. */
static void name_or_family(const tide_datagram_t *ep, struct sockaddr_storage *ss, socklen_t *len) {
    if (*len == 0) {
        ss->ss_family = (sa_family_t)ep->family;
        *len = sizeof(sa_family_t);
    }
}

static int batch_alloc(tide_datagram_t *ep) {
    rx_batch *rx = calloc(1, sizeof(*rx));
    if (rx == NULL)
        return TIDE_ENOMEM;
    rx->mem = aligned_alloc(4096, RX_SLOTS * RX_SLOT_SIZE);
    if (rx->mem == NULL) {
        free(rx);
        return TIDE_ENOMEM;
    }
    ep->rx = rx;
    return 0;
}

/* One recvmmsg. Returns the number of datagrams read (0: none waiting) or a negative
 * code; per-datagram errors (ICMP) are reported and count as none read. */
static int read_batch(tide_datagram_t *ep, unsigned want) {
    rx_batch *rx = ep->rx;
    for (unsigned i = 0; i < want; i++) {
        rx->iov[i].iov_base = rx->mem + (size_t)i * RX_SLOT_SIZE;
        rx->iov[i].iov_len = RX_SLOT_SIZE;
        memset(&rx->msgs[i].msg_hdr, 0, sizeof(rx->msgs[i].msg_hdr));
        rx->msgs[i].msg_hdr.msg_iov = &rx->iov[i];
        rx->msgs[i].msg_hdr.msg_iovlen = 1;
        rx->msgs[i].msg_hdr.msg_name = &rx->names[i];
        rx->msgs[i].msg_hdr.msg_namelen = sizeof(rx->names[i]);
    }
    int n;
    do
        n = tide__sys.recvmmsg(ep->fd, rx->msgs, want, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    for (int i = 0; i < n; i++)
        name_or_family(ep, &rx->names[i], &rx->msgs[i].msg_hdr.msg_namelen);
    rx->next = 0;
    rx->count = (unsigned)n;
    return n;
}

/* One recvmsg into buf. Returns the datagram's length (*trunc set when it did not
 * fit), or a negative errno value. */
static ssize_t read_one(tide_datagram_t *ep, void *buf, size_t size, struct sockaddr_storage *from,
                        socklen_t *fromlen, bool *trunc) {
    struct iovec iov = {buf, size};
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_name = from;
    msg.msg_namelen = sizeof(*from);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    ssize_t n;
    do
        n = tide__sys.recvmsg(ep->fd, &msg, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    *fromlen = msg.msg_namelen;
    name_or_family(ep, from, fromlen);
    *trunc = (msg.msg_flags & MSG_TRUNC) != 0;
    return n;
}

/* A failed read: false when reading should stop for this event. */
static bool read_failed(tide_datagram_t *ep, int neg_errno) {
    int e = -neg_errno;
    if (e == EAGAIN || e == EWOULDBLOCK)
        return false;
    if (is_fatal(e)) {
        fatal(ep, tide_err_from_errno(e));
        return false;
    }
    /* An ICMP error queued on the socket (connection refused, unreachable): not fatal. */
    report(ep, tide_err_from_errno(e));
    return true;
}

static void uncork(tide_datagram_t *ep);

static void read_events(tide_datagram_t *ep) {
    int budget = RX_PER_EVENT;
    /* Datagrams read before a pause come first, and a new batch must not overwrite them. */
    if (ep->rx && ep->rx->next < ep->rx->count) {
        drain_batch(ep);
        if (ep->rx->next < ep->rx->count)
            return;
    }
    while (budget > 0 && wants_read(ep)) {
        bool buffered = is_buffered(ep);
        if (!buffered && ep->family != AF_UNIX) {
            if (ep->rx == NULL && batch_alloc(ep) < 0) {
                fatal(ep, TIDE_ENOMEM);
                return;
            }
            unsigned want = budget < RX_SLOTS ? (unsigned)budget : RX_SLOTS;
            int n = read_batch(ep, want);
            if (n < 0) {
                budget--;
                if (!read_failed(ep, n))
                    return;
                continue;
            }
            budget -= n;
            drain_batch(ep);
            /* Before the next recvmmsg reuses the memory the answers borrow. */
            uncork(ep);
            /* A short batch means the socket is empty: do not ask again for nothing. */
            if ((unsigned)n < want)
                return;
            continue;
        }
        /* One datagram: into the buffered protocol's memory, or the loop's scratch. */
        size_t size = 0;
        unsigned char *buf =
            buffered ? protocol_buffer(ep, &size) : tide__loop_scratch(ep->loop, &size);
        if (buf == NULL) {
            if (!buffered)
                fatal(ep, TIDE_ENOMEM);
            return;
        }
        struct sockaddr_storage from;
        socklen_t fromlen = 0;
        bool trunc = false;
        ssize_t n = read_one(ep, buf, size, &from, &fromlen, &trunc);
        budget--;
        if (n < 0) {
            if (!read_failed(ep, (int)n))
                return;
        } else if (buffered && !trunc) {
            updated(ep, (size_t)n, (struct sockaddr *)&from, fromlen);
        } else {
            deliver(ep, buf, (size_t)n, trunc, (struct sockaddr *)&from, fromlen);
        }
    }
}

static bool flush(tide_datagram_t *ep);
static void after_flush(tide_datagram_t *ep);

static void wait_writable(tide_datagram_t *ep);
static void back_off(tide_datagram_t *ep);

/* One message of a sendmmsg: len bytes at data, to addr (alen 0: the connected peer). */
static void fill_msg(struct mmsghdr *m, struct iovec *iov, const void *data, size_t len,
                     struct sockaddr_storage *addr, socklen_t alen) {
    iov->iov_base = (void *)data;
    iov->iov_len = len;
    memset(&m->msg_hdr, 0, sizeof(m->msg_hdr));
    m->msg_hdr.msg_iov = iov;
    m->msg_hdr.msg_iovlen = 1;
    if (alen) {
        m->msg_hdr.msg_name = addr;
        m->msg_hdr.msg_namelen = alen;
    }
}

/* What send_batch says when nothing went (besides 0: interrupted, try again). */
#define TX_WAIT (-1)    /* the kernel is full: wait until writable */
#define TX_BACKOFF (-2) /* ENOBUFS or ENOMEM: retry after a pause */
#define TX_DEAD (-3)    /* the socket failed: the endpoint is ending */
#define TX_DROP (-4)    /* the first datagram can never go: *err says why */

/* One sendmmsg of n prepared datagrams: how many went (counted as sent), or 0 or a
 * TX_ verdict. The caller drops the first datagram after TX_DROP and reports *err. */
static int send_batch(tide_datagram_t *ep, struct mmsghdr *msgs, unsigned n, int *err) {
    int r = tide__sys.sendmmsg(ep->fd, msgs, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (r > 0) {
        ep->stats.sent += (uint64_t)r;
        return r;
    }
    int e = r < 0 ? errno : EAGAIN;
    if (e == EINTR)
        return 0;
    if (e == EAGAIN || e == EWOULDBLOCK)
        return TX_WAIT;
    if (e == ENOBUFS || e == ENOMEM)
        return TX_BACKOFF;
    if (e == EBADF || e == ENOTSOCK || e == EFAULT) {
        fatal(ep, tide_err_from_errno(e));
        return TX_DEAD;
    }
    ep->stats.send_failed++;
    *err = tide_err_from_errno(e);
    return TX_DROP;
}

static int enqueue_at(tide_datagram_t *ep, const void *data, size_t len,
                      const struct sockaddr *addr, socklen_t addrlen, bool front);

/* Sends the borrowed answers with sendmmsg. What the kernel cannot take now is copied
 * to the front of the queue (the batch's memory is about to be reused). Returns false
 * when a callback ended the endpoint. */
static bool send_cork(tide_datagram_t *ep) {
    rx_batch *rx = ep->rx;
    struct mmsghdr msgs[RX_SLOTS];
    struct iovec iov[RX_SLOTS];
    unsigned i = 0, n = rx->ncork;
    int stop = 0;
    while (i < n) {
        unsigned k = 0;
        for (unsigned j = i; j < n; j++, k++) {
            struct cork *c = &rx->cork[j];
            fill_msg(&msgs[k], &iov[k], c->data, c->len, &c->addr, c->alen);
        }
        int err = 0, r = send_batch(ep, msgs, k, &err);
        if (r >= 0) {
            i += (unsigned)r;
            continue;
        }
        if (r == TX_DEAD)
            return false;
        if (r != TX_DROP) {
            stop = r;
            break;
        }
        /* As flush: this one can never go; say why and go on. The protocol's answers
         * from error_received are queued behind the rest of the cork. */
        i++;
        report(ep, err);
        if (ep->state & (D_ABORTED | D_LOST))
            return false;
    }
    /* Backwards, each to the front: the queue then starts with them in order. */
    for (unsigned j = n; j > i; j--) {
        struct cork *c = &rx->cork[j - 1];
        if (enqueue_at(ep, c->data, c->len, c->alen ? (struct sockaddr *)&c->addr : NULL, c->alen,
                       true) < 0) {
            fatal(ep, TIDE_ENOMEM); /* accepted datagrams cannot be dropped silently */
            return false;
        }
    }
    rx->ncork = 0;
    if (stop == TX_WAIT)
        wait_writable(ep);
    else if (stop == TX_BACKOFF)
        back_off(ep);
    return true;
}

/* After each delivered batch: what the protocol sent meanwhile (a server's answers)
 * goes out with one sendmmsg instead of one sendto each. */
static void uncork(tide_datagram_t *ep) {
    if (ep->state & (D_ABORTED | D_LOST))
        return;
    bool corked = ep->corked;
    ep->corked = false; /* sends from error_received take the ordinary way */
    bool alive = !cork_pending(ep) || send_cork(ep);
    ep->corked = corked;
    if (!alive)
        return;
    if (ep->head != NULL) {
        if (!(ep->io.events & TIDE__IO_WRITE) && !tide__timer_active(&ep->retry) && flush(ep))
            after_flush(ep);
    } else if (ep->state & D_CLOSING) {
        schedule_lost(ep, 0); /* a close that waited for the cork */
    }
}

static void on_readable(tide_datagram_t *ep) {
    if (!wants_read(ep)) {
        tide__io_stop(&ep->io, TIDE__IO_READ);
        return;
    }
    ep->corked = true;
    read_events(ep);
    uncork(ep);
    ep->corked = false;
}

/* resume_reading with datagrams left in the batch: deliver them from the loop. */
static void run_rx_call(tide__call *call) {
    tide_datagram_t *ep = TIDE__QUEUE_DATA(call, tide_datagram_t, rx_call);
    if (ep->rx) {
        ep->corked = true;
        drain_batch(ep);
        uncork(ep);
        ep->corked = false;
    }
}

/* ---- sending ---------------------------------------------------------------------- */

static void check_pause(tide_datagram_t *ep) {
    if (ep->state & (D_WRITE_PAUSED | D_LOST | D_ABORTED) || ep->queued_bytes <= ep->high_water)
        return;
    ep->state |= D_WRITE_PAUSED;
    void (*pause)(tide_datagram_protocol_t *) = OP(ep->protocol, pause_writing);
    if (pause)
        pause(ep->protocol);
}

static void check_resume(tide_datagram_t *ep) {
    if (!(ep->state & D_WRITE_PAUSED) || (ep->state & (D_LOST | D_ABORTED)) ||
        ep->queued_bytes > ep->low_water)
        return;
    ep->state &= ~(unsigned)D_WRITE_PAUSED;
    wake_drains(ep, 0);
    void (*resume)(tide_datagram_protocol_t *) = OP(ep->protocol, resume_writing);
    if (resume)
        resume(ep->protocol);
}

static txq *pop(tide_datagram_t *ep) {
    txq *q = ep->head;
    ep->head = q->next;
    if (ep->head == NULL)
        ep->tail = NULL;
    ep->queued_bytes -= q->len;
    ep->queued_count--;
    return q;
}

static void retry_fired(tide__timer *timer);

/* The kernel said ENOBUFS: its device queue is full while the socket may well stay
 * writable, so wait a little instead of spinning on writability. */
static void back_off(tide_datagram_t *ep) {
    tide__io_stop(&ep->io, TIDE__IO_WRITE);
    if (tide__timer_start(&ep->retry, ENOBUFS_RETRY) < 0)
        watch(ep, TIDE__IO_WRITE); /* no timer: poll writability instead */
}

/* EAGAIN: wait until the kernel can take more. An unconnected Unix socket polls
 * writable even when its receiver's queue is full, so it backs off instead. */
static void wait_writable(tide_datagram_t *ep) {
    if (ep->kind)
        return; /* the kind calls tide__datagram_writable when there is room */
    if (ep->family == AF_UNIX && !(ep->state & D_CONNECTED))
        back_off(ep);
    else
        watch(ep, TIDE__IO_WRITE);
}

/* Sends the queue with sendmmsg until it is empty or the kernel pushes back. Returns
 * false when a callback ended the endpoint (nothing may be touched after). */
static bool flush(tide_datagram_t *ep) {
    struct mmsghdr msgs[TX_BATCH];
    struct iovec iov[TX_BATCH];
    while (ep->head && ep->kind) {
        int r = ep->kind->send(ep, ep->head->data, ep->head->len);
        if (r == TIDE_EAGAIN)
            return true; /* the kind calls tide__datagram_writable when there is room */
        free(pop(ep));
        if (r == 0) {
            ep->stats.sent++;
            continue;
        }
        ep->stats.send_failed++;
        report(ep, r);
        if (ep->state & (D_ABORTED | D_LOST))
            return false;
    }
    while (ep->head) {
        unsigned n = 0;
        for (txq *q = ep->head; q && n < TX_BATCH; q = q->next, n++)
            fill_msg(&msgs[n], &iov[n], q->data, q->len, &q->addr, q->addrlen);
        int err = 0, r = send_batch(ep, msgs, n, &err);
        for (int i = 0; i < r; i++)
            free(pop(ep));
        if (r >= 0)
            continue;
        if (r == TX_WAIT) {
            wait_writable(ep);
            return true;
        }
        if (r == TX_BACKOFF) {
            back_off(ep);
            return true;
        }
        if (r == TX_DEAD)
            return false;
        /* This datagram can never go (EMSGSIZE, EACCES, an ICMP error pending): drop
         * it, say why, and go on with the rest. */
        free(pop(ep));
        report(ep, err);
        if (ep->state & (D_ABORTED | D_LOST))
            return false;
    }
    return true;
}

/* After a flush: resume_writing, and the end of a graceful close. */
static void after_flush(tide_datagram_t *ep) {
    check_resume(ep);
    if (ep->state & (D_ABORTED | D_LOST))
        return;
    if (ep->head == NULL) {
        tide__io_stop(&ep->io, TIDE__IO_WRITE);
        tide__timer_stop(&ep->retry);
        if (ep->state & D_CLOSING)
            schedule_lost(ep, 0);
    }
}

/* The endpoint stays allocated through both halves: it is freed only from a deferred
 * call, after connection_lost. */
static void on_io(tide__io *io, unsigned events) {
    tide_datagram_t *ep = TIDE_CONTAINER_OF(io, tide_datagram_t, io);
    if (events & TIDE__IO_READ)
        on_readable(ep);
    if ((events & TIDE__IO_WRITE) && (ep->io.events & TIDE__IO_WRITE) && flush(ep))
        after_flush(ep);
}

static void retry_fired(tide__timer *timer) {
    tide_datagram_t *ep = TIDE_CONTAINER_OF(timer, tide_datagram_t, retry);
    if (flush(ep))
        after_flush(ep);
}

static int enqueue_at(tide_datagram_t *ep, const void *data, size_t len,
                      const struct sockaddr *addr, socklen_t addrlen, bool front) {
    txq *q = malloc(sizeof(*q) + len);
    if (q == NULL)
        return TIDE_ENOMEM;
    q->next = NULL;
    q->len = len;
    q->addrlen = addr ? addrlen : 0;
    if (addr)
        memcpy(&q->addr, addr, addrlen);
    if (len)
        memcpy(q->data, data, len);
    if (front) {
        q->next = ep->head;
        ep->head = q;
        if (ep->tail == NULL)
            ep->tail = q;
    } else {
        if (ep->tail)
            ep->tail->next = q;
        else
            ep->head = q;
        ep->tail = q;
    }
    ep->queued_bytes += len;
    ep->queued_count++;
    return 0;
}

static int enqueue(tide_datagram_t *ep, const void *data, size_t len, const struct sockaddr *addr,
                   socklen_t addrlen) {
    return enqueue_at(ep, data, len, addr, addrlen, false);
}

/* True when [data, data + len) lies in the receive batch's memory. */
static bool in_batch(const tide_datagram_t *ep, const void *data, size_t len) {
    if (ep->rx == NULL || len == 0)
        return false;
    uintptr_t p = (uintptr_t)data, lo = (uintptr_t)ep->rx->mem;
    return p >= lo && p - lo <= RX_SLOTS * RX_SLOT_SIZE - len;
}

static bool same_addr(const addr_buf *a, const struct sockaddr *addr, socklen_t len) {
    return a->len == len && memcmp(&a->ss, addr, len) == 0;
}

int tide_datagram_sendto(tide_datagram_t *ep, const void *data, size_t len,
                         const struct sockaddr *addr, socklen_t addrlen) {
    if (ep == NULL || (data == NULL && len > 0) ||
        (addr != NULL && (addrlen < (socklen_t)sizeof(sa_family_t) ||
                          addrlen > (socklen_t)sizeof(struct sockaddr_storage))))
        return TIDE_EINVAL;
    if (ep->state & D_CLOSING)
        return TIDE_ECLOSED;
    if (len > ep->max_dgram)
        return TIDE_EMSGSIZE;
    if (ep->state & D_FIXED_PEER) {
        if (addr != NULL && !same_addr(&ep->peer, addr, addrlen))
            return TIDE_EISCONN;
        /* Connected: the kernel knows the peer. Broadcast endpoints are not connected
         * (asyncio's rule), so the fixed address goes with every datagram. */
        if (ep->state & D_CONNECTED) {
            addr = NULL;
            addrlen = 0;
        } else {
            addr = (const struct sockaddr *)&ep->peer.ss;
            addrlen = ep->peer.len;
        }
    } else if (addr == NULL) {
        return TIDE_ENOTCONN;
    }
    /* Sent from datagram_received: an answer in the batch's own memory is borrowed
     * for the batch's sendmmsg; another is copied into the queue, which that sendmmsg
     * flushes too, as long as it stays under the low-water mark (so that corking never
     * pauses writing). Order is kept: borrowed answers only while nothing is queued. */
    if (ep->corked) {
        rx_batch *rx = ep->rx;
        if (ep->head == NULL && rx && rx->ncork < RX_SLOTS && in_batch(ep, data, len)) {
            struct cork *c = &rx->cork[rx->ncork++];
            c->data = data;
            c->len = len;
            c->alen = addr ? addrlen : 0;
            if (addr)
                memcpy(&c->addr, addr, addrlen);
            return 0;
        }
        if (ep->queued_bytes + len <= ep->low_water &&
            (ep->max_buffer == 0 || ep->queued_bytes + len <= ep->max_buffer))
            return enqueue(ep, data, len, addr, addrlen);
    }
    if (ep->head == NULL && !cork_pending(ep)) {
        ssize_t r;
        int e;
        if (ep->kind) {
            r = ep->kind->send(ep, data, len);
            e = r == TIDE_EAGAIN ? EAGAIN : (int)-r;
        } else {
            do
                r = tide__sys.sendto(ep->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT, addr, addrlen);
            while (r < 0 && errno == EINTR);
            e = errno;
        }
        if (TIDE__LIKELY(r >= 0)) {
            ep->stats.sent++;
            return 0;
        }
        if (e != EAGAIN && e != EWOULDBLOCK && e != ENOBUFS)
            return tide_err_from_errno(e);
        if (ep->max_buffer != 0 && len > ep->max_buffer)
            return TIDE_ENOBUFS;
        int rc = enqueue(ep, data, len, addr, addrlen);
        if (rc < 0)
            return rc;
        if (e == ENOBUFS)
            back_off(ep);
        else
            wait_writable(ep);
    } else {
        if (ep->max_buffer != 0 && ep->queued_bytes + len > ep->max_buffer)
            return TIDE_ENOBUFS;
        int rc = enqueue(ep, data, len, addr, addrlen);
        if (rc < 0)
            return rc;
    }
    check_pause(ep);
    return 0;
}

/* ---- the other public calls -------------------------------------------------------- */

void tide_datagram_close(tide_datagram_t *ep) {
    if (ep == NULL || (ep->state & D_CLOSING))
        return;
    ep->state |= D_CLOSING;
    tide__io_stop(&ep->io, TIDE__IO_READ);
    tide__loop_undefer(&ep->rx_call);
    /* Answers corked in a batch still go out: uncork ends the close then. */
    if (ep->head == NULL && !cork_pending(ep))
        schedule_lost(ep, 0);
}

void tide_datagram_abort(tide_datagram_t *ep) {
    if (ep == NULL || (ep->state & D_LOST))
        return;
    ep->state |= D_CLOSING | D_ABORTED;
    stop_io(ep);
    queue_free(ep);
    schedule_lost(ep, 0);
}

bool tide_datagram_is_closing(const tide_datagram_t *ep) {
    return ep != NULL && (ep->state & D_CLOSING) != 0;
}

void tide_datagram_pause_reading(tide_datagram_t *ep) {
    if (ep == NULL || (ep->state & (D_CLOSING | D_READ_PAUSED)))
        return;
    ep->state |= D_READ_PAUSED;
    tide__io_stop(&ep->io, TIDE__IO_READ);
    tide__loop_undefer(&ep->rx_call);
}

void tide_datagram_resume_reading(tide_datagram_t *ep) {
    if (ep == NULL || (ep->state & D_CLOSING) || !(ep->state & D_READ_PAUSED))
        return;
    ep->state &= ~(unsigned)D_READ_PAUSED;
    if (!(ep->state & D_MADE))
        return;
    start_reading(ep);
    if (ep->rx && ep->rx->next < ep->rx->count)
        tide__loop_defer(ep->loop, &ep->rx_call);
}

size_t tide_datagram_get_write_buffer_size(const tide_datagram_t *ep) {
    return ep ? ep->queued_bytes : 0;
}

int tide_datagram_set_write_buffer_limits(tide_datagram_t *ep, long high, long low) {
    if (ep == NULL)
        return TIDE_EINVAL;
    int rc = tide__watermarks(high, low, &ep->high_water, &ep->low_water);
    if (rc < 0)
        return rc;
    check_pause(ep); /* as asyncio: pause may fire here, resume never does */
    return 0;
}

void tide_datagram_get_write_buffer_limits(const tide_datagram_t *ep, size_t *low, size_t *high) {
    if (low)
        *low = ep->low_water;
    if (high)
        *high = ep->high_water;
}

void tide_datagram_set_max_write_buffer_size(tide_datagram_t *ep, size_t cap) {
    if (ep)
        ep->max_buffer = cap;
}

int tide_datagram_get_sockname(const tide_datagram_t *ep, struct sockaddr *addr, socklen_t *len) {
    if (ep == NULL || addr == NULL || len == NULL)
        return TIDE_EINVAL;
    if (ep->kind) {
        memcpy(addr, &ep->local.ss, *len < ep->local.len ? *len : ep->local.len);
        *len = ep->local.len;
        return 0;
    }
    return tide__sys.getsockname(ep->fd, addr, len) < 0 ? tide_err_from_errno(errno) : 0;
}

int tide_datagram_get_peername(const tide_datagram_t *ep, struct sockaddr *addr, socklen_t *len) {
    if (ep == NULL || addr == NULL || len == NULL)
        return TIDE_EINVAL;
    if (!(ep->state & D_FIXED_PEER))
        return TIDE_ENOTCONN;
    memcpy(addr, &ep->peer.ss, *len < ep->peer.len ? *len : ep->peer.len);
    *len = ep->peer.len;
    return 0;
}

int tide_datagram_get_fd(const tide_datagram_t *ep) {
    if (ep == NULL)
        return TIDE_EINVAL;
    return ep->kind ? TIDE_ENOTSOCK : ep->fd;
}

tide_loop_t *tide_datagram_get_loop(const tide_datagram_t *ep) { return ep ? ep->loop : NULL; }

tide_datagram_protocol_t *tide_datagram_get_protocol(const tide_datagram_t *ep) {
    return ep ? ep->protocol : NULL;
}

void tide_datagram_set_protocol(tide_datagram_t *ep, tide_datagram_protocol_t *p) {
    if (ep && p)
        ep->protocol = p;
}

void tide_datagram_get_stats(const tide_datagram_t *ep, tide_datagram_stats_t *stats) {
    if (stats)
        *stats = ep ? ep->stats : (tide_datagram_stats_t){0};
}

/* ---- other kinds (datagram_memory.c) ------------------------------------------------ */

void *tide__datagram_kind_data(const tide_datagram_t *ep) { return ep->kind_data; }

bool tide__datagram_reading(const tide_datagram_t *ep) { return wants_read(ep); }

bool tide__datagram_receive(tide_datagram_t *ep, const void *data, size_t len,
                            const struct sockaddr *from, socklen_t fromlen) {
    return wants_read(ep) && deliver(ep, data, len, false, from, fromlen);
}

void tide__datagram_writable(tide_datagram_t *ep) {
    if (!(ep->state & (D_ABORTED | D_LOST)) && flush(ep))
        after_flush(ep);
}

static void endpoint_init(tide_datagram_t *ep);

int tide__datagram_new_kind(tide_loop_t *loop, const tide__dgram_kind *kind, void *data,
                            const struct sockaddr *self, const struct sockaddr *peer, socklen_t len,
                            size_t max_dgram, tide_datagram_t **out) {
    /* endpoint_new asks the socket for its name: a kind has none, so it is made here. */
    tide_datagram_t *ep = calloc(1, sizeof(*ep));
    if (ep == NULL || len > sizeof(ep->local.ss)) {
        free(ep);
        return TIDE_ENOMEM;
    }
    ep->loop = loop;
    ep->fd = -1;
    ep->family = self->sa_family;
    ep->kind = kind;
    ep->kind_data = data;
    ep->max_dgram = max_dgram;
    ep->high_water = TIDE__DEFAULT_HIGH_WATER;
    ep->low_water = TIDE__DEFAULT_HIGH_WATER / 4;
    memcpy(&ep->local.ss, self, len);
    ep->local.len = len;
    memcpy(&ep->peer.ss, peer, len);
    ep->peer.len = len;
    ep->state |= D_FIXED_PEER | D_CONNECTED;
    endpoint_init(ep);
    *out = ep;
    return 0;
}

static void endpoint_discard(tide_datagram_t *ep);

void tide__datagram_discard(tide_datagram_t *ep) { endpoint_discard(ep); }

void tide__datagram_start(tide_datagram_t *ep, tide_datagram_protocol_t *protocol) {
    ep->protocol = protocol;
    tide__loop_defer(ep->loop, &ep->deferred);
}

/* ---- making endpoints -------------------------------------------------------------- */

/* The largest datagram the socket can ever send. */
static size_t max_datagram(int fd, int family) {
    if (family == AF_INET)
        return UDP4_MAX;
    if (family == AF_INET6)
        return UDP6_MAX;
    /* Unix: the kernel refuses a datagram above the send buffer (less its overhead),
     * which the socket's SO_SNDBUF tells. */
    int sndbuf = 0;
    socklen_t len = sizeof(sndbuf);
    if (tide__sys.getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) < 0 || sndbuf <= 64)
        return 65536;
    return (size_t)sndbuf - 32;
}

/* Wraps a non-blocking datagram socket; takes fd only on success. peer: the connected
 * or fixed remote address (len 0: none). */
static int endpoint_new(tide_loop_t *loop, int fd, const addr_buf *peer, bool connected,
                        tide_datagram_t **out) {
    tide_datagram_t *ep = calloc(1, sizeof(*ep));
    if (ep == NULL)
        return TIDE_ENOMEM;
    struct sockaddr_storage local;
    socklen_t local_len = sizeof(local);
    if (tide__sys.getsockname(fd, (struct sockaddr *)&local, &local_len) < 0) {
        int err = tide_err_from_errno(errno);
        free(ep);
        return err;
    }
    ep->loop = loop;
    ep->fd = fd;
    ep->family = local.ss_family;
    ep->max_dgram = max_datagram(fd, ep->family);
    ep->high_water = TIDE__DEFAULT_HIGH_WATER;
    ep->low_water = TIDE__DEFAULT_HIGH_WATER / 4;
    if (peer && peer->len > 0) {
        ep->peer = *peer;
        ep->state |= D_FIXED_PEER | (connected ? D_CONNECTED : 0);
    }
    endpoint_init(ep);
    *out = ep;
    return 0;
}

/* The watchers, calls and registration every kind of endpoint has. */
static void endpoint_init(tide_datagram_t *ep) {
    tide_loop_t *loop = ep->loop;
    tide__io_init(loop, &ep->io, ep->fd, on_io);
    tide__call_init(&ep->deferred, run_deferred);
    tide__call_init(&ep->rx_call, run_rx_call);
    tide__timer_init(loop, &ep->retry, retry_fired);
    tide__queue_init(&ep->resource.node);
    tide__queue_init(&ep->drains);
    tide__loop_register(loop, &ep->resource, describe);
}

/* Frees an endpoint whose protocol was never called (closes its descriptor). */
static void endpoint_discard(tide_datagram_t *ep) {
    tide__loop_unregister(ep->loop, &ep->resource);
    release(ep);
}

/* A creation in progress: a loop resource until its callback ran. */
typedef struct dreq {
    tide_loop_t *loop;
    tide__resource resource;
    tide_datagram_protocol_factory_cb factory;
    void *factory_arg;
    tide_datagram_created_cb cb;
    void *arg;
    tide_datagram_options_t opts; /* the strings below are our copies */
    char *local_host, *remote_host;
    tide__resolve *local_resolve, *remote_resolve;
    int resolves_pending;
    addr_buf *locals, *remotes;
    size_t nlocals, nremotes;
    int adopt_fd; /* from_fd: the caller's socket, else -1 */
    int status;
    tide__call call;
    tide_datagram_protocol_t *protocol;
} dreq;

static void dreq_describe(const tide__resource *res, char *buf, size_t size) {
    const dreq *r = TIDE__QUEUE_DATA(res, dreq, resource);
    snprintf(buf, size, "datagram endpoint request (local %s, remote %s)",
             r->local_host ? r->local_host : "-", r->remote_host ? r->remote_host : "-");
}

static void dreq_free(dreq *r) {
    tide__resolve_cancel(r->local_resolve);
    tide__resolve_cancel(r->remote_resolve);
    free(r->local_host);
    free(r->remote_host);
    free(r->locals);
    free(r->remotes);
    free(r);
}

static void complete_failed(tide__call *call) {
    dreq *r = TIDE__QUEUE_DATA(call, dreq, call);
    if (r->adopt_fd >= 0)
        tide__sys.close(r->adopt_fd);
    tide__loop_unregister(r->loop, &r->resource);
    r->cb(r->loop, r->status, NULL, NULL, r->arg);
    dreq_free(r);
}

static void fail(dreq *r, int status) {
    r->status = status;
    tide__call_init(&r->call, complete_failed);
    tide__loop_defer(r->loop, &r->call);
}

static void made(tide_datagram_t *ep, void *arg) {
    dreq *r = arg;
    tide__loop_unregister(r->loop, &r->resource);
    r->cb(r->loop, 0, ep, r->protocol, r->arg);
    dreq_free(r);
}

/* From a ready socket to a started endpoint: the endpoint exists before the factory
 * runs, so nothing can fail between the user making a protocol and tide taking it. */
static void hand_over(dreq *r, int fd, const addr_buf *peer, bool connected, const char *path) {
    tide_datagram_t *ep = NULL;
    int rc = endpoint_new(r->loop, fd, peer, connected, &ep);
    if (rc < 0) {
        tide__sys.close(fd);
        fail(r, rc);
        return;
    }
    struct stat st;
    if (path && path[0] != '@' && stat(path, &st) == 0 && (ep->unix_path = strdup(path))) {
        ep->unix_dev = st.st_dev;
        ep->unix_ino = st.st_ino;
    }
    tide_datagram_protocol_t *p = r->factory(r->factory_arg);
    if (p == NULL) {
        endpoint_discard(ep);
        fail(r, TIDE_ECONNABORTED);
        return;
    }
    ep->protocol = p;
    r->protocol = p;
    ep->made_cb = made;
    ep->made_arg = r;
    tide__loop_defer(r->loop, &ep->deferred);
}

static int errno_code(void) { return tide_err_from_errno(errno); }

/* Opens, configures, binds and connects one socket for a (local, remote) pair of one
 * family. Returns the descriptor or a negative code. */
static int open_socket(dreq *r, int family, const addr_buf *local, const addr_buf *remote) {
    int fd = tide__sys.socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno_code();
    int on = 1, rc = 0;
    if (family == AF_INET6) {
        int v6only = r->opts.dual_stack ? 0 : 1;
        if (tide__sys.setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) < 0)
            rc = errno_code();
    }
    if (rc == 0 && r->opts.reuse_port &&
        tide__sys.setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) < 0)
        rc = errno_code();
    if (rc == 0 && r->opts.allow_broadcast &&
        tide__sys.setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &on, sizeof(on)) < 0)
        rc = errno_code();
    if (rc == 0 && local) {
        if (family == AF_UNIX) {
            /* asyncio removes a stale socket file first; anything else is left alone. */
            const struct sockaddr_un *sun = (const struct sockaddr_un *)&local->ss;
            struct stat st;
            if (sun->sun_path[0] != '\0' && lstat(sun->sun_path, &st) == 0 && S_ISSOCK(st.st_mode))
                unlink(sun->sun_path);
        }
        if (tide__sys.bind(fd, (const struct sockaddr *)&local->ss, local->len) < 0)
            rc = errno_code();
    } else if (rc == 0 && family == AF_UNIX && remote) {
        /* Autobind: an abstract name of the kernel's choosing, so the peer can reply. */
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        if (tide__sys.bind(fd, (const struct sockaddr *)&sun, sizeof(sa_family_t)) < 0)
            rc = errno_code();
    }
    if (rc == 0 && remote && !r->opts.allow_broadcast &&
        tide__sys.connect(fd, (const struct sockaddr *)&remote->ss, remote->len) < 0)
        rc = errno_code();
    if (rc < 0) {
        tide__sys.close(fd);
        return rc;
    }
    return fd;
}

static const addr_buf *first_of(const addr_buf *v, size_t n, int family) {
    for (size_t i = 0; i < n; i++)
        if (v[i].ss.ss_family == family)
            return &v[i];
    return NULL;
}

/* Tries each family that satisfies both addresses, in resolver order (locals first),
 * as asyncio does; the first error is reported when every candidate fails. */
static void try_candidates(dreq *r) {
    bool want_local = r->locals != NULL, want_remote = r->remotes != NULL;
    int families[8];
    size_t nf = 0;
    if (!want_local && !want_remote) {
        families[nf++] = r->opts.family;
    } else {
        for (int pass = 0; pass < 2; pass++) {
            const addr_buf *v = pass == 0 ? r->locals : r->remotes;
            size_t n = pass == 0 ? r->nlocals : r->nremotes;
            for (size_t i = 0; i < n && nf < 8; i++) {
                int f = v[i].ss.ss_family;
                bool seen = false;
                for (size_t k = 0; k < nf; k++)
                    seen = seen || families[k] == f;
                if (!seen)
                    families[nf++] = f;
            }
        }
    }
    int first_error = 0;
    for (size_t k = 0; k < nf; k++) {
        int f = families[k];
        const addr_buf *local = want_local ? first_of(r->locals, r->nlocals, f) : NULL;
        const addr_buf *remote = want_remote ? first_of(r->remotes, r->nremotes, f) : NULL;
        if ((want_local && !local) || (want_remote && !remote))
            continue;
        int fd = open_socket(r, f, local, remote);
        if (fd >= 0) {
            const char *path = NULL;
            if (f == AF_UNIX && local)
                path = r->local_host;
            hand_over(r, fd, remote, remote && !r->opts.allow_broadcast, path);
            return;
        }
        if (first_error == 0)
            first_error = fd;
    }
    fail(r, first_error ? first_error : TIDE_EADDRNOTAVAIL);
}

static int take_addrs(struct addrinfo *list, addr_buf **out, size_t *count) {
    size_t n = 0;
    for (struct addrinfo *ai = list; ai; ai = ai->ai_next)
        n++;
    addr_buf *v = calloc(n ? n : 1, sizeof(*v));
    if (v == NULL)
        return TIDE_ENOMEM;
    size_t k = 0;
    for (struct addrinfo *ai = list; ai; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(struct sockaddr_storage))
            continue;
        memcpy(&v[k].ss, ai->ai_addr, ai->ai_addrlen);
        v[k++].len = ai->ai_addrlen;
    }
    *out = v;
    *count = k;
    return 0;
}

static void resolved(tide__resolve *res, int status, struct addrinfo *list, void *arg) {
    dreq *r = arg;
    bool local = res == r->local_resolve;
    if (local)
        r->local_resolve = NULL;
    else
        r->remote_resolve = NULL;
    r->resolves_pending--;
    if (status == 0) {
        status = local ? take_addrs(list, &r->locals, &r->nlocals)
                       : take_addrs(list, &r->remotes, &r->nremotes);
        freeaddrinfo(list);
    }
    if (status < 0) {
        /* The other lookup, if still running, must not call back into a failed request. */
        tide__resolve_cancel(r->local_resolve);
        tide__resolve_cancel(r->remote_resolve);
        r->local_resolve = r->remote_resolve = NULL;
        r->resolves_pending = 0;
        fail(r, status);
        return;
    }
    if (r->resolves_pending == 0)
        try_candidates(r);
}

static void start_now(tide__call *call) { try_candidates(TIDE__QUEUE_DATA(call, dreq, call)); }

static dreq *dreq_new(tide_loop_t *loop, tide_datagram_protocol_factory_cb factory,
                      void *factory_arg, tide_datagram_created_cb cb, void *arg) {
    dreq *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->loop = loop;
    r->factory = factory;
    r->factory_arg = factory_arg;
    r->cb = cb;
    r->arg = arg;
    r->adopt_fd = -1;
    tide__queue_init(&r->resource.node);
    tide__call_init(&r->call, start_now);
    return r;
}

static int unix_addr(const char *path, addr_buf **out, size_t *count) {
    addr_buf *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return TIDE_ENOMEM;
    int rc = tide__unix_address(path, (struct sockaddr_un *)&a->ss, &a->len);
    if (rc < 0) {
        free(a);
        return rc;
    }
    *out = a;
    *count = 1;
    return 0;
}

static int start_resolve(dreq *r, const char *host, uint16_t port, bool passive,
                         tide__resolve **slot) {
    char service[8];
    snprintf(service, sizeof(service), "%u", (unsigned)port);
    int rc = tide__resolve_start(r->loop, host, service, r->opts.family, SOCK_DGRAM,
                                 AI_NUMERICSERV | (passive ? AI_PASSIVE : 0), resolved, r, slot);
    if (rc == 0)
        r->resolves_pending++;
    return rc;
}

static int dup_opt(const char *s, char **out) {
    *out = NULL;
    if (s == NULL)
        return 0;
    *out = strdup(s);
    return *out ? 0 : TIDE_ENOMEM;
}

int tide_loop_create_datagram_endpoint(tide_loop_t *loop, tide_datagram_protocol_factory_cb factory,
                                       void *factory_arg, const tide_datagram_options_t *options,
                                       tide_datagram_created_cb cb, void *arg) {
    if (loop == NULL || factory == NULL || cb == NULL || options == NULL)
        return TIDE_EINVAL;
    const tide_datagram_options_t *o = options;
    int family = o->family;
    bool want_local = o->local_host != NULL || (family != AF_UNIX && o->local_port != 0);
    bool want_remote = o->remote_host != NULL;
    if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6 && family != AF_UNIX)
        return TIDE_EINVAL;
    if (!want_local && !want_remote && family == AF_UNSPEC)
        return TIDE_EINVAL; /* asyncio: "unexpected address family" */
    dreq *r = dreq_new(loop, factory, factory_arg, cb, arg);
    if (r == NULL)
        return TIDE_ENOMEM;
    r->opts = *o;
    int rc = dup_opt(o->local_host, &r->local_host);
    if (rc == 0)
        rc = dup_opt(o->remote_host, &r->remote_host);
    r->opts.local_host = r->local_host;
    r->opts.remote_host = r->remote_host;
    if (rc == 0 && family == AF_UNIX) {
        if (want_local)
            rc = unix_addr(r->local_host, &r->locals, &r->nlocals);
        if (rc == 0 && want_remote)
            rc = unix_addr(r->remote_host, &r->remotes, &r->nremotes);
        if (rc == 0)
            tide__loop_defer(loop, &r->call);
    } else if (rc == 0 && !want_local && !want_remote) {
        tide__loop_defer(loop, &r->call);
    } else if (rc == 0) {
        if (want_local)
            rc = start_resolve(r, r->local_host, o->local_port, true, &r->local_resolve);
        if (rc == 0 && want_remote)
            rc = start_resolve(r, r->remote_host, o->remote_port, false, &r->remote_resolve);
    }
    if (rc < 0) {
        tide__loop_undefer(&r->call);
        dreq_free(r);
        return rc;
    }
    tide__loop_register(loop, &r->resource, dreq_describe);
    return 0;
}

static void start_adopt(tide__call *call) {
    dreq *r = TIDE__QUEUE_DATA(call, dreq, call);
    int fd = r->adopt_fd;
    r->adopt_fd = -1;
    addr_buf peer = {.len = sizeof(peer.ss)};
    if (tide__sys.getpeername(fd, (struct sockaddr *)&peer.ss, &peer.len) < 0 ||
        peer.len > sizeof(peer.ss))
        peer.len = 0;
    hand_over(r, fd, &peer, true, NULL);
}

int tide_loop_create_datagram_endpoint_from_fd(tide_loop_t *loop, int fd,
                                               tide_datagram_protocol_factory_cb factory,
                                               void *factory_arg, tide_datagram_created_cb cb,
                                               void *arg) {
    if (loop == NULL || fd < 0 || factory == NULL || cb == NULL)
        return TIDE_EINVAL;
    int type = 0;
    socklen_t len = sizeof(type);
    if (tide__sys.getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
        return errno == ENOTSOCK ? TIDE_EINVAL : errno_code();
    if (type != SOCK_DGRAM)
        return TIDE_EINVAL;
    int rc = tide__fd_set_nonblocking(fd);
    if (rc < 0)
        return rc;
    dreq *r = dreq_new(loop, factory, factory_arg, cb, arg);
    if (r == NULL)
        return TIDE_ENOMEM;
    r->adopt_fd = fd;
    tide__call_init(&r->call, start_adopt);
    tide__loop_defer(loop, &r->call);
    tide__loop_register(loop, &r->resource, dreq_describe);
    return 0;
}
