/* The event loop (tide/loop.h, tide/ev.h): call_soon ordering and iteration
 * boundaries, cancellation, timers, run modes and stop, the thread-safe wake-up,
 * signal handlers, debug-mode reports through a replaced log handler, close refusing
 * while something is open, attaching to an existing libev loop, and descriptors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/socket.h>

#include "core/core_int.h"
#include "support/support.h"
#include "tide/ev.h"

/* ---- helpers ---------------------------------------------------------------------- */

/* Appends a letter per callback, so order is one string comparison. */
typedef struct trace {
    char s[64];
    size_t n;
} trace;

typedef struct step {
    trace *tr;
    char c;
    double ran_at;
    tide_handle_t *self;
    tide_handle_t *other;
} step;

static void trace_add(trace *tr, char c) {
    assert_true(tr->n + 1 < sizeof(tr->s));
    tr->s[tr->n++] = c;
    tr->s[tr->n] = '\0';
}

static void step_cb(tide_loop_t *loop, void *arg) {
    step *st = arg;
    st->ran_at = tide_loop_time(loop);
    trace_add(st->tr, st->c);
}

static void set_flag(tide_loop_t *loop, void *arg) {
    (void)loop;
    *(int *)arg += 1;
}

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Collects what the loop logs. */
typedef struct log_sink {
    char text[4096];
    int count;
    int warnings;
} log_sink;

static void sink_cb(tide_loop_t *loop, tide_log_level_t level, const char *msg, void *arg) {
    (void)loop;
    log_sink *s = arg;
    s->count++;
    if (level >= TIDE_LOG_WARNING)
        s->warnings++;
    size_t used = strlen(s->text);
    snprintf(s->text + used, sizeof(s->text) - used, "%s\n", msg);
}

/* ---- call_soon ---------------------------------------------------------------------- */

static void test_call_soon_fifo(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    trace tr = {0};
    step st[5];
    for (int i = 0; i < 5; i++) {
        st[i] = (step){.tr = &tr, .c = (char)('a' + i)};
        assert_non_null(tide_loop_call_soon(loop, step_cb, &st[i]));
    }
    assert_int_equal(tr.n, 0); /* never inside the scheduling call */
    assert_null(tide_loop_call_soon(loop, NULL, NULL));
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_DEFAULT), 0);
    assert_string_equal(tr.s, "abcde");
    ts_loop_close(loop);
}

typedef struct nested {
    trace tr;
    step inner;
    tide_loop_t *loop;
} nested;

static void outer_cb(tide_loop_t *loop, void *arg) {
    nested *n = arg;
    trace_add(&n->tr, 'o');
    assert_non_null(tide_loop_call_soon(loop, step_cb, &n->inner));
}

static void test_call_soon_from_callback_runs_next_iteration(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    nested n = {.loop = loop};
    n.inner = (step){.tr = &n.tr, .c = 'i'};
    step after = {.tr = &n.tr, .c = 'a'};
    assert_non_null(tide_loop_call_soon(loop, outer_cb, &n));
    assert_non_null(tide_loop_call_soon(loop, step_cb, &after));
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_NOWAIT), 0);
    /* 'a' was queued before the drain began; 'i' only during it. */
    assert_string_equal(n.tr.s, "oa");
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_NOWAIT), 0);
    assert_string_equal(n.tr.s, "oai");
    ts_loop_close(loop);
}

static void cancel_other_cb(tide_loop_t *loop, void *arg) {
    step *st = arg;
    step_cb(loop, st);
    tide_handle_cancel(st->other);
}

static void cancel_self_cb(tide_loop_t *loop, void *arg) {
    step *st = arg;
    step_cb(loop, st);
    tide_handle_cancel(st->self); /* a no-op: the callback already started */
}

static void test_cancel(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    trace tr = {0};
    step a = {.tr = &tr, .c = 'a'}, b = {.tr = &tr, .c = 'b'}, c = {.tr = &tr, .c = 'c'};
    step d = {.tr = &tr, .c = 'd'}, e = {.tr = &tr, .c = 'e'};
    tide_handle_t *ha = tide_loop_call_soon(loop, step_cb, &a);
    assert_non_null(ha);
    tide_handle_cancel(ha); /* before it ran */
    tide_handle_cancel(NULL);
    /* b cancels c, which is in the same batch but has not started. */
    assert_non_null(tide_loop_call_soon(loop, cancel_other_cb, &b));
    b.other = tide_loop_call_soon(loop, step_cb, &c);
    d.self = tide_loop_call_soon(loop, cancel_self_cb, &d);
    /* A timer cancelled before it is due. */
    tide_handle_t *he = tide_loop_call_later(loop, 0.01, step_cb, &e);
    assert_non_null(he);
    tide_handle_cancel(he);
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_DEFAULT), 0);
    assert_string_equal(tr.s, "bd");
    ts_loop_close(loop);
}

