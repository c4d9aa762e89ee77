/* Datagram endpoints (issue 15): every option of create_datagram_endpoint over IPv4,
 * IPv6 and Unix sockets; datagrams queued whole; EMSGSIZE, ENOTCONN and EISCONN at
 * the call; broadcast refused without allow_broadcast; ICMP port unreachable reaching
 * error_received; truncation reported, not delivered; pause_reading in the middle of a
 * batch; closing and aborting from callbacks; 100,000 datagrams of 1..65,507 bytes
 * with none lost while the receiver keeps up, and exact counts when it does not;
 * EAGAIN, EINTR and ENOBUFS injected under sendto. Every wait is bounded and driven by
 * events (ts_run_until). */
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
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "support/net.h"
#include "support/support.h"
#include "transports/transport_int.h"

/* ---- a recording datagram protocol ------------------------------------------------ */

typedef struct drec drec;
struct drec {
    tide_datagram_protocol_t base;
    tide_datagram_t *ep;
    int made, lost, lost_status, pauses, resumes, errors, last_error, violations;
    long received;
    size_t last_len;
    unsigned char last[512];
    struct sockaddr_storage from;
    socklen_t fromlen;
    bool echo;
    /* Optional hook after the recording (it may close, abort or pause). */
    void (*on_dgram)(drec *r, const unsigned char *data, size_t len);
    void *user;
    /* buffered form */
    unsigned char *buf;
    size_t bufsize;
};

static drec *rec_of(tide_datagram_protocol_t *p) { return TIDE_CONTAINER_OF(p, drec, base); }

static void check_live(drec *r) {
    if (!r->made || r->lost)
        r->violations++;
}

static void r_made(tide_datagram_protocol_t *p, tide_datagram_t *ep) {
    drec *r = rec_of(p);
    if (r->made || r->lost)
        r->violations++;
    r->made++;
    r->ep = ep;
}

static void r_got(drec *r, const unsigned char *data, size_t len, const struct sockaddr *addr,
                  socklen_t alen) {
    check_live(r);
    r->received++;
    r->last_len = len;
    memcpy(r->last, data, len < sizeof(r->last) ? len : sizeof(r->last));
    r->fromlen = alen;
    memcpy(&r->from, addr, alen <= sizeof(r->from) ? alen : sizeof(r->from));
    if (r->echo)
        assert_int_equal(tide_datagram_sendto(r->ep, data, len, addr, alen), 0);
    if (r->on_dgram)
        r->on_dgram(r, data, len);
}

static void r_received(tide_datagram_protocol_t *p, const void *data, size_t len,
                       const struct sockaddr *addr, socklen_t alen) {
    r_got(rec_of(p), data, len, addr, alen);
}

static void r_error(tide_datagram_protocol_t *p, int err) {
    drec *r = rec_of(p);
    check_live(r);
    r->errors++;
    r->last_error = err;
}

static void r_lost(tide_datagram_protocol_t *p, int status) {
    drec *r = rec_of(p);
    check_live(r);
    r->lost++;
    r->lost_status = status;
}

static void r_pause(tide_datagram_protocol_t *p) {
    drec *r = rec_of(p);
    if (r->pauses != r->resumes)
        r->violations++;
    r->pauses++;
}

static void r_resume(tide_datagram_protocol_t *p) {
    drec *r = rec_of(p);
    if (r->pauses != r->resumes + 1)
        r->violations++;
    r->resumes++;
}

static void *r_get_buffer(tide_datagram_protocol_t *p, size_t *len) {
    drec *r = rec_of(p);
    *len = r->bufsize;
    return r->buf;
}

static void r_updated(tide_datagram_protocol_t *p, size_t n, const struct sockaddr *addr,
                      socklen_t alen) {
    drec *r = rec_of(p);
    r_got(r, r->buf, n, addr, alen);
}

static const tide_datagram_protocol_ops_t rec_ops = {
    .size = TIDE_DATAGRAM_PROTOCOL_OPS_SIZE,
    .connection_made = r_made,
    .datagram_received = r_received,
    .error_received = r_error,
    .connection_lost = r_lost,
    .pause_writing = r_pause,
    .resume_writing = r_resume,
};

static const tide_datagram_protocol_ops_t buffered_ops = {
    .size = TIDE_DATAGRAM_PROTOCOL_OPS_SIZE,
    .connection_made = r_made,
    .error_received = r_error,
    .connection_lost = r_lost,
    .get_buffer = r_get_buffer,
    .datagram_updated = r_updated,
};

static void rec_init(drec *r) {
    memset(r, 0, sizeof(*r));
    r->base.ops = &rec_ops;
}

static tide_datagram_protocol_t *rec_factory(void *arg) { return &((drec *)arg)->base; }

static bool pred_lost(void *arg) { return ((drec *)arg)->lost > 0; }
static bool pred_made(void *arg) { return ((drec *)arg)->made > 0; }
static bool pred_received(void *arg) { return ((drec *)arg)->received > 0; }
static bool pred_resumed(void *arg) { return ((drec *)arg)->resumes > 0; }

/* A datagram from the raw socket fd, running the loop while none is there (the
 * endpoint under test sends from its events); fails after 5 seconds. */
static ssize_t raw_recv(tide_loop_t *loop, int fd, void *buf, size_t size) {
    double deadline = tide__now_monotonic() + ts_scaled(5);
    for (;;) {
        ssize_t r = recv(fd, buf, size, MSG_DONTWAIT);
        if (r >= 0 || errno != EAGAIN)
            return r;
        assert_true(tide__now_monotonic() < deadline);
        tide_loop_run(loop, TIDE_RUN_NOWAIT);
    }
}

/* ---- fixture ---------------------------------------------------------------------- */

typedef struct fix {
    tide_loop_t *loop;
    int fds_before;
    char dir[64];
    drec a, b;
} fix;

static int setup(void **state) {
    fix *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->fds_before = ts_count_fds();
    f->loop = ts_loop_new();
    snprintf(f->dir, sizeof(f->dir), "/tmp/tide-dgram-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    rec_init(&f->a);
    rec_init(&f->b);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fix *f = *state;
    ts_finish(f->loop, f->fds_before);
    assert_int_equal(rmdir(f->dir), 0); /* every socket file was removed */
    assert_int_equal(f->a.violations, 0);
    assert_int_equal(f->b.violations, 0);
    free(f);
    return 0;
}

#define DG_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

typedef struct created {
    int calls, status;
    tide_datagram_t *ep;
} created;

static void created_cb(tide_loop_t *loop, int status, tide_datagram_t *ep,
                       tide_datagram_protocol_t *p, void *arg) {
    (void)loop;
    (void)p;
    created *c = arg;
    c->calls++;
    c->status = status;
    c->ep = ep;
}

static bool pred_created(void *arg) { return ((created *)arg)->calls > 0; }

/* Creates an endpoint for r and returns the completion's status (the endpoint in r->ep). */
static int make_status(fix *f, drec *r, const tide_datagram_options_t *o) {
    created c = {0};
    int rc = tide_loop_create_datagram_endpoint(f->loop, rec_factory, r, o, created_cb, &c);
    if (rc < 0)
        return rc;
    assert_int_equal(c.calls, 0); /* never from inside the call */
    ts_run_until(f->loop, pred_created, &c, 5);
    assert_int_equal(c.calls, 1);
    if (c.status == 0) {
        assert_int_equal(r->made, 1); /* connection_made ran before the completion */
        assert_ptr_equal(c.ep, r->ep);
    } else {
        assert_int_equal(r->made, 0);
    }
    return c.status;
}

static tide_datagram_t *make(fix *f, drec *r, const tide_datagram_options_t *o) {
    assert_int_equal(make_status(f, r, o), 0);
    return r->ep;
}

static uint16_t port_of(tide_datagram_t *ep) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    assert_int_equal(tide_datagram_get_sockname(ep, (struct sockaddr *)&ss, &len), 0);
    return nt_addr_port((struct sockaddr *)&ss);
}

