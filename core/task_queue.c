/* Queues between tasks and callbacks: FIFO (a ring), LIFO (a stack) and priority (a
 * binary heap ordered by the user's compare, then by arrival), with waiting getters,
 * putters and joiners on wait-record lists (core/wait.c).
 *
 * Hand-off keeps service FIFO: after anything enters the queue, waiting getters are
 * fed from it; after anything leaves it, waiting putters are moved in. So a getter
 * waits only while the queue is empty and a putter only while it is full, and an
 * item reaches a getter by being completed into its record: a getter cancelled
 * before that has taken nothing, one cancelled after it keeps the item.
 *
 * Loop thread only. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/core_int.h"

typedef struct entry {
    void *item;
    uint64_t seq;
} entry;

struct tide_queue {
    tide__resource res;
    tide_loop_t *loop;
    tide_queue_kind_t kind;
    int (*compare)(const void *a, const void *b);
    void (*free_item)(void *item);
    size_t maxsize;
    entry *buf;
    size_t cap, head, count;
    uint64_t seq;
    size_t unfinished;
    tide__queue getters, putters, joiners;
    bool shutdown;
};

static void describe(const tide__resource *res, char *buf, size_t size) {
    const tide_queue_t *q = TIDE__QUEUE_DATA(res, tide_queue_t, res);
    snprintf(buf, size, "queue %p (%zu items)", (const void *)q, q->count);
}

int tide_queue_new(tide_loop_t *loop, const tide_queue_options_t *o, tide_queue_t **queue) {
    if (queue != NULL)
        *queue = NULL;
    if (loop == NULL || queue == NULL)
        return TIDE_EINVAL;
    tide_queue_options_t defaults = {0};
    if (o == NULL)
        o = &defaults;
    if (o->kind > TIDE_QUEUE_PRIORITY || (o->kind == TIDE_QUEUE_PRIORITY && o->compare == NULL))
        return TIDE_EINVAL;
    tide_queue_t *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return TIDE_ENOMEM;
    q->loop = loop;
    q->kind = o->kind;
    q->compare = o->compare;
    q->free_item = o->free_item;
    q->maxsize = o->maxsize;
    tide__queue_init(&q->getters);
    tide__queue_init(&q->putters);
    tide__queue_init(&q->joiners);
    tide__loop_register_passive(loop, &q->res, describe);
    *queue = q;
    return 0;
}

/* ---- storage ----------------------------------------------------------------------- */

static bool is_full(const tide_queue_t *q) { return q->maxsize > 0 && q->count >= q->maxsize; }

static bool before(const tide_queue_t *q, const entry *a, const entry *b) {
    int c = q->compare(a->item, b->item);
    return c < 0 || (c == 0 && a->seq < b->seq);
}

static int grow(tide_queue_t *q) {
    if (q->count < q->cap)
        return 0;
    size_t cap = q->cap ? q->cap * 2 : 16;
    if (q->maxsize > 0 && cap > q->maxsize)
        cap = q->maxsize > q->cap ? q->maxsize : cap;
    entry *b = malloc(cap * sizeof(*b));
    if (b == NULL)
        return TIDE_ENOMEM;
    /* Linearise the ring (for LIFO and the heap head is always 0). */
    for (size_t i = 0; i < q->count; i++)
        b[i] = q->buf[(q->head + i) % q->cap];
    free(q->buf);
    q->buf = b;
    q->cap = cap;
    q->head = 0;
    return 0;
}

static int push(tide_queue_t *q, void *item) {
    int rc = grow(q);
    if (rc != 0)
        return rc;
    entry e = {item, q->seq++};
    if (q->kind == TIDE_QUEUE_PRIORITY) {
        size_t i = q->count++;
        while (i > 0) {
            size_t parent = (i - 1) / 2;
            if (!before(q, &e, &q->buf[parent]))
                break;
            q->buf[i] = q->buf[parent];
            i = parent;
        }
        q->buf[i] = e;
    } else {
        q->buf[(q->head + q->count) % q->cap] = e;
        q->count++;
    }
    return 0;
}

static void *pop(tide_queue_t *q) {
    entry e;
    switch (q->kind) {
    case TIDE_QUEUE_FIFO:
        e = q->buf[q->head];
        q->head = (q->head + 1) % q->cap;
        q->count--;
        break;
    case TIDE_QUEUE_LIFO:
        e = q->buf[(q->head + q->count - 1) % q->cap];
        q->count--;
        break;
    default: {
        e = q->buf[0];
        entry last = q->buf[--q->count];
        size_t i = 0;
        for (;;) {
            size_t child = 2 * i + 1;
            if (child >= q->count)
                break;
            if (child + 1 < q->count && before(q, &q->buf[child + 1], &q->buf[child]))
                child++;
            if (!before(q, &q->buf[child], &last))
                break;
            q->buf[i] = q->buf[child];
            i = child;
        }
        if (q->count > 0)
            q->buf[i] = last;
        break;
    }
    }
    return e.item;
}

