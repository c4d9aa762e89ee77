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

typedef struct fixture {
    tide_loop_t *loop;
    int fds;
    char dir[64];
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    f->fds = ts_count_fds();
    f->loop = ts_loop_new();
    snprintf(f->dir, sizeof(f->dir), "/tmp/tide-server-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    tide__sys_reset();
    ts_loop_close(f->loop);
    assert_int_equal(ts_count_fds(), f->fds);
    assert_int_equal(rmdir(f->dir), 0); /* every socket file was removed */
    free(f);
    return 0;
}

/* Recorders for up to 8 clients and 8 server sides. */
typedef struct bench {
    ts_recorder srv[8];
    ts_recorder cli[8];
    nt_conn conn[8];
    ts_recorder_pool pool;
    tide_server_t *server;
    uint16_t port;
} bench;

static void bench_init(bench *b) {
    memset(b, 0, sizeof(*b));
    for (int i = 0; i < 8; i++) {
        ts_recorder_init(&b->srv[i]);
        ts_recorder_init(&b->cli[i]);
    }
    b->pool.items = b->srv;
    b->pool.count = 8;
}

static void bench_free(bench *b) {
    for (int i = 0; i < 8; i++) {
        assert_int_equal(b->srv[i].violations, 0);
        assert_int_equal(b->cli[i].violations, 0);
        ts_recorder_free(&b->srv[i]);
        ts_recorder_free(&b->cli[i]);
    }
}

static void bench_server(tide_loop_t *loop, bench *b, const tide_server_options_t *o) {
    b->server = nt_server(loop, "127.0.0.1", &b->pool, o);
    b->port = nt_server_port(b->server, 0);
}

/* Client i connects (its callback succeeds once the kernel completed the handshake,
 * whether or not the server accepted yet). */
static void bench_connect(tide_loop_t *loop, bench *b, int i) {
    nt_connect_ok(loop, "127.0.0.1", b->port, &b->cli[i], &b->conn[i]);
}

static void close_client(tide_loop_t *loop, bench *b, int i) {
    tide_transport_close(b->conn[i].transport);
    ts_run_until(loop, ts_pred_lost, &b->cli[i], 5);
}

/* ---- binding ------------------------------------------------------------------------ */

static void test_every_interface(void **state) {
    fixture *f = *state;
    bench b;
    bench_init(&b);
    b.server = nt_server(f->loop, NULL, &b.pool, NULL);
    bool v6 = nt_ipv6_available();
    size_t n = tide_server_socket_count(b.server);
    assert_int_equal(n, v6 ? 2 : 1);
    /* One port for every family, even though it was picked by the kernel. */
    b.port = nt_server_port(b.server, 0);
    for (size_t i = 1; i < n; i++)
        assert_int_equal(nt_server_port(b.server, i), b.port);
    for (size_t i = 0; i < n; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = tide_server_get_fd(b.server, i);
        assert_true(fd >= 0);
        assert_int_equal(tide_server_get_sockname(b.server, i, (struct sockaddr *)&ss, &len), 0);
        int yes = 0;
        socklen_t ylen = sizeof(yes);
        assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, &ylen), 0);
        assert_int_equal(yes, 1); /* on by default */
        if (ss.ss_family == AF_INET6) {
            assert_int_equal(getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &yes, &ylen), 0);
            assert_int_equal(yes, 1);
        }
    }
    assert_int_equal(tide_server_get_fd(b.server, n), TIDE_EINVAL);
    assert_ptr_equal(tide_server_get_loop(b.server), f->loop);
    assert_true(tide_server_is_serving(b.server));

    nt_connect_ok(f->loop, "127.0.0.1", b.port, &b.cli[0], &b.conn[0]);
    if (v6)
        nt_connect_ok(f->loop, "::1", b.port, &b.cli[1], &b.conn[1]);
    ts_run_until(f->loop, ts_pred_made, &b.srv[v6 ? 1 : 0], 5);
    assert_int_equal(tide_server_client_count(b.server), v6 ? 2 : 1);
    assert_true(b.srv[0].transport->state & TIDE__T_SERVER_SIDE);
    tide_server_close(b.server);
    tide_server_close_clients(b.server);
    ts_run_until(f->loop, ts_pred_lost, &b.cli[0], 5);
    if (v6)
        ts_run_until(f->loop, ts_pred_lost, &b.cli[1], 5);
    nt_run_for(f->loop, 0.01);
    bench_free(&b);
}

