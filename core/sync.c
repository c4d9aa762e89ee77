/* Event, Lock, Semaphore (bounded or not) and Condition, on the wait records of
 * core/wait.c, so the callback and task forms share every rule.
 *
 * Hand-off: a release gives the lock or the permit straight to the first waiter
 * (the lock stays locked, the semaphore's value unchanged), so the queue is served
 * strictly in order and a waiter that was served keeps what it got even if it is
 * cancelled before it resumes; one cancelled before being served just leaves the
 * queue. Invariants: a lock with waiters is locked; a semaphore with waiters has
 * value 0.
 *
 * A condition's waiter is first on the condition's list; notify moves the same
 * record to the lock's queue, where the lock's hand-off completes it. The status a
 * record carries into the lock queue (0, or TIDE_ECANCELLED for a callback wait that
 * was withdrawn) is the one it is completed with when the lock reaches it.
 *
 * Loop thread only. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/core_int.h"

/* What every object here starts with: its registration, loop and waiters. */
typedef struct waitable {
    tide__resource res;
    tide_loop_t *loop;
    tide__queue waiters;
} waitable;

static int obj_new(tide_loop_t *loop, void **out, size_t size,
                   void (*describe)(const tide__resource *, char *, size_t)) {
    if (out == NULL)
        return TIDE_EINVAL;
    *out = NULL;
    if (loop == NULL)
        return TIDE_EINVAL;
    waitable *b = calloc(1, size);
    if (b == NULL)
        return TIDE_ENOMEM;
    b->loop = loop;
    tide__queue_init(&b->waiters);
    tide__loop_register_passive(loop, &b->res, describe);
    *out = b;
    return 0;
}

static void obj_free(waitable *b) {
    tide__wait_complete_all(&b->waiters, TIDE_ECLOSED);
    tide__loop_unregister(b->loop, &b->res);
    free(b);
}

/* An object's base, NULL for NULL (its first member). */
#define BASE(o) ((o) != NULL ? &(o)->b : NULL)

/* Task form prologue: 0, or the code to return at once. */
static int task_check(const waitable *b) {
    if (b == NULL)
        return tide_task_current() != NULL ? TIDE_EINVAL : TIDE_ENOTASK;
    return tide__in_task(b->loop);
}

/* Task form: queues a record in this frame on b and waits for it. */
static int park(waitable *b) {
    tide_wait_t w;
    tide__wait_init_task(&w, b->loop, b, NULL);
    tide__queue_insert_tail(&b->waiters, &w.node);
    return tide__wait_await(&w);
}

/* Callback form: a record for cb, served at once when take(b) succeeds (it takes
 * what the waiter asked for), else queued on b. take runs only once the record
 * exists, so a failed allocation takes nothing. */
static int start_cb(waitable *b, bool (*take)(waitable *b), tide_wait_t **wait,
                    void (*deliver)(tide_wait_t *), void (*cb)(void), void *arg,
                    tide_wait_t **out) {
    if (wait != NULL)
        *wait = NULL;
    if (b == NULL || cb == NULL)
        return TIDE_EINVAL;
    tide_wait_t *w = tide__wait_new_cb(b->loop, b, deliver, NULL, cb, arg);
    if (w == NULL)
        return TIDE_ENOMEM;
    if (take != NULL && take(b))
        tide__wait_complete(w, 0);
    else
        tide__queue_insert_tail(&b->waiters, &w->node);
    if (wait != NULL)
        *wait = w;
    if (out != NULL)
        *out = w;
    return 0;
}

/* ---- Event ------------------------------------------------------------------------- */

struct tide_event {
    waitable b;
    bool set;
};

static void event_describe(const tide__resource *res, char *buf, size_t size) {
    const tide_event_t *e = TIDE__QUEUE_DATA(res, tide_event_t, b.res);
    snprintf(buf, size, "event %p (%s)", (const void *)e, e->set ? "set" : "clear");
}

int tide_event_new(tide_loop_t *loop, tide_event_t **event) {
    return obj_new(loop, (void **)event, sizeof(tide_event_t), event_describe);
}

void tide_event_free(tide_event_t *e) {
    if (e != NULL)
        obj_free(&e->b);
}

