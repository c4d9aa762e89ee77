/* Futures, events, locks, semaphores, conditions and queues (tide/future.h,
 * tide/sync.h, tide/queue.h).
 *
 * The first half is one table: every waiting call (future await, event wait, lock
 * and semaphore acquire, condition wait, queue get, put and join) described by how to
 * make it wait, how to start a waiter in either style and how to serve one, and one
 * set of cases run over every row in both styles: FIFO service, a cancelled head
 * waiter that must not swallow the next one's wake-up, a cancellation that arrives
 * after the waiter was served (it keeps what it got; the task sees the cancellation
 * at its next blocking call), a deadline, calls outside a task, and freeing the
 * object under its waiters. The second half checks each object's own rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "support/support.h"

/* ---- the table ----------------------------------------------------------------------- */

typedef struct waiter waiter;

typedef struct prim {
    const char *name;
    void *(*make)(tide_loop_t *loop);
    void (*destroy)(void *obj);
    /* Callback form; its completion calls waiter_done. */
    int (*start)(void *obj, tide_wait_t **wait, waiter *w);
    /* Task form. */
    int (*await)(void *obj, waiter *w);
    /* Serves one waiter (serves_all: every waiter). */
    void (*serve)(void *obj);
    /* What the served waiter does at once (a condition's waiter releases the lock). */
    void (*after)(void *obj, int status);
    bool serves_all;
    bool no_cb_cancel; /* the callback form has no wait handle (future callbacks) */
} prim;

struct waiter {
    const prim *p;
    void *obj;
    bool task_style;
    double deadline;
    ts_joined joined;
    tide_task_t *task;
    tide_wait_t *wait;
    int status;
    int order;
    bool finished;
    int next_rc; /* task style: what the next blocking call returned after success */
    void *item;
};

static int g_order;

static void waiter_done(waiter *w, int status) {
    w->status = status;
    w->order = ++g_order;
    w->finished = true;
    if (w->p->after != NULL && status != TIDE_ECLOSED)
        w->p->after(w->obj, status);
}

static int waiter_task(void *arg) {
    waiter *w = arg;
    if (w->deadline > 0)
        tide_task_deadline_push(w->deadline);
    int rc = w->p->await(w->obj, w);
    if (w->deadline > 0)
        tide_task_deadline_pop();
    waiter_done(w, rc);
    if (rc == 0)
        w->next_rc = tide_task_yield();
    return 0;
}

/* Future. */
static void *fut_make(tide_loop_t *loop) {
    tide_future_t *f;
    assert_int_equal(tide_future_new(loop, &f), 0);
    return f;
}
static void fut_destroy(void *o) { tide_future_free(o); }
static void fut_cb(tide_future_t *f, int status, void *result, void *arg) {
    (void)f;
    ((waiter *)arg)->item = result;
    waiter_done(arg, status);
}
static int fut_start(void *o, tide_wait_t **wait, waiter *w) {
    (void)wait;
    return tide_future_add_done_callback(o, fut_cb, w);
}
static int fut_await(void *o, waiter *w) { return tide_future_await(o, &w->item); }
static void fut_serve(void *o) { assert_int_equal(tide_future_set_result(o, &g_order), 0); }

/* Event. */
static void *ev_make(tide_loop_t *loop) {
    tide_event_t *e;
    assert_int_equal(tide_event_new(loop, &e), 0);
    return e;
}
static void ev_destroy(void *o) { tide_event_free(o); }
static void ev_cb(tide_event_t *e, int status, void *arg) {
    (void)e;
    waiter_done(arg, status);
}
static int ev_start(void *o, tide_wait_t **wait, waiter *w) {
    return tide_event_wait(o, wait, ev_cb, w);
}
static int ev_await(void *o, waiter *w) {
    (void)w;
    return tide_event_wait_await(o);
}
static void ev_serve(void *o) { tide_event_set(o); }

/* Lock: made held; each serve is a release (on behalf of the last one served). */
static void *lock_make(tide_loop_t *loop) {
    tide_lock_t *l;
    assert_int_equal(tide_lock_new(loop, &l), 0);
    assert_int_equal(tide_lock_try_acquire(l), 0);
    return l;
}
static void lock_destroy(void *o) { tide_lock_free(o); }
static void lock_cb(tide_lock_t *l, int status, void *arg) {
    (void)l;
    waiter_done(arg, status);
}
static int lock_start(void *o, tide_wait_t **wait, waiter *w) {
    return tide_lock_acquire(o, wait, lock_cb, w);
}
static int lock_await(void *o, waiter *w) {
    (void)w;
    return tide_lock_acquire_await(o);
}
static void lock_serve(void *o) { assert_int_equal(tide_lock_release(o), 0); }

