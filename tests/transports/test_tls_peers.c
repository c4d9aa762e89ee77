/* TLS against real peers that tide did not write: Debian's `openssl s_server` /
 * `s_client` and Python's ssl module (tests/interop/tls_peer.py), with certificates the
 * test makes itself (tests/support/tls.c).
 *
 * - tide's client (protocol, stream callbacks, task) against s_server and a Python
 *   echo server; info and the peer certificate; client certificates;
 * - real clients (s_client, Python) against tide's server (protocol and streams);
 * - each verification failure has its own code; no name with verification refuses
 *   synchronously; verification off connects;
 * - TLS 1.1 refused both ways; renegotiation refused without hanging;
 * - handshake deadline against a silent peer, client and server side;
 * - truncation (TCP closed without close_notify) versus a clean close;
 * - 64 MiB each way between tide's client and server with injected EAGAIN and short
 *   reads and writes under the socket transport;
 * - start_tls on streams on both sides, with the STARTTLS injection cases, and against
 *   asyncio's start_tls both ways;
 * - TLS over a socketpair through connect_socket / connect_accepted_socket.
 *
 * Every wait is bounded (scaled by TIDE_TEST_TIMEOUT_MULTIPLIER); every peer process is
 * killed and reaped by the teardown; the loop closes cleanly and no descriptor leaks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "support/net.h"
#include "support/sock.h"
#include "support/support.h"
#include "support/tls.h"
#include "transports/transport_int.h"

/* ---- fixture and helpers ---------------------------------------------------------------- */

typedef struct fx {
    tide_loop_t *loop;
    int fds_before;
} fx;

static int setup(void **state) {
    fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->fds_before = ts_count_fds();
    f->loop = ts_loop_new();
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    tt_proc_free_all();
    /* Transports and servers free themselves on deferred calls: let those run. */
    ts_spin(f->loop, 4);
    ts_finish(f->loop, f->fds_before);
    free(f);
    return 0;
}

#define TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
#define LOOP(state) (((fx *)*(state))->loop)

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A TLS code: one of tide's TLS block or an mbedTLS code carried in one. */
static bool is_tls_code(int rc) {
    return tide_err_is_tls(rc) || (rc <= TIDE_ETLS && rc >= TIDE_ETLS_CONFIG);
}

/* The test stream: byte i is a function of i (as pattern() in tls_peer.py). */
static void pattern(unsigned char *buf, size_t len, uint64_t offset) {
    for (size_t i = 0; i < len; i++) {
        uint64_t k = offset + i;
        buf[i] = (unsigned char)((k * 131u) ^ (k >> 11));
    }
}

static uint64_t pattern_sum(uint64_t len) {
    static unsigned char chunk[65536];
    uint64_t h = TS_FNV_SEED;
    for (uint64_t off = 0; off < len; off += sizeof(chunk)) {
        size_t n = len - off < sizeof(chunk) ? (size_t)(len - off) : sizeof(chunk);
        pattern(chunk, n, off);
        h = ts_fnv1a(chunk, n, h);
    }
    return h;
}

/* Connects recorder r over TLS to 127.0.0.1:port and runs until the completion. */
static void tls_connect(tide_loop_t *loop, uint16_t port, tide_tls_config_t *cfg, const char *name,
                        ts_recorder *r, nt_conn *c) {
    tide_connect_options_t o = {.tls = cfg, .server_hostname = name};
    nt_connect(loop, "127.0.0.1", port, &o, r, c);
    ts_run_until(loop, nt_pred_conn, c, 15);
    assert_int_equal(c->calls, 1);
}

static void expect_connected(const nt_conn *c, const ts_recorder *r) {
    if (c->status != 0)
        fail_msg("TLS connect failed: %s", tt_err(c->status));
    assert_int_equal(c->made_before_cb, 1);
    assert_ptr_equal(r->transport, c->transport);
    assert_string_equal(tide_transport_kind(c->transport), "tls");
    assert_true(tide_transport_is_tls(c->transport));
}

static void expect_failed(const nt_conn *c, const ts_recorder *r, int code) {
    if (c->status != code)
        fail_msg("expected %s, got %s", tide_err_name(code), tt_err(c->status));
    assert_null(c->transport);
    assert_int_equal(r->made, 0); /* the factory's protocol was never used */
}

static bool srv_empty(void *server) { return tide_server_client_count(server) == 0; }
static bool srv_has_client(void *server) { return tide_server_client_count(server) > 0; }
static bool rec_has_data(void *recorder) { return ((ts_recorder *)recorder)->len > 0; }

static void server_closed(tide_server_t *server, int status, void *arg) {
    (void)server;
    *(int *)arg = status == 0 ? 1 : status;
}

/* Closes the server and waits until it and its clients are gone (the server may be
 * freed then: it is not looked at again). */
static void close_server(tide_loop_t *loop, tide_server_t *s) {
    int closed = 0;
    assert_int_equal(tide_server_wait_closed(s, 0, server_closed, &closed), 0);
    tide_server_close(s);
    ts_run_until_flag(loop, &closed, 10);
    assert_int_equal(closed, 1);
}

/* A client connection from the test's recorder closes, and the run goes until it is
 * gone with status 0. */
static void close_client(tide_loop_t *loop, ts_recorder *r) {
    tide_transport_close(r->transport);
    ts_run_until(loop, ts_pred_lost, r, 15);
    if (r->lost_status != 0)
        fail_msg("connection_lost: %s", tt_err(r->lost_status));
}

/* ---- tide's client against real servers ------------------------------------------------- */

/* s_server -www answers an HTTP request over TLS with a status page; the transport
 * reports what the handshake settled and the server's certificate. */
static void client_vs_s_server_www(void **state) {
    tide_loop_t *loop = LOOP(state);
    uint16_t port;
    tt_proc *srv = tt_s_server(loop, NULL, NULL, (const char *const[]){"-www", NULL}, &port);
    tide_tls_config_t *cfg = tt_client_config(NULL, 10);
    static ts_recorder r;
    static nt_conn conn;
    ts_recorder_init(&r);
    tls_connect(loop, port, cfg, "localhost", &r, &conn);
    tide_tls_config_unref(cfg); /* the connection keeps its own reference */
    expect_connected(&conn, &r);

    tide_tls_info_t info;
    assert_int_equal(tide_tls_get_info(conn.transport, &info), 0);
    assert_non_null(info.version);
    assert_true(strcmp(info.version, "TLSv1.3") == 0 || strcmp(info.version, "TLSv1.2") == 0);
    assert_non_null(info.cipher);
    assert_true(strlen(info.cipher) > 4);
    assert_false(info.server_side);
    assert_true(info.peer_verified);
    assert_false(info.resumed);
    assert_null(info.alpn);
    assert_non_null(info.server_name);
    assert_string_equal(info.server_name, "localhost");

    tide_tls_cert_t cert;
    assert_int_equal(tide_tls_get_peer_certificate(conn.transport, &cert), 0);
    assert_non_null(strstr(cert.subject, "CN=localhost"));
    assert_non_null(strstr(cert.issuer, "CN=tide test CA"));
    int64_t now = (int64_t)time(NULL);
    assert_true(cert.not_before < now && now < cert.not_after);
    assert_true(cert.not_after - cert.not_before > 20 * 86400);
    assert_non_null(cert.der);
    assert_true(cert.der_len > 100);
    assert_int_equal(cert.der[0], 0x30); /* a DER SEQUENCE */
    assert_int_equal(tide_tls_get_info(NULL, &info), TIDE_EINVAL);

    const char req[] = "GET / HTTP/1.0\r\n\r\n";
    assert_int_equal(tide_transport_write(r.transport, req, sizeof(req) - 1), 0);
    ts_run_until(loop, ts_pred_lost, &r, 15);
    assert_int_equal(r.violations, 0);
    assert_true(r.len > 0);
    r.data[r.len - 1] = '\0';
    assert_non_null(strstr((char *)r.data, "HTTP/1.0 200 ok"));
    assert_non_null(strstr((char *)r.data, "Ciphers supported"));
    /* s_server -www ends with close_notify: a clean end. */
    if (r.lost_status != 0)
        fail_msg("lost: %s; events %s", tt_err(r.lost_status), r.events);
    assert_int_equal(tt_proc_wait_exit(srv, 10), 0);
    ts_recorder_free(&r);
}

/* TLS 1.2 only on the server: tide settles on 1.2; the default name is the host
 * connected to ("localhost", resolved by tide). */
static void client_tls12_default_name(void **state) {
    tide_loop_t *loop = LOOP(state);
    uint16_t port;
    tt_s_server(loop, NULL, NULL, (const char *const[]){"-www", "-tls1_2", NULL}, &port);
    tide_tls_config_t *cfg = tt_client_config(NULL, 10);
    tide_connect_options_t o = {.tls = cfg, .family = AF_INET};
    static ts_recorder r;
    static nt_conn conn;
    ts_recorder_init(&r);
    nt_connect(loop, "localhost", port, &o, &r, &conn);
    tide_tls_config_unref(cfg);
    ts_run_until(loop, nt_pred_conn, &conn, 15);
    expect_connected(&conn, &r);
    tide_tls_info_t info;
    assert_int_equal(tide_tls_get_info(conn.transport, &info), 0);
    assert_string_equal(info.version, "TLSv1.2");
    assert_string_equal(info.server_name, "localhost");
    close_client(loop, &r);
    ts_recorder_free(&r);
}

/* A Python ssl echo server: 256 KiB there and back, checksummed on both ends; tide's
 * close sends close_notify, which Python sees as a clean end. */
