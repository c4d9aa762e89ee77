/* echo_server: a TCP or Unix echo server, written in one of three styles:
 * - protocol (default): asyncio's loop.create_server(EchoProtocol, host, port);
 * - streams: asyncio's start_server(handle_echo, host, port), a task per connection
 *   that reads, writes and drains with the _await calls;
 * - callbacks: the same streams with completion callbacks instead of a task.
 *
 *   echo_server [--host HOST] [--port PORT] [--unix PATH] [--style STYLE]
 *
 * The first line it prints is "listening on ADDRESS" (port 0 picks a free port, and the
 * real one is printed). It echoes every byte back, with flow control: when a client
 * stops reading, the server stops reading from it too. SIGINT or SIGTERM shut it down
 * cleanly: stop accepting, close every client after flushing, wait (with a deadline)
 * until they are gone, close the loop, exit 0. A second signal aborts the clients.
 * Single-threaded: everything runs on the loop's thread. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tide.h>

/* How long a shutdown waits for clients to finish before aborting them. */
#define SHUTDOWN_DEADLINE 5.0

typedef struct options {
    const char *host;
    unsigned port;
    const char *unix_path;
    const char *style; /* "protocol", "streams" or "callbacks" */
    unsigned workers;  /* only 1 for now; one loop per thread with reuse_port later */
} options;

typedef struct server_app {
    tide_loop_t *loop;
    tide_server_t *server;
    int signals; /* shutdown signals received so far */
    int status;  /* the exit status */
} server_app;

/* ---- the protocol: one instance per connection ------------------------------------ */

typedef struct echo_conn {
    tide_protocol_t base;
    tide_transport_t *transport;
    char peer[128];
} echo_conn;

static echo_conn *conn_of(tide_protocol_t *self) {
    return TIDE_CONTAINER_OF(self, echo_conn, base);
}

/* Formats the peer's address and announces the connection (every style). */
static void greet(tide_transport_t *transport, char *peer, size_t size) {
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    if (transport != NULL &&
        tide_transport_get_peername(transport, (struct sockaddr *)&addr, &len) == 0)
        tide_format_address((struct sockaddr *)&addr, len, peer, size);
    else
        snprintf(peer, size, "unknown peer");
    printf("connection from %s\n", peer);
}

/* Announces the end of a connection with its status (every style). */
static void farewell(const char *peer, int status) {
    if (status == 0)
        printf("connection from %s closed\n", peer);
    else
        printf("connection from %s lost: %s\n", peer, tide_strerror(status));
}

static void echo_connection_made(tide_protocol_t *self, tide_transport_t *transport) {
    echo_conn *c = conn_of(self);
    c->transport = transport;
    greet(transport, c->peer, sizeof c->peer);
}

static void echo_data_received(tide_protocol_t *self, const void *data, size_t len) {
    echo_conn *c = conn_of(self);
    int rc = tide_transport_write(c->transport, data, len);
    if (rc != 0) {
        fprintf(stderr, "echo_server: write to %s: %s\n", c->peer, tide_strerror(rc));
        tide_transport_abort(c->transport);
    }
}

/* Returning false lets the transport close once the echo of everything received so
 * far is flushed: the client's EOF ends the conversation. */
static bool echo_eof_received(tide_protocol_t *self) {
    (void)self;
    return false;
}

/* A client that does not read would make the echo queue grow without bound: stop
 * reading from it until it catches up. */
static void echo_pause_writing(tide_protocol_t *self) {
    tide_transport_pause_reading(conn_of(self)->transport);
}

static void echo_resume_writing(tide_protocol_t *self) {
    tide_transport_resume_reading(conn_of(self)->transport);
}

static void echo_connection_lost(tide_protocol_t *self, int status) {
    echo_conn *c = conn_of(self);
    farewell(c->peer, status);
    free(c);
}

static const tide_protocol_ops_t echo_ops = {
    .size = TIDE_PROTOCOL_OPS_SIZE,
    .connection_made = echo_connection_made,
    .data_received = echo_data_received,
    .eof_received = echo_eof_received,
    .connection_lost = echo_connection_lost,
    .pause_writing = echo_pause_writing,
    .resume_writing = echo_resume_writing,
};

static tide_protocol_t *echo_factory(void *arg) {
    (void)arg;
    echo_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL; /* refuses this connection only */
    c->base.ops = &echo_ops;
    return &c->base;
}

/* ---- the streams style: a task per connection (asyncio's handle_echo) ------------------ */

/* Read what has arrived, write it back, wait for the write queue to drain (which
 * stops reading from a client that does not read), until the client's EOF. */
static int handle_echo(void *arg) {
    tide_writer_t *writer = arg;
    tide_reader_t *reader = tide_writer_get_reader(writer);
    char peer[128];
    greet(tide_writer_get_transport(writer), peer, sizeof peer);
    char buf[16 * 1024];
    size_t n;
    int rc;
    while ((rc = tide_reader_read_await(reader, buf, sizeof buf, &n)) == 0) {
        rc = tide_writer_write(writer, buf, n);
        if (rc == 0)
            rc = tide_writer_drain_await(writer);
        if (rc != 0)
            break;
    }
    tide_writer_close(writer);
    int status = tide_writer_wait_closed_await(writer);
    farewell(peer, status != 0 ? status : (rc == TIDE_EOF ? 0 : rc));
    return 0;
}

