/* The task-style stream calls: every _await form inside tasks over the in-memory pair
 * and over TCP (open_connection_await to a start_server on port 0), Unix and a
 * socketpair; TIDE_ENOTASK outside a task with nothing started; cancellation and
 * deadlines withdrawing a pending read (the reader stays usable, no byte lost), a
 * drain and an open; asyncio's echo client and server, both written as tasks. */
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

/* ---- helpers ------------------------------------------------------------------------------- */

/* Reads one line and compares it. */
#define CHECK_LINE(r, status, text)                                                                \
    do {                                                                                           \
        char line_[128];                                                                           \
        size_t n_ = 99;                                                                            \
        TS_CHECK(tide_reader_readline_await((r), line_, sizeof line_, &n_) == (status));           \
        TS_CHECK(n_ == strlen(text) && memcmp(line_, (text), n_) == 0);                            \
    } while (0)

/* readline_await into a buffer of exactly cap bytes must return the line. */
#define CHECK_LINE_CAP(r, cap, text)                                                               \
    do {                                                                                           \
        char line_[cap];                                                                           \
        size_t n_ = 99;                                                                            \
        TS_CHECK(tide_reader_readline_await((r), line_, sizeof line_, &n_) == 0);                  \
        TS_CHECK(n_ == strlen(text) && memcmp(line_, (text), n_) == 0);                            \
    } while (0)

#define LIMIT 100

/* ---- outside a task ------------------------------------------------------------------------ */

static void test_outside_task(void **state) {
    (void)state;
    st_pair p;
    st_pair_open(&p, LIMIT);
    tide_reader_t *r = tide_writer_get_reader(p.a);
    char buf[LIMIT + 8];
    size_t n = 7;
    tide_iovec_t sep = {"\n", 1};
    assert_int_equal(tide_reader_read_await(r, buf, 4, &n), TIDE_ENOTASK);
    assert_int_equal(n, 0);
    assert_int_equal(tide_reader_readexactly_await(r, buf, 4, &n), TIDE_ENOTASK);
    assert_int_equal(tide_reader_readuntil_await(r, "\n", 1, buf, sizeof buf, &n), TIDE_ENOTASK);
    assert_int_equal(tide_reader_readuntil_any_await(r, &sep, 1, buf, sizeof buf, &n), TIDE_ENOTASK);
    assert_int_equal(tide_reader_readline_await(r, buf, sizeof buf, &n), TIDE_ENOTASK);
    assert_int_equal(tide_reader_discard_until_await(r, "\n", 1, &n), TIDE_ENOTASK);
    assert_int_equal(tide_reader_read_await(NULL, buf, 4, &n), TIDE_ENOTASK);
    assert_false(tide__reader_pending(r));
    assert_int_equal(tide_writer_drain_await(p.a), TIDE_ENOTASK);
    assert_int_equal(tide_writer_wait_closed_await(p.a), TIDE_ENOTASK);
    tide_reader_t *rr = (tide_reader_t *)1;
    tide_writer_t *ww = (tide_writer_t *)1;
    assert_int_equal(tide_loop_open_connection_await(p.loop, "127.0.0.1", 1, LIMIT, NULL, &rr, &ww),
                     TIDE_ENOTASK);
    assert_null(rr);
    assert_null(ww);
    assert_int_equal(tide_loop_open_unix_connection_await(p.loop, "/nonexistent", LIMIT, NULL, &rr, &ww),
                     TIDE_ENOTASK);
    assert_int_equal(tide_loop_open_socket_await(p.loop, 0, LIMIT, NULL, &rr, &ww), TIDE_ENOTASK);
    assert_int_equal(tide_loop_open_accepted_socket_await(p.loop, 0, LIMIT, NULL, &rr, &ww),
                     TIDE_ENOTASK);
    /* Nothing was started: the data goes to a plain callback read afterwards. */
    assert_int_equal(tide_writer_write(p.b, "x\n", 2), 0);
    st_rd rd = {0};
    assert_int_equal(tide_reader_readline(r, st_rd_cb, &rd), 0);
    st_expect(p.loop, &rd, 0, "x\n");
    st_pair_close(&p);
}

/* ---- every read form over the memory pair --------------------------------------------------- */

