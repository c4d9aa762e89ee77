/* Task groups, gather, wait-first, wait_for and timeout: running tasks together.
 *
 * A group joins every task it spawns (a child record per task, on the group's list
 * while the task runs). The first child that fails closes the group and cancels the
 * others; when the last child has finished, the group's waiters (core/wait.c
 * records) complete. gather is a group that does not fail fast and stores each
 * child's result in its slot. A task that waits on a group and is cancelled (or
 * times out) cancels the group and then waits for it in a shielded wait, so no child
 * outlives the call that owns it.
 *
 * wait-first joins each of the caller's tasks with an internal callback; the first
 * join callback to run takes its task's result and unjoins the others, which go back
 * to the caller untouched.
 *
 * Loop thread only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/core_int.h"

struct tide_task_group {
    tide__resource res;
    tide_loop_t *loop;
    tide__queue children;
    tide__queue waiters;
    size_t running;
    int error;      /* the first failure */
    bool fail_fast; /* a group; not a gather */
    bool closed;    /* no new children */
    bool cancelled; /* tide_task_group_cancel (or a waiter's cancellation) */
    bool free_requested;
};

typedef struct child {
    tide__queue node;
    tide_task_group_t *group;
    tide_task_t *task;
    int *slot; /* gather: where the result goes */
} child;

static void describe(const tide__resource *res, char *buf, size_t size) {
    const tide_task_group_t *g = TIDE__QUEUE_DATA(res, tide_task_group_t, res);
    snprintf(buf, size, "task group %p (%zu running)", (const void *)g, g->running);
}

static tide_task_group_t *group_new(tide_loop_t *loop, bool fail_fast) {
    tide_task_group_t *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    g->loop = loop;
    g->fail_fast = fail_fast;
    tide__queue_init(&g->children);
    tide__queue_init(&g->waiters);
    tide__loop_register_passive(loop, &g->res, describe);
    return g;
}

int tide_task_group_new(tide_loop_t *loop, tide_task_group_t **group) {
    if (group != NULL)
        *group = NULL;
    if (loop == NULL || group == NULL)
        return TIDE_EINVAL;
    *group = group_new(loop, true);
    return *group != NULL ? 0 : TIDE_ENOMEM;
}

static void cancel_children(tide_task_group_t *g) {
    tide__queue *n;
    TIDE__QUEUE_FOREACH(n, &g->children) {
        tide_task_cancel(TIDE__QUEUE_DATA(n, child, node)->task);
    }
}

static int status_of(const tide_task_group_t *g) {
    if (g->error != 0)
        return g->error;
    return g->cancelled ? TIDE_ECANCELLED : 0;
}

static void group_release(tide_task_group_t *g) {
    tide__loop_unregister(g->loop, &g->res);
    free(g);
}

/* Every child is done: the group is over; its waiters learn how it ended. */
static void finish(tide_task_group_t *g) {
    g->closed = true;
    tide__wait_complete_all(&g->waiters, status_of(g));
    if (g->free_requested)
        group_release(g);
}

static void child_done(tide_task_t *task, int result, void *arg) {
    (void)task;
    child *c = arg;
    tide_task_group_t *g = c->group;
    tide__queue_remove(&c->node);
    if (c->slot != NULL)
        *c->slot = result;
    free(c);
    if (result < 0 && result != TIDE_ECANCELLED && g->error == 0 && g->fail_fast) {
        g->error = result;
        g->closed = true;
        cancel_children(g);
    }
    if (--g->running == 0)
        finish(g);
}

static int spawn(tide_task_group_t *g, tide_task_fn fn, void *arg, const tide_task_options_t *o,
                 int *slot) {
    child *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return TIDE_ENOMEM;
    int rc = tide_task_spawn(g->loop, fn, arg, o, &c->task);
    if (rc != 0) {
        free(c);
        return rc;
    }
    c->group = g;
    c->slot = slot;
    tide_task_join(c->task, child_done, c);
    tide__queue_insert_tail(&g->children, &c->node);
    g->running++;
    return 0;
}

int tide_task_group_spawn(tide_task_group_t *g, tide_task_fn fn, void *arg,
                          const tide_task_options_t *options) {
    if (g == NULL || fn == NULL || g->free_requested)
        return TIDE_EINVAL;
    if (g->closed)
        return TIDE_ECLOSED;
    return spawn(g, fn, arg, options, NULL);
}

