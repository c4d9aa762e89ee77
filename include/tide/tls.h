/* TLS: a configuration shared by many connections, start_tls on a live transport, and
 * what a TLS connection can tell about itself.
 *
 * A TLS transport is layered over another transport (TCP, Unix, a socketpair, the
 * in-memory pair) as that transport's protocol, so every transport call works on it
 * unchanged, except write_eof (TLS has no half-close: TIDE_ENOTSUP). Connections take
 * a configuration through tide_connect_options_t.tls / tide_server_options_t.tls, or
 * through tide_loop_start_tls and tide_writer_start_tls for an upgrade (STARTTLS).
 *
 * Secure by default, also on mbedTLS 2.28 (Debian 12), whose own defaults are not:
 * - a client verifies the server's chain (the system CA bundle unless CA files were
 *   loaded) and its name (server_hostname, by default the host connected to); a client
 *   with verification on and no name refuses to start (TIDE_ETLS_NO_HOSTNAME);
 *   turning verification off is an explicit call;
 * - TLS 1.2 is the minimum; renegotiation is refused;
 * - only ECDHE key exchange with AEAD ciphers (ChaCha20-Poly1305, AES-GCM), on the groups
 *   X25519, P-256 and P-384 in that order, on both sides: no suite without forward
 *   secrecy, no CBC or CCM_8, no finite-field DHE, no group under 128-bit security. A
 *   server picks by its own order, so the cheapest group both sides have wins; peers
 *   that cannot do any of this need tide_tls_config_allow_legacy;
 * - an end of the connection without close_notify is TIDE_ETLS_TRUNCATED, never a
 *   clean end; bytes after the peer's close_notify are never delivered;
 * - the handshake has a deadline (60 s by default, TIDE_ETLS_HANDSHAKE_TIMEOUT), and
 *   so does closing (30 s, TIDE_ETLS_SHUTDOWN_TIMEOUT).
 *
 * The defaults, and the call that changes each:
 * - verify the peer: clients yes, servers no (tide_tls_config_set_verify_peer);
 * - trust anchors: the system bundle, $SSL_CERT_FILE or
 *   /etc/ssl/certs/ca-certificates.crt, for clients that load none
 *   (tide_tls_config_load_ca_file / _dir / _mem / _system_ca);
 * - versions: TLS 1.2 up to the highest the library has, 1.2 on mbedTLS 2.28, 1.3 on
 *   3.x (tide_tls_config_set_versions; nothing below 1.2);
 * - suites and groups: ECDHE with AEAD; X25519, P-256, P-384 (tide_tls_config_allow_legacy
 *   for mbedTLS's own lists); renegotiation: refused (not configurable);
 * - ALPN: none (tide_tls_config_set_alpn); SNI certificates: none
 *   (tide_tls_config_add_sni_cert_file / _mem);
 * - deadlines: handshake 60 s, shutdown 30 s (tide_tls_config_set_timeouts; a server's
 *   own handshake deadline: tide_server_options_t.tls_handshake_timeout);
 * - closing: send close_notify without waiting for the peer's
 *   (tide_tls_config_set_wait_close_notify);
 * - server resumption: session IDs and tickets, 600 s (tide_tls_config_set_session_cache);
 * - server handshakes in progress: no cap (tide_server_options_t.max_handshakes).
 * Limits of the engine: a server takes a ClientHello of up to 16 KiB
 * (MBEDTLS_SSL_IN_CONTENT_LEN), whole in one record on mbedTLS 2.28; a longer one (or, on
 * 2.28, one split over records) fails the handshake with a fatal alert to the client and
 * a warning in the loop's log.
 *
 * Errors: verification failures have codes of their own (TIDE_ETLS_CERT_*); any other
 * mbedTLS failure is TIDE_ETLS_BASE + mbedTLS's code (tide_err_is_tls,
 * tide_err_tls_code; tide_strerror_r gives mbedTLS's text). A certificate with several
 * faults gets one code, the first of: TIDE_ETLS_CERT_UNTRUSTED (unknown CA,
 * self-signed), TIDE_ETLS_CERT_EXPIRED, TIDE_ETLS_CERT_NOT_YET_VALID,
 * TIDE_ETLS_CERT_HOSTNAME, TIDE_ETLS_CERT_REVOKED, TIDE_ETLS_CERT_WEAK_KEY (RSA under
 * 2048 bits, a curve not allowed), TIDE_ETLS_CERT_WEAK_HASH (signed with SHA-1 or MD5),
 * TIDE_ETLS_CERT_USAGE (its key usage or extended key usage forbids this use),
 * TIDE_ETLS_CERT_INVALID (anything else: a missing certificate, ...). The side that rejected the
 * certificate gets that code; its peer gets the alert it was sent (a TLS code). A host name is
 * compared with the certificate's DNS names (and CN); an IP address (server_hostname, or the
 * address connected to) is never sent as SNI (RFC 6066) and must be one of the certificate's IP
 * address names, on every mbedTLS version (tide checks it itself).
 *
 * Connection events: the application's connection_made runs after the handshake
 * succeeded; a failed handshake never reaches the protocol factory. close() sends
 * close_notify, flushes and closes (waiting for the peer's close_notify only when the
 * configuration asks). The peer's close_notify is eof_received (its return value is
 * ignored: TLS then closes). */
