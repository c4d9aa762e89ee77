/* Stream test helpers (tests/streams/): a read-completion recorder, checks of one
 * completion, stream pairs over the in-memory transport (through the adapter, as the
 * open functions would make them), and a drain / wait_closed recorder.
 * Include after support.h. */
#ifndef TIDE_TEST_STREAMS_H
#define TIDE_TEST_STREAMS_H

#include <stdbool.h>
#include <stddef.h>

#include "streams/streams_int.h"
#include "tide.h"

/* Records one read completion, copying its data. */
typedef struct st_rd {
    int calls;
    int status;
    bool had_data; /* data was not NULL */
    unsigned char *buf;
    size_t len;
} st_rd;

void st_rd_cb(tide_reader_t *r, int status, const void *data, size_t len, void *arg);
/* Frees the copy and zeroes the record for the next read. */
void st_rd_reset(st_rd *x);
bool st_rd_done(void *rd); /* calls > 0 */

/* Waits for x's completion and asserts it ran once with status and exactly `bytes`
 * (NULL: data was NULL); then resets x. */
void st_expect(tide_loop_t *loop, st_rd *x, int status, const char *bytes);

/* Runs n non-blocking loop iterations (deterministic "nothing happens" checks). */
void st_spin(tide_loop_t *loop, int n);

/* Records drain / wait_closed completions. */
typedef struct st_wr {
    int calls;
    int status;
} st_wr;
void st_wr_cb(tide_writer_t *w, int status, void *arg);
bool st_wr_done(void *wr); /* calls > 0 */

/* True when TIDE_TEST_STREAMS_OVER=tls: st_pair_open then upgrades both streams to
 * TLS (tests/tls.cmake runs suites that way a second time). ta and tb stay the memory
 * transports underneath, so windows and injected errors still work. */
bool st_over_tls(void);
/* Skips the running test over TLS: it needs a half-close (TLS has none), or an error
 * injected below the stream to be known above it synchronously. */
void st_plain_only(void);

/* Two streams connected through the in-memory pair, both made, each with a
 * wait_closed recording its loss. A test that closes a or b itself sets the pointer
 * to NULL once it is done with it (the stream may be freed after that). */
typedef struct st_pair {
    tide_loop_t *loop;
    tide_writer_t *a, *b;
    tide_transport_t *ta, *tb;
    st_wr lost_a, lost_b;
} st_pair;

void st_pair_open(st_pair *p, size_t limit);
bool st_pair_lost(void *pair); /* both connections lost */
/* Closes the writers still set, waits for both losses, closes the loop cleanly. */
void st_pair_close(st_pair *p);

/* Runs until r has at least n bytes buffered. */
void st_wait_buffered(tide_loop_t *loop, tide_reader_t *r, size_t n);

#endif
