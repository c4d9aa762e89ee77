#!/usr/bin/env python3
"""examples/ftp_client against pyftpdlib: 10 MiB binary RETR and STOR with checksums,
LIST, NLST and the small commands, plain and over explicit FTPS (AUTH TLS, PROT P,
TLS required on both channels); EPSV, and PASV when EPSV is refused; a PASV reply
naming an unreachable address (the client must use the control connection's peer);
malformed PASV and EPSV replies; the server going away in the middle of a transfer.

pyftpdlib runs in a thread of this process on a free loopback port; its handlers are
subclassed to record commands and to misbehave on purpose.

    test_ftp.py PATH_TO_ftp_client [CASE ...]
"""
import asyncio
import hashlib
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import warnings

from apps import DEADLINE, HOST, SKIP, TestPKI, check, expect_exit, main, run_client

try:
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import DTPHandler, FTPHandler, TLS_DTPHandler, TLS_FTPHandler
    from pyftpdlib.servers import FTPServer
except ImportError as e:
    print(f"SKIP: pyftpdlib (with PyOpenSSL) is not installed: {e} "
          "(Debian: python3-pyftpdlib python3-openssl)")
    sys.exit(SKIP)

# Quiet: a handler of our own stops pyftpdlib from configuring its console logging.
logging.getLogger("pyftpdlib").addHandler(logging.NullHandler())
logging.getLogger("pyftpdlib").setLevel(logging.CRITICAL)
warnings.filterwarnings("ignore", "write permissions assigned to anonymous user")

USER, PASSWORD = "alice", "s3cret p@ss"
SIZE = 10 * 1024 * 1024
UNREACHABLE = "192.0.2.1"  # TEST-NET-1: nothing answers there


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def random_file(path, size=SIZE):
    with open(path, "wb") as f:
        f.write(os.urandom(size))
    return digest(path)


class Server:
    """pyftpdlib on a free loopback port, served by a thread: `with Server(...) as s`.
    handler_attrs become class attributes of a fresh handler subclass (so cases do not
    share state); s.commands lists the commands received, in order."""

    def __init__(self, root, tls=None, base=None, **handler_attrs):
        authorizer = DummyAuthorizer()
        authorizer.add_user(USER, PASSWORD, root, perm="elradfmw")
        authorizer.add_anonymous(root, perm="elradfmw")
        commands = self.commands = []

        if base is None:
            base = TLS_FTPHandler if tls else FTPHandler

        class Handler(base):
            def pre_process_command(self, line, cmd, arg):
                commands.append(cmd)
                return super().pre_process_command(line, cmd, arg)

        Handler.authorizer = authorizer
        if tls:
            Handler.certfile, Handler.keyfile = tls.cert, tls.key
            Handler.ssl_context = None
            Handler.tls_control_required = Handler.tls_data_required = True
        for name, value in handler_attrs.items():
            setattr(Handler, name, value)
        self.server = FTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.address[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        while not self.stop.is_set():
            self.server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)
        self.server.close_all()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(DEADLINE)
        check(not self.thread.is_alive(), "pyftpdlib did not stop")


def args(port, *extra):
    # The client's own deadline is shorter than run_client's: a stall shows its message.
    return ["--server", f"{HOST}:{port}", "--timeout", str(DEADLINE / 2), *extra]


async def ok(client, arguments, what):
    code, out, err = await run_client(client, arguments)
    check(code == 0, f"{what}: exit status {code}: {err.strip()}")
    return out, err


def setup(workdir):
    root = os.path.join(workdir, "root")
    local = os.path.join(workdir, "local")
    os.mkdir(root)
    os.mkdir(local)
    return root, local


