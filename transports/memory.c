/* The in-memory transport pair (tide/testing.h): two transports of kind "memory" that
 * behave like the two ends of a connected stream socket, so that protocols can be
 * tested without a network.
 *
 * Model. Each side has an inbound buffer (bytes the peer wrote that this side has not
 * read yet: the "receive buffer") and an outbound queue (bytes this side wrote that
 * did not fit into the peer's inbound buffer: the transport's write queue). A write
 * moves bytes into the peer's inbound buffer at once, up to the writer's window, and
 * queues the rest. Nothing is ever delivered inside the writer's call: each side has
 * one deferred "pump" call that delivers one chunk per run (one "read" per readiness
 * event), moves its own queue into the peer's window when the peer consumed, and
 * completes write_eof and close once its queue is empty.
 *
 * Endings, as a socket would see them:
 * - write_eof / close: once the queue is flushed the peer gets eof_received after the
 *   bytes before it. Bytes written to a side that is closing are discarded (its
 *   "kernel" accepts them, nobody reads them).
 * - abort (and any fatal error): the queue is dropped and the peer is reset: it gets
 *   the bytes it already had, then connection_lost(TIDE_ECONNRESET), without
 *   eof_received (unless EOF had already been sent). This is what a socket RST looks
 *   like; a socket transport's abort usually shows the peer a plain EOF instead, so
 *   the in-memory pair is the stricter of the two.
 * - Writing to a peer whose close has finished (or that was reset) fails the writer
 *   with TIDE_EPIPE (or TIDE_ECONNRESET); a queue that can never drain for the same
 *   reason fails the same way.
 * - inject_error: both sides fail at once with the given code.
 *
 * Lifetime: both sides live in one allocation; each side frees its buffers in its own
 * release (after its connection_lost), and the pair is freed by the second release.
 * A side whose peer is gone never touches the peer's buffers again.
 *
 * Reentrancy: every entry point runs on the loop thread. Protocol callbacks are only
 * made from the pump (through the base), which reloads its state after each one; the
 * transport cannot be released while the pump runs, because release follows a
 * connection_lost that the base always defers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "transports/transport_int.h"

#define MEMORY_DEFAULT_WINDOW (256 * 1024)

typedef struct side side;
typedef struct pair pair;

struct side {
    tide_transport_t t; /* first: the base casts between the two */
    pair *pair;
    side *peer;
    tide__call pump;
    tide__buf in;  /* written by the peer, not yet delivered here */
    tide__buf out; /* written here, waiting for room in the peer's window */
    size_t window; /* most bytes of ours the peer's inbound buffer may hold */
    int id;        /* 0 or 1, for descriptions */
    /* Set once this side can no longer receive: TIDE_ECONNRESET after abort or a
     * fatal error, TIDE_EPIPE after a graceful end. The peer's writes fail with it. */
    int dead;
    bool gone;         /* released (dead is set too) */
    bool eof_wanted;   /* write_eof requested */
    bool close_wanted; /* ops->close called */
    bool end_sent;     /* the peer was given EOF or reset */
    bool lost_sent;    /* graceful close finished: tide__transport_lost called */
    bool rx_eof;       /* the peer's EOF follows the inbound bytes */
    bool rx_eof_done;  /* ... and was delivered */
    bool rx_reset;     /* the peer's reset follows the inbound bytes */
};

struct pair {
    side sides[2];
    int refs;
};

static const tide__transport_ops memory_ops;

static side *as_side(const tide_transport_t *t) { return (side *)(void *)t; }

/* ---- buffers ---------------------------------------------------------------------- */

/* Appends count bytes of the iovec array, starting `skip` bytes into it. The room
 * must have been reserved. */
static void append_iov(tide__buf *b, const tide_iovec_t *bufs, size_t n, size_t skip,
                       size_t count) {
    unsigned char *dst = tide__buf_end(b);
    for (size_t i = 0; i < n && count > 0; i++) {
        size_t len = bufs[i].len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        size_t take = len - skip;
        if (take > count)
            take = count;
        memcpy(dst, (const unsigned char *)bufs[i].base + skip, take);
        dst += take;
        count -= take;
        skip = 0;
    }
    b->len = (size_t)(dst - tide__buf_begin(b));
}