static int reads_task(void *arg) {
    st_pair *p = arg;
    tide_reader_t *r = tide_writer_get_reader(p->a);
    char buf[LIMIT + 8], big_line[LIMIT + 1];
    size_t n = 0;
    const char *input = "hello world\nABCDEFGHIJ--x|y;rest-of-it\nskip me SEP" "tail\n";
    TS_CHECK(tide_writer_write(p->b, input, strlen(input)) == 0);
    TS_CHECK(tide_writer_drain_await(p->b) == 0);
    CHECK_LINE(r, 0, "hello world\n");
    TS_CHECK(tide_reader_read_await(r, buf, 3, &n) == 0 && n == 3 && memcmp(buf, "ABC", 3) == 0);
    TS_CHECK(tide_reader_readexactly_await(r, buf, 7, &n) == 0 && n == 7);
    TS_CHECK(memcmp(buf, "DEFGHIJ", 7) == 0);
    TS_CHECK(tide_reader_readuntil_await(r, "--", 2, buf, sizeof buf, &n) == 0 && n == 2);
    tide_iovec_t seps[2] = {{";", 1}, {"|", 1}};
    TS_CHECK(tide_reader_readuntil_any_await(r, seps, 2, buf, sizeof buf, &n) == 0);
    TS_CHECK(n == 2 && memcmp(buf, "x|", 2) == 0);
    TS_CHECK(tide_reader_readuntil_any_await(r, seps, 2, buf, sizeof buf, &n) == 0);
    TS_CHECK(n == 2 && memcmp(buf, "y;", 2) == 0);
    TS_CHECK(tide_reader_discard_until_await(r, "\n", 1, &n) == 0 && n == strlen("rest-of-it\n"));
    TS_CHECK(tide_reader_discard_until_await(r, "SEP", 3, &n) == 0 && n == strlen("skip me SEP"));
    CHECK_LINE(r, 0, "tail\n");
    /* A read that has to wait for its bytes. */
    TS_CHECK(tide_writer_write(p->b, "late", 4) == 0);
    TS_CHECK(tide_reader_readexactly_await(r, buf, 4, &n) == 0 && memcmp(buf, "late", 4) == 0);
    /* Any buffer size: a record longer than the buffer is a limit overrun with nothing
     * consumed, the record's length reported; a record that fills it exactly fits. */
    TS_CHECK(tide_writer_write(p->b, "0123456789\n", 11) == 0);
    TS_CHECK(tide_reader_readline_await(r, buf, 10, &n) == TIDE_ELIMIT && n == 11);
    TS_CHECK(tide_reader_buffered(r) == 11);
    CHECK_LINE_CAP(r, 11, "0123456789\n");
    memset(big_line, 'y', LIMIT);
    big_line[LIMIT] = '\n';
    TS_CHECK(tide_writer_write(p->b, big_line, LIMIT + 1) == 0);
    TS_CHECK(tide_reader_readline_await(r, buf, LIMIT, &n) == TIDE_ELIMIT && n == LIMIT + 1);
    TS_CHECK(tide_reader_readline_await(r, buf, LIMIT + 1, &n) == 0 && n == LIMIT + 1);
    TS_CHECK(memcmp(buf, big_line, LIMIT + 1) == 0);
    TS_CHECK(tide_writer_write(p->b, "abc--", 5) == 0);
    TS_CHECK(tide_reader_readuntil_await(r, "--", 2, buf, 4, &n) == TIDE_ELIMIT && n == 5);
    TS_CHECK(tide_reader_readuntil_await(r, "--", 2, buf, 5, &n) == 0 && n == 5);
    /* A buffer that can hold nothing, and read-all, are refused before anything starts. */
    TS_CHECK(tide_reader_readline_await(r, buf, 0, &n) == TIDE_EINVAL);
    TS_CHECK(tide_reader_read_await(r, buf, TIDE_READ_ALL, &n) == TIDE_EINVAL);
    TS_CHECK(!tide__reader_pending(r));
    /* The limit: nothing consumed, the record's length reported. */
    char big[LIMIT + 10];
    memset(big, 'z', sizeof big);
    big[sizeof big - 1] = '\n';
    TS_CHECK(tide_writer_write(p->b, big, sizeof big) == 0);
    TS_CHECK(tide_reader_readline_await(r, buf, sizeof buf, &n) == TIDE_ELIMIT && n == sizeof big);
    TS_CHECK(tide_reader_skip(r, n) == 0);
    /* The end: the last line without newline (too long for a small buffer, then read
     * whole), then EOF; read after EOF. */
    TS_CHECK(tide_writer_write(p->b, "end", 3) == 0);
    TS_CHECK(tide_writer_write_eof(p->b) == 0);
    TS_CHECK(tide_reader_readline_await(r, buf, 2, &n) == TIDE_ELIMIT);
    CHECK_LINE_CAP(r, 3, "end");
    CHECK_LINE(r, TIDE_EOF, "");
    TS_CHECK(tide_reader_read_await(r, buf, 5, &n) == TIDE_EOF && n == 0);
    TS_CHECK(tide_reader_readexactly_await(r, buf, 1, &n) == TIDE_EOF);
    return 0;
}

