/* Child processes and pipes: starting a child (posix_spawn), reaping it on its own
 * loop, the public pipe constructors, and the subprocess transport that ties a child
 * and its pipe transports to a subprocess protocol (asyncio's base_subprocess).
 *
 * Starting: posix_spawnp. glibc runs it as clone(CLONE_VM | CLONE_VFORK) + exec, so
 * starting costs no copy of the parent's page tables (a thousand children from a
 * big ASan process stay cheap), nothing but exec-safe steps run in the child of a
 * multi-threaded parent, and an exec failure comes back as the call's own return
 * value with the child's errno (ENOENT for a missing program), not as a child that
 * exits 127. The file actions move the pipe ends onto 0, 1 and 2, keep pass_fds
 * (a dup2 onto itself clears close-on-exec) and close everything else from 3 up
 * (closefrom; without it, glibc before 2.34, only close-on-exec protects). Descriptors given as
 * TIDE_STDIO_FD are first copied above 2 so that moving one onto 0..2 can never clobber another.
 *
 * Reaping: each child is watched through its pidfd (readable once it exits) on the
 * loop that started it, then reaped with waitpid(pid, WNOHANG): no SIGCHLD handler,
 * no process-wide state, any number of loops in any threads. Without pidfd_open the
 * loop polls waitpid(pid, WNOHANG) on a backing-off timer.
 *
 * The subprocess transport: one pipe transport per piped descriptor (socket.c's pipe
 * kind), each with a small adapter protocol that forwards to the subprocess protocol
 * with its descriptor number. connection_made is deferred before the pipes are
 * started, so it runs first; connection_lost runs once the child is reaped and every
 * pipe has ended, and the transport is freed after it.
 *
 * Reentrancy: user callbacks run from the pipes' callbacks and from deferred calls;
 * close and kill are safe inside any of them. Loop thread only. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tide/process.h"
#include "transports/transport_int.h"

extern char **environ;

/* ---- starting a child -------------------------------------------------------------- */

void tide_subprocess_options_init(tide_subprocess_options_t *o, tide_stdio_mode_t mode) {
    memset(o, 0, sizeof(*o));
    for (int i = 0; i < 3; i++) {
        o->stdio[i].mode = mode;
        o->stdio[i].fd = -1;
    }
}

static void close_quietly(int *fd) {
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* The child's end of descriptor i in child[i] (-1: nothing to move there) and the
 * parent's end of a pipe in parent[i]. */
static int prepare_stdio(const tide_stdio_t *io, int i, int child[3], int parent[3]) {
    int p[2];
    switch (io->mode) {
    case TIDE_STDIO_INHERIT:
        return 0;
    case TIDE_STDIO_PIPE:
        if (pipe2(p, O_CLOEXEC) < 0)
            return tide_err_from_errno(errno);
        child[i] = i == 0 ? p[0] : p[1];
        parent[i] = i == 0 ? p[1] : p[0];
        return 0;
    case TIDE_STDIO_DEVNULL:
        child[i] = open("/dev/null", (i == 0 ? O_RDONLY : O_WRONLY) | O_CLOEXEC);
        return child[i] < 0 ? tide_err_from_errno(errno) : 0;
    case TIDE_STDIO_FD:
        if (io->fd < 0)
            return TIDE_EBADF;
        child[i] = fcntl(io->fd, F_DUPFD_CLOEXEC, 3);
        return child[i] < 0 ? tide_err_from_errno(errno) : 0;
    case TIDE_STDIO_STDOUT:
        return i == 2 ? 0 : TIDE_EINVAL;
    default:
        return TIDE_EINVAL;
    }
}

static int add_actions(posix_spawn_file_actions_t *fa, const tide_subprocess_options_t *o,
                       const int child[3]) {
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++) {
        if (child[i] >= 0)
            rc = posix_spawn_file_actions_adddup2(fa, child[i], i);
        else if (i == 2 && o->stdio[2].mode == TIDE_STDIO_STDOUT)
            rc = posix_spawn_file_actions_adddup2(fa, 1, 2);
    }
    int highest = 2;
    for (size_t i = 0; i < o->n_pass_fds && rc == 0; i++) {
        int fd = o->pass_fds[i];
        if (fd < 0)
            return TIDE_EBADF;
        /* Onto itself: glibc clears close-on-exec, which is what keeps it. */
        rc = posix_spawn_file_actions_adddup2(fa, fd, fd);
        if (fd > highest)
            highest = fd;
    }
    /* asyncio's close_fds=True: nothing the application left inheritable leaks.
     * Below the highest pass_fd one by one (glibc ignores a close of a descriptor
     * that is not open), above it all at once. */
    for (int fd = 3; fd < highest && rc == 0; fd++) {
        bool passed = false;
        for (size_t i = 0; i < o->n_pass_fds && !passed; i++)
            passed = o->pass_fds[i] == fd;
        if (!passed)
            rc = posix_spawn_file_actions_addclose(fa, fd);
    }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 34)
    if (rc == 0)
        rc = posix_spawn_file_actions_addclosefrom_np(fa, highest + 1);
