/* ftp_client: an FTP client (RFC 959, with RFC 2428's EPSV and RFC 4217's explicit
 * FTPS), written as a task over the streams' _await calls: one control connection,
 * and a second connection per transfer, opened in passive mode.
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
 * TYPE I (every transfer is binary), then runs the commands and QUIT. With --tls:
 * AUTH TLS before the login, then PBSZ 0 and PROT P, so that the data connections are
 * TLS too; each resumes the control connection's TLS session, which servers such as
 * vsftpd (require_ssl_reuse) insist on. --verbose prints the control dialogue on
 * standard error ("C: " and "S: " lines, the password hidden). A transfer shows a
 * progress line when standard error is a terminal.
 *
 * Passive mode only: EPSV first, PASV when the server does not know EPSV. The data
 * connection always goes to the control connection's peer address, whatever address
 * a PASV reply names (a reply naming a third host is how FTP bounces and NAT
 * confusion start); an octet over 255 or port 0 in the reply is a protocol error.
 * A transfer follows RFC 959's order: the data connection, the command, its 1xx
 * reply, (with PROT P the TLS handshake on the data connection,) the data until EOF,
 * closing the data connection, then the final reply.
 *
 * Exit status: the step that failed, with "ftp_client: <what>: <reason>" on stderr.
 *   0 every command succeeded        1 internal failure (no memory)
 *   2 usage: bad arguments, CR or LF in an argument, a local file that cannot be used
 *   3 connect                        4 greeting
 *   5 TLS (AUTH TLS, the handshake, PBSZ, PROT)
 *   6 login (USER, PASS)             7 a command: TYPE, cd, pwd, mkdir, rm, size
 *   8 the data connection (EPSV, PASV, connecting to the data port)
 *   9 a transfer: ls, nlst, get, put (the command, the data, the final reply)
 *  10 QUIT
 *
 * Single-threaded: the task runs on the loop's thread. Local file I/O blocks the
 * loop, which is fine for a program with one session. */
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tide.h>

/* Control replies are short lines; these bound the buffer and the work per reply. */
#define REPLY_LINE_MAX 1024
#define REPLY_LINES_MAX 200
#define COMMAND_MAX 1024
#define DATA_CHUNK (64 * 1024)
#define MAX_OPS 64

enum step {
    STEP_OK = 0,
    STEP_INTERNAL = 1,
    STEP_USAGE = 2,
    STEP_CONNECT = 3,
    STEP_GREETING = 4,
    STEP_TLS = 5,
    STEP_LOGIN = 6,
    STEP_COMMAND = 7,
    STEP_DATA = 8,
    STEP_TRANSFER = 9,
    STEP_QUIT = 10,
};

enum op_kind { OP_LS, OP_NLST, OP_GET, OP_PUT, OP_MKDIR, OP_RM, OP_CD, OP_PWD, OP_SIZE };

static const struct {
    const char *word;
    int min_args, max_args;
} op_table[] = {
    [OP_LS] = {"ls", 0, 1},   [OP_NLST] = {"nlst", 0, 1},   [OP_GET] = {"get", 1, 2},
    [OP_PUT] = {"put", 1, 2}, [OP_MKDIR] = {"mkdir", 1, 1}, [OP_RM] = {"rm", 1, 1},
    [OP_CD] = {"cd", 1, 1},   [OP_PWD] = {"pwd", 0, 0},     [OP_SIZE] = {"size", 1, 1},
};

typedef struct op {
    enum op_kind kind;
    const char *args[2];
    int nargs;
} op;

typedef struct ftp {
    /* From the command line. */
    char host[256];
    unsigned port;
    const char *user;
    const char *password;
    bool use_tls;
    const char *cafile;
    bool insecure;
    bool verbose;
    double timeout;
    op ops[MAX_OPS];
    size_t nops;

    /* The session. */
    tide_loop_t *loop;
    tide_tls_config_t *tls;
    tide_tls_session_t *session; /* the control connection's, for the data connections */
    tide_reader_t *reader;
    tide_writer_t *writer;
    bool no_epsv;  /* the server refused EPSV: PASV from now on */
    bool progress; /* standard error is a terminal */
    int code;
    char text[REPLY_LINE_MAX + 1]; /* the last reply's first line, without its code */
} ftp;

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

