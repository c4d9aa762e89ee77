/* Futures (asyncio.Future): a one-shot result, a status and a pointer, that callback
 * code completes and that tasks or callbacks wait on. The bridge between the two
 * styles: a callback sets the result, a task awaiting it resumes.
 *
 * A future belongs to its creator, who frees it with tide_future_free; until then it
 * is registered on its loop, and tide_loop_close() reports it (TIDE_EBUSY). The
 * pointer result is the user's: tide stores it and hands it back, never frees it.
 * Loop thread only. */
#ifndef TIDE_FUTURE_H
#define TIDE_FUTURE_H

#include <stdbool.h>

#include "errno.h"
#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A result that will be set later (opaque; made by tide_future_new, freed by
 * tide_future_free). */
typedef struct tide_future tide_future_t;

/* A done callback: status is 0 (set_result), the error given to set_error, or
 * TIDE_ECANCELLED; result is the pointer given to set_result (NULL otherwise). */
typedef void (*tide_future_cb)(tide_future_t *fut, int status, void *result, void *arg);

/* Creates a pending future on loop. Returns 0, TIDE_EINVAL or TIDE_ENOMEM. */
TIDE_EXTERN int tide_future_new(tide_loop_t *loop, tide_future_t **fut);

/* Frees the future. A pending one is cancelled first (waiting tasks resume with
 * TIDE_ECANCELLED, done callbacks run with it on a later iteration); the memory goes
 * once the done callbacks already due have run. Safe from a done callback. NULL is a
 * no-op. */
TIDE_EXTERN void tide_future_free(tide_future_t *fut);

/* Completes the future with status 0 and result. Returns 0, or TIDE_ESTATE when it is
 * already done (asyncio's InvalidStateError), TIDE_EINVAL for NULL. */
TIDE_EXTERN int tide_future_set_result(tide_future_t *fut, void *result);

/* Completes the future with err (negative). Returns 0, TIDE_ESTATE (already done) or
 * TIDE_EINVAL (NULL, or err >= 0). */
TIDE_EXTERN int tide_future_set_error(tide_future_t *fut, int err);

/* Completes a pending future with TIDE_ECANCELLED. Returns 1 when it did, 0 when the
 * future was already done, TIDE_EINVAL for NULL. */
TIDE_EXTERN int tide_future_cancel(tide_future_t *fut);

/* True once set_result, set_error or cancel completed it. */
TIDE_EXTERN bool tide_future_done(const tide_future_t *fut);

/* True when it was completed by tide_future_cancel (or a free while pending). */
TIDE_EXTERN bool tide_future_cancelled(const tide_future_t *fut);

/* A done future's status (0, the error, or TIDE_ECANCELLED), with its pointer in
 * *result (may be NULL). TIDE_ESTATE while pending. */
TIDE_EXTERN int tide_future_result(const tide_future_t *fut, void **result);

/* Calls cb(fut, status, result, arg) on a later loop iteration once the future is
 * done (also when it already is). Callbacks run in the order they were added.
 * Returns 0, TIDE_EINVAL or TIDE_ENOMEM. */
TIDE_EXTERN int tide_future_add_done_callback(tide_future_t *fut, tide_future_cb cb, void *arg);

/* Removes every pending (not yet called) registration of cb with arg. Returns how
 * many were removed. */
TIDE_EXTERN int tide_future_remove_done_callback(tide_future_t *fut, tide_future_cb cb, void *arg);

/* Inside a task: waits until the future is done and returns its status, with its
 * pointer in *result (may be NULL). When the caller is cancelled or its deadline
 * passes first it returns TIDE_ECANCELLED / TIDE_ETIMEOUT and the future stays
 * pending (unlike asyncio, awaiting does not cancel a future others may share: call
 * tide_future_cancel for that). Also TIDE_ENOTASK, TIDE_EINVAL (NULL or another
 * loop's future). */
TIDE_EXTERN int tide_future_await(tide_future_t *fut, void **result);

#ifdef __cplusplus
}
#endif
#endif