async def round_trip(client, workdir, server_kw, extra, what):
    """put 10 MiB, get it back, ls, nlst, and the small commands; checksums compared
    on both sides. Returns the server's commands and the client's stderr."""
    root, local = setup(workdir)
    source = os.path.join(local, "up.bin")
    want = random_file(source)
    fetched = os.path.join(local, "down.bin")
    with Server(root, **server_kw) as s:
        out, err = await ok(client, args(s.port, *extra, "--verbose", "mkdir", "dir", "cd", "dir",
                                         "pwd", "put", source, "big.bin", "size", "big.bin",
                                         "get", "big.bin", fetched, "ls", "nlst", "."),
                            what)
    commands = s.commands
    stored = os.path.join(root, "dir", "big.bin")
    check(os.path.exists(stored) and digest(stored) == want, f"{what}: STOR checksum differs")
    check(digest(fetched) == want, f"{what}: RETR checksum differs")
    check(not os.path.exists(fetched + ".part"), f"{what}: a .part file was left")
    lines = out.splitlines()
    check(lines[0] == '"/dir" is the current directory.', f"{what}: pwd printed {lines[0]!r}")
    check(lines[1] == str(SIZE), f"{what}: size printed {lines[1]!r}")
    listing = [l for l in lines[2:] if "big.bin" in l]
    check(len(listing) == 2 and str(SIZE) in listing[0] and listing[1] == "big.bin",
          f"{what}: ls/nlst printed {lines[2:]!r}")
    # Delete last, on its own session: rm.
    with Server(root, **server_kw) as s:
        await ok(client, args(s.port, *extra, "cd", "dir", "rm", "big.bin"), f"{what} rm")
    check(not os.path.exists(stored), f"{what}: rm left the file")
    return commands, err


async def case_plain(client, workdir):
    commands, err = await round_trip(client, workdir, {}, [], "plain")
    check("EPSV" in commands and "PASV" not in commands, f"plain: {commands}")
    check("S: 211-Features supported:" in err and "S: 211 End FEAT." in err,
          f"plain: no multi-line FEAT in the dialogue: {err[:400]}")


async def case_login(client, workdir):
    root, local = setup(workdir)
    with Server(root) as s:
        out, err = await ok(client, args(s.port, "--user", USER, "--password", PASSWORD,
                                         "--verbose", "pwd"), "login")
        check(PASSWORD not in err and "PASS <hidden>" in err, f"login: password shown: {err}")
        os.environ["FTP_PASSWORD"] = PASSWORD
        try:
            await ok(client, args(s.port, "--user", USER, "pwd"), "FTP_PASSWORD")
        finally:
            del os.environ["FTP_PASSWORD"]
        expect_exit(await run_client(client, args(s.port, "--user", USER, "--password", "bad",
                                                  "pwd")), 6, ["login", "530"], "bad password")
        expect_exit(await run_client(client, args(s.port, "get", "missing.bin",
                                                  os.path.join(local, "m"))),
                    9, ["RETR missing.bin", "550"], "missing file")
        check(not os.listdir(local), f"missing file: left {os.listdir(local)}")
        expect_exit(await run_client(client, args(s.port, "cd", "nowhere")), 7,
                    ["CWD nowhere", "550"], "cd")


class NoEpsv(FTPHandler):
    def ftp_EPSV(self, line):
        self.respond("502 EPSV not implemented here.")


async def case_pasv(client, workdir):
    """EPSV refused: PASV, and EPSV is not asked again in the session."""
    commands, _ = await round_trip(client, workdir, {"base": NoEpsv}, [], "PASV")
    check(commands.count("EPSV") == 1 and commands.count("PASV") == 4, f"PASV: {commands}")


async def case_pasv_foreign(client, workdir):
    """The PASV reply names an unreachable address: the data connection must go to the
    control connection's peer anyway (and pyftpdlib accepts it only from there)."""
    root, local = setup(workdir)
    want = random_file(os.path.join(root, "f.bin"), 1024 * 1024)
    target = os.path.join(local, "f.bin")
    with Server(root, base=NoEpsv, masquerade_address=UNREACHABLE) as s:
        _, err = await ok(client, args(s.port, "--verbose", "get", "f.bin", target),
                          "foreign PASV")
    check("(192,0,2,1," in err and f"PASV named {UNREACHABLE}" in err,
          f"foreign PASV: the reply was not the masqueraded one: {err}")
    check(digest(target) == want, "foreign PASV: checksum differs")


def bad_reply(verb, reply):
    class Bad(FTPHandler):
        pass
    setattr(Bad, "ftp_" + verb, lambda self, line: self.respond(reply))
    if verb == "PASV":
        Bad.ftp_EPSV = NoEpsv.ftp_EPSV
    return Bad


async def case_pasv_malformed(client, workdir):
    root, local = setup(workdir)
    for verb, reply in (("PASV", "227 Entering Passive Mode (127,0,0,1,256,1)."),
                        ("PASV", "227 Entering Passive Mode (127,0,0,256,4,1)."),
                        ("PASV", "227 Entering Passive Mode (127,0,0,1,0,0)."),
                        ("PASV", "227 Entering Passive Mode (127,0,0,1,4)."),
                        ("PASV", "227 Entering Passive Mode (127,0,0,1,-4,1)."),
                        ("EPSV", "229 Entering Extended Passive Mode (|||0|)."),
                        ("EPSV", "229 Entering Extended Passive Mode (|||65536|)."),
                        ("EPSV", "229 Entering Extended Passive Mode (||1234)."),
                        ("EPSV", "229 Entering Extended Passive Mode (|||12a|).")):
        with Server(root, base=bad_reply(verb, reply)) as s:
            expect_exit(await run_client(client, args(s.port, "ls")), 8,
                        [f"{verb}: protocol error"], reply)
        check("LIST" not in s.commands, f"{reply}: the client went on: {s.commands}")


