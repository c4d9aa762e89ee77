/* The socket transport (TCP over 127.0.0.1 and ::1, Unix sockets, socketpairs):
 * callback order, half-close, tide's strict write rules, pause/resume reading,
 * resets and broken pipes, and closing or aborting from inside every callback.
 * Every test ends with the loop closed cleanly and the descriptor count back at its
 * starting value, and no recorder saw an order violation (ts_duo_teardown). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "support/sock.h"
#include "support/support.h"
#include "transports/transport_int.h"

static void run_until_both_lost(ts_duo *d) { ts_run_until(d->loop, ts_pred_duo_lost, d, 10); }

static uint16_t port_of(const struct sockaddr_storage *ss) {
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

/* ---- a basic exchange on every kind ------------------------------------------- */

static void check_addresses(sk_kind kind, tide_transport_t *ta, tide_transport_t *tb) {
    struct sockaddr_storage a_peer, a_local, b_peer, b_local;
    socklen_t a_peer_len = sizeof(a_peer), a_local_len = sizeof(a_local);
    socklen_t b_peer_len = sizeof(b_peer), b_local_len = sizeof(b_local);
    assert_int_equal(tide_transport_get_peername(ta, (struct sockaddr *)&a_peer, &a_peer_len), 0);
    assert_int_equal(tide_transport_get_sockname(ta, (struct sockaddr *)&a_local, &a_local_len), 0);
    assert_int_equal(tide_transport_get_peername(tb, (struct sockaddr *)&b_peer, &b_peer_len), 0);
    assert_int_equal(tide_transport_get_sockname(tb, (struct sockaddr *)&b_local, &b_local_len), 0);
    char text[256];
    switch (kind) {
    case SK_TCP4:
    case SK_TCP6:
        assert_int_equal(a_peer.ss_family, kind == SK_TCP4 ? AF_INET : AF_INET6);
        assert_int_equal(port_of(&a_peer), port_of(&b_local));
        assert_int_equal(port_of(&b_peer), port_of(&a_local));
        assert_int_equal(a_peer_len, b_local_len);
        ta->ops->describe(ta, text, sizeof(text));
        char expect[256];
        snprintf(expect, sizeof(expect), "tcp transport fd %d %s:%u -> %s:%u",
                 tide_transport_get_fd(ta), kind == SK_TCP4 ? "127.0.0.1" : "[::1]",
                 port_of(&a_local), kind == SK_TCP4 ? "127.0.0.1" : "[::1]", port_of(&a_peer));
        assert_string_equal(text, expect);
        break;
    case SK_SOCKETPAIR:
        /* Unnamed Unix peers have only a family. */
        assert_int_equal(a_peer_len, sizeof(sa_family_t));
        assert_int_equal(a_peer.ss_family, AF_UNIX);
        assert_int_equal(b_local_len, sizeof(sa_family_t));
        break;
    case SK_UNIX_PATH: {
        const struct sockaddr_un *pa = (const struct sockaddr_un *)&a_peer;
        const struct sockaddr_un *lb = (const struct sockaddr_un *)&b_local;
        assert_int_equal(pa->sun_family, AF_UNIX);
        assert_string_equal(pa->sun_path, lb->sun_path);
        assert_non_null(strstr(pa->sun_path, "/tmp/tide-sock-"));
        assert_int_equal(b_peer_len, sizeof(sa_family_t)); /* the client was not bound */
        tb->ops->describe(tb, text, sizeof(text));
        assert_non_null(strstr(text, "unix transport fd "));
        assert_non_null(strstr(text, pa->sun_path));
        break;
    }
    }
    /* A too-small buffer gets a truncated copy and the full length, like getpeername. */
    struct sockaddr_storage small;
    socklen_t small_len = 1;
    assert_int_equal(tide_transport_get_peername(ta, (struct sockaddr *)&small, &small_len), 0);
    assert_int_equal(small_len, a_peer_len);
}

/* The events without pause/resume_writing (P, R), runs of D merged again, into buf. */
static const char *strip_flow(const char *events, char *buf) {
    size_t n = 0;
    for (; *events; events++)
        if (*events != 'P' && *events != 'R' && !(*events == 'D' && n > 0 && buf[n - 1] == 'D'))
            buf[n++] = *events;
    buf[n] = '\0';
    return buf;
}

