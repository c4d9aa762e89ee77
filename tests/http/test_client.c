/* The HTTP/1.1 client (include/tide/http.h) against real servers the test starts with
 * tests/http/servers.py: Python's http.server in HTTP/1.1 mode (keep-alive, HEAD,
 * Content-Length and until-close bodies, a 1 MiB body), a raw Python server for
 * chunked bodies with trailers and for misbehaviour (endless header lines, an endless
 * line, an oversized head, a reset mid-body, bad and overflowing chunk sizes, a head
 * or body cut short, Content-Length with Transfer-Encoding, obs-fold), and Debian's
 * nginx over HTTP and HTTPS (keep-alive seen through nginx's connection number,
 * chunked SSI output, verification against the test CA and without it). Every wait is
 * bounded: the server's announcement, each task, the server's exit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/support.h"
#include "support/tls.h"

/* ---- the server process ------------------------------------------------------------------ */

typedef struct server {
    pid_t pid;
    int in_fd; /* its stdin: closing it stops the server */
    uint16_t port, tls_port;
} server;

static const char *python(void) {
    return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

/* Starts servers.py mode [a b]; waits (bounded) for its "PORT p [q]" line. */
static void server_start(server *s, const char *mode, const char *a, const char *b) {
    const char *src = getenv("TIDE_SOURCE_DIR");
    assert_non_null(src);
    char script[512];
    snprintf(script, sizeof script, "%s/tests/http/servers.py", src);
    int in[2], out[2];
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        execlp(python(), python(), script, mode, a, b, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    s->in_fd = in[1];
    char line[128];
    size_t len = 0;
    double deadline = ts_scaled(20) * 1000;
    while (len < sizeof line - 1 && (len == 0 || line[len - 1] != '\n')) {
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        int ready = poll(&p, 1, (int)deadline);
        assert_true(ready == 1); /* the server announced itself in time */
        ssize_t n = read(out[0], line + len, sizeof line - 1 - len);
        assert_true(n > 0);
        len += (size_t)n;
    }
    close(out[0]);
    line[len] = '\0';
    unsigned p = 0, q = 0;
    assert_true(sscanf(line, "PORT %u %u", &p, &q) >= 1);
    s->port = (uint16_t)p;
    s->tls_port = (uint16_t)q;
}

/* Closes its stdin and waits (bounded) until it has exited cleanly. */
static void server_stop(server *s) {
    close(s->in_fd);
    int status = 0;
    for (int i = 0; i < 400; i++) {
        pid_t r = waitpid(s->pid, &status, WNOHANG);
        if (r == s->pid) {
            assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
            return;
        }
        poll(NULL, 0, 50); /* a child's exit cannot be polled for without a signal fd */
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &status, 0);
    fail_msg("the server did not stop");
}

/* ---- the client in a task ------------------------------------------------------------------- */

typedef struct job {
    tide_loop_t *loop;
    uint16_t port;
    tide_tls_config_t *tls;
    const char *path;
    int expect; /* the code the request must end with */
} job;

static int get(tide_http_client_t *c, const char *method, const char *path,
               tide_http_response_t **r) {
    return tide_http_client_request_await(c, method, path, NULL, 0, r);
}

/* Python's http.server: keep-alive (one connection, X-Conn unchanged), HEAD, 404,
 * a 1 MiB body, then a body that runs until close (the connection is then done). */
static int stdlib_task(void *arg) {
    job *j = arg;
    tide_http_client_t *c;
    TS_CHECK(tide_http_client_connect_await(j->loop, "127.0.0.1", j->port, NULL, &c) == 0);
    tide_http_response_t *r, *r2;
    TS_CHECK(get(c, "GET", "/hello", &r) == 0);
    TS_CHECK(r->status == 200 && r->version == 11 && r->keep_alive);
    TS_CHECK(strcmp(r->reason, "OK") == 0 && strcmp(r->status_line, "HTTP/1.1 200 OK") == 0);
    TS_CHECK(r->body_len == 12 && memcmp(r->body, "hello world\n", 12) == 0 && r->body[12] == 0);
    const tide_http_header_t *conn = tide_http_response_header(r, "x-conn");
    TS_CHECK(conn != NULL && tide_http_client_is_reusable(c));
    TS_CHECK(get(c, "HEAD", "/hello", &r2) == 0);
    TS_CHECK(r2->status == 200 && r2->body_len == 0);
    TS_CHECK(strcmp(tide_http_response_header(r2, "Content-Length")->value, "12") == 0);
    TS_CHECK(strcmp(tide_http_response_header(r2, "X-Conn")->value, conn->value) == 0);
    tide_http_response_free(r2);
    TS_CHECK(get(c, "GET", "/missing", &r2) == 0);
    TS_CHECK(r2->status == 404 && r2->body_len == 9);
    tide_http_response_free(r2);
    TS_CHECK(get(c, "GET", "/big", &r2) == 0);
    TS_CHECK(r2->status == 200 && r2->body_len == 1 << 20);
    for (size_t i = 0; i < r2->body_len; i++)
        TS_CHECK(r2->body[i] == i % 251);
    TS_CHECK(strcmp(tide_http_response_header(r2, "X-Conn")->value, conn->value) == 0);
    tide_http_response_free(r2);
    tide_http_response_free(r);
    /* Bad arguments are refused before anything is sent; the connection goes on. */
    TS_CHECK(get(c, "GET", "/a b", &r) == TIDE_EINVAL);
    TS_CHECK(get(c, "G\r\nET", "/", &r) == TIDE_EINVAL);
    tide_http_header_t evil = {.name = "X", .value = "a\r\nInjected: 1"};
    TS_CHECK(tide_http_client_request_await(c, "GET", "/", &evil, 1, &r) == TIDE_EINVAL);
    TS_CHECK(get(c, "GET", "/until-close", &r) == 0);
    TS_CHECK(r->status == 200 && !r->keep_alive && r->body_len == 9);
    TS_CHECK(memcmp(r->body, "all of it", 9) == 0);
    tide_http_response_free(r);
    TS_CHECK(!tide_http_client_is_reusable(c));
    TS_CHECK(get(c, "GET", "/hello", &r) == TIDE_ECLOSED);
    tide_http_client_close_await(c);
    /* A body larger than allowed is refused from its Content-Length. */
    tide_http_client_options_t small = {.max_body = 1000};
    TS_CHECK(tide_http_client_connect_await(j->loop, "127.0.0.1", j->port, &small, &c) == 0);
    TS_CHECK(get(c, "GET", "/big", &r) == TIDE_EMSGSIZE && r == NULL);
    tide_http_client_close_await(c);
    return 0;
}

static void test_stdlib(void **state) {
    (void)state;
    server s;
    server_start(&s, "stdlib", NULL, NULL);
    tide_loop_t *loop = ts_loop_new();
    job j = {.loop = loop, .port = s.port};
    assert_int_equal(ts_run_task(loop, stdlib_task, &j), 0);
    ts_loop_close(loop);
    server_stop(&s);
}

/* Chunked responses with extensions and a trailer, twice on one connection. */
static int chunked_task(void *arg) {
    job *j = arg;
    tide_http_client_t *c;
    TS_CHECK(tide_http_client_connect_await(j->loop, "localhost", j->port, NULL, &c) == 0);
    for (int i = 0; i < 2; i++) {
        tide_http_response_t *r;
        TS_CHECK(get(c, "GET", "/chunked", &r) == 0);
        TS_CHECK(r->status == 200 && r->keep_alive);
        TS_CHECK(r->body_len == 19 && memcmp(r->body, "hello chunked world", 19) == 0);
        TS_CHECK(r->trailer_count == 1 && strcmp(r->trailers[0].name, "X-Sum") == 0 &&
                 strcmp(r->trailers[0].value, "42") == 0);
        tide_http_response_free(r);
    }
    tide_http_client_close_await(c);
    return 0;
}

/* One misbehaviour: a fresh connection, one request, the expected error. */
static int rogue_task(void *arg) {
    job *j = arg;
    tide_http_client_t *c;
    TS_CHECK(tide_http_client_connect_await(j->loop, "127.0.0.1", j->port, NULL, &c) == 0);
    tide_http_response_t *r = NULL;
    int rc = get(c, "GET", j->path, &r);
    if (rc != j->expect)
        fprintf(stderr, "%s: got %s, want %s\n", j->path, tide_err_name(rc),
                tide_err_name(j->expect));
    TS_CHECK(rc == j->expect && r == NULL);
    TS_CHECK(!tide_http_client_is_reusable(c));
    TS_CHECK(get(c, "GET", "/chunked", &r) == TIDE_ECLOSED);
    tide_http_client_close_await(c);
    return 0;
}

static void test_rogue(void **state) {
    (void)state;
    static const struct {
        const char *path;
        int expect;
    } cases[] = {
        {"/endless-headers", TIDE_EHTTP_TOO_MANY_HEADERS},
        {"/long-line", TIDE_EHTTP_LINE_TOO_LONG},
        {"/oversized-head", TIDE_EHTTP_HEAD_TOO_LARGE},
        {"/reset-mid-body", TIDE_ECONNRESET},
        {"/bad-chunk", TIDE_EHTTP_CHUNK},
        {"/chunk-overflow", TIDE_EHTTP_CHUNK},
        {"/cut-head", TIDE_EINCOMPLETE},
        {"/cut-body", TIDE_EINCOMPLETE},
        {"/cl-te", TIDE_EHTTP_AMBIGUOUS},
        {"/fold", TIDE_EHTTP_FOLD},
        {"/silent-close", TIDE_EOF},
    };
    server s;
    server_start(&s, "rogue", NULL, NULL);
    tide_loop_t *loop = ts_loop_new();
    job j = {.loop = loop, .port = s.port};
    assert_int_equal(ts_run_task(loop, chunked_task, &j), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        j.path = cases[i].path;
        j.expect = cases[i].expect;
        assert_int_equal(ts_run_task(loop, rogue_task, &j), 0);
    }
    ts_loop_close(loop);
    server_stop(&s);
}

/* nginx: keep-alive (its $connection number stays), HEAD, a static 1 MiB body, the
 * chunked output of SSI; over TLS verified with the test CA, and refused without it. */
static int nginx_task(void *arg) {
    job *j = arg;
    tide_http_client_options_t o = {.tls = j->tls, .server_hostname = "localhost"};
    tide_http_client_t *c;
    TS_CHECK(
        tide_http_client_connect_await(j->loop, "127.0.0.1", j->port, j->tls ? &o : NULL, &c) == 0);
    tide_http_response_t *r, *r2;
    TS_CHECK(get(c, "GET", "/index.txt", &r) == 0);
    TS_CHECK(r->status == 200 && r->body_len == 17 &&
             memcmp(r->body, "hello from nginx\n", 17) == 0);
    const tide_http_header_t *conn = tide_http_response_header(r, "X-Conn");
    TS_CHECK(conn != NULL);
    TS_CHECK(get(c, "HEAD", "/big.bin", &r2) == 0);
    TS_CHECK(r2->status == 200 && r2->body_len == 0);
    TS_CHECK(strcmp(tide_http_response_header(r2, "Content-Length")->value, "1048576") == 0);
    tide_http_response_free(r2);
    TS_CHECK(get(c, "GET", "/big.bin", &r2) == 0);
    TS_CHECK(r2->body_len == 1 << 20 && r2->body[1000] == 1000 % 251);
    tide_http_response_free(r2);
    TS_CHECK(get(c, "GET", "/ssi/page.html", &r2) == 0);
    const tide_http_header_t *te = tide_http_response_header(r2, "Transfer-Encoding");
    TS_CHECK(te != NULL && strcmp(te->value, "chunked") == 0);
    char want[64];
    snprintf(want, sizeof want, "before %s after\n", conn->value);
    TS_CHECK(r2->body_len == 50 * strlen(want));
    TS_CHECK(memcmp(r2->body, want, strlen(want)) == 0);
    TS_CHECK(strcmp(tide_http_response_header(r2, "X-Conn")->value, conn->value) == 0);
    tide_http_response_free(r2);
    TS_CHECK(get(c, "GET", "/nothing", &r2) == 0);
    TS_CHECK(r2->status == 404 && tide_http_client_is_reusable(c));
    tide_http_response_free(r2);
    tide_http_response_free(r);
    tide_http_client_close_await(c);
    if (j->tls) {
        /* The system's CAs do not know the test CA. */
        tide_tls_config_t *system;
        TS_CHECK(tide_tls_config_new_client(&system) == 0);
        o.tls = system;
        int rc = tide_http_client_connect_await(j->loop, "127.0.0.1", j->port, &o, &c);
        tide_tls_config_unref(system);
        TS_CHECK(rc == TIDE_ETLS_CERT_UNTRUSTED && c == NULL);
    }
    return 0;
}

static void test_nginx(void **state) {
    (void)state;
    if (access("/usr/sbin/nginx", X_OK) != 0) {
        fprintf(stderr, "nginx is not installed (Debian package nginx): skipped\n");
        skip();
    }
    const tt_certs *certs = tt_certs_get();
    server s;
    server_start(&s, "nginx", certs->server, certs->server_key);
    tide_loop_t *loop = ts_loop_new();
    job j = {.loop = loop, .port = s.port};
    assert_int_equal(ts_run_task(loop, nginx_task, &j), 0);
    j.port = s.tls_port;
    j.tls = tt_client_config(NULL, 10);
    assert_int_equal(ts_run_task(loop, nginx_task, &j), 0);
    tide_tls_config_unref(j.tls);
    ts_loop_close(loop);
    server_stop(&s);
}

/* URLs split as http_headers needs them. */
static void test_url(void **state) {
    (void)state;
    tide_http_url_t u;
    assert_int_equal(tide_http_url_parse("https://[::1]:8443/a?b", &u), 0);
    assert_true(u.https);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 8443);
    assert_string_equal(u.path, "/a?b");
    assert_int_equal(tide_http_url_parse("http://example.org", &u), 0);
    assert_int_equal(u.port, 80);
    assert_string_equal(u.path, "/");
    assert_int_equal(tide_http_url_parse("ftp://x/", &u), TIDE_EINVAL);
    assert_int_equal(tide_http_url_parse("http://x/a b", &u), TIDE_EINVAL);
    assert_int_equal(tide_http_url_parse("http://x:0/", &u), TIDE_EINVAL);
    assert_int_equal(tide_http_url_parse("http://x:65536/", &u), TIDE_EINVAL);
    assert_int_equal(tide_http_url_parse("http://:80/", &u), TIDE_EINVAL);
    assert_int_equal(tide_http_url_parse("http://[::1/", &u), TIDE_EINVAL);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url),
        cmocka_unit_test(test_stdlib),
        cmocka_unit_test(test_rogue),
        cmocka_unit_test(test_nginx),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
