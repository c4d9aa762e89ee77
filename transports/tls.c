/* The TLS layer, engine-neutral: configurations (their settings), the TLS transport that
 * runs as the protocol of another transport (asyncio's sslproto design, asyncio.md
 * section 7), its phases, flow control, timers and start_tls. The cryptography is the
 * engine's, reached only through the ops table of transports/tls_int.h
 * (tide__tls_engine: transports/tls_mbedtls.c); nothing here knows mbedTLS.
 *
 * One layer (struct tide__tls) is two objects in one allocation: the protocol installed
 * on the lower transport, which receives ciphertext into `in` (a buffered protocol, so
 * the lower reads straight into it), and the TLS transport offered to the application.
 * The engine reads ciphertext through tide__tls_bio_recv, which takes from `in`, and
 * writes through tide__tls_bio_send, straight into the lower transport, which queues
 * what the kernel does not take, so the engine never has to retry a write of
 * ciphertext and never leaves a record half-done. Plaintext is queued (`out`) only
 * while the handshake of an upgrade is running, or in the theoretical case that the
 * engine asks for a retry; a retry reuses the same length, as engines require.
 *
 * Flow control: the application's write buffer size is the queued plaintext plus the
 * lower transport's queue. The lower's watermarks are kept at the application's low
 * mark, so that the lower tells us (pause_writing / resume_writing) whenever its queue
 * crosses it, and we re-check the TLS transport's own marks then. Reading: decrypted
 * bytes go to the application up to 256 KiB per turn; while it paused reading,
 * ciphertext piles up in `in` until 256 KiB, where the lower's reading is paused, and
 * resumed at 64 KiB.
 *
 * Threads: a frozen configuration is shared by connections on several loops; its
 * settings are then only read, and the engine guards what it shares. A layer itself
 * lives on its loop's thread.
 *
 * Reentrancy: application callbacks (data_received, eof_received, pause_writing, ...)
 * may close or abort the TLS transport, and handshake callbacks may abort the layer;
 * every loop below re-reads the phase after a callback. The layer is freed only when
 * both the lower's connection_lost and the TLS transport's release happened, and never
 * while one of its entry points is on the stack (the `busy` count). */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"
#include "transports/tls_int.h"

#define TLS_DEFAULT_HANDSHAKE 60.0
#define TLS_DEFAULT_SHUTDOWN 30.0
#define TLS_DEFAULT_CACHE_LIFETIME 600.0
#define TLS_IN_HIGH (256 * 1024) /* pause the lower's reading above this much ciphertext */
#define TLS_IN_LOW (64 * 1024)   /* ... and resume it at this */
#define TLS_IN_CHUNK (64 * 1024) /* room offered per read while the peer sends more */
#define TLS_IN_ROOM (17 * 1024)  /* ... and else: at least one whole record */
#define TLS_CHUNK 16384          /* plaintext per engine write: one record */
#define TLS_ALPN_MAX 16
#define TLS_SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"

#define ENGINE (&tide__tls_engine)

/* ---- configuration --------------------------------------------------------------- */

struct tide_tls_config {
    atomic_int refs;
    pthread_mutex_t lock; /* setters and freezing */
    bool frozen;
    bool ca_loaded; /* trust anchors came from the user */
    tide__tls_settings s;
    tide__tls_econf *engine;
};

/* ---- files ----------------------------------------------------------------------- */

/* Reads a whole file, with a NUL after it (PEM parsers want a terminator). */
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

/* A copy of caller memory with a NUL after it. */
static unsigned char *copy_nul(const void *data, size_t len) {
    unsigned char *p = malloc(len + 1);
    if (p) {
        memcpy(p, data, len);
        p[len] = 0;
    }
    return p;
}

/* Frees a key's copy, wiping it first. */
static void free_secret(unsigned char *p, size_t len) {
    if (p == NULL)
        return;
    volatile unsigned char *v = p;
    for (size_t i = 0; i < len; i++)
        v[i] = 0;
    free(p);
}

static void free_list(char **list) {
    if (list == NULL)
        return;
    for (char **p = list; *p; p++)
        free(*p);
    free(list);
}

/* ---- configuration: public ------------------------------------------------------- */

bool tide_tls_available(void) { return true; }

const char *tide_tls_library_version(void) { return ENGINE->library_version(); }

void tide__tls_describe(int engine_code, char *buf, size_t len) {
    ENGINE->describe(engine_code, buf, len);
}

