/* echo_client_protocol: tide's own echo client protocol, for echo_server (asyncio's
 * documented EchoClientProtocol, which waits for the server to close, is
 * asyncio_echo_client_protocol). It connects, sends its message, half-closes, prints
 * what comes back and exits 0 once the whole message came back unchanged.
 *
 *   echo_client_protocol [--host HOST] (--port PORT | --unix PATH) [--timeout S] [MESSAGE]
 *
 * Any failure (refused, reset, a different or short echo, the deadline) prints tide's
 * message for it and exits 1. Single-threaded: everything runs on the loop's thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tide.h>

typedef struct echo_client {
    tide_protocol_t base;
    tide_loop_t *loop;
    tide_transport_t *transport;
    tide_connect_t *connect; /* until the connect completes */
    tide_handle_t *deadline; /* until the conversation ends */
    double timeout;
    const char *where; /* the address, for messages */
    const char *message;
    size_t len;
    char *echo; /* what came back, len bytes at most */
    size_t got;
    int status; /* the exit status */
} echo_client;

static echo_client *client_of(tide_protocol_t *self) {
    return TIDE_CONTAINER_OF(self, echo_client, base);
}

/* Records the first failure and ends the conversation; later ones are consequences. */
static void fail(echo_client *c, const char *what, int err) {
    if (c->status == 0) {
        if (err != 0)
            fprintf(stderr, "echo_client_protocol: %s: %s: %s\n", c->where, what,
                    tide_strerror(err));
        else
            fprintf(stderr, "echo_client_protocol: %s: %s\n", c->where, what);
    }
    c->status = 1;
    if (c->transport != NULL)
        tide_transport_abort(c->transport);
}

static void finish(echo_client *c) {
    tide_handle_cancel(c->deadline);
    c->deadline = NULL;
}

static void echo_connection_made(tide_protocol_t *self, tide_transport_t *transport) {
    echo_client *c = client_of(self);
    c->transport = transport;
    int rc = tide_transport_write(transport, c->message, c->len);
    if (rc != 0) {
        fail(c, "write", rc);
        return;
    }
    printf("sent: %s\n", c->message);
    /* Nothing more to send: the server sees EOF after the message, like a file piped
     * into it, and closes once it has echoed everything. */
    if (tide_transport_can_write_eof(transport) && (rc = tide_transport_write_eof(transport)) != 0)
        fail(c, "write_eof", rc);
}

static void echo_data_received(tide_protocol_t *self, const void *data, size_t len) {
    echo_client *c = client_of(self);
    if (len > c->len - c->got) {
        fail(c, "the server sent more than the message", 0);
        return;
    }
    memcpy(c->echo + c->got, data, len);
    c->got += len;
    if (c->got < c->len)
        return;
    printf("received: %.*s\n", (int)c->len, c->echo);
    if (memcmp(c->echo, c->message, c->len) != 0)
        fail(c, "the echo differs from the message", 0);
    else
        tide_transport_close(c->transport);
}

static bool echo_eof_received(tide_protocol_t *self) {
    echo_client *c = client_of(self);
    if (c->got < c->len) {
        char what[96];
        snprintf(what, sizeof what, "connection closed after %zu of %zu bytes", c->got, c->len);
        fail(c, what, 0);
    }
    return false;
}

static void echo_connection_lost(tide_protocol_t *self, int status) {
    echo_client *c = client_of(self);
    if (status != 0)
        fail(c, "connection lost", status);
    else if (c->got < c->len)
        fail(c, "connection closed before the whole echo came back", 0);
    c->transport = NULL;
    finish(c);
}

static const tide_protocol_ops_t echo_client_ops = {
    .size = TIDE_PROTOCOL_OPS_SIZE,
    .connection_made = echo_connection_made,
    .data_received = echo_data_received,
    .eof_received = echo_eof_received,
    .connection_lost = echo_connection_lost,
};

/* One connection, one protocol: the factory hands out the client itself. */
static tide_protocol_t *echo_client_factory(void *arg) { return &((echo_client *)arg)->base; }

