/* Datagram endpoints: asyncio's create_datagram_endpoint, DatagramProtocol and
 * DatagramTransport, for UDP over IPv4 and IPv6 and for Unix datagram sockets.
 *
 * An endpoint is made by tide and freed by tide after its protocol's connection_lost
 * returns; the pointer is valid from connection_made until then. Callback order is
 * asyncio's: connection_made once, first; datagram_received (or get_buffer /
 * datagram_updated) and error_received any number of times; connection_lost once,
 * last. No callback runs inside a call the protocol made itself, except
 * pause_writing, which fires inside the sendto that crosses the high-water mark. */
#ifndef TIDE_DATAGRAM_H
#define TIDE_DATAGRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A datagram endpoint: asyncio's DatagramTransport, owned by its loop (freed after
 * connection_lost returns). */
typedef struct tide_datagram tide_datagram_t;
typedef struct tide_datagram_protocol tide_datagram_protocol_t;

/* The datagram protocol's ops table. Any op may be NULL (asyncio's default: do
 * nothing). A protocol with get_buffer set is a buffered protocol: each datagram is
 * received straight into its memory and datagram_updated replaces datagram_received. */
typedef struct tide_datagram_protocol_ops {
    /* sizeof(tide_datagram_protocol_ops_t) when the protocol was compiled: new ops are
     * appended and tide ignores those beyond the size. Use TIDE_DATAGRAM_PROTOCOL_OPS_SIZE. */
    size_t size;
    /* The endpoint is ready; it stays valid until connection_lost returns. */
    void (*connection_made)(tide_datagram_protocol_t *self, tide_datagram_t *endpoint);
    /* One whole datagram of len >= 0 bytes from the sender addr (addrlen bytes; for an
     * unnamed Unix sender addrlen is sizeof(sa_family_t)). data and addr are lent for
     * the call. A datagram that did not fit is never delivered: error_received gets
     * TIDE_EDGRAM_TRUNCATED instead. */
    void (*datagram_received)(tide_datagram_protocol_t *self, const void *data, size_t len,
                              const struct sockaddr *addr, socklen_t addrlen);
    /* A non-fatal error: an ICMP error on a connected endpoint (TIDE_ECONNREFUSED for
     * a closed port, TIDE_EHOSTUNREACH, ...), a queued datagram the kernel refused
     * (it is dropped; the error says why), or TIDE_EDGRAM_TRUNCATED. The endpoint
     * keeps working. */
    void (*error_received)(tide_datagram_protocol_t *self, int err);
    /* Last call: status 0 after close or abort, or a negative code for a fatal error
     * (the socket itself failed). The protocol may be freed here. */
    void (*connection_lost)(tide_datagram_protocol_t *self, int status);
    /* The bytes queued for sending went above the high-water mark. */
    void (*pause_writing)(tide_datagram_protocol_t *self);
    /* The queue drained to the low-water mark after pause_writing. */
    void (*resume_writing)(tide_datagram_protocol_t *self);
    /* Buffered protocols: return memory for the next datagram and set *len > 0.
     * Returning NULL or a zero length fails the endpoint with TIDE_ENOBUFS. A
     * datagram longer than *len is reported as TIDE_EDGRAM_TRUNCATED, not delivered. */
    void *(*get_buffer)(tide_datagram_protocol_t *self, size_t *len);
    /* Buffered protocols: one whole datagram of nbytes >= 0 is at the start of the
     * last buffer, from addr. */
    void (*datagram_updated)(tide_datagram_protocol_t *self, size_t nbytes,
                             const struct sockaddr *addr, socklen_t addrlen);
} tide_datagram_protocol_ops_t;

/* The value for tide_datagram_protocol_ops_t's size field (the table's version). */
#define TIDE_DATAGRAM_PROTOCOL_OPS_SIZE sizeof(tide_datagram_protocol_ops_t)

/* The op `name` of datagram protocol p, or NULL when unset or beyond its ops size. */
#define TIDE_DATAGRAM_PROTOCOL_OP(p, name)                                                         \
    ((p)->ops->size >= offsetof(tide_datagram_protocol_ops_t, name) + sizeof((p)->ops->name)       \
         ? (p)->ops->name                                                                          \
         : NULL)

