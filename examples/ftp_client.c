/* ftp_client: an FTP client, a thin command line over tide's FTP module (tide/ftp.h)
 * run as one task: one control connection, a passive data connection per transfer.
 *
 *   ftp_client --server HOST[:PORT] [--user NAME] [--password SECRET]
 *              [--tls] [--cafile FILE] [--insecure] [--timeout SECONDS] [--verbose]
 *              COMMAND [ARG...] [COMMAND [ARG...] ...]
 *
 * Commands, run in order on one session (a word that names a command starts the next
 * one; write ./ls for a file called ls):
 *   ls [PATH]              LIST, printed on standard output
 *   nlst [PATH]            NLST (names only), printed on standard output
 *   get REMOTE [LOCAL]     RETR into LOCAL (default: REMOTE's base name), written to
 *                          LOCAL.part and renamed once the server confirmed the end
 *   put LOCAL [REMOTE]     STOR from LOCAL (default REMOTE: LOCAL's base name)
 *   mkdir DIR   rm FILE   cd DIR   pwd   size FILE
 *
 * The login is anonymous unless --user is given; the password comes from --password
 * or the FTP_PASSWORD environment variable. The session says FEAT (for the record),
 * TYPE I, then runs the commands and QUIT. With --tls: AUTH TLS before the login, then
 * PBSZ 0 and PROT P; the data connections resume the control connection's TLS session.
 * --verbose prints the control dialogue on standard error ("C: " and "S: " lines, the
 * password hidden). A transfer shows a progress line when standard error is a
 * terminal. Passive mode only (EPSV, then PASV), always to the control peer's address.
 *
 * Exit status: the step that failed, with "ftp_client: <what>: <reason>" on stderr.
 *   0 every command succeeded        1 internal failure (no memory)
 *   2 usage: bad arguments, CR or LF in an argument, a local file that cannot be used
 *   3 connect                        4 greeting
 *   5 TLS (AUTH TLS, the handshake, PBSZ, PROT)
 *   6 login (USER, PASS)             7 a command: TYPE, cd, pwd, mkdir, rm, size
 *   8 the data connection (EPSV, PASV, connecting to the data port)
 *   9 a transfer: ls, nlst, get, put (the command, the data, the final reply)
 *  10 QUIT */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tide.h>

#define MAX_OPS 64

enum step {
    STEP_INTERNAL = 1,
    STEP_USAGE,
    STEP_CONNECT,
    STEP_GREETING,
    STEP_TLS,
    STEP_LOGIN,
    STEP_COMMAND,
    STEP_DATA,
    STEP_TRANSFER,
    STEP_QUIT
};

enum op_kind { OP_LS, OP_NLST, OP_GET, OP_PUT, OP_MKDIR, OP_RM, OP_CD, OP_PWD, OP_SIZE };

/* Each command: its word, its arguments, and the FTP verb with the reply it wants. */
static const struct {
    const char *word;
    int min_args, max_args;
    const char *verb;
    int want;
} op_table[] = {
    [OP_LS] = {"ls", 0, 1, "LIST", 0},        [OP_NLST] = {"nlst", 0, 1, "NLST", 0},
    [OP_GET] = {"get", 1, 2, "RETR", 0},      [OP_PUT] = {"put", 1, 2, "STOR", 0},
    [OP_MKDIR] = {"mkdir", 1, 1, "MKD", 257}, [OP_RM] = {"rm", 1, 1, "DELE", 250},
    [OP_CD] = {"cd", 1, 1, "CWD", 250},       [OP_PWD] = {"pwd", 0, 0, "PWD", 257},
    [OP_SIZE] = {"size", 1, 1, "SIZE", 213},
};

typedef struct op {
    enum op_kind kind;
    const char *args[2];
    int nargs;
} op;

typedef struct app {
    char host[256];
    uint16_t port;
    const char *user, *password, *cafile;
    bool use_tls, insecure, verbose, progress;
    tide_ftp_options_t options;
    op ops[MAX_OPS];
    size_t nops;
    tide_loop_t *loop;
    tide_ftp_t *ftp;
    double last_progress;
} app;

static int fail(int step, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(int step, const char *what, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "ftp_client: %s: ", what);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return step;
}

/* A failed call: where it failed decides the exit status (for transfers), and the
 * last command sent names it. */
static int failed(app *a, int step, const char *what, int err) {
    char buf[600];
    tide_ftp_strerror_r(a->ftp, err, buf, sizeof buf);
    tide_ftp_stage_t stage = a->ftp != NULL ? tide_ftp_failed_stage(a->ftp) : 0;
    if (step == STEP_TRANSFER && stage == TIDE_FTP_STAGE_LOCAL)
        return fail(STEP_USAGE, "local file", "%s", buf);
    if (step == STEP_TRANSFER && stage == TIDE_FTP_STAGE_DATA)
        step = STEP_DATA;
    return fail(step, what != NULL ? what : tide_ftp_last_command(a->ftp), "%s", buf);
}