static void client_vs_python_echo(void **state) {
    tide_loop_t *loop = LOOP(state);
    const tt_certs *c = tt_certs_get();
    tt_proc *py = tt_py_peer(loop, (const char *const[]){"echo-server", "--cert", c->server,
                                                         "--key", c->server_key, NULL});
    uint16_t port = (uint16_t)tt_proc_expect_number(py, "PORT", 15);
    tide_tls_config_t *cfg = tt_client_config(NULL, 10);
    static ts_recorder r;
    static nt_conn conn;
    ts_recorder_init(&r);
    tls_connect(loop, port, cfg, "localhost", &r, &conn);
    tide_tls_config_unref(cfg);
    expect_connected(&conn, &r);

    enum { SIZE = 256 * 1024 };
    static unsigned char buf[SIZE];
    pattern(buf, SIZE, 0);
    assert_int_equal(tide_transport_write(r.transport, buf, SIZE), 0);
    sk_run_until_len(loop, &r, SIZE);
    assert_int_equal(r.len, SIZE);
    assert_memory_equal(r.data, buf, SIZE);
    close_client(loop, &r);
    char expect[64];
    snprintf(expect, sizeof(expect), "RECEIVED %d %016llx", SIZE,
             (unsigned long long)ts_fnv1a(buf, SIZE, TS_FNV_SEED));
    tt_proc_expect(py, expect, 15);
    assert_int_equal(tt_proc_wait_exit(py, 15), 0);
    assert_string_equal(r.events, "MDL");
    ts_recorder_free(&r);
}

/* How a refused handshake may end on the client: the server's alert, or the reset its
 * close causes (the alert may be lost with the data the client had not read). */
static bool refused(int rc) { return is_tls_code(rc) || rc == TIDE_ECONNRESET || rc == TIDE_EPIPE; }

/* Client certificates: a Python server requiring one sees tide's; without one the
 * handshake fails with a TLS code. */
static void client_certificate(void **state) {
    tide_loop_t *loop = LOOP(state);
    const tt_certs *c = tt_certs_get();
    for (int with_cert = 1; with_cert >= 0; with_cert--) {
        tt_proc *py =
            tt_py_peer(loop, (const char *const[]){"echo-server", "--cert", c->server, "--key",
                                                   c->server_key, "--cafile", c->ca, NULL});
        uint16_t port = (uint16_t)tt_proc_expect_number(py, "PORT", 15);
        tide_tls_config_t *cfg = tt_client_config(NULL, 10);
        if (with_cert)
            assert_int_equal(tide_tls_config_set_cert_file(cfg, c->client, c->client_key, NULL), 0);
        static ts_recorder r;
        static nt_conn conn;
        ts_recorder_init(&r);
        tls_connect(loop, port, cfg, "localhost", &r, &conn);
        tide_tls_config_unref(cfg);
        if (with_cert) {
            if (conn.status != 0)
                fail_msg("connect: %s; peer:\n%s", tt_err(conn.status), tt_proc_output(py, NULL));
            expect_connected(&conn, &r);
            tt_proc_expect(py, "PEER client.test", 15);
            assert_int_equal(tide_transport_write(r.transport, "x", 1), 0);
            sk_run_until_len(loop, &r, 1);
            close_client(loop, &r);
            assert_int_equal(tt_proc_wait_exit(py, 15), 0);
        } else {
            /* TLS 1.3 sends the client's (empty) certificate after the client has
             * finished: the failure may come as the server's alert after connect. */
            if (conn.status == 0) {
                ts_run_until(loop, ts_pred_lost, &r, 15);
                if (!refused(r.lost_status))
                    fail_msg("lost: %s", tt_err(r.lost_status));
            } else if (!refused(conn.status)) {
                fail_msg("connect: %s", tt_err(conn.status));
            }
            assert_int_not_equal(tt_proc_wait_exit(py, 15), 0);
        }
        ts_recorder_free(&r);
        tt_proc_free(py);
    }
}

/* Against s_server: ALPN picks the server's protocol, and a session taken from the
 * first connection resumes on the second (FTP data connections need this). */
static void alpn_and_resumption_vs_s_server(void **state) {
    tide_loop_t *loop = LOOP(state);
    uint16_t port;
    tt_proc *srv =
        tt_s_server(loop, NULL, NULL,
                    (const char *const[]){"-naccept", "2", "-alpn", "tide/1,h2", NULL}, &port);
    tide_tls_config_t *cfg = tt_client_config(NULL, 10);
    const char *const protos[] = {"h2", "tide/1"};
    assert_int_equal(tide_tls_config_set_alpn(cfg, protos, 2), 0);
    tide_tls_session_t *session = NULL;
    for (int round = 0; round < 2; round++) {
        static ts_recorder r;
        static nt_conn conn;
        ts_recorder_init(&r);
        tide_connect_options_t o = {
            .tls = cfg, .server_hostname = "localhost", .tls_session = session};
        nt_connect(loop, "127.0.0.1", port, &o, &r, &conn);
        ts_run_until(loop, nt_pred_conn, &conn, 15);
        expect_connected(&conn, &r);
        tide_tls_info_t info;
        assert_int_equal(tide_tls_get_info(conn.transport, &info), 0);
        assert_non_null(info.alpn);
        assert_string_equal(info.alpn, "tide/1"); /* the server's preference */
        assert_int_equal(info.resumed, round == 1);
        /* s_server prints what it receives and sends what it reads: the connection
         * carries data both ways. */
        char line[32];
        int n = snprintf(line, sizeof(line), "round %d\n", round);
        assert_int_equal(tide_transport_write(r.transport, line, (size_t)n), 0);
        line[n - 1] = '\0';
        tt_proc_expect(srv, line, 15);
        tt_proc_write(srv, "ack\n", 4);
        ts_run_until(loop, rec_has_data, &r, 15);
        /* Taken only now: with TLS 1.3 the session is a ticket that the server sends
         * after the handshake, read by the time its data arrives. */
        if (round == 0)
            assert_int_equal(tide_tls_get_session(conn.transport, &session), 0);
        close_client(loop, &r);
        ts_recorder_free(&r);
    }
    tide_tls_session_free(session);
    tide_tls_config_unref(cfg);
}

/* ---- stream clients ------------------------------------------------------------------- */

typedef struct stream_cli {
    tide_loop_t *loop;
    int opened, open_status;
    tide_reader_t *r;
    tide_writer_t *w;
    int line_calls, line_status;
    char line[64];
    int closed, closed_status;
} stream_cli;

static void cli_closed(tide_writer_t *w, int status, void *arg) {
    (void)w;
    stream_cli *s = arg;
    s->closed++;
    s->closed_status = status;
}

static void cli_line(tide_reader_t *r, int status, const void *data, size_t len, void *arg) {
    (void)r;
    stream_cli *s = arg;
    s->line_calls++;
    s->line_status = status;
    snprintf(s->line, sizeof(s->line), "%.*s", (int)len, data ? (const char *)data : "");
    tide_writer_close(s->w);
    assert_int_equal(tide_writer_wait_closed(s->w, cli_closed, s), 0);
}

static void cli_opened(tide_loop_t *loop, int status, tide_reader_t *r, tide_writer_t *w,
                       void *arg) {
    (void)loop;
    stream_cli *s = arg;
    s->opened++;
    s->open_status = status;
    s->r = r;
    s->w = w;
    if (status != 0)
        return;
    assert_int_equal(tide_writer_write(w, "ping over tls\n", 14), 0);
    assert_int_equal(tide_reader_readline(r, cli_line, s), 0);
}

static bool cli_done(void *arg) { return ((stream_cli *)arg)->closed > 0; }

/* open_connection with TLS options, in callback style, against the Python echo. */
static void streams_client_callbacks(void **state) {
    tide_loop_t *loop = LOOP(state);
    const tt_certs *c = tt_certs_get();
    tt_proc *py = tt_py_peer(loop, (const char *const[]){"echo-server", "--cert", c->server,
                                                         "--key", c->server_key, NULL});
    uint16_t port = (uint16_t)tt_proc_expect_number(py, "PORT", 15);
    tide_tls_config_t *cfg = tt_client_config(NULL, 10);
    tide_connect_options_t o = {.tls = cfg, .server_hostname = "server.test"};
    static stream_cli s;
    s = (stream_cli){.loop = loop};
    assert_int_equal(
        tide_loop_open_connection(loop, "127.0.0.1", port, 1024, &o, cli_opened, &s, NULL), 0);
    tide_tls_config_unref(cfg);
    ts_run_until(loop, cli_done, &s, 15);
    if (s.open_status != 0)
        fail_msg("open: %s", tt_err(s.open_status));
    assert_int_equal(s.line_status, 0);
    assert_string_equal(s.line, "ping over tls\n");
    assert_int_equal(s.closed_status, 0);
    tt_proc_expect(py, "RECEIVED 14 ", 15);
    assert_int_equal(tt_proc_wait_exit(py, 15), 0);
}

typedef struct task_cli {
    tide_loop_t *loop;
    uint16_t port;
    tide_tls_config_t *cfg;
    const char *name;
    int open_status;
} task_cli;

static int streams_client_task_fn(void *arg) {
    task_cli *t = arg;
    tide_connect_options_t o = {.tls = t->cfg, .server_hostname = t->name};
    tide_reader_t *r = NULL;
    tide_writer_t *w = NULL;
    t->open_status =
        tide_loop_open_connection_await(t->loop, "127.0.0.1", t->port, 4096, &o, &r, &w);
    if (t->open_status != 0)
        return 0;
    static unsigned char out[100000], in[100000];
    pattern(out, sizeof(out), 7);
    /* Write everything (queued), read the echo, then drain: the echo is read while the
     * queue empties, so neither side waits for the other. */
    TS_CHECK(tide_writer_write(w, out, sizeof(out)) == 0);
    size_t n = 0;
    TS_CHECK(tide_reader_readexactly_await(r, in, sizeof(in), &n) == 0);
    TS_CHECK(n == sizeof(in) && memcmp(in, out, n) == 0);
    TS_CHECK(tide_writer_drain_await(w) == 0);
    TS_CHECK(tide_transport_is_tls(tide_writer_get_transport(w)));
    tide_writer_close(w);
    TS_CHECK(tide_writer_wait_closed_await(w) == 0);
    return 0;
}

/* open_connection_await with TLS inside a task; then a verification failure in the
 * same style reports the code through the await. */
