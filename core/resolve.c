/* Name resolution off the loop thread.
 *
 * A literal address (or a NULL host) is resolved at once with AI_NUMERICHOST, since
 * that never touches the network; the result is still delivered through a deferred
 * call so the caller is never called back from inside tide__resolve_start. Anything
 * else runs getaddrinfo() on a worker thread (tide__loop_run_in_thread).
 *
 * Threading: the worker touches only the request's host, service, hints and its two
 * result fields; everything else (the cancelled flag, the callback) is read and
 * written on the loop's thread, in start, cancel and the completion. A cancelled
 * threaded request cannot be freed until the worker is done, so the completion frees
 * it; the loop delivers worker completions even while closing. */
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_int.h"

struct tide__resolve {
    tide_loop_t *loop;
    char *host;
    char *service;
    struct addrinfo hints;
    tide__resolve_cb cb;
    void *arg;
    int status;
    struct addrinfo *res;
    tide__call call; /* delivers a synchronous result */
    bool threaded;
    bool cancelled;
    bool delivering;
};

static char *dup_or_null(const char *s, bool *failed) {
    if (s == NULL)
        return NULL;
    char *copy = strdup(s);
    if (copy == NULL)
        *failed = true;
    return copy;
}

static void req_free(tide__resolve *req) {
    if (req->res)
        freeaddrinfo(req->res);
    free(req->host);
    free(req->service);
    free(req);
}

static int map_gai(int rc, int saved_errno) {
    if (rc == EAI_SYSTEM)
        return saved_errno ? tide_err_from_errno(saved_errno) : TIDE_EAI_OTHER;
    return tide_err_from_gai(rc);
}

static void deliver(tide__resolve *req) {
    struct addrinfo *res = req->res;
    req->res = NULL; /* the callee owns the list now */
    req->delivering = true;
    req->cb(req, req->status, req->status == 0 ? res : NULL, req->arg);
    if (req->status != 0 && res)
        freeaddrinfo(res);
    req_free(req);
}

static void on_sync_result(tide__call *call) {
    deliver(TIDE__QUEUE_DATA(call, tide__resolve, call));
}

static void work(void *arg) {
    tide__resolve *req = arg;
    errno = 0;
    int rc = getaddrinfo(req->host, req->service, &req->hints, &req->res);
    req->status = rc == 0 ? 0 : map_gai(rc, errno);
    if (rc != 0)
        req->res = NULL;
}

static void work_done(tide_loop_t *loop, void *arg) {
    tide__resolve *req = arg;
    (void)loop;
    if (req->cancelled)
        req_free(req);
    else
        deliver(req);
}

int tide__resolve_start(tide_loop_t *loop, const char *host, const char *service, int family,
                        int socktype, int flags, tide__resolve_cb cb, void *arg,
                        tide__resolve **out) {
    if (loop == NULL || cb == NULL || (host == NULL && service == NULL))
        return TIDE_EINVAL;
    tide__resolve *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return TIDE_ENOMEM;
    bool failed = false;
    req->loop = loop;
    req->host = dup_or_null(host, &failed);
    req->service = dup_or_null(service, &failed);
    if (failed) {
        req_free(req);
        return TIDE_ENOMEM;
    }
    req->cb = cb;
    req->arg = arg;
    req->hints.ai_family = family;
    req->hints.ai_socktype = socktype;
    req->hints.ai_flags = flags;
    tide__call_init(&req->call, on_sync_result);

    /* Literal addresses need no resolver; only their failure sends us to a thread,
     * where the full lookup gives the definitive answer. */
    struct addrinfo numeric = req->hints;
    numeric.ai_flags |= AI_NUMERICHOST;
    errno = 0;
    int rc = getaddrinfo(req->host, req->service, &numeric, &req->res);
    if (rc == 0 || host == NULL) {
        req->status = rc == 0 ? 0 : map_gai(rc, errno);
        if (rc != 0)
            req->res = NULL;
        tide__loop_defer(loop, &req->call);
    } else {
        req->res = NULL;
        req->threaded = true;
        rc = tide__loop_run_in_thread(loop, work, work_done, req);
        if (rc < 0) {
            req_free(req);
            return rc;
        }
    }
    if (out)
        *out = req;
    return 0;
}

void tide__resolve_cancel(tide__resolve *req) {
    if (req == NULL || req->delivering || req->cancelled)
        return;
    if (req->threaded) {
        req->cancelled = true; /* work_done frees it */
        return;
    }
    tide__loop_undefer(&req->call);
    req_free(req);
}
