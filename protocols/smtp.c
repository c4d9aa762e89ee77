/* The SMTP client module (tide/smtp.h), over the control connection it shares with
 * the FTP module (protocols/control.c).
 *
 * Where it sits: protocols/, on streams and tasks (every call is an _await call and
 * runs inside a task) and on the reply parser, which knows no I/O. Loop thread only;
 * a session is used by one task at a time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/protocols_int.h"
#include "tide/smtp.h"

/* ---- SMTP ---------------------------------------------------------------------------- */

#define CREDENTIAL_MAX 255
#define CHUNK 8192

/* Whether the session may carry addresses and credentials yet: not between STARTTLS and
 * the EHLO after it, and never in plaintext when the options asked for STARTTLS (a
 * caller that forgot tide_smtp_starttls_await must not leak in clear). */
#define READY(s) (!(s)->need_hello && ((s)->options.security != TIDE_SMTP_STARTTLS || (s)->tls_on))

struct tide_smtp {
    tide__ctl_t ctl;
    tide_smtp_options_t options;
    char host[256];
    char helo[256];
    tide_tls_config_t *tls; /* referenced */
    tide_ehlo_t ext;
    bool tls_on;
    bool need_hello; /* after STARTTLS, until EHLO */
    bool body_8bit;  /* the MAIL announced BODY=8BITMIME */
};

int tide_smtp_connect_await(tide_loop_t *loop, const char *host, uint16_t port,
                            const tide_smtp_options_t *options, tide_smtp_t **smtp) {
    if (smtp != NULL)
        *smtp = NULL;
    tide_smtp_options_t opt = options != NULL ? *options : (tide_smtp_options_t){0};
    const char *helo = opt.helo != NULL ? opt.helo : "localhost";
    if (loop == NULL || host == NULL || smtp == NULL || strlen(host) >= 256 ||
        strlen(helo) >= 256 || !tide_command_arg_is_safe(helo, strlen(helo)) ||
        (opt.security != TIDE_SMTP_PLAIN && opt.tls == NULL))
        return TIDE_EINVAL;
    tide_smtp_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return TIDE_ENOMEM;
    s->options = opt;
    snprintf(s->host, sizeof s->host, "%s",
             opt.server_hostname != NULL ? opt.server_hostname : host);
    snprintf(s->helo, sizeof s->helo, "%s", helo);
    s->ctl.dialogue = opt.dialogue;
    s->ctl.dialogue_arg = opt.dialogue_arg;
    if (opt.tls != NULL)
        s->tls = tide_tls_config_ref(opt.tls);
    int rc =
        tide__ctl_open(&s->ctl, loop, host, port, opt.security == TIDE_SMTP_TLS ? s->tls : NULL,
                       s->host, TIDE_REPLY_SMTP, opt.timeout);
    if (rc != 0) {
        tide_tls_config_unref(s->tls);
        free(s);
        return rc;
    }
    s->tls_on = opt.security == TIDE_SMTP_TLS;
    *smtp = s;
    return 0;
}

const tide_reply_t *tide_smtp_last_reply(const tide_smtp_t *s) { return &s->ctl.reply; }

char *tide_smtp_strerror_r(const tide_smtp_t *s, int err, char *buf, size_t len) {
    return s != NULL ? tide__ctl_strerror(&s->ctl, err, buf, len) : tide_strerror_r(err, buf, len);
}
const tide_ehlo_t *tide_smtp_extensions(const tide_smtp_t *s) { return &s->ext; }
bool tide_smtp_is_tls(const tide_smtp_t *s) { return s->tls_on; }

/* A reply code that is not the one expected is the server's refusal. */
static int expect(tide_smtp_t *s, int rc, int code) {
    return rc != 0 ? rc : s->ctl.reply.code == code ? 0 : TIDE_EREPLY;
}

int tide_smtp_greeting_await(tide_smtp_t *s) {
    return expect(s, tide__ctl_read(&s->ctl, NULL, NULL), 220);
}

static void on_ehlo_line(const char *text, void *arg) { tide_ehlo_parse_line(arg, text); }

int tide_smtp_hello_await(tide_smtp_t *s, bool allow_helo) {
    s->ext = (tide_ehlo_t){0};
    int rc = tide__ctl_send(&s->ctl, "EHLO", s->helo, NULL);
    if (rc == 0)
        rc = tide__ctl_read(&s->ctl, on_ehlo_line, &s->ext);
    if (rc != 0)
        return rc;
    if (s->ctl.reply.code != 250) {
        s->ext = (tide_ehlo_t){0};
        int code = s->ctl.reply.code;
        if (!allow_helo || (code != 500 && code != 502))
            return TIDE_EREPLY;
        if ((rc = expect(s, tide__ctl_command(&s->ctl, "HELO", s->helo, NULL), 250)) != 0)
            return rc;
    }
    s->need_hello = false;
    return 0;
}

