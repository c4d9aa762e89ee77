/* Subprocess test helpers: see proc.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "support/proc.h"
#include "support/support.h"

static void event(pr_rec *r, char c) {
    if (r->nevents + 1 < sizeof(r->events))
        r->events[r->nevents++] = c;
}

void pr_made(tide_subprocess_protocol_t *p, tide_subprocess_t *t) {
    pr_rec *r = (pr_rec *)p;
    r->t = t;
    event(r, 'M');
    if (r->on_made)
        r->on_made(r);
}

void pr_data(tide_subprocess_protocol_t *p, int fd, const void *data, size_t len) {
    pr_rec *r = (pr_rec *)p;
    if (r->on_data) {
        r->on_data(r, fd, data, len);
        return;
    }
    if (r->len[fd] + len > r->cap[fd]) {
        r->cap[fd] = (r->len[fd] + len) * 2;
        r->data[fd] = realloc(r->data[fd], r->cap[fd]);
    }
    memcpy(r->data[fd] + r->len[fd], data, len);
    r->len[fd] += len;
}

void pr_pipe_lost(tide_subprocess_protocol_t *p, int fd, int status) {
    pr_rec *r = (pr_rec *)p;
    r->pipe_status[fd] = status;
    event(r, (char)('0' + fd));
}

void pr_exited(tide_subprocess_protocol_t *p) {
    pr_rec *r = (pr_rec *)p;
    r->exited++;
    event(r, 'X');
    assert_true(tide_subprocess_get_returncode(r->t, &r->returncode));
}

void pr_lost(tide_subprocess_protocol_t *p, int status) {
    pr_rec *r = (pr_rec *)p;
    assert_int_equal(status, 0);
    r->lost++;
    event(r, 'L');
}

static void pr_pause(tide_subprocess_protocol_t *p) { ((pr_rec *)p)->pauses++; }

static void pr_resume(tide_subprocess_protocol_t *p) {
    pr_rec *r = (pr_rec *)p;
    r->resumes++;
    if (r->on_resume)
        r->on_resume(r);
}

static const tide_subprocess_protocol_ops_t rec_ops = {
    .size = TIDE_SUBPROCESS_PROTOCOL_OPS_SIZE,
    .connection_made = pr_made,
    .pipe_data_received = pr_data,
    .pipe_connection_lost = pr_pipe_lost,
    .process_exited = pr_exited,
    .connection_lost = pr_lost,
    .pause_writing = pr_pause,
    .resume_writing = pr_resume,
};

void pr_rec_init(pr_rec *r) {
    memset(r, 0, sizeof(*r));
    r->base.ops = &rec_ops;
}

void pr_rec_free(pr_rec *r) {
    for (int i = 0; i < 3; i++)
        free(r->data[i]);
}

bool pr_pred_lost(void *arg) { return ((pr_rec *)arg)->lost > 0; }

/* The output of fd as a string (NUL-terminated in place). */
const char *pr_text(pr_rec *r, int fd) {
    if (r->len[fd] + 1 > r->cap[fd]) {
        r->cap[fd] = r->len[fd] + 1;
        r->data[fd] = realloc(r->data[fd], r->cap[fd]);
    }
    r->data[fd][r->len[fd]] = '\0';
    return (const char *)r->data[fd];
}

/* ---- fixture ------------------------------------------------------------------- */

int pr_setup(void **state) {
    pr_fx *f = calloc(1, sizeof(*f));
    f->fds_before = ts_count_fds();
    f->loop = ts_loop_new();
    pr_rec_init(&f->r);
    *state = f;
    return 0;
}

int pr_teardown(void **state) {
    pr_fx *f = *state;
    ts_finish(f->loop, f->fds_before);
    pr_rec_free(&f->r);
    free(f);
    /* Every child was reaped by tide, none by anyone else. */
    errno = 0;
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    return 0;
}
