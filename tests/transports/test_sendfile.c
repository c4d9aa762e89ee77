/* tide_transport_sendfile: the kernel's sendfile on TCP and Unix sockets, the
 * read/write way on the memory pair (with a small window, so flow control pauses it)
 * and on TLS streams; bytes written before and after stay in order, offsets and
 * counts are honoured, a short file ends early, the completion reports the bytes,
 * and the refusals (not a file, one at a time, closed transport, the user's writes
 * while a file is sent) are immediate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/sock.h"
#include "support/streams.h"
#include "support/support.h"

#define FILE_SIZE ((size_t)6 << 20)

typedef struct sent_rec {
    int calls;
    int status;
    size_t sent;
    const char *then; /* written from the completion */
} sent_rec;

static void on_sent(tide_transport_t *t, int status, size_t sent, void *arg) {
    sent_rec *r = arg;
    r->calls++;
    r->status = status;
    r->sent = sent;
    if (r->then)
        assert_int_equal(tide_transport_write(t, r->then, strlen(r->then)), 0);
}

/* A temporary file of FILE_SIZE pattern bytes (already unlinked); its contents in
 * *data (the caller frees). */
static int make_file(unsigned char **data) {
    char path[] = "/tmp/tide-sendfile-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    *data = malloc(FILE_SIZE);
    sk_pattern(*data, FILE_SIZE, 12345);
    assert_int_equal(write(fd, *data, FILE_SIZE), (ssize_t)FILE_SIZE);
    return fd;
}

static bool got_bytes(void *arg) {
    ts_duo *d = arg;
    return d->b.len >= *(size_t *)d->b.user;
}

/* HEAD, the file's [offset, offset + count), TAIL: what b must receive. */
static void send_and_check(ts_duo *d, size_t offset, size_t count, size_t expect_sent) {
    unsigned char *data;
    int fd = make_file(&data);
    off_t pos_before = lseek(fd, 0, SEEK_CUR);
    assert_int_equal(tide_transport_write(d->ta, "HEAD", 4), 0);
    sent_rec r = {.then = "TAIL"};
    assert_int_equal(tide_transport_sendfile(d->ta, fd, (off_t)offset, count, on_sent, &r), 0);
    assert_int_equal(tide_transport_sendfile(d->ta, fd, 0, 1, on_sent, &r), TIDE_EBUSY);
    /* The user's own bytes would land inside the file's: refused until the completion
     * (which writes TAIL itself, so the check below also proves they are allowed then). */
    assert_int_equal(tide_transport_write(d->ta, "X", 1), TIDE_EBUSY);
    assert_int_equal(tide_transport_write_eof(d->ta), TIDE_EBUSY);
    assert_int_equal(r.calls, 0); /* never inside the call */
    size_t want = 4 + expect_sent + 4;
    d->b.user = &want;
    ts_run_until(d->loop, got_bytes, d, 30);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.sent, expect_sent);
    assert_int_equal(d->b.len, want);
    assert_memory_equal(d->b.data, "HEAD", 4);
    assert_true(memcmp(d->b.data + 4, data + offset, expect_sent) == 0);
    assert_memory_equal(d->b.data + 4 + expect_sent, "TAIL", 4);
    /* The caller's file offset did not move. */
    assert_int_equal(lseek(fd, 0, SEEK_CUR), pos_before);
    close(fd);
    free(data);
    tide_transport_close(d->ta);
    tide_transport_close(d->tb);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 10);
}

static void test_tcp_kernel(void **state) {
    ts_duo *d = sk_open(state, SK_TCP4);
    send_and_check(d, 0, 0, FILE_SIZE);
}

static void test_unix_offset_and_count(void **state) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    send_and_check(d, 1000, 3000000, 3000000);
}

static void test_tcp_past_the_end(void **state) {
    ts_duo *d = sk_open(state, SK_TCP4);
    /* Asking for more than the file holds ends at its end. */
    send_and_check(d, FILE_SIZE - 10000, 50000, 10000);
}