static void close_both(fix *f) {
    tide_datagram_close(f->a.ep);
    tide_datagram_close(f->b.ep);
    ts_run_until(f->loop, pred_lost, &f->a, 5);
    ts_run_until(f->loop, pred_lost, &f->b, 5);
    assert_int_equal(f->a.lost_status, 0);
    assert_int_equal(f->b.lost_status, 0);
}

static bool pred_created_pair(void *arg) {
    fix *f = arg;
    return pred_made(&f->a) && pred_made(&f->b);
}

static bool pred_b_received(void *arg) { return ((fix *)arg)->b.received > 0; }
static bool pred_a_received(void *arg) { return ((fix *)arg)->a.received > 0; }

/* a (connected to b) sends "ping"; b echoes it; a gets it back. */
static void ping(fix *f, const char *msg) {
    long a0 = f->a.received, b0 = f->b.received;
    f->b.echo = true;
    assert_int_equal(tide_datagram_sendto(f->a.ep, msg, strlen(msg), NULL, 0), 0);
    ts_run_until(f->loop, pred_b_received, f, 5);
    ts_run_until(f->loop, pred_a_received, f, 5);
    assert_int_equal(f->b.received, b0 + 1);
    assert_int_equal(f->a.received, a0 + 1);
    assert_int_equal(f->a.last_len, strlen(msg));
    assert_memory_equal(f->a.last, msg, strlen(msg));
}

/* b bound on 127.0.0.1, a connected to it. */
static void loopback_pair(fix *f) {
    tide_datagram_options_t so = {.local_host = "127.0.0.1"};
    make(f, &f->b, &so);
    tide_datagram_options_t co = {.remote_host = "127.0.0.1", .remote_port = port_of(f->b.ep)};
    make(f, &f->a, &co);
}

/* ---- families ------------------------------------------------------------------- */

static void echo_over(fix *f, const char *host) {
    tide_datagram_options_t so = {.local_host = host};
    make(f, &f->b, &so);
    tide_datagram_options_t co = {.remote_host = host, .remote_port = port_of(f->b.ep)};
    make(f, &f->a, &co);
    f->b.received = 0; /* predicates count from here */
    ping(f, "hello");
    /* b saw a's address, which is a's sockname. */
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    assert_int_equal(tide_datagram_get_sockname(f->a.ep, (struct sockaddr *)&ss, &len), 0);
    assert_int_equal(f->b.fromlen, len);
    assert_memory_equal(&f->b.from, &ss, len);
    /* The connected end knows its peer; the other has none. */
    len = sizeof(ss);
    assert_int_equal(tide_datagram_get_peername(f->a.ep, (struct sockaddr *)&ss, &len), 0);
    assert_int_equal(nt_addr_port((struct sockaddr *)&ss), port_of(f->b.ep));
    len = sizeof(ss);
    assert_int_equal(tide_datagram_get_peername(f->b.ep, (struct sockaddr *)&ss, &len),
                     TIDE_ENOTCONN);
    tide_datagram_stats_t st;
    tide_datagram_get_stats(f->a.ep, &st);
    assert_int_equal(st.sent, 1);
    assert_int_equal(st.received, 1);
    assert_true(tide_datagram_get_fd(f->a.ep) >= 0);
    assert_ptr_equal(tide_datagram_get_loop(f->a.ep), f->loop);
    close_both(f);
}

static void test_ipv4(void **state) { echo_over(*state, "127.0.0.1"); }

static void test_ipv6(void **state) {
    if (!nt_ipv6_available())
        skip();
    echo_over(*state, "::1");
}

/* A name goes through the resolver (a worker thread unless it is literal). */
static void test_name(void **state) { echo_over(*state, "localhost"); }

static void unix_echo(fix *f, const char *spath, const char *cpath) {
    tide_datagram_options_t so = {.family = AF_UNIX, .local_host = spath};
    make(f, &f->b, &so);
    tide_datagram_options_t co = {.family = AF_UNIX, .remote_host = spath, .local_host = cpath};
    make(f, &f->a, &co);
    ping(f, "unix");
    assert_true(f->b.fromlen > sizeof(sa_family_t)); /* named: the answer could come back */
    close_both(f);
}

static void test_unix_named(void **state) {
    fix *f = *state;
    char spath[128], cpath[128];
    snprintf(spath, sizeof(spath), "%s/s", f->dir);
    snprintf(cpath, sizeof(cpath), "%s/c", f->dir);
    /* A stale socket file at the path is replaced, as asyncio does. */
    int stale = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    strcpy(sun.sun_path, spath);
    assert_int_equal(bind(stale, (struct sockaddr *)&sun, sizeof(sun)), 0);
    close(stale);
    unix_echo(f, spath, cpath);
    struct stat st;
    assert_int_equal(stat(spath, &st), -1); /* removed at close */
    assert_int_equal(stat(cpath, &st), -1);
}

static void test_unix_abstract(void **state) {
    fix *f = *state;
    char spath[64];
    snprintf(spath, sizeof(spath), "@tide-dgram-%d", (int)getpid());
    unix_echo(f, spath, NULL); /* the client is autobound */
}