static int fail_io(ftp *f, int step, const char *what, int err) {
    char buf[256];
    if (err == TIDE_ETIMEOUT)
        return fail(step, what, "no answer within %g seconds", f->timeout);
    if (err == TIDE_EOF || err == TIDE_EINCOMPLETE)
        return fail(step, what, "the server closed the connection");
    return fail(step, what, "%s", tide_strerror_r(err, buf, sizeof buf));
}

static int refused(ftp *f, int step, const char *what) {
    return fail(step, what, "server replied %d %s", f->code, f->text);
}

static void printable(char *text) {
    for (; *text != '\0'; text++)
        if ((unsigned char)*text < 0x20 || *text == 0x7f)
            *text = '?';
}

/* Reads one control line into line (NUL-terminated, CRLF removed). */
static int read_line(ftp *f, int step, const char *what, char *line, size_t *len) {
    int rc = tide_reader_readline_await(f->reader, line, REPLY_LINE_MAX + 1, len);
    if (rc == TIDE_ELIMIT)
        return fail(step, what, "protocol error: a reply line longer than %d octets",
                    REPLY_LINE_MAX);
    if (rc == 0 && (*len == 0 || line[*len - 1] != '\n'))
        rc = TIDE_EINCOMPLETE;
    if (rc != 0)
        return fail_io(f, step, what, rc);
    size_t n = *len - 1;
    if (n > 0 && line[n - 1] == '\r')
        n--;
    line[n] = '\0';
    *len = n;
    printable(line);
    if (f->verbose)
        fprintf(stderr, "S: %s\n", line);
    return 0;
}

static bool has_code(const char *line, size_t len) {
    return len >= 3 && line[0] >= '1' && line[0] <= '5' && line[1] >= '0' && line[1] <= '9' &&
           line[2] >= '0' && line[2] <= '9' && (len == 3 || line[3] == ' ' || line[3] == '-');
}

/* Reads one reply (RFC 959 4.2): "CODE text", or "CODE-text", any lines, and a last
 * line starting with "CODE ". Sets f->code and f->text. */
