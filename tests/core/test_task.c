/* Tasks (tide/task.h) and the primitives under them (core_int.h): the raw context
 * switch, spawn/join/detach and their ownership rules, FIFO yields, sleeps on the real
 * and the manual clock, cancellation, nested deadlines, the waiter protocol every
 * await form uses (wake, and on_abandon on cancel/deadline), calls outside a task,
 * the stack guard page (in a forked child), 10,000 tasks with their RSS, and loop
 * close while tasks live.
 *
 * tests/core/test_task_ucontext.c includes this file again over the ucontext
 * fallback, so every case here runs on both context-switch implementations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core_int.h"
#include "support/support.h"

#ifdef TS_ASAN
#include <sanitizer/asan_interface.h>
#endif

#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

/* ---- helpers --------------------------------------------------------------------- */

static bool pred_joined(void *arg) { return ((ts_joined *)arg)->calls > 0; }

static bool pred_done(void *arg) { return tide_task_is_done(arg); }

/* A manual-clock loop starting at time 0. */
static tide_loop_t *manual_loop(void) {
    tide_loop_t *loop = ts_loop_new();
    assert_int_equal(tide_loop_use_manual_clock(loop, 0.0), 0);
    return loop;
}

/* ---- the raw switch -------------------------------------------------------------- */

typedef struct pingpong {
    tide__ctx main_ctx, co_ctx;
    unsigned long sum;
    double fsum;
    int rounds;
} pingpong;

/* The same arithmetic with and without switching in the middle. Enough values stay
 * live across each switch that an optimised build keeps them in callee-saved
 * registers, which the switch must bring back. */
#define PP_STEP(a, b, c, d, e, f, x, y)             \
    do {                                            \
        a += b ^ 3;                                 \
        b += c * 5;                                 \
        c += d ^ a;                                 \
        d += e + 7;                                 \
        e += f ^ b;                                 \
        f += a + c;                                 \
        x = x * 1.0000001 + (double)(a & 7);        \
        y = y * 0.9999999 + (double)(f & 3);        \
    } while (0)

static void pingpong_entry(void *arg) {
    pingpong *p = arg;
    unsigned long a = 1, b = 2, c = 3, d = 4, e = 5, f = 6;
    double x = 0.5, y = 1.5;
    for (int i = 0; i < p->rounds; i++) {
        PP_STEP(a, b, c, d, e, f, x, y);
        tide__ctx_switch(&p->co_ctx, p->main_ctx);
    }
    p->sum = a + b + c + d + e + f;
    p->fsum = x + y;
    for (;;)
        tide__ctx_switch(&p->co_ctx, p->main_ctx);
}

static void test_raw_switch(void **state) {
    (void)state;
#if defined(TIDE_TASK_UCONTEXT)
    assert_string_equal(tide__ctx_backend(), "ucontext");
#elif defined(__x86_64__) && defined(__ELF__)
    assert_string_equal(tide__ctx_backend(), "x86_64");
#elif defined(__aarch64__) && defined(__ELF__)
    assert_string_equal(tide__ctx_backend(), "aarch64");
#endif
    size_t size = 64 * 1024;
    void *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(stack != MAP_FAILED);
    pingpong p = {.rounds = 1000};
    p.co_ctx = tide__ctx_make(stack, size, pingpong_entry, &p);
    assert_non_null(p.co_ctx);
    unsigned long a = 1, b = 2, c = 3, d = 4, e = 5, f = 6;
    double x = 0.5, y = 1.5;
    for (int i = 0; i <= p.rounds; i++) {
        tide__ctx_switch(&p.main_ctx, p.co_ctx);
        if (i < p.rounds)
            PP_STEP(a, b, c, d, e, f, x, y);
    }
    assert_true(p.sum == a + b + c + d + e + f);
    assert_true(p.fsum == x + y);
#ifdef TS_ASAN
    __asan_unpoison_memory_region(stack, size);
#endif
    munmap(stack, size);
}

/* ---- spawn, join, detach --------------------------------------------------------- */

static int started;

static int return_arg(void *arg) {
    started++;
    return (int)(intptr_t)arg;
}