/* ---- the pump ----------------------------------------------------------------------- */

static void kick(side *s) {
    if (!s->gone && !s->dead)
        tide__loop_defer(s->t.loop, &s->pump);
}

/* The peer consumed: a writer with a queue may move it into the room freed. */
static void kick_writer(side *s) {
    if (s->out.len > 0)
        kick(s);
}

/* True while the peer's protocol may still read what we send. */
static bool peer_receives(const side *s) {
    const side *p = s->peer;
    return !p->gone && !p->dead && !tide__transport_closing(&p->t);
}

/* Bytes the peer's window still accepts from s. */
static size_t room(const side *s) {
    size_t used = s->peer->in.len;
    return s->window > used ? s->window - used : 0;
}

/* Tells the peer that nothing more follows: EOF (graceful) or a reset. */
static void send_end(side *s, bool reset) {
    side *p = s->peer;
    if (s->end_sent || p->gone || p->dead)
        return;
    s->end_sent = true;
    if (reset)
        p->rx_reset = true;
    else
        p->rx_eof = true;
    kick(p);
}

/* The queue is empty: complete a requested write_eof or close. */
static void finish_tx(side *s) {
    if (s->out.len != 0 || s->dead)
        return;
    if (s->eof_wanted || s->close_wanted)
        send_end(s, false);
    if (s->close_wanted && !s->lost_sent) {
        s->lost_sent = true;
        /* The peer stops counting on our buffers from here on. */
        s->dead = TIDE_EPIPE;
        tide__transport_lost(&s->t, 0);
    }
}

/* Moves queued bytes into the peer's window (or drops them when nobody will read them
 * there). Returns false when the transport failed. */
static bool flush(side *s) {
    side *p = s->peer;
    if (s->out.len == 0)
        return true;
    if (p->dead) {
        /* The queue can never drain: a socket would see EPIPE or a reset here. */
        tide__transport_fatal(&s->t, p->dead);
        return false;
    }
    if (tide__transport_closing(&p->t)) {
        tide__buf_consume(&s->out, s->out.len);
        return true;
    }
    size_t n = room(s);
    if (n > s->out.len)
        n = s->out.len;
    if (n == 0)
        return true;
    if (tide__buf_reserve(&p->in, n, 0, NULL) != 0) {
        tide__transport_fatal(&s->t, TIDE_ENOMEM);
        return false;
    }
    tide__buf_put(&p->in, tide__buf_begin(&s->out), n);
    tide__buf_consume(&s->out, n);
    kick(p);
    return true;
}

/* Delivers one chunk of inbound bytes, like one read() per readiness event. The bytes
 * are copied out and consumed before the protocol runs, so whatever it does to either
 * transport (write to us through the peer, close, abort) sees consistent buffers. */
static void deliver(side *s) {
    size_t n = s->in.len;
    if (n > TIDE__READ_MAX)
        n = TIDE__READ_MAX;
    if (tide__transport_is_buffered(&s->t)) {
        size_t len = 0;
        void *buf = tide__transport_get_buffer(&s->t, n, &len);
        if (buf == NULL)
            return; /* the base failed the transport */
        if (n > len)
            n = len;
        memcpy(buf, tide__buf_begin(&s->in), n);
        tide__buf_consume(&s->in, n);
        kick_writer(s->peer);
        tide__transport_buffer_updated(&s->t, n);
        return;
    }
    size_t size = 0;
    void *scratch = tide__loop_scratch(s->t.loop, &size);
    if (scratch == NULL) {
        tide__transport_fatal(&s->t, TIDE_ENOMEM);
        return;
    }
    if (n > size)
        n = size;
    memcpy(scratch, tide__buf_begin(&s->in), n);
    tide__buf_consume(&s->in, n);
    kick_writer(s->peer);
    tide__transport_data(&s->t, scratch, n);
}

