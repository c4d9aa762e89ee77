/* A minimal HTTP/1.1 client in task style: one connection, requests without a body,
 * keep-alive, responses read whole through the HTTP parser.
 *
 * Where it sits: a client module of protocols/, on top of streams and tasks (it opens
 * a stream with tide_loop_open_connection_await and reads with peek_await / consume,
 * zero-copy) and the parser of http_parse.c; nothing below knows it exists.
 *
 * Every _await call suspends only the calling task; the client is used by one task
 * at a time. Response data is copied out of the reader's buffer while it is lent, into
 * memory the response owns. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tide.h"

#define READER_LIMIT 65536
#define DEFAULT_MAX_BODY ((size_t)16 << 20)

struct tide_http_client {
    tide_reader_t *reader;
    tide_writer_t *writer;
    tide_http_parser_t *parser;
    char host[262]; /* for the Host header: [v6]:port */
    size_t max_body;
    bool http10;
    bool reusable;
};

/* A growable byte buffer: the request being built, a response's strings, its body. */
typedef struct bytes {
    char *p;
    size_t len, cap;
} bytes;

static int put(bytes *b, const void *data, size_t len) {
    if (len + 1 > b->cap - b->len || b->p == NULL) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < len + 1) {
            if (cap > SIZE_MAX / 2)
                return TIDE_ENOMEM;
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return TIDE_ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    if (len > 0)
        memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0'; /* always terminated; the NUL is not counted */
    return 0;
}

/* put, then a NUL that is kept: a string of its own. *off receives where it starts. */
static int put_string(bytes *b, const char *s, size_t len, size_t *off) {
    *off = b->len;
    int rc = put(b, s, len);
    if (rc == 0)
        b->len++;
    return rc;
}

/* ---- URLs ------------------------------------------------------------------------------ */

