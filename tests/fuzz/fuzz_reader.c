/* libFuzzer target: the stream reader (tide_reader_new and friends, callback style)
 * checked against a model of what it must hold.
 *
 * The input is a script: each step feeds a chunk, ends the stream, stores an error,
 * starts one of the reads (read n, read-all, readexactly, readuntil, readuntil_any,
 * readline, discard_until), skips, peeks, runs the loop or frees the reader; read
 * callbacks take their own steps from the same script (free the reader, start the
 * next read, feed, end the stream). The model is the list of every byte fed and how
 * many were consumed; each completion is compared with what include/tide/stream.h
 * says the read gives for that state (status, length, bytes), the bytes still
 * buffered must always be the model's unconsumed tail, a read the model says can
 * finish must have finished once the loop ran, and no callback may run inside a call
 * the harness made. Any mismatch abort()s, which libFuzzer reports as a crash; the
 * loop must close with 0 at the end of every input.
 *
 * Single-threaded: everything runs on the harness's loop, one input at a time. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "tide.h"

/* ---- the script ------------------------------------------------------------------------- */

typedef struct script {
    const uint8_t *p;
    size_t left;
} script;

/* The next script byte reduced to [0, bound), or 0 once the script is exhausted. */
static unsigned pick(script *s, unsigned bound) {
    if (s->left == 0)
        return 0;
    s->left--;
    return *s->p++ % bound;
}

/* Up to `want` raw script bytes. */
static const uint8_t *take(script *s, size_t want, size_t *got) {
    const uint8_t *p = s->p;
    *got = want < s->left ? want : s->left;
    s->p += *got;
    s->left -= *got;
    return p;
}

/* ---- the model ---------------------------------------------------------------------------- */

enum { K_READ, K_ALL, K_EXACTLY, K_UNTIL, K_LINE, K_DISCARD, K_KINDS };

#define MAX_SEPS 3
#define MAX_SEPLEN 4

typedef struct pending {
    bool active;
    int kind;
    size_t n;
    size_t nseps;
    unsigned char sep[MAX_SEPS][MAX_SEPLEN];
    size_t seplen[MAX_SEPS];
} pending;

typedef struct model {
    tide_loop_t *loop;
    tide_reader_t *reader;
    script *in;
    unsigned char *fed; /* every byte fed to the current reader */
    size_t len, cap;
    size_t pos; /* bytes consumed (delivered, discarded or skipped) */
    size_t limit;
    bool eof;
    int error;
    pending op;
    int in_call; /* > 0 while the harness takes a step (calls the reader) */
    unsigned completions;
} model;

/* What the read in m->op gives now, per include/tide/stream.h. */
typedef struct outcome {
    int status;
    size_t len;     /* handed to the callback */
    size_t consume; /* removed from the buffer */
    bool with_data; /* the callback's data are the consumed bytes */
} outcome;

/* TIDE_FUZZ_TRACE=1 in the environment prints every step (to read a reproducer). */
static bool tracing;
#define TRACE(...)                                                                                 \
    do {                                                                                           \
        if (tracing)                                                                               \
            fprintf(stderr, __VA_ARGS__);                                                          \
    } while (0)

static void append(model *m, const void *data, size_t n) {
    if (n == 0)
        return;
    if (m->len + n > m->cap) {
        size_t cap = (m->len + n) * 2;
        unsigned char *p = realloc(m->fed, cap);
        REQUIRE(p != NULL);
        m->fed = p;
        m->cap = cap;
    }
    memcpy(m->fed + m->len, data, n);
    m->len += n;
}

/* The stream ended before the read was satisfied: everything buffered is handed over,
 * with the error, or TIDE_EINCOMPLETE for a cut record, or TIDE_EOF when empty. */
static void ended_short(const model *m, outcome *o) {
    size_t avail = m->len - m->pos;
    o->len = o->consume = avail;
    o->with_data = avail > 0;
    o->status = m->error ? m->error : avail > 0 ? TIDE_EINCOMPLETE : TIDE_EOF;
}

/* The separator read: the match that ends first wins (the shorter one on a tie); the
 * limit bounds the bytes before the separator. */
