/* The HTTP/1.x parser, table-driven: each case is an input, the kind of parser and the
 * transcript of events it must give (or the error that ends it). Every case is run
 * whole, split at every byte into two pieces, and fed one byte at a time: the
 * transcript must be the same each time (body pieces are joined before comparing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tide.h"

typedef struct tcase {
    const char *name;
    tide_http_kind_t kind;
    const char *in;
    const char *want; /* the transcript, see note() */
    bool eof;         /* call finish after the input */
    bool head;        /* the response answers HEAD */
    tide_http_limits_t limits;
} tcase;

#define REQ TIDE_HTTP_REQUEST
#define RSP TIDE_HTTP_RESPONSE

typedef struct transcript {
    char text[4096];
    size_t len;
    bool in_body; /* the last note was a body piece, still open */
} transcript;

static void add(transcript *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->text + t->len, sizeof t->text - t->len, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof t->text - t->len);
    t->len += (size_t)n;
}

/* One event as text: "REQ GET / 11;" "ST 200 OK 11;" "H name=value;" "END chunked 0 ka;"
 * "B bytes;" (pieces joined) "T name=value;" "MSG;", and "ERR NAME;" for an error. */
static void note(transcript *t, int rc, const tide_http_event_t *ev) {
    if (rc < 0) {
        t->in_body = false;
        add(t, "ERR %s;", tide_err_name(rc));
        return;
    }
    if (ev->type == TIDE_HTTP_BODY) {
        if (t->in_body)
            t->len--; /* reopen the previous piece */
        else
            add(t, "B ");
        add(t, "%.*s;", (int)ev->len, (const char *)ev->data);
        t->in_body = true;
        return;
    }
    t->in_body = false;
    static const char *const bodies[] = {"none", "length", "chunked", "close"};
    switch (ev->type) {
    case TIDE_HTTP_REQUEST_LINE:
        add(t, "REQ %.*s %.*s %d;", (int)ev->name_len, ev->name, (int)ev->value_len, ev->value,
            ev->version);
        break;
    case TIDE_HTTP_STATUS_LINE:
        add(t, "ST %d %.*s %d;", ev->status, (int)ev->value_len, ev->value, ev->version);
        break;
    case TIDE_HTTP_HEADER:
    case TIDE_HTTP_TRAILER:
        add(t, "%s %.*s=%.*s;", ev->type == TIDE_HTTP_HEADER ? "H" : "T", (int)ev->name_len,
            ev->name, (int)ev->value_len, ev->value);
        break;
    case TIDE_HTTP_HEAD_END:
        add(t, "END %s %llu %s;", bodies[ev->body], (unsigned long long)ev->content_length,
            ev->keep_alive ? "ka" : "close");
        break;
    case TIDE_HTTP_MESSAGE_END:
        add(t, "MSG;");
        break;
    default:
        fail_msg("unexpected event %d", (int)ev->type);
    }
}

/* Feeds c->in in pieces ending at cuts[0..ncuts) and at the end; returns the transcript. */
static void run(const tcase *c, const size_t *cuts, size_t ncuts, transcript *t) {
    memset(t, 0, sizeof *t);
    tide_http_parser_t *p;
    assert_int_equal(tide_http_parser_new(c->kind, &c->limits, &p), 0);
    if (c->head)
        tide_http_parser_expect_head(p);
    size_t len = strlen(c->in), pos = 0;
    int rc = 0;
    for (size_t k = 0; k <= ncuts && rc >= 0; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        while (rc >= 0) {
            size_t used;
            tide_http_event_t ev;
            rc = tide_http_parser_next(p, c->in + pos, end - pos, &used, &ev);
            assert_true(used <= end - pos);
            pos += used;
            if (rc == 0) {
                assert_int_equal(pos, end); /* 0 means every byte was taken */
                break;
            }
            note(t, rc, &ev);
        }
    }
    if (rc >= 0 && c->eof) {
        tide_http_event_t ev;
        rc = tide_http_parser_finish(p, &ev);
        if (rc != 0)
            note(t, rc, &ev);
    }
    tide_http_parser_free(p);
}

