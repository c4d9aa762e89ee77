/* Servers: binding (every interface, IPv6 V6ONLY, port 0 read back, address in use,
 * SO_REUSEPORT), Unix servers (stale socket replaced, other files left, path removed
 * on close only if still ours, abstract names), serving from a descriptor, deferred
 * serving, pause/resume, max_connections, close leaving clients open, close_clients,
 * abort_clients, wait_closed with and without a deadline, and closing the server from
 * its clients' callbacks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "support/net.h"
#include "support/support.h"
#include "transports/transport_int.h"

/* Client 0 and its server side end after the server closed: the client closes, the
 * server side sees it, everything settles. */
static void client_hangs_up(nt_fixture *f) {
    nt_close_client(f, 0);
    ts_run_until(f->loop, ts_pred_lost, &f->srv[0], 5);
    nt_run_for(f->loop, 0.01);
}

/* ---- binding ------------------------------------------------------------------------ */

static void test_every_interface(void **state) {
    nt_fixture *f = *state;
    f->server = nt_server(f->loop, NULL, &f->pool, NULL);
    bool v6 = nt_ipv6_available();
    size_t n = tide_server_socket_count(f->server);
    assert_int_equal(n, v6 ? 2 : 1);
    /* One port for every family, even though it was picked by the kernel. */
    f->port = nt_server_port(f->server, 0);
    for (size_t i = 1; i < n; i++)
        assert_int_equal(nt_server_port(f->server, i), f->port);
    for (size_t i = 0; i < n; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = tide_server_get_fd(f->server, i);
        assert_true(fd >= 0);
        assert_int_equal(tide_server_get_sockname(f->server, i, (struct sockaddr *)&ss, &len), 0);
        int yes = 0;
        socklen_t ylen = sizeof(yes);
        assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, &ylen), 0);
        assert_int_equal(yes, 1); /* on by default */
        if (ss.ss_family == AF_INET6) {
            assert_int_equal(getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &yes, &ylen), 0);
            assert_int_equal(yes, 1);
        }
    }
    assert_int_equal(tide_server_get_fd(f->server, n), TIDE_EINVAL);
    assert_ptr_equal(tide_server_get_loop(f->server), f->loop);
    assert_true(tide_server_is_serving(f->server));

    nt_connect_ok(f->loop, "127.0.0.1", f->port, &f->cli[0], &f->conn[0]);
    if (v6)
        nt_connect_ok(f->loop, "::1", f->port, &f->cli[1], &f->conn[1]);
    ts_run_until(f->loop, ts_pred_made, &f->srv[v6 ? 1 : 0], 5);
    assert_int_equal(tide_server_client_count(f->server), v6 ? 2 : 1);
    assert_true(f->srv[0].transport->state & TIDE__T_SERVER_SIDE);
    tide_server_close(f->server);
    tide_server_close_clients(f->server);
    ts_run_until(f->loop, ts_pred_lost, &f->cli[0], 5);
    if (v6)
        ts_run_until(f->loop, ts_pred_lost, &f->cli[1], 5);
    nt_run_for(f->loop, 0.01);
}

static void test_address_in_use(void **state) {
    nt_fixture *f = *state;
    nt_listen(f, NULL);
    int before = ts_count_fds();
    tide_server_t *s2 = NULL;
    assert_int_equal(tide_loop_create_server(f->loop, "127.0.0.1", f->port, ts_recorder_factory(),
                                             &f->pool, NULL, &s2),
                     TIDE_EADDRINUSE);
    assert_null(s2);
    assert_int_equal(ts_count_fds(), before);
    /* With SO_REUSEPORT on both, two servers share the port. */
    tide_server_options_t o = {.reuse_port = true};
    tide_server_t *a = NULL, *c = NULL;
    assert_int_equal(tide_loop_create_server(f->loop, "127.0.0.1", 0, ts_recorder_factory(),
                                             &f->pool, &o, &a),
                     0);
    assert_int_equal(tide_loop_create_server(f->loop, "127.0.0.1", nt_server_port(a, 0),
                                             ts_recorder_factory(), &f->pool, &o, &c),
                     0);
    assert_int_equal(tide_loop_create_server(f->loop, "no-such-host.invalid", 0,
                                             ts_recorder_factory(), &f->pool, NULL, &s2),
                     TIDE_EAI_NONAME);
    assert_int_equal(tide_loop_create_server(f->loop, "127.0.0.1", 0, NULL, &f->pool, NULL, &s2),
                     TIDE_EINVAL);
    tide_server_close(a);
    tide_server_close(c);
    tide_server_close(f->server);
    nt_run_for(f->loop, 0.01);
}

