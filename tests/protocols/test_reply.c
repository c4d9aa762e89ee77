/* The SMTP/FTP reply parser and its neighbours (tide/reply.h), table-driven: valid
 * replies, malformed ones, the limits, and injection attempts. Every input is fed
 * whole, split in two at every byte, and one byte at a time; the parser must report
 * the same lines, replies and errors each way. Pure functions: no loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/support.h"

/* What the parser reported for input, as text: "L<line>" for a line of a multi-line
 * reply, "D<code> <first line's text>" for a complete reply, "E<error name>" for the
 * error it stopped on, one per line. pieces: each feed call gets at most that many
 * bytes at a time, starting with a first piece of `first` bytes. */
static void run(tide_reply_dialect_t dialect, size_t line_max, size_t lines_max, const char *in,
                size_t len, size_t first, size_t piece, char *out, size_t cap) {
    tide_reply_parser_t p;
    assert_int_equal(tide_reply_parser_init(&p, dialect, line_max, lines_max), 0);
    assert_true(tide_reply_parser_idle(&p));
    size_t o = 0, at = 0;
    out[0] = '\0';
    while (at < len) {
        size_t n = at == 0 ? first : piece;
        if (n > len - at)
            n = len - at;
        if (n == 0)
            n = 1;
        size_t used;
        int rc = tide_reply_parser_feed(&p, in + at, n, &used);
        assert_true(used <= n);
        at += used;
        if (rc == TIDE_REPLY_MORE) {
            assert_int_equal(used, n);
            continue;
        }
        if (rc < 0) {
            o += (size_t)snprintf(out + o, cap - o, "E%s\n", tide_err_name(rc));
            /* Failed stays failed. */
            assert_int_equal(tide_reply_parser_feed(&p, "220 x\r\n", 7, &used), rc);
            assert_int_equal(used, 0);
            return;
        }
        assert_string_equal(p.line, p.line); /* NUL-terminated */
        if (rc == TIDE_REPLY_LINE)
            o += (size_t)snprintf(out + o, cap - o, "L%s\n", p.line);
        else
            o += (size_t)snprintf(out + o, cap - o, "D%d %s\n", p.code, p.text);
        assert_true(o < cap);
    }
    if (!tide_reply_parser_idle(&p))
        snprintf(out + o, cap - o, "partial\n");
}

/* Feeds every way and checks each against want. */
static void check(tide_reply_dialect_t dialect, size_t line_max, size_t lines_max, const char *in,
                  size_t len, const char *want) {
    static char got[1 << 16];
    run(dialect, line_max, lines_max, in, len, len, len, got, sizeof got);
    if (strcmp(got, want) != 0)
        fail_msg("input \"%.60s\": got\n%s\nwant\n%s", in, got, want);
    for (size_t split = 1; split < len; split++) {
        run(dialect, line_max, lines_max, in, len, split, len, got, sizeof got);
        if (strcmp(got, want) != 0)
            fail_msg("input \"%.60s\" split at %zu: got\n%s\nwant\n%s", in, split, got, want);
    }
    run(dialect, line_max, lines_max, in, len, 1, 1, got, sizeof got);
    if (strcmp(got, want) != 0)
        fail_msg("input \"%.60s\" byte by byte: got\n%s\nwant\n%s", in, got, want);
}

typedef struct reply_case {
    tide_reply_dialect_t dialect;
    const char *in;
    const char *want;
} reply_case;

