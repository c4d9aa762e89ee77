/* The stream reader: asyncio's StreamReader over one contiguous buffer, with at most
 * one pending read whose completion is a deferred call embedded in the reader.
 *
 * Every state change (bytes in, EOF, error, a read started, bytes consumed) goes
 * through progress(): it checks whether the pending read can finish now (then its
 * completion is queued) and applies read flow control (asyncio 6.2: pause above
 * 2 x limit, resume at or below the limit or while a read waits for more). The
 * completion evaluates the read again when it runs: since only the read itself
 * consumes, the outcome is the one that was seen, or a longer result.
 *
 * Reentrancy: read callbacks may call anything on the reader, including feed_data,
 * a new read and tide_reader_free. The bytes a callback receives point into the
 * buffer, so while one runs (or a hold keeps them, for the await forms) the buffer is
 * never compacted nor reset, and a buffer that must grow is replaced but kept until
 * the callback returns; freeing waits too.
 * Everything runs on the loop's thread. */
#include <stdlib.h>
#include <string.h>

#include "streams/streams_int.h"

/* The least free space offered to the transport for one read, at first; it doubles
 * (up to READ_CHUNK_MAX) each time a read fills all it was offered, so busy streams
 * read in large chunks and idle ones keep a small buffer. */
#define READ_CHUNK ((size_t)16 * 1024)
#define READ_CHUNK_MAX ((size_t)256 * 1024)
/* An empty buffer larger than this is released rather than kept for the next read. */
#define KEEP_MAX ((size_t)256 * 1024)

typedef struct result {
    int status;
    size_t len;     /* handed to the callback */
    size_t consume; /* removed from the buffer */
    bool with_data; /* data points at the buffer's front; otherwise NULL */
} result;

static void deliver(tide__call *call);

static size_t avail(const tide_reader_t *r) { return r->buf.len; }

static unsigned char *front(const tide_reader_t *r) { return tide__buf_begin(&r->buf); }

/* ---- the buffer ---------------------------------------------------------------------- */

/* Makes `want` free bytes at the tail. While a callback holds data from the current
 * block (and none was kept yet), the bytes must not move: a larger block replaces it
 * and the old one is kept until the callback returns. */
static int reserve(tide_reader_t *r, size_t want) {
    bool in_use = r->lending > 0 && r->lent_buf == NULL;
    return tide__buf_reserve(&r->buf, want, READ_CHUNK, in_use ? &r->lent_buf : NULL);
}

/* An empty buffer starts again at its front (or is released when large). */
static void settle(tide_reader_t *r) {
    if (r->lending == 0)
        tide__buf_settle(&r->buf, KEEP_MAX);
}

/* ---- evaluating the pending read --------------------------------------------------------- */

/* Searches the separators from op->offset; the match that ends first wins, and on a
 * tie the shorter separator (asyncio 3.13). Without a match, op->offset advances to
 * the first byte that could still start one. */
static bool find(tide_reader_t *r, size_t *start, size_t *end) {
    tide__read_op *op = &r->op;
    size_t n = avail(r);
    const unsigned char *base = front(r);
    if (n - op->offset < op->min_len)
        return false;
    size_t best_end = SIZE_MAX, best_len = 0;
    for (size_t i = 0; i < op->nseps; i++) {
        const tide__sep *sep = &r->seps[i];
        if (n - op->offset < sep->len)
            continue;
        const unsigned char *p = memmem(base + op->offset, n - op->offset, sep->p, sep->len);
        if (p == NULL)
            continue;
        size_t e = (size_t)(p - base) + sep->len;
        if (e < best_end || (e == best_end && sep->len < best_len)) {
            best_end = e;
            best_len = sep->len;
        }
    }
    if (best_end != SIZE_MAX) {
        *start = best_end - best_len;
        *end = best_end;
        /* No match can end earlier from here on, so the completion's re-evaluation
         * finds this one at once instead of searching the record again. */
        op->offset = *start;
        return true;
    }
    op->offset = n + 1 > op->max_len ? n + 1 - op->max_len : 0;
    return false;
}