int tide_task_group_cancel(tide_task_group_t *g) {
    if (g == NULL || g->free_requested)
        return TIDE_EINVAL;
    if (g->running > 0 || !g->closed)
        g->cancelled = true;
    g->closed = true;
    cancel_children(g);
    return 0;
}

size_t tide_task_group_size(const tide_task_group_t *g) { return g != NULL ? g->running : 0; }

static void group_deliver(tide_wait_t *w) {
    ((tide_task_group_cb)w->user_cb)(w->obj, w->status, w->user_arg);
}

int tide_task_group_wait(tide_task_group_t *g, tide_task_group_cb cb, void *arg) {
    if (g == NULL || cb == NULL || g->free_requested)
        return TIDE_EINVAL;
    tide_wait_t *w = tide__wait_new_cb(g->loop, g, group_deliver, NULL, (void (*)(void))cb, arg);
    if (w == NULL)
        return TIDE_ENOMEM;
    tide__queue_insert_tail(&g->waiters, &w->node);
    if (g->running == 0)
        finish(g);
    return 0;
}

/* A waiting task was interrupted: remember it, so the caller knows to cancel. */
static void group_withdraw(tide_wait_t *w) {
    tide__wait_unlink(w);
    w->phase = 1;
}

/* Waits until g has no running child. On an interruption, cancels the children and
 * waits for them anyway; returns the interruption code then. */
static int group_await(tide_task_group_t *g) {
    if (g->running == 0) {
        g->closed = true;
        return status_of(g);
    }
    tide_wait_t w;
    tide__wait_init_task(&w, g->loop, g, group_withdraw);
    tide__queue_insert_tail(&g->waiters, &w.node);
    int rc = tide__wait_await(&w);
    if (w.phase == 0)
        return rc;
    /* Interrupted: cancel the children, and still wait for every one of them. */
    g->cancelled = true;
    g->closed = true;
    cancel_children(g);
    if (g->running > 0) {
        tide__wait_init_task(&w, g->loop, g, NULL);
        tide__queue_insert_tail(&g->waiters, &w.node);
        tide__task_wait_shielded(&w.tw);
    }
    return rc;
}

int tide_task_group_wait_await(tide_task_group_t *g) {
    if (g == NULL || g->free_requested)
        return tide_task_current() != NULL ? TIDE_EINVAL : TIDE_ENOTASK;
    int rc = tide__in_task(g->loop);
    return rc != 0 ? rc : group_await(g);
}

void tide_task_group_free(tide_task_group_t *g) {
    if (g == NULL || g->free_requested)
        return;
    g->free_requested = true;
    if (g->running == 0) {
        tide__wait_complete_all(&g->waiters, status_of(g));
        group_release(g);
        return;
    }
    g->closed = true;
    g->cancelled = true;
    cancel_children(g);
}

/* ---- gather ---------------------------------------------------------------------------- */

typedef struct gather {
    tide_gather_cb cb;
    void *arg;
    int *results;
    size_t n;
} gather;

static int first_error(const int *results, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (results[i] < 0)
            return results[i];
    return 0;
}

static void gather_done(tide_task_group_t *g, int status, void *arg) {
    (void)status;
    gather *ga = arg;
    tide_loop_t *loop = g->loop;
    tide_task_group_free(g);
    ga->cb(loop, first_error(ga->results, ga->n), ga->arg);
    free(ga);
}

/* Undoes a gather that could not start: its tasks are cancelled before they ever run
 * and write no result (the caller got an error and may reuse the array). */
static void gather_abandon(tide_task_group_t *g) {
    tide__queue *n;
    TIDE__QUEUE_FOREACH(n, &g->children) {
        child *c = TIDE__QUEUE_DATA(n, child, node);
        c->slot = NULL;
    }
    tide_task_group_free(g);
}

