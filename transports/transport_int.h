/* transports/ private interface: the transport base every kind shares (socket,
 * memory, and later TLS), the socket system-call seam, and the glue between
 * servers, connects and socket transports.
 *
 * The base (transport.c) owns the contract with the protocol: state checks of the
 * public calls, the watermarks and pause/resume_writing, deferred connection_made and
 * connection_lost, and freeing. A kind (socket.c, memory.c) implements tide__transport_ops
 * and calls the tide__transport_* helpers below; it never calls protocol ops itself. */
#ifndef TIDE_TRANSPORT_INT_H
#define TIDE_TRANSPORT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "core/core_int.h"

#define TIDE__DEFAULT_HIGH_WATER (64 * 1024)
#define TIDE__READ_MAX (256 * 1024)

typedef struct tide__transport_ops {
    const char *kind; /* "tcp", "unix", "memory", ... */
    /* Called only when the base accepted the write (open, not after write_eof, total > 0,
     * within the cap). Sends or queues every byte; returns TIDE__WRITE_SENT when every
     * byte went out and nothing is queued (the base then skips the watermark check), 0
     * when accepted otherwise, or TIDE_ENOMEM with nothing accepted. A send error is not
     * returned: the kind calls tide__transport_fatal(), as it does when part was sent
     * and the rest cannot be queued. */
    int (*write)(tide_transport_t *t, const tide_iovec_t *bufs, size_t n, size_t total);
    /* Shut down the sending side once the queue is empty. NULL: not supported. */
    int (*write_eof)(tide_transport_t *t);
    /* The base set closing and stopped reading; flush the queue, then call
     * tide__transport_lost(t, 0) (which defers connection_lost). */
    void (*close)(tide_transport_t *t);
    /* Drop the queue and stop all I/O now; the base schedules connection_lost. The
     * descriptor may be closed here or in release. */
    void (*abort)(tide_transport_t *t);
    /* Start / stop watching for input. */
    void (*pause_reading)(tide_transport_t *t);
    void (*resume_reading)(tide_transport_t *t);
    size_t (*get_write_buffer_size)(const tide_transport_t *t);
    int (*get_peername)(const tide_transport_t *t, struct sockaddr *addr, socklen_t *len);
    int (*get_sockname)(const tide_transport_t *t, struct sockaddr *addr, socklen_t *len);
    int (*get_fd)(const tide_transport_t *t);
    /* One line for loop-close reports. NULL: the kind's name. */
    void (*describe)(const tide_transport_t *t, char *buf, size_t size);
    /* The watermarks were just changed (before the base re-checks pause). NULL: nothing
     * to do. A layered transport passes them on to the transport beneath. */
    void (*limits_changed)(tide_transport_t *t);
    /* After connection_lost returned: stop watchers, close the descriptor, free the
     * kind's memory including t itself. */
    void (*release)(tide_transport_t *t);
} tide__transport_ops;

/* ops->write: every byte is on its way and the queue is empty. */
#define TIDE__WRITE_SENT 1

/* State bits of the base. */
enum {
    TIDE__T_MADE = 1u << 0,         /* connection_made has run */
    TIDE__T_CLOSING = 1u << 1,      /* close/abort/fatal/EOF-close started */
    TIDE__T_ABORTED = 1u << 2,      /* the queue was discarded */
    TIDE__T_EOF_WRITTEN = 1u << 3,  /* write_eof requested */
    TIDE__T_READ_PAUSED = 1u << 4,  /* pause_reading by the user */
    TIDE__T_WRITE_PAUSED = 1u << 5, /* pause_writing was delivered */
    TIDE__T_EOF_RECEIVED = 1u << 6, /* eof_received was delivered */
    TIDE__T_LOST = 1u << 7,         /* connection_lost scheduled */
    TIDE__T_READ_STOPPED = 1u << 8, /* no more reading: EOF seen or closing */
    TIDE__T_SERVER_SIDE = 1u << 9,  /* accepted by a server or connect_accepted_socket */
    TIDE__T_HANDSHAKING = 1u << 10, /* a server's TLS client still in its handshake */
    TIDE__T_BUFFERED = 1u << 11,    /* rx_ops has get_buffer (a buffered protocol) */
    TIDE__T_SENDING_FILE = 1u << 12 /* a sendfile runs: the user's writes are refused */
};