void tide_event_set(tide_event_t *e) {
    if (e == NULL || e->set)
        return;
    e->set = true;
    tide__wait_complete_all(&e->b.waiters, 0);
}

void tide_event_clear(tide_event_t *e) {
    if (e != NULL)
        e->set = false;
}

bool tide_event_is_set(const tide_event_t *e) { return e != NULL && e->set; }

static bool event_take(waitable *b) { return ((tide_event_t *)b)->set; }

static void event_deliver(tide_wait_t *w) {
    ((tide_event_cb)w->user_cb)(w->obj, w->status, w->user_arg);
}

int tide_event_wait(tide_event_t *e, tide_wait_t **wait, tide_event_cb cb, void *arg) {
    return start_cb(BASE(e), event_take, wait, event_deliver, (void (*)(void))cb, arg, NULL);
}

int tide_event_wait_await(tide_event_t *e) {
    int rc = task_check(BASE(e));
    if (rc != 0 || e->set)
        return rc;
    return park(&e->b);
}

/* ---- Lock -------------------------------------------------------------------------- */

struct tide_lock {
    waitable b;
    bool locked;
};

static void lock_describe(const tide__resource *res, char *buf, size_t size) {
    const tide_lock_t *l = TIDE__QUEUE_DATA(res, tide_lock_t, b.res);
    snprintf(buf, size, "lock %p (%s)", (const void *)l, l->locked ? "locked" : "unlocked");
}

int tide_lock_new(tide_loop_t *loop, tide_lock_t **lock) {
    return obj_new(loop, (void **)lock, sizeof(tide_lock_t), lock_describe);
}

void tide_lock_free(tide_lock_t *l) {
    if (l != NULL)
        obj_free(&l->b);
}

/* Takes the lock for w at once when it is free, else queues w; when the lock reaches
 * w, w completes with the status it carries. */
static void lock_enqueue(tide_lock_t *l, tide_wait_t *w) {
    if (!l->locked) {
        l->locked = true;
        tide__wait_complete(w, w->status);
    } else {
        tide__queue_insert_tail(&l->b.waiters, &w->node);
    }
}

/* Takes the lock now if it is free: a free lock has no waiters. */
static bool lock_take(tide_lock_t *l) {
    if (l->locked)
        return false;
    l->locked = true;
    return true;
}

static bool lock_take_base(waitable *b) { return lock_take((tide_lock_t *)b); }

static void lock_deliver(tide_wait_t *w) {
    ((tide_lock_cb)w->user_cb)(w->obj, w->status, w->user_arg);
}

int tide_lock_acquire(tide_lock_t *l, tide_wait_t **wait, tide_lock_cb cb, void *arg) {
    return start_cb(BASE(l), lock_take_base, wait, lock_deliver, (void (*)(void))cb, arg, NULL);
}

/* Waits for the lock through a record that nothing interrupts (condition clean-up). */
static void lock_acquire_shielded(tide_lock_t *l) {
    if (lock_take(l))
        return;
    tide_wait_t w;
    tide__wait_init_task(&w, l->b.loop, l, NULL);
    tide__queue_insert_tail(&l->b.waiters, &w.node);
    tide__task_wait_shielded(&w.tw);
}

int tide_lock_acquire_await(tide_lock_t *l) {
    int rc = task_check(BASE(l));
    if (rc != 0 || lock_take(l))
        return rc;
    return park(&l->b);
}

int tide_lock_try_acquire(tide_lock_t *l) {
    if (l == NULL)
        return TIDE_EINVAL;
    return lock_take(l) ? 0 : TIDE_EBUSY;
}

int tide_lock_release(tide_lock_t *l) {
    if (l == NULL)
        return TIDE_EINVAL;
    if (!l->locked)
        return TIDE_EPERM;
    tide_wait_t *w = tide__wait_first(&l->b.waiters);
    if (w != NULL)
        tide__wait_complete(w, w->status); /* handed over: stays locked */
    else
        l->locked = false;
    return 0;
}

bool tide_lock_locked(const tide_lock_t *l) { return l != NULL && l->locked; }

/* ---- Semaphore --------------------------------------------------------------------- */

