/* smtp_client: sends one message over SMTP (RFC 5321), written as a task over the
 * streams' _await calls: the whole dialogue reads top to bottom, one command and its
 * reply at a time.
 *
 *   smtp_client --server HOST[:PORT] --from ADDR --to ADDR [--to ADDR ...]
 *               [--tls | --starttls] [--cafile FILE] [--insecure]
 *               [--user NAME [--password SECRET]] [--auth PLAIN|LOGIN]
 *               [--helo NAME] [--timeout SECONDS] [--verbose] [FILE | -]
 *
 * The message (headers and body, as in a file) comes from FILE or standard input. The
 * port defaults to 25, 465 with --tls (implicit TLS) or 587 with --starttls. The
 * password comes from --password or else the SMTP_PASSWORD environment variable.
 * --verbose prints the dialogue on standard error ("C: " and "S: " lines), with
 * credentials hidden and the message shown as its size.
 *
 * What it guarantees:
 * - The message goes out with every line ending as CRLF (a bare LF or a bare CR becomes
 *   CRLF), a leading dot doubled, and the terminator CRLF.CRLF: no other end-of-data
 *   sequence can ever leave it (SMTP smuggling). A message that cannot be read to its
 *   end is never terminated: the connection is aborted, so nothing half-read is sent.
 * - With --starttls, a server that does not offer STARTTLS or refuses it, or that
 *   sends anything after its 220 reply before the handshake (response injection), ends
 *   the session before any credential or address is sent. After TLS the client says
 *   EHLO again and forgets what the plaintext server advertised (RFC 3207).
 * - A reply line over 512 octets (RFC 5321 4.5.3.1.5), a reply of more than 100 lines,
 *   or a line not starting with a 3-digit code is a protocol error; the reply buffer
 *   never grows beyond one line.
 * - CR or LF inside an address, a credential or the HELO name is refused before
 *   connecting (command injection).
 *
 * Exit status: the step that failed, with "smtp_client: <step>: <reason>" on stderr.
 *   0 the server accepted the message (and QUIT went through)
 *   1 internal failure (no memory)
 *   2 usage: bad arguments, CR/LF in an argument, unreadable message file or CA file
 *   3 connect (name resolution, TCP, and with --tls the TLS handshake)
 *   4 greeting          5 EHLO          6 STARTTLS (not offered, refused, handshake)
 *   7 AUTH              8 MAIL FROM     9 RCPT TO
 *  10 DATA (the command, sending the message, reading it, the final reply)
 *  11 QUIT (the message was accepted already)
 *
 * Single-threaded: the task runs on the loop's thread. Reading the message file blocks
 * the loop, which is fine for a program with one connection. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <tide.h>

/* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with its CRLF. The reader's
 * limit counts the bytes before the LF, so this limit lets exactly 512 through. */
#define REPLY_LINE_MAX 512
#define REPLY_LINES_MAX 100
/* Credentials are short; bounding them keeps every command within one line buffer. */
#define CREDENTIAL_MAX 255
#define COMMAND_MAX 1024

enum step {
    STEP_OK = 0,
    STEP_INTERNAL = 1,
    STEP_USAGE = 2,
    STEP_CONNECT = 3,
    STEP_GREETING = 4,
    STEP_EHLO = 5,
    STEP_STARTTLS = 6,
    STEP_AUTH = 7,
    STEP_MAIL = 8,
    STEP_RCPT = 9,
    STEP_DATA = 10,
    STEP_QUIT = 11,
};

static const char *const step_names[] = {
    "ok",       "internal", "usage",     "connect", "greeting", "EHLO",
    "STARTTLS", "AUTH",     "MAIL FROM", "RCPT TO", "DATA",     "QUIT",
};

enum mode { MODE_PLAIN, MODE_TLS, MODE_STARTTLS };

/* What the last EHLO reply advertised. */
enum {
    EXT_STARTTLS = 1u << 0,
    EXT_AUTH = 1u << 1,
    EXT_AUTH_PLAIN = 1u << 2,
    EXT_AUTH_LOGIN = 1u << 3,
};

typedef struct smtp {
    /* From the command line. */
    char host[256];
    unsigned port;
    enum mode mode;
    const char *from;
    const char **to;
    size_t nto;
    const char *user;
    const char *password;
    const char *auth;
    const char *helo;
    const char *cafile;
    bool insecure;
    bool verbose;
    double timeout;
    FILE *message;

    /* The session. */
    tide_loop_t *loop;
    tide_tls_config_t *tls;
    tide_reader_t *reader;
    tide_writer_t *writer;
    unsigned ext;
    int code;                      /* the last reply's code */
    char text[REPLY_LINE_MAX + 1]; /* and its first line, without CRLF */
} smtp;

