/* Shared test support; see support.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/support.h"
#include "transports/transport_int.h"

double ts_scaled(double seconds) {
    const char *m = getenv("TIDE_TEST_TIMEOUT_MULTIPLIER");
    double k = m ? atof(m) : 1.0;
    return seconds * (k > 0 ? k : 1.0);
}

tide_loop_t *ts_loop_new(void) {
    tide_loop_t *loop = NULL;
    assert_int_equal(tide_loop_new(&loop), 0);
    assert_non_null(loop);
    return loop;
}

void ts_loop_close(tide_loop_t *loop) {
    int rc = tide_loop_close(loop);
    if (rc != 0) {
        /* Give pending closes a bounded chance to finish, then insist. */
        for (int i = 0; i < 100 && rc != 0; i++) {
            tide_loop_run(loop, TIDE_RUN_NOWAIT);
            rc = tide_loop_close(loop);
        }
    }
    assert_int_equal(rc, 0);
}

static void deadline_hit(tide_loop_t *loop, void *arg) {
    (void)loop;
    *(int *)arg = 1;
}

void ts_run_until(tide_loop_t *loop, bool (*pred)(void *arg), void *arg, double seconds) {
    int expired = 0;
    tide_handle_t *h = tide_loop_call_later(loop, ts_scaled(seconds), deadline_hit, &expired);
    assert_non_null(h);
    while (!pred(arg) && !expired)
        tide_loop_run(loop, TIDE_RUN_ONCE);
    if (!expired)
        tide_handle_cancel(h);
    if (!pred(arg))
        fail_msg("ts_run_until: condition not reached within %.1f s", ts_scaled(seconds));
}

static bool flag_set(void *arg) { return *(const int *)arg != 0; }

void ts_run_until_flag(tide_loop_t *loop, const int *flag, double seconds) {
    ts_run_until(loop, flag_set, (void *)flag, seconds);
}

void ts_spin(tide_loop_t *loop, int n) {
    for (int i = 0; i < n; i++)
        tide_loop_run(loop, TIDE_RUN_NOWAIT);
}

int ts_count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory stream itself */
}

void ts_finish(tide_loop_t *loop, int fds_before) {
    tide__sys_reset();
    ts_loop_close(loop);
    assert_int_equal(ts_count_fds(), fds_before);
}

/* ---- recorder ---- */

static ts_recorder *rec(tide_protocol_t *p) { return TIDE_CONTAINER_OF(p, ts_recorder, base); }

static void note(ts_recorder *r, char ev) {
    if (r->lost && ev != 0)
        r->violations++;
    if (!r->made && ev != 'M')
        r->violations++;
    if (r->nevents + 1 < sizeof(r->events))
        r->events[r->nevents++] = ev;
    r->events[r->nevents] = '\0';
}

static void append(ts_recorder *r, const void *data, size_t len) {
    if (r->len + len > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + len)
            cap *= 2;
        r->data = realloc(r->data, cap);
        assert_non_null(r->data);
        r->cap = cap;
    }
    memcpy(r->data + r->len, data, len);
    r->len += len;
}

/* An event that may happen once: a second one is a violation. */
static void note_once(ts_recorder *r, int *count, char ev) {
    if (*count)
        r->violations++;
    note(r, ev);
    (*count)++;
}

static void rec_made(tide_protocol_t *p, tide_transport_t *t) {
    ts_recorder *r = rec(p);
    note_once(r, &r->made, 'M');
    r->transport = t;
    if (r->on_made)
        r->on_made(r);
}

static void rec_data_common(ts_recorder *r, const void *data, size_t len) {
    if (len == 0 || r->eofs)
        r->violations++;
    /* Collapse runs of D so long transfers keep the event string readable. */
    if (r->nevents == 0 || r->events[r->nevents - 1] != 'D')
        note(r, 'D');
    else if (!r->made || r->lost)
        r->violations++;
    append(r, data, len);
    if (r->echo && r->transport)
        tide_transport_write(r->transport, data, len);
    if (r->on_data)
        r->on_data(r, data, len);
}

static void rec_data(tide_protocol_t *p, const void *data, size_t len) {
    rec_data_common(rec(p), data, len);
}

static bool rec_eof(tide_protocol_t *p) {
    ts_recorder *r = rec(p);
    note_once(r, &r->eofs, 'E');
    if (r->on_eof)
        return r->on_eof(r);
    return r->keep_open_on_eof;
}

static void rec_lost(tide_protocol_t *p, int status) {
    ts_recorder *r = rec(p);
    note_once(r, &r->lost, 'L');
    r->lost_status = status;
    if (r->on_lost)
        r->on_lost(r, status);
}

static void rec_pause(tide_protocol_t *p) {
    ts_recorder *r = rec(p);
    if (r->pauses != r->resumes)
        r->violations++;
    note(r, 'P');
    r->pauses++;
    if (r->on_pause)
        r->on_pause(r);
}

