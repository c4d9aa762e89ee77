/* Stream test helpers; see streams.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "support/streams.h"
#include "support/tls.h"
#include "support/support.h"

void st_rd_cb(tide_reader_t *r, int status, const void *data, size_t len, void *arg) {
    (void)r;
    st_rd *x = arg;
    x->calls++;
    x->status = status;
    x->had_data = data != NULL;
    free(x->buf);
    x->buf = malloc(len + 1);
    assert_non_null(x->buf);
    if (data)
        memcpy(x->buf, data, len);
    x->buf[len] = '\0';
    x->len = len;
}

void st_rd_reset(st_rd *x) {
    free(x->buf);
    memset(x, 0, sizeof(*x));
}

bool st_rd_done(void *arg) { return ((st_rd *)arg)->calls > 0; }

void st_spin(tide_loop_t *loop, int n) {
    for (int i = 0; i < n; i++)
        tide_loop_run(loop, TIDE_RUN_NOWAIT);
}

void st_expect(tide_loop_t *loop, st_rd *x, int status, const char *bytes) {
    ts_run_until(loop, st_rd_done, x, 5);
    assert_int_equal(x->calls, 1);
    assert_int_equal(x->status, status);
    if (bytes == NULL) {
        assert_false(x->had_data);
        assert_int_equal(x->len, 0);
    } else {
        assert_true(x->had_data);
        assert_int_equal(x->len, strlen(bytes));
        assert_memory_equal(x->buf, bytes, x->len);
    }
    st_rd_reset(x);
}

void st_wr_cb(tide_writer_t *w, int status, void *arg) {
    (void)w;
    st_wr *x = arg;
    x->calls++;
    x->status = status;
}

bool st_wr_done(void *arg) { return ((st_wr *)arg)->calls > 0; }

static bool both_made(void *arg) {
    st_pair *p = arg;
    return (p->a->flags & TIDE__S_MADE) && (p->b->flags & TIDE__S_MADE);
}

bool st_pair_lost(void *arg) {
    st_pair *p = arg;
    return p->lost_a.calls > 0 && p->lost_b.calls > 0;
}

bool st_over_tls(void) {
    const char *over = getenv("TIDE_TEST_STREAMS_OVER");
    return over != NULL && strcmp(over, "tls") == 0;
}

void st_plain_only(void) {
    if (st_over_tls())
        skip();
}

static bool both_upgraded(void *arg) {
    st_wr *x = arg;
    return x[0].calls > 0 && x[1].calls > 0;
}

/* Both streams go through start_tls (a the client verifying "localhost", b the
 * server), so the suites that use pairs also run over TLS (over the memory pair). */
static void upgrade_pair(st_pair *p) {
    st_wr x[2] = {{0}, {0}};
    assert_int_equal(tide_writer_start_tls(p->a, tt_tls_connect_options()->tls, "localhost", NULL,
                                           st_wr_cb, &x[0]),
                     0);
    assert_int_equal(
        tide_writer_start_tls(p->b, tt_tls_server_options()->tls, NULL, NULL, st_wr_cb, &x[1]), 0);
    ts_run_until(p->loop, both_upgraded, x, 10);
    assert_int_equal(x[0].status, 0);
    assert_int_equal(x[1].status, 0);
    assert_true(tide_transport_is_tls(tide_writer_get_transport(p->a)));
}

void st_pair_open(st_pair *p, size_t limit) {
    memset(p, 0, sizeof(*p));
    p->loop = ts_loop_new();
    p->a = tide__stream_new(p->loop, limit);
    p->b = tide__stream_new(p->loop, limit);
    assert_non_null(p->a);
    assert_non_null(p->b);
    assert_int_equal(tide_memory_pair_new(p->loop, &p->a->proto, &p->b->proto, &p->ta, &p->tb), 0);
    ts_run_until(p->loop, both_made, p, 5);
    assert_ptr_equal(tide_writer_get_transport(p->a), p->ta);
    assert_ptr_equal(tide_writer_get_transport(p->b), p->tb);
    if (st_over_tls())
        upgrade_pair(p);
    assert_int_equal(tide_writer_wait_closed(p->a, st_wr_cb, &p->lost_a), 0);
    assert_int_equal(tide_writer_wait_closed(p->b, st_wr_cb, &p->lost_b), 0);
}

void st_pair_close(st_pair *p) {
    tide_writer_close(p->a);
    tide_writer_close(p->b);
    ts_run_until(p->loop, st_pair_lost, p, 5);
    st_spin(p->loop, 2); /* the streams free themselves from a deferred call */
    ts_loop_close(p->loop);
}

typedef struct at_least {
    tide_reader_t *r;
    size_t n;
} at_least;

static bool has_buffered(void *arg) {
    at_least *b = arg;
    return tide_reader_buffered(b->r) >= b->n;
}

void st_wait_buffered(tide_loop_t *loop, tide_reader_t *r, size_t n) {
    at_least b = {r, n};
    ts_run_until(loop, has_buffered, &b, 5);
}
