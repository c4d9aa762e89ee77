/* Coordination between tasks and callbacks on one loop, with asyncio's semantics:
 * Event, Lock, Semaphore, BoundedSemaphore and Condition (asyncio.locks).
 *
 * Every waiting call has two forms that share one implementation:
 * - tide_<x>_<verb>(obj, ..., wait, cb, arg): the callback form. cb runs on a later
 *   loop iteration, never inside the call, also when nothing had to wait. When wait
 *   is not NULL, *wait receives a handle for tide_wait_cancel, valid until cb returns.
 *   A call that returns an error never calls cb.
 * - tide_<x>_<verb>_await(obj, ...): the task form, which suspends only the calling
 *   task and returns TIDE_ECANCELLED / TIDE_ETIMEOUT when the task is cancelled or its
 *   deadline passes first, having given up its place (nothing is held, nothing lost);
 *   TIDE_ENOTASK outside a task, TIDE_EINVAL for an object of another loop.
 *
 * Fairness: waiters are served first come, first served, and what is released is
 * handed to the first waiter directly, so a newcomer cannot overtake the queue. A
 * waiter that is cancelled before it was served leaves the queue, and the next one is
 * served instead; one cancelled after it was served keeps what it got (the call
 * returns success) and the cancellation is delivered at the task's next blocking
 * call. So a wake-up is never swallowed by a cancelled waiter (asyncio's Lock and
 * Semaphore once lost wake-ups exactly this way).
 *
 * Ownership: objects come from _new and go with _free; each is registered on its
 * loop, so tide_loop_close() reports one left unfreed. Freeing an object with waiters
 * completes them with TIDE_ECLOSED (a callback then must not use the object). None of
 * these objects is thread-safe: loop thread only. */
#ifndef TIDE_SYNC_H
#define TIDE_SYNC_H

#include <stdbool.h>
#include <stddef.h>

#include "errno.h"
#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A pending callback-form wait (on a lock, semaphore, event, condition or queue). */
typedef struct tide_wait tide_wait_t;

/* Withdraws a pending callback-form wait: its callback is called with TIDE_ECANCELLED
 * on a later iteration (for a condition, once the lock is held again). Returns 1 when
 * it was withdrawn, 0 when it had already been served (the callback then reports
 * success: nothing is lost), TIDE_EINVAL for NULL. */
TIDE_EXTERN int tide_wait_cancel(tide_wait_t *wait);

/* ---- Event (asyncio.Event) --------------------------------------------------------- */

/* asyncio.Event (opaque; tide_event_new / tide_event_free) and the completion of
 * its callback-form wait: status 0 or TIDE_ECANCELLED. */
typedef struct tide_event tide_event_t;
typedef void (*tide_event_cb)(tide_event_t *event, int status, void *arg);

/* Creates a cleared event. Returns 0, TIDE_EINVAL or TIDE_ENOMEM. */
TIDE_EXTERN int tide_event_new(tide_loop_t *loop, tide_event_t **event);
TIDE_EXTERN void tide_event_free(tide_event_t *event);
/* Sets the flag and wakes every waiter (they resume on a later iteration, in the
 * order they started waiting). */
TIDE_EXTERN void tide_event_set(tide_event_t *event);
/* Clears the flag; later waits wait again. Waiters already woken stay woken. */
TIDE_EXTERN void tide_event_clear(tide_event_t *event);
TIDE_EXTERN bool tide_event_is_set(const tide_event_t *event);
/* Waits until the flag is set (cb(event, 0, arg) at once when it already is).
 * Returns 0, TIDE_EINVAL or TIDE_ENOMEM. */
TIDE_EXTERN int tide_event_wait(tide_event_t *event, tide_wait_t **wait, tide_event_cb cb,
                                void *arg);
/* Task form: returns 0 once the flag is set, without suspending when it already is. */
TIDE_EXTERN int tide_event_wait_await(tide_event_t *event);

/* ---- Lock (asyncio.Lock) ----------------------------------------------------------- */

/* asyncio.Lock (opaque; tide_lock_new / tide_lock_free) and the completion of its
 * callback-form acquire: status 0 (the lock is held) or TIDE_ECANCELLED. */
typedef struct tide_lock tide_lock_t;
typedef void (*tide_lock_cb)(tide_lock_t *lock, int status, void *arg);

/* Creates an unlocked lock. Returns 0, TIDE_EINVAL or TIDE_ENOMEM. */
TIDE_EXTERN int tide_lock_new(tide_loop_t *loop, tide_lock_t **lock);
TIDE_EXTERN void tide_lock_free(tide_lock_t *lock);
/* Acquires the lock: cb(lock, 0, arg) once it is held by this request. The lock is not
 * owned by a task: whoever acquired it releases it. Returns 0, TIDE_EINVAL, ENOMEM. */
TIDE_EXTERN int tide_lock_acquire(tide_lock_t *lock, tide_wait_t **wait, tide_lock_cb cb,
                                  void *arg);
/* Task form: returns 0 with the lock held. */
TIDE_EXTERN int tide_lock_acquire_await(tide_lock_t *lock);
/* Takes the lock only if that needs no waiting. Returns 0 or TIDE_EBUSY. */
TIDE_EXTERN int tide_lock_try_acquire(tide_lock_t *lock);
/* Releases the lock, handing it to the first waiter if any. Returns 0, or TIDE_EPERM
 * when it was not locked (asyncio's RuntimeError). */
