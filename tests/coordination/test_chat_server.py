"""examples/chat_server against asyncio clients: many clients relay lines and each
receives every line of the others, in one order (the server's), never its own; a
client that never reads is disconnected once its queue overflows, while the others
keep receiving everything; a client that leaves mid-way disturbs nobody; an
over-long line disconnects its sender; SIGTERM ends the server with exit 0.

argv: CHAT_SERVER_BINARY"""
import asyncio
import os
import signal
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
from interop import DEADLINE, check, run  # noqa: E402

SENDERS = 4
LISTENERS = 12
LINES = 500           # per sender
LINE_SIZE = 1000      # bytes per line, LF included
MAX_QUEUE = 500
BIG_LINES = 2000      # the second phase: one sender, one reader, the silent client
BIG_SIZE = 4000


async def start_server(binary):
    proc = await asyncio.create_subprocess_exec(
        binary, "--port", "0", "--max-queue", str(MAX_QUEUE),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    first = await asyncio.wait_for(proc.stdout.readline(), DEADLINE)
    words = first.decode().split()
    check(words[:2] == ["listening", "on"], f"first line: {first!r}")
    host, port = words[2].rsplit(":", 1)
    return proc, host, int(port)


def payload(sender, i):
    head = f"{sender}:{i}:".encode()
    return head + b"x" * (LINE_SIZE - 1 - len(head)) + b"\n"


class Progress:
    """The share of its lines each reading client has received, for the senders to
    pace themselves on: a chat client that falls far behind is one that does not
    read, and the server rightly drops it."""

    def __init__(self, collectors):
        self.collectors = collectors
        self.shares = {}
        self.changed = asyncio.Condition()

    async def collect(self, reader, count):
        lines = []
        while len(lines) < count:
            line = await reader.readline()
            check(line, f"EOF after {len(lines)} of {count} lines")
            lines.append(line)
            async with self.changed:
                self.shares[id(lines)] = len(lines) / count
                self.changed.notify_all()
        return lines

    async def wait_for_share(self, share):
        async def wait():
            async with self.changed:
                await self.changed.wait_for(
                    lambda: len(self.shares) == self.collectors
                    and min(self.shares.values()) >= share)
        await asyncio.wait_for(wait(), DEADLINE)


async def main_async(binary):
    proc, host, port = await start_server(binary)
    try:
        # The client that never reads: tiny receive buffer, so its backlog shows soon.
        silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        silent.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        silent.setblocking(False)
        await asyncio.get_running_loop().sock_connect(silent, (host, port))

        senders = [await asyncio.open_connection(host, port) for _ in range(SENDERS)]
        listeners = [await asyncio.open_connection(host, port) for _ in range(LISTENERS)]
        leaver_r, leaver_w = await asyncio.open_connection(host, port)
        # The last client to connect speaks first: the server runs each client's task
        # in the order it accepted them, so everyone before it is in the room by then.
        leaver_w.write(b"hello\n")
        for r, _ in listeners + senders:
            check(await asyncio.wait_for(r.readline(), DEADLINE) == b"hello\n", "hello")
        leaver_w.close()  # leaves before the traffic starts in earnest

        progress = Progress(LISTENERS + SENDERS)
        ROUND = 20  # lines per sender per round

        async def send_all():
            rounds = LINES // ROUND
            for rnd in range(rounds):
                for k in range(SENDERS):
                    for i in range(rnd * ROUND, (rnd + 1) * ROUND):
                        senders[k][1].write(payload(k, i))
                for _, w in senders:
                    await w.drain()
                # Everyone has what was sent up to the round before this one.
                if rnd > 0:
                    await progress.wait_for_share(rnd / rounds)

        expected = SENDERS * LINES
        listen_tasks = [asyncio.create_task(progress.collect(r, expected)) for r, _ in listeners]
        sender_tasks = [asyncio.create_task(progress.collect(senders[k][0], expected - LINES))
                        for k in range(SENDERS)]
        await asyncio.wait_for(send_all(), DEADLINE)
        results = await asyncio.wait_for(asyncio.gather(*listen_tasks), DEADLINE)
        own = await asyncio.wait_for(asyncio.gather(*sender_tasks), DEADLINE)

        # One order for everyone, each sender's lines in the order sent.
        order = results[0]
        for got in results[1:]:
            check(got == order, "listeners saw different orders")
        for k in range(SENDERS):
            mine = [line for line in order if line.startswith(f"{k}:".encode())]
            check(mine == [payload(k, i) for i in range(LINES)], f"sender {k}'s lines")
            theirs = [line for line in order if not line.startswith(f"{k}:".encode())]
            check(own[k] == theirs, f"sender {k} got its own lines or another order")
        print(f"ok: {LISTENERS} listeners and {SENDERS} senders saw {expected} lines in one order")

        # Now only one listener reads, and one sender sends 8 MB: more than the silent
        # client's queue and every kernel buffer on its way can hold, so it is dropped,
        # while the listener receives every line.
        for _, w in listeners[1:] + senders[1:]:
            w.close()
        r0, w0 = listeners[0][0], senders[0][1]
        big = [f"big {i}:".encode().ljust(BIG_SIZE - 1, b"z") + b"\n" for i in range(BIG_LINES)]
        progress = Progress(1)
        reading = asyncio.create_task(progress.collect(r0, BIG_LINES))
        for i, line in enumerate(big):
            w0.write(line)
            if i % 100 == 99:
                await w0.drain()
                await progress.wait_for_share((i + 1 - 200) / BIG_LINES)
        got = await asyncio.wait_for(reading, DEADLINE)
        check(got == big, "the reading client missed lines")
        print(f"ok: one reader got all {BIG_LINES} lines of {BIG_SIZE} bytes")

        # The silent client was dropped: reading it now ends (EOF or reset) in time.
        loop = asyncio.get_running_loop()
        received = 0
        while True:
            try:
                data = await asyncio.wait_for(loop.sock_recv(silent, 65536), DEADLINE)
            except ConnectionResetError:
                break
            if not data:
                break
            received += len(data)
        silent.close()
        print(f"ok: the client that never read was disconnected after {received} bytes")

        # An over-long line disconnects its sender only.
        late_r, late_w = await asyncio.open_connection(host, port)
        late_w.write(b"hi\n")
        check(await asyncio.wait_for(r0.readline(), DEADLINE) == b"hi\n", "late joiner")
        w0.write(b"y" * 5000 + b"\n")
        try:  # what it had not read yet, then the end of the connection
            await asyncio.wait_for(senders[0][0].read(), DEADLINE)
        except ConnectionResetError:
            pass
        listeners[0][1].write(b"still here\n")
        check(await asyncio.wait_for(late_r.readline(), DEADLINE) == b"still here\n",
              "relay after a disconnect")
        print("ok: an over-long line disconnects its sender")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), DEADLINE)
        err = (await proc.stderr.read()).decode()
        if err:
            print(f"chat_server's stderr:\n{err}", file=sys.stderr)
    check(code == 0, f"exit status {code} after SIGTERM; stderr: {err}")
    print("ok: SIGTERM: exit 0")


run(main_async(sys.argv[1]))
