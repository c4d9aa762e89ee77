/* udp_echo_client: asyncio's documented UDP echo client (EchoClientProtocol with
 * loop.create_datagram_endpoint(remote_addr=...)), line for line.
 *
 *   udp_echo_client [--host HOST] [--port PORT] [--timeout S] MESSAGE
 *
 * HOST defaults to 127.0.0.1 and PORT to 9999; a HOST that starts with '/' or '@' is a
 * Unix datagram socket path (the client then gets an automatic abstract name so that
 * the server can answer). Prints "Send: MESSAGE", "Received: MESSAGE", "Close the
 * socket", "Connection closed" and exits 0. When the server's port is closed the
 * kernel's ICMP answer reaches error_received: "Error received: ..." and exit 1. No
 * answer within S seconds (default 5) prints a message and exits 3. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <tide.h>

enum { EXIT_ERROR = 1, EXIT_USAGE = 2, EXIT_TIMEOUT = 3 };

typedef struct echo_client {
    tide_datagram_protocol_t base;
    tide_datagram_t *endpoint;
    const char *message;
    double timeout;
    tide_handle_t *timer;
    int exit_code;
} echo_client;

static echo_client *client_of(tide_datagram_protocol_t *self) {
    return TIDE_CONTAINER_OF(self, echo_client, base);
}

/* Ends the conversation: no more waiting, close the endpoint. */
static void finish(echo_client *c, int exit_code) {
    c->exit_code = exit_code;
    tide_handle_cancel(c->timer);
    c->timer = NULL;
    tide_datagram_close(c->endpoint);
}

static void timed_out(tide_loop_t *loop, void *arg) {
    (void)loop;
    echo_client *c = arg;
    c->timer = NULL;
    fprintf(stderr, "udp_echo_client: no answer within %g seconds\n", c->timeout);
    finish(c, EXIT_TIMEOUT);
}

static void client_made(tide_datagram_protocol_t *self, tide_datagram_t *endpoint) {
    echo_client *c = client_of(self);
    c->endpoint = endpoint;
    printf("Send: %s\n", c->message);
    int rc = tide_datagram_sendto(endpoint, c->message, strlen(c->message), NULL, 0);
    if (rc < 0) {
        /* The kernel refused at once (asyncio passes this to error_received too). */
        printf("Error received: %s\n", tide_strerror(rc));
        finish(c, EXIT_ERROR);
        return;
    }
    c->timer = tide_loop_call_later(tide_datagram_get_loop(endpoint), c->timeout, timed_out, c);
}

static void client_received(tide_datagram_protocol_t *self, const void *data, size_t len,
                            const struct sockaddr *addr, socklen_t addrlen) {
    (void)addr;
    (void)addrlen;
    echo_client *c = client_of(self);
    printf("Received: %.*s\n", (int)len, (const char *)data);
    printf("Close the socket\n");
    finish(c, 0);
}

static void client_error(tide_datagram_protocol_t *self, int err) {
    printf("Error received: %s\n", tide_strerror(err));
    finish(client_of(self), EXIT_ERROR);
}

static void client_lost(tide_datagram_protocol_t *self, int status) {
    echo_client *c = client_of(self);
    printf("Connection closed\n");
    if (status < 0 && c->exit_code == 0)
        c->exit_code = EXIT_ERROR;
    tide_handle_cancel(c->timer);
    c->timer = NULL;
}

static const tide_datagram_protocol_ops_t client_ops = {
    .size = TIDE_DATAGRAM_PROTOCOL_OPS_SIZE,
    .connection_made = client_made,
    .datagram_received = client_received,
    .error_received = client_error,
    .connection_lost = client_lost,
};

static tide_datagram_protocol_t *client_factory(void *arg) { return &((echo_client *)arg)->base; }

static void created(tide_loop_t *loop, int status, tide_datagram_t *endpoint,
                    tide_datagram_protocol_t *protocol, void *arg) {
    (void)loop;
    (void)endpoint;
    (void)protocol;
    if (status < 0) {
        fprintf(stderr, "udp_echo_client: %s\n", tide_strerror(status));
        ((echo_client *)arg)->exit_code = EXIT_ERROR;
    }
}

static int usage(void) {
    fprintf(stderr, "usage: udp_echo_client [--host HOST] [--port PORT] [--timeout S] MESSAGE\n");
    return EXIT_USAGE;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    long port = 9999;
    echo_client c = {.base.ops = &client_ops, .timeout = 5.0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
            host = argv[++i];
        else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
            c.timeout = strtod(argv[++i], NULL);
        else if (argv[i][0] != '-' && c.message == NULL)
            c.message = argv[i];
        else
            return usage();
    }
    if (c.message == NULL || port <= 0 || port > 65535 || !(c.timeout > 0))
        return usage();
    setvbuf(stdout, NULL, _IOLBF, 0);

    tide_loop_t *loop;
    if (tide_loop_new(&loop) < 0)
        return EXIT_ERROR;
    tide_datagram_options_t o = {.remote_host = host, .remote_port = (uint16_t)port};
    if (host[0] == '/' || host[0] == '@')
        o.family = AF_UNIX;
    int rc = tide_loop_create_datagram_endpoint(loop, client_factory, &c, &o, created, &c);
    if (rc < 0) {
        fprintf(stderr, "udp_echo_client: %s\n", tide_strerror(rc));
        c.exit_code = EXIT_ERROR;
    } else {
        tide_loop_run(loop, TIDE_RUN_DEFAULT);
    }
    if (tide_loop_close(loop) != 0)
        return EXIT_ERROR;
    return c.exit_code;
}
