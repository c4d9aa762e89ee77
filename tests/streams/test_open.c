/* Opening streams over real sockets: streams over both ends of a socketpair,
 * open_connection / start_server on 127.0.0.1 port 0 (an echo of 10 MiB with
 * checksums, several clients at once, half-close), the Unix variants, and the failure
 * paths (bad arguments, refused, cancelled) leaving nothing open. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support/support.h"
#include "support/streams.h"

/* ---- helpers ------------------------------------------------------------------------------- */

/* Records an open completion. */
typedef struct opened {
    int calls;
    int status;
    tide_reader_t *r;
    tide_writer_t *w;
} opened;

static void on_open(tide_loop_t *loop, int status, tide_reader_t *r, tide_writer_t *w, void *arg) {
    (void)loop;
    opened *o = arg;
    o->calls++;
    o->status = status;
    o->r = r;
    o->w = w;
}

static bool open_done(void *arg) { return ((opened *)arg)->calls > 0; }

static void wait_open(tide_loop_t *loop, opened *o, int status) {
    ts_run_until(loop, open_done, o, 10);
    assert_int_equal(o->calls, 1);
    assert_int_equal(o->status, status);
    if (status == 0) {
        assert_non_null(o->r);
        assert_ptr_equal(tide_writer_get_reader(o->w), o->r);
    } else {
        assert_null(o->r);
        assert_null(o->w);
    }
}

/* Closes a stream and waits until its connection is gone. */
static void close_and_wait(tide_loop_t *loop, tide_writer_t *w, int status) {
    st_wr closed = {0};
    tide_writer_close(w);
    assert_int_equal(tide_writer_wait_closed(w, st_wr_cb, &closed), 0);
    ts_run_until(loop, st_wr_done, &closed, 10);
    assert_int_equal(closed.status, status);
}

static uint16_t server_port(tide_server_t *s) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    assert_int_equal(tide_server_get_sockname(s, 0, (struct sockaddr *)&ss, &len), 0);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void server_closed(tide_server_t *s, int status, void *arg) {
    (void)s;
    st_wr *x = arg;
    x->calls++;
    x->status = status;
}

/* Closes the server and waits until it is closed with no client left. */
static void close_server(tide_loop_t *loop, tide_server_t *s) {
    st_wr done = {0};
    tide_server_close(s);
    assert_int_equal(tide_server_wait_closed(s, 0, server_closed, &done), 0);
    ts_run_until(loop, st_wr_done, &done, 10);
    assert_int_equal(done.status, 0);
}

static void finish(tide_loop_t *loop, int fds_before) {
    st_spin(loop, 3);
    ts_loop_close(loop);
    assert_int_equal(ts_count_fds(), fds_before);
}

/* ---- arguments ------------------------------------------------------------------------------- */

static void noop_client(tide_reader_t *r, tide_writer_t *w, void *arg) {
    (void)r;
    (void)arg;
    tide_writer_close(w);
}

static void test_invalid_arguments(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    opened o = {0};
    tide_server_t *s = NULL;
    assert_int_equal(tide_loop_open_connection(loop, "127.0.0.1", 1, 0, NULL, on_open, &o, NULL),
                     TIDE_EINVAL);
    assert_int_equal(tide_loop_open_connection(loop, "127.0.0.1", 1, 10, NULL, NULL, &o, NULL),
                     TIDE_EINVAL);
    assert_int_equal(tide_loop_open_connection(NULL, "127.0.0.1", 1, 10, NULL, on_open, &o, NULL),
                     TIDE_EINVAL);
    assert_int_equal(tide_loop_open_connection(loop, NULL, 1, 10, NULL, on_open, &o, NULL),
                     TIDE_EINVAL);
    assert_int_equal(tide_loop_open_unix_connection(loop, "/nonexistent", 0, NULL, on_open, &o, NULL),
                     TIDE_EINVAL);
    assert_int_equal(tide_loop_open_socket(loop, 0, 0, NULL, on_open, &o), TIDE_EINVAL);
    assert_int_equal(tide_loop_open_accepted_socket(loop, -1, 10, NULL, on_open, &o), TIDE_EINVAL);
    assert_int_equal(tide_loop_start_server(loop, "127.0.0.1", 0, 0, NULL, noop_client, NULL, &s),
                     TIDE_EINVAL);
    assert_int_equal(tide_loop_start_server(loop, "127.0.0.1", 0, 10, NULL, NULL, NULL, &s),
                     TIDE_EINVAL);
    assert_int_equal(tide_loop_start_unix_server(loop, "/tmp/x", 0, NULL, noop_client, NULL, &s),
                     TIDE_EINVAL);
    assert_null(s);
    st_spin(loop, 3);
    assert_int_equal(o.calls, 0);
    ts_loop_close(loop);
}

