/* asyncio_tcp_echo_client: the "TCP echo client using streams" of asyncio's
 * documentation, doing and printing exactly what it does:
 *
 *   async def tcp_echo_client(message):
 *       reader, writer = await asyncio.open_connection('127.0.0.1', 8888)
 *       print(f'Send: {message!r}')
 *       writer.write(message.encode())
 *       await writer.drain()
 *       data = await reader.read(100)
 *       print(f'Received: {data.decode()!r}')
 *       print('Close the connection')
 *       writer.close()
 *       await writer.wait_closed()
 *
 *   asyncio.run(tcp_echo_client('Hello World!'))
 *
 *   asyncio_tcp_echo_client [PORT]      (127.0.0.1, port 8888 by default)
 *
 * Its server is asyncio_tcp_echo_server (or any echo server). examples/echo_client.c
 * is tide's own, richer client (parts, half-close, TLS). The Python original is in
 * tests/examples/asyncio/. Single-threaded: the task runs on the loop's thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tide.h>

#include "pyrepr.h"

typedef struct args {
    uint16_t port;
    const char *message;
} args;

static int tcp_echo_client(void *arg) {
    const args *a = arg;
    tide_loop_t *loop = tide_task_get_loop(tide_task_current());
    tide_reader_t *reader;
    tide_writer_t *writer;
    int rc = tide_loop_open_connection_await(loop, "127.0.0.1", a->port, TIDE_STREAM_DEFAULT_LIMIT,
                                             NULL, &reader, &writer);
    if (rc != 0) {
        fprintf(stderr, "open_connection: %s\n", tide_strerror(rc));
        return 1;
    }
    printf("Send: ");
    py_print_repr(stdout, a->message, strlen(a->message), false);
    printf("\n");
    rc = tide_writer_write(writer, a->message, strlen(a->message));
    if (rc == 0)
        rc = tide_writer_drain_await(writer);

    char data[100];
    size_t n = 0;
    if (rc == 0)
        rc = tide_reader_read_await(reader, data, sizeof data, &n);
    if (rc == TIDE_EOF) /* read() at EOF is b'' in Python, not an error */
        rc = 0;
    if (rc == 0) {
        printf("Received: ");
        py_print_repr(stdout, data, n, false);
        printf("\n");
        printf("Close the connection\n");
    }
    tide_writer_close(writer);
    int closed = tide_writer_wait_closed_await(writer);
    if (rc != 0)
        fprintf(stderr, "%s\n", tide_strerror(rc));
    return rc == 0 && closed == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    args a = {.message = "Hello World!"};
    tide_loop_t *loop;
    int status = 1;
    if (py_example_start(argc, argv, 8888, &a.port, &loop) != 0)
        return 1;
    tide_loop_run_until_complete(loop, tcp_echo_client, &a, NULL, &status);
    return tide_loop_close(loop) == 0 ? status : 1;
}
