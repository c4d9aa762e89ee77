/* streams/ private interface: the reader, the writer (which is the connection object,
 * "the stream"), the adapter protocol between them and a transport, and the seams
 * the task-style (_await) calls build on.
 *
 * One stream is one allocation: the adapter protocol, the writer state and the
 * reader. The transport reads straight into the reader's buffer (the adapter is a
 * buffered protocol), so input is never copied on its way to a read callback. */
#ifndef TIDE_STREAMS_INT_H
#define TIDE_STREAMS_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/core_int.h"
#include "tide/stream.h"
#include "transports/transport_int.h"

typedef struct tide_writer tide__stream;

/* The kinds of pending read. */
enum {
    TIDE__RD_NONE = 0,
    TIDE__RD_READ,    /* up to n bytes */
    TIDE__RD_ALL,     /* to EOF */
    TIDE__RD_EXACTLY, /* exactly n bytes */
    TIDE__RD_UNTIL,   /* through the earliest separator */
    TIDE__RD_LINE,    /* readuntil("\n") with readline's EOF rule */
    TIDE__RD_DISCARD, /* drop through the first separator */
    TIDE__RD_PEEK     /* at least one byte, lent in place, nothing consumed */
};

/* A separator copied into the reader's own storage. */
typedef struct tide__sep {
    const unsigned char *p;
    size_t len;
} tide__sep;

/* The one pending read of a reader: everything needed to finish it later. The plain
 * read's fields come first (see struct tide_reader). */
typedef struct tide__read_op {
    int kind;
    size_t n; /* READ, EXACTLY: the size; DISCARD: bytes dropped so far */
    union {
        size_t cap; /* UNTIL, LINE: the longest record handed over (SIZE_MAX: no cap) */
        /* READ: the caller's memory of n bytes that the transport may read into while
         * the reader is empty (an await form's buffer), or NULL. */
        unsigned char *into;
    };
    tide_read_cb cb;
    void *arg;
    size_t offset;  /* bytes at the front known to hold no separator start */
    size_t nseps;   /* UNTIL, LINE, DISCARD */
    size_t min_len; /* of the separators */
    size_t max_len;
} tide__read_op;

/* The fields a stream's read loop touches on every arrival come first, so that with
 * many connections each arrival misses the cache as few times as it can. */
struct tide_reader {
    tide__read_op op;
    tide__buf buf; /* the bytes received and not yet read */
    int lending;   /* > 0 while a read callback runs: no compaction, no reset */
    int error;
    bool eof;
    bool paused;      /* we paused the transport */
    bool free_wanted; /* tide_reader_free inside a callback */
    bool peek_held;   /* a tide_reader_peek_await loan holds the buffer (one hold) */
    bool completing;  /* a read callback runs: reads it starts are evaluated after it */
    size_t limit;
    size_t chunk;   /* free space to offer the transport for the next read */
    size_t offered; /* free space offered for the read in progress */
    /* The read's own memory (op.into) when the transport was handed that instead of
     * the buffer's tail for the read in progress; NULL otherwise. */
    unsigned char *lent_into;
    tide__call call; /* the deferred completion of op */
    /* The buffer a callback's data points into, kept when the buffer moved during the
     * callback (a feed from inside it); freed once the callback returns. */
    unsigned char *lent_buf;
    tide_loop_t *loop;
    tide__stream *stream;        /* NULL for tide_reader_new */
    tide_transport_t *transport; /* for read flow control; NULL when none or lost */
    /* Separator storage, reused across reads (grown, never shrunk while open). */
    tide__sep *seps;
    size_t seps_cap;
    unsigned char *sepbytes;
    size_t sepbytes_cap;
};

/* A drain or wait_closed in flight. The callback forms allocate one; the await forms
 * embed it in the task's frame. */
typedef struct tide__stream_waiter tide__stream_waiter;
struct tide__stream_waiter {
    tide__queue node; /* on the stream's drains or closers list */
    tide__call call;  /* the deferred completion */
    tide__stream *stream;
    tide_writer_cb cb;
    void *arg;
    int status;
    unsigned char origin; /* TIDE__W_*: who owns the record */
};

