# -*- test-case-name: tests.integration.test_siege -*-
"""
Soak: a real C{twistd -n tchat} on 127.0.0.1 with hundreds of clients on
both doors for minutes, as a busy evening would bring them, and the odd
bad one among them.

    python bench/soak.py --minutes 10 --clients 300
    python bench/soak.py --minutes 0.5        # a short run, for CI

The server runs with the default C{[limits]} except C{exempt =} (empty), so
that the per-address limits apply to loopback clients too; each client
connects from an address of its own in 127.0.10.1 onwards.  Of the
clients, half use telnet and half the WebSocket (a minimal RFC 6455
client, with masking, from C{bench/siege_clients.py}):

  - about 85% are honest: they sit in one of several rooms of about 30
    and say something every 3 to 7 seconds: a payload with their id, a
    sequence number and the monotonic send time;
  - 10% are slow readers: they stop reading while asking for the room's
    history four times a second; half of them catch up every 60 to 120 seconds,
    the others never do, and come back when the server closes them;
  - 5% disconnect abruptly: every few seconds they write half a line (or
    half a frame), then reset the connection (C{SO_LINGER} 0) and connect
    again;
  - one flooder sends as fast as its socket takes it into the first room,
    and connects again a few seconds after the server closes it.

It prints a readable summary on stderr and one JSON line on stdout: the
honest users' delivery (every message of every honest sender received by
every other honest user of the room, in order, none doubled), latency
percentiles (send to receive, both ends in this process), what the slow
readers and the flooder met, the slow-consumer disconnects the admin
door's C{/metrics} counts, the abrupt disconnects made, and the server's
RSS sampled every C{--sample} seconds.

Bounded: at most 60 minutes and 2,000 clients, every wait has a timeout,
and a watchdog ends the run two minutes after its planned end.  It binds
and connects on 127.0.0.0/8 only, and stops only the server it started,
by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import random
import re
import signal
import socket
import struct
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.siege_clients import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameReader,
    honest_text,
    http_status,
    loopback,
    parse_honest,
    ws_close,
    ws_frame,
    ws_key,
    ws_upgrade,
)

HOST = "127.0.0.1"

TAP_INI = """\
# Written by bench/soak.py.
[server]
name = tchat
default_room = #lobby
reconnect_grace = 0

[telnet]
listen = tcp:0:interface=127.0.0.1

[web]
listen = tcp:0:interface=127.0.0.1

[admin]
listen = tcp:0:interface=127.0.0.1

[limits]
# Loopback counts like any other address: every client has its own.
exempt =
"""

LISTENING = re.compile(rb"(telnet|web|admin) door listening on 127\.0\.0\.1:(\d+)")

ROOM_SIZE = 30
"""About how many clients share a room."""


def rss_kib(pid: int) -> int:
    """
    A process's resident memory, in KiB (0 once it is gone).
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# -- bookkeeping -------------------------------------------------------------


@dataclass
class Delivery:
    """
    What honest users sent and received.

    @ivar sent: Messages sent, by sender id.
    @ivar room: Each honest user's room, by id.
    @ivar latencies_ms: Send-to-receive times of every honest delivery.
    """

    sent: Counter[int] = field(default_factory=Counter)
    room: dict[int, str] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    wrong_room: int = 0
    duplicates: int = 0
    reordered: int = 0
    _next: dict[tuple[int, int], int] = field(default_factory=dict)
    _gaps: Counter[tuple[int, int]] = field(default_factory=Counter)

    def received(self, receiver: int, text: str, now_ns: int) -> None:
        """
        An honest user got a message; count it if it is an honest payload.
        """
        found = parse_honest(text)
        if found is None:
            return
        sender, seq, sent_ns = found
        if sender == receiver:
            # A web user's own message comes back as its acknowledgement.
            return
        if self.room.get(sender) != self.room.get(receiver):
            self.wrong_room += 1
            return
        self.latencies_ms.append((now_ns - sent_ns) / 1e6)
        key = (receiver, sender)
        expected = self._next.get(key, 0)
        if seq == expected:
            self._next[key] = seq + 1
        elif seq > expected:
            # Some are missing (or will come late: reordered).
            self._gaps[key] += seq - expected
            self._next[key] = seq + 1
        elif self._gaps[key] > 0:
            self._gaps[key] -= 1
            self.reordered += 1
        else:
            self.duplicates += 1

    def missing(self, receivers: list[int]) -> int:
        """
        Messages an honest user of the room should have had and did not.
        """
        total = 0
        members: dict[str, list[int]] = {}
        for user in receivers:
            members.setdefault(self.room[user], []).append(user)
        for receiver in receivers:
            for sender in members[self.room[receiver]]:
                if sender == receiver:
                    continue
                key = (receiver, sender)
                total += self._gaps[key] + self.sent[sender] - self._next.get(key, 0)
        return total

    def expected(self, receivers: list[int]) -> int:
        """
        How many deliveries there should have been.
        """
        by_room = Counter(self.room[u] for u in receivers)
        return sum(self.sent[u] * (by_room[self.room[u]] - 1) for u in receivers)


