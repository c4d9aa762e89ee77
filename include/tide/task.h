/* Tasks: stackful coroutines scheduled by a tide loop, for code that reads like its
 * asyncio original (open, write, drain, read until EOF, close, wait until closed).
 *
 * A task runs on its loop's thread, only from inside the loop (tide_loop_run or
 * tide_loop_advance), and gives the loop back only inside tide's blocking calls:
 * tide_task_sleep, tide_task_yield, tide_task_join_await and the *_await forms of the
 * stream calls. Those calls return TIDE_ENOTASK when made outside a task.
 *
 * Lifetime: a tide_task_t stays valid until it has finished and was released, either
 * by a join (after the join callback returns, or once tide_task_join_await returned
 * 0) or by tide_task_detach. Release every task exactly once. While a task has not
 * finished, or its join callback is still pending, it keeps TIDE_RUN_DEFAULT running
 * and tide_loop_close() reports it and returns TIDE_EBUSY.
 *
 * Cancellation and deadlines never unwind a task: the blocking call returns
 * TIDE_ECANCELLED or TIDE_ETIMEOUT and the task's own code decides what to do.
 *
 * Each task has its own stack: mmap'd, with a guard page below it so that an
 * overflow faults instead of corrupting memory. Stack pages cost memory only once
 * touched, so a large virtual size is cheap. The default is 256 KiB; locals count
 * against it, including buffers handed to await calls (tide_reader_readline_await
 * needs the reader's limit + 1 bytes, 64 KiB + 1 by default): put large buffers on
 * the heap, or raise stack_size.
 *
 * Overflow: when the first task is spawned, tide installs (once per process) a
 * SIGSEGV and SIGBUS handler, and gives each thread that runs tasks an alternate
 * signal stack unless it already has one. A fault of the running task's stack prints
 *   tide: task 0x... (function 0x...) overflowed its stack of N bytes (fault at
 *   0x...); give it a larger stack_size in tide_task_options_t
 * on stderr, then tide restores the disposition it found, so the process dies by
 * SIGSEGV (with a core dump) as it would have, or that handler runs. Every other
 * fault goes to the handler installed before tide's, which stays in charge of it; a
 * handler installed after tide's must call tide's for the report to appear. A frame
 * larger than a page can step over the guard page into other memory: build with
 * -fstack-clash-protection to make every such frame touch it. */
#ifndef TIDE_TASK_H
#define TIDE_TASK_H

#include <stdbool.h>
#include <stddef.h>

#include "errno.h"
#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A task: a coroutine on its own stack, run by the loop (opaque; see
 * tide_task_spawn for who frees it). */
typedef struct tide_task tide_task_t;

/* A task's body. Its return value becomes the task's result. */
typedef int (*tide_task_fn)(void *arg);

/* Completion of tide_task_join: result is what the task's function returned, or
 * TIDE_ECANCELLED when the task was cancelled before it started. The task is freed
 * when the callback returns. */
typedef void (*tide_task_join_cb)(tide_task_t *task, int result, void *arg);

/* The stack size when the options leave it at 0 (virtual; RSS grows as it is used). */
#define TIDE_TASK_DEFAULT_STACK_SIZE ((size_t)256 * 1024)
/* Smaller requested stacks are raised to this. */
#define TIDE_TASK_MIN_STACK_SIZE ((size_t)16 * 1024)

/* Options for tide_task_spawn; zero-initialise, then set what you need. */
typedef struct tide_task_options {
    /* Usable stack in bytes, rounded up to whole pages (0: the default, 256 KiB;
     * at least TIDE_TASK_MIN_STACK_SIZE). Size it for the task's deepest call chain
     * plus its largest locals; an overflow is reported on stderr, then kills. */
    size_t stack_size;
} tide_task_options_t;

/* Creates a task that runs fn(arg) on loop; it starts on a later iteration, after
 * the callbacks already scheduled. options may be NULL. *task receives the task, to
 * be joined or detached; pass NULL to detach it at once. Returns 0, TIDE_EINVAL, or
 * TIDE_ENOMEM (no memory or no address space for the stack). */
