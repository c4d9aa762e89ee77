/* The transport base: what every transport kind shares.
 *
 * It owns the contract with the protocol (asyncio.md sections 2 and 3): the state
 * checks of the public calls (tide's stricter write rules), the watermarks and
 * pause/resume_writing, and the deferred connection_made / connection_lost. Kinds
 * (socket.c, memory.c, ...) move bytes and call the tide__transport_* helpers; they
 * never call protocol ops themselves.
 *
 * Reentrancy: protocol callbacks may call any transport function, including close,
 * abort and set_protocol, so every helper re-reads the state after a callback. A
 * transport is freed only from its deferred connection_lost, which runs from the
 * loop's ready queue, never inside another of its callbacks: closing or aborting from
 * inside a callback can therefore never free memory still in use. */
#include <stdio.h>
#include <string.h>

#include "transports/transport_int.h"

#define PROTO_OP(p, name) TIDE_PROTOCOL_OP(p, name)

static void run_deferred(tide__call *call);

static void describe_resource(const tide__resource *res, char *buf, size_t size) {
    const tide_transport_t *t = TIDE__QUEUE_DATA(res, tide_transport_t, resource);
    if (t->ops->describe)
        t->ops->describe(t, buf, size);
    else
        snprintf(buf, size, "%s transport", t->ops->kind);
}

void tide__transport_init(tide_transport_t *t, tide_loop_t *loop, const tide__transport_ops *ops,
                          tide_protocol_t *protocol) {
    t->ops = ops;
    t->loop = loop;
    t->protocol = protocol;
    t->rx_ops = NULL;
    t->state = 0;
    t->error = 0;
    t->lost_status = 0;
    t->high_water = TIDE__DEFAULT_HIGH_WATER;
    t->low_water = TIDE__DEFAULT_HIGH_WATER / 4;
    t->max_buffer = 0;
    t->made_cb = NULL;
    t->made_arg = NULL;
    t->server = NULL;
    tide__call_init(&t->deferred, run_deferred);
    tide__queue_init(&t->server_node);
    tide__queue_init(&t->resource.node);
    tide__loop_register(loop, &t->resource, describe_resource);
}

void tide__transport_start(tide_transport_t *t, void (*made_cb)(tide_transport_t *, void *),
                           void *made_arg) {
    t->made_cb = made_cb;
    t->made_arg = made_arg;
    tide__loop_defer(t->loop, &t->deferred);
}

void tide__transport_discard(tide_transport_t *t) {
    tide__loop_unregister(t->loop, &t->resource);
    t->ops->release(t);
}

static void run_made(tide_transport_t *t) {
    t->state |= TIDE__T_MADE;
    void (*made)(tide_protocol_t *, tide_transport_t *) = PROTO_OP(t->protocol, connection_made);
    if (made) {
        double start = tide__loop_debug_enter(t->loop);
        made(t->protocol, t);
        tide__loop_debug_leave(t->loop, start, "protocol connection_made");
    }
    /* Reading starts only now, and not at all if the protocol paused it (asyncio 2.6.2). */
    if (tide__transport_wants_read(t))
        t->ops->resume_reading(t);
    void (*cb)(tide_transport_t *, void *) = t->made_cb;
    t->made_cb = NULL;
    if (cb)
        cb(t, t->made_arg);
}

static void run_lost(tide_transport_t *t) {
    void (*lost)(tide_protocol_t *, int) = PROTO_OP(t->protocol, connection_lost);
    if (lost) {
        double start = tide__loop_debug_enter(t->loop);
        lost(t->protocol, t->lost_status);
        tide__loop_debug_leave(t->loop, start, "protocol connection_lost");
    }
    if (t->server)
        tide__server_detach(t);
    tide__loop_unregister(t->loop, &t->resource);
    t->ops->release(t);
}

