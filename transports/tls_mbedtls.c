/* The mbedTLS engine of the TLS layer (transports/tls.c, through the ops table of
 * transports/tls_int.h): certificates, keys and trust anchors, the per-connection TLS
 * state, sessions and tickets, and the shims between mbedTLS 2.28 and 3.x.
 *
 * This is the only file that includes mbedTLS. It compiles against 2.28 (Debian 12)
 * and 3.x (checked with 3.6: scripts/check-mbedtls3); the differences are confined to
 * shims guarded by MBEDTLS_VERSION_NUMBER and the TLS_* macros below. mbedTLS is
 * reached through its functions, never through struct fields, with exceptions where it
 * has no accessor, each read-only: telling whether a session was resumed (TLS 1.2
 * compares master secrets, TLS 1.3 watches the handshake's state: resumed(),
 * handshake_run()), and whether a session can resume at all (session_usable()).
 *
 * TLS 1.3 (3.x): the server issues session tickets (the only way to resume 1.3), and
 * the client keeps the latest ticket, which arrives after the handshake, as the session
 * tide_tls_get_session copies, any number of times (mbedTLS 3.x itself exports a
 * session once). A session taken before the ticket came is filled by it later
 * (ticket_slot). A client closing before its first ticket came reads until it comes
 * (the layer asks awaits_ticket()), so that the kernel does not reset the connection
 * over unread bytes.
 *
 * mbedTLS is driven through our own BIO callbacks over the layer's: recv returns
 * WANT_READ when the layer holds no ciphertext; send never returns WANT_WRITE (the
 * transport beneath queues what the kernel does not take).
 *
 * Limits: mbedTLS 2.28 takes a ClientHello only whole in one record (at most 16 KiB of
 * handshake message); a longer one, or one split over records, fails the handshake
 * and the layer sends the client a decode_error alert (first_flight_alert). mbedTLS
 * 3.x reassembles handshake messages up to its input buffer (MBEDTLS_SSL_IN_CONTENT_LEN).
 *
 * Threads: a frozen configuration is shared by connections on several loops. Its
 * mbedtls_ssl_config, certificates and keys are only read; the random generator, the
 * session cache and the ticket keys are called under the configuration's own mutexes,
 * so this does not depend on MBEDTLS_THREADING_C. On 3.x without it, PSA's process-wide
 * key store is guarded by one lock of ours (see crypto_enter()), which serialises the
 * mbedTLS calls of all threads; build mbedTLS 3.x with MBEDTLS_THREADING_C and
 * MBEDTLS_THREADING_PTHREAD to run them in parallel. A connection lives on its loop's
 * thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/version.h> /* first: pulls in config.h (2.x) or build_info.h (3.x) */

#include <mbedtls/asn1.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cache.h>
#include <mbedtls/x509_crt.h>
#if MBEDTLS_VERSION_NUMBER >= 0x03000000 && defined(MBEDTLS_PSA_CRYPTO_C)
#include <psa/crypto.h>
#define TLS_PSA 1 /* 3.x: PSA must be initialised; TLS 1.3 always goes through it */
#endif
/* TLS 1.3 as tide uses it: 3.2 made the version API (mbedtls_ssl_conf_*_tls_version,
 * mbedtls_ssl_get_version_number, mbedtls_ssl_is_handshake_over) what it is now. */
#if MBEDTLS_VERSION_NUMBER >= 0x03020000 && defined(MBEDTLS_SSL_PROTO_TLS1_3)
#define TLS_13 1
#if defined(MBEDTLS_SSL_SESSION_TICKETS)
#define TLS_13_TICKETS 1 /* TLS 1.3 resumes by tickets only */
#endif
#endif
/* Servers issue session tickets (TLS 1.2 and, where built, 1.3, which resumes by tickets
 * only) beside the session-ID cache, so that clients resume with either. */
#if defined(MBEDTLS_SSL_SESSION_TICKETS) && defined(MBEDTLS_SSL_TICKET_C) &&                    \
    defined(MBEDTLS_SSL_SRV_C)
#include <mbedtls/ssl_ticket.h>
#define TLS_SERVER_TICKETS 1
#endif

#include "transports/tls_int.h"

#ifndef MBEDTLS_PRIVATE
#define MBEDTLS_PRIVATE(member) member
#endif
#if defined(MBEDTLS_ERR_SSL_BAD_HS_CERTIFICATE)
#define ERR_BAD_CERTIFICATE MBEDTLS_ERR_SSL_BAD_HS_CERTIFICATE /* 2.28 */
#define ERR_BAD_CLIENT_HELLO MBEDTLS_ERR_SSL_BAD_HS_CLIENT_HELLO
#else
#define ERR_BAD_CERTIFICATE MBEDTLS_ERR_SSL_BAD_CERTIFICATE /* 3.x */
#define ERR_BAD_CLIENT_HELLO MBEDTLS_ERR_SSL_DECODE_ERROR
#endif

/* ---- configuration --------------------------------------------------------------- */

typedef struct sni_entry {
    mbedtls_x509_crt crt;
    mbedtls_pk_context key;
} sni_entry;

struct tide__tls_econf {
    pthread_mutex_t rng_lock; /* the DRBG, shared by every connection */
    pthread_mutex_t cache_lock;
    bool server;
    const tide__tls_settings *s; /* the layer's, from the freeze on */
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_ssl_config conf;
    mbedtls_x509_crt ca;
    bool has_ca;
    mbedtls_x509_crt crt;
    mbedtls_pk_context key;
    sni_entry *sni; /* in the order of s->sni_names */
    size_t nsni;
    mbedtls_ssl_cache_context cache;
    bool cache_ready;
#if defined(TLS_SERVER_TICKETS)
    mbedtls_ssl_ticket_context ticket; /* under cache_lock, like the cache */
    bool ticket_ready;
#endif
};

#if defined(TLS_13_TICKETS) && defined(MBEDTLS_SSL_CLI_C)
#define TLS_TICKET_SLOT 1
/* A TLS 1.3 session is a ticket, which the server sends after the handshake. A session
 * taken before its connection got one shares this slot with the connection, which
 * fills it from every ticket that arrives later; the session may meanwhile move to a
 * connection on another thread, hence the lock. */
typedef struct ticket_slot {
    atomic_int refs;
    pthread_mutex_t lock;
    bool filled;
    mbedtls_ssl_session s;
} ticket_slot;
#endif

struct tide_tls_session {
    mbedtls_ssl_session s;
#if defined(TLS_TICKET_SLOT)
    ticket_slot *slot; /* set: the ticket to come is the session (s is unused) */
#endif
};

/* ---- a connection ------------------------------------------------------------------- */

