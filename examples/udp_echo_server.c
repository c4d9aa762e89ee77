/* udp_echo_server: asyncio's documented UDP echo server (EchoServerProtocol with
 * loop.create_datagram_endpoint(local_addr=...)), line for line.
 *
 *   udp_echo_server [--host HOST] [--port PORT] [--quiet]
 *
 * HOST is a name or a literal address (default 127.0.0.1; "::1" for IPv6); a HOST that
 * starts with '/' or '@' is a Unix datagram socket path ('@': abstract). PORT defaults
 * to 9999; 0 picks a free one. The first line printed is "listening on ADDRESS" with
 * the real address. Every datagram is echoed to its sender, with asyncio's two lines
 * ("Received 'MESSAGE' from ADDRESS", "Send 'MESSAGE' to ADDRESS") unless --quiet.
 * SIGINT or SIGTERM close the endpoint and the program exits 0. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <tide.h>

typedef struct echo_server {
    tide_datagram_protocol_t base;
    tide_datagram_t *endpoint;
    bool quiet;
    int status;
} echo_server;

static void server_made(tide_datagram_protocol_t *self, tide_datagram_t *endpoint) {
    TIDE_CONTAINER_OF(self, echo_server, base)->endpoint = endpoint;
}

static void server_received(tide_datagram_protocol_t *self, const void *data, size_t len,
                            const struct sockaddr *addr, socklen_t addrlen) {
    echo_server *s = TIDE_CONTAINER_OF(self, echo_server, base);
    if (!s->quiet) {
        char from[128];
        tide_format_address(addr, addrlen, from, sizeof from);
        printf("Received '%.*s' from %s\n", (int)len, (const char *)data, from);
        printf("Send '%.*s' to %s\n", (int)len, (const char *)data, from);
    }
    int rc = tide_datagram_sendto(s->endpoint, data, len, addr, addrlen);
    if (rc < 0 && !s->quiet)
        fprintf(stderr, "udp_echo_server: send: %s\n", tide_strerror(rc));
}

static void server_error(tide_datagram_protocol_t *self, int err) {
    if (!TIDE_CONTAINER_OF(self, echo_server, base)->quiet)
        fprintf(stderr, "udp_echo_server: error received: %s\n", tide_strerror(err));
}

static void server_lost(tide_datagram_protocol_t *self, int status) {
    TIDE_CONTAINER_OF(self, echo_server, base)->status = status;
}

static const tide_datagram_protocol_ops_t server_ops = {
    .size = TIDE_DATAGRAM_PROTOCOL_OPS_SIZE,
    .connection_made = server_made,
    .datagram_received = server_received,
    .error_received = server_error,
    .connection_lost = server_lost,
};

static tide_datagram_protocol_t *server_factory(void *arg) { return &((echo_server *)arg)->base; }

static void created(tide_loop_t *loop, int status, tide_datagram_t *endpoint,
                    tide_datagram_protocol_t *protocol, void *arg) {
    (void)loop;
    (void)protocol;
    echo_server *s = arg;
    if (status < 0) {
        fprintf(stderr, "udp_echo_server: %s\n", tide_strerror(status));
        s->status = status;
        return;
    }
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    char name[128] = "?";
    if (tide_datagram_get_sockname(endpoint, (struct sockaddr *)&addr, &len) == 0)
        tide_format_address((struct sockaddr *)&addr, len, name, sizeof name);
    printf("listening on %s\n", name);
}

static void on_signal(tide_loop_t *loop, int signum, void *arg) {
    (void)loop;
    (void)signum;
    tide_datagram_close(((echo_server *)arg)->endpoint);
}

static int usage(void) {
    fprintf(stderr, "usage: udp_echo_server [--host HOST] [--port PORT] [--quiet]\n");
    return 2;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    long port = 9999;
    echo_server s = {.base.ops = &server_ops};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
            host = argv[++i];
        else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--quiet") == 0)
            s.quiet = true;
        else
            return usage();
    }
    if (port < 0 || port > 65535)
        return usage();
    setvbuf(stdout, NULL, _IOLBF, 0);

    tide_loop_t *loop;
    if (tide_loop_new(&loop) < 0)
        return 1;
    tide_datagram_options_t o = {.local_host = host, .local_port = (uint16_t)port};
    if (host[0] == '/' || host[0] == '@')
        o.family = AF_UNIX;
    int rc = tide_loop_create_datagram_endpoint(loop, server_factory, &s, &o, created, &s);
    if (rc == 0) {
        tide_loop_add_signal_handler(loop, SIGINT, on_signal, &s);
        tide_loop_add_signal_handler(loop, SIGTERM, on_signal, &s);
        tide_loop_run(loop, TIDE_RUN_DEFAULT);
        tide_loop_remove_signal_handler(loop, SIGINT);
        tide_loop_remove_signal_handler(loop, SIGTERM);
    } else {
        fprintf(stderr, "udp_echo_server: %s\n", tide_strerror(rc));
        s.status = rc;
    }
    if (tide_loop_close(loop) != 0)
        return 1;
    return s.status == 0 ? 0 : 1;
}
