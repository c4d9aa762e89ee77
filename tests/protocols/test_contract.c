/* The protocol/transport contract (DESIGN.md "Contracts users rely on", asyncio.md
 * 2.6 and checklist 10), stamped onto every stream transport: the in-memory pair,
 * a socketpair, TCP over 127.0.0.1, a Unix socket bound to a path, and TLS over TCP,
 * a socketpair and a Unix socket. Each case runs once per kind, as its own cmocka group,
 * against the same fixture:
 *
 *   fx_init    a loop and two recording protocols: a (client side) and b (server
 *              side), with the fixture's hooks installed;
 *   fx_connect the kind's way of connecting them (memory pair, connect_socket on both
 *              ends, or a server on port 0 / a temporary path plus a connect), run
 *              until both connection_made ran; the server is closed at once, its
 *              client stays;
 *   fx_finish  run until both connection_lost ran, then assert: no order violations,
 *              no callback (other than pause_writing) ran inside a transport call the
 *              test made, the loop closes cleanly, no descriptor leaked.
 *
 * Where the kinds legitimately differ it is spelled out: after an abort, the memory
 * peer sees a reset (TIDE_ECONNRESET, no EOF) while a socket peer usually sees EOF
 * (an abort closes the descriptor; the kernel sends FIN, or RST with unread input),
 * and a TLS peer sees truncation (no close_notify came). TLS has no half-close: the
 * cases built on write_eof are skipped there, and close is what the peer sees as EOF
 * (close_notify). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "support/support.h"
#include "support/tls.h"

/* ---- the fixture ------------------------------------------------------------------ */

typedef struct fx fx;

typedef struct kind {
    const char *name;
    const char *transport_kind; /* what tide_transport_kind reports */
    bool memory;
    bool tls;
    void (*connect)(fx *f);
} kind;

/* Per-side test hooks, called after the fixture's own checks. */
typedef struct side_hooks {
    void (*made)(fx *f, int side);
    void (*data)(fx *f, int side, size_t len);
    bool (*eof)(fx *f, int side); /* NULL: the recorder's keep_open_on_eof */
    void (*lost)(fx *f, int side, int status);
    void (*pause)(fx *f, int side);
    void (*resume)(fx *f, int side);
} side_hooks;

struct fx {
    const kind *k;
    tide_loop_t *loop;
    int fds_before;
    ts_recorder *r[2]; /* 0: a, the client side; 1: b, the server side */
    ts_recorder store[2];
    bool heap[2];      /* r[i] was malloc'ed (the free-in-lost case) */
    side_hooks hooks[2];
    /* What the fixture saw, kept outside the recorders so it survives their freeing. */
    int made[2], lost[2], status[2], data_calls[2];
    /* Set around every transport call the test makes; callbacks check it. */
    int in_call;
    int sync_violations;
    int freed_violations; /* order violations of recorders freed in connection_lost */
    int pause_in_call, pause_size_ok, resume_size_ok;
    /* Connecting. */
    tide_server_t *server;
    bool server_waiting;
    ts_recorder_pool pool[2];
    int connects_done, connects_wanted, connect_status;
    char dir[64], path[128];
    /* Bytes written by the fill helpers: the pattern's next offset. */
    uint64_t sent;
    const struct inside_case *inside; /* the row case_inside runs */
};

static fx *fx_of(ts_recorder *r) { return r->user; }
static int side_of(ts_recorder *r) { return fx_of(r)->r[0] == r ? 0 : 1; }
static tide_transport_t *T(fx *f, int side) { return f->r[side]->transport; }

static void check_async(fx *f) {
    if (f->in_call)
        f->sync_violations++;
}

static void h_made(ts_recorder *r) {
    fx *f = fx_of(r);
    int i = side_of(r);
    check_async(f);
    f->made[i]++;
    if (f->hooks[i].made)
        f->hooks[i].made(f, i);
}

static void h_data(ts_recorder *r, const void *data, size_t len) {
    (void)data;
    fx *f = fx_of(r);
    int i = side_of(r);
    check_async(f);
    f->data_calls[i]++;
    if (f->hooks[i].data)
        f->hooks[i].data(f, i, len);
}

static bool h_eof(ts_recorder *r) {
    fx *f = fx_of(r);
    int i = side_of(r);
    check_async(f);
    if (f->hooks[i].eof)
        return f->hooks[i].eof(f, i);
    return r->keep_open_on_eof;
}

static void h_lost(ts_recorder *r, int status) {
    fx *f = fx_of(r);
    int i = side_of(r);
    check_async(f);
    f->lost[i]++;
    f->status[i] = status;
    if (f->hooks[i].lost)
        f->hooks[i].lost(f, i, status); /* may free the recorder */
}

static void h_pause(ts_recorder *r) {
    fx *f = fx_of(r);
    int i = side_of(r);
    /* The one callback that runs inside write: note it, and whether the queue is
     * really above the high-water mark. */
    if (f->in_call)
        f->pause_in_call++;
    size_t low, high;
    tide_transport_get_write_buffer_limits(r->transport, &low, &high);
    if (tide_transport_get_write_buffer_size(r->transport) > high)
        f->pause_size_ok++;
    if (f->hooks[i].pause)
        f->hooks[i].pause(f, i);
}

