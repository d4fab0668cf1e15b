# -*- test-case-name: tests.integration.test_attacks_server -*-
"""
Integration tests: the holes of issue 19 (items 1, 2, 6 and 14), each
attack run against a real C{twistd -n tchat} over loopback.

  - L{TelnetNegotiationFloodTests}: a telnet client that sends C{IAC DO} in
    bulk and reads nothing;
  - L{WebSocketReaderTests}: a WebSocket client that sends pings (and a
    blank text frame now and then) and reads nothing;
  - L{DNSRebindingTests}: a page that reaches the server under a name of
    its own (C{Host: evil.example:PORT});
  - L{TLSTests}: stalled TLS handshakes on the telnets door, and TLS 1.2
    suites without forward secrecy or with CBC and SHA-1.

Where memory is the point, the server's resident size is read from
C{/proc/PID/status} while the attack runs, and its growth must stay within
a bound tied to C{[limits] output_queue} (small here, so the tests are
quick).  The attackers are plain blocking sockets in threads; every loop
is bounded in bytes and in time, and the test's reactor keeps serving the
honest clients, who chat on.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.internet.task import LoopingCall, deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.trial.unittest import FailTest, TestCase

from tests.integration.server import (
    LOOPBACK,
    TAP_INI,
    TWISTD,
    WELCOME,
    ChatClient,
    ProcessOutput,
    TchatServer,
    WebClient,
    async_test,
    connect,
    connect_web,
    global_reactor,
    log_line,
    make_directory,
    start_server,
)

_log = Logger()

IAC, DO = b"\xff", b"\xfd"

OUTPUT_QUEUE = 16384
"""C{[limits] output_queue} of the memory tests: the smallest useful."""

ATTACK_SECONDS = 10.0
"""How long an attacker goes on at most."""


def _limits(*lines: str) -> str:
    """
    The integration suite's configuration with more C{[limits]} keys.
    """
    return TAP_INI.replace(
        "[limits]\n", "[limits]\n" + "".join(f"{line}\n" for line in lines)
    )


# -- memory ------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """
    The resident size of process C{pid}, in KiB (C{VmRSS}).
    """
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise FailTest(f"no VmRSS in /proc/{pid}/status")


class Resident:
    """
    The server's resident size: at the start, and the highest seen while
    sampled (every 50 ms).
    """

    def __init__(self, server: TchatServer) -> None:
        transport = server.process.transport
        assert transport is not None and transport.pid is not None
        self._pid: int = transport.pid
        self.before = rss_kib(self._pid)
        self.peak = self.before
        self._sampler = LoopingCall(self.sample)

    def sample(self) -> None:
        with contextlib.suppress(OSError):
            self.peak = max(self.peak, rss_kib(self._pid))

    def start(self) -> None:
        self._sampler.start(0.05)

    def stop(self) -> None:
        if self._sampler.running:
            self._sampler.stop()
        self.sample()

    @property
    def growth(self) -> int:
        """KiB the peak is above the start."""
        return self.peak - self.before

    def describe(self) -> str:
        return (
            f"server RSS {self.before / 1024:.1f} MiB before, "
            f"{self.peak / 1024:.1f} MiB at most (+{self.growth / 1024:.1f} MiB)"
        )


async def ended(
    testcase: TestCase, attack: Attack, running: Deferred[Any], memory: Resident
) -> None:
    """
    Stop an attack and the memory sampling, and write the figures to the
    trial log (C{test.log}), whether the test passed or not.
    """
    attack.stop.set()
    await running
    memory.stop()
    _log.info(
        "{test}: {memory}; {attack}",
        test=testcase.id(),
        memory=memory.describe(),
        attack=attack.describe(),
    )


def memory_bound_kib(output_queue: int) -> int:
    """
    What one offender may add to the server's resident size: its output
    queue, Twisted's write buffer (64 KiB), a read buffer, some slack for
    the allocator and the log, as a multiple of the queue with a floor.
    """
    return 4 * 1024 + 16 * output_queue // 1024


async def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """
    Poll C{check} (state the server exposes, such as C{/proc}) every 50 ms
    until it holds, for at most C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise FailTest(f"{what} did not happen within {timeout} s")
        await deferLater(global_reactor(), 0.05, lambda: None)


