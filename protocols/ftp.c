/* The FTP client module (tide/ftp.h): the control connection (protocols/protocols_int.h,
 * shared with SMTP), passive data connections, FTPS with session reuse, transfers to
 * and from callbacks and files.
 *
 * Where it sits: protocols/, on streams and tasks (every call is an _await call and
 * runs inside a task) and on the reply parser. Local file I/O blocks the loop, as
 * stdio does; a session is used by one task at a time. Loop thread only. */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "protocols/protocols_int.h"
#include "tide/ftp.h"

#define DATA_CHUNK (64 * 1024)

struct tide_ftp {
    tide__ctl_t ctl;
    char host[256];
    tide_tls_config_t *tls;      /* referenced */
    tide_tls_session_t *session; /* the control connection's, for the data connections */
    bool protect;                /* PROT P: TLS on the data connections */
    bool no_epsv;                /* the server refused EPSV: PASV from now on */
    tide_ftp_stage_t stage;
};

int tide_ftp_connect_await(tide_loop_t *loop, const char *host, uint16_t port,
                           const tide_ftp_options_t *options, tide_ftp_t **ftp) {
    if (ftp != NULL)
        *ftp = NULL;
    tide_ftp_options_t opt = options != NULL ? *options : (tide_ftp_options_t){0};
    if (loop == NULL || host == NULL || ftp == NULL || strlen(host) >= 256)
        return TIDE_EINVAL;
    tide_ftp_t *f = calloc(1, sizeof *f);
    if (f == NULL)
        return TIDE_ENOMEM;
    snprintf(f->host, sizeof f->host, "%s",
             opt.server_hostname != NULL ? opt.server_hostname : host);
    f->ctl.dialogue = opt.dialogue;
    f->ctl.dialogue_arg = opt.dialogue_arg;
    if (opt.tls != NULL)
        f->tls = tide_tls_config_ref(opt.tls);
    int rc = tide__ctl_open(&f->ctl, loop, host, port, NULL, NULL, TIDE_REPLY_FTP, opt.timeout);
    if (rc != 0) {
        tide_tls_config_unref(f->tls);
        free(f);
        return rc;
    }
    *ftp = f;
    return 0;
}

const tide_reply_t *tide_ftp_last_reply(const tide_ftp_t *f) { return &f->ctl.reply; }
const char *tide_ftp_last_command(const tide_ftp_t *f) { return f->ctl.shown; }
tide_ftp_stage_t tide_ftp_failed_stage(const tide_ftp_t *f) { return f->stage; }

char *tide_ftp_strerror_r(const tide_ftp_t *f, int err, char *buf, size_t len) {
    return f != NULL ? tide__ctl_strerror(&f->ctl, err, buf, len) : tide_strerror_r(err, buf, len);
}

/* rc, or TIDE_EREPLY when the reply's first digit is not want_class (1-5). */
static int expect_class(tide_ftp_t *f, int rc, int want_class) {
    return rc != 0 ? rc : f->ctl.reply.code / 100 == want_class ? 0 : TIDE_EREPLY;
}

int tide_ftp_command_await(tide_ftp_t *f, const char *verb, const char *arg, int want) {
    f->stage = TIDE_FTP_STAGE_CONTROL;
    int rc = tide__ctl_command(&f->ctl, verb, arg, NULL);
    return rc != 0 ? rc : want == 0 || f->ctl.reply.code == want ? 0 : TIDE_EREPLY;
}

int tide_ftp_greeting_await(tide_ftp_t *f) {
    f->stage = TIDE_FTP_STAGE_CONTROL;
    int rc = tide__ctl_read(&f->ctl, NULL, NULL);
    if (rc == 0 && f->ctl.reply.code == 120) /* "ready in nnn minutes": the real one follows */
        rc = tide__ctl_read(&f->ctl, NULL, NULL);
    return rc != 0 ? rc : f->ctl.reply.code == 220 ? 0 : TIDE_EREPLY;
}

int tide_ftp_auth_tls_await(tide_ftp_t *f) {
    if (f->tls == NULL || f->session != NULL)
        return TIDE_EINVAL;
    int rc = tide_ftp_command_await(f, "AUTH", "TLS", 0);
    if (rc != 0)
        return rc;
    if (f->ctl.reply.code != 234)
        return TIDE_ESTARTTLS_REFUSED;
    if ((rc = tide__ctl_start_tls(&f->ctl, f->tls, f->host)) != 0)
        return rc;
    return tide_tls_get_session(tide_writer_get_transport(f->ctl.writer), &f->session);
}