/* The stream ended (EOF or error) before the read was satisfied: hand over what is
 * there. `total` decides between a clean end at a boundary and a cut record. */
static void finish_short(const tide_reader_t *r, result *res, size_t total) {
    size_t n = avail(r);
    res->len = res->consume = n;
    res->with_data = n > 0;
    if (r->error)
        res->status = r->error;
    else
        res->status = total > 0 ? TIDE_EINCOMPLETE : TIDE_EOF;
}

static bool evaluate_sep(tide_reader_t *r, result *res, bool ended) {
    tide__read_op *op = &r->op;
    size_t start, end;
    if (find(r, &start, &end)) {
        if (op->kind == TIDE__RD_DISCARD) {
            res->len = op->n + end;
            res->consume = end;
        } else if (start > r->limit || end > op->cap) {
            res->status = TIDE_ELIMIT;
            res->len = end;
        } else {
            res->len = res->consume = end;
            res->with_data = true;
        }
        return true;
    }
    if (op->kind == TIDE__RD_DISCARD) {
        /* Drop now what can hold no separator start, so the buffer stays bounded. The
         * tail that could still start one stays until the completion runs, even once
         * the stream ended: bytes fed after a stored error may yet complete it. */
        tide__buf_consume(&r->buf, op->offset);
        op->n += op->offset;
        op->offset = 0;
        if (!ended)
            return false;
        res->consume = avail(r);
        res->len = op->n + res->consume;
        res->status = r->error ? r->error : (res->len > 0 ? TIDE_EINCOMPLETE : TIDE_EOF);
        return true;
    }
    /* Beyond the limit, or past the cap even for a separator at the first byte that
     * could start one, or (once the stream ended) more than the cap to hand over. */
    if (op->offset > r->limit || (!ended && op->offset + op->min_len > op->cap) ||
        (ended && avail(r) > op->cap)) {
        res->status = TIDE_ELIMIT;
        return true;
    }
    if (!ended)
        return false;
    if (op->kind == TIDE__RD_LINE && !r->error && avail(r) > 0) {
        /* readline hands over the last, unterminated line as a line. */
        res->len = res->consume = avail(r);
        res->with_data = true;
        return true;
    }
    finish_short(r, res, avail(r));
    return true;
}

/* evaluate() for every read but the plain read with bytes there or none yet. */
TIDE__NOINLINE static bool evaluate_slow(tide_reader_t *r, result *res) {
    tide__read_op *op = &r->op;
    size_t n = avail(r);
    bool ended = r->eof || r->error != 0;
    memset(res, 0, sizeof(*res));
    switch (op->kind) {
    case TIDE__RD_READ:
    case TIDE__RD_PEEK: /* a read of everything buffered that consumes nothing */
        if (op->kind == TIDE__RD_READ && op->n == 0)
            return true;
        if (n > 0) {
            res->len = op->kind == TIDE__RD_READ && op->n < n ? op->n : n;
            res->consume = op->kind == TIDE__RD_READ ? res->len : 0;
            res->with_data = true;
            return true;
        }
        if (!ended)
            return false;
        finish_short(r, res, 0);
        return true;
    case TIDE__RD_ALL:
        if (!ended)
            return false;
        res->len = res->consume = n;
        res->with_data = n > 0;
        res->status = r->error;
        return true;
    case TIDE__RD_EXACTLY:
        if (n >= op->n) {
            res->len = res->consume = op->n;
            res->with_data = op->n > 0;
            return true;
        }
        if (!ended)
            return false;
        finish_short(r, res, n);
        return true;
    case TIDE__RD_UNTIL:
    case TIDE__RD_LINE:
    case TIDE__RD_DISCARD:
        return evaluate_sep(r, res, ended);
    default:
        return false;
    }
}

/* Whether the pending read can finish now, and how. Only DISCARD changes the buffer.
 * The plain read (a stream's usual loop) is decided here in a few tests. */
