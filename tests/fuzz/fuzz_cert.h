/* The key material the TLS fuzz targets share: a self-signed EC P-256 certificate
 * made at start-up (never a file, so no key is checked in) and a seeded random
 * generator for a peer driven with mbedTLS directly. Single-threaded: call from
 * LLVMFuzzerInitialize and the target's own thread only. */
#ifndef TIDE_FUZZ_CERT_H
#define TIDE_FUZZ_CERT_H

#include <stddef.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/pk.h>

/* Generates an EC P-256 key into pk (initialized by the caller, empty) and a
 * certificate for CN=localhost that it signs itself; writes both as NUL-terminated
 * PEM into crt and key. The caller keeps pk (its owner frees it). abort()s on failure:
 * a target cannot run without it. */
void fuzz_make_cert(mbedtls_pk_context *pk, char *crt, size_t crt_size, char *key, size_t key_size);

/* A process-wide CTR_DRBG, seeded from the system's entropy on first use, for
 * mbedtls_ssl_conf_rng(conf, mbedtls_ctr_drbg_random, fuzz_rng()). */
mbedtls_ctr_drbg_context *fuzz_rng(void);

#endif
