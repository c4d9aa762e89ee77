"""examples/udp_echo_server and examples/udp_echo_client against Python asyncio's
create_datagram_endpoint, both ways, over IPv4, IPv6 (when ::1 exists) and Unix
datagram sockets: asyncio's documented echo client against tide's server (its log
lines checked), tide's client against asyncio's documented echo server (its exact
output checked), the client against a closed port (error_received, exit 1) and
against a peer that never answers (timeout, exit 3).

usage: test_udp_echo.py UDP_ECHO_SERVER UDP_ECHO_CLIENT"""
import asyncio
import os
import socket
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
from interop import DEADLINE, EchoServer, check, run, run_client  # noqa: E402

SERVER, CLIENT = sys.argv[1], sys.argv[2]


class Collect(asyncio.DatagramProtocol):
    """Keeps every datagram (and its sender) in a queue; echoes it when echo is set
    (asyncio's EchoServerProtocol)."""

    def __init__(self, echo=False):
        self.echo = echo
        self.got = asyncio.Queue()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        if self.echo:
            self.transport.sendto(data, addr)
        self.got.put_nowait((data, addr))


def ipv6_available():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def closed_udp_port(host, family):
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def asyncio_client_to_tide(kind, host, tmp):
    loop = asyncio.get_running_loop()
    args = [SERVER, "--host", host] + ([] if kind == "unix" else ["--port", "0"])
    async with EchoServer(args) as server:
        if kind == "unix":
            local = os.path.join(tmp, "asyncio-client.sock")
            transport, proto = await loop.create_datagram_endpoint(
                Collect, local_addr=local, remote_addr=host, family=socket.AF_UNIX)
        else:
            port = int(server.address.rsplit(":", 1)[1])
            transport, proto = await loop.create_datagram_endpoint(
                Collect, remote_addr=(host, port))
        for message in ["Hello World!", "second datagram"]:
            transport.sendto(message.encode())
            data, _ = await asyncio.wait_for(proto.got.get(), DEADLINE)
            check(data == message.encode(), f"{kind}: echoed {data!r} for {message!r}")
            await server.expect_log(f"Received '{message}' from ", f"{kind} received")
            await server.expect_log(f"Send '{message}' to ", f"{kind} send")
        transport.close()
        await server.stop("udp_echo_server")
    print(f"ok: asyncio client -> tide udp_echo_server over {kind}")


async def asyncio_peer(kind, host, path, echo):
    """An asyncio endpoint bound to host port 0 (or the Unix path): (transport,
    protocol, the client's --host/--port arguments to reach it)."""
    loop = asyncio.get_running_loop()
    if kind == "unix":
        transport, proto = await loop.create_datagram_endpoint(
            lambda: Collect(echo), local_addr=path, family=socket.AF_UNIX)
        return transport, proto, ["--host", path]
    transport, proto = await loop.create_datagram_endpoint(
        lambda: Collect(echo), local_addr=(host, 0))
    port = transport.get_extra_info("sockname")[1]
    return transport, proto, ["--host", host, "--port", str(port)]


async def tide_client_to_asyncio(kind, host, tmp):
    path = os.path.join(tmp, "asyncio-server.sock")
    transport, proto, target = await asyncio_peer(kind, host, path, echo=True)
    try:
        status, out, err = await run_client(CLIENT, target + ["Hello World!"])
        lines = out.splitlines()
        check(status == 0, f"{kind}: udp_echo_client exited {status}: {out!r} {err!r}")
        check(lines == ["Send: Hello World!", "Received: Hello World!", "Close the socket",
                        "Connection closed"], f"{kind}: client output {lines!r}")
        data, _ = await asyncio.wait_for(proto.got.get(), DEADLINE)
        check(data == b"Hello World!", f"{kind}: asyncio server got {data!r}")
    finally:
        transport.close()
    print(f"ok: tide udp_echo_client -> asyncio echo server over {kind}")


async def closed_port(kind, host, family):
    port = closed_udp_port(host, family)
    # The kernel rate-limits ICMP errors machine-wide: when its budget is spent by
    # others, no answer comes (exit 3) and the client is simply run again.
    for attempt in range(3):
        status, out, err = await run_client(
            CLIENT, ["--host", host, "--port", str(port), "--timeout", "2", "ping"])
        if status != 3:
            break
        print(f"retry: no ICMP error within 2 s (attempt {attempt + 1})")
    lines = out.splitlines()
    check(status == 1, f"{kind} closed port: exit {status}, {out!r} {err!r}")
    check(lines[:2] == ["Send: ping", "Error received: connection refused"]
          and lines[-1] == "Connection closed", f"{kind} closed port: output {lines!r}")
    print(f"ok: udp_echo_client against a closed {kind} port: error_received, exit 1")


async def no_answer(kind, host, tmp):
    path = os.path.join(tmp, "silent.sock")
    transport, proto, target = await asyncio_peer(kind, host, path, echo=False)
    try:
        status, out, err = await run_client(CLIENT, target + ["--timeout", "0.3", "anyone?"])
        check(status == 3, f"{kind} timeout: exit {status}, {out!r} {err!r}")
        check("no answer within 0.3 seconds" in err, f"{kind} timeout: stderr {err!r}")
        # The datagram did arrive; nobody answered.
        data, _ = await asyncio.wait_for(proto.got.get(), DEADLINE)
        check(data == b"anyone?", f"{kind} timeout: peer got {data!r}")
    finally:
        transport.close()
    print(f"ok: udp_echo_client with a silent {kind} peer: timeout, exit 3")


async def main():
    kinds = [("ipv4", "127.0.0.1", socket.AF_INET)]
    if ipv6_available():
        kinds.append(("ipv6", "::1", socket.AF_INET6))
    else:
        print("skip: no ::1 here")
    with tempfile.TemporaryDirectory() as tmp:
        for kind, host, family in kinds:
            await asyncio_client_to_tide(kind, host, tmp)
            await tide_client_to_asyncio(kind, host, tmp)
            await closed_port(kind, host, family)
            await no_answer(kind, host, tmp)
        unix = os.path.join(tmp, "tide-server.sock")
        await asyncio_client_to_tide("unix", unix, tmp)
        check(not os.path.exists(unix), "udp_echo_server left its socket file behind")
        await tide_client_to_asyncio("unix", None, tmp)
        await no_answer("unix", None, tmp)


if __name__ == "__main__":
    run(main())