static void test_address_in_use(void **state) {
    fixture *f = *state;
    bench b;
    bench_init(&b);
    bench_server(f->loop, &b, NULL);
    int before = ts_count_fds();
    tide_server_t *s2 = NULL;
    assert_int_equal(tide_loop_create_server(f->loop, "127.0.0.1", b.port, ts_recorder_factory(),
                                             &b.pool, NULL, &s2),
                     TIDE_EADDRINUSE);
    assert_null(s2);
    assert_int_equal(ts_count_fds(), before);
    /* With SO_REUSEPORT on both, two servers share the port. */
    tide_server_options_t o = {.reuse_port = true};
    tide_server_t *a = NULL, *c = NULL;
    assert_int_equal(tide_loop_create_server(f->loop, "127.0.0.1", 0, ts_recorder_factory(),
                                             &b.pool, &o, &a),
                     0);
    assert_int_equal(tide_loop_create_server(f->loop, "127.0.0.1", nt_server_port(a, 0),
                                             ts_recorder_factory(), &b.pool, &o, &c),
                     0);
    assert_int_equal(tide_loop_create_server(f->loop, "no-such-host.invalid", 0,
                                             ts_recorder_factory(), &b.pool, NULL, &s2),
                     TIDE_EAI_NONAME);
    assert_int_equal(tide_loop_create_server(f->loop, "127.0.0.1", 0, NULL, &b.pool, NULL, &s2),
                     TIDE_EINVAL);
    tide_server_close(a);
    tide_server_close(c);
    tide_server_close(b.server);
    nt_run_for(f->loop, 0.01);
    bench_free(&b);
}

/* A name whose addresses repeat binds each distinct address once. */
static void test_duplicate_addresses_bound_once(void **state) {
    fixture *f = *state;
    bool v6 = nt_ipv6_available();
    nt_fake_clear();
    nt_fake_set(0, AF_INET, "127.0.0.1", 0);
    nt_fake_set(1, AF_INET, "127.0.0.1", 0);
    if (v6) {
        nt_fake_set(2, AF_INET6, "::1", 0);
        nt_fake_set(3, AF_INET6, "::1", 0);
    }
    bench b;
    bench_init(&b);
    b.server = nt_server(f->loop, NT_FAKE_NAME, &b.pool, NULL);
    assert_int_equal(tide_server_socket_count(b.server), v6 ? 2 : 1);
    if (v6)
        assert_int_equal(nt_server_port(b.server, 1), nt_server_port(b.server, 0));
    nt_fake_clear();
    tide_server_close(b.server);
    nt_run_for(f->loop, 0.01);
    bench_free(&b);
}

static void test_loop_close_reports_server(void **state) {
    fixture *f = *state;
    bench b;
    bench_init(&b);
    bench_server(f->loop, &b, NULL);
    nt_capture_log(f->loop, "still open");
    assert_int_equal(tide_loop_close(f->loop), TIDE_EBUSY);
    char expect[96];
    snprintf(expect, sizeof(expect), "server on 127.0.0.1:%u (1 socket(s), 0 client(s))",
             (unsigned)b.port);
    assert_non_null(strstr(nt_log_text, expect));
    tide_server_close(b.server);
    tide_server_close(b.server); /* idempotent */
    assert_int_equal(tide_server_socket_count(b.server), 0);
    assert_false(tide_server_is_serving(b.server));
    assert_int_equal(tide_server_start_serving(b.server), TIDE_ECLOSED);
    /* Freed on a later iteration; then the loop closes (teardown). */
    tide_loop_run(f->loop, TIDE_RUN_NOWAIT);
    bench_free(&b);
}

