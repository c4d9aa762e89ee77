/* udp_uv_echo: a UDP echo server on libuv, as its documentation suggests for a busy
 * socket: UV_UDP_RECVMMSG (recvmmsg into chunks of one large buffer) and
 * uv_udp_try_send for each echo.
 *
 *   udp_uv_echo [PORT]   prints "listening on 127.0.0.1:PORT"; port 0 picks one. */
#include <uv.h>

#include "bench_common.h"

#define CHUNKS 20 /* libuv reads at most 20 datagrams per recvmmsg */
static char mem[CHUNKS * 65536];

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    (void)h;
    (void)hint;
    *buf = uv_buf_init(mem, sizeof mem);
}

static void on_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *addr,
                    unsigned flags) {
    (void)flags;
    if (n < 0 || addr == NULL)
        return; /* an error, or the end of an mmsg batch (the buffer is static) */
    uv_buf_t out = uv_buf_init(buf->base, (unsigned)n);
    uv_udp_try_send(h, &out, 1, addr);
}

int main(int argc, char **argv) {
    int fd = bench_udp_bind(argc > 1 ? atoi(argv[1]) : 0);
    uv_loop_t *loop = uv_default_loop();
    uv_udp_t udp;
    uv_udp_init_ex(loop, &udp, AF_UNSPEC | UV_UDP_RECVMMSG); /* no socket of its own */
    if (uv_udp_open(&udp, fd) != 0)
        return 1;
    uv_udp_recv_start(&udp, on_alloc, on_recv);
    return uv_run(loop, UV_RUN_DEFAULT);
}
