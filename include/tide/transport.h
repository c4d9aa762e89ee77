/* Transports: asyncio's transport methods, for every kind of transport (TCP and Unix
 * sockets, the in-memory pair, TLS). A transport is created by tide (connect, accept,
 * memory pair) and freed by tide after the protocol's connection_lost returns; the
 * pointer is valid from connection_made until then. */
#ifndef TIDE_TRANSPORT_H
#define TIDE_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One piece of a scatter/gather write. */
typedef struct tide_iovec {
    const void *base; /* the bytes (may be NULL when len is 0) */
    size_t len;       /* how many */
} tide_iovec_t;

/* Writes len bytes: straight to the socket when nothing is queued; what the kernel
 * does not take is copied into the write queue. May call pause_writing before it
 * returns. Returns 0 when all bytes were accepted (an empty write does nothing), or
 * TIDE_ECLOSED after close/abort, TIDE_EPIPE after write_eof, the connection's
 * error once it is known dead, TIDE_ENOBUFS beyond the hard cap, TIDE_ENOMEM; in
 * every error case no byte was accepted. */
TIDE_EXTERN int tide_transport_write(tide_transport_t *t, const void *data, size_t len);

/* Writes the concatenation of n buffers with one writev; same rules as write, and
 * TIDE_EINVAL for a piece with a NULL base and a non-zero length (an empty piece may
 * have a NULL base). */
TIDE_EXTERN int tide_transport_writelines(tide_transport_t *t, const tide_iovec_t *bufs, size_t n);

/* Half-closes: shuts down the sending side once the queue is flushed; reading goes on.
 * Returns 0 (also when already requested), TIDE_ENOTSUP when the transport cannot,
 * or TIDE_ECLOSED when closing. */
TIDE_EXTERN int tide_transport_write_eof(tide_transport_t *t);

/* True when write_eof is supported (TCP, Unix, memory; not TLS). */
TIDE_EXTERN bool tide_transport_can_write_eof(const tide_transport_t *t);

/* Stops reading now, flushes the queue, then closes; connection_lost(0) follows on a
 * later iteration. Idempotent; NULL is a no-op. */
TIDE_EXTERN void tide_transport_close(tide_transport_t *t);

/* Discards the queue and closes now; connection_lost(0) follows on a later iteration
 * (resume_writing is not called). Idempotent; NULL is a no-op. */
TIDE_EXTERN void tide_transport_abort(tide_transport_t *t);

/* True once close, abort, a fatal error or an EOF-triggered close has begun. */
TIDE_EXTERN bool tide_transport_is_closing(const tide_transport_t *t);

/* Stops data_received (and get_buffer) until resume_reading. Idempotent; a no-op when
 * closing. Works from inside connection_made. */
TIDE_EXTERN void tide_transport_pause_reading(tide_transport_t *t);

/* Restarts reading after pause_reading. Idempotent; a no-op when closing. */
TIDE_EXTERN void tide_transport_resume_reading(tide_transport_t *t);

/* True while reading is active: not paused and not closing. */
TIDE_EXTERN bool tide_transport_is_reading(const tide_transport_t *t);

/* Sets the write-buffer watermarks. Pass -1 for a mark not given: with neither given,
 * high 64 KiB and low 16 KiB; high only: low = high / 4; low only: high = 4 * low.
 * Requires high >= low >= 0, else TIDE_EINVAL. May call pause_writing at once. */
TIDE_EXTERN int tide_transport_set_write_buffer_limits(tide_transport_t *t, long high, long low);

/* Reads the current watermarks. */
TIDE_EXTERN void tide_transport_get_write_buffer_limits(const tide_transport_t *t, size_t *low,
                                                        size_t *high);

/* Bytes queued in user space, not yet taken by the kernel (or the peer). */
TIDE_EXTERN size_t tide_transport_get_write_buffer_size(const tide_transport_t *t);

/* A hard cap on the queue (0, the default, means none): a write that would queue
 * more than cap bytes is refused whole with TIDE_ENOBUFS. Stricter than asyncio. */
TIDE_EXTERN void tide_transport_set_max_write_buffer_size(tide_transport_t *t, size_t cap);

/* The protocol receiving callbacks, and swapping it (asyncio's set_protocol): the new
 * protocol gets the next callback; connection_made is not called on it. */
TIDE_EXTERN tide_protocol_t *tide_transport_get_protocol(const tide_transport_t *t);
TIDE_EXTERN void tide_transport_set_protocol(tide_transport_t *t, tide_protocol_t *protocol);

/* The loop the transport runs on. */
TIDE_EXTERN tide_loop_t *tide_transport_get_loop(const tide_transport_t *t);

/* Copies the peer's address into addr (*len in: its size; out: the address length;
 * an unnamed Unix peer has length sizeof(sa_family_t)). Returns 0, or TIDE_ENOTSOCK
 * for a transport without a socket, TIDE_ENOTCONN when unknown. */
TIDE_EXTERN int tide_transport_get_peername(const tide_transport_t *t, struct sockaddr *addr,
                                            socklen_t *len);

/* Copies the local address, as get_peername. */
TIDE_EXTERN int tide_transport_get_sockname(const tide_transport_t *t, struct sockaddr *addr,
                                            socklen_t *len);

/* The socket's file descriptor (still owned by the transport), or TIDE_ENOTSOCK. */
TIDE_EXTERN int tide_transport_get_fd(const tide_transport_t *t);

/* A short static name of the transport's kind: "tcp", "unix", "memory", "tls". */
TIDE_EXTERN const char *tide_transport_kind(const tide_transport_t *t);

/* Formats a socket address as "1.2.3.4:80", "[::1]:80" or a Unix path into buf
 * (always NUL-terminated). Returns buf. */
TIDE_EXTERN char *tide_format_address(const struct sockaddr *addr, socklen_t len, char *buf,
                                      size_t size);

#ifdef __cplusplus
}
#endif
#endif
