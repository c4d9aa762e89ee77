/* Subprocesses with the subprocess protocol (tide_loop_subprocess_exec / _shell) and
 * real programs: cat, sh, head, sleep, python3. The callback order, return codes
 * (negative for a signal), send_signal / terminate / kill, close killing a running
 * child, a missing program as the call's own error, every stdio mode with env, cwd,
 * pass_fds, a new process group and session, nothing leaking into children, a child
 * that stops reading (EPIPE, no SIGPIPE), 256 MiB through cat with a checksum, 1,000
 * children at once, and two loops in two threads. Each test ends with a clean loop
 * close, the same descriptor count as before, and no child left unreaped. */
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

#include "core/core_int.h"
#include "support/support.h"

/* ---- a recording subprocess protocol ------------------------------------------------ */

typedef struct rec {
    tide_subprocess_protocol_t base;
    tide_subprocess_t *t;
    char events[32]; /* M made, 0/1/2 a pipe ended, X exited, L lost */
    size_t nevents;
    unsigned char *data[3];
    size_t len[3], cap[3];
    int pipe_status[3];
    int returncode;
    int exited, lost, pauses, resumes;
    /* Optional hooks. */
    void (*on_made)(struct rec *r);
    void (*on_data)(struct rec *r, int fd, const void *data, size_t len);
    void (*on_resume)(struct rec *r);
    void *user;
} rec;

static void ev(rec *r, char c) {
    if (r->nevents + 1 < sizeof(r->events))
        r->events[r->nevents++] = c;
}

static void r_made(tide_subprocess_protocol_t *p, tide_subprocess_t *t) {
    rec *r = (rec *)p;
    r->t = t;
    ev(r, 'M');
    if (r->on_made)
        r->on_made(r);
}

static void r_data(tide_subprocess_protocol_t *p, int fd, const void *data, size_t len) {
    rec *r = (rec *)p;
    if (r->on_data) {
        r->on_data(r, fd, data, len);
        return;
    }
    if (r->len[fd] + len > r->cap[fd]) {
        r->cap[fd] = (r->len[fd] + len) * 2;
        r->data[fd] = realloc(r->data[fd], r->cap[fd]);
    }
    memcpy(r->data[fd] + r->len[fd], data, len);
    r->len[fd] += len;
}

static void r_pipe_lost(tide_subprocess_protocol_t *p, int fd, int status) {
    rec *r = (rec *)p;
    r->pipe_status[fd] = status;
    ev(r, (char)('0' + fd));
}

static void r_exited(tide_subprocess_protocol_t *p) {
    rec *r = (rec *)p;
    r->exited++;
    ev(r, 'X');
    assert_true(tide_subprocess_get_returncode(r->t, &r->returncode));
}

static void r_lost(tide_subprocess_protocol_t *p, int status) {
    rec *r = (rec *)p;
    assert_int_equal(status, 0);
    r->lost++;
    ev(r, 'L');
}

static void r_pause(tide_subprocess_protocol_t *p) { ((rec *)p)->pauses++; }

static void r_resume(tide_subprocess_protocol_t *p) {
    rec *r = (rec *)p;
    r->resumes++;
    if (r->on_resume)
        r->on_resume(r);
}

static const tide_subprocess_protocol_ops_t rec_ops = {
    .size = TIDE_SUBPROCESS_PROTOCOL_OPS_SIZE,
    .connection_made = r_made,
    .pipe_data_received = r_data,
    .pipe_connection_lost = r_pipe_lost,
    .process_exited = r_exited,
    .connection_lost = r_lost,
    .pause_writing = r_pause,
    .resume_writing = r_resume,
};

static void rec_init(rec *r) {
    memset(r, 0, sizeof(*r));
    r->base.ops = &rec_ops;
}

static void rec_free(rec *r) {
    for (int i = 0; i < 3; i++)
        free(r->data[i]);
}

static bool pred_lost(void *arg) { return ((rec *)arg)->lost > 0; }

