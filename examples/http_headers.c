/* http_headers: the header fetcher of asyncio's streams documentation, as a task.
 * Given an http:// or https:// URL it sends a HEAD request and prints each header line
 * of the response as "HTTP header> ...". https is verified by default (system CAs, or
 * --cafile for a private CA; the host of the URL is the name checked).
 *
 *   http_headers [--cafile FILE] [--insecure] URL
 *
 * URL: http[s]://HOST[:PORT][/PATH], HOST a name, an IPv4 address or [IPv6]. Exits 0
 * when a response header block was read, 1 on any failure (with tide's message), 2 on
 * bad usage. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tide.h>

#define LINE_LIMIT 8192
#define MAX_HEADERS 200

typedef struct fetch {
    tide_loop_t *loop;
    bool https;
    char host[256];
    unsigned port;
    const char *path;
    tide_tls_config_t *tls;
} fetch;

static int fail(const char *what, int err) {
    char why[256];
    fprintf(stderr, "http_headers: %s: %s\n", what, tide_strerror_r(err, why, sizeof why));
    return 1;
}

/* Splits the URL into f; bytes that would let the URL rewrite the request (spaces,
 * control characters) are refused. Returns 0 or TIDE_EINVAL. */
static int parse_url(const char *url, fetch *f) {
    const char *rest;
    if (strncmp(url, "http://", 7) == 0) {
        rest = url + 7;
        f->port = 80;
    } else if (strncmp(url, "https://", 8) == 0) {
        rest = url + 8;
        f->https = true;
        f->port = 443;
    } else {
        return TIDE_EINVAL;
    }
    for (const char *p = rest; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return TIDE_EINVAL;
    const char *host_end;
    const char *after;
    if (rest[0] == '[') {
        host_end = strchr(rest, ']');
        if (host_end == NULL)
            return TIDE_EINVAL;
        rest++;
        after = host_end + 1;
    } else {
        host_end = rest + strcspn(rest, ":/");
        after = host_end;
    }
    size_t host_len = (size_t)(host_end - rest);
    if (host_len == 0 || host_len >= sizeof(f->host))
        return TIDE_EINVAL;
    memcpy(f->host, rest, host_len);
    f->host[host_len] = '\0';
    if (*after == ':') {
        char *end;
        unsigned long port = strtoul(after + 1, &end, 10);
        if (end == after + 1 || port == 0 || port > 65535 || (*end != '\0' && *end != '/'))
            return TIDE_EINVAL;
        f->port = (unsigned)port;
        after = end;
    }
    if (*after != '\0' && *after != '/')
        return TIDE_EINVAL;
    f->path = *after ? after : "/";
    return 0;
}

/* The coroutine: open, send the request, print header lines up to the blank line. */
static int print_http_headers(void *arg) {
    fetch *f = arg;
    tide_connect_options_t options = {.tls = f->tls};
    tide_reader_t *reader;
    tide_writer_t *writer;
    int rc = tide_loop_open_connection_await(f->loop, f->host, (uint16_t)f->port, LINE_LIMIT,
                                             &options, &reader, &writer);
    if (rc != 0)
        return fail("connect", rc);

    char request[1024];
    int len = snprintf(request, sizeof request, "HEAD %s HTTP/1.0\r\nHost: %s\r\n\r\n", f->path,
                       f->host);
    if (len < 0 || (size_t)len >= sizeof request)
        rc = TIDE_ENAMETOOLONG;
    else
        rc = tide_writer_write(writer, request, (size_t)len);

    static char line[LINE_LIMIT + 1];
    size_t n = 0;
    int headers = 0;
    bool complete = false; /* the blank line that ends the head was read */
    while (rc == 0 && (rc = tide_reader_readline_await(reader, line, sizeof line, &n)) == 0) {
        if (n == 0 || line[n - 1] != '\n')
            break; /* the stream ended inside a line: the head is cut short */
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        if (n == 0) {
            complete = true;
            break;
        }
        printf("HTTP header> %.*s\n", (int)n, line);
        if (++headers > MAX_HEADERS)
            rc = TIDE_ELIMIT;
    }
    /* Whatever ending the server then chooses (even no close_notify), the headers are
     * in: the close's status does not matter here. */
    tide_writer_close(writer);
    tide_writer_wait_closed_await(writer);
    if (rc != 0 && rc != TIDE_EOF)
        return fail("response", rc);
    if (!complete || headers == 0) {
        /* Ended (cleanly, even with TLS close_notify) before the blank line. */
        fprintf(stderr, "http_headers: response: the server ended the connection inside "
                        "the header block\n");
        return 1;
    }
    return 0;
}

static void usage(FILE *out) {
    fprintf(out, "usage: http_headers [--cafile FILE] [--insecure] URL\n"
                 "  URL          http[s]://HOST[:PORT][/PATH]\n"
                 "  --cafile F   trust the CA certificates in F (PEM) instead of the system's\n"
                 "  --insecure   do not verify the server (https)\n");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    fetch f = {0};
    const char *url = NULL, *cafile = NULL;
    bool insecure = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--cafile") == 0 && i + 1 < argc) {
            cafile = argv[++i];
        } else if (strcmp(argv[i], "--insecure") == 0) {
            insecure = true;
        } else if (argv[i][0] != '-' && url == NULL) {
            url = argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (url == NULL) {
        usage(stderr);
        return 2;
    }
    if (parse_url(url, &f) != 0) {
        fprintf(stderr, "http_headers: not an http:// or https:// URL: %s\n", url);
        return 2;
    }
    int rc;
    if (f.https) {
        if ((rc = tide_tls_config_new_client(&f.tls)) != 0)
            return fail("TLS", rc);
        if (cafile && (rc = tide_tls_config_load_ca_file(f.tls, cafile)) != 0) {
            tide_tls_config_unref(f.tls);
            return fail(cafile, rc);
        }
        if (insecure)
            tide_tls_config_set_verify_peer(f.tls, false);
    }
    if ((rc = tide_loop_new(&f.loop)) != 0) {
        tide_tls_config_unref(f.tls);
        return fail("loop", rc);
    }
    int status = 1;
    rc = tide_loop_run_until_complete(f.loop, print_http_headers, &f, NULL, &status);
    if (rc != 0)
        status = fail("run", rc);
    if ((rc = tide_loop_close(f.loop)) != 0)
        status = fail("loop close", rc);
    tide_tls_config_unref(f.tls);
    return status;
}
