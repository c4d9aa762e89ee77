/* event_echo: the echo server on libevent 2.1 bufferevents, as its manual shows it:
 * the read callback moves the input buffer to the output (evbuffer_add_buffer, no
 * copy); reading is disabled while more than 1 MiB waits to be written and enabled
 * again once the output drained (write low-water mark 0).
 *   event_echo [PORT]
 * Single-threaded; exits on SIGTERM/SIGINT (default action). */
#define _GNU_SOURCE
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/tcp.h>

#include "bench_common.h"

#define HIGH (1024 * 1024)

static void on_event(struct bufferevent *bev, short what, void *arg) {
    (void)arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        bufferevent_free(bev);
}

static void on_read(struct bufferevent *bev, void *arg) {
    (void)arg;
    struct evbuffer *out = bufferevent_get_output(bev);
    evbuffer_add_buffer(out, bufferevent_get_input(bev));
    if (evbuffer_get_length(out) > HIGH)
        bufferevent_disable(bev, EV_READ);
}

static void on_write(struct bufferevent *bev, void *arg) {
    (void)arg;
    bufferevent_enable(bev, EV_READ);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *a, int len,
                      void *arg) {
    (void)l;
    (void)a;
    (void)len;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct bufferevent *bev = bufferevent_socket_new(arg, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(bev, on_read, on_write, on_event, NULL);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

int main(int argc, char **argv) {
    struct event_base *base = event_base_new();
    int fd = bench_listen(argc > 1 ? atoi(argv[1]) : 0);
    struct evconnlistener *l =
        evconnlistener_new(base, on_accept, base, LEV_OPT_CLOSE_ON_FREE, -1, fd);
    if (l == NULL)
        return 1;
    return event_base_dispatch(base);
}