/* Semaphores: made with no permit free. */
static void *sem_make(tide_loop_t *loop) {
    tide_semaphore_t *s;
    assert_int_equal(tide_semaphore_new(loop, 0, &s), 0);
    return s;
}
static void *bsem_make(tide_loop_t *loop) {
    tide_semaphore_t *s;
    assert_int_equal(tide_bounded_semaphore_new(loop, 1, &s), 0);
    assert_int_equal(tide_semaphore_try_acquire(s), 0);
    return s;
}
static void sem_destroy(void *o) { tide_semaphore_free(o); }
static void sem_cb(tide_semaphore_t *s, int status, void *arg) {
    (void)s;
    waiter_done(arg, status);
}
static int sem_start(void *o, tide_wait_t **wait, waiter *w) {
    return tide_semaphore_acquire(o, wait, sem_cb, w);
}
static int sem_await(void *o, waiter *w) {
    (void)w;
    return tide_semaphore_acquire_await(o);
}
static void sem_serve(void *o) { assert_int_equal(tide_semaphore_release(o), 0); }

/* Condition: a waiter takes the lock, waits, and releases the lock when it returns
 * (it holds it again whatever the status). */
static void *cond_make(tide_loop_t *loop) {
    tide_condition_t *c;
    assert_int_equal(tide_condition_new(loop, NULL, &c), 0);
    return c;
}
static void cond_destroy(void *o) { tide_condition_free(o); }
static void cond_cb(tide_condition_t *c, int status, void *arg) {
    (void)c;
    waiter_done(arg, status);
}
static int cond_start(void *o, tide_wait_t **wait, waiter *w) {
    assert_int_equal(tide_lock_try_acquire(tide_condition_lock(o)), 0);
    return tide_condition_wait(o, wait, cond_cb, w);
}
static int cond_await(void *o, waiter *w) {
    (void)w;
    int rc = tide_lock_acquire_await(tide_condition_lock(o));
    return rc != 0 ? rc : tide_condition_wait_await(o);
}
static void cond_serve(void *o) {
    assert_int_equal(tide_lock_try_acquire(tide_condition_lock(o)), 0);
    assert_int_equal(tide_condition_notify(o, 1), 1);
    assert_int_equal(tide_lock_release(tide_condition_lock(o)), 0);
}
static void cond_after(void *o, int status) {
    (void)status;
    assert_true(tide_lock_locked(tide_condition_lock(o)));
    tide_lock_release(tide_condition_lock(o));
}

/* Queue get: made empty; each serve puts the next number. */
static intptr_t g_put_seq;
static void *qget_make(tide_loop_t *loop) {
    tide_queue_t *q;
    assert_int_equal(tide_queue_new(loop, NULL, &q), 0);
    g_put_seq = 0;
    return q;
}
static void q_destroy(void *o) { tide_queue_free(o); }
static void qget_cb(tide_queue_t *q, int status, void *item, void *arg) {
    (void)q;
    ((waiter *)arg)->item = item;
    waiter_done(arg, status);
}
static int qget_start(void *o, tide_wait_t **wait, waiter *w) {
    return tide_queue_get(o, wait, qget_cb, w);
}
static int qget_await(void *o, waiter *w) { return tide_queue_get_await(o, &w->item); }
static void qget_serve(void *o) {
    assert_int_equal(tide_queue_put_nowait(o, (void *)++g_put_seq), 0);
}

/* Queue put: made full (maxsize 1); each serve takes one item. */
static void *qput_make(tide_loop_t *loop) {
    tide_queue_t *q;
    tide_queue_options_t o = {.maxsize = 1};
    assert_int_equal(tide_queue_new(loop, &o, &q), 0);
    assert_int_equal(tide_queue_put_nowait(q, NULL), 0);
    return q;
}
static void qput_cb(tide_queue_t *q, int status, void *arg) {
    (void)q;
    waiter_done(arg, status);
}
static int qput_start(void *o, tide_wait_t **wait, waiter *w) {
    return tide_queue_put(o, w, wait, qput_cb, w);
}
static int qput_await(void *o, waiter *w) { return tide_queue_put_await(o, w); }
static void qput_serve(void *o) {
    void *item;
    assert_int_equal(tide_queue_get_nowait(o, &item), 0);
}

/* Queue join: made with one unfinished item; the serve marks it done. */
static void *qjoin_make(tide_loop_t *loop) {
    tide_queue_t *q;
    void *item;
    assert_int_equal(tide_queue_new(loop, NULL, &q), 0);
    assert_int_equal(tide_queue_put_nowait(q, NULL), 0);
    assert_int_equal(tide_queue_get_nowait(q, &item), 0);
    return q;
}
static void qjoin_cb(tide_queue_t *q, int status, void *arg) {
    (void)q;
    waiter_done(arg, status);
}
static int qjoin_start(void *o, tide_wait_t **wait, waiter *w) {
    return tide_queue_join(o, wait, qjoin_cb, w);
}
static int qjoin_await(void *o, waiter *w) {
    (void)w;
    return tide_queue_join_await(o);
}
static void qjoin_serve(void *o) { assert_int_equal(tide_queue_task_done(o), 0); }

