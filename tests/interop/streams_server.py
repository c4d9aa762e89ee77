#!/usr/bin/env python3
"""Interop: tide's examples/echo_client (task style) against a Python asyncio STREAMS
echo server.

Runs asyncio.start_server with a handler that reads until EOF, writes everything
back, drains and closes (asyncio's tcp_echo server, made to wait for the client's
half-close), on a free loopback port and on a Unix socket; prints the port. Then runs
echo_client with its default three-part message and with given messages; each run
must exit 0, log every step, and the server must have received exactly what was
sent. Every wait has a deadline; any mismatch exits 1.

    streams_server.py PATH_TO_echo_client
"""
import asyncio
import os
import sys
import tempfile

from interop import check, run, run_client, shown

DEFAULT_PARTS = ["This is the message. ", "It will be sent ", "in parts."]
MESSAGES = [None, "Hello World!", "streams server, tide task client", "y" * 50000]


received = []  # what the handler got, one entry per connection


async def handle_echo(reader, writer):
    data = await reader.read()  # until the client's EOF
    received.append(data)
    writer.write(data)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def converse(client_bin, where, address_args):
    for message in MESSAGES:
        parts = DEFAULT_PARTS if message is None else [message]
        args = address_args + ([] if message is None else [message])
        before = len(received)
        status, out, err = await run_client(client_bin, args)
        text = "".join(parts)
        name = shown(text)
        check(status == 0, f"{where}: client exited {status} for {name!r}: {err.strip()}")
        for part in parts:
            check(f"Send: '{part}'\n" in out, f"{where}: no 'Send' line for a part of {name!r}")
        check("Send: EOF\n" in out, f"{where}: client did not log its EOF")
        echoed = "".join(line[len("Received: '"):-1] for line in out.splitlines()
                         if line.startswith("Received: '"))
        check(echoed == text, f"{where}: logged echo differs for {name!r}")
        check(out.endswith("Close the connection\n"), f"{where}: no close line: {out[-80:]!r}")
        check(len(received) == before + 1 and received[-1] == text.encode(),
              f"{where}: the server did not receive {name!r} exactly")
        print(f"ok: {where}: {name!r} echoed")


async def main(client_bin):
    server = await asyncio.start_server(handle_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"asyncio streams echo server on 127.0.0.1:{port}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "echo.sock")
        unix_server = await asyncio.start_unix_server(handle_echo, path)
        async with server, unix_server:
            await converse(client_bin, "tcp", ["--host", "127.0.0.1", "--port", str(port)])
            await converse(client_bin, "unix", ["--unix", path])


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    run(main(sys.argv[1]))
