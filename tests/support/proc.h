/* Subprocess test helpers (tests/transports/test_process*.c): a recording subprocess
 * protocol and a fixture of a loop whose teardown checks a clean close, the
 * descriptor count, and that no child was left unreaped. Include after support.h. */
#ifndef TIDE_TEST_PROC_H
#define TIDE_TEST_PROC_H

#include <stdbool.h>
#include <stddef.h>

#include "tide.h"

/* Records a subprocess protocol's callbacks: events M made, 0/1/2 a pipe ended, X
 * exited, L lost; the output of each pipe; the return code at process_exited. */
typedef struct pr_rec {
    tide_subprocess_protocol_t base;
    tide_subprocess_t *t;
    char events[32];
    size_t nevents;
    unsigned char *data[3];
    size_t len[3], cap[3];
    int pipe_status[3];
    int returncode;
    int exited, lost, pauses, resumes;
    /* Optional hooks. */
    void (*on_made)(struct pr_rec *r);
    void (*on_data)(struct pr_rec *r, int fd, const void *data, size_t len);
    void (*on_resume)(struct pr_rec *r);
    void *user;
} pr_rec;

/* The recorder's ops, for tests that build their own table from its pieces. */
void pr_made(tide_subprocess_protocol_t *p, tide_subprocess_t *t);
void pr_data(tide_subprocess_protocol_t *p, int fd, const void *data, size_t len);
void pr_pipe_lost(tide_subprocess_protocol_t *p, int fd, int status);
void pr_exited(tide_subprocess_protocol_t *p);
void pr_lost(tide_subprocess_protocol_t *p, int status);

void pr_rec_init(pr_rec *r);
void pr_rec_free(pr_rec *r);
bool pr_pred_lost(void *rec);
/* The output of fd as a NUL-terminated string. */
const char *pr_text(pr_rec *r, int fd);

typedef struct pr_fx {
    tide_loop_t *loop;
    int fds_before;
    pr_rec r;
} pr_fx;

int pr_setup(void **state);
int pr_teardown(void **state);
#define PR_TEST(fn) cmocka_unit_test_setup_teardown(fn, pr_setup, pr_teardown)

#endif