static void run_deferred(tide__call *call) {
    tide_transport_t *t = TIDE__QUEUE_DATA(call, tide_transport_t, deferred);
    if (!(t->state & TIDE__T_MADE)) {
        run_made(t);
        /* Lost while (or before) connection_made ran: deliver it on the next turn. */
        if (t->state & TIDE__T_LOST)
            tide__loop_defer(t->loop, &t->deferred);
        return;
    }
    if (t->state & TIDE__T_LOST)
        run_lost(t);
}

static void schedule_lost(tide_transport_t *t, int status) {
    if (t->state & TIDE__T_LOST)
        return;
    t->state |= TIDE__T_LOST | TIDE__T_CLOSING | TIDE__T_READ_STOPPED;
    t->lost_status = status;
    tide__loop_defer(t->loop, &t->deferred);
}

void tide__transport_fatal(tide_transport_t *t, int err) {
    if (t->state & TIDE__T_LOST)
        return;
    if (t->error == 0)
        t->error = err;
    t->state |= TIDE__T_CLOSING | TIDE__T_READ_STOPPED;
    t->ops->abort(t);
    schedule_lost(t, err);
    tide__log(t->loop, TIDE_LOG_DEBUG, "%s transport failed: %s", t->ops->kind, tide_strerror(err));
}

void tide__transport_lost(tide_transport_t *t, int status) { schedule_lost(t, status); }

/* ---- input ---------------------------------------------------------------------- */

void tide__transport_resolve(tide_transport_t *t) {
    t->rx_ops = t->protocol->ops;
    if (tide_protocol_is_buffered(t->protocol))
        t->state |= TIDE__T_BUFFERED;
    else
        t->state &= ~(unsigned)TIDE__T_BUFFERED;
}

void tide__transport_no_buffer(tide_transport_t *t) {
    tide__log(t->loop, TIDE_LOG_ERROR, "protocol get_buffer returned an empty buffer");
    tide__transport_fatal(t, TIDE_ENOBUFS);
}

void tide__transport_eof(tide_transport_t *t) {
    if (t->state & (TIDE__T_EOF_RECEIVED | TIDE__T_LOST))
        return;
    t->state |= TIDE__T_EOF_RECEIVED | TIDE__T_READ_STOPPED;
    t->ops->pause_reading(t);
    bool (*eof)(tide_protocol_t *) = PROTO_OP(t->protocol, eof_received);
    bool keep_open = false;
    if (eof) {
        double start = tide__loop_debug_enter(t->loop);
        keep_open = eof(t->protocol);
        tide__loop_debug_leave(t->loop, start, "protocol eof_received");
    }
    if (!keep_open)
        tide_transport_close(t);
}

/* ---- write flow control ---------------------------------------------------------- */

void tide__transport_check_pause(tide_transport_t *t) {
    if (t->state & (TIDE__T_WRITE_PAUSED | TIDE__T_LOST | TIDE__T_ABORTED))
        return;
    if (t->ops->get_write_buffer_size(t) <= t->high_water)
        return;
    t->state |= TIDE__T_WRITE_PAUSED;
    void (*pause)(tide_protocol_t *) = PROTO_OP(t->protocol, pause_writing);
    if (pause)
        pause(t->protocol);
}

void tide__transport_check_resume(tide_transport_t *t) {
    if (!(t->state & TIDE__T_WRITE_PAUSED) || (t->state & (TIDE__T_LOST | TIDE__T_ABORTED)))
        return;
    if (t->ops->get_write_buffer_size(t) > t->low_water)
        return;
    t->state &= ~(unsigned)TIDE__T_WRITE_PAUSED;
    void (*resume)(tide_protocol_t *) = PROTO_OP(t->protocol, resume_writing);
    if (resume)
        resume(t->protocol);
}

/* ---- the public calls ------------------------------------------------------------ */

bool tide__iov_total(const tide_iovec_t *bufs, size_t n, size_t *total) {
    size_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (bufs[i].len > SIZE_MAX - sum || (bufs[i].base == NULL && bufs[i].len > 0))
            return false;
        sum += bufs[i].len;
    }
    *total = sum;
    return true;
}