static bool rx_pending(const side *s) {
    return s->in.len > 0 || (s->rx_eof && !s->rx_eof_done) || s->rx_reset;
}

static void pump_run(tide__call *call) {
    side *s = TIDE__QUEUE_DATA(call, side, pump);
    if (s->gone || s->dead)
        return;

    /* Send side: the peer consumed, the window grew, or the peer went away. */
    if (!flush(s))
        return;
    tide__transport_check_resume(&s->t);
    /* resume_writing may have written, closed or aborted: look again. */
    if (s->dead)
        return;
    finish_tx(s);
    if (s->dead)
        return;

    /* Receive side. */
    if (!tide__transport_wants_read(&s->t) || !rx_pending(s))
        return;
    if (s->in.len > 0) {
        deliver(s);
    } else if (s->rx_eof && !s->rx_eof_done) {
        s->rx_eof_done = true;
        tide__transport_eof(&s->t);
    } else {
        /* Reset after the bytes that preceded it, as tide promises. */
        tide__transport_fatal(&s->t, TIDE_ECONNRESET);
        return;
    }
    if (!s->gone && !s->dead && tide__transport_wants_read(&s->t) && rx_pending(s))
        kick(s);
}

/* ---- the transport ops ---------------------------------------------------------------- */

static int memory_write(tide_transport_t *t, const tide_iovec_t *bufs, size_t n, size_t total) {
    side *s = as_side(t);
    side *p = s->peer;
    if (p->dead) {
        /* Writing to a vanished peer: the socket would fail with EPIPE or a reset. */
        tide__transport_fatal(t, p->dead);
        return 0;
    }
    if (!peer_receives(s))
        return 0; /* accepted, and lost with the peer's unread input */

    size_t direct = 0;
    if (s->out.len == 0) {
        direct = room(s);
        if (direct > total)
            direct = total;
    }
    /* Reserve everything before copying anything, so ENOMEM accepts no byte. */
    if (direct > 0 && tide__buf_reserve(&p->in, direct, 0, NULL) != 0)
        return TIDE_ENOMEM;
    if (total > direct && tide__buf_reserve(&s->out, total - direct, 0, NULL) != 0)
        return TIDE_ENOMEM;
    if (direct > 0) {
        append_iov(&p->in, bufs, n, 0, direct);
        kick(p);
    }
    /* The base checks the high-water mark once this returns. */
    if (total > direct)
        append_iov(&s->out, bufs, n, direct, total - direct);
    return 0;
}

static int memory_write_eof(tide_transport_t *t) {
    side *s = as_side(t);
    s->eof_wanted = true;
    finish_tx(s);
    return 0;
}

static void memory_close(tide_transport_t *t) {
    side *s = as_side(t);
    s->close_wanted = true;
    /* Nobody will read what is left inbound. */
    tide__buf_consume(&s->in, s->in.len);
    s->rx_eof = s->rx_reset = false;
    if (s->out.len == 0)
        finish_tx(s);
    else
        kick(s); /* fails the close at once if the peer is already gone */
    /* A queue the peer holds for us is now dropped instead of waiting forever. */
    kick_writer(s->peer);
}

static void memory_abort(tide_transport_t *t) {
    side *s = as_side(t);
    if (s->dead && s->lost_sent) {
        /* A graceful close already finished and told the peer. */
        return;
    }
    tide__loop_undefer(&s->pump);
    tide__buf_consume(&s->in, s->in.len);
    tide__buf_consume(&s->out, s->out.len);
    s->rx_eof = s->rx_reset = false;
    /* Deferred through the peer's pump: a peer failing in the same call (as in
     * inject_error) keeps its own error. */
    send_end(s, true);
    s->dead = TIDE_ECONNRESET;
}

static void memory_pause_reading(tide_transport_t *t) {
    (void)t; /* the pump checks tide__transport_wants_read() */
}

