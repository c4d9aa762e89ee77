"""The UDP echo cell of bench/run.py (part "udp"): datagrams per second and server CPU
per datagram at 64 B and 1,200 B, for a hand-written recvmmsg/sendmmsg epoll server
(the limit), libuv, tide (examples/udp_echo_server), asyncio and uvloop, servers
interleaved within each repetition. bench/udp_loadgen.c drives them: a few flows, each
with a small window of datagrams in flight, so that no server is ever asked to take
more than the kernel's receive buffer holds."""
import json
import subprocess


SIZES = [64, 1200]
FLOWS, WINDOW = 4, 12


def servers(here, sys_py):
    """name -> (label, argv relative to the build directory), for run.SERVERS."""
    py = [sys_py, f"{here}/py_udp_echo.py", "--loop"]
    return {
        "udp-epoll": ("epoll recvmmsg/sendmmsg (the limit)", ["./udp_epoll_echo"]),
        "udp-libuv": ("libuv", ["./udp_uv_echo"]),
        "udp-tide": ("tide", ["tide/examples/udp_echo_server", "--quiet", "--port", "0"]),
        "udp-asyncio": ("asyncio", py + ["asyncio"]),
        "udp-uvloop": ("uvloop", py + ["uvloop"]),
    }


def one(bdir, server_cls, name, size, warmup, duration, client_cpu):
    srv = server_cls(bdir, name)
    try:
        argv = ["taskset", "-c", client_cpu, "./udp_loadgen", "--port", str(srv.port),
                "-s", str(size), "-f", str(FLOWS), "-w", str(WINDOW), "--warmup", str(warmup),
                "--duration", str(duration), "--server-pid", str(srv.pid)]
        done = subprocess.run(argv, cwd=bdir, capture_output=True,
                              timeout=warmup + duration + 30)
        if done.returncode != 0:
            raise RuntimeError(f"udp_loadgen failed ({done.returncode}): "
                               f"{done.stderr.decode()[-300:]} {done.stdout.decode()[-300:]}")
        return json.loads(done.stdout.decode().strip().splitlines()[-1])
    finally:
        srv.stop()


def part_udp(bdir, cfg, res, server_cls, interleaved, summarize, log, client_cpu="1"):
    """run.py's part "udp", with its Server, interleaved and summarize."""
    names = ["udp-epoll", "udp-libuv", "udp-tide", "udp-asyncio", "udp-uvloop"]
    reps = max(cfg.get("reps", 3), 1)
    warmup, duration = cfg.get("warmup", 0.5), cfg.get("duration", 2.0)
    cells = []
    for size in cfg.get("udp_sizes", SIZES):
        def describe(n, rep, r):
            log(f"  udp {size}B rep {rep} {n:12s} {r['dgram_per_s']:>10.0f} dgram/s "
                f"cpu/dgram {r['server_cpu_us_per_dgram']:7.3f} us "
                f"busy s={r['server_busy']:.2f} c={r['client_busy']:.2f} stalls {r['stalls']}")
        runs = interleaved(names, reps, f"udp{size}",
                           lambda n: one(bdir, server_cls, n, size, warmup, duration, client_cpu),
                           describe)
        summary = summarize(runs, "udp-epoll",
                            ("dgram_per_s", "server_cpu_us_per_dgram", "server_busy", "stalls"),
                            (("server_cpu_us_per_dgram", "ratio_cpu"),
                             ("dgram_per_s", "ratio_rate")))
        cells.append({"size": size, "runs": runs, "summary": summary})
        for n, d in summary.items():
            if not d.get("failed"):
                log(f"  udp {size}B median {n:12s} {d['dgram_per_s']:>10.0f} dgram/s "
                    f"cpu/dgram {d['server_cpu_us_per_dgram']:.3f} us "
                    f"x{d['ratio_cpu'] or 0:.2f} of epoll")
    res["udp"] = cells


def targets(res):
    """The UDP target rows for run.targets: tide's CPU per datagram <= 1.10 x the
    recvmmsg/sendmmsg epoll server's in every UDP cell."""
    vals = [(c["summary"].get("udp-tide", {}).get("ratio_cpu"), c) for c in res.get("udp", [])]
    vals = [(v, c) for v, c in vals if v is not None]
    if not vals:
        return []
    v, c = max(vals, key=lambda x: x[0])
    return [("UDP echo: tide CPU/datagram ≤ 1.10 × the recvmmsg/sendmmsg epoll server",
             f"worst {v:.3f} ({c['size']} B)", v <= 1.10)]


def report_lines(res, servers):
    """The UDP section of docs/benchmarks.md."""
    if not res.get("udp"):
        return []
    L = ["## UDP echo\n",
         f"`bench/udp_loadgen.c`: {FLOWS} connected UDP flows, each keeping {WINDOW} "
         "datagrams in flight (every echo checked, answered with the next datagram; "
         "recvmmsg/sendmmsg on the generator's side). Server CPU per datagram is the "
         "server's on-CPU time over the window divided by the datagrams echoed; ratios "
         "are to the hand-written recvmmsg/sendmmsg epoll server in the same repetition.\n"]
    for c in res["udp"]:
        L.append(f"### {c['size']} B datagrams\n")
        L.append("| server | datagrams/s | CPU/datagram (µs) | CPU × limit |")
        L.append("| --- | ---: | ---: | ---: |")
        for s, d in c["summary"].items():
            if d.get("failed"):
                L.append(f"| {servers[s][0]} | failed | | |")
                continue
            ratio = f"{d['ratio_cpu']:.2f}" if d.get("ratio_cpu") else ""
            L.append(f"| {servers[s][0]} | {d['dgram_per_s']:.0f} | "
                     f"{d['server_cpu_us_per_dgram']:.2f} | {ratio} |")
        L.append("")
    return L