struct tide__tls_econn {
    tide__tls *layer;
    struct tide__tls_econf *cfg;
    mbedtls_ssl_context ssl;
    const char *hostname; /* client: the layer's copy of the name */
    char *sni;            /* server: the name the client asked for */
    /* Client: the address when hostname is an IP address (ip_len 4 or 16, else 0): it is
     * not sent as SNI (RFC 6066) and is checked against the certificate's IP SANs. */
    unsigned char ip[16];
    size_t ip_len;
    unsigned char offered_master[48];
    bool offered;
    bool resumed;
    bool full_hs; /* TLS 1.3: the handshake authenticated with certificates */
    unsigned tickets;
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    /* Client: the session to hand out (tide_tls_get_session), taken at the end of the
     * handshake and again from every TLS 1.3 ticket; mbedTLS 3.x exports each session
     * of a connection only once, so we export it and give copies of ours. */
    mbedtls_ssl_session saved;
    bool has_saved;
#endif
#if defined(TLS_TICKET_SLOT)
    ticket_slot *slot; /* sessions handed out before the first ticket */
#endif
};

/* ---- shims between 2.28 and 3.x ------------------------------------------------- */

/* 3.x keeps PSA's key store process-wide, and without MBEDTLS_THREADING_C nothing
 * guards it (3.6 makes PSA thread-safe only with it); TLS 1.3 creates and destroys
 * keys in every handshake, record protection and context free. Connections on loops of
 * several threads would race there, so every mbedTLS call that may reach PSA is then
 * made under one process-wide lock. It is recursive because a call can come back into
 * tide (our BIO writes to the lower transport, whose pause_writing reaches the
 * application, which may write to another TLS transport of the same thread). */
#if defined(TLS_PSA) && !defined(MBEDTLS_THREADING_C)
#define TLS_PSA_LOCK 1
static pthread_mutex_t psa_lock;
#endif
#if defined(TLS_PSA)
static pthread_once_t psa_once = PTHREAD_ONCE_INIT;
static psa_status_t psa_status;

static void psa_once_init(void) {
#if defined(TLS_PSA_LOCK)
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&psa_lock, &attr);
    pthread_mutexattr_destroy(&attr);
#endif
    /* Not thread-safe itself without MBEDTLS_THREADING_C: run once, here. */
    psa_status = psa_crypto_init();
}
#endif

/* 0, or TIDE_ENOMEM when PSA cannot start (it fails for want of memory or entropy). */
static int crypto_init(void) {
#if defined(TLS_PSA)
    pthread_once(&psa_once, psa_once_init);
    return psa_status == PSA_SUCCESS ? 0 : TIDE_ENOMEM;
#else
    return 0;
#endif
}

static void crypto_enter(void) {
#if defined(TLS_PSA_LOCK)
    pthread_mutex_lock(&psa_lock);
#endif
}

static void crypto_leave(void) {
#if defined(TLS_PSA_LOCK)
    pthread_mutex_unlock(&psa_lock);
#endif
}

static int rng(void *p, unsigned char *out, size_t len) {
    struct tide__tls_econf *cfg = p;
    int rc = 0;
    pthread_mutex_lock(&cfg->rng_lock);
    while (len > 0 && rc == 0) {
        size_t n = len < MBEDTLS_CTR_DRBG_MAX_REQUEST ? len : MBEDTLS_CTR_DRBG_MAX_REQUEST;
        rc = mbedtls_ctr_drbg_random(&cfg->drbg, out, n);
        out += n;
        len -= n;
    }
    pthread_mutex_unlock(&cfg->rng_lock);
    return rc;
}

static int parse_key(struct tide__tls_econf *cfg, mbedtls_pk_context *pk, const unsigned char *key,
                     size_t len, const char *password) {
    const unsigned char *pw = (const unsigned char *)password;
    size_t pwlen = password ? strlen(password) : 0;
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    return mbedtls_pk_parse_key(pk, key, len, pw, pwlen, rng, cfg);
#else
    (void)cfg;
    return mbedtls_pk_parse_key(pk, key, len, pw, pwlen);
#endif
}

static int check_pair(struct tide__tls_econf *cfg, mbedtls_x509_crt *crt, mbedtls_pk_context *key) {
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    return mbedtls_pk_check_pair(&crt->pk, key, rng, cfg);
#else
    (void)cfg;
    return mbedtls_pk_check_pair(&crt->pk, key);
#endif
}