int tide_ftp_login_await(tide_ftp_t *f, const char *user, const char *password) {
    if (user == NULL) {
        user = "anonymous";
        if (password == NULL)
            password = "anonymous@";
    }
    if (password == NULL)
        password = "";
    if (!tide_command_arg_is_safe(password, strlen(password)))
        return TIDE_ECOMMAND_CHARS;
    int rc = tide_ftp_command_await(f, "USER", user, 0);
    if (rc == 0 && f->ctl.reply.code == 331)
        rc = tide__ctl_command(&f->ctl, "PASS", password, "PASS <hidden>");
    return rc != 0 ? rc : f->ctl.reply.code == 230 ? 0 : TIDE_EREPLY;
}

int tide_ftp_protect_await(tide_ftp_t *f) {
    if (f->session == NULL)
        return TIDE_ESTATE;
    int rc = tide_ftp_command_await(f, "PBSZ", "0", 200);
    if (rc == 0)
        rc = tide_ftp_command_await(f, "PROT", "P", 200);
    f->protect = rc == 0;
    return rc;
}

int tide_ftp_size_await(tide_ftp_t *f, const char *path, uint64_t *size) {
    int rc = tide_ftp_command_await(f, "SIZE", path, 213);
    if (rc != 0)
        return rc;
    char *end;
    unsigned long long v = strtoull(f->ctl.reply.text, &end, 10);
    if (end == f->ctl.reply.text)
        return TIDE_EREPLY_SYNTAX;
    if (size != NULL)
        *size = v;
    return 0;
}

int tide_ftp_quit_await(tide_ftp_t *f) { return tide_ftp_command_await(f, "QUIT", NULL, 221); }

/* ---- data connections ---------------------------------------------------------------- */

/* The port from EPSV (or PASV once EPSV was refused). */
static int passive_port(tide_ftp_t *f, uint16_t *port, uint8_t named[4], bool *pasv) {
    int rc;
    *pasv = false;
    if (!f->no_epsv) {
        if ((rc = tide__ctl_command(&f->ctl, "EPSV", NULL, NULL)) != 0)
            return rc;
        if (f->ctl.reply.code == 229)
            return tide_reply_parse_epsv(f->ctl.reply.text, port);
        if (f->ctl.reply.code < 500)
            return TIDE_EREPLY;
        f->no_epsv = true; /* not understood (500-502) or not allowed: PASV from now on */
    }
    if ((rc = tide__ctl_command(&f->ctl, "PASV", NULL, NULL)) != 0)
        return rc;
    if (f->ctl.reply.code != 227)
        return TIDE_EREPLY;
    *pasv = true;
    return tide_reply_parse_pasv(f->ctl.reply.text, named, port);
}

/* Opens a data connection: the port from the server, the address from the control
 * connection's peer. */
static int open_data(tide_ftp_t *f, tide_reader_t **reader, tide_writer_t **writer) {
    uint16_t port = 0;
    uint8_t named[4];
    bool pasv;
    int rc = passive_port(f, &port, named, &pasv);
    if (rc != 0)
        return rc;
    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;
    char host[NI_MAXHOST];
    tide_transport_t *control = tide_writer_get_transport(f->ctl.writer);
    rc = control != NULL ? tide_transport_get_peername(control, (struct sockaddr *)&peer, &len)
                         : TIDE_ENOTCONN;
    if (rc != 0)
        return rc;
    rc = getnameinfo((struct sockaddr *)&peer, len, host, sizeof host, NULL, 0, NI_NUMERICHOST);
    if (rc != 0)
        return tide_err_from_gai(rc);
    if (pasv) {
        char shown[32];
        snprintf(shown, sizeof shown, "%u.%u.%u.%u", named[0], named[1], named[2], named[3]);
        if (strcmp(shown, host) != 0)
            tide__ctl_note(&f->ctl, "PASV named %s; connecting to the control peer %s instead",
                           shown, host);
    }
    tide__ctl_note(&f->ctl, "data connection to %s port %u%s", host, port,
                   f->protect ? " (TLS)" : "");
    tide_connect_options_t options = {.timeout = f->ctl.timeout};
    tide_task_deadline_push(f->ctl.timeout);
    rc = tide_loop_open_connection_await(f->ctl.loop, host, port, TIDE_STREAM_DEFAULT_LIMIT,
                                         &options, reader, writer);
    tide_task_deadline_pop();
    return rc;
}

