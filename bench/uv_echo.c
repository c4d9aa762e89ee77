/* uv_echo: the echo server on libuv as its users write it: uv_read_start with an
 * alloc_cb lending one shared 256 KiB buffer, uv_try_write first and a uv_write of a
 * copy for what the kernel did not take; reading stops while such a write is pending
 * (flow control).
 *   uv_echo [PORT]
 * Single-threaded; exits on SIGTERM/SIGINT (default action). */
#define _GNU_SOURCE
#include <stdlib.h>
#include <uv.h>

#include "bench_common.h"

typedef struct wreq {
    uv_write_t req;
    uv_buf_t buf;
} wreq;

static char buf[256 * 1024];

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
    (void)h;
    (void)hint;
    *b = uv_buf_init(buf, sizeof buf);
}

static void on_closed(uv_handle_t *h) {
    free(h);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

static void on_written(uv_write_t *req, int status) {
    wreq *w = (wreq *)req;
    uv_stream_t *s = req->handle;
    free(w->buf.base);
    free(w);
    if (status != 0) {
        if (!uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, on_closed);
        return;
    }
    if (!uv_is_closing((uv_handle_t *)s))
        uv_read_start(s, on_alloc, on_read);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
    if (n < 0) {
        uv_close((uv_handle_t *)s, on_closed);
        return;
    }
    if (n == 0)
        return;
    uv_buf_t out = uv_buf_init(b->base, (unsigned)n);
    int sent = uv_try_write(s, &out, 1);
    if (sent == UV_EAGAIN)
        sent = 0;
    if (sent < 0) {
        uv_close((uv_handle_t *)s, on_closed);
        return;
    }
    if (sent == n)
        return;
    wreq *w = malloc(sizeof *w);
    w->buf = uv_buf_init(malloc((size_t)n - (size_t)sent), (unsigned)(n - sent));
    memcpy(w->buf.base, b->base + sent, (size_t)(n - sent));
    uv_read_stop(s);
    uv_write(&w->req, s, &w->buf, 1, on_written);
}

static void on_connection(uv_stream_t *server, int status) {
    if (status != 0)
        return;
    uv_tcp_t *c = malloc(sizeof *c);
    uv_tcp_init(server->loop, c);
    if (uv_accept(server, (uv_stream_t *)c) != 0) {
        uv_close((uv_handle_t *)c, on_closed);
        return;
    }
    uv_tcp_nodelay(c, 1);
    uv_read_start((uv_stream_t *)c, on_alloc, on_read);
}

int main(int argc, char **argv) {
    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t server;
    uv_tcp_init(loop, &server);
    uv_tcp_open(&server, bench_listen(argc > 1 ? atoi(argv[1]) : 0));
    uv_listen((uv_stream_t *)&server, SOMAXCONN, on_connection);
    return uv_run(loop, UV_RUN_DEFAULT);
}
