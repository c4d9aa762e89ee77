/* An FTP client (RFC 959, RFC 2428's EPSV, RFC 4217's explicit FTPS) in task style:
 * one control connection, and a data connection per transfer in passive mode:
 *
 *   connect; greeting; [auth_tls]; login; [protect]; commands and transfers; quit; close
 *
 * Passive mode only: EPSV first, PASV once the server refuses EPSV. The data
 * connection always goes to the control connection's peer address, whatever address
 * a PASV reply names (a reply naming a third host is how FTP bounce and NAT confusion
 * start). With tide_ftp_protect_await (PBSZ 0, PROT P) the data connections run TLS
 * too, resuming the control connection's session (vsftpd's require_ssl_reuse).
 * Downloads to a file go to NAME.part, renamed only once the server confirmed the
 * end, so a failed transfer never leaves a partial file under the real name; REST
 * resumes one.
 *
 * Where it sits: protocols/, on streams and tasks (tide/stream.h, tide/task.h) and the
 * reply parser (tide/reply.h). Every _await call must run inside a task on the
 * session's loop; each step (and each read on a data connection) is bounded by the
 * options' timeout (TIDE_ETIMEOUT). A server that says no gives TIDE_EREPLY, with its
 * reply in tide_ftp_last_reply. Loop thread only. */
#ifndef TIDE_FTP_H
#define TIDE_FTP_H

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

typedef struct tide_ftp tide_ftp_t;

typedef struct tide_ftp_options {
    /* A client TLS configuration (referenced while the session lives), for
     * tide_ftp_auth_tls_await; NULL: no FTPS. */
    tide_tls_config_t *tls;
    /* The name to verify and send as SNI; NULL: the host connected to. */
    const char *server_hostname;
    /* Seconds each step may take (and each wait for data); 0: 30. */
    double timeout;
    /* Sees the dialogue (the password hidden) and notes on data connections. */
    tide_dialogue_cb dialogue;
    void *dialogue_arg;
} tide_ftp_options_t;

/* Where the last failure happened, for programs that report it. */
typedef enum tide_ftp_stage {
    TIDE_FTP_STAGE_CONTROL = 0,  /* a command on the control connection */
    TIDE_FTP_STAGE_DATA = 1,     /* EPSV/PASV or connecting the data connection */
    TIDE_FTP_STAGE_TRANSFER = 2, /* the transfer command, the data, the final reply */
    TIDE_FTP_STAGE_LOCAL = 3,    /* opening a local file (nothing was sent) */
} tide_ftp_stage_t;

/* Data for a download: 0, or a negative code that ends the transfer. */
typedef int (*tide_ftp_sink_cb)(const void *data, size_t len, void *arg);
/* Data for an upload: up to cap bytes into buf, *len 0 at the end; 0 or a negative code. */
typedef int (*tide_ftp_source_cb)(void *buf, size_t cap, size_t *len, void *arg);
/* Progress: done bytes so far; total when known, else 0. */
typedef void (*tide_ftp_progress_cb)(uint64_t done, uint64_t total, void *arg);

/* The two ends of one transfer. */
typedef struct tide_ftp_io {
    tide_ftp_sink_cb sink;     /* downloads and listings */
    tide_ftp_source_cb source; /* uploads */
    void *arg;
    tide_ftp_progress_cb progress; /* may be NULL */
    void *progress_arg;
    uint64_t total; /* the size, when known, for progress */
} tide_ftp_io_t;

/* Connects the control connection; does not read the greeting. On success *ftp is the
 * caller's, to end with tide_ftp_close_await. Returns 0, TIDE_EINVAL, TIDE_ENOMEM or
 * the connect's error. */
TIDE_EXTERN int tide_ftp_connect_await(tide_loop_t *loop, const char *host, uint16_t port,
                                       const tide_ftp_options_t *options, tide_ftp_t **ftp);

/* Reads the greeting (after a 120 "ready in n minutes", the next one); 220 is good. */
TIDE_EXTERN int tide_ftp_greeting_await(tide_ftp_t *ftp);

