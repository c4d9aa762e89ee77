/* Testing protocols without a network: an in-memory transport pair and a loop clock
 * that tests advance by hand (as Twisted's StringTransport and Clock). */
#ifndef TIDE_TESTING_H
#define TIDE_TESTING_H

#include <stddef.h>

#include "transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Connects protocols a and b through two in-memory transports: what one side writes
 * the other receives, on a later loop iteration, in order. Both connection_made calls
 * are deferred, as for sockets. Each side behaves like a socket transport: write
 * queue and watermarks, pause/resume reading, write_eof (the peer gets eof_received),
 * close and abort. *ta / *tb (either may be NULL) receive the transports, valid until
 * their connection_lost. Returns 0 or TIDE_ENOMEM. */
TIDE_EXTERN int tide_memory_pair_new(tide_loop_t *loop, tide_protocol_t *a, tide_protocol_t *b,
                                     tide_transport_t **ta, tide_transport_t **tb);

/* How many bytes the receiving side of t accepts before t's writes start to queue
 * (the "socket buffer"; default 256 KiB). Bytes the peer has not read because it
 * paused reading count against it. 0 means writes always queue. */
TIDE_EXTERN int tide_memory_transport_set_window(tide_transport_t *t, size_t bytes);

/* Makes both sides fail as a reset connection would: t's protocol gets
 * connection_lost(error) and the peer's connection_lost(error) too. error must be
 * negative (for example TIDE_ECONNRESET). Returns 0 or TIDE_EINVAL. */
TIDE_EXTERN int tide_memory_transport_inject_error(tide_transport_t *t, int error);

/* Switches the loop to a manual clock starting at `start`: tide_loop_time() returns
 * the manual time and timers fire only when tide_loop_advance() passes their
 * deadline. Call it before scheduling any timer. Returns 0 or TIDE_EBUSY when timers
 * are already pending. */
TIDE_EXTERN int tide_loop_use_manual_clock(tide_loop_t *loop, double start);

/* Moves the manual clock forward by seconds, running every timer that falls due, in
 * deadline order, each with the clock set to its deadline; then runs the callbacks
 * made ready. Returns the number of timers run, or TIDE_EINVAL without a manual clock. */
TIDE_EXTERN int tide_loop_advance(tide_loop_t *loop, double seconds);

#ifdef __cplusplus
}
#endif
#endif
