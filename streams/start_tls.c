/* StreamWriter.start_tls: upgrading a stream's connection to TLS, in both styles.
 *
 * The stream's adapter protocol moves to the TLS transport at once: writes made while
 * the handshake runs queue inside TLS and go out encrypted, never as plaintext. Bytes
 * the reader holds unread were received before the upgrade point; they are handed to
 * the TLS layer, not to a read. A peer that pipelined plaintext behind its STARTTLS
 * command (or behind its ready reply) thereby breaks the handshake, and the injected
 * bytes never reach the application (CVE-2011-0411 and its client-side twin). Bytes
 * that are really the peer's early ClientHello make the handshake go on.
 *
 * Lifetime: the stream is not freed while the handshake runs (idle() checks the
 * flag). The await form is in await.c with the others. */
#include "streams/streams_int.h"
#include "transports/tls_int.h"

static void started(tide_loop_t *loop, int status, tide_transport_t *tls, void *arg) {
    (void)loop;
    (void)tls;
    tide__stream *s = arg;
    s->flags &= ~(unsigned)TIDE__S_TLS_STARTING;
    if (status == 0)
        s->flags |= TIDE__S_TLS;
    tide_writer_cb cb = s->tls_cb;
    s->tls_cb = NULL;
    if (cb)
        cb(s, status, s->tls_arg);
    tide__stream_maybe_free(s);
}

int tide_writer_start_tls(tide_writer_t *s, tide_tls_config_t *config, const char *server_hostname,
                          const tide_tls_session_t *session, tide_writer_cb cb, void *arg) {
    if (s == NULL || config == NULL || cb == NULL)
        return TIDE_EINVAL;
    if (s->flags & (TIDE__S_TLS_STARTING | TIDE__S_TLS))
        return TIDE_EBUSY;
    if (s->transport == NULL || tide_transport_is_closing(s->transport))
        return TIDE_ECLOSED;
    tide__tls_params params = {
        .config = config, .server_hostname = server_hostname, .session = session};
    tide_reader_t *r = &s->reader;
    tide_transport_t *tls = NULL;
    int rc = tide__tls_upgrade(s->loop, s->transport, &s->proto, &params, tide__buf_begin(&r->buf),
                               r->buf.len, started, s, &tls);
    if (rc < 0)
        return rc;
    s->transport = tls;
    tide__reader_switch_transport(r, tls);
    s->flags |= TIDE__S_TLS_STARTING;
    s->tls_cb = cb;
    s->tls_arg = arg;
    return 0;
}
