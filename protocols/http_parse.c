/* The HTTP/1.x parser: heads (request and status lines, header fields) and the framing
 * of bodies (Content-Length, chunked with trailers, until close), with no I/O.
 *
 * Where it sits: it uses memory only (no loop, no transport, no stream), so the HTTP
 * client, a server's protocol, the unit tests and the fuzzer all drive this one core.
 * Bytes go in, one event comes out per call (hiredis read.c's shape); a line split
 * across calls is gathered in the parser's own buffer, allocated once at creation;
 * whole lines and body bytes are lent straight from the caller's bytes. Not
 * re-entrant per parser; no callbacks, so no re-entrancy rule beyond that. */
#include <stdlib.h>
#include <string.h>

#include "tide.h"

#define DEFAULT_MAX_LINE 8192
#define DEFAULT_MAX_HEADERS 100
#define DEFAULT_MAX_HEAD 65536
/* A chunk size has at most 15 hex digits: 2^60 - 1 bytes, far beyond anything real,
 * and no sum of them can overflow a uint64_t. */
#define MAX_CHUNK_DIGITS 15

enum state {
    S_START,       /* before the start line (blank lines skipped) */
    S_HEADERS,     /* header lines until the blank line */
    S_BODY_LENGTH, /* `remaining` body bytes */
    S_CHUNK_SIZE,  /* a chunk-size line */
    S_CHUNK_DATA,  /* `remaining` bytes of a chunk */
    S_CHUNK_CR,    /* the CRLF after a chunk's data */
    S_CHUNK_LF,
    S_TRAILERS,    /* trailer lines until the blank line */
    S_BODY_CLOSE,  /* body bytes until EOF */
    S_MESSAGE_END, /* the message-end event is due */
    S_STOPPED,     /* after 101 Switching Protocols */
    S_FAILED
};

