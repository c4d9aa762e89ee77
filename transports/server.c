/* Servers: listening sockets, the accept loop, the clients attached to a server,
 * and waiting for a server to become idle.
 *
 * Accepting is on exactly when the server is serving, not closed, not paused by the
 * user, not backing off after EMFILE/ENFILE/ENOBUFS/ENOMEM, and below max_connections;
 * update_watchers() is the one place that turns that into libev state, so every event
 * that changes one of the conditions just calls it.
 *
 * Lifetime: a server is freed once it is closed, has no client and no pending
 * wait_closed, and always through a deferred call, so the pointer stays valid until
 * the callback that made it idle has returned (a client's connection_lost may close
 * its already closed server). The listener array is kept until then too, so the accept
 * loop can re-check the server after running the user's factory, which may close it.
 *
 * Everything runs on the loop's thread. The user's code runs from the accept loop
 * (the factory), from on_error, and from wait_closed callbacks. */
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "tide/executor.h"
#include "transports/tls_int.h"
#include "transports/transport_int.h"

#define DEFAULT_BACKLOG 100
#define DEFAULT_RETRY_DELAY 1.0
#define PORT_ZERO_TRIES 8

typedef struct listener {
    tide_server_t *server;
    int fd; /* -1 once closed */
    tide__io io;
} listener;

typedef struct waiter {
    tide__queue node;
    tide_server_t *server;
    tide_server_closed_cb cb;
    void *arg;
    int status;
    tide__timer timer;
    tide__call call;
} waiter;

struct tide_server {
    tide_loop_t *loop;
    tide__resource resource;
    tide_protocol_factory_cb factory;
    void *factory_arg;
    tide_server_options_t opts;
    listener *ls;
    size_t nls;
    tide__queue clients; /* tide_transport_t.server_node */
    size_t nclients;
    size_t handshakes; /* TLS clients still in their handshake (TIDE__T_HANDSHAKING) */
    tide__queue waiters;
    bool serving;
    bool paused;
    bool backoff;
    bool closed;
    tide__timer retry;
    tide__call free_call;
    char *unix_path; /* removed on close if it is still our socket */
    dev_t unix_dev;
    ino_t unix_ino;
};

/* ---- accepting on or off ----------------------------------------------------------- */

static bool wants_accept(const tide_server_t *s) {
    return s->serving && !s->closed && !s->paused && !s->backoff &&
           (s->opts.max_connections == 0 || s->nclients < s->opts.max_connections) &&
           (s->opts.max_handshakes == 0 || s->handshakes < s->opts.max_handshakes);
}

static void update_watchers(tide_server_t *s) {
    bool on = wants_accept(s);
    for (size_t i = 0; i < s->nls; i++) {
        listener *l = &s->ls[i];
        if (l->fd < 0)
            continue;
        if (on) {
            int rc = tide__io_start(&l->io, TIDE__IO_READ);
            if (rc != 0)
                tide__log(s->loop, TIDE_LOG_ERROR, "server: cannot watch a listening socket: %s",
                          tide_strerror(rc));
        } else {
            tide__io_stop(&l->io, TIDE__IO_READ);
        }
    }
}

/* ---- lifetime ---------------------------------------------------------------------- */

static bool finished(const tide_server_t *s) {
    return s->closed && s->nclients == 0 && tide__queue_empty(&s->waiters);
}

static void release(tide_server_t *s) {
    tide__loop_undefer(&s->free_call);
    tide__loop_unregister(s->loop, &s->resource);
    tide_tls_config_unref(s->opts.tls);
    free(s->ls);
    free(s->unix_path);
    free(s);
}

static void free_server(tide__call *call) {
    tide_server_t *s = TIDE__QUEUE_DATA(call, tide_server_t, free_call);
    /* Something may have started waiting since the free was queued. */
    if (finished(s))
        release(s);
}

static void maybe_free(tide_server_t *s) {
    if (finished(s))
        tide__loop_defer(s->loop, &s->free_call);
}

static void waiter_finish(waiter *w, int status) {
    tide_server_t *s = w->server;
    tide__queue_remove(&w->node);
    tide__timer_stop(&w->timer);
    tide__loop_undefer(&w->call);
    w->cb(s, status, w->arg);
    free(w);
    /* The last wait_closed callback has returned: free now rather than on a later
     * iteration, so that closing the loop right after it succeeds. */
    if (finished(s))
        release(s);
}

