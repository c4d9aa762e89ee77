/* libFuzzer target fuzz_tls_session: tide's TLS transport after a completed handshake,
 * where fuzz_tls_server/client never get (their peer is the input itself, so no
 * handshake ever completes). The states after it are where connections end in
 * unusual orders: an application that does not read, writes queued behind a peer that
 * does not read, a transport reset beneath, close_notify racing with data.
 *
 * Setup: tide's side (server or client, from the input's first byte) is started with
 * tide_loop_start_tls over one end of the in-memory transport pair; on the other end
 * a recording protocol keeps what tide wrote, and a peer driven with mbedTLS directly
 * reads it from there through its BIO and writes through tide_transport_write. A real
 * handshake completes first; then the rest of the input is a script of operations on
 * both sides (see `enum op`), with the loop run and the peer's pending input read
 * after each one. The loop's clock is manual, so deadlines pass only when the script
 * (or the end) advances it.
 *
 * Invariants checked (abort() on any violation):
 * - tide's application protocol gets connection_made once, then connection_lost
 *   exactly once, and no callback after it; pause_writing and resume_writing
 *   alternate, starting with pause; once the peer has read everything, writes are not
 *   still paused with the buffer at or below the low-water mark;
 * - what it receives is, in order, a prefix of the application data the peer sent;
 *   after the peer sent a record with a flipped byte, or its close_notify, nothing
 *   sent from there on is delivered (a corrupted record ends the connection);
 * - what the peer decrypts is a prefix of what the application wrote;
 * - at the end (the peer reads everything, every deadline passes, the peer sends
 *   close_notify and closes), both ends got connection_lost without the application
 *   doing anything but resuming its reading (and not even that while its writes are
 *   paused: it waits for resume_writing, as an echo server does); a full
 *   tide_loop_run(TIDE_RUN_DEFAULT) returns (under a real-time watchdog, so that a
 *   leftover that keeps the loop alive is reported, not a hang); and
 *   tide_loop_close() returns 0.
 *
 * The certificate, tide's configurations and the peer's mbedTLS configurations are
 * made once, in LLVMFuzzerInitialize, with one full handshake per configuration whose
 * session every input then resumes (see save_sessions). TIDE_FUZZ_TRACE=1 prints the
 * script as it runs. Single-threaded: one loop and one peer per input, in file-level
 * state because the BIO and protocol callbacks reach it. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cache.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>
#if MBEDTLS_VERSION_NUMBER >= 0x03000000 && defined(MBEDTLS_PSA_CRYPTO_C)
#include <psa/crypto.h>
#endif

#include "core/buf.h"
#include "fuzz.h"
#include "fuzz_cert.h"
#include "tide.h"
#include "tide/ev.h"
#include "tide/testing.h"

#define HANDSHAKE_TIMEOUT 10.0
#define SHUTDOWN_TIMEOUT 5.0
/* Most application bytes either side sends in one input: enough to fill every window
 * and watermark, small enough to keep an execution fast. */
#define MAX_STREAM (256 * 1024)

/* ---- configurations, made once --------------------------------------------------------- */

enum { SIDE_CLIENT, SIDE_SERVER };            /* which side tide is */
static tide_tls_config_t *tide_configs[2][2]; /* [side][variant] */
static mbedtls_ssl_config peer_configs[2];    /* [side tide is] */
static mbedtls_x509_crt peer_crt;
static mbedtls_pk_context peer_key;
static mbedtls_ssl_cache_context peer_cache; /* the peer server's, for resumption */