static const reply_case cases[] = {
    /* Valid SMTP. */
    {TIDE_REPLY_SMTP, "220 ready\r\n", "D220 ready\n"},
    {TIDE_REPLY_SMTP, "220\r\n", "D220 \n"},
    {TIDE_REPLY_SMTP, "220 bare LF\n", "D220 bare LF\n"},
    {TIDE_REPLY_SMTP, "250-mx\r\n250-SIZE 10\r\n250 STARTTLS\r\n",
     "L250-mx\nL250-SIZE 10\nD250 mx\n"},
    {TIDE_REPLY_SMTP, "250-mx\r\n250\r\n", "L250-mx\nD250 mx\n"},
    {TIDE_REPLY_SMTP, "220 a\r\n250 b\r\n", "D220 a\nD250 b\n"},
    {TIDE_REPLY_SMTP, "554 go away\r\n", "D554 go away\n"},
    {TIDE_REPLY_SMTP, "220 x", "partial\n"},
    /* Malformed SMTP. */
    {TIDE_REPLY_SMTP, "22x fake\r\n", "EEREPLY_SYNTAX\n"},
    {TIDE_REPLY_SMTP, "hello\r\n", "EEREPLY_SYNTAX\n"},
    {TIDE_REPLY_SMTP, "220+fake\r\n", "EEREPLY_SYNTAX\n"},
    {TIDE_REPLY_SMTP, "120 not in SMTP\r\n", "EEREPLY_SYNTAX\n"},
    {TIDE_REPLY_SMTP, "620 no such class\r\n", "EEREPLY_SYNTAX\n"},
    {TIDE_REPLY_SMTP, "\r\n", "EEREPLY_SYNTAX\n"},
    {TIDE_REPLY_SMTP, "20\r\n", "EEREPLY_SYNTAX\n"},
    {TIDE_REPLY_SMTP, "250-a\r\n251 b\r\n", "L250-a\nEEREPLY_CODE\n"},
    {TIDE_REPLY_SMTP, "250-a\r\nfree text\r\n", "L250-a\nEEREPLY_SYNTAX\n"},
    /* Injection: what a server says after a reply is the next reply, never part of
     * this one; a CR inside a line does not end it. */
    {TIDE_REPLY_SMTP, "220 go ahead\r\n250 injected\r\n", "D220 go ahead\nD250 injected\n"},
    {TIDE_REPLY_SMTP, "220 a\rb\r\n", "D220 a\rb\n"},
    /* FTP: 1xx exists, middle lines are free, only "NNN " with the same code ends. */
    {TIDE_REPLY_FTP, "120 wait\r\n", "D120 wait\n"},
    {TIDE_REPLY_FTP, "150 here it comes\r\n226 done\r\n", "D150 here it comes\nD226 done\n"},
    {TIDE_REPLY_FTP, "211-Features:\r\n MDTM\r\n 230 look\r\n211-more\r\n500 other\r\n211 End\r\n",
     "L211-Features:\nL MDTM\nL 230 look\nL211-more\nL500 other\nD211 Features:\n"},
    {TIDE_REPLY_FTP, "230-\r\n\r\n230 \r\n", "L230-\nL\nD230 \n"},
    {TIDE_REPLY_FTP, "227 Entering Passive Mode (127,0,0,1,4,1).\r\n",
     "D227 Entering Passive Mode (127,0,0,1,4,1).\n"},
    {TIDE_REPLY_FTP, "hello\r\n", "EEREPLY_SYNTAX\n"},
    {TIDE_REPLY_FTP, "023 low\r\n", "EEREPLY_SYNTAX\n"},
    {TIDE_REPLY_FTP, "230x\r\n", "EEREPLY_SYNTAX\n"},
};

static void test_table(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check(cases[i].dialect, 0, 0, cases[i].in, strlen(cases[i].in), cases[i].want);
}

/* A reply line of exactly n octets with CRLF: "220 xxx...\r\n". */
static char *line_of(size_t n) {
    char *s = malloc(n + 1);
    assert_non_null(s);
    memcpy(s, "220 ", 4);
    memset(s + 4, 'x', n - 6);
    memcpy(s + n - 2, "\r\n", 3);
    return s;
}

