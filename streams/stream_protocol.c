/* The stream adapter: a buffered protocol (asyncio's StreamReaderProtocol) that
 * connects one transport to a stream's reader and writer, and the stream's lifetime.
 *
 * The transport reads straight into the reader's buffer (get_buffer hands it the
 * buffer's free tail), so bytes are never copied between the socket and a read
 * callback. eof_received keeps the transport open (half-close, as asyncio does for
 * plain transports): the reader sees EOF and the writer can still write.
 *
 * Lifetime: a stream is freed once the user released it (tide_writer_close or
 * tide_writer_abort, or never got it), connection_lost has run, and no read, drain
 * or wait_closed is pending; always from its own deferred call, so the pointers stay
 * valid until the callback in which that became true has returned. The stream is a
 * loop resource until then, so tide_loop_close() reports a stream never closed; it
 * does not keep TIDE_RUN_DEFAULT running, since nothing can happen to a stream whose
 * transport is gone until the user acts.
 *
 * Reentrancy: the protocol callbacks run from the transport base, never inside a
 * user's call; the user code they reach (client-connected callback) may close or
 * abort the stream. Loop thread only. */
#include <stdio.h>
#include <stdlib.h>

#include "streams/streams_int.h"
#include "tide/tls.h"

static tide__stream *of(tide_protocol_t *p) { return TIDE_CONTAINER_OF(p, tide__stream, proto); }

static void on_made(tide_protocol_t *p, tide_transport_t *t) {
    tide__stream *s = of(p);
    s->flags |= TIDE__S_MADE;
    s->transport = t;
    s->reader.transport = t;
    if (t->state & TIDE__T_SERVER_SIDE)
        s->flags |= TIDE__S_SERVER_SIDE;
    if (tide_transport_is_tls(t))
        s->flags |= TIDE__S_TLS;
    if (s->on_connected)
        s->on_connected(&s->reader, s, s->on_connected_arg);
}

static void *on_get_buffer(tide_protocol_t *p, size_t sizehint, size_t *len) {
    return tide__reader_get_buffer(&of(p)->reader, sizehint, len);
}

static void on_buffer_updated(tide_protocol_t *p, size_t nbytes) {
    tide__reader_buffer_updated(&of(p)->reader, nbytes);
}

static bool on_eof(tide_protocol_t *p) {
    tide__reader_eof(&of(p)->reader);
    return true;
}

static void on_lost(tide_protocol_t *p, int status) {
    tide__stream *s = of(p);
    /* What writes and drains report from now on; the transport is still readable. */
    if (status < 0)
        s->write_error = status;
    else if (s->transport && (s->transport->state & TIDE__T_ABORTED))
        s->write_error = TIDE_ECONNABORTED;
    else
        s->write_error = TIDE_ECLOSED;
    s->lost_status = status;
    s->transport = NULL;
    s->flags = (s->flags | TIDE__S_LOST) & ~(unsigned)TIDE__S_WRITE_PAUSED;
    tide__reader_connection_lost(&s->reader, status);
    tide__writer_connection_lost(s, status);
    tide__stream_maybe_free(s);
}

static void on_pause_writing(tide_protocol_t *p) { of(p)->flags |= TIDE__S_WRITE_PAUSED; }

static void on_resume_writing(tide_protocol_t *p) {
    tide__stream *s = of(p);
    s->flags &= ~(unsigned)TIDE__S_WRITE_PAUSED;
    tide__writer_complete_drains(s, 0);
}

static const tide_protocol_ops_t stream_ops = {
    .size = TIDE_PROTOCOL_OPS_SIZE,
    .connection_made = on_made,
    .eof_received = on_eof,
    .connection_lost = on_lost,
    .pause_writing = on_pause_writing,
    .resume_writing = on_resume_writing,
    .get_buffer = on_get_buffer,
    .buffer_updated = on_buffer_updated,
};

/* ---- lifetime ---------------------------------------------------------------------------- */

static void describe(const tide__resource *res, char *buf, size_t size) {
    const tide__stream *s = TIDE__QUEUE_DATA(res, tide__stream, resource);
    const char *state = !(s->flags & TIDE__S_MADE)   ? "not connected yet"
                        : !(s->flags & TIDE__S_LOST) ? "connected"
                                                     : "connection lost";
    snprintf(buf, size, "stream %p (%s, %s, %zu bytes unread)", (const void *)s, state,
             (s->flags & TIDE__S_RELEASED) ? "closing" : "writer never closed",
             tide_reader_buffered(&s->reader));
}

static void destroy(tide__stream *s) {
    tide__loop_undefer(&s->free_call);
    tide__reader_fini(&s->reader);
    tide__loop_unregister(s->loop, &s->resource);
    free(s);
}

static bool idle(const tide__stream *s) {
    return (s->flags & TIDE__S_RELEASED) && (s->flags & TIDE__S_LOST) &&
           !(s->flags & TIDE__S_TLS_STARTING) && !tide__reader_pending(&s->reader) &&
           s->reader.lending == 0 &&
           tide__queue_empty(&s->drains) && tide__queue_empty(&s->closers);
}

static void free_run(tide__call *call) {
    tide__stream *s = TIDE__QUEUE_DATA(call, tide__stream, free_call);
    if (idle(s))
        destroy(s);
}

void tide__stream_maybe_free_slow(tide__stream *s) {
    if (idle(s))
        tide__loop_defer(s->loop, &s->free_call);
}

void tide__stream_discard(tide__stream *s) { destroy(s); }

tide__stream *tide__stream_new(tide_loop_t *loop, size_t limit) {
    tide__stream *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->proto.ops = &stream_ops;
    s->loop = loop;
    tide__queue_init(&s->drains);
    tide__queue_init(&s->closers);
    tide__queue_init(&s->resource.node);
    tide__call_init(&s->free_call, free_run);
    tide__reader_init(&s->reader, loop, limit, s);
    tide__loop_register_passive(loop, &s->resource, describe);
    return s;
}