/* A name whose addresses repeat binds each distinct address once. */
static void test_duplicate_addresses_bound_once(void **state) {
    nt_fixture *f = *state;
    bool v6 = nt_ipv6_available();
    nt_fake_clear();
    nt_fake_set(0, AF_INET, "127.0.0.1", 0);
    nt_fake_set(1, AF_INET, "127.0.0.1", 0);
    if (v6) {
        nt_fake_set(2, AF_INET6, "::1", 0);
        nt_fake_set(3, AF_INET6, "::1", 0);
    }
    f->server = nt_server(f->loop, NT_FAKE_NAME, &f->pool, NULL);
    assert_int_equal(tide_server_socket_count(f->server), v6 ? 2 : 1);
    if (v6)
        assert_int_equal(nt_server_port(f->server, 1), nt_server_port(f->server, 0));
    nt_fake_clear();
    tide_server_close(f->server);
    nt_run_for(f->loop, 0.01);
}

static void test_loop_close_reports_server(void **state) {
    nt_fixture *f = *state;
    nt_listen(f, NULL);
    nt_capture_log(f->loop, "still open");
    assert_int_equal(tide_loop_close(f->loop), TIDE_EBUSY);
    char expect[96];
    snprintf(expect, sizeof(expect), "server on 127.0.0.1:%u (1 socket(s), 0 client(s))",
             (unsigned)f->port);
    assert_non_null(strstr(nt_log_text, expect));
    tide_server_close(f->server);
    tide_server_close(f->server); /* idempotent */
    assert_int_equal(tide_server_socket_count(f->server), 0);
    assert_false(tide_server_is_serving(f->server));
    assert_int_equal(tide_server_start_serving(f->server), TIDE_ECLOSED);
    /* Freed on a later iteration; then the loop closes (teardown). */
    tide_loop_run(f->loop, TIDE_RUN_NOWAIT);
}

/* ---- Unix servers ------------------------------------------------------------------- */

/* A Unix socket bound to path by someone other than tide. */
static int bind_unix(const char *path) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    strcpy(sun.sun_path, path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    return fd;
}

static void test_unix_server(void **state) {
    nt_fixture *f = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s/s.sock", f->dir);
    /* A stale socket file, as a crashed server leaves it. */
    close(bind_unix(path));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);

    f->srv[0].echo = true;
    nt_listen_unix(f, path);
    nt_expect_server_address(f->server, path);

    nt_connect_unix(f->loop, path, &f->cli[0], &f->conn[0], NULL);
    ts_run_until(f->loop, nt_pred_conn, &f->conn[0], 5);
    assert_int_equal(f->conn[0].status, 0);
    assert_int_equal(tide_transport_write(f->conn[0].transport, "hi", 2), 0);
    while (f->cli[0].len < 2)
        tide_loop_run(f->loop, TIDE_RUN_ONCE);
    assert_memory_equal(f->cli[0].data, "hi", 2);

    tide_server_close(f->server);
    assert_int_equal(stat(path, &st), -1); /* removed on close */
    assert_int_equal(errno, ENOENT);
    client_hangs_up(f);
}

static void test_unix_server_leaves_other_files(void **state) {
    nt_fixture *f = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s/plain", f->dir);
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "keep", 4), 4);
    close(fd);
    tide_server_t *s = NULL;
    assert_int_equal(tide_loop_create_unix_server(f->loop, path, ts_recorder_factory(), &f->pool,
                                                  NULL, &s),
                     TIDE_EADDRINUSE);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, 4);
    unlink(path);
}

static void test_unix_server_replaced_path_kept(void **state) {
    nt_fixture *f = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s/r.sock", f->dir);
    nt_listen_unix(f, path);
    /* Someone else takes the path over: close must not remove their socket. */
    assert_int_equal(unlink(path), 0);
    int other = bind_unix(path);
    tide_server_close(f->server);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    close(other);
    unlink(path);
    nt_run_for(f->loop, 0.01);
}