/* Cases name their optional fields; the others are left zero on purpose. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const tcase cases[] = {
    /* ---- valid requests ---- */
    {"simple GET", REQ, "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
     "REQ GET / 11;H Host=a;END none 0 ka;MSG;"},
    {"bare LF and OWS trimmed", REQ, "GET /x?y HTTP/1.0\nHost:  a b \t\nX-E:\n\n",
     "REQ GET /x?y 10;H Host=a b;H X-E=;END none 0 close;MSG;"},
    {"leading blank lines", REQ, "\r\n\r\nGET / HTTP/1.1\r\n\r\n",
     "REQ GET / 11;END none 0 ka;MSG;"},
    {"POST with length", REQ, "POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET",
     "REQ POST /p 11;H Content-Length=5;END length 5 ka;B hello;MSG;"},
    {"pipelined", REQ, "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nConnection: close\r\n\r\n",
     "REQ GET /a 11;END none 0 ka;MSG;REQ GET /b 11;H Connection=close;END none 0 close;MSG;"},
    {"chunked request", REQ,
     "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;a=b\r\n world\r\n"
     "0\r\nX-T: 1\r\n\r\n",
     "REQ POST / 11;H Transfer-Encoding=chunked;END chunked 0 ka;B hello world;T X-T=1;MSG;"},
    {"1.0 keep-alive", REQ, "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
     "REQ GET / 10;H Connection=Keep-Alive;END none 0 ka;MSG;"},
    {"obs-text in a value", REQ, "GET / HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n",
     "REQ GET / 11;H X=caf\xc3\xa9;END none 0 ka;MSG;"},
    /* ---- valid responses ---- */
    {"200 with length", RSP, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
     "ST 200 OK 11;H Content-Length=3;END length 3 ka;B abc;MSG;"},
    {"no reason", RSP, "HTTP/1.1 204\r\n\r\n", "ST 204  11;END none 0 ka;MSG;"},
    {"empty reason", RSP, "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n",
     "ST 200  11;H Content-Length=0;END length 0 ka;MSG;"},
    {"until close", RSP, "HTTP/1.0 200 OK\r\n\r\nsome body",
     "ST 200 OK 10;END close 0 close;B some body;MSG;", .eof = true},
    {"chunked upper hex, trailers", RSP,
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\nA: 1\r\nB: "
     "2\r\n\r\n",
     "ST 200 OK 11;H Transfer-Encoding=Chunked;END chunked 0 ka;B 0123456789;T A=1;T B=2;MSG;"},
    {"chunked bare LF", RSP, "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n",
     "ST 200 OK 11;H Transfer-Encoding=chunked;END chunked 0 ka;B abc;MSG;"},
    {"HEAD ignores length", RSP,
     "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
     "ST 200 OK 11;H Content-Length=10;END none 0 ka;MSG;ST 200 OK 11;END close 0 close;",
     .head = true},
    {"304 and 100 have no body", RSP,
     "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
     "ST 100 Continue 11;END none 0 ka;MSG;ST 304 Not Modified 11;H Content-Length=9;END none 0 "
     "ka;MSG;"},
    {"interim keeps HEAD", RSP,
     "HTTP/1.1 103 Early\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n",
     "ST 103 Early 11;END none 0 ka;MSG;ST 200 OK 11;H Content-Length=4;END none 0 ka;MSG;",
     .head = true},
    {"101 stops", RSP, "HTTP/1.1 101 Switching\r\nUpgrade: x\r\n\r\nbinary",
     "ST 101 Switching 11;H Upgrade=x;END none 0 close;MSG;ERR ESTATE;"},
    {"1.1 close", RSP,
     "HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n",
     "ST 200 OK 11;H Connection=keep-alive, close;H Content-Length=0;END length 0 close;MSG;"},
    {"clean EOF between messages", RSP, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
     "ST 200 OK 11;H Content-Length=1;END length 1 ka;B x;MSG;", .eof = true},
    /* ---- malformed ---- */
    {"obs-fold", RSP, "HTTP/1.1 200 OK\r\nX: a\r\n  b\r\n\r\n",
     "ST 200 OK 11;H X=a;ERR EHTTP_FOLD;"},
    {"fold as first header", REQ, "GET / HTTP/1.1\r\n\tX: a\r\n\r\n",
     "REQ GET / 11;ERR EHTTP_FOLD;"},
    {"space before colon", REQ, "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
     "REQ GET / 11;ERR EHTTP_SYNTAX;"},
    {"no colon", REQ, "GET / HTTP/1.1\r\nHost\r\n\r\n", "REQ GET / 11;ERR EHTTP_SYNTAX;"},
    {"empty name", REQ, "GET / HTTP/1.1\r\n: a\r\n\r\n", "REQ GET / 11;ERR EHTTP_SYNTAX;"},
    {"bare CR in value", REQ, "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
     "REQ GET / 11;ERR EHTTP_SYNTAX;"},
    {"control byte in value", REQ, "GET / HTTP/1.1\r\nX: a\x01\r\n\r\n",
     "REQ GET / 11;ERR EHTTP_SYNTAX;"},
    {"two spaces in request line", REQ, "GET  / HTTP/1.1\r\n\r\n", "ERR EHTTP_SYNTAX;"},
    {"lower-case version", REQ, "GET / http/1.1\r\n\r\n", "ERR EHTTP_SYNTAX;"},
    {"HTTP/2.0 request", REQ, "GET / HTTP/2.0\r\n\r\n", "ERR EHTTP_VERSION;"},
    {"HTTP/1.2 response", RSP, "HTTP/1.2 200 OK\r\n\r\n", "ERR EHTTP_VERSION;"},
    {"HTTP/0.9 response", RSP, "HTTP/0.9 200\r\n\r\n", "ERR EHTTP_VERSION;"},
    {"status two digits", RSP, "HTTP/1.1 20 OK\r\n\r\n", "ERR EHTTP_SYNTAX;"},
    {"status 600", RSP, "HTTP/1.1 600 Odd\r\n\r\n", "ERR EHTTP_SYNTAX;"},
    {"status letters", RSP, "HTTP/1.1 2x0 OK\r\n\r\n", "ERR EHTTP_SYNTAX;"},
    {"not HTTP", RSP, "SSH-2.0-OpenSSH\r\n", "ERR EHTTP_SYNTAX;"},
    {"target with DEL", REQ, "GET /\x7f HTTP/1.1\r\n\r\n", "ERR EHTTP_SYNTAX;"},
    {"head cut short", RSP, "HTTP/1.1 200 OK\r\nServer: x\r\n",
     "ST 200 OK 11;H Server=x;ERR EINCOMPLETE;", .eof = true},
    {"body cut short", RSP, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
     "ST 200 OK 11;H Content-Length=5;END length 5 ka;B ab;ERR EINCOMPLETE;", .eof = true},
    {"chunked cut short", RSP, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
     "ST 200 OK 11;H Transfer-Encoding=chunked;END chunked 0 ka;B ab;ERR EINCOMPLETE;",
     .eof = true},
    /* ---- Content-Length ---- */
    {"duplicate CL", REQ, "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
     "REQ POST / 11;H Content-Length=1;ERR EHTTP_CONTENT_LENGTH;"},
    {"conflicting CL", RSP, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\n",
     "ST 200 OK 11;H Content-Length=1;ERR EHTTP_CONTENT_LENGTH;"},
    {"CL list", REQ, "POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n",
     "REQ POST / 11;ERR EHTTP_CONTENT_LENGTH;"},
    {"CL signed", REQ, "POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
     "REQ POST / 11;ERR EHTTP_CONTENT_LENGTH;"},
    {"CL negative", RSP, "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
     "ST 200 OK 11;ERR EHTTP_CONTENT_LENGTH;"},
    {"CL empty", REQ, "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
     "REQ POST / 11;ERR EHTTP_CONTENT_LENGTH;"},
    {"CL hex", REQ, "POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
     "REQ POST / 11;ERR EHTTP_CONTENT_LENGTH;"},
    {"CL overflow", RSP, "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n",
     "ST 200 OK 11;ERR EHTTP_CONTENT_LENGTH;"},
    {"CL largest", RSP, "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551606\r\n\r\n",
     "ST 200 OK 11;H Content-Length=18446744073709551606;END length 18446744073709551606 ka;"},
    /* ---- Transfer-Encoding and smuggling shapes ---- */
    {"CL and TE", REQ,
     "POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     "REQ POST / 11;H Content-Length=4;H Transfer-Encoding=chunked;ERR EHTTP_AMBIGUOUS;"},
    {"TE and CL", RSP, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
     "ST 200 OK 11;H Transfer-Encoding=chunked;H Content-Length=4;ERR EHTTP_AMBIGUOUS;"},
    {"TE gzip", RSP, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
     "ST 200 OK 11;H Transfer-Encoding=gzip, chunked;ERR EHTTP_TRANSFER_ENCODING;"},
    {"TE gzip on a HEAD response", RSP, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
     "ST 200 OK 11;H Transfer-Encoding=gzip;END none 0 ka;MSG;", .head = true},
    {"TE gzip on a 304", RSP, "HTTP/1.1 304 NM\r\nTransfer-Encoding: gzip\r\n\r\n",
     "ST 304 NM 11;H Transfer-Encoding=gzip;END none 0 ka;MSG;"},
    {"TE chunked twice", REQ,
     "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
     "REQ POST / 11;H Transfer-Encoding=chunked;H Transfer-Encoding=chunked;ERR "
     "EHTTP_TRANSFER_ENCODING;"},
    {"TE xchunked", REQ, "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
     "REQ POST / 11;H Transfer-Encoding=xchunked;ERR EHTTP_TRANSFER_ENCODING;"},
    {"TE empty", REQ, "POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n",
     "REQ POST / 11;H Transfer-Encoding=;ERR EHTTP_TRANSFER_ENCODING;"},
    {"TE in HTTP/1.0", REQ, "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
     "REQ POST / 10;H Transfer-Encoding=chunked;ERR EHTTP_TRANSFER_ENCODING;"},
    {"TE with space before colon", REQ, "POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
     "REQ POST / 11;ERR EHTTP_SYNTAX;"},
    /* ---- chunk framing ---- */
    {"chunk size not hex", RSP, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
     "ST 200 OK 11;H Transfer-Encoding=chunked;END chunked 0 ka;ERR EHTTP_CHUNK;"},
    {"chunk size empty", RSP, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
     "ST 200 OK 11;H Transfer-Encoding=chunked;END chunked 0 ka;ERR EHTTP_CHUNK;"},
    {"chunk size signed", RSP, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
     "ST 200 OK 11;H Transfer-Encoding=chunked;END chunked 0 ka;ERR EHTTP_CHUNK;"},
    {"chunk size 0x", RSP, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n",
     "ST 200 OK 11;H Transfer-Encoding=chunked;END chunked 0 ka;ERR EHTTP_CHUNK;"},
    {"chunk size overflow", RSP,
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
     "ST 200 OK 11;H Transfer-Encoding=chunked;END chunked 0 ka;ERR EHTTP_CHUNK;"},
    {"chunk size 15 digits", RSP,
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n000000000000001\r\nx\r\n0\r\n\r\n",
     "ST 200 OK 11;H Transfer-Encoding=chunked;END chunked 0 ka;B x;MSG;"},
    {"chunk size trailing space", RSP,
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1 \r\n",
     "ST 200 OK 11;H Transfer-Encoding=chunked;END chunked 0 ka;ERR EHTTP_CHUNK;"},
    {"chunk longer than size", RSP,
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
     "ST 200 OK 11;H Transfer-Encoding=chunked;END chunked 0 ka;B ab;ERR EHTTP_CHUNK;"},
    {"chunk bare CR", RSP, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\rx\r\n",
     "ST 200 OK 11;H Transfer-Encoding=chunked;END chunked 0 ka;ERR EHTTP_CHUNK;"},
    {"trailer folded", RSP,
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: 1\r\n 2\r\n\r\n",
     "ST 200 OK 11;H Transfer-Encoding=chunked;END chunked 0 ka;T A=1;ERR EHTTP_FOLD;"},
    /* ---- limits ---- */
    {"line at the limit", REQ, "GET /12 HTTP/1.1\r\nX: 1234567890123\r\n\r\n",
     "REQ GET /12 11;H X=1234567890123;END none 0 ka;MSG;", .limits = {.max_line = 16}},
    {"line over the limit", REQ, "GET /12 HTTP/1.1\r\nX: 12345678901234\r\n\r\n",
     "REQ GET /12 11;ERR EHTTP_LINE_TOO_LONG;", .limits = {.max_line = 16}},
    {"endless line", RSP, "HTTP/1.1 200 OK\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     "ST 200 OK 11;ERR EHTTP_LINE_TOO_LONG;", .limits = {.max_line = 20}},
    {"endless LF-less line at the limit", RSP, "HTTP/1.1 200 OK\r\nX: 0123456789abcdefg\r",
     "ST 200 OK 11;ERR EINCOMPLETE;", .limits = {.max_line = 20}, .eof = true},
    {"chunk line over the limit", RSP,
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
     "ST 200 OK 11;H Transfer-Encoding=chunked;END chunked 0 ka;ERR EHTTP_LINE_TOO_LONG;",
     .limits = {.max_line = 30}},
    {"headers at the limit", REQ, "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n",
     "REQ GET / 11;H A=1;H B=2;END none 0 ka;MSG;", .limits = {.max_headers = 2}},
    {"too many headers", REQ, "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
     "REQ GET / 11;H A=1;H B=2;ERR EHTTP_TOO_MANY_HEADERS;", .limits = {.max_headers = 2}},
    {"too many trailers", RSP,
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: 1\r\nB: 2\r\n\r\n",
     "ST 200 OK 11;H Transfer-Encoding=chunked;END chunked 0 ka;T A=1;ERR EHTTP_TOO_MANY_HEADERS;",
     .limits = {.max_headers = 1}},
    {"head at the limit", RSP, "HTTP/1.1 200 OK\r\nA: 1\r\n\r\n",
     "ST 200 OK 11;H A=1;END close 0 close;", .limits = {.max_head = 25}},
    {"head over the limit", RSP, "HTTP/1.1 200 OK\r\nA: 1\r\n\r\n",
     "ST 200 OK 11;H A=1;ERR EHTTP_HEAD_TOO_LARGE;", .limits = {.max_head = 24}},
    /* Which limit a long line breaks first depends on where, never on how it was cut. */
    {"head limit before line limit", REQ,
     "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\naaaaaaaaaaaaaaaaaaaa", "ERR EHTTP_HEAD_TOO_LARGE;",
     .limits = {.max_line = 10, .max_head = 30}},
    {"line limit before head limit", REQ,
     "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\naaaaaaaaaaaaaaaaaaaa", "ERR EHTTP_LINE_TOO_LONG;",
     .limits = {.max_line = 10, .max_head = 40}},
    {"endless blank lines", REQ, "\r\n\r\n\r\n\r\n\r\n\r\n", "ERR EHTTP_HEAD_TOO_LARGE;",
     .limits = {.max_head = 10}},
};

/* The whole input, then every split into two pieces, then byte by byte. */
static void test_table(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const tcase *c = &cases[i];
        transcript t;
        run(c, NULL, 0, &t);
        if (strcmp(t.text, c->want) != 0)
            fail_msg("%s:\n  got  %s\n  want %s", c->name, t.text, c->want);
        size_t len = strlen(c->in);
        for (size_t cut = 0; cut <= len; cut++) {
            run(c, &cut, 1, &t);
            if (strcmp(t.text, c->want) != 0)
                fail_msg("%s split at %zu:\n  got  %s\n  want %s", c->name, cut, t.text, c->want);
        }
        size_t *cuts = malloc(len * sizeof *cuts + 1);
        assert_non_null(cuts);
        for (size_t k = 0; k < len; k++)
            cuts[k] = k;
        run(c, cuts, len, &t);
        free(cuts);
        if (strcmp(t.text, c->want) != 0)
            fail_msg("%s byte by byte:\n  got  %s\n  want %s", c->name, t.text, c->want);
    }
}

