/* Framing protocols (include/tide/framing.h): lines and length-prefixed frames through
 * tide_protocol_feed split at every byte, pause and resume mid-chunk (what was received
 * is kept and delivered after resume, in order, never inside the resume call), the
 * limits, and a real exchange over the memory pair with a receiver that pauses after
 * every frame, an EOF held back while paused, and an oversized frame failing the
 * connection with TIDE_EFRAME_TOO_LARGE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "support/support.h"

typedef struct rx {
    tide_framing_t framing;
    char log[8192]; /* each record followed by '|' */
    size_t len;
    int records;
    int pause_every; /* pause after every n-th record (0: never) */
    int eofs;
    int lost;
    int lost_status;
    char rest_at_lost[64];
    size_t rest_at_lost_len;
    bool in_call; /* a user call of the test is running */
} rx;

static rx *as_rx(tide_framing_t *f) { return TIDE_CONTAINER_OF(f, rx, framing); }

static void record(tide_framing_t *f, const void *data, size_t len) {
    rx *r = as_rx(f);
    assert_false(r->in_call); /* never called back from inside the test's own call */
    assert_true(r->len + len + 1 <= sizeof r->log);
    memcpy(r->log + r->len, data, len);
    r->len += len;
    r->log[r->len++] = '|';
    r->log[r->len] = '\0';
    r->records++;
    if (r->pause_every && r->records % r->pause_every == 0)
        tide_framing_pause(f);
}

static void on_line(tide_framing_t *f, const char *line, size_t len) { record(f, line, len); }

static bool on_eof(tide_framing_t *f) {
    rx *r = as_rx(f);
    assert_false(tide_framing_is_paused(f));
    r->eofs++;
    return false;
}

static void on_lost(tide_framing_t *f, int status) {
    rx *r = as_rx(f);
    r->lost++;
    r->lost_status = status;
    const void *rest = tide_framing_rest(f, &r->rest_at_lost_len);
    assert_true(r->rest_at_lost_len <= sizeof r->rest_at_lost);
    if (rest)
        memcpy(r->rest_at_lost, rest, r->rest_at_lost_len);
}

static const tide_framing_ops_t rx_ops = {.size = TIDE_FRAMING_OPS_SIZE,
                                          .line_received = on_line,
                                          .frame_received = record,
                                          .eof_received = on_eof,
                                          .connection_lost = on_lost};

static void rx_init(rx *r, tide_loop_t *loop, tide_framing_kind_t kind, size_t max) {
    memset(r, 0, sizeof *r);
    assert_int_equal(tide_framing_init(&r->framing, loop, kind, max, &rx_ops), 0);
}

/* Feeds in two pieces split at `cut`, pausing after each record when asked and
 * resuming through the loop; returns the log. */
static void feed_split(rx *r, tide_loop_t *loop, const char *in, size_t len, size_t cut) {
    /* Feeding delivers at once, as a transport's read does; resume never does. */
    assert_int_equal(tide_protocol_feed(&r->framing.base, in, cut), 0);
    assert_int_equal(tide_protocol_feed(&r->framing.base, in + cut, len - cut), 0);
    for (int guard = 0; tide_framing_is_paused(&r->framing) && guard < 1000; guard++) {
        r->in_call = true;
        assert_int_equal(tide_framing_resume(&r->framing), 0);
        r->in_call = false;
        ts_spin(loop, 1);
    }
}

typedef struct fcase {
    tide_framing_kind_t kind;
    size_t max;
    const char *in;
    size_t in_len; /* 0: strlen */
    const char *want;
    const char *rest;
    size_t rest_len; /* 0: strlen */
} fcase;

static const fcase fcases[] = {
    {TIDE_FRAMING_LINES, 16, "one\r\ntwo\nthree\r\n\r\n\nlast", 0, "one|two|three|||", "last", 0},
    {TIDE_FRAMING_LINES, 5, "12345\r\n12345\n", 0, "12345|12345|", "", 0},
    {TIDE_FRAMING_LINES_CRLF, 16, "a\nb\r\nc\r\n\r\nd\r", 0, "a\nb|c||", "d\r", 0},
    {TIDE_FRAMING_PREFIX8, 255,
     "\x03"
     "abc\x00\x01z",
     7, "abc||z|", "", 0},
    {TIDE_FRAMING_PREFIX16, 1000, "\x00\x02hi\x00\x00\x00\x05hello\x00", 14, "hi||hello|", "\x00",
     1},
    {TIDE_FRAMING_PREFIX32, 1 << 20, "\x00\x00\x00\x01x\x00\x00\x00\x03yyy\x00\x00", 14, "x|yyy|",
     "\x00\x00", 2},
};

