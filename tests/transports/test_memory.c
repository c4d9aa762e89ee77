/* The in-memory transport pair (tide/testing.h): what is specific to it. The
 * behaviour it shares with socket transports is checked by
 * tests/protocols/test_contract.c; here: the window, injected errors, how the peer
 * sees an abort or a finished close, and the socket-only calls. Everything is
 * deterministic, so "nothing happened" is checked by spinning the loop a few
 * non-blocking turns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "support/support.h"

/* The fixture is a ts_duo (ts_duo_setup / ts_duo_teardown): the teardown closes the
 * loop and checks both recorders' callback order. */

/* Connects a and b; the caller may adjust the recorders before. */
static void fx_connect(ts_duo *f) {
    assert_int_equal(tide_memory_pair_new(f->loop, &f->a.base, &f->b.base, &f->ta, &f->tb), 0);
    /* connection_made is deferred, as for sockets. */
    assert_int_equal(f->a.made + f->b.made, 0);
    ts_run_until(f->loop, ts_pred_duo_made, f, 5);
}

/* fx_connect, then a's writes pass through a window of `window` bytes. */
static void fx_connect_window(ts_duo *f, size_t window) {
    fx_connect(f);
    assert_int_equal(tide_memory_transport_set_window(f->ta, window), 0);
}

static void fx_finish(ts_duo *f) { ts_run_until(f->loop, ts_pred_duo_lost, f, 5); }

static void test_kind_and_socket_calls(void **state) {
    ts_duo *f = *state;
    fx_connect(f);
    assert_ptr_equal(f->a.transport, f->ta);
    assert_ptr_equal(f->b.transport, f->tb);
    assert_string_equal(tide_transport_kind(f->ta), "memory");
    assert_true(tide_transport_can_write_eof(f->ta));
    assert_int_equal(tide_transport_get_fd(f->ta), TIDE_ENOTSOCK);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    assert_int_equal(tide_transport_get_peername(f->ta, (struct sockaddr *)&ss, &len),
                     TIDE_ENOTSOCK);
    assert_int_equal(tide_transport_get_sockname(f->tb, (struct sockaddr *)&ss, &len),
                     TIDE_ENOTSOCK);
    assert_ptr_equal(tide_transport_get_loop(f->ta), f->loop);
    assert_int_equal(tide_memory_transport_set_window(NULL, 1), TIDE_EINVAL);
    assert_int_equal(tide_memory_transport_inject_error(NULL, TIDE_ECONNRESET), TIDE_EINVAL);
    assert_int_equal(tide_memory_transport_inject_error(f->ta, 0), TIDE_EINVAL);
    assert_int_equal(tide_memory_transport_inject_error(f->ta, 5), TIDE_EINVAL);
    assert_int_equal(tide_memory_pair_new(f->loop, NULL, &f->b.base, NULL, NULL), TIDE_EINVAL);
    tide_transport_close(f->ta);
    fx_finish(f);
    assert_string_equal(f->a.events, "ML");
    assert_string_equal(f->b.events, "MEL");
    assert_int_equal(f->a.lost_status, 0);
    assert_int_equal(f->b.lost_status, 0);
}

/* Data is never delivered inside the writer's call, arrives in order, and the pair
 * works when only one of the out-pointers is wanted. */
static void test_delivery_is_deferred_and_ordered(void **state) {
    ts_duo *f = *state;
    tide_transport_t *tb = NULL;
    assert_int_equal(tide_memory_pair_new(f->loop, &f->a.base, &f->b.base, NULL, &tb), 0);
    ts_run_until(f->loop, ts_pred_duo_made, f, 5);
    f->ta = f->a.transport;
    f->tb = tb;
    assert_ptr_equal(tb, f->b.transport);
    assert_int_equal(tide_transport_write(f->ta, "one ", 4), 0);
    tide_iovec_t v[3] = {{"two ", 4}, {"", 0}, {"three", 5}};
    assert_int_equal(tide_transport_writelines(f->ta, v, 3), 0);
    assert_int_equal(f->b.len, 0);
    assert_int_equal(tide_transport_get_write_buffer_size(f->ta), 0);
    ts_spin(f->loop, 3);
    assert_int_equal(f->b.len, 13);
    assert_memory_equal(f->b.data, "one two three", 13);
    tide_transport_close(f->tb);
    fx_finish(f);
    assert_string_equal(f->b.events, "MDL");
    assert_string_equal(f->a.events, "MEL");
}

/* The window: what does not fit queues in the writer (its write buffer size), a
 * paused reader keeps the window full, and reading lets the queue move. */
