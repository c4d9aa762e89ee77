/* The TLS engine conformance suite: what any engine behind transports/tls_int.h (today
 * transports/tls_mbedtls.c, the table tide__tls_engine) must do under the engine-neutral
 * layer (transports/tls.c), between two tide endpoints: start_tls on both ends of a
 * socketpair or of the in-memory pair, or layers made for a transport not started yet.
 * The tests reach the engine only through the public API and the layer's entries
 * (tide__tls_*), so a second engine runs them unchanged; what is mbedTLS's own here is
 * confined to making the certificates (its x509write API: EC P-256: a CA, leaves for
 * "localhost" and "server.test", an expired one, a not-yet-valid one, one from an
 * unknown CA), the check that those headers match the library (test_same_mbedtls), and
 * one code in test_strerror.
 *
 * The contract, in the order of main()'s list: the ops table is complete; handshake and
 * data both ways; each verification failure (its own code); no hostname; verification
 * off; closing: truncation, abort, close_notify as eof_received, waiting for the peer's;
 * deadlines of the handshake; closing and EOF mid-handshake; a flipped ciphertext byte;
 * start_tls with bytes already received and with writes before the handshake ended;
 * flow control: pause_reading over buffered records, back-pressure, 16 MiB each way with
 * injected EAGAIN and short writes; inspection: ALPN, SNI, info and certificate fields;
 * sessions (resumption, TLS 1.2 and the highest version); layers for connect and accept;
 * a configuration shared by threads, its refcount and freezing; the engine's text in
 * tide_strerror_r. Real TLS peers (openssl, Python) are tested in test_tls_peers.c and
 * test_tls_server.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "support/sock.h"
#include "support/support.h"
#include "tide/testing.h"
#include "transports/tls_int.h"

#if !defined(TIDE_TEST_WITH_TLS)
/* Built without TLS: every call says so. */
static void test_no_tls(void **state) {
    (void)state;
    tide_tls_config_t *cfg = (tide_tls_config_t *)1;
    assert_false(tide_tls_available());
    assert_int_equal(tide_tls_config_new_client(&cfg), TIDE_ENOSYS);
    assert_null(cfg);
    assert_int_equal(tide_tls_config_new_server(&cfg), TIDE_ENOSYS);
    tide__tls_params p = {.config = NULL, .server_hostname = "localhost", .session = NULL};
    assert_int_equal(tide__tls_check(&p), TIDE_ENOSYS);
    assert_int_equal(tide_loop_start_tls(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
                     TIDE_ENOSYS);
    assert_false(tide_transport_is_tls(NULL));
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_no_tls)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#else

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

/* ---- certificates ------------------------------------------------------------------ */

typedef struct pem {
    char crt[4096];
    char key[1024];
} pem;

enum {
    CERT_CA,
    CERT_CA2,
    CERT_LOCALHOST,
    CERT_SERVER_TEST,
    CERT_WILD,
    CERT_EXPIRED,
    CERT_FUTURE,
    CERT_UNKNOWN_CA,
    CERT_COUNT
};

static pem certs[CERT_COUNT];
static bool certs_made;

static void make_key(mbedtls_pk_context *k, mbedtls_ctr_drbg_context *drbg) {
    mbedtls_pk_init(k);
    assert_int_equal(mbedtls_pk_setup(k, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)), 0);
    assert_int_equal(mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*k),
                                         mbedtls_ctr_drbg_random, drbg),
                     0);
}

static void make_cert(pem *out, mbedtls_pk_context *key, const char *subject,
                      mbedtls_pk_context *issuer_key, const char *issuer, bool ca, const char *from,
                      const char *to, int serial, mbedtls_ctr_drbg_context *drbg) {
    mbedtls_x509write_cert w;
    mbedtls_mpi sn;
    mbedtls_x509write_crt_init(&w);
    mbedtls_mpi_init(&sn);
    assert_int_equal(mbedtls_mpi_lset(&sn, serial), 0);
    mbedtls_x509write_crt_set_subject_key(&w, key);
    mbedtls_x509write_crt_set_issuer_key(&w, issuer_key);
    assert_int_equal(mbedtls_x509write_crt_set_subject_name(&w, subject), 0);
    assert_int_equal(mbedtls_x509write_crt_set_issuer_name(&w, issuer), 0);
    mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
    assert_int_equal(mbedtls_x509write_crt_set_serial(&w, &sn), 0);
    assert_int_equal(mbedtls_x509write_crt_set_validity(&w, from, to), 0);
    assert_int_equal(mbedtls_x509write_crt_set_basic_constraints(&w, ca ? 1 : 0, -1), 0);
    assert_int_equal(mbedtls_x509write_crt_pem(&w, (unsigned char *)out->crt, sizeof(out->crt),
                                               mbedtls_ctr_drbg_random, drbg),
                     0);
    assert_int_equal(mbedtls_pk_write_key_pem(key, (unsigned char *)out->key, sizeof(out->key)), 0);
    mbedtls_x509write_crt_free(&w);
    mbedtls_mpi_free(&sn);
}

static void make_certs(void) {
    if (certs_made)
        return;
    mbedtls_entropy_context ent;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_entropy_init(&ent);
    mbedtls_ctr_drbg_init(&drbg);
    assert_int_equal(mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &ent, NULL, 0), 0);
    mbedtls_pk_context ca, ca2, leaf;
    make_key(&ca, &drbg);
    make_key(&ca2, &drbg);
    const char *ca_name = "CN=tide test CA,O=tide";
    const char *ca2_name = "CN=unknown CA,O=elsewhere";
    make_cert(&certs[CERT_CA], &ca, ca_name, &ca, ca_name, true, "20200101000000", "20991231235959",
              1, &drbg);
    make_cert(&certs[CERT_CA2], &ca2, ca2_name, &ca2, ca2_name, true, "20200101000000",
              "20991231235959", 1, &drbg);
    static const struct {
        int slot;
        const char *subject;
        bool unknown;
        const char *from, *to;
    } leaves[] = {
        {CERT_LOCALHOST, "CN=localhost,O=tide", false, "20200101000000", "20991231235959"},
        {CERT_SERVER_TEST, "CN=server.test,O=tide", false, "20200101000000", "20991231235959"},
        {CERT_WILD, "CN=a.wild.test,O=tide", false, "20200101000000", "20991231235959"},
        {CERT_EXPIRED, "CN=localhost,O=expired", false, "20100101000000", "20110101000000"},
        {CERT_FUTURE, "CN=localhost,O=future", false, "20900101000000", "20950101000000"},
        {CERT_UNKNOWN_CA, "CN=localhost,O=unknown", true, "20200101000000", "20991231235959"},
    };
    for (size_t i = 0; i < sizeof(leaves) / sizeof(leaves[0]); i++) {
        make_key(&leaf, &drbg);
        make_cert(&certs[leaves[i].slot], &leaf, leaves[i].subject, leaves[i].unknown ? &ca2 : &ca,
                  leaves[i].unknown ? ca2_name : ca_name, false, leaves[i].from, leaves[i].to,
                  (int)i + 2, &drbg);
        mbedtls_pk_free(&leaf);
    }
    mbedtls_pk_free(&ca);
    mbedtls_pk_free(&ca2);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&ent);
    certs_made = true;
}

static tide_tls_config_t *server_cfg(int slot) {
    tide_tls_config_t *cfg;
    assert_int_equal(tide_tls_config_new_server(&cfg), 0);
    const pem *p = &certs[slot];
    assert_int_equal(
        tide_tls_config_set_cert_mem(cfg, p->crt, strlen(p->crt), p->key, strlen(p->key), NULL), 0);
    return cfg;
}

static tide_tls_config_t *client_cfg(int ca_slot) {
    tide_tls_config_t *cfg;
    assert_int_equal(tide_tls_config_new_client(&cfg), 0);
    if (ca_slot >= 0)
        assert_int_equal(
            tide_tls_config_load_ca_mem(cfg, certs[ca_slot].crt, strlen(certs[ca_slot].crt)), 0);
    return cfg;
}

/* Whether this mbedTLS build has TLS 1.3 (then tide negotiates it by default). */
static bool tls13_available(void) {
    tide_tls_config_t *cfg;
    assert_int_equal(tide_tls_config_new_client(&cfg), 0);
    int rc = tide_tls_config_set_versions(cfg, TIDE_TLS_VERSION_1_3, 0);
    tide_tls_config_unref(cfg);
    return rc == 0;
}

/* ---- start_tls on both ends ------------------------------------------------------------ */

