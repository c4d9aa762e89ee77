/* tide error codes.
 * Every tide function returns 0 (or a non-negative count) on success and a negative
 * code on failure. TIDE_E<errno> equals -errno; tide's own codes live in a block of
 * their own; TLS codes carry mbedTLS's raw code inside them. Codes are append-only
 * and never renumbered.
 *
 * One code per meaning, on every path:
 * - Anything that timed out is TIDE_ETIMEOUT: a task's or an await's deadline, a
 *   connect's timeout, a server's wait_closed deadline, and the kernel's own
 *   ETIMEDOUT (a connect or an established connection whose peer stopped answering),
 *   as Python folds both into TimeoutError. TIDE_ETIMEDOUT stays in the table (codes
 *   are never removed) but tide never returns it.
 * - Anything cancelled is TIDE_ECANCELLED; TIDE_ECANCELED (errno's spelling) is never
 *   returned either. tide_err_from_errno maps both errno values accordingly. The TLS
 *   handshake and shutdown deadlines keep their own, more precise codes. */
#ifndef TIDE_ERRNO_H
#define TIDE_ERRNO_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>

#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(NAME, value, message). One table gives the enum, tide_strerror and tide_err_name. */
#define TIDE_ERRNO_MAP(X)                                                                          \
    X(EPERM, -EPERM, "operation not permitted")                                                    \
    X(ENOENT, -ENOENT, "no such file or directory")                                                \
    X(EINTR, -EINTR, "interrupted system call")                                                    \
    X(EIO, -EIO, "i/o error")                                                                      \
    X(EBADF, -EBADF, "bad file descriptor")                                                        \
    X(EAGAIN, -EAGAIN, "resource temporarily unavailable")                                         \
    X(ENOMEM, -ENOMEM, "not enough memory")                                                        \
    X(EACCES, -EACCES, "permission denied")                                                        \
    X(EBUSY, -EBUSY, "resource busy")                                                              \
    X(EEXIST, -EEXIST, "file already exists")                                                      \
    X(ENOTDIR, -ENOTDIR, "not a directory")                                                        \
    X(EINVAL, -EINVAL, "invalid argument")                                                         \
    X(ENFILE, -ENFILE, "file table overflow")                                                      \
    X(EMFILE, -EMFILE, "too many open files")                                                      \
    X(ENOSPC, -ENOSPC, "no space left on device")                                                  \
    X(EPIPE, -EPIPE, "broken pipe")                                                                \
    X(ERANGE, -ERANGE, "result too large")                                                         \
    X(ENAMETOOLONG, -ENAMETOOLONG, "name too long")                                                \
    X(ENOSYS, -ENOSYS, "function not implemented")                                                 \
    X(ENOTSOCK, -ENOTSOCK, "socket operation on non-socket")                                       \
    X(EMSGSIZE, -EMSGSIZE, "message too long")                                                     \
    X(EPROTO, -EPROTO, "protocol error")                                                           \
    X(EPROTONOSUPPORT, -EPROTONOSUPPORT, "protocol not supported")                                 \
    X(ENOTSUP, -ENOTSUP, "operation not supported")                                                \
    X(EAFNOSUPPORT, -EAFNOSUPPORT, "address family not supported")                                 \
    X(EADDRINUSE, -EADDRINUSE, "address already in use")                                           \
    X(EADDRNOTAVAIL, -EADDRNOTAVAIL, "address not available")                                      \
    X(ENETDOWN, -ENETDOWN, "network is down")                                                      \
    X(ENETUNREACH, -ENETUNREACH, "network is unreachable")                                         \
    X(ECONNABORTED, -ECONNABORTED, "connection aborted")                                           \
    X(ECONNRESET, -ECONNRESET, "connection reset by peer")                                         \
    X(ENOBUFS, -ENOBUFS, "no buffer space available")                                              \
    X(EISCONN, -EISCONN, "socket is already connected")                                            \
    X(ENOTCONN, -ENOTCONN, "socket is not connected")                                              \
    X(ESHUTDOWN, -ESHUTDOWN, "cannot send after shutdown")                                         \
    X(ETIMEDOUT, -ETIMEDOUT, "connection timed out (never returned: see ETIMEOUT)")                \
    X(ECONNREFUSED, -ECONNREFUSED, "connection refused")                                           \
    X(EHOSTUNREACH, -EHOSTUNREACH, "host is unreachable")                                          \
    X(EALREADY, -EALREADY, "operation already in progress")                                        \
    X(EINPROGRESS, -EINPROGRESS, "operation in progress")                                          \
    X(ECANCELED, -ECANCELED, "operation canceled (never returned: see ECANCELLED)")                \
    X(EOF, -4001, "end of file")                                                                   \
    X(ELIMIT, -4002, "limit overrun: no separator within the reader's limit")                      \
    X(EINCOMPLETE, -4003, "incomplete read: end of stream before enough data")                     \
    X(ECANCELLED, -4004, "cancelled")                                                              \
    X(ETIMEOUT, -4005, "timed out")                                                                \
    X(ECLOSED, -4006, "transport or server is closing or closed")                                  \
    X(ENOTASK, -4007, "called outside a task")                                                     \
    X(EAI_AGAIN, -4101, "temporary failure in name resolution")                                    \
    X(EAI_FAIL, -4102, "permanent failure in name resolution")                                     \
    X(EAI_NONAME, -4103, "unknown host name or service")                                           \
    X(EAI_FAMILY, -4104, "address family not supported by the resolver")                           \
    X(EAI_SERVICE, -4105, "service not available for the socket type")                             \
    X(EAI_NODATA, -4106, "host name has no address")                                               \
    X(EAI_MEMORY, -4107, "out of memory in name resolution")                                       \
    X(EAI_OTHER, -4108, "name resolution failed")                                                  \
    X(ETLS, -4201, "TLS error")                                                                    \
    X(ETLS_TRUNCATED, -4202, "TLS connection truncated: end without close_notify")                 \
    X(ETLS_CERT_UNTRUSTED, -4203, "TLS peer certificate not signed by a trusted CA")               \
    X(ETLS_CERT_EXPIRED, -4204, "TLS peer certificate has expired")                                \
    X(ETLS_CERT_NOT_YET_VALID, -4205, "TLS peer certificate is not yet valid")                     \
    X(ETLS_CERT_HOSTNAME, -4206, "TLS peer certificate does not match the host name")              \
    X(ETLS_CERT_INVALID, -4207, "TLS peer certificate rejected")                                   \
    X(ETLS_NO_HOSTNAME, -4208, "TLS verification needs a server host name")                        \
    X(ETLS_HANDSHAKE_TIMEOUT, -4209, "TLS handshake timed out")                                    \
    X(ETLS_SHUTDOWN_TIMEOUT, -4210, "TLS shutdown timed out")                                      \
    X(ETLS_NO_TRUST, -4211, "no trusted CA certificates could be loaded")                          \
    X(ETLS_CONFIG, -4212, "TLS configuration incomplete (no certificate or key)")                  \
    X(ESTATE, -4008, "invalid state: already done, or not done yet")                               \
    X(EQUEUE_EMPTY, -4009, "queue is empty")                                                       \
    X(EQUEUE_FULL, -4010, "queue is full")                                                         \
    X(EQUEUE_SHUTDOWN, -4011, "queue is shut down")                                                \
    X(ETLS_CERT_REVOKED, -4213, "TLS peer certificate has been revoked")                           \
    X(ETLS_CERT_WEAK_KEY, -4214,                                                                   \
      "TLS peer certificate has a weak key (RSA under 2048 bits, or a curve not allowed)")         \
    X(ETLS_CERT_WEAK_HASH, -4215, "TLS peer certificate is signed with a weak hash (SHA-1, MD5)")  \
    X(ETLS_CERT_USAGE, -4216,                                                                      \
      "TLS peer certificate is not for this use (key usage or extended key usage)")                \
    X(EHTTP_SYNTAX, -4531, "malformed HTTP message")                                               \
    X(EHTTP_FOLD, -4532, "HTTP header line folded (obs-fold is refused)")                          \
    X(EHTTP_VERSION, -4533, "HTTP version not supported (only HTTP/1.0 and 1.1)")                  \
    X(EHTTP_LINE_TOO_LONG, -4534, "HTTP line longer than the parser's limit")                      \
    X(EHTTP_TOO_MANY_HEADERS, -4535, "more HTTP header lines than the parser's limit")             \
    X(EHTTP_HEAD_TOO_LARGE, -4536, "HTTP head larger than the parser's limit")                     \
    X(EHTTP_CONTENT_LENGTH, -4537, "HTTP Content-Length malformed or repeated")                    \
    X(EHTTP_TRANSFER_ENCODING, -4538, "HTTP Transfer-Encoding not supported (only chunked)")       \
    X(EHTTP_AMBIGUOUS, -4539,                                                                      \
      "HTTP message framed both by Content-Length and Transfer-Encoding (refused)")                \
    X(EHTTP_CHUNK, -4540, "malformed HTTP chunk size or chunk framing")                            \
    X(EFRAME_TOO_LARGE, -4541, "line or frame longer than the framing protocol's maximum")         \
    X(EREPLY_SYNTAX, -4501, "protocol error: malformed reply line")                                \
    X(EREPLY_LINE, -4502, "protocol error: reply line over the length limit")                      \
    X(EREPLY_LINES, -4503, "protocol error: reply with more lines than the limit")                 \
    X(EREPLY_CODE, -4504, "protocol error: reply code changed inside a reply")                     \
    X(ECOMMAND_CHARS, -4505, "CR, LF or NUL in a command argument")                                \
    X(EREPLY_PASV, -4506, "protocol error: malformed PASV or EPSV reply")                          \
    X(EREPLY, -4507, "the server refused the command (see its reply)")                             \
    X(ENO_STARTTLS, -4508, "the server does not offer STARTTLS (or AUTH TLS)")                     \
    X(ESTARTTLS_REFUSED, -4509, "the server refused STARTTLS (or AUTH TLS)")                       \
    X(ESTARTTLS_INJECTION, -4510,                                                                  \
      "protocol error: data after the TLS upgrade reply, before the handshake (response "          \
      "injection)")                                                                                \
    X(EAUTH_CLEARTEXT, -4511, "authentication without TLS refused")                                \
    X(EAUTH_MECH, -4512, "the server offers no authentication mechanism tide knows")               \
    X(EMESSAGE_SIZE, -4513, "the message is larger than the server accepts (SIZE)")                \
    X(EMESSAGE_8BIT, -4514, "8-bit message, and the server does not offer 8BITMIME")               \
    X(ESOURCE, -4515, "the message or file source failed")                                         \
    X(ESINK, -4516, "the download sink failed")                                                    \
    X(EPROCESS_EXITED, -4401, "the process has exited already")                                    \
    X(EDGRAM_TRUNCATED, -4301, "datagram truncated: larger than the receive buffer, not delivered")

