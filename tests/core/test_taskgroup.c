/* Task groups, gather, wait-first, wait_for and timeout (tide/taskgroup.h), in both
 * styles: a group waits for all its tasks, the first failure cancels the rest and is
 * reported, a cancelled or timed-out waiter cancels the group and still waits for
 * every task; gather keeps every result in order; wait-first hands back the first to
 * finish and leaves the others to their owner; wait_for cancels and joins a task that
 * ran out of time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "support/support.h"

/* A child: sleeps `sleep` seconds (INFINITY: until cancelled), then returns `ret`,
 * or what the sleep returned when it was interrupted. */
typedef struct kid {
    double sleep;
    int ret;
    int sleep_rc;
    int finished;
    size_t stack_used;
} kid;

static int kid_fn(void *arg) {
    kid *k = arg;
    volatile char big[24 * 1024]; /* needs more than the minimum stack */
    memset((char *)big, 1, sizeof(big));
    k->stack_used = sizeof(big);
    k->sleep_rc = tide_task_sleep(k->sleep);
    k->finished = 1;
    return k->sleep_rc != 0 ? k->sleep_rc : k->ret;
}

#define KID(s, r)                                                                                  \
    { .sleep = (s), .ret = (r) }

typedef struct parent {
    tide_task_group_t *g;
    kid kids[3];
    int rc;
    bool all_finished_at_return;
    double deadline;
    tide_task_options_t opts;
} parent;

static int group_parent(void *arg) {
    parent *p = arg;
    for (int i = 0; i < 3; i++)
        TS_CHECK(tide_task_group_spawn(p->g, kid_fn, &p->kids[i], &p->opts) == 0);
    if (p->deadline > 0)
        TS_CHECK(tide_task_deadline_push(p->deadline) == 0);
    p->rc = tide_task_group_wait_await(p->g);
    if (p->deadline > 0)
        tide_task_deadline_pop();
    p->all_finished_at_return = p->kids[0].finished && p->kids[1].finished && p->kids[2].finished;
    TS_CHECK(tide_task_group_size(p->g) == 0);
    TS_CHECK(tide_task_group_spawn(p->g, kid_fn, &p->kids[0], NULL) == TIDE_ECLOSED);
    return 0;
}

static void run_parent(tide_loop_t *loop, parent *p, tide_task_t **task, ts_joined *j) {
    assert_int_equal(tide_task_group_new(loop, &p->g), 0);
    p->opts.stack_size = 64 * 1024; /* every spawn takes the options */
    tide_task_t *t = ts_spawn_joined(loop, group_parent, p, j);
    if (task != NULL)
        *task = t;
}

static void test_group_all_succeed(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    parent p = {.kids = {KID(0.01, 1), KID(0.02, 2), KID(0, 3)}};
    ts_joined j;
    run_parent(loop, &p, NULL, &j);
    ts_run_until_flag(loop, &j.calls, 5);
    assert_int_equal(j.result, 0);
    assert_int_equal(p.rc, 0);
    assert_true(p.all_finished_at_return);
    for (int i = 0; i < 3; i++)
        assert_int_equal(p.kids[i].stack_used, 24 * 1024);
    tide_task_group_free(p.g);
    ts_loop_close(loop);
}

static void test_group_first_failure(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    parent p = {.kids = {KID(INFINITY, 0), KID(0.01, TIDE_EIO), KID(INFINITY, 0)}};
    ts_joined j;
    run_parent(loop, &p, NULL, &j);
    ts_run_until_flag(loop, &j.calls, 5);
    assert_int_equal(j.result, 0);
    assert_int_equal(p.rc, TIDE_EIO);
    assert_true(p.all_finished_at_return);
    assert_int_equal(p.kids[0].sleep_rc, TIDE_ECANCELLED);
    assert_int_equal(p.kids[2].sleep_rc, TIDE_ECANCELLED);
    tide_task_group_free(p.g);
    ts_loop_close(loop);
}

/* The waiting task is cancelled: the group's tasks are cancelled, and the wait
 * returns only once they all finished. */
static void test_group_waiter_cancelled(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    parent p = {.kids = {KID(INFINITY, 0), KID(INFINITY, 0), KID(INFINITY, 0)}};
    ts_joined j;
    tide_task_t *t;
    run_parent(loop, &p, &t, &j);
    ts_spin(loop, 4);
    assert_int_equal(tide_task_cancel(t), 1);
    ts_run_until_flag(loop, &j.calls, 5);
    assert_int_equal(j.result, 0);
    assert_int_equal(p.rc, TIDE_ECANCELLED);
    assert_true(p.all_finished_at_return);
    tide_task_group_free(p.g);
    ts_loop_close(loop);
}