static bool evaluate(tide_reader_t *r, result *res) {
    if (TIDE__LIKELY(r->op.kind == TIDE__RD_READ && r->op.n != 0)) {
        size_t n = avail(r);
        if (n > 0) {
            res->status = 0;
            res->len = res->consume = n < r->op.n ? n : r->op.n;
            res->with_data = true;
            return true;
        }
        if (!r->eof && r->error == 0)
            return false;
    }
    return evaluate_slow(r, res);
}

/* ---- flow control and progress ----------------------------------------------------------- */

static bool waiting(const tide_reader_t *r) {
    return r->op.kind != TIDE__RD_NONE && !tide__call_pending(&r->call);
}

TIDE__NOINLINE static void flow(tide_reader_t *r) {
    if (r->transport == NULL)
        return;
    size_t n = avail(r);
    if (waiting(r) || n <= r->limit) {
        /* A read that waits must get its bytes even above the pause threshold. */
        if (r->paused) {
            r->paused = false;
            tide_transport_resume_reading(r->transport);
        }
    } else if (n > 2 * r->limit && !r->paused) {
        r->paused = true;
        tide_transport_pause_reading(r->transport);
    }
}

/* A plain read waiting on an empty reader that has not ended: a stream's usual state
 * between reads, in which nothing can finish. */
static bool starved(const tide_reader_t *r) {
    return r->op.kind == TIDE__RD_READ && r->op.n != 0 && avail(r) == 0 && !r->eof && r->error == 0;
}

/* Queues the pending read's completion if it can finish now. */
TIDE__NOINLINE static void evaluate_pending(tide_reader_t *r) {
    result res;
    if (evaluate(r, &res))
        tide__loop_defer(r->loop, &r->call);
}

/* Every state change comes here, so the common case (no read waiting, or one that
 * cannot finish yet; a buffer that holds bytes or is settled; neither paused nor
 * above twice the limit) is a handful of tests. Flow control can only change when
 * the reader is paused or holds more than twice the limit. */
static void progress(tide_reader_t *r) {
    if (TIDE__LIKELY(starved(r))) {
        /* Nothing can finish; a stream's usual state once a read was handed over. */
        if (!r->paused) {
            settle(r);
            return;
        }
    } else if (waiting(r)) {
        evaluate_pending(r);
    }
    settle(r);
    if (TIDE__UNLIKELY(r->paused || avail(r) > 2 * r->limit))
        flow(r);
}

static void reader_release(tide_reader_t *r) {
    tide__reader_fini(r);
    free(r);
}

/* Runs a read callback: its data stays where it is until the callback returns, and
 * whatever the callback changed is evaluated once, afterwards. */
static void run_completion(tide_reader_t *r, tide_read_cb cb, int status, const void *data,
                           size_t len, void *arg) {
    bool outer = r->completing; /* a task's read finished inside another's callback */
    r->lending++;
    r->completing = true;
    cb(r, status, data, len, arg);
    r->completing = outer;
    if (TIDE__UNLIKELY(r->lending > 1)) {
        /* The callback took a hold that outlives it, or this one ran inside another
         * (a task resumed from a callback read on at once): the unhold below would
         * not evaluate now, and the reads it started must not wait for that hold. */
        r->lending--;
        progress(r);
        return;
    }
    tide__reader_unhold(r);
}

/* Finishes the pending read with the outcome evaluate() found just now. */
static void complete(tide_reader_t *r, const result *res) {
    tide_read_cb cb = r->op.cb;
    void *arg = r->op.arg;
    const void *data = res->with_data ? front(r) : NULL;
    /* Finish the bookkeeping first: the callback may start the next read. */
    r->op.kind = TIDE__RD_NONE;
    tide__buf_consume(&r->buf, res->consume);
    run_completion(r, cb, res->status, data, res->len, arg);
}

