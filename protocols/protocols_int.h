/* The private header of protocols/. It declares the control connection that the
 * SMTP and FTP client modules share: a stream, the reply parser reading from it, a
 * deadline per step and the dialogue hook (protocols/control.c).
 *
 * Where it sits: on streams and tasks (every call here is an _await call, run inside
 * a task), and on the reply parser (tide/reply.h). */
#ifndef TIDE_PROTOCOLS_INT_H
#define TIDE_PROTOCOLS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tide.h"
#include "tide/reply.h"

typedef struct tide__ctl {
    tide_loop_t *loop;
    tide_reader_t *reader;
    tide_writer_t *writer;
    double timeout; /* seconds per step */
    tide_dialogue_cb dialogue;
    void *dialogue_arg;
    tide_reply_parser_t parser;
    tide_reply_t reply; /* points into text and line below */
    char text[TIDE_REPLY_LINE_CAP + 1];
    char line[TIDE_REPLY_LINE_CAP + 1];
    char shown[160]; /* the last command as the dialogue showed it, cut short */
} tide__ctl_t;

/* Opens the connection (TLS from the start when tls is not NULL) and sets up the
 * parser. Returns 0 or the connect's error (nothing left open). */
int tide__ctl_open(tide__ctl_t *c, tide_loop_t *loop, const char *host, uint16_t port,
                   tide_tls_config_t *tls, const char *server_hostname,
                   tide_reply_dialect_t dialect, double timeout);

/* Reads one reply within the timeout. on_line, when not NULL, sees each line after
 * the first. Returns 0 (c->reply holds it), a parser error, TIDE_EOF (the server
 * closed the connection), or the stream's error. */
int tide__ctl_read(tide__ctl_t *c, void (*on_line)(const char *text, void *arg), void *arg);

/* Sends "VERB ARG" (arg may be NULL); shown replaces the line in the dialogue (NULL:
 * the line itself). Does not read the reply. */
int tide__ctl_send(tide__ctl_t *c, const char *verb, const char *arg, const char *shown);

/* tide__ctl_send, then tide__ctl_read. */
int tide__ctl_command(tide__ctl_t *c, const char *verb, const char *arg, const char *shown);

/* After the server's go-ahead for TLS (STARTTLS 220, AUTH TLS 234): refuses with
 * TIDE_ESTARTTLS_INJECTION when anything followed the reply, else runs the handshake. */
int tide__ctl_start_tls(tide__ctl_t *c, tide_tls_config_t *tls, const char *server_hostname);

/* A note for the dialogue ('-'), printf-style. */
void tide__ctl_note(tide__ctl_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Describes err for a person, with the session's detail: the reply that was refused,
 * the line that broke the protocol, the limit passed, the timeout. Returns buf. */
char *tide__ctl_strerror(const tide__ctl_t *c, int err, char *buf, size_t len);

/* Closes (graceful: after what is queued; else aborted) and waits, within the
 * timeout, until the connection is gone. Returns the connection's final status. */
int tide__ctl_close(tide__ctl_t *c, bool graceful);

#endif
