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
 * - body framing: Transfer-Encoding chunked (the only transfer coding accepted:
 *   anything else is TIDE_EHTTP_TRANSFER_ENCODING, except that a response with an
 *   unknown coding ending in something other than chunked is read until close, as RFC
 *   9112 6.3 says), Content-Length (digits only, once: a repeated, signed, empty,
 *   comma-listed or overflowing value is TIDE_EHTTP_CONTENT_LENGTH), both at once
 *   (the request-smuggling shape: TIDE_EHTTP_AMBIGUOUS), neither (a request has no
 *   body; a response runs until the connection closes); a chunk size that is not hex,
 *   empty or beyond 2^60 is TIDE_EHTTP_CHUNK, as is a chunk not followed by CRLF;
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
 * arguments). *used receives the bytes taken in every case: call again with the rest.
 * Body pieces are lent straight from data, never copied. */
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

#ifdef __cplusplus
}
#endif
#endif
