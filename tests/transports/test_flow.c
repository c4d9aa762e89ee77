/* Write flow control on the socket transport: a 64 MiB echo through a slow reader
 * with the exact pause/resume_writing sequence checked, the watermark rules, the
 * hard cap on the write buffer, and writelines over many small buffers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "support/sock.h"
#include "support/support.h"
#include "transports/transport_int.h"

#define CHUNK (64 * 1024)

/* ---- the 64 MiB echo ------------------------------------------------------------ */

/* Writes `total` pattern bytes in CHUNK writes whenever not paused, then write_eof;
 * checks every pause/resume against the watermarks and checksums the echo. */
typedef struct sender {
    tide_protocol_t base;
    tide_transport_t *t;
    uint64_t total;
    uint64_t sent;
    uint64_t sent_sum;
    uint64_t got;
    uint64_t got_sum;
    bool paused;
    int pauses, resumes;
    int bad_order;   /* pause while paused, resume while not paused */
    int bad_pause;   /* pause_writing with size <= high */
    int bad_resume;  /* resume_writing with size > low */
    int bad_size;    /* the buffer above high + one write after a write */
    size_t max_size; /* largest buffer seen after a write */
    int eofs, lost, status;
    unsigned char chunk[CHUNK];
} sender;

static sender *as_sender(tide_protocol_t *p) { return TIDE_CONTAINER_OF(p, sender, base); }

static void pump(sender *s) {
    size_t low, high;
    tide_transport_get_write_buffer_limits(s->t, &low, &high);
    while (!s->paused && s->sent < s->total && !tide_transport_is_closing(s->t)) {
        size_t n = s->total - s->sent < CHUNK ? (size_t)(s->total - s->sent) : CHUNK;
        sk_pattern(s->chunk, n, s->sent);
        s->sent_sum = ts_fnv1a(s->chunk, n, s->sent_sum);
        s->sent += n;
        /* pause_writing may run inside this write. */
        assert_int_equal(tide_transport_write(s->t, s->chunk, n), 0);
        size_t size = tide_transport_get_write_buffer_size(s->t);
        if (size > s->max_size)
            s->max_size = size;
        if (size > high + n)
            s->bad_size++;
        if (s->sent == s->total)
            assert_int_equal(tide_transport_write_eof(s->t), 0);
    }
}

static void s_made(tide_protocol_t *p, tide_transport_t *t) {
    sender *s = as_sender(p);
    s->t = t;
    pump(s);
}

static void s_data(tide_protocol_t *p, const void *data, size_t len) {
    sender *s = as_sender(p);
    s->got += len;
    s->got_sum = ts_fnv1a(data, len, s->got_sum);
}

static bool s_eof(tide_protocol_t *p) {
    as_sender(p)->eofs++;
    return false;
}

static void s_lost(tide_protocol_t *p, int status) {
    sender *s = as_sender(p);
    s->lost++;
    s->status = status;
}

static void s_pause(tide_protocol_t *p) {
    sender *s = as_sender(p);
    size_t low, high;
    tide_transport_get_write_buffer_limits(s->t, &low, &high);
    if (s->paused)
        s->bad_order++;
    if (tide_transport_get_write_buffer_size(s->t) <= high)
        s->bad_pause++;
    s->paused = true;
    s->pauses++;
}

static void s_resume(tide_protocol_t *p) {
    sender *s = as_sender(p);
    size_t low, high;
    tide_transport_get_write_buffer_limits(s->t, &low, &high);
    if (!s->paused)
        s->bad_order++;
    if (tide_transport_get_write_buffer_size(s->t) > low)
        s->bad_resume++;
    s->paused = false;
    s->resumes++;
    pump(s); /* writing from inside resume_writing is allowed */
}

static const tide_protocol_ops_t sender_ops = {
    .size = TIDE_PROTOCOL_OPS_SIZE,
    .connection_made = s_made,
    .data_received = s_data,
    .eof_received = s_eof,
    .connection_lost = s_lost,
    .pause_writing = s_pause,
    .resume_writing = s_resume,
};

/* Echoes everything back, but reads slowly: it stops reading for a millisecond after
 * every `burst` bytes, and whenever its own writes are paused (the usual echo
 * back-pressure), so both directions fill up and drain again and again. */