static void h_resume(ts_recorder *r) {
    fx *f = fx_of(r);
    int i = side_of(r);
    check_async(f);
    size_t low, high;
    tide_transport_get_write_buffer_limits(r->transport, &low, &high);
    if (tide_transport_get_write_buffer_size(r->transport) <= low)
        f->resume_size_ok++;
    if (f->hooks[i].resume)
        f->hooks[i].resume(f, i);
}

static void install(fx *f, int i) {
    ts_recorder *r = f->r[i];
    r->user = f;
    r->on_made = h_made;
    r->on_data = h_data;
    r->on_eof = h_eof;
    r->on_lost = h_lost;
    r->on_pause = h_pause;
    r->on_resume = h_resume;
}

/* A recorder for side i: plain or buffered, in the fixture or on the heap. */
static void fx_side(fx *f, int i, bool buffered, bool on_heap) {
    ts_recorder *r = on_heap ? malloc(sizeof(*r)) : &f->store[i];
    assert_non_null(r);
    if (buffered)
        ts_recorder_init_buffered(r);
    else
        ts_recorder_init(r);
    f->r[i] = r;
    f->heap[i] = on_heap;
    install(f, i);
}

static void fx_init(fx *f, const kind *k) {
    memset(f, 0, sizeof(*f));
    f->k = k;
    f->fds_before = ts_count_fds();
    f->loop = ts_loop_new();
    f->status[0] = f->status[1] = 1; /* "not yet" */
    fx_side(f, 0, false, false);
    fx_side(f, 1, false, false);
}

static bool connected(void *arg) {
    fx *f = arg;
    return f->made[0] && f->made[1] && f->connects_done == f->connects_wanted;
}

static void on_server_closed(tide_server_t *server, int status, void *arg) {
    (void)server;
    fx *f = arg;
    assert_int_equal(status, 0);
    f->server_waiting = false;
}

static void fx_connect(fx *f) {
    f->k->connect(f);
    ts_run_until(f->loop, connected, f, 10);
    assert_int_equal(f->connect_status, 0);
    if (f->server) {
        /* Only the connection is under test; the server goes, its client stays.
         * fx_finish waits until the server is gone too. */
        f->server_waiting = true;
        assert_int_equal(tide_server_wait_closed(f->server, 0, on_server_closed, f), 0);
        tide_server_close(f->server);
        f->server = NULL;
    }
}

static bool both_lost(void *arg) {
    fx *f = arg;
    return f->lost[0] && f->lost[1] && !f->server_waiting;
}

static void fx_finish(fx *f) {
    ts_run_until(f->loop, both_lost, f, 20);
    assert_int_equal(f->lost[0], 1);
    assert_int_equal(f->lost[1], 1);
    assert_int_equal(f->made[0], 1);
    assert_int_equal(f->made[1], 1);
    for (int i = 0; i < 2; i++)
        if (!f->heap[i])
            assert_int_equal(f->r[i]->violations, 0);
    assert_int_equal(f->freed_violations, 0);
    assert_int_equal(f->sync_violations, 0);
    /* Transports and servers free themselves on a deferred call: let those run. */
    for (int i = 0; i < 3; i++)
        tide_loop_run(f->loop, TIDE_RUN_NOWAIT);
    ts_loop_close(f->loop);
    f->loop = NULL;
    if (f->dir[0]) {
        unlink(f->path);
        assert_int_equal(rmdir(f->dir), 0);
    }
    assert_int_equal(ts_count_fds(), f->fds_before);
}

/* What fx_setup receives: the kind, and the row when the case is case_inside. */
typedef struct param {
    const kind *k;
    const struct inside_case *inside;
} param;

/* The cmocka fixture: *state is a param on entry, the fx afterwards. The teardown
 * frees what the recorders kept, after the case's last look at it. */
static int fx_setup(void **state) {
    const struct param *p = *state;
    fx *f = malloc(sizeof(*f));
    assert_non_null(f);
    fx_init(f, p->k);
    f->inside = p->inside;
    *state = f;
    return 0;
}

static int fx_teardown(void **state) {
    fx *f = *state;
    /* A skipped case left before connecting: its loop holds nothing. */
    if (f->loop)
        assert_int_equal(tide_loop_close(f->loop), 0);
    for (int i = 0; i < 2; i++)
        if (!f->heap[i])
            ts_recorder_free(f->r[i]);
    free(f);
    return 0;
}

/* ---- transport calls made by the test, flagged ------------------------------------ */

static int fx_write(fx *f, int side, const void *data, size_t len) {
    f->in_call++;
    int rc = tide_transport_write(T(f, side), data, len);
    f->in_call--;
    return rc;
}

static int fx_write_eof(fx *f, int side) {
    f->in_call++;
    int rc = tide_transport_write_eof(T(f, side));
    f->in_call--;
    return rc;
}

static void fx_close(fx *f, int side) {
    f->in_call++;
    tide_transport_close(T(f, side));
    f->in_call--;
}

static void fx_abort(fx *f, int side) {
    f->in_call++;
    tide_transport_abort(T(f, side));
    f->in_call--;
}

