/* Streams: asyncio's StreamReader and StreamWriter, with completion callbacks.
 *
 * A stream is one connection seen through a reader (buffered input: read, readline,
 * readexactly, readuntil) and a writer (write, drain, close). open_connection,
 * start_server and their Unix and existing-socket variants make the pair; a reader
 * can also be made alone (tide_reader_new) and fed by hand, as in asyncio's tests.
 *
 * Completions follow tide's rules: a starting call that returns an error never calls
 * its callback; a call that returns 0 calls it exactly once, always on a later loop
 * iteration (never inside the starting call); data handed to a callback is lent for
 * the call.
 *
 * Ownership. The reader and writer of a connection are one object, owned by the user
 * from the moment tide hands them over (the open callback or the client-connected
 * callback) until the user calls tide_writer_close() or tide_writer_abort(); every
 * stream must be closed that way exactly once, even after the connection was lost
 * (tide_loop_close() reports streams never closed). After the close the pointers stay
 * valid until the current callback returns and for as long as reads, drains or
 * wait_closed calls are pending; callbacks of those may still use both objects (and
 * start new operations, which extend this). Once nothing is pending and the
 * connection is gone, tide frees the pair: do not keep the pointers past the last
 * callback.
 *
 * Where tide is stricter than asyncio:
 * - A limit overrun never discards data: readline/readuntil report TIDE_ELIMIT and
 *   leave the buffer untouched (asyncio's readline clears it); skip, discard_until,
 *   peek and read let the caller recover.
 * - Bytes received before a connection error are delivered before the error: reads
 *   are served from the buffer first, and the error is reported once the buffer no
 *   longer satisfies a read (asyncio raises at once, dropping them).
 * - drain completes with an error once the connection is lost or its queued data was
 *   discarded (asyncio returns normally after an abort), and with the real error as
 *   soon as a write has failed. A drain started once the writer is closing (after
 *   tide_writer_close, or the transport's own close after EOF) completes with
 *   TIDE_ECLOSED, never 0: nothing more is sent that it could wait for (asyncio yields
 *   once, then raises ConnectionResetError if the connection was lost meanwhile, and
 *   returns normally if it was not).
 * - A second concurrent read is refused with TIDE_EBUSY (the pending one goes on).
 * - The end of a read distinguishes a clean end before any byte (TIDE_EOF) from a
 *   record cut short (TIDE_EINCOMPLETE, with the partial bytes). */
#ifndef TIDE_STREAM_H
#define TIDE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server.h"
#include "transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A stream's two ends, asyncio's StreamReader and StreamWriter (opaque; made by
 * open_connection, start_server or open_socket, freed by tide once closed). */
typedef struct tide_reader tide_reader_t;
typedef struct tide_writer tide_writer_t;

/* asyncio's default limit: the longest line readline/readuntil accept (without the
 * separator), and the reader's flow-control unit (reading pauses above twice it). */
#define TIDE_STREAM_DEFAULT_LIMIT ((size_t)64 * 1024)

/* tide_reader_read(r, TIDE_READ_ALL, ...) reads until EOF (asyncio's read(-1)). */
#define TIDE_READ_ALL SIZE_MAX

/* Completion of a read. status 0: data/len is the result (len is 0 only when 0 bytes
 * were asked for, or read-all found nothing before EOF). Otherwise a negative code:
 * - TIDE_EOF: the stream ended (cleanly) with nothing buffered; len 0.
 * - TIDE_EINCOMPLETE: the stream ended cleanly before the request was satisfied;
 *   data/len are the partial bytes, which are consumed.
 * - the connection's error (TIDE_ECONNRESET, ...) or the one given to
 *   tide_reader_set_exception, once the buffered bytes no longer satisfy the read;
 *   data/len are the partial bytes (consumed), possibly none.
 * - TIDE_ELIMIT (readline, readuntil): no separator within the limit. Nothing is
 *   consumed; data is NULL and len is the number of bytes up to and including the
 *   separator when one was found beyond the limit (tide_reader_skip(r, len) drops
 *   exactly that record), or 0 when none has arrived (tide_reader_buffered() says how
 *   much is waiting; tide_reader_discard_until() drops up to the next separator).
 * data is valid only during the call. */