/* Whether a write may be accepted at all: tide refuses instead of dropping. */
static int write_refused(const tide_transport_t *t) {
    if (t->error != 0)
        return t->error;
    if (t->state & TIDE__T_CLOSING)
        return TIDE_ECLOSED;
    if (t->state & TIDE__T_EOF_WRITTEN)
        return TIDE_EPIPE;
    if (t->state & TIDE__T_SENDING_FILE)
        return TIDE_EBUSY; /* the bytes would land inside the file's */
    return 0;
}

/* The write both public forms share, once total is known. The common case (open,
 * no cap, and the kind sends everything at once) is a state test and one call: the
 * watermarks are looked at only when bytes stay queued. */
static inline int write_total(tide_transport_t *t, const tide_iovec_t *bufs, size_t n,
                              size_t total) {
    /* tide__transport_fatal sets CLOSING with the error, so this one test covers all
     * four reasons to refuse. */
    if (TIDE__UNLIKELY(t->state & (TIDE__T_CLOSING | TIDE__T_EOF_WRITTEN | TIDE__T_SENDING_FILE)) ||
        t->error != 0)
        return write_refused(t);
    if (total == 0)
        return 0;
    if (t->max_buffer != 0 && t->ops->get_write_buffer_size(t) + total > t->max_buffer)
        return TIDE_ENOBUFS;
    int rc = t->ops->write(t, bufs, n, total);
    if (rc == TIDE__WRITE_SENT)
        return 0;
    if (rc == 0)
        tide__transport_check_pause(t);
    return rc;
}

int tide_transport_writelines(tide_transport_t *t, const tide_iovec_t *bufs, size_t n) {
    size_t total;
    if (t == NULL || (bufs == NULL && n > 0) || !tide__iov_total(bufs, n, &total))
        return TIDE_EINVAL;
    return write_total(t, bufs, n, total);
}

int tide_transport_write(tide_transport_t *t, const void *data, size_t len) {
    if (t == NULL || (data == NULL && len > 0))
        return TIDE_EINVAL;
    tide_iovec_t one = {data, len};
    return write_total(t, &one, 1, len);
}

int tide_transport_write_eof(tide_transport_t *t) {
    if (t == NULL)
        return TIDE_EINVAL;
    if (t->ops->write_eof == NULL)
        return TIDE_ENOTSUP;
    if (t->state & TIDE__T_EOF_WRITTEN)
        return 0;
    if (t->error != 0)
        return t->error;
    if (t->state & TIDE__T_CLOSING)
        return TIDE_ECLOSED;
    if (t->state & TIDE__T_SENDING_FILE)
        return TIDE_EBUSY;
    t->state |= TIDE__T_EOF_WRITTEN;
    return t->ops->write_eof(t);
}

bool tide_transport_can_write_eof(const tide_transport_t *t) {
    return t != NULL && t->ops->write_eof != NULL;
}

void tide_transport_close(tide_transport_t *t) {
    if (t == NULL || (t->state & TIDE__T_CLOSING))
        return;
    t->state |= TIDE__T_CLOSING | TIDE__T_READ_STOPPED;
    t->ops->pause_reading(t);
    t->ops->close(t);
}

void tide_transport_abort(tide_transport_t *t) {
    if (t == NULL || (t->state & TIDE__T_LOST))
        return;
    t->state |= TIDE__T_CLOSING | TIDE__T_ABORTED | TIDE__T_READ_STOPPED;
    t->ops->abort(t);
    schedule_lost(t, 0);
}

bool tide_transport_is_closing(const tide_transport_t *t) {
    return t != NULL && (t->state & TIDE__T_CLOSING) != 0;
}

