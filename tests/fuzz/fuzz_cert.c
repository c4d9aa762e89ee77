/* See fuzz_cert.h. The generator lives for the whole process (libFuzzer never
 * returns from its main), so it is never freed. */
#include "fuzz_cert.h"

#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/x509_crt.h>

#include "fuzz.h"

mbedtls_ctr_drbg_context *fuzz_rng(void) {
    static mbedtls_entropy_context entropy;
    static mbedtls_ctr_drbg_context rng;
    static int seeded;
    if (!seeded) {
        mbedtls_entropy_init(&entropy);
        mbedtls_ctr_drbg_init(&rng);
        REQUIRE(mbedtls_ctr_drbg_seed(&rng, mbedtls_entropy_func, &entropy, NULL, 0) == 0);
        seeded = 1;
    }
    return &rng;
}

void fuzz_make_cert(mbedtls_pk_context *pk, char *crt, size_t crt_size, char *key,
                    size_t key_size) {
    mbedtls_ctr_drbg_context *rng = fuzz_rng();
    mbedtls_x509write_cert w;
    mbedtls_mpi serial;
    const char *name = "CN=localhost,O=tide fuzz";
    mbedtls_x509write_crt_init(&w);
    mbedtls_mpi_init(&serial);
    int rc = mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (rc == 0)
        rc = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*pk),
                                 mbedtls_ctr_drbg_random, rng);
    if (rc == 0)
        rc = mbedtls_mpi_lset(&serial, 7);
    if (rc == 0) {
        /* Self-signed: the key signs its own certificate. */
        mbedtls_x509write_crt_set_subject_key(&w, pk);
        mbedtls_x509write_crt_set_issuer_key(&w, pk);
        mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
        rc = mbedtls_x509write_crt_set_subject_name(&w, name);
    }
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_issuer_name(&w, name);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_serial(&w, &serial);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_validity(&w, "20200101000000", "20991231235959");
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_basic_constraints(&w, 1, 0);
    if (rc == 0)
        rc = mbedtls_x509write_crt_pem(&w, (unsigned char *)crt, crt_size, mbedtls_ctr_drbg_random,
                                       rng);
    if (rc == 0)
        rc = mbedtls_pk_write_key_pem(pk, (unsigned char *)key, key_size);
    mbedtls_mpi_free(&serial);
    mbedtls_x509write_crt_free(&w);
    REQUIRE(rc == 0);
}