static void exchange(void **state, sk_kind kind, bool buffered) {
    ts_duo *d = *state;
    char ev[sizeof(d->a.events)];
    if (buffered)
        ts_recorder_init_buffered(&d->b);
    d->b.echo = true;
    if (!sk_connect(d, kind))
        skip();
    tide_transport_t *ta = d->ta, *tb = d->tb;
    assert_ptr_equal(d->a.transport, ta);
    assert_ptr_equal(d->b.transport, tb);
    assert_string_equal(d->a.events, "M");
    assert_string_equal(d->b.events, "M");
    const char *kind_name = kind == SK_TCP4 || kind == SK_TCP6 ? "tcp" : "unix";
    assert_string_equal(tide_transport_kind(ta), kind_name);
    assert_string_equal(tide_transport_kind(tb), kind_name);
    assert_true(tide_transport_get_fd(ta) >= 0);
    assert_true(tide_transport_get_fd(tb) >= 0);
    assert_true(tide_transport_can_write_eof(ta));
    assert_true(tide_transport_is_reading(ta));
    check_addresses(kind, ta, tb);

    /* More than one read's worth, so several data_received calls feed the echo. */
    size_t len = 600 * 1024;
    unsigned char *data = malloc(len);
    assert_non_null(data);
    sk_pattern(data, len, 0);
    assert_int_equal(tide_transport_write(ta, data, len), 0);
    sk_run_until_len(d->loop, &d->a, len);
    assert_int_equal(d->a.len, len);
    assert_memory_equal(d->a.data, data, len);
    assert_int_equal(d->b.len, len);
    free(data);

    tide_transport_close(ta);
    assert_true(tide_transport_is_closing(ta));
    assert_int_equal(d->a.lost, 0); /* never from inside close() */
    run_until_both_lost(d);
    /* The peer's echo may fill the socket: the writers' own pauses are fine here. */
    assert_string_equal(strip_flow(d->a.events, ev), "MDL");
    assert_int_equal(d->a.pauses, d->a.resumes);
    assert_string_equal(strip_flow(d->b.events, ev), "MDEL");
    assert_int_equal(d->b.pauses, d->b.resumes);
    assert_int_equal(d->a.lost_status, 0);
    assert_int_equal(d->b.lost_status, 0);
}

static void test_exchange_socketpair(void **state) { exchange(state, SK_SOCKETPAIR, false); }
static void test_exchange_tcp4(void **state) { exchange(state, SK_TCP4, false); }
static void test_exchange_tcp6(void **state) { exchange(state, SK_TCP6, false); }
static void test_exchange_unix_path(void **state) { exchange(state, SK_UNIX_PATH, false); }
static void test_exchange_tcp4_buffered(void **state) { exchange(state, SK_TCP4, true); }
static void test_exchange_unix_buffered(void **state) { exchange(state, SK_SOCKETPAIR, true); }

/* ---- half-close ------------------------------------------------------------------ */

static bool reply_then_close(ts_recorder *r) {
    assert_int_equal(tide_transport_write(r->transport, "reply", 5), 0);
    tide_transport_close(r->transport);
    return true;
}

/* asyncio 3.4's verified sequence: A writes and half-closes; B (eof_received true)
 * replies and closes; A gets the reply, then EOF, then closes itself. Also checklist 9:
 * write after write_eof fails, reading continues. */
static void half_close(void **state, sk_kind kind) {
    ts_duo *d = *state;
    d->b.on_eof = reply_then_close;
    if (!sk_connect(d, kind))
        skip();
    tide_transport_t *ta = d->ta;
    assert_int_equal(tide_transport_write(ta, "hello", 5), 0);
    assert_int_equal(tide_transport_write_eof(ta), 0);
    assert_int_equal(tide_transport_write_eof(ta), 0); /* again: a no-op */
    assert_int_equal(tide_transport_write(ta, "late", 4), TIDE_EPIPE);
    tide_iovec_t v[2] = {{"la", 2}, {"te", 2}};
    assert_int_equal(tide_transport_writelines(ta, v, 2), TIDE_EPIPE);
    assert_false(tide_transport_is_closing(ta));
    assert_true(tide_transport_is_reading(ta));
    run_until_both_lost(d);
    assert_string_equal(d->b.events, "MDEL");
    assert_int_equal(d->b.len, 5);
    assert_memory_equal(d->b.data, "hello", 5);
    assert_string_equal(d->a.events, "MDEL");
    assert_int_equal(d->a.len, 5);
    assert_memory_equal(d->a.data, "reply", 5);
    assert_int_equal(d->a.lost_status, 0);
    assert_int_equal(d->b.lost_status, 0);
}