struct tide_transport {
    const tide__transport_ops *ops;
    tide_loop_t *loop;
    tide_protocol_t *protocol;
    /* The ops table the protocol's kind (TIDE__T_BUFFERED) was resolved from: every
     * read compares it with protocol->ops instead of asking the table again. */
    const tide_protocol_ops_t *rx_ops;
    tide__resource resource;
    unsigned state;
    int error;       /* first fatal error; writes return it once set */
    int lost_status; /* what connection_lost receives */
    size_t high_water;
    size_t low_water;
    size_t max_buffer; /* 0: no cap */
    tide__call deferred; /* connection_made, then connection_lost */
    /* Called right after connection_made returned (the creator's completion). */
    void (*made_cb)(tide_transport_t *t, void *arg);
    void *made_arg;
    /* Set by a server for its clients. */
    tide_server_t *server;
    tide__queue server_node;
};

/* Initialises the base: registers it as a loop resource (which keeps the loop
 * running and makes tide_loop_close refuse) and sets the default watermarks. Does not
 * call the protocol. */
void tide__transport_init(tide_transport_t *t, tide_loop_t *loop, const tide__transport_ops *ops,
                          tide_protocol_t *protocol);

/* Frees a transport that was never started (its protocol was never called): the
 * kind's release closes the descriptor. */
void tide__transport_discard(tide_transport_t *t);

/* Defers connection_made; once it returns, reading starts (unless the protocol paused
 * it) and made_cb(t, made_arg) runs. */
void tide__transport_start(tide_transport_t *t, void (*made_cb)(tide_transport_t *, void *),
                           void *made_arg);

/* The connection failed with err (negative): the first error is stored, the transport
 * stops all I/O through ops->abort, and connection_lost(err) is deferred. Idempotent. */
void tide__transport_fatal(tide_transport_t *t, int err);

/* The kind finished a graceful close (queue flushed): defers connection_lost(status). */
void tide__transport_lost(tide_transport_t *t, int status);

/* True when the protocol should receive input now: made, not paused, not closing,
 * not after EOF. */
static inline bool tide__transport_wants_read(const tide_transport_t *t) {
    return (t->state & (TIDE__T_MADE | TIDE__T_READ_PAUSED | TIDE__T_CLOSING |
                        TIDE__T_READ_STOPPED)) == TIDE__T_MADE;
}

/* Resolves the kind of the protocol's current ops table into rx_ops and
 * TIDE__T_BUFFERED. */
void tide__transport_resolve(tide_transport_t *t);

/* Input from the kind: deliver bytes (data_received), or ask the protocol for memory
 * (buffered protocols). The base checks the state; the kind then reads. These run
 * on every read, so they are inline: the protocol's kind is resolved once per ops
 * table, and with debug off the callback's timing is one test. */
static inline bool tide__transport_is_buffered(tide_transport_t *t) {
    if (TIDE__UNLIKELY(t->protocol->ops != t->rx_ops))
        tide__transport_resolve(t);
    return (t->state & TIDE__T_BUFFERED) != 0;
}

static inline void tide__transport_data(tide_transport_t *t, const void *data, size_t len) {
    if (len == 0 || !tide__transport_wants_read(t))
        return;
    void (*received)(tide_protocol_t *, const void *, size_t) =
        TIDE_PROTOCOL_OP(t->protocol, data_received);
    if (received) {
        double start = tide__loop_debug_enter(t->loop);
        received(t->protocol, data, len);
        tide__loop_debug_leave(t->loop, start, "protocol data_received");
    }
}

