/* The event loop: tide's wrapper around a libev loop.
 * A loop belongs to one thread; every tide call on it and on the objects made from it
 * happens on that thread, except tide_loop_call_soon_threadsafe(). */
#ifndef TIDE_LOOP_H
#define TIDE_LOOP_H

#include <stdbool.h>
#include <stddef.h>

#include "errno.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The event loop (opaque; tide_loop_new / tide_loop_close). */
typedef struct tide_loop tide_loop_t;
/* A scheduled callback (opaque; owned by the loop, see tide_loop_call_soon). */
typedef struct tide_handle tide_handle_t;

/* A callback scheduled with call_soon, call_later, call_at or call_soon_threadsafe. */
typedef void (*tide_call_cb)(tide_loop_t *loop, void *arg);

/* A signal handler; runs on the loop's thread, never inside the signal context. */
typedef void (*tide_signal_cb)(tide_loop_t *loop, int signum, void *arg);

/* The severity of a logged message (the values of Python's logging levels). */
typedef enum tide_log_level {
    TIDE_LOG_DEBUG = 10,
    TIDE_LOG_INFO = 20,
    TIDE_LOG_WARNING = 30,
    TIDE_LOG_ERROR = 40
} tide_log_level_t;

/* Receives every message tide logs for a loop (slow callbacks, resources left open,
 * accept back-off, ...). msg is lent for the call. */
typedef void (*tide_log_cb)(tide_loop_t *loop, tide_log_level_t level, const char *msg,
                            void *arg);

/* How long tide_loop_run() runs. */
typedef enum tide_run_mode {
    /* Run until tide_loop_stop() or until nothing is pending (no open transport,
     * server, connect, timer or scheduled callback). */
    TIDE_RUN_DEFAULT = 0,
    /* Run one iteration, blocking for events if nothing is ready. */
    TIDE_RUN_ONCE = 1,
    /* Run one iteration without blocking. */
    TIDE_RUN_NOWAIT = 2,
    /* Run until tide_loop_stop(), even when nothing is pending (asyncio's run_forever). */
    TIDE_RUN_FOREVER = 3
} tide_run_mode_t;

/* Creates a loop over a new libev loop. Returns 0 and sets *loop, or TIDE_ENOMEM.
 * Close it with tide_loop_close(). Attaching to an existing libev loop is in tide/ev.h. */
TIDE_EXTERN int tide_loop_new(tide_loop_t **loop);

/* Frees the loop. Returns 0 when it was freed, or TIDE_EBUSY (and logs each item)
 * when transports, servers, connects or tasks are still open; the loop then stays
 * usable, so run it until they finish and close again. Callbacks still scheduled
 * (call_soon, call_later, thread-safe) are dropped without running, as in asyncio.
 * tide_loop_close(NULL) is 0. */
TIDE_EXTERN int tide_loop_close(tide_loop_t *loop);

/* Runs the loop in the given mode. Returns 0, or TIDE_EBUSY when called re-entrantly
 * from a callback of the same loop, or TIDE_EINVAL for an unknown mode. */
TIDE_EXTERN int tide_loop_run(tide_loop_t *loop, tide_run_mode_t mode);

/* Makes tide_loop_run() return after the current iteration. Safe from any callback. */
TIDE_EXTERN void tide_loop_stop(tide_loop_t *loop);

/* True while tide_loop_run() is executing on this loop. */
TIDE_EXTERN bool tide_loop_is_running(const tide_loop_t *loop);

/* The loop's monotonic time in seconds, cached at the start of each iteration (or the
 * manual clock's time, see tide/testing.h). */
TIDE_EXTERN double tide_loop_time(const tide_loop_t *loop);

/* Schedules cb(loop, arg) on the next iteration; callbacks run in FIFO order. Returns
 * a handle usable with tide_handle_cancel() until the callback starts, or NULL when
 * out of memory. The loop frees the handle after the callback ran or was cancelled. */
TIDE_EXTERN tide_handle_t *tide_loop_call_soon(tide_loop_t *loop, tide_call_cb cb, void *arg);

/* Schedules cb after delay seconds (negative counts as 0) from now; outside
 * tide_loop_run the loop's time is refreshed first. Callbacks
 * due at the same time run in scheduling order. Same handle rules as call_soon. */
TIDE_EXTERN tide_handle_t *tide_loop_call_later(tide_loop_t *loop, double delay, tide_call_cb cb,
                                                void *arg);

/* Schedules cb at the absolute loop time when (see tide_loop_time()). */
TIDE_EXTERN tide_handle_t *tide_loop_call_at(tide_loop_t *loop, double when, tide_call_cb cb,
                                             void *arg);

/* Cancels a pending callback so that it never runs. A no-op for NULL and when called
 * from inside the handle's own callback. The handle must not be used afterwards. */
TIDE_EXTERN void tide_handle_cancel(tide_handle_t *handle);

/* The time at which a call_later/call_at handle is due, or the scheduling time for
 * call_soon handles. */
TIDE_EXTERN double tide_handle_when(const tide_handle_t *handle);

/* The only tide call that is safe from any thread: schedules cb(loop, arg) on the
 * loop's thread and wakes the loop. Returns 0, TIDE_ENOMEM, or TIDE_ECLOSED once the
 * loop is closing. */
TIDE_EXTERN int tide_loop_call_soon_threadsafe(tide_loop_t *loop, tide_call_cb cb, void *arg);

/* Calls cb on the loop's thread whenever signal signum arrives. One handler per signal
 * per loop; adding again replaces it. Signal handlers alone do not keep
 * TIDE_RUN_DEFAULT running. Returns 0, TIDE_EINVAL (bad or uncatchable signal),
 * TIDE_EBUSY (the signal is handled by another tide loop), or TIDE_ENOMEM. */
TIDE_EXTERN int tide_loop_add_signal_handler(tide_loop_t *loop, int signum, tide_signal_cb cb,
                                             void *arg);

/* Removes the handler for signum and restores the default disposition. Returns 0, or
 * TIDE_ENOENT when no handler was installed. */
TIDE_EXTERN int tide_loop_remove_signal_handler(tide_loop_t *loop, int signum);

/* Debug mode: logs callbacks that run longer than the slow-callback duration
 * (default 0.1 s) and, at close, every resource still open. Off by default, unless
 * the environment variable TIDE_DEBUG is set to a non-empty value other than "0". */
TIDE_EXTERN void tide_loop_set_debug(tide_loop_t *loop, bool enabled);
TIDE_EXTERN bool tide_loop_get_debug(const tide_loop_t *loop);

/* Sets the threshold in seconds above which debug mode reports a callback. */
TIDE_EXTERN void tide_loop_set_slow_callback_duration(tide_loop_t *loop, double seconds);

/* Replaces the loop's log handler; NULL restores the default, which writes warnings
 * and errors (and, in debug mode, every level) to stderr as "tide: LEVEL: message",
 * one line per write, never waiting: when stderr cannot take a line at once (a pipe or
 * socket that nobody drains), the line is dropped and counted, and the next line that
 * gets through is preceded by "tide: warning: N log line(s) dropped: stderr was full".
 * A handler of your own runs on the loop's thread: it must not block either. */
TIDE_EXTERN void tide_loop_set_log_handler(tide_loop_t *loop, tide_log_cb cb, void *arg);

/* Logs a message through the loop's handler (printf-style). */
TIDE_EXTERN void tide_loop_log(tide_loop_t *loop, tide_log_level_t level, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Frees memory that tide allocated for the caller (documented where it happens). */
TIDE_EXTERN void tide_free(void *ptr);

#ifdef __cplusplus
}
#endif
#endif