static void test_half_close_tcp4(void **state) { half_close(state, SK_TCP4); }
static void test_half_close_unix(void **state) { half_close(state, SK_SOCKETPAIR); }

/* Reliability C2: write_eof with a large queue half-closes only after the queue is
 * flushed; the peer gets every byte, then EOF; reading goes on meanwhile. */
static void test_write_eof_after_flush(void **state) {
    ts_duo *d = sk_open(state, SK_TCP4);
    d->b.keep_open_on_eof = true;
    tide_transport_pause_reading(d->tb);
    uint64_t off = 0;
    size_t written = sk_fill(d->ta, 65536, &off);
    assert_true(tide_transport_get_write_buffer_size(d->ta) > 0);
    assert_int_equal(tide_transport_write_eof(d->ta), 0);
    assert_int_equal(tide_transport_write(d->ta, "z", 1), TIDE_EPIPE);
    assert_int_equal(tide_transport_write_eof(d->ta), 0);
    tide_transport_resume_reading(d->tb);
    ts_run_until(d->loop, ts_pred_eof, &d->b, 10);
    /* The recorder counts data after EOF as a violation: EOF came last. */
    sk_expect_pattern(&d->b, written);
    assert_int_equal(tide_transport_get_write_buffer_size(d->ta), 0);
    assert_int_equal(tide_transport_write(d->tb, "after", 5), 0);
    sk_run_until_len(d->loop, &d->a, 5);
    assert_memory_equal(d->a.data, "after", 5);
    tide_transport_close(d->tb);
    run_until_both_lost(d);
    char ev[sizeof(d->a.events)];
    assert_string_equal(strip_flow(d->a.events, ev), "MDEL");
    assert_string_equal(d->b.events, "MDEL");
    assert_int_equal(d->a.lost_status, 0);
    assert_int_equal(d->b.lost_status, 0);
}

/* Checklist 4, falsy: eof_received returning false closes the transport. The side
 * that half-closed keeps its transport open until the peer's close reaches it. */
static void test_eof_false_closes(void **state) {
    ts_duo *d = sk_open(state, SK_TCP4);
    assert_int_equal(tide_transport_write_eof(d->ta), 0);
    ts_run_until(d->loop, ts_pred_lost, &d->b, 5);
    assert_string_equal(d->b.events, "MEL");
    assert_int_equal(d->b.lost_status, 0);
    ts_run_until(d->loop, ts_pred_lost, &d->a, 5);
    assert_string_equal(d->a.events, "MEL");
    assert_int_equal(d->a.lost_status, 0);
}

/* ---- close, abort and tide's write rules ----------------------------------------- */

/* Checklist 3: connection_lost exactly once, never from inside close/abort/write. */
static void test_lost_once_never_synchronous(void **state) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    tide_transport_t *ta = d->ta;
    assert_int_equal(tide_transport_write(ta, "x", 1), 0);
    assert_int_equal(d->a.lost, 0);
    tide_transport_close(ta);
    assert_int_equal(d->a.lost, 0);
    tide_transport_close(ta);
    tide_transport_abort(ta);
    assert_int_equal(d->a.lost, 0);
    assert_int_equal(tide_transport_write(ta, "y", 1), TIDE_ECLOSED);
    assert_int_equal(tide_transport_write_eof(ta), TIDE_ECLOSED);
    assert_false(tide_transport_is_reading(ta));
    tide_transport_abort(d->tb);
    tide_transport_abort(d->tb);
    assert_int_equal(d->b.lost, 0);
    run_until_both_lost(d);
    ts_spin(d->loop, 10);
    assert_int_equal(d->a.lost, 1);
    assert_int_equal(d->b.lost, 1);
    assert_int_equal(d->a.lost_status, 0);
    assert_int_equal(d->b.lost_status, 0);
    tide_transport_close(NULL);
    tide_transport_abort(NULL);
}

