/* pyrepr.h: Python's repr() of a str or bytes value, for the examples that print
 * exactly what their asyncio original prints ('Hello World!', b'hello\n'). Header-only,
 * public C only; not part of tide. Also the start shared by the asyncio examples.
 *
 * The rules are CPython's: single quotes unless the text holds a single quote and no
 * double quote; backslash, the quote, \t, \n and \r escaped; for bytes, other control
 * bytes and everything from 0x7f up as \xNN; for a str (UTF-8), characters Python
 * does not print as \xNN, \uNNNN or \UNNNNNNNN, the rest as they are. */
#ifndef TIDE_EXAMPLES_PYREPR_H
#define TIDE_EXAMPLES_PYREPR_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <tide.h>

/* Length of the UTF-8 sequence starting at s (of n bytes left) and its code point,
 * or 0 when it is not valid UTF-8 (Python's surrogateescape then shows the byte as
 * '\udcXX'). */
static inline size_t py_utf8_next(const unsigned char *s, size_t n, unsigned *cp) {
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t len = s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 ? 2 : 0;
    if (len == 0 || len > n || s[0] >= 0xF8)
        return 0;
    unsigned v = s[0] & (0xFF >> (len + 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3F);
    }
    /* Overlong forms, surrogates and beyond U+10FFFF are not UTF-8 either. */
    if ((len == 3 && v < 0x800) || (len == 4 && (v < 0x10000 || v > 0x10FFFF)) ||
        (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

/* Python's str.isprintable for the characters the examples meet: control characters,
 * C1 controls, the no-break space, the soft hyphen and the invisible separators are
 * not. */
static inline bool py_printable(unsigned cp) {
    return !(cp < 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD || cp == 0x2028 ||
             cp == 0x2029 || (cp >= 0x200B && cp <= 0x200F) || cp == 0xFEFF);
}

/* Prints repr(value) to out: a bytes value (b'...') when bytes is true, else a str
 * (UTF-8; bytes that are not are shown as surrogate escapes). */
static inline void py_print_repr(FILE *out, const void *value, size_t len, bool bytes) {
    const unsigned char *p = value;
    char quote = '\'';
    if (memchr(p, '\'', len) != NULL && memchr(p, '"', len) == NULL)
        quote = '"';
    if (bytes)
        fputc('b', out);
    fputc(quote, out);
    for (size_t i = 0; i < len;) {
        unsigned c = p[i];
        size_t n = 1;
        if (!bytes && (n = py_utf8_next(p + i, len - i, &c)) == 0) {
            fprintf(out, "\\udc%02x", p[i]);
            i++;
            continue;
        }
        if (c == '\\' || c == (unsigned char)quote)
            fprintf(out, "\\%c", (char)c);
        else if (c == '\t')
            fputs("\\t", out);
        else if (c == '\n')
            fputs("\\n", out);
        else if (c == '\r')
            fputs("\\r", out);
        else if (bytes ? c < 0x20 || c >= 0x7f : !py_printable(c))
            fprintf(out, c < 0x100 ? "\\x%02x" : c < 0x10000 ? "\\u%04x" : "\\U%08x", c);
        else
            fwrite(p + i, 1, n, out);
        i += n;
    }
    fputc(quote, out);
}

/* Prints a socket address as Python prints getpeername()/getsockname() results:
 * ('127.0.0.1', 8888) for IPv4, ('::1', 8888, 0, 0) for IPv6. */
static inline void py_print_address(FILE *out, const struct sockaddr *addr) {
    char host[64] = "?";
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        fprintf(out, "('%s', %u)", host, (unsigned)ntohs(in->sin_port));
    } else if (addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        fprintf(out, "('%s', %u, %u, %u)", host, (unsigned)ntohs(in6->sin6_port),
                (unsigned)ntohl(in6->sin6_flowinfo), (unsigned)in6->sin6_scope_id);
    } else {
        fputs("None", out);
    }
}

/* What every asyncio example does first: stdout line-buffered, as Python's is on a
 * terminal and as `python -u` is on a pipe (the tests compare the two), the port from
 * the first argument (the original's default otherwise), and the loop. Returns
 * tide_loop_new's status. */
static inline int py_example_start(int argc, char **argv, uint16_t default_port, uint16_t *port,
                                   tide_loop_t **loop) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    *port = (uint16_t)(argc > 1 ? atoi(argv[1]) : default_port);
    return tide_loop_new(loop);
}

/* The servers' `async with server: await server.serve_forever()`, once rc (the
 * server's creation) is 0; otherwise the error, as Python's traceback would end. */
static inline int py_serve_forever(tide_loop_t *loop, int rc, const char *what) {
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", what, tide_strerror(rc));
        return 1;
    }
    tide_loop_run(loop, TIDE_RUN_FOREVER);
    return 0;
}

#endif
