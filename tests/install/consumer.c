/* A program outside the tide tree, built against an installed tide (through
 * find_package or pkg-config): checks that headers and library agree and that a loop
 * runs a callback and closes cleanly. Single-threaded. */
#include <stdio.h>

#include <tide.h>

static void ran(tide_loop_t *loop, void *arg) {
    (void)loop;
    *(int *)arg += 1;
}

int main(void) {
    if (tide_version() != TIDE_VERSION_HEX) {
        fprintf(stderr, "consumer: header version %s (0x%06x) but library %s (0x%06x)\n",
                TIDE_VERSION_STRING, (unsigned)TIDE_VERSION_HEX, tide_version_string(),
                tide_version());
        return 1;
    }
    tide_loop_t *loop = NULL;
    int rc = tide_loop_new(&loop);
    if (rc != 0) {
        fprintf(stderr, "consumer: tide_loop_new: %s\n", tide_strerror(rc));
        return 1;
    }
    int calls = 0;
    if (tide_loop_call_soon(loop, ran, &calls) == NULL) {
        fprintf(stderr, "consumer: tide_loop_call_soon failed\n");
        return 1;
    }
    rc = tide_loop_run(loop, TIDE_RUN_DEFAULT);
    if (rc != 0 || calls != 1) {
        fprintf(stderr, "consumer: run returned %d, callback ran %d times\n", rc, calls);
        return 1;
    }
    rc = tide_loop_close(loop);
    if (rc != 0) {
        fprintf(stderr, "consumer: tide_loop_close: %s\n", tide_strerror(rc));
        return 1;
    }
    /* A TLS call, so that a static link must bring mbedTLS along. */
    tide_tls_config_t *tls = NULL;
    rc = tide_tls_config_new_client(&tls);
    if (rc != 0 && rc != TIDE_ENOSYS) {
        fprintf(stderr, "consumer: tide_tls_config_new_client: %s\n", tide_strerror(rc));
        return 1;
    }
    tide_tls_config_unref(tls);
    printf("consumer: tide %s ok (TLS: %s)\n", tide_version_string(),
           tide_tls_available() ? tide_tls_library_version() : "none");
    return 0;
}
