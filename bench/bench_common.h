/* Shared by the C peer servers and the load generators: a listening TCP socket or a
 * bound UDP socket on 127.0.0.1 with the first line every benchmark server prints
 * ("listening on 127.0.0.1:PORT"), and CPU time of a process and of this one. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <arpa/inet.h>
#include <dirent.h>
#include <stdint.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A non-blocking socket of type (SOCK_STREAM, SOCK_DGRAM) bound to 127.0.0.1:port
 * (0: any free port), listening when it is a stream socket; prints
 * "listening on 127.0.0.1:PORT". */
static inline int bench_bind(int type, int port) {
    int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (type == SOCK_STREAM)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        (type == SOCK_STREAM && listen(fd, SOMAXCONN) != 0)) {
        perror("listen");
        exit(1);
    }
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    printf("listening on 127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);
    return fd;
}

/* A non-blocking listening TCP socket on 127.0.0.1:port. */
static inline int bench_listen(int port) { return bench_bind(SOCK_STREAM, port); }

/* A non-blocking UDP socket bound to 127.0.0.1:port. */
static inline int bench_udp_bind(int port) { return bench_bind(SOCK_DGRAM, port); }

/* Nanoseconds on CPU of every thread of pid (schedstat's first field), or -1. */
static inline int64_t proc_cpu_ns(int pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    int64_t total = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[320];
        snprintf(p, sizeof p, "/proc/%d/task/%s/schedstat", pid, e->d_name);
        FILE *f = fopen(p, "r");
        if (f == NULL)
            continue;
        long long v;
        if (fscanf(f, "%lld", &v) == 1)
            total += v;
        fclose(f);
    }
    closedir(d);
    return total;
}

/* This process's CPU time (user + system), in seconds. */
static inline double self_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

#endif