/* Fails the transport with TIDE_ENOBUFS after an empty get_buffer. */
void tide__transport_no_buffer(tide_transport_t *t);

/* Returns the protocol's buffer or NULL after failing the transport (TIDE_ENOBUFS).
 * Only for a buffered protocol (tide__transport_is_buffered). */
static inline void *tide__transport_get_buffer(tide_transport_t *t, size_t sizehint,
                                               size_t *len) {
    size_t n = 0;
    void *buf = t->protocol->ops->get_buffer(t->protocol, sizehint, &n);
    if (TIDE__UNLIKELY(buf == NULL || n == 0)) {
        tide__transport_no_buffer(t);
        *len = 0;
        return NULL;
    }
    *len = n;
    return buf;
}

static inline void tide__transport_buffer_updated(tide_transport_t *t, size_t nbytes) {
    if (nbytes == 0 || !tide__transport_wants_read(t))
        return;
    void (*updated)(tide_protocol_t *, size_t) = TIDE_PROTOCOL_OP(t->protocol, buffer_updated);
    if (updated) {
        double start = tide__loop_debug_enter(t->loop);
        updated(t->protocol, nbytes);
        tide__loop_debug_leave(t->loop, start, "protocol buffer_updated");
    }
}

/* The peer sent EOF: eof_received once; when it returns false the transport closes,
 * when true only reading stops. */
void tide__transport_eof(tide_transport_t *t);

/* After the kind's queue grew / shrank: pause_writing when above high, resume_writing
 * when at or below low (only if paused). */
void tide__transport_check_pause(tide_transport_t *t);
void tide__transport_check_resume(tide_transport_t *t);

static inline bool tide__transport_closing(const tide_transport_t *t) {
    return (t->state & TIDE__T_CLOSING) != 0;
}

/* asyncio's set_write_buffer_limits rules (-1: a mark not given; the other derives
 * from it; both missing: the defaults). Sets both marks, or returns TIDE_EINVAL unless
 * high >= low >= 0 and leaves them. Shared by stream and datagram transports. */
int tide__watermarks(long high, long low, size_t *high_out, size_t *low_out);

/* Sums an iovec array; returns false on overflow or a piece with no base but a length. */
bool tide__iov_total(const tide_iovec_t *bufs, size_t n, size_t *total);

/* ---- the socket system-call seam ------------------------------------------------
 * Every socket system call in transports/ goes through this table, so tests can
 * replace an entry to inject EAGAIN, EINTR, short writes, ECONNRESET or EMFILE.
 * Sends use MSG_NOSIGNAL: SIGPIPE never reaches the process. */
typedef struct tide__sys_table {
    int (*socket)(int domain, int type, int protocol);
    int (*connect)(int fd, const struct sockaddr *addr, socklen_t len);
    int (*accept4)(int fd, struct sockaddr *addr, socklen_t *len, int flags);
    int (*bind)(int fd, const struct sockaddr *addr, socklen_t len);
    int (*listen)(int fd, int backlog);
    ssize_t (*recv)(int fd, void *buf, size_t len, int flags);
    ssize_t (*send)(int fd, const void *buf, size_t len, int flags);
    ssize_t (*sendmsg)(int fd, const struct msghdr *msg, int flags);
    /* Pipe transports (socket.c with TIDE__SOCK_PIPE_*): a pipe has no recv or send. */
    ssize_t (*read)(int fd, void *buf, size_t len);
    ssize_t (*writev)(int fd, const struct iovec *iov, int cnt);
    int (*shutdown)(int fd, int how);
    int (*close)(int fd);
    int (*setsockopt)(int fd, int level, int name, const void *val, socklen_t len);
    int (*getsockopt)(int fd, int level, int name, void *val, socklen_t *len);
    int (*getsockname)(int fd, struct sockaddr *addr, socklen_t *len);
    int (*getpeername)(int fd, struct sockaddr *addr, socklen_t *len);
    /* Datagram endpoints (datagram.c). */
    ssize_t (*sendto)(int fd, const void *buf, size_t len, int flags, const struct sockaddr *addr,
                      socklen_t addrlen);
    ssize_t (*recvmsg)(int fd, struct msghdr *msg, int flags);
    int (*recvmmsg)(int fd, struct mmsghdr *msgs, unsigned int n, int flags);
    int (*sendmmsg)(int fd, struct mmsghdr *msgs, unsigned int n, int flags);
} tide__sys_table;

