/* libev_echo: the echo server on raw libev (tide's own backend), written like the
 * epoll limit: an ev_io per client, one recv into a shared 256 KiB buffer, one send,
 * and only what the kernel does not take is kept (reading stops until it is flushed).
 *   libev_echo [PORT]
 * Single-threaded; exits on SIGTERM/SIGINT (default action). */
#define _GNU_SOURCE
#include <errno.h>
#include <ev.h>
#include <netinet/tcp.h>

#include "bench_common.h"

typedef struct client {
    ev_io io;
    unsigned char *pending;
    size_t plen, poff;
} client;

static unsigned char buf[256 * 1024];

static void drop(struct ev_loop *loop, client *c) {
    ev_io_stop(loop, &c->io);
    close(c->io.fd);
    free(c->pending);
    free(c);
}

static void switch_to(struct ev_loop *loop, client *c, int events) {
    ev_io_stop(loop, &c->io);
    ev_io_set(&c->io, c->io.fd, events);
    ev_io_start(loop, &c->io);
}

static void on_client(struct ev_loop *loop, ev_io *w, int revents) {
    client *c = (client *)w;
    if (c->pending != NULL) {
        ssize_t n = send(w->fd, c->pending + c->poff, c->plen - c->poff, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            drop(loop, c);
            return;
        }
        if (n > 0)
            c->poff += (size_t)n;
        if (c->poff == c->plen) {
            free(c->pending);
            c->pending = NULL;
            switch_to(loop, c, EV_READ);
        }
        return;
    }
    (void)revents;
    ssize_t n = recv(w->fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        drop(loop, c);
        return;
    }
    if (n < 0)
        return;
    size_t off = 0;
    while (off < (size_t)n) {
        ssize_t s = send(w->fd, buf + off, (size_t)n - off, MSG_NOSIGNAL);
        if (s < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN) {
                drop(loop, c);
                return;
            }
            break;
        }
        off += (size_t)s;
    }
    if (off < (size_t)n) {
        c->plen = (size_t)n - off;
        c->poff = 0;
        c->pending = malloc(c->plen);
        if (c->pending == NULL) {
            drop(loop, c);
            return;
        }
        memcpy(c->pending, buf + off, c->plen);
        switch_to(loop, c, EV_WRITE);
    }
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents) {
    (void)revents;
    int fd;
    while ((fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        client *c = calloc(1, sizeof *c);
        if (c == NULL) {
            close(fd);
            continue;
        }
        ev_io_init(&c->io, on_client, fd, EV_READ);
        ev_io_start(loop, &c->io);
    }
}

int main(int argc, char **argv) {
    struct ev_loop *loop = ev_default_loop(EVBACKEND_EPOLL);
    ev_io lio;
    ev_io_init(&lio, on_accept, bench_listen(argc > 1 ? atoi(argv[1]) : 0), EV_READ);
    ev_io_start(loop, &lio);
    ev_run(loop, 0);
    return 0;
}
