# -*- test-case-name: tests.integration.test_tls_server -*-
"""
TLS end to end: a real C{twistd -n tchat} with C{ssl:} listeners on
127.0.0.1, and real TLS clients: C{openssl s_client} and C{socat} on the
telnet door, Python's C{ssl} module for the page over https, Autobahn over
C{wss://}, and Twisted's TLS for a telnet client that stays connected while
the certificate is replaced and SIGHUP reloads it.

The certificate of the first tests is made with the very C{openssl req}
command that C{docs/tls.md} gives.  Without C{openssl} or C{socat} those
tests skip (fail under C{TCHAT_REQUIRE_ALL=1}).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import ssl
import time
import urllib.request
from pathlib import Path

from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.internet.defer import ensureDeferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import FailTest, TestCase

from tests.certificates import (
    certificate_pem,
    fingerprint,
    make_certificate,
    make_key,
    replace_file,
    ssl_string,
    write_files,
)
from tests.integration.server import (
    ANSI,
    LOOPBACK,
    TWISTD,
    WELCOME,
    ChatClient,
    ProcessOutput,
    TchatServer,
    WebClient,
    async_test,
    connect,
    global_reactor,
    make_directory,
    run_process,
    spawn,
    unstamp,
)
from tests.support import require

PLAIN = "tcp:0:interface=127.0.0.1"
"""The plain telnet door of every test server here."""

TLS_TAP_INI = """\
# Written by tests/integration/test_tls_server.py; the listeners come from
# the command line.
[server]
name = tchat
default_room = #lobby
reconnect_grace = 0

[web]
listen =

