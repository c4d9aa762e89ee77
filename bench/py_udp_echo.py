"""py_udp_echo: asyncio's UDP echo server (DatagramProtocol), on asyncio or uvloop.
Debian's python3-uvloop imports only under /usr/bin/python3.

    py_udp_echo.py --loop asyncio|uvloop [--port P]

Prints "listening on 127.0.0.1:PORT" first; exits on SIGTERM/SIGINT."""
import argparse
import asyncio
import signal


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


async def main(port):
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", port))
    print(f"listening on 127.0.0.1:{transport.get_extra_info('sockname')[1]}", flush=True)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    await stop
    transport.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    if a.loop == "uvloop":
        import uvloop
        uvloop.install()
    asyncio.run(main(a.port))
