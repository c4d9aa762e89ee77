/* Socket test helpers shared by the socket transport tests (test_socket, test_flow,
 * test_faults), whose fixture is support.h's ts_duo (ts_duo_setup / ts_duo_teardown):
 * connected pairs of every stream kind (socketpair, TCP over 127.0.0.1 and ::1, a Unix
 * socket bound to a path), wrapping a descriptor in a transport through the public
 * connect_socket calls, and a deterministic byte pattern. Include after support.h. */
#ifndef TIDE_TEST_SOCK_H
#define TIDE_TEST_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "support/support.h"
#include "tide.h"

/* The loop of the test's ts_duo fixture, and its recorder a, for tests that wrap one
 * end of a raw pair only. */
#define SK_LOOP(state) (((ts_duo *)*(state))->loop)
#define SK_RECORDER(state) (&((ts_duo *)*(state))->a)

typedef enum sk_kind {
    SK_SOCKETPAIR, /* socketpair(AF_UNIX, SOCK_STREAM) */
    SK_TCP4,       /* 127.0.0.1, listener on port 0 */
    SK_TCP6,       /* ::1, listener on port 0 */
    SK_UNIX_PATH   /* a Unix socket bound to a path in a fresh temporary directory */
} sk_kind;

/* A connected pair of raw blocking descriptors: *client connected, *server accepted
 * (for a socketpair, just the two ends). Returns false when the kind is not available
 * on this machine (no IPv6): the caller skips. Fails the test on other errors. */
bool sk_raw_pair(sk_kind kind, int *client, int *server);

/* Wraps fd (which the transport then owns) with protocol p through
 * tide_loop_connect_socket (or connect_accepted_socket when server_side), runs the
 * loop until the completion, asserts success and returns the transport:
 * connection_made has already run. */
tide_transport_t *sk_wrap(tide_loop_t *loop, int fd, tide_protocol_t *p, bool server_side);

/* Connects the duo's recorders over kind, both ends wrapped with sk_wrap: d->ta carries
 * a (client side), d->tb carries b. Returns false (nothing left open) when the kind is
 * unavailable. */
bool sk_connect(ts_duo *d, sk_kind kind);
/* The test's ts_duo fixture, connected over kind (which must be available). */
ts_duo *sk_open(void **state, sk_kind kind);

/* Writes the next `len` (at most 64 KiB) pattern bytes from *offset (advanced),
 * asserting the write succeeds. Returns len. */
size_t sk_write_pattern(tide_transport_t *t, size_t len, uint64_t *offset);

/* Writes `chunk`-byte pieces of the pattern until some of it is queued in user space
 * (the kernel's buffers are full because the peer does not read). Returns the number
 * of bytes written, continuing the pattern from *offset (advanced). */
size_t sk_fill(tide_transport_t *t, size_t chunk, uint64_t *offset);

/* The test pattern: byte i of the stream is a function of i alone, so any loss,
 * duplication or reordering changes the checksum. */
void sk_pattern(void *buf, size_t len, uint64_t offset);
/* The FNV-1a checksum of pattern bytes [offset, offset + len), chained on h. */
uint64_t sk_pattern_sum(uint64_t offset, size_t len, uint64_t h);

/* Asserts that r received exactly the pattern bytes [0, len), by checksum. */
void sk_expect_pattern(const ts_recorder *r, uint64_t len);

/* Bounded runs until a counter reaches min, or a recorder has received len bytes. */
void sk_run_until_count(tide_loop_t *loop, const int *value, int min);
void sk_run_until_len(tide_loop_t *loop, ts_recorder *r, size_t len);

/* Sends an RST instead of a FIN: SO_LINGER with a zero timeout, then close. */
void sk_close_with_reset(int fd);

#endif