static void test_split_everywhere(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    for (size_t i = 0; i < sizeof fcases / sizeof fcases[0]; i++) {
        const fcase *c = &fcases[i];
        size_t len = c->in_len ? c->in_len : strlen(c->in);
        for (int pause = 0; pause <= 2; pause++) {
            for (size_t cut = 0; cut <= len; cut++) {
                rx r;
                rx_init(&r, loop, c->kind, c->max);
                r.pause_every = pause;
                feed_split(&r, loop, c->in, len, cut);
                if (strcmp(r.log, c->want) != 0)
                    fail_msg("case %zu pause %d cut %zu: got '%s' want '%s'", i, pause, cut, r.log,
                             c->want);
                size_t rest_len;
                const void *rest = tide_framing_rest(&r.framing, &rest_len);
                assert_int_equal(rest_len, c->rest_len ? c->rest_len : strlen(c->rest));
                if (rest_len)
                    assert_memory_equal(rest, c->rest, rest_len);
                tide_framing_release(&r.framing);
                tide_framing_release(&r.framing); /* idempotent */
            }
        }
    }
    ts_loop_close(loop);
}

/* A pause inside a callback stops delivery mid-chunk; resume delivers the rest later,
 * in order, and a pause while records are kept holds them again. */
static void test_pause_mid_chunk(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    rx r;
    rx_init(&r, loop, TIDE_FRAMING_LINES, 64);
    r.pause_every = 1;
    assert_int_equal(tide_protocol_feed(&r.framing.base, "a\nb\nc\npartial", 13), 0);
    assert_string_equal(r.log, "a|");
    assert_true(tide_framing_is_paused(&r.framing));
    size_t n;
    const char *rest = tide_framing_rest(&r.framing, &n);
    assert_int_equal(n, 11);
    assert_memory_equal(rest, "b\nc\npartial", 11);
    /* More bytes while paused are kept behind the others. */
    assert_int_equal(tide_protocol_feed(&r.framing.base, "\nd\n", 3), 0);
    assert_string_equal(r.log, "a|");
    r.in_call = true;
    assert_int_equal(tide_framing_resume(&r.framing), 0);
    r.in_call = false;
    assert_string_equal(r.log, "a|"); /* nothing inside resume */
    ts_spin(loop, 1);
    assert_string_equal(r.log, "a|b|");
    r.pause_every = 0;
    assert_int_equal(tide_framing_resume(&r.framing), 0);
    /* A pause right after resume cancels the scheduled delivery. */
    tide_framing_pause(&r.framing);
    ts_spin(loop, 2);
    assert_string_equal(r.log, "a|b|");
    assert_int_equal(tide_framing_resume(&r.framing), 0);
    assert_int_equal(tide_framing_resume(&r.framing), 0); /* not paused: a no-op */
    ts_spin(loop, 2);
    assert_string_equal(r.log, "a|b|c|partial|d|");
    assert_null(tide_framing_rest(&r.framing, &n));
    assert_int_equal(n, 0);
    tide_framing_release(&r.framing);
    ts_loop_close(loop);
}

/* A record beyond max stops delivery (the ones before it were delivered). */
static void test_limits(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    static const struct {
        tide_framing_kind_t kind;
        size_t max;
        const char *in;
        size_t len;
        const char *want;
    } over[] = {
        {TIDE_FRAMING_LINES, 4, "abcd\nabcde\nx\n", 13, "abcd|"},
        {TIDE_FRAMING_LINES, 4, "abcd\r\nabcdef", 12, "abcd|"},
        {TIDE_FRAMING_LINES_CRLF, 4, "ab\ncd\r\n", 7, ""},
        {TIDE_FRAMING_PREFIX8, 3, "\x03xyz\x04wxyz", 9, "xyz|"},
        {TIDE_FRAMING_PREFIX32, 100, "\x00\x00\x00\x65", 4, ""},
        {TIDE_FRAMING_PREFIX32, 100, "\xff\xff\xff\xff", 4, ""},
    };
    for (size_t i = 0; i < sizeof over / sizeof over[0]; i++) {
        for (size_t cut = 0; cut <= over[i].len; cut++) {
            rx r;
            rx_init(&r, loop, over[i].kind, over[i].max);
            feed_split(&r, loop, over[i].in, over[i].len, cut);
            if (strcmp(r.log, over[i].want) != 0)
                fail_msg("limit case %zu cut %zu: got '%s'", i, cut, r.log);
            assert_int_equal(r.framing.error, TIDE_EFRAME_TOO_LARGE);
            tide_framing_release(&r.framing);
        }
    }
    tide_framing_t f;
    assert_int_equal(tide_framing_init(&f, loop, TIDE_FRAMING_PREFIX8, 256, &rx_ops), TIDE_EINVAL);
    assert_int_equal(tide_framing_init(&f, loop, TIDE_FRAMING_PREFIX16, 65536, &rx_ops),
                     TIDE_EINVAL);
    assert_int_equal(tide_framing_init(&f, loop, TIDE_FRAMING_LINES, 0, &rx_ops), TIDE_EINVAL);
    assert_int_equal(tide_framing_init(&f, NULL, TIDE_FRAMING_LINES, 1, &rx_ops), TIDE_EINVAL);
    assert_int_equal(tide_framing_init(&f, loop, (tide_framing_kind_t)9, 1, &rx_ops), TIDE_EINVAL);
    assert_int_equal(tide_framing_init(&f, loop, TIDE_FRAMING_LINES, 8, &rx_ops), 0);
    assert_int_equal(tide_framing_send(&f, "x", 1), TIDE_ECLOSED);
    assert_int_equal(tide_framing_send(&f, "123456789", 9), TIDE_EFRAME_TOO_LARGE);
    tide_framing_release(&f);
    ts_loop_close(loop);
}