static const prim PRIMS[] = {
    {"future", fut_make, fut_destroy, fut_start, fut_await, fut_serve, NULL, true, true},
    {"event", ev_make, ev_destroy, ev_start, ev_await, ev_serve, NULL, true, false},
    {"lock", lock_make, lock_destroy, lock_start, lock_await, lock_serve, NULL, false, false},
    {"semaphore", sem_make, sem_destroy, sem_start, sem_await, sem_serve, NULL, false, false},
    {"bounded", bsem_make, sem_destroy, sem_start, sem_await, sem_serve, NULL, false, false},
    {"condition", cond_make, cond_destroy, cond_start, cond_await, cond_serve, cond_after, false,
     false},
    {"queue_get", qget_make, q_destroy, qget_start, qget_await, qget_serve, NULL, false, false},
    {"queue_put", qput_make, q_destroy, qput_start, qput_await, qput_serve, NULL, false, false},
    {"queue_join", qjoin_make, q_destroy, qjoin_start, qjoin_await, qjoin_serve, NULL, true, false},
};
#define NPRIMS (sizeof(PRIMS) / sizeof(PRIMS[0]))

/* ---- the engine ----------------------------------------------------------------------- */

typedef struct bench {
    tide_loop_t *loop;
    const prim *p;
    void *obj;
    bool task_style;
    waiter w[3];
} bench;

static void bench_init(bench *b, const prim *p, bool task_style) {
    memset(b, 0, sizeof(*b));
    g_order = 0;
    b->loop = ts_loop_new();
    b->p = p;
    b->task_style = task_style;
    b->obj = p->make(b->loop);
}

static void start(bench *b, int i, double deadline) {
    waiter *w = &b->w[i];
    w->p = b->p;
    w->obj = b->obj;
    w->task_style = b->task_style;
    w->deadline = deadline;
    if (b->task_style) {
        w->task = ts_spawn_joined(b->loop, waiter_task, w, &w->joined);
    } else {
        assert_int_equal(b->p->start(b->obj, &w->wait, w), 0);
    }
    ts_spin(b->loop, 3);
}

static int cancel(waiter *w) {
    if (w->task_style)
        return tide_task_cancel(w->task);
    return tide_wait_cancel(w->wait);
}

static bool all_joined(void *arg) {
    bench *b = arg;
    for (int i = 0; i < 3; i++)
        if (b->w[i].task != NULL && b->w[i].joined.calls == 0)
            return false;
    return true;
}

static void bench_finish(bench *b) {
    ts_run_until(b->loop, all_joined, b, 5);
    ts_spin(b->loop, 3);
    if (b->obj != NULL)
        b->p->destroy(b->obj);
    ts_spin(b->loop, 3);
    ts_loop_close(b->loop);
}

typedef struct tcase {
    const prim *p;
    bool task_style;
} tcase;

static tcase CASES[2 * NPRIMS];

static int cases_setup(void **state) {
    (void)state;
    for (size_t i = 0; i < NPRIMS; i++) {
        CASES[2 * i] = (tcase){&PRIMS[i], false};
        CASES[2 * i + 1] = (tcase){&PRIMS[i], true};
    }
    return 0;
}

typedef void (*case_fn)(bench *b);

static void each(case_fn fn, bool task_only, bool need_cb_cancel) {
    cases_setup(NULL);
    for (size_t i = 0; i < 2 * NPRIMS; i++) {
        if (task_only && !CASES[i].task_style)
            continue;
        if (need_cb_cancel && !CASES[i].task_style && CASES[i].p->no_cb_cancel)
            continue;
        print_message("  %s, %s style\n", CASES[i].p->name,
                      CASES[i].task_style ? "task" : "callback");
        bench b;
        bench_init(&b, CASES[i].p, CASES[i].task_style);
        fn(&b);
        bench_finish(&b);
    }
}

/* Waiters are served in the order they came; nothing is served before the serve. */
static void case_fifo(bench *b) {
    for (int i = 0; i < 3; i++)
        start(b, i, 0);
    for (int i = 0; i < 3; i++)
        assert_false(b->w[i].finished);
    for (int i = 0; i < 3; i++) {
        if (i == 0 || !b->p->serves_all)
            b->p->serve(b->obj);
        ts_spin(b->loop, 4);
        for (int j = 0; j < 3; j++)
            assert_int_equal(b->w[j].finished, j <= i || b->p->serves_all);
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(b->w[i].status, 0);
        assert_int_equal(b->w[i].order, i + 1);
        assert_int_equal(b->w[i].next_rc, 0);
    }
    if (b->p->make == qget_make)
        for (int i = 0; i < 3; i++)
            assert_ptr_equal(b->w[i].item, (void *)(intptr_t)(i + 1));
    if (b->p->make == fut_make)
        for (int i = 0; i < 3; i++)
            assert_ptr_equal(b->w[i].item, &g_order);
}

static void test_fifo(void **state) {
    (void)state;
    each(case_fifo, false, false);
}

/* The head waiter is cancelled before anything is served: it reports the
 * cancellation, holds nothing, and the next serve reaches the second waiter. */