static void test_options(void **state) {
    fix *f = *state;
    /* No address and no family: asyncio's "unexpected address family". */
    tide_datagram_options_t none = {0};
    assert_int_equal(
        tide_loop_create_datagram_endpoint(f->loop, rec_factory, &f->a, &none, created_cb, NULL),
        TIDE_EINVAL);
    tide_datagram_options_t bad = {.family = 12345};
    assert_int_equal(
        tide_loop_create_datagram_endpoint(f->loop, rec_factory, &f->a, &bad, created_cb, NULL),
        TIDE_EINVAL);
    tide_datagram_options_t longpath = {.family = AF_UNIX, .local_host = ""};
    char big[200];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    longpath.local_host = big;
    assert_int_equal(tide_loop_create_datagram_endpoint(f->loop, rec_factory, &f->a, &longpath,
                                                        created_cb, NULL),
                     TIDE_ENAMETOOLONG);

    /* Family only: an unbound socket that sends to any address. */
    tide_datagram_options_t fam = {.family = AF_INET};
    make(f, &f->a, &fam);
    tide_datagram_options_t so = {.local_host = "127.0.0.1", .reuse_port = true};
    make(f, &f->b, &so);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port_of(f->b.ep))};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(tide_datagram_sendto(f->a.ep, "x", 1, NULL, 0), TIDE_ENOTCONN);
    assert_int_equal(tide_datagram_sendto(f->a.ep, "x", 1, (struct sockaddr *)&to, sizeof(to)), 0);
    ts_run_until(f->loop, pred_b_received, f, 5);

    /* reuse_port: a second endpoint on the same port works only when both ask for it. */
    drec c, d;
    rec_init(&c);
    rec_init(&d);
    tide_datagram_options_t same = {
        .local_host = "127.0.0.1", .local_port = port_of(f->b.ep), .reuse_port = true};
    make(f, &c, &same);
    same.reuse_port = false;
    assert_int_equal(make_status(f, &d, &same), TIDE_EADDRINUSE);
    tide_datagram_close(c.ep);
    ts_run_until(f->loop, pred_lost, &c, 5);
    assert_int_equal(c.violations, 0);

    /* A local and a remote address of different families have no candidate. */
    if (nt_ipv6_available()) {
        tide_datagram_options_t mixed = {
            .local_host = "::1", .remote_host = "127.0.0.1", .remote_port = 9};
        assert_int_equal(make_status(f, &d, &mixed), TIDE_EADDRNOTAVAIL);
        /* dual_stack: an IPv6 endpoint on :: hears IPv4 senders. */
        drec e;
        rec_init(&e);
        tide_datagram_options_t v6 = {.local_host = "::", .dual_stack = true};
        make(f, &e, &v6);
        to.sin_port = htons(port_of(e.ep));
        assert_int_equal(tide_datagram_sendto(f->a.ep, "y", 1, (struct sockaddr *)&to, sizeof(to)),
                         0);
        ts_run_until(f->loop, pred_received, &e, 5);
        assert_int_equal(e.from.ss_family, AF_INET6);
        tide_datagram_close(e.ep);
        ts_run_until(f->loop, pred_lost, &e, 5);
    }
    close_both(f);
}

static void test_from_fd(void **state) {
    fix *f = *state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
    created c1 = {0}, c2 = {0};
    assert_int_equal(tide_loop_create_datagram_endpoint_from_fd(f->loop, sv[0], rec_factory, &f->a,
                                                                created_cb, &c1),
                     0);
    assert_int_equal(tide_loop_create_datagram_endpoint_from_fd(f->loop, sv[1], rec_factory, &f->b,
                                                                created_cb, &c2),
                     0);
    ts_run_until(f->loop, pred_created, &c1, 5);
    ts_run_until(f->loop, pred_created, &c2, 5);
    assert_int_equal(c1.status, 0);
    ping(f, "pair"); /* connected: no address needed */
    close_both(f);

    /* A stream socket is refused and stays the caller's. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(
        tide_loop_create_datagram_endpoint_from_fd(f->loop, s, rec_factory, &f->a, created_cb, &c1),
        TIDE_EINVAL);
    assert_int_equal(close(s), 0);
}

/* ---- refusals at the call -------------------------------------------------------- */

static void test_refusals(void **state) {
    fix *f = *state;
    loopback_pair(f);
    static unsigned char big[65508];
    assert_int_equal(tide_datagram_sendto(f->a.ep, big, sizeof(big), NULL, 0), TIDE_EMSGSIZE);
    assert_int_equal(tide_datagram_sendto(f->a.ep, big, 65507, NULL, 0), 0);
    ts_run_until(f->loop, pred_b_received, f, 5);
    assert_int_equal(f->b.last_len, 65507);
    /* A zero-length datagram is a datagram. */
    f->b.received = 0;
    assert_int_equal(tide_datagram_sendto(f->a.ep, NULL, 0, NULL, 0), 0);
    ts_run_until(f->loop, pred_b_received, f, 5);
    assert_int_equal(f->b.last_len, 0);
    /* Another address than the connected peer's. */
    struct sockaddr_in other = {.sin_family = AF_INET, .sin_port = htons(9)};
    other.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(
        tide_datagram_sendto(f->a.ep, "x", 1, (struct sockaddr *)&other, sizeof(other)),
        TIDE_EISCONN);
    assert_int_equal(tide_datagram_sendto(f->a.ep, "x", 1, (struct sockaddr *)&other, 1),
                     TIDE_EINVAL);
    /* Broadcast needs allow_broadcast. */
    struct sockaddr_in bcast = {.sin_family = AF_INET, .sin_port = htons(9)};
    bcast.sin_addr.s_addr = htonl(INADDR_BROADCAST);
    assert_int_equal(
        tide_datagram_sendto(f->b.ep, "x", 1, (struct sockaddr *)&bcast, sizeof(bcast)),
        TIDE_EACCES);
    drec c;
    rec_init(&c);
    tide_datagram_options_t bo = {.family = AF_INET, .allow_broadcast = true};
    make(f, &c, &bo);
    assert_int_not_equal(
        tide_datagram_sendto(c.ep, "x", 1, (struct sockaddr *)&bcast, sizeof(bcast)), TIDE_EACCES);
    tide_datagram_close(c.ep);
    assert_int_equal(tide_datagram_sendto(c.ep, "x", 1, (struct sockaddr *)&bcast, sizeof(bcast)),
                     TIDE_ECLOSED);
    ts_run_until(f->loop, pred_lost, &c, 5);
    close_both(f);
}

/* ---- ICMP errors ------------------------------------------------------------------ */

static bool pred_error(void *arg) { return ((drec *)arg)->errors > 0; }

static void time_up(tide_loop_t *loop, void *arg) {
    (void)loop;
    *(int *)arg = 1;
}

/* Runs until r saw an error or `seconds` passed, whichever comes first. */
static void run_until_error(tide_loop_t *loop, drec *r, double seconds) {
    int done = 0;
    tide_handle_t *h = tide_loop_call_later(loop, seconds, time_up, &done);
    assert_non_null(h);
    while (!done && r->errors == 0)
        tide_loop_run(loop, TIDE_RUN_ONCE);
    if (!done)
        tide_handle_cancel(h);
}

static void test_icmp_refused(void **state) {
    fix *f = *state;
    /* A port nobody listens on: bind one, note it, close it. */
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
    close(s);
    tide_datagram_options_t co = {.remote_host = "127.0.0.1", .remote_port = ntohs(a.sin_port)};
    make(f, &f->a, &co);
    /* The kernel rate-limits ICMP errors machine-wide, so a knock may go unanswered
     * while other programs spend the budget: knock again, a bounded number of times. */
    for (int i = 0; i < 10 && f->a.errors == 0; i++) {
        assert_int_equal(tide_datagram_sendto(f->a.ep, "knock", 5, NULL, 0), 0);
        run_until_error(f->loop, &f->a, 1.0);
    }
    assert_int_equal(f->a.last_error, TIDE_ECONNREFUSED);
    /* Not fatal: the endpoint goes on. */
    assert_false(tide_datagram_is_closing(f->a.ep));
    assert_int_equal(f->a.lost, 0);
    tide_datagram_close(f->a.ep);
    ts_run_until(f->loop, pred_lost, &f->a, 5);
    assert_int_equal(f->a.lost_status, 0);
}

/* ---- truncation ------------------------------------------------------------------- */

static void test_truncation(void **state) {
    fix *f = *state;
    unsigned char small[16];
    f->b.base.ops = &buffered_ops;
    f->b.buf = small;
    f->b.bufsize = sizeof(small);
    loopback_pair(f);
    char msg[100];
    memset(msg, 'm', sizeof(msg));
    assert_int_equal(tide_datagram_sendto(f->a.ep, msg, sizeof(msg), NULL, 0), 0);
    ts_run_until(f->loop, pred_error, &f->b, 5);
    assert_int_equal(f->b.last_error, TIDE_EDGRAM_TRUNCATED);
    assert_int_equal(f->b.received, 0); /* never delivered as if whole */
    assert_int_equal(tide_datagram_sendto(f->a.ep, "whole", 5, NULL, 0), 0);
    ts_run_until(f->loop, pred_b_received, f, 5);
    assert_int_equal(f->b.last_len, 5);
    assert_memory_equal(small, "whole", 5);
    tide_datagram_stats_t st;
    tide_datagram_get_stats(f->b.ep, &st);
    assert_int_equal(st.truncated, 1);
    assert_int_equal(st.received, 1);
    close_both(f);
}

/* a on one end of a Unix socketpair (made); sv[1] stays raw, the test's to close. */
static void raw_peer(fix *f, int sv[2]) {
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
    created c = {0};
    assert_int_equal(tide_loop_create_datagram_endpoint_from_fd(f->loop, sv[0], rec_factory, &f->a,
                                                                created_cb, &c),
                     0);
    ts_run_until(f->loop, pred_created, &c, 5);
}

/* ---- queueing whole datagrams and flow control ------------------------------------ */

/* A connected Unix pair whose receiver does not read: the kernel's queue fills, the
 * rest is queued whole, pause_writing fires; reading the other end drains the queue
 * and resume_writing follows. Every datagram arrives whole and in order. */
static void test_queue_whole(void **state) {
    fix *f = *state;
    int sv[2];
    raw_peer(f, sv);
    assert_int_equal(tide_datagram_set_write_buffer_limits(f->a.ep, 20000, -1), 0);
    size_t low, high;
    tide_datagram_get_write_buffer_limits(f->a.ep, &low, &high);
    assert_int_equal(high, 20000);
    assert_int_equal(low, 5000);
    unsigned char msg[3000];
    int n = 0;
    while (f->a.pauses == 0) {
        memset(msg, n & 0xff, sizeof(msg));
        size_t len = 1000 + (size_t)(n % 7) * 300;
        assert_int_equal(tide_datagram_sendto(f->a.ep, msg, len, NULL, 0), 0);
        n++;
        assert_true(n < 100000);
    }
    size_t queued = tide_datagram_get_write_buffer_size(f->a.ep);
    assert_true(queued > 20000);
    /* A hard cap refuses the next datagram whole. */
    tide_datagram_set_max_write_buffer_size(f->a.ep, queued);
    assert_int_equal(tide_datagram_sendto(f->a.ep, msg, 1, NULL, 0), TIDE_ENOBUFS);
    tide_datagram_set_max_write_buffer_size(f->a.ep, 0);
    /* Read the other end raw, in order, each datagram whole. */
    for (int i = 0; i < n; i++) {
        unsigned char got[4000];
        ssize_t r = raw_recv(f->loop, sv[1], got, sizeof(got));
        assert_int_equal(r, 1000 + (i % 7) * 300);
        assert_int_equal(got[0], i & 0xff);
        assert_int_equal(got[r - 1], i & 0xff);
    }
    ts_run_until(f->loop, pred_resumed, &f->a, 5);
    assert_int_equal(tide_datagram_get_write_buffer_size(f->a.ep), 0);
    tide_datagram_close(f->a.ep);
    ts_run_until(f->loop, pred_lost, &f->a, 5);
    close(sv[1]);
}

/* close() sends what is queued first. */
static void test_close_flushes(void **state) {
    fix *f = *state;
    int sv[2];
    raw_peer(f, sv);
    int n = 0;
    while (tide_datagram_get_write_buffer_size(f->a.ep) == 0) {
        assert_int_equal(tide_datagram_sendto(f->a.ep, "0123456789", 10, NULL, 0), 0);
        n++;
    }
    assert_int_equal(tide_datagram_sendto(f->a.ep, "last", 4, NULL, 0), 0);
    n++;
    tide_datagram_close(f->a.ep);
    ts_spin(f->loop, 5);
    assert_int_equal(f->a.lost, 0); /* waits for its queue */
    char buf[16];
    ssize_t r = 0;
    for (int i = 0; i < n; i++)
        r = raw_recv(f->loop, sv[1], buf, sizeof(buf));
    ts_run_until(f->loop, pred_lost, &f->a, 5);
    assert_int_equal(recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT), -1); /* nothing more */
    assert_int_equal(r, 4);
    assert_memory_equal(buf, "last", 4);
    close(sv[1]);
}

