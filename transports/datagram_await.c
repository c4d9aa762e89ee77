/* The task forms of datagram endpoints: create_datagram_endpoint_await, recv_await
 * and sendto_await, built on the callback forms.
 *
 * recv_await needs somewhere for datagrams to wait: an endpoint created with no
 * factory gets tide's own receive queue as its protocol. A datagram that arrives while
 * a task waits goes straight into the task's buffer (no copy beyond the one into it);
 * otherwise it is copied into the queue, and at RXQ_MAX queued datagrams the queue
 * pauses reading, so the kernel's buffer absorbs (and, past its size, drops) the rest
 * instead of memory growing without bound. error_received codes wait in the queue in
 * order with the datagrams.
 *
 * sendto_await waits on the endpoint's own list of draining tasks, so it works with
 * any protocol. Everything runs on the loop's thread; waiters live in the task's
 * frame, and each abandon (cancellation, deadline) unlinks its waiter. */
#include <stdlib.h>
#include <string.h>

#include "tide/task.h"
#include "transports/transport_int.h"

#define RXQ_MAX 256

typedef struct rx_item {
    struct rx_item *next;
    int err; /* an error_received code instead of a datagram */
    size_t len;
    socklen_t alen;
    struct sockaddr_storage addr;
    unsigned char data[];
} rx_item;

/* The caller of recv_await, while it waits. */
typedef struct recv_wait {
    tide__waiter w; /* first: on_abandon gets it */
    struct rxq *q;
    void *buf;
    size_t size;
    size_t *len;
    struct sockaddr *addr;
    socklen_t *alen;
} recv_wait;

typedef struct rxq {
    tide_datagram_protocol_t base;
    tide_datagram_t *ep;
    rx_item *head, *tail;
    size_t count;
    bool paused; /* reading paused by the queue (not by the user) */
    recv_wait *waiting;
} rxq;

static rxq *rxq_of(tide_datagram_protocol_t *p) { return TIDE_CONTAINER_OF(p, rxq, base); }

/* Hands one datagram (or an error) to a receiver: its status for recv_await. */
static int hand(recv_wait *rw, int err, const void *data, size_t len, const struct sockaddr *addr,
                socklen_t alen) {
    if (err != 0)
        return err;
    if (rw->len)
        *rw->len = len;
    if (rw->addr && rw->alen) {
        memcpy(rw->addr, addr, *rw->alen < alen ? *rw->alen : alen);
        *rw->alen = alen;
    }
    if (len > 0)
        memcpy(rw->buf, data, len < rw->size ? len : rw->size);
    return len > rw->size ? TIDE_EMSGSIZE : 0;
}

static void push(rxq *q, int err, const void *data, size_t len, const struct sockaddr *addr,
                 socklen_t alen) {
    recv_wait *rw = q->waiting;
    if (rw != NULL) {
        q->waiting = NULL;
        /* From the endpoint's read event: the task may resume right here. */
        tide__task_wake_now(&rw->w, hand(rw, err, data, len, addr, alen));
        return;
    }
    rx_item *it = malloc(sizeof(*it) + len);
    if (it == NULL) {
        /* Like a datagram the kernel dropped, but said: the next receive gets this. */
        err = TIDE_ENOMEM;
        it = malloc(sizeof(*it));
        if (it == NULL)
            return;
        len = 0;
    }
    it->next = NULL;
    it->err = err;
    it->len = len;
    it->alen = alen <= sizeof(it->addr) ? alen : 0;
    if (addr && it->alen)
        memcpy(&it->addr, addr, it->alen);
    if (len > 0)
        memcpy(it->data, data, len);
    if (q->tail)
        q->tail->next = it;
    else
        q->head = it;
    q->tail = it;
    if (++q->count >= RXQ_MAX && !q->paused) {
        q->paused = true;
        tide_datagram_pause_reading(q->ep);
    }
}

static void q_made(tide_datagram_protocol_t *p, tide_datagram_t *ep) { rxq_of(p)->ep = ep; }

static void q_received(tide_datagram_protocol_t *p, const void *data, size_t len,
                       const struct sockaddr *addr, socklen_t alen) {
    push(rxq_of(p), 0, data, len, addr, alen);
}

static void q_error(tide_datagram_protocol_t *p, int err) {
    push(rxq_of(p), err, NULL, 0, NULL, 0);
}

static void q_lost(tide_datagram_protocol_t *p, int status) {
    rxq *q = rxq_of(p);
    if (q->waiting) {
        tide__task_wake(&q->waiting->w, status < 0 ? status : TIDE_ECLOSED);
        q->waiting = NULL;
    }
    while (q->head) {
        rx_item *it = q->head;
        q->head = it->next;
        free(it);
    }
    free(q);
}

static const tide_datagram_protocol_ops_t rxq_ops = {
    .size = TIDE_DATAGRAM_PROTOCOL_OPS_SIZE,
    .connection_made = q_made,
    .datagram_received = q_received,
    .error_received = q_error,
    .connection_lost = q_lost,
};

static tide_datagram_protocol_t *rxq_factory(void *arg) { return &((rxq *)arg)->base; }