static void test_unix_server_abstract(void **state) {
    nt_fixture *f = *state;
    char name[64];
    snprintf(name, sizeof(name), "@tide-test-server-%d", (int)getpid());
    nt_listen_unix(f, name);
    nt_connect_unix(f->loop, name, &f->cli[0], &f->conn[0], NULL);
    ts_run_until(f->loop, ts_pred_made, &f->srv[0], 5);
    tide_server_close(f->server);
    tide_server_abort_clients(f->server);
    ts_run_until(f->loop, ts_pred_lost, &f->cli[0], 5);
    nt_run_for(f->loop, 0.01);
}

static void test_server_from_fd(void **state) {
    nt_fixture *f = *state;
    int fd;
    nt_refusing_port(&fd); /* bound, not listening */
    assert_int_equal(tide_loop_create_server_from_fd(f->loop, fd, ts_recorder_factory(), &f->pool,
                                                     NULL, &f->server),
                     0);
    assert_int_equal(tide_server_get_fd(f->server, 0), fd);
    f->port = nt_server_port(f->server, 0);
    nt_connect_client(f, 0);
    ts_run_until(f->loop, ts_pred_made, &f->srv[0], 5);
    tide_server_close(f->server); /* closes fd */
    nt_close_client(f, 0);
    ts_run_until(f->loop, ts_pred_lost, &f->srv[0], 5);

    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    tide_server_t *s = NULL;
    assert_int_equal(tide_loop_create_server_from_fd(f->loop, udp, ts_recorder_factory(), &f->pool,
                                                     NULL, &s),
                     TIDE_EINVAL);
    close(udp); /* still ours after the error */
    nt_run_for(f->loop, 0.01);
}

/* ---- accepting ---------------------------------------------------------------------- */

static void test_defer_serving(void **state) {
    nt_fixture *f = *state;
    tide_server_options_t o = {.defer_serving = true, .keep_alive = true};
    nt_listen(f, &o);
    assert_false(tide_server_is_serving(f->server));
    nt_connect_client(f, 0); /* completes in the kernel's backlog */
    nt_run_for(f->loop, 0.1);
    assert_int_equal(f->srv[0].made, 0);
    assert_int_equal(tide_server_start_serving(f->server), 0);
    assert_int_equal(tide_server_start_serving(f->server), 0);
    assert_true(tide_server_is_serving(f->server));
    ts_run_until(f->loop, ts_pred_made, &f->srv[0], 5);
    int yes = 0;
    socklen_t len = sizeof(yes);
    assert_int_equal(getsockopt(tide_transport_get_fd(f->srv[0].transport), SOL_SOCKET,
                                SO_KEEPALIVE, &yes, &len),
                     0);
    assert_int_equal(yes, 1);
    tide_server_close(f->server);
    client_hangs_up(f);
}

static void test_pause_resume_accepting(void **state) {
    nt_fixture *f = *state;
    nt_listen(f, NULL);
    tide_server_pause_accepting(f->server);
    assert_true(tide_server_is_serving(f->server));
    nt_connect_client(f, 0);
    nt_run_for(f->loop, 0.1);
    assert_int_equal(f->srv[0].made, 0);
    tide_server_resume_accepting(f->server);
    ts_run_until(f->loop, ts_pred_made, &f->srv[0], 5);
    assert_int_equal(tide_server_client_count(f->server), 1);
    tide_server_close(f->server);
    client_hangs_up(f);
}

static void test_max_connections(void **state) {
    nt_fixture *f = *state;
    tide_server_options_t o = {.max_connections = 2};
    nt_listen(f, &o);
    for (int i = 0; i < 3; i++)
        nt_connect_client(f, i);
    ts_run_until(f->loop, ts_pred_made, &f->srv[1], 5);
    nt_run_for(f->loop, 0.1);
    assert_int_equal(tide_server_client_count(f->server), 2);
    assert_int_equal(f->srv[2].made, 0); /* waits in the backlog */
    nt_close_client(f, 0);
    ts_run_until(f->loop, ts_pred_made, &f->srv[2], 5);
    assert_int_equal(tide_server_client_count(f->server), 2);
    tide_server_close(f->server);
    tide_server_close_clients(f->server);
    ts_run_until(f->loop, ts_pred_lost, &f->cli[1], 5);
    ts_run_until(f->loop, ts_pred_lost, &f->cli[2], 5);
    nt_run_for(f->loop, 0.01);
}

