/* libFuzzer target: the HTTP/1.x parser (include/tide/http.h).
 *
 * The first input byte picks the parser (request or response, HEAD or not, small or
 * default limits), the second the size of the pieces; the rest is the message. Each
 * input is parsed twice, whole and in pieces, and the two runs must agree: the same
 * events with the same fields, the same body bytes (however they were cut), the same
 * final code. Every call must take no more bytes than given, and a 0 return must have
 * taken them all. Any mismatch abort()s.
 *
 * Single-threaded; no loop, since the parser does no I/O. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "tide.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    return 0;
}

/* A running FNV-1a digest of everything the parser reported. */
static void mix(uint64_t *h, const void *data, size_t len) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        *h = (*h ^ p[i]) * 0x100000001b3ULL;
}

static void mix_event(uint64_t *h, const tide_http_event_t *ev) {
    if (ev->type == TIDE_HTTP_BODY) { /* only the bytes: pieces differ between runs */
        mix(h, ev->data, ev->len);
        return;
    }
    int fields[] = {(int)ev->type, ev->version, ev->status, (int)ev->body, ev->keep_alive};
    mix(h, fields, sizeof fields);
    mix(h, &ev->content_length, sizeof ev->content_length);
    mix(h, ev->name, ev->name_len);
    mix(h, "|", 1);
    mix(h, ev->value, ev->value_len);
    mix(h, "|", 1);
    mix(h, ev->line, ev->line_len);
}

static uint64_t run(unsigned mode, const uint8_t *data, size_t len, size_t step, int *final) {
    tide_http_limits_t small = {.max_line = 64, .max_headers = 4, .max_head = 256};
    tide_http_parser_t *p;
    REQUIRE(tide_http_parser_new(mode & 1 ? TIDE_HTTP_RESPONSE : TIDE_HTTP_REQUEST,
                                 mode & 4 ? &small : NULL, &p) == 0);
    if (mode & 2)
        tide_http_parser_expect_head(p);
    uint64_t h = 0xcbf29ce484222325ULL;
    size_t pos = 0;
    int rc = 0;
    while (rc >= 0 && pos < len) {
        size_t end = pos + step < len ? pos + step : len;
        while (rc >= 0) {
            size_t used;
            tide_http_event_t ev;
            rc = tide_http_parser_next(p, data + pos, end - pos, &used, &ev);
            REQUIRE(used <= end - pos);
            pos += used;
            if (rc == 0) {
                REQUIRE(pos == end);
                break;
            }
            if (rc == 1) {
                REQUIRE(ev.type != TIDE_HTTP_BODY || ev.len > 0);
                mix_event(&h, &ev);
            }
        }
    }
    if (rc >= 0) {
        tide_http_event_t ev;
        rc = tide_http_parser_finish(p, &ev);
        if (rc == 1)
            mix_event(&h, &ev);
    }
    *final = rc;
    tide_http_parser_free(p);
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2)
        return 0;
    unsigned mode = data[0];
    size_t step = (size_t)data[1] % 16 + 1;
    int whole_rc, piece_rc;
    uint64_t whole = run(mode, data + 2, size - 2, size, &whole_rc);
    uint64_t pieces = run(mode, data + 2, size - 2, step, &piece_rc);
    REQUIRE(whole == pieces);
    REQUIRE(whole_rc == piece_rc);
    return 0;
}
