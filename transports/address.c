/* Socket addresses: formatting for logs, loop-close reports and users, and building
 * Unix socket addresses from paths.
 * Pure functions: no loop, no state, safe from any thread. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "transports/transport_int.h"

static void format_unix(const struct sockaddr_un *sun, socklen_t len, char *buf, size_t size) {
    size_t base = offsetof(struct sockaddr_un, sun_path);
    size_t n = (size_t)len > base ? (size_t)len - base : 0;
    if (n > sizeof(sun->sun_path))
        n = sizeof(sun->sun_path);
    if (n == 0) {
        snprintf(buf, size, "<unnamed>");
    } else if (sun->sun_path[0] == '\0') {
        /* Abstract names are not NUL-terminated: their length is the address length. */
        snprintf(buf, size, "@%.*s", (int)(n - 1), sun->sun_path + 1);
    } else {
        snprintf(buf, size, "%.*s", (int)strnlen(sun->sun_path, n), sun->sun_path);
    }
}

char *tide_format_address(const struct sockaddr *addr, socklen_t len, char *buf, size_t size) {
    char host[INET6_ADDRSTRLEN];
    if (buf == NULL || size == 0)
        return buf;
    buf[0] = '\0';
    if (addr == NULL || len < (socklen_t)sizeof(sa_family_t)) {
        snprintf(buf, size, "<unnamed>");
        return buf;
    }
    switch (addr->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)addr;
        if (len < (socklen_t)sizeof(*sin) ||
            !inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host)))
            snprintf(buf, size, "<bad inet address>");
        else
            snprintf(buf, size, "%s:%u", host, (unsigned)ntohs(sin->sin_port));
        break;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)addr;
        if (len < (socklen_t)sizeof(*sin6) ||
            !inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host)))
            snprintf(buf, size, "<bad inet6 address>");
        else if (sin6->sin6_scope_id != 0)
            snprintf(buf, size, "[%s%%%u]:%u", host, (unsigned)sin6->sin6_scope_id,
                     (unsigned)ntohs(sin6->sin6_port));
        else
            snprintf(buf, size, "[%s]:%u", host, (unsigned)ntohs(sin6->sin6_port));
        break;
    }
    case AF_UNIX:
        format_unix((const struct sockaddr_un *)(const void *)addr, len, buf, size);
        break;
    default:
        snprintf(buf, size, "<address family %d>", (int)addr->sa_family);
        break;
    }
    return buf;
}

/* Builds the address for a Unix socket path; '@' names the abstract namespace, where
 * the length, not a NUL, ends the name. */
int tide__unix_address(const char *path, struct sockaddr_un *sun, socklen_t *len) {
    size_t n = strlen(path);
    if (n == 0)
        return TIDE_EINVAL;
    if (n >= sizeof(sun->sun_path))
        return TIDE_ENAMETOOLONG;
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, n);
    if (path[0] == '@')
        sun->sun_path[0] = '\0'; /* abstract */
    else
        n++;
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    return 0;
}
