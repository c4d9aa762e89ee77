/* The stream writer over the in-memory pair: write, writelines, half-close
 * (checklist 34), drain with many waiters released together or failed together
 * (checklist 31-32, stricter: an abort fails drain, a failed write fails it at once),
 * wait_closed (checklist 33), the state after the connection is gone, and the
 * ownership rule (a stream never closed is reported by tide_loop_close). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/support.h"
#include "support/streams.h"

#define NWAITERS 10

static char big[100 * 1024];

/* Makes a's writes queue (the peer's window is shut) until writing pauses. */
static void pause_a(st_pair *p) {
    assert_int_equal(tide_memory_transport_set_window(p->ta, 0), 0);
    assert_int_equal(tide_writer_write(p->a, big, sizeof(big)), 0);
    assert_true(p->a->flags & TIDE__S_WRITE_PAUSED);
}

static bool all_done(void *arg) {
    st_wr *w = arg;
    for (int i = 0; i < NWAITERS; i++)
        if (w[i].calls == 0)
            return false;
    return true;
}

static void start_drains(st_pair *p, st_wr *w) {
    memset(w, 0, NWAITERS * sizeof(*w));
    for (int i = 0; i < NWAITERS; i++)
        assert_int_equal(tide_writer_drain(p->a, st_wr_cb, &w[i]), 0);
    st_spin(p->loop, 3);
    for (int i = 0; i < NWAITERS; i++)
        assert_int_equal(w[i].calls, 0);
}

/* A pair whose side a is paused for writing, with NWAITERS drains waiting on it. */
static void open_with_drains(st_pair *p, st_wr *w) {
    st_pair_open(p, 64);
    pause_a(p);
    start_drains(p, w);
}

static void expect_all(st_pair *p, st_wr *w, int status) {
    ts_run_until(p->loop, all_done, w, 5);
    for (int i = 0; i < NWAITERS; i++) {
        assert_int_equal(w[i].calls, 1);
        assert_int_equal(w[i].status, status);
    }
}

/* ---- writing ----------------------------------------------------------------------------- */

static void test_write_and_half_close(void **state) {
    st_plain_only();
    (void)state;
    st_pair p;
    st_pair_open(&p, 64);
    tide_reader_t *ra = tide_writer_get_reader(p.a), *rb = tide_writer_get_reader(p.b);
    st_rd x = {0};
    assert_true(tide_writer_can_write_eof(p.a));
    assert_false(tide_writer_is_server_side(p.a));
    assert_ptr_equal(tide_writer_get_loop(p.a), p.loop);
    assert_int_equal(tide_writer_write(p.a, "GET ", 4), 0);
    tide_iovec_t parts[3] = {{"/index", 6}, {"", 0}, {" HTTP\r\n", 7}};
    assert_int_equal(tide_writer_writelines(p.a, parts, 3), 0);
    assert_int_equal(tide_writer_write_eof(p.a), 0);
    assert_int_equal(tide_writer_write(p.a, "x", 1), TIDE_EPIPE);
    /* The peer reads to EOF... */
    assert_int_equal(tide_reader_read(rb, TIDE_READ_ALL, st_rd_cb, &x), 0);
    st_expect(p.loop, &x, 0, "GET /index HTTP\r\n");
    assert_true(tide_reader_at_eof(rb));
    /* ...and can still answer (the stream keeps the transport half-open). */
    assert_false(tide_writer_is_closing(p.b));
    assert_int_equal(tide_writer_write(p.b, "200 OK\n", 7), 0);
    tide_writer_close(p.b);
    assert_true(tide_writer_is_closing(p.b));
    p.b = NULL;
    assert_int_equal(tide_reader_read(ra, TIDE_READ_ALL, st_rd_cb, &x), 0);
    st_expect(p.loop, &x, 0, "200 OK\n");
    st_pair_close(&p);
}

/* ---- drain ------------------------------------------------------------------------------- */