struct tide_semaphore {
    waitable b;
    unsigned value;
    unsigned initial;
    bool bounded;
};

static void sem_describe(const tide__resource *res, char *buf, size_t size) {
    const tide_semaphore_t *s = TIDE__QUEUE_DATA(res, tide_semaphore_t, b.res);
    snprintf(buf, size, "semaphore %p (value %u)", (const void *)s, s->value);
}

static int sem_new(tide_loop_t *loop, unsigned value, bool bounded, tide_semaphore_t **sem) {
    int rc = obj_new(loop, (void **)sem, sizeof(tide_semaphore_t), sem_describe);
    if (rc == 0) {
        (*sem)->value = (*sem)->initial = value;
        (*sem)->bounded = bounded;
    }
    return rc;
}

int tide_semaphore_new(tide_loop_t *loop, unsigned value, tide_semaphore_t **sem) {
    return sem_new(loop, value, false, sem);
}

int tide_bounded_semaphore_new(tide_loop_t *loop, unsigned value, tide_semaphore_t **sem) {
    return sem_new(loop, value, true, sem);
}

void tide_semaphore_free(tide_semaphore_t *s) {
    if (s != NULL)
        obj_free(&s->b);
}

static void sem_deliver(tide_wait_t *w) {
    ((tide_semaphore_cb)w->user_cb)(w->obj, w->status, w->user_arg);
}

/* Takes a permit when one is free and nobody is queued before us. */
static bool sem_take(tide_semaphore_t *s) {
    if (s->value == 0 || !tide__queue_empty(&s->b.waiters))
        return false;
    s->value--;
    return true;
}

static bool sem_take_base(waitable *b) { return sem_take((tide_semaphore_t *)b); }

int tide_semaphore_acquire(tide_semaphore_t *s, tide_wait_t **wait, tide_semaphore_cb cb,
                           void *arg) {
    return start_cb(BASE(s), sem_take_base, wait, sem_deliver, (void (*)(void))cb, arg, NULL);
}

int tide_semaphore_acquire_await(tide_semaphore_t *s) {
    int rc = task_check(BASE(s));
    if (rc != 0 || sem_take(s))
        return rc;
    return park(&s->b);
}

int tide_semaphore_try_acquire(tide_semaphore_t *s) {
    if (s == NULL)
        return TIDE_EINVAL;
    return sem_take(s) ? 0 : TIDE_EBUSY;
}

int tide_semaphore_release(tide_semaphore_t *s) {
    if (s == NULL)
        return TIDE_EINVAL;
    tide_wait_t *w = tide__wait_first(&s->b.waiters);
    if (w != NULL) {
        tide__wait_complete(w, 0); /* the permit goes straight to it */
        return 0;
    }
    if (s->bounded ? s->value >= s->initial : s->value == UINT_MAX)
        return TIDE_ERANGE;
    s->value++;
    return 0;
}

bool tide_semaphore_locked(const tide_semaphore_t *s) {
    return s != NULL && (s->value == 0 || !tide__queue_empty(&s->b.waiters));
}

unsigned tide_semaphore_value(const tide_semaphore_t *s) { return s != NULL ? s->value : 0; }

/* ---- Condition --------------------------------------------------------------------- */

enum { COND_WAITING = 1, COND_NOTIFIED = 2 };

struct tide_condition {
    waitable b;
    tide_lock_t *lock;
    bool own_lock;
};

static void cond_describe(const tide__resource *res, char *buf, size_t size) {
    snprintf(buf, size, "condition %p",
             (const void *)TIDE__QUEUE_DATA(res, tide_condition_t, b.res));
}

int tide_condition_new(tide_loop_t *loop, tide_lock_t *lock, tide_condition_t **cond) {
    if (lock != NULL && lock->b.loop != loop) {
        if (cond != NULL)
            *cond = NULL;
        return TIDE_EINVAL;
    }
    int rc = obj_new(loop, (void **)cond, sizeof(tide_condition_t), cond_describe);
    if (rc != 0)
        return rc;
    tide_condition_t *c = *cond;
    if (lock == NULL) {
        rc = tide_lock_new(loop, &lock);
        if (rc != 0) {
            obj_free(&c->b);
            *cond = NULL;
            return rc;
        }
        c->own_lock = true;
    }
    c->lock = lock;
    return 0;
}