/* A failed parser stays failed; a whole line is lent from the input, a split one from
 * the parser's buffer; bad arguments are refused. */
static void test_api(void **state) {
    (void)state;
    tide_http_parser_t *p;
    assert_int_equal(tide_http_parser_new((tide_http_kind_t)7, NULL, &p), TIDE_EINVAL);
    assert_int_equal(tide_http_parser_new(REQ, NULL, NULL), TIDE_EINVAL);
    assert_int_equal(tide_http_parser_new(REQ, NULL, &p), 0);
    size_t used;
    tide_http_event_t ev;
    assert_int_equal(tide_http_parser_next(p, NULL, 1, &used, &ev), TIDE_EINVAL);
    assert_true(tide_http_parser_is_idle(p));
    const char *in = "GET / HTTP/1.1\r\nHo";
    assert_int_equal(tide_http_parser_next(p, in, strlen(in), &used, &ev), 1);
    assert_ptr_equal(ev.line, in); /* lent from the input */
    assert_int_equal(ev.line_len, 14);
    assert_int_equal(tide_http_parser_next(p, in + used, strlen(in) - used, &used, &ev), 0);
    assert_false(tide_http_parser_is_idle(p));
    assert_int_equal(tide_http_parser_next(p, "st: x\r\n", 7, &used, &ev), 1);
    assert_int_equal(ev.type, TIDE_HTTP_HEADER);
    assert_true(tide_http_name_is(ev.name, ev.name_len, "HOST"));
    assert_false(tide_http_name_is(ev.name, ev.name_len, "hos"));
    assert_int_equal(tide_http_parser_next(p, "\x01\r\n", 3, &used, &ev), TIDE_EHTTP_SYNTAX);
    assert_int_equal(tide_http_parser_next(p, "\r\n", 2, &used, &ev), TIDE_EHTTP_SYNTAX);
    assert_int_equal(used, 0);
    assert_int_equal(tide_http_parser_finish(p, &ev), TIDE_EHTTP_SYNTAX);
    tide_http_parser_free(p);
    tide_http_parser_free(NULL);
    assert_string_equal(tide_err_name(TIDE_EHTTP_AMBIGUOUS), "EHTTP_AMBIGUOUS");
}

/* Nothing is copied for a large body: one event lends the whole piece given. */
static void test_body_is_lent(void **state) {
    (void)state;
    tide_http_parser_t *p;
    assert_int_equal(tide_http_parser_new(RSP, NULL, &p), 0);
    static char in[70000];
    int head = snprintf(in, sizeof in, "HTTP/1.1 200 OK\r\nContent-Length: 65536\r\n\r\n");
    memset(in + head, 'x', 65536);
    size_t len = (size_t)head + 65536, pos = 0, used;
    tide_http_event_t ev;
    int events = 0;
    while (tide_http_parser_next(p, in + pos, len - pos, &used, &ev) == 1) {
        pos += used;
        events++;
        if (ev.type == TIDE_HTTP_BODY) {
            assert_ptr_equal(ev.data, in + head);
            assert_int_equal(ev.len, 65536);
        }
        if (ev.type == TIDE_HTTP_MESSAGE_END)
            break;
    }
    assert_int_equal(events, 5);
    assert_int_equal(pos, len);
    assert_true(tide_http_parser_is_idle(p));
    tide_http_parser_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_api),
        cmocka_unit_test(test_body_is_lent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
