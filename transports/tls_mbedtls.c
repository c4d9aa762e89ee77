/* The TLS layer on mbedTLS: configurations, sessions, and the TLS transport that runs
 * as the protocol of another transport (asyncio's sslproto design, asyncio.md section 7).
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
 * (awaits_ticket()), so that the kernel does not reset the connection over unread bytes.
 *
 * One layer (struct tide__tls) is two objects in one allocation: the protocol installed
 * on the lower transport, which receives ciphertext into `in` (a buffered protocol, so
 * the lower reads straight into it), and the TLS transport offered to the application.
 * mbedTLS is driven through our own BIO callbacks: recv takes from `in` and returns
 * WANT_READ when it is empty; send writes straight into the lower transport, which
 * queues what the kernel does not take, so send never returns WANT_WRITE and
 * mbedtls_ssl_write never leaves a record half-done. Plaintext is queued (`out`) only
 * while the handshake of an upgrade is running, or in the theoretical case that
 * mbedTLS asks for a retry; a retry reuses the same length, as mbedTLS requires.
 *
 * Flow control: the application's write buffer size is the queued plaintext plus the
 * lower transport's queue. The lower's watermarks are kept at the application's low
 * mark, so that the lower tells us (pause_writing / resume_writing) whenever its queue
 * crosses it, and we re-check the TLS transport's own marks then. Reading: decrypted
 * bytes go to the application up to 256 KiB per turn; while it paused reading,
 * ciphertext piles up in `in` until 256 KiB, where the lower's reading is paused, and
 * resumed at 64 KiB.
 *
 * Threads: a frozen configuration is shared by connections on several loops. Its
 * mbedtls_ssl_config, certificates and keys are only read; the random generator, the
 * session cache and the ticket keys are called under the configuration's own mutexes,
 * so this does not depend on MBEDTLS_THREADING_C. On 3.x without it, PSA's process-wide
 * key store is guarded by one lock of ours (see crypto_enter()), which serialises the
 * mbedTLS calls of all threads; build mbedTLS 3.x with MBEDTLS_THREADING_C and
 * MBEDTLS_THREADING_PTHREAD to run them in parallel. A layer itself lives on its
 * loop's thread.
 *
 * Reentrancy: application callbacks (data_received, eof_received, pause_writing, ...)
 * may close or abort the TLS transport, and handshake callbacks may abort the layer;
 * every loop below re-reads the phase after a callback. The layer is freed only when
 * both the lower's connection_lost and the TLS transport's release happened, and never
 * while one of its entry points is on the stack (the `busy` count). */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <mbedtls/version.h> /* first: pulls in config.h (2.x) or build_info.h (3.x) */

#include <mbedtls/asn1.h>
#include <mbedtls/ctr_drbg.h>
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

#include "core/buf.h"
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

#define TLS_DEFAULT_HANDSHAKE 60.0
#define TLS_DEFAULT_SHUTDOWN 30.0
#define TLS_DEFAULT_CACHE_LIFETIME 600.0
#define TLS_IN_HIGH (256 * 1024) /* pause the lower's reading above this much ciphertext */
#define TLS_IN_LOW (64 * 1024)   /* ... and resume it at this */
#define TLS_IN_CHUNK (64 * 1024) /* room offered to the lower per read */
#define TLS_CHUNK 16384          /* plaintext per mbedtls_ssl_write */
#define TLS_ALPN_MAX 16
#define TLS_SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"

/* ---- configuration --------------------------------------------------------------- */

typedef struct sni_entry {
    char *name;
    mbedtls_x509_crt crt;
    mbedtls_pk_context key;
} sni_entry;

