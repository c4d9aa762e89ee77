/* Pipe transports (tide_loop_connect_read_pipe / _write_pipe) over real pipes,
 * a FIFO and /dev/null: the stream contract (EOF, pause/resume reading, watermarks,
 * write_eof), a reader that goes away (EPIPE, and never SIGPIPE: the default
 * disposition is set, so a stray signal would kill the test), and the descriptors
 * accepted or refused. Every fixture checks the descriptor count and a clean loop
 * close (ts_duo's teardown). a is the writer, b the reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/support.h"
#include "transports/transport_int.h"

static void fx_pipes(ts_duo *f) {
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(tide_loop_connect_write_pipe(f->loop, p[1], &f->a.base, &f->ta), 0);
    assert_int_equal(tide_loop_connect_read_pipe(f->loop, p[0], &f->b.base, &f->tb), 0);
    assert_int_equal(f->a.made + f->b.made, 0); /* deferred */
    ts_run_until(f->loop, ts_pred_duo_made, f, 5);
    /* Owned by the transports now: non-blocking and close-on-exec. */
    for (int i = 0; i < 2; i++) {
        assert_true(fcntl(p[i], F_GETFL) & O_NONBLOCK);
        assert_true(fcntl(p[i], F_GETFD) & FD_CLOEXEC);
    }
}

static void test_kinds(void **state) {
    ts_duo *f = *state;
    fx_pipes(f);
    assert_string_equal(tide_transport_kind(f->ta), "write pipe");
    assert_string_equal(tide_transport_kind(f->tb), "read pipe");
    assert_true(tide_transport_can_write_eof(f->ta));
    assert_false(tide_transport_can_write_eof(f->tb));
    assert_int_equal(tide_transport_write(f->tb, "x", 1), TIDE_ENOTSUP);
    assert_int_equal(tide_transport_write_eof(f->tb), TIDE_ENOTSUP);
    assert_true(tide_transport_get_fd(f->ta) >= 0);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    assert_int_equal(tide_transport_get_peername(f->ta, (struct sockaddr *)&ss, &len),
                     TIDE_ENOTSOCK);
    tide_transport_close(f->ta);
    tide_transport_close(f->tb);
    ts_run_until(f->loop, ts_pred_duo_lost, f, 5);
    assert_string_equal(f->a.events, "ML");
    assert_string_equal(f->b.events, "ML");
}

/* 4 MiB through one pipe: the writer pauses and resumes at its watermarks, write_eof
 * closes the pipe after the queue is flushed, the reader gets every byte, then EOF. */
static void test_stream_and_eof(void **state) {
    ts_duo *f = *state;
    fx_pipes(f);
    size_t total = 4u << 20;
    unsigned char *data = malloc(total);
    assert_non_null(data);
    for (size_t i = 0; i < total; i++)
        data[i] = (unsigned char)(i * 7 + i / 4096);
    assert_int_equal(tide_transport_write(f->ta, data, total), 0);
    assert_int_equal(f->a.pauses, 1); /* inside the write, as for sockets */
    assert_true(tide_transport_get_write_buffer_size(f->ta) > 0);
    assert_int_equal(tide_transport_write_eof(f->ta), 0);
    /* write_eof is the pipe's close: closing, not half-closed. */
    assert_true(tide_transport_is_closing(f->ta));
    assert_int_equal(tide_transport_write(f->ta, "x", 1), TIDE_ECLOSED);
    ts_run_until(f->loop, ts_pred_duo_lost, f, 10);
    assert_int_equal(f->b.len, total);
    assert_memory_equal(f->b.data, data, total);
    assert_string_equal(f->a.events, "MPRL");
    assert_int_equal(f->a.lost_status, 0);
    assert_int_equal(f->b.eofs, 1);
    assert_int_equal(f->b.lost_status, 0);
    free(data);
}

static bool got_five(void *arg) { return ((ts_recorder *)arg)->len >= 5; }

static void test_pause_resume_reading_data(void **state) {
    ts_duo *f = *state;
    fx_pipes(f);
    tide_transport_pause_reading(f->tb);
    assert_int_equal(tide_transport_write(f->ta, "hello", 5), 0);
    ts_spin(f->loop, 5);
    assert_int_equal(f->b.len, 0);
    tide_transport_resume_reading(f->tb);
    ts_run_until(f->loop, got_five, &f->b, 5);
    assert_memory_equal(f->b.data, "hello", 5);
    tide_transport_close(f->ta);
    ts_run_until(f->loop, ts_pred_duo_lost, f, 5);
    assert_string_equal(f->b.events, "MDEL");
}

/* The reader goes away while nothing is queued: a clean end for the writer (as
 * asyncio), and the next write says EPIPE. */
static void test_reader_gone_idle(void **state) {
    ts_duo *f = *state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(tide_loop_connect_write_pipe(f->loop, p[1], &f->a.base, &f->ta), 0);
    ts_run_until(f->loop, ts_pred_made, &f->a, 5);
    close(p[0]);
    ts_run_until(f->loop, ts_pred_lost, &f->a, 5);
    assert_int_equal(f->a.lost_status, 0);
    assert_string_equal(f->a.events, "ML");
}

static void write_after_lost(ts_recorder *r, int status) {
    (void)status;
    *(int *)r->user = tide_transport_write(r->transport, "x", 1);
}

/* The reader goes away with bytes queued: they are lost, and that is EPIPE, with no
 * SIGPIPE (left at its default: it would kill the test). */
