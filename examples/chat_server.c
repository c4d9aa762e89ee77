/* chat_server: a line relay, each client a task, each client's outbound lines in a
 * bounded queue (asyncio's chat server with StreamReader/StreamWriter and
 * asyncio.Queue).
 *
 *   chat_server [--host HOST] [--port PORT] [--max-queue N]
 *
 * The first line it prints is "listening on ADDRESS". Every LF-terminated line a
 * client sends (up to 4 KiB with its LF) is relayed verbatim to every other connected
 * client, in the order the server received the lines. A client has two tasks: one
 * reads its lines and puts them on the other clients' queues without waiting
 * (put_nowait), one takes lines off its own queue, writes them and waits for the
 * write buffer to drain. A client that does not read therefore only fills its own
 * queue (N lines, default 1,000); the line that would overflow it disconnects that
 * client (its reader task is cancelled, and ends the connection), and nobody else
 * waits for it. A longer line than 4 KiB disconnects its
 * sender. SIGINT or SIGTERM stop the server: no more clients, every connection
 * aborted, exit 0 once every task has ended.
 *
 * A relayed line is stored once and shared by the queues it sits in (a reference
 * count); a queue that is dropped gives its lines back through its free_item. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tide.h>

#define MAX_LINE 4096
#define DEFAULT_MAX_QUEUE 1000

typedef struct line {
    size_t refs;
    size_t len;
    char data[];
} line;

static void line_unref(void *item) {
    line *l = item;
    if (--l->refs == 0)
        free(l);
}

typedef struct client client;
struct client {
    client *prev, *next; /* the room: every connected client */
    tide_reader_t *reader;
    tide_writer_t *writer;
    tide_queue_t *outbox;
    tide_task_t *task; /* its reader task, running while it is in the room */
    bool in_room;
};

typedef struct chat {
    tide_loop_t *loop;
    tide_server_t *server;
    client room; /* sentinel of a circular list */
    size_t max_queue;
    bool stopping;
} chat;

static chat app;

static void room_add(client *c) {
    c->next = &app.room;
    c->prev = app.room.prev;
    c->prev->next = c;
    app.room.prev = c;
    c->in_room = true;
}

/* Leaves the room: the client gets no more lines; its queue is shut down, so its
 * sender ends once it has written what is queued (immediate: at once, dropping it). */
static void room_leave(client *c, bool immediate) {
    if (!c->in_room)
        return;
    c->prev->next = c->next;
    c->next->prev = c->prev;
    c->in_room = false;
    tide_queue_shutdown(c->outbox, immediate);
}

/* Queues the line for every other client; one whose queue is full is disconnected. */
static void relay(client *from, const char *data, size_t len) {
    line *l = malloc(sizeof(*l) + len);
    if (l == NULL)
        return;
    l->refs = 1; /* ours, until the loop below is done */
    l->len = len;
    memcpy(l->data, data, len);
    client *c = app.room.next;
    while (c != &app.room) {
        client *next = c->next;
        if (c != from) {
            l->refs++;
            int rc = tide_queue_put_nowait(c->outbox, l);
            if (rc != 0) {
                l->refs--;
                if (rc == TIDE_EQUEUE_FULL) {
                    /* Its own task ends the connection: a stream is closed once. */
                    room_leave(c, true);
                    tide_task_cancel(c->task);
                }
            }
        }
        c = next;
    }
    line_unref(l);
}

/* The client's sender: its queue to its socket, one line at a time. */
static int sender(void *arg) {
    client *c = arg;
    void *item;
    int rc;
    while ((rc = tide_queue_get_await(c->outbox, &item)) == 0) {
        line *l = item;
        rc = tide_writer_write(c->writer, l->data, l->len);
        line_unref(l);
        if (rc == 0)
            rc = tide_writer_drain_await(c->writer);
        if (rc != 0)
            break;
    }
    return rc == TIDE_EQUEUE_SHUTDOWN ? 0 : rc;
}

