/* pyrepr.h: Python's repr() of a str or bytes value, for the examples that print
 * exactly what their asyncio original prints ('Hello World!', b'hello\n'). Header-only,
 * public C only; not part of tide. Also the start shared by the asyncio examples.
 *
 * The rules are CPython's: single quotes unless the text holds a single quote and no
 * double quote; backslash, the quote, \t, \n and \r escaped; other control bytes (and,
 * for bytes, everything from 0x7f up) as \xNN. A str is taken to be UTF-8 text whose
 * non-ASCII characters are printable, which Python prints as they are. */
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

/* Prints repr(value) to out: a bytes value (b'...') when bytes is true, else a str. */
static inline void py_print_repr(FILE *out, const void *value, size_t len, bool bytes) {
    const unsigned char *p = value;
    char quote = '\'';
    if (memchr(p, '\'', len) != NULL && memchr(p, '"', len) == NULL)
        quote = '"';
    if (bytes)
        fputc('b', out);
    fputc(quote, out);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = p[i];
        if (c == '\\' || c == (unsigned char)quote)
            fprintf(out, "\\%c", c);
        else if (c == '\t')
            fputs("\\t", out);
        else if (c == '\n')
            fputs("\\n", out);
        else if (c == '\r')
            fputs("\\r", out);
        else if (c < 0x20 || c == 0x7f || (bytes && c > 0x7f))
            fprintf(out, "\\x%02x", c);
        else
            fputc(c, out);
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