/* ---- hand-off ---------------------------------------------------------------------- */

static void feed_getters(tide_queue_t *q) {
    tide_wait_t *g;
    while (q->count > 0 && (g = tide__wait_first(&q->getters)) != NULL) {
        g->item = pop(q);
        tide__wait_complete(g, 0);
    }
}

static void feed_putters(tide_queue_t *q) {
    tide_wait_t *p;
    while (!is_full(q) && (p = tide__wait_first(&q->putters)) != NULL) {
        if (push(q, p->item) != 0) {
            tide__wait_complete(p, TIDE_ENOMEM);
            continue;
        }
        q->unfinished++;
        tide__wait_complete(p, 0);
    }
    feed_getters(q);
}

/* Takes the next item, letting a waiting putter in behind it. */
static void *take(tide_queue_t *q) {
    void *item = pop(q);
    feed_putters(q);
    return item;
}

/* ---- put --------------------------------------------------------------------------- */

static void put_deliver(tide_wait_t *w) {
    ((tide_queue_put_cb)w->user_cb)(w->obj, w->status, w->user_arg);
}

int tide_queue_put_nowait(tide_queue_t *q, void *item) {
    if (q == NULL)
        return TIDE_EINVAL;
    if (q->shutdown)
        return TIDE_EQUEUE_SHUTDOWN;
    if (is_full(q))
        return TIDE_EQUEUE_FULL;
    int rc = push(q, item);
    if (rc != 0)
        return rc;
    q->unfinished++;
    feed_getters(q);
    return 0;
}

int tide_queue_put(tide_queue_t *q, void *item, tide_wait_t **wait, tide_queue_put_cb cb,
                   void *arg) {
    if (wait != NULL)
        *wait = NULL;
    if (q == NULL || cb == NULL)
        return TIDE_EINVAL;
    if (q->shutdown)
        return TIDE_EQUEUE_SHUTDOWN;
    tide_wait_t *w = tide__wait_new_cb(q->loop, q, put_deliver, NULL, (void (*)(void))cb, arg);
    if (w == NULL)
        return TIDE_ENOMEM;
    if (is_full(q)) {
        w->item = item;
        tide__queue_insert_tail(&q->putters, &w->node);
    } else {
        int rc = tide_queue_put_nowait(q, item);
        if (rc != 0) {
            free(w);
            return rc;
        }
        tide__wait_complete(w, 0);
    }
    if (wait != NULL)
        *wait = w;
    return 0;
}

int tide_queue_put_await(tide_queue_t *q, void *item) {
    if (q == NULL)
        return tide_task_current() != NULL ? TIDE_EINVAL : TIDE_ENOTASK;
    int rc = tide__in_task(q->loop);
    if (rc != 0)
        return rc;
    if (!is_full(q) || q->shutdown)
        return tide_queue_put_nowait(q, item);
    tide_wait_t w;
    tide__wait_init_task(&w, q->loop, q, NULL);
    w.item = item;
    tide__queue_insert_tail(&q->putters, &w.node);
    return tide__wait_await(&w);
}

/* ---- get --------------------------------------------------------------------------- */

static void get_deliver(tide_wait_t *w) {
    ((tide_queue_get_cb)w->user_cb)(w->obj, w->status, w->status == 0 ? w->item : NULL,
                                    w->user_arg);
}

int tide_queue_get_nowait(tide_queue_t *q, void **item) {
    if (item != NULL)
        *item = NULL;
    if (q == NULL)
        return TIDE_EINVAL;
    if (q->count == 0)
        return q->shutdown ? TIDE_EQUEUE_SHUTDOWN : TIDE_EQUEUE_EMPTY;
    void *it = take(q);
    if (item != NULL)
        *item = it;
    return 0;
}

int tide_queue_get(tide_queue_t *q, tide_wait_t **wait, tide_queue_get_cb cb, void *arg) {
    if (wait != NULL)
        *wait = NULL;
    if (q == NULL || cb == NULL)
        return TIDE_EINVAL;
    if (q->count == 0 && q->shutdown)
        return TIDE_EQUEUE_SHUTDOWN;
    tide_wait_t *w = tide__wait_new_cb(q->loop, q, get_deliver, NULL, (void (*)(void))cb, arg);
    if (w == NULL)
        return TIDE_ENOMEM;
    if (q->count > 0) {
        w->item = take(q);
        tide__wait_complete(w, 0);
    } else {
        tide__queue_insert_tail(&q->getters, &w->node);
    }
    if (wait != NULL)
        *wait = w;
    return 0;
}