struct tide_http_parser {
    tide_http_kind_t kind;
    size_t max_line, max_headers, max_head;
    enum state state;
    int error;
    char *line;      /* a line split across calls: max_line + 1 bytes (content and CR) */
    size_t line_len; /* bytes gathered in line */
    size_t head_bytes;
    size_t fields;
    bool expect_head; /* the response answers HEAD */
    /* What the current head said. */
    int version;
    int status;
    bool have_length;
    uint64_t length;
    bool have_te;
    bool te_chunked; /* the (single) transfer coding is chunked */
    bool te_bad;     /* another coding, or chunked twice */
    bool conn_close, conn_keep_alive;
    uint64_t remaining;
};

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char c) {
    if (c >= '0' && c <= '9')
        return true;
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Field-value and reason bytes: HTAB, SP, VCHAR, obs-text. */
static bool is_text(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

bool tide_http_name_is(const char *name, size_t name_len, const char *want) {
    size_t n = strlen(want);
    if (name == NULL || name_len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char a = (unsigned char)name[i], b = (unsigned char)want[i];
        if (a >= 'A' && a <= 'Z')
            a |= 0x20;
        if (b >= 'A' && b <= 'Z')
            b |= 0x20;
        if (a != b)
            return false;
    }
    return true;
}

int tide_http_parser_new(tide_http_kind_t kind, const tide_http_limits_t *limits,
                         tide_http_parser_t **parser) {
    if (parser == NULL || (kind != TIDE_HTTP_REQUEST && kind != TIDE_HTTP_RESPONSE))
        return TIDE_EINVAL;
    *parser = NULL;
    tide_http_parser_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        return TIDE_ENOMEM;
    p->kind = kind;
    p->max_line = limits && limits->max_line ? limits->max_line : DEFAULT_MAX_LINE;
    p->max_headers = limits && limits->max_headers ? limits->max_headers : DEFAULT_MAX_HEADERS;
    p->max_head = limits && limits->max_head ? limits->max_head : DEFAULT_MAX_HEAD;
    if (p->max_line >= SIZE_MAX / 2 || (p->line = malloc(p->max_line + 1)) == NULL) {
        free(p);
        return TIDE_ENOMEM;
    }
    p->state = S_START;
    *parser = p;
    return 0;
}

void tide_http_parser_free(tide_http_parser_t *parser) {
    if (parser == NULL)
        return;
    free(parser->line);
    free(parser);
}

void tide_http_parser_expect_head(tide_http_parser_t *parser) {
    if (parser != NULL)
        parser->expect_head = true;
}

bool tide_http_parser_is_idle(const tide_http_parser_t *parser) {
    /* Blank lines skipped before a start line are not a message begun. */
    return parser != NULL && parser->state == S_START && parser->line_len == 0;
}

static int fail(tide_http_parser_t *p, int err) {
    p->state = S_FAILED;
    p->error = err;
    return err;
}

/* Takes bytes of data (from *pos) until the end of a line. Returns 1 with the line
 * (without CRLF or LF) in *out, 0 when every byte was taken without reaching the end,
 * or an error. In a head, every byte taken counts against max_head. */
static int get_line(tide_http_parser_t *p, const char *data, size_t len, size_t *pos, bool in_head,
                    const char **out, size_t *out_len) {
    const char *start = data + *pos;
    size_t avail = len - *pos;
    const char *nl = memchr(start, '\n', avail);
    size_t take = nl ? (size_t)(nl - start) + 1 : avail;
    /* Which limit breaks first is decided by the byte that breaks it, so that the code
     * does not depend on how the input was cut. The line's content may carry one CR
     * before its LF, hence max_line + 1. */
    size_t fresh = nl ? take - 1 : take;
    size_t line_room = p->max_line + 1 - p->line_len;
    size_t head_room = in_head ? p->max_head - p->head_bytes : SIZE_MAX;
    bool line_over = fresh > line_room;
    bool head_over = take > head_room;
    if (line_over && (!head_over || line_room <= head_room))
        return fail(p, TIDE_EHTTP_LINE_TOO_LONG);
    if (head_over)
        return fail(p, TIDE_EHTTP_HEAD_TOO_LARGE);
    if (in_head)
        p->head_bytes += take;
    *pos += take;
    if (nl == NULL) {
        memcpy(p->line + p->line_len, start, take);
        p->line_len += take;
        return 0;
    }
    const char *l = start;
    size_t n = take - 1;
    if (p->line_len > 0) {
        memcpy(p->line + p->line_len, start, n);
        l = p->line;
        n += p->line_len;
        p->line_len = 0;
    }
    if (n > 0 && l[n - 1] == '\r')
        n--;
    if (n > p->max_line)
        return fail(p, TIDE_EHTTP_LINE_TOO_LONG);
    if (memchr(l, '\r', n) != NULL)
        /* A bare CR: never a line end. */
        return fail(p, p->state == S_CHUNK_SIZE ? TIDE_EHTTP_CHUNK : TIDE_EHTTP_SYNTAX);
    *out = l;
    *out_len = n;
    return 1;
}

/* "HTTP/1.0" or "HTTP/1.1" at s (8 bytes): 10 or 11; another HTTP/d.d is
 * TIDE_EHTTP_VERSION, anything else TIDE_EHTTP_SYNTAX. */
static int parse_version(const char *s, size_t n) {
    if (n != 8 || memcmp(s, "HTTP/", 5) != 0 || s[6] != '.' || s[5] < '0' || s[5] > '9' ||
        s[7] < '0' || s[7] > '9')
        return TIDE_EHTTP_SYNTAX;
    if (s[5] != '1' || (s[7] != '0' && s[7] != '1'))
        return TIDE_EHTTP_VERSION;
    return s[7] == '0' ? 10 : 11;
}

static void new_message(tide_http_parser_t *p) {
    p->head_bytes = 0;
    p->fields = 0;
    p->version = 0;
    p->status = 0;
    p->have_length = false;
    p->length = 0;
    p->have_te = p->te_chunked = p->te_bad = false;
    p->conn_close = p->conn_keep_alive = false;
}

static int start_line(tide_http_parser_t *p, const char *l, size_t n, tide_http_event_t *ev) {
    ev->line = l;
    ev->line_len = n;
    if (p->kind == TIDE_HTTP_REQUEST) {
        size_t i = 0;
        while (i < n && is_tchar((unsigned char)l[i]))
            i++;
        if (i == 0 || i >= n || l[i] != ' ')
            return fail(p, TIDE_EHTTP_SYNTAX);
        ev->name = l;
        ev->name_len = i;
        size_t t = ++i;
        while (i < n && (unsigned char)l[i] > ' ' && l[i] != 0x7f)
            i++;
        if (i == t || i >= n || l[i] != ' ')
            return fail(p, TIDE_EHTTP_SYNTAX);
        ev->value = l + t;
        ev->value_len = i - t;
        int v = parse_version(l + i + 1, n - i - 1);
        if (v < 0)
            return fail(p, v);
        p->version = ev->version = v;
        ev->type = TIDE_HTTP_REQUEST_LINE;
        return 1;
    }
    if (n < 12 || l[8] != ' ')
        return fail(p, n >= 8 && parse_version(l, 8) == TIDE_EHTTP_VERSION ? TIDE_EHTTP_VERSION
                                                                           : TIDE_EHTTP_SYNTAX);
    int v = parse_version(l, 8);
    if (v < 0)
        return fail(p, v);
    int status = 0;
    for (size_t i = 9; i < 12; i++) {
        if (l[i] < '0' || l[i] > '9')
            return fail(p, TIDE_EHTTP_SYNTAX);
        status = status * 10 + (l[i] - '0');
    }
    if (status < 100 || status > 599 || (n > 12 && l[12] != ' '))
        return fail(p, TIDE_EHTTP_SYNTAX);
    size_t r = n > 12 ? 13 : 12;
    for (size_t i = r; i < n; i++)
        if (!is_text((unsigned char)l[i]))
            return fail(p, TIDE_EHTTP_SYNTAX);
    p->version = ev->version = v;
    p->status = ev->status = status;
    ev->value = l + r;
    ev->value_len = n - r;
    ev->type = TIDE_HTTP_STATUS_LINE;
    return 1;
}

/* Calls each(p, element, len) for the non-empty elements of a comma list. */
static void each_element(tide_http_parser_t *p, const char *v, size_t n,
                         void (*each)(tide_http_parser_t *, const char *, size_t)) {
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e > s)
            each(p, v + s, e - s);
    }
}

