#!/usr/bin/env python3
"""examples/smtp_client against real SMTP servers: aiosmtpd (plain, STARTTLS, implicit
TLS, AUTH PLAIN and LOGIN) and small scripted servers for what a real server would not
do (STARTTLS response injection, over-long and malformed replies, going away in the
middle of DATA, the exact bytes on the wire).

The handlers record every command and message, so each case checks both the client's
exit status and message and what the server saw: the message byte for byte after
the client's line-ending normalization and dot-stuffing, and no AUTH or MAIL when TLS
was required but not obtained.

    test_smtp.py PATH_TO_smtp_client [CASE ...]
"""
import asyncio
import base64
import os
import re
import sys
import warnings

from apps import DEADLINE, HOST, SKIP, TestPKI, check, expect_exit, main, run_client

try:
    from aiosmtpd.smtp import SMTP, AuthResult
except ImportError:
    print("SKIP: aiosmtpd is not installed (Debian: python3-aiosmtpd)")
    sys.exit(SKIP)

warnings.filterwarnings("ignore", "Session.login_data is deprecated")

USER, PASSWORD = "alice", "s3cret p@ss"
FROM, TO = "sender@example.test", ["one@example.test", "two@example.test"]

# Leading dots, a line that is only a dot, ".\r\n" inside the body, bare LF, bare CR,
# CR CR LF, and no line end at the end.
MESSAGE = (b"Subject: dots and line ends\r\n\r\n.leading dot\n.\n..two dots\r\n"
           b"bare LF\nbare CR\rCRLF\r\nCR CR LF\r\r\n\n.\r\nlast . line\n.\r."
           b"\nno line end at the end")


def b64(text):
    return base64.b64encode(text.encode()).decode()


def normalized(data):
    """The message as the server must store it: every CR, LF and CRLF as CRLF, ending
    with CRLF."""
    text = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    return text if text == b"" or text.endswith(b"\r\n") else text + b"\r\n"


def on_the_wire(data):
    """The DATA content the client must send: normalized, dots doubled, CRLF.CRLF."""
    lines = normalized(data).split(b"\r\n")[:-1]
    return b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in lines) + b".\r\n"


class Handler:
    """aiosmtpd handler: records commands (through RecordingSMTP), logins and messages."""

    def __init__(self):
        self.commands, self.messages, self.logins = [], [], []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                              envelope.original_content))
        return "250 2.0.0 OK stored"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        self.logins.append((mechanism, auth_data.login, auth_data.password))
        ok = auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends 535


class RecordingSMTP(SMTP):
    """aiosmtpd's server, noting each command's name before running it; refuse_tls
    advertises STARTTLS and answers it with 454."""

    def __init__(self, handler, refuse_tls=False, **kw):
        super().__init__(handler, authenticator=handler.authenticate, **kw)
        self.refuse_tls = refuse_tls

    def _record(name):
        async def smtp_command(self, arg):
            self.event_handler.commands.append(name)
            if name == "STARTTLS" and self.refuse_tls:
                await self.push("454 4.7.0 TLS not available due to temporary reason")
                return
            await getattr(SMTP, "smtp_" + name)(self, arg)
        return smtp_command

    for _name in ("EHLO", "HELO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "QUIT"):
        locals()["smtp_" + _name] = _record(_name)
    del _name, _record


class Server:
    """An aiosmtpd server on a free loopback port: `async with Server(...) as s`."""

    def __init__(self, certs=None, implicit_tls=False, starttls=False, **kw):
        self.handler = Handler()
        self.kw = kw
        self.ctx = None
        if certs is not None:
            self.ctx = certs.server_context()
        self.implicit_tls = implicit_tls
        self.starttls = starttls

    async def __aenter__(self):
        kw = dict(self.kw)
        if self.starttls:
            kw["tls_context"] = self.ctx
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: RecordingSMTP(self.handler, **kw), "127.0.0.1", 0,
            ssl=self.ctx if self.implicit_tls else None)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()


def client_args(port, *extra):
    # The client's own deadline is shorter than run_client's: a stall shows its message.
    args = ["--server", f"{HOST}:{port}", "--from", FROM, "--timeout", str(DEADLINE / 2)]
    for to in TO:
        args += ["--to", to]
    return args + list(extra)


def message_file(workdir, data=MESSAGE):
    path = os.path.join(workdir, "message.eml")
    with open(path, "wb") as f:
        f.write(data)
    return path


def check_delivered(handler, what, data=MESSAGE):
    check(len(handler.messages) == 1, f"{what}: {len(handler.messages)} messages received")
    mail_from, rcpt_tos, content = handler.messages[0]
    check(mail_from == FROM and rcpt_tos == TO, f"{what}: envelope {mail_from} -> {rcpt_tos}")
    check(content == normalized(data),
          f"{what}: the server received {content!r}, expected {normalized(data)!r}")