static void waiter_called(tide__call *call) {
    waiter *w = TIDE__QUEUE_DATA(call, waiter, call);
    waiter_finish(w, w->status);
}

static void waiter_expired(tide__timer *timer) {
    waiter_finish(TIDE__QUEUE_DATA(timer, waiter, timer), TIDE_ETIMEOUT);
}

/* Called whenever the server may have become idle (closed, no client). */
static void check_idle(tide_server_t *s) {
    if (!s->closed || s->nclients > 0)
        return;
    tide__queue *n;
    TIDE__QUEUE_FOREACH(n, &s->waiters) {
        waiter *w = TIDE__QUEUE_DATA(n, waiter, node);
        tide__timer_stop(&w->timer);
        w->status = 0;
        tide__loop_defer(s->loop, &w->call);
    }
    maybe_free(s);
}

static void describe(const tide__resource *res, char *buf, size_t size) {
    const tide_server_t *s = TIDE__QUEUE_DATA(res, tide_server_t, resource);
    char where[128] = "no socket";
    if (!s->closed && s->nls > 0) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        if (tide__sys.getsockname(s->ls[0].fd, (struct sockaddr *)&ss, &len) == 0)
            tide_format_address((struct sockaddr *)&ss, len, where, sizeof(where));
    }
    snprintf(buf, size, "server on %s (%zu socket(s), %zu client(s)%s)", where,
             s->closed ? (size_t)0 : s->nls, s->nclients, s->closed ? ", closed" : "");
}

/* ---- the accept loop --------------------------------------------------------------- */

static void retry_fired(tide__timer *timer) {
    tide_server_t *s = TIDE__QUEUE_DATA(timer, tide_server_t, retry);
    s->backoff = false;
    update_watchers(s);
}

/* Accepting again at once would spin on the same error while the connection waits
 * in the backlog, so stop for a while. Only running out of descriptors or memory is
 * the user's business (on_error); anything else is a broken listener, logged. */
static void back_off(tide_server_t *s, int err, bool resources) {
    double delay = s->opts.accept_retry_delay;
    s->backoff = true;
    tide__timer_start(&s->retry, delay);
    update_watchers(s);
    tide__log(s->loop, resources ? TIDE_LOG_WARNING : TIDE_LOG_ERROR,
              "server: accept() %s (%s); accepting again in %.3g s or when a client closes",
              resources ? "out of system resources" : "failed", tide_strerror(err), delay);
    if (resources && s->opts.on_error)
        s->opts.on_error(s, err, delay, s->opts.on_error_arg);
}

static void attach(tide_server_t *s, tide_transport_t *t) {
    t->server = s;
    t->state |= TIDE__T_SERVER_SIDE;
    tide__queue_insert_tail(&s->clients, &t->server_node);
    s->nclients++;
    tide__transport_start(t, NULL, NULL);
    if (!wants_accept(s))
        update_watchers(s);
}

/* A TLS client finished its handshake. The client counts (and is closed through the
 * server) from its accept on: until now the socket transport underneath is what the
 * server tracks, so a client stuck in its handshake still holds a max_connections slot
 * and is closed by close_clients; from now on its TLS transport is. */
static void tls_accepted(tide__tls *tls, int status, void *arg) {
    tide_server_t *s = arg;
    if (status < 0) {
        char why[256];
        tide__log(s->loop, TIDE_LOG_DEBUG, "server: TLS handshake with a client failed: %s",
                  tide_strerror_r(status, why, sizeof(why)));
        return;
    }
    tide_protocol_t *protocol = s->factory(s->factory_arg);
    if (protocol == NULL) {
        tide__tls_abort(tls); /* the client is refused */
        return;
    }
    tide_transport_t *t = tide__tls_transport(tls);
    t->protocol = protocol;
    t->state |= TIDE__T_SERVER_SIDE;
    tide__server_hand_over(tide__tls_lower(tls), t);
    tide__transport_start(t, NULL, NULL);
}

/* A client's socket: a transport with the user's protocol, or, for a TLS server, with
 * the TLS layer as its protocol (the user's protocol comes once the handshake is done:
 * tls_accepted). The transport exists before the factory runs, so that nothing can
 * fail between the user making a protocol and tide taking it over. */