int tide_queue_get_await(tide_queue_t *q, void **item) {
    if (item != NULL)
        *item = NULL;
    if (q == NULL)
        return tide_task_current() != NULL ? TIDE_EINVAL : TIDE_ENOTASK;
    int rc = tide__in_task(q->loop);
    if (rc != 0)
        return rc;
    if (q->count > 0 || q->shutdown)
        return tide_queue_get_nowait(q, item);
    tide_wait_t w;
    tide__wait_init_task(&w, q->loop, q, NULL);
    tide__queue_insert_tail(&q->getters, &w.node);
    rc = tide__wait_await(&w);
    if (rc == 0 && item != NULL)
        *item = w.item;
    return rc;
}

/* ---- task_done / join -------------------------------------------------------------- */

int tide_queue_task_done(tide_queue_t *q) {
    if (q == NULL || q->unfinished == 0)
        return TIDE_EINVAL;
    if (--q->unfinished == 0)
        tide__wait_complete_all(&q->joiners, 0);
    return 0;
}

static void join_deliver(tide_wait_t *w) {
    ((tide_queue_join_cb)w->user_cb)(w->obj, w->status, w->user_arg);
}

int tide_queue_join(tide_queue_t *q, tide_wait_t **wait, tide_queue_join_cb cb, void *arg) {
    if (wait != NULL)
        *wait = NULL;
    if (q == NULL || cb == NULL)
        return TIDE_EINVAL;
    tide_wait_t *w = tide__wait_new_cb(q->loop, q, join_deliver, NULL, (void (*)(void))cb, arg);
    if (w == NULL)
        return TIDE_ENOMEM;
    if (q->unfinished == 0)
        tide__wait_complete(w, 0);
    else
        tide__queue_insert_tail(&q->joiners, &w->node);
    if (wait != NULL)
        *wait = w;
    return 0;
}

int tide_queue_join_await(tide_queue_t *q) {
    if (q == NULL)
        return tide_task_current() != NULL ? TIDE_EINVAL : TIDE_ENOTASK;
    int rc = tide__in_task(q->loop);
    if (rc != 0 || q->unfinished == 0)
        return rc;
    tide_wait_t w;
    tide__wait_init_task(&w, q->loop, q, NULL);
    tide__queue_insert_tail(&q->joiners, &w.node);
    return tide__wait_await(&w);
}

/* ---- shutdown, free, state --------------------------------------------------------- */

static void drop_all(tide_queue_t *q) {
    while (q->count > 0) {
        void *item = pop(q);
        if (q->free_item != NULL)
            q->free_item(item);
        if (q->unfinished > 0)
            q->unfinished--;
    }
}

void tide_queue_shutdown(tide_queue_t *q, bool immediate) {
    if (q == NULL)
        return;
    q->shutdown = true;
    if (immediate) {
        drop_all(q);
        if (q->unfinished == 0)
            tide__wait_complete_all(&q->joiners, 0);
    }
    /* Waiting getters only wait on an empty queue: nothing is left for them. */
    tide__wait_complete_all(&q->getters, TIDE_EQUEUE_SHUTDOWN);
    tide__wait_complete_all(&q->putters, TIDE_EQUEUE_SHUTDOWN);
}

void tide_queue_free(tide_queue_t *q) {
    if (q == NULL)
        return;
    tide__wait_complete_all(&q->getters, TIDE_ECLOSED);
    tide__wait_complete_all(&q->putters, TIDE_ECLOSED);
    tide__wait_complete_all(&q->joiners, TIDE_ECLOSED);
    drop_all(q);
    tide__loop_unregister(q->loop, &q->res);
    free(q->buf);
    free(q);
}

size_t tide_queue_size(const tide_queue_t *q) { return q != NULL ? q->count : 0; }
size_t tide_queue_maxsize(const tide_queue_t *q) { return q != NULL ? q->maxsize : 0; }
bool tide_queue_empty(const tide_queue_t *q) { return q == NULL || q->count == 0; }
bool tide_queue_full(const tide_queue_t *q) { return q != NULL && is_full(q); }
bool tide_queue_is_shutdown(const tide_queue_t *q) { return q != NULL && q->shutdown; }
