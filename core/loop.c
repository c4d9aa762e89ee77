/* The event loop: tide's layer over one libev loop.
 *
 * Every descriptor tide watches (sockets, listeners, connects) is a tide__io in the
 * loop's own epoll set. When the libev loop is tide's own, tide waits on that set
 * itself: one epoll_wait per iteration, then the I/O callbacks, the due timers, one
 * non-blocking libev run when libev has something to deliver (thread-safe calls,
 * pool completions and signals, which also write the loop's eventfd so that tide's
 * wait wakes), then the ready queue. When the application runs the libev loop (or
 * reaches it with tide_loop_get_ev, which may add watchers tide's wait would not
 * see), libev drives: the set is one of its descriptors, a check watcher at the
 * highest priority refreshes the loop's time, and one at the lowest drains the ready
 * queue. Either way the ready queue (call_soon and tide's own deferred calls) runs
 * once per iteration, FIFO, over a snapshot: what a callback schedules runs on the
 * next iteration, and a non-empty queue keeps the wait from blocking.
 *
 * Timers live in tide's own binary heap ordered by (deadline, arming order), so timers
 * due together fire in the order they were set; one libev timer is armed for the
 * earliest when libev drives, and tide's wait times out at it otherwise. With the
 * manual clock nothing is armed and tide_loop_advance() fires them.
 *
 * Everything here runs on the loop's thread except tide_loop_call_soon_threadsafe(),
 * the pool threads of tide__loop_run_in_thread() and the signal handler, which only
 * touch the mutex-protected thread-safe queue, the pool's job queue, the libev async
 * watcher and the loop's eventfd. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#ifdef __linux__
#include <sys/epoll.h>
#include <sys/eventfd.h>
#endif
#include <unistd.h>

#include "core/buf.h"
#include "core/core_int.h"
#include "tide/ev.h"

typedef struct tide__ts_item tide__ts_item;
struct tide__ts_item {
    tide__ts_item *next;
    tide_call_cb cb;
    void *arg;
    bool internal; /* a worker's completion: always delivered, even while closing */
};

typedef struct tide__signal {
    ev_signal watcher;
    tide_loop_t *loop;
    tide_signal_cb cb;
    void *arg;
    struct tide__signal *next;
} tide__signal;

struct tide_handle {
    tide__call call;
    tide__timer timer;
    tide__queue all;
    tide_loop_t *loop;
    tide_call_cb cb;
    void *arg;
    double when;
    bool running;
    bool is_timer;
};

struct tide_loop {
    tide__loop_hot hot; /* first: core_int.h reads it inline */
    struct ev_loop *ev;
    bool owns_ev;
    bool running;
    bool stop_requested;
    bool manual_clock;
    double now;
    double slow_callback;
    tide_log_cb log_cb;
    void *log_arg;

    ev_check time_check;
    ev_check ready_check;
    ev_idle ready_idle;
    ev_timer heap_watcher;
    ev_async wakeup;

    tide__queue ready;
    tide__queue handles; /* every live public handle, for cleanup at close */
    tide__queue resources;

    tide__timer **heap;
    size_t heap_len, heap_cap;
    uint64_t timer_seq;

    tide__signal *signals;
#ifdef __linux__
    int epfd; /* tide__io's epoll set */
    ev_io ep_watcher; /* the set, watched by libev when libev drives */
    bool tide_drives; /* tide waits on the set; libev keeps only timers and signals */
    bool ev_dirty;    /* libev has something to deliver: run it once */
    bool break_requested;
    size_t keep_alive; /* what keeps TIDE_RUN_DEFAULT running, while tide drives */
    tide__io wake;     /* an eventfd: thread-safe calls and signals wake the wait */
    atomic_bool wake_pending;
    struct ep_batch *batches; /* the dispatches running now, innermost first */
#endif

    pthread_mutex_t ts_lock;
    pthread_cond_t ts_cond;
    tide__ts_item *ts_head, *ts_tail;
    size_t workers; /* jobs handed to the pool and not yet posted back */
    bool ts_closing;

    /* The worker pool, under ts_lock: jobs wait in FIFO order for a thread. */
    pthread_cond_t pool_cond;
    struct tide__worker *pool_head, *pool_tail;
    pthread_t *pool_threads;
    size_t pool_size, pool_cap, pool_idle, pool_queued;
};

/* ---- time ------------------------------------------------------------------------ */

double tide__now_monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void refresh_time(tide_loop_t *loop) {
    if (!loop->manual_clock)
        loop->now = tide__now_monotonic();
}

double tide_loop_time(const tide_loop_t *loop) { return loop->now; }

/* ---- logging and debug ----------------------------------------------------------- */

static const char *level_name(tide_log_level_t level) {
    switch (level) {
    case TIDE_LOG_DEBUG:
        return "debug";
    case TIDE_LOG_INFO:
        return "info";
    case TIDE_LOG_WARNING:
        return "warning";
    default:
        return "error";
    }
}

/* Lines the default handler could not write, process-wide (stderr is). */
static atomic_ulong log_dropped;

/* One write of a whole line to fd that never waits: a socket is sent to without
 * blocking; anything else is written only when poll says it has room, which for a
 * pipe means room for a line this short (PIPE_BUF), so the write cannot block. */
static bool write_nowait(int fd, const char *line, size_t len) {
    ssize_t r = send(fd, line, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r < 0 && errno == ENOTSOCK) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, 0) != 1 || (p.revents & POLLOUT) == 0)
            return false;
        r = write(fd, line, len);
    }
    return r == (ssize_t)len;
}

/* The default handler: a line on stderr, unless stderr cannot take it now (a pipe
 * nobody drains): then the line is dropped and counted, and the next line that gets
 * through says how many were lost. Never blocks the loop's thread. */
