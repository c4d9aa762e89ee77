/* libFuzzer target: the SMTP/FTP reply parser and its neighbours (protocols/reply.c).
 *
 * Byte 0 picks the dialect (bit 0) and the piece size for feeding (the rest); byte 1
 * the line limit. The remaining bytes are fed twice, whole and in pieces: both runs
 * must report the same events with the same lines, codes and errors (a model check
 * of the split-anywhere promise), take no byte past what they report, and keep every
 * line within the limit. Each line the parser reports is also handed to the PASV,
 * EPSV and EHLO parsers and to the command formatter, which must not crash and must
 * refuse CR, LF and NUL. The DATA encoder runs over the input in the same pieces and
 * must never write more than it promised or leave a bare CR or LF. Pure functions: no
 * loop, nothing kept between inputs. */
#include <string.h>

#include "fuzz.h"

#define MAX_EVENTS 4096

typedef struct event {
    int rc;
    int code;
    size_t len;
    uint64_t hash;
} event;

static uint64_t hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* The neighbours, on one reported line. */
static void poke(const char *line, size_t len) {
    uint8_t addr[4];
    uint16_t port;
    if (tide_reply_parse_pasv(line, addr, &port) == 0)
        REQUIRE(port != 0);
    if (tide_reply_parse_epsv(line, &port) == 0)
        REQUIRE(port != 0);
    tide_ehlo_t e = {0};
    tide_ehlo_parse_line(&e, line);
    char buf[64];
    int n = tide_command_format(buf, sizeof buf, "X", line, len);
    bool safe = tide_command_arg_is_safe(line, len);
    REQUIRE(n != TIDE_ECOMMAND_CHARS || !safe);
    if (n > 0)
        REQUIRE(safe && (size_t)n == len + 4 && memcmp(buf + n - 2, "\r\n", 2) == 0);
}

static size_t run(tide_reply_dialect_t d, size_t line_max, const uint8_t *in, size_t len,
                  size_t piece, event *ev) {
    tide_reply_parser_t p;
    REQUIRE(tide_reply_parser_init(&p, d, line_max, 50) == 0);
    size_t n = 0, at = 0;
    while (at < len && n < MAX_EVENTS) {
        size_t chunk = len - at < piece ? len - at : piece, used;
        int rc = tide_reply_parser_feed(&p, in + at, chunk, &used);
        REQUIRE(used <= chunk);
        REQUIRE(p.line_len < p.line_max && p.line[p.line_len] == '\0');
        at += used;
        if (rc == TIDE_REPLY_MORE) {
            REQUIRE(used == chunk);
            continue;
        }
        ev[n++] = (event){rc, p.code, p.line_len, hash(p.line, p.line_len)};
        if (rc < 0)
            break;
        REQUIRE(p.code >= (d == TIDE_REPLY_SMTP ? 200 : 100) && p.code <= 599);
        REQUIRE(p.nlines >= 1 && p.nlines <= 50);
        poke(p.line, p.line_len);
    }
    return n;
}

static void encode(const uint8_t *in, size_t len, size_t piece) {
    static uint8_t out[2 * 65536 + 8];
    if (len > 65536)
        return;
    tide_data_encoder_t e = {0};
    size_t o = 0;
    for (size_t at = 0; at < len; at += piece) {
        size_t n = len - at < piece ? len - at : piece;
        o += tide_data_encode(&e, in + at, n, out + o);
        REQUIRE(o <= 2 * (at + n));
    }
    o += tide_data_encode_end(&e, out + o);
    REQUIRE(o == e.octets && o >= 3 && memcmp(out + o - 3, ".\r\n", 3) == 0);
    /* Every CR is followed by LF, every LF preceded by CR; ".\r\n" only at the end
     * and only at a line start. */
    for (size_t i = 0; i < o; i++) {
        if (out[i] == '\r')
            REQUIRE(i + 1 < o && out[i + 1] == '\n');
        if (out[i] == '\n')
            REQUIRE(i > 0 && out[i - 1] == '\r');
        if (i + 5 <= o && memcmp(out + i, "\r\n.\r\n", 5) == 0)
            REQUIRE(i + 5 == o);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static event whole[MAX_EVENTS], pieces[MAX_EVENTS];
    if (size < 2)
        return 0;
    tide_reply_dialect_t d = (data[0] & 1) ? TIDE_REPLY_FTP : TIDE_REPLY_SMTP;
    size_t piece = (size_t)(data[0] >> 1) + 1;
    size_t line_max = 5 + (size_t)data[1] * 4;
    data += 2;
    size -= 2;
    size_t a = run(d, line_max, data, size, size > 0 ? size : 1, whole);
    size_t b = run(d, line_max, data, size, piece, pieces);
    REQUIRE(a == b);
    for (size_t i = 0; i < a; i++)
        REQUIRE(whole[i].rc == pieces[i].rc && whole[i].code == pieces[i].code &&
                whole[i].len == pieces[i].len && whole[i].hash == pieces[i].hash);
    encode(data, size, piece);
    return 0;
}
