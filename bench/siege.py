# -*- test-case-name: tests.integration.test_bench_smoke -*-
"""
Siege: every attack of issue 19 at once against a real C{twistd -n tchat}
on 127.0.0.0/8, beside honest users, with the server's memory and CPU
sampled throughout.

    python bench/siege.py                           # 60 s, 100 honest users
    python bench/siege.py --seconds 10 --honest 20 --scale 0.5   # for CI

The server runs in a temporary directory with SQLite history, the default
C{[limits]} except C{exempt =} (empty, so that the per-address limits apply
to loopback too), and four listeners: telnet, telnets (a throwaway
self-signed certificate), web and admin.

Honest users are L{bench.soak}'s: half telnet, half WebSocket, each from an
address of its own (127.0.10.1 onwards), in rooms of about 30, each saying
a payload with its id, a sequence number and the send time every 3 to 7
seconds; here each also takes a nick (C{alice0}, C{bob1}...).  Once they
are all in their rooms, these attacks start together and last
C{--seconds}, each kind from a few addresses of its own (127.0.250.1
onwards), so that the per-address limits meet them:

  - B{IAC flood}: telnet clients sending C{IAC DO x} in bulk, never reading;
  - B{ping flood}: WebSocket clients sending pings in bulk, never reading;
  - B{resume-join flood}: WebSocket clients sending C{resume} frames that
    name 100 rooms (the honest rooms first, from id 0), twice a second,
    each connection living 15 s;
  - B{/rooms amplification}: room creators join 19 rooms each (within the
    limits) and stay; then some clients ask C{/rooms N} four times a second
    and read the answers, others ask and never read;
  - B{look-alike nicks}: clients trying to take look-alikes of the honest
    users' nicks (Cyrillic letters, C{1} or C{I} for C{l}, C{0} for C{o},
    C{rn} for C{m}, capitals) and of reserved names;
  - B{slow readers}: L{bench.soak}'s, which stop reading while asking for
    history four times a second;
  - B{stalled TLS handshakes}: TCP connections to the telnets door that
    never start their handshake, kept open, opened again when closed.

A quiet telnet user stays in C{#lobby}, where every attacker but the slow
readers and the room creators arrives, and counts the reasons given when
they leave.

It prints a readable summary on stderr and one JSON line on stdout: the
server's RSS (at start, before the attacks, peak, and C{--settle} seconds
after they stop), its CPU (seconds and % of one core, during the attacks
and overall), the honest users' delivery (every honest message to every
other honest member of its room, in order, none doubled: counts and
percentage) and latency (send to receive, generator included), and what
each attack met.  Exit status 1 when a check fails: honest delivery not
complete, a look-alike nick taken, the server gone or logging a traceback.

Bounded: at most 600 s of attacks and 1,000 honest users, every wait has a
timeout, a watchdog ends the run, and the only process started (the server)
is stopped by its PID, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import random
import re
import resource
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client.parser import text_string_to_metric_families

from bench.harness import (
    HOST,
    PROBLEM,
    Server,
    cpu_seconds,
    raise_fd_limit,
    rss_kib,
)
from bench.matrix import TWISTD, guarded
from bench.siege_clients import (
    DO,
    IAC,
    OP_PING,
    FrameReader,
    http_status,
    loopback,
    ws_frame,
    ws_key,
    ws_upgrade,
)
from bench.soak import ROOM_SIZE, Conn, Soak, TelnetConn, WebConn
from bench.soak import Server as SoakServer
from tests.certificates import ssl_string, write_files

TAP_INI = """\
# Written by bench/siege.py: the defaults, with loopback limited like any
# other address (every client has one of its own).
[server]
name = tchat
default_room = #lobby
# Every client that leaves is gone at once, as the figures assume.
reconnect_grace = 0