static void serve(tide_server_t *s, int fd) {
    if (s->opts.keep_alive) {
        int one = 1;
        tide__sys.setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    }
    tide__tls_params params = {.config = s->opts.tls,
                               .handshake_timeout = s->opts.tls_handshake_timeout};
    tide__tls *tls;
    tide_transport_t *t = NULL;
    int rc =
        tide__tls_wrap_fd(s->loop, fd, s->opts.tls ? &params : NULL, tls_accepted, s, &t, &tls);
    if (rc < 0) {
        tide__sys.close(fd);
        tide__log(s->loop, TIDE_LOG_ERROR, "server: cannot make a transport for a client: %s",
                  tide_strerror(rc));
        return;
    }
    if (tls == NULL) {
        tide_protocol_t *protocol = s->factory(s->factory_arg);
        if (protocol == NULL) {
            tide__transport_discard(t); /* closes the descriptor: the client is refused */
            return;
        }
        t->protocol = protocol;
    } else {
        /* Counted until the handshake hands the client over or the socket goes. */
        t->state |= TIDE__T_HANDSHAKING;
        s->handshakes++;
    }
    attach(s, t);
}

static void on_accept(tide__io *io, unsigned events) {
    listener *l = TIDE__QUEUE_DATA(io, listener, io);
    tide_server_t *s = l->server;
    (void)events;
    /* The factory may close or pause the server: check before every accept. */
    for (int i = 0; i < s->opts.backlog && wants_accept(s); i++) {
        int fd = tide__sys.accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            serve(s, fd);
            continue;
        }
        switch (errno) {
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
        case EINTR:
        case ECONNABORTED:
            return; /* level-triggered: the next readiness event brings us back */
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
            back_off(s, tide_err_from_errno(errno), true);
            return;
        case EPERM: /* a firewall rule refused this one */
        case EPROTO:
        case ENOPROTOOPT:
        case ENETDOWN:
        case ENETUNREACH:
        case EHOSTDOWN:
        case EHOSTUNREACH:
            /* Network errors of one pending connection (accept(2)): it is gone, the
             * next one may be fine. */
            continue;
        default:
            back_off(s, tide_err_from_errno(errno), false);
            return;
        }
    }
}

/* A client's handshake is over (handed over, or its socket is gone). */
static void handshake_over(tide_server_t *s, tide_transport_t *t) {
    if (!(t->state & TIDE__T_HANDSHAKING))
        return;
    t->state &= ~(unsigned)TIDE__T_HANDSHAKING;
    s->handshakes--;
}

void tide__server_hand_over(tide_transport_t *from, tide_transport_t *to) {
    tide_server_t *s = from->server;
    if (s == NULL)
        return;
    to->server = s;
    tide__queue_insert_tail(&from->server_node, &to->server_node); /* just before it */
    tide__queue_remove(&from->server_node);
    from->server = NULL;
    handshake_over(s, from);
    update_watchers(s);
}

void tide__server_detach(tide_transport_t *t) {
    tide_server_t *s = t->server;
    if (s == NULL)
        return;
    tide__queue_remove(&t->server_node);
    t->server = NULL;
    handshake_over(s, t);
    s->nclients--;
    /* A client leaving frees a descriptor: the best moment to end a back-off. */
    if (s->backoff) {
        s->backoff = false;
        tide__timer_stop(&s->retry);
    }
    update_watchers(s);
    check_idle(s);
}

/* ---- creating ---------------------------------------------------------------------- */

/* Checks the options and makes the server object (no socket yet). */
static int server_new(tide_loop_t *loop, tide_protocol_factory_cb factory, void *factory_arg,
                      const tide_server_options_t *options, tide_server_t **out) {
    if (options && options->tls) {
        if (!tide_tls_config_is_server(options->tls))
            return TIDE_EINVAL;
        tide__tls_params params = {.config = options->tls};
        int rc = tide__tls_check(&params);
        if (rc < 0)
            return rc;
    }
    tide_server_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return TIDE_ENOMEM;
    *out = s;
    s->loop = loop;
    s->factory = factory;
    s->factory_arg = factory_arg;
    if (options)
        s->opts = *options;
    if (s->opts.backlog <= 0)
        s->opts.backlog = DEFAULT_BACKLOG;
    if (!(s->opts.accept_retry_delay > 0))
        s->opts.accept_retry_delay = DEFAULT_RETRY_DELAY;
    tide__queue_init(&s->resource.node);
    tide__queue_init(&s->clients);
    tide__queue_init(&s->waiters);
    tide__timer_init(loop, &s->retry, retry_fired);
    tide__call_init(&s->free_call, free_server);
    tide_tls_config_ref(s->opts.tls);
    return 0;
}

