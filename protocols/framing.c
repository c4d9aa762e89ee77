/* Framing protocols: lines (LF or CRLF) and length-prefixed frames (8/16/32-bit
 * big-endian) as a buffered tide protocol.
 *
 * Where it sits: on the protocol interface and the loop only; transports read straight
 * into this object's buffer (get_buffer / buffer_updated), which is cut into records
 * in place and lent to the user's callback, with no copy per record.
 *
 * Re-entrancy: user callbacks run from buffer_updated, eof_received and a deferred
 * resume callback. A callback may pause, resume, send, close or abort; after each one
 * the state is read again. A nested delivery (bytes fed from inside a callback) only
 * appends to the buffer: the outer delivery loop goes on with them, in order. The
 * object is the user's: it is never touched after the user's connection_lost. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tide.h"

#define MIN_BUFFER 4096
#define READ_CHUNK 65536

static tide_framing_t *as_framing(tide_protocol_t *p) {
    return TIDE_CONTAINER_OF(p, tide_framing_t, base);
}

/* The user's op `name`, or NULL when unset or beyond the ops size given. */
#define FRAMING_OP(f, name)                                                                        \
    ((f)->ops != NULL &&                                                                           \
             (f)->ops->size >= offsetof(tide_framing_ops_t, name) + sizeof((f)->ops->name)         \
         ? (f)->ops->name                                                                          \
         : NULL)

static size_t prefix_size(tide_framing_kind_t kind) {
    switch (kind) {
    case TIDE_FRAMING_PREFIX8:
        return 1;
    case TIDE_FRAMING_PREFIX16:
        return 2;
    case TIDE_FRAMING_PREFIX32:
        return 4;
    default:
        return 0;
    }
}

static bool closing(const tide_framing_t *f) {
    return f->transport != NULL && tide_transport_is_closing(f->transport);
}

static void fail(tide_framing_t *f, int err) {
    f->error = err;
    if (f->transport != NULL)
        tide_transport_abort(f->transport);
}

/* Finds the next record in buf[start, end). Returns 1 with the payload at *off (from
 * start), *len bytes, *total bytes to drop; 0 when more bytes are needed; or an error. */
static int next_record(tide_framing_t *f, size_t *off, size_t *len, size_t *total) {
    size_t avail = f->end - f->start;
    if (avail == 0)
        return 0; /* also when no buffer was allocated yet */
    const unsigned char *b = (const unsigned char *)f->buf + f->start;
    size_t n = prefix_size(f->kind);
    if (n > 0) {
        if (avail < n)
            return 0;
        uint32_t size = 0;
        for (size_t i = 0; i < n; i++)
            size = size << 8 | b[i];
        if (size > f->max)
            return TIDE_EFRAME_TOO_LARGE;
        if (avail - n < size)
            return 0;
        *off = n;
        *len = size;
        *total = n + size;
        return 1;
    }
    /* Lines: scan only what has not been scanned yet. */
    for (;;) {
        const unsigned char *nl = memchr(b + f->scanned, '\n', avail - f->scanned);
        if (nl == NULL) {
            f->scanned = avail;
            /* One more byte than max may be the CR of a line at the limit. */
            return avail > f->max + 1 ? TIDE_EFRAME_TOO_LARGE : 0;
        }
        size_t i = (size_t)(nl - b);
        f->scanned = i + 1;
        bool cr = i > 0 && b[i - 1] == '\r';
        if (f->kind == TIDE_FRAMING_LINES_CRLF && !cr) {
            if (i > f->max)
                return TIDE_EFRAME_TOO_LARGE;
            continue; /* a lone LF belongs to the line */
        }
        size_t l = cr ? i - 1 : i;
        if (l > f->max)
            return TIDE_EFRAME_TOO_LARGE;
        *off = 0;
        *len = l;
        *total = i + 1;
        return 1;
    }
}

/* Delivers complete records until paused, closing, failed or out of records; then an
 * EOF held back. */