/* The deferred completion of the pending read. */
static void deliver(tide__call *call) {
    tide_reader_t *r = TIDE__QUEUE_DATA(call, tide_reader_t, call);
    result res;
    if (r->op.kind == TIDE__RD_NONE)
        return;
    if (!evaluate(r, &res)) {
        progress(r);
        return;
    }
    complete(r, &res);
}

/* progress() for a change that comes from the transport's own event (bytes read,
 * EOF), never from inside a user's call: a read it satisfies completes right here,
 * without the hop through the ready queue. */
static void progress_event(tide_reader_t *r) {
    if (waiting(r)) {
        result res;
        if (evaluate(r, &res)) {
            complete(r, &res); /* its unhold settles and applies flow control */
            return;
        }
    }
    progress(r);
}

/* ---- starting reads ------------------------------------------------------------------------ */

static int check_start(const tide_reader_t *r, tide_read_cb cb) {
    if (r == NULL || cb == NULL)
        return TIDE_EINVAL;
    if (r->free_wanted)
        return TIDE_ECLOSED;
    if (r->op.kind != TIDE__RD_NONE)
        return TIDE_EBUSY;
    return 0;
}

/* A task's read whose bytes are buffered finishes inside the call, as asyncio's
 * reads return without yielding when the buffer holds what they ask for: the task
 * then does not suspend (its waiter is complete before it waits). The completion is
 * the await layer's own, so no user callback runs inside the user's call. Any other
 * outcome (the end, an error, a record too long) still completes from the loop, as
 * one found by the readable event does: by then what was on its way behind the
 * buffered bytes (an EOF that makes a last, unterminated line whole) has arrived. */
TIDE__NOINLINE static void start_await(tide_reader_t *r) {
    result res;
    if (evaluate(r, &res) && res.status == 0)
        complete(r, &res);
    else
        progress(r);
}

static void start(tide_reader_t *r, int kind, size_t n, tide_read_cb cb, void *arg) {
    r->op.kind = kind;
    r->op.n = n;
    r->op.offset = 0;
    r->op.cb = cb;
    r->op.arg = arg;
    /* A read started from a read callback (a stream's usual loop) is evaluated once,
     * when the callback has returned (run_completion). A plain read on an empty, open
     * reader that is not paused has nothing to evaluate: whatever emptied the buffer
     * settled it already. */
    if (cb != tide__read_wait_done) {
        if (!r->completing && !(starved(r) && !r->paused))
            progress(r);
    } else if (!(starved(r) && !r->paused)) {
        start_await(r); /* even inside a callback: a task resumed from one reads on */
    }
}

static int validate_seps(const tide_iovec_t *seps, size_t n, size_t *total) {
    if (seps == NULL || n == 0)
        return TIDE_EINVAL;
    size_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (seps[i].base == NULL || seps[i].len == 0 || seps[i].len > SIZE_MAX / 2 - sum)
            return TIDE_EINVAL;
        sum += seps[i].len;
    }
    *total = sum;
    return 0;
}

/* Copies the separators into the reader's storage, reused from read to read. */
static int store_seps(tide_reader_t *r, const tide_iovec_t *seps, size_t n, size_t total) {
    if (n > r->seps_cap) {
        if (n > SIZE_MAX / sizeof(tide__sep))
            return TIDE_ENOMEM;
        tide__sep *v = realloc(r->seps, n * sizeof(*v));
        if (v == NULL)
            return TIDE_ENOMEM;
        r->seps = v;
        r->seps_cap = n;
    }
    if (total > r->sepbytes_cap) {
        unsigned char *b = realloc(r->sepbytes, total);
        if (b == NULL)
            return TIDE_ENOMEM;
        r->sepbytes = b;
        r->sepbytes_cap = total;
    }
    unsigned char *p = r->sepbytes;
    size_t min_len = SIZE_MAX, max_len = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(p, seps[i].base, seps[i].len);
        r->seps[i].p = p;
        r->seps[i].len = seps[i].len;
        p += seps[i].len;
        if (seps[i].len < min_len)
            min_len = seps[i].len;
        if (seps[i].len > max_len)
            max_len = seps[i].len;
    }
    r->op.nseps = n;
    r->op.min_len = min_len;
    r->op.max_len = max_len;
    return 0;
}

