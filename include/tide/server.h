/* Making connections and serving them: asyncio's create_connection, create_server,
 * their Unix variants and connect_accepted_socket, and the server object. */
#ifndef TIDE_SERVER_H
#define TIDE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "tls.h" /* the TLS configuration and session types of the options */
#include "transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A listening server (opaque; made by create_server, freed by tide after
 * tide_server_close once its last client is gone). */
typedef struct tide_server tide_server_t;
/* A connect in progress (opaque; freed by tide after its callback), for
 * tide_connect_cancel. */
typedef struct tide_connect tide_connect_t;

/* Completion of a connect: on success status is 0, connection_made has already run,
 * and transport/protocol are the new connection's (the factory's protocol). On failure
 * status is a negative code, transport and protocol are NULL and the factory was not
 * called. */
typedef void (*tide_connect_cb)(tide_loop_t *loop, int status, tide_transport_t *transport,
                                tide_protocol_t *protocol, void *arg);

/* Options for create_connection; zero-initialise, then set what you need. */
typedef struct tide_connect_options {
    /* AF_UNSPEC (0), AF_INET or AF_INET6: which addresses of host to try. */
    int family;
    /* Bind locally before connecting (NULL: any address); port 0 picks one. */
    const char *local_host;
    uint16_t local_port;
    /* RFC 8305: when > 0, start the next address after this many seconds if the
     * previous attempt has not finished (0.25 is the RFC's value); first success
     * wins and the other attempts are closed. 0: one address at a time. */
    double happy_eyeballs_delay;
    /* Reorder addresses by family: the first `interleave` from the first family, then
     * alternate. 0 keeps resolver order (1 when happy eyeballs is on). */
    int interleave;
    /* Give up after this many seconds in total with TIDE_ETIMEOUT (0: no limit). The
     * TLS handshake has its own deadline (tide_tls_config_set_timeouts). */
    double timeout;
    /* TLS (tide/tls.h): a client configuration makes this a TLS connection; the factory
     * runs and connection_made follows only after a successful handshake. */
    tide_tls_config_t *tls;
    /* The name to verify and send as SNI; NULL: the host connected to (for Unix
     * sockets: none, so verification needs a name here). */
    const char *server_hostname;
    /* Resume this session (from tide_tls_get_session); NULL: a full handshake. */
    const tide_tls_session_t *tls_session;
} tide_connect_options_t;

/* Connects to host:port (a name or a literal address) and calls factory(factory_arg)
 * for the protocol once connected. Names are resolved off the loop thread; every
 * address is tried in turn (or raced, see happy_eyeballs_delay). cb runs on a later
 * iteration. Returns 0 and, if req is not NULL, a request that tide_connect_cancel()
 * accepts until cb runs; or TIDE_EINVAL / TIDE_ENOMEM (cb is then never called).
 * Failures reach cb: TIDE_EAI_NONAME for an unknown name, TIDE_ECONNREFUSED, ... When
 * several addresses fail with different errors, the last one is reported. */
TIDE_EXTERN int tide_loop_create_connection(tide_loop_t *loop, const char *host, uint16_t port,
                                            tide_protocol_factory_cb factory, void *factory_arg,
                                            const tide_connect_options_t *options,
                                            tide_connect_cb cb, void *arg,
                                            tide_connect_t **req);

/* Connects to the Unix stream socket at path (a leading '@' names an abstract
 * socket). Same completion and return rules as tide_loop_create_connection; of the
 * options (may be NULL) only the TLS fields and timeout apply. */
TIDE_EXTERN int tide_loop_create_unix_connection(tide_loop_t *loop, const char *path,
                                                 tide_protocol_factory_cb factory,
                                                 void *factory_arg,
                                                 const tide_connect_options_t *options,
                                                 tide_connect_cb cb, void *arg,
                                                 tide_connect_t **req);

/* Wraps an already connected stream socket (TCP, Unix, one end of a socketpair) in a
 * transport; the transport owns fd from now on, even when cb reports an error.
 * connection_made and then cb run on a later iteration. Of the options (may be NULL)
 * only the TLS fields apply: a client configuration, with server_hostname when
 * verifying (there is no host to default to). Returns 0, TIDE_EINVAL (fd is not a
 * stream socket, a server configuration), TIDE_ENOMEM, TIDE_ETLS_NO_HOSTNAME. */