static void test_window_and_paused_reader(void **state) {
    ts_duo *f = *state;
    fx_connect_window(f, 10);
    tide_transport_pause_reading(f->tb);
    char buf[25];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (char)('a' + i);
    assert_int_equal(tide_transport_write(f->ta, buf, sizeof(buf)), 0);
    assert_int_equal(tide_transport_get_write_buffer_size(f->ta), 15);
    ts_spin(f->loop, 5);
    assert_int_equal(f->b.len, 0);
    assert_int_equal(tide_transport_get_write_buffer_size(f->ta), 15);
    /* Reading drains 10 bytes at a time through the window. */
    tide_transport_resume_reading(f->tb);
    ts_spin(f->loop, 10);
    assert_int_equal(f->b.len, sizeof(buf));
    assert_memory_equal(f->b.data, buf, sizeof(buf));
    assert_int_equal(tide_transport_get_write_buffer_size(f->ta), 0);
    tide_transport_close(f->ta);
    fx_finish(f);
}

/* A zero window makes every write queue: the simplest way to drive the watermarks. */
static void test_zero_window_drives_watermarks(void **state) {
    ts_duo *f = *state;
    fx_connect_window(f, 0);
    assert_int_equal(tide_transport_set_write_buffer_limits(f->ta, 100, 20), 0);
    char buf[101];
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(tide_transport_write(f->ta, buf, 100), 0);
    assert_int_equal(f->a.pauses, 0);
    assert_int_equal(tide_transport_write(f->ta, buf, 1), 0);
    assert_int_equal(f->a.pauses, 1); /* synchronous, inside the write */
    ts_spin(f->loop, 5);
    assert_int_equal(f->b.len, 0);
    assert_int_equal(f->a.resumes, 0);
    assert_int_equal(tide_memory_transport_set_window(f->ta, 64 * 1024), 0);
    assert_int_equal(f->a.resumes, 0); /* the queue moves on the loop */
    ts_spin(f->loop, 5);
    assert_int_equal(f->a.resumes, 1);
    assert_int_equal(f->b.len, 101);
    assert_string_equal(f->a.events, "MPR");
    tide_transport_close(f->ta);
    fx_finish(f);
}

/* close waits for the queue: connection_lost(0) comes only after the peer read it all. */
static void test_close_flushes_through_small_window(void **state) {
    ts_duo *f = *state;
    fx_connect_window(f, 7);
    static char big[10000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)(i * 7);
    assert_int_equal(tide_transport_write(f->ta, big, sizeof(big)), 0);
    tide_transport_close(f->ta);
    assert_int_equal(tide_transport_write(f->ta, "x", 1), TIDE_ECLOSED);
    ts_run_until(f->loop, ts_pred_lost, &f->b, 5);
    /* The writer's loss came after everything was read. */
    assert_int_equal(f->a.lost, 1);
    assert_int_equal(f->b.len, sizeof(big));
    assert_memory_equal(f->b.data, big, sizeof(big));
    fx_finish(f);
    assert_string_equal(f->b.events, "MDEL");
}

/* abort: the peer gets the bytes that had reached it, then a reset, never EOF. */
static void test_abort_resets_peer(void **state) {
    ts_duo *f = *state;
    fx_connect_window(f, 4);
    assert_int_equal(tide_transport_write(f->ta, "delivered-queued", 16), 0);
    tide_transport_abort(f->ta);
    assert_int_equal(f->a.lost, 0); /* deferred */
    fx_finish(f);
    assert_int_equal(f->a.lost_status, 0);
    assert_int_equal(f->b.lost_status, TIDE_ECONNRESET);
    assert_string_equal(f->b.events, "MDL");
    assert_int_equal(f->b.len, 4);
    assert_memory_equal(f->b.data, "deli", 4);
}

/* A peer that closed and is gone: writing to it fails with EPIPE, and the error is
 * reported, never a silent drop. */
static void test_write_to_closed_peer_fails(void **state) {
    ts_duo *f = *state;
    f->a.keep_open_on_eof = true;
    fx_connect(f);
    tide_transport_close(f->tb);
    ts_run_until(f->loop, ts_pred_lost, &f->b, 5);
    assert_string_equal(f->a.events, "ME");
    assert_int_equal(tide_transport_write(f->ta, "late", 4), 0);
    assert_int_equal(tide_transport_write(f->ta, "later", 5), TIDE_EPIPE);
    assert_true(tide_transport_is_closing(f->ta));
    fx_finish(f);
    assert_int_equal(f->a.lost_status, TIDE_EPIPE);
    assert_string_equal(f->a.events, "MEL");
}

/* A side that closes while the peer still has bytes queued toward it: the queue can
 * never drain, and the writer learns it as a socket would (EPIPE). */
static void test_peer_close_fails_stuck_queue(void **state) {
    ts_duo *f = *state;
    fx_connect_window(f, 0);
    assert_int_equal(tide_transport_write(f->ta, "stuck", 5), 0);
    tide_transport_close(f->tb);
    fx_finish(f);
    assert_int_equal(f->b.lost_status, 0);
    assert_int_equal(f->a.lost_status, TIDE_EPIPE);
    assert_int_equal(f->b.len, 0);
}

