/* asyncio_echo_server_protocol: the "TCP Echo Server" of asyncio's documentation
 * (Transports and Protocols), protocol form, doing and printing exactly what it does:
 *
 *   class EchoServerProtocol(asyncio.Protocol):
 *       def connection_made(self, transport):
 *           peername = transport.get_extra_info('peername')
 *           print('Connection from {}'.format(peername))
 *           self.transport = transport
 *       def data_received(self, data):
 *           message = data.decode()
 *           print('Data received: {!r}'.format(message))
 *           print('Send: {!r}'.format(message))
 *           self.transport.write(data)
 *           print('Close the client socket')
 *           self.transport.close()
 *
 *   server = await loop.create_server(EchoServerProtocol, '127.0.0.1', 8888)
 *   async with server:
 *       await server.serve_forever()
 *
 *   asyncio_echo_server_protocol [PORT]      (127.0.0.1, port 8888 by default)
 *
 * It serves forever, as the original; stop it with a signal. Its client is
 * asyncio_echo_client_protocol. tests/examples/asyncio/ holds the Python original,
 * which the examples.asyncio_* tests run beside this program against the same client
 * and compare line by line. Single-threaded. */
#include <stdio.h>
#include <stdlib.h>

#include <tide.h>

#include "pyrepr.h"

typedef struct echo_server_protocol {
    tide_protocol_t base;
    tide_transport_t *transport;
} echo_server_protocol;

static void connection_made(tide_protocol_t *self, tide_transport_t *transport) {
    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;
    printf("Connection from ");
    if (tide_transport_get_peername(transport, (struct sockaddr *)&peer, &len) == 0)
        py_print_address(stdout, (struct sockaddr *)&peer);
    else
        printf("None");
    printf("\n");
    TIDE_CONTAINER_OF(self, echo_server_protocol, base)->transport = transport;
}

static void data_received(tide_protocol_t *self, const void *data, size_t len) {
    tide_transport_t *transport = TIDE_CONTAINER_OF(self, echo_server_protocol, base)->transport;
    printf("Data received: ");
    py_print_repr(stdout, data, len, false);
    printf("\nSend: ");
    py_print_repr(stdout, data, len, false);
    printf("\n");
    int rc = tide_transport_write(transport, data, len);
    if (rc != 0)
        fprintf(stderr, "write: %s\n", tide_strerror(rc));
    printf("Close the client socket\n");
    tide_transport_close(transport);
}

static void connection_lost(tide_protocol_t *self, int status) {
    (void)status;
    free(TIDE_CONTAINER_OF(self, echo_server_protocol, base));
}

static const tide_protocol_ops_t echo_server_ops = {
    .size = TIDE_PROTOCOL_OPS_SIZE,
    .connection_made = connection_made,
    .data_received = data_received,
    .connection_lost = connection_lost,
};

static tide_protocol_t *echo_server_factory(void *arg) {
    (void)arg;
    echo_server_protocol *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->base.ops = &echo_server_ops;
    return &p->base;
}

int main(int argc, char **argv) {
    uint16_t port;
    tide_loop_t *loop;
    tide_server_t *server;
    int rc = py_example_start(argc, argv, 8888, &port, &loop);
    if (rc == 0)
        rc = tide_loop_create_server(loop, "127.0.0.1", port, echo_server_factory, NULL, NULL,
                                     &server);
    return py_serve_forever(loop, rc, "create_server");
}