/* AUTH TLS and the handshake; the session is kept for the data connections.
 * TIDE_EINVAL without a TLS configuration, TIDE_ESTARTTLS_REFUSED unless 234,
 * TIDE_ESTARTTLS_INJECTION when bytes followed the 234, or the handshake's error. */
TIDE_EXTERN int tide_ftp_auth_tls_await(tide_ftp_t *ftp);

/* USER and (after 331) PASS; NULL user: anonymous. 0 for 230, else TIDE_EREPLY;
 * TIDE_ECOMMAND_CHARS for CR, LF or NUL in either. */
TIDE_EXTERN int tide_ftp_login_await(tide_ftp_t *ftp, const char *user, const char *password);

/* PBSZ 0 and PROT P (after AUTH TLS and the login): TLS on every data connection. */
TIDE_EXTERN int tide_ftp_protect_await(tide_ftp_t *ftp);

/* Any command with a one-reply answer ("CWD", "dir"; arg may be NULL). Returns 0 when
 * the reply's code is want (want 0: any code), else TIDE_EREPLY. */
TIDE_EXTERN int tide_ftp_command_await(tide_ftp_t *ftp, const char *verb, const char *arg,
                                       int want);

/* SIZE path into *size (213). */
TIDE_EXTERN int tide_ftp_size_await(tide_ftp_t *ftp, const char *path, uint64_t *size);

/* RETR path into io->sink, starting at offset (REST offset first when > 0; the server
 * must answer 350). */
TIDE_EXTERN int tide_ftp_retrieve_await(tide_ftp_t *ftp, const char *path, uint64_t offset,
                                        const tide_ftp_io_t *io);

/* STOR path from io->source. */
TIDE_EXTERN int tide_ftp_store_await(tide_ftp_t *ftp, const char *path, const tide_ftp_io_t *io);

/* A listing: verb "LIST", "NLST" or "MLSD", path may be NULL; into io->sink. */
TIDE_EXTERN int tide_ftp_list_await(tide_ftp_t *ftp, const char *verb, const char *path,
                                    const tide_ftp_io_t *io);

/* RETR remote into local: written to local.part and renamed to local once the server
 * confirmed the end; on failure local.part is removed, unless resume is set, when it
 * stays for the next attempt, which then starts with REST at its size. */
TIDE_EXTERN int tide_ftp_retrieve_file_await(tide_ftp_t *ftp, const char *remote, const char *local,
                                             bool resume, tide_ftp_progress_cb progress, void *arg);

/* STOR local to remote, with its size for progress. */
TIDE_EXTERN int tide_ftp_store_file_await(tide_ftp_t *ftp, const char *local, const char *remote,
                                          tide_ftp_progress_cb progress, void *arg);

/* QUIT; 221 is good. */
TIDE_EXTERN int tide_ftp_quit_await(tide_ftp_t *ftp);

/* The last reply read; the last command sent, as the dialogue showed it; and where
 * the last failure happened. */
TIDE_EXTERN const tide_reply_t *tide_ftp_last_reply(const tide_ftp_t *ftp);
TIDE_EXTERN const char *tide_ftp_last_command(const tide_ftp_t *ftp);
TIDE_EXTERN tide_ftp_stage_t tide_ftp_failed_stage(const tide_ftp_t *ftp);

/* A message for err with the session's detail, as tide_smtp_strerror_r (ftp may be
 * NULL). Returns buf. */
TIDE_EXTERN char *tide_ftp_strerror_r(const tide_ftp_t *ftp, int err, char *buf, size_t len);

/* Ends the session: closes (graceful) or aborts the control connection, waits until
 * it is gone within the timeout, and frees ftp. Returns the connection's final
 * status. NULL is a no-op. */
TIDE_EXTERN int tide_ftp_close_await(tide_ftp_t *ftp, bool graceful);

#ifdef __cplusplus
}
#endif

#endif