enum {
    TIDE__W_CALLER = 0, /* embedded in an await's frame */
    TIDE__W_SPARE,      /* the stream's own record, for one callback-form call at a time */
    TIDE__W_HEAP        /* allocated for a callback-form call, freed after it */
};

enum {
    TIDE__S_MADE = 1u << 0,         /* connection_made ran */
    TIDE__S_LOST = 1u << 1,         /* connection_lost ran */
    TIDE__S_RELEASED = 1u << 2,     /* the user closed (or never got) the stream */
    TIDE__S_WRITE_PAUSED = 1u << 3, /* between pause_writing and resume_writing */
    TIDE__S_SERVER_SIDE = 1u << 4,
    TIDE__S_TLS_STARTING = 1u << 5, /* start_tls: the handshake is running */
    TIDE__S_TLS = 1u << 6           /* the transport is TLS */
};

/* As in the reader, what every write and arrival touches comes first: the adapter
 * (whose ops the transport reads), the transport, the flags, and then the reader. */
struct tide_writer {
    tide_protocol_t proto; /* the adapter, handed to the transport */
    /* The current transport, NULL before connection_made and after connection_lost.
     * start_tls swaps it (and the reader's) for the TLS transport. */
    tide_transport_t *transport;
    tide_loop_t *loop;
    unsigned flags;
    int lost_status;
    int write_error; /* what writes and drains report once the connection is gone */
    struct tide_reader reader;
    tide__queue drains;  /* tide__stream_waiter */
    tide__queue closers; /* tide__stream_waiter */
    tide__resource resource;
    tide__call free_call;
    /* start_server: called from connection_made. */
    tide_client_connected_cb on_connected;
    void *on_connected_arg;
    /* The record a callback-form drain or wait_closed uses when it is free, so that a
     * drain per message does not allocate. */
    tide__stream_waiter spare;
    /* start_tls: the completion (NULL once an await gave up on it). */
    tide_writer_cb tls_cb;
    void *tls_arg;
};

/* ---- reader.c ---- */

/* Initialises an embedded reader (limit already validated). */
void tide__reader_init(tide_reader_t *r, tide_loop_t *loop, size_t limit, tide__stream *stream);
/* Frees the reader's memory (not the reader itself); drops a pending read silently. */
void tide__reader_fini(tide_reader_t *r);
/* The adapter's get_buffer / buffer_updated: memory at the buffer's free tail. */
void *tide__reader_get_buffer(tide_reader_t *r, size_t sizehint, size_t *len);
void tide__reader_buffer_updated(tide_reader_t *r, size_t nbytes);
/* The adapter's eof_received: tide_reader_feed_eof, from the transport's event. These
 * two run from the transport, never inside a user's call, so a read they satisfy
 * completes at once (its callback runs inside them). */
void tide__reader_eof(tide_reader_t *r);
/* The transport is gone: flow control stops; err < 0 is stored, 0 feeds EOF. */
void tide__reader_connection_lost(tide_reader_t *r, int err);
/* Drops the pending read without calling it (a task was cancelled); the buffer keeps
 * every byte not yet handed over, so the next read works at once. */
void tide__reader_cancel_pending(tide_reader_t *r);

/* readuntil_any (line: readline) for a caller's buffer of cap bytes: a record that,
 * with its separator, would be longer than cap is TIDE_ELIMIT like one beyond the
 * limit, with nothing consumed, so a record is never cut. Same returns as
 * tide_reader_readuntil_any, and TIDE_EINVAL for cap 0. */
int tide__reader_read_record(tide_reader_t *r, bool line, const tide_iovec_t *seps, size_t n,
                             size_t cap, tide_read_cb cb, void *arg);
/* tide_reader_read(r, n, cb, arg) whose bytes may land straight in `into` (n bytes,
 * which must stay valid until cb ran or the read was cancelled): while the reader is
 * empty, the transport reads into it, and cb gets data == into, no copy made. Bytes
 * already buffered are handed over from the buffer as by tide_reader_read. */