static void log_to_stderr(tide_log_level_t level, const char *msg) {
    int saved = errno;
    char line[640];
    unsigned long dropped = atomic_exchange(&log_dropped, 0);
    if (dropped > 0) {
        int n = snprintf(line, sizeof(line), "tide: warning: %lu log line(s) dropped: stderr was full\n",
                         dropped);
        if (!write_nowait(STDERR_FILENO, line, (size_t)n)) {
            atomic_fetch_add(&log_dropped, dropped + 1);
            errno = saved;
            return;
        }
    }
    int n = snprintf(line, sizeof(line), "tide: %s: %s\n", level_name(level), msg);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    if (!write_nowait(STDERR_FILENO, line, len))
        atomic_fetch_add(&log_dropped, 1);
    errno = saved;
}

static void vlog(tide_loop_t *loop, tide_log_level_t level, const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (loop != NULL && loop->log_cb != NULL) {
        loop->log_cb(loop, level, msg, loop->log_arg);
        return;
    }
    if (level >= TIDE_LOG_WARNING || (loop != NULL && loop->hot.debug))
        log_to_stderr(level, msg);
}

void tide_loop_log(tide_loop_t *loop, tide_log_level_t level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(loop, level, fmt, ap);
    va_end(ap);
}

void tide__log(tide_loop_t *loop, tide_log_level_t level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(loop, level, fmt, ap);
    va_end(ap);
}

void tide_loop_set_log_handler(tide_loop_t *loop, tide_log_cb cb, void *arg) {
    loop->log_cb = cb;
    loop->log_arg = arg;
}

void tide_loop_set_debug(tide_loop_t *loop, bool enabled) { loop->hot.debug = enabled; }

bool tide_loop_get_debug(const tide_loop_t *loop) { return loop->hot.debug; }

void tide_loop_set_slow_callback_duration(tide_loop_t *loop, double seconds) {
    loop->slow_callback = seconds;
}

void tide__loop_debug_report(tide_loop_t *loop, double start, const char *what) {
    if (!loop->hot.debug)
        return; /* switched off inside the callback */
    double took = tide__now_monotonic() - start;
    if (took >= loop->slow_callback)
        tide__log(loop, TIDE_LOG_WARNING, "executing %s took %.3f seconds", what, took);
}

void tide_free(void *ptr) { free(ptr); }

/* ---- references and resources ---------------------------------------------------- */

void tide__loop_register_passive(tide_loop_t *loop, tide__resource *res,
                                 void (*describe)(const tide__resource *, char *, size_t)) {
    res->describe = describe;
    res->keeps_alive = false;
    tide__queue_insert_tail(&loop->resources, &res->node);
}

void tide__loop_register(tide_loop_t *loop, tide__resource *res,
                         void (*describe)(const tide__resource *, char *, size_t)) {
    tide__loop_register_passive(loop, res, describe);
    res->keeps_alive = true;
    ev_ref(loop->ev); /* keeps TIDE_RUN_DEFAULT running while registered */
#ifdef __linux__
    loop->keep_alive++;
#endif
}

void tide__loop_unregister(tide_loop_t *loop, tide__resource *res) {
    if (!tide__queue_linked(&res->node))
        return;
    tide__queue_remove(&res->node);
    if (res->keeps_alive) {
        ev_unref(loop->ev);
#ifdef __linux__
        loop->keep_alive--;
#endif
    }
}

/* Internal callers reach libev to start watchers of their own, which tide's wait
 * would not see: libev drives from then on. Use tide__io instead on hot paths. */
static void hand_to_libev(tide_loop_t *loop);

struct ev_loop *tide__loop_ev(tide_loop_t *loop) {
#ifdef __linux__
    hand_to_libev(loop);
#endif
    return loop->ev;
}

struct ev_loop *tide_loop_get_ev(tide_loop_t *loop) {
#ifdef __linux__
    hand_to_libev(loop);
#endif
    return loop->ev;
}

void *tide__loop_scratch_alloc(tide_loop_t *loop, size_t *size) {
    loop->hot.scratch = tide__buf_alloc(TIDE__SCRATCH_SIZE);
    *size = loop->hot.scratch ? TIDE__SCRATCH_SIZE : 0;
    return loop->hot.scratch;
}

/* ---- descriptors: tide's own epoll set --------------------------------------------- */

void tide__io_init(tide_loop_t *loop, tide__io *io, int fd, tide__io_cb cb) {
    io->loop = loop;
    io->cb = cb;
    io->fd = fd;
    io->events = 0;
#ifdef __linux__
    io->added = false;
#else
    ev_io_init(&io->w, NULL, fd, 0);
#endif
}

#ifdef __linux__
#define EPOLL_BATCH 64

/* The ready descriptors one dispatch works through. Dispatches nest when a callback
 * runs the loop itself (a task driving it by hand), hence a list. */
struct ep_batch {
    struct epoll_event evs[EPOLL_BATCH];
    int n;
    struct ep_batch *next;
};

/* An io leaves the set: no dispatch still running may call it (its memory may be
 * freed as soon as this returns). */
static void forget(tide__io *io) {
    for (struct ep_batch *b = io->loop->batches; b != NULL; b = b->next)
        for (int i = 0; i < b->n; i++)
            if (b->evs[i].data.ptr == io)
                b->evs[i].data.ptr = NULL;
}

/* Waits up to timeout_ms on the set and dispatches what is ready, one array entry per
 * descriptor. A callback may stop or change any io of the batch: events no longer
 * wanted are masked with what it wants now, and an io that left the set is forgotten. */
static void dispatch(tide_loop_t *loop, int timeout_ms) {
    struct ep_batch b;
    b.n = epoll_wait(loop->epfd, b.evs, EPOLL_BATCH, timeout_ms);
    if (timeout_ms != 0)
        refresh_time(loop);
    if (b.n <= 0)
        return;
    b.next = loop->batches;
    loop->batches = &b;
    for (int i = 0; i < b.n; i++) {
        tide__io *io = b.evs[i].data.ptr;
        if (io == NULL)
            continue;
        uint32_t e = b.evs[i].events;
        unsigned got = ((e & (EPOLLIN | EPOLLERR | EPOLLHUP)) ? TIDE__IO_READ : 0) |
                       ((e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) ? TIDE__IO_WRITE : 0);
        got &= io->events;
        if (got)
            io->cb(io, got);
    }
    loop->batches = b.next;
}

