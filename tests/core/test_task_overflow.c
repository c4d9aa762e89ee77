/* Stack overflow reports (core/task.c): a task that overflows its stack dies by
 * SIGSEGV as before, but first tide names it and its stack size on stderr, on the
 * main thread and on another thread; and tide's fault handler passes every other
 * SIGSEGV on to the disposition it found (a SA_SIGINFO handler, a plain handler,
 * SIG_DFL), without a word, whether the fault happens inside a task or outside.
 *
 * Every case runs in a forked child with its stderr on a pipe, since each one ends
 * in a fault or changes process-wide signal state. tide installs its handler once per
 * process, when the first task stack is made, and this parent never spawns a task:
 * each child starts with no handler of tide's, so it decides what tide will find. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support/support.h"

/* ---- running a child ------------------------------------------------------------- */

typedef struct outcome {
    int status;      /* from waitpid */
    char err[65536]; /* the child's stderr, NUL-terminated (truncated if longer) */
    size_t err_len;
} outcome;

static outcome out;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs body() in a child whose stderr goes to a pipe and whose exit code is body's
 * return; waits at most 30 s (scaled), draining the pipe meanwhile so that a long
 * sanitizer report cannot block the child, and fills `out`. */
static void run_child(int (*body)(void)) {
    fflush(NULL); /* nothing buffered may be written twice */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        close(fds[1]);
        _exit(body());
    }
    close(fds[1]);
    memset(&out, 0, sizeof(out));
    double deadline = now() + ts_scaled(30);
    bool eof = false, exited = false;
    while (!exited && now() < deadline) {
        if (!eof) {
            struct pollfd p = {.fd = fds[0], .events = POLLIN};
            if (poll(&p, 1, 100) > 0) {
                char chunk[4096];
                ssize_t n = read(fds[0], chunk, sizeof(chunk));
                if (n <= 0) {
                    eof = true;
                } else {
                    size_t keep = sizeof(out.err) - 1 - out.err_len;
                    if ((size_t)n < keep)
                        keep = (size_t)n;
                    memcpy(out.err + out.err_len, chunk, keep);
                    out.err_len += keep;
                }
            }
        } else {
            poll(NULL, 0, 10); /* the pipe is closed: the child is on its way out */
        }
        pid_t w = waitpid(pid, &out.status, WNOHANG);
        assert_true(w == 0 || w == pid);
        exited = w == pid;
    }
    close(fds[0]);
    if (!exited) {
        kill(pid, SIGKILL);
        waitpid(pid, &out.status, 0);
        fail_msg("the child did not finish within %.0f s; its stderr:\n%s", ts_scaled(30), out.err);
    }
}

static void expect_signal(int sig) {
    if (!WIFSIGNALED(out.status) || WTERMSIG(out.status) != sig)
        fail_msg("expected death by signal %d, got status 0x%x; stderr:\n%s", sig,
                 (unsigned)out.status, out.err);
}

static void expect_exit(int code) {
    if (!WIFEXITED(out.status) || WEXITSTATUS(out.status) != code)
        fail_msg("expected exit %d, got status 0x%x; stderr:\n%s", code, (unsigned)out.status,
                 out.err);
}

static bool said(const char *text) { return strstr(out.err, text) != NULL; }

/* The report for a task of `usable` stack bytes, up to the fault address. */
static void expect_report(size_t usable) {
    char want[128];
    snprintf(want, sizeof(want), "overflowed its stack of %zu bytes (fault at 0x", usable);
    if (!said("tide: task 0x") || !said(want) ||
        !said("give it a larger stack_size in tide_task_options_t"))
        fail_msg("no overflow report for %zu bytes; stderr:\n%s", usable, out.err);
}

static size_t rounded_to_pages(size_t size) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (size + page - 1) / page * page;
}

/* ---- what the children do -------------------------------------------------------- */

static size_t child_stack_size = TIDE_TASK_MIN_STACK_SIZE;

/* Runs one overflowing task on a new loop of the calling thread; returns only when
 * something went wrong (the code says what). */
static int run_overflow(void) {
    tide_loop_t *loop = NULL;
    if (tide_loop_new(&loop) != 0)
        return 3;
    tide_task_options_t options = {.stack_size = child_stack_size};
    if (tide_task_spawn(loop, ts_overflow_task, NULL, &options, NULL) != 0)
        return 4;
    tide_loop_run(loop, TIDE_RUN_DEFAULT);
    return 5; /* the recursion ended without a fault */
}

static int set_disposition(void (*handler)(int)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGSEGV, &sa, NULL) == 0 ? 0 : 2;
}

static int set_siginfo_handler(void (*handler)(int, siginfo_t *, void *), int flags) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO | flags;
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGSEGV, &sa, NULL) == 0 ? 0 : 2;
}