static void on_stream_client(tide_reader_t *reader, tide_writer_t *writer, void *arg) {
    (void)reader;
    server_app *app = arg;
    /* Detached: the task frees itself when it ends; the loop runs until it has. */
    int rc = tide_task_spawn(app->loop, handle_echo, writer, NULL, NULL);
    if (rc != 0) {
        fprintf(stderr, "echo_server: task: %s\n", tide_strerror(rc));
        tide_writer_abort(writer);
    }
}

/* ---- the callbacks style: the same streams, completion by completion ------------------ */

typedef struct cb_conn {
    tide_reader_t *reader;
    tide_writer_t *writer;
    char peer[128];
} cb_conn;

static void cb_read_more(cb_conn *c);

static void cb_closed(tide_writer_t *writer, int status, void *arg) {
    (void)writer;
    cb_conn *c = arg;
    farewell(c->peer, status);
    free(c);
}

/* Ends the conversation; err is reported when the connection itself ended cleanly. */
static void cb_finish(cb_conn *c, int err) {
    tide_writer_close(c->writer);
    int rc = tide_writer_wait_closed(c->writer, cb_closed, c);
    if (rc != 0) {
        farewell(c->peer, err != 0 ? err : rc);
        free(c);
    }
}

static void cb_drained(tide_writer_t *writer, int status, void *arg) {
    (void)writer;
    if (status == 0)
        cb_read_more(arg);
    else
        cb_finish(arg, status);
}

static void cb_read(tide_reader_t *reader, int status, const void *data, size_t len, void *arg) {
    (void)reader;
    cb_conn *c = arg;
    if (status != 0) {
        cb_finish(c, status == TIDE_EOF ? 0 : status);
        return;
    }
    /* data is lent for this call only: write copies what it cannot send at once. */
    int rc = tide_writer_write(c->writer, data, len);
    if (rc == 0)
        rc = tide_writer_drain(c->writer, cb_drained, c);
    if (rc != 0)
        cb_finish(c, rc);
}

static void cb_read_more(cb_conn *c) {
    int rc = tide_reader_read(c->reader, 16 * 1024, cb_read, c);
    if (rc != 0)
        cb_finish(c, rc);
}

static void on_callback_client(tide_reader_t *reader, tide_writer_t *writer, void *arg) {
    (void)arg;
    cb_conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        tide_writer_abort(writer);
        return;
    }
    c->reader = reader;
    c->writer = writer;
    greet(tide_writer_get_transport(writer), c->peer, sizeof c->peer);
    cb_read_more(c);
}

/* ---- shutdown ----------------------------------------------------------------------- */

static void on_closed(tide_server_t *server, int status, void *arg) {
    server_app *app = arg;
    if (status == TIDE_ETIMEOUT) {
        printf("clients still connected after %.0f s: aborting them\n", SHUTDOWN_DEADLINE);
        tide_server_abort_clients(server);
    } else {
        printf("server closed\n");
    }
    /* The server frees itself once its last client is gone; the loop run returns when
     * nothing is left open. */
    app->server = NULL;
}

static void on_signal(tide_loop_t *loop, int signum, void *arg) {
    (void)loop;
    server_app *app = arg;
    const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
    if (app->server == NULL)
        return;
    if (app->signals++ > 0) {
        printf("%s again: aborting clients\n", name);
        tide_server_abort_clients(app->server);
        return;
    }
    printf("%s: shutting down\n", name);
    tide_server_close(app->server);
    tide_server_close_clients(app->server);
    int rc = tide_server_wait_closed(app->server, SHUTDOWN_DEADLINE, on_closed, app);
    if (rc != 0) {
        fprintf(stderr, "echo_server: wait_closed: %s\n", tide_strerror(rc));
        tide_server_abort_clients(app->server);
        app->status = 1;
    }
}

/* ---- command line ----------------------------------------------------------------- */

static void usage(FILE *out) {
    fprintf(out, "usage: echo_server [--host HOST] [--port PORT] [--unix PATH]\n"
                 "                   [--style protocol|streams|callbacks] [--workers 1]\n"
                 "  --host HOST   address or name to listen on (default 127.0.0.1)\n"
                 "  --port PORT   TCP port; 0 picks a free one (default 0)\n"
                 "  --unix PATH   listen on a Unix socket instead of TCP\n"
                 "  --style S     how the server is written: protocol (default),\n"
                 "                streams (a task per connection) or callbacks\n"
                 "  --workers N   event loops serving the port (only 1 for now)\n");
}

