# -*- test-case-name: tests.integration.test_siege -*-
"""
Hard to break: a real C{twistd -n tchat} under hostile load, checked from
the side of the users who behave.

  - L{FuzzRunTests}: over a hundred thousand malformed inputs through both
    doors, then chat still works exactly and the server's memory is back
    within a bound.
  - L{SiegeTests}: a flooder, slow readers, thousands of idle sockets and
    garbage all at once, while honest users chat; and bursts of
    connections, within and beyond the per-address limits.

Every client connects from 127.0.0.0/8 (all of it is local on Linux), most
from addresses other than 127.0.0.1, so that per-address limits see many
clients.  The garbage is drawn from a seeded generator
(L{bench.siege_clients}), so a failing run can be replayed.  Each test
writes its figures (counts, RSS, timings) to C{figures.json} in its
server's directory under C{_trial_temp}.
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, DeferredSemaphore, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IPullProducer
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import FailTest, TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from zope.interface import implementer

from bench.siege_clients import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    TELNET_CLOSING,
    TELNET_GARBAGE,
    WEB_CLOSING,
    WEB_GARBAGE,
    FrameReader,
    GarbagePicker,
    honest_text,
    http_status,
    loopback,
    parse_honest,
    ws_close,
    ws_frame,
    ws_key,
    ws_upgrade,
)
from tests.integration.server import (
    LOOPBACK,
    MOTD,
    WELCOME,
    ChatClient,
    TchatServer,
    WebClient,
    async_test,
    connect,
    connect_web,
    global_reactor,
    start_server,
)
from tests.support import require

SEED = 20261121
"""The seed of every random choice these tests make."""

WEB = "tcp:0:interface=127.0.0.1"
"""The C{--web} endpoint of every server here."""


def tap_ini(**limits: object) -> str:
    """
    A test server's configuration: both doors (given on the command line),
    history in SQLite, and C{[limits]} at their defaults except C{limits}.
    """
    motd = "\n    ".join(MOTD)
    lines = "".join(f"{key} = {value}\n" for key, value in limits.items())
    return (
        "# Written by tests/integration/test_siege.py.\n"
        f"[server]\nname = tchat\nmotd = {motd}\ndefault_room = #lobby\n"
        "reconnect_grace = 0\n\n"
        "[telnet]\n# Replaced by --telnet.\nlisten = tcp:4444:interface=127.0.0.1\n\n"
        "[web]\n# Replaced by --web.\nlisten =\n\n"
        f"[limits]\n{lines}"
    )


def raise_fd_limit(need: int) -> int:
    """
    Raise this process's open-file soft limit to its hard limit, so that it
    (and the server it starts, which inherits it) can hold thousands of
    sockets; skip (or fail, under C{TCHAT_REQUIRE_ALL=1}) if even the hard
    limit is below C{need}.

    @return: The soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    require(
        soft == resource.RLIM_INFINITY or soft >= need,
        f"the open-file limit ({soft}) is below the {need} this test needs",
    )
    return soft


def rss_kib(pid: int) -> int:
    """
    A process's resident memory (C{VmRSS}), in KiB.
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise FailTest(f"no VmRSS for PID {pid}")


def server_pid(server: TchatServer) -> int:
    """
    The PID of a test server's C{twistd}.
    """
    transport = server.process.transport
    assert transport is not None
    pid = transport.pid
    assert isinstance(pid, int)
    return pid


def sleep(seconds: float) -> Deferred[None]:
    """
    A Deferred that fires after C{seconds}.
    """
    return deferLater(global_reactor(), seconds, lambda: None)


def save_figures(server: TchatServer, figures: dict[str, Any]) -> None:
    """
    Keep a test's figures next to its server's log, for whoever reads them.
    """
    with open(os.path.join(server.directory, "figures.json"), "w") as f:
        json.dump(figures, f, indent=1, sort_keys=True)


def server_problems(server: TchatServer) -> list[str]:
    """
    Lines of the server's log that show a bug whatever the test did.
    """
    return [
        line
        for line in server.log().splitlines()
        if "Traceback" in line or "Unhandled" in line
    ]


class Scraper:
    """
    Reads a test server's C{/metrics} (Prometheus text) from its admin
    door, over one kept-alive connection, so that polling it is quick.
    """

    def __init__(self, testcase: TestCase, server: TchatServer) -> None:
        reactor = global_reactor()
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._agent = Agent(reactor, pool=self._pool)
        self._url = f"http://{LOOPBACK}:{server.admin_port}/metrics".encode()
        testcase.addCleanup(self._pool.closeCachedConnections)

    async def text(self) -> str:
        """
        The whole of C{/metrics}.
        """
        request = self._agent.request(b"GET", self._url)
        request.addTimeout(10, global_reactor())
        response = await request
        body: Deferred[bytes] = readBody(response)
        body.addTimeout(10, global_reactor())
        return (await body).decode("utf-8")

    async def value(self, name: str) -> float:
        """
        The value of one unlabelled metric (0 if absent).
        """
        return metric(await self.text(), name)


def metric(text: str, name: str) -> float:
    """
    The value of one unlabelled metric (0 if absent).
    """
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


SLOW_DISCONNECTS = "tchat_slow_consumer_disconnects_total"
"""The admin door's count of clients cut off for not reading."""


class RssSampler:
    """
    Samples a process's RSS every C{interval} seconds until stopped.

    @ivar samples: (seconds since start, KiB).
    """

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self._start = time.monotonic()
        self._call = global_reactor().callLater(0, self._sample, interval)

    def _sample(self, interval: float) -> None:
        self.samples.append(
            (round(time.monotonic() - self._start, 1), rss_kib(self.pid))
        )
        self._call = global_reactor().callLater(interval, self._sample, interval)

    def stop(self) -> None:
        """
        Take a last sample and stop; calling it again does nothing.
        """
        if self._call.active():
            self._call.cancel()
            self.samples.append(
                (round(time.monotonic() - self._start, 1), rss_kib(self.pid))
            )

    @property
    def peak(self) -> int:
        """The largest sample, in KiB."""
        return max(kib for _, kib in self.samples)


# -- raw clients -------------------------------------------------------------


