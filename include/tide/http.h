/* HTTP/1.x: a head and body-framing parser with no I/O, and a minimal HTTP/1.1 client.
 *
 * Where it sits: the parser (protocols/http_parse.c) uses nothing but memory: bytes in,
 * events out, so a protocol, a task, a test or a fuzzer drives the same code. The
 * client (protocols/http_client.c) sits on streams and tasks (tide/stream.h,
 * tide/task.h) and drives the parser; nothing below it knows HTTP.
 *
 * What the parser accepts (RFC 9112), and refuses with a code of its own:
 * - start lines: "METHOD SP target SP HTTP/1.x" (requests) and "HTTP/1.x SP 3DIGIT [SP
 *   reason]" (responses); single spaces only; another version is TIDE_EHTTP_VERSION;
 * - header lines "name: value" with a token name, no space before the colon, the value
 *   trimmed of spaces and tabs and free of control characters (TIDE_EHTTP_SYNTAX);
 *   a line starting with a space or tab (obs-fold) is TIDE_EHTTP_FOLD;
 * - lines end with CRLF or a bare LF; a CR anywhere else is TIDE_EHTTP_SYNTAX;
 * - limits: a line longer than max_line (TIDE_EHTTP_LINE_TOO_LONG), more than
 *   max_headers header lines (TIDE_EHTTP_TOO_MANY_HEADERS), a head or trailer block
 *   larger than max_head (TIDE_EHTTP_HEAD_TOO_LARGE);
 * - body framing: Transfer-Encoding chunked (the only transfer coding accepted, once,
 *   and not in HTTP/1.0: anything else is TIDE_EHTTP_TRANSFER_ENCODING when a body is
 *   to be read, since tide decodes no other coding), Content-Length (digits only, once: a repeated,
 * signed, empty, comma-listed or overflowing value is TIDE_EHTTP_CONTENT_LENGTH), both at once (the
 * request-smuggling shape: TIDE_EHTTP_AMBIGUOUS), neither (a request has no body; a response runs
 * until the connection closes); a chunk size that is not hex, empty or beyond 2^60 is
 * TIDE_EHTTP_CHUNK, as is a chunk not followed by CRLF;
 * - no body for responses to HEAD (tide_http_parser_expect_head) and for 1xx, 204 and
 *   304 responses. An interim 1xx response is a message of its own (its head, then
 *   TIDE_HTTP_MESSAGE_END); after 101 Switching Protocols the bytes are no longer
 *   HTTP and the parser stops (TIDE_ESTATE).
 * After an error the parser stays failed: every later call returns the same code. */
#ifndef TIDE_HTTP_H
#define TIDE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"
#include "tls.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the parser ---------------------------------------------------------------------- */

typedef struct tide_http_parser tide_http_parser_t;

/* Which messages a parser reads. */
typedef enum tide_http_kind {
    TIDE_HTTP_REQUEST = 1, /* a server reading requests */
    TIDE_HTTP_RESPONSE = 2 /* a client reading responses */
} tide_http_kind_t;

/* Limits; a zero field takes the default shown. */
typedef struct tide_http_limits {
    size_t max_line;    /* longest line, without its CRLF (8192) */
    size_t max_headers; /* most header lines in a head, and trailer lines (100) */
    size_t max_head;    /* largest head, and trailer block, line ends included (65536) */
} tide_http_limits_t;

/* How the body after a head is framed (TIDE_HTTP_HEAD_END's `body`). */
typedef enum tide_http_body {
    TIDE_HTTP_BODY_NONE = 0,    /* no body */
    TIDE_HTTP_BODY_LENGTH = 1,  /* content_length bytes */
    TIDE_HTTP_BODY_CHUNKED = 2, /* chunked, then trailers */
    TIDE_HTTP_BODY_CLOSE = 3    /* until the connection closes (responses only) */
} tide_http_body_t;

/* What tide_http_parser_next found. */
typedef enum tide_http_event_type {
    TIDE_HTTP_REQUEST_LINE = 1, /* name: method; value: target; version */
    TIDE_HTTP_STATUS_LINE = 2,  /* status; value: reason (may be empty); version */
    TIDE_HTTP_HEADER = 3,       /* name, value */
    TIDE_HTTP_HEAD_END = 4,     /* body, content_length, keep_alive, status, version */
    TIDE_HTTP_BODY = 5,         /* data, len: the next piece of the body */
    TIDE_HTTP_TRAILER = 6,      /* name, value: a trailer field after a chunked body */
    TIDE_HTTP_MESSAGE_END = 7   /* the message is complete; the next one may follow */
} tide_http_event_type_t;

