/* Subprocesses with the subprocess protocol (tide_loop_subprocess_exec / _shell) and
 * real programs: cat, sh, head, sleep, python3. The callback order, return codes
 * (negative for a signal), send_signal / terminate / kill, close killing a running
 * child, a missing program as the call's own error, every stdio mode with env, cwd,
 * pass_fds, a new process group and session, nothing leaking into children, and a
 * child that stops reading (EPIPE, no SIGPIPE); the volume and scale tests are in
 * test_process_scale.c. Each test ends with a clean loop close, the same descriptor
 * count as before, and no child left unreaped (support/proc.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "transports/transport_int.h"
#include "support/proc.h"
#include "support/support.h"

static int run_exec(pr_fx *f, const char *const *argv, const tide_subprocess_options_t *o) {
    int rc = tide_loop_subprocess_exec(f->loop, &f->r.base, argv, o, NULL);
    if (rc == 0)
        ts_run_until(f->loop, pr_pred_lost, &f->r, 20);
    return rc;
}

static int run_shell(pr_fx *f, const char *cmd, const tide_subprocess_options_t *o) {
    int rc = tide_loop_subprocess_shell(f->loop, &f->r.base, cmd, o, NULL);
    if (rc == 0)
        ts_run_until(f->loop, pr_pred_lost, &f->r, 20);
    return rc;
}

/* ---- tests ---------------------------------------------------------------------- */

static void feed_hello(pr_rec *r) {
    tide_transport_t *in = tide_subprocess_get_pipe_transport(r->t, 0);
    assert_non_null(in);
    assert_string_equal(tide_transport_kind(in), "write pipe");
    assert_int_equal(tide_transport_write(in, "hello\n", 6), 0);
    assert_int_equal(tide_transport_write_eof(in), 0);
}

static void test_cat_echo(void **state) {
    pr_fx *f = *state;
    f->r.on_made = feed_hello;
    tide_subprocess_t *t = NULL;
    const char *argv[] = {"cat", NULL};
    assert_int_equal(tide_loop_subprocess_exec(f->loop, &f->r.base, argv, NULL, &t), 0);
    assert_non_null(t);
    assert_true(tide_subprocess_get_pid(t) > 0);
    assert_false(tide_subprocess_get_returncode(t, NULL));
    assert_int_equal(f->r.nevents, 0); /* connection_made is deferred */
    ts_run_until(f->loop, pr_pred_lost, &f->r, 10);
    assert_string_equal(pr_text(&f->r, 1), "hello\n");
    assert_int_equal(f->r.len[2], 0);
    assert_int_equal(f->r.returncode, 0);
    /* made first, lost last, each pipe and the exit once in between */
    assert_int_equal(f->r.nevents, 6);
    assert_int_equal(f->r.events[0], 'M');
    assert_int_equal(f->r.events[5], 'L');
    for (const char *c = "012X"; *c; c++)
        assert_non_null(memchr(f->r.events + 1, *c, 4));
    assert_int_equal(f->r.pipe_status[0] | f->r.pipe_status[1] | f->r.pipe_status[2], 0);
}

static void test_shell_outputs_and_status(void **state) {
    pr_fx *f = *state;
    assert_int_equal(run_shell(f, "echo out; echo err >&2; exit 5", NULL), 0);
    assert_string_equal(pr_text(&f->r, 1), "out\n");
    assert_string_equal(pr_text(&f->r, 2), "err\n");
    assert_int_equal(f->r.returncode, 5);
}

static void send_term(pr_rec *r) { assert_int_equal(tide_subprocess_terminate(r->t), 0); }
static void send_kill(pr_rec *r) { assert_int_equal(tide_subprocess_kill(r->t), 0); }
static void send_hup(pr_rec *r) { assert_int_equal(tide_subprocess_send_signal(r->t, SIGHUP), 0); }

