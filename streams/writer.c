/* The stream writer: asyncio's StreamWriter over the stream's current transport, with
 * drain and wait_closed as lists of waiter records (any number of callers each).
 *
 * tide's drain (asyncio-painpoints 2 and 3) answers from state recorded when it
 * happened, never by yielding and hoping: the reader's stored error, the transport's
 * first error (stored the moment a write failed, before connection_lost runs), an
 * abort that discarded the queue, and the loss of the connection all complete it with
 * an error; otherwise it completes with 0 once writing is not paused.
 *
 * Reentrancy: completions are deferred calls embedded in the records, so no callback
 * runs inside drain, wait_closed, resume_writing or connection_lost. A callback may
 * start more drains or close the stream; the stream is freed only from its own
 * deferred call once no record is left (stream_protocol.c). Loop thread only. */
#include <stdlib.h>

#include "streams/streams_int.h"

static void waiter_run(tide__call *call) {
    tide__stream_waiter *w = TIDE__QUEUE_DATA(call, tide__stream_waiter, call);
    tide__stream *s = w->stream;
    tide__queue_remove(&w->node);
    tide_writer_cb cb = w->cb;
    void *arg = w->arg;
    int status = w->status;
    if (w->origin == TIDE__W_HEAP)
        free(w);
    else if (w->origin == TIDE__W_SPARE)
        w->origin = TIDE__W_CALLER; /* free again, for the callback itself */
    cb(s, status, arg);
    tide__stream_maybe_free(s);
}

static void waiter_init(tide__stream *s, tide__stream_waiter *w, tide_writer_cb cb, void *arg) {
    tide__queue_init(&w->node);
    tide__call_init(&w->call, waiter_run);
    w->stream = s;
    w->cb = cb;
    w->arg = arg;
    w->status = 0;
    w->origin = TIDE__W_CALLER;
}

static void waiter_finish(tide__stream_waiter *w, int status) {
    w->status = status;
    tide__loop_defer(w->stream->loop, &w->call);
}

/* The error a write or drain reports now, or 0 while the connection is usable. */
static int write_failure(const tide__stream *s) {
    if (s->reader.error)
        return s->reader.error;
    if (s->transport == NULL)
        return (s->flags & TIDE__S_LOST) ? s->write_error : TIDE_ENOTCONN;
    if (s->transport->error)
        return s->transport->error;
    if (s->transport->state & TIDE__T_ABORTED)
        return TIDE_ECONNABORTED;
    /* Closing (the user's close, or the transport's own after EOF): a write would be
     * refused, so a drain cannot promise that anything more goes out. */
    if (s->transport->state & TIDE__T_CLOSING)
        return TIDE_ECLOSED;
    return 0;
}

/* ---- internal ---------------------------------------------------------------------------- */

void tide__writer_drain_start(tide__stream *s, tide__stream_waiter *w, tide_writer_cb cb,
                              void *arg) {
    waiter_init(s, w, cb, arg);
    tide__queue_insert_tail(&s->drains, &w->node);
    int err = write_failure(s);
    if (err != 0 || !(s->flags & TIDE__S_WRITE_PAUSED))
        waiter_finish(w, err);
}

void tide__writer_wait_closed_start(tide__stream *s, tide__stream_waiter *w, tide_writer_cb cb,
                                    void *arg) {
    waiter_init(s, w, cb, arg);
    tide__queue_insert_tail(&s->closers, &w->node);
    if (s->flags & TIDE__S_LOST)
        waiter_finish(w, s->lost_status);
}

void tide__writer_waiter_cancel(tide__stream_waiter *w) {
    tide__stream *s = w->stream;
    tide__loop_undefer(&w->call);
    tide__queue_remove(&w->node);
    tide__stream_maybe_free(s);
}

/* Completes the records of a list still waiting (those already completing keep
 * their status). */
static void complete_all(tide__queue *list, int status) {
    tide__queue *n;
    TIDE__QUEUE_FOREACH(n, list) {
        tide__stream_waiter *w = TIDE__QUEUE_DATA(n, tide__stream_waiter, node);
        if (!tide__call_pending(&w->call))
            waiter_finish(w, status);
    }
}

void tide__writer_complete_drains(tide__stream *s, int status) { complete_all(&s->drains, status); }

