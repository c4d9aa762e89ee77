/* transports/ private interface of the TLS layer: what connects, servers and streams
 * need to put TLS over a transport (the layer, transports/tls.c), and the seam between
 * that engine-neutral layer and the TLS engine beneath it (transports/tls_mbedtls.c, the
 * only file that knows mbedTLS): the engine ops table at the end.
 *
 * One TLS layer is two objects in one allocation: the protocol it installs on the
 * transport beneath ("the lower transport", which carries ciphertext) and the TLS
 * transport it offers above (a tide_transport_t with its own ops, carrying plaintext
 * to the application's protocol). The layer frees itself after the lower transport's
 * connection_lost and the TLS transport's release have both happened. */
#ifndef TIDE_TLS_INT_H
#define TIDE_TLS_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "tide/tls.h"
#include "transports/transport_int.h"

typedef struct tide__tls tide__tls;

/* The parameters of one TLS connection. */
typedef struct tide__tls_params {
    tide_tls_config_t *config; /* a reference is taken */
    /* Client: the name to verify and to send as SNI; NULL or "" for none (allowed only
     * with verification off). Copied. */
    const char *server_hostname;
    const tide_tls_session_t *session; /* client: resume this (copied); may be NULL */
    double handshake_timeout;          /* > 0: instead of the configuration's */
} tide__tls_params;

/* Checks params before anything is started, so that a caller can fail synchronously:
 * freezes the configuration (loading the system CA bundle if needed). Returns 0,
 * TIDE_EINVAL, TIDE_ETLS_NO_HOSTNAME, TIDE_ETLS_NO_TRUST, TIDE_ETLS_CONFIG, TIDE_ENOMEM,
 * or TIDE_ENOSYS without TLS support. */
int tide__tls_check(const tide__tls_params *params);

/* Completion of the handshake of a layer made by tide__tls_new.
 * status 0: the TLS transport (tide__tls_transport) is ready to be started: the caller
 *   sets its protocol and calls tide__transport_start() on it (or closes it with
 *   tide__tls_abort when it no longer wants it).
 * status < 0: the handshake failed (or timed out); the layer closes the lower transport
 *   and frees itself; the caller must not touch it after cb returns. */
typedef void (*tide__tls_handshake_cb)(tide__tls *tls, int status, void *arg);

/* A layer for a lower transport that is not started yet (connect, accept): give
 * tide__tls_lower_protocol() to the lower transport as its protocol; the lower's
 * connection_made starts the handshake. Returns 0, or what tide__tls_check returns.
 * If the lower transport is then never started, free the layer with tide__tls_discard
 * after tide__transport_discard(lower). */
int tide__tls_new(tide_loop_t *loop, const tide__tls_params *params, tide__tls_handshake_cb cb,
                  void *arg, tide__tls **out);
tide_protocol_t *tide__tls_lower_protocol(tide__tls *tls);
tide_transport_t *tide__tls_transport(tide__tls *tls);
/* The transport beneath the layer (NULL once it is lost). */
tide_transport_t *tide__tls_lower(const tide__tls *tls);
void tide__tls_discard(tide__tls *tls);

/* Gives up on a layer whose TLS transport was never started (a cancelled connect, a
 * factory that returned NULL): aborts the lower transport; no callback follows; the
 * layer frees itself. */
void tide__tls_abort(tide__tls *tls);

/* start_tls on a live transport for protocol `app` (tide_loop_start_tls with the bytes
 * already received above the lower transport, which are fed to TLS before anything
 * read later: streams pass their unread buffer). On 0, *tls_out is the TLS transport,
 * already the app's transport (writes before the handshake ends are queued, never sent
 * in plaintext); cb follows. */
int tide__tls_upgrade(tide_loop_t *loop, tide_transport_t *lower, tide_protocol_t *app,
                      const tide__tls_params *params, const void *received, size_t received_len,
                      tide_start_tls_cb cb, void *arg, tide_transport_t **tls_out);

