"""py_echo: the echo server in Python, on asyncio or uvloop, in protocol or streams
style, optionally over TLS (the ssl module, OpenSSL). Debian's python3-uvloop imports
only under /usr/bin/python3.

    py_echo.py --loop asyncio|uvloop --style protocol|streams [--port P]
               [--tls-cert FILE --tls-key FILE]

Prints "listening on 127.0.0.1:PORT" first; exits on SIGTERM/SIGINT."""
import argparse
import asyncio
import signal
import ssl
import sys


class Echo(asyncio.Protocol):
    """asyncio's echo protocol, with flow control: stop reading while the peer does
    not read."""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()


async def handle(reader, writer):
    try:
        while True:
            data = await reader.read(262144)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    writer.close()


async def main(args):
    loop = asyncio.get_running_loop()
    ctx = None
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
    if args.style == "protocol":
        server = await loop.create_server(Echo, "127.0.0.1", args.port, ssl=ctx,
                                          backlog=4096)
    else:
        server = await asyncio.start_server(handle, "127.0.0.1", args.port, ssl=ctx,
                                            backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on 127.0.0.1:{port}", flush=True)
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set_result, None)
    await stop
    server.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    p.add_argument("--style", choices=["protocol", "streams"], default="protocol")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    a = p.parse_args()
    if a.loop == "uvloop":
        import uvloop
        uvloop.install()
    asyncio.run(main(a))
    sys.exit(0)
