/* Reader operations against input split at every byte boundary, in both styles
 * (callbacks and _await forms inside a task): every split, a byte at a time and all
 * of it buffered before the read must give the same transcript, which must be the
 * expected one (EOF before completion, lines of limit - 1, limit and limit + 1 bytes,
 * several and overlapping separators). Then each blocking _await call interrupted by
 * a cancel and by a deadline, with the object usable afterwards and no byte lost.
 * Single-threaded: everything runs on the test's loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support/support.h"
#include "support/streams.h"

/* Long enough for the test to see the call blocked first, short enough for ~20 uses. */
#define DEADLINE ts_scaled(0.05)

/* ---- the operations and their expected transcripts ----------------------------------------- */

enum op { OP_READ, OP_READALL, OP_EXACTLY, OP_LINE, OP_UNTIL, OP_ANY, OP_DISCARD };

/* A transcript has one entry per completion: the bytes (for read(n) without the '/',
 * since how they are cut depends on arrival), "~N" for a discard's count, then
 * "!EOF", "!INC" or "!LIM" for those statuses, then '/'. Once the chain stops, "(N)"
 * when N bytes are still buffered. Inputs never contain '/', '!' or '~'. */
typedef struct rcase {
    enum op op;
    size_t n; /* read / readexactly */
    const char *seps[3];
    size_t limit;
    const char *input;
    const char *expect;
} rcase;

static const rcase cases[] = {
    {OP_READ, 3, {0}, 8, "abcdefgh", "abcdefgh!EOF/"},
    {OP_READ, 3, {0}, 8, "", "!EOF/"},
    {OP_READALL, 0, {0}, 4, "ab\ncdefgh", "ab\ncdefgh/"},
    {OP_EXACTLY, 4, {0}, 8, "abcdefghij", "abcd/efgh/ij!INC/"},
    {OP_EXACTLY, 4, {0}, 8, "", "!EOF/"},
    /* limit 8: lines of limit - 1 and limit bytes pass, then a last line without \n. */
    {OP_LINE, 0, {0}, 8, "l1\n12345678\n1234567\nend", "l1\n/12345678\n/1234567\n/end/!EOF/"},
    /* limit + 1: refused, nothing consumed. */
    {OP_LINE, 0, {0}, 8, "ok\n123456789\nxy", "ok\n/!LIM/(12)"},
    {OP_UNTIL, 0, {"--"}, 8, "ab--12345678--x-", "ab--/12345678--/x-!INC/"},
    {OP_UNTIL, 0, {"--"}, 8, "1234567--123456789--", "1234567--/!LIM/(11)"},
    /* The match that ends first wins: "aa" inside "aaa". */
    {OP_ANY, 0, {"aa", "aaa"}, 8, "xaaayaaaab", "xaa/ayaa/aa/b!INC/"},
    /* Overlapping: "BCDE" starts before "DEF" and ends first. */
    {OP_ANY, 0, {"DEF", "BCDE"}, 8, "ABCDEFGDEFxBC", "ABCDE/FGDEF/xBC!INC/"},
    {OP_ANY, 0, {"DEF", "BCDE"}, 4, "1234DEFxxxxBCDE12345DEF", "1234DEF/xxxxBCDE/!LIM/(8)"},
    {OP_DISCARD, 0, {"--"}, 4, "ab--123456789--x", "~4/~11/~1!INC/"},
};
#define NCASES (sizeof cases / sizeof cases[0])

typedef struct run {
    const rcase *c;
    tide_reader_t *r;
    tide_iovec_t seps[3];
    size_t nseps;
    char out[256];
    size_t used;
    int ops;
    int done;
    int bad;       /* an inconsistency noticed inside a callback or the task */
    int first;     /* the interrupted call's status (blocked tests) */
    int entered;   /* the task is in (or past) its first blocking call */
    int interrupt; /* 0: none, 1: cancel, 2: deadline */
} run;

