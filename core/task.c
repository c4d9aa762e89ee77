/* Tasks: stackful coroutines run by the loop's ready queue.
 *
 * A task is resumed from a deferred call (its run_call) drained by the loop, or by
 * tide__task_wake_now from a completion the loop itself runs (an I/O event, a deferred
 * call) while no task is running; it suspends only by switching back to whoever
 * resumed it, so the loop never runs on a task's stack. tide__task_wake and
 * tide_task_cancel only mark state and defer the resume, so a waker inside a user's
 * call never switches stacks inside its own frame. While a task runs, the
 * thread-local `current` names it; every blocking call starts from there.
 *
 * Cancellation and deadlines act on the waiter a task is blocked on: they mark it
 * complete with their code, let its owner detach the pending operation (on_abandon)
 * and defer the resume, exactly as a wake would. A request that finds no waiter to
 * interrupt waits for the next blocking call.
 *
 * Stacks are private anonymous mappings (MAP_NORESERVE: address space only until
 * touched) with a PROT_NONE guard page at the low end; a stack is unmapped as soon as
 * its task finishes, so a finished task awaiting its join holds only its record.
 *
 * An overflow faults in the guard page. The first stack made installs, once per
 * process, a SIGSEGV/SIGBUS handler that runs on the thread's alternate signal stack
 * (set up per thread when it first runs a task, unless the thread has one already):
 * a fault of the running task's stack is reported on stderr, then handed back to the
 * disposition tide found, so the process still dies as it would have; every other
 * fault goes straight to that disposition.
 *
 * Loop thread only; `current` is per thread, as a loop is. The fault handler reads
 * only `current` and the running task's stack fields, which nothing changes while
 * that task is the one faulting, and calls only async-signal-safe functions (and
 * sigaltstack, a bare system call). */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#if defined(__linux__)
#include <ucontext.h>
#endif

#include "core/core_int.h"

#if defined(__SANITIZE_ADDRESS__)
#define TIDE__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TIDE__ASAN 1
#endif
#endif

#ifdef TIDE__ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

/* Under Valgrind, registered stacks keep memcheck from taking each switch for a
 * wild stack-pointer move; outside it the requests cost a few instructions. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define TIDE__VALGRIND 1
#endif
#endif

#if defined(__GNUC__) || defined(__clang__)
#define TIDE__TLS_FAST __attribute__((tls_model("initial-exec")))
#else
#define TIDE__TLS_FAST
#endif

#ifndef MAP_NORESERVE
#define MAP_NORESERVE 0
#endif
#ifndef MAP_STACK
#define MAP_STACK 0
#endif

enum task_state {
    TASK_NEW,       /* spawned, run_call queued, never ran */
    TASK_RUNNING,   /* on the CPU (or resuming another task) */
    TASK_SUSPENDED, /* in a blocking call */
    TASK_DONE       /* fn returned or cancelled before it started */
};

#define INLINE_DEADLINES 4

struct tide_task {
    /* What every wait and wake touches comes first, in one cache line: with a
     * thousand tasks waking in turn, each wake should miss the cache once. */
    tide__waiter *waiter; /* the wait it is suspended in */
    tide__ctx ctx;        /* the task, while suspended */
    tide__ctx caller;     /* whoever resumed it, while it runs */
    tide_loop_t *loop;
    size_t ndeadlines;
    enum task_state state;
    bool cancel_pending;
    bool joined; /* a join (callback or await) claims the task */
    bool detached;
    tide__call run_call;

    tide__resource res; /* registered while unfinished or while a join is pending */
    tide__call join_call;
    tide__timer deadline_timer;
    tide_task_fn fn;
    void *arg;
    int result;
    char *map; /* stack mapping, guard page first; NULL once released */
    size_t map_size;
#ifdef TIDE__VALGRIND
    unsigned valgrind_stack;
#endif

    tide_task_join_cb join_cb;
    void *join_arg;

    /* Deadline scopes: each entry is the effective (earliest) absolute deadline in
     * force inside that scope, so the innermost entry governs. */
    double *deadlines;
    size_t deadline_cap;
    double deadline_inline[INLINE_DEADLINES];

#ifdef TIDE__ASAN
    void *fake_stack;
    const void *caller_bottom;
    size_t caller_size;
#endif
};

static _Thread_local tide_task_t *current TIDE__TLS_FAST;

static size_t page_size(void) {
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
}

