"""Real and misbehaving HTTP servers for tests/http/test_client.c.

    servers.py stdlib            Python's http.server in HTTP/1.1 mode
    servers.py rogue             a raw-socket server: good chunked responses, and the
                                 misbehaviours the client must turn into clear errors
    servers.py nginx CERT KEY    Debian's nginx, plain and TLS, with a generated config
                                 under a temporary directory

Each prints "PORT <plain> [<tls>]" once it accepts connections, then serves until its
standard input closes (the test's end) or DEADLINE seconds pass, whichever is first."""
import http.server
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

DEADLINE = 60
BIG = bytes(i % 251 for i in range(1 << 20))


def wait_for_stdin_eof():
    """Returns when the test closes our stdin, or after DEADLINE seconds."""
    done = threading.Event()

    def reader():
        try:
            while sys.stdin.buffer.read(1):
                pass
        finally:
            done.set()
    threading.Thread(target=reader, daemon=True).start()
    done.wait(DEADLINE)


def announce(*ports):
    print("PORT " + " ".join(str(p) for p in ports), flush=True)


# ---- Python's http.server --------------------------------------------------------------

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client expects
    connections = 0
    lock = threading.Lock()

    def setup(self):
        super().setup()
        with Handler.lock:
            Handler.connections += 1
            self.conn_id = Handler.connections

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body, extra=()):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Conn", str(self.conn_id))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        if self.path == "/hello":
            self.reply(200, b"hello world\n")
        elif self.path == "/big":
            self.reply(200, BIG)
        elif self.path == "/until-close":
            # No length: the body runs until the server closes.
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"all of it")
            self.close_connection = True
        else:
            self.reply(404, b"not here\n")

    do_HEAD = do_GET


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that resets (on purpose, in the tests) is not news


def serve_stdlib():
    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    announce(server.server_address[1])
    wait_for_stdin_eof()
    server.shutdown()


# ---- the rogue server --------------------------------------------------------------------

def read_head(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return None, b""
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    return head.split(b"\r\n")[0].split(b" ")[1].decode(), rest


def chunked(body_parts, trailers=b""):
    out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
    for part in body_parts:
        out += b"%x;ext=1\r\n%s\r\n" % (len(part), part)
    return out + b"0\r\n" + trailers + b"\r\n"


# Responses sent whole before the server closes (nothing for /silent-close).
BROKEN = {
    "/long-line": b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 100000 + b"\r\n\r\n",
    "/oversized-head": b"HTTP/1.1 200 OK\r\n"
    + b"".join(b"X-%d: %s\r\n" % (i, b"b" * 1000) for i in range(90)) + b"\r\n",
    "/bad-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "/chunk-overflow": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
    "/cut-head": b"HTTP/1.1 200 OK\r\nServer: rogue\r\n",
    "/cut-body": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
    "/cl-te": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "/fold": b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  continued\r\n\r\n",
}


def rogue(sock):
    sock.settimeout(DEADLINE)
    try:
        while True:
            path, _ = read_head(sock)
            if path is None:
                return
            if path == "/chunked":
                sock.sendall(chunked([b"hello ", b"chunked ", b"world"], b"X-Sum: 42\r\n"))
                continue  # keep-alive: the next request may follow
            if path == "/endless-headers":
                sock.sendall(b"HTTP/1.1 200 OK\r\n")
                for i in range(100000):
                    sock.sendall(b"X-Endless-%d: yes\r\n" % i)
            elif path == "/reset-mid-body":
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"c" * 1000)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                sock.sendall(BROKEN.get(path, b""))  # then close
            return
    except OSError:
        pass  # the client gave up (as it should on endless headers)
    finally:
        sock.close()


def serve_rogue():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def accept():
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=rogue, args=(sock,), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()
    announce(listener.getsockname()[1])
    wait_for_stdin_eof()
    listener.close()


# ---- nginx ---------------------------------------------------------------------------------

NGINX_CONF = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_timeout 30;
    keepalive_requests 100;
    server {{
        listen 127.0.0.1:{plain};
        listen 127.0.0.1:{tls} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {dir}/www;
        add_header X-Conn $connection;
        location /ssi/ {{ ssi on; }}
    }}
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepting(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def serve_nginx(cert, key):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    with tempfile.TemporaryDirectory() as tmp:
        # Run as root, nginx's workers drop to an unprivileged user: they must be able
        # to read the files served.
        os.chmod(tmp, 0o755)
        os.makedirs(f"{tmp}/www/ssi")
        with open(f"{tmp}/www/index.txt", "wb") as f:
            f.write(b"hello from nginx\n")
        with open(f"{tmp}/www/big.bin", "wb") as f:
            f.write(BIG)
        # SSI output has no length known in advance: nginx sends it chunked.
        with open(f"{tmp}/www/ssi/page.html", "wb") as f:
            f.write(b"before <!--# echo var=\"connection\" --> after\n" * 50)
        for attempt in range(5):
            # The ports are picked free, then bound by nginx: retried if another
            # process took one in between.
            plain, tls = free_port(), free_port()
            with open(f"{tmp}/nginx.conf", "w") as f:
                f.write(NGINX_CONF.format(dir=tmp, plain=plain, tls=tls, cert=cert, key=key))
            proc = subprocess.Popen([nginx, "-c", f"{tmp}/nginx.conf", "-p", tmp],
                                    stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while proc.poll() is None and time.monotonic() < deadline:
                if accepting(plain) and accepting(tls):
                    break
                time.sleep(0.05)
            if proc.poll() is None and accepting(plain) and accepting(tls):
                break
            proc.kill()
            proc.wait()
        else:
            sys.exit("nginx did not start")
        announce(plain, tls)
        try:
            wait_for_stdin_eof()
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "stdlib":
        serve_stdlib()
    elif mode == "rogue":
        serve_rogue()
    elif mode == "nginx":
        serve_nginx(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown mode {mode}")