static void close_listeners(tide_server_t *s) {
    for (size_t i = 0; i < s->nls; i++) {
        listener *l = &s->ls[i];
        if (l->fd < 0)
            continue;
        tide__io_stop(&l->io, TIDE__IO_READ);
        tide__sys.close(l->fd);
        l->fd = -1;
    }
}

/* Frees a server that never went live (creation failed). */
static void server_discard(tide_server_t *s) {
    close_listeners(s);
    tide_tls_config_unref(s->opts.tls);
    free(s->ls);
    free(s->unix_path);
    free(s);
}

static int add_listener(tide_server_t *s, int fd) {
    listener *ls = realloc(s->ls, (s->nls + 1) * sizeof(*ls));
    if (ls == NULL)
        return TIDE_ENOMEM;
    /* The array moved, which is safe only because no listener is watched yet (the epoll
     * set holds each one's address). */
    s->ls = ls;
    listener *l = &s->ls[s->nls++];
    l->server = s;
    l->fd = fd;
    tide__io_init(s->loop, &l->io, fd, on_accept);
    return 0;
}

static int errno_code(void) { return tide_err_from_errno(errno); }

static int set_flag(int fd, int level, int name) {
    int one = 1;
    if (tide__sys.setsockopt(fd, level, name, &one, sizeof(one)) < 0)
        return errno == ENOPROTOOPT ? TIDE_ENOTSUP : errno_code();
    return 0;
}

static void go_live(tide_server_t *s, tide_server_t **out) {
    tide__loop_register(s->loop, &s->resource, describe);
    if (!s->opts.defer_serving) {
        s->serving = true;
        update_watchers(s);
    }
    *out = s;
}

/* Makes one listening socket for addr. Returns the descriptor or a negative code. */
static int open_listener(const tide_server_t *s, const struct sockaddr *addr, socklen_t len,
                         int protocol) {
    int fd = tide__sys.socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                              protocol);
    if (fd < 0)
        return errno_code();
    int rc = 0;
    if (addr->sa_family != AF_UNIX && !s->opts.no_reuse_address)
        rc = set_flag(fd, SOL_SOCKET, SO_REUSEADDR);
#ifdef SO_REUSEPORT
    if (rc == 0 && s->opts.reuse_port && addr->sa_family != AF_UNIX)
        rc = set_flag(fd, SOL_SOCKET, SO_REUSEPORT);
#else
    if (rc == 0 && s->opts.reuse_port)
        rc = TIDE_ENOTSUP;
#endif
    /* No dual-stack: the IPv4 wildcard gets its own socket, as in asyncio. */
    if (rc == 0 && addr->sa_family == AF_INET6)
        rc = set_flag(fd, IPPROTO_IPV6, IPV6_V6ONLY);
    if (rc == 0 && tide__sys.bind(fd, addr, len) < 0)
        rc = errno_code();
    if (rc == 0 && tide__sys.listen(fd, s->opts.backlog) < 0)
        rc = errno_code();
    if (rc < 0) {
        tide__sys.close(fd);
        return rc;
    }
    return fd;
}

static void set_port(struct sockaddr_storage *ss, uint16_t port) {
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)(void *)ss)->sin_port = htons(port);
    else if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)(void *)ss)->sin6_port = htons(port);
}

static uint16_t get_port(const struct sockaddr_storage *ss) {
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)(const void *)ss)->sin_port);
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)(const void *)ss)->sin6_port);
    return 0;
}

static bool seen_before(const struct addrinfo *list, const struct addrinfo *ai) {
    for (const struct addrinfo *p = list; p != ai; p = p->ai_next)
        if (p->ai_family == ai->ai_family && p->ai_addrlen == ai->ai_addrlen &&
            memcmp(p->ai_addr, ai->ai_addr, ai->ai_addrlen) == 0)
            return true;
    return false;
}

/* Binds one socket per distinct address. With port 0 the first socket's port is
 * reused for the others, so one number reaches every family; when that port is taken
 * on another address the caller starts over. An address whose family or address is
 * not available here (no IPv6, say) is skipped while another one works. */