typedef struct hs_result {
    int calls;
    int status;
    tide_transport_t *tls;
    ts_recorder *r;
} hs_result;

static void on_start_tls(tide_loop_t *loop, int status, tide_transport_t *tls, void *arg) {
    (void)loop;
    hs_result *h = arg;
    h->calls++;
    h->status = status;
    h->tls = tls;
    if (tls)
        h->r->transport = tls;
}

static bool pred_both_hs(void *arg) {
    hs_result *h = arg;
    return h[0].calls > 0 && h[1].calls > 0;
}

/* Upgrades d->ta (client, expecting `host`) and d->tb (server) and runs until both
 * handshakes ended. h[0] is the client's result, h[1] the server's. */
static void upgrade_both(ts_duo *d, tide_tls_config_t *ccfg, const char *host,
                         tide_tls_config_t *scfg, const tide_tls_session_t *session,
                         hs_result h[2]) {
    memset(h, 0, 2 * sizeof(*h));
    h[0].r = &d->a;
    h[1].r = &d->b;
    assert_int_equal(
        tide_loop_start_tls(d->loop, d->ta, &d->a.base, ccfg, host, session, on_start_tls, &h[0]),
        0);
    assert_int_equal(
        tide_loop_start_tls(d->loop, d->tb, &d->b.base, scfg, NULL, NULL, on_start_tls, &h[1]), 0);
    ts_run_until(d->loop, pred_both_hs, h, 10);
    assert_int_equal(h[0].calls, 1);
    assert_int_equal(h[1].calls, 1);
}

static bool pred_len(void *arg) {
    ts_recorder *r = arg;
    return r->len >= (size_t)(uintptr_t)r->user;
}

static void run_until_len(tide_loop_t *loop, ts_recorder *r, size_t len, double seconds) {
    r->user = (void *)(uintptr_t)len;
    ts_run_until(loop, pred_len, r, seconds);
    r->user = NULL;
}

/* A TLS pair over the duo's connection (a socketpair unless set up otherwise) with the
 * default test certificates, verified. */
static void tls_socketpair(ts_duo *d, hs_result h[2]) {
    make_certs();
    tide_tls_config_t *ccfg = client_cfg(CERT_CA);
    tide_tls_config_t *scfg = server_cfg(CERT_LOCALHOST);
    upgrade_both(d, ccfg, "localhost", scfg, NULL, h);
    /* The connections hold their own references. */
    tide_tls_config_unref(ccfg);
    tide_tls_config_unref(scfg);
    assert_int_equal(h[0].status, 0);
    assert_int_equal(h[1].status, 0);
    assert_non_null(h[0].tls);
    assert_non_null(h[1].tls);
}

/* ---- handshake and data ------------------------------------------------------------- */

static void test_handshake_echo_close(void **state) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    hs_result h[2];
    tls_socketpair(d, h);
    tide_transport_t *tc = h[0].tls, *ts = h[1].tls;
    assert_string_equal(tide_transport_kind(tc), "tls");
    assert_true(tide_transport_is_tls(tc));
    assert_true(tide_transport_is_tls(ts));
    assert_false(tide_transport_is_tls(d->ta));
    assert_false(tide_transport_can_write_eof(tc));
    assert_int_equal(tide_transport_write_eof(tc), TIDE_ENOTSUP);
    assert_true(tide_transport_get_fd(tc) >= 0);
    assert_int_equal(tide_transport_get_fd(tc), tide_transport_get_fd(d->ta));

    /* Both ways; the server echoes. */
    d->b.echo = true;
    assert_int_equal(tide_transport_write(tc, "hello over tls", 14), 0);
    run_until_len(d->loop, &d->a, 14, 5);
    assert_int_equal(d->b.len, 14);
    assert_memory_equal(d->a.data, "hello over tls", 14);

    /* A clean close: close_notify is the server's eof_received; both end with 0. */
    tide_transport_close(tc);
    assert_true(tide_transport_is_closing(tc));
    assert_int_equal(tide_transport_write(tc, "x", 1), TIDE_ECLOSED);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 5);
    assert_int_equal(d->a.lost_status, 0);
    assert_int_equal(d->b.lost_status, 0);
    assert_int_equal(d->b.eofs, 1);
    assert_int_equal(d->a.eofs, 0);
    assert_string_equal(d->b.events, "MDEL");
}

/* The same over the in-memory transport pair. */
static void tls_memory_pair(ts_duo *d, hs_result h[2]) {
    assert_int_equal(tide_memory_pair_new(d->loop, &d->a.base, &d->b.base, &d->ta, &d->tb), 0);
    ts_run_until(d->loop, ts_pred_duo_made, d, 5);
    tls_socketpair(d, h);
}

static void test_memory_pair(void **state) {
    ts_duo *d = *state;
    hs_result h[2];
    tls_memory_pair(d, h);
    assert_int_equal(tide_transport_get_fd(h[0].tls), TIDE_ENOTSOCK);
    d->a.echo = true;
    assert_int_equal(tide_transport_write(h[1].tls, "ping", 4), 0);
    run_until_len(d->loop, &d->b, 4, 5);
    assert_memory_equal(d->b.data, "ping", 4);
    /* The server closes this time. */
    tide_transport_close(h[1].tls);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 5);
    assert_int_equal(d->a.lost_status, 0);
    assert_int_equal(d->b.lost_status, 0);
    assert_int_equal(d->a.eofs, 1);
}

/* ---- verification --------------------------------------------------------------------- */

static void expect_failure(void **state, int ca_slot, int server_slot, const char *host,
                           int expected) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    make_certs();
    tide_tls_config_t *ccfg = client_cfg(ca_slot);
    tide_tls_config_t *scfg = server_cfg(server_slot);
    hs_result h[2];
    upgrade_both(d, ccfg, host, scfg, NULL, h);
    tide_tls_config_unref(ccfg);
    tide_tls_config_unref(scfg);
    assert_int_equal(h[0].status, expected);
    assert_null(h[0].tls);
    /* The server learns it from the client's alert. */
    assert_true(h[1].status < 0);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 5);
    assert_int_equal(d->a.lost_status, expected);
    assert_int_equal(d->a.len, 0);
    assert_int_equal(d->b.len, 0);
    assert_string_equal(d->a.events, "ML");
}

static void test_verify_untrusted(void **state) {
    expect_failure(state, CERT_CA, CERT_UNKNOWN_CA, "localhost", TIDE_ETLS_CERT_UNTRUSTED);
}

static void test_verify_expired(void **state) {
    expect_failure(state, CERT_CA, CERT_EXPIRED, "localhost", TIDE_ETLS_CERT_EXPIRED);
}

static void test_verify_not_yet_valid(void **state) {
    expect_failure(state, CERT_CA, CERT_FUTURE, "localhost", TIDE_ETLS_CERT_NOT_YET_VALID);
}

static void test_verify_hostname(void **state) {
    expect_failure(state, CERT_CA, CERT_LOCALHOST, "other.test", TIDE_ETLS_CERT_HOSTNAME);
}

static void test_verify_self_signed(void **state) {
    /* The CA's own certificate served as a leaf, to a client trusting another CA. */
    expect_failure(state, CERT_CA2, CERT_CA, "localhost", TIDE_ETLS_CERT_UNTRUSTED);
}

static void test_no_hostname_and_verify_off(void **state) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    make_certs();
    tide_tls_config_t *ccfg = client_cfg(CERT_CA);
    tide_tls_config_t *scfg = server_cfg(CERT_UNKNOWN_CA);
    /* Verifying without a name is refused at once, with nothing changed. */
    assert_int_equal(
        tide_loop_start_tls(d->loop, d->ta, &d->a.base, ccfg, NULL, NULL, on_start_tls, NULL),
        TIDE_ETLS_NO_HOSTNAME);
    assert_int_equal(
        tide_loop_start_tls(d->loop, d->ta, &d->a.base, ccfg, "", NULL, on_start_tls, NULL),
        TIDE_ETLS_NO_HOSTNAME);
    assert_false(
        tide_transport_is_tls(tide_transport_get_protocol(d->ta) == &d->a.base ? d->ta : NULL));
    tide_tls_config_unref(ccfg);

    /* Verification off: any certificate, no name needed. */
    assert_int_equal(tide_tls_config_new_client(&ccfg), 0);
    assert_int_equal(tide_tls_config_set_verify_peer(ccfg, false), 0);
    hs_result h[2];
    upgrade_both(d, ccfg, NULL, scfg, NULL, h);
    assert_int_equal(h[0].status, 0);
    assert_int_equal(h[1].status, 0);
    tide_tls_info_t info;
    assert_int_equal(tide_tls_get_info(h[0].tls, &info), 0);
    assert_false(info.peer_verified);
    assert_null(info.server_name);
    tide_tls_config_unref(ccfg);
    tide_tls_config_unref(scfg);
    tide_transport_close(h[0].tls);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 5);
    assert_int_equal(d->a.lost_status, 0);
    assert_int_equal(d->b.lost_status, 0);
}

