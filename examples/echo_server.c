/* echo_server: tide's own echo server (not an asyncio example: asyncio's documented
 * echo servers, which answer once and close, are asyncio_echo_server_protocol and
 * asyncio_tcp_echo_server). It echoes until the client leaves, with flow control, and
 * is written in one of four styles:
 * - protocol (default): asyncio's loop.create_server(EchoProtocol, host, port);
 * - buffered: the same with a buffered protocol (asyncio's BufferedProtocol): the
 *   transport reads straight into memory the protocol lends (get_buffer), and
 *   buffer_updated echoes it from there;
 * - streams: asyncio's start_server(handle_echo, host, port), a task per connection
 *   that reads, writes and drains with the _await calls;
 * - callbacks: the same streams with completion callbacks instead of a task.
 *
 *   echo_server [--host HOST] [--port PORT] [--unix PATH] [--style STYLE]
 *               [--workers N] [--tls-cert FILE --tls-key FILE] [--quiet]
 *
 * --workers N runs N threads, each with its own loop and its own SO_REUSEPORT
 * listening socket on the same port (the kernel spreads connections over them), as
 * asyncio's loop-per-thread with reuse_port=True. --tls-cert/--tls-key serve TLS
 * (tide/tls.h) instead of plain TCP. --quiet prints nothing per connection, not even
 * for connections that end with an error (for benchmarks, and for runs whose output
 * nobody reads: a line written to a full pipe would block the loop's thread).
 *
 * The first line it prints is "listening on ADDRESS" (port 0 picks a free port, and the
 * real one is printed). It echoes every byte back, with flow control: when a client
 * stops reading, the server stops reading from it too. SIGINT or SIGTERM shut it down
 * cleanly: stop accepting, close every client after flushing, wait (with a deadline)
 * until they are gone, close the loop, exit 0. A second signal aborts the clients.
 * Threads: every worker's objects live on that worker's loop and thread. The main
 * thread runs worker 0 and owns the signal handlers; it reaches the other workers only
 * through tide_loop_call_soon_threadsafe, under a lock that says whether their loop
 * still exists. */
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tide.h>

/* How long a shutdown waits for clients to finish before aborting them. */
#define SHUTDOWN_DEADLINE 5.0
/* The most a streams-style connection takes from its reader at a time, and what a
 * buffered-protocol worker lends to every read: as much as the plain protocol style
 * reads at once, so that a message the kernel hands over in one piece is echoed with
 * one send in every style (with 64 KiB reads, a 100 KiB message costs two). */
#define STREAM_READ_SIZE (256 * 1024)
#define BUFFERED_READ_SIZE (256 * 1024)
#define MAX_WORKERS 64

typedef struct options {
    const char *host;
    unsigned port;
    const char *unix_path;
    const char *style; /* "protocol", "buffered", "streams" or "callbacks" */
    unsigned workers;  /* loops (threads) sharing the port through SO_REUSEPORT */
    const char *tls_cert, *tls_key;
    bool quiet;
} options;

/* One worker: a loop, its thread and its server. Worker 0 runs on the main thread. */
typedef struct server_app {
    tide_loop_t *loop;
    tide_server_t *server;
    unsigned index;
    pthread_t thread;
    int status; /* the exit status */
    bool alive; /* the loop exists (guarded by workers_lock, for the other threads) */
    unsigned char *rbuf; /* buffered style: lent to every read of this worker */
} server_app;

static options opts;
static server_app apps[MAX_WORKERS];
static int signals_seen; /* shutdown signals received so far (main thread only) */
static pthread_mutex_t workers_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- the protocol: one instance per connection ------------------------------------ */

typedef struct echo_conn {
    tide_protocol_t base;
    tide_transport_t *transport;
    server_app *app;
    char peer[128];
} echo_conn;

static echo_conn *conn_of(tide_protocol_t *self) {
    return TIDE_CONTAINER_OF(self, echo_conn, base);
}

