#!/usr/bin/env python3
"""Writes the seed inputs of the TLS, TLS configuration and address fuzz targets
(tests/fuzz/corpus/<target>/; fuzz_reader's seeds are inputs a fuzzing run found).

TLS: a real handshake between Python's ssl module (OpenSSL) client and server, through
memory BIOs, with a throwaway EC certificate made by the `openssl` command: the
client's first flight (a ClientHello, TLS 1.2 only and TLS 1.2-1.3) seeds the server
target, the server's answer (ServerHello .. ServerHelloDone, TLS 1.2 ECDHE-ECDSA)
seeds the client target. Each seed starts with the targets' two header bytes (flags,
pace; see fuzz_tls.c). The same certificate and key, PEM and DER, seed
fuzz_tls_config (records as fuzz_tls_config.c reads them), and a few socket
addresses and Unix paths fuzz_address. The TLS output differs at every run (randoms,
keys); the checked-in files are one such run. Usage: make_seeds.py [CORPUS_DIR]
"""
import os
import socket
import ssl
import struct
import subprocess
import sys
import tempfile


def make_cert(directory):
    key = os.path.join(directory, "key.pem")
    crt = os.path.join(directory, "crt.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "3650", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    return crt, key


def flights(crt, key, max_version):
    """The client's first flight and the server's answer to it."""
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    cctx.maximum_version = max_version
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(crt, key)
    sctx.maximum_version = max_version
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = cctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    server = sctx.wrap_bio(s_in, s_out, server_side=True)
    try:
        client.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = c_out.read()
    s_in.write(hello)
    try:
        server.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return hello, s_out.read()


def record(op, payload):
    """One fuzz_tls_config record: op byte, 16-bit little-endian length, payload."""
    return bytes([op]) + struct.pack("<H", len(payload)) + payload


def config_seeds(crt, key):
    pem_crt = open(crt, "rb").read()
    pem_key = open(key, "rb").read()
    der = ssl.PEM_cert_to_DER_cert(pem_crt.decode())
    return [
        ("ca-pem", b"\x00" + record(0, pem_crt)),
        ("ca-der-verify", b"\x00" + record(0, der) + record(6, b"\x01")),
        ("server-pair-alpn", b"\x01" + record(1, pem_crt) + record(0, pem_key)
         + record(3, b"h2,http/1.1") + record(4, b"\x03\x01")),
        ("server-sni-timeouts", b"\x01" + record(2, pem_crt) + record(0, pem_key)
         + record(0, b"*.example.test") + record(5, struct.pack("<dd", 2.5, 1.0))
         + record(7, b"\x01")),
    ]


def address_seeds():
    inet = struct.pack("<H", socket.AF_INET) + struct.pack(">H", 443) \
        + socket.inet_pton(socket.AF_INET, "192.0.2.7") + bytes(8)
    inet6 = struct.pack("<H", socket.AF_INET6) + struct.pack(">HI", 8080, 0) \
        + socket.inet_pton(socket.AF_INET6, "fe80::1") + struct.pack("<I", 3)
    unix = struct.pack("<H", socket.AF_UNIX) + b"/run/tide.sock\x00"
    # byte 0: 0 formats an address, 1 round-trips a Unix path; byte 1: buffer size.
    return [
        ("inet", b"\x00\x40" + inet),
        ("inet6-scope-short-buffer", b"\x00\x0c" + inet6),
        ("unix-path", b"\x00\x80" + unix),
        ("unix-abstract-roundtrip", b"\x01\x00@tide-abstract"),
    ]


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus")
    with tempfile.TemporaryDirectory() as tmp:
        crt, key = make_cert(tmp)
        hello12, answer12 = flights(crt, key, ssl.TLSVersion.TLSv1_2)
        hello13, _ = flights(crt, key, ssl.TLSVersion.TLSv1_3)
        configs = config_seeds(crt, key)
    # (target, name, flags, pace, payload); flags and pace as fuzz_tls.c reads them.
    seeds = [
        ("fuzz_tls_server", "client-hello-tls12", 0x00, 0x07, hello12),
        ("fuzz_tls_server", "client-hello-tls13", 0x01, 0x07, hello13),
        ("fuzz_tls_server", "client-hello-bytewise-close", 0x10, 0x00, hello12),
        ("fuzz_tls_server", "client-hello-stops-reading-reset", 0x24, 0x07, hello13),
        ("fuzz_tls_server", "client-hello-app-paused-reset", 0xa4, 0x03, hello12),
        ("fuzz_tls_client", "server-flight-tls12", 0x00, 0x07, answer12),
        ("fuzz_tls_client", "server-flight-verify-chunked", 0x02, 0x0b, answer12),
        ("fuzz_tls_client", "server-flight-alpn-eof", 0x09, 0x04, answer12),
        ("fuzz_tls_client", "server-flight-stops-reading-reset", 0x24, 0x07, answer12),
        ("fuzz_tls_client", "server-flight-app-paused-abort", 0x98, 0x05, answer12),
    ]
    files = [(t, n, bytes([flags, pace]) + payload) for t, n, flags, pace, payload in seeds]
    files += [("fuzz_tls_config", n, data) for n, data in configs]
    files += [("fuzz_address", n, data) for n, data in address_seeds()]
    for target, name, data in files:
        directory = os.path.join(root, target)
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
