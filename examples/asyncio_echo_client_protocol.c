/* asyncio_echo_client_protocol: the "TCP Echo Client" of asyncio's documentation
 * (Transports and Protocols), protocol form, doing and printing exactly what it does:
 *
 *   class EchoClientProtocol(asyncio.Protocol):
 *       def __init__(self, message, on_con_lost):
 *           self.message = message
 *           self.on_con_lost = on_con_lost
 *       def connection_made(self, transport):
 *           transport.write(self.message.encode())
 *           print('Data sent: {!r}'.format(self.message))
 *       def data_received(self, data):
 *           print('Data received: {!r}'.format(data.decode()))
 *       def connection_lost(self, exc):
 *           print('The server closed the connection')
 *           self.on_con_lost.set_result(True)
 *
 *   on_con_lost = loop.create_future()
 *   message = 'Hello World!'
 *   transport, protocol = await loop.create_connection(
 *       lambda: EchoClientProtocol(message, on_con_lost), '127.0.0.1', 8888)
 *   try:
 *       await on_con_lost
 *   finally:
 *       transport.close()
 *
 *   asyncio_echo_client_protocol [PORT]      (127.0.0.1, port 8888 by default)
 *
 * Like the original it waits until the server closes the connection, so its server is
 * asyncio_echo_server_protocol (which closes after one echo), not echo_server (which
 * echoes until the client leaves, and with which this client would wait forever).
 * examples/echo_client_protocol.c is tide's own, stricter client for echo_server. The
 * Python original is in tests/examples/asyncio/. Single-threaded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tide.h>

#include "pyrepr.h"

typedef struct echo_client_protocol {
    tide_protocol_t base;
    const char *message;
    tide_future_t *on_con_lost;
} echo_client_protocol;

static void connection_made(tide_protocol_t *self, tide_transport_t *transport) {
    echo_client_protocol *p = TIDE_CONTAINER_OF(self, echo_client_protocol, base);
    int rc = tide_transport_write(transport, p->message, strlen(p->message));
    if (rc != 0)
        fprintf(stderr, "write: %s\n", tide_strerror(rc));
    printf("Data sent: ");
    py_print_repr(stdout, p->message, strlen(p->message), false);
    printf("\n");
}

static void data_received(tide_protocol_t *self, const void *data, size_t len) {
    (void)self;
    printf("Data received: ");
    py_print_repr(stdout, data, len, false);
    printf("\n");
}

static void connection_lost(tide_protocol_t *self, int status) {
    (void)status;
    echo_client_protocol *p = TIDE_CONTAINER_OF(self, echo_client_protocol, base);
    printf("The server closed the connection\n");
    tide_future_set_result(p->on_con_lost, NULL);
}

static const tide_protocol_ops_t echo_client_ops = {
    .size = TIDE_PROTOCOL_OPS_SIZE,
    .connection_made = connection_made,
    .data_received = data_received,
    .connection_lost = connection_lost,
};

static tide_protocol_t *echo_client_factory(void *arg) {
    return &((echo_client_protocol *)arg)->base; /* lambda: EchoClientProtocol(...) */
}

typedef struct run {
    uint16_t port;
    echo_client_protocol protocol;
} run;

/* The connect's completion: a failure (refused, ...) never reaches the protocol, so it
 * settles on_con_lost itself, as the original's failed await would raise. */
static void connected(tide_loop_t *loop, int status, tide_transport_t *transport,
                      tide_protocol_t *protocol, void *arg) {
    (void)loop, (void)transport, (void)protocol;
    run *r = arg;
    if (status != 0)
        tide_future_set_error(r->protocol.on_con_lost, status);
}

/* async def main(), as a task. */
static int client_main(void *arg) {
    run *r = arg;
    tide_loop_t *loop = tide_task_get_loop(tide_task_current());
    r->protocol = (echo_client_protocol){.base.ops = &echo_client_ops, .message = "Hello World!"};
    int rc = tide_future_new(loop, &r->protocol.on_con_lost);
    if (rc == 0)
        rc = tide_loop_create_connection(loop, "127.0.0.1", r->port, echo_client_factory,
                                         &r->protocol, NULL, connected, r, NULL);
    if (rc == 0)
        rc = tide_future_await(r->protocol.on_con_lost, NULL); /* await on_con_lost */
    /* finally: transport.close(): here the transport is gone already (connection_lost
     * ran, or the connect failed), where Python's close() does nothing. */
    tide_future_free(r->protocol.on_con_lost);
    if (rc != 0)
        fprintf(stderr, "create_connection: %s\n", tide_strerror(rc));
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    run r;
    tide_loop_t *loop;
    int status = 1;
    if (py_example_start(argc, argv, 8888, &r.port, &loop) != 0)
        return 1;
    tide_loop_run_until_complete(loop, client_main, &r, NULL, &status); /* asyncio.run(main()) */
    return tide_loop_close(loop) == 0 ? status : 1;
}
