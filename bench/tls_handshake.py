#!/usr/bin/env python3
"""TLS handshake cost on the server: tide (examples/echo_server --tls-cert) against
nginx (Debian's, started here with the same certificate on an ephemeral port), with an
RSA-2048 and an ECDSA P-256 certificate made by openssl at run time.

    bench/tls_handshake.py [--build-dir DIR] [--reps N] [--seconds S] [--quick]

For each certificate, key-exchange group (X25519, P-256) and kind of handshake (full,
resumed by session ID, resumed by session ticket), bench/tls_handshake.c makes TLS 1.2
handshakes one at a time for S seconds, and the server's CPU time over the run (utime +
stime from /proc/PID/stat) divided by the handshakes is the figure; each cell is
repeated N times (servers interleaved) and the median quoted. The server is pinned to
CPU 0 and the client to CPU 1. CPU time, not wall clock: the machine may be shared.

Then the engine's floor: bench/tls_floor.c (mbedTLS's own ECDH, ECDSA, RSA and AEAD
per operation) beside `openssl speed` on the same machine, and what a full handshake
would cost at those figures.

Needs the bench build (bench/run.py builds it: tide's echo_server, tls_handshake,
tls_floor), nginx-light (or any Debian nginx), openssl and util-linux's taskset.
Prints a markdown report and writes BUILD_DIR/tls_handshake.json. bench/run.py runs it
as its `tls_handshake` part."""
import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SERVER_CPU, CLIENT_CPU = "0", "1"
TICK = os.sysconf("SC_CLK_TCK")
CERTS = {"rsa2048": ["-newkey", "rsa:2048"],
         "ecdsa-p256": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]}
# What the client offers: the server picks (tide by its own order, X25519 first; nginx
# by the client's). P-256 stays offered with X25519 because mbedTLS 2.28 signs with an
# ECDSA P-256 key only for a client that lists P-256.
GROUPS = {"x25519": "X25519:P-256", "p256": "P-256"}
MODES = ["full", "id", "ticket"]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15)


def run_ns(pid):
    """The main thread's time on a CPU in ns (/proc/PID/schedstat): a cross-check of the
    tick-grained utime + stime for these single-threaded servers."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_cert(d, kind):
    cert, key = os.path.join(d, f"{kind}.crt"), os.path.join(d, f"{kind}.key")
    subprocess.run(["openssl", "req", "-x509", *CERTS[kind], "-nodes", "-days", "30", "-subj",
                    "/CN=localhost", "-keyout", key, "-out", cert], check=True,
                   capture_output=True)
    return cert, key


def wait_port(port, proc, what):
    deadline = time.time() + 10
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {proc.stderr.read().decode(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} does not listen on {port}")


class Server:
    def __init__(self, name, argv, port, cwd=None):
        self.name = name
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPU, *argv], cwd=cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.port = port
        if port is None:  # tide prints "listening on 127.0.0.1:PORT"
            line = self.proc.stdout.readline().decode()
            m = re.search(r":(\d+)\s*$", line)
            if not m:
                raise RuntimeError(f"{name}: {line!r} {self.proc.stderr.read().decode()}")
            self.port = int(m.group(1))
        wait_port(self.port, self.proc, name)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def tide_server(bdir, cert, key):
    return Server("tide", [os.path.join(bdir, "tide/examples/echo_server"), "--port", "0",
                           "--quiet", "--style", "protocol", "--tls-cert", cert,
                           "--tls-key", key], None)


def nginx_server(tmp, cert, key):
    port = free_port()
    conf = os.path.join(tmp, f"nginx-{port}.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx-{port}.pid;
error_log stderr error;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};
    uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        ssl_session_tickets on;
        location / {{ return 200 "ok"; }}
    }}
}}
""")
    return Server("nginx", [shutil.which("nginx") or "/usr/sbin/nginx", "-p", tmp, "-c", conf],
                  port)