static void streams_client_task(void **state) {
    tide_loop_t *loop = LOOP(state);
    const tt_certs *c = tt_certs_get();
    tt_proc *py = tt_py_peer(loop, (const char *const[]){"echo-server", "--cert", c->server,
                                                         "--key", c->server_key, NULL});
    static task_cli t;
    t = (task_cli){loop, (uint16_t)tt_proc_expect_number(py, "PORT", 15),
                   tt_client_config(NULL, 10), "localhost", 1};
    static ts_joined j;
    ts_spawn_joined(loop, streams_client_task_fn, &t, &j);
    ts_run_until_flag(loop, &j.calls, 20);
    assert_int_equal(j.result, 0);
    if (t.open_status != 0)
        fail_msg("open: %s", tt_err(t.open_status));
    tt_proc_expect(py, "RECEIVED 100000 ", 15);
    assert_int_equal(tt_proc_wait_exit(py, 15), 0);

    /* The same task against a server whose certificate names another host. */
    tt_s_server(loop, c->other, c->other_key, NULL, &t.port);
    ts_spawn_joined(loop, streams_client_task_fn, &t, &j);
    ts_run_until_flag(loop, &j.calls, 20);
    assert_int_equal(j.result, 0);
    if (t.open_status != TIDE_ETLS_CERT_HOSTNAME)
        fail_msg("open: %s", tt_err(t.open_status));
    tide_tls_config_unref(t.cfg);
}

/* ---- real clients against tide's server ------------------------------------------------- */

typedef struct echo_srv {
    tide_server_t *server;
    uint16_t port;
    ts_recorder rec[4];
    ts_recorder_pool pool;
} echo_srv;

/* A TLS echo server on 127.0.0.1 port 0, recorders handed out in order. */
static void echo_srv_start(tide_loop_t *loop, echo_srv *e, tide_tls_config_t *cfg) {
    memset(e, 0, sizeof(*e));
    for (int i = 0; i < 4; i++) {
        ts_recorder_init(&e->rec[i]);
        e->rec[i].echo = true;
    }
    e->pool = (ts_recorder_pool){e->rec, 4, 0};
    tide_server_options_t o = {.tls = cfg};
    e->server = nt_server(loop, "127.0.0.1", &e->pool, &o);
    e->port = nt_server_port(e->server, 0);
}

/* The same with the valid server certificate and this handshake deadline. */
static void echo_srv_start_default(tide_loop_t *loop, echo_srv *e, double handshake_timeout) {
    tide_tls_config_t *cfg = tt_server_config(NULL, NULL, handshake_timeout);
    echo_srv_start(loop, e, cfg);
    tide_tls_config_unref(cfg); /* the server holds its own reference */
}

static void echo_srv_stop(tide_loop_t *loop, echo_srv *e) {
    close_server(loop, e->server);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(e->rec[i].violations, 0);
        ts_recorder_free(&e->rec[i]);
    }
}

/* openssl s_client sends lines, gets them echoed, and ends with close_notify when its
 * input ends: the server side sees a clean EOF. */
static void s_client_vs_tide_server(void **state) {
    tide_loop_t *loop = LOOP(state);
    static echo_srv e;
    echo_srv_start_default(loop, &e, 10);
    tt_proc *cl = tt_s_client(loop, e.port, (const char *const[]){"-quiet", "-no_ign_eof", NULL});
    const char line1[] = "hello from s_client 1\n", line2[] = "second line 2\n";
    tt_proc_write(cl, line1, strlen(line1));
    tt_proc_expect(cl, "hello from s_client 1", 15);
    tt_proc_write(cl, line2, strlen(line2));
    tt_proc_expect(cl, "second line 2", 15);

    ts_recorder *srv = &e.rec[0];
    assert_int_equal(srv->made, 1);
    tide_tls_info_t info;
    assert_int_equal(tide_tls_get_info(srv->transport, &info), 0);
    assert_true(info.server_side);
    assert_false(info.peer_verified); /* no client certificate was asked for */
    assert_non_null(info.server_name);
    assert_string_equal(info.server_name, "localhost"); /* the client's SNI */
    tide_tls_cert_t cert;
    assert_int_equal(tide_tls_get_peer_certificate(srv->transport, &cert), TIDE_ENOENT);
    assert_int_equal(tide_server_client_count(e.server), 1);

    tt_proc_close_stdin(cl);
    assert_int_equal(tt_proc_wait_exit(cl, 15), 0);
    ts_run_until(loop, ts_pred_lost, srv, 15);
    assert_int_equal(srv->lost_status, 0);
    assert_string_equal(srv->events, "MDEL");
    assert_int_equal(srv->len, strlen(line1) + strlen(line2));
    echo_srv_stop(loop, &e);
}

/* A tide server asking for client certificates (verify_peer + the test CA): s_client
 * with the client certificate gets in and the server sees who it is; without one the
 * handshake fails and no protocol is made. */
static void server_requires_client_cert(void **state) {
    tide_loop_t *loop = LOOP(state);
    const tt_certs *c = tt_certs_get();
    tide_tls_config_t *cfg = tt_server_config(NULL, NULL, 5);
    assert_int_equal(tide_tls_config_set_verify_peer(cfg, true), 0);
    assert_int_equal(tide_tls_config_load_ca_file(cfg, c->ca), 0);
    static echo_srv e;
    echo_srv_start(loop, &e, cfg);
    tide_tls_config_unref(cfg);

    tt_proc *cl = tt_s_client(loop, e.port,
                              (const char *const[]){"-quiet", "-no_ign_eof", "-cert", c->client,
                                                    "-key", c->client_key, NULL});
    tt_proc_write(cl, "with a certificate\n", 19);
    tt_proc_expect(cl, "with a certificate", 15);
    ts_recorder *srv = &e.rec[0];
    tide_tls_info_t info;
    assert_int_equal(tide_tls_get_info(srv->transport, &info), 0);
    assert_true(info.peer_verified);
    tide_tls_cert_t cert;
    assert_int_equal(tide_tls_get_peer_certificate(srv->transport, &cert), 0);
    assert_non_null(strstr(cert.subject, "CN=client.test"));
    assert_non_null(strstr(cert.issuer, "CN=tide test CA"));
    tt_proc_close_stdin(cl);
    assert_int_equal(tt_proc_wait_exit(cl, 15), 0);
    ts_run_until(loop, ts_pred_lost, srv, 15);
    assert_int_equal(srv->lost_status, 0);

    cl = tt_s_client(loop, e.port, (const char *const[]){"-quiet", "-no_ign_eof", NULL});
    tt_proc_write(cl, "without\n", 8);
    int code = tt_proc_wait_exit(cl, 15);
    if (code == 0 || code == -1)
        fail_msg("s_client without a certificate: exit %d; output:\n%s", code,
                 tt_proc_output(cl, NULL));
    ts_run_until(loop, srv_empty, e.server, 15);
    assert_int_equal(e.pool.used, 1); /* only the first client got a protocol */
    echo_srv_stop(loop, &e);
}

/* Python's ssl client: 1 MiB echoed, both checksums agree. */
static void python_client_vs_tide_server(void **state) {
    tide_loop_t *loop = LOOP(state);
    const tt_certs *c = tt_certs_get();
    static echo_srv e;
    echo_srv_start_default(loop, &e, 10);
    char port[16];
    snprintf(port, sizeof(port), "%u", (unsigned)e.port);
    enum { SIZE = 1 << 20 };
    tt_proc *py = tt_py_peer(loop, (const char *const[]){"client", "--port", port, "--cafile",
                                                         c->ca, "--size", "1048576", NULL});
    char expect[64];
    snprintf(expect, sizeof(expect), "ECHO OK %d %016llx", SIZE,
             (unsigned long long)pattern_sum(SIZE));
    tt_proc_expect(py, expect, 30);
    assert_int_equal(tt_proc_wait_exit(py, 15), 0);
    ts_run_until(loop, ts_pred_lost, &e.rec[0], 15);
    assert_int_equal(e.rec[0].lost_status, 0);
    assert_int_equal(e.rec[0].len, SIZE);
    assert_true(ts_fnv1a(e.rec[0].data, SIZE, TS_FNV_SEED) == pattern_sum(SIZE));
    echo_srv_stop(loop, &e);
}

/* start_server with TLS: each client's stream is served by a task that echoes until
 * the end of the stream. */
typedef struct stream_srv {
    tide_loop_t *loop;
    int connected;
    tide_reader_t *r;
    tide_writer_t *w;
    ts_joined joined;
    uint64_t received;
    int end_status;
} stream_srv;

static int stream_echo_task(void *arg) {
    stream_srv *s = arg;
    static unsigned char buf[16384];
    for (;;) {
        size_t n = 0;
        int rc = tide_reader_read_await(s->r, buf, sizeof(buf), &n);
        if (rc != 0) {
            s->end_status = rc;
            break;
        }
        s->received += n;
        TS_CHECK(tide_writer_write(s->w, buf, n) == 0);
        TS_CHECK(tide_writer_drain_await(s->w) == 0);
    }
    tide_writer_close(s->w);
    TS_CHECK(tide_writer_wait_closed_await(s->w) == 0);
    return 0;
}

static void stream_srv_connected(tide_reader_t *r, tide_writer_t *w, void *arg) {
    stream_srv *s = arg;
    s->connected++;
    s->r = r;
    s->w = w;
    ts_spawn_joined(s->loop, stream_echo_task, s, &s->joined);
}

static void streams_server_vs_python(void **state) {
    tide_loop_t *loop = LOOP(state);
    const tt_certs *c = tt_certs_get();
    tide_tls_config_t *cfg = tt_server_config(NULL, NULL, 10);
    tide_server_options_t o = {.tls = cfg};
    static stream_srv s;
    s = (stream_srv){.loop = loop};
    tide_server_t *server = NULL;
    assert_int_equal(
        tide_loop_start_server(loop, "127.0.0.1", 0, 4096, &o, stream_srv_connected, &s, &server),
        0);
    tide_tls_config_unref(cfg);
    char port[16];
    snprintf(port, sizeof(port), "%u", (unsigned)nt_server_port(server, 0));
    tt_proc *py = tt_py_peer(loop, (const char *const[]){"client", "--port", port, "--cafile",
                                                         c->ca, "--size", "300000", NULL});
    tt_proc_expect(py, "ECHO OK 300000 ", 30);
    assert_int_equal(tt_proc_wait_exit(py, 15), 0);
    ts_run_until_flag(loop, &s.joined.calls, 15);
    assert_int_equal(s.joined.result, 0);
    assert_int_equal(s.connected, 1);
    assert_int_equal(s.end_status, TIDE_EOF); /* close_notify: a clean end */
    assert_int_equal(s.received, 300000);
    close_server(loop, server);
}