static void case_cancel_head(bench *b) {
    for (int i = 0; i < 3; i++)
        start(b, i, 0);
    assert_int_equal(cancel(&b->w[0]), 1);
    ts_spin(b->loop, 4);
    assert_true(b->w[0].finished);
    assert_int_equal(b->w[0].status, TIDE_ECANCELLED);
    assert_false(b->w[1].finished);
    b->p->serve(b->obj);
    ts_spin(b->loop, 4);
    assert_true(b->w[1].finished);
    assert_int_equal(b->w[1].status, 0);
    assert_int_equal(b->w[2].finished, b->p->serves_all);
    if (!b->p->serves_all) {
        b->p->serve(b->obj);
        ts_spin(b->loop, 4);
    }
    assert_true(b->w[2].finished);
    assert_int_equal(b->w[2].status, 0);
    if (b->p->make == qget_make) {
        assert_ptr_equal(b->w[1].item, (void *)1);
        assert_ptr_equal(b->w[2].item, (void *)2);
    }
}

static void test_cancel_head(void **state) {
    (void)state;
    each(case_cancel_head, false, true);
}

/* The wake-up-lost race: the head waiter is served, then cancelled before it runs.
 * It keeps what it was given (status 0); the task sees the cancellation at its next
 * blocking call; the second waiter is still waiting for its own serve. */
static void case_cancel_after_serve(bench *b) {
    for (int i = 0; i < 2; i++)
        start(b, i, 0);
    b->p->serve(b->obj);
    assert_int_equal(cancel(&b->w[0]), b->task_style ? 1 : 0);
    ts_spin(b->loop, 4);
    assert_true(b->w[0].finished);
    assert_int_equal(b->w[0].status, 0);
    if (b->task_style)
        assert_int_equal(b->w[0].next_rc, TIDE_ECANCELLED);
    assert_int_equal(b->w[1].finished, b->p->serves_all);
    if (!b->p->serves_all) {
        b->p->serve(b->obj);
        ts_spin(b->loop, 4);
    }
    assert_true(b->w[1].finished);
    assert_int_equal(b->w[1].status, 0);
    if (b->p->make == qget_make)
        assert_ptr_equal(b->w[0].item, (void *)1);
}

static void test_cancel_after_serve(void **state) {
    (void)state;
    each(case_cancel_after_serve, false, true);
}

static bool waiter_finished(void *arg) { return ((waiter *)arg)->finished; }

/* A deadline ends a task's wait with TIDE_ETIMEOUT and its place in the queue. */
static void case_deadline(bench *b) {
    start(b, 0, 0.02);
    start(b, 1, 0);
    ts_run_until(b->loop, waiter_finished, &b->w[0], 5);
    assert_int_equal(b->w[0].status, TIDE_ETIMEOUT);
    assert_false(b->w[1].finished);
    b->p->serve(b->obj);
    ts_spin(b->loop, 4);
    assert_true(b->w[1].finished);
    assert_int_equal(b->w[1].status, 0);
}

static void test_deadline(void **state) {
    (void)state;
    each(case_deadline, true, false);
}

/* Freeing the object completes its waiters with TIDE_ECLOSED. */
static void case_free_waiters(bench *b) {
    start(b, 0, 0);
    start(b, 1, 0);
    b->p->destroy(b->obj);
    b->obj = NULL;
    ts_spin(b->loop, 4);
    for (int i = 0; i < 2; i++) {
        assert_true(b->w[i].finished);
        /* Freeing a pending future cancels it. */
        assert_int_equal(b->w[i].status, b->p->make == fut_make ? TIDE_ECANCELLED : TIDE_ECLOSED);
    }
}

static void test_free_waiters(void **state) {
    (void)state;
    each(case_free_waiters, false, false);
}

/* Every task form refuses to run outside a task, leaving nothing pending. */
static void test_outside_task(void **state) {
    (void)state;
    for (size_t i = 0; i < NPRIMS; i++) {
        tide_loop_t *loop = ts_loop_new();
        void *obj = PRIMS[i].make(loop);
        waiter w = {.p = &PRIMS[i], .obj = obj};
        assert_int_equal(PRIMS[i].await(obj, &w), TIDE_ENOTASK);
        PRIMS[i].destroy(obj);
        ts_loop_close(loop);
    }
}

/* ---- futures ------------------------------------------------------------------------ */

typedef struct cbrec {
    int calls;
    int status;
    void *result;
    int order[4];
} cbrec;

static int g_seq;

static void rec_cb(tide_future_t *f, int status, void *result, void *arg) {
    (void)f;
    cbrec *r = arg;
    r->order[r->calls++] = ++g_seq;
    r->status = status;
    r->result = result;
}

