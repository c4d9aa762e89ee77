/* Subprocess streams (create_subprocess_exec / _shell): the child's pipes as readers
 * and a writer in tasks, wait and communicate in both styles, communicate with
 * megabytes each way on all three pipes at once (no deadlock), a deadline that
 * leaves a hung child to the caller who kills it, a cancelled wait, a missing
 * program, and close killing a running child. Every test ends with a clean loop
 * close and the descriptor count it started with. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "support/support.h"

typedef struct fx {
    tide_loop_t *loop;
    int fds_before;
} fx;

static int setup(void **state) {
    fx *f = calloc(1, sizeof(*f));
    f->fds_before = ts_count_fds();
    f->loop = ts_loop_new();
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    /* Closed processes and their streams are freed over a few turns. */
    ts_spin(f->loop, 10);
    ts_finish(f->loop, f->fds_before);
    free(f);
    return 0;
}

#define FX_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

static tide_subprocess_options_t all_pipes(void) {
    tide_subprocess_options_t o;
    tide_subprocess_options_init(&o, TIDE_STDIO_PIPE);
    return o;
}

/* ---- the streams themselves, in a task ------------------------------------------------ */

static int cat_lines_task(void *arg) {
    tide_loop_t *loop = arg;
    tide_subprocess_options_t o = all_pipes();
    const char *argv[] = {"cat", NULL};
    tide_process_t *p;
    TS_CHECK(tide_loop_create_subprocess_exec(loop, argv, &o, 0, &p) == 0);
    TS_CHECK(tide_process_get_pid(p) > 0);
    tide_writer_t *in = tide_process_stdin(p);
    tide_reader_t *out = tide_process_stdout(p);
    TS_CHECK(in != NULL && out != NULL && tide_process_stderr(p) != NULL);
    char line[64];
    size_t n;
    for (int i = 0; i < 100; i++) {
        char msg[32];
        int len = snprintf(msg, sizeof(msg), "line %d\n", i);
        TS_CHECK(tide_writer_write(in, msg, (size_t)len) == 0);
        TS_CHECK(tide_writer_drain_await(in) == 0);
        TS_CHECK(tide_reader_readline_await(out, line, sizeof(line), &n) == 0);
        TS_CHECK(n == (size_t)len && memcmp(line, msg, n) == 0);
    }
    TS_CHECK(tide_writer_write_eof(in) == 0);
    TS_CHECK(tide_reader_read_await(out, line, sizeof(line), &n) == TIDE_EOF);
    int rc = -1;
    TS_CHECK(tide_process_wait_await(p, &rc) == 0);
    TS_CHECK(rc == 0);
    TS_CHECK(tide_process_get_returncode(p, &rc) && rc == 0);
    /* A wait after the exit answers at once. */
    TS_CHECK(tide_process_wait_await(p, &rc) == 0 && rc == 0);
    tide_process_close(p);
    return 0;
}

static void test_streams_in_a_task(void **state) {
    fx *f = *state;
    assert_int_equal(ts_run_task(f->loop, cat_lines_task, f->loop), 0);
}

/* ---- communicate, callback style ---------------------------------------------------- */

typedef struct comm_result {
    int calls, status, returncode;
    char out[64], err[64];
} comm_result;

typedef struct waited_cb_state {
    int *calls;
    int *code;
} waited_cb_state;

static void on_reaped(tide_process_t *p, int status, int returncode, void *arg) {
    (void)p;
    waited_cb_state *st = arg;
    assert_int_equal(status, 0);
    *st->code = returncode;
    (*st->calls)++;
}

static void on_communicated(tide_process_t *p, int status, int returncode, const void *out,
                            size_t out_len, const void *err, size_t err_len, void *arg) {
    comm_result *r = arg;
    r->calls++;
    r->status = status;
    r->returncode = returncode;
    if (out_len > 0) /* out and err are NULL for a descriptor not piped */
        memcpy(r->out, out, out_len < 63 ? out_len : 63);
    if (err_len > 0)
        memcpy(r->err, err, err_len < 63 ? err_len : 63);
    tide_process_close(p);
}

static void test_communicate_callback(void **state) {
    fx *f = *state;
    tide_subprocess_options_t o = all_pipes();
    tide_process_t *p;
    assert_int_equal(
        tide_loop_create_subprocess_shell(f->loop, "cat; echo oops >&2; exit 4", &o, 0, &p), 0);
    comm_result r = {0};
    assert_int_equal(tide_process_communicate(p, "from stdin", 10, on_communicated, &r), 0);
    assert_int_equal(tide_process_communicate(p, NULL, 0, on_communicated, &r), TIDE_EBUSY);
    assert_int_equal(r.calls, 0); /* never inside the call */
    ts_run_until_flag(f->loop, &r.calls, 10);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.returncode, 4);
    assert_string_equal(r.out, "from stdin");
    assert_string_equal(r.err, "oops\n");
}

