/* libFuzzer target: the TLS configuration calls that parse what users hand them:
 * CA certificates, certificate and key pairs (PEM or DER, default or per SNI name),
 * ALPN lists, protocol versions and deadlines (include/tide/tls.h).
 *
 * Byte 0 chooses a client or a server configuration; then records follow, each an op
 * byte, a 16-bit little-endian length and that many bytes. Certificate ops take the
 * key from the next record and, for SNI, the server name from the one after. Every
 * call must return 0 or a negative tide code, the configuration must stay usable
 * (a reference taken and dropped), and nothing may leak once it is released.
 * No loop; one configuration per input. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "tide.h"

typedef struct record {
    unsigned op;
    const uint8_t *data;
    size_t len;
} record;

/* The next record, false once the input is used up. */
static bool next(const uint8_t **p, size_t *left, record *r) {
    if (*left < 3)
        return false;
    r->op = (*p)[0];
    size_t len = (size_t)(*p)[1] | (size_t)(*p)[2] << 8;
    *p += 3;
    *left -= 3;
    r->len = len < *left ? len : *left;
    r->data = *p;
    *p += r->len;
    *left -= r->len;
    return true;
}

/* A NUL-terminated copy of at most 299 bytes (stopping at a NUL inside). */
static void text(const record *r, char out[300]) {
    size_t n = r->len < 299 ? r->len : 299;
    memcpy(out, r->data, n);
    out[n] = '\0';
}

static void check_rc(int rc) { REQUIRE(rc <= 0); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    bool server = data[0] & 1;
    tide_tls_config_t *cfg;
    REQUIRE((server ? tide_tls_config_new_server(&cfg) : tide_tls_config_new_client(&cfg)) == 0);
    REQUIRE(tide_tls_config_is_server(cfg) == server);
    const uint8_t *p = data + 1;
    size_t left = size - 1;
    record r, key, name;
    char buf[300];
    while (next(&p, &left, &r)) {
        switch (r.op % 9) {
        case 0:
            check_rc(tide_tls_config_load_ca_mem(cfg, r.data, r.len));
            break;
        case 1:
            if (!next(&p, &left, &key))
                key = r;
            check_rc(tide_tls_config_set_cert_mem(cfg, r.data, r.len, key.data, key.len,
                                                  key.op & 1 ? "secret" : NULL));
            break;
        case 2:
            if (!next(&p, &left, &key))
                key = r;
            if (!next(&p, &left, &name))
                name = key;
            text(&name, buf);
            check_rc(
                tide_tls_config_add_sni_cert_mem(cfg, buf, r.data, r.len, key.data, key.len, NULL));
            break;
        case 3: {
            /* A comma-separated list of protocol names, at most 8. */
            const char *names[8];
            size_t n = 0;
            text(&r, buf);
            for (char *s = buf, *tok; n < 8 && (tok = strsep(&s, ",")) != NULL;)
                names[n++] = tok;
            check_rc(tide_tls_config_set_alpn(cfg, names, r.len == 0 ? 0 : n));
            break;
        }
        case 4: {
            int lo = r.len > 0 ? 0x0300 + r.data[0] % 6 : 0;
            int hi = r.len > 1 ? (r.data[1] & 1 ? 0 : 0x0300 + r.data[1] % 6) : 0;
            check_rc(tide_tls_config_set_versions(cfg, lo, hi));
            break;
        }
        case 5: {
            double t[2] = {0, 0};
            memcpy(t, r.data, r.len < sizeof(t) ? r.len : sizeof(t));
            check_rc(tide_tls_config_set_timeouts(cfg, t[0], t[1]));
            break;
        }
        case 6:
            check_rc(tide_tls_config_set_verify_peer(cfg, r.len > 0 && (r.data[0] & 1)));
            break;
        case 7:
            check_rc(tide_tls_config_set_session_cache(cfg, r.len > 0 && (r.data[0] & 1),
                                                       (double)r.len * 3.5 - 7));
            break;
        default:
            check_rc(tide_tls_config_set_wait_close_notify(cfg, r.len > 0));
            break;
        }
    }
    /* Still a working object: one more reference, dropped, then the last one. */
    REQUIRE(tide_tls_config_ref(cfg) == cfg);
    tide_tls_config_unref(cfg);
    tide_tls_config_unref(cfg);
    return 0;
}