static void on_connected(tide_loop_t *loop, int status, tide_transport_t *transport,
                         tide_protocol_t *protocol, void *arg) {
    (void)loop, (void)transport, (void)protocol;
    echo_client *c = arg;
    c->connect = NULL;
    if (status == 0)
        return; /* connection_made has run and the conversation is under way */
    fail(c, "cannot connect", status); /* silent when the deadline came first */
    finish(c);
}

static void on_deadline(tide_loop_t *loop, void *arg) {
    (void)loop;
    echo_client *c = arg;
    c->deadline = NULL;
    char what[64];
    snprintf(what, sizeof what, "no complete echo within %g s", c->timeout);
    fail(c, what, TIDE_ETIMEOUT);
    /* The connect's callback still runs (with TIDE_ECANCELLED) and ends the run. */
    tide_connect_cancel(c->connect);
}

static void usage(FILE *out) {
    fprintf(out, "usage: echo_client_protocol [--host HOST] (--port PORT | --unix PATH)\n"
                 "                            [--timeout SECONDS] [MESSAGE]\n");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);

    const char *host = "127.0.0.1", *unix_path = NULL, *message = "Hello World!";
    long port = -1;
    double timeout = 10.0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (arg[0] != '-' || strcmp(arg, "--") == 0) {
            message = strcmp(arg, "--") == 0 && i + 1 < argc ? argv[++i] : arg;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "echo_client_protocol: option '%s' needs a value\n", arg);
            return 2;
        }
        const char *val = argv[++i];
        char *end;
        if (strcmp(arg, "--host") == 0) {
            host = val;
        } else if (strcmp(arg, "--unix") == 0) {
            unix_path = val;
        } else if (strcmp(arg, "--port") == 0) {
            port = strtol(val, &end, 10);
            if (*val == '\0' || *end != '\0' || port < 1 || port > 65535) {
                fprintf(stderr, "echo_client_protocol: bad port '%s'\n", val);
                return 2;
            }
        } else if (strcmp(arg, "--timeout") == 0) {
            timeout = strtod(val, &end);
            if (*val == '\0' || *end != '\0' || !(timeout > 0)) {
                fprintf(stderr, "echo_client_protocol: bad timeout '%s'\n", val);
                return 2;
            }
        } else {
            fprintf(stderr, "echo_client_protocol: unknown option '%s'\n", arg);
            usage(stderr);
            return 2;
        }
    }
    if ((port < 0) == (unix_path == NULL)) {
        fprintf(stderr, "echo_client_protocol: give either --port or --unix\n");
        usage(stderr);
        return 2;
    }
    if (message[0] == '\0') {
        fprintf(stderr, "echo_client_protocol: the message is empty\n");
        return 2;
    }

    char where[300];
    if (unix_path != NULL)
        snprintf(where, sizeof where, "%s", unix_path);
    else
        snprintf(where, sizeof where, "%s:%ld", host, port);

    echo_client c = {
        .base.ops = &echo_client_ops,
        .timeout = timeout,
        .where = where,
        .message = message,
        .len = strlen(message),
    };
    c.echo = malloc(c.len);
    int rc = c.echo == NULL ? TIDE_ENOMEM : tide_loop_new(&c.loop);
    if (rc != 0) {
        fprintf(stderr, "echo_client_protocol: %s\n", tide_strerror(rc));
        free(c.echo);
        return 1;
    }

    if (unix_path != NULL)
        rc = tide_loop_create_unix_connection(c.loop, unix_path, echo_client_factory, &c, NULL,
                                              on_connected, &c, &c.connect);
    else
        rc = tide_loop_create_connection(c.loop, host, (uint16_t)port, echo_client_factory, &c,
                                         NULL, on_connected, &c, &c.connect);
    if (rc != 0) {
        fail(&c, "cannot connect", rc);
    } else {
        c.deadline = tide_loop_call_later(c.loop, timeout, on_deadline, &c);
        if (c.deadline == NULL) {
            fail(&c, "call_later", TIDE_ENOMEM);
            tide_connect_cancel(c.connect);
        }
        /* Runs until the connection is over and the deadline cancelled. */
        rc = tide_loop_run(c.loop, TIDE_RUN_DEFAULT);
        if (rc != 0)
            fail(&c, "run", rc);
    }

    rc = tide_loop_close(c.loop);
    if (rc != 0)
        fail(&c, "loop close", rc);
    free(c.echo);
    return c.status;
}