static void memory_resume_reading(tide_transport_t *t) { kick(as_side(t)); }

static size_t memory_get_write_buffer_size(const tide_transport_t *t) {
    return as_side(t)->out.len;
}

static int memory_no_address(const tide_transport_t *t, struct sockaddr *addr, socklen_t *len) {
    (void)t;
    (void)addr;
    (void)len;
    return TIDE_ENOTSOCK;
}

static int memory_get_fd(const tide_transport_t *t) {
    (void)t;
    return TIDE_ENOTSOCK;
}

static void memory_describe(const tide_transport_t *t, char *buf, size_t size) {
    const side *s = as_side(t);
    snprintf(buf, size, "memory transport %p (side %d, peer %s, %zu bytes queued, %zu unread)",
             (const void *)t, s->id, s->peer->gone ? "gone" : "open", s->out.len, s->in.len);
}

static void memory_release(tide_transport_t *t) {
    side *s = as_side(t);
    pair *pr = s->pair;
    tide__loop_undefer(&s->pump);
    s->gone = true;
    if (!s->dead)
        s->dead = TIDE_EPIPE;
    tide__buf_free(&s->in);
    tide__buf_free(&s->out);
    /* A peer still waiting to flush into us must learn that it never will. */
    kick_writer(s->peer);
    if (--pr->refs == 0)
        free(pr);
}

static const tide__transport_ops memory_ops = {
    .kind = "memory",
    .write = memory_write,
    .write_eof = memory_write_eof,
    .close = memory_close,
    .abort = memory_abort,
    .pause_reading = memory_pause_reading,
    .resume_reading = memory_resume_reading,
    .get_write_buffer_size = memory_get_write_buffer_size,
    .get_peername = memory_no_address,
    .get_sockname = memory_no_address,
    .get_fd = memory_get_fd,
    .describe = memory_describe,
    .release = memory_release,
};

/* After connection_made returned: deliver whatever the peer wrote meanwhile. */
static void made(tide_transport_t *t, void *arg) {
    (void)arg;
    kick(as_side(t));
}

static side *memory_side(tide_transport_t *t) {
    return (t != NULL && t->ops == &memory_ops) ? as_side(t) : NULL;
}

/* ---- public ----------------------------------------------------------------------------- */

int tide_memory_pair_new(tide_loop_t *loop, tide_protocol_t *a, tide_protocol_t *b,
                         tide_transport_t **ta, tide_transport_t **tb) {
    if (loop == NULL || a == NULL || b == NULL)
        return TIDE_EINVAL;
    pair *pr = calloc(1, sizeof(*pr));
    if (pr == NULL)
        return TIDE_ENOMEM;
    pr->refs = 2;
    tide_protocol_t *protos[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        side *s = &pr->sides[i];
        s->pair = pr;
        s->peer = &pr->sides[1 - i];
        s->id = i;
        s->window = MEMORY_DEFAULT_WINDOW;
        tide__call_init(&s->pump, pump_run);
        tide__transport_init(&s->t, loop, &memory_ops, protos[i]);
    }
    for (int i = 0; i < 2; i++)
        tide__transport_start(&pr->sides[i].t, made, NULL);
    if (ta)
        *ta = &pr->sides[0].t;
    if (tb)
        *tb = &pr->sides[1].t;
    return 0;
}

int tide_memory_transport_set_window(tide_transport_t *t, size_t bytes) {
    side *s = memory_side(t);
    if (s == NULL)
        return TIDE_EINVAL;
    s->window = bytes;
    kick(s); /* a larger window lets the queue move */
    return 0;
}

int tide_memory_transport_inject_error(tide_transport_t *t, int error) {
    side *s = memory_side(t);
    if (s == NULL || error >= 0)
        return TIDE_EINVAL;
    side *p = s->peer;
    tide__transport_fatal(&s->t, error);
    if (!p->gone)
        tide__transport_fatal(&p->t, error);
    return 0;
}