static void test_drain_not_paused(void **state) {
    (void)state;
    st_pair p;
    st_pair_open(&p, 64);
    st_wr w = {0};
    assert_int_equal(tide_writer_write(p.a, "abc", 3), 0);
    assert_int_equal(tide_writer_drain(p.a, st_wr_cb, &w), 0);
    assert_int_equal(w.calls, 0); /* never inside the call */
    ts_run_until(p.loop, st_wr_done, &w, 5);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.status, 0);
    assert_int_equal(tide_writer_drain(NULL, st_wr_cb, &w), TIDE_EINVAL);
    assert_int_equal(tide_writer_drain(p.a, NULL, &w), TIDE_EINVAL);
    st_pair_close(&p);
}

/* try_drain answers at once when writing is not paused (the callback never runs), and
 * starts a real drain only while it is. */
static void test_try_drain(void **state) {
    (void)state;
    st_pair p;
    st_pair_open(&p, 64);
    st_wr now = {0}, later = {0}, gone = {0};
    assert_int_equal(tide_writer_write(p.a, "abc", 3), 0);
    assert_int_equal(tide_writer_try_drain(p.a, st_wr_cb, &now), 1);
    st_spin(p.loop, 3);
    assert_int_equal(now.calls, 0);
    assert_int_equal(tide_writer_try_drain(NULL, st_wr_cb, &now), TIDE_EINVAL);
    assert_int_equal(tide_writer_try_drain(p.a, NULL, &now), TIDE_EINVAL);
    pause_a(&p);
    assert_int_equal(tide_writer_try_drain(p.a, st_wr_cb, &later), 0);
    st_spin(p.loop, 3);
    assert_int_equal(later.calls, 0);
    assert_int_equal(tide_memory_transport_set_window(p.ta, 1 << 20), 0);
    ts_run_until(p.loop, st_wr_done, &later, 5);
    assert_int_equal(later.status, 0);
    /* An error is answered at once too, and the callback never runs. */
    tide_writer_abort(p.a);
    assert_int_equal(tide_writer_try_drain(p.a, st_wr_cb, &gone), TIDE_ECONNABORTED);
    st_spin(p.loop, 3);
    assert_int_equal(gone.calls, 0);
    p.a = NULL;
    st_pair_close(&p);
}

/* checklist 32: many drains wait together and are released together. */
static void test_drain_many_waiters_released(void **state) {
    (void)state;
    st_pair p;
    st_wr w[NWAITERS];
    open_with_drains(&p, w);
    /* Opening the window lets the queue move: below the low-water mark, all resume. */
    assert_int_equal(tide_memory_transport_set_window(p.ta, 1 << 20), 0);
    expect_all(&p, w, 0);
    assert_false(p.a->flags & TIDE__S_WRITE_PAUSED);
    st_pair_close(&p);
}

/* All waiters fail with the connection's error; and as soon as the error is known,
 * before connection_lost runs, a new drain and a write see it. */
static void test_drain_waiters_fail_on_loss(void **state) {
    st_plain_only();
    (void)state;
    st_pair p;
    st_wr w[NWAITERS];
    open_with_drains(&p, w);
    assert_int_equal(tide_memory_transport_inject_error(p.ta, TIDE_ECONNRESET), 0);
    st_wr early = {0};
    assert_int_equal(tide_writer_drain(p.a, st_wr_cb, &early), 0);
    assert_int_equal(tide_writer_write(p.a, "x", 1), TIDE_ECONNRESET);
    expect_all(&p, w, TIDE_ECONNRESET);
    assert_int_equal(early.calls, 1);
    assert_int_equal(early.status, TIDE_ECONNRESET);
    /* After the loss: the same error. */
    ts_run_until(p.loop, st_pair_lost, &p, 5);
    st_wr late = {0};
    assert_int_equal(tide_writer_drain(p.a, st_wr_cb, &late), 0);
    ts_run_until(p.loop, st_wr_done, &late, 5);
    assert_int_equal(late.status, TIDE_ECONNRESET);
    assert_int_equal(tide_writer_write(p.a, "x", 1), TIDE_ECONNRESET);
    assert_int_equal(tide_writer_write_eof(p.a), TIDE_ECONNRESET);
    st_pair_close(&p);
}