/* Checklist 8, stricter: write after close returns TIDE_ECLOSED (never a silent
 * drop), and what was queued before close still reaches the peer, then EOF. */
static void write_after_close(void **state, sk_kind kind) {
    ts_duo *d = sk_open(state, kind);
    tide_transport_t *ta = d->ta;
    tide_transport_pause_reading(d->tb);
    uint64_t off = 0;
    size_t written = sk_fill(ta, 16 * 1024, &off);
    size_t queued = tide_transport_get_write_buffer_size(ta);
    assert_true(queued > 0);
    tide_transport_close(ta);
    assert_int_equal(tide_transport_write(ta, "z", 1), TIDE_ECLOSED);
    tide_iovec_t v[1] = {{"z", 1}};
    assert_int_equal(tide_transport_writelines(ta, v, 1), TIDE_ECLOSED);
    assert_int_equal(tide_transport_write_eof(ta), TIDE_ECLOSED);
    assert_int_equal(tide_transport_get_write_buffer_size(ta), queued);
    ts_spin(d->loop, 5);
    assert_int_equal(d->a.lost, 0); /* still flushing: the peer is not reading */
    tide_transport_resume_reading(d->tb);
    run_until_both_lost(d);
    sk_expect_pattern(&d->b, written);
    assert_string_equal(d->b.events, "MDEL");
    assert_int_equal(d->a.lost_status, 0);
    assert_int_equal(d->a.resumes, d->a.pauses);
}

static void test_write_after_close_tcp4(void **state) { write_after_close(state, SK_TCP4); }
static void test_write_after_close_unix(void **state) { write_after_close(state, SK_SOCKETPAIR); }

typedef struct flow_seen {
    size_t high, low;
    size_t at_pause, at_resume;
} flow_seen;

static void note_pause(ts_recorder *r) {
    flow_seen *s = r->user;
    s->at_pause = tide_transport_get_write_buffer_size(r->transport);
}

static void note_resume(ts_recorder *r) {
    flow_seen *s = r->user;
    s->at_resume = tide_transport_get_write_buffer_size(r->transport);
}

/* Checklists 11 and 12: pause_writing inside the write that crosses high, resume at
 * low from the loop, and abort discards the queue with connection_lost(0) and no
 * resume_writing. What the kernel had already taken still arrives, and nothing else. */
static void pause_resume_abort(void **state, sk_kind kind) {
    ts_duo *d = *state;
    tide_loop_t *loop = d->loop;
    ts_recorder *a = &d->a, *b = &d->b;
    flow_seen seen = {0};
    a->user = &seen;
    a->on_pause = note_pause;
    a->on_resume = note_resume;
    assert_true(sk_connect(d, kind));
    tide_transport_t *ta = d->ta, *tb = d->tb;
    assert_int_equal(tide_transport_set_write_buffer_limits(ta, 8192, 2048), 0);
    tide_transport_pause_reading(tb);
    uint64_t off = 0;
    size_t written = sk_fill(ta, 1024, &off);
    assert_int_equal(a->pauses, 0);
    enum { CHUNK = 4096 };
    while (tide_transport_get_write_buffer_size(ta) + CHUNK <= 8192)
        written += sk_write_pattern(ta, CHUNK, &off);
    assert_int_equal(a->pauses, 0);
    written += sk_write_pattern(ta, CHUNK, &off);
    assert_int_equal(a->pauses, 1); /* synchronously, inside write() */
    assert_true(seen.at_pause > 8192);
    assert_true(seen.at_pause <= 8192 + CHUNK);

    tide_transport_resume_reading(tb);
    sk_run_until_count(loop, &a->resumes, 1);
    assert_true(seen.at_resume <= 2048);
    sk_run_until_len(loop, b, written);

    /* Pause again, then abort while paused: the queue is dropped, no resume. */
    tide_transport_pause_reading(tb);
    ts_spin(loop, 5);
    size_t before = b->len;
    written += sk_fill(ta, 4096, &off);
    while (a->pauses < 2)
        written += sk_write_pattern(ta, CHUNK, &off);
    size_t dropped = tide_transport_get_write_buffer_size(ta);
    assert_true(dropped > 8192);
    tide_transport_abort(ta);
    assert_int_equal(tide_transport_get_write_buffer_size(ta), 0);
    assert_int_equal(tide_transport_write(ta, "q", 1), TIDE_ECLOSED);
    assert_int_equal(a->lost, 0);
    tide_transport_resume_reading(tb);
    run_until_both_lost(d);
    assert_int_equal(a->lost_status, 0);
    assert_int_equal(a->pauses, 2);
    assert_int_equal(a->resumes, 1);
    /* Exactly the bytes the kernel took arrived; the queue was discarded. */
    sk_expect_pattern(b, written - dropped);
    assert_true(b->len > before);
    assert_string_equal(b->events, "MDEL");
}