static void test_future_basics(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    tide_future_t *f;
    void *res = &res;
    assert_int_equal(tide_future_new(loop, &f), 0);
    assert_false(tide_future_done(f));
    assert_int_equal(tide_future_result(f, &res), TIDE_ESTATE);
    assert_null(res);
    cbrec a = {0}, b = {0}, c = {0};
    g_seq = 0;
    assert_int_equal(tide_future_add_done_callback(f, rec_cb, &a), 0);
    assert_int_equal(tide_future_add_done_callback(f, rec_cb, &b), 0);
    assert_int_equal(tide_future_add_done_callback(f, rec_cb, &c), 0);
    assert_int_equal(tide_future_remove_done_callback(f, rec_cb, &b), 1);
    assert_int_equal(tide_future_set_result(f, &a), 0);
    assert_int_equal(a.calls, 0); /* never inside set_result */
    assert_int_equal(tide_future_set_result(f, &b), TIDE_ESTATE);
    assert_int_equal(tide_future_set_error(f, TIDE_EIO), TIDE_ESTATE);
    assert_int_equal(tide_future_cancel(f), 0);
    ts_spin(loop, 2);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 0);
    assert_int_equal(c.calls, 1);
    assert_true(a.order[0] < c.order[0]);
    assert_ptr_equal(a.result, &a);
    assert_int_equal(tide_future_result(f, &res), 0);
    assert_ptr_equal(res, &a);
    /* Added after completion: still deferred. */
    assert_int_equal(tide_future_add_done_callback(f, rec_cb, &b), 0);
    assert_int_equal(b.calls, 0);
    ts_spin(loop, 2);
    assert_int_equal(b.calls, 1);
    tide_future_free(f);

    /* Errors and cancellation. */
    assert_int_equal(tide_future_new(loop, &f), 0);
    assert_int_equal(tide_future_set_error(f, 0), TIDE_EINVAL);
    assert_int_equal(tide_future_set_error(f, TIDE_EIO), 0);
    assert_int_equal(tide_future_result(f, NULL), TIDE_EIO);
    assert_false(tide_future_cancelled(f));
    tide_future_free(f);
    assert_int_equal(tide_future_new(loop, &f), 0);
    assert_int_equal(tide_future_cancel(f), 1);
    assert_true(tide_future_cancelled(f));
    assert_int_equal(tide_future_result(f, NULL), TIDE_ECANCELLED);
    tide_future_free(f);

    /* Freed while pending with a callback queued: the callback gets the cancellation
     * and the memory stays until it ran. */
    memset(&a, 0, sizeof(a));
    assert_int_equal(tide_future_new(loop, &f), 0);
    assert_int_equal(tide_future_add_done_callback(f, rec_cb, &a), 0);
    tide_future_free(f);
    ts_spin(loop, 2);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, TIDE_ECANCELLED);
    ts_loop_close(loop);
}

static void free_in_cb(tide_future_t *f, int status, void *result, void *arg) {
    (void)status;
    (void)result;
    (*(int *)arg)++;
    tide_future_free(f);
}

static void test_future_free_in_callback(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    tide_future_t *f;
    int calls = 0;
    assert_int_equal(tide_future_new(loop, &f), 0);
    assert_int_equal(tide_future_add_done_callback(f, free_in_cb, &calls), 0);
    assert_int_equal(tide_future_set_result(f, NULL), 0);
    ts_spin(loop, 2);
    assert_int_equal(calls, 1);
    ts_loop_close(loop);
}

/* A future left unfreed keeps tide_loop_close from succeeding. */
static void test_future_reported(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    tide_future_t *f;
    assert_int_equal(tide_future_new(loop, &f), 0);
    assert_int_equal(tide_loop_close(loop), TIDE_EBUSY);
    tide_future_free(f);
    ts_loop_close(loop);
}

typedef struct bridge {
    tide_future_t *f;
    void *got;
    int rc;
} bridge;

static void complete_later(tide_loop_t *loop, void *arg) {
    (void)loop;
    tide_future_set_result(((bridge *)arg)->f, arg);
}

static int bridge_task(void *arg) {
    bridge *br = arg;
    tide_handle_t *h =
        tide_loop_call_later(tide_task_get_loop(tide_task_current()), 0.01, complete_later, br);
    TS_CHECK(h != NULL);
    br->rc = tide_future_await(br->f, &br->got);
    /* Done already: returns at once with the same result. */
    void *again = NULL;
    TS_CHECK(tide_future_await(br->f, &again) == 0 && again == br);
    return 0;
}

/* The bridge: a timer callback completes what a task awaits. */
static void test_future_bridge(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    bridge br = {0};
    assert_int_equal(tide_future_new(loop, &br.f), 0);
    assert_int_equal(ts_run_task(loop, bridge_task, &br), 0);
    assert_int_equal(br.rc, 0);
    assert_ptr_equal(br.got, &br);
    tide_future_free(br.f);
    ts_loop_close(loop);
}

/* ---- locks and semaphores ------------------------------------------------------------ */

static void test_lock_rules(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    tide_lock_t *l;
    assert_int_equal(tide_lock_new(loop, &l), 0);
    assert_int_equal(tide_lock_release(l), TIDE_EPERM);
    assert_int_equal(tide_lock_try_acquire(l), 0);
    assert_true(tide_lock_locked(l));
    assert_int_equal(tide_lock_try_acquire(l), TIDE_EBUSY);
    assert_int_equal(tide_lock_release(l), 0);
    assert_false(tide_lock_locked(l));
    assert_int_equal(tide_lock_acquire(l, NULL, NULL, NULL), TIDE_EINVAL);
    tide_lock_free(l);
    tide_lock_free(NULL);
    ts_loop_close(loop);
}