static void test_group_waiter_deadline(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    parent p = {.kids = {KID(0.001, 0), KID(INFINITY, 0), KID(INFINITY, 0)}, .deadline = 0.02};
    ts_joined j;
    run_parent(loop, &p, NULL, &j);
    ts_run_until_flag(loop, &j.calls, 5);
    assert_int_equal(j.result, 0);
    assert_int_equal(p.rc, TIDE_ETIMEOUT);
    assert_true(p.all_finished_at_return);
    assert_int_equal(p.kids[0].sleep_rc, 0);
    assert_int_equal(p.kids[1].sleep_rc, TIDE_ECANCELLED);
    tide_task_group_free(p.g);
    ts_loop_close(loop);
}

typedef struct grec {
    int calls;
    int status;
} grec;

static void grec_cb(tide_task_group_t *g, int status, void *arg) {
    (void)g;
    ((grec *)arg)->calls++;
    ((grec *)arg)->status = status;
}

/* Callback style: tide_task_group_cancel, then the wait reports the cancellation. */
static void test_group_callbacks(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    tide_task_group_t *g;
    kid kids[2] = {KID(INFINITY, 0), KID(0.01, 5)};
    grec r = {0};
    assert_int_equal(tide_task_group_new(loop, &g), 0);
    /* An empty group's wait completes on the next turn, never inside the call. */
    assert_int_equal(tide_task_group_wait(g, grec_cb, &r), 0);
    assert_int_equal(r.calls, 0);
    ts_spin(loop, 2);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(tide_task_group_spawn(g, kid_fn, &kids[0], NULL), TIDE_ECLOSED);
    tide_task_group_free(g);

    memset(&r, 0, sizeof(r));
    assert_int_equal(tide_task_group_new(loop, &g), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(tide_task_group_spawn(g, kid_fn, &kids[i], NULL), 0);
    assert_int_equal(tide_task_group_wait(g, grec_cb, &r), 0);
    ts_spin(loop, 3);
    assert_int_equal(tide_task_group_size(g), 2);
    assert_int_equal(tide_task_group_cancel(g), 0);
    ts_run_until_flag(loop, &r.calls, 5);
    assert_int_equal(r.status, TIDE_ECANCELLED);
    assert_int_equal(kids[0].sleep_rc, TIDE_ECANCELLED);
    assert_int_equal(kids[1].sleep_rc, TIDE_ECANCELLED);
    tide_task_group_free(g);
    ts_loop_close(loop);
}

/* Freed with tasks running: they are cancelled; nothing is left at close. */
static void test_group_free_running(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    tide_task_group_t *g;
    kid kids[2] = {KID(INFINITY, 0), KID(INFINITY, 0)};
    assert_int_equal(tide_task_group_new(loop, &g), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(tide_task_group_spawn(g, kid_fn, &kids[i], NULL), 0);
    ts_spin(loop, 3);
    tide_task_group_free(g);
    ts_run_until_flag(loop, &kids[1].finished, 5);
    ts_spin(loop, 3);
    assert_int_equal(kids[0].sleep_rc, TIDE_ECANCELLED);
    ts_loop_close(loop);
}

/* ---- gather ------------------------------------------------------------------------------ */

static int ret_arg(void *arg) {
    int v = (int)(intptr_t)arg;
    tide_task_sleep(v == 7 ? 0.02 : 0.001); /* finish out of order */
    return v;
}

typedef struct gpar {
    int results[4];
    int rc;
} gpar;

static int gather_parent(void *arg) {
    gpar *gp = arg;
    tide_task_fn fns[4] = {ret_arg, ret_arg, ret_arg, ret_arg};
    void *args[4] = {(void *)(intptr_t)7, (void *)(intptr_t)TIDE_EIO, (void *)(intptr_t)3,
                     (void *)(intptr_t)TIDE_EPIPE};
    gp->rc = tide_task_gather_await(4, fns, args, NULL, gp->results);
    return 0;
}

static void test_gather(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    gpar gp = {0};
    assert_int_equal(ts_run_task(loop, gather_parent, &gp), 0);
    assert_int_equal(gp.rc, TIDE_EIO); /* the first error in argument order */
    assert_int_equal(gp.results[0], 7);
    assert_int_equal(gp.results[1], TIDE_EIO);
    assert_int_equal(gp.results[2], 3);
    assert_int_equal(gp.results[3], TIDE_EPIPE);
    ts_loop_close(loop);
}

typedef struct gcb {
    int calls;
    int status;
} gcb;

static void gather_cb(tide_loop_t *loop, int status, void *arg) {
    (void)loop;
    ((gcb *)arg)->calls++;
    ((gcb *)arg)->status = status;
}

static void test_gather_callback(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    tide_task_fn fns[2] = {ret_arg, ret_arg};
    void *args[2] = {(void *)(intptr_t)7, (void *)(intptr_t)1};
    int results[2] = {-1, -1};
    gcb r = {0};
    assert_int_equal(tide_task_gather(loop, 2, fns, args, NULL, results, gather_cb, &r), 0);
    ts_run_until_flag(loop, &r.calls, 5);
    assert_int_equal(r.status, 0);
    assert_int_equal(results[0], 7);
    assert_int_equal(results[1], 1);
    /* Nothing to gather: still a deferred callback. */
    memset(&r, 0, sizeof(r));
    assert_int_equal(tide_task_gather(loop, 0, NULL, NULL, NULL, NULL, gather_cb, &r), 0);
    assert_int_equal(r.calls, 0);
    ts_run_until_flag(loop, &r.calls, 5);
    assert_int_equal(tide_task_gather(loop, 1, NULL, NULL, NULL, results, gather_cb, &r),
                     TIDE_EINVAL);
    ts_spin(loop, 2);
    ts_loop_close(loop);
}

typedef struct gcancel {
    kid kids[2];
    int results[2];
    int rc;
} gcancel;

static int gather_cancel_parent(void *arg) {
    gcancel *gc = arg;
    tide_task_fn fns[2] = {kid_fn, kid_fn};
    void *args[2] = {&gc->kids[0], &gc->kids[1]};
    gc->rc = tide_task_gather_await(2, fns, args, NULL, gc->results);
    return gc->kids[0].finished && gc->kids[1].finished ? 0 : __LINE__;
}

static void test_gather_cancelled(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    gcancel gc = {.kids = {KID(INFINITY, 0), KID(0.001, 9)}};
    ts_joined j;
    tide_task_t *t = ts_spawn_joined(loop, gather_cancel_parent, &gc, &j);
    ts_run_until_flag(loop, &gc.kids[1].finished, 5);
    assert_int_equal(tide_task_cancel(t), 1);
    ts_run_until_flag(loop, &j.calls, 5);
    assert_int_equal(j.result, 0);
    assert_int_equal(gc.rc, TIDE_ECANCELLED);
    assert_int_equal(gc.results[0], TIDE_ECANCELLED);
    assert_int_equal(gc.results[1], 9);
    ts_loop_close(loop);
}

/* ---- wait-first ---------------------------------------------------------------------------- */

typedef struct wfirst {
    kid kids[3];
    tide_task_t *tasks[3];
    size_t index;
    int result;
    int rc;
    int cancel_rc;
} wfirst;

static int first_parent(void *arg) {
    wfirst *w = arg;
    tide_loop_t *loop = tide_task_get_loop(tide_task_current());
    for (int i = 0; i < 3; i++)
        TS_CHECK(tide_task_spawn(loop, kid_fn, &w->kids[i], NULL, &w->tasks[i]) == 0);
    w->rc = tide_task_wait_first_await(w->tasks, 3, &w->index, &w->result);
    TS_CHECK(w->rc == 0 && w->index == 1 && w->result == 11);
    TS_CHECK(!w->kids[0].finished && !w->kids[2].finished);
    /* The others are still ours: wait for the next, then cancel the last. */
    tide_task_t *rest[2] = {w->tasks[0], w->tasks[2]};
    size_t idx;
    int res;
    TS_CHECK(tide_task_wait_first_await(rest, 2, &idx, &res) == 0 && idx == 0 && res == 10);
    /* Interrupted by a deadline: the remaining task is still ours to join. */
    TS_CHECK(tide_task_deadline_push(0.005) == 0);
    w->cancel_rc = tide_task_wait_first_await(&rest[1], 1, &idx, &res);
    tide_task_deadline_pop();
    tide_task_cancel(rest[1]);
    TS_CHECK(tide_task_join_await(rest[1], &res) == 0 && res == TIDE_ECANCELLED);
    return 0;
}

static void test_wait_first(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    wfirst w = {.kids = {KID(0.03, 10), KID(0.005, 11), KID(INFINITY, 12)}};
    assert_int_equal(ts_run_task(loop, first_parent, &w), 0);
    assert_int_equal(w.cancel_rc, TIDE_ETIMEOUT);
    ts_loop_close(loop);
}

typedef struct fcb {
    int calls;
    size_t index;
    int result;
} fcb;

static void first_cb(tide_loop_t *loop, int status, size_t index, int result, void *arg) {
    (void)loop;
    fcb *r = arg;
    assert_int_equal(status, 0);
    r->calls++;
    r->index = index;
    r->result = result;
}

static void test_wait_first_callback(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    kid kids[3] = {KID(INFINITY, 1), KID(INFINITY, 2), KID(0.001, 3)};
    tide_task_t *tasks[3];
    fcb r = {0};
    for (int i = 0; i < 3; i++)
        assert_int_equal(tide_task_spawn(loop, kid_fn, &kids[i], NULL, &tasks[i]), 0);
    assert_int_equal(tide_task_wait_first(tasks, 3, first_cb, &r), 0);
    ts_run_until_flag(loop, &r.calls, 5);
    assert_int_equal(r.index, 2);
    assert_int_equal(r.result, 3);
    /* Cancel one; once it finished, a new wait takes it at once. */
    assert_int_equal(tide_task_cancel(tasks[0]), 1);
    ts_run_until_flag(loop, &kids[0].finished, 5);
    memset(&r, 0, sizeof(r));
    assert_int_equal(tide_task_wait_first(tasks, 2, first_cb, &r), 0);
    ts_run_until_flag(loop, &r.calls, 5);
    assert_int_equal(r.index, 0);
    assert_int_equal(r.result, TIDE_ECANCELLED);
    tide_task_cancel(tasks[1]);
    ts_joined j = {0};
    assert_int_equal(tide_task_join(tasks[1], ts_on_joined, &j), 0);
    ts_run_until_flag(loop, &j.calls, 5);
    ts_loop_close(loop);
}

/* ---- wait_for and timeout ----------------------------------------------------------------- */

typedef struct wfor {
    kid fast, slow;
    int fast_rc, fast_res, slow_rc, slow_res;
    int t_short, t_long;
} wfor;

static int sleeper(void *arg) { return tide_task_sleep(*(double *)arg); }

static int wait_for_parent(void *arg) {
    wfor *w = arg;
    tide_loop_t *loop = tide_task_get_loop(tide_task_current());
    tide_task_t *a, *b;
    TS_CHECK(tide_task_spawn(loop, kid_fn, &w->fast, NULL, &a) == 0);
    TS_CHECK(tide_task_spawn(loop, kid_fn, &w->slow, NULL, &b) == 0);
    w->fast_rc = tide_task_wait_for_await(a, 1.0, &w->fast_res);
    w->slow_rc = tide_task_wait_for_await(b, 0.01, &w->slow_res);
    TS_CHECK(w->slow.finished); /* cancelled and joined before returning */
    double quick = 0.001, slow = 10;
    w->t_short = tide_task_timeout(0.5, sleeper, &quick);
    w->t_long = tide_task_timeout(0.01, sleeper, &slow);
    return 0;
}

static void test_wait_for_and_timeout(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    wfor w = {.fast = KID(0.001, 4), .slow = KID(INFINITY, 5)};
    assert_int_equal(ts_run_task(loop, wait_for_parent, &w), 0);
    assert_int_equal(w.fast_rc, 0);
    assert_int_equal(w.fast_res, 4);
    assert_int_equal(w.slow_rc, TIDE_ETIMEOUT);
    assert_int_equal(w.slow_res, TIDE_ECANCELLED);
    assert_int_equal(w.t_short, 0);
    assert_int_equal(w.t_long, TIDE_ETIMEOUT);
    ts_loop_close(loop);
}

static void test_outside_task(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    tide_task_group_t *g;
    assert_int_equal(tide_task_group_new(loop, &g), 0);
    assert_int_equal(tide_task_group_wait_await(g), TIDE_ENOTASK);
    assert_int_equal(tide_task_gather_await(0, NULL, NULL, NULL, NULL), TIDE_ENOTASK);
    assert_int_equal(tide_task_wait_first_await(NULL, 0, NULL, NULL), TIDE_ENOTASK);
    assert_int_equal(tide_task_wait_for_await(NULL, 1, NULL), TIDE_ENOTASK);
    assert_int_equal(tide_task_timeout(1, sleeper, NULL), TIDE_ENOTASK);
    tide_task_group_free(g);
    ts_loop_close(loop);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_all_succeed),
        cmocka_unit_test(test_group_first_failure),
        cmocka_unit_test(test_group_waiter_cancelled),
        cmocka_unit_test(test_group_waiter_deadline),
        cmocka_unit_test(test_group_callbacks),
        cmocka_unit_test(test_group_free_running),
        cmocka_unit_test(test_gather),
        cmocka_unit_test(test_gather_callback),
        cmocka_unit_test(test_gather_cancelled),
        cmocka_unit_test(test_wait_first),
        cmocka_unit_test(test_wait_first_callback),
        cmocka_unit_test(test_wait_for_and_timeout),
        cmocka_unit_test(test_outside_task),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
