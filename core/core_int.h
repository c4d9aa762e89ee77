/* core/ private interface: the pieces of the loop that the other layers build on.
 * Everything here runs on the loop's thread unless it says otherwise. */
#ifndef TIDE_CORE_INT_H
#define TIDE_CORE_INT_H

#include <ev.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/queue.h"
#include "tide.h"

#if defined(__GNUC__) || defined(__clang__)
#define TIDE__LIKELY(x) __builtin_expect(!!(x), 1)
#define TIDE__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define TIDE__PRINTF(a, b) __attribute__((format(printf, a, b)))
/* For the rare branch of a hot function: kept out of line so that the hot one does
 * not save and restore every register the rare one needs. */
#define TIDE__NOINLINE __attribute__((noinline))
#else
#define TIDE__NOINLINE
#define TIDE__LIKELY(x) (x)
#define TIDE__UNLIKELY(x) (x)
#define TIDE__PRINTF(a, b)
#endif

/* Monotonic wall time in seconds, for measuring (not the loop's cached time). */
double tide__now_monotonic(void);

/* A deferred call embedded in its owner: scheduling it allocates nothing. It runs on
 * the next drain of the ready queue, FIFO with tide_loop_call_soon callbacks. */
typedef struct tide__call tide__call;
typedef void (*tide__call_fn)(tide__call *call);
struct tide__call {
    tide__queue node;
    tide__call_fn fn;
};

void tide__call_init(tide__call *call, tide__call_fn fn);
/* Queues the call unless it is already queued. */
void tide__loop_defer(tide_loop_t *loop, tide__call *call);
/* Removes a queued call (no-op when not queued). */
void tide__loop_undefer(tide__call *call);
static inline bool tide__call_pending(const tide__call *call) {
    return tide__queue_linked(&call->node);
}

/* A timer embedded in its owner, kept in the loop's heap ordered by (deadline, order
 * of arming), so timers due together fire in the order they were started. Honours
 * the manual clock. */
typedef struct tide__timer tide__timer;
typedef void (*tide__timer_fn)(tide__timer *timer);
struct tide__timer {
    tide_loop_t *loop;
    tide__timer_fn fn;
    double when;
    uint64_t seq;
    size_t heap_index; /* SIZE_MAX when not armed */
};

void tide__timer_init(tide_loop_t *loop, tide__timer *timer, tide__timer_fn fn);
/* (Re)arms the timer delay seconds from the loop's time. Returns 0 or TIDE_ENOMEM. */
int tide__timer_start(tide__timer *timer, double delay);
/* Arms the timer at an absolute loop time. */
int tide__timer_start_at(tide__timer *timer, double when);
void tide__timer_stop(tide__timer *timer);
static inline bool tide__timer_active(const tide__timer *timer) {
    return timer->heap_index != SIZE_MAX;
}

/* Something open on the loop (transport, server, connect request): keeps
 * TIDE_RUN_DEFAULT running and makes tide_loop_close() refuse with TIDE_EBUSY. */
typedef struct tide__resource tide__resource;
struct tide__resource {
    tide__queue node;
    /* Writes a one-line description ("tcp transport fd 7 to 127.0.0.1:4000"). */
    void (*describe)(const tide__resource *res, char *buf, size_t size);
    bool keeps_alive; /* holds a loop reference while registered */
};

void tide__loop_register(tide_loop_t *loop, tide__resource *res,
                         void (*describe)(const tide__resource *, char *, size_t));
/* Registers a resource that tide_loop_close reports but that does not keep
 * TIDE_RUN_DEFAULT running (nothing can happen to it until the user acts). */
void tide__loop_register_passive(tide_loop_t *loop, tide__resource *res,
                                 void (*describe)(const tide__resource *, char *, size_t));
void tide__loop_unregister(tide_loop_t *loop, tide__resource *res);

/* The libev loop, for a layer that needs libev watchers of its own. Calling it hands
 * the loop to libev for good (tide's own wait would not see those watchers), so
 * descriptors are watched with tide__io below instead, on every hot path. */