static void test_semaphore_rules(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    tide_semaphore_t *s, *bs;
    assert_int_equal(tide_semaphore_new(loop, 2, &s), 0);
    assert_int_equal(tide_bounded_semaphore_new(loop, 2, &bs), 0);
    assert_false(tide_semaphore_locked(s));
    assert_int_equal(tide_semaphore_try_acquire(s), 0);
    assert_int_equal(tide_semaphore_try_acquire(s), 0);
    assert_int_equal(tide_semaphore_try_acquire(s), TIDE_EBUSY);
    assert_true(tide_semaphore_locked(s));
    /* An unbounded semaphore may go above its start value. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(tide_semaphore_release(s), 0);
    assert_int_equal(tide_semaphore_value(s), 3);
    /* A bounded one refuses. */
    assert_int_equal(tide_semaphore_release(bs), TIDE_ERANGE);
    assert_int_equal(tide_semaphore_try_acquire(bs), 0);
    assert_int_equal(tide_semaphore_release(bs), 0);
    assert_int_equal(tide_semaphore_value(bs), 2);
    tide_semaphore_free(s);
    tide_semaphore_free(bs);
    ts_loop_close(loop);
}

/* ---- events ------------------------------------------------------------------------- */

typedef struct evrec {
    int calls;
    int status;
} evrec;

static void evrec_cb(tide_event_t *e, int status, void *arg) {
    (void)e;
    ((evrec *)arg)->calls++;
    ((evrec *)arg)->status = status;
}

static void test_event_rules(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    tide_event_t *e;
    evrec r = {0};
    assert_int_equal(tide_event_new(loop, &e), 0);
    tide_event_set(e);
    assert_true(tide_event_is_set(e));
    assert_int_equal(tide_event_wait(e, NULL, evrec_cb, &r), 0);
    assert_int_equal(r.calls, 0); /* deferred even when set */
    ts_spin(loop, 2);
    assert_int_equal(r.calls, 1);
    tide_event_clear(e);
    assert_int_equal(tide_event_wait(e, NULL, evrec_cb, &r), 0);
    ts_spin(loop, 2);
    assert_int_equal(r.calls, 1);
    tide_event_set(e);
    ts_spin(loop, 2);
    assert_int_equal(r.calls, 2);
    tide_event_free(e);
    ts_loop_close(loop);
}

/* ---- conditions ------------------------------------------------------------------------ */

typedef struct cond_fx {
    tide_condition_t *c;
    int state;
    int rc[3];
    int woke[3];
    int nwoke;
    int yield_rc[3];
} cond_fx;

typedef struct cond_arg {
    cond_fx *fx;
    int id;
} cond_arg;

static bool state_ready(void *arg) { return ((cond_fx *)arg)->state > 0; }

static int cond_waiter(void *arg) {
    cond_arg *a = arg;
    cond_fx *fx = a->fx;
    TS_CHECK(tide_lock_acquire_await(tide_condition_lock(fx->c)) == 0);
    fx->rc[a->id] = tide_condition_wait_await(fx->c);
    TS_CHECK(tide_lock_locked(tide_condition_lock(fx->c)));
    fx->woke[fx->nwoke++] = a->id;
    tide_lock_release(tide_condition_lock(fx->c));
    fx->yield_rc[a->id] = tide_task_yield();
    return 0;
}

/* Notified, then cancelled while the notifier still holds the lock: the waiter
 * returns TIDE_ECANCELLED (holding the lock) and its notification goes on to the next
 * waiter, as in asyncio 3.13. */
static void test_condition_notified_then_cancelled(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    cond_fx fx = {0};
    cond_arg args[2] = {{&fx, 0}, {&fx, 1}};
    ts_joined j[2];
    assert_int_equal(tide_condition_new(loop, NULL, &fx.c), 0);
    assert_int_equal(tide_condition_notify(fx.c, 1), TIDE_EPERM);
    tide_task_t *t0 = ts_spawn_joined(loop, cond_waiter, &args[0], &j[0]);
    ts_spawn_joined(loop, cond_waiter, &args[1], &j[1]);
    ts_spin(loop, 3);
    tide_lock_t *l = tide_condition_lock(fx.c);
    assert_int_equal(tide_lock_try_acquire(l), 0);
    assert_int_equal(tide_condition_notify(fx.c, 1), 1);
    assert_int_equal(tide_task_cancel(t0), 1);
    ts_spin(loop, 3);
    assert_int_equal(fx.nwoke, 0); /* both wait for the lock */
    assert_int_equal(tide_lock_release(l), 0);
    ts_run_until_flag(loop, &j[1].calls, 5);
    ts_run_until_flag(loop, &j[0].calls, 5);
    assert_int_equal(j[0].result, 0);
    assert_int_equal(j[1].result, 0);
    assert_int_equal(fx.nwoke, 2);
    assert_int_equal(fx.rc[0], TIDE_ECANCELLED);
    assert_int_equal(fx.rc[1], 0);
    assert_int_equal(fx.woke[0], 1); /* the passed-on notification went first */
    assert_false(tide_lock_locked(l));
    tide_condition_free(fx.c);
    ts_loop_close(loop);
}

