/* The growable byte buffer of core/buf.h. Pure data structure: no loop, no locks. */
#include <stdint.h>
#include <stdlib.h>

#include "core/buf.h"
#include "tide/errno.h"

#define PAGE ((size_t)4096)
#define LINE ((size_t)64)

void *tide__buf_alloc(size_t size) {
    void *p = NULL;
    /* glibc hands the alignment gap in front of the block back to its free lists, so
     * the heap a block holds is its size, as with malloc. */
    if (posix_memalign(&p, size >= PAGE ? PAGE : LINE, size) != 0)
        return NULL;
    return p;
}

int tide__buf_reserve(tide__buf *b, size_t extra, size_t min_cap, unsigned char **kept) {
    if (tide__buf_room(b) >= extra)
        return 0;
    if (kept == NULL && b->cap - b->len >= extra) {
        memmove(b->data, tide__buf_begin(b), b->len);
        b->head = 0;
        return 0;
    }
    if (extra > SIZE_MAX / 4 - b->len)
        return TIDE_ENOMEM;
    size_t cap = b->cap ? b->cap : (min_cap ? min_cap : 4096);
    while (cap < b->len + extra)
        cap *= 2;
    unsigned char *data = tide__buf_alloc(cap);
    if (data == NULL)
        return TIDE_ENOMEM;
    if (b->len > 0)
        memcpy(data, tide__buf_begin(b), b->len);
    if (kept != NULL)
        *kept = b->data;
    else
        free(b->data);
    b->data = data;
    b->cap = cap;
    b->head = 0;
    return 0;
}

void tide__buf_free(tide__buf *b) {
    free(b->data);
    b->data = NULL;
    b->cap = b->head = b->len = 0;
}