/* inject_error: both sides fail with the given code; bytes in flight are dropped and
 * neither side sees EOF. */
static void test_inject_error(void **state) {
    ts_duo *f = *state;
    fx_connect(f);
    assert_int_equal(tide_transport_write(f->ta, "lost", 4), 0);
    assert_int_equal(tide_memory_transport_inject_error(f->tb, TIDE_ETIMEOUT), 0);
    assert_true(tide_transport_is_closing(f->ta));
    assert_true(tide_transport_is_closing(f->tb));
    assert_int_equal(tide_transport_write(f->ta, "x", 1), TIDE_ETIMEOUT);
    assert_int_equal(f->a.lost + f->b.lost, 0);
    fx_finish(f);
    assert_int_equal(f->a.lost_status, TIDE_ETIMEOUT);
    assert_int_equal(f->b.lost_status, TIDE_ETIMEOUT);
    assert_string_equal(f->a.events, "ML");
    assert_string_equal(f->b.events, "ML");
}

/* An error injected before connection_made still gives made first, then lost. */
static void test_inject_error_before_made(void **state) {
    ts_duo *f = *state;
    assert_int_equal(tide_memory_pair_new(f->loop, &f->a.base, &f->b.base, &f->ta, &f->tb), 0);
    assert_int_equal(tide_memory_transport_inject_error(f->ta, TIDE_ECONNRESET), 0);
    fx_finish(f);
    assert_string_equal(f->a.events, "ML");
    assert_string_equal(f->b.events, "ML");
    assert_int_equal(f->a.lost_status, TIDE_ECONNRESET);
    assert_int_equal(f->b.lost_status, TIDE_ECONNRESET);
}

/* Large transfer both ways through a small window, with the pause/resume protocol
 * followed by the writer: exact bytes, and the queue never grows past high + chunk. */
typedef struct pump_state {
    tide_transport_t *t;
    size_t sent, total, max_queued;
    bool paused;
    unsigned char chunk[3000];
} pump_state;

static void pump_fill(pump_state *p) {
    while (!p->paused && p->sent < p->total) {
        size_t n = p->total - p->sent;
        if (n > sizeof(p->chunk))
            n = sizeof(p->chunk);
        for (size_t i = 0; i < n; i++)
            p->chunk[i] = (unsigned char)((p->sent + i) * 31 + 7);
        assert_int_equal(tide_transport_write(p->t, p->chunk, n), 0);
        p->sent += n;
        size_t q = tide_transport_get_write_buffer_size(p->t);
        if (q > p->max_queued)
            p->max_queued = q;
    }
    if (p->sent == p->total)
        tide_transport_close(p->t);
}

static void on_pause_stop(ts_recorder *r) { ((pump_state *)r->user)->paused = true; }

static void on_resume_fill(ts_recorder *r) {
    pump_state *p = r->user;
    p->paused = false;
    pump_fill(p);
}

static void test_bulk_transfer_with_flow_control(void **state) {
    ts_duo *f = *state;
    pump_state *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    p->total = 2 * 1024 * 1024 + 17;
    f->a.user = p;
    f->a.on_pause = on_pause_stop;
    f->a.on_resume = on_resume_fill;
    fx_connect(f);
    p->t = f->ta;
    assert_int_equal(tide_memory_transport_set_window(f->ta, 8192), 0);
    assert_int_equal(tide_transport_set_write_buffer_limits(f->ta, 16384, 4096), 0);
    pump_fill(p);
    assert_true(p->paused);
    fx_finish(f);
    assert_int_equal(f->b.len, p->total);
    for (size_t i = 0; i < p->total; i++)
        if (f->b.data[i] != (unsigned char)(i * 31 + 7))
            fail_msg("byte %zu differs", i);
    assert_true(p->max_queued <= 16384 + sizeof(p->chunk));
    assert_true(f->a.pauses >= 2);
    assert_int_equal(f->a.lost_status, 0);
    free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        TS_DUO_TEST(test_kind_and_socket_calls),
        TS_DUO_TEST(test_delivery_is_deferred_and_ordered),
        TS_DUO_TEST(test_window_and_paused_reader),
        TS_DUO_TEST(test_zero_window_drives_watermarks),
        TS_DUO_TEST(test_close_flushes_through_small_window),
        TS_DUO_TEST(test_abort_resets_peer),
        TS_DUO_TEST(test_write_to_closed_peer_fails),
        TS_DUO_TEST(test_peer_close_fails_stuck_queue),
        TS_DUO_TEST(test_inject_error),
        TS_DUO_TEST(test_inject_error_before_made),
        TS_DUO_TEST(test_bulk_transfer_with_flow_control),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