static void emit(run *x, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(x->out + x->used, sizeof x->out - x->used, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof x->out - x->used)
        x->bad = __LINE__;
    else
        x->used += (size_t)n;
}

/* Records one completion; stops the chain at the first non-zero status. */
static void note(run *x, int status, const void *data, size_t len) {
    const rcase *c = x->c;
    x->ops++;
    if (c->op == OP_DISCARD)
        emit(x, "~%zu", len);
    else if (status != TIDE_ELIMIT && len > 0)
        emit(x, "%.*s", (int)len, (const char *)data);
    if (c->op == OP_READ && status == 0 && (len == 0 || len > c->n))
        x->bad = __LINE__;
    if (status == TIDE_EOF)
        emit(x, "!EOF");
    else if (status == TIDE_EINCOMPLETE)
        emit(x, "!INC");
    else if (status == TIDE_ELIMIT)
        emit(x, "!LIM");
    else if (status != 0)
        emit(x, "!%d", status);
    if (c->op != OP_READ || status != 0)
        emit(x, "/");
    if (status != 0 || c->op == OP_READALL)
        x->done = 1;
    else if (x->ops > 32)
        x->bad = __LINE__;
}

static void on_read(tide_reader_t *r, int status, const void *data, size_t len, void *arg);

static int start_cb(run *x) {
    const rcase *c = x->c;
    switch (c->op) {
    case OP_READ: return tide_reader_read(x->r, c->n, on_read, x);
    case OP_READALL: return tide_reader_read(x->r, TIDE_READ_ALL, on_read, x);
    case OP_EXACTLY: return tide_reader_readexactly(x->r, c->n, on_read, x);
    case OP_LINE: return tide_reader_readline(x->r, on_read, x);
    case OP_UNTIL: return tide_reader_readuntil(x->r, c->seps[0], strlen(c->seps[0]), on_read, x);
    case OP_ANY: return tide_reader_readuntil_any(x->r, x->seps, x->nseps, on_read, x);
    case OP_DISCARD:
        return tide_reader_discard_until(x->r, c->seps[0], strlen(c->seps[0]), on_read, x);
    }
    return TIDE_EINVAL;
}

static void on_read(tide_reader_t *r, int status, const void *data, size_t len, void *arg) {
    (void)r;
    run *x = arg;
    if ((status == TIDE_ELIMIT || x->c->op == OP_DISCARD) ? data != NULL : (len > 0 && !data))
        x->bad = __LINE__;
    note(x, status, data, len);
    if (!x->done && start_cb(x) != 0)
        x->bad = __LINE__;
}

/* One _await call of the case's operation into buf (read-all loops to EOF). */
static int await_op(run *x, char *buf, size_t cap, size_t *len) {
    const rcase *c = x->c;
    switch (c->op) {
    case OP_READ: return tide_reader_read_await(x->r, buf, c->n, len);
    case OP_READALL: {
        size_t total = 0, n = 0;
        int rc;
        while ((rc = tide_reader_read_await(x->r, buf + total, cap - total, &n)) == 0)
            total += n;
        *len = total;
        return rc == TIDE_EOF ? 0 : rc;
    }
    case OP_EXACTLY: return tide_reader_readexactly_await(x->r, buf, c->n, len);
    case OP_LINE: return tide_reader_readline_await(x->r, buf, cap, len);
    case OP_UNTIL:
        return tide_reader_readuntil_await(x->r, c->seps[0], strlen(c->seps[0]), buf, cap, len);
    case OP_ANY: return tide_reader_readuntil_any_await(x->r, x->seps, x->nseps, buf, cap, len);
    case OP_DISCARD:
        return tide_reader_discard_until_await(x->r, c->seps[0], strlen(c->seps[0]), len);
    }
    return TIDE_EINVAL;
}

