#!/usr/bin/env python3
"""Interop: tide's examples/echo_client_protocol against a Python asyncio echo server.

Runs an asyncio echo server (a Protocol: echo every chunk, close on EOF) on a free
loopback port, prints that port, then runs echo_client_protocol against it with
several messages, over TCP and over a Unix socket; each run must exit 0 and print the
echo. Then checks the failure path: against a port nobody listens on, the client must
exit 1 with tide's "connection refused" message. Every wait has a deadline; any
mismatch exits 1.

    asyncio_server.py PATH_TO_echo_client_protocol
"""
import asyncio
import os
import socket
import sys
import tempfile

from interop import DEADLINE, Failure, run, run_client, shown

MESSAGES = ["Hello World!", "asyncio server, tide client", "x" * 100000, "last one"]


class EchoServer(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        return False  # close once the echo is flushed


async def converse(client_bin, where, address_args):
    for message in MESSAGES:
        args = address_args + ["--timeout", str(DEADLINE / 2), message]
        status, out, err = await run_client(client_bin, args)
        name = shown(message)
        if status != 0:
            raise Failure(f"{where}: client exited {status} for {name!r}: {err.strip()}")
        if f"received: {message}\n" not in out:
            raise Failure(f"{where}: client output lacks the echo of {name!r}: {out[:200]!r}")
        print(f"ok: {where}: {name!r} echoed")


async def main(client_bin):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoServer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"asyncio echo server on 127.0.0.1:{port}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "echo.sock")
        unix_server = await loop.create_unix_server(EchoServer, path)
        async with server, unix_server:
            await converse(client_bin, "tcp", ["--host", "127.0.0.1", "--port", str(port)])
            await converse(client_bin, "unix", ["--unix", path])

    # A port that was just bound and released: nothing listens there now.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    status, out, err = await run_client(client_bin, ["--port", str(free_port), "hi"])
    if status != 1 or "connection refused" not in err:
        raise Failure(f"refused connect: exit {status}, stderr {err.strip()!r}")
    print(f"ok: refused connect reported: {err.strip()}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    run(main(sys.argv[1]))
