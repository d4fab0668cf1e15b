# -*- test-case-name: tests.test_limits -*-
"""
Limits that keep one client from hurting the others.

  - L{TokenBucket}: the rate limit behind messages, joins, nick changes and
    new connections.
  - L{Admission} and L{Gate}: who may open a connection at all (in total,
    per client address, per minute, and through the onion in aggregate),
    and TCP keepalive on every accepted socket.
  - L{OutputQueue}: a bounded queue of what a client has not read yet,
    driven by Twisted's producer/consumer machinery, so a slow reader
    costs bounded memory and never holds anyone else up.

The settings are C{[limits]} in C{tap.ini} (L{tchat.config.LimitsConfig}).
"""

from __future__ import annotations

import ipaddress
import socket
from collections import deque
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from twisted.internet import tcp
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IProtocol,
    IProtocolFactory,
    IPushProducer,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from tchat.config import LimitsConfig
from tchat.metrics import Metrics

_log = Logger()

#: Seconds a client sent off for breaking a limit (while it may still be
#: sending) gets to read its goodbye before its connection is cut.
GOODBYE_DRAIN = 5.0


class TokenBucket:
    """
    C{rate} tokens a second, up to C{burst} saved up.

    Starts full, so a newcomer's first C{burst} actions are never limited.
    """

    __slots__ = ("_stamp", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self._stamp = now

    def _refill(self, now: float) -> None:
        elapsed = now - self._stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self._stamp = now

    def take(self, now: float) -> bool:
        """
        Spend one token if there is one.

        @return: Whether the action is allowed.
        """
        self._refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def full(self, now: float) -> bool:
        """
        @return: Whether the bucket has refilled completely (its owner has
            been quiet for long enough).
        """
        self._refill(now)
        return self.tokens >= self.burst


def per_minute(count: int, now: float) -> TokenBucket:
    """
    A bucket allowing C{count} actions a minute, all of them at once.
    """
    return TokenBucket(count / 60.0, count, now)


@lru_cache(maxsize=4096)
def parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """
    A client's address as an IP address (an IPv4-mapped IPv6 address as
    the IPv4 one), parsed once per address; C{None} if it is none.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def exempt(host: str, networks: tuple[str, ...]) -> bool:
    """
    Is C{host} in one of C{networks} (C{[limits] exempt})?
    """
    address = parse_ip(host)
    if address is None:
        return False
    return any(address in parse_network(n) for n in networks)


@lru_cache(maxsize=1024)
def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """
    A network from C{[limits] exempt} or a ban, parsed once, not once per
    connection checked against it.
    """
    return ipaddress.ip_network(text, strict=False)


def plural(count: int, word: str) -> str:
    """C{1 connection}, C{2 connections}."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


class Admission:
    """
    Decides whether a new connection may come in, and counts the open ones.

    Clear-net connections are limited per client address (except addresses
    in C{[limits] exempt}); onion connections all come from the local tor,
    so they are limited in aggregate instead, and each one on its own by
    the per-connection limits.  All of them count towards the total.

    @ivar limits: The C{[limits]} settings in force.
    @ivar open: Open connections, in total.
    """

    # Per-minute buckets of addresses not seen for this long are forgotten.
    _FORGET_AFTER = 120.0

    def __init__(self, limits: LimitsConfig, clock: IReactorTime, metrics: Metrics):
        self.limits = limits
        self._clock = clock
        self._metrics = metrics
        self.open = 0
        self.onion_open = 0
        self._by_address: dict[str, int] = {}
        self._recent: dict[str, TokenBucket] = {}
        self._onion_recent = per_minute(limits.onion_connects_per_minute, 0.0)
        self._swept = clock.seconds()

    def reconfigure(self, limits: LimitsConfig) -> None:
        """
        Apply new C{[limits]}: counts stay, rates start afresh.
        """
        self.limits = limits
        self._recent.clear()
        self._onion_recent = per_minute(
            limits.onion_connects_per_minute, self._clock.seconds()
        )

    def admit(self, onion: bool, host: str | None) -> tuple[str | None, str | None]:
        """
        May a connection from C{host} come in?

        @param onion: Whether it came through an onion listener.
        @param host: The client's IP address; C{None} for unix sockets.
        @return: (refusal reason for the client or C{None}, the key it is
            counted under, to give back to L{release}).
        """
        limits, now = self.limits, self._clock.seconds()
        if limits.max_connections and self.open >= limits.max_connections:
            return self._refuse(
                "total",
                "the server is full "
                f"({plural(limits.max_connections, 'connection')}); "
                "try again in a minute",
            )
        if onion:
            if limits.onion_max_connections and (
                self.onion_open >= limits.onion_max_connections
            ):
                return self._refuse(
                    "onion-total",
                    "the onion service is full "
                    f"({plural(limits.onion_max_connections, 'connection')}); "
                    "try again in a minute",
                )
            if limits.onion_connects_per_minute and not self._onion_recent.take(now):
                return self._refuse(
                    "onion-rate",
                    "too many new connections through the onion service "
                    f"(over {limits.onion_connects_per_minute} a minute); "
                    "try again in a minute",
                )
            self.open += 1
            self.onion_open += 1
            return None, None
        key = host if host is not None and not exempt(host, limits.exempt) else None
        if key is not None:
            if limits.per_address and (
                self._by_address.get(key, 0) >= limits.per_address
            ):
                return self._refuse(
                    "per-address",
                    "too many connections from your address "
                    f"(limit {limits.per_address}); close one and try again",
                )
            if limits.connects_per_minute:
                self._sweep(now)
                bucket = self._recent.get(key)
                if bucket is None:
                    bucket = self._recent[key] = per_minute(
                        limits.connects_per_minute, now
                    )
                if not bucket.take(now):
                    return self._refuse(
                        "address-rate",
                        "too many new connections from your address "
                        f"(over {limits.connects_per_minute} a minute); "
                        "try again in a minute",
                    )
            self._by_address[key] = self._by_address.get(key, 0) + 1
        self.open += 1
        return None, key

    def release(self, onion: bool, key: str | None) -> None:
        """
        A connection L{admit} let in has closed.
        """
        self.open -= 1
        if onion:
            self.onion_open -= 1
        elif key is not None:
            left = self._by_address[key] - 1
            if left:
                self._by_address[key] = left
            else:
                del self._by_address[key]

    def _refuse(self, reason: str, text: str) -> tuple[str, None]:
        self._metrics.limit(f"connection-{reason}")
        return text, None

    def _sweep(self, now: float) -> None:
        """
        Forget per-minute buckets that have refilled, so that many distinct
        addresses cost memory only while they are active.
        """
        if now - self._swept < self._FORGET_AFTER:
            return
        self._swept = now
        for key in [k for k, b in self._recent.items() if b.full(now)]:
            del self._recent[key]


def set_keepalive(transport: object, idle: int) -> None:
    """
    Turn on TCP keepalive for an accepted connection, so that a peer that
    vanished (a half-open connection) is noticed within about C{idle} +
    60 seconds.

    @param transport: The connection's transport; under TLS, the TCP one
        is found below it.
    @param idle: Seconds of silence before the first probe.
    """
    while not hasattr(transport, "socket") and hasattr(transport, "transport"):
        transport = transport.transport
    if not ITCPTransport.providedBy(transport):
        return
    transport.setTcpKeepAlive(True)
    sock = getattr(transport, "socket", None)
    if sock is None or not hasattr(socket, "TCP_KEEPIDLE"):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 6)
    except OSError:
        pass