static int start_sep(tide_reader_t *r, int kind, const tide_iovec_t *seps, size_t n,
                     size_t cap, tide_read_cb cb, void *arg) {
    size_t total = 0;
    int rc = cap > 0 ? validate_seps(seps, n, &total) : TIDE_EINVAL;
    if (rc == 0)
        rc = check_start(r, cb);
    if (rc == 0)
        rc = store_seps(r, seps, n, total);
    if (rc != 0)
        return rc;
    r->op.cap = cap; /* before start(): it evaluates at once */
    start(r, kind, 0, cb, arg);
    return 0;
}

static const tide_iovec_t newline = {"\n", 1};

int tide__reader_read_record(tide_reader_t *r, bool line, const tide_iovec_t *seps, size_t n,
                             size_t cap, tide_read_cb cb, void *arg) {
    if (line)
        return start_sep(r, TIDE__RD_LINE, &newline, 1, cap, cb, arg);
    return start_sep(r, TIDE__RD_UNTIL, seps, n, cap, cb, arg);
}

int tide_reader_read(tide_reader_t *r, size_t n, tide_read_cb cb, void *arg) {
    int rc = check_start(r, cb);
    if (rc != 0)
        return rc;
    r->op.into = NULL;
    start(r, n == TIDE_READ_ALL ? TIDE__RD_ALL : TIDE__RD_READ, n, cb, arg);
    return 0;
}

int tide__reader_read_into(tide_reader_t *r, void *into, size_t n, tide_read_cb cb, void *arg) {
    int rc = check_start(r, cb);
    if (rc != 0)
        return rc;
    r->op.into = n > 0 && n != TIDE_READ_ALL ? into : NULL;
    start(r, n == TIDE_READ_ALL ? TIDE__RD_ALL : TIDE__RD_READ, n, cb, arg);
    return 0;
}

int tide__reader_peek(tide_reader_t *r, tide_read_cb cb, void *arg) {
    int rc = check_start(r, cb);
    if (rc != 0)
        return rc;
    start(r, TIDE__RD_PEEK, 0, cb, arg);
    return 0;
}

void tide__reader_end_loan(tide_reader_t *r) {
    if (!r->peek_held)
        return;
    r->peek_held = false;
    tide__reader_unhold(r);
}

int tide_reader_consume(tide_reader_t *r, size_t n) {
    int rc = tide_reader_skip(r, n);
    if (rc == 0 && r->peek_held) {
        r->peek_held = false;
        tide__reader_unhold(r);
    }
    return rc;
}

int tide_reader_readexactly(tide_reader_t *r, size_t n, tide_read_cb cb, void *arg) {
    int rc = check_start(r, cb);
    if (rc != 0)
        return rc;
    start(r, TIDE__RD_EXACTLY, n, cb, arg);
    return 0;
}

int tide_reader_readuntil(tide_reader_t *r, const void *sep, size_t seplen, tide_read_cb cb,
                          void *arg) {
    tide_iovec_t one = {sep, seplen};
    return start_sep(r, TIDE__RD_UNTIL, &one, 1, SIZE_MAX, cb, arg);
}

int tide_reader_readuntil_any(tide_reader_t *r, const tide_iovec_t *seps, size_t n, tide_read_cb cb,
                              void *arg) {
    return start_sep(r, TIDE__RD_UNTIL, seps, n, SIZE_MAX, cb, arg);
}

int tide_reader_readline(tide_reader_t *r, tide_read_cb cb, void *arg) {
    return start_sep(r, TIDE__RD_LINE, &newline, 1, SIZE_MAX, cb, arg);
}

int tide_reader_discard_until(tide_reader_t *r, const void *sep, size_t seplen, tide_read_cb cb,
                              void *arg) {
    tide_iovec_t one = {sep, seplen};
    return start_sep(r, TIDE__RD_DISCARD, &one, 1, SIZE_MAX, cb, arg);
}