/* ---- endings ---------------------------------------------------------------------- */

static void test_truncation(void **state) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    hs_result h[2];
    tls_socketpair(d, h);
    assert_int_equal(tide_transport_write(h[0].tls, "before", 6), 0);
    run_until_len(d->loop, &d->b, 6, 5);
    /* The client's socket goes away without close_notify. */
    tide_transport_abort(d->ta);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 5);
    assert_int_equal(d->b.lost_status, TIDE_ETLS_TRUNCATED);
    assert_int_equal(d->b.eofs, 0);
    assert_int_equal(d->b.len, 6);
    assert_int_equal(d->a.lost_status, TIDE_ETLS_TRUNCATED);
}

static void test_abort_tls(void **state) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    hs_result h[2];
    tls_socketpair(d, h);
    tide_transport_abort(h[1].tls);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 5);
    assert_int_equal(d->b.lost_status, 0);
    assert_int_equal(d->a.lost_status, TIDE_ETLS_TRUNCATED);
}

static void test_close_notify_wait(void **state) {
    /* The server writes and closes at once, waiting for the client's close_notify (so
     * its socket stays open: the client must act on the close_notify that arrived with
     * the data, without any further input). Both sides end cleanly. */
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    make_certs();
    tide_tls_config_t *ccfg = client_cfg(CERT_CA);
    assert_int_equal(tide_tls_config_set_wait_close_notify(ccfg, true), 0);
    tide_tls_config_t *scfg = server_cfg(CERT_LOCALHOST);
    assert_int_equal(tide_tls_config_set_wait_close_notify(scfg, true), 0);
    hs_result h[2];
    upgrade_both(d, ccfg, "localhost", scfg, NULL, h);
    tide_tls_config_unref(ccfg);
    tide_tls_config_unref(scfg);
    assert_int_equal(tide_transport_write(h[1].tls, "last words", 10), 0);
    tide_transport_close(h[1].tls);
    /* Bytes after close_notify (raw, under TLS) are never delivered nor an error. */
    assert_int_equal(tide_transport_write(d->tb, "\x17\x03\x03\x00\x05GARBAGE", 12), 0);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 5);
    assert_int_equal(d->a.len, 10);
    assert_int_equal(d->a.eofs, 1);
    assert_int_equal(d->a.lost_status, 0);
    assert_int_equal(d->b.lost_status, 0);
}

static void test_wait_close_notify_timeout(void **state) {
    /* The client waits for a close_notify that never comes (the server stopped reading
     * below TLS): the shutdown deadline ends it. */
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    make_certs();
    tide_tls_config_t *ccfg = client_cfg(CERT_CA);
    assert_int_equal(tide_tls_config_set_wait_close_notify(ccfg, true), 0);
    assert_int_equal(tide_tls_config_set_timeouts(ccfg, 0, 0.2), 0);
    tide_tls_config_t *scfg = server_cfg(CERT_LOCALHOST);
    hs_result h[2];
    upgrade_both(d, ccfg, "localhost", scfg, NULL, h);
    tide_tls_config_unref(ccfg);
    tide_tls_config_unref(scfg);
    tide_transport_pause_reading(d->tb); /* the server's socket, under its TLS */
    tide_transport_close(h[0].tls);
    ts_run_until(d->loop, ts_pred_lost, &d->a, 5);
    assert_int_equal(d->a.lost_status, TIDE_ETLS_SHUTDOWN_TIMEOUT);
    tide_transport_abort(h[1].tls);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 5);
}

/* ---- handshake deadline ------------------------------------------------------------------ */

static void silent_peer(void **state, bool server_side) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    make_certs();
    tide_tls_config_t *cfg = server_side ? server_cfg(CERT_LOCALHOST) : client_cfg(CERT_CA);
    assert_int_equal(tide_tls_config_set_timeouts(cfg, 0.2, 0), 0);
    hs_result h;
    memset(&h, 0, sizeof(h));
    tide_transport_t *t = server_side ? d->tb : d->ta;
    ts_recorder *r = server_side ? &d->b : &d->a;
    h.r = r;
    assert_int_equal(
        tide_loop_start_tls(d->loop, t, &r->base, cfg, "localhost", NULL, on_start_tls, &h), 0);
    tide_tls_config_unref(cfg);
    ts_run_until(d->loop, ts_pred_lost, r, 5);
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.status, TIDE_ETLS_HANDSHAKE_TIMEOUT);
    assert_int_equal(r->lost_status, TIDE_ETLS_HANDSHAKE_TIMEOUT);
    /* The plain peer saw the ClientHello (or nothing) and then the end. */
    ts_recorder *peer = server_side ? &d->a : &d->b;
    ts_run_until(d->loop, ts_pred_lost, peer, 5);
    assert_int_equal(peer->len > 0, !server_side);
}

static void test_handshake_timeout_client(void **state) { silent_peer(state, false); }
static void test_handshake_timeout_server(void **state) { silent_peer(state, true); }

static void test_handshake_default_deadline(void **state) {
    /* The default deadline is 60 s, on the loop's (here manual) clock. */
    ts_duo *d = *state;
    assert_int_equal(tide_loop_use_manual_clock(d->loop, 1000), 0);
    sk_open(state, SK_SOCKETPAIR);
    make_certs();
    tide_tls_config_t *cfg = server_cfg(CERT_LOCALHOST);
    hs_result h;
    memset(&h, 0, sizeof(h));
    h.r = &d->b;
    assert_int_equal(tide_loop_start_tls(d->loop, d->tb, &d->b.base, cfg, NULL, NULL,
                                         on_start_tls, &h),
                     0);
    tide_tls_config_unref(cfg);
    ts_spin(d->loop, 5);
    assert_int_equal(tide_loop_advance(d->loop, 59.9), 0);
    ts_spin(d->loop, 5);
    assert_int_equal(h.calls, 0);
    assert_int_equal(tide_loop_advance(d->loop, 0.2), 1);
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.status, TIDE_ETLS_HANDSHAKE_TIMEOUT);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 5);
    assert_int_equal(d->b.lost_status, TIDE_ETLS_HANDSHAKE_TIMEOUT);
}

static void test_close_during_handshake(void **state) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    make_certs();
    tide_tls_config_t *cfg = client_cfg(CERT_CA);
    hs_result h;
    memset(&h, 0, sizeof(h));
    h.r = &d->a;
    tide_transport_t *tls = NULL;
    tide__tls_params params = {.config = cfg, .server_hostname = "localhost", .session = NULL};
    assert_int_equal(
        tide__tls_upgrade(d->loop, d->ta, &d->a.base, &params, NULL, 0, on_start_tls, &h, &tls), 0);
    tide_tls_config_unref(cfg);
    /* Written before the handshake: queued as plaintext, never sent as such. */
    assert_int_equal(tide_transport_write(tls, "secret", 6), 0);
    assert_int_equal(tide_transport_get_write_buffer_size(tls), 6);
    tide_transport_close(tls);
    ts_run_until(d->loop, ts_pred_lost, &d->a, 5);
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.status, TIDE_ECANCELLED);
    assert_int_equal(d->a.lost_status, 0);
    ts_run_until(d->loop, ts_pred_lost, &d->b, 5);
    assert_null(d->b.len ? memmem(d->b.data, d->b.len, "secret", 6) : NULL);
}

static void test_eof_during_handshake(void **state) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    make_certs();
    tide_tls_config_t *cfg = client_cfg(CERT_CA);
    hs_result h;
    memset(&h, 0, sizeof(h));
    h.r = &d->a;
    assert_int_equal(
        tide_loop_start_tls(d->loop, d->ta, &d->a.base, cfg, "localhost", NULL, on_start_tls, &h),
        0);
    tide_tls_config_unref(cfg);
    /* The plain peer reads the ClientHello and hangs up. */
    run_until_len(d->loop, &d->b, 1, 5);
    tide_transport_close(d->tb);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 5);
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.status, TIDE_ECONNRESET);
    assert_int_equal(d->a.lost_status, TIDE_ECONNRESET);
    assert_string_equal(d->a.events, "ML");
}