TIDE_EXTERN int tide_lock_release(tide_lock_t *lock);
TIDE_EXTERN bool tide_lock_locked(const tide_lock_t *lock);

/* ---- Semaphore and BoundedSemaphore ------------------------------------------------ */

/* asyncio.Semaphore and BoundedSemaphore (opaque; tide_semaphore_free) and the
 * completion of the callback-form acquire: status 0 or TIDE_ECANCELLED. */
typedef struct tide_semaphore tide_semaphore_t;
typedef void (*tide_semaphore_cb)(tide_semaphore_t *sem, int status, void *arg);

/* Creates a semaphore with value permits (asyncio.Semaphore). Returns 0, TIDE_EINVAL
 * or TIDE_ENOMEM. */
TIDE_EXTERN int tide_semaphore_new(tide_loop_t *loop, unsigned value, tide_semaphore_t **sem);
/* The same, bounded (asyncio.BoundedSemaphore): a release beyond the initial value
 * fails with TIDE_ERANGE. */
TIDE_EXTERN int tide_bounded_semaphore_new(tide_loop_t *loop, unsigned value,
                                           tide_semaphore_t **sem);
TIDE_EXTERN void tide_semaphore_free(tide_semaphore_t *sem);
/* Takes one permit: cb(sem, 0, arg) once it is this request's. Returns 0, EINVAL,
 * ENOMEM. */
TIDE_EXTERN int tide_semaphore_acquire(tide_semaphore_t *sem, tide_wait_t **wait,
                                       tide_semaphore_cb cb, void *arg);
/* Task form: returns 0 holding one permit. */
TIDE_EXTERN int tide_semaphore_acquire_await(tide_semaphore_t *sem);
/* Takes a permit only if that needs no waiting. Returns 0 or TIDE_EBUSY. */
TIDE_EXTERN int tide_semaphore_try_acquire(tide_semaphore_t *sem);
/* Gives one permit back, to the first waiter if any. Returns 0, or TIDE_ERANGE for a
 * bounded semaphore already at its initial value. */
TIDE_EXTERN int tide_semaphore_release(tide_semaphore_t *sem);
/* True when an acquire would wait (asyncio's locked()). */
TIDE_EXTERN bool tide_semaphore_locked(const tide_semaphore_t *sem);
/* Permits available now. */
TIDE_EXTERN unsigned tide_semaphore_value(const tide_semaphore_t *sem);

/* ---- Condition (asyncio.Condition) ------------------------------------------------- */

/* asyncio.Condition (opaque; tide_condition_free) and the completion of its
 * callback-form wait: status 0 or TIDE_ECANCELLED, the lock held again either way. */
typedef struct tide_condition tide_condition_t;
typedef void (*tide_condition_cb)(tide_condition_t *cond, int status, void *arg);

/* Creates a condition over lock, or over a lock of its own when lock is NULL (the
 * condition then frees it). A lock passed in stays the caller's and must outlive the
 * condition. Returns 0, TIDE_EINVAL or TIDE_ENOMEM. */
TIDE_EXTERN int tide_condition_new(tide_loop_t *loop, tide_lock_t *lock, tide_condition_t **cond);
TIDE_EXTERN void tide_condition_free(tide_condition_t *cond);
/* The condition's lock: acquire and release it with the tide_lock_* calls. */
TIDE_EXTERN tide_lock_t *tide_condition_lock(tide_condition_t *cond);
/* With the lock held: releases it, waits for a notify, then re-acquires it; cb runs
 * holding the lock again, with 0, or TIDE_ECANCELLED when the wait was withdrawn.
 * Returns 0, TIDE_EPERM (lock not held), TIDE_EINVAL or TIDE_ENOMEM. */
TIDE_EXTERN int tide_condition_wait(tide_condition_t *cond, tide_wait_t **wait,
                                    tide_condition_cb cb, void *arg);
/* Task form. Always returns holding the lock, also with TIDE_ECANCELLED or
 * TIDE_ETIMEOUT (asyncio re-acquires the same way); a notification that reached a
 * waiter which was cancelled before it resumed is passed on to the next waiter.
 * Returns TIDE_EPERM (lock not held), TIDE_ENOTASK or TIDE_EINVAL without waiting. */
TIDE_EXTERN int tide_condition_wait_await(tide_condition_t *cond);
/* Task form of asyncio's wait_for(predicate): waits until pred(arg) is true (checked
 * with the lock held, first before any wait). Returns 0 or what
 * tide_condition_wait_await returned; always holding the lock. */
TIDE_EXTERN int tide_condition_wait_for_await(tide_condition_t *cond, bool (*pred)(void *arg),
                                              void *arg);
/* Wakes up to n waiters, first come first served; the lock must be held. Returns the
 * number woken, or TIDE_EPERM when the lock is not held. */
TIDE_EXTERN int tide_condition_notify(tide_condition_t *cond, size_t n);
/* Wakes every waiter. Returns the number woken, or TIDE_EPERM. */
TIDE_EXTERN int tide_condition_notify_all(tide_condition_t *cond);

#ifdef __cplusplus
}
#endif
#endif