int tide_http_url_parse(const char *url, tide_http_url_t *out) {
    if (url == NULL || out == NULL)
        return TIDE_EINVAL;
    memset(out, 0, sizeof *out);
    const char *rest;
    if (strncmp(url, "http://", 7) == 0) {
        rest = url + 7;
        out->port = 80;
    } else if (strncmp(url, "https://", 8) == 0) {
        rest = url + 8;
        out->https = true;
        out->port = 443;
    } else {
        return TIDE_EINVAL;
    }
    for (const char *p = rest; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return TIDE_EINVAL;
    const char *host_end, *after;
    if (rest[0] == '[') {
        host_end = strchr(rest, ']');
        if (host_end == NULL)
            return TIDE_EINVAL;
        rest++;
        after = host_end + 1;
    } else {
        host_end = rest + strcspn(rest, ":/");
        after = host_end;
    }
    size_t host_len = (size_t)(host_end - rest);
    if (host_len == 0 || host_len >= sizeof out->host)
        return TIDE_EINVAL;
    memcpy(out->host, rest, host_len);
    out->host[host_len] = '\0';
    if (*after == ':') {
        char *end;
        unsigned long port = strtoul(after + 1, &end, 10);
        if (end == after + 1 || port == 0 || port > 65535 || (*end != '\0' && *end != '/'))
            return TIDE_EINVAL;
        out->port = (uint16_t)port;
        after = end;
    }
    if (*after != '\0' && *after != '/')
        return TIDE_EINVAL;
    out->path = *after ? after : "/";
    return 0;
}

/* ---- connecting and closing ------------------------------------------------------------ */

int tide_http_client_connect_await(tide_loop_t *loop, const char *host, uint16_t port,
                                   const tide_http_client_options_t *options,
                                   tide_http_client_t **client) {
    if (client != NULL)
        *client = NULL;
    if (loop == NULL || host == NULL || client == NULL || port == 0 || strlen(host) > 255 ||
        strpbrk(host, "\r\n /") != NULL)
        return TIDE_EINVAL;
    tide_http_client_options_t none = {0};
    if (options == NULL)
        options = &none;
    tide_http_client_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return TIDE_ENOMEM;
    int rc = tide_http_parser_new(TIDE_HTTP_RESPONSE, &options->limits, &c->parser);
    if (rc != 0) {
        free(c);
        return rc;
    }
    bool v6 = strchr(host, ':') != NULL;
    bool default_port = port == (options->tls ? 443 : 80);
    if (default_port)
        snprintf(c->host, sizeof c->host, v6 ? "[%s]" : "%s", host);
    else
        snprintf(c->host, sizeof c->host, v6 ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
    c->max_body = options->max_body ? options->max_body : DEFAULT_MAX_BODY;
    c->http10 = options->http10;
    tide_connect_options_t copts = {.tls = options->tls,
                                    .server_hostname = options->server_hostname,
                                    .timeout = options->connect_timeout};
    rc = tide_loop_open_connection_await(loop, host, port, READER_LIMIT, &copts, &c->reader,
                                         &c->writer);
    if (rc != 0) {
        tide_http_parser_free(c->parser);
        free(c);
        return rc;
    }
    c->reusable = true;
    *client = c;
    return 0;
}

bool tide_http_client_is_reusable(const tide_http_client_t *client) {
    return client != NULL && client->reusable;
}

int tide_http_client_close_await(tide_http_client_t *client) {
    if (client == NULL)
        return 0;
    tide_writer_close(client->writer);
    int rc = tide_writer_wait_closed_await(client->writer);
    tide_http_parser_free(client->parser);
    free(client);
    return rc;
}

/* ---- responses ------------------------------------------------------------------------- */

/* What a response is built from while it is read: its strings and body grow, so the
 * fields hold offsets until the end. */
typedef struct field_offsets {
    size_t name, value, line;
} field_offsets;

typedef struct building {
    bytes strings;
    bytes body;
    bytes headers;  /* field_offsets */
    bytes trailers; /* field_offsets */
    size_t reason, status_line;
    int status, version;
    bool keep_alive;
    bool started; /* any response byte came */
} building;

typedef struct response_impl {
    tide_http_response_t pub;
    char *strings;
} response_impl;

static void building_reset(building *b) {
    free(b->strings.p);
    free(b->body.p);
    free(b->headers.p);
    free(b->trailers.p);
    bool started = b->started;
    memset(b, 0, sizeof *b);
    b->started = started;
}

static int add_field(building *b, bytes *list, const tide_http_event_t *ev) {
    field_offsets f;
    int rc = put_string(&b->strings, ev->name, ev->name_len, &f.name);
    if (rc == 0)
        rc = put_string(&b->strings, ev->value, ev->value_len, &f.value);
    if (rc == 0)
        rc = put_string(&b->strings, ev->line, ev->line_len, &f.line);
    if (rc == 0)
        rc = put(list, &f, sizeof f);
    return rc;
}

static tide_http_header_t *fields_of(const bytes *list, const char *strings, size_t *count) {
    *count = list->len / sizeof(field_offsets);
    if (*count == 0)
        return NULL;
    tide_http_header_t *h = calloc(*count, sizeof *h);
    if (h == NULL)
        return NULL;
    const field_offsets *f = (const field_offsets *)(const void *)list->p;
    for (size_t i = 0; i < *count; i++) {
        h[i].name = strings + f[i].name;
        h[i].value = strings + f[i].value;
        h[i].line = strings + f[i].line;
    }
    return h;
}

/* Turns what was read into the caller's response; b is emptied. */
static int finish_response(building *b, tide_http_response_t **out) {
    response_impl *r = calloc(1, sizeof *r);
    if (r == NULL || (b->body.p == NULL && put(&b->body, "", 0) != 0) ||
        (b->strings.p == NULL && put(&b->strings, "", 0) != 0)) {
        free(r);
        return TIDE_ENOMEM;
    }
    tide_http_response_t *p = &r->pub;
    r->strings = b->strings.p;
    p->status = b->status;
    p->version = b->version;
    p->reason = r->strings + b->reason;
    p->status_line = r->strings + b->status_line;
    p->headers = fields_of(&b->headers, r->strings, &p->header_count);
    p->trailers = fields_of(&b->trailers, r->strings, &p->trailer_count);
    p->body = (unsigned char *)b->body.p;
    p->body_len = b->body.len;
    p->keep_alive = b->keep_alive;
    b->strings.p = b->body.p = NULL;
    building_reset(b);
    if ((p->header_count && !p->headers) || (p->trailer_count && !p->trailers)) {
        tide_http_response_free(p);
        return TIDE_ENOMEM;
    }
    *out = p;
    return 0;
}

void tide_http_response_free(tide_http_response_t *response) {
    if (response == NULL)
        return;
    response_impl *r = TIDE_CONTAINER_OF(response, response_impl, pub);
    free(response->headers);
    free(response->trailers);
    free(response->body);
    free(r->strings);
    free(r);
}

const tide_http_header_t *tide_http_response_header(const tide_http_response_t *response,
                                                    const char *name) {
    if (response == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < response->header_count; i++)
        if (tide_http_name_is(response->headers[i].name, strlen(response->headers[i].name), name))
            return &response->headers[i];
    return NULL;
}

/* One parser event into b. Returns 1 when the final response is complete, 0 to go on,
 * or an error. */
static int on_event(tide_http_client_t *c, building *b, const tide_http_event_t *ev) {
    b->started = true;
    switch (ev->type) {
    case TIDE_HTTP_STATUS_LINE:
        b->status = ev->status;
        b->version = ev->version;
        if (put_string(&b->strings, ev->value, ev->value_len, &b->reason) != 0 ||
            put_string(&b->strings, ev->line, ev->line_len, &b->status_line) != 0)
            return TIDE_ENOMEM;
        return 0;
    case TIDE_HTTP_HEADER:
    case TIDE_HTTP_TRAILER:
        return add_field(b, ev->type == TIDE_HTTP_HEADER ? &b->headers : &b->trailers, ev);
    case TIDE_HTTP_HEAD_END:
        b->keep_alive = ev->keep_alive;
        if (ev->body == TIDE_HTTP_BODY_LENGTH && ev->content_length > c->max_body)
            return TIDE_EMSGSIZE; /* refused before a byte of it is read */
        return 0;
    case TIDE_HTTP_BODY:
        if (ev->len > c->max_body - b->body.len)
            return TIDE_EMSGSIZE;
        return put(&b->body, ev->data, ev->len);
    case TIDE_HTTP_MESSAGE_END:
        if (b->status < 200 && b->status != 101) {
            building_reset(b); /* an interim response: the final one follows */
            return 0;
        }
        return 1;
    default:
        return 0;
    }
}

static bool is_token(const char *s) {
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f || strchr("()<>@,;:\\\"/[]?={}", *s))
            return false;
    return true;
}

/* No control characters (a tab only in header values), and no space in a target. */
static bool is_clean(const char *s, bool header_value) {
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == 0x7f || (ch < ' ' && !(header_value && ch == '\t')) ||
            (ch == ' ' && !header_value))
            return false;
    }
    return true;
}