static int parse_uint(const char *s, unsigned max, unsigned *out) {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

/* Returns 0, or 2 (the usage-error exit status) after printing why. */
static int parse_args(int argc, char **argv, options *o) {
    *o = (options){.host = "127.0.0.1", .port = 0, .style = "protocol", .workers = 1};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "echo_server: unknown or incomplete option '%s'\n", arg);
            usage(stderr);
            return 2;
        }
        const char *val = argv[++i];
        if (strcmp(arg, "--host") == 0) {
            o->host = val;
        } else if (strcmp(arg, "--port") == 0) {
            if (parse_uint(val, 65535, &o->port) != 0) {
                fprintf(stderr, "echo_server: bad port '%s'\n", val);
                return 2;
            }
        } else if (strcmp(arg, "--unix") == 0) {
            o->unix_path = val;
        } else if (strcmp(arg, "--style") == 0) {
            o->style = val;
        } else if (strcmp(arg, "--workers") == 0) {
            if (parse_uint(val, 1024, &o->workers) != 0 || o->workers == 0) {
                fprintf(stderr, "echo_server: bad worker count '%s'\n", val);
                return 2;
            }
        } else {
            fprintf(stderr, "echo_server: unknown option '%s'\n", arg);
            usage(stderr);
            return 2;
        }
    }
    if (strcmp(o->style, "protocol") != 0 && strcmp(o->style, "streams") != 0 &&
        strcmp(o->style, "callbacks") != 0) {
        fprintf(stderr, "echo_server: unknown style '%s' (available: protocol, streams, callbacks)\n",
                o->style);
        return 2;
    }
    if (o->workers != 1) {
        fprintf(stderr, "echo_server: %u workers requested; this build serves with 1\n",
                o->workers);
        return 2;
    }
    return 0;
}

/* ---- main -------------------------------------------------------------------------- */

static int start_server(server_app *app, const options *o) {
    int rc;
    tide_client_connected_cb on_client =
        strcmp(o->style, "streams") == 0 ? on_stream_client : on_callback_client;
    if (strcmp(o->style, "protocol") == 0 && o->unix_path != NULL)
        rc = tide_loop_create_unix_server(app->loop, o->unix_path, echo_factory, app, NULL,
                                          &app->server);
    else if (strcmp(o->style, "protocol") == 0)
        rc = tide_loop_create_server(app->loop, o->host, (uint16_t)o->port, echo_factory, app, NULL,
                                     &app->server);
    else if (o->unix_path != NULL)
        rc = tide_loop_start_unix_server(app->loop, o->unix_path, TIDE_STREAM_DEFAULT_LIMIT, NULL,
                                         on_client, app, &app->server);
    else
        rc = tide_loop_start_server(app->loop, o->host, (uint16_t)o->port,
                                    TIDE_STREAM_DEFAULT_LIMIT, NULL, on_client, app, &app->server);
    if (rc != 0) {
        fprintf(stderr, "echo_server: cannot listen on %s: %s\n",
                o->unix_path != NULL ? o->unix_path : o->host, tide_strerror(rc));
        return rc;
    }
    /* One line per listening socket ("localhost" may give an IPv4 and an IPv6 one). */
    for (size_t i = 0; i < tide_server_socket_count(app->server); i++) {
        struct sockaddr_storage addr;
        socklen_t len = sizeof addr;
        char text[128];
        rc = tide_server_get_sockname(app->server, i, (struct sockaddr *)&addr, &len);
        if (rc != 0)
            snprintf(text, sizeof text, "? (%s)", tide_strerror(rc));
        else
            tide_format_address((struct sockaddr *)&addr, len, text, sizeof text);
        printf("listening on %s\n", text);
    }
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    /* Line-buffered even into a pipe, so that whoever started us sees each line. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    options o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc;

    server_app app = {.status = 0};
    rc = tide_loop_new(&app.loop);
    if (rc != 0) {
        fprintf(stderr, "echo_server: %s\n", tide_strerror(rc));
        return 1;
    }
    if (start_server(&app, &o) != 0) {
        tide_loop_close(app.loop);
        return 1;
    }
    if ((rc = tide_loop_add_signal_handler(app.loop, SIGINT, on_signal, &app)) != 0 ||
        (rc = tide_loop_add_signal_handler(app.loop, SIGTERM, on_signal, &app)) != 0) {
        fprintf(stderr, "echo_server: signal handler: %s\n", tide_strerror(rc));
        app.status = 1;
        tide_server_close(app.server);
        tide_server_abort_clients(app.server);
    }

    /* Runs until the server and its last client are gone. */
    rc = tide_loop_run(app.loop, TIDE_RUN_DEFAULT);
    if (rc != 0) {
        fprintf(stderr, "echo_server: run: %s\n", tide_strerror(rc));
        app.status = 1;
    }
    tide_loop_remove_signal_handler(app.loop, SIGINT);
    tide_loop_remove_signal_handler(app.loop, SIGTERM);
    rc = tide_loop_close(app.loop);
    if (rc != 0) {
        fprintf(stderr, "echo_server: loop close: %s\n", tide_strerror(rc));
        app.status = 1;
    }
    return app.status;
}