static void test_line_limit(void **state) {
    (void)state;
    char want[TIDE_REPLY_LINE_CAP + 16];
    /* RFC 5321: 512 octets with CRLF pass, 513 do not (also when never ended). */
    char *ok = line_of(512), *over = line_of(513);
    snprintf(want, sizeof want, "D220 %.*s\n", 506, ok + 4);
    check(TIDE_REPLY_SMTP, 0, 0, ok, 512, want);
    check(TIDE_REPLY_SMTP, 0, 0, over, 513, "EEREPLY_LINE\n");
    check(TIDE_REPLY_SMTP, 0, 0, over, 512, "EEREPLY_LINE\n"); /* no LF in 512 octets */
    check(TIDE_REPLY_SMTP, 0, 0, over, 511, "partial\n");
    /* An LF alone counts as the line end: 511 octets and LF pass. */
    ok[510] = '\n';
    snprintf(want, sizeof want, "D220 %.*s\n", 506, ok + 4);
    check(TIDE_REPLY_SMTP, 0, 0, ok, 511, want);
    free(ok);
    free(over);
    /* The smallest limit and the largest. */
    check(TIDE_REPLY_FTP, 5, 0, "220\r\n", 5, "D220 \n");
    check(TIDE_REPLY_FTP, 5, 0, "220 \r\n", 6, "EEREPLY_LINE\n");
}

static void test_line_limit_cap(void **state) {
    (void)state;
    char *big = line_of(TIDE_REPLY_LINE_CAP);
    tide_reply_parser_t p;
    size_t used;
    assert_int_equal(tide_reply_parser_init(&p, TIDE_REPLY_FTP, TIDE_REPLY_LINE_CAP, 0), 0);
    assert_int_equal(tide_reply_parser_feed(&p, big, TIDE_REPLY_LINE_CAP, &used), TIDE_REPLY_DONE);
    assert_int_equal(used, TIDE_REPLY_LINE_CAP);
    assert_int_equal(p.line_len, TIDE_REPLY_LINE_CAP - 2);
    free(big);
    /* Limits outside what the parser can hold are refused. */
    assert_int_equal(tide_reply_parser_init(&p, TIDE_REPLY_FTP, TIDE_REPLY_LINE_CAP + 1, 0),
                     TIDE_EINVAL);
    assert_int_equal(tide_reply_parser_init(&p, TIDE_REPLY_FTP, 4, 0), TIDE_EINVAL);
    assert_int_equal(tide_reply_parser_init(&p, (tide_reply_dialect_t)7, 0, 0), TIDE_EINVAL);
    assert_int_equal(tide_reply_parser_feed(&p, NULL, 1, &used), TIDE_EINVAL);
    /* Nothing fed is nothing done: the last reply stays readable. */
    assert_int_equal(tide_reply_parser_init(&p, TIDE_REPLY_SMTP, 0, 0), 0);
    assert_int_equal(tide_reply_parser_feed(&p, "250 ok\r\n", 8, &used), TIDE_REPLY_DONE);
    assert_int_equal(tide_reply_parser_feed(&p, NULL, 0, &used), TIDE_REPLY_MORE);
    assert_int_equal(used, 0);
    assert_int_equal(p.code, 250);
    assert_string_equal(p.text, "ok");
    assert_true(tide_reply_parser_idle(&p));
}

/* n lines of a reply: n - 1 continuation lines and the last. */
static size_t reply_of(tide_reply_dialect_t dialect, size_t n, char *out, char *want) {
    size_t o = 0, w = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        const char *line = dialect == TIDE_REPLY_SMTP || i == 0 ? "250-x" : " free";
        o += (size_t)sprintf(out + o, "%s\r\n", line);
        w += (size_t)sprintf(want + w, "L%s\n", line);
    }
    o += (size_t)sprintf(out + o, "250 end\r\n");
    sprintf(want + w, "D250 %s\n", n > 1 ? "x" : "end");
    return o;
}