static int bind_all(tide_server_t *s, struct addrinfo *list) {
    uint16_t chosen = 0;
    int skipped = 0;
    for (struct addrinfo *ai = list; ai; ai = ai->ai_next) {
        if (seen_before(list, ai) || ai->ai_addrlen > sizeof(struct sockaddr_storage))
            continue;
        struct sockaddr_storage ss;
        memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
        if (chosen != 0 && get_port(&ss) == 0)
            set_port(&ss, chosen);
        int fd = open_listener(s, (struct sockaddr *)&ss, ai->ai_addrlen, ai->ai_protocol);
        if (fd == TIDE_EAFNOSUPPORT || fd == TIDE_EADDRNOTAVAIL) {
            skipped = fd;
            continue;
        }
        if (fd < 0)
            return fd;
        int rc = add_listener(s, fd);
        if (rc < 0) {
            tide__sys.close(fd);
            return rc;
        }
        if (chosen == 0) {
            socklen_t len = sizeof(ss);
            if (tide__sys.getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
                chosen = get_port(&ss);
        }
    }
    return s->nls > 0 ? 0 : (skipped ? skipped : TIDE_EADDRNOTAVAIL);
}

/* Literals never leave the process. A name is resolved on a worker thread when the
 * caller is a task of this loop (only the task waits); from plain callbacks it is
 * resolved in place, blocking (documented). */
static int resolve_passive(tide_loop_t *loop, const char *host, const char *service,
                           struct addrinfo *hints, struct addrinfo **list) {
    struct addrinfo numeric = *hints;
    numeric.ai_flags |= AI_NUMERICHOST;
    int rc = getaddrinfo(host, service, &numeric, list);
    if (rc == EAI_NONAME && host != NULL) {
        tide_task_t *t = tide_task_current();
        if (t != NULL && tide_task_get_loop(t) == loop)
            return tide_loop_getaddrinfo_await(loop, host, service, hints, list);
        rc = getaddrinfo(host, service, hints, list);
    }
    if (rc != 0)
        return rc == EAI_SYSTEM ? errno_code() : tide_err_from_gai(rc);
    return 0;
}

/* What both forms of create_server check and prepare before resolving ("" is every
 * interface, as NULL). */
static int passive_hints(const tide_server_options_t *options, const char **host, uint16_t port,
                         struct addrinfo *hints, char service[8]) {
    if (*host != NULL && (*host)[0] == '\0')
        *host = NULL;
    int family = options ? options->family : AF_UNSPEC;
    if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6)
        return TIDE_EINVAL;
    snprintf(service, 8, "%u", (unsigned)port);
    memset(hints, 0, sizeof(*hints));
    hints->ai_family = family;
    hints->ai_socktype = SOCK_STREAM;
    hints->ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    return 0;
}

/* Makes the server and its listening sockets on the resolved addresses. */
static int listen_on(tide_loop_t *loop, struct addrinfo *list, uint16_t port,
                     tide_protocol_factory_cb factory, void *factory_arg,
                     const tide_server_options_t *options, tide_server_t **out) {
    tide_server_t *s = NULL;
    int rc = server_new(loop, factory, factory_arg, options, &s);
    if (rc < 0)
        return rc;
    for (int attempt = 0; attempt < PORT_ZERO_TRIES; attempt++) {
        rc = bind_all(s, list);
        if (rc == 0 || rc != TIDE_EADDRINUSE || port != 0)
            break;
        close_listeners(s);
        s->nls = 0;
    }
    if (rc < 0) {
        server_discard(s);
        return rc;
    }
    go_live(s, out);
    return 0;
}

int tide_loop_create_server(tide_loop_t *loop, const char *host, uint16_t port,
                            tide_protocol_factory_cb factory, void *factory_arg,
                            const tide_server_options_t *options, tide_server_t **out) {
    if (loop == NULL || factory == NULL || out == NULL)
        return TIDE_EINVAL;
    char service[8];
    struct addrinfo hints;
    int rc = passive_hints(options, &host, port, &hints, service);
    if (rc < 0)
        return rc;
    struct addrinfo *list = NULL;
    rc = resolve_passive(loop, host, service, &hints, &list);
    if (rc < 0)
        return rc;
    rc = listen_on(loop, list, port, factory, factory_arg, options, out);
    freeaddrinfo(list);
    return rc;
}

/* A create_server_async waiting for its name. */
typedef struct server_request {
    uint16_t port;
    tide_protocol_factory_cb factory;
    void *factory_arg;
    tide_server_options_t options; /* a copy; its TLS configuration is referenced */
    bool has_options;
    tide_server_created_cb cb;
    void *arg;
} server_request;