# -- attackers (blocking sockets, run in threads) ---------------------------


@dataclass
class Attack:
    """
    What one attacker did and saw.

    @ivar sent: Bytes it sent.
    @ivar cut: Why the server's end went away while it sent, if it did.
    @ivar received: What it read after it stopped (WebSocket attackers).
    """

    sent: int = 0
    cut: str | None = None
    received: bytes = b""
    stop: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    def describe(self) -> str:
        how = (
            f"its connection was cut while it sent ({self.cut})"
            if self.cut
            else "all its sends went through"
        )
        seconds = self.seconds or time.monotonic() - self.started
        return (
            f"the offender sent {self.sent / 2**20:.1f} MiB in "
            f"{seconds:.1f} s and {how}"
        )


def _attacker_socket(port: int) -> socket.socket:
    """
    A connection to C{port} on loopback whose receive buffer is small, as
    a client that reads nothing would leave it, and whose segments are
    those of an Ethernet link (1460 bytes) rather than loopback's 64 KiB,
    which would have the kernel buffer megabytes for it.
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1460)
    s.settimeout(1.0)
    s.connect((LOOPBACK, port))
    return s


def _send(s: socket.socket, attack: Attack, data: bytes, deadline: float) -> bool:
    """
    Send all of C{data} (reading nothing), counting it in C{attack}, unless
    the server cuts the connection, C{attack.stop} is set or the deadline
    passes first.

    @return: Whether it was all sent.
    """
    view = memoryview(data)
    while view:
        if attack.stop.is_set() or time.monotonic() > deadline:
            return False
        try:
            sent = s.send(view)
        except TimeoutError:
            # The server reads slowly (it parses): try again.
            continue
        except OSError as e:
            attack.cut = e.strerror or type(e).__name__
            return False
        attack.sent += sent
        view = view[sent:]
    return True


def _flood(
    s: socket.socket, attack: Attack, chunk: Callable[[], bytes], most: int
) -> None:
    """
    Send C{chunk()} again and again, reading nothing, until the server
    cuts the connection, C{attack.stop} is set, C{most} bytes are sent or
    L{ATTACK_SECONDS} pass.
    """
    deadline = attack.started + ATTACK_SECONDS
    while attack.sent < most and _send(s, attack, chunk(), deadline):
        pass
    attack.seconds = time.monotonic() - attack.started


_NEGOTIATION = b"".join(IAC + DO + bytes([n % 40]) for n in range(21845))
"""64 KiB of C{IAC DO x}: each asks the server to turn on an option, and is
refused with C{IAC WONT x}."""


def negotiation_flood(port: int, attack: Attack, most: int) -> Attack:
    """
    The attack of item 1: connect to the telnet door and send C{IAC DO} in
    bulk, never reading the refusals.
    """
    with _attacker_socket(port) as s:
        _flood(s, attack, lambda: _NEGOTIATION, most)
    return attack


def _masked(opcode: int, payload: bytes) -> bytes:
    """
    A client's WebSocket frame (final, masked with a zero key, so the
    payload reads as is), of at most 125 bytes.
    """
    assert len(payload) <= 125
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


_PING = _masked(0x9, b"p" * 125)
_BLANK = _masked(0x1, b"")


def _ws_open(port: int) -> socket.socket:
    """
    Open a WebSocket to C{/ws} by hand and read the handshake's answer,
    and nothing after it.
    """
    s = _attacker_socket(port)
    s.sendall(
        b"GET /ws HTTP/1.1\r\n"
        + f"Host: {LOOPBACK}:{port}\r\n".encode()
        + b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    answer = b""
    deadline = time.monotonic() + 5
    while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
        # One byte at a time: nothing after the handshake is read.
        answer += s.recv(1)
    if not answer.startswith(b"HTTP/1.1 101 "):
        raise RuntimeError(f"the WebSocket handshake failed: {answer!r}")
    return s


def _read_rest(s: socket.socket, seconds: float, upgrade: bool = False) -> bytes:
    """
    Read what the server sent until it closes, or C{seconds} pass.

    @param upgrade: Stop at the end of a 101 answer's headers too (the
        connection then stays open).
    """
    data = bytearray()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(data) < 64 * 2**20:
        if upgrade and data.startswith(b"HTTP/1.1 101 ") and b"\r\n\r\n" in data:
            break
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def ping_flood(port: int, attack: Attack, most: int) -> Attack:
    """
    The attack of item 2: pings in bulk and a blank text frame every two
    seconds, reading nothing; once told to stop, read what came.
    """
    blank_at = [0.0]

    def chunk() -> bytes:
        now = time.monotonic()
        if now - blank_at[0] < 2:
            return _PING * 500
        blank_at[0] = now
        return _BLANK + _PING * 500

    with _ws_open(port) as s:
        _flood(s, attack, chunk, most)
        attack.stop.wait(ATTACK_SECONDS)
        attack.received = _read_rest(s, 3.0)
    return attack


def ping_trickle(port: int, attack: Attack, burst: int) -> Attack:
    """
    Item 2 again, below the output queue's bound: a burst of pings that
    the socket cannot take (so the server has to wait for the client),
    then a blank text frame and a few pings every 200 ms, reading nothing;
    once told to stop, read what came.
    """
    with _ws_open(port) as s:
        deadline = attack.started + ATTACK_SECONDS
        sending = _send(s, attack, _PING * burst, deadline)
        while sending and not attack.stop.wait(0.2):
            sending = _send(s, attack, _BLANK + _PING * 10, deadline)
        attack.seconds = time.monotonic() - attack.started
        attack.stop.wait(ATTACK_SECONDS)
        attack.received = _read_rest(s, 3.0)
    return attack


def close_frame(data: bytes) -> tuple[int, str] | None:
    """
    The code and reason of the close frame among the server's frames in
    C{data}, if one arrived whole.
    """
    offset = 0
    while offset + 2 <= len(data):
        opcode, length = data[offset] & 0x0F, data[offset + 1] & 0x7F
        start = offset + 2
        if length == 126:
            (length,) = struct.unpack("!H", data[start : start + 2])
            start += 2
        elif length == 127:
            (length,) = struct.unpack("!Q", data[start : start + 8])
            start += 8
        payload = data[start : start + length]
        if len(payload) < length:
            return None
        if opcode == 0x8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            return code, payload[2:].decode("utf-8", "replace")
        offset = start + length
    return None


# -- item 1 -------------------------------------------------------------------


class TelnetNegotiationFloodTests(TestCase):
    """
    Item 1: the telnet door's negotiation refusals go through the output
    queue, so a client that floods C{IAC DO} and reads nothing costs the
    server at most C{output_queue}; and a client refused more than 200
    times is sent off for flooding (C{tests.test_telnet} shows the queue's
    bound on its own, with that lifted).
    """

    @async_test
    async def test_flood_bounded_and_cut(self) -> None:
        """
        A client sends C{IAC DO} in bulk (up to 12 MiB) and never reads:
        the server's resident size grows by less than the bound tied to
        C{output_queue} (16 KiB), the client is sent off for flooding and
        the room is told why, while two honest users chat on.
        """
        server = await start_server(
            self, _limits(f"output_queue = {OUTPUT_QUEUE}", "stuck_timeout = 1")
        )
        alice = await connect(self, server.port, "alice")
        await alice.set_nick("alice")
        bob = await connect(self, server.port, "bob")
        await bob.set_nick("bob")
        await alice.sync()
        await bob.sync()
        memory = Resident(server)
        memory.start()
        attack = Attack()
        running = deferToThread(negotiation_flood, server.port, attack, 12 * 2**20)
        try:
            joined = await bob.wait_for(
                re.compile(rb"\*\*\* (guest-[0-9a-f]{4}) \(telnet\) joined #lobby")
            )
            offender = joined.group(1).decode()
            try:
                await bob.wait_for(
                    f"*** {offender} (telnet) quit (flooding)",
                    timeout=ATTACK_SECONDS + 2,
                )
            except FailTest:
                raise FailTest(
                    f"{attack.describe()}; {memory.describe()}; the room was "
                    "not told it was flooding"
                ) from None
        finally:
            await ended(self, attack, running, memory)
        await log_line(
            server,
            f"closing {offender} (telnet): flooding: over 200 telnet option "
            "requests refused",
        )
        bound = memory_bound_kib(OUTPUT_QUEUE)
        self.assertLessEqual(
            memory.growth,
            bound,
            f"{memory.describe()}, over {bound / 1024:.1f} MiB; {attack.describe()}",
        )
        bob.say("and after it")
        await alice.wait_for("<bob> and after it")


# -- item 2 -------------------------------------------------------------------


class WebSocketReaderTests(TestCase):
    """
    Item 2: Autobahn's own frames (pongs) go through the output queue, and
    a client that takes nothing for C{stuck_timeout} is closed however
    much it sends.
    """

    async def _web_chat(
        self, tap_ini: str
    ) -> tuple[TchatServer, ChatClient, WebClient]:
        server = await start_server(self, tap_ini, web="tcp:0:interface=127.0.0.1")
        bob = await connect(self, server.port, "bob")
        await bob.set_nick("bob")
        assert server.web_port is not None
        wendy = await connect_web(self, server.web_port, "wendy")
        await wendy.set_nick("wendy")
        await bob.sync()
        return server, bob, wendy

    @async_test
    async def test_ping_flood_bounded_and_closed(self) -> None:
        """
        A WebSocket client sends pings in bulk (up to 48 MiB) with a blank
        text frame every two seconds, and never reads: the server's
        resident size grows by less than the bound tied to C{output_queue}
        (16 KiB), and the client is closed with 1008 and the reason
        C{too slow: ...}; the room is told it could not keep up, and an
        honest web user chats on with a telnet one.
        """
        server, bob, wendy = await self._web_chat(
            _limits(f"output_queue = {OUTPUT_QUEUE}", "stuck_timeout = 1")
        )
        assert server.web_port is not None
        memory = Resident(server)
        memory.start()
        attack = Attack()
        running = deferToThread(ping_flood, server.web_port, attack, 48 * 2**20)
        try:
            joined = await bob.wait_for(
                re.compile(rb"\*\*\* (guest-[0-9a-f]{4}) \(web\) joined #lobby")
            )
            offender = joined.group(1).decode()
            wendy.send({"type": "message", "message": "while pings fly"})
            await bob.wait_for("<wendy> while pings fly")
            try:
                await bob.wait_for(
                    f"*** {offender} (web) quit (could not keep up)",
                    timeout=ATTACK_SECONDS + 2,
                )
            except FailTest:
                raise FailTest(
                    f"{attack.describe()}; {memory.describe()}; the room was "
                    "not told it could not keep up"
                ) from None
        finally:
            await ended(self, attack, running, memory)
        bound = memory_bound_kib(OUTPUT_QUEUE)
        self.assertLessEqual(
            memory.growth,
            bound,
            f"{memory.describe()}, over {bound / 1024:.1f} MiB; {attack.describe()}",
        )
        self.assertEqual(
            close_frame(attack.received),
            (1008, "too slow: over 16 KiB of messages waiting; reconnect to catch up"),
            f"after {len(attack.received)} bytes read",
        )
        bob.say("and after them")
        frame = await wendy.wait_for(type="usermsg", name="bob")
        self.assertEqual(frame["message"], "and after them")

    @async_test
    async def test_sending_is_no_proof_of_life(self) -> None:
        """
        A WebSocket client that makes the server write more than its socket
        takes, and then goes on sending a blank text frame and a few pings
        every 200 ms while reading nothing, is closed with 1008 and the
        reason C{not reading: ...} once it has taken nothing for
        C{stuck_timeout} (2 s), although its queue is far from its bound;
        the room is told it could not keep up.
        """
        server, bob, wendy = await self._web_chat(
            _limits("output_queue = 8388608", "stuck_timeout = 2")
        )
        assert server.web_port is not None
        attack = Attack()
        # 1 MiB of pongs: far more than the socket buffers take for this
        # client (some 100 KiB), far less than the queue's 8 MiB.
        running = deferToThread(ping_trickle, server.web_port, attack, 8000)
        try:
            joined = await bob.wait_for(
                re.compile(rb"\*\*\* (guest-[0-9a-f]{4}) \(web\) joined #lobby")
            )
            offender = joined.group(1).decode()
            try:
                await bob.wait_for(
                    f"*** {offender} (web) quit (could not keep up)",
                    timeout=ATTACK_SECONDS,
                )
            except FailTest:
                raise FailTest(
                    f"{attack.describe()}; it was still connected after "
                    f"{ATTACK_SECONDS} s of reading nothing"
                ) from None
        finally:
            attack.stop.set()
            await running
        self.assertEqual(
            close_frame(attack.received),
            (1008, "not reading: nothing taken for 2s; reconnect to catch up"),
            f"after {len(attack.received)} bytes read",
        )
        wendy.send({"type": "message", "message": "still here"})
        await bob.wait_for("<wendy> still here")


# -- item 6 -------------------------------------------------------------------


def _http(port: int, request: bytes) -> bytes:
    """
    Send one request to C{port} on loopback and read the answer until the
    server closes (at most 5 s).
    """
    with socket.create_connection((LOOPBACK, port), timeout=5) as s:
        s.sendall(request)
        return _read_rest(s, 5.0, upgrade=True)


def _get(port: int, path: str, host: str, extra: str = "") -> bytes:
    return _http(
        port,
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
        f"{extra}\r\n".encode(),
    )


_UPGRADE = (
    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


class DNSRebindingTests(TestCase):
    """
    Item 6: the web door answers only to its own names.
    """

    @async_test
    async def test_foreign_host_refused(self) -> None:
        """
        A page whose name was rebound to 127.0.0.1 (C{Host} and C{Origin}
        both C{evil.example:PORT}) gets 421 Misdirected Request with a
        reason, for the page, its files and the WebSocket upgrade; the
        same requests under C{127.0.0.1:PORT} and C{localhost:PORT} are
        served, and the refusal is logged.
        """
        server = await start_server(self, web="tcp:0:interface=127.0.0.1")
        port = server.web_port
        assert port is not None
        evil = f"evil.example:{port}"
        origin = f"Origin: http://{evil}\r\n"
        for path, extra in [
            ("/", ""),
            ("/static/chat.js", ""),
            ("/ws", origin + _UPGRADE),
        ]:
            answer = await deferToThread(_get, port, path, evil, extra)
            head, _, body = answer.partition(b"\r\n\r\n")
            self.assertTrue(
                head.startswith(b"HTTP/1.1 421 Misdirected Request\r\n"),
                f"{path} under {evil}: {answer[:300]!r}",
            )
            self.assertIn(b"does not answer to the name evil.example", body)
            self.assertIn(b"DNS rebinding", body)
            self.assertIn(b"[web] allowed_hosts", body)
        await log_line(server, "refused a request for host 'evil.example:")
        for host in (f"{LOOPBACK}:{port}", f"localhost:{port}"):
            page = await deferToThread(_get, port, "/", host)
            self.assertTrue(
                page.startswith(b"HTTP/1.1 200 "), f"{host}: {page[:200]!r}"
            )
            upgrade = await deferToThread(
                _get, port, "/ws", host, f"Origin: http://{host}\r\n" + _UPGRADE
            )
            self.assertTrue(
                upgrade.startswith(b"HTTP/1.1 101 "), f"{host}: {upgrade[:200]!r}"
            )
        wendy = await connect_web(
            self, port, "wendy", origin=f"http://{LOOPBACK}:{port}"
        )
        await wendy.set_nick("wendy")


# -- item 14 ------------------------------------------------------------------


def write_rsa_files(directory: str) -> bytes:
    """
    A self-signed RSA certificate for C{localhost} and 127.0.0.1 (RSA, so
    that the old static-RSA suites could be offered), written as
    C{key.pem} and C{cert.pem} in C{directory}.

    @return: The certificate, PEM.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address(LOOPBACK)),
                ]
            ),
            False,
        )
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    Path(directory, "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    Path(directory, "cert.pem").write_bytes(pem)
    return pem


TELNET_LISTENING = re.compile(
    rb"telnet door listening on 127\.0\.0\.1:(\d+) \((tcp|ssl):"
)
"""A telnet door listening, with its port and kind."""


async def start_telnets(
    testcase: TestCase, *limits: str
) -> tuple[TchatServer, int, bytes]:
    """
    A server with a plain telnet door and a telnets one (C{ssl:}, RSA
    certificate), both on loopback.

    @return: The server (its C{port} is the plain door), the telnets port,
        and the certificate.
    """
    directory = make_directory(testcase)
    certificate = write_rsa_files(directory)
    secure = (
        f"ssl:0:interface={LOOPBACK}:privateKey={directory}/key.pem"
        f":certKey={directory}/cert.pem"
    )
    config = os.path.join(directory, "tap.ini")
    Path(config).write_text(_limits(*limits), encoding="utf-8")
    process = ProcessOutput("twistd tchat")
    args = [TWISTD, "-n", "--pidfile=", "tchat", "--config", config]
    args += ["--telnet", "tcp:0:interface=127.0.0.1", "--telnet", secure]
    args += ["--admin", "none"]
    global_reactor().spawnProcess(
        process, TWISTD, args, env=dict(os.environ), path=directory
    )
    server = TchatServer(process, 0, directory)
    testcase.addCleanup(lambda: ensureDeferred(server.stop()))
    ports: dict[bytes, int] = {}
    while len(ports) < 2:
        match = await log_line(server, TELNET_LISTENING, 15)
        ports[match.group(2)] = int(match.group(1))
    server.port = ports[b"tcp"]
    return server, ports[b"ssl"], certificate


async def connect_telnets(
    testcase: TestCase, port: int, name: str, trusted: bytes
) -> ChatClient:
    """
    A telnet user over TLS (Twisted's, trusting C{trusted}), welcomed, with
    colours off; closed again in cleanup.
    """
    from twisted.internet.ssl import Certificate, optionsForClientTLS

    options = optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(trusted))
    endpoint = wrapClientTLS(
        options, TCP4ClientEndpoint(global_reactor(), LOOPBACK, port, timeout=5)
    )
    client = ChatClient(name)
    await connectProtocol(endpoint, client)
    testcase.addCleanup(lambda: ensureDeferred(client.close()))
    await client.wait_for(WELCOME, timeout=10)
    await client.wait_for("*** you joined #lobby\r\n")
    client.say("/color off")
    await client.wait_for("*** colours are off\r\n")
    return client


