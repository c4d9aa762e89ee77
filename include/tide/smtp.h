/* An SMTP client (RFC 5321) in task style: each call is one step of the dialogue and
 * suspends only the calling task, so a client reads top to bottom:
 *
 *   connect; greeting; hello; [starttls; hello]; [auth]; send_message; quit; close
 *
 * Plain, implicit TLS (port 465) and STARTTLS (RFC 3207, which refuses to go on when
 * the server does not offer it, refuses it, or pipelines anything after its 220 reply:
 * response injection). AUTH PLAIN and LOGIN only under TLS unless the options allow
 * plaintext. Messages go out with every line end as CRLF, leading dots doubled and one
 * CRLF.CRLF at the end (tide_data_encoder_t); SIZE and 8BITMIME are respected.
 *
 * Where it sits: protocols/, on streams and tasks (tide/stream.h, tide/task.h) and the
 * reply parser (tide/reply.h). Every _await call must run inside a task on the
 * session's loop (TIDE_ENOTASK otherwise); each step is bounded by the options'
 * timeout (TIDE_ETIMEOUT). A server that says no gives TIDE_EREPLY, with its reply in
 * tide_smtp_last_reply. Loop thread only. */
#ifndef TIDE_SMTP_H
#define TIDE_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errno.h"
#include "loop.h"
#include "reply.h"
#include "tls.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tide_smtp tide_smtp_t;

typedef enum tide_smtp_security {
    TIDE_SMTP_PLAIN = 0,    /* no TLS (usually port 25) */
    TIDE_SMTP_TLS = 1,      /* TLS from the first byte (port 465) */
    TIDE_SMTP_STARTTLS = 2, /* plain, upgraded by tide_smtp_starttls_await (port 587) */
} tide_smtp_security_t;

typedef struct tide_smtp_options {
    tide_smtp_security_t security;
    /* A client TLS configuration (referenced while the session needs it); required for
     * TLS and STARTTLS. */
    tide_tls_config_t *tls;
    /* The name to verify and send as SNI; NULL: the host connected to. */
    const char *server_hostname;
    /* The name given in EHLO/HELO; NULL: "localhost". */
    const char *helo;
    /* Seconds each step may take; 0: 30. */
    double timeout;
    /* Lets AUTH send credentials over a connection without TLS. */
    bool allow_auth_without_tls;
    /* Sees the dialogue (credentials hidden); may be NULL. */
    tide_dialogue_cb dialogue;
    void *dialogue_arg;
} tide_smtp_options_t;

/* Connects to host:port (TLS from the start with TIDE_SMTP_TLS); does not read the
 * greeting. On success *smtp is the caller's, to end with tide_smtp_close_await.
 * Returns 0, TIDE_EINVAL (NULL arguments, TLS without a configuration, or a HELO
 * name with CR or LF), TIDE_ENOMEM, or the connect's error (resolution, TCP, TLS). */
TIDE_EXTERN int tide_smtp_connect_await(tide_loop_t *loop, const char *host, uint16_t port,
                                        const tide_smtp_options_t *options, tide_smtp_t **smtp);

/* Reads the greeting; 220 is the only good one (else TIDE_EREPLY). */
TIDE_EXTERN int tide_smtp_greeting_await(tide_smtp_t *smtp);

/* EHLO, forgetting what an earlier EHLO advertised; with allow_helo, a server that
 * does not know EHLO (500, 502) gets HELO and the session has no extensions. */
TIDE_EXTERN int tide_smtp_hello_await(tide_smtp_t *smtp, bool allow_helo);

/* STARTTLS and the handshake. TIDE_ENO_STARTTLS when the last EHLO did not offer it,
 * TIDE_ESTARTTLS_REFUSED when the server answered other than 220,
 * TIDE_ESTARTTLS_INJECTION when bytes followed that 220 (then nothing more is sent),
 * or the handshake's error. Afterwards the extensions are forgotten: call
 * tide_smtp_hello_await again before anything else (TIDE_ESTATE until then). */
TIDE_EXTERN int tide_smtp_starttls_await(tide_smtp_t *smtp);

/* True once the connection runs over TLS. */
TIDE_EXTERN bool tide_smtp_is_tls(const tide_smtp_t *smtp);