static void test_killed_by_signal(void **state) {
    pr_fx *f = *state;
    void (*senders[])(pr_rec *) = {send_term, send_kill, send_hup};
    int expect[] = {-SIGTERM, -SIGKILL, -SIGHUP};
    for (int i = 0; i < 3; i++) {
        pr_rec_free(&f->r);
        pr_rec_init(&f->r);
        f->r.on_made = senders[i];
        const char *argv[] = {"sleep", "30", NULL};
        assert_int_equal(run_exec(f, argv, NULL), 0);
        assert_int_equal(f->r.returncode, expect[i]);
    }
}

static void signal_after_exit(pr_rec *r) {
    /* From process_exited on, the pid may be anyone's: no signal goes out. */
    assert_int_equal(tide_subprocess_send_signal(r->t, SIGTERM), TIDE_EPROCESS_EXITED);
    assert_int_equal(tide_subprocess_kill(r->t), TIDE_EPROCESS_EXITED);
}

static void r_exited_then_signal(tide_subprocess_protocol_t *p) {
    pr_exited(p);
    signal_after_exit((pr_rec *)p);
}

static void test_signal_after_exit(void **state) {
    pr_fx *f = *state;
    static const tide_subprocess_protocol_ops_t ops = {
        .size = TIDE_SUBPROCESS_PROTOCOL_OPS_SIZE,
        .connection_made = pr_made,
        .pipe_data_received = pr_data,
        .pipe_connection_lost = pr_pipe_lost,
        .process_exited = r_exited_then_signal,
        .connection_lost = pr_lost,
    };
    f->r.base.ops = &ops;
    assert_int_equal(run_shell(f, "exit 0", NULL), 0);
    assert_int_equal(f->r.exited, 1);
}

static void close_at_once(pr_rec *r) {
    tide_subprocess_close(r->t);
    tide_subprocess_close(r->t); /* idempotent */
}

static void test_close_kills_running_child(void **state) {
    pr_fx *f = *state;
    f->r.on_made = close_at_once;
    const char *argv[] = {"sleep", "30", NULL};
    double start = tide__now_monotonic();
    assert_int_equal(run_exec(f, argv, NULL), 0);
    assert_true(tide__now_monotonic() - start < ts_scaled(10));
    assert_int_equal(f->r.returncode, -SIGKILL);
    assert_string_equal(f->r.events + f->r.nevents - 1, "L");
}

static void test_missing_program(void **state) {
    pr_fx *f = *state;
    int fds = ts_count_fds();
    const char *in_path[] = {"tide-no-such-program", NULL};
    const char *absolute[] = {"/nonexistent/tide/prog", "arg", NULL};
    /* A file without execute permission, and one the kernel cannot run. */
    char plain[] = "/tmp/tide-noexec-XXXXXX", junk[] = "/tmp/tide-junk-XXXXXX";
    int pfd = mkstemp(plain), jfd = mkstemp(junk);
    assert_true(pfd >= 0 && jfd >= 0);
    assert_int_equal(write(jfd, "\x01\x02\x03", 3), 3);
    assert_int_equal(fchmod(jfd, 0700), 0);
    close(pfd);
    close(jfd);
    const char *not_exec[] = {plain, NULL};
    const char *not_runnable[] = {junk, NULL};
    tide_subprocess_t *t = NULL;
    assert_int_equal(tide_loop_subprocess_exec(f->loop, &f->r.base, in_path, NULL, &t),
                     TIDE_ENOENT);
    assert_int_equal(tide_loop_subprocess_exec(f->loop, &f->r.base, absolute, NULL, &t),
                     TIDE_ENOENT);
    assert_int_equal(tide_loop_subprocess_exec(f->loop, &f->r.base, not_exec, NULL, &t),
                     TIDE_EACCES);
    assert_int_equal(tide_loop_subprocess_exec(f->loop, &f->r.base, not_runnable, NULL, &t),
                     -ENOEXEC);
    unlink(plain);
    unlink(junk);
    tide_subprocess_options_t o;
    tide_subprocess_options_init(&o, TIDE_STDIO_PIPE);
    o.cwd = "/nonexistent/tide/dir";
    const char *sh[] = {"sh", "-c", "true", NULL};
    assert_int_equal(tide_loop_subprocess_exec(f->loop, &f->r.base, sh, &o, &t), TIDE_ENOENT);
    assert_null(t);
    /* Arguments refused before anything starts. */
    const char *empty[] = {NULL};
    assert_int_equal(tide_loop_subprocess_exec(f->loop, &f->r.base, empty, NULL, &t), TIDE_EINVAL);
    assert_int_equal(tide_loop_subprocess_shell(f->loop, &f->r.base, NULL, NULL, &t), TIDE_EINVAL);
    tide_subprocess_options_init(&o, TIDE_STDIO_PIPE);
    o.stdio[0].mode = TIDE_STDIO_STDOUT;
    assert_int_equal(tide_loop_subprocess_exec(f->loop, &f->r.base, sh, &o, &t), TIDE_EINVAL);
    assert_int_equal(ts_count_fds(), fds);
    assert_int_equal(f->r.nevents, 0); /* nothing is called back */
}