/* Stricter than asyncio: an abort discarded the queue, so drain fails. */
static void test_drain_after_abort(void **state) {
    (void)state;
    st_pair p;
    st_pair_open(&p, 64);
    st_wr w[NWAITERS];
    st_wr closed = {0}, now = {0};
    pause_a(&p);
    start_drains(&p, w);
    assert_int_equal(tide_writer_wait_closed(p.a, st_wr_cb, &closed), 0);
    tide_writer_abort(p.a);
    /* Right after the abort, still inside this call: a new drain knows too. */
    assert_int_equal(tide_writer_drain(p.a, st_wr_cb, &now), 0);
    expect_all(&p, w, TIDE_ECONNABORTED);
    ts_run_until(p.loop, st_wr_done, &now, 5);
    assert_int_equal(now.status, TIDE_ECONNABORTED);
    /* wait_closed reports connection_lost's status: 0 after an abort, as asyncio. */
    ts_run_until(p.loop, st_wr_done, &closed, 5);
    assert_int_equal(closed.status, 0);
    p.a = NULL;
    st_pair_close(&p);
}

/* A drain started once the writer is closing cannot promise anything: TIDE_ECLOSED,
 * never 0 (code ported from asyncio relies on drain failing here). A drain that was
 * already waiting when the close came completes with 0 once the queue is flushed. */
static void test_drain_after_close(void **state) {
    (void)state;
    st_pair p;
    st_pair_open(&p, 64);
    st_rd x = {0};
    assert_int_equal(tide_writer_write(p.a, "ping", 4), 0);
    assert_int_equal(tide_reader_readexactly(tide_writer_get_reader(p.b), 4, st_rd_cb, &x), 0);
    st_expect(p.loop, &x, 0, "ping");
    st_wr w[NWAITERS];
    st_wr after = {0}, later = {0};
    pause_a(&p);
    start_drains(&p, w);
    tide_writer_close(p.a);
    assert_int_equal(tide_writer_drain(p.a, st_wr_cb, &after), 0);
    ts_run_until(p.loop, st_wr_done, &after, 5);
    assert_int_equal(after.status, TIDE_ECLOSED);
    assert_int_equal(w[0].calls, 0);
    /* The peer reads again: the queue is flushed, the early drains are released. */
    assert_int_equal(tide_memory_transport_set_window(p.ta, SIZE_MAX), 0);
    expect_all(&p, w, 0);
    assert_int_equal(tide_writer_drain(p.a, st_wr_cb, &later), 0);
    ts_run_until(p.loop, st_wr_done, &later, 5);
    assert_int_equal(later.status, TIDE_ECLOSED);
    p.a = NULL;
    st_pair_close(&p);
}

/* checklist 31: the reader's stored error comes first. */
static void test_drain_reader_exception_first(void **state) {
    (void)state;
    st_pair p;
    st_pair_open(&p, 64);
    st_wr w = {0};
    assert_int_equal(tide_reader_set_exception(tide_writer_get_reader(p.a), TIDE_EPROTO), 0);
    assert_int_equal(tide_writer_drain(p.a, st_wr_cb, &w), 0);
    ts_run_until(p.loop, st_wr_done, &w, 5);
    assert_int_equal(w.status, TIDE_EPROTO);
    st_pair_close(&p);
}

/* ---- after the connection is gone ---------------------------------------------------------- */

typedef struct after {
    st_pair *p;
    int closed_status;
    int closed_calls;
    int write_rc, eof_rc;
    bool closing, can_eof;
    tide_transport_t *transport;
    st_wr drain;
} after;

/* From wait_closed's callback (the stream was closed, so only callbacks may still
 * use it): everything reports the end, and a drain can still be started. */