static void test_factory_refuses_client(void **state) {
    nt_fixture *f = *state;
    f->pool.count = 0; /* the factory returns NULL */
    nt_listen(f, NULL);
    nt_connect_client(f, 0);
    ts_run_until(f->loop, ts_pred_lost, &f->cli[0], 5); /* closed by the server */
    assert_string_equal(f->cli[0].events, "MEL");
    assert_int_equal(tide_server_client_count(f->server), 0);
    tide_server_close(f->server);
    nt_run_for(f->loop, 0.01);
}

/* ---- closing ------------------------------------------------------------------------ */

typedef struct wait_rec {
    int calls;
    int status;
    tide_server_t *server;
    struct wait_rec *chain; /* started from inside this callback */
} wait_rec;

static void on_closed(tide_server_t *s, int status, void *arg) {
    wait_rec *w = arg;
    w->calls++;
    w->status = status;
    w->server = s;
    if (w->chain) {
        /* Idle already: the new waiter is told on a later iteration, not at once; the
         * server stays valid until it is. */
        assert_int_equal(tide_server_wait_closed(s, 1, on_closed, w->chain), 0);
        assert_int_equal(w->chain->calls, 0);
    }
}

static bool pred_wait(void *arg) { return ((wait_rec *)arg)->calls > 0; }

static void test_close_leaves_clients_open(void **state) {
    nt_fixture *f = *state;
    f->srv[0].echo = true;
    nt_listen(f, NULL);
    nt_connect_client(f, 0);
    ts_run_until(f->loop, ts_pred_made, &f->srv[0], 5);

    wait_rec w1 = {0}, w2 = {0}, w3 = {0};
    w1.chain = &w3;
    assert_int_equal(tide_server_wait_closed(f->server, 0, on_closed, &w1), 0);
    tide_server_close(f->server);
    assert_int_equal(tide_server_socket_count(f->server), 0);
    assert_int_equal(tide_server_client_count(f->server), 1);
    /* A deadline passes while the client stays. */
    assert_int_equal(tide_server_wait_closed(f->server, 0.05, on_closed, &w2), 0);
    ts_run_until(f->loop, pred_wait, &w2, 5);
    assert_int_equal(w2.status, TIDE_ETIMEOUT);
    assert_int_equal(w1.calls, 0);

    /* The client still works after close. */
    assert_int_equal(tide_transport_write(f->conn[0].transport, "still", 5), 0);
    while (f->cli[0].len < 5)
        tide_loop_run(f->loop, TIDE_RUN_ONCE);
    /* New connections are refused. */
    nt_conn refused;
    nt_connect(f->loop, "127.0.0.1", f->port, NULL, &f->cli[1], &refused);
    ts_run_until(f->loop, nt_pred_conn, &refused, 5);
    assert_int_equal(refused.status, TIDE_ECONNREFUSED);

    nt_close_client(f, 0);
    ts_run_until(f->loop, pred_wait, &w1, 5);
    assert_int_equal(w1.status, 0);
    assert_ptr_equal(w1.server, f->server);
    assert_int_equal(f->srv[0].lost, 1);
    ts_run_until(f->loop, pred_wait, &w3, 5);
    assert_int_equal(w3.status, 0);
    assert_int_equal(w1.calls + w2.calls, 2);
    nt_run_for(f->loop, 0.01);
}

static void test_wait_closed_without_clients(void **state) {
    nt_fixture *f = *state;
    nt_listen(f, NULL);
    wait_rec w = {0};
    assert_int_equal(tide_server_wait_closed(f->server, 0.05, on_closed, &w), 0);
    ts_run_until(f->loop, pred_wait, &w, 5);
    assert_int_equal(w.status, TIDE_ETIMEOUT); /* open, so not closed yet */
    w.calls = 0;
    assert_int_equal(tide_server_wait_closed(f->server, 0, on_closed, &w), 0);
    tide_server_close(f->server);
    assert_int_equal(w.calls, 0);
    ts_run_until(f->loop, pred_wait, &w, 5);
    assert_int_equal(w.status, 0);
    nt_run_for(f->loop, 0.01);
}