static void test_communicate_without_pipes(void **state) {
    fx *f = *state;
    tide_subprocess_options_t o;
    tide_subprocess_options_init(&o, TIDE_STDIO_DEVNULL);
    tide_process_t *p;
    assert_int_equal(tide_loop_create_subprocess_shell(f->loop, "exit 3", &o, 0, &p), 0);
    assert_null(tide_process_stdin(p));
    assert_null(tide_process_stdout(p));
    assert_int_equal(tide_process_communicate(p, "x", 1, on_communicated, NULL), TIDE_EINVAL);
    comm_result r = {0};
    assert_int_equal(tide_process_communicate(p, NULL, 0, on_communicated, &r), 0);
    ts_run_until_flag(f->loop, &r.calls, 10);
    assert_int_equal(r.returncode, 3);
    assert_string_equal(r.out, "");
}

/* Closes p and runs until its child is reaped (close kills it if need be). */
static void close_and_reap(tide_loop_t *loop, tide_process_t *p, int *code) {
    int calls = 0;
    waited_cb_state st = {&calls, code};
    assert_int_equal(tide_process_wait(p, on_reaped, &st), 0);
    tide_process_close(p);
    tide_process_close(p); /* idempotent */
    ts_run_until_flag(loop, &calls, 10);
}

/* ---- communicate, task style, megabytes on all three pipes --------------------------- */

#define BIG_IN ((size_t)8 << 20)
#define BIG_ERR ((size_t)3 << 20)

static int big_communicate_task(void *arg) {
    tide_loop_t *loop = arg;
    unsigned char *input = malloc(BIG_IN);
    TS_CHECK(input != NULL);
    for (size_t i = 0; i < BIG_IN; i++)
        input[i] = (unsigned char)(i ^ (i >> 11));
    tide_subprocess_options_t o = all_pipes();
    tide_process_t *p;
    /* cat echoes stdin while stderr fills at the same time: a naive sequence (write
     * all, then read stdout, then stderr) would deadlock on full pipes. */
    TS_CHECK(tide_loop_create_subprocess_shell(loop, "head -c 3145728 /dev/zero >&2 & cat; wait",
                                               &o, 0, &p) == 0);
    char *out = NULL, *err = NULL;
    size_t out_len = 0, err_len = 0;
    int rc = -1;
    TS_CHECK(
        tide_process_communicate_await(p, input, BIG_IN, &rc, &out, &out_len, &err, &err_len) == 0);
    TS_CHECK(rc == 0);
    TS_CHECK(out_len == BIG_IN && memcmp(out, input, BIG_IN) == 0);
    TS_CHECK(out[out_len] == '\0');
    TS_CHECK(err_len == BIG_ERR);
    for (size_t i = 0; i < err_len; i++)
        TS_CHECK(err[i] == 0);
    tide_free(out);
    tide_free(err);
    free(input);
    tide_process_close(p);
    return 0;
}

static void test_communicate_megabytes(void **state) {
    fx *f = *state;
    assert_int_equal(ts_run_task(f->loop, big_communicate_task, f->loop), 0);
}

/* ---- deadlines and cancellation ------------------------------------------------------ */

static int deadline_task(void *arg) {
    tide_loop_t *loop = arg;
    tide_subprocess_options_t o = all_pipes();
    tide_process_t *p;
    TS_CHECK(tide_loop_create_subprocess_shell(loop, "echo partial; exec sleep 30", &o, 0, &p) ==
             0);
    TS_CHECK(tide_task_deadline_push(0.2) == 0);
    int rc = tide_process_communicate_await(p, NULL, 0, NULL, NULL, NULL, NULL, NULL);
    tide_task_deadline_pop();
    TS_CHECK(rc == TIDE_ETIMEOUT);
    /* The hung child is the caller's: still running, killed now, reaped by wait. */
    TS_CHECK(!tide_process_get_returncode(p, NULL));
    TS_CHECK(tide_process_kill(p) == 0);
    int code = 0;
    TS_CHECK(tide_process_wait_await(p, &code) == 0);
    TS_CHECK(code == -SIGKILL);
    TS_CHECK(tide_process_kill(p) == TIDE_EPROCESS_EXITED);
    tide_process_close(p);
    return 0;
}

static void test_deadline_then_kill(void **state) {
    fx *f = *state;
    assert_int_equal(ts_run_task(f->loop, deadline_task, f->loop), 0);
}