/* The output of fd as a string (NUL-terminated in place). */
static const char *text(rec *r, int fd) {
    if (r->len[fd] + 1 > r->cap[fd]) {
        r->cap[fd] = r->len[fd] + 1;
        r->data[fd] = realloc(r->data[fd], r->cap[fd]);
    }
    r->data[fd][r->len[fd]] = '\0';
    return (const char *)r->data[fd];
}

/* ---- fixture ------------------------------------------------------------------- */

typedef struct fx {
    tide_loop_t *loop;
    int fds_before;
    rec r;
} fx;

static int setup(void **state) {
    fx *f = calloc(1, sizeof(*f));
    f->fds_before = ts_count_fds();
    f->loop = ts_loop_new();
    rec_init(&f->r);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    ts_finish(f->loop, f->fds_before);
    rec_free(&f->r);
    free(f);
    /* Every child was reaped by tide, none by anyone else. */
    errno = 0;
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    return 0;
}

#define FX_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

static int run_exec(fx *f, const char *const *argv, const tide_subprocess_options_t *o) {
    int rc = tide_loop_subprocess_exec(f->loop, &f->r.base, argv, o, NULL);
    if (rc == 0)
        ts_run_until(f->loop, pred_lost, &f->r, 20);
    return rc;
}

static int run_shell(fx *f, const char *cmd, const tide_subprocess_options_t *o) {
    int rc = tide_loop_subprocess_shell(f->loop, &f->r.base, cmd, o, NULL);
    if (rc == 0)
        ts_run_until(f->loop, pred_lost, &f->r, 20);
    return rc;
}

/* ---- tests ---------------------------------------------------------------------- */

static void feed_hello(rec *r) {
    tide_transport_t *in = tide_subprocess_get_pipe_transport(r->t, 0);
    assert_non_null(in);
    assert_string_equal(tide_transport_kind(in), "write pipe");
    assert_int_equal(tide_transport_write(in, "hello\n", 6), 0);
    assert_int_equal(tide_transport_write_eof(in), 0);
}

static void test_cat_echo(void **state) {
    fx *f = *state;
    f->r.on_made = feed_hello;
    tide_subprocess_t *t = NULL;
    const char *argv[] = {"cat", NULL};
    assert_int_equal(tide_loop_subprocess_exec(f->loop, &f->r.base, argv, NULL, &t), 0);
    assert_non_null(t);
    assert_true(tide_subprocess_get_pid(t) > 0);
    assert_false(tide_subprocess_get_returncode(t, NULL));
    assert_int_equal(f->r.nevents, 0); /* connection_made is deferred */
    ts_run_until(f->loop, pred_lost, &f->r, 10);
    assert_string_equal(text(&f->r, 1), "hello\n");
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
    fx *f = *state;
    assert_int_equal(run_shell(f, "echo out; echo err >&2; exit 5", NULL), 0);
    assert_string_equal(text(&f->r, 1), "out\n");
    assert_string_equal(text(&f->r, 2), "err\n");
    assert_int_equal(f->r.returncode, 5);
}

static void send_term(rec *r) { assert_int_equal(tide_subprocess_terminate(r->t), 0); }
static void send_kill(rec *r) { assert_int_equal(tide_subprocess_kill(r->t), 0); }
static void send_hup(rec *r) { assert_int_equal(tide_subprocess_send_signal(r->t, SIGHUP), 0); }

static void test_killed_by_signal(void **state) {
    fx *f = *state;
    void (*senders[])(rec *) = {send_term, send_kill, send_hup};
    int expect[] = {-SIGTERM, -SIGKILL, -SIGHUP};
    for (int i = 0; i < 3; i++) {
        rec_free(&f->r);
        rec_init(&f->r);
        f->r.on_made = senders[i];
        const char *argv[] = {"sleep", "30", NULL};
        assert_int_equal(run_exec(f, argv, NULL), 0);
        assert_int_equal(f->r.returncode, expect[i]);
    }
}

static void signal_after_exit(rec *r) {
    /* From process_exited on, the pid may be anyone's: no signal goes out. */
    assert_int_equal(tide_subprocess_send_signal(r->t, SIGTERM), TIDE_EPROCESS_EXITED);
    assert_int_equal(tide_subprocess_kill(r->t), TIDE_EPROCESS_EXITED);
}