static int config_new(tide_tls_config_t **out, bool server) {
    if (out == NULL)
        return TIDE_EINVAL;
    *out = NULL;
    tide_tls_config_t *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL)
        return TIDE_ENOMEM;
    atomic_init(&cfg->refs, 1);
    pthread_mutex_init(&cfg->lock, NULL);
    cfg->s.server = server;
    cfg->s.verify = !server;
    cfg->s.cache_enabled = true;
    cfg->s.cache_lifetime = TLS_DEFAULT_CACHE_LIFETIME;
    cfg->s.min_version = TIDE_TLS_VERSION_1_2;
    cfg->s.handshake_timeout = TLS_DEFAULT_HANDSHAKE;
    cfg->s.shutdown_timeout = TLS_DEFAULT_SHUTDOWN;
    int rc = ENGINE->conf_new(server, &cfg->engine);
    if (rc != 0) {
        tide_tls_config_unref(cfg);
        return rc;
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

void tide_tls_config_unref(tide_tls_config_t *config) {
    if (config == NULL || atomic_fetch_sub_explicit(&config->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (config->engine)
        ENGINE->conf_free(config->engine);
    free_list(config->s.alpn);
    free_list(config->s.sni_names);
    pthread_mutex_destroy(&config->lock);
    free(config);
}

bool tide_tls_config_is_server(const tide_tls_config_t *config) {
    return config != NULL && config->s.server;
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
    config->s.verify = verify;
    return edit_end(config, 0);
}

/* Adds trust anchors (data has a NUL at data[len]). */
static int add_ca_locked(tide_tls_config_t *cfg, const unsigned char *data, size_t len) {
    int rc = ENGINE->conf_add_ca(cfg->engine, data, len);
    if (rc == 0)
        cfg->s.has_ca = true;
    return rc;
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
        rc = add_ca_locked(config, data, len);
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
    rc = ENGINE->conf_add_ca_dir(config->engine, path);
    if (rc == 0) {
        config->s.has_ca = true;
        config->ca_loaded = true;
    }
    return edit_end(config, rc);
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
    rc = add_ca_locked(config, copy, len);
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
    rc = add_ca_locked(cfg, data, len);
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

/* Loads a pair into the configuration: as the default certificate (name NULL) or as an
 * SNI entry. The inputs are NUL-terminated copies. */
static int add_pair(tide_tls_config_t *cfg, const char *name, const unsigned char *cert,
                    size_t cert_len, const unsigned char *key, size_t key_len,
                    const char *password) {
    char *copy = NULL;
    char **grown = NULL;
    if (name != NULL) {
        /* Room for the name first: the engine's entry cannot be taken back. */
        grown = realloc(cfg->s.sni_names, (cfg->s.nsni + 2) * sizeof(*grown));
        if (grown == NULL)
            return TIDE_ENOMEM;
        cfg->s.sni_names = grown;
        grown[cfg->s.nsni] = NULL;
        if ((copy = strdup(name)) == NULL)
            return TIDE_ENOMEM;
    }
    int rc = ENGINE->conf_add_pair(cfg->engine, name, cert, cert_len, key, key_len, password);
    if (rc != 0) {
        free(copy);
        return rc;
    }
    if (name == NULL) {
        cfg->s.has_cert = true;
        return 0;
    }
    cfg->s.sni_names[cfg->s.nsni++] = copy;
    cfg->s.sni_names[cfg->s.nsni] = NULL;
    return 0;
}

static int check_pair_args(const char *name) {
    if (name != NULL && (*name == 0 || strlen(name) > 255))
        return TIDE_EINVAL;
    return 0;
}

static int set_pair_mem(tide_tls_config_t *cfg, const char *name, const void *cert, size_t cert_len,
                        const void *key, size_t key_len, const char *password) {
    if (cert == NULL || cert_len == 0 || key == NULL || key_len == 0 || check_pair_args(name))
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
    free_secret(k, key_len);
    return edit_end(cfg, rc);
}

static int set_pair_file(tide_tls_config_t *cfg, const char *name, const char *cert_path,
                         const char *key_path, const char *password) {
    if (cert_path == NULL || key_path == NULL || check_pair_args(name))
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
    free_secret(k, klen);
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
    if (server_name == NULL || (config && !config->s.server))
        return TIDE_EINVAL;
    return set_pair_file(config, server_name, cert_path, key_path, password);
}

int tide_tls_config_add_sni_cert_mem(tide_tls_config_t *config, const char *server_name,
                                     const void *cert, size_t cert_len, const void *key,
                                     size_t key_len, const char *password) {
    if (server_name == NULL || (config && !config->s.server))
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
                free_list(list);
                return edit_end(config, TIDE_ENOMEM);
            }
        }
    }
    free_list(config->s.alpn);
    config->s.alpn = list;
    return edit_end(config, 0);
}

int tide_tls_config_set_versions(tide_tls_config_t *config, int min_version, int max_version) {
    if (min_version == 0)
        min_version = TIDE_TLS_VERSION_1_2;
    if (min_version < TIDE_TLS_VERSION_1_2 || (max_version != 0 && max_version < min_version))
        return TIDE_EINVAL;
    if (min_version > TIDE_TLS_VERSION_1_3 || max_version > TIDE_TLS_VERSION_1_3)
        return TIDE_EINVAL;
    if (!ENGINE->version_supported(min_version) ||
        (max_version != 0 && !ENGINE->version_supported(max_version)))
        return TIDE_ENOTSUP;
    int rc = edit_begin(config);
    if (rc != 0)
        return rc;
    config->s.min_version = min_version;
    config->s.max_version = max_version;
    return edit_end(config, 0);
}

int tide_tls_config_set_timeouts(tide_tls_config_t *config, double handshake, double shutdown) {
    int rc = edit_begin(config);
    if (rc != 0)
        return rc;
    config->s.handshake_timeout = handshake > 0 ? handshake : TLS_DEFAULT_HANDSHAKE;
    config->s.shutdown_timeout = shutdown > 0 ? shutdown : TLS_DEFAULT_SHUTDOWN;
    return edit_end(config, 0);
}

int tide_tls_config_set_wait_close_notify(tide_tls_config_t *config, bool wait) {
    int rc = edit_begin(config);
    if (rc != 0)
        return rc;
    config->s.wait_close_notify = wait;
    return edit_end(config, 0);
}

int tide_tls_config_allow_legacy(tide_tls_config_t *config, bool allow) {
    int rc = edit_begin(config);
    if (rc != 0)
        return rc;
    config->s.legacy = allow;
    return edit_end(config, 0);
}

int tide_tls_config_set_session_cache(tide_tls_config_t *config, bool enabled, double lifetime) {
    int rc = edit_begin(config);
    if (rc != 0)
        return rc;
    config->s.cache_enabled = enabled;
    config->s.cache_lifetime = lifetime > 0 ? lifetime : TLS_DEFAULT_CACHE_LIFETIME;
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

int tide__tls_sni_find(const tide__tls_settings *settings, const char *name, size_t len) {
    for (size_t i = 0; i < settings->nsni; i++)
        if (sni_match(settings->sni_names[i], name, len))
            return (int)i;
    return -1;
}

/* ---- freezing ------------------------------------------------------------------------ */

/* Hands the settings to the engine. Only on success does the configuration become
 * frozen, so a failure (no CA yet) can be fixed and retried. */
static int freeze_locked(tide_tls_config_t *cfg) {
    if (cfg->s.server && !cfg->s.has_cert && cfg->s.nsni == 0)
        return TIDE_ETLS_CONFIG;
    if (cfg->s.verify && !cfg->s.has_ca) {
        /* Clients fall back to the system bundle; a server verifying clients needs the
         * CAs it trusts for that named explicitly. */
        if (cfg->s.server || load_system_locked(cfg) != 0 || !cfg->s.has_ca)
            return TIDE_ETLS_NO_TRUST;
    }
    int rc = ENGINE->conf_freeze(cfg->engine, &cfg->s);
    if (rc == 0)
        cfg->frozen = true;
    return rc;
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
    if (!cfg->s.server && cfg->s.verify &&
        (params->server_hostname == NULL || params->server_hostname[0] == 0))
        return TIDE_ETLS_NO_HOSTNAME;
    if (params->server_hostname && strlen(params->server_hostname) > 255)
        return TIDE_EINVAL;
    return freeze(cfg);
}

void tide_tls_session_free(tide_tls_session_t *session) {
    if (session != NULL)
        ENGINE->session_free(session);
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
    tide__tls_econn *eng; /* the engine's half */
    char *hostname;
    /* The engine's record buffers are set up (tens of KiB), which a server defers until
     * the client's first bytes arrive, so that connections that never send a
     * ClientHello stay small. */
    bool ssl_ready;
    double handshake_timeout;
    size_t sent;     /* ciphertext bytes the engine handed to the lower */
    size_t received; /* ciphertext bytes the lower gave us */
    unsigned char head[9]; /* their first bytes: a ClientHello's record and message header */
    tide__buf in;    /* ciphertext from the lower, not yet taken by the engine */
    size_t in_offered; /* the room in `in` offered to the lower's last read */
    bool in_filled;    /* ... which it filled */
    tide__buf out;   /* plaintext not yet encrypted */
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
    bool linger;        /* closing: wait_notify only until the server's first ticket */
};

static const tide__transport_ops tls_ops;
static const tide_protocol_ops_t lower_ops;

static const tide__tls_settings *settings(const tide__tls *c) { return &c->config->s; }

static tide__tls *of_transport(const tide_transport_t *t) {
    return (t != NULL && t->ops == &tls_ops) ? (tide__tls *)(void *)t : NULL;
}

/* What an engine failure r means: the BIO's own error comes first. */
static int err_of(const tide__tls *c, int r) { return c->bio_error != 0 ? c->bio_error : r; }

static void layer_free(tide__tls *c) {
    tide__timer_stop(&c->timer);
    tide__loop_undefer(&c->kick);
    if (c->eng)
        ENGINE->conn_free(c->eng);
    tide__buf_free(&c->in);
    tide__buf_free(&c->out);
    free(c->hostname);
    tide_tls_config_unref(c->config);
    free(c);
}

static void enter(tide__tls *c) { c->busy++; }

static void leave(tide__tls *c) {
    if (--c->busy == 0 && c->lower_lost && c->upper_gone)
        layer_free(c);
}

/* ---- BIO ------------------------------------------------------------------------------- */

int tide__tls_bio_send(tide__tls *c, const unsigned char *buf, size_t len) {
    if (c->bio_error != 0)
        return c->bio_error;
    if (c->lower == NULL) {
        c->bio_error = c->lower_error ? c->lower_error : TIDE_ETLS_TRUNCATED;
        return c->bio_error;
    }
    /* The lower takes every byte (queueing what the kernel does not), so the engine
     * never has to replay a record. */
    int rc = tide_transport_write(c->lower, buf, len);
    if (rc < 0) {
        c->bio_error = rc;
        return rc;
    }
    c->sent += len;
    return (int)len;
}

size_t tide__tls_bio_recv(tide__tls *c, unsigned char *buf, size_t len) {
    if (c->in.len == 0)
        return 0;
    size_t n = len < c->in.len ? len : c->in.len;
    if (n > INT32_MAX)
        n = INT32_MAX;
    memcpy(buf, tide__buf_begin(&c->in), n);
    tide__buf_consume(&c->in, n);
    if (c->in.len == 0)
        tide__buf_settle(&c->in, TLS_IN_HIGH);
    return n;
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
        tide__timer_start(&c->timer, settings(c)->shutdown_timeout) != 0)
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

/* Encrypts len bytes of plaintext. Returns the bytes the engine took (all of them unless
 * it asked for a retry: then retry_len is set and the rest is the caller's to queue) or
 * a negative code. */
static int encrypt(tide__tls *c, const unsigned char *data, size_t len, size_t *used) {
    *used = 0;
    while (*used < len) {
        size_t chunk = c->retry_len ? c->retry_len : len - *used;
        if (chunk > len - *used)
            chunk = len - *used;
        if (chunk > TLS_CHUNK)
            chunk = TLS_CHUNK;
        int r = ENGINE->write(c->eng, data + *used, chunk);
        if (r > 0) {
            c->retry_len = 0;
            *used += (size_t)r;
            continue;
        }
        if (r == TIDE__TLS_TICKET)
            continue;
        if (c->bio_error != 0)
            return c->bio_error;
        if (r == TIDE__TLS_AGAIN) {
            /* The engine must see the same length again. */
            c->retry_len = chunk;
            return 0;
        }
        return r;
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

static void hs_done(tide__tls *c) {
    tide__timer_stop(&c->timer);
    c->phase = PH_OPEN;
    c->handshake_done = true;
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

/* A server that fails on the client's first flight before sending anything: an engine
 * may stay silent on such failures (mbedTLS 2.28 on a ClientHello spread over several
 * records or longer than its input buffer), and an alert from the engine would carry
 * no protocol version yet. A fatal alert in a plain TLS 1.2 record tells the client
 * that the handshake failed, instead of a bare close; the log says why. */
static void alert_in_clear(tide__tls *c, int err) {
    const char *why = NULL;
    /* The length the ClientHello says it has: a handshake record (22) holding a
     * ClientHello (1), its length in three bytes. */
    size_t hello_len = 0;
    if (c->received >= sizeof(c->head) && c->head[0] == 22 && c->head[5] == 1)
        hello_len = (size_t)c->head[6] << 16 | (size_t)c->head[7] << 8 | c->head[8];
    int description = ENGINE->first_flight_alert(err, hello_len, &why);
    const unsigned char alert[] = {
        21 /* alert */, 3, 3, 0, 2, 2 /* fatal */, (unsigned char)description};
    if (c->lower != NULL && tide_transport_write(c->lower, alert, sizeof(alert)) == 0)
        c->sent += sizeof(alert);
    if (why != NULL) {
        char text[256];
        tide__log(c->loop, TIDE_LOG_WARNING,
                  "TLS server: refused a client (its ClientHello: %zu bytes): %s (%s)", hello_len,
                  why, tide_strerror_r(err, text, sizeof(text)));
    }
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
        int rc = ENGINE->conn_setup(c->eng);
        if (rc != 0) {
            hs_fail(c, rc, false);
            return;
        }
        c->ssl_ready = true;
    }
    for (;;) {
        int ret = ENGINE->handshake(c->eng);
        if (ret == 0) {
            hs_done(c);
            return;
        }
        if (ret == TIDE__TLS_TICKET)
            continue;
        if (c->bio_error != 0) {
            hs_fail(c, c->bio_error, false);
        } else if (ret == TIDE__TLS_AGAIN) {
            if (c->lower_eof)
                hs_fail(c, c->lower_error ? c->lower_error : TIDE_ECONNRESET, false);
        } else {
            /* The engine queued an alert: close (flushing it) rather than abort. */
            if (settings(c)->server && c->sent == 0)
                alert_in_clear(c, ret);
            hs_fail(c, ret, true);
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

/* What ended a run of reads (r <= 0). Returns true when reading may go on. */
static bool read_end(tide__tls *c, int r) {
    if (r == TIDE__TLS_TICKET || r == TIDE__TLS_HELD)
        return true;
    if (r == TIDE__TLS_CLOSED) {
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
    if (r == TIDE__TLS_AGAIN) {
        /* The lower ended without close_notify: truncation (or its own error). */
        if (c->lower_eof)
            fatal(c, c->lower_error ? c->lower_error : TIDE_ETLS_TRUNCATED, false);
        return false;
    }
    if (r == 0) {
        fatal(c, TIDE_ETLS_TRUNCATED, false);
        return false;
    }
    fatal(c, r, true);
    return false;
}

static bool more_pending(tide__tls *c) { return c->in.len > 0 || ENGINE->has_pending(c->eng); }

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
            size_t avail = ENGINE->bytes_ready(c->eng);
            if (avail == 0) {
                /* Decrypt the next record without taking any of it, so that the
                 * protocol is asked for memory only when there is plaintext. */
                unsigned char none;
                int r = ENGINE->read(c->eng, &none, 0);
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
            int r = ENGINE->read(c->eng, buf, len);
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
            r = ENGINE->read(c->eng, scratch + got, size - got);
            if (r > 0)
                got += (size_t)r;
            else if (r != TIDE__TLS_TICKET)
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
        int r = ENGINE->read(c->eng, scratch, size);
        if (r > 0 || r == TIDE__TLS_HELD)
            continue;
        if (r == TIDE__TLS_TICKET) {
            if (!c->linger)
                continue;
            end_wait(c);
        } else if (r == TIDE__TLS_CLOSED || (r == TIDE__TLS_AGAIN && c->lower_eof)) {
            end_wait(c);
        } else if (r != TIDE__TLS_AGAIN) {
            fatal(c, err_of(c, r == 0 ? TIDE_ETLS : r), false);
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
    /* Room for a record, and a chunk only once a read filled all the room it had (the
     * peer sends in bulk): a handshake then never needs more than one small buffer,
     * where a chunk for every read cost a 64 KiB block and, with a few bytes of a
     * record left in it, a 128 KiB one (an mmap and munmap per connection). */
    size_t want = c->in_filled ? TLS_IN_CHUNK : TLS_IN_ROOM;
    if (sizehint > want)
        want = sizehint;
    if (tide__buf_reserve(&c->in, want, TLS_IN_ROOM, NULL) != 0) {
        *len = 0;
        return NULL; /* the lower fails with TIDE_ENOBUFS */
    }
    *len = c->in_offered = tide__buf_room(&c->in);
    return tide__buf_end(&c->in);
}

static void lower_buffer_updated(tide_protocol_t *p, size_t nbytes) {
    tide__tls *c = of_lower(p);
    enter(c);
    if (c->phase == PH_DONE || c->peer_notified) {
        /* Nobody reads any more, or the bytes follow the peer's close_notify. */
    } else {
        if (c->received < sizeof(c->head)) {
            size_t n =
                sizeof(c->head) - c->received < nbytes ? sizeof(c->head) - c->received : nbytes;
            memcpy(c->head + c->received, tide__buf_end(&c->in), n);
        }
        c->in.len += nbytes;
        c->received += nbytes;
        c->in_filled = nbytes == c->in_offered;
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
    if (tide__timer_start(&c->timer, settings(c)->shutdown_timeout) != 0) {
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
        r = ENGINE->close_notify(c->eng);
    } while (r == TIDE__TLS_TICKET);
    if (c->bio_error != 0) {
        fatal(c, c->bio_error, false);
        return;
    }
    bool ticket_due = !settings(c)->server && ENGINE->awaits_ticket(c->eng);
    if ((settings(c)->wait_close_notify || ticket_due) && !c->peer_notified && !c->lower_eof) {
        c->wait_notify = true;
        c->linger = !settings(c)->wait_close_notify;
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
             settings(c)->server ? "server" : "client", names[c->phase],
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
    if (c->eng)
        ENGINE->conn_free(c->eng);
    tide__buf_free(&c->in);
    free(c->hostname);
    tide_tls_config_unref(c->config);
    free(c);
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
        params->handshake_timeout > 0 ? params->handshake_timeout : cfg->s.handshake_timeout;
    if ((rc = ENGINE->conn_new(cfg->engine, c, &c->eng)) != 0)
        goto fail;
    if (cfg->s.server) {
        /* A server sets up when the client's first bytes come (handshake_step). */
        *out = c;
        return 0;
    }
    /* A client speaks first and sets up now. */
    if ((rc = ENGINE->conn_setup(c->eng)) != 0)
        goto fail;
    c->ssl_ready = true;
    if (params->server_hostname && params->server_hostname[0]) {
        c->hostname = strdup(params->server_hostname);
        if (c->hostname == NULL) {
            rc = TIDE_ENOMEM;
            goto fail;
        }
    }
    /* The engine decides what the name means for SNI and verification. */
    if (c->hostname && (rc = ENGINE->conn_set_peer(c->eng, c->hostname)) != 0)
        goto fail;
    if (params->session && (rc = ENGINE->conn_offer_session(c->eng, params->session)) != 0)
        goto fail;
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
    if (params->config->s.server)
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

int tide__tls_wrap_fd(tide_loop_t *loop, int fd, const tide__tls_params *params,
                      tide__tls_handshake_cb cb, void *arg, tide_transport_t **socket_out,
                      tide__tls **tls_out) {
    tide__tls *tls = NULL;
    int rc = 0;
    *tls_out = NULL;
    if (params != NULL && (rc = tide__tls_new(loop, params, cb, arg, &tls)) < 0)
        return rc;
    rc = tide__socket_transport_new(loop, fd, tls ? &tls->lower_proto : NULL, socket_out);
    if (rc < 0) {
        tide__tls_discard(tls);
        return rc;
    }
    *tls_out = tls;
    return 0;
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
    tide__tls_state st;
    memset(&st, 0, sizeof(st));
    ENGINE->state(c->eng, &st);
    memset(info, 0, sizeof(*info));
    info->version = st.version;
    info->cipher = st.cipher;
    info->alpn = st.alpn;
    info->server_name = settings(c)->server ? st.sni : c->hostname;
    info->resumed = st.resumed;
    info->server_side = settings(c)->server;
    info->peer_verified = st.peer_verified && settings(c)->verify;
    return 0;
}

int tide_tls_get_peer_certificate(const tide_transport_t *transport, tide_tls_cert_t *cert) {
    tide__tls *c = of_transport(transport);
    if (c == NULL || cert == NULL)
        return TIDE_EINVAL;
    if (!c->handshake_done)
        return TIDE_ENOTCONN;
    return ENGINE->peer_certificate(c->eng, cert);
}

int tide_tls_get_session(const tide_transport_t *transport, tide_tls_session_t **session) {
    tide__tls *c = of_transport(transport);
    if (c == NULL || session == NULL || settings(c)->server)
        return TIDE_EINVAL;
    if (!c->handshake_done)
        return TIDE_ENOTCONN;
    return ENGINE->get_session(c->eng, session);
}