static void test_start_tls_refused(void **state) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    make_certs();
    tide_tls_config_t *cfg = client_cfg(CERT_CA);
    assert_int_equal(tide_transport_write_eof(d->ta), 0);
    assert_int_equal(
        tide_loop_start_tls(d->loop, d->ta, &d->a.base, cfg, "localhost", NULL, on_start_tls, NULL),
        TIDE_ECLOSED);
    assert_int_equal(
        tide_loop_start_tls(d->loop, d->ta, NULL, cfg, "localhost", NULL, on_start_tls, NULL),
        TIDE_EINVAL);
    tide_tls_config_unref(cfg);
    tide_transport_close(d->ta);
    tide_transport_close(d->tb);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 5);
}

/* ---- a flipped ciphertext byte ---------------------------------------------------------- */

static int flip_fd = -1;
static bool flip_armed;
static ssize_t (*real_send)(int, const void *, size_t, int);
static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
static ssize_t (*real_recv)(int, void *, size_t, int);

static ssize_t flip_send(int fd, const void *buf, size_t len, int flags) {
    if (fd == flip_fd && flip_armed && len > 20) {
        unsigned char copy[65536];
        size_t n = len < sizeof(copy) ? len : sizeof(copy);
        memcpy(copy, buf, n);
        copy[n - 5] ^= 0x01; /* inside the record's tag */
        flip_armed = false;
        return real_send(fd, copy, n, flags);
    }
    return real_send(fd, buf, len, flags);
}

static void test_flipped_byte(void **state) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    hs_result h[2];
    tls_socketpair(d, h);
    assert_int_equal(tide_transport_write(h[0].tls, "good", 4), 0);
    run_until_len(d->loop, &d->b, 4, 5);
    real_send = tide__sys.send;
    tide__sys.send = flip_send;
    flip_fd = tide_transport_get_fd(d->ta);
    flip_armed = true;
    assert_int_equal(tide_transport_write(h[0].tls, "bad record, never delivered", 27), 0);
    ts_run_until(d->loop, ts_pred_lost, &d->b, 5);
    assert_false(flip_armed);
    assert_true(tide_err_is_tls(d->b.lost_status));
    assert_int_equal(tide_err_tls_code(d->b.lost_status), MBEDTLS_ERR_SSL_INVALID_MAC);
    assert_int_equal(d->b.len, 4);
    assert_int_equal(d->b.eofs, 0);
    ts_run_until(d->loop, ts_pred_lost, &d->a, 5);
    assert_true(d->a.lost_status < 0);
}

/* ---- start_tls with bytes already received ------------------------------------------ */

static void test_upgrade_with_received(void **state) {
    /* The server reads the ClientHello as plaintext (as a line reader would, before it
     * decided to upgrade) and hands those bytes to the upgrade. */
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    make_certs();
    tide_tls_config_t *ccfg = client_cfg(CERT_CA);
    tide_tls_config_t *scfg = server_cfg(CERT_LOCALHOST);
    hs_result h[2];
    memset(h, 0, sizeof(h));
    h[0].r = &d->a;
    h[1].r = &d->b;
    assert_int_equal(tide_loop_start_tls(d->loop, d->ta, &d->a.base, ccfg, "localhost", NULL,
                                         on_start_tls, &h[0]),
                     0);
    run_until_len(d->loop, &d->b, 1, 5);
    tide_transport_pause_reading(d->tb);
    assert_int_equal(tide_transport_set_write_buffer_limits(d->tb, 100000, 1000), 0);
    tide_transport_set_max_write_buffer_size(d->tb, 1 << 20);
    size_t got = d->b.len;
    unsigned char hello[4096];
    assert_true(got <= sizeof(hello));
    memcpy(hello, d->b.data, got);
    d->b.len = 0;
    tide__tls_params params = {.config = scfg, .server_hostname = NULL, .session = NULL};
    tide_transport_t *tls = NULL;
    assert_int_equal(tide__tls_upgrade(d->loop, d->tb, &d->b.base, &params, hello, got,
                                       on_start_tls, &h[1], &tls),
                     0);
    /* The user's pause carried over to the TLS transport; the handshake still runs. */
    assert_false(tide_transport_is_reading(tls));
    assert_true(tide_transport_is_reading(d->tb));
    size_t low, high;
    tide_transport_get_write_buffer_limits(tls, &low, &high);
    assert_int_equal(low, 1000);
    assert_int_equal(high, 100000);
    /* The cap moved too: TLS enforces it on plaintext, never on records. */
    static char big[2 << 20];
    assert_int_equal(tide_transport_write(tls, big, sizeof(big)), TIDE_ENOBUFS);
    tide_transport_resume_reading(tls);
    tide_tls_config_unref(ccfg);
    tide_tls_config_unref(scfg);
    ts_run_until(d->loop, pred_both_hs, h, 10);
    assert_int_equal(h[0].status, 0);
    assert_int_equal(h[1].status, 0);
    assert_ptr_equal(h[1].tls, tls);
    assert_int_equal(tide_transport_write(h[0].tls, "after", 5), 0);
    run_until_len(d->loop, &d->b, 5, 5);
    assert_memory_equal(d->b.data, "after", 5);
    tide_transport_close(h[0].tls);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 5);
    assert_int_equal(d->b.lost_status, 0);
}

static void test_writes_before_handshake(void **state) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    make_certs();
    tide_tls_config_t *ccfg = client_cfg(CERT_CA);
    tide_tls_config_t *scfg = server_cfg(CERT_LOCALHOST);
    hs_result h[2];
    memset(h, 0, sizeof(h));
    h[0].r = &d->a;
    h[1].r = &d->b;
    tide_transport_t *tc = NULL;
    tide__tls_params params = {.config = ccfg, .server_hostname = "localhost", .session = NULL};
    assert_int_equal(
        tide__tls_upgrade(d->loop, d->ta, &d->a.base, &params, NULL, 0, on_start_tls, &h[0], &tc),
        0);
    assert_int_equal(tide_transport_write(tc, "early", 5), 0);
    assert_int_equal(
        tide_loop_start_tls(d->loop, d->tb, &d->b.base, scfg, NULL, NULL, on_start_tls, &h[1]), 0);
    tide_tls_config_unref(ccfg);
    tide_tls_config_unref(scfg);
    run_until_len(d->loop, &d->b, 5, 5);
    assert_memory_equal(d->b.data, "early", 5);
    assert_int_equal(h[0].status, 0);
    tide_transport_close(tc);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 5);
}

/* resume_writing must come with the buffer at or below the low mark. */
static size_t size_at_resume;
static void note_resume(ts_recorder *r) {
    size_at_resume = tide_transport_get_write_buffer_size(r->transport);
}

static bool pred_resumed(void *arg) {
    ts_recorder *r = arg;
    return r->resumes >= r->pauses;
}

/* ---- reading paused over buffered records --------------------------------------------- */

static void test_pause_reading_buffered(void **state) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    hs_result h[2];
    tls_socketpair(d, h);
    tide_transport_pause_reading(h[1].tls);
    for (int i = 0; i < 5; i++)
        assert_int_equal(tide_transport_write(h[0].tls, "0123456789", 10), 0);
    ts_spin(d->loop, 20);
    assert_int_equal(d->b.len, 0);
    assert_false(tide_transport_is_reading(h[1].tls));
    tide_transport_resume_reading(h[1].tls);
    /* Everything is already below TLS: delivered without new input. */
    ts_spin(d->loop, 3);
    assert_int_equal(d->b.len, 50);
    tide_transport_close(h[0].tls);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 5);
}

static void test_pause_reading_backpressure(void **state) {
    /* The application does not read: the lower's reading stops once 256 KiB of
     * ciphertext wait, the sender's buffer grows and it is paused; resuming moves it. */
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    hs_result h[2];
    tls_socketpair(d, h);
    tide_transport_pause_reading(h[1].tls);
    d->a.on_resume = note_resume;
    size_at_resume = SIZE_MAX;
    uint64_t off = 0;
    for (int i = 0; i < 32; i++)
        sk_write_pattern(h[0].tls, 64 * 1024, &off);
    ts_spin(d->loop, 50);
    assert_int_equal(d->b.len, 0);
    assert_false(tide_transport_is_reading(d->tb));
    assert_true(tide_transport_get_write_buffer_size(h[0].tls) > 0);
    assert_true(d->a.pauses >= 1);
    tide_transport_resume_reading(h[1].tls);
    run_until_len(d->loop, &d->b, (size_t)off, 10);
    sk_expect_pattern(&d->b, off);
    ts_run_until(d->loop, pred_resumed, &d->a, 5);
    size_t low, high;
    tide_transport_get_write_buffer_limits(h[0].tls, &low, &high);
    assert_true(size_at_resume <= low);
    tide_transport_close(h[0].tls);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 5);
}