static int pred_waiter(void *arg) {
    cond_fx *fx = arg;
    tide_lock_t *l = tide_condition_lock(fx->c);
    TS_CHECK(tide_lock_acquire_await(l) == 0);
    int rc = tide_condition_wait_for_await(fx->c, state_ready, fx);
    tide_lock_release(l);
    return rc;
}

static int pred_setter(void *arg) {
    cond_fx *fx = arg;
    tide_lock_t *l = tide_condition_lock(fx->c);
    for (int i = 0; i < 3; i++) {
        TS_CHECK(tide_lock_acquire_await(l) == 0);
        if (i == 2)
            fx->state = 1;
        TS_CHECK(tide_condition_notify_all(fx->c) >= 0);
        tide_lock_release(l);
        TS_CHECK(tide_task_yield() == 0);
    }
    return 0;
}

static void test_condition_wait_for(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    cond_fx fx = {0};
    ts_joined a, b;
    tide_lock_t *l;
    assert_int_equal(tide_lock_new(loop, &l), 0);
    assert_int_equal(tide_condition_new(loop, l, &fx.c), 0);
    assert_ptr_equal(tide_condition_lock(fx.c), l);
    ts_spawn_joined(loop, pred_waiter, &fx, &a);
    ts_spawn_joined(loop, pred_setter, &fx, &b);
    ts_run_until_flag(loop, &a.calls, 5);
    ts_run_until_flag(loop, &b.calls, 5);
    assert_int_equal(a.result, 0);
    assert_int_equal(b.result, 0);
    tide_condition_free(fx.c);
    tide_lock_free(l);
    ts_loop_close(loop);
}

/* ---- queues ----------------------------------------------------------------------------- */

static int cmp_int(const void *a, const void *b) {
    intptr_t x = (intptr_t)a, y = (intptr_t)b;
    return (x > y) - (x < y);
}

static void drain_expect(tide_queue_t *q, const intptr_t *want, size_t n) {
    for (size_t i = 0; i < n; i++) {
        void *item;
        assert_int_equal(tide_queue_get_nowait(q, &item), 0);
        assert_int_equal((intptr_t)item, want[i]);
    }
    void *item = &item;
    assert_int_equal(tide_queue_get_nowait(q, &item), TIDE_EQUEUE_EMPTY);
    assert_null(item);
}

static void test_queue_kinds(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    static const intptr_t in[] = {5, 1, 4, 1, 3, 9, 2, 6};
    static const intptr_t lifo[] = {6, 2, 9, 3, 1, 4, 1, 5};
    static const intptr_t prio[] = {1, 1, 2, 3, 4, 5, 6, 9};
    tide_queue_kind_t kinds[] = {TIDE_QUEUE_FIFO, TIDE_QUEUE_LIFO, TIDE_QUEUE_PRIORITY};
    const intptr_t *want[] = {in, lifo, prio};
    for (int k = 0; k < 3; k++) {
        /* Bounded at 8, and unbounded past the first growth (40 items). */
        for (int bounded = 0; bounded < 2; bounded++) {
            tide_queue_options_t o = {
                .kind = kinds[k], .compare = cmp_int, .maxsize = bounded ? 8 : 0};
            tide_queue_t *q;
            assert_int_equal(tide_queue_new(loop, &o, &q), 0);
            int rounds = bounded ? 1 : 5;
            for (int r = 0; r < rounds; r++) {
                for (int i = 0; i < 8; i++)
                    assert_int_equal(tide_queue_put_nowait(q, (void *)in[i]), 0);
                if (bounded) {
                    assert_true(tide_queue_full(q));
                    assert_int_equal(tide_queue_put_nowait(q, (void *)1), TIDE_EQUEUE_FULL);
                }
                assert_int_equal(tide_queue_size(q), 8);
                drain_expect(q, want[k], 8);
            }
            tide_queue_free(q);
        }
    }
    /* A priority queue without compare is refused. */
    tide_queue_options_t bad = {.kind = TIDE_QUEUE_PRIORITY};
    tide_queue_t *q = (tide_queue_t *)&bad;
    assert_int_equal(tide_queue_new(loop, &bad, &q), TIDE_EINVAL);
    assert_null(q);
    ts_loop_close(loop);
}

static void test_queue_wraparound(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    tide_queue_t *q;
    assert_int_equal(tide_queue_new(loop, NULL, &q), 0);
    intptr_t next_in = 0, next_out = 0;
    for (int r = 0; r < 200; r++) {
        for (int i = 0; i < (r % 7) + 1; i++)
            assert_int_equal(tide_queue_put_nowait(q, (void *)next_in++), 0);
        for (int i = 0; i < (r % 5) + 1 && next_out < next_in; i++) {
            void *item;
            assert_int_equal(tide_queue_get_nowait(q, &item), 0);
            assert_int_equal((intptr_t)item, next_out++);
        }
    }
    assert_int_equal(tide_queue_size(q), (size_t)(next_in - next_out));
    tide_queue_free(q);
    ts_loop_close(loop);
}

static int g_freed;
static void count_free(void *item) {
    (void)item;
    g_freed++;
}

typedef struct qrec {
    int calls;
    int status;
    void *item;
} qrec;

