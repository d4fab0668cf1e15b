# -*- test-case-name: tests.test_gate -*-
"""
Admission of new connections: who may open a connection at all.

  - L{Admission}: counts open connections and decides on new ones, in
    total, per client address, per minute, and through the onion in
    aggregate.
  - L{Gate}: wraps each door's factory; a connection L{Admission} refuses
    is told why in the door's own terms (L{line_refusal},
    L{http_refusal}) and closed, and one it lets in gives its place back
    when it closes.
  - L{set_keepalive}: TCP keepalive on every accepted socket.

The settings are C{[limits]} in C{tap.ini} (L{tchat.config.LimitsConfig});
the rate limits themselves are L{tchat.limits}.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import (
    IAddress,
    IHandshakeListener,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from tchat.config import LimitsConfig
from tchat.limits import TokenBucket, exempt, per_minute, plural
from tchat.metrics import Metrics

_log = Logger()


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


@implementer(IHandshakeListener)
class _Admitted(ProtocolWrapper):
    """
    A connection the gate let in: gives its place back when it closes.

    Under TLS, the end of the handshake is passed on to the door's
    protocol, which may wait for it (the telnet door does: its user
    arrives only then).
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

    def handshakeCompleted(self) -> None:
        """See L{IHandshakeListener}."""
        wrapped = self.wrappedProtocol
        if IHandshakeListener.providedBy(wrapped):
            wrapped.handshakeCompleted()

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
