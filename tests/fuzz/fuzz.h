/* What every fuzz target in tests/fuzz shares: libFuzzer's entry points, the check
 * that turns a broken expectation into a crash libFuzzer reports, and a log handler
 * that keeps tide's warnings out of the fuzzer's output. Header-only. */
#ifndef TIDE_FUZZ_H
#define TIDE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "tide.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* abort()s with the failed condition when cond is false (in every build type). */
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: requirement failed: %s\n", __FILE__, __LINE__, #cond);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A tide_log_cb that drops everything. */
static inline void fuzz_quiet_log(tide_loop_t *loop, tide_log_level_t level, const char *msg,
                                  void *arg) {
    (void)loop, (void)level, (void)msg, (void)arg;
}

#endif