[limits]
exempt =
"""

LISTENING = re.compile(
    rf"(?P<door>telnet|web|admin) door listening on {re.escape(HOST)}:"
    r"(?P<port>\d+) \(tcp:"
)
"""A plain door listening (the telnets door is L{telnets_port}'s)."""

SERVER_GRACE = 15.0
"""SIGTERM to SIGKILL for the server (it gives its users 5 s)."""

NAMES = ("alice", "bob", "carol", "olivia", "mike", "emil", "lola", "pierre")
"""Honest users' nicks are these with their number: letters that have
look-alikes in other scripts, C{l} and C{o} that digits pass for, an C{m}."""

_CYRILLIC = dict(a="\u0430", e="\u0435", o="\u043e", c="\u0441", p="\u0440", i="\u0456")
"""Latin letters and their Cyrillic twins."""
_LATIN = {"l": "1", "o": "0"}
"""Letters and the digits that pass for them."""

LOOKS = ": it looks like"
"""How a refusal says whom a nick looks like."""

TELNET_NICK_ERRORS = (
    ("is taken", "nick-taken"),
    ("is reserved", "nick-reserved"),
    ("cannot be a nick", "nick-invalid"),
    ("!!! slow down", "rate-limited"),
)
"""A telnet refusal of C{/nick}, and the web door's code for it."""

RESERVED_LOOKALIKES = ("\u0430dmin", "S\u0435rver", "\u0391DMIN", "r00t")
"""Look-alikes of reserved names (Cyrillic a, Cyrillic e, Greek alpha,
zeros)."""

ATTACKS = ("iac", "ping", "resume", "rooms", "lookalike", "slow", "tls")
"""The kinds of attack, as C{--attacks} names them."""

FLOOD_CHUNK = 16384
"""Bytes a flooder writes at once."""

IAC_DO = b"".join(bytes([IAC, DO, n % 40]) for n in range(FLOOD_CHUNK // 3))
"""16 KiB of C{IAC DO x}: each asks the server to turn an option on."""

GOODBYE = re.compile(rb"\*\*\* Goodbye \(([^)\r\n]*)\)")
REFUSED = re.compile(rb"!!! ((?:too many|the server)[^;\r\n]*)")
LEFT = re.compile(
    rb"\*\*\* \S+ \((telnet|web)\) (?:quit \(([^)\r\n]*)\)|(lost connection))"
)
"""What the lobby sees when someone leaves: door, quit reason or C{lost}."""


def lookalikes(nick: str) -> list[str]:
    """
    Nicks that a reader could take for C{nick}: one letter at a time
    swapped for its Cyrillic twin, C{1} or C{I} for C{l}, C{0} for C{o},
    C{rn} for C{m}, and the nick in capitals.
    """
    found: list[str] = []
    for i, letter in enumerate(nick):
        for twin in (_CYRILLIC.get(letter), _LATIN.get(letter)):
            if twin is not None:
                found.append(nick[:i] + twin + nick[i + 1 :])
        if letter == "l":
            found.append(nick[:i] + "I" + nick[i + 1 :])
    found += [nick.replace("m", "rn"), nick.upper()]
    return [name for name in dict.fromkeys(found) if name != nick]


def percentile(values: list[float], share: float) -> float | None:
    """The value below which C{share} of the sorted C{values} lie."""
    if not values:
        return None
    return round(values[min(len(values) - 1, int(len(values) * share))], 2)


# -- the server's memory and CPU -------------------------------------------


@dataclass
class Usage:
    """
    A process's resident memory (KiB) and CPU time (s), sampled.

    @ivar samples: (seconds since the start, RSS KiB, CPU seconds).
    @ivar marks: Named instants, as samples.
    """

    pid: int
    every: float
    samples: list[tuple[float, int, float]] = field(default_factory=list)
    marks: dict[str, tuple[float, int, float]] = field(default_factory=dict)
    _started: float = field(default_factory=time.monotonic)

    def sample(self) -> tuple[float, int, float] | None:
        """Take one sample now (C{None} once the process is gone)."""
        rss, cpu = rss_kib(self.pid), cpu_seconds(self.pid)
        if rss is None or cpu is None:
            return None
        taken = (round(time.monotonic() - self._started, 2), rss, cpu)
        self.samples.append(taken)
        return taken

    def mark(self, name: str) -> None:
        """
        Remember this instant as C{name}.

        @raise RuntimeError: The process is gone.
        """
        taken = self.sample()
        if taken is None:
            raise RuntimeError(f"the server (PID {self.pid}) is gone at {name!r}")
        self.marks[name] = taken

    async def run(self) -> None:
        """Sample every C{every} seconds until cancelled."""
        while True:
            self.sample()
            await asyncio.sleep(self.every)

    def between(self, start: str, end: str) -> dict[str, Any]:
        """
        Peak RSS and CPU used from mark C{start} to mark C{end}.
        """
        (t0, _, cpu0), (t1, _, cpu1) = self.marks[start], self.marks[end]
        inside = [rss for t, rss, _ in self.samples if t0 <= t <= t1]
        seconds = max(t1 - t0, 1e-9)
        return {
            "seconds": round(seconds, 1),
            "rss_peak_kib": max(inside),
            "cpu_s": round(cpu1 - cpu0, 2),
            "cpu_pct_of_one_core": round(100 * (cpu1 - cpu0) / seconds, 1),
        }

    def rss_at(self, name: str) -> int:
        """The RSS at mark C{name}."""
        return self.marks[name][1]

    def series(self, step: float) -> list[tuple[float, int, float]]:
        """The samples, about one per C{step} seconds (CPU rounded)."""
        kept: list[tuple[float, int, float]] = []
        for t, rss, cpu in self.samples:
            if not kept or t - kept[-1][0] >= step:
                kept.append((t, rss, round(cpu, 2)))
        return kept


def mib(kib: int | None) -> str:
    """KiB as MiB, for people."""
    return "?" if kib is None else f"{kib / 1024:.1f} MiB"


# -- the admin door ----------------------------------------------------------


async def counters(port: int) -> dict[str, Any]:
    """
    The C{tchat_*} counters and gauges of the admin door's C{/metrics}: a
    number for each unlabelled one, a dict by label values for the others.
    """
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 5)
    try:
        writer.write(
            f"GET /metrics HTTP/1.0\r\nHost: {HOST}:{port}\r\n\r\n".encode("ascii")
        )
        answer = await asyncio.wait_for(reader.read(4 << 20), 10)
    finally:
        writer.close()
    found: dict[str, Any] = {}
    body = answer.partition(b"\r\n\r\n")[2].decode("utf-8", "replace")
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            name = sample.name
            if not name.startswith("tchat_") or "_bucket" in name:
                continue
            value = round(sample.value, 3)
            if sample.labels:
                label = ",".join(sample.labels.values())
                found.setdefault(name, {})[label] = value
            else:
                found[name] = value
    return found


# -- raw attackers -----------------------------------------------------------


@dataclass
class Raw:
    """
    What the attackers of one kind that use bare sockets did and met.

    @ivar outcomes: How each connection ended, from the attacker's side: the
        goodbye line, close frame or refusal it found when it finally read,
        else how its sending ended.
    @ivar cut_after_s: Seconds from connect to the end of each connection
        the server cut.
    """

    connections: int = 0
    bytes_sent: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    cut_after_s: list[float] = field(default_factory=list)
    skipped_markers: int = 0

    def report(self) -> dict[str, Any]:
        cut = sorted(self.cut_after_s)
        return {
            "connections": self.connections,
            "kib_sent": round(self.bytes_sent / 1024),
            "outcomes": dict(self.outcomes.most_common()),
            "cut_after_s": {
                "min": percentile(cut, 0.0),
                "median": percentile(cut, 0.5),
                "max": percentile(cut, 1.0),
            },
            "skipped_markers": self.skipped_markers,
        }


def describe_end(data: bytes, door: str, ended: str) -> str:
    """
    How a raw connection ended: what the server said last (a goodbye, a
    close frame, a refusal), else C{ended}.
    """
    if door == "web":
        frames = []
        with contextlib.suppress(ValueError):
            frames = FrameReader().feed(data)
        for frame in frames:
            if frame.opcode == 0x8:
                code, reason = frame.close_code()
                return f"close {code}: {reason}"
        return ended
    found = REFUSED.search(data) or GOODBYE.search(data)
    if found is not None:
        kind = "refused" if found.re is REFUSED else "goodbye"
        return f"{kind}: {found.group(1).decode('utf-8', 'replace')}"
    return ended


async def read_rest(sock: socket.socket, seconds: float, most: int = 8 << 20) -> bytes:
    """
    Read what the server sent (at most C{most} bytes) until it closes,
    resets or C{seconds} pass.
    """
    loop = asyncio.get_running_loop()
    data = bytearray()
    deadline = time.monotonic() + seconds
    while len(data) < most and (left := deadline - time.monotonic()) > 0:
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), left)
        except (OSError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _ended(why: OSError) -> str:
    name = errno.errorcode.get(why.errno or 0, type(why).__name__)
    return f"cut while sending ({name})"


# -- the run -----------------------------------------------------------------


@dataclass
class Tallies:
    """Everything the attackers that use the chat protocol counted."""

    resume_connections: int = 0
    resume_frames: int = 0
    resume_bytes_sent: int = 0
    resume_bytes_received: int = 0
    resume_resumed: int = 0
    resume_history: int = 0
    resume_errors: Counter[str] = field(default_factory=Counter)
    resume_closes: Counter[str] = field(default_factory=Counter)
    rooms_created: int = 0
    rooms_requests: int = 0
    rooms_answers: int = 0
    rooms_bytes: int = 0
    rooms_refusals: Counter[str] = field(default_factory=Counter)
    nick_attempts: int = 0
    nick_outcomes: Counter[str] = field(default_factory=Counter)
    nick_taken: list[str] = field(default_factory=list)
    lobby_saw: Counter[str] = field(default_factory=Counter)
    observer_lost: bool = False


class Siege(Soak):
    """
    One siege: L{Soak}'s honest users and slow readers, and the attacks.
    """

    def __init__(self, args: argparse.Namespace, server: Server, tls_port: int):
        super().__init__(
            argparse.Namespace(clients=args.honest, seed=args.seed, drain=args.drain),
            SoakServer(server.process, server.ports),
        )
        self.options = args
        self.tls_port = tls_port
        self.rooms = max(2, args.honest // ROOM_SIZE)
        self.raw: dict[str, Raw] = {}
        self.tallies = Tallies()
        self.nicks: list[str] = []
        self._named = 0

    def count(self, base: int) -> int:
        """How many attackers of a kind there are at this C{--scale}."""
        scale: float = self.options.scale
        return max(1, round(base * scale))

    def addresses(self, kind: int, count: int) -> list[str]:
        """The C{count} addresses of attack kind number C{kind}."""
        return [loopback(kind * 16 + n, first=250) for n in range(count)]

    async def join(self, conn: Conn, room: str) -> None:
        """
        Move a client from the lobby to C{room} (as L{Soak.join}), and take
        the next nick of L{NAMES}.
        """
        await super().join(conn, room)
        name = f"{NAMES[self._named % len(NAMES)]}{self._named}"
        self._named += 1
        if isinstance(conn, TelnetConn):
            conn.say(f"/nick {name}")
        elif isinstance(conn, WebConn):
            conn.send({"type": "nick", "name": name})

    def honest_rooms(self) -> list[str]:
        """The honest users' rooms."""
        return [self.room_of(n) for n in range(self.rooms)]

    async def linger(self, conn: Conn, extra: float = 0.0) -> None:
        """
        Wait until C{extra} seconds after the attacks end (C{stop_at} moves
        when they start), or until C{conn} ends.
        """
        while conn.open and (left := self.stop_at + extra - time.monotonic()) > 0:
            await conn.ended(min(left, 1.0))

    # -- the lobby's observer --------------------------------------------

    async def observer(self, ready: asyncio.Event) -> None:
        """
        A quiet telnet user in C{#lobby}: learns the honest users' nicks
        from C{/who} of their rooms, then counts why people leave the lobby.
        """
        answers: dict[str, asyncio.Future[bytes]] = {}
        tally = self.tallies

        def on_line(line: bytes, now_ns: int) -> None:
            left = LEFT.search(line)
            if left is not None and self.chatting and self.running:
                door, reason, lost = (g.decode() if g else None for g in left.groups())
                tally.lobby_saw[f"{door}: {reason or lost}"] += 1
            for room, answer in answers.items():
                if line.startswith(f"*** {room} (".encode()) and not answer.done():
                    answer.set_result(line)

        conn = TelnetConn(on_line)
        try:
            if not await self.connect(conn, "telnet", self.addresses(15, 1)[0]):
                raise RuntimeError("the observer could not connect")
            conn.say("/color off")
            for room in self.honest_rooms():
                answers[room] = asyncio.get_running_loop().create_future()
                conn.say(f"/who {room}")
                line = await asyncio.wait_for(answers[room], 10)
                members = line.split(b": ", 1)[1].decode("utf-8", "replace")
                self.nicks += [m.rsplit(" (", 1)[0] for m in members.split(", ")]
        finally:
            ready.set()
        await self.linger(conn, extra=1.0)
        tally.observer_lost = not conn.open
        conn.close()

    # -- floods and non-readers (bare sockets) ---------------------------

    async def raw_open(self, bind: str, port: int, small: bool) -> socket.socket | None:
        """
        A non-blocking socket from C{bind} to C{port} on 127.0.0.1; with
        C{small}, a receive buffer as a client that reads nothing leaves it
        and Ethernet-sized segments (not loopback's 64 KiB).
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if small:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1460)
        try:
            sock.bind((bind, 0))
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(loop.sock_connect(sock, (HOST, port)), 10)
        except (OSError, TimeoutError):
            sock.close()
            return None
        return sock

    async def raw_connections(
        self, tally: Raw, bind: str, port: int, small: bool
    ) -> AsyncIterator[socket.socket]:
        """
        Connections from C{bind} to C{port} (see L{raw_open}), one after
        another until the end; each is closed when the next is asked for,
        which comes a second later (two after a connection that failed).
        """
        while self.running:
            sock = await self.raw_open(bind, port, small)
            if sock is None:
                tally.outcomes["could not connect"] += 1
                await asyncio.sleep(2)
                continue
            tally.connections += 1
            try:
                yield sock
            finally:
                sock.close()
            await asyncio.sleep(1)

    async def upgrade(self, sock: socket.socket, rng: random.Random) -> bytes:
        """
        Ask for a WebSocket and read the answer's head (byte by byte, so
        nothing after it is read).

        @return: The head, or what came before the server closed.
        """
        loop = asyncio.get_running_loop()
        port = self.server.ports["web"]
        await loop.sock_sendall(sock, ws_upgrade(HOST, port, ws_key(rng)))
        head = b""
        deadline = time.monotonic() + 10
        while not head.endswith(b"\r\n\r\n") and len(head) < 8192:
            byte = await asyncio.wait_for(
                loop.sock_recv(sock, 1), max(0.01, deadline - time.monotonic())
            )
            if not byte:
                break
            head += byte
        return head

    async def pour(
        self,
        sock: socket.socket,
        make: Callable[[int], bytes],
        pause: float,
        until: float,
        tally: Raw,
    ) -> str:
        """
        Send C{make(n)} for n = 0, 1, ... every C{pause} seconds, reading
        nothing, until the server cuts the connection or C{until}.

        @return: How the sending ended.
        """
        loop = asyncio.get_running_loop()
        n = 0
        while (left := until - time.monotonic()) > 0:
            data = make(n)
            n += 1
            try:
                await asyncio.wait_for(loop.sock_sendall(sock, data), left)
            except TimeoutError:
                break
            except OSError as e:
                return _ended(e)
            tally.bytes_sent += len(data)
            await asyncio.sleep(pause)
        return "still open when it stopped"

    async def raw_attacker(
        self,
        kind: str,
        door: str,
        bind: str,
        make: Callable[[int], bytes],
        pause: float,
        round_s: float,
    ) -> None:
        """
        Over and over until the end: connect to C{door} from C{bind} (with
        a small receive buffer), send C{make(n)} every C{pause} seconds for
        at most C{round_s} seconds, never reading; then read what came and
        note how it ended.
        """
        tally = self.raw.setdefault(kind, Raw())
        rng = random.Random(self.rng.getrandbits(64))
        port = self.server.ports[door]
        async for sock in self.raw_connections(tally, bind, port, small=True):
            opened = time.monotonic()
            try:
                if door == "web":
                    status = http_status(await self.upgrade(sock, rng))
                    if status != 101:
                        rest = await read_rest(sock, 2.0)
                        text = rest.split(b"\r\n", 1)[0].decode("utf-8", "replace")
                        tally.outcomes[f"http {status}: {text[:80]}"] += 1
                        continue
                until = min(self.stop_at, opened + round_s)
                ended = await self.pour(sock, make, pause, until, tally)
                if ended != "still open when it stopped":
                    tally.cut_after_s.append(time.monotonic() - opened)
                rest = await read_rest(sock, 3.0)
                tally.skipped_markers += rest.count(b"lines skipped")
                tally.outcomes[describe_end(rest, door, ended)] += 1
            except (OSError, TimeoutError) as e:
                tally.outcomes[f"error: {type(e).__name__}"] += 1

    def flood_pause(self) -> float:
        """Seconds between a flooder's writes (C{--flood-mbps})."""
        rate = self.options.flood_mbps
        return FLOOD_CHUNK / (rate * 2**20) if rate > 0 else 0.0

    def iac_flooder(self, bind: str) -> Coroutine[Any, Any, None]:
        """C{IAC DO x} in bulk to the telnet door, never reading."""
        chunk = IAC_DO
        return self.raw_attacker(
            "iac_flood", "telnet", bind, lambda n: chunk, self.flood_pause(), 10.0
        )

    def ping_flooder(self, bind: str) -> Coroutine[Any, Any, None]:
        """WebSocket pings in bulk, never reading."""
        mask = random.Random(self.rng.getrandbits(64)).randbytes(4)
        ping = ws_frame(b"p" * 125, OP_PING, mask=mask)
        chunk = ping * (FLOOD_CHUNK // len(ping))
        return self.raw_attacker(
            "ping_flood", "web", bind, lambda n: chunk, self.flood_pause(), 10.0
        )

    def rooms_nonreader(self, bind: str, door: str) -> Coroutine[Any, Any, None]:
        """
        C{/rooms N} four times a second, for the whole run, never reading.
        """
        mask = random.Random(self.rng.getrandbits(64)).randbytes(4)

        def ask(n: int) -> bytes:
            page = n % 3 + 1
            if door == "telnet":
                return f"/rooms {page}\r\n".encode()
            request = json.dumps({"type": "rooms", "page": page}).encode()
            return ws_frame(request, mask=mask)

        return self.raw_attacker(f"rooms_nonreader_{door}", door, bind, ask, 0.25, 1e9)

    async def stalled(self, bind: str) -> None:
        """
        A TCP connection to the telnets door that never starts its TLS
        handshake, held until the end; opened again a second after the
        server closes it.
        """
        tally = self.raw.setdefault("stalled_tls", Raw())
        loop = asyncio.get_running_loop()
        async for sock in self.raw_connections(tally, bind, self.tls_port, small=False):
            opened = time.monotonic()
            left = max(0.01, self.stop_at - opened)
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 1), left)
                ended = "closed" if not data else "the server wrote"
            except TimeoutError:
                tally.outcomes["still open when it stopped"] += 1
                continue
            except OSError as e:
                ended = f"reset ({errno.errorcode.get(e.errno or 0, '?')})"
            after = time.monotonic() - opened
            tally.cut_after_s.append(after)
            when = "at once" if after < 1 else f"after {after:.0f} s"
            tally.outcomes[f"{ended} {when}"] += 1

    # -- resume-join flood -----------------------------------------------

    async def resume_flooder(self, slot: int, bind: str) -> None:
        """
        Connections of 15 s each sending, twice a second, a C{resume} frame
        naming 100 rooms: the honest rooms (from id 0), then rooms of its
        own.
        """
        tally = self.tallies
        rng = random.Random(self.rng.getrandbits(64))
        generation = 0

        def on_json(message: dict[str, Any], now_ns: int) -> None:
            kind = message.get("type")
            if kind == "resumed":
                tally.resume_resumed += 1
            elif kind == "usermsg" and message.get("history"):
                tally.resume_history += 1
            elif kind == "error":
                tally.resume_errors[str(message.get("code"))] += 1

        while self.running:
            generation += 1
            conn = WebConn(self.server.ports["web"], rng, on_json)
            if not await self.connect(conn, "web", bind):
                await asyncio.sleep(2)
                continue
            tally.resume_connections += 1
            rooms = dict.fromkeys(self.honest_rooms(), 0)
            for k in range(100 - len(rooms)):
                rooms[f"#rj{slot}-{generation}-{k}"] = 0
            frame = {"type": "resume", "rooms": rooms}
            size = len(json.dumps(frame))
            ends = min(self.stop_at, time.monotonic() + 15)
            while conn.open and time.monotonic() < ends:
                conn.send(frame)
                tally.resume_frames += 1
                tally.resume_bytes_sent += size
                await asyncio.sleep(0.5)
            tally.resume_bytes_received += conn.received
            if not conn.open:
                tally.resume_closes[f"{conn.close_code}: {conn.close_reason}"] += 1
            conn.close()
            await asyncio.sleep(1)

    # -- /rooms amplification --------------------------------------------

    async def room_creator(self, index: int, bind: str) -> None:
        """
        Join 19 rooms, five commands a second (within the message rate and
        the joins a minute), and stay in them, reading, until the end.
        """
        conn = TelnetConn()
        if not await self.connect(conn, "telnet", bind):
            self.tallies.rooms_refusals["creator could not connect"] += 1
            return
        for k in range(19):
            conn.say(f"/join #many{index}-{k}")
            self.tallies.rooms_created += 1
            await asyncio.sleep(0.2)
        await self.linger(conn)
        conn.close()

    async def rooms_asker(self, bind: str, door: str) -> None:
        """
        Ask for C{/rooms 1}, C{2}, C{3}... four times a second until the
        end, reading every answer.
        """
        tally = self.tallies

        def on_line(line: bytes, now_ns: int) -> None:
            if line.startswith(b"*** Rooms") or line.startswith(b"!!! there are"):
                tally.rooms_answers += 1

        def on_json(message: dict[str, Any], now_ns: int) -> None:
            if message.get("event") == "rooms" or message.get("type") == "error":
                tally.rooms_answers += 1

        rng = random.Random(self.rng.getrandbits(64))
        conn: Conn = (
            TelnetConn(on_line)
            if door == "telnet"
            else WebConn(self.server.ports["web"], rng, on_json)
        )
        if not await self.connect(conn, door, bind):
            tally.rooms_refusals[f"{door} asker could not connect"] += 1
            return
        n = 0
        while self.running and conn.open:
            page = n % 3 + 1
            n += 1
            if isinstance(conn, TelnetConn):
                conn.say(f"/rooms {page}")
            elif isinstance(conn, WebConn):
                conn.send({"type": "rooms", "page": page})
            tally.rooms_requests += 1
            await asyncio.sleep(0.25)
        tally.rooms_bytes += conn.received
        if not conn.open:
            tally.rooms_refusals[f"{door} asker cut"] += 1
        conn.close()

    # -- look-alike nicks ------------------------------------------------

    async def impostor(self, bind: str, door: str) -> None:
        """
        Three times a second, try to take a look-alike of an honest user's
        nick (or of a reserved name), and count how it is refused.
        """
        tally = self.tallies
        rng = random.Random(self.rng.getrandbits(64))
        me = [""]
        tried: list[str] = []

        def noted(outcome: str) -> None:
            tally.nick_outcomes[outcome] += 1
            if outcome == "taken" and tried:
                # A look-alike got through: the honest user was still on.
                tally.nick_taken.append(tried[-1])

        def on_line(line: bytes, now_ns: int) -> None:
            text = line.decode("utf-8", "replace")
            if text.startswith("!!! "):
                for words, code in TELNET_NICK_ERRORS:
                    if words in text:
                        noted(
                            f"refused: {code}{' (look-alike)' if LOOKS in text else ''}"
                        )
            elif "*** you are now known as " in text:
                noted("taken")

        def on_json(message: dict[str, Any], now_ns: int) -> None:
            kind, event = message.get("type"), message.get("event")
            if kind == "error":
                text = str(message.get("message"))
                code = str(message.get("code"))
                noted(f"refused: {code}{' (look-alike)' if LOOKS in text else ''}")
            elif event == "welcome":
                me[0] = str(message.get("name"))
            elif event == "nick" and message.get("name") == me[0]:
                me[0] = str(message.get("new_name"))
                noted("taken")

        conn: Conn = (
            TelnetConn(on_line)
            if door == "telnet"
            else WebConn(self.server.ports["web"], rng, on_json)
        )
        if not await self.connect(conn, door, bind):
            tally.nick_outcomes["could not connect"] += 1
            return
        targets = [name for nick in self.nicks for name in lookalikes(nick)]
        targets += RESERVED_LOOKALIKES
        while self.running and conn.open and targets:
            name = rng.choice(targets)
            tried.append(name)
            if isinstance(conn, TelnetConn):
                conn.say(f"/nick {name}")
            elif isinstance(conn, WebConn):
                conn.send({"type": "nick", "name": name})
            tally.nick_attempts += 1
            await asyncio.sleep(1 / 3)
        conn.close()

    # -- all of it -------------------------------------------------------

    def attacks(self) -> list[Coroutine[Any, Any, None]]:
        """The attackers of the kinds C{--attacks} names, ready to start."""
        two = ("telnet", "web")
        iac, ping, resume, _, asker, impostor, stall = (
            self.addresses(kind, 4) for kind in range(7)
        )

        def rooms(n: int) -> Coroutine[Any, Any, None]:
            # Three in five read the answers; two never read.
            if n % 5 < 3:
                return self.rooms_asker(asker[0], two[n % 2])
            return self.rooms_nonreader(asker[1], two[n % 2])

        def slow(n: int) -> Coroutine[Any, Any, None]:
            return self.slow_reader(self.options.honest + n, two[n % 2], n % 4 < 2)

        kinds: dict[str, tuple[int, Callable[[int], Coroutine[Any, Any, None]]]] = {
            "iac": (4, lambda n: self.iac_flooder(iac[n % 2])),
            "ping": (4, lambda n: self.ping_flooder(ping[n % 2])),
            "resume": (6, lambda n: self.resume_flooder(n, resume[n % 3])),
            "rooms": (10, rooms),
            "lookalike": (4, lambda n: self.impostor(impostor[n % 2], two[n % 2])),
            "slow": (10, slow),
            "tls": (100, lambda n: self.stalled(stall[n % 4])),
        }
        return [
            make(n)
            for kind in self.options.attacks
            for base, make in [kinds[kind]]
            for n in range(self.count(base))
        ]

    async def siege(self, usage: Usage) -> dict[str, Any]:
        """Set up, attack for C{--seconds} beside the honest users, settle."""
        args = self.options
        started = time.monotonic()
        # Set up: honest users join their rooms; the creators make rooms.
        self.stop_at = started + 120 + args.seconds
        tasks: list[asyncio.Task[None]] = []
        ready: list[asyncio.Event] = []
        for index in range(args.honest):
            event = asyncio.Event()
            ready.append(event)
            door = ("telnet", "web")[index % 2]
            tasks.append(asyncio.create_task(self.honest_user(index, door, event)))
            await asyncio.sleep(0.01)
        creators = self.addresses(3, 1)[0]
        for index in range(self.count(12) if "rooms" in args.attacks else 0):
            tasks.append(asyncio.create_task(self.room_creator(index, creators)))
        async with asyncio.timeout(90):
            await asyncio.gather(*(event.wait() for event in ready))
        # Room creators need 4 s for their 19 joins.
        await asyncio.sleep(max(0.0, started + 5 - time.monotonic()))
        seen = asyncio.Event()
        tasks.append(asyncio.create_task(self.observer(seen)))
        async with asyncio.timeout(30):
            await seen.wait()
        set_up_s = time.monotonic() - started
        # The attacks, beside the honest chat.
        usage.mark("before")
        self.stop_at = time.monotonic() + args.seconds
        self.chatting = True
        tasks += [asyncio.create_task(attack) for attack in self.attacks()]
        await asyncio.sleep(max(0.0, self.stop_at - time.monotonic()))
        usage.mark("attacks_end")
        async with asyncio.timeout(args.drain + 60):
            await asyncio.gather(*tasks)
        usage.mark("drained")
        await asyncio.sleep(args.settle)
        usage.mark("after")
        metrics = await counters(self.server.ports["admin"])
        return self.figures(usage, metrics, set_up_s)

    def figures(
        self, usage: Usage, metrics: dict[str, Any], set_up_s: float
    ) -> dict[str, Any]:
        """The run's figures, as the JSON line prints them."""
        d, t = self.delivery, self.tallies
        latencies = sorted(d.latencies_ms)
        missing = d.missing(self.honest)
        expected = d.expected(self.honest)
        complete = (
            missing == 0
            and d.duplicates == 0
            and d.reordered == 0
            and not self.tally.honest_lost
            and len(self.honest) == self.options.honest
        )
        attacks = usage.between("before", "attacks_end")
        generator = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "scenario": "siege",
            "seconds": self.options.seconds,
            "seed": self.options.seed,
            "scale": self.options.scale,
            "flood_mbps": self.options.flood_mbps,
            "set_up_s": round(set_up_s, 1),
            "server": {
                "rss_kib": {
                    "start": usage.samples[0][1],
                    "before": usage.rss_at("before"),
                    "peak": attacks["rss_peak_kib"],
                    "peak_with_drain": usage.between("before", "drained")[
                        "rss_peak_kib"
                    ],
                    "after": usage.rss_at("after"),
                    "after_s": self.options.settle,
                },
                "cpu_attacks": attacks,
                "cpu_total_s": round(usage.marks["after"][2], 2),
                "series": usage.series(2.0),
            },
            "generator_cpu_s": round(generator.ru_utime + generator.ru_stime, 1),
            "honest": {
                "users": self.options.honest,
                "joined": len(self.honest),
                "rooms": self.rooms,
                "nicks": len(self.nicks),
                "sent": sum(d.sent.values()),
                "expected_deliveries": expected,
                "delivered": len(latencies),
                "missing": missing,
                "duplicates": d.duplicates,
                "reordered": d.reordered,
                "wrong_room": d.wrong_room,
                "delivery_pct": round(100 * (expected - missing) / expected, 3)
                if expected
                else None,
                "complete": complete,
                "lost": self.tally.honest_lost[:20],
                "latency_ms": {
                    "p50": percentile(latencies, 0.50),
                    "p90": percentile(latencies, 0.90),
                    "p99": percentile(latencies, 0.99),
                    "max": percentile(latencies, 1.0),
                },
            },
            "attacks": self.attack_report(),
            "attacks_run": self.options.attacks,
            "lobby_saw_leave": dict(t.lobby_saw.most_common()),
            "connects": self.tally.connects,
            "connect_failures": self.tally.connect_failures,
            "refusals": dict(self.tally.refusals),
            "metrics": {
                name: metrics.get(name)
                for name in (
                    "tchat_rate_limited_total",
                    "tchat_dropped_total",
                    "tchat_slow_consumer_disconnects_total",
                    "tchat_connections_total",
                    "tchat_rooms",
                )
            },
            "observer_lost": t.observer_lost,
        }

    def attack_report(self) -> dict[str, Any]:
        """What each attack did and met."""
        t = self.tallies
        raw = {kind: tally.report() for kind, tally in sorted(self.raw.items())}
        return {
            **raw,
            "resume_flood": {
                "connections": t.resume_connections,
                "frames": t.resume_frames,
                "kib_sent": round(t.resume_bytes_sent / 1024),
                "kib_received": round(t.resume_bytes_received / 1024),
                "resumed_frames": t.resume_resumed,
                "history_messages": t.resume_history,
                "errors": dict(t.resume_errors.most_common()),
                "closed_by_server": dict(t.resume_closes),
            },
            "rooms": {
                "creators": self.count(12),
                "joins_asked": t.rooms_created,
                "requests": t.rooms_requests,
                "answers": t.rooms_answers,
                "bytes_per_answer": round(t.rooms_bytes / t.rooms_answers)
                if t.rooms_answers
                else None,
                "problems": dict(t.rooms_refusals),
            },
            "lookalike_nicks": {
                "targets": len(self.nicks),
                "attempts": t.nick_attempts,
                "outcomes": dict(t.nick_outcomes.most_common()),
                "taken": t.nick_taken[:20],
            },
            "slow_readers": {
                "count": self.count(10),
                "closes": dict(self.tally.slow_closed),
                "skipped_markers": self.tally.slow_skipped_markers,
                "catch_ups": self.tally.slow_catch_ups,
            },
        }