static void test_reads_memory(void **state) {
    st_plain_only();
    (void)state;
    st_pair p;
    st_pair_open(&p, LIMIT);
    assert_int_equal(ts_run_task(p.loop, reads_task, &p), 0);
    st_pair_close(&p);
}

/* After a successful exchange (whose drain returns without yielding), close then
 * drain: TIDE_ECLOSED, as asyncio's drain raises there (it never reports success for
 * data that cannot go out). */
static void set_flag(tide_loop_t *loop, void *arg) {
    (void)loop;
    *(int *)arg = 1;
}

static int drain_after_close_task(void *arg) {
    st_pair *p = arg;
    char buf[8];
    size_t n = 0;
    static int ran; /* the callback may run after this task ended */
    ran = 0;
    TS_CHECK(tide_writer_write(p->a, "ping", 4) == 0);
    /* asyncio's drain does not yield when writing is not paused, nor does this one: a
     * callback scheduled before it has not run when it returns. */
    TS_CHECK(tide_loop_call_soon(p->loop, set_flag, &ran) != NULL);
    TS_CHECK(tide_writer_drain_await(p->a) == 0);
    TS_CHECK(ran == 0);
    TS_CHECK(tide_reader_readexactly_await(tide_writer_get_reader(p->b), buf, 4, &n) == 0);
    tide_writer_close(p->a);
    TS_CHECK(tide_writer_drain_await(p->a) == TIDE_ECLOSED);
    TS_CHECK(tide_writer_wait_closed_await(p->a) == 0);
    p->a = NULL;
    return 0;
}

static void test_drain_after_close(void **state) {
    (void)state;
    st_pair p;
    st_pair_open(&p, LIMIT);
    assert_int_equal(ts_run_task(p.loop, drain_after_close_task, &p), 0);
    st_pair_close(&p);
}

/* A read whose bytes are buffered returns without yielding, as asyncio's: a callback
 * scheduled before it has not run when it returns, whether the task resumed from the
 * readable event's callback or from the loop. A read that has to wait yields. */
static int buffered_reads_task(void *arg) {
    st_pair *p = arg;
    tide_reader_t *r = tide_writer_get_reader(p->a);
    char buf[16];
    size_t n = 0;
    static int ran; /* the callback may run after this task ended */
    ran = 0;
    TS_CHECK(tide_writer_write(p->b, "one\ntwo\nthree", 13) == 0);
    CHECK_LINE(r, 0, "one\n"); /* waits; resumed from the callback that read it */
    TS_CHECK(tide_reader_buffered(r) == 9);
    TS_CHECK(tide_loop_call_soon(p->loop, set_flag, &ran) != NULL);
    CHECK_LINE(r, 0, "two\n");
    TS_CHECK(tide_reader_readexactly_await(r, buf, 2, &n) == 0 && memcmp(buf, "th", 2) == 0);
    TS_CHECK(tide_reader_read_await(r, buf, sizeof buf, &n) == 0 && n == 3);
    TS_CHECK(memcmp(buf, "ree", 3) == 0);
    TS_CHECK(ran == 0);
    TS_CHECK(tide_writer_write(p->b, "x", 1) == 0);
    TS_CHECK(tide_reader_read_await(r, buf, sizeof buf, &n) == 0 && n == 1 && buf[0] == 'x');
    TS_CHECK(ran == 1);
    /* Bytes that arrived while the task waited elsewhere, read from the loop's turn. */
    TS_CHECK(tide_writer_write(p->b, "four\nfive\n", 10) == 0);
    for (int i = 0; i < 1000 && tide_reader_buffered(r) < 10; i++)
        TS_CHECK(tide_task_yield() == 0);
    TS_CHECK(tide_reader_buffered(r) == 10);
    ran = 0;
    TS_CHECK(tide_loop_call_soon(p->loop, set_flag, &ran) != NULL);
    CHECK_LINE(r, 0, "four\n");
    CHECK_LINE(r, 0, "five\n");
    TS_CHECK(ran == 0);
    return 0;
}

