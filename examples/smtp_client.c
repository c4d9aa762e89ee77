/* smtp_client: sends one message over SMTP, a thin command line over tide's SMTP
 * module (tide/smtp.h), run as one task: the dialogue reads top to bottom.
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
 * credentials hidden.
 *
 * What the module guarantees (see tide/smtp.h): CRLF line ends, dot-stuffing and one
 * CRLF.CRLF at the end (no SMTP smuggling), a message that cannot be read to its end
 * never terminated; with --starttls, no credential or address sent unless TLS was
 * obtained (STARTTLS missing, refused or followed by injected bytes ends the session);
 * AUTH refused without TLS; reply lines over 512 octets, replies over 100 lines and
 * malformed lines are protocol errors; CR or LF in any argument is refused before
 * connecting.
 *
 * Exit status: the step that failed, with "smtp_client: <step>: <reason>" on stderr.
 *   0 the server accepted the message (and QUIT went through)
 *   1 internal failure (no memory)
 *   2 usage: bad arguments, CR/LF in an argument, unreadable message file or CA file
 *   3 connect (name resolution, TCP, and with --tls the TLS handshake)
 *   4 greeting          5 EHLO          6 STARTTLS (not offered, refused, handshake)
 *   7 AUTH              8 MAIL FROM     9 RCPT TO
 *  10 DATA (the command, sending the message, reading it, the final reply)
 *  11 QUIT (the message was accepted already) */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <tide.h>

enum step {
    STEP_INTERNAL = 1,
    STEP_USAGE,
    STEP_CONNECT,
    STEP_GREETING,
    STEP_EHLO,
    STEP_STARTTLS,
    STEP_AUTH,
    STEP_MAIL,
    STEP_RCPT,
    STEP_DATA,
    STEP_QUIT
};

static const char *const step_names[] = {
    "ok",       "internal", "usage",     "connect", "greeting", "EHLO",
    "STARTTLS", "AUTH",     "MAIL FROM", "RCPT TO", "DATA",     "QUIT",
};

typedef struct app {
    char host[256];
    uint16_t port;
    tide_smtp_options_t options;
    const char *from, *to[64], *user, *password, *cafile;
    size_t nto;
    unsigned auth;
    bool insecure, verbose;
    FILE *message;
    tide_loop_t *loop;
    tide_smtp_t *smtp;
} app;

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

/* A failed step, in words: the module knows the reply, the limit or the timeout. */
static int failed(app *a, int step, int err) {
    char buf[600];
    tide_smtp_strerror_r(a->smtp, err, buf, sizeof buf);
    if (err == TIDE_ESOURCE)
        return fail(step, "reading the message failed; the transaction was aborted");
    if (err == TIDE_ENO_STARTTLS || err == TIDE_ESTARTTLS_REFUSED)
        return fail(step, "%s; stopping before sending anything sensitive", buf);
    return fail(step, "%s", buf);
}

static int read_message(void *buf, size_t cap, size_t *len, void *arg) {
    *len = fread(buf, 1, cap, arg);
    return *len == 0 && ferror((FILE *)arg) ? TIDE_ESOURCE : 0;
}

/* The session, from the greeting to QUIT; every step's failure is its exit status. */
static int converse(app *a) {
    tide_smtp_t *s = a->smtp;
    int rc;
    if ((rc = tide_smtp_greeting_await(s)) != 0)
        return failed(a, STEP_GREETING, rc);
    bool plain = a->options.security == TIDE_SMTP_PLAIN;
    if ((rc = tide_smtp_hello_await(s, plain && a->user == NULL)) != 0)
        return failed(a, STEP_EHLO, rc);
    if (a->options.security == TIDE_SMTP_STARTTLS) {
        if ((rc = tide_smtp_starttls_await(s)) != 0)
            return failed(a, STEP_STARTTLS, rc);
        if ((rc = tide_smtp_hello_await(s, false)) != 0)
            return failed(a, STEP_EHLO, rc);
    }
    if (a->user != NULL && (rc = tide_smtp_auth_await(s, a->user, a->password, a->auth)) != 0)
        return failed(a, STEP_AUTH, rc);
    struct stat st;
    uint64_t size = fstat(fileno(a->message), &st) == 0 && S_ISREG(st.st_mode) ? st.st_size : 0;
    if ((rc = tide_smtp_mail_await(s, a->from, size)) != 0)
        return failed(a, STEP_MAIL, rc);
    for (size_t i = 0; i < a->nto; i++)
        if ((rc = tide_smtp_rcpt_await(s, a->to[i])) != 0)
            return failed(a, STEP_RCPT, rc);
    if ((rc = tide_smtp_data_await(s, read_message, a->message)) != 0)
        return failed(a, STEP_DATA, rc);
    const tide_reply_t *reply = tide_smtp_last_reply(s);
    printf("accepted: %d %s\n", reply->code, reply->text);
    return (rc = tide_smtp_quit_await(s)) != 0 ? failed(a, STEP_QUIT, rc) : 0;
}

static int smtp_task(void *arg) {
    app *a = arg;
    if (a->verbose)
        fprintf(stderr, "-- connecting to %s port %u%s\n", a->host, a->port,
                a->options.security == TIDE_SMTP_TLS ? " (TLS)" : "");
    int rc = tide_smtp_connect_await(a->loop, a->host, a->port, &a->options, &a->smtp);
    if (rc != 0)
        return failed(a, STEP_CONNECT, rc);
    int status = converse(a);
    /* A failed session is cut short: what is queued (a half-sent message) must not go. */
    tide_smtp_close_await(a->smtp, status == 0);
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
    if (!tide_command_arg_is_safe(value, strlen(value)))
        return fail(STEP_USAGE, "%s contains CR or LF", what);
    if (strlen(value) > max)
        return fail(STEP_USAGE, "%s is longer than %zu octets", what, max);
    return 0;
}

