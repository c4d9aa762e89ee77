/* udp_loadgen: the load generator of the UDP echo cell. F flows (connected UDP
 * sockets) each keep W datagrams of S bytes in flight against an echo server on
 * 127.0.0.1:PORT: every echo that comes back is checked (its length and its flow's
 * pattern byte) and answered with a new datagram, with recvmmsg and sendmmsg so that
 * the generator is never the bottleneck. A flow that hears nothing for 100 ms sends its
 * window again (a datagram was lost: counted as a stall).
 *
 *   udp_loadgen --port P [-s SIZE] [-f FLOWS] [-w WINDOW] [--warmup S] [--duration S]
 *               [--server-pid PID]
 *
 * Prints one JSON line: datagrams echoed per second in the measured window, the
 * server's CPU (all its threads, from schedstat) per datagram in microseconds, the
 * server's and the generator's busy fraction, stalls and bad echoes. Exits 1 when an
 * echo was wrong or nothing came back. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <time.h>

#include "bench_common.h"

#define MAXF 64
#define BATCH 64

typedef struct flow {
    int fd;
    unsigned char tag;
    double last; /* when it last heard an echo (or sent its window) */
} flow;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int port, size = 64, nflows = 4, window = 12, server_pid;
static double warmup = 0.5, duration = 2.0;
static flow flows[MAXF];
static unsigned char out[65536];
static unsigned char in[BATCH][65536];

/* Sends n datagrams of the flow's pattern. */
static void send_n(flow *f, int n) {
    struct mmsghdr m[BATCH];
    struct iovec iov;
    memset(out, f->tag, (size_t)size);
    iov.iov_base = out;
    iov.iov_len = (size_t)size;
    while (n > 0) {
        int k = n < BATCH ? n : BATCH;
        for (int i = 0; i < k; i++) {
            memset(&m[i].msg_hdr, 0, sizeof m[i].msg_hdr);
            m[i].msg_hdr.msg_iov = &iov;
            m[i].msg_hdr.msg_iovlen = 1;
        }
        int r = sendmmsg(f->fd, m, (unsigned)k, 0);
        if (r <= 0)
            return; /* the kernel is full: the stall timer sends again */
        n -= r;
    }
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "0";
        if (!strcmp(a, "--port"))
            port = atoi(v), i++;
        else if (!strcmp(a, "-s"))
            size = atoi(v), i++;
        else if (!strcmp(a, "-f"))
            nflows = atoi(v), i++;
        else if (!strcmp(a, "-w"))
            window = atoi(v), i++;
        else if (!strcmp(a, "--warmup"))
            warmup = atof(v), i++;
        else if (!strcmp(a, "--duration"))
            duration = atof(v), i++;
        else if (!strcmp(a, "--server-pid"))
            server_pid = atoi(v), i++;
    }
    if (port <= 0 || size <= 0 || size > 65507 || nflows < 1 || nflows > MAXF || window < 1) {
        fprintf(stderr, "udp_loadgen: bad arguments\n");
        return 2;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    double t = now();
    for (int i = 0; i < nflows; i++) {
        flow *f = &flows[i];
        f->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        f->tag = (unsigned char)('a' + i);
        if (connect(f->fd, (struct sockaddr *)&to, sizeof to) != 0) {
            perror("connect");
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = f};
        epoll_ctl(ep, EPOLL_CTL_ADD, f->fd, &ev);
        f->last = t;
        send_n(f, window);
    }
    struct mmsghdr m[BATCH];
    struct iovec iov[BATCH];
    unsigned long long echoed = 0, bad = 0, stalls = 0, mark = 0;
    int64_t cpu0 = -1;
    double self0 = 0, t0 = 0, start = now();
    bool measuring = false;
    for (;;) {
        double tn = now();
        if (!measuring && tn - start >= warmup) {
            measuring = true;
            mark = echoed;
            cpu0 = server_pid ? proc_cpu_ns(server_pid) : -1;
            self0 = self_cpu_s();
            t0 = tn;
        }
        if (measuring && tn - t0 >= duration)
            break;
        struct epoll_event evs[MAXF];
        int n = epoll_wait(ep, evs, MAXF, 5);
        for (int e = 0; e < n; e++) {
            flow *f = evs[e].data.ptr;
            for (int i = 0; i < BATCH; i++) {
                iov[i].iov_base = in[i];
                iov[i].iov_len = sizeof in[i];
                memset(&m[i].msg_hdr, 0, sizeof m[i].msg_hdr);
                m[i].msg_hdr.msg_iov = &iov[i];
                m[i].msg_hdr.msg_iovlen = 1;
            }
            int k = recvmmsg(f->fd, m, BATCH, MSG_DONTWAIT, NULL);
            if (k <= 0)
                continue; /* ECONNREFUSED: nobody there yet, or spurious */
            for (int i = 0; i < k; i++)
                if (m[i].msg_len != (unsigned)size || in[i][0] != f->tag ||
                    in[i][size - 1] != f->tag)
                    bad++;
            echoed += (unsigned)k;
            f->last = tn;
            send_n(f, k);
        }
        for (int i = 0; i < nflows; i++) {
            if (tn - flows[i].last > 0.1) {
                stalls++;
                flows[i].last = tn;
                send_n(&flows[i], window);
            }
        }
    }
    double secs = now() - t0;
    int64_t cpu1 = server_pid ? proc_cpu_ns(server_pid) : -1;
    double server_cpu = cpu0 >= 0 && cpu1 >= 0 ? (double)(cpu1 - cpu0) / 1e9 : -1;
    unsigned long long units = echoed - mark;
    printf("{\"size\": %d, \"flows\": %d, \"window\": %d, \"dgram_per_s\": %.1f, "
           "\"server_cpu_s\": %.4f, \"server_cpu_us_per_dgram\": %.4f, \"server_busy\": %.3f, "
           "\"client_busy\": %.3f, \"stalls\": %llu, \"bad\": %llu}\n",
           size, nflows, window, (double)units / secs, server_cpu,
           server_cpu >= 0 && units > 0 ? server_cpu * 1e6 / (double)units : -1.0,
           server_cpu >= 0 ? server_cpu / secs : -1.0, (self_cpu_s() - self0) / secs, stalls, bad);
    return bad > 0 || units == 0 ? 1 : 0;
}