struct ev_loop *tide__loop_ev(tide_loop_t *loop);

/* The fields of a loop that every read and callback look at, first in struct
 * tide_loop so that the hot paths read them inline instead of calling into loop.c. */
typedef struct tide__loop_hot {
    void *scratch; /* NULL until the first read that needs it */
    bool debug;
} tide__loop_hot;

static inline const tide__loop_hot *tide__loop_hot_of(const tide_loop_t *loop) {
    return (const tide__loop_hot *)(const void *)loop;
}

#define TIDE__SCRATCH_SIZE ((size_t)256 * 1024)

void *tide__loop_scratch_alloc(tide_loop_t *loop, size_t *size);

/* A per-loop receive buffer for one read (256 KiB, page-aligned), shared by every
 * non-buffered transport: one read per readiness event lands here, so no read
 * allocates. Returns NULL when it cannot be allocated. */
static inline void *tide__loop_scratch(tide_loop_t *loop, size_t *size) {
    void *scratch = tide__loop_hot_of(loop)->scratch;
    if (TIDE__UNLIKELY(scratch == NULL))
        return tide__loop_scratch_alloc(loop, size);
    *size = TIDE__SCRATCH_SIZE;
    return scratch;
}

/* A descriptor watched for readiness. On Linux the loop keeps its own epoll set for
 * these, watched as one descriptor by libev: a ready descriptor costs one array entry
 * and one call, instead of libev's per-watcher pending queue (about 100 instructions
 * per event). Elsewhere it is a plain libev io watcher. Level-triggered, as libev's.
 * The callback gets the ready subset of the wanted events; an io stopped or changed
 * during a dispatch gets no stale events. An io must be stopped (events 0) before its
 * descriptor is closed or its memory freed. */
#define TIDE__IO_READ 1u
#define TIDE__IO_WRITE 2u
typedef struct tide__io tide__io;
typedef void (*tide__io_cb)(tide__io *io, unsigned events);
struct tide__io {
    tide_loop_t *loop;
    tide__io_cb cb;
    int fd;
    unsigned events; /* wanted now */
#ifdef __linux__
    bool added; /* in the epoll set */
#else
    ev_io w;
#endif
};

void tide__io_init(tide_loop_t *loop, tide__io *io, int fd, tide__io_cb cb);
/* Sets the wanted events. Returns 0, or a tide code (epoll_ctl failed; the wanted
 * events are then unchanged). */
int tide__io_set(tide__io *io, unsigned events);

static inline int tide__io_start(tide__io *io, unsigned events) {
    return (io->events & events) == events ? 0 : tide__io_set(io, io->events | events);
}

static inline void tide__io_stop(tide__io *io, unsigned events) {
    if (io->events & events)
        (void)tide__io_set(io, io->events & ~events);
}

/* Debug-mode timing of a user-visible callback: enter returns a start stamp (0 when
 * debug is off); leave logs when the callback ran longer than the threshold. Inline:
 * with debug off, as it is on every hot path, each is one test. */
void tide__loop_debug_report(tide_loop_t *loop, double start, const char *what);

static inline double tide__loop_debug_enter(tide_loop_t *loop) {
    return TIDE__UNLIKELY(tide__loop_hot_of(loop)->debug) ? tide__now_monotonic() : 0.0;
}

static inline void tide__loop_debug_leave(tide_loop_t *loop, double start, const char *what) {
    if (TIDE__UNLIKELY(start != 0.0))
        tide__loop_debug_report(loop, start, what);
}

void tide__log(tide_loop_t *loop, tide_log_level_t level, const char *fmt, ...) TIDE__PRINTF(3, 4);

/* Runs a function on a thread of the loop's worker pool (started on demand, up to 64,
 * kept until the loop closes), then done(arg) on the loop's thread (through the
 * thread-safe queue). The loop's close runs every job handed over, then joins the
 * threads. Returns 0 or TIDE_ENOMEM / TIDE_EAGAIN when no thread could be started. */
