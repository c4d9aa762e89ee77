/* Benchmark: the cost of a task switch, printed as the median of several runs.
 *
 *   raw switch      two contexts bouncing with tide__ctx_switch alone: ns per switch
 *   task yield      tasks calling tide_task_yield on one loop: ns per yield, which is
 *                   two switches plus the ready queue and, once per round of all the
 *                   tasks, one loop iteration (a non-blocking poll)
 *
 * Not part of the test suite. bench/CMakeLists.txt builds it against the static
 * library (bench/run.py runs it pinned to one core, as its "switch" part):
 *   cmake -S bench -B build-bench -DCMAKE_BUILD_TYPE=Release
 *   cmake --build build-bench --target task_switch && build-bench/task_switch [ROUNDS]
 * (to measure the ucontext fallback's raw switch instead, build it by hand with
 * -DTIDE_TASK_UCONTEXT=1 and core/task_switch.c on the command line). Single-threaded;
 * run on an idle core. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "core/core_int.h"

#define RUNS 7

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return v[n / 2];
}

/* ---- raw switch ------------------------------------------------------------------ */

typedef struct bounce {
    tide__ctx main_ctx, co_ctx;
    long count;
} bounce;

static void bounce_entry(void *arg) {
    bounce *b = arg;
    for (;;) {
        b->count++;
        tide__ctx_switch(&b->co_ctx, b->main_ctx);
    }
}

static double raw_switch_ns(long rounds) {
    size_t size = 64 * 1024;
    void *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (stack == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    bounce b = {0};
    b.co_ctx = tide__ctx_make(stack, size, bounce_entry, &b);
    double start = tide__now_monotonic();
    for (long i = 0; i < rounds; i++)
        tide__ctx_switch(&b.main_ctx, b.co_ctx);
    double took = tide__now_monotonic() - start;
    munmap(stack, size);
    if (b.count != rounds)
        abort();
    return took * 1e9 / (2.0 * (double)rounds); /* two switches per round */
}

/* ---- task yields ----------------------------------------------------------------- */

static long yields_each;

static int yielder(void *arg) {
    (void)arg;
    for (long i = 0; i < yields_each; i++)
        if (tide_task_yield() != 0)
            abort();
    return 0;
}

static double task_yield_ns(int ntasks, long total_yields) {
    tide_loop_t *loop = NULL;
    if (tide_loop_new(&loop) != 0)
        abort();
    yields_each = total_yields / ntasks;
    for (int i = 0; i < ntasks; i++)
        if (tide_task_spawn(loop, yielder, NULL, NULL, NULL) != 0)
            abort();
    double start = tide__now_monotonic();
    tide_loop_run(loop, TIDE_RUN_DEFAULT);
    double took = tide__now_monotonic() - start;
    if (tide_loop_close(loop) != 0)
        abort();
    return took * 1e9 / (double)(yields_each * ntasks);
}

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 10000000;
    if (rounds <= 0)
        rounds = 10000000;
    double v[RUNS];

    raw_switch_ns(rounds / 10); /* warm up */
    for (int i = 0; i < RUNS; i++)
        v[i] = raw_switch_ns(rounds);
    printf("raw switch (%s): %.2f ns per switch (median of %d x %ld round trips)\n",
           tide__ctx_backend(), median(v, RUNS), RUNS, rounds);

    const int counts[] = {2, 100};
    for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
        for (int i = 0; i < RUNS; i++)
            v[i] = task_yield_ns(counts[c], rounds / 5);
        printf("task yield, %3d tasks: %.2f ns per yield (median of %d x %ld yields)\n", counts[c],
               median(v, RUNS), RUNS, rounds / 5);
    }
    return 0;
}
