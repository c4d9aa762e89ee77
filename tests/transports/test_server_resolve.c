/* create_server with a host name, from a task, and its callback form: the name is resolved on a worker
 * thread while only the task waits (so a deadline that has already passed ends the
 * call with TIDE_ETIMEOUT, which a blocking resolver could not do), and the server
 * then listens on the loopback addresses the name resolves to. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include "support/support.h"

typedef struct fx {
    ts_recorder_pool pool;
    int rc, rc_deadline;
    int family;
    tide_server_t *server;
} fx;

static int serve_task(void *arg) {
    fx *f = arg;
    tide_loop_t *loop = tide_task_get_loop(tide_task_current());
    tide_server_t *s = NULL;
    TS_CHECK(tide_task_deadline_push(0) == 0);
    f->rc_deadline =
        tide_loop_create_server(loop, "localhost", 0, ts_recorder_factory(), &f->pool, NULL, &s);
    tide_task_deadline_pop();
    TS_CHECK(s == NULL);
    f->rc = tide_loop_create_server(loop, "localhost", 0, ts_recorder_factory(), &f->pool, NULL,
                                    &f->server);
    if (f->rc == 0) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        TS_CHECK(tide_server_get_sockname(f->server, 0, (struct sockaddr *)&ss, &len) == 0);
        f->family = ss.ss_family;
    }
    return 0;
}

static void test_create_server_name_in_task(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    fx f = {0};
    assert_int_equal(ts_run_task(loop, serve_task, &f), 0);
    assert_int_equal(f.rc_deadline, TIDE_ETIMEOUT);
    assert_int_equal(f.rc, 0);
    assert_true(f.family == AF_INET || f.family == AF_INET6);
    tide_server_close(f.server);
    ts_spin(loop, 3);
    ts_loop_close(loop);
}

typedef struct created {
    int calls;
    int status;
    tide_server_t *server;
} created;

static void on_created(tide_loop_t *loop, int status, tide_server_t *server, void *arg) {
    (void)loop;
    created *c = arg;
    c->calls++;
    c->status = status;
    c->server = server;
}

static bool pred_created(void *arg) { return ((created *)arg)->calls > 0; }

/* The callback form, for code outside tasks: the name is resolved on the worker pool
 * and the completion comes on a later iteration, once, with the server or the error
 * create_server would have returned. */
static void test_create_server_async(void **state) {
    (void)state;
    tide_loop_t *loop = ts_loop_new();
    ts_recorder rec[2];
    ts_recorder_init(&rec[0]);
    ts_recorder_init(&rec[1]);
    ts_recorder_pool pool = {rec, 2, 0};
    created a = {0}, b = {0};
    assert_int_equal(tide_loop_create_server_async(loop, "localhost", 0, ts_recorder_factory(), &pool,
                                                   NULL, on_created, &a),
                     0);
    assert_int_equal(a.calls, 0); /* never inside the call */
    ts_run_until(loop, pred_created, &a, 10);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, 0);
    assert_non_null(a.server);
    /* The port it listens on, for a second server that wants it too. */
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    assert_int_equal(tide_server_get_sockname(a.server, 0, (struct sockaddr *)&ss, &len), 0);
    uint16_t port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                  : ((struct sockaddr_in6 *)&ss)->sin6_port);
    /* The same port again: the bind fails, and the failure comes through cb. */
    tide_server_options_t o = {.family = ss.ss_family};
    assert_int_equal(tide_loop_create_server_async(loop, ss.ss_family == AF_INET ? "127.0.0.1" : "::1",
                                                   port, ts_recorder_factory(), &pool, &o, on_created, &b),
                     0);
    ts_run_until(loop, pred_created, &b, 10);
    assert_int_equal(b.status, TIDE_EADDRINUSE);
    assert_null(b.server);
    /* Checked before anything starts. */
    tide_server_options_t bad = {.family = AF_UNIX};
    assert_int_equal(tide_loop_create_server_async(loop, NULL, 0, ts_recorder_factory(), &pool, &bad,
                                                   on_created, &b),
                     TIDE_EINVAL);
    assert_int_equal(tide_loop_create_server_async(loop, NULL, 0, ts_recorder_factory(), &pool, NULL,
                                                   NULL, NULL),
                     TIDE_EINVAL);
    tide_server_close(a.server);
    ts_spin(loop, 3);
    ts_recorder_free(&rec[0]);
    ts_recorder_free(&rec[1]);
    ts_loop_close(loop);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_server_name_in_task),
        cmocka_unit_test(test_create_server_async),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