#ifndef TIDE_TLS_H
#define TIDE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tide_tls_config tide_tls_config_t;
typedef struct tide_tls_session tide_tls_session_t;

/* Protocol versions, as on the wire. */
#define TIDE_TLS_VERSION_1_2 0x0303
#define TIDE_TLS_VERSION_1_3 0x0304

/* True when tide was built with TLS support. Without it every call below returns
 * TIDE_ENOSYS. */
TIDE_EXTERN bool tide_tls_available(void);

/* The TLS library's name and version, e.g. "mbed TLS 2.28.3" (static storage). */
TIDE_EXTERN const char *tide_tls_library_version(void);

/* ---- configuration -----------------------------------------------------------------
 * A configuration is reference-counted: the creator holds one reference, and every
 * connection using it holds one until it is gone, so the creator may unref as soon as
 * it has started its connections or servers. It is frozen by its first use: setters
 * then return TIDE_EBUSY. A frozen configuration may be used from several loops on
 * several threads at once (with an mbedTLS 3.x built without MBEDTLS_THREADING_C, the
 * TLS work of all threads is then serialised by one lock). Setters return 0,
 * TIDE_EINVAL, TIDE_ENOMEM, TIDE_EBUSY, or for files TIDE_ENOENT / TIDE_EACCES / a TLS
 * code when the content does not parse. */

/* A client configuration: verification on, TLS 1.2 minimum, the system CA bundle as
 * trust anchors unless CA files or memory are loaded (the bundle is
 * $SSL_CERT_FILE, else /etc/ssl/certs/ca-certificates.crt; loaded on first use).
 * Returns 0 or TIDE_ENOMEM. */
TIDE_EXTERN int tide_tls_config_new_client(tide_tls_config_t **config);

/* A server configuration: needs a certificate and key (or SNI certificates) before its
 * first use, else that use fails with TIDE_ETLS_CONFIG; clients are not asked for
 * certificates unless tide_tls_config_set_verify_peer(cfg, true), which also needs CAs
 * loaded (the system bundle is not used for clients: TIDE_ETLS_NO_TRUST).
 * Resumption is on: a session cache (TLS 1.2 session IDs) and, with mbedTLS 3.x,
 * session tickets (TLS 1.3 resumes by tickets only). Returns 0 or TIDE_ENOMEM. */
TIDE_EXTERN int tide_tls_config_new_server(tide_tls_config_t **config);

/* Takes / drops a reference; the last unref frees. NULL is a no-op for unref. */
TIDE_EXTERN tide_tls_config_t *tide_tls_config_ref(tide_tls_config_t *config);
TIDE_EXTERN void tide_tls_config_unref(tide_tls_config_t *config);

/* True for a server configuration. */
TIDE_EXTERN bool tide_tls_config_is_server(const tide_tls_config_t *config);

/* Client: verify the server (default true); false accepts any certificate and any name,
 * and is the only way to connect without a server name. Server: ask clients for a
 * certificate and require it to verify against the loaded CAs (default false). */
TIDE_EXTERN int tide_tls_config_set_verify_peer(tide_tls_config_t *config, bool verify);

/* Trust anchors: PEM or DER certificates from a file, every file of a directory, or
 * memory (copied). Each call adds to what is loaded; once anything is loaded the system
 * bundle is no longer used implicitly (add it with tide_tls_config_load_system_ca). */