/* ---- the rest of the public reader --------------------------------------------------------- */

int tide_reader_skip(tide_reader_t *r, size_t n) {
    if (r == NULL)
        return TIDE_EINVAL;
    if (r->op.kind != TIDE__RD_NONE)
        return TIDE_EBUSY;
    if (n > avail(r))
        return TIDE_EINVAL;
    tide__buf_consume(&r->buf, n);
    progress(r);
    return 0;
}

const void *tide_reader_peek(const tide_reader_t *r, size_t *len) {
    size_t n = r ? avail(r) : 0;
    if (len)
        *len = n;
    return n ? front(r) : NULL;
}

size_t tide_reader_buffered(const tide_reader_t *r) { return r ? avail(r) : 0; }

size_t tide_reader_get_limit(const tide_reader_t *r) { return r ? r->limit : 0; }

bool tide_reader_at_eof(const tide_reader_t *r) { return r && r->eof && avail(r) == 0; }

int tide_reader_exception(const tide_reader_t *r) { return r ? r->error : TIDE_EINVAL; }

int tide_reader_set_exception(tide_reader_t *r, int err) {
    if (r == NULL || err >= 0)
        return TIDE_EINVAL;
    r->error = err;
    progress(r);
    return 0;
}

int tide_reader_feed_data(tide_reader_t *r, const void *data, size_t len) {
    if (r == NULL || (data == NULL && len > 0) || r->eof)
        return TIDE_EINVAL;
    if (len == 0)
        return 0;
    int rc = reserve(r, len);
    if (rc != 0)
        return rc;
    tide__buf_put(&r->buf, data, len);
    progress(r);
    return 0;
}

void tide_reader_feed_eof(tide_reader_t *r) {
    if (r == NULL || r->eof)
        return;
    r->eof = true;
    progress(r);
}

tide_writer_t *tide_reader_get_writer(const tide_reader_t *r) { return r ? r->stream : NULL; }

int tide_reader_new(tide_loop_t *loop, size_t limit, tide_reader_t **out) {
    if (out)
        *out = NULL;
    if (loop == NULL || out == NULL || !tide__stream_limit_ok(limit))
        return TIDE_EINVAL;
    tide_reader_t *r = malloc(sizeof(*r));
    if (r == NULL)
        return TIDE_ENOMEM;
    tide__reader_init(r, loop, limit, NULL);
    *out = r;
    return 0;
}

void tide_reader_free(tide_reader_t *r) {
    if (r == NULL)
        return;
    if (r->stream) {
        tide__log(r->loop, TIDE_LOG_WARNING,
                  "tide_reader_free on a connection's reader: close its writer instead");
        return;
    }
    tide__reader_cancel_pending(r);
    if (r->lending)
        r->free_wanted = true; /* deliver() frees it once the callback returns */
    else
        reader_release(r);
}

/* ---- internal ------------------------------------------------------------------------------ */

void tide__reader_init(tide_reader_t *r, tide_loop_t *loop, size_t limit, tide__stream *stream) {
    memset(r, 0, sizeof(*r));
    r->loop = loop;
    r->stream = stream;
    r->limit = limit;
    r->chunk = READ_CHUNK;
    tide__call_init(&r->call, deliver);
}

void tide__reader_fini(tide_reader_t *r) {
    tide__loop_undefer(&r->call);
    r->op.kind = TIDE__RD_NONE;
    tide__buf_free(&r->buf);
    free(r->lent_buf);
    free(r->seps);
    free(r->sepbytes);
    r->lent_buf = r->sepbytes = NULL;
    r->seps = NULL;
}

