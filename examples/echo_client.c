/* echo_client: tide's own streams echo client, a task with the _await calls, richer
 * than asyncio's documented tcp_echo_client (which is asyncio_tcp_echo_client). It
 * connects, sends its message in parts, half-closes, reads until EOF and closes,
 * logging each step; it exits 0 once exactly what it sent came back.
 *
 *   echo_client [--host HOST] [--port PORT | --unix PATH]
 *               [--tls [--cafile FILE] [--server-name NAME]] [MESSAGE]
 *
 * Without MESSAGE it sends "This is the message. ", "It will be sent ", "in parts.".
 * With --tls the connection is TLS, verified against the system CAs or --cafile; TLS
 * has no half-close, so the client then reads until everything came back instead of
 * until EOF.
 * Any failure prints tide's message for it and exits 1. Single-threaded: the task
 * runs on the loop's thread. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tide.h>

typedef struct client {
    tide_loop_t *loop;
    const char *host;
    unsigned port;
    const char *unix_path;
    bool tls;
    const char *cafile;
    const char *server_name;
    tide_tls_config_t *tls_config;
    const char *parts[3];
    size_t nparts;
} client;

static int fail(const char *what, int err) {
    char why[256];
    fprintf(stderr, "echo_client: %s: %s\n", what, tide_strerror_r(err, why, sizeof why));
    return 1;
}

/* The coroutine: everything between open and wait_closed reads top to bottom. */
static int echo_client(void *arg) {
    client *c = arg;
    tide_reader_t *reader;
    tide_writer_t *writer;
    tide_connect_options_t options = {.tls = c->tls_config, .server_hostname = c->server_name};
    int rc = c->unix_path != NULL
                 ? tide_loop_open_unix_connection_await(c->loop, c->unix_path,
                                                        TIDE_STREAM_DEFAULT_LIMIT, &options,
                                                        &reader, &writer)
                 : tide_loop_open_connection_await(c->loop, c->host, (uint16_t)c->port,
                                                   TIDE_STREAM_DEFAULT_LIMIT, &options, &reader,
                                                   &writer);
    if (rc != 0)
        return fail("connect", rc);

    size_t sent = 0;
    for (size_t i = 0; i < c->nparts && rc == 0; i++) {
        printf("Send: '%s'\n", c->parts[i]);
        rc = tide_writer_write(writer, c->parts[i], strlen(c->parts[i]));
        sent += strlen(c->parts[i]);
    }
    if (rc == 0)
        rc = tide_writer_drain_await(writer);
    bool eof_sent = false;
    if (rc == 0 && tide_writer_can_write_eof(writer)) {
        printf("Send: EOF\n");
        rc = tide_writer_write_eof(writer);
        eof_sent = rc == 0;
    }
    if (rc != 0) {
        tide_writer_abort(writer);
        tide_writer_wait_closed_await(writer);
        return fail("send", rc);
    }

    /* Read until EOF (or, without a half-close, until all came back); what comes back
     * is compared with what was sent. */
    char *echo = malloc(sent + 1);
    size_t got = 0;
    char buf[4096];
    size_t n;
    while (echo != NULL) {
        if (!eof_sent && got == sent) {
            rc = TIDE_EOF; /* everything came back: as good as the EOF */
            break;
        }
        if ((rc = tide_reader_read_await(reader, buf, sizeof buf, &n)) != 0)
            break;
        printf("Received: '%.*s'\n", (int)n, buf);
        if (n > sent - got) {
            rc = TIDE_EPROTO; /* more than was sent */
            break;
        }
        memcpy(echo + got, buf, n);
        got += n;
    }
    printf("Close the connection\n");
    tide_writer_close(writer);
    int closed = tide_writer_wait_closed_await(writer);

    int status = 0;
    if (echo == NULL)
        status = fail("echo buffer", TIDE_ENOMEM);
    else if (rc != TIDE_EOF)
        status = fail("read", rc);
    else if (closed != 0)
        status = fail("close", closed);
    else {
        size_t off = 0;
        for (size_t i = 0; i < c->nparts && status == 0; i++) {
            size_t len = strlen(c->parts[i]);
            if (off + len > got || memcmp(echo + off, c->parts[i], len) != 0)
                status = fail("echo", TIDE_EPROTO);
            off += len;
        }
        if (status == 0 && off != got)
            status = fail("echo", TIDE_EPROTO);
    }
    free(echo);
    return status;
}

/* ---- command line and main ---------------------------------------------------------- */

static void usage(FILE *out) {
    fprintf(out, "usage: echo_client [--host HOST] [--port PORT | --unix PATH]\n"
                 "                   [--tls [--cafile FILE] [--server-name NAME]] [MESSAGE]\n"
                 "  --host HOST          server address or name (default 127.0.0.1)\n"
                 "  --port PORT          TCP port (default 8888)\n"
                 "  --unix PATH          connect to a Unix socket instead\n"
                 "  --tls                use TLS, verifying the server\n"
                 "  --cafile FILE        trust the CA certificates in FILE (PEM)\n"
                 "  --server-name NAME   the name to verify (default: HOST)\n");
}

static int parse_args(int argc, char **argv, client *c) {
    *c = (client){.host = "127.0.0.1",
                  .port = 8888,
                  .parts = {"This is the message. ", "It will be sent ", "in parts."},
                  .nparts = 3};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(arg, "--tls") == 0) {
            c->tls = true;
            continue;
        }
        if (arg[0] != '-') {
            if (i + 1 != argc) {
                usage(stderr);
                return 2;
            }
            c->parts[0] = arg;
            c->nparts = 1;
            break;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "echo_client: incomplete option '%s'\n", arg);
            return 2;
        }
        const char *val = argv[++i];
        char *end;
        if (strcmp(arg, "--host") == 0) {
            c->host = val;
        } else if (strcmp(arg, "--port") == 0) {
            unsigned long v = strtoul(val, &end, 10);
            if (*val == '\0' || *end != '\0' || v == 0 || v > 65535) {
                fprintf(stderr, "echo_client: bad port '%s'\n", val);
                return 2;
            }
            c->port = (unsigned)v;
        } else if (strcmp(arg, "--unix") == 0) {
            c->unix_path = val;
        } else if (strcmp(arg, "--cafile") == 0) {
            c->cafile = val;
        } else if (strcmp(arg, "--server-name") == 0) {
            c->server_name = val;
        } else {
            fprintf(stderr, "echo_client: unknown option '%s'\n", arg);
            usage(stderr);
            return 2;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    client c;
    int status = parse_args(argc, argv, &c);
    if (status != 0)
        return status;
    int rc;
    if (c.tls) {
        if ((rc = tide_tls_config_new_client(&c.tls_config)) != 0)
            return fail("TLS", rc);
        if (c.cafile && (rc = tide_tls_config_load_ca_file(c.tls_config, c.cafile)) != 0) {
            tide_tls_config_unref(c.tls_config);
            return fail(c.cafile, rc);
        }
    }
    rc = tide_loop_new(&c.loop);
    if (rc != 0) {
        tide_tls_config_unref(c.tls_config);
        return fail("loop", rc);
    }
    /* asyncio.run(tcp_echo_client(...)): the loop runs until the task is done. */
    status = 1;
    rc = tide_loop_run_until_complete(c.loop, echo_client, &c, NULL, &status);
    if (rc != 0)
        status = fail("run", rc);
    if ((rc = tide_loop_close(c.loop)) != 0)
        status = fail("loop close", rc);
    tide_tls_config_unref(c.tls_config);
    return status;
}
