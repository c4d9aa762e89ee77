/* Sending a file over a transport: asyncio's loop.sendfile. */
#ifndef TIDE_SENDFILE_H
#define TIDE_SENDFILE_H

#include <stddef.h>
#include <sys/types.h>

#include "transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Completion of a sendfile: status 0 or a negative code, and how many bytes of the
 * file went out (were handed to the kernel, or queued on the transport) either way. */
typedef void (*tide_sendfile_cb)(tide_transport_t *t, int status, size_t sent, void *arg);

/* Sends count bytes of the file fd from offset (count 0: to the end of the file),
 * after anything already written. On TCP and Unix sockets the kernel's sendfile
 * moves them without a copy through user space (whenever the transport's write
 * queue is empty); on every other transport (TLS, the memory pair) and where the
 * kernel refuses the file, tide reads it in 64 KiB pieces on the loop's thread and
 * writes them through the transport's own write path, pausing at its high-water mark
 * as a protocol would. fd stays the caller's and its file offset is not moved. The
 * transport's protocol keeps receiving its callbacks meanwhile (pause/resume_writing
 * included); until cb runs, writes and write_eof on t (directly or through a stream
 * writer) are refused with TIDE_EBUSY, as asyncio refuses them, since their bytes
 * would land inside the file's. A file shorter than asked ends the send early: cb's
 * `sent` says where. cb runs on a later iteration, before connection_lost if the
 * connection ends first. Returns 0, TIDE_EINVAL (bad arguments, fd not a readable
 * file), TIDE_EBUSY (a sendfile is already running on t), TIDE_ECLOSED / the
 * connection's error when t can no longer write, TIDE_ENOMEM. */
TIDE_EXTERN int tide_transport_sendfile(tide_transport_t *t, int fd, off_t offset, size_t count,
                                        tide_sendfile_cb cb, void *arg);

#ifdef __cplusplus
}
#endif
#endif
