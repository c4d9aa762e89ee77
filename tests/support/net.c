/* Test helpers for connections and servers; see net.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/net.h"

void nt_conn_cb(tide_loop_t *loop, int status, tide_transport_t *transport,
                tide_protocol_t *protocol, void *arg) {
    nt_conn *c = arg;
    (void)loop;
    c->calls++;
    c->status = status;
    c->transport = transport;
    c->protocol = protocol;
    if (protocol)
        c->made_before_cb = TIDE_CONTAINER_OF(protocol, ts_recorder, base)->made;
    if (c->then)
        c->then(c);
}

bool nt_pred_conn(void *conn) { return ((nt_conn *)conn)->calls > 0; }

/* c cleared, its pool handing out r alone. */
static void conn_for(nt_conn *c, ts_recorder *r) {
    memset(c, 0, sizeof(*c));
    c->pool.items = r;
    c->pool.count = 1;
}

tide_connect_t *nt_connect(tide_loop_t *loop, const char *host, uint16_t port,
                           const tide_connect_options_t *opts, ts_recorder *r, nt_conn *c) {
    conn_for(c, r);
    tide_connect_t *req = NULL;
    assert_int_equal(tide_loop_create_connection(loop, host, port, ts_recorder_factory(),
                                                 &c->pool, opts, nt_conn_cb, c, &req),
                     0);
    assert_non_null(req);
    assert_int_equal(c->calls, 0); /* never from inside the starting call */
    return req;
}

void nt_connect_unix(tide_loop_t *loop, const char *path, ts_recorder *r, nt_conn *c,
                     tide_connect_t **req) {
    conn_for(c, r);
    assert_int_equal(tide_loop_create_unix_connection(loop, path, ts_recorder_factory(),
                                                      &c->pool, NULL, nt_conn_cb, c, req),
                     0);
    assert_int_equal(c->calls, 0);
}

int nt_adopt(tide_loop_t *loop, int fd, bool accepted, ts_recorder *r, nt_conn *c) {
    conn_for(c, r);
    tide_protocol_factory_cb fac = ts_recorder_factory();
    int rc = accepted ? tide_loop_connect_accepted_socket(loop, fd, fac, &c->pool, NULL, nt_conn_cb, c)
                      : tide_loop_connect_socket(loop, fd, fac, &c->pool, NULL, nt_conn_cb, c);
    if (rc == 0)
        assert_int_equal(c->calls + r->made, 0); /* both deferred */
    return rc;
}

void nt_connect_ok(tide_loop_t *loop, const char *host, uint16_t port, ts_recorder *r,
                   nt_conn *c) {
    nt_connect(loop, host, port, NULL, r, c);
    ts_run_until(loop, nt_pred_conn, c, 10);
    assert_int_equal(c->calls, 1);
    assert_int_equal(c->status, 0);
    assert_non_null(c->transport);
    assert_ptr_equal(c->protocol, &r->base);
    assert_int_equal(c->made_before_cb, 1); /* connection_made ran before the callback */
    assert_ptr_equal(r->transport, c->transport);
}

tide_server_t *nt_server(tide_loop_t *loop, const char *host, ts_recorder_pool *pool,
                         const tide_server_options_t *opts) {
    tide_server_t *s = NULL;
    int rc = tide_loop_create_server(loop, host, 0, ts_recorder_factory(), pool, opts, &s);
    if (rc != 0)
        fail_msg("create_server(%s): %s", host ? host : "NULL", tide_strerror(rc));
    assert_non_null(s);
    assert_true(tide_server_socket_count(s) >= 1);
    return s;
}

uint16_t nt_addr_port(const struct sockaddr *addr) {
    if (addr->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)(const void *)addr)->sin_port);
    if (addr->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)(const void *)addr)->sin6_port);
    return 0;
}

uint16_t nt_server_port(const tide_server_t *s, size_t i) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    assert_int_equal(tide_server_get_sockname(s, i, (struct sockaddr *)&ss, &len), 0);
    uint16_t port = nt_addr_port((struct sockaddr *)&ss);
    assert_int_not_equal(port, 0);
    return port;
}

void nt_expect_server_address(const tide_server_t *s, const char *text) {
    char buf[160];
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    assert_int_equal(tide_server_get_sockname(s, 0, (struct sockaddr *)&ss, &len), 0);
    assert_string_equal(tide_format_address((struct sockaddr *)&ss, len, buf, sizeof(buf)), text);
}

char nt_log_text[256];
static char log_needle[64];

static void capture(tide_loop_t *loop, tide_log_level_t level, const char *msg, void *arg) {
    (void)loop;
    (void)arg;
    if (level == TIDE_LOG_WARNING && nt_log_text[0] == '\0' && strstr(msg, log_needle))
        snprintf(nt_log_text, sizeof(nt_log_text), "%s", msg);
}

void nt_capture_log(tide_loop_t *loop, const char *needle) {
    nt_log_text[0] = '\0';
    snprintf(log_needle, sizeof(log_needle), "%s", needle);
    tide_loop_set_log_handler(loop, capture, NULL);
}

bool nt_ipv6_available(void) {
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof(a));
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

static void time_up(tide_loop_t *loop, void *arg) {
    (void)loop;
    *(int *)arg = 1;
}

void nt_run_for(tide_loop_t *loop, double seconds) {
    int done = 0;
    assert_non_null(tide_loop_call_later(loop, seconds, time_up, &done));
    while (!done)
        tide_loop_run(loop, TIDE_RUN_ONCE);
}

static struct sockaddr_in loopback4(uint16_t port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    return a;
}