/* ---- socketpair ------------------------------------------------------------------------------ */

/* Streams on both ends of a new socketpair (b as the accepted side when asked), each
 * opened on a later iteration, never inside the call. */
static void socketpair_streams(tide_loop_t *loop, size_t limit_a, size_t limit_b, bool b_accepted,
                               int sv[2], opened *a, opened *b) {
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    *a = (opened){0};
    *b = (opened){0};
    assert_int_equal(tide_loop_open_socket(loop, sv[0], limit_a, NULL, on_open, a), 0);
    if (b_accepted)
        assert_int_equal(tide_loop_open_accepted_socket(loop, sv[1], limit_b, NULL, on_open, b), 0);
    else
        assert_int_equal(tide_loop_open_socket(loop, sv[1], limit_b, NULL, on_open, b), 0);
    assert_int_equal(a->calls + b->calls, 0);
    wait_open(loop, a, 0);
    wait_open(loop, b, 0);
}

static void test_socketpair_streams(void **state) {
    (void)state;
    int before = ts_count_fds();
    tide_loop_t *loop = ts_loop_new();
    int sv[2];
    opened a, b;
    socketpair_streams(loop, 16, 16, true, sv, &a, &b);
    assert_false(tide_writer_is_server_side(a.w));
    assert_true(tide_writer_is_server_side(b.w));
    assert_int_equal(tide_reader_get_limit(a.r), 16);
    assert_string_equal(tide_transport_kind(tide_writer_get_transport(a.w)), "unix");
    assert_int_equal(tide_transport_get_fd(tide_writer_get_transport(a.w)), sv[0]);

    st_rd x = {0};
    assert_int_equal(tide_writer_write(a.w, "hello\nworld\n", 12), 0);
    assert_int_equal(tide_reader_readline(b.r, st_rd_cb, &x), 0);
    st_expect(loop, &x, 0, "hello\n");
    assert_int_equal(tide_reader_readline(b.r, st_rd_cb, &x), 0);
    st_expect(loop, &x, 0, "world\n");

    /* The limit holds over a socket too: an over-long line is reported, kept whole. */
    assert_int_equal(tide_writer_write(a.w, "0123456789abcdefg\n", 18), 0);
    st_wait_buffered(loop, b.r, 18);
    assert_int_equal(tide_reader_readline(b.r, st_rd_cb, &x), 0);
    ts_run_until(loop, st_rd_done, &x, 5);
    assert_int_equal(x.status, TIDE_ELIMIT);
    assert_int_equal(x.len, 18);
    st_rd_reset(&x);
    assert_int_equal(tide_reader_readexactly(b.r, 18, st_rd_cb, &x), 0);
    st_expect(loop, &x, 0, "0123456789abcdefg\n");

    /* Half-close: b sees EOF and still answers. */
    assert_int_equal(tide_writer_write_eof(a.w), 0);
    assert_int_equal(tide_reader_read(b.r, TIDE_READ_ALL, st_rd_cb, &x), 0);
    st_expect(loop, &x, 0, NULL);
    assert_true(tide_reader_at_eof(b.r));
    assert_int_equal(tide_writer_write(b.w, "answer", 6), 0);
    assert_int_equal(tide_reader_read(a.r, 100, st_rd_cb, &x), 0);
    st_expect(loop, &x, 0, "answer");
    close_and_wait(loop, b.w, 0);
    assert_int_equal(tide_reader_read(a.r, 100, st_rd_cb, &x), 0);
    st_expect(loop, &x, TIDE_EOF, NULL);
    close_and_wait(loop, a.w, 0);
    finish(loop, before);
}

/* Read flow control over a real socket: reading pauses above 2 x limit and holds
 * there (nothing more is read while paused), and consuming resumes it. */