typedef void (*tide_read_cb)(tide_reader_t *reader, int status, const void *data, size_t len,
                             void *arg);

/* Completion of a drain or wait_closed. */
typedef void (*tide_writer_cb)(tide_writer_t *writer, int status, void *arg);

/* Completion of an open: on success status is 0 and the stream is the caller's (close
 * it with tide_writer_close); on failure reader and writer are NULL. */
typedef void (*tide_open_cb)(tide_loop_t *loop, int status, tide_reader_t *reader,
                             tide_writer_t *writer, void *arg);

/* start_server's per-connection callback (asyncio's client_connected_cb), called from
 * the connection's connection_made; the stream is the callee's from then on. */
typedef void (*tide_client_connected_cb)(tide_reader_t *reader, tide_writer_t *writer, void *arg);

/* ---- opening streams ---------------------------------------------------------------- */

/* asyncio's open_connection: tide_loop_create_connection (same host, port, options
 * and cancellation through *req) with a stream whose reader has the given limit.
 * Returns 0 (cb follows on a later iteration), TIDE_EINVAL (limit 0, bad arguments),
 * TIDE_ENOMEM; connection failures reach cb. */
TIDE_EXTERN int tide_loop_open_connection(tide_loop_t *loop, const char *host, uint16_t port,
                                          size_t limit, const tide_connect_options_t *options,
                                          tide_open_cb cb, void *arg, tide_connect_t **req);

/* The Unix-socket variant (tide_loop_create_unix_connection; options may be NULL). */
TIDE_EXTERN int tide_loop_open_unix_connection(tide_loop_t *loop, const char *path, size_t limit,
                                               const tide_connect_options_t *options,
                                               tide_open_cb cb, void *arg, tide_connect_t **req);

/* Streams over an already connected stream socket (one end of a socketpair, ...),
 * which tide owns once the call returned 0, even when cb reports an error (as
 * tide_loop_connect_socket, whose TLS options these take); on a returned error the
 * caller keeps it. The accepted variant marks the stream as server side. */
TIDE_EXTERN int tide_loop_open_socket(tide_loop_t *loop, int fd, size_t limit,
                                      const tide_connect_options_t *options, tide_open_cb cb,
                                      void *arg);
TIDE_EXTERN int tide_loop_open_accepted_socket(tide_loop_t *loop, int fd, size_t limit,
                                               const tide_connect_options_t *options,
                                               tide_open_cb cb, void *arg);

/* asyncio's start_server: tide_loop_create_server with a fresh stream per client;
 * cb(reader, writer, arg) runs for each. Close the server with tide_server_close as
 * usual (clients stay open, as in asyncio). Returns what create_server returns, or
 * TIDE_EINVAL for limit 0 or a NULL cb. */
TIDE_EXTERN int tide_loop_start_server(tide_loop_t *loop, const char *host, uint16_t port,
                                       size_t limit, const tide_server_options_t *options,
                                       tide_client_connected_cb cb, void *arg,
                                       tide_server_t **server);

/* The Unix-socket variant (tide_loop_create_unix_server). */
TIDE_EXTERN int tide_loop_start_unix_server(tide_loop_t *loop, const char *path, size_t limit,
                                            const tide_server_options_t *options,
                                            tide_client_connected_cb cb, void *arg,
                                            tide_server_t **server);

/* ---- the reader ---------------------------------------------------------------------- */

/* A reader without a connection, fed with tide_reader_feed_data / feed_eof. limit must
 * be at least 1 (asyncio: limit <= 0 is an error). Returns 0, TIDE_EINVAL, TIDE_ENOMEM.
 * Free it with tide_reader_free. */
TIDE_EXTERN int tide_reader_new(tide_loop_t *loop, size_t limit, tide_reader_t **reader);

/* Frees a reader made by tide_reader_new; a pending read is dropped without its
 * callback. Safe inside the reader's own callback. Readers of a connection are freed
 * with their writer (see Ownership) and are left alone here. NULL is a no-op. */
TIDE_EXTERN void tide_reader_free(tide_reader_t *reader);