struct tide_tls_config {
    atomic_int refs;
    pthread_mutex_t lock;     /* setters and freezing */
    pthread_mutex_t rng_lock; /* the DRBG, shared by every connection */
    pthread_mutex_t cache_lock;
    bool server;
    bool frozen;
    bool verify;
    bool ca_loaded; /* trust anchors came from the user */
    bool has_ca;    /* ca holds at least one certificate */
    bool has_cert;
    bool wait_close_notify;
    bool cache_enabled;
    bool legacy; /* mbedTLS's own suites and groups instead of tide's */
    int min_version;
    int max_version;
    double handshake_timeout;
    double shutdown_timeout;
    double cache_lifetime;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_ssl_config conf;
    mbedtls_x509_crt ca;
    mbedtls_x509_crt crt;
    mbedtls_pk_context key;
    sni_entry *sni;
    size_t nsni;
    char **alpn; /* NULL-terminated, as mbedTLS wants it */
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
    tide_tls_config_t *cfg = p;
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

static int parse_key(tide_tls_config_t *cfg, mbedtls_pk_context *pk, const unsigned char *key,
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

static int check_pair(tide_tls_config_t *cfg, mbedtls_x509_crt *crt, mbedtls_pk_context *key) {
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    return mbedtls_pk_check_pair(&crt->pk, key, rng, cfg);
#else
    (void)cfg;
    return mbedtls_pk_check_pair(&crt->pk, key);
#endif
}

static void conf_versions(tide_tls_config_t *cfg) {
#if MBEDTLS_VERSION_NUMBER >= 0x03020000
    mbedtls_ssl_conf_min_tls_version(&cfg->conf, cfg->min_version == TIDE_TLS_VERSION_1_3
                                                     ? MBEDTLS_SSL_VERSION_TLS1_3
                                                     : MBEDTLS_SSL_VERSION_TLS1_2);
    if (cfg->max_version == TIDE_TLS_VERSION_1_2)
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
static void conf_groups(tide_tls_config_t *cfg) {
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
static void conf_strength(tide_tls_config_t *cfg) {
    if (cfg->legacy)
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
static _Thread_local struct tide__tls *tls_running; /* the server handshaking now */
static void cache_hit(const mbedtls_ssl_session *s);

#if MBEDTLS_VERSION_NUMBER >= 0x03000000
static int cache_get(void *p, unsigned char const *id, size_t id_len, mbedtls_ssl_session *s) {
    tide_tls_config_t *cfg = p;
    pthread_mutex_lock(&cfg->cache_lock);
    int rc = mbedtls_ssl_cache_get(&cfg->cache, id, id_len, s);
    pthread_mutex_unlock(&cfg->cache_lock);
    if (rc == 0)
        cache_hit(s);
    return rc;
}

static int cache_set(void *p, unsigned char const *id, size_t id_len,
                     const mbedtls_ssl_session *s) {
    tide_tls_config_t *cfg = p;
    pthread_mutex_lock(&cfg->cache_lock);
    int rc = mbedtls_ssl_cache_set(&cfg->cache, id, id_len, s);
    pthread_mutex_unlock(&cfg->cache_lock);
    return rc;
}
#else
static int cache_get(void *p, mbedtls_ssl_session *s) {
    tide_tls_config_t *cfg = p;
    pthread_mutex_lock(&cfg->cache_lock);
    int rc = mbedtls_ssl_cache_get(&cfg->cache, s);
    pthread_mutex_unlock(&cfg->cache_lock);
    if (rc == 0)
        cache_hit(s);
    return rc;
}

static int cache_set(void *p, const mbedtls_ssl_session *s) {
    tide_tls_config_t *cfg = p;
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
    tide_tls_config_t *cfg = p;
    pthread_mutex_lock(&cfg->cache_lock);
    int rc = mbedtls_ssl_ticket_write(&cfg->ticket, s, start, end, tlen, lifetime);
    pthread_mutex_unlock(&cfg->cache_lock);
    return rc;
}

static int ticket_parse(void *p, mbedtls_ssl_session *s, unsigned char *buf, size_t len) {
    tide_tls_config_t *cfg = p;
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

void tide__tls_describe(int mbedtls_code, char *buf, size_t len) {
#if defined(MBEDTLS_ERROR_C)
    char text[128];
    mbedtls_strerror(mbedtls_code, text, sizeof(text));
    snprintf(buf, len, "%s (mbedTLS -0x%04X)", text, (unsigned)-mbedtls_code);
#else
    snprintf(buf, len, "mbedTLS error -0x%04X", (unsigned)-mbedtls_code);
#endif
}

/* ---- files ----------------------------------------------------------------------- */

/* Reads a whole file, NUL-terminated (PEM parsing wants the terminator counted). */
static int read_file(const char *path, unsigned char **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return tide_err_from_errno(errno);
    size_t cap = 4096, n = 0;
    unsigned char *buf = malloc(cap);
    int rc = 0;
    while (buf) {
        if (n + 1 >= cap) {
            unsigned char *bigger = realloc(buf, cap * 2);
            if (bigger == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) {
            if (ferror(f))
                rc = TIDE_EIO;
            break;
        }
    }
    fclose(f);
    if (buf == NULL)
        return TIDE_ENOMEM;
    if (rc != 0) {
        free(buf);
        return rc;
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 0;
}

/* mbedTLS parses PEM only when the terminating NUL is part of the length. */
static size_t pem_len(const unsigned char *data, size_t len) {
    if (len > 0 && data[len - 1] != 0 && strstr((const char *)data, "-----BEGIN ") != NULL)
        return len + 1; /* the caller's copy has the NUL at data[len] */
    return len;
}

/* A copy of caller memory with a NUL after it. */
static unsigned char *copy_nul(const void *data, size_t len) {
    unsigned char *p = malloc(len + 1);
    if (p) {
        memcpy(p, data, len);
        p[len] = 0;
    }
    return p;
}

static int parse_crt(mbedtls_x509_crt *chain, const unsigned char *data, size_t len) {
    int rc = mbedtls_x509_crt_parse(chain, data, pem_len(data, len));
    if (rc < 0)
        return tls_code(rc);
    return 0;
}

/* ---- configuration: public ------------------------------------------------------- */

bool tide_tls_available(void) { return true; }

const char *tide_tls_library_version(void) { return MBEDTLS_VERSION_STRING_FULL; }

static int config_new(tide_tls_config_t **out, bool server) {
    if (out == NULL)
        return TIDE_EINVAL;
    *out = NULL;
    if (crypto_init() != 0)
        return TIDE_ENOMEM;
    tide_tls_config_t *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL)
        return TIDE_ENOMEM;
    atomic_init(&cfg->refs, 1);
    pthread_mutex_init(&cfg->lock, NULL);
    pthread_mutex_init(&cfg->rng_lock, NULL);
    pthread_mutex_init(&cfg->cache_lock, NULL);
    cfg->server = server;
    cfg->verify = !server;
    cfg->cache_enabled = true;
    cfg->cache_lifetime = TLS_DEFAULT_CACHE_LIFETIME;
    cfg->min_version = TIDE_TLS_VERSION_1_2;
    cfg->handshake_timeout = TLS_DEFAULT_HANDSHAKE;
    cfg->shutdown_timeout = TLS_DEFAULT_SHUTDOWN;
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
        tide_tls_config_unref(cfg);
        return tls_code(rc);
    }
    *out = cfg;
    return 0;
}

int tide_tls_config_new_client(tide_tls_config_t **config) { return config_new(config, false); }

int tide_tls_config_new_server(tide_tls_config_t **config) { return config_new(config, true); }

tide_tls_config_t *tide_tls_config_ref(tide_tls_config_t *config) {
    if (config)
        atomic_fetch_add_explicit(&config->refs, 1, memory_order_relaxed);
    return config;
}

static void config_free(tide_tls_config_t *cfg) {
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
        free(cfg->sni[i].name);
        mbedtls_x509_crt_free(&cfg->sni[i].crt);
        mbedtls_pk_free(&cfg->sni[i].key);
    }
    crypto_leave();
    free(cfg->sni);
    if (cfg->alpn) {
        for (char **p = cfg->alpn; *p; p++)
            free(*p);
        free(cfg->alpn);
    }
    mbedtls_ctr_drbg_free(&cfg->drbg);
    mbedtls_entropy_free(&cfg->entropy);
    pthread_mutex_destroy(&cfg->lock);
    pthread_mutex_destroy(&cfg->rng_lock);
    pthread_mutex_destroy(&cfg->cache_lock);
    free(cfg);
}

void tide_tls_config_unref(tide_tls_config_t *config) {
    if (config == NULL)
        return;
    if (atomic_fetch_sub_explicit(&config->refs, 1, memory_order_acq_rel) == 1)
        config_free(config);
}

bool tide_tls_config_is_server(const tide_tls_config_t *config) {
    return config != NULL && config->server;
}

/* Setters run under the lock and refuse once the configuration is in use. */
static int edit_begin(tide_tls_config_t *cfg) {
    if (cfg == NULL)
        return TIDE_EINVAL;
    pthread_mutex_lock(&cfg->lock);
    if (cfg->frozen) {
        pthread_mutex_unlock(&cfg->lock);
        return TIDE_EBUSY;
    }
    return 0;
}

static int edit_end(tide_tls_config_t *cfg, int rc) {
    pthread_mutex_unlock(&cfg->lock);
    return rc;
}

int tide_tls_config_set_verify_peer(tide_tls_config_t *config, bool verify) {
    int rc = edit_begin(config);
    if (rc != 0)
        return rc;
    config->verify = verify;
    return edit_end(config, 0);
}

static int load_ca_locked(tide_tls_config_t *cfg, const unsigned char *data, size_t len) {
    int before = cfg->has_ca;
    int rc = mbedtls_x509_crt_parse(&cfg->ca, data, pem_len(data, len));
    /* A positive result counts certificates of a bundle that did not parse; the others
     * were loaded. */
    if (rc < 0 && !before)
        return tls_code(rc);
    if (cfg->ca.version != 0)
        cfg->has_ca = true;
    return cfg->has_ca ? 0 : tls_code(MBEDTLS_ERR_X509_INVALID_FORMAT);
}

int tide_tls_config_load_ca_file(tide_tls_config_t *config, const char *path) {
    if (path == NULL)
        return TIDE_EINVAL;
    int rc = edit_begin(config);
    if (rc != 0)
        return rc;
    unsigned char *data;
    size_t len;
    rc = read_file(path, &data, &len);
    if (rc == 0) {
        rc = load_ca_locked(config, data, len);
        free(data);
    }
    if (rc == 0)
        config->ca_loaded = true;
    return edit_end(config, rc);
}

int tide_tls_config_load_ca_dir(tide_tls_config_t *config, const char *path) {
    if (path == NULL)
        return TIDE_EINVAL;
    int rc = edit_begin(config);
    if (rc != 0)
        return rc;
    DIR *dir = opendir(path);
    if (dir == NULL)
        return edit_end(config, tide_err_from_errno(errno));
    closedir(dir);
    rc = mbedtls_x509_crt_parse_path(&config->ca, path);
    if (config->ca.version != 0)
        config->has_ca = true;
    if (rc < 0 && !config->has_ca)
        return edit_end(config, tls_code(rc));
    if (!config->has_ca)
        return edit_end(config, TIDE_ENOENT);
    config->ca_loaded = true;
    return edit_end(config, 0);
}

int tide_tls_config_load_ca_mem(tide_tls_config_t *config, const void *data, size_t len) {
    if (data == NULL || len == 0)
        return TIDE_EINVAL;
    int rc = edit_begin(config);
    if (rc != 0)
        return rc;
    unsigned char *copy = copy_nul(data, len);
    if (copy == NULL)
        return edit_end(config, TIDE_ENOMEM);
    rc = load_ca_locked(config, copy, len);
    free(copy);
    if (rc == 0)
        config->ca_loaded = true;
    return edit_end(config, rc);
}

static int load_system_locked(tide_tls_config_t *cfg) {
    const char *path = getenv("SSL_CERT_FILE");
    if (path == NULL || *path == 0)
        path = TLS_SYSTEM_CA;
    unsigned char *data;
    size_t len;
    int rc = read_file(path, &data, &len);
    if (rc != 0)
        return rc;
    rc = load_ca_locked(cfg, data, len);
    free(data);
    return rc;
}

int tide_tls_config_load_system_ca(tide_tls_config_t *config) {
    int rc = edit_begin(config);
    if (rc != 0)
        return rc;
    rc = load_system_locked(config);
    if (rc == 0)
        config->ca_loaded = true;
    return edit_end(config, rc);
}

/* Parses a certificate chain and its key into crt/key (initialised by the caller). */
static int parse_pair(tide_tls_config_t *cfg, mbedtls_x509_crt *crt, mbedtls_pk_context *key,
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

/* Loads a pair into the configuration: as the default certificate (name NULL) or as an
 * SNI entry. The inputs are NUL-terminated copies. */
static int add_pair(tide_tls_config_t *cfg, const char *name, const unsigned char *cert,
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
        mbedtls_x509_crt_free(&cfg->crt);
        mbedtls_pk_free(&cfg->key);
        cfg->crt = crt;
        cfg->key = pk;
        cfg->has_cert = true;
        return 0;
    }
    sni_entry *grown = realloc(cfg->sni, (cfg->nsni + 1) * sizeof(*grown));
    if (grown == NULL) {
        rc = TIDE_ENOMEM;
        goto fail;
    }
    cfg->sni = grown;
    sni_entry *e = &cfg->sni[cfg->nsni];
    e->name = strdup(name);
    if (e->name == NULL) {
        rc = TIDE_ENOMEM;
        goto fail;
    }
    e->crt = crt;
    e->key = pk;
    cfg->nsni++;
    return 0;
fail:
    crypto_enter();
    mbedtls_x509_crt_free(&crt);
    mbedtls_pk_free(&pk);
    crypto_leave();
    return rc;
}

static int set_pair_mem(tide_tls_config_t *cfg, const char *name, const void *cert, size_t cert_len,
                        const void *key, size_t key_len, const char *password) {
    if (cert == NULL || cert_len == 0 || key == NULL || key_len == 0)
        return TIDE_EINVAL;
    if (name != NULL && (*name == 0 || strlen(name) > 255))
        return TIDE_EINVAL;
    int rc = edit_begin(cfg);
    if (rc != 0)
        return rc;
    unsigned char *c = copy_nul(cert, cert_len);
    unsigned char *k = copy_nul(key, key_len);
    if (c && k)
        rc = add_pair(cfg, name, c, cert_len, k, key_len, password);
    else
        rc = TIDE_ENOMEM;
    free(c);
    if (k) {
        mbedtls_platform_zeroize(k, key_len);
        free(k);
    }
    return edit_end(cfg, rc);
}

static int set_pair_file(tide_tls_config_t *cfg, const char *name, const char *cert_path,
                         const char *key_path, const char *password) {
    if (cert_path == NULL || key_path == NULL)
        return TIDE_EINVAL;
    if (name != NULL && (*name == 0 || strlen(name) > 255))
        return TIDE_EINVAL;
    int rc = edit_begin(cfg);
    if (rc != 0)
        return rc;
    unsigned char *c = NULL, *k = NULL;
    size_t clen = 0, klen = 0;
    rc = read_file(cert_path, &c, &clen);
    if (rc == 0)
        rc = read_file(key_path, &k, &klen);
    if (rc == 0)
        rc = add_pair(cfg, name, c, clen, k, klen, password);
    free(c);
    if (k) {
        mbedtls_platform_zeroize(k, klen);
        free(k);
    }
    return edit_end(cfg, rc);
}

int tide_tls_config_set_cert_file(tide_tls_config_t *config, const char *cert_path,
                                  const char *key_path, const char *password) {
    return set_pair_file(config, NULL, cert_path, key_path, password);
}

int tide_tls_config_set_cert_mem(tide_tls_config_t *config, const void *cert, size_t cert_len,
                                 const void *key, size_t key_len, const char *password) {
    return set_pair_mem(config, NULL, cert, cert_len, key, key_len, password);
}

int tide_tls_config_add_sni_cert_file(tide_tls_config_t *config, const char *server_name,
                                      const char *cert_path, const char *key_path,
                                      const char *password) {
    if (server_name == NULL || (config && !config->server))
        return TIDE_EINVAL;
    return set_pair_file(config, server_name, cert_path, key_path, password);
}

int tide_tls_config_add_sni_cert_mem(tide_tls_config_t *config, const char *server_name,
                                     const void *cert, size_t cert_len, const void *key,
                                     size_t key_len, const char *password) {
    if (server_name == NULL || (config && !config->server))
        return TIDE_EINVAL;
    return set_pair_mem(config, server_name, cert, cert_len, key, key_len, password);
}

int tide_tls_config_set_alpn(tide_tls_config_t *config, const char *const *protocols, size_t n) {
    if (n > TLS_ALPN_MAX || (protocols == NULL && n > 0))
        return TIDE_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (protocols[i] == NULL || protocols[i][0] == 0 || strlen(protocols[i]) > 255)
            return TIDE_EINVAL;
    }
    int rc = edit_begin(config);
    if (rc != 0)
        return rc;
    char **list = NULL;
    if (n > 0) {
        list = calloc(n + 1, sizeof(*list));
        if (list == NULL)
            return edit_end(config, TIDE_ENOMEM);
        for (size_t i = 0; i < n; i++) {
            list[i] = strdup(protocols[i]);
            if (list[i] == NULL) {
                for (size_t j = 0; j < i; j++)
                    free(list[j]);
                free(list);
                return edit_end(config, TIDE_ENOMEM);
            }
        }
    }
    if (config->alpn) {
        for (char **p = config->alpn; *p; p++)
            free(*p);
        free(config->alpn);
    }
    config->alpn = list;
    return edit_end(config, 0);
}

int tide_tls_config_set_versions(tide_tls_config_t *config, int min_version, int max_version) {
    if (min_version == 0)
        min_version = TIDE_TLS_VERSION_1_2;
    if (min_version < TIDE_TLS_VERSION_1_2 || (max_version != 0 && max_version < min_version))
        return TIDE_EINVAL;
    if (min_version > TIDE_TLS_VERSION_1_3 || max_version > TIDE_TLS_VERSION_1_3)
        return TIDE_EINVAL;
    if (!version_supported(min_version) || (max_version != 0 && !version_supported(max_version)))
        return TIDE_ENOTSUP;
    int rc = edit_begin(config);
    if (rc != 0)
        return rc;
    config->min_version = min_version;
    config->max_version = max_version;
    return edit_end(config, 0);
}

int tide_tls_config_set_timeouts(tide_tls_config_t *config, double handshake, double shutdown) {
    int rc = edit_begin(config);
    if (rc != 0)
        return rc;
    config->handshake_timeout = handshake > 0 ? handshake : TLS_DEFAULT_HANDSHAKE;
    config->shutdown_timeout = shutdown > 0 ? shutdown : TLS_DEFAULT_SHUTDOWN;
    return edit_end(config, 0);
}

int tide_tls_config_set_wait_close_notify(tide_tls_config_t *config, bool wait) {
    int rc = edit_begin(config);
    if (rc != 0)
        return rc;
    config->wait_close_notify = wait;
    return edit_end(config, 0);
}

int tide_tls_config_allow_legacy(tide_tls_config_t *config, bool allow) {
    int rc = edit_begin(config);
    if (rc != 0)
        return rc;
    config->legacy = allow;
    return edit_end(config, 0);
}

int tide_tls_config_set_session_cache(tide_tls_config_t *config, bool enabled, double lifetime) {
    int rc = edit_begin(config);
    if (rc != 0)
        return rc;
    config->cache_enabled = enabled;
    config->cache_lifetime = lifetime > 0 ? lifetime : TLS_DEFAULT_CACHE_LIFETIME;
    return edit_end(config, 0);
}

/* ---- SNI ----------------------------------------------------------------------------- */

static bool sni_match(const char *pattern, const char *name, size_t len) {
    size_t plen = strlen(pattern);
    if (plen == len && strncasecmp(pattern, name, len) == 0)
        return true;
    /* "*.example.com" matches exactly one label before ".example.com". */
    if (plen > 2 && pattern[0] == '*' && pattern[1] == '.') {
        const char *dot = memchr(name, '.', len);
        if (dot == NULL || dot == name)
            return false;
        size_t rest = len - (size_t)(dot - name);
        return rest == plen - 1 && strncasecmp(pattern + 1, dot, rest) == 0;
    }
    return false;
}

static int sni_choose(void *p, mbedtls_ssl_context *ssl, const unsigned char *name, size_t len);

/* ---- freezing ------------------------------------------------------------------------ */

/* Builds the mbedtls_ssl_config from the settings. Only on success does the
 * configuration become frozen, so a failure (no CA yet) can be fixed and retried. */
static int freeze_locked(tide_tls_config_t *cfg) {
    if (cfg->server && !cfg->has_cert && cfg->nsni == 0)
        return TIDE_ETLS_CONFIG;
    if (cfg->verify && !cfg->has_ca) {
        /* Clients fall back to the system bundle; a server verifying clients needs the
         * CAs it trusts for that named explicitly. */
        if (cfg->server || load_system_locked(cfg) != 0 || !cfg->has_ca)
            return TIDE_ETLS_NO_TRUST;
    }
    mbedtls_ssl_config *conf = &cfg->conf;
    int rc = mbedtls_ssl_config_defaults(
        conf, cfg->server ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT,
        MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc != 0)
        return tls_code(rc);
    mbedtls_ssl_conf_rng(conf, rng, cfg);
    conf_versions(cfg);
    conf_strength(cfg);
    mbedtls_ssl_conf_authmode(conf,
                              cfg->verify ? MBEDTLS_SSL_VERIFY_REQUIRED : MBEDTLS_SSL_VERIFY_NONE);
    if (cfg->has_ca)
        mbedtls_ssl_conf_ca_chain(conf, &cfg->ca, NULL);
    if (cfg->has_cert) {
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
    if (cfg->alpn) {
        rc = mbedtls_ssl_conf_alpn_protocols(conf, (const char **)cfg->alpn);
        if (rc != 0)
            return tls_code(rc);
    }
#endif
#if defined(MBEDTLS_SSL_SERVER_NAME_INDICATION)
    /* Also without SNI certificates: the callback records the name asked for. */
    if (cfg->server)
        mbedtls_ssl_conf_sni(conf, sni_choose, cfg);
#endif
#if defined(MBEDTLS_SSL_CACHE_C)
    if (cfg->server && cfg->cache_enabled) {
        mbedtls_ssl_cache_init(&cfg->cache);
        cfg->cache_ready = true;
        mbedtls_ssl_cache_set_timeout(&cfg->cache, (int)cfg->cache_lifetime);
        mbedtls_ssl_conf_session_cache(conf, cfg, cache_get, cache_set);
    }
#endif
#if defined(TLS_SERVER_TICKETS)
    if (cfg->server && cfg->cache_enabled) {
        /* TLS 1.3 caps a ticket's lifetime at 7 days (RFC 8446 4.6.1). */
        double life = cfg->cache_lifetime < 604800.0 ? cfg->cache_lifetime : 604800.0;
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
    if (!cfg->server)
        mbedtls_ssl_conf_tls13_enable_signal_new_session_tickets(
            conf, MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED);
#endif
    cfg->frozen = true;
    return 0;
}

static int freeze(tide_tls_config_t *cfg) {
    pthread_mutex_lock(&cfg->lock);
    int rc = cfg->frozen ? 0 : freeze_locked(cfg);
    pthread_mutex_unlock(&cfg->lock);
    return rc;
}

int tide__tls_check(const tide__tls_params *params) {
    if (params == NULL || params->config == NULL)
        return TIDE_EINVAL;
    tide_tls_config_t *cfg = params->config;
    if (!cfg->server && cfg->verify &&
        (params->server_hostname == NULL || params->server_hostname[0] == 0))
        return TIDE_ETLS_NO_HOSTNAME;
    if (params->server_hostname && strlen(params->server_hostname) > 255)
        return TIDE_EINVAL;
    return freeze(cfg);
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

void tide_tls_session_free(tide_tls_session_t *session) {
    if (session == NULL)
        return;
#if defined(TLS_TICKET_SLOT)
    slot_unref(session->slot);
#endif
    mbedtls_ssl_session_free(&session->s);
    free(session);
}

/* ---- the layer ----------------------------------------------------------------------- */

enum phase {
    PH_INIT,      /* waiting for the lower's connection_made */
    PH_HANDSHAKE, /* handshaking */
    PH_OPEN,      /* application data flows */
    PH_CLOSING,   /* our close_notify went out; waiting for the lower (or the peer's) */
    PH_DONE       /* failed or ended: nothing moves any more */
};

struct tide__tls {
    tide_transport_t t; /* the TLS transport: first, the base hands it back */
    tide_protocol_t lower_proto;
    tide_transport_t *lower; /* NULL once its connection_lost ran */
    tide_loop_t *loop;
    tide_tls_config_t *config;
    mbedtls_ssl_context ssl;
    char *hostname;
    char *sni; /* server: the name the client asked for */
    /* Client: the address when hostname is an IP address (ip_len 4 or 16, else 0): it is
     * not sent as SNI (RFC 6066) and is checked against the certificate's IP SANs. */
    unsigned char ip[16];
    size_t ip_len;
    /* mbedtls_ssl_setup ran: it allocates the record buffers (about 33 KiB), which a
     * server defers until the client's first bytes arrive, so that connections that
     * never send a ClientHello stay small. */
    bool ssl_ready;
    double handshake_timeout;
    size_t sent; /* ciphertext bytes mbedTLS handed to the lower */
    unsigned char offered_master[48];
    bool offered;
    tide__buf in;  /* ciphertext from the lower, not yet taken by mbedTLS */
    tide__buf out; /* plaintext not yet encrypted */
    size_t retry_len;
    tide__timer timer;
    tide__call kick;
    enum phase phase;
    bool upgrade;
    tide__tls_handshake_cb hs_cb;
    tide_start_tls_cb start_cb;
    void *cb_arg;
    int hs_cancel;   /* upgrade: the application closed or aborted mid-handshake */
    int bio_error;   /* the lower refused ciphertext */
    int lower_error; /* the lower was lost with this error */
    int busy;
    bool handshake_done;
    bool lower_eof;
    bool lower_paused;
    bool lower_lost;
    bool upper_gone;
    bool peer_notified; /* the peer's close_notify arrived */
    bool eof_pending;   /* ... and is still to be delivered to the application */
    bool wait_notify;   /* closing: still waiting for the peer's close_notify */
    bool graceful;      /* on abort, close the lower (flushing an alert) instead */
    bool resumed;
    bool verified;
    bool full_hs; /* TLS 1.3: the handshake authenticated with certificates */
    bool linger;  /* closing: wait_notify only until the server's first ticket */
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

static const tide__transport_ops tls_ops;
static const tide_protocol_ops_t lower_ops;

static void cache_hit(const mbedtls_ssl_session *s) {
    tide__tls *c = tls_running;
    if (c == NULL)
        return;
    memcpy(c->offered_master, s->MBEDTLS_PRIVATE(master), sizeof(c->offered_master));
    c->offered = true;
}

static tide__tls *of_transport(const tide_transport_t *t) {
    return (t != NULL && t->ops == &tls_ops) ? (tide__tls *)(void *)t : NULL;
}

/* mbedTLS calls that may reach PSA, under its lock where there is one. */
static int ssl_read(tide__tls *c, unsigned char *buf, size_t len) {
    crypto_enter();
    int r = mbedtls_ssl_read(&c->ssl, buf, len);
    crypto_leave();
    return r;
}

static int ssl_write(tide__tls *c, const unsigned char *buf, size_t len) {
    crypto_enter();
    int r = mbedtls_ssl_write(&c->ssl, buf, len);
    crypto_leave();
    return r;
}

static int bio_send(void *ctx, const unsigned char *buf, size_t len);
static int bio_recv(void *ctx, unsigned char *buf, size_t len);

/* Gives the connection its mbedTLS context's buffers. Returns 0 or a tide code. */
static int ssl_setup(tide__tls *c) {
    crypto_enter();
    int rc = mbedtls_ssl_setup(&c->ssl, &c->config->conf);
    crypto_leave();
    if (rc != 0)
        return rc == MBEDTLS_ERR_SSL_ALLOC_FAILED ? TIDE_ENOMEM : tls_code(rc);
    mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
    c->ssl_ready = true;
    return 0;
}

static void ssl_free(tide__tls *c) {
    crypto_enter();
    mbedtls_ssl_free(&c->ssl);
    crypto_leave();
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
static void fill_slot(tide__tls *c) {
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
static int save_session(tide__tls *c) {
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    if (c->config->server)
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
static bool ticket(tide__tls *c, int ret) {
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

static void forget_session(tide__tls *c) {
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

static void layer_free(tide__tls *c) {
    tide__timer_stop(&c->timer);
    tide__loop_undefer(&c->kick);
    forget_session(c);
    ssl_free(c);
    tide__buf_free(&c->in);
    tide__buf_free(&c->out);
    free(c->hostname);
    free(c->sni);
    tide_tls_config_unref(c->config);
    free(c);
}

static void enter(tide__tls *c) { c->busy++; }

static void leave(tide__tls *c) {
    if (--c->busy == 0 && c->lower_lost && c->upper_gone)
        layer_free(c);
}

/* mbedTLS's SNI callback: the connection is the struct around its ssl context. */
static int sni_choose(void *p, mbedtls_ssl_context *ssl, const unsigned char *name, size_t len) {
    tide_tls_config_t *cfg = p;
    tide__tls *c = TIDE_CONTAINER_OF(ssl, tide__tls, ssl);
    free(c->sni);
    c->sni = malloc(len + 1);
    if (c->sni) {
        memcpy(c->sni, name, len);
        c->sni[len] = 0;
    }
    for (size_t i = 0; i < cfg->nsni; i++) {
        if (sni_match(cfg->sni[i].name, (const char *)name, len))
            return mbedtls_ssl_set_hs_own_cert(ssl, &cfg->sni[i].crt, &cfg->sni[i].key);
    }
    return cfg->has_cert ? 0 : -1;
}

static int map_error(tide__tls *c, int ret) {
    if (c->bio_error != 0)
        return c->bio_error;
    /* A certificate refused for its key usage fails the handshake message rather than
     * the verification, but sets the same flags. */
    if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED || ret == ERR_BAD_CERTIFICATE) {
        uint32_t flags = mbedtls_ssl_get_verify_result(&c->ssl);
        if (flags != 0 && flags != (uint32_t)-1)
            return verify_code(flags);
    }
    return tls_code(ret);
}

/* ---- BIO ------------------------------------------------------------------------------- */

static int bio_send(void *ctx, const unsigned char *buf, size_t len) {
    tide__tls *c = ctx;
    if (c->bio_error != 0)
        return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
    if (c->lower == NULL) {
        c->bio_error = c->lower_error ? c->lower_error : TIDE_ETLS_TRUNCATED;
        return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
    }
    /* The lower takes every byte (queueing what the kernel does not), so mbedTLS
     * never sees WANT_WRITE and never has to replay a record. */
    int rc = tide_transport_write(c->lower, buf, len);
    if (rc < 0) {
        c->bio_error = rc;
        return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
    }
    c->sent += len;
    return (int)len;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len) {
    tide__tls *c = ctx;
    if (c->in.len == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    size_t n = len < c->in.len ? len : c->in.len;
    if (n > INT32_MAX)
        n = INT32_MAX;
    memcpy(buf, tide__buf_begin(&c->in), n);
    tide__buf_consume(&c->in, n);
    if (c->in.len == 0)
        tide__buf_settle(&c->in, TLS_IN_HIGH);
    return (int)n;
}

/* ---- helpers --------------------------------------------------------------------------- */

/* Ends the lower transport: graceful closes flush what is queued (our close_notify or
 * an alert), bounded by the shutdown deadline; the others drop it. */
static void close_lower(tide__tls *c, bool graceful) {
    if (c->lower == NULL)
        return;
    if (!graceful) {
        tide_transport_abort(c->lower);
        return;
    }
    tide_transport_close(c->lower);
    /* A peer that never reads must not keep the lower open for ever. */
    if (c->lower && !tide__timer_active(&c->timer) &&
        tide__timer_start(&c->timer, c->config->shutdown_timeout) != 0)
        tide_transport_abort(c->lower);
}

static void defer_kick(tide__tls *c) { tide__loop_defer(c->loop, &c->kick); }

/* The lower's watermarks follow the application's low mark, so that the lower reports
 * every crossing of it and the TLS transport can re-check its own marks. */
static void sync_limits(tide__tls *c) {
    if (c->lower) {
        c->lower->high_water = c->t.low_water;
        c->lower->low_water = c->t.low_water;
    }
}

static void update_lower_reading(tide__tls *c) {
    if (c->lower == NULL)
        return;
    if (!c->lower_paused && c->in.len > TLS_IN_HIGH) {
        c->lower_paused = true;
        tide_transport_pause_reading(c->lower);
    } else if (c->lower_paused && c->in.len <= TLS_IN_LOW) {
        c->lower_paused = false;
        tide_transport_resume_reading(c->lower);
    }
}

static void fatal(tide__tls *c, int err, bool graceful) {
    c->graceful = graceful;
    tide__transport_fatal(&c->t, err);
}

/* Encrypts len bytes of plaintext. Returns the bytes mbedTLS took (all of them unless it
 * asked for a retry: then retry_len is set and the rest is the caller's to queue) or a
 * negative code. */
static int encrypt(tide__tls *c, const unsigned char *data, size_t len, size_t *used) {
    *used = 0;
    while (*used < len) {
        size_t chunk = c->retry_len ? c->retry_len : len - *used;
        if (chunk > len - *used)
            chunk = len - *used;
        if (chunk > TLS_CHUNK)
            chunk = TLS_CHUNK;
        int r = ssl_write(c, data + *used, chunk);
        if (r > 0) {
            c->retry_len = 0;
            *used += (size_t)r;
            continue;
        }
        if (ticket(c, r))
            continue;
        if (c->bio_error != 0)
            return c->bio_error;
        if (r == 0 || is_want(r)) {
            /* mbedTLS must see the same length again. */
            c->retry_len = chunk;
            return 0;
        }
        return map_error(c, r);
    }
    return 0;
}

/* Encrypts queued plaintext. Returns 0 or a code (the caller fails the transport). */
static int flush_out(tide__tls *c) {
    while (c->out.len > 0) {
        size_t used;
        int rc = encrypt(c, tide__buf_begin(&c->out), c->out.len, &used);
        tide__buf_consume(&c->out, used);
        if (rc < 0)
            return rc;
        if (c->retry_len)
            break;
    }
    if (c->out.len == 0)
        tide__buf_settle(&c->out, TLS_IN_LOW);
    return 0;
}

static bool resumed(tide__tls *c) {
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

/* ---- handshake ------------------------------------------------------------------------ */

static void hs_fail(tide__tls *c, int err, bool graceful) {
    tide__timer_stop(&c->timer);
    c->phase = PH_DONE;
    tide__buf_consume(&c->out, c->out.len);
    tide__log(c->loop, TIDE_LOG_DEBUG, "TLS handshake failed: %s", tide_strerror(err));
    if (!c->upgrade) {
        close_lower(c, graceful);
        tide__tls_handshake_cb cb = c->hs_cb;
        c->hs_cb = NULL;
        if (cb)
            cb(c, err, c->cb_arg);
        tide__transport_discard(&c->t);
        return;
    }
    tide_start_tls_cb cb = c->start_cb;
    c->start_cb = NULL;
    if (cb)
        cb(c->loop, err, NULL, c->cb_arg);
    if (c->t.state & TIDE__T_LOST) {
        close_lower(c, graceful); /* the application aborted: lost is on its way */
    } else if (c->hs_cancel) {
        close_lower(c, false);
        tide__transport_lost(&c->t, 0); /* the application closed it */
    } else {
        fatal(c, err, graceful);
    }
}

/* Runs the handshake as far as it can go. With TLS 1.3 built, one step at a time, to
 * note whether it passed the certificate states: TLS 1.3 skips them exactly when the
 * peers authenticate by PSK, that is resume a ticket. There is no accessor for this,
 * so the state is read in place. */
static int handshake_run(tide__tls *c) {
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

static void hs_done(tide__tls *c) {
    tide__timer_stop(&c->timer);
    c->phase = PH_OPEN;
    c->handshake_done = true;
    c->resumed = resumed(c);
    /* On TLS 1.3 this session has no ticket yet: ticket() replaces it when one comes. */
    (void)save_session(c);
    c->verified = mbedtls_ssl_get_peer_cert(&c->ssl) != NULL &&
                  mbedtls_ssl_get_verify_result(&c->ssl) == 0 && c->config->verify;
    if (!c->upgrade) {
        tide__tls_handshake_cb cb = c->hs_cb;
        c->hs_cb = NULL;
        if (cb)
            cb(c, 0, c->cb_arg);
        return;
    }
    /* Writes made while handshaking go out now, encrypted. */
    int rc = flush_out(c);
    if (rc < 0) {
        tide_start_tls_cb cb = c->start_cb;
        c->start_cb = NULL;
        if (cb)
            cb(c->loop, rc, NULL, c->cb_arg);
        fatal(c, rc, false);
        return;
    }
    tide_start_tls_cb cb = c->start_cb;
    c->start_cb = NULL;
    if (cb)
        cb(c->loop, 0, &c->t, c->cb_arg);
    if (c->phase == PH_OPEN)
        tide__transport_check_resume(&c->t);
}

/* A server that fails on the client's first flight before sending anything: mbedTLS
 * stays silent on a few such failures (2.28 on a ClientHello spread over several
 * records, which it cannot reassemble), and through mbedTLS an alert would carry no
 * protocol version yet. A fatal alert in a plain TLS 1.2 record tells the client that
 * the handshake failed, instead of a bare close. */
static void alert_in_clear(tide__tls *c, unsigned char description) {
    const unsigned char alert[] = {MBEDTLS_SSL_MSG_ALERT, 3, 3, 0, 2, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                   description};
    if (c->lower != NULL && tide_transport_write(c->lower, alert, sizeof(alert)) == 0)
        c->sent += sizeof(alert);
}

static void handshake_step(tide__tls *c) {
    if (c->hs_cancel) {
        hs_fail(c, c->hs_cancel, false);
        return;
    }
    if (!c->ssl_ready) {
        /* A server waits for the client's first bytes before it costs any memory. */
        if (c->in.len == 0) {
            if (c->lower_eof)
                hs_fail(c, c->lower_error ? c->lower_error : TIDE_ECONNRESET, false);
            return;
        }
        int rc = ssl_setup(c);
        if (rc != 0) {
            hs_fail(c, rc, false);
            return;
        }
    }
    for (;;) {
        tls_running = c->config->server ? c : NULL;
        int ret = handshake_run(c);
        tls_running = NULL;
        if (ret == 0) {
            hs_done(c);
            return;
        }
        if (ticket(c, ret))
            continue;
        if (c->bio_error != 0) {
            hs_fail(c, c->bio_error, false);
        } else if (is_want(ret)) {
            if (c->lower_eof)
                hs_fail(c, c->lower_error ? c->lower_error : TIDE_ECONNRESET, false);
        } else {
            /* mbedTLS queued an alert: close (flushing it) rather than abort. */
            if (c->config->server && c->sent == 0)
                alert_in_clear(c, ret == ERR_BAD_CLIENT_HELLO
                                      ? MBEDTLS_SSL_ALERT_MSG_DECODE_ERROR
                                      : MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE);
            hs_fail(c, map_error(c, ret), true);
        }
        return;
    }
}

/* ---- reading ------------------------------------------------------------------------- */

/* The peer's close_notify reaches the application as eof_received; TLS then closes
 * whatever eof_received answers. */
static void deliver_eof(tide__tls *c) {
    c->eof_pending = false;
    tide__transport_eof(&c->t);
    if (!tide__transport_closing(&c->t))
        tide_transport_close(&c->t);
}

/* mbedTLS 3.x answers WANT_READ when it has just set a post-handshake message (a TLS
 * 1.3 NewSessionTicket) aside to process on the next call, which moves the handshake
 * state off "over": that call must come now, since no further input may arrive. */
static bool held_back(tide__tls *c, int r) {
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

/* What ended a run of reads (r <= 0). Returns true when reading may go on. */
static bool read_end(tide__tls *c, int r) {
    if (ticket(c, r))
        return true;
    if (r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
        c->peer_notified = true;
        c->eof_pending = true;
        /* Whatever follows close_notify is never delivered. */
        tide__buf_consume(&c->in, c->in.len);
        return true; /* delivered at the top of the loop, once the application reads */
    }
    if (c->bio_error != 0) {
        fatal(c, c->bio_error, false);
        return false;
    }
    if (r != 0 && is_want(r)) {
        if (held_back(c, r))
            return true;
        /* The lower ended without close_notify: truncation (or its own error). */
        if (c->lower_eof)
            fatal(c, c->lower_error ? c->lower_error : TIDE_ETLS_TRUNCATED, false);
        return false;
    }
    if (r == 0) {
        fatal(c, TIDE_ETLS_TRUNCATED, false);
        return false;
    }
    fatal(c, map_error(c, r), true);
    return false;
}

static bool more_pending(tide__tls *c) {
    return c->in.len > 0 || mbedtls_ssl_get_bytes_avail(&c->ssl) > 0 ||
           mbedtls_ssl_check_pending(&c->ssl);
}

static void read_app_data(tide__tls *c) {
    size_t budget = TIDE__READ_MAX;
    while (c->phase == PH_OPEN && tide__transport_wants_read(&c->t)) {
        if (c->eof_pending) {
            deliver_eof(c);
            return;
        }
        if (!c->lower_eof && !more_pending(c))
            return;
        if (budget == 0) {
            defer_kick(c); /* the rest next turn, without new readiness */
            return;
        }
        if (tide__transport_is_buffered(&c->t)) {
            size_t avail = mbedtls_ssl_get_bytes_avail(&c->ssl);
            if (avail == 0) {
                /* Decrypt the next record without taking any of it, so that the
                 * protocol is asked for memory only when there is plaintext. */
                unsigned char none;
                int r = ssl_read(c, &none, 0);
                if (r < 0 && !read_end(c, r))
                    return;
                continue;
            }
            size_t len = 0;
            unsigned char *buf = tide__transport_get_buffer(&c->t, avail, &len);
            if (buf == NULL || !tide__transport_wants_read(&c->t))
                return;
            if (len > budget)
                len = budget;
            int r = ssl_read(c, buf, len);
            if (r > 0) {
                budget -= (size_t)r;
                tide__transport_buffer_updated(&c->t, (size_t)r);
                continue;
            }
            if (!read_end(c, r))
                return;
            continue;
        }
        size_t size = 0;
        unsigned char *scratch = tide__loop_scratch(c->loop, &size);
        if (scratch == NULL) {
            fatal(c, TIDE_ENOMEM, false);
            return;
        }
        if (size > budget)
            size = budget;
        size_t got = 0;
        int r = 0;
        while (got < size) {
            r = ssl_read(c, scratch + got, size - got);
            if (r > 0)
                got += (size_t)r;
            else if (!ticket(c, r))
                break;
        }
        if (got > 0) {
            budget -= got;
            tide__transport_data(&c->t, scratch, got);
        }
        if (got < size && !read_end(c, r))
            return;
    }
}

/* A TLS 1.3 server sends its session tickets after the handshake, unasked. A client
 * that closes the socket before reading them leaves bytes unread, and the kernel then
 * resets the connection instead of ending it, which can destroy data the server has
 * not read yet. So such a client, closing before the first ticket came, keeps reading
 * until it comes (or the server's close_notify, or EOF), bounded by the shutdown
 * deadline, and only then closes the socket. */
static bool awaits_ticket(tide__tls *c) {
#if defined(TLS_13)
    return !c->config->server && c->tickets == 0 &&
           mbedtls_ssl_get_version_number(&c->ssl) == MBEDTLS_SSL_VERSION_TLS1_3;
#else
    (void)c;
    return false;
#endif
}

/* The wait of a closing connection is over: close the lower, flushing what it holds. */
static void end_wait(tide__tls *c) {
    c->wait_notify = false;
    c->linger = false;
    tide__buf_consume(&c->in, c->in.len);
    close_lower(c, true);
}

/* Closing and waiting for the peer's close_notify: application data is dropped. */
static void drain_closing(tide__tls *c) {
    if (!c->wait_notify)
        return;
    size_t size = 0;
    unsigned char *scratch = tide__loop_scratch(c->loop, &size);
    if (scratch == NULL) {
        fatal(c, TIDE_ENOMEM, false);
        return;
    }
    for (;;) {
        int r = ssl_read(c, scratch, size);
        if (r > 0 || held_back(c, r))
            continue;
        if (ticket(c, r)) {
            if (!c->linger)
                continue;
            end_wait(c);
        } else if (r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || (is_want(r) && c->lower_eof)) {
            end_wait(c);
        } else if (!is_want(r)) {
            fatal(c, c->bio_error ? c->bio_error : map_error(c, r), false);
        }
        return;
    }
}

/* Once the lower is lost, nothing more can arrive nor leave: an open connection ends as
 * soon as what was decrypted is delivered. An application that is not reading (paused,
 * or half-open after eof_received) would otherwise never hear of the loss: its writes
 * stay queued below, so resume_writing never comes, and the transport keeps the loop
 * running for ever. It gets connection_lost now, as a socket transport that fails with
 * output queued; what it did not read is dropped, as the kernel drops a reset socket's. */
static void end_if_lower_lost(tide__tls *c) {
    if (c->phase != PH_OPEN || !c->lower_lost)
        return;
    if (tide__transport_wants_read(&c->t) && tide__call_pending(&c->kick))
        return; /* the next turn delivers more, then ends it */
    fatal(c, c->peer_notified ? 0 : c->lower_error ? c->lower_error : TIDE_ETLS_TRUNCATED, false);
}

static void process(tide__tls *c) {
    if (c->phase == PH_HANDSHAKE)
        handshake_step(c);
    if (c->phase == PH_OPEN) {
        read_app_data(c);
        end_if_lower_lost(c);
    } else if (c->phase == PH_CLOSING)
        drain_closing(c);
    if (c->phase == PH_OPEN || c->phase == PH_CLOSING || c->phase == PH_HANDSHAKE)
        update_lower_reading(c);
}

static void kick_run(tide__call *call) {
    tide__tls *c = TIDE_CONTAINER_OF(call, tide__tls, kick);
    enter(c);
    process(c);
    leave(c);
}

static void timer_fired(tide__timer *timer) {
    tide__tls *c = TIDE_CONTAINER_OF(timer, tide__tls, timer);
    enter(c);
    if (c->phase == PH_HANDSHAKE)
        hs_fail(c, TIDE_ETLS_HANDSHAKE_TIMEOUT, false);
    else if (c->phase == PH_CLOSING && c->linger && c->wait_notify)
        end_wait(c); /* no ticket came: our close was complete anyway */
    else if (c->phase == PH_CLOSING)
        fatal(c, TIDE_ETLS_SHUTDOWN_TIMEOUT, false);
    else
        close_lower(c, false); /* an alert that could not be flushed in time */
    leave(c);
}

static void start_handshake(tide__tls *c) {
    c->phase = PH_HANDSHAKE;
    if (tide__timer_start(&c->timer, c->handshake_timeout) != 0) {
        c->hs_cancel = TIDE_ENOMEM;
        defer_kick(c);
    }
}

/* ---- the protocol on the lower transport --------------------------------------------- */

static tide__tls *of_lower(tide_protocol_t *p) {
    return TIDE_CONTAINER_OF(p, tide__tls, lower_proto);
}

static void lower_made(tide_protocol_t *p, tide_transport_t *lower) {
    tide__tls *c = of_lower(p);
    enter(c);
    c->lower = lower;
    sync_limits(c);
    start_handshake(c);
    process(c);
    leave(c);
}

static void *lower_get_buffer(tide_protocol_t *p, size_t sizehint, size_t *len) {
    tide__tls *c = of_lower(p);
    size_t want = sizehint > TLS_IN_CHUNK ? sizehint : TLS_IN_CHUNK;
    if (tide__buf_reserve(&c->in, want, TLS_IN_CHUNK, NULL) != 0) {
        *len = 0;
        return NULL; /* the lower fails with TIDE_ENOBUFS */
    }
    *len = tide__buf_room(&c->in);
    return tide__buf_end(&c->in);
}

static void lower_buffer_updated(tide_protocol_t *p, size_t nbytes) {
    tide__tls *c = of_lower(p);
    enter(c);
    if (c->phase == PH_DONE || c->peer_notified) {
        /* Nobody reads any more, or the bytes follow the peer's close_notify. */
    } else {
        c->in.len += nbytes;
        process(c);
    }
    leave(c);
}

static bool lower_eof(tide_protocol_t *p) {
    tide__tls *c = of_lower(p);
    enter(c);
    c->lower_eof = true;
    process(c);
    leave(c);
    return true; /* we close the lower ourselves */
}

static void lower_lost(tide_protocol_t *p, int status) {
    tide__tls *c = of_lower(p);
    enter(c);
    c->lower = NULL;
    c->lower_lost = true;
    c->lower_eof = true;
    if (c->lower_error == 0 && status < 0)
        c->lower_error = status;
    switch (c->phase) {
    case PH_INIT:
        c->phase = PH_DONE;
        if (!c->upper_gone)
            tide__transport_discard(&c->t);
        break;
    case PH_HANDSHAKE:
        hs_fail(c, status < 0 ? status : TIDE_ECONNRESET, false);
        break;
    case PH_OPEN:
        /* What was decrypted before the end is still delivered, then the end. */
        process(c);
        break;
    case PH_CLOSING:
        tide__timer_stop(&c->timer);
        c->phase = PH_DONE;
        /* After the peer's close_notify, failing to deliver ours (the peer closed its
         * socket already: EPIPE, a reset) loses nothing. */
        tide__transport_lost(&c->t, c->peer_notified ? 0 : status);
        break;
    case PH_DONE:
        tide__timer_stop(&c->timer);
        break;
    }
    leave(c);
}

static void lower_pause_writing(tide_protocol_t *p) {
    tide__tls *c = of_lower(p);
    if ((c->t.state & TIDE__T_MADE) && !c->upper_gone)
        tide__transport_check_pause(&c->t);
}

static void lower_resume_writing(tide_protocol_t *p) {
    tide__tls *c = of_lower(p);
    if ((c->t.state & TIDE__T_MADE) && !c->upper_gone)
        tide__transport_check_resume(&c->t);
}

static const tide_protocol_ops_t lower_ops = {
    .size = TIDE_PROTOCOL_OPS_SIZE,
    .connection_made = lower_made,
    .eof_received = lower_eof,
    .connection_lost = lower_lost,
    .pause_writing = lower_pause_writing,
    .resume_writing = lower_resume_writing,
    .get_buffer = lower_get_buffer,
    .buffer_updated = lower_buffer_updated,
};

/* ---- the TLS transport ops ------------------------------------------------------------ */

static tide__tls *of_t(tide_transport_t *t) { return (tide__tls *)(void *)t; }
static const tide__tls *of_ct(const tide_transport_t *t) {
    return (const tide__tls *)(const void *)t;
}

static int queue_iov(tide__tls *c, const tide_iovec_t *bufs, size_t n, size_t total) {
    if (tide__buf_reserve(&c->out, total, TLS_CHUNK, NULL) != 0)
        return TIDE_ENOMEM;
    for (size_t i = 0; i < n; i++)
        tide__buf_put(&c->out, bufs[i].base, bufs[i].len);
    return 0;
}

static int tls_write(tide_transport_t *t, const tide_iovec_t *bufs, size_t n, size_t total) {
    tide__tls *c = of_t(t);
    if (c->phase != PH_OPEN && c->phase != PH_HANDSHAKE)
        return 0; /* closing: accepted and dropped, as a closing socket does */
    enter(c);
    sync_limits(c);
    int rc = 0;
    if (c->phase == PH_HANDSHAKE || c->out.len > 0 || c->retry_len > 0 || n != 1) {
        rc = queue_iov(c, bufs, n, total);
        if (rc == 0 && c->phase == PH_OPEN) {
            int err = flush_out(c);
            if (err < 0)
                fatal(c, err, true);
        }
    } else {
        size_t used = 0;
        int err = encrypt(c, bufs[0].base, total, &used);
        if (err < 0) {
            fatal(c, err, true);
        } else if (used < total) {
            tide_iovec_t rest = {(const unsigned char *)bufs[0].base + used, total - used};
            if (queue_iov(c, &rest, 1, rest.len) != 0)
                fatal(c, TIDE_ENOMEM, false); /* part of it is encrypted already */
        }
    }
    leave(c);
    return rc;
}

static void start_shutdown(tide__tls *c) {
    c->phase = PH_CLOSING;
    if (tide__timer_start(&c->timer, c->config->shutdown_timeout) != 0) {
        fatal(c, TIDE_ENOMEM, false);
        return;
    }
    int rc = flush_out(c);
    if (rc < 0) {
        fatal(c, rc, false);
        return;
    }
    int r;
    do {
        crypto_enter();
        r = mbedtls_ssl_close_notify(&c->ssl);
        crypto_leave();
    } while (ticket(c, r));
    if (c->bio_error != 0) {
        fatal(c, c->bio_error, false);
        return;
    }
    bool ticket_due = awaits_ticket(c);
    if ((c->config->wait_close_notify || ticket_due) && !c->peer_notified && !c->lower_eof) {
        c->wait_notify = true;
        c->linger = !c->config->wait_close_notify;
        defer_kick(c); /* records already buffered may hold it */
        return;
    }
    close_lower(c, true);
}

static void tls_close(tide_transport_t *t) {
    tide__tls *c = of_t(t);
    enter(c);
    switch (c->phase) {
    case PH_HANDSHAKE:
        /* Closing mid-handshake is an abort (asyncio); cb still runs, first. */
        c->hs_cancel = TIDE_ECANCELLED;
        defer_kick(c);
        close_lower(c, false);
        break;
    case PH_OPEN:
        start_shutdown(c);
        break;
    default:
        if (!(t->state & TIDE__T_LOST))
            tide__transport_lost(t, c->lower_error);
        break;
    }
    leave(c);
}

static void tls_abort(tide_transport_t *t) {
    tide__tls *c = of_t(t);
    enter(c);
    tide__buf_consume(&c->out, c->out.len);
    c->retry_len = 0;
    c->wait_notify = false;
    if (c->phase == PH_HANDSHAKE) {
        /* Deferred before the base defers connection_lost: cb runs first. */
        if (c->hs_cancel == 0)
            c->hs_cancel = t->error ? t->error : TIDE_ECANCELLED;
        defer_kick(c);
        close_lower(c, false);
    } else {
        tide__timer_stop(&c->timer);
        if (c->phase != PH_INIT)
            c->phase = PH_DONE;
        close_lower(c, c->graceful);
    }
    leave(c);
}

static void tls_pause_reading(tide_transport_t *t) {
    (void)t; /* read_app_data checks tide__transport_wants_read() */
}

static void tls_resume_reading(tide_transport_t *t) { defer_kick(of_t(t)); }

static size_t tls_write_buffer_size(const tide_transport_t *t) {
    const tide__tls *c = of_ct(t);
    size_t n = c->out.len;
    if (c->lower)
        n += tide_transport_get_write_buffer_size(c->lower);
    return n;
}

static int tls_peername(const tide_transport_t *t, struct sockaddr *addr, socklen_t *len) {
    const tide__tls *c = of_ct(t);
    return c->lower ? tide_transport_get_peername(c->lower, addr, len) : TIDE_ENOTCONN;
}

static int tls_sockname(const tide_transport_t *t, struct sockaddr *addr, socklen_t *len) {
    const tide__tls *c = of_ct(t);
    return c->lower ? tide_transport_get_sockname(c->lower, addr, len) : TIDE_ENOTCONN;
}

static int tls_fd(const tide_transport_t *t) {
    const tide__tls *c = of_ct(t);
    return c->lower ? tide_transport_get_fd(c->lower) : TIDE_ENOTSOCK;
}

static void tls_describe(const tide_transport_t *t, char *buf, size_t size) {
    static const char *const names[] = {"init", "handshake", "open", "closing", "done"};
    const tide__tls *c = of_ct(t);
    snprintf(buf, size, "tls transport %p (%s, %s, over %s)", (const void *)t,
             c->config->server ? "server" : "client", names[c->phase],
             c->lower ? tide_transport_kind(c->lower) : "nothing");
}

/* The application changed its marks: the lower must follow at once, and pause if its
 * queue is above the new mark, or the drain below it (the only news that resumes the
 * application's writing) would never be reported. */
static void tls_limits_changed(tide_transport_t *t) {
    tide__tls *c = of_t(t);
    sync_limits(c);
    if (c->lower)
        tide__transport_check_pause(c->lower);
}

static void tls_release(tide_transport_t *t) {
    tide__tls *c = of_t(t);
    c->upper_gone = true;
    if (c->busy == 0 && c->lower_lost)
        layer_free(c);
}

static const tide__transport_ops tls_ops = {
    .kind = "tls",
    .write = tls_write,
    .write_eof = NULL,
    .close = tls_close,
    .abort = tls_abort,
    .pause_reading = tls_pause_reading,
    .resume_reading = tls_resume_reading,
    .get_write_buffer_size = tls_write_buffer_size,
    .get_peername = tls_peername,
    .get_sockname = tls_sockname,
    .get_fd = tls_fd,
    .describe = tls_describe,
    .limits_changed = tls_limits_changed,
    .release = tls_release,
};

/* ---- creating layers ------------------------------------------------------------------ */

/* Frees a layer that never got its TLS transport initialised. */
static void layer_drop(tide__tls *c) {
    tide__timer_stop(&c->timer);
    forget_session(c);
    ssl_free(c);
    tide__buf_free(&c->in);
    free(c->hostname);
    tide_tls_config_unref(c->config);
    free(c);
}

/* Whether offering a session can resume it. A TLS 1.3 session is its ticket, which
 * arrives after the handshake: one taken before has none, and would only pin the
 * version to 1.3. mbedTLS fails the handshake when a ticket's server name differs from
 * the connection's; such a session is not offered, a full handshake follows instead. */
static bool session_usable(const tide__tls *c, const mbedtls_ssl_session *s) {
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
    const tide__tls *c = p;
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
static int set_peer_name(tide__tls *c) {
    if (inet_pton(AF_INET, c->hostname, c->ip) == 1)
        c->ip_len = 4;
    else if (inet_pton(AF_INET6, c->hostname, c->ip) == 1)
        c->ip_len = 16;
    if (c->ip_len == 0)
        return mbedtls_ssl_set_hostname(&c->ssl, c->hostname);
    if (c->config->verify)
        mbedtls_ssl_set_verify(&c->ssl, verify_ip, c);
    /* Explicitly none (3.6 refuses to verify without a name unless told so). */
    return mbedtls_ssl_set_hostname(&c->ssl, NULL);
}

/* Loads a session to resume, when it can resume anything. Returns an mbedTLS code. */
static int offer_session(tide__tls *c, const tide_tls_session_t *session) {
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

static int layer_new(tide_loop_t *loop, const tide__tls_params *params, tide__tls **out) {
    int rc = tide__tls_check(params);
    if (rc != 0)
        return rc;
    tide_tls_config_t *cfg = params->config;
    tide__tls *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return TIDE_ENOMEM;
    c->loop = loop;
    c->config = tide_tls_config_ref(cfg);
    c->lower_proto.ops = &lower_ops;
    tide__call_init(&c->kick, kick_run);
    tide__timer_init(loop, &c->timer, timer_fired);
    c->handshake_timeout =
        params->handshake_timeout > 0 ? params->handshake_timeout : cfg->handshake_timeout;
    mbedtls_ssl_init(&c->ssl);
    /* A client speaks first and sets up now; a server when the client's first bytes come. */
    if (!cfg->server && (rc = ssl_setup(c)) != 0)
        goto fail;
    if (!cfg->server && params->server_hostname && params->server_hostname[0]) {
        c->hostname = strdup(params->server_hostname);
        if (c->hostname == NULL) {
            rc = TIDE_ENOMEM;
            goto fail;
        }
        rc = set_peer_name(c);
        if (rc != 0) {
            rc = rc == MBEDTLS_ERR_SSL_ALLOC_FAILED ? TIDE_ENOMEM : tls_code(rc);
            goto fail;
        }
    }
    if (!cfg->server && params->session) {
        rc = offer_session(c, params->session);
        if (rc != 0) {
            rc = rc == MBEDTLS_ERR_SSL_ALLOC_FAILED ? TIDE_ENOMEM : tls_code(rc);
            goto fail;
        }
    }
    *out = c;
    return 0;
fail:
    layer_drop(c);
    return rc;
}

int tide__tls_new(tide_loop_t *loop, const tide__tls_params *params, tide__tls_handshake_cb cb,
                  void *arg, tide__tls **out) {
    if (loop == NULL || out == NULL)
        return TIDE_EINVAL;
    tide__tls *c;
    int rc = layer_new(loop, params, &c);
    if (rc != 0)
        return rc;
    c->hs_cb = cb;
    c->cb_arg = arg;
    c->phase = PH_INIT;
    tide__transport_init(&c->t, loop, &tls_ops, NULL);
    if (params->config->server)
        c->t.state |= TIDE__T_SERVER_SIDE;
    *out = c;
    return 0;
}

tide_protocol_t *tide__tls_lower_protocol(tide__tls *tls) { return &tls->lower_proto; }

tide_transport_t *tide__tls_transport(tide__tls *tls) { return &tls->t; }

tide_transport_t *tide__tls_lower(const tide__tls *tls) { return tls->lower; }

void tide__tls_discard(tide__tls *tls) {
    if (tls == NULL)
        return;
    tls->lower_lost = true;
    tls->lower = NULL;
    if (!tls->upper_gone)
        tide__transport_discard(&tls->t); /* frees through tls_release */
    else if (tls->busy == 0)
        layer_free(tls);
}

void tide__tls_abort(tide__tls *tls) {
    if (tls == NULL)
        return;
    enter(tls);
    tide__timer_stop(&tls->timer);
    tls->phase = PH_DONE;
    tls->hs_cb = NULL;
    close_lower(tls, false);
    if (!tls->upper_gone)
        tide__transport_discard(&tls->t);
    leave(tls);
}

int tide__tls_upgrade(tide_loop_t *loop, tide_transport_t *lower, tide_protocol_t *app,
                      const tide__tls_params *params, const void *received, size_t received_len,
                      tide_start_tls_cb cb, void *arg, tide_transport_t **tls_out) {
    if (loop == NULL || lower == NULL || app == NULL || app->ops == NULL ||
        (received == NULL && received_len > 0) || lower->loop != loop)
        return TIDE_EINVAL;
    if (!(lower->state & TIDE__T_MADE))
        return TIDE_EINVAL;
    /* TLS needs both directions of the transport. */
    if ((lower->state &
         (TIDE__T_CLOSING | TIDE__T_READ_STOPPED | TIDE__T_LOST | TIDE__T_EOF_WRITTEN)) ||
        lower->error)
        return TIDE_ECLOSED;
    tide__tls *c;
    int rc = layer_new(loop, params, &c);
    if (rc != 0)
        return rc;
    if ((received_len > 0 && tide__buf_reserve(&c->in, received_len, TLS_IN_CHUNK, NULL) != 0) ||
        tide__timer_start(&c->timer, c->handshake_timeout) != 0) {
        layer_drop(c);
        return TIDE_ENOMEM;
    }
    tide__buf_put(&c->in, received, received_len);
    c->upgrade = true;
    c->start_cb = cb;
    c->cb_arg = arg;
    c->phase = PH_HANDSHAKE;
    c->lower = lower;

    /* The application's protocol moves to the TLS transport with its flow-control
     * state; the lower's user-facing state is now ours to drive. */
    tide__transport_init(&c->t, loop, &tls_ops, app);
    c->t.state |= TIDE__T_MADE;
    c->t.state |= lower->state & (TIDE__T_READ_PAUSED | TIDE__T_WRITE_PAUSED | TIDE__T_SERVER_SIDE);
    c->t.high_water = lower->high_water;
    c->t.low_water = lower->low_water;
    c->t.max_buffer = lower->max_buffer;
    lower->max_buffer = 0;
    tide_transport_set_protocol(lower, &c->lower_proto);
    tide__server_hand_over(lower, &c->t);
    sync_limits(c);
    if (lower->state & TIDE__T_READ_PAUSED)
        tide_transport_resume_reading(lower);
    /* The handshake's first flight goes out from the loop, not inside this call. */
    defer_kick(c);
    if (tls_out)
        *tls_out = &c->t;
    return 0;
}

int tide_loop_start_tls(tide_loop_t *loop, tide_transport_t *transport, tide_protocol_t *protocol,
                        tide_tls_config_t *config, const char *server_hostname,
                        const tide_tls_session_t *session, tide_start_tls_cb cb, void *arg) {
    tide__tls_params params = {
        .config = config, .server_hostname = server_hostname, .session = session};
    return tide__tls_upgrade(loop, transport, protocol, &params, NULL, 0, cb, arg, NULL);
}

/* ---- inspecting ------------------------------------------------------------------------ */

bool tide_transport_is_tls(const tide_transport_t *transport) {
    return of_transport(transport) != NULL;
}

int tide_tls_get_info(const tide_transport_t *transport, tide_tls_info_t *info) {
    tide__tls *c = of_transport(transport);
    if (c == NULL || info == NULL)
        return TIDE_EINVAL;
    if (!c->handshake_done)
        return TIDE_ENOTCONN;
    memset(info, 0, sizeof(*info));
    info->version = mbedtls_ssl_get_version(&c->ssl);
    info->cipher = mbedtls_ssl_get_ciphersuite(&c->ssl);
#if defined(MBEDTLS_SSL_ALPN)
    info->alpn = mbedtls_ssl_get_alpn_protocol(&c->ssl);
#endif
    info->server_name = c->config->server ? c->sni : c->hostname;
    info->resumed = c->resumed;
    info->server_side = c->config->server;
    info->peer_verified = c->verified;
    return 0;
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

int tide_tls_get_peer_certificate(const tide_transport_t *transport, tide_tls_cert_t *cert) {
    tide__tls *c = of_transport(transport);
    if (c == NULL || cert == NULL)
        return TIDE_EINVAL;
    if (!c->handshake_done)
        return TIDE_ENOTCONN;
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

int tide_tls_get_session(const tide_transport_t *transport, tide_tls_session_t **session) {
    tide__tls *c = of_transport(transport);
    if (c == NULL || session == NULL || c->config->server)
        return TIDE_EINVAL;
    if (!c->handshake_done)
        return TIDE_ENOTCONN;
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
            tide_tls_session_free(s);
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
        tide_tls_session_free(s);
        return rc == MBEDTLS_ERR_SSL_ALLOC_FAILED ? TIDE_ENOMEM : tls_code(rc);
    }
    *session = s;
    return 0;
}