static void conf_versions(struct tide__tls_econf *cfg) {
#if MBEDTLS_VERSION_NUMBER >= 0x03020000
    mbedtls_ssl_conf_min_tls_version(&cfg->conf, cfg->s->min_version == TIDE_TLS_VERSION_1_3
                                                     ? MBEDTLS_SSL_VERSION_TLS1_3
                                                     : MBEDTLS_SSL_VERSION_TLS1_2);
    if (cfg->s->max_version == TIDE_TLS_VERSION_1_2)
        mbedtls_ssl_conf_max_tls_version(&cfg->conf, MBEDTLS_SSL_VERSION_TLS1_2);
#else
    /* 2.28's default floor is TLS 1.0 (Debian enables 1.0 and 1.1): set it explicitly. */
    mbedtls_ssl_conf_min_version(&cfg->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&cfg->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
#endif
}

/* The suites tide allows by default: ECDHE key exchange (forward secrecy) with an AEAD
 * cipher, nothing else: no static RSA or ECDH, no CBC, no CCM_8, no finite-field DHE.
 * ChaCha20-Poly1305 first: mbedTLS 2.28 runs it faster than its one-block-per-call GCM
 * on this generation of machines (bench/analysis.md). The server picks by this order
 * (mbedTLS honours the server's preference), so both certificate kinds get the same. */
static const int secure_suites[] = {
#if defined(MBEDTLS_SSL_PROTO_TLS1_3) && MBEDTLS_VERSION_NUMBER >= 0x03000000
    MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS1_3_AES_128_GCM_SHA256,
    MBEDTLS_TLS1_3_AES_256_GCM_SHA384,
#endif
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    0,
};

/* The key-exchange groups, cheapest first at 128-bit security or more: X25519, P-256,
 * P-384 (mbedTLS's default puts the costly P-521 first and keeps 192- and 224-bit
 * curves). The server walks this list and takes the first group the client offers. */
static void conf_groups(struct tide__tls_econf *cfg) {
#if MBEDTLS_VERSION_NUMBER >= 0x03010000
    static const uint16_t groups[] = {
        MBEDTLS_SSL_IANA_TLS_GROUP_X25519, MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1,
        MBEDTLS_SSL_IANA_TLS_GROUP_SECP384R1, MBEDTLS_SSL_IANA_TLS_GROUP_NONE};
    mbedtls_ssl_conf_groups(&cfg->conf, groups);
#else
    static const mbedtls_ecp_group_id groups[] = {MBEDTLS_ECP_DP_CURVE25519,
                                                  MBEDTLS_ECP_DP_SECP256R1,
                                                  MBEDTLS_ECP_DP_SECP384R1, MBEDTLS_ECP_DP_NONE};
    mbedtls_ssl_conf_curves(&cfg->conf, groups);
#endif
}

/* Secure and cheap unless the user asked for mbedTLS's own, wider defaults. */
static void conf_strength(struct tide__tls_econf *cfg) {
    if (cfg->s->legacy)
        return;
    mbedtls_ssl_conf_ciphersuites(&cfg->conf, secure_suites);
    conf_groups(cfg);
}

static bool version_supported(int v) {
    if (v == TIDE_TLS_VERSION_1_2)
        return true;
#if MBEDTLS_VERSION_NUMBER >= 0x03020000 && defined(MBEDTLS_SSL_PROTO_TLS1_3)
    if (v == TIDE_TLS_VERSION_1_3)
        return true;
#endif
    return false;
}

static bool is_want(int ret) {
    return ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE
#if defined(MBEDTLS_ERR_SSL_ASYNC_IN_PROGRESS)
           || ret == MBEDTLS_ERR_SSL_ASYNC_IN_PROGRESS
#endif
#if defined(MBEDTLS_ERR_SSL_CRYPTO_IN_PROGRESS)
           || ret == MBEDTLS_ERR_SSL_CRYPTO_IN_PROGRESS
#endif
        ;
}

/* The server's session cache, wrapped: under our own lock (the cache is shared by
 * loops on several threads), and so that a lookup that succeeds tells the connection
 * which session it may resume (2.28 has no accessor for "resumed"): the handshake then
 * resumed it if the connection ended up with that session's master secret. */
static _Thread_local struct tide__tls_econn *tls_running; /* the server handshaking now */
static void cache_hit(const mbedtls_ssl_session *s);

#if MBEDTLS_VERSION_NUMBER >= 0x03000000
static int cache_get(void *p, unsigned char const *id, size_t id_len, mbedtls_ssl_session *s) {
    struct tide__tls_econf *cfg = p;
    pthread_mutex_lock(&cfg->cache_lock);
    int rc = mbedtls_ssl_cache_get(&cfg->cache, id, id_len, s);
    pthread_mutex_unlock(&cfg->cache_lock);
    if (rc == 0)
        cache_hit(s);
    return rc;
}

static int cache_set(void *p, unsigned char const *id, size_t id_len,
                     const mbedtls_ssl_session *s) {
    struct tide__tls_econf *cfg = p;
    pthread_mutex_lock(&cfg->cache_lock);
    int rc = mbedtls_ssl_cache_set(&cfg->cache, id, id_len, s);
    pthread_mutex_unlock(&cfg->cache_lock);
    return rc;
}
#else
static int cache_get(void *p, mbedtls_ssl_session *s) {
    struct tide__tls_econf *cfg = p;
    pthread_mutex_lock(&cfg->cache_lock);
    int rc = mbedtls_ssl_cache_get(&cfg->cache, s);
    pthread_mutex_unlock(&cfg->cache_lock);
    if (rc == 0)
        cache_hit(s);
    return rc;
}

static int cache_set(void *p, const mbedtls_ssl_session *s) {
    struct tide__tls_econf *cfg = p;
    pthread_mutex_lock(&cfg->cache_lock);
    int rc = mbedtls_ssl_cache_set(&cfg->cache, s);
    pthread_mutex_unlock(&cfg->cache_lock);
    return rc;
}
#endif

#if defined(TLS_SERVER_TICKETS)
/* Session tickets, like the cache: under the configuration's lock (the ticket keys are
 * shared by every loop, and mbedTLS locks them only with MBEDTLS_THREADING_C), and a
 * ticket that parses tells the connection what it may resume. */
static int ticket_write(void *p, const mbedtls_ssl_session *s, unsigned char *start,
                        const unsigned char *end, size_t *tlen, uint32_t *lifetime) {
    struct tide__tls_econf *cfg = p;
    pthread_mutex_lock(&cfg->cache_lock);
    int rc = mbedtls_ssl_ticket_write(&cfg->ticket, s, start, end, tlen, lifetime);
    pthread_mutex_unlock(&cfg->cache_lock);
    return rc;
}

static int ticket_parse(void *p, mbedtls_ssl_session *s, unsigned char *buf, size_t len) {
    struct tide__tls_econf *cfg = p;
    pthread_mutex_lock(&cfg->cache_lock);
    int rc = mbedtls_ssl_ticket_parse(&cfg->ticket, s, buf, len);
    pthread_mutex_unlock(&cfg->cache_lock);
    if (rc == 0)
        cache_hit(s);
    return rc;
}
#endif

/* ---- errors ------------------------------------------------------------------------ */

static int tls_code(int mbedtls_ret) {
    if (mbedtls_ret >= -0x7FFF && mbedtls_ret <= -1)
        return TIDE_ETLS_BASE + mbedtls_ret;
    return TIDE_ETLS;
}

/* Verification flags to one code, in a fixed priority (documented in tls.h): an
 * untrusted chain makes every other finding moot, then time, then the name, then what
 * is wrong with a certificate that is otherwise good. Each flag mbedTLS sets for the
 * certificate has its code; the rest (a missing certificate, a CRL's own faults, a
 * verify callback's "other") is TIDE_ETLS_CERT_INVALID. */
static int verify_code(uint32_t flags) {
    static const struct {
        uint32_t flags;
        int code;
    } order[] = {
        {MBEDTLS_X509_BADCERT_NOT_TRUSTED, TIDE_ETLS_CERT_UNTRUSTED},
        {MBEDTLS_X509_BADCERT_EXPIRED, TIDE_ETLS_CERT_EXPIRED},
        {MBEDTLS_X509_BADCERT_FUTURE, TIDE_ETLS_CERT_NOT_YET_VALID},
        {MBEDTLS_X509_BADCERT_CN_MISMATCH, TIDE_ETLS_CERT_HOSTNAME},
        {MBEDTLS_X509_BADCERT_REVOKED, TIDE_ETLS_CERT_REVOKED},
        {MBEDTLS_X509_BADCERT_BAD_KEY | MBEDTLS_X509_BADCERT_BAD_PK, TIDE_ETLS_CERT_WEAK_KEY},
        {MBEDTLS_X509_BADCERT_BAD_MD, TIDE_ETLS_CERT_WEAK_HASH},
        {MBEDTLS_X509_BADCERT_KEY_USAGE | MBEDTLS_X509_BADCERT_EXT_KEY_USAGE |
             MBEDTLS_X509_BADCERT_NS_CERT_TYPE,
         TIDE_ETLS_CERT_USAGE},
    };
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
        if (flags & order[i].flags)
            return order[i].code;
    return TIDE_ETLS_CERT_INVALID;
}

static void describe_code(int mbedtls_code, char *buf, size_t len) {
#if defined(MBEDTLS_ERROR_C)
    char text[128];
    mbedtls_strerror(mbedtls_code, text, sizeof(text));
    snprintf(buf, len, "%s (mbedTLS -0x%04X)", text, (unsigned)-mbedtls_code);
#else
    snprintf(buf, len, "mbedTLS error -0x%04X", (unsigned)-mbedtls_code);
#endif
}

/* ---- files ----------------------------------------------------------------------- */

/* mbedTLS parses PEM only when the terminating NUL is part of the length. */
static size_t pem_len(const unsigned char *data, size_t len) {
    if (len > 0 && data[len - 1] != 0 && strstr((const char *)data, "-----BEGIN ") != NULL)
        return len + 1; /* the caller's copy has the NUL at data[len] */
    return len;
}

static int parse_crt(mbedtls_x509_crt *chain, const unsigned char *data, size_t len) {
    int rc = mbedtls_x509_crt_parse(chain, data, pem_len(data, len));
    if (rc < 0)
        return tls_code(rc);
    return 0;
}

/* ---- configurations ------------------------------------------------------------------ */

static const char *library_version(void) { return MBEDTLS_VERSION_STRING_FULL; }

static void conf_free(struct tide__tls_econf *cfg) {
    crypto_enter(); /* keys may live in PSA */
    mbedtls_ssl_config_free(&cfg->conf);
    if (cfg->cache_ready)
        mbedtls_ssl_cache_free(&cfg->cache);
#if defined(TLS_SERVER_TICKETS)
    if (cfg->ticket_ready)
        mbedtls_ssl_ticket_free(&cfg->ticket);
#endif
    mbedtls_x509_crt_free(&cfg->ca);
    mbedtls_x509_crt_free(&cfg->crt);
    mbedtls_pk_free(&cfg->key);
    for (size_t i = 0; i < cfg->nsni; i++) {
        mbedtls_x509_crt_free(&cfg->sni[i].crt);
        mbedtls_pk_free(&cfg->sni[i].key);
    }
    crypto_leave();
    free(cfg->sni);
    mbedtls_ctr_drbg_free(&cfg->drbg);
    mbedtls_entropy_free(&cfg->entropy);
    pthread_mutex_destroy(&cfg->rng_lock);
    pthread_mutex_destroy(&cfg->cache_lock);
    free(cfg);
}

static int conf_new(bool server, struct tide__tls_econf **out) {
    if (crypto_init() != 0)
        return TIDE_ENOMEM;
    struct tide__tls_econf *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL)
        return TIDE_ENOMEM;
    pthread_mutex_init(&cfg->rng_lock, NULL);
    pthread_mutex_init(&cfg->cache_lock, NULL);
    cfg->server = server;
    mbedtls_entropy_init(&cfg->entropy);
    mbedtls_ctr_drbg_init(&cfg->drbg);
    mbedtls_ssl_config_init(&cfg->conf);
    mbedtls_x509_crt_init(&cfg->ca);
    mbedtls_x509_crt_init(&cfg->crt);
    mbedtls_pk_init(&cfg->key);
    static const unsigned char pers[] = "tide tls config";
    int rc = mbedtls_ctr_drbg_seed(&cfg->drbg, mbedtls_entropy_func, &cfg->entropy, pers,
                                   sizeof(pers) - 1);
    if (rc != 0) {
        conf_free(cfg);
        return tls_code(rc);
    }
    *out = cfg;
    return 0;
}