static int await_task(void *arg) {
    run *x = arg;
    char buf[64];
    size_t len = 99;
    x->entered = 1;
    if (x->interrupt) {
        /* Blocked with (at most) a prefix buffered that cannot complete the call. */
        size_t before = tide_reader_buffered(x->r);
        if (x->interrupt == 2 && tide_task_deadline_push(DEADLINE) != 0)
            return __LINE__;
        x->first = await_op(x, buf, sizeof buf, &len);
        if (x->interrupt == 2)
            tide_task_deadline_pop();
        if (len != 0 || tide__reader_pending(x->r) || tide_reader_buffered(x->r) < before)
            x->bad = __LINE__;
    }
    while (!x->done && !x->bad) {
        int rc = await_op(x, buf, sizeof buf, &len);
        note(x, rc, buf, len);
    }
    return 0;
}

static void run_init(run *x, tide_loop_t *loop, const rcase *c) {
    memset(x, 0, sizeof(*x));
    x->c = c;
    x->first = 1;
    for (; x->nseps < 3 && c->seps[x->nseps]; x->nseps++)
        x->seps[x->nseps] = (tide_iovec_t){c->seps[x->nseps], strlen(c->seps[x->nseps])};
    assert_int_equal(tide_reader_new(loop, c->limit, &x->r), 0);
}

static bool run_done(void *arg) { return ((run *)arg)->done || ((run *)arg)->bad; }
static bool interrupted(void *arg) { return ((run *)arg)->first != 1 || ((run *)arg)->bad; }

/* Checks the transcript (with what is left buffered) and frees the reader. */
static void run_finish(run *x, const char *what, int k) {
    size_t left = tide_reader_buffered(x->r);
    if (left)
        emit(x, "(%zu)", left);
    tide_reader_free(x->r);
    if (x->bad || strcmp(x->out, x->c->expect) != 0) {
        print_error("case %d (%s, k=%d): got \"%s\" (bad at line %d), want \"%s\"\n",
                    (int)(x->c - cases), what, k, x->out, x->bad, x->c->expect);
        fail();
    }
}

/* k in [0, len]: bytes [0, k) then [k, len); -1: a byte at a time; -2: all of it and the
 * EOF buffered before the first read starts. */
static void feed(tide_loop_t *loop, tide_reader_t *r, const char *in, int k) {
    size_t len = strlen(in);
    if (k >= 0) {
        assert_int_equal(tide_reader_feed_data(r, in, (size_t)k), 0);
        st_spin(loop, 2);
        assert_int_equal(tide_reader_feed_data(r, in + k, len - (size_t)k), 0);
    } else {
        for (size_t i = 0; i < len; i++) {
            assert_int_equal(tide_reader_feed_data(r, in + i, 1), 0);
            if (k == -1)
                st_spin(loop, 2);
        }
    }
    st_spin(loop, 2);
    tide_reader_feed_eof(r);
}

static void split_one(tide_loop_t *loop, const rcase *c, bool await, int k) {
    run x;
    run_init(&x, loop, c);
    ts_joined j = {.calls = 1};
    if (k == -2)
        feed(loop, x.r, c->input, k);
    if (await) {
        ts_spawn_joined(loop, await_task, &x, &j);
        st_spin(loop, 2); /* the task is now blocked in its first call (unless prefed) */
        assert_true(x.entered);
    } else {
        assert_int_equal(start_cb(&x), 0);
    }
    if (k != -2)
        feed(loop, x.r, c->input, k);
    ts_run_until(loop, run_done, &x, 5);
    ts_run_until_flag(loop, &j.calls, 5);
    assert_int_equal(j.result, 0);
    run_finish(&x, await ? "await" : "callback", k);
}

static void test_split(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    for (size_t i = 0; i < NCASES; i++) {
        int len = (int)strlen(cases[i].input);
        for (int style = 0; style < 2; style++)
            for (int k = -2; k <= len; k++)
                split_one(loop, &cases[i], style == 1, k);
    }
    ts_loop_close(loop);
}

/* The exact TIDE_ELIMIT results with the whole record buffered: the record's length,
 * nothing consumed, and skipping it resumes at the next record. */
