#!/usr/bin/env python3
"""tide's benchmarks against its peers, in one run.

    bench/run.py [--quick] [--report] [--build-dir DIR] [--reps N] [--only PART,...]

Builds bench/ (Release) into the build directory, then measures, with the server pinned
to CPU 0 and the load generator to CPU 1, servers interleaved within each cell and each
cell repeated:
  rr        request/response round trips: 1, 10, 100 KiB x 1, 10, 100 connections
  scale     the same at 1,000 connections
  stream    streaming throughput (MB/s), 64 KiB writes, 1 and 10 connections
  memory    heap and RSS per idle connection at 10,000 idle connections
  switch    task switch cost (bench/task_switch.c)
  coordination  queue and lock hand-offs between tasks, beside asyncio (bench/coordination.c)
  workers   echo_server --workers 2 vs 1 (SO_REUSEPORT), unpinned, two load generators
  tls       TLS handshakes/s, 1 KiB x 100 round trips, bulk MB/s vs asyncio/uvloop + ssl
  tls_handshake  server CPU per TLS handshake (full, resumed) vs nginx, and mbedTLS's
            floor per operation vs openssl speed (bench/tls_handshake.py; only with
            --only: it needs nginx, and takes about 5 minutes)
  udp       UDP echo: datagrams/s and server CPU per datagram, 64 B and 1,200 B, vs a
            recvmmsg/sendmmsg epoll server, libuv, asyncio, uvloop (bench/udp_part.py)
Every figure is also given as a ratio to the epoll limit measured in the same run.

--quick runs a smoke version of every part (one cell each, one repetition, short
windows) in well under a minute once built; it asserts nothing except that every
server echoes every byte correctly (the load generator exits 1 otherwise), so CI can
run it. --report writes docs/benchmarks.md and docs/benchmarks.svg from the results
(with bench/analysis.md appended). Results go to BUILD_DIR/results.json.

Needs: cmake, a C compiler, libev-dev, libuv1-dev, libevent-dev, libssl-dev,
python3-uvloop (imported by /usr/bin/python3), openssl (CLI), gnuplot-nox (for the plot),
nginx-light (tls_handshake) and util-linux's taskset."""
import argparse
import datetime
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SYS_PY = "/usr/bin/python3"  # Debian's python3-uvloop imports only here
SERVER_CPU, CLIENT_CPU = "0", "1"

# name -> (label, argv relative to the build dir, tide style or None)
SERVERS = {
    "epoll": ("epoll (the limit)", ["./epoll_echo"]),
    "libev": ("libev", ["./libev_echo"]),
    "libuv": ("libuv", ["./uv_echo"]),
    "libevent": ("libevent", ["./event_echo"]),
    "tide-protocol": ("tide protocol", ["tide/examples/echo_server", "--quiet", "--style", "protocol"]),
    "tide-buffered": ("tide buffered", ["tide/examples/echo_server", "--quiet", "--style", "buffered"]),
    "tide-callbacks": ("tide callback streams", ["tide/examples/echo_server", "--quiet", "--style", "callbacks"]),
    "tide-streams": ("tide task streams", ["tide/examples/echo_server", "--quiet", "--style", "streams"]),
    "asyncio-protocol": ("asyncio protocol", [SYS_PY, f"{HERE}/py_echo.py", "--loop", "asyncio", "--style", "protocol"]),
    "asyncio-streams": ("asyncio streams", [SYS_PY, f"{HERE}/py_echo.py", "--loop", "asyncio", "--style", "streams"]),
    "uvloop-protocol": ("uvloop protocol", [SYS_PY, f"{HERE}/py_echo.py", "--loop", "uvloop", "--style", "protocol"]),
    "uvloop-streams": ("uvloop streams", [SYS_PY, f"{HERE}/py_echo.py", "--loop", "uvloop", "--style", "streams"]),
}
ALL = list(SERVERS)
sys.path.insert(0, HERE)
import udp_part  # noqa: E402  (the UDP echo cell: its servers join SERVERS, not ALL)
SERVERS.update(udp_part.servers(HERE, SYS_PY))
TIDE = [s for s in ALL if s.startswith("tide-")]
MEMORY_SERVERS = ["epoll", "libuv", "tide-protocol", "tide-buffered", "tide-callbacks",
                  "tide-streams", "asyncio-protocol", "asyncio-streams", "uvloop-protocol"]
TLS_SERVERS = ["tide-protocol", "tide-buffered", "tide-streams", "asyncio-protocol",
               "asyncio-streams", "uvloop-protocol", "uvloop-streams"]