/* ---- batches: pause, close and abort in the middle -------------------------------- */

static void pause_at_3(drec *r, const unsigned char *data, size_t len) {
    (void)data;
    (void)len;
    if (r->received == 3)
        tide_datagram_pause_reading(r->ep);
}

static void abort_at_2(drec *r, const unsigned char *data, size_t len) {
    (void)data;
    (void)len;
    if (r->received == 2)
        tide_datagram_abort(r->ep);
}

static bool pred_b10(void *arg) { return ((fix *)arg)->b.received >= 10; }
static bool pred_b3(void *arg) { return ((fix *)arg)->b.received >= 3; }

static void send_ten(fix *f) {
    for (int i = 0; i < 10; i++)
        assert_int_equal(tide_datagram_sendto(f->a.ep, &i, sizeof(i), NULL, 0), 0);
}

static void test_pause_mid_batch(void **state) {
    fix *f = *state;
    f->b.on_dgram = pause_at_3;
    loopback_pair(f);
    send_ten(f); /* all ten wait in the kernel: one recvmmsg takes them */
    ts_run_until(f->loop, pred_b3, f, 5);
    ts_spin(f->loop, 5);
    assert_int_equal(f->b.received, 3);
    f->b.on_dgram = NULL;
    tide_datagram_resume_reading(f->b.ep);
    ts_run_until(f->loop, pred_b10, f, 5);
    assert_int_equal(f->b.received, 10);
    int last;
    memcpy(&last, f->b.last, sizeof(last));
    assert_int_equal(last, 9);
    close_both(f);
}

static void test_abort_mid_batch(void **state) {
    fix *f = *state;
    f->b.on_dgram = abort_at_2;
    loopback_pair(f);
    send_ten(f);
    ts_run_until(f->loop, pred_lost, &f->b, 5);
    assert_int_equal(f->b.received, 2);
    assert_int_equal(f->b.lost, 1);
    tide_datagram_close(f->a.ep);
    ts_run_until(f->loop, pred_lost, &f->a, 5);
}

/* ---- volume ------------------------------------------------------------------------ */

#define VOLUME 100000
#define INFLIGHT_BYTES 120000 /* well under the default receive buffer (212,992) */