/* Spawns the n tasks of a gather into a new group. */
static int gather_start(tide_loop_t *loop, size_t n, const tide_task_fn *fns, void *const *args,
                        const tide_task_options_t *o, int *results, tide_task_group_t **out) {
    *out = NULL;
    if (loop == NULL || (n > 0 && (fns == NULL || results == NULL)))
        return TIDE_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (fns[i] == NULL)
            return TIDE_EINVAL;
    tide_task_group_t *g = group_new(loop, false);
    if (g == NULL)
        return TIDE_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        results[i] = 0;
        int rc = spawn(g, fns[i], args != NULL ? args[i] : NULL, o, &results[i]);
        if (rc != 0) {
            gather_abandon(g);
            return rc;
        }
    }
    *out = g;
    return 0;
}

int tide_task_gather(tide_loop_t *loop, size_t n, const tide_task_fn *fns, void *const *args,
                     const tide_task_options_t *options, int *results, tide_gather_cb cb,
                     void *arg) {
    if (cb == NULL)
        return TIDE_EINVAL;
    gather *ga = malloc(sizeof(*ga));
    if (ga == NULL)
        return TIDE_ENOMEM;
    *ga = (gather){cb, arg, results, n};
    tide_task_group_t *g;
    int rc = gather_start(loop, n, fns, args, options, results, &g);
    if (rc == 0) {
        rc = tide_task_group_wait(g, gather_done, ga);
        if (rc != 0)
            gather_abandon(g);
    }
    if (rc != 0)
        free(ga);
    return rc;
}

int tide_task_gather_await(size_t n, const tide_task_fn *fns, void *const *args,
                           const tide_task_options_t *options, int *results) {
    tide_task_t *self = tide_task_current();
    if (self == NULL)
        return TIDE_ENOTASK;
    tide_task_group_t *g;
    int rc = gather_start(tide_task_get_loop(self), n, fns, args, options, results, &g);
    if (rc != 0)
        return rc;
    rc = group_await(g); /* 0, or the caller's interruption */
    tide_task_group_free(g);
    return rc != 0 ? rc : first_error(results, n);
}

/* ---- wait for the first ------------------------------------------------------------------ */

typedef struct first_wait first_wait;

/* One per task: its join callback's argument. */
typedef struct first_join {
    first_wait *fw;
    tide_task_t *task;
    size_t index; /* in the caller's array */
} first_join;

struct first_wait {
    tide__waiter w; /* first: on_abandon gets it */
    tide_loop_t *loop;
    first_join *joins;
    size_t n;
    size_t index;
    int result;
    bool done;
    tide_wait_first_cb cb; /* callback form */
    void *arg;
    tide__call call;
};

/* Gives back every task but the one that finished (if one did). */
static void unjoin_all(first_wait *fw) {
    for (size_t i = 0; i < fw->n; i++)
        if (!fw->done || fw->joins[i].index != fw->index)
            tide__task_unjoin(fw->joins[i].task);
}

static void first_deliver(tide__call *call) {
    first_wait *fw = TIDE__QUEUE_DATA(call, first_wait, call);
    fw->cb(fw->loop, 0, fw->index, fw->result, fw->arg);
    free(fw->joins);
    free(fw);
}

static void first_joined(tide_task_t *task, int result, void *arg) {
    (void)task;
    first_join *j = arg;
    first_wait *fw = j->fw;
    fw->done = true;
    fw->index = j->index;
    fw->result = result;
    /* The task that finished is freed once this returns; the others go back. */
    unjoin_all(fw);
    if (fw->cb != NULL)
        tide__loop_defer(fw->loop, &fw->call);
    else
        tide__task_wake(&fw->w, 0);
}

static void first_abandon(tide__waiter *w) { unjoin_all((first_wait *)(void *)w); }

/* Validates the tasks; the index of one already finished, SIZE_MAX if none. */
static int first_check(tide_task_t *const *tasks, size_t n, size_t *done) {
    *done = SIZE_MAX;
    if (tasks == NULL || n == 0)
        return TIDE_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (tasks[i] == NULL || tide_task_get_loop(tasks[i]) != tide_task_get_loop(tasks[0]))
            return TIDE_EINVAL;
        if (*done == SIZE_MAX && tide_task_is_done(tasks[i]))
            *done = i;
    }
    return 0;
}

/* Joins the tasks to fw (only the finished one when done names one); on failure
 * nothing stays joined. */