static void test_lines_limit(void **state) {
    (void)state;
    static char in[1200 * 8], want[1200 * 8];
    tide_reply_dialect_t dialects[] = {TIDE_REPLY_SMTP, TIDE_REPLY_FTP};
    size_t limits[] = {TIDE_REPLY_SMTP_LINES_MAX, 20};
    for (int d = 0; d < 2; d++) {
        size_t len = reply_of(dialects[d], limits[d], in, want);
        check(dialects[d], 0, limits[d], in, len, want);
        len = reply_of(dialects[d], limits[d] + 1, in, want);
        /* The last good line is reported, then the error at the first line too many. */
        char *cut = want;
        for (size_t i = 0; i < limits[d]; i++)
            cut = strchr(cut, '\n') + 1;
        strcpy(cut, "EEREPLY_LINES\n");
        check(dialects[d], 0, limits[d], in, len, want);
    }
}

static void test_command_format(void **state) {
    (void)state;
    char buf[32];
    assert_int_equal(tide_command_format(buf, sizeof buf, "QUIT", NULL, 0), 6);
    assert_string_equal(buf, "QUIT\r\n");
    assert_int_equal(tide_command_format(buf, sizeof buf, "RCPT", "TO:<a@b>", 8), 15);
    assert_string_equal(buf, "RCPT TO:<a@b>\r\n");
    assert_int_equal(tide_command_format(buf, sizeof buf, "NOOP", "", 0), 7);
    assert_string_equal(buf, "NOOP \r\n");
    /* Injection: CR, LF or NUL anywhere in the argument or the verb. */
    const char *bad[] = {"a\r\nDELE x", "a\nb", "a\r", "\n", "x\r\nQUIT"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        strcpy(buf, "untouched");
        assert_int_equal(tide_command_format(buf, sizeof buf, "RETR", bad[i], strlen(bad[i])),
                         TIDE_ECOMMAND_CHARS);
        assert_int_equal(tide_command_format(buf, sizeof buf, bad[i], NULL, 0),
                         TIDE_ECOMMAND_CHARS);
        assert_false(tide_command_arg_is_safe(bad[i], strlen(bad[i])));
        assert_string_equal(buf, "untouched");
    }
    assert_int_equal(tide_command_format(buf, sizeof buf, "RETR", "a\0b", 3), TIDE_ECOMMAND_CHARS);
    assert_true(tide_command_arg_is_safe("a b\t<c>", 7));
    /* Exactly fits (with the NUL), one octet short, and bad calls. */
    assert_int_equal(tide_command_format(buf, 10, "RETR", "ab", 2), 9);
    assert_int_equal(tide_command_format(buf, 9, "RETR", "ab", 2), TIDE_EMSGSIZE);
    assert_int_equal(tide_command_format(buf, sizeof buf, "", NULL, 0), TIDE_EINVAL);
    assert_int_equal(tide_command_format(buf, sizeof buf, "X", NULL, 1), TIDE_EINVAL);
}

typedef struct pasv_case {
    const char *text;
    int rc;
    uint16_t port;
} pasv_case;

