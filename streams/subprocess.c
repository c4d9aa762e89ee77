/* Subprocess streams: asyncio's create_subprocess_exec / _shell and its Process, with
 * wait and communicate in both styles.
 *
 * A process is a child (transports/process.c starts and reaps it) and one ordinary
 * stream per piped descriptor: the pipe transport carries the stream adapter
 * protocol exactly as a socket does, so readers, writers, drains and their await
 * forms need nothing new. The process keeps its streams until tide_process_close
 * releases them.
 *
 * communicate feeds stdin (the write queue takes the input at once) and reads stdout
 * and stderr in turns of the event loop as their bytes come, straight into its own
 * growing result buffers (the reader hands its caller's memory to the pipe while
 * empty), so at no time does anything hold more than the pipes' buffers plus the
 * output collected so far, and no output size can deadlock the exchange. It then
 * waits for the child's exit.
 *
 * Lifetime: the process is a loop resource until it is closed and reaped, with no
 * wait or communicate left; it is freed from a deferred call then. Reentrancy: every
 * completion is deferred or runs from an I/O event; callbacks may close the process.
 * Loop thread only. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "streams/streams_int.h"
#include "tide/process.h"

/* Free room the result buffers keep for the next pipe read. */
#define COLLECT_CHUNK ((size_t)64 * 1024)

typedef struct proc_wait proc_wait;
struct proc_wait {
    tide__queue node; /* on the process's waits */
    tide__call call;
    tide_process_t *p;
    void (*done)(proc_wait *w); /* runs once the child is reaped */
    tide_process_wait_cb cb;
    void *arg;
    tide__waiter tw; /* the await form */
};

typedef struct comm_op comm_op;

typedef struct collected {
    comm_op *op;
    int index; /* 0: stdout, 1: stderr */
    char *data;
    size_t len;
    size_t cap;
    bool done;
} collected;

struct comm_op {
    tide_process_t *p;
    collected out[2]; /* stdout, stderr */
    int status;
    proc_wait exit_wait;
    bool waiting_exit;
    void (*done)(struct comm_op *op); /* runs once, with status and the results */
    tide_process_communicate_cb cb;
    void *arg;
    struct comm_await *waiting; /* the await form's frame */
};

/* The await form's record, in the task's frame (the task reads it after an
 * abandon, which frees the op). */
typedef struct comm_await {
    tide__waiter tw;
    comm_op *op;
    bool abandoned; /* comm_abandon freed the op */
} comm_await;

struct tide_process {
    tide_loop_t *loop;
    tide__child child;
    tide__stream *streams[3];
    tide__queue waits;
    comm_op *comm;
    tide__resource resource;
    tide__call free_call;
    bool closed;
};

/* ---- lifetime ---------------------------------------------------------------------- */

static void describe(const tide__resource *res, char *buf, size_t size) {
    const tide_process_t *p = TIDE__QUEUE_DATA(res, tide_process_t, resource);
    snprintf(buf, size, "process %d (%s, %s)", p->child.pid, p->child.exited ? "exited" : "running",
             p->closed ? "closing" : "never closed");
}

static void free_run(tide__call *call) {
    tide_process_t *p = TIDE__QUEUE_DATA(call, tide_process_t, free_call);
    tide__loop_unregister(p->loop, &p->resource);
    free(p);
}

static void maybe_free(tide_process_t *p) {
    if (p->closed && p->child.exited && p->comm == NULL && tide__queue_empty(&p->waits))
        tide__loop_defer(p->loop, &p->free_call);
}

static void wait_run(tide__call *call) {
    proc_wait *w = TIDE__QUEUE_DATA(call, proc_wait, call);
    tide_process_t *p = w->p;
    tide__queue_remove(&w->node);
    w->done(w);
    maybe_free(p);
}

static void child_exited(tide__child *c) {
    tide_process_t *p = TIDE_CONTAINER_OF(c, tide_process_t, child);
    tide__queue *n;
    TIDE__QUEUE_FOREACH(n, &p->waits) {
        tide__loop_defer(p->loop, &TIDE__QUEUE_DATA(n, proc_wait, node)->call);
    }
    maybe_free(p);
}

