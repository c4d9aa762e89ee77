/* The stream reader: asyncio's test_streams reader cases (checklist 23-30, 36) on
 * readers fed by hand, and read flow control and error ordering on streams over the
 * in-memory pair. Where tide is stricter (limit overruns keep the buffer, bytes come
 * before the error, TIDE_EOF vs TIDE_EINCOMPLETE), the tests pin tide's behaviour.
 * Everything is deterministic: "nothing happened" is checked by spinning the loop a
 * few non-blocking turns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "support/support.h"
#include "support/streams.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static void feed(tide_reader_t *r, const char *s) {
    assert_int_equal(tide_reader_feed_data(r, s, strlen(s)), 0);
}

static void feed_bytewise(tide_loop_t *loop, tide_reader_t *r, const char *s, st_rd *x) {
    for (size_t i = 0; s[i]; i++) {
        assert_int_equal(x->calls, 0);
        assert_int_equal(tide_reader_feed_data(r, s + i, 1), 0);
        st_spin(loop, 2);
    }
}

typedef struct fx {
    tide_loop_t *loop;
    tide_reader_t *r;
    st_rd x;
} fx;

static void fx_open(fx *f, size_t limit) {
    memset(f, 0, sizeof(*f));
    f->loop = ts_loop_new();
    assert_int_equal(tide_reader_new(f->loop, limit, &f->r), 0);
}

static void fx_close(fx *f) {
    tide_reader_free(f->r);
    st_rd_reset(&f->x);
    ts_loop_close(f->loop);
}

/* ---- argument checks (checklist 23) ----------------------------------------------------- */

static void test_invalid_arguments(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    tide_reader_t *r = (tide_reader_t *)1;
    assert_int_equal(tide_reader_new(loop, 0, &r), TIDE_EINVAL);
    assert_null(r);
    assert_int_equal(tide_reader_new(loop, SIZE_MAX, &r), TIDE_EINVAL);
    assert_int_equal(tide_reader_new(NULL, 10, &r), TIDE_EINVAL);
    assert_int_equal(tide_reader_new(loop, 10, &r), 0);
    assert_int_equal(tide_reader_get_limit(r), 10);
    st_rd x = {0};
    assert_int_equal(tide_reader_readuntil(r, "", 0, st_rd_cb, &x), TIDE_EINVAL);
    assert_int_equal(tide_reader_readuntil(r, NULL, 1, st_rd_cb, &x), TIDE_EINVAL);
    assert_int_equal(tide_reader_readuntil_any(r, NULL, 0, st_rd_cb, &x), TIDE_EINVAL);
    tide_iovec_t seps[2] = {{"a", 1}, {"", 0}};
    assert_int_equal(tide_reader_readuntil_any(r, seps, 2, st_rd_cb, &x), TIDE_EINVAL);
    assert_int_equal(tide_reader_discard_until(r, "", 0, st_rd_cb, &x), TIDE_EINVAL);
    assert_int_equal(tide_reader_read(r, 1, NULL, &x), TIDE_EINVAL);
    assert_int_equal(tide_reader_set_exception(r, 0), TIDE_EINVAL);
    assert_int_equal(tide_reader_feed_data(r, NULL, 3), TIDE_EINVAL);
    assert_null(tide_reader_get_writer(r));
    /* None of these started a read: a valid one is accepted. */
    assert_int_equal(tide_reader_read(r, 1, st_rd_cb, &x), 0);
    st_spin(loop, 3);
    assert_int_equal(x.calls, 0);
    tide_reader_free(r); /* drops the pending read without calling it */
    st_spin(loop, 3);
    assert_int_equal(x.calls, 0);
    ts_loop_close(loop);
}

/* ---- read(n) ---------------------------------------------------------------------------- */