void tide__writer_connection_lost(tide__stream *s, int status) {
    complete_all(&s->drains, write_failure(s));
    complete_all(&s->closers, status);
}

/* ---- public ------------------------------------------------------------------------------ */

static int start_callback_form(tide__stream *s, tide_writer_cb cb, void *arg,
                           void (*begin)(tide__stream *, tide__stream_waiter *, tide_writer_cb,
                                         void *)) {
    if (s == NULL || cb == NULL)
        return TIDE_EINVAL;
    /* The spare is free when no callback-form call holds it (origin back to CALLER). */
    bool spare = s->spare.origin == TIDE__W_CALLER;
    tide__stream_waiter *w = spare ? &s->spare : malloc(sizeof(*w));
    if (w == NULL)
        return TIDE_ENOMEM;
    begin(s, w, cb, arg);
    /* Read only by the completion, which is always deferred. */
    w->origin = spare ? TIDE__W_SPARE : TIDE__W_HEAP;
    return 0;
}

int tide_writer_drain(tide_writer_t *s, tide_writer_cb cb, void *arg) {
    return start_callback_form(s, cb, arg, tide__writer_drain_start);
}

/* Out of line, so that try_drain's answer without waiting saves no registers. */
TIDE__NOINLINE static int drain_paused(tide_writer_t *s, tide_writer_cb cb, void *arg) {
    return tide_writer_drain(s, cb, arg);
}

int tide_writer_try_drain(tide_writer_t *s, tide_writer_cb cb, void *arg) {
    if (s == NULL || cb == NULL)
        return TIDE_EINVAL;
    if (TIDE__LIKELY(tide__writer_drained(s)))
        return 1;
    if (s->flags & TIDE__S_WRITE_PAUSED)
        return drain_paused(s, cb, arg);
    /* Nothing to wait for: answer now, with the error a drain would report. */
    int err = write_failure(s);
    return err != 0 ? err : 1;
}

int tide_writer_wait_closed(tide_writer_t *s, tide_writer_cb cb, void *arg) {
    return start_callback_form(s, cb, arg, tide__writer_wait_closed_start);
}

/* Writes go to the transport, which refuses them itself when closing or failed;
 * only a lost connection (no transport any more) is answered here. */
static int gone(const tide__stream *s) {
    int err = write_failure(s);
    return err != 0 ? err : TIDE_ECLOSED;
}

int tide_writer_write(tide_writer_t *s, const void *data, size_t len) {
    if (s == NULL)
        return TIDE_EINVAL;
    return s->transport ? tide_transport_write(s->transport, data, len) : gone(s);
}

int tide_writer_writelines(tide_writer_t *s, const tide_iovec_t *bufs, size_t n) {
    if (s == NULL)
        return TIDE_EINVAL;
    return s->transport ? tide_transport_writelines(s->transport, bufs, n) : gone(s);
}

int tide_writer_write_eof(tide_writer_t *s) {
    if (s == NULL)
        return TIDE_EINVAL;
    return s->transport ? tide_transport_write_eof(s->transport) : gone(s);
}

bool tide_writer_can_write_eof(const tide_writer_t *s) {
    return s != NULL && s->transport != NULL && tide_transport_can_write_eof(s->transport);
}

static void release(tide__stream *s, void (*end)(tide_transport_t *)) {
    if (s == NULL)
        return;
    s->flags |= TIDE__S_RELEASED;
    if (s->transport)
        end(s->transport);
    tide__stream_maybe_free(s);
}

void tide_writer_close(tide_writer_t *s) { release(s, tide_transport_close); }

void tide_writer_abort(tide_writer_t *s) { release(s, tide_transport_abort); }

bool tide_writer_is_closing(const tide_writer_t *s) {
    return s == NULL || s->transport == NULL || tide_transport_is_closing(s->transport);
}

tide_transport_t *tide_writer_get_transport(const tide_writer_t *s) {
    return s ? s->transport : NULL;
}

tide_reader_t *tide_writer_get_reader(const tide_writer_t *s) {
    return s ? (tide_reader_t *)&s->reader : NULL;
}

tide_loop_t *tide_writer_get_loop(const tide_writer_t *s) { return s ? s->loop : NULL; }

bool tide_writer_is_server_side(const tide_writer_t *s) {
    return s != NULL && (s->flags & TIDE__S_SERVER_SIDE) != 0;
}
