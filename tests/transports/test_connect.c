/* Outgoing connections: create_connection over IPv4, IPv6 and a resolved name,
 * refusal, resolution failure, cancellation in every phase, the overall timeout,
 * happy eyeballs and interleaving (over the fake name of support/net.h, which
 * resolves to the addresses a test sets), local binding, Unix connections, wrapping
 * existing sockets, and address formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "support/net.h"
#include "support/support.h"
#include "transports/transport_int.h"

/* ---- connect() recorder: which addresses were tried, in order ---------------------- */

static int tried_family[8];
static uint16_t tried_port[8];
static int tried;
static bool refuse_all;

static int recording_connect(int fd, const struct sockaddr *addr, socklen_t len) {
    if (tried < 8) {
        tried_family[tried] = addr->sa_family;
        tried_port[tried] = nt_addr_port(addr);
    }
    tried++;
    if (refuse_all) {
        errno = ECONNREFUSED;
        return -1;
    }
    return connect(fd, addr, len);
}

static void record_connects(bool refuse) {
    tried = 0;
    refuse_all = refuse;
    tide__sys.connect = recording_connect;
}

/* ---- helpers ------------------------------------------------------------------------ */

/* Client 0 connects to host:port with options o; runs until the callback. */
static nt_conn *attempt(nt_fixture *f, const char *host, uint16_t port,
                        const tide_connect_options_t *o) {
    nt_conn *c = &f->conn[0];
    nt_connect(f->loop, host, port, o, &f->cli[0], c);
    ts_run_until(f->loop, nt_pred_conn, c, 20);
    return c;
}

/* The end of a connection to f->server: the client closes, the server side sees it,
 * the server closes. */
static void hang_up(nt_fixture *f, nt_conn *c) {
    tide_transport_close(c->transport);
    ts_run_until(f->loop, ts_pred_lost, &f->srv[0], 5);
    tide_server_close(f->server);
    nt_run_for(f->loop, 0.01);
}

/* A server on host with one recorder, a client connecting to it by `target`; checks
 * a round trip and orderly shutdown on both sides. */
static void round_trip(nt_fixture *f, const char *server_host, const char *target) {
    ts_recorder *srv = &f->srv[0], *cli = &f->cli[0];
    srv->echo = true;
    f->server = nt_server(f->loop, server_host, &f->pool, NULL);
    uint16_t port = nt_server_port(f->server, 0);

    nt_conn *c = &f->conn[0];
    nt_connect_ok(f->loop, target, port, cli, c);
    assert_int_equal(tide_transport_write(c->transport, "ping", 4), 0);
    ts_run_until(f->loop, ts_pred_made, srv, 5);
    while (cli->len < 4)
        tide_loop_run(f->loop, TIDE_RUN_ONCE);
    assert_memory_equal(cli->data, "ping", 4);
    assert_int_equal(tide_transport_get_fd(c->transport) >= 0, 1);

    tide_transport_close(c->transport);
    ts_run_until(f->loop, ts_pred_lost, cli, 5);
    ts_run_until(f->loop, ts_pred_lost, srv, 5);
    assert_int_equal(cli->lost_status, 0);
    assert_int_equal(srv->lost_status, 0);
    assert_string_equal(cli->events, "MDL");
    tide_server_close(f->server);
    tide_loop_run(f->loop, TIDE_RUN_NOWAIT);
}

static void test_connect_ipv4(void **state) {
    round_trip(*state, "127.0.0.1", "127.0.0.1");
}

static void test_connect_ipv6(void **state) {
    if (!nt_ipv6_available())
        skip();
    round_trip(*state, "::1", "::1");
}

/* "localhost" is not a literal: the client resolves it on a worker thread. */
static void test_connect_localhost(void **state) {
    round_trip(*state, "localhost", "localhost");
}

static void test_connect_refused(void **state) {
    nt_fixture *f = *state;
    int hold;
    uint16_t port = nt_refusing_port(&hold);
    nt_conn *c = attempt(f, "127.0.0.1", port, NULL);
    nt_run_for(f->loop, 0.05); /* nothing more may arrive */
    assert_int_equal(c->calls, 1);
    assert_int_equal(c->status, TIDE_ECONNREFUSED);
    assert_null(c->transport);
    assert_null(c->protocol);
    assert_int_equal(c->pool.used, 0); /* the factory was not called */
    assert_int_equal(f->cli[0].made, 0);
    close(hold);
}

