/* The executor and the public getaddrinfo (tide/executor.h): at most max_workers
 * functions run at once and the rest wait their turn; results come back on the loop
 * thread in both styles; a task interrupted while its function runs stays until the
 * function returned (its argument lives in the task's frame); one interrupted before
 * its function started withdraws it; freeing the executor cancels what has not
 * started. getaddrinfo answers literals and names, and a lookup abandoned by its task
 * leaks nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <netdb.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <time.h>

#include "support/support.h"

static atomic_int g_running, g_peak, g_ran;

static void nap(double seconds) {
    struct timespec ts = {0, (long)(seconds * 1e9)};
    nanosleep(&ts, NULL);
}

/* Blocks its thread for 20 ms, recording how many ran at once; returns its arg. */
static int blocking(void *arg) {
    int now = atomic_fetch_add(&g_running, 1) + 1;
    int peak = atomic_load(&g_peak);
    while (now > peak && !atomic_compare_exchange_weak(&g_peak, &peak, now)) {
    }
    nap(0.02);
    atomic_fetch_sub(&g_running, 1);
    atomic_fetch_add(&g_ran, 1);
    return (int)(intptr_t)arg;
}

static void reset(void) {
    atomic_store(&g_running, 0);
    atomic_store(&g_peak, 0);
    atomic_store(&g_ran, 0);
}

typedef struct done_rec {
    int calls;
    int sum;
    int cancelled;
} done_rec;

static void on_done(tide_executor_t *ex, int status, void *arg) {
    (void)ex;
    done_rec *r = arg;
    r->calls++;
    if (status == TIDE_ECANCELLED)
        r->cancelled++;
    else
        r->sum += status;
}

static bool six_done(void *arg) { return ((done_rec *)arg)->calls == 6; }

/* Six blocking calls through two workers: all run, never more than two at once. */
static void test_bounded_callbacks(void **state) {
    (void)state;
    reset();
    tide_loop_t *loop = ts_loop_new();
    tide_executor_t *ex;
    done_rec r = {0};
    assert_int_equal(tide_executor_new(loop, 2, &ex), 0);
    for (int i = 1; i <= 6; i++)
        assert_int_equal(tide_executor_run(ex, blocking, (void *)(intptr_t)i, on_done, &r), 0);
    assert_int_equal(r.calls, 0);
    ts_run_until(loop, six_done, &r, 10);
    assert_int_equal(r.sum, 21);
    /* Never more than two at once (two at once unless a loaded machine started the
     * second thread only after the first call had ended). */
    assert_true(atomic_load(&g_peak) >= 1 && atomic_load(&g_peak) <= 2);
    tide_executor_free(ex);
    ts_loop_close(loop);
}

static bool three_done(void *arg) { return ((done_rec *)arg)->calls == 3; }

/* The calls run on the loop's pool: 40 calls one after another on a one-worker
 * executor reuse a thread instead of starting one each (kernel thread ids are fresh
 * for every new thread). */
#define REUSE_CALLS 40
static pid_t g_tids[REUSE_CALLS];

static int record_tid(void *arg) {
    g_tids[(intptr_t)arg] = (pid_t)syscall(SYS_gettid);
    return 0;
}

static void run_next(tide_executor_t *ex, int status, void *arg) {
    done_rec *r = arg;
    assert_int_equal(status, 0);
    if (++r->calls < REUSE_CALLS)
        assert_int_equal(tide_executor_run(ex, record_tid, (void *)(intptr_t)r->calls, run_next, r), 0);
}

static bool all_reused(void *arg) { return ((done_rec *)arg)->calls == REUSE_CALLS; }

static void test_pool_reuses_threads(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    tide_executor_t *ex;
    assert_int_equal(tide_executor_new(loop, 1, &ex), 0);
    done_rec r = {0};
    assert_int_equal(tide_executor_run(ex, record_tid, (void *)(intptr_t)0, run_next, &r), 0);
    ts_run_until(loop, all_reused, &r, 10);
    int distinct = 0;
    for (int i = 0; i < REUSE_CALLS; i++) {
        bool seen = false;
        for (int j = 0; j < i; j++)
            seen = seen || g_tids[j] == g_tids[i];
        distinct += !seen;
    }
    assert_true(distinct <= 2);
    tide_executor_free(ex);
    ts_loop_close(loop);
}

/* Freed with calls queued: those complete with TIDE_ECANCELLED and never run; the
 * running ones finish. */
static void test_free_cancels_queued(void **state) {
    (void)state;
    reset();
    tide_loop_t *loop = ts_loop_new();
    tide_executor_t *ex;
    done_rec r = {0};
    assert_int_equal(tide_executor_new(loop, 1, &ex), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tide_executor_run(ex, blocking, (void *)1, on_done, &r), 0);
    tide_executor_free(ex);
    ts_spin(loop, 2);
    assert_int_equal(r.cancelled, 2);
    ts_run_until(loop, three_done, &r, 5);
    assert_int_equal(atomic_load(&g_ran), 1);
    ts_loop_close(loop); /* waits for the worker */
}

typedef struct await_fx {
    tide_executor_t *ex;
    int rc[3];
    int result[3];
    int started; /* set by the task before its first wait */
} await_fx;

static int await_task(void *arg) {
    await_fx *fx = arg;
    /* Plain run. */
    fx->result[0] = -1;
    fx->rc[0] = tide_executor_run_await(fx->ex, blocking, (void *)7, &fx->result[0]);
    /* Interrupted while running: returns after fn, with its result. */
    fx->started = 1;
    fx->rc[1] = tide_executor_run_await(fx->ex, blocking, (void *)8, &fx->result[1]);
    /* Interrupted while queued behind a running call: fn never runs. */
    TS_CHECK(tide_task_deadline_push(0.005) == 0);
    fx->result[2] = -1;
    fx->rc[2] = tide_executor_run_await(fx->ex, blocking, (void *)9, &fx->result[2]);
    tide_task_deadline_pop();
    return 0;
}