static void make_configs(void) {
    static char crt[2048], key[512];
    static const char *const alpn[] = {"h2", "http/1.1"};
    mbedtls_pk_init(&peer_key);
    fuzz_make_cert(&peer_key, crt, sizeof(crt), key, sizeof(key));
    mbedtls_x509_crt_init(&peer_crt);
    REQUIRE(mbedtls_x509_crt_parse(&peer_crt, (const unsigned char *)crt, strlen(crt) + 1) == 0);

    for (int side = 0; side < 2; side++) {
        for (int variant = 0; variant < 2; variant++) {
            tide_tls_config_t *c;
            REQUIRE((side == SIDE_SERVER ? tide_tls_config_new_server(&c)
                                         : tide_tls_config_new_client(&c)) == 0);
            REQUIRE(tide_tls_config_set_timeouts(c, HANDSHAKE_TIMEOUT, SHUTDOWN_TIMEOUT) == 0);
            if (side == SIDE_SERVER) {
                REQUIRE(tide_tls_config_set_cert_mem(c, crt, strlen(crt), key, strlen(key), NULL) ==
                        0);
                /* The sessions made in LLVMFuzzerInitialize must outlive a long run
                 * (the lifetime is real time); and no input adds one, since a cache
                 * that grows makes libFuzzer run its costly leak check after it. */
                REQUIRE(tide_tls_config_set_session_cache(c, true, 7 * 86400.0) == 0);
            } else if (variant == 0)
                REQUIRE(tide_tls_config_load_ca_mem(c, crt, strlen(crt)) == 0);
            else
                REQUIRE(tide_tls_config_set_verify_peer(c, false) == 0);
            if (variant == 1) {
                /* The other shutdown: close() waits for the peer's close_notify. */
                REQUIRE(tide_tls_config_set_wait_close_notify(c, true) == 0);
                REQUIRE(tide_tls_config_set_alpn(c, alpn, 2) == 0);
            }
            tide_configs[side][variant] = c;
        }
    }

    /* The peer is the other side: a client verifying tide's certificate, or a server
     * presenting the same certificate. */
    for (int side = 0; side < 2; side++) {
        mbedtls_ssl_config *pc = &peer_configs[side];
        mbedtls_ssl_config_init(pc);
        int endpoint = side == SIDE_SERVER ? MBEDTLS_SSL_IS_CLIENT : MBEDTLS_SSL_IS_SERVER;
        REQUIRE(mbedtls_ssl_config_defaults(pc, endpoint, MBEDTLS_SSL_TRANSPORT_STREAM,
                                            MBEDTLS_SSL_PRESET_DEFAULT) == 0);
        mbedtls_ssl_conf_rng(pc, mbedtls_ctr_drbg_random, fuzz_rng());
        if (side == SIDE_SERVER) {
            mbedtls_ssl_conf_authmode(pc, MBEDTLS_SSL_VERIFY_REQUIRED);
            mbedtls_ssl_conf_ca_chain(pc, &peer_crt, NULL);
        } else {
            REQUIRE(mbedtls_ssl_conf_own_cert(pc, &peer_crt, &peer_key) == 0);
            mbedtls_ssl_cache_init(&peer_cache);
            mbedtls_ssl_cache_set_timeout(&peer_cache, 0); /* never expires */
            mbedtls_ssl_conf_session_cache(pc, &peer_cache, mbedtls_ssl_cache_get,
                                           mbedtls_ssl_cache_set);
        }
    }
}

/* Sessions to resume, one per configuration, from a full handshake made at start-up:
 * the peer client's (tide is the server) and tide's client's. A resumed handshake has
 * no public-key operation, which otherwise costs most of an input. */
static mbedtls_ssl_session peer_sessions[2];
static bool have_peer_session[2];
static tide_tls_session_t *tide_sessions[2];

/* ---- bytes kept ---------------------------------------------------------------------------- */

/* Appends to one of tide's own growable buffers (core/buf.h). */
static void keep(tide__buf *b, const void *data, size_t n) {
    REQUIRE(tide__buf_reserve(b, n, 4096, NULL) == 0);
    tide__buf_put(b, data, n);
}

/* The application data both sides send: byte i of a stream depends on i (and on the
 * direction), so a byte delivered twice, out of order or from the wrong direction
 * does not compare equal by chance. */
static void pattern(unsigned char *out, size_t from, size_t n, unsigned salt) {
    for (size_t i = 0; i < n; i++) {
        size_t k = from + i;
        out[i] = (unsigned char)(k * 7u + (k >> 8) * 13u + (k >> 16) + salt);
    }
}

/* ---- tide's side: the application protocol ------------------------------------------------ */

typedef struct app {
    tide_protocol_t base;
    tide_transport_t *t; /* the TLS transport once the handshake is done; NULL once lost */
    int made, lost, handshakes, hs_status;
    bool buffered;         /* a buffered protocol (get_buffer / buffer_updated) */
    bool echo;             /* pauses reading while its writes are paused, as echo_server does */
    bool script_paused;    /* the script paused its reading */
    bool write_paused;     /* pause_writing came, resume_writing not yet */
    bool ending;           /* the final phase: lets go of script_paused once writes flow */
    unsigned char buf[37]; /* a buffered protocol's memory: small and odd, to split records */
    size_t received;       /* bytes delivered */
    tide__buf written;     /* what it wrote while its transport accepted writes */
} app;

