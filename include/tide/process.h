/* Pipes and child processes: asyncio's connect_read_pipe / connect_write_pipe,
 * subprocess_exec / subprocess_shell with a subprocess protocol, and the stream form
 * (create_subprocess_exec / create_subprocess_shell) with wait and communicate.
 *
 * Children are reaped without global state: each child is watched through its own
 * pidfd (Linux 5.3 and later) on the loop that started it, so many loops in many
 * threads can each run children, and tide never installs a SIGCHLD handler. Where
 * pidfd_open is missing (older kernels, seccomp filters), the loop polls its own
 * children with waitpid(pid, WNOHANG) on a timer (every 1 ms at first, backing off to
 * 100 ms). Either way a child that another part of the program reaps first (a
 * waitpid(-1) elsewhere, SIGCHLD set to SIG_IGN) reports returncode 255, as asyncio.
 *
 * Every descriptor tide makes is close-on-exec; children get only their stdin,
 * stdout, stderr and the pass_fds asked for. */
#ifndef TIDE_PROCESS_H
#define TIDE_PROCESS_H

#include <stdbool.h>
#include <stddef.h>

#include "stream.h"
#include "transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- pipe transports -------------------------------------------------------------- */

/* Wraps the read end of a pipe, a FIFO or a character device (or a socket used as
 * one) in a transport for protocol: the descriptor is made non-blocking and
 * close-on-exec and is the transport's from a return of 0 (closed when the transport
 * ends). connection_made runs on a later iteration, then data_received,
 * eof_received (when the writer closes; returning true keeps nothing open but the
 * transport, which only closes when told) and connection_lost, as for a socket. The
 * transport refuses writes (TIDE_ENOTSUP). *transport may be NULL. Returns 0, or with
 * fd still the caller's: TIDE_EINVAL (a regular file, a directory), TIDE_EBADF,
 * TIDE_ENOMEM. */
TIDE_EXTERN int tide_loop_connect_read_pipe(tide_loop_t *loop, int fd, tide_protocol_t *protocol,
                                            tide_transport_t **transport);

/* Wraps the write end of a pipe, FIFO or character device, as connect_read_pipe.
 * Writes, watermarks and pause/resume_writing are those of a socket; write_eof
 * closes the pipe once the queue is flushed (a pipe has no half-close: the
 * transport is closing from then on, and later writes return TIDE_ECLOSED), and
 * connection_lost(0) follows. When the reader goes away, queued bytes are lost and
 * connection_lost gets TIDE_EPIPE (nothing queued: 0), and later writes return
 * TIDE_EPIPE; the process never receives SIGPIPE. Same returns as connect_read_pipe. */
TIDE_EXTERN int tide_loop_connect_write_pipe(tide_loop_t *loop, int fd, tide_protocol_t *protocol,
                                             tide_transport_t **transport);

/* ---- options of a child ------------------------------------------------------------ */

/* What one of a child's standard descriptors is connected to. */
typedef enum tide_stdio_mode {
    TIDE_STDIO_INHERIT = 0, /* the parent's own descriptor (asyncio's None) */
    TIDE_STDIO_PIPE,        /* a pipe to the parent (asyncio's PIPE) */
    TIDE_STDIO_DEVNULL,     /* /dev/null (asyncio's DEVNULL) */
    TIDE_STDIO_FD,          /* the descriptor in `fd`, which stays the caller's */
    TIDE_STDIO_STDOUT       /* stderr only: wherever stdout goes (asyncio's STDOUT) */
} tide_stdio_mode_t;

/* One standard descriptor of a child: its mode, and the descriptor for TIDE_STDIO_FD. */
typedef struct tide_stdio {
    tide_stdio_mode_t mode;
    int fd; /* TIDE_STDIO_FD only */
} tide_stdio_t;

/* Flags of tide_subprocess_options_t. */
#define TIDE_SUBPROCESS_NEW_PROCESS_GROUP 0x1u /* setpgid(0, 0): its own process group */
#define TIDE_SUBPROCESS_NEW_SESSION 0x2u       /* setsid(): a new session */