static void blocker_done(tide_executor_t *ex, int status, void *arg) {
    (void)ex;
    (void)status;
    (*(int *)arg)++;
}

static void test_await(void **state) {
    (void)state;
    reset();
    tide_loop_t *loop = ts_loop_new();
    await_fx fx = {0};
    ts_joined j;
    int blocker = 0;
    assert_int_equal(tide_executor_new(loop, 1, &fx.ex), 0);
    tide_task_t *t = ts_spawn_joined(loop, await_task, &fx, &j);
    ts_run_until_flag(loop, &fx.started, 5);
    /* The task's second call holds the single worker now; queue a blocker behind it,
     * so that the third call will wait its turn, then interrupt the second. */
    assert_int_equal(tide_executor_run(fx.ex, blocking, (void *)1, blocker_done, &blocker), 0);
    assert_int_equal(tide_task_cancel(t), 1);
    ts_run_until_flag(loop, &j.calls, 5);
    ts_run_until_flag(loop, &blocker, 5);
    assert_int_equal(j.result, 0);
    assert_int_equal(fx.rc[0], 0);
    assert_int_equal(fx.result[0], 7);
    assert_int_equal(fx.rc[1], TIDE_ECANCELLED);
    assert_int_equal(fx.result[1], 8);
    assert_int_equal(fx.rc[2], TIDE_ETIMEOUT);
    assert_int_equal(fx.result[2], -1);
    assert_int_equal(atomic_load(&g_ran), 3); /* 7, 8 and the blocker; never 9 */
    assert_int_equal(tide_executor_run_await(fx.ex, blocking, NULL, NULL), TIDE_ENOTASK);
    tide_executor_free(fx.ex);
    ts_loop_close(loop);
}

/* ---- getaddrinfo ------------------------------------------------------------------------- */

typedef struct gai_rec {
    int calls;
    int status;
    int family;
    int port;
} gai_rec;

static void on_gai(tide_loop_t *loop, int status, struct addrinfo *res, void *arg) {
    (void)loop;
    gai_rec *r = arg;
    r->calls++;
    r->status = status;
    if (res != NULL) {
        r->family = res->ai_family;
        if (res->ai_family == AF_INET)
            r->port = ntohs(((struct sockaddr_in *)(void *)res->ai_addr)->sin_port);
        freeaddrinfo(res);
    }
}

static void test_getaddrinfo_callback(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    gai_rec r = {0};
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    assert_int_equal(tide_loop_getaddrinfo(loop, "127.0.0.1", "8080", &hints, on_gai, &r), 0);
    assert_int_equal(r.calls, 0); /* deferred even for a literal */
    ts_run_until_flag(loop, &r.calls, 5);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.family, AF_INET);
    assert_int_equal(r.port, 8080);
    /* A name goes through a worker thread (/etc/hosts answers localhost). */
    memset(&r, 0, sizeof(r));
    assert_int_equal(tide_loop_getaddrinfo(loop, "localhost", "80", &hints, on_gai, &r), 0);
    ts_run_until_flag(loop, &r.calls, 10);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.port, 80);
    /* An unknown service fails with a resolver code. */
    memset(&r, 0, sizeof(r));
    assert_int_equal(tide_loop_getaddrinfo(loop, NULL, "no-such-service-tide", &hints, on_gai, &r),
                     0);
    ts_run_until_flag(loop, &r.calls, 10);
    assert_true(r.status < 0);
    assert_int_equal(tide_loop_getaddrinfo(loop, NULL, NULL, NULL, on_gai, &r), TIDE_EINVAL);
    ts_loop_close(loop);
}

typedef struct gai_fx {
    int rc, rc_timeout;
    int family;
} gai_fx;

static int gai_task(void *arg) {
    gai_fx *fx = arg;
    tide_loop_t *loop = tide_task_get_loop(tide_task_current());
    struct addrinfo *res = NULL;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    fx->rc = tide_loop_getaddrinfo_await(loop, "localhost", "443", &hints, &res);
    if (res != NULL) {
        fx->family = res->ai_family;
        freeaddrinfo(res);
    }
    /* Abandoned by a deadline that has already passed: nothing leaks. */
    TS_CHECK(tide_task_deadline_push(0) == 0);
    fx->rc_timeout = tide_loop_getaddrinfo_await(loop, "localhost", "443", &hints, &res);
    tide_task_deadline_pop();
    TS_CHECK(res == NULL);
    return 0;
}

static void test_getaddrinfo_await(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    gai_fx fx = {0};
    struct addrinfo *res = (struct addrinfo *)&fx;
    assert_int_equal(ts_run_task(loop, gai_task, &fx), 0);
    assert_int_equal(fx.rc, 0);
    assert_true(fx.family == AF_INET || fx.family == AF_INET6);
    assert_int_equal(fx.rc_timeout, TIDE_ETIMEOUT);
    assert_int_equal(tide_loop_getaddrinfo_await(loop, "localhost", "1", NULL, &res), TIDE_ENOTASK);
    ts_loop_close(loop);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounded_callbacks),
        cmocka_unit_test(test_free_cancels_queued),
        cmocka_unit_test(test_pool_reuses_threads),
        cmocka_unit_test(test_await),
        cmocka_unit_test(test_getaddrinfo_callback),
        cmocka_unit_test(test_getaddrinfo_await),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