static void test_spawn_join_results(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    started = 0;
    ts_joined j[3] = {{0}};
    tide_task_t *t0 = ts_spawn_joined(loop, return_arg, (void *)(intptr_t)7, &j[0]);
    tide_task_t *t1 = ts_spawn_joined(loop, return_arg, (void *)(intptr_t)-3, &j[1]);
    tide_task_t *t2 = ts_spawn_joined(loop, return_arg, (void *)(intptr_t)0, &j[2]);
    /* Nothing runs inside spawn; a task is joined once. */
    assert_int_equal(started, 0);
    assert_false(tide_task_is_done(t0));
    assert_ptr_equal(tide_task_get_loop(t1), loop);
    assert_int_equal(tide_task_join(t0, ts_on_joined, &j[0]), TIDE_EBUSY);
    assert_int_equal(tide_task_detach(t1), TIDE_EBUSY);
    assert_int_equal(tide_task_join(NULL, ts_on_joined, NULL), TIDE_EINVAL);
    assert_int_equal(tide_task_join(t2, NULL, NULL), TIDE_EINVAL);
    ts_run_until(loop, pred_joined, &j[2], 5);
    assert_int_equal(started, 3);
    assert_int_equal(j[0].calls, 1);
    assert_int_equal(j[0].result, 7);
    assert_ptr_equal(j[0].task, t0);
    assert_int_equal(j[1].result, -3);
    assert_int_equal(j[2].result, 0);
    assert_int_equal(j[2].calls, 1);

    /* Joining a finished task still calls back later, never inside the call. */
    tide_task_t *t = NULL;
    assert_int_equal(tide_task_spawn(loop, return_arg, (void *)(intptr_t)11, NULL, &t), 0);
    ts_run_until(loop, pred_done, t, 5);
    ts_joined late = {0};
    assert_int_equal(tide_task_join(t, ts_on_joined, &late), 0);
    assert_int_equal(late.calls, 0);
    ts_run_until(loop, pred_joined, &late, 5);
    assert_int_equal(late.result, 11);

    assert_int_equal(tide_task_spawn(NULL, return_arg, NULL, NULL, &t), TIDE_EINVAL);
    assert_null(t);
    assert_int_equal(tide_task_spawn(loop, NULL, NULL, NULL, &t), TIDE_EINVAL);
    ts_loop_close(loop);
}

static int finished_flag;

static int yield_then_flag(void *arg) {
    (void)arg;
    assert_int_equal(tide_task_yield(), 0);
    finished_flag++;
    return 0;
}

static void test_detach(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    finished_flag = 0;
    /* Detached from the start (NULL out): frees itself; ASan's leak check watches. */
    assert_int_equal(tide_task_spawn(loop, yield_then_flag, NULL, NULL, NULL), 0);
    /* Detached while running. */
    tide_task_t *t = NULL;
    assert_int_equal(tide_task_spawn(loop, yield_then_flag, NULL, NULL, &t), 0);
    assert_int_equal(tide_task_detach(t), 0);
    assert_int_equal(tide_task_detach(t), 0);
    assert_int_equal(tide_task_join(t, ts_on_joined, NULL), TIDE_EBUSY);
    /* Detached after it finished: freed at once. */
    tide_task_t *t2 = NULL;
    assert_int_equal(tide_task_spawn(loop, return_arg, NULL, NULL, &t2), 0);
    ts_run_until(loop, pred_done, t2, 5);
    assert_int_equal(tide_task_detach(t2), 0);
    assert_int_equal(tide_task_detach(NULL), 0);
    /* TIDE_RUN_DEFAULT returns once the detached tasks are gone. */
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_DEFAULT), 0);
    assert_int_equal(finished_flag, 2);
    ts_loop_close(loop);
}

typedef struct awaiter_ctx {
    tide_task_t *child;
    int rc_self, rc_busy, rc_join, result, rc_done, result_done;
} awaiter_ctx;

static int child_yields(void *arg) {
    for (int i = 0; i < 3; i++)
        assert_int_equal(tide_task_yield(), 0);
    return (int)(intptr_t)arg;
}

static int join_awaiter(void *arg) {
    awaiter_ctx *c = arg;
    tide_task_t *child = NULL;
    assert_int_equal(tide_task_spawn(tide_task_get_loop(tide_task_current()), child_yields,
                                     (void *)(intptr_t)21, NULL, &child),
                     0);
    c->rc_self = tide_task_join_await(tide_task_current(), NULL);
    c->rc_join = tide_task_join_await(child, &c->result);

    /* A finished child: no suspension needed. */
    assert_int_equal(tide_task_spawn(tide_task_get_loop(tide_task_current()), return_arg,
                                     (void *)(intptr_t)5, NULL, &child),
                     0);
    while (!tide_task_is_done(child))
        assert_int_equal(tide_task_yield(), 0);
    c->rc_done = tide_task_join_await(child, &c->result_done);

    /* A child joined by callback cannot be awaited too. */
    tide_task_t *other = NULL;
    assert_int_equal(tide_task_spawn(tide_task_get_loop(tide_task_current()), return_arg, NULL,
                                     NULL, &other),
                     0);
    assert_int_equal(tide_task_detach(other), 0);
    c->rc_busy = tide_task_join_await(other, NULL);
    return 1;
}

static void test_join_await(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    awaiter_ctx c = {0};
    ts_joined j = {0};
    ts_spawn_joined(loop, join_awaiter, &c, &j);
    ts_run_until(loop, pred_joined, &j, 5);
    assert_int_equal(j.result, 1);
    assert_int_equal(c.rc_self, TIDE_EINVAL);
    assert_int_equal(c.rc_join, 0);
    assert_int_equal(c.result, 21);
    assert_int_equal(c.rc_done, 0);
    assert_int_equal(c.result_done, 5);
    assert_int_equal(c.rc_busy, TIDE_EBUSY);
    assert_int_equal(tide_task_join_await(NULL, NULL), TIDE_ENOTASK);
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_DEFAULT), 0);
    ts_loop_close(loop);
}

/* ---- yield and sleep ------------------------------------------------------------- */