/* ---- watermarks changed with output queued beneath --------------------------------- */

static bool pred_resumed_once(void *arg) { return ((ts_recorder *)arg)->resumes == 1; }

/* The application lowers its marks while its output waits in the transport beneath
 * (the peer's window is shut): pause_writing comes at once, and once the peer reads,
 * resume_writing must follow. The lower kept its old marks until the next write, so it
 * never reported the drain (found by fuzz_tls_session). */
static void test_limits_lowered_with_output_queued(void **state) {
    ts_duo *d = *state;
    hs_result h[2];
    tls_memory_pair(d, h);
    assert_int_equal(tide_memory_transport_set_window(d->tb, 0), 0);
    static char block[8192];
    memset(block, 'q', sizeof block);
    assert_int_equal(tide_transport_write(h[1].tls, block, sizeof block), 0);
    assert_int_equal(d->b.pauses, 0);
    assert_int_equal(tide_transport_set_write_buffer_limits(h[1].tls, 32, 8), 0);
    assert_int_equal(d->b.pauses, 1);
    assert_int_equal(tide_memory_transport_set_window(d->tb, SIZE_MAX), 0);
    ts_run_until(d->loop, pred_resumed_once, &d->b, 5);
    run_until_len(d->loop, &d->a, sizeof block, 5);
    tide_transport_close(h[1].tls);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 5);
}

/* ---- the lower lost while the application does not read ------------------------------ */

/* The server pauses reading and writes until its output is queued (the client reads
 * nothing); then the client's socket goes away. The server's TLS transport must end at
 * once with the lower's error: nothing can resume its writing nor deliver its input any
 * more, and a transport waiting for either kept the loop running for ever. */
static void test_lost_while_paused(void **state) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    hs_result h[2];
    tls_socketpair(d, h);
    tide_transport_pause_reading(h[0].tls);
    tide_transport_pause_reading(h[1].tls);
    uint64_t off = 0;
    /* Far more than the client's TLS input buffer and the socket buffers hold. */
    for (int i = 0; i < 64; i++) {
        sk_write_pattern(h[1].tls, 64 * 1024, &off);
        ts_spin(d->loop, 3);
    }
    assert_true(tide_transport_get_write_buffer_size(h[1].tls) > 0);
    assert_true(d->b.pauses == 1 && d->b.resumes == 0);
    tide_transport_abort(d->ta);
    ts_run_until(d->loop, ts_pred_lost, &d->b, 5);
    assert_true(d->b.lost_status < 0);
    assert_int_equal(d->b.resumes, 0);
    ts_run_until(d->loop, ts_pred_lost, &d->a, 5);
}

/* ---- 16 MiB each way with injected EAGAIN and short writes --------------------------- */

#define BIG (16u * 1024 * 1024)

static unsigned inj_calls;

static ssize_t inj_send(int fd, const void *buf, size_t len, int flags) {
    unsigned n = ++inj_calls;
    if (n % 7 == 0) {
        errno = EAGAIN;
        return -1;
    }
    if (n % 3 == 0 && len > 1)
        len = 1 + (n * 7919u) % len;
    return real_send(fd, buf, len, flags);
}

static ssize_t inj_sendmsg(int fd, const struct msghdr *msg, int flags) {
    unsigned n = ++inj_calls;
    if (n % 7 == 0) {
        errno = EAGAIN;
        return -1;
    }
    if (n % 3 == 0) {
        size_t len = msg->msg_iov[0].iov_len;
        return real_send(fd, msg->msg_iov[0].iov_base, 1 + (n * 7919u) % len, flags);
    }
    return real_sendmsg(fd, msg, flags);
}

static ssize_t inj_recv(int fd, void *buf, size_t len, int flags) {
    unsigned n = ++inj_calls;
    if (n % 11 == 0) {
        errno = EAGAIN;
        return -1;
    }
    if (n % 5 == 0 && len > 1)
        len = 1 + (n * 104729u) % len;
    return real_recv(fd, buf, len, flags);
}

typedef struct feeder {
    tide_transport_t *t;
    uint64_t off;
    bool paused;
} feeder;

static void feed(feeder *f) {
    while (!f->paused && f->off < BIG) {
        size_t n = BIG - f->off < 64 * 1024 ? (size_t)(BIG - f->off) : 64 * 1024;
        sk_write_pattern(f->t, n, &f->off);
    }
}

static void feeder_pause(ts_recorder *r) { ((feeder *)r->user)->paused = true; }

static void feeder_resume(ts_recorder *r) {
    feeder *f = r->user;
    f->paused = false;
    feed(f);
}

static bool pred_big_done(void *arg) {
    ts_duo *d = arg;
    return d->a.len >= BIG && d->b.len >= BIG;
}

static void test_big_transfer(void **state) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    int small = 4096;
    assert_int_equal(
        setsockopt(tide_transport_get_fd(d->ta), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    hs_result h[2];
    tls_socketpair(d, h);
    real_send = tide__sys.send;
    real_sendmsg = tide__sys.sendmsg;
    real_recv = tide__sys.recv;
    tide__sys.send = inj_send;
    tide__sys.sendmsg = inj_sendmsg;
    tide__sys.recv = inj_recv;
    feeder fa = {h[0].tls, 0, false}, fb = {h[1].tls, 0, false};
    d->a.user = &fa;
    d->b.user = &fb;
    d->a.on_pause = d->b.on_pause = feeder_pause;
    d->a.on_resume = d->b.on_resume = feeder_resume;
    feed(&fa);
    feed(&fb);
    ts_run_until(d->loop, pred_big_done, d, 120);
    tide__sys_reset();
    assert_int_equal(d->a.len, BIG);
    assert_int_equal(d->b.len, BIG);
    sk_expect_pattern(&d->a, BIG);
    sk_expect_pattern(&d->b, BIG);
    assert_true(d->a.pauses > 0);
    assert_true(inj_calls > 100);
    tide_transport_close(h[0].tls);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 10);
    assert_int_equal(d->a.lost_status, 0);
    assert_int_equal(d->b.lost_status, 0);
}

/* ---- ALPN, SNI, resumption, info ------------------------------------------------------ */

static void test_info_and_certificate(void **state) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    hs_result h[2];
    tls_socketpair(d, h);
    tide_tls_info_t ci, si;
    assert_int_equal(tide_tls_get_info(h[0].tls, &ci), 0);
    assert_int_equal(tide_tls_get_info(h[1].tls, &si), 0);
    assert_int_equal(tide_tls_get_info(d->ta, &ci), TIDE_EINVAL);
    assert_int_equal(tide_tls_get_info(h[0].tls, &ci), 0);
    assert_non_null(ci.version);
    assert_true(strcmp(ci.version, "TLSv1.2") == 0 || strcmp(ci.version, "TLSv1.3") == 0);
    assert_string_equal(ci.version, si.version);
    assert_non_null(ci.cipher);
    assert_string_equal(ci.cipher, si.cipher);
    assert_null(ci.alpn);
    assert_string_equal(ci.server_name, "localhost");
    assert_string_equal(si.server_name, "localhost"); /* the client's SNI */
    assert_false(ci.server_side);
    assert_true(si.server_side);
    assert_true(ci.peer_verified);
    assert_false(si.peer_verified);
    assert_false(ci.resumed);

    tide_tls_cert_t cert;
    assert_int_equal(tide_tls_get_peer_certificate(h[0].tls, &cert), 0);
    assert_non_null(strstr(cert.subject, "CN=localhost"));
    assert_non_null(strstr(cert.issuer, "CN=tide test CA"));
    assert_int_equal(cert.not_before, 1577836800);  /* 2020-01-01 00:00:00 UTC */
    assert_int_equal(cert.not_after, 4102444799LL); /* 2099-12-31 23:59:59 UTC */
    assert_true(cert.der_len > 100);
    assert_int_equal(cert.der[0], 0x30);
    /* The server did not ask for a client certificate. */
    assert_int_equal(tide_tls_get_peer_certificate(h[1].tls, &cert), TIDE_ENOENT);
    tide_tls_session_t *sess;
    assert_int_equal(tide_tls_get_session(h[1].tls, &sess), TIDE_EINVAL);

    tide_transport_close(h[1].tls);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 5);
}