static bool expect_sep(const model *m, outcome *o) {
    const pending *op = &m->op;
    const unsigned char *data = m->fed + m->pos;
    size_t avail = m->len - m->pos;
    bool ended = m->eof || m->error != 0;
    size_t maxlen = 0;
    for (size_t i = 0; i < op->nseps; i++)
        maxlen = op->seplen[i] > maxlen ? op->seplen[i] : maxlen;
    for (size_t end = 1; end <= avail; end++) {
        size_t best = 0;
        for (size_t i = 0; i < op->nseps; i++) {
            size_t sl = op->seplen[i];
            if (sl <= end && memcmp(data + end - sl, op->sep[i], sl) == 0 && (!best || sl < best))
                best = sl;
        }
        if (best == 0)
            continue;
        if (op->kind != K_DISCARD && end - best > m->limit) {
            o->status = TIDE_ELIMIT;
            o->len = end;
            return true;
        }
        o->len = o->consume = end;
        o->with_data = op->kind != K_DISCARD;
        return true;
    }
    if (op->kind == K_DISCARD) {
        if (!ended)
            return false;
        ended_short(m, o);
        o->with_data = false;
        return true;
    }
    /* No separator: once none can start within the limit any more, it is a limit
     * overrun, even at the end of the stream (nothing is consumed). */
    size_t first_start = avail + 1 > maxlen ? avail + 1 - maxlen : 0;
    if (first_start > m->limit) {
        o->status = TIDE_ELIMIT;
        return true;
    }
    if (!ended)
        return false;
    if (op->kind == K_LINE && !m->error && avail > 0) {
        o->len = o->consume = avail; /* the last line, without its newline */
        o->with_data = true;
        return true;
    }
    ended_short(m, o);
    return true;
}

/* Whether the pending read can complete in the model's state, and how. */
static bool expect(const model *m, outcome *o) {
    size_t avail = m->len - m->pos;
    size_t n = m->op.n;
    bool ended = m->eof || m->error != 0;
    memset(o, 0, sizeof(*o));
    if (m->op.kind == K_UNTIL || m->op.kind == K_LINE || m->op.kind == K_DISCARD)
        return expect_sep(m, o);
    /* When the read is satisfied and with how many bytes: read n takes what is there
     * (it waits for one byte unless n is 0), readexactly needs n, read-all takes
     * everything once the stream ended, with its error if any. */
    bool satisfied;
    size_t take;
    if (m->op.kind == K_READ) {
        take = avail < n ? avail : n;
        satisfied = n == 0 || avail > 0;
    } else if (m->op.kind == K_EXACTLY) {
        take = n;
        satisfied = avail >= n;
    } else {
        take = avail;
        satisfied = ended;
        o->status = m->error;
    }
    if (satisfied) {
        o->len = o->consume = take;
        o->with_data = take > 0;
        return true;
    }
    if (ended)
        ended_short(m, o);
    return ended;
}

/* The reader's buffer is the model's unconsumed tail (only its end while a
 * discard_until drops bytes as it waits). */
static void check_buffer(model *m) {
    if (m->reader == NULL)
        return;
    size_t n = 1234;
    const unsigned char *p = tide_reader_peek(m->reader, &n);
    size_t avail = m->len - m->pos;
    REQUIRE(n == tide_reader_buffered(m->reader));
    if (m->op.active && m->op.kind == K_DISCARD)
        REQUIRE(n <= avail);
    else
        REQUIRE(n == avail);
    REQUIRE((n == 0) == (p == NULL));
    if (n > 0)
        REQUIRE(memcmp(p, m->fed + m->len - n, n) == 0);
    REQUIRE(tide_reader_at_eof(m->reader) == (m->eof && n == 0));
    REQUIRE(tide_reader_exception(m->reader) == m->error);
    REQUIRE(tide_reader_get_limit(m->reader) == m->limit);
    REQUIRE(tide_reader_get_writer(m->reader) == NULL);
}

/* ---- steps --------------------------------------------------------------------------------- */

static void step(model *m, bool in_callback);