static int fail(int step, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(int step, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "smtp_client: %s: ", step_names[step]);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return step;
}

/* A network failure, in words: tide's text (with mbedTLS's for TLS codes). */
static int fail_io(smtp *s, int step, int err) {
    char buf[256];
    if (err == TIDE_ETIMEOUT)
        return fail(step, "no answer within %g seconds", s->timeout);
    if (err == TIDE_EOF || err == TIDE_EINCOMPLETE)
        return fail(step, "the server closed the connection");
    return fail(step, "%s", tide_strerror_r(err, buf, sizeof buf));
}

/* The server said no: show its reply. */
static int refused(smtp *s, int step) {
    return fail(step, "server replied %d %s", s->code, s->text);
}

/* Server text goes to a terminal: control characters are shown as '?'. */
static void printable(char *text) {
    for (; *text != '\0'; text++)
        if ((unsigned char)*text < 0x20 || *text == 0x7f)
            *text = '?';
}

/* One EHLO line after the first: "KEYWORD params". AUTH also comes as "AUTH=..." from
 * old servers. */
static void note_extension(smtp *s, const char *line) {
    size_t kw = strcspn(line, " =");
    if (kw == 8 && strncasecmp(line, "STARTTLS", 8) == 0) {
        s->ext |= EXT_STARTTLS;
    } else if (kw == 4 && strncasecmp(line, "AUTH", 4) == 0) {
        s->ext |= EXT_AUTH;
        for (const char *p = line + kw; *p != '\0';) {
            p += strspn(p, " =");
            size_t n = strcspn(p, " ");
            if (n == 5 && strncasecmp(p, "PLAIN", 5) == 0)
                s->ext |= EXT_AUTH_PLAIN;
            else if (n == 5 && strncasecmp(p, "LOGIN", 5) == 0)
                s->ext |= EXT_AUTH_LOGIN;
            p += n;
        }
    }
}

/* Reads one reply (RFC 5321 4.2): "CODE-text" lines, then "CODE text" or a bare
 * "CODE", the same code on each. Sets s->code and s->text (the first line); with
 * ehlo, records the extensions of the lines after the first. Returns 0, or the
 * step's exit status once the failure was reported. */
static int read_reply(smtp *s, int step, bool ehlo) {
    char line[REPLY_LINE_MAX + 1];
    s->code = 0;
    for (int n = 0;; n++) {
        if (n == REPLY_LINES_MAX)
            return fail(step, "protocol error: a reply of more than %d lines", REPLY_LINES_MAX);
        size_t len;
        int rc = tide_reader_readline_await(s->reader, line, sizeof line, &len);
        if (rc == TIDE_ELIMIT)
            return fail(step, "protocol error: a reply line longer than %d octets", REPLY_LINE_MAX);
        if (rc == 0 && (len == 0 || line[len - 1] != '\n'))
            rc = TIDE_EINCOMPLETE; /* the last line, cut by the end of the stream */
        if (rc != 0)
            return fail_io(s, step, rc);
        len--;
        if (len > 0 && line[len - 1] == '\r')
            len--;
        line[len] = '\0';
        printable(line);
        if (s->verbose)
            fprintf(stderr, "S: %s\n", line);
        bool last = len == 3 || (len > 3 && line[3] == ' ');
        if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
            line[2] < '0' || line[2] > '9' || !(last || line[3] == '-'))
            return fail(step, "protocol error: malformed reply line \"%.80s\"", line);
        int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        if (n == 0) {
            s->code = code;
            snprintf(s->text, sizeof s->text, "%s", len > 4 ? line + 4 : "");
        } else if (code != s->code) {
            return fail(step, "protocol error: reply code %d inside a %d reply", code, s->code);
        } else if (ehlo) {
            note_extension(s, len > 4 ? line + 4 : "");
        }
        if (last)
            return 0;
    }
}

/* Sends one command line and reads its reply, all within the timeout. shown is what
 * --verbose prints instead of the line (NULL: the line itself). */