typedef struct trace {
    tide_loop_t *loop;
    char log[128];
    size_t n;
    double at[16];
} trace;

static void trace_add(trace *tr, char c) {
    assert_true(tr->n + 1 < sizeof(tr->log));
    if (tr->n < 16)
        tr->at[tr->n] = tide_loop_time(tr->loop);
    tr->log[tr->n++] = c;
    tr->log[tr->n] = '\0';
}

typedef struct actor {
    trace *tr;
    char name;
    double sleep;
} actor;

static void trace_callback(tide_loop_t *loop, void *arg) {
    (void)loop;
    trace_add(arg, 'x');
}

static int yielder(void *arg) {
    actor *a = arg;
    for (int i = 0; i < 4; i++) {
        trace_add(a->tr, a->name);
        assert_int_equal(tide_task_yield(), 0);
    }
    return 0;
}

static int yield_after_callback(void *arg) {
    actor *a = arg;
    trace_add(a->tr, 'A');
    assert_non_null(tide_loop_call_soon(a->tr->loop, trace_callback, a->tr));
    assert_int_equal(tide_task_yield(), 0);
    trace_add(a->tr, 'B');
    return 0;
}

static void test_yield_fifo(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    trace tr = {.loop = loop};
    actor a = {&tr, 'a', 0}, b = {&tr, 'b', 0}, c = {&tr, 'c', 0};
    ts_joined j[3] = {{0}};
    ts_spawn_joined(loop, yielder, &a, &j[0]);
    ts_spawn_joined(loop, yielder, &b, &j[1]);
    ts_spawn_joined(loop, yielder, &c, &j[2]);
    ts_run_until(loop, pred_joined, &j[2], 5);
    assert_string_equal(tr.log, "abcabcabcabc");

    /* A yield lets what was scheduled before it run first. */
    tr.n = 0;
    ts_joined k = {0};
    ts_spawn_joined(loop, yield_after_callback, &a, &k);
    ts_run_until(loop, pred_joined, &k, 5);
    assert_string_equal(tr.log, "AxB");
    ts_loop_close(loop);
}

static int sleeper_task(void *arg) {
    actor *a = arg;
    int rc = tide_task_sleep(a->sleep);
    trace_add(a->tr, a->name);
    return rc;
}

static void test_sleep_real_clock(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    trace tr = {.loop = loop};
    actor a = {&tr, 'a', 0.06}, b = {&tr, 'b', 0.02}, c = {&tr, 'c', 0.04};
    ts_joined j[3] = {{0}};
    double start = tide_loop_time(loop);
    ts_spawn_joined(loop, sleeper_task, &a, &j[0]);
    ts_spawn_joined(loop, sleeper_task, &b, &j[1]);
    ts_spawn_joined(loop, sleeper_task, &c, &j[2]);
    ts_run_until(loop, pred_joined, &j[0], 5);
    assert_string_equal(tr.log, "bca");
    assert_true(tr.at[0] - start >= 0.02);
    assert_true(tr.at[1] - start >= 0.04);
    assert_true(tr.at[2] - start >= 0.06);
    for (int i = 0; i < 3; i++)
        assert_int_equal(j[i].result, 0);
    ts_loop_close(loop);
}

static void test_sleep_manual_clock(void **state) {
    (void)state;
    tide_loop_t *loop = manual_loop();
    trace tr = {.loop = loop};
    actor a = {&tr, 'a', 3.0}, b = {&tr, 'b', 1.0}, c = {&tr, 'c', 2.0};
    ts_joined j[3] = {{0}};
    ts_spawn_joined(loop, sleeper_task, &a, &j[0]);
    ts_spawn_joined(loop, sleeper_task, &b, &j[1]);
    ts_spawn_joined(loop, sleeper_task, &c, &j[2]);
    assert_int_equal(tide_loop_advance(loop, 0), 0); /* all start and sleep */
    assert_int_equal(tr.n, 0);
    assert_int_equal(tide_loop_advance(loop, 0.999), 0);
    assert_int_equal(tide_loop_advance(loop, 0.001), 1);
    assert_string_equal(tr.log, "b");
    assert_true(tr.at[0] == 1.0);
    assert_int_equal(j[1].calls, 1);
    /* A woken task resumes after the timers of the advance have run, with the clock
     * at the advance's target: step to each deadline to see it exactly. */
    assert_int_equal(tide_loop_advance(loop, 1.0), 1);
    assert_int_equal(tide_loop_advance(loop, 1.0), 1);
    assert_string_equal(tr.log, "bca");
    assert_true(tr.at[1] == 2.0);
    assert_true(tr.at[2] == 3.0);
    assert_int_equal(j[0].calls + j[2].calls, 2);
    ts_loop_close(loop);
}

/* ---- cancellation ---------------------------------------------------------------- */

typedef struct cancel_ctx {
    int rc[4];
    double at[4];
    int n;
} cancel_ctx;

static void note_rc(cancel_ctx *c, int rc) {
    c->at[c->n] = tide_loop_time(tide_task_get_loop(tide_task_current()));
    c->rc[c->n++] = rc;
}