static void test_alpn(void **state) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    make_certs();
    tide_tls_config_t *ccfg = client_cfg(CERT_CA);
    tide_tls_config_t *scfg = server_cfg(CERT_LOCALHOST);
    const char *offer[] = {"h2", "http/1.1"};
    const char *accept[] = {"http/1.1", "smtp"};
    assert_int_equal(tide_tls_config_set_alpn(ccfg, offer, 2), 0);
    assert_int_equal(tide_tls_config_set_alpn(scfg, accept, 2), 0);
    const char *bad[] = {""};
    assert_int_equal(tide_tls_config_set_alpn(scfg, bad, 1), TIDE_EINVAL);
    hs_result h[2];
    upgrade_both(d, ccfg, "localhost", scfg, NULL, h);
    tide_tls_config_unref(ccfg);
    tide_tls_config_unref(scfg);
    assert_int_equal(h[0].status, 0);
    tide_tls_info_t ci, si;
    assert_int_equal(tide_tls_get_info(h[0].tls, &ci), 0);
    assert_int_equal(tide_tls_get_info(h[1].tls, &si), 0);
    assert_string_equal(ci.alpn, "http/1.1");
    assert_string_equal(si.alpn, "http/1.1");
    tide_transport_close(h[0].tls);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 5);
}

static void sni_case(void **state, const char *host, int expect_status, const char *expect_cn) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    make_certs();
    tide_tls_config_t *ccfg = client_cfg(CERT_CA);
    tide_tls_config_t *scfg = server_cfg(CERT_LOCALHOST);
    const pem *s = &certs[CERT_SERVER_TEST], *w = &certs[CERT_WILD];
    assert_int_equal(tide_tls_config_add_sni_cert_mem(scfg, "Server.Test", s->crt, strlen(s->crt),
                                                      s->key, strlen(s->key), NULL),
                     0);
    assert_int_equal(tide_tls_config_add_sni_cert_mem(scfg, "*.wild.test", w->crt, strlen(w->crt),
                                                      w->key, strlen(w->key), NULL),
                     0);
    hs_result h[2];
    upgrade_both(d, ccfg, host, scfg, NULL, h);
    tide_tls_config_unref(ccfg);
    tide_tls_config_unref(scfg);
    assert_int_equal(h[0].status, expect_status);
    if (expect_status == 0) {
        tide_tls_cert_t cert;
        assert_int_equal(tide_tls_get_peer_certificate(h[0].tls, &cert), 0);
        assert_non_null(strstr(cert.subject, expect_cn));
        tide_tls_info_t si;
        assert_int_equal(tide_tls_get_info(h[1].tls, &si), 0);
        assert_string_equal(si.server_name, host);
        tide_transport_close(h[0].tls);
    }
    ts_run_until(d->loop, ts_pred_duo_lost, d, 5);
}

static void test_sni_exact(void **state) { sni_case(state, "server.test", 0, "CN=server.test"); }
static void test_sni_wildcard(void **state) { sni_case(state, "a.wild.test", 0, "CN=a.wild.test"); }
static void test_sni_default(void **state) { sni_case(state, "localhost", 0, "CN=localhost"); }
static void test_sni_wildcard_one_label(void **state) {
    /* "*.wild.test" does not cover two labels: the default certificate is served and
     * its name does not match. */
    sni_case(state, "x.a.wild.test", TIDE_ETLS_CERT_HOSTNAME, NULL);
}

/* Resumption with the client's highest version capped at max_version (0: the
 * library's highest): TLS 1.2 resumes by session ID, TLS 1.3 by ticket. */
static void resumption_case(void **state, int max_version) {
    ts_duo *d = sk_open(state, SK_SOCKETPAIR);
    make_certs();
    tide_tls_config_t *ccfg = client_cfg(CERT_CA);
    assert_int_equal(tide_tls_config_set_versions(ccfg, 0, max_version), 0);
    tide_tls_config_t *scfg = server_cfg(CERT_LOCALHOST);
    hs_result h[2];
    upgrade_both(d, ccfg, "localhost", scfg, NULL, h);
    assert_int_equal(h[0].status, 0);
    tide_tls_info_t vi;
    assert_int_equal(tide_tls_get_info(h[0].tls, &vi), 0);
    if (max_version == TIDE_TLS_VERSION_1_2 || !tls13_available())
        assert_string_equal(vi.version, "TLSv1.2");
    else
        assert_string_equal(vi.version, "TLSv1.3");
    /* A TLS 1.3 session is the ticket the server sends after the handshake. One taken
     * at once (as an FTP client does) resumes once the connection has read the ticket;
     * every call gives a session (mbedTLS 3.x exports a session only once). */
    tide_tls_session_t *sess = NULL, *early = NULL;
    assert_int_equal(tide_tls_get_session(h[0].tls, &early), 0);
    assert_int_equal(tide_transport_write(h[1].tls, "ready", 5), 0);
    run_until_len(d->loop, &d->a, 5, 5);
    assert_int_equal(tide_tls_get_session(h[0].tls, &sess), 0);
    tide_tls_info_t info;
    assert_int_equal(tide_tls_get_info(h[0].tls, &info), 0);
    assert_false(info.resumed);
    tide_transport_close(h[0].tls);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 5);

    ts_duo d2;
    ts_duo_init(&d2, d->loop);
    assert_true(sk_connect(&d2, SK_SOCKETPAIR));
    upgrade_both(&d2, ccfg, "localhost", scfg, sess, h);
    assert_int_equal(h[0].status, 0);
    assert_int_equal(h[1].status, 0);
    assert_int_equal(tide_tls_get_info(h[0].tls, &info), 0);
    assert_true(info.resumed);
    assert_int_equal(tide_tls_get_info(h[1].tls, &info), 0);
    assert_true(info.resumed);
    assert_int_equal(tide_transport_write(h[0].tls, "resumed", 7), 0);
    run_until_len(d->loop, &d2.b, 7, 5);
    tide_transport_close(h[0].tls);
    ts_run_until(d->loop, ts_pred_duo_lost, &d2, 5);
    ts_duo_free(&d2);

    /* The session taken before the ticket, after its connection is gone. */
    ts_duo_init(&d2, d->loop);
    assert_true(sk_connect(&d2, SK_SOCKETPAIR));
    upgrade_both(&d2, ccfg, "localhost", scfg, early, h);
    assert_int_equal(h[0].status, 0);
    assert_int_equal(tide_tls_get_info(h[0].tls, &info), 0);
    assert_true(info.resumed);
    assert_int_equal(tide_tls_get_info(h[1].tls, &info), 0);
    assert_true(info.resumed);
    tide_transport_close(h[0].tls);
    ts_run_until(d->loop, ts_pred_duo_lost, &d2, 5);
    ts_duo_free(&d2);
    tide_tls_session_free(early);

    /* A server without a cache makes a full handshake. */
    tide_tls_config_t *nocache = server_cfg(CERT_LOCALHOST);
    assert_int_equal(tide_tls_config_set_session_cache(nocache, false, 0), 0);
    ts_duo_init(&d2, d->loop);
    assert_true(sk_connect(&d2, SK_SOCKETPAIR));
    upgrade_both(&d2, ccfg, "localhost", nocache, sess, h);
    assert_int_equal(h[0].status, 0);
    assert_int_equal(tide_tls_get_info(h[0].tls, &info), 0);
    assert_false(info.resumed);
    assert_int_equal(tide_tls_get_info(h[1].tls, &info), 0);
    assert_false(info.resumed);
    tide_transport_close(h[0].tls);
    ts_run_until(d->loop, ts_pred_duo_lost, &d2, 5);
    ts_duo_free(&d2);
    tide_tls_session_free(sess);
    tide_tls_config_unref(nocache);
    tide_tls_config_unref(ccfg);
    tide_tls_config_unref(scfg);
}

static void test_session_resumption(void **state) { resumption_case(state, 0); }
static void test_session_resumption_tls12(void **state) {
    resumption_case(state, TIDE_TLS_VERSION_1_2);
}

/* ---- configuration ---------------------------------------------------------------------- */