/* Wraps a descriptor just accepted or connected: a socket transport whose protocol is
 * the user's (params NULL: *tls_out is NULL), or the TLS layer over it (*tls_out set;
 * the handshake starts once the caller starts the socket transport, and cb follows).
 * On failure nothing is left and fd is still the caller's to close. Returns 0, a code
 * of tide__tls_new, or of the socket transport. Used by connect.c and server.c. */
int tide__tls_wrap_fd(tide_loop_t *loop, int fd, const tide__tls_params *params,
                      tide__tls_handshake_cb cb, void *arg, tide_transport_t **socket_out,
                      tide__tls **tls_out);

/* The engine's text for one of its codes (used by tide_strerror_r; core/errors.c has a
 * weak fallback for builds without TLS). */
void tide__tls_describe(int engine_code, char *buf, size_t len);

/* ---- the engine seam --------------------------------------------------------------------
 * The layer (tls.c) owns everything that is not cryptography: the configuration's
 * settings, the phases, flow control, timers, start_tls and the transports; the engine
 * owns what its library parses and computes: certificates, keys, the trust store, the
 * per-connection TLS state, sessions. A configuration's settings are stored neutrally
 * (tide__tls_settings) and frozen into the engine's own configuration on first use.
 *
 * The engine drives no I/O of its own: it takes ciphertext from the layer with
 * tide__tls_bio_recv and gives ciphertext to it with tide__tls_bio_send. Engine calls
 * return a count (>= 0), one of the TIDE__TLS_* statuses below, or a tide error code
 * (negative; a library failure carries the library's code, TIDE_ETLS_BASE + code; a
 * refused certificate its TIDE_ETLS_CERT_* code). The layer gives precedence to an
 * error the BIO met over what the engine reports. Everything runs on the loop of the
 * connection; an engine configuration is shared by loops on several threads. */

/* Statuses, outside the range of every tide code. */
#define TIDE__TLS_AGAIN (-0x7F000001)  /* needs more ciphertext: call again when it comes */
#define TIDE__TLS_TICKET (-0x7F000002) /* a session ticket came and was kept: call again */
#define TIDE__TLS_HELD (-0x7F000003)   /* input was set aside for the next call: call now */
#define TIDE__TLS_CLOSED (-0x7F000004) /* the peer's close_notify */

/* TLS alert descriptions the layer sends itself (RFC 8446 6). */
#define TIDE__TLS_ALERT_HANDSHAKE_FAILURE 40
#define TIDE__TLS_ALERT_DECODE_ERROR 50

/* The settings of a configuration, as the user made them (tls.c owns and frees them).
 * Read by the engine at freeze and, frozen, by every connection. */
typedef struct tide__tls_settings {
    bool server;
    bool verify;
    bool wait_close_notify;
    bool cache_enabled;
    bool legacy;   /* the engine's own suites and groups instead of tide's */
    bool has_ca;   /* the engine holds at least one trust anchor */
    bool has_cert; /* ... and a default certificate */
    int min_version;
    int max_version; /* 0: the highest the engine has */
    double handshake_timeout;
    double shutdown_timeout;
    double cache_lifetime;
    char **alpn;      /* NULL-terminated, or NULL */
    char **sni_names; /* the SNI certificates' names, in the order they were added */
    size_t nsni;
} tide__tls_settings;

/* The engine's halves of a configuration and of a connection (opaque to the layer). */
typedef struct tide__tls_econf tide__tls_econf;
typedef struct tide__tls_econn tide__tls_econn;

/* What a handshake settled, for tide_tls_get_info (strings static or the engine's). */
typedef struct tide__tls_state {
    const char *version;
    const char *cipher;
    const char *alpn;
    const char *sni; /* server: the name the client asked for, or NULL */
    bool resumed;
    bool peer_verified;
} tide__tls_state;