static int read_reply(ftp *f, int step, const char *what) {
    char line[REPLY_LINE_MAX + 1];
    size_t len;
    int rc = read_line(f, step, what, line, &len);
    if (rc != 0)
        return rc;
    if (!has_code(line, len))
        return fail(step, what, "protocol error: malformed reply \"%.80s\"", line);
    f->code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    snprintf(f->text, sizeof f->text, "%s", len > 4 ? line + 4 : "");
    if (len == 3 || line[3] == ' ')
        return 0;
    for (int n = 1;; n++) {
        if (n == REPLY_LINES_MAX)
            return fail(step, what, "protocol error: a reply of more than %d lines",
                        REPLY_LINES_MAX);
        if ((rc = read_line(f, step, what, line, &len)) != 0)
            return rc;
        /* Lines in between may look like anything, even another code. */
        if (has_code(line, len) && (len == 3 || line[3] == ' ') &&
            (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0') == f->code)
            return 0;
    }
}

/* Sends one command and reads its reply, within the timeout. shown replaces the line
 * in --verbose output (NULL: the line itself). */
static int command(ftp *f, int step, const char *shown, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int command(ftp *f, int step, const char *shown, const char *fmt, ...) {
    char line[COMMAND_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 2, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line - 2)
        return fail(step, "command", "command too long");
    if (f->verbose)
        fprintf(stderr, "C: %s\n", shown != NULL ? shown : line);
    /* Errors name the command (cut to a readable length). */
    char what_buf[96];
    snprintf(what_buf, sizeof what_buf, "%.95s", shown != NULL ? shown : line);
    memcpy(line + n, "\r\n", 2);

    tide_task_deadline_push(f->timeout);
    int rc = tide_writer_write(f->writer, line, (size_t)n + 2);
    if (rc == 0)
        rc = tide_writer_drain_await(f->writer);
    rc = rc != 0 ? fail_io(f, step, what_buf, rc) : read_reply(f, step, what_buf);
    tide_task_deadline_pop();
    return rc;
}

/* ---- passive mode ------------------------------------------------------------------ */

/* "229 Entering Extended Passive Mode (|||port|)": any delimiter, the same four times. */
static int parse_epsv(ftp *f, unsigned *port) {
    const char *p = strchr(f->text, '(');
    if (p == NULL || p[1] < 33 || p[1] > 126 || p[2] != p[1] || p[3] != p[1])
        return fail(STEP_DATA, "EPSV", "protocol error: malformed reply \"%s\"", f->text);
    char delim = p[1], *end;
    p += 4;
    unsigned long v = strtoul(p, &end, 10);
    if (end == p || *p < '0' || *p > '9' || end[0] != delim || end[1] != ')' || v == 0 || v > 65535)
        return fail(STEP_DATA, "EPSV", "protocol error: malformed reply \"%s\"", f->text);
    *port = (unsigned)v;
    return 0;
}

/* "227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)", the parentheses optional. Only the
 * port is used; the address is checked for form and then ignored. */
static int parse_pasv(ftp *f, unsigned *port, char *named, size_t size) {
    const char *p = f->text + strcspn(f->text, "0123456789");
    unsigned long v[6];
    for (int i = 0; i < 6; i++) {
        char *end;
        if (*p < '0' || *p > '9')
            return fail(STEP_DATA, "PASV", "protocol error: malformed reply \"%s\"", f->text);
        v[i] = strtoul(p, &end, 10);
        if (end - p > 3 || v[i] > 255)
            return fail(STEP_DATA, "PASV", "protocol error: %.*s is not an octet in \"%s\"",
                        (int)(end - p), p, f->text);
        if (i < 5 && *end != ',')
            return fail(STEP_DATA, "PASV", "protocol error: malformed reply \"%s\"", f->text);
        p = end + (i < 5);
    }
    *port = (unsigned)(v[4] * 256 + v[5]);
    if (*port == 0)
        return fail(STEP_DATA, "PASV", "protocol error: port 0 in \"%s\"", f->text);
    snprintf(named, size, "%lu.%lu.%lu.%lu", v[0], v[1], v[2], v[3]);
    return 0;
}

/* Opens a data connection: EPSV (or PASV) for the port, the control connection's peer
 * for the address. */
static int open_data(ftp *f, tide_reader_t **reader, tide_writer_t **writer) {
    unsigned port = 0;
    char named[32] = "";
    int rc;
    if (!f->no_epsv) {
        if ((rc = command(f, STEP_DATA, NULL, "EPSV")) != 0)
            return rc;
        if (f->code == 229) {
            if ((rc = parse_epsv(f, &port)) != 0)
                return rc;
        } else if (f->code >= 500) {
            f->no_epsv = true; /* not understood (500-502) or not allowed: ask PASV */
        } else {
            return refused(f, STEP_DATA, "EPSV");
        }
    }
    if (port == 0) {
        if ((rc = command(f, STEP_DATA, NULL, "PASV")) != 0)
            return rc;
        if (f->code != 227)
            return refused(f, STEP_DATA, "PASV");
        if ((rc = parse_pasv(f, &port, named, sizeof named)) != 0)
            return rc;
    }

    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;
    char host[NI_MAXHOST];
    tide_transport_t *control = tide_writer_get_transport(f->writer);
    rc = control != NULL ? tide_transport_get_peername(control, (struct sockaddr *)&peer, &len)
                         : TIDE_ENOTCONN;
    if (rc != 0)
        return fail_io(f, STEP_DATA, "control connection", rc);
    if ((rc = getnameinfo((struct sockaddr *)&peer, len, host, sizeof host, NULL, 0,
                          NI_NUMERICHOST)) != 0)
        return fail(STEP_DATA, "control connection", "%s", gai_strerror(rc));
    if (f->verbose) {
        if (named[0] != '\0' && strcmp(named, host) != 0)
            fprintf(stderr, "-- PASV named %s; connecting to the control peer %s instead\n", named,
                    host);
        fprintf(stderr, "-- data connection to %s port %u%s\n", host, port,
                f->use_tls ? " (TLS)" : "");
    }

    tide_connect_options_t options = {.timeout = f->timeout};
    tide_task_deadline_push(f->timeout);
    rc = tide_loop_open_connection_await(f->loop, host, (uint16_t)port, TIDE_STREAM_DEFAULT_LIMIT,
                                         &options, reader, writer);
    tide_task_deadline_pop();
    if (rc != 0) {
        char what[96];
        snprintf(what, sizeof what, "data connection to %.64s port %u", host, port);
        return fail_io(f, STEP_DATA, what, rc);
    }
    return 0;
}

/* PROT P: TLS on the data connection, resuming the control connection's session, once
 * the transfer command was accepted (RFC 4217 7, and what curl does): servers such as
 * pyftpdlib drop a data connection that speaks before the command arrived. */
static int secure_data(ftp *f, tide_writer_t *data, const char *what) {
    tide_task_deadline_push(f->timeout);
    int rc = tide_writer_start_tls_await(data, f->tls, f->host, f->session);
    tide_task_deadline_pop();
    if (rc != 0) {
        char buf[256];
        return fail(STEP_TRANSFER, what, "TLS on the data connection: %s",
                    tide_strerror_r(rc, buf, sizeof buf));
    }
    tide_tls_info_t info;
    if (f->verbose && tide_tls_get_info(tide_writer_get_transport(data), &info) == 0)
        fprintf(stderr, "-- data connection: %s, session %s\n", info.version,
                info.resumed ? "resumed" : "not resumed");
    return 0;
}

/* ---- transfers ----------------------------------------------------------------------- */

static void show_progress(ftp *f, const char *name, long long done, long long total, double *last,
                          bool final) {
    if (!f->progress)
        return;
    double now = tide_loop_time(f->loop);
    if (!final && now - *last < 0.1)
        return;
    *last = now;
    if (total > 0)
        fprintf(stderr, "\r%s: %lld / %lld bytes (%d%%)", name, done, total,
                (int)(done * 100 / total));
    else
        fprintf(stderr, "\r%s: %lld bytes", name, done);
    if (final)
        fputc('\n', stderr);
}

/* Reads the data connection to its end into out. A TLS data connection must end with
 * close_notify: a cut one (TIDE_ETLS_TRUNCATED) is an error, not the end of a file. */
static int receive_data(ftp *f, tide_reader_t *data, FILE *out, const char *what, long long total) {
    static char buf[DATA_CHUNK];
    long long done = 0;
    double last = 0;
    for (;;) {
        size_t n;
        tide_task_deadline_push(f->timeout);
        int rc = tide_reader_read_await(data, buf, sizeof buf, &n);
        tide_task_deadline_pop();
        if (rc == TIDE_EOF)
            break;
        if (rc != 0)
            return fail_io(f, STEP_TRANSFER, what, rc);
        if (fwrite(buf, 1, n, out) != n)
            return fail(STEP_TRANSFER, what, "writing the local file: %s", strerror(errno));
        done += (long long)n;
        show_progress(f, what, done, total, &last, false);
    }
    show_progress(f, what, done, total, &last, true);
    return 0;
}

/* Sends in over the data connection, waiting for the queue to drain as it goes. */
static int send_data(ftp *f, tide_writer_t *data, FILE *in, const char *what, long long total) {
    static char buf[DATA_CHUNK];
    long long done = 0;
    double last = 0;
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
        tide_task_deadline_push(f->timeout);
        int rc = tide_writer_write(data, buf, n);
        if (rc == 0)
            rc = tide_writer_drain_await(data);
        tide_task_deadline_pop();
        if (rc != 0)
            return fail_io(f, STEP_TRANSFER, what, rc);
        done += (long long)n;
        show_progress(f, what, done, total, &last, false);
    }
    if (ferror(in))
        return fail(STEP_TRANSFER, what, "reading the local file: %s", strerror(errno));
    show_progress(f, what, done, total, &last, true);
    return 0;
}

/* One transfer in RFC 959's order: the data connection, the command, its preliminary
 * 1xx reply, (with PROT P the TLS handshake,) the data (from in, or into out), our end
 * of the data connection closed, then the final 2xx reply. */
static int transfer(ftp *f, const char *verb, const char *arg, FILE *in, FILE *out,
                    long long total) {
    char what[COMMAND_MAX];
    snprintf(what, sizeof what, "%s%s%s", verb, arg != NULL ? " " : "", arg != NULL ? arg : "");
    tide_reader_t *dr;
    tide_writer_t *dw;
    int rc = open_data(f, &dr, &dw);
    if (rc != 0)
        return rc;
    rc = command(f, STEP_TRANSFER, NULL, "%s", what);
    if (rc == 0 && f->code / 100 != 1)
        rc = refused(f, STEP_TRANSFER, what);
    if (rc == 0 && f->use_tls)
        rc = secure_data(f, dw, what);
    if (rc == 0)
        rc = in != NULL ? send_data(f, dw, in, what, total) : receive_data(f, dr, out, what, total);
    /* Our close is the end of an upload (EOF, and close_notify over TLS); an upload
     * is complete only when that close went through. */
    if (rc == 0)
        tide_writer_close(dw);
    else
        tide_writer_abort(dw);
    tide_task_deadline_push(f->timeout);
    int closed = tide_writer_wait_closed_await(dw);
    tide_task_deadline_pop();
    if (rc == 0 && in != NULL && closed != 0)
        rc = fail_io(f, STEP_TRANSFER, what, closed);
    if (rc != 0)
        return rc;
    /* Over plain FTP only this reply tells a complete download from a cut one. */
    char confirm[COMMAND_MAX + 32];
    snprintf(confirm, sizeof confirm, "%s (final reply)", what);
    tide_task_deadline_push(f->timeout);
    rc = read_reply(f, STEP_TRANSFER, confirm);
    tide_task_deadline_pop();
    if (rc == 0 && f->code / 100 != 2)
        rc = refused(f, STEP_TRANSFER, what);
    return rc;
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash != NULL && slash[1] != '\0' ? slash + 1 : path;
}

/* get: into LOCAL.part, renamed to LOCAL only after the server's final reply, so a
 * failed transfer never leaves a truncated file under the real name. */
static int get(ftp *f, const char *remote, const char *local) {
    char part[4096];
    if (local == NULL)
        local = base_name(remote);
    if ((size_t)snprintf(part, sizeof part, "%s.part", local) >= sizeof part)
        return fail(STEP_USAGE, local, "name too long");
    long long total = 0;
    if (f->progress) { /* only for the progress line: the size is not needed otherwise */
        int rc = command(f, STEP_COMMAND, NULL, "SIZE %s", remote);
        if (rc != 0)
            return rc;
        if (f->code == 213)
            total = strtoll(f->text, NULL, 10);
    }
    FILE *out = fopen(part, "wb");
    if (out == NULL)
        return fail(STEP_USAGE, part, "%s", strerror(errno));
    int rc = transfer(f, "RETR", remote, NULL, out, total);
    if (fclose(out) != 0 && rc == 0)
        rc = fail(STEP_TRANSFER, part, "%s", strerror(errno));
    if (rc == 0 && rename(part, local) != 0)
        rc = fail(STEP_TRANSFER, local, "%s", strerror(errno));
    if (rc != 0)
        unlink(part);
    return rc;
}

static int put(ftp *f, const char *local, const char *remote) {
    FILE *in = fopen(local, "rb");
    if (in == NULL)
        return fail(STEP_USAGE, local, "%s", strerror(errno));
    struct stat st;
    long long total = fstat(fileno(in), &st) == 0 ? (long long)st.st_size : 0;
    int rc = transfer(f, "STOR", remote != NULL ? remote : base_name(local), in, NULL, total);
    fclose(in);
    return rc;
}

/* A command with a one-line result: runs it and checks the code. */
static int simple(ftp *f, int want, const char *verb, const char *arg) {
    int rc = command(f, STEP_COMMAND, NULL, "%s%s%s", verb, arg != NULL ? " " : "",
                     arg != NULL ? arg : "");
    if (rc == 0 && f->code != want) {
        char what[COMMAND_MAX];
        snprintf(what, sizeof what, "%s%s%s", verb, arg != NULL ? " " : "", arg != NULL ? arg : "");
        rc = refused(f, STEP_COMMAND, what);
    }
    return rc;
}

static int run_op(ftp *f, const op *o) {
    const char *a = o->args[0], *b = o->nargs > 1 ? o->args[1] : NULL;
    int rc;
    switch (o->kind) {
    case OP_LS:
        rc = transfer(f, "LIST", a, NULL, stdout, 0);
        fflush(stdout);
        return rc;
    case OP_NLST:
        rc = transfer(f, "NLST", a, NULL, stdout, 0);
        fflush(stdout);
        return rc;
    case OP_GET:
        return get(f, a, b);
    case OP_PUT:
        return put(f, a, b);
    case OP_MKDIR:
        return simple(f, 257, "MKD", a);
    case OP_RM:
        return simple(f, 250, "DELE", a);
    case OP_CD:
        return simple(f, 250, "CWD", a);
    case OP_PWD:
        if ((rc = simple(f, 257, "PWD", NULL)) == 0)
            printf("%s\n", f->text);
        return rc;
    case OP_SIZE:
        if ((rc = simple(f, 213, "SIZE", a)) == 0)
            printf("%s\n", f->text);
        return rc;
    }
    return STEP_INTERNAL;
}

/* ---- the session ------------------------------------------------------------------- */

/* AUTH TLS (RFC 4217 4): nothing the server sent before the handshake may count. */
static int start_tls(ftp *f) {
    int rc = command(f, STEP_TLS, NULL, "AUTH TLS");
    if (rc != 0)
        return rc;
    if (f->code != 234)
        return fail(STEP_TLS, "AUTH TLS",
                    "server replied %d %s; not sending the login "
                    "without TLS",
                    f->code, f->text);
    size_t extra = tide_reader_buffered(f->reader);
    if (extra > 0)
        return fail(STEP_TLS, "AUTH TLS",
                    "protocol error: %zu octets after the 234 reply, "
                    "before the TLS handshake (response injection)",
                    extra);
    tide_task_deadline_push(f->timeout);
    rc = tide_writer_start_tls_await(f->writer, f->tls, f->host, NULL);
    tide_task_deadline_pop();
    if (rc != 0)
        return fail_io(f, STEP_TLS, "TLS handshake", rc);
    rc = tide_tls_get_session(tide_writer_get_transport(f->writer), &f->session);
    if (rc != 0)
        return fail_io(f, STEP_TLS, "TLS session", rc);
    return 0;
}

static int login(ftp *f) {
    const char *user = f->user != NULL ? f->user : "anonymous";
    const char *password = f->password != NULL ? f->password : "anonymous@";
    int rc = command(f, STEP_LOGIN, NULL, "USER %s", user);
    if (rc == 0 && f->code == 331)
        rc = command(f, STEP_LOGIN, "PASS <hidden>", "PASS %s", password);
    if (rc == 0 && f->code != 230)
        rc = refused(f, STEP_LOGIN, "login");
    return rc;
}

static int converse(ftp *f) {
    int rc;
    tide_task_deadline_push(f->timeout);
    rc = read_reply(f, STEP_GREETING, "greeting");
    if (rc == 0 && f->code == 120) /* "ready in nnn minutes": wait for the real one */
        rc = read_reply(f, STEP_GREETING, "greeting");
    tide_task_deadline_pop();
    if (rc != 0)
        return rc;
    if (f->code != 220)
        return refused(f, STEP_GREETING, "greeting");
    if (f->use_tls && (rc = start_tls(f)) != 0)
        return rc;
    if ((rc = login(f)) != 0)
        return rc;
    if (f->use_tls) {
        if ((rc = command(f, STEP_TLS, NULL, "PBSZ 0")) != 0)
            return rc;
        if (f->code != 200)
            return refused(f, STEP_TLS, "PBSZ 0");
        if ((rc = command(f, STEP_TLS, NULL, "PROT P")) != 0)
            return rc;
        if (f->code != 200)
            return refused(f, STEP_TLS, "PROT P");
    }
    /* FEAT only informs (--verbose shows it); servers without it answer 5xx. */
    if ((rc = command(f, STEP_COMMAND, NULL, "FEAT")) != 0)
        return rc;
    if ((rc = simple(f, 200, "TYPE", "I")) != 0)
        return rc;
    for (size_t i = 0; i < f->nops; i++)
        if ((rc = run_op(f, &f->ops[i])) != 0)
            return rc;
    if ((rc = command(f, STEP_QUIT, NULL, "QUIT")) != 0)
        return rc;
    return f->code == 221 ? 0 : refused(f, STEP_QUIT, "QUIT");
}

static int ftp_task(void *arg) {
    ftp *f = arg;
    if (f->verbose)
        fprintf(stderr, "-- connecting to %s port %u\n", f->host, f->port);
    tide_connect_options_t options = {.timeout = f->timeout};
    int rc = tide_loop_open_connection_await(f->loop, f->host, (uint16_t)f->port, REPLY_LINE_MAX,
                                             &options, &f->reader, &f->writer);
    if (rc != 0)
        return fail_io(f, STEP_CONNECT, "connect", rc);
    int status = converse(f);
    if (status == 0)
        tide_writer_close(f->writer);
    else
        tide_writer_abort(f->writer);
    tide_task_deadline_push(f->timeout);
    tide_writer_wait_closed_await(f->writer);
    tide_task_deadline_pop();
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
    if (value[strcspn(value, "\r\n")] != '\0')
        return fail(STEP_USAGE, what, "contains CR or LF");
    if (strlen(value) > 512)
        return fail(STEP_USAGE, what, "longer than 512 octets");
    return 0;
}

static int parse_server(ftp *f, const char *arg) {
    const char *host = arg, *colon = strrchr(arg, ':');
    size_t hlen = strlen(arg);
    f->port = 21;
    if (arg[0] == '[') {
        const char *close = strchr(arg, ']');
        if (close == NULL || (close[1] != '\0' && close[1] != ':'))
            return fail(STEP_USAGE, "--server", "bad value '%s'", arg);
        host = arg + 1;
        hlen = (size_t)(close - host);
        colon = close[1] == ':' ? close + 1 : NULL;
    } else if (colon != NULL && strchr(arg, ':') != colon) {
        colon = NULL;
    } else if (colon != NULL) {
        hlen = (size_t)(colon - arg);
    }
    if (colon != NULL) {
        char *end;
        unsigned long v = strtoul(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end != '\0' || v == 0 || v > 65535)
            return fail(STEP_USAGE, "--server", "bad port in '%s'", arg);
        f->port = (unsigned)v;
    }
    if (hlen == 0 || hlen >= sizeof f->host)
        return fail(STEP_USAGE, "--server", "bad host in '%s'", arg);
    memcpy(f->host, host, hlen);
    f->host[hlen] = '\0';
    return 0;
}

static int op_kind_of(const char *word) {
    for (size_t k = 0; k < sizeof op_table / sizeof op_table[0]; k++)
        if (strcmp(word, op_table[k].word) == 0)
            return (int)k;
    return -1;
}

static int parse_args(int argc, char **argv, ftp *f) {
    const char *server = NULL;
    *f = (ftp){.timeout = 30};
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--tls") == 0) {
            f->use_tls = true;
            continue;
        } else if (strcmp(arg, "--insecure") == 0) {
            f->insecure = true;
            continue;
        } else if (strcmp(arg, "--verbose") == 0) {
            f->verbose = true;
            continue;
        } else if (val == NULL) {
            return usage();
        } else if (strcmp(arg, "--server") == 0) {
            server = val;
        } else if (strcmp(arg, "--user") == 0) {
            f->user = val;
        } else if (strcmp(arg, "--password") == 0) {
            f->password = val;
        } else if (strcmp(arg, "--cafile") == 0) {
            f->cafile = val;
        } else if (strcmp(arg, "--timeout") == 0) {
            char *end;
            f->timeout = strtod(val, &end);
            if (*end != '\0' || !(f->timeout > 0))
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
        if (f->nops == MAX_OPS)
            return fail(STEP_USAGE, argv[i], "too many commands");
        op *o = &f->ops[f->nops++];
        *o = (op){.kind = (enum op_kind)kind};
        while (o->nargs < op_table[kind].max_args && i + 1 < argc && op_kind_of(argv[i + 1]) < 0)
            o->args[o->nargs++] = argv[++i];
        if (o->nargs < op_table[kind].min_args)
            return fail(STEP_USAGE, op_table[kind].word, "missing argument");
        for (int a = 0; a < o->nargs; a++) {
            int rc = check_field(op_table[kind].word, o->args[a]);
            if (rc != 0)
                return rc;
        }
    }
    if (server == NULL || f->nops == 0)
        return usage();
    int rc = parse_server(f, server);
    if (rc != 0)
        return rc;
    if (f->user != NULL && f->password == NULL)
        f->password = getenv("FTP_PASSWORD");
    if ((f->user != NULL && (rc = check_field("--user", f->user)) != 0) ||
        (f->password != NULL && (rc = check_field("the password", f->password)) != 0))
        return rc;
    return 0;
}

static int make_tls(ftp *f) {
    int rc = tide_tls_config_new_client(&f->tls);
    if (rc == 0 && f->cafile != NULL && (rc = tide_tls_config_load_ca_file(f->tls, f->cafile)) != 0)
        return fail(STEP_USAGE, "--cafile", "%s: %s", f->cafile, tide_strerror(rc));
    if (rc == 0 && f->insecure)
        rc = tide_tls_config_set_verify_peer(f->tls, false);
    return rc != 0 ? fail(STEP_USAGE, "TLS configuration", "%s", tide_strerror(rc)) : 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    ftp *f = malloc(sizeof *f); /* ops and buffers: too big for main's stack frame */
    if (f == NULL)
        return fail(STEP_INTERNAL, "memory", "%s", strerror(errno));
    int status = parse_args(argc, argv, f);
    if (status == 0 && f->use_tls)
        status = make_tls(f);
    if (status == 0) {
        f->progress = isatty(STDERR_FILENO);
        int rc = tide_loop_new(&f->loop);
        if (rc != 0) {
            status = fail(STEP_INTERNAL, "loop", "%s", tide_strerror(rc));
        } else {
            status = STEP_INTERNAL;
            rc = tide_loop_run_until_complete(f->loop, ftp_task, f, NULL, &status);
            if (rc != 0)
                status = fail(STEP_INTERNAL, "run", "%s", tide_strerror(rc));
            if ((rc = tide_loop_close(f->loop)) != 0)
                status = fail(STEP_INTERNAL, "loop close", "%s", tide_strerror(rc));
        }
    }
    tide_tls_session_free(f->session);
    tide_tls_config_unref(f->tls);
    free(f);
    return status;
}