static void test_stdio_modes(void **state) {
    pr_fx *f = *state;
    tide_subprocess_options_t o;

    /* stdin from /dev/null, stderr into stdout */
    tide_subprocess_options_init(&o, TIDE_STDIO_PIPE);
    o.stdio[0].mode = TIDE_STDIO_DEVNULL;
    o.stdio[2].mode = TIDE_STDIO_STDOUT;
    assert_int_equal(run_shell(f, "cat; echo to-err >&2; echo to-out", &o), 0);
    assert_string_equal(pr_text(&f->r, 1), "to-err\nto-out\n");
    assert_int_equal(f->r.len[2], 0);
    assert_null(memchr(f->r.events, '0', f->r.nevents)); /* no stdin pipe */
    assert_null(memchr(f->r.events, '2', f->r.nevents));

    /* stdout into a descriptor of ours, which stays ours */
    pr_rec_free(&f->r);
    pr_rec_init(&f->r);
    int p[2];
    assert_int_equal(pipe(p), 0);
    tide_subprocess_options_init(&o, TIDE_STDIO_DEVNULL);
    o.stdio[1].mode = TIDE_STDIO_FD;
    o.stdio[1].fd = p[1];
    assert_int_equal(run_shell(f, "echo into-fd", &o), 0);
    assert_int_equal(close(p[1]), 0);
    char buf[64] = {0};
    assert_int_equal(read(p[0], buf, sizeof(buf)), 8);
    assert_string_equal(buf, "into-fd\n");
    assert_int_equal(close(p[0]), 0);

    /* env and cwd */
    pr_rec_free(&f->r);
    pr_rec_init(&f->r);
    char *env[] = {"TIDE_TEST_VAR=from tide", "PATH=/usr/bin:/bin", NULL};
    tide_subprocess_options_init(&o, TIDE_STDIO_PIPE);
    o.env = env;
    o.cwd = "/tmp";
    assert_int_equal(run_shell(f, "echo \"$TIDE_TEST_VAR\"; pwd; echo ${HOME:-no home}", &o), 0);
    assert_string_equal(pr_text(&f->r, 1), "from tide\n/tmp\nno home\n");
}

static void test_pass_fds_and_nothing_else(void **state) {
    pr_fx *f = *state;
    /* An inheritable descriptor of ours that is not passed must not reach the child;
     * the one passed keeps its number. */
    int stray[2], passed[2];
    assert_int_equal(pipe(stray), 0);
    assert_int_equal(pipe(passed), 0);
    tide_subprocess_options_t o;
    tide_subprocess_options_init(&o, TIDE_STDIO_PIPE);
    int pass[] = {passed[1]};
    o.pass_fds = pass;
    o.n_pass_fds = 1;
    char cmd[256];
    snprintf(cmd, sizeof(cmd),
             "python3 -c \"import os; os.write(%d, b'via pass_fds'); "
             "print(sorted(int(x) for x in os.listdir('/proc/self/fd')))\"",
             passed[1]);
    assert_int_equal(run_shell(f, cmd, &o), 0);
    char expect[64];
    /* 0, 1, 2, the passed one, and the descriptor listdir itself opened */
    snprintf(expect, sizeof(expect), "[0, 1, 2, 3, %d]\n", passed[1]);
    assert_string_equal(pr_text(&f->r, 1), expect);
    assert_int_equal(f->r.returncode, 0);
    char buf[32] = {0};
    assert_int_equal(read(passed[0], buf, sizeof(buf)), 12);
    assert_string_equal(buf, "via pass_fds");
    /* Still close-on-exec here: the dup2 onto itself happened in the child only. */
    for (int i = 0; i < 2; i++) {
        close(stray[i]);
        close(passed[i]);
    }
}