TIDE_EXTERN int tide_tls_config_load_ca_file(tide_tls_config_t *config, const char *path);
TIDE_EXTERN int tide_tls_config_load_ca_dir(tide_tls_config_t *config, const char *path);
TIDE_EXTERN int tide_tls_config_load_ca_mem(tide_tls_config_t *config, const void *data,
                                           size_t len);
TIDE_EXTERN int tide_tls_config_load_system_ca(tide_tls_config_t *config);

/* Our own certificate chain (leaf first) and private key: the server's default
 * certificate, or a client certificate. password may be NULL (unencrypted key). */
TIDE_EXTERN int tide_tls_config_set_cert_file(tide_tls_config_t *config, const char *cert_path,
                                             const char *key_path, const char *password);
TIDE_EXTERN int tide_tls_config_set_cert_mem(tide_tls_config_t *config, const void *cert,
                                            size_t cert_len, const void *key, size_t key_len,
                                            const char *password);

/* Server: a certificate chosen when the client's SNI names server_name (exact, case
 * insensitive, or "*.example.com" matching one label). A client naming no known name
 * gets the default certificate, or the handshake fails when there is none. */
TIDE_EXTERN int tide_tls_config_add_sni_cert_file(tide_tls_config_t *config,
                                                 const char *server_name, const char *cert_path,
                                                 const char *key_path, const char *password);
TIDE_EXTERN int tide_tls_config_add_sni_cert_mem(tide_tls_config_t *config,
                                                const char *server_name, const void *cert,
                                                size_t cert_len, const void *key, size_t key_len,
                                                const char *password);

/* ALPN: the protocols offered (client) or accepted in order of preference (server),
 * each 1..255 bytes, at most 16. Copied. */
TIDE_EXTERN int tide_tls_config_set_alpn(tide_tls_config_t *config, const char *const *protocols,
                                        size_t n);

/* The lowest and highest protocol version allowed (TIDE_TLS_VERSION_*; 0 for the
 * highest: whatever the library supports). The minimum cannot go below TLS 1.2.
 * TIDE_ENOTSUP when the library lacks the version. */
TIDE_EXTERN int tide_tls_config_set_versions(tide_tls_config_t *config, int min_version,
                                            int max_version);

/* Handshake and shutdown deadlines in seconds (<= 0 keeps the default of 60 and 30). */
TIDE_EXTERN int tide_tls_config_set_timeouts(tide_tls_config_t *config, double handshake,
                                            double shutdown);

/* close() waits for the peer's close_notify (bounded by the shutdown deadline) before
 * closing the transport underneath. Default false: send ours, flush, close; except that
 * a TLS 1.3 client that has not yet received the server's session ticket (sent after
 * the handshake) first reads until it comes, the peer's close_notify or EOF, bounded by
 * the deadline: closing the socket over unread bytes would make the kernel reset the
 * connection, which can destroy data the server has not read yet. */
TIDE_EXTERN int tide_tls_config_set_wait_close_notify(tide_tls_config_t *config, bool wait);

/* For peers that cannot meet tide's defaults (see the top of this file): true restores
 * mbedTLS's own lists of suites and groups (including static RSA, CBC and CCM suites,
 * and the 192- to 521-bit curves), for this configuration only. The TLS 1.2 minimum,
 * verification and the rest stay. Returns 0, TIDE_EINVAL, or TIDE_EBUSY once the
 * configuration is frozen (used by a connection). */
TIDE_EXTERN int tide_tls_config_allow_legacy(tide_tls_config_t *config, bool allow);

/* Server: keep sessions for resumption (default on, 600 s): by session ID (a cache
 * shared by the configuration's connections) and by session ticket (encrypted with keys
 * that rotate every lifetime, the last two accepted; for TLS 1.3 too with mbedTLS 3.x,
 * at most 7 days there). Clients resume with either. */
TIDE_EXTERN int tide_tls_config_set_session_cache(tide_tls_config_t *config, bool enabled,
                                                 double lifetime);

/* ---- sessions (client-side resumption) ----------------------------------------------- */

/* Copies the session of an established client connection, to resume it on a new
 * connection (tide_connect_options_t.tls_session; FTP data connections); the
 * session's secrets are in it, keep it in memory only. Each call gives a new copy.
 * TLS 1.3: the session is the server's latest ticket, which arrives after the
 * handshake (with or before the server's first data); a session taken before that
 * follows its connection: it resumes with the latest ticket the connection has read,
 * also once the connection is gone, and makes a full handshake while none came. A TLS
 * 1.3 session is only offered to the same server name. Returns 0, TIDE_EINVAL (not a TLS
 * client transport), TIDE_ENOTCONN (handshake not done), TIDE_ENOMEM. Free with
 * tide_tls_session_free. */