int tide__reader_read_into(tide_reader_t *r, void *into, size_t n, tide_read_cb cb, void *arg);
/* Starts a peek: cb gets every buffered byte (at least one) in place, nothing
 * consumed, or the end / the stored error. */
int tide__reader_peek(tide_reader_t *r, tide_read_cb cb, void *arg);
/* Ends a tide_reader_peek_await loan, if any. */
void tide__reader_end_loan(tide_reader_t *r);
/* True while a read is pending (started and its callback not yet begun). */
bool tide__reader_pending(const tide_reader_t *r);
/* start_tls: the unread bytes went to the TLS layer (which copied them); the reader
 * drops them and moves its flow control to the TLS transport t. */
void tide__reader_switch_transport(tide_reader_t *r, tide_transport_t *t);
/* Keeps the bytes a read callback received valid after it returns (the buffer is
 * neither compacted nor freed) until the matching unhold: an await form takes a hold
 * in its internal completion and releases it at the task's next reader call, so it
 * can hand out the data without copying. Holds nest. */
void tide__reader_hold(tide_reader_t *r);
void tide__reader_unhold(tide_reader_t *r);

/* ---- await.c ---- */

/* The record of a task's read, in the task's frame. */
typedef struct tide__read_wait {
    tide__waiter w; /* first: on_abandon gets it */
    tide_reader_t *r;
    unsigned char *buf;
    size_t cap;
    size_t len;
    const void *lent; /* peek: the reader's bytes, in place */
} tide__read_wait;

/* The completion of the _await reads (arg: their tide__read_wait). A task whose bytes
 * the transport read straight into its buffer is resumed by the reader itself, without
 * this call (reader.c, updated_into): it recognises the read by this completion. */
void tide__read_wait_done(tide_reader_t *r, int status, const void *data, size_t len, void *arg);

/* ---- writer.c ---- */

/* Starts a drain / wait_closed with a caller-provided record. */
void tide__writer_drain_start(tide__stream *s, tide__stream_waiter *w, tide_writer_cb cb,
                              void *arg);
void tide__writer_wait_closed_start(tide__stream *s, tide__stream_waiter *w, tide_writer_cb cb,
                                    void *arg);
/* Withdraws a record before its callback ran (a task was cancelled). */
void tide__writer_waiter_cancel(tide__stream_waiter *w);
/* Completes every drain waiter with status (deferred). */
void tide__writer_complete_drains(tide__stream *s, int status);
/* connection_lost: completes drains with the write error and wait_closed with status. */
void tide__writer_connection_lost(tide__stream *s, int status);

/* True when a drain would complete with 0 at once: writing is not paused and the
 * connection is usable, i.e. writer.c's write_failure() finds nothing (asyncio's drain
 * returns without yielding then). Inline: asked by every drain_await. */
static inline bool tide__writer_drained(const tide__stream *s) {
    const tide_transport_t *t = s->transport;
    return !(s->flags & TIDE__S_WRITE_PAUSED) && s->reader.error == 0 && t != NULL &&
           t->error == 0 && !(t->state & (TIDE__T_ABORTED | TIDE__T_CLOSING));
}

/* ---- stream_protocol.c ---- */

/* A new stream (not yet given to a transport), registered with the loop. */
tide__stream *tide__stream_new(tide_loop_t *loop, size_t limit);
/* Frees a stream that no transport holds (its connection was never made). */
void tide__stream_discard(tide__stream *s);
/* Queues the free once the stream is released, lost and idle. Call after anything
 * that may have made it so. Inline: until the stream is both released and lost,
 * which is all but its last moments, it is one test. */
void tide__stream_maybe_free_slow(tide__stream *s);

static inline void tide__stream_maybe_free(tide__stream *s) {
    if (TIDE__UNLIKELY((s->flags & (TIDE__S_RELEASED | TIDE__S_LOST)) ==
                       (TIDE__S_RELEASED | TIDE__S_LOST)))
        tide__stream_maybe_free_slow(s);
}

/* A limit is valid when positive and small enough for 2 * limit plus a read. */
static inline bool tide__stream_limit_ok(size_t limit) {
    return limit > 0 && limit <= SIZE_MAX / 8;
}

#endif