/* Formats the peer's address and announces the connection (every style). */
static void greet(tide_transport_t *transport, char *peer, size_t size) {
    if (opts.quiet) {
        /* Not even snprintf: in a task, its stack frames would stay resident. */
        strncpy(peer, "a client", size - 1);
        peer[size - 1] = '\0';
        return;
    }
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
    if (opts.quiet)
        return;
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
        if (!opts.quiet)
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

/* ---- the buffered protocol: reads land in the worker's buffer --------------------------- */

/* One buffer serves every connection of the worker: buffer_updated writes the bytes
 * out before the next read can reuse it (write copies what the kernel does not take),
 * so an idle connection costs no buffer at all. */
static void *buffered_get_buffer(tide_protocol_t *self, size_t sizehint, size_t *len) {
    (void)sizehint;
    *len = BUFFERED_READ_SIZE;
    return conn_of(self)->app->rbuf;
}

static void buffered_updated(tide_protocol_t *self, size_t nbytes) {
    echo_data_received(self, conn_of(self)->app->rbuf, nbytes);
}

static const tide_protocol_ops_t buffered_ops = {
    .size = TIDE_PROTOCOL_OPS_SIZE,
    .connection_made = echo_connection_made,
    .eof_received = echo_eof_received,
    .connection_lost = echo_connection_lost,
    .pause_writing = echo_pause_writing,
    .resume_writing = echo_resume_writing,
    .get_buffer = buffered_get_buffer,
    .buffer_updated = buffered_updated,
};

static tide_protocol_t *echo_factory(void *arg) {
    server_app *app = arg;
    echo_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL; /* refuses this connection only */
    c->base.ops = app->rbuf != NULL ? &buffered_ops : &echo_ops;
    c->app = app;
    return &c->base;
}

/* ---- the streams style: a task per connection (asyncio's handle_echo) ------------------ */

/* Read what has arrived, write it back, wait for the write queue to drain (which
 * stops reading from a client that does not read), until the client's EOF. An idle
 * connection waits with a small buffer, so that its task touches as little stack as
 * possible (the stack is lazily committed); its first bytes bring a heap buffer of
 * STREAM_READ_SIZE for the rest of the conversation. */
static int handle_echo(void *arg) {
    tide_writer_t *writer = arg;
    tide_reader_t *reader = tide_writer_get_reader(writer);
    char peer[128];
    greet(tide_writer_get_transport(writer), peer, sizeof peer);
    char first[256];
    char *buf = NULL;
    const char *data = first;
    size_t n;
    int rc = tide_reader_read_await(reader, first, sizeof first, &n);
    while (rc == 0) {
        rc = tide_writer_write(writer, data, n);
        if (rc == 0)
            rc = tide_writer_drain_await(writer);
        if (rc == 0 && buf == NULL && (buf = malloc(STREAM_READ_SIZE)) == NULL)
            rc = TIDE_ENOMEM;
        if (rc != 0)
            break;
        data = buf;
        rc = tide_reader_read_await(reader, buf, STREAM_READ_SIZE, &n);
    }
    free(buf);
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
        if (!opts.quiet)
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
        rc = tide_writer_try_drain(c->writer, cb_drained, c);
    if (rc == 1)
        cb_read_more(c); /* drained already: cb_drained will not run */
    else if (rc != 0)
        cb_finish(c, rc);
}

static void cb_read_more(cb_conn *c) {
    int rc = tide_reader_read(c->reader, STREAM_READ_SIZE, cb_read, c);
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
    } else if (app->index == 0) {
        printf("server closed\n");
    }
    /* The server frees itself once its last client is gone; the loop run returns when
     * nothing is left open. */
    app->server = NULL;
}

/* Runs on the worker's own thread: stop accepting, close every client after flushing,
 * and wait for them with a deadline. */
static void shutdown_worker(tide_loop_t *loop, void *arg) {
    (void)loop;
    server_app *app = arg;
    if (app->server == NULL)
        return;
    tide_server_close(app->server);
    tide_server_close_clients(app->server);
    int rc = tide_server_wait_closed(app->server, SHUTDOWN_DEADLINE, on_closed, app);
    if (rc != 0) {
        fprintf(stderr, "echo_server: wait_closed: %s\n", tide_strerror(rc));
        tide_server_abort_clients(app->server);
        app->status = 1;
    }
}

