/* Accept back-off when the process runs out of descriptors: the test lowers
 * RLIMIT_NOFILE and fills the descriptor table while a client waits in the backlog.
 * The server must report TIDE_EMFILE through on_error (and the log), must not spin
 * (accept4 calls are counted through the tide__sys seam), and must serve the waiting
 * client once descriptors are free again: after accept_retry_delay, or at once when
 * one of its own clients closes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "support/net.h"
#include "support/support.h"
#include "transports/transport_int.h"

static int accept_calls;

static int inject_errno; /* the next inject_left accept4 calls fail with it */
static int inject_left;

static int counting_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
    accept_calls++;
    if (inject_left > 0) {
        inject_left--;
        errno = inject_errno;
        return -1;
    }
    return accept4(fd, addr, len, flags);
}

typedef struct err_rec {
    int calls;
    int status;
    double retry;
    tide_server_t *server;
} err_rec;

static void on_error(tide_server_t *s, int status, double retry_after, void *arg) {
    err_rec *e = arg;
    e->calls++;
    e->status = status;
    e->retry = retry_after;
    e->server = s;
}

static bool pred_error(void *arg) { return ((err_rec *)arg)->calls > 0; }

static int warnings, errors;

static void count_warnings(tide_loop_t *loop, tide_log_level_t level, const char *msg, void *arg) {
    (void)loop;
    (void)arg;
    if (level == TIDE_LOG_WARNING && strstr(msg, "accept"))
        warnings++;
    if (level == TIDE_LOG_ERROR && strstr(msg, "accept"))
        errors++;
}

/* ---- descriptor exhaustion ---------------------------------------------------------- */

static struct rlimit saved_limit;
static int fill[256];
static int nfill;
static bool limited;

/* Lowers the soft limit and takes every descriptor left under it. */
static void exhaust(void) {
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved_limit), 0);
    struct rlimit low = saved_limit;
    low.rlim_cur = 96;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    limited = true;
    nfill = 0;
    for (;;) {
        int fd = dup(0);
        if (fd < 0) {
            assert_int_equal(errno, EMFILE);
            break;
        }
        assert_true(nfill < (int)(sizeof(fill) / sizeof(fill[0])));
        fill[nfill++] = fd;
    }
    assert_true(nfill > 0);
}

static void release(int n) {
    while (n-- > 0 && nfill > 0)
        close(fill[--nfill]);
}

static void restore(void) {
    release(nfill);
    if (limited)
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved_limit), 0);
    limited = false;
}

/* ---- fixture ------------------------------------------------------------------------ */

/* The fixture is nt_fixture; err records on_error. */
static err_rec err;

static int setup(void **state) {
    int fds = ts_count_fds();
    if (fds < 0 || fds > 48)
        return -1; /* the test needs headroom under its lowered limit */
    nt_setup(state);
    nt_fixture *f = *state;
    tide_loop_set_log_handler(f->loop, count_warnings, NULL);
    memset(&err, 0, sizeof(err));
    accept_calls = 0;
    warnings = errors = 0;
    inject_left = 0;
    return 0;
}

static int teardown(void **state) {
    restore(); /* in case the test failed while the table was full */
    return nt_teardown(state);
}

static void start_server(nt_fixture *f, double retry_delay) {
    tide_server_options_t o = {
        .accept_retry_delay = retry_delay, .on_error = on_error, .on_error_arg = &err};
    nt_listen(f, &o);
    tide__sys.accept4 = counting_accept4;
}

static void stop_server(nt_fixture *f) {
    tide_server_close(f->server);
    tide_server_abort_clients(f->server);
    for (int i = 0; i < NT_MAX; i++)
        if (f->srv[i].made)
            ts_run_until(f->loop, ts_pred_lost, &f->srv[i], 5);
    nt_run_for(f->loop, 0.01);
}

/* Out of descriptors: back off, retry every accept_retry_delay without spinning,
 * and serve the client once descriptors are free. */