/* ---- timers ------------------------------------------------------------------------- */

static void test_call_later_order(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    trace tr = {0};
    step s3 = {.tr = &tr, .c = '3'}, s1 = {.tr = &tr, .c = '1'}, s2 = {.tr = &tr, .c = '2'};
    step e1 = {.tr = &tr, .c = 'x'}, e2 = {.tr = &tr, .c = 'y'}, e3 = {.tr = &tr, .c = 'z'};
    step zero = {.tr = &tr, .c = '0'};
    tide_handle_t *h3 = tide_loop_call_later(loop, 0.06, step_cb, &s3);
    assert_non_null(h3);
    /* Outside run, call_later counts from a refreshed time, so a program that blocked
     * before scheduling does not get an early timer. */
    double now = tide_loop_time(loop);
    assert_true(tide_handle_when(h3) == now + 0.06);
    assert_non_null(tide_loop_call_later(loop, 0.02, step_cb, &s1));
    assert_non_null(tide_loop_call_later(loop, 0.04, step_cb, &s2));
    /* Equal deadlines run in scheduling order. */
    double when = now + 0.03;
    assert_non_null(tide_loop_call_at(loop, when, step_cb, &e1));
    assert_non_null(tide_loop_call_at(loop, when, step_cb, &e2));
    assert_non_null(tide_loop_call_at(loop, when, step_cb, &e3));
    assert_non_null(tide_loop_call_later(loop, -1.0, step_cb, &zero)); /* counts as 0 */
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_DEFAULT), 0);
    assert_string_equal(tr.s, "01xyz23");
    /* Never early, by the loop's own clock. */
    assert_true(s1.ran_at >= now + 0.02);
    assert_true(e1.ran_at >= when);
    assert_true(s3.ran_at >= now + 0.06);
    ts_loop_close(loop);
}

static void test_call_at_and_time(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    trace tr = {0};
    step s = {.tr = &tr, .c = 'a'};
    double t0 = tide_loop_time(loop);
    assert_true(t0 > 0);
    tide_handle_t *h = tide_loop_call_at(loop, t0 + 0.05, step_cb, &s);
    assert_non_null(h);
    assert_true(tide_handle_when(h) == t0 + 0.05);
    double last = t0;
    while (tr.n == 0) {
        assert_int_equal(tide_loop_run(loop, TIDE_RUN_ONCE), 0);
        double t = tide_loop_time(loop);
        assert_true(t >= last); /* monotonic */
        last = t;
    }
    assert_true(s.ran_at >= t0 + 0.05);
    /* The loop's time is CLOCK_MONOTONIC: real time has passed the deadline too. */
    assert_true(mono_now() >= t0 + 0.05);
    /* call_soon handles report the scheduling time. */
    tide_handle_t *hs = tide_loop_call_soon(loop, step_cb, &s);
    assert_true(tide_handle_when(hs) == tide_loop_time(loop));
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_DEFAULT), 0);
    ts_loop_close(loop);
}

/* ---- run modes and stop ------------------------------------------------------------- */

static void test_run_default_returns_when_idle(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_DEFAULT), 0);
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_NOWAIT), 0);
    assert_int_equal(tide_loop_run(loop, (tide_run_mode_t)99), TIDE_EINVAL);
    assert_false(tide_loop_is_running(loop));
    /* A pending timer keeps DEFAULT running until it fired. */
    int fired = 0;
    assert_non_null(tide_loop_call_later(loop, 0.02, set_flag, &fired));
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_DEFAULT), 0);
    assert_int_equal(fired, 1);
    assert_int_equal(tide_loop_close(NULL), 0);
    ts_loop_close(loop);
}

typedef struct stopper {
    tide_loop_t *loop;
    int runs;
    int nested_rc;
    int close_rc;
    bool running_inside;
} stopper;

/* Reschedules itself (up to a 4th run, so nothing is left at close): only stop ends
 * the first run. */
