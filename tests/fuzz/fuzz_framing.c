/* libFuzzer target: the framing protocols (include/tide/framing.h) fed through
 * tide_protocol_feed.
 *
 * The first input byte picks the kind and the maximum, the second the piece size and
 * how often the receiver pauses; the rest is the byte stream. It is delivered twice:
 * whole with no pause, then in pieces with a pause after every n-th record and a
 * resume through the loop. Both runs must deliver the same records (a digest of each
 * record and its length, in order), end with the same error, and keep the same rest.
 * Any mismatch abort()s.
 *
 * Single-threaded: the harness's loop runs only the deferred resumes. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "tide.h"

typedef struct sink {
    tide_framing_t framing;
    uint64_t digest;
    size_t records;
    unsigned pause_every;
} sink;

static tide_loop_t *loop;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    REQUIRE(tide_loop_new(&loop) == 0);
    tide_loop_set_log_handler(loop, fuzz_quiet_log, NULL);
    return 0;
}

static void got(tide_framing_t *f, const void *data, size_t len) {
    sink *s = TIDE_CONTAINER_OF(f, sink, framing);
    REQUIRE(len <= f->max);
    const unsigned char *p = data;
    s->digest = (s->digest ^ len) * 0x100000001b3ULL;
    for (size_t i = 0; i < len; i++)
        s->digest = (s->digest ^ p[i]) * 0x100000001b3ULL;
    s->records++;
    if (s->pause_every && s->records % s->pause_every == 0)
        tide_framing_pause(f);
}

static void got_line(tide_framing_t *f, const char *line, size_t len) { got(f, line, len); }

static const tide_framing_ops_t ops = {
    .size = TIDE_FRAMING_OPS_SIZE, .line_received = got_line, .frame_received = got};

static void run(sink *s, unsigned mode, const uint8_t *data, size_t len, size_t step,
                unsigned pause_every) {
    static const size_t maxes[] = {1, 4, 16, 255};
    tide_framing_kind_t kind = (tide_framing_kind_t)(TIDE_FRAMING_LINES + mode % 5);
    memset(s, 0, sizeof *s);
    REQUIRE(tide_framing_init(&s->framing, loop, kind, maxes[(mode / 5) % 4], &ops) == 0);
    s->digest = 0xcbf29ce484222325ULL;
    s->pause_every = pause_every;
    for (size_t pos = 0; pos < len; pos += step) {
        size_t n = len - pos < step ? len - pos : step;
        REQUIRE(tide_protocol_feed(&s->framing.base, data + pos, n) == 0);
    }
    /* Resume until everything kept is delivered. */
    for (size_t guard = 0; tide_framing_is_paused(&s->framing); guard++) {
        REQUIRE(guard <= len + 1);
        REQUIRE(tide_framing_resume(&s->framing) == 0);
        REQUIRE(tide_loop_run(loop, TIDE_RUN_NOWAIT) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2)
        return 0;
    unsigned mode = data[0];
    size_t step = data[1] % 8 + 1;
    unsigned pause_every = data[1] / 8 % 4;
    sink whole, pieces;
    run(&whole, mode, data + 2, size - 2, size, 0);
    run(&pieces, mode, data + 2, size - 2, step, pause_every);
    REQUIRE(whole.records == pieces.records);
    REQUIRE(whole.digest == pieces.digest);
    REQUIRE(whole.framing.error == pieces.framing.error);
    size_t a, b;
    const void *ra = tide_framing_rest(&whole.framing, &a);
    const void *rb = tide_framing_rest(&pieces.framing, &b);
    if (whole.framing.error == 0) {
        REQUIRE(a == b);
        REQUIRE(a == 0 || memcmp(ra, rb, a) == 0);
    }
    tide_framing_release(&whole.framing);
    tide_framing_release(&pieces.framing);
    return 0;
}