/* libev drives: the set is one of its descriptors. */
static void on_epoll(struct ev_loop *ev, ev_io *w, int revents) {
    (void)ev;
    (void)revents;
    dispatch(w->data, 0);
}

/* Thread-safe calls, pool completions and signals reach libev through its async
 * machinery, which writes libev's wake-up pipe only while libev itself is polling;
 * this eventfd wakes tide's wait too, and makes libev run once to deliver them. */
static void on_wake(tide__io *io, unsigned events) {
    (void)events;
    tide_loop_t *loop = io->loop;
    uint64_t count;
    atomic_store(&loop->wake_pending, false);
    while (read(io->fd, &count, sizeof(count)) < 0 && errno == EINTR)
        ;
    loop->ev_dirty = true;
}

/* Async-signal-safe: called from pool threads, other threads and signal handlers. */
static void wake_fd_write(int fd) {
    uint64_t one = 1;
    while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

static void wake(tide_loop_t *loop) {
    if (!atomic_exchange(&loop->wake_pending, true))
        wake_fd_write(loop->wake.fd);
}

static int epoll_open(tide_loop_t *loop) {
    int fd = epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0)
        return tide_err_from_errno(errno);
    loop->epfd = fd;
    int wfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wfd < 0)
        return tide_err_from_errno(errno);
    tide__io_init(loop, &loop->wake, wfd, on_wake);
    int rc = tide__io_set(&loop->wake, TIDE__IO_READ);
    if (rc != 0)
        return rc;
    ev_io_init(&loop->ep_watcher, on_epoll, fd, EV_READ);
    loop->ep_watcher.data = loop;
    /* tide waits on the set itself when the libev loop is its own: every descriptor
     * tide watches is in the set, libev keeps timers and signals, and one epoll_wait
     * per iteration serves all (a ready socket skips libev's per-watcher dispatch). A
     * libev loop the application runs, or reaches with tide_loop_get_ev, is driven by
     * libev instead, with the set as one of its descriptors. */
    if (loop->owns_ev) {
        loop->tide_drives = true;
        loop->ev_dirty = true; /* libev has not run yet */
        return 0;
    }
    /* Only the descriptors in it keep the loop running (as resources). */
    ev_io_start(loop->ev, &loop->ep_watcher);
    ev_unref(loop->ev);
    return 0;
}

/* From now on libev drives: the application (or code that needs libev watchers of its
 * own) reached the libev loop, whose watchers tide's wait would not see. */
static void hand_to_libev(tide_loop_t *loop) {
    if (!loop->tide_drives)
        return;
    loop->tide_drives = false;
    ev_io_start(loop->ev, &loop->ep_watcher);
    ev_unref(loop->ev);
}

int tide__io_set(tide__io *io, unsigned events) {
    tide_loop_t *loop = io->loop;
    int op;
    struct epoll_event e = {0};
    e.data.ptr = io;
    e.events = ((events & TIDE__IO_READ) ? EPOLLIN : 0) | ((events & TIDE__IO_WRITE) ? EPOLLOUT : 0);
    if (events == 0)
        op = EPOLL_CTL_DEL;
    else
        op = io->added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (op == EPOLL_CTL_DEL && !io->added) {
        io->events = 0;
        return 0;
    }
    if (epoll_ctl(loop->epfd, op, io->fd, &e) < 0 && !(op == EPOLL_CTL_DEL && errno == EBADF))
        return tide_err_from_errno(errno);
    io->added = events != 0;
    io->events = events;
    if (op == EPOLL_CTL_DEL && loop->batches != NULL)
        forget(io);
    return 0;
}
#else
static void on_io(struct ev_loop *ev, ev_io *w, int revents) {
    (void)ev;
    tide__io *io = TIDE__QUEUE_DATA(w, tide__io, w);
    unsigned got = ((revents & EV_READ) ? TIDE__IO_READ : 0) |
                   ((revents & EV_WRITE) ? TIDE__IO_WRITE : 0);
    got &= io->events;
    if (got)
        io->cb(io, got);
}

int tide__io_set(tide__io *io, unsigned events) {
    struct ev_loop *ev = io->loop->ev;
    ev_io_stop(ev, &io->w);
    io->events = events;
    if (events) {
        ev_io_init(&io->w, on_io, io->fd,
                   ((events & TIDE__IO_READ) ? EV_READ : 0) | ((events & TIDE__IO_WRITE) ? EV_WRITE : 0));
        ev_io_start(ev, &io->w);
    }
    return 0;
}

static void wake(tide_loop_t *loop) { (void)loop; /* libev's async watcher does it all */ }
#endif

/* ---- the ready queue ------------------------------------------------------------- */

void tide__call_init(tide__call *call, tide__call_fn fn) {
    tide__queue_init(&call->node);
    call->fn = fn;
}

void tide__loop_defer(tide_loop_t *loop, tide__call *call) {
    if (tide__queue_linked(&call->node))
        return;
    if (tide__queue_empty(&loop->ready))
        ev_idle_start(loop->ev, &loop->ready_idle);
    tide__queue_insert_tail(&loop->ready, &call->node);
}

void tide__loop_undefer(tide__call *call) { tide__queue_remove(&call->node); }

/* Runs the calls queued before this drain began; later ones wait for the next. */
static void drain_ready(tide_loop_t *loop) {
    tide__queue batch;
    tide__queue_move(&loop->ready, &batch);
    while (!tide__queue_empty(&batch)) {
        tide__call *call = TIDE__QUEUE_DATA(tide__queue_head(&batch), tide__call, node);
        tide__queue_remove(&call->node);
        double start = tide__loop_debug_enter(loop);
        call->fn(call);
        tide__loop_debug_leave(loop, start, "a scheduled callback");
    }
    if (tide__queue_empty(&loop->ready))
        ev_idle_stop(loop->ev, &loop->ready_idle);
}