/* The progress line, at most ten times a second (and only on a terminal). */
static void progress(uint64_t done, uint64_t total, void *arg) {
    app *a = arg;
    double now = tide_loop_time(a->loop);
    if (now - a->last_progress < 0.1 && done != total)
        return;
    a->last_progress = now;
    if (total > 0)
        fprintf(stderr, "\r%llu / %llu bytes (%d%%)%s", (unsigned long long)done,
                (unsigned long long)total, (int)(done * 100 / total), done == total ? "\n" : "");
    else
        fprintf(stderr, "\r%llu bytes", (unsigned long long)done);
}

static int to_stdout(const void *data, size_t len, void *arg) {
    (void)arg;
    return fwrite(data, 1, len, stdout) == len ? 0 : TIDE_ESINK;
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash != NULL && slash[1] != '\0' ? slash + 1 : path;
}

static int run_op(app *a, const op *o) {
    const char *x = o->args[0], *y = o->nargs > 1 ? o->args[1] : NULL;
    tide_ftp_progress_cb shown = a->progress ? progress : NULL;
    tide_ftp_io_t io = {.sink = to_stdout};
    int rc;
    switch (o->kind) {
    case OP_LS:
    case OP_NLST:
        rc = tide_ftp_list_await(a->ftp, op_table[o->kind].verb, x, &io);
        fflush(stdout);
        return rc != 0 ? failed(a, STEP_TRANSFER, NULL, rc) : 0;
    case OP_GET:
        y = y != NULL ? y : base_name(x);
        rc = tide_ftp_retrieve_file_await(a->ftp, x, y, false, shown, a);
        return rc != 0 ? failed(a, STEP_TRANSFER, NULL, rc) : 0;
    case OP_PUT:
        rc = tide_ftp_store_file_await(a->ftp, x, y != NULL ? y : base_name(x), shown, a);
        return rc != 0 ? failed(a, STEP_TRANSFER, NULL, rc) : 0;
    default:
        rc = tide_ftp_command_await(a->ftp, op_table[o->kind].verb, x, op_table[o->kind].want);
        if (rc != 0)
            return failed(a, STEP_COMMAND, NULL, rc);
        if (o->kind == OP_PWD || o->kind == OP_SIZE)
            printf("%s\n", tide_ftp_last_reply(a->ftp)->text);
        return 0;
    }
}

/* The session: greeting, TLS, login, protection, FEAT and TYPE, the commands, QUIT. */
static int converse(app *a) {
    tide_ftp_t *f = a->ftp;
    int rc;
    if ((rc = tide_ftp_greeting_await(f)) != 0)
        return failed(a, STEP_GREETING, "greeting", rc);
    if (a->use_tls && (rc = tide_ftp_auth_tls_await(f)) != 0) {
        bool handshake = tide_ftp_last_reply(f)->code == 234 && rc != TIDE_ESTARTTLS_INJECTION;
        return failed(a, STEP_TLS, handshake ? "TLS handshake" : "AUTH TLS", rc);
    }
    if ((rc = tide_ftp_login_await(f, a->user, a->password != NULL ? a->password : "anonymous@")) !=
        0)
        return failed(a, STEP_LOGIN, "login", rc);
    if (a->use_tls && (rc = tide_ftp_protect_await(f)) != 0)
        return failed(a, STEP_TLS, NULL, rc);
    /* FEAT only informs (--verbose shows it); servers without it answer 5xx. */
    if ((rc = tide_ftp_command_await(f, "FEAT", NULL, 0)) != 0 ||
        (rc = tide_ftp_command_await(f, "TYPE", "I", 200)) != 0)
        return failed(a, STEP_COMMAND, NULL, rc);
    for (size_t i = 0; i < a->nops; i++)
        if ((rc = run_op(a, &a->ops[i])) != 0)
            return rc;
    return (rc = tide_ftp_quit_await(f)) != 0 ? failed(a, STEP_QUIT, "QUIT", rc) : 0;
}

static int ftp_task(void *arg) {
    app *a = arg;
    if (a->verbose)
        fprintf(stderr, "-- connecting to %s port %u\n", a->host, a->port);
    int rc = tide_ftp_connect_await(a->loop, a->host, a->port, &a->options, &a->ftp);
    if (rc != 0)
        return failed(a, STEP_CONNECT, "connect", rc);
    int status = converse(a);
    tide_ftp_close_await(a->ftp, status == 0);
    return status;
}

/* ---- the command line ------------------------------------------------------------- */

static int usage(void) {
    fprintf(stderr, "usage: ftp_client --server HOST[:PORT] [--user NAME] [--password SECRET]\n"
                    "                  [--tls] [--cafile FILE] [--insecure] [--timeout SECONDS]\n"
                    "                  [--verbose] COMMAND [ARG...] ...\n"
                    "commands: ls [PATH], nlst [PATH], get REMOTE [LOCAL], put LOCAL [REMOTE],\n"
                    "          mkdir DIR, rm FILE, cd DIR, pwd, size FILE\n");
    return STEP_USAGE;
}