static void wait_add(tide_process_t *p, proc_wait *w, void (*done)(proc_wait *w)) {
    tide__queue_init(&w->node);
    tide__call_init(&w->call, wait_run);
    w->p = p;
    w->done = done;
    tide__queue_insert_tail(&p->waits, &w->node);
    if (p->child.exited)
        tide__loop_defer(p->loop, &w->call);
}

static void wait_withdraw(proc_wait *w) {
    tide__loop_undefer(&w->call);
    tide__queue_remove(&w->node);
    maybe_free(w->p);
}

/* ---- creating -------------------------------------------------------------------- */

static int create(tide_loop_t *loop, const char *const *argv,
                  const tide_subprocess_options_t *options, size_t limit, tide_process_t **out) {
    if (loop == NULL || out == NULL)
        return TIDE_EINVAL;
    if (limit == 0)
        limit = TIDE_STREAM_DEFAULT_LIMIT;
    if (!tide__stream_limit_ok(limit))
        return TIDE_EINVAL;
    tide_process_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return TIDE_ENOMEM;
    int fds[3];
    int rc = tide__child_spawn(&p->child, loop, argv, options, false, fds);
    if (rc < 0) {
        free(p);
        return rc;
    }
    p->loop = loop;
    tide__queue_init(&p->waits);
    tide__queue_init(&p->resource.node);
    tide__call_init(&p->free_call, free_run);
    tide__loop_register(loop, &p->resource, describe);
    for (int i = 0; i < 3; i++) {
        if (fds[i] < 0)
            continue;
        /* On failure the caller gets NULL for this stream (the log says why). */
        tide__stream *s = tide__stream_new(loop, limit);
        tide_transport_t *t = tide__child_pipe(&p->child, i, fds[i], s ? &s->proto : NULL);
        if (t == NULL) {
            if (s != NULL)
                tide__stream_discard(s);
            continue;
        }
        /* Usable at once, as asyncio's Process is once created: writes queue on the
         * pipe and reads wait, before its connection_made has run. */
        p->streams[i] = s;
        s->transport = t;
        s->reader.transport = t;
    }
    tide__child_watch(&p->child, child_exited);
    *out = p;
    return 0;
}

int tide_loop_create_subprocess_exec(tide_loop_t *loop, const char *const *argv,
                                     const tide_subprocess_options_t *options, size_t limit,
                                     tide_process_t **process) {
    return create(loop, argv, options, limit, process);
}

int tide_loop_create_subprocess_shell(tide_loop_t *loop, const char *cmd,
                                      const tide_subprocess_options_t *options, size_t limit,
                                      tide_process_t **process) {
    if (cmd == NULL)
        return TIDE_EINVAL;
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    return create(loop, argv, options, limit, process);
}

void tide_process_close(tide_process_t *p) {
    if (p == NULL || p->closed)
        return;
    p->closed = true;
    if (!p->child.exited)
        (void)tide__child_signal(&p->child, SIGKILL);
    for (int i = 0; i < 3; i++) {
        tide_writer_close(p->streams[i]);
        p->streams[i] = NULL;
    }
    maybe_free(p);
}

/* ---- accessors ------------------------------------------------------------------- */

tide_writer_t *tide_process_stdin(const tide_process_t *p) { return p ? p->streams[0] : NULL; }

tide_reader_t *tide_process_stdout(const tide_process_t *p) {
    return p && p->streams[1] ? &p->streams[1]->reader : NULL;
}

tide_reader_t *tide_process_stderr(const tide_process_t *p) {
    return p && p->streams[2] ? &p->streams[2]->reader : NULL;
}

int tide_process_get_pid(const tide_process_t *p) { return p ? p->child.pid : TIDE_EINVAL; }

bool tide_process_get_returncode(const tide_process_t *p, int *returncode) {
    if (p == NULL || !p->child.exited)
        return false;
    if (returncode)
        *returncode = p->child.returncode;
    return true;
}

int tide_process_send_signal(tide_process_t *p, int sig) {
    return p ? tide__child_signal(&p->child, sig) : TIDE_EINVAL;
}

