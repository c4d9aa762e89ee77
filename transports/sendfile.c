/* tide_transport_sendfile: a file onto any transport, through the generic transport
 * calls only, so every kind (TLS included) gets it without code of its own.
 *
 * For the send, the transport's protocol is swapped for a small forwarding protocol
 * (asyncio's _SendfileFallbackProtocol): it passes every callback on to the user's
 * protocol, and it learns from pause_writing / resume_writing when to write more and
 * from connection_lost that the connection ended, which completes the send before
 * the user's connection_lost. Two ways to move bytes:
 * - TCP and Unix sockets: the kernel's sendfile straight onto the socket whenever the
 *   transport's queue is empty (so bytes written before stay in front), driven by a
 *   write watcher of its own on the socket; a file the kernel cannot send from (not
 *   mmap-able: EINVAL, ENOSYS) switches to the other way.
 * - everything else: pread 64 KiB at a time into a buffer and tide_transport_write
 *   it, as long as writing is not paused.
 *
 * Reentrancy: the user's callbacks are forwarded from inside the transport's own
 * callbacks; the completion is deferred, except when the connection is lost, where it
 * runs just before the user's connection_lost. Loop thread only. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tide/sendfile.h"
#include "transports/transport_int.h"

#define PIECE ((size_t)64 * 1024)
/* The most one kernel sendfile is asked for, so one event does not starve others. */
#define KERNEL_STEP ((size_t)4 << 20)

typedef struct sendfile_req {
    tide_protocol_t proto; /* the forwarding protocol, on the transport meanwhile */
    tide_protocol_t *user; /* the protocol it forwards to */
    tide_transport_t *t;
    int fd;
    off_t offset;
    size_t left;
    size_t sent;
    bool kernel;
    bool paused;
    bool finished;
    int status;
    /* Writability of the socket while the kernel sends: a duplicate of its descriptor,
     * since the loop's epoll set already holds the transport's own. */
    int wfd;
    tide__io ww;
    tide__call call; /* the next step, then the completion */
    unsigned char *buf;
    tide_sendfile_cb cb;
    void *arg;
} sendfile_req;

static sendfile_req *req_of(tide_protocol_t *p) { return (sendfile_req *)(void *)p; }

/* ---- the forwarding protocol ---------------------------------------------------------- */

#define FORWARD(r, name) TIDE_PROTOCOL_OP((r)->user, name)

static void fw_data(tide_protocol_t *p, const void *data, size_t len) {
    sendfile_req *r = req_of(p);
    void (*f)(tide_protocol_t *, const void *, size_t) = FORWARD(r, data_received);
    if (f)
        f(r->user, data, len);
}

static void *fw_get_buffer(tide_protocol_t *p, size_t hint, size_t *len) {
    sendfile_req *r = req_of(p);
    return r->user->ops->get_buffer(r->user, hint, len);
}

static void fw_buffer_updated(tide_protocol_t *p, size_t n) {
    sendfile_req *r = req_of(p);
    void (*f)(tide_protocol_t *, size_t) = FORWARD(r, buffer_updated);
    if (f)
        f(r->user, n);
}

static bool fw_eof(tide_protocol_t *p) {
    sendfile_req *r = req_of(p);
    bool (*f)(tide_protocol_t *) = FORWARD(r, eof_received);
    /* The send goes on after the peer's EOF: closing now would cut it. */
    return f ? f(r->user) : true;
}

static void step(sendfile_req *r);
static void complete(sendfile_req *r);

static void fw_pause(tide_protocol_t *p) {
    sendfile_req *r = req_of(p);
    r->paused = true;
    void (*f)(tide_protocol_t *) = FORWARD(r, pause_writing);
    if (f)
        f(r->user);
}

static void fw_resume(tide_protocol_t *p) {
    sendfile_req *r = req_of(p);
    r->paused = false;
    void (*f)(tide_protocol_t *) = FORWARD(r, resume_writing);
    if (f)
        f(r->user);
    if (!r->finished)
        tide__loop_defer(r->t->loop, &r->call);
}