typedef struct volume {
    fix *f;
    long sent, got;
    size_t inflight;
    long bad;
    unsigned char *buf;
} volume;

/* Sizes from 1 to 65,507: mostly small, every 97th large, the extremes included. */
static size_t vsize(long i) {
    if (i == 0)
        return 1;
    if (i == 1)
        return 65507;
    if (i % 97 == 0)
        return 1 + (size_t)((i * 7919) % 65507);
    return 1 + (size_t)((i * 31) % 1500);
}

static void vfill(unsigned char *buf, long i, size_t len) {
    memset(buf, (int)(i & 0xff), len);
    if (len >= sizeof(i))
        memcpy(buf, &i, sizeof(i));
}

static void vpump(volume *v) {
    while (v->sent < VOLUME) {
        size_t len = vsize(v->sent);
        if (v->inflight > 0 && v->inflight + len + 1024 > INFLIGHT_BYTES)
            return;
        vfill(v->buf, v->sent, len);
        assert_int_equal(tide_datagram_sendto(v->f->a.ep, v->buf, len, NULL, 0), 0);
        v->inflight += len + 1024;
        v->sent++;
    }
}

static void vcheck(drec *r, const unsigned char *data, size_t len) {
    volume *v = r->user;
    long i = v->got;
    size_t want = vsize(i);
    if (len != want || (len > sizeof(i) && data[len - 1] != (unsigned char)(i & 0xff)) ||
        (len >= sizeof(i) && memcmp(data, &i, sizeof(i)) != 0))
        v->bad++;
    v->got++;
    v->inflight -= want + 1024;
    vpump(v);
}

static bool pred_volume(void *arg) {
    volume *v = arg;
    return v->got == VOLUME || v->bad > 0;
}