static void transfer_coding(tide_http_parser_t *p, const char *c, size_t n) {
    if (tide_http_name_is(c, n, "chunked") && !p->te_chunked)
        p->te_chunked = true;
    else
        p->te_bad = true; /* another coding (tide decodes none), or chunked twice */
}

static void connection_option(tide_http_parser_t *p, const char *c, size_t n) {
    if (tide_http_name_is(c, n, "close"))
        p->conn_close = true;
    else if (tide_http_name_is(c, n, "keep-alive"))
        p->conn_keep_alive = true;
}

/* A header or trailer line: name, value, and (in a head) what it says about framing. */
static int field_line(tide_http_parser_t *p, const char *l, size_t n, bool trailer,
                      tide_http_event_t *ev) {
    if (l[0] == ' ' || l[0] == '\t')
        return fail(p, TIDE_EHTTP_FOLD);
    if (++p->fields > p->max_headers)
        return fail(p, TIDE_EHTTP_TOO_MANY_HEADERS);
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)l[i]))
        i++;
    /* No space before the colon: a proxy that trims it and one that does not would
     * see two different names (a request-smuggling shape). */
    if (i == 0 || i >= n || l[i] != ':')
        return fail(p, TIDE_EHTTP_SYNTAX);
    size_t vs = i + 1, ve = n;
    while (vs < ve && (l[vs] == ' ' || l[vs] == '\t'))
        vs++;
    while (ve > vs && (l[ve - 1] == ' ' || l[ve - 1] == '\t'))
        ve--;
    for (size_t k = vs; k < ve; k++)
        if (!is_text((unsigned char)l[k]))
            return fail(p, TIDE_EHTTP_SYNTAX);
    ev->type = trailer ? TIDE_HTTP_TRAILER : TIDE_HTTP_HEADER;
    ev->line = l;
    ev->line_len = n;
    ev->name = l;
    ev->name_len = i;
    ev->value = l + vs;
    ev->value_len = ve - vs;
    if (trailer)
        return 1; /* trailers never change framing */
    const char *v = l + vs;
    size_t vn = ve - vs;
    if (tide_http_name_is(l, i, "content-length")) {
        if (p->have_length || vn == 0)
            return fail(p, TIDE_EHTTP_CONTENT_LENGTH);
        uint64_t x = 0;
        for (size_t k = 0; k < vn; k++) {
            if (v[k] < '0' || v[k] > '9' || x > (UINT64_MAX - 9) / 10)
                return fail(p, TIDE_EHTTP_CONTENT_LENGTH);
            x = x * 10 + (uint64_t)(v[k] - '0');
        }
        p->have_length = true;
        p->length = x;
    } else if (tide_http_name_is(l, i, "transfer-encoding")) {
        p->have_te = true;
        each_element(p, v, vn, transfer_coding);
    } else if (tide_http_name_is(l, i, "connection")) {
        each_element(p, v, vn, connection_option);
    }
    return 1;
}