KIB = 1024


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Server:
    """A server process pinned to a CPU; its first line gives the port."""

    def __init__(self, bdir, name, extra=(), cpu=SERVER_CPU, env=None):
        argv = list(SERVERS[name][1]) + list(extra)
        if cpu is not None:
            argv = ["taskset", "-c", cpu] + argv
        self.out = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, cwd=bdir, stdout=subprocess.PIPE,
                                     stderr=self.out, env=env)
        line = b""
        deadline = time.time() + 15
        # The first line, read with a deadline (the server may fail to start).
        os.set_blocking(self.proc.stdout.fileno(), False)
        while not line.endswith(b"\n"):
            if time.time() > deadline or self.proc.poll() is not None:
                self.stop()
                self.out.seek(0)
                raise RuntimeError(f"{name} did not start: {self.out.read().decode()[-500:]}")
            try:
                chunk = self.proc.stdout.read(1)
            except BlockingIOError:
                chunk = None
            if chunk:
                line += chunk
            else:
                time.sleep(0.01)
        m = re.match(rb"listening on .*:(\d+)", line)
        if not m:
            self.stop()
            raise RuntimeError(f"{name}: unexpected first line {line!r}")
        self.port = int(m.group(1))
        # Whatever else it prints goes nowhere that could fill up and block it.
        os.set_blocking(self.proc.stdout.fileno(), True)
        self.drain = subprocess.Popen(["cat"], stdin=self.proc.stdout, stdout=subprocess.DEVNULL)
        self.proc.stdout.close()
        self.pid = self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if hasattr(self, "drain"):
            self.drain.wait()


def loadgen(bdir, port, pid, mode="rr", conns=1, size=KIB, warmup=1.0, duration=3.0,
            tls=False, cpu=CLIENT_CPU):
    argv = ["./loadgen", "--port", str(port), "--mode", mode, "-c", str(conns), "-s", str(size),
            "--warmup", str(warmup), "--duration", str(duration), "--server-pid", str(pid)]
    if tls:
        argv.append("--tls")
    if cpu is not None:
        argv = ["taskset", "-c", cpu] + argv
    return argv


def run_loadgens(bdir, argvs, timeout):
    procs = [subprocess.Popen(a, cwd=bdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for a in argvs]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"loadgen failed ({p.returncode}): {err.decode()[-500:]}")
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    return results


def one_run(bdir, name, mode, conns, size, warmup, duration, tls_args=None):
    extra = tls_args or []
    srv = Server(bdir, name, extra)
    try:
        timeout = warmup + duration + 60 + conns / 50
        r = run_loadgens(bdir, [loadgen(bdir, srv.port, srv.pid, mode, conns, size, warmup,
                                        duration, tls=bool(tls_args))], timeout)[0]
    finally:
        srv.stop()
    return r


def interleaved(servers, reps, seed, run_one, describe):
    """Every server once per repetition, in a fresh random order each time (seeded):
    run_one(server) gives its result dict (a failure is reported, not fatal) and
    describe(server, rep, result) logs a success."""
    runs = {s: [] for s in servers}
    rng = random.Random(seed)
    for rep in range(reps):
        order = list(servers)
        rng.shuffle(order)
        for s in order:
            try:
                r = run_one(s)
            except Exception as e:  # a peer failing is reported, not fatal
                log(f"  {s}: FAILED: {e}")
                r = {"failed": str(e)[:300]}
            r["rep"] = rep
            runs[s].append(r)
            if "failed" not in r:
                describe(s, rep, r)
    return runs


def cell_runs(bdir, servers, reps, mode, conns, size, warmup, duration, tls_args=None,
              tag=""):
    """Every server once per repetition, in a fresh random order each time."""
    def describe(s, rep, r):
        log(f"  {tag or mode} {size}B x{conns} rep {rep} {s:17s} "
            f"{r['rt_per_s']:>10.0f} rt/s {r['mb_per_s']:>8.1f} MB/s "
            f"cpu/rt {r['server_cpu_us_per_rt']:7.2f} us  p99 {r['p99_us']:8.1f} us "
            f"busy s={r['server_busy']:.2f} c={r['client_busy']:.2f}")
    return interleaved(servers, reps, f"{mode}{conns}{size}{tag}",
                       lambda s: one_run(bdir, s, mode, conns, size, warmup, duration, tls_args),
                       describe)


RR_KEYS = ("rt_per_s", "mb_per_s", "p50_us", "p99_us", "server_cpu_us_per_rt", "server_busy",
           "client_busy")
RR_RATIOS = (("rt_per_s", "ratio_rt"), ("mb_per_s", "ratio_mb"),
             ("server_cpu_us_per_rt", "ratio_cpu"), ("p99_us", "ratio_p99"))


def summarize(runs, ref="epoll", keys=RR_KEYS, ratios=RR_RATIOS):
    """Medians per server of keys, and the median of per-repetition ratios to ref (each
    (key, name) of ratios)."""
    out = {}
    for s, rs in runs.items():
        ok = [r for r in rs if "failed" not in r]
        if not ok:
            out[s] = {"failed": True}
            continue
        d = {k: statistics.median(r[k] for r in ok) for k in keys}
        d["n"] = len(ok)
        refs = {r["rep"]: r for r in runs.get(ref, []) if "failed" not in r}
        for k, key in ratios:
            rat = [r[k] / refs[r["rep"]][k] for r in ok
                   if r["rep"] in refs and refs[r["rep"]][k] > 0]
            d[key] = statistics.median(rat) if rat else None
        out[s] = d
    return out


# ---- memory ------------------------------------------------------------------------

def proc_mem(pid):
    d = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon"):
                d[k] = int(v.split()[0]) * 1024
    return d