/* SIG_DFL first, so that the child dies by SIGSEGV under ASan too (whose own handler
 * would otherwise be the one tide passes the fault to). */
static int child_overflow_dfl(void) {
    int rc = set_disposition(SIG_DFL);
    return rc != 0 ? rc : run_overflow();
}

static void *overflow_thread(void *arg) {
    *(int *)arg = run_overflow();
    return NULL;
}

static int child_overflow_thread(void) {
    int rc = set_disposition(SIG_DFL);
    if (rc != 0)
        return rc;
    pthread_t th;
    if (pthread_create(&th, NULL, overflow_thread, &rc) != 0)
        return 6;
    pthread_join(th, NULL);
    return rc;
}

static int child_overflow_default(void) { return run_overflow(); }

/* The application's handler, installed before tide's: after an overflow it must still
 * get the fault, once tide has reported it. */
static void app_exits(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)si;
    (void)uc;
    static const char msg[] = "app handler ran\n";
    ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)n;
    _exit(42);
}

static int child_overflow_app_handler(void) {
    /* On the alternate stack (which tide sets up): the task's stack is exhausted. */
    int rc = set_siginfo_handler(app_exits, SA_ONSTACK);
    return rc != 0 ? rc : run_overflow();
}

/* A recoverable fault, as a garbage collector's write barrier makes: the handler
 * opens the page and returns, and the faulting write then succeeds. */
static char *trap_page;
static volatile sig_atomic_t traps;

static void open_trap(void) {
    mprotect(trap_page, (size_t)sysconf(_SC_PAGESIZE), PROT_READ | PROT_WRITE);
}

static void app_opens_page(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    if ((char *)si->si_addr != trap_page)
        _exit(7);
    traps++;
    open_trap();
}

static void app_opens_page_plain(int sig) {
    (void)sig;
    traps++;
    open_trap();
}

static int close_trap(void) {
    return mprotect(trap_page, (size_t)sysconf(_SC_PAGESIZE), PROT_NONE) == 0 ? 0 : 8;
}

static int touch_trap(void) {
    int rc = close_trap();
    if (rc != 0)
        return rc;
    *(volatile char *)trap_page = 1;
    return 0;
}

static int task_touches_trap(void *arg) {
    (void)arg;
    return touch_trap();
}

/* Spawns and runs a task that touches the trap page (so tide's handler is installed
 * and the fault comes from inside a task), then touches it outside any task. */