static int command(smtp *s, int step, const char *shown, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int command(smtp *s, int step, const char *shown, const char *fmt, ...) {
    char line[COMMAND_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 2, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line - 2)
        return fail(step, "command too long");
    if (s->verbose)
        fprintf(stderr, "C: %s\n", shown != NULL ? shown : line);
    memcpy(line + n, "\r\n", 2);

    tide_task_deadline_push(s->timeout);
    int rc = tide_writer_write(s->writer, line, (size_t)n + 2);
    if (rc == 0)
        rc = tide_writer_drain_await(s->writer);
    rc = rc != 0 ? fail_io(s, step, rc) : read_reply(s, step, false);
    tide_task_deadline_pop();
    return rc;
}

/* EHLO, forgetting whatever an earlier EHLO advertised. A server that does not know
 * EHLO gets HELO, unless the session needs extensions (TLS or AUTH). */
static int ehlo(smtp *s) {
    s->ext = 0;
    if (s->verbose)
        fprintf(stderr, "C: EHLO %s\n", s->helo);
    tide_task_deadline_push(s->timeout);
    int rc = tide_writer_write(s->writer, "EHLO ", 5);
    if (rc == 0)
        rc = tide_writer_write(s->writer, s->helo, strlen(s->helo));
    if (rc == 0)
        rc = tide_writer_write(s->writer, "\r\n", 2);
    if (rc == 0)
        rc = tide_writer_drain_await(s->writer);
    rc = rc != 0 ? fail_io(s, STEP_EHLO, rc) : read_reply(s, STEP_EHLO, true);
    tide_task_deadline_pop();
    if (rc != 0 || s->code == 250)
        return rc;
    if ((s->code == 500 || s->code == 502) && s->mode == MODE_PLAIN && s->user == NULL) {
        if ((rc = command(s, STEP_EHLO, NULL, "HELO %s", s->helo)) != 0)
            return rc;
        if (s->code == 250)
            return 0;
    }
    return refused(s, STEP_EHLO);
}

/* RFC 4648 base64, for AUTH (the only binary-to-text step SMTP needs here). */
static size_t base64(const unsigned char *in, size_t len, char *out) {
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
    return o;
}

/* AUTH PLAIN (RFC 4616, the initial response in the command) or AUTH LOGIN. */
static int authenticate(smtp *s) {
    if ((s->ext & EXT_AUTH) == 0)
        return fail(STEP_AUTH, "the server does not offer AUTH");
    const char *mech = s->auth;
    if (mech == NULL)
        mech = (s->ext & EXT_AUTH_PLAIN) != 0   ? "PLAIN"
               : (s->ext & EXT_AUTH_LOGIN) != 0 ? "LOGIN"
                                                : NULL;
    if (mech == NULL)
        return fail(STEP_AUTH, "the server offers neither PLAIN nor LOGIN");

    unsigned char raw[2 * CREDENTIAL_MAX + 2];
    char encoded[sizeof raw * 4 / 3 + 8];
    size_t ulen = strlen(s->user), plen = strlen(s->password);
    int rc;
    if (strcasecmp(mech, "PLAIN") == 0) {
        /* authzid (empty) NUL authcid NUL password */
        raw[0] = '\0';
        memcpy(raw + 1, s->user, ulen);
        raw[1 + ulen] = '\0';
        memcpy(raw + 2 + ulen, s->password, plen);
        base64(raw, 2 + ulen + plen, encoded);
        rc = command(s, STEP_AUTH, "AUTH PLAIN <credentials hidden>", "AUTH PLAIN %s", encoded);
        if (rc == 0 && s->code == 334) /* a server that wants the response on its own line */
            rc = command(s, STEP_AUTH, "<credentials hidden>", "%s", encoded);
    } else {
        rc = command(s, STEP_AUTH, NULL, "AUTH LOGIN");
        if (rc == 0 && s->code == 334) {
            base64((const unsigned char *)s->user, ulen, encoded);
            rc = command(s, STEP_AUTH, "<user name hidden>", "%s", encoded);
        }
        if (rc == 0 && s->code == 334) {
            base64((const unsigned char *)s->password, plen, encoded);
            rc = command(s, STEP_AUTH, "<password hidden>", "%s", encoded);
        }
    }
    memset(raw, 0, sizeof raw);
    memset(encoded, 0, sizeof encoded);
    if (rc == 0 && s->code != 235)
        rc = refused(s, STEP_AUTH);
    return rc;
}

/* Writes out[0..len) and waits until it is on its way (flow control). */
static int send_chunk(smtp *s, const void *out, size_t len) {
    tide_task_deadline_push(s->timeout);
    int rc = tide_writer_write(s->writer, out, len);
    if (rc == 0)
        rc = tide_writer_drain_await(s->writer);
    tide_task_deadline_pop();
    return rc;
}

/* The message as DATA content (RFC 5321 4.5.2): CR, LF and CRLF each become CRLF, a
 * dot starting a line is doubled, and the end is CRLF.CRLF, so the only end-of-data
 * sequence the server can see is the one written last. Output is at most twice the
 * input (a dot or a CR each become two octets). */
static int send_message(smtp *s) {
    unsigned char in[8192];
    unsigned char out[2 * sizeof in + 8];
    bool line_start = true, after_cr = false;
    size_t total = 0, n;
    while ((n = fread(in, 1, sizeof in, s->message)) > 0) {
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = in[i];
            if (after_cr) {
                after_cr = false;
                if (c == '\n')
                    continue; /* the CRLF went out with the CR */
            }
            if (c == '\r' || c == '\n') {
                out[o++] = '\r';
                out[o++] = '\n';
                after_cr = c == '\r';
                line_start = true;
                continue;
            }
            if (line_start && c == '.')
                out[o++] = '.';
            out[o++] = c;
            line_start = false;
        }
        total += o;
        int rc = send_chunk(s, out, o);
        if (rc != 0)
            return fail_io(s, STEP_DATA, rc);
    }
    if (ferror(s->message)) {
        /* Never terminate a message that was not read to its end: abort instead, so
         * the server drops what it got. */
        tide_writer_abort(s->writer);
        return fail(STEP_DATA, "reading the message failed; the transaction was aborted");
    }
    static const char end[] = "\r\n.\r\n";
    const char *tail = line_start ? end + 2 : end;
    if (s->verbose)
        fprintf(stderr, "C: <message, %zu octets>\nC: .\n", total);
    int rc = send_chunk(s, tail, strlen(tail));
    return rc != 0 ? fail_io(s, STEP_DATA, rc) : 0;
}

