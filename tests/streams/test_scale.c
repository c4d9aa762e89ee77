/* Scale: 10,000 concurrent client tasks, each echoing over loopback TCP with a server
 * task of its own (start_server in the same process and loop), all alive at the same
 * time, with the peak memory growth per connection asserted under a bound.
 *
 * Both ends live in this process, so each connection costs two descriptors: N is
 * min(10000, (hard RLIMIT_NOFILE - 100) / 2), printed at the start (the soft limit is
 * raised to the hard one). Under AddressSanitizer the same N runs (about 5 s and
 * 600 MB there) but the memory assertion is skipped: shadow memory, redzones and
 * quarantine make RSS meaningless (it measures ~58 KiB per connection).
 *
 * Single-threaded: every callback and task runs on the loop's thread. Task bodies
 * never call cmocka's asserts (a longjmp must not leave a task's stack): they return
 * the failing line, which the join callback records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "support/support.h"


#define WANTED_N 10000
#ifdef TS_ASAN
/* Instrumented frames are several times larger. */
#define STACK_SIZE ((size_t)64 * 1024)
#else
#define STACK_SIZE ((size_t)32 * 1024)
#endif

/* Peak RSS growth allowed per connection, counting both ends (client and server).
 * What a connection holds in user space: two task stacks of which only the top pages
 * are touched (a task here uses well under 8 KiB: the 256-byte read buffer plus the
 * frames of the _await calls and the loop's dispatch), two reader/writer pairs with
 * their transports (a few hundred bytes each) and the readers' buffers (the message is
 * ~20 bytes, but a buffer may be allocated in one block of up to a few KiB), libev's
 * per-descriptor entries, and the task records. Kernel socket buffers are not counted
 * in RSS. Measured on x86-64 Linux (gcc, Debug, 9,950 connections): 26.6 KiB per
 * connection (the test prints its figure); 48 KiB leaves room for allocator and page-rounding differences
 * while still catching a per-connection cost that grows to a full default stack
 * (256 KiB) or a 64 KiB buffer per reader. */
#define MAX_KIB_PER_CONNECTION 48

#define MSG_CAP 32

typedef struct scale {
    tide_loop_t *loop;
    uint16_t port;
    size_t n;
    tide_task_options_t topts;
    tide_task_t **clients; /* valid until each one's join callback ran */
    bool *waiting;         /* client i sleeps at the barrier */
    size_t connected;      /* clients whose open succeeded */
    size_t served;         /* server tasks started */
    size_t server_alive, server_alive_max;
    size_t client_alive, client_alive_max;
    bool released;
    size_t clients_joined, client_failures;
    int first_client_failure;
    size_t server_done, server_failures;
    int first_server_failure;
    size_t spawn_failures;
} scale;

static scale S;


/* The barrier opens once every client is connected and every server task started:
 * from then on all 2N tasks are alive together. Waiting clients sleep (no polling)
 * and are woken by a cancellation, the one wake-up a task can receive from outside. */
static void maybe_release(void) {
    if (S.released || S.connected < S.n || S.served < S.n)
        return;
    S.released = true;
    for (size_t i = 0; i < S.n; i++)
        if (S.waiting[i])
            tide_task_cancel(S.clients[i]);
}

static void message_for(size_t i, char *buf, size_t *len) {
    *len = (size_t)snprintf(buf, MSG_CAP, "task %05zu echoes\n", i);
}

static int client_body(size_t i) {
    tide_reader_t *r;
    tide_writer_t *w;
    int rc = tide_loop_open_connection_await(S.loop, "127.0.0.1", S.port, 1024, NULL, &r, &w);
    if (rc != 0) {
        fprintf(stderr, "client %zu: open: %s\n", i, tide_strerror(rc));
        return __LINE__;
    }
    S.connected++;
    maybe_release();
    if (!S.released) {
        S.waiting[i] = true;
        rc = tide_task_sleep(ts_scaled(60));
        S.waiting[i] = false;
        if (rc != TIDE_ECANCELLED || !S.released) {
            tide_writer_abort(w);
            tide_writer_wait_closed_await(w);
            fprintf(stderr, "client %zu: barrier: %d\n", i, rc);
            return __LINE__;
        }
    }
    char msg[MSG_CAP], echo[MSG_CAP];
    size_t len, got = 0;
    message_for(i, msg, &len);
    rc = tide_writer_write(w, msg, len);
    if (rc == 0)
        rc = tide_writer_drain_await(w);
    if (rc == 0)
        rc = tide_reader_readexactly_await(r, echo, len, &got);
    tide_writer_close(w);
    int closed = tide_writer_wait_closed_await(w);
    TS_CHECK(rc == 0);
    TS_CHECK(got == len && memcmp(echo, msg, len) == 0);
    TS_CHECK(closed == 0);
    return 0;
}

static int client_task(void *arg) {
    S.client_alive++;
    if (S.client_alive > S.client_alive_max)
        S.client_alive_max = S.client_alive;
    int rc = client_body((size_t)(uintptr_t)arg);
    S.client_alive--;
    return rc;
}

static void on_client_join(tide_task_t *t, int result, void *arg) {
    (void)t;
    S.clients[(size_t)(uintptr_t)arg] = NULL;
    S.clients_joined++;
    if (result != 0 && S.client_failures++ == 0)
        S.first_client_failure = result;
}

/* The server side of asyncio's echo: read whatever arrives, write it back, drain;
 * close at EOF. */