TIDE_EXTERN int tide_loop_connect_socket(tide_loop_t *loop, int fd,
                                         tide_protocol_factory_cb factory, void *factory_arg,
                                         const tide_connect_options_t *options,
                                         tide_connect_cb cb, void *arg);

/* As tide_loop_connect_socket, for a socket accepted outside tide: the server side of
 * the connection, so options->tls, if set, is a server configuration. */
TIDE_EXTERN int tide_loop_connect_accepted_socket(tide_loop_t *loop, int fd,
                                                  tide_protocol_factory_cb factory,
                                                  void *factory_arg,
                                                  const tide_connect_options_t *options,
                                                  tide_connect_cb cb, void *arg);

/* Cancels a pending connect: cb runs with TIDE_ECANCELLED on a later iteration and no
 * socket is left open. A no-op for NULL; the request must not be used after cb ran. */
TIDE_EXTERN void tide_connect_cancel(tide_connect_t *req);

/* Called when accept() runs out of descriptors or memory (TIDE_EMFILE, TIDE_ENFILE,
 * TIDE_ENOBUFS, TIDE_ENOMEM): the server stops accepting for retry_after seconds
 * (or until one of its clients closes) instead of spinning. */
typedef void (*tide_server_error_cb)(tide_server_t *server, int status, double retry_after,
                                     void *arg);

/* Completion of tide_server_wait_closed: status 0 once the server is closed and has no
 * client left, or TIDE_ETIMEOUT when the deadline passed first. */
typedef void (*tide_server_closed_cb)(tide_server_t *server, int status, void *arg);

/* Options for create_server; zero-initialise, then set what you need. */
typedef struct tide_server_options {
    /* AF_UNSPEC (0): every family host resolves to; or AF_INET / AF_INET6. */
    int family;
    /* listen() backlog and the most accepts per readiness event (0: 100). */
    int backlog;
    /* SO_REUSEADDR is on by default (as asyncio on POSIX); set this to turn it off. */
    bool no_reuse_address;
    /* SO_REUSEPORT: several sockets, for example one loop per thread, share the port. */
    bool reuse_port;
    /* SO_KEEPALIVE on accepted connections. */
    bool keep_alive;
    /* Create the sockets but accept only after tide_server_start_serving(). */
    bool defer_serving;
    /* Stop accepting while this many clients are connected (0: no limit). */
    size_t max_connections;
    /* Seconds to pause accepting after EMFILE/ENFILE/ENOBUFS/ENOMEM (0: 1 second). */
    double accept_retry_delay;
    /* Told about accept back-off (also logged at warning level). */
    tide_server_error_cb on_error;
    void *on_error_arg;
    /* TLS (tide/tls.h): a server configuration makes every client a TLS connection;
     * the factory runs only after a successful handshake (failed ones are logged at
     * debug level and closed). A client that has sent nothing yet costs about 2 KiB:
     * its TLS context gets its record buffers when the first bytes come. */
    tide_tls_config_t *tls;
    /* TLS: stop accepting while this many clients are in their handshake (0: no
     * limit); further connections then wait in the kernel's accept queue, unread, until
     * a handshake ends, as with max_connections. */
    size_t max_handshakes;
    /* TLS: the handshake deadline for this server's clients, in seconds (0: the
     * configuration's, tide_tls_config_set_timeouts). */
    double tls_handshake_timeout;
} tide_server_options_t;

/* Listens on host:port and makes a transport with factory(factory_arg)'s protocol for
 * every client. host NULL or "" binds every interface, IPv4 and IPv6 (IPv6 sockets
 * are V6ONLY); port 0 picks a free port (read it back with tide_server_get_sockname).
 * Returns 0 and sets *server, or TIDE_EADDRINUSE, TIDE_EAI_NONAME, ... (every socket
 * already made is closed). A host that is not a literal address is resolved on a
 * worker thread when called from a task of this loop (the task waits, the loop runs
 * on; the call may then also return TIDE_ECANCELLED / TIDE_ETIMEOUT); from plain
 * callbacks it blocks on the resolver: use tide_loop_create_server_async there. The
 * server must be closed with tide_server_close(). */
