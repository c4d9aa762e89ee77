/* The task-style (_await) stream calls: each starts the callback form with an internal
 * completion that records the result and wakes the task, then suspends the task in
 * tide__task_wait. Records live in the task's frame (no allocation per read, write
 * or drain); only an open allocates, because its completion can outlive an abandoned
 * wait.
 *
 * A read callback's data is lent only for the call, and the buffer may move once it
 * returns (more input, a compaction), so the completion copies the result into the
 * caller's buffer before the task resumes; except that read_await, started on an
 * empty reader, lets the transport read straight into the caller's buffer (no copy),
 * and the reader then resumes the task without going through the completion.
 *
 * Cancellation and deadlines: the waiter's on_abandon withdraws the pending operation
 * (reader: the pending read, which has consumed nothing yet; writer: its waiter
 * record; open: cancels the connect, or marks the request so that a stream made
 * meanwhile is aborted). Everything runs on the loop's thread, the task's frame stays
 * valid while the task is suspended. */
#include <stdlib.h>
#include <string.h>

#include "streams/streams_int.h"
#include "tide/task.h"

/* ---- reads ------------------------------------------------------------------------- */

typedef tide__read_wait read_wait;

static void read_abandon(tide__waiter *w) { tide__reader_cancel_pending(((read_wait *)w)->r); }

void tide__read_wait_done(tide_reader_t *r, int status, const void *data, size_t len, void *arg) {
    (void)r;
    read_wait *rw = arg;
    if (data != NULL && len > 0 && data != rw->buf) {
        /* Every read is capped to the caller's buffer, so this cannot happen: but never
         * overrun it. */
        if (len > rw->cap) {
            len = rw->cap;
            status = TIDE_ENOBUFS;
        }
        memcpy(rw->buf, data, len);
    }
    rw->len = len;
    /* Read completions run from the loop (the reader's deferred call, or the readable
     * event that satisfied the read), never inside a user's call: a task whose read
     * got its bytes resumes right here. Any other outcome (an error, the end, a limit
     * overrun) resumes it through the ready queue, as before: by then the transport
     * has delivered what was already on its way behind those bytes (the EOF after a
     * last, unterminated record), which the task's next read is then evaluated with. */
    if (status == 0)
        tide__task_wake_now(&rw->w, status);
    else
        tide__task_wake(&rw->w, status);
}

/* Validates the reader; prepares rw. */
static int read_begin(read_wait *rw, tide_reader_t *r, void *buf, size_t cap, size_t *len) {
    if (len != NULL)
        *len = 0;
    if (r == NULL)
        return tide_task_current() ? TIDE_EINVAL : TIDE_ENOTASK;
    int rc = tide__in_task(r->loop);
    if (rc != 0)
        return rc;
    if (buf == NULL && cap > 0)
        return TIDE_EINVAL;
    tide__reader_end_loan(r);
    tide__waiter_init(&rw->w, read_abandon);
    rw->r = r;
    rw->buf = buf;
    rw->cap = cap;
    rw->len = 0;
    rw->lent = NULL;
    return 0;
}

/* Waits for the read started with status rc (the starting call's return). */
static int read_finish(read_wait *rw, int rc, size_t *len) {
    if (rc != 0)
        return rc;
    rc = tide__task_wait(&rw->w);
    if (len != NULL)
        *len = rw->len;
    return rc;
}

int tide_reader_read_await(tide_reader_t *r, void *buf, size_t n, size_t *len) {
    read_wait rw;
    int rc = read_begin(&rw, r, buf, n, len);
    if (rc == 0 && n == TIDE_READ_ALL)
        rc = TIDE_EINVAL;
    if (rc != 0)
        return rc;
    /* The transport reads straight into buf when the reader is empty: no copy. */
    return read_finish(&rw, tide__reader_read_into(r, buf, n, tide__read_wait_done, &rw), len);
}

int tide_reader_readexactly_await(tide_reader_t *r, void *buf, size_t n, size_t *len) {
    read_wait rw;
    int rc = read_begin(&rw, r, buf, n, len);
    if (rc != 0)
        return rc;
    return read_finish(&rw, tide_reader_readexactly(r, n, tide__read_wait_done, &rw), len);
}

/* The peek completion keeps the bytes where they are: a hold on the reader, ended by
 * the task's next consume or _await read (tide__reader_end_loan). */
static void peek_done(tide_reader_t *r, int status, const void *data, size_t len, void *arg) {
    read_wait *rw = arg;
    if (data != NULL && len > 0) {
        tide__reader_hold(r);
        r->peek_held = true;
        rw->lent = data;
    }
    rw->len = len;
    if (status == 0)
        tide__task_wake_now(&rw->w, status);
    else
        tide__task_wake(&rw->w, status);
}