/* ---- AddressSanitizer fiber annotations -------------------------------------------
 * ASan tracks one stack per thread; each switch tells it which stack comes next so
 * that it neither reports the new stack pointer as an overflow nor loses fake frames.
 * A NULL save slot on the final switch out of a task frees that task's fake stack. */

#ifdef TIDE__ASAN
static void *stack_base(const tide_task_t *t) { return t->map + page_size(); }
static size_t stack_len(const tide_task_t *t) { return t->map_size - page_size(); }
#define ASAN_START(save, bottom, size) __sanitizer_start_switch_fiber(save, bottom, size)
#define ASAN_FINISH(fake, bottom, size) __sanitizer_finish_switch_fiber(fake, bottom, size)
#define ASAN_T(t, field) (&(t)->field)
#else
#define ASAN_START(save, bottom, size) ((void)0)
#define ASAN_FINISH(fake, bottom, size) ((void)0)
#endif

/* ---- stacks ---------------------------------------------------------------------- */

static void overflow_reports_install(void);

static int stack_map(tide_task_t *t, size_t size) {
    overflow_reports_install();
    size_t page = page_size();
    if (size == 0)
        size = TIDE_TASK_DEFAULT_STACK_SIZE;
    if (size < TIDE_TASK_MIN_STACK_SIZE)
        size = TIDE_TASK_MIN_STACK_SIZE;
    if (size > SIZE_MAX / 2)
        return TIDE_ENOMEM;
    size = (size + page - 1) / page * page;
    size_t map_size = size + page;
    void *map = mmap(NULL, map_size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (map == MAP_FAILED)
        return TIDE_ENOMEM;
    if (mprotect(map, page, PROT_NONE) != 0) {
        munmap(map, map_size);
        return TIDE_ENOMEM;
    }
    t->map = map;
    t->map_size = map_size;
#ifdef TIDE__VALGRIND
    t->valgrind_stack = VALGRIND_STACK_REGISTER(t->map + page, t->map + map_size);
#endif
    return 0;
}

static void stack_unmap(tide_task_t *t) {
    if (t->map == NULL)
        return;
#ifdef TIDE__ASAN
    /* Frames that never returned (the entry's, the last switch's) stay poisoned;
     * clear them, or a later mapping at this address inherits false reports. */
    __asan_unpoison_memory_region(stack_base(t), stack_len(t));
#endif
#ifdef TIDE__VALGRIND
    VALGRIND_STACK_DEREGISTER(t->valgrind_stack);
#endif
    munmap(t->map, t->map_size);
    t->map = NULL;
}

void *tide__task_guard_page(const tide_task_t *t) { return t->map; }

/* ---- overflow reports -------------------------------------------------------------
 * Without these an overflow is a bare SIGSEGV: the guard page stops it, but nothing
 * says which task ran out or that stack_size is the remedy. */

static pthread_once_t fault_once = PTHREAD_ONCE_INIT;
static struct sigaction prev_segv, prev_bus; /* what tide found; read by the handler */
static size_t guard_size;                    /* the page size, read by the handler */
static pthread_key_t altstack_key;
static bool altstack_key_made;
static _Thread_local bool altstack_checked TIDE__TLS_FAST;

/* A stack pointer this far below a task's guard page still counts as its overflow:
 * one frame larger than a page steps over the guard (without -fstack-clash-protection)
 * and faults further down when nothing is mapped there. */
#define OVERSHOOT ((uintptr_t)1 << 20)

/* The alternate signal stack tide gives a thread: room for the report and for the
 * handler it passes the fault on to. */
#define ALTSTACK_SIZE ((size_t)64 * 1024)

/* The interrupted stack pointer, or 0 where tide does not know how to read it. */
static uintptr_t fault_sp(const void *uc) {
#if defined(__linux__) && defined(__x86_64__) && defined(REG_RSP)
    return (uintptr_t)((const ucontext_t *)uc)->uc_mcontext.gregs[REG_RSP];
#elif defined(__linux__) && defined(__aarch64__)
    return (uintptr_t)((const ucontext_t *)uc)->uc_mcontext.sp;
#else
    (void)uc;
    return 0;
#endif
}

/* A stack overflow happens on the stack in use, so only the running task can have
 * overflowed: the fault is in its guard page, or it is a stack access (at the stack
 * pointer, give or take a page) with the stack pointer already below the task's
 * stack. A fault in another task's guard page is a stray pointer, not an overflow. */
static bool is_overflow(const tide_task_t *t, const siginfo_t *si, const void *uc) {
    if (t == NULL || t->map == NULL || si->si_code <= 0) /* si_code <= 0: sent, not a fault */
        return false;
    uintptr_t guard = (uintptr_t)t->map, bottom = guard + guard_size;
    uintptr_t addr = (uintptr_t)si->si_addr, sp = fault_sp(uc);
    if (addr >= guard && addr < bottom)
        return true;
    if (sp == 0 || sp >= bottom || sp + OVERSHOOT < guard || addr + guard_size < sp)
        return false;
    /* A signal handler running on the alternate stack (which may lie just below a task
     * stack) is not the task: its faults are its own. */
    stack_t alt;
    if (sigaltstack(NULL, &alt) == 0 && !(alt.ss_flags & SS_DISABLE) &&
        sp >= (uintptr_t)alt.ss_sp && sp - (uintptr_t)alt.ss_sp < alt.ss_size)
        return false;
    return true;
}

static size_t put_str(char *buf, size_t at, size_t cap, const char *s) {
    while (*s != '\0' && at < cap)
        buf[at++] = *s++;
    return at;
}

static size_t put_num(char *buf, size_t at, size_t cap, uintmax_t v, unsigned base) {
    char digits[24];
    size_t n = 0;
    do {
        digits[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v != 0);
    if (base == 16)
        at = put_str(buf, at, cap, "0x");
    while (n > 0 && at < cap)
        buf[at++] = digits[--n];
    return at;
}

/* snprintf is not async-signal-safe: the message is put together by hand. */
static void report_overflow(const tide_task_t *t, const void *addr) {
    char msg[256];
    size_t cap = sizeof(msg), n = 0;
    n = put_str(msg, n, cap, "tide: task ");
    n = put_num(msg, n, cap, (uintptr_t)t, 16);
    n = put_str(msg, n, cap, " (function ");
    n = put_num(msg, n, cap, (uintptr_t)t->fn, 16);
    n = put_str(msg, n, cap, ") overflowed its stack of ");
    n = put_num(msg, n, cap, t->map_size - guard_size, 10);
    n = put_str(msg, n, cap, " bytes (fault at ");
    n = put_num(msg, n, cap, (uintptr_t)addr, 16);
    n = put_str(msg, n, cap, "); give it a larger stack_size in tide_task_options_t\n");
    ssize_t w = write(STDERR_FILENO, msg, n);
    (void)w; /* nothing better to do: the process is about to die */
}

/* Puts back the disposition tide found and lets the signal act on it: a fault
 * repeats when the handler returns, a sent signal is raised again (blocked until
 * then). SIG_IGN cannot stop a real fault, which the kernel delivers as SIG_DFL. */
static void hand_back(int sig, const siginfo_t *si, const struct sigaction *prev) {
    struct sigaction act = *prev;
    bool sent = si->si_code <= 0;
    if (!(act.sa_flags & SA_SIGINFO) && act.sa_handler == SIG_IGN) {
        if (sent)
            return;
        act.sa_handler = SIG_DFL;
    }
    sigaction(sig, &act, NULL);
    if (sent)
        raise(sig);
}

static void on_fault(int sig, siginfo_t *si, void *uc) {
    int saved_errno = errno;
    const struct sigaction *prev = sig == SIGBUS ? &prev_bus : &prev_segv;
    tide_task_t *t = current;
    if (is_overflow(t, si, uc)) {
        report_overflow(t, si->si_addr);
        /* The task's stack cannot be recovered: step aside for good, so the fault
         * ends the process exactly as without tide (core dump included). */
        hand_back(sig, si, prev);
    } else if (prev->sa_flags & SA_SIGINFO) {
        /* The application's handler stays in charge of its own faults, as often as
         * they come (a handler that repairs the fault and returns, a sanitizer's). */
        sigset_t old;
        pthread_sigmask(SIG_BLOCK, &prev->sa_mask, &old);
        prev->sa_sigaction(sig, si, uc);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    } else if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN) {
        sigset_t old;
        pthread_sigmask(SIG_BLOCK, &prev->sa_mask, &old);
        prev->sa_handler(sig);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    } else {
        hand_back(sig, si, prev);
    }
    errno = saved_errno;
}

static void altstack_free(void *map) {
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == (char *)map + guard_size) {
        stack_t off = {.ss_flags = SS_DISABLE};
        if (sigaltstack(&off, NULL) != 0)
            return; /* still in use: keep the mapping rather than pull it from under */
    }
    munmap(map, ALTSTACK_SIZE + guard_size);
}