static int conf_add_ca(struct tide__tls_econf *cfg, const unsigned char *data, size_t len) {
    int rc = mbedtls_x509_crt_parse(&cfg->ca, data, pem_len(data, len));
    /* A positive result counts certificates of a bundle that did not parse; the others
     * were loaded. */
    if (rc < 0 && !cfg->has_ca)
        return tls_code(rc);
    if (cfg->ca.version != 0)
        cfg->has_ca = true;
    return cfg->has_ca ? 0 : tls_code(MBEDTLS_ERR_X509_INVALID_FORMAT);
}

static int conf_add_ca_dir(struct tide__tls_econf *cfg, const char *path) {
    int rc = mbedtls_x509_crt_parse_path(&cfg->ca, path);
    if (cfg->ca.version != 0)
        cfg->has_ca = true;
    if (rc < 0 && !cfg->has_ca)
        return tls_code(rc);
    return cfg->has_ca ? 0 : TIDE_ENOENT;
}

/* Parses a certificate chain and its key into crt/key (initialised by the caller). */
static int parse_pair(struct tide__tls_econf *cfg, mbedtls_x509_crt *crt, mbedtls_pk_context *key,
                      const unsigned char *cert, size_t cert_len, const unsigned char *keydata,
                      size_t key_len, const char *password) {
    int rc = parse_crt(crt, cert, cert_len);
    if (rc != 0)
        return rc;
    rc = parse_key(cfg, key, keydata, pem_len(keydata, key_len), password);
    if (rc != 0)
        return tls_code(rc);
    rc = check_pair(cfg, crt, key);
    return rc != 0 ? tls_code(rc) : 0;
}

static int conf_add_pair(struct tide__tls_econf *cfg, const char *name, const unsigned char *cert,
                         size_t cert_len, const unsigned char *key, size_t key_len,
                         const char *password) {
    mbedtls_x509_crt crt;
    mbedtls_pk_context pk;
    mbedtls_x509_crt_init(&crt);
    mbedtls_pk_init(&pk);
    crypto_enter();
    int rc = parse_pair(cfg, &crt, &pk, cert, cert_len, key, key_len, password);
    crypto_leave();
    if (rc != 0)
        goto fail;
    if (name == NULL) {
        crypto_enter();
        mbedtls_x509_crt_free(&cfg->crt);
        mbedtls_pk_free(&cfg->key);
        crypto_leave();
        cfg->crt = crt;
        cfg->key = pk;
        return 0;
    }
    sni_entry *grown = realloc(cfg->sni, (cfg->nsni + 1) * sizeof(*grown));
    if (grown == NULL) {
        rc = TIDE_ENOMEM;
        goto fail;
    }
    cfg->sni = grown;
    cfg->sni[cfg->nsni].crt = crt;
    cfg->sni[cfg->nsni].key = pk;
    cfg->nsni++;
    return 0;
fail:
    crypto_enter();
    mbedtls_x509_crt_free(&crt);
    mbedtls_pk_free(&pk);
    crypto_leave();
    return rc;
}

#if MBEDTLS_VERSION_NUMBER < 0x03000000 && defined(MBEDTLS_ECDSA_C) &&                             \
    MBEDTLS_ECP_FIXED_POINT_OPTIM == 1
/* mbedTLS 2.x signs with a parsed EC key (pk type ECKEY) through a copy of the key made
 * for each signature, with a fresh group: the base point's table is rebuilt for every
 * handshake, about half of an ECDSA signature's cost. A key of pk type ECDSA signs with
 * its own group, whose table is built here, once, and only read afterwards (loops on
 * several threads share the key). Such a key can no longer do static ECDH, which only
 * the legacy suites use; 3.x ships the table precomputed. */