static void test_socket_flow_control(void **state) {
    (void)state;
    int before = ts_count_fds();
    tide_loop_t *loop = ts_loop_new();
    int sv[2];
    opened a, b;
    socketpair_streams(loop, 64, 1000, false, sv, &a, &b);
    tide_transport_t *tb = tide_writer_get_transport(b.w);
    enum { TOTAL = 100000 };
    static unsigned char data[TOTAL];
    for (size_t i = 0; i < TOTAL; i++)
        data[i] = (unsigned char)(i * 13 + 1);
    assert_int_equal(tide_writer_write(a.w, data, TOTAL), 0);
    st_wait_buffered(loop, b.r, 2001);
    assert_false(tide_transport_is_reading(tb));
    size_t held = tide_reader_buffered(b.r);
    st_spin(loop, 5);
    assert_int_equal(tide_reader_buffered(b.r), held);
    /* Read it all back in small pieces: each wait resumes reading as needed. */
    size_t got = 0;
    st_rd x = {0};
    while (got < TOTAL) {
        assert_int_equal(tide_reader_read(b.r, 700, st_rd_cb, &x), 0);
        ts_run_until(loop, st_rd_done, &x, 5);
        assert_int_equal(x.status, 0);
        assert_true(x.len > 0 && x.len <= 700);
        assert_memory_equal(x.buf, data + got, x.len);
        got += x.len;
        st_rd_reset(&x);
        /* Never far above the pause threshold: at most one read beyond it. */
        assert_true(tide_reader_buffered(b.r) <= 2000 + 256 * 1024);
    }
    assert_int_equal(got, TOTAL);
    assert_true(tide_transport_is_reading(tb));
    close_and_wait(loop, a.w, 0);
    close_and_wait(loop, b.w, 0);
    finish(loop, before);
}

/* ---- TCP: echo server ------------------------------------------------------------------------ */

#define ECHO_TOTAL ((size_t)10 * 1024 * 1024)
#define ECHO_CHUNK ((size_t)256 * 1024)

/* The server side of one connection: read, write back, drain, repeat; close at EOF. */
typedef struct echo_conn {
    tide_reader_t *r;
    tide_writer_t *w;
    st_wr closed;
    int *live; /* the server's count of open connections */
} echo_conn;

static void echo_read(tide_reader_t *r, int status, const void *data, size_t len, void *arg);

static void echo_drained(tide_writer_t *w, int status, void *arg) {
    echo_conn *e = arg;
    if (status != 0) {
        tide_writer_close(w);
        return;
    }
    assert_int_equal(tide_reader_read(e->r, 65536, echo_read, e), 0);
}

static void echo_read(tide_reader_t *r, int status, const void *data, size_t len, void *arg) {
    (void)r;
    echo_conn *e = arg;
    if (status != 0) {
        /* EOF (or an error): everything was echoed and drained; close. */
        tide_writer_close(e->w);
        return;
    }
    assert_int_equal(tide_writer_write(e->w, data, len), 0);
    assert_int_equal(tide_writer_drain(e->w, echo_drained, e), 0);
}

static void echo_closed(tide_writer_t *w, int status, void *arg) {
    (void)w;
    echo_conn *e = arg;
    assert_int_equal(status, 0);
    (*e->live)--;
    free(e);
}

static void echo_client_connected(tide_reader_t *r, tide_writer_t *w, void *arg) {
    assert_true(tide_writer_is_server_side(w));
    echo_conn *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    e->r = r;
    e->w = w;
    e->live = arg;
    (*e->live)++;
    assert_int_equal(tide_writer_wait_closed(w, echo_closed, e), 0);
    assert_int_equal(tide_reader_read(r, 65536, echo_read, e), 0);
}

/* The client: writes the pattern in chunks (draining after each), reads the echo
 * concurrently, and checks sizes and checksums. */
typedef struct echo_client {
    tide_reader_t *r;
    tide_writer_t *w;
    size_t sent, received;
    uint64_t sum_sent, sum_received;
    bool eof;
    int read_status;
    unsigned char *chunk;
} echo_client;

static void pattern(unsigned char *buf, size_t len, size_t offset) {
    for (size_t i = 0; i < len; i++) {
        size_t k = offset + i;
        buf[i] = (unsigned char)(k * 131u + (k >> 11));
    }
}

static void client_write_next(echo_client *c);

static void client_drained(tide_writer_t *w, int status, void *arg) {
    (void)w;
    assert_int_equal(status, 0);
    client_write_next(arg);
}

static void client_write_next(echo_client *c) {
    if (c->sent == ECHO_TOTAL) {
        assert_int_equal(tide_writer_write_eof(c->w), 0);
        return;
    }
    size_t n = ECHO_TOTAL - c->sent < ECHO_CHUNK ? ECHO_TOTAL - c->sent : ECHO_CHUNK;
    pattern(c->chunk, n, c->sent);
    c->sum_sent = ts_fnv1a(c->chunk, n, c->sum_sent);
    assert_int_equal(tide_writer_write(c->w, c->chunk, n), 0);
    c->sent += n;
    assert_int_equal(tide_writer_drain(c->w, client_drained, c), 0);
}