@dataclass
class Tally:
    """
    Everything else the run counts.
    """

    connects: int = 0
    connect_failures: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    abrupt_disconnects: int = 0
    honest_lost: list[str] = field(default_factory=list)
    slow_closed: Counter[str] = field(default_factory=Counter)
    slow_skipped_markers: int = 0
    slow_catch_ups: int = 0
    flood_connections: int = 0
    flood_slow_down_notices: int = 0
    flood_disconnects: int = 0
    flood_lines_written: int = 0


# -- raw clients -------------------------------------------------------------


class Conn(asyncio.Protocol):
    """
    One raw connection to a door: a transport, flow control for writers,
    and a future for its end.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.received = 0
        self._writable = asyncio.Event()
        self._writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.data(data, time.monotonic_ns())

    def data(self, data: bytes, now_ns: int) -> None:
        """Subclasses parse what arrived."""

    def connection_lost(self, exc: Exception | None) -> None:
        self._writable.set()
        if not self.lost.done():
            self.lost.set_result(None)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    @property
    def open(self) -> bool:
        """Whether the connection is up."""
        return self.transport is not None and not self.lost.done()

    def write(self, data: bytes) -> None:
        """Send bytes, if the connection is still up."""
        if self.open:
            assert self.transport is not None
            self.transport.write(data)

    async def writable(self, timeout: float = 10.0) -> bool:
        """
        Wait until the transport takes more (or the connection is gone).
        """
        try:
            await asyncio.wait_for(self._writable.wait(), timeout)
        except TimeoutError:
            return False
        return self.open

    def pause(self) -> None:
        """Stop reading from the socket."""
        if self.open:
            assert self.transport is not None
            self.transport.pause_reading()

    def resume(self) -> None:
        """Read from the socket again."""
        if self.open:
            assert self.transport is not None
            self.transport.resume_reading()

    def close(self) -> None:
        """Close gracefully."""
        if self.transport is not None:
            self.transport.close()

    def reset(self) -> None:
        """
        End the connection with a TCP reset, as a crashed client would.
        """
        if self.transport is None:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        self.transport.abort()

    async def ended(self, timeout: float) -> bool:
        """Wait (at most C{timeout} s) for the connection to end."""
        try:
            await asyncio.wait_for(asyncio.shield(self.lost), timeout)
        except TimeoutError:
            return False
        return True


class TelnetConn(Conn):
    """
    A telnet client: lines, and what they say.
    """

    def __init__(self, on_line: Callable[[bytes, int], None] | None = None) -> None:
        super().__init__()
        self._buffer = b""
        self._on_line = on_line
        self.welcomed = asyncio.get_running_loop().create_future()
        self.lines_seen: Counter[str] = Counter()

    def data(self, data: bytes, now_ns: int) -> None:
        *lines, self._buffer = (self._buffer + data).split(b"\r\n")
        for line in lines:
            if line.startswith(b"!!! ") or line.startswith(b"*** "):
                self._notice(line)
            if self._on_line is not None:
                self._on_line(line, now_ns)

    def _notice(self, line: bytes) -> None:
        if line.startswith(b"*** You are ") and not self.welcomed.done():
            self.welcomed.set_result(True)
        elif line.startswith(b"!!! too many") or line.startswith(b"!!! the server"):
            self.lines_seen["refused"] += 1
            if not self.welcomed.done():
                self.welcomed.set_result(False)
        elif line.startswith(b"!!! slow down"):
            self.lines_seen["slow-down"] += 1
        elif line.startswith(b"*** Goodbye (flooding"):
            self.lines_seen["flooding"] += 1
        elif b"lines skipped" in line or b"line skipped" in line:
            self.lines_seen["skipped"] += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.welcomed.done():
            self.welcomed.set_result(False)
        super().connection_lost(exc)

    def say(self, text: str) -> None:
        """Send one line."""
        self.write(text.encode("utf-8") + b"\r\n")


class WebConn(Conn):
    """
    A WebSocket client: the upgrade, then JSON text frames; answers pings,
    and answers a close frame and closes.
    """

    def __init__(
        self,
        port: int,
        rng: random.Random,
        on_json: Callable[[dict[str, Any], int], None] | None = None,
    ) -> None:
        super().__init__()
        self.port = port
        self.rng = rng
        self._key = ws_key(rng)
        self._head = b""
        self.status: int | None = None
        self.refusal = b""
        self._reader = FrameReader()
        self._on_json = on_json
        self.opened = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        self.close_reason = ""
        self.errors: Counter[str] = Counter()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.write(ws_upgrade(HOST, self.port, self._key))

    def data(self, data: bytes, now_ns: int) -> None:
        if self.status is None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = http_status(self._head) or 0
            data = self._head[end + 4 :]
            self._head = b""
            if self.status != 101:
                self.refusal = data
                if not self.opened.done():
                    self.opened.set_result(False)
                return
            self.opened.set_result(True)
        elif self.status != 101:
            self.refusal += data
            return
        for frame in self._reader.feed(data):
            if frame.opcode == OP_TEXT:
                message = json.loads(frame.payload)
                if message.get("type") == "error":
                    self.errors[str(message.get("code"))] += 1
                if self._on_json is not None:
                    self._on_json(message, now_ns)
            elif frame.opcode == OP_PING:
                self.write(ws_frame(frame.payload, OP_PONG, mask=self.rng.randbytes(4)))
            elif frame.opcode == OP_CLOSE:
                self.close_code, self.close_reason = frame.close_code()
                self.write(ws_close(1000))
                self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_result(False)
        super().connection_lost(exc)

    def send(self, message: dict[str, Any]) -> None:
        """Send one JSON text frame, masked."""
        self.write(
            ws_frame(json.dumps(message).encode("utf-8"), mask=self.rng.randbytes(4))
        )


# -- the run -----------------------------------------------------------------


@dataclass
class Server:
    """The server this run started: its process, door ports and bad log lines."""

    process: asyncio.subprocess.Process
    ports: dict[str, int]
    log: list[bytes] = field(default_factory=list)


async def start_server(workdir: str) -> Server:
    """
    Start C{twistd -n tchat} in C{workdir} and wait for its three doors.
    """
    Path(workdir, "tap.ini").write_text(TAP_INI)
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    process = await asyncio.create_subprocess_exec(
        twistd,
        "-n",
        "--pidfile=",
        "tchat",
        "--config",
        "tap.ini",
        cwd=workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    server = Server(process, {})
    async with asyncio.timeout(30):
        while len(server.ports) < 3:
            line = await process.stdout.readline()
            if not line:
                raise RuntimeError(
                    "the server exited before listening:\n"
                    + b"".join(server.log).decode("utf-8", "replace")
                )
            server.log.append(line)
            found = LISTENING.search(line)
            if found:
                server.ports[found.group(1).decode()] = int(found.group(2))
    return server


async def drain_log(server: Server) -> None:
    """
    Keep reading the server's log (so that it never blocks on a full pipe),
    keeping only the lines that show a bug.
    """
    stdout = server.process.stdout
    assert stdout is not None
    while True:
        line = await stdout.readline()
        if not line:
            return
        if b"Traceback" in line or b"Unhandled" in line or b"#critical]" in line:
            server.log.append(line)


async def scrape(port: int, name: str) -> float:
    """
    One unlabelled value from the admin door's C{/metrics}.
    """
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)
    try:
        writer.write(
            f"GET /metrics HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        body = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    found = re.search(rf"^{re.escape(name)} (\S+)$", body.decode(), re.MULTILINE)
    return float(found.group(1)) if found else 0.0


class Soak:
    """
    One soak run: the clients, what they do, and what they saw.
    """

    def __init__(self, args: argparse.Namespace, server: Server) -> None:
        self.args = args
        self.server = server
        self.rng = random.Random(args.seed)
        self.delivery = Delivery()
        self.tally = Tally()
        self.rooms = max(1, args.clients // ROOM_SIZE)
        self.stop_at = 0.0
        self.chatting = False
        self.honest: list[int] = []
        self.rss: list[tuple[float, int]] = []
        self._started = time.monotonic()
        self._next_address = 0

    def address(self) -> str:
        """
        A fresh client address: one per client, and one more for each
        reconnecting client's turn, spread over 127.0.10.0 onwards.
        """
        index = self._next_address
        self._next_address += 1
        return loopback(index % (240 * 254))

    def room_of(self, index: int) -> str:
        """The room of the client with this index."""
        return f"#soak-{index % self.rooms}"

    @property
    def running(self) -> bool:
        """Whether the chat phase is still on."""
        return time.monotonic() < self.stop_at

    async def connect(self, conn: Conn, door: str, bind: str) -> bool:
        """
        Connect C{conn} to a door from C{bind}, and wait for its welcome
        (telnet) or its upgrade (web).
        """
        loop = asyncio.get_running_loop()
        port = self.server.ports[door]
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: conn, HOST, port, local_addr=(bind, 0)),
                10,
            )
        except (OSError, TimeoutError):
            self.tally.connect_failures += 1
            return False
        self.tally.connects += 1
        if isinstance(conn, TelnetConn):
            ready = conn.welcomed
        elif isinstance(conn, WebConn):
            ready = conn.opened
        else:
            return True
        try:
            ok = bool(await asyncio.wait_for(asyncio.shield(ready), 10))
        except TimeoutError:
            ok = False
        if not ok:
            if isinstance(conn, WebConn) and conn.status:
                self.tally.refusals[f"http {conn.status}"] += 1
            elif isinstance(conn, TelnetConn) and conn.lines_seen["refused"]:
                self.tally.refusals["telnet"] += 1
            conn.close()
        return ok

    async def join(self, conn: Conn, room: str) -> None:
        """
        Move a client from the lobby to C{room}.
        """
        if isinstance(conn, TelnetConn):
            conn.say(f"/join {room}")
            conn.say("/part #lobby")
        elif isinstance(conn, WebConn):
            conn.send({"type": "join", "room": room})
            conn.send({"type": "part", "room": "#lobby"})

    # -- honest users ----------------------------------------------------

    async def honest_user(self, index: int, door: str, ready: asyncio.Event) -> None:
        """
        Join a room, wait for the chat to start, then say something every
        3 to 7 seconds until the end.
        """
        rng = random.Random(self.rng.getrandbits(64))
        room = self.room_of(index)
        joined = asyncio.get_running_loop().create_future()

        def on_line(line: bytes, now_ns: int) -> None:
            if b"> honest " in line:
                self.delivery.received(index, line.decode("utf-8", "replace"), now_ns)
            elif line.endswith(f"*** you joined {room}".encode()) and not joined.done():
                joined.set_result(None)

        def on_json(message: dict[str, Any], now_ns: int) -> None:
            kind = message.get("type")
            if kind == "usermsg" and not message.get("history"):
                if message.get("room") == room:
                    self.delivery.received(index, str(message.get("message")), now_ns)
            elif (
                kind == "system"
                and message.get("event") == "join"
                and message.get("room") == room
                and message.get("name") == nick[0]
                and not joined.done()
            ):
                joined.set_result(None)
            elif kind == "system" and message.get("event") == "welcome":
                nick[0] = str(message.get("name"))

        nick = [""]
        conn: Conn = (
            TelnetConn(on_line)
            if door == "telnet"
            else WebConn(self.server.ports["web"], rng, on_json)
        )
        if not await self.connect(conn, door, self.address()):
            self.tally.honest_lost.append(f"{index}: could not connect")
            ready.set()
            return
        if isinstance(conn, TelnetConn):
            conn.say("/color off")
        await self.join(conn, room)
        try:
            await asyncio.wait_for(joined, 15)
        except TimeoutError:
            self.tally.honest_lost.append(f"{index}: could not join {room}")
            conn.close()
            ready.set()
            return
        self.delivery.room[index] = room
        self.honest.append(index)
        ready.set()
        while not self.chatting and self.running:
            await asyncio.sleep(0.1)
        seq = 0
        while self.running and conn.open:
            await asyncio.sleep(rng.uniform(3.0, 7.0))
            if not self.running or not conn.open:
                break
            text = honest_text(index, seq, time.monotonic_ns())
            if isinstance(conn, TelnetConn):
                conn.say(text)
            elif isinstance(conn, WebConn):
                conn.send(
                    {
                        "type": "message",
                        "message": text,
                        "room": room,
                        "client_id": f"h{index}-{seq}",
                    }
                )
            self.delivery.sent[index] += 1
            seq += 1
        if not conn.open and self.running:
            self.tally.honest_lost.append(f"{index}: disconnected by the server")
        # Stay connected (and reading) until the end of the drain.
        await conn.ended(max(0.0, self.stop_at - time.monotonic()) + self.args.drain)
        conn.close()

    # -- slow readers ----------------------------------------------------

    async def joined(self, door: str, rng: random.Random, room: str) -> Conn | None:
        """
        A new connection through C{door}, in C{room}; C{None} (after a
        pause) when the server would not take it.
        """
        conn: Conn = (
            TelnetConn() if door == "telnet" else WebConn(self.server.ports["web"], rng)
        )
        if not await self.connect(conn, door, self.address()):
            await asyncio.sleep(5)
            return None
        await self.join(conn, room)
        return conn

    async def slow_reader(self, index: int, door: str, catches_up: bool) -> None:
        """
        Join a room and stop reading, asking for its history four times a
        second (within the message rate); catch up every 60 to 120 s (or
        never); connect again when the server closes the connection.
        """
        rng = random.Random(self.rng.getrandbits(64))
        room = self.room_of(index)
        while self.running:
            conn = await self.joined(door, rng, room)
            if conn is None:
                continue
            stall_until = time.monotonic() + rng.uniform(60, 120)
            conn.pause()
            while self.running and conn.open:
                if isinstance(conn, TelnetConn):
                    conn.say("/history 200")
                elif isinstance(conn, WebConn):
                    conn.send({"type": "history", "room": room, "limit": 200})
                await asyncio.sleep(0.25)
                if catches_up and time.monotonic() > stall_until:
                    conn.resume()
                    self.tally.slow_catch_ups += 1
                    await asyncio.sleep(2.0)
                    conn.pause()
                    stall_until = time.monotonic() + rng.uniform(60, 120)
            if isinstance(conn, TelnetConn):
                self.tally.slow_skipped_markers += conn.lines_seen["skipped"]
            if not conn.open:
                why = (
                    f"web {conn.close_code}" if isinstance(conn, WebConn) else "telnet"
                )
                self.tally.slow_closed[why] += 1
            conn.close()
            await asyncio.sleep(rng.uniform(2, 5))

    # -- abrupt disconnects ----------------------------------------------

    async def abrupt(self, index: int, door: str) -> None:
        """
        Over and over: connect, join a room, say a line or two, then write
        half a line (or half a frame) and reset the connection.
        """
        rng = random.Random(self.rng.getrandbits(64))
        room = self.room_of(index)
        while self.running:
            conn = await self.joined(door, rng, room)
            if conn is None:
                continue
            await asyncio.sleep(rng.uniform(1, 4))
            if isinstance(conn, TelnetConn):
                conn.say(f"about to vanish {index}")
                conn.write(b"this line never ends because the cl")
            elif isinstance(conn, WebConn):
                conn.send({"type": "message", "message": f"about to vanish {index}"})
                frame = ws_frame(
                    json.dumps({"type": "message", "message": "x" * 500}).encode(),
                    mask=rng.randbytes(4),
                )
                conn.write(frame[: len(frame) // 2])
            # Let the half line leave before the reset.
            await conn.writable(5)
            await asyncio.sleep(0.2)
            conn.reset()
            self.tally.abrupt_disconnects += 1
            await asyncio.sleep(rng.uniform(1, 3))

    # -- the flooder -----------------------------------------------------

    async def flooder(self) -> None:
        """
        Flood the first room from telnet, as fast as the socket takes it;
        connect again 3 s after the server closes the connection.
        """
        line = b"flood " + b"z" * 200 + b"\r\n"
        bind = "127.0.9.1"
        while self.running:
            conn = TelnetConn()
            if not await self.connect(conn, "telnet", bind):
                await asyncio.sleep(5)
                continue
            self.tally.flood_connections += 1
            conn.say(f"/join {self.room_of(0)}")
            started = time.monotonic()
            while self.running and conn.open and time.monotonic() - started < 30:
                conn.write(line * 50)
                self.tally.flood_lines_written += 50
                if not await conn.writable(10):
                    break
                await asyncio.sleep(0)
            closed = await conn.ended(5)
            self.tally.flood_slow_down_notices += conn.lines_seen["slow-down"]
            if closed:
                self.tally.flood_disconnects += 1
            conn.close()
            await asyncio.sleep(3)

    # -- measuring -------------------------------------------------------

    async def sample_rss(self) -> None:
        """Sample the server's RSS every C{--sample} seconds, until cancelled."""
        pid = self.server.process.pid
        while True:
            self.rss.append((round(time.monotonic() - self._started, 1), rss_kib(pid)))
            await asyncio.sleep(self.args.sample)

    async def run(self) -> dict[str, Any]:
        """Connect everyone, let them chat for C{--minutes}, and report."""
        args = self.args
        count = args.clients
        slow = max(1, count // 10)
        abrupt = max(1, count // 20)
        honest = count - slow - abrupt - 1
        if honest < 2:
            raise SystemExit("too few clients for two honest users")
        duration = args.minutes * 60
        # Everything connects within the set-up time; the chat then runs
        # for the whole duration.
        self.stop_at = time.monotonic() + 60 + duration
        sampler = asyncio.create_task(self.sample_rss())
        tasks = []
        readiness = []
        semaphore = asyncio.Semaphore(50)

        async def paced(make: Callable[[], Coroutine[Any, Any, None]]) -> None:
            async with semaphore:
                task = asyncio.create_task(make())
                tasks.append(task)
                await asyncio.sleep(0.005)

        set_up_started = time.monotonic()
        for index in range(honest):
            door = "telnet" if index % 2 == 0 else "web"
            ready = asyncio.Event()
            readiness.append(ready)
            await paced(functools.partial(self.honest_user, index, door, ready))
        for ready in readiness:
            try:
                await asyncio.wait_for(
                    ready.wait(), max(1.0, 60 - (time.monotonic() - set_up_started))
                )
            except TimeoutError:
                break
        set_up_s = time.monotonic() - set_up_started
        # The chat starts now, and with it the bad ones.
        self.stop_at = time.monotonic() + duration
        self.chatting = True
        chat_started = time.monotonic()
        for n in range(slow):
            index = honest + n
            door = "telnet" if n % 2 == 0 else "web"
            await paced(functools.partial(self.slow_reader, index, door, n % 4 < 2))
        for n in range(abrupt):
            index = honest + slow + n
            door = "telnet" if n % 2 == 0 else "web"
            await paced(functools.partial(self.abrupt, index, door))
        tasks.append(asyncio.create_task(self.flooder()))
        await asyncio.gather(*tasks, return_exceptions=False)
        chat_s = time.monotonic() - chat_started
        slow_disconnects = await scrape(
            self.server.ports["admin"], "tchat_slow_consumer_disconnects_total"
        )
        sampler.cancel()
        self.rss.append(
            (
                round(time.monotonic() - self._started, 1),
                rss_kib(self.server.process.pid),
            )
        )
        return self.report(honest, slow, abrupt, set_up_s, chat_s, slow_disconnects)

    def report(
        self,
        honest: int,
        slow: int,
        abrupt: int,
        set_up_s: float,
        chat_s: float,
        slow_disconnects: float,
    ) -> dict[str, Any]:
        """The run's figures, as the JSON line prints them."""
        d, t = self.delivery, self.tally
        latencies = sorted(d.latencies_ms)

        def pct(p: float) -> float | None:
            if not latencies:
                return None
            return round(latencies[min(len(latencies) - 1, int(len(latencies) * p))], 2)

        missing = d.missing(self.honest)
        rss = [kib for _, kib in self.rss if kib]
        return {
            "scenario": "soak",
            "minutes": self.args.minutes,
            "clients": self.args.clients,
            "honest": honest,
            "honest_joined": len(self.honest),
            "slow_readers": slow,
            "abrupt": abrupt,
            "flooders": 1,
            "rooms": self.rooms,
            "set_up_s": round(set_up_s, 1),
            "chat_s": round(chat_s, 1),
            "honest_sent": sum(d.sent.values()),
            "honest_expected_deliveries": d.expected(self.honest),
            "honest_delivered": len(latencies),
            "honest_missing": missing,
            "honest_duplicates": d.duplicates,
            "honest_reordered": d.reordered,
            "honest_wrong_room": d.wrong_room,
            "honest_complete": missing == 0
            and d.duplicates == 0
            and d.reordered == 0
            and not t.honest_lost,
            "honest_lost": t.honest_lost[:20],
            "latency_ms": {
                "p50": pct(0.50),
                "p90": pct(0.90),
                "p99": pct(0.99),
                "max": round(latencies[-1], 2) if latencies else None,
            },
            "slow_consumer_disconnects": slow_disconnects,
            "slow_reader_closes": dict(t.slow_closed),
            "slow_reader_skipped_markers": t.slow_skipped_markers,
            "slow_reader_catch_ups": t.slow_catch_ups,
            "flood_connections": t.flood_connections,
            "flood_slow_down_notices": t.flood_slow_down_notices,
            "flood_disconnects": t.flood_disconnects,
            "flood_lines_written": t.flood_lines_written,
            "abrupt_disconnects": t.abrupt_disconnects,
            "connects": t.connects,
            "connect_failures": t.connect_failures,
            "refusals": dict(t.refusals),
            "server_rss_kib": {
                "min": min(rss) if rss else None,
                "max": max(rss) if rss else None,
                "last": rss[-1] if rss else None,
                "every_s": self.args.sample,
                "series": rss,
            },
            "server_problems": [
                line.decode("utf-8", "replace").strip()[:300]
                for line in self.server.log
                if b"Traceback" in line or b"Unhandled" in line or b"#critical]" in line
            ][:10],
            "python": sys.version.split()[0],
        }


def summary(report: dict[str, Any]) -> str:
    """
    The report, for people.
    """
    latency = report["latency_ms"]
    rss = report["server_rss_kib"]
    lines = [
        f"soak: {report['clients']} clients for {report['minutes']} min "
        f"({report['honest_joined']}/{report['honest']} honest in {report['rooms']} "
        f"rooms, {report['slow_readers']} slow readers, {report['abrupt']} abrupt, "
        "1 flooder)",
        f"  honest: {report['honest_sent']} sent, {report['honest_delivered']} of "
        f"{report['honest_expected_deliveries']} deliveries; missing "
        f"{report['honest_missing']}, duplicates {report['honest_duplicates']}, "
        f"reordered {report['honest_reordered']}: "
        + ("complete" if report["honest_complete"] else "INCOMPLETE"),
        f"  latency ms: p50 {latency['p50']}, p90 {latency['p90']}, "
        f"p99 {latency['p99']}, max {latency['max']}",
        f"  slow readers: {report['slow_consumer_disconnects']:g} slow-consumer "
        f"disconnects (/metrics), closes {report['slow_reader_closes']}, "
        f"{report['slow_reader_skipped_markers']} skipped-lines markers seen",
        f"  flooder: {report['flood_connections']} connections, "
        f"{report['flood_slow_down_notices']} slow-down notices, "
        f"{report['flood_disconnects']} disconnects",
        f"  abrupt disconnects: {report['abrupt_disconnects']}; connects "
        f"{report['connects']}, failures {report['connect_failures']}, refusals "
        f"{report['refusals']}",
        f"  server RSS KiB: min {rss['min']}, max {rss['max']}, last {rss['last']}",
    ]
    if report["server_problems"]:
        lines.append(f"  SERVER PROBLEMS: {report['server_problems']}")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    """Start the server, soak it, stop it (by its PID); return the report."""
    with tempfile.TemporaryDirectory(prefix="tchat-soak-") as workdir:
        server = await start_server(workdir)
        logging = asyncio.create_task(drain_log(server))
        try:
            soak = Soak(args, server)
            watchdog = args.minutes * 60 + 60 + args.drain + 120
            return await asyncio.wait_for(soak.run(), watchdog)
        finally:
            server.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(server.process.wait(), 15)
            except TimeoutError:
                server.process.kill()
                await server.process.wait()
            logging.cancel()


def raise_fd_limit() -> None:
    """
    Let this process (and the server, which inherits it) hold thousands of
    sockets.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument(
        "--sample", type=float, default=5.0, help="seconds between RSS samples"
    )
    parser.add_argument(
        "--drain", type=float, default=5.0, help="seconds to wait for deliveries"
    )
    parser.add_argument("--seed", type=int, default=20261121)
    args = parser.parse_args()
    if not (0 < args.minutes <= 60 and 10 <= args.clients <= 2000):
        parser.error("bounded: 0 < --minutes <= 60 and 10 <= --clients <= 2000")
    if not (0.5 <= args.sample <= 60 and 0 <= args.drain <= 60):
        parser.error("bounded: --sample 0.5..60 s, --drain 0..60 s")
    raise_fd_limit()
    result = asyncio.run(main(args))
    print(summary(result), file=sys.stderr)
    print(json.dumps(result))