void *tide__reader_get_buffer(tide_reader_t *r, size_t sizehint, size_t *len) {
    if (r->op.kind == TIDE__RD_READ && r->op.into != NULL && avail(r) == 0 && waiting(r)) {
        /* Zero copy: the read waits on an empty reader, so its bytes can land in the
         * caller's memory, and nothing ahead of them can be in the way. */
        r->lent_into = r->op.into;
        *len = r->op.n;
        return r->lent_into;
    }
    r->lent_into = NULL;
    size_t want = sizehint > r->chunk ? sizehint : r->chunk;
    if (tide__buf_room(&r->buf) < want && reserve(r, want) != 0) {
        *len = 0;
        return NULL; /* the transport fails with TIDE_ENOBUFS */
    }
    r->offered = tide__buf_room(&r->buf);
    *len = r->offered;
    return tide__buf_end(&r->buf);
}

/* The transport read nbytes into the read's own memory (lent_into). */
static void updated_into(tide_reader_t *r, size_t nbytes) {
    unsigned char *into = r->lent_into;
    r->lent_into = NULL;
    if (r->op.kind == TIDE__RD_READ && r->op.into == into && waiting(r)) {
        tide_read_cb cb = r->op.cb;
        void *arg = r->op.arg;
        r->op.kind = TIDE__RD_NONE;
        if (TIDE__LIKELY(cb == tide__read_wait_done)) {
            /* A task's read_await: its bytes are in its own memory, so the reader lends
             * nothing and has nothing to evaluate; the task resumes right here. What it
             * does next (a read, a close) brings its own evaluation. */
            tide__read_wait *rw = arg;
            rw->len = nbytes;
            tide__task_wake_now(&rw->w, 0);
            return;
        }
        run_completion(r, cb, 0, into, nbytes, arg);
        return;
    }
    /* The read went away between the transport's get_buffer and this call (no
     * transport runs user code there, but never lose a byte): the bytes join the
     * buffer. The memory is still valid: a cancelled task resumes only later. */
    if (reserve(r, nbytes) != 0) {
        r->error = TIDE_ENOMEM;
        progress(r);
        return;
    }
    tide__buf_put(&r->buf, into, nbytes);
    progress_event(r);
}

void tide__reader_buffer_updated(tide_reader_t *r, size_t nbytes) {
    if (r->lent_into != NULL) {
        updated_into(r, nbytes);
        return;
    }
    if (nbytes >= r->offered && r->chunk < READ_CHUNK_MAX)
        r->chunk *= 2;
    r->buf.len += nbytes;
    progress_event(r);
}

void tide__reader_eof(tide_reader_t *r) {
    if (r->eof)
        return;
    r->eof = true;
    progress_event(r);
}

void tide__reader_connection_lost(tide_reader_t *r, int err) {
    r->transport = NULL;
    r->paused = false;
    if (err < 0) {
        if (r->error == 0)
            r->error = err;
    } else {
        r->eof = true;
    }
    progress(r);
}

void tide__reader_cancel_pending(tide_reader_t *r) {
    if (r->op.kind == TIDE__RD_NONE)
        return;
    tide__loop_undefer(&r->call);
    r->op.kind = TIDE__RD_NONE;
    progress(r);
    if (r->stream)
        tide__stream_maybe_free(r->stream);
}

bool tide__reader_pending(const tide_reader_t *r) { return r->op.kind != TIDE__RD_NONE; }

void tide__reader_switch_transport(tide_reader_t *r, tide_transport_t *t) {
    tide__buf_consume(&r->buf, r->buf.len);
    r->op.offset = 0;
    r->transport = t;
    /* The TLS transport inherits the pause we put on the old one; the buffer is empty
     * now, so flow() lifts it. */
    flow(r);
    settle(r);
}

void tide__reader_hold(tide_reader_t *r) { r->lending++; }

void tide__reader_unhold(tide_reader_t *r) {
    if (--r->lending > 0)
        return;
    if (TIDE__UNLIKELY(r->lent_buf != NULL)) {
        free(r->lent_buf);
        r->lent_buf = NULL;
    }
    if (r->free_wanted) {
        reader_release(r);
        return;
    }
    progress(r);
    if (r->stream)
        tide__stream_maybe_free(r->stream);
}