def _open_sockets(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _stall(port: int, count: int, seconds: float) -> list[str]:
    """
    Open C{count} TCP connections to a TLS port and start no handshake;
    wait (at most C{seconds}) for the server to close each.

    @return: How each ended, from our side: C{closed}, the error, C{open}
        (still open after C{seconds}), or C{data} (the server wrote).
    """
    sockets = []
    try:
        for _ in range(count):
            sockets.append(socket.create_connection((LOOPBACK, port), timeout=5))
        ended = []
        deadline = time.monotonic() + seconds
        for s in sockets:
            s.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                ended.append("closed" if s.recv(1) == b"" else "data")
            except TimeoutError:
                ended.append("open")
            except OSError as e:
                ended.append(e.strerror or type(e).__name__)
        return ended
    finally:
        for s in sockets:
            s.close()


def _handshake(port: int, version: ssl.TLSVersion, ciphers: str | None) -> str:
    """
    A TLS handshake with C{port} offering only C{version} and C{ciphers}
    (an OpenSSL list; OpenSSL's own for TLS 1.3).

    @return: The suite agreed on, or C{refused: ...}.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = version
    if ciphers is not None:
        context.set_ciphers(f"{ciphers}:@SECLEVEL=0")
    try:
        with (
            socket.create_connection((LOOPBACK, port), timeout=5) as raw,
            context.wrap_socket(raw) as tls,
        ):
            suite = tls.cipher()
            return suite[0] if suite else "none"
    except (ssl.SSLError, OSError) as e:
        return f"refused: {e}"


class TLSTests(TestCase):
    """
    Item 14: a telnets user exists only after the TLS handshake, and TLS
    1.2 is served with forward-secret AEAD suites only.
    """

    @async_test
    async def test_stalled_handshakes_are_no_users(self) -> None:
        """
        100 connections to the telnets door that never start their TLS
        handshake are accepted but never become users: a plain user and a
        TLS user see no one join, C{/who} lists the two of them only, and
        each stalled connection is closed after C{silent_timeout} (2 s)
        (a reset) without anyone seeing it leave.  A TLS user connected afterwards
        chats as usual.
        """
        server, port, certificate = await start_telnets(self, "silent_timeout = 2")
        alice = await connect(self, server.port, "alice")
        await alice.set_nick("alice")
        tess = await connect_telnets(self, port, "tess", certificate)
        await tess.set_nick("tess")
        await alice.sync()
        transport = server.process.transport
        assert transport is not None and transport.pid is not None
        pid = transport.pid
        before = _open_sockets(pid)
        stalled = deferToThread(_stall, port, 100, 10.0)
        await wait_until(
            lambda: _open_sockets(pid) >= before + 100,
            10,
            "the server accepting the 100 stalled connections",
        )
        for client in (alice, tess):
            between = await client.sync()
            self.assertNotIn(
                b"joined",
                between,
                f"{client.name} was told of {between.count(b' joined ')} "
                f"arrivals, the first: {between[:100]!r}",
            )
            who = bytes(client.received.data[client.received.cursor - 200 :])
            self.assertIn(
                b"*** #lobby (2): alice (telnet), tess (telnet)\r\n",
                who,
                f"{client.name}'s /who",
            )
        ended = await stalled
        # Cut (a reset, as Twisted aborts a TLS connection mid-handshake),
        # not left open, and never a byte written.
        self.assertEqual(
            set(ended) - {"closed", "Connection reset by peer"}, set(), ended
        )
        between = await alice.sync()
        self.assertNotIn(b"guest-", between)
        self.assertIn(
            "closing a TLS connection whose handshake did not finish in 2s",
            server.log(),
        )
        late = await connect_telnets(self, port, "late", certificate)
        late.say("hello from TLS")
        await alice.wait_for(re.compile(rb"<guest-[0-9a-f]{4}> hello from TLS"))

    @async_test
    async def test_modern_suites_only(self) -> None:
        """
        TLS 1.2 without forward secrecy (C{AES128-SHA}) or with CBC and
        SHA-1 or SHA-384 (C{ECDHE-RSA-AES128-SHA}, C{ECDHE-RSA-AES256-SHA384})
        is refused; ECDHE with AES-GCM or ChaCha20-Poly1305 is served, and
        so is TLS 1.3; TLS 1.1 is refused.
        """
        server, port, _ = await start_telnets(self)
        results = {}
        for version, ciphers in [
            (ssl.TLSVersion.TLSv1_2, "AES128-SHA"),
            (ssl.TLSVersion.TLSv1_2, "AES256-GCM-SHA384"),
            (ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-AES128-SHA"),
            (ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-AES256-SHA384"),
            (ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-AES128-GCM-SHA256"),
            (ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-CHACHA20-POLY1305"),
            (ssl.TLSVersion.TLSv1_3, None),
        ]:
            results[ciphers or version.name] = await deferToThread(
                _handshake, port, version, ciphers
            )
        refused = {
            name for name, result in results.items() if result.startswith("refused")
        }
        self.assertEqual(
            refused,
            {
                "AES128-SHA",
                "AES256-GCM-SHA384",
                "ECDHE-RSA-AES128-SHA",
                "ECDHE-RSA-AES256-SHA384",
            },
            results,
        )
        self.assertEqual(results["TLSv1_3"][:4], "TLS_", results)