static void forever_cb(tide_loop_t *loop, void *arg) {
    stopper *s = arg;
    s->runs++;
    s->running_inside = tide_loop_is_running(loop);
    s->nested_rc = tide_loop_run(loop, TIDE_RUN_NOWAIT);
    s->close_rc = tide_loop_close(loop);
    if (s->runs == 3)
        tide_loop_stop(loop);
    if (s->runs < 4)
        assert_non_null(tide_loop_call_soon(loop, forever_cb, s));
}

static void test_stop_from_callback(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    stopper s = {.loop = loop};
    assert_non_null(tide_loop_call_soon(loop, forever_cb, &s));
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_DEFAULT), 0);
    assert_int_equal(s.runs, 3);
    assert_true(s.running_inside);
    assert_int_equal(s.nested_rc, TIDE_EBUSY);
    assert_int_equal(s.close_rc, TIDE_EBUSY);
    assert_false(tide_loop_is_running(loop));
    /* The rescheduled callback is still pending and runs on the next run. */
    tide_loop_stop(loop); /* before run: one iteration runs, then it returns */
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_FOREVER), 0);
    assert_int_equal(s.runs, 4);
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_DEFAULT), 0); /* nothing left */
    assert_int_equal(s.runs, 4);
    ts_loop_close(loop);
}

/* FOREVER keeps running with nothing pending; another thread stops it through the
 * thread-safe queue once the loop told it (through a semaphore-like condition) that
 * it is running. */
typedef struct forever_ctx {
    tide_loop_t *loop;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool loop_started;
    int stopped;
    int post_rc;
} forever_ctx;

static void started_cb(tide_loop_t *loop, void *arg) {
    (void)loop;
    forever_ctx *c = arg;
    pthread_mutex_lock(&c->lock);
    c->loop_started = true;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static void stop_cb(tide_loop_t *loop, void *arg) {
    forever_ctx *c = arg;
    c->stopped++;
    tide_loop_stop(loop);
}

/* On another thread: returns once started_cb ran, i.e. the loop is running. */
static void wait_loop_started(forever_ctx *c) {
    pthread_mutex_lock(&c->lock);
    while (!c->loop_started)
        pthread_cond_wait(&c->cond, &c->lock);
    pthread_mutex_unlock(&c->lock);
}

static void *stopper_thread(void *arg) {
    forever_ctx *c = arg;
    wait_loop_started(c);
    c->post_rc = tide_loop_call_soon_threadsafe(c->loop, stop_cb, c);
    return NULL;
}

static void test_run_forever_until_stop(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    forever_ctx c = {.loop = loop};
    pthread_mutex_init(&c.lock, NULL);
    pthread_cond_init(&c.cond, NULL);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stopper_thread, &c), 0);
    assert_non_null(tide_loop_call_soon(loop, started_cb, &c));
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_FOREVER), 0);
    pthread_join(th, NULL);
    assert_int_equal(c.post_rc, 0);
    assert_int_equal(c.stopped, 1);
    pthread_cond_destroy(&c.cond);
    pthread_mutex_destroy(&c.lock);
    ts_loop_close(loop);
}

/* ---- thread-safe wake-up ------------------------------------------------------------ */

#define POSTERS 4
#define POSTS 200

typedef struct post_ctx {
    tide_loop_t *loop;
    int seen[POSTERS];
    int order_errors;
    int total;
    int failures;
} post_ctx;

typedef struct post_item {
    post_ctx *ctx;
    int thread;
    int seq;
} post_item;

static post_item items[POSTERS][POSTS];

static void post_cb(tide_loop_t *loop, void *arg) {
    (void)loop;
    post_item *it = arg;
    post_ctx *c = it->ctx;
    /* Each thread's posts arrive in the order it made them. */
    if (c->seen[it->thread] != it->seq)
        c->order_errors++;
    c->seen[it->thread] = it->seq + 1;
    c->total++;
}

typedef struct poster_arg {
    post_ctx *ctx;
    int thread;
} poster_arg;