void tide_condition_free(tide_condition_t *c) {
    if (c == NULL)
        return;
    if (c->own_lock)
        tide_lock_free(c->lock);
    obj_free(&c->b);
}

tide_lock_t *tide_condition_lock(tide_condition_t *c) { return c != NULL ? c->lock : NULL; }

/* Moves up to n waiters to the lock's queue; they complete once the lock reaches them. */
static int cond_notify(tide_condition_t *c, size_t n) {
    int woken = 0;
    tide_wait_t *w;
    while (n > 0 && (w = tide__wait_first(&c->b.waiters)) != NULL) {
        tide__wait_unlink(w);
        w->phase = COND_NOTIFIED;
        lock_enqueue(c->lock, w);
        woken++;
        n--;
    }
    return woken;
}

int tide_condition_notify(tide_condition_t *c, size_t n) {
    if (c == NULL)
        return TIDE_EINVAL;
    if (!c->lock->locked)
        return TIDE_EPERM;
    return cond_notify(c, n);
}

int tide_condition_notify_all(tide_condition_t *c) { return tide_condition_notify(c, SIZE_MAX); }

static void cond_deliver(tide_wait_t *w) {
    ((tide_condition_cb)w->user_cb)(w->obj, w->status, w->user_arg);
}

/* tide_wait_cancel on a callback wait: before a notify, it leaves the condition and
 * queues for the lock, to be called back holding it with TIDE_ECANCELLED; after a
 * notify it is too late (it was served). */
static int cond_cancel(tide_wait_t *w) {
    if (w->phase != COND_WAITING)
        return 0;
    tide_condition_t *c = w->obj;
    tide__wait_unlink(w);
    w->phase = COND_NOTIFIED;
    w->status = TIDE_ECANCELLED;
    lock_enqueue(c->lock, w);
    return 1;
}

int tide_condition_wait(tide_condition_t *c, tide_wait_t **wait, tide_condition_cb cb, void *arg) {
    if (c != NULL && !c->lock->locked)
        return TIDE_EPERM;
    tide_wait_t *w = NULL;
    int rc = start_cb(BASE(c), NULL, wait, cond_deliver, (void (*)(void))cb, arg, &w);
    if (rc != 0)
        return rc;
    w->cancel = cond_cancel;
    w->phase = COND_WAITING;
    tide_lock_release(c->lock);
    return 0;
}

/* A task stopped waiting (cancelled, deadline). Notified already: the notification
 * was meant for someone, so it goes to the next waiter (the lock is held by another
 * task then: this record was queued behind it). */
static void cond_withdraw(tide_wait_t *w) {
    tide_condition_t *c = w->obj;
    bool notified = w->phase == COND_NOTIFIED;
    tide__wait_unlink(w);
    if (notified)
        cond_notify(c, 1);
}

int tide_condition_wait_await(tide_condition_t *c) {
    int rc = task_check(BASE(c));
    if (rc != 0)
        return rc;
    if (!c->lock->locked)
        return TIDE_EPERM;
    /* The record joins the condition's list before the lock goes to the next task. */
    tide_wait_t w;
    tide__wait_init_task(&w, c->b.loop, c, cond_withdraw);
    w.phase = COND_WAITING;
    tide__queue_insert_tail(&c->b.waiters, &w.node);
    tide_lock_release(c->lock);
    rc = tide__wait_await(&w);
    /* asyncio re-acquires whatever happened; TIDE_ECLOSED: the condition is gone. */
    if (rc != 0 && rc != TIDE_ECLOSED)
        lock_acquire_shielded(c->lock);
    return rc;
}

int tide_condition_wait_for_await(tide_condition_t *c, bool (*pred)(void *arg), void *arg) {
    int rc = task_check(BASE(c));
    if (rc != 0)
        return rc;
    if (pred == NULL)
        return TIDE_EINVAL;
    while (!pred(arg)) {
        rc = tide_condition_wait_await(c);
        if (rc != 0)
            return rc;
    }
    return 0;
}