extern tide__sys_table tide__sys;

/* Runs call(arg), a write to a pipe or a sendfile, which have no MSG_NOSIGNAL, so
 * that a SIGPIPE it raises never reaches the process: the call's EPIPE is all that
 * is left of it. Returns call's result with its errno. */
ssize_t tide__sys_nosigpipe(ssize_t (*call)(void *arg), void *arg);
/* Restores the real system calls. */
void tide__sys_reset(void);

/* ---- socket transports, servers and connects ------------------------------------ */

/* Wraps a connected, non-blocking stream socket (TCP_NODELAY is set for TCP). Does
 * not start it: the caller sets made_cb via tide__transport_start(). On failure the
 * caller still owns fd. Returns 0, TIDE_ENOMEM, or the error of getsockname (for
 * example TIDE_ENOTSOCK). */
int tide__socket_transport_new(tide_loop_t *loop, int fd, tide_protocol_t *protocol,
                               tide_transport_t **out);

/* Wraps one end of a pipe, a FIFO, a character device or a socket used as a pipe
 * (socket.c, with read/writev): made non-blocking and close-on-exec, owned by the
 * transport on success. Not started, as tide__socket_transport_new. Returns 0,
 * TIDE_EINVAL for any other kind of descriptor, TIDE_ENOMEM, or fstat/fcntl's
 * error (TIDE_EBADF). */
int tide__pipe_transport_new(tide_loop_t *loop, int fd, bool writing, tide_protocol_t *protocol,
                             tide_transport_t **out);

/* Fills *sun and *len for a Unix socket path ('@' prefix: abstract namespace).
 * Returns 0, TIDE_EINVAL (empty path) or TIDE_ENAMETOOLONG. */
struct sockaddr_un;
int tide__unix_address(const char *path, struct sockaddr_un *sun, socklen_t *len);

/* Makes fd non-blocking and close-on-exec. Returns 0 or a tide code. */
int tide__fd_set_nonblocking(int fd);

/* ---- child processes (process.c) --------------------------------------------------- */

/* One child: started by tide__child_spawn, watched on its loop through a pidfd (or a
 * waitpid poll where pidfd_open is missing), reaped exactly once. Shared by the
 * subprocess transport and the stream form (streams/subprocess.c). */
typedef struct tide__child tide__child;
struct tide__child {
    tide_loop_t *loop;
    int pid;
    int pidfd; /* -1: the polling fallback */
    tide__io io;
    tide__timer poll;
    double delay;
    bool watching;
    bool exited;
    int returncode; /* exit status, or minus the signal */
    void (*on_exit)(tide__child *c);
};

/* Starts argv with options (NULL: every descriptor piped when pipe_default, else
 * inherited). fds[i] receives the parent's end of each piped descriptor, -1 for the
 * others; they are close-on-exec, blocking, and the caller's. Returns 0 or the
 * child's / the system's error; nothing is left open on failure. */
struct tide_subprocess_options;
int tide__child_spawn(tide__child *c, tide_loop_t *loop, const char *const *argv,
                      const struct tide_subprocess_options *options, bool pipe_default, int fds[3]);

/* Makes and starts the pipe transport of the child's descriptor i over fd (the
 * parent's end from tide__child_spawn) for protocol. On failure (or a NULL protocol:
 * out of memory) fd is closed, so the child sees EOF or EPIPE there, the loss is
 * logged, and NULL is returned: the child still runs and is still reaped. */