static void request_resolved(tide_loop_t *loop, int status, struct addrinfo *list, void *arg) {
    server_request *req = arg;
    tide_server_t *s = NULL;
    if (status == 0) {
        status = listen_on(loop, list, req->port, req->factory, req->factory_arg,
                           req->has_options ? &req->options : NULL, &s);
        freeaddrinfo(list);
    }
    tide_server_created_cb cb = req->cb;
    void *cb_arg = req->arg;
    tide_tls_config_unref(req->options.tls);
    free(req);
    cb(loop, status, status == 0 ? s : NULL, cb_arg);
}

int tide_loop_create_server_async(tide_loop_t *loop, const char *host, uint16_t port,
                                  tide_protocol_factory_cb factory, void *factory_arg,
                                  const tide_server_options_t *options, tide_server_created_cb cb,
                                  void *arg) {
    if (loop == NULL || factory == NULL || cb == NULL)
        return TIDE_EINVAL;
    char service[8];
    struct addrinfo hints;
    int rc = passive_hints(options, &host, port, &hints, service);
    if (rc < 0)
        return rc;
    server_request *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return TIDE_ENOMEM;
    *req = (server_request){.port = port, .factory = factory, .factory_arg = factory_arg,
                            .has_options = options != NULL, .cb = cb, .arg = arg};
    if (options) {
        req->options = *options;
        tide_tls_config_ref(req->options.tls);
    }
    rc = tide_loop_getaddrinfo(loop, host, service, &hints, request_resolved, req);
    if (rc < 0) {
        tide_tls_config_unref(req->options.tls);
        free(req);
    }
    return rc;
}