static void qrec_get(tide_queue_t *q, int status, void *item, void *arg) {
    (void)q;
    qrec *r = arg;
    r->calls++;
    r->status = status;
    r->item = item;
}

static void qrec_put(tide_queue_t *q, int status, void *arg) {
    (void)q;
    qrec *r = arg;
    r->calls++;
    r->status = status;
}

static void test_queue_shutdown(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    tide_queue_options_t o = {.maxsize = 2, .free_item = count_free};
    tide_queue_t *q;
    qrec put = {0}, get = {0};
    void *item;
    assert_int_equal(tide_queue_new(loop, &o, &q), 0);
    assert_int_equal(tide_queue_put_nowait(q, (void *)1), 0);
    assert_int_equal(tide_queue_put_nowait(q, (void *)2), 0);
    assert_int_equal(tide_queue_put(q, (void *)3, NULL, qrec_put, &put), 0);
    tide_queue_shutdown(q, false);
    assert_true(tide_queue_is_shutdown(q));
    ts_spin(loop, 2);
    assert_int_equal(put.calls, 1);
    assert_int_equal(put.status, TIDE_EQUEUE_SHUTDOWN); /* waiting puts fail */
    assert_int_equal(tide_queue_put_nowait(q, (void *)4), TIDE_EQUEUE_SHUTDOWN);
    assert_int_equal(tide_queue_put(q, (void *)4, NULL, qrec_put, &put), TIDE_EQUEUE_SHUTDOWN);
    /* Gets drain what is left, then fail. */
    assert_int_equal(tide_queue_get_nowait(q, &item), 0);
    assert_ptr_equal(item, (void *)1);
    assert_int_equal(tide_queue_get(q, NULL, qrec_get, &get), 0);
    ts_spin(loop, 2);
    assert_int_equal(get.status, 0);
    assert_ptr_equal(get.item, (void *)2);
    assert_int_equal(tide_queue_get_nowait(q, &item), TIDE_EQUEUE_SHUTDOWN);
    assert_int_equal(tide_queue_get(q, NULL, qrec_get, &get), TIDE_EQUEUE_SHUTDOWN);
    assert_int_equal(g_freed, 0);
    tide_queue_free(q);

    /* Immediate: waiting gets fail, items left are dropped and counted as done. */
    g_freed = 0;
    memset(&get, 0, sizeof(get));
    assert_int_equal(tide_queue_new(loop, &o, &q), 0);
    assert_int_equal(tide_queue_get(q, NULL, qrec_get, &get), 0);
    tide_queue_shutdown(q, false);
    ts_spin(loop, 2);
    assert_int_equal(get.status, TIDE_EQUEUE_SHUTDOWN); /* empty: nothing to drain */
    tide_queue_free(q);
    assert_int_equal(tide_queue_new(loop, &o, &q), 0);
    assert_int_equal(tide_queue_put_nowait(q, (void *)1), 0);
    assert_int_equal(tide_queue_put_nowait(q, (void *)2), 0);
    qrec join = {0};
    assert_int_equal(tide_queue_join(q, NULL, qrec_put, &join), 0);
    tide_queue_shutdown(q, true);
    assert_int_equal(g_freed, 2);
    assert_int_equal(tide_queue_size(q), 0);
    assert_int_equal(tide_queue_get_nowait(q, &item), TIDE_EQUEUE_SHUTDOWN);
    ts_spin(loop, 2);
    assert_int_equal(join.calls, 1);
    assert_int_equal(join.status, 0);
    tide_queue_free(q);
    ts_loop_close(loop);
}

static void test_queue_task_done(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    tide_queue_t *q;
    void *item;
    assert_int_equal(tide_queue_new(loop, NULL, &q), 0);
    assert_int_equal(tide_queue_task_done(q), TIDE_EINVAL);
    assert_int_equal(tide_queue_put_nowait(q, NULL), 0);
    assert_int_equal(tide_queue_get_nowait(q, &item), 0);
    assert_int_equal(tide_queue_task_done(q), 0);
    assert_int_equal(tide_queue_task_done(q), TIDE_EINVAL);
    /* Items dropped by free go to free_item; none here. */
    assert_int_equal(tide_queue_put_nowait(q, NULL), 0);
    tide_queue_free(q);
    ts_loop_close(loop);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo),
        cmocka_unit_test(test_cancel_head),
        cmocka_unit_test(test_cancel_after_serve),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_free_waiters),
        cmocka_unit_test(test_outside_task),
        cmocka_unit_test(test_future_basics),
        cmocka_unit_test(test_future_free_in_callback),
        cmocka_unit_test(test_future_reported),
        cmocka_unit_test(test_future_bridge),
        cmocka_unit_test(test_lock_rules),
        cmocka_unit_test(test_semaphore_rules),
        cmocka_unit_test(test_event_rules),
        cmocka_unit_test(test_condition_notified_then_cancelled),
        cmocka_unit_test(test_condition_wait_for),
        cmocka_unit_test(test_queue_kinds),
        cmocka_unit_test(test_queue_wraparound),
        cmocka_unit_test(test_queue_shutdown),
        cmocka_unit_test(test_queue_task_done),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