static void after_closed(tide_writer_t *w, int status, void *arg) {
    after *a = arg;
    a->closed_calls++;
    a->closed_status = status;
    a->write_rc = tide_writer_write(w, "x", 1);
    a->eof_rc = tide_writer_write_eof(w);
    a->closing = tide_writer_is_closing(w);
    a->can_eof = tide_writer_can_write_eof(w);
    a->transport = tide_writer_get_transport(w);
    assert_int_equal(tide_writer_drain(w, st_wr_cb, &a->drain), 0);
}

static void test_after_clean_close(void **state) {
    (void)state;
    st_pair p;
    st_pair_open(&p, 64);
    after a = {.p = &p};
    st_wr second = {0};
    assert_int_equal(tide_writer_write(p.a, "bye", 3), 0);
    tide_writer_close(p.a);
    assert_int_equal(tide_writer_write(p.a, "x", 1), TIDE_ECLOSED);
    assert_int_equal(tide_writer_wait_closed(p.a, after_closed, &a), 0);
    assert_int_equal(tide_writer_wait_closed(p.a, st_wr_cb, &second), 0);
    ts_run_until(p.loop, st_wr_done, &a.drain, 5);
    assert_int_equal(a.closed_calls, 1);
    assert_int_equal(a.closed_status, 0);
    assert_int_equal(second.calls, 1);
    assert_int_equal(second.status, 0);
    assert_int_equal(a.write_rc, TIDE_ECLOSED);
    assert_int_equal(a.eof_rc, TIDE_ECLOSED);
    assert_true(a.closing);
    assert_false(a.can_eof);
    assert_null(a.transport);
    assert_int_equal(a.drain.status, TIDE_ECLOSED);
    /* The peer got everything before the end. */
    st_rd x = {0};
    assert_int_equal(tide_reader_read(tide_writer_get_reader(p.b), TIDE_READ_ALL, st_rd_cb, &x), 0);
    st_expect(p.loop, &x, 0, "bye");
    p.a = NULL;
    st_pair_close(&p);
}

/* checklist 33: wait_closed reports the connection's error, to every waiter. */
static void test_wait_closed_error(void **state) {
    (void)state;
    st_pair p;
    st_pair_open(&p, 64);
    st_wr w[NWAITERS];
    memset(w, 0, sizeof(w));
    for (int i = 0; i < NWAITERS; i++)
        assert_int_equal(tide_writer_wait_closed(p.b, st_wr_cb, &w[i]), 0);
    st_spin(p.loop, 3);
    assert_int_equal(w[0].calls, 0);
    assert_int_equal(tide_memory_transport_inject_error(p.tb, TIDE_ECONNRESET), 0);
    ts_run_until(p.loop, all_done, w, 5);
    for (int i = 0; i < NWAITERS; i++)
        assert_int_equal(w[i].status, TIDE_ECONNRESET);
    st_wr late = {0};
    assert_int_equal(tide_writer_wait_closed(p.b, st_wr_cb, &late), 0);
    assert_int_equal(late.calls, 0);
    ts_run_until(p.loop, st_wr_done, &late, 5);
    assert_int_equal(late.status, TIDE_ECONNRESET);
    st_pair_close(&p);
}

/* ---- ownership ------------------------------------------------------------------------------ */

static int silence_log_count;
static void silence_log(tide_loop_t *loop, tide_log_level_t level, const char *msg, void *arg) {
    (void)loop;
    (void)level;
    (void)msg;
    (void)arg;
    silence_log_count++;
}

/* A stream whose connection is gone does not keep the loop running, but until the
 * user closes it, tide_loop_close reports it. */