static void *poster(void *arg) {
    poster_arg *pa = arg;
    for (int i = 0; i < POSTS; i++) {
        post_item *it = &items[pa->thread][i];
        *it = (post_item){pa->ctx, pa->thread, i};
        if (tide_loop_call_soon_threadsafe(pa->ctx->loop, post_cb, it) != 0)
            __atomic_fetch_add(&pa->ctx->failures, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static bool all_posted(void *arg) {
    post_ctx *c = arg;
    return c->total == POSTERS * POSTS;
}

static void *single_post(void *arg) {
    post_ctx *c = arg;
    c->failures += tide_loop_call_soon_threadsafe(c->loop, set_flag, &c->total) != 0;
    return NULL;
}

static void test_call_soon_threadsafe_wakes_loop(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    assert_int_equal(tide_loop_call_soon_threadsafe(loop, NULL, NULL), TIDE_EINVAL);

    /* One post wakes a loop blocked in ONCE long before the guard timer. */
    post_ctx one = {.loop = loop};
    int guard = 0;
    tide_handle_t *h = tide_loop_call_later(loop, ts_scaled(10), set_flag, &guard);
    assert_non_null(h);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, single_post, &one), 0);
    while (one.total == 0 && guard == 0)
        assert_int_equal(tide_loop_run(loop, TIDE_RUN_ONCE), 0);
    pthread_join(th, NULL);
    assert_int_equal(guard, 0);
    assert_int_equal(one.total, 1);
    assert_int_equal(one.failures, 0);
    tide_handle_cancel(h);

    /* Many threads, many posts: none lost, each thread's order kept. */
    post_ctx many = {.loop = loop};
    pthread_t threads[POSTERS];
    poster_arg args[POSTERS];
    for (int i = 0; i < POSTERS; i++) {
        args[i] = (poster_arg){&many, i};
        assert_int_equal(pthread_create(&threads[i], NULL, poster, &args[i]), 0);
    }
    for (int i = 0; i < POSTERS; i++)
        pthread_join(threads[i], NULL);
    ts_run_until(loop, all_posted, &many, 10);
    assert_int_equal(many.failures, 0);
    assert_int_equal(many.order_errors, 0);
    ts_loop_close(loop);
}

/* ---- signals ------------------------------------------------------------------------ */

typedef struct sig_ctx {
    int calls;
    int signum;
    void *arg;
    bool on_loop_thread;
    pthread_t loop_thread;
} sig_ctx;

static void sig_cb(tide_loop_t *loop, int signum, void *arg) {
    (void)loop;
    sig_ctx *c = arg;
    c->calls++;
    c->signum = signum;
    c->arg = arg;
    c->on_loop_thread = pthread_equal(pthread_self(), c->loop_thread);
}

static void test_signal_handler(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    sig_ctx c = {.loop_thread = pthread_self()};
    assert_int_equal(tide_loop_add_signal_handler(loop, SIGKILL, sig_cb, &c), TIDE_EINVAL);
    assert_int_equal(tide_loop_add_signal_handler(loop, 0, sig_cb, &c), TIDE_EINVAL);
    assert_int_equal(tide_loop_remove_signal_handler(loop, SIGUSR1), TIDE_ENOENT);
    assert_int_equal(tide_loop_add_signal_handler(loop, SIGUSR1, sig_cb, &c), 0);
    /* A handler alone does not keep DEFAULT running. */
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_DEFAULT), 0);
    assert_int_equal(c.calls, 0);

    /* One loop per signal. */
    tide_loop_t *other = ts_loop_new();
    assert_int_equal(tide_loop_add_signal_handler(other, SIGUSR1, sig_cb, &c), TIDE_EBUSY);
    ts_loop_close(other);

    assert_int_equal(raise(SIGUSR1), 0);
    assert_int_equal(c.calls, 0); /* never in the signal context */
    ts_run_until_flag(loop, &c.calls, 5);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.signum, SIGUSR1);
    assert_ptr_equal(c.arg, &c);
    assert_true(c.on_loop_thread);

    assert_int_equal(tide_loop_remove_signal_handler(loop, SIGUSR1), 0);
    assert_int_equal(tide_loop_remove_signal_handler(loop, SIGUSR1), TIDE_ENOENT);
    struct sigaction now;
    assert_int_equal(sigaction(SIGUSR1, NULL, &now), 0);
    assert_true(now.sa_handler == SIG_DFL);
    ts_loop_close(loop);
}

/* A signal sent while the loop waits with nothing else to do must wake it: the loop's
 * own wait is not libev's, so this fails if only libev's pipe were written. A watchdog
 * timer turns a missed wake-up into a failure instead of a hang. */
typedef struct sig_wait_ctx {
    forever_ctx f;
    int got;
    int watchdog_fired;
} sig_wait_ctx;