static void test_pause_resume_abort_tcp4(void **state) { pause_resume_abort(state, SK_TCP4); }
static void test_pause_resume_abort_unix(void **state) { pause_resume_abort(state, SK_SOCKETPAIR); }

/* ---- reading control ------------------------------------------------------------- */

static void pause_in_made(ts_recorder *r) {
    tide_transport_pause_reading(r->transport);
    tide_transport_pause_reading(r->transport); /* idempotent */
}

/* Checklist 2: pause_reading inside connection_made holds back data that was already
 * waiting in the socket until resume_reading. */
static void pause_in_connection_made(void **state, bool buffered) {
    ts_duo *d = *state;
    ts_recorder *r = &d->a;
    int c, s;
    if (buffered)
        ts_recorder_init_buffered(r);
    r->on_made = pause_in_made;
    assert_true(sk_raw_pair(SK_TCP4, &c, &s));
    assert_int_equal(write(c, "early", 5), 5);
    tide_transport_t *t = sk_wrap(d->loop, s, &r->base, true);
    ts_spin(d->loop, 20);
    assert_string_equal(r->events, "M");
    assert_int_equal(r->len, 0);
    assert_false(tide_transport_is_reading(t));
    tide_transport_resume_reading(t);
    tide_transport_resume_reading(t); /* idempotent */
    assert_true(tide_transport_is_reading(t));
    sk_run_until_len(d->loop, r, 5);
    assert_memory_equal(r->data, "early", 5);
    close(c);
    ts_run_until(d->loop, ts_pred_lost, r, 5);
    assert_string_equal(r->events, "MDEL");
}

static void test_pause_in_connection_made(void **state) { pause_in_connection_made(state, false); }
static void test_pause_in_connection_made_buffered(void **state) {
    pause_in_connection_made(state, true);
}

static void pause_on_data(ts_recorder *r, const void *data, size_t len) {
    (void)data;
    (void)len;
    tide_transport_pause_reading(r->transport);
}

/* pause_reading stops data_received; resume_reading delivers what waited meanwhile. */
static void test_pause_reading_stops_data(void **state) {
    tide_loop_t *loop = SK_LOOP(state);
    ts_recorder *r = SK_RECORDER(state);
    int c, s;
    r->on_data = pause_on_data;
    assert_true(sk_raw_pair(SK_SOCKETPAIR, &c, &s));
    tide_transport_t *t = sk_wrap(loop, s, &r->base, false);
    assert_int_equal(write(c, "one", 3), 3);
    sk_run_until_len(loop, r, 3);
    assert_false(tide_transport_is_reading(t));
    assert_int_equal(write(c, "two", 3), 3);
    ts_spin(loop, 20);
    assert_int_equal(r->len, 3);
    r->on_data = NULL;
    tide_transport_resume_reading(t);
    sk_run_until_len(loop, r, 6);
    assert_memory_equal(r->data, "onetwo", 6);
    /* EOF while paused is held back too, and comes after resume. */
    tide_transport_pause_reading(t);
    close(c);
    ts_spin(loop, 20);
    assert_int_equal(r->eofs, 0);
    tide_transport_resume_reading(t);
    ts_run_until(loop, ts_pred_lost, r, 5);
    assert_string_equal(r->events, "MDEL");
}

