/* Running blocking calls off the loop (asyncio's run_in_executor), and name
 * resolution that never blocks the loop (asyncio's loop.getaddrinfo).
 *
 * An executor runs functions on the loop's worker threads, at most max_workers at
 * once; more wait in FIFO order. The function runs on another thread: it must not call tide
 * (except tide_loop_call_soon_threadsafe) and what it touches must stay valid until
 * it has returned. Completions come back on the loop's thread. */
#ifndef TIDE_EXECUTOR_H
#define TIDE_EXECUTOR_H

#include "errno.h"
#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A pool of worker threads running blocking functions for one loop (opaque; made by
 * tide_executor_new, freed by tide_executor_free). */
typedef struct tide_executor tide_executor_t;

/* A blocking function for a worker thread; its return value is handed back. */
typedef int (*tide_executor_fn)(void *arg);

/* Completion: status is what fn returned, or TIDE_ECANCELLED when fn never ran (the
 * executor was freed first). */
typedef void (*tide_executor_cb)(tide_executor_t *ex, int status, void *arg);

/* Creates an executor that runs at most max_workers calls at once (0: 4). The calls run
 * on the loop's worker pool, which name resolution shares: threads started on demand
 * (at most 64 per loop) and kept until tide_loop_close, so a call pays no thread start
 * once the pool has grown. Returns 0, TIDE_EINVAL or TIDE_ENOMEM. */
TIDE_EXTERN int tide_executor_new(tide_loop_t *loop, unsigned max_workers, tide_executor_t **ex);

/* Frees the executor: calls not started yet complete with TIDE_ECANCELLED; calls
 * running finish (their completions still come, with ex no longer usable) and the
 * memory goes after the last. NULL is a no-op. */
TIDE_EXTERN void tide_executor_free(tide_executor_t *ex);

/* Runs fn(arg) on a worker, then cb(ex, status, cb_arg) on the loop's thread.
 * Returns 0, TIDE_EINVAL or TIDE_ENOMEM (cb not called then). */
TIDE_EXTERN int tide_executor_run(tide_executor_t *ex, tide_executor_fn fn, void *arg,
                                  tide_executor_cb cb, void *cb_arg);

/* Task form: returns 0 with fn's return value in *result (may be NULL). A thread
 * cannot be interrupted, so a cancellation or deadline that arrives while fn runs is
 * answered once fn has returned: TIDE_ECANCELLED / TIDE_ETIMEOUT, with fn's return
 * value still stored. One arriving before fn started withdraws it (fn never runs).
 * Also TIDE_ENOTASK, TIDE_EINVAL, TIDE_ENOMEM, TIDE_ECANCELLED (executor freed). */
TIDE_EXTERN int tide_executor_run_await(tide_executor_t *ex, tide_executor_fn fn, void *arg,
                                        int *result);

/* ---- name resolution ------------------------------------------------------------------ */

struct addrinfo;

/* Completion of tide_loop_getaddrinfo: 0 and a list the callee owns (free it with
 * freeaddrinfo), or a negative code (TIDE_EAI_*, ...) and NULL. */
typedef void (*tide_getaddrinfo_cb)(tide_loop_t *loop, int status, struct addrinfo *res, void *arg);

/* getaddrinfo(3) on a worker thread (a literal address is answered without one);
 * hints may be NULL (any family, any socket type). cb runs on a later iteration.
 * Returns 0, TIDE_EINVAL (no host and no service), TIDE_ENOMEM, TIDE_EAGAIN. */
TIDE_EXTERN int tide_loop_getaddrinfo(tide_loop_t *loop, const char *host, const char *service,
                                      const struct addrinfo *hints, tide_getaddrinfo_cb cb,
                                      void *arg);

/* Task form: returns 0 with the list in *res (free it with freeaddrinfo), or the
 * resolver's code; TIDE_ECANCELLED / TIDE_ETIMEOUT abandon the lookup at once (its
 * thread's result is dropped). Also TIDE_ENOTASK, TIDE_EINVAL. */
TIDE_EXTERN int tide_loop_getaddrinfo_await(tide_loop_t *loop, const char *host,
                                            const char *service, const struct addrinfo *hints,
                                            struct addrinfo **res);

#ifdef __cplusplus
}
#endif
#endif
