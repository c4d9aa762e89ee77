/* The executor (asyncio's run_in_executor) and the public getaddrinfo.
 *
 * A job is queued FIFO and handed to the loop's worker pool (tide__loop_run_in_thread)
 * while fewer than max_workers run. The worker only calls fn and stores its result;
 * the completion, on the loop's thread, counts the worker down, delivers and starts
 * the next job. A job of the task form lives in the task's frame, so the task never
 * leaves the call while its job runs: an interruption during the run is answered
 * after a shielded wait for the worker. An executor freed while workers run stays
 * allocated until the last completion.
 *
 * getaddrinfo wraps tide__resolve (core/resolve.c), which already owns the
 * cancel-while-the-thread-runs problem: its abandoned result is freed there.
 *
 * Loop thread only, except work(). */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/core_int.h"

struct tide_executor {
    tide__resource res;
    tide_loop_t *loop;
    tide__queue queued;
    unsigned max_workers;
    unsigned running;
    bool free_requested;
};

typedef struct job {
    tide__waiter w; /* task form; first: on_abandon gets it */
    tide__queue node;
    tide__call call; /* callback form: delivery */
    tide_executor_t *ex;
    tide_executor_fn fn;
    void *arg;
    int result;
    bool started;
    bool finished;
    tide_executor_cb cb; /* NULL: task form */
    void *cb_arg;
} job;

static void describe(const tide__resource *res, char *buf, size_t size) {
    const tide_executor_t *ex = TIDE__QUEUE_DATA(res, tide_executor_t, res);
    snprintf(buf, size, "executor %p (%u running)", (const void *)ex, ex->running);
}

int tide_executor_new(tide_loop_t *loop, unsigned max_workers, tide_executor_t **out) {
    if (out != NULL)
        *out = NULL;
    if (loop == NULL || out == NULL)
        return TIDE_EINVAL;
    tide_executor_t *ex = calloc(1, sizeof(*ex));
    if (ex == NULL)
        return TIDE_ENOMEM;
    ex->loop = loop;
    ex->max_workers = max_workers != 0 ? max_workers : 4;
    tide__queue_init(&ex->queued);
    tide__loop_register_passive(loop, &ex->res, describe);
    *out = ex;
    return 0;
}

static void job_deliver(tide__call *call) {
    job *j = TIDE__QUEUE_DATA(call, job, call);
    j->cb(j->ex, j->result, j->cb_arg);
    free(j);
}

/* The job is over (ran, or never will): hand its result to its waiter. */
static void job_complete(job *j, int result) {
    j->finished = true;
    j->result = result;
    if (j->cb != NULL)
        tide__loop_defer(j->ex->loop, &j->call);
    else
        tide__task_wake(&j->w, 0);
}

static void work(void *arg) {
    job *j = arg;
    j->result = j->fn(j->arg);
}

static void pump(tide_executor_t *ex);

static void work_done(tide_loop_t *loop, void *arg) {
    (void)loop;
    job *j = arg;
    tide_executor_t *ex = j->ex;
    ex->running--;
    job_complete(j, j->result);
    if (ex->free_requested) {
        if (ex->running == 0)
            free(ex);
        return;
    }
    pump(ex);
}

/* Starts queued jobs while workers are free. */
static void pump(tide_executor_t *ex) {
    while (ex->running < ex->max_workers && !tide__queue_empty(&ex->queued)) {
        job *j = TIDE__QUEUE_DATA(ex->queued.next, job, node);
        tide__queue_remove(&j->node);
        j->started = true;
        ex->running++;
        int rc = tide__loop_run_in_thread(ex->loop, work, work_done, j);
        if (rc != 0) {
            ex->running--;
            job_complete(j, rc);
        }
    }
}

void tide_executor_free(tide_executor_t *ex) {
    if (ex == NULL || ex->free_requested)
        return;
    ex->free_requested = true;
    tide__loop_unregister(ex->loop, &ex->res);
    while (!tide__queue_empty(&ex->queued)) {
        job *j = TIDE__QUEUE_DATA(ex->queued.next, job, node);
        tide__queue_remove(&j->node);
        job_complete(j, TIDE_ECANCELLED);
    }
    if (ex->running == 0)
        free(ex);
}

static void job_init(job *j, tide_executor_t *ex, tide_executor_fn fn, void *arg) {
    tide__queue_init(&j->node);
    tide__call_init(&j->call, job_deliver);
    j->ex = ex;
    j->fn = fn;
    j->arg = arg;
    tide__queue_insert_tail(&ex->queued, &j->node);
}