static void deliver(tide_framing_t *f) {
    if (f->delivering)
        return; /* a nested call: the outer loop picks the new bytes up */
    f->delivering = true;
    while (!f->paused && f->error == 0 && !closing(f)) {
        size_t off, len, total;
        int r = next_record(f, &off, &len, &total);
        if (r < 0) {
            fail(f, r);
            break;
        }
        if (r == 0)
            break;
        const char *rec = f->buf + f->start + off;
        f->start += total;
        f->scanned = 0;
        if (prefix_size(f->kind) > 0) {
            void (*cb)(tide_framing_t *, const void *, size_t) = FRAMING_OP(f, frame_received);
            if (cb)
                cb(f, rec, len);
        } else {
            void (*cb)(tide_framing_t *, const char *, size_t) = FRAMING_OP(f, line_received);
            if (cb)
                cb(f, rec, len);
        }
    }
    f->delivering = false;
    if (f->eof_pending && !f->paused && f->error == 0) {
        size_t off, len, total;
        if (next_record(f, &off, &len, &total) == 0) {
            f->eof_pending = false;
            bool (*eof)(tide_framing_t *) = FRAMING_OP(f, eof_received);
            if (!(eof && eof(f)) && f->transport != NULL)
                tide_transport_close(f->transport);
        }
    }
}

static void on_resume(tide_loop_t *loop, void *arg) {
    (void)loop;
    tide_framing_t *f = arg;
    f->resume_handle = NULL;
    deliver(f);
    if (!f->paused && f->transport != NULL)
        tide_transport_resume_reading(f->transport);
}

/* ---- protocol ops ---------------------------------------------------------------------- */

static void p_connection_made(tide_protocol_t *p, tide_transport_t *t) {
    tide_framing_t *f = as_framing(p);
    f->transport = t;
    if (f->paused)
        tide_transport_pause_reading(t);
    void (*cb)(tide_framing_t *, tide_transport_t *) = FRAMING_OP(f, connection_made);
    if (cb)
        cb(f, t);
}

static void *p_get_buffer(tide_protocol_t *p, size_t sizehint, size_t *len) {
    tide_framing_t *f = as_framing(p);
    if (f->start > 0 && !f->delivering) {
        /* Move the undelivered bytes to the front; not while a delivery lends them. */
        memmove(f->buf, f->buf + f->start, f->end - f->start);
        f->end -= f->start;
        f->start = 0;
    }
    size_t want = sizehint == 0 || sizehint > READ_CHUNK ? READ_CHUNK : sizehint;
    if (f->cap - f->end < want) {
        size_t cap = f->cap < MIN_BUFFER ? MIN_BUFFER : f->cap;
        while (cap - f->end < want)
            cap *= 2;
        char *buf = realloc(f->buf, cap);
        if (buf == NULL) {
            if (f->cap == f->end)
                return NULL; /* the transport fails with TIDE_ENOBUFS */
        } else {
            f->buf = buf;
            f->cap = cap;
        }
    }
    *len = f->cap - f->end;
    return f->buf + f->end;
}

static void p_buffer_updated(tide_protocol_t *p, size_t n) {
    tide_framing_t *f = as_framing(p);
    if (f->error != 0)
        return; /* the connection is being aborted: nothing more is delivered */
    f->end += n;
    deliver(f);
}

static bool p_eof_received(tide_protocol_t *p) {
    tide_framing_t *f = as_framing(p);
    if (f->paused || f->delivering) {
        /* Held back until the records kept before it are delivered. */
        f->eof_pending = true;
        return true;
    }
    bool (*eof)(tide_framing_t *) = FRAMING_OP(f, eof_received);
    return eof != NULL && eof(f);
}

static void p_connection_lost(tide_protocol_t *p, int status) {
    tide_framing_t *f = as_framing(p);
    if (status == 0)
        status = f->error;
    f->transport = NULL;
    if (f->resume_handle != NULL) {
        tide_handle_cancel(f->resume_handle);
        f->resume_handle = NULL;
    }
    /* The rest stays readable through tide_framing_rest during the call; the user may
     * free f in it, so the buffer is freed from a local afterwards and f no longer
     * points at it (a later tide_framing_release is harmless). */
    char *buf = f->buf;
    f->lost_rest = buf ? buf + f->start : NULL;
    f->lost_len = buf ? f->end - f->start : 0;
    f->buf = NULL;
    f->cap = f->start = f->end = f->scanned = 0;
    void (*cb)(tide_framing_t *, int) = FRAMING_OP(f, connection_lost);
    if (cb)
        cb(f, status);
    free(buf);
}

static void p_pause_writing(tide_protocol_t *p) {
    tide_framing_t *f = as_framing(p);
    void (*cb)(tide_framing_t *) = FRAMING_OP(f, pause_writing);
    if (cb)
        cb(f);
}

static void p_resume_writing(tide_protocol_t *p) {
    tide_framing_t *f = as_framing(p);
    void (*cb)(tide_framing_t *) = FRAMING_OP(f, resume_writing);
    if (cb)
        cb(f);
}