static void sig_wait_cb(tide_loop_t *loop, int signum, void *arg) {
    (void)signum;
    sig_wait_ctx *c = arg;
    c->got++;
    tide_loop_stop(loop);
}

static void watchdog_cb(tide_loop_t *loop, void *arg) {
    sig_wait_ctx *c = arg;
    c->watchdog_fired++;
    tide_loop_stop(loop);
}

static void *signaller_thread(void *arg) {
    sig_wait_ctx *c = arg;
    wait_loop_started(&c->f);
    c->f.post_rc = kill(getpid(), SIGUSR2);
    return NULL;
}

static void test_signal_wakes_waiting_loop(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    sig_wait_ctx c = {.f = {.loop = loop}};
    pthread_mutex_init(&c.f.lock, NULL);
    pthread_cond_init(&c.f.cond, NULL);
    assert_int_equal(tide_loop_add_signal_handler(loop, SIGUSR2, sig_wait_cb, &c), 0);
    tide_handle_t *dog = tide_loop_call_later(loop, 5.0, watchdog_cb, &c);
    assert_non_null(dog);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, signaller_thread, &c), 0);
    assert_non_null(tide_loop_call_soon(loop, started_cb, &c.f));
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_FOREVER), 0);
    pthread_join(th, NULL);
    assert_int_equal(c.f.post_rc, 0);
    assert_int_equal(c.got, 1);
    assert_int_equal(c.watchdog_fired, 0);
    tide_handle_cancel(dog);
    assert_int_equal(tide_loop_remove_signal_handler(loop, SIGUSR2), 0);
    pthread_cond_destroy(&c.f.cond);
    pthread_mutex_destroy(&c.f.lock);
    ts_loop_close(loop);
}

/* Reaching the libev loop from inside a run hands the rest of the run to libev: a
 * libev timer started from a callback fires, and tide's own work goes on. */
typedef struct takeover_ctx {
    ev_timer t;
    int ev_fired;
    int tide_fired;
} takeover_ctx;

static void takeover_ev_cb(struct ev_loop *ev, ev_timer *w, int revents) {
    (void)ev;
    (void)revents;
    ((takeover_ctx *)w->data)->ev_fired++;
}

static void takeover_tide_cb(tide_loop_t *loop, void *arg) {
    (void)loop;
    ((takeover_ctx *)arg)->tide_fired++;
}

static void takeover_start_cb(tide_loop_t *loop, void *arg) {
    takeover_ctx *c = arg;
    ev_timer_init(&c->t, takeover_ev_cb, 0.01, 0.0);
    c->t.data = c;
    ev_timer_start(tide_loop_get_ev(loop), &c->t);
    assert_non_null(tide_loop_call_later(loop, 0.02, takeover_tide_cb, c));
}

static void test_libev_takes_over_mid_run(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    takeover_ctx c = {0};
    assert_non_null(tide_loop_call_soon(loop, takeover_start_cb, &c));
    /* DEFAULT returns once nothing keeps the loop: the libev timer keeps libev
     * running until it fired, tide's timer keeps it until then. */
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_DEFAULT), 0);
    assert_int_equal(c.ev_fired, 1);
    assert_int_equal(c.tide_fired, 1);
    ts_loop_close(loop);
}

/* ---- debug mode --------------------------------------------------------------------- */

/* Deliberately runs for 150 ms, measured, so the slow-callback report must appear. */
static void slow_cb(tide_loop_t *loop, void *arg) {
    (void)loop;
    (void)arg;
    double start = mono_now();
    while (mono_now() - start < 0.15) {
    }
}

/* A new loop in debug mode, logging into sink. */
static tide_loop_t *debug_loop(log_sink *sink) {
    tide_loop_t *loop = ts_loop_new();
    tide_loop_set_log_handler(loop, sink_cb, sink);
    tide_loop_set_debug(loop, true);
    return loop;
}