static void test_unclosed_stream_reported(void **state) {
    (void)state;
    st_pair p;
    st_pair_open(&p, 64);
    assert_int_equal(tide_memory_transport_inject_error(p.ta, TIDE_ECONNRESET), 0);
    ts_run_until(p.loop, st_pair_lost, &p, 5);
    /* Bounded: a hang here would be a bug; the alarm ends the test. */
    alarm(20);
    assert_int_equal(tide_loop_run(p.loop, TIDE_RUN_DEFAULT), 0);
    alarm(0);
    tide_loop_set_log_handler(p.loop, silence_log, NULL);
    assert_int_equal(tide_loop_close(p.loop), TIDE_EBUSY);
    assert_true(silence_log_count >= 2);
    tide_loop_set_log_handler(p.loop, NULL, NULL);
    /* Closing a stream whose connection is already gone frees it. */
    st_pair_close(&p);
}

/* Closing from inside a read callback, with a wait_closed started there too. */
typedef struct closer {
    st_wr closed;
    int reads;
} closer;

static void close_in_read(tide_reader_t *r, int status, const void *data, size_t len, void *arg) {
    closer *c = arg;
    c->reads++;
    assert_int_equal(status, 0);
    assert_int_equal(len, 4);
    assert_memory_equal(data, "ping", 4);
    tide_writer_t *w = tide_reader_get_writer(r);
    assert_int_equal(tide_writer_write(w, "pong", 4), 0);
    tide_writer_close(w);
    assert_int_equal(tide_writer_wait_closed(w, st_wr_cb, &c->closed), 0);
    /* The data is still ours until we return. */
    assert_memory_equal(data, "ping", 4);
}

static void test_close_inside_callback(void **state) {
    (void)state;
    st_pair p;
    st_pair_open(&p, 64);
    closer c = {0};
    st_rd x = {0};
    assert_int_equal(tide_reader_readexactly(tide_writer_get_reader(p.b), 4, close_in_read, &c), 0);
    assert_int_equal(tide_writer_write(p.a, "ping", 4), 0);
    assert_int_equal(tide_reader_read(tide_writer_get_reader(p.a), TIDE_READ_ALL, st_rd_cb, &x), 0);
    st_expect(p.loop, &x, 0, "pong");
    ts_run_until(p.loop, st_wr_done, &c.closed, 5);
    assert_int_equal(c.reads, 1);
    assert_int_equal(c.closed.status, 0);
    p.b = NULL;
    st_pair_close(&p);
}

/* The await seam: a drain record withdrawn before it completes never calls back. */
static void test_waiter_cancel(void **state) {
    (void)state;
    st_pair p;
    st_pair_open(&p, 64);
    st_wr w = {0};
    tide__stream_waiter rec;
    pause_a(&p);
    tide__writer_drain_start(p.a, &rec, st_wr_cb, &w);
    st_spin(p.loop, 2);
    tide__writer_waiter_cancel(&rec);
    assert_int_equal(tide_memory_transport_set_window(p.ta, 1 << 20), 0);
    st_spin(p.loop, 10);
    assert_false(p.a->flags & TIDE__S_WRITE_PAUSED);
    assert_int_equal(w.calls, 0);
    /* Also when its completion was already queued. */
    tide__writer_drain_start(p.a, &rec, st_wr_cb, &w);
    tide__writer_waiter_cancel(&rec);
    st_spin(p.loop, 3);
    assert_int_equal(w.calls, 0);
    st_pair_close(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_and_half_close),
        cmocka_unit_test(test_drain_not_paused),
        cmocka_unit_test(test_try_drain),
        cmocka_unit_test(test_drain_many_waiters_released),
        cmocka_unit_test(test_drain_waiters_fail_on_loss),
        cmocka_unit_test(test_drain_after_abort),
        cmocka_unit_test(test_drain_after_close),
        cmocka_unit_test(test_drain_reader_exception_first),
        cmocka_unit_test(test_after_clean_close),
        cmocka_unit_test(test_wait_closed_error),
        cmocka_unit_test(test_unclosed_stream_reported),
        cmocka_unit_test(test_close_inside_callback),
        cmocka_unit_test(test_waiter_cancel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