class DropRetr(DTPHandler):
    """Closes the session (control and data) after sending 1 MiB of a RETR."""
    def send(self, data):
        sent = super().send(data)
        if self.tot_bytes_sent > 1024 * 1024 and not getattr(self, "dropped", False):
            self.dropped = True
            self.ioloop.call_later(0, self.cmd_channel.close)
        return sent


class DropStor(DTPHandler):
    """Closes the session after receiving 1 MiB of a STOR. (DTPHandler binds
    handle_read_event to its own handle_read, so that is what the ioloop calls.)"""
    def handle_read_event(self):
        super().handle_read_event()
        if self.tot_bytes_received > 1024 * 1024 and not getattr(self, "dropped", False):
            self.dropped = True
            self.ioloop.call_later(0, self.cmd_channel.close)


async def case_server_gone(client, workdir):
    root, local = setup(workdir)
    random_file(os.path.join(root, "big.bin"))
    target = os.path.join(local, "big.bin")
    with Server(root, dtp_handler=DropRetr, use_sendfile=False) as s:
        expect_exit(await run_client(client, args(s.port, "get", "big.bin", target)), 9,
                    ["RETR big.bin"], "server gone in RETR")
    check(not os.listdir(local), f"server gone in RETR: left {os.listdir(local)}")
    source = os.path.join(local, "up.bin")
    random_file(source)
    with Server(root, dtp_handler=DropStor) as s:
        expect_exit(await run_client(client, args(s.port, "put", source)), 9,
                    ["STOR up.bin: "], "server gone in STOR")


async def case_arguments(client, workdir):
    """CR or LF in a path or credential: refused before connecting."""
    root, _ = setup(workdir)
    with Server(root) as s:
        for extra in (["get", "a\r\nDELE x"], ["mkdir", "d\nRMD /"], ["rm", "x\r"],
                      ["--user", "u\r\nSITE x", "--password", "p", "pwd"],
                      ["--user", "u", "--password", "p\nDELE x", "pwd"]):
            expect_exit(await run_client(client, args(s.port, *extra)), 2, ["CR or LF"],
                        repr(extra))
        expect_exit(await run_client(client, args(s.port, "frobnicate")), 2,
                    ["not a command"], "unknown command")
    check(s.commands == [], f"arguments: the server saw {s.commands}")


# ---- FTPS -----------------------------------------------------------------------------

async def case_tls(client, workdir):
    certs = TestPKI(workdir)
    commands, err = await round_trip(
        client, workdir, {"tls": certs},
        ["--tls", "--cafile", certs.ca, "--user", USER, "--password", PASSWORD], "FTPS")
    check(commands[:4] == ["AUTH", "USER", "PASS", "PBSZ"] and commands[4] == "PROT",
          f"FTPS: {commands}")
    check("-- data connection: TLS" in err, f"FTPS: data connections were not TLS: {err}")


async def case_tls_pasv(client, workdir):
    """FTPS with PASV, the session resumed on the data connections."""
    certs = TestPKI(workdir)
    root, local = setup(workdir)
    want = random_file(os.path.join(root, "f.bin"), 1024 * 1024)
    target = os.path.join(local, "f.bin")
    with Server(root, tls=certs, base=type("NoEpsvTls", (TLS_FTPHandler,),
                                           {"ftp_EPSV": NoEpsv.ftp_EPSV}),
                masquerade_address=UNREACHABLE) as s:
        _, err = await ok(client, args(s.port, "--tls", "--cafile", certs.ca, "--verbose",
                                       "get", "f.bin", target, "ls"), "FTPS PASV")
    check(digest(target) == want, "FTPS PASV: checksum differs")
    check("session resumed" in err, f"FTPS PASV: the data session was not resumed: {err}")