/* ---- the peer: a recording protocol below, mbedTLS above ---------------------------------- */

typedef struct peer {
    tide_protocol_t base;
    tide_transport_t *t; /* its end of the memory pair; NULL once lost */
    int made, lost;
    bool eof;     /* tide's side sent EOF (or reset) on the raw transport */
    tide__buf rx; /* ciphertext from tide not yet taken by mbedTLS */
    mbedtls_ssl_context ssl;
    bool hs_done;     /* its handshake completed */
    bool failed;      /* mbedTLS reported an error: this peer no longer uses it */
    bool got_notify;  /* tide's close_notify arrived */
    bool sent_notify; /* it sent its own close_notify */
    int flip;         /* -1, or where to flip a byte of the next record sent */
    unsigned char flip_mask;
    tide__buf sent;  /* application data mbedTLS accepted, in order */
    size_t bound;    /* most of `sent` that tide may ever deliver */
    size_t received; /* tide's application data decrypted */
} peer;

static struct {
    tide_loop_t *loop;
    app app;
    peer peer;
} S;

/* TIDE_FUZZ_TRACE=1: one line per operation with the state after it, for replays. */
static bool tracing;

static void trace(const char *what, unsigned arg, unsigned b) {
    if (!tracing)
        return;
    const app *a = &S.app;
    const peer *p = &S.peer;
    fprintf(stderr,
            "%-12s arg %2u b %3u | app: %s%s%s recv %zu wrote %zu queued %zu | peer: %s%s%s "
            "sent %zu recv %zu\n",
            what, arg, b, a->lost ? "lost " : "open ", a->script_paused ? "paused " : "",
            a->write_paused ? "write-paused " : "", a->received, a->written.len,
            a->t ? tide_transport_get_write_buffer_size(a->t) : 0, p->lost ? "lost " : "open ",
            p->failed ? "failed " : "", p->got_notify ? "notified " : "", p->sent.len, p->received);
}

static void app_sync_reading(app *a) {
    if (a->t == NULL)
        return;
    if (a->script_paused || (a->echo && a->write_paused))
        tide_transport_pause_reading(a->t);
    else
        tide_transport_resume_reading(a->t);
}

static void app_made(tide_protocol_t *self, tide_transport_t *t) {
    app *a = TIDE_CONTAINER_OF(self, app, base);
    (void)t; /* the memory transport: start_tls takes it over */
    a->made++;
    REQUIRE(a->made == 1);
}

static void app_data(app *a, const void *data, size_t len) {
    const peer *p = &S.peer;
    REQUIRE(a->made == 1 && a->lost == 0 && a->handshakes == 1);
    /* Only what the peer sent, in order, and nothing from a corrupted record on. */
    REQUIRE(a->received + len <= p->sent.len);
    REQUIRE(a->received + len <= p->bound);
    REQUIRE(memcmp(tide__buf_begin(&p->sent) + a->received, data, len) == 0);
    a->received += len;
}

static void app_data_received(tide_protocol_t *self, const void *data, size_t len) {
    app_data(TIDE_CONTAINER_OF(self, app, base), data, len);
}

static void *app_get_buffer(tide_protocol_t *self, size_t sizehint, size_t *len) {
    app *a = TIDE_CONTAINER_OF(self, app, base);
    (void)sizehint;
    REQUIRE(a->lost == 0);
    *len = sizeof(a->buf);
    return a->buf;
}

static void app_buffer_updated(tide_protocol_t *self, size_t nbytes) {
    app *a = TIDE_CONTAINER_OF(self, app, base);
    REQUIRE(nbytes > 0 && nbytes <= sizeof(a->buf));
    app_data(a, a->buf, nbytes);
}

static bool app_eof(tide_protocol_t *self) {
    app *a = TIDE_CONTAINER_OF(self, app, base);
    REQUIRE(a->made == 1 && a->lost == 0 && a->handshakes == 1);
    return false;
}