static void r_exited_then_signal(tide_subprocess_protocol_t *p) {
    r_exited(p);
    signal_after_exit((rec *)p);
}

static void test_signal_after_exit(void **state) {
    fx *f = *state;
    static const tide_subprocess_protocol_ops_t ops = {
        .size = TIDE_SUBPROCESS_PROTOCOL_OPS_SIZE,
        .connection_made = r_made,
        .pipe_data_received = r_data,
        .pipe_connection_lost = r_pipe_lost,
        .process_exited = r_exited_then_signal,
        .connection_lost = r_lost,
    };
    f->r.base.ops = &ops;
    assert_int_equal(run_shell(f, "exit 0", NULL), 0);
    assert_int_equal(f->r.exited, 1);
}

static void close_at_once(rec *r) {
    tide_subprocess_close(r->t);
    tide_subprocess_close(r->t); /* idempotent */
}

static void test_close_kills_running_child(void **state) {
    fx *f = *state;
    f->r.on_made = close_at_once;
    const char *argv[] = {"sleep", "30", NULL};
    double start = tide__now_monotonic();
    assert_int_equal(run_exec(f, argv, NULL), 0);
    assert_true(tide__now_monotonic() - start < ts_scaled(10));
    assert_int_equal(f->r.returncode, -SIGKILL);
    assert_string_equal(f->r.events + f->r.nevents - 1, "L");
}

static void test_missing_program(void **state) {
    fx *f = *state;
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
    fx *f = *state;
    tide_subprocess_options_t o;

    /* stdin from /dev/null, stderr into stdout */
    tide_subprocess_options_init(&o, TIDE_STDIO_PIPE);
    o.stdio[0].mode = TIDE_STDIO_DEVNULL;
    o.stdio[2].mode = TIDE_STDIO_STDOUT;
    assert_int_equal(run_shell(f, "cat; echo to-err >&2; echo to-out", &o), 0);
    assert_string_equal(text(&f->r, 1), "to-err\nto-out\n");
    assert_int_equal(f->r.len[2], 0);
    assert_null(memchr(f->r.events, '0', f->r.nevents)); /* no stdin pipe */
    assert_null(memchr(f->r.events, '2', f->r.nevents));

    /* stdout into a descriptor of ours, which stays ours */
    rec_free(&f->r);
    rec_init(&f->r);
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
    rec_free(&f->r);
    rec_init(&f->r);
    char *env[] = {"TIDE_TEST_VAR=from tide", "PATH=/usr/bin:/bin", NULL};
    tide_subprocess_options_init(&o, TIDE_STDIO_PIPE);
    o.env = env;
    o.cwd = "/tmp";
    assert_int_equal(run_shell(f, "echo \"$TIDE_TEST_VAR\"; pwd; echo ${HOME:-no home}", &o), 0);
    assert_string_equal(text(&f->r, 1), "from tide\n/tmp\nno home\n");
}

static void test_pass_fds_and_nothing_else(void **state) {
    fx *f = *state;
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
    assert_string_equal(text(&f->r, 1), expect);
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
    fx *f = *state;
    /* Fields 5 and 6 of /proc/PID/stat are the process group and the session. */
    const char *argv[] = {"sh", "-c",
                          "read -r pid comm state ppid pgrp sid rest < /proc/$$/stat; "
                          "echo $((pgrp == $$)) $((sid == $$))",
                          NULL};
    tide_subprocess_options_t o;
    tide_subprocess_options_init(&o, TIDE_STDIO_PIPE);
    assert_int_equal(run_exec(f, argv, &o), 0);
    assert_string_equal(text(&f->r, 1), "0 0\n");

    rec_free(&f->r);
    rec_init(&f->r);
    o.flags = TIDE_SUBPROCESS_NEW_PROCESS_GROUP;
    assert_int_equal(run_exec(f, argv, &o), 0);
    assert_string_equal(text(&f->r, 1), "1 0\n");

    rec_free(&f->r);
    rec_init(&f->r);
    o.flags = TIDE_SUBPROCESS_NEW_SESSION;
    assert_int_equal(run_exec(f, argv, &o), 0);
    assert_string_equal(text(&f->r, 1), "1 1\n");
}