static void on_read(tide_reader_t *r, int status, const void *data, size_t len, void *arg) {
    model *m = arg;
    outcome o;
    REQUIRE(m->in_call == 0); /* never inside the harness's own call */
    REQUIRE(r == m->reader && m->op.active);
    REQUIRE(expect(m, &o));
    TRACE("  completion: status %d len %zu (model: status %d len %zu consume %zu)\n", status, len,
          o.status, o.len, o.consume);
    REQUIRE(status == o.status);
    REQUIRE(len == o.len);
    if (o.with_data)
        REQUIRE(data != NULL && memcmp(data, m->fed + m->pos, len) == 0);
    else if (o.len > 0)
        REQUIRE(data == NULL);
    m->pos += o.consume;
    m->op.active = false;
    m->completions++;
    /* The reader already dropped the consumed bytes. */
    check_buffer(m);
    /* The callback's own steps: zero to three of them. */
    for (unsigned i = pick(m->in, 4); i > 0 && m->reader != NULL; i--)
        step(m, true);
}

/* Starts a read of the given kind, and checks the starting call's result. */
static void start_read(model *m, int kind) {
    pending op;
    memset(&op, 0, sizeof(op));
    op.kind = kind;
    script *in = m->in;
    unsigned shape = pick(in, 16);
    if (kind == K_ALL)
        op.n = TIDE_READ_ALL;
    else if (kind == K_READ || kind == K_EXACTLY)
        op.n = pick(in, 64);
    bool bad = false; /* an empty separator or none: TIDE_EINVAL */
    if (kind == K_UNTIL || kind == K_DISCARD) {
        op.nseps = kind == K_UNTIL ? 1 + pick(in, MAX_SEPS) : 1;
        for (size_t i = 0; i < op.nseps; i++) {
            size_t got;
            const uint8_t *b = take(in, 1 + pick(in, MAX_SEPLEN), &got);
            memcpy(op.sep[i], b, got);
            op.seplen[i] = got;
            bad = bad || got == 0;
        }
        bad = bad || shape == 14;
    } else if (kind == K_LINE) {
        op.nseps = 1;
        op.sep[0][0] = '\n';
        op.seplen[0] = 1;
    }
    tide_iovec_t seps[MAX_SEPS];
    for (size_t i = 0; i < op.nseps; i++) {
        seps[i].base = op.sep[i];
        seps[i].len = op.seplen[i];
    }
    if (shape == 14 && kind == K_UNTIL && op.nseps > 0)
        seps[0].len = 0;
    bool any = kind == K_UNTIL && op.nseps > 1;
    int rc;
    switch (kind) {
    case K_READ:
    case K_ALL:
        rc = tide_reader_read(m->reader, op.n, on_read, m);
        break;
    case K_EXACTLY:
        rc = tide_reader_readexactly(m->reader, op.n, on_read, m);
        break;
    case K_LINE:
        rc = tide_reader_readline(m->reader, on_read, m);
        break;
    case K_DISCARD:
        rc = tide_reader_discard_until(m->reader, seps[0].base, shape == 14 ? 0 : seps[0].len,
                                       on_read, m);
        break;
    default:
        rc =
            any ? tide_reader_readuntil_any(m->reader, seps, shape == 13 ? 0 : op.nseps, on_read, m)
                : tide_reader_readuntil(m->reader, seps[0].base, seps[0].len, on_read, m);
        bad = bad || (any && shape == 13);
        break;
    }
    TRACE("start kind %d n %zu nseps %zu seplen %zu%s -> %d\n", kind, op.n, op.nseps, op.seplen[0],
          any ? " (any)" : "", rc);
    if (bad) {
        REQUIRE(rc == TIDE_EINVAL);
    } else if (m->op.active) {
        REQUIRE(rc == TIDE_EBUSY); /* the pending read goes on */
    } else {
        REQUIRE(rc == 0);
        m->op = op;
        m->op.active = true;
    }
}

static void run_loop(model *m) {
    /* A completion may start a read that completes too: run until nothing happens
     * (bounded: a completion starts another read only by taking script bytes). */
    for (;;) {
        unsigned before = m->completions;
        REQUIRE(tide_loop_run(m->loop, TIDE_RUN_NOWAIT) == 0);
        if (m->completions == before)
            break;
    }
    outcome o;
    if (m->reader != NULL && m->op.active)
        REQUIRE(!expect(m, &o)); /* a read that can finish did */
}

