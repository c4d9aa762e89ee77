/* Test helpers for connections and servers (tests/transports/test_server.c,
 * test_connect.c, test_emfile.c): a fixture with recorders for servers and clients, a
 * connect completion recorder, listening servers on loopback port 0 with the port read
 * back, and small socket utilities. Include after support.h. */
#ifndef TIDE_TEST_NET_H
#define TIDE_TEST_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "tide.h"
#include "support/support.h"

/* Records a tide_connect_cb: how often it ran, with what, and whether connection_made
 * had already run on the (ts_recorder) protocol when it did. */
typedef struct nt_conn nt_conn;
struct nt_conn {
    int calls;
    int status;
    tide_transport_t *transport;
    tide_protocol_t *protocol;
    int made_before_cb; /* the recorder's made count seen inside the callback */
    ts_recorder_pool pool; /* the factory's pool when nt_connect* made the request */
    void (*then)(nt_conn *c); /* optional: runs at the end of the callback */
};

void nt_conn_cb(tide_loop_t *loop, int status, tide_transport_t *transport,
                tide_protocol_t *protocol, void *arg);
bool nt_pred_conn(void *conn); /* calls > 0 */

/* Connects to host:port with recorder r as the protocol; returns the request. The
 * callback has not run yet (asserted). */
tide_connect_t *nt_connect(tide_loop_t *loop, const char *host, uint16_t port,
                           const tide_connect_options_t *opts, ts_recorder *r, nt_conn *c);
/* The same through tide_loop_create_unix_connection; *req receives the request unless
 * req is NULL. */
void nt_connect_unix(tide_loop_t *loop, const char *path, ts_recorder *r, nt_conn *c,
                     tide_connect_t **req);
/* nt_connect, then runs until the callback and asserts success and order. */
void nt_connect_ok(tide_loop_t *loop, const char *host, uint16_t port, ts_recorder *r,
                   nt_conn *c);
/* Wraps fd with recorder r through tide_loop_connect_socket (accepted: through
 * connect_accepted_socket) and returns what that returned. On success the callback
 * and connection_made have not run yet (asserted). */
int nt_adopt(tide_loop_t *loop, int fd, bool accepted, ts_recorder *r, nt_conn *c);

/* A server on host (NULL: every interface) port 0, handing out the pool's recorders;
 * fails the test when it cannot be made. */
tide_server_t *nt_server(tide_loop_t *loop, const char *host, ts_recorder_pool *pool,
                         const tide_server_options_t *opts);
/* The port of listening socket i. */
uint16_t nt_server_port(const tide_server_t *s, size_t i);
/* Asserts that listening socket 0, formatted by tide_format_address, reads `text`. */
void nt_expect_server_address(const tide_server_t *s, const char *text);
uint16_t nt_addr_port(const struct sockaddr *addr);

/* A fake name for tests that need several addresses (happy eyeballs, duplicate
 * binds): executables that link this file resolve NT_FAKE_NAME to the addresses set
 * here, in order, through an interposed getaddrinfo(); every other name goes to the
 * real resolver. Literal lookups (AI_NUMERICHOST) of it fail, as for a real name. */
#define NT_FAKE_NAME "multi.test"
void nt_fake_clear(void);
/* Sets entry i (0..3) to ip:port of the family (AF_INET or AF_INET6). */
void nt_fake_set(int i, int family, const char *ip, uint16_t port);

/* Captures the loop's log: messages stop reaching stderr and the first warning
 * that contains `needle` is copied into nt_log_text (cleared here). */
extern char nt_log_text[256];
void nt_capture_log(tide_loop_t *loop, const char *needle);

/* True when ::1 can be bound on this machine. */
bool nt_ipv6_available(void);

/* Runs the loop for `seconds` (not scaled): used to show that something does NOT
 * happen within a reasonable time. */
void nt_run_for(tide_loop_t *loop, double seconds);

/* A blocking TCP client connected to 127.0.0.1:port (waiting in the backlog until the
 * server accepts). */
int nt_raw_client(uint16_t port);

/* A port on 127.0.0.1 that refuses connections: a socket bound there without
 * listening (kept open by the caller in *fd, so nobody else takes the port). */
uint16_t nt_refusing_port(int *fd);

/* A listener on 127.0.0.1 whose accept queue is full, so further connects to its
 * port stay pending (the SYNs are dropped). *fds receives the listener and the
 * connections that fill it (*n of them, at most 8); close them with nt_close_all. */
uint16_t nt_blackhole(int fds[8], int *n);
void nt_close_all(int *fds, int n);

/* ---- the fixture -------------------------------------------------------------------- */

#define NT_MAX 8

/* The cmocka state of the connection and server tests: recorders srv[] for the server
 * sides (handed out in order by pool), cli[] and conn[] for the clients. */
typedef struct nt_fixture {
    tide_loop_t *loop;
    int fds_before;
    char dir[64]; /* a fresh temporary directory; it must be empty again at the end */
    ts_recorder srv[NT_MAX];
    ts_recorder cli[NT_MAX];
    nt_conn conn[NT_MAX];
    ts_recorder_pool pool;
    tide_server_t *server; /* made by nt_listen (or the test) */
    uint16_t port;
} nt_fixture;

/* A loop, the recorders, the temporary directory, and the fake name cleared. */
int nt_setup(void **state);
/* ts_finish (clean close, no descriptor leaked), the directory removed (so it must be
 * empty), and no recorder saw an order violation. */
int nt_teardown(void **state);
#define NT_TEST(fn) cmocka_unit_test_setup_teardown(fn, nt_setup, nt_teardown)

/* f->server on 127.0.0.1 port 0, and f->port. */
void nt_listen(nt_fixture *f, const tide_server_options_t *opts);
/* f->server on the Unix socket path (or abstract @name). */
void nt_listen_unix(nt_fixture *f, const char *path);
/* Client i connects to f->port (its callback succeeds once the kernel completed the
 * handshake, whether or not the server accepted yet). */
void nt_connect_client(nt_fixture *f, int i);
/* Client i closes; runs until its connection_lost. */
void nt_close_client(nt_fixture *f, int i);

#endif