int tide__loop_run_in_thread(tide_loop_t *loop, void (*work)(void *arg),
                             void (*done)(tide_loop_t *loop, void *arg), void *arg);

/* Name resolution off the loop thread. cb gets 0 and a getaddrinfo() list (the
 * callee frees it with freeaddrinfo) or a negative code and NULL. A cancelled request
 * never calls cb. */
struct addrinfo;
typedef struct tide__resolve tide__resolve;
typedef void (*tide__resolve_cb)(tide__resolve *req, int status, struct addrinfo *res, void *arg);
int tide__resolve_start(tide_loop_t *loop, const char *host, const char *service, int family,
                        int socktype, int flags, tide__resolve_cb cb, void *arg,
                        tide__resolve **req);
void tide__resolve_cancel(tide__resolve *req);

#endif

/* ---- tasks (core/task.c) ---- */
/* After the header's own guard (this section is appended), so it carries its own. */
#ifndef TIDE_CORE_INT_TASKS_H
#define TIDE_CORE_INT_TASKS_H

/* What every await form builds on. The caller embeds a waiter (usually on the task's
 * stack), starts its operation with a completion that calls tide__task_wake(), then
 * calls tide__task_wait(). If the task is cancelled or its deadline passes first,
 * on_abandon(w) runs (before the wait returns) and must detach the pending operation
 * so that it never touches w again; the wait then returns TIDE_ECANCELLED or
 * TIDE_ETIMEOUT. Await forms check tide_task_current() before starting anything, so
 * that outside a task they return TIDE_ENOTASK with nothing left pending. */
typedef struct tide__waiter tide__waiter;
struct tide__waiter {
    tide_task_t *task; /* set while a task waits on it */
    void (*on_abandon)(tide__waiter *w);
    int status;
    bool done;
    bool shielded; /* neither cancellation nor a deadline interrupts this wait */
};

static inline void tide__waiter_init(tide__waiter *w, void (*on_abandon)(tide__waiter *w)) {
    w->task = NULL;
    w->on_abandon = on_abandon;
    w->status = 0;
    w->done = false;
    w->shielded = false;
}

/* Suspends the current task until w is woken; returns its status. Returns at once,
 * without suspending, when w was already woken. Otherwise TIDE_ECANCELLED or
 * TIDE_ETIMEOUT (after on_abandon), TIDE_ENOMEM (deadline timer; after on_abandon),
 * or TIDE_ENOTASK outside a task (on_abandon is not called then). */
int tide__task_wait(tide__waiter *w);

/* Waits like tide__task_wait but cannot be interrupted: a cancellation arriving
 * meanwhile is kept for the task's next blocking call, and deadlines are not checked.
 * For the clean-up waits that must finish whatever happens (re-acquiring a
 * condition's lock, waiting for the tasks of a group that was just cancelled).
 * Returns w's status, or TIDE_ENOTASK outside a task. */
int tide__task_wait_shielded(tide__waiter *w);

/* Withdraws a pending tide_task_join (of a task not yet finished, or finished with
 * its join callback still queued): the task is unjoined again, its callback will not
 * run, and its owner may join or detach it later. No-op for a task not joined. */
void tide__task_unjoin(tide_task_t *task);

/* Completes w with status; the waiting task resumes on a later loop iteration (the
 * waker's frame never switches stacks). Ignored once w is complete or abandoned.
 * Safe before the wait starts. */
void tide__task_wake(tide__waiter *w, int status);

/* tide__task_wake for a completion that the loop itself runs (from an I/O event or a
 * deferred call, never inside a user's call): when no task is running, the waiting
 * task resumes at once, inside this call, instead of on a later iteration; otherwise
 * as tide__task_wake. w may be gone when it returns (it lives in the task's frame). */
void tide__task_wake_now(tide__waiter *w, int status);

/* The lowest page of a task's stack mapping, the guard page (NULL once the stack is
 * gone); for tests that check overflows fault there. */