static void client_read(tide_reader_t *r, int status, const void *data, size_t len, void *arg) {
    echo_client *c = arg;
    if (status != 0) {
        c->eof = true;
        c->read_status = status;
        return;
    }
    c->sum_received = ts_fnv1a(data, len, c->sum_received);
    c->received += len;
    assert_int_equal(tide_reader_read(r, 100000, client_read, c), 0);
}

static bool client_eof(void *arg) { return ((echo_client *)arg)->eof; }
static bool no_live(void *arg) { return *(int *)arg == 0; }

static void test_tcp_echo_10mib(void **state) {
    (void)state;
    int before = ts_count_fds();
    tide_loop_t *loop = ts_loop_new();
    int live = 0;
    tide_server_t *server = NULL;
    assert_int_equal(tide_loop_start_server(loop, "127.0.0.1", 0, TIDE_STREAM_DEFAULT_LIMIT, NULL,
                                            echo_client_connected, &live, &server),
                     0);
    uint16_t port = server_port(server);
    assert_true(port != 0);

    opened o = {0};
    assert_int_equal(tide_loop_open_connection(loop, "127.0.0.1", port, TIDE_STREAM_DEFAULT_LIMIT,
                                               NULL, on_open, &o, NULL),
                     0);
    wait_open(loop, &o, 0);
    assert_string_equal(tide_transport_kind(tide_writer_get_transport(o.w)), "tcp");
    echo_client c = {.r = o.r, .w = o.w, .sum_sent = TS_FNV_SEED, .sum_received = TS_FNV_SEED};
    c.chunk = malloc(ECHO_CHUNK);
    assert_non_null(c.chunk);
    assert_int_equal(tide_reader_read(c.r, 100000, client_read, &c), 0);
    client_write_next(&c);
    ts_run_until(loop, client_eof, &c, 60);
    assert_int_equal(c.read_status, TIDE_EOF);
    assert_int_equal(c.sent, ECHO_TOTAL);
    assert_int_equal(c.received, ECHO_TOTAL);
    assert_true(c.sum_sent == c.sum_received);
    free(c.chunk);

    close_and_wait(loop, o.w, 0);
    ts_run_until(loop, no_live, &live, 10);
    close_server(loop, server);
    finish(loop, before);
}

/* ---- TCP: several clients, a line protocol -----------------------------------------------------
 */

#define NCLIENTS 5

static void upper_line(tide_reader_t *r, int status, const void *data, size_t len, void *arg) {
    (void)arg;
    tide_writer_t *w = tide_reader_get_writer(r);
    if (status == 0) {
        char out[64];
        assert_true(len < sizeof(out));
        for (size_t i = 0; i < len; i++)
            out[i] = (char)((((const char *)data)[i] >= 'a' && ((const char *)data)[i] <= 'z')
                                ? ((const char *)data)[i] - 32
                                : ((const char *)data)[i]);
        assert_int_equal(tide_writer_write(w, out, len), 0);
        assert_int_equal(tide_reader_readline(r, upper_line, NULL), 0);
        return;
    }
    assert_int_equal(status, TIDE_EOF);
    tide_writer_close(w);
}

static void upper_client_connected(tide_reader_t *r, tide_writer_t *w, void *arg) {
    (void)w;
    (*(int *)arg)++;
    assert_int_equal(tide_reader_readline(r, upper_line, NULL), 0);
}

typedef struct many {
    opened o[NCLIENTS];
} many;

static bool all_open(void *arg) {
    many *m = arg;
    for (int i = 0; i < NCLIENTS; i++)
        if (m->o[i].calls == 0)
            return false;
    return true;
}