static void abort_worker(tide_loop_t *loop, void *arg) {
    (void)loop;
    server_app *app = arg;
    if (app->server != NULL)
        tide_server_abort_clients(app->server);
}

/* Runs fn on every worker: directly on worker 0 (this thread), through the other
 * loops' thread-safe queues elsewhere; workers whose loop is gone are skipped. */
static void for_each_worker(tide_call_cb fn) {
    fn(apps[0].loop, &apps[0]);
    pthread_mutex_lock(&workers_lock);
    for (unsigned i = 1; i < opts.workers; i++) {
        if (!apps[i].alive)
            continue;
        int rc = tide_loop_call_soon_threadsafe(apps[i].loop, fn, &apps[i]);
        if (rc != 0)
            fprintf(stderr, "echo_server: worker %u: %s\n", i, tide_strerror(rc));
    }
    pthread_mutex_unlock(&workers_lock);
}

static void on_signal(tide_loop_t *loop, int signum, void *arg) {
    (void)loop;
    (void)arg;
    const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
    if (signals_seen++ > 0) {
        printf("%s again: aborting clients\n", name);
        for_each_worker(abort_worker);
        return;
    }
    printf("%s: shutting down\n", name);
    for_each_worker(shutdown_worker);
}

/* ---- command line ----------------------------------------------------------------- */

static void usage(FILE *out) {
    fprintf(out, "usage: echo_server [--host HOST] [--port PORT] [--unix PATH]\n"
                 "                   [--style protocol|buffered|streams|callbacks] [--workers N]\n"
                 "                   [--tls-cert FILE --tls-key FILE] [--quiet]\n"
                 "  --host HOST     address or name to listen on (default 127.0.0.1)\n"
                 "  --port PORT     TCP port; 0 picks a free one (default 0)\n"
                 "  --unix PATH     listen on a Unix socket instead of TCP\n"
                 "  --style S       how the server is written: protocol (default), buffered\n"
                 "                  (a buffered protocol), streams (a task per connection)\n"
                 "                  or callbacks (streams with completion callbacks)\n"
                 "  --workers N     N threads, each with its own loop, sharing the TCP port\n"
                 "                  through SO_REUSEPORT (default 1)\n"
                 "  --tls-cert F    serve TLS with this certificate chain (PEM) ...\n"
                 "  --tls-key F     ... and this private key\n"
                 "  --quiet         print nothing per connection (not even errors)\n");
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
        if (strcmp(arg, "--quiet") == 0) {
            o->quiet = true;
            continue;
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
            if (parse_uint(val, MAX_WORKERS, &o->workers) != 0 || o->workers == 0) {
                fprintf(stderr, "echo_server: bad worker count '%s' (1 to %d)\n", val,
                        MAX_WORKERS);
                return 2;
            }
        } else if (strcmp(arg, "--tls-cert") == 0) {
            o->tls_cert = val;
        } else if (strcmp(arg, "--tls-key") == 0) {
            o->tls_key = val;
        } else {
            fprintf(stderr, "echo_server: unknown option '%s'\n", arg);
            usage(stderr);
            return 2;
        }
    }
    if (strcmp(o->style, "protocol") != 0 && strcmp(o->style, "buffered") != 0 &&
        strcmp(o->style, "streams") != 0 && strcmp(o->style, "callbacks") != 0) {
        fprintf(stderr,
                "echo_server: unknown style '%s' (available: protocol, buffered, streams, "
                "callbacks)\n",
                o->style);
        return 2;
    }
    if (o->workers > 1 && o->unix_path != NULL) {
        fprintf(stderr, "echo_server: --workers needs TCP (SO_REUSEPORT), not --unix\n");
        return 2;
    }
    if ((o->tls_cert == NULL) != (o->tls_key == NULL)) {
        fprintf(stderr, "echo_server: --tls-cert and --tls-key go together\n");
        return 2;
    }
    return 0;
}

/* ---- main -------------------------------------------------------------------------- */