static void test_config_rules(void **state) {
    (void)state;
    make_certs();
    assert_true(tide_tls_available());
    assert_non_null(strstr(tide_tls_library_version(), "TLS"));
    tide_tls_config_t *cfg = client_cfg(CERT_CA);
    assert_false(tide_tls_config_is_server(cfg));
    assert_ptr_equal(tide_tls_config_ref(cfg), cfg);
    tide__tls_params p = {.config = cfg, .server_hostname = "localhost", .session = NULL};
    assert_int_equal(tide__tls_check(&p), 0);
    /* Frozen by its first use. */
    assert_int_equal(tide_tls_config_set_verify_peer(cfg, false), TIDE_EBUSY);
    assert_int_equal(tide_tls_config_set_timeouts(cfg, 1, 1), TIDE_EBUSY);
    assert_int_equal(
        tide_tls_config_load_ca_mem(cfg, certs[CERT_CA2].crt, strlen(certs[CERT_CA2].crt)),
        TIDE_EBUSY);
    p.server_hostname = NULL;
    assert_int_equal(tide__tls_check(&p), TIDE_ETLS_NO_HOSTNAME);
    tide_tls_config_unref(cfg);
    tide_tls_config_unref(cfg);
    tide_tls_config_unref(NULL);

    /* A server needs a certificate. */
    assert_int_equal(tide_tls_config_new_server(&cfg), 0);
    assert_true(tide_tls_config_is_server(cfg));
    p.config = cfg;
    assert_int_equal(tide__tls_check(&p), TIDE_ETLS_CONFIG);
    /* ... and the failure did not freeze it. */
    /* A key that is not the certificate's. */
    assert_true(tide_err_is_tls(tide_tls_config_set_cert_mem(
        cfg, certs[CERT_LOCALHOST].crt, strlen(certs[CERT_LOCALHOST].crt), certs[CERT_CA].key,
        strlen(certs[CERT_CA].key), NULL)));
    assert_int_equal(
        tide_tls_config_set_cert_file(cfg, "/nonexistent/cert.pem", "/nonexistent/key.pem", NULL),
        TIDE_ENOENT);
    assert_int_equal(tide_tls_config_set_versions(cfg, 0x0301, 0), TIDE_EINVAL);
    assert_int_equal(tide_tls_config_set_versions(cfg, TIDE_TLS_VERSION_1_2, 0), 0);
    tide_tls_config_unref(cfg);

    /* A client with no CA loaded and no system bundle has nothing to trust. */
    const char *saved = getenv("SSL_CERT_FILE");
    char *copy = saved ? strdup(saved) : NULL;
    setenv("SSL_CERT_FILE", "/nonexistent/ca.pem", 1);
    assert_int_equal(tide_tls_config_new_client(&cfg), 0);
    p.config = cfg;
    p.server_hostname = "localhost";
    assert_int_equal(tide__tls_check(&p), TIDE_ETLS_NO_TRUST);
    assert_int_equal(tide_tls_config_load_ca_file(cfg, "/nonexistent/ca.pem"), TIDE_ENOENT);
    assert_int_equal(tide_tls_config_load_ca_mem(cfg, "junk", 4) < 0, true);
    assert_int_equal(
        tide_tls_config_load_ca_mem(cfg, certs[CERT_CA].crt, strlen(certs[CERT_CA].crt)), 0);
    assert_int_equal(tide__tls_check(&p), 0);
    tide_tls_config_unref(cfg);
    if (copy) {
        setenv("SSL_CERT_FILE", copy, 1);
        free(copy);
    } else {
        unsetenv("SSL_CERT_FILE");
    }
}

/* This file makes certificates with mbedTLS itself: its headers must be those of the
 * library it runs with, and of the ones tide was built with (two mbedTLS installed,
 * say Debian's 2.28 and a 3.x prefix, must not be mixed; the structures differ). */
static void test_same_mbedtls(void **state) {
    (void)state;
    assert_string_equal(tide_tls_library_version(), MBEDTLS_VERSION_STRING_FULL);
#if defined(MBEDTLS_VERSION_C)
    assert_int_equal(mbedtls_version_get_number(), MBEDTLS_VERSION_NUMBER);
#endif
}

/* An engine fills every op of the table: the layer calls them without checking. */
static void test_engine_ops_complete(void **state) {
    (void)state;
    const tide__tls_engine_ops *e = &tide__tls_engine;
    assert_non_null(e->name);
    const void *ops[] = {
        (const void *)e->library_version,
        (const void *)e->version_supported,
        (const void *)e->describe,
        (const void *)e->conf_new,
        (const void *)e->conf_free,
        (const void *)e->conf_add_ca,
        (const void *)e->conf_add_ca_dir,
        (const void *)e->conf_add_pair,
        (const void *)e->conf_freeze,
        (const void *)e->conn_new,
        (const void *)e->conn_setup,
        (const void *)e->conn_set_peer,
        (const void *)e->conn_offer_session,
        (const void *)e->conn_free,
        (const void *)e->handshake,
        (const void *)e->read,
        (const void *)e->write,
        (const void *)e->close_notify,
        (const void *)e->bytes_ready,
        (const void *)e->has_pending,
        (const void *)e->awaits_ticket,
        (const void *)e->first_flight_alert,
        (const void *)e->state,
        (const void *)e->peer_certificate,
        (const void *)e->get_session,
        (const void *)e->session_free,
    };
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        assert_non_null(ops[i]);
    assert_true(e->version_supported(TIDE_TLS_VERSION_1_2));
    assert_string_equal(tide_tls_library_version(), e->library_version());
}

static void test_strerror(void **state) {
    (void)state;
    char buf[256];
    int code = TIDE_ETLS_BASE + MBEDTLS_ERR_SSL_INVALID_MAC;
    assert_true(tide_err_is_tls(code));
    tide_strerror_r(code, buf, sizeof(buf));
    assert_non_null(strstr(buf, "MAC"));
    tide_strerror_r(TIDE_ETLS_CERT_EXPIRED, buf, sizeof(buf));
    assert_non_null(strstr(buf, "expired"));
}

/* ---- layers made for a transport not started yet (connect and accept) ------------------ */

typedef struct newpath {
    tide__tls *tls;
    ts_recorder *r;
    int calls;
    int status;
    bool give_up; /* abort the layer from the handshake callback instead of starting it */
} newpath;

static void newpath_hs(tide__tls *tls, int status, void *arg) {
    newpath *n = arg;
    n->calls++;
    n->status = status;
    if (status != 0)
        return;
    if (n->give_up) {
        tide__tls_abort(tls);
        return;
    }
    tide_transport_t *t = tide__tls_transport(tls);
    t->protocol = &n->r->base;
    tide__transport_start(t, NULL, NULL);
}

static bool pred_newpath(void *arg) {
    newpath *n = arg;
    return n[0].calls > 0 && n[1].calls > 0;
}

static void newpath_pair(ts_duo *d, int ca, const char *host, newpath n[2]) {
    make_certs();
    tide_tls_config_t *ccfg = client_cfg(ca);
    tide_tls_config_t *scfg = server_cfg(CERT_LOCALHOST);
    tide__tls_params cp = {.config = ccfg, .server_hostname = host, .session = NULL},
                     sp = {.config = scfg, .server_hostname = NULL, .session = NULL};
    n[0].r = &d->a;
    n[1].r = &d->b;
    assert_int_equal(tide__tls_new(d->loop, &cp, newpath_hs, &n[0], &n[0].tls), 0);
    assert_int_equal(tide__tls_new(d->loop, &sp, newpath_hs, &n[1], &n[1].tls), 0);
    tide_tls_config_unref(ccfg);
    tide_tls_config_unref(scfg);
    assert_int_equal(tide_memory_pair_new(d->loop, tide__tls_lower_protocol(n[0].tls),
                                          tide__tls_lower_protocol(n[1].tls), NULL, NULL),
                     0);
    ts_run_until(d->loop, pred_newpath, n, 10);
}

static void test_new_layer(void **state) {
    ts_duo *d = *state;
    newpath n[2];
    memset(n, 0, sizeof(n));
    newpath_pair(d, CERT_CA, "localhost", n);
    assert_int_equal(n[0].status, 0);
    assert_int_equal(n[1].status, 0);
    ts_run_until(d->loop, ts_pred_duo_made, d, 5);
    assert_true(tide_transport_is_tls(d->a.transport));
    assert_true(tide_transport_is_tls(d->b.transport));
    d->b.echo = true;
    assert_int_equal(tide_transport_write(d->a.transport, "new path", 8), 0);
    run_until_len(d->loop, &d->a, 8, 5);
    assert_memory_equal(d->a.data, "new path", 8);
    tide_transport_close(d->a.transport);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 5);
    assert_int_equal(d->a.lost_status, 0);
    assert_int_equal(d->b.lost_status, 0);
    assert_string_equal(d->b.events, "MDEL");
}