static void test_connect_unresolvable(void **state) {
    nt_conn *c = attempt(*state, "no-such-host.invalid", 80, NULL);
    assert_int_equal(c->calls, 1);
    assert_true(c->status <= TIDE_EAI_AGAIN && c->status >= TIDE_EAI_OTHER);
    assert_int_equal(c->pool.used, 0);
}

static void test_connect_bad_arguments(void **state) {
    nt_fixture *f = *state;
    ts_recorder_pool pool = {&f->cli[0], 1, 0};
    nt_conn *c = &f->conn[0];
    tide_connect_t *req = NULL;
    tide_protocol_factory_cb fac = ts_recorder_factory();
    assert_int_equal(tide_loop_create_connection(f->loop, NULL, 1, fac, &pool, NULL,
                                                 nt_conn_cb, c, &req),
                     TIDE_EINVAL);
    assert_int_equal(tide_loop_create_connection(f->loop, "127.0.0.1", 1, NULL, &pool, NULL,
                                                 nt_conn_cb, c, &req),
                     TIDE_EINVAL);
    assert_int_equal(tide_loop_create_connection(f->loop, "127.0.0.1", 1, fac, &pool, NULL,
                                                 NULL, c, &req),
                     TIDE_EINVAL);
    tide_connect_options_t o = {.family = AF_UNIX};
    assert_int_equal(tide_loop_create_connection(f->loop, "127.0.0.1", 1, fac, &pool, &o,
                                                 nt_conn_cb, c, &req),
                     TIDE_EINVAL);
    char longpath[200];
    memset(longpath, 'x', sizeof(longpath) - 1);
    longpath[sizeof(longpath) - 1] = '\0';
    assert_int_equal(tide_loop_create_unix_connection(f->loop, longpath, fac, &pool, NULL,
                                                      nt_conn_cb, c, &req),
                     TIDE_ENAMETOOLONG);
    tide_connect_cancel(NULL);
    nt_run_for(f->loop, 0.01);
    assert_int_equal(c->calls, 0);
}

/* ---- cancellation ------------------------------------------------------------------- */

static void expect_cancelled(tide_loop_t *loop, nt_conn *c) {
    ts_run_until(loop, nt_pred_conn, c, 5);
    nt_run_for(loop, 0.02);
    assert_int_equal(c->calls, 1);
    assert_int_equal(c->status, TIDE_ECANCELLED);
    assert_null(c->transport);
}

static void test_cancel_while_resolving(void **state) {
    nt_fixture *f = *state;
    nt_conn *c = &f->conn[0];
    tide_connect_t *req = nt_connect(f->loop, "localhost", 9, NULL, &f->cli[0], c);
    tide_connect_cancel(req);
    assert_int_equal(c->calls, 0); /* deferred, even for cancel */
    expect_cancelled(f->loop, c);
    assert_int_equal(c->pool.used, 0);
}

static bool fds_above(void *arg) { return ts_count_fds() > *(int *)arg; }

static void test_cancel_while_connecting(void **state) {
    nt_fixture *f = *state;
    int bh[8], n;
    uint16_t port = nt_blackhole(bh, &n);
    int before = ts_count_fds();
    nt_conn *c = &f->conn[0];
    tide_connect_t *req = nt_connect(f->loop, "127.0.0.1", port, NULL, &f->cli[0], c);
    ts_run_until(f->loop, fds_above, &before, 5); /* the attempt's socket exists */
    /* While it is pending the loop refuses to close and names it. */
    nt_capture_log(f->loop, "still open");
    assert_int_equal(tide_loop_close(f->loop), TIDE_EBUSY);
    assert_non_null(strstr(nt_log_text, "connect request to 127.0.0.1:"));
    assert_non_null(strstr(nt_log_text, "(connecting, 1 attempt(s) in flight)"));
    tide_connect_cancel(req);
    expect_cancelled(f->loop, c);
    assert_int_equal(ts_count_fds(), before);
    assert_int_equal(c->pool.used, 0);
    nt_close_all(bh, n);
}

/* The loop's time is cached per iteration, and nt_blackhole blocks outside the loop
 * for a while: refresh it, or a short deadline counts from a stale time. */
static void fresh_time(tide_loop_t *loop) { tide_loop_run(loop, TIDE_RUN_NOWAIT); }

