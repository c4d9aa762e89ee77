/* Outgoing connections: create_connection (resolve, then try each address in turn or
 * race them as RFC 8305 says), create_unix_connection, and wrapping sockets the
 * caller already has (connect_socket, connect_accepted_socket).
 *
 * A request is a loop resource from its start until its callback ran, so
 * TIDE_RUN_DEFAULT keeps running and tide_loop_close() reports it. It moves through
 * phases: START (a deferred first step is queued), RESOLVING, CONNECTING (attempts in
 * flight), HANDSHAKE (TLS only: the socket transport carries the TLS handshake),
 * FACTORY (inside the user's factory), MAKING (the transport exists and waits for
 * connection_made), DONE (the completion is queued or running).
 *
 * Reentrancy: the user's code runs in three places only: the factory, the completion
 * callback (always from a deferred call or from made_cb, never inside a starting
 * call), and the protocol's own callbacks (driven by the transport base). The factory
 * may cancel the request; the completion may not use it. Everything runs on the loop
 * thread; resolution happens on a worker but completes here. */
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "transports/tls_int.h"
#include "transports/transport_int.h"

enum { C_START, C_RESOLVING, C_CONNECTING, C_HANDSHAKE, C_FACTORY, C_MAKING, C_DONE };

typedef struct caddr {
    struct sockaddr_storage ss;
    socklen_t len;
} caddr;

typedef struct attempt {
    tide_connect_t *req;
    int fd; /* -1 when not in flight */
    tide__io io;
} attempt;

struct tide_connect {
    tide_loop_t *loop;
    tide__resource resource;
    tide_protocol_factory_cb factory;
    void *factory_arg;
    tide_connect_cb cb;
    void *arg;
    int phase;
    int status;          /* the completion's status, once DONE */
    int last_error;      /* of the latest failed attempt */
    bool cancel_pending; /* cancel was called inside the factory */
    bool server_side;
    bool adopted; /* connect_socket or connect_accepted_socket */

    /* what to reach */
    char *host; /* or the Unix path */
    uint16_t port;
    int family;
    double delay;
    int interleave;
    int adopt_fd; /* connect_socket: the caller's descriptor, else -1 */

    /* resolution */
    tide__resolve *resolve;
    tide__resolve *local_resolve;
    int resolves_pending;
    bool want_local;

    /* attempts */
    caddr *addrs;
    size_t naddrs, next, active;
    caddr *locals;
    size_t nlocals;
    attempt *attempts;

    tide__timer stagger;  /* happy eyeballs: start the next attempt */
    tide__timer deadline; /* options.timeout */
    tide__call call;      /* the deferred first step, then the completion */

    /* TLS: the configuration (a reference), the name to verify, the session to resume
     * (the caller's, valid until cb) and, during the handshake, the layer. */
    tide_tls_config_t *tls_config;
    char *server_hostname;
    const tide_tls_session_t *tls_session;
    tide__tls *tls;

    tide_transport_t *transport;
    tide_protocol_t *protocol;
};

static void start_next(tide_connect_t *req);

/* ---- lifetime ---------------------------------------------------------------------- */

static void describe(const tide__resource *res, char *buf, size_t size) {
    const tide_connect_t *req = TIDE__QUEUE_DATA(res, tide_connect_t, resource);
    static const char *const names[] = {"starting",       "resolving",
                                        "connecting",     "in the TLS handshake",
                                        "in the factory", "making the transport",
                                        "completing"};
    if (req->adopted)
        snprintf(buf, size, "connect request for an existing socket (%s)", names[req->phase]);
    else if (req->family == AF_UNIX)
        snprintf(buf, size, "connect request to unix %s (%s)", req->host, names[req->phase]);
    else
        snprintf(buf, size, "connect request to %s:%u (%s, %zu attempt(s) in flight)",
                 req->host ? req->host : "?", (unsigned)req->port, names[req->phase],
                 req->active);
}

static void deadline_fired(tide__timer *timer);
static void stagger_fired(tide__timer *timer);

