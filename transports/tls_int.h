/* transports/ private interface of the TLS layer (tls_mbedtls.c): what connects,
 * servers and streams need to put TLS over a transport.
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

/* mbedTLS's text for one of its codes (used by tide_strerror_r; core/errors.c has a
 * weak fallback for builds without TLS). */
void tide__tls_describe(int mbedtls_code, char *buf, size_t len);

#endif