/* ---- Unix servers ------------------------------------------------------------------- */

static void test_unix_server(void **state) {
    fixture *f = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s/s.sock", f->dir);
    /* A stale socket file, as a crashed server leaves it. */
    int stale = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    strcpy(sun.sun_path, path);
    assert_int_equal(bind(stale, (struct sockaddr *)&sun, sizeof(sun)), 0);
    close(stale);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);

    bench b;
    bench_init(&b);
    b.srv[0].echo = true;
    assert_int_equal(tide_loop_create_unix_server(f->loop, path, ts_recorder_factory(), &b.pool,
                                                  NULL, &b.server),
                     0);
    char text[160];
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    assert_int_equal(tide_server_get_sockname(b.server, 0, (struct sockaddr *)&ss, &len), 0);
    assert_string_equal(tide_format_address((struct sockaddr *)&ss, len, text, sizeof(text)), path);

    ts_recorder_pool cpool = {&b.cli[0], 1, 0};
    assert_int_equal(tide_loop_create_unix_connection(f->loop, path, ts_recorder_factory(),
                                                      &cpool, nt_conn_cb, &b.conn[0], NULL),
                     0);
    ts_run_until(f->loop, nt_pred_conn, &b.conn[0], 5);
    assert_int_equal(b.conn[0].status, 0);
    assert_int_equal(tide_transport_write(b.conn[0].transport, "hi", 2), 0);
    while (b.cli[0].len < 2)
        tide_loop_run(f->loop, TIDE_RUN_ONCE);
    assert_memory_equal(b.cli[0].data, "hi", 2);

    tide_server_close(b.server);
    assert_int_equal(stat(path, &st), -1); /* removed on close */
    assert_int_equal(errno, ENOENT);
    close_client(f->loop, &b, 0);
    ts_run_until(f->loop, ts_pred_lost, &b.srv[0], 5);
    nt_run_for(f->loop, 0.01);
    bench_free(&b);
}

static void test_unix_server_leaves_other_files(void **state) {
    fixture *f = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s/plain", f->dir);
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "keep", 4), 4);
    close(fd);
    bench b;
    bench_init(&b);
    tide_server_t *s = NULL;
    assert_int_equal(tide_loop_create_unix_server(f->loop, path, ts_recorder_factory(), &b.pool,
                                                  NULL, &s),
                     TIDE_EADDRINUSE);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, 4);
    unlink(path);
    bench_free(&b);
}

static void test_unix_server_replaced_path_kept(void **state) {
    fixture *f = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s/r.sock", f->dir);
    bench b;
    bench_init(&b);
    assert_int_equal(tide_loop_create_unix_server(f->loop, path, ts_recorder_factory(), &b.pool,
                                                  NULL, &b.server),
                     0);
    /* Someone else takes the path over: close must not remove their socket. */
    assert_int_equal(unlink(path), 0);
    int other = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    strcpy(sun.sun_path, path);
    assert_int_equal(bind(other, (struct sockaddr *)&sun, sizeof(sun)), 0);
    tide_server_close(b.server);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    close(other);
    unlink(path);
    nt_run_for(f->loop, 0.01);
    bench_free(&b);
}

static void test_unix_server_abstract(void **state) {
    fixture *f = *state;
    char name[64];
    snprintf(name, sizeof(name), "@tide-test-server-%d", (int)getpid());
    bench b;
    bench_init(&b);
    assert_int_equal(tide_loop_create_unix_server(f->loop, name, ts_recorder_factory(), &b.pool,
                                                  NULL, &b.server),
                     0);
    ts_recorder_pool cpool = {&b.cli[0], 1, 0};
    assert_int_equal(tide_loop_create_unix_connection(f->loop, name, ts_recorder_factory(),
                                                      &cpool, nt_conn_cb, &b.conn[0], NULL),
                     0);
    ts_run_until(f->loop, ts_pred_made, &b.srv[0], 5);
    tide_server_close(b.server);
    tide_server_abort_clients(b.server);
    ts_run_until(f->loop, ts_pred_lost, &b.cli[0], 5);
    nt_run_for(f->loop, 0.01);
    bench_free(&b);
}