/* STARTTLS (RFC 3207): refuse to go on in plaintext, and let nothing the server said
 * before the handshake count afterwards. */
static int starttls(smtp *s) {
    if ((s->ext & EXT_STARTTLS) == 0)
        return fail(STEP_STARTTLS, "the server does not offer STARTTLS; stopping before "
                                   "sending anything sensitive");
    int rc = command(s, STEP_STARTTLS, NULL, "STARTTLS");
    if (rc != 0)
        return rc;
    if (s->code != 220)
        return fail(STEP_STARTTLS,
                    "server replied %d %s; stopping before sending anything "
                    "sensitive",
                    s->code, s->text);
    /* Bytes after the 220 were sent before the handshake: a man in the middle's
     * injected replies. (Later ones reach the TLS layer and break the handshake.) */
    size_t extra = tide_reader_buffered(s->reader);
    if (extra > 0)
        return fail(STEP_STARTTLS,
                    "protocol error: %zu octets after the 220 reply, before "
                    "the TLS handshake (response injection)",
                    extra);
    if (s->verbose)
        fprintf(stderr, "-- TLS handshake with %s\n", s->host);
    tide_task_deadline_push(s->timeout);
    rc = tide_writer_start_tls_await(s->writer, s->tls, s->host, NULL);
    tide_task_deadline_pop();
    return rc != 0 ? fail_io(s, STEP_STARTTLS, rc) : 0;
}

/* The session, from the greeting to QUIT. */
static int converse(smtp *s) {
    int rc;
    tide_task_deadline_push(s->timeout);
    rc = read_reply(s, STEP_GREETING, false);
    tide_task_deadline_pop();
    if (rc != 0)
        return rc;
    if (s->code != 220)
        return refused(s, STEP_GREETING);

    if ((rc = ehlo(s)) != 0)
        return rc;
    if (s->mode == MODE_STARTTLS) {
        if ((rc = starttls(s)) != 0 || (rc = ehlo(s)) != 0)
            return rc;
    }
    if (s->user != NULL && (rc = authenticate(s)) != 0)
        return rc;

    if ((rc = command(s, STEP_MAIL, NULL, "MAIL FROM:<%s>", s->from)) != 0)
        return rc;
    if (s->code != 250)
        return refused(s, STEP_MAIL);
    for (size_t i = 0; i < s->nto; i++) {
        if ((rc = command(s, STEP_RCPT, NULL, "RCPT TO:<%s>", s->to[i])) != 0)
            return rc;
        if (s->code != 250 && s->code != 251)
            return refused(s, STEP_RCPT);
    }
    if ((rc = command(s, STEP_DATA, NULL, "DATA")) != 0)
        return rc;
    if (s->code != 354)
        return refused(s, STEP_DATA);
    if ((rc = send_message(s)) != 0)
        return rc;
    tide_task_deadline_push(s->timeout);
    rc = read_reply(s, STEP_DATA, false);
    tide_task_deadline_pop();
    if (rc != 0)
        return rc;
    if (s->code != 250)
        return refused(s, STEP_DATA);
    printf("accepted: %d %s\n", s->code, s->text);

    if ((rc = command(s, STEP_QUIT, NULL, "QUIT")) != 0)
        return rc;
    return s->code == 221 ? 0 : refused(s, STEP_QUIT);
}

