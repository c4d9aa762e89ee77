/* asyncio_tcp_echo_server: the "TCP echo server using streams" of asyncio's
 * documentation, doing and printing exactly what it does:
 *
 *   async def handle_echo(reader, writer):
 *       data = await reader.read(100)
 *       message = data.decode()
 *       addr = writer.get_extra_info('peername')
 *       print(f"Received {message!r} from {addr!r}")
 *       print(f"Send: {message!r}")
 *       writer.write(data)
 *       await writer.drain()
 *       print("Close the connection")
 *       writer.close()
 *       await writer.wait_closed()
 *
 *   server = await asyncio.start_server(handle_echo, '127.0.0.1', 8888)
 *   addrs = ', '.join(str(sock.getsockname()) for sock in server.sockets)
 *   print(f'Serving on {addrs}')
 *   async with server:
 *       await server.serve_forever()
 *
 *   asyncio_tcp_echo_server [PORT]      (127.0.0.1, port 8888 by default)
 *
 * It serves forever, as the original; stop it with a signal. examples/echo_server.c is
 * tide's own, richer server. The Python original is in tests/examples/asyncio/.
 * Single-threaded: each connection's task runs on the loop's thread. */
#include <stdio.h>
#include <stdlib.h>

#include <tide.h>

#include "pyrepr.h"

static int handle_echo(void *arg) {
    tide_writer_t *writer = arg;
    tide_reader_t *reader = tide_writer_get_reader(writer);
    char data[100];
    size_t n = 0;
    int rc = tide_reader_read_await(reader, data, sizeof data, &n);
    if (rc == TIDE_EOF) /* read() at EOF is b'' in Python, not an error */
        rc = 0;
    if (rc == 0) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        printf("Received ");
        py_print_repr(stdout, data, n, false);
        printf(" from ");
        if (tide_transport_get_peername(tide_writer_get_transport(writer), (struct sockaddr *)&peer,
                                        &len) == 0)
            py_print_address(stdout, (struct sockaddr *)&peer);
        else
            printf("None");
        printf("\nSend: ");
        py_print_repr(stdout, data, n, false);
        printf("\n");
        rc = tide_writer_write(writer, data, n);
    }
    if (rc == 0)
        rc = tide_writer_drain_await(writer);
    if (rc == 0)
        printf("Close the connection\n");
    else
        fprintf(stderr, "handle_echo: %s\n", tide_strerror(rc));
    tide_writer_close(writer);
    tide_writer_wait_closed_await(writer);
    return 0;
}

static void on_client(tide_reader_t *reader, tide_writer_t *writer, void *arg) {
    (void)reader;
    if (tide_task_spawn(arg, handle_echo, writer, NULL, NULL) != 0)
        tide_writer_abort(writer);
}

/* print(f'Serving on {addrs}') */
static void print_serving(tide_server_t *server) {
    printf("Serving on ");
    for (size_t i = 0; i < tide_server_socket_count(server); i++) {
        struct sockaddr_storage addr;
        socklen_t len = sizeof addr;
        if (tide_server_get_sockname(server, i, (struct sockaddr *)&addr, &len) == 0) {
            printf("%s", i > 0 ? ", " : "");
            py_print_address(stdout, (struct sockaddr *)&addr);
        }
    }
    printf("\n");
}

int main(int argc, char **argv) {
    uint16_t port;
    tide_loop_t *loop;
    tide_server_t *server;
    int rc = py_example_start(argc, argv, 8888, &port, &loop);
    if (rc == 0)
        rc = tide_loop_start_server(loop, "127.0.0.1", port, TIDE_STREAM_DEFAULT_LIMIT, NULL,
                                    on_client, loop, &server);
    if (rc == 0)
        print_serving(server);
    return py_serve_forever(loop, rc, "start_server");
}