tide_transport_t *tide__child_pipe(tide__child *c, int i, int fd, tide_protocol_t *protocol);

/* False makes tide__child_spawn skip pidfd_open, as on a kernel without it, so tests
 * can run the polling fallback. Process-global, set while no loop runs. */
extern bool tide__child_use_pidfd;

/* Starts watching: on_exit(c) runs from the loop once the child is reaped. */
void tide__child_watch(tide__child *c, void (*on_exit)(tide__child *c));

/* kill(pid, sig) while the child is not reaped, else TIDE_EPROCESS_EXITED. */
int tide__child_signal(tide__child *c, int sig);

/* ---- datagram endpoints (datagram.c; their task forms in datagram_await.c) -------- */

/* A task waiting in sendto_await for the queue to drain. */
typedef struct tide__dgram_drain {
    tide__waiter w; /* first: on_abandon gets it, and unlinks node */
    tide__queue node;
} tide__dgram_drain;

/* True while pause_writing is in force. */
bool tide__datagram_write_paused(const tide_datagram_t *ep);

/* Queues d until the endpoint resumes writing (woken with 0) or is lost (woken with
 * TIDE_ECLOSED). */
void tide__datagram_drain_add(tide_datagram_t *ep, tide__dgram_drain *d);

/* An endpoint of another kind than a socket (the memory pair, datagram_memory.c). The
 * endpoint does everything else: the protocol contract, the queue, watermarks. */
typedef struct tide__dgram_kind {
    /* Sends one datagram to the kind's peer: 0, TIDE_EAGAIN (no room now: the endpoint
     * queues it, and the kind calls tide__datagram_writable once there is room), or a
     * negative errno code for this datagram. */
    int (*send)(tide_datagram_t *ep, const void *data, size_t len);
    /* Reading may start (connection_made returned, or resume_reading). */
    void (*start_reading)(tide_datagram_t *ep);
    /* The endpoint is being freed: free the kind's data. */
    void (*release)(tide_datagram_t *ep);
} tide__dgram_kind;

/* Makes an endpoint of a kind, connected to peer, named self (len bytes each); it is
 * started, with its protocol, by tide__datagram_start. Returns 0 or TIDE_ENOMEM. */
int tide__datagram_new_kind(tide_loop_t *loop, const tide__dgram_kind *kind, void *data,
                            const struct sockaddr *self, const struct sockaddr *peer, socklen_t len,
                            size_t max_dgram, tide_datagram_t **out);
/* Frees an endpoint that was never started (its kind's release runs). */
void tide__datagram_discard(tide_datagram_t *ep);
/* Defers connection_made on protocol. */
void tide__datagram_start(tide_datagram_t *ep, tide_datagram_protocol_t *protocol);
void *tide__datagram_kind_data(const tide_datagram_t *ep);
/* True while the protocol takes datagrams (made, not paused, not closing). */
bool tide__datagram_reading(const tide_datagram_t *ep);
/* Delivers one datagram from the kind (lent for the call), if reading. False when it
 * was not taken (not reading, or get_buffer paused reading first): the kind keeps it. */
bool tide__datagram_receive(tide_datagram_t *ep, const void *data, size_t len,
                            const struct sockaddr *from, socklen_t fromlen);
/* The kind has room again: the endpoint sends what it queued. */
void tide__datagram_writable(tide_datagram_t *ep);

/* Server bookkeeping, called by the transport base: a client leaves after its
 * connection_lost returned. */
void tide__server_detach(tide_transport_t *t);

/* A transport layered over a server's client (TLS) takes the client's place in the
 * server's list: the server counts, closes and waits for the transport whose
 * connection_lost the application sees, not the one beneath it, which may end first.
 * No-op when `from` belongs to no server. */
void tide__server_hand_over(tide_transport_t *from, tide_transport_t *to);

#endif