static void test_pasv(void **state) {
    (void)state;
    static const pasv_case pasv[] = {
        {"Entering Passive Mode (127,0,0,1,4,1).", 0, 1025},
        {"Entering Passive Mode 192,0,2,1,255,255", 0, 65535},
        {"=10,1,2,3,0,21", 0, 21},
        {"Entering Passive Mode (127,0,0,1,256,1).", TIDE_EREPLY_PASV, 0},
        {"Entering Passive Mode (127,0,0,256,4,1).", TIDE_EREPLY_PASV, 0},
        {"Entering Passive Mode (127,0,0,1,0,0).", TIDE_EREPLY_PASV, 0},
        {"Entering Passive Mode (127,0,0,1,4).", TIDE_EREPLY_PASV, 0},
        {"Entering Passive Mode (127,0,0,1,-4,1).", TIDE_EREPLY_PASV, 0},
        {"Entering Passive Mode (127,0,0,1,4,1,7).", TIDE_EREPLY_PASV, 0},
        {"Entering Passive Mode (0127,0,0,1,4,1).", TIDE_EREPLY_PASV, 0},
        {"Entering Passive Mode (1 27,0,0,1,4,1).", TIDE_EREPLY_PASV, 0},
        {"no numbers", TIDE_EREPLY_PASV, 0},
        {"", TIDE_EREPLY_PASV, 0},
    };
    for (size_t i = 0; i < sizeof pasv / sizeof pasv[0]; i++) {
        uint8_t addr[4] = {0};
        uint16_t port = 0;
        int rc = tide_reply_parse_pasv(pasv[i].text, addr, &port);
        if (rc != pasv[i].rc || (rc == 0 && port != pasv[i].port))
            fail_msg("PASV \"%s\": %d port %u", pasv[i].text, rc, port);
    }
    uint8_t addr[4];
    uint16_t port;
    assert_int_equal(tide_reply_parse_pasv("(192,0,2,1,4,1)", addr, &port), 0);
    assert_memory_equal(addr, ((uint8_t[]){192, 0, 2, 1}), 4);

    static const pasv_case epsv[] = {
        {"Entering Extended Passive Mode (|||6446|)", 0, 6446},
        {"Entering Extended Passive Mode (!!!1!)", 0, 1},
        {"(|||65535|).", 0, 65535},
        {"Entering Extended Passive Mode (|||0|).", TIDE_EREPLY_PASV, 0},
        {"Entering Extended Passive Mode (|||65536|).", TIDE_EREPLY_PASV, 0},
        {"Entering Extended Passive Mode (||1234).", TIDE_EREPLY_PASV, 0},
        {"Entering Extended Passive Mode (|||12a|).", TIDE_EREPLY_PASV, 0},
        {"Entering Extended Passive Mode (|||1234|", TIDE_EREPLY_PASV, 0},
        {"Entering Extended Passive Mode (|!|1234|)", TIDE_EREPLY_PASV, 0},
        {"Entering Extended Passive Mode (   1234 )", TIDE_EREPLY_PASV, 0},
        {"Entering Extended Passive Mode (|||123456|)", TIDE_EREPLY_PASV, 0},
        {"Entering Extended Passive Mode", TIDE_EREPLY_PASV, 0},
        {"(", TIDE_EREPLY_PASV, 0},
    };
    for (size_t i = 0; i < sizeof epsv / sizeof epsv[0]; i++) {
        port = 0;
        int rc = tide_reply_parse_epsv(epsv[i].text, &port);
        if (rc != epsv[i].rc || (rc == 0 && port != epsv[i].port))
            fail_msg("EPSV \"%s\": %d port %u", epsv[i].text, rc, port);
    }
}

static void test_ehlo(void **state) {
    (void)state;
    tide_ehlo_t e = {0};
    const char *lines[] = {
        "SIZE 35882577", "8BITMIME", "PIPELINING",      "AUTH PLAIN LOGIN CRAM-MD5",
        "starttls",      "SMTPUTF8", "X-UNKNOWN thing", "ENHANCEDSTATUSCODES"};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        tide_ehlo_parse_line(&e, lines[i]);
    assert_int_equal(e.flags, TIDE_EHLO_SIZE | TIDE_EHLO_8BITMIME | TIDE_EHLO_PIPELINING |
                                  TIDE_EHLO_AUTH | TIDE_EHLO_STARTTLS | TIDE_EHLO_SMTPUTF8);
    assert_int_equal(e.auth, TIDE_AUTH_PLAIN | TIDE_AUTH_LOGIN | TIDE_AUTH_CRAM_MD5);
    assert_true(e.size_max == 35882577);
    /* Old servers' AUTH=, SIZE without a number or with junk, prefixes that are not the
     * keyword. */
    e = (tide_ehlo_t){0};
    tide_ehlo_parse_line(&e, "AUTH=LOGIN");
    tide_ehlo_parse_line(&e, "SIZE");
    tide_ehlo_parse_line(&e, "STARTTLSX");
    tide_ehlo_parse_line(&e, "AUTHX PLAIN");
    assert_int_equal(e.flags, TIDE_EHLO_AUTH | TIDE_EHLO_SIZE);
    assert_int_equal(e.auth, TIDE_AUTH_LOGIN);
    assert_true(e.size_max == 0);
    tide_ehlo_parse_line(&e, "SIZE 12x");
    assert_true(e.size_max == 0);
    tide_ehlo_parse_line(&e, "SIZE 99999999999999999999999");
    assert_true(e.size_max == 0);
    tide_ehlo_parse_line(&e, "");
    tide_ehlo_parse_line(NULL, "SIZE 1");
}