static int sleep_twice(void *arg) {
    cancel_ctx *c = arg;
    note_rc(c, tide_task_sleep(100.0));
    note_rc(c, tide_task_sleep(1.0)); /* a request is delivered once */
    return 3;
}

static void test_cancel_sleeping(void **state) {
    (void)state;
    tide_loop_t *loop = manual_loop();
    cancel_ctx c = {0};
    ts_joined j = {0};
    tide_task_t *t = ts_spawn_joined(loop, sleep_twice, &c, &j);
    assert_int_equal(tide_loop_advance(loop, 0.5), 0);
    assert_int_equal(c.n, 0);
    assert_int_equal(tide_task_cancel(t), 1);
    assert_int_equal(c.n, 0); /* resumes from the loop, not inside cancel */
    assert_int_equal(tide_loop_advance(loop, 0), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.rc[0], TIDE_ECANCELLED);
    assert_true(c.at[0] == 0.5);
    assert_int_equal(tide_loop_advance(loop, 1.0), 1);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.rc[1], 0);
    assert_int_equal(j.result, 3);
    /* The cancelled sleep's timer is gone (on_abandon stopped it). */
    assert_int_equal(tide_loop_advance(loop, 200.0), 0);
    ts_loop_close(loop);
}

static void test_cancel_before_start(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    started = 0;
    ts_joined j = {0};
    tide_task_t *t = ts_spawn_joined(loop, return_arg, (void *)(intptr_t)9, &j);
    assert_int_equal(tide_task_cancel(t), 1);
    assert_int_equal(tide_task_cancel(t), 1);
    ts_run_until(loop, pred_joined, &j, 5);
    assert_int_equal(started, 0); /* it never ran */
    assert_int_equal(j.result, TIDE_ECANCELLED);

    /* Cancelling a finished task does nothing. */
    tide_task_t *t2 = NULL;
    assert_int_equal(tide_task_spawn(loop, return_arg, (void *)(intptr_t)4, NULL, &t2), 0);
    ts_run_until(loop, pred_done, t2, 5);
    assert_int_equal(tide_task_cancel(t2), 0);
    ts_joined j2 = {0};
    assert_int_equal(tide_task_join(t2, ts_on_joined, &j2), 0);
    ts_run_until(loop, pred_joined, &j2, 5);
    assert_int_equal(j2.result, 4);
    assert_int_equal(tide_task_cancel(NULL), TIDE_EINVAL);
    ts_loop_close(loop);
}

/* ---- the waiter protocol --------------------------------------------------------- */

typedef struct op {
    tide__waiter w; /* first: on_abandon gets back to the op */
    tide_handle_t *pending;
    int abandoned;
} op;

typedef struct waiter_ctx {
    tide_loop_t *loop;
    tide_task_t *task;
    op a, b, c, d, e;
    int rc_a, rc_b, rc_c, rc_d, rc_e, rc_after;
    int stage;
} waiter_ctx;

static void op_abandon(tide__waiter *w) {
    op *o = (op *)(void *)w;
    o->abandoned++;
    tide_handle_cancel(o->pending);
    o->pending = NULL;
}

static void op_complete(tide_loop_t *loop, void *arg) {
    (void)loop;
    op *o = arg;
    o->pending = NULL;
    tide__task_wake(&o->w, 42);
}

/* Starts an operation completing with 42 after delay seconds. */
static void op_start(waiter_ctx *c, op *o, double delay) {
    tide__waiter_init(&o->w, op_abandon);
    o->abandoned = 0;
    o->pending = tide_loop_call_later(c->loop, delay, op_complete, o);
    assert_non_null(o->pending);
}

static int waiter_task(void *arg) {
    waiter_ctx *c = arg;
    c->stage = 1;
    op_start(c, &c->a, 0.5); /* woken */
    c->rc_a = tide__task_wait(&c->a.w);
    c->stage = 2;
    tide__waiter_init(&c->b.w, op_abandon); /* woken before the wait */
    tide__task_wake(&c->b.w, 7);
    tide__task_wake(&c->b.w, 8); /* ignored: already complete */
    c->rc_b = tide__task_wait(&c->b.w);
    c->stage = 3;
    op_start(c, &c->c, 100.0); /* cancelled */
    c->rc_c = tide__task_wait(&c->c.w);
    tide__task_wake(&c->c.w, 9); /* after the abandon: ignored */
    c->stage = 4;
    assert_int_equal(tide_task_deadline_push(1.0), 0);
    op_start(c, &c->d, 100.0); /* deadline */
    c->rc_d = tide__task_wait(&c->d.w);
    tide_task_deadline_pop();
    c->stage = 5;
    /* A wake that lands with a cancellation: the completed call keeps its result and
     * the cancellation goes to the next blocking call. */
    op_start(c, &c->e, 1.0);
    c->rc_e = tide__task_wait(&c->e.w);
    c->rc_after = tide_task_yield();
    c->stage = 6;
    return 0;
}

