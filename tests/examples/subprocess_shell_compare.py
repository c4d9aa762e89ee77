#!/usr/bin/env python3
"""Runs examples/subprocess_shell and asyncio's original (subprocess_shell.py beside
this file) on the same commands and compares their output byte for byte; then a
large-output case (32 MiB) whose peak memory must stay near the output itself (the
output has to be held once: communicate returns it whole), far below what a copy
per stage would cost.

    subprocess_shell_compare.py PATH_TO_subprocess_shell
"""
import hashlib
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ORIGINAL = os.path.join(HERE, "subprocess_shell.py")
TIMEOUT = 60 * float(os.environ.get("TIDE_TEST_TIMEOUT_MULTIPLIER", "1"))

COMMANDS = [
    "ls /zzz",
    "echo hello; echo err >&2; exit 3",
    "echo 'it''s'",
    "printf 'a\\tb\\n'; kill -9 $$",
    "true",
    "exit 7",
    "printf 'no newline at the end'",
    "echo h\u00e9llo \u2713 \U0001F600",
    "echo \"it's\" 'say \"hi\"' back\\\\slash",
    "echo a\x01b\x7fc\rd",
    "seq 1 20000",
    "for i in 1 2 3; do echo out $i; echo err $i >&2; done",
    "cat /dev/null",
    "echo tab\there",
]

BIG = 32 * 1024 * 1024


def run(argv, out_path=None):
    """Runs argv (stdout into out_path when given); returns (exit status, stdout
    bytes or None)."""
    out = open(out_path, "wb") if out_path else subprocess.PIPE
    try:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE)
        try:
            data, err = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            sys.exit(f"FAILED: {argv!r} took longer than {TIMEOUT} s")
    finally:
        if out_path:
            out.close()
    if err:
        sys.stderr.buffer.write(err)
    return proc.returncode, data


def peak_rss(argv, out_path):
    """Runs argv with stdout into out_path; returns (exit status, peak RSS in bytes)
    from wait4's rusage for that one child."""
    with open(out_path, "wb") as out:
        child = subprocess.Popen(argv, stdout=out)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, usage.ru_maxrss * 1024


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    example = sys.argv[1]
    failures = 0
    for cmd in COMMANDS:
        c_status, c_out = run([example, cmd])
        py_status, py_out = run([sys.executable, ORIGINAL, cmd])
        if c_status != 0 or c_out != py_out:
            failures += 1
            print(f"MISMATCH for {cmd!r} (exit {c_status}):")
            print("  tide:   ", c_out)
            print("  asyncio:", py_out)
        else:
            print(f"ok {cmd!r}")

    # The large case: both write to files; hashes compared; the example's peak RSS
    # must stay under the output plus a fixed allowance (a doubled buffer would not).
    big_cmd = f"head -c {BIG} /dev/zero | tr '\\0' 'x'; echo done >&2"
    with tempfile.TemporaryDirectory() as tmp:
        c_file = os.path.join(tmp, "c.out")
        py_file = os.path.join(tmp, "py.out")
        status, rss = peak_rss([example, big_cmd], c_file)
        run([sys.executable, ORIGINAL, big_cmd], py_file)
        same = sha(c_file) == sha(py_file)
        size = os.path.getsize(c_file)
        with open(example, "rb") as f:
            sanitized = b"__asan_init" in f.read()
        # ASan's allocator keeps freed blocks in quarantine and realloc copies, so
        # under it only a looser bound holds.
        limit = BIG * (4 if sanitized else 1) + 48 * 1024 * 1024
        print(f"big: {size} bytes, same as asyncio: {same}, peak RSS {rss >> 20} MiB "
              f"(limit {limit >> 20} MiB{', ASan' if sanitized else ''})")
        if status != 0 or not same or size <= BIG or rss > limit:
            failures += 1
            print("FAILED: the large-output case")
    if failures:
        sys.exit(f"{failures} case(s) failed")
    print("all cases match")


if __name__ == "__main__":
    main()
