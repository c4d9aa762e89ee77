/* line_client: an asyncio line client in C, a task over the streams' _await calls,
 * doing and printing what its Python original does
 * (tests/examples/asyncio/line_client.py, compared by examples.asyncio_line_client):
 *
 *   reader, writer = await asyncio.open_connection('127.0.0.1', 8888, limit=1024)
 *   for line in ['First line.', 'Second line.', 'Third line.', 'Last line.']:
 *       print(f'Send: {line!r}')
 *       writer.write(line.encode() + b'\n')
 *   await writer.drain()
 *   while True:
 *       data = await reader.readline()
 *       line = data.decode().removesuffix('\n')
 *       print(f'Received: {line!r}')
 *       if not data or line == 'Last line.':
 *           break
 *   print('Close the connection')
 *   writer.close()
 *   await writer.wait_closed()
 *
 *   line_client [--host HOST] [--port PORT | --unix PATH]
 *
 * Run it against echo_server. Exits 0 once "Last line." or the end of the stream came
 * back; 1 on any failure (with tide's message).
 * Single-threaded: the task runs on the loop's thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tide.h>

#include "pyrepr.h"

/* Lines are short: a small limit keeps the line buffer small too. */
#define LINE_LIMIT 1024

typedef struct client {
    tide_loop_t *loop;
    const char *host;
    unsigned port;
    const char *unix_path;
} client;

static int fail(const char *what, int err) {
    fprintf(stderr, "line_client: %s: %s\n", what, tide_strerror(err));
    return 1;
}

static int line_client(void *arg) {
    static const char *const lines[] = {"First line.", "Second line.", "Third line.",
                                        "Last line."};
    client *c = arg;
    tide_reader_t *reader;
    tide_writer_t *writer;
    int rc = c->unix_path != NULL
                 ? tide_loop_open_unix_connection_await(c->loop, c->unix_path, LINE_LIMIT, NULL,
                                                        &reader, &writer)
                 : tide_loop_open_connection_await(c->loop, c->host, (uint16_t)c->port, LINE_LIMIT,
                                                   NULL, &reader, &writer);
    if (rc != 0)
        return fail("connect", rc);

    for (size_t i = 0; i < sizeof lines / sizeof lines[0] && rc == 0; i++) {
        printf("Send: ");
        py_print_repr(stdout, lines[i], strlen(lines[i]), false);
        printf("\n");
        rc = tide_writer_write(writer, lines[i], strlen(lines[i]));
        if (rc == 0)
            rc = tide_writer_write(writer, "\n", 1);
    }
    if (rc == 0)
        rc = tide_writer_drain_await(writer);

    /* readline's buffer holds the longest line the reader accepts. */
    char line[LINE_LIMIT + 1];
    size_t n;
    bool last = false;
    while (rc == 0 && !last) {
        rc = tide_reader_readline_await(reader, line, sizeof line, &n);
        if (rc == TIDE_EOF) { /* readline() at the end of the stream: b'' */
            rc = 0;
            n = 0;
            last = true;
        }
        if (rc != 0)
            break;
        if (n > 0 && line[n - 1] == '\n')
            n--;
        printf("Received: ");
        py_print_repr(stdout, line, n, false);
        printf("\n");
        last = last || (n == strlen("Last line.") && memcmp(line, "Last line.", n) == 0);
    }
    printf("Close the connection\n");
    tide_writer_close(writer);
    int closed = tide_writer_wait_closed_await(writer);
    if (rc != 0)
        return fail("readline", rc);
    return closed != 0 ? fail("close", closed) : 0;
}

static int parse_args(int argc, char **argv, client *c) {
    *c = (client){.host = "127.0.0.1", .port = 8888};
    for (int i = 1; i < argc; i += 2) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        char *end;
        if (val != NULL && strcmp(arg, "--host") == 0) {
            c->host = val;
        } else if (val != NULL && strcmp(arg, "--port") == 0) {
            unsigned long v = strtoul(val, &end, 10);
            if (*val == '\0' || *end != '\0' || v == 0 || v > 65535) {
                fprintf(stderr, "line_client: bad port '%s'\n", val);
                return 2;
            }
            c->port = (unsigned)v;
        } else if (val != NULL && strcmp(arg, "--unix") == 0) {
            c->unix_path = val;
        } else {
            fprintf(stderr, "usage: line_client [--host HOST] [--port PORT | --unix PATH]\n");
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
    int rc = tide_loop_new(&c.loop);
    if (rc != 0)
        return fail("loop", rc);
    status = 1;
    rc = tide_loop_run_until_complete(c.loop, line_client, &c, NULL, &status);
    if (rc != 0)
        status = fail("run", rc);
    if ((rc = tide_loop_close(c.loop)) != 0)
        status = fail("loop close", rc);
    return status;
}
