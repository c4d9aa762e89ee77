/* A TLS server under clients that connect and say nothing: such a client costs little
 * (its TLS context gets its record buffers only when its first bytes come), a server
 * caps the handshakes in progress (max_handshakes: further clients wait unaccepted),
 * and its own handshake deadline (tls_handshake_timeout) ends the silent ones. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <malloc.h>
#include <stdio.h>
#include <unistd.h>

#include "support/net.h"
#include "support/support.h"
#include "support/tls.h"

#define SILENT 200

static bool pred_clients(void *arg) {
    nt_fixture *f = arg;
    return tide_server_client_count(f->server) == (size_t)(uintptr_t)f->srv[NT_MAX - 1].user;
}

/* Runs until the server holds exactly n clients. */
static void run_until_clients(nt_fixture *f, size_t n, double seconds) {
    f->srv[NT_MAX - 1].user = (void *)(uintptr_t)n;
    ts_run_until(f->loop, pred_clients, f, seconds);
}

static void listen_tls(nt_fixture *f, tide_server_options_t *o) {
    o->tls = tt_server_config(NULL, NULL, 10);
    nt_listen(f, o);
    tide_tls_config_unref(o->tls);
}

static void server_closed(tide_server_t *s, int status, void *arg) {
    (void)s;
    (void)status;
    *(int *)arg = 1;
}

static void close_server(nt_fixture *f) {
    int closed = 0;
    assert_int_equal(tide_server_wait_closed(f->server, 0, server_closed, &closed), 0);
    tide_server_close(f->server);
    ts_run_until_flag(f->loop, &closed, 10);
}

/* 200 TCP clients that never send a ClientHello: heap per client well under 4 KiB
 * (it was about 37 KiB with the TLS context set up at accept). */
static void test_silent_clients_are_cheap(void **state) {
    nt_fixture *f = *state;
    tide_server_options_t o = {0};
    listen_tls(f, &o);
    static int fds[SILENT];
    size_t before = mallinfo2().uordblks;
    for (int i = 0; i < SILENT; i++) {
        fds[i] = nt_raw_client(f->port);
        ts_spin(f->loop, 2); /* accept as they come: the backlog is smaller */
    }
    run_until_clients(f, SILENT, 10);
    size_t per_client = (mallinfo2().uordblks - before) / SILENT;
    print_message("heap per silent TLS client: %zu bytes\n", per_client);
#if !defined(TS_ASAN)
    assert_true(per_client < 4096);
#endif
    for (int i = 0; i < SILENT; i++)
        close(fds[i]);
    run_until_clients(f, 0, 10);
    close_server(f);
}

/* With max_handshakes 1, a silent client holds the only slot: a real TLS client's
 * handshake cannot start (it is not even accepted) until the silent one leaves. */
static void test_max_handshakes(void **state) {
    nt_fixture *f = *state;
    tide_server_options_t o = {.max_handshakes = 1};
    listen_tls(f, &o);
    int silent = nt_raw_client(f->port);
    run_until_clients(f, 1, 5);
    tide_tls_config_t *ccfg = tt_client_config(NULL, 10);
    tide_connect_options_t co = {.tls = ccfg, .server_hostname = "localhost"};
    nt_connect(f->loop, "127.0.0.1", f->port, &co, &f->cli[0], &f->conn[0]);
    tide_tls_config_unref(ccfg);
    nt_run_for(f->loop, 0.3);
    assert_int_equal(f->conn[0].calls, 0);
    assert_int_equal(tide_server_client_count(f->server), 1);
    close(silent);
    ts_run_until(f->loop, nt_pred_conn, &f->conn[0], 10);
    assert_int_equal(f->conn[0].status, 0);
    ts_run_until(f->loop, ts_pred_made, &f->srv[0], 5);
    nt_close_client(f, 0);
    ts_run_until(f->loop, ts_pred_lost, &f->srv[0], 5);
    close_server(f);
}

/* The server's own handshake deadline, shorter than the configuration's 10 s: a silent
 * client is dropped after it. */
static void test_server_handshake_timeout(void **state) {
    nt_fixture *f = *state;
    tide_server_options_t o = {.tls_handshake_timeout = 0.2};
    listen_tls(f, &o);
    int silent = nt_raw_client(f->port);
    run_until_clients(f, 1, 5);
    run_until_clients(f, 0, 5);
    char byte;
    ssize_t n = read(silent, &byte, 1); /* the server closed it: EOF or a reset */
    assert_true(n <= 0);
    close(silent);
    close_server(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        NT_TEST(test_silent_clients_are_cheap),
        NT_TEST(test_max_handshakes),
        NT_TEST(test_server_handshake_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
