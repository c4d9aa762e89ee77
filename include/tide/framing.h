/* Framing protocols: lines and length-prefixed frames, usable directly as tide
 * protocols (Twisted's LineReceiver and Int32StringReceiver).
 *
 * Where it sits: built on the protocol interface only (tide/protocol.h: a buffered
 * protocol, so transports read straight into its memory) and the loop (to defer
 * delivery after a resume); it knows nothing of streams or of any transport kind.
 *
 * Use: embed tide_framing_t in your own struct, call tide_framing_init with your ops,
 * and hand &framing.base to a transport (a factory, tide_memory_pair_new, or
 * tide_protocol_feed). Get your struct back with TIDE_CONTAINER_OF.
 *
 * Delivery. Each complete line or frame reaches line_received / frame_received in the
 * order it arrived, lent for the call. A callback may pause (tide_framing_pause): no
 * further line or frame is delivered, even from bytes already received in the same
 * read, and the transport stops reading; the bytes are kept. tide_framing_resume
 * delivers what was kept, in order, on a later loop iteration (never inside the
 * resume call), then reading goes on. An EOF that arrives while paused is held back
 * too: eof_received follows the last kept frame.
 *
 * Errors. A line longer than max (without its delimiter), or a frame whose prefix
 * announces more than max bytes, stops delivery and aborts the transport;
 * connection_lost then receives TIDE_EFRAME_TOO_LARGE. Frames before it were
 * delivered.
 *
 * Ownership. The framing object is yours; tide allocates its receive buffer while it
 * is in use and frees it just after connection_lost returns (or in
 * tide_framing_release, for an object that never got connection_lost). Do not free
 * the object inside line_received / frame_received; free it in connection_lost.
 * Not thread-safe: use it on its loop's thread. */
#ifndef TIDE_FRAMING_H
#define TIDE_FRAMING_H

#include <stdbool.h>
#include <stddef.h>

#include "loop.h"
#include "protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tide_framing tide_framing_t;

/* How bytes are cut into records. */
typedef enum tide_framing_kind {
    /* Lines ending with LF; a CR just before the LF is dropped too (LF or CRLF). */
    TIDE_FRAMING_LINES = 1,
    /* Lines ending with CRLF only; a lone LF is part of the line. */
    TIDE_FRAMING_LINES_CRLF = 2,
    /* Frames: a big-endian length of 1, 2 or 4 bytes, then that many bytes. */
    TIDE_FRAMING_PREFIX8 = 3,
    TIDE_FRAMING_PREFIX16 = 4,
    TIDE_FRAMING_PREFIX32 = 5
} tide_framing_kind_t;

/* Your callbacks; any may be NULL. The protocol-level ops mean what they mean in
 * tide/protocol.h. */
typedef struct tide_framing_ops {
    size_t size; /* TIDE_FRAMING_OPS_SIZE */
    void (*connection_made)(tide_framing_t *self, tide_transport_t *transport);
    /* Line kinds: one line, without its delimiter. */
    void (*line_received)(tide_framing_t *self, const char *line, size_t len);
    /* Prefix kinds: one frame's payload, without its prefix (len may be 0). */
    void (*frame_received)(tide_framing_t *self, const void *frame, size_t len);
    /* After every complete record was delivered. Bytes of an unfinished last record
     * are in tide_framing_rest(). Return true to keep the transport open for writing. */
    bool (*eof_received)(tide_framing_t *self);
    /* Last call: status 0, the transport's error, or TIDE_EFRAME_TOO_LARGE. Records
     * still kept by a pause, and an unfinished one, are in tide_framing_rest() during
     * this call (nothing is dropped silently). The object may be freed here. */
    void (*connection_lost)(tide_framing_t *self, int status);
    void (*pause_writing)(tide_framing_t *self);
    void (*resume_writing)(tide_framing_t *self);
} tide_framing_ops_t;

#define TIDE_FRAMING_OPS_SIZE sizeof(tide_framing_ops_t)

/* The object. `base` is what transports see; the rest is private to tide. */
struct tide_framing {
    tide_protocol_t base;
    const tide_framing_ops_t *ops;
    /* private */
    tide_loop_t *loop;
    tide_transport_t *transport;
    tide_handle_t *resume_handle;
    tide_framing_kind_t kind;
    size_t max;
    char *buf;
    size_t cap, start, end, scanned;
    const char *lost_rest; /* the rest, during connection_lost only */
    size_t lost_len;
    int error;
    bool paused, delivering, eof_pending;
};

/* Sets f up (allocating nothing): kind, the longest line or frame accepted (max > 0;
 * for TIDE_FRAMING_PREFIX8 at most 255, for PREFIX16 at most 65535), your ops, and the
 * loop that deferred deliveries run on (the transport's loop). Returns 0 or
 * TIDE_EINVAL. */
TIDE_EXTERN int tide_framing_init(tide_framing_t *f, tide_loop_t *loop, tide_framing_kind_t kind,
                                  size_t max, const tide_framing_ops_t *ops);

/* Stops delivery now (also from inside line_received / frame_received) and pauses the
 * transport's reading; bytes already received are kept. Idempotent. */
TIDE_EXTERN void tide_framing_pause(tide_framing_t *f);

/* Ends a pause: what was kept is delivered on a later iteration, then reading
 * resumes. Returns 0, or TIDE_ENOMEM when the delivery could not be scheduled (still
 * paused then). A no-op when not paused. */
TIDE_EXTERN int tide_framing_resume(tide_framing_t *f);

/* True between pause and resume. */
TIDE_EXTERN bool tide_framing_is_paused(const tide_framing_t *f);

/* The transport (from connection_made until connection_lost), or NULL. */
TIDE_EXTERN tide_transport_t *tide_framing_get_transport(const tide_framing_t *f);

/* Bytes received and not delivered (kept by a pause, or an unfinished record), lent
 * until the next call on f or the return to the loop; *len receives their count.
 * NULL when there are none. */
TIDE_EXTERN const void *tide_framing_rest(const tide_framing_t *f, size_t *len);

/* Writes one record to the transport: the line and its delimiter ("\n", or "\r\n" for
 * TIDE_FRAMING_LINES_CRLF), or the length prefix and the frame. Returns 0, TIDE_EINVAL
 * (a line holding CR or LF), TIDE_EFRAME_TOO_LARGE (longer than max), TIDE_ECLOSED
 * without a transport, or what tide_transport_writelines returns. */
TIDE_EXTERN int tide_framing_send(tide_framing_t *f, const void *data, size_t len);

/* Frees the receive buffer and drops a scheduled delivery: only for an object that was
 * fed by hand (tide_protocol_feed) and never got connection_lost. Idempotent. */
TIDE_EXTERN void tide_framing_release(tide_framing_t *f);

#ifdef __cplusplus
}
#endif
#endif