[history]
enabled = false
"""
"""The configuration of every test server here."""

OPENSSL = shutil.which("openssl")
SOCAT = shutil.which("socat")

SELF_SIGNED = [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "key.pem",
    "-out",
    "cert.pem",
    "-days",
    "365",
    "-subj",
    "/CN=localhost",
    "-addext",
    "subjectAltName=DNS:localhost,IP:127.0.0.1",
]
"""The arguments of the self-signed example in C{docs/tls.md}."""

LISTENING = re.compile(
    rb"(telnet|web|admin) door listening on 127\.0\.0\.1:(\d+) \(([^\n]*)\)\r?\n"
)
"""A door listening, with its endpoint string."""


def require_openssl() -> str:
    """
    The C{openssl} program, or skip (fail in CI) without it.
    """
    require(OPENSSL is not None, "openssl is not installed (apt-get install openssl)")
    assert OPENSSL is not None
    return OPENSSL


async def self_signed(testcase: TestCase, directory: str) -> None:
    """
    Make C{key.pem} and C{cert.pem} in C{directory} with the documented
    C{openssl req} command.
    """
    openssl = require_openssl()
    done = await run_process(
        testcase, openssl, ["openssl", *SELF_SIGNED], path=directory
    )
    if done.exit_code != 0:
        raise FailTest(f"openssl req failed:\n{done.output}")


async def start_tls_server(
    testcase: TestCase,
    directory: str,
    *,
    telnet: tuple[str, ...] = (PLAIN,),
    web: tuple[str, ...] = (),
    timeout: float = 15.0,
) -> tuple[TchatServer, dict[str, int]]:
    """
    Start C{twistd -n tchat} in C{directory} with these listeners (given on
    the command line, so a reload keeps them) and wait until all listen.

    Cleanup stops it with L{TchatServer.stop}, which fails the test if the
    server needed SIGKILL or logged a traceback.

    @return: The server, and the port of each endpoint string.
    """
    config = os.path.join(directory, "tap.ini")
    Path(config).write_text(TLS_TAP_INI, encoding="utf-8")
    args = [TWISTD, "-n", "--pidfile=", "tchat", "--config", config]
    for description in telnet:
        args += ["--telnet", description]
    for description in web:
        args += ["--web", description]
    admin = "tcp:0:interface=127.0.0.1:backlog=5"
    args += ["--admin", admin]
    process = ProcessOutput("twistd tchat")
    global_reactor().spawnProcess(
        process, TWISTD, args, env=dict(os.environ), path=directory
    )
    server = TchatServer(process, 0, directory)
    testcase.addCleanup(lambda: ensureDeferred(server.stop()))
    wanted = {*telnet, *web, admin}
    ports: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    while not wanted <= ports.keys():
        try:
            match = await process.output.wait_for(
                LISTENING, max(deadline - time.monotonic(), 0.01)
            )
        except FailTest:
            raise FailTest(
                f"twistd tchat did not listen on {sorted(wanted - ports.keys())} "
                f"within {timeout} s; its log:\n{server.log()}"
            ) from None
        ports[match.group(3).decode()] = int(match.group(2))
    server.port = ports[telnet[0]]
    server.web_port = ports[web[0]] if web else None
    server.admin_port = ports[admin]
    return server, ports


class ProgramClient(ChatClient):
    """
    A telnet user typing into a TLS client program (C{openssl s_client},
    C{socat}): what it writes goes to the program's stdin, and what the
    server sends arrives on the program's stdout.
    """

    def __init__(self, name: str, process: ProcessOutput) -> None:
        super().__init__(name)
        self.received = process.stdout
        self._process = process

    def send(self, data: bytes) -> None:
        assert self._process.transport is not None
        self._process.transport.write(data)


async def welcomed(client: ChatClient) -> None:
    """
    Read a new telnet user's welcome, as L{connect} does: take the guest
    nick and resume code, turn colours off, and keep the replay (if any).
    """
    match = await client.wait_for(WELCOME, timeout=10)
    client.nick = match.group(2).decode()
    client.code = match.group(3).decode()
    await client.expect_lines("[HH:MM] *** you joined #lobby")
    client.say("/color off")
    # Notices of others coming and going may come first: the certificate
    # probes of these tests are users too, if only for a moment.
    for _ in range(20):
        line = unstamp(ANSI.sub(b"", await client.next_line()))
        if line == b"*** Recent messages in #lobby:":
            client.replay = await client.read_block(b"*** End of recent messages")
        elif line == b"*** colours are off":
            return
        elif not re.fullmatch(
            rb"\[HH:MM\] \*\*\* guest-[0-9a-f]{4} \(telnet\) .*", line
        ):
            raise FailTest(f"{client.name}: expected colours off, got {line!r}")
    raise FailTest(f"{client.name}: colours were not turned off")


def tls_endpoint(port: int, trusted: bytes) -> IStreamClientEndpoint:
    """
    A TLS client endpoint to C{port} on 127.0.0.1 that trusts only the
    PEM certificate C{trusted} and checks the address is in it.
    """
    options = optionsForClientTLS(LOOPBACK, trustRoot=Certificate.loadPEM(trusted))
    return wrapClientTLS(
        options, TCP4ClientEndpoint(global_reactor(), LOOPBACK, port, timeout=5)
    )


async def connect_tls(
    testcase: TestCase, port: int, name: str, trusted: bytes
) -> ChatClient:
    """
    Connect a telnet user over TLS (Twisted's), welcomed and colours off;
    closed again in cleanup.
    """
    client = ChatClient(name)
    await connectProtocol(tls_endpoint(port, trusted), client)
    testcase.addCleanup(lambda: ensureDeferred(client.close()))
    await welcomed(client)
    return client


def _peer_certificate(port: int, cafile: str) -> bytes:
    context = ssl.create_default_context(cafile=cafile)
    with (
        socket.create_connection((LOOPBACK, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=LOOPBACK) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


async def peer_fingerprint(port: int, cafile: str) -> str:
    """
    The SHA-256 fingerprint of the certificate a new connection to C{port}
    is shown, checked against C{cafile} by Python's C{ssl} (in a thread;
    the socket's timeout bounds it).
    """
    der = await deferToThread(_peer_certificate, port, cafile)
    return hashlib.sha256(der).hexdigest()


def _fetch(url: str, cafile: str) -> tuple[int, dict[str, str], bytes]:
    context = ssl.create_default_context(cafile=cafile)
    with urllib.request.urlopen(url, context=context, timeout=5) as response:
        return response.status, dict(response.headers), response.read()


class _WebClientFactory(WebSocketClientFactory):
    """
    Builds exactly the one L{WebClient} it was given.
    """

    def __init__(self, client: WebClient, url: str, origin: str) -> None:
        super().__init__(url, origin=origin)
        self._client = client

    def buildProtocol(self, addr: object) -> WebClient:
        self._client.factory = self
        return self._client


async def log_line(server: TchatServer, pattern: str | re.Pattern[bytes]) -> None:
    """
    Wait for the server to log C{pattern} (after what earlier waits read).
    """
    await server.process.output.wait_for(pattern, 10)


class TelnetsTests(TestCase):
    """
    The telnet door over C{ssl:}: real TLS client programs are welcomed and
    chat with a user on the plain door.
    """

    async def _chat(self, program: list[str], name: str) -> None:
        directory = make_directory(self)
        await self_signed(self, directory)
        secure = ssl_string(directory, 0)
        server, ports = await start_tls_server(self, directory, telnet=(PLAIN, secure))
        loaded = (
            f"tls: loaded certificate for {re.escape(secure)} "
            r"\(subject CN=localhost, expires \d{4}-\d\d-\d\d\)\n"
        )
        self.assertRegex(server.log(), loaded)
        alice = await connect(self, ports[PLAIN], "alice")
        await alice.set_nick("alice")
        process = spawn(
            self,
            name,
            program[0],
            [arg.replace("PORT", str(ports[secure])) for arg in program],
            path=directory,
        )
        tess = ProgramClient(name, process)
        await welcomed(tess)
        guest = tess.nick
        await alice.expect_lines(f"[HH:MM] *** {guest} (telnet) joined #lobby")
        await tess.set_nick("tess")
        await alice.expect_lines(f"[HH:MM] *** {guest} (telnet) is now known as tess")
        alice.say("hello tess")
        await tess.expect_lines("[HH:MM] <alice> hello tess")
        tess.say("hi alice, from behind TLS")
        await alice.expect_lines("[HH:MM] <tess> hi alice, from behind TLS")

    @async_test
    async def test_openssl_s_client(self) -> None:
        """
        C{openssl s_client -quiet}, verifying the self-signed certificate
        for 127.0.0.1, gets the welcome, takes a nick and chats both ways
        with a plain telnet user; the log named the certificate at start.
        """
        openssl = require_openssl()
        await self._chat(
            [
                openssl,
                "s_client",
                "-quiet",
                "-connect",
                "127.0.0.1:PORT",
                "-CAfile",
                "cert.pem",
                "-verify_return_error",
                "-verify_ip",
                "127.0.0.1",
            ],
            "openssl s_client",
        )

    @async_test
    async def test_socat(self) -> None:
        """
        C{socat - OPENSSL:127.0.0.1:PORT,verify=0} gets the welcome, takes a
        nick and chats both ways with a plain telnet user.
        """
        require_openssl()
        require(SOCAT is not None, "socat is not installed (apt-get install socat)")
        assert SOCAT is not None
        await self._chat([SOCAT, "-", "OPENSSL:127.0.0.1:PORT,verify=0"], "socat")


class HttpsTests(TestCase):
    """
    The web door over C{ssl:}: the page over https, the chat over wss.
    """

    @async_test
    async def test_page_and_wss(self) -> None:
        """
        Python's C{urllib}, trusting the self-signed certificate, gets the
        chat page over https with its security headers; an Autobahn client
        over C{wss://}, sending the page's https origin, is welcomed and
        chats both ways with a telnet user.
        """
        directory = make_directory(self)
        await self_signed(self, directory)
        secure = ssl_string(directory, 0)
        server, ports = await start_tls_server(self, directory, web=(secure,))
        port = ports[secure]
        cafile = os.path.join(directory, "cert.pem")

        status, headers, body = await deferToThread(
            _fetch, f"https://127.0.0.1:{port}/", cafile
        )
        self.assertEqual(status, 200)
        self.assertIn(b"<title>tchat</title>", body)
        self.assertIn("default-src 'self'", headers.get("Content-Security-Policy", ""))

        alice = await connect(self, server.port, "alice")
        await alice.set_nick("alice")
        wendy = WebClient("wendy")
        origin = f"https://127.0.0.1:{port}"
        factory = _WebClientFactory(wendy, f"wss://127.0.0.1:{port}/ws", origin)
        trusted = Path(cafile).read_bytes()
        await tls_endpoint(port, trusted).connect(factory)
        self.addCleanup(lambda: ensureDeferred(wendy.close()))
        await wendy.wait_state(
            "the handshake", lambda: wendy.opened or wendy.closed is not None, 10
        )
        self.assertTrue(wendy.opened, f"the wss handshake failed: {wendy.closed}")
        welcome = await wendy.wait_for(type="system", event="welcome")
        wendy.nick = welcome["name"]
        await wendy.wait_for(type="system", event="join", name=wendy.nick)
        await alice.expect_lines(f"[HH:MM] *** {wendy.nick} (web) joined #lobby")
        await wendy.set_nick("wendy")
        await alice.expect_lines(
            f"[HH:MM] *** {welcome['name']} (web) is now known as wendy"
        )
        wendy.send({"type": "message", "message": "hello over wss"})
        await alice.expect_lines("[HH:MM] <wendy> hello over wss")
        alice.say("hello over https")
        frame = await wendy.wait_for(type="usermsg", name="alice")
        self.assertEqual(frame["message"], "hello over https")


class ReloadTests(TestCase):
    """
    SIGHUP makes C{ssl:} listeners read their certificate files again.
    """

    @async_test
    async def test_sighup_reloads_the_certificate(self) -> None:
        """
        With the key and certificate replaced and SIGHUP sent, a new
        connection is shown the new certificate and the log says which;
        a TLS user connected before goes on chatting with one connected
        after.  With a broken certificate file and SIGHUP, new connections
        still get the good certificate, users still chat, and the log says
        the old certificate was kept and which file is broken.
        """
        directory = make_directory(self)
        ca_key = make_key()
        ca = make_certificate(ca_key, "tchat test CA", authority=True)
        cafile = os.path.join(directory, "ca.pem")
        Path(cafile).write_bytes(certificate_pem(ca))
        trusted = certificate_pem(ca)
        first = write_files(directory, "first.test", issuer=(ca, ca_key))
        secure = ssl_string(directory, 0)
        server, ports = await start_tls_server(self, directory, telnet=(secure,))
        port = ports[secure]
        self.assertEqual(await peer_fingerprint(port, cafile), fingerprint(first))
        alice = await connect_tls(self, port, "alice", trusted)
        await alice.set_nick("alice")

        second = write_files(directory, "second.test", issuer=(ca, ca_key))
        server.process.signal_process("HUP")
        expires = second.not_valid_after_utc.date().isoformat()
        await log_line(
            server,
            f"tls: reloaded certificate for {secure} "
            f"(subject CN=second.test, expires {expires})",
        )
        await log_line(server, "reload: nothing changed")
        self.assertEqual(await peer_fingerprint(port, cafile), fingerprint(second))
        bob = await connect_tls(self, port, "bob", trusted)
        await bob.set_nick("bob")
        await alice.wait_for(" (telnet) is now known as bob\r\n")
        alice.say("still here on the first certificate")
        await bob.expect_lines("[HH:MM] <alice> still here on the first certificate")

        cert = os.path.join(directory, "cert.pem")
        replace_file(Path(cert), b"-----BEGIN CERTIFICATE-----\ntruncated")
        server.process.signal_process("HUP")
        reason = f"the certificate file {cert} holds no PEM certificate"
        await log_line(server, f"tls: kept the old certificate for {secure}: {reason}")
        await log_line(
            server,
            re.compile(
                rb"reload refused, the configuration in force is unchanged: "
                rb"\[telnet\] listen: [^\n]*"
                + re.escape(reason.encode())
                + rb"; kept the old certificate for "
                + re.escape(secure.encode())
            ),
        )
        self.assertEqual(await peer_fingerprint(port, cafile), fingerprint(second))
        bob.say("and on the second")
        # After the notices of the probe's coming and going.
        await alice.wait_for(b"> and on the second\r\n")