static int parse_args(int argc, char **argv, app *a) {
    const char *server = NULL, *file = NULL;
    *a = (app){.options = {.helo = "localhost", .timeout = 30}};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--tls") == 0 || strcmp(arg, "--starttls") == 0) {
            a->options.security = arg[2] == 't' ? TIDE_SMTP_TLS : TIDE_SMTP_STARTTLS;
            continue;
        } else if (strcmp(arg, "--insecure") == 0 || strcmp(arg, "--verbose") == 0) {
            *(arg[2] == 'i' ? &a->insecure : &a->verbose) = true;
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
            a->from = val;
        } else if (strcmp(arg, "--to") == 0) {
            if (a->nto == sizeof a->to / sizeof a->to[0])
                return fail(STEP_USAGE, "too many --to");
            a->to[a->nto++] = val;
        } else if (strcmp(arg, "--user") == 0) {
            a->user = val;
        } else if (strcmp(arg, "--password") == 0) {
            a->password = val;
        } else if (strcmp(arg, "--auth") == 0) {
            if (strcasecmp(val, "PLAIN") != 0 && strcasecmp(val, "LOGIN") != 0)
                return fail(STEP_USAGE, "--auth takes PLAIN or LOGIN");
            a->auth = strcasecmp(val, "PLAIN") == 0 ? TIDE_AUTH_PLAIN : TIDE_AUTH_LOGIN;
        } else if (strcmp(arg, "--helo") == 0) {
            a->options.helo = val;
        } else if (strcmp(arg, "--cafile") == 0) {
            a->cafile = val;
        } else if (strcmp(arg, "--timeout") == 0) {
            char *end;
            a->options.timeout = strtod(val, &end);
            if (*end != '\0' || !(a->options.timeout > 0))
                return fail(STEP_USAGE, "bad --timeout '%s'", val);
        } else {
            return usage();
        }
        i++; /* the option's value */
    }
    if (server == NULL || a->from == NULL || a->nto == 0)
        return usage();
    tide_smtp_security_t sec = a->options.security;
    if (tide_host_port_parse(server, a->host, sizeof a->host,
                             sec == TIDE_SMTP_TLS        ? 465
                             : sec == TIDE_SMTP_STARTTLS ? 587
                                                         : 25,
                             &a->port) != 0)
        return fail(STEP_USAGE, "bad --server '%s'", server);
    if (a->user != NULL && a->password == NULL)
        a->password = getenv("SMTP_PASSWORD");
    if (a->user != NULL && a->password == NULL)
        return fail(STEP_USAGE, "--user needs --password or SMTP_PASSWORD");
    int rc;
    if ((rc = check_field("--from", a->from, 256)) != 0 ||
        (rc = check_field("--helo", a->options.helo, 255)) != 0)
        return rc;
    for (size_t i = 0; i < a->nto; i++)
        if ((rc = check_field("--to", a->to[i], 256)) != 0)
            return rc;
    if (a->user != NULL && ((rc = check_field("--user", a->user, 255)) != 0 ||
                            (rc = check_field("the password", a->password, 255)) != 0))
        return rc;
    if (file == NULL || strcmp(file, "-") == 0)
        a->message = stdin;
    else if ((a->message = fopen(file, "rb")) == NULL)
        return fail(STEP_USAGE, "cannot open %s", file);
    return 0;
}

/* The client configuration: the system CAs or --cafile, verification unless --insecure. */
static int make_tls(app *a) {
    tide_tls_config_t **tls = &a->options.tls;
    int rc = tide_tls_config_new_client(tls);
    if (rc == 0 && a->cafile != NULL && (rc = tide_tls_config_load_ca_file(*tls, a->cafile)) != 0)
        return fail(STEP_USAGE, "--cafile %s: %s", a->cafile, tide_strerror(rc));
    if (rc == 0 && a->insecure)
        rc = tide_tls_config_set_verify_peer(*tls, false);
    return rc != 0 ? fail(STEP_USAGE, "TLS configuration: %s", tide_strerror(rc)) : 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    static app a;
    int status = parse_args(argc, argv, &a);
    if (status == 0 && a.options.security != TIDE_SMTP_PLAIN)
        status = make_tls(&a);
    a.options.dialogue = a.verbose ? tide_dialogue_print : NULL;
    a.options.dialogue_arg = stderr;
    if (status == 0) {
        int rc = tide_loop_new(&a.loop);
        if (rc != 0)
            return fail(STEP_INTERNAL, "loop: %s", tide_strerror(rc));
        status = STEP_INTERNAL;
        if ((rc = tide_loop_run_until_complete(a.loop, smtp_task, &a, NULL, &status)) != 0)
            status = fail(STEP_INTERNAL, "run: %s", tide_strerror(rc));
        if ((rc = tide_loop_close(a.loop)) != 0)
            status = fail(STEP_INTERNAL, "loop close: %s", tide_strerror(rc));
    }
    tide_tls_config_unref(a.options.tls);
    if (a.message != NULL && a.message != stdin)
        fclose(a.message);
    return status;
}