static void wake_and_cancel(tide_loop_t *loop, void *arg) {
    (void)loop;
    waiter_ctx *c = arg;
    tide_handle_cancel(c->e.pending);
    c->e.pending = NULL;
    tide__task_wake(&c->e.w, 42);
    assert_int_equal(tide_task_cancel(c->task), 1);
}

static void test_waiter_protocol(void **state) {
    (void)state;
    tide_loop_t *loop = manual_loop();
    waiter_ctx c = {.loop = loop};
    ts_joined j = {0};
    tide_task_t *t = ts_spawn_joined(loop, waiter_task, &c, &j);
    c.task = t;
    tide_loop_advance(loop, 0);
    assert_int_equal(c.stage, 1);
    tide_loop_advance(loop, 0.5);
    assert_int_equal(c.rc_a, 42);
    assert_int_equal(c.a.abandoned, 0);
    assert_int_equal(c.rc_b, 7);
    assert_int_equal(c.b.abandoned, 0);
    assert_int_equal(c.stage, 3);
    /* on_abandon runs inside cancel, before the wait returns. */
    assert_int_equal(tide_task_cancel(t), 1);
    assert_int_equal(c.c.abandoned, 1);
    assert_null(c.c.pending);
    assert_int_equal(c.stage, 3);
    tide_loop_advance(loop, 0);
    assert_int_equal(c.rc_c, TIDE_ECANCELLED);
    assert_int_equal(c.c.w.status, TIDE_ECANCELLED);
    assert_int_equal(c.stage, 4);
    tide_loop_advance(loop, 1.0);
    assert_int_equal(c.rc_d, TIDE_ETIMEOUT);
    assert_int_equal(c.d.abandoned, 1);
    assert_null(c.d.pending);
    assert_int_equal(c.stage, 5);
    assert_non_null(tide_loop_call_soon(loop, wake_and_cancel, &c));
    tide_loop_advance(loop, 0);
    assert_int_equal(c.stage, 6);
    assert_int_equal(c.rc_e, 42);
    assert_int_equal(c.e.abandoned, 0);
    assert_int_equal(c.rc_after, TIDE_ECANCELLED);
    assert_int_equal(j.calls, 1);
    /* Nothing of the abandoned operations is left to fire. */
    assert_int_equal(tide_loop_advance(loop, 500.0), 0);
    ts_loop_close(loop);
}

static int self_cancel(void *arg) {
    int *rcs = arg;
    assert_int_equal(tide_task_cancel(tide_task_current()), 1);
    rcs[0] = tide_task_sleep(10.0); /* not blocked when cancelled: the next call */
    rcs[1] = tide_task_yield();
    return 0;
}

static void test_cancel_not_blocked(void **state) {
    (void)state;
    tide_loop_t *loop = manual_loop();
    int rcs[2] = {1, 1};
    ts_joined j = {0};
    ts_spawn_joined(loop, self_cancel, rcs, &j);
    tide_loop_advance(loop, 0);
    tide_loop_advance(loop, 0);
    assert_int_equal(j.calls, 1);
    assert_int_equal(rcs[0], TIDE_ECANCELLED);
    assert_int_equal(rcs[1], 0);
    ts_loop_close(loop);
}

/* ---- deadlines ------------------------------------------------------------------- */

static int deadline_task(void *arg) {
    cancel_ctx *log = arg; /* reused: rc and time per step, 4 at a time */
    cancel_ctx *more = log + 1;
    cancel_ctx *last = log + 2;

    assert_int_equal(tide_task_deadline_push(1.0), 0);
    note_rc(log, tide_task_sleep(5.0)); /* ETIMEOUT at 1 */
    note_rc(log, tide_task_sleep(1.0)); /* still expired: at once */
    note_rc(log, tide_task_yield());    /* also */
    tide_task_deadline_pop();
    note_rc(log, tide_task_sleep(0.5)); /* 0 at 1.5 */

    assert_int_equal(tide_task_deadline_push(5.0), 0); /* 6.5 */
    assert_int_equal(tide_task_deadline_push(2.0), 0); /* 3.5 governs */
    note_rc(more, tide_task_sleep(10.0));               /* ETIMEOUT at 3.5 */
    tide_task_deadline_pop();
    note_rc(more, tide_task_sleep(10.0)); /* ETIMEOUT at 6.5 */
    tide_task_deadline_pop();

    assert_int_equal(tide_task_deadline_push(1.0), 0);  /* 7.5 */
    assert_int_equal(tide_task_deadline_push(10.0), 0); /* later: 7.5 still governs */
    note_rc(more, tide_task_sleep(10.0));                /* ETIMEOUT at 7.5 */
    tide_task_deadline_pop();
    tide_task_deadline_pop();
    tide_task_deadline_pop(); /* one too many: no-op */
    note_rc(more, tide_task_sleep(1.0)); /* 0 at 8.5 */

    /* Deeper than the inline scopes; an infinite deadline never fires. */
    for (int i = 0; i < 9; i++)
        assert_int_equal(tide_task_deadline_push(INFINITY), 0);
    note_rc(last, tide_task_sleep(1.0)); /* 0 at 9.5 */
    assert_int_equal(tide_task_deadline_push(0.25), 0);
    note_rc(last, tide_task_sleep(1.0)); /* ETIMEOUT at 9.75 */
    assert_int_equal(tide_task_deadline_push(NAN), TIDE_EINVAL);
    assert_int_equal(tide_task_deadline_push(-1.0), 0); /* already expired */
    note_rc(last, tide_task_yield());
    return 0;
}