static int server_body(tide_writer_t *w) {
    tide_reader_t *r = tide_writer_get_reader(w);
    char buf[256];
    size_t n;
    int rc;
    while ((rc = tide_reader_read_await(r, buf, sizeof buf, &n)) == 0) {
        rc = tide_writer_write(w, buf, n);
        if (rc == 0)
            rc = tide_writer_drain_await(w);
        if (rc != 0)
            break;
    }
    tide_writer_close(w);
    int closed = tide_writer_wait_closed_await(w);
    TS_CHECK(rc == TIDE_EOF);
    TS_CHECK(closed == 0);
    return 0;
}

static int server_task(void *arg) {
    S.served++;
    S.server_alive++;
    if (S.server_alive > S.server_alive_max)
        S.server_alive_max = S.server_alive;
    maybe_release();
    int rc = server_body(arg);
    S.server_alive--;
    S.server_done++;
    if (rc != 0 && S.server_failures++ == 0)
        S.first_server_failure = rc;
    return rc;
}

static void on_client_connected(tide_reader_t *r, tide_writer_t *w, void *arg) {
    (void)r;
    (void)arg;
    /* Detached: server_task accounts for itself. */
    if (tide_task_spawn(S.loop, server_task, w, &S.topts, NULL) != 0) {
        S.spawn_failures++;
        tide_writer_abort(w);
    }
}

static bool all_done(void *arg) {
    (void)arg;
    return (S.clients_joined == S.n && S.server_done == S.n) || S.spawn_failures > 0;
}

static void on_server_closed(tide_server_t *server, int status, void *arg) {
    (void)server;
    *(int *)arg = status == 0 ? 1 : 2;
}

static size_t pick_n(void) {
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    size_t n = WANTED_N;
    /* Two descriptors per connection, plus ~100 for the listener, libev, stdio. */
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 2 * (rlim_t)n + 100)
        n = rl.rlim_max > 100 ? (size_t)(rl.rlim_max - 100) / 2 : 0;
    printf("scale: %zu concurrent connections (descriptor hard limit %llu%s)\n", n,
           (unsigned long long)rl.rlim_max,
           n < WANTED_N ? ": fewer than 10000, as two descriptors per connection must fit" : "");
    return n;
}

static long maxrss_kib(void) {
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
    return ru.ru_maxrss; /* KiB on Linux */
}

static void test_concurrent_echo_tasks(void **state) {
    (void)state;
    memset(&S, 0, sizeof S);
    S.n = pick_n();
    assert_true(S.n >= 1000); /* a limit this low makes the test meaningless */
    int fds_before = ts_count_fds();
    S.loop = ts_loop_new();
    S.topts.stack_size = STACK_SIZE;
    S.clients = calloc(S.n, sizeof *S.clients);
    S.waiting = calloc(S.n, sizeof *S.waiting);
    assert_non_null(S.clients);
    assert_non_null(S.waiting);

    tide_server_options_t so = {0};
    so.family = AF_INET;
    so.backlog = 4096; /* every connect is in flight at once: keep SYNs from being dropped */
    tide_server_t *server = NULL;
    assert_int_equal(tide_loop_start_server(S.loop, "127.0.0.1", 0, 1024, &so, on_client_connected,
                                            NULL, &server),
                     0);
    struct sockaddr_in sin;
    socklen_t slen = sizeof sin;
    assert_int_equal(tide_server_get_sockname(server, 0, (struct sockaddr *)&sin, &slen), 0);
    S.port = ntohs(sin.sin_port);

    long rss_before = maxrss_kib();
    for (size_t i = 0; i < S.n; i++) {
        assert_int_equal(
            tide_task_spawn(S.loop, client_task, (void *)(uintptr_t)i, &S.topts, &S.clients[i]), 0);
        assert_int_equal(tide_task_join(S.clients[i], on_client_join, (void *)(uintptr_t)i), 0);
    }
    ts_run_until(S.loop, all_done, NULL, 90);
    long rss_after = maxrss_kib();

    assert_int_equal(S.spawn_failures, 0);
    assert_int_equal(S.first_client_failure, 0);
    assert_int_equal(S.client_failures, 0);
    assert_int_equal(S.first_server_failure, 0);
    assert_int_equal(S.server_failures, 0);
    assert_true(S.released);
    assert_int_equal(S.connected, S.n);
    assert_int_equal(S.served, S.n);
    /* All 2N tasks were alive at the same time (the barrier guarantees it; this checks
     * the barrier). */
    assert_int_equal(S.client_alive_max, S.n);
    assert_int_equal(S.server_alive_max, S.n);

    double per_conn = (double)(rss_after - rss_before) / (double)S.n;
    printf("scale: peak RSS %ld KiB -> %ld KiB: %.1f KiB per connection (both ends)\n",
           rss_before, rss_after, per_conn);
#ifdef TS_ASAN
    printf("scale: memory bound (%d KiB per connection) not checked under AddressSanitizer\n",
           MAX_KIB_PER_CONNECTION);
#else
    assert_true(per_conn < MAX_KIB_PER_CONNECTION);
#endif

    int server_closed = 0;
    tide_server_close(server);
    assert_int_equal(tide_server_wait_closed(server, 0, on_server_closed, &server_closed), 0);
    ts_run_until_flag(S.loop, &server_closed, 10);
    assert_int_equal(server_closed, 1);
    free(S.clients);
    free(S.waiting);
    ts_finish(S.loop, fds_before);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_echo_tasks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