def one_run(bdir, srv, mode, group, seconds):
    before, before_ns = cpu_seconds(srv.proc.pid), run_ns(srv.proc.pid)
    out = subprocess.run(["taskset", "-c", CLIENT_CPU, os.path.join(bdir, "tls_handshake"),
                          str(srv.port), str(seconds), mode, GROUPS[group]],
                         capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"{srv.name} {mode} {group}: {out.stderr.strip()}")
    time.sleep(0.05)  # the server's last close
    cpu = cpu_seconds(srv.proc.pid) - before
    r = json.loads(out.stdout)
    r["server_cpu_s"] = cpu
    r["us_per_handshake"] = cpu * 1e6 / r["handshakes"]
    r["schedstat_us_per_handshake"] = (run_ns(srv.proc.pid) - before_ns) / 1e3 / r["handshakes"]
    return r


def handshakes(bdir, reps, seconds):
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in CERTS:
            cert, key = make_cert(tmp, kind)
            servers = [tide_server(bdir, cert, key), nginx_server(tmp, cert, key)]
            try:
                for srv in servers:  # warm: tables, caches, the first session
                    one_run(bdir, srv, "full", "x25519", 0.2)
                for group in GROUPS:
                    for mode in MODES:
                        cell = {}
                        for rep in range(reps):
                            for srv in servers:
                                r = one_run(bdir, srv, mode, group, seconds)
                                cell.setdefault(srv.name, []).append(r)
                                log(f"  {kind} {group} {mode} {srv.name} rep {rep}: "
                                    f"{r['us_per_handshake']:8.0f} us/handshake "
                                    f"(schedstat {r['schedstat_us_per_handshake']:.0f}) "
                                    f"({r['handshakes']} made, {r['resumed']} resumed, "
                                    f"{r['cipher']}, {r['group']})")
                        res[f"{kind}/{group}/{mode}"] = {
                            name: {"us": statistics.median(x["us_per_handshake"] for x in v),
                                   "schedstat_us": statistics.median(
                                       x["schedstat_us_per_handshake"] for x in v),
                                   "resumed": min(x["resumed"] / x["handshakes"] for x in v),
                                   "cipher": v[0]["cipher"], "runs": v}
                            for name, v in cell.items()}
            finally:
                for srv in servers:
                    srv.stop()
    return res


def floor(bdir, seconds, reps):
    runs = []
    for _ in range(reps):
        out = subprocess.run(["taskset", "-c", CLIENT_CPU, os.path.join(bdir, "tls_floor"),
                              str(seconds)], capture_output=True, text=True, check=True)
        runs.append([json.loads(line) for line in out.stdout.splitlines()])
    version = runs[0][0]["mbedtls"]
    ops = {}
    for run in runs:
        for r in run[1:]:
            ops.setdefault(r["op"], []).append(r.get("us", r.get("mib_s")))
    return version, {op: statistics.median(v) for op, v in ops.items()}


def openssl_speed(seconds):
    """openssl speed's figures (user CPU time) as microseconds per op and MiB/s."""
    def run(*args):
        return subprocess.run(["taskset", "-c", CLIENT_CPU, "openssl", "speed", "-seconds",
                               str(seconds), *args], capture_output=True, text=True).stdout
    out = {}
    text = run("ecdsap256", "ecdhx25519", "ecdhp256", "rsa2048")
    # The per-second columns: sign/s (RSA, ECDSA) and op/s (ECDH).
    for pattern, key in ((r"^rsa 2048 bits\s+[\d.]+s\s+[\d.]+s\s+([\d.]+)", "rsa2048_private"),
                         (r"256 bits ecdsa \(nistp256\)\s+[\d.]+s\s+[\d.]+s\s+([\d.]+)",
                          "ecdsa_sign_p256"),
                         (r"253 bits ecdh \(X25519\)\s+[\d.]+s\s+([\d.]+)", "ecdh_shared_x25519"),
                         (r"256 bits ecdh \(nistp256\)\s+[\d.]+s\s+([\d.]+)", "ecdh_shared_p256")):
        m = re.search(pattern, text, re.M)
        if m:
            out[key] = 1e6 / float(m.group(1))
    for evp, key in (("aes-128-gcm", "aes128_gcm"), ("chacha20-poly1305", "chacha20_poly1305")):
        text = run("-evp", evp, "-bytes", "16384")
        m = re.search(r"^\S+\s+([\d.]+)k\s*$", text.strip().splitlines()[-1])
        if m:
            out[key] = float(m.group(1)) * 1000 / (1024 * 1024)
    return out