/* The client's reader (its main task): lines in, relayed out, until EOF. */
static int handle_client(void *arg) {
    client *c = arg;
    tide_task_t *send_task = NULL;
    int rc = tide_task_spawn(app.loop, sender, c, NULL, &send_task);
    if (rc == 0) {
        room_add(c);
        char *buf = malloc(MAX_LINE + 1);
        size_t len;
        rc = buf != NULL ? 0 : TIDE_ENOMEM;
        while (rc == 0 &&
               (rc = tide_reader_readline_await(c->reader, buf, MAX_LINE + 1, &len)) == 0)
            if (len > 0 && buf[len - 1] == '\n')
                relay(c, buf, len);
        free(buf);
        /* Gone, or dropped: stop its sender (which may be waiting for a client that
         * no longer reads to drain), then wait for it. */
        room_leave(c, true);
        tide_task_cancel(send_task);
        tide_task_join_await(send_task, NULL);
    }
    if (rc == TIDE_EOF)
        tide_writer_close(c->writer);
    else
        tide_writer_abort(c->writer);
    tide_writer_wait_closed_await(c->writer);
    tide_queue_free(c->outbox);
    free(c);
    return 0;
}

static void on_client(tide_reader_t *reader, tide_writer_t *writer, void *arg) {
    (void)arg;
    client *c = calloc(1, sizeof(*c));
    tide_queue_options_t qo = {.maxsize = app.max_queue, .free_item = line_unref};
    if (c == NULL || app.stopping || tide_queue_new(app.loop, &qo, &c->outbox) != 0) {
        free(c);
        tide_writer_abort(writer);
        return;
    }
    c->reader = reader;
    c->writer = writer;
    if (tide_task_spawn(app.loop, handle_client, c, NULL, &c->task) != 0) {
        tide_queue_free(c->outbox);
        free(c);
        tide_writer_abort(writer);
        return;
    }
    /* Detached: it frees itself when it ends; the loop runs until every task has. */
    tide_task_detach(c->task);
}

static void on_signal(tide_loop_t *loop, int signum, void *arg) {
    (void)signum;
    (void)arg;
    if (app.stopping)
        return;
    app.stopping = true;
    tide_server_abort_clients(app.server);
    tide_server_close(app.server);
    tide_loop_remove_signal_handler(loop, SIGINT);
    tide_loop_remove_signal_handler(loop, SIGTERM);
}

static int usage(void) {
    fprintf(stderr, "usage: chat_server [--host HOST] [--port PORT] [--max-queue N]\n");
    return 2;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    unsigned long port = 8888, max_queue = DEFAULT_MAX_QUEUE;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) {
            host = argv[++i];
        } else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = strtoul(argv[++i], &end, 10);
            if (*end != '\0' || port > 65535)
                return usage();
        } else if (strcmp(argv[i], "--max-queue") == 0 && i + 1 < argc) {
            max_queue = strtoul(argv[++i], &end, 10);
            if (*end != '\0' || max_queue == 0)
                return usage();
        } else {
            return usage();
        }
    }
    signal(SIGPIPE, SIG_IGN);
    app.room.next = app.room.prev = &app.room;
    app.max_queue = max_queue;
    int rc = tide_loop_new(&app.loop);
    if (rc == 0)
        rc = tide_loop_start_server(app.loop, host, (uint16_t)port, MAX_LINE, NULL, on_client, NULL,
                                    &app.server);
    if (rc != 0) {
        fprintf(stderr, "chat_server: %s\n", tide_strerror(rc));
        return 1;
    }
    struct sockaddr_storage addr;
    socklen_t alen = sizeof(addr);
    char where[128] = "?";
    if (tide_server_get_sockname(app.server, 0, (struct sockaddr *)&addr, &alen) == 0)
        tide_format_address((struct sockaddr *)&addr, alen, where, sizeof(where));
    printf("listening on %s\n", where);
    fflush(stdout);
    tide_loop_add_signal_handler(app.loop, SIGINT, on_signal, NULL);
    tide_loop_add_signal_handler(app.loop, SIGTERM, on_signal, NULL);
    rc = tide_loop_run(app.loop, TIDE_RUN_DEFAULT);
    if (rc == 0)
        rc = tide_loop_close(app.loop);
    if (rc != 0) {
        fprintf(stderr, "chat_server: %s\n", tide_strerror(rc));
        return 1;
    }
    return 0;
}
