/* Injected system-call faults under the socket transport (reliability D1-D3): EAGAIN
 * on every second send with 1-byte partial writes, EINTR on recv and send, a reset
 * reported by recv, and no busy loop while the kernel is full or the queue is empty.
 * The faults replace entries of tide__sys; finish() and the teardown (ts_finish)
 * restore them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "support/sock.h"
#include "support/support.h"
#include "transports/transport_int.h"

static struct {
    long sends; /* send + sendmsg calls */
    long sendmsgs;
    long without_nosignal;
    long injected_eagain;
    long injected_eintr_send;
    long recvs;
    long injected_eintr_recv;
    int reset_fd; /* recv on this descriptor fails with ECONNRESET; -1: none */
} shim;

static void shim_reset(void) {
    memset(&shim, 0, sizeof(shim));
    shim.reset_fd = -1;
}

static void count_send(int flags) {
    shim.sends++;
    if (!(flags & MSG_NOSIGNAL))
        shim.without_nosignal++;
}

/* ---- the shims -------------------------------------------------------------------- */

static ssize_t counting_send(int fd, const void *buf, size_t len, int flags) {
    count_send(flags);
    return send(fd, buf, len, flags);
}

static ssize_t counting_sendmsg(int fd, const struct msghdr *msg, int flags) {
    count_send(flags);
    return sendmsg(fd, msg, flags);
}

/* Call number n fails when it is even: errno is set to err and *injected counted. */
static bool fails(long n, long *injected, int err) {
    if (n % 2 != 0)
        return false;
    (*injected)++;
    errno = err;
    return true;
}

/* Every second call would block; the others move one byte. */
static ssize_t stingy_send(int fd, const void *buf, size_t len, int flags) {
    count_send(flags);
    if (fails(shim.sends, &shim.injected_eagain, EAGAIN))
        return -1;
    return send(fd, buf, len > 0 ? 1 : 0, flags);
}

static ssize_t stingy_sendmsg(int fd, const struct msghdr *msg, int flags) {
    assert_true(msg->msg_iovlen > 1);
    shim.sendmsgs++;
    return stingy_send(fd, msg->msg_iov[0].iov_base, msg->msg_iov[0].iov_len, flags);
}

static ssize_t eintr_send(int fd, const void *buf, size_t len, int flags) {
    count_send(flags);
    if (fails(shim.sends, &shim.injected_eintr_send, EINTR))
        return -1;
    return send(fd, buf, len, flags);
}

static ssize_t eintr_sendmsg(int fd, const struct msghdr *msg, int flags) {
    count_send(flags);
    if (fails(shim.sends, &shim.injected_eintr_send, EINTR))
        return -1;
    return sendmsg(fd, msg, flags);
}

static ssize_t eintr_recv(int fd, void *buf, size_t len, int flags) {
    if (fails(++shim.recvs, &shim.injected_eintr_recv, EINTR))
        return -1;
    return recv(fd, buf, len, flags);
}

static ssize_t resetting_recv(int fd, void *buf, size_t len, int flags) {
    shim.recvs++;
    if (fd == shim.reset_fd) {
        errno = ECONNRESET;
        return -1;
    }
    return recv(fd, buf, len, flags);
}

/* ---- helpers ------------------------------------------------------------------------ */

static void set_flag(tide_loop_t *loop, void *arg) {
    (void)loop;
    *(int *)arg = 1;
}

/* Loop iterations during `seconds` of waiting for nothing in particular: a handful
 * when every watcher is quiet, thousands if one were left spinning. */
static unsigned iterations_while_idle(tide_loop_t *loop, double seconds) {
    struct ev_loop *ev = tide__loop_ev(loop);
    int fired = 0;
    assert_non_null(tide_loop_call_later(loop, seconds, set_flag, &fired));
    unsigned before = ev_iteration(ev);
    ts_run_until_flag(loop, &fired, 5);
    return ev_iteration(ev) - before;
}

/* The faults stop; a closes and both ends see connection_lost (the teardown checks
 * their order). */
static void finish(ts_duo *d) {
    tide__sys_reset();
    tide_transport_close(d->ta);
    ts_run_until(d->loop, ts_pred_lost, &d->a, 5);
    ts_run_until(d->loop, ts_pred_lost, &d->b, 5);
}

/* ---- tests ------------------------------------------------------------------------- */

/* D2: EAGAIN on every second send, one byte per send otherwise. Nothing is lost or
 * reordered, flow control still pauses and resumes, and the number of send calls is
 * bounded by the bytes (two per byte: no spinning on EAGAIN). */