/* ---- the pattern and bulk writing ----------------------------------------------------- */

static unsigned char pattern_at(uint64_t i) { return (unsigned char)((i * 131u) ^ (i >> 11)); }

static void pattern_fill(unsigned char *buf, size_t len, uint64_t offset) {
    for (size_t i = 0; i < len; i++)
        buf[i] = pattern_at(offset + i);
}

static void assert_pattern(const unsigned char *data, size_t len, uint64_t offset) {
    for (size_t i = 0; i < len; i++)
        if (data[i] != pattern_at(offset + i))
            fail_msg("byte %zu of %zu differs", i, len);
}

#define FILL_CHUNK (64 * 1024)
#define FILL_MAX ((uint64_t)128 * 1024 * 1024)

/* Writes pattern chunks from side `side` (the peer not reading, because the loop does
 * not run) until done(f) holds or the transport refuses; fails past FILL_MAX. */
static void fx_fill(fx *f, int side, bool (*done)(fx *f)) {
    static unsigned char chunk[FILL_CHUNK];
    while (!done(f)) {
        if (f->sent >= FILL_MAX)
            fail_msg("%llu bytes written and still not done", (unsigned long long)f->sent);
        pattern_fill(chunk, sizeof(chunk), f->sent);
        int rc = fx_write(f, side, chunk, sizeof(chunk));
        if (rc != 0)
            break;
        f->sent += sizeof(chunk);
    }
}

static bool a_queued(fx *f) { return tide_transport_get_write_buffer_size(T(f, 0)) > 0; }
static bool a_paused(fx *f) { return f->r[0]->pauses > 0; }
static bool a_closing(fx *f) { return tide_transport_is_closing(T(f, 0)); }

/* ---- waiting for "nothing happened" ----------------------------------------------------- */

/* Makes sure `bytes` sent to side `side` are available to it (in the memory pair at
 * once; for sockets, in the kernel's receive queue), then runs the loop a few
 * non-blocking turns: a side that were reading would now receive them. */
static bool peer_flushed(void *arg) {
    fx *f = arg;
    return tide_transport_get_write_buffer_size(T(f, 0)) == 0 &&
           tide_transport_get_write_buffer_size(T(f, 1)) == 0;
}

static void fx_settle(fx *f, int side, size_t bytes) {
    int fd = tide_transport_get_fd(T(f, side));
    if (f->k->tls) {
        /* The TLS layer may already have taken the record off the socket (TLS 1.3 sends
         * the first data with the handshake's last flight): once nothing is queued on
         * either side, loopback has delivered it. */
        ts_run_until(f->loop, peer_flushed, f, 10);
    } else if (fd >= 0) {
        struct timespec start, now;
        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
            int avail = 0;
            assert_int_equal(ioctl(fd, FIONREAD, &avail), 0);
            if ((size_t)avail >= bytes)
                break;
            tide_loop_run(f->loop, TIDE_RUN_NOWAIT);
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - start.tv_sec > (time_t)ts_scaled(10))
                fail_msg("the kernel never had %zu bytes for side %d", bytes, side);
        }
    } else {
        assert_int_equal(fd, TIDE_ENOTSOCK);
    }
    for (int i = 0; i < 5; i++)
        tide_loop_run(f->loop, TIDE_RUN_NOWAIT);
}

typedef struct len_pred {
    fx *f;
    int side;
    size_t len;
} len_pred;

static bool has_len(void *arg) {
    len_pred *p = arg;
    return p->f->r[p->side]->len >= p->len;
}

static void run_until_len(fx *f, int side, size_t len) {
    len_pred p = {f, side, len};
    ts_run_until(f->loop, has_len, &p, 20);
}

/* The peer of an aborted transport: reset (memory), or EOF / reset (sockets). */
static void assert_reset_seen(fx *f, int side) {
    ts_recorder *r = f->r[side];
    if (f->k->tls) {
        assert_true(f->status[side] == TIDE_ETLS_TRUNCATED ||
                    f->status[side] == TIDE_ECONNRESET);
        assert_int_equal(r->eofs, 0);
    } else if (f->k->memory) {
        assert_int_equal(f->status[side], TIDE_ECONNRESET);
        assert_int_equal(r->eofs, 0);
    } else if (f->status[side] == 0) {
        assert_int_equal(r->eofs, 1);
    } else {
        assert_int_equal(f->status[side], TIDE_ECONNRESET);
    }
}

/* Statuses fx_expect does not compare as numbers (real ones are 0 or negative). */
#define ANY_STATUS 100 /* not checked */
#define PEER_RESET 101 /* the peer of an abort: assert_reset_seen */

static void expect_side(fx *f, int side, const char *events, int status) {
    if (events)
        assert_string_equal(f->r[side]->events, events);
    if (status == PEER_RESET)
        assert_reset_seen(f, side);
    else if (status != ANY_STATUS)
        assert_int_equal(f->status[side], status);
}

/* After fx_finish: each side's events (NULL: not compared) and connection_lost status. */
static void fx_expect(fx *f, const char *events0, int status0, const char *events1, int status1) {
    expect_side(f, 0, events0, status0);
    expect_side(f, 1, events1, status1);
}

