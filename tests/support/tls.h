/* TLS test support, shared by every TLS test in the tree:
 *
 * - a certificate factory: once per test process, the `openssl` command writes a test
 *   CA and certificates signed by it (valid, expired, not yet valid, for the wrong host,
 *   a client certificate) and a second CA nobody trusts, into a fresh temporary
 *   directory that is removed at exit;
 * - configurations built from them, and shared connect / server options so that
 *   conformance suites can stamp TLS kinds (TLS over TCP, over a socketpair through
 *   tide_loop_connect_socket / connect_accepted_socket with these options);
 * - peer processes (openssl s_server / s_client, Python ssl scripts in
 *   tests/interop/tls_peer.py) started with pipes on stdin and stdout+stderr, whose
 *   output is read through the tide loop (or poll() without one), every wait bounded
 *   (ts_scaled), and which are killed and reaped at the end.
 *
 * A test calling tt_certs_get() (as every helper here does) is skipped (cmocka skip())
 * when tide was built without TLS or there is no openssl binary; any other failure to
 * make the certificates fails it. Include after support.h. */
#ifndef TIDE_TEST_TLS_H
#define TIDE_TEST_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "support/support.h"
#include "tide.h"

/* ---- certificates ------------------------------------------------------------------- */

#define TT_PATH 256

/* Paths of PEM files; every leaf key is EC P-256 but weak_key's. Leaf certificates carry SAN DNS names
 * (the server ones: "localhost", "server.test" and IP 127.0.0.1). */
typedef struct tt_certs {
    char dir[TT_PATH];
    char ca[TT_PATH], ca_key[TT_PATH];           /* the trusted test CA */
    char server[TT_PATH], server_key[TT_PATH];   /* localhost, server.test; valid */
    char expired[TT_PATH], expired_key[TT_PATH]; /* localhost; ended yesterday */
    char future[TT_PATH], future_key[TT_PATH];   /* localhost; starts tomorrow */
    char other[TT_PATH], other_key[TT_PATH];     /* other.test only */
    char unknown_ca[TT_PATH];                    /* a second CA, never trusted */
    char unknown[TT_PATH], unknown_key[TT_PATH]; /* localhost, signed by unknown_ca */
    char client[TT_PATH], client_key[TT_PATH];   /* client.test, clientAuth (mTLS) */
    char weak_key[TT_PATH], weak_key_key[TT_PATH];   /* localhost, an RSA-1024 key */
    char weak_hash[TT_PATH], weak_hash_key[TT_PATH]; /* localhost, signed with SHA-1 */
    char client_only[TT_PATH], client_only_key[TT_PATH]; /* localhost, clientAuth only */
    char chain[TT_PATH];                         /* server + ca, for peers wanting a chain */
} tt_certs;

/* The certificates, made on first use. Skips the test without TLS or openssl. */
const tt_certs *tt_certs_get(void);

/* True when an `openssl` binary is on PATH. */
bool tt_have_openssl(void);

/* A client configuration trusting ca_file (NULL: the test CA), verification on, with
 * the handshake and shutdown deadlines given (<= 0: defaults). Caller unrefs. */
tide_tls_config_t *tt_client_config(const char *ca_file, double handshake_timeout);
/* A server configuration with cert/key (NULL: the valid server certificate). */
tide_tls_config_t *tt_server_config(const char *cert, const char *key, double handshake_timeout);

/* The name of a TLS code and mbedTLS's text, for failure messages (static buffer). */
const char *tt_err(int code);

/* ---- TLS kinds for conformance suites ------------------------------------------------ */

/* Process-wide configurations (test CA, valid server certificate, 10 s handshake
 * deadline), made on first use and released at exit: client options with
 * server_hostname "localhost" (so that connects to 127.0.0.1 or over a socketpair
 * verify), and server options. */
const tide_connect_options_t *tt_tls_connect_options(void);
const tide_server_options_t *tt_tls_server_options(void);

/* ---- peer processes ------------------------------------------------------------------ */

typedef struct tt_proc tt_proc;

/* Starts argv (argv[0] searched on PATH) with pipes on stdin and stdout+stderr, dying
 * with the test process. With a loop, its output is read by the loop whenever the loop
 * runs (so peer output wakes ts_run_until and never fills the pipe); without, by the
 * waits below through poll(). Fails the test when it cannot start. Free with
 * tt_proc_free (also done for every live process by tt_proc_free_all). */
tt_proc *tt_proc_start(tide_loop_t *loop, const char *const *argv);

/* Python: /usr/bin/python3 when present, else python3 from PATH (skips the test when
 * there is none); and the path of tests/interop/tls_peer.py. */
const char *tt_python(void);
const char *tt_peer_script(void);

/* Waits until the output contains needle (true), or the output ended or `seconds`
 * (scaled) passed (false). With a loop, the waits below run it (so never call them
 * from the loop's own callbacks); free the process before closing its loop. */
bool tt_proc_wait_for(tt_proc *p, const char *needle, double seconds);
/* The same, failing the test (with the output) when not found. */
void tt_proc_expect(tt_proc *p, const char *needle, double seconds);
/* Waits for a line starting with prefix and returns the number that ends it ("ACCEPT
 * [::]:4433", "PORT 4433"); fails the test when none comes. */
long tt_proc_expect_number(tt_proc *p, const char *prefix, double seconds);
/* Waits for the process to exit and returns its exit code (128 + signal when killed),
 * or -1 when `seconds` passed first (it keeps running). */
int tt_proc_wait_exit(tt_proc *p, double seconds);

/* Everything the process printed so far (NUL-terminated), and its length. */
const char *tt_proc_output(const tt_proc *p, size_t *len);
/* Writes to its stdin (blocking, bounded; small amounts); closes its stdin. */
void tt_proc_write(tt_proc *p, const void *data, size_t len);
void tt_proc_close_stdin(tt_proc *p);
/* Kills (SIGKILL) if still running, reaps, closes the pipes, frees. NULL is a no-op. */
void tt_proc_free(tt_proc *p);
void tt_proc_free_all(void);

/* `openssl s_server -accept 0 -naccept 1` with cert/key (NULL: the valid server
 * certificate) and extra arguments after those (NULL-terminated list, may be NULL; a
 * repeated option such as -naccept overrides); returns the process and *port once it
 * accepts. */
tt_proc *tt_s_server(tide_loop_t *loop, const char *cert, const char *key, const char *const *extra,
                     uint16_t *port);
/* `openssl s_client -connect 127.0.0.1:port -servername localhost -CAfile <ca>` with
 * extra arguments (may be NULL). */
tt_proc *tt_s_client(tide_loop_t *loop, uint16_t port, const char *const *extra);
/* tests/interop/tls_peer.py mode args... (NULL-terminated). */
tt_proc *tt_py_peer(tide_loop_t *loop, const char *const *args);

/* A cmocka teardown-friendly cleanup: frees every live process. */
int tt_teardown_procs(void **state);

#endif