/* ---- over the memory pair ------------------------------------------------------------- */

#define FRAMES 300

typedef struct tx {
    tide_framing_t framing;
    tide_framing_kind_t kind;
    bool oversize; /* end with a frame beyond the receiver's max */
    int lost;
} tx;

static void tx_made(tide_framing_t *f, tide_transport_t *t) {
    tx *s = TIDE_CONTAINER_OF(f, tx, framing);
    char rec[64];
    for (int i = 0; i < FRAMES; i++) {
        int n = snprintf(rec, sizeof rec, "record %d", i);
        assert_int_equal(tide_framing_send(f, rec, (size_t)n), 0);
    }
    assert_int_equal(tide_framing_send(f, "a\nb", 3),
                     s->kind >= TIDE_FRAMING_PREFIX8 ? 0 : TIDE_EINVAL);
    if (s->oversize) {
        static const char big[40] = {0};
        assert_int_equal(tide_framing_send(f, big, sizeof big), 0);
    }
    tide_transport_close(t);
}

static void tx_lost(tide_framing_t *f, int status) {
    (void)status;
    TIDE_CONTAINER_OF(f, tx, framing)->lost++;
}

static const tide_framing_ops_t tx_ops = {
    .size = TIDE_FRAMING_OPS_SIZE, .connection_made = tx_made, .connection_lost = tx_lost};

typedef struct pair {
    tx s;
    rx r;
    tide_loop_t *loop;
} pair;

/* The receiver resumes one loop turn after each pause. */
static void resume_later(tide_loop_t *loop, void *arg) {
    (void)loop;
    rx *r = arg;
    assert_int_equal(tide_framing_resume(&r->framing), 0);
}

static bool paused_or_lost(void *arg) {
    rx *r = arg;
    return r->lost || tide_framing_is_paused(&r->framing);
}

static void run_pair(tide_framing_kind_t kind, size_t rx_max, bool oversize, int expect_status) {
    tide_loop_t *loop = ts_loop_new();
    pair *p = calloc(1, sizeof *p);
    assert_non_null(p);
    assert_int_equal(tide_framing_init(&p->s.framing, loop, kind, 100, &tx_ops), 0);
    p->s.kind = kind;
    p->s.oversize = oversize;
    rx_init(&p->r, loop, kind, rx_max);
    p->r.pause_every = 7;
    tide_transport_t *ta, *tb;
    assert_int_equal(tide_memory_pair_new(loop, &p->s.framing.base, &p->r.framing.base, &ta, &tb),
                     0);
    /* A small window: the sender's frames arrive in many pieces. */
    assert_int_equal(tide_memory_transport_set_window(ta, 97), 0);
    while (!p->r.lost) {
        ts_run_until(loop, paused_or_lost, &p->r, 5);
        if (!p->r.lost) {
            int before = p->r.records;
            ts_spin(loop, 3); /* paused: nothing more arrives */
            assert_int_equal(p->r.records, before);
            assert_int_equal(p->r.eofs, 0);
            assert_non_null(tide_loop_call_soon(loop, resume_later, &p->r));
            ts_spin(loop, 1);
        }
    }
    ts_run_until_flag(loop, &p->s.lost, 5);
    int frames = kind >= TIDE_FRAMING_PREFIX8 ? FRAMES + 1 : FRAMES;
    assert_int_equal(p->r.records, frames);
    char want[64];
    snprintf(want, sizeof want, "record %d|", FRAMES - 1);
    assert_non_null(strstr(p->r.log, "record 0|record 1|record 2|"));
    assert_non_null(strstr(p->r.log, want));
    assert_int_equal(p->r.lost_status, expect_status);
    assert_int_equal(p->r.eofs, expect_status == 0 ? 1 : 0); /* after every frame */
    /* A clean end leaves nothing; the oversized frame's first bytes are shown. */
    if (expect_status == 0)
        assert_int_equal(p->r.rest_at_lost_len, 0);
    else
        assert_true(p->r.rest_at_lost_len >= 4);
    free(p);
    ts_loop_close(loop);
}

static void test_pair_lines(void **state) {
    (void)state;
    run_pair(TIDE_FRAMING_LINES_CRLF, 100, false, 0);
}

static void test_pair_frames(void **state) {
    (void)state;
    run_pair(TIDE_FRAMING_PREFIX16, 100, false, 0);
}

static void test_pair_oversize(void **state) {
    (void)state;
    run_pair(TIDE_FRAMING_PREFIX32, 39, true, TIDE_EFRAME_TOO_LARGE);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_everywhere), cmocka_unit_test(test_pause_mid_chunk),
        cmocka_unit_test(test_limits),           cmocka_unit_test(test_pair_lines),
        cmocka_unit_test(test_pair_frames),      cmocka_unit_test(test_pair_oversize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
