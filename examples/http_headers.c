/* http_headers: the header fetcher of asyncio's streams documentation, as a task, over
 * tide's HTTP client (tide/http.h).
 * Given an http:// or https:// URL it sends a HEAD request and prints the status line
 * and each header line of the response as "HTTP header> ...". https is verified by
 * default (system CAs, or --cafile for a private CA; the host of the URL is the name
 * checked).
 *
 *   http_headers [--cafile FILE] [--insecure] URL
 *
 * Exits 0 when a response head was read, 1 on any failure (with tide's message; a head
 * cut short by the end of the connection is one), 2 on bad usage. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <tide.h>

typedef struct fetch {
    tide_loop_t *loop;
    tide_http_url_t url;
    tide_tls_config_t *tls;
} fetch;

static int fail(const char *what, int err) {
    char why[256];
    fprintf(stderr, "http_headers: %s: %s\n", what, tide_strerror_r(err, why, sizeof why));
    return 1;
}

/* The coroutine: connect, HEAD, print the head. */
static int print_http_headers(void *arg) {
    fetch *f = arg;
    /* HTTP/1.0 and a Host without the port, as the asyncio example sends. */
    tide_http_client_options_t options = {.tls = f->tls, .http10 = true};
    tide_http_client_t *client;
    int rc = tide_http_client_connect_await(f->loop, f->url.host, f->url.port, &options, &client);
    if (rc != 0)
        return fail("connect", rc);
    tide_http_header_t host = {.name = "Host", .value = f->url.host};
    tide_http_response_t *response;
    rc = tide_http_client_request_await(client, "HEAD", f->url.path, &host, 1, &response);
    /* Whatever ending the server then chooses (even no close_notify), the head is in:
     * the close's status does not matter here. */
    tide_http_client_close_await(client);
    if (rc == TIDE_EOF || rc == TIDE_EINCOMPLETE) {
        fprintf(stderr, "http_headers: response: the server ended the connection inside "
                        "the header block\n");
        return 1;
    }
    if (rc != 0)
        return fail("response", rc);
    printf("HTTP header> %s\n", response->status_line);
    for (size_t i = 0; i < response->header_count; i++)
        printf("HTTP header> %s\n", response->headers[i].line);
    tide_http_response_free(response);
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
    if (tide_http_url_parse(url, &f.url) != 0) {
        fprintf(stderr, "http_headers: not an http:// or https:// URL: %s\n", url);
        return 2;
    }
    int rc;
    if (f.url.https) {
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