class _Refusal(Protocol):
    """
    Tells a refused client why, then closes.

    The write side is closed after the message, and what the client still
    sends is read and ignored, so it gets the whole message rather than a
    reset; a client that does not close within a few seconds is cut.
    """

    def __init__(self, message: bytes, clock: IReactorTime) -> None:
        self._message = message
        self._clock = clock

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self._message)
        transport = self.transport
        if not hasattr(transport, "socket"):
            # Under TLS: closing the TCP write side would cut the TLS
            # stream short, so close the whole connection after the write.
            transport.loseConnection()
            return
        transport.loseWriteConnection()  # type: ignore[attr-defined]
        self._cut = self._clock.callLater(5, self._abort)

    def _abort(self) -> None:
        transport = self.transport
        if transport is not None:
            abort = getattr(transport, "abortConnection", transport.loseConnection)
            abort()

    def connectionLost(self, reason: object = None) -> None:
        cut = getattr(self, "_cut", None)
        if cut is not None and cut.active():
            cut.cancel()


def line_refusal(reason: str) -> bytes:
    """How the telnet door refuses a connection."""
    return f"!!! {reason}\r\n".encode()


def http_refusal(reason: str) -> bytes:
    """How the web door refuses a connection: 503 with the reason."""
    body = f"{reason}\n".encode()
    return (
        b"HTTP/1.1 503 Service Unavailable\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Retry-After: 60\r\n"
        b"Connection: close\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


class _Admitted(ProtocolWrapper):
    """
    A connection the gate let in: gives its place back when it closes.
    """

    factory: Gate

    def __init__(self, factory: Gate, wrapped: IProtocol, key: str | None) -> None:
        super().__init__(factory, wrapped)  # type: ignore[arg-type]
        self._key = key

    def makeConnection(self, transport: object) -> None:
        keepalive = self.factory.admission.limits.tcp_keepalive
        if keepalive:
            set_keepalive(transport, keepalive)
        super().makeConnection(transport)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.admission.release(self.factory.onion, self._key)
        super().connectionLost(reason)


def unwrapped(transport: Any) -> Any:
    """
    The transport below the gate's wrapper, for a door's protocol to write
    to directly: no extra call per write, and Autobahn sees the real TLS
    transport.  Closing still passes the wrapper, which gives the
    connection's place back.
    """
    return transport.transport if isinstance(transport, _Admitted) else transport


class Gate(WrappingFactory):
    """
    Wraps one door's factory: each new connection is first checked by the
    shared L{Admission}; a refused one is told why in the door's own terms
    (C{refusal}) and closed.

    @ivar onion: Whether this door is an onion listener.
    """

    protocol = _Admitted

    def __init__(
        self,
        wrapped: IProtocolFactory,
        admission: Admission,
        clock: IReactorTime,
        refusal: Callable[[str], bytes],
        onion: bool = False,
    ) -> None:
        super().__init__(wrapped)
        self.admission = admission
        self.onion = onion
        self._clock = clock
        self._refusal = refusal
        self.noisy = False

    def buildProtocol(self, addr: IAddress | None) -> Any:
        host = getattr(addr, "host", None)
        reason, key = self.admission.admit(
            self.onion, host if isinstance(host, str) else None
        )
        if reason is not None:
            _log.info(
                "refused a connection from {host}: {reason}", host=host, reason=reason
            )
            return _Refusal(self._refusal(reason), self._clock)
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None:
            self.admission.release(self.onion, key)
            return None
        return _Admitted(self, wrapped, key)


class Batcher:
    """
    Gathers what each client is sent during one turn of the reactor, after
    its first write of the turn, and writes it in one piece at the start of
    the next turn.

    A chat line to a room is one write per member.  Twisted would buffer
    each and come back for every socket through the poller (two
    C{epoll_ctl} calls and a dispatch per socket per turn); instead a
    client's first line of a turn goes to its socket at once (see
    L{socket_writer}), which gives a quiet server the latency of an
    immediate write, and the lines after it in that turn are joined and
    sent once, which gives a busy one the throughput of batching.

    @ivar turn: Counts the turns (flushes); a queue remembers the turn of
        its last immediate write.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._dirty: list[OutputQueue] = []
        self._call: IDelayedCall | None = None
        self.turn = 0

    def add(self, queue: OutputQueue) -> None:
        """
        C{queue} has a batch to write: write it at the start of next turn.
        """
        self._dirty.append(queue)
        self.touch()

    def touch(self) -> None:
        """
        Make sure this turn ends with a L{flush}: a queue that wrote at once
        batches its next writes only until then.
        """
        if self._call is None:
            self._call = self._clock.callLater(0, self.flush)

    def flush(self) -> None:
        """
        Write every batch gathered so far, and start a new turn.
        """
        self._call = None
        self.turn += 1
        dirty, self._dirty = self._dirty, []
        for queue in dirty:
            try:
                queue.flush()
            except Exception:
                _log.failure("writing to a client")


def socket_writer(transport: Any) -> Callable[[bytes], None]:
    """
    C{transport.write}, except that on a plain TCP connection whose own
    buffer is empty the bytes go to the socket at once: one C{send} call
    instead of a trip through the poller.  What the socket does not take
    goes to C{transport.write} as usual, so Twisted's buffering, its flow
    control (it pauses the producer) and its error handling apply from
    there on.  TLS connections and other transports just use C{write}.
    """
    if not isinstance(transport, tcp.Connection) or transport.TLS:
        return transport.write  # type: ignore[no-any-return]
    return _SocketWriter(transport)


class _SocketWriter:
    """
    L{socket_writer} for one TCP connection (a small object rather than a
    closure: every connection has one).
    """

    __slots__ = ("_transport",)

    def __init__(self, transport: tcp.Connection) -> None:
        self._transport = transport

    def __call__(self, data: bytes) -> None:
        transport: Any = self._transport
        if (
            not transport._tempDataLen
            and transport.offset == len(transport.dataBuffer)
            and transport.connected
            and not transport.disconnecting
        ):
            try:
                sent = transport.socket.send(data)
            except OSError:
                # EAGAIN, or an error Twisted reports when it writes.
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)


@implementer(IPushProducer)
class OutputQueue:
    """
    What one client has not been able to take yet.

    Registered as a streaming producer with the client's transport: while
    the socket keeps up, bytes go straight to it (with a L{Batcher}, the
    first of each turn at once and the rest gathered until the turn ends);
    once the transport's own buffer is full it pauses this queue, and
    bytes wait here, up to C{limit}, until it resumes.  Past the limit,
    C{overflow} decides (drop the oldest, or close the connection).

    L{push} is on every delivery's path, so the common case (the client
    keeps up) is a flag test, a turn comparison and a write or a list
    append; the deque is only made
    for a client that falls behind.

    @ivar size: The total size in bytes of what waits.
    @ivar paused_since: When the transport paused us; C{None} when it is
        taking data.
    @ivar flowing: Whether pushed bytes go out without waiting: not
        paused, not stopped, and nothing waiting.
    """

    __slots__ = (
        "_batch",
        "_batcher",
        "_clock",
        "_overflow",
        "_pending",
        "_send",
        "_turn",
        "flowing",
        "limit",
        "paused_since",
        "size",
        "stopped",
    )

    def __init__(
        self,
        send: Callable[[bytes], None],
        limit: int,
        overflow: Callable[[OutputQueue], None],
        clock: IReactorTime,
        batcher: Batcher | None = None,
    ) -> None:
        self._send = send
        self.limit = limit
        self._overflow = overflow
        self._clock = clock
        self._batcher = batcher
        self._batch: list[bytes] | None = None
        self._turn = -1
        self._pending: deque[bytes] | None = None
        self.size = 0
        self.paused_since: float | None = None
        self.stopped = False
        self.flowing = True

    @classmethod
    def for_transport(
        cls,
        transport: Any,
        limit: int,
        overflow: Callable[[OutputQueue], None],
        clock: IReactorTime,
        batcher: Batcher | None,
    ) -> OutputQueue:
        """
        The queue of a connection: batched and written straight to its
        socket when there is a L{Batcher} (a running server), written
        through C{transport.write} one by one otherwise (tests that look
        at a transport right after a delivery).
        """
        send = transport.write if batcher is None else socket_writer(transport)
        return cls(send, limit, overflow, clock, batcher)

    @property
    def pending(self) -> Sequence[bytes]:
        """What waits for the transport to resume, oldest first."""
        return self._pending if self._pending is not None else ()

    def push(self, data: bytes) -> None:
        """
        Send C{data} now (or with the rest of this turn's), or queue it
        while the client is behind.
        """
        if self.flowing:
            batcher = self._batcher
            if batcher is None:
                self._send(data)
            elif self._batch is not None:
                self._batch.append(data)
            elif self._turn != batcher.turn:
                # The client's first write this turn goes out at once (a
                # quiet server's latency); later ones wait for the turn's
                # end and go out together (a busy one's throughput).
                self._turn = batcher.turn
                batcher.touch()
                try:
                    self._send(data)
                except Exception:
                    _log.failure("writing to a client")
            else:
                self._batch = [data]
                batcher.add(self)
            return
        if self.stopped:
            return
        pending = self._pending
        if self.paused_since is None and not pending:
            self.flowing = True
            self.push(data)
            return
        if pending is None:
            pending = self._pending = deque()
        pending.append(data)
        self.size += len(data)
        if self.size > self.limit:
            self._overflow(self)

    def flush(self) -> None:
        """
        Write this turn's batch (the L{Batcher} calls this).
        """
        batch, self._batch = self._batch, None
        if batch and not self.stopped:
            self._send(batch[0] if len(batch) == 1 else b"".join(batch))

    def put_first(self, data: bytes) -> None:
        """
        Queue C{data} ahead of everything waiting (a marker standing for
        what L{drop_oldest} dropped).
        """
        if self._pending is None:
            self._pending = deque()
        self._pending.appendleft(data)
        self.size += len(data)
        self.flowing = False

    def drop_oldest(self, down_to: int) -> list[bytes]:
        """
        Drop the oldest items until at most C{down_to} bytes wait.

        @return: What was dropped.
        """
        dropped = []
        pending = self._pending
        while pending and self.size > down_to:
            data = pending.popleft()
            self.size -= len(data)
            dropped.append(data)
        return dropped

    def stuck_for(self) -> float:
        """
        @return: Seconds the client has taken nothing for (0 when it is
            reading).
        """
        if self.paused_since is None:
            return 0.0
        return self._clock.seconds() - self.paused_since

    def unsent(self) -> list[bytes]:
        """
        Stop, and return everything not written yet, in order: what a
        connection about to close still owes its client.
        """
        left = [*(self._batch or ()), *self.pending]
        self.stopProducing()
        return left

    def clear(self) -> None:
        """Forget everything waiting."""
        self._batch = None
        self._pending = None
        self.size = 0

    # -- IPushProducer ---------------------------------------------------

    def pauseProducing(self) -> None:
        self.flowing = False
        if self.paused_since is None:
            self.paused_since = self._clock.seconds()
        batch, self._batch = self._batch, None
        if batch:
            # Gathered before the pause: first in line when it ends.
            self.put_first(b"".join(batch))

    def resumeProducing(self) -> None:
        self.paused_since = None
        pending = self._pending
        while pending and self.paused_since is None and not self.stopped:
            data = pending.popleft()
            self.size -= len(data)
            self._send(data)
        if not pending and self.paused_since is None and not self.stopped:
            # Caught up: free the deque (most clients never need one again).
            self._pending = None
            self.flowing = True

    def stopProducing(self) -> None:
        self.stopped = True
        self.flowing = False
        self.clear()
