/* The control connection the SMTP and FTP client modules share (protocols_int.h):
 * send a command, read its reply through the reply parser, each step under its own
 * deadline.
 *
 * Where it sits: protocols/, on streams and tasks (every call is an _await call and
 * runs inside a task) and on the reply parser, which knows no I/O. Replies are read
 * by lending the reader's bytes to the parser (tide_reader_peek_await), so a reply's
 * size never depends on a buffer here, and bytes after a reply stay in the reader,
 * where STARTTLS can see them. Loop thread only; a connection is used by one task at
 * a time. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/protocols_int.h"

/* Copies src into dst (cap octets with the NUL), control characters as '?'. */
static void printable(char *dst, size_t cap, const char *src) {
    size_t i = 0;
    for (; src[i] != '\0' && i + 1 < cap; i++)
        dst[i] = (unsigned char)src[i] < 0x20 || src[i] == 0x7f ? '?' : src[i];
    dst[i] = '\0';
}

int tide__ctl_open(tide__ctl_t *c, tide_loop_t *loop, const char *host, uint16_t port,
                   tide_tls_config_t *tls, const char *server_hostname,
                   tide_reply_dialect_t dialect, double timeout) {
    c->loop = loop;
    c->timeout = timeout > 0 ? timeout : 30;
    c->reply = (tide_reply_t){.code = 0, .text = c->text, .line = c->line};
    c->text[0] = c->line[0] = c->shown[0] = '\0';
    int rc = tide_reply_parser_init(&c->parser, dialect, 0, 0);
    if (rc != 0)
        return rc;
    tide_connect_options_t options = {
        .timeout = c->timeout, .tls = tls, .server_hostname = server_hostname};
    /* The parser holds the line limit; the reader only has to hold what arrives. */
    return tide_loop_open_connection_await(loop, host, port, TIDE_STREAM_DEFAULT_LIMIT, &options,
                                           &c->reader, &c->writer);
}

static void show(tide__ctl_t *c, char who, const char *line) {
    if (c->dialogue != NULL)
        c->dialogue(who, line, c->dialogue_arg);
}

void tide__ctl_note(tide__ctl_t *c, const char *fmt, ...) {
    if (c->dialogue == NULL)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    show(c, '-', buf);
}

static int read_reply(tide__ctl_t *c, void (*on_line)(const char *, void *), void *arg) {
    tide_reply_parser_t *p = &c->parser;
    for (;;) {
        const void *data;
        size_t len, used = 0;
        int rc = tide_reader_peek_await(c->reader, &data, &len);
        if (rc == TIDE_EOF || rc == TIDE_EINCOMPLETE)
            return TIDE_EOF; /* also a reply cut by the end of the stream */
        if (rc != 0)
            return rc;
        int ev = tide_reply_parser_feed(p, data, len, &used);
        tide_reader_consume(c->reader, used);
        if (ev == TIDE_REPLY_MORE)
            continue;
        printable(c->line, sizeof c->line, p->line);
        if (ev < 0)
            return ev;
        show(c, 'S', c->line);
        if (p->nlines == 1) {
            c->reply.code = p->code;
            printable(c->text, sizeof c->text, p->text);
        } else if (on_line != NULL) {
            on_line(p->line + (p->line_len > 4 ? 4 : p->line_len), arg);
        }
        if (ev == TIDE_REPLY_DONE)
            return 0;
    }
}

int tide__ctl_read(tide__ctl_t *c, void (*on_line)(const char *, void *), void *arg) {
    c->reply.code = 0;
    c->text[0] = '\0';
    tide_task_deadline_push(c->timeout);
    int rc = read_reply(c, on_line, arg);
    tide_task_deadline_pop();
    return rc;
}

int tide__ctl_send(tide__ctl_t *c, const char *verb, const char *arg, const char *shown) {
    char line[TIDE_REPLY_LINE_CAP];
    int n = tide_command_format(line, sizeof line, verb, arg, arg != NULL ? strlen(arg) : 0);
    if (n < 0)
        return n;
    if (shown == NULL) {
        /* The line without its CRLF, for the dialogue and for messages. */
        snprintf(c->shown, sizeof c->shown, "%.*s", n - 2, line);
    } else {
        snprintf(c->shown, sizeof c->shown, "%s", shown);
    }
    show(c, 'C', shown != NULL ? shown : c->shown);
    tide_task_deadline_push(c->timeout);
    int rc = tide_writer_write(c->writer, line, (size_t)n);
    if (rc == 0)
        rc = tide_writer_drain_await(c->writer);
    tide_task_deadline_pop();
    /* The line may hold a credential. */
    memset(line, 0, (size_t)n);
    return rc;
}

int tide__ctl_command(tide__ctl_t *c, const char *verb, const char *arg, const char *shown) {
    int rc = tide__ctl_send(c, verb, arg, shown);
    return rc != 0 ? rc : tide__ctl_read(c, NULL, NULL);
}

int tide__ctl_start_tls(tide__ctl_t *c, tide_tls_config_t *tls, const char *server_hostname) {
    /* Bytes after the go-ahead were sent before the handshake: a man in the middle's
     * injected replies. (Later ones reach the TLS layer and break the handshake.) */
    if (tide_reader_buffered(c->reader) > 0 || !tide_reply_parser_idle(&c->parser))
        return TIDE_ESTARTTLS_INJECTION;
    tide__ctl_note(c, "TLS handshake with %s", server_hostname);
    tide_task_deadline_push(c->timeout);
    int rc = tide_writer_start_tls_await(c->writer, tls, server_hostname, NULL);
    tide_task_deadline_pop();
    return rc;
}

char *tide__ctl_strerror(const tide__ctl_t *c, int err, char *buf, size_t len) {
    const tide_reply_parser_t *p = &c->parser;
    switch (err) {
    case TIDE_ETIMEOUT:
        snprintf(buf, len, "no answer within %g seconds", c->timeout);
        break;
    case TIDE_EOF:
    case TIDE_EINCOMPLETE:
        snprintf(buf, len, "the server closed the connection");
        break;
    case TIDE_EREPLY:
        snprintf(buf, len, "server replied %d %s", c->reply.code, c->text);
        break;
    case TIDE_ESTARTTLS_REFUSED:
        snprintf(buf, len, "server replied %d %s; not going on without TLS", c->reply.code,
                 c->text);
        break;
    case TIDE_EREPLY_LINE:
        snprintf(buf, len, "protocol error: a reply line longer than %zu octets", p->line_max);
        break;
    case TIDE_EREPLY_LINES:
        snprintf(buf, len, "protocol error: a reply of more than %zu lines", p->lines_max);
        break;
    case TIDE_EREPLY_SYNTAX:
        snprintf(buf, len, "protocol error: malformed reply line \"%.80s\"", c->line);
        break;
    case TIDE_EREPLY_CODE:
        snprintf(buf, len, "protocol error: reply code %.3s inside a %d reply", c->line, p->code);
        break;
    case TIDE_EREPLY_PASV:
        snprintf(buf, len, "protocol error: malformed reply \"%.80s\"", c->text);
        break;
    default:
        tide_strerror_r(err, buf, len);
    }
    return buf;
}

int tide__ctl_close(tide__ctl_t *c, bool graceful) {
    if (c->writer == NULL)
        return 0;
    if (graceful)
        tide_writer_close(c->writer);
    else
        tide_writer_abort(c->writer);
    tide_task_deadline_push(c->timeout);
    int rc = tide_writer_wait_closed_await(c->writer);
    tide_task_deadline_pop();
    c->writer = NULL;
    c->reader = NULL;
    return rc;
}