static void test_server_from_fd(void **state) {
    fixture *f = *state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    bench b;
    bench_init(&b);
    assert_int_equal(tide_loop_create_server_from_fd(f->loop, fd, ts_recorder_factory(), &b.pool,
                                                     NULL, &b.server),
                     0);
    assert_int_equal(tide_server_get_fd(b.server, 0), fd);
    b.port = nt_server_port(b.server, 0);
    bench_connect(f->loop, &b, 0);
    ts_run_until(f->loop, ts_pred_made, &b.srv[0], 5);
    tide_server_close(b.server); /* closes fd */
    close_client(f->loop, &b, 0);
    ts_run_until(f->loop, ts_pred_lost, &b.srv[0], 5);

    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    tide_server_t *s = NULL;
    assert_int_equal(tide_loop_create_server_from_fd(f->loop, udp, ts_recorder_factory(), &b.pool,
                                                     NULL, &s),
                     TIDE_EINVAL);
    close(udp); /* still ours after the error */
    nt_run_for(f->loop, 0.01);
    bench_free(&b);
}

/* ---- accepting ---------------------------------------------------------------------- */

static void test_defer_serving(void **state) {
    fixture *f = *state;
    bench b;
    bench_init(&b);
    tide_server_options_t o = {.defer_serving = true, .keep_alive = true};
    bench_server(f->loop, &b, &o);
    assert_false(tide_server_is_serving(b.server));
    bench_connect(f->loop, &b, 0); /* completes in the kernel's backlog */
    nt_run_for(f->loop, 0.1);
    assert_int_equal(b.srv[0].made, 0);
    assert_int_equal(tide_server_start_serving(b.server), 0);
    assert_int_equal(tide_server_start_serving(b.server), 0);
    assert_true(tide_server_is_serving(b.server));
    ts_run_until(f->loop, ts_pred_made, &b.srv[0], 5);
    int yes = 0;
    socklen_t len = sizeof(yes);
    assert_int_equal(getsockopt(tide_transport_get_fd(b.srv[0].transport), SOL_SOCKET,
                                SO_KEEPALIVE, &yes, &len),
                     0);
    assert_int_equal(yes, 1);
    tide_server_close(b.server);
    close_client(f->loop, &b, 0);
    ts_run_until(f->loop, ts_pred_lost, &b.srv[0], 5);
    nt_run_for(f->loop, 0.01);
    bench_free(&b);
}

static void test_pause_resume_accepting(void **state) {
    fixture *f = *state;
    bench b;
    bench_init(&b);
    bench_server(f->loop, &b, NULL);
    tide_server_pause_accepting(b.server);
    assert_true(tide_server_is_serving(b.server));
    bench_connect(f->loop, &b, 0);
    nt_run_for(f->loop, 0.1);
    assert_int_equal(b.srv[0].made, 0);
    tide_server_resume_accepting(b.server);
    ts_run_until(f->loop, ts_pred_made, &b.srv[0], 5);
    assert_int_equal(tide_server_client_count(b.server), 1);
    tide_server_close(b.server);
    close_client(f->loop, &b, 0);
    ts_run_until(f->loop, ts_pred_lost, &b.srv[0], 5);
    nt_run_for(f->loop, 0.01);
    bench_free(&b);
}

