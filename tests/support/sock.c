/* Socket test helpers; see sock.h. Test-only code: failures end the test through
 * cmocka's assertions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "support/sock.h"
#include "support/support.h"
#include "transports/transport_int.h"

/* ---- raw pairs ------------------------------------------------------------------- */

static bool inet_pair(int family, int *client, int *server) {
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof(ss));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = in6addr_loopback;
        len = sizeof(*sin6);
    }
    int lfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 && (errno == EAFNOSUPPORT || errno == EPROTONOSUPPORT))
        return false;
    assert_true(lfd >= 0);
    if (bind(lfd, (struct sockaddr *)&ss, len) < 0) {
        /* No ::1 on this machine (IPv6 disabled): the caller skips. */
        int err = errno;
        close(lfd);
        if (err == EADDRNOTAVAIL || err == EAFNOSUPPORT)
            return false;
        fail_msg("bind: %s", strerror(err));
    }
    assert_int_equal(listen(lfd, 1), 0);
    len = sizeof(ss);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&ss, &len), 0);
    int c = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c >= 0);
    assert_int_equal(connect(c, (struct sockaddr *)&ss, len), 0);
    int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(s >= 0);
    close(lfd);
    *client = c;
    *server = s;
    return true;
}

static void unix_path_pair(int *client, int *server) {
    char dir[] = "/tmp/tide-sock-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/s", dir);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    assert_int_equal(listen(lfd, 1), 0);
    int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c >= 0);
    assert_int_equal(connect(c, (struct sockaddr *)&sun, sizeof(sun)), 0);
    int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(s >= 0);
    close(lfd);
    unlink(sun.sun_path);
    rmdir(dir);
    *client = c;
    *server = s;
}

bool sk_raw_pair(sk_kind kind, int *client, int *server) {
    switch (kind) {
    case SK_SOCKETPAIR: {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        *client = sv[0];
        *server = sv[1];
        return true;
    }
    case SK_TCP4:
        return inet_pair(AF_INET, client, server);
    case SK_TCP6:
        return inet_pair(AF_INET6, client, server);
    case SK_UNIX_PATH:
        unix_path_pair(client, server);
        return true;
    }
    return false;
}

/* ---- wrapping -------------------------------------------------------------------- */

typedef struct adopt {
    tide_protocol_t *protocol;
    tide_transport_t *transport;
    int status;
    int done;
} adopt;

static tide_protocol_t *hand_out(void *arg) { return ((adopt *)arg)->protocol; }

static void adopted(tide_loop_t *loop, int status, tide_transport_t *t, tide_protocol_t *p,
                    void *arg) {
    (void)loop;
    adopt *a = arg;
    a->status = status;
    a->transport = t;
    assert_ptr_equal(p, status == 0 ? a->protocol : NULL);
    a->done = 1;
}

tide_transport_t *sk_wrap(tide_loop_t *loop, int fd, tide_protocol_t *p, bool server_side) {
    adopt a = {.protocol = p};
    int rc = server_side ? tide_loop_connect_accepted_socket(loop, fd, hand_out, &a, NULL, adopted, &a)
                         : tide_loop_connect_socket(loop, fd, hand_out, &a, NULL, adopted, &a);
    assert_int_equal(rc, 0);
    ts_run_until_flag(loop, &a.done, 5);
    assert_int_equal(a.status, 0);
    assert_non_null(a.transport);
    return a.transport;
}

bool sk_connect(ts_duo *d, sk_kind kind) {
    int c, s;
    if (!sk_raw_pair(kind, &c, &s))
        return false;
    d->ta = sk_wrap(d->loop, c, &d->a.base, false);
    d->tb = sk_wrap(d->loop, s, &d->b.base, true);
    return true;
}

ts_duo *sk_open(void **state, sk_kind kind) {
    ts_duo *d = *state;
    assert_true(sk_connect(d, kind));
    return d;
}

/* ---- data ------------------------------------------------------------------------ */

void sk_pattern(void *buf, size_t len, uint64_t offset) {
    unsigned char *p = buf;
    for (size_t i = 0; i < len; i++) {
        uint64_t x = offset + i;
        /* Mixes the high bits in too, so a shift by a multiple of 256 shows. */
        p[i] = (unsigned char)(x ^ (x >> 8) * 31u ^ (x >> 16) * 131u ^ (x >> 24) * 17u);
    }
}

uint64_t sk_pattern_sum(uint64_t offset, size_t len, uint64_t h) {
    unsigned char buf[4096];
    while (len > 0) {
        size_t n = len < sizeof(buf) ? len : sizeof(buf);
        sk_pattern(buf, n, offset);
        h = ts_fnv1a(buf, n, h);
        offset += n;
        len -= n;
    }
    return h;
}

void sk_expect_pattern(const ts_recorder *r, uint64_t len) {
    assert_int_equal(r->len, len);
    assert_true(ts_fnv1a(r->data, r->len, TS_FNV_SEED) == sk_pattern_sum(0, len, TS_FNV_SEED));
}

size_t sk_write_pattern(tide_transport_t *t, size_t len, uint64_t *offset) {
    static unsigned char buf[64 * 1024];
    assert_true(len <= sizeof(buf));
    sk_pattern(buf, len, *offset);
    assert_int_equal(tide_transport_write(t, buf, len), 0);
    *offset += len;
    return len;
}

size_t sk_fill(tide_transport_t *t, size_t chunk, uint64_t *offset) {
    size_t total = 0;
    /* Bounded: loopback buffers hold a few MiB at most. */
    for (int i = 0; i < 100000 && tide_transport_get_write_buffer_size(t) == 0; i++)
        total += sk_write_pattern(t, chunk, offset);
    assert_true(tide_transport_get_write_buffer_size(t) > 0);
    return total;
}

typedef struct at_least {
    const int *value;
    int min;
} at_least;

static bool reached(void *arg) {
    at_least *w = arg;
    return *w->value >= w->min;
}

void sk_run_until_count(tide_loop_t *loop, const int *value, int min) {
    at_least w = {value, min};
    ts_run_until(loop, reached, &w, 10);
}

typedef struct want_len {
    ts_recorder *r;
    size_t len;
} want_len;

static bool has_len(void *arg) {
    want_len *w = arg;
    return w->r->len >= w->len;
}

void sk_run_until_len(tide_loop_t *loop, ts_recorder *r, size_t len) {
    want_len w = {r, len};
    ts_run_until(loop, has_len, &w, 10);
}

void sk_close_with_reset(int fd) {
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fd);
}