void tide_transport_pause_reading(tide_transport_t *t) {
    if (t == NULL || (t->state & (TIDE__T_CLOSING | TIDE__T_READ_PAUSED)))
        return;
    t->state |= TIDE__T_READ_PAUSED;
    if ((t->state & TIDE__T_MADE) && !(t->state & TIDE__T_READ_STOPPED))
        t->ops->pause_reading(t);
}

void tide_transport_resume_reading(tide_transport_t *t) {
    if (t == NULL || (t->state & TIDE__T_CLOSING) || !(t->state & TIDE__T_READ_PAUSED))
        return;
    t->state &= ~(unsigned)TIDE__T_READ_PAUSED;
    if (tide__transport_wants_read(t))
        t->ops->resume_reading(t);
}

bool tide_transport_is_reading(const tide_transport_t *t) {
    return t != NULL && !(t->state & (TIDE__T_READ_PAUSED | TIDE__T_CLOSING | TIDE__T_READ_STOPPED));
}

int tide__watermarks(long high, long low, size_t *high_out, size_t *low_out) {
    /* asyncio's rules: a missing mark is derived from the other one. */
    if (high < 0 && low < 0) {
        high = TIDE__DEFAULT_HIGH_WATER;
        low = high / 4;
    } else if (high < 0) {
        if (low > (long)(SIZE_MAX / 8))
            return TIDE_EINVAL;
        high = 4 * low;
    } else if (low < 0) {
        low = high / 4;
    }
    if (high < low)
        return TIDE_EINVAL;
    *high_out = (size_t)high;
    *low_out = (size_t)low;
    return 0;
}

int tide_transport_set_write_buffer_limits(tide_transport_t *t, long high, long low) {
    if (t == NULL)
        return TIDE_EINVAL;
    int rc = tide__watermarks(high, low, &t->high_water, &t->low_water);
    if (rc < 0)
        return rc;
    if (t->ops->limits_changed)
        t->ops->limits_changed(t);
    /* Like asyncio's socket transports: re-check pause only, never resume here. */
    tide__transport_check_pause(t);
    return 0;
}

void tide_transport_get_write_buffer_limits(const tide_transport_t *t, size_t *low, size_t *high) {
    if (low)
        *low = t->low_water;
    if (high)
        *high = t->high_water;
}

size_t tide_transport_get_write_buffer_size(const tide_transport_t *t) {
    return t ? t->ops->get_write_buffer_size(t) : 0;
}

void tide_transport_set_max_write_buffer_size(tide_transport_t *t, size_t cap) {
    if (t)
        t->max_buffer = cap;
}

tide_protocol_t *tide_transport_get_protocol(const tide_transport_t *t) {
    return t ? t->protocol : NULL;
}

void tide_transport_set_protocol(tide_transport_t *t, tide_protocol_t *protocol) {
    if (t && protocol) {
        t->protocol = protocol;
        tide__transport_resolve(t);
    }
}

tide_loop_t *tide_transport_get_loop(const tide_transport_t *t) { return t ? t->loop : NULL; }

int tide_transport_get_peername(const tide_transport_t *t, struct sockaddr *addr, socklen_t *len) {
    if (t == NULL || addr == NULL || len == NULL)
        return TIDE_EINVAL;
    return t->ops->get_peername ? t->ops->get_peername(t, addr, len) : TIDE_ENOTSOCK;
}

int tide_transport_get_sockname(const tide_transport_t *t, struct sockaddr *addr, socklen_t *len) {
    if (t == NULL || addr == NULL || len == NULL)
        return TIDE_EINVAL;
    return t->ops->get_sockname ? t->ops->get_sockname(t, addr, len) : TIDE_ENOTSOCK;
}

int tide_transport_get_fd(const tide_transport_t *t) {
    if (t == NULL)
        return TIDE_EINVAL;
    return t->ops->get_fd ? t->ops->get_fd(t) : TIDE_ENOTSOCK;
}

const char *tide_transport_kind(const tide_transport_t *t) { return t ? t->ops->kind : "none"; }