static void test_deadlines(void **state) {
    (void)state;
    tide_loop_t *loop = manual_loop();
    cancel_ctx logs[3];
    memset(logs, 0, sizeof(logs));
    ts_joined j = {0};
    ts_spawn_joined(loop, deadline_task, logs, &j);
    tide_loop_advance(loop, 0); /* starts at time 0 */
    for (int i = 0; i < 100 && j.calls == 0; i++)
        tide_loop_advance(loop, 0.25);
    assert_int_equal(j.calls, 1);
    const int want0[] = {TIDE_ETIMEOUT, TIDE_ETIMEOUT, TIDE_ETIMEOUT, 0};
    const double at0[] = {1.0, 1.0, 1.0, 1.5};
    const int want1[] = {TIDE_ETIMEOUT, TIDE_ETIMEOUT, TIDE_ETIMEOUT, 0};
    const double at1[] = {3.5, 6.5, 7.5, 8.5};
    const int want2[] = {0, TIDE_ETIMEOUT, TIDE_ETIMEOUT};
    const double at2[] = {9.5, 9.75, 9.75};
    assert_int_equal(logs[0].n, 4);
    assert_int_equal(logs[1].n, 4);
    assert_int_equal(logs[2].n, 3);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(logs[0].rc[i], want0[i]);
        assert_true(logs[0].at[i] == at0[i]);
        assert_int_equal(logs[1].rc[i], want1[i]);
        assert_true(logs[1].at[i] == at1[i]);
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(logs[2].rc[i], want2[i]);
        assert_true(logs[2].at[i] == at2[i]);
    }
    ts_loop_close(loop);
}

typedef struct abandon_join_ctx {
    int rc_cancel, rc_timeout, rc_final, child_result;
    double timeout_at;
} abandon_join_ctx;

static int sleep_ten(void *arg) {
    (void)arg;
    return tide_task_sleep(10.0);
}

/* A join_await that is cancelled, or runs out of time, leaves the child unjoined. */
static int abandoning_joiner(void *arg) {
    abandon_join_ctx *c = arg;
    tide_loop_t *loop = tide_task_get_loop(tide_task_current());
    tide_task_t *child = NULL;
    assert_int_equal(tide_task_spawn(loop, sleep_ten, NULL, NULL, &child), 0);
    c->rc_cancel = tide_task_join_await(child, NULL);
    assert_int_equal(tide_task_deadline_push(1.0), 0);
    c->rc_timeout = tide_task_join_await(child, NULL);
    c->timeout_at = tide_loop_time(loop);
    tide_task_deadline_pop();
    assert_int_equal(tide_task_cancel(child), 1);
    c->rc_final = tide_task_join_await(child, &c->child_result);
    return 0;
}

static void test_join_await_abandoned(void **state) {
    (void)state;
    tide_loop_t *loop = manual_loop();
    abandon_join_ctx c = {0};
    ts_joined j = {0};
    tide_task_t *t = ts_spawn_joined(loop, abandoning_joiner, &c, &j);
    tide_loop_advance(loop, 0);
    assert_int_equal(tide_task_cancel(t), 1);
    tide_loop_advance(loop, 0);
    assert_int_equal(c.rc_cancel, TIDE_ECANCELLED);
    tide_loop_advance(loop, 1.0);
    assert_int_equal(c.rc_timeout, TIDE_ETIMEOUT);
    assert_true(c.timeout_at == 1.0);
    tide_loop_advance(loop, 0);
    assert_int_equal(j.calls, 1);
    assert_int_equal(c.rc_final, 0);
    assert_int_equal(c.child_result, TIDE_ECANCELLED);
    ts_loop_close(loop);
}

/* ---- outside a task -------------------------------------------------------------- */

static int abandon_calls;
static void count_abandon(tide__waiter *w) {
    (void)w;
    abandon_calls++;
}

static void test_outside_task(void **state) {
    (void)state;
    assert_null(tide_task_current());
    assert_int_equal(tide_task_sleep(0.1), TIDE_ENOTASK);
    assert_int_equal(tide_task_sleep(0), TIDE_ENOTASK);
    assert_int_equal(tide_task_yield(), TIDE_ENOTASK);
    assert_int_equal(tide_task_deadline_push(1.0), TIDE_ENOTASK);
    tide_task_deadline_pop();
    assert_int_equal(tide_task_join_await(NULL, NULL), TIDE_ENOTASK);
    tide__waiter w;
    abandon_calls = 0;
    tide__waiter_init(&w, count_abandon);
    assert_int_equal(tide__task_wait(&w), TIDE_ENOTASK);
    assert_int_equal(abandon_calls, 0);
    assert_false(w.done);
}

/* ---- stacks ---------------------------------------------------------------------- */

static int overflow_pipe = -1;
static char *guard_lo;
static size_t guard_len;