static void test_volume_keeps_up(void **state) {
    fix *f = *state;
    volume v = {.f = f};
    v.buf = malloc(65507);
    f->b.on_dgram = vcheck;
    f->b.user = &v;
    tide_datagram_options_t so = {.local_host = "127.0.0.1"};
    make(f, &f->b, &so);
    /* Room for the window even if the kernel charges twice the payload. */
    int rcvbuf = 1 << 20;
    setsockopt(tide_datagram_get_fd(f->b.ep), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    tide_datagram_options_t co = {.remote_host = "127.0.0.1", .remote_port = port_of(f->b.ep)};
    make(f, &f->a, &co);
    vpump(&v);
    ts_run_until(f->loop, pred_volume, &v, 60);
    assert_int_equal(v.bad, 0);
    assert_int_equal(v.got, VOLUME);
    tide_datagram_stats_t st;
    tide_datagram_get_stats(f->b.ep, &st);
    assert_int_equal(st.received, VOLUME);
    tide_datagram_get_stats(f->a.ep, &st);
    assert_int_equal(st.sent, VOLUME);
    free(v.buf);
    close_both(f);
}

/* The kernel's drop count of the UDP socket bound to port (from /proc/net/udp). */
static long kernel_drops(uint16_t port) {
    FILE *fp = fopen("/proc/net/udp", "r");
    if (fp == NULL)
        return -1;
    char line[512];
    long drops = -1;
    while (fgets(line, sizeof(line), fp)) {
        unsigned lport;
        if (sscanf(line, " %*d: %*8s:%x", &lport) == 1 && lport == port) {
            /* drops is the last field; the line may end in spaces. */
            char *last = NULL, *save = NULL;
            for (char *tok = strtok_r(line, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save))
                last = tok;
            drops = last ? strtol(last, NULL, 10) : -1;
        }
    }
    fclose(fp);
    return drops;
}

typedef struct overrun {
    long got, last, out_of_order;
    long total;
    long drops;
    uint16_t port;
} overrun;

static void ocount(drec *r, const unsigned char *data, size_t len) {
    overrun *o = r->user;
    long i;
    assert_true(len >= sizeof(i));
    memcpy(&i, data, sizeof(i));
    if (i <= o->last)
        o->out_of_order++;
    o->last = i;
    o->got++;
}

static bool pred_counted(void *arg) {
    overrun *o = arg;
    o->drops = kernel_drops(o->port);
    return o->drops >= 0 && o->got + o->drops == o->total;
}

/* A receiver that does not keep up: the kernel drops what overflows its buffer, and
 * what is delivered plus what the kernel counted as dropped is what was sent. */
static void test_volume_overrun(void **state) {
    fix *f = *state;
    overrun o = {.last = -1, .total = 4000};
    f->b.on_dgram = ocount;
    f->b.user = &o;
    tide_datagram_options_t so = {.local_host = "127.0.0.1"};
    make(f, &f->b, &so);
    o.port = port_of(f->b.ep);
    if (kernel_drops(o.port) != 0) {
        close_both(f);
        skip(); /* no /proc/net/udp here */
    }
    tide_datagram_options_t co = {.remote_host = "127.0.0.1", .remote_port = o.port};
    make(f, &f->a, &co);
    tide_datagram_pause_reading(f->b.ep);
    unsigned char msg[1000];
    memset(msg, 'o', sizeof(msg));
    for (long i = 0; i < o.total; i++) {
        memcpy(msg, &i, sizeof(i));
        assert_int_equal(tide_datagram_sendto(f->a.ep, msg, sizeof(msg), NULL, 0), 0);
    }
    tide_datagram_resume_reading(f->b.ep);
    ts_run_until(f->loop, pred_counted, &o, 10);
    assert_true(o.drops > 0);
    assert_true(o.got > 0);
    assert_int_equal(o.out_of_order, 0);
    close_both(f);
}

/* ---- injected faults under sendto ------------------------------------------------- */

static struct {
    int err;   /* what the next sendto fails with (0: none) */
    int fails; /* how many more times */
    long sendto_calls, sendmmsg_calls;
} inj;

static ssize_t faulty_sendto(int fd, const void *buf, size_t len, int flags,
                             const struct sockaddr *addr, socklen_t alen) {
    inj.sendto_calls++;
    if (inj.fails > 0) {
        inj.fails--;
        errno = inj.err;
        return -1;
    }
    return sendto(fd, buf, len, flags, addr, alen);
}

static int counting_sendmmsg(int fd, struct mmsghdr *m, unsigned int n, int flags) {
    inj.sendmmsg_calls++;
    if (inj.fails > 0) {
        inj.fails--;
        errno = inj.err;
        return -1;
    }
    return sendmmsg(fd, m, n, flags);
}

static void inject(fix *f, int err, int times) {
    (void)f;
    memset(&inj, 0, sizeof(inj));
    inj.err = err;
    inj.fails = times;
    tide__sys.sendto = faulty_sendto;
    tide__sys.sendmmsg = counting_sendmmsg;
}

static void fault_case(fix *f, int err, int times, bool queued) {
    f->a.received = f->b.received = 0;
    inject(f, err, times);
    assert_int_equal(tide_datagram_sendto(f->a.ep, "fault", 5, NULL, 0), 0);
    assert_int_equal(tide_datagram_get_write_buffer_size(f->a.ep), queued ? 5 : 0);
    ts_run_until(f->loop, pred_b_received, f, 5);
    assert_int_equal(f->b.last_len, 5);
    assert_int_equal(tide_datagram_get_write_buffer_size(f->a.ep), 0);
    if (queued)
        assert_true(inj.sendmmsg_calls >= 1);
    tide__sys_reset();
}

static void test_faults(void **state) {
    fix *f = *state;
    loopback_pair(f);
    fault_case(f, EINTR, 1, false); /* retried at once */
    assert_int_equal(inj.sendto_calls, 2);
    fault_case(f, EAGAIN, 1, true);  /* queued, sent when writable */
    fault_case(f, ENOBUFS, 2, true); /* queued, retried after a pause (twice) */
    assert_true(inj.sendmmsg_calls >= 2);
    /* Any other error of the user's own send is returned, nothing queued. */
    inject(f, ENETUNREACH, 1);
    assert_int_equal(tide_datagram_sendto(f->a.ep, "x", 1, NULL, 0), TIDE_ENETUNREACH);
    assert_int_equal(tide_datagram_get_write_buffer_size(f->a.ep), 0);
    tide__sys_reset();
    /* A queued datagram the kernel refuses later goes to error_received, and the
     * next one still goes out. */
    memset(&inj, 0, sizeof(inj));
    tide__sys.sendto = faulty_sendto;
    tide__sys.sendmmsg = counting_sendmmsg;
    inj.err = EAGAIN;
    inj.fails = 1;
    assert_int_equal(tide_datagram_sendto(f->a.ep, "bad", 3, NULL, 0), 0);
    assert_int_equal(tide_datagram_sendto(f->a.ep, "good", 4, NULL, 0), 0);
    inj.err = EMSGSIZE;
    inj.fails = 1;
    f->b.received = 0;
    ts_run_until(f->loop, pred_error, &f->a, 5);
    assert_int_equal(f->a.last_error, TIDE_EMSGSIZE);
    ts_run_until(f->loop, pred_b_received, f, 5);
    assert_int_equal(f->b.last_len, 4);
    tide_datagram_stats_t st;
    tide_datagram_get_stats(f->a.ep, &st);
    assert_int_equal(st.send_failed, 1);
    tide__sys_reset();
    close_both(f);
}

static bool pred_a10(void *arg) { return ((fix *)arg)->a.received >= 10; }

/* Answers sent from datagram_received leave together: one sendmmsg for the batch. */
static void test_cork(void **state) {
    fix *f = *state;
    loopback_pair(f);
    f->b.echo = true;
    send_ten(f); /* they wait in b's socket: one read event takes them all */
    inject(f, 0, 0);
    ts_run_until(f->loop, pred_a10, f, 5);
    assert_int_equal(inj.sendto_calls, 0);
    assert_int_equal(inj.sendmmsg_calls, 1);
    int last;
    memcpy(&last, f->a.last, sizeof(last));
    assert_int_equal(last, 9); /* in order */
    tide__sys_reset();
    close_both(f);
}

/* A hook: the datagrams' first ints count up from 0. */
static void in_order(drec *r, const unsigned char *data, size_t len) {
    int v;
    assert_true(len >= sizeof(v));
    memcpy(&v, data, sizeof(v));
    assert_int_equal(v, r->received - 1);
}

/* The batch's sendmmsg hears EAGAIN: the borrowed answers are copied into the queue,
 * in order, and go out when the socket is writable. */
static void test_cork_eagain(void **state) {
    fix *f = *state;
    loopback_pair(f);
    f->b.echo = true;
    f->a.on_dgram = in_order;
    send_ten(f);
    inject(f, EAGAIN, 1);
    ts_run_until(f->loop, pred_a10, f, 5);
    assert_int_equal(inj.sendmmsg_calls, 2);
    assert_int_equal(tide_datagram_get_write_buffer_size(f->b.ep), 0);
    tide__sys_reset();
    close_both(f);
}

static void close_at_10(drec *r, const unsigned char *data, size_t len) {
    (void)data;
    (void)len;
    if (r->received == 10)
        tide_datagram_close(r->ep);
}

/* close() from the last datagram of a batch: the answers corked so far still go out. */
static void test_close_in_batch(void **state) {
    fix *f = *state;
    loopback_pair(f);
    f->b.echo = true;
    f->b.on_dgram = close_at_10;
    f->a.on_dgram = in_order;
    send_ten(f);
    ts_run_until(f->loop, pred_lost, &f->b, 5);
    assert_int_equal(f->b.lost_status, 0);
    ts_run_until(f->loop, pred_a10, f, 5);
    tide_datagram_close(f->a.ep);
    ts_run_until(f->loop, pred_lost, &f->a, 5);
}

/* ---- the in-memory pair ---------------------------------------------------------- */

static void test_pair(void **state) {
    fix *f = *state;
    tide_datagram_t *ea, *eb;
    assert_int_equal(tide_datagram_pair_new(f->loop, &f->a.base, &f->b.base, &ea, &eb), 0);
    assert_int_equal(f->a.made, 0); /* deferred, as for sockets */
    ts_run_until(f->loop, pred_created_pair, f, 5);
    assert_ptr_equal(f->a.ep, ea);
    assert_int_equal(tide_datagram_get_fd(ea), TIDE_ENOTSOCK);
    ping(f, "memory");
    /* b heard a's name, and a's peer is b's name. */
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    assert_int_equal(tide_datagram_get_sockname(ea, (struct sockaddr *)&ss, &len), 0);
    assert_int_equal(f->b.fromlen, len);
    assert_memory_equal(&f->b.from, &ss, len);
    char name[64];
    tide_format_address((struct sockaddr *)&ss, len, name, sizeof(name));
    assert_true(strncmp(name, "@tide-memory-", 13) == 0);
    len = sizeof(ss);
    assert_int_equal(tide_datagram_get_peername(eb, (struct sockaddr *)&ss, &len), 0);
    assert_int_equal(f->b.fromlen, len);
    /* A zero-length datagram and a truncated one (b buffered with 8 bytes). */
    unsigned char small[8];
    static const tide_datagram_protocol_ops_t *plain;
    plain = f->b.base.ops;
    f->b.echo = false;
    f->b.buf = small;
    f->b.bufsize = sizeof(small);
    f->b.base.ops = &buffered_ops;
    f->b.received = 0;
    assert_int_equal(tide_datagram_sendto(ea, "0123456789", 10, NULL, 0), 0);
    assert_int_equal(tide_datagram_sendto(ea, "0123", 4, NULL, 0), 0);
    ts_run_until(f->loop, pred_b_received, f, 5);
    assert_int_equal(f->b.errors, 1);
    assert_int_equal(f->b.last_error, TIDE_EDGRAM_TRUNCATED);
    assert_int_equal(f->b.last_len, 4);
    f->b.base.ops = plain;
    /* A datagram to a side that is closing is refused. */
    tide_datagram_close(eb);
    assert_int_equal(tide_datagram_sendto(ea, "x", 1, NULL, 0), TIDE_ECONNREFUSED);
    ts_run_until(f->loop, pred_lost, &f->b, 5);
    assert_int_equal(tide_datagram_sendto(ea, "x", 1, NULL, 0), TIDE_ECONNREFUSED);
    tide_datagram_close(ea);
    ts_run_until(f->loop, pred_lost, &f->a, 5);
}

/* get_buffer pauses reading on the second datagram: that one is kept, not lost, and
 * comes first after resume_reading (over the batch of a UDP socket and the pair). */
static void *pausing_get_buffer(tide_datagram_protocol_t *p, size_t *len) {
    drec *r = rec_of(p);
    if (r->received == 1 && r->pauses == 0) {
        r->pauses = 1; /* used here as "paused once" */
        tide_datagram_pause_reading(r->ep);
    }
    return r_get_buffer(p, len);
}

static const tide_datagram_protocol_ops_t pausing_buffered_ops = {
    .size = TIDE_DATAGRAM_PROTOCOL_OPS_SIZE,
    .connection_made = r_made,
    .error_received = r_error,
    .connection_lost = r_lost,
    .get_buffer = pausing_get_buffer,
    .datagram_updated = r_updated,
};

static bool pred_b1(void *arg) { return ((fix *)arg)->b.received >= 1; }

/* b's hook: checks the order, and after the first datagram (read by a UDP socket into
 * its batch with the rest) becomes the buffered protocol that pauses. */
static void become_buffered(drec *r, const unsigned char *data, size_t len) {
    in_order(r, data, len);
    if (r->received == 1)
        r->base.ops = &pausing_buffered_ops;
}

static void pause_in_get_buffer(fix *f, bool memory) {
    unsigned char buf[64];
    if (memory) {
        assert_int_equal(tide_datagram_pair_new(f->loop, &f->a.base, &f->b.base, NULL, NULL), 0);
        ts_run_until(f->loop, pred_created_pair, f, 5);
    } else {
        loopback_pair(f);
    }
    f->b.on_dgram = become_buffered;
    f->b.buf = buf;
    f->b.bufsize = sizeof(buf);
    send_ten(f);
    ts_run_until(f->loop, pred_b1, f, 5);
    ts_spin(f->loop, 3);
    assert_int_equal(f->b.received, 1);
    tide_datagram_resume_reading(f->b.ep);
    ts_run_until(f->loop, pred_b10, f, 5);
    close_both(f);
}

static void test_pause_in_get_buffer_udp(void **state) { pause_in_get_buffer(*state, false); }
static void test_pause_in_get_buffer_memory(void **state) { pause_in_get_buffer(*state, true); }

/* A receiver that does not read: the sender's datagrams wait whole in its queue, with
 * pause_writing, and all arrive in order once it reads. */
static void test_pair_window(void **state) {
    fix *f = *state;
    tide_datagram_t *ea, *eb;
    assert_int_equal(tide_datagram_pair_new(f->loop, &f->a.base, &f->b.base, &ea, &eb), 0);
    assert_int_equal(tide_datagram_pair_set_window(ea, 1000), 0);
    tide_datagram_pause_reading(eb);
    ts_run_until(f->loop, pred_created_pair, f, 5);
    assert_int_equal(tide_datagram_set_write_buffer_limits(ea, 1000, 0), 0);
    f->b.on_dgram = in_order;
    for (int i = 0; i < 10; i++) {
        int v[75]; /* 300 bytes, the first int counts */
        memset(v, 0, sizeof(v));
        v[0] = i;
        assert_int_equal(tide_datagram_sendto(ea, v, sizeof(v), NULL, 0), 0);
    }
    assert_true(tide_datagram_get_write_buffer_size(ea) >= 1800);
    assert_int_equal(f->a.pauses, 1);
    ts_spin(f->loop, 3);
    assert_int_equal(f->b.received, 0);
    tide_datagram_resume_reading(eb);
    ts_run_until(f->loop, pred_b10, f, 5);
    ts_run_until(f->loop, pred_resumed, &f->a, 5);
    assert_int_equal(tide_datagram_get_write_buffer_size(ea), 0);
    close_both(f);
}

/* ---- one contract over every kind ------------------------------------------------- */

typedef enum { KIND_UDP, KIND_UNIX_PAIR, KIND_MEMORY } kind;

/* a and b connected to each other, made, over the kind. */
static void connect_kind(fix *f, kind k) {
    if (k == KIND_UDP) {
        loopback_pair(f);
        return;
    }
    created c1 = {0}, c2 = {0}; /* the completions run in the wait below */
    if (k == KIND_MEMORY) {
        assert_int_equal(tide_datagram_pair_new(f->loop, &f->a.base, &f->b.base, NULL, NULL), 0);
    } else {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
        assert_int_equal(tide_loop_create_datagram_endpoint_from_fd(f->loop, sv[0], rec_factory,
                                                                    &f->a, created_cb, &c1),
                         0);
        assert_int_equal(tide_loop_create_datagram_endpoint_from_fd(f->loop, sv[1], rec_factory,
                                                                    &f->b, created_cb, &c2),
                         0);
    }
    ts_run_until(f->loop, pred_created_pair, f, 5);
}

static void pause_in_made(tide_datagram_protocol_t *p, tide_datagram_t *ep) {
    r_made(p, ep);
    tide_datagram_pause_reading(ep);
}

static const tide_datagram_protocol_ops_t pausing_ops = {
    .size = TIDE_DATAGRAM_PROTOCOL_OPS_SIZE,
    .connection_made = pause_in_made,
    .datagram_received = r_received,
    .error_received = r_error,
    .connection_lost = r_lost,
};

/* asyncio's order on every kind: made first (reading paused from inside it holds
 * every datagram back), datagrams whole and in order, abort from inside a callback
 * ends the deliveries at once, lost last and once, and nothing is accepted after
 * close. */
static void contract(fix *f, kind k) {
    f->b.base.ops = &pausing_ops;
    connect_kind(f, k);
    f->b.on_dgram = abort_at_2;
    send_ten(f);
    ts_spin(f->loop, 5);
    assert_int_equal(f->b.received, 0); /* paused in connection_made */
    tide_datagram_resume_reading(f->b.ep);
    ts_run_until(f->loop, pred_lost, &f->b, 5);
    assert_int_equal(f->b.received, 2);
    int v;
    memcpy(&v, f->b.last, sizeof(v));
    assert_int_equal(v, 1);
    assert_int_equal(f->b.lost, 1);
    assert_int_equal(f->b.lost_status, 0);
    tide_datagram_close(f->a.ep);
    tide_datagram_close(f->a.ep); /* idempotent */
    assert_true(tide_datagram_is_closing(f->a.ep));
    assert_int_equal(tide_datagram_sendto(f->a.ep, "x", 1, NULL, 0), TIDE_ECLOSED);
    assert_int_equal(f->a.lost, 0); /* never from inside the call */
    ts_run_until(f->loop, pred_lost, &f->a, 5);
    assert_int_equal(f->a.lost_status, 0);
}

static void test_contract_udp(void **state) { contract(*state, KIND_UDP); }
static void test_contract_unix(void **state) { contract(*state, KIND_UNIX_PAIR); }
static void test_contract_memory(void **state) { contract(*state, KIND_MEMORY); }

/* ---- task forms --------------------------------------------------------------------- */

/* Inside tasks, failures are returned as the line number (cmocka cannot jump out of a
 * task's stack); the test asserts the task returned 0. */
#define TCHECK(c)                                                                                  \
    do {                                                                                           \
        if (!(c))                                                                                  \
            return __LINE__;                                                                       \
    } while (0)

static int task_receive(void *arg) {
    fix *f = arg;
    tide_datagram_t *ep, *a;
    tide_datagram_options_t so = {.local_host = "127.0.0.1"};
    TCHECK(tide_loop_create_datagram_endpoint_await(f->loop, NULL, NULL, &so, &ep) == 0);
    tide_datagram_options_t co = {.remote_host = "127.0.0.1", .remote_port = port_of(ep)};
    TCHECK(tide_loop_create_datagram_endpoint_await(f->loop, rec_factory, &f->a, &co, &a) == 0);
    TCHECK(a == f->a.ep && f->a.made == 1);
    TCHECK(tide_datagram_sendto(a, "one", 3, NULL, 0) == 0);
    TCHECK(tide_datagram_sendto(a, "two", 3, NULL, 0) == 0);
    TCHECK(tide_datagram_sendto(a, "three-long", 10, NULL, 0) == 0);
    char buf[8];
    size_t len = 0;
    struct sockaddr_storage from;
    socklen_t flen = sizeof(from);
    TCHECK(tide_datagram_recv_await(ep, buf, sizeof(buf), &len, (struct sockaddr *)&from, &flen) ==
           0);
    TCHECK(len == 3 && memcmp(buf, "one", 3) == 0 &&
           nt_addr_port((struct sockaddr *)&from) == port_of(a));
    TCHECK(tide_datagram_recv_await(ep, buf, sizeof(buf), &len, NULL, NULL) == 0);
    TCHECK(len == 3 && memcmp(buf, "two", 3) == 0);
    TCHECK(tide_datagram_recv_await(ep, buf, sizeof(buf), &len, NULL, NULL) == TIDE_EMSGSIZE);
    TCHECK(len == 10 && memcmp(buf, "three-lo", 8) == 0);
    /* The answer goes back with back-pressure (none here: it is sent at once). */
    TCHECK(tide_datagram_sendto_await(ep, "back", 4, (struct sockaddr *)&from, flen) == 0);
    /* A deadline interrupts a receive, and the next one still works. */
    TCHECK(tide_task_deadline_push(0.05) == 0);
    TCHECK(tide_datagram_recv_await(ep, buf, sizeof(buf), &len, NULL, NULL) == TIDE_ETIMEOUT);
    tide_task_deadline_pop();
    TCHECK(tide_datagram_sendto(a, "four", 4, NULL, 0) == 0);
    TCHECK(tide_datagram_recv_await(ep, buf, sizeof(buf), &len, NULL, NULL) == 0 && len == 4);
    /* Only tide's receive queue can be awaited. */
    TCHECK(tide_datagram_recv_await(a, buf, sizeof(buf), &len, NULL, NULL) == TIDE_EINVAL);
    tide_datagram_close(ep);
    TCHECK(tide_datagram_recv_await(ep, buf, sizeof(buf), &len, NULL, NULL) == TIDE_ECLOSED);
    tide_datagram_close(a);
    return 0;
}

static void test_task_receive(void **state) {
    fix *f = *state;
    char buf[4];
    size_t len;
    assert_int_equal(tide_datagram_recv_await(NULL, buf, 4, &len, NULL, NULL), TIDE_ENOTASK);
    int result = -1;
    assert_int_equal(tide_loop_run_until_complete(f->loop, task_receive, f, NULL, &result), 0);
    assert_int_equal(result, 0);
    ts_run_until(f->loop, pred_lost, &f->a, 5);
    assert_int_equal(f->a.received, 1);
    assert_memory_equal(f->a.last, "back", 4);
    ts_spin(f->loop, 3); /* the task's endpoint goes too */
}

typedef struct pressure {
    fix *f;
    const char *path;
    long consumed; /* datagrams the raw receiver read so far */
    int waits, result, done;
} pressure;

static int task_pressure(void *arg) {
    pressure *p = arg;
    tide_datagram_t *ep;
    tide_datagram_options_t o = {.family = AF_UNIX, .remote_host = p->path};
    TCHECK(tide_loop_create_datagram_endpoint_await(p->f->loop, NULL, NULL, &o, &ep) == 0);
    TCHECK(tide_datagram_set_write_buffer_limits(ep, 2000, 500) == 0);
    unsigned char msg[1000];
    for (int i = 0; i < 100; i++) {
        memset(msg, i, sizeof(msg));
        long before = p->consumed;
        TCHECK(tide_datagram_sendto_await(ep, msg, sizeof(msg), NULL, 0) == 0);
        TCHECK(tide_datagram_get_write_buffer_size(ep) <= 2000);
        if (p->consumed != before)
            p->waits++;
    }
    tide_datagram_close(ep);
    return 0;
}

static void pressure_done(tide_task_t *task, int result, void *arg) {
    (void)task;
    pressure *p = arg;
    p->result = result;
    p->done = 1;
}

static void test_task_sendto_pressure(void **state) {
    fix *f = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s/raw", f->dir);
    int raw = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    strcpy(sun.sun_path, path);
    assert_int_equal(bind(raw, (struct sockaddr *)&sun, sizeof(sun)), 0);
    pressure p = {.f = f, .path = path};
    tide_task_t *task;
    assert_int_equal(tide_task_spawn(f->loop, task_pressure, &p, NULL, &task), 0);
    assert_int_equal(tide_task_join(task, pressure_done, &p), 0);
    for (int i = 0; i < 100; i++) {
        unsigned char got[2000];
        assert_int_equal(raw_recv(f->loop, raw, got, sizeof(got)), 1000);
        assert_int_equal(got[999], i);
        p.consumed++;
    }
    ts_run_until_flag(f->loop, &p.done, 5);
    assert_int_equal(p.result, 0);
    assert_true(p.waits > 0); /* the task did wait for the receiver */
    ts_spin(f->loop, 3);
    close(raw);
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        DG_TEST(test_ipv4),
        DG_TEST(test_ipv6),
        DG_TEST(test_name),
        DG_TEST(test_unix_named),
        DG_TEST(test_unix_abstract),
        DG_TEST(test_options),
        DG_TEST(test_from_fd),
        DG_TEST(test_refusals),
        DG_TEST(test_icmp_refused),
        DG_TEST(test_truncation),
        DG_TEST(test_queue_whole),
        DG_TEST(test_close_flushes),
        DG_TEST(test_pause_mid_batch),
        DG_TEST(test_abort_mid_batch),
        DG_TEST(test_volume_keeps_up),
        DG_TEST(test_volume_overrun),
        DG_TEST(test_faults),
        DG_TEST(test_cork),
        DG_TEST(test_cork_eagain),
        DG_TEST(test_close_in_batch),
        DG_TEST(test_pair),
        DG_TEST(test_pair_window),
        DG_TEST(test_pause_in_get_buffer_udp),
        DG_TEST(test_pause_in_get_buffer_memory),
        DG_TEST(test_contract_udp),
        DG_TEST(test_contract_unix),
        DG_TEST(test_contract_memory),
        DG_TEST(test_task_receive),
        DG_TEST(test_task_sendto_pressure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
