/* tls_floor: what mbedTLS's own arithmetic costs per operation, the floor under a TLS
 * handshake on tide's server: ECDSA P-256 signature, ECDH key pair and shared secret on
 * X25519 and P-256, the RSA-2048 private operation, and AES-128-GCM and
 * ChaCha20-Poly1305 over 16 KiB records. Builds against mbedTLS 2.28 and 3.x.
 *
 *   tls_floor [SECONDS]
 *
 * Each operation runs for SECONDS (default 1) of this process's CPU time; one JSON line
 * per operation: {"op": ..., "us": microseconds per operation} or, for the ciphers,
 * {"op": ..., "mib_s": MiB per second}, and first {"mbedtls": version}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/version.h>

#include <mbedtls/chachapoly.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdh.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/entropy.h>
#include <mbedtls/gcm.h>
#include <mbedtls/rsa.h>

static mbedtls_ctr_drbg_context drbg;

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void check(int rc, const char *what) {
    if (rc != 0) {
        fprintf(stderr, "tls_floor: %s: -0x%04X\n", what, (unsigned)-rc);
        exit(1);
    }
}

/* Runs op until `seconds` of CPU time passed; returns microseconds per call. */
static double per_op(double seconds, void (*op)(void *), void *arg) {
    op(arg); /* warm: precomputed tables, caches */
    long n = 0;
    double start = cpu_now(), t;
    do {
        op(arg);
        n++;
    } while ((t = cpu_now()) - start < seconds);
    return (t - start) * 1e6 / (double)n;
}

typedef struct ec {
    mbedtls_ecp_group_id id;
    mbedtls_ecp_group grp;
    mbedtls_mpi d, z, peer_d;
    mbedtls_ecp_point q, peer_q;
} ec;

static void ec_init(ec *e, mbedtls_ecp_group_id id) {
    e->id = id;
    mbedtls_ecp_group_init(&e->grp);
    mbedtls_mpi_init(&e->d);
    mbedtls_mpi_init(&e->z);
    mbedtls_mpi_init(&e->peer_d);
    mbedtls_ecp_point_init(&e->q);
    mbedtls_ecp_point_init(&e->peer_q);
    check(mbedtls_ecp_group_load(&e->grp, id), "group");
    check(mbedtls_ecdh_gen_public(&e->grp, &e->peer_d, &e->peer_q, mbedtls_ctr_drbg_random, &drbg),
          "peer key");
}

static void ec_free(ec *e) {
    mbedtls_ecp_group_free(&e->grp);
    mbedtls_mpi_free(&e->d);
    mbedtls_mpi_free(&e->z);
    mbedtls_mpi_free(&e->peer_d);
    mbedtls_ecp_point_free(&e->q);
    mbedtls_ecp_point_free(&e->peer_q);
}

/* The server's ephemeral key pair (a multiplication of the base point). */
static void ecdh_keygen(void *p) {
    ec *e = p;
    check(mbedtls_ecdh_gen_public(&e->grp, &e->d, &e->q, mbedtls_ctr_drbg_random, &drbg),
          "gen_public");
}

/* The same in a group loaded for the purpose, as a TLS handshake does (mbedtls_ecdh_setup
 * per handshake): with MBEDTLS_ECP_FIXED_POINT_OPTIM the base point's table is then
 * built anew each time (P-256; X25519's ladder has none). */
static void ecdh_keygen_fresh(void *p) {
    ec *e = p;
    mbedtls_ecp_group grp;
    mbedtls_ecp_group_init(&grp);
    check(mbedtls_ecp_group_load(&grp, e->id), "group");
    check(mbedtls_ecdh_gen_public(&grp, &e->d, &e->q, mbedtls_ctr_drbg_random, &drbg),
          "gen_public");
    mbedtls_ecp_group_free(&grp);
}

/* The shared secret (a multiplication of the client's point), as openssl speed's ecdh. */
static void ecdh_shared(void *p) {
    ec *e = p;
    check(mbedtls_ecdh_compute_shared(&e->grp, &e->z, &e->peer_q, &e->d, mbedtls_ctr_drbg_random,
                                      &drbg),
          "compute_shared");
}

static void ecdsa_sign(void *p) {
    mbedtls_ecdsa_context *ctx = p;
    unsigned char hash[32] = {1, 2, 3}, sig[MBEDTLS_ECDSA_MAX_LEN];
    size_t len;
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    check(mbedtls_ecdsa_write_signature(ctx, MBEDTLS_MD_SHA256, hash, sizeof(hash), sig,
                                        sizeof(sig), &len, mbedtls_ctr_drbg_random, &drbg),
          "ecdsa sign");
#else
    check(mbedtls_ecdsa_write_signature(ctx, MBEDTLS_MD_SHA256, hash, sizeof(hash), sig, &len,
                                        mbedtls_ctr_drbg_random, &drbg),
          "ecdsa sign");
#endif
}

