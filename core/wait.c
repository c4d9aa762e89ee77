/* Wait records: the one mechanism behind every waiting call of the coordination
 * objects (futures, events, locks, semaphores, conditions, queues), in both styles.
 *
 * An object serves a waiter by unlinking its record and completing it. A task-style
 * record wakes its task (which resumes on a later iteration); a callback-style record
 * defers its delivery, so no user callback ever runs inside the call that served it.
 * Once completed, a record is off every list: a cancellation that arrives later finds
 * nothing to withdraw, and the waiter keeps what it was given.
 *
 * Loop thread only. */
#include <stdlib.h>

#include "core/core_int.h"

void tide__wait_unlink(tide_wait_t *w) {
    if (tide__queue_linked(&w->node))
        tide__queue_remove(&w->node);
}

static void task_abandon(tide__waiter *tw) {
    tide_wait_t *w = (tide_wait_t *)(void *)tw;
    w->completed = true;
    w->withdraw(w);
}

void tide__wait_init_task(tide_wait_t *w, tide_loop_t *loop, void *obj,
                          void (*withdraw)(tide_wait_t *w)) {
    *w = (tide_wait_t){.loop = loop, .obj = obj, .task_style = true};
    w->withdraw = withdraw != NULL ? withdraw : tide__wait_unlink;
    tide__waiter_init(&w->tw, task_abandon);
    tide__queue_init(&w->node);
}

static void on_deliver(tide__call *call) {
    tide_wait_t *w = TIDE__QUEUE_DATA(call, tide_wait_t, call);
    double start = tide__loop_debug_enter(w->loop);
    w->deliver(w);
    tide__loop_debug_leave(w->loop, start, "a wait callback");
    free(w);
}

tide_wait_t *tide__wait_new_cb(tide_loop_t *loop, void *obj, void (*deliver)(tide_wait_t *w),
                               int (*cancel)(tide_wait_t *w), void (*user_cb)(void),
                               void *user_arg) {
    tide_wait_t *w = malloc(sizeof(*w));
    if (w == NULL)
        return NULL;
    *w = (tide_wait_t){.loop = loop,
                       .obj = obj,
                       .withdraw = tide__wait_unlink,
                       .cancel = cancel,
                       .deliver = deliver,
                       .user_cb = user_cb,
                       .user_arg = user_arg};
    tide__queue_init(&w->node);
    tide__call_init(&w->call, on_deliver);
    return w;
}

void tide__wait_complete(tide_wait_t *w, int status) {
    if (w->completed)
        return;
    tide__wait_unlink(w);
    w->completed = true;
    w->status = status;
    if (w->task_style)
        tide__task_wake(&w->tw, status);
    else
        tide__loop_defer(w->loop, &w->call);
}

void tide__wait_complete_all(tide__queue *list, int status) {
    tide_wait_t *w;
    while ((w = tide__wait_first(list)) != NULL)
        tide__wait_complete(w, status);
}

int tide__wait_await(tide_wait_t *w) {
    int rc = tide__task_wait(&w->tw);
    return rc;
}

int tide_wait_cancel(tide_wait_t *w) {
    if (w == NULL || w->task_style)
        return TIDE_EINVAL;
    if (w->completed)
        return 0;
    if (w->cancel != NULL)
        return w->cancel(w);
    tide__wait_complete(w, TIDE_ECANCELLED);
    return 1;
}