/* Reads up to n bytes: as soon as any byte is buffered, at most n of them (n =
 * TIDE_READ_ALL: everything until EOF, however much that is: flow control is off
 * while it waits). n = 0 completes with 0 bytes. Returns 0, TIDE_EBUSY (another read
 * is pending; it is not affected), TIDE_EINVAL. */
TIDE_EXTERN int tide_reader_read(tide_reader_t *reader, size_t n, tide_read_cb cb, void *arg);

/* Reads exactly n bytes (n may exceed the limit; reading stays on while it waits).
 * At a clean EOF with fewer: TIDE_EINCOMPLETE with the partial bytes. */
TIDE_EXTERN int tide_reader_readexactly(tide_reader_t *reader, size_t n, tide_read_cb cb,
                                        void *arg);

/* Reads through the next separator (included in the result). The limit bounds the
 * bytes before the separator: `limit` bytes plus the separator are accepted, one more
 * is TIDE_ELIMIT. At a clean EOF without separator: TIDE_EINCOMPLETE with the partial
 * bytes, unless they run past the limit (TIDE_ELIMIT: the overrun is reported first).
 * The separator is copied. TIDE_EINVAL for an empty separator. */
TIDE_EXTERN int tide_reader_readuntil(tide_reader_t *reader, const void *sep, size_t seplen,
                                      tide_read_cb cb, void *arg);

/* readuntil with several separators (asyncio 3.13): the match that ends first wins.
 * TIDE_EINVAL when n is 0 or a separator is empty. */
TIDE_EXTERN int tide_reader_readuntil_any(tide_reader_t *reader, const tide_iovec_t *seps, size_t n,
                                          tide_read_cb cb, void *arg);

/* readuntil("\n"), except at a clean EOF: the last line without its newline comes
 * back with status 0 (as asyncio), and TIDE_EOF follows. TIDE_ELIMIT leaves the buffer
 * untouched (asyncio's readline discards it). */
TIDE_EXTERN int tide_reader_readline(tide_reader_t *reader, tide_read_cb cb, void *arg);

/* Drops bytes through the next separator, however far away (no limit), keeping the
 * buffer bounded while it waits: status 0, data NULL and len = bytes dropped
 * (separator included); at the end of the stream everything is dropped and the
 * status is TIDE_EINCOMPLETE or the connection's error (bytes fed after a stored
 * error, before the completion runs, still count: they may complete the separator).
 * A pending read like any other. */
TIDE_EXTERN int tide_reader_discard_until(tide_reader_t *reader, const void *sep, size_t seplen,
                                          tide_read_cb cb, void *arg);

/* Drops the first n buffered bytes at once. Returns 0, TIDE_EINVAL when fewer than n
 * are buffered (nothing dropped), TIDE_EBUSY while a read is pending. */
TIDE_EXTERN int tide_reader_skip(tide_reader_t *reader, size_t n);

/* The buffered bytes, without consuming them: valid until the next call on the reader
 * or the return to the loop. *len receives the count; NULL when nothing is buffered. */
TIDE_EXTERN const void *tide_reader_peek(const tide_reader_t *reader, size_t *len);

/* Bytes buffered and not yet consumed. */
TIDE_EXTERN size_t tide_reader_buffered(const tide_reader_t *reader);

/* The reader's limit. */
TIDE_EXTERN size_t tide_reader_get_limit(const tide_reader_t *reader);

/* True when EOF was fed and the buffer is empty (the error is not considered, as in
 * asyncio). */
TIDE_EXTERN bool tide_reader_at_eof(const tide_reader_t *reader);

/* The stored error (set by tide_reader_set_exception or the connection's loss), or 0.
 * Unlike asyncio, buffered bytes are still served first: this is the fail-fast query. */
TIDE_EXTERN int tide_reader_exception(const tide_reader_t *reader);

/* Stores err (negative) and fails a pending read that the buffer cannot satisfy.
 * Returns 0 or TIDE_EINVAL. */
TIDE_EXTERN int tide_reader_set_exception(tide_reader_t *reader, int err);

