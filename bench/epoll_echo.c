/* epoll_echo: the limit. A hand-written non-blocking echo server on raw epoll, the
 * least a correct event-driven echo server can do per round trip: level-triggered,
 * one recv into a shared 256 KiB buffer (as tide and asyncio read), one send; only
 * what the kernel does not take is kept, and reading from that client stops until it
 * is flushed (flow control).
 *
 *   epoll_echo [PORT]      prints "listening on 127.0.0.1:PORT"; port 0 picks one.
 * Single-threaded; exits on SIGTERM/SIGINT (default action). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_common.h"

typedef struct client {
    int fd;
    unsigned char *pending; /* bytes the kernel did not take yet */
    size_t plen, poff;
} client;

static unsigned char buf[256 * 1024];

static void drop(int ep, client *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->pending);
    free(c);
}

static void mod(int ep, client *c, uint32_t ev) {
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

/* Sends data; keeps what is left and switches the client to write-wait. */
static int echo(int ep, client *c, const unsigned char *data, size_t n) {
    size_t off = 0;
    while (off < n) {
        ssize_t w = send(c->fd, data + off, n - off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                return -1;
            break;
        }
        off += (size_t)w;
    }
    if (off < n) {
        c->pending = malloc(n - off);
        if (c->pending == NULL)
            return -1;
        memcpy(c->pending, data + off, n - off);
        c->plen = n - off;
        c->poff = 0;
        mod(ep, c, EPOLLOUT);
    }
    return 0;
}

static void on_client(int ep, client *c, uint32_t ev) {
    if (c->pending != NULL) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        ssize_t w = send(c->fd, c->pending + c->poff, c->plen - c->poff, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            drop(ep, c);
            return;
        }
        if (w > 0)
            c->poff += (size_t)w;
        if (c->poff == c->plen) {
            free(c->pending);
            c->pending = NULL;
            mod(ep, c, EPOLLIN);
        }
        return;
    }
    ssize_t n = recv(c->fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        drop(ep, c);
        return;
    }
    if (n > 0 && echo(ep, c, buf, (size_t)n) != 0)
        drop(ep, c);
}

int main(int argc, char **argv) {
    int lfd = bench_listen(argc > 1 ? atoi(argv[1]) : 0);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event le = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &le);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr != NULL) {
                on_client(ep, evs[i].data.ptr, evs[i].events);
                continue;
            }
            int fd;
            while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                client *c = calloc(1, sizeof *c);
                if (c == NULL) {
                    close(fd);
                    continue;
                }
                c->fd = fd;
                struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
            }
        }
    }
}