typedef struct echoer {
    tide_protocol_t base;
    tide_transport_t *t;
    tide_loop_t *loop;
    size_t burst;
    size_t since_nap;
    bool out_paused;
    bool napping;
    tide_handle_t *wake;
    uint64_t got;
    int naps, pauses;
    int lost, status;
} echoer;

static echoer *as_echoer(tide_protocol_t *p) { return TIDE_CONTAINER_OF(p, echoer, base); }

static void e_update(echoer *e) {
    if (e->out_paused || e->napping)
        tide_transport_pause_reading(e->t);
    else
        tide_transport_resume_reading(e->t);
}

static void e_wake(tide_loop_t *loop, void *arg) {
    (void)loop;
    echoer *e = arg;
    e->wake = NULL;
    e->napping = false;
    e_update(e);
}

static void e_made(tide_protocol_t *p, tide_transport_t *t) { as_echoer(p)->t = t; }

static void e_data(tide_protocol_t *p, const void *data, size_t len) {
    echoer *e = as_echoer(p);
    e->got += len;
    assert_int_equal(tide_transport_write(e->t, data, len), 0);
    e->since_nap += len;
    if (e->since_nap >= e->burst && !e->napping && !tide_transport_is_closing(e->t)) {
        e->since_nap = 0;
        e->napping = true;
        e->naps++;
        e->wake = tide_loop_call_later(e->loop, 0.001, e_wake, e);
        assert_non_null(e->wake);
        e_update(e);
    }
}

static void e_pause(tide_protocol_t *p) {
    echoer *e = as_echoer(p);
    e->out_paused = true;
    e->pauses++;
    e_update(e);
}

static void e_resume(tide_protocol_t *p) {
    echoer *e = as_echoer(p);
    e->out_paused = false;
    e_update(e);
}

static void e_lost(tide_protocol_t *p, int status) {
    echoer *e = as_echoer(p);
    e->lost++;
    e->status = status;
    tide_handle_cancel(e->wake);
    e->wake = NULL;
}

/* eof_received left NULL: asyncio's default, which closes (after the echo flushed). */
static const tide_protocol_ops_t echoer_ops = {
    .size = TIDE_PROTOCOL_OPS_SIZE,
    .connection_made = e_made,
    .data_received = e_data,
    .connection_lost = e_lost,
    .pause_writing = e_pause,
    .resume_writing = e_resume,
};

typedef struct pair_done {
    sender *s;
    echoer *e;
} pair_done;

static bool echo_finished(void *arg) {
    pair_done *d = arg;
    return d->s->lost && d->e->lost;
}

static void echo_through_slow_reader(tide_loop_t *loop, sk_kind kind, uint64_t total) {
    sender *s = calloc(1, sizeof(*s));
    echoer e;
    assert_non_null(s);
    memset(&e, 0, sizeof(e));
    s->base.ops = &sender_ops;
    s->total = total;
    s->sent_sum = s->got_sum = TS_FNV_SEED;
    e.base.ops = &echoer_ops;
    e.loop = loop;
    e.burst = 1u << 20;
    int c, sv;
    assert_true(sk_raw_pair(kind, &c, &sv));
    /* The echoer first, so it reads from the start. */
    sk_wrap(loop, sv, &e.base, true);
    sk_wrap(loop, c, &s->base, false);
    pair_done d = {s, &e};
    ts_run_until(loop, echo_finished, &d, 60);

    assert_int_equal(s->sent, total);
    assert_int_equal(e.got, total);
    assert_int_equal(s->got, total);
    assert_true(s->got_sum == s->sent_sum);
    assert_int_equal(s->eofs, 1);
    assert_int_equal(s->status, 0);
    assert_int_equal(e.status, 0);
    /* Flow control really ran, and by the rules. (The echoer's own pauses depend on
     * how fast the sender drains, so they are allowed but not required.) */
    assert_true(s->pauses > 0);
    assert_true(e.naps > 0);
    assert_int_equal(s->bad_order, 0);
    assert_int_equal(s->bad_pause, 0);
    assert_int_equal(s->bad_resume, 0);
    assert_int_equal(s->bad_size, 0);
    /* Everything drained before the end, so every pause had its resume. */
    assert_int_equal(s->resumes, s->pauses);
    assert_true(s->max_size <= TIDE__DEFAULT_HIGH_WATER + CHUNK);
    free(s);
}

