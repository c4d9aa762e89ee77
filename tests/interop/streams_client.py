#!/usr/bin/env python3
"""Interop: Python asyncio STREAMS clients against tide's examples/echo_server in a
streams style (--style streams: a task per connection; --style callbacks).

Starts echo_server on a free loopback port, reads its "listening on" line, then with
asyncio.open_connection: writes a message in several parts, half-closes (write_eof),
reads until EOF and compares; the same with a 1 MiB message (more than the socket
buffers hold, so the server's drain and flow control matter) and with twenty
concurrent clients. Finally sends SIGTERM and expects exit status 0. Every wait has a
deadline; any mismatch exits 1.

    streams_client.py PATH_TO_echo_server STYLE
"""
import asyncio
import sys

from interop import DEADLINE, EchoServer, check, run


async def echo_in_parts(host, port, parts, what):
    """asyncio's tcp_echo_client: write the parts, drain, EOF, read everything back."""
    reader, writer = await asyncio.open_connection(host, port)
    for part in parts:
        writer.write(part)
        await writer.drain()
    check(writer.can_write_eof(), f"{what}: cannot write EOF")
    writer.write_eof()
    echo = await reader.read()  # until the server closes after our EOF
    writer.close()
    await writer.wait_closed()
    sent = b"".join(parts)
    check(len(echo) == len(sent), f"{what}: {len(echo)} bytes back of {len(sent)}")
    check(echo == sent, f"{what}: the echo differs")


async def main(server_bin, style):
    args = [server_bin, "--host", "127.0.0.1", "--port", "0", "--style", style]
    async with EchoServer(args) as server:
        host, port = server.address.rsplit(":", 1)
        port = int(port)

        parts = [b"This is the message. ", b"It will be sent ", b"in parts."]
        await asyncio.wait_for(echo_in_parts(host, port, parts, "parts"), DEADLINE)
        print("ok: message in three parts echoed, then EOF")

        big = bytes((i * 13 + i // 509) & 0xFF for i in range(1024 * 1024))
        await asyncio.wait_for(
            echo_in_parts(host, port, [big[:300000], big[300000:]], "1 MiB"), DEADLINE)
        print("ok: 1 MiB echoed, then EOF")

        await asyncio.wait_for(asyncio.gather(*(
            echo_in_parts(host, port, [f"client {i} ".encode() * (i + 1), b"end"], f"client {i}")
            for i in range(20))), DEADLINE)
        print("ok: twenty concurrent stream clients")

        await server.stop(f"echo_server --style {style}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    run(main(sys.argv[1], sys.argv[2]))