static void test_buffered_reads_do_not_yield(void **state) {
    (void)state;
    st_pair p;
    st_pair_open(&p, LIMIT);
    assert_int_equal(ts_run_task(p.loop, buffered_reads_task, &p), 0);
    st_pair_close(&p);
}

static int incomplete_task(void *arg) {
    st_pair *p = arg;
    tide_reader_t *r = tide_writer_get_reader(p->a);
    char buf[16];
    size_t n = 0;
    TS_CHECK(tide_writer_write(p->b, "abc", 3) == 0);
    TS_CHECK(tide_writer_write_eof(p->b) == 0);
    TS_CHECK(tide_reader_readexactly_await(r, buf, 5, &n) == TIDE_EINCOMPLETE);
    TS_CHECK(n == 3 && memcmp(buf, "abc", 3) == 0);
    return 0;
}

static void test_incomplete(void **state) {
    st_plain_only();
    (void)state;
    st_pair p;
    st_pair_open(&p, LIMIT);
    assert_int_equal(ts_run_task(p.loop, incomplete_task, &p), 0);
    st_pair_close(&p);
}

/* ---- cancellation and deadlines -------------------------------------------------------------- */

typedef struct blocked {
    st_pair *p;
    int entered; /* the task reached its blocking call */
    int first;   /* that call's status */
} blocked;

static int cancelled_readline_task(void *arg) {
    blocked *b = arg;
    tide_reader_t *r = tide_writer_get_reader(b->p->a);
    char buf[LIMIT + 1];
    size_t n = 99;
    b->entered = 1;
    b->first = tide_reader_readline_await(r, buf, sizeof buf, &n);
    TS_CHECK(n == 0);
    TS_CHECK(!tide__reader_pending(r));
    /* Nothing was lost: the bytes buffered before the cancel start the next line. */
    TS_CHECK(tide_reader_buffered(r) == 3);
    CHECK_LINE(r, 0, "abcdef\n");
    return 0;
}

static void test_cancel_readline(void **state) {
    (void)state;
    st_pair p;
    st_pair_open(&p, LIMIT);
    blocked b = {.p = &p};
    ts_joined j;
    tide_task_t *t = ts_spawn_joined(p.loop, cancelled_readline_task, &b, &j);
    ts_run_until_flag(p.loop, &b.entered, 5);
    assert_int_equal(tide_writer_write(p.b, "abc", 3), 0);
    st_wait_buffered(p.loop, tide_writer_get_reader(p.a), 3);
    assert_int_equal(tide_task_cancel(t), 1);
    st_spin(p.loop, 3);
    assert_int_equal(b.first, TIDE_ECANCELLED);
    assert_int_equal(tide_writer_write(p.b, "def\n", 4), 0);
    ts_run_until_flag(p.loop, &j.calls, 5);
    assert_int_equal(j.result, 0);
    st_pair_close(&p);
}

/* read_await on an empty reader lends the task's own buffer to the transport (zero
 * copy); when the read is cancelled between the transport's get_buffer and its
 * buffer_updated, the bytes already written there join the reader's buffer. The
 * adapter's ops are driven by hand to place the cancellation in that gap. */
typedef struct direct {
    blocked b;
    char buf[16];
    size_t n;
} direct;

static int direct_read_task(void *arg) {
    direct *d = arg;
    d->b.entered = 1;
    d->b.first = tide_reader_read_await(tide_writer_get_reader(d->b.p->a), d->buf,
                                        sizeof d->buf, &d->n);
    return 0;
}