static void keep_base_point_table(struct tide__tls_econf *cfg, mbedtls_pk_context *key) {
    if (cfg->s->legacy || mbedtls_pk_get_type(key) != MBEDTLS_PK_ECKEY)
        return;
    mbedtls_pk_context ecdsa;
    mbedtls_pk_init(&ecdsa);
    mbedtls_ecp_point product;
    mbedtls_ecp_point_init(&product);
    int rc = mbedtls_pk_setup(&ecdsa, mbedtls_pk_info_from_type(MBEDTLS_PK_ECDSA));
    if (rc == 0)
        rc = mbedtls_ecdsa_from_keypair(mbedtls_pk_ec(ecdsa), mbedtls_pk_ec(*key));
    if (rc == 0) {
        /* One multiplication of the base point builds the table into the group. */
        mbedtls_ecp_keypair *kp = mbedtls_pk_ec(ecdsa);
        rc = mbedtls_ecp_mul(&kp->grp, &product, &kp->d, &kp->grp.G, rng, cfg);
    }
    mbedtls_ecp_point_free(&product);
    if (rc != 0) {
        mbedtls_pk_free(&ecdsa); /* the parsed key still signs, only slower */
        return;
    }
    mbedtls_pk_free(key);
    *key = ecdsa;
}
#else
static void keep_base_point_table(struct tide__tls_econf *cfg, mbedtls_pk_context *key) {
    (void)cfg;
    (void)key;
}
#endif

/* mbedTLS's SNI callback: the connection is the struct around its ssl context. */
static int sni_choose(void *p, mbedtls_ssl_context *ssl, const unsigned char *name, size_t len) {
    struct tide__tls_econf *cfg = p;
    struct tide__tls_econn *c = TIDE_CONTAINER_OF(ssl, struct tide__tls_econn, ssl);
    free(c->sni);
    c->sni = malloc(len + 1);
    if (c->sni) {
        memcpy(c->sni, name, len);
        c->sni[len] = 0;
    }
    int i = tide__tls_sni_find(cfg->s, (const char *)name, len);
    if (i >= 0 && (size_t)i < cfg->nsni)
        return mbedtls_ssl_set_hs_own_cert(ssl, &cfg->sni[i].crt, &cfg->sni[i].key);
    return cfg->s->has_cert ? 0 : -1;
}

/* Builds the mbedtls_ssl_config from the settings (the layer checked that what they
 * need is there). */