#endif
    if (rc == 0 && o->cwd != NULL) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 29)
        rc = posix_spawn_file_actions_addchdir_np(fa, o->cwd);
#else
        return TIDE_ENOTSUP;
#endif
    }
    return rc == 0 ? 0 : tide_err_from_errno(rc);
}

static int set_attributes(posix_spawnattr_t *attr, const tide_subprocess_options_t *o) {
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    /* The child starts with no signal blocked and every signal at its default, as
     * Python's restore_signals: the parent's SIG_IGN for SIGPIPE must not leak. */
    int rc = posix_spawnattr_setsigmask(attr, &none);
    if (rc == 0)
        rc = posix_spawnattr_setsigdefault(attr, &all);
    if (rc == 0 && (o->flags & TIDE_SUBPROCESS_NEW_PROCESS_GROUP)) {
        flags |= POSIX_SPAWN_SETPGROUP;
        rc = posix_spawnattr_setpgroup(attr, 0);
    }
    if (o->flags & TIDE_SUBPROCESS_NEW_SESSION) {
#ifdef POSIX_SPAWN_SETSID
        flags |= POSIX_SPAWN_SETSID;
#else
        return TIDE_ENOTSUP;
#endif
    }
    if (rc == 0)
        rc = posix_spawnattr_setflags(attr, flags);
    return rc == 0 ? 0 : tide_err_from_errno(rc);
}

int tide__child_spawn(tide__child *c, tide_loop_t *loop, const char *const *argv,
                      const tide_subprocess_options_t *options, bool pipe_default, int fds[3]) {
    tide_subprocess_options_t defaults;
    if (options == NULL) {
        tide_subprocess_options_init(&defaults,
                                     pipe_default ? TIDE_STDIO_PIPE : TIDE_STDIO_INHERIT);
        options = &defaults;
    }
    if (argv == NULL || argv[0] == NULL || argv[0][0] == '\0' ||
        (options->pass_fds == NULL && options->n_pass_fds > 0))
        return TIDE_EINVAL;
    memset(c, 0, sizeof(*c));
    c->loop = loop;
    c->pidfd = -1;
    int child[3] = {-1, -1, -1};
    for (int i = 0; i < 3; i++)
        fds[i] = -1;
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++)
        rc = prepare_stdio(&options->stdio[i], i, child, fds);

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    bool fa_made = false, attr_made = false;
    if (rc == 0) {
        rc = -posix_spawn_file_actions_init(&fa);
        fa_made = rc == 0;
    }
    if (rc == 0) {
        rc = -posix_spawnattr_init(&attr);
        attr_made = rc == 0;
    }
    if (rc == 0)
        rc = add_actions(&fa, options, child);
    if (rc == 0)
        rc = set_attributes(&attr, options);
    pid_t pid = -1;
    if (rc == 0) {
        int err = posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)argv,
                               options->env ? options->env : environ);
        if (err != 0)
            rc = tide_err_from_errno(err);
    }
    if (fa_made)
        posix_spawn_file_actions_destroy(&fa);
    if (attr_made)
        posix_spawnattr_destroy(&attr);
    for (int i = 0; i < 3; i++)
        close_quietly(&child[i]);
    if (rc < 0) {
        for (int i = 0; i < 3; i++)
            close_quietly(&fds[i]);
        return rc;
    }
    c->pid = pid;