class Peer(Protocol):
    """
    A raw TCP client of either door, with just enough bookkeeping for
    thousands of them in one process.

    @ivar name: Who it is, for failure messages.
    @ivar head: The first bytes received (up to C{keep}).
    @ivar received: How many bytes were received in all.
    @ivar is_open: Whether the connection is up.
    @ivar ended: Whether the connection has ended.
    @ivar closing: Whether this side started closing it.
    @ivar connect_failed: Whether the TCP connection could not be made.
    """

    keep = 4096

    def __init__(self, name: str) -> None:
        self.name = name
        self.head = bytearray()
        self.received = 0
        self.is_open = False
        self.ended = False
        self.closing = False
        self.connect_failed = False
        self.connected_at = 0.0
        self.ended_at = 0.0
        self._waiters: list[tuple[Callable[[], bool], Deferred[None]]] = []

    def connectionMade(self) -> None:
        self.is_open = True
        self.connected_at = time.monotonic()
        self._changed()

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if len(self.head) < self.keep:
            self.head += data[: self.keep - len(self.head)]
        self.data(data)
        if self._waiters:
            self._changed()

    def data(self, data: bytes) -> None:
        """
        Subclasses look at what arrived here.
        """

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.is_open = False
        self.ended = True
        self.ended_at = time.monotonic()
        self._changed()

    def _changed(self) -> None:
        waiting, self._waiters = self._waiters, []
        for done, d in waiting:
            if d.called:
                continue
            if done():
                d.callback(None)
            else:
                self._waiters.append((done, d))

    async def until(self, done: Callable[[], bool], timeout: float) -> bool:
        """
        Wait until C{done()}, checked whenever something arrives or the
        connection opens or ends.

        @return: Whether it became true within C{timeout} seconds.
        """
        if done():
            return True
        d: Deferred[None] = Deferred()
        self._waiters.append((done, d))
        timer = global_reactor().callLater(timeout, d.cancel)
        try:
            await d
        except Exception:
            return False
        finally:
            if timer.active():
                timer.cancel()
        return True

    async def wait_ended(self, timeout: float) -> bool:
        """
        Wait for the connection to end.

        @return: Whether it ended within C{timeout} seconds.
        """
        return await self.until(lambda: self.ended, timeout)

    async def wait_answered(self, timeout: float) -> bool:
        """
        Wait for the server's first word: subclasses say what that is.
        """
        return await self.until(lambda: self.received > 0 or self.ended, timeout)

    def refusal_text(self) -> str:
        """
        What the server said when it refused this connection.
        """
        return bytes(self.head).decode("utf-8", "replace").strip()

    def write(self, data: bytes) -> None:
        """Send bytes, if the connection is still up."""
        if self.transport is not None and self.is_open:
            self.transport.write(data)

    def close(self) -> None:
        """
        Close from this side, gracefully.
        """
        self.closing = True
        if self.transport is not None and self.is_open:
            self.transport.loseConnection()

    def abort(self) -> None:
        """
        Drop the connection at once (RST).
        """
        self.closing = True
        if self.transport is not None and not self.ended:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def pause(self) -> None:
        """
        Stop reading from the socket, as a client that hangs would.
        """
        assert self.transport is not None
        self.transport.pauseProducing()  # type: ignore[attr-defined]

    def resume(self) -> None:
        """
        Read again.
        """
        if self.transport is not None and not self.ended:
            self.transport.resumeProducing()  # type: ignore[attr-defined]


MARKERS = {
    "slow-down": re.compile(rb"!!! slow down"),
    "flooding": re.compile(rb"\*\*\* Goodbye \(flooding"),
    "too-many": re.compile(rb"!!! too many[^\r\n]*"),
    "full": re.compile(rb"!!! the server is full[^\r\n]*"),
    "skipped": re.compile(rb"\[\d+ lines? skipped"),
    "welcome": re.compile(rb"\*\*\* Welcome to tchat"),
}
"""What telnet peers count in what they receive."""


