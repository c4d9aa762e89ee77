/* wait_for_data: asyncio's "register an open socket to wait for data using streams"
 * in C. A task makes a socketpair, opens streams on one end, has a callback send
 * "abc" on the other end soon, reads it and prints it.
 *
 *   wait_for_data
 *
 * Prints "Received: abc" and exits 0; 1 on any failure. Single-threaded. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <tide.h>

static void send_abc(tide_loop_t *loop, void *arg) {
    (void)loop;
    int wsock = *(int *)arg;
    if (send(wsock, "abc", 3, 0) != 3)
        perror("wait_for_data: send");
}

static int fail(const char *what, int err) {
    fprintf(stderr, "wait_for_data: %s: %s\n", what, tide_strerror(err));
    return 1;
}

static int wait_for_data(void *arg) {
    tide_loop_t *loop = arg;
    int socks[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, socks) != 0) {
        perror("wait_for_data: socketpair");
        return 1;
    }
    int rsock = socks[0], wsock = socks[1];

    /* Register the open socket to wait for data: tide owns rsock from here. */
    tide_reader_t *reader;
    tide_writer_t *writer;
    int rc = tide_loop_open_socket_await(loop, rsock, TIDE_STREAM_DEFAULT_LIMIT, NULL, &reader,
                                         &writer);
    if (rc != 0) {
        close(wsock);
        if (rc == TIDE_EINVAL || rc == TIDE_ENOMEM)
            close(rsock); /* refused before tide took it */
        return fail("open", rc);
    }

    /* Simulate the reception of data from the network. */
    if (tide_loop_call_soon(loop, send_abc, &wsock) == NULL)
        rc = TIDE_ENOMEM;

    /* Wait for data. */
    char data[100];
    size_t n = 0;
    if (rc == 0)
        rc = tide_reader_read_await(reader, data, sizeof data, &n);
    if (rc == 0)
        printf("Received: %.*s\n", (int)n, data);

    /* Got data, we are done: close the socket. */
    tide_writer_close(writer);
    int closed = tide_writer_wait_closed_await(writer);

    /* Close the second socket. */
    close(wsock);
    if (rc != 0)
        return fail("read", rc);
    return closed != 0 ? fail("close", closed) : 0;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    tide_loop_t *loop;
    int rc = tide_loop_new(&loop);
    if (rc != 0)
        return fail("loop", rc);
    int status = 1;
    rc = tide_loop_run_until_complete(loop, wait_for_data, loop, NULL, &status);
    if (rc != 0)
        status = fail("run", rc);
    if ((rc = tide_loop_close(loop)) != 0)
        status = fail("loop close", rc);
    return status;
}