static void test_echo_64mib_tcp(void **state) {
    echo_through_slow_reader(SK_LOOP(state), SK_TCP4, 64u << 20);
}

static void test_echo_8mib_unix(void **state) {
    echo_through_slow_reader(SK_LOOP(state), SK_SOCKETPAIR, 8u << 20);
}

/* ---- watermarks ----------------------------------------------------------------- */

static void expect_limits(tide_transport_t *t, size_t low, size_t high) {
    size_t l = 1, h = 1;
    tide_transport_get_write_buffer_limits(t, &l, &h);
    assert_int_equal(l, low);
    assert_int_equal(h, high);
}

/* Checklist 10 and reliability B1's limit rules. */
static void test_watermark_rules(void **state) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    expect_limits(d->ta, 16384, 65536);
    assert_int_equal(tide_transport_set_write_buffer_limits(d->ta, 100, -1), 0);
    expect_limits(d->ta, 25, 100);
    assert_int_equal(tide_transport_set_write_buffer_limits(d->ta, -1, 10), 0);
    expect_limits(d->ta, 10, 40);
    assert_int_equal(tide_transport_set_write_buffer_limits(d->ta, 10, 20), TIDE_EINVAL);
    expect_limits(d->ta, 10, 40); /* unchanged */
    assert_int_equal(tide_transport_set_write_buffer_limits(d->ta, 0, -1), 0);
    expect_limits(d->ta, 0, 0);
    assert_int_equal(tide_transport_set_write_buffer_limits(d->ta, -1, -1), 0);
    expect_limits(d->ta, 16384, 65536);
    assert_int_equal(d->a.pauses, 0);
    tide_transport_close(d->ta);
    ts_run_until(d->loop, ts_pred_lost, &d->b, 5);
    ts_run_until(d->loop, ts_pred_lost, &d->a, 5);
}

/* Lowering high below what is queued pauses at once, inside the call; raising it
 * again never resumes from there (asyncio's socket rule): only draining does. */
static void test_lower_high_pauses_at_once(void **state) {
    ts_duo *d = sk_open(state, SK_TCP4);
    tide_transport_pause_reading(d->tb);
    uint64_t off = 0;
    size_t written = sk_fill(d->ta, 4096, &off);
    size_t queued = tide_transport_get_write_buffer_size(d->ta);
    assert_true(queued > 0 && queued <= 4096);
    assert_int_equal(d->a.pauses, 0);
    assert_int_equal(tide_transport_set_write_buffer_limits(d->ta, (long)queued, 0), 0);
    assert_int_equal(d->a.pauses, 0); /* size == high is not above it */
    assert_int_equal(tide_transport_set_write_buffer_limits(d->ta, (long)queued - 1, 0), 0);
    assert_int_equal(d->a.pauses, 1);
    assert_int_equal(tide_transport_set_write_buffer_limits(d->ta, 1 << 20, -1), 0);
    assert_int_equal(d->a.resumes, 0);
    assert_int_equal(tide_transport_set_write_buffer_limits(d->ta, 1 << 20, 0), 0);
    tide_transport_resume_reading(d->tb);
    sk_run_until_count(d->loop, &d->a.resumes, 1);
    assert_int_equal(d->a.resumes, 1);
    assert_int_equal(tide_transport_get_write_buffer_size(d->ta), 0); /* low was 0 */
    tide_transport_close(d->ta);
    ts_run_until(d->loop, ts_pred_lost, &d->b, 5);
    assert_int_equal(d->b.len, written);
    assert_string_equal(d->a.events, "MPRL");
}

/* The hard cap: a write that would queue beyond it is refused whole with ENOBUFS and
 * leaves the queue as it was; what was accepted still arrives, byte for byte. */