async def case_tls_refused(client, workdir):
    """--tls against a server without AUTH TLS: no login is sent; and a plain client
    against a server requiring TLS is refused at login."""
    certs = TestPKI(workdir)
    root, _ = setup(workdir)
    with Server(root) as s:
        expect_exit(await run_client(client, args(s.port, "--tls", "--cafile", certs.ca,
                                                  "--user", USER, "--password", PASSWORD,
                                                  "pwd")), 5, ["AUTH TLS"], "no AUTH TLS")
    check("USER" not in s.commands and "PASS" not in s.commands, f"no AUTH TLS: {s.commands}")
    with Server(root, tls=certs) as s:
        expect_exit(await run_client(client, args(s.port, "pwd")), 6, ["login", "550"],
                    "TLS required")
        # Without the test CA: the handshake fails, nothing more is sent.
        expect_exit(await run_client(client, args(s.port, "--tls", "--user", USER,
                                                  "--password", PASSWORD, "pwd")),
                    5, ["TLS handshake"], "untrusted")
    check(s.commands.count("USER") == 1 and "PASS" not in s.commands,
          f"untrusted: {s.commands}")


async def case_tls_server_gone(client, workdir):
    certs = TestPKI(workdir)
    root, local = setup(workdir)
    random_file(os.path.join(root, "big.bin"))
    target = os.path.join(local, "big.bin")

    class DropTls(TLS_DTPHandler):
        send = DropRetr.send

    with Server(root, tls=certs, dtp_handler=DropTls) as s:
        expect_exit(await run_client(client, args(s.port, "--tls", "--cafile", certs.ca,
                                                  "get", "big.bin", target)), 9,
                    ["RETR big.bin"], "FTPS server gone")
    check(not os.listdir(local), f"FTPS server gone: left {os.listdir(local)}")


# ---- scripted servers: what no real server does on purpose --------------------------