static void test_read_into_task_buffer(void **state) {
    (void)state;
    st_pair p;
    st_pair_open(&p, LIMIT);
    tide_protocol_t *proto = tide_transport_get_protocol(tide_writer_get_transport(p.a));
    tide_reader_t *r = tide_writer_get_reader(p.a);
    for (int cancel = 0; cancel < 2; cancel++) {
        direct d = {.b = {.p = &p}};
        ts_joined j;
        tide_task_t *t = ts_spawn_joined(p.loop, direct_read_task, &d, &j);
        ts_run_until_flag(p.loop, &d.b.entered, 5);
        size_t len = 0;
        void *into = proto->ops->get_buffer(proto, 0, &len);
        assert_ptr_equal(into, d.buf);
        assert_int_equal(len, sizeof d.buf);
        memcpy(into, "hello", 5);
        if (cancel)
            assert_int_equal(tide_task_cancel(t), 1);
        proto->ops->buffer_updated(proto, 5);
        ts_run_until_flag(p.loop, &j.calls, 5);
        if (cancel) {
            assert_int_equal(d.b.first, TIDE_ECANCELLED);
            size_t have = 0;
            const void *kept = tide_reader_peek(r, &have);
            assert_int_equal(have, 5);
            assert_memory_equal(kept, "hello", 5);
        } else {
            assert_int_equal(d.b.first, 0);
            assert_int_equal(d.n, 5);
            assert_memory_equal(d.buf, "hello", 5);
            assert_int_equal(tide_reader_buffered(r), 0);
        }
    }
    st_pair_close(&p);
}

/* peek_await lends the buffered bytes in place until consume; at the end, TIDE_EOF. */
static int peek_task(void *arg) {
    st_pair *p = arg;
    tide_reader_t *r = tide_writer_get_reader(p->a);
    const void *data = NULL;
    size_t n = 0;
    char buf[8];
    TS_CHECK(tide_reader_peek_await(r, NULL, &n) == TIDE_EINVAL);
    TS_CHECK(tide_writer_write(p->b, "hello world", 11) == 0);
    TS_CHECK(tide_reader_peek_await(r, &data, &n) == 0 && n > 0 && n <= 11);
    TS_CHECK(memcmp(data, "hello world", n) == 0);
    /* More input while the loan runs leaves the lent bytes where they are. */
    TS_CHECK(tide_writer_write(p->b, "!", 1) == 0);
    TS_CHECK(tide_task_yield() == 0);
    TS_CHECK(tide_task_yield() == 0);
    TS_CHECK(memcmp(data, "hello world", n) == 0);
    TS_CHECK(tide_reader_consume(r, 1000) == TIDE_EINVAL);
    TS_CHECK(tide_reader_consume(r, 6) == 0);
    TS_CHECK(tide_reader_readexactly_await(r, buf, 6, &n) == 0 && memcmp(buf, "world!", 6) == 0);
    if (!tide_writer_can_write_eof(p->b))
        return 0; /* TLS: no half-close */
    TS_CHECK(tide_writer_write_eof(p->b) == 0);
    TS_CHECK(tide_reader_peek_await(r, &data, &n) == TIDE_EOF && data == NULL && n == 0);
    TS_CHECK(tide_reader_consume(r, 0) == 0);
    return 0;
}

static void test_peek_consume(void **state) {
    (void)state;
    st_pair p;
    st_pair_open(&p, LIMIT);
    const void *data = NULL;
    size_t n = 0;
    tide_reader_t *r = tide_writer_get_reader(p.a);
    assert_int_equal(tide_reader_peek_await(r, &data, &n), TIDE_ENOTASK);
    assert_int_equal(ts_run_task(p.loop, peek_task, &p), 0);
    st_pair_close(&p);
}

static int deadline_task(void *arg) {
    st_pair *p = arg;
    tide_reader_t *r = tide_writer_get_reader(p->a);
    char buf[LIMIT + 1];
    size_t n = 0;
    TS_CHECK(tide_task_deadline_push(0.02) == 0);
    int rc = tide_reader_readline_await(r, buf, sizeof buf, &n);
    tide_task_deadline_pop();
    TS_CHECK(rc == TIDE_ETIMEOUT);
    TS_CHECK(!tide__reader_pending(r));
    /* Also a drain and a wait_closed give up at the deadline. */
    TS_CHECK(tide_task_deadline_push(0.02) == 0);
    rc = tide_writer_wait_closed_await(p->a);
    tide_task_deadline_pop();
    TS_CHECK(rc == TIDE_ETIMEOUT);
    TS_CHECK(tide_writer_write(p->b, "later\n", 6) == 0);
    CHECK_LINE(r, 0, "later\n");
    return 0;
}

static void test_deadline(void **state) {
    (void)state;
    st_pair p;
    st_pair_open(&p, LIMIT);
    assert_int_equal(ts_run_task(p.loop, deadline_task, &p), 0);
    st_pair_close(&p);
}

/* A drain blocked by a shut window (writing paused): cancelled, it is withdrawn; a new drain
 * completes once the peer reads. */