/* b received pattern bytes [0, n) with min <= n <= max. */
static void expect_received(fx *f, uint64_t min, uint64_t max) {
    ts_recorder *b = f->r[1];
    assert_true(b->len >= min && b->len <= max);
    assert_pattern(b->data, b->len, 0);
}

/* ---- the kinds ------------------------------------------------------------------------ */

static void on_connected(tide_loop_t *loop, int status, tide_transport_t *t, tide_protocol_t *p,
                         void *arg) {
    (void)loop;
    (void)t;
    (void)p;
    fx *f = arg;
    f->connects_done++;
    if (status != 0)
        f->connect_status = status;
}

static void pools(fx *f) {
    for (int i = 0; i < 2; i++)
        f->pool[i] = (ts_recorder_pool){f->r[i], 1, 0};
}

static void connect_memory(fx *f) {
    assert_int_equal(tide_memory_pair_new(f->loop, &f->r[0]->base, &f->r[1]->base, NULL, NULL), 0);
}

static void connect_socketpair(fx *f) {
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pools(f);
    f->connects_wanted = 2;
    assert_int_equal(
        tide_loop_connect_socket(f->loop, sv[0], ts_recorder_factory(), &f->pool[0], NULL,
                                 on_connected, f),
        0);
    assert_int_equal(tide_loop_connect_accepted_socket(f->loop, sv[1], ts_recorder_factory(),
                                                       &f->pool[1], NULL, on_connected, f),
                     0);
}