/* The blank line after the headers: decide the body's framing (RFC 9112 6.3). */
static int head_end(tide_http_parser_t *p, tide_http_event_t *ev) {
    tide_http_body_t body;
    bool response = p->kind == TIDE_HTTP_RESPONSE;
    bool no_body =
        response && (p->expect_head || p->status < 200 || p->status == 204 || p->status == 304);
    if (p->have_te && p->have_length)
        return fail(p, TIDE_EHTTP_AMBIGUOUS);
    /* The coding matters only when a body is read (a HEAD response may name gzip). */
    if (p->have_te && !no_body && (p->te_bad || !p->te_chunked || p->version == 10))
        return fail(p, TIDE_EHTTP_TRANSFER_ENCODING);
    if (no_body)
        body = TIDE_HTTP_BODY_NONE;
    else if (p->have_te)
        body = TIDE_HTTP_BODY_CHUNKED;
    else if (p->have_length)
        body = TIDE_HTTP_BODY_LENGTH;
    else
        body = response ? TIDE_HTTP_BODY_CLOSE : TIDE_HTTP_BODY_NONE;
    ev->type = TIDE_HTTP_HEAD_END;
    ev->version = p->version;
    ev->status = p->status;
    ev->body = body;
    ev->content_length = body == TIDE_HTTP_BODY_LENGTH ? p->length : 0;
    ev->keep_alive = body != TIDE_HTTP_BODY_CLOSE && p->status != 101 &&
                     (p->version == 11 ? !p->conn_close : p->conn_keep_alive && !p->conn_close);
    switch (body) {
    case TIDE_HTTP_BODY_LENGTH:
        p->remaining = p->length;
        p->state = p->length > 0 ? S_BODY_LENGTH : S_MESSAGE_END;
        break;
    case TIDE_HTTP_BODY_CHUNKED:
        p->state = S_CHUNK_SIZE;
        break;
    case TIDE_HTTP_BODY_CLOSE:
        p->state = S_BODY_CLOSE;
        break;
    default:
        p->state = S_MESSAGE_END;
    }
    return 1;
}