/* How to start a child. A zeroed struct inherits all three descriptors, the
 * environment and the working directory. Everything pointed to is only read during
 * the starting call. */
typedef struct tide_subprocess_options {
    tide_stdio_t stdio[3]; /* stdin, stdout, stderr */
    /* NULL-terminated "NAME=value" strings replacing the environment; NULL inherits.
     * PATH is looked up in the parent's environment either way. */
    char *const *env;
    const char *cwd; /* NULL: the parent's */
    unsigned flags;  /* TIDE_SUBPROCESS_* */
    /* Descriptors the child keeps under the same numbers (asyncio's pass_fds). */
    const int *pass_fds;
    size_t n_pass_fds;
} tide_subprocess_options_t;

/* Sets all three descriptors of o to mode and everything else to inherit. */
TIDE_EXTERN void tide_subprocess_options_init(tide_subprocess_options_t *o, tide_stdio_mode_t mode);

/* ---- the subprocess protocol and transport ----------------------------------------- */

/* A child process and its pipes, as asyncio's SubprocessTransport (made by
 * tide_loop_subprocess_exec/_shell, freed by tide after process_exited and every
 * pipe's pipe_connection_lost, once closed). */
typedef struct tide_subprocess tide_subprocess_t;
/* The base of a subprocess protocol: embed it first in your own struct. */
typedef struct tide_subprocess_protocol tide_subprocess_protocol_t;

/* asyncio's SubprocessProtocol. Any op may be NULL. Order: connection_made first;
 * pipe_data_received, pipe_connection_lost (once per pipe) and process_exited (once)
 * in the order they happen; connection_lost last, once the child is reaped and every
 * pipe has ended. Never called inside the caller's own call. */
typedef struct tide_subprocess_protocol_ops {
    size_t size; /* TIDE_SUBPROCESS_PROTOCOL_OPS_SIZE */
    /* The child runs; the transport is valid until connection_lost returns. */
    void (*connection_made)(tide_subprocess_protocol_t *self, tide_subprocess_t *transport);
    /* len > 0 bytes from the child's stdout (fd 1) or stderr (fd 2), lent for the call. */
    void (*pipe_data_received)(tide_subprocess_protocol_t *self, int fd, const void *data,
                               size_t len);
    /* One of the pipes ended: fd 0, 1 or 2, status 0 or a negative code (TIDE_EPIPE
     * for stdin when the child stopped reading while bytes were queued). */
    void (*pipe_connection_lost)(tide_subprocess_protocol_t *self, int fd, int status);
    /* The child exited (tide_subprocess_get_returncode now answers). */
    void (*process_exited)(tide_subprocess_protocol_t *self);
    /* Last call: the child is reaped and every pipe closed. status is 0. The transport is
     * freed after this returns; the protocol may be freed here. */
    void (*connection_lost)(tide_subprocess_protocol_t *self, int status);
    /* The stdin pipe's write buffer crossed its high / low watermark. */
    void (*pause_writing)(tide_subprocess_protocol_t *self);
    void (*resume_writing)(tide_subprocess_protocol_t *self);
} tide_subprocess_protocol_ops_t;

/* The value for tide_subprocess_protocol_ops_t's size field (the table's version). */
#define TIDE_SUBPROCESS_PROTOCOL_OPS_SIZE sizeof(tide_subprocess_protocol_ops_t)

/* The base the user's subprocess protocol embeds. */
struct tide_subprocess_protocol {
    const tide_subprocess_protocol_ops_t *ops;
};