static void fw_lost(tide_protocol_t *p, int status) {
    sendfile_req *r = req_of(p);
    tide_protocol_t *user = r->user;
    if (!r->finished) {
        r->finished = true;
        r->status = status < 0 ? status : TIDE_ECLOSED;
    }
    complete(r);
    void (*f)(tide_protocol_t *, int) = TIDE_PROTOCOL_OP(user, connection_lost);
    if (f)
        f(user, status);
}

static const tide_protocol_ops_t forward_ops = {
    .size = TIDE_PROTOCOL_OPS_SIZE,
    .data_received = fw_data,
    .eof_received = fw_eof,
    .connection_lost = fw_lost,
    .pause_writing = fw_pause,
    .resume_writing = fw_resume,
};

/* The same for a buffered protocol: the transport asks the user's memory. */
static const tide_protocol_ops_t forward_buffered_ops = {
    .size = TIDE_PROTOCOL_OPS_SIZE,
    .eof_received = fw_eof,
    .connection_lost = fw_lost,
    .pause_writing = fw_pause,
    .resume_writing = fw_resume,
    .get_buffer = fw_get_buffer,
    .buffer_updated = fw_buffer_updated,
};

/* ---- moving the bytes ------------------------------------------------------------------ */

static void finish(sendfile_req *r, int status) {
    r->finished = true;
    r->status = status;
    tide__loop_defer(r->t->loop, &r->call);
}

typedef struct kernel_args {
    int out, in;
    off_t *offset;
    size_t n;
} kernel_args;

static ssize_t call_sendfile(void *arg) {
    kernel_args *a = arg;
    return sendfile(a->out, a->in, a->offset, a->n);
}

/* One kernel sendfile. Returns true when the step is over for now (waiting for the
 * socket or finished), false to go on with the copying way. */
/* Waits for the socket to take more; false (with the transport failed) when the
 * kernel would not watch it. */
static bool wait_writable(sendfile_req *r) {
    int rc = tide__io_start(&r->ww, TIDE__IO_WRITE);
    if (rc != 0)
        tide__transport_fatal(r->t, rc);
    return true;
}