/* The base the user's protocol struct embeds (TIDE_CONTAINER_OF gets it back). */
struct tide_datagram_protocol {
    const tide_datagram_protocol_ops_t *ops;
};

/* Makes the endpoint's protocol; returning NULL refuses the endpoint (the socket is
 * closed and the creation fails with TIDE_ECONNABORTED). */
typedef tide_datagram_protocol_t *(*tide_datagram_protocol_factory_cb)(void *arg);

/* Options for create_datagram_endpoint; zero-initialise, then set what you need. */
typedef struct tide_datagram_options {
    /* AF_UNSPEC (0), AF_INET, AF_INET6 or AF_UNIX. With no address at all a family is
     * required. AF_UNIX makes local_host and remote_host socket paths ('@' prefix:
     * abstract namespace) and ignores the ports. */
    int family;
    /* Bind here (a name or a literal address; NULL with local_port 0: do not bind,
     * the first send picks an address). A stale Unix socket file is replaced. */
    const char *local_host;
    uint16_t local_port;
    /* Connect to this peer: sendto may then omit the address (or must give this one),
     * only its datagrams are received, and ICMP errors reach error_received. A Unix
     * endpoint with a remote path and no local path is bound to an automatic abstract
     * name, so that the peer can answer. */
    const char *remote_host;
    uint16_t remote_port;
    /* SO_REUSEPORT: several endpoints (one loop per thread) share one port. */
    bool reuse_port;
    /* SO_BROADCAST: without it a send to a broadcast address fails with TIDE_EACCES.
     * With it the socket is not connected (asyncio's rule), but remote_host is still
     * the only address sendto accepts. */
    bool allow_broadcast;
    /* AF_INET6 sockets also carry IPv4 (IPV6_V6ONLY off); by default they are V6ONLY. */
    bool dual_stack;
} tide_datagram_options_t;

/* Completion of a create: status 0, connection_made has run, and endpoint/protocol
 * are the new ones; or a negative code with NULLs (the factory was not called, or its
 * protocol was refused before connection_made: TIDE_ECONNABORTED). */
typedef void (*tide_datagram_created_cb)(tide_loop_t *loop, int status, tide_datagram_t *endpoint,
                                         tide_datagram_protocol_t *protocol, void *arg);

/* Makes a datagram endpoint as asyncio's create_datagram_endpoint: names are resolved
 * on the loop's worker pool (never blocking the loop); the (family) candidates that
 * satisfy both addresses are tried in resolver order and the first error is reported
 * when all fail. cb runs on a later iteration, exactly once. options (required) are
 * copied. Returns 0, or TIDE_EINVAL (no address and no family, a bad family or a
 * NULL argument), TIDE_ENAMETOOLONG (Unix path), TIDE_ENOMEM; cb is then never
 * called. Failures reach cb: TIDE_EAI_NONAME, TIDE_EADDRINUSE, TIDE_EADDRNOTAVAIL (no
 * local and remote address of one family), ... */
TIDE_EXTERN int tide_loop_create_datagram_endpoint(tide_loop_t *loop,
                                                   tide_datagram_protocol_factory_cb factory,
                                                   void *factory_arg,
                                                   const tide_datagram_options_t *options,
                                                   tide_datagram_created_cb cb, void *arg);

/* Wraps an existing datagram socket (bound, connected or neither; asyncio's sock=);
 * the endpoint owns fd from now on, even when cb reports an error. It is made
 * non-blocking. Returns 0, TIDE_EINVAL (fd is not a datagram socket; fd stays the
 * caller's then), TIDE_ENOMEM. */
TIDE_EXTERN int tide_loop_create_datagram_endpoint_from_fd(
    tide_loop_t *loop, int fd, tide_datagram_protocol_factory_cb factory, void *factory_arg,
    tide_datagram_created_cb cb, void *arg);