typedef struct waited {
    tide_process_t *p;
    int rc, code;
} waited;

static int wait_task(void *arg) {
    waited *w = arg;
    w->rc = tide_process_wait_await(w->p, &w->code);
    return 0;
}

static void on_waited(tide_process_t *p, int status, int returncode, void *arg) {
    (void)p;
    waited *w = arg;
    w->rc = status;
    w->code = returncode;
}

static bool both_waited(void *arg) {
    waited **w = arg;
    return w[0]->rc != 1 && w[1]->rc != 1;
}

static void test_cancelled_wait(void **state) {
    fx *f = *state;
    const char *argv[] = {"sleep", "30", NULL};
    tide_process_t *p;
    assert_int_equal(tide_loop_create_subprocess_exec(f->loop, argv, NULL, 0, &p), 0);
    assert_null(tide_process_stdout(p)); /* inherited by default in the stream form */
    waited w = {.p = p, .rc = 1};
    ts_joined j;
    tide_task_t *task = ts_spawn_joined(f->loop, wait_task, &w, &j);
    ts_spin(f->loop, 3);
    assert_int_equal(tide_task_cancel(task), 1);
    ts_run_until_flag(f->loop, &j.calls, 5);
    assert_int_equal(w.rc, TIDE_ECANCELLED);
    /* Two callback waits, then a terminate: both see it. */
    waited a = {.rc = 1}, b = {.rc = 1};
    assert_int_equal(tide_process_wait(p, on_waited, &a), 0);
    assert_int_equal(tide_process_wait(p, on_waited, &b), 0);
    assert_int_equal(tide_process_terminate(p), 0);
    ts_run_until(f->loop, both_waited, (waited *[]){&a, &b}, 10);
    assert_int_equal(a.rc, 0);
    assert_int_equal(a.code, -SIGTERM);
    assert_int_equal(b.code, -SIGTERM);
    tide_process_close(p);
}

/* ---- errors and closing --------------------------------------------------------------- */

static void test_missing_program(void **state) {
    fx *f = *state;
    const char *argv[] = {"tide-no-such-program", NULL};
    tide_process_t *p = NULL;
    assert_int_equal(tide_loop_create_subprocess_exec(f->loop, argv, NULL, 0, &p), TIDE_ENOENT);
    assert_null(p);
    assert_int_equal(tide_loop_create_subprocess_shell(f->loop, NULL, NULL, 0, &p), TIDE_EINVAL);
    assert_int_equal(tide_process_wait_await(NULL, NULL), TIDE_EINVAL);
}

static void on_read(tide_reader_t *r, int status, const void *data, size_t len, void *arg) {
    (void)r;
    (void)data;
    (void)len;
    *(int *)arg = status;
}

static bool read_done(void *arg) { return *(int *)arg != 1; }

static void test_close_kills(void **state) {
    fx *f = *state;
    tide_subprocess_options_t o = all_pipes();
    tide_process_t *p;
    assert_int_equal(tide_loop_create_subprocess_shell(f->loop, "exec sleep 30", &o, 0, &p), 0);
    /* A read pending when the process is closed ends with the pipe. */
    int read_status = 1;
    assert_int_equal(tide_reader_read(tide_process_stdout(p), 10, on_read, &read_status), 0);
    ts_spin(f->loop, 3);
    int code = 0;
    close_and_reap(f->loop, p, &code);
    assert_int_equal(code, -SIGKILL);
    ts_run_until(f->loop, read_done, &read_status, 10);
    assert_int_equal(read_status, TIDE_EOF);
}

static void test_outside_task(void **state) {
    fx *f = *state;
    const char *argv[] = {"true", NULL};
    tide_process_t *p;
    assert_int_equal(tide_loop_create_subprocess_exec(f->loop, argv, NULL, 0, &p), 0);
    int rc = 7;
    assert_int_equal(tide_process_wait_await(p, &rc), TIDE_ENOTASK);
    assert_int_equal(rc, 7);
    assert_int_equal(tide_process_communicate_await(p, NULL, 0, &rc, NULL, NULL, NULL, NULL),
                     TIDE_ENOTASK);
    close_and_reap(f->loop, p, &rc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        FX_TEST(test_streams_in_a_task),
        FX_TEST(test_communicate_callback),
        FX_TEST(test_communicate_without_pipes),
        FX_TEST(test_communicate_megabytes),
        FX_TEST(test_deadline_then_kill),
        FX_TEST(test_cancelled_wait),
        FX_TEST(test_missing_program),
        FX_TEST(test_close_kills),
        FX_TEST(test_outside_task),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
