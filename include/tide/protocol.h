/* The protocol interface: what a transport calls back, as in asyncio.
 * A protocol is the user's own struct that embeds tide_protocol_t; tide borrows it
 * from connection_made until connection_lost returns, where the user may free it.
 * Callback order: connection_made once, first; data_received (or get_buffer /
 * buffer_updated) zero or more times; eof_received at most once; connection_lost once,
 * last. Callbacks never run inside a call the protocol made itself, except
 * pause_writing, which fires inside the write that crosses the high-water mark. */
#ifndef TIDE_PROTOCOL_H
#define TIDE_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>

#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A transport (opaque; made and freed by tide, see tide/transport.h). */
typedef struct tide_transport tide_transport_t;
typedef struct tide_protocol tide_protocol_t;

/* The ops table. Any op may be NULL, which means asyncio's default (do nothing;
 * eof_received returning false). A protocol with get_buffer set is a buffered
 * protocol: the transport reads straight into its memory and data_received is
 * not used. */
typedef struct tide_protocol_ops {
    /* sizeof(tide_protocol_ops_t) at the time the protocol was compiled: new ops are
     * appended, and tide ignores those beyond the size given. Use TIDE_PROTOCOL_OPS_SIZE. */
    size_t size;
    /* The transport is ready; it stays valid until connection_lost returns. */
    void (*connection_made)(tide_protocol_t *self, tide_transport_t *transport);
    /* len > 0 bytes arrived; data is lent for the call. */
    void (*data_received)(tide_protocol_t *self, const void *data, size_t len);
    /* The peer closed its sending side. Return true to keep the transport open for
     * writing (half-close; the protocol closes it later), false to let it close. */
    bool (*eof_received)(tide_protocol_t *self);
    /* Last call. status is 0 for a clean close or EOF, or a negative tide code
     * (TIDE_ECONNRESET, TIDE_EPIPE, ...). The protocol may be freed here. */
    void (*connection_lost)(tide_protocol_t *self, int status);
    /* The transport's write buffer went above its high-water mark. */
    void (*pause_writing)(tide_protocol_t *self);
    /* The write buffer drained to the low-water mark after pause_writing. */
    void (*resume_writing)(tide_protocol_t *self);
    /* Buffered protocols: return memory to receive into and set *len > 0. sizehint is
     * the number of bytes known to be waiting, or 0 when unknown. Returning NULL or a
     * zero length fails the connection with TIDE_ENOBUFS. For large reads, lend
     * page-aligned memory (posix_memalign): the kernel copies into a buffer that
     * starts inside a page (as malloc's large blocks do) markedly slower. */
    void *(*get_buffer)(tide_protocol_t *self, size_t sizehint, size_t *len);
    /* Buffered protocols: nbytes > 0 were written at the start of the last buffer. */
    void (*buffer_updated)(tide_protocol_t *self, size_t nbytes);
} tide_protocol_ops_t;

/* The value for tide_protocol_ops_t.size. */
#define TIDE_PROTOCOL_OPS_SIZE sizeof(tide_protocol_ops_t)

/* The op `name` of protocol p, or NULL when it is unset or lies beyond the ops size
 * the protocol was compiled with (so older protocols keep working). */
#define TIDE_PROTOCOL_OP(p, name)                                                         \
    ((p)->ops->size >= offsetof(tide_protocol_ops_t, name) + sizeof((p)->ops->name) \
         ? (p)->ops->name                                                               \
         : NULL)

/* The base the user's protocol struct embeds (usually as its first member). */
struct tide_protocol {
    const tide_protocol_ops_t *ops; /* the protocol's callbacks (a static const table) */
};

/* Makes a new protocol instance for each connection; returning NULL refuses the
 * connection (it is closed, and nothing is called back). A protocol the factory
 * returned always receives connection_made and, last, connection_lost: tide makes the
 * transport before calling the factory, so nothing can fail in between. */
typedef tide_protocol_t *(*tide_protocol_factory_cb)(void *arg);

/* True when p is a buffered protocol (it has get_buffer). Inline: transports ask it on
 * every read. */
static inline bool tide_protocol_is_buffered(const tide_protocol_t *p) {
    return p != NULL && p->ops != NULL && TIDE_PROTOCOL_OP(p, get_buffer) != NULL;
}

/* Delivers len bytes to p as a transport would, without any transport: one
 * data_received call, or for a buffered protocol get_buffer / buffer_updated repeated
 * until every byte is copied in (asyncio's piecewise feed). For unit-testing a
 * protocol's parsing directly. Returns 0, TIDE_EINVAL, or TIDE_ENOBUFS when get_buffer
 * returned no memory (the bytes not yet copied are dropped). */
TIDE_EXTERN int tide_protocol_feed(tide_protocol_t *p, const void *data, size_t len);

/* From a pointer to a member back to the struct that contains it. */
#define TIDE_CONTAINER_OF(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#ifdef __cplusplus
}
#endif
#endif