/* Sends one datagram of len >= 0 bytes (zero-length datagrams are sent) to addr, or
 * with addr NULL to the connected peer. Sent at once when nothing is queued; what the
 * kernel cannot take now is copied and queued whole, never split (then pause_writing
 * may run before this returns). Returns 0 when accepted, or with nothing accepted:
 * TIDE_EMSGSIZE (larger than the family allows: 65,507 bytes over IPv4, 65,527 over
 * IPv6, the send buffer for Unix), TIDE_ENOTCONN (no address, not connected),
 * TIDE_EISCONN (an address other than the connected peer's), TIDE_EINVAL,
 * TIDE_ECLOSED after close/abort, TIDE_ENOBUFS beyond the hard cap, TIDE_ENOMEM, or
 * what the kernel said at once: TIDE_EACCES (broadcast without allow_broadcast),
 * TIDE_ECONNREFUSED (an ICMP error still pending on a connected endpoint),
 * TIDE_ENETUNREACH, ... Unlike asyncio, errors of this very call are returned, not
 * passed to error_received; except that datagrams sent from inside datagram_received
 * (up to the low-water mark's worth) are sent together with one sendmmsg once the
 * received batch is delivered, so the kernel's errors for those reach error_received. */
TIDE_EXTERN int tide_datagram_sendto(tide_datagram_t *ep, const void *data, size_t len,
                                     const struct sockaddr *addr, socklen_t addrlen);

/* Stops receiving now, sends what is queued, then closes; connection_lost(0) follows
 * on a later iteration. Idempotent; NULL is a no-op. */
TIDE_EXTERN void tide_datagram_close(tide_datagram_t *ep);

/* Discards the queue and closes now; connection_lost(0) on a later iteration.
 * Idempotent; NULL is a no-op. */
TIDE_EXTERN void tide_datagram_abort(tide_datagram_t *ep);

/* True once close, abort or a fatal error has begun. */
TIDE_EXTERN bool tide_datagram_is_closing(const tide_datagram_t *ep);

/* Stops and restarts datagram_received (datagrams wait in the kernel, which drops
 * what overflows its receive buffer). Idempotent; no-ops when closing. Not in
 * asyncio's DatagramTransport; tide has it for back-pressure on the receiving side. */
TIDE_EXTERN void tide_datagram_pause_reading(tide_datagram_t *ep);
TIDE_EXTERN void tide_datagram_resume_reading(tide_datagram_t *ep);

/* Payload bytes queued in user space, not yet taken by the kernel. */
TIDE_EXTERN size_t tide_datagram_get_write_buffer_size(const tide_datagram_t *ep);

/* Watermarks as tide_transport_set_write_buffer_limits: -1 for a mark not given;
 * defaults high 64 KiB, low 16 KiB; TIDE_EINVAL unless high >= low >= 0. May call
 * pause_writing at once. */
TIDE_EXTERN int tide_datagram_set_write_buffer_limits(tide_datagram_t *ep, long high, long low);
TIDE_EXTERN void tide_datagram_get_write_buffer_limits(const tide_datagram_t *ep, size_t *low,
                                                       size_t *high);

/* A hard cap on the queue (0, the default: none): a datagram that would queue more
 * than cap bytes is refused with TIDE_ENOBUFS. */
TIDE_EXTERN void tide_datagram_set_max_write_buffer_size(tide_datagram_t *ep, size_t cap);

/* Local and connected peer addresses, as tide_transport_get_sockname. get_peername
 * returns TIDE_ENOTCONN for an endpoint with no remote address. */
TIDE_EXTERN int tide_datagram_get_sockname(const tide_datagram_t *ep, struct sockaddr *addr,
                                           socklen_t *len);
TIDE_EXTERN int tide_datagram_get_peername(const tide_datagram_t *ep, struct sockaddr *addr,
                                           socklen_t *len);

/* The socket (still owned by the endpoint), its loop, and its protocol; set_protocol
 * swaps the protocol that receives the next callback (connection_made is not called). */
TIDE_EXTERN int tide_datagram_get_fd(const tide_datagram_t *ep);
TIDE_EXTERN tide_loop_t *tide_datagram_get_loop(const tide_datagram_t *ep);
TIDE_EXTERN tide_datagram_protocol_t *tide_datagram_get_protocol(const tide_datagram_t *ep);
TIDE_EXTERN void tide_datagram_set_protocol(tide_datagram_t *ep, tide_datagram_protocol_t *p);

/* Counters since creation: datagrams delivered, datagrams sent, and datagrams lost to
 * the endpoint (truncated, or refused by the kernel after they were queued). */