/* CR or LF would end the command early and start one of the sender's choosing. */
static int check_field(const char *what, const char *value) {
    if (!tide_command_arg_is_safe(value, strlen(value)))
        return fail(STEP_USAGE, what, "contains CR or LF");
    return strlen(value) > 512 ? fail(STEP_USAGE, what, "longer than 512 octets") : 0;
}

static int op_kind_of(const char *word) {
    for (size_t k = 0; k < sizeof op_table / sizeof op_table[0]; k++)
        if (strcmp(word, op_table[k].word) == 0)
            return (int)k;
    return -1;
}

static int parse_args(int argc, char **argv, app *a) {
    const char *server = NULL;
    a->options.timeout = 30;
    int i = 1, rc;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool *flag = strcmp(arg, "--tls") == 0        ? &a->use_tls
                     : strcmp(arg, "--insecure") == 0 ? &a->insecure
                     : strcmp(arg, "--verbose") == 0  ? &a->verbose
                                                      : NULL;
        const char **field = strcmp(arg, "--server") == 0     ? &server
                             : strcmp(arg, "--user") == 0     ? &a->user
                             : strcmp(arg, "--password") == 0 ? &a->password
                             : strcmp(arg, "--cafile") == 0   ? &a->cafile
                                                              : NULL;
        if (flag != NULL) {
            *flag = true;
            continue;
        } else if (val == NULL) {
            return usage();
        } else if (field != NULL) {
            *field = val;
        } else if (strcmp(arg, "--timeout") == 0) {
            char *end;
            a->options.timeout = strtod(val, &end);
            if (*end != '\0' || !(a->options.timeout > 0))
                return fail(STEP_USAGE, "--timeout", "bad value '%s'", val);
        } else {
            return usage();
        }
        i++;
    }
    for (; i < argc; i++) {
        int kind = op_kind_of(argv[i]);
        if (kind < 0)
            return fail(STEP_USAGE, argv[i], "not a command (see --help)");
        if (a->nops == MAX_OPS)
            return fail(STEP_USAGE, argv[i], "too many commands");
        op *o = &a->ops[a->nops++];
        *o = (op){.kind = (enum op_kind)kind};
        while (o->nargs < op_table[kind].max_args && i + 1 < argc && op_kind_of(argv[i + 1]) < 0)
            o->args[o->nargs++] = argv[++i];
        if (o->nargs < op_table[kind].min_args)
            return fail(STEP_USAGE, op_table[kind].word, "missing argument");
        for (int n = 0; n < o->nargs; n++)
            if ((rc = check_field(op_table[kind].word, o->args[n])) != 0)
                return rc;
    }
    if (server == NULL || a->nops == 0)
        return usage();
    if (tide_host_port_parse(server, a->host, sizeof a->host, 21, &a->port) != 0)
        return fail(STEP_USAGE, "--server", "bad value '%s'", server);
    if (a->user != NULL && a->password == NULL)
        a->password = getenv("FTP_PASSWORD");
    if ((a->user != NULL && (rc = check_field("--user", a->user)) != 0) ||
        (a->password != NULL && (rc = check_field("the password", a->password)) != 0))
        return rc;
    if (!a->use_tls)
        return 0;
    /* The client configuration: the system CAs or --cafile, verified unless --insecure. */
    rc = tide_tls_config_new_client(&a->options.tls);
    if (rc == 0 && a->cafile != NULL &&
        (rc = tide_tls_config_load_ca_file(a->options.tls, a->cafile)) != 0)
        return fail(STEP_USAGE, "--cafile", "%s: %s", a->cafile, tide_strerror(rc));
    if (rc == 0 && a->insecure)
        rc = tide_tls_config_set_verify_peer(a->options.tls, false);
    return rc != 0 ? fail(STEP_USAGE, "TLS configuration", "%s", tide_strerror(rc)) : 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    static app a;
    int status = parse_args(argc, argv, &a);
    a.options.dialogue = a.verbose ? tide_dialogue_print : NULL;
    a.options.dialogue_arg = stderr;
    if (status == 0) {
        a.progress = isatty(STDERR_FILENO);
        int rc = tide_loop_new(&a.loop);
        if (rc != 0)
            return fail(STEP_INTERNAL, "loop", "%s", tide_strerror(rc));
        status = STEP_INTERNAL;
        if ((rc = tide_loop_run_until_complete(a.loop, ftp_task, &a, NULL, &status)) != 0)
            status = fail(STEP_INTERNAL, "run", "%s", tide_strerror(rc));
        if ((rc = tide_loop_close(a.loop)) != 0)
            status = fail(STEP_INTERNAL, "loop close", "%s", tide_strerror(rc));
    }
    tide_tls_config_unref(a.options.tls);
    return status;
}