class Scripted:
    """A fake FTP server on asyncio: `greeting` is sent first (with endless, again and
    again until the client hangs up, bounded); AUTH gets `auth_tls`; EPSV opens a data
    listener; RETR sends 150 and 256 KiB, then `ending`: "hang" keeps the data
    connection open and sends no final reply, "reset" resets it (RST)."""

    def __init__(self, greeting=b"220 fake\r\n", auth_tls=b"502 no\r\n", ending="hang",
                 endless=False):
        self.greeting, self.auth_tls, self.ending = greeting, auth_tls, ending
        self.endless_greeting = endless
        self.lines, self.sent, self.held = [], 0, []

    async def endless(self, writer):
        while self.sent < 64 * 1024 * 1024:
            writer.write(self.greeting)
            self.sent += len(self.greeting)
            await writer.drain()

    async def retr(self, writer):
        writer.write(b"150 here it comes\r\n")
        await writer.drain()
        _, data = await asyncio.wait_for(self.accepted, DEADLINE)
        data.write(os.urandom(256 * 1024))
        await data.drain()
        if self.ending == "reset":
            sock = data.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            data.transport.abort()
        else:
            self.held.append(data)  # never closed, no final reply

    async def handle(self, reader, writer):
        try:
            if self.endless_greeting:
                return await self.endless(writer)
            writer.write(self.greeting)
            while line := await reader.readline():
                self.lines.append(line)
                verb = line.split(b" ")[0].strip().upper()
                reply = {b"AUTH": self.auth_tls, b"USER": b"230 in\r\n",
                         b"QUIT": b"221 bye\r\n"}.get(verb, b"200 ok\r\n")
                if verb in (b"EPSV", b"RETR"):
                    await getattr(self, verb.decode().lower())(writer)
                else:
                    writer.write(reply)
                await writer.drain()
                if verb == b"QUIT":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def epsv(self, writer):
        self.accepted = asyncio.get_running_loop().create_future()
        data = await asyncio.start_server(
            lambda r, w: self.accepted.done() or self.accepted.set_result((r, w)),
            "127.0.0.1", 0)
        self.held.append(data)
        port = data.sockets[0].getsockname()[1]
        writer.write(b"229 Entering Extended Passive Mode (|||%d|)\r\n" % port)

    async def __aenter__(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        for h in self.held:
            h.close()
        self.server.close()


async def case_endless(client, workdir):
    """An endless line and an endless multi-line greeting: errors at the limits."""
    for chunk, words in ((b"220 " + b"x" * 4096, ["longer than 1024"]),
                         (b"220-start\r\n" + b" more\r\n" * 512, ["more than 1000 lines"])):
        async with Scripted(greeting=chunk, endless=True) as s:
            expect_exit(await run_client(client, args(s.port, "pwd")), 4, words,
                        f"endless {chunk[:8]!r}")
        check(s.sent < 16 * 1024 * 1024, f"endless: the client read {s.sent} bytes")


async def case_auth_tls_injection(client, workdir):
    """A reply pipelined after 234 (before the handshake): no login follows."""
    certs = TestPKI(workdir)
    async with Scripted(auth_tls=b"234 go ahead\r\n230 injected\r\n") as s:
        expect_exit(await run_client(client, args(s.port, "--tls", "--cafile", certs.ca,
                                                  "--user", USER, "--password", PASSWORD,
                                                  "pwd")), 5, ["AUTH TLS", "injection"],
                    "AUTH TLS injection")
    check([l[:4] for l in s.lines] == [b"AUTH"], f"AUTH TLS injection: {s.lines!r}")


async def case_data_misbehaves(client, workdir):
    """A data connection that never closes (timeout) and one reset in the middle: a
    clear error, and no file, partial or .part, left behind."""
    _, local = setup(workdir)
    target = os.path.join(local, "f.bin")
    for ending, words in (("hang", ["RETR f.bin", "no answer within"]),
                          ("reset", ["RETR f.bin", "reset"])):
        async with Scripted(ending=ending) as s:
            expect_exit(await run_client(client, ["--server", f"{HOST}:{s.port}", "--timeout",
                                                  "1", "get", "f.bin", target]), 9, words,
                        f"data {ending}")
        check(not os.listdir(local), f"data {ending}: left {os.listdir(local)}")


# ---- vsftpd -----------------------------------------------------------------------------

VSFTPD_CONF = """listen=YES
listen_address=127.0.0.1
listen_port={port}
background=NO
run_as_launching_user=YES
anonymous_enable=YES
local_enable=NO
anon_root={root}
write_enable=YES
anon_upload_enable=YES
anon_umask=022
no_anon_password=YES
secure_chroot_dir={empty}
seccomp_sandbox=NO
xferlog_enable=NO
ssl_enable=YES
ssl_ciphers=HIGH
allow_anon_ssl=YES
force_anon_logins_ssl=YES
force_anon_data_ssl=YES
require_ssl_reuse=YES
rsa_cert_file={cert}
rsa_private_key_file={key}
"""


async def case_vsftpd(client, workdir):
    """vsftpd with TLS required on both channels and require_ssl_reuse (a data
    connection that does not resume the control connection's session is refused):
    put and get 2 MiB, ls. vsftpd 3.0.3 offers TLS 1.2 only with an RSA certificate."""
    vsftpd = shutil.which("vsftpd") or "/usr/sbin/vsftpd"
    if not os.path.exists(vsftpd):
        print("skip: vsftpd is not installed (Debian: vsftpd)")
        return
    root, local = setup(workdir)
    empty = os.path.join(workdir, "empty")
    os.mkdir(empty)
    cert, key = os.path.join(workdir, "rsa.pem"), os.path.join(workdir, "rsa.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost"], check=True, capture_output=True)
    with socket.socket() as probe:  # a free port: vsftpd cannot be given port 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = os.path.join(workdir, "vsftpd.conf")
    with open(conf, "w") as f:
        f.write(VSFTPD_CONF.format(port=port, root=root, empty=empty, cert=cert, key=key))
    source = os.path.join(local, "up.bin")
    want = random_file(source, 2 * 1024 * 1024)
    server = await asyncio.create_subprocess_exec(vsftpd, conf, stderr=subprocess.PIPE)
    try:
        deadline = asyncio.get_running_loop().time() + DEADLINE
        while True:  # bounded: until vsftpd listens, or its deadline
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            except OSError:
                check(server.returncode is None and asyncio.get_running_loop().time() < deadline,
                      "vsftpd did not start")
                await asyncio.sleep(0.05)
        fetched = os.path.join(local, "down.bin")
        out, err = await ok(client, args(port, "--tls", "--cafile", cert, "--verbose", "put",
                                         source, "big.bin", "get", "big.bin", fetched, "ls"),
                            "vsftpd")
    finally:
        server.kill()
        await server.wait()
    check(digest(os.path.join(root, "big.bin")) == want, "vsftpd: STOR checksum differs")
    check(digest(fetched) == want, "vsftpd: RETR checksum differs")
    check("big.bin" in out, f"vsftpd: ls printed {out!r}")
    check(err.count("session resumed") == 3 and "not resumed" not in err,
          f"vsftpd: the data sessions were not all resumed: {err}")


CASES = {name[len("case_"):]: fn for name, fn in globals().items() if name.startswith("case_")}

if __name__ == "__main__":
    main(CASES)