static const tide_protocol_ops_t framing_protocol_ops = {
    .size = TIDE_PROTOCOL_OPS_SIZE,
    .connection_made = p_connection_made,
    .eof_received = p_eof_received,
    .connection_lost = p_connection_lost,
    .pause_writing = p_pause_writing,
    .resume_writing = p_resume_writing,
    .get_buffer = p_get_buffer,
    .buffer_updated = p_buffer_updated,
};

/* ---- public calls ---------------------------------------------------------------------- */

int tide_framing_init(tide_framing_t *f, tide_loop_t *loop, tide_framing_kind_t kind, size_t max,
                      const tide_framing_ops_t *ops) {
    if (f == NULL || loop == NULL || max == 0 || kind < TIDE_FRAMING_LINES ||
        kind > TIDE_FRAMING_PREFIX32)
        return TIDE_EINVAL;
    if ((kind == TIDE_FRAMING_PREFIX8 && max > UINT8_MAX) ||
        (kind == TIDE_FRAMING_PREFIX16 && max > UINT16_MAX) ||
        (kind == TIDE_FRAMING_PREFIX32 && max > UINT32_MAX) || max > SIZE_MAX / 4)
        return TIDE_EINVAL;
    memset(f, 0, sizeof *f);
    f->base.ops = &framing_protocol_ops;
    f->ops = ops;
    f->loop = loop;
    f->kind = kind;
    f->max = max;
    return 0;
}

void tide_framing_pause(tide_framing_t *f) {
    if (f == NULL || f->paused)
        return;
    f->paused = true;
    if (f->resume_handle != NULL) {
        tide_handle_cancel(f->resume_handle);
        f->resume_handle = NULL;
    }
    if (f->transport != NULL)
        tide_transport_pause_reading(f->transport);
}

int tide_framing_resume(tide_framing_t *f) {
    if (f == NULL)
        return TIDE_EINVAL;
    if (!f->paused)
        return 0;
    /* Delivery and reading restart together on the next iteration, so that records
     * kept go out before any new byte, and never inside this call. */
    f->resume_handle = tide_loop_call_soon(f->loop, on_resume, f);
    if (f->resume_handle == NULL)
        return TIDE_ENOMEM;
    f->paused = false;
    return 0;
}

bool tide_framing_is_paused(const tide_framing_t *f) { return f != NULL && f->paused; }

tide_transport_t *tide_framing_get_transport(const tide_framing_t *f) {
    return f ? f->transport : NULL;
}

const void *tide_framing_rest(const tide_framing_t *f, size_t *len) {
    const char *p = NULL;
    size_t n = 0;
    if (f != NULL && f->buf != NULL) {
        p = f->buf + f->start;
        n = f->end - f->start;
    } else if (f != NULL && f->transport == NULL) {
        p = f->lost_rest; /* inside connection_lost */
        n = f->lost_len;
    }
    if (len != NULL)
        *len = n;
    return n > 0 ? p : NULL;
}

int tide_framing_send(tide_framing_t *f, const void *data, size_t len) {
    if (f == NULL || (data == NULL && len > 0))
        return TIDE_EINVAL;
    if (len > f->max)
        return TIDE_EFRAME_TOO_LARGE;
    if (f->transport == NULL)
        return TIDE_ECLOSED;
    size_t n = prefix_size(f->kind);
    unsigned char head[4];
    tide_iovec_t iov[2] = {{data, len}, {head, 0}};
    if (n == 0) {
        if (len > 0 && (memchr(data, '\n', len) != NULL || memchr(data, '\r', len) != NULL))
            return TIDE_EINVAL;
        iov[1].base = f->kind == TIDE_FRAMING_LINES_CRLF ? "\r\n" : "\n";
        iov[1].len = f->kind == TIDE_FRAMING_LINES_CRLF ? 2 : 1;
        return tide_transport_writelines(f->transport, iov, 2);
    }
    for (size_t i = 0; i < n; i++)
        head[i] = (unsigned char)((uint64_t)len >> (8 * (n - 1 - i)));
    iov[0] = (tide_iovec_t){head, n};
    iov[1] = (tide_iovec_t){data, len};
    return tide_transport_writelines(f->transport, iov, 2);
}

void tide_framing_release(tide_framing_t *f) {
    if (f == NULL)
        return;
    if (f->resume_handle != NULL) {
        tide_handle_cancel(f->resume_handle);
        f->resume_handle = NULL;
    }
    free(f->buf);
    f->buf = NULL;
    f->cap = f->start = f->end = f->scanned = 0;
}