int tide_smtp_starttls_await(tide_smtp_t *s) {
    if (s->tls == NULL || s->tls_on)
        return TIDE_EINVAL;
    if ((s->ext.flags & TIDE_EHLO_STARTTLS) == 0)
        return TIDE_ENO_STARTTLS;
    int rc = tide__ctl_command(&s->ctl, "STARTTLS", NULL, NULL);
    if (rc != 0)
        return rc;
    if (s->ctl.reply.code != 220)
        return TIDE_ESTARTTLS_REFUSED;
    /* From here on nothing the plaintext server said counts (RFC 3207 4.2). */
    s->ext = (tide_ehlo_t){0};
    s->need_hello = true;
    if ((rc = tide__ctl_start_tls(&s->ctl, s->tls, s->host)) != 0)
        return rc;
    s->tls_on = true;
    return 0;
}

/* RFC 4648 base64, for AUTH: out holds 4 * ceil(len / 3) + 1. */
static void base64(const unsigned char *in, size_t len, char *out) {
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned long v = (unsigned long)in[i] << 16;
        if (i + 1 < len)
            v |= (unsigned long)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = digits[v >> 18 & 63];
        out[o++] = digits[v >> 12 & 63];
        out[o++] = i + 1 < len ? digits[v >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? digits[v & 63] : '=';
    }
    out[o] = '\0';
}

int tide_smtp_auth_await(tide_smtp_t *s, const char *user, const char *password,
                         unsigned mechanism) {
    if (user == NULL || password == NULL)
        return TIDE_EINVAL;
    size_t ulen = strlen(user), plen = strlen(password);
    if (ulen > CREDENTIAL_MAX || plen > CREDENTIAL_MAX)
        return TIDE_EINVAL;
    if (!tide_command_arg_is_safe(user, ulen) || !tide_command_arg_is_safe(password, plen))
        return TIDE_ECOMMAND_CHARS;
    if (!READY(s))
        return TIDE_ESTATE;
    if (!s->tls_on && !s->options.allow_auth_without_tls)
        return TIDE_EAUTH_CLEARTEXT;
    if ((s->ext.flags & TIDE_EHLO_AUTH) == 0)
        return TIDE_EAUTH_MECH;
    if (mechanism == 0)
        mechanism = (s->ext.auth & TIDE_AUTH_PLAIN) != 0   ? TIDE_AUTH_PLAIN
                    : (s->ext.auth & TIDE_AUTH_LOGIN) != 0 ? TIDE_AUTH_LOGIN
                                                           : 0;
    if ((mechanism != TIDE_AUTH_PLAIN && mechanism != TIDE_AUTH_LOGIN) ||
        (s->ext.auth & mechanism) == 0)
        return TIDE_EAUTH_MECH;

    unsigned char raw[2 * CREDENTIAL_MAX + 2];
    char encoded[(sizeof raw + 2) / 3 * 4 + 1];
    tide__ctl_t *c = &s->ctl;
    int rc;
    if (mechanism == TIDE_AUTH_PLAIN) {
        /* RFC 4616: authzid (empty) NUL authcid NUL password, as the initial response. */
        raw[0] = '\0';
        memcpy(raw + 1, user, ulen);
        raw[1 + ulen] = '\0';
        memcpy(raw + 2 + ulen, password, plen);
        base64(raw, 2 + ulen + plen, encoded);
        char arg[sizeof encoded + 8];
        snprintf(arg, sizeof arg, "PLAIN %s", encoded);
        rc = tide__ctl_command(c, "AUTH", arg, "AUTH PLAIN <credentials hidden>");
        memset(arg, 0, sizeof arg);
        if (rc == 0 && c->reply.code == 334) /* a server that wants it on its own line */
            rc = tide__ctl_command(c, encoded, NULL, "<credentials hidden>");
    } else {
        rc = tide__ctl_command(c, "AUTH", "LOGIN", NULL);
        if (rc == 0 && c->reply.code == 334) {
            base64((const unsigned char *)user, ulen, encoded);
            rc = tide__ctl_command(c, encoded, NULL, "<user name hidden>");
        }
        if (rc == 0 && c->reply.code == 334) {
            base64((const unsigned char *)password, plen, encoded);
            rc = tide__ctl_command(c, encoded, NULL, "<password hidden>");
        }
    }
    memset(raw, 0, sizeof raw);
    memset(encoded, 0, sizeof encoded);
    return expect(s, rc, 235);
}

/* "FROM:<addr>" or "TO:<addr>" into arg (400 octets); returns its length or an error. */
static int address_arg(char *arg, const char *prefix, const char *addr) {
    if (addr == NULL)
        return TIDE_EINVAL;
    size_t len = strlen(addr);
    if (!tide_command_arg_is_safe(addr, len))
        return TIDE_ECOMMAND_CHARS;
    if (len > 256) /* RFC 5321 4.5.3.1.3: a path is at most 256 octets */
        return TIDE_EINVAL;
    return snprintf(arg, 400, "%s:<%s>", prefix, addr);
}

