/* simple_echo_protocol: the classic asyncio SimpleEchoProtocol, line for line.
 *
 *   class SimpleEchoProtocol(asyncio.Protocol):
 *       def connection_made(self, transport):
 *           print("Connection received!")
 *           self.transport = transport
 *       def data_received(self, data):
 *           print(data)
 *           self.transport.write(b"echo:")
 *           self.transport.write(data)
 *       def connection_lost(self, exc):
 *           print("Connection lost! Closing server...")
 *           server.close()
 *
 *   simple_echo_protocol [--host HOST] [--port PORT]     (default localhost 2222)
 *
 *   loop = asyncio.get_event_loop()
 *   server = loop.run_until_complete(
 *       loop.create_server(SimpleEchoProtocol, 'localhost', 2222))
 *   loop.run_until_complete(server.wait_closed())
 *
 * Like the original it prints nothing until a client comes, prints each chunk it
 * receives as Python prints bytes (b'hello\n'), serves until its first client
 * disconnects, then closes the server, waits until it is closed and exits 0.
 * tests/examples/asyncio/simple_echo_protocol.py is the original, which the
 * examples.asyncio_simple_echo_protocol test runs beside this program and compares.
 * Try it with:  nc localhost 2222
 * Single-threaded: everything runs on the loop's thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tide.h>

#include "pyrepr.h"

typedef struct simple_echo {
    tide_protocol_t base;
    tide_transport_t *transport;
    tide_server_t **server; /* shared by every connection; NULL once closed */
} simple_echo;

static simple_echo *echo_of(tide_protocol_t *self) {
    return TIDE_CONTAINER_OF(self, simple_echo, base);
}

static void connection_made(tide_protocol_t *self, tide_transport_t *transport) {
    printf("Connection received!\n");
    echo_of(self)->transport = transport;
}

static void data_received(tide_protocol_t *self, const void *data, size_t len) {
    simple_echo *e = echo_of(self);
    py_print_repr(stdout, data, len, true); /* print(data) */
    printf("\n");
    int rc = tide_transport_write(e->transport, "echo:", 5);
    if (rc == 0)
        rc = tide_transport_write(e->transport, data, len);
    if (rc != 0)
        fprintf(stderr, "simple_echo_protocol: write: %s\n", tide_strerror(rc));
}

static void connection_lost(tide_protocol_t *self, int status) {
    simple_echo *e = echo_of(self);
    if (status != 0)
        fprintf(stderr, "simple_echo_protocol: %s\n", tide_strerror(status));
    printf("Connection lost! Closing server...\n");
    if (*e->server != NULL) {
        tide_server_close(*e->server);
        *e->server = NULL;
    }
    free(e);
}

static const tide_protocol_ops_t simple_echo_ops = {
    .size = TIDE_PROTOCOL_OPS_SIZE,
    .connection_made = connection_made,
    .data_received = data_received,
    .connection_lost = connection_lost,
};

static tide_protocol_t *simple_echo_factory(void *arg) {
    simple_echo *e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    e->base.ops = &simple_echo_ops;
    e->server = arg;
    return &e->base;
}

/* asyncio's `await server.wait_closed()`: the server is closed and its last client
 * gone, so the loop has nothing left to run. */
static void on_closed(tide_server_t *server, int status, void *arg) {
    (void)server, (void)arg;
    if (status != 0)
        fprintf(stderr, "simple_echo_protocol: wait_closed: %s\n", tide_strerror(status));
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);

    const char *host = "localhost";
    long port = 2222;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) {
            host = argv[++i];
        } else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = strtol(argv[++i], &end, 10);
            if (*argv[i] == '\0' || *end != '\0' || port < 0 || port > 65535) {
                fprintf(stderr, "simple_echo_protocol: bad port '%s'\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: simple_echo_protocol [--host HOST] [--port PORT]\n");
            return 2;
        }
    }

    tide_loop_t *loop;
    int rc = tide_loop_new(&loop);
    if (rc != 0) {
        fprintf(stderr, "simple_echo_protocol: %s\n", tide_strerror(rc));
        return 1;
    }
    tide_server_t *server = NULL;
    rc = tide_loop_create_server(loop, host, (uint16_t)port, simple_echo_factory, &server, NULL,
                                 &server);
    if (rc != 0) {
        fprintf(stderr, "simple_echo_protocol: cannot listen on %s:%ld: %s\n", host, port,
                tide_strerror(rc));
        tide_loop_close(loop);
        return 1;
    }
    int status = 0;
    rc = tide_server_wait_closed(server, 0, on_closed, NULL);
    if (rc != 0) {
        fprintf(stderr, "simple_echo_protocol: wait_closed: %s\n", tide_strerror(rc));
        tide_server_close(server);
        status = 1;
    }
    rc = tide_loop_run(loop, TIDE_RUN_DEFAULT);
    if (rc == 0)
        rc = tide_loop_close(loop);
    if (rc != 0) {
        fprintf(stderr, "simple_echo_protocol: %s\n", tide_strerror(rc));
        status = 1;
    }
    return status;
}
