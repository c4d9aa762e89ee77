/* Shared test support: a bounded, event-driven run-until, descriptor counting, a
 * recording protocol that checks asyncio's callback order as it goes, and a fixture of
 * two recorders for the two ends of one connection.
 * Include after <setjmp.h>, <stdarg.h>, <stddef.h> and <cmocka.h>. */
#ifndef TIDE_TEST_SUPPORT_H
#define TIDE_TEST_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tide.h"

/* Seconds scaled by TIDE_TEST_TIMEOUT_MULTIPLIER (default 1; the sanitizer job sets more). */
double ts_scaled(double seconds);

/* A new loop; fails the test if it cannot be made. */
tide_loop_t *ts_loop_new(void);

/* Closes the loop and asserts it closed cleanly (nothing left open). */
void ts_loop_close(tide_loop_t *loop);

/* Runs the loop one blocking iteration at a time until pred(arg) is true; fails the
 * test when `seconds` (scaled) pass first. Never sleeps: a timer bounds each wait. */
void ts_run_until(tide_loop_t *loop, bool (*pred)(void *arg), void *arg, double seconds);

/* Runs until *flag becomes non-zero (a common predicate). */
void ts_run_until_flag(tide_loop_t *loop, const int *flag, double seconds);

/* Runs n non-blocking loop iterations: anything already due would be delivered, so
 * this shows that nothing is (paused reading, a deferred call not yet made). */
void ts_spin(tide_loop_t *loop, int n);

/* Number of open descriptors of this process. */
int ts_count_fds(void);

/* The end of every fixture: restores the system-call table (tide__sys), closes the loop
 * asserting it closed cleanly, and asserts the descriptor count is back at fds_before. */
void ts_finish(tide_loop_t *loop, int fds_before);

/* ---- recording protocol ---------------------------------------------------------- */

/* Events, in order, as one letter each: M made, D data, E eof, L lost, P pause_writing,
 * R resume_writing. Order violations (anything before M, anything after L, D after E,
 * two E, P/R not alternating) are counted in `violations`. */
typedef struct ts_recorder ts_recorder;
struct ts_recorder {
    tide_protocol_t base;
    tide_transport_t *transport;
    char events[256];
    size_t nevents;
    int violations;
    unsigned char *data; /* everything received */
    size_t len, cap;
    int lost_status;
    int made, lost, eofs, pauses, resumes;
    bool keep_open_on_eof; /* eof_received's answer */
    bool echo;             /* write back what is received */
    /* Optional hooks, run after the recording. */
    void (*on_made)(ts_recorder *r);
    void (*on_data)(ts_recorder *r, const void *data, size_t len);
    bool (*on_eof)(ts_recorder *r); /* overrides keep_open_on_eof when set */
    void (*on_lost)(ts_recorder *r, int status);
    void (*on_pause)(ts_recorder *r);
    void (*on_resume)(ts_recorder *r);
    void *user;
};

/* Initialises a recorder (zeroes it and sets the ops). Free with ts_recorder_free. */
void ts_recorder_init(ts_recorder *r);
void ts_recorder_free(ts_recorder *r);
/* The same as a buffered protocol (get_buffer/buffer_updated into a 4 KiB window). */
void ts_recorder_init_buffered(ts_recorder *r);

/* Factory for servers and connects: arg is a ts_recorder_pool. Each call hands out the
 * next recorder in the array (NULL when exhausted). */
typedef struct ts_recorder_pool {
    ts_recorder *items;
    size_t count;
    size_t used;
} ts_recorder_pool;
tide_protocol_factory_cb ts_recorder_factory(void);

/* Predicates for ts_run_until on a ts_recorder *. */
bool ts_pred_made(void *recorder);
bool ts_pred_lost(void *recorder);
bool ts_pred_eof(void *recorder);

/* ---- two recorders on the two ends of one connection ------------------------------ */

typedef struct ts_duo {
    tide_loop_t *loop;
    int fds_before;
    ts_recorder a, b;          /* a: the client (first) side; b: the server (second) side */
    tide_transport_t *ta, *tb; /* their transports, once the test connected them */
} ts_duo;

/* Zeroes d and makes a and b plain recorders (adjust them before connecting). */
void ts_duo_init(ts_duo *d, tide_loop_t *loop);
/* Asserts that neither recorder saw an order violation, then frees both. */
void ts_duo_free(ts_duo *d);
/* Predicates for ts_run_until on a ts_duo *: both connection_made / both lost ran. */
bool ts_pred_duo_made(void *duo);
bool ts_pred_duo_lost(void *duo);

/* A cmocka fixture: *state becomes a ts_duo on a new loop, not connected. The
 * teardown is ts_finish (clean close, no descriptor leaked) then ts_duo_free. */
int ts_duo_setup(void **state);
int ts_duo_teardown(void **state);
#define TS_DUO_TEST(fn) cmocka_unit_test_setup_teardown(fn, ts_duo_setup, ts_duo_teardown)

/* ---- tasks ------------------------------------------------------------------------ */

/* How a joined task ended: calls counts join callbacks (0 until it finished). */
typedef struct ts_joined {
    int calls;
    int result;
    tide_task_t *task;
} ts_joined;

/* A join callback recording into the ts_joined at arg. */
void ts_on_joined(tide_task_t *task, int result, void *arg);

/* Spawns fn(arg) with default options and joins it into *j (zeroed first). */
tide_task_t *ts_spawn_joined(tide_loop_t *loop, tide_task_fn fn, void *arg, ts_joined *j);

/* Runs fn(arg) as a task to its end (bounded) and returns its result. */
int ts_run_task(tide_loop_t *loop, tide_task_fn fn, void *arg);

/* A task body that recurses, 256 bytes of locals a frame, until it overflows its
 * stack (it never returns). */
int ts_overflow_task(void *arg);

/* Inside a task, a failed check returns the line number: a task must not longjmp out
 * of its stack, so cmocka's asserts stay outside tasks. */
#define TS_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "check failed at line %d: %s\n", __LINE__, #cond);                     \
            return __LINE__;                                                                       \
        }                                                                                          \
    } while (0)

/* TS_ASAN is defined when built with AddressSanitizer (gcc or clang). */
#if defined(__SANITIZE_ADDRESS__)
#define TS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TS_ASAN 1
#endif
#endif

/* A simple checksum (FNV-1a 64) for comparing large transfers. */
uint64_t ts_fnv1a(const void *data, size_t len, uint64_t seed);
#define TS_FNV_SEED 0xcbf29ce484222325ULL

#endif