def count_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def memory_run(bdir, name, nconn):
    counter = tempfile.NamedTemporaryFile(delete=False)
    counter.close()
    env = dict(os.environ, LD_PRELOAD=os.path.join(bdir, "malloc_count.so"),
               MALLOC_COUNT_FILE=counter.name)
    srv = Server(bdir, name, env=env)
    client = None
    try:
        def heap():
            with open(counter.name, "rb") as f:
                return int.from_bytes(f.read(8), sys.byteorder, signed=True)

        time.sleep(0.3)
        fds0, mem0, heap0 = count_fds(srv.pid), proc_mem(srv.pid), heap()
        client = subprocess.Popen(["taskset", "-c", CLIENT_CPU, "./loadgen", "--port",
                                   str(srv.port), "--mode", "idle", "-c", str(nconn)],
                                  cwd=bdir, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        line = client.stdout.readline().decode()
        if not line.startswith("connected"):
            raise RuntimeError(f"idle client: {client.stderr.read().decode()[-300:]}")
        deadline = time.time() + 60
        while count_fds(srv.pid) < fds0 + nconn:
            if time.time() > deadline:
                raise RuntimeError(f"server holds {count_fds(srv.pid) - fds0} of {nconn}")
            time.sleep(0.05)
        time.sleep(0.5)  # let accept callbacks and task starts finish
        mem1, heap1 = proc_mem(srv.pid), heap()
        r = {"conns": nconn,
             "heap_per_conn": (heap1 - heap0) / nconn,
             "rss_per_conn": (mem1["VmRSS"] - mem0["VmRSS"]) / nconn,
             "anon_per_conn": (mem1["RssAnon"] - mem0["RssAnon"]) / nconn}
        log(f"  memory {name:17s} heap {r['heap_per_conn']:8.0f} B/conn  "
            f"RSS {r['rss_per_conn']:8.0f} B/conn  anon {r['anon_per_conn']:8.0f} B/conn")
        return r
    finally:
        if client is not None:
            client.stdin.close()
            try:
                client.wait(timeout=30)
            except subprocess.TimeoutExpired:
                client.kill()
        srv.stop()
        os.unlink(counter.name)


# ---- parts ---------------------------------------------------------------------------

def part_rr(bdir, cfg, res, conns_list, key):
    cells = []
    for size in cfg["sizes"]:
        for conns in conns_list:
            runs = cell_runs(bdir, cfg["servers"], cfg["reps"], "rr", conns, size,
                             cfg["warmup"], cfg["duration"], tag=key)
            cells.append({"size": size, "conns": conns, "runs": runs,
                          "summary": summarize(runs)})
    res[key] = cells


def part_stream(bdir, cfg, res):
    cells = []
    for conns in cfg["stream_conns"]:
        runs = cell_runs(bdir, cfg["servers"], cfg["reps"], "stream", conns, 64 * KIB,
                         cfg["warmup"], cfg["duration"], tag="stream")
        cells.append({"size": 64 * KIB, "conns": conns, "runs": runs,
                      "summary": summarize(runs)})
    res["stream"] = cells


def part_memory(bdir, cfg, res):
    out = {}
    for s in cfg["memory_servers"]:
        try:
            out[s] = memory_run(bdir, s, cfg["idle"])
        except Exception as e:
            log(f"  memory {s}: FAILED: {e}")
            out[s] = {"failed": str(e)[:300]}
    res["memory"] = out


def part_switch(bdir, cfg, res):
    p = subprocess.run(["taskset", "-c", SERVER_CPU, "./task_switch", str(cfg["switch_rounds"])],
                       cwd=bdir, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(p.stderr)
    log("  " + p.stdout.strip().replace("\n", "\n  "))
    d = {"output": p.stdout.strip()}
    m = re.search(r"raw switch \(([^)]*)\): ([\d.]+) ns", p.stdout)
    if m:
        d["backend"], d["raw_ns"] = m.group(1), float(m.group(2))
    for n, v in re.findall(r"task yield,\s+(\d+) tasks: ([\d.]+) ns", p.stdout):
        d[f"yield_{n}_ns"] = float(v)
    res["switch"] = d


def part_coordination(bdir, cfg, res):
    """bench/coordination beside the same program on asyncio (bench/py_coordination.py),
    both pinned to the server's core."""
    p = subprocess.run(["taskset", "-c", SERVER_CPU, sys.executable,
                        os.path.join(HERE, "py_coordination.py"), "./coordination",
                        str(cfg["coordination_scale"])],
                       cwd=bdir, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(p.stderr)
    log("  " + p.stdout.strip().replace("\n", "\n  "))
    res["coordination"] = {"output": p.stdout.strip()}


def part_workers(bdir, cfg, res):
    """One loop vs one loop per core; neither is pinned, and two load generators (one
    per core's worth of connections) keep the client side from being one thread."""
    out = {}
    for rep in range(cfg["reps"]):
        order = [1, 2] if rep % 2 == 0 else [2, 1]
        for w in order:
            srv = Server(bdir, "tide-protocol", ["--workers", str(w)], cpu=None)
            try:
                half = max(1, cfg["workers_conns"] // 2)
                argvs = [loadgen(bdir, srv.port, srv.pid, "rr", half, KIB, cfg["warmup"],
                                 cfg["duration"], cpu=None) for _ in range(2)]
                rs = run_loadgens(bdir, argvs, cfg["warmup"] + cfg["duration"] + 60)
            finally:
                srv.stop()
            rt = sum(r["rt_per_s"] for r in rs)
            cpu = statistics.mean(r["server_cpu_s"] / r["window_s"] for r in rs)
            out.setdefault(w, []).append({"rt_per_s": rt, "server_cores": cpu,
                                          "cpu_us_per_rt": cpu * 1e6 / rt})
            log(f"  workers {w} rep {rep}: {rt:10.0f} rt/s, server {cpu:.2f} cores busy")
    res["workers"] = {str(w): {"rt_per_s": statistics.median(x["rt_per_s"] for x in v),
                               "server_cores": statistics.median(x["server_cores"] for x in v),
                               "cpu_us_per_rt": statistics.median(x["cpu_us_per_rt"] for x in v),
                               "runs": v} for w, v in out.items()}


def make_cert(bdir):
    d = os.path.join(bdir, "tls")
    os.makedirs(d, exist_ok=True)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    if not os.path.exists(cert):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3650", "-subj",
                        "/CN=localhost", "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
    return cert, key


def tide_tls_works(bdir, tls_args):
    try:
        Server(bdir, "tide-protocol", tls_args).stop()
        return True, ""
    except RuntimeError as e:
        return False, str(e).strip().splitlines()[-1] if str(e).strip() else "no output"


def part_tls(bdir, cfg, res):
    cert, key = make_cert(bdir)
    tls_args = ["--tls-cert", cert, "--tls-key", key]
    ok, why = tide_tls_works(bdir, tls_args)
    servers = [s for s in cfg["tls_servers"] if s in cfg["servers"]]
    if not ok:
        log(f"  tide's TLS is not available ({why}): measuring the Python peers only")
        servers = [s for s in servers if not s.startswith("tide")]
    out = {"tide_available": ok, "tide_error": why, "cert": "ECDSA P-256, TLS 1.2"}
    for mode, conns, size, key_ in (("handshake", cfg["tls_hs_conns"], 1, "handshake"),
                                    ("rr", 100, KIB, "rr_1k_x100"),
                                    ("stream", 1, 64 * KIB, "bulk")):
        runs = cell_runs(bdir, servers, cfg["reps"], mode, conns, size, cfg["warmup"],
                         cfg["duration"], tls_args=tls_args, tag=f"tls-{key_}")
        out[key_] = {"size": size, "conns": conns, "runs": runs,
                     "summary": summarize(runs, ref="asyncio-protocol")}
    res["tls"] = out


# ---- report ----------------------------------------------------------------------------

def fmt_size(n):
    return f"{n // KIB} KiB" if n >= KIB else f"{n} B"


def fr(x, d=2):
    return "–" if x is None else f"{x:.{d}f}"


def machine_info():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    kernel = platform.release()
    py = subprocess.run([SYS_PY, "-c", "import sys,uvloop;print(sys.version.split()[0],uvloop.__version__)"],
                        capture_output=True, text=True).stdout.split()
    libs = {}
    for pkg in ("libev4", "libuv1", "libevent-2.1-7", "libmbedtls14", "libssl3"):
        v = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True,
                           text=True).stdout
        if v:
            libs[pkg] = v
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": kernel,
            "python": py[0] if py else "?", "uvloop": py[1] if len(py) > 1 else "?",
            "libs": libs}


def cell_table(cell, servers, stream=False):
    s = cell["summary"]
    lines = []
    if stream:
        lines.append("| server | MB/s | x limit | CPU µs per 64 KiB | x limit | server busy | client busy |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
    else:
        lines.append("| server | rt/s | x limit | p99 µs | x limit | CPU µs/rt | x limit | server busy | client busy |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in servers:
        d = s.get(name)
        if d is None:
            continue
        label = SERVERS[name][0]
        if d.get("failed"):
            lines.append(f"| {label} | failed | | | | | | | |")
            continue
        if stream:
            lines.append(f"| {label} | {d['mb_per_s']:.0f} | {fr(d['ratio_mb'])} | "
                         f"{d['server_cpu_us_per_rt']:.1f} | {fr(d['ratio_cpu'])} | "
                         f"{d['server_busy']:.2f} | {d['client_busy']:.2f} |")
        else:
            lines.append(f"| {label} | {d['rt_per_s']:.0f} | {fr(d['ratio_rt'])} | "
                         f"{d['p99_us']:.0f} | {fr(d['ratio_p99'])} | "
                         f"{d['server_cpu_us_per_rt']:.2f} | {fr(d['ratio_cpu'])} | "
                         f"{d['server_busy']:.2f} | {d['client_busy']:.2f} |")
    return "\n".join(lines)


def targets(res):
    """(target, measured, met) rows."""
    rows = []
    cells = res.get("rr", []) + res.get("scale", [])

    def worst(name, key, fn):
        vals = [(c["summary"].get(name, {}).get(key), c) for c in cells]
        vals = [(v, c) for v, c in vals if v is not None]
        if not vals:
            return None, None
        return fn(vals, key=lambda x: x[0])

    # Issue 11's lines for the streams (1.10 and 1.15; the first round's were 1.15 and
    # 1.20); the buffered style keeps the first round's, the stricter.
    for name, cpu_max, rt_min in (("tide-protocol", 1.05, 0.95), ("tide-buffered", 1.03, None),
                                  ("tide-callbacks", 1.10, None), ("tide-streams", 1.15, None)):
        v, c = worst(name, "ratio_cpu", max)
        if v is not None:
            # libev and libuv do the limit's work plus a thin loop: how far they stray
            # from 1.0 in the same cell shows the noise there.
            peers = ", ".join(f"{p} {c['summary'][p]['ratio_cpu']:.2f}" for p in ("libev", "libuv")
                              if c["summary"].get(p, {}).get("ratio_cpu"))
            rows.append((f"{SERVERS[name][0]}: CPU/rt ≤ {cpu_max} × limit in every cell",
                         f"worst {v:.3f} ({fmt_size(c['size'])} × {c['conns']}; same cell: {peers})",
                         v <= cpu_max))
        if rt_min:
            v, c = worst(name, "ratio_rt", min)
            if v is not None:
                rows.append((f"{SERVERS[name][0]}: rt/s ≥ {rt_min} × limit in every cell",
                             f"worst {v:.3f} ({fmt_size(c['size'])} × {c['conns']})",
                             v >= rt_min))
    for c in res.get("stream", []):
        d = c["summary"].get("tide-buffered", {})
        if d.get("ratio_mb") is not None:
            busy = c["summary"].get("epoll", {}).get("client_busy", 0)
            rows.append((f"tide buffered: streaming MB/s ≥ 0.95 × limit ({c['conns']} conn)",
                         f"{d['ratio_mb']:.3f} (load generator {busy:.0%} busy)",
                         d["ratio_mb"] >= 0.95))
    mem = res.get("memory", {})
    # echo_server's own objects: echo_conn (152 B) and cb_conn (144 B), as
    # malloc_usable_size counts them.
    for name, key, lim, what in (("tide-protocol", "heap_per_conn", 512 + 152,
                                  "protocol: heap ≤ 512 B + the protocol object (152 B)"),
                                 ("tide-buffered", "heap_per_conn", 512 + 152,
                                  "buffered: heap ≤ 512 B + the protocol object (152 B)"),
                                 ("tide-callbacks", "heap_per_conn", 2048 + 144,
                                  "streams without a task: heap ≤ 2 KiB + the app's 144 B"),
                                 ("tide-streams", "anon_per_conn", 8192,
                                  "streams with a task: RSS ≤ 8 KiB")):
        d = mem.get(name, {})
        if key in d:
            rows.append((what, f"{d[key]:.0f} B", d[key] <= lim))
    sw = res.get("switch", {})
    if "raw_ns" in sw:
        rows.append(("task switch ≤ 20 ns", f"{sw['raw_ns']:.1f} ns raw, "
                     f"{sw.get('yield_2_ns', 0):.1f} ns per yield (2 tasks)", sw["raw_ns"] <= 20))
    rr = {(c["size"], c["conns"]): c for c in res.get("rr", []) + res.get("scale", [])}
    for name in TIDE:
        a, b = rr.get((KIB, 10)), rr.get((KIB, 1000))
        if a and b and name in a["summary"] and name in b["summary"]:
            x, y = a["summary"][name].get("ratio_cpu"), b["summary"][name].get("ratio_cpu")
            if x and y:
                rows.append((f"{SERVERS[name][0]}: CPU/rt flat from 10 to 1,000 conns (1 KiB)",
                             f"{x:.3f} → {y:.3f} × limit", y <= x * 1.05))
    tls = res.get("tls", {})
    if tls.get("tide_available") and "rr_1k_x100" in tls:
        s = tls["rr_1k_x100"]["summary"]
        t, a = s.get("tide-protocol", {}), s.get("asyncio-protocol", {})
        if "server_cpu_us_per_rt" in t and "server_cpu_us_per_rt" in a:
            rows.append(("TLS: CPU/rt at 1 KiB × 100 ≤ asyncio+OpenSSL's",
                         f"{t['server_cpu_us_per_rt']:.2f} vs {a['server_cpu_us_per_rt']:.2f} µs "
                         f"({t['ratio_cpu']:.3f} ×)", t["ratio_cpu"] <= 1.0))
    elif "tls" in res:
        rows.append(("TLS: CPU/rt at 1 KiB × 100 ≤ asyncio+OpenSSL's",
                     "not measured: tide's TLS engine had not landed", None))
    rows += udp_part.targets(res)
    return rows


def plot(res, docs):
    """Server CPU per round trip as a ratio to the limit, per server, per cell."""
    cells = res.get("rr", []) + res.get("scale", [])
    if not cells or not shutil.which("gnuplot"):
        return None
    names = [n for n in ALL if n != "epoll"]
    dat = os.path.join(docs, "benchmarks.dat")
    with open(dat, "w") as f:
        f.write("cell " + " ".join(f'"{SERVERS[n][0]}"' for n in names) + "\n")
        for c in cells:
            row = [f'"{fmt_size(c["size"])}×{c["conns"]}"']
            for n in names:
                v = c["summary"].get(n, {}).get("ratio_cpu")
                row.append(f"{v:.4f}" if v else "NaN")
            f.write(" ".join(row) + "\n")
    svg = os.path.join(docs, "benchmarks.svg")
    # tide's styles in warm colours, C peers in greys and blues, Python in greens.
    palette = {"libev": "#9e9e9e", "libuv": "#5b7fa6", "libevent": "#b7c9dc",
               "tide-protocol": "#d62728", "tide-buffered": "#ff7f0e",
               "tide-callbacks": "#e6b800", "tide-streams": "#8c564b",
               "asyncio-protocol": "#2ca02c", "asyncio-streams": "#98df8a",
               "uvloop-protocol": "#17becf", "uvloop-streams": "#9edae5"}
    colors = " ".join(palette.get(n, "#000000") for n in names)
    script = f"""
set terminal svg size 1200,560 dynamic font 'sans,11'
set output '{svg}'
set title 'Server CPU time per round trip, as a multiple of the epoll limit (same run; lower is better)'
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside right top vertical font 'sans,10'
set ylabel 'x epoll limit'
set xlabel 'message size x connections'
set yrange [0:3]
set grid ytics
set label 'bars above 3 x are cut off: see the tables' at graph 0.01, graph 0.96 font 'sans,9'
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 1.5 lc rgb 'black'
colors = "{colors}"
plot for [i=2:{len(names) + 1}] '{dat}' using i:xtic(1) title columnheader(i) lc rgb word(colors, i - 1)
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    return svg


def report(res, path_md, docs):
    svg = plot(res, docs)
    m = res["machine"]
    cfg = res["config"]
    L = []
    L.append("# Benchmarks: tide against its peers, in one run\n")
    L.append("Generated by `bench/run.py --report` from the results of one run "
             f"({res['date']}). Regenerate everything with:\n")
    parts = ",".join(p for p in ("rr", "scale", "stream", "memory", "switch", "coordination",
                                 "workers", "tls", "udp", "tls_handshake") if p in res)
    L.append(f"```sh\n/usr/bin/python3 bench/run.py --report --only {parts}\n```\n")
    L.append("(`tls_handshake` needs nginx; without `--only`, every part but it runs.)\n")
    L.append("(`--quick` is the under-a-minute smoke version CI runs; it prints the same "
             "lines but writes no report.)\n")
    L.append("## Machine\n")
    L.append(f"- {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}; loopback TCP only.")
    L.append(f"- Python {m['python']} (Debian), uvloop {m['uvloop']}; "
             + ", ".join(f"{k} {v}" for k, v in m["libs"].items()) + ".")
    L.append("- **Two cores**, the server pinned to one and the load generator to the other: "
             "absolute figures move from run to run; compare the ratios, which come from "
             "servers interleaved within the same cell and repetition.\n")
    L.append("## Method\n")
    L.append(f"""- **Load generator** (`bench/loadgen.c`): one thread, epoll, N connections; each
  sends a message of S bytes, waits for all S echoed bytes (every byte compared with what
  was sent) and sends the next. Latency runs from the first send to the last byte
  received. A wrong byte or a lost connection fails the run. Warm-up {cfg['warmup']} s,
  then a {cfg['duration']} s window.
- **Pinning:** the server runs on CPU {SERVER_CPU} and the load generator on CPU {CLIENT_CPU}
  (`taskset`).
- **Server CPU per round trip:** the server's on-CPU time over the window (the sum of
  `/proc/PID/task/*/schedstat`, in ns, user and system) divided by the round trips. On
  two cores the load generator saturates its core about when the server does (the
  "client busy" column: its own CPU over the window), so round trips/s often measures the
  client; CPU per round trip stays meaningful either way.
- **Interleaving:** within each cell every server runs once per repetition, in a new
  random order each time; {cfg['reps']} repetitions. Tables show medians; every ratio is
  the median of the per-repetition ratios to the epoll limit run in the same repetition.
- **Servers:** `bench/epoll_echo.c` (the limit: raw epoll, one `recv` into a 256 KiB
  buffer, one `send`), `bench/libev_echo.c`, `bench/uv_echo.c` (libuv: `uv_try_write`,
  then `uv_write` of a copy), `bench/event_echo.c` (libevent bufferevents),
  `bench/py_echo.py` (asyncio / uvloop, protocol / streams with `read(262144)`, optionally
  `ssl`), and tide's `examples/echo_server --style protocol|buffered|callbacks|streams`.
  Every server sets `TCP_NODELAY` and stops reading from a client that does not read.
- **Memory:** the server runs with `bench/malloc_count.c` preloaded (live bytes from
  malloc, by `malloc_usable_size`), then a separate client process opens
  {cfg['idle']:,} connections that never send; once the server holds them all (its
  descriptor count), the growth of the malloc counter, of VmRSS and of RssAnon is divided
  by the connection count. Python's small objects live in arenas that bypass malloc, so
  for Python read the RSS columns.
- **TLS:** ECDSA P-256 certificate, TLS 1.2 (mbedTLS 2.28 has no TLS 1.3 server; the
  client is capped at 1.2 for every server), no session resumption; the load generator
  uses OpenSSL. A handshake counts once the one-byte echo after it came back.
""")
    L.append("## Targets\n")
    L.append("| target | measured | |")
    L.append("|---|---|---|")
    for t, v, ok in targets(res):
        L.append(f"| {t} | {v} | {'met' if ok else ('missed' if ok is False else 'n/a')} |")
    L.append("")
    if svg:
        L.append("## Plot\n")
        L.append("![server CPU per round trip, x limit](benchmarks.svg)\n")
    L.append("## Round trips (request/response echo)\n")
    servers = cfg["servers"]
    for c in res.get("rr", []) + res.get("scale", []):
        L.append(f"### {fmt_size(c['size'])} × {c['conns']} connection{'s' if c['conns'] > 1 else ''}\n")
        L.append(cell_table(c, servers) + "\n")
    if res.get("stream"):
        L.append("## Streaming throughput (64 KiB writes, echoed)\n")
        for c in res["stream"]:
            L.append(f"### {c['conns']} connection{'s' if c['conns'] > 1 else ''}\n")
            L.append(cell_table(c, servers, stream=True) + "\n")
    if res.get("memory"):
        L.append(f"## Memory per idle connection ({cfg['idle']:,} idle connections)\n")
        L.append("| server | malloc heap B/conn | RSS B/conn | anonymous RSS B/conn |")
        L.append("|---|---:|---:|---:|")
        for s, d in res["memory"].items():
            if "failed" in d:
                L.append(f"| {SERVERS[s][0]} | failed | | |")
            else:
                L.append(f"| {SERVERS[s][0]} | {d['heap_per_conn']:.0f} | "
                         f"{d['rss_per_conn']:.0f} | {d['anon_per_conn']:.0f} |")
        L.append("")
    if res.get("switch"):
        L.append("## Task switch\n")
        L.append("`bench/task_switch` (pinned to one core):\n")
        L.append("```\n" + res["switch"]["output"] + "\n```\n")
    if res.get("coordination"):
        L.append("## Coordination between tasks (queue, lock)\n")
        L.append("`bench/coordination` beside the same program on asyncio "
                 "(`bench/py_coordination.py`), both pinned to one core: a producer and a "
                 "consumer task through a queue of 64, and two tasks taking turns on one lock "
                 "(acquire, yield, release: every release hands the lock to the other task); "
                 "medians of 5 runs.\n")
        L.append("```\n" + res["coordination"]["output"] + "\n```\n")
    if res.get("workers"):
        w = res["workers"]
        L.append("## SO_REUSEPORT: `echo_server --workers 2` vs 1\n")
        L.append("Protocol style, 1 KiB round trips, "
                 f"{cfg['workers_conns']} connections from two load generators; nothing pinned "
                 "(the two server threads and the two clients share the two cores).\n")
        L.append("| workers | rt/s | server cores busy | CPU µs/rt |")
        L.append("|---:|---:|---:|---:|")
        for k in sorted(w):
            L.append(f"| {k} | {w[k]['rt_per_s']:.0f} | {w[k]['server_cores']:.2f} | "
                     f"{w[k]['cpu_us_per_rt']:.2f} |")
        if "1" in w and "2" in w:
            L.append(f"\nRatio 2 workers / 1: {w['2']['rt_per_s'] / w['1']['rt_per_s']:.2f} × "
                     "round trips/s.\n")
    tls = res.get("tls")
    if tls:
        L.append("## TLS\n")
        if not tls["tide_available"]:
            L.append(f"tide's TLS engine was not available in this build ({tls['tide_error']}); "
                     "the harness is ready and measured the Python peers only.\n")
        L.append("Ratios here are to asyncio protocol + ssl (OpenSSL) in the same run.\n")
        for key_, title in (("handshake", "Full handshakes"), ("rr_1k_x100", "1 KiB × 100 round trips"),
                            ("bulk", "Bulk (64 KiB writes, 1 connection)")):
            c = tls.get(key_)
            if not c:
                continue
            L.append(f"### {title}\n")
            L.append("| server | per s | MB/s | x asyncio | CPU µs per unit | x asyncio |")
            L.append("|---|---:|---:|---:|---:|---:|")
            for s, d in c["summary"].items():
                if d.get("failed"):
                    L.append(f"| {SERVERS[s][0]} | failed | | | | |")
                    continue
                L.append(f"| {SERVERS[s][0]} | {d['rt_per_s']:.0f} | {d['mb_per_s']:.1f} | "
                         f"{fr(d['ratio_mb'] if key_ == 'bulk' else d['ratio_rt'])} | "
                         f"{d['server_cpu_us_per_rt']:.1f} | {fr(d['ratio_cpu'])} |")
            L.append("")
    hs = res.get("tls_handshake")
    if hs:
        L.append("## TLS handshakes against nginx\n")
        L.append(f"Server CPU per handshake (bench/tls_handshake.py: median of {hs['reps']} "
                 f"runs of {hs['seconds']:g} s), and mbedTLS's floor per operation.\n")
        L.append(hs["report"] + "\n")
    L += udp_part.report_lines(res, SERVERS)
    analysis = os.path.join(HERE, "analysis.md")
    if os.path.exists(analysis):
        with open(analysis) as f:
            L.append(f.read())
    with open(path_md, "w") as f:
        f.write("\n".join(L))


# ---- main ------------------------------------------------------------------------------

def build(bdir, tide_source):
    subprocess.run(["cmake", "-S", HERE, "-B", bdir, "-DCMAKE_BUILD_TYPE=Release",
                    f"-DTIDE_SOURCE_DIR={tide_source}"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", bdir, "-j", str(os.cpu_count() or 2)], check=True,
                   stdout=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--tide-source", default=ROOT, help="the tide tree to build (default: this one)")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--only", help="comma-separated parts: "
                    "rr,scale,stream,memory,switch,coordination,workers,tls,tls_handshake,udp")
    ap.add_argument("--servers", help="comma-separated server names (default: all)")
    ap.add_argument("--sizes", help="comma-separated message sizes in bytes for rr/scale")
    ap.add_argument("--conns", help="comma-separated connection counts for rr")
    ap.add_argument("--results", help="write/read results here (default BUILD_DIR/results.json)")
    ap.add_argument("--report-only", action="store_true", help="regenerate the report from --results")
    a = ap.parse_args()
    bdir = os.path.abspath(a.build_dir)
    results = a.results or os.path.join(bdir, "results.json")
    docs = os.path.join(ROOT, "docs")
    if a.report_only:
        with open(results) as f:
            res = json.load(f)
        report(res, os.path.join(docs, "benchmarks.md"), docs)
        return 0
    if not a.no_build:
        log(f"building bench/ into {bdir} (Release)")
        build(bdir, os.path.abspath(a.tide_source))
    if a.quick:
        cfg = dict(sizes=[KIB], conns=[10], scale_conns=[200], reps=1, warmup=0.2,
                   duration=0.4, idle=1000, stream_conns=[1], switch_rounds=1000000,
                   workers_conns=20, tls_hs_conns=4, coordination_scale=0.05)
        cfg["memory_servers"] = ["epoll", "tide-protocol", "tide-callbacks", "tide-streams"]
        cfg["tls_servers"] = ["tide-protocol", "asyncio-protocol", "uvloop-protocol"]
    else:
        cfg = dict(sizes=[KIB, 10 * KIB, 100 * KIB], conns=[1, 10, 100], scale_conns=[1000],
                   reps=3, warmup=0.5, duration=2.0, idle=10000, stream_conns=[1, 10],
                   switch_rounds=10000000, workers_conns=100, tls_hs_conns=10,
                   coordination_scale=1)
        cfg["memory_servers"] = MEMORY_SERVERS
        cfg["tls_servers"] = TLS_SERVERS
    if a.reps:
        cfg["reps"] = a.reps
    if a.sizes:
        cfg["sizes"] = [int(x) for x in a.sizes.split(",")]
    if a.conns:
        cfg["conns"] = [int(x) for x in a.conns.split(",")]
    cfg["servers"] = a.servers.split(",") if a.servers else ALL
    if "epoll" not in cfg["servers"]:
        cfg["servers"].insert(0, "epoll")
    parts = a.only.split(",") if a.only else ["rr", "scale", "stream", "memory", "switch",
                                             "coordination", "workers", "tls", "udp"]
    res = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "quick": a.quick, "config": cfg, "machine": machine_info()}
    if a.quick:
        res["config"]["scale_conns"] = cfg["scale_conns"]
    t0 = time.time()
    for p in parts:
        log(f"== {p}")
        if p == "rr":
            part_rr(bdir, cfg, res, cfg["conns"], "rr")
        elif p == "scale":
            part_rr(bdir, dict(cfg, sizes=cfg["sizes"] if not a.quick else [KIB]), res,
                    cfg["scale_conns"], "scale")
        elif p == "stream":
            part_stream(bdir, cfg, res)
        elif p == "memory":
            part_memory(bdir, cfg, res)
        elif p == "switch":
            part_switch(bdir, cfg, res)
        elif p == "coordination":
            part_coordination(bdir, cfg, res)
        elif p == "workers":
            part_workers(bdir, cfg, res)
        elif p == "tls":
            part_tls(bdir, cfg, res)
        elif p == "tls_handshake":
            sys.path.insert(0, HERE)
            import tls_handshake
            res["tls_handshake"] = tls_handshake.run(bdir, cfg["reps"], quick=a.quick)
        elif p == "udp":
            udp_part.part_udp(bdir, cfg, res, Server, interleaved, summarize, log, CLIENT_CPU)
        else:
            raise SystemExit(f"unknown part {p}")
        with open(results, "w") as f:
            json.dump(res, f, indent=1)
    log(f"done in {time.time() - t0:.0f} s; results in {results}")
    for t, v, ok in targets(res):
        log(f"  target: {t}: {v}: {'met' if ok else ('missed' if ok is False else 'n/a')}")
    failures = [s for part in ("rr", "scale", "stream") for c in res.get(part, [])
                for s, d in c["summary"].items() if d.get("failed")]
    failures += [f"memory:{s}" for s, d in res.get("memory", {}).items() if "failed" in d]
    failures += [f"tls:{s}" for k, c in res.get("tls", {}).items() if isinstance(c, dict)
                 and "summary" in c for s, d in c["summary"].items() if d.get("failed")]
    failures += [f"udp:{s}" for c in res.get("udp", []) for s, d in c["summary"].items()
                 if d.get("failed")]
    if a.report:
        report(res, os.path.join(docs, "benchmarks.md"), docs)
        log(f"wrote {os.path.join(docs, 'benchmarks.md')}")
    if failures:
        log(f"FAILED servers: {sorted(set(failures))}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