static void on_ready_check(struct ev_loop *ev, ev_check *w, int revents) {
    (void)ev;
    (void)revents;
    tide_loop_t *loop = w->data;
#ifdef __linux__
    if (loop->tide_drives)
        return; /* drive_once drains it, once per iteration */
#endif
    drain_ready(loop);
}

static void on_time_check(struct ev_loop *ev, ev_check *w, int revents) {
    (void)ev;
    (void)revents;
    refresh_time(w->data);
}

static void on_ready_idle(struct ev_loop *ev, ev_idle *w, int revents) {
    /* Only here to keep the poll from blocking; the drain runs in ready_check. */
    (void)ev;
    (void)w;
    (void)revents;
}

/* ---- the timer heap -------------------------------------------------------------- */

static bool timer_before(const tide__timer *a, const tide__timer *b) {
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void heap_set(tide_loop_t *loop, size_t i, tide__timer *t) {
    loop->heap[i] = t;
    t->heap_index = i;
}

static void heap_up(tide_loop_t *loop, size_t i) {
    tide__timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(t, loop->heap[parent]))
            break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void heap_down(tide_loop_t *loop, size_t i) {
    tide__timer *t = loop->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= loop->heap_len)
            break;
        if (child + 1 < loop->heap_len && timer_before(loop->heap[child + 1], loop->heap[child]))
            child++;
        if (!timer_before(loop->heap[child], t))
            break;
        heap_set(loop, i, loop->heap[child]);
        i = child;
    }
    heap_set(loop, i, t);
}

static void heap_remove(tide_loop_t *loop, tide__timer *t) {
    size_t i = t->heap_index;
    tide__timer *last = loop->heap[--loop->heap_len];
    t->heap_index = SIZE_MAX;
    if (last == t)
        return;
    heap_set(loop, i, last);
    if (i > 0 && timer_before(last, loop->heap[(i - 1) / 2]))
        heap_up(loop, i);
    else
        heap_down(loop, i);
}

static void heap_rearm(tide_loop_t *loop) {
    if (loop->manual_clock)
        return;
    if (loop->heap_len == 0) {
        ev_timer_stop(loop->ev, &loop->heap_watcher);
        return;
    }
    double delay = loop->heap[0]->when - loop->now;
    if (ev_is_active(&loop->heap_watcher) && ev_timer_remaining(loop->ev, &loop->heap_watcher) == delay)
        return;
    ev_timer_stop(loop->ev, &loop->heap_watcher);
    ev_timer_set(&loop->heap_watcher, delay > 0 ? delay : 0.0, 0.0);
    ev_timer_start(loop->ev, &loop->heap_watcher);
}

/* Fires the timers due at `limit` that were armed before this call began, so a timer
 * re-armed from its own callback waits for the next round. */
static int fire_due(tide_loop_t *loop, double limit) {
    uint64_t seq_limit = loop->timer_seq;
    int fired = 0;
    while (loop->heap_len > 0) {
        tide__timer *t = loop->heap[0];
        if (t->when > limit || t->seq >= seq_limit)
            break;
        heap_remove(loop, t);
        if (loop->manual_clock && t->when > loop->now)
            loop->now = t->when;
        double start = tide__loop_debug_enter(loop);
        t->fn(t);
        tide__loop_debug_leave(loop, start, "a timer callback");
        fired++;
    }
    heap_rearm(loop);
    return fired;
}

static void on_heap_timer(struct ev_loop *ev, ev_timer *w, int revents) {
    (void)ev;
    (void)revents;
    tide_loop_t *loop = w->data;
    refresh_time(loop);
    fire_due(loop, loop->now);
}

void tide__timer_init(tide_loop_t *loop, tide__timer *timer, tide__timer_fn fn) {
    timer->loop = loop;
    timer->fn = fn;
    timer->when = 0;
    timer->seq = 0;
    timer->heap_index = SIZE_MAX;
}

int tide__timer_start_at(tide__timer *timer, double when) {
    tide_loop_t *loop = timer->loop;
    if (tide__timer_active(timer))
        heap_remove(loop, timer);
    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 16;
        tide__timer **heap = realloc(loop->heap, cap * sizeof(*heap));
        if (heap == NULL) {
            heap_rearm(loop);
            return TIDE_ENOMEM;
        }
        loop->heap = heap;
        loop->heap_cap = cap;
    }
    timer->when = when;
    timer->seq = loop->timer_seq++;
    heap_set(loop, loop->heap_len++, timer);
    heap_up(loop, timer->heap_index);
    heap_rearm(loop);
    return 0;
}

/* Outside tide_loop_run the cached time may be old (the program may have blocked
 * elsewhere); a relative delay must count from now, not from then. */
static void refresh_if_idle(tide_loop_t *loop) {
    if (!loop->running)
        refresh_time(loop);
}

int tide__timer_start(tide__timer *timer, double delay) {
    if (!(delay > 0)) /* also catches NaN */
        delay = 0;
    refresh_if_idle(timer->loop);
    return tide__timer_start_at(timer, timer->loop->now + delay);
}

void tide__timer_stop(tide__timer *timer) {
    if (!tide__timer_active(timer))
        return;
    heap_remove(timer->loop, timer);
    heap_rearm(timer->loop);
}

/* ---- public handles -------------------------------------------------------------- */

static void handle_free(tide_handle_t *h) {
    tide__queue_remove(&h->all);
    free(h);
}

static void handle_run(tide_handle_t *h) {
    h->running = true;
    h->cb(h->loop, h->arg);
    handle_free(h);
}

static void handle_call_fn(tide__call *call) {
    handle_run(TIDE__QUEUE_DATA(call, tide_handle_t, call));
}

static void handle_timer_fn(tide__timer *timer) {
    handle_run(TIDE__QUEUE_DATA(timer, tide_handle_t, timer));
}

