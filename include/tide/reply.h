/* Command/reply parsing for SMTP (RFC 5321) and FTP (RFC 959), with no I/O: bytes go
 * in, complete lines and replies come out, and the limits on line length and line
 * count are enforced as the bytes arrive. Also the pieces around it that need no
 * connection either: a command formatter that refuses CR, LF and NUL in its argument
 * (command injection), the PASV (227) and EPSV (229) replies, SMTP EHLO keywords, and
 * the SMTP DATA encoder (line ends as CRLF, leading dots doubled).
 *
 * Where it sits: protocols/, on core only (no transport, no stream, no task). The
 * SMTP and FTP client modules (tide/smtp.h, tide/ftp.h) drive it from a stream; tests
 * and fuzzers drive it from memory.
 *
 * The parser is a caller-owned value: nothing is allocated, ever; the current line
 * and the reply's first line live inside it. Any thread, one parser per thread. */
#ifndef TIDE_REPLY_H
#define TIDE_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errno.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The two dialects differ in how a multi-line reply is written:
 * SMTP: every line starts with the same code (first digit 2-5), "NNN-" on all but
 *       the last, "NNN " (or a bare "NNN") on the last.
 * FTP:  the first line is "NNN-" (first digit 1-5); the lines in between are free
 *       text; the reply ends at the first line that starts with the same "NNN ". */
typedef enum tide_reply_dialect {
    TIDE_REPLY_SMTP = 0,
    TIDE_REPLY_FTP = 1,
} tide_reply_dialect_t;

/* The largest line the parser can hold, CRLF included; the limit given to
 * tide_reply_parser_init may be at most this. */
#define TIDE_REPLY_LINE_CAP 2048

/* Defaults when 0 is given: RFC 5321 4.5.3.1.5 (512 octets with CRLF) and a reply
 * of at most 100 lines for SMTP; 1024 and 1000 for FTP (listings in STAT, FEAT). */
#define TIDE_REPLY_SMTP_LINE_MAX 512
#define TIDE_REPLY_SMTP_LINES_MAX 100
#define TIDE_REPLY_FTP_LINE_MAX 1024
#define TIDE_REPLY_FTP_LINES_MAX 1000

/* What tide_reply_parser_feed found. */
#define TIDE_REPLY_MORE 0 /* every byte was taken; the reply goes on */
#define TIDE_REPLY_LINE 1 /* one line of a multi-line reply, not the last */
#define TIDE_REPLY_DONE 2 /* the last line: the reply is complete */

/* A parser. Read the fields, never write them. After TIDE_REPLY_LINE or DONE:
 * line holds that line (CR LF removed, NUL-terminated; a CR or NUL inside stays),
 * code the reply's code, text the first line's text (after "NNN " or "NNN-"),
 * nlines the lines so far. After an error, line holds the offending line (or its
 * first part) and the parser stays failed: every later feed returns the same error
 * until tide_reply_parser_init. The next feed after DONE starts a new reply. */
typedef struct tide_reply_parser {
    tide_reply_dialect_t dialect;
    size_t line_max;  /* octets per line, CR LF included */
    size_t lines_max; /* lines per reply */
    int code;         /* 100-599; 0 before the first line is complete */
    size_t nlines;
    size_t line_len; /* octets in line (without the CR LF once complete) */
    int error;       /* 0, or the error the parser stopped on */
    bool done;       /* the last feed completed a reply */
    bool complete;   /* line holds a complete line */
    char line[TIDE_REPLY_LINE_CAP + 1];
    char text[TIDE_REPLY_LINE_CAP + 1];
} tide_reply_parser_t;

/* Sets p up (and resets it) for dialect, with line_max octets per line (CRLF
 * included, 5 to TIDE_REPLY_LINE_CAP) and lines_max lines per reply (>= 1); 0 takes the
 * dialect's default. Returns 0 or TIDE_EINVAL. */
TIDE_EXTERN int tide_reply_parser_init(tide_reply_parser_t *p, tide_reply_dialect_t dialect,
                                       size_t line_max, size_t lines_max);

/* Feeds up to len bytes; stops after the first line that completes, so the caller can
 * look at it. *used (not NULL) receives how many bytes were taken: the rest, after a
 * reply's end, belong to what follows it (for STARTTLS, the caller must treat them as
 * injected). Returns TIDE_REPLY_MORE (all bytes taken), TIDE_REPLY_LINE, TIDE_REPLY_DONE,
 * or an error: TIDE_EREPLY_SYNTAX (a line that is not a reply line), TIDE_EREPLY_LINE
 * (a line over line_max), TIDE_EREPLY_LINES (more than lines_max lines),
 * TIDE_EREPLY_CODE (SMTP: a different code inside one reply), TIDE_EINVAL. */
TIDE_EXTERN int tide_reply_parser_feed(tide_reply_parser_t *p, const void *data, size_t len,
                                       size_t *used);

/* True when the parser holds no part of a reply (nothing fed since the last DONE). */
TIDE_EXTERN bool tide_reply_parser_idle(const tide_reply_parser_t *p);

/* Writes "VERB\r\n" or "VERB ARG\r\n" into buf (NUL-terminated as well) and returns its
 * length without the NUL. arg may be NULL (no argument) and holds arglen bytes.
 * TIDE_ECOMMAND_CHARS when verb or arg holds CR, LF or NUL (it would end the command
 * and start another), TIDE_EMSGSIZE when buf is too small, TIDE_EINVAL for an empty
 * verb. */
