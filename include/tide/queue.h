/* Queues between tasks and callbacks (asyncio.Queue, LifoQueue, PriorityQueue):
 * bounded or unbounded, put/get that wait, non-waiting forms that say full or empty,
 * task_done/join, and shutdown (asyncio 3.13).
 *
 * Items are pointers that stay the user's: tide stores and hands them back, and
 * frees nothing unless the options name a free_item function (used for items a
 * queue drops: shutdown(immediate) and tide_queue_free).
 *
 * Waiting calls come in a callback form and a task form (_await), with the rules of
 * tide/sync.h: FIFO service, direct hand-off (a get that waits is given the next item
 * put; a put that waits is moved into the queue by the get that makes room), a
 * cancelled waiter never swallows an item or a slot meant for the next one, and a
 * waiter served before its cancellation arrived keeps what it got. A cancelled get
 * has taken nothing; a cancelled put has queued nothing (the item is still the
 * caller's).
 *
 * Loop thread only. */
#ifndef TIDE_QUEUE_H
#define TIDE_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

#include "errno.h"
#include "loop.h"
#include "sync.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A queue of pointers between tasks (opaque; tide_queue_new / tide_queue_free). */
typedef struct tide_queue tide_queue_t;

/* Which item a get takes. */
typedef enum tide_queue_kind {
    TIDE_QUEUE_FIFO = 0, /* asyncio.Queue */
    TIDE_QUEUE_LIFO,     /* asyncio.LifoQueue */
    TIDE_QUEUE_PRIORITY  /* asyncio.PriorityQueue: smallest first by compare */
} tide_queue_kind_t;

/* Options for tide_queue_new; zero-initialise, then set what you need. */
typedef struct tide_queue_options {
    size_t maxsize;         /* 0: unbounded */
    tide_queue_kind_t kind; /* default FIFO */
    /* PRIORITY: negative when a comes before b; equal items come out in the order
     * they were put (asyncio falls back to comparing the items). */
    int (*compare)(const void *a, const void *b);
    /* Called on items the queue drops; NULL: dropped items are simply forgotten. */
    void (*free_item)(void *item);
} tide_queue_options_t;

/* Completions of the callback forms of put, get (item is the item taken, now the
 * caller's) and join: status 0, TIDE_ECANCELLED or TIDE_EQUEUE_SHUTDOWN. */
typedef void (*tide_queue_put_cb)(tide_queue_t *queue, int status, void *arg);
typedef void (*tide_queue_get_cb)(tide_queue_t *queue, int status, void *item, void *arg);
typedef void (*tide_queue_join_cb)(tide_queue_t *queue, int status, void *arg);

/* Creates a queue (options may be NULL: unbounded FIFO). Returns 0, TIDE_ENOMEM, or
 * TIDE_EINVAL (PRIORITY without compare). */
TIDE_EXTERN int tide_queue_new(tide_loop_t *loop, const tide_queue_options_t *options,
                               tide_queue_t **queue);

/* Frees the queue: waiters complete with TIDE_ECLOSED (a callback must not use the
 * queue then), items left go to free_item. NULL is a no-op. */
TIDE_EXTERN void tide_queue_free(tide_queue_t *queue);

/* Puts item, waiting while the queue is full; cb(queue, status, arg) with 0 once it is
 * in the queue, TIDE_EQUEUE_SHUTDOWN when the queue was shut down first, or
 * TIDE_ECANCELLED (tide_wait_cancel). Returns 0, TIDE_EQUEUE_SHUTDOWN, TIDE_EINVAL,
 * TIDE_ENOMEM (cb not called then). */
TIDE_EXTERN int tide_queue_put(tide_queue_t *queue, void *item, tide_wait_t **wait,
                               tide_queue_put_cb cb, void *arg);
/* Task form: returns 0 once item is in the queue, or TIDE_EQUEUE_SHUTDOWN,
 * TIDE_ECANCELLED, TIDE_ETIMEOUT, TIDE_ENOTASK, TIDE_EINVAL. */
TIDE_EXTERN int tide_queue_put_await(tide_queue_t *queue, void *item);
/* Puts without waiting. Returns 0, TIDE_EQUEUE_FULL, TIDE_EQUEUE_SHUTDOWN, ENOMEM. */
TIDE_EXTERN int tide_queue_put_nowait(tide_queue_t *queue, void *item);

/* Takes the next item, waiting while the queue is empty: cb(queue, 0, item, arg), or
 * TIDE_EQUEUE_SHUTDOWN once the queue is shut down and empty, or TIDE_ECANCELLED.
 * Returns 0, TIDE_EQUEUE_SHUTDOWN, TIDE_EINVAL, TIDE_ENOMEM. */
TIDE_EXTERN int tide_queue_get(tide_queue_t *queue, tide_wait_t **wait, tide_queue_get_cb cb,
                               void *arg);
/* Task form: returns 0 with the item in *item, or TIDE_EQUEUE_SHUTDOWN,
 * TIDE_ECANCELLED, TIDE_ETIMEOUT, TIDE_ENOTASK, TIDE_EINVAL (*item is NULL then). */
TIDE_EXTERN int tide_queue_get_await(tide_queue_t *queue, void **item);
/* Takes an item without waiting. Returns 0, TIDE_EQUEUE_EMPTY, or TIDE_EQUEUE_SHUTDOWN
 * (shut down and empty). */
TIDE_EXTERN int tide_queue_get_nowait(tide_queue_t *queue, void **item);

/* Marks one item taken earlier as processed. Returns 0, or TIDE_EINVAL when called
 * more times than items were put (asyncio's ValueError). */
TIDE_EXTERN int tide_queue_task_done(tide_queue_t *queue);
/* Waits until every item put has been marked done: cb(queue, 0, arg). Returns 0,
 * TIDE_EINVAL, TIDE_ENOMEM. */
TIDE_EXTERN int tide_queue_join(tide_queue_t *queue, tide_wait_t **wait, tide_queue_join_cb cb,
                                void *arg);
/* Task form of tide_queue_join. */
TIDE_EXTERN int tide_queue_join_await(tide_queue_t *queue);

/* Shuts the queue down (asyncio 3.13): puts fail with TIDE_EQUEUE_SHUTDOWN at once,
 * waiting puts too; gets drain what is left, then fail with it. With immediate, the
 * items left are dropped (counted as done, given to free_item) and every get fails
 * at once. Idempotent. */
TIDE_EXTERN void tide_queue_shutdown(tide_queue_t *queue, bool immediate);

/* The number of items queued, the bound given at creation (0: unbounded), and
 * whether the queue holds no item. */
TIDE_EXTERN size_t tide_queue_size(const tide_queue_t *queue);
TIDE_EXTERN size_t tide_queue_maxsize(const tide_queue_t *queue);
TIDE_EXTERN bool tide_queue_empty(const tide_queue_t *queue);
/* True when bounded and at maxsize. */
TIDE_EXTERN bool tide_queue_full(const tide_queue_t *queue);
TIDE_EXTERN bool tide_queue_is_shutdown(const tide_queue_t *queue);

#ifdef __cplusplus
}
#endif
#endif
