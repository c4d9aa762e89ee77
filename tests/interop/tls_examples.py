"""TLS examples against Python's ssl: examples/http_headers against an asyncio HTTPS
server (verified with the test CA; refused without it; plain http too),
examples/echo_client --tls against an asyncio TLS echo server, and an asyncio ssl
client against examples/echo_server --tls-cert/--tls-key in each style.

    tls_examples.py BINARY_DIR"""
import asyncio
import os
import socket
import ssl
import sys
import tempfile

from interop import DEADLINE, EchoServer, TestPKI, check, run, run_client

HEADERS = [b"HTTP/1.0 200 OK", b"Server: tide-test", b"X-Tide: yes"]


async def http_responder(reader, writer):
    request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE)
    check(request.startswith(b"HEAD /some/path HTTP/1.0\r\nHost: localhost\r\n"),
          f"unexpected request {request!r}")
    writer.write(b"\r\n".join(HEADERS) + b"\r\n\r\n")
    await writer.drain()
    writer.close()


async def cut_responder(reader, writer):
    """Ends the connection cleanly (close_notify over TLS) inside the header block."""
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE)
    writer.write(b"\r\n".join(HEADERS[:2]) + b"\r\n")
    await writer.drain()
    writer.close()


async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def fetch(http_headers, url, *args):
    status, out, err = await run_client(http_headers, [*args, url])
    print(f"http_headers {' '.join(args)} {url}: exit {status}")
    return status, out, err


def split_client_hello(port):
    """A real ClientHello (TLS 1.2) spread over two records: mbedTLS 3.x reassembles it
    and answers with its ServerHello; 2.28 cannot, and the server must then answer with
    a fatal alert, not a bare close."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    record = outgoing.read()
    check(record[0] == 22, "no ClientHello record")
    body, half = record[5:], (len(record) - 5) // 2
    header = lambda n: bytes([22]) + record[1:3] + n.to_bytes(2, "big")
    data = header(half) + body[:half] + header(len(body) - half) + body[half:]
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        sock.sendall(data)
        answer = sock.recv(7)
    return answer


async def main(bindir):
    http_headers = os.path.join(bindir, "http_headers")
    echo_client = os.path.join(bindir, "echo_client")
    with tempfile.TemporaryDirectory() as tmp:
        pki = TestPKI(tmp)
        tls = await asyncio.start_server(http_responder, "127.0.0.1", 0,
                                         ssl=pki.server_context())
        plain = await asyncio.start_server(http_responder, "127.0.0.1", 0)
        tls_port = tls.sockets[0].getsockname()[1]
        plain_port = plain.sockets[0].getsockname()[1]
        want = "".join(f"HTTP header> {h.decode()}\n" for h in HEADERS)

        status, out, err = await fetch(http_headers, f"https://localhost:{tls_port}/some/path",
                                       "--cafile", pki.ca)
        check(status == 0 and out == want, f"https with the CA: {status} {out!r} {err!r}")
        print("ok: https verified against the test CA")

        status, out, err = await fetch(http_headers, f"https://localhost:{tls_port}/some/path")
        check(status == 1 and out == "" and "CA" in err,
              f"https without the CA must fail cleanly: {status} {out!r} {err!r}")
        print(f"ok: refused without the CA: {err.strip()}")

        status, out, err = await fetch(http_headers, f"http://localhost:{plain_port}/some/path")
        check(status == 0 and out == want, f"plain http: {status} {out!r} {err!r}")
        print("ok: plain http")

        cut = await asyncio.start_server(cut_responder, "127.0.0.1", 0, ssl=pki.server_context())
        cut_port = cut.sockets[0].getsockname()[1]
        status, out, err = await fetch(http_headers, f"https://localhost:{cut_port}/some/path",
                                       "--cafile", pki.ca)
        check(status == 1 and "inside the header block" in err,
              f"a head cut short by close_notify must fail: {status} {out!r} {err!r}")
        print("ok: a head cut short (clean TLS close inside it) is an error")
        cut.close()

        status, out, err = await fetch(http_headers, "ftp://localhost/")
        check(status == 2, f"a bad URL is a usage error: {status}")
        tls.close()
        plain.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=pki.server_context())
        port = server.sockets[0].getsockname()[1]
        status, out, err = await run_client(echo_client, [
            "--host", "localhost", "--port", str(port), "--tls", "--cafile", pki.ca, "over TLS"])
        check(status == 0 and "Received: 'over TLS'" in out,
              f"echo_client --tls: {status} {out!r} {err!r}")
        print("ok: echo_client --tls against asyncio's ssl echo server")
        server.close()
        await server.wait_closed()

        echo_server = os.path.join(bindir, "echo_server")
        for style in ("protocol", "buffered", "streams", "callbacks"):
            async with EchoServer([echo_server, "--port", "0", "--style", style, "--tls-cert",
                                   pki.cert, "--tls-key", pki.key]) as tide_server:
                port = int(tide_server.address.rsplit(":", 1)[1])
                reader, writer = await asyncio.wait_for(asyncio.open_connection(
                    "127.0.0.1", port, ssl=pki.client_context(), server_hostname="localhost"),
                    DEADLINE)
                if style == "protocol":
                    answer = await asyncio.to_thread(split_client_hello, port)
                    # A fatal alert (2) in a TLS 1.2 record, or the ServerHello (2).
                    alert = answer[:3] == b"\x15\x03\x03" and answer[5:6] == b"\x02"
                    hello = answer[:1] == b"\x16" and answer[5:6] == b"\x02"
                    check(alert or hello,
                          f"a split ClientHello must get an alert or a ServerHello, got {answer!r}")
                    print("ok: a ClientHello spread over two records gets "
                          + ("a fatal alert" if alert else "a ServerHello"))
                message = os.urandom(100000)
                writer.write(message)
                echoed = await asyncio.wait_for(reader.readexactly(len(message)), DEADLINE)
                check(echoed == message, f"echo_server --style {style} over TLS")
                writer.close()
                await writer.wait_closed()
                await tide_server.stop(f"echo_server --style {style} --tls-cert")


if __name__ == "__main__":
    run(main(sys.argv[1]))