/* ---- resets and broken pipes ----------------------------------------------------- */

typedef struct dead_writes {
    int write_rc;
    int write_eof_rc;
} dead_writes;

static void write_when_dead(ts_recorder *r, int status) {
    dead_writes *d = r->user;
    (void)status;
    d->write_rc = tide_transport_write(r->transport, "x", 1);
    d->write_eof_rc = tide_transport_write_eof(r->transport);
}

/* A peer reset (SO_LINGER 0) is connection_lost(ECONNRESET), never eof_received; the
 * bytes that came before it are delivered first; once the connection is known dead,
 * writes fail with its error. */
static void test_peer_reset(void **state) {
    tide_loop_t *loop = SK_LOOP(state);
    ts_recorder *r = SK_RECORDER(state);
    dead_writes d = {1, 1};
    int c, s;
    r->user = &d;
    r->on_lost = write_when_dead;
    assert_true(sk_raw_pair(SK_TCP4, &c, &s));
    tide_transport_t *t = sk_wrap(loop, s, &r->base, true);
    (void)t;
    /* The bytes and the reset arrive together: the bytes still come first. */
    assert_int_equal(write(c, "bye", 3), 3);
    sk_close_with_reset(c);
    ts_run_until(loop, ts_pred_lost, r, 5);
    assert_string_equal(r->events, "MDL");
    assert_int_equal(r->len, 3);
    assert_memory_equal(r->data, "bye", 3);
    assert_int_equal(r->eofs, 0);
    assert_int_equal(r->lost_status, TIDE_ECONNRESET);
    assert_int_equal(d.write_rc, TIDE_ECONNRESET);
    assert_int_equal(d.write_eof_rc, TIDE_ECONNRESET);
}

typedef struct pinger {
    ts_recorder *r;
    tide_handle_t *next;
    int first_error;
} pinger;

/* Writes every 2 ms until connection_lost, so the peer's RST has time to arrive
 * between two writes. */
static void ping(tide_loop_t *loop, void *arg) {
    pinger *p = arg;
    p->next = NULL;
    if (p->r->lost)
        return;
    int rc = tide_transport_write(p->r->transport, "ping", 4);
    assert_int_equal(p->r->lost, 0); /* a failing write never reports synchronously */
    if (rc != 0 && p->first_error == 0)
        p->first_error = rc;
    p->next = tide_loop_call_later(loop, 0.002, ping, p);
    assert_non_null(p->next);
}

static void pause_reading_made(ts_recorder *r) { tide_transport_pause_reading(r->transport); }

/* Checklist 6 with SIGPIPE at its default action: writing to a peer that closed never
 * kills the process; connection_lost reports EPIPE or ECONNRESET, and writes after
 * that failure return the error. Reading is paused so the peer's FIN is not seen
 * first. */
static void write_to_closed_peer(void **state, sk_kind kind) {
    tide_loop_t *loop = SK_LOOP(state);
    ts_recorder *r = SK_RECORDER(state);
    pinger p = {r, NULL, 0};
    int c, s;
    signal(SIGPIPE, SIG_DFL);
    r->on_made = pause_reading_made;
    assert_true(sk_raw_pair(kind, &c, &s));
    sk_wrap(loop, c, &r->base, false);
    close(s);
    ping(loop, &p);
    ts_run_until(loop, ts_pred_lost, r, 5);
    tide_handle_cancel(p.next);
    assert_true(r->lost_status == TIDE_EPIPE || r->lost_status == TIDE_ECONNRESET);
    assert_string_equal(r->events, "ML");
    assert_true(p.first_error == 0 || p.first_error == r->lost_status);
}

static void test_write_to_closed_peer_tcp4(void **state) { write_to_closed_peer(state, SK_TCP4); }
static void test_write_to_closed_peer_unix(void **state) {
    write_to_closed_peer(state, SK_SOCKETPAIR);
}

/* The peer resets while a large write is queued (reliability D1): the flush fails,
 * the process survives, and connection_lost carries the error exactly once. */