static void test_reader_gone_with_queue(void **state) {
    ts_duo *f = *state;
    signal(SIGPIPE, SIG_DFL);
    int p[2];
    assert_int_equal(pipe(p), 0);
    int after = 0;
    f->a.user = &after;
    f->a.on_lost = write_after_lost;
    assert_int_equal(tide_loop_connect_write_pipe(f->loop, p[1], &f->a.base, &f->ta), 0);
    ts_run_until(f->loop, ts_pred_made, &f->a, 5);
    static unsigned char big[1 << 20];
    assert_int_equal(tide_transport_write(f->ta, big, sizeof(big)), 0);
    assert_true(tide_transport_get_write_buffer_size(f->ta) > 0);
    close(p[0]);
    ts_run_until(f->loop, ts_pred_lost, &f->a, 5);
    assert_int_equal(f->a.lost_status, TIDE_EPIPE);
    assert_int_equal(after, TIDE_EPIPE);
}

/* A write straight into a pipe whose reader is gone: writev itself fails with EPIPE
 * (the signal it raises is taken back). */
static void test_write_into_dead_pipe(void **state) {
    ts_duo *f = *state;
    signal(SIGPIPE, SIG_DFL);
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(tide_loop_connect_write_pipe(f->loop, p[1], &f->a.base, &f->ta), 0);
    ts_run_until(f->loop, ts_pred_made, &f->a, 5);
    close(p[0]);
    /* Before the loop saw the hang-up: the write itself meets EPIPE. */
    assert_int_equal(tide_transport_write(f->ta, "data", 4), 0);
    ts_run_until(f->loop, ts_pred_lost, &f->a, 5);
    assert_int_equal(f->a.lost_status, TIDE_EPIPE);
    sigset_t pending;
    assert_int_equal(sigpending(&pending), 0);
    assert_false(sigismember(&pending, SIGPIPE));
}

/* A write that raises SIGPIPE and still reports bytes written (a pipe write that
 * filled part of its room before the reader went, a sendfile whose later pieces met a
 * closed socket): the signal is taken back all the same. The call is simulated, since
 * the kernel's timing cannot be arranged: it raises the signal and returns a count. */
static ssize_t partial_write_then_sigpipe(void *arg) {
    (void)arg;
    pthread_kill(pthread_self(), SIGPIPE);
    return 5;
}

static void test_sigpipe_after_partial_write(void **state) {
    (void)state;
    signal(SIGPIPE, SIG_DFL);
    assert_int_equal(tide__sys_nosigpipe(partial_write_then_sigpipe, NULL), 5);
    sigset_t pending;
    assert_int_equal(sigpending(&pending), 0);
    assert_false(sigismember(&pending, SIGPIPE));
}

static void test_fifo(void **state) {
    ts_duo *f = *state;
    char dir[] = "/tmp/tide-fifo-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    int r = open(path, O_RDONLY | O_NONBLOCK);
    int w = open(path, O_WRONLY | O_NONBLOCK);
    assert_true(r >= 0 && w >= 0);
    unlink(path);
    rmdir(dir);
    assert_int_equal(tide_loop_connect_write_pipe(f->loop, w, &f->a.base, &f->ta), 0);
    assert_int_equal(tide_loop_connect_read_pipe(f->loop, r, &f->b.base, &f->tb), 0);
    ts_run_until(f->loop, ts_pred_duo_made, f, 5);
    assert_int_equal(tide_transport_write(f->ta, "through a fifo", 14), 0);
    assert_int_equal(tide_transport_write_eof(f->ta), 0);
    ts_run_until(f->loop, ts_pred_duo_lost, f, 5);
    assert_int_equal(f->b.len, 14);
    assert_memory_equal(f->b.data, "through a fifo", 14);
}

/* A character device: /dev/null takes every write (epoll cannot watch it; libev
 * treats it as always ready). */
static void test_char_device(void **state) {
    ts_duo *f = *state;
    int fd = open("/dev/null", O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(tide_loop_connect_write_pipe(f->loop, fd, &f->a.base, &f->ta), 0);
    ts_run_until(f->loop, ts_pred_made, &f->a, 5);
    assert_int_equal(tide_transport_write(f->ta, "gone", 4), 0);
    assert_int_equal(tide_transport_write_eof(f->ta), 0);
    ts_run_until(f->loop, ts_pred_lost, &f->a, 5);
    assert_int_equal(f->a.lost_status, 0);
}

static void test_refused(void **state) {
    ts_duo *f = *state;
    char path[] = "/tmp/tide-pipe-file-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    /* A regular file is not a pipe; the descriptor stays the caller's. */
    assert_int_equal(tide_loop_connect_read_pipe(f->loop, fd, &f->b.base, NULL), TIDE_EINVAL);
    assert_int_equal(close(fd), 0);
    assert_int_equal(tide_loop_connect_read_pipe(f->loop, -1, &f->b.base, NULL), TIDE_EINVAL);
    assert_int_equal(tide_loop_connect_write_pipe(f->loop, 1000, &f->a.base, NULL), TIDE_EBADF);
    assert_int_equal(tide_loop_connect_write_pipe(NULL, 1, &f->a.base, NULL), TIDE_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        TS_DUO_TEST(test_kinds),
        TS_DUO_TEST(test_stream_and_eof),
        TS_DUO_TEST(test_pause_resume_reading_data),
        TS_DUO_TEST(test_reader_gone_idle),
        TS_DUO_TEST(test_reader_gone_with_queue),
        TS_DUO_TEST(test_write_into_dead_pipe),
        TS_DUO_TEST(test_sigpipe_after_partial_write),
        TS_DUO_TEST(test_fifo),
        TS_DUO_TEST(test_char_device),
        TS_DUO_TEST(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
