/* The socket system-call seam: every socket call made in transports/ goes through the
 * tide__sys table, so tests can swap one entry to inject EAGAIN, EINTR, short writes
 * or resets, and put the real calls back with tide__sys_reset().
 *
 * The table is process-global and not synchronised: tests replace entries while no
 * loop is running, and the library only reads them. The wrappers exist because
 * glibc declares several of these calls with transparent-union address arguments
 * under _GNU_SOURCE, which do not convert to plain function-pointer types. recv, send,
 * sendmsg and the pipes' read and writev have none, so their entries are the libc functions
 * themselves: one call less on every read and write. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "transports/transport_int.h"

static int sys_socket(int domain, int type, int protocol) { return socket(domain, type, protocol); }

static int sys_connect(int fd, const struct sockaddr *addr, socklen_t len) {
    return connect(fd, addr, len);
}

static int sys_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
    return accept4(fd, addr, len, flags);
}

static int sys_bind(int fd, const struct sockaddr *addr, socklen_t len) {
    return bind(fd, addr, len);
}

static int sys_listen(int fd, int backlog) { return listen(fd, backlog); }

static int sys_shutdown(int fd, int how) { return shutdown(fd, how); }

static int sys_close(int fd) { return close(fd); }

static int sys_setsockopt(int fd, int level, int name, const void *val, socklen_t len) {
    return setsockopt(fd, level, name, val, len);
}

static int sys_getsockopt(int fd, int level, int name, void *val, socklen_t *len) {
    return getsockopt(fd, level, name, val, len);
}

static int sys_getsockname(int fd, struct sockaddr *addr, socklen_t *len) {
    return getsockname(fd, addr, len);
}

static int sys_getpeername(int fd, struct sockaddr *addr, socklen_t *len) {
    return getpeername(fd, addr, len);
}

static ssize_t sys_sendto(int fd, const void *buf, size_t len, int flags,
                          const struct sockaddr *addr, socklen_t addrlen) {
    return sendto(fd, buf, len, flags, addr, addrlen);
}

static int sys_recvmmsg(int fd, struct mmsghdr *msgs, unsigned int n, int flags) {
    return recvmmsg(fd, msgs, n, flags, NULL);
}

static int sys_sendmmsg(int fd, struct mmsghdr *msgs, unsigned int n, int flags) {
    return sendmmsg(fd, msgs, n, flags);
}

/* One initialiser for both the live table and the pristine copy reset() restores. */
/* clang-format off */
#define REAL_CALLS                                   \
    {                                                \
        .socket = sys_socket,                        \
        .connect = sys_connect,                      \
        .accept4 = sys_accept4,                      \
        .bind = sys_bind,                            \
        .listen = sys_listen,                        \
        .recv = recv,                            \
        .send = send,                            \
        .sendmsg = sendmsg,                      \
        .read = read,                            \
        .writev = writev,                        \
        .shutdown = sys_shutdown,                    \
        .close = sys_close,                          \
        .setsockopt = sys_setsockopt,                \
        .getsockopt = sys_getsockopt,                \
        .getsockname = sys_getsockname,              \
        .getpeername = sys_getpeername,              \
        .sendto = sys_sendto,                        \
        .recvmsg = recvmsg,                          \
        .recvmmsg = sys_recvmmsg,                    \
        .sendmmsg = sys_sendmmsg,                    \
    }
/* clang-format on */

static const tide__sys_table real_calls = REAL_CALLS;

tide__sys_table tide__sys = REAL_CALLS;

void tide__sys_reset(void) { tide__sys = real_calls; }

static bool sigpipe_pending(void) {
    sigset_t pending;
    return sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
}

/* The signal is blocked on this thread for the call, and one the call raised (none
 * was pending before) is taken back with sigtimedwait before the mask is restored,
 * so the application never sees it and its own SIGPIPE disposition is left alone.
 * The call may raise it and still report bytes written: a pipe write that filled
 * part of its room before the reader went, and a sendfile whose later pieces met
 * the closed socket, return the count of what went out. */
ssize_t tide__sys_nosigpipe(ssize_t (*call)(void *arg), void *arg) {
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    bool was_pending = sigpipe_pending();
    ssize_t r = call(arg);
    int saved = errno;
    if (!was_pending && sigpipe_pending()) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return r;
}

int tide__fd_set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return tide_err_from_errno(errno);
    if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return tide_err_from_errno(errno);
    flags = fcntl(fd, F_GETFD);
    if (flags < 0)
        return tide_err_from_errno(errno);
    if (!(flags & FD_CLOEXEC) && fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
        return tide_err_from_errno(errno);
    return 0;
}