int tide_reader_peek_await(tide_reader_t *r, const void **data, size_t *len) {
    if (data != NULL)
        *data = NULL;
    read_wait rw;
    int rc = read_begin(&rw, r, NULL, 0, len);
    if (rc == 0 && (data == NULL || len == NULL))
        rc = TIDE_EINVAL;
    if (rc != 0)
        return rc;
    rc = read_finish(&rw, tide__reader_peek(r, peek_done, &rw), len);
    if (rc == 0)
        *data = rw.lent;
    return rc;
}

/* The separator reads hand over at most cap bytes: a longer record is a limit overrun
 * (nothing consumed), so any buffer size works and no record is ever cut. */
static int read_record(tide_reader_t *r, bool line, const tide_iovec_t *seps, size_t n, void *buf,
                       size_t cap, size_t *len) {
    read_wait rw;
    int rc = read_begin(&rw, r, buf, cap, len);
    if (rc != 0)
        return rc;
    return read_finish(
        &rw, tide__reader_read_record(r, line, seps, n, cap, tide__read_wait_done, &rw), len);
}

int tide_reader_readuntil_any_await(tide_reader_t *r, const tide_iovec_t *seps, size_t n,
                                    void *buf, size_t cap, size_t *len) {
    return read_record(r, false, seps, n, buf, cap, len);
}

int tide_reader_readuntil_await(tide_reader_t *r, const void *sep, size_t seplen, void *buf,
                                size_t cap, size_t *len) {
    tide_iovec_t one = {sep, seplen};
    return read_record(r, false, &one, 1, buf, cap, len);
}

int tide_reader_readline_await(tide_reader_t *r, void *buf, size_t cap, size_t *len) {
    return read_record(r, true, NULL, 0, buf, cap, len);
}

int tide_reader_discard_until_await(tide_reader_t *r, const void *sep, size_t seplen,
                                    size_t *len) {
    read_wait rw;
    int rc = read_begin(&rw, r, NULL, 0, len);
    if (rc != 0)
        return rc;
    return read_finish(&rw, tide_reader_discard_until(r, sep, seplen, tide__read_wait_done, &rw),
                       len);
}

/* ---- drain and wait_closed ------------------------------------------------------------ */

typedef struct writer_wait {
    tide__waiter w; /* first: on_abandon gets it */
    tide__stream_waiter sw;
} writer_wait;

static void writer_abandon(tide__waiter *w) { tide__writer_waiter_cancel(&((writer_wait *)w)->sw); }

static void writer_done(tide_writer_t *writer, int status, void *arg) {
    (void)writer;
    tide__task_wake(&((writer_wait *)arg)->w, status);
}

static int writer_await(tide_writer_t *s,
                        void (*begin)(tide__stream *, tide__stream_waiter *, tide_writer_cb,
                                      void *)) {
    if (s == NULL)
        return tide_task_current() ? TIDE_EINVAL : TIDE_ENOTASK;
    int rc = tide__in_task(s->loop);
    if (rc != 0)
        return rc;
    writer_wait ww;
    tide__waiter_init(&ww.w, writer_abandon);
    begin(s, &ww.sw, writer_done, &ww);
    return tide__task_wait(&ww.w);
}

int tide_writer_drain_await(tide_writer_t *writer) {
    /* Like asyncio's drain, which returns without yielding when writing is not
     * paused and the connection is healthy: no record, no switch, no loop turn. */
    if (writer != NULL && tide__in_task(writer->loop) == 0 && tide__writer_drained(writer))
        return 0;
    return writer_await(writer, tide__writer_drain_start);
}

int tide_writer_wait_closed_await(tide_writer_t *writer) {
    return writer_await(writer, tide__writer_wait_closed_start);
}

/* ---- start_tls ------------------------------------------------------------------------------ */

typedef struct tls_wait {
    tide__waiter w; /* first: on_abandon gets it */
    tide__stream *s;
} tls_wait;

/* A half-made TLS session cannot be picked up later: withdraw and abort. */
static void tls_abandon(tide__waiter *w) {
    tide__stream *s = ((tls_wait *)w)->s;
    s->tls_cb = NULL;
    if (s->transport)
        tide_transport_abort(s->transport);
}

static void tls_done(tide_writer_t *writer, int status, void *arg) {
    (void)writer;
    tide__task_wake(&((tls_wait *)arg)->w, status);
}

int tide_writer_start_tls_await(tide_writer_t *s, tide_tls_config_t *config,
                                const char *server_hostname, const tide_tls_session_t *session) {
    if (s == NULL)
        return tide_task_current() ? TIDE_EINVAL : TIDE_ENOTASK;
    int rc = tide__in_task(s->loop);
    if (rc != 0)
        return rc;
    tls_wait tw = {.s = s};
    tide__waiter_init(&tw.w, tls_abandon);
    rc = tide_writer_start_tls(s, config, server_hostname, session, tls_done, &tw);
    if (rc != 0)
        return rc;
    return tide__task_wait(&tw.w);
}

