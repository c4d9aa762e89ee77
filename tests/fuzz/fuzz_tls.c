/* libFuzzer targets: the TLS layer (tide_loop_start_tls over the in-memory transport
 * pair) against a hostile peer. Built twice: fuzz_tls_server (FUZZ_TLS_SERVER=1: tide
 * is the server, the input is the client's flight) and fuzz_tls_client (tide is the
 * client, the input is the server's flight).
 *
 * Input: byte 0 chooses the configuration and how the peer ends (see `flags` below),
 * byte 1 the chunk size and the clock step between chunks; the rest is what the peer
 * sends, written in chunks with the loop run between them. The peer never reads what
 * tide sends back, and may stop reading altogether with a tiny window, so tide's
 * writes queue. Afterwards the manual clock is pushed past the handshake and shutdown
 * deadlines; then the peer resumes reading and closes, and the clock is pushed again.
 * Every connection must have ended by then: the handshake callback ran once, the TLS
 * side's protocol got connection_lost once (after it), the peer's too, a full loop
 * run returns at once, and tide_loop_close() returns 0. Anything else abort()s (or
 * hangs, which libFuzzer's -timeout reports).
 *
 * The certificate (EC P-256, self-signed for "localhost") and the configurations are
 * made once, in LLVMFuzzerInitialize. Single-threaded: one loop per input. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/pk.h>

#include "fuzz.h"
#include "fuzz_cert.h"
#include "tide.h"
#include "tide/testing.h"

#ifndef FUZZ_TLS_SERVER
#error "build with -DFUZZ_TLS_SERVER=1 (tide is the server) or 0 (tide is the client)"
#endif

/* ---- the certificate and configurations, made once ------------------------------------ */

#define HANDSHAKE_TIMEOUT 10.0
#define SHUTDOWN_TIMEOUT 5.0

enum { CFG_PLAIN, CFG_VARIANT, CFG_VERIFY, CFG_COUNT };
static tide_tls_config_t *configs[CFG_COUNT];

static void make_configs(void) {
    static char crt[2048], key[512];
    static const char *const alpn[] = {"h2", "http/1.1"};
    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    fuzz_make_cert(&pk, crt, sizeof(crt), key, sizeof(key));
    mbedtls_pk_free(&pk); /* tide parses its own copy from the PEM */
    for (int i = 0; i < CFG_COUNT; i++) {
        tide_tls_config_t *c;
        REQUIRE((FUZZ_TLS_SERVER ? tide_tls_config_new_server(&c)
                                 : tide_tls_config_new_client(&c)) == 0);
        REQUIRE(tide_tls_config_set_timeouts(c, HANDSHAKE_TIMEOUT, SHUTDOWN_TIMEOUT) == 0);
        if (FUZZ_TLS_SERVER)
            REQUIRE(tide_tls_config_set_cert_mem(c, crt, strlen(crt), key, strlen(key), NULL) == 0);
        if (i == CFG_VARIANT) {
            REQUIRE(tide_tls_config_set_alpn(c, alpn, 2) == 0);
            REQUIRE(tide_tls_config_set_wait_close_notify(c, true) == 0);
            if (FUZZ_TLS_SERVER)
                REQUIRE(tide_tls_config_set_session_cache(c, false, 0) == 0);
        }
        if (!FUZZ_TLS_SERVER && i == CFG_VERIFY)
            REQUIRE(tide_tls_config_load_ca_mem(c, crt, strlen(crt)) == 0);
        else if (!FUZZ_TLS_SERVER)
            REQUIRE(tide_tls_config_set_verify_peer(c, false) == 0);
        if (FUZZ_TLS_SERVER && i == CFG_VERIFY) {
            /* A server asking for client certificates, trusting its own. */
            REQUIRE(tide_tls_config_set_verify_peer(c, true) == 0);
            REQUIRE(tide_tls_config_load_ca_mem(c, crt, strlen(crt)) == 0);
        }
        configs[i] = c;
    }
}

/* ---- the two ends ------------------------------------------------------------------------ */

typedef struct end {
    tide_protocol_t base;
    tide_transport_t *t; /* the current transport (the TLS one after the handshake) */
    int made, lost, handshakes, handshake_status;
    bool tls_side;
} end;

static void on_made(tide_protocol_t *self, tide_transport_t *t) {
    end *e = TIDE_CONTAINER_OF(self, end, base);
    e->made++;
    e->t = t;
}

static void on_lost(tide_protocol_t *self, int status) {
    end *e = TIDE_CONTAINER_OF(self, end, base);
    (void)status;
    REQUIRE(e->made == 1);
    REQUIRE(!e->tls_side || e->handshakes == 1); /* the handshake's cb comes first */
    e->lost++;
    REQUIRE(e->lost == 1);
    e->t = NULL;
}

/* Both ends ignore what they receive, and let the transport close at EOF (the NULL
 * ops: asyncio's defaults). */