static int trap_inside_and_outside(void) {
    trap_page = mmap(NULL, (size_t)sysconf(_SC_PAGESIZE), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (trap_page == MAP_FAILED)
        return 9;
    tide_loop_t *loop = NULL;
    if (tide_loop_new(&loop) != 0)
        return 3;
    int result = -1;
    if (tide_loop_run_until_complete(loop, task_touches_trap, NULL, NULL, &result) != 0 ||
        result != 0)
        return 10;
    if (traps != 1)
        return 11;
    /* tide's handler is in place now, in front of the application's. */
    struct sigaction now_sa;
    if (sigaction(SIGSEGV, NULL, &now_sa) != 0 || !(now_sa.sa_flags & SA_SIGINFO) ||
        now_sa.sa_sigaction == app_opens_page)
        return 12;
    int rc = touch_trap();
    if (rc != 0)
        return rc;
    if (traps != 2)
        return 13;
    rc = touch_trap(); /* tide stays installed: a recovered fault is not its last */
    if (rc != 0)
        return rc;
    if (traps != 3)
        return 14;
    return tide_loop_close(loop) == 0 ? 0 : 15;
}

static int child_chain_siginfo(void) {
    int rc = set_siginfo_handler(app_opens_page, 0);
    return rc != 0 ? rc : trap_inside_and_outside();
}

static int child_chain_plain(void) {
    int rc = set_disposition(app_opens_page_plain);
    return rc != 0 ? rc : trap_inside_and_outside();
}

static int does_nothing(void *arg) {
    (void)arg;
    return 0;
}

/* With SIG_DFL behind tide, a fault outside a task kills the child, unreported. */
static int child_fault_outside_dfl(void) {
    int rc = set_disposition(SIG_DFL);
    if (rc != 0)
        return rc;
    tide_loop_t *loop = NULL;
    if (tide_loop_new(&loop) != 0)
        return 3;
    if (tide_task_spawn(loop, does_nothing, NULL, NULL, NULL) != 0)
        return 4; /* never runs: spawning is what installs tide's handler */
    trap_page =
        mmap(NULL, (size_t)sysconf(_SC_PAGESIZE), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (trap_page == MAP_FAILED)
        return 9;
    *(volatile char *)trap_page = 1;
    return 5;
}

/* The alternate signal stack: tide keeps one the application set, and sets up its own
 * on a thread that has none (or finds the sanitizer's). */
static char app_altstack[64 * 1024];
static volatile sig_atomic_t altstack_ok;

static int check_altstack(void *arg) {
    stack_t ss;
    if (sigaltstack(NULL, &ss) != 0 || (ss.ss_flags & SS_DISABLE))
        return 1;
    if (arg != NULL && ss.ss_sp != arg)
        return 2;
    altstack_ok = 1;
    return 0;
}

static int child_keeps_app_altstack(void) {
    stack_t ss = {.ss_sp = app_altstack, .ss_size = sizeof(app_altstack), .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0)
        return 2;
    tide_loop_t *loop = NULL;
    if (tide_loop_new(&loop) != 0)
        return 3;
    int result = -1;
    if (tide_loop_run_until_complete(loop, check_altstack, app_altstack, NULL, &result) != 0)
        return 4;
    if (result != 0 || !altstack_ok)
        return 20 + result;
    return tide_loop_close(loop) == 0 ? 0 : 5;
}

static void *altstack_thread(void *arg) {
    int *rc = arg;
    tide_loop_t *loop = NULL;
    if (tide_loop_new(&loop) != 0) {
        *rc = 3;
        return NULL;
    }
    int result = -1;
    if (tide_loop_run_until_complete(loop, check_altstack, NULL, NULL, &result) != 0)
        *rc = 4;
    else if (result != 0)
        *rc = 20 + result;
    else
        *rc = tide_loop_close(loop) == 0 ? 0 : 5;
    return NULL;
}

/* Threads run one after another, so tide's stack of each is freed at its exit. */
static int child_altstack_threads(void) {
    for (int i = 0; i < 8; i++) {
        int rc = -1;
        pthread_t th;
        if (pthread_create(&th, NULL, altstack_thread, &rc) != 0)
            return 6;
        pthread_join(th, NULL);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- the tests ------------------------------------------------------------------- */

static void test_overflow_reported(void **state) {
    (void)state;
    run_child(child_overflow_dfl);
    expect_signal(SIGSEGV);
    expect_report(rounded_to_pages(TIDE_TASK_MIN_STACK_SIZE));
}

/* A thread other than the main one has no alternate stack of its own; tide's lets the
 * report run there too. */
static void test_overflow_reported_on_a_thread(void **state) {
    (void)state;
    run_child(child_overflow_thread);
    expect_signal(SIGSEGV);
    expect_report(rounded_to_pages(TIDE_TASK_MIN_STACK_SIZE));
}

/* The default stack, and whatever disposition the process starts with: SIG_DFL, or
 * under ASan its own handler, which then reports the overflow and exits. */
static void test_overflow_default_stack(void **state) {
    (void)state;
    child_stack_size = 0;
    run_child(child_overflow_default);
    child_stack_size = TIDE_TASK_MIN_STACK_SIZE;
    expect_report(TIDE_TASK_DEFAULT_STACK_SIZE);
#ifdef TS_ASAN
    if (WIFEXITED(out.status) && WEXITSTATUS(out.status) != 0 && said("AddressSanitizer"))
        return;
#endif
    expect_signal(SIGSEGV);
}

/* tide reports, then the application's own handler gets the fault. */
static void test_overflow_then_app_handler(void **state) {
    (void)state;
    run_child(child_overflow_app_handler);
    expect_exit(42);
    expect_report(rounded_to_pages(TIDE_TASK_MIN_STACK_SIZE));
    const char *report = strstr(out.err, "tide: task");
    const char *app = strstr(out.err, "app handler ran");
    assert_non_null(app);
    assert_true(report < app);
}

static void test_chain_siginfo_handler(void **state) {
    (void)state;
    run_child(child_chain_siginfo);
    expect_exit(0);
    assert_false(said("tide:"));
}

static void test_chain_plain_handler(void **state) {
    (void)state;
    run_child(child_chain_plain);
    expect_exit(0);
    assert_false(said("tide:"));
}

static void test_fault_outside_task_default(void **state) {
    (void)state;
    run_child(child_fault_outside_dfl);
    expect_signal(SIGSEGV);
    assert_false(said("tide:"));
}

static void test_altstack_kept(void **state) {
    (void)state;
    run_child(child_keeps_app_altstack);
    expect_exit(0);
}

static void test_altstack_per_thread(void **state) {
    (void)state;
    run_child(child_altstack_threads);
    expect_exit(0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overflow_reported),
        cmocka_unit_test(test_overflow_reported_on_a_thread),
        cmocka_unit_test(test_overflow_default_stack),
        cmocka_unit_test(test_overflow_then_app_handler),
        cmocka_unit_test(test_chain_siginfo_handler),
        cmocka_unit_test(test_chain_plain_handler),
        cmocka_unit_test(test_fault_outside_task_default),
        cmocka_unit_test(test_altstack_kept),
        cmocka_unit_test(test_altstack_per_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