static const int errors[] = {TIDE_ECONNRESET, TIDE_ETIMEOUT, TIDE_ECANCELLED, TIDE_EPIPE, 0, 7};

static void do_step(model *m, bool in_callback) {
    script *in = m->in;
    int rc;
    size_t got;
    switch (pick(in, 16)) {
    case 0:
    case 1:
    case 2: {
        const uint8_t *b = take(in, pick(in, 256), &got);
        rc = tide_reader_feed_data(m->reader, b, got);
        TRACE("feed %zu -> %d\n", got, rc);
        /* After feed_eof even an empty feed is refused. */
        if (m->eof) {
            REQUIRE(rc == TIDE_EINVAL);
        } else {
            REQUIRE(rc == 0);
            append(m, b, got);
        }
        break;
    }
    case 3:
        tide_reader_feed_eof(m->reader);
        TRACE("feed_eof\n");
        m->eof = true;
        break;
    case 4: {
        int err = errors[pick(in, sizeof(errors) / sizeof(errors[0]))];
        rc = tide_reader_set_exception(m->reader, err);
        TRACE("set_exception %d -> %d\n", err, rc);
        if (err >= 0) {
            REQUIRE(rc == TIDE_EINVAL);
        } else {
            REQUIRE(rc == 0);
            m->error = err;
        }
        break;
    }
    case 5: {
        size_t n = pick(in, 64);
        rc = tide_reader_skip(m->reader, n);
        TRACE("skip %zu -> %d\n", n, rc);
        if (m->op.active) {
            REQUIRE(rc == TIDE_EBUSY);
        } else if (n > m->len - m->pos) {
            REQUIRE(rc == TIDE_EINVAL);
        } else {
            REQUIRE(rc == 0);
            m->pos += n;
        }
        break;
    }
    case 6:
        /* Frees the reader, from a callback too: a pending read is dropped. */
        tide_reader_free(m->reader);
        TRACE("free\n");
        m->reader = NULL;
        m->op.active = false;
        return;
    case 7:
    case 8:
        if (!in_callback) {
            TRACE("run loop\n");
            m->in_call--; /* callbacks are expected now */
            run_loop(m);
            m->in_call++;
            break;
        }
        /* Inside a callback the loop refuses to run again. */
        REQUIRE(tide_loop_run(m->loop, TIDE_RUN_NOWAIT) == TIDE_EBUSY);
        break;
    default:
        start_read(m, (int)pick(in, K_KINDS));
        break;
    }
    check_buffer(m);
}

/* One step; no read callback may run inside it, except while it runs the loop. */
static void step(model *m, bool in_callback) {
    m->in_call++;
    do_step(m, in_callback);
    m->in_call--;
}

/* A fresh reader with a small limit (1 to 32) so that limits are hit often. */
static void new_reader(model *m) {
    m->len = m->pos = 0;
    m->eof = false;
    m->error = 0;
    m->op.active = false;
    m->limit = 1 + pick(m->in, 32);
    TRACE("new reader, limit %zu\n", m->limit);
    REQUIRE(tide_reader_new(m->loop, m->limit, &m->reader) == 0);
    check_buffer(m);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    tracing = getenv("TIDE_FUZZ_TRACE") != NULL;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    script in = {data, size};
    model m;
    memset(&m, 0, sizeof(m));
    m.in = &in;
    /* Never NULL, so that the model's pointer arithmetic is defined when empty. */
    m.cap = 64;
    m.fed = malloc(m.cap);
    REQUIRE(m.fed != NULL);
    REQUIRE(tide_loop_new(&m.loop) == 0);
    tide_loop_set_log_handler(m.loop, fuzz_quiet_log, NULL);
    tide_reader_t *none = (tide_reader_t *)&m;
    REQUIRE(tide_reader_new(m.loop, 0, &none) == TIDE_EINVAL && none == NULL);
    new_reader(&m);
    while (in.left > 0) {
        if (m.reader == NULL)
            new_reader(&m);
        else
            step(&m, false);
    }
    run_loop(&m);
    tide_reader_free(m.reader);
    REQUIRE(tide_loop_run(m.loop, TIDE_RUN_NOWAIT) == 0);
    REQUIRE(tide_loop_close(m.loop) == 0);
    free(m.fed);
    return 0;
}