typedef struct tide__tls_engine_ops {
    const char *name;
    const char *(*library_version)(void);
    /* TIDE_TLS_VERSION_* the engine can speak. */
    bool (*version_supported)(int version);
    void (*describe)(int engine_code, char *buf, size_t len);

    /* Configurations. conf_new: 0, TIDE_ENOMEM or a TLS code. The loaders parse at once
     * so that bad input fails the setter: conf_add_ca takes PEM or DER (data[len] is a
     * NUL the caller put there) and succeeds when the store holds at least one
     * certificate afterwards; conf_add_pair takes a chain and its key, as the default
     * certificate (sni_name NULL) or for an SNI name, appended in the order of
     * settings->sni_names. conf_freeze builds the engine's configuration from the
     * settings (which it keeps a pointer to): 0 or a code; it may be retried after a
     * failure. */
    int (*conf_new)(bool server, tide__tls_econf **out);
    void (*conf_free)(tide__tls_econf *conf);
    int (*conf_add_ca)(tide__tls_econf *conf, const unsigned char *data, size_t len);
    int (*conf_add_ca_dir)(tide__tls_econf *conf, const char *path);
    int (*conf_add_pair)(tide__tls_econf *conf, const char *sni_name, const unsigned char *cert,
                         size_t cert_len, const unsigned char *key, size_t key_len,
                         const char *password);
    int (*conf_freeze)(tide__tls_econf *conf, const tide__tls_settings *settings);

    /* Connections. conn_new makes the (small) state of a connection of layer `tls`;
     * conn_setup gives it its record buffers (a server calls it when the client's first
     * bytes come). A client then names its peer (conn_set_peer: a host name or an IP
     * address, checked and sent as the settings say) and may offer a session. */
    int (*conn_new)(tide__tls_econf *conf, tide__tls *tls, tide__tls_econn **out);
    int (*conn_setup)(tide__tls_econn *conn);
    int (*conn_set_peer)(tide__tls_econn *conn, const char *hostname);
    int (*conn_offer_session)(tide__tls_econn *conn, const tide_tls_session_t *session);
    void (*conn_free)(tide__tls_econn *conn);

    /* The protocol. handshake: 0 once done (AGAIN, TICKET or an error before). read:
     * plaintext bytes (0 with len 0: a record was decrypted, else the end), AGAIN, HELD,
     * TICKET, CLOSED or an error. write: bytes taken (> 0), AGAIN (call again with the
     * same length), TICKET or an error. close_notify: 0, TICKET or an error. */
    int (*handshake)(tide__tls_econn *conn);
    int (*read)(tide__tls_econn *conn, unsigned char *buf, size_t len);
    int (*write)(tide__tls_econn *conn, const unsigned char *buf, size_t len);
    int (*close_notify)(tide__tls_econn *conn);
    /* Decrypted bytes ready, and whether anything (decrypted or not) is held inside. */
    size_t (*bytes_ready)(tide__tls_econn *conn);
    bool (*has_pending)(tide__tls_econn *conn);
    /* A client that should read on before it closes: TLS 1.3 without a ticket yet. */
    bool (*awaits_ticket)(tide__tls_econn *conn);
    /* The alert a server sends in clear when the client's first flight failed with err
     * before the engine sent anything (hello_len: the length its ClientHello announced,
     * 0 if unknown), and why, for the log (static text, or NULL when err says it all). */
    int (*first_flight_alert)(int err, size_t hello_len, const char **why);

    /* After the handshake. */
    void (*state)(tide__tls_econn *conn, tide__tls_state *state);
    int (*peer_certificate)(tide__tls_econn *conn, tide_tls_cert_t *cert);
    int (*get_session)(tide__tls_econn *conn, tide_tls_session_t **session);
    void (*session_free)(tide_tls_session_t *session);
} tide__tls_engine_ops;

/* The engine built in (tls_mbedtls.c). */
extern const tide__tls_engine_ops tide__tls_engine;

/* The engine's BIO into the layer. send: queues ciphertext on the transport beneath;
 * returns len, or a tide code (the layer remembers it: the engine reports a failure of
 * its own, any code). recv: takes up to len bytes of ciphertext received; 0 when there
 * is none yet. */
int tide__tls_bio_send(tide__tls *tls, const unsigned char *buf, size_t len);
size_t tide__tls_bio_recv(tide__tls *tls, unsigned char *buf, size_t len);

/* The index of the SNI certificate whose name matches the name a client asked for
 * (exact, case insensitive, or one label under "*."), or -1. */
int tide__tls_sni_find(const tide__tls_settings *settings, const char *name, size_t len);

#endif
