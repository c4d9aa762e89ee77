/* The TLS API without TLS support (TIDE_WITH_TLS=OFF): every call fails with
 * TIDE_ENOSYS, so programs link and can test tide_tls_available() at run time.
 * With TLS support this file is not built; transports/tls.c and its engine are. */
#include <stddef.h>

#include "transports/tls_int.h"

bool tide_tls_available(void) { return false; }

const char *tide_tls_library_version(void) { return "none"; }

int tide_tls_config_new_client(tide_tls_config_t **config) {
    if (config)
        *config = NULL;
    return TIDE_ENOSYS;
}

int tide_tls_config_new_server(tide_tls_config_t **config) {
    if (config)
        *config = NULL;
    return TIDE_ENOSYS;
}

tide_tls_config_t *tide_tls_config_ref(tide_tls_config_t *config) { return config; }

void tide_tls_config_unref(tide_tls_config_t *config) { (void)config; }

bool tide_tls_config_is_server(const tide_tls_config_t *config) {
    (void)config;
    return false;
}

int tide_tls_config_set_verify_peer(tide_tls_config_t *config, bool verify) {
    (void)config;
    (void)verify;
    return TIDE_ENOSYS;
}

int tide_tls_config_load_ca_file(tide_tls_config_t *config, const char *path) {
    (void)config;
    (void)path;
    return TIDE_ENOSYS;
}

int tide_tls_config_load_ca_dir(tide_tls_config_t *config, const char *path) {
    (void)config;
    (void)path;
    return TIDE_ENOSYS;
}

int tide_tls_config_load_ca_mem(tide_tls_config_t *config, const void *data, size_t len) {
    (void)config;
    (void)data;
    (void)len;
    return TIDE_ENOSYS;
}

int tide_tls_config_load_system_ca(tide_tls_config_t *config) {
    (void)config;
    return TIDE_ENOSYS;
}

int tide_tls_config_set_cert_file(tide_tls_config_t *config, const char *cert_path,
                                  const char *key_path, const char *password) {
    (void)config;
    (void)cert_path;
    (void)key_path;
    (void)password;
    return TIDE_ENOSYS;
}

int tide_tls_config_set_cert_mem(tide_tls_config_t *config, const void *cert, size_t cert_len,
                                 const void *key, size_t key_len, const char *password) {
    (void)config;
    (void)cert;
    (void)cert_len;
    (void)key;
    (void)key_len;
    (void)password;
    return TIDE_ENOSYS;
}

int tide_tls_config_add_sni_cert_file(tide_tls_config_t *config, const char *server_name,
                                      const char *cert_path, const char *key_path,
                                      const char *password) {
    (void)config;
    (void)server_name;
    (void)cert_path;
    (void)key_path;
    (void)password;
    return TIDE_ENOSYS;
}

int tide_tls_config_add_sni_cert_mem(tide_tls_config_t *config, const char *server_name,
                                     const void *cert, size_t cert_len, const void *key,
                                     size_t key_len, const char *password) {
    (void)config;
    (void)server_name;
    (void)cert;
    (void)cert_len;
    (void)key;
    (void)key_len;
    (void)password;
    return TIDE_ENOSYS;
}

int tide_tls_config_set_alpn(tide_tls_config_t *config, const char *const *protocols, size_t n) {
    (void)config;
    (void)protocols;
    (void)n;
    return TIDE_ENOSYS;
}

int tide_tls_config_set_versions(tide_tls_config_t *config, int min_version, int max_version) {
    (void)config;
    (void)min_version;
    (void)max_version;
    return TIDE_ENOSYS;
}

int tide_tls_config_set_timeouts(tide_tls_config_t *config, double handshake, double shutdown) {
    (void)config;
    (void)handshake;
    (void)shutdown;
    return TIDE_ENOSYS;
}

int tide_tls_config_set_wait_close_notify(tide_tls_config_t *config, bool wait) {
    (void)config;
    (void)wait;
    return TIDE_ENOSYS;
}

int tide_tls_config_allow_legacy(tide_tls_config_t *config, bool allow) {
    (void)config;
    (void)allow;
    return TIDE_ENOSYS;
}

int tide_tls_config_set_session_cache(tide_tls_config_t *config, bool enabled, double lifetime) {
    (void)config;
    (void)enabled;
    (void)lifetime;
    return TIDE_ENOSYS;
}

int tide_tls_get_session(const tide_transport_t *transport, tide_tls_session_t **session) {
    (void)transport;
    if (session)
        *session = NULL;
    return TIDE_ENOSYS;
}

void tide_tls_session_free(tide_tls_session_t *session) { (void)session; }

int tide_loop_start_tls(tide_loop_t *loop, tide_transport_t *transport, tide_protocol_t *protocol,
                        tide_tls_config_t *config, const char *server_hostname,
                        const tide_tls_session_t *session, tide_start_tls_cb cb, void *arg) {
    (void)loop;
    (void)transport;
    (void)protocol;
    (void)config;
    (void)server_hostname;
    (void)session;
    (void)cb;
    (void)arg;
    return TIDE_ENOSYS;
}

int tide_tls_get_info(const tide_transport_t *transport, tide_tls_info_t *info) {
    (void)transport;
    (void)info;
    return TIDE_ENOSYS;
}

int tide_tls_get_peer_certificate(const tide_transport_t *transport, tide_tls_cert_t *cert) {
    (void)transport;
    (void)cert;
    return TIDE_ENOSYS;
}

bool tide_transport_is_tls(const tide_transport_t *transport) {
    (void)transport;
    return false;
}

int tide__tls_check(const tide__tls_params *params) {
    (void)params;
    return TIDE_ENOSYS;
}

int tide__tls_new(tide_loop_t *loop, const tide__tls_params *params, tide__tls_handshake_cb cb,
                  void *arg, tide__tls **out) {
    (void)loop;
    (void)params;
    (void)cb;
    (void)arg;
    if (out)
        *out = NULL;
    return TIDE_ENOSYS;
}

/* Only plain sockets: a caller asking for TLS was refused by tide__tls_check. */
int tide__tls_wrap_fd(tide_loop_t *loop, int fd, const tide__tls_params *params,
                      tide__tls_handshake_cb cb, void *arg, tide_transport_t **socket_out,
                      tide__tls **tls_out) {
    (void)cb;
    (void)arg;
    *tls_out = NULL;
    if (params != NULL)
        return TIDE_ENOSYS;
    return tide__socket_transport_new(loop, fd, NULL, socket_out);
}

/* Unreachable without a layer: tide__tls_new never makes one. */
tide_protocol_t *tide__tls_lower_protocol(tide__tls *tls) {
    (void)tls;
    return NULL;
}

tide_transport_t *tide__tls_transport(tide__tls *tls) {
    (void)tls;
    return NULL;
}

tide_transport_t *tide__tls_lower(const tide__tls *tls) {
    (void)tls;
    return NULL;
}

void tide__tls_discard(tide__tls *tls) { (void)tls; }

void tide__tls_abort(tide__tls *tls) { (void)tls; }

int tide__tls_upgrade(tide_loop_t *loop, tide_transport_t *lower, tide_protocol_t *app,
                      const tide__tls_params *params, const void *received, size_t received_len,
                      tide_start_tls_cb cb, void *arg, tide_transport_t **tls_out) {
    (void)loop;
    (void)lower;
    (void)app;
    (void)params;
    (void)received;
    (void)received_len;
    (void)cb;
    (void)arg;
    if (tls_out)
        *tls_out = NULL;
    return TIDE_ENOSYS;
}
