/* io_count: an LD_PRELOAD library counting a server's send and recv calls, to tell
 * whether two servers spend the same system calls per round trip (they do not have to:
 * a server that reads before the whole message arrived echoes it in two pieces).
 *
 *   IO_COUNT_FILE=/tmp/x LD_PRELOAD=io_count.so server ...
 * The file holds int64 counters (native byte order) at these indexes: 0 send calls,
 * 1 sends that returned EAGAIN, 2 partial sends, 3 sendmsg calls, 4 recv calls that
 * returned data, 5 bytes received, 6 recv calls that returned 0 or an error. Only
 * calls through libc's send/recv/sendmsg are seen (tide, the C peers; not libuv,
 * which uses write/writev/read). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

static int64_t dummy[8];
static int64_t *ctr = dummy;

__attribute__((constructor)) static void setup(void) {
    const char *path = getenv("IO_COUNT_FILE");
    if (path == NULL)
        return;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, 4096) != 0)
        return;
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p != MAP_FAILED)
        ctr = p;
}

static void add(int i, int64_t v) {
    __atomic_add_fetch(&ctr[i], v, __ATOMIC_RELAXED);
}

ssize_t send(int fd, const void *buf, size_t n, int flags) {
    static ssize_t (*real)(int, const void *, size_t, int);
    if (real == NULL)
        real = (ssize_t (*)(int, const void *, size_t, int))dlsym(RTLD_NEXT, "send");
    ssize_t r = real(fd, buf, n, flags);
    int saved = errno;
    add(0, 1);
    if (r < 0 && (saved == EAGAIN || saved == EWOULDBLOCK))
        add(1, 1);
    else if (r >= 0 && (size_t)r < n)
        add(2, 1);
    errno = saved;
    return r;
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
    static ssize_t (*real)(int, const struct msghdr *, int);
    if (real == NULL)
        real = (ssize_t (*)(int, const struct msghdr *, int))dlsym(RTLD_NEXT, "sendmsg");
    add(3, 1);
    return real(fd, msg, flags);
}

ssize_t recv(int fd, void *buf, size_t n, int flags) {
    static ssize_t (*real)(int, void *, size_t, int);
    if (real == NULL)
        real = (ssize_t (*)(int, void *, size_t, int))dlsym(RTLD_NEXT, "recv");
    ssize_t r = real(fd, buf, n, flags);
    int saved = errno;
    if (r > 0) {
        add(4, 1);
        add(5, r);
    } else {
        add(6, 1);
    }
    errno = saved;
    return r;
}
