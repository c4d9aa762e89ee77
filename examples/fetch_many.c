/* fetch_many: the response heads of many URLs at once, at most N connections at a
 * time (asyncio's crawler pattern: gather over tasks, a Semaphore around each fetch,
 * a timeout on each).
 *
 *   fetch_many [--limit N] [--timeout S] [--cafile FILE] URL...
 *
 * URL: http[s]://HOST[:PORT][/PATH] (HOST a name, an IPv4 address or [IPv6]). Each
 * URL is a task; a semaphore of N permits (default 10) bounds the connections open at
 * once; each fetch (connect, request, response head; tide/http.h) must finish within S
 * seconds (default 10). Prints one line per URL, in argument order, once all are done:
 * "URL STATUS-LINE" or "URL error: MESSAGE". A failing URL does not stop the others.
 * Exits 0 when every fetch succeeded, 1 otherwise, 2 on bad usage. https verifies the
 * server against the system CAs, or the CAs of --cafile. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tide.h>

typedef struct target {
    const char *url;
    tide_http_url_t parts;
    char status_line[512];
    const char *problem; /* a usage problem found while parsing, or NULL */
} target;

typedef struct crawl {
    tide_loop_t *loop;
    tide_semaphore_t *slots;
    tide_tls_config_t *tls;
    double timeout;
    target *targets;
    size_t count;
    int *results;
} crawl;

static crawl cr;

/* Splits a URL; returns false (with t->problem) when it is not one we can fetch. */
static bool split_url(target *t) {
    if (strncmp(t->url, "http://", 7) != 0 && strncmp(t->url, "https://", 8) != 0) {
        t->problem = "not an http:// or https:// URL";
        return false;
    }
    if (tide_http_url_parse(t->url, &t->parts) != 0) {
        t->problem = "bad URL";
        return false;
    }
    return true;
}

/* Connects, sends a HEAD request and reads the response head, keeping its first line. */
static int read_head(void *arg) {
    target *t = arg;
    tide_http_client_options_t options = {.tls = t->parts.https ? cr.tls : NULL, .http10 = true};
    tide_http_client_t *client;
    int rc = tide_http_client_connect_await(cr.loop, t->parts.host, t->parts.port, &options,
                                            &client);
    if (rc != 0)
        return rc;
    tide_http_response_t *response = NULL;
    rc = tide_http_client_request_await(client, "HEAD", t->parts.path, NULL, 0, &response);
    if (rc == 0)
        snprintf(t->status_line, sizeof(t->status_line), "%s", response->status_line);
    tide_http_response_free(response);
    tide_http_client_close_await(client);
    return rc;
}

/* One URL: wait for a connection slot, then fetch under the timeout. */
static int fetch_one(void *arg) {
    target *t = arg;
    if (t->problem != NULL)
        return TIDE_EINVAL;
    int rc = tide_semaphore_acquire_await(cr.slots);
    if (rc != 0)
        return rc;
    rc = tide_task_timeout(cr.timeout, read_head, t);
    tide_semaphore_release(cr.slots);
    return rc;
}

static int fetch_all(void *arg) {
    (void)arg;
    tide_task_fn *fns = malloc(cr.count * sizeof(*fns));
    void **args = malloc(cr.count * sizeof(*args));
    if (fns == NULL || args == NULL) {
        free(fns);
        free(args);
        return TIDE_ENOMEM;
    }
    for (size_t i = 0; i < cr.count; i++) {
        fns[i] = fetch_one;
        args[i] = &cr.targets[i];
    }
    /* Small stacks: each task needs little more than its frames (the HTTP client
     * keeps its buffers on the heap), so a thousand URLs cost little. */
    tide_task_options_t small = {.stack_size = 64 * 1024};
    int rc = tide_task_gather_await(cr.count, fns, args, &small, cr.results);
    free(fns);
    free(args);
    return rc;
}

static int usage(void) {
    fprintf(stderr, "usage: fetch_many [--limit N] [--timeout S] [--cafile FILE] URL...\n");
    return 2;
}

int main(int argc, char **argv) {
    unsigned long limit = 10;
    const char *cafile = NULL;
    cr.timeout = 10;
    int first_url = argc;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc) {
            limit = strtoul(argv[++i], &end, 10);
            if (*end != '\0' || limit == 0 || limit > 100000)
                return usage();
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            cr.timeout = strtod(argv[++i], &end);
            if (*end != '\0' || !(cr.timeout > 0))
                return usage();
        } else if (strcmp(argv[i], "--cafile") == 0 && i + 1 < argc) {
            cafile = argv[++i];
        } else if (argv[i][0] == '-') {
            return usage();
        } else {
            first_url = i;
            break;
        }
    }
    cr.count = (size_t)(argc - first_url);
    if (cr.count == 0)
        return usage();
    cr.targets = calloc(cr.count, sizeof(*cr.targets));
    cr.results = calloc(cr.count, sizeof(*cr.results));
    if (cr.targets == NULL || cr.results == NULL)
        return 1;
    bool any_tls = false;
    for (size_t i = 0; i < cr.count; i++) {
        cr.targets[i].url = argv[first_url + (int)i];
        any_tls |= split_url(&cr.targets[i]) && cr.targets[i].parts.https;
    }
    int rc = 0;
    if (any_tls) {
        rc = tide_tls_config_new_client(&cr.tls);
        if (rc == 0 && cafile != NULL)
            rc = tide_tls_config_load_ca_file(cr.tls, cafile);
    }
    if (rc == 0)
        rc = tide_loop_new(&cr.loop);
    if (rc == 0)
        rc = tide_semaphore_new(cr.loop, (unsigned)limit, &cr.slots);
    if (rc == 0)
        rc = tide_loop_run_until_complete(cr.loop, fetch_all, NULL, NULL, NULL);
    if (rc != 0) {
        fprintf(stderr, "fetch_many: %s\n", tide_strerror(rc));
        return 1;
    }
    int failures = 0;
    for (size_t i = 0; i < cr.count; i++) {
        target *t = &cr.targets[i];
        if (cr.results[i] == 0) {
            printf("%s %s\n", t->url, t->status_line);
        } else {
            char why[256];
            printf("%s error: %s\n", t->url,
                   t->problem != NULL ? t->problem
                                      : tide_strerror_r(cr.results[i], why, sizeof(why)));
            failures++;
        }
    }
    tide_semaphore_free(cr.slots);
    rc = tide_loop_close(cr.loop);
    tide_tls_config_unref(cr.tls);
    free(cr.targets);
    free(cr.results);
    if (rc != 0) {
        fprintf(stderr, "fetch_many: loop close: %s\n", tide_strerror(rc));
        return 1;
    }
    return failures == 0 ? 0 : 1;
}