static void test_emfile_backs_off_then_serves(void **state) {
    nt_fixture *f = *state;
    start_server(f, 0.05);
    int client = nt_raw_client(f->port);
    exhaust();
    ts_run_until(f->loop, pred_error, &err, 5);
    assert_int_equal(err.status, TIDE_EMFILE);
    assert_true(err.retry > 0.049 && err.retry < 0.051);
    assert_ptr_equal(err.server, f->server);
    assert_int_equal(warnings, 1);

    /* 0.3 s at one try per 0.05 s: about 7 accept calls, not thousands. */
    nt_run_for(f->loop, 0.3);
    assert_true(accept_calls >= 2); /* it does retry */
    assert_true(accept_calls <= 12);
    assert_int_equal(err.calls, accept_calls);
    assert_int_equal(warnings, accept_calls);
    assert_int_equal(f->srv[0].made, 0);
    assert_true(tide_server_is_serving(f->server));

    release(1);
    ts_run_until(f->loop, ts_pred_made, &f->srv[0], 5);
    assert_int_equal(tide_server_client_count(f->server), 1);
    restore();
    close(client);
    ts_run_until(f->loop, ts_pred_lost, &f->srv[0], 5);
    stop_server(f);
}

/* With a long retry delay, a client of this server closing (which frees its
 * descriptor) ends the back-off at once. */
static void test_emfile_resumes_when_client_closes(void **state) {
    nt_fixture *f = *state;
    start_server(f, 30);
    int first = nt_raw_client(f->port);
    ts_run_until(f->loop, ts_pred_made, &f->srv[0], 5);
    int second = nt_raw_client(f->port);
    exhaust();
    ts_run_until(f->loop, pred_error, &err, 5);
    assert_int_equal(err.status, TIDE_EMFILE);
    int calls = accept_calls;
    nt_run_for(f->loop, 0.1);
    assert_int_equal(accept_calls, calls); /* stopped, waiting */

    /* The first client half-closes: the server side sees EOF and closes, freeing its
     * descriptor (ours are all still held). */
    assert_int_equal(shutdown(first, SHUT_WR), 0);
    ts_run_until(f->loop, ts_pred_made, &f->srv[1], 5);
    assert_int_equal(f->srv[0].lost, 1);
    assert_int_equal(tide_server_client_count(f->server), 1);
    /* The accept loop goes on after serving it and, with the table full again, may
     * hit EMFILE once more (accept4 takes the descriptor before looking at the
     * queue): that is a second back-off, not a spin. */
    assert_true(err.calls == 1 || err.calls == 2);
    assert_true(accept_calls <= calls + 2);
    restore();
    close(first);
    close(second);
    ts_run_until(f->loop, ts_pred_lost, &f->srv[1], 5);
    stop_server(f);
}

/* Injected accept4 failures (the client stays in the backlog each time, so it is
 * served once accepting goes on). */
typedef struct accept_case {
    int err;
    int on_error;   /* on_error calls expected */
    int logged;     /* warnings + errors expected */
} accept_case;

static void test_accept_errors(void **state) {
    nt_fixture *f = *state;
    static const accept_case cases[] = {
        {ECONNABORTED, 0, 0}, /* stop; the next readiness event serves it */
        {EINTR, 0, 0},
        {EPERM, 0, 0},        /* that connection failed: accept the next at once */
        {ENOBUFS, 1, 1},      /* out of resources: back off, tell the user */
        {EINVAL, 0, 1},       /* a broken listener: back off, log an error */
    };
    enum { N = sizeof(cases) / sizeof(cases[0]) };
    start_server(f, 0.02);
    int clients[N];
    for (size_t i = 0; i < N; i++) {
        const accept_case *c = &cases[i];
        err.calls = 0;
        warnings = errors = 0;
        accept_calls = 0;
        inject_errno = c->err;
        inject_left = 1;
        clients[i] = nt_raw_client(f->port);
        ts_run_until(f->loop, ts_pred_made, &f->srv[i], 5);
        assert_int_equal(inject_left, 0);
        assert_true(accept_calls >= 2); /* the failure, then the client */
        assert_int_equal(err.calls, c->on_error);
        if (c->on_error)
            assert_int_equal(err.status, tide_err_from_errno(c->err));
        assert_int_equal(warnings + errors, c->logged);
    }
    for (size_t i = 0; i < N; i++)
        close(clients[i]);
    for (size_t i = 0; i < N; i++)
        ts_run_until(f->loop, ts_pred_lost, &f->srv[i], 5);
    stop_server(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_emfile_backs_off_then_serves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_emfile_resumes_when_client_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accept_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
