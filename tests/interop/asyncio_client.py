#!/usr/bin/env python3
"""Interop: Python asyncio clients against tide's examples/echo_server.

Starts echo_server on a free loopback port (or a Unix socket), reads its
"listening on" line, then checks the echo with asyncio's streams and protocols:
several messages on one connection, a 4 MiB transfer (far more than the socket
buffers hold, so both sides' write queues and flow control come into play), half-close
(write_eof), concurrent clients. Finally sends SIGTERM and
expects the server to exit 0. Every wait has a deadline; any mismatch exits 1.

    asyncio_client.py PATH_TO_echo_server [--unix]
"""
import asyncio
import os
import sys
import tempfile

from interop import DEADLINE, EchoServer, check, run


async def exchange_messages(connect):
    """Several messages on one connection, each echoed before the next is sent."""
    reader, writer = await connect()
    for message in [b"hello", b"tide and asyncio", b"\x00\xffbinary\r\n", b"x" * 70000]:
        writer.write(message)
        await writer.drain()
        echo = await reader.readexactly(len(message))
        check(echo == message, f"echo of a {len(message)}-byte message differs")
    writer.close()
    await writer.wait_closed()
    print("ok: messages echoed one by one")


async def bulk_transfer(connect):
    """4 MiB written at once while reading concurrently, then EOF: every byte must
    come back, in order, before the server closes."""
    reader, writer = await connect()
    data = bytes((i * 7 + i // 251) & 0xFF for i in range(4 * 1024 * 1024))

    async def send():
        writer.write(data)
        await writer.drain()
        writer.write_eof()

    sender = asyncio.ensure_future(send())
    echo = await reader.read()  # until the server closes after our EOF
    await sender
    check(len(echo) == len(data), f"bulk echo: {len(echo)} bytes back of {len(data)}")
    check(echo == data, "bulk echo: the bytes differ")
    writer.close()
    await writer.wait_closed()
    print("ok: 4 MiB echoed, then EOF")


class EchoCheck(asyncio.Protocol):
    """asyncio's protocol side: send, half-close, expect the echo then EOF."""

    def __init__(self, message, done):
        self.message, self.done, self.received, self.eof = message, done, b"", False

    def connection_made(self, transport):
        transport.write(self.message)
        transport.write_eof()

    def data_received(self, data):
        self.received += data

    def eof_received(self):
        self.eof = True

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(exc)


async def protocol_clients(loop, connect_protocol):
    """Ten concurrent protocol clients, each with its own message."""
    async def one(i):
        done = loop.create_future()
        message = f"client {i} says hi ".encode() * (i + 1)
        transport, proto = await connect_protocol(lambda: EchoCheck(message, done))
        exc = await done
        check(exc is None, f"client {i}: connection lost with {exc!r}")
        check(proto.eof, f"client {i}: no EOF from the server")
        check(proto.received == message, f"client {i}: echo differs")
        transport.close()

    await asyncio.gather(*(one(i) for i in range(10)))
    print("ok: ten concurrent protocol clients with half-close")


async def main(server_bin, use_unix):
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "echo.sock")
        where = ["--unix", path] if use_unix else ["--host", "127.0.0.1", "--port", "0"]
        async with EchoServer([server_bin] + where) as server:
            if use_unix:
                check(server.address == path,
                      f"server listens on {server.address!r}, expected {path!r}")
                connect = lambda: asyncio.open_unix_connection(path)
                connect_protocol = lambda factory: loop.create_unix_connection(factory, path)
            else:
                host, port = server.address.rsplit(":", 1)
                connect = lambda: asyncio.open_connection(host, int(port))
                connect_protocol = lambda factory: loop.create_connection(factory, host, int(port))

            await asyncio.wait_for(exchange_messages(connect), DEADLINE)
            await asyncio.wait_for(bulk_transfer(connect), DEADLINE)
            await asyncio.wait_for(protocol_clients(loop, connect_protocol), DEADLINE)
            await server.stop(tail=3)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or (len(sys.argv) == 3 and sys.argv[2] != "--unix"):
        sys.exit(__doc__)
    run(main(sys.argv[1], len(sys.argv) == 3))