/* Starts argv[0] (searched in PATH when it has no '/') with the arguments argv
 * (NULL-terminated). options NULL means asyncio's default here: all three
 * descriptors piped. The child is started before the call returns, so a failure to
 * start it is the call's error, with the child's errno: TIDE_ENOENT (no such
 * program), TIDE_EACCES, other exec failures as -errno (-ENOEXEC: a file the kernel
 * cannot run), TIDE_EAGAIN / TIDE_ENOMEM (no process could be made), TIDE_EMFILE (no descriptors
 * for the pipes), TIDE_EINVAL (empty argv, TIDE_STDIO_STDOUT for stdin or stdout, a bad mode). On
 * success *transport (may be NULL) is the transport, and connection_made follows on a later
 * iteration. The child is the loop's until reaped: tide_loop_close refuses before. */
TIDE_EXTERN int tide_loop_subprocess_exec(tide_loop_t *loop, tide_subprocess_protocol_t *protocol,
                                          const char *const *argv,
                                          const tide_subprocess_options_t *options,
                                          tide_subprocess_t **transport);

/* As tide_loop_subprocess_exec with argv {"/bin/sh", "-c", cmd}. */
TIDE_EXTERN int tide_loop_subprocess_shell(tide_loop_t *loop, tide_subprocess_protocol_t *protocol,
                                           const char *cmd,
                                           const tide_subprocess_options_t *options,
                                           tide_subprocess_t **transport);

/* The child's process id (valid until connection_lost returns). */
TIDE_EXTERN int tide_subprocess_get_pid(const tide_subprocess_t *t);

/* True once the child exited, with *returncode (may be NULL) set to its exit status,
 * or to minus the signal number that killed it (asyncio's returncode). False while it
 * runs (asyncio's None). */
TIDE_EXTERN bool tide_subprocess_get_returncode(const tide_subprocess_t *t, int *returncode);

/* The transport of the child's stdin (fd 0, a write pipe), stdout (1) or stderr (2;
 * read pipes), or NULL when that descriptor is not a pipe or its pipe has ended.
 * Write to stdin with tide_transport_write; tide_transport_write_eof closes it. */
TIDE_EXTERN tide_transport_t *tide_subprocess_get_pipe_transport(const tide_subprocess_t *t,
                                                                 int fd);

/* Sends signal sig to the child. Returns 0, TIDE_EPROCESS_EXITED once it has exited
 * (asyncio's ProcessLookupError; the process id may already be someone else's), or
 * kill()'s error (TIDE_EINVAL for a bad signal). */
TIDE_EXTERN int tide_subprocess_send_signal(tide_subprocess_t *t, int sig);

/* send_signal with SIGTERM / SIGKILL. */
TIDE_EXTERN int tide_subprocess_terminate(tide_subprocess_t *t);
TIDE_EXTERN int tide_subprocess_kill(tide_subprocess_t *t);

/* Closes every pipe (stdin after its queue is flushed) and kills the child with
 * SIGKILL if it still runs, as asyncio's close; connection_lost follows once it is
 * reaped. Idempotent; NULL is a no-op. */
TIDE_EXTERN void tide_subprocess_close(tide_subprocess_t *t);

/* ---- the stream form ------------------------------------------------------------- */

/* asyncio's asyncio.subprocess.Process: a child with a stream per pipe. */
typedef struct tide_process tide_process_t;

/* asyncio's create_subprocess_exec: starts the child as tide_loop_subprocess_exec,
 * with options NULL meaning all three inherited (asyncio's default here). Each piped
 * descriptor gets a stream whose reader has the given limit (0: 64 KiB). Same errors
 * as tide_loop_subprocess_exec. The process is the caller's: end it with
 * tide_process_close. */
TIDE_EXTERN int tide_loop_create_subprocess_exec(tide_loop_t *loop, const char *const *argv,
                                                 const tide_subprocess_options_t *options,
                                                 size_t limit, tide_process_t **process);

/* As tide_loop_create_subprocess_exec with argv {"/bin/sh", "-c", cmd}. */
TIDE_EXTERN int tide_loop_create_subprocess_shell(tide_loop_t *loop, const char *cmd,
                                                  const tide_subprocess_options_t *options,
                                                  size_t limit, tide_process_t **process);

