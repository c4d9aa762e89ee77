#!/usr/bin/env python3
"""The asyncio-true examples against their Python originals (tests/examples/asyncio/):
runs the original and the C example, each against the same kind of peer written here,
and fails unless both print the same lines and exit the same way. The port of the
server under test and the client's own ephemeral port are the only things allowed to
differ; they are replaced by <port> and <peer port> before comparing.

  asyncio_compare.py NAME C_PROGRAM PYTHON_ORIGINAL

Every wait is bounded (DEADLINE seconds, scaled by TIDE_TEST_TIMEOUT_MULTIPLIER).
"""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

DEADLINE = 10 * float(os.environ.get("TIDE_TEST_TIMEOUT_MULTIPLIER", "1"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(port):
    """Connects to the server under test, retrying while it is not listening yet (a
    refused connect never reaches the program)."""
    end = time.monotonic() + DEADLINE
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        except ConnectionRefusedError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


def read_until_eof(sock):
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk


# ---- peers for servers: each talks to the server under test, returns what it saw -----

def client_send_hello(port):
    """asyncio's echo clients: send 'Hello World!', read until the server closes."""
    with connect(port) as s:
        s.sendall(b"Hello World!")
        return read_until_eof(s)


def client_simple_echo(port):
    """SimpleEchoProtocol's client: send b'hello\\n', read the echo, leave."""
    with connect(port) as s:
        s.sendall(b"hello\n")
        want = b"echo:hello\n"
        got = b""
        while len(got) < len(want):
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        return got


# ---- peers for clients: a server on a free port, started before the program -----------

class PeerServer:
    """A one-connection server in a thread: `echo_once` echoes the first bytes and
    closes (asyncio's documented echo servers); `echo_all` echoes until EOF."""

    def __init__(self, mode):
        self.mode = mode
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(DEADLINE)
        self.port = self.listener.getsockname()[1]
        self.error = None
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(DEADLINE)
                while True:
                    data = conn.recv(4096)
                    if not data:
                        break
                    conn.sendall(data)
                    if self.mode == "echo_once":
                        break
        except OSError as e:
            self.error = e

    def close(self):
        self.thread.join(DEADLINE)
        self.listener.close()


# name: (kind, peer, arguments for the C program given the port, for the original)
CASES = {
    "echo_server_protocol": ("server", client_send_hello, lambda p: [str(p)], lambda p: [str(p)]),
    "tcp_echo_server": ("server", client_send_hello, lambda p: [str(p)], lambda p: [str(p)]),
    "simple_echo_protocol": ("exiting server", client_simple_echo,
                             lambda p: ["--port", str(p)], lambda p: [str(p)]),
    "echo_client_protocol": ("client", "echo_once", lambda p: [str(p)], lambda p: [str(p)]),
    "tcp_echo_client": ("client", "echo_once", lambda p: [str(p)], lambda p: [str(p)]),
    "line_client": ("client", "echo_all", lambda p: ["--port", str(p)], lambda p: [str(p)]),
    "wait_for_data": ("standalone", None, lambda p: [], lambda p: []),
}


def run(name, command, is_c):
    """Runs one side; returns (exit status, stdout lines normalised, what the peer saw)."""
    kind, peer, c_args, py_args = CASES[name]
    seen = None
    if kind == "client":
        server = PeerServer(peer)
        port = server.port
    else:
        port = free_port()
    args = (c_args if is_c else py_args)(port)
    proc = subprocess.Popen(command + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        if kind in ("server", "exiting server"):
            seen = peer(port)
            if kind == "server":
                # It serves forever, as the original: stop it once the peer is done.
                # Its last line was printed before it closed the connection, which
                # the peer has seen.
                proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=DEADLINE)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    if kind == "client":
        server.close()
        if server.error:
            raise RuntimeError(f"the peer server failed: {server.error}")
    text = out.replace(f", {port})", ", <port>)")
    text = re.sub(r"\('127\.0\.0\.1', \d+\)", "('127.0.0.1', <peer port>)", text)
    if err.strip():
        sys.stderr.write(f"{' '.join(command)} (stderr):\n{err}")
    return proc.returncode, text.splitlines(), seen


def main():
    name, c_program, original = sys.argv[1:4]
    python = [sys.executable, "-u", original]
    py_status, py_lines, py_seen = run(name, python, False)
    c_status, c_lines, c_seen = run(name, [c_program], True)
    for label, status, lines in (("python", py_status, py_lines), ("C", c_status, c_lines)):
        print(f"--- {label} (exit status {status})")
        print("\n".join(lines))
    ok = True
    if py_lines != c_lines:
        print(f"FAILED: {name}: the C example's output differs from the original's")
        ok = False
    if py_status != c_status:
        print(f"FAILED: {name}: exit status {c_status}, the original's is {py_status}")
        ok = False
    if py_seen != c_seen:
        print(f"FAILED: {name}: the peer received {c_seen!r}, from the original {py_seen!r}")
        ok = False
    if not py_lines:
        print(f"FAILED: {name}: the original printed nothing (is the test broken?)")
        ok = False
    if ok:
        print(f"{name}: same output, same exit status")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