static tide_handle_t *handle_new(tide_loop_t *loop, tide_call_cb cb, void *arg) {
    if (cb == NULL)
        return NULL;
    tide_handle_t *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->loop = loop;
    h->cb = cb;
    h->arg = arg;
    tide__call_init(&h->call, handle_call_fn);
    tide__timer_init(loop, &h->timer, handle_timer_fn);
    tide__queue_insert_tail(&loop->handles, &h->all);
    return h;
}

tide_handle_t *tide_loop_call_soon(tide_loop_t *loop, tide_call_cb cb, void *arg) {
    tide_handle_t *h = handle_new(loop, cb, arg);
    if (h == NULL)
        return NULL;
    h->when = loop->now;
    tide__loop_defer(loop, &h->call);
    return h;
}

tide_handle_t *tide_loop_call_at(tide_loop_t *loop, double when, tide_call_cb cb, void *arg) {
    tide_handle_t *h = handle_new(loop, cb, arg);
    if (h == NULL)
        return NULL;
    h->is_timer = true;
    h->when = when;
    if (tide__timer_start_at(&h->timer, when) != 0) {
        handle_free(h);
        return NULL;
    }
    return h;
}

tide_handle_t *tide_loop_call_later(tide_loop_t *loop, double delay, tide_call_cb cb, void *arg) {
    if (!(delay > 0))
        delay = 0;
    refresh_if_idle(loop);
    return tide_loop_call_at(loop, loop->now + delay, cb, arg);
}

void tide_handle_cancel(tide_handle_t *h) {
    if (h == NULL || h->running)
        return;
    if (h->is_timer)
        tide__timer_stop(&h->timer);
    else
        tide__loop_undefer(&h->call);
    handle_free(h);
}

double tide_handle_when(const tide_handle_t *h) { return h->when; }

/* ---- thread-safe queue and worker threads ---------------------------------------- */

static tide__ts_item *ts_take_all(tide_loop_t *loop) {
    pthread_mutex_lock(&loop->ts_lock);
    tide__ts_item *items = loop->ts_head;
    loop->ts_head = loop->ts_tail = NULL;
    pthread_mutex_unlock(&loop->ts_lock);
    return items;
}

static void on_wakeup(struct ev_loop *ev, ev_async *w, int revents) {
    (void)ev;
    (void)revents;
    tide_loop_t *loop = w->data;
    tide__ts_item *item = ts_take_all(loop);
    while (item != NULL) {
        tide__ts_item *next = item->next;
        bool internal = item->internal;
        double start = tide__loop_debug_enter(loop);
        item->cb(loop, item->arg);
        tide__loop_debug_leave(loop, start, "a thread-safe callback");
        if (!internal) /* internal items live in their worker, which done() freed */
            free(item);
        item = next;
    }
}

/* Appends under the lock; the caller holds it. */
static void ts_append(tide_loop_t *loop, tide__ts_item *item) {
    item->next = NULL;
    if (loop->ts_tail)
        loop->ts_tail->next = item;
    else
        loop->ts_head = item;
    loop->ts_tail = item;
}

int tide_loop_call_soon_threadsafe(tide_loop_t *loop, tide_call_cb cb, void *arg) {
    if (loop == NULL || cb == NULL)
        return TIDE_EINVAL;
    tide__ts_item *item = malloc(sizeof(*item));
    if (item == NULL)
        return TIDE_ENOMEM;
    item->cb = cb;
    item->arg = arg;
    item->internal = false;
    pthread_mutex_lock(&loop->ts_lock);
    if (loop->ts_closing) {
        pthread_mutex_unlock(&loop->ts_lock);
        free(item);
        return TIDE_ECLOSED;
    }
    ts_append(loop, item);
    ev_async_send(loop->ev, &loop->wakeup);
    wake(loop);
    pthread_mutex_unlock(&loop->ts_lock);
    return 0;
}

/* The worker pool behind tide__loop_run_in_thread (name resolution, executors): threads
 * are started on demand, up to POOL_MAX, when a job finds none idle, and kept until the
 * loop closes, so a busy program does not pay a thread start per blocking call. */
#define POOL_MAX 64

typedef struct tide__worker {
    struct tide__worker *next;
    tide_loop_t *loop;
    void (*work)(void *arg);
    void (*done)(tide_loop_t *loop, void *arg);
    void *arg;
    tide__ts_item item;
} tide__worker;

static void worker_done(tide_loop_t *loop, void *arg) {
    tide__worker *w = arg;
    void (*done)(tide_loop_t *, void *) = w->done;
    void *done_arg = w->arg;
    free(w);
    done(loop, done_arg);
}

/* A pool thread: runs jobs until the loop closes and none is left. The loop's close
 * joins it, so the loop is alive for as long as the thread touches it. */
static void *pool_main(void *arg) {
    tide_loop_t *loop = arg;
    pthread_mutex_lock(&loop->ts_lock);
    for (;;) {
        while (loop->pool_head == NULL && !loop->ts_closing) {
            loop->pool_idle++;
            pthread_cond_wait(&loop->pool_cond, &loop->ts_lock);
            loop->pool_idle--;
        }
        tide__worker *w = loop->pool_head;
        if (w == NULL)
            break; /* closing, and nothing left to run */
        loop->pool_head = w->next;
        if (loop->pool_head == NULL)
            loop->pool_tail = NULL;
        loop->pool_queued--;
        pthread_mutex_unlock(&loop->ts_lock);
        w->work(w->arg);
        /* The item lives inside the job, so posting the completion cannot fail. */
        pthread_mutex_lock(&loop->ts_lock);
        w->item.cb = worker_done;
        w->item.arg = w;
        w->item.internal = true;
        ts_append(loop, &w->item);
        loop->workers--;
        ev_async_send(loop->ev, &loop->wakeup);
        wake(loop);
        pthread_cond_broadcast(&loop->ts_cond);
    }
    pthread_mutex_unlock(&loop->ts_lock);
    return NULL;
}