class TelnetPeer(Peer):
    """
    A raw telnet client: counts the L{MARKERS} it receives and keeps the
    notices (C{!!!} lines) it is sent, up to a few.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.marks: Counter[str] = Counter()
        self.notices: list[bytes] = []
        self._tail = b""

    def data(self, data: bytes) -> None:
        # Look at the chunk with the end of the previous one, counting only
        # matches that end in the new bytes (so none is counted twice).
        window = self._tail + data
        carried = len(self._tail)
        if any(word in window for word in (b"!!!", b"skipped", b"Welcome", b"Goodbye")):
            for name, pattern in MARKERS.items():
                for match in pattern.finditer(window):
                    if match.end() > carried:
                        self.marks[name] += 1
            for match in re.finditer(rb"!!! [^\r\n]*\r\n", window):
                if match.end() > carried and len(self.notices) < 20:
                    self.notices.append(match.group(0)[:-2])
        self._tail = window[-200:]

    @property
    def welcomed(self) -> bool:
        """Whether the telnet welcome arrived."""
        return self.marks["welcome"] > 0

    async def wait_answered(self, timeout: float) -> bool:
        """
        Wait for the welcome, or a refusal, or the end.
        """
        return await self.until(
            lambda: self.welcomed or bool(self.notices) or self.ended, timeout
        )


class WebPeer(Peer):
    """
    A raw WebSocket client: sends the upgrade, then reads frames; answers
    a close frame with its own and closes.

    @ivar status: The HTTP status of the upgrade's answer, once known.
    @ivar refusal: The body of a non-101 answer.
    @ivar close_code: The code of the server's close frame, if one came.
    @ivar close_reason: Its reason.
    @ivar server_closed: Whether the server started the closing handshake.
    @ivar errors: The C{code}s of the error frames received.
    @ivar messages: Text frames decoded as JSON, if C{keep_json}.
    """

    def __init__(
        self, name: str, port: int, rng: random.Random, keep_json: bool = False
    ) -> None:
        super().__init__(name)
        self.port = port
        self.key = ws_key(rng)
        self.keep_json = keep_json
        self.status: int | None = None
        self.refusal = b""
        self.close_code: int | None = None
        self.close_reason = ""
        self.server_closed = False
        self.errors: Counter[str] = Counter()
        self.messages: list[dict[str, Any]] = []
        self.frames = 0
        self._http = bytearray()
        self._reader = FrameReader()

    def connectionMade(self) -> None:
        super().connectionMade()
        self.write(ws_upgrade(LOOPBACK, self.port, self.key))

    @property
    def upgraded(self) -> bool:
        """Whether the server switched to WebSocket (101)."""
        return self.status == 101

    async def wait_answered(self, timeout: float) -> bool:
        """
        Wait for the answer to the upgrade request, or the end.
        """
        return await self.until(lambda: self.status is not None or self.ended, timeout)

    def refusal_text(self) -> str:
        return f"{self.status} " + self.refusal.decode("utf-8", "replace").strip()

    def data(self, data: bytes) -> None:
        if self.status is None:
            self._http += data
            end = self._http.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = http_status(bytes(self._http)) or 0
            rest = bytes(self._http[end + 4 :])
            if self.status != 101:
                self.refusal = rest
                return
            del self._http[:]
            data = rest
        elif self.status != 101:
            self.refusal += data
            return
        for frame in self._reader.feed(data):
            self.frames += 1
            if frame.opcode == OP_CLOSE:
                self.close_code, self.close_reason = frame.close_code()
                if not self.closing:
                    # The server started it: answer, and let it close.
                    self.server_closed = True
                    self.write(ws_close(1000))
                if self.transport is not None:
                    self.transport.loseConnection()
            elif frame.opcode == OP_PING:
                self.write(ws_frame(frame.payload, OP_PONG))
            elif frame.opcode == OP_TEXT:
                if b'"type": "error"' in frame.payload or b'"type":"error"' in (
                    frame.payload
                ):
                    code = json.loads(frame.payload).get("code", "?")
                    self.errors[str(code)] += 1
                if self.keep_json:
                    self.messages.append(json.loads(frame.payload))

    def send(self, frame: object) -> None:
        """
        Send one JSON text frame.
        """
        self.write(ws_frame(json.dumps(frame).encode("utf-8")))


async def open_peer(
    peer: Peer, port: int, bind: str | None = None, timeout: float = 10.0
) -> bool:
    """
    Connect C{peer} to a server's door on 127.0.0.1, from C{bind}.

    @return: Whether the TCP connection was made.
    """
    endpoint = TCP4ClientEndpoint(
        global_reactor(),
        LOOPBACK,
        port,
        timeout=timeout,
        bindAddress=None if bind is None else (bind, 0),
    )
    try:
        await connectProtocol(endpoint, peer)
    except Exception:
        peer.connect_failed = peer.ended = True
        return False
    return True


class Peers:
    """
    Every raw client a test opened, so that cleanup drops those still
    connected.
    """

    def __init__(self, testcase: TestCase) -> None:
        self.all: list[Peer] = []
        testcase.addCleanup(self.drop_all)

    def add(self, peer: _P) -> _P:
        """Keep C{peer}, to drop it in cleanup; return it."""
        self.all.append(peer)
        return peer

    async def drop_all(self) -> None:
        """
        Abort every connection still up, and give the server a moment to
        see them go.
        """
        live = [p for p in self.all if not p.ended]
        for peer in live:
            peer.abort()
        deadline = time.monotonic() + 10
        while any(not p.ended for p in live) and time.monotonic() < deadline:
            await sleep(0.1)


_P = TypeVar("_P", bound=Peer)


async def gather(
    coroutines: Iterable[Coroutine[Any, Any, Any]], window: int
) -> list[Any]:
    """
    Run coroutines, at most C{window} at a time.

    @return: Their results, in order.
    """
    semaphore = DeferredSemaphore(window)

    def starter(coroutine: Coroutine[Any, Any, Any]) -> Callable[[], Deferred[Any]]:
        return lambda: ensureDeferred(coroutine)

    waits = [semaphore.run(starter(c)) for c in coroutines]
    results = []
    for d in waits:
        results.append(await d)
    return results


# -- garbage, with flow control ----------------------------------------------


class Budget:
    """
    How many inputs of one door are still to be written, and until when.
    """

    def __init__(self, target: int, deadline: float) -> None:
        self.target = target
        self.deadline = deadline
        self.written: Counter[str] = Counter()

    @property
    def count(self) -> int:
        """How many inputs were written so far."""
        return sum(self.written.values())

    def open(self) -> bool:
        """Whether more may be written: under the target, before the deadline."""
        return self.count < self.target and time.monotonic() < self.deadline


@implementer(IPullProducer)
class Pump:
    """
    Writes garbage into one connection only as fast as it leaves for the
    kernel: Twisted asks for more (C{resumeProducing}) once everything
    written before has gone to the socket, and only then are those inputs
    counted as written.  Inputs still in this process's buffer when the
    server closes the connection are not counted.

    @ivar closed_by: The closing kind written last, if any: after it the
        pump stops and the server is expected to close.
    @ivar done: Fires when the pump has stopped.
    """

    def __init__(
        self,
        peer: Peer,
        picker: GarbagePicker,
        budget: Budget,
        count: int,
        closing: frozenset[str],
        chunk: int = 16384,
    ) -> None:
        self.peer = peer
        self.picker = picker
        self.budget = budget
        self.left = count
        self.closing = closing
        self.chunk = chunk
        self.closed_by: str | None = None
        self.done: Deferred[None] = Deferred()
        self._pending: list[str] = []
        self._last = False

    def start(self) -> None:
        """Register with the peer's transport, which then asks for data."""
        transport = self.peer.transport
        assert transport is not None
        transport.registerProducer(self, False)  # type: ignore[attr-defined]

    def resumeProducing(self) -> None:
        for kind in self._pending:
            self.budget.written[kind] += 1
        self._pending = []
        if self._last or not self.budget.open() or self.left <= 0:
            self._finish()
            return
        parts: list[bytes] = []
        size = 0
        while size < self.chunk and self.left > 0:
            kind, data = self.picker.pick()
            self._pending.append(kind)
            parts.append(data)
            size += len(data)
            self.left -= 1
            if kind in self.closing:
                self.closed_by = kind
                self._last = True
                break
        self.peer.write(b"".join(parts))

    def stopProducing(self) -> None:
        # The connection is gone: what was pending may never have left.
        self._pending = []
        self._finish()

    def _finish(self) -> None:
        transport = self.peer.transport
        if transport is not None and transport.producer is self:  # type: ignore[attr-defined]
            transport.unregisterProducer()  # type: ignore[attr-defined]
        if not self.done.called:
            self.done.callback(None)


class FuzzTally:
    """
    What the fuzzers saw: connections made and how they ended.
    """

    def __init__(self) -> None:
        self.connections = 0
        self.failed_connects = 0
        self.closed_after: Counter[str] = Counter()
        self.not_closed_after: list[str] = []
        self.unexpected_closes: list[str] = []
        self.close_codes: Counter[int | None] = Counter()


async def fuzz_slot(
    door: str,
    port: int,
    rng: random.Random,
    budget: Budget,
    tally: FuzzTally,
    peers: Peers,
    bind: str | None = None,
    per_connection: tuple[int, int] = (100, 1500),
    pause_between: float = 0.0,
) -> None:
    """
    One fuzzing client: connect, write garbage until this connection's
    share is written, a closing kind was written, or the budget is spent;
    then close (or wait for the server to close) and connect again.
    """
    kinds, closing = (
        (TELNET_GARBAGE, TELNET_CLOSING)
        if door == "telnet"
        else (WEB_GARBAGE, WEB_CLOSING)
    )
    picker = GarbagePicker(kinds, rng)
    serial = 0
    while budget.open():
        serial += 1
        name = f"fuzz-{door}-{id(rng) % 1000}-{serial}"
        peer: Peer = TelnetPeer(name) if door == "telnet" else WebPeer(name, port, rng)
        peers.add(peer)
        if not await open_peer(peer, port, bind):
            tally.failed_connects += 1
            await sleep(0.2)
            continue
        tally.connections += 1
        if isinstance(peer, WebPeer) and not await peer.wait_answered(10):
            tally.failed_connects += 1
            peer.abort()
            continue
        if isinstance(peer, WebPeer) and not peer.upgraded:
            tally.failed_connects += 1
            await peer.wait_ended(5)
            peer.abort()
            await sleep(pause_between or 0.2)
            continue
        pump = Pump(peer, picker, budget, rng.randint(*per_connection), closing)
        pump.start()
        await pump.done
        if pump.closed_by is not None:
            if await peer.wait_ended(10):
                tally.closed_after[pump.closed_by] += 1
            else:
                tally.not_closed_after.append(pump.closed_by)
        elif peer.ended and not peer.closing:
            tally.unexpected_closes.append(
                f"{name}: {bytes(peer.head[-300:])!r}"
                if isinstance(peer, TelnetPeer)
                else f"{name}: {getattr(peer, 'close_code', None)}"
            )
        if isinstance(peer, WebPeer):
            tally.close_codes[peer.close_code] += 1
        peer.close()
        if not await peer.wait_ended(10):
            peer.abort()
        if pause_between:
            await sleep(pause_between)