static void test_debug_reports_slow_callback(void **state) {
    (void)state;
    log_sink sink = {0};
    tide_loop_t *loop = debug_loop(&sink);
    assert_true(tide_loop_get_debug(loop));
    tide_loop_set_slow_callback_duration(loop, 0.1);

    int quick = 0;
    assert_non_null(tide_loop_call_soon(loop, set_flag, &quick));
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_DEFAULT), 0);
    assert_int_equal(quick, 1);
    assert_int_equal(sink.warnings, 0);

    assert_non_null(tide_loop_call_soon(loop, slow_cb, NULL));
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_DEFAULT), 0);
    assert_int_equal(sink.warnings, 1);
    assert_non_null(strstr(sink.text, "took"));

    /* Off again: the same callback is not reported. */
    tide_loop_set_debug(loop, false);
    assert_false(tide_loop_get_debug(loop));
    assert_non_null(tide_loop_call_soon(loop, slow_cb, NULL));
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_DEFAULT), 0);
    assert_int_equal(sink.warnings, 1);

    /* tide_loop_log goes through the same handler. */
    tide_loop_log(loop, TIDE_LOG_INFO, "hello %d", 42);
    assert_non_null(strstr(sink.text, "hello 42"));
    tide_loop_set_log_handler(loop, NULL, NULL);
    ts_loop_close(loop);
}

static void test_close_refuses_while_transport_open(void **state) {
    (void)state;
    log_sink sink = {0};
    tide_loop_t *loop = debug_loop(&sink);
    ts_duo d;
    ts_duo_init(&d, loop);
    assert_int_equal(tide_memory_pair_new(loop, &d.a.base, &d.b.base, &d.ta, NULL), 0);
    /* Open transports keep DEFAULT running: here until both are made and stopped. */
    ts_run_until(loop, ts_pred_duo_made, &d, 5);

    assert_int_equal(tide_loop_close(loop), TIDE_EBUSY);
    assert_non_null(strstr(sink.text, "memory transport"));
    assert_true(sink.warnings >= 2); /* each transport is reported */

    /* The loop is still usable: finish the connection and close again. */
    tide_transport_close(d.ta);
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_DEFAULT), 0); /* returns once both are gone */
    assert_true(ts_pred_duo_lost(&d));
    ts_duo_free(&d);
    ts_loop_close(loop);
}

/* ---- libev integration -------------------------------------------------------------- */

static void ev_timer_fired(struct ev_loop *ev, ev_timer *w, int revents) {
    (void)ev;
    (void)revents;
    *(int *)w->data += 1;
}

static void test_attach_to_ev_loop(void **state) {
    (void)state;
    struct ev_loop *ev = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(ev);
    tide_loop_t *loop = NULL;
    assert_int_equal(tide_loop_new_from_ev(NULL, &loop), TIDE_EINVAL);
    assert_int_equal(tide_loop_new_from_ev(ev, &loop), 0);
    assert_ptr_equal(tide_loop_get_ev(loop), ev);

    trace tr = {0};
    step soon = {.tr = &tr, .c = 's'}, later = {.tr = &tr, .c = 'l'};
    assert_non_null(tide_loop_call_later(loop, 0.02, step_cb, &later));
    assert_non_null(tide_loop_call_soon(loop, step_cb, &soon));
    /* The application drives the loop with libev itself. */
    ev_run(ev, 0);
    assert_string_equal(tr.s, "sl");
    ts_loop_close(loop);

    /* ev is still the caller's and still works. */
    int fired = 0;
    ev_timer t;
    ev_timer_init(&t, ev_timer_fired, 0.01, 0.0);
    t.data = &fired;
    ev_timer_start(ev, &t);
    ev_run(ev, 0);
    assert_int_equal(fired, 1);
    ev_loop_destroy(ev);

    /* A tide-owned loop reports its own libev loop. */
    tide_loop_t *own = ts_loop_new();
    assert_non_null(tide_loop_get_ev(own));
    ts_loop_close(own);
}

/* ---- descriptors -------------------------------------------------------------------- */

static void test_no_fd_leak(void **state) {
    (void)state;
    int before = ts_count_fds();
    assert_true(before > 0);
    for (int i = 0; i < 20; i++) {
        tide_loop_t *loop = ts_loop_new();
        int flag = 0;
        assert_int_equal(tide_loop_add_signal_handler(loop, SIGUSR2, sig_cb, &(sig_ctx){0}), 0);
        assert_int_equal(tide_loop_call_soon_threadsafe(loop, set_flag, &flag), 0);
        ts_run_until_flag(loop, &flag, 5);
        assert_non_null(tide_loop_call_later(loop, 0.001, set_flag, &flag));
        assert_int_equal(tide_loop_run(loop, TIDE_RUN_DEFAULT), 0);
        assert_int_equal(flag, 2);
        ts_loop_close(loop); /* also removes the signal handler */
    }
    assert_int_equal(ts_count_fds(), before);
}