TIDE_EXTERN int tide_command_format(char *buf, size_t cap, const char *verb, const void *arg,
                                    size_t arglen);

/* True when s (len bytes) holds no CR, LF or NUL: safe inside one command line. */
TIDE_EXTERN bool tide_command_arg_is_safe(const void *s, size_t len);

/* FTP "227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)", given the reply's text (after
 * the code; the parentheses are optional): the address into addr (may be NULL) and
 * the port. Every number must be 0-255 with at most 3 digits, and the port not 0.
 * Returns 0 or TIDE_EREPLY_PASV. */
TIDE_EXTERN int tide_reply_parse_pasv(const char *text, uint8_t addr[4], uint16_t *port);

/* FTP "229 Entering Extended Passive Mode (|||port|)" (RFC 2428: any printable
 * delimiter, the same four times; the port 1-65535). Returns 0 or TIDE_EREPLY_PASV. */
TIDE_EXTERN int tide_reply_parse_epsv(const char *text, uint16_t *port);

/* Splits a command-line server argument: "HOST", "HOST:PORT", "[V6]", "[V6]:PORT" or a
 * bare IPv6 address (several colons: no port) into host (cap octets with the NUL) and
 * *port (default_port when none is given). Returns 0 or TIDE_EINVAL (empty or too long
 * a host, a port that is not 1-65535). */
TIDE_EXTERN int tide_host_port_parse(const char *arg, char *host, size_t cap, uint16_t default_port,
                                     uint16_t *port);

/* ---- what the client modules (tide/smtp.h, tide/ftp.h) share ---------------------- */

/* The last reply a client module read, for messages: code, the first line's text
 * (after the code) and the last line read (after a protocol error, the offending
 * one), both with control characters shown as '?'. Valid until the module's next
 * call. */
typedef struct tide_reply {
    int code;
    const char *text;
    const char *line;
} tide_reply_t;

/* Shows a session's dialogue, one line per call: who is 'C' (a command sent, with
 * credentials replaced by a placeholder), 'S' (a reply line received, control
 * characters shown as '?') or '-' (a note: a TLS handshake, a data connection). line
 * is lent for the call. */
typedef void (*tide_dialogue_cb)(char who, const char *line, void *arg);

/* A tide_dialogue_cb that prints each line to the stdio FILE * given as arg: "C: line",
 * "S: line", or "-- note". */
TIDE_EXTERN void tide_dialogue_print(char who, const char *line, void *file);

/* ---- SMTP EHLO keywords (RFC 5321 4.1.1.1) ----------------------------------------- */

#define TIDE_EHLO_STARTTLS 0x01u   /* RFC 3207 */
#define TIDE_EHLO_SIZE 0x02u       /* RFC 1870; size_max 0 means no stated limit */
#define TIDE_EHLO_8BITMIME 0x04u   /* RFC 6152 */
#define TIDE_EHLO_AUTH 0x08u       /* RFC 4954; the mechanisms in auth */
#define TIDE_EHLO_PIPELINING 0x10u /* RFC 2920 */
#define TIDE_EHLO_SMTPUTF8 0x20u   /* RFC 6531 */

#define TIDE_AUTH_PLAIN 0x01u
#define TIDE_AUTH_LOGIN 0x02u
#define TIDE_AUTH_CRAM_MD5 0x04u
#define TIDE_AUTH_XOAUTH2 0x08u

/* What a server's EHLO reply advertised. */
typedef struct tide_ehlo {
    unsigned flags;    /* TIDE_EHLO_* */
    unsigned auth;     /* TIDE_AUTH_* */
    uint64_t size_max; /* SIZE's parameter, 0 when absent or not a number */
} tide_ehlo_t;

/* Adds one EHLO keyword line (a reply line's text after "250-" or "250 ", not the
 * first line, which is the greeting) to *e; unknown keywords are ignored. AUTH also
 * comes as "AUTH=..." from old servers. */
TIDE_EXTERN void tide_ehlo_parse_line(tide_ehlo_t *e, const char *line);

/* ---- SMTP DATA content (RFC 5321 4.5.2) -------------------------------------------- */

/* Turns a message into DATA content as it streams: CR, LF and CRLF each become CRLF,
 * a dot that starts a line is doubled, and the end is CRLF.CRLF, so no other
 * end-of-data sequence can leave (SMTP smuggling). Zero-initialise, then call
 * tide_data_encode for each piece and tide_data_encode_end once. */
typedef struct tide_data_encoder {
    bool started;    /* at least one byte went in */
    bool mid_line;   /* the output is inside a line */
    bool after_cr;   /* the last input byte was a CR (its LF, if any, is swallowed) */
    bool eight_bit;  /* an octet over 127 went through */
    uint64_t octets; /* output so far */
} tide_data_encoder_t;

/* Encodes len bytes into out, which must hold 2 * len bytes; returns the count
 * written. */
TIDE_EXTERN size_t tide_data_encode(tide_data_encoder_t *e, const void *in, size_t len, void *out);

/* Writes the terminator (CRLF.CRLF, or .CRLF when the output ends a line) into out,
 * which must hold 5 bytes; returns its length. */
TIDE_EXTERN size_t tide_data_encode_end(tide_data_encoder_t *e, void *out);

#ifdef __cplusplus
}
#endif

#endif