static bool kernel_step(sendfile_req *r) {
    if (tide_transport_get_write_buffer_size(r->t) > 0) {
        /* Written bytes still queued go first; the transport flushes them on the
         * same writability this watcher waits for. */
        return wait_writable(r);
    }
    kernel_args a = {r->wfd, r->fd, &r->offset, r->left < KERNEL_STEP ? r->left : KERNEL_STEP};
    ssize_t n;
    do {
        n = tide__sys_nosigpipe(call_sendfile, &a);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        r->sent += (size_t)n;
        r->left -= (size_t)n;
        if (r->left == 0) {
            tide__io_stop(&r->ww, TIDE__IO_WRITE);
            finish(r, 0);
            return true;
        }
        return wait_writable(r);
    }
    if (n == 0) { /* the file ended early */
        tide__io_stop(&r->ww, TIDE__IO_WRITE);
        finish(r, 0);
        return true;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return wait_writable(r);
    tide__io_stop(&r->ww, TIDE__IO_WRITE);
    if ((errno == EINVAL || errno == ENOSYS || errno == EOVERFLOW) && r->sent == 0) {
        r->kernel = false; /* a file the kernel cannot send from */
        return false;
    }
    /* The connection failed: the transport reports it, and fw_lost completes us. */
    tide__transport_fatal(r->t, tide_err_from_errno(errno));
    return true;
}

static void copy_step(sendfile_req *r) {
    while (r->left > 0 && !r->paused && !r->finished) {
        size_t want = r->left < PIECE ? r->left : PIECE;
        ssize_t n;
        do {
            n = pread(r->fd, r->buf, want, r->offset);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
            finish(r, tide_err_from_errno(errno));
            return;
        }
        if (n == 0) {
            finish(r, 0);
            return;
        }
        /* The one writer the transport takes while the file is being sent. */
        r->t->state &= ~(unsigned)TIDE__T_SENDING_FILE;
        int rc = tide_transport_write(r->t, r->buf, (size_t)n);
        r->t->state |= TIDE__T_SENDING_FILE;
        if (rc < 0) {
            finish(r, rc);
            return;
        }
        r->offset += n;
        r->sent += (size_t)n;
        r->left -= (size_t)n;
    }
    if (r->left == 0 && !r->finished)
        finish(r, 0);
}

static void step(sendfile_req *r) {
    if (r->kernel && kernel_step(r))
        return;
    copy_step(r);
}

static void on_writable(tide__io *io, unsigned events) {
    (void)events;
    sendfile_req *r = TIDE_CONTAINER_OF(io, sendfile_req, ww);
    tide__io_stop(io, TIDE__IO_WRITE);
    if (!r->finished)
        step(r);
}

/* Gives the transport back to the user's protocol and reports. */
static void complete(sendfile_req *r) {
    tide__loop_undefer(&r->call);
    tide__io_stop(&r->ww, TIDE__IO_WRITE);
    if (r->wfd >= 0)
        close(r->wfd);
    r->t->state &= ~(unsigned)TIDE__T_SENDING_FILE;
    tide_transport_set_protocol(r->t, r->user);
    tide_sendfile_cb cb = r->cb;
    void *arg = r->arg;
    tide_transport_t *t = r->t;
    int status = r->status;
    size_t sent = r->sent;
    free(r->buf);
    free(r);
    cb(t, status, sent, arg);
}

static void run_call(tide__call *call) {
    sendfile_req *r = TIDE__QUEUE_DATA(call, sendfile_req, call);
    if (r->finished)
        complete(r);
    else
        step(r);
}

int tide_transport_sendfile(tide_transport_t *t, int fd, off_t offset, size_t count,
                            tide_sendfile_cb cb, void *arg) {
    if (t == NULL || cb == NULL || fd < 0 || offset < 0)
        return TIDE_EINVAL;
    if (t->state & TIDE__T_SENDING_FILE)
        return TIDE_EBUSY;
    if (t->error != 0)
        return t->error;
    if (t->state & (TIDE__T_CLOSING | TIDE__T_EOF_WRITTEN))
        return TIDE_ECLOSED;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return TIDE_EINVAL;
    if (count == 0)
        count = st.st_size > offset ? (size_t)(st.st_size - offset) : 0;
    sendfile_req *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return TIDE_ENOMEM;
    const char *kind = tide_transport_kind(t);
    r->kernel = strcmp(kind, "tcp") == 0 || strcmp(kind, "unix") == 0;
    /* The kernel way needs it too when it has to fall back. */
    r->buf = malloc(PIECE);
    if (r->buf == NULL) {
        free(r);
        return TIDE_ENOMEM;
    }
    r->proto.ops = tide_protocol_is_buffered(t->protocol) ? &forward_buffered_ops : &forward_ops;
    r->user = t->protocol;
    r->t = t;
    r->fd = fd;
    r->offset = offset;
    r->left = count;
    r->paused = (t->state & TIDE__T_WRITE_PAUSED) != 0;
    r->cb = cb;
    r->arg = arg;
    r->wfd = r->kernel ? fcntl(tide_transport_get_fd(t), F_DUPFD_CLOEXEC, 0) : -1;
    if (r->wfd < 0)
        r->kernel = false; /* no descriptor to spare: the copying way still works */
    tide__io_init(t->loop, &r->ww, r->wfd, on_writable);
    tide__call_init(&r->call, run_call);
    tide_transport_set_protocol(t, &r->proto);
    t->state |= TIDE__T_SENDING_FILE;
    /* The first step too is deferred: nothing runs inside the caller's call. */
    if (count == 0)
        finish(r, 0);
    else
        tide__loop_defer(t->loop, &r->call);
    return 0;
}