static void clients_down(nt_fixture *f, int n, bool graceful) {
    tide_loop_t *loop = f->loop;
    nt_listen(f, NULL);
    for (int i = 0; i < n; i++)
        nt_connect_client(f, i);
    ts_run_until(loop, ts_pred_made, &f->srv[n - 1], 5);
    wait_rec w = {0};
    assert_int_equal(tide_server_wait_closed(f->server, 0, on_closed, &w), 0);
    tide_server_close(f->server);
    if (graceful)
        tide_server_close_clients(f->server);
    else
        tide_server_abort_clients(f->server);
    ts_run_until(loop, pred_wait, &w, 5);
    assert_int_equal(w.status, 0);
    for (int i = 0; i < n; i++) {
        assert_int_equal(f->srv[i].lost, 1);
        assert_int_equal(f->srv[i].lost_status, 0);
        ts_run_until(loop, ts_pred_lost, &f->cli[i], 5);
    }
}

static void test_close_clients(void **state) {
    nt_fixture *f = *state;
    clients_down(f, 3, true);
    for (int i = 0; i < 3; i++)
        assert_string_equal(f->cli[i].events, "MEL"); /* a clean FIN */
    nt_run_for(f->loop, 0.01);
}

static void test_abort_clients(void **state) {
    nt_fixture *f = *state;
    clients_down(f, 3, false);
    for (int i = 0; i < 3; i++)
        assert_int_equal(f->srv[i].lost, 1);
    nt_run_for(f->loop, 0.01);
}

/* A client's connection_lost closes its already closed server again; the client
 * detaches after connection_lost returns, which makes the server idle and frees it
 * later: nothing here may touch freed memory. */
static void lost_closes_server(ts_recorder *r, int status) {
    (void)status;
    tide_server_t *s = r->user;
    assert_int_equal(tide_server_client_count(s), 1);
    tide_server_close(s);
    tide_server_close_clients(s);
    tide_server_close(s);
}

static void test_close_from_connection_lost(void **state) {
    nt_fixture *f = *state;
    nt_listen(f, NULL);
    f->srv[0].on_lost = lost_closes_server;
    f->srv[0].user = f->server;
    nt_connect_client(f, 0);
    ts_run_until(f->loop, ts_pred_made, &f->srv[0], 5);
    tide_server_close(f->server);
    client_hangs_up(f);
}

/* The factory closes the server while the accept loop runs. */
static tide_server_t *closing_server;
static ts_recorder *closing_rec;

static tide_protocol_t *closing_factory(void *arg) {
    (void)arg;
    tide_server_close(closing_server);
    return &closing_rec->base;
}

static void test_close_from_factory(void **state) {
    nt_fixture *f = *state;
    closing_rec = &f->srv[0];
    tide_server_options_t o = {.defer_serving = true};
    assert_int_equal(tide_loop_create_server(f->loop, "127.0.0.1", 0, closing_factory, NULL, &o,
                                             &closing_server),
                     0);
    f->server = closing_server;
    f->port = nt_server_port(f->server, 0);
    /* Both wait in the backlog before accepting starts. */
    nt_connect_client(f, 0);
    nt_connect_client(f, 1);
    assert_int_equal(tide_server_start_serving(f->server), 0);
    ts_run_until(f->loop, ts_pred_made, &f->srv[0], 5);
    /* The accepted client is served even though the server closed meanwhile; the
     * second never gets accepted and is reset when the listener closes. */
    ts_run_until(f->loop, ts_pred_lost, &f->cli[1], 5);
    assert_int_equal(tide_server_client_count(f->server), 1);
    client_hangs_up(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        NT_TEST(test_every_interface),
        NT_TEST(test_address_in_use),
        NT_TEST(test_duplicate_addresses_bound_once),
        NT_TEST(test_loop_close_reports_server),
        NT_TEST(test_unix_server),
        NT_TEST(test_unix_server_leaves_other_files),
        NT_TEST(test_unix_server_replaced_path_kept),
        NT_TEST(test_unix_server_abstract),
        NT_TEST(test_server_from_fd),
        NT_TEST(test_defer_serving),
        NT_TEST(test_pause_resume_accepting),
        NT_TEST(test_max_connections),
        NT_TEST(test_factory_refuses_client),
        NT_TEST(test_close_leaves_clients_open),
        NT_TEST(test_wait_closed_without_clients),
        NT_TEST(test_close_clients),
        NT_TEST(test_abort_clients),
        NT_TEST(test_close_from_connection_lost),
        NT_TEST(test_close_from_factory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