static void test_max_connections(void **state) {
    fixture *f = *state;
    bench b;
    bench_init(&b);
    tide_server_options_t o = {.max_connections = 2};
    bench_server(f->loop, &b, &o);
    for (int i = 0; i < 3; i++)
        bench_connect(f->loop, &b, i);
    ts_run_until(f->loop, ts_pred_made, &b.srv[1], 5);
    nt_run_for(f->loop, 0.1);
    assert_int_equal(tide_server_client_count(b.server), 2);
    assert_int_equal(b.srv[2].made, 0); /* waits in the backlog */
    close_client(f->loop, &b, 0);
    ts_run_until(f->loop, ts_pred_made, &b.srv[2], 5);
    assert_int_equal(tide_server_client_count(b.server), 2);
    tide_server_close(b.server);
    tide_server_close_clients(b.server);
    ts_run_until(f->loop, ts_pred_lost, &b.cli[1], 5);
    ts_run_until(f->loop, ts_pred_lost, &b.cli[2], 5);
    nt_run_for(f->loop, 0.01);
    bench_free(&b);
}

static void test_factory_refuses_client(void **state) {
    fixture *f = *state;
    bench b;
    bench_init(&b);
    b.pool.count = 0; /* the factory returns NULL */
    bench_server(f->loop, &b, NULL);
    bench_connect(f->loop, &b, 0);
    ts_run_until(f->loop, ts_pred_lost, &b.cli[0], 5); /* closed by the server */
    assert_string_equal(b.cli[0].events, "MEL");
    assert_int_equal(tide_server_client_count(b.server), 0);
    tide_server_close(b.server);
    nt_run_for(f->loop, 0.01);
    bench_free(&b);
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
    fixture *f = *state;
    bench b;
    bench_init(&b);
    b.srv[0].echo = true;
    bench_server(f->loop, &b, NULL);
    bench_connect(f->loop, &b, 0);
    ts_run_until(f->loop, ts_pred_made, &b.srv[0], 5);

    wait_rec w1 = {0}, w2 = {0}, w3 = {0};
    w1.chain = &w3;
    assert_int_equal(tide_server_wait_closed(b.server, 0, on_closed, &w1), 0);
    tide_server_close(b.server);
    assert_int_equal(tide_server_socket_count(b.server), 0);
    assert_int_equal(tide_server_client_count(b.server), 1);
    /* A deadline passes while the client stays. */
    assert_int_equal(tide_server_wait_closed(b.server, 0.05, on_closed, &w2), 0);
    ts_run_until(f->loop, pred_wait, &w2, 5);
    assert_int_equal(w2.status, TIDE_ETIMEOUT);
    assert_int_equal(w1.calls, 0);

    /* The client still works after close. */
    assert_int_equal(tide_transport_write(b.conn[0].transport, "still", 5), 0);
    while (b.cli[0].len < 5)
        tide_loop_run(f->loop, TIDE_RUN_ONCE);
    /* New connections are refused. */
    nt_conn refused;
    nt_connect(f->loop, "127.0.0.1", b.port, NULL, &b.cli[1], &refused);
    ts_run_until(f->loop, nt_pred_conn, &refused, 5);
    assert_int_equal(refused.status, TIDE_ECONNREFUSED);

    close_client(f->loop, &b, 0);
    ts_run_until(f->loop, pred_wait, &w1, 5);
    assert_int_equal(w1.status, 0);
    assert_ptr_equal(w1.server, b.server);
    assert_int_equal(b.srv[0].lost, 1);
    ts_run_until(f->loop, pred_wait, &w3, 5);
    assert_int_equal(w3.status, 0);
    assert_int_equal(w1.calls + w2.calls, 2);
    nt_run_for(f->loop, 0.01);
    bench_free(&b);
}

static void test_wait_closed_without_clients(void **state) {
    fixture *f = *state;
    bench b;
    bench_init(&b);
    bench_server(f->loop, &b, NULL);
    wait_rec w = {0};
    assert_int_equal(tide_server_wait_closed(b.server, 0.05, on_closed, &w), 0);
    ts_run_until(f->loop, pred_wait, &w, 5);
    assert_int_equal(w.status, TIDE_ETIMEOUT); /* open, so not closed yet */
    w.calls = 0;
    assert_int_equal(tide_server_wait_closed(b.server, 0, on_closed, &w), 0);
    tide_server_close(b.server);
    assert_int_equal(w.calls, 0);
    ts_run_until(f->loop, pred_wait, &w, 5);
    assert_int_equal(w.status, 0);
    nt_run_for(f->loop, 0.01);
    bench_free(&b);
}

