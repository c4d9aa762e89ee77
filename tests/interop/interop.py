"""Shared by the interop scripts: deadlines scaled like the C tests, failure checks,
running tide's example programs (a client to completion, echo_server as a server
whose address is read from its first line and whose log is drained), and a test CA
with certificates for TLS peers."""
import asyncio
import os
import signal
import ssl
import subprocess
import sys

SCALE = float(os.environ.get("TIDE_TEST_TIMEOUT_MULTIPLIER", "1") or 1)
DEADLINE = 15 * SCALE


class Failure(Exception):
    pass


def check(condition, what):
    if not condition:
        raise Failure(what)


def shown(text):
    """A message as it appears in logs: long ones are cut."""
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} bytes)"


async def run_client(client_bin, args, stdin=None):
    """Runs a client program to completion, with stdin (bytes) as its standard input
    when given: (exit status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        client_bin, *args, stdin=asyncio.subprocess.PIPE if stdin is not None else None,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), DEADLINE)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode, out.decode(), err.decode()


class EchoServer:
    """examples/echo_server as a subprocess: `async with EchoServer(args) as server`
    starts it and reads `server.address` from its "listening on" line, then keeps reading
    its log unless drain_log is false; `stop()` sends SIGTERM and expects exit status 0;
    leaving the block kills it if still running."""

    def __init__(self, args, drain_log=True):
        self.args = args
        self.drain_log = drain_log
        self.proc = None
        self.log = []
        self.log_task = None
        self.logged = asyncio.Condition()

    async def __aenter__(self):
        self.proc = await asyncio.create_subprocess_exec(*self.args,
                                                         stdout=asyncio.subprocess.PIPE)
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), DEADLINE)
            line = line.decode().strip()
            print(f"server: {line}")
            check(line.startswith("listening on "), f"unexpected first line {line!r}")
            self.address = line[len("listening on "):]
            # Keep reading the server's log so that its pipe never fills up (unless
            # the test wants a pipe that nobody drains).
            if self.drain_log:
                self.log_task = asyncio.ensure_future(self._drain_log())
        except BaseException:
            await self._kill()
            raise
        return self

    async def _drain_log(self):
        async for out in self.proc.stdout:
            async with self.logged:
                self.log.append(out.decode().rstrip("\n"))
                self.logged.notify_all()

    async def expect_log(self, text, what):
        """Waits (bounded) until a line of the server's log contains text."""
        async with self.logged:
            try:
                await asyncio.wait_for(self.logged.wait_for(
                    lambda: any(text in line for line in self.log)), DEADLINE)
            except asyncio.TimeoutError:
                raise Failure(f"{what}: no {text!r} in the server's log {self.log[-3:]}")

    async def stop(self, what="echo_server", tail=2):
        self.proc.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(self.proc.wait(), DEADLINE)
        if self.log_task is not None:
            await asyncio.wait_for(self.log_task, DEADLINE)
        for out in self.log[-tail:]:
            print(f"server: {out}")
        check(status == 0, f"{what} exited with status {status} after SIGTERM")
        print(f"ok: {what} exited 0 after SIGTERM")

    async def _kill(self):
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def __aexit__(self, *exc):
        await self._kill()
        if self.log_task is not None and not self.log_task.done():
            self.log_task.cancel()


class TestPKI:
    """A throw-away CA and a server certificate for localhost (EC P-256, made with the
    openssl command) in directory: ca.pem, server.pem, server.key."""

    def __init__(self, directory, names=("localhost",)):
        self.dir = directory
        self.ca = os.path.join(directory, "ca.pem")
        self.cert = os.path.join(directory, "server.pem")
        self.key = os.path.join(directory, "server.key")
        ca_key = os.path.join(directory, "ca.key")
        csr = os.path.join(directory, "server.csr")
        ext = os.path.join(directory, "server.ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=" + ",".join(f"DNS:{n}" for n in names) + "\n")
            f.write("extendedKeyUsage=serverAuth\n")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        self._openssl("req", "-x509", *ec, "-keyout", ca_key, "-out", self.ca, "-days", "2",
                      "-subj", "/CN=tide test CA")
        self._openssl("req", *ec, "-keyout", self.key, "-out", csr, "-subj", f"/CN={names[0]}")
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", ca_key,
                      "-CAcreateserial", "-out", self.cert, "-days", "2", "-extfile", ext)

    @staticmethod
    def _openssl(*args):
        done = subprocess.run(["openssl", *args], capture_output=True, timeout=DEADLINE)
        check(done.returncode == 0, f"openssl {args[0]} failed: {done.stderr.decode()}")

    def server_context(self):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def client_context(self):
        return ssl.create_default_context(cafile=self.ca)


def run(coro):
    """asyncio.run(coro); a failure prints why and exits 1."""
    try:
        asyncio.run(coro)
    except (Failure, asyncio.TimeoutError, OSError, asyncio.IncompleteReadError) as e:
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