static void test_max_write_buffer(void **state) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    tide_transport_pause_reading(d->tb);
    const size_t cap = 100000;
    tide_transport_set_max_write_buffer_size(d->ta, cap);
    uint64_t off = 0;
    size_t written = sk_fill(d->ta, 4096, &off);
    size_t queued = tide_transport_get_write_buffer_size(d->ta);
    unsigned char *buf = malloc(cap);
    assert_non_null(buf);
    size_t room = cap - queued;
    sk_pattern(buf, room + 1, off);
    assert_int_equal(tide_transport_write(d->ta, buf, room + 1), TIDE_ENOBUFS);
    assert_int_equal(tide_transport_get_write_buffer_size(d->ta), queued);
    tide_iovec_t v[2] = {{buf, room}, {buf + room, 1}};
    assert_int_equal(tide_transport_writelines(d->ta, v, 2), TIDE_ENOBUFS);
    assert_int_equal(tide_transport_get_write_buffer_size(d->ta), queued);
    assert_int_equal(tide_transport_write(d->ta, buf, room), 0);
    off += room;
    written += room;
    assert_int_equal(tide_transport_get_write_buffer_size(d->ta), cap);
    assert_int_equal(tide_transport_write(d->ta, "x", 1), TIDE_ENOBUFS);
    assert_int_equal(d->a.pauses, 1); /* cap above high: pause_writing came first */
    free(buf);
    tide_transport_close(d->ta);
    tide_transport_resume_reading(d->tb);
    ts_run_until(d->loop, ts_pred_lost, &d->b, 5);
    sk_expect_pattern(&d->b, written);
    ts_run_until(d->loop, ts_pred_lost, &d->a, 5);
    assert_int_equal(d->a.lost_status, 0);
}

/* ---- writelines ------------------------------------------------------------------ */

#define NBUFS 3000 /* several IOV_MAX batches */

/* Cuts pattern bytes [off, ...) into NBUFS pieces of 0..36 bytes. */
static size_t make_pieces(unsigned char *store, tide_iovec_t *v, uint64_t off) {
    size_t total = 0;
    for (size_t i = 0; i < NBUFS; i++) {
        size_t len = (i * 7) % 37; /* includes empty pieces */
        v[i].base = store + total;
        v[i].len = len;
        total += len;
    }
    sk_pattern(store, total, off);
    return total;
}

static void test_writelines_many_small(void **state) {
    ts_duo *d = sk_open(state, SK_TCP4);
    static unsigned char store[NBUFS * 37];
    static tide_iovec_t v[NBUFS];
    uint64_t off = 0;

    /* Nothing queued: straight to the socket, in IOV_MAX batches. */
    size_t n = make_pieces(store, v, off);
    assert_int_equal(tide_transport_writelines(d->ta, v, NBUFS), 0);
    off += n;
    assert_int_equal(tide_transport_get_write_buffer_size(d->ta), 0);

    /* Only empty pieces: nothing to do. */
    tide_iovec_t empty[3] = {{"", 0}, {NULL, 0}, {"", 0}};
    assert_int_equal(tide_transport_writelines(d->ta, empty, 3), 0);
    assert_int_equal(tide_transport_writelines(d->ta, NULL, 0), 0);
    tide_iovec_t no_base[2] = {{"x", 1}, {NULL, 1}};
    assert_int_equal(tide_transport_writelines(d->ta, no_base, 2), TIDE_EINVAL);

    /* With the peer not reading: the rest is copied into the queue, in order. */
    tide_transport_pause_reading(d->tb);
    sk_fill(d->ta, 8192, &off);
    size_t before = tide_transport_get_write_buffer_size(d->ta);
    n = make_pieces(store, v, off);
    v[37 * 40].base = NULL; /* an empty piece (every 37th is) with no base, queued */
    assert_int_equal(tide_transport_writelines(d->ta, v, NBUFS), 0);
    off += n;
    assert_int_equal(tide_transport_get_write_buffer_size(d->ta), before + n);

    tide_transport_resume_reading(d->tb);
    tide_transport_close(d->ta);
    ts_run_until(d->loop, ts_pred_lost, &d->b, 10);
    sk_expect_pattern(&d->b, off);
    ts_run_until(d->loop, ts_pred_lost, &d->a, 5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        TS_DUO_TEST(test_echo_64mib_tcp),
        TS_DUO_TEST(test_echo_8mib_unix),
        TS_DUO_TEST(test_watermark_rules),
        TS_DUO_TEST(test_lower_high_pauses_at_once),
        TS_DUO_TEST(test_max_write_buffer),
        TS_DUO_TEST(test_writelines_many_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