static const tide_protocol_ops_t ops = {
    .size = TIDE_PROTOCOL_OPS_SIZE, .connection_made = on_made, .connection_lost = on_lost};

static void on_handshake(tide_loop_t *loop, int status, tide_transport_t *tls, void *arg) {
    end *e = arg;
    (void)loop;
    REQUIRE(e->lost == 0);
    e->handshakes++;
    e->handshake_status = status;
    REQUIRE((status == 0) == (tls != NULL));
    if (tls != NULL) {
        /* A peer that got this far: talk, then close gracefully. */
        e->t = tls;
        tide_transport_write(tls, "hello", 5);
        tide_transport_close(tls);
    }
}

static void run(tide_loop_t *loop) {
    for (int i = 0; i < 4; i++)
        REQUIRE(tide_loop_run(loop, TIDE_RUN_NOWAIT) == 0);
}

/* Pushes the clock past every deadline, in steps (a timeout may start another). */
static void pass_deadlines(tide_loop_t *loop) {
    for (int i = 0; i < 4; i++) {
        REQUIRE(tide_loop_advance(loop, HANDSHAKE_TIMEOUT + SHUTDOWN_TIMEOUT + 1) >= 0);
        run(loop);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    make_configs();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const size_t chunks[8] = {1, 3, 5, 64, 300, 1024, 5000, 17000};
    if (size < 2)
        return 0;
    /* flags: bits 0-1 configuration; bit 2 the peer stops reading (tide's window 0);
     * bits 3-5 how the input ends; bit 6 a tiny high-water mark on tide's side; bit 7
     * tide's side pauses reading before start_tls (the pause carries over to TLS).
     * pace: bits 0-2 chunk size; bits 3-4 clock step between chunks. */
    unsigned flags = data[0], pace = data[1];
    data += 2;
    size -= 2;

    tide_loop_t *loop;
    REQUIRE(tide_loop_new(&loop) == 0);
    tide_loop_set_log_handler(loop, fuzz_quiet_log, NULL);
    REQUIRE(tide_loop_use_manual_clock(loop, 1000) == 0);
    end peer = {.base.ops = &ops}, self = {.base.ops = &ops, .tls_side = true};
    REQUIRE(tide_memory_pair_new(loop, &peer.base, &self.base, NULL, NULL) == 0);
    run(loop);
    REQUIRE(peer.made == 1 && self.made == 1);

    if (flags & 4) {
        tide_transport_pause_reading(peer.t);
        REQUIRE(tide_memory_transport_set_window(self.t, 0) == 0);
    }
    if (flags & 64)
        REQUIRE(tide_transport_set_write_buffer_limits(self.t, 16, 4) == 0);
    if (flags & 128)
        tide_transport_pause_reading(self.t); /* tide's application does not read */
    tide_tls_config_t *cfg = configs[(flags & 3) % CFG_COUNT];
    REQUIRE(tide_loop_start_tls(loop, self.t, &self.base, cfg, FUZZ_TLS_SERVER ? NULL : "localhost",
                                NULL, on_handshake, &self) == 0);
    run(loop);

    size_t chunk = chunks[pace & 7];
    double step = (double)((pace >> 3) & 3) * 0.75;
    for (size_t off = 0; off < size && peer.t != NULL && !tide_transport_is_closing(peer.t);) {
        size_t n = size - off < chunk ? size - off : chunk;
        if (tide_transport_write(peer.t, data + off, n) != 0)
            break;
        off += n;
        run(loop);
        if (step > 0)
            REQUIRE(tide_loop_advance(loop, step) >= 0);
    }

    switch ((flags >> 3) & 7) {
    case 1:
        if (peer.t)
            tide_transport_write_eof(peer.t);
        break;
    case 2:
        tide_transport_close(peer.t);
        break;
    case 3:
        tide_transport_abort(peer.t);
        break;
    case 4:
        if (peer.t)
            tide_memory_transport_inject_error(peer.t, TIDE_ECONNRESET);
        break;
    case 5:
        tide_transport_close(self.t); /* tide's side gives up (before or after the handshake) */
        break;
    case 6:
        tide_transport_abort(self.t);
        break;
    default:
        break; /* the peer just goes quiet */
    }
    run(loop);
    pass_deadlines(loop);
    /* A peer that stopped reading starts again and leaves: now everything must end. */
    if (peer.t) {
        tide_transport_resume_reading(peer.t);
        tide_transport_close(peer.t);
    }
    run(loop);
    pass_deadlines(loop);

    REQUIRE(self.handshakes == 1);
    REQUIRE(self.lost == 1);
    REQUIRE(peer.lost == 1);
    /* Nothing may be left pending either: a full run returns at once (a leftover
     * watcher or timer would block it, and libFuzzer reports a timeout). */
    REQUIRE(tide_loop_run(loop, TIDE_RUN_DEFAULT) == 0);
    REQUIRE(tide_loop_close(loop) == 0);
    return 0;
}
