/* A growable byte buffer: live bytes at data[head, head + len), free room after them.
 * Reading consumes from the front, writing appends at the end; the buffer slides its
 * bytes back to the front or moves to a larger block only when room runs out. Used
 * wherever a connection keeps bytes (the in-memory transport, the stream reader).
 * Not thread-safe. */
#ifndef TIDE_CORE_BUF_H
#define TIDE_CORE_BUF_H

#include <stddef.h>
#include <string.h>

typedef struct tide__buf {
    unsigned char *data;
    size_t cap;
    size_t head;
    size_t len;
} tide__buf;

/* A block that the kernel copies into or out of (a socket's receive or send buffer):
 * page-aligned when it is a page or more, else cache-line aligned. A block from
 * malloc sits 16 bytes into a page, and the kernel's copy into such a block ran
 * several times slower than into an aligned one. Free it with free(). Returns NULL
 * when out of memory. */
void *tide__buf_alloc(size_t size);

/* A buffer that never held anything has no block: NULL, never NULL plus an offset
 * (undefined behaviour, even plus 0). */
static inline unsigned char *tide__buf_begin(const tide__buf *b) {
    return b->data ? b->data + b->head : NULL;
}

static inline unsigned char *tide__buf_end(const tide__buf *b) {
    return b->data ? b->data + b->head + b->len : NULL;
}

/* Free bytes after the live ones. */
static inline size_t tide__buf_room(const tide__buf *b) { return b->cap - b->head - b->len; }

/* Makes `extra` bytes of room: by sliding the live bytes to the front when that is
 * enough, else by moving them to a block of at least twice the size (min_cap at
 * first). With `kept` non-NULL the live bytes are in use where they are (a callback
 * points into them): they are never slid, and when the buffer must move the old block
 * goes to *kept (which must be NULL) for the caller to free later, instead of being
 * freed. Returns 0, or TIDE_ENOMEM with the buffer unchanged. */
int tide__buf_reserve(tide__buf *b, size_t extra, size_t min_cap, unsigned char **kept);

/* Appends n bytes; the room was reserved. */
static inline void tide__buf_put(tide__buf *b, const void *data, size_t n) {
    if (n > 0)
        memcpy(tide__buf_end(b), data, n);
    b->len += n;
}

/* Drops n bytes from the front. The bytes stay where they are until the next reserve,
 * so pointers handed out to them remain valid. */
static inline void tide__buf_consume(tide__buf *b, size_t n) {
    b->head += n;
    b->len -= n;
}

void tide__buf_free(tide__buf *b);

/* An empty buffer starts again at its front, and is released when larger than
 * keep_max, so idle connections stay small. Inline: it runs after every read that
 * emptied a buffer, and is a few tests and a store unless the block goes. */
static inline void tide__buf_settle(tide__buf *b, size_t keep_max) {
    if (b->len != 0)
        return;
    b->head = 0;
    if (b->cap > keep_max)
        tide__buf_free(b);
}

#endif