static void test_connect_timeout(void **state) {
    nt_fixture *f = *state;
    int bh[8], n;
    uint16_t port = nt_blackhole(bh, &n);
    int before = ts_count_fds();
    tide_connect_options_t o = {.timeout = 0.1};
    record_connects(false);
    fresh_time(f->loop);
    nt_conn *c = attempt(f, "127.0.0.1", port, &o);
    assert_int_equal(c->status, TIDE_ETIMEOUT);
    assert_int_equal(tried, 1); /* it did try, and gave up */
    assert_int_equal(ts_count_fds(), before);
    nt_close_all(bh, n);
}

static void test_cancel_unix_before_start(void **state) {
    nt_fixture *f = *state;
    nt_conn *c = &f->conn[0];
    tide_connect_t *req = NULL;
    nt_connect_unix(f->loop, "@tide-no-such-socket", &f->cli[0], c, &req);
    tide_connect_cancel(req);
    expect_cancelled(f->loop, c);
    assert_int_equal(c->pool.used, 0);
}

/* Cancels from inside the factory, or from a callback queued by the factory (which
 * runs after the transport exists but before connection_made). */
static tide_connect_t *hook_req;
static ts_recorder *hook_rec;
static tide_loop_t *hook_loop;

static void cancel_soon(tide_loop_t *loop, void *arg) {
    (void)loop;
    (void)arg;
    tide_connect_cancel(hook_req);
}

static tide_protocol_t *cancelling_factory(void *arg) {
    if (arg)
        tide_connect_cancel(hook_req);
    else
        assert_non_null(tide_loop_call_soon(hook_loop, cancel_soon, NULL));
    return &hook_rec->base;
}

static void cancel_from_factory(nt_fixture *f, bool inside) {
    ts_recorder *cli = &f->cli[0];
    nt_listen(f, NULL);
    hook_rec = cli;
    hook_loop = f->loop;
    nt_conn *c = &f->conn[0];
    assert_int_equal(tide_loop_create_connection(f->loop, "127.0.0.1", f->port,
                                                 cancelling_factory, inside ? c : NULL, NULL,
                                                 nt_conn_cb, c, &hook_req),
                     0);
    expect_cancelled(f->loop, c);
    if (inside) {
        assert_int_equal(cli->made, 0); /* never handed to a transport */
    } else {
        /* The transport existed: its protocol sees a complete, ordered life. */
        ts_run_until(f->loop, ts_pred_lost, cli, 5);
        assert_string_equal(cli->events, "ML");
    }
    tide_server_close(f->server);
    tide_server_abort_clients(f->server);
    nt_run_for(f->loop, 0.02);
}

static void test_cancel_inside_factory(void **state) { cancel_from_factory(*state, true); }

static void test_cancel_before_connection_made(void **state) {
    cancel_from_factory(*state, false);
}

/* ---- several addresses -------------------------------------------------------------- */

static void test_happy_eyeballs_refused_then_working(void **state) {
    nt_fixture *f = *state;
    nt_listen(f, NULL);
    int hold;
    uint16_t refused = nt_refusing_port(&hold);
    nt_fake_set(0, AF_INET, "127.0.0.1", refused);
    nt_fake_set(1, AF_INET, "127.0.0.1", f->port);
    record_connects(false);
    /* A long delay: the refusal must start the next attempt at once (RFC 8305). */
    tide_connect_options_t o = {.happy_eyeballs_delay = 30};
    nt_conn *c = attempt(f, NT_FAKE_NAME, 1, &o);
    assert_int_equal(c->status, 0);
    assert_int_equal(tried, 2);
    assert_int_equal(tried_port[0], refused);
    assert_int_equal(tried_port[1], f->port);
    ts_run_until(f->loop, ts_pred_made, &f->srv[0], 5);
    hang_up(f, c);
    close(hold);
}

/* The first address never answers; after the delay the second is tried and wins,
 * and the first attempt is closed. */