static void test_limit_exact(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    static const struct {
        const char *sep;
        const char *input;
        size_t reclen;
    } t[] = {{"\n", "123456789\nok\n", 10}, {"--", "123456789--ok--", 11}};
    for (size_t i = 0; i < 2; i++) {
        tide_reader_t *r;
        assert_int_equal(tide_reader_new(loop, 8, &r), 0);
        size_t len = strlen(t[i].input);
        assert_int_equal(tide_reader_feed_data(r, t[i].input, len), 0);
        st_rd rd = {0};
        assert_int_equal(tide_reader_readuntil(r, t[i].sep, strlen(t[i].sep), st_rd_cb, &rd), 0);
        ts_run_until(loop, st_rd_done, &rd, 5);
        assert_int_equal(rd.status, TIDE_ELIMIT);
        assert_false(rd.had_data);
        assert_int_equal(rd.len, t[i].reclen);
        st_rd_reset(&rd);
        assert_int_equal(tide_reader_buffered(r), len);
        assert_int_equal(tide_reader_skip(r, t[i].reclen), 0);
        assert_int_equal(tide_reader_readuntil(r, t[i].sep, strlen(t[i].sep), st_rd_cb, &rd), 0);
        char want[8];
        snprintf(want, sizeof want, "ok%s", t[i].sep);
        st_expect(loop, &rd, 0, want);
        tide_reader_free(r);
    }
    ts_loop_close(loop);
}

/* ---- interrupted while blocked ------------------------------------------------------------- */

/* Each case's first call is interrupted with a prefix buffered that cannot complete it
 * (none for read(n), which any byte completes, nor for read-all, a loop of them); the
 * chain that follows must still see the whole input. */
static void test_blocked_reads(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    for (size_t i = 0; i < NCASES; i++) {
        const rcase *c = &cases[i];
        size_t hold = c->op == OP_READ || c->op == OP_READALL || !c->input[0] ? 0 : 1;
        for (int how = 1; how <= 2; how++) {
            run x;
            run_init(&x, loop, c);
            x.interrupt = how;
            ts_joined j;
            tide_task_t *t = ts_spawn_joined(loop, await_task, &x, &j);
            ts_run_until_flag(loop, &x.entered, 5);
            assert_int_equal(tide_reader_feed_data(x.r, c->input, hold), 0);
            st_spin(loop, 3);
            assert_int_equal(x.first, 1); /* still blocked */
            if (how == 1)
                assert_int_equal(tide_task_cancel(t), 1);
            ts_run_until(loop, interrupted, &x, 5);
            assert_int_equal(x.first, how == 1 ? TIDE_ECANCELLED : TIDE_ETIMEOUT);
            assert_int_equal(tide_reader_buffered(x.r), hold);
            assert_int_equal(tide_reader_feed_data(x.r, c->input + hold, strlen(c->input) - hold),
                             0);
            tide_reader_feed_eof(x.r);
            ts_run_until_flag(loop, &j.calls, 5);
            assert_int_equal(j.result, 0);
            run_finish(&x, how == 1 ? "cancel" : "deadline", (int)hold);
        }
    }
    ts_loop_close(loop);
}

/* drain_await (writing paused by a shut window), wait_closed_await (the connection
 * stays up) and open_connection_await (to a listener whose accept queue is full, so the
 * SYN is dropped and the connect stays in progress), each interrupted by a cancel and
 * by a deadline; then the writer is used again. */
enum wop { W_DRAIN, W_WAIT_CLOSED, W_OPEN };

typedef struct wrun {
    enum wop op;
    int interrupt;
    st_pair *p;
    uint16_t port; /* W_OPEN */
    int entered;
    int first;
} wrun;