static int drain_task(void *arg) {
    blocked *b = arg;
    tide_writer_t *w = b->p->a;
    static char chunk[100 * 1024];
    TS_CHECK(tide_memory_transport_set_window(b->p->ta, 0) == 0);
    TS_CHECK(tide_writer_write(w, chunk, sizeof chunk) == 0);
    b->entered = 1;
    b->first = tide_writer_drain_await(w);
    TS_CHECK(tide_memory_transport_set_window(b->p->ta, 256 * 1024) == 0);
    TS_CHECK(tide_writer_drain_await(w) == 0);
    return 0;
}

static void test_cancel_drain(void **state) {
    (void)state;
    st_pair p;
    st_pair_open(&p, LIMIT);
    blocked b = {.p = &p};
    ts_joined j;
    tide_task_t *t = ts_spawn_joined(p.loop, drain_task, &b, &j);
    ts_run_until_flag(p.loop, &b.entered, 5);
    st_spin(p.loop, 3);
    assert_false(j.calls); /* still blocked: writing is paused */
    assert_int_equal(tide_task_cancel(t), 1);
    ts_run_until_flag(p.loop, &j.calls, 5);
    assert_int_equal(b.first, TIDE_ECANCELLED);
    assert_int_equal(j.result, 0);
    st_pair_close(&p);
}

/* ---- over sockets: the asyncio echo client and server, as tasks ------------------------------ */

typedef struct net {
    tide_loop_t *loop;
    tide_server_t *server;
    uint16_t port;
    const char *unix_path;
    int served;
    int server_failures;
} net;

/* The server side, one task per client: echo until EOF, then close. */
static int serve_task(void *arg) {
    tide_writer_t *w = arg;
    tide_reader_t *r = tide_writer_get_reader(w);
    char buf[4096];
    size_t n;
    int rc;
    while ((rc = tide_reader_read_await(r, buf, sizeof buf, &n)) == 0) {
        if (tide_writer_write(w, buf, n) != 0 || tide_writer_drain_await(w) != 0)
            break;
    }
    tide_writer_close(w);
    int closed = tide_writer_wait_closed_await(w);
    return rc == TIDE_EOF && closed == 0 ? 0 : 1;
}

static void on_served(tide_task_t *t, int result, void *arg) {
    (void)t;
    net *s = arg;
    s->served++;
    s->server_failures += result != 0;
}

static void on_client(tide_reader_t *r, tide_writer_t *w, void *arg) {
    (void)r;
    net *s = arg;
    tide_task_t *t = NULL;
    if (tide_task_spawn(s->loop, serve_task, w, NULL, &t) != 0 ||
        tide_task_join(t, on_served, s) != 0) {
        tide_writer_abort(w);
        s->server_failures++;
    }
}

static void net_start(net *s, bool unix_socket) {
    memset(s, 0, sizeof(*s));
    s->loop = ts_loop_new();
    if (unix_socket) {
        static char path[64];
        snprintf(path, sizeof path, "/tmp/tide-await-%d.sock", (int)getpid());
        unlink(path);
        s->unix_path = path;
        assert_int_equal(
            tide_loop_start_unix_server(s->loop, path, LIMIT, NULL, on_client, s, &s->server), 0);
        return;
    }
    assert_int_equal(
        tide_loop_start_server(s->loop, "127.0.0.1", 0, LIMIT, NULL, on_client, s, &s->server), 0);
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    assert_int_equal(tide_server_get_sockname(s->server, 0, (struct sockaddr *)&addr, &len), 0);
    s->port = ntohs(((struct sockaddr_in *)&addr)->sin_port);
}

static bool server_gone(void *arg) { return ((net *)arg)->server == NULL; }

static void on_server_closed(tide_server_t *server, int status, void *arg) {
    (void)server;
    (void)status;
    ((net *)arg)->server = NULL;
}

static void net_finish(net *s, int served) {
    tide_server_close(s->server);
    assert_int_equal(tide_server_wait_closed(s->server, 5, on_server_closed, s), 0);
    ts_run_until(s->loop, server_gone, s, 5);
    assert_int_equal(s->served, served);
    assert_int_equal(s->server_failures, 0);
    if (s->unix_path)
        unlink(s->unix_path);
    ts_loop_close(s->loop);
}