static void test_happy_eyeballs_race(void **state) {
    nt_fixture *f = *state;
    int bh[8], n;
    uint16_t hole = nt_blackhole(bh, &n);
    nt_listen(f, NULL);
    nt_fake_set(0, AF_INET, "127.0.0.1", hole);
    nt_fake_set(1, AF_INET, "127.0.0.1", f->port);
    record_connects(false);
    int before = ts_count_fds();
    tide_connect_options_t o = {.happy_eyeballs_delay = 0.05};
    nt_conn *c = attempt(f, NT_FAKE_NAME, 1, &o);
    assert_int_equal(c->status, 0);
    assert_int_equal(tried, 2);
    assert_int_equal(tried_port[1], f->port);
    ts_run_until(f->loop, ts_pred_made, &f->srv[0], 5);
    /* Two new sockets: our transport and the server's client; the loser is gone. */
    assert_int_equal(ts_count_fds(), before + 2);
    hang_up(f, c);
    nt_close_all(bh, n);
}

/* Without happy eyeballs, the blackhole address holds the connect until the overall
 * timeout: attempts are sequential. */
static void test_sequential_does_not_race(void **state) {
    nt_fixture *f = *state;
    int bh[8], n;
    uint16_t hole = nt_blackhole(bh, &n);
    int hold;
    uint16_t refused = nt_refusing_port(&hold);
    nt_fake_set(0, AF_INET, "127.0.0.1", hole);
    nt_fake_set(1, AF_INET, "127.0.0.1", refused);
    record_connects(false);
    tide_connect_options_t o = {.timeout = 0.2};
    fresh_time(f->loop);
    nt_conn *c = attempt(f, NT_FAKE_NAME, 1, &o);
    assert_int_equal(c->status, TIDE_ETIMEOUT);
    assert_int_equal(tried, 1);
    close(hold);
    nt_close_all(bh, n);
}

static void check_order(int interleave, const int *expect_family, const uint16_t *expect_port) {
    tide_loop_t *loop = ts_loop_new();
    nt_fake_set(0, AF_INET6, "::1", 1);
    nt_fake_set(1, AF_INET6, "::1", 2);
    nt_fake_set(2, AF_INET, "127.0.0.1", 3);
    nt_fake_set(3, AF_INET, "127.0.0.1", 4);
    record_connects(true);
    ts_recorder r;
    ts_recorder_init(&r);
    tide_connect_options_t o = {.interleave = interleave};
    nt_conn c;
    nt_connect(loop, NT_FAKE_NAME, 1, &o, &r, &c);
    ts_run_until(loop, nt_pred_conn, &c, 5);
    assert_int_equal(c.status, TIDE_ECONNREFUSED); /* the last error */
    assert_int_equal(tried, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(tried_family[i], expect_family[i]);
        assert_int_equal(tried_port[i], expect_port[i]);
    }
    tide__sys_reset();
    ts_loop_close(loop);
}

static void test_interleave(void **state) {
    (void)state;
    if (!nt_ipv6_available())
        skip();
    const int keep_f[] = {AF_INET6, AF_INET6, AF_INET, AF_INET};
    const uint16_t keep_p[] = {1, 2, 3, 4};
    check_order(0, keep_f, keep_p);
    const int one_f[] = {AF_INET6, AF_INET, AF_INET6, AF_INET};
    const uint16_t one_p[] = {1, 3, 2, 4};
    check_order(1, one_f, one_p);
    const int two_f[] = {AF_INET6, AF_INET6, AF_INET, AF_INET};
    check_order(2, two_f, keep_p);
}

/* ---- local binding ------------------------------------------------------------------ */


static void test_local_bind(void **state) {
    nt_fixture *f = *state;
    nt_listen(f, NULL);
    /* A port free a moment ago may be taken by the time we bind it (another
     * process, a connection in TIME_WAIT): a few tries with fresh ports. */
    uint16_t local_port = 0;
    nt_conn *c = NULL;
    for (int i = 0; i < 5 && (c == NULL || c->status == TIDE_EADDRINUSE); i++) {
        int fd;
        local_port = nt_refusing_port(&fd);
        close(fd);
        tide_connect_options_t o = {.local_host = "127.0.0.2", .local_port = local_port};
        c = attempt(f, "127.0.0.1", f->port, &o);
    }
    assert_int_equal(c->status, 0);
    ts_run_until(f->loop, ts_pred_made, &f->srv[0], 5);
    struct sockaddr_storage peer;
    socklen_t len = sizeof(peer);
    assert_int_equal(
        tide_transport_get_peername(f->srv[0].transport, (struct sockaddr *)&peer, &len), 0);
    char text[64];
    char expect[64];
    snprintf(expect, sizeof(expect), "127.0.0.2:%u", (unsigned)local_port);
    assert_string_equal(tide_format_address((struct sockaddr *)&peer, len, text, sizeof(text)),
                        expect);
    hang_up(f, c);
}