static void test_reset_during_large_write(void **state) {
    tide_loop_t *loop = SK_LOOP(state);
    ts_recorder *r = SK_RECORDER(state);
    int c, s;
    signal(SIGPIPE, SIG_DFL);
    assert_true(sk_raw_pair(SK_TCP4, &c, &s));
    tide_transport_t *t = sk_wrap(loop, c, &r->base, false);
    size_t len = 32u << 20;
    unsigned char *big = malloc(len);
    assert_non_null(big);
    sk_pattern(big, len, 0);
    assert_int_equal(tide_transport_write(t, big, len), 0);
    free(big);
    assert_true(tide_transport_get_write_buffer_size(t) > 0);
    sk_close_with_reset(s);
    ts_run_until(loop, ts_pred_lost, r, 10);
    assert_true(r->lost_status == TIDE_EPIPE || r->lost_status == TIDE_ECONNRESET);
    assert_int_equal(r->eofs, 0);
}

/* ---- closing and aborting from inside every callback ---------------------------- */

typedef enum when { AT_MADE, AT_DATA, AT_EOF, AT_PAUSE, AT_RESUME } when;
typedef enum what { DO_CLOSE, DO_ABORT } what;

/* What a victim saw; it outlives the victim, which frees itself in connection_lost. */
typedef struct outcome {
    tide_transport_t *t; /* valid until lost */
    int acted;
    int lost;
    int status;
    int after_act; /* data or EOF after the close/abort: must stay 0 */
    int write_rc;
    int pauses, resumes;
} outcome;

typedef struct victim {
    tide_protocol_t base;
    when at;
    what action;
    outcome *out;
} victim;

static victim *as_victim(tide_protocol_t *p) { return TIDE_CONTAINER_OF(p, victim, base); }

static void act(victim *v, when now) {
    if (v->out->acted) {
        if (now == AT_DATA || now == AT_EOF)
            v->out->after_act++;
        return;
    }
    if (now != v->at)
        return;
    v->out->acted = 1;
    if (v->action == DO_CLOSE)
        tide_transport_close(v->out->t);
    else
        tide_transport_abort(v->out->t);
    v->out->write_rc = tide_transport_write(v->out->t, "x", 1);
    /* Again: idempotent, and still nothing synchronous. A close after an abort is a
     * no-op too (an abort after a close would be a real abort: it drops the queue). */
    if (v->action == DO_ABORT) {
        tide_transport_abort(v->out->t);
        tide_transport_close(v->out->t);
    } else {
        tide_transport_close(v->out->t);
    }
    assert_int_equal(v->out->lost, 0);
}

static void v_made(tide_protocol_t *p, tide_transport_t *t) {
    as_victim(p)->out->t = t;
    act(as_victim(p), AT_MADE);
}
static void v_data(tide_protocol_t *p, const void *d, size_t n) {
    (void)d;
    (void)n;
    act(as_victim(p), AT_DATA);
}
static bool v_eof(tide_protocol_t *p) {
    act(as_victim(p), AT_EOF);
    return true;
}
static void v_pause(tide_protocol_t *p) {
    as_victim(p)->out->pauses++;
    act(as_victim(p), AT_PAUSE);
}
static void v_resume(tide_protocol_t *p) {
    as_victim(p)->out->resumes++;
    act(as_victim(p), AT_RESUME);
}
static void v_lost(tide_protocol_t *p, int status) {
    victim *v = as_victim(p);
    v->out->lost++;
    v->out->status = status;
    v->out->t = NULL;
    /* The protocol is the user's: freeing it here is allowed, and ASan checks that
     * tide never touches it again. */
    free(v);
}

static const tide_protocol_ops_t victim_ops = {
    .size = TIDE_PROTOCOL_OPS_SIZE,
    .connection_made = v_made,
    .data_received = v_data,
    .eof_received = v_eof,
    .connection_lost = v_lost,
    .pause_writing = v_pause,
    .resume_writing = v_resume,
};

static bool outcome_lost(void *arg) { return ((outcome *)arg)->lost > 0; }

