"""examples/fetch_many against asyncio HTTP servers: every URL gets one line, in
argument order; at most --limit connections are open at once (the servers count
them); slow servers are fetched concurrently; a refused connection, a server that
never answers (--timeout) and one that does not speak HTTP fail alone, and the exit
status says whether all succeeded.

argv: FETCH_MANY_BINARY"""
import asyncio
import os
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
from interop import DEADLINE, TestPKI, check, run, run_client  # noqa: E402

DELAY = 0.3
LIMIT = 3


class Servers:
    def __init__(self):
        self.open = 0
        self.peak = 0
        self.requests = []

    async def handle(self, reader, writer, mode):
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head)
            if mode == "silent":
                await asyncio.sleep(3600)
            if mode == "delay":
                await asyncio.sleep(DELAY)
            if mode == "garbage":
                writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK " + mode.encode() + b"\r\n"
                             b"Content-Length: 0\r\nServer: test\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def start(self, mode, ssl=None):
        server = await asyncio.start_server(
            lambda r, w: self.handle(r, w, mode), "127.0.0.1", 0, ssl=ssl)
        return server, server.sockets[0].getsockname()[1]


def refused_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def main_async(binary):
    servers = Servers()
    started = []
    urls, expect = [], []
    for i in range(6):
        server, port = await servers.start("delay")
        started.append(server)
        urls.append(f"http://127.0.0.1:{port}/page{i}")
        expect.append("HTTP/1.1 200 OK delay")
    port = refused_port()
    urls.insert(2, f"http://127.0.0.1:{port}/")
    expect.insert(2, "error: connection refused")
    server, port = await servers.start("silent")
    started.append(server)
    urls.insert(4, f"http://127.0.0.1:{port}/")
    expect.insert(4, "error: timed out")
    server, port = await servers.start("garbage")
    started.append(server)
    urls.append(f"http://127.0.0.1:{port}/")
    expect.append("error: malformed HTTP message")
    urls.append("ftp://127.0.0.1/")
    expect.append("error: not an http:// or https:// URL")

    t0 = time.monotonic()
    code, out, err = await run_client(binary, ["--limit", str(LIMIT), "--timeout", "1.5", *urls])
    elapsed = time.monotonic() - t0
    lines = out.splitlines()
    check(len(lines) == len(urls), f"{len(lines)} lines for {len(urls)} URLs: {out!r} {err!r}")
    for url, want, line in zip(urls, expect, lines):
        check(line == f"{url} {want}", f"line {line!r}, expected {url} {want!r}")
    check(code == 1, f"exit status {code} with failures")
    check(servers.peak <= LIMIT, f"{servers.peak} connections at once, limit {LIMIT}")
    check(servers.peak >= 2, "the fetches did not overlap")
    check(all(b"HEAD /" in r and b"Host: 127.0.0.1" in r for r in servers.requests),
          "requests")
    # Six delayed fetches three at a time take about two delays, not six (the silent
    # server's timeout overlaps them).
    check(elapsed < 6 * DELAY + 1.5 + 1, f"took {elapsed:.2f} s")
    print(f"ok: {len(urls)} URLs, peak {servers.peak} connections, {elapsed:.2f} s")

    code, out, err = await run_client(binary, [])
    check(code == 2, "no URL: usage")
    code, out, err = await run_client(binary, urls[:2])
    check(code == 0 and len(out.splitlines()) == 2, f"all succeed: exit {code}, {out!r}")

    # https, verified against a private CA, beside plain http: all succeed, exit 0.
    if os.environ.get("TIDE_WITH_TLS", "ON").upper() not in ("ON", "1", "TRUE", "YES"):
        print("skipped: https (tide built without TLS)")
        return
    with tempfile.TemporaryDirectory(prefix="tide-fetch-") as workdir:
        pki = TestPKI(workdir)
        server, port = await servers.start("tls", ssl=pki.server_context())
        started.append(server)
        ok_urls = [urls[0], f"https://localhost:{port}/secure", urls[1]]
        code, out, err = await run_client(binary, ["--cafile", pki.ca, *ok_urls])
    check(code == 0, f"exit status {code} when all succeed: {err}")
    want = [f"{ok_urls[0]} HTTP/1.1 200 OK delay", f"{ok_urls[1]} HTTP/1.1 200 OK tls",
            f"{ok_urls[2]} HTTP/1.1 200 OK delay"]
    check(out.splitlines() == want, f"output {out!r}")
    print("ok: http and https (private CA): exit 0 when all succeed")
    for s in started:
        s.close()


run(main_async(sys.argv[1]))