static tide_connect_t *req_new(tide_loop_t *loop, tide_protocol_factory_cb factory,
                               void *factory_arg, tide_connect_cb cb, void *arg) {
    tide_connect_t *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return NULL;
    req->loop = loop;
    req->factory = factory;
    req->factory_arg = factory_arg;
    req->cb = cb;
    req->arg = arg;
    req->adopt_fd = -1;
    req->phase = C_START;
    tide__queue_init(&req->resource.node);
    tide__timer_init(loop, &req->stagger, stagger_fired);
    tide__timer_init(loop, &req->deadline, deadline_fired);
    tide__call_init(&req->call, NULL);
    return req;
}

static void req_free(tide_connect_t *req) {
    tide_tls_config_unref(req->tls_config);
    free(req->server_hostname);
    free(req->host);
    free(req->addrs);
    free(req->locals);
    free(req->attempts);
    free(req);
}

static void close_fd(int fd) {
    if (fd >= 0)
        tide__sys.close(fd);
}

static void attempt_close(tide_connect_t *req, attempt *a) {
    if (a->fd < 0)
        return;
    tide__io_stop(&a->io, TIDE__IO_WRITE);
    close_fd(a->fd);
    a->fd = -1;
    req->active--;
}

/* Stops everything still running for the request except a transport it made. */
static void cleanup(tide_connect_t *req) {
    tide__resolve_cancel(req->resolve);
    tide__resolve_cancel(req->local_resolve);
    req->resolve = req->local_resolve = NULL;
    req->resolves_pending = 0;
    for (size_t i = 0; req->attempts && i < req->naddrs; i++)
        attempt_close(req, &req->attempts[i]);
    tide__timer_stop(&req->stagger);
    tide__timer_stop(&req->deadline);
}

static void run_call(tide_connect_t *req, tide__call_fn fn) {
    tide__loop_undefer(&req->call);
    tide__call_init(&req->call, fn);
    tide__loop_defer(req->loop, &req->call);
}

static void complete(tide__call *call) {
    tide_connect_t *req = TIDE__QUEUE_DATA(call, tide_connect_t, call);
    /* The descriptor of connect_socket is ours even when the connection failed. */
    if (req->adopt_fd >= 0)
        close_fd(req->adopt_fd);
    req->adopt_fd = -1;
    tide__loop_unregister(req->loop, &req->resource);
    req->cb(req->loop, req->status, NULL, NULL, req->arg);
    req_free(req);
}

/* Ends the request with an error; the callback runs on a later iteration. */
static void fail(tide_connect_t *req, int status) {
    cleanup(req);
    req->phase = C_DONE;
    req->status = status;
    run_call(req, complete);
}

/* ---- success: from a connected descriptor to a started transport ------------------ */

static void made(tide_transport_t *t, void *arg) {
    tide_connect_t *req = arg;
    req->phase = C_DONE;
    tide__loop_unregister(req->loop, &req->resource);
    req->cb(req->loop, 0, t, req->protocol, req->arg);
    req_free(req);
}

/* The transport t is ready for the user's protocol: t is the socket transport, or the
 * TLS transport once the handshake succeeded (tls not NULL). The transport exists before
 * the factory runs, so that nothing can fail between the user making a protocol and
 * tide taking it over. */
static void hand_over(tide_connect_t *req, tide_transport_t *t, tide__tls *tls) {
    req->phase = C_FACTORY;
    tide_protocol_t *protocol = req->factory(req->factory_arg);
    if (req->cancel_pending || protocol == NULL) {
        /* A protocol made just before a cancel is the user's to free: we never
         * handed it to a transport. The descriptor closes with the transport. */
        if (tls)
            tide__tls_abort(tls);
        else
            tide__transport_discard(t);
        fail(req, req->cancel_pending ? TIDE_ECANCELLED : TIDE_ECONNABORTED);
        return;
    }
    t->protocol = protocol;
    if (req->server_side)
        t->state |= TIDE__T_SERVER_SIDE;
    req->phase = C_MAKING;
    req->transport = t;
    req->protocol = protocol;
    tide__transport_start(t, made, req);
}

static void handshaken(tide__tls *tls, int status, void *arg) {
    tide_connect_t *req = arg;
    req->tls = NULL;
    if (status < 0)
        fail(req, status); /* the layer closes the socket transport itself */
    else
        hand_over(req, tide__tls_transport(tls), tls);
}

