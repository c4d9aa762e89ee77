/* libFuzzer target: the address code of transports/address.c, the one parser-like
 * piece the library has today besides TLS (see README.md for those to come).
 *
 * Byte 0 picks the check, byte 1 the output buffer's size; the rest is the address:
 * - tide_format_address on arbitrary socket address bytes of any length: the result is
 *   NUL-terminated within the buffer and is a prefix of what getnameinfo() (inet) or
 *   the sockaddr_un rules (Unix: path up to the first NUL, '@' for abstract names)
 *   give for the same bytes;
 * - tide__unix_address on an arbitrary path, then formatting the result back: the
 *   same path comes out, too long and empty paths are refused.
 * A mismatch abort()s. Pure functions: no loop, nothing kept between inputs. */
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "fuzz.h"
#include "tide.h"
#include "transports/transport_int.h"

/* out (NUL-terminated within size) is `want` cut to size - 1 bytes. */
static void require_prefix(const char *out, size_t size, const char *want) {
    size_t n = strnlen(out, size);
    REQUIRE(n < size);
    REQUIRE(n == strlen(want) || n == size - 1);
    REQUIRE(strncmp(out, want, n) == 0);
}

/* What the address should read as, computed without tide. */
static void expected(const struct sockaddr_storage *ss, socklen_t len, char *want, size_t size) {
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    if (len < (socklen_t)sizeof(sa_family_t)) {
        snprintf(want, size, "<unnamed>");
        return;
    }
    int family = ss->ss_family;
    bool inet = family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in);
    bool inet6 = family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6);
    if (inet || inet6) {
        /* glibc may name the scope by interface: ask for the bare host and add the
         * scope id as a number, as tide does. */
        struct sockaddr_storage bare = *ss;
        uint32_t scope = 0;
        if (inet6) {
            scope = ((struct sockaddr_in6 *)&bare)->sin6_scope_id;
            ((struct sockaddr_in6 *)&bare)->sin6_scope_id = 0;
        }
        REQUIRE(getnameinfo((const struct sockaddr *)&bare, len, host, sizeof(host), serv,
                            sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) == 0);
        if (inet)
            snprintf(want, size, "%s:%s", host, serv);
        else if (scope)
            snprintf(want, size, "[%s%%%u]:%s", host, (unsigned)scope, serv);
        else
            snprintf(want, size, "[%s]:%s", host, serv);
    } else if (family == AF_INET) {
        snprintf(want, size, "<bad inet address>");
    } else if (family == AF_INET6) {
        snprintf(want, size, "<bad inet6 address>");
    } else if (family == AF_UNIX) {
        const struct sockaddr_un *su = (const void *)ss;
        size_t at = offsetof(struct sockaddr_un, sun_path);
        size_t n = (size_t)len - at;
        if ((size_t)len <= at) {
            snprintf(want, size, "<unnamed>");
            return;
        }
        if (n > sizeof(su->sun_path))
            n = sizeof(su->sun_path);
        if (su->sun_path[0] == '\0')
            snprintf(want, size, "@%.*s", (int)strnlen(su->sun_path + 1, n - 1), su->sun_path + 1);
        else
            snprintf(want, size, "%.*s", (int)strnlen(su->sun_path, n), su->sun_path);
    } else {
        snprintf(want, size, "<address family %d>", family);
    }
}

static void check_format(const uint8_t *data, size_t size, size_t bufsize) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    size_t len = size < sizeof(ss) ? size : sizeof(ss);
    memcpy(&ss, data, len);
    char out[300], want[300];
    memset(out, 'x', sizeof(out));
    REQUIRE(tide_format_address((const struct sockaddr *)&ss, (socklen_t)len, out, bufsize) == out);
    if (bufsize == 0) {
        REQUIRE(out[0] == 'x'); /* nothing written */
        return;
    }
    expected(&ss, (socklen_t)len, want, sizeof(want));
    require_prefix(out, bufsize, want);
    REQUIRE(out[bufsize] == 'x'); /* nothing written past the buffer */
}

static void check_unix_path(const uint8_t *data, size_t size) {
    char path[300];
    size_t n = strnlen((const char *)data, size < sizeof(path) - 1 ? size : sizeof(path) - 1);
    memcpy(path, data, n);
    path[n] = '\0';
    struct sockaddr_un su;
    socklen_t len = 0;
    int rc = tide__unix_address(path, &su, &len);
    if (n == 0) {
        REQUIRE(rc == TIDE_EINVAL);
        return;
    }
    if (n >= sizeof(su.sun_path)) {
        REQUIRE(rc == TIDE_ENAMETOOLONG);
        return;
    }
    REQUIRE(rc == 0);
    REQUIRE(su.sun_family == AF_UNIX);
    REQUIRE(len <= (socklen_t)sizeof(su));
    char out[300];
    tide_format_address((const struct sockaddr *)&su, len, out, sizeof(out));
    REQUIRE(strcmp(out, path) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2)
        return 0;
    unsigned mode = data[0] & 1;
    size_t bufsize = data[1] % 257;
    if (mode == 0)
        check_format(data + 2, size - 2, bufsize);
    else
        check_unix_path(data + 2, size - 2);
    return 0;
}
