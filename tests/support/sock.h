/* Socket test helpers shared by the socket transport tests (test_socket, test_flow,
 * test_faults): a per-test fixture that checks the loop closes cleanly and no
 * descriptor leaks, connected pairs of every stream kind (socketpair, TCP over
 * 127.0.0.1 and ::1, a Unix socket bound to a path), wrapping a descriptor in a
 * transport through the public connect_socket calls, and a deterministic byte pattern.
 * Include after support.h. */
#ifndef TIDE_TEST_SOCK_H
#define TIDE_TEST_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tide.h"

/* The cmocka state of every test using sk_setup / sk_teardown. */
typedef struct sk_fixture {
    tide_loop_t *loop;
    int fds_before;
} sk_fixture;

/* Makes a loop and records the descriptor count. */
int sk_setup(void **state);
/* Restores the system-call table, closes the loop (asserting it closed cleanly) and
 * asserts the descriptor count is back where it was. */
int sk_teardown(void **state);

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

/* Both ends of a kind wrapped: a (client side) and b (server side). Returns false
 * (nothing left open) when the kind is unavailable. */
bool sk_pair(tide_loop_t *loop, sk_kind kind, tide_protocol_t *a, tide_protocol_t *b,
             tide_transport_t **ta, tide_transport_t **tb);

/* Writes `chunk`-byte pieces of the pattern until some of it is queued in user space
 * (the kernel's buffers are full because the peer does not read). Returns the number
 * of bytes written, continuing the pattern from *offset (advanced). */
size_t sk_fill(tide_transport_t *t, size_t chunk, uint64_t *offset);

/* The test pattern: byte i of the stream is a function of i alone, so any loss,
 * duplication or reordering changes the checksum. */
void sk_pattern(void *buf, size_t len, uint64_t offset);
/* The FNV-1a checksum of pattern bytes [offset, offset + len), chained on h. */
uint64_t sk_pattern_sum(uint64_t offset, size_t len, uint64_t h);

/* Runs n non-blocking loop iterations: anything already readable in the kernel would
 * be delivered, so this shows that nothing is (used to check paused reading). */
void sk_spin(tide_loop_t *loop, int n);

/* Bounded runs until a counter reaches min, or a recorder has received len bytes. */
void sk_run_until_count(tide_loop_t *loop, const int *value, int min);
struct ts_recorder;
void sk_run_until_len(tide_loop_t *loop, struct ts_recorder *r, size_t len);

/* Sends an RST instead of a FIN: SO_LINGER with a zero timeout, then close. */
void sk_close_with_reset(int fd);

#endif