int tide_process_terminate(tide_process_t *p) { return tide_process_send_signal(p, SIGTERM); }

int tide_process_kill(tide_process_t *p) { return tide_process_send_signal(p, SIGKILL); }

/* ---- wait ---------------------------------------------------------------------------- */

static void wait_cb_done(proc_wait *w) {
    tide_process_t *p = w->p;
    tide_process_wait_cb cb = w->cb;
    void *arg = w->arg;
    free(w);
    cb(p, 0, p->child.returncode, arg);
}

int tide_process_wait(tide_process_t *p, tide_process_wait_cb cb, void *arg) {
    if (p == NULL || cb == NULL)
        return TIDE_EINVAL;
    proc_wait *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return TIDE_ENOMEM;
    w->cb = cb;
    w->arg = arg;
    wait_add(p, w, wait_cb_done);
    return 0;
}

static void wait_await_done(proc_wait *w) { tide__task_wake_now(&w->tw, 0); }

static void wait_abandon(tide__waiter *tw) { wait_withdraw(TIDE_CONTAINER_OF(tw, proc_wait, tw)); }

int tide_process_wait_await(tide_process_t *p, int *returncode) {
    if (p == NULL)
        return TIDE_EINVAL;
    int rc = tide__in_task(p->loop);
    if (rc != 0)
        return rc;
    proc_wait w;
    memset(&w, 0, sizeof(w));
    tide__waiter_init(&w.tw, wait_abandon);
    wait_add(p, &w, wait_await_done);
    rc = tide__task_wait(&w.tw);
    if (rc == 0 && returncode)
        *returncode = p->child.returncode;
    return rc;
}

/* ---- communicate --------------------------------------------------------------------- */

static void comm_read_next(comm_op *op, int i);

static void comm_finish(comm_op *op) {
    op->p->comm = NULL;
    op->done(op);
}

static void comm_exited(proc_wait *w) {
    comm_op *op = TIDE_CONTAINER_OF(w, comm_op, exit_wait);
    op->waiting_exit = false;
    comm_finish(op);
}

/* Both outputs ended (or were not piped): the child's exit is all that is left. */
static void comm_check(comm_op *op) {
    if (!op->out[0].done || !op->out[1].done || op->waiting_exit)
        return;
    op->waiting_exit = true;
    wait_add(op->p, &op->exit_wait, comm_exited);
}

static void comm_on_read(tide_reader_t *r, int status, const void *data, size_t len, void *arg) {
    (void)r;
    collected *c = arg;
    comm_op *op = c->op;
    int i = c->index;
    if (len > 0) {
        /* Read into the buffer's tail when the reader was empty; else copied. */
        if (data != c->data + c->len)
            memmove(c->data + c->len, data, len);
        c->len += len;
    }
    if (status == 0) {
        comm_read_next(op, i);
        return;
    }
    if (status != TIDE_EOF && op->status == 0)
        op->status = status;
    c->done = true;
    comm_check(op);
}

static void comm_read_next(comm_op *op, int i) {
    collected *c = &op->out[i];
    tide_reader_t *r = i == 0 ? tide_process_stdout(op->p) : tide_process_stderr(op->p);
    int rc = r == NULL ? TIDE_ECLOSED : 0; /* the process was closed */
    if (rc == 0 && c->cap - c->len < COLLECT_CHUNK + 1) {
        size_t cap = c->cap < COLLECT_CHUNK ? 2 * COLLECT_CHUNK : 2 * c->cap;
        char *data = realloc(c->data, cap);
        if (data == NULL) {
            rc = TIDE_ENOMEM;
        } else {
            c->data = data;
            c->cap = cap;
        }
    }
    if (rc == 0)
        rc = tide__reader_read_into(r, c->data + c->len, c->cap - c->len - 1, comm_on_read, c);
    if (rc < 0) {
        if (op->status == 0)
            op->status = rc;
        c->done = true;
        comm_check(op);
    }
}

static void comm_free(comm_op *op) {
    free(op->out[0].data);
    free(op->out[1].data);
    free(op);
}