static int chunk_size(tide_http_parser_t *p, const char *l, size_t n) {
    uint64_t size = 0;
    size_t i = 0;
    for (; i < n; i++) {
        unsigned char c = (unsigned char)l[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            d = (c | 0x20) - 'a' + 10;
        else
            break;
        if (i == MAX_CHUNK_DIGITS)
            return fail(p, TIDE_EHTTP_CHUNK);
        size = size * 16 + d;
    }
    if (i == 0)
        return fail(p, TIDE_EHTTP_CHUNK);
    /* Chunk extensions (after optional spaces, a ';') are skipped, not interpreted. */
    size_t k = i;
    while (k < n && (l[k] == ' ' || l[k] == '\t'))
        k++;
    if (k < n && l[k] != ';')
        return fail(p, TIDE_EHTTP_CHUNK);
    if (k == n && k != i)
        return fail(p, TIDE_EHTTP_CHUNK); /* trailing spaces without an extension */
    for (; k < n; k++)
        if (!is_text((unsigned char)l[k]))
            return fail(p, TIDE_EHTTP_CHUNK);
    if (size == 0) {
        p->state = S_TRAILERS;
        p->head_bytes = 0;
        p->fields = 0;
    } else {
        p->remaining = size;
        p->state = S_CHUNK_DATA;
    }
    return 0;
}

int tide_http_parser_next(tide_http_parser_t *p, const void *data, size_t len, size_t *used,
                          tide_http_event_t *ev) {
    if (used != NULL)
        *used = 0;
    if (p == NULL || used == NULL || ev == NULL || (data == NULL && len > 0))
        return TIDE_EINVAL;
    memset(ev, 0, sizeof *ev);
    const char *d = data;
    size_t pos = 0;
    int rc = 0;
    for (;;) {
        const char *l = NULL;
        size_t n = 0;
        switch (p->state) {
        case S_FAILED:
            rc = p->error;
            goto out;
        case S_STOPPED:
            rc = TIDE_ESTATE;
            goto out;
        case S_MESSAGE_END:
            ev->type = TIDE_HTTP_MESSAGE_END;
            ev->status = p->status;
            ev->version = p->version;
            if (p->kind == TIDE_HTTP_RESPONSE && p->status >= 200)
                p->expect_head = false;
            p->state = p->status == 101 ? S_STOPPED : S_START;
            new_message(p);
            rc = 1;
            goto out;
        case S_BODY_LENGTH:
        case S_CHUNK_DATA:
        case S_BODY_CLOSE: {
            size_t avail = len - pos;
            if (avail == 0)
                goto out;
            size_t take = avail;
            if (p->state != S_BODY_CLOSE && p->remaining < take)
                take = (size_t)p->remaining;
            ev->type = TIDE_HTTP_BODY;
            ev->data = d + pos;
            ev->len = take;
            pos += take;
            if (p->state != S_BODY_CLOSE) {
                p->remaining -= take;
                if (p->remaining == 0)
                    p->state = p->state == S_CHUNK_DATA ? S_CHUNK_CR : S_MESSAGE_END;
            }
            rc = 1;
            goto out;
        }
        case S_CHUNK_CR:
        case S_CHUNK_LF:
            if (pos == len)
                goto out;
            if (p->state == S_CHUNK_CR && d[pos] == '\r') {
                p->state = S_CHUNK_LF;
            } else if (d[pos] == '\n') {
                p->state = S_CHUNK_SIZE;
            } else {
                rc = fail(p, TIDE_EHTTP_CHUNK);
                goto out;
            }
            pos++;
            continue;
        case S_START:
        case S_HEADERS:
        case S_TRAILERS:
        case S_CHUNK_SIZE:
            if (pos == len)
                goto out;
            rc = get_line(p, d, len, &pos, p->state != S_CHUNK_SIZE, &l, &n);
            if (rc <= 0)
                goto out;
            break;
        }
        /* A whole line is in l. */
        rc = 0;
        if (p->state == S_START) {
            if (n == 0)
                continue; /* blank lines before a message are skipped (RFC 9112 2.2) */
            rc = start_line(p, l, n, ev);
            if (rc > 0)
                p->state = S_HEADERS;
            goto out;
        }
        if (p->state == S_CHUNK_SIZE) {
            rc = chunk_size(p, l, n);
            if (rc < 0)
                goto out;
            continue;
        }
        if (n == 0) {
            if (p->state == S_HEADERS) {
                rc = head_end(p, ev);
            } else {
                p->state = S_MESSAGE_END;
                continue;
            }
            goto out;
        }
        rc = field_line(p, l, n, p->state == S_TRAILERS, ev);
        goto out;
    }
out:
    *used = pos;
    return rc;
}

int tide_http_parser_finish(tide_http_parser_t *p, tide_http_event_t *ev) {
    if (p == NULL || ev == NULL)
        return TIDE_EINVAL;
    memset(ev, 0, sizeof *ev);
    switch (p->state) {
    case S_FAILED:
        return p->error;
    case S_STOPPED:
        return 0;
    case S_BODY_CLOSE:
    case S_MESSAGE_END:
        p->state = S_MESSAGE_END;
        {
            size_t used;
            return tide_http_parser_next(p, NULL, 0, &used, ev);
        }
    case S_START:
        if (p->line_len == 0)
            return 0;
        /* fall through */
    default:
        return fail(p, TIDE_EINCOMPLETE);
    }
}