int tide_smtp_mail_await(tide_smtp_t *s, const char *from, uint64_t size) {
    if (!READY(s))
        return TIDE_ESTATE;
    if ((s->ext.flags & TIDE_EHLO_SIZE) != 0 && s->ext.size_max > 0 && size > s->ext.size_max)
        return TIDE_EMESSAGE_SIZE;
    char arg[400];
    int n = address_arg(arg, "FROM", from);
    if (n < 0)
        return n;
    if ((s->ext.flags & TIDE_EHLO_SIZE) != 0 && size > 0)
        n += snprintf(arg + n, sizeof arg - (size_t)n, " SIZE=%llu", (unsigned long long)size);
    s->body_8bit = (s->ext.flags & TIDE_EHLO_8BITMIME) != 0;
    if (s->body_8bit)
        snprintf(arg + n, sizeof arg - (size_t)n, " BODY=8BITMIME");
    return expect(s, tide__ctl_command(&s->ctl, "MAIL", arg, NULL), 250);
}

int tide_smtp_rcpt_await(tide_smtp_t *s, const char *to) {
    char arg[400];
    int n = address_arg(arg, "TO", to);
    if (n < 0)
        return n;
    int rc = tide__ctl_command(&s->ctl, "RCPT", arg, NULL);
    if (rc == 0 && s->ctl.reply.code == 251)
        return 0;
    return expect(s, rc, 250);
}

/* Writes len bytes and waits until they are on their way (flow control). */
static int send_chunk(tide__ctl_t *c, const void *out, size_t len) {
    tide_task_deadline_push(c->timeout);
    int rc = tide_writer_write(c->writer, out, len);
    if (rc == 0)
        rc = tide_writer_drain_await(c->writer);
    tide_task_deadline_pop();
    return rc;
}

/* The message as DATA content; on a source failure the connection is aborted, so
 * the server drops what it got. */
static int send_content(tide_smtp_t *s, tide_smtp_source_cb source, void *arg) {
    unsigned char *in = malloc(CHUNK * 3 + 8);
    if (in == NULL)
        return TIDE_ENOMEM;
    unsigned char *out = in + CHUNK;
    tide_data_encoder_t enc = {0};
    int rc;
    for (;;) {
        size_t n = 0;
        rc = source(in, CHUNK, &n, arg);
        if (rc >= 0 && n > CHUNK)
            rc = TIDE_ESOURCE;
        if (rc < 0 || n == 0)
            break;
        size_t o = tide_data_encode(&enc, in, n, out);
        if (enc.eight_bit && !s->body_8bit) {
            rc = TIDE_EMESSAGE_8BIT;
            break;
        }
        if ((rc = send_chunk(&s->ctl, out, o)) != 0)
            break;
    }
    if (rc == 0) {
        size_t o = tide_data_encode_end(&enc, out);
        tide__ctl_note(&s->ctl, "message sent: %llu octets", (unsigned long long)(enc.octets - o));
        rc = send_chunk(&s->ctl, out, o);
    } else if (rc > 0) {
        rc = TIDE_ESOURCE;
    }
    free(in);
    if (rc != 0)
        tide_writer_abort(s->ctl.writer);
    return rc;
}

int tide_smtp_data_await(tide_smtp_t *s, tide_smtp_source_cb source, void *arg) {
    if (source == NULL)
        return TIDE_EINVAL;
    int rc = expect(s, tide__ctl_command(&s->ctl, "DATA", NULL, NULL), 354);
    if (rc == 0)
        rc = send_content(s, source, arg);
    return rc != 0 ? rc : expect(s, tide__ctl_read(&s->ctl, NULL, NULL), 250);
}

int tide_smtp_send_message_await(tide_smtp_t *s, const char *from, const char *const *to, size_t n,
                                 int *codes, uint64_t size, tide_smtp_source_cb source, void *arg) {
    if (to == NULL || n == 0)
        return TIDE_EINVAL;
    /* Every address is checked before the transaction starts. */
    char line[400];
    for (size_t i = 0; i < n; i++) {
        int rc = address_arg(line, "TO", to[i]);
        if (rc < 0)
            return rc;
    }
    int rc = tide_smtp_mail_await(s, from, size);
    if (rc != 0)
        return rc;
    size_t accepted = 0;
    for (size_t i = 0; i < n; i++) {
        rc = tide_smtp_rcpt_await(s, to[i]);
        if (codes != NULL)
            codes[i] = s->ctl.reply.code;
        if (rc == 0)
            accepted++;
        else if (rc != TIDE_EREPLY)
            return rc;
    }
    if (accepted == 0)
        return TIDE_EREPLY; /* the last refusal is the last reply */
    return tide_smtp_data_await(s, source, arg);
}

int tide_smtp_quit_await(tide_smtp_t *s) {
    return expect(s, tide__ctl_command(&s->ctl, "QUIT", NULL, NULL), 221);
}

int tide_smtp_close_await(tide_smtp_t *s, bool graceful) {
    if (s == NULL)
        return 0;
    int rc = tide__ctl_close(&s->ctl, graceful);
    tide_tls_config_unref(s->tls);
    free(s);
    return rc;
}