/* Starts a communicate whose end calls done(op); 0 or a code (nothing started). */
static int comm_start(tide_process_t *p, const void *input, size_t len, void (*done)(comm_op *op),
                      comm_op **out) {
    if (p->comm != NULL)
        return TIDE_EBUSY;
    if ((input == NULL && len > 0) || (len > 0 && p->streams[0] == NULL))
        return TIDE_EINVAL;
    comm_op *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return TIDE_ENOMEM;
    op->p = p;
    op->done = done;
    for (int i = 0; i < 2; i++) {
        op->out[i].op = op;
        op->out[i].index = i;
    }
    if (p->streams[0] != NULL) {
        /* The queue takes it all; a child that exits without reading it is no error
         * (asyncio ignores BrokenPipeError and ConnectionResetError here too). */
        if (len > 0) {
            int rc = tide_writer_write(p->streams[0], input, len);
            if (rc == TIDE_ENOMEM) {
                free(op);
                return rc;
            }
        }
        (void)tide_writer_write_eof(p->streams[0]);
    }
    p->comm = op;
    for (int i = 0; i < 2; i++) {
        if (p->streams[i + 1] == NULL)
            op->out[i].done = true;
        else
            comm_read_next(op, i);
    }
    comm_check(op);
    *out = op;
    return 0;
}

static void comm_cb_done(comm_op *op) {
    tide_process_t *p = op->p;
    op->cb(p, op->status, p->child.returncode, op->out[0].data, op->out[0].len, op->out[1].data,
           op->out[1].len, op->arg);
    comm_free(op);
}

int tide_process_communicate(tide_process_t *p, const void *input, size_t len,
                             tide_process_communicate_cb cb, void *arg) {
    if (p == NULL || cb == NULL)
        return TIDE_EINVAL;
    comm_op *op;
    int rc = comm_start(p, input, len, comm_cb_done, &op);
    if (rc == 0) {
        op->cb = cb;
        op->arg = arg;
    }
    return rc;
}

static void comm_await_done(comm_op *op) { tide__task_wake_now(&op->waiting->tw, op->status); }

/* A cancelled or timed-out communicate: its reads and its wait are withdrawn, and
 * the child is left as it is. */
static void comm_abandon(tide__waiter *tw) {
    comm_await *ca = TIDE_CONTAINER_OF(tw, comm_await, tw);
    comm_op *op = ca->op;
    tide_process_t *p = op->p;
    for (int i = 0; i < 2; i++) {
        tide__stream *s = p->streams[i + 1];
        if (s != NULL && !op->out[i].done)
            tide__reader_cancel_pending(&s->reader);
    }
    if (op->waiting_exit)
        wait_withdraw(&op->exit_wait);
    p->comm = NULL;
    ca->abandoned = true;
    comm_free(op);
    maybe_free(p);
}

static char *take(collected *c, size_t *len) {
    if (len)
        *len = c->len;
    char *data = c->data ? c->data : malloc(1);
    if (data)
        data[c->len] = '\0';
    c->data = NULL;
    return data;
}

int tide_process_communicate_await(tide_process_t *p, const void *input, size_t len,
                                   int *returncode, char **out, size_t *out_len, char **err,
                                   size_t *err_len) {
    if (p == NULL)
        return TIDE_EINVAL;
    int rc = tide__in_task(p->loop);
    if (rc != 0)
        return rc;
    comm_op *op;
    rc = comm_start(p, input, len, comm_await_done, &op);
    if (rc != 0)
        return rc;
    comm_await ca = {.op = op};
    op->waiting = &ca;
    tide__waiter_init(&ca.tw, comm_abandon);
    rc = tide__task_wait(&ca.tw);
    if (ca.abandoned)
        return rc; /* cancelled or timed out: comm_abandon freed op */
    if (returncode)
        *returncode = p->child.returncode;
    if (rc == 0 && out && (*out = take(&op->out[0], out_len)) == NULL)
        rc = TIDE_ENOMEM;
    if (rc == 0 && err && (*err = take(&op->out[1], err_len)) == NULL) {
        rc = TIDE_ENOMEM;
        if (out) {
            free(*out);
            *out = NULL;
        }
    }
    comm_free(op);
    return rc;
}
