/* tide: asyncio's networking model in C. The umbrella header: include this one.
 * tide/ev.h (libev integration) is left out on purpose; include it yourself. */
#ifndef TIDE_H
#define TIDE_H

#include "tide/version.h"
#include "tide/errno.h"
#include "tide/loop.h"
#include "tide/protocol.h"
#include "tide/transport.h"
#include "tide/server.h"
#include "tide/datagram.h"
#include "tide/testing.h"
#include "tide/stream.h"
#include "tide/task.h"
#include "tide/future.h"
#include "tide/sync.h"
#include "tide/queue.h"
#include "tide/taskgroup.h"
#include "tide/executor.h"
#include "tide/tls.h"
#include "tide/framing.h"
#include "tide/http.h"
#include "tide/reply.h"
#include "tide/smtp.h"
#include "tide/ftp.h"
#include "tide/process.h"
#include "tide/sendfile.h"

#endif