/* Appends bytes (copied) and completes a pending read they satisfy. An empty feed does
 * nothing. Returns 0, TIDE_EINVAL after feed_eof (asyncio asserts; an empty feed too),
 * TIDE_ENOMEM. A stored exception does not stop feeds. */
TIDE_EXTERN int tide_reader_feed_data(tide_reader_t *reader, const void *data, size_t len);

/* Marks the end of the stream. Idempotent. */
TIDE_EXTERN void tide_reader_feed_eof(tide_reader_t *reader);

/* The writer of the reader's connection, or NULL for a reader made by tide_reader_new. */
TIDE_EXTERN tide_writer_t *tide_reader_get_writer(const tide_reader_t *reader);

/* ---- the writer ---------------------------------------------------------------------- */

/* tide_transport_write on the stream's transport; after the connection was lost:
 * its error, or TIDE_ECLOSED after a clean end. No flow control by itself: call drain. */
TIDE_EXTERN int tide_writer_write(tide_writer_t *writer, const void *data, size_t len);

/* tide_transport_writelines, with the same rules. */
TIDE_EXTERN int tide_writer_writelines(tide_writer_t *writer, const tide_iovec_t *bufs, size_t n);

/* tide_transport_write_eof (half-close; reading goes on). */
TIDE_EXTERN int tide_writer_write_eof(tide_writer_t *writer);
TIDE_EXTERN bool tide_writer_can_write_eof(const tide_writer_t *writer);

/* Completes once the transport's write queue is at or below its low-water mark: with
 * 0 on a later iteration when writing is not paused, else when it resumes. With an
 * error instead: the reader's stored error, the transport's error as soon as a write
 * failed, the connection's error once it was lost, TIDE_ECONNABORTED when it was
 * aborted (queued data discarded), TIDE_ECLOSED when started after a clean end or
 * once the writer is closing (tide_writer_close, or the transport closing itself after
 * EOF); a drain already waiting when the close came still completes with 0 once the
 * queue is flushed below the mark. Any number of drains may wait at once. Returns 0 or
 * TIDE_ENOMEM (cb then never runs). */
TIDE_EXTERN int tide_writer_drain(tide_writer_t *writer, tide_writer_cb cb, void *arg);

/* tide_writer_drain that answers at once when there is nothing to wait for (as
 * uv_try_write does for a write): returns 1 when writing is not paused and the
 * connection is usable (cb never runs: the drain is done already), or the error the
 * drain would complete with (the same codes as tide_writer_drain; cb never runs).
 * Only while writing is paused does it start a drain: then it returns 0 and cb runs
 * once the queue is at or below the low-water mark, or with an error, as for
 * tide_writer_drain. TIDE_EINVAL for a NULL writer or cb, TIDE_ENOMEM (cb never runs).
 * Saves a deferred completion per message in a read-write-drain loop. */
TIDE_EXTERN int tide_writer_try_drain(tide_writer_t *writer, tide_writer_cb cb, void *arg);

/* Closes the transport gracefully (queued data is flushed first) and hands the stream
 * back to tide (see Ownership). Idempotent. NULL is a no-op. */
TIDE_EXTERN void tide_writer_close(tide_writer_t *writer);

/* Aborts the transport (queued data is discarded) and hands the stream back to tide.
 * Idempotent. NULL is a no-op. */
TIDE_EXTERN void tide_writer_abort(tide_writer_t *writer);

/* True once the transport is closing or the connection is gone. */
TIDE_EXTERN bool tide_writer_is_closing(const tide_writer_t *writer);

/* Completes once connection_lost has run (at once, on a later iteration, if it already
 * has), with its status: 0 for a clean end (also after an abort, as asyncio), or the
 * connection's error. Any number may wait. Returns 0 or TIDE_ENOMEM. */
TIDE_EXTERN int tide_writer_wait_closed(tide_writer_t *writer, tide_writer_cb cb, void *arg);

/* The current transport (for tide_transport_get_peername, get_fd, buffer limits, ...):
 * NULL once the connection was lost. A later start_tls replaces it. */
TIDE_EXTERN tide_transport_t *tide_writer_get_transport(const tide_writer_t *writer);