/* The TLS server configuration, or NULL without --tls-cert; *rc says why on failure. */
static tide_tls_config_t *make_tls(const options *o, int *rc) {
    *rc = 0;
    if (o->tls_cert == NULL)
        return NULL;
    if (!tide_tls_available()) {
        *rc = TIDE_ENOSYS;
        return NULL;
    }
    tide_tls_config_t *cfg = NULL;
    *rc = tide_tls_config_new_server(&cfg);
    if (*rc == 0)
        *rc = tide_tls_config_set_cert_file(cfg, o->tls_cert, o->tls_key, NULL);
    if (*rc != 0) {
        tide_tls_config_unref(cfg);
        return NULL;
    }
    return cfg;
}

/* Listens for one worker; port is the one to bind (worker 0 may pick it). */
static int start_server(server_app *app, const options *o, uint16_t port,
                        tide_tls_config_t *tls) {
    int rc;
    bool streams = strcmp(o->style, "streams") == 0 || strcmp(o->style, "callbacks") == 0;
    tide_client_connected_cb on_client =
        strcmp(o->style, "streams") == 0 ? on_stream_client : on_callback_client;
    tide_server_options_t so = {
        .backlog = 1024, .reuse_port = o->workers > 1, .tls = tls};
    if (strcmp(o->style, "buffered") == 0) {
        /* Page-aligned: the kernel copies into a misaligned buffer several times
         * slower (malloc's 256 KiB block starts 16 bytes into a page). */
        void *rbuf;
        if (posix_memalign(&rbuf, 4096, BUFFERED_READ_SIZE) != 0)
            return TIDE_ENOMEM;
        app->rbuf = rbuf;
    }
    if (!streams && o->unix_path != NULL)
        rc = tide_loop_create_unix_server(app->loop, o->unix_path, echo_factory, app, &so,
                                          &app->server);
    else if (!streams)
        rc = tide_loop_create_server(app->loop, o->host, port, echo_factory, app, &so,
                                     &app->server);
    else if (o->unix_path != NULL)
        rc = tide_loop_start_unix_server(app->loop, o->unix_path, TIDE_STREAM_DEFAULT_LIMIT, &so,
                                         on_client, app, &app->server);
    else
        rc = tide_loop_start_server(app->loop, o->host, port, TIDE_STREAM_DEFAULT_LIMIT, &so,
                                    on_client, app, &app->server);
    if (rc != 0) {
        fprintf(stderr, "echo_server: cannot listen on %s: %s\n",
                o->unix_path != NULL ? o->unix_path : o->host, tide_strerror(rc));
        return rc;
    }
    return 0;
}

/* Prints one line per listening socket ("localhost" may give an IPv4 and an IPv6 one)
 * and returns the TCP port bound, so the other workers can share it. */
static uint16_t announce(const server_app *app) {
    uint16_t port = 0;
    for (size_t i = 0; i < tide_server_socket_count(app->server); i++) {
        struct sockaddr_storage addr;
        socklen_t len = sizeof addr;
        char text[128];
        int rc = tide_server_get_sockname(app->server, i, (struct sockaddr *)&addr, &len);
        if (rc != 0) {
            snprintf(text, sizeof text, "? (%s)", tide_strerror(rc));
        } else {
            tide_format_address((struct sockaddr *)&addr, len, text, sizeof text);
            if (addr.ss_family == AF_INET)
                port = ntohs(((struct sockaddr_in *)&addr)->sin_port);
            else if (addr.ss_family == AF_INET6)
                port = ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
        }
        printf("listening on %s\n", text);
    }
    fflush(stdout);
    return port;
}

/* Runs a worker's loop until its server and last client are gone, then closes it. */
static void run_worker(server_app *app) {
    int rc = tide_loop_run(app->loop, TIDE_RUN_DEFAULT);
    if (rc != 0) {
        fprintf(stderr, "echo_server: run: %s\n", tide_strerror(rc));
        app->status = 1;
    }
}

