/* create_server with a host name, from a task: the name is resolved on a worker
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_server_name_in_task),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