def checks(report: dict[str, Any]) -> dict[str, bool]:
    """The run's pass/fail checks."""
    return {
        "honest_delivery_complete": report["honest"]["complete"],
        "no_lookalike_taken": not report["attacks"]["lookalike_nicks"]["taken"],
        "server_ran_to_the_end": report.get("server_exit") in (0, None)
        and report["server"]["rss_kib"]["after"] > 0,
        "no_tracebacks": not report["server_problems"],
        "observer_stayed": not report["observer_lost"],
    }


SERVER_SAID = re.compile(
    r"(closing \S+ \((?:telnet|web)\)|refused a connection)(?: from \S+)?: (.*)"
    r"|(closing a TLS connection whose handshake did not finish)"
    r"|dropping connection to peer \S+ with abort=\w+: ([^(]*)"
)
"""The server's log lines about ending or refusing a connection, and why."""


@dataclass
class Watched(Server):
    """
    A L{Server} that keeps every log line that shows a bug, and counts
    the reasons it gives for closing and refusing connections.
    """

    problems: list[str] = field(default_factory=list)
    closes: Counter[str] = field(default_factory=Counter)

    def line(self, text: str) -> None:
        super().line(text)
        if PROBLEM.search(text) or "#critical]" in text:
            self.problems.append(text[:300])
        said = SERVER_SAID.search(text)
        if said is not None:
            who, why, tls, dropped = said.groups()
            if who is not None:
                who = re.sub(r"closing \S+", "closed", who).replace(" a connection", "")
                why = re.sub(r"\d+ KiB", "N KiB", why.split(";")[0])
                self.closes[f"{who}: {why}"] += 1
            else:
                self.closes[tls or f"web dropped: {dropped.strip()}"] += 1


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the server, besiege it, stop it by its PID; return the report."""
    with tempfile.TemporaryDirectory(prefix="tchat-siege-") as workdir:
        root = Path(workdir)
        (root / "tap.ini").write_text(TAP_INI)
        write_files(root)
        argv = [str(TWISTD), "-n", "--pidfile=", "tchat", "--config", "tap.ini"]
        for door, endpoint in (
            ("telnet", f"tcp:0:interface={HOST}"),
            ("telnet", ssl_string(root, 0)),
            ("web", f"tcp:0:interface={HOST}"),
            ("admin", f"tcp:0:interface={HOST}"),
        ):
            argv += [f"--{door}", endpoint]
        server = await Watched.spawn(
            argv, root, LISTENING, frozenset({"telnet", "web", "admin"})
        )
        assert isinstance(server, Watched)
        sampler: asyncio.Task[None] | None = None
        try:
            await server.wait_listening(30)
            tls_port = await telnets_port(server)
            usage = Usage(server.pid, args.sample)
            sampler = asyncio.create_task(usage.run())
            siege = Siege(args, server, tls_port)
            watchdog = 120 + args.seconds + args.drain + args.settle + 120
            report = await asyncio.wait_for(siege.siege(usage), watchdog)
        finally:
            if sampler is not None:
                sampler.cancel()
            status = await server.stop(SERVER_GRACE)
        report["server_exit"] = status
        report["server_problems"] = server.problems[:10]
        report["server_log_closes"] = dict(server.closes.most_common())
        report["checks"] = checks(report)
        report["ok"] = all(report["checks"].values())
        return report


async def telnets_port(server: Server) -> int:
    """The telnets door's port, from the server's log."""
    pattern = re.compile(rf"telnet door listening on {re.escape(HOST)}:(\d+) \(ssl:")
    for _ in range(100):
        for text in server.tail:
            found = pattern.search(text)
            if found:
                return int(found.group(1))
        await asyncio.sleep(0.1)
    raise RuntimeError("the telnets door did not say where it listens")


def summary(report: dict[str, Any]) -> str:
    """The report, for people."""
    s, h, a = report["server"], report["honest"], report["attacks"]
    rss, cpu = s["rss_kib"], s["cpu_attacks"]
    lat = h["latency_ms"]
    lines = [
        f"siege: {report['seconds']} s of attacks beside {h['joined']}/{h['users']} "
        f"honest users in {h['rooms']} rooms (scale {report['scale']}, "
        f"floods {report['flood_mbps'] or 'unpaced'} MiB/s each)",
        f"  server RSS: {mib(rss['start'])} at start, {mib(rss['before'])} before, "
        f"{mib(rss['peak'])} peak, {mib(rss['after'])} {rss['after_s']:g} s after",
        f"  server CPU during the attacks: {cpu['cpu_s']} s in {cpu['seconds']} s "
        f"= {cpu['cpu_pct_of_one_core']}% of one core; generator "
        f"{report['generator_cpu_s']} s",
        f"  honest: {h['sent']} sent, {h['delivered']} of {h['expected_deliveries']} "
        f"deliveries ({h['delivery_pct']}%), missing {h['missing']}, duplicates "
        f"{h['duplicates']}, reordered {h['reordered']}: "
        + ("complete, in order" if h["complete"] else f"INCOMPLETE {h['lost']}"),
        f"  latency ms: p50 {lat['p50']}, p90 {lat['p90']}, p99 {lat['p99']}, "
        f"max {lat['max']}",
    ]
    for kind in (
        "iac_flood",
        "ping_flood",
        "rooms_nonreader_telnet",
        "rooms_nonreader_web",
        "stalled_tls",
    ):
        if kind in a:
            k = a[kind]
            lines.append(
                f"  {kind}: {k['connections']} connections, {k['kib_sent']} KiB "
                f"sent; {k['outcomes']}"
            )
    r, rooms, n = a["resume_flood"], a["rooms"], a["lookalike_nicks"]
    lines += [
        f"  resume_flood: {r['frames']} frames ({r['kib_sent']} KiB) on "
        f"{r['connections']} connections; {r['resumed_frames']} resumed, "
        f"{r['history_messages']} history messages ({r['kib_received']} KiB); "
        f"errors {r['errors']}; closed {r['closed_by_server']}",
        f"  rooms: {report['metrics']['tchat_rooms']} rooms at the end; "
        f"{rooms['requests']} /rooms asked, {rooms['answers']} answered, "
        f"{rooms['bytes_per_answer']} bytes each; {rooms['problems']}",
        f"  look-alike nicks: {n['attempts']} tries at {n['targets']} nicks; "
        f"{n['outcomes']}",
        f"  slow readers: {a['slow_readers']}",
        f"  the lobby saw: {report['lobby_saw_leave']}",
        f"  the server logged: {report['server_log_closes']}",
        f"  metrics: {report['metrics']}",
        f"  checks: {report['checks']}",
    ]
    if report["server_problems"]:
        lines.append(f"  SERVER PROBLEMS: {report['server_problems']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked against its bounds."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--honest", type=int, default=100)
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiplies every attacker count"
    )
    parser.add_argument(
        "--flood-mbps",
        type=float,
        default=16.0,
        help="each flooder's pace in MiB/s (0: as fast as its socket takes)",
    )
    parser.add_argument(
        "--attacks",
        type=lambda text: [kind for kind in text.split(",") if kind],
        default=list(ATTACKS),
        help=f"which attacks, comma-separated (default: all of {','.join(ATTACKS)})",
    )
    parser.add_argument("--drain", type=float, default=5.0)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--sample", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=20261207)
    args = parser.parse_args(argv)
    if not (1 <= args.seconds <= 600 and 4 <= args.honest <= 1000):
        parser.error("bounded: --seconds 1..600, --honest 4..1000")
    if not (0.1 <= args.scale <= 10 and 0 <= args.flood_mbps <= 1000):
        parser.error("bounded: --scale 0.1..10, --flood-mbps 0..1000")
    if not (0 <= args.drain <= 60 and 0 <= args.settle <= 120):
        parser.error("bounded: --drain 0..60, --settle 0..120")
    if not set(args.attacks) <= set(ATTACKS):
        parser.error(f"--attacks: some of {','.join(ATTACKS)}")
    if not 0.1 <= args.sample <= 10:
        parser.error("bounded: --sample 0.1..10")
    return args


def report_run(
    run: Callable[[argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]],
    summary: Callable[[dict[str, Any]], str],
    args: argparse.Namespace,
) -> int:
    """
    Run C{run(args)} (SIGTERM cancels it, so that its C{finally} clauses
    stop what it started), print C{summary} of its report on stderr and
    the report as one JSON line on stdout.

    @return: The exit status: 0 if the report says C{ok}, else 1.
    """
    raise_fd_limit()
    found: list[dict[str, Any]] = []

    async def guarded_run() -> None:
        found.append(await run(args))

    asyncio.run(guarded(guarded_run()))
    report = found[0]
    print(summary(report), file=sys.stderr)
    print(json.dumps(report), flush=True)
    return 0 if report["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    """Run the siege; print the summary and the JSON line."""
    return report_run(run, summary, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