/* Remembers which file we bound, so close removes it only if nobody replaced it. */
static int remember_path(tide_server_t *s, const char *path) {
    struct stat st;
    if (path[0] == '@' || path[0] == '\0' || stat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
        return 0;
    s->unix_path = strdup(path);
    if (s->unix_path == NULL)
        return TIDE_ENOMEM;
    s->unix_dev = st.st_dev;
    s->unix_ino = st.st_ino;
    return 0;
}

static void forget_path(tide_server_t *s) {
    struct stat st;
    if (s->unix_path && stat(s->unix_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
        st.st_dev == s->unix_dev && st.st_ino == s->unix_ino)
        unlink(s->unix_path);
    free(s->unix_path);
    s->unix_path = NULL;
}

int tide_loop_create_unix_server(tide_loop_t *loop, const char *path,
                                 tide_protocol_factory_cb factory, void *factory_arg,
                                 const tide_server_options_t *options, tide_server_t **out) {
    if (loop == NULL || path == NULL || factory == NULL || out == NULL)
        return TIDE_EINVAL;
    struct sockaddr_un sun;
    socklen_t len;
    int rc = tide__unix_address(path, &sun, &len);
    if (rc < 0)
        return rc;
    /* A socket file left by a dead server would make bind fail; any other kind of
     * file is not ours to remove, and bind reports it as EADDRINUSE. */
    struct stat st;
    if (path[0] != '@' && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    tide_server_t *s = NULL;
    rc = server_new(loop, factory, factory_arg, options, &s);
    if (rc < 0)
        return rc;
    int fd = open_listener(s, (struct sockaddr *)&sun, len, 0);
    rc = fd < 0 ? fd : add_listener(s, fd);
    if (rc < 0 && fd >= 0)
        tide__sys.close(fd);
    if (rc == 0 && (rc = remember_path(s, path)) < 0)
        unlink(path);
    if (rc < 0) {
        server_discard(s);
        return rc;
    }
    go_live(s, out);
    return 0;
}

int tide_loop_create_server_from_fd(tide_loop_t *loop, int fd, tide_protocol_factory_cb factory,
                                    void *factory_arg, const tide_server_options_t *options,
                                    tide_server_t **out) {
    if (loop == NULL || fd < 0 || factory == NULL || out == NULL)
        return TIDE_EINVAL;
    int type = 0;
    socklen_t tlen = sizeof(type);
    if (tide__sys.getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) < 0)
        return errno == ENOTSOCK ? TIDE_EINVAL : errno_code();
    if (type != SOCK_STREAM)
        return TIDE_EINVAL;
    tide_server_t *s = NULL;
    int rc = server_new(loop, factory, factory_arg, options, &s);
    if (rc < 0)
        return rc;
    rc = tide__fd_set_nonblocking(fd);
    /* listen() again only sets the backlog when the socket already listens. */
    if (rc == 0 && tide__sys.listen(fd, s->opts.backlog) < 0)
        rc = errno_code();
    if (rc == 0)
        rc = add_listener(s, fd);
    if (rc == 0) {
        struct sockaddr_un sun;
        socklen_t len = sizeof(sun);
        if (tide__sys.getsockname(fd, (struct sockaddr *)&sun, &len) == 0 &&
            sun.sun_family == AF_UNIX && len > offsetof(struct sockaddr_un, sun_path) &&
            sun.sun_path[0] != '\0') {
            sun.sun_path[sizeof(sun.sun_path) - 1] = '\0';
            rc = remember_path(s, sun.sun_path);
        }
    }
    if (rc < 0) {
        s->nls = 0; /* the caller keeps fd on failure */
        server_discard(s);
        return rc;
    }
    go_live(s, out);
    return 0;
}

/* ---- the server object ------------------------------------------------------------- */

int tide_server_start_serving(tide_server_t *s) {
    if (s == NULL)
        return TIDE_EINVAL;
    if (s->closed)
        return TIDE_ECLOSED;
    s->serving = true;
    update_watchers(s);
    return 0;
}

void tide_server_close(tide_server_t *s) {
    if (s == NULL || s->closed)
        return;
    s->closed = true;
    s->serving = false;
    s->backoff = false;
    tide__timer_stop(&s->retry);
    close_listeners(s);
    forget_path(s);
    check_idle(s);
}

/* Runs op on every client. A client may leave during the walk (op's own effects are
 * deferred, but be safe), so the list is moved aside and each client is put back
 * before op runs on it: whatever detaches only unlinks its own node. */
static void each_client(tide_server_t *s, void (*op)(tide_transport_t *)) {
    if (s == NULL)
        return;
    tide__queue pending;
    tide__queue_move(&s->clients, &pending);
    while (!tide__queue_empty(&pending)) {
        tide__queue *n = tide__queue_head(&pending);
        tide__queue_remove(n);
        tide__queue_insert_tail(&s->clients, n);
        op(TIDE__QUEUE_DATA(n, tide_transport_t, server_node));
    }
}

void tide_server_close_clients(tide_server_t *s) { each_client(s, tide_transport_close); }

void tide_server_abort_clients(tide_server_t *s) { each_client(s, tide_transport_abort); }

int tide_server_wait_closed(tide_server_t *s, double timeout, tide_server_closed_cb cb,
                            void *arg) {
    if (s == NULL || cb == NULL)
        return TIDE_EINVAL;
    waiter *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return TIDE_ENOMEM;
    w->server = s;
    w->cb = cb;
    w->arg = arg;
    tide__timer_init(s->loop, &w->timer, waiter_expired);
    tide__call_init(&w->call, waiter_called);
    if (timeout > 0 && tide__timer_start(&w->timer, timeout) < 0) {
        free(w);
        return TIDE_ENOMEM;
    }
    tide__queue_insert_tail(&s->waiters, &w->node);
    check_idle(s);
    return 0;
}

bool tide_server_is_serving(const tide_server_t *s) { return s && s->serving && !s->closed; }

void tide_server_pause_accepting(tide_server_t *s) {
    if (s == NULL || s->closed)
        return;
    s->paused = true;
    update_watchers(s);
}

void tide_server_resume_accepting(tide_server_t *s) {
    if (s == NULL || s->closed)
        return;
    s->paused = false;
    update_watchers(s);
}

size_t tide_server_client_count(const tide_server_t *s) { return s ? s->nclients : 0; }

size_t tide_server_socket_count(const tide_server_t *s) {
    return s && !s->closed ? s->nls : 0;
}

int tide_server_get_fd(const tide_server_t *s, size_t i) {
    if (s == NULL || i >= tide_server_socket_count(s))
        return TIDE_EINVAL;
    return s->ls[i].fd;
}

int tide_server_get_sockname(const tide_server_t *s, size_t i, struct sockaddr *addr,
                             socklen_t *len) {
    if (s == NULL || addr == NULL || len == NULL || i >= tide_server_socket_count(s))
        return TIDE_EINVAL;
    if (tide__sys.getsockname(s->ls[i].fd, addr, len) < 0)
        return errno_code();
    return 0;
}

tide_loop_t *tide_server_get_loop(const tide_server_t *s) { return s ? s->loop : NULL; }