static void on_segv(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    char *addr = si->si_addr;
    char verdict = (addr >= guard_lo && addr < guard_lo + guard_len) ? 'G' : 'X';
    ssize_t n = write(overflow_pipe, &verdict, 1);
    (void)n;
    /* Returning re-runs the faulting instruction, which now kills the child. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGSEGV, &dfl, NULL);
}

static __attribute__((noreturn)) void child_overflows(void) {
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    static char altstack[64 * 1024];
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof(altstack), .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0)
        _exit(2);
    tide_loop_t *loop = NULL;
    if (tide_loop_new(&loop) != 0)
        _exit(3);
    tide_task_options_t options = {.stack_size = TIDE_TASK_MIN_STACK_SIZE};
    tide_task_t *t = NULL;
    if (tide_task_spawn(loop, ts_overflow_task, NULL, &options, &t) != 0)
        _exit(4);
    guard_lo = tide__task_guard_page(t);
    guard_len = (size_t)sysconf(_SC_PAGESIZE);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL) != 0)
        _exit(5);
    tide_loop_run(loop, TIDE_RUN_DEFAULT);
    _exit(6); /* the recursion ended without a fault */
}

static void on_sigchld(tide_loop_t *loop, int signum, void *arg) {
    (void)loop;
    (void)signum;
    *(int *)arg = 1;
}

static void set_flag(tide_loop_t *loop, void *arg) {
    (void)loop;
    *(int *)arg = 1;
}

/* The guard page turns an overflow into SIGSEGV at the guard page. In a child, whose
 * SIGSEGV handler (on an alternate stack) reports where the fault was and then lets
 * it kill the child. The handler replaces tide's (installed at the first spawn), so
 * it sees the raw fault; tide's own report is test_task_overflow.c's. Under ASan the
 * handler is ours as well (ASan lets programs install their own SIGSEGV handler), so
 * the same checks hold. */
static void test_guard_page(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    int exited = 0, expired = 0;
    assert_int_equal(tide_loop_add_signal_handler(loop, SIGCHLD, on_sigchld, &exited), 0);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        overflow_pipe = fds[1];
        child_overflows();
    }
    close(fds[1]);
    tide_handle_t *h = tide_loop_call_later(loop, ts_scaled(20), set_flag, &expired);
    assert_non_null(h);
    while (!exited && !expired)
        tide_loop_run(loop, TIDE_RUN_ONCE);
    if (!exited)
        kill(pid, SIGKILL);
    else
        tide_handle_cancel(h);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    char verdict = 0;
    ssize_t n = read(fds[0], &verdict, 1);
    close(fds[0]);
    assert_int_equal(tide_loop_remove_signal_handler(loop, SIGCHLD), 0);
    ts_loop_close(loop);
    assert_true(exited);
    if (WIFEXITED(status))
        fail_msg("child exited with %d instead of faulting", WEXITSTATUS(status));
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGSEGV);
    assert_int_equal(n, 1);
    assert_int_equal(verdict, 'G');
}

/* ---- many tasks ------------------------------------------------------------------ */

#define MANY 10000

static long rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    assert_non_null(f);
    long size = 0, resident = 0;
    assert_int_equal(fscanf(f, "%ld %ld", &size, &resident), 2);
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

static int sleep_then_return(void *arg) {
    assert_int_equal(tide_task_sleep(1.0), 0);
    return (int)(intptr_t)arg;
}

static void test_many_tasks(void **state) {
    (void)state;
    tide_loop_t *loop = manual_loop();
    ts_joined *j = calloc(MANY, sizeof(*j));
    assert_non_null(j);
    /* Warm up the allocator and the loop's structures once. */
    ts_joined warm = {0};
    ts_spawn_joined(loop, sleep_then_return, NULL, &warm);
    tide_loop_advance(loop, 0);
    tide_loop_advance(loop, 1.0);
    assert_int_equal(warm.calls, 1);

    long before = rss_bytes();
    for (int i = 0; i < MANY; i++)
        ts_spawn_joined(loop, sleep_then_return, (void *)(intptr_t)i, &j[i]);
    tide_loop_advance(loop, 0); /* every task starts and sleeps */
    long per_task = (rss_bytes() - before) / MANY;
    print_message("resident memory per sleeping task: %ld bytes (%s backend)\n", per_task,
                  tide__ctx_backend());
#ifndef TS_ASAN
    /* One touched stack page and the task record. ASan's shadow and redzones add
     * their own share, and under Valgrind the figure is Valgrind's. */
    const char *preload = getenv("LD_PRELOAD");
    if (preload == NULL || strstr(preload, "vgpreload") == NULL)
        assert_true(per_task <= 8192);
#endif
    assert_int_equal(tide_loop_advance(loop, 1.0), MANY);
    long long sum = 0;
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(j[i].calls, 1);
        assert_int_equal(j[i].result, i);
        sum += j[i].result;
    }
    assert_true(sum == (long long)MANY * (MANY - 1) / 2);
    free(j);
    ts_loop_close(loop);
}

/* ---- floating-point control state is per task ------------------------------------ */