/* The stream's reader and loop. */
TIDE_EXTERN tide_reader_t *tide_writer_get_reader(const tide_writer_t *writer);
TIDE_EXTERN tide_loop_t *tide_writer_get_loop(const tide_writer_t *writer);

/* True for streams from start_server and open_accepted_socket (start_tls needs it). */
TIDE_EXTERN bool tide_writer_is_server_side(const tide_writer_t *writer);

/* asyncio's StreamWriter.start_tls: upgrades the stream's connection to TLS
 * (tide_loop_start_tls for the stream); the side follows the configuration. Bytes the
 * reader holds unread go to the TLS layer, never to a read: plaintext a peer pipelined
 * before the upgrade (STARTTLS injection) breaks the handshake instead of reaching the
 * application. Writes made meanwhile are sent encrypted once the handshake is done.
 * cb(status) runs once the handshake ended; after a failure the connection is closed
 * and reads and writes report the failure. Returns 0, TIDE_EBUSY (an upgrade is in
 * progress or the stream already is TLS), TIDE_ECLOSED (connection lost or closing),
 * or what tide_loop_start_tls returns. */
TIDE_EXTERN int tide_writer_start_tls(tide_writer_t *writer, tide_tls_config_t *config,
                                      const char *server_hostname,
                                      const tide_tls_session_t *session, tide_writer_cb cb,
                                      void *arg);

/* ---- task style: the _await forms ----------------------------------------------------
 *
 * Each callback-form call above has a form that suspends only the calling task (see
 * tide/task.h) and returns the completion's status; results come back through
 * out-parameters. Outside a task they return TIDE_ENOTASK with nothing started, and
 * TIDE_EINVAL when the object belongs to another loop than the task. Besides the
 * callback form's codes they return TIDE_ECANCELLED (the task was cancelled) or
 * TIDE_ETIMEOUT (its deadline passed): the operation is then withdrawn with nothing
 * consumed, so the reader or writer can be used again at once.
 *
 * Like asyncio's, a read whose bytes are already buffered (the whole record, for the
 * separator reads; n bytes for readexactly) returns them without suspending the task:
 * no loop turn passes, and a cancellation or deadline is then not seen by that call
 * but by the next one that waits. The end of the stream, an error or a limit overrun
 * is reported after a wait, as for a read that had to wait for its bytes.
 *
 * Read results are in the caller's buffer when the task resumes (copied there, or
 * read there by the transport when the reader was empty), so they stay valid as long
 * as the buffer does; only tide_reader_peek_await lends the reader's own bytes. *len
 * may be NULL; it receives the byte count also for the partial results of
 * TIDE_EINCOMPLETE and connection errors, and for TIDE_ELIMIT the length of the record
 * beyond the limit (nothing copied), else 0. */

/* Reads up to n bytes into buf (asyncio's read(n); read to EOF by looping until
 * TIDE_EOF). TIDE_EINVAL for n == TIDE_READ_ALL. */
TIDE_EXTERN int tide_reader_read_await(tide_reader_t *reader, void *buf, size_t n, size_t *len);

/* Zero-copy reading in a task: waits until at least one byte is buffered, then lends
 * every buffered byte in place (*data, *len; nothing is consumed or copied). The bytes
 * stay where they are, valid, until the task calls tide_reader_consume or another
 * _await read on this reader, which ends the loan; until then the stream cannot be
 * freed, so always end it (tide_reader_consume(reader, 0) consumes nothing). Returns
 * 0 (*len > 0), TIDE_EOF at the end (*data NULL, *len 0), the stored error, TIDE_EBUSY
 * while a callback-form read is pending, or the codes every _await form returns.
 * data and len must not be NULL (TIDE_EINVAL). */
TIDE_EXTERN int tide_reader_peek_await(tide_reader_t *reader, const void **data, size_t *len);

/* Drops the first n of the bytes tide_reader_peek_await lent and ends the loan (with
 * no loan: tide_reader_skip). Returns 0, TIDE_EINVAL when fewer than n are buffered
 * (nothing dropped, the loan goes on), TIDE_EBUSY while a read is pending. */
TIDE_EXTERN int tide_reader_consume(tide_reader_t *reader, size_t n);

