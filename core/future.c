/* Futures: a one-shot status and pointer with a list of waiters (core/wait.c
 * records): tasks awaiting it and done callbacks, served in the order they came.
 *
 * Completing a future completes every record at once; callbacks are delivered from
 * the ready queue and tasks resume from it, so nothing runs inside set_result. A
 * future freed while deliveries are still queued stays allocated until the last one
 * has run (`deliveries` counts the callback records not yet delivered or removed).
 *
 * Loop thread only. */
#include <stdio.h>
#include <stdlib.h>

#include "core/core_int.h"

struct tide_future {
    tide__resource res;
    tide_loop_t *loop;
    tide__queue waiters;
    void *result;
    int status;
    unsigned deliveries;
    bool done;
    bool cancelled;
    bool free_requested;
};

static void describe(const tide__resource *res, char *buf, size_t size) {
    const tide_future_t *f = TIDE__QUEUE_DATA(res, tide_future_t, res);
    snprintf(buf, size, "future %p (%s)", (const void *)f, f->done ? "done" : "pending");
}

int tide_future_new(tide_loop_t *loop, tide_future_t **fut) {
    if (fut != NULL)
        *fut = NULL;
    if (loop == NULL || fut == NULL)
        return TIDE_EINVAL;
    tide_future_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return TIDE_ENOMEM;
    f->loop = loop;
    tide__queue_init(&f->waiters);
    tide__queue_init(&f->res.node);
    tide__loop_register_passive(loop, &f->res, describe);
    *fut = f;
    return 0;
}

static void complete(tide_future_t *f, int status, void *result) {
    f->done = true;
    f->status = status;
    f->result = status == 0 ? result : NULL;
    tide_wait_t *w;
    while ((w = tide__wait_first(&f->waiters)) != NULL) {
        w->item = f->result;
        tide__wait_complete(w, status);
    }
}

void tide_future_free(tide_future_t *f) {
    if (f == NULL || f->free_requested)
        return;
    if (!f->done) {
        f->cancelled = true;
        complete(f, TIDE_ECANCELLED, NULL);
    }
    f->free_requested = true;
    tide__loop_unregister(f->loop, &f->res);
    if (f->deliveries == 0)
        free(f);
}

int tide_future_set_result(tide_future_t *f, void *result) {
    if (f == NULL || f->free_requested)
        return TIDE_EINVAL;
    if (f->done)
        return TIDE_ESTATE;
    complete(f, 0, result);
    return 0;
}

int tide_future_set_error(tide_future_t *f, int err) {
    if (f == NULL || f->free_requested || err >= 0)
        return TIDE_EINVAL;
    if (f->done)
        return TIDE_ESTATE;
    complete(f, err, NULL);
    return 0;
}

int tide_future_cancel(tide_future_t *f) {
    if (f == NULL || f->free_requested)
        return TIDE_EINVAL;
    if (f->done)
        return 0;
    f->cancelled = true;
    complete(f, TIDE_ECANCELLED, NULL);
    return 1;
}

bool tide_future_done(const tide_future_t *f) { return f != NULL && f->done; }

bool tide_future_cancelled(const tide_future_t *f) { return f != NULL && f->cancelled; }

int tide_future_result(const tide_future_t *f, void **result) {
    if (result != NULL)
        *result = NULL;
    if (f == NULL)
        return TIDE_EINVAL;
    if (!f->done)
        return TIDE_ESTATE;
    if (result != NULL)
        *result = f->result;
    return f->status;
}

static void deliver(tide_wait_t *w) {
    tide_future_t *f = w->obj;
    ((tide_future_cb)w->user_cb)(f, w->status, w->item, w->user_arg);
    if (--f->deliveries == 0 && f->free_requested)
        free(f);
}

int tide_future_add_done_callback(tide_future_t *f, tide_future_cb cb, void *arg) {
    if (f == NULL || cb == NULL || f->free_requested)
        return TIDE_EINVAL;
    tide_wait_t *w = tide__wait_new_cb(f->loop, f, deliver, NULL, (void (*)(void))cb, arg);
    if (w == NULL)
        return TIDE_ENOMEM;
    f->deliveries++;
    if (f->done) {
        w->item = f->result;
        tide__wait_complete(w, f->status);
    } else {
        tide__queue_insert_tail(&f->waiters, &w->node);
    }
    return 0;
}

int tide_future_remove_done_callback(tide_future_t *f, tide_future_cb cb, void *arg) {
    if (f == NULL)
        return 0;
    int removed = 0;
    tide__queue *n = f->waiters.next;
    while (n != &f->waiters) {
        tide_wait_t *w = TIDE__QUEUE_DATA(n, tide_wait_t, node);
        n = n->next;
        if (!w->task_style && w->user_cb == (void (*)(void))cb && w->user_arg == arg) {
            tide__wait_unlink(w);
            free(w);
            f->deliveries--;
            removed++;
        }
    }
    return removed;
}

int tide_future_await(tide_future_t *f, void **result) {
    if (result != NULL)
        *result = NULL;
    if (f == NULL || f->free_requested)
        return tide_task_current() != NULL ? TIDE_EINVAL : TIDE_ENOTASK;
    int rc = tide__in_task(f->loop);
    if (rc != 0)
        return rc;
    if (f->done)
        return tide_future_result(f, result);
    tide_wait_t w;
    tide__wait_init_task(&w, f->loop, f, NULL);
    tide__queue_insert_tail(&f->waiters, &w.node);
    rc = tide__wait_await(&w);
    if (rc == 0 && result != NULL)
        *result = w.item;
    return rc;
}