/* Every code as an enum constant TIDE_<NAME> (from TIDE_ERRNO_MAP); functions return
 * them as int. */
typedef enum tide_errno {
#define TIDE__ERRNO_ENUM(name, value, msg) TIDE_##name = (value),
    TIDE_ERRNO_MAP(TIDE__ERRNO_ENUM)
#undef TIDE__ERRNO_ENUM
} tide_errno_t;

/* TLS failures keep mbedTLS's raw (negative) code inside the tide code:
 * TIDE_ETLS_BASE + mbedtls_code, with mbedtls_code in [-0x7FFF, -1]. */
#define TIDE_ETLS_BASE (-0x200000)

/* A static, human-readable message for any code (unknown codes get a generic text). */
TIDE_EXTERN const char *tide_strerror(int err);

/* The symbolic name of a code, such as "ECONNRESET" or "ELIMIT"; static storage. */
TIDE_EXTERN const char *tide_err_name(int err);

/* Writes the message for err into buf (always NUL-terminated, truncated to len) and
 * returns buf; for TLS codes the text includes mbedTLS's own description. */
TIDE_EXTERN char *tide_strerror_r(int err, char *buf, size_t len);

/* Converts a positive errno value into the matching tide code (ETIMEDOUT into
 * TIDE_ETIMEOUT, ECANCELED into TIDE_ECANCELLED, EWOULDBLOCK into TIDE_EAGAIN). */
TIDE_EXTERN int tide_err_from_errno(int errno_value);

/* Converts a getaddrinfo() EAI_* result into the matching tide code. */
TIDE_EXTERN int tide_err_from_gai(int gai_error);

/* True when err is a TLS code carrying an mbedTLS code. */
TIDE_EXTERN bool tide_err_is_tls(int err);

/* The raw mbedTLS code inside a TLS error, or 0 when err is not one. */
TIDE_EXTERN int tide_err_tls_code(int err);

#ifdef __cplusplus
}
#endif
#endif