static void app_lost(tide_protocol_t *self, int status) {
    app *a = TIDE_CONTAINER_OF(self, app, base);
    (void)status;
    REQUIRE(a->made == 1 && a->handshakes == 1); /* the handshake's cb comes first */
    a->lost++;
    REQUIRE(a->lost == 1);
    a->t = NULL;
}

static void app_pause_writing(tide_protocol_t *self) {
    app *a = TIDE_CONTAINER_OF(self, app, base);
    REQUIRE(a->lost == 0 && !a->write_paused);
    a->write_paused = true;
    app_sync_reading(a);
}

static void app_resume_writing(tide_protocol_t *self) {
    app *a = TIDE_CONTAINER_OF(self, app, base);
    REQUIRE(a->lost == 0 && a->write_paused);
    a->write_paused = false;
    if (a->ending)
        a->script_paused = false;
    app_sync_reading(a);
}

static const tide_protocol_ops_t app_ops = {.size = TIDE_PROTOCOL_OPS_SIZE,
                                            .connection_made = app_made,
                                            .data_received = app_data_received,
                                            .eof_received = app_eof,
                                            .connection_lost = app_lost,
                                            .pause_writing = app_pause_writing,
                                            .resume_writing = app_resume_writing};

static const tide_protocol_ops_t app_buffered_ops = {.size = TIDE_PROTOCOL_OPS_SIZE,
                                                     .connection_made = app_made,
                                                     .eof_received = app_eof,
                                                     .connection_lost = app_lost,
                                                     .pause_writing = app_pause_writing,
                                                     .resume_writing = app_resume_writing,
                                                     .get_buffer = app_get_buffer,
                                                     .buffer_updated = app_buffer_updated};

static void on_handshake(tide_loop_t *loop, int status, tide_transport_t *tls, void *arg) {
    app *a = arg;
    (void)loop;
    REQUIRE(a->lost == 0);
    a->handshakes++;
    a->hs_status = status;
    REQUIRE((status == 0) == (tls != NULL));
    a->t = tls;
}

static void peer_made(tide_protocol_t *self, tide_transport_t *t) {
    peer *p = TIDE_CONTAINER_OF(self, peer, base);
    p->made++;
    p->t = t;
}

static void peer_data_received(tide_protocol_t *self, const void *data, size_t len) {
    peer *p = TIDE_CONTAINER_OF(self, peer, base);
    keep(&p->rx, data, len);
}

/* Keeps its end open for writing after tide's EOF: when the peer answers or closes is
 * the script's choice, as it is a real peer's. */
static bool peer_eof(tide_protocol_t *self) {
    peer *p = TIDE_CONTAINER_OF(self, peer, base);
    p->eof = true;
    return true;
}

static void peer_lost(tide_protocol_t *self, int status) {
    peer *p = TIDE_CONTAINER_OF(self, peer, base);
    (void)status;
    REQUIRE(p->made == 1);
    p->lost++;
    REQUIRE(p->lost == 1);
    p->t = NULL;
    p->eof = true;
}

static const tide_protocol_ops_t peer_ops = {.size = TIDE_PROTOCOL_OPS_SIZE,
                                             .connection_made = peer_made,
                                             .data_received = peer_data_received,
                                             .eof_received = peer_eof,
                                             .connection_lost = peer_lost};

/* mbedTLS's output goes straight into the memory transport, which takes everything
 * (it queues what the window does not hold), so each call is one whole record or
 * flight and "the next record" is the next call. */
static int bio_send(void *ctx, const unsigned char *buf, size_t len) {
    peer *p = ctx;
    if (p->t == NULL || tide_transport_is_closing(p->t))
        return MBEDTLS_ERR_NET_CONN_RESET;
    unsigned char *copy = NULL;
    if (p->flip >= 0 && len > 0) {
        copy = malloc(len);
        REQUIRE(copy != NULL);
        memcpy(copy, buf, len);
        copy[(size_t)p->flip % len] ^= p->flip_mask;
        p->flip = -1;
        /* Nothing from this record on may reach tide's application: its MAC fails
         * (or its header no longer parses), and that ends the connection. */
        if (p->bound > p->sent.len)
            p->bound = p->sent.len;
        buf = copy;
    }
    int rc = tide_transport_write(p->t, buf, len);
    free(copy);
    return rc == 0 ? (int)len : MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len) {
    peer *p = ctx;
    if (p->rx.len == 0)
        return p->eof ? 0 : MBEDTLS_ERR_SSL_WANT_READ;
    size_t n = len < p->rx.len ? len : p->rx.len;
    memcpy(buf, tide__buf_begin(&p->rx), n);
    tide__buf_consume(&p->rx, n);
    return (int)n;
}