static void test_local_bind_family_mismatch(void **state) {
    nt_fixture *f = *state;
    int hold;
    uint16_t port = nt_refusing_port(&hold);
    tide_connect_options_t o = {.local_host = "::1"};
    assert_int_equal(attempt(f, "127.0.0.1", port, &o)->status, TIDE_EADDRNOTAVAIL);
    close(hold);
}

/* ---- Unix connections and existing sockets ------------------------------------------ */

static void test_unix_connection_abstract(void **state) {
    nt_fixture *f = *state;
    char name[64];
    snprintf(name, sizeof(name), "@tide-test-connect-%d", (int)getpid());
    f->srv[0].echo = true;
    nt_listen_unix(f, name);
    nt_expect_server_address(f->server, name);

    nt_conn *c = &f->conn[0];
    nt_connect_unix(f->loop, name, &f->cli[0], c, NULL);
    ts_run_until(f->loop, nt_pred_conn, c, 5);
    assert_int_equal(c->status, 0);
    assert_int_equal(c->made_before_cb, 1);
    assert_string_equal(tide_transport_kind(c->transport), "unix");
    assert_int_equal(tide_transport_write(c->transport, "abc", 3), 0);
    while (f->cli[0].len < 3)
        tide_loop_run(f->loop, TIDE_RUN_ONCE);
    hang_up(f, c);
}

static void test_unix_connection_refused(void **state) {
    nt_fixture *f = *state;
    nt_conn *c = &f->conn[0];
    nt_connect_unix(f->loop, "/nonexistent/tide.sock", &f->cli[0], c, NULL);
    ts_run_until(f->loop, nt_pred_conn, c, 5);
    assert_int_equal(c->status, TIDE_ENOENT);
    assert_int_equal(c->pool.used, 0);
}

/* A socketpair whose end sv[0] (accepted: sv[1]) client 0 adopts; runs until the
 * callback, which must succeed. */
static nt_conn *adopt_pair(nt_fixture *f, int sv[2], bool accepted) {
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    nt_conn *c = &f->conn[0];
    assert_int_equal(nt_adopt(f->loop, sv[accepted ? 1 : 0], accepted, &f->cli[0], c), 0);
    ts_run_until(f->loop, nt_pred_conn, c, 5);
    assert_int_equal(c->status, 0);
    return c;
}

static void test_connect_socketpair(void **state) {
    nt_fixture *f = *state;
    int sv[2];
    nt_conn *c = adopt_pair(f, sv, false);
    ts_recorder *r = &f->cli[0];
    assert_int_equal(c->made_before_cb, 1);
    assert_int_equal(tide_transport_get_fd(c->transport), sv[0]);
    assert_false(c->transport->state & TIDE__T_SERVER_SIDE);
    assert_int_equal(write(sv[1], "xyz", 3), 3);
    while (r->len < 3)
        tide_loop_run(f->loop, TIDE_RUN_ONCE);
    close(sv[1]);
    ts_run_until(f->loop, ts_pred_lost, r, 5); /* EOF closes it */
    assert_string_equal(r->events, "MDEL");
}

static void test_connect_accepted_socket(void **state) {
    nt_fixture *f = *state;
    int sv[2];
    nt_conn *c = adopt_pair(f, sv, true);
    assert_true(c->transport->state & TIDE__T_SERVER_SIDE);
    tide_transport_abort(c->transport);
    ts_run_until(f->loop, ts_pred_lost, &f->cli[0], 5);
    close(sv[0]);
}

static void test_connect_socket_rejects_datagram(void **state) {
    nt_fixture *f = *state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
    ts_recorder *r = &f->cli[0];
    nt_conn *c = &f->conn[0];
    assert_int_equal(nt_adopt(f->loop, sv[0], false, r, c), TIDE_EINVAL);
    assert_int_equal(nt_adopt(f->loop, sv[0], true, r, c), TIDE_EINVAL);
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    assert_int_equal(nt_adopt(f->loop, pfd[0], false, r, c), TIDE_EINVAL);
    nt_run_for(f->loop, 0.01);
    assert_int_equal(c->calls, 0);
    /* The caller still owns the descriptors after an error. */
    close(sv[0]);
    close(sv[1]);
    close(pfd[0]);
    close(pfd[1]);
}