static void connect_tcp(fx *f) {
    pools(f);
    assert_int_equal(tide_loop_create_server(f->loop, "127.0.0.1", 0, ts_recorder_factory(),
                                             &f->pool[1], NULL, &f->server),
                     0);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    assert_int_equal(tide_server_get_sockname(f->server, 0, (struct sockaddr *)&ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    uint16_t port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    assert_int_not_equal(port, 0);
    f->connects_wanted = 1;
    assert_int_equal(tide_loop_create_connection(f->loop, "127.0.0.1", port, ts_recorder_factory(),
                                                 &f->pool[0], NULL, on_connected, f, NULL),
                     0);
}

/* TLS over TCP: a TLS server, a TLS connect verifying "localhost" against the test CA. */
static void connect_tls_tcp(fx *f) {
    pools(f);
    assert_int_equal(tide_loop_create_server(f->loop, "127.0.0.1", 0, ts_recorder_factory(),
                                             &f->pool[1], tt_tls_server_options(), &f->server),
                     0);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    assert_int_equal(tide_server_get_sockname(f->server, 0, (struct sockaddr *)&ss, &len), 0);
    f->connects_wanted = 1;
    assert_int_equal(tide_loop_create_connection(f->loop, "127.0.0.1",
                                                 ntohs(((struct sockaddr_in *)&ss)->sin_port),
                                                 ts_recorder_factory(), &f->pool[0],
                                                 tt_tls_connect_options(), on_connected, f, NULL),
                     0);
}

/* TLS over a socketpair: both ends adopted with TLS options. */
static void connect_tls_socketpair(fx *f) {
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pools(f);
    f->connects_wanted = 2;
    tide_connect_options_t server = {.tls = tt_tls_server_options()->tls};
    assert_int_equal(tide_loop_connect_socket(f->loop, sv[0], ts_recorder_factory(), &f->pool[0],
                                              tt_tls_connect_options(), on_connected, f),
                     0);
    assert_int_equal(tide_loop_connect_accepted_socket(f->loop, sv[1], ts_recorder_factory(),
                                                       &f->pool[1], &server, on_connected, f),
                     0);
}

static void connect_unix_with(fx *f, const tide_server_options_t *server,
                              const tide_connect_options_t *client) {
    pools(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/tide-contract-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/sock", f->dir);
    assert_int_equal(tide_loop_create_unix_server(f->loop, f->path, ts_recorder_factory(),
                                                  &f->pool[1], server, &f->server),
                     0);
    f->connects_wanted = 1;
    assert_int_equal(tide_loop_create_unix_connection(f->loop, f->path, ts_recorder_factory(),
                                                      &f->pool[0], client, on_connected, f, NULL),
                     0);
}

static void connect_unix(fx *f) { connect_unix_with(f, NULL, NULL); }

/* TLS over a Unix socket: the name to verify comes from the options. */
static void connect_tls_unix(fx *f) {
    connect_unix_with(f, tt_tls_server_options(), tt_tls_connect_options());
}

static const kind KINDS[] = {
    {"memory", "memory", true, false, connect_memory},
    {"socketpair", "unix", false, false, connect_socketpair},
    {"tcp", "tcp", false, false, connect_tcp},
    {"unix", "unix", false, false, connect_unix},
    {"tls-tcp", "tls", false, true, connect_tls_tcp},
    {"tls-socketpair", "tls", false, true, connect_tls_socketpair},
    {"tls-unix", "tls", false, true, connect_tls_unix},
};

/* The cases built on write_eof: TLS has no half-close. */
static void needs_half_close(fx *f) {
    if (f->k->tls)
        skip();
}

/* ---- cases ------------------------------------------------------------------------------ */

/* Order: made first and once, data, EOF at most once, lost last and once; an echo
 * round trip; the kind's name; writelines concatenates. */
static void case_order_and_echo(void **state) {
    fx *f = *state;
    f->r[1]->echo = true;
    fx_connect(f);
    assert_string_equal(tide_transport_kind(T(f, 0)), f->k->transport_kind);
    assert_string_equal(tide_transport_kind(T(f, 1)), f->k->transport_kind);
    assert_true(tide_transport_is_reading(T(f, 0)));
    assert_false(tide_transport_is_closing(T(f, 0)));
    assert_int_equal(tide_transport_can_write_eof(T(f, 0)), !f->k->tls);
    assert_ptr_equal(tide_transport_get_protocol(T(f, 0)), &f->r[0]->base);
    assert_ptr_equal(tide_transport_get_loop(T(f, 1)), f->loop);
    assert_int_equal(fx_write(f, 0, "hello ", 6), 0);
    tide_iovec_t v[3] = {{"wide ", 5}, {"", 0}, {"world", 5}};
    f->in_call++;
    assert_int_equal(tide_transport_writelines(T(f, 0), v, 3), 0);
    f->in_call--;
    assert_int_equal(fx_write(f, 0, "", 0), 0); /* empty: nothing happens */
    run_until_len(f, 0, 16);
    assert_memory_equal(f->r[0]->data, "hello wide world", 16);
    assert_memory_equal(f->r[1]->data, "hello wide world", 16);
    fx_close(f, 0);
    assert_true(tide_transport_is_closing(T(f, 0)));
    assert_false(tide_transport_is_reading(T(f, 0)));
    assert_int_equal(f->lost[0], 0);
    fx_finish(f);
    fx_expect(f, "MDL", 0, "MDEL", 0);
}

/* connection_lost is never called from inside close or write, even when the write is
 * the one that finds the connection dead. */
static void case_lost_never_synchronous(void **state) {
    fx *f = *state;
    f->r[1]->keep_open_on_eof = true;
    fx_connect(f);
    fx_close(f, 0);
    assert_int_equal(f->lost[0], 0);
    ts_run_until(f->loop, ts_pred_eof, f->r[1], 10);
    ts_run_until(f->loop, ts_pred_lost, f->r[0], 10);
    /* b keeps writing to a peer that is gone until the transport says so: a write
     * fails, or the loop notices (then connection_lost came from the loop). */
    int rc = 0;
    for (int i = 0; i < 1000 && rc == 0 && !f->lost[1]; i++) {
        rc = fx_write(f, 1, "ping", 4);
        assert_int_equal(f->lost[1], 0);
        if (rc == 0 && tide_transport_is_closing(T(f, 1)))
            rc = fx_write(f, 1, "ping", 4); /* the stored error, once it is known */
        if (rc == 0)
            tide_loop_run(f->loop, TIDE_RUN_NOWAIT);
    }
    fx_finish(f);
    assert_string_equal(f->r[1]->events, "MEL");
    if (f->k->tls) {
        /* close_notify closes b (a TLS peer cannot keep writing), cleanly. */
        assert_int_equal(f->status[1], 0);
        return;
    }
    assert_true(f->status[1] == TIDE_EPIPE || f->status[1] == TIDE_ECONNRESET);
    if (rc != 0)
        assert_int_equal(f->status[1], rc);
}

/* eof_received returning false closes the transport. */
static void case_eof_false_closes(void **state) {
    fx *f = *state;
    needs_half_close(f);
    fx_connect(f);
    assert_int_equal(fx_write_eof(f, 0), 0);
    assert_true(tide_transport_is_reading(T(f, 0))); /* reading goes on */
    fx_finish(f);
    fx_expect(f, "MEL", 0, "MEL", 0);
}

/* Half-close: b keeps its side open after EOF, replies, then closes; a reads the
 * reply after its own write_eof, then EOF. */
static bool reply_and_close(fx *f, int side) {
    assert_false(tide_transport_is_reading(T(f, side)));
    assert_false(tide_transport_is_closing(T(f, side)));
    assert_int_equal(tide_transport_write(T(f, side), "reply", 5), 0);
    tide_transport_close(T(f, side));
    return true;
}

static void case_half_close(void **state) {
    fx *f = *state;
    f->hooks[1].eof = reply_and_close;
    needs_half_close(f);
    fx_connect(f);
    assert_int_equal(fx_write(f, 0, "hello", 5), 0);
    assert_int_equal(fx_write_eof(f, 0), 0);
    fx_finish(f);
    fx_expect(f, "MDEL", 0, "MDEL", 0);
    assert_memory_equal(f->r[1]->data, "hello", 5);
    assert_int_equal(f->r[0]->len, 5);
    assert_memory_equal(f->r[0]->data, "reply", 5);
}

/* tide refuses instead of dropping: EPIPE after write_eof, ECLOSED after close. */
static void case_write_errors(void **state) {
    fx *f = *state;
    fx_connect(f);
    if (f->k->tls) {
        assert_false(tide_transport_can_write_eof(T(f, 0)));
        assert_int_equal(fx_write_eof(f, 0), TIDE_ENOTSUP);
    } else {
        assert_int_equal(fx_write_eof(f, 0), 0);
        assert_int_equal(fx_write(f, 0, "x", 1), TIDE_EPIPE);
        tide_iovec_t v = {"y", 1};
        assert_int_equal(tide_transport_writelines(T(f, 0), &v, 1), TIDE_EPIPE);
        assert_int_equal(fx_write_eof(f, 0), 0); /* again: a no-op */
    }
    fx_close(f, 1);
    assert_int_equal(fx_write(f, 1, "z", 1), TIDE_ECLOSED);
    assert_int_equal(fx_write(f, 1, "", 0), TIDE_ECLOSED);
    assert_int_equal(fx_write_eof(f, 1), f->k->tls ? TIDE_ENOTSUP : TIDE_ECLOSED);
    fx_close(f, 1); /* idempotent */
    fx_finish(f);
    fx_expect(f, NULL, 0, NULL, 0);
    assert_int_equal(f->r[1]->len, 0);
}

/* Data queued when close is called is still delivered, then EOF. */
static void case_queued_data_delivered_on_close(void **state) {
    fx *f = *state;
    fx_connect(f);
    fx_fill(f, 0, a_queued);
    assert_true(tide_transport_get_write_buffer_size(T(f, 0)) > 0);
    unsigned char tail[100];
    pattern_fill(tail, sizeof(tail), f->sent);
    assert_int_equal(fx_write(f, 0, tail, sizeof(tail)), 0);
    f->sent += sizeof(tail);
    fx_close(f, 0);
    assert_int_equal(fx_write(f, 0, "late", 4), TIDE_ECLOSED);
    fx_finish(f);
    fx_expect(f, NULL, 0, "MDEL", 0);
    expect_received(f, f->sent, f->sent);
}

/* abort discards the queue, reports 0, and never calls resume_writing. */
static void case_abort_discards(void **state) {
    fx *f = *state;
    fx_connect(f);
    fx_fill(f, 0, a_paused);
    size_t queued = tide_transport_get_write_buffer_size(T(f, 0));
    assert_true(queued > 64 * 1024);
    fx_abort(f, 0);
    assert_int_equal(f->lost[0], 0);
    assert_true(tide_transport_is_closing(T(f, 0)));
    assert_int_equal(fx_write(f, 0, "x", 1), TIDE_ECLOSED);
    fx_abort(f, 0); /* idempotent */
    fx_finish(f);
    fx_expect(f, "MPL", 0, NULL, PEER_RESET);
    assert_int_equal(f->r[0]->resumes, 0);
    /* Over TLS the queue counts ciphertext, which is larger than the plaintext it
     * carries: only "not everything arrived" is exact there. */
    expect_received(f, 0, f->k->tls ? f->sent - 1 : f->sent - queued);
}

static bool resumed(void *r) { return ((ts_recorder *)r)->resumes > 0; }

/* pause_writing inside the write that crosses high; resume_writing from the loop once
 * at or below low; everything arrives. */
static void case_pause_resume_writing(void **state) {
    fx *f = *state;
    fx_connect(f);
    assert_int_equal(tide_transport_set_write_buffer_limits(T(f, 0), 32 * 1024, 8 * 1024), 0);
    size_t low, high;
    tide_transport_get_write_buffer_limits(T(f, 0), &low, &high);
    assert_int_equal(low, 8 * 1024);
    assert_int_equal(high, 32 * 1024);
    fx_fill(f, 0, a_paused);
    assert_int_equal(f->r[0]->pauses, 1);
    assert_int_equal(f->pause_in_call, 1);
    assert_int_equal(f->pause_size_ok, 1);
    ts_run_until(f->loop, resumed, f->r[0], 20);
    assert_int_equal(f->r[0]->resumes, 1);
    assert_int_equal(f->resume_size_ok, 1);
    fx_close(f, 0);
    fx_finish(f);
    expect_received(f, f->sent, f->sent);
    assert_string_equal(f->r[0]->events, "MPRL");
}

/* pause_reading stops data until resume_reading; both are idempotent. */
static void case_pause_reading(void **state) {
    fx *f = *state;
    fx_connect(f);
    assert_int_equal(fx_write(f, 0, "one", 3), 0);
    run_until_len(f, 1, 3);
    tide_transport_pause_reading(T(f, 1));
    tide_transport_pause_reading(T(f, 1));
    assert_false(tide_transport_is_reading(T(f, 1)));
    assert_int_equal(fx_write(f, 0, "two", 3), 0);
    fx_settle(f, 1, 3);
    assert_int_equal(f->r[1]->len, 3);
    tide_transport_resume_reading(T(f, 1));
    tide_transport_resume_reading(T(f, 1));
    assert_true(tide_transport_is_reading(T(f, 1)));
    run_until_len(f, 1, 6);
    assert_memory_equal(f->r[1]->data, "onetwo", 6);
    fx_close(f, 0);
    fx_finish(f);
    assert_string_equal(f->r[1]->events, "MDEL");
}

/* pause_reading inside connection_made: nothing is delivered, not even data that was
 * already waiting, until resume_reading. */
static void pause_in_made(fx *f, int side) { tide_transport_pause_reading(T(f, side)); }

static void write_early(fx *f, int side) {
    assert_int_equal(tide_transport_write(T(f, side), "early", 5), 0);
}

static void case_pause_reading_in_made(void **state) {
    fx *f = *state;
    f->hooks[1].made = pause_in_made;
    f->hooks[0].made = write_early;
    fx_connect(f);
    assert_false(tide_transport_is_reading(T(f, 1)));
    fx_settle(f, 1, 5);
    assert_int_equal(f->r[1]->len, 0);
    assert_string_equal(f->r[1]->events, "M");
    tide_transport_resume_reading(T(f, 1));
    run_until_len(f, 1, 5);
    assert_memory_equal(f->r[1]->data, "early", 5);
    fx_close(f, 0);
    fx_finish(f);
    assert_string_equal(f->r[1]->events, "MDEL");
}

/* Both protocols are freed inside their own connection_lost; tide must not touch
 * them afterwards (the sanitizer build checks). */
static void free_in_lost(fx *f, int side, int status) {
    (void)status;
    ts_recorder *r = f->r[side];
    f->freed_violations += r->violations;
    ts_recorder_free(r);
    memset(r, 0xAB, sizeof(*r));
    free(r);
    f->r[side] = NULL;
}

static void case_free_in_lost(void **state) {
    fx *f = *state;
    fx_side(f, 0, false, true);
    fx_side(f, 1, false, true);
    f->r[1]->echo = true;
    f->hooks[0].lost = free_in_lost;
    f->hooks[1].lost = free_in_lost;
    fx_connect(f);
    assert_int_equal(fx_write(f, 0, "abc", 3), 0);
    run_until_len(f, 0, 3);
    fx_close(f, 0);
    fx_finish(f);
    assert_int_equal(f->status[0], 0);
    assert_int_equal(f->status[1], 0);
}

/* A buffered protocol (get_buffer / buffer_updated) receives exactly the same bytes. */
static void case_buffered_protocol(void **state) {
    fx *f = *state;
    fx_side(f, 1, true, false);
    fx_connect(f);
    static unsigned char big[1024 * 1024 + 3];
    pattern_fill(big, sizeof(big), 0);
    assert_int_equal(fx_write(f, 0, big, sizeof(big)), 0);
    fx_close(f, 0);
    fx_finish(f);
    expect_received(f, sizeof(big), sizeof(big));
    assert_true(f->data_calls[1] >= (int)(sizeof(big) / 4096));
    fx_expect(f, NULL, ANY_STATUS, "MDEL", 0);
}

/* ---- closing and aborting from inside callbacks, as a table ---------------------------- */

static void close_side(fx *f, int side) { tide_transport_close(T(f, side)); }
static void abort_side(fx *f, int side) { tide_transport_abort(T(f, side)); }
static void close_side_data(fx *f, int side, size_t len) {
    (void)len;
    close_side(f, side);
}
static void abort_side_data(fx *f, int side, size_t len) {
    (void)len;
    abort_side(f, side);
}
static bool close_in_eof(fx *f, int side) {
    close_side(f, side);
    return true;
}
static bool abort_in_eof(fx *f, int side) {
    abort_side(f, side);
    return false;
}

/* The last bytes are written and the transport closed from inside resume_writing. */
static void tail_and_close(fx *f, int side) {
    unsigned char tail[10];
    pattern_fill(tail, sizeof(tail), f->sent);
    assert_int_equal(tide_transport_write(T(f, side), tail, sizeof(tail)), 0);
    f->sent += sizeof(tail);
    tide_transport_close(T(f, side));
}

/* Further checks of some rows. */

/* Once data_received closed or aborted, no more data arrived although a sent much
 * more; a learns of the early close as EOF or as an error, never silently. */
static void data_stopped(fx *f) {
    assert_int_equal(f->data_calls[1], 1);
    expect_received(f, 0, 1024 * 1024);
    assert_true(f->status[0] == 0 || f->status[0] == TIDE_EPIPE ||
                f->status[0] == TIDE_ECONNRESET || f->status[0] == TIDE_ETLS_TRUNCATED);
    if (f->status[0] == 0)
        assert_int_equal(f->r[0]->eofs, 1);
}

/* close inside pause_writing: what was accepted is still flushed, then EOF. */
static void flushed_after_pause(fx *f) {
    assert_int_equal(strncmp(f->r[0]->events, "MP", 2), 0);
    assert_int_equal(f->r[0]->events[f->r[0]->nevents - 1], 'L');
    expect_received(f, f->sent, f->sent);
}

static void all_received(fx *f) { expect_received(f, f->sent, f->sent); }

/* abort inside resume_writing: the rest of the queue is dropped. */
static void some_received(fx *f) { expect_received(f, 0, f->sent); }

/* What a does once connected, before waiting for both connection_lost calls. */
typedef enum after_connect {
    NOTHING,
    WRITE_EOF,       /* write_eof */
    WRITE_MIB,       /* one 1 MiB write */
    FILL_TO_CLOSING, /* fill (pause_writing fires) until the transport is closing */
    FILL_TO_PAUSED   /* fill until pause_writing */
} after_connect;

typedef struct inside_case {
    const char *name;
    int side;          /* whose callback acts */
    side_hooks hooks;  /* installed on that side */
    after_connect then;
    const char *events[2];
    int status[2];     /* for fx_expect */
    void (*check)(fx *f); /* further checks, or NULL */
} inside_case;

static const inside_case INSIDE[] = {
    {"close_in_made", 1, {.made = close_side}, NOTHING, {"MEL", "ML"}, {0, 0}, NULL},
    {"abort_in_made", 0, {.made = abort_side}, NOTHING, {"ML", NULL}, {0, PEER_RESET}, NULL},
    {"close_in_data", 1, {.data = close_side_data}, WRITE_MIB, {NULL, "MDL"}, {ANY_STATUS, 0},
     data_stopped},
    {"abort_in_data", 1, {.data = abort_side_data}, WRITE_MIB, {NULL, "MDL"}, {ANY_STATUS, 0},
     data_stopped},
    {"close_in_eof", 1, {.eof = close_in_eof}, WRITE_EOF, {"MEL", "MEL"}, {0, 0}, NULL},
    {"abort_in_eof", 1, {.eof = abort_in_eof}, WRITE_EOF, {NULL, "MEL"}, {PEER_RESET, 0}, NULL},
    {"abort_in_pause", 0, {.pause = abort_side}, FILL_TO_CLOSING, {"MPL", NULL}, {0, PEER_RESET},
     NULL},
    {"close_in_pause", 0, {.pause = close_side}, FILL_TO_CLOSING, {NULL, "MDEL"}, {0, 0},
     flushed_after_pause},
    {"close_in_resume", 0, {.resume = tail_and_close}, FILL_TO_PAUSED, {"MPRL", NULL}, {0, 0},
     all_received},
    {"abort_in_resume", 0, {.resume = abort_side}, FILL_TO_PAUSED, {"MPRL", NULL},
     {0, PEER_RESET}, some_received},
};

static void case_inside(void **state) {
    fx *f = *state;
    const inside_case *c = f->inside;
    if (c->then == WRITE_EOF)
        needs_half_close(f);
    f->hooks[c->side] = c->hooks;
    fx_connect(f);
    static unsigned char mib[1024 * 1024];
    switch (c->then) {
    case NOTHING:
        break;
    case WRITE_EOF:
        assert_int_equal(fx_write_eof(f, 0), 0);
        break;
    case WRITE_MIB:
        pattern_fill(mib, sizeof(mib), 0);
        assert_int_equal(fx_write(f, 0, mib, sizeof(mib)), 0);
        break;
    case FILL_TO_CLOSING:
        fx_fill(f, 0, a_closing);
        assert_int_equal(f->lost[0], 0);
        break;
    case FILL_TO_PAUSED:
        fx_fill(f, 0, a_paused);
        break;
    }
    fx_finish(f);
    fx_expect(f, c->events[0], c->status[0], c->events[1], c->status[1]);
    if (c->check)
        c->check(f);
}

/* ---- the matrix --------------------------------------------------------------------------- */

typedef struct test_case {
    const char *name;
    CMUnitTestFunction fn;
} test_case;

static const test_case CASES[] = {
    {"order_and_echo", case_order_and_echo},
    {"lost_never_synchronous", case_lost_never_synchronous},
    {"eof_false_closes", case_eof_false_closes},
    {"half_close", case_half_close},
    {"write_errors", case_write_errors},
    {"queued_data_delivered_on_close", case_queued_data_delivered_on_close},
    {"abort_discards", case_abort_discards},
    {"pause_resume_writing", case_pause_resume_writing},
    {"pause_reading", case_pause_reading},
    {"pause_reading_in_made", case_pause_reading_in_made},
    {"free_in_lost", case_free_in_lost},
    {"buffered_protocol", case_buffered_protocol},
};

#define NCASES (sizeof(CASES) / sizeof(CASES[0]))
#define NINSIDE (sizeof(INSIDE) / sizeof(INSIDE[0]))
#define NKINDS (sizeof(KINDS) / sizeof(KINDS[0]))

int main(int argc, char **argv) {
    /* An optional argument picks one kind, for example `test_protocols_contract tcp`. */
    const char *only = argc > 1 ? argv[1] : NULL;
    enum { N = NCASES + NINSIDE };
    static char names[NKINDS][N][80];
    static param params[NKINDS][N];
    static struct CMUnitTest tests[N];
    int failed = 0;
    for (size_t k = 0; k < NKINDS; k++) {
        if (only && strcmp(only, KINDS[k].name) != 0)
            continue;
        for (size_t c = 0; c < N; c++) {
            const inside_case *in = c < NCASES ? NULL : &INSIDE[c - NCASES];
            snprintf(names[k][c], sizeof(names[k][c]), "%s/%s", KINDS[k].name,
                     in ? in->name : CASES[c].name);
            params[k][c] = (param){&KINDS[k], in};
            tests[c] = (struct CMUnitTest){names[k][c], in ? case_inside : CASES[c].fn, fx_setup,
                                           fx_teardown, &params[k][c]};
        }
        failed += cmocka_run_group_tests_name(KINDS[k].name, tests, NULL, NULL);
    }
    return failed;
}
