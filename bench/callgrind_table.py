#!/usr/bin/env python3
"""Deterministic instructions per round trip: every echo server under callgrind.

Each server runs under `valgrind --tool=callgrind` while bench/loadgen drives echo
round trips at it for a few seconds; callgrind counts the server's user-space
instructions, which do not depend on how busy the machine is (kernel work is not
counted). The count of one run with no load (start-up, listening, shutdown) is taken
away first, so the figure is what one round trip costs, not a share of start-up.

    bench/callgrind_table.py BUILD_DIR [--sizes 1024,102400] [--conns 100,1000]
                             [--servers epoll,libuv,...] [--duration 4]

BUILD_DIR is a build of bench/ (see bench/CMakeLists.txt). Prints a markdown table:
one row per server, one column per message size and connection count. The profiles
stay in BUILD_DIR/callgrind/ for callgrind_annotate. memcpy is told not to use
`rep movsb` (which callgrind counts once per byte), so large copies count like the
vector loops they are.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import time

SERVERS = ["epoll", "libev", "libuv", "libevent", "tide-protocol", "tide-buffered",
           "tide-callbacks", "tide-streams"]


def argv_of(server):
    fixed = {"epoll": ["./epoll_echo"], "libev": ["./libev_echo"], "libuv": ["./uv_echo"],
             "libevent": ["./event_echo"]}
    if server in fixed:
        return fixed[server]
    if server.startswith("tide-"):
        return ["tide/examples/echo_server", "--quiet", "--style", server[len("tide-"):]]
    raise SystemExit(f"unknown server {server}")


def total_ir(profile):
    out = subprocess.run(["callgrind_annotate", profile], capture_output=True, text=True).stdout
    m = re.search(r"^\s*([\d,]+)\s.*PROGRAM TOTALS", out, re.M)
    if not m:
        raise RuntimeError(f"no totals in {profile}")
    return int(m.group(1).replace(",", ""))


def run_once(bdir, server, size, conns, duration, tag):
    """One callgrind run; returns (instructions, round trips). conns 0: no load."""
    os.makedirs(os.path.join(bdir, "callgrind"), exist_ok=True)
    profile = os.path.join(bdir, "callgrind", f"{server}-{tag}.out")
    log_path = os.path.join(bdir, "callgrind", f"{server}-{tag}.log")
    env = dict(os.environ, GLIBC_TUNABLES="glibc.cpu.x86_rep_movsb_threshold=2147483647")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["valgrind", "--tool=callgrind",
                                 f"--callgrind-out-file={profile}"] + argv_of(server),
                                cwd=bdir, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        port = None
        for _ in range(600):
            with open(log_path) as log:
                m = re.search(r"^listening on .*:(\d+)$", log.read(), re.M)
            if m:
                port = m.group(1)
                break
            time.sleep(0.1)
        if port is None:
            raise RuntimeError(f"{server} did not start (see {log_path})")
        rt = 0
        if conns > 0:
            out = subprocess.run(["./loadgen", "--port", port, "-c", str(conns), "-s", str(size),
                                  "--warmup", "0", "--duration", str(duration)],
                                 cwd=bdir, capture_output=True, text=True)
            m = re.search(r'"round_trips":\s*(\d+)', out.stdout)
            if out.returncode != 0 or not m:
                raise RuntimeError(f"loadgen failed against {server}: {out.stderr.strip()}")
            rt = int(m.group(1))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    return total_ir(profile), rt


# A cell with fewer round trips than this is marked: setting up its connections (not
# in the unloaded run that is taken away) weighs in its figure.
FEW_ROUND_TRIPS = 5000


def measure(bdir, server, size, conns, duration, idle, tries=3):
    """Returns (instructions per round trip, round trips)."""
    err = None
    for _ in range(tries):
        try:
            ir, rt = run_once(bdir, server, size, conns, duration, f"{size}-{conns}")
            if rt > 0:
                return (ir - idle) / rt, rt
        except RuntimeError as e:
            err = e
    raise err


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build_dir")
    ap.add_argument("--sizes", default="1024,102400")
    ap.add_argument("--conns", default="100,1000")
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--duration", type=float, default=4)
    args = ap.parse_args()
    bdir = os.path.abspath(args.build_dir)
    sizes = [int(s) for s in args.sizes.split(",")]
    conns = [int(c) for c in args.conns.split(",")]
    servers = args.servers.split(",")
    cells = [(s, c) for s in sizes for c in conns]

    def label(size, c):
        return f"{size // 1024} KiB x {c:,}" if size % 1024 == 0 else f"{size} B x {c:,}"

    rows = {}
    for server in servers:
        idle, _ = run_once(bdir, server, 0, 0, 0, "idle")
        rows[server] = [measure(bdir, server, s, c, args.duration, idle) for s, c in cells]
        print(f"{server}: " + ", ".join(f"{v:.0f} ({rt} rt)" for v, rt in rows[server]),
              file=sys.stderr)

    def cell(v, rt):
        return f"{v:,.0f}" + (" †" if rt < FEW_ROUND_TRIPS else "")

    print("| server | " + " | ".join(label(s, c) for s, c in cells) + " |")
    print("|---|" + "---:|" * len(cells))
    for server in servers:
        print(f"| {server} | " + " | ".join(cell(v, rt) for v, rt in rows[server]) + " |")
    if any(rt < FEW_ROUND_TRIPS for row in rows.values() for _, rt in row):
        print(f"\n† fewer than {FEW_ROUND_TRIPS:,} round trips in the run: the set-up of its "
              "connections weighs in; take it with a longer --duration.")


if __name__ == "__main__":
    main()