static void install_fault_handler(void) {
    guard_size = page_size();
    altstack_key_made = pthread_key_create(&altstack_key, altstack_free) == 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    /* The previous actions are read before tide's takes over, so the handler never
     * sees them unset. */
    sigaction(SIGSEGV, NULL, &prev_segv);
    sigaction(SIGBUS, NULL, &prev_bus);
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
}

static void overflow_reports_install(void) { pthread_once(&fault_once, install_fault_handler); }

/* The handler needs a stack of its own on a thread whose task stack is exhausted.
 * One the application (or a sanitizer) set up is kept; tide's own is unmapped when
 * the thread exits. */
static void altstack_ensure(void) {
    altstack_checked = true;
    stack_t ss;
    if (sigaltstack(NULL, &ss) != 0 || !(ss.ss_flags & SS_DISABLE))
        return;
    size_t len = ALTSTACK_SIZE + guard_size;
    char *map = mmap(NULL, len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (map == MAP_FAILED)
        return;
    /* A guard page here too: a handler that overflows the alternate stack faults
     * instead of writing over whatever lies below it. */
    ss.ss_sp = map + guard_size;
    ss.ss_size = ALTSTACK_SIZE;
    ss.ss_flags = 0;
    if (mprotect(map, guard_size, PROT_NONE) != 0 || sigaltstack(&ss, NULL) != 0) {
        munmap(map, len);
        return;
    }
    if (altstack_key_made)
        pthread_setspecific(altstack_key, map);
}

/* ---- lifetime -------------------------------------------------------------------- */

static const char *state_name(const tide_task_t *t) {
    switch (t->state) {
    case TASK_NEW:
        return "not started";
    case TASK_RUNNING:
        return "running";
    case TASK_SUSPENDED:
        return "suspended";
    default:
        return "finished, join callback pending";
    }
}

static void describe(const tide__resource *res, char *buf, size_t size) {
    const tide_task_t *t = TIDE__QUEUE_DATA(res, tide_task_t, res);
    snprintf(buf, size, "task %p (%s)", (const void *)t, state_name(t));
}

static void task_free(tide_task_t *t) {
    tide__loop_unregister(t->loop, &t->res);
    tide__loop_undefer(&t->run_call);
    tide__loop_undefer(&t->join_call);
    tide__timer_stop(&t->deadline_timer);
    stack_unmap(t);
    if (t->deadlines != t->deadline_inline)
        free(t->deadlines);
    free(t);
}

static void on_join(tide__call *call) {
    tide_task_t *t = TIDE__QUEUE_DATA(call, tide_task_t, join_call);
    /* Unregister first: the callback may close the loop. */
    tide__loop_unregister(t->loop, &t->res);
    double start = tide__loop_debug_enter(t->loop);
    t->join_cb(t, t->result, t->join_arg);
    tide__loop_debug_leave(t->loop, start, "a task join callback");
    task_free(t);
}

/* After the task finished: its stack goes at once; its record goes to its joiner. */
static void finished(tide_task_t *t) {
    t->state = TASK_DONE;
    stack_unmap(t);
    tide__timer_stop(&t->deadline_timer);
    if (t->detached) {
        task_free(t);
    } else if (t->join_cb != NULL) {
        tide__loop_defer(t->loop, &t->join_call);
    } else {
        /* Unjoined: the user still owns it but the loop need not wait for it. */
        tide__loop_unregister(t->loop, &t->res);
    }
}

/* ---- switching ------------------------------------------------------------------- */

static void resume(tide_task_t *t) {
    tide_task_t *prev = current;
    current = t;
    t->state = TASK_RUNNING;
#ifdef TIDE__ASAN
    void *fake = NULL;
    ASAN_START(&fake, stack_base(t), stack_len(t));
#endif
    tide__ctx_switch(&t->caller, t->ctx);
    ASAN_FINISH(fake, NULL, NULL);
    current = prev;
    if (t->state == TASK_DONE)
        finished(t);
}

/* Gives the CPU back to whoever resumed t; returns when t is resumed again. */
static void suspend(tide_task_t *t) {
    t->state = TASK_SUSPENDED;
    ASAN_START(ASAN_T(t, fake_stack), t->caller_bottom, t->caller_size);
    tide__ctx_switch(&t->ctx, t->caller);
    /* The resumer may differ from last time (a task can drive the loop by hand). */
    ASAN_FINISH(t->fake_stack, ASAN_T(t, caller_bottom), ASAN_T(t, caller_size));
}

static void entry(void *arg) {
    tide_task_t *t = arg;
    ASAN_FINISH(NULL, ASAN_T(t, caller_bottom), ASAN_T(t, caller_size));
    t->result = t->fn(t->arg);
    t->state = TASK_DONE;
    ASAN_START(NULL, t->caller_bottom, t->caller_size);
    tide__ctx_switch(&t->ctx, t->caller);
    abort(); /* a finished task is never resumed */
}

static void on_run(tide__call *call) {
    tide_task_t *t = TIDE__QUEUE_DATA(call, tide_task_t, run_call);
    if (t->state == TASK_NEW && t->cancel_pending) {
        t->cancel_pending = false;
        t->result = TIDE_ECANCELLED;
        finished(t);
        return;
    }
    if (t->state == TASK_NEW && !altstack_checked)
        altstack_ensure();
    if (t->state == TASK_NEW || t->state == TASK_SUSPENDED)
        resume(t);
}

/* ---- waiting --------------------------------------------------------------------- */

static bool deadline_passed(const tide_task_t *t) {
    return t->ndeadlines > 0 && t->deadlines[t->ndeadlines - 1] <= tide_loop_time(t->loop);
}

/* The code a blocking call must return at once, if any; consumes a cancellation. */
static int interruption(tide_task_t *t) {
    if (t->cancel_pending) {
        t->cancel_pending = false;
        return TIDE_ECANCELLED;
    }
    return deadline_passed(t) ? TIDE_ETIMEOUT : 0;
}

static void abandon(tide__waiter *w, int code) {
    w->done = true;
    w->status = code;
    if (w->on_abandon != NULL)
        w->on_abandon(w);
}

/* Interrupts the wait t is blocked in, if it is still pending. */
static bool interrupt(tide_task_t *t, int code) {
    tide__waiter *w = t->waiter;
    if (t->state != TASK_SUSPENDED || w == NULL || w->done || w->shielded)
        return false;
    abandon(w, code);
    tide__loop_defer(t->loop, &t->run_call);
    return true;
}

static void on_deadline(tide__timer *timer) {
    interrupt(TIDE__QUEUE_DATA(timer, tide_task_t, deadline_timer), TIDE_ETIMEOUT);
}

/* Suspends t until w is complete. */
static void park(tide_task_t *t, tide__waiter *w) {
    w->task = t;
    t->waiter = w;
    while (!w->done)
        suspend(t);
    t->waiter = NULL;
    w->task = NULL;
}

int tide__task_wait(tide__waiter *w) {
    tide_task_t *t = current;
    if (t == NULL)
        return TIDE_ENOTASK;
    if (w->done)
        return w->status;
    int rc = interruption(t);
    bool timed = rc == 0 && t->ndeadlines > 0 && isfinite(t->deadlines[t->ndeadlines - 1]);
    if (timed)
        rc = tide__timer_start_at(&t->deadline_timer, t->deadlines[t->ndeadlines - 1]);
    if (rc != 0) {
        abandon(w, rc);
        return rc;
    }
    park(t, w);
    /* No timer work, not even a look at the timer, unless this wait armed it. */
    if (timed && tide__timer_active(&t->deadline_timer))
        tide__timer_stop(&t->deadline_timer);
    return w->status;
}

int tide__task_wait_shielded(tide__waiter *w) {
    tide_task_t *t = current;
    if (t == NULL)
        return TIDE_ENOTASK;
    w->shielded = true;
    park(t, w);
    return w->status;
}

void tide__task_wake(tide__waiter *w, int status) {
    if (w->done)
        return;
    w->done = true;
    w->status = status;
    tide_task_t *t = w->task;
    if (t != NULL && t->waiter == w && t->state == TASK_SUSPENDED)
        tide__loop_defer(t->loop, &t->run_call);
}

void tide__task_wake_now(tide__waiter *w, int status) {
    if (w->done)
        return;
    tide_task_t *t = w->task;
    if (current != NULL || t == NULL || t->waiter != w || t->state != TASK_SUSPENDED ||
        tide__call_pending(&t->run_call)) {
        tide__task_wake(w, status);
        return;
    }
    w->done = true;
    w->status = status;
    /* w lives in the task's frame: once resumed, the task may end and take it along. */
    resume(t);
}

/* ---- public: spawning, joining, cancelling --------------------------------------- */

int tide_task_spawn(tide_loop_t *loop, tide_task_fn fn, void *arg,
                    const tide_task_options_t *options, tide_task_t **task) {
    if (task != NULL)
        *task = NULL;
    if (loop == NULL || fn == NULL)
        return TIDE_EINVAL;
    tide_task_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return TIDE_ENOMEM;
    int rc = stack_map(t, options != NULL ? options->stack_size : 0);
    if (rc != 0) {
        free(t);
        return rc;
    }
    t->loop = loop;
    t->fn = fn;
    t->arg = arg;
    t->state = TASK_NEW;
    t->detached = task == NULL;
    t->deadlines = t->deadline_inline;
    t->deadline_cap = INLINE_DEADLINES;
    t->ctx = tide__ctx_make(t->map + page_size(), t->map_size - page_size(), entry, t);
    if (t->ctx == NULL) {
        stack_unmap(t);
        free(t);
        return TIDE_ENOMEM;
    }
    tide__queue_init(&t->res.node);
    tide__call_init(&t->run_call, on_run);
    tide__call_init(&t->join_call, on_join);
    tide__timer_init(loop, &t->deadline_timer, on_deadline);
    tide__loop_register(loop, &t->res, describe);
    tide__loop_defer(loop, &t->run_call);
    if (task != NULL)
        *task = t;
    return 0;
}

int tide_task_join(tide_task_t *t, tide_task_join_cb cb, void *arg) {
    if (t == NULL || cb == NULL)
        return TIDE_EINVAL;
    if (t->joined || t->detached)
        return TIDE_EBUSY;
    t->joined = true;
    t->join_cb = cb;
    t->join_arg = arg;
    if (t->state == TASK_DONE) {
        /* Its registration ended with it; the pending callback needs one again. */
        tide__loop_register(t->loop, &t->res, describe);
        tide__loop_defer(t->loop, &t->join_call);
    }
    return 0;
}

typedef struct join_wait {
    tide__waiter w;
    tide_task_t *target;
    int result;
} join_wait;

static void join_wake(tide_task_t *t, int result, void *arg) {
    (void)t;
    join_wait *jw = arg;
    jw->result = result;
    tide__task_wake(&jw->w, 0);
}

void tide__task_unjoin(tide_task_t *t) {
    if (!t->joined)
        return;
    t->joined = false;
    t->join_cb = NULL;
    t->join_arg = NULL;
    if (tide__call_pending(&t->join_call)) {
        tide__loop_undefer(&t->join_call);
        tide__loop_unregister(t->loop, &t->res);
    }
}

/* The joiner gave up: the target goes back to being unjoined. */
static void join_abandon(tide__waiter *w) { tide__task_unjoin(((join_wait *)(void *)w)->target); }

int tide_task_join_await(tide_task_t *t, int *result) {
    tide_task_t *self = current;
    if (self == NULL)
        return TIDE_ENOTASK;
    if (t == NULL || t == self)
        return TIDE_EINVAL;
    if (t->joined || t->detached)
        return TIDE_EBUSY;
    if (t->state == TASK_DONE) {
        if (result != NULL)
            *result = t->result;
        task_free(t);
        return 0;
    }
    join_wait jw = {.target = t};
    tide__waiter_init(&jw.w, join_abandon);
    int rc = tide_task_join(t, join_wake, &jw);
    if (rc == 0)
        rc = tide__task_wait(&jw.w);
    if (rc == 0 && result != NULL)
        *result = jw.result;
    return rc;
}

int tide_task_detach(tide_task_t *t) {
    if (t == NULL)
        return 0;
    if (t->joined)
        return TIDE_EBUSY;
    t->detached = true;
    if (t->state == TASK_DONE)
        task_free(t);
    return 0;
}

int tide_task_cancel(tide_task_t *t) {
    if (t == NULL)
        return TIDE_EINVAL;
    if (t->state == TASK_DONE)
        return 0;
    if (!interrupt(t, TIDE_ECANCELLED))
        t->cancel_pending = true;
    return 1;
}

tide_task_t *tide_task_current(void) { return current; }

int tide__in_task(const tide_loop_t *loop) {
    if (current == NULL)
        return TIDE_ENOTASK;
    return current->loop == loop ? 0 : TIDE_EINVAL;
}

tide_loop_t *tide_task_get_loop(const tide_task_t *t) { return t->loop; }

bool tide_task_is_done(const tide_task_t *t) { return t->state == TASK_DONE; }

/* ---- public: sleeping, yielding, deadlines --------------------------------------- */

typedef struct sleeper {
    tide__waiter w;
    tide__timer timer;
} sleeper;

static void sleep_fire(tide__timer *timer) {
    tide__task_wake(&TIDE__QUEUE_DATA(timer, sleeper, timer)->w, 0);
}

static void sleep_abandon(tide__waiter *w) {
    tide__timer_stop(&((sleeper *)(void *)w)->timer);
}

int tide_task_sleep(double seconds) {
    tide_task_t *t = current;
    if (t == NULL)
        return TIDE_ENOTASK;
    if (!(seconds > 0))
        return tide_task_yield();
    sleeper s;
    tide__waiter_init(&s.w, sleep_abandon);
    tide__timer_init(t->loop, &s.timer, sleep_fire);
    /* An infinite sleep arms nothing: only a cancellation or a deadline ends it. */
    if (isfinite(seconds)) {
        int rc = tide__timer_start(&s.timer, seconds);
        if (rc != 0)
            return rc;
    }
    return tide__task_wait(&s.w);
}

int tide_task_yield(void) {
    tide_task_t *t = current;
    if (t == NULL)
        return TIDE_ENOTASK;
    int rc = interruption(t);
    if (rc != 0)
        return rc;
    /* No waiter: a cancellation arriving now finds nothing to interrupt and is kept
     * for the next blocking call, as for a call that has already completed. */
    tide__loop_defer(t->loop, &t->run_call);
    suspend(t);
    return 0;
}

int tide_task_deadline_push(double seconds) {
    tide_task_t *t = current;
    if (t == NULL)
        return TIDE_ENOTASK;
    if (isnan(seconds))
        return TIDE_EINVAL;
    if (t->ndeadlines == t->deadline_cap) {
        size_t cap = t->deadline_cap * 2;
        double *d = malloc(cap * sizeof(*d));
        if (d == NULL)
            return TIDE_ENOMEM;
        memcpy(d, t->deadlines, t->ndeadlines * sizeof(*d));
        if (t->deadlines != t->deadline_inline)
            free(t->deadlines);
        t->deadlines = d;
        t->deadline_cap = cap;
    }
    double when = tide_loop_time(t->loop) + (seconds > 0 ? seconds : 0);
    if (t->ndeadlines > 0 && t->deadlines[t->ndeadlines - 1] < when)
        when = t->deadlines[t->ndeadlines - 1];
    t->deadlines[t->ndeadlines++] = when;
    return 0;
}

void tide_task_deadline_pop(void) {
    tide_task_t *t = current;
    if (t != NULL && t->ndeadlines > 0)
        t->ndeadlines--;
}

/* ---- run_until_complete ------------------------------------------------------------ */

typedef struct completion {
    bool done;
    int result;
} completion;

static void completion_joined(tide_task_t *task, int result, void *arg) {
    (void)task;
    completion *c = arg;
    c->done = true;
    c->result = result;
    tide_loop_stop(tide_task_get_loop(task));
}

int tide_loop_run_until_complete(tide_loop_t *loop, tide_task_fn fn, void *arg,
                                 const tide_task_options_t *options, int *result) {
    if (loop == NULL || fn == NULL)
        return TIDE_EINVAL;
    if (tide_loop_is_running(loop))
        return TIDE_EBUSY;
    tide_task_t *task;
    int rc = tide_task_spawn(loop, fn, arg, options, &task);
    if (rc != 0)
        return rc;
    completion c = {false, 0};
    rc = tide_task_join(task, completion_joined, &c);
    if (rc != 0)
        return rc; /* cannot happen for a task just spawned and not joined */
    /* FOREVER: the task may be waiting on nothing the loop counts as pending yet. */
    while (!c.done && rc == 0)
        rc = tide_loop_run(loop, TIDE_RUN_FOREVER);
    if (result)
        *result = c.result;
    return rc;
}
