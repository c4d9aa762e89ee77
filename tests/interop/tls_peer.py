"""Python ssl peers for tide's TLS tests (tests/transports/test_tls_*.c start them
through tests/support/tls.c). Each mode prints one line per milestone on stdout,
which the C test waits for:

  echo-server --cert C --key K [--cafile CA]
      listens on 127.0.0.1:0 ("PORT n"), serves one client: echoes everything until
      the client's close_notify, then "RECEIVED n fnv" and a clean unwrap. With
      --cafile the client must present a certificate signed by CA ("PEER cn").
  send-close --cert C --key K --data TEXT --how clean|dirty
      "PORT n"; serves one client: sends TEXT, then either unwraps (close_notify,
      "CLOSED clean") or closes the TCP socket without close_notify ("CLOSED dirty").
  client --port P --cafile CA --size N [--host NAME] [--cert C --key K]   (asyncio)
      connects, sends N pattern bytes while reading the echo back, checks it, prints
      "VERSION v", "ECHO OK n fnv", and closes with close_notify ("DONE").
  starttls-server [--cert C --key K]   (asyncio streams)
      "PORT n"; reads "STARTTLS\\r\\n", replies "220 go\\r\\n", upgrades with
      StreamWriter.start_tls, then echoes one line as "echo: <line>" and closes.
  starttls-client --port P --cafile CA   (asyncio streams)
      sends "STARTTLS\\r\\n", reads the reply, upgrades, sends "hello tls\\n", expects
      "echo: hello tls\\n" ("STARTTLS OK").

Every wait is bounded (15 s, scaled by TIDE_TEST_TIMEOUT_MULTIPLIER); failures print
"FAIL ..." and exit 1."""
import argparse
import asyncio
import os
import socket
import ssl
import sys

SCALE = float(os.environ.get("TIDE_TEST_TIMEOUT_MULTIPLIER", "1") or 1)
DEADLINE = 15 * SCALE
FNV_SEED = 0xCBF29CE484222325


def fnv1a(data, h=FNV_SEED):
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def pattern(n):
    return bytes(((i * 131) ^ (i >> 11)) & 0xFF for i in range(n))


def say(*words):
    print(*words, flush=True)


def fail(what):
    say("FAIL", what)
    sys.exit(1)


def listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(4)
    s.settimeout(DEADLINE)
    say("PORT", s.getsockname()[1])
    return s


def server_context(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    if getattr(args, "cafile", None):
        ctx.load_verify_locations(args.cafile)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def accept_tls(args):
    lsock = listener()
    ctx = server_context(args)
    conn, _ = lsock.accept()
    lsock.close()
    conn.settimeout(DEADLINE)
    tls = ctx.wrap_socket(conn, server_side=True)
    say("HANDSHAKE", tls.version(), tls.cipher()[0])
    peer = tls.getpeercert()
    if peer:
        cn = [v for rdn in peer["subject"] for (k, v) in rdn if k == "commonName"]
        say("PEER", cn[0] if cn else "?")
    return tls


def echo_server(args):
    tls = accept_tls(args)
    n, h = 0, FNV_SEED
    while True:
        try:
            data = tls.recv(65536)
        except ssl.SSLEOFError:
            fail("EOF without close_notify")
        if not data:
            break  # close_notify
        n += len(data)
        h = fnv1a(data, h)
        tls.sendall(data)
    say("RECEIVED", n, "%016x" % h)
    try:
        tls.unwrap().close()
    except (OSError, ssl.SSLError):
        tls.close()  # the peer may already be gone after its close_notify
    say("DONE")


def send_close(args):
    tls = accept_tls(args)
    tls.sendall(args.data.encode())
    if args.how == "clean":
        try:
            tls.unwrap().close()
        except (OSError, ssl.SSLError) as e:
            fail("unwrap: %r" % e)
        say("CLOSED clean")
    else:
        # Close the TCP connection under TLS: no close_notify is sent.
        raw = socket.socket(fileno=os.dup(tls.fileno()))
        tls.close()
        raw.shutdown(socket.SHUT_RDWR)
        raw.close()
        say("CLOSED dirty")


async def client(args):
    ctx = ssl.create_default_context(cafile=args.cafile)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    payload = pattern(args.size)

    async def run():
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", args.port, ssl=ctx, server_hostname=args.host)
        say("VERSION", writer.get_extra_info("ssl_object").version())

        async def send():
            for i in range(0, len(payload), 65536):
                writer.write(payload[i:i + 65536])
                await writer.drain()

        # One task writes while this one reads: an echo peer stops reading once its
        # own writes back to us would block. (One thread: an SSL object must not be
        # used from two threads at once.)
        sender = asyncio.create_task(send())
        got = await reader.readexactly(len(payload))
        await sender
        if got != payload:
            raise RuntimeError("echo differs")
        say("ECHO OK", len(got), "%016x" % fnv1a(payload))
        writer.close()  # close_notify
        await writer.wait_closed()

    try:
        await asyncio.wait_for(run(), DEADLINE)
    except Exception as e:
        fail("client: %r" % e)
    say("DONE")


async def starttls_server(args):
    ctx = server_context(args)
    done = asyncio.get_running_loop().create_future()

    async def handle(reader, writer):
        try:
            line = await reader.readline()
            if line != b"STARTTLS\r\n":
                raise RuntimeError("expected STARTTLS, got %r" % line)
            writer.write(b"220 go\r\n")
            await writer.drain()
            await writer.start_tls(ctx)
            say("UPGRADED")
            line = await reader.readline()
            writer.write(b"echo: " + line)
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            done.set_result(line)
        except Exception as e:  # reported by the C test through the output
            done.set_exception(e)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    say("PORT", server.sockets[0].getsockname()[1])
    try:
        line = await asyncio.wait_for(done, DEADLINE)
    except Exception as e:
        fail("starttls-server: %r" % e)
    server.close()
    say("LINE", line.decode().rstrip())


async def starttls_client(args):
    ctx = ssl.create_default_context(cafile=args.cafile)

    async def run():
        reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
        writer.write(b"STARTTLS\r\n")
        await writer.drain()
        reply = await reader.readline()
        if not reply.startswith(b"220"):
            raise RuntimeError("reply %r" % reply)
        await writer.start_tls(ctx, server_hostname="localhost")
        writer.write(b"hello tls\n")
        await writer.drain()
        line = await reader.readline()
        if line != b"echo: hello tls\n":
            raise RuntimeError("echo %r" % line)
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass

    try:
        await asyncio.wait_for(run(), DEADLINE)
    except Exception as e:
        fail("starttls-client: %r" % e)
    say("STARTTLS OK")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--cafile")
    p.add_argument("--port", type=int)
    p.add_argument("--host", default="localhost")
    p.add_argument("--size", type=int, default=0)
    p.add_argument("--data", default="")
    p.add_argument("--how", default="clean")
    args = p.parse_args()
    try:
        if args.mode == "echo-server":
            echo_server(args)
        elif args.mode == "send-close":
            send_close(args)
        elif args.mode == "client":
            asyncio.run(client(args))
        elif args.mode == "starttls-server":
            asyncio.run(starttls_server(args))
        elif args.mode == "starttls-client":
            asyncio.run(starttls_client(args))
        else:
            fail("unknown mode " + args.mode)
    except (OSError, ssl.SSLError) as e:
        fail("%s: %r" % (args.mode, e))


if __name__ == "__main__":
    main()