async def accepted(client, args, what, stdin=None):
    code, out, err = await run_client(client, args, stdin=stdin)
    check(code == 0, f"{what}: exit status {code}: {err.strip()}")
    check(out.startswith("accepted: 250"), f"{what}: no 'accepted' line: {out!r}")
    return out, err


# ---- aiosmtpd -------------------------------------------------------------------------

async def case_plain(client, workdir):
    async with Server() as s:
        await accepted(client, client_args(s.port, message_file(workdir)), "plain")
    check_delivered(s.handler, "plain")
    check(s.handler.commands == ["EHLO", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"],
          f"plain: commands {s.handler.commands}")


async def case_stdin(client, workdir):
    """The message from standard input, including an empty one."""
    for data in (MESSAGE, b"", b".", b"\r\n"):
        async with Server() as s:
            await accepted(client, [*client_args(s.port), "-"], f"stdin {data!r}", stdin=data)
        check_delivered(s.handler, f"stdin {data!r}", data)


async def case_large(client, workdir):
    """2 MiB with every kind of line end and dots at line starts, in one message."""
    unit = b".dot\nLF\rCR\r\nCRLF " + bytes(range(33, 127)) + b"\n"
    data = unit * (2 * 1024 * 1024 // len(unit))
    async with Server(data_size_limit=0) as s:
        await accepted(client, client_args(s.port, message_file(workdir, data)), "large")
    check_delivered(s.handler, "large", data)


async def case_starttls_auth(client, workdir):
    """STARTTLS with TLS required for AUTH and for everything else; EHLO again after."""
    certs = TestPKI(workdir)
    for mech in ("PLAIN", "LOGIN"):
        async with Server(certs, starttls=True, require_starttls=True) as s:
            out, err = await accepted(client, client_args(
                s.port, "--starttls", "--cafile", certs.ca, "--user", USER, "--password",
                PASSWORD, "--auth", mech, "--verbose", message_file(workdir)), mech)
        check_delivered(s.handler, f"STARTTLS AUTH {mech}")
        check(s.handler.commands == ["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL", "RCPT",
                                     "RCPT", "DATA", "QUIT"], f"{mech}: {s.handler.commands}")
        check(s.handler.logins == [(mech, USER.encode(), PASSWORD.encode())],
              f"{mech}: logins {s.handler.logins}")
        secrets = [PASSWORD, b64(f"\0{USER}\0{PASSWORD}"), b64(USER), b64(PASSWORD)]
        check(not [x for x in secrets if x in err], f"{mech}: --verbose shows a credential: {err}")
        check("S: 220" in err and "C: MAIL FROM:<" in err, f"{mech}: no dialogue: {err}")


async def case_password_env(client, workdir):
    certs = TestPKI(workdir)
    async with Server(certs, starttls=True) as s:
        os.environ["SMTP_PASSWORD"] = PASSWORD
        try:
            await accepted(client, client_args(s.port, "--starttls", "--cafile", certs.ca,
                                               "--user", USER, message_file(workdir)), "env")
        finally:
            del os.environ["SMTP_PASSWORD"]
    check(s.handler.logins == [("PLAIN", USER.encode(), PASSWORD.encode())],
          f"env: logins {s.handler.logins}")
    async with Server(certs, starttls=True) as s:
        expect_exit(await run_client(client, client_args(
            s.port, "--starttls", "--cafile", certs.ca, "--user", USER, "--password", "wrong",
            message_file(workdir))), 7, ["AUTH", "535"], "bad password")
    check(not s.handler.messages and "MAIL" not in s.handler.commands,
          f"bad password: {s.handler.commands}")


async def case_implicit_tls(client, workdir):
    certs = TestPKI(workdir)
    # aiosmtpd knows TLS only from its own STARTTLS: here it must be told AUTH is safe.
    async with Server(certs, implicit_tls=True, auth_require_tls=False) as s:
        await accepted(client, client_args(s.port, "--tls", "--cafile", certs.ca, "--user", USER,
                                           "--password", PASSWORD, message_file(workdir)),
                       "implicit TLS")
    check_delivered(s.handler, "implicit TLS")
    check(s.handler.logins == [("PLAIN", USER.encode(), PASSWORD.encode())],
          f"implicit TLS: logins {s.handler.logins}")
    # Without the test CA the server is not trusted: no session at all.
    async with Server(certs, implicit_tls=True) as s:
        expect_exit(await run_client(client, client_args(s.port, "--tls", message_file(workdir))),
                    3, ["connect"], "untrusted")
    check(s.handler.commands == [], f"untrusted: commands {s.handler.commands}")


async def case_starttls_stripped(client, workdir):
    """TLS required, the server does not offer it, or refuses it (454): the client
    stops, and the server never sees AUTH, MAIL or a credential."""
    certs = TestPKI(workdir)
    for name, server in (("not offered", Server()),
                         ("refused", Server(certs, starttls=True, refuse_tls=True))):
        async with server as s:
            expect_exit(await run_client(client, client_args(
                s.port, "--starttls", "--cafile", certs.ca, "--user", USER, "--password",
                PASSWORD, message_file(workdir))), 6, ["STARTTLS"], name)
        commands = s.handler.commands
        check(not {"AUTH", "MAIL", "RCPT", "DATA"} & set(commands), f"{name}: {commands}")
        check(not s.handler.logins and not s.handler.messages, f"{name}: credentials sent")
        print(f"ok: {name}: stopped after {commands}")


# ---- scripted servers -----------------------------------------------------------------

class Scripted:
    """A fake SMTP server: replies from the given table, the DATA content recorded as
    it came over the wire. data="drop" closes the connection in the middle of DATA."""

    def __init__(self, greeting=b"220 fake ESMTP\r\n", ehlo=b"250 fake\r\n", starttls=None,
                 data="accept", hangup=False):
        self.greeting, self.ehlo, self.starttls, self.data = greeting, ehlo, starttls, data
        self.hangup = hangup
        self.connections, self.lines, self.wire = 0, [], b""

    async def handle(self, reader, writer):
        self.connections += 1
        try:
            writer.write(self.greeting)
            while not self.hangup and (line := await reader.readline()):
                self.lines.append(line)
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(self.ehlo)
                elif verb == b"STAR" and self.starttls is not None:
                    writer.write(self.starttls)
                elif verb == b"DATA":
                    writer.write(b"354 go on\r\n")
                    if self.data == "drop":
                        await reader.read(1000)
                        break
                    self.wire = await reader.readuntil(b"\r\n.\r\n")
                    writer.write(b"250 stored\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                else:
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()


async def case_wire(client, workdir):
    """The exact DATA bytes: dots doubled, CRLF only, one CRLF.CRLF at the very end."""
    async with Scripted() as s:
        await accepted(client, client_args(s.port, message_file(workdir)), "wire")
    check(s.wire == on_the_wire(MESSAGE), f"wire: {s.wire!r}, expected {on_the_wire(MESSAGE)!r}")
    check(s.lines[-1] == b"QUIT\r\n", f"wire: after DATA: {s.lines[-1]!r}")


async def case_injection(client, workdir):
    """The STARTTLS reply with a second reply pipelined behind it (NO STARTTLS
    injection, CVE-2011-0411's client side): the client stops."""
    certs = TestPKI(workdir)
    async with Scripted(ehlo=b"250-fake\r\n250 STARTTLS\r\n",
                        starttls=b"220 go ahead\r\n250 injected\r\n") as s:
        expect_exit(await run_client(client, client_args(
            s.port, "--starttls", "--cafile", certs.ca, "--user", USER, "--password", PASSWORD,
            message_file(workdir))), 6, ["STARTTLS", "injection"], "injection")
    after = s.lines[[l[:8].upper() for l in s.lines].index(b"STARTTLS") + 1:]
    check(after == [], f"injection: the client went on with {after!r}")


async def case_reply_limits(client, workdir):
    """Reply lines: 512 octets with CRLF pass, 513 do not; 100 lines pass, 101 do not;
    a code that is not 3 digits, and a code changing inside a reply, are errors."""
    path = message_file(workdir)
    ok_greeting = b"220 " + b"x" * 506 + b"\r\n"
    ok_ehlo = b"250-fake\r\n" * 99 + b"250 SIZE\r\n"
    async with Scripted(greeting=ok_greeting, ehlo=ok_ehlo) as s:
        await accepted(client, client_args(s.port, path), "512-octet line, 100 lines")
    bad = [
        (dict(greeting=b"220 " + b"x" * 507 + b"\r\n"), 4, ["longer than 512"]),
        (dict(ehlo=b"250-fake\r\n" * 100 + b"250 SIZE\r\n"), 5, ["more than 100 lines"]),
        (dict(ehlo=b"250-fake\r\n" * 10000 + b"250 SIZE\r\n"), 5, ["more than 100 lines"]),
        (dict(greeting=b"22x fake\r\n"), 4, ["malformed"]),
        (dict(greeting=b"hello\r\n"), 4, ["malformed"]),
        (dict(greeting=b"220+fake\r\n"), 4, ["malformed"]),
        (dict(ehlo=b"250-fake\r\n251 SIZE\r\n"), 5, ["reply code 251"]),
        (dict(greeting=b"220-fake\r\n", hangup=True), 4, ["closed"]),
        (dict(greeting=b"220 no line end", hangup=True), 4, ["closed"]),
        (dict(greeting=b"554 go away\r\n"), 4, ["554 go away"]),
    ]
    for kw, status, words in bad:
        async with Scripted(**kw) as s:
            expect_exit(await run_client(client, client_args(s.port, path)), status, words,
                        repr(kw)[:60])


async def case_injection_args(client, workdir):
    """CR or LF in an address or credential: refused before connecting."""
    path = message_file(workdir)
    async with Scripted() as s:
        for args in (["--from", "a@b>\r\nRCPT TO:<evil@x"], ["--to", "a@b\nDATA"],
                     ["--user", "alice\r\nMAIL FROM:<x>", "--password", "p"],
                     ["--user", "alice", "--password", "p\rQUIT"],
                     ["--helo", "me\r\nQUIT"]):
            expect_exit(await run_client(client, client_args(s.port, *args, path)), 2,
                        ["CR or LF"], repr(args))
    check(s.connections == 0, f"arguments: {s.connections} connections made")


async def case_server_gone(client, workdir):
    """The server closes the connection in the middle of DATA (8 MiB message)."""
    path = message_file(workdir, b"line of a long message\n" * (8 * 1024 * 1024 // 23))
    async with Scripted(data="drop") as s:
        expect_exit(await run_client(client, client_args(s.port, path)), 10, ["DATA: "],
                    "server gone")
    async with Scripted(greeting=b"") as s:
        # The connection made, nothing said: the greeting times out.
        expect_exit(await run_client(client, client_args(s.port, "--timeout", "0.5", path)), 4,
                    ["greeting", "no answer within"], "silent server")


# ---- the SMTP module's guarantees (protocols/smtp.c), through the example --------------

class Endless(Scripted):
    """A greeting that never ends: one line without LF, or continuation lines, sent
    until the client hangs up (bounded, so a client that never does fails the case)."""

    def __init__(self, chunk):
        super().__init__()
        self.chunk, self.sent = chunk, 0

    async def handle(self, reader, writer):
        self.connections += 1
        try:
            while self.sent < 64 * 1024 * 1024:
                writer.write(self.chunk)
                self.sent += len(self.chunk)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


async def case_endless(client, workdir):
    """Endless line, endless multi-line reply: a clear error as soon as the limit is
    passed, not after the stream ends."""
    path = message_file(workdir)
    for chunk, words in ((b"220 " + b"x" * 4096, ["longer than 512"]),
                         (b"220-more\r\n" * 512, ["more than 100 lines"])):
        async with Endless(chunk) as s:
            expect_exit(await run_client(client, client_args(s.port, path)), 4, words,
                        f"endless {chunk[:8]!r}")
        check(s.sent < 16 * 1024 * 1024, f"endless: the client read {s.sent} bytes")


async def case_auth_cleartext(client, workdir):
    """AUTH offered over a connection without TLS: the credentials stay home."""
    async with Scripted(ehlo=b"250-fake\r\n250 AUTH PLAIN LOGIN\r\n") as s:
        expect_exit(await run_client(client, client_args(
            s.port, "--user", USER, "--password", PASSWORD, message_file(workdir))), 7,
            ["AUTH", "without TLS"], "AUTH in clear")
    sent = b"".join(s.lines)
    check(b"AUTH" not in sent and b"MAIL" not in sent, f"AUTH in clear: the client sent {sent!r}")


async def case_size_and_8bit(client, workdir):
    """SIZE: a message over the server's limit is not offered (no MAIL); a limit it
    fits is announced. 8-bit content without 8BITMIME: the transaction is aborted,
    never terminated."""
    big = message_file(workdir, b"x" * 2000)
    async with Scripted(ehlo=b"250-fake\r\n250 SIZE 1000\r\n") as s:
        expect_exit(await run_client(client, client_args(s.port, big)), 8,
                    ["MAIL FROM", "larger"], "over SIZE")
    check(not [l for l in s.lines if l.startswith(b"MAIL")], f"over SIZE: {s.lines!r}")
    async with Scripted(ehlo=b"250-fake\r\n250-8BITMIME\r\n250 SIZE 100000\r\n") as s:
        await accepted(client, client_args(s.port, big), "within SIZE")
    mail = [l for l in s.lines if l.startswith(b"MAIL")]
    check(mail == [b"MAIL FROM:<" + FROM.encode() + b"> SIZE=2000 BODY=8BITMIME\r\n"],
          f"within SIZE: {mail!r}")
    async with Scripted() as s:
        expect_exit(await run_client(client, client_args(
            s.port, message_file(workdir, b"caf\xc3\xa9\r\n"))), 10, ["DATA", "8BITMIME"],
            "8-bit without 8BITMIME")
    check(s.wire == b"", f"8-bit: the message was terminated: {s.wire!r}")


CASES = {name[len("case_"):]: fn for name, fn in globals().items() if name.startswith("case_")}

if __name__ == "__main__":
    main(CASES)