# -- the tests ---------------------------------------------------------------


class FuzzRunTests(TestCase):
    """
    A hundred thousand malformed inputs, then chat as usual.
    """

    timeout = 150

    INPUTS = 100_000
    """How many malformed inputs, at least, both doors together."""

    RSS_GROWTH_MIB = 64
    """The bound on the server's RSS growth over the fuzz run."""

    @async_test
    async def test_malformed_inputs_leave_chat_working(self) -> None:
        """
        After 100,000 malformed inputs, half through each door, over about
        2,700 connections (the server closes those whose input breaks the
        protocol, and only those, and the fuzzer connects again), a telnet
        user and a web user chat both ways and each sees exactly the
        other's messages, in order; the server logged no traceback and no
        unhandled error, and its resident memory grew by less than 64 MiB
        over the run (measured: 9 MiB; the inputs take 12 to 18 s).

        Telnet garbage: random bytes, telnet option negotiations and
        commands, invalid IAC sequences and subnegotiations that never
        end, invalid and partial UTF-8, ANSI and OSC escapes, lines over
        C{max_line}, NULs, bare CRs, and commands with garbage arguments.
        WebSocket garbage: malformed JSON, fields of the wrong type,
        unknown types, binary frames, frames over C{max_frame}, invalid
        UTF-8 in text frames, deep nesting, fragments, pings and frames the
        protocol forbids.

        The server runs with C{[limits] messages_per_second = 0} (every
        other limit at its default, loopback exempt), so that the parsers,
        not the rate limiter, see the inputs.
        """
        raise_fd_limit(1024)
        server = await start_server(
            self, tap_ini(messages_per_second=0), web=WEB, timeout=20
        )
        assert server.web_port is not None
        pid = server_pid(server)
        peers = Peers(self)
        await sleep(1.0)
        rss_before = rss_kib(pid)
        started = time.monotonic()
        deadline = started + 90
        half = self.INPUTS // 2
        budgets = {"telnet": Budget(half, deadline), "web": Budget(half, deadline)}
        tally = {"telnet": FuzzTally(), "web": FuzzTally()}
        rng = random.Random(SEED)
        slots = []
        for door, port in (("telnet", server.port), ("web", server.web_port)):
            for _ in range(6):
                slot_rng = random.Random(rng.getrandbits(64))
                slots.append(
                    ensureDeferred(
                        fuzz_slot(
                            door, port, slot_rng, budgets[door], tally[door], peers
                        )
                    )
                )
        for slot in slots:
            await slot
        fuzz_s = time.monotonic() - started
        await peers.drop_all()
        await sleep(1.0)
        rss_after = rss_kib(pid)
        written = {door: budget.count for door, budget in budgets.items()}

        figures = {
            "inputs_written": written,
            "inputs_by_kind": {d: dict(b.written) for d, b in budgets.items()},
            "connections": {d: t.connections for d, t in tally.items()},
            "failed_connects": {d: t.failed_connects for d, t in tally.items()},
            "closed_after": {d: dict(t.closed_after) for d, t in tally.items()},
            "not_closed_after": {d: t.not_closed_after for d, t in tally.items()},
            "unexpected_closes": {
                d: len(t.unexpected_closes) for d, t in tally.items()
            },
            "web_close_codes": {
                str(code): n for code, n in tally["web"].close_codes.items()
            },
            "fuzz_seconds": round(fuzz_s, 1),
            "rss_before_kib": rss_before,
            "rss_after_kib": rss_after,
        }
        save_figures(server, figures)
        alice, bob = await self._chat_after(server)

        self.assertGreaterEqual(
            sum(written.values()), self.INPUTS, f"not enough inputs: {figures}"
        )
        for door in ("telnet", "web"):
            self.assertEqual(
                tally[door].unexpected_closes,
                [],
                f"{door}: the server closed connections after inputs it "
                f"should only have refused: {figures}",
            )
            self.assertEqual(
                tally[door].not_closed_after,
                [],
                f"{door}: the server kept connections open after inputs that "
                f"break the protocol: {figures}",
            )
        self.assertLess(
            rss_after - rss_before,
            self.RSS_GROWTH_MIB * 1024,
            f"the server's RSS grew too much: {figures}",
        )
        self.assertEqual(server_problems(server), [], server.log()[-5000:])
        self.assertTrue(alice.connected and bob.closed is None)

    async def _chat_after(self, server: TchatServer) -> tuple[ChatClient, WebClient]:
        """
        A telnet user and a web user meet in a new room and talk both
        ways; each must receive exactly the other's messages, in order.
        """
        assert server.web_port is not None
        alice = await connect(self, server.port, "alice", bind="127.0.9.1")
        await alice.set_nick("alice")
        bob = await connect_web(
            self, server.web_port, "bob", bind="127.0.9.2", replay=True
        )
        await bob.set_nick("bob")
        alice.say("/join #after")
        await alice.wait_for("*** you joined #after\r\n")
        bob.send({"type": "join", "room": "#after"})
        await bob.wait_for(type="system", event="join", name="bob", room="#after")
        await alice.wait_for("*** bob (web) joined #after\r\n")
        said = [
            ("alice", f"fuzz is over {i}: héllo 中文 \U0001f600 <b>&amp;</b>")
            for i in range(10)
        ]
        said += [("bob", f"still here {i}: ça va? \u00e9\u00e8") for i in range(10)]
        order = [said[i // 2 + (10 if i % 2 else 0)] for i in range(20)]
        for who, text in order:
            if who == "alice":
                alice.say(text)
            else:
                bob.send({"type": "message", "message": text, "room": "#after"})
            # One at a time, so both see one order.
            await bob.wait_for(type="usermsg", name=who, message=text, room="#after")
        await alice.expect_lines(
            *(f"[HH:MM] <bob> {text}" for who, text in order if who == "bob")
        )
        got = [
            (f["name"], f["message"])
            for f in bob.frames
            if f.get("type") == "usermsg" and f.get("room") == "#after"
        ]
        self.assertEqual(got, order)
        # Nothing else arrived for alice in between.
        between = await alice.sync()
        self.assertEqual(between, b"")
        return alice, bob


# -- the siege ----------------------------------------------------------------

ROOM = "#siege"
"""Where the honest users, the flooders and the slow readers meet."""


class Honest:
    """
    The honest users of a siege: two on telnet and two on the web, each
    from a loopback address of its own, all in L{ROOM} (and out of the
    lobby, where thousands of idle sockets come and go).

    @ivar sent: How many messages each sender (by index) has sent.
    """

    def __init__(self, telnet: list[ChatClient], web: list[WebClient]) -> None:
        self.telnet = telnet
        self.web = web
        self.sent = [0] * (len(telnet) + len(web))

    @classmethod
    async def arrive(cls, testcase: TestCase, server: TchatServer) -> Honest:
        """Connect the honest users, each from its own address, into L{ROOM}."""
        assert server.web_port is not None
        telnet, web = [], []
        for i in range(2):
            nick = f"honest_t{i}"
            client = await connect(
                testcase, server.port, nick, bind=f"127.0.200.{i + 1}"
            )
            await client.set_nick(nick)
            client.say(f"/join {ROOM}")
            await client.wait_for(f"*** you joined {ROOM}\r\n")
            client.say("/part #lobby")
            await client.wait_for("*** you left #lobby\r\n")
            telnet.append(client)
        for i in range(2):
            nick = f"honest_w{i}"
            web_client = await connect_web(
                testcase,
                server.web_port,
                nick,
                bind=f"127.0.201.{i + 1}",
                replay=True,
            )
            web_client.send({"type": "nick", "name": nick})
            await web_client.wait_for(type="system", event="nick", new_name=nick)
            web_client.nick = nick
            web_client.send({"type": "join", "room": ROOM})
            await web_client.wait_for(type="system", event="join", name=nick, room=ROOM)
            web_client.send({"type": "part", "room": "#lobby"})
            await web_client.wait_for(
                type="system", event="part", name=nick, room="#lobby"
            )
            web.append(web_client)
        return cls(telnet, web)

    async def chat(self, sender: int, count: int, rng: random.Random) -> None:
        """
        One honest user says C{count} things, about one a second.
        """
        for seq in range(count):
            text = honest_text(sender, seq, time.monotonic_ns())
            if sender < len(self.telnet):
                self.telnet[sender].say(text)
            else:
                client = self.web[sender - len(self.telnet)]
                client.send(
                    {
                        "type": "message",
                        "message": text,
                        "room": ROOM,
                        "client_id": f"h{sender}-{seq}",
                    }
                )
            self.sent[sender] += 1
            await sleep(rng.uniform(0.7, 1.3))

    def received(self) -> list[dict[int, list[int]]]:
        """
        What each honest user (by index) received of the honest messages in
        L{ROOM}: sequence numbers by sender, in order of arrival.
        """
        result: list[dict[int, list[int]]] = []
        for client in self.telnet:
            got: dict[int, list[int]] = {}
            for line in bytes(client.received.data).split(b"\r\n"):
                found = parse_honest(line.decode("utf-8", "replace"))
                if found is not None and b"> honest " in line:
                    got.setdefault(found[0], []).append(found[1])
            result.append(got)
        for web_client in self.web:
            got = {}
            for frame in web_client.frames:
                if (
                    frame.get("type") == "usermsg"
                    and frame.get("room") == ROOM
                    and not frame.get("history")
                ):
                    found = parse_honest(str(frame.get("message", "")))
                    if found is not None:
                        got.setdefault(found[0], []).append(found[1])
            result.append(got)
        return result

    def expected(self) -> list[dict[int, list[int]]]:
        """
        What each honest user must receive: every message of every other
        honest user, and a web user its own too (its acknowledgements).
        """
        result = []
        for receiver in range(len(self.sent)):
            result.append(
                {
                    sender: list(range(count))
                    for sender, count in enumerate(self.sent)
                    if count and (receiver >= len(self.telnet) or sender != receiver)
                }
            )
        return result

    async def all_delivered(self, timeout: float) -> bool:
        """
        Wait until every honest user has as many honest messages as it
        should (then the test compares them exactly).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received()
            want = self.expected()
            if all(
                sum(map(len, g.values())) >= sum(map(len, w.values()))
                for g, w in zip(got, want, strict=True)
            ):
                return True
            await sleep(0.2)
        return False


def flood_picker(rng: random.Random, door: str) -> GarbagePicker:
    """
    What a flooder sends: long-ish room messages, as fast as it can.
    """
    # Long lines (under max_line) make the history the slow readers ask for
    # long too.
    filler = "x" * 3000

    def line(r: random.Random) -> bytes:
        n = r.getrandbits(32)
        if door == "telnet":
            return f"flood {n} {filler}\r\n".encode()
        frame = {"type": "message", "room": ROOM, "message": f"flood {n} {filler}"}
        return ws_frame(json.dumps(frame).encode(), mask=r.randbytes(4))

    return GarbagePicker((("flood", 1, line),), rng)


class FloodTally:
    """
    What happened to the flooders' connections.
    """

    def __init__(self) -> None:
        self.connections: list[dict[str, Any]] = []


async def flooder(
    door: str,
    port: int,
    bind: str,
    rng: random.Random,
    peers: Peers,
    tally: FloodTally,
    connections: int,
    gap: float,
) -> None:
    """
    Flood L{ROOM} from one address, C{connections} times over, C{gap}
    seconds apart: each connection sends as fast as its socket takes it
    until the server closes it (or 10 s).
    """
    for n in range(connections):
        peer: Peer = (
            TelnetPeer(f"flooder-{door}-{n}")
            if door == "telnet"
            else WebPeer(f"flooder-{door}-{n}", port, rng)
        )
        peers.add(peer)
        record: dict[str, Any] = {"door": door}
        tally.connections.append(record)
        if not await open_peer(peer, port, bind):
            record["connected"] = False
            continue
        if isinstance(peer, WebPeer):
            await peer.wait_answered(10)
            if not peer.upgraded:
                record["status"] = peer.status
                continue
            peer.send({"type": "join", "room": ROOM})
        else:
            peer.write(f"/join {ROOM}\r\n".encode())
        started = time.monotonic()
        budget = Budget(10**7, started + 10)
        pump = Pump(peer, flood_picker(rng, door), budget, 10**7, frozenset())
        pump.start()
        await pump.done
        closed = await peer.wait_ended(5)
        record.update(
            written=budget.count,
            closed_by_server=closed and not peer.closing,
            seconds=round(peer.ended_at - started, 2) if closed else None,
        )
        if isinstance(peer, TelnetPeer):
            record.update(
                marks=dict(peer.marks), notices=[n.decode() for n in peer.notices[:3]]
            )
        elif isinstance(peer, WebPeer):
            record.update(
                errors=dict(peer.errors),
                close_code=peer.close_code,
                close_reason=peer.close_reason,
            )
        peer.abort()
        await sleep(gap)


async def slow_telnet_reader(
    port: int, bind: str, peers: Peers, stalled: float
) -> dict[str, Any]:
    """
    A telnet user in L{ROOM} that stops reading for C{stalled} seconds
    while asking for long answers (C{/history 200}, four a second, within
    the message rate), then reads again.

    @return: What it saw: the skipped-lines markers, whether it was closed.
    """
    peer = peers.add(TelnetPeer("slow-telnet"))
    if not await open_peer(peer, port, bind):
        return {"connected": False}
    peer.write(f"/join {ROOM}\r\n".encode())
    await sleep(0.5)
    peer.pause()
    received_before = peer.received
    until = time.monotonic() + stalled
    asked = 0
    while time.monotonic() < until and not peer.ended:
        peer.write(b"/history 200\r\n")
        asked += 1
        await sleep(0.25)
    peer.resume()
    await peer.until(lambda: peer.marks["skipped"] > 0 or peer.ended, 10)
    # Let what is queued arrive, then count the markers.
    await sleep(1.0)
    return {
        "asked": asked,
        "skipped_markers": peer.marks["skipped"],
        "closed": peer.ended,
        "received_before_stall": received_before,
        "received": peer.received,
    }


async def slow_web_reader(
    server: TchatServer,
    observer: WebClient,
    bind: str,
    rng: random.Random,
    peers: Peers,
    stalled: float,
) -> dict[str, Any]:
    """
    A web user in L{ROOM} that stops reading while asking for pages of
    the room's long lines (from L{prefill}), four a second (within the
    message rate).  It reads again as soon as C{observer}, an honest web
    user in the room, sees it leave (as a phone app woken up would), or
    after C{stalled} seconds, and sees how the server closed it.

    The server closes it with 1008 after what it had queued, and drops the
    connection if the close is not answered within Autobahn's close
    timeout (1 s), so only a reader that wakes up at once can see the
    close frame.
    """
    assert server.web_port is not None
    peer = peers.add(WebPeer("slow-web", server.web_port, rng, keep_json=True))
    if not await open_peer(peer, server.web_port, bind):
        return {"connected": False}
    await peer.wait_answered(10)
    if not peer.upgraded:
        return {"status": peer.status}
    peer.send({"type": "join", "room": ROOM})

    def frame(event: str, room: str) -> dict[str, Any] | None:
        for message in peer.messages:
            if message.get("event") == event and message.get("room") == room:
                return message
        return None

    await peer.until(lambda: frame("join", ROOM) is not None or peer.ended, 10)
    welcome, notice = frame("welcome", "#lobby"), frame("join", ROOM)
    if welcome is None or notice is None:
        return {"joined": False}
    nick = welcome["name"]
    # The pages end where the room stood on joining: the long lines.
    upto = int(notice["last_id"]) + 1
    peer.keep_json = False
    left: Deferred[dict[str, Any]] = ensureDeferred(
        observer.wait_for(stalled, type="system", event="quit", name=nick)
    )
    left.addErrback(lambda _: {})
    peer.pause()
    started = time.monotonic()
    asked = 0
    while not left.called and time.monotonic() < started + stalled:
        # Sixteen of the room's long lines fit a 64 KiB frame.
        peer.send({"type": "history", "room": ROOM, "before": upto, "limit": 16})
        asked += 1
        await sleep(0.25)
    woke = time.monotonic() - started
    woke_received = peer.received
    peer.resume()
    seen = await left
    await peer.wait_ended(15)
    return {
        "asked": asked,
        "woke_after_s": round(woke, 1),
        "read_after_waking": peer.received - woke_received,
        "others_saw": seen.get("message"),
        "close_code": peer.close_code,
        "close_reason": peer.close_reason,
        "closed": peer.ended,
    }


async def prefill(port: int, peers: Peers, count: int = 6) -> None:
    """
    Give L{ROOM} a long history before the siege: C{count} users (each
    from its own address) say nine lines of 3.5 KB each, within the
    per-connection and the room's bursts, and leave.  The slow readers ask
    for this history, over and over.
    """
    line = "y" * 3500
    writers = []
    for n in range(count):
        peer = peers.add(TelnetPeer(f"prefill-{n}"))
        if not await open_peer(peer, port, f"127.0.104.{n + 1}"):
            raise FailTest(f"prefill-{n} could not connect")
        peer.write(f"/join {ROOM}\r\n".encode())
        peer.write(b"".join(f"long {n} {i} {line}\r\n".encode() for i in range(9)))
        writers.append(peer)
    await sleep(1.0)
    for peer in writers:
        peer.close()


IDLE_PER_ADDRESS = 10
"""Idle sockets per loopback address: within C{per_address} (20) and
C{connects_per_minute} (60)."""


async def open_idle(
    server: TchatServer,
    count: int,
    peers: Peers,
    rng: random.Random,
    first_octet: int = 10,
    window: int = 200,
) -> tuple[list[Peer], float]:
    """
    Open C{count} idle sockets from many loopback addresses, at most
    C{window} connecting at a time: two fifths telnet users, two fifths
    WebSocket users, one fifth bare TCP to the web door that never sends a
    request.  None of them sends anything afterwards.

    @return: The peers, and how long opening them took.
    """
    assert server.web_port is not None
    web_port = server.web_port

    async def one(index: int) -> Peer:
        bind = loopback(index // IDLE_PER_ADDRESS, first_octet)
        kind = index % 5
        peer: Peer
        if kind < 2:
            peer = TelnetPeer(f"idle-telnet-{index}")
            port = server.port
        elif kind < 4:
            peer = WebPeer(f"idle-web-{index}", web_port, rng)
            port = web_port
        else:
            peer = Peer(f"idle-bare-{index}")
            port = web_port
        peers.add(peer)
        await open_peer(peer, port, bind)
        return peer

    started = time.monotonic()
    opened: list[Peer] = await gather((one(i) for i in range(count)), window)
    return opened, time.monotonic() - started


def accepted(peer: Peer) -> bool:
    """
    Whether the server let an idle socket in: a telnet welcome, a
    WebSocket upgrade, or (for a bare socket) still open with nothing said.
    """
    if isinstance(peer, TelnetPeer):
        return peer.welcomed
    if isinstance(peer, WebPeer):
        return peer.upgraded
    return peer.is_open and peer.received == 0


async def all_accepted(peers: list[Peer], timeout: float) -> list[Peer]:
    """
    Wait until every peer is accepted, or refused or closed.

    @return: Those not accepted.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(p.ended or accepted(p) for p in peers):
            break
        await sleep(0.2)
    return [p for p in peers if not accepted(p)]


async def probe_per_address(
    door: str,
    server: TchatServer,
    bind: str,
    count: int,
    peers: Peers,
    rng: random.Random,
) -> tuple[list[Peer], list[Peer]]:
    """
    Open C{count} connections to one door from one address.

    @return: The peers let in, and those refused.
    """
    port = server.port if door == "telnet" else server.web_port
    assert port is not None
    opened = []
    for n in range(count):
        peer: Peer = (
            TelnetPeer(f"probe-{door}-{n}")
            if door == "telnet"
            else WebPeer(f"probe-{door}-{n}", port, rng)
        )
        peers.add(peer)
        await open_peer(peer, port, bind)
        opened.append(peer)

    def settled(p: Peer) -> bool:
        if isinstance(p, TelnetPeer):
            return p.welcomed or p.marks["too-many"] > 0 or p.ended
        assert isinstance(p, WebPeer)
        return p.status is not None or p.ended

    deadline = time.monotonic() + 10
    while not all(settled(p) for p in opened) and time.monotonic() < deadline:
        await sleep(0.1)
    let_in = [p for p in opened if accepted(p)]
    refused = [p for p in opened if not accepted(p)]
    return let_in, refused


class SiegeTests(TestCase):
    """
    Everything hostile at once, and bursts of connections, against the
    default limits (with C{exempt} empty, so that loopback clients count).
    """

    timeout = 150

    IDLE = 5000
    """Idle sockets opened during the siege and the burst."""

    HONEST_MESSAGES = 20
    """What each honest user says during the siege, about one a second."""

    RSS_PEAK_MIB = 256
    """The bound on the server's RSS during the siege (measured: about
    106 MiB at its peak, from 66 MiB before)."""

    def setUp(self) -> None:
        """Let this process hold thousands of sockets."""
        raise_fd_limit(self.IDLE + 1000)

    @async_test
    async def test_siege(self) -> None:
        """
        While, all at once, a telnet and a web flooder send as fast as they
        can (reconnecting a few times), a telnet and a web user stop
        reading while asking for long answers, 5,000 idle sockets arrive
        within seconds from 500 loopback addresses, and garbage pours into
        both doors, four honest users (two telnet, two web, each from its
        own address) chatting once a second notice nothing: every honest
        message reaches every honest user, in order, none lost or doubled.

        Meanwhile: each flooder connection is told to slow down once and
        then closed for flooding; the slow telnet reader finds its missed
        lines replaced by a skipped-lines marker (or is closed); the slow
        web reader is closed with code 1008 and a reason (it wakes up the
        moment the others see it quit "could not keep up": the server
        drops a close nobody answers within a second), and the admin door
        counts it in C{tchat_slow_consumer_disconnects_total}; one
        address opening more than C{per_address} connections is refused
        with the reason, on both doors; every idle socket is let in and
        stays; the server's RSS stays under 256 MiB (measured: 106 MiB at
        its peak, from 66 MiB), and it logs no traceback.  About 25 s.
        """
        server = await start_server(self, tap_ini(exempt=""), web=WEB, timeout=20)
        assert server.web_port is not None
        pid = server_pid(server)
        peers = Peers(self)
        scraper = Scraper(self, server)
        rng = random.Random(SEED)
        honest = await Honest.arrive(self, server)
        await prefill(server.port, peers)
        rss_before = rss_kib(pid)
        sampler = RssSampler(pid)
        self.addCleanup(sampler.stop)
        started = time.monotonic()

        chatter = [
            ensureDeferred(
                honest.chat(i, self.HONEST_MESSAGES, random.Random(rng.getrandbits(64)))
            )
            for i in range(len(honest.sent))
        ]
        floods = FloodTally()
        flooding = [
            ensureDeferred(
                flooder(
                    door,
                    port,
                    bind,
                    random.Random(rng.getrandbits(64)),
                    peers,
                    floods,
                    4,
                    4.0,
                )
            )
            for door, port, bind in (
                ("telnet", server.port, "127.0.100.1"),
                ("web", server.web_port, "127.0.100.2"),
            )
        ]
        slow_telnet = ensureDeferred(
            slow_telnet_reader(server.port, "127.0.101.1", peers, stalled=15)
        )
        slow_web = ensureDeferred(
            slow_web_reader(
                server,
                honest.web[0],
                "127.0.101.2",
                random.Random(rng.getrandbits(64)),
                peers,
                # On loopback the kernel's autotuned socket buffers can take
                # more than 4 MB before the server sees the reader fall
                # behind (about 17 s of these pages), so it stalls long
                # enough for its queue to overflow after that.
                45,
            )
        )
        garbage_budget = {
            "telnet": Budget(10**6, started + 20),
            "web": Budget(10**6, started + 20),
        }
        garbage_tally = {"telnet": FuzzTally(), "web": FuzzTally()}
        garbage = [
            ensureDeferred(
                fuzz_slot(
                    door,
                    server.port if door == "telnet" else server.web_port,
                    random.Random(rng.getrandbits(64)),
                    garbage_budget[door],
                    garbage_tally[door],
                    peers,
                    bind=f"127.0.102.{n}",
                    per_connection=(20, 200),
                    pause_between=1.5,
                )
            )
            for n, door in enumerate(("telnet", "telnet", "web", "web"), start=1)
        ]
        idle, idle_s = await open_idle(server, self.IDLE, peers, rng)
        refused_idle = await all_accepted(idle, 20)
        idle_done_s = time.monotonic() - started

        per_address = {}
        for door, bind in (("telnet", "127.0.103.1"), ("web", "127.0.103.2")):
            per_address[door] = await probe_per_address(
                door, server, bind, 25, peers, rng
            )

        for d in chatter:
            await d
        delivered = await honest.all_delivered(15)
        chat_s = time.monotonic() - started
        for d in flooding + garbage:
            await d
        slow_telnet_seen = await slow_telnet
        slow_web_seen = await slow_web
        still_open = sum(1 for p in idle if p.is_open)
        sampler.stop()
        slow_disconnects = await scraper.value(SLOW_DISCONNECTS)

        reasons = {
            door: sorted({p.refusal_text() for p in refused})
            for door, (_, refused) in per_address.items()
        }
        figures = {
            "idle_open_s": round(idle_s, 1),
            "idle_accepted_by_s": round(idle_done_s, 1),
            "idle_not_accepted": len(refused_idle),
            "idle_still_open_at_end": still_open,
            "honest_sent": honest.sent,
            "honest_delivered_in_s": round(chat_s, 1),
            "floods": floods.connections,
            "slow_telnet": slow_telnet_seen,
            "slow_web": slow_web_seen,
            "slow_consumer_disconnects_total": slow_disconnects,
            "garbage_written": {d: b.count for d, b in garbage_budget.items()},
            "garbage_connections": {d: t.connections for d, t in garbage_tally.items()},
            "per_address": {
                door: {
                    "let_in": len(let_in),
                    "refused": len(refused),
                    "reasons": reasons[door],
                }
                for door, (let_in, refused) in per_address.items()
            },
            "rss_before_kib": rss_before,
            "rss_peak_kib": sampler.peak,
            "rss_series_kib": [kib for _, kib in sampler.samples[::4]],
            "seconds": round(time.monotonic() - started, 1),
        }
        save_figures(server, figures)

        # Honest users noticed nothing.
        self.assertTrue(delivered, f"honest messages missing: {figures}")
        self.assertEqual(honest.received(), honest.expected(), figures)
        # Flooders were told, then cut off.
        for record in floods.connections:
            self.assertTrue(record.get("closed_by_server"), record)
            if record["door"] == "telnet":
                self.assertEqual(record["marks"].get("slow-down"), 1, record)
                # The goodbye saying why ("flooding: ...") is not asserted:
                # the server closes a socket with the flood still unread,
                # so the kernel resets it, and a reset discards what the
                # client had not read yet, the goodbye included (see
                # figures.json, "floods").
            else:
                self.assertEqual(record["errors"].get("rate-limited"), 1, record)
                self.assertEqual(record["close_code"], 1008, record)
                self.assertIn("flooding", record["close_reason"], record)
        # Slow readers were dealt with.
        self.assertTrue(
            slow_telnet_seen["skipped_markers"] or slow_telnet_seen["closed"],
            slow_telnet_seen,
        )
        self.assertEqual(slow_web_seen["close_code"], 1008, slow_web_seen)
        self.assertIn("too slow", slow_web_seen["close_reason"], slow_web_seen)
        self.assertRegex(
            slow_web_seen["others_saw"] or "", r"quit \(could not keep up\)$"
        )
        self.assertGreaterEqual(slow_disconnects, 1)
        # Idle sockets were all let in, and kept.
        self.assertEqual(
            [p.name for p in refused_idle][:10], [], f"idle sockets refused: {figures}"
        )
        self.assertEqual(still_open, self.IDLE, figures)
        # One address over per_address is refused, saying why.
        for door, (let_in, refused) in per_address.items():
            self.assertEqual((len(let_in), len(refused)), (20, 5), (door, figures))
        self.assertEqual(
            reasons["telnet"],
            [
                "!!! too many connections from your address (limit 20); "
                "close one and try again"
            ],
        )
        self.assertEqual(
            reasons["web"],
            [
                "503 too many connections from your address (limit 20); "
                "close one and try again"
            ],
        )
        self.assertLess(sampler.peak, self.RSS_PEAK_MIB * 1024, figures)
        self.assertEqual(server_problems(server), [], server.log()[-5000:])

    @async_test
    async def test_burst_of_connects(self) -> None:
        """
        5,000 connections opened within seconds from 500 loopback addresses
        (ten each, within C{per_address} and C{connects_per_minute}; two
        fifths telnet, two fifths WebSocket, one fifth bare sockets to the
        web door) are all let in, and a telnet user and a web user who
        arrive in the middle of the burst, each from its own address, are
        welcomed (measured: 0.4 s on telnet and 0.7 s on the web, 1.5 and
        1.7 s with another CPU-bound process on this 2-core machine, 3.3 s
        next to other integration tests, up to 3.9 s on the web since
        arrivals pick distinct colours; the bound, 10 s for the connection
        and the welcome alike, only catches a hang), then meet in a room and
        talk.
        """
        server = await start_server(self, tap_ini(exempt=""), web=WEB, timeout=20)
        assert server.web_port is not None
        peers = Peers(self)
        rng = random.Random(SEED + 1)
        started = time.monotonic()
        burst = ensureDeferred(open_idle(server, self.IDLE, peers, rng))
        await sleep(1.0)
        arrived = time.monotonic() - started

        async def telnet_arrives() -> tuple[ChatClient, float]:
            begun = time.monotonic()
            client = await connect(
                self, server.port, "in-burst", bind="127.0.200.1", welcome=False
            )
            await client.wait_for(WELCOME, timeout=10)
            return client, time.monotonic() - begun

        async def web_arrives() -> tuple[WebClient, float]:
            begun = time.monotonic()
            assert server.web_port is not None
            client = await connect_web(
                self,
                server.web_port,
                "in-burst-web",
                bind="127.0.201.1",
                welcome=False,
                timeout=10,
            )
            await client.wait_for(type="system", event="welcome", timeout=10)
            return client, time.monotonic() - begun

        telnet_arrival = ensureDeferred(telnet_arrives())
        web_user, web_s = await web_arrives()
        telnet_user, telnet_s = await telnet_arrival
        # #lobby may be full by now (max_users_per_room): meet elsewhere.
        telnet_user.say("/join #burst")
        await telnet_user.wait_for("*** you joined #burst\r\n")
        web_user.send({"type": "join", "room": "#burst"})
        await web_user.wait_for(type="system", event="join", room="#burst")
        telnet_user.say("made it")
        await web_user.wait_for(type="usermsg", room="#burst", message="made it")
        idle, open_s = await burst
        not_accepted = await all_accepted(idle, 30)
        accepted_s = time.monotonic() - started
        figures = {
            "open_s": round(open_s, 2),
            "all_accepted_by_s": round(accepted_s, 2),
            "not_accepted": len(not_accepted),
            "telnet_welcome_during_burst_s": round(telnet_s, 3),
            "web_welcome_during_burst_s": round(web_s, 3),
            "users_arrived_at_s": round(arrived, 2),
        }
        save_figures(server, figures)
        self.assertLess(arrived, open_s, f"the burst was over too soon: {figures}")
        self.assertEqual(
            [(p.name, bytes(p.head[:200])) for p in not_accepted][:5], [], figures
        )
        # Getting in at all is the requirement; the time is a figure (about
        # a second on an idle machine), bounded only to catch a hang.
        self.assertLess(telnet_s, 10.0, figures)
        self.assertLess(web_s, 10.0, figures)
        self.assertTrue(telnet_user.connected and web_user.closed is None)
        self.assertEqual(server_problems(server), [], server.log()[-5000:])

    @async_test
    async def test_one_address_beyond_per_address(self) -> None:
        """
        With C{exempt} empty, one address gets 20 connections (the default
        C{per_address}) across both doors; the 21st and later are refused
        with the reason (a C{!!!} line on telnet, HTTP 503 on the web
        door), while a user from another address gets in and chats.  Once
        one of the 20 closes, the address may connect again.  Another
        address connecting and closing over and over is let in 60 times
        (C{connects_per_minute}), then refused, saying why.
        """
        server = await start_server(self, tap_ini(exempt=""), web=WEB)
        assert server.web_port is not None
        peers = Peers(self)
        rng = random.Random(SEED + 2)
        crowd = "127.0.150.1"
        telnet_in, telnet_out = await probe_per_address(
            "telnet", server, crowd, 15, peers, rng
        )
        web_in, web_out = await probe_per_address("web", server, crowd, 10, peers, rng)
        self.assertEqual((len(telnet_in), len(telnet_out)), (15, 0))
        self.assertEqual((len(web_in), len(web_out)), (5, 5))
        for peer in web_out:
            assert isinstance(peer, WebPeer)
            self.assertEqual(peer.status, 503)
            self.assertEqual(
                peer.refusal,
                b"too many connections from your address (limit 20); "
                b"close one and try again\n",
            )
        extra_in, extra_out = await probe_per_address(
            "telnet", server, crowd, 3, peers, rng
        )
        self.assertEqual((len(extra_in), len(extra_out)), (0, 3))
        for peer in extra_out:
            assert isinstance(peer, TelnetPeer)
            self.assertTrue(await peer.wait_ended(10))
            self.assertEqual(
                bytes(peer.head),
                b"!!! too many connections from your address (limit 20); "
                b"close one and try again\r\n",
            )

        # Someone else is not held up by that address.
        other = await connect(self, server.port, "neighbour", bind="127.0.150.2")
        await other.set_nick("neighbour")
        await other.sync()
        neighbour_web = await connect_web(
            self, server.web_port, "neighbour-web", bind="127.0.150.2"
        )
        await neighbour_web.sync()

        # Closing one makes room for one.
        telnet_in[-1].close()
        await telnet_in[-1].until(lambda: telnet_in[-1].ended, 5)
        await sleep(0.2)
        again_in, again_out = await probe_per_address(
            "telnet", server, crowd, 2, peers, rng
        )
        self.assertEqual((len(again_in), len(again_out)), (1, 1))

        # connects_per_minute: 60 come in, the next is refused.
        churn = "127.0.150.3"
        refused_at = None
        for n in range(61):
            peer = peers.add(TelnetPeer(f"churn-{n}"))
            await open_peer(peer, server.port, churn)
            await peer.wait_answered(5)
            if not peer.welcomed:
                refused_at = n
                self.assertEqual(
                    bytes(peer.head),
                    b"!!! too many new connections from your address "
                    b"(over 60 a minute); try again in a minute\r\n",
                )
                break
            peer.close()
            await peer.wait_ended(5)
        self.assertEqual(refused_at, 60)
        self.assertEqual(server_problems(server), [], server.log()[-5000:])