/* Starts one more pool thread. Under ts_lock. Returns 0 or a pthread error. */
static int pool_grow(tide_loop_t *loop) {
    if (loop->pool_size == loop->pool_cap) {
        size_t cap = loop->pool_cap ? loop->pool_cap * 2 : 4;
        pthread_t *threads = realloc(loop->pool_threads, cap * sizeof(*threads));
        if (threads == NULL)
            return ENOMEM;
        loop->pool_threads = threads;
        loop->pool_cap = cap;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int rc = pthread_create(&loop->pool_threads[loop->pool_size], &attr, pool_main, loop);
    pthread_attr_destroy(&attr);
    if (rc == 0)
        loop->pool_size++;
    return rc;
}

int tide__loop_run_in_thread(tide_loop_t *loop, void (*work)(void *arg),
                             void (*done)(tide_loop_t *loop, void *arg), void *arg) {
    tide__worker *w = malloc(sizeof(*w));
    if (w == NULL)
        return TIDE_ENOMEM;
    w->next = NULL;
    w->loop = loop;
    w->work = work;
    w->done = done;
    w->arg = arg;
    pthread_mutex_lock(&loop->ts_lock);
    /* Jobs already waiting count against the idle threads that will take them. */
    if (loop->pool_queued >= loop->pool_idle && loop->pool_size < POOL_MAX) {
        int rc = pool_grow(loop);
        if (rc != 0 && loop->pool_size == 0) {
            pthread_mutex_unlock(&loop->ts_lock);
            free(w);
            return rc == EAGAIN ? TIDE_EAGAIN : TIDE_ENOMEM;
        }
        /* Otherwise a busy thread takes it later. */
    }
    if (loop->pool_tail != NULL)
        loop->pool_tail->next = w;
    else
        loop->pool_head = w;
    loop->pool_tail = w;
    loop->pool_queued++;
    loop->workers++;
    pthread_cond_signal(&loop->pool_cond);
    pthread_mutex_unlock(&loop->ts_lock);
    return 0;
}

/* ---- signals --------------------------------------------------------------------- */

/* libev lets one loop own a signal at a time; this table enforces it across loops. */
static pthread_mutex_t signal_owner_lock = PTHREAD_MUTEX_INITIALIZER;
static tide_loop_t *signal_owner[NSIG];

#ifdef __linux__
/* The owner's wake-up descriptor plus one, read by the handler (0: none). */
static atomic_int signal_wake_fd[NSIG];

/* Replaces libev's handler: libev's writes its pipe only while libev polls, and tide
 * may be the one waiting. Feeding libev keeps the delivery libev's. */
static void on_os_signal(int signum) {
    int saved = errno;
    ev_feed_signal(signum);
    int fd = atomic_load(&signal_wake_fd[signum]) - 1;
    if (fd >= 0)
        wake_fd_write(fd);
    errno = saved;
}

static void take_os_signal(tide_loop_t *loop, int signum) {
    atomic_store(&signal_wake_fd[signum], loop->wake.fd + 1);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_os_signal;
    sigfillset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* as libev's own */
    sigaction(signum, &sa, NULL);
}
#endif

static void on_signal(struct ev_loop *ev, ev_signal *w, int revents) {
    (void)ev;
    (void)revents;
    tide__signal *s = w->data;
    /* The handler may remove itself, freeing s: keep what is needed afterwards. */
    tide_loop_t *loop = s->loop;
    double start = tide__loop_debug_enter(loop);
    s->cb(loop, w->signum, s->arg);
    tide__loop_debug_leave(loop, start, "a signal handler");
}

static tide__signal **find_signal(tide_loop_t *loop, int signum) {
    tide__signal **p = &loop->signals;
    while (*p && (*p)->watcher.signum != signum)
        p = &(*p)->next;
    return p;
}

int tide_loop_add_signal_handler(tide_loop_t *loop, int signum, tide_signal_cb cb, void *arg) {
    if (signum <= 0 || signum >= NSIG || signum == SIGKILL || signum == SIGSTOP || cb == NULL)
        return TIDE_EINVAL;
    tide__signal **p = find_signal(loop, signum);
    if (*p) {
        (*p)->cb = cb;
        (*p)->arg = arg;
        return 0;
    }
    pthread_mutex_lock(&signal_owner_lock);
    if (signal_owner[signum] != NULL && signal_owner[signum] != loop) {
        pthread_mutex_unlock(&signal_owner_lock);
        return TIDE_EBUSY;
    }
    tide__signal *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        pthread_mutex_unlock(&signal_owner_lock);
        return TIDE_ENOMEM;
    }
    signal_owner[signum] = loop;
    pthread_mutex_unlock(&signal_owner_lock);
    s->loop = loop;
    s->cb = cb;
    s->arg = arg;
    ev_signal_init(&s->watcher, on_signal, signum);
    s->watcher.data = s;
    ev_signal_start(loop->ev, &s->watcher);
    ev_unref(loop->ev); /* a handler alone does not keep the loop running */
#ifdef __linux__
    take_os_signal(loop, signum);
#endif
    s->next = loop->signals;
    loop->signals = s;
    return 0;
}

static void signal_free(tide_loop_t *loop, tide__signal *s) {
    int signum = s->watcher.signum;
#ifdef __linux__
    atomic_store(&signal_wake_fd[signum], 0);
#endif
    ev_ref(loop->ev);
    ev_signal_stop(loop->ev, &s->watcher);
    pthread_mutex_lock(&signal_owner_lock);
    if (signal_owner[signum] == loop)
        signal_owner[signum] = NULL;
    pthread_mutex_unlock(&signal_owner_lock);
    free(s);
}

int tide_loop_remove_signal_handler(tide_loop_t *loop, int signum) {
    if (signum <= 0 || signum >= NSIG)
        return TIDE_EINVAL;
    tide__signal **p = find_signal(loop, signum);
    tide__signal *s = *p;
    if (s == NULL)
        return TIDE_ENOENT;
    *p = s->next;
    signal_free(loop, s);
    return 0;
}