/* Takes ownership of the connected descriptor fd. */
static void win(tide_connect_t *req, int fd) {
    cleanup(req);
    req->adopt_fd = -1;
    tide__tls_params params = {.config = req->tls_config,
                               .server_hostname = req->server_hostname,
                               .session = req->tls_session};
    tide__tls *tls;
    tide_transport_t *t = NULL;
    int rc = tide__tls_wrap_fd(req->loop, fd, req->tls_config ? &params : NULL, handshaken, req, &t,
                               &tls);
    if (rc < 0) {
        close_fd(fd);
        fail(req, rc);
        return;
    }
    if (tls == NULL) {
        hand_over(req, t, NULL);
        return;
    }
    req->phase = C_HANDSHAKE;
    req->tls = tls;
    tide__transport_start(t, NULL, NULL);
}

/* ---- attempts ---------------------------------------------------------------------- */

static void on_writable(tide__io *io, unsigned events) {
    attempt *a = TIDE__QUEUE_DATA(io, attempt, io);
    tide_connect_t *req = a->req;
    (void)events;
    int err = 0;
    socklen_t len = sizeof(err);
    if (tide__sys.getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err == EINPROGRESS || err == EALREADY || err == EINTR)
        return; /* spurious wake-up: still connecting */
    if (err == 0) {
        int fd = a->fd;
        tide__io_stop(&a->io, TIDE__IO_WRITE);
        a->fd = -1;
        req->active--;
        win(req, fd);
        return;
    }
    attempt_close(req, a);
    req->last_error = tide_err_from_errno(err);
    /* RFC 8305: a failure starts the next attempt at once, not after the delay. */
    start_next(req);
}

static int bind_local(tide_connect_t *req, int fd, int family) {
    int rc = TIDE_EADDRNOTAVAIL; /* no local address of this family */
    for (size_t i = 0; i < req->nlocals; i++) {
        const caddr *l = &req->locals[i];
        if (l->ss.ss_family != family)
            continue;
        if (tide__sys.bind(fd, (const struct sockaddr *)&l->ss, l->len) == 0)
            return 0;
        rc = tide_err_from_errno(errno);
    }
    return rc;
}

/* Opens attempt i. Returns 0 when it is in flight, 1 when it connected at once (the
 * descriptor is left in the attempt), or a negative code with nothing left open. */