/* asyncio's tcp_echo_client, then every read form over the echoed bytes. */
static int client_session(tide_reader_t *r, tide_writer_t *w) {
    static const char *parts[] = {"This is the message. ", "It will be sent ", "in parts.\n"};
    for (size_t i = 0; i < 3; i++)
        TS_CHECK(tide_writer_write(w, parts[i], strlen(parts[i])) == 0);
    TS_CHECK(tide_writer_drain_await(w) == 0);
    char buf[LIMIT + 8];
    size_t n = 0;
    TS_CHECK(tide_reader_readuntil_await(r, "sent ", 5, buf, sizeof buf, &n) == 0);
    TS_CHECK(n == strlen("This is the message. It will be sent "));
    CHECK_LINE(r, 0, "in parts.\n");
    const char *more = "12345|tail\nxyz";
    TS_CHECK(tide_writer_write(w, more, strlen(more)) == 0);
    TS_CHECK(tide_reader_readexactly_await(r, buf, 5, &n) == 0 && memcmp(buf, "12345", 5) == 0);
    tide_iovec_t seps[2] = {{"\n", 1}, {"|", 1}};
    TS_CHECK(tide_reader_readuntil_any_await(r, seps, 2, buf, sizeof buf, &n) == 0 && n == 1);
    TS_CHECK(tide_reader_discard_until_await(r, "\n", 1, &n) == 0 && n == 5);
    TS_CHECK(tide_writer_write_eof(w) == 0);
    /* Read until EOF. */
    size_t total = 0;
    int rc;
    while ((rc = tide_reader_read_await(r, buf + total, sizeof buf - total, &n)) == 0)
        total += n;
    TS_CHECK(rc == TIDE_EOF);
    TS_CHECK(total == 3 && memcmp(buf, "xyz", 3) == 0);
    tide_writer_close(w);
    TS_CHECK(tide_writer_wait_closed_await(w) == 0);
    return 0;
}

static int tcp_client_task(void *arg) {
    net *s = arg;
    tide_reader_t *r = NULL;
    tide_writer_t *w = NULL;
    TS_CHECK(tide_loop_open_connection_await(s->loop, "127.0.0.1", s->port, LIMIT, NULL, &r, &w) == 0);
    TS_CHECK(r != NULL && tide_writer_get_reader(w) == r);
    return client_session(r, w);
}

static void test_echo_tcp(void **state) {
    (void)state;
    int fds = ts_count_fds();
    net s;
    net_start(&s, false);
    /* Two clients at once, each in its own task. */
    ts_joined j1, j2;
    ts_spawn_joined(s.loop, tcp_client_task, &s, &j1);
    ts_spawn_joined(s.loop, tcp_client_task, &s, &j2);
    ts_run_until_flag(s.loop, &j1.calls, 10);
    ts_run_until_flag(s.loop, &j2.calls, 10);
    assert_int_equal(j1.result, 0);
    assert_int_equal(j2.result, 0);
    net_finish(&s, 2);
    assert_int_equal(ts_count_fds(), fds);
}

static int unix_client_task(void *arg) {
    net *s = arg;
    tide_reader_t *r = NULL;
    tide_writer_t *w = NULL;
    TS_CHECK(tide_loop_open_unix_connection_await(s->loop, s->unix_path, LIMIT, NULL, &r, &w) == 0);
    return client_session(r, w);
}

static void test_echo_unix(void **state) {
    (void)state;
    net s;
    net_start(&s, true);
    assert_int_equal(ts_run_task(s.loop, unix_client_task, &s), 0);
    net_finish(&s, 1);
}

/* A refused connection: the error, both pointers NULL. */
static int refused_task(void *arg) {
    net *s = arg;
    tide_reader_t *r = (tide_reader_t *)1;
    tide_writer_t *w = (tide_writer_t *)1;
    TS_CHECK(tide_loop_open_connection_await(s->loop, "127.0.0.1", s->port, LIMIT, NULL, &r, &w) ==
          TIDE_ECONNREFUSED);
    TS_CHECK(r == NULL && w == NULL);
    return 0;
}

static void test_refused(void **state) {
    (void)state;
    net s;
    net_start(&s, false);
    tide_server_close(s.server);
    assert_int_equal(tide_server_wait_closed(s.server, 5, on_server_closed, &s), 0);
    ts_run_until(s.loop, server_gone, &s, 5);
    assert_int_equal(ts_run_task(s.loop, refused_task, &s), 0);
    ts_loop_close(s.loop);
}

typedef struct open_blocked {
    net *s;
    int entered;
    int status;
} open_blocked;

