/* Opt-in libev integration: attach tide to a libev loop the application already runs,
 * or reach the libev loop under a tide loop. This is the only public header that
 * includes <ev.h>; tide.h leaves it out on purpose. */
#ifndef TIDE_EV_H
#define TIDE_EV_H

#include <ev.h>

#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Creates a tide loop on top of an existing libev loop, which the caller keeps owning
 * and may keep running with ev_run(); tide's watchers are registered on it. Returns 0
 * or TIDE_ENOMEM. tide_loop_close() then stops tide's watchers but leaves ev alive. */
TIDE_EXTERN int tide_loop_new_from_ev(struct ev_loop *ev, tide_loop_t **loop);

/* The libev loop under a tide loop (owned by tide unless it was attached). */
TIDE_EXTERN struct ev_loop *tide_loop_get_ev(tide_loop_t *loop);

#ifdef __cplusplus
}
#endif
#endif