static void test_memory_fallback(void **state) {
    ts_duo *d = *state;
    assert_int_equal(tide_memory_pair_new(d->loop, &d->a.base, &d->b.base, &d->ta, &d->tb), 0);
    ts_run_until(d->loop, ts_pred_duo_made, d, 5);
    /* A small window keeps most of it queued: the send pauses and resumes. */
    assert_int_equal(tide_memory_transport_set_window(d->ta, 100000), 0);
    send_and_check(d, 7, FILE_SIZE - 7, FILE_SIZE - 7);
    assert_true(d->a.pauses > 0);
    assert_int_equal(d->a.pauses, d->a.resumes);
}

static void test_refusals(void **state) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    sent_rec r = {0};
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(tide_transport_sendfile(d->ta, p[0], 0, 0, on_sent, &r), TIDE_EINVAL);
    assert_int_equal(tide_transport_sendfile(d->ta, -1, 0, 0, on_sent, &r), TIDE_EINVAL);
    assert_int_equal(tide_transport_sendfile(NULL, 0, 0, 0, on_sent, &r), TIDE_EINVAL);
    close(p[0]);
    close(p[1]);
    unsigned char *data;
    int fd = make_file(&data);
    assert_int_equal(tide_transport_sendfile(d->ta, fd, -1, 0, on_sent, &r), TIDE_EINVAL);
    assert_int_equal(tide_transport_sendfile(d->ta, fd, 0, 0, NULL, &r), TIDE_EINVAL);
    tide_transport_close(d->ta);
    assert_int_equal(tide_transport_sendfile(d->ta, fd, 0, 0, on_sent, &r), TIDE_ECLOSED);
    tide_transport_close(d->tb);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 10);
    assert_int_equal(r.calls, 0);
    close(fd);
    free(data);
}

/* The peer goes away mid-send: the completion says so, with the bytes that went, and
 * comes before connection_lost. */
static void lost_check(ts_recorder *a, int status) {
    (void)status;
    sent_rec *r = a->user;
    assert_int_equal(r->calls, 1);
}

static void test_peer_gone(void **state) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    unsigned char *data;
    int fd = make_file(&data);
    sent_rec r = {0};
    d->a.user = &r;
    d->a.on_lost = lost_check;
    tide_transport_pause_reading(d->tb); /* b never reads */
    assert_int_equal(tide_transport_sendfile(d->ta, fd, 0, 0, on_sent, &r), 0);
    ts_spin(d->loop, 5);
    tide_transport_abort(d->tb);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 10);
    assert_int_equal(r.calls, 1);
    assert_true(r.status < 0);
    assert_true(r.sent < FILE_SIZE);
    close(fd);
    free(data);
}

/* Over TLS streams (the memory pair underneath): the read/write way. */
static void test_tls_streams(void **state) {
    (void)state;
#ifdef TIDE_TEST_WITH_TLS
    setenv("TIDE_TEST_STREAMS_OVER", "tls", 1);
#endif
    st_pair p;
    st_pair_open(&p, FILE_SIZE); /* the reader holds it all without pausing */
    unsetenv("TIDE_TEST_STREAMS_OVER");
    tide_transport_t *t = tide_writer_get_transport(p.a);
#ifdef TIDE_TEST_WITH_TLS
    assert_string_equal(tide_transport_kind(t), "tls");
#endif
    unsigned char *data;
    int fd = make_file(&data);
    sent_rec r = {0};
    assert_int_equal(tide_transport_sendfile(t, fd, 0, 0, on_sent, &r), 0);
    ts_run_until_flag(p.loop, &r.calls, 30);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.sent, FILE_SIZE);
    tide_reader_t *reader = tide_writer_get_reader(p.b);
    st_wait_buffered(p.loop, reader, FILE_SIZE);
    size_t n = 0;
    const unsigned char *got = tide_reader_peek(reader, &n);
    assert_int_equal(n, FILE_SIZE);
    assert_true(memcmp(got, data, FILE_SIZE) == 0);
    assert_int_equal(tide_reader_skip(reader, FILE_SIZE), 0);
    close(fd);
    free(data);
    st_pair_close(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        TS_DUO_TEST(test_tcp_kernel),       TS_DUO_TEST(test_unix_offset_and_count),
        TS_DUO_TEST(test_tcp_past_the_end), TS_DUO_TEST(test_memory_fallback),
        TS_DUO_TEST(test_refusals),         TS_DUO_TEST(test_peer_gone),
        cmocka_unit_test(test_tls_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
