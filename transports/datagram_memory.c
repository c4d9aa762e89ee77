/* The in-memory datagram pair: two endpoints connected to each other without a
 * socket, for testing datagram protocols without a network (tide/datagram.h).
 *
 * Each side has an inbox: a datagram sent by its peer is copied there whole and
 * delivered on a later loop iteration (a deferred call), in order, while the side
 * reads. The inbox holds up to `window` bytes (the "receive buffer"); beyond that the
 * sender's endpoint queues the datagram whole, with its watermarks and
 * pause_writing, and sends it when the inbox drains. A datagram to a side that is
 * closing or gone is refused with TIDE_ECONNREFUSED, as a connected Unix datagram
 * socket refuses it. Everything runs on the loop's thread; each side unlinks itself
 * from its peer when its endpoint is freed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "transports/transport_int.h"

#define DEFAULT_WINDOW (256 * 1024)

typedef struct mem_dgram {
    struct mem_dgram *next;
    size_t len;
    unsigned char data[];
} mem_dgram;

typedef struct mem_side {
    tide_datagram_t *ep;
    struct mem_side *peer;
    mem_dgram *head, *tail;
    size_t inbox_bytes;
    size_t window;
    bool blocked; /* a send found the peer's inbox full: tell us when it drains */
    tide__call deliver;
    struct sockaddr_un name;
    struct sockaddr_un peer_name; /* the sender of everything in the inbox */
} mem_side;

static socklen_t name_len(const struct sockaddr_un *name) {
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name->sun_path + 1));
}

static int mem_send(tide_datagram_t *ep, const void *data, size_t len) {
    mem_side *s = tide__datagram_kind_data(ep);
    mem_side *p = s->peer;
    if (p == NULL || tide_datagram_is_closing(p->ep))
        return TIDE_ECONNREFUSED;
    if (p->head != NULL && p->inbox_bytes + len > p->window) {
        s->blocked = true;
        return TIDE_EAGAIN;
    }
    mem_dgram *d = malloc(sizeof(*d) + len);
    if (d == NULL)
        return TIDE_ENOMEM;
    d->next = NULL;
    d->len = len;
    if (len > 0)
        memcpy(d->data, data, len);
    if (p->tail)
        p->tail->next = d;
    else
        p->head = d;
    p->tail = d;
    p->inbox_bytes += len;
    if (tide__datagram_reading(p->ep))
        tide__loop_defer(tide_datagram_get_loop(p->ep), &p->deliver);
    return 0;
}

static void run_deliver(tide__call *call) {
    mem_side *s = TIDE__QUEUE_DATA(call, mem_side, deliver);
    bool took = false;
    /* The side's endpoint is freed only from its deferred connection_lost, never
     * inside this call, so s stays valid whatever the protocol does. */
    while (s->head && tide__datagram_reading(s->ep)) {
        mem_dgram *d = s->head;
        if (!tide__datagram_receive(s->ep, d->data, d->len, (struct sockaddr *)&s->peer_name,
                                    name_len(&s->peer_name)))
            break; /* get_buffer paused reading: it stays first in the inbox */
        /* The protocol may have sent to itself meanwhile: the inbox grew at its tail. */
        s->head = d->next;
        if (s->head == NULL)
            s->tail = NULL;
        s->inbox_bytes -= d->len;
        took = true;
        free(d);
    }
    if (took && s->peer && s->peer->blocked) {
        s->peer->blocked = false;
        tide__datagram_writable(s->peer->ep);
    }
}

static void mem_start_reading(tide_datagram_t *ep) {
    mem_side *s = tide__datagram_kind_data(ep);
    if (s->head)
        tide__loop_defer(tide_datagram_get_loop(ep), &s->deliver);
}

static void mem_release(tide_datagram_t *ep) {
    mem_side *s = tide__datagram_kind_data(ep);
    tide__loop_undefer(&s->deliver);
    if (s->peer) {
        s->peer->peer = NULL;
        /* A sender waiting for room waits no more: its queue now fails. */
        if (s->peer->blocked) {
            s->peer->blocked = false;
            tide__datagram_writable(s->peer->ep);
        }
    }
    while (s->head) {
        mem_dgram *d = s->head;
        s->head = d->next;
        free(d);
    }
    free(s);
}

static const tide__dgram_kind memory_kind = {
    .send = mem_send,
    .start_reading = mem_start_reading,
    .release = mem_release,
};

static unsigned long pair_count;

int tide_datagram_pair_new(tide_loop_t *loop, tide_datagram_protocol_t *a,
                           tide_datagram_protocol_t *b, tide_datagram_t **ea,
                           tide_datagram_t **eb) {
    if (loop == NULL || a == NULL || b == NULL)
        return TIDE_EINVAL;
    mem_side *s[2] = {calloc(1, sizeof(mem_side)), calloc(1, sizeof(mem_side))};
    if (s[0] == NULL || s[1] == NULL) {
        free(s[0]);
        free(s[1]);
        return TIDE_ENOMEM;
    }
    unsigned long id = ++pair_count;
    for (int i = 0; i < 2; i++) {
        s[i]->peer = s[1 - i];
        s[i]->window = DEFAULT_WINDOW;
        s[i]->name.sun_family = AF_UNIX;
        /* An abstract name, as tide_format_address shows it: "@tide-memory-3a". */
        snprintf(s[i]->name.sun_path + 1, sizeof(s[i]->name.sun_path) - 1, "tide-memory-%lu%c", id,
                 i == 0 ? 'a' : 'b');
        tide__call_init(&s[i]->deliver, run_deliver);
    }
    s[0]->peer_name = s[1]->name;
    s[1]->peer_name = s[0]->name;
    for (int i = 0; i < 2; i++) {
        int rc = tide__datagram_new_kind(loop, &memory_kind, s[i], (struct sockaddr *)&s[i]->name,
                                         (struct sockaddr *)&s[1 - i]->name, name_len(&s[i]->name),
                                         65507, &s[i]->ep);
        if (rc < 0) {
            /* Only the first can exist: freeing it frees its side, the other is ours. */
            if (i == 1) {
                s[0]->peer = NULL;
                tide__datagram_discard(s[0]->ep);
            } else {
                free(s[0]);
            }
            free(s[1]);
            return rc;
        }
    }
    tide__datagram_start(s[0]->ep, a);
    tide__datagram_start(s[1]->ep, b);
    if (ea)
        *ea = s[0]->ep;
    if (eb)
        *eb = s[1]->ep;
    return 0;
}

int tide_datagram_pair_set_window(tide_datagram_t *ep, size_t bytes) {
    if (ep == NULL || tide_datagram_get_fd(ep) != TIDE_ENOTSOCK)
        return TIDE_EINVAL;
    mem_side *s = tide__datagram_kind_data(ep);
    if (s->peer)
        s->peer->window = bytes; /* what ep sends waits in its peer's inbox */
    return 0;
}