static bool peer_can_send(const peer *p) {
    return p->hs_done && !p->failed && p->t != NULL && !tide_transport_is_closing(p->t);
}

/* Decrypts whatever tide sent that arrived, checking it against what the application
 * wrote. An error (an alert, EOF, a bad record) ends the peer's use of mbedTLS. */
static void peer_read(peer *p) {
    while (p->hs_done && !p->failed && !p->got_notify) {
        unsigned char buf[4096];
        int r = mbedtls_ssl_read(&p->ssl, buf, sizeof(buf));
        if (r > 0) {
            const app *a = &S.app;
            REQUIRE(p->received + (size_t)r <= a->written.len);
            REQUIRE(memcmp(tide__buf_begin(&a->written) + p->received, buf, (size_t)r) == 0);
            p->received += (size_t)r;
            continue;
        }
        if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE)
            return;
#if defined(MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
        if (r == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
            continue;
#endif
        if (r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
            p->got_notify = true;
        else
            p->failed = true;
    }
}

static void peer_send(peer *p, size_t n) {
    if (!peer_can_send(p) || p->sent.len >= MAX_STREAM)
        return;
    if (n > MAX_STREAM - p->sent.len)
        n = MAX_STREAM - p->sent.len;
    unsigned char *data = malloc(n);
    REQUIRE(data != NULL);
    pattern(data, p->sent.len, n, 0);
    /* mbedTLS takes at most one record per call; the BIO never says "later", so any
     * result but a count is the end of this peer. */
    for (size_t off = 0; off < n;) {
        int r = mbedtls_ssl_write(&p->ssl, data + off, n - off);
        if (r <= 0) {
            p->failed = true;
            break;
        }
        keep(&p->sent, data + off, (size_t)r);
        off += (size_t)r;
    }
    free(data);
}

static void peer_close_notify(peer *p) {
    if (!peer_can_send(p) || p->sent_notify)
        return;
    p->sent_notify = true;
    /* Whatever the peer sends after close_notify must never be delivered. */
    if (p->bound > p->sent.len)
        p->bound = p->sent.len;
    if (mbedtls_ssl_close_notify(&p->ssl) != 0)
        p->failed = true;
}

/* ---- running ---------------------------------------------------------------------------- */

/* A few loop iterations, the peer reading after each (it reads as soon as bytes
 * arrive, unless its raw end is paused: then they wait in the memory transport). */
static void steps(int n) {
    for (int i = 0; i < n; i++) {
        REQUIRE(tide_loop_run(S.loop, TIDE_RUN_NOWAIT) == 0);
        peer_read(&S.peer);
    }
}

/* Pushes the clock past every deadline, in steps (a timeout may start another). */
static void pass_deadlines(void) {
    for (int i = 0; i < 4; i++) {
        REQUIRE(tide_loop_advance(S.loop, HANDSHAKE_TIMEOUT + SHUTDOWN_TIMEOUT + 1) >= 0);
        steps(4);
    }
}

static void handshake(void) {
    peer *p = &S.peer;
    app *a = &S.app;
    /* Small windows move a flight in pieces, one per iteration: allow many. */
    for (int i = 0; i < 4000 && !(p->hs_done && a->handshakes == 1); i++) {
        REQUIRE(tide_loop_run(S.loop, TIDE_RUN_NOWAIT) == 0);
        if (!p->hs_done) {
            int r = mbedtls_ssl_handshake(&p->ssl);
            if (r == 0)
                p->hs_done = true;
            else if (r != MBEDTLS_ERR_SSL_WANT_READ && r != MBEDTLS_ERR_SSL_WANT_WRITE) {
                fprintf(stderr, "the peer's handshake failed: -0x%04x\n", (unsigned)-r);
                abort();
            }
        }
    }
    /* An honest peer and no time passing: the handshake must succeed. */
    REQUIRE(p->hs_done);
    REQUIRE(a->handshakes == 1 && a->hs_status == 0 && a->t != NULL);
}

/* tide_loop_run(TIDE_RUN_DEFAULT) returns once nothing holds the libev loop (tide
 * takes a reference per open transport and while callbacks are ready). With the manual
 * clock no timer of tide's can end a run that blocks, so the run gets a watchdog: a
 * libev timer in real time, unreferenced so that it does not keep the loop alive
 * itself, which breaks the run; then what is still open is listed and the input fails
 * at once rather than at libFuzzer's -timeout. */
static void loud_log(tide_loop_t *loop, tide_log_level_t level, const char *msg, void *arg) {
    (void)loop, (void)level, (void)arg;
    fprintf(stderr, "tide: %s\n", msg);
}

static bool watchdog_fired;

static void watchdog(struct ev_loop *ev, ev_timer *w, int revents) {
    (void)w, (void)revents;
    watchdog_fired = true;
    ev_break(ev, EVBREAK_ALL);
}

static void run_to_completion(void) {
    struct ev_loop *ev = tide_loop_get_ev(S.loop);
    ev_timer w;
    ev_timer_init(&w, watchdog, 1.0, 0.0);
    ev_now_update(ev);
    ev_timer_start(ev, &w);
    ev_unref(ev);
    watchdog_fired = false;
    REQUIRE(tide_loop_run(S.loop, TIDE_RUN_DEFAULT) == 0);
    ev_ref(ev); /* libev's rule: re-reference an unreferenced watcher before stopping it */
    ev_timer_stop(ev, &w);
    if (watchdog_fired) {
        fprintf(stderr, "tide_loop_run(TIDE_RUN_DEFAULT) would never return\n");
        tide_loop_set_log_handler(S.loop, loud_log, NULL);
        (void)tide_loop_close(S.loop); /* lists what is still open */
        abort();
    }
}

/* The script. Each operation is one byte, kind in the low 4 bits and an argument in
 * the high 4; some take the following byte too (`b`, 0 past the end). */
enum op {
    OP_PEER_SEND,   /* the peer sends (b + 1) << (arg % 8) bytes of application data */
    OP_PEER_RAW,    /* the peer writes the next b bytes of the input as they are */
    OP_PEER_FLIP,   /* the peer flips bit arg % 8 of byte b + 256 * (arg / 8) of its next record */
    OP_PEER_NOTIFY, /* the peer sends close_notify */
    OP_APP_WRITE,   /* tide's application writes (b + 1) << (arg % 8) bytes */
    OP_APP_PAUSE,   /* tide's application pauses reading */
    OP_APP_RESUME,  /* ... and resumes */
    OP_APP_CLOSE,   /* tide's application closes */
    OP_APP_ABORT,   /* ... or aborts */
    OP_PEER_STOP,   /* the peer's raw end stops reading: tide's writes fill the window */
    OP_PEER_START,  /* ... and reads again */
    OP_RESET,       /* the memory pair fails (reset, or broken pipe when arg is odd) */
    OP_PEER_END,    /* the peer's raw end: write_eof, close or abort (arg % 3) */
    OP_ADVANCE,     /* the clock moves arg * 0.75 s */
    OP_APP_LIMITS,  /* tide's application sets watermarks: high (b + 1) * 16 << (arg % 8) */
    OP_APP_WRITE_EOF, /* tide's application half-closes (TLS has no half-close) */
};

static void app_write(app *a, size_t n) {
    if (a->t == NULL || tide_transport_is_closing(a->t) || a->written.len >= MAX_STREAM)
        return;
    if (n > MAX_STREAM - a->written.len)
        n = MAX_STREAM - a->written.len;
    unsigned char *data = malloc(n);
    REQUIRE(data != NULL);
    pattern(data, a->written.len, n, 0x5a);
    if (tide_transport_write(a->t, data, n) == 0)
        keep(&a->written, data, n);
    free(data);
}

static const char *const op_names[16] = {"peer-send", "peer-raw",  "peer-flip",  "peer-notify",
                                         "app-write", "app-pause", "app-resume", "app-close",
                                         "app-abort", "peer-stop", "peer-start", "reset",
                                         "peer-end",  "advance",   "app-limits", "app-wr-eof"};

static size_t run_op(const uint8_t *data, size_t size, size_t i) {
    app *a = &S.app;
    peer *p = &S.peer;
    unsigned op = data[i] & 15, arg = data[i] >> 4;
    i++;
    unsigned b = i < size ? data[i] : 0;
    switch ((enum op)op) {
    case OP_PEER_SEND:
        peer_send(p, ((size_t)b + 1) << (arg % 8));
        return i + 1;
    case OP_PEER_RAW: {
        size_t start = i + 1 < size ? i + 1 : size;
        size_t n = b < size - start ? b : size - start;
        if (n > 0 && p->t != NULL)
            (void)tide_transport_write(p->t, data + start, n);
        return start + n;
    }
    case OP_PEER_FLIP:
        p->flip = (int)(b + 256 * (arg / 8));
        p->flip_mask = (unsigned char)(1u << (arg % 8));
        return i + 1;
    case OP_PEER_NOTIFY:
        peer_close_notify(p);
        break;
    case OP_APP_WRITE:
        app_write(a, ((size_t)b + 1) << (arg % 8));
        return i + 1;
    case OP_APP_PAUSE:
    case OP_APP_RESUME:
        a->script_paused = op == OP_APP_PAUSE;
        app_sync_reading(a);
        break;
    case OP_APP_CLOSE:
        tide_transport_close(a->t);
        break;
    case OP_APP_ABORT:
        tide_transport_abort(a->t);
        break;
    case OP_PEER_STOP:
        tide_transport_pause_reading(p->t);
        break;
    case OP_PEER_START:
        tide_transport_resume_reading(p->t);
        break;
    case OP_RESET:
        if (p->t != NULL)
            REQUIRE(tide_memory_transport_inject_error(p->t, arg % 2 ? TIDE_EPIPE
                                                                     : TIDE_ECONNRESET) == 0);
        break;
    case OP_PEER_END:
        if (arg % 3 == 0 && p->t != NULL && !tide_transport_is_closing(p->t))
            (void)tide_transport_write_eof(p->t);
        else if (arg % 3 == 1)
            tide_transport_close(p->t);
        else if (arg % 3 == 2)
            tide_transport_abort(p->t);
        break;
    case OP_ADVANCE:
        REQUIRE(tide_loop_advance(S.loop, arg * 0.75) >= 0);
        break;
    case OP_APP_LIMITS:
        if (a->t != NULL) {
            long high = ((long)b + 1) * 16 << (arg % 8);
            (void)tide_transport_set_write_buffer_limits(a->t, high, high / 4);
        }
        return i + 1;
    case OP_APP_WRITE_EOF:
        if (a->t != NULL)
            (void)tide_transport_write_eof(a->t);
        break;
    }
    return i;
}

/* Opens a connection and completes its handshake. flags is the input's first byte
 * (see LLVMFuzzerTestOneInput); resume: offer the session saved for the
 * configuration, when there is one. */
static void session_start(unsigned flags, bool resume) {
    static const size_t windows[4] = {256 * 1024, 16 * 1024, 1024, 100};
    int side = flags & 1 ? SIDE_SERVER : SIDE_CLIENT;
    int variant = (flags >> 1) & 1;

    memset(&S, 0, sizeof(S));
    app *a = &S.app;
    peer *p = &S.peer;
    a->buffered = flags & 32;
    a->base.ops = a->buffered ? &app_buffered_ops : &app_ops;
    a->echo = flags & 4;
    p->base.ops = &peer_ops;
    p->flip = -1;
    p->bound = SIZE_MAX;
    mbedtls_ssl_init(&p->ssl);
    REQUIRE(mbedtls_ssl_setup(&p->ssl, &peer_configs[side]) == 0);
    if (side == SIDE_SERVER) {
        REQUIRE(mbedtls_ssl_set_hostname(&p->ssl, "localhost") == 0);
        if (resume && have_peer_session[variant])
            REQUIRE(mbedtls_ssl_set_session(&p->ssl, &peer_sessions[variant]) == 0);
    }
    mbedtls_ssl_set_bio(&p->ssl, p, bio_send, bio_recv, NULL);

    REQUIRE(tide_loop_new(&S.loop) == 0);
    tide_loop_set_log_handler(S.loop, fuzz_quiet_log, NULL);
    REQUIRE(tide_loop_use_manual_clock(S.loop, 1000) == 0);
    tide_transport_t *lower;
    REQUIRE(tide_memory_pair_new(S.loop, &p->base, &a->base, NULL, &lower) == 0);
    steps(2);
    REQUIRE(p->made == 1 && a->made == 1);
    /* Set while tide's end is still ours: after start_tls it belongs to the TLS layer,
     * which may free it. */
    REQUIRE(tide_memory_transport_set_window(lower, windows[(flags >> 3) & 3]) == 0);
    const tide_tls_session_t *session =
        side == SIDE_CLIENT && resume ? tide_sessions[variant] : NULL;
    REQUIRE(tide_loop_start_tls(S.loop, lower, &a->base, tide_configs[side][variant],
                                side == SIDE_CLIENT ? "localhost" : NULL, session, on_handshake,
                                a) == 0);
    handshake();
}

/* The end of a connection, and the checks. The peer reads again and takes everything;
 * the application stops holding its reading back, except while its writes are paused
 * (then resume_writing lets go). Every deadline passes; the peer says goodbye and
 * closes; every deadline passes again. Then both ends must be over and the loop
 * empty. */
static void session_finish(void) {
    app *a = &S.app;
    peer *p = &S.peer;
    tide_transport_resume_reading(p->t);
    /* A small window moves the queue a little per iteration. */
    for (int i = 0; i < 10000 && a->t != NULL && tide_transport_get_write_buffer_size(a->t) > 0;
         i++)
        steps(1);
    steps(8);
    if (a->t != NULL && a->write_paused && !tide_transport_is_closing(a->t)) {
        /* The peer took everything: writes paused must have resumed once the buffer
         * reached the low mark, or an application waiting for that waits for ever. */
        size_t low;
        tide_transport_get_write_buffer_limits(a->t, &low, NULL);
        REQUIRE(tide_transport_get_write_buffer_size(a->t) > low);
    }
    a->ending = true;
    if (!a->write_paused)
        a->script_paused = false;
    app_sync_reading(a);
    steps(8);
    pass_deadlines();
    peer_read(p);
    peer_close_notify(p);
    tide_transport_close(p->t);
    steps(8);
    pass_deadlines();

    trace("end", 0, 0);
    REQUIRE(a->made == 1 && a->handshakes == 1);
    REQUIRE(a->lost == 1);
    REQUIRE(p->lost == 1);
    run_to_completion();
    REQUIRE(tide_loop_close(S.loop) == 0);

    mbedtls_ssl_free(&p->ssl);
    tide__buf_free(&p->rx);
    tide__buf_free(&p->sent);
    tide__buf_free(&a->written);
}

/* One full handshake per configuration, keeping its session (best effort: with TLS 1.3
 * a session may need a ticket that this short connection never gets; then every
 * input makes a full handshake, which is slower but as good). */
static void save_sessions(void) {
    for (unsigned flags = 0; flags < 4; flags++) {
        int variant = (flags >> 1) & 1;
        session_start(flags, false);
        if (flags & 1) {
            mbedtls_ssl_session_init(&peer_sessions[variant]);
            have_peer_session[variant] =
                mbedtls_ssl_get_session(&S.peer.ssl, &peer_sessions[variant]) == 0;
        } else if (tide_tls_get_session(S.app.t, &tide_sessions[variant]) != 0) {
            tide_sessions[variant] = NULL;
        }
        session_finish();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
#if MBEDTLS_VERSION_NUMBER >= 0x03000000 && defined(MBEDTLS_PSA_CRYPTO_C)
    /* mbedTLS 3.x: the peer's TLS 1.3 runs on PSA (tide initializes it for itself too). */
    REQUIRE(psa_crypto_init() == PSA_SUCCESS);
#endif
    tracing = getenv("TIDE_FUZZ_TRACE") != NULL && strcmp(getenv("TIDE_FUZZ_TRACE"), "0") != 0;
    make_configs();
    save_sessions();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    /* Byte 0: bit 0 tide is the server; bit 1 the configuration variant (waits for
     * close_notify, ALPN; a client that does not verify); bit 2 the application is an
     * echo server pausing its reading with its writes; bits 3-4 how much of tide's
     * output the peer's end holds unread (its window); bit 5 the application is a
     * buffered protocol. The handshake resumes a session (see save_sessions). */
    unsigned flags = data[0];
    session_start(flags, true);
    for (size_t i = 1; i < size;) {
        unsigned op = data[i], b = i + 1 < size ? data[i + 1] : 0;
        i = run_op(data, size, i);
        steps(3);
        trace(op_names[op & 15], op >> 4, b);
    }
    session_finish();
    return 0;
}