/* head reads 10 bytes and exits with a megabyte queued for it: the stdin pipe ends
 * with EPIPE, the process gets no SIGPIPE (left at its default: it would die). */
static void flood_stdin(rec *r) {
    static unsigned char big[4 << 20];
    tide_transport_t *in = tide_subprocess_get_pipe_transport(r->t, 0);
    assert_int_equal(tide_transport_write(in, big, sizeof(big)), 0);
    assert_int_equal(r->pauses, 1);
}

static void test_child_stops_reading(void **state) {
    fx *f = *state;
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

/* 256 MiB through cat, both ways on this loop: written in 256 KiB pieces whenever
 * stdin is not paused, read back and checksummed as it comes. */
#define BIG_TOTAL ((size_t)256 << 20)
#define PIECE ((size_t)256 << 10)

typedef struct pump {
    unsigned char *piece;
    size_t sent, got;
    uint64_t sum_out, sum_in;
    bool paused;
} pump;

/* A checksum of the byte stream that does not depend on how it is cut up, fast
 * enough for 256 MiB under ASan: positions weigh the bytes. */
static uint64_t mix(uint64_t sum, size_t pos, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        sum += (uint64_t)p[i] * (((pos + i) & 0xFFFF) + 1);
    return sum;
}

static void pump_fill(rec *r) {
    pump *pp = r->user;
    tide_transport_t *in = tide_subprocess_get_pipe_transport(r->t, 0);
    while (pp->sent < BIG_TOTAL && r->pauses == r->resumes) {
        /* Each piece differs: its first bytes carry its number. */
        memcpy(pp->piece, &pp->sent, sizeof(pp->sent));
        pp->sum_out = mix(pp->sum_out, pp->sent, pp->piece, PIECE);
        assert_int_equal(tide_transport_write(in, pp->piece, PIECE), 0);
        pp->sent += PIECE;
    }
    if (pp->sent == BIG_TOTAL)
        assert_int_equal(tide_transport_write_eof(in), 0);
}

static void pump_data(rec *r, int fd, const void *data, size_t len) {
    pump *pp = r->user;
    assert_int_equal(fd, 1);
    pp->sum_in = mix(pp->sum_in, pp->got, data, len);
    pp->got += len;
}

static void test_cat_256mib(void **state) {
    fx *f = *state;
    pump pp = {0};
    pp.piece = malloc(PIECE);
    for (size_t i = 0; i < PIECE; i++)
        pp.piece[i] = (unsigned char)(i * 31 + (i >> 9));
    f->r.user = &pp;
    f->r.on_made = pump_fill;
    f->r.on_resume = pump_fill;
    f->r.on_data = pump_data;
    const char *argv[] = {"cat", NULL};
    assert_int_equal(tide_loop_subprocess_exec(f->loop, &f->r.base, argv, NULL, NULL), 0);
    ts_run_until(f->loop, pred_lost, &f->r, 60);
    assert_int_equal(pp.sent, BIG_TOTAL);
    assert_int_equal(pp.got, BIG_TOTAL);
    assert_true(pp.sum_in == pp.sum_out);
    assert_int_equal(f->r.returncode, 0);
    assert_true(f->r.pauses > 0);
    free(pp.piece);
}

/* 1,000 children at once, all reaped. */
#define MANY 1000

typedef struct many {
    rec recs[MANY];
    int lost;
} many;

static void many_lost(tide_subprocess_protocol_t *p, int status) {
    r_lost(p, status);
    (*(int *)((rec *)p)->user)++;
}

static bool pred_all(void *arg) { return *(int *)arg == MANY; }

static void test_thousand_children(void **state) {
    fx *f = *state;
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 2 * MANY + 64 && rl.rlim_max >= 2 * MANY + 64) {
        rl.rlim_cur = 2 * MANY + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    static const tide_subprocess_protocol_ops_t ops = {
        .size = TIDE_SUBPROCESS_PROTOCOL_OPS_SIZE,
        .connection_made = r_made,
        .pipe_data_received = r_data,
        .pipe_connection_lost = r_pipe_lost,
        .process_exited = r_exited,
        .connection_lost = many_lost,
    };
    many *m = calloc(1, sizeof(*m));
    tide_subprocess_options_t o;
    tide_subprocess_options_init(&o, TIDE_STDIO_DEVNULL);
    o.stdio[1].mode = TIDE_STDIO_PIPE; /* one pipe each: the output tells them apart */
    for (int i = 0; i < MANY; i++) {
        rec_init(&m->recs[i]);
        m->recs[i].base.ops = &ops;
        m->recs[i].user = &m->lost;
        char code[16];
        snprintf(code, sizeof(code), "%d", i % 200);
        const char *argv[] = {"sh", "-c", "echo $0; exit $0", code, NULL};
        assert_int_equal(tide_loop_subprocess_exec(f->loop, &m->recs[i].base, argv, &o, NULL), 0);
    }
    ts_run_until(f->loop, pred_all, &m->lost, 60);
    for (int i = 0; i < MANY; i++) {
        char expect[16];
        snprintf(expect, sizeof(expect), "%d\n", i % 200);
        assert_string_equal(text(&m->recs[i], 1), expect);
        assert_int_equal(m->recs[i].returncode, i % 200);
        rec_free(&m->recs[i]);
    }
    free(m);
}

/* Two loops in two threads, each with its own children: each reaps only its own. */
#define PER_THREAD 50

typedef struct worker {
    int base;
    int ok;
} worker;

static int worker_lost_count;

static void *worker_main(void *arg) {
    worker *w = arg;
    tide_loop_t *loop;
    if (tide_loop_new(&loop) != 0)
        return NULL;
    rec recs[PER_THREAD];
    int lost = 0;
    static const tide_subprocess_protocol_ops_t ops = {
        .size = TIDE_SUBPROCESS_PROTOCOL_OPS_SIZE,
        .connection_made = r_made,
        .pipe_data_received = r_data,
        .process_exited = r_exited,
        .connection_lost = many_lost,
    };
    tide_subprocess_options_t o;
    tide_subprocess_options_init(&o, TIDE_STDIO_DEVNULL);
    for (int i = 0; i < PER_THREAD; i++) {
        rec_init(&recs[i]);
        recs[i].base.ops = &ops;
        recs[i].user = &lost;
        char cmd[32];
        snprintf(cmd, sizeof(cmd), "exit %d", w->base + i);
        if (tide_loop_subprocess_shell(loop, &recs[i].base, cmd, &o, NULL) != 0)
            return NULL;
    }
    /* TIDE_RUN_DEFAULT returns once every child is reaped and reported. */
    if (tide_loop_run(loop, TIDE_RUN_DEFAULT) != 0 || lost != PER_THREAD)
        return NULL;
    int good = 0;
    for (int i = 0; i < PER_THREAD; i++)
        good += recs[i].returncode == w->base + i;
    w->ok = good == PER_THREAD && tide_loop_close(loop) == 0;
    __atomic_add_fetch(&worker_lost_count, lost, __ATOMIC_SEQ_CST);
    return NULL;
}

static void test_two_loops_two_threads(void **state) {
    (void)state;
    pthread_t th[2];
    worker w[2] = {{.base = 10}, {.base = 100}};
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_true(w[0].ok);
    assert_true(w[1].ok);
    assert_int_equal(worker_lost_count, 2 * PER_THREAD);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        FX_TEST(test_cat_echo),
        FX_TEST(test_shell_outputs_and_status),
        FX_TEST(test_killed_by_signal),
        FX_TEST(test_signal_after_exit),
        FX_TEST(test_close_kills_running_child),
        FX_TEST(test_missing_program),
        FX_TEST(test_stdio_modes),
        FX_TEST(test_pass_fds_and_nothing_else),
        FX_TEST(test_group_and_session),
        FX_TEST(test_child_stops_reading),
        FX_TEST(test_cat_256mib),
        FX_TEST(test_thousand_children),
        FX_TEST(test_two_loops_two_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