TIDE_EXTERN int tide_task_spawn(tide_loop_t *loop, tide_task_fn fn, void *arg,
                                const tide_task_options_t *options, tide_task_t **task);

/* Calls cb(task, result, arg) on a later iteration once the task has finished (also
 * when it already has), then frees the task. A task is joined or detached once.
 * Returns 0, TIDE_EINVAL (NULL task or cb) or TIDE_EBUSY (already joined/detached). */
TIDE_EXTERN int tide_task_join(tide_task_t *task, tide_task_join_cb cb, void *arg);

/* Inside another task: waits until task finishes, stores its result in *result (may
 * be NULL) and frees it; returns 0. Returns at once when it has already finished.
 * Returns TIDE_ECANCELLED / TIDE_ETIMEOUT when the caller is cancelled or its deadline
 * passes first: task then keeps running and is still the caller's to join or detach.
 * Also TIDE_ENOTASK, TIDE_EINVAL (NULL, or the calling task itself), TIDE_EBUSY. */
TIDE_EXTERN int tide_task_join_await(tide_task_t *task, int *result);

/* Gives up the right to join: the task frees itself once it finishes (at once when
 * it already has). Returns 0 (also for NULL) or TIDE_EBUSY when it was joined. */
TIDE_EXTERN int tide_task_detach(tide_task_t *task);

/* Requests cancellation: the blocking call the task is in returns TIDE_ECANCELLED
 * (the pending operation is dropped); if it is not blocked, its next blocking call
 * does. A task that has not started yet never runs; its result is TIDE_ECANCELLED.
 * One request is delivered once. Returns 1 when requested, 0 when the task had
 * already finished, TIDE_EINVAL for NULL. */
TIDE_EXTERN int tide_task_cancel(tide_task_t *task);

/* The task running on this thread, or NULL outside a task. */
TIDE_EXTERN tide_task_t *tide_task_current(void);

/* The loop a task runs on. */
TIDE_EXTERN tide_loop_t *tide_task_get_loop(const tide_task_t *task);

/* True once the task's function has returned (or it was cancelled before starting). */
TIDE_EXTERN bool tide_task_is_done(const tide_task_t *task);

/* Suspends the calling task for seconds of loop time (<= 0 behaves as
 * tide_task_yield). Returns 0, TIDE_ECANCELLED, TIDE_ETIMEOUT (deadline), TIDE_ENOMEM
 * or TIDE_ENOTASK outside a task. */
TIDE_EXTERN int tide_task_sleep(double seconds);

/* Lets the callbacks and tasks already scheduled run, then resumes the caller
 * (FIFO, as asyncio's sleep(0)). Returns 0, or TIDE_ECANCELLED / TIDE_ETIMEOUT when a
 * cancellation is pending or the deadline has passed, or TIDE_ENOTASK. */
TIDE_EXTERN int tide_task_yield(void);

/* Opens a deadline scope for the calling task, seconds of loop time from now: once
 * it passes, the blocking call in progress and every later one return TIDE_ETIMEOUT
 * until the matching tide_task_deadline_pop. Scopes nest; the earliest deadline in
 * force governs. Returns 0, TIDE_EINVAL (NaN), TIDE_ENOMEM or TIDE_ENOTASK. */
TIDE_EXTERN int tide_task_deadline_push(double seconds);

/* Closes the innermost deadline scope of the calling task (no-op when none is open
 * or outside a task). */
TIDE_EXTERN void tide_task_deadline_pop(void);

/* asyncio's run_until_complete: spawns fn(arg) as a task, runs the loop until the
 * task has finished, and stores its result in *result (may be NULL). Other work on
 * the loop keeps running meanwhile and may still be open afterwards. Returns 0, or
 * TIDE_EBUSY (called from a callback of the same loop), TIDE_ENOMEM, TIDE_EINVAL. */
TIDE_EXTERN int tide_loop_run_until_complete(tide_loop_t *loop, tide_task_fn fn, void *arg,
                                             const tide_task_options_t *options, int *result);

#ifdef __cplusplus
}
#endif
#endif
