"""Shared by the application tests (tests/apps): interop.py's helpers (scaled deadlines,
check, running a client program, the test CA) and the case runner. Servers run inside
the test process on ephemeral loopback ports; the clients are tide's examples, run as
subprocesses (ASAN_OPTIONS and the rest of the environment pass through)."""
import asyncio
import os
import subprocess
import sys
import tempfile
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
from interop import DEADLINE, Failure, TestPKI, check, run_client  # noqa: E402

__all__ = ["DEADLINE", "HOST", "SKIP", "Failure", "TestPKI", "check", "expect_exit", "main",
           "run_client"]

# CTest's SKIP_RETURN_CODE: a server package is missing (CI installs them).
SKIP = 77

# The name the certificate is for; localhost resolves to the loopback listeners.
HOST = "localhost"


def expect_exit(result, status, words, what):
    """The client exited with status and its message names every word."""
    code, out, err = result
    check(code == status, f"{what}: exit status {code}, expected {status}; stderr: {err.strip()}")
    for word in words:
        check(word in err, f"{what}: {word!r} not in stderr: {err.strip()}")
    print(f"ok: {what}: exit {code}: {err.strip()}")


def main(cases):
    """argv: CLIENT_BINARY [CASE ...] (no case: all). Each case is a coroutine function
    taking (client, workdir), run with a fresh temporary directory and a deadline.
    Exits 0, or 1 when a case failed."""
    client = sys.argv[1]
    names = sys.argv[2:] or list(cases)
    failed = 0
    for name in names:
        with tempfile.TemporaryDirectory(prefix="tide-apps-") as workdir:
            try:
                asyncio.run(asyncio.wait_for(cases[name](client, workdir), 4 * DEADLINE))
                print(f"ok: {name}")
            except (Failure, asyncio.TimeoutError, OSError, subprocess.SubprocessError) as e:
                print(f"FAILED: {name}: {type(e).__name__}: {e}", file=sys.stderr)
                traceback.print_exc()
                failed += 1
    sys.exit(1 if failed else 0)
