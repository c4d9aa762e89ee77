/* Opening streams: open_connection (TCP, Unix, an existing socket) and start_server
 * (TCP, Unix), as asyncio's streams.py does it: the connect and server machinery of
 * transports/ with a factory that makes a stream per connection.
 *
 * Client side: a small request record remembers the user's callback and the stream
 * the factory made. On failure after the factory ran, the stream is discarded if no
 * transport took it; when one did (a cancel while the transport was being made), the
 * transport still delivers connection_made before the failure is reported and
 * connection_lost after, so the stream is released and freed after its loss.
 *
 * Server side: a context per server holds the limit and the client-connected
 * callback, which each stream copies, so the context is only needed while the server
 * may still call the factory. It is freed by a wait_closed registered on the server.
 *
 * Everything runs on the loop's thread, from the transports' callbacks. */
#include <stdlib.h>

#include "streams/streams_int.h"

/* ---- client side ------------------------------------------------------------------------- */

typedef struct open_req {
    tide_loop_t *loop;
    size_t limit;
    tide_open_cb cb;
    void *arg;
    tide__stream *stream; /* made by the factory */
} open_req;

static tide_protocol_t *open_factory(void *arg) {
    open_req *o = arg;
    o->stream = tide__stream_new(o->loop, o->limit);
    return o->stream ? &o->stream->proto : NULL;
}

static void open_done(tide_loop_t *loop, int status, tide_transport_t *t, tide_protocol_t *p,
                      void *arg) {
    (void)t;
    (void)p;
    open_req *o = arg;
    tide__stream *s = o->stream;
    tide_open_cb cb = o->cb;
    void *cb_arg = o->arg;
    free(o);
    if (status == 0) {
        cb(loop, 0, &s->reader, s, cb_arg);
        return;
    }
    if (s != NULL) {
        if (s->flags & TIDE__S_MADE) {
            s->flags |= TIDE__S_RELEASED;
            tide__stream_maybe_free(s);
        } else {
            tide__stream_discard(s);
        }
    }
    cb(loop, status, NULL, NULL, cb_arg);
}

/* Validates the arguments and makes the request: 0, TIDE_EINVAL or TIDE_ENOMEM. */
static int open_req_new(tide_loop_t *loop, size_t limit, tide_open_cb cb, void *arg,
                        open_req **out) {
    if (loop == NULL || cb == NULL || !tide__stream_limit_ok(limit))
        return TIDE_EINVAL;
    open_req *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return TIDE_ENOMEM;
    o->loop = loop;
    o->limit = limit;
    o->cb = cb;
    o->arg = arg;
    *out = o;
    return 0;
}

/* Frees the request when the connect did not start (its completion will not come). */
static int finish_start(open_req *o, int rc) {
    if (rc < 0)
        free(o);
    return rc;
}

int tide_loop_open_connection(tide_loop_t *loop, const char *host, uint16_t port, size_t limit,
                              const tide_connect_options_t *options, tide_open_cb cb, void *arg,
                              tide_connect_t **req) {
    open_req *o;
    int rc = open_req_new(loop, limit, cb, arg, &o);
    if (rc != 0)
        return rc;
    return finish_start(o, tide_loop_create_connection(loop, host, port, open_factory, o, options,
                                                       open_done, o, req));
}

int tide_loop_open_unix_connection(tide_loop_t *loop, const char *path, size_t limit,
                                   const tide_connect_options_t *options, tide_open_cb cb,
                                   void *arg, tide_connect_t **req) {
    open_req *o;
    int rc = open_req_new(loop, limit, cb, arg, &o);
    if (rc != 0)
        return rc;
    return finish_start(
        o, tide_loop_create_unix_connection(loop, path, open_factory, o, options, open_done, o,
                                            req));
}

int tide_loop_open_socket(tide_loop_t *loop, int fd, size_t limit,
                          const tide_connect_options_t *options, tide_open_cb cb, void *arg) {
    open_req *o;
    int rc = open_req_new(loop, limit, cb, arg, &o);
    if (rc != 0)
        return rc;
    return finish_start(o,
                        tide_loop_connect_socket(loop, fd, open_factory, o, options, open_done, o));
}

int tide_loop_open_accepted_socket(tide_loop_t *loop, int fd, size_t limit,
                                   const tide_connect_options_t *options, tide_open_cb cb,
                                   void *arg) {
    open_req *o;
    int rc = open_req_new(loop, limit, cb, arg, &o);
    if (rc != 0)
        return rc;
    return finish_start(o, tide_loop_connect_accepted_socket(loop, fd, open_factory, o, options,
                                                             open_done, o));
}

/* ---- server side ------------------------------------------------------------------------- */

typedef struct serve_ctx {
    tide_loop_t *loop;
    size_t limit;
    tide_client_connected_cb cb;
    void *arg;
} serve_ctx;

static tide_protocol_t *serve_factory(void *arg) {
    serve_ctx *c = arg;
    tide__stream *s = tide__stream_new(c->loop, c->limit);
    if (s == NULL)
        return NULL; /* the server refuses this client */
    s->on_connected = c->cb;
    s->on_connected_arg = c->arg;
    /* The server makes the transport before calling us, so this stream is certain to
     * get connection_made (protocol.h). */
    return &s->proto;
}

static void serve_closed(tide_server_t *server, int status, void *arg) {
    (void)server;
    (void)status;
    free(arg);
}

typedef int (*create_fn)(tide_loop_t *loop, const char *where, uint16_t port, serve_ctx *c,
                         const tide_server_options_t *options, tide_server_t **server);

static int create_tcp(tide_loop_t *loop, const char *host, uint16_t port, serve_ctx *c,
                      const tide_server_options_t *options, tide_server_t **server) {
    return tide_loop_create_server(loop, host, port, serve_factory, c, options, server);
}

static int create_unix(tide_loop_t *loop, const char *path, uint16_t port, serve_ctx *c,
                       const tide_server_options_t *options, tide_server_t **server) {
    (void)port;
    return tide_loop_create_unix_server(loop, path, serve_factory, c, options, server);
}

static int start_server(tide_loop_t *loop, create_fn create, const char *where, uint16_t port,
                        size_t limit, const tide_server_options_t *options,
                        tide_client_connected_cb cb, void *arg, tide_server_t **out) {
    if (loop == NULL || cb == NULL || out == NULL || !tide__stream_limit_ok(limit))
        return TIDE_EINVAL;
    serve_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return TIDE_ENOMEM;
    c->loop = loop;
    c->limit = limit;
    c->cb = cb;
    c->arg = arg;
    tide_server_t *server = NULL;
    int rc = create(loop, where, port, c, options, &server);
    if (rc < 0) {
        free(c);
        return rc;
    }
    rc = tide_server_wait_closed(server, 0, serve_closed, c);
    if (rc < 0) {
        /* No client can have been accepted yet: that happens on the loop. */
        tide_server_close(server);
        free(c);
        return rc;
    }
    *out = server;
    return 0;
}

int tide_loop_start_server(tide_loop_t *loop, const char *host, uint16_t port, size_t limit,
                           const tide_server_options_t *options, tide_client_connected_cb cb,
                           void *arg, tide_server_t **server) {
    return start_server(loop, create_tcp, host, port, limit, options, cb, arg, server);
}

int tide_loop_start_unix_server(tide_loop_t *loop, const char *path, size_t limit,
                                const tide_server_options_t *options, tide_client_connected_cb cb,
                                void *arg, tide_server_t **server) {
    return start_server(loop, create_unix, path, 0, limit, options, cb, arg, server);
}