static int smtp_task(void *arg) {
    smtp *s = arg;
    tide_connect_options_t options = {.timeout = s->timeout};
    if (s->mode == MODE_TLS) {
        options.tls = s->tls;
        options.server_hostname = s->host;
    }
    if (s->verbose)
        fprintf(stderr, "-- connecting to %s port %u%s\n", s->host, s->port,
                s->mode == MODE_TLS ? " (TLS)" : "");
    int rc = tide_loop_open_connection_await(s->loop, s->host, (uint16_t)s->port,
                                             REPLY_LINE_MAX - 1, &options, &s->reader, &s->writer);
    if (rc != 0)
        return fail_io(s, STEP_CONNECT, rc);
    int status = converse(s);
    /* A failed session is cut short: what is queued (a half-sent message) must not go. */
    if (status == 0)
        tide_writer_close(s->writer);
    else
        tide_writer_abort(s->writer);
    tide_task_deadline_push(s->timeout);
    tide_writer_wait_closed_await(s->writer); /* the status no longer matters */
    tide_task_deadline_pop();
    return status;
}

/* ---- the command line ------------------------------------------------------------- */

static int usage(void) {
    fprintf(stderr,
            "usage: smtp_client --server HOST[:PORT] --from ADDR --to ADDR [--to ADDR ...]\n"
            "                   [--tls | --starttls] [--cafile FILE] [--insecure]\n"
            "                   [--user NAME [--password SECRET]] [--auth PLAIN|LOGIN]\n"
            "                   [--helo NAME] [--timeout SECONDS] [--verbose] [FILE | -]\n");
    return STEP_USAGE;
}

/* CR or LF would end the command early and start one of the sender's choosing. */
static int check_field(const char *what, const char *value, size_t max) {
    if (value[strcspn(value, "\r\n")] != '\0')
        return fail(STEP_USAGE, "%s contains CR or LF", what);
    if (strlen(value) > max)
        return fail(STEP_USAGE, "%s is longer than %zu octets", what, max);
    return 0;
}

/* HOST, HOST:PORT, [V6]:PORT, or a bare IPv6 address. */
static int parse_server(smtp *s, const char *arg, unsigned *port) {
    const char *host = arg, *colon = strrchr(arg, ':');
    size_t hlen = strlen(arg);
    *port = 0;
    if (arg[0] == '[') {
        const char *close = strchr(arg, ']');
        if (close == NULL || (close[1] != '\0' && close[1] != ':'))
            return fail(STEP_USAGE, "bad --server '%s'", arg);
        host = arg + 1;
        hlen = (size_t)(close - host);
        colon = close[1] == ':' ? close + 1 : NULL;
    } else if (colon != NULL && strchr(arg, ':') != colon) {
        colon = NULL; /* several colons: an IPv6 address without a port */
    } else if (colon != NULL) {
        hlen = (size_t)(colon - arg);
    }
    if (colon != NULL) {
        char *end;
        unsigned long v = strtoul(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end != '\0' || v == 0 || v > 65535)
            return fail(STEP_USAGE, "bad port in --server '%s'", arg);
        *port = (unsigned)v;
    }
    if (hlen == 0 || hlen >= sizeof s->host)
        return fail(STEP_USAGE, "bad host in --server '%s'", arg);
    memcpy(s->host, host, hlen);
    s->host[hlen] = '\0';
    return 0;
}