/* The DATA content as RFC 5321 wants it, written the slow way: lines split at CR, LF
 * or CRLF, each with a leading dot doubled and CRLF after, then ".\r\n". */
static size_t reference(const unsigned char *in, size_t len, unsigned char *out) {
    size_t o = 0;
    bool start = true;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '\r' || in[i] == '\n') {
            if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
                i++;
            out[o++] = '\r';
            out[o++] = '\n';
            start = true;
            continue;
        }
        if (start && in[i] == '.')
            out[o++] = '.';
        out[o++] = in[i];
        start = false;
    }
    if (!start) {
        out[o++] = '\r';
        out[o++] = '\n';
    }
    memcpy(out + o, ".\r\n", 3);
    return o + 3;
}

static void test_data_encoder(void **state) {
    (void)state;
    static const char *messages[] = {
        ("Subject: dots and line ends\r\n\r\n.leading dot\n.\n..two dots\r\nbare LF\nbare CR\r"
         "CRLF\r\nCR CR LF\r\r\n\n.\r\nlast . line\n.\r.\nno line end at the end"),
        "",
        ".",
        "\r\n",
        "\r",
        "\n.\r\n.",
        "a\r\n.\r\nb",
        "\r\r\n\n\r",
        "8 bit \xe9\n",
    };
    unsigned char want[512], got[512];
    for (size_t m = 0; m < sizeof messages / sizeof messages[0]; m++) {
        const unsigned char *in = (const unsigned char *)messages[m];
        size_t len = strlen(messages[m]);
        size_t wlen = reference(in, len, want);
        /* Every split in two (a CRLF cut in half included). */
        for (size_t split = 0; split <= len; split++) {
            tide_data_encoder_t e = {0};
            size_t o = tide_data_encode(&e, in, split, got);
            o += tide_data_encode(&e, in + split, len - split, got + o);
            o += tide_data_encode_end(&e, got + o);
            assert_int_equal(o, wlen);
            assert_memory_equal(got, want, wlen);
            assert_true(e.octets == wlen);
            assert_int_equal(e.eight_bit, strchr(messages[m], '\xe9') != NULL);
        }
    }
}

static void test_host_port(void **state) {
    (void)state;
    char host[64];
    uint16_t port;
    assert_int_equal(tide_host_port_parse("mail.example", host, sizeof host, 25, &port), 0);
    assert_string_equal(host, "mail.example");
    assert_int_equal(port, 25);
    assert_int_equal(tide_host_port_parse("localhost:2525", host, sizeof host, 25, &port), 0);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 2525);
    assert_int_equal(tide_host_port_parse("[::1]:21", host, sizeof host, 0, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 21);
    assert_int_equal(tide_host_port_parse("::1", host, sizeof host, 21, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 21);
    const char *bad[] = {"", ":25", "h:", "h:0", "h:65536", "h:2x", "[::1", "[::1]x", "[]:21"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(tide_host_port_parse(bad[i], host, sizeof host, 25, &port), TIDE_EINVAL);
    assert_int_equal(tide_host_port_parse("toolong", host, 7, 25, &port), TIDE_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),          cmocka_unit_test(test_line_limit),
        cmocka_unit_test(test_line_limit_cap), cmocka_unit_test(test_lines_limit),
        cmocka_unit_test(test_command_format), cmocka_unit_test(test_pasv),
        cmocka_unit_test(test_ehlo),           cmocka_unit_test(test_data_encoder),
        cmocka_unit_test(test_host_port),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
