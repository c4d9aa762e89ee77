/* Benchmark: coordination between tasks, against asyncio running the same program
 * (bench/py_coordination.py), printed as the median of several runs.
 *
 *   queue      a producer task puts N items into a queue of 64, a consumer task gets
 *              them: items per second (each full or empty queue switches tasks)
 *   lock       two tasks take turns on one lock: acquire, yield, release, so that
 *              every release hands the lock to the other task: hand-offs per second
 *
 * Public API only. Not part of the test suite. bench/CMakeLists.txt builds it:
 *   cmake -S bench -B build-bench -DCMAKE_BUILD_TYPE=Release
 *   cmake --build build-bench --target coordination
 *   python3 bench/py_coordination.py build-bench/coordination
 * Single-threaded; run on an idle core. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <tide.h>

#define RUNS 5
#define ITEMS 1000000
#define HANDOFFS 500000

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct shared {
    tide_queue_t *queue;
    tide_lock_t *lock;
    long count;
    long handoffs;
} shared;

static int producer(void *arg) {
    shared *s = arg;
    for (long i = 0; i < s->count; i++)
        if (tide_queue_put_await(s->queue, (void *)(i + 1)) != 0)
            return 1;
    return 0;
}

static int consumer(void *arg) {
    shared *s = arg;
    void *item;
    for (long i = 0; i < s->count; i++)
        if (tide_queue_get_await(s->queue, &item) != 0 || (long)item != i + 1)
            return 1;
    return 0;
}

static int turn_taker(void *arg) {
    shared *s = arg;
    for (long i = 0; i < s->count; i++) {
        if (tide_lock_acquire_await(s->lock) != 0)
            return 1;
        s->handoffs++;
        tide_task_yield(); /* the other task queues on the lock meanwhile */
        tide_lock_release(s->lock);
    }
    return 0;
}

/* Runs two tasks to their end on a fresh loop; returns the seconds it took. */
static double run_pair(tide_task_fn a, tide_task_fn b, shared *s) {
    tide_loop_t *loop;
    tide_task_t *ta, *tb;
    if (tide_loop_new(&loop) != 0)
        exit(1);
    tide_queue_options_t qo = {.maxsize = 64};
    if (tide_queue_new(loop, &qo, &s->queue) != 0 || tide_lock_new(loop, &s->lock) != 0)
        exit(1);
    double t0 = now();
    if (tide_task_spawn(loop, a, s, NULL, &ta) != 0 || tide_task_spawn(loop, b, s, NULL, &tb) != 0)
        exit(1);
    tide_task_detach(ta);
    tide_task_detach(tb);
    if (tide_loop_run(loop, TIDE_RUN_DEFAULT) != 0)
        exit(1);
    double t = now() - t0;
    tide_queue_free(s->queue);
    tide_lock_free(s->lock);
    if (tide_loop_close(loop) != 0)
        exit(1);
    return t;
}

int main(int argc, char **argv) {
    double scale = argc > 1 ? atof(argv[1]) : 1.0;
    long items = (long)(ITEMS * scale), handoffs = (long)(HANDOFFS * scale);
    double q[RUNS], l[RUNS];
    for (int r = 0; r < RUNS; r++) {
        shared s = {.count = items};
        q[r] = (double)items / run_pair(producer, consumer, &s);
        shared t = {.count = handoffs};
        l[r] = (double)t.handoffs; /* 0 before the run */
        l[r] = (double)(2 * handoffs) / run_pair(turn_taker, turn_taker, &t);
        if (t.handoffs != 2 * handoffs)
            return 1;
    }
    qsort(q, RUNS, sizeof(double), cmp_double);
    qsort(l, RUNS, sizeof(double), cmp_double);
    printf("queue_items_per_s %.0f\n", q[RUNS / 2]);
    printf("lock_handoffs_per_s %.0f\n", l[RUNS / 2]);
    return 0;
}