/* One event. Pointers are lent: they point into the bytes given to the call or into
 * the parser's own line buffer, valid until the next call on the parser. */
typedef struct tide_http_event {
    tide_http_event_type_t type;
    const char *line; /* start line and header events: the whole line, without CRLF */
    size_t line_len;
    const char *name; /* method, or header / trailer name */
    size_t name_len;
    const char *value; /* target, reason, or header / trailer value (trimmed) */
    size_t value_len;
    const void *data; /* TIDE_HTTP_BODY */
    size_t len;
    int version;             /* 10 for HTTP/1.0, 11 for HTTP/1.1 */
    int status;              /* responses: the status code */
    tide_http_body_t body;   /* TIDE_HTTP_HEAD_END */
    uint64_t content_length; /* TIDE_HTTP_HEAD_END with TIDE_HTTP_BODY_LENGTH */
    bool keep_alive;         /* TIDE_HTTP_HEAD_END: the connection may carry another message */
} tide_http_event_t;

/* Makes a parser for requests or responses; limits may be NULL (defaults). The parser
 * allocates its line buffer (max_line + 2 bytes) here and nothing more afterwards.
 * Returns 0 and sets *parser, or TIDE_EINVAL, TIDE_ENOMEM. Free with
 * tide_http_parser_free. */
TIDE_EXTERN int tide_http_parser_new(tide_http_kind_t kind, const tide_http_limits_t *limits,
                                     tide_http_parser_t **parser);

/* Frees the parser; NULL is a no-op. */
TIDE_EXTERN void tide_http_parser_free(tide_http_parser_t *parser);

/* The next response answers a HEAD request: its head is all there is, whatever its
 * Content-Length says. Holds across interim 1xx responses until a final one ends. */
TIDE_EXTERN void tide_http_parser_expect_head(tide_http_parser_t *parser);

/* Reads from data (len bytes, may be 0) until one event is found. Returns 1 with *ev
 * filled, 0 when every byte was taken and more are needed (a partial line is kept in
 * the parser), or a negative code (see the top of this file; TIDE_EINVAL for NULL
 * arguments). *used receives the bytes taken in every case: call again with the rest
 * after every event, even when no byte is left, until it returns 0 (the end of a
 * message, for one, is found without another byte). Body pieces are lent straight
 * from data, never copied. */
TIDE_EXTERN int tide_http_parser_next(tide_http_parser_t *parser, const void *data, size_t len,
                                      size_t *used, tide_http_event_t *ev);

/* The connection ended (EOF). Returns 1 with a TIDE_HTTP_MESSAGE_END event when the body
 * ran until close, 0 when the parser was between messages, or TIDE_EINCOMPLETE when the
 * end cut a message short (the parser then stays failed). */
TIDE_EXTERN int tide_http_parser_finish(tide_http_parser_t *parser, tide_http_event_t *ev);

/* True when the parser is between messages with nothing buffered. */
TIDE_EXTERN bool tide_http_parser_is_idle(const tide_http_parser_t *parser);

/* Case-insensitive comparison of a lent header name with a C string. */
TIDE_EXTERN bool tide_http_name_is(const char *name, size_t name_len, const char *want);

/* ---- the client ---------------------------------------------------------------------
 *
 * A minimal HTTP/1.1 client in task style (every call ending in _await runs inside a
 * task, see tide/task.h): one connection, plain or TLS (verified unless the TLS
 * configuration says otherwise), requests without a body (GET, HEAD, ...) sent one at
 * a time and kept alive when both sides allow it; bodies framed by Content-Length,
 * chunked or the end of the connection are read whole into memory. Interim 1xx
 * responses are skipped. Deadlines and cancellation come from the task
 * (tide_task_deadline_push): a call cut short that way leaves the connection unusable.
 * Not a browser: no redirects, cookies, proxies, compression or request bodies. */

typedef struct tide_http_client tide_http_client_t;

/* One header (or trailer) field of a response: NUL-terminated copies. */
typedef struct tide_http_header {
    const char *name;
    const char *value;
    const char *line; /* the line as received, without CRLF */
} tide_http_header_t;