static void reentrant(tide_loop_t *loop, sk_kind kind, when at, what action) {
    outcome out = {0};
    victim *v = calloc(1, sizeof(*v));
    assert_non_null(v);
    v->base.ops = &victim_ops;
    v->at = at;
    v->action = action;
    v->out = &out;
    ts_recorder peer;
    ts_recorder_init(&peer);
    int c, s;
    assert_true(sk_raw_pair(kind, &c, &s));
    tide_transport_t *tp = sk_wrap(loop, s, &peer.base, true);
    sk_wrap(loop, c, &v->base, false);
    uint64_t off = 0;
    switch (at) {
    case AT_MADE:
        break;
    case AT_DATA:
        /* Two writes that may arrive in one read: no second delivery after close. */
        assert_int_equal(tide_transport_write(tp, "abc", 3), 0);
        assert_int_equal(tide_transport_write(tp, "def", 3), 0);
        break;
    case AT_EOF:
        assert_int_equal(tide_transport_write(tp, "abc", 3), 0);
        assert_int_equal(tide_transport_write_eof(tp), 0);
        break;
    case AT_PAUSE:
    case AT_RESUME:
        assert_int_equal(tide_transport_set_write_buffer_limits(out.t, 4096, 1024), 0);
        tide_transport_pause_reading(tp);
        sk_fill(out.t, 4096, &off);
        /* The pause (and, at AT_PAUSE, the close or abort) fires inside these. */
        while (!out.pauses)
            sk_write_pattern(out.t, 4096, &off);
        tide_transport_resume_reading(tp);
        break;
    }
    ts_run_until(loop, outcome_lost, &out, 10);
    ts_spin(loop, 10);
    assert_int_equal(out.acted, 1);
    assert_int_equal(out.lost, 1);
    assert_int_equal(out.status, 0);
    assert_int_equal(out.after_act, 0);
    assert_int_equal(out.write_rc, TIDE_ECLOSED);
    if (action == DO_ABORT)
        assert_int_equal(out.resumes, at == AT_RESUME ? 1 : 0);
    if (at == AT_PAUSE || at == AT_RESUME) {
        /* A graceful close still delivers everything that was accepted. */
        if (action == DO_CLOSE) {
            ts_run_until(loop, ts_pred_lost, &peer, 10);
            assert_int_equal(peer.len, off);
        }
    }
    tide_transport_close(peer.lost ? NULL : tp);
    ts_run_until(loop, ts_pred_lost, &peer, 10);
    assert_int_equal(peer.violations, 0);
    ts_recorder_free(&peer);
}

static void test_reentrant_close_and_abort(void **state) {
    tide_loop_t *loop = SK_LOOP(state);
    static const sk_kind kinds[] = {SK_SOCKETPAIR, SK_TCP4};
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
        for (int at = AT_MADE; at <= AT_RESUME; at++)
            for (int action = DO_CLOSE; action <= DO_ABORT; action++)
                reentrant(loop, kinds[k], (when)at, (what)action);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        TS_DUO_TEST(test_exchange_socketpair),
        TS_DUO_TEST(test_exchange_tcp4),
        TS_DUO_TEST(test_exchange_tcp6),
        TS_DUO_TEST(test_exchange_unix_path),
        TS_DUO_TEST(test_exchange_tcp4_buffered),
        TS_DUO_TEST(test_exchange_unix_buffered),
        TS_DUO_TEST(test_half_close_tcp4),
        TS_DUO_TEST(test_half_close_unix),
        TS_DUO_TEST(test_write_eof_after_flush),
        TS_DUO_TEST(test_eof_false_closes),
        TS_DUO_TEST(test_lost_once_never_synchronous),
        TS_DUO_TEST(test_write_after_close_tcp4),
        TS_DUO_TEST(test_write_after_close_unix),
        TS_DUO_TEST(test_pause_resume_abort_tcp4),
        TS_DUO_TEST(test_pause_resume_abort_unix),
        TS_DUO_TEST(test_pause_in_connection_made),
        TS_DUO_TEST(test_pause_in_connection_made_buffered),
        TS_DUO_TEST(test_pause_reading_stops_data),
        TS_DUO_TEST(test_peer_reset),
        TS_DUO_TEST(test_write_to_closed_peer_tcp4),
        TS_DUO_TEST(test_write_to_closed_peer_unix),
        TS_DUO_TEST(test_reset_during_large_write),
        TS_DUO_TEST(test_reentrant_close_and_abort),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