static int cancelled_open_task(void *arg) {
    open_blocked *b = arg;
    tide_reader_t *r = NULL;
    tide_writer_t *w = NULL;
    b->entered = 1;
    b->status =
        tide_loop_open_connection_await(b->s->loop, "127.0.0.1", b->s->port, LIMIT, NULL, &r, &w);
    TS_CHECK(r == NULL && w == NULL);
    return 0;
}

/* Cancelled while connecting: nothing is left open (the server may see a client come
 * and go). */
static void test_cancel_open(void **state) {
    (void)state;
    int fds = ts_count_fds();
    net s;
    net_start(&s, false);
    open_blocked b = {.s = &s};
    ts_joined j;
    tide_task_t *t = ts_spawn_joined(s.loop, cancelled_open_task, &b, &j);
    ts_run_until_flag(s.loop, &b.entered, 5);
    assert_int_equal(tide_task_cancel(t), 1);
    ts_run_until_flag(s.loop, &j.calls, 5);
    assert_int_equal(j.result, 0);
    assert_int_equal(b.status, TIDE_ECANCELLED);
    st_spin(s.loop, 5);
    tide_server_close(s.server);
    assert_int_equal(tide_server_wait_closed(s.server, 5, on_server_closed, &s), 0);
    ts_run_until(s.loop, server_gone, &s, 5);
    assert_int_equal(s.server_failures, 0);
    ts_loop_close(s.loop);
    assert_int_equal(ts_count_fds(), fds);
}

/* Streams on both ends of a socketpair (asyncio's open_connection(sock=...)). */
typedef struct pair_ctx {
    tide_loop_t *loop;
    int fds[2];
} pair_ctx;

static int socketpair_task(void *arg) {
    pair_ctx *c = arg;
    tide_reader_t *ra, *rb;
    tide_writer_t *wa, *wb;
    TS_CHECK(tide_loop_open_socket_await(c->loop, c->fds[0], LIMIT, NULL, &ra, &wa) == 0);
    TS_CHECK(tide_loop_open_accepted_socket_await(c->loop, c->fds[1], LIMIT, NULL, &rb, &wb) == 0);
    TS_CHECK(!tide_writer_is_server_side(wa) && tide_writer_is_server_side(wb));
    TS_CHECK(tide_writer_write(wb, "ping\n", 5) == 0);
    CHECK_LINE(ra, 0, "ping\n");
    tide_writer_close(wb);
    TS_CHECK(tide_writer_wait_closed_await(wb) == 0);
    CHECK_LINE(ra, TIDE_EOF, "");
    tide_writer_close(wa);
    TS_CHECK(tide_writer_wait_closed_await(wa) == 0);
    return 0;
}

static void test_socketpair(void **state) {
    (void)state;
    int fds = ts_count_fds();
    pair_ctx c;
    c.loop = ts_loop_new();
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, c.fds), 0);
    assert_int_equal(ts_run_task(c.loop, socketpair_task, &c), 0);
    ts_loop_close(c.loop);
    assert_int_equal(ts_count_fds(), fds);
}

/* An object of another loop is refused. */
static int other_loop_task(void *arg) {
    st_pair *p = arg;
    char buf[8];
    size_t n;
    TS_CHECK(tide_reader_read_await(tide_writer_get_reader(p->a), buf, 1, &n) == TIDE_EINVAL);
    TS_CHECK(tide_writer_drain_await(p->a) == TIDE_EINVAL);
    return 0;
}

static void test_other_loop(void **state) {
    (void)state;
    st_pair p;
    st_pair_open(&p, LIMIT);
    tide_loop_t *other = ts_loop_new();
    assert_int_equal(ts_run_task(other, other_loop_task, &p), 0);
    ts_loop_close(other);
    st_pair_close(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outside_task),
        cmocka_unit_test(test_reads_memory),
        cmocka_unit_test(test_drain_after_close),
        cmocka_unit_test(test_buffered_reads_do_not_yield),
        cmocka_unit_test(test_read_into_task_buffer),
        cmocka_unit_test(test_peek_consume),
        cmocka_unit_test(test_incomplete),
        cmocka_unit_test(test_cancel_readline),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_cancel_drain),
        cmocka_unit_test(test_echo_tcp),
        cmocka_unit_test(test_echo_unix),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_cancel_open),
        cmocka_unit_test(test_socketpair),
        cmocka_unit_test(test_other_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