#if defined(__x86_64__)
static int rounding_task(void *arg) {
    unsigned *seen = arg;
    unsigned mine = (_mm_getcsr() & ~0x6000u) | 0x4000u; /* round up */
    _mm_setcsr(mine);
    assert_int_equal(tide_task_yield(), 0);
    seen[1] = _mm_getcsr();
    return 0;
}

static void observe_csr(tide_loop_t *loop, void *arg) {
    (void)loop;
    ((unsigned *)arg)[0] = _mm_getcsr();
}

static void test_fp_control_per_task(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    unsigned outside = _mm_getcsr();
    unsigned seen[2] = {0, 0};
    ts_joined j = {0};
    ts_spawn_joined(loop, rounding_task, seen, &j);
    /* Scheduled behind the task's start, ahead of its resumption. */
    assert_non_null(tide_loop_call_soon(loop, observe_csr, seen));
    ts_run_until(loop, pred_joined, &j, 5);
    assert_int_equal(seen[0], outside);
    assert_int_equal(seen[1] & 0x6000u, 0x4000u);
    assert_int_equal(_mm_getcsr(), outside);
    ts_loop_close(loop);
}
#endif

/* ---- loop close ------------------------------------------------------------------ */

typedef struct logcap {
    char text[1024];
} logcap;

static void capture_log(tide_loop_t *loop, tide_log_level_t level, const char *msg, void *arg) {
    (void)loop;
    (void)level;
    logcap *l = arg;
    size_t used = strlen(l->text);
    snprintf(l->text + used, sizeof(l->text) - used, "%s\n", msg);
}

static int sleep_forever(void *arg) {
    (void)arg;
    return tide_task_sleep(INFINITY);
}

static void test_loop_close_with_tasks(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    logcap log = {{0}};
    tide_loop_set_log_handler(loop, capture_log, &log);
    tide_task_t *t = NULL;
    assert_int_equal(tide_task_spawn(loop, sleep_forever, NULL, NULL, &t), 0);
    assert_int_equal(tide_loop_close(loop), TIDE_EBUSY); /* not started */
    assert_non_null(strstr(log.text, "not started"));
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_NOWAIT), 0);
    log.text[0] = '\0';
    assert_int_equal(tide_loop_close(loop), TIDE_EBUSY);
    assert_non_null(strstr(log.text, "task"));
    assert_non_null(strstr(log.text, "suspended"));

    /* Finished with its join callback pending: still reported. */
    assert_int_equal(tide_task_cancel(t), 1);
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_NOWAIT), 0);
    assert_true(tide_task_is_done(t));
    ts_joined j = {0};
    assert_int_equal(tide_task_join(t, ts_on_joined, &j), 0);
    log.text[0] = '\0';
    assert_int_equal(tide_loop_close(loop), TIDE_EBUSY);
    assert_non_null(strstr(log.text, "join callback pending"));
    ts_run_until(loop, pred_joined, &j, 5);
    assert_int_equal(j.result, TIDE_ECANCELLED);
    ts_loop_close(loop);
}

/* run_until_complete returns the task's result once it finished, even when the task
 * sleeps on a timer, and leaves other loop work alone. */
static int sleepy_double(void *arg) {
    int rc = tide_task_sleep(0.01);
    return rc != 0 ? rc : 2 * *(int *)arg;
}

static void bump(tide_loop_t *loop, void *arg) {
    (void)loop;
    (*(int *)arg)++;
}

static void test_run_until_complete(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    int in = 21, out = 0, ticks = 0;
    tide_handle_t *later = tide_loop_call_later(loop, 60, bump, &ticks);
    assert_non_null(later);
    assert_int_equal(tide_loop_run_until_complete(loop, sleepy_double, &in, NULL, &out), 0);
    assert_int_equal(out, 42);
    assert_int_equal(ticks, 0); /* stopped as soon as the task finished */
    assert_int_equal(tide_loop_run_until_complete(NULL, sleepy_double, &in, NULL, &out), TIDE_EINVAL);
    tide_handle_cancel(later);
    ts_loop_close(loop);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw_switch),
        cmocka_unit_test(test_run_until_complete),
        cmocka_unit_test(test_spawn_join_results),
        cmocka_unit_test(test_detach),
        cmocka_unit_test(test_join_await),
        cmocka_unit_test(test_yield_fifo),
        cmocka_unit_test(test_sleep_real_clock),
        cmocka_unit_test(test_sleep_manual_clock),
        cmocka_unit_test(test_cancel_sleeping),
        cmocka_unit_test(test_cancel_before_start),
        cmocka_unit_test(test_waiter_protocol),
        cmocka_unit_test(test_cancel_not_blocked),
        cmocka_unit_test(test_deadlines),
        cmocka_unit_test(test_join_await_abandoned),
        cmocka_unit_test(test_outside_task),
        cmocka_unit_test(test_guard_page),
        cmocka_unit_test(test_many_tasks),
#if defined(__x86_64__)
        cmocka_unit_test(test_fp_control_per_task),
#endif
        cmocka_unit_test(test_loop_close_with_tasks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