static void rec_resume(tide_protocol_t *p) {
    ts_recorder *r = rec(p);
    if (r->pauses != r->resumes + 1)
        r->violations++;
    note(r, 'R');
    r->resumes++;
    if (r->on_resume)
        r->on_resume(r);
}

static unsigned char window[4096];

static void *rec_get_buffer(tide_protocol_t *p, size_t hint, size_t *len) {
    (void)p;
    (void)hint;
    *len = sizeof(window);
    return window;
}

static void rec_buffer_updated(tide_protocol_t *p, size_t n) { rec_data_common(rec(p), window, n); }

static const tide_protocol_ops_t rec_ops = {
    .size = TIDE_PROTOCOL_OPS_SIZE,
    .connection_made = rec_made,
    .data_received = rec_data,
    .eof_received = rec_eof,
    .connection_lost = rec_lost,
    .pause_writing = rec_pause,
    .resume_writing = rec_resume,
};

static const tide_protocol_ops_t rec_buffered_ops = {
    .size = TIDE_PROTOCOL_OPS_SIZE,
    .connection_made = rec_made,
    .eof_received = rec_eof,
    .connection_lost = rec_lost,
    .pause_writing = rec_pause,
    .resume_writing = rec_resume,
    .get_buffer = rec_get_buffer,
    .buffer_updated = rec_buffer_updated,
};

void ts_recorder_init(ts_recorder *r) {
    memset(r, 0, sizeof(*r));
    r->base.ops = &rec_ops;
    r->lost_status = 1; /* "not yet" */
}

void ts_recorder_init_buffered(ts_recorder *r) {
    ts_recorder_init(r);
    r->base.ops = &rec_buffered_ops;
}

void ts_recorder_free(ts_recorder *r) {
    free(r->data);
    r->data = NULL;
    r->len = r->cap = 0;
}

static tide_protocol_t *pool_next(void *arg) {
    ts_recorder_pool *pool = arg;
    if (pool->used >= pool->count)
        return NULL;
    return &pool->items[pool->used++].base;
}

tide_protocol_factory_cb ts_recorder_factory(void) { return pool_next; }

bool ts_pred_made(void *r) { return ((ts_recorder *)r)->made > 0; }
bool ts_pred_lost(void *r) { return ((ts_recorder *)r)->lost > 0; }
bool ts_pred_eof(void *r) { return ((ts_recorder *)r)->eofs > 0; }

/* ---- duo ---- */

void ts_duo_init(ts_duo *d, tide_loop_t *loop) {
    memset(d, 0, sizeof(*d));
    d->loop = loop;
    ts_recorder_init(&d->a);
    ts_recorder_init(&d->b);
}

void ts_duo_free(ts_duo *d) {
    assert_int_equal(d->a.violations, 0);
    assert_int_equal(d->b.violations, 0);
    ts_recorder_free(&d->a);
    ts_recorder_free(&d->b);
}

bool ts_pred_duo_made(void *duo) {
    ts_duo *d = duo;
    return d->a.made && d->b.made;
}

bool ts_pred_duo_lost(void *duo) {
    ts_duo *d = duo;
    return d->a.lost && d->b.lost;
}

int ts_duo_setup(void **state) {
    ts_duo *d = malloc(sizeof(*d));
    assert_non_null(d);
    int fds = ts_count_fds();
    ts_duo_init(d, ts_loop_new());
    d->fds_before = fds;
    *state = d;
    return 0;
}

int ts_duo_teardown(void **state) {
    ts_duo *d = *state;
    ts_finish(d->loop, d->fds_before);
    ts_duo_free(d);
    free(d);
    return 0;
}

uint64_t ts_fnv1a(const void *data, size_t len, uint64_t h) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* ---- tasks ---- */

void ts_on_joined(tide_task_t *task, int result, void *arg) {
    ts_joined *j = arg;
    j->calls++;
    j->result = result;
    j->task = task;
}

tide_task_t *ts_spawn_joined(tide_loop_t *loop, tide_task_fn fn, void *arg, ts_joined *j) {
    tide_task_t *t = NULL;
    memset(j, 0, sizeof(*j));
    assert_int_equal(tide_task_spawn(loop, fn, arg, NULL, &t), 0);
    assert_non_null(t);
    assert_int_equal(tide_task_join(t, ts_on_joined, j), 0);
    return t;
}

int ts_run_task(tide_loop_t *loop, tide_task_fn fn, void *arg) {
    ts_joined j;
    ts_spawn_joined(loop, fn, arg, &j);
    ts_run_until_flag(loop, &j.calls, 10);
    return j.result;
}

/* A limit the compiler cannot see through, so the recursion is not folded away. */
static volatile int recursion_limit = 1 << 30;

static __attribute__((noinline)) int recurse(int depth) {
    volatile char pad[256];
    pad[0] = (char)depth;
    if (depth >= recursion_limit)
        return pad[0];
    return recurse(depth + 1) + pad[0]; /* not a tail call */
}

int ts_overflow_task(void *arg) {
    (void)arg;
    return recurse(0);
}
