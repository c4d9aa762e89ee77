/* An intrusive circular doubly linked list with a sentinel head (the shape of libuv's
 * uv__queue). A node not on any list points at itself, so "is it linked?" is cheap and
 * removing twice is harmless. Not thread-safe. */
#ifndef TIDE_CORE_QUEUE_H
#define TIDE_CORE_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct tide__queue {
    struct tide__queue *next;
    struct tide__queue *prev;
} tide__queue;

#define TIDE__QUEUE_DATA(ptr, type, field) ((type *)(void *)((char *)(ptr)-offsetof(type, field)))

static inline void tide__queue_init(tide__queue *q) { q->next = q->prev = q; }

static inline bool tide__queue_empty(const tide__queue *q) { return q->next == q; }

/* For a node: true while it is on a list. */
static inline bool tide__queue_linked(const tide__queue *n) { return n->next != n; }

static inline tide__queue *tide__queue_head(const tide__queue *q) { return q->next; }

static inline void tide__queue_insert_tail(tide__queue *q, tide__queue *n) {
    n->next = q;
    n->prev = q->prev;
    n->prev->next = n;
    q->prev = n;
}

static inline void tide__queue_insert_head(tide__queue *q, tide__queue *n) {
    n->next = q->next;
    n->prev = q;
    n->next->prev = n;
    q->next = n;
}

static inline void tide__queue_remove(tide__queue *n) {
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = n;
}

/* Moves every node of `from` onto the empty list `to`; `from` becomes empty. */
static inline void tide__queue_move(tide__queue *from, tide__queue *to) {
    if (tide__queue_empty(from)) {
        tide__queue_init(to);
        return;
    }
    to->next = from->next;
    to->prev = from->prev;
    to->next->prev = to;
    to->prev->next = to;
    tide__queue_init(from);
}

#define TIDE__QUEUE_FOREACH(n, q) for ((n) = (q)->next; (n) != (q); (n) = (n)->next)

#endif