static int parse_args(int argc, char **argv, smtp *s) {
    static const char *to_list[64];
    const char *server = NULL, *file = NULL;
    *s = (smtp){.to = to_list, .helo = "localhost", .timeout = 30};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--tls") == 0) {
            s->mode = MODE_TLS;
            continue;
        } else if (strcmp(arg, "--starttls") == 0) {
            s->mode = MODE_STARTTLS;
            continue;
        } else if (strcmp(arg, "--insecure") == 0) {
            s->insecure = true;
            continue;
        } else if (strcmp(arg, "--verbose") == 0) {
            s->verbose = true;
            continue;
        } else if (arg[0] != '-' || strcmp(arg, "-") == 0) {
            if (file != NULL)
                return usage();
            file = arg;
            continue;
        } else if (val == NULL) {
            return usage();
        } else if (strcmp(arg, "--server") == 0) {
            server = val;
        } else if (strcmp(arg, "--from") == 0) {
            s->from = val;
        } else if (strcmp(arg, "--to") == 0) {
            if (s->nto == sizeof to_list / sizeof to_list[0])
                return fail(STEP_USAGE, "too many --to");
            s->to[s->nto++] = val;
        } else if (strcmp(arg, "--user") == 0) {
            s->user = val;
        } else if (strcmp(arg, "--password") == 0) {
            s->password = val;
        } else if (strcmp(arg, "--auth") == 0) {
            if (strcasecmp(val, "PLAIN") != 0 && strcasecmp(val, "LOGIN") != 0)
                return fail(STEP_USAGE, "--auth takes PLAIN or LOGIN");
            s->auth = val;
        } else if (strcmp(arg, "--helo") == 0) {
            s->helo = val;
        } else if (strcmp(arg, "--cafile") == 0) {
            s->cafile = val;
        } else if (strcmp(arg, "--timeout") == 0) {
            char *end;
            s->timeout = strtod(val, &end);
            if (*end != '\0' || !(s->timeout > 0))
                return fail(STEP_USAGE, "bad --timeout '%s'", val);
        } else {
            return usage();
        }
        i++; /* the option's value */
    }
    if (server == NULL || s->from == NULL || s->nto == 0)
        return usage();
    unsigned port;
    int rc = parse_server(s, server, &port);
    if (rc != 0)
        return rc;
    s->port = port != 0 ? port : s->mode == MODE_TLS ? 465 : s->mode == MODE_STARTTLS ? 587 : 25;
    if (s->user != NULL && s->password == NULL)
        s->password = getenv("SMTP_PASSWORD");
    if (s->user != NULL && s->password == NULL)
        return fail(STEP_USAGE, "--user needs --password or SMTP_PASSWORD");
    if ((rc = check_field("--from", s->from, 256)) != 0 ||
        (rc = check_field("--helo", s->helo, 255)) != 0)
        return rc;
    for (size_t i = 0; i < s->nto; i++)
        if ((rc = check_field("--to", s->to[i], 256)) != 0)
            return rc;
    if (s->user != NULL && ((rc = check_field("--user", s->user, CREDENTIAL_MAX)) != 0 ||
                            (rc = check_field("the password", s->password, CREDENTIAL_MAX)) != 0))
        return rc;
    if (file == NULL || strcmp(file, "-") == 0) {
        s->message = stdin;
    } else if ((s->message = fopen(file, "rb")) == NULL) {
        return fail(STEP_USAGE, "cannot open %s", file);
    }
    return 0;
}

/* The client configuration: the system CAs or --cafile, verification unless
 * --insecure. */
static int make_tls(smtp *s) {
    int rc = tide_tls_config_new_client(&s->tls);
    if (rc == 0 && s->cafile != NULL && (rc = tide_tls_config_load_ca_file(s->tls, s->cafile)) != 0)
        return fail(STEP_USAGE, "--cafile %s: %s", s->cafile, tide_strerror(rc));
    if (rc == 0 && s->insecure)
        rc = tide_tls_config_set_verify_peer(s->tls, false);
    return rc != 0 ? fail(STEP_USAGE, "TLS configuration: %s", tide_strerror(rc)) : 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    smtp s;
    int status = parse_args(argc, argv, &s);
    if (status == 0 && s.mode != MODE_PLAIN)
        status = make_tls(&s);
    if (status == 0) {
        int rc = tide_loop_new(&s.loop);
        if (rc != 0)
            return fail(STEP_INTERNAL, "loop: %s", tide_strerror(rc));
        status = STEP_INTERNAL;
        rc = tide_loop_run_until_complete(s.loop, smtp_task, &s, NULL, &status);
        if (rc != 0)
            status = fail(STEP_INTERNAL, "run: %s", tide_strerror(rc));
        if ((rc = tide_loop_close(s.loop)) != 0)
            status = fail(STEP_INTERNAL, "loop close: %s", tide_strerror(rc));
    }
    tide_tls_config_unref(s.tls);
    if (s.message != NULL && s.message != stdin)
        fclose(s.message);
    return status;
}