static int writer_task(void *arg) {
    wrun *x = arg;
    static char chunk[100 * 1024];
    tide_reader_t *r = NULL;
    tide_writer_t *w = NULL;
    if (x->op == W_DRAIN) {
        if (tide_memory_transport_set_window(x->p->ta, 0) != 0 ||
            tide_writer_write(x->p->a, chunk, sizeof chunk) != 0)
            return __LINE__;
    }
    x->entered = 1;
    if (x->interrupt == 2 && tide_task_deadline_push(DEADLINE) != 0)
        return __LINE__;
    switch (x->op) {
    case W_DRAIN: x->first = tide_writer_drain_await(x->p->a); break;
    case W_WAIT_CLOSED: x->first = tide_writer_wait_closed_await(x->p->a); break;
    case W_OPEN:
        r = (tide_reader_t *)1;
        w = (tide_writer_t *)1;
        x->first = tide_loop_open_connection_await(tide_task_get_loop(tide_task_current()),
                                                   "127.0.0.1", x->port, 8, NULL, &r, &w);
        break;
    }
    if (x->interrupt == 2)
        tide_task_deadline_pop();
    switch (x->op) {
    case W_DRAIN: /* the peer reads everything once the window opens */
        if (tide_memory_transport_set_window(x->p->ta, 256 * 1024) != 0 ||
            tide_writer_drain_await(x->p->a) != 0)
            return __LINE__;
        break;
    case W_WAIT_CLOSED: /* still the stream's to close, and the wait completes */
        if (tide_writer_write(x->p->a, "x", 1) != 0)
            return __LINE__;
        tide_writer_close(x->p->a);
        if (tide_writer_wait_closed_await(x->p->a) != 0)
            return __LINE__;
        x->p->a = NULL;
        break;
    case W_OPEN:
        if (r != NULL || w != NULL)
            return __LINE__;
        break;
    }
    return 0;
}

static bool w_interrupted(void *arg) { return ((wrun *)arg)->first != 1; }

static void blocked_writer(wrun *x, tide_loop_t *loop) {
    ts_joined j;
    x->first = 1;
    tide_task_t *t = ts_spawn_joined(loop, writer_task, x, &j);
    ts_run_until_flag(loop, &x->entered, 5);
    st_spin(loop, 3);
    assert_int_equal(x->first, 1); /* still blocked */
    if (x->interrupt == 1)
        assert_int_equal(tide_task_cancel(t), 1);
    ts_run_until(loop, w_interrupted, x, 5);
    assert_int_equal(x->first, x->interrupt == 1 ? TIDE_ECANCELLED : TIDE_ETIMEOUT);
    ts_run_until_flag(loop, &j.calls, 5);
    assert_int_equal(j.result, 0);
}

static void test_blocked_writer(void **state) {
    (void)state;
    for (int op = W_DRAIN; op <= W_WAIT_CLOSED; op++) {
        for (int how = 1; how <= 2; how++) {
            st_pair p;
            st_pair_open(&p, 8);
            wrun x = {.op = (enum wop)op, .interrupt = how, .p = &p};
            blocked_writer(&x, p.loop);
            if (op == W_WAIT_CLOSED)
                assert_int_equal(p.lost_a.status, 0);
            st_pair_close(&p);
        }
    }
}

static void test_blocked_open(void **state) {
    (void)state;
    int fds = ts_count_fds();
    /* A listener that never accepts, its accept queue (backlog 0: one entry) filled. */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int cfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0 && cfd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof addr;
    assert_int_equal(bind(lfd, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal(listen(lfd, 0), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&addr, &alen), 0);
    assert_int_equal(connect(cfd, (struct sockaddr *)&addr, sizeof addr), 0);
    tide_loop_t *loop = ts_loop_new();
    for (int how = 1; how <= 2; how++) {
        wrun x = {.op = W_OPEN, .interrupt = how, .port = ntohs(addr.sin_port)};
        blocked_writer(&x, loop);
    }
    ts_loop_close(loop);
    close(cfd);
    close(lfd);
    assert_int_equal(ts_count_fds(), fds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),         cmocka_unit_test(test_limit_exact),
        cmocka_unit_test(test_blocked_reads), cmocka_unit_test(test_blocked_writer),
        cmocka_unit_test(test_blocked_open),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