static void close_worker(server_app *app) {
    pthread_mutex_lock(&workers_lock);
    app->alive = false;
    pthread_mutex_unlock(&workers_lock);
    int rc = tide_loop_close(app->loop);
    if (rc != 0) {
        fprintf(stderr, "echo_server: loop close: %s\n", tide_strerror(rc));
        app->status = 1;
    }
    free(app->rbuf);
}

static void *worker_thread(void *arg) {
    server_app *app = arg;
    run_worker(app);
    close_worker(app);
    return NULL;
}

int main(int argc, char **argv) {
    /* Line-buffered even into a pipe, so that whoever started us sees each line. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    int rc = parse_args(argc, argv, &opts);
    if (rc != 0)
        return rc;
    tide_tls_config_t *tls = make_tls(&opts, &rc);
    if (rc != 0) {
        fprintf(stderr, "echo_server: TLS: %s\n",
                rc == TIDE_ENOSYS ? "this build of tide has no TLS" : tide_strerror(rc));
        return 1;
    }

    /* Every worker's loop and listening socket first, so that a failure stops us before
     * any thread runs; worker 0 picks the port when it is 0. */
    uint16_t port = (uint16_t)opts.port;
    unsigned made = 0;
    int status = 0;
    for (; made < opts.workers; made++) {
        server_app *app = &apps[made];
        app->index = made;
        rc = tide_loop_new(&app->loop);
        if (rc != 0) {
            fprintf(stderr, "echo_server: %s\n", tide_strerror(rc));
            status = 1;
            break;
        }
        app->alive = true;
        if (start_server(app, &opts, port, tls) != 0) {
            status = 1;
            made++;
            break;
        }
        if (made == 0) {
            uint16_t bound = announce(app);
            if (port == 0)
                port = bound;
        }
    }
    /* The servers hold their own references to the configuration. */
    if (tls != NULL)
        tide_tls_config_unref(tls);
    if (status == 0) {
        if ((rc = tide_loop_add_signal_handler(apps[0].loop, SIGINT, on_signal, NULL)) != 0 ||
            (rc = tide_loop_add_signal_handler(apps[0].loop, SIGTERM, on_signal, NULL)) != 0) {
            fprintf(stderr, "echo_server: signal handler: %s\n", tide_strerror(rc));
            status = 1;
        }
    }
    if (status != 0) {
        /* Nothing runs yet: close what was made, on this thread. */
        for (unsigned i = 0; i < made; i++) {
            if (apps[i].server != NULL) {
                tide_server_close(apps[i].server);
                tide_server_abort_clients(apps[i].server);
                apps[i].server = NULL;
                tide_loop_run(apps[i].loop, TIDE_RUN_DEFAULT);
            }
            if (apps[i].loop != NULL) {
                tide_loop_remove_signal_handler(apps[i].loop, SIGINT);
                tide_loop_remove_signal_handler(apps[i].loop, SIGTERM);
                close_worker(&apps[i]);
            }
        }
        return 1;
    }

    /* The other workers must not take SIGINT/SIGTERM: worker 0's loop handles them. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    unsigned started = 1;
    for (; started < opts.workers; started++) {
        rc = pthread_create(&apps[started].thread, NULL, worker_thread, &apps[started]);
        if (rc != 0) {
            fprintf(stderr, "echo_server: thread: %s\n", strerror(rc));
            /* The workers without a thread are shut down on this one below. */
            break;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started < opts.workers) {
        status = 1;
        for_each_worker(shutdown_worker);
    }

    /* Runs until the server and its last client are gone. */
    run_worker(&apps[0]);
    for (unsigned i = 1; i < started; i++)
        pthread_join(apps[i].thread, NULL);
    for (unsigned i = started; i < opts.workers; i++) {
        run_worker(&apps[i]);
        close_worker(&apps[i]);
    }
    tide_loop_remove_signal_handler(apps[0].loop, SIGINT);
    tide_loop_remove_signal_handler(apps[0].loop, SIGTERM);
    close_worker(&apps[0]);
    for (unsigned i = 0; i < opts.workers; i++)
        if (apps[i].status != 0)
            status = 1;
    return status;
}