/* ---- opening ---------------------------------------------------------------------------- */

typedef struct open_wait open_wait;

/* Outlives an abandoned wait: the open's completion always comes, and finds wait NULL. */
typedef struct open_req {
    open_wait *wait;
    tide_connect_t *connect; /* cancellable while the completion has not run */
} open_req;

struct open_wait {
    tide__waiter w; /* first: on_abandon gets it */
    open_req *req;
    tide_reader_t *reader;
    tide_writer_t *writer;
};

static void open_abandon(tide__waiter *w) {
    open_req *req = ((open_wait *)w)->req;
    req->wait = NULL;
    tide_connect_cancel(req->connect);
}

static void open_done(tide_loop_t *loop, int status, tide_reader_t *reader, tide_writer_t *writer,
                      void *arg) {
    (void)loop;
    open_req *req = arg;
    open_wait *ow = req->wait;
    free(req);
    if (ow == NULL) {
        /* Nobody wants the stream any more. */
        tide_writer_abort(writer);
        return;
    }
    ow->reader = reader;
    ow->writer = writer;
    tide__task_wake(&ow->w, status);
}

/* Starts one open variant with open_done and req as its completion. */
typedef int (*open_start)(tide_loop_t *loop, const void *ctx, open_req *req);

static int open_await(tide_loop_t *loop, open_start start, const void *ctx, tide_reader_t **reader,
                      tide_writer_t **writer) {
    if (reader != NULL)
        *reader = NULL;
    if (writer != NULL)
        *writer = NULL;
    if (loop == NULL)
        return tide_task_current() ? TIDE_EINVAL : TIDE_ENOTASK;
    int rc = tide__in_task(loop);
    if (rc != 0)
        return rc;
    if (reader == NULL || writer == NULL)
        return TIDE_EINVAL;
    open_req *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return TIDE_ENOMEM;
    open_wait ow = {.req = req};
    tide__waiter_init(&ow.w, open_abandon);
    req->wait = &ow;
    rc = start(loop, ctx, req);
    if (rc != 0) {
        free(req);
        return rc;
    }
    rc = tide__task_wait(&ow.w);
    if (rc == 0) {
        *reader = ow.reader;
        *writer = ow.writer;
    }
    return rc;
}

typedef struct tcp_args {
    const char *host;
    uint16_t port;
    size_t limit;
    const tide_connect_options_t *options;
} tcp_args;

static int start_tcp(tide_loop_t *loop, const void *ctx, open_req *req) {
    const tcp_args *a = ctx;
    return tide_loop_open_connection(loop, a->host, a->port, a->limit, a->options, open_done, req,
                                     &req->connect);
}

int tide_loop_open_connection_await(tide_loop_t *loop, const char *host, uint16_t port,
                                    size_t limit, const tide_connect_options_t *options,
                                    tide_reader_t **reader, tide_writer_t **writer) {
    tcp_args a = {host, port, limit, options};
    return open_await(loop, start_tcp, &a, reader, writer);
}

typedef struct path_args {
    const char *path;
    size_t limit;
    const tide_connect_options_t *options;
} path_args;

static int start_unix(tide_loop_t *loop, const void *ctx, open_req *req) {
    const path_args *a = ctx;
    return tide_loop_open_unix_connection(loop, a->path, a->limit, a->options, open_done, req,
                                          &req->connect);
}

int tide_loop_open_unix_connection_await(tide_loop_t *loop, const char *path, size_t limit,
                                         const tide_connect_options_t *options,
                                         tide_reader_t **reader, tide_writer_t **writer) {
    path_args a = {path, limit, options};
    return open_await(loop, start_unix, &a, reader, writer);
}

typedef struct fd_args {
    int fd;
    size_t limit;
    const tide_connect_options_t *options;
    bool accepted;
} fd_args;

static int start_fd(tide_loop_t *loop, const void *ctx, open_req *req) {
    const fd_args *a = ctx;
    /* No cancellation: the stream is ready on a later iteration, and aborted if the
     * wait was abandoned by then. */
    return a->accepted ? tide_loop_open_accepted_socket(loop, a->fd, a->limit, a->options,
                                                        open_done, req)
                       : tide_loop_open_socket(loop, a->fd, a->limit, a->options, open_done, req);
}

int tide_loop_open_socket_await(tide_loop_t *loop, int fd, size_t limit,
                                const tide_connect_options_t *options, tide_reader_t **reader,
                                tide_writer_t **writer) {
    fd_args a = {fd, limit, options, false};
    return open_await(loop, start_fd, &a, reader, writer);
}

int tide_loop_open_accepted_socket_await(tide_loop_t *loop, int fd, size_t limit,
                                         const tide_connect_options_t *options,
                                         tide_reader_t **reader, tide_writer_t **writer) {
    fd_args a = {fd, limit, options, true};
    return open_await(loop, start_fd, &a, reader, writer);
}