static void stingy_kernel(void **state, sk_kind kind) {
    ts_duo *d = sk_open(state, kind);
    assert_int_equal(tide_transport_set_write_buffer_limits(d->ta, 4096, 1024), 0);
    shim_reset();
    tide__sys.send = stingy_send;
    tide__sys.sendmsg = stingy_sendmsg;

    enum { P1 = 24 * 1024, N = P1 + 10000 };
    static unsigned char buf[N];
    sk_pattern(buf, N, 0);
    assert_int_equal(tide_transport_write(d->ta, buf, 1000), 0);
    assert_int_equal(tide_transport_write(d->ta, buf + 1000, 3000), 0);
    assert_int_equal(d->a.pauses, 0);
    assert_int_equal(tide_transport_write(d->ta, buf + 4000, P1 - 4000), 0);
    assert_int_equal(d->a.pauses, 1);
    /* Appending while the queue drains wraps it around the end of the ring, so the
     * flush sends two pieces with sendmsg. */
    sk_run_until_count(d->loop, &d->a.resumes, 1);
    assert_int_equal(tide_transport_write(d->ta, buf + P1, N - P1), 0);
    assert_int_equal(d->a.pauses, 2);
    sk_run_until_len(d->loop, &d->b, N);
    assert_int_equal(d->b.len, N);
    assert_memory_equal(d->b.data, buf, N);
    assert_int_equal(d->a.resumes, 2);
    assert_true(shim.sendmsgs > 0);
    assert_int_equal(tide_transport_get_write_buffer_size(d->ta), 0);
    assert_true(shim.sends >= N);
    assert_true(shim.sends <= 2 * N + 16);
    assert_true(shim.injected_eagain > 0);
    assert_int_equal(shim.without_nosignal, 0);

    /* Drained: the write watcher is off, so waiting costs no sends and no spinning. */
    long sends = shim.sends;
    assert_true(iterations_while_idle(d->loop, 0.05) <= 10);
    assert_int_equal(shim.sends, sends);
    finish(d);
}

static void test_stingy_kernel_unix(void **state) { stingy_kernel(state, SK_SOCKETPAIR); }
static void test_stingy_kernel_tcp4(void **state) { stingy_kernel(state, SK_TCP4); }

/* D3: EINTR on every second recv and send, both directions of a 2 MiB echo: retried
 * transparently, no error reaches the protocol, the bytes match. */
static void test_eintr_everywhere(void **state) {
    ts_duo *d = *state;
    d->b.echo = true;
    assert_true(sk_connect(d, SK_TCP4));
    shim_reset();
    tide__sys.send = eintr_send;
    tide__sys.sendmsg = eintr_sendmsg;
    tide__sys.recv = eintr_recv;
    size_t len = 2u << 20;
    unsigned char *buf = malloc(len);
    assert_non_null(buf);
    sk_pattern(buf, len, 0);
    for (size_t off = 0; off < len; off += 100000) {
        size_t n = len - off < 100000 ? len - off : 100000;
        assert_int_equal(tide_transport_write(d->ta, buf + off, n), 0);
    }
    sk_run_until_len(d->loop, &d->a, len);
    assert_int_equal(d->a.len, len);
    assert_memory_equal(d->a.data, buf, len);
    free(buf);
    assert_true(shim.injected_eintr_send > 0);
    assert_true(shim.injected_eintr_recv > 0);
    assert_int_equal(shim.without_nosignal, 0);
    assert_int_equal(d->a.lost + d->b.lost, 0);
    assert_string_equal(d->b.events, "MD");
    finish(d);
}

/* D1's read side: recv failing with ECONNRESET is connection_lost(ECONNRESET) after
 * the bytes that came before it, never eof_received. */
static void test_recv_reset(void **state) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    shim_reset();
    tide__sys.recv = resetting_recv;
    assert_int_equal(tide_transport_write(d->tb, "abc", 3), 0);
    sk_run_until_len(d->loop, &d->a, 3);
    shim.reset_fd = tide_transport_get_fd(d->ta);
    assert_int_equal(tide_transport_write(d->tb, "def", 3), 0);
    ts_run_until(d->loop, ts_pred_lost, &d->a, 5);
    assert_string_equal(d->a.events, "MDL");
    assert_int_equal(d->a.eofs, 0);
    assert_int_equal(d->a.lost_status, TIDE_ECONNRESET);
    assert_int_equal(d->a.len, 3);
    /* The failed side closed its socket with "def" unread, which resets the peer. */
    ts_run_until(d->loop, ts_pred_lost, &d->b, 5);
    assert_string_equal(d->b.events, "ML");
    assert_int_equal(d->b.lost_status, TIDE_ECONNRESET);
}

/* No busy loop while the kernel's buffers are full: the write watcher waits for
 * writability, so a blocked writer makes (almost) no send calls and the loop sleeps.
 * Once the peer reads, everything arrives. */
static void test_no_spin_when_full(void **state) {
    ts_duo *d = sk_open(state, SK_TCP4);
    shim_reset();
    tide__sys.send = counting_send;
    tide__sys.sendmsg = counting_sendmsg;
    tide_transport_pause_reading(d->tb);
    uint64_t off = 0;
    size_t written = sk_fill(d->ta, 65536, &off);
    long sends = shim.sends;
    assert_true(iterations_while_idle(d->loop, 0.05) <= 10);
    assert_true(shim.sends - sends <= 2);
    assert_true(tide_transport_get_write_buffer_size(d->ta) > 0);
    tide_transport_resume_reading(d->tb);
    sk_run_until_len(d->loop, &d->b, written);
    sk_expect_pattern(&d->b, written);
    assert_int_equal(shim.without_nosignal, 0);
    finish(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        TS_DUO_TEST(test_stingy_kernel_unix),
        TS_DUO_TEST(test_stingy_kernel_tcp4),
        TS_DUO_TEST(test_eintr_everywhere),
        TS_DUO_TEST(test_recv_reset),
        TS_DUO_TEST(test_no_spin_when_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