/* ---- creating, running, closing -------------------------------------------------- */

static bool env_debug(void) {
    const char *v = getenv("TIDE_DEBUG");
    return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

/* Starts a watcher that must not keep the loop alive on its own. */
#define TIDE__START_UNREF(loop, kind, w) \
    do {                                 \
        ev_##kind##_start((loop)->ev, w); \
        ev_unref((loop)->ev);            \
    } while (0)

static int loop_init(tide_loop_t **out, struct ev_loop *ev, bool owns_ev) {
    tide_loop_t *loop = calloc(1, sizeof(*loop));
    if (loop == NULL)
        return TIDE_ENOMEM;
    if (ev == NULL) {
        ev = ev_loop_new(EVFLAG_AUTO);
        if (ev == NULL) {
            free(loop);
            return TIDE_ENOMEM;
        }
    }
    loop->ev = ev;
    loop->owns_ev = owns_ev;
#ifdef __linux__
    loop->epfd = -1;
    loop->wake.fd = -1;
    loop->batches = NULL;
#endif
    loop->slow_callback = 0.1;
    loop->hot.debug = env_debug();
    tide__queue_init(&loop->ready);
    tide__queue_init(&loop->handles);
    tide__queue_init(&loop->resources);
    pthread_mutex_init(&loop->ts_lock, NULL);
    pthread_cond_init(&loop->ts_cond, NULL);
    pthread_cond_init(&loop->pool_cond, NULL);
    refresh_time(loop);

    ev_check_init(&loop->time_check, on_time_check);
    ev_set_priority(&loop->time_check, EV_MAXPRI);
    ev_check_init(&loop->ready_check, on_ready_check);
    ev_set_priority(&loop->ready_check, EV_MINPRI);
    ev_idle_init(&loop->ready_idle, on_ready_idle);
    ev_init(&loop->heap_watcher, on_heap_timer);
    ev_async_init(&loop->wakeup, on_wakeup);
    loop->time_check.data = loop->ready_check.data = loop->ready_idle.data = loop;
    loop->heap_watcher.data = loop->wakeup.data = loop;
    TIDE__START_UNREF(loop, check, &loop->time_check);
    TIDE__START_UNREF(loop, check, &loop->ready_check);
    TIDE__START_UNREF(loop, async, &loop->wakeup);
#ifdef __linux__
    /* Made with the loop, like libev's own epoll descriptor, so that descriptor
     * counts do not change when the first socket starts. */
    int rc = epoll_open(loop);
    if (rc != 0) {
        /* Nothing was started on libev for the set yet. */
        if (loop->wake.fd >= 0)
            close(loop->wake.fd);
        if (loop->epfd >= 0)
            close(loop->epfd);
        loop->epfd = loop->wake.fd = -1;
        tide_loop_close(loop);
        return rc;
    }
#endif
    *out = loop;
    return 0;
}

int tide_loop_new(tide_loop_t **loop) {
    if (loop == NULL)
        return TIDE_EINVAL;
    return loop_init(loop, NULL, true);
}

int tide_loop_new_from_ev(struct ev_loop *ev, tide_loop_t **loop) {
    if (ev == NULL || loop == NULL)
        return TIDE_EINVAL;
    return loop_init(loop, ev, false);
}

#ifdef __linux__
/* One iteration while tide drives, in libev's order: apply libev's pending changes,
 * poll, I/O callbacks, timers, what libev itself must deliver (thread-safe calls,
 * signals, listeners and connects, which stay libev watchers), then the ready queue. */
static void drive_once(tide_loop_t *loop, bool may_block) {
    if (loop->ev_dirty) {
        loop->ev_dirty = false;
        ev_run(loop->ev, EVRUN_NOWAIT);
    }
    int timeout_ms = 0;
    if (may_block && !loop->ev_dirty && tide__queue_empty(&loop->ready) && !loop->break_requested) {
        timeout_ms = -1;
        if (loop->heap_len > 0 && !loop->manual_clock) {
            double delay = loop->heap[0]->when - loop->now;
            /* Rounded up: waking early would only wait again. */
            timeout_ms = delay <= 0 ? 0 : delay >= 3600 ? 3600 * 1000 : (int)(delay * 1e3) + 1;
        }
    }
    dispatch(loop, timeout_ms);
    if (timeout_ms == 0)
        refresh_time(loop);
    if (loop->heap_len > 0 && !loop->manual_clock && loop->heap[0]->when <= loop->now)
        fire_due(loop, loop->now);
    if (loop->ev_dirty) {
        loop->ev_dirty = false;
        ev_run(loop->ev, EVRUN_NOWAIT);
    }
    drain_ready(loop);
}

/* What libev's reference count says when libev drives: something keeps the loop. */
static bool alive(const tide_loop_t *loop) {
    return loop->keep_alive > 0 || !tide__queue_empty(&loop->ready) ||
           (loop->heap_len > 0 && !loop->manual_clock);
}

/* tide_loop_run while tide drives; when the application reaches the libev loop from
 * a callback (tide_loop_get_ev), libev takes over for the rest of the run. */
static void drive(tide_loop_t *loop, int flags, bool forever) {
    bool once = (flags & (EVRUN_ONCE | EVRUN_NOWAIT)) != 0;
    loop->break_requested = false;
    do
        drive_once(loop, !(flags & EVRUN_NOWAIT) && (forever || alive(loop)));
    while (loop->tide_drives && !once && !loop->break_requested && (forever || alive(loop)));
    if (!loop->tide_drives && !once && !loop->break_requested)
        ev_run(loop->ev, flags);
}
#endif

int tide_loop_run(tide_loop_t *loop, tide_run_mode_t mode) {
    int flags;
    switch (mode) {
    case TIDE_RUN_DEFAULT:
    case TIDE_RUN_FOREVER:
        flags = 0;
        break;
    case TIDE_RUN_ONCE:
        flags = EVRUN_ONCE;
        break;
    case TIDE_RUN_NOWAIT:
        flags = EVRUN_NOWAIT;
        break;
    default:
        return TIDE_EINVAL;
    }
    if (loop->running)
        return TIDE_EBUSY;
    loop->running = true;
    refresh_time(loop);
    if (loop->stop_requested) {
        /* asyncio: stop() before run_forever() still runs one iteration. */
        loop->stop_requested = false;
        flags = EVRUN_NOWAIT;
    }
    if (mode == TIDE_RUN_FOREVER)
        ev_ref(loop->ev);
#ifdef __linux__
    if (loop->tide_drives)
        drive(loop, flags, mode == TIDE_RUN_FOREVER);
    else
#endif
        ev_run(loop->ev, flags);
    if (mode == TIDE_RUN_FOREVER)
        ev_unref(loop->ev);
    loop->running = false;
    return 0;
}

void tide_loop_stop(tide_loop_t *loop) {
    if (loop->running) {
#ifdef __linux__
        loop->break_requested = true;
#endif
        ev_break(loop->ev, EVBREAK_ALL);
    } else
        loop->stop_requested = true;
}

bool tide_loop_is_running(const tide_loop_t *loop) { return loop->running; }

int tide_loop_use_manual_clock(tide_loop_t *loop, double start) {
    if (loop->heap_len > 0)
        return TIDE_EBUSY;
    loop->manual_clock = true;
    loop->now = start;
    ev_timer_stop(loop->ev, &loop->heap_watcher);
    return 0;
}

int tide_loop_advance(tide_loop_t *loop, double seconds) {
    if (!loop->manual_clock)
        return TIDE_EINVAL;
    double target = loop->now + (seconds > 0 ? seconds : 0);
    int fired = 0;
    /* Fire in rounds so a timer armed by a callback for a time still before the target
     * fires in this advance too, as the clock passes it. */
    for (;;) {
        int n = fire_due(loop, target);
        if (n == 0)
            break;
        fired += n;
    }
    loop->now = target;
    for (int i = 0; i < 64 && !tide__queue_empty(&loop->ready); i++)
        drain_ready(loop);
    return fired;
}

static void describe_open(tide_loop_t *loop) {
    tide__queue *n;
    size_t count = 0;
    TIDE__QUEUE_FOREACH(n, &loop->resources) {
        tide__resource *res = TIDE__QUEUE_DATA(n, tide__resource, node);
        char text[256] = "resource";
        if (res->describe)
            res->describe(res, text, sizeof(text));
        tide__log(loop, TIDE_LOG_WARNING, "loop closed with %s still open", text);
        count++;
    }
    tide__log(loop, TIDE_LOG_WARNING, "tide_loop_close: %zu resource(s) still open", count);
}

int tide_loop_close(tide_loop_t *loop) {
    if (loop == NULL)
        return 0;
    if (loop->running)
        return TIDE_EBUSY;
    if (!tide__queue_empty(&loop->resources)) {
        describe_open(loop);
        return TIDE_EBUSY;
    }
    /* Workers may still be resolving names for requests already cancelled: wait for
     * them, then run their completions, which only free what they own. */
    pthread_mutex_lock(&loop->ts_lock);
    loop->ts_closing = true;
    pthread_cond_broadcast(&loop->pool_cond);
    while (loop->workers > 0)
        pthread_cond_wait(&loop->ts_cond, &loop->ts_lock);
    pthread_mutex_unlock(&loop->ts_lock);
    for (size_t i = 0; i < loop->pool_size; i++)
        pthread_join(loop->pool_threads[i], NULL);
    free(loop->pool_threads);
    loop->pool_threads = NULL;
    loop->pool_size = loop->pool_cap = 0;
    tide__ts_item *item = ts_take_all(loop);
    while (item != NULL) {
        tide__ts_item *next = item->next;
        if (item->internal) {
            item->cb(loop, item->arg);
        } else {
            free(item);
        }
        item = next;
    }
    if (!tide__queue_empty(&loop->resources)) {
        /* A completion reopened something; report it rather than free it under them. */
        describe_open(loop);
        return TIDE_EBUSY;
    }

    size_t dropped = 0;
    while (!tide__queue_empty(&loop->handles)) {
        tide_handle_t *h = TIDE__QUEUE_DATA(tide__queue_head(&loop->handles), tide_handle_t, all);
        tide_handle_cancel(h);
        dropped++;
    }
    if (dropped > 0 && loop->hot.debug)
        tide__log(loop, TIDE_LOG_DEBUG, "tide_loop_close: dropped %zu scheduled callback(s)", dropped);

    while (loop->signals) {
        tide__signal *s = loop->signals;
        loop->signals = s->next;
        signal_free(loop, s);
    }
    ev_ref(loop->ev);
    ev_check_stop(loop->ev, &loop->time_check);
    ev_ref(loop->ev);
    ev_check_stop(loop->ev, &loop->ready_check);
    ev_ref(loop->ev);
    ev_async_stop(loop->ev, &loop->wakeup);
    ev_idle_stop(loop->ev, &loop->ready_idle);
    ev_timer_stop(loop->ev, &loop->heap_watcher);
#ifdef __linux__
    if (loop->epfd >= 0) {
        if (!loop->tide_drives) {
            ev_ref(loop->ev);
            ev_io_stop(loop->ev, &loop->ep_watcher);
        }
        close(loop->epfd);
    }
    if (loop->wake.fd >= 0)
        close(loop->wake.fd);
#endif
    if (loop->owns_ev)
        ev_loop_destroy(loop->ev);
    pthread_mutex_destroy(&loop->ts_lock);
    pthread_cond_destroy(&loop->ts_cond);
    pthread_cond_destroy(&loop->pool_cond);
    free(loop->heap);
    free(loop->hot.scratch);
    free(loop);
    return 0;
}