static void test_tcp_many_clients(void **state) {
    (void)state;
    int before = ts_count_fds();
    tide_loop_t *loop = ts_loop_new();
    int accepted = 0;
    tide_server_t *server = NULL;
    assert_int_equal(tide_loop_start_server(loop, "127.0.0.1", 0, 64, NULL, upper_client_connected,
                                            &accepted, &server),
                     0);
    uint16_t port = server_port(server);
    many m;
    memset(&m, 0, sizeof(m));
    for (int i = 0; i < NCLIENTS; i++)
        assert_int_equal(
            tide_loop_open_connection(loop, "127.0.0.1", port, 64, NULL, on_open, &m.o[i], NULL),
            0);
    ts_run_until(loop, all_open, &m, 10);
    st_rd x[NCLIENTS];
    memset(x, 0, sizeof(x));
    for (int i = 0; i < NCLIENTS; i++) {
        char line[32];
        int n = snprintf(line, sizeof(line), "client %d\n", i);
        assert_int_equal(m.o[i].status, 0);
        assert_int_equal(tide_writer_write(m.o[i].w, line, (size_t)n), 0);
        assert_int_equal(tide_reader_readline(m.o[i].r, st_rd_cb, &x[i]), 0);
    }
    for (int i = 0; i < NCLIENTS; i++) {
        char line[32];
        snprintf(line, sizeof(line), "CLIENT %d\n", i);
        st_expect(loop, &x[i], 0, line);
    }
    assert_int_equal(accepted, NCLIENTS);
    assert_int_equal(tide_server_client_count(server), NCLIENTS);
    /* Each client half-closes; the server closes at EOF; the client sees its end. */
    for (int i = 0; i < NCLIENTS; i++) {
        assert_int_equal(tide_writer_write_eof(m.o[i].w), 0);
        assert_int_equal(tide_reader_read(m.o[i].r, TIDE_READ_ALL, st_rd_cb, &x[i]), 0);
    }
    for (int i = 0; i < NCLIENTS; i++) {
        st_expect(loop, &x[i], 0, NULL);
        close_and_wait(loop, m.o[i].w, 0);
    }
    close_server(loop, server);
    finish(loop, before);
}

/* ---- Unix sockets ---------------------------------------------------------------------------- */

static void test_unix_streams(void **state) {
    (void)state;
    int before = ts_count_fds();
    tide_loop_t *loop = ts_loop_new();
    char dir[] = "/tmp/tide-streams-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/s.sock", dir);
    int accepted = 0;
    tide_server_t *server = NULL;
    assert_int_equal(tide_loop_start_unix_server(loop, path, 64, NULL, upper_client_connected,
                                                 &accepted, &server),
                     0);
    opened o = {0};
    assert_int_equal(tide_loop_open_unix_connection(loop, path, 64, NULL, on_open, &o, NULL), 0);
    wait_open(loop, &o, 0);
    assert_string_equal(tide_transport_kind(tide_writer_get_transport(o.w)), "unix");
    st_rd x = {0};
    assert_int_equal(tide_writer_write(o.w, "over unix\n", 10), 0);
    assert_int_equal(tide_reader_readline(o.r, st_rd_cb, &x), 0);
    st_expect(loop, &x, 0, "OVER UNIX\n");
    assert_int_equal(accepted, 1);
    close_and_wait(loop, o.w, 0);
    close_server(loop, server);
    finish(loop, before);
    unlink(path);
    assert_int_equal(rmdir(dir), 0);
}

/* ---- failures -------------------------------------------------------------------------------- */

/* A port on 127.0.0.1 that refuses connections: bound, not listening (kept open). */
static uint16_t refusing_port(int *fd) {
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(*fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(*fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(*fd, (struct sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

static void test_open_refused(void **state) {
    (void)state;
    int before = ts_count_fds();
    tide_loop_t *loop = ts_loop_new();
    int fd;
    uint16_t port = refusing_port(&fd);
    opened o = {0};
    assert_int_equal(
        tide_loop_open_connection(loop, "127.0.0.1", port, 64, NULL, on_open, &o, NULL), 0);
    wait_open(loop, &o, TIDE_ECONNREFUSED);
    close(fd);
    opened u = {0};
    assert_int_equal(
        tide_loop_open_unix_connection(loop, "/nonexistent/tide.sock", 64, NULL, on_open, &u, NULL), 0);
    wait_open(loop, &u, TIDE_ENOENT);
    finish(loop, before);
}

static void test_open_cancelled(void **state) {
    (void)state;
    int before = ts_count_fds();
    tide_loop_t *loop = ts_loop_new();
    tide_server_t *server = NULL;
    int accepted = 0;
    assert_int_equal(tide_loop_start_server(loop, "127.0.0.1", 0, 64, NULL, upper_client_connected,
                                            &accepted, &server),
                     0);
    opened o = {0};
    tide_connect_t *req = NULL;
    assert_int_equal(tide_loop_open_connection(loop, "127.0.0.1", server_port(server), 64, NULL,
                                               on_open, &o, &req),
                     0);
    assert_non_null(req);
    tide_connect_cancel(req);
    wait_open(loop, &o, TIDE_ECANCELLED);
    close_server(loop, server);
    finish(loop, before);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invalid_arguments),   cmocka_unit_test(test_socketpair_streams),
        cmocka_unit_test(test_socket_flow_control), cmocka_unit_test(test_tcp_echo_10mib),
        cmocka_unit_test(test_tcp_many_clients),    cmocka_unit_test(test_unix_streams),
        cmocka_unit_test(test_open_refused),        cmocka_unit_test(test_open_cancelled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