void *tide__task_guard_page(const tide_task_t *task);

/* The context switch (core/task_switch.c): assembly on x86-64 and aarch64 (ELF),
 * ucontext elsewhere or when TIDE_TASK_UCONTEXT is defined. A context is the saved
 * stack position of a suspended execution, whose registers are kept on its stack. */
typedef void *tide__ctx;

/* Prepares [stack, stack + size) to run entry(arg) when first switched to; entry
 * must never return. Returns NULL on failure (ucontext only). */
tide__ctx tide__ctx_make(void *stack, size_t size, void (*entry)(void *arg), void *arg);

/* Saves the running execution into *save and resumes `to`; returns when something
 * switches back to *save. */
void tide__ctx_switch(tide__ctx *save, tide__ctx to);

/* "x86_64", "aarch64" or "ucontext": which implementation was compiled. */
const char *tide__ctx_backend(void);

#endif

/* ---- wait records (core/wait.c) ---- */
#ifndef TIDE_CORE_INT_WAIT_H
#define TIDE_CORE_INT_WAIT_H

/* One pending wait on a coordination object (future, event, lock, semaphore,
 * condition, queue), in either style. The object keeps its waiters on a list and
 * serves them with tide__wait_complete; the record then reaches its waiter:
 * - task style: the record lives in the task's frame; completing it wakes the task.
 *   A cancellation or deadline calls the record's withdraw (through on_abandon),
 *   which must take it off the object's list.
 * - callback style: the record is allocated; completing it defers `deliver`, which
 *   calls the user's callback, then the record is freed. tide_wait_cancel calls the
 *   record's cancel, which withdraws it and completes it (usually with
 *   TIDE_ECANCELLED).
 * `item` and `aux` carry a value each way (a queued item, a future's result). */
struct tide_wait {
    tide__waiter tw; /* first: on_abandon gets it */
    tide__queue node;
    tide__call call;
    tide_loop_t *loop;
    void *obj;
    void (*withdraw)(tide_wait_t *w); /* task style: off the object's list */
    int (*cancel)(tide_wait_t *w);    /* callback style: tide_wait_cancel; 1 or 0 */
    void (*deliver)(tide_wait_t *w);  /* callback style: call the user */
    void (*user_cb)(void);            /* the user's callback, cast back by deliver */
    void *user_arg;
    void *item;
    int status;
    int phase; /* the owner's (a condition: waiting for notify, or for the lock) */
    bool task_style;
    bool completed;
};

/* Task style: prepares a record in the caller's frame. */
void tide__wait_init_task(tide_wait_t *w, tide_loop_t *loop, void *obj,
                          void (*withdraw)(tide_wait_t *w));
/* Callback style: allocates a record; NULL when out of memory. cancel NULL means
 * "unlink and complete with TIDE_ECANCELLED". */
tide_wait_t *tide__wait_new_cb(tide_loop_t *loop, void *obj, void (*deliver)(tide_wait_t *w),
                               int (*cancel)(tide_wait_t *w), void (*user_cb)(void),
                               void *user_arg);
/* Serves a pending record: unlinks it and completes it with status. */
void tide__wait_complete(tide_wait_t *w, int status);
/* Task style: suspends until the record is completed; returns its status (or the
 * interruption code after withdraw ran). */
int tide__wait_await(tide_wait_t *w);
/* The default withdraw: unlinks the record. */
void tide__wait_unlink(tide_wait_t *w);
/* Completes every record on list with status, in order. */
void tide__wait_complete_all(tide__queue *list, int status);
/* The first pending record of a list, or NULL. */
static inline tide_wait_t *tide__wait_first(tide__queue *list) {
    return tide__queue_empty(list) ? NULL : TIDE__QUEUE_DATA(list->next, tide_wait_t, node);
}

/* TIDE_ENOTASK outside a task, TIDE_EINVAL in a task of another loop, else 0. */
int tide__in_task(const tide_loop_t *loop);

#endif