/* PROT P: TLS on the data connection, resuming the control connection's session, once
 * the transfer command was accepted (RFC 4217 7, and what curl does): servers such as
 * pyftpdlib drop a data connection that speaks before the command arrived. */
static int secure_data(tide_ftp_t *f, tide_writer_t *data) {
    tide_task_deadline_push(f->ctl.timeout);
    int rc = tide_writer_start_tls_await(data, f->tls, f->host, f->session);
    tide_task_deadline_pop();
    tide_tls_info_t info;
    if (rc == 0 && tide_tls_get_info(tide_writer_get_transport(data), &info) == 0)
        tide__ctl_note(&f->ctl, "data connection: %s, session %s", info.version,
                       info.resumed ? "resumed" : "not resumed");
    return rc;
}

/* Reads the data connection to its end into the sink. A TLS data connection must end
 * with close_notify: a cut one (TIDE_ETLS_TRUNCATED) is an error, not an end. */
static int receive(tide_ftp_t *f, tide_reader_t *data, const tide_ftp_io_t *io, char *buf) {
    uint64_t done = 0;
    for (;;) {
        size_t n;
        tide_task_deadline_push(f->ctl.timeout);
        int rc = tide_reader_read_await(data, buf, DATA_CHUNK, &n);
        tide_task_deadline_pop();
        if (rc == TIDE_EOF)
            return 0;
        if (rc != 0)
            return rc;
        if ((rc = io->sink(buf, n, io->arg)) != 0)
            return rc < 0 ? rc : TIDE_ESINK;
        done += n;
        if (io->progress != NULL)
            io->progress(done, io->total, io->progress_arg);
    }
}

/* Sends the source over the data connection, waiting for the queue to drain. */
static int send_all(tide_ftp_t *f, tide_writer_t *data, const tide_ftp_io_t *io, char *buf) {
    uint64_t done = 0;
    for (;;) {
        size_t n = 0;
        int rc = io->source(buf, DATA_CHUNK, &n, io->arg);
        if (rc != 0 || n > DATA_CHUNK)
            return rc < 0 ? rc : TIDE_ESOURCE;
        if (n == 0)
            return 0;
        tide_task_deadline_push(f->ctl.timeout);
        rc = tide_writer_write(data, buf, n);
        if (rc == 0)
            rc = tide_writer_drain_await(data);
        tide_task_deadline_pop();
        if (rc != 0)
            return rc;
        done += n;
        if (io->progress != NULL)
            io->progress(done, io->total, io->progress_arg);
    }
}

/* One transfer in RFC 959's order: the data connection, the command, its preliminary
 * 1xx reply, (with PROT P the TLS handshake,) the data, our end of the data
 * connection closed, then the final 2xx reply. upload: from io->source, else into
 * io->sink. */
static int transfer(tide_ftp_t *f, const char *verb, const char *arg, uint64_t offset, bool upload,
                    const tide_ftp_io_t *io) {
    if (io == NULL || (upload ? io->source == NULL : io->sink == NULL))
        return TIDE_EINVAL;
    if (arg != NULL && !tide_command_arg_is_safe(arg, strlen(arg)))
        return TIDE_ECOMMAND_CHARS;
    char *buf = malloc(DATA_CHUNK);
    if (buf == NULL)
        return TIDE_ENOMEM;
    tide_reader_t *dr;
    tide_writer_t *dw;
    f->stage = TIDE_FTP_STAGE_DATA;
    int rc = open_data(f, &dr, &dw);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    f->stage = TIDE_FTP_STAGE_TRANSFER;
    if (offset > 0) {
        char at[24];
        snprintf(at, sizeof at, "%llu", (unsigned long long)offset);
        rc = tide__ctl_command(&f->ctl, "REST", at, NULL);
        if (rc == 0 && f->ctl.reply.code != 350)
            rc = TIDE_EREPLY;
    }
    if (rc == 0)
        rc = expect_class(f, tide__ctl_command(&f->ctl, verb, arg, NULL), 1);
    if (rc == 0 && f->protect)
        rc = secure_data(f, dw);
    if (rc == 0)
        rc = upload ? send_all(f, dw, io, buf) : receive(f, dr, io, buf);
    free(buf);
    /* Our close is the end of an upload (EOF, and close_notify over TLS); an upload
     * is complete only when that close went through. */
    if (rc == 0)
        tide_writer_close(dw);
    else
        tide_writer_abort(dw);
    tide_task_deadline_push(f->ctl.timeout);
    int closed = tide_writer_wait_closed_await(dw);
    tide_task_deadline_pop();
    if (rc == 0 && upload && closed != 0)
        rc = closed;
    if (rc != 0)
        return rc;
    /* Over plain FTP only this reply tells a complete download from a cut one. */
    return expect_class(f, tide__ctl_read(&f->ctl, NULL, NULL), 2);
}