static int build_request(tide_http_client_t *c, bytes *req, const char *method, const char *target,
                         const tide_http_header_t *headers, size_t n) {
    bool have_host = false;
    for (size_t i = 0; i < n; i++) {
        if (headers[i].name == NULL || headers[i].value == NULL || !is_token(headers[i].name) ||
            !is_clean(headers[i].value, true))
            return TIDE_EINVAL;
        have_host |= tide_http_name_is(headers[i].name, strlen(headers[i].name), "host");
    }
    const char *version = c->http10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n";
    int rc = put(req, method, strlen(method));
    rc = rc ? rc : put(req, " ", 1);
    rc = rc ? rc : put(req, target, strlen(target));
    rc = rc ? rc : put(req, version, strlen(version));
    if (!have_host) {
        rc = rc ? rc : put(req, "Host: ", 6);
        rc = rc ? rc : put(req, c->host, strlen(c->host));
        rc = rc ? rc : put(req, "\r\n", 2);
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = put(req, headers[i].name, strlen(headers[i].name));
        rc = rc ? rc : put(req, ": ", 2);
        rc = rc ? rc : put(req, headers[i].value, strlen(headers[i].value));
        rc = rc ? rc : put(req, "\r\n", 2);
    }
    return rc ? rc : put(req, "\r\n", 2);
}

/* Reads one final response into b through the parser. */
static int read_response(tide_http_client_t *c, building *b) {
    for (;;) {
        const void *data;
        size_t len;
        tide_http_event_t ev;
        int rc = tide_reader_peek_await(c->reader, &data, &len);
        if (rc == TIDE_EOF) {
            rc = tide_http_parser_finish(c->parser, &ev);
            if (rc == 1)
                rc = on_event(c, b, &ev);
            if (rc == 0)
                rc = b->started ? TIDE_EINCOMPLETE : TIDE_EOF;
            return rc == 1 ? 0 : rc;
        }
        if (rc != 0)
            return rc;
        /* Until the parser needs more bytes: an event such as the message's end may
         * be due with every byte already taken. */
        size_t pos = 0;
        for (;;) {
            size_t used;
            int r =
                tide_http_parser_next(c->parser, (const char *)data + pos, len - pos, &used, &ev);
            pos += used;
            if (r == 1)
                r = on_event(c, b, &ev);
            if (r != 0) {
                rc = r;
                break;
            }
            if (pos == len && used == 0)
                break;
        }
        /* What follows the response stays in the reader for the next one. */
        int consumed = tide_reader_consume(c->reader, pos);
        if (rc != 0)
            return rc == 1 ? 0 : rc;
        if (consumed != 0)
            return consumed;
    }
}

int tide_http_client_request_await(tide_http_client_t *c, const char *method, const char *target,
                                   const tide_http_header_t *headers, size_t n,
                                   tide_http_response_t **response) {
    if (response != NULL)
        *response = NULL;
    if (c == NULL || method == NULL || target == NULL || response == NULL ||
        (headers == NULL && n > 0) || !is_token(method) || *target == '\0' ||
        !is_clean(target, false))
        return TIDE_EINVAL;
    if (!c->reusable)
        return TIDE_ECLOSED;
    bytes req = {0};
    int rc = build_request(c, &req, method, target, headers, n);
    if (rc != 0) {
        free(req.p);
        return rc;
    }
    /* From here on a failure leaves the connection in an unknown state. */
    c->reusable = false;
    rc = tide_writer_write(c->writer, req.p, req.len);
    free(req.p);
    if (rc == 0)
        rc = tide_writer_drain_await(c->writer);
    if (rc != 0)
        return rc;
    if (strcmp(method, "HEAD") == 0)
        tide_http_parser_expect_head(c->parser);
    building b = {0};
    rc = read_response(c, &b);
    if (rc == 0)
        rc = finish_response(&b, response);
    building_reset(&b);
    if (rc == 0)
        c->reusable = (*response)->keep_alive && !c->http10 && (*response)->status != 101;
    return rc;
}