/* ---- verification ---------------------------------------------------------------------- */

/* A tide client against s_server presenting cert: the connect fails with code. */
static void expect_verify_failure(tide_loop_t *loop, const char *cert, const char *key,
                                  const char *name, int code) {
    uint16_t port;
    /* Security level 0: OpenSSL would not even serve the weak certificates. */
    tt_proc *srv = tt_s_server(loop, cert, key,
                               (const char *const[]){"-cipher", "DEFAULT:@SECLEVEL=0", NULL}, &port);
    tide_tls_config_t *cfg = tt_client_config(NULL, 10);
    static ts_recorder r;
    static nt_conn conn;
    ts_recorder_init(&r);
    tls_connect(loop, port, cfg, name, &r, &conn);
    tide_tls_config_unref(cfg);
    expect_failed(&conn, &r, code);
    char text[256];
    tide_strerror_r(conn.status, text, sizeof(text));
    assert_true(strlen(text) > 0);
    ts_recorder_free(&r);
    tt_proc_free(srv);
}

/* Each finding about a server's certificate has its own code: trust, time, name, and
 * for a certificate that is otherwise good, what is not good enough about it. */
static void verify_findings(void **state) {
    const tt_certs *c = tt_certs_get();
    const struct {
        const char *cert, *key;
        int code;
    } cases[] = {
        {c->unknown, c->unknown_key, TIDE_ETLS_CERT_UNTRUSTED},
        {c->expired, c->expired_key, TIDE_ETLS_CERT_EXPIRED},
        {c->future, c->future_key, TIDE_ETLS_CERT_NOT_YET_VALID},
        {c->other, c->other_key, TIDE_ETLS_CERT_HOSTNAME},
        {c->weak_key, c->weak_key_key, TIDE_ETLS_CERT_WEAK_KEY},
        {c->weak_hash, c->weak_hash_key, TIDE_ETLS_CERT_WEAK_HASH},
        {c->client_only, c->client_only_key, TIDE_ETLS_CERT_USAGE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        print_message("%s: %s\n", cases[i].cert, tide_err_name(cases[i].code));
        expect_verify_failure(LOOP(state), cases[i].cert, cases[i].key, "localhost", cases[i].code);
    }
    /* The valid certificate does not name other.test either. */
    expect_verify_failure(LOOP(state), NULL, NULL, "other.test", TIDE_ETLS_CERT_HOSTNAME);
}

/* An IP address as the name (here the host connected to, 127.0.0.1): it is not sent as
 * SNI (RFC 6066 forbids it), and it is verified against the certificate's IP SANs; a
 * certificate naming other hosts only, or another address, is a name mismatch. */
static void ip_address_target(void **state) {
    tide_loop_t *loop = LOOP(state);
    const tt_certs *c = tt_certs_get();
    static echo_srv e;
    echo_srv_start_default(loop, &e, 5);
    tide_tls_config_t *cfg = tt_client_config(NULL, 10);
    static ts_recorder r;
    static nt_conn conn;
    ts_recorder_init(&r);
    tls_connect(loop, e.port, cfg, NULL, &r, &conn);
    tide_tls_config_unref(cfg);
    expect_connected(&conn, &r);
    tide_tls_info_t info;
    assert_int_equal(tide_tls_get_info(conn.transport, &info), 0);
    assert_true(info.peer_verified);
    assert_string_equal(info.server_name, "127.0.0.1");
    ts_run_until(loop, ts_pred_made, &e.rec[0], 5);
    assert_int_equal(tide_tls_get_info(e.rec[0].transport, &info), 0);
    assert_null(info.server_name); /* no SNI came */
    tide_transport_close(conn.transport);
    ts_run_until(loop, ts_pred_lost, &r, 5);
    ts_recorder_free(&r);
    echo_srv_stop(loop, &e);

    expect_verify_failure(loop, c->other, c->other_key, "127.0.0.1", TIDE_ETLS_CERT_HOSTNAME);
    expect_verify_failure(loop, NULL, NULL, "::1", TIDE_ETLS_CERT_HOSTNAME);
    expect_verify_failure(loop, NULL, NULL, "127.0.0.2", TIDE_ETLS_CERT_HOSTNAME);
}

/* Verification on and no name: refused at once, nothing started. */
static void no_hostname_synchronous(void **state) {
    tide_loop_t *loop = LOOP(state);
    tide_tls_config_t *cfg = tt_client_config(NULL, 10);
    static ts_recorder r;
    ts_recorder_init(&r);
    ts_recorder_pool pool = {&r, 1, 0};
    nt_conn conn = {0};
    tide_connect_options_t o = {.tls = cfg};
    /* A Unix socket has no host name to fall back on. */
    assert_int_equal(tide_loop_create_unix_connection(loop, "/nonexistent/tls.sock",
                                                      ts_recorder_factory(), &pool, &o, nt_conn_cb,
                                                      &conn, NULL),
                     TIDE_ETLS_NO_HOSTNAME);
    /* An empty name is no name. */
    o.server_hostname = "";
    assert_int_equal(tide_loop_create_connection(loop, "127.0.0.1", 9, ts_recorder_factory(), &pool,
                                                 &o, nt_conn_cb, &conn, NULL),
                     TIDE_ETLS_NO_HOSTNAME);
    tide_connect_options_t unnamed = {.tls = cfg};
    assert_int_equal(tide_loop_open_unix_connection(loop, "/nonexistent/tls.sock", 1024, &unnamed,
                                                    cli_opened, NULL, NULL),
                     TIDE_ETLS_NO_HOSTNAME);
    /* An adopted socket has no host at all; the caller keeps the descriptor. */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(tide_loop_connect_socket(loop, sv[0], ts_recorder_factory(), &pool, &unnamed,
                                              nt_conn_cb, &conn),
                     TIDE_ETLS_NO_HOSTNAME);
    /* ... and a client configuration cannot serve the accepted side. */
    assert_int_equal(tide_loop_connect_accepted_socket(loop, sv[1], ts_recorder_factory(), &pool,
                                                       &unnamed, nt_conn_cb, &conn),
                     TIDE_EINVAL);
    close(sv[0]);
    close(sv[1]);
    ts_spin(loop, 3);
    assert_int_equal(conn.calls, 0);
    assert_int_equal(pool.used, 0);

    /* A server configuration is no client configuration. */
    tide_tls_config_t *scfg = tt_server_config(NULL, NULL, 10);
    o = (tide_connect_options_t){.tls = scfg, .server_hostname = "localhost"};
    assert_int_equal(tide_loop_create_connection(loop, "127.0.0.1", 9, ts_recorder_factory(), &pool,
                                                 &o, nt_conn_cb, &conn, NULL),
                     TIDE_EINVAL);
    tide_tls_config_unref(scfg);
    tide_tls_config_unref(cfg);
    ts_recorder_free(&r);
}

/* Verification off: any certificate, any name, or none; the connection says it did
 * not verify. */
static void verify_off_connects(void **state) {
    tide_loop_t *loop = LOOP(state);
    const tt_certs *c = tt_certs_get();
    uint16_t port;
    tt_proc *srv =
        tt_s_server(loop, c->unknown, c->unknown_key, (const char *const[]){"-www", NULL}, &port);
    tide_tls_config_t *cfg = NULL;
    assert_int_equal(tide_tls_config_new_client(&cfg), 0);
    assert_int_equal(tide_tls_config_set_verify_peer(cfg, false), 0);
    static ts_recorder r;
    static nt_conn conn;
    ts_recorder_init(&r);
    tls_connect(loop, port, cfg, "", &r, &conn);
    /* Frozen by its first use. */
    assert_int_equal(tide_tls_config_set_verify_peer(cfg, true), TIDE_EBUSY);
    tide_tls_config_unref(cfg);
    expect_connected(&conn, &r);
    tide_tls_info_t info;
    assert_int_equal(tide_tls_get_info(conn.transport, &info), 0);
    assert_false(info.peer_verified);
    tide_tls_cert_t cert;
    assert_int_equal(tide_tls_get_peer_certificate(conn.transport, &cert), 0);
    assert_non_null(strstr(cert.issuer, "tide unknown CA"));
    const char req[] = "GET / HTTP/1.0\r\n\r\n";
    assert_int_equal(tide_transport_write(r.transport, req, sizeof(req) - 1), 0);
    ts_run_until(loop, ts_pred_lost, &r, 15);
    assert_true(r.len > 0);
    tt_proc_free(srv);
    ts_recorder_free(&r);
}

/* ---- protocol versions and renegotiation -------------------------------------------------- */

static const char *const OLD_TLS_SERVER[] = {"-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0", NULL};
static const char *const OLD_TLS_CLIENT[] = {"-tls1_1", "-cipher",     "DEFAULT:@SECLEVEL=0",
                                             "-quiet",  "-no_ign_eof", NULL};

/* openssl s_client limited to TLS 1.1 cannot connect to tide's server; tide's client
 * cannot connect to s_server limited to TLS 1.1. */
static void old_versions_refused(void **state) {
    tide_loop_t *loop = LOOP(state);
    static echo_srv e;
    echo_srv_start_default(loop, &e, 5);
    tt_proc *cl = tt_s_client(loop, e.port, OLD_TLS_CLIENT);
    int code = tt_proc_wait_exit(cl, 15);
    if (code == 0 || code == -1)
        fail_msg("s_client -tls1_1: exit %d; output:\n%s", code, tt_proc_output(cl, NULL));
    /* Refused for its version: tide's server answered with a protocol_version alert. */
    if (!strstr(tt_proc_output(cl, NULL), "alert protocol version"))
        fail_msg("s_client -tls1_1 output:\n%s", tt_proc_output(cl, NULL));
    ts_run_until(loop, srv_empty, e.server, 15);
    assert_int_equal(e.pool.used, 0); /* no protocol was made */
    echo_srv_stop(loop, &e);

    uint16_t port;
    tt_s_server(loop, NULL, NULL, OLD_TLS_SERVER, &port);
    tide_tls_config_t *cfg = tt_client_config(NULL, 10);
    static ts_recorder r;
    static nt_conn conn;
    ts_recorder_init(&r);
    tls_connect(loop, port, cfg, "localhost", &r, &conn);
    tide_tls_config_unref(cfg);
    if (!is_tls_code(conn.status))
        fail_msg("connect to a TLS 1.1 server: %s", tt_err(conn.status));
    assert_int_equal(r.made, 0);
    ts_recorder_free(&r);
}

/* The server resumes TLS 1.2 sessions by ticket as well as by session ID: s_client
 * saves the session of a first connection (which carries a ticket), then resumes it,
 * once with the ticket and once by ID alone (-no_ticket). */
static void server_resumes_by_ticket_and_id(void **state) {
    tide_loop_t *loop = LOOP(state);
    const tt_certs *c = tt_certs_get();
    static echo_srv e;
    echo_srv_start_default(loop, &e, 10);
    char ticket_sess[TT_PATH + 32], id_sess[TT_PATH + 32];
    snprintf(ticket_sess, sizeof ticket_sess, "%s/ticket.sess", c->dir);
    snprintf(id_sess, sizeof id_sess, "%s/id.sess", c->dir);
    const struct {
        const char *const *args;
        const char *expect;
    } steps[] = {
        {(const char *const[]){"-tls1_2", "-sess_out", ticket_sess, NULL},
         "TLS session ticket lifetime hint"},
        {(const char *const[]){"-tls1_2", "-sess_in", ticket_sess, NULL}, "Reused, TLSv1.2"},
        {(const char *const[]){"-tls1_2", "-no_ticket", "-sess_out", id_sess, NULL}, "New, TLSv1.2"},
        {(const char *const[]){"-tls1_2", "-no_ticket", "-sess_in", id_sess, NULL},
         "Reused, TLSv1.2"},
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        tt_proc *cl = tt_s_client(loop, e.port, steps[i].args);
        tt_proc_expect(cl, steps[i].expect, 15);
        ts_recorder *srv = &e.rec[i];
        ts_run_until(loop, ts_pred_made, srv, 15);
        tide_tls_info_t info;
        assert_int_equal(tide_tls_get_info(srv->transport, &info), 0);
        assert_int_equal(info.resumed, i % 2 == 1); /* the server knows it resumed */
        tt_proc_close_stdin(cl);
        assert_int_not_equal(tt_proc_wait_exit(cl, 15), -1);
        tt_proc_free(cl);
        ts_run_until(loop, ts_pred_lost, srv, 15);
    }
    echo_srv_stop(loop, &e);
}

/* ---- groups and suites ------------------------------------------------------------------- */

/* What openssl s_client offers, and whether tide's default server must refuse it. */
typedef struct offer {
    const char *const *args;
    bool refused;
    const char *expect; /* in s_client's -brief output when it connects */
} offer;

static const char *const OFFER_DEFAULT[] = {"-tls1_2", "-brief", NULL};
static const char *const OFFER_P256[] = {"-tls1_2", "-brief", "-groups", "P-384:P-256", NULL};
static const char *const OFFER_P521[] = {"-tls1_2", "-brief", "-groups", "P-521", NULL};
/* P-256 must be offered for the server's P-256 certificate to be usable at all. */
static const char *const OFFER_P521_P256[] = {"-tls1_2", "-brief", "-groups", "P-521:P-256",
                                              NULL};
static const char *const OFFER_P192[] = {"-tls1_2", "-brief", "-groups", "secp192r1:secp224r1",
                                         "-cipher", "DEFAULT:@SECLEVEL=0", NULL};
static const char *const OFFER_CBC[] = {"-tls1_2", "-brief", "-cipher",
                                        "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA", NULL};
static const char *const OFFER_CCM8[] = {"-tls1_2", "-brief", "-cipher", "ECDHE-ECDSA-AES128-CCM8",
                                         NULL};
static const char *const OFFER_NO_PFS[] = {"-tls1_2", "-brief", "-cipher",
                                           "ECDH-ECDSA-AES128-GCM-SHA256:AES128-GCM-SHA256", NULL};

static const offer OFFERS[] = {
    /* OpenSSL offers X25519 first among others: the cheapest both have wins. */
    {OFFER_DEFAULT, false, "Server Temp Key: X25519"},
    /* The server's order decides, not the client's: P-256 before P-384. */
    {OFFER_P256, false, "Server Temp Key: ECDH, prime256v1"},
    /* mbedTLS's own order would take P-521 here, at several times the cost. */
    {OFFER_P521_P256, false, "Server Temp Key: ECDH, prime256v1"},
    {OFFER_P521, true, NULL},
    {OFFER_P192, true, NULL},
    {OFFER_CBC, true, NULL},
    {OFFER_CCM8, true, NULL},
    {OFFER_NO_PFS, true, NULL},
};

static void run_offer(tide_loop_t *loop, uint16_t port, const offer *o) {
    tt_proc *cl = tt_s_client(loop, port, o->args);
    if (o->refused) {
        int code = tt_proc_wait_exit(cl, 15);
        if (code == 0 || code == -1 || strstr(tt_proc_output(cl, NULL), "CONNECTION ESTABLISHED"))
            fail_msg("s_client %s %s: exit %d, not refused; output:\n%s", o->args[2],
                     o->args[3] ? o->args[3] : "", code, tt_proc_output(cl, NULL));
    } else {
        tt_proc_expect(cl, "CONNECTION ESTABLISHED", 15);
        tt_proc_expect(cl, o->expect, 5);
        /* ECDHE with an AEAD cipher, ChaCha20-Poly1305 first. */
        tt_proc_expect(cl, "Ciphersuite: ECDHE-ECDSA-CHACHA20-POLY1305", 5);
        tt_proc_close_stdin(cl);
        assert_int_not_equal(tt_proc_wait_exit(cl, 15), -1);
    }
    tt_proc_free(cl);
}

/* tide's server takes only ECDHE with AEAD suites on X25519, P-256 or P-384, and picks
 * the cheapest group the client offers; with allow_legacy it takes mbedTLS's wider
 * lists again (a CBC suite, which every mbedTLS version's defaults keep). */
static void weak_parameters_refused_server(void **state) {
    tide_loop_t *loop = LOOP(state);
    static echo_srv e;
    echo_srv_start_default(loop, &e, 5);
    for (size_t i = 0; i < sizeof(OFFERS) / sizeof(OFFERS[0]); i++)
        run_offer(loop, e.port, &OFFERS[i]);
    echo_srv_stop(loop, &e);

    tide_tls_config_t *scfg = tt_server_config(NULL, NULL, 5);
    assert_int_equal(tide_tls_config_allow_legacy(scfg, true), 0);
    echo_srv_start(loop, &e, scfg);
    tide_tls_config_unref(scfg);
    tt_proc *cl = tt_s_client(loop, e.port, OFFER_CBC);
    tt_proc_expect(cl, "Ciphersuite: ECDHE-ECDSA-AES128-", 15);
    tt_proc_free(cl);
    echo_srv_stop(loop, &e);
}

/* tide's client offers no weak group or suite either: an s_server limited to P-521,
 * to P-192, to CBC suites or to suites without forward secrecy is refused. */
static void weak_parameters_refused_client(void **state) {
    tide_loop_t *loop = LOOP(state);
    static const char *const weak_servers[][6] = {
        {"-groups", "P-521", NULL},
        {"-groups", "secp192r1", "-cipher", "DEFAULT:@SECLEVEL=0", NULL},
        {"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA", NULL},
        {"-tls1_2", "-cipher", "ECDH-ECDSA-AES128-GCM-SHA256:AES128-GCM-SHA256", NULL},
    };
    for (size_t i = 0; i < sizeof(weak_servers) / sizeof(weak_servers[0]); i++) {
        uint16_t port;
        tt_proc *srv = tt_s_server(loop, NULL, NULL, weak_servers[i], &port);
        tide_tls_config_t *cfg = tt_client_config(NULL, 10);
        static ts_recorder r;
        static nt_conn conn;
        ts_recorder_init(&r);
        tls_connect(loop, port, cfg, "localhost", &r, &conn);
        tide_tls_config_unref(cfg);
        if (!is_tls_code(conn.status))
            fail_msg("connect to s_server %s %s: %s", weak_servers[i][0], weak_servers[i][1],
                     tt_err(conn.status));
        assert_int_equal(r.made, 0);
        ts_recorder_free(&r);
        tt_proc_free(srv);
    }
}

/* s_client (TLS 1.2) asks for a renegotiation ("R" command): tide refuses; the
 * connection either ends with an alert or goes on without renegotiating. Never a hang:
 * every wait is bounded. */
static void renegotiation_refused(void **state) {
    tide_loop_t *loop = LOOP(state);
    static echo_srv e;
    echo_srv_start_default(loop, &e, 5);
    tt_proc *cl =
        tt_s_client(loop, e.port, (const char *const[]){"-tls1_2", "-quiet", "-no_ign_eof", NULL});
    tt_proc_write(cl, "before\n", 7);
    tt_proc_expect(cl, "before", 15);
    tt_proc_write(cl, "R\n", 2);
    tt_proc_expect(cl, "RENEGOTIATING", 15);
    tt_proc_write(cl, "after\n", 6);
    /* Either the echo comes back on the old session or s_client ends. */
    bool echoed = tt_proc_wait_for(cl, "after", 10);
    if (echoed) {
        tt_proc_close_stdin(cl);
    }
    int code = tt_proc_wait_exit(cl, 15);
    assert_int_not_equal(code, -1);
    ts_recorder *srv = &e.rec[0];
    ts_run_until(loop, ts_pred_lost, srv, 15);
    /* The server never took part in a second handshake: it saw only the lines. */
    assert_true(srv->len >= 7 && memcmp(srv->data, "before\n", 7) == 0);
    assert_true(srv->len == 7 || (srv->len == 13 && memcmp(srv->data + 7, "after\n", 6) == 0));
    /* Ended: by tide's no_renegotiation alert, nothing else. */
    if (!echoed && !strstr(tt_proc_output(cl, NULL), "no renegotiation"))
        fail_msg("s_client output:\n%s", tt_proc_output(cl, NULL));
    print_message("renegotiation: %s, s_client exit %d, server lost %s\n",
                  echoed ? "refused, session kept" : "refused, connection ended", code,
                  tide_err_name(srv->lost_status));
    echo_srv_stop(loop, &e);
}

/* ---- handshake deadline ------------------------------------------------------------------- */

/* A TCP listener that never answers: the kernel completes the TCP handshake, nobody
 * speaks TLS. */
static int silent_listener(uint16_t *port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void handshake_timeout_client(void **state) {
    tide_loop_t *loop = LOOP(state);
    (void)tt_certs_get(); /* skips before any descriptor is open */
    uint16_t port;
    int lfd = silent_listener(&port);
    tide_tls_config_t *cfg = tt_client_config(NULL, 0.5);
    static ts_recorder r;
    static nt_conn conn;
    ts_recorder_init(&r);
    double t0 = mono();
    tls_connect(loop, port, cfg, "localhost", &r, &conn);
    double took = mono() - t0;
    tide_tls_config_unref(cfg);
    expect_failed(&conn, &r, TIDE_ETLS_HANDSHAKE_TIMEOUT);
    assert_true(took >= 0.45);
    assert_true(took < ts_scaled(5));
    close(lfd);
    ts_recorder_free(&r);
}

static void handshake_timeout_server(void **state) {
    tide_loop_t *loop = LOOP(state);
    tide_tls_config_t *scfg = tt_server_config(NULL, NULL, 0.5);
    static echo_srv e;
    echo_srv_start(loop, &e, scfg);
    tide_tls_config_unref(scfg);
    int fd = nt_raw_client(e.port); /* connects, sends nothing */
    double t0 = mono();
    /* The server accepts it (a client from then on) and closes it at the deadline. */
    struct pollfd pfd = {fd, POLLIN, 0};
    ts_run_until(loop, srv_has_client, e.server, 5);
    ts_run_until(loop, srv_empty, e.server, 5);
    double took = mono() - t0;
    assert_true(took >= 0.4);
    assert_true(took < ts_scaled(5));
    /* The raw client sees the end of the connection. */
    assert_int_equal(poll(&pfd, 1, (int)(ts_scaled(5) * 1000)), 1);
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_DONTWAIT);
    assert_true(n == 0 || (n < 0 && errno == ECONNRESET));
    close(fd);
    assert_int_equal(e.pool.used, 0);
    echo_srv_stop(loop, &e);
}

/* ---- truncation ---------------------------------------------------------------------------- */

/* The Python server sends data, then closes the TCP connection without close_notify
 * (dirty) or unwraps (clean). */
static void peer_close(tide_loop_t *loop, const char *how, ts_recorder *r) {
    const tt_certs *c = tt_certs_get();
    tt_proc *py = tt_py_peer(loop, (const char *const[]){"send-close", "--cert", c->server, "--key",
                                                         c->server_key, "--data", "partial data",
                                                         "--how", how, NULL});
    uint16_t port = (uint16_t)tt_proc_expect_number(py, "PORT", 15);
    tide_tls_config_t *cfg = tt_client_config(NULL, 10);
    static nt_conn conn;
    ts_recorder_init(r);
    tls_connect(loop, port, cfg, "localhost", r, &conn);
    tide_tls_config_unref(cfg);
    expect_connected(&conn, r);
    ts_run_until(loop, ts_pred_lost, r, 15);
    assert_int_equal(r->violations, 0);
    assert_int_equal(r->len, 12);
    assert_memory_equal(r->data, "partial data", 12);
    assert_int_equal(tt_proc_wait_exit(py, 15), 0);
}

static void truncation_detected(void **state) {
    static ts_recorder r;
    peer_close(LOOP(state), "dirty", &r);
    if (r.lost_status != TIDE_ETLS_TRUNCATED)
        fail_msg("lost: %s (events %s)", tt_err(r.lost_status), r.events);
    assert_string_equal(r.events, "MDL"); /* no eof_received for a truncated end */
    ts_recorder_free(&r);
}

static void clean_close_is_eof(void **state) {
    static ts_recorder r;
    peer_close(LOOP(state), "clean", &r);
    if (r.lost_status != 0)
        fail_msg("lost: %s (events %s)", tt_err(r.lost_status), r.events);
    assert_string_equal(r.events, "MDEL");
    ts_recorder_free(&r);
}

/* ---- a flipped ciphertext byte, both directions ------------------------------------------- */

static int flip_fd = -1;
static bool flip_send_armed, flip_recv_armed;

/* Flips one byte inside the next record of more than 20 bytes (past its header). */
static ssize_t flipping_send(int fd, const void *buf, size_t len, int flags) {
    if (fd == flip_fd && flip_send_armed && len > 20) {
        unsigned char copy[64 * 1024];
        size_t n = len < sizeof(copy) ? len : sizeof(copy);
        memcpy(copy, buf, n);
        copy[12] ^= 0x40;
        flip_send_armed = false;
        return send(fd, copy, n, flags);
    }
    return send(fd, buf, len, flags);
}

static ssize_t flipping_sendmsg(int fd, const struct msghdr *msg, int flags) {
    if (fd == flip_fd && flip_send_armed && msg->msg_iovlen > 0)
        return flipping_send(fd, msg->msg_iov[0].iov_base, msg->msg_iov[0].iov_len, flags);
    return sendmsg(fd, msg, flags);
}

static ssize_t flipping_recv(int fd, void *buf, size_t len, int flags) {
    ssize_t n = recv(fd, buf, len, flags);
    if (fd == flip_fd && flip_recv_armed && n > 20) {
        ((unsigned char *)buf)[12] ^= 0x40;
        flip_recv_armed = false;
    }
    return n;
}

/* A byte flipped on the wire breaks the record's authentication: the receiver fails
 * with a TLS error and delivers nothing of the bad record. Python receiving a bad
 * record from tide, then tide receiving one from Python. */
static void flipped_byte_with_real_peer(void **state) {
    tide_loop_t *loop = LOOP(state);
    const tt_certs *c = tt_certs_get();
    for (int to_tide = 0; to_tide < 2; to_tide++) {
        tt_proc *py = tt_py_peer(loop, (const char *const[]){"echo-server", "--cert", c->server,
                                                             "--key", c->server_key, NULL});
        uint16_t port = (uint16_t)tt_proc_expect_number(py, "PORT", 15);
        tide_tls_config_t *cfg = tt_client_config(NULL, 10);
        static ts_recorder r;
        static nt_conn conn;
        ts_recorder_init(&r);
        tls_connect(loop, port, cfg, "localhost", &r, &conn);
        tide_tls_config_unref(cfg);
        expect_connected(&conn, &r);
        /* One round trip first: the handshake's last records are behind us. */
        assert_int_equal(tide_transport_write(r.transport, "ping", 4), 0);
        sk_run_until_len(loop, &r, 4);
        flip_fd = tide_transport_get_fd(r.transport); /* the socket under TLS */
        assert_true(flip_fd >= 0);
        tide__sys.send = flipping_send;
        tide__sys.sendmsg = flipping_sendmsg;
        tide__sys.recv = flipping_recv;
        flip_send_armed = !to_tide;
        flip_recv_armed = to_tide;
        static unsigned char block[1000];
        pattern(block, sizeof(block), 0);
        assert_int_equal(tide_transport_write(r.transport, block, sizeof(block)), 0);
        ts_run_until(loop, ts_pred_lost, &r, 15);
        tide__sys_reset();
        assert_false(flip_send_armed || flip_recv_armed); /* the flip happened */
        if (!is_tls_code(r.lost_status) && !(!to_tide && refused(r.lost_status)))
            fail_msg("lost: %s", tt_err(r.lost_status));
        if (to_tide) {
            assert_true(tide_err_is_tls(r.lost_status)); /* mbedTLS's bad MAC, kept inside */
            assert_int_equal(r.len, 4);                  /* nothing of the bad record */
        } else {
            tt_proc_expect(py, "BAD_RECORD_MAC", 15); /* Python's ssl saw the bad record */
        }
        assert_int_not_equal(tt_proc_wait_exit(py, 15), 0);
        tt_proc_free(py);
        ts_recorder_free(&r);
    }
}

/* ---- 64 MiB each way with injected faults --------------------------------------------------- */

static struct { long sends, recvs, eagain, short_io; } inj;

/* Every third send would block; the others move a varying part (1..16 KiB). */
static ssize_t faulty_send(int fd, const void *buf, size_t len, int flags) {
    long n = ++inj.sends;
    if (n % 3 == 0) {
        inj.eagain++;
        errno = EAGAIN;
        return -1;
    }
    size_t cap = 1 + (size_t)((n * 7919) % 16384);
    if (cap < len)
        inj.short_io++;
    return send(fd, buf, len < cap ? len : cap, flags);
}

static ssize_t faulty_sendmsg(int fd, const struct msghdr *msg, int flags) {
    size_t i = 0;
    while (i < msg->msg_iovlen && msg->msg_iov[i].iov_len == 0)
        i++;
    if (i == msg->msg_iovlen)
        return 0;
    inj.short_io++; /* only the first piece, at most */
    return faulty_send(fd, msg->msg_iov[i].iov_base, msg->msg_iov[i].iov_len, flags);
}

/* Every fourth receive would block; the others read a varying part (1..32 KiB). */
static ssize_t faulty_recv(int fd, void *buf, size_t len, int flags) {
    long n = ++inj.recvs;
    if (n % 4 == 0) {
        inj.eagain++;
        errno = EAGAIN;
        return -1;
    }
    size_t cap = 1 + (size_t)((n * 104729) % 32768);
    if (cap < len)
        inj.short_io++;
    return recv(fd, buf, len < cap ? len : cap, flags);
}

typedef struct bulk {
    tide_protocol_t base;
    tide_transport_t *t;
    bool client;
    uint64_t total, sent, received;
    uint64_t sum;
    bool paused;
    int made, lost, lost_status, eofs;
} bulk;

static bulk *bulk_of(tide_protocol_t *p) { return TIDE_CONTAINER_OF(p, bulk, base); }

static void bulk_pump(bulk *b) {
    static unsigned char chunk[65536];
    while (!b->paused && b->sent < b->total && !tide_transport_is_closing(b->t)) {
        size_t n =
            b->total - b->sent < sizeof(chunk) ? (size_t)(b->total - b->sent) : sizeof(chunk);
        pattern(chunk, n, b->sent);
        b->sent += n; /* before the write: pause_writing may run inside it */
        assert_int_equal(tide_transport_write(b->t, chunk, n), 0);
    }
}

static void bulk_made(tide_protocol_t *p, tide_transport_t *t) {
    bulk *b = bulk_of(p);
    b->made++;
    b->t = t;
    if (b->client)
        bulk_pump(b);
}

static void bulk_data(tide_protocol_t *p, const void *data, size_t len) {
    bulk *b = bulk_of(p);
    b->sum = ts_fnv1a(data, len, b->sum);
    b->received += len;
    if (!b->client) {
        /* Echo; reading pauses while the echo's queue is above its high-water mark. */
        assert_int_equal(tide_transport_write(b->t, data, len), 0);
    } else if (b->received == b->total) {
        tide_transport_close(b->t);
    }
}

static bool bulk_eof(tide_protocol_t *p) {
    bulk_of(p)->eofs++;
    return false;
}

static void bulk_lost(tide_protocol_t *p, int status) {
    bulk *b = bulk_of(p);
    b->lost++;
    b->lost_status = status;
}

static void bulk_pause(tide_protocol_t *p) {
    bulk *b = bulk_of(p);
    b->paused = true;
    if (!b->client)
        tide_transport_pause_reading(b->t);
}

static void bulk_resume(tide_protocol_t *p) {
    bulk *b = bulk_of(p);
    b->paused = false;
    if (b->client)
        bulk_pump(b);
    else
        tide_transport_resume_reading(b->t);
}

static const tide_protocol_ops_t bulk_ops = {
    .size = TIDE_PROTOCOL_OPS_SIZE,
    .connection_made = bulk_made,
    .data_received = bulk_data,
    .eof_received = bulk_eof,
    .connection_lost = bulk_lost,
    .pause_writing = bulk_pause,
    .resume_writing = bulk_resume,
};

static tide_protocol_t *bulk_factory(void *arg) { return &((bulk *)arg)->base; }

static void bulk_connected(tide_loop_t *loop, int status, tide_transport_t *t, tide_protocol_t *p,
                           void *arg) {
    (void)loop;
    (void)t;
    (void)p;
    *(int *)arg = status == 0 ? 1 : status;
}

static bool bulk_both_lost(void *arg) {
    bulk *b = arg;
    return b[0].lost && b[1].lost;
}

static void bulk_64mib_faults(void **state) {
    tide_loop_t *loop = LOOP(state);
    /* About 2 s, also under ASan: the crypto runs in the (uninstrumented) mbedTLS. */
    const uint64_t total = (uint64_t)64 << 20;
    memset(&inj, 0, sizeof(inj));
    static bulk b[2];
    b[0] = (bulk){.base.ops = &bulk_ops, .client = true, .total = total, .sum = TS_FNV_SEED};
    b[1] = (bulk){.base.ops = &bulk_ops, .client = false, .sum = TS_FNV_SEED};
    tide_tls_config_t *scfg = tt_server_config(NULL, NULL, 30);
    tide_tls_config_t *ccfg = tt_client_config(NULL, 30);
    tide_server_options_t so = {.tls = scfg};
    tide_server_t *server = NULL;
    assert_int_equal(
        tide_loop_create_server(loop, "127.0.0.1", 0, bulk_factory, &b[1], &so, &server), 0);
    tide__sys.send = faulty_send;
    tide__sys.sendmsg = faulty_sendmsg;
    tide__sys.recv = faulty_recv;
    int connected = 0;
    tide_connect_options_t co = {.tls = ccfg, .server_hostname = "localhost"};
    double t0 = mono();
    assert_int_equal(tide_loop_create_connection(loop, "127.0.0.1", nt_server_port(server, 0),
                                                 bulk_factory, &b[0], &co, bulk_connected,
                                                 &connected, NULL),
                     0);
    tide_tls_config_unref(scfg);
    tide_tls_config_unref(ccfg);
    ts_run_until(loop, bulk_both_lost, b, 60);
    double took = mono() - t0;
    tide__sys_reset();
    print_message("%llu MiB each way in %.2f s (%ld sends, %ld recvs, %ld EAGAIN, %ld short)\n",
                  (unsigned long long)(total >> 20), took, inj.sends, inj.recvs, inj.eagain,
                  inj.short_io);
    assert_int_equal(connected, 1);
    assert_int_equal(b[0].lost_status, 0);
    assert_int_equal(b[1].lost_status, 0);
    assert_int_equal(b[1].eofs, 1); /* the client's close_notify */
    assert_int_equal(b[0].sent, total);
    assert_int_equal(b[1].received, total);
    assert_int_equal(b[0].received, total);
    uint64_t expect = pattern_sum(total);
    assert_true(b[1].sum == expect);
    assert_true(b[0].sum == expect);
    assert_true(inj.eagain > 100);
    assert_true(inj.short_io > 100);
    close_server(loop, server);
}

/* ---- start_tls on streams -------------------------------------------------------------------- */

enum st_mode {
    ST_NORMAL,        /* STARTTLS, 220, upgrade both sides, a line each way */
    ST_INJECT_CLIENT, /* the client pipelines a command after STARTTLS */
    ST_INJECT_SERVER, /* the server's reply carries an extra line */
    ST_EARLY          /* the client starts TLS without waiting; the server sends no reply */
};

typedef struct st_ctx {
    tide_loop_t *loop;
    enum st_mode mode;
    tide_tls_config_t *ccfg, *scfg;
    uint16_t port;
    tide_server_t *server;
    /* server side */
    tide_reader_t *sr;
    tide_writer_t *sw;
    ts_joined sj;
    int server_tls, server_after, connected;
    size_t server_after_len;
    char server_line[64];
    /* client side */
    ts_joined cj;
    int client_tls, client_after;
    size_t client_after_len;
    char client_line[64];
} st_ctx;

#define ST_LIMIT 1024

static int st_server_task(void *arg) {
    st_ctx *c = arg;
    char line[ST_LIMIT + 1];
    size_t n = 0;
    TS_CHECK(tide_reader_readline_await(c->sr, line, sizeof(line), &n) == 0);
    TS_CHECK(n == 10 && memcmp(line, "STARTTLS\r\n", 10) == 0);
    if (c->mode == ST_INJECT_SERVER) {
        /* One write: the extra line arrives with the reply. */
        const char reply[] = "220 go\r\n250 injected\r\n";
        TS_CHECK(tide_writer_write(c->sw, reply, sizeof(reply) - 1) == 0);
    } else if (c->mode != ST_EARLY) {
        TS_CHECK(tide_writer_write(c->sw, "220 go\r\n", 8) == 0);
    }
    TS_CHECK(tide_writer_drain_await(c->sw) == 0);
    c->server_tls = tide_writer_start_tls_await(c->sw, c->scfg, NULL, NULL);
    if (c->server_tls != 0) {
        /* Nothing pipelined in plaintext is ever read as data. */
        c->server_after =
            tide_reader_readline_await(c->sr, line, sizeof(line), &c->server_after_len);
        tide_writer_close(c->sw);
        (void)tide_writer_wait_closed_await(c->sw);
        return 0;
    }
    TS_CHECK(tide_transport_is_tls(tide_writer_get_transport(c->sw)));
    TS_CHECK(tide_reader_readline_await(c->sr, line, sizeof(line), &n) == 0);
    snprintf(c->server_line, sizeof(c->server_line), "%.*s", (int)n, line);
    char out[80];
    int len = snprintf(out, sizeof(out), "echo: %.*s", (int)n, line);
    TS_CHECK(tide_writer_write(c->sw, out, (size_t)len) == 0);
    TS_CHECK(tide_writer_drain_await(c->sw) == 0);
    tide_writer_close(c->sw);
    TS_CHECK(tide_writer_wait_closed_await(c->sw) == 0);
    return 0;
}

static void st_connected(tide_reader_t *r, tide_writer_t *w, void *arg) {
    st_ctx *c = arg;
    c->connected++;
    c->sr = r;
    c->sw = w;
    ts_spawn_joined(c->loop, st_server_task, c, &c->sj);
}

static int st_client_task(void *arg) {
    st_ctx *c = arg;
    tide_reader_t *r = NULL;
    tide_writer_t *w = NULL;
    TS_CHECK(tide_loop_open_connection_await(c->loop, "127.0.0.1", c->port, ST_LIMIT, NULL, &r,
                                             &w) == 0);
    TS_CHECK(!tide_transport_is_tls(tide_writer_get_transport(w)));
    char line[ST_LIMIT + 1];
    size_t n = 0;
    if (c->mode == ST_INJECT_CLIENT) {
        const char cmds[] = "STARTTLS\r\nMAIL FROM:<x>\r\n";
        TS_CHECK(tide_writer_write(w, cmds, sizeof(cmds) - 1) == 0);
    } else {
        TS_CHECK(tide_writer_write(w, "STARTTLS\r\n", 10) == 0);
    }
    if (c->mode != ST_EARLY) {
        TS_CHECK(tide_reader_readline_await(r, line, sizeof(line), &n) == 0);
        TS_CHECK(n == 8 && memcmp(line, "220 go\r\n", 8) == 0);
    }
    c->client_tls = tide_writer_start_tls_await(w, c->ccfg, "localhost", NULL);
    if (c->client_tls != 0) {
        /* "250 injected" (if it came) went to TLS, never to a read. */
        c->client_after = tide_reader_readline_await(r, line, sizeof(line), &c->client_after_len);
        tide_writer_close(w);
        (void)tide_writer_wait_closed_await(w);
        return 0;
    }
    TS_CHECK(tide_transport_is_tls(tide_writer_get_transport(w)));
    TS_CHECK(tide_writer_write(w, "hello tls\n", 10) == 0);
    TS_CHECK(tide_writer_drain_await(w) == 0);
    TS_CHECK(tide_reader_readline_await(r, line, sizeof(line), &n) == 0);
    snprintf(c->client_line, sizeof(c->client_line), "%.*s", (int)n, line);
    /* The server closed with close_notify: a clean end. */
    c->client_after = tide_reader_readline_await(r, line, sizeof(line), &c->client_after_len);
    tide_writer_close(w);
    TS_CHECK(tide_writer_wait_closed_await(w) == 0);
    return 0;
}

static void st_run(tide_loop_t *loop, st_ctx *c, enum st_mode mode) {
    memset(c, 0, sizeof(*c));
    c->loop = loop;
    c->mode = mode;
    c->ccfg = tt_client_config(NULL, 5);
    c->scfg = tt_server_config(NULL, NULL, 5);
    c->server_tls = c->client_tls = 1; /* "not reached" */
    assert_int_equal(
        tide_loop_start_server(loop, "127.0.0.1", 0, ST_LIMIT, NULL, st_connected, c, &c->server),
        0);
    c->port = nt_server_port(c->server, 0);
    ts_spawn_joined(loop, st_client_task, c, &c->cj);
    ts_run_until_flag(loop, &c->cj.calls, 20);
    ts_run_until_flag(loop, &c->sj.calls, 20);
    assert_int_equal(c->cj.result, 0);
    assert_int_equal(c->sj.result, 0);
    assert_int_equal(c->connected, 1);
    close_server(loop, c->server);
    tide_tls_config_unref(c->ccfg);
    tide_tls_config_unref(c->scfg);
}

static void start_tls_streams(void **state) {
    static st_ctx c;
    st_run(LOOP(state), &c, ST_NORMAL);
    if (c.client_tls != 0 || c.server_tls != 0)
        fail_msg("client %s, server %s", tt_err(c.client_tls), tide_err_name(c.server_tls));
    assert_string_equal(c.server_line, "hello tls\n");
    assert_string_equal(c.client_line, "echo: hello tls\n");
    assert_int_equal(c.client_after, TIDE_EOF);
}

/* Plaintext pipelined after STARTTLS must not survive into the TLS session: the
 * server's upgrade fails on it, and the server never reads it. */
static void start_tls_injection_client(void **state) {
    static st_ctx c;
    st_run(LOOP(state), &c, ST_INJECT_CLIENT);
    if (!is_tls_code(c.server_tls))
        fail_msg("server start_tls: %s", tt_err(c.server_tls));
    assert_true(c.server_after < 0);
    assert_int_equal(c.server_after_len, 0);
    assert_true(c.client_tls < 0);
    assert_true(c.client_after < 0);
    assert_int_equal(c.client_after_len, 0);
}

/* An extra line after the server's ready reply: the client's upgrade fails on it and
 * no read ever returns it. */
static void start_tls_injection_server(void **state) {
    static st_ctx c;
    st_run(LOOP(state), &c, ST_INJECT_SERVER);
    if (!is_tls_code(c.client_tls))
        fail_msg("client start_tls: %s", tt_err(c.client_tls));
    assert_true(c.client_after < 0);
    assert_int_equal(c.client_after_len, 0);
    assert_true(c.server_tls < 0);
    assert_true(c.server_after < 0);
    assert_int_equal(c.server_after_len, 0);
}

/* A ClientHello right behind the STARTTLS line (no reply awaited) is legitimate TLS
 * input: bytes the server's reader already holds go to the TLS layer. */
static void start_tls_early_client_hello(void **state) {
    static st_ctx c;
    st_run(LOOP(state), &c, ST_EARLY);
    if (c.client_tls != 0 || c.server_tls != 0)
        fail_msg("client %s, server %s", tt_err(c.client_tls), tide_err_name(c.server_tls));
    assert_string_equal(c.server_line, "hello tls\n");
    assert_string_equal(c.client_line, "echo: hello tls\n");
}

/* asyncio's StreamWriter.start_tls on the other side, both ways. */
static void start_tls_vs_asyncio_server(void **state) {
    tide_loop_t *loop = LOOP(state);
    const tt_certs *certs = tt_certs_get();
    tt_proc *py = tt_py_peer(loop, (const char *const[]){"starttls-server", "--cert", certs->server,
                                                         "--key", certs->server_key, NULL});
    static st_ctx c;
    memset(&c, 0, sizeof(c));
    c.loop = loop;
    c.port = (uint16_t)tt_proc_expect_number(py, "PORT", 15);
    c.ccfg = tt_client_config(NULL, 10);
    c.client_tls = 1;
    ts_spawn_joined(loop, st_client_task, &c, &c.cj);
    ts_run_until_flag(loop, &c.cj.calls, 20);
    tide_tls_config_unref(c.ccfg);
    assert_int_equal(c.cj.result, 0);
    if (c.client_tls != 0)
        fail_msg("start_tls: %s; peer:\n%s", tt_err(c.client_tls), tt_proc_output(py, NULL));
    assert_string_equal(c.client_line, "echo: hello tls\n");
    tt_proc_expect(py, "LINE hello tls", 15);
    assert_int_equal(tt_proc_wait_exit(py, 15), 0);
}

static void start_tls_vs_asyncio_client(void **state) {
    tide_loop_t *loop = LOOP(state);
    const tt_certs *certs = tt_certs_get();
    static st_ctx c;
    memset(&c, 0, sizeof(c));
    c.loop = loop;
    c.scfg = tt_server_config(NULL, NULL, 10);
    c.server_tls = 1;
    assert_int_equal(
        tide_loop_start_server(loop, "127.0.0.1", 0, ST_LIMIT, NULL, st_connected, &c, &c.server),
        0);
    char port[16];
    snprintf(port, sizeof(port), "%u", (unsigned)nt_server_port(c.server, 0));
    tt_proc *py = tt_py_peer(loop, (const char *const[]){"starttls-client", "--port", port,
                                                         "--cafile", certs->ca, NULL});
    tt_proc_expect(py, "STARTTLS OK", 20);
    assert_int_equal(tt_proc_wait_exit(py, 15), 0);
    ts_run_until_flag(loop, &c.sj.calls, 15);
    assert_int_equal(c.sj.result, 0);
    assert_int_equal(c.server_tls, 0);
    assert_string_equal(c.server_line, "hello tls\n");
    close_server(loop, c.server);
    tide_tls_config_unref(c.scfg);
}

/* ---- TLS over a socketpair ------------------------------------------------------------------ */

/* connect_socket / connect_accepted_socket with TLS options: the handshake runs over
 * the adopted descriptors; the factory and connection_made follow it. */
static void connect_socket_tls_socketpair(void **state) {
    tide_loop_t *loop = LOOP(state);
    (void)tt_certs_get(); /* skips before any descriptor is open */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    static ts_recorder r[2];
    static nt_conn conn[2];
    static ts_recorder_pool pool[2];
    ts_recorder_init(&r[0]);
    ts_recorder_init(&r[1]);
    r[1].echo = true;
    pool[0] = (ts_recorder_pool){&r[0], 1, 0};
    pool[1] = (ts_recorder_pool){&r[1], 1, 0};
    memset(conn, 0, sizeof(conn));
    tide_connect_options_t server = {.tls = tt_tls_server_options()->tls};
    assert_int_equal(tide_loop_connect_socket(loop, sv[0], ts_recorder_factory(), &pool[0],
                                              tt_tls_connect_options(), nt_conn_cb, &conn[0]),
                     0);
    assert_int_equal(tide_loop_connect_accepted_socket(loop, sv[1], ts_recorder_factory(), &pool[1],
                                                       &server, nt_conn_cb, &conn[1]),
                     0);
    assert_int_equal(conn[0].calls + conn[1].calls + r[0].made + r[1].made, 0);
    ts_run_until(loop, nt_pred_conn, &conn[0], 10);
    ts_run_until(loop, nt_pred_conn, &conn[1], 10);
    expect_connected(&conn[0], &r[0]);
    expect_connected(&conn[1], &r[1]);
    tide_tls_info_t info;
    assert_int_equal(tide_tls_get_info(conn[1].transport, &info), 0);
    assert_true(info.server_side);
    assert_string_equal(info.server_name, "localhost");
    assert_int_equal(tide_tls_get_info(conn[0].transport, &info), 0);
    assert_true(info.peer_verified);
    assert_int_equal(tide_transport_write(r[0].transport, "over a socketpair", 17), 0);
    sk_run_until_len(loop, &r[0], 17);
    assert_memory_equal(r[0].data, "over a socketpair", 17);
    close_client(loop, &r[0]);
    ts_run_until(loop, ts_pred_lost, &r[1], 10);
    assert_int_equal(r[1].lost_status, 0);
    assert_string_equal(r[1].events, "MDEL");
    ts_recorder_free(&r[0]);
    ts_recorder_free(&r[1]);
}

int main(int argc, char **argv) {
    /* An optional argument runs only the matching tests, e.g. "verify_*". */
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        TEST(client_vs_s_server_www),
        TEST(client_tls12_default_name),
        TEST(client_vs_python_echo),
        TEST(client_certificate),
        TEST(alpn_and_resumption_vs_s_server),
        TEST(streams_client_callbacks),
        TEST(streams_client_task),
        TEST(s_client_vs_tide_server),
        TEST(server_resumes_by_ticket_and_id),
        TEST(server_requires_client_cert),
        TEST(python_client_vs_tide_server),
        TEST(streams_server_vs_python),
        TEST(verify_findings),
        TEST(ip_address_target),
        TEST(no_hostname_synchronous),
        TEST(verify_off_connects),
        TEST(old_versions_refused),
        TEST(weak_parameters_refused_server),
        TEST(weak_parameters_refused_client),
        TEST(renegotiation_refused),
        TEST(handshake_timeout_client),
        TEST(handshake_timeout_server),
        TEST(truncation_detected),
        TEST(clean_close_is_eof),
        TEST(flipped_byte_with_real_peer),
        TEST(bulk_64mib_faults),
        TEST(start_tls_streams),
        TEST(start_tls_injection_client),
        TEST(start_tls_injection_server),
        TEST(start_tls_early_client_hello),
        TEST(start_tls_vs_asyncio_server),
        TEST(start_tls_vs_asyncio_client),
        TEST(connect_socket_tls_socketpair),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
