/* A helper of the protocol interface that needs no transport: feeding a protocol bytes
 * directly (for unit tests of a protocol's parsing).
 * No state of its own; the protocol's callbacks run inside tide_protocol_feed. */
#include <string.h>

#include "tide.h"

int tide_protocol_feed(tide_protocol_t *p, const void *data, size_t len) {
    if (p == NULL || p->ops == NULL || (data == NULL && len > 0))
        return TIDE_EINVAL;
    if (len == 0)
        return 0;
    if (!tide_protocol_is_buffered(p)) {
        void (*received)(tide_protocol_t *, const void *, size_t) = TIDE_PROTOCOL_OP(p, data_received);
        if (received)
            received(p, data, len);
        return 0;
    }
    const unsigned char *next = data;
    size_t left = len;
    while (left > 0) {
        /* Re-read the ops each round: the protocol may swap them in a callback. */
        void *(*get)(tide_protocol_t *, size_t, size_t *) = TIDE_PROTOCOL_OP(p, get_buffer);
        void (*updated)(tide_protocol_t *, size_t) = TIDE_PROTOCOL_OP(p, buffer_updated);
        size_t room = 0;
        void *buf = get ? get(p, left, &room) : NULL;
        if (buf == NULL || room == 0)
            return TIDE_ENOBUFS;
        size_t n = room < left ? room : left;
        memcpy(buf, next, n);
        next += n;
        left -= n;
        if (updated)
            updated(p, n);
    }
    return 0;
}
