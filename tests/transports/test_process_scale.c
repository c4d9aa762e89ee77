/* Subprocesses at scale, with the subprocess protocol: 256 MiB through cat with the
 * writer and the reader on one loop and a checksum, 1,000 children at once all
 * reaped, and two loops in two threads each with children of its own. Each test ends
 * with a clean loop close, the same descriptor count, and no child unreaped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "support/proc.h"
#include "support/support.h"

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

static void pump_fill(pr_rec *r) {
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

static void pump_data(pr_rec *r, int fd, const void *data, size_t len) {
    pump *pp = r->user;
    assert_int_equal(fd, 1);
    pp->sum_in = mix(pp->sum_in, pp->got, data, len);
    pp->got += len;
}

static void test_cat_256mib(void **state) {
    pr_fx *f = *state;
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
    ts_run_until(f->loop, pr_pred_lost, &f->r, 60);
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
    pr_rec recs[MANY];
    int lost;
} many;

static void many_lost(tide_subprocess_protocol_t *p, int status) {
    pr_lost(p, status);
    (*(int *)((pr_rec *)p)->user)++;
}

static bool pred_all(void *arg) { return *(int *)arg == MANY; }

static void test_thousand_children(void **state) {
    pr_fx *f = *state;
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 2 * MANY + 64 && rl.rlim_max >= 2 * MANY + 64) {
        rl.rlim_cur = 2 * MANY + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    static const tide_subprocess_protocol_ops_t ops = {
        .size = TIDE_SUBPROCESS_PROTOCOL_OPS_SIZE,
        .connection_made = pr_made,
        .pipe_data_received = pr_data,
        .pipe_connection_lost = pr_pipe_lost,
        .process_exited = pr_exited,
        .connection_lost = many_lost,
    };
    many *m = calloc(1, sizeof(*m));
    tide_subprocess_options_t o;
    tide_subprocess_options_init(&o, TIDE_STDIO_DEVNULL);
    o.stdio[1].mode = TIDE_STDIO_PIPE; /* one pipe each: the output tells them apart */
    for (int i = 0; i < MANY; i++) {
        pr_rec_init(&m->recs[i]);
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
        assert_string_equal(pr_text(&m->recs[i], 1), expect);
        assert_int_equal(m->recs[i].returncode, i % 200);
        pr_rec_free(&m->recs[i]);
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
    pr_rec recs[PER_THREAD];
    int lost = 0;
    static const tide_subprocess_protocol_ops_t ops = {
        .size = TIDE_SUBPROCESS_PROTOCOL_OPS_SIZE,
        .connection_made = pr_made,
        .pipe_data_received = pr_data,
        .process_exited = pr_exited,
        .connection_lost = many_lost,
    };
    tide_subprocess_options_t o;
    tide_subprocess_options_init(&o, TIDE_STDIO_DEVNULL);
    for (int i = 0; i < PER_THREAD; i++) {
        pr_rec_init(&recs[i]);
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
        PR_TEST(test_cat_256mib),
        PR_TEST(test_thousand_children),
        PR_TEST(test_two_loops_two_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