static void test_read_basics(void **state) {
    (void)state;
    fx f;
    fx_open(&f, 64);
    /* read(0) completes with nothing, and never inside the call. */
    assert_int_equal(tide_reader_read(f.r, 0, st_rd_cb, &f.x), 0);
    assert_int_equal(f.x.calls, 0);
    st_expect(f.loop, &f.x, 0, NULL);

    /* Data already buffered: still deferred. */
    feed(f.r, "hello world");
    assert_int_equal(tide_reader_buffered(f.r), 11);
    assert_int_equal(tide_reader_read(f.r, 5, st_rd_cb, &f.x), 0);
    assert_int_equal(f.x.calls, 0);
    st_expect(f.loop, &f.x, 0, "hello");

    /* Up to n: what is there. */
    assert_int_equal(tide_reader_read(f.r, 100, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, 0, " world");

    /* Waits for data when empty. */
    assert_int_equal(tide_reader_read(f.r, 100, st_rd_cb, &f.x), 0);
    st_spin(f.loop, 3);
    assert_int_equal(f.x.calls, 0);
    feed(f.r, "abc");
    st_expect(f.loop, &f.x, 0, "abc");

    /* EOF: at_eof only once the buffer is empty; read reports TIDE_EOF. */
    feed(f.r, "z");
    tide_reader_feed_eof(f.r);
    assert_false(tide_reader_at_eof(f.r));
    assert_int_equal(tide_reader_feed_data(f.r, "x", 1), TIDE_EINVAL);
    assert_int_equal(tide_reader_read(f.r, 100, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, 0, "z");
    assert_true(tide_reader_at_eof(f.r));
    assert_int_equal(tide_reader_read(f.r, 100, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, TIDE_EOF, NULL);
    fx_close(&f);
}

static void test_read_waiting_then_eof(void **state) {
    (void)state;
    fx f;
    fx_open(&f, 64);
    assert_int_equal(tide_reader_read(f.r, 10, st_rd_cb, &f.x), 0);
    st_spin(f.loop, 2);
    tide_reader_feed_eof(f.r);
    st_expect(f.loop, &f.x, TIDE_EOF, NULL);
    fx_close(&f);
}

/* checklist 27: read to EOF returns everything, even far beyond the limit. */
static void test_read_all_beyond_limit(void **state) {
    (void)state;
    fx f;
    fx_open(&f, 16);
    char expected[1001];
    for (int i = 0; i < 1000; i++)
        expected[i] = (char)('a' + i % 26);
    expected[1000] = '\0';
    assert_int_equal(tide_reader_read(f.r, TIDE_READ_ALL, st_rd_cb, &f.x), 0);
    for (int i = 0; i < 1000; i += 100) {
        assert_int_equal(tide_reader_feed_data(f.r, expected + i, 100), 0);
        st_spin(f.loop, 1);
        assert_int_equal(f.x.calls, 0);
    }
    tide_reader_feed_eof(f.r);
    st_expect(f.loop, &f.x, 0, expected);
    /* Read to EOF of an empty, ended stream: success with nothing. */
    assert_int_equal(tide_reader_read(f.r, TIDE_READ_ALL, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, 0, NULL);
    fx_close(&f);
}

/* ---- readexactly ------------------------------------------------------------------------ */

static void test_readexactly(void **state) {
    (void)state;
    fx f;
    fx_open(&f, 4);
    assert_int_equal(tide_reader_readexactly(f.r, 0, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, 0, NULL);

    /* More than the limit, in pieces. */
    assert_int_equal(tide_reader_readexactly(f.r, 10, st_rd_cb, &f.x), 0);
    feed(f.r, "0123");
    st_spin(f.loop, 2);
    feed(f.r, "4567");
    st_spin(f.loop, 2);
    assert_int_equal(f.x.calls, 0);
    feed(f.r, "89ab");
    st_expect(f.loop, &f.x, 0, "0123456789");
    assert_int_equal(tide_reader_buffered(f.r), 2);

    /* checklist 26: EOF first: the partial bytes, consumed. */
    assert_int_equal(tide_reader_readexactly(f.r, 5, st_rd_cb, &f.x), 0);
    tide_reader_feed_eof(f.r);
    st_expect(f.loop, &f.x, TIDE_EINCOMPLETE, "ab");
    assert_int_equal(tide_reader_buffered(f.r), 0);
    /* Nothing at all before EOF: a clean end. */
    assert_int_equal(tide_reader_readexactly(f.r, 5, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, TIDE_EOF, NULL);
    fx_close(&f);
}

/* ---- readline and readuntil ---------------------------------------------------------------- */

static void test_readline(void **state) {
    (void)state;
    fx f;
    fx_open(&f, 64);
    feed(f.r, "line1\nline2\nli");
    assert_int_equal(tide_reader_readline(f.r, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, 0, "line1\n");
    assert_int_equal(tide_reader_readline(f.r, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, 0, "line2\n");
    assert_int_equal(tide_reader_readline(f.r, st_rd_cb, &f.x), 0);
    st_spin(f.loop, 2);
    assert_int_equal(f.x.calls, 0);
    feed(f.r, "ne3");
    st_spin(f.loop, 2);
    assert_int_equal(f.x.calls, 0);
    feed(f.r, "\n");
    st_expect(f.loop, &f.x, 0, "line3\n");
    /* The last line without a newline comes back as a line, then TIDE_EOF. */
    feed(f.r, "tail");
    tide_reader_feed_eof(f.r);
    assert_int_equal(tide_reader_readline(f.r, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, 0, "tail");
    assert_int_equal(tide_reader_readline(f.r, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, TIDE_EOF, NULL);
    fx_close(&f);
}

/* The limit's exact boundary (limit 7): 7 bytes + newline pass, 8 bytes overrun and
 * leave the buffer exactly as it was. */
static void test_readline_limit_boundaries(void **state) {
    (void)state;
    fx f;
    fx_open(&f, 7);
    feed(f.r, "1234567\n");
    assert_int_equal(tide_reader_readline(f.r, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, 0, "1234567\n");

    /* Separator found beyond the limit: len says how far it is. */
    feed(f.r, "12345678\nnext\n");
    assert_int_equal(tide_reader_readline(f.r, st_rd_cb, &f.x), 0);
    ts_run_until(f.loop, st_rd_done, &f.x, 5);
    assert_int_equal(f.x.status, TIDE_ELIMIT);
    assert_int_equal(f.x.len, 9);
    assert_false(f.x.had_data);
    st_rd_reset(&f.x);
    size_t n = 0;
    const void *p = tide_reader_peek(f.r, &n);
    assert_int_equal(n, 14);
    assert_memory_equal(p, "12345678\nnext\n", 14);
    /* The same read again gives the same answer: nothing was consumed. */
    assert_int_equal(tide_reader_readline(f.r, st_rd_cb, &f.x), 0);
    ts_run_until(f.loop, st_rd_done, &f.x, 5);
    assert_int_equal(f.x.status, TIDE_ELIMIT);
    assert_int_equal(f.x.len, 9);
    st_rd_reset(&f.x);
    /* Recover by skipping exactly that record. */
    assert_int_equal(tide_reader_skip(f.r, 9), 0);
    assert_int_equal(tide_reader_readline(f.r, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, 0, "next\n");

    /* No separator and more than the limit buffered: overrun with len 0. */
    feed(f.r, "12345678");
    assert_int_equal(tide_reader_readline(f.r, st_rd_cb, &f.x), 0);
    ts_run_until(f.loop, st_rd_done, &f.x, 5);
    assert_int_equal(f.x.status, TIDE_ELIMIT);
    assert_int_equal(f.x.len, 0);
    assert_false(f.x.had_data);
    st_rd_reset(&f.x);
    assert_int_equal(tide_reader_buffered(f.r), 8);
    assert_int_equal(tide_reader_skip(f.r, 8), 0);

    /* Exactly the limit without separator: still waiting. */
    assert_int_equal(tide_reader_readline(f.r, st_rd_cb, &f.x), 0);
    feed(f.r, "1234567");
    st_spin(f.loop, 3);
    assert_int_equal(f.x.calls, 0);
    feed(f.r, "\n");
    st_expect(f.loop, &f.x, 0, "1234567\n");
    fx_close(&f);
}

/* checklist 24: limit 5 with a two-byte separator. */
static void test_readuntil_limit(void **state) {
    (void)state;
    fx f;
    fx_open(&f, 5);
    feed(f.r, "12345\r\n");
    assert_int_equal(tide_reader_readuntil(f.r, "\r\n", 2, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, 0, "12345\r\n");
    feed(f.r, "123456\r\n");
    assert_int_equal(tide_reader_readuntil(f.r, "\r\n", 2, st_rd_cb, &f.x), 0);
    ts_run_until(f.loop, st_rd_done, &f.x, 5);
    assert_int_equal(f.x.status, TIDE_ELIMIT);
    assert_int_equal(f.x.len, 8);
    st_rd_reset(&f.x);
    assert_int_equal(tide_reader_buffered(f.r), 8);
    /* The data can be read on with read() (asyncio's recovery). */
    assert_int_equal(tide_reader_read(f.r, 100, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, 0, "123456\r\n");
    fx_close(&f);
}

static void test_readuntil_split_bytewise(void **state) {
    (void)state;
    fx f;
    fx_open(&f, 64);
    assert_int_equal(tide_reader_readuntil(f.r, "\r\n", 2, st_rd_cb, &f.x), 0);
    feed_bytewise(f.loop, f.r, "abc\r", &f.x);
    feed(f.r, "\n");
    st_expect(f.loop, &f.x, 0, "abc\r\n");
    /* A longer separator, arriving one byte at a time after a near miss. */
    assert_int_equal(tide_reader_readuntil(f.r, "END!", 4, st_rd_cb, &f.x), 0);
    feed_bytewise(f.loop, f.r, "xxENDxEN", &f.x);
    feed(f.r, "D!yy");
    st_expect(f.loop, &f.x, 0, "xxENDxEND!");
    assert_int_equal(tide_reader_buffered(f.r), 2);
    fx_close(&f);
}

static void test_readuntil_overlapping(void **state) {
    (void)state;
    fx f;
    fx_open(&f, 64);
    /* "aaab" inside "aaaab": the match starts one byte in. */
    assert_int_equal(tide_reader_readuntil(f.r, "aaab", 4, st_rd_cb, &f.x), 0);
    feed_bytewise(f.loop, f.r, "aaaa", &f.x);
    feed(f.r, "b");
    st_expect(f.loop, &f.x, 0, "aaaab");
    /* "abab" in "abaabab": a partial match that fails, then the real one. */
    feed(f.r, "abaabab");
    assert_int_equal(tide_reader_readuntil(f.r, "abab", 4, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, 0, "abaabab");
    fx_close(&f);
}

/* checklist 36: several separators, the earliest end wins. */
static void test_readuntil_several(void **state) {
    (void)state;
    fx f;
    fx_open(&f, 64);
    tide_iovec_t crlf[2] = {{"\r", 1}, {"\n", 1}};
    feed(f.r, "line 1\nline 2\r");
    assert_int_equal(tide_reader_readuntil_any(f.r, crlf, 2, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, 0, "line 1\n");
    assert_int_equal(tide_reader_readuntil_any(f.r, crlf, 2, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, 0, "line 2\r");

    tide_iovec_t two[2] = {{"DEF", 3}, {"BCDE", 4}};
    feed(f.r, "ABCDEFG");
    assert_int_equal(tide_reader_readuntil_any(f.r, two, 2, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, 0, "ABCDE");
    assert_int_equal(tide_reader_buffered(f.r), 2);
    assert_int_equal(tide_reader_skip(f.r, 2), 0);

    /* Split over chunks: the longer separator completes first. */
    assert_int_equal(tide_reader_readuntil_any(f.r, two, 2, st_rd_cb, &f.x), 0);
    feed_bytewise(f.loop, f.r, "xABCD", &f.x);
    feed(f.r, "EF");
    st_expect(f.loop, &f.x, 0, "xABCDE");
    assert_int_equal(tide_reader_skip(f.r, 1), 0);
    fx_close(&f);
}

/* A tie on the end goes to the shorter separator, whose start decides the limit. */
static void test_readuntil_tie_shorter_wins(void **state) {
    (void)state;
    fx f;
    fx_open(&f, 1);
    tide_iovec_t seps[2] = {{"ab", 2}, {"b", 1}};
    feed(f.r, "xab");
    assert_int_equal(tide_reader_readuntil_any(f.r, seps, 2, st_rd_cb, &f.x), 0);
    ts_run_until(f.loop, st_rd_done, &f.x, 5);
    /* "ab" would start at 1 (within the limit); "b" starts at 2: beyond it. */
    assert_int_equal(f.x.status, TIDE_ELIMIT);
    assert_int_equal(f.x.len, 3);
    st_rd_reset(&f.x);
    fx_close(&f);
}

/* checklist 26: readuntil at EOF without separator. */
static void test_readuntil_incomplete(void **state) {
    (void)state;
    fx f;
    fx_open(&f, 64);
    feed(f.r, "partial");
    assert_int_equal(tide_reader_readuntil(f.r, "\n", 1, st_rd_cb, &f.x), 0);
    st_spin(f.loop, 2);
    assert_int_equal(f.x.calls, 0);
    tide_reader_feed_eof(f.r);
    st_expect(f.loop, &f.x, TIDE_EINCOMPLETE, "partial");
    assert_int_equal(tide_reader_buffered(f.r), 0);
    assert_true(tide_reader_at_eof(f.r));
    assert_int_equal(tide_reader_readuntil(f.r, "\n", 1, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, TIDE_EOF, NULL);
    fx_close(&f);
}

/* A separator in the very last chunk is still found at EOF. */
static void test_readuntil_separator_in_last_chunk(void **state) {
    (void)state;
    fx f;
    fx_open(&f, 64);
    assert_int_equal(tide_reader_readuntil(f.r, "!", 1, st_rd_cb, &f.x), 0);
    feed(f.r, "ab!cd");
    tide_reader_feed_eof(f.r);
    st_expect(f.loop, &f.x, 0, "ab!");
    assert_int_equal(tide_reader_readuntil(f.r, "!", 1, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, TIDE_EINCOMPLETE, "cd");
    fx_close(&f);
}

/* ---- one read at a time (checklist 28) ----------------------------------------------------- */

static void test_second_read_busy(void **state) {
    (void)state;
    fx f;
    fx_open(&f, 64);
    st_rd y = {0};
    assert_int_equal(tide_reader_readline(f.r, st_rd_cb, &f.x), 0);
    assert_int_equal(tide_reader_read(f.r, 10, st_rd_cb, &y), TIDE_EBUSY);
    assert_int_equal(tide_reader_readexactly(f.r, 1, st_rd_cb, &y), TIDE_EBUSY);
    assert_int_equal(tide_reader_readuntil(f.r, "x", 1, st_rd_cb, &y), TIDE_EBUSY);
    assert_int_equal(tide_reader_discard_until(f.r, "x", 1, st_rd_cb, &y), TIDE_EBUSY);
    assert_int_equal(tide_reader_skip(f.r, 0), TIDE_EBUSY);
    feed(f.r, "first\n");
    st_expect(f.loop, &f.x, 0, "first\n");
    st_spin(f.loop, 2);
    assert_int_equal(y.calls, 0);
    /* Still busy while the completion is queued but has not run. */
    feed(f.r, "x");
    assert_int_equal(tide_reader_read(f.r, 10, st_rd_cb, &f.x), 0);
    assert_int_equal(tide_reader_read(f.r, 10, st_rd_cb, &y), TIDE_EBUSY);
    st_expect(f.loop, &f.x, 0, "x");
    assert_int_equal(y.calls, 0);
    fx_close(&f);
}

/* ---- errors (checklist 30, stricter: bytes first) -------------------------------------------- */

static void test_exception_after_buffered_bytes(void **state) {
    (void)state;
    fx f;
    fx_open(&f, 64);
    feed(f.r, "abc\ndef");
    assert_int_equal(tide_reader_set_exception(f.r, TIDE_ECONNRESET), 0);
    assert_int_equal(tide_reader_exception(f.r), TIDE_ECONNRESET);
    assert_int_equal(tide_reader_readline(f.r, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, 0, "abc\n");
    /* The unterminated rest comes with the error. */
    assert_int_equal(tide_reader_readline(f.r, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, TIDE_ECONNRESET, "def");
    assert_int_equal(tide_reader_read(f.r, 5, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, TIDE_ECONNRESET, NULL);
    assert_false(tide_reader_at_eof(f.r));

    /* A pending read that waits fails when the exception is set. */
    assert_int_equal(tide_reader_readexactly(f.r, 3, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, TIDE_ECONNRESET, NULL);
    fx_close(&f);
}

static void test_exception_wakes_waiter(void **state) {
    (void)state;
    fx f;
    fx_open(&f, 64);
    feed(f.r, "ab");
    assert_int_equal(tide_reader_readexactly(f.r, 3, st_rd_cb, &f.x), 0);
    st_spin(f.loop, 2);
    assert_int_equal(f.x.calls, 0);
    assert_int_equal(tide_reader_set_exception(f.r, TIDE_EPROTO), 0);
    st_expect(f.loop, &f.x, TIDE_EPROTO, "ab");
    assert_int_equal(tide_reader_read(f.r, TIDE_READ_ALL, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, TIDE_EPROTO, NULL);
    fx_close(&f);
}

/* ---- skip, discard_until, peek ----------------------------------------------------------------
 */

static void test_skip_and_peek(void **state) {
    (void)state;
    fx f;
    fx_open(&f, 64);
    size_t n = 99;
    assert_null(tide_reader_peek(f.r, &n));
    assert_int_equal(n, 0);
    feed(f.r, "abcdef");
    assert_int_equal(tide_reader_skip(f.r, 7), TIDE_EINVAL);
    assert_int_equal(tide_reader_buffered(f.r), 6);
    assert_int_equal(tide_reader_skip(f.r, 2), 0);
    const char *p = tide_reader_peek(f.r, &n);
    assert_int_equal(n, 4);
    assert_memory_equal(p, "cdef", 4);
    assert_int_equal(tide_reader_skip(f.r, 4), 0);
    assert_int_equal(tide_reader_buffered(f.r), 0);
    fx_close(&f);
}

static void test_discard_until(void **state) {
    (void)state;
    fx f;
    fx_open(&f, 8);
    /* An over-long line (far beyond the limit) arrives in pieces; discard_until drops
     * it while keeping the buffer bounded, then reading goes on in step. */
    feed(f.r, "garbage--");
    assert_int_equal(tide_reader_readline(f.r, st_rd_cb, &f.x), 0);
    ts_run_until(f.loop, st_rd_done, &f.x, 5);
    assert_int_equal(f.x.status, TIDE_ELIMIT);
    st_rd_reset(&f.x);
    assert_int_equal(tide_reader_discard_until(f.r, "\r\n", 2, st_rd_cb, &f.x), 0);
    for (int i = 0; i < 50; i++) {
        feed(f.r, "0123456789");
        st_spin(f.loop, 1);
        assert_true(tide_reader_buffered(f.r) <= 1);
    }
    feed(f.r, "\r");
    st_spin(f.loop, 1);
    assert_int_equal(f.x.calls, 0);
    feed(f.r, "\nok\n");
    ts_run_until(f.loop, st_rd_done, &f.x, 5);
    assert_int_equal(f.x.status, 0);
    assert_int_equal(f.x.len, 9 + 500 + 2);
    assert_false(f.x.had_data);
    st_rd_reset(&f.x);
    assert_int_equal(tide_reader_readline(f.r, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, 0, "ok\n");

    /* At EOF: everything dropped, TIDE_EINCOMPLETE with the count. */
    feed(f.r, "junk");
    tide_reader_feed_eof(f.r);
    assert_int_equal(tide_reader_discard_until(f.r, "\n", 1, st_rd_cb, &f.x), 0);
    ts_run_until(f.loop, st_rd_done, &f.x, 5);
    assert_int_equal(f.x.status, TIDE_EINCOMPLETE);
    assert_int_equal(f.x.len, 4);
    st_rd_reset(&f.x);
    assert_true(tide_reader_at_eof(f.r));
    fx_close(&f);
}

/* A stored error ends the stream for reads, but bytes may still be fed until the
 * discard's completion runs: a separator that they complete across the earlier bytes is
 * found (a fuzz_reader regression: the earlier bytes used to be dropped at once). */
static void test_discard_until_after_error(void **state) {
    (void)state;
    fx f;
    fx_open(&f, 8);
    assert_int_equal(tide_reader_set_exception(f.r, TIDE_ECONNRESET), 0);
    feed(f.r, "ab)");
    assert_int_equal(tide_reader_discard_until(f.r, "))", 2, st_rd_cb, &f.x), 0);
    feed(f.r, ")z");
    ts_run_until(f.loop, st_rd_done, &f.x, 5);
    assert_int_equal(f.x.status, 0);
    assert_int_equal(f.x.len, 4);
    assert_int_equal(tide_reader_buffered(f.r), 1);
    st_rd_reset(&f.x);
    /* Without a separator the error ends it, with every byte dropped and counted. */
    assert_int_equal(tide_reader_discard_until(f.r, "))", 2, st_rd_cb, &f.x), 0);
    ts_run_until(f.loop, st_rd_done, &f.x, 5);
    assert_int_equal(f.x.status, TIDE_ECONNRESET);
    assert_int_equal(f.x.len, 1);
    assert_int_equal(tide_reader_buffered(f.r), 0);
    st_rd_reset(&f.x);
    fx_close(&f);
}

/* ---- reentrancy -------------------------------------------------------------------------------
 */

typedef struct reent {
    int calls;
    bool ok;
    st_rd next;
    tide_reader_t *r;
    bool free_inside;
} reent;

/* Feeds enough to move the buffer while holding the lent data, checks the data is
 * intact, and starts the next read from inside the callback. */
static void reent_cb(tide_reader_t *r, int status, const void *data, size_t len, void *arg) {
    reent *e = arg;
    e->calls++;
    char big[100000];
    memset(big, 'q', sizeof(big));
    assert_int_equal(status, 0);
    assert_int_equal(len, 6);
    assert_int_equal(tide_reader_feed_data(r, big, sizeof(big)), 0);
    e->ok = memcmp(data, "hello\n", 6) == 0;
    if (e->free_inside) {
        assert_int_equal(tide_reader_read(r, 10, st_rd_cb, &e->next), 0);
        tide_reader_free(r);
        /* Still usable until this callback returns. */
        e->ok = e->ok && memcmp(data, "hello\n", 6) == 0;
        return;
    }
    assert_int_equal(tide_reader_readexactly(r, 3, st_rd_cb, &e->next), 0);
    assert_int_equal(e->next.calls, 0);
}

static void test_callback_reentrancy(void **state) {
    (void)state;
    fx f;
    fx_open(&f, 64);
    reent e = {0};
    feed(f.r, "hello\n");
    assert_int_equal(tide_reader_readline(f.r, reent_cb, &e), 0);
    ts_run_until(f.loop, st_rd_done, &e.next, 5);
    assert_int_equal(e.calls, 1);
    assert_true(e.ok);
    assert_int_equal(e.next.status, 0);
    assert_memory_equal(e.next.buf, "qqq", 3);
    st_rd_reset(&e.next);
    assert_int_equal(tide_reader_buffered(f.r), 100000 - 3);
    fx_close(&f);

    /* tide_reader_free from inside the callback: its pending read never runs. */
    tide_loop_t *loop = ts_loop_new();
    tide_reader_t *r;
    assert_int_equal(tide_reader_new(loop, 64, &r), 0);
    reent g = {0};
    g.free_inside = true;
    feed(r, "hello\n");
    assert_int_equal(tide_reader_readline(r, reent_cb, &g), 0);
    for (int i = 0; i < 5; i++)
        st_spin(loop, 1);
    assert_int_equal(g.calls, 1);
    assert_true(g.ok);
    assert_int_equal(g.next.calls, 0);
    ts_loop_close(loop);
}

/* ---- streams over the memory pair: flow control and connection errors ------------------------ */

/* checklist 29: pause above 2 x limit, resume at the limit or when a read waits. */
static void test_flow_control(void **state) {
    (void)state;
    st_pair p;
    st_pair_open(&p, 1000);
    tide_reader_t *rb = tide_writer_get_reader(p.b);
    assert_ptr_equal(tide_reader_get_writer(rb), p.b);
    char data[6000];
    memset(data, 'x', sizeof(data));
    st_rd x = {0};
    tide_transport_t *tb = tide_writer_get_transport(p.b);

    /* Exactly 2 x limit: not above it, still reading. */
    assert_int_equal(tide_writer_write(p.a, data, 2000), 0);
    st_wait_buffered(p.loop, rb, 2000);
    st_spin(p.loop, 3);
    assert_true(tide_transport_is_reading(tb));
    /* One more byte: paused. */
    assert_int_equal(tide_writer_write(p.a, data, 1), 0);
    st_wait_buffered(p.loop, rb, 2001);
    assert_false(tide_transport_is_reading(tb));
    /* Bytes written now stay with the peer while paused. */
    assert_int_equal(tide_writer_write(p.a, data, 500), 0);
    st_spin(p.loop, 5);
    assert_int_equal(tide_reader_buffered(rb), 2001);

    /* Consuming down to above the limit does not resume... */
    assert_int_equal(tide_reader_read(rb, 1000, st_rd_cb, &x), 0);
    ts_run_until(p.loop, st_rd_done, &x, 5);
    st_rd_reset(&x);
    assert_int_equal(tide_reader_buffered(rb), 1001);
    assert_false(tide_transport_is_reading(tb));
    /* ...at the limit it does, and the held bytes arrive. */
    assert_int_equal(tide_reader_read(rb, 1, st_rd_cb, &x), 0);
    ts_run_until(p.loop, st_rd_done, &x, 5);
    st_rd_reset(&x);
    assert_true(tide_transport_is_reading(tb));
    st_wait_buffered(p.loop, rb, 1500);

    /* A read that needs more than the pause threshold resumes reading while it waits. */
    assert_int_equal(tide_writer_write(p.a, data, 1000), 0);
    st_wait_buffered(p.loop, rb, 2500);
    assert_false(tide_transport_is_reading(tb));
    assert_int_equal(tide_reader_readexactly(rb, 5000, st_rd_cb, &x), 0);
    assert_true(tide_transport_is_reading(tb));
    st_spin(p.loop, 3);
    assert_int_equal(x.calls, 0);
    assert_int_equal(tide_writer_write(p.a, data, 3000), 0);
    ts_run_until(p.loop, st_rd_done, &x, 5);
    assert_int_equal(x.status, 0);
    assert_int_equal(x.len, 5000);
    st_rd_reset(&x);
    assert_int_equal(tide_reader_buffered(rb), 500);
    assert_true(tide_transport_is_reading(tb));
    st_pair_close(&p);
}

/* Read to EOF turns flow control off while it waits: a large body is not paused. */
static void test_flow_read_all(void **state) {
    (void)state;
    st_plain_only();
    st_pair p;
    st_pair_open(&p, 100);
    tide_reader_t *rb = tide_writer_get_reader(p.b);
    st_rd x = {0};
    static char data[50000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (char)(i * 7);
    assert_int_equal(tide_reader_read(rb, TIDE_READ_ALL, st_rd_cb, &x), 0);
    assert_int_equal(tide_writer_write(p.a, data, sizeof(data)), 0);
    assert_int_equal(tide_writer_write_eof(p.a), 0);
    ts_run_until(p.loop, st_rd_done, &x, 5);
    assert_int_equal(x.status, 0);
    assert_int_equal(x.len, sizeof(data));
    assert_memory_equal(x.buf, data, sizeof(data));
    st_rd_reset(&x);
    assert_true(tide_reader_at_eof(rb));
    st_pair_close(&p);
}

/* Bytes that arrived before a connection error are delivered before the error. */
static void test_bytes_before_error(void **state) {
    (void)state;
    st_pair p;
    st_pair_open(&p, 64);
    tide_reader_t *rb = tide_writer_get_reader(p.b);
    st_rd x = {0};
    assert_int_equal(tide_writer_write(p.a, "one\ntwo", 7), 0);
    st_wait_buffered(p.loop, rb, 7);
    assert_int_equal(tide_memory_transport_inject_error(p.ta, TIDE_ECONNRESET), 0);
    ts_run_until(p.loop, st_pair_lost, &p, 5);
    assert_null(tide_writer_get_transport(p.b));
    assert_int_equal(tide_reader_exception(rb), TIDE_ECONNRESET);
    assert_int_equal(tide_reader_readline(rb, st_rd_cb, &x), 0);
    st_expect(p.loop, &x, 0, "one\n");
    assert_int_equal(tide_reader_readline(rb, st_rd_cb, &x), 0);
    st_expect(p.loop, &x, TIDE_ECONNRESET, "two");
    assert_int_equal(tide_reader_read(rb, 10, st_rd_cb, &x), 0);
    st_expect(p.loop, &x, TIDE_ECONNRESET, NULL);
    st_pair_close(&p);
}

/* A pending read at a clean close gets the end of the stream. */
static void test_pending_read_at_close(void **state) {
    (void)state;
    st_pair p;
    st_pair_open(&p, 64);
    tide_reader_t *ra = tide_writer_get_reader(p.a);
    st_rd x = {0};
    assert_int_equal(tide_reader_readexactly(ra, 4, st_rd_cb, &x), 0);
    tide_writer_close(p.a); /* our own close: reading stops, the read ends */
    ts_run_until(p.loop, st_rd_done, &x, 5);
    assert_int_equal(x.status, TIDE_EOF);
    st_rd_reset(&x);
    st_pair_close(&p);
}

/* The seam for tasks: a cancelled pending read leaves the buffer intact. */
static void test_cancel_pending(void **state) {
    (void)state;
    fx f;
    fx_open(&f, 64);
    feed(f.r, "abc");
    assert_int_equal(tide_reader_readline(f.r, st_rd_cb, &f.x), 0);
    assert_true(tide__reader_pending(f.r));
    tide__reader_cancel_pending(f.r);
    assert_false(tide__reader_pending(f.r));
    feed(f.r, "\n");
    st_spin(f.loop, 3);
    assert_int_equal(f.x.calls, 0);
    assert_int_equal(tide_reader_readline(f.r, st_rd_cb, &f.x), 0);
    st_expect(f.loop, &f.x, 0, "abc\n");
    /* Cancelled after the completion was queued: it never runs either. */
    feed(f.r, "z");
    assert_int_equal(tide_reader_read(f.r, 1, st_rd_cb, &f.x), 0);
    tide__reader_cancel_pending(f.r);
    st_spin(f.loop, 3);
    assert_int_equal(f.x.calls, 0);
    assert_int_equal(tide_reader_buffered(f.r), 1);
    fx_close(&f);
}

/* The seam for await forms: a hold keeps a callback's bytes valid after it returned,
 * through buffer growth and further reads, until unhold. */
typedef struct held {
    const unsigned char *data;
    size_t len;
} held;

static void hold_cb(tide_reader_t *r, int status, const void *data, size_t len, void *arg) {
    held *h = arg;
    assert_int_equal(status, 0);
    h->data = data;
    h->len = len;
    tide__reader_hold(r);
}

static bool held_done(void *arg) { return ((held *)arg)->data != NULL; }

static void test_hold(void **state) {
    (void)state;
    fx f;
    fx_open(&f, 64);
    held h = {0};
    feed(f.r, "hello\n");
    assert_int_equal(tide_reader_readline(f.r, hold_cb, &h), 0);
    ts_run_until(f.loop, held_done, &h, 5);
    static char big[200000];
    memset(big, 'b', sizeof(big));
    assert_int_equal(tide_reader_feed_data(f.r, big, sizeof(big)), 0);
    assert_int_equal(tide_reader_read(f.r, 1000, st_rd_cb, &f.x), 0);
    ts_run_until(f.loop, st_rd_done, &f.x, 5);
    st_rd_reset(&f.x);
    assert_int_equal(h.len, 6);
    assert_memory_equal(h.data, "hello\n", 6);
    tide__reader_unhold(f.r);
    assert_int_equal(tide_reader_buffered(f.r), sizeof(big) - 1000);
    fx_close(&f);
}

/* A callback that starts the next read and keeps a hold past its return: the read it
 * started is still evaluated when the callback ends, not when the hold does. */
typedef struct hold_and_read {
    held h;
    st_rd next;
} hold_and_read;

static void hold_and_read_cb(tide_reader_t *r, int status, const void *data, size_t len,
                             void *arg) {
    hold_and_read *x = arg;
    assert_int_equal(tide_reader_read(r, 100, st_rd_cb, &x->next), 0);
    hold_cb(r, status, data, len, &x->h);
}

static void test_hold_and_read_inside(void **state) {
    (void)state;
    fx f;
    fx_open(&f, 64);
    hold_and_read x = {0};
    feed(f.r, "hello\nworld");
    assert_int_equal(tide_reader_readline(f.r, hold_and_read_cb, &x), 0);
    ts_run_until(f.loop, st_rd_done, &x.next, 5);
    assert_int_equal(x.next.status, 0);
    assert_int_equal(x.next.len, 5);
    assert_memory_equal(x.next.buf, "world", 5);
    assert_memory_equal(x.h.data, "hello\n", 6); /* still held */
    st_rd_reset(&x.next);
    tide__reader_unhold(f.r);
    fx_close(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invalid_arguments),
        cmocka_unit_test(test_read_basics),
        cmocka_unit_test(test_read_waiting_then_eof),
        cmocka_unit_test(test_read_all_beyond_limit),
        cmocka_unit_test(test_readexactly),
        cmocka_unit_test(test_readline),
        cmocka_unit_test(test_readline_limit_boundaries),
        cmocka_unit_test(test_readuntil_limit),
        cmocka_unit_test(test_readuntil_split_bytewise),
        cmocka_unit_test(test_readuntil_overlapping),
        cmocka_unit_test(test_readuntil_several),
        cmocka_unit_test(test_readuntil_tie_shorter_wins),
        cmocka_unit_test(test_readuntil_incomplete),
        cmocka_unit_test(test_readuntil_separator_in_last_chunk),
        cmocka_unit_test(test_second_read_busy),
        cmocka_unit_test(test_exception_after_buffered_bytes),
        cmocka_unit_test(test_exception_wakes_waiter),
        cmocka_unit_test(test_skip_and_peek),
        cmocka_unit_test(test_discard_until),
        cmocka_unit_test(test_discard_until_after_error),
        cmocka_unit_test(test_callback_reentrancy),
        cmocka_unit_test(test_flow_control),
        cmocka_unit_test(test_flow_read_all),
        cmocka_unit_test(test_bytes_before_error),
        cmocka_unit_test(test_pending_read_at_close),
        cmocka_unit_test(test_cancel_pending),
        cmocka_unit_test(test_hold),
        cmocka_unit_test(test_hold_and_read_inside),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
