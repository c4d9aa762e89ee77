/* Structured concurrency (asyncio.TaskGroup, gather, wait(FIRST_COMPLETED),
 * wait_for, timeout): running several tasks together and waiting for them.
 *
 * A task's result is its function's return value: negative means it failed, except
 * TIDE_ECANCELLED, which means it was cancelled (asyncio's CancelledError is not an
 * error of the group either). Every call that spawns takes tide_task_options_t
 * (stack size); NULL means the defaults.
 *
 * Loop thread only. */
#ifndef TIDE_TASKGROUP_H
#define TIDE_TASKGROUP_H

#include <stddef.h>

#include "errno.h"
#include "loop.h"
#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- task groups (asyncio.TaskGroup) ------------------------------------------------- */

/* asyncio.TaskGroup (opaque; tide_task_group_new / tide_task_group_free) and the
 * completion of tide_task_group_wait. */
typedef struct tide_task_group tide_task_group_t;
typedef void (*tide_task_group_cb)(tide_task_group_t *group, int status, void *arg);

/* Creates an empty group. The group owns (joins) every task spawned into it. Returns
 * 0, TIDE_EINVAL or TIDE_ENOMEM. */
TIDE_EXTERN int tide_task_group_new(tide_loop_t *loop, tide_task_group_t **group);

/* Spawns fn(arg) into the group (options may be NULL). Returns 0, TIDE_ENOMEM, or
 * TIDE_ECLOSED once the group has failed, was cancelled or finished waiting
 * (asyncio: "TaskGroup is shutting down"). */
TIDE_EXTERN int tide_task_group_spawn(tide_task_group_t *group, tide_task_fn fn, void *arg,
                                      const tide_task_options_t *options);

/* Cancels every task of the group and closes it to new ones; a later wait reports
 * TIDE_ECANCELLED unless a task had failed first. Returns 0 or TIDE_EINVAL. */
TIDE_EXTERN int tide_task_group_cancel(tide_task_group_t *group);

/* Calls cb(group, status, arg) on a later iteration once every task of the group has
 * finished; status is the first failure (the first task to return a negative code
 * other than TIDE_ECANCELLED: that failure cancelled the others), TIDE_ECANCELLED
 * when the group was cancelled, else 0. The group takes no new tasks afterwards.
 * Returns 0, TIDE_EINVAL or TIDE_ENOMEM. */
TIDE_EXTERN int tide_task_group_wait(tide_task_group_t *group, tide_task_group_cb cb, void *arg);

/* Task form of tide_task_group_wait (asyncio's leaving `async with TaskGroup()`).
 * When the caller is cancelled or its deadline passes first, the group's tasks are
 * cancelled and the call still waits for all of them, then returns TIDE_ECANCELLED /
 * TIDE_ETIMEOUT. Also TIDE_ENOTASK, TIDE_EINVAL. */
TIDE_EXTERN int tide_task_group_wait_await(tide_task_group_t *group);

/* Tasks of the group not finished yet. */
TIDE_EXTERN size_t tide_task_group_size(const tide_task_group_t *group);

/* Frees the group. Tasks still running are cancelled and the memory goes once the
 * last has finished. Waits still pending complete first (a task waiting resumes
 * normally; a wait callback still runs, but must not use the group pointer). NULL is
 * a no-op. */
TIDE_EXTERN void tide_task_group_free(tide_task_group_t *group);

/* ---- gather ---------------------------------------------------------------------------- */

/* Completion of tide_task_gather: status is the first negative result in argument
 * order, or 0. */
typedef void (*tide_gather_cb)(tide_loop_t *loop, int status, void *arg);

/* asyncio.gather(..., return_exceptions=True): spawns fns[i](args[i]) for i < n and,
 * once all have finished, stores every result in results[i] (in argument order) and
 * calls cb(loop, status, arg), status being the first negative result in argument
 * order or 0. One failure does not cancel the others. args may be NULL (all NULL);
 * results must stay valid until cb. Returns 0, TIDE_EINVAL, TIDE_ENOMEM (nothing
 * spawned then). */
TIDE_EXTERN int tide_task_gather(tide_loop_t *loop, size_t n, const tide_task_fn *fns,
                                 void *const *args, const tide_task_options_t *options,
                                 int *results, tide_gather_cb cb, void *arg);

/* Task form of tide_task_gather. When the caller is cancelled or its deadline passes,
 * the gathered tasks are cancelled and waited for, then TIDE_ECANCELLED /
 * TIDE_ETIMEOUT is returned (results are filled all the same). */
TIDE_EXTERN int tide_task_gather_await(size_t n, const tide_task_fn *fns, void *const *args,
                                       const tide_task_options_t *options, int *results);

/* ---- waiting for the first of several ------------------------------------------------- */

/* Completion of tide_task_wait_first: index and result are the finished task's. */
typedef void (*tide_wait_first_cb)(tide_loop_t *loop, int status, size_t index, int result,
                                   void *arg);

/* asyncio.wait(tasks, return_when=FIRST_COMPLETED): waits until one of the caller's n
 * tasks (not joined, not detached) has finished. That task is released as by a join
 * (tasks[index] is gone; its result is reported); the others stay the caller's, to
 * join, cancel or wait on again. One already finished is taken at once (the lowest
 * index). Callback form: cb(loop, 0, index, result, arg) on a later iteration.
 * Returns 0, TIDE_EINVAL (n == 0, NULL, a task joined already), TIDE_ENOMEM. */
TIDE_EXTERN int tide_task_wait_first(tide_task_t *const *tasks, size_t n, tide_wait_first_cb cb,
                                     void *arg);

/* Task form: returns 0 with *index and *result (either may be NULL), or
 * TIDE_ECANCELLED / TIDE_ETIMEOUT with every task still the caller's, TIDE_ENOTASK,
 * TIDE_EINVAL, TIDE_ENOMEM. */
TIDE_EXTERN int tide_task_wait_first_await(tide_task_t *const *tasks, size_t n, size_t *index,
                                           int *result);

/* ---- timeouts -------------------------------------------------------------------------- */

/* asyncio.wait_for(task, timeout): waits up to seconds of loop time for the task to
 * finish, then joins it (its result in *result, may be NULL) and returns 0. When the
 * time runs out, the task is cancelled and waited for (it is joined all the same)
 * and TIDE_ETIMEOUT is returned; a cancellation of the caller does the same and
 * returns TIDE_ECANCELLED. Also TIDE_ENOTASK, TIDE_EINVAL, TIDE_EBUSY (joined). */
TIDE_EXTERN int tide_task_wait_for_await(tide_task_t *task, double seconds, int *result);

/* asyncio.timeout(seconds): runs fn(arg) inside the calling task under a deadline
 * scope seconds from now, so every blocking call in it returns TIDE_ETIMEOUT once
 * the time is up, and returns what fn returned. Returns TIDE_ENOTASK outside a task,
 * TIDE_EINVAL (NaN, NULL fn), TIDE_ENOMEM. */
TIDE_EXTERN int tide_task_timeout(double seconds, tide_task_fn fn, void *arg);

#ifdef __cplusplus
}
#endif
#endif