TIDE_EXTERN int tide_tls_get_session(const tide_transport_t *transport,
                                     tide_tls_session_t **session);
TIDE_EXTERN void tide_tls_session_free(tide_tls_session_t *session);

/* ---- upgrading a live connection (STARTTLS) -------------------------------------------- */

/* Completion of a start_tls: status 0 and the new TLS transport (now the protocol's
 * transport; the old one is the TLS layer's), or a negative code and NULL. */
typedef void (*tide_start_tls_cb)(tide_loop_t *loop, int status, tide_transport_t *tls,
                                  void *arg);

/* asyncio's loop.start_tls: from now on `transport` carries TLS for `protocol`, which
 * gets no callback from it again. Client or server side follows the configuration.
 * server_hostname: the name to verify and send as SNI (client; NULL with verification
 * on gives TIDE_ETLS_NO_HOSTNAME). session: resume it (client; may be NULL). cb (may be
 * NULL) runs once the handshake ended; the protocol's connection_made is not called
 * again, but it always gets connection_lost last, from the TLS transport, also after a
 * failed handshake (with the failure's code, after cb). The protocol may write at
 * once: what it writes before the handshake ends is queued and sent encrypted after
 * it. Closing or aborting the TLS transport before the handshake ended aborts the
 * connection: cb gets TIDE_ECANCELLED, then connection_lost(0) follows. Returns 0,
 * TIDE_EINVAL (also: transport not yet made, or on another loop), TIDE_ENOMEM,
 * TIDE_ECLOSED (the transport is closing, lost, or already half-closed either way),
 * TIDE_ETLS_NO_HOSTNAME, a configuration error; then nothing changed. Flow control
 * carries over: the watermarks, the write-buffer cap, a paused reading and a paused
 * writing move to the TLS transport as they were. */
TIDE_EXTERN int tide_loop_start_tls(tide_loop_t *loop, tide_transport_t *transport,
                                    tide_protocol_t *protocol, tide_tls_config_t *config,
                                    const char *server_hostname,
                                    const tide_tls_session_t *session, tide_start_tls_cb cb,
                                    void *arg);

/* ---- inspecting a TLS connection ----------------------------------------------------- */

/* What the handshake settled. Strings are static or owned by the transport (valid
 * while it is). */
typedef struct tide_tls_info {
    const char *version;     /* "TLSv1.2", "TLSv1.3" */
    const char *cipher;      /* mbedTLS's suite name, e.g. "TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256" */
    const char *alpn;        /* the protocol chosen, or NULL */
    const char *server_name; /* client: the name sent (verified unless verification is
                              * off); server: the client's SNI; or NULL */
    bool resumed;            /* the session was resumed (TLS 1.2 session ID or ticket,
                              * TLS 1.3 ticket) */
    bool server_side;
    bool peer_verified;      /* the peer's certificate was verified (chain and name) */
} tide_tls_info_t;

/* Fills *info. Returns 0, TIDE_EINVAL (not a TLS transport), TIDE_ENOTCONN (the
 * handshake has not finished). */
TIDE_EXTERN int tide_tls_get_info(const tide_transport_t *transport, tide_tls_info_t *info);

/* The peer's certificate. Times are seconds since the epoch (UTC). der is owned by
 * the transport. */
typedef struct tide_tls_cert {
    char subject[256]; /* "CN=example.test, O=..." as mbedTLS prints it (truncated) */
    char issuer[256];
    int64_t not_before;
    int64_t not_after;
    const unsigned char *der;
    size_t der_len;
} tide_tls_cert_t;

/* Fills *cert with the peer's leaf certificate. Returns 0, TIDE_EINVAL (not TLS),
 * TIDE_ENOTCONN (handshake not finished), TIDE_ENOENT (the peer sent none: a client
 * that was not asked). */
TIDE_EXTERN int tide_tls_get_peer_certificate(const tide_transport_t *transport,
                                              tide_tls_cert_t *cert);

/* True when transport is a TLS transport. */
TIDE_EXTERN bool tide_transport_is_tls(const tide_transport_t *transport);

#ifdef __cplusplus
}
#endif
#endif
