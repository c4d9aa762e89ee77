/* The manual clock (tide/testing.h): timers fire only when the test advances the
 * clock, in deadline order, each with the clock at its own deadline. The second half
 * is the pattern for users testing their own protocols: a protocol with an idle
 * timeout, driven over an in-memory pair, with time under the test's control.
 *
 * With the manual clock no wait may block: tide_loop_advance(loop, 0) runs whatever
 * is ready (deferred connection_made, data, connection_lost) without moving time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "support/support.h"

typedef struct fired_log {
    tide_loop_t *loop;
    char names[32];
    double at[32];
    size_t n;
} fired_log;

typedef struct tagged {
    fired_log *log;
    char name;
} tagged;

static void record(tide_loop_t *loop, void *arg) {
    tagged *t = arg;
    fired_log *log = t->log;
    assert_true(log->n + 1 < sizeof(log->names));
    log->names[log->n] = t->name;
    log->at[log->n] = tide_loop_time(loop);
    log->n++;
    log->names[log->n] = '\0';
}

static void test_timers_fire_in_deadline_order(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    fired_log log = {.loop = loop};
    assert_int_equal(tide_loop_advance(loop, 1.0), TIDE_EINVAL); /* not manual yet */
    assert_int_equal(tide_loop_use_manual_clock(loop, 100.0), 0);
    assert_true(tide_loop_time(loop) == 100.0);

    tagged a = {&log, 'a'}, b = {&log, 'b'}, c = {&log, 'c'}, d = {&log, 'd'}, e = {&log, 'e'};
    tagged x = {&log, 'x'};
    assert_non_null(tide_loop_call_later(loop, 3.0, record, &a));
    tide_handle_t *hb = tide_loop_call_later(loop, 1.0, record, &b);
    assert_non_null(hb);
    assert_true(tide_handle_when(hb) == 101.0);
    assert_non_null(tide_loop_call_later(loop, 2.0, record, &c));
    assert_non_null(tide_loop_call_at(loop, 102.0, record, &d)); /* same deadline as c */
    assert_non_null(tide_loop_call_at(loop, 102.5, record, &e));
    tide_handle_t *hx = tide_loop_call_later(loop, 1.5, record, &x);
    assert_non_null(hx);
    /* Switching now would orphan the pending timers. */
    assert_int_equal(tide_loop_use_manual_clock(loop, 0.0), TIDE_EBUSY);

    /* Nothing is due yet, however long the loop runs on its own. */
    for (int i = 0; i < 5; i++)
        tide_loop_run(loop, TIDE_RUN_NOWAIT);
    assert_int_equal(tide_loop_advance(loop, 0.5), 0);
    assert_int_equal(log.n, 0);
    assert_true(tide_loop_time(loop) == 100.5);

    assert_int_equal(tide_loop_advance(loop, 0.5), 1); /* exactly at b's deadline */
    assert_string_equal(log.names, "b");
    assert_true(log.at[0] == 101.0);
    tide_handle_cancel(hx);

    assert_int_equal(tide_loop_advance(loop, 1.5), 3);
    assert_string_equal(log.names, "bcde");
    assert_true(log.at[1] == 102.0 && log.at[2] == 102.0 && log.at[3] == 102.5);
    assert_true(tide_loop_time(loop) == 102.5);

    assert_int_equal(tide_loop_advance(loop, -5.0), 0); /* never backwards */
    assert_true(tide_loop_time(loop) == 102.5);
    assert_int_equal(tide_loop_advance(loop, 10.0), 1);
    assert_string_equal(log.names, "bcdea");
    assert_true(log.at[4] == 103.0);
    assert_true(tide_loop_time(loop) == 112.5);
    ts_loop_close(loop);
}

/* A timer armed from a timer callback, still before the target, fires in the same
 * advance at its own deadline; call_soon work made ready by timers runs too. */
typedef struct chain {
    fired_log log;
    tagged late, soon, again;
    int soon_ran;
} chain;

static void soon_cb(tide_loop_t *loop, void *arg) {
    chain *c = arg;
    c->soon_ran++;
    record(loop, &c->soon);
}

static void chain_first(tide_loop_t *loop, void *arg) {
    chain *c = arg;
    record(loop, &c->late);
    assert_non_null(tide_loop_call_later(loop, 0.25, record, &c->again));
    assert_non_null(tide_loop_call_soon(loop, soon_cb, c));
}

static void test_timers_armed_during_advance(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    assert_int_equal(tide_loop_use_manual_clock(loop, 0.0), 0);
    chain c = {.log = {.loop = loop}};
    c.late = (tagged){&c.log, 'f'};
    c.soon = (tagged){&c.log, 's'};
    c.again = (tagged){&c.log, 'g'};
    assert_non_null(tide_loop_call_later(loop, 1.0, chain_first, &c));
    assert_int_equal(tide_loop_advance(loop, 2.0), 2);
    assert_int_equal(c.soon_ran, 1);
    /* f at 1.0, g at 1.25 (the clock passed it), then the ready callback. */
    assert_string_equal(c.log.names, "fgs");
    assert_true(c.log.at[0] == 1.0);
    assert_true(c.log.at[1] == 1.25);
    assert_true(tide_loop_time(loop) == 2.0);
    ts_loop_close(loop);
}

/* ---- a user's protocol under test: an idle timeout ------------------------------- */

/* Says "bye" and closes when nothing arrives for `timeout` seconds; every byte
 * received restarts the timer. */