def model(ops, cert, group):
    """What a full TLS 1.2 ECDHE handshake costs the server in public-key operations: its
    ephemeral key pair (in a group loaded for the handshake), the shared secret, and the
    signature of its key exchange."""
    sign = ops["ecdsa_sign_p256"] if cert == "ecdsa-p256" else ops["rsa2048_private"]
    return ops[f"ecdh_keygen_fresh_{group}"] + ops[f"ecdh_shared_{group}"] + sign


def report(res):
    lines = ["| certificate | group | handshake | tide µs | nginx µs | tide / nginx |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    names = {"full": "full", "id": "resumed (session ID)", "ticket": "resumed (ticket)"}
    for key, cell in res["handshakes"].items():
        kind, group, mode = key.split("/")
        t, n = cell["tide"]["us"], cell["nginx"]["us"]
        ratio = f"{t / n:.2f}" if n > 0 else "-"
        lines.append(f"| {kind} | {group} | {names[mode]} | {t:.0f} | {n:.0f} | {ratio} |")
    fl = res["floor"]
    lines += ["", f"mbedTLS {res['mbedtls']} per operation (tls_floor) beside `openssl speed`:",
              "", "| operation | mbedTLS | OpenSSL | ratio |", "| --- | ---: | ---: | ---: |"]
    for op, v in fl.items():
        o = res["openssl"].get(op)
        unit = "MiB/s" if op in ("aes128_gcm", "chacha20_poly1305") else "µs"
        ratio = (v / o if unit == "µs" else o / v) if o else None
        lines.append(f"| {op} | {v:.1f} {unit} | {f'{o:.1f} ' + unit if o else '-'} | "
                     f"{f'{ratio:.1f}' if ratio else '-'} |")
    lines += ["", "| full handshake | mbedTLS floor µs | tide µs | tide - floor µs | "
              "OpenSSL floor µs | nginx µs |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    o = res["openssl"]
    for kind in CERTS:
        for group in GROUPS:
            f = model(fl, kind, group)
            t = res["handshakes"][f"{kind}/{group}/full"]["tide"]["us"]
            n = res["handshakes"][f"{kind}/{group}/full"]["nginx"]["us"]
            # OpenSSL's key pair approximated by its shared-secret operation.
            sign = o.get("ecdsa_sign_p256" if kind == "ecdsa-p256" else "rsa2048_private")
            shared = o.get(f"ecdh_shared_{group}")
            of = f"{2 * shared + sign:.0f}" if sign and shared else "-"
            lines.append(f"| {kind}, {group} | {f:.0f} | {t:.0f} | {t - f:.0f} | {of} | {n:.0f} |")
    return "\n".join(lines)


def run(bdir, reps=3, seconds=3.0, quick=False):
    if quick:
        reps, seconds = 1, 0.3
    out = {"reps": reps, "seconds": seconds}
    out["handshakes"] = handshakes(bdir, reps, seconds)
    out["mbedtls"], out["floor"] = floor(bdir, 0.2 if quick else 1.0, 1 if quick else 3)
    out["openssl"] = openssl_speed(1)
    out["report"] = report(out)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    bdir = os.path.abspath(a.build_dir)
    res = run(bdir, a.reps, a.seconds, a.quick)
    with open(os.path.join(bdir, "tls_handshake.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(res["report"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