/* Reads exactly n bytes into buf (which holds n). */
TIDE_EXTERN int tide_reader_readexactly_await(tide_reader_t *reader, void *buf, size_t n,
                                              size_t *len);

/* Reads through the separator into buf, which may have any size cap > 0: a record
 * whose separator starts beyond the reader's limit, or that (with its separator) is
 * longer than cap, is TIDE_ELIMIT with nothing consumed, as in the callback form, so a
 * record is never cut. A buffer of the limit plus seplen takes every record the reader
 * accepts. TIDE_EINVAL for cap 0. */
TIDE_EXTERN int tide_reader_readuntil_await(tide_reader_t *reader, const void *sep, size_t seplen,
                                            void *buf, size_t cap, size_t *len);

/* readuntil_await with several separators (the match that ends first wins). */
TIDE_EXTERN int tide_reader_readuntil_any_await(tide_reader_t *reader, const tide_iovec_t *seps,
                                                size_t n, void *buf, size_t cap, size_t *len);

/* Reads a line into buf: with its newline, or the last one without it at EOF; then
 * TIDE_EOF. A line longer than cap (newline included) or than the limit is TIDE_ELIMIT
 * with nothing consumed, as for readuntil_await. */
TIDE_EXTERN int tide_reader_readline_await(tide_reader_t *reader, void *buf, size_t cap,
                                           size_t *len);

/* Drops bytes through the separator; *len receives how many were dropped. The one
 * exception to "withdrawn with nothing consumed": when cancelled or timed out, the
 * bytes it already dropped while waiting stay dropped (*len is then 0). */
TIDE_EXTERN int tide_reader_discard_until_await(tide_reader_t *reader, const void *sep,
                                                size_t seplen, size_t *len);

/* Waits until the write queue is at or below its low-water mark (asyncio's drain).
 * Like asyncio's, it returns 0 without suspending the task when writing is not paused
 * and the connection is usable: a cancellation or deadline is then not seen here. */
TIDE_EXTERN int tide_writer_drain_await(tide_writer_t *writer);

/* Waits until the connection is gone; returns its status (0 for a clean end). */
TIDE_EXTERN int tide_writer_wait_closed_await(tide_writer_t *writer);

/* tide_writer_start_tls, waiting for the handshake; returns its status. Cancelled or
 * timed out, the connection is aborted (a half-made TLS session cannot be resumed). */
TIDE_EXTERN int tide_writer_start_tls_await(tide_writer_t *writer, tide_tls_config_t *config,
                                            const char *server_hostname,
                                            const tide_tls_session_t *session);

/* asyncio's open_connection and its variants: on success (0) *reader and *writer are
 * the caller's stream (close it with tide_writer_close); otherwise both are NULL. A
 * cancelled or timed-out open leaves nothing open: the connect is cancelled, or a
 * stream made meanwhile is aborted. open_socket owns fd once it was started (any
 * status except TIDE_ENOTASK, TIDE_EINVAL and TIDE_ENOMEM). */
TIDE_EXTERN int tide_loop_open_connection_await(tide_loop_t *loop, const char *host,
                                                uint16_t port, size_t limit,
                                                const tide_connect_options_t *options,
                                                tide_reader_t **reader, tide_writer_t **writer);
TIDE_EXTERN int tide_loop_open_unix_connection_await(tide_loop_t *loop, const char *path,
                                                     size_t limit,
                                                     const tide_connect_options_t *options,
                                                     tide_reader_t **reader,
                                                     tide_writer_t **writer);
TIDE_EXTERN int tide_loop_open_socket_await(tide_loop_t *loop, int fd, size_t limit,
                                            const tide_connect_options_t *options,
                                            tide_reader_t **reader, tide_writer_t **writer);
TIDE_EXTERN int tide_loop_open_accepted_socket_await(tide_loop_t *loop, int fd, size_t limit,
                                                     const tide_connect_options_t *options,
                                                     tide_reader_t **reader,
                                                     tide_writer_t **writer);

/* ---- end of the task style ------------------------------------------------------------ */

#ifdef __cplusplus
}
#endif
#endif