TIDE_EXTERN int tide_loop_create_server(tide_loop_t *loop, const char *host, uint16_t port,
                                        tide_protocol_factory_cb factory, void *factory_arg,
                                        const tide_server_options_t *options,
                                        tide_server_t **server);

/* Completion of tide_loop_create_server_async: 0 and the server (which must be closed
 * with tide_server_close), or the code create_server would have returned and NULL. */
typedef void (*tide_server_created_cb)(tide_loop_t *loop, int status, tide_server_t *server,
                                       void *arg);

/* create_server for callback code: the host is resolved on the loop's worker pool (as
 * tide_loop_getaddrinfo), so the loop never blocks on a name, then the server is made
 * and cb runs on a later iteration, exactly once. options are copied. Returns 0, or
 * TIDE_EINVAL / TIDE_ENOMEM / TIDE_EAGAIN (cb is then never called). */
TIDE_EXTERN int tide_loop_create_server_async(tide_loop_t *loop, const char *host, uint16_t port,
                                              tide_protocol_factory_cb factory, void *factory_arg,
                                              const tide_server_options_t *options,
                                              tide_server_created_cb cb, void *arg);

/* Listens on a Unix stream socket at path ('@' prefix: abstract). A stale socket file
 * at path is replaced; any other file is left and gives TIDE_EADDRINUSE. The file is
 * removed on close if it is still the one bound. */
TIDE_EXTERN int tide_loop_create_unix_server(tide_loop_t *loop, const char *path,
                                             tide_protocol_factory_cb factory, void *factory_arg,
                                             const tide_server_options_t *options,
                                             tide_server_t **server);

/* Serves on an already bound (and possibly listening) stream socket, which the server
 * then owns. */
TIDE_EXTERN int tide_loop_create_server_from_fd(tide_loop_t *loop, int fd,
                                                tide_protocol_factory_cb factory,
                                                void *factory_arg,
                                                const tide_server_options_t *options,
                                                tide_server_t **server);

/* Starts accepting (idempotent). Returns 0 or TIDE_ECLOSED. */
TIDE_EXTERN int tide_server_start_serving(tide_server_t *server);

/* Stops accepting and closes the listening sockets; clients stay connected. Idempotent.
 * The server is freed once it is closed, has no client and every wait_closed callback
 * has returned (at once after the last one); until then, and always until the current
 * callback returns, the pointer stays valid. */
TIDE_EXTERN void tide_server_close(tide_server_t *server);

/* Closes every connected client gracefully (flushing), or aborts them. */
TIDE_EXTERN void tide_server_close_clients(tide_server_t *server);
TIDE_EXTERN void tide_server_abort_clients(tide_server_t *server);

/* Calls cb once the server is closed and no client remains (at once, on a later
 * iteration, if that is already so), or with TIDE_ETIMEOUT after timeout seconds
 * (timeout <= 0: no deadline). Returns 0 or TIDE_ENOMEM. */
TIDE_EXTERN int tide_server_wait_closed(tide_server_t *server, double timeout,
                                        tide_server_closed_cb cb, void *arg);

/* True while the server accepts connections (started, not closed). */
TIDE_EXTERN bool tide_server_is_serving(const tide_server_t *server);

/* Temporarily stops accepting and restarts it; the listening sockets stay open, so
 * clients wait in the kernel's backlog. */
TIDE_EXTERN void tide_server_pause_accepting(tide_server_t *server);
TIDE_EXTERN void tide_server_resume_accepting(tide_server_t *server);

/* The number of clients currently connected. */
TIDE_EXTERN size_t tide_server_client_count(const tide_server_t *server);

/* The number of listening sockets (0 after close). */
TIDE_EXTERN size_t tide_server_socket_count(const tide_server_t *server);

/* The descriptor of listening socket i (owned by the server), or TIDE_EINVAL. */
TIDE_EXTERN int tide_server_get_fd(const tide_server_t *server, size_t i);

/* The bound address of listening socket i, as tide_transport_get_sockname. */
TIDE_EXTERN int tide_server_get_sockname(const tide_server_t *server, size_t i,
                                         struct sockaddr *addr, socklen_t *len);

/* The loop the server runs on. */
TIDE_EXTERN tide_loop_t *tide_server_get_loop(const tide_server_t *server);

#ifdef __cplusplus
}
#endif
#endif