static void test_new_layer_fails(void **state) {
    /* A failed handshake reaches no protocol: the layers free themselves. */
    ts_duo *d = *state;
    newpath n[2];
    memset(n, 0, sizeof(n));
    newpath_pair(d, CERT_CA2, "localhost", n);
    assert_int_equal(n[0].status, TIDE_ETLS_CERT_UNTRUSTED);
    assert_true(n[1].status < 0);
    ts_spin(d->loop, 10);
    assert_int_equal(d->a.made + d->b.made, 0);
}

static void test_new_layer_given_up(void **state) {
    /* The server's factory declined after the handshake: the client sees the end. */
    ts_duo *d = *state;
    newpath n[2];
    memset(n, 0, sizeof(n));
    n[1].give_up = true;
    newpath_pair(d, CERT_CA, "localhost", n);
    assert_int_equal(n[0].status, 0);
    ts_run_until(d->loop, ts_pred_lost, &d->a, 5);
    assert_true(d->a.lost_status < 0);
    assert_int_equal(d->b.made, 0);
}

static void test_buffered_app(void **state) {
    /* A buffered application protocol reads decrypted bytes straight into its buffer. */
    ts_duo *d = *state;
    ts_recorder_free(&d->b);
    ts_recorder_init_buffered(&d->b);
    newpath n[2];
    memset(n, 0, sizeof(n));
    newpath_pair(d, CERT_CA, "localhost", n);
    ts_run_until(d->loop, ts_pred_duo_made, d, 5);
    uint64_t off = 0;
    while (off < 1024 * 1024)
        sk_write_pattern(d->a.transport, 64 * 1024, &off);
    run_until_len(d->loop, &d->b, (size_t)off, 10);
    sk_expect_pattern(&d->b, off);
    tide_transport_close(d->a.transport);
    ts_run_until(d->loop, ts_pred_duo_lost, d, 5);
    assert_int_equal(d->b.lost_status, 0);
}

/* ---- one frozen configuration, several loops on several threads ------------------------ */

typedef struct worker {
    tide_tls_config_t *ccfg, *scfg;
    int ok; /* handshakes that completed and moved data */
    int resumed;
} worker;

typedef struct thr_conn {
    ts_recorder a, b;
    hs_result h[2];
} thr_conn;

static bool pred_thr_made(void *arg) {
    thr_conn *c = arg;
    return c->a.made && c->b.made;
}

/* The server echoes: the client has then also read what the server sent after its
 * handshake (TLS 1.3: the session ticket that makes the session resumable). */
static bool pred_thr_done(void *arg) {
    thr_conn *c = arg;
    return c->a.len >= 5 || c->a.lost || c->b.lost;
}

static bool pred_thr_lost(void *arg) {
    thr_conn *c = arg;
    return c->a.lost && c->b.lost;
}

/* Bounded runs without cmocka (its asserts must stay on the main thread): everything
 * here is in memory, so nothing ever waits on the kernel and the loop never blocks. */
static bool thr_run(tide_loop_t *loop, bool (*pred)(void *), void *arg) {
    double until = tide__now_monotonic() + ts_scaled(20);
    while (!pred(arg) && tide__now_monotonic() < until)
        tide_loop_run(loop, TIDE_RUN_NOWAIT);
    return pred(arg);
}

static void *worker_main(void *arg) {
    worker *w = arg;
    tide_loop_t *loop = NULL;
    if (tide_loop_new(&loop) != 0)
        return NULL;
    tide_tls_session_t *sess = NULL;
    for (int i = 0; i < 8; i++) {
        thr_conn c;
        memset(&c, 0, sizeof(c));
        ts_recorder_init(&c.a);
        ts_recorder_init(&c.b);
        tide_transport_t *ta, *tb;
        if (tide_memory_pair_new(loop, &c.a.base, &c.b.base, &ta, &tb) != 0 ||
            !thr_run(loop, pred_thr_made, &c))
            break;
        c.h[0].r = &c.a;
        c.h[1].r = &c.b;
        c.b.echo = true;
        if (tide_loop_start_tls(loop, ta, &c.a.base, w->ccfg, "localhost", sess, on_start_tls,
                                &c.h[0]) != 0 ||
            tide_loop_start_tls(loop, tb, &c.b.base, w->scfg, NULL, NULL, on_start_tls,
                                &c.h[1]) != 0)
            break;
        if (thr_run(loop, pred_both_hs, c.h) && c.h[0].status == 0 && c.h[1].status == 0) {
            tide_transport_write(c.h[0].tls, "hello", 5);
            thr_run(loop, pred_thr_done, &c);
        }
        if (c.h[0].status == 0 && c.b.len == 5 && c.a.len == 5) {
            w->ok++;
            tide_tls_info_t info;
            if (tide_tls_get_info(c.h[1].tls, &info) == 0 && info.resumed)
                w->resumed++;
            if (sess == NULL)
                tide_tls_get_session(c.h[0].tls, &sess);
        }
        tide_transport_close(c.a.transport);
        tide_transport_close(c.b.transport);
        thr_run(loop, pred_thr_lost, &c);
        ts_recorder_free(&c.a);
        ts_recorder_free(&c.b);
    }
    tide_tls_session_free(sess);
    if (tide_loop_close(loop) != 0)
        w->ok = -1000;
    return NULL;
}

static void test_threads_share_config(void **state) {
    (void)state;
    make_certs();
    tide_tls_config_t *ccfg = client_cfg(CERT_CA);
    tide_tls_config_t *scfg = server_cfg(CERT_LOCALHOST);
    worker w[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        w[i] = (worker){ccfg, scfg, 0, 0};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].ok, 8);
        /* Every connection after the first offers the session and is resumed. */
        assert_int_equal(w[i].resumed, 7);
    }
    tide_tls_config_unref(ccfg);
    tide_tls_config_unref(scfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        /* The engine and the library its tests were built with. */
        cmocka_unit_test(test_same_mbedtls), /* first: a mismatch breaks the rest */
        cmocka_unit_test(test_engine_ops_complete),
        /* Handshake, data, verification. */
        TS_DUO_TEST(test_handshake_echo_close),
        TS_DUO_TEST(test_memory_pair),
        TS_DUO_TEST(test_verify_untrusted),
        TS_DUO_TEST(test_verify_expired),
        TS_DUO_TEST(test_verify_not_yet_valid),
        TS_DUO_TEST(test_verify_hostname),
        TS_DUO_TEST(test_verify_self_signed),
        TS_DUO_TEST(test_no_hostname_and_verify_off),
        /* Closing. */
        TS_DUO_TEST(test_truncation),
        TS_DUO_TEST(test_abort_tls),
        TS_DUO_TEST(test_close_notify_wait),
        TS_DUO_TEST(test_wait_close_notify_timeout),
        /* Deadlines and failures mid-handshake. */
        TS_DUO_TEST(test_handshake_timeout_client),
        TS_DUO_TEST(test_handshake_timeout_server),
        TS_DUO_TEST(test_handshake_default_deadline),
        TS_DUO_TEST(test_close_during_handshake),
        TS_DUO_TEST(test_eof_during_handshake),
        TS_DUO_TEST(test_start_tls_refused),
        TS_DUO_TEST(test_flipped_byte),
        /* start_tls on a live connection. */
        TS_DUO_TEST(test_upgrade_with_received),
        TS_DUO_TEST(test_writes_before_handshake),
        /* Flow control. */
        TS_DUO_TEST(test_pause_reading_buffered),
        TS_DUO_TEST(test_pause_reading_backpressure),
        TS_DUO_TEST(test_lost_while_paused),
        TS_DUO_TEST(test_limits_lowered_with_output_queued),
        TS_DUO_TEST(test_big_transfer),
        /* Inspection, ALPN, SNI. */
        TS_DUO_TEST(test_info_and_certificate),
        TS_DUO_TEST(test_alpn),
        TS_DUO_TEST(test_sni_exact),
        TS_DUO_TEST(test_sni_wildcard),
        TS_DUO_TEST(test_sni_default),
        TS_DUO_TEST(test_sni_wildcard_one_label),
        /* Sessions. */
        TS_DUO_TEST(test_session_resumption),
        TS_DUO_TEST(test_session_resumption_tls12),
        /* Layers for connect and accept. */
        TS_DUO_TEST(test_new_layer),
        TS_DUO_TEST(test_new_layer_fails),
        TS_DUO_TEST(test_new_layer_given_up),
        TS_DUO_TEST(test_buffered_app),
        /* Configurations, and the engine's error text. */
        cmocka_unit_test(test_threads_share_config),
        cmocka_unit_test(test_config_rules),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