static int conf_freeze(struct tide__tls_econf *cfg, const tide__tls_settings *s) {
    cfg->s = s;
    mbedtls_ssl_config *conf = &cfg->conf;
    int rc =
        mbedtls_ssl_config_defaults(conf, s->server ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT,
                                    MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc != 0)
        return tls_code(rc);
    mbedtls_ssl_conf_rng(conf, rng, cfg);
    conf_versions(cfg);
    conf_strength(cfg);
    mbedtls_ssl_conf_authmode(conf,
                              s->verify ? MBEDTLS_SSL_VERIFY_REQUIRED : MBEDTLS_SSL_VERIFY_NONE);
    if (cfg->has_ca)
        mbedtls_ssl_conf_ca_chain(conf, &cfg->ca, NULL);
    for (size_t i = 0; i < cfg->nsni; i++)
        keep_base_point_table(cfg, &cfg->sni[i].key);
    if (s->has_cert) {
        keep_base_point_table(cfg, &cfg->key);
        rc = mbedtls_ssl_conf_own_cert(conf, &cfg->crt, &cfg->key);
        if (rc != 0)
            return tls_code(rc);
    }
#if defined(MBEDTLS_SSL_RENEGOTIATION)
    mbedtls_ssl_conf_renegotiation(conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
#endif
    mbedtls_ssl_conf_legacy_renegotiation(conf, MBEDTLS_SSL_LEGACY_NO_RENEGOTIATION);
#if defined(MBEDTLS_SSL_TRUNCATED_HMAC)
    mbedtls_ssl_conf_truncated_hmac(conf, MBEDTLS_SSL_TRUNC_HMAC_DISABLED);
#endif
#if defined(MBEDTLS_SSL_ALPN)
    if (s->alpn) {
        rc = mbedtls_ssl_conf_alpn_protocols(conf, (const char **)s->alpn);
        if (rc != 0)
            return tls_code(rc);
    }
#endif
#if defined(MBEDTLS_SSL_SERVER_NAME_INDICATION)
    /* Also without SNI certificates: the callback records the name asked for. */
    if (s->server)
        mbedtls_ssl_conf_sni(conf, sni_choose, cfg);
#endif
#if defined(MBEDTLS_SSL_CACHE_C)
    if (s->server && s->cache_enabled && !cfg->cache_ready) {
        mbedtls_ssl_cache_init(&cfg->cache);
        cfg->cache_ready = true;
        mbedtls_ssl_cache_set_timeout(&cfg->cache, (int)s->cache_lifetime);
    }
    if (cfg->cache_ready)
        mbedtls_ssl_conf_session_cache(conf, cfg, cache_get, cache_set);
#endif
#if defined(TLS_SERVER_TICKETS)
    if (s->server && s->cache_enabled) {
        /* TLS 1.3 caps a ticket's lifetime at 7 days (RFC 8446 4.6.1). */
        double life = s->cache_lifetime < 604800.0 ? s->cache_lifetime : 604800.0;
        crypto_enter();
        if (cfg->ticket_ready) /* an earlier freeze failed after this point */
            mbedtls_ssl_ticket_free(&cfg->ticket);
        mbedtls_ssl_ticket_init(&cfg->ticket);
        cfg->ticket_ready = true;
        rc = mbedtls_ssl_ticket_setup(&cfg->ticket, rng, cfg, MBEDTLS_CIPHER_AES_256_GCM,
                                      (uint32_t)life);
        crypto_leave();
        if (rc != 0)
            return tls_code(rc);
        mbedtls_ssl_conf_session_tickets_cb(conf, ticket_write, ticket_parse, cfg);
    }
#endif
#if defined(TLS_13_TICKETS) && defined(MBEDTLS_SSL_CLI_C) && MBEDTLS_VERSION_NUMBER >= 0x03060100
    /* Since 3.6.1 a client ignores TLS 1.3 tickets unless asked to hand them up
     * (MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET), which is when we keep them. */
    if (!s->server)
        mbedtls_ssl_conf_tls13_enable_signal_new_session_tickets(
            conf, MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED);
#endif
    return 0;
}

/* ---- sessions --------------------------------------------------------------------- */

#if defined(TLS_TICKET_SLOT)
static ticket_slot *slot_new(void) {
    ticket_slot *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    atomic_init(&t->refs, 1);
    pthread_mutex_init(&t->lock, NULL);
    mbedtls_ssl_session_init(&t->s);
    return t;
}

static void slot_unref(ticket_slot *t) {
    if (t == NULL || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    mbedtls_ssl_session_free(&t->s);
    pthread_mutex_destroy(&t->lock);
    free(t);
}
#endif

static void session_free(tide_tls_session_t *session) {
#if defined(TLS_TICKET_SLOT)
    slot_unref(session->slot);
#endif
    mbedtls_ssl_session_free(&session->s);
    free(session);
}

/* ---- connections ------------------------------------------------------------------- */

static void cache_hit(const mbedtls_ssl_session *s) {
    struct tide__tls_econn *c = tls_running;
    if (c == NULL)
        return;
    memcpy(c->offered_master, s->MBEDTLS_PRIVATE(master), sizeof(c->offered_master));
    c->offered = true;
}

/* mbedTLS calls that may reach PSA, under its lock where there is one. */
static int ssl_read(struct tide__tls_econn *c, unsigned char *buf, size_t len) {
    crypto_enter();
    int r = mbedtls_ssl_read(&c->ssl, buf, len);
    crypto_leave();
    return r;
}

static int ssl_write(struct tide__tls_econn *c, const unsigned char *buf, size_t len) {
    crypto_enter();
    int r = mbedtls_ssl_write(&c->ssl, buf, len);
    crypto_leave();
    return r;
}

#if MBEDTLS_VERSION_NUMBER >= 0x03000000
/* A deep copy through the serialised form, the only public way to copy a session. */
static int session_copy(const mbedtls_ssl_session *from, mbedtls_ssl_session *to) {
    size_t len = 0;
    int rc = mbedtls_ssl_session_save(from, NULL, 0, &len);
    if (rc != MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL)
        return rc != 0 ? rc : MBEDTLS_ERR_SSL_INTERNAL_ERROR;
    unsigned char *buf = malloc(len);
    if (buf == NULL)
        return MBEDTLS_ERR_SSL_ALLOC_FAILED;
    rc = mbedtls_ssl_session_save(from, buf, len, &len);
    if (rc == 0)
        rc = mbedtls_ssl_session_load(to, buf, len);
    mbedtls_platform_zeroize(buf, len); /* it holds the session's secrets */
    free(buf);
    return rc;
}
#endif

#if defined(TLS_TICKET_SLOT)
/* TLS 1.2 sessions resume by themselves (ID or ticket); TLS 1.3 ones need a ticket. */
static bool session_has_ticket(const mbedtls_ssl_session *s) {
    return s->MBEDTLS_PRIVATE(tls_version) != MBEDTLS_SSL_VERSION_TLS1_3 ||
           s->MBEDTLS_PRIVATE(ticket) != NULL;
}

/* Sessions handed out before a ticket came get the saved one (see ticket_slot). */
static void fill_slot(struct tide__tls_econn *c) {
    if (c->slot == NULL || !c->has_saved)
        return;
    mbedtls_ssl_session copy;
    mbedtls_ssl_session_init(&copy);
    if (session_copy(&c->saved, &copy) != 0) {
        mbedtls_ssl_session_free(&copy);
        return; /* the slot keeps what it had: at worst no resumption */
    }
    pthread_mutex_lock(&c->slot->lock);
    mbedtls_ssl_session_free(&c->slot->s);
    c->slot->s = copy;
    c->slot->filled = true;
    pthread_mutex_unlock(&c->slot->lock);
}
#endif

/* Takes the connection's current session into `saved` (3.x clients). A failure keeps
 * the previous one. */
static int save_session(struct tide__tls_econn *c) {
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    if (c->cfg->server)
        return 0;
    mbedtls_ssl_session s;
    mbedtls_ssl_session_init(&s);
    int rc = mbedtls_ssl_get_session(&c->ssl, &s);
    if (rc != 0) {
        mbedtls_ssl_session_free(&s);
        return rc;
    }
    if (c->has_saved)
        mbedtls_ssl_session_free(&c->saved);
    c->saved = s; /* moves what it owns */
    c->has_saved = true;
#else
    (void)c;
#endif
    return 0;
}

/* mbedTLS 3.x (TLS 1.3) hands a NewSessionTicket up from handshake, read and write:
 * keep the session it completes (a failure only costs a later resumption), then the
 * caller retries at once. */
static bool ticket(struct tide__tls_econn *c, int ret) {
#if defined(MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
    if (ret != MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
        return false;
    c->tickets++;
#if defined(TLS_TICKET_SLOT)
    if (save_session(c) == 0)
        fill_slot(c);
#else
    (void)save_session(c);
#endif
    return true;
#else
    (void)c;
    (void)ret;
    return false;
#endif
}

static void forget_session(struct tide__tls_econn *c) {
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    if (c->has_saved)
        mbedtls_ssl_session_free(&c->saved);
    c->has_saved = false;
#endif
#if defined(TLS_TICKET_SLOT)
    slot_unref(c->slot);
    c->slot = NULL;
#endif
    (void)c;
}

static int map_error(struct tide__tls_econn *c, int ret) {
    /* A certificate refused for its key usage fails the handshake message rather than
     * the verification, but sets the same flags. */
    if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED || ret == ERR_BAD_CERTIFICATE) {
        uint32_t flags = mbedtls_ssl_get_verify_result(&c->ssl);
        if (flags != 0 && flags != (uint32_t)-1)
            return verify_code(flags);
    }
    return tls_code(ret);
}

static bool resumed(struct tide__tls_econn *c) {
#if defined(TLS_13)
    /* TLS 1.3 has no master secret (the field stays zero, as in the session offered):
     * a resumption is the handshake that authenticated by the ticket's PSK instead of
     * certificates, and tide configures no other PSK (see handshake_run()). */
    if (mbedtls_ssl_get_version_number(&c->ssl) == MBEDTLS_SSL_VERSION_TLS1_3)
        return c->offered && !c->full_hs;
#endif
    /* TLS 1.2: a resumed session keeps the master secret of the one offered (client)
     * or found in the cache or a ticket (server); a full handshake makes a fresh one.
     * The session is read in place (2.28 has no accessor for it). */
    const mbedtls_ssl_session *now = c->ssl.MBEDTLS_PRIVATE(session);
    return c->offered && now != NULL &&
           memcmp(now->MBEDTLS_PRIVATE(master), c->offered_master, sizeof(c->offered_master)) == 0;
}

/* Runs the handshake as far as it can go. With TLS 1.3 built, one step at a time, to
 * note whether it passed the certificate states: TLS 1.3 skips them exactly when the
 * peers authenticate by PSK, that is resume a ticket. There is no accessor for this,
 * so the state is read in place. */
static int handshake_run(struct tide__tls_econn *c) {
#if defined(TLS_13)
    /* As mbedtls_ssl_handshake does: not mbedtls_ssl_is_handshake_over(), which counts
     * a server's pending NewSessionTicket state as over. */
    for (;;) {
        int state = c->ssl.MBEDTLS_PRIVATE(state);
        if (state == MBEDTLS_SSL_HANDSHAKE_OVER)
            return 0;
        if (state == MBEDTLS_SSL_CERTIFICATE_REQUEST || state == MBEDTLS_SSL_SERVER_CERTIFICATE)
            c->full_hs = true;
        crypto_enter();
        int ret = mbedtls_ssl_handshake_step(&c->ssl);
        crypto_leave();
        if (ret != 0)
            return ret;
    }
#else
    crypto_enter();
    int ret = mbedtls_ssl_handshake(&c->ssl);
    crypto_leave();
    return ret;
#endif
}

/* mbedTLS 3.x answers WANT_READ when it has just set a post-handshake message (a TLS
 * 1.3 NewSessionTicket) aside to process on the next call, which moves the handshake
 * state off "over": that call must come now, since no further input may arrive. */
static bool held_back(struct tide__tls_econn *c, int r) {
#if defined(TLS_13)
    return r == MBEDTLS_ERR_SSL_WANT_READ &&
           c->ssl.MBEDTLS_PRIVATE(state) != MBEDTLS_SSL_HANDSHAKE_OVER &&
           mbedtls_ssl_check_pending(&c->ssl);
#else
    (void)c;
    (void)r;
    return false;
#endif
}

static bool awaits_ticket(struct tide__tls_econn *c) {
#if defined(TLS_13)
    return !c->cfg->server && c->tickets == 0 &&
           mbedtls_ssl_get_version_number(&c->ssl) == MBEDTLS_SSL_VERSION_TLS1_3;
#else
    (void)c;
    return false;
#endif
}

/* Whether offering a session can resume it. A TLS 1.3 session is its ticket, which
 * arrives after the handshake: one taken before has none, and would only pin the
 * version to 1.3. mbedTLS fails the handshake when a ticket's server name differs from
 * the connection's; such a session is not offered, a full handshake follows instead. */
static bool session_usable(const struct tide__tls_econn *c, const mbedtls_ssl_session *s) {
#if defined(TLS_13)
    if (mbedtls_ssl_session_get_ciphersuite_id(s) == 0)
        return false;
    if (s->MBEDTLS_PRIVATE(tls_version) != MBEDTLS_SSL_VERSION_TLS1_3)
        return true;
#if defined(TLS_13_TICKETS)
    if (s->MBEDTLS_PRIVATE(ticket) == NULL)
        return false;
#if defined(MBEDTLS_SSL_SERVER_NAME_INDICATION)
    const char *was = s->MBEDTLS_PRIVATE(hostname);
    const char *now = c->ip_len ? NULL : c->hostname; /* the name sent as SNI */
    if ((was == NULL) != (now == NULL) || (was != NULL && strcmp(was, now) != 0))
        return false;
#endif
#endif
    return true;
#else
    (void)c;
    (void)s;
    return true;
#endif
}

/* mbedTLS's verify callback for an IP-address target: the leaf must carry the address
 * as an iPAddress SAN (2.28 compares names only, and a CN never holds an address). The
 * SAN list is mbedTLS's parse of the extension, which keeps every entry's tag. */
static int verify_ip(void *p, mbedtls_x509_crt *crt, int depth, uint32_t *flags) {
    const struct tide__tls_econn *c = p;
    if (depth != 0)
        return 0;
    for (const mbedtls_x509_sequence *san = &crt->subject_alt_names; san != NULL; san = san->next)
        if (san->buf.tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7) && san->buf.len == c->ip_len &&
            memcmp(san->buf.p, c->ip, c->ip_len) == 0)
            return 0;
    *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    return 0;
}

/* The name the client checks and sends. Always set, also with verification off: it is
 * the SNI, and on 2.28 a client without a name would accept any (CVE-2025-27809). An IP
 * address is not a host name: no SNI, and tide checks it against the IP SANs itself. */
static int set_peer_name(struct tide__tls_econn *c) {
    if (inet_pton(AF_INET, c->hostname, c->ip) == 1)
        c->ip_len = 4;
    else if (inet_pton(AF_INET6, c->hostname, c->ip) == 1)
        c->ip_len = 16;
    if (c->ip_len == 0)
        return mbedtls_ssl_set_hostname(&c->ssl, c->hostname);
    if (c->cfg->s->verify)
        mbedtls_ssl_set_verify(&c->ssl, verify_ip, c);
    /* Explicitly none (3.6 refuses to verify without a name unless told so). */
    return mbedtls_ssl_set_hostname(&c->ssl, NULL);
}

/* Loads a session to resume, when it can resume anything. Returns an mbedTLS code. */
static int offer_session(struct tide__tls_econn *c, const tide_tls_session_t *session) {
    const mbedtls_ssl_session *s = &session->s;
#if defined(TLS_TICKET_SLOT)
    ticket_slot *slot = session->slot;
    if (slot) {
        pthread_mutex_lock(&slot->lock);
        if (!slot->filled) {
            pthread_mutex_unlock(&slot->lock);
            return 0; /* no ticket came (yet): a full handshake */
        }
        s = &slot->s;
    }
#endif
    int rc = 0;
    if (session_usable(c, s)) {
        rc = mbedtls_ssl_set_session(&c->ssl, s); /* copies */
        if (rc == 0) {
            memcpy(c->offered_master, s->MBEDTLS_PRIVATE(master), sizeof(c->offered_master));
            c->offered = true;
        }
    }
#if defined(TLS_TICKET_SLOT)
    if (slot)
        pthread_mutex_unlock(&slot->lock);
#endif
    return rc;
}

static int64_t x509_time(const mbedtls_x509_time *tm) {
    struct tm t;
    memset(&t, 0, sizeof(t));
    t.tm_year = tm->year - 1900;
    t.tm_mon = tm->mon - 1;
    t.tm_mday = tm->day;
    t.tm_hour = tm->hour;
    t.tm_min = tm->min;
    t.tm_sec = tm->sec;
    return (int64_t)timegm(&t);
}

/* ---- the engine's BIO over the layer's ------------------------------------------------- */

static int bio_send(void *ctx, const unsigned char *buf, size_t len) {
    struct tide__tls_econn *c = ctx;
    int rc = tide__tls_bio_send(c->layer, buf, len);
    return rc < 0 ? MBEDTLS_ERR_SSL_INTERNAL_ERROR : rc; /* the layer keeps its code */
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len) {
    struct tide__tls_econn *c = ctx;
    size_t n = tide__tls_bio_recv(c->layer, buf, len);
    return n == 0 ? MBEDTLS_ERR_SSL_WANT_READ : (int)n;
}

/* ---- the engine's ops -------------------------------------------------------------------- */

static int alloc_code(int rc) {
    return rc == MBEDTLS_ERR_SSL_ALLOC_FAILED ? TIDE_ENOMEM : tls_code(rc);
}

static int conn_new(struct tide__tls_econf *cfg, tide__tls *layer, struct tide__tls_econn **out) {
    struct tide__tls_econn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return TIDE_ENOMEM;
    c->layer = layer;
    c->cfg = cfg;
    mbedtls_ssl_init(&c->ssl);
    *out = c;
    return 0;
}

/* Gives the connection its mbedTLS context's buffers (about 33 KiB). */
static int conn_setup(struct tide__tls_econn *c) {
    crypto_enter();
    int rc = mbedtls_ssl_setup(&c->ssl, &c->cfg->conf);
    crypto_leave();
    if (rc != 0)
        return alloc_code(rc);
    mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
    return 0;
}

static int conn_set_peer(struct tide__tls_econn *c, const char *hostname) {
    c->hostname = hostname;
    int rc = set_peer_name(c);
    return rc != 0 ? alloc_code(rc) : 0;
}

static int conn_offer_session(struct tide__tls_econn *c, const tide_tls_session_t *session) {
    int rc = offer_session(c, session);
    return rc != 0 ? alloc_code(rc) : 0;
}

static void conn_free(struct tide__tls_econn *c) {
    forget_session(c);
    crypto_enter();
    mbedtls_ssl_free(&c->ssl);
    crypto_leave();
    free(c->sni);
    free(c);
}

/* The statuses the layer knows, from mbedTLS's codes, and the rest mapped. Only reads
 * can be held back. */
static int status(struct tide__tls_econn *c, int ret, bool reading) {
    if (ticket(c, ret))
        return TIDE__TLS_TICKET;
    if (is_want(ret))
        return reading && held_back(c, ret) ? TIDE__TLS_HELD : TIDE__TLS_AGAIN;
    if (ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
        return TIDE__TLS_CLOSED;
    return map_error(c, ret);
}

static int handshake(struct tide__tls_econn *c) {
    tls_running = c->cfg->server ? c : NULL;
    int ret = handshake_run(c);
    tls_running = NULL;
    if (ret != 0)
        return status(c, ret, false);
    c->resumed = resumed(c);
    /* On TLS 1.3 this session has no ticket yet: ticket() replaces it when one comes. */
    (void)save_session(c);
    return 0;
}

static int conn_read(struct tide__tls_econn *c, unsigned char *buf, size_t len) {
    int r = ssl_read(c, buf, len);
    return r >= 0 ? r : status(c, r, true);
}

static int conn_write(struct tide__tls_econn *c, const unsigned char *buf, size_t len) {
    int r = ssl_write(c, buf, len);
    return r > 0 ? r : r == 0 ? TIDE__TLS_AGAIN : status(c, r, false);
}

static int close_notify(struct tide__tls_econn *c) {
    crypto_enter();
    int r = mbedtls_ssl_close_notify(&c->ssl);
    crypto_leave();
    return r == 0 ? 0 : status(c, r, false);
}

static size_t bytes_ready(struct tide__tls_econn *c) {
    return mbedtls_ssl_get_bytes_avail(&c->ssl);
}

static bool has_pending(struct tide__tls_econn *c) {
    return mbedtls_ssl_get_bytes_avail(&c->ssl) > 0 || mbedtls_ssl_check_pending(&c->ssl);
}

/* The first flight of a client that mbedTLS refused. A ClientHello longer than its
 * input buffer (MBEDTLS_SSL_IN_CONTENT_LEN, 16 KiB by default; 2.28 also wants it whole
 * in one record) fails without a word to the client, and with a code that does not
 * say so (2.28: a bad ClientHello, 3.x: an internal error): the alert tells the client,
 * the log tells the server's owner. A ClientHello mbedTLS found malformed gets
 * decode_error, anything else handshake_failure. */
static int first_flight_alert(int err, size_t hello_len, const char **why) {
    *why = NULL;
    if (hello_len + 4 > MBEDTLS_SSL_IN_CONTENT_LEN) {
        *why = "the ClientHello is longer than mbedTLS takes (MBEDTLS_SSL_IN_CONTENT_LEN, "
               "16 KiB by default, in one record on 2.28)";
        return TIDE__TLS_ALERT_DECODE_ERROR;
    }
    if (err != tls_code(ERR_BAD_CLIENT_HELLO))
        return TIDE__TLS_ALERT_HANDSHAKE_FAILURE;
#if MBEDTLS_VERSION_NUMBER < 0x03000000
    *why = "the ClientHello is malformed or split over several records, which mbedTLS 2.28 "
           "cannot take";
#endif
    return TIDE__TLS_ALERT_DECODE_ERROR;
}

static void conn_state(struct tide__tls_econn *c, tide__tls_state *st) {
    st->version = mbedtls_ssl_get_version(&c->ssl);
    st->cipher = mbedtls_ssl_get_ciphersuite(&c->ssl);
#if defined(MBEDTLS_SSL_ALPN)
    st->alpn = mbedtls_ssl_get_alpn_protocol(&c->ssl);
#endif
    st->sni = c->sni;
    st->resumed = c->resumed;
    st->peer_verified =
        mbedtls_ssl_get_peer_cert(&c->ssl) != NULL && mbedtls_ssl_get_verify_result(&c->ssl) == 0;
}

static int peer_certificate(struct tide__tls_econn *c, tide_tls_cert_t *cert) {
    const mbedtls_x509_crt *crt = mbedtls_ssl_get_peer_cert(&c->ssl);
    if (crt == NULL)
        return TIDE_ENOENT;
    memset(cert, 0, sizeof(*cert));
    if (mbedtls_x509_dn_gets(cert->subject, sizeof(cert->subject), &crt->subject) < 0)
        cert->subject[0] = 0;
    if (mbedtls_x509_dn_gets(cert->issuer, sizeof(cert->issuer), &crt->issuer) < 0)
        cert->issuer[0] = 0;
    cert->not_before = x509_time(&crt->valid_from);
    cert->not_after = x509_time(&crt->valid_to);
    cert->der = crt->raw.p;
    cert->der_len = crt->raw.len;
    return 0;
}

static int get_session(struct tide__tls_econn *c, tide_tls_session_t **session) {
    tide_tls_session_t *s = malloc(sizeof(*s));
    if (s == NULL)
        return TIDE_ENOMEM;
    mbedtls_ssl_session_init(&s->s);
#if defined(TLS_TICKET_SLOT)
    s->slot = NULL;
#endif
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    int rc = c->has_saved ? 0 : save_session(c);
#if defined(TLS_TICKET_SLOT)
    if (rc == 0 && !session_has_ticket(&c->saved)) {
        /* TLS 1.3 before the ticket: the session is the slot the ticket will fill. */
        if (c->slot == NULL)
            c->slot = slot_new();
        if (c->slot == NULL) {
            session_free(s);
            return TIDE_ENOMEM;
        }
        atomic_fetch_add_explicit(&c->slot->refs, 1, memory_order_relaxed);
        s->slot = c->slot;
        *session = s;
        return 0;
    }
#endif
    if (rc == 0)
        rc = session_copy(&c->saved, &s->s);
#else
    int rc = mbedtls_ssl_get_session(&c->ssl, &s->s);
#endif
    if (rc != 0) {
        session_free(s);
        return alloc_code(rc);
    }
    *session = s;
    return 0;
}

const tide__tls_engine_ops tide__tls_engine = {
    .name = "mbedtls",
    .library_version = library_version,
    .version_supported = version_supported,
    .describe = describe_code,
    .conf_new = conf_new,
    .conf_free = conf_free,
    .conf_add_ca = conf_add_ca,
    .conf_add_ca_dir = conf_add_ca_dir,
    .conf_add_pair = conf_add_pair,
    .conf_freeze = conf_freeze,
    .conn_new = conn_new,
    .conn_setup = conn_setup,
    .conn_set_peer = conn_set_peer,
    .conn_offer_session = conn_offer_session,
    .conn_free = conn_free,
    .handshake = handshake,
    .read = conn_read,
    .write = conn_write,
    .close_notify = close_notify,
    .bytes_ready = bytes_ready,
    .has_pending = has_pending,
    .awaits_ticket = awaits_ticket,
    .first_flight_alert = first_flight_alert,
    .state = conn_state,
    .peer_certificate = peer_certificate,
    .get_session = get_session,
    .session_free = session_free,
};