static int attempt_open(tide_connect_t *req, size_t i) {
    attempt *a = &req->attempts[i];
    const caddr *addr = &req->addrs[i];
    int family = addr->ss.ss_family;
    int fd = tide__sys.socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return tide_err_from_errno(errno);
    int rc = 0;
    if (req->want_local && family != AF_UNIX)
        rc = bind_local(req, fd, family);
    if (rc == 0 && tide__sys.connect(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0) {
        /* EINTR: the connection goes on in the background (POSIX). */
        if (errno != EINPROGRESS && errno != EINTR)
            rc = tide_err_from_errno(errno);
        else
            rc = 2;
    }
    if (rc < 0) {
        close_fd(fd);
        return rc;
    }
    a->req = req;
    a->fd = fd;
    if (rc == 0)
        return 1;
    tide__io_init(req->loop, &a->io, fd, on_writable);
    rc = tide__io_start(&a->io, TIDE__IO_WRITE);
    if (rc != 0) {
        close_fd(fd);
        a->fd = -1;
        return rc;
    }
    req->active++;
    return 0;
}

/* Starts attempts until one is in flight, one connected, or the addresses ran out;
 * with happy eyeballs, arms the timer for the next one. */
static void start_next(tide_connect_t *req) {
    bool racing = req->delay > 0;
    if (!racing && req->active > 0)
        return;
    while (req->next < req->naddrs) {
        size_t i = req->next++;
        int rc = attempt_open(req, i);
        if (rc == 1) {
            int fd = req->attempts[i].fd;
            req->attempts[i].fd = -1;
            win(req, fd);
            return;
        }
        if (rc == 0) {
            if (racing && req->next < req->naddrs)
                tide__timer_start(&req->stagger, req->delay);
            else
                tide__timer_stop(&req->stagger);
            return;
        }
        req->last_error = rc;
    }
    tide__timer_stop(&req->stagger);
    if (req->active == 0)
        fail(req, req->last_error ? req->last_error : TIDE_EAI_NODATA);
}

static void stagger_fired(tide__timer *timer) {
    start_next(TIDE__QUEUE_DATA(timer, tide_connect_t, stagger));
}

static void deadline_fired(tide__timer *timer) {
    fail(TIDE__QUEUE_DATA(timer, tide_connect_t, deadline), TIDE_ETIMEOUT);
}

static int begin_attempts(tide_connect_t *req) {
    req->attempts = calloc(req->naddrs ? req->naddrs : 1, sizeof(*req->attempts));
    if (req->attempts == NULL)
        return TIDE_ENOMEM;
    for (size_t i = 0; i < req->naddrs; i++)
        req->attempts[i].fd = -1;
    req->phase = C_CONNECTING;
    start_next(req);
    return 0;
}

/* ---- resolution -------------------------------------------------------------------- */

/* Copies a getaddrinfo() list into an array, reordered by family as asyncio's
 * interleave does: the first `interleave` addresses from the first family, then the
 * families alternate. */
static int take_addrs(struct addrinfo *list, int interleave, caddr **out, size_t *count) {
    size_t n = 0;
    for (struct addrinfo *ai = list; ai; ai = ai->ai_next)
        if (ai->ai_addrlen <= sizeof(struct sockaddr_storage))
            n++;
    caddr *v = calloc(n ? n : 1, sizeof(*v));
    if (v == NULL)
        return TIDE_ENOMEM;
    size_t k = 0;
    if (interleave <= 0) {
        for (struct addrinfo *ai = list; ai; ai = ai->ai_next) {
            if (ai->ai_addrlen > sizeof(struct sockaddr_storage))
                continue;
            memcpy(&v[k].ss, ai->ai_addr, ai->ai_addrlen);
            v[k++].len = ai->ai_addrlen;
        }
    } else {
        /* Families in order of first appearance; each list is walked with a cursor. */
        int fams[8];
        struct addrinfo *cur[8];
        size_t nf = 0;
        for (struct addrinfo *ai = list; ai; ai = ai->ai_next) {
            size_t f = 0;
            while (f < nf && fams[f] != ai->ai_family)
                f++;
            if (f == nf && nf < 8) {
                fams[nf] = ai->ai_family;
                cur[nf++] = ai;
            }
        }
        int quota = interleave - 1; /* extra picks from the first family */
        size_t f = 0, idle = 0;
        while (k < n && idle < nf) {
            struct addrinfo *ai = cur[f];
            while (ai && (ai->ai_family != fams[f] ||
                          ai->ai_addrlen > sizeof(struct sockaddr_storage)))
                ai = ai->ai_next;
            cur[f] = ai ? ai->ai_next : NULL;
            if (ai) {
                memcpy(&v[k].ss, ai->ai_addr, ai->ai_addrlen);
                v[k++].len = ai->ai_addrlen;
                idle = 0;
            } else {
                idle++; /* a full round without a pick ends it */
            }
            if (f == 0 && quota > 0 && ai) {
                quota--;
                continue;
            }
            quota = 0;
            f = (f + 1) % nf;
        }
    }
    *out = v;
    *count = k;
    return 0;
}

static void resolved(tide__resolve *r, int status, struct addrinfo *res, void *arg) {
    tide_connect_t *req = arg;
    bool local = r == req->local_resolve;
    if (local)
        req->local_resolve = NULL;
    else
        req->resolve = NULL;
    req->resolves_pending--;
    if (status == 0) {
        status = local ? take_addrs(res, 0, &req->locals, &req->nlocals)
                       : take_addrs(res, req->interleave, &req->addrs, &req->naddrs);
        freeaddrinfo(res);
    }
    if (status < 0) {
        fail(req, status);
        return;
    }
    if (req->resolves_pending > 0)
        return;
    status = begin_attempts(req);
    if (status < 0)
        fail(req, status);
}

/* ---- starting ---------------------------------------------------------------------- */

static void start_unix(tide__call *call) {
    tide_connect_t *req = TIDE__QUEUE_DATA(call, tide_connect_t, call);
    int rc = begin_attempts(req);
    if (rc < 0)
        fail(req, rc);
}

static void start_adopt(tide__call *call) {
    tide_connect_t *req = TIDE__QUEUE_DATA(call, tide_connect_t, call);
    win(req, req->adopt_fd);
}

static void enlist(tide_connect_t *req) {
    tide__loop_register(req->loop, &req->resource, describe);
}

/* Checks the TLS options before anything starts (so that a bad configuration or a
 * missing name fails the call itself) and keeps them in req. default_name is the name
 * verified when the options give none. */
static int take_tls(tide_connect_t *req, const tide_connect_options_t *o,
                    const char *default_name) {
    if (o->tls == NULL)
        return 0;
    /* The configuration's side must be the connection's. */
    if (tide_tls_config_is_server(o->tls) != req->server_side)
        return TIDE_EINVAL;
    const char *name = req->server_side ? NULL
                       : o->server_hostname ? o->server_hostname
                                            : default_name;
    tide__tls_params params = {
        .config = o->tls, .server_hostname = name, .session = o->tls_session};
    int rc = tide__tls_check(&params);
    if (rc < 0)
        return rc;
    if (name && (req->server_hostname = strdup(name)) == NULL)
        return TIDE_ENOMEM;
    req->tls_config = tide_tls_config_ref(o->tls);
    req->tls_session = o->tls_session;
    return 0;
}

int tide_loop_create_connection(tide_loop_t *loop, const char *host, uint16_t port,
                                tide_protocol_factory_cb factory, void *factory_arg,
                                const tide_connect_options_t *options, tide_connect_cb cb,
                                void *arg, tide_connect_t **out) {
    tide_connect_options_t none = {0};
    const tide_connect_options_t *o = options ? options : &none;
    if (loop == NULL || host == NULL || host[0] == '\0' || factory == NULL || cb == NULL ||
        (o->family != AF_UNSPEC && o->family != AF_INET && o->family != AF_INET6) ||
        o->happy_eyeballs_delay < 0 || o->timeout < 0 || o->interleave < 0)
        return TIDE_EINVAL;
    tide_connect_t *req = req_new(loop, factory, factory_arg, cb, arg);
    if (req == NULL || (req->host = strdup(host)) == NULL) {
        free(req);
        return TIDE_ENOMEM;
    }
    int rc = take_tls(req, o, host);
    if (rc < 0) {
        req_free(req);
        return rc;
    }
    req->port = port;
    req->family = o->family;
    req->delay = o->happy_eyeballs_delay;
    req->interleave = o->interleave ? o->interleave : (req->delay > 0 ? 1 : 0);
    req->want_local = o->local_host != NULL || o->local_port != 0;
    req->phase = C_RESOLVING;

    char service[8];
    snprintf(service, sizeof(service), "%u", (unsigned)port);
    rc = tide__resolve_start(loop, host, service, o->family, SOCK_STREAM, AI_NUMERICSERV,
                                 resolved, req, &req->resolve);
    if (rc == 0) {
        req->resolves_pending++;
        if (req->want_local) {
            snprintf(service, sizeof(service), "%u", (unsigned)o->local_port);
            rc = tide__resolve_start(loop, o->local_host, service, o->family, SOCK_STREAM,
                                     AI_NUMERICSERV | AI_PASSIVE, resolved, req,
                                     &req->local_resolve);
            if (rc == 0)
                req->resolves_pending++;
        }
    }
    if (rc == 0 && o->timeout > 0)
        rc = tide__timer_start(&req->deadline, o->timeout);
    if (rc < 0) {
        cleanup(req);
        req_free(req);
        return rc;
    }
    enlist(req);
    if (out)
        *out = req;
    return 0;
}

int tide_loop_create_unix_connection(tide_loop_t *loop, const char *path,
                                     tide_protocol_factory_cb factory, void *factory_arg,
                                     const tide_connect_options_t *options, tide_connect_cb cb,
                                     void *arg, tide_connect_t **out) {
    tide_connect_options_t none = {0};
    const tide_connect_options_t *o = options ? options : &none;
    if (loop == NULL || path == NULL || factory == NULL || cb == NULL || o->timeout < 0)
        return TIDE_EINVAL;
    struct sockaddr_un sun;
    socklen_t len;
    int rc = tide__unix_address(path, &sun, &len);
    if (rc != 0)
        return rc;
    tide_connect_t *req = req_new(loop, factory, factory_arg, cb, arg);
    if (req == NULL || (req->host = strdup(path)) == NULL ||
        (req->addrs = calloc(1, sizeof(*req->addrs))) == NULL) {
        if (req)
            req_free(req);
        return TIDE_ENOMEM;
    }
    /* A Unix path is no host name: TLS verification needs options->server_hostname. */
    if ((rc = take_tls(req, o, NULL)) < 0 ||
        (o->timeout > 0 && (rc = tide__timer_start(&req->deadline, o->timeout)) < 0)) {
        req_free(req);
        return rc;
    }
    req->addrs[0].len = len;
    memcpy(&req->addrs[0].ss, &sun, sizeof(sun));
    req->naddrs = 1;
    req->family = AF_UNIX;
    /* Even a Unix connect that completes at once must not call back from here. */
    run_call(req, start_unix);
    enlist(req);
    if (out)
        *out = req;
    return 0;
}

static int adopt(tide_loop_t *loop, int fd, tide_protocol_factory_cb factory,
                 void *factory_arg, const tide_connect_options_t *options, tide_connect_cb cb,
                 void *arg, bool server_side) {
    tide_connect_options_t none = {0};
    const tide_connect_options_t *o = options ? options : &none;
    if (loop == NULL || fd < 0 || factory == NULL || cb == NULL)
        return TIDE_EINVAL;
    int type = 0;
    socklen_t len = sizeof(type);
    if (tide__sys.getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
        return errno == ENOTSOCK ? TIDE_EINVAL : tide_err_from_errno(errno);
    if (type != SOCK_STREAM)
        return TIDE_EINVAL;
    int rc = tide__fd_set_nonblocking(fd);
    if (rc < 0)
        return rc;
    tide_connect_t *req = req_new(loop, factory, factory_arg, cb, arg);
    if (req == NULL)
        return TIDE_ENOMEM;
    req->server_side = server_side;
    if ((rc = take_tls(req, o, NULL)) < 0) {
        req_free(req);
        return rc;
    }
    req->adopt_fd = fd;
    req->adopted = true;
    run_call(req, start_adopt);
    enlist(req);
    return 0;
}

int tide_loop_connect_socket(tide_loop_t *loop, int fd, tide_protocol_factory_cb factory,
                             void *factory_arg, const tide_connect_options_t *options,
                             tide_connect_cb cb, void *arg) {
    return adopt(loop, fd, factory, factory_arg, options, cb, arg, false);
}

int tide_loop_connect_accepted_socket(tide_loop_t *loop, int fd, tide_protocol_factory_cb factory,
                                      void *factory_arg, const tide_connect_options_t *options,
                                      tide_connect_cb cb, void *arg) {
    return adopt(loop, fd, factory, factory_arg, options, cb, arg, true);
}

void tide_connect_cancel(tide_connect_t *req) {
    if (req == NULL)
        return;
    switch (req->phase) {
    case C_HANDSHAKE:
        tide__tls_abort(req->tls); /* no handshake callback follows */
        req->tls = NULL;
        fail(req, TIDE_ECANCELLED);
        break;
    case C_FACTORY:
        req->cancel_pending = true; /* win() finishes it once the factory returns */
        break;
    case C_MAKING:
        /* connection_made is queued; the protocol gets its made/lost pair from the
         * base, but the caller hears only about the cancellation. */
        req->transport->made_cb = NULL;
        tide_transport_abort(req->transport);
        req->transport = NULL;
        fail(req, TIDE_ECANCELLED);
        break;
    case C_DONE:
        /* A failure not yet delivered becomes the cancellation; inside the callback
         * (nothing queued) there is nothing left to cancel. */
        if (tide__call_pending(&req->call))
            req->status = TIDE_ECANCELLED;
        break;
    default:
        fail(req, TIDE_ECANCELLED);
        break;
    }
}