typedef struct idle_proto {
    tide_protocol_t base;
    tide_transport_t *t;
    tide_handle_t *timer;
    double timeout;
    double fired_at;
    int timeouts;
    int lost;
    size_t received;
} idle_proto;

static idle_proto *idle_of(tide_protocol_t *p) { return TIDE_CONTAINER_OF(p, idle_proto, base); }

static void idle_expired(tide_loop_t *loop, void *arg) {
    idle_proto *ip = arg;
    ip->timer = NULL; /* the handle is gone once its callback runs */
    ip->timeouts++;
    ip->fired_at = tide_loop_time(loop);
    tide_transport_write(ip->t, "bye\n", 4);
    tide_transport_close(ip->t);
}

static void idle_arm(idle_proto *ip) {
    tide_handle_cancel(ip->timer);
    ip->timer = tide_loop_call_later(tide_transport_get_loop(ip->t), ip->timeout, idle_expired, ip);
}

static void idle_made(tide_protocol_t *p, tide_transport_t *t) {
    idle_proto *ip = idle_of(p);
    ip->t = t;
    idle_arm(ip);
}

static void idle_data(tide_protocol_t *p, const void *data, size_t len) {
    (void)data;
    idle_proto *ip = idle_of(p);
    ip->received += len;
    idle_arm(ip);
}

static void idle_lost(tide_protocol_t *p, int status) {
    (void)status;
    idle_proto *ip = idle_of(p);
    tide_handle_cancel(ip->timer);
    ip->timer = NULL;
    ip->lost++;
}

static const tide_protocol_ops_t idle_ops = {
    .size = TIDE_PROTOCOL_OPS_SIZE,
    .connection_made = idle_made,
    .data_received = idle_data,
    .connection_lost = idle_lost,
};

/* An idle_proto server with the given timeout and a recording client, connected by a
 * memory pair on a loop whose manual clock starts at `start`. */
typedef struct idle_bench {
    tide_loop_t *loop;
    idle_proto server;
    ts_recorder client;
    tide_transport_t *tc;
} idle_bench;

static void idle_start(idle_bench *b, double start, double timeout) {
    b->loop = ts_loop_new();
    assert_int_equal(tide_loop_use_manual_clock(b->loop, start), 0);
    b->server = (idle_proto){.base = {&idle_ops}, .timeout = timeout};
    ts_recorder_init(&b->client);
    b->tc = NULL;
    assert_int_equal(
        tide_memory_pair_new(b->loop, &b->client.base, &b->server.base, &b->tc, NULL), 0);
}

/* The client saw its callbacks in order; everything is freed and closed. */
static void idle_end(idle_bench *b) {
    assert_int_equal(b->client.violations, 0);
    ts_recorder_free(&b->client);
    ts_loop_close(b->loop);
}

static void test_idle_timeout_protocol(void **state) {
    (void)state;
    idle_bench b;
    idle_start(&b, 0.0, 10.0);
    assert_int_equal(tide_loop_advance(b.loop, 0), 0);
    assert_int_equal(b.client.made, 1);
    assert_non_null(b.server.timer);

    /* Activity keeps the connection: t=0 and t=9 restart the 10 s timer. */
    assert_int_equal(tide_transport_write(b.tc, "ping", 4), 0);
    assert_int_equal(tide_loop_advance(b.loop, 0), 0);
    assert_int_equal(b.server.received, 4);
    assert_int_equal(tide_loop_advance(b.loop, 9.0), 0);
    assert_int_equal(tide_transport_write(b.tc, "again", 5), 0);
    /* Deliver at t=9 before moving on: advancing first would fire the old timer. */
    assert_int_equal(tide_loop_advance(b.loop, 0), 0);
    assert_int_equal(b.server.received, 9);
    assert_int_equal(tide_loop_advance(b.loop, 9.5), 0); /* t = 18.5 < 19 */
    assert_int_equal(b.server.timeouts, 0);
    assert_int_equal(b.client.len, 0);

    /* Silence for 10 s after t=9: the server says bye at exactly t=19 and closes. */
    assert_int_equal(tide_loop_advance(b.loop, 1.0), 1);
    assert_int_equal(b.server.timeouts, 1);
    assert_true(b.server.fired_at == 19.0);
    assert_int_equal(tide_loop_advance(b.loop, 0), 0);
    assert_int_equal(b.server.lost, 1);
    assert_int_equal(b.client.lost, 1);
    assert_int_equal(b.client.len, 4);
    assert_memory_equal(b.client.data, "bye\n", 4);
    assert_string_equal(b.client.events, "MDEL");
    assert_int_equal(b.client.lost_status, 0);
    idle_end(&b);
}

/* The same protocol when the peer goes first: the timer is cancelled in
 * connection_lost and never fires afterwards. */
static void test_idle_timer_cancelled_on_close(void **state) {
    (void)state;
    idle_bench b;
    idle_start(&b, 50.0, 5.0);
    assert_int_equal(tide_loop_advance(b.loop, 1.0), 0);
    tide_transport_close(b.tc);
    assert_int_equal(tide_loop_advance(b.loop, 0), 0);
    assert_int_equal(b.server.lost, 1);
    assert_null(b.server.timer);
    assert_int_equal(tide_loop_advance(b.loop, 100.0), 0);
    assert_int_equal(b.server.timeouts, 0);
    assert_int_equal(b.client.lost, 1);
    idle_end(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_fire_in_deadline_order),
        cmocka_unit_test(test_timers_armed_during_advance),
        cmocka_unit_test(test_idle_timeout_protocol),
        cmocka_unit_test(test_idle_timer_cancelled_on_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