int nt_raw_client(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = loopback4(port);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static int bound_socket(uint16_t *port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = loopback4(0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

uint16_t nt_refusing_port(int *fd) {
    uint16_t port;
    *fd = bound_socket(&port);
    return port;
}

uint16_t nt_blackhole(int fds[8], int *n) {
    uint16_t port;
    fds[0] = bound_socket(&port);
    *n = 1;
    assert_int_equal(listen(fds[0], 0), 0);
    struct sockaddr_in a = loopback4(port);
    /* Connect until one stays pending: from then on the queue is full. */
    while (*n < 8) {
        int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        assert_true(c >= 0);
        fds[(*n)++] = c;
        int rc = connect(c, (struct sockaddr *)&a, sizeof(a));
        assert_true(rc == 0 || errno == EINPROGRESS);
        struct pollfd p = {.fd = c, .events = POLLOUT};
        if (rc != 0 && poll(&p, 1, 300) == 0)
            return port;
    }
    fail_msg("nt_blackhole: the accept queue never filled");
    return 0;
}

void nt_close_all(int *fds, int n) {
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* ---- the fixture ---------------------------------------------------------------------- */

int nt_setup(void **state) {
    nt_fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->fds_before = ts_count_fds();
    f->loop = ts_loop_new();
    for (int i = 0; i < NT_MAX; i++) {
        ts_recorder_init(&f->srv[i]);
        ts_recorder_init(&f->cli[i]);
    }
    f->pool.items = f->srv;
    f->pool.count = NT_MAX;
    snprintf(f->dir, sizeof(f->dir), "/tmp/tide-net-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    nt_fake_clear();
    *state = f;
    return 0;
}

int nt_teardown(void **state) {
    nt_fixture *f = *state;
    ts_finish(f->loop, f->fds_before);
    assert_int_equal(rmdir(f->dir), 0); /* every socket file was removed */
    for (int i = 0; i < NT_MAX; i++) {
        assert_int_equal(f->srv[i].violations, 0);
        assert_int_equal(f->cli[i].violations, 0);
        ts_recorder_free(&f->srv[i]);
        ts_recorder_free(&f->cli[i]);
    }
    free(f);
    return 0;
}

void nt_listen(nt_fixture *f, const tide_server_options_t *opts) {
    f->server = nt_server(f->loop, "127.0.0.1", &f->pool, opts);
    f->port = nt_server_port(f->server, 0);
}

void nt_listen_unix(nt_fixture *f, const char *path) {
    assert_int_equal(tide_loop_create_unix_server(f->loop, path, ts_recorder_factory(), &f->pool,
                                                  NULL, &f->server),
                     0);
}

void nt_connect_client(nt_fixture *f, int i) {
    nt_connect_ok(f->loop, "127.0.0.1", f->port, &f->cli[i], &f->conn[i]);
}

void nt_close_client(nt_fixture *f, int i) {
    tide_transport_close(f->conn[i].transport);
    ts_run_until(f->loop, ts_pred_lost, &f->cli[i], 5);
}

/* ---- the fake resolver -------------------------------------------------------------- */

#define FAKE_MAX 4
static struct sockaddr_storage fake[FAKE_MAX];
static socklen_t fake_len[FAKE_MAX];
static int fake_count;
static char fake_tag[] = "nt-fake"; /* marks our lists for freeaddrinfo */

void nt_fake_clear(void) { fake_count = 0; }

void nt_fake_set(int i, int family, const char *ip, uint16_t port) {
    assert_true(i >= 0 && i < FAKE_MAX);
    memset(&fake[i], 0, sizeof(fake[i]));
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&fake[i];
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        assert_int_equal(inet_pton(AF_INET, ip, &a->sin_addr), 1);
        fake_len[i] = sizeof(*a);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&fake[i];
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        assert_int_equal(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
        fake_len[i] = sizeof(*a);
    }
    if (fake_count < i + 1)
        fake_count = i + 1;
}

/* One block: the nodes, then a copy of each address. May run on a resolver thread;
 * tests set the entries before starting the lookup. */
static int fake_lookup(const struct addrinfo *hints, struct addrinfo **res) {
    if (hints && (hints->ai_flags & AI_NUMERICHOST))
        return EAI_NONAME;
    if (fake_count == 0)
        return EAI_NONAME;
    size_t n = (size_t)fake_count;
    struct addrinfo *nodes = calloc(1, n * (sizeof(*nodes) + sizeof(struct sockaddr_storage)));
    if (nodes == NULL)
        return EAI_MEMORY;
    struct sockaddr_storage *addrs = (struct sockaddr_storage *)(void *)(nodes + n);
    for (size_t i = 0; i < n; i++) {
        addrs[i] = fake[i];
        nodes[i].ai_family = fake[i].ss_family;
        nodes[i].ai_socktype = SOCK_STREAM;
        nodes[i].ai_protocol = IPPROTO_TCP;
        nodes[i].ai_addr = (struct sockaddr *)&addrs[i];
        nodes[i].ai_addrlen = fake_len[i];
        nodes[i].ai_canonname = fake_tag;
        nodes[i].ai_next = i + 1 < n ? &nodes[i + 1] : NULL;
    }
    *res = nodes;
    return 0;
}

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
typedef void (*fai_fn)(struct addrinfo *);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res) {
    if (node && strcmp(node, NT_FAKE_NAME) == 0)
        return fake_lookup(hints, res);
    gai_fn real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    return real(node, service, hints, res);
}

void freeaddrinfo(struct addrinfo *ai) {
    if (ai && ai->ai_canonname == fake_tag) {
        free(ai);
        return;
    }
    fai_fn real = (fai_fn)dlsym(RTLD_NEXT, "freeaddrinfo");
    real(ai);
}