/* A response, owned by the caller: free it with tide_http_response_free. */
typedef struct tide_http_response {
    int status;
    int version;             /* 10 or 11 */
    const char *reason;      /* NUL-terminated, may be empty */
    const char *status_line; /* as received, without CRLF */
    tide_http_header_t *headers;
    size_t header_count;
    tide_http_header_t *trailers; /* after a chunked body */
    size_t trailer_count;
    unsigned char *body; /* body_len bytes, followed by a NUL not counted */
    size_t body_len;
    bool keep_alive; /* the connection can carry another request */
} tide_http_response_t;

/* Connection options; a zeroed struct (or NULL) means plain HTTP with the defaults. */
typedef struct tide_http_client_options {
    /* A client TLS configuration (tide/tls.h) makes this HTTPS; NULL: plain HTTP. */
    tide_tls_config_t *tls;
    /* The name verified and sent as SNI; NULL: the host connected to. */
    const char *server_hostname;
    /* Seconds to connect (and hand shake) before TIDE_ETIMEOUT; 0: no limit. */
    double connect_timeout;
    /* Limits of the response parser (zero fields: its defaults). */
    tide_http_limits_t limits;
    /* Largest body kept in memory; a longer one is TIDE_EMSGSIZE (0: 16 MiB). */
    size_t max_body;
    /* Send HTTP/1.0 requests (the server then closes after each response). */
    bool http10;
} tide_http_client_options_t;

/* The parts of an http:// or https:// URL: http[s]://HOST[:PORT][/PATH], HOST a name,
 * an IPv4 address or [IPv6] (brackets removed). */
typedef struct tide_http_url {
    bool https;
    char host[256];
    uint16_t port;    /* 80 or 443 when the URL gives none */
    const char *path; /* points into the URL; "/" when it has none */
} tide_http_url_t;

/* Splits url into *out. Bytes that would let a URL rewrite a request (spaces, control
 * characters) are refused. Returns 0 or TIDE_EINVAL. No I/O. */
TIDE_EXTERN int tide_http_url_parse(const char *url, tide_http_url_t *out);

/* Opens a connection to host:port (TLS when options->tls is set). Returns 0 and sets
 * *client (close it with tide_http_client_close_await), the connection's error
 * (TIDE_ECONNREFUSED, TLS verification codes, TIDE_ETIMEOUT, ...), TIDE_EINVAL,
 * TIDE_ENOMEM, or the codes every _await form returns. */
TIDE_EXTERN int tide_http_client_connect_await(tide_loop_t *loop, const char *host, uint16_t port,
                                               const tide_http_client_options_t *options,
                                               tide_http_client_t **client);

/* Sends "METHOD target HTTP/1.1" with a Host header (unless `headers` has one), the
 * n extra headers given, and no body, then reads the whole response into *response
 * (the caller's; tide_http_response_free). For HEAD the response has no body.
 * Returns 0, TIDE_EINVAL (a method, target or header that is empty or holds CR, LF
 * or, for method and target, a space), TIDE_ECLOSED (the connection cannot carry
 * another request: the previous response was not keep-alive, or failed), TIDE_EOF
 * (the server closed before any byte of a response), TIDE_EINCOMPLETE (it closed
 * inside one), TIDE_EMSGSIZE (body beyond max_body), a parser code (TIDE_EHTTP_*),
 * the connection's error, TIDE_ENOMEM, or the _await codes. After any error the
 * connection is unusable: close it. */
TIDE_EXTERN int tide_http_client_request_await(tide_http_client_t *client, const char *method,
                                               const char *target,
                                               const tide_http_header_t *headers, size_t n,
                                               tide_http_response_t **response);

/* True while the connection can carry another request. */
TIDE_EXTERN bool tide_http_client_is_reusable(const tide_http_client_t *client);

/* Closes the connection, waits until it is closed, and frees the client. Returns 0
 * or the connection's final error (informational: the client is freed in any case).
 * NULL is a no-op (0). */
TIDE_EXTERN int tide_http_client_close_await(tide_http_client_t *client);

/* Frees a response; NULL is a no-op. */
TIDE_EXTERN void tide_http_response_free(tide_http_response_t *response);

/* The first header of a response named `name` (case-insensitive), or NULL. */
TIDE_EXTERN const tide_http_header_t *
tide_http_response_header(const tide_http_response_t *response, const char *name);

#ifdef __cplusplus
}
#endif
#endif