/* The child's stdin writer, stdout and stderr readers: NULL for a descriptor that is
 * not a pipe. Usable at once (writes queue until the pipe is ready). They belong to
 * the process: never tide_writer_close / _abort them, tide_process_close releases
 * all three; tide_writer_write_eof on stdin closes that pipe (the child sees EOF). */
TIDE_EXTERN tide_writer_t *tide_process_stdin(const tide_process_t *p);
TIDE_EXTERN tide_reader_t *tide_process_stdout(const tide_process_t *p);
TIDE_EXTERN tide_reader_t *tide_process_stderr(const tide_process_t *p);

/* The child's process id. */
TIDE_EXTERN int tide_process_get_pid(const tide_process_t *p);

/* As tide_subprocess_get_returncode. */
TIDE_EXTERN bool tide_process_get_returncode(const tide_process_t *p, int *returncode);

/* As tide_subprocess_send_signal / terminate / kill. */
TIDE_EXTERN int tide_process_send_signal(tide_process_t *p, int sig);
TIDE_EXTERN int tide_process_terminate(tide_process_t *p);
TIDE_EXTERN int tide_process_kill(tide_process_t *p);

/* Completion of a wait: status 0 and the returncode, or a negative code. */
typedef void (*tide_process_wait_cb)(tide_process_t *p, int status, int returncode, void *arg);

/* Completion of a communicate: status 0, the returncode, and all of stdout and stderr
 * (NULL and 0 for a descriptor not piped), lent for the call; or a negative code. */
typedef void (*tide_process_communicate_cb)(tide_process_t *p, int status, int returncode,
                                            const void *out, size_t out_len, const void *err,
                                            size_t err_len, void *arg);

/* Waits until the child exits (asyncio's wait; pipes are not read, so a child that
 * fills a pipe nobody reads waits forever: use communicate). cb runs on a later
 * iteration, also when the child has exited already. Any number of waits may be
 * pending. Returns 0, TIDE_EINVAL, TIDE_ENOMEM. */
TIDE_EXTERN int tide_process_wait(tide_process_t *p, tide_process_wait_cb cb, void *arg);

/* The task form: returns 0 with *returncode set, TIDE_ECANCELLED / TIDE_ETIMEOUT
 * (the child is left running: kill it, or call wait again), TIDE_ENOTASK. */
TIDE_EXTERN int tide_process_wait_await(tide_process_t *p, int *returncode);

/* asyncio's communicate: writes the len bytes of input (copied; may be 0) to stdin and
 * closes it, reads stdout and stderr to their end at the same time, then waits for
 * the child, so no output size can deadlock it. A child that stops reading early is
 * not an error (the rest of the input is dropped, as asyncio). One communicate at a
 * time; reads of stdout/stderr must not be pending. Returns 0, TIDE_EBUSY (one is
 * pending), TIDE_EINVAL (input without a stdin pipe), TIDE_ENOMEM. */
TIDE_EXTERN int tide_process_communicate(tide_process_t *p, const void *input, size_t len,
                                         tide_process_communicate_cb cb, void *arg);

/* The task form. On 0, *out / *err (either pointer may be NULL) get what the child
 * wrote, NUL-terminated for convenience, to be released with tide_free, and *out_len /
 * *err_len their lengths. TIDE_ECANCELLED / TIDE_ETIMEOUT leave the child to the
 * caller (still running, stdin closed; the output collected so far is dropped, and
 * what the child writes from then on waits in the readers); TIDE_ENOTASK. */
TIDE_EXTERN int tide_process_communicate_await(tide_process_t *p, const void *input, size_t len,
                                               int *returncode, char **out, size_t *out_len,
                                               char **err, size_t *err_len);

/* Ends the process object: kills the child with SIGKILL if it still runs, closes the
 * pipes and their streams (pending reads and waits complete with TIDE_ECLOSED), and
 * frees everything once the child is reaped. Idempotent; NULL is a no-op. */
TIDE_EXTERN void tide_process_close(tide_process_t *p);

#ifdef __cplusplus
}
#endif
#endif