/* tide__io: two readable descriptors in one dispatch batch; whichever runs first
 * stops the other and poisons its memory, which must then never be called (the
 * dispatch forgets an io that left the set). Stopping, not closing, is the rule. */
typedef struct io_pair {
    tide__io io[2];
    int calls[2];
} io_pair;

static io_pair *the_pair;

static void io_stop_other(tide__io *io, unsigned events) {
    assert_true(events & TIDE__IO_READ);
    int me = io == &the_pair->io[0] ? 0 : 1;
    the_pair->calls[me]++;
    tide__io *other = &the_pair->io[1 - me];
    tide__io_stop(other, TIDE__IO_READ);
    tide__io_stop(io, TIDE__IO_READ);
    tide_loop_t *loop = other->loop;
    memset(other, 0xa5, sizeof(*other)); /* a freed io: calling it would crash */
    other->loop = loop;
}

static void test_io_stopped_in_dispatch(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    io_pair pair = {0};
    the_pair = &pair;
    int sv[2][2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]), 0);
        assert_int_equal(write(sv[i][1], "x", 1), 1);
        tide__io_init(loop, &pair.io[i], sv[i][0], io_stop_other);
        assert_int_equal(tide__io_start(&pair.io[i], TIDE__IO_READ), 0);
    }
    assert_int_equal(tide_loop_run(loop, TIDE_RUN_NOWAIT), 0);
    assert_int_equal(pair.calls[0] + pair.calls[1], 1);
    for (int i = 0; i < 2; i++) {
        close(sv[i][0]);
        close(sv[i][1]);
    }
    ts_loop_close(loop);
}

/* The default log handler writes to stderr without ever waiting: with stderr a pipe
 * that nobody drains, lines are dropped and counted, and the first line that gets
 * through once there is room says how many were lost. A blocking write would hang
 * here; the alarm bounds that (its default action ends the test as a failure). */
static void test_default_log_never_blocks(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    int saved = dup(STDERR_FILENO), p[2];
    assert_true(saved >= 0);
    assert_int_equal(pipe(p), 0);
    assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
    /* Fill the pipe through a non-blocking description, then make it blocking again. */
    assert_int_equal(fcntl(p[1], F_SETFL, O_NONBLOCK), 0);
    static char fill[4096];
    memset(fill, 'x', sizeof fill);
    while (write(p[1], fill, sizeof fill) > 0)
        ;
    assert_int_equal(fcntl(p[1], F_SETFL, 0), 0);
    assert_true(dup2(p[1], STDERR_FILENO) == STDERR_FILENO);
    alarm(10);
    for (int i = 0; i < 3; i++)
        tide_loop_log(loop, TIDE_LOG_WARNING, "dropped line %d", i);
    alarm(0);
    char got[256];
    ssize_t n;
    while ((n = read(p[0], fill, sizeof fill)) > 0)
        assert_true(memchr(fill, 't', (size_t)n) == NULL); /* only the filler was there */
    tide_loop_log(loop, TIDE_LOG_WARNING, "this one gets through");
    n = read(p[0], got, sizeof got - 1);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(p[0]);
    close(p[1]);
    assert_true(n > 0);
    got[n] = '\0';
    assert_string_equal(got, "tide: warning: 3 log line(s) dropped: stderr was full\n"
                             "tide: warning: this one gets through\n");
    ts_loop_close(loop);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_call_soon_fifo),
        cmocka_unit_test(test_call_soon_from_callback_runs_next_iteration),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_call_later_order),
        cmocka_unit_test(test_call_at_and_time),
        cmocka_unit_test(test_run_default_returns_when_idle),
        cmocka_unit_test(test_stop_from_callback),
        cmocka_unit_test(test_run_forever_until_stop),
        cmocka_unit_test(test_call_soon_threadsafe_wakes_loop),
        cmocka_unit_test(test_signal_handler),
        cmocka_unit_test(test_signal_wakes_waiting_loop),
        cmocka_unit_test(test_libev_takes_over_mid_run),
        cmocka_unit_test(test_debug_reports_slow_callback),
        cmocka_unit_test(test_close_refuses_while_transport_open),
        cmocka_unit_test(test_attach_to_ev_loop),
        cmocka_unit_test(test_no_fd_leak),
        cmocka_unit_test(test_io_stopped_in_dispatch),
        cmocka_unit_test(test_default_log_never_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