static void recv_abandon(tide__waiter *w) {
    recv_wait *rw = (recv_wait *)w;
    if (rw->q->waiting == rw)
        rw->q->waiting = NULL;
}

int tide_datagram_recv_await(tide_datagram_t *ep, void *buf, size_t size, size_t *len,
                             struct sockaddr *addr, socklen_t *addrlen) {
    if (len)
        *len = 0;
    if (ep == NULL)
        return tide_task_current() ? TIDE_EINVAL : TIDE_ENOTASK;
    int rc = tide__in_task(tide_datagram_get_loop(ep));
    if (rc != 0)
        return rc;
    tide_datagram_protocol_t *p = tide_datagram_get_protocol(ep);
    if (p->ops != &rxq_ops || (buf == NULL && size > 0))
        return TIDE_EINVAL;
    rxq *q = rxq_of(p);
    recv_wait rw = {.q = q, .buf = buf, .size = size, .len = len, .addr = addr, .alen = addrlen};
    tide__waiter_init(&rw.w, recv_abandon);
    if (q->head) {
        rx_item *it = q->head;
        q->head = it->next;
        if (q->head == NULL)
            q->tail = NULL;
        q->count--;
        rc = hand(&rw, it->err, it->data, it->len, (struct sockaddr *)&it->addr, it->alen);
        free(it);
        if (q->paused && q->count <= RXQ_MAX / 2) {
            q->paused = false;
            tide_datagram_resume_reading(ep);
        }
        return rc;
    }
    if (tide_datagram_is_closing(ep))
        return TIDE_ECLOSED;
    if (q->waiting)
        return TIDE_EBUSY; /* one receiving task at a time */
    q->waiting = &rw;
    return tide__task_wait(&rw.w);
}

static void drain_abandon(tide__waiter *w) { tide__queue_remove(&((tide__dgram_drain *)w)->node); }

int tide_datagram_sendto_await(tide_datagram_t *ep, const void *data, size_t len,
                               const struct sockaddr *addr, socklen_t addrlen) {
    if (ep == NULL)
        return tide_task_current() ? TIDE_EINVAL : TIDE_ENOTASK;
    int rc = tide__in_task(tide_datagram_get_loop(ep));
    if (rc != 0)
        return rc;
    rc = tide_datagram_sendto(ep, data, len, addr, addrlen);
    if (rc < 0 || !tide__datagram_write_paused(ep))
        return rc;
    tide__dgram_drain d;
    tide__waiter_init(&d.w, drain_abandon);
    tide__queue_init(&d.node);
    tide__datagram_drain_add(ep, &d);
    return tide__task_wait(&d.w);
}

/* ---- creating --------------------------------------------------------------------- */

typedef struct create_wait create_wait;

/* Outlives an abandoned wait: the creation's completion always comes. */
typedef struct create_req {
    create_wait *wait;
    rxq *q; /* tide's receive queue, until an endpoint owns it */
} create_req;

struct create_wait {
    tide__waiter w; /* first: on_abandon gets it */
    create_req *req;
    tide_datagram_t *ep;
};

static void create_abandon(tide__waiter *w) { ((create_wait *)w)->req->wait = NULL; }

static void created(tide_loop_t *loop, int status, tide_datagram_t *ep,
                    tide_datagram_protocol_t *protocol, void *arg) {
    (void)loop;
    (void)protocol;
    create_req *req = arg;
    create_wait *cw = req->wait;
    if (status < 0)
        free(req->q); /* never handed to an endpoint */
    free(req);
    if (cw == NULL) {
        tide_datagram_abort(ep); /* nobody wants it any more */
        return;
    }
    cw->ep = ep;
    tide__task_wake(&cw->w, status);
}

int tide_loop_create_datagram_endpoint_await(tide_loop_t *loop,
                                             tide_datagram_protocol_factory_cb factory,
                                             void *factory_arg,
                                             const tide_datagram_options_t *options,
                                             tide_datagram_t **ep) {
    if (ep)
        *ep = NULL;
    if (loop == NULL)
        return tide_task_current() ? TIDE_EINVAL : TIDE_ENOTASK;
    int rc = tide__in_task(loop);
    if (rc != 0)
        return rc;
    if (ep == NULL)
        return TIDE_EINVAL;
    create_req *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return TIDE_ENOMEM;
    if (factory == NULL) {
        if ((req->q = calloc(1, sizeof(*req->q))) == NULL) {
            free(req);
            return TIDE_ENOMEM;
        }
        req->q->base.ops = &rxq_ops;
        factory = rxq_factory;
        factory_arg = req->q;
    }
    create_wait cw = {.req = req};
    tide__waiter_init(&cw.w, create_abandon);
    req->wait = &cw;
    rc = tide_loop_create_datagram_endpoint(loop, factory, factory_arg, options, created, req);
    if (rc < 0) {
        free(req->q);
        free(req);
        return rc;
    }
    rc = tide__task_wait(&cw.w);
    if (rc == 0)
        *ep = cw.ep;
    return rc;
}