static tide_protocol_t *null_factory(void *arg) {
    (*(int *)arg)++;
    return NULL;
}

static void test_factory_refuses(void **state) {
    nt_fixture *f = *state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int calls = 0;
    nt_conn *c = &f->conn[0];
    assert_int_equal(tide_loop_connect_socket(f->loop, sv[0], null_factory, &calls, NULL, nt_conn_cb, c),
                     0);
    ts_run_until(f->loop, nt_pred_conn, c, 5);
    assert_int_equal(calls, 1);
    assert_int_equal(c->status, TIDE_ECONNABORTED);
    /* Our end was closed: the peer sees EOF. */
    char b;
    assert_int_equal(read(sv[1], &b, 1), 0);
    close(sv[1]);
}

/* A pending request keeps TIDE_RUN_DEFAULT running until its callback. */
static void close_transport(nt_conn *c) { tide_transport_close(c->transport); }

static void test_run_default_waits_for_connect(void **state) {
    nt_fixture *f = *state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    nt_conn *c = &f->conn[0];
    assert_int_equal(nt_adopt(f->loop, sv[0], false, &f->cli[0], c), 0);
    c->then = close_transport;
    assert_int_equal(tide_loop_run(f->loop, TIDE_RUN_DEFAULT), 0);
    assert_int_equal(c->calls, 1);
    assert_int_equal(f->cli[0].lost, 1);
    close(sv[1]);
}

/* ---- address formatting ------------------------------------------------------------- */

static void test_format_address(void **state) {
    (void)state;
    char buf[128];
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(80)};
    inet_pton(AF_INET, "1.2.3.4", &a4.sin_addr);
    assert_string_equal(tide_format_address((struct sockaddr *)&a4, sizeof(a4), buf, sizeof(buf)),
                        "1.2.3.4:80");
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
    a6.sin6_addr = in6addr_loopback;
    assert_string_equal(tide_format_address((struct sockaddr *)&a6, sizeof(a6), buf, sizeof(buf)),
                        "[::1]:443");
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    strcpy(un.sun_path, "/tmp/x.sock");
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(un.sun_path) + 1);
    assert_string_equal(tide_format_address((struct sockaddr *)&un, len, buf, sizeof(buf)),
                        "/tmp/x.sock");
    memcpy(un.sun_path, "\0abs", 4);
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 4);
    assert_string_equal(tide_format_address((struct sockaddr *)&un, len, buf, sizeof(buf)), "@abs");
    assert_string_equal(tide_format_address((struct sockaddr *)&un, sizeof(sa_family_t), buf,
                                            sizeof(buf)),
                        "<unnamed>");
    /* Truncation keeps the terminator. */
    char small[5];
    assert_string_equal(tide_format_address((struct sockaddr *)&a4, sizeof(a4), small,
                                            sizeof(small)),
                        "1.2.");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        NT_TEST(test_connect_ipv4),
        NT_TEST(test_connect_ipv6),
        NT_TEST(test_connect_localhost),
        NT_TEST(test_connect_refused),
        NT_TEST(test_connect_unresolvable),
        NT_TEST(test_connect_bad_arguments),
        NT_TEST(test_cancel_while_resolving),
        NT_TEST(test_cancel_while_connecting),
        NT_TEST(test_connect_timeout),
        NT_TEST(test_cancel_unix_before_start),
        NT_TEST(test_cancel_inside_factory),
        NT_TEST(test_cancel_before_connection_made),
        NT_TEST(test_happy_eyeballs_refused_then_working),
        NT_TEST(test_happy_eyeballs_race),
        NT_TEST(test_sequential_does_not_race),
        NT_TEST(test_interleave),
        NT_TEST(test_local_bind),
        NT_TEST(test_local_bind_family_mismatch),
        NT_TEST(test_unix_connection_abstract),
        NT_TEST(test_unix_connection_refused),
        NT_TEST(test_connect_socketpair),
        NT_TEST(test_connect_accepted_socket),
        NT_TEST(test_connect_socket_rejects_datagram),
        NT_TEST(test_factory_refuses),
        NT_TEST(test_run_default_waits_for_connect),
        cmocka_unit_test(test_format_address),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
