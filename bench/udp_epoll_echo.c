/* udp_epoll_echo: the UDP limit. A hand-written echo server on raw epoll that reads up
 * to 64 datagrams per recvmmsg and sends their echoes back with one sendmmsg: the least
 * a correct event-driven UDP echo server can do per datagram. What the kernel does not
 * take at once is dropped (UDP's own rule; the load generator keeps few in flight).
 *
 *   udp_epoll_echo [PORT]   prints "listening on 127.0.0.1:PORT"; port 0 picks one.
 * Single-threaded; exits on SIGTERM/SIGINT (default action). */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/epoll.h>

#include "bench_common.h"

#define BATCH 64
#define SLOT 65536

static unsigned char mem[BATCH][SLOT];

int main(int argc, char **argv) {
    int fd = bench_udp_bind(argc > 1 ? atoi(argv[1]) : 0);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_storage names[BATCH];
    for (;;) {
        if (epoll_wait(ep, &ev, 1, -1) < 0 && errno != EINTR)
            return 1;
        for (;;) {
            for (int i = 0; i < BATCH; i++) {
                iov[i].iov_base = mem[i];
                iov[i].iov_len = SLOT;
                memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
                msgs[i].msg_hdr.msg_iov = &iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
                msgs[i].msg_hdr.msg_name = &names[i];
                msgs[i].msg_hdr.msg_namelen = sizeof names[i];
            }
            int n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
            if (n <= 0)
                break;
            for (int i = 0; i < n; i++)
                iov[i].iov_len = msgs[i].msg_len;
            sendmmsg(fd, msgs, (unsigned)n, MSG_DONTWAIT);
            if (n < BATCH)
                break; /* the socket is empty: no recvmmsg just to hear EAGAIN */
        }
    }
}