#ifdef SYS_pidfd_open
    if (!tide__child_use_pidfd)
        return 0;
    /* A child that already exited is a zombie until reaped, so its pidfd is still
     * good (and readable at once). */
    c->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
#endif
    return 0;
}

/* ---- reaping ------------------------------------------------------------------------ */

bool tide__child_use_pidfd = true;

#define POLL_FIRST 0.001
#define POLL_MAX 0.1

static void stop_watching(tide__child *c) {
    if (c->pidfd >= 0) {
        tide__io_stop(&c->io, TIDE__IO_READ);
        close_quietly(&c->pidfd);
    }
    tide__timer_stop(&c->poll);
    c->watching = false;
}

/* Reaps the child if it exited; true when it did. */
static bool try_reap(tide__child *c) {
    int status = 0;
    pid_t r;
    do {
        r = waitpid(c->pid, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0)
        return false;
    if (r < 0)
        c->returncode = 255; /* reaped elsewhere (ECHILD): unknown, as asyncio */
    else if (WIFSIGNALED(status))
        c->returncode = -WTERMSIG(status);
    else
        c->returncode = WEXITSTATUS(status);
    c->exited = true;
    stop_watching(c);
    c->on_exit(c);
    return true;
}

static void on_pidfd(tide__io *io, unsigned events) {
    (void)events;
    try_reap(TIDE_CONTAINER_OF(io, tide__child, io));
}

static void on_poll(tide__timer *timer) {
    tide__child *c = TIDE_CONTAINER_OF(timer, tide__child, poll);
    if (try_reap(c))
        return;
    c->delay = c->delay * 2 > POLL_MAX ? POLL_MAX : c->delay * 2;
    if (tide__timer_start(&c->poll, c->delay) < 0)
        tide__log(c->loop, TIDE_LOG_ERROR, "no memory to poll child %d", c->pid);
}

void tide__child_watch(tide__child *c, void (*on_exit)(tide__child *c)) {
    c->on_exit = on_exit;
    c->watching = true;
    tide__timer_init(c->loop, &c->poll, on_poll);
    if (c->pidfd >= 0) {
        tide__io_init(c->loop, &c->io, c->pidfd, on_pidfd);
        if (tide__io_start(&c->io, TIDE__IO_READ) == 0)
            return;
        close_quietly(&c->pidfd); /* the kernel would not watch it: poll instead */
    }
    c->delay = POLL_FIRST;
    if (tide__timer_start(&c->poll, c->delay) < 0)
        tide__log(c->loop, TIDE_LOG_ERROR, "no memory to poll child %d", c->pid);
}

int tide__child_signal(tide__child *c, int sig) {
    if (c->exited)
        return TIDE_EPROCESS_EXITED;
    /* The pid is still ours: an exited child stays a zombie until we reap it. */
    if (kill(c->pid, sig) < 0)
        return errno == ESRCH ? TIDE_EPROCESS_EXITED : tide_err_from_errno(errno);
    return 0;
}

tide_transport_t *tide__child_pipe(tide__child *c, int i, int fd, tide_protocol_t *protocol) {
    tide_transport_t *t = NULL;
    int rc = protocol ? tide__pipe_transport_new(c->loop, fd, i == 0, protocol, &t) : TIDE_ENOMEM;
    if (rc < 0) {
        /* Out of memory with the child running: it loses that pipe (closed now, so it
         * sees EOF or EPIPE) but is still watched and reaped. */
        close(fd);
        tide__log(c->loop, TIDE_LOG_ERROR, "child %d: pipe %d lost: %s", c->pid, i,
                  tide_strerror(rc));
        return NULL;
    }
    tide__transport_start(t, NULL, NULL);
    return t;
}

/* ---- pipe transports ---------------------------------------------------------------- */

static int connect_pipe(tide_loop_t *loop, int fd, bool writing, tide_protocol_t *protocol,
                        tide_transport_t **out) {
    if (loop == NULL || protocol == NULL || protocol->ops == NULL || fd < 0)
        return TIDE_EINVAL;
    tide_transport_t *t;
    int rc = tide__pipe_transport_new(loop, fd, writing, protocol, &t);
    if (rc < 0)
        return rc;
    tide__transport_start(t, NULL, NULL);
    if (out)
        *out = t;
    return 0;
}

int tide_loop_connect_read_pipe(tide_loop_t *loop, int fd, tide_protocol_t *protocol,
                                tide_transport_t **transport) {
    return connect_pipe(loop, fd, false, protocol, transport);
}

int tide_loop_connect_write_pipe(tide_loop_t *loop, int fd, tide_protocol_t *protocol,
                                 tide_transport_t **transport) {
    return connect_pipe(loop, fd, true, protocol, transport);
}

/* ---- the subprocess transport ------------------------------------------------------- */

typedef struct pipe_slot {
    tide_protocol_t proto; /* the adapter the pipe transport calls */
    tide_subprocess_t *owner;
    tide_transport_t *t; /* NULL: not a pipe, or ended */
    int fd;
} pipe_slot;

struct tide_subprocess {
    tide_loop_t *loop;
    tide_subprocess_protocol_t *protocol;
    tide__resource resource;
    tide__child child;
    pipe_slot pipes[3];
    int open_pipes;
    bool made;
    bool exit_seen; /* process_exited delivered */
    bool closing;
    bool lost;
    tide__call call; /* connection_made, process_exited, then connection_lost */
};

#define SP_OP(p, name)                                                                             \
    ((p)->ops->size >= offsetof(tide_subprocess_protocol_ops_t, name) + sizeof((p)->ops->name)     \
         ? (p)->ops->name                                                                          \
         : NULL)

static void finish(tide_subprocess_t *sp) {
    tide__loop_unregister(sp->loop, &sp->resource);
    free(sp);
}

/* The one deferred call walks the states in order, so each step runs on its own
 * turn and none inside a user's call. */
static void run_call(tide__call *call) {
    tide_subprocess_t *sp = TIDE__QUEUE_DATA(call, tide_subprocess_t, call);
    tide_subprocess_protocol_t *p = sp->protocol;
    if (!sp->made) {
        sp->made = true;
        void (*made)(tide_subprocess_protocol_t *, tide_subprocess_t *) = SP_OP(p, connection_made);
        if (made)
            made(p, sp);
        if (sp->child.exited || sp->open_pipes == 0)
            tide__loop_defer(sp->loop, &sp->call);
        return;
    }
    if (sp->child.exited && !sp->exit_seen) {
        sp->exit_seen = true;
        void (*exited)(tide_subprocess_protocol_t *) = SP_OP(p, process_exited);
        if (exited)
            exited(p);
    }
    if (sp->child.exited && sp->open_pipes == 0 && !sp->lost) {
        sp->lost = true;
        void (*lost)(tide_subprocess_protocol_t *, int) = SP_OP(p, connection_lost);
        if (lost)
            lost(p, 0);
        finish(sp);
    }
}

static void on_child_exit(tide__child *c) {
    tide_subprocess_t *sp = TIDE_CONTAINER_OF(c, tide_subprocess_t, child);
    tide__loop_defer(sp->loop, &sp->call);
}

static pipe_slot *slot_of(tide_protocol_t *p) { return TIDE_CONTAINER_OF(p, pipe_slot, proto); }

static void pipe_data(tide_protocol_t *self, const void *data, size_t len) {
    pipe_slot *s = slot_of(self);
    tide_subprocess_protocol_t *p = s->owner->protocol;
    void (*received)(tide_subprocess_protocol_t *, int, const void *, size_t) =
        SP_OP(p, pipe_data_received);
    if (received)
        received(p, s->fd, data, len);
}

static void pipe_lost(tide_protocol_t *self, int status) {
    pipe_slot *s = slot_of(self);
    tide_subprocess_t *sp = s->owner;
    s->t = NULL;
    sp->open_pipes--;
    void (*lost)(tide_subprocess_protocol_t *, int, int) =
        SP_OP(sp->protocol, pipe_connection_lost);
    if (lost)
        lost(sp->protocol, s->fd, status);
    if (sp->open_pipes == 0 && sp->child.exited)
        tide__loop_defer(sp->loop, &sp->call);
}

static void pipe_pause(tide_protocol_t *self) {
    tide_subprocess_protocol_t *p = slot_of(self)->owner->protocol;
    void (*pause)(tide_subprocess_protocol_t *) = SP_OP(p, pause_writing);
    if (pause)
        pause(p);
}

static void pipe_resume(tide_protocol_t *self) {
    tide_subprocess_protocol_t *p = slot_of(self)->owner->protocol;
    void (*resume)(tide_subprocess_protocol_t *) = SP_OP(p, resume_writing);
    if (resume)
        resume(p);
}

static const tide_protocol_ops_t pipe_adapter_ops = {
    .size = TIDE_PROTOCOL_OPS_SIZE,
    .data_received = pipe_data,
    .connection_lost = pipe_lost,
    .pause_writing = pipe_pause,
    .resume_writing = pipe_resume,
};

static void describe_subprocess(const tide__resource *res, char *buf, size_t size) {
    const tide_subprocess_t *sp = TIDE__QUEUE_DATA(res, tide_subprocess_t, resource);
    snprintf(buf, size, "subprocess %d (%s, %d pipes open)", sp->child.pid,
             sp->child.exited ? "exited" : "running", sp->open_pipes);
}

int tide_loop_subprocess_exec(tide_loop_t *loop, tide_subprocess_protocol_t *protocol,
                              const char *const *argv, const tide_subprocess_options_t *options,
                              tide_subprocess_t **transport) {
    if (loop == NULL || protocol == NULL || protocol->ops == NULL)
        return TIDE_EINVAL;
    tide_subprocess_t *sp = calloc(1, sizeof(*sp));
    if (sp == NULL)
        return TIDE_ENOMEM;
    int fds[3];
    int rc = tide__child_spawn(&sp->child, loop, argv, options, true, fds);
    if (rc < 0) {
        free(sp);
        return rc;
    }
    sp->loop = loop;
    sp->protocol = protocol;
    tide__call_init(&sp->call, run_call);
    tide__queue_init(&sp->resource.node);
    tide__loop_register(loop, &sp->resource, describe_subprocess);
    /* First on the ready queue: connection_made runs before any pipe's. */
    tide__loop_defer(loop, &sp->call);
    for (int i = 0; i < 3; i++) {
        pipe_slot *s = &sp->pipes[i];
        s->proto.ops = &pipe_adapter_ops;
        s->owner = sp;
        s->fd = i;
        if (fds[i] >= 0 && (s->t = tide__child_pipe(&sp->child, i, fds[i], &s->proto)) != NULL)
            sp->open_pipes++;
    }
    tide__child_watch(&sp->child, on_child_exit);
    if (transport)
        *transport = sp;
    return 0;
}

int tide_loop_subprocess_shell(tide_loop_t *loop, tide_subprocess_protocol_t *protocol,
                               const char *cmd, const tide_subprocess_options_t *options,
                               tide_subprocess_t **transport) {
    if (cmd == NULL)
        return TIDE_EINVAL;
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    return tide_loop_subprocess_exec(loop, protocol, argv, options, transport);
}

int tide_subprocess_get_pid(const tide_subprocess_t *t) { return t ? t->child.pid : TIDE_EINVAL; }

bool tide_subprocess_get_returncode(const tide_subprocess_t *t, int *returncode) {
    if (t == NULL || !t->child.exited)
        return false;
    if (returncode)
        *returncode = t->child.returncode;
    return true;
}

tide_transport_t *tide_subprocess_get_pipe_transport(const tide_subprocess_t *t, int fd) {
    if (t == NULL || fd < 0 || fd > 2)
        return NULL;
    return t->pipes[fd].t;
}

int tide_subprocess_send_signal(tide_subprocess_t *t, int sig) {
    return t ? tide__child_signal(&t->child, sig) : TIDE_EINVAL;
}

int tide_subprocess_terminate(tide_subprocess_t *t) {
    return tide_subprocess_send_signal(t, SIGTERM);
}

int tide_subprocess_kill(tide_subprocess_t *t) { return tide_subprocess_send_signal(t, SIGKILL); }

void tide_subprocess_close(tide_subprocess_t *t) {
    if (t == NULL || t->closing)
        return;
    t->closing = true;
    for (int i = 0; i < 3; i++)
        tide_transport_close(t->pipes[i].t);
    if (!t->child.exited)
        (void)tide__child_signal(&t->child, SIGKILL);
}