static void clients_down(tide_loop_t *loop, bench *b, int n, bool graceful) {
    bench_server(loop, b, NULL);
    for (int i = 0; i < n; i++)
        bench_connect(loop, b, i);
    ts_run_until(loop, ts_pred_made, &b->srv[n - 1], 5);
    wait_rec w = {0};
    assert_int_equal(tide_server_wait_closed(b->server, 0, on_closed, &w), 0);
    tide_server_close(b->server);
    if (graceful)
        tide_server_close_clients(b->server);
    else
        tide_server_abort_clients(b->server);
    ts_run_until(loop, pred_wait, &w, 5);
    assert_int_equal(w.status, 0);
    for (int i = 0; i < n; i++) {
        assert_int_equal(b->srv[i].lost, 1);
        assert_int_equal(b->srv[i].lost_status, 0);
        ts_run_until(loop, ts_pred_lost, &b->cli[i], 5);
    }
}

static void test_close_clients(void **state) {
    fixture *f = *state;
    bench b;
    bench_init(&b);
    clients_down(f->loop, &b, 3, true);
    for (int i = 0; i < 3; i++)
        assert_string_equal(b.cli[i].events, "MEL"); /* a clean FIN */
    nt_run_for(f->loop, 0.01);
    bench_free(&b);
}

static void test_abort_clients(void **state) {
    fixture *f = *state;
    bench b;
    bench_init(&b);
    clients_down(f->loop, &b, 3, false);
    for (int i = 0; i < 3; i++)
        assert_int_equal(b.srv[i].lost, 1);
    nt_run_for(f->loop, 0.01);
    bench_free(&b);
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
    fixture *f = *state;
    bench b;
    bench_init(&b);
    bench_server(f->loop, &b, NULL);
    b.srv[0].on_lost = lost_closes_server;
    b.srv[0].user = b.server;
    bench_connect(f->loop, &b, 0);
    ts_run_until(f->loop, ts_pred_made, &b.srv[0], 5);
    tide_server_close(b.server);
    close_client(f->loop, &b, 0);
    ts_run_until(f->loop, ts_pred_lost, &b.srv[0], 5);
    nt_run_for(f->loop, 0.01);
    bench_free(&b);
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
    fixture *f = *state;
    bench b;
    bench_init(&b);
    closing_rec = &b.srv[0];
    tide_server_options_t o = {.defer_serving = true};
    assert_int_equal(tide_loop_create_server(f->loop, "127.0.0.1", 0, closing_factory, NULL, &o,
                                             &closing_server),
                     0);
    b.server = closing_server;
    b.port = nt_server_port(b.server, 0);
    /* Both wait in the backlog before accepting starts. */
    bench_connect(f->loop, &b, 0);
    bench_connect(f->loop, &b, 1);
    assert_int_equal(tide_server_start_serving(b.server), 0);
    ts_run_until(f->loop, ts_pred_made, &b.srv[0], 5);
    /* The accepted client is served even though the server closed meanwhile; the
     * second never gets accepted and is reset when the listener closes. */
    ts_run_until(f->loop, ts_pred_lost, &b.cli[1], 5);
    assert_int_equal(tide_server_client_count(b.server), 1);
    close_client(f->loop, &b, 0);
    ts_run_until(f->loop, ts_pred_lost, &b.srv[0], 5);
    nt_run_for(f->loop, 0.01);
    bench_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_interface, setup, teardown),
        cmocka_unit_test_setup_teardown(test_address_in_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_addresses_bound_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loop_close_reports_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unix_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unix_server_leaves_other_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unix_server_replaced_path_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unix_server_abstract, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_from_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defer_serving, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_resume_accepting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_factory_refuses_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_leaves_clients_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_closed_without_clients, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_clients, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_clients, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_from_connection_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_from_factory, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