static void test_group_and_session(void **state) {
    pr_fx *f = *state;
    /* Fields 5 and 6 of /proc/PID/stat are the process group and the session. */
    const char *argv[] = {"sh", "-c",
                          "read -r pid comm state ppid pgrp sid rest < /proc/$$/stat; "
                          "echo $((pgrp == $$)) $((sid == $$))",
                          NULL};
    tide_subprocess_options_t o;
    tide_subprocess_options_init(&o, TIDE_STDIO_PIPE);
    assert_int_equal(run_exec(f, argv, &o), 0);
    assert_string_equal(pr_text(&f->r, 1), "0 0\n");

    pr_rec_free(&f->r);
    pr_rec_init(&f->r);
    o.flags = TIDE_SUBPROCESS_NEW_PROCESS_GROUP;
    assert_int_equal(run_exec(f, argv, &o), 0);
    assert_string_equal(pr_text(&f->r, 1), "1 0\n");

    pr_rec_free(&f->r);
    pr_rec_init(&f->r);
    o.flags = TIDE_SUBPROCESS_NEW_SESSION;
    assert_int_equal(run_exec(f, argv, &o), 0);
    assert_string_equal(pr_text(&f->r, 1), "1 1\n");
}

/* head reads 10 bytes and exits with a megabyte queued for it: the stdin pipe ends
 * with EPIPE, the process gets no SIGPIPE (left at its default: it would die). */
static void flood_stdin(pr_rec *r) {
    static unsigned char big[4 << 20];
    tide_transport_t *in = tide_subprocess_get_pipe_transport(r->t, 0);
    assert_int_equal(tide_transport_write(in, big, sizeof(big)), 0);
    assert_int_equal(r->pauses, 1);
}

static void test_child_stops_reading(void **state) {
    pr_fx *f = *state;
    signal(SIGPIPE, SIG_DFL);
    f->r.on_made = flood_stdin;
    const char *argv[] = {"head", "-c", "10", NULL};
    assert_int_equal(run_exec(f, argv, NULL), 0);
    assert_int_equal(f->r.len[1], 10);
    assert_int_equal(f->r.pipe_status[0], TIDE_EPIPE);
    assert_int_equal(f->r.returncode, 0);
    sigset_t pending;
    assert_int_equal(sigpending(&pending), 0);
    assert_false(sigismember(&pending, SIGPIPE));
}

/* Without pidfd_open the loop polls its own children: the same results. */
static void test_polling_fallback(void **state) {
    pr_fx *f = *state;
    tide__child_use_pidfd = false;
    int rc = run_shell(f, "echo polled; exit 9", NULL);
    tide__child_use_pidfd = true;
    assert_int_equal(rc, 0);
    assert_string_equal(pr_text(&f->r, 1), "polled\n");
    assert_int_equal(f->r.returncode, 9);
    pr_rec_free(&f->r);
    pr_rec_init(&f->r);
    f->r.on_made = close_at_once;
    tide__child_use_pidfd = false;
    const char *argv[] = {"sleep", "30", NULL};
    rc = run_exec(f, argv, NULL);
    tide__child_use_pidfd = true;
    assert_int_equal(rc, 0);
    assert_int_equal(f->r.returncode, -SIGKILL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        PR_TEST(test_cat_echo),
        PR_TEST(test_shell_outputs_and_status),
        PR_TEST(test_killed_by_signal),
        PR_TEST(test_signal_after_exit),
        PR_TEST(test_close_kills_running_child),
        PR_TEST(test_missing_program),
        PR_TEST(test_stdio_modes),
        PR_TEST(test_pass_fds_and_nothing_else),
        PR_TEST(test_group_and_session),
        PR_TEST(test_child_stops_reading),
        PR_TEST(test_polling_fallback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