int tide_ftp_retrieve_await(tide_ftp_t *f, const char *path, uint64_t offset,
                            const tide_ftp_io_t *io) {
    return path == NULL ? TIDE_EINVAL : transfer(f, "RETR", path, offset, false, io);
}

int tide_ftp_store_await(tide_ftp_t *f, const char *path, const tide_ftp_io_t *io) {
    return path == NULL ? TIDE_EINVAL : transfer(f, "STOR", path, 0, true, io);
}

int tide_ftp_list_await(tide_ftp_t *f, const char *verb, const char *path,
                        const tide_ftp_io_t *io) {
    if (verb == NULL ||
        (strcmp(verb, "LIST") != 0 && strcmp(verb, "NLST") != 0 && strcmp(verb, "MLSD") != 0))
        return TIDE_EINVAL;
    return transfer(f, verb, path, 0, false, io);
}

/* ---- files ----------------------------------------------------------------------------- */

static int file_sink(const void *data, size_t len, void *arg) {
    return fwrite(data, 1, len, arg) == len ? 0 : tide_err_from_errno(errno);
}

static int file_source(void *buf, size_t cap, size_t *len, void *arg) {
    *len = fread(buf, 1, cap, arg);
    return *len == 0 && ferror((FILE *)arg) ? tide_err_from_errno(errno) : 0;
}

int tide_ftp_retrieve_file_await(tide_ftp_t *f, const char *remote, const char *local, bool resume,
                                 tide_ftp_progress_cb progress, void *arg) {
    if (remote == NULL || local == NULL)
        return TIDE_EINVAL;
    char part[4096];
    if ((size_t)snprintf(part, sizeof part, "%s.part", local) >= sizeof part)
        return TIDE_ENAMETOOLONG;
    struct stat st;
    uint64_t offset = resume && stat(part, &st) == 0 ? (uint64_t)st.st_size : 0;
    uint64_t total = 0;
    if (progress != NULL) { /* the size only serves the progress: a refusal is no failure */
        int rc = tide_ftp_size_await(f, remote, &total);
        if (rc != 0 && rc != TIDE_EREPLY && rc != TIDE_EREPLY_SYNTAX)
            return rc;
    }
    f->stage = TIDE_FTP_STAGE_LOCAL;
    FILE *out = fopen(part, offset > 0 ? "ab" : "wb");
    if (out == NULL)
        return tide_err_from_errno(errno);
    tide_ftp_io_t io = {
        .sink = file_sink, .arg = out, .progress = progress, .progress_arg = arg, .total = total};
    int rc = transfer(f, "RETR", remote, offset, false, &io);
    if (fclose(out) != 0 && rc == 0)
        rc = tide_err_from_errno(errno);
    if (rc == 0 && rename(part, local) != 0)
        rc = tide_err_from_errno(errno);
    if (rc != 0 && !resume)
        unlink(part);
    return rc;
}

int tide_ftp_store_file_await(tide_ftp_t *f, const char *local, const char *remote,
                              tide_ftp_progress_cb progress, void *arg) {
    if (local == NULL || remote == NULL)
        return TIDE_EINVAL;
    f->stage = TIDE_FTP_STAGE_LOCAL;
    FILE *in = fopen(local, "rb");
    if (in == NULL)
        return tide_err_from_errno(errno);
    struct stat st;
    tide_ftp_io_t io = {
        .source = file_source, .arg = in, .progress = progress, .progress_arg = arg};
    if (fstat(fileno(in), &st) == 0 && S_ISREG(st.st_mode))
        io.total = (uint64_t)st.st_size;
    int rc = transfer(f, "STOR", remote, 0, true, &io);
    fclose(in);
    return rc;
}

int tide_ftp_close_await(tide_ftp_t *f, bool graceful) {
    if (f == NULL)
        return 0;
    int rc = tide__ctl_close(&f->ctl, graceful);
    tide_tls_session_free(f->session);
    tide_tls_config_unref(f->tls);
    free(f);
    return rc;
}