static void rsa_private(void *p) {
    mbedtls_rsa_context *rsa = p;
    unsigned char in[256] = {0, 1, 2, 3}, out[256];
    check(mbedtls_rsa_private(rsa, mbedtls_ctr_drbg_random, &drbg, in, out), "rsa private");
}

#define RECORD 16384
static unsigned char plain[RECORD], cipher[RECORD];

static void gcm_record(void *p) {
    unsigned char iv[12] = {0}, tag[16], aad[13] = {0};
    check(mbedtls_gcm_crypt_and_tag(p, MBEDTLS_GCM_ENCRYPT, RECORD, iv, sizeof(iv), aad,
                                    sizeof(aad), plain, cipher, sizeof(tag), tag),
          "gcm");
}

static void chachapoly_record(void *p) {
    unsigned char nonce[12] = {0}, tag[16], aad[13] = {0};
    check(
        mbedtls_chachapoly_encrypt_and_tag(p, RECORD, nonce, aad, sizeof(aad), plain, cipher, tag),
        "chachapoly");
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    mbedtls_entropy_context entropy;
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    check(mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, NULL, 0), "seed");
    printf("{\"mbedtls\": \"%s\"}\n", MBEDTLS_VERSION_STRING);

    static const struct {
        const char *name;
        mbedtls_ecp_group_id id;
    } curves[] = {{"x25519", MBEDTLS_ECP_DP_CURVE25519}, {"p256", MBEDTLS_ECP_DP_SECP256R1}};
    for (size_t i = 0; i < 2; i++) {
        ec e;
        ec_init(&e, curves[i].id);
        printf("{\"op\": \"ecdh_keygen_%s\", \"us\": %.1f}\n", curves[i].name,
               per_op(seconds, ecdh_keygen, &e));
        printf("{\"op\": \"ecdh_keygen_fresh_%s\", \"us\": %.1f}\n", curves[i].name,
               per_op(seconds, ecdh_keygen_fresh, &e));
        printf("{\"op\": \"ecdh_shared_%s\", \"us\": %.1f}\n", curves[i].name,
               per_op(seconds, ecdh_shared, &e));
        fflush(stdout);
        ec_free(&e);
    }

    mbedtls_ecdsa_context ecdsa;
    mbedtls_ecdsa_init(&ecdsa);
    check(mbedtls_ecdsa_genkey(&ecdsa, MBEDTLS_ECP_DP_SECP256R1, mbedtls_ctr_drbg_random, &drbg),
          "ecdsa key");
    printf("{\"op\": \"ecdsa_sign_p256\", \"us\": %.1f}\n", per_op(seconds, ecdsa_sign, &ecdsa));
    fflush(stdout);
    mbedtls_ecdsa_free(&ecdsa);

    mbedtls_rsa_context rsa;
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    mbedtls_rsa_init(&rsa);
#else
    mbedtls_rsa_init(&rsa, MBEDTLS_RSA_PKCS_V15, 0);
#endif
    check(mbedtls_rsa_gen_key(&rsa, mbedtls_ctr_drbg_random, &drbg, 2048, 65537), "rsa key");
    printf("{\"op\": \"rsa2048_private\", \"us\": %.1f}\n", per_op(seconds, rsa_private, &rsa));
    fflush(stdout);
    mbedtls_rsa_free(&rsa);

    mbedtls_gcm_context gcm;
    mbedtls_gcm_init(&gcm);
    unsigned char key[32] = {7};
    check(mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, key, 128), "gcm key");
    printf("{\"op\": \"aes128_gcm\", \"mib_s\": %.1f}\n",
           RECORD / per_op(seconds, gcm_record, &gcm) * 1e6 / (1024 * 1024));
    mbedtls_gcm_free(&gcm);

    mbedtls_chachapoly_context cp;
    mbedtls_chachapoly_init(&cp);
    check(mbedtls_chachapoly_setkey(&cp, key), "chachapoly key");
    printf("{\"op\": \"chacha20_poly1305\", \"mib_s\": %.1f}\n",
           RECORD / per_op(seconds, chachapoly_record, &cp) * 1e6 / (1024 * 1024));
    mbedtls_chachapoly_free(&cp);

    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    return 0;
}