int tide_executor_run(tide_executor_t *ex, tide_executor_fn fn, void *arg, tide_executor_cb cb,
                      void *cb_arg) {
    if (ex == NULL || fn == NULL || cb == NULL || ex->free_requested)
        return TIDE_EINVAL;
    job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return TIDE_ENOMEM;
    j->cb = cb;
    j->cb_arg = cb_arg;
    job_init(j, ex, fn, arg);
    pump(ex);
    return 0;
}

/* Interrupted: a job still queued is withdrawn; a running one is waited for after. */
static void job_abandon(tide__waiter *w) {
    job *j = (job *)(void *)w;
    if (!j->started)
        tide__queue_remove(&j->node);
}

int tide_executor_run_await(tide_executor_t *ex, tide_executor_fn fn, void *arg, int *result) {
    if (ex == NULL || fn == NULL || ex->free_requested)
        return tide_task_current() != NULL ? TIDE_EINVAL : TIDE_ENOTASK;
    int rc = tide__in_task(ex->loop);
    if (rc != 0)
        return rc;
    job j = {0};
    tide__waiter_init(&j.w, job_abandon);
    job_init(&j, ex, fn, arg);
    pump(ex);
    rc = tide__task_wait(&j.w);
    if (rc != 0 && j.started && !j.finished) {
        /* fn is running on a thread with arg: stay until it returns. */
        tide__waiter_init(&j.w, NULL);
        tide__task_wait_shielded(&j.w);
    }
    if (j.finished && result != NULL)
        *result = j.result;
    if (rc == 0 && j.result == TIDE_ECANCELLED && !j.started)
        rc = TIDE_ECANCELLED; /* the executor was freed before fn ran */
    return rc;
}

/* ---- getaddrinfo ------------------------------------------------------------------------- */

typedef struct gai_req {
    tide_loop_t *loop;
    tide_getaddrinfo_cb cb;
    void *arg;
} gai_req;

static void gai_done(tide__resolve *r, int status, struct addrinfo *res, void *arg) {
    (void)r;
    gai_req *g = arg;
    g->cb(g->loop, status, res, g->arg);
    free(g);
}

static int gai_start(tide_loop_t *loop, const char *host, const char *service,
                     const struct addrinfo *hints, tide__resolve_cb cb, void *arg,
                     tide__resolve **req) {
    int family = hints != NULL ? hints->ai_family : AF_UNSPEC;
    int socktype = hints != NULL ? hints->ai_socktype : 0;
    int flags = hints != NULL ? hints->ai_flags : 0;
    return tide__resolve_start(loop, host, service, family, socktype, flags, cb, arg, req);
}

int tide_loop_getaddrinfo(tide_loop_t *loop, const char *host, const char *service,
                          const struct addrinfo *hints, tide_getaddrinfo_cb cb, void *arg) {
    if (loop == NULL || cb == NULL)
        return TIDE_EINVAL;
    gai_req *g = malloc(sizeof(*g));
    if (g == NULL)
        return TIDE_ENOMEM;
    *g = (gai_req){loop, cb, arg};
    int rc = gai_start(loop, host, service, hints, gai_done, g, NULL);
    if (rc != 0)
        free(g);
    return rc;
}

typedef struct gai_wait {
    tide__waiter w; /* first: on_abandon gets it */
    tide__resolve *req;
    struct addrinfo *res;
} gai_wait;

static void gai_wake(tide__resolve *r, int status, struct addrinfo *res, void *arg) {
    (void)r;
    gai_wait *gw = arg;
    gw->req = NULL;
    gw->res = res;
    tide__task_wake(&gw->w, status);
}

static void gai_abandon(tide__waiter *w) {
    gai_wait *gw = (gai_wait *)(void *)w;
    tide__resolve_cancel(gw->req); /* its result, if any comes, is freed there */
    gw->req = NULL;
}

int tide_loop_getaddrinfo_await(tide_loop_t *loop, const char *host, const char *service,
                                const struct addrinfo *hints, struct addrinfo **res) {
    if (res != NULL)
        *res = NULL;
    if (loop == NULL || res == NULL)
        return tide_task_current() != NULL ? TIDE_EINVAL : TIDE_ENOTASK;
    int rc = tide__in_task(loop);
    if (rc != 0)
        return rc;
    gai_wait gw = {0};
    tide__waiter_init(&gw.w, gai_abandon);
    rc = gai_start(loop, host, service, hints, gai_wake, &gw, &gw.req);
    if (rc != 0)
        return rc;
    rc = tide__task_wait(&gw.w);
    if (rc == 0)
        *res = gw.res;
    else if (gw.res != NULL)
        freeaddrinfo(gw.res);
    return rc;
}