static int first_join_all(first_wait *fw, tide_task_t *const *tasks, size_t n, size_t done) {
    fw->n = done != SIZE_MAX ? 1 : n;
    fw->joins = malloc(fw->n * sizeof(*fw->joins));
    if (fw->joins == NULL)
        return TIDE_ENOMEM;
    for (size_t i = 0; i < fw->n; i++) {
        size_t index = done != SIZE_MAX ? done : i;
        fw->joins[i] = (first_join){fw, tasks[index], index};
        if (tide_task_join(tasks[index], first_joined, &fw->joins[i]) != 0) {
            for (size_t k = 0; k < i; k++)
                tide__task_unjoin(fw->joins[k].task);
            free(fw->joins);
            return TIDE_EINVAL;
        }
    }
    return 0;
}

int tide_task_wait_first(tide_task_t *const *tasks, size_t n, tide_wait_first_cb cb, void *arg) {
    size_t done;
    int rc = first_check(tasks, n, &done);
    if (rc != 0 || cb == NULL)
        return rc != 0 ? rc : TIDE_EINVAL;
    first_wait *fw = calloc(1, sizeof(*fw));
    if (fw == NULL)
        return TIDE_ENOMEM;
    fw->loop = tide_task_get_loop(tasks[0]);
    fw->cb = cb;
    fw->arg = arg;
    tide__call_init(&fw->call, first_deliver);
    /* A task already finished is joined alone: its join callback comes next turn. */
    rc = first_join_all(fw, tasks, n, done);
    if (rc != 0)
        free(fw);
    return rc;
}

int tide_task_wait_first_await(tide_task_t *const *tasks, size_t n, size_t *index, int *result) {
    tide_task_t *self = tide_task_current();
    if (self == NULL)
        return TIDE_ENOTASK;
    size_t done;
    int rc = first_check(tasks, n, &done);
    if (rc == 0 && tide_task_get_loop(tasks[0]) != tide_task_get_loop(self))
        rc = TIDE_EINVAL;
    if (rc != 0)
        return rc;
    int res = 0;
    if (done != SIZE_MAX) {
        rc = tide_task_join_await(tasks[done], &res); /* finished: returns at once */
    } else {
        first_wait fw = {.loop = tide_task_get_loop(self)};
        tide__waiter_init(&fw.w, first_abandon);
        rc = first_join_all(&fw, tasks, n, SIZE_MAX);
        if (rc != 0)
            return rc;
        rc = tide__task_wait(&fw.w);
        free(fw.joins);
        done = fw.index;
        res = fw.result;
    }
    if (rc == 0) {
        if (index != NULL)
            *index = done;
        if (result != NULL)
            *result = res;
    }
    return rc;
}

/* ---- wait_for and timeout ------------------------------------------------------------------ */

typedef struct join_wait {
    tide__waiter w;
    int result;
} join_wait;

static void joined_wake(tide_task_t *task, int result, void *arg) {
    (void)task;
    join_wait *jw = arg;
    jw->result = result;
    tide__task_wake(&jw->w, 0);
}

int tide_task_wait_for_await(tide_task_t *task, double seconds, int *result) {
    if (tide_task_current() == NULL)
        return TIDE_ENOTASK;
    if (task == NULL || isnan(seconds))
        return TIDE_EINVAL;
    int rc = tide_task_deadline_push(seconds);
    if (rc != 0)
        return rc;
    rc = tide_task_join_await(task, result);
    tide_task_deadline_pop();
    if (rc != TIDE_ETIMEOUT && rc != TIDE_ECANCELLED)
        return rc;
    /* Out of time or cancelled: the task is cancelled, and joined once it has ended. */
    join_wait jw;
    tide__waiter_init(&jw.w, NULL);
    tide_task_cancel(task);
    if (tide_task_join(task, joined_wake, &jw) == 0)
        tide__task_wait_shielded(&jw.w);
    if (result != NULL)
        *result = jw.result;
    return rc;
}

int tide_task_timeout(double seconds, tide_task_fn fn, void *arg) {
    if (tide_task_current() == NULL)
        return TIDE_ENOTASK;
    if (fn == NULL)
        return TIDE_EINVAL;
    int rc = tide_task_deadline_push(seconds);
    if (rc != 0)
        return rc;
    rc = fn(arg);
    tide_task_deadline_pop();
    return rc;
}
