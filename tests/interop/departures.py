"""Clients leaving examples/echo_server in every way hostile testing found, in each of
its styles, plain and over TLS: the server must report each loss, and SIGTERM must then
end it with status 0 (its loop returns, nothing left open). And --quiet, whose output
nobody reads, must keep serving however many connections fail.

The case that once hung a TLS server for ever: a client sends without ever reading
until the server, whose echo queue passed its high-water mark, stops reading from it;
then the client closes its socket with the echo unread, so the kernel resets the
connection while the server still holds queued output.

    departures.py ECHO_SERVER"""
import asyncio
import os
import select
import socket
import ssl
import struct
import sys
import tempfile

from interop import DEADLINE, SCALE, EchoServer, TestPKI, check, run

STYLES = ("protocol", "buffered", "streams", "callbacks")
CHUNK = 64 * 1024
# The echo queue, the kernel's buffers on both sides and the TLS layer's hold far less.
MOST = 256 * 1024 * 1024


def connect(port, context):
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname="localhost")
    return sock


def flood_then_leave(port, context):
    """Sends without reading until the server stops reading (the socket stays
    unwritable for a second), then closes with the echo unread: a reset."""
    sock = connect(port, context)
    sock.setblocking(False)
    data = os.urandom(CHUNK)
    sent = 0
    while sent < MOST:
        if not select.select([], [sock], [], 1.0 * SCALE)[1]:
            break  # the server stopped reading: its echo of us is queued
        try:
            sent += sock.send(data)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            pass
    check(sent < MOST, "the server never stopped reading from a client that does not read")
    sock.close()
    return sent


def echo_then_leave(port, context, reset):
    """A short exchange read back in full, then a clean close (TLS: close_notify
    first), or a reset when asked."""
    sock = connect(port, context)
    message = b"leaving soon\n" * 100
    sock.sendall(message)
    got = b""
    while len(got) < len(message):
        part = sock.recv(65536)
        check(part, "the server closed before echoing")
        got += part
    check(got == message, "wrong echo")
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    elif context is not None:
        sock = sock.unwrap()  # close_notify both ways: a clean end
    sock.close()


DEPARTURES = {
    "flood, never read, reset": lambda port, ctx: flood_then_leave(port, ctx),
    "full echo, then FIN": lambda port, ctx: echo_then_leave(port, ctx, False),
    "full echo, then reset": lambda port, ctx: echo_then_leave(port, ctx, True),
}


def resets(port, count):
    """count clients that connect and reset at once: each is a connection lost with an
    error on the server's side."""
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


async def quiet_means_quiet(echo_server):
    """--quiet with stdout a pipe that nobody reads: thousands of connections lost with
    an error must not fill it (a full pipe once blocked the server in write())."""
    async with EchoServer([echo_server, "--port", "0", "--quiet"], drain_log=False) as server:
        port = int(server.address.rsplit(":", 1)[1])
        await asyncio.wait_for(asyncio.to_thread(resets, port, 3000), DEADLINE * 4)
        await asyncio.wait_for(asyncio.to_thread(echo_then_leave, port, None, False), DEADLINE)
        await server.stop("echo_server --quiet after 3,000 resets, stdout never read")


async def main(echo_server):
    await quiet_means_quiet(echo_server)
    with tempfile.TemporaryDirectory() as tmp:
        pki = TestPKI(tmp)
        for tls in (False, True):
            context = pki.client_context() if tls else None
            extra = ["--tls-cert", pki.cert, "--tls-key", pki.key] if tls else []
            for style in STYLES:
                for name, leave in DEPARTURES.items():
                    what = f"echo_server --style {style}{' over TLS' if tls else ''}: {name}"
                    async with EchoServer([echo_server, "--port", "0", "--style", style,
                                           *extra]) as server:
                        port = int(server.address.rsplit(":", 1)[1])
                        await asyncio.wait_for(asyncio.to_thread(leave, port, context), DEADLINE)
                        # Each departure ends the connection on the server's side ...
                        await server.expect_log(" lost: " if "reset" in name else " closed",
                                                what)
                        # ... and then nothing keeps its loop from returning.
                        await server.stop(what, tail=1)


if __name__ == "__main__":
    run(main(sys.argv[1]))