/* What the last EHLO advertised (all zero after HELO or STARTTLS). */
TIDE_EXTERN const tide_ehlo_t *tide_smtp_extensions(const tide_smtp_t *smtp);

/* AUTH with mechanism TIDE_AUTH_PLAIN or TIDE_AUTH_LOGIN (0: PLAIN if offered, else
 * LOGIN). TIDE_EAUTH_CLEARTEXT without TLS (unless the options allow it),
 * TIDE_EAUTH_MECH when the server does not offer AUTH or the mechanism,
 * TIDE_ECOMMAND_CHARS or TIDE_EINVAL for credentials with CR, LF or over 255 octets,
 * TIDE_EREPLY when refused (535). Credentials are wiped from tide's buffers after. */
TIDE_EXTERN int tide_smtp_auth_await(tide_smtp_t *smtp, const char *user, const char *password,
                                     unsigned mechanism);

/* MAIL FROM:<from>; TIDE_ESTATE until EHLO followed STARTTLS, and with TIDE_SMTP_STARTTLS
 * until STARTTLS succeeded (auth likewise). size (0: unknown) is checked against SIZE
 * (TIDE_EMESSAGE_SIZE, nothing sent) and announced; BODY=8BITMIME is announced when the server
 * offers it. TIDE_ECOMMAND_CHARS for CR, LF or NUL in from; TIDE_EREPLY unless 250. */
TIDE_EXTERN int tide_smtp_mail_await(tide_smtp_t *smtp, const char *from, uint64_t size);

/* RCPT TO:<to>. 0 for 250 or 251, TIDE_EREPLY otherwise. */
TIDE_EXTERN int tide_smtp_rcpt_await(tide_smtp_t *smtp, const char *to);

/* Reads up to cap bytes of the message into buf: 0 with *len (0 at the end), or a
 * negative code, which aborts the transaction. */
typedef int (*tide_smtp_source_cb)(void *buf, size_t cap, size_t *len, void *arg);

/* DATA, the message from source (encoded as the header says) and the final reply.
 * When the source fails, or an octet over 127 appears and the server does not offer
 * 8BITMIME (TIDE_EMESSAGE_8BIT), the connection is aborted: a message that was not
 * read to its end is never terminated. Returns 0 (accepted: 250), TIDE_EREPLY,
 * TIDE_ESOURCE or the source's own code, or an I/O error. */
TIDE_EXTERN int tide_smtp_data_await(tide_smtp_t *smtp, tide_smtp_source_cb source, void *arg);

/* One message: MAIL, RCPT for each of the n recipients (codes[i] receives each reply
 * code; codes may be NULL), and DATA to those accepted. Returns 0 when at least one
 * recipient was accepted and the message was, TIDE_EREPLY when every recipient was
 * refused (then no DATA), or the first error of the steps above. */
TIDE_EXTERN int tide_smtp_send_message_await(tide_smtp_t *smtp, const char *from,
                                             const char *const *to, size_t n, int *codes,
                                             uint64_t size, tide_smtp_source_cb source, void *arg);

/* QUIT; 221 is the good answer (else TIDE_EREPLY). */
TIDE_EXTERN int tide_smtp_quit_await(tide_smtp_t *smtp);

/* The last reply read (its code is 0 before the first). */
TIDE_EXTERN const tide_reply_t *tide_smtp_last_reply(const tide_smtp_t *smtp);

/* Writes a message for err into buf (NUL-terminated, cut to len) with the session's
 * detail: "server replied 554 go away" for TIDE_EREPLY, the offending line for
 * protocol errors, the limit passed, the timeout; other codes as tide_strerror_r.
 * smtp may be NULL (no detail). Returns buf. */
TIDE_EXTERN char *tide_smtp_strerror_r(const tide_smtp_t *smtp, int err, char *buf, size_t len);

/* Ends the session: closes (graceful: after what is queued) or aborts the connection
 * (a failed session should abort, so that a half-sent message never completes), waits
 * until it is gone within the timeout, and frees smtp. Returns the connection's final
 * status. NULL is a no-op. */
TIDE_EXTERN int tide_smtp_close_await(tide_smtp_t *smtp, bool graceful);

#ifdef __cplusplus
}
#endif

#endif
