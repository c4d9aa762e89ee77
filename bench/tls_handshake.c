/* tls_handshake: the client side of bench/tls_handshake.py. Makes TLS 1.2 handshakes
 * with a server, one at a time, for a given time, and prints how many it made.
 *
 *   tls_handshake PORT SECONDS MODE [GROUPS]
 *
 * MODE: full (a new session each time), id (resume the first session by its session ID:
 * tickets refused), ticket (resume by session ticket). GROUPS: OpenSSL's list of
 * key-exchange groups to offer (default: OpenSSL's own, X25519 first). Each connection
 * ends with close_notify. Output, one JSON line: {"handshakes": N, "resumed": R,
 * "seconds": S, "cipher": ..., "group": ...}. Exit 1 on any failure.
 *
 * OpenSSL on the client keeps its own cost low (no verification of the server's chain:
 * the server's cost is what is measured, from its /proc/PID/stat). */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: tls_handshake PORT SECONDS full|id|ticket [GROUPS]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    double seconds = atof(argv[2]);
    const char *mode = argv[3];
    int resume = strcmp(mode, "full") != 0;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (strcmp(mode, "ticket") != 0)
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    if (argc > 4 && SSL_CTX_set1_groups_list(ctx, argv[4]) != 1) {
        fprintf(stderr, "tls_handshake: bad groups %s\n", argv[4]);
        return 2;
    }
    SSL_SESSION *session = NULL;
    long made = 0, resumed = 0;
    char cipher[64] = "", group[32] = "";
    double start = now(), end = start + seconds;
    while (now() < end) {
        int fd = dial(port);
        if (fd < 0) {
            perror("tls_handshake: connect");
            return 1;
        }
        SSL *ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        SSL_set_tlsext_host_name(ssl, "localhost");
        if (resume && session)
            SSL_set_session(ssl, session);
        if (SSL_connect(ssl) != 1) {
            fprintf(stderr, "tls_handshake: handshake %ld failed\n", made);
            ERR_print_errors_fp(stderr);
            return 1;
        }
        made++;
        if (SSL_session_reused(ssl))
            resumed++;
        if (made == 1) {
            snprintf(cipher, sizeof(cipher), "%s", SSL_get_cipher_name(ssl));
            int nid = SSL_get_negotiated_group(ssl);
            const char *name = nid ? OBJ_nid2sn(nid) : "";
            snprintf(group, sizeof(group), "%s", name ? name : "");
        }
        if (resume && session == NULL)
            session = SSL_get1_session(ssl);
        SSL_shutdown(ssl); /* our close_notify; the server answers by closing */
        SSL_free(ssl);
        close(fd);
    }
    printf("{\"handshakes\": %ld, \"resumed\": %ld, \"seconds\": %.3f, \"cipher\": \"%s\", "
           "\"group\": \"%s\"}\n",
           made, resumed, now() - start, cipher, group);
    if (session)
        SSL_SESSION_free(session);
    SSL_CTX_free(ctx);
    return 0;
}