typedef struct tide_datagram_stats {
    uint64_t received;
    uint64_t sent;
    uint64_t truncated;
    uint64_t send_failed;
} tide_datagram_stats_t;
/* Copies ep's counters into *stats (ep NULL: all zero). */
TIDE_EXTERN void tide_datagram_get_stats(const tide_datagram_t *ep, tide_datagram_stats_t *stats);

/* ---- testing without a network ----------------------------------------------------- */

/* Connects datagram protocols a and b through two in-memory endpoints: a datagram one
 * side sends, the other receives whole, on a later loop iteration, in order, from the
 * sender's abstract name ("@tide-memory-1a"). Both connection_made calls are
 * deferred, as for sockets; each side is a connected endpoint with everything above
 * (queue, watermarks, pause_reading, close, abort, the task forms); get_fd returns
 * TIDE_ENOTSOCK. *ea / *eb (either may be NULL) receive the endpoints, valid until
 * their connection_lost. A datagram to a side that is closing or gone is refused with
 * TIDE_ECONNREFUSED. Returns 0, TIDE_EINVAL or TIDE_ENOMEM. */
TIDE_EXTERN int tide_datagram_pair_new(tide_loop_t *loop, tide_datagram_protocol_t *a,
                                       tide_datagram_protocol_t *b, tide_datagram_t **ea,
                                       tide_datagram_t **eb);

/* How many bytes of datagrams the receiving side of ep holds, not yet delivered,
 * before ep's sends queue (its "receive buffer"; default 256 KiB; at least one
 * datagram always fits). Returns 0, or TIDE_EINVAL for an endpoint not of a pair. */
TIDE_EXTERN int tide_datagram_pair_set_window(tide_datagram_t *ep, size_t bytes);

/* ---- tasks (tide/task.h) ----------------------------------------------------------- */

/* Inside a task: create_datagram_endpoint, returning once connection_made has run.
 * With factory NULL the endpoint's protocol is tide's own receive queue, which
 * tide_datagram_recv_await reads (up to 256 datagrams wait there; beyond that reading
 * pauses and the kernel's buffer holds the rest). Returns 0 and *ep, the create's
 * error, TIDE_ECANCELLED / TIDE_ETIMEOUT (an endpoint made later is aborted),
 * TIDE_ENOTASK outside a task. */
TIDE_EXTERN int tide_loop_create_datagram_endpoint_await(tide_loop_t *loop,
                                                         tide_datagram_protocol_factory_cb factory,
                                                         void *factory_arg,
                                                         const tide_datagram_options_t *options,
                                                         tide_datagram_t **ep);

/* Inside a task, on an endpoint made by the above with no factory: waits for the next
 * datagram, copies it into buf (size bytes at most) and sets *len to its length and,
 * when addr is not NULL, the sender into addr / *addrlen (in: its size). Returns 0;
 * TIDE_EMSGSIZE when it was longer than size (the first size bytes are in buf, it is
 * consumed); an error_received code in order with the datagrams (non-fatal: receive
 * again); TIDE_ECLOSED once the endpoint is closing and nothing is queued (do not call
 * again after connection_lost); TIDE_EBUSY while another task receives; TIDE_EINVAL
 * for another kind of endpoint; TIDE_ECANCELLED / TIDE_ETIMEOUT; TIDE_ENOTASK. */
TIDE_EXTERN int tide_datagram_recv_await(tide_datagram_t *ep, void *buf, size_t size, size_t *len,
                                         struct sockaddr *addr, socklen_t *addrlen);

/* Inside a task: tide_datagram_sendto, then, when that paused writing, waits until the
 * queue drained to the low-water mark. Returns sendto's error (nothing accepted), or 0,
 * TIDE_ECLOSED when the endpoint closed while waiting, TIDE_ECANCELLED / TIDE_ETIMEOUT
 * (the datagram was accepted all the same), TIDE_ENOTASK. Works on any endpoint. */
TIDE_EXTERN int tide_datagram_sendto_await(tide_datagram_t *ep, const void *data, size_t len,
                                           const struct sockaddr *addr, socklen_t addrlen);

#ifdef __cplusplus
}
#endif
#endif
