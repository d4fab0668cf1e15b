# -*- test-case-name: tests.test_telnet -*-
"""
The telnet door: a line-based protocol for C{telnet}, C{nc}, C{socat} and
PuTTY users.

Telnet negotiation is Twisted's (L{twisted.conch.telnet.TelnetTransport}):
every option a client offers or asks for is refused, so clients stay in
plain line mode, and no negotiation byte ever reaches the chat. This module
only splits lines, decodes them, and renders hub events as text.
"""

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, cast

from twisted.conch.telnet import (
    DO,
    DONT,
    IAC,
    WILL,
    WONT,
    TelnetProtocol,
    TelnetTransport,
)
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHandshakeListener,
    IReactorTime,
    ISSLTransport,
    ITCPTransport,
)
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from tchat import events
from tchat.commands import CommandError, parse_line
from tchat.endpoints import client_address
from tchat.gate import line_refusal, unwrapped
from tchat.hub import ChatFactory
from tchat.interfaces import IParticipant
from tchat.model import User
from tchat.output import GOODBYE_DRAIN, OutputQueue, client_queue
from tchat.terminal import _MESSAGE_KEYS, Variant, _lines, encode, variant
from tchat.text import describe_span

_log = Logger()


@implementer(IParticipant)
class TelnetChatProtocol(LineReceiver, TelnetProtocol):
    """
    One telnet user.

    Lines end in CR LF, LF or CR alone; a line longer than C{MAX_LENGTH}
    bytes is refused with an error and skipped up to its end, and the
    connection carries on.

    @ivar user: The hub's record of this user, once connected.
    """

    delimiter = b"\n"

    # One per connection: what it and its Twisted bases keep goes in slots,
    # not in a dict per connection.
    __slots__ = (
        "_buffer",
        "_busyReceiving",
        "_discarding",
        "_resume",
        "_send",
        "connected",
        "door",
        "dropped",
        "factory",
        "hub",
        "transport",
        "user",
    )

    def __init__(self, hub: ChatFactory, door: str) -> None:
        # The bases' class-level defaults, which the slots hide.
        self.factory = None
        self.connected = 0
        self.transport = None
        self._buffer = b""
        self._busyReceiving = False
        # Where delivered bytes go: the connection's output queue.
        self._send: Callable[[bytes], None] | None = None
        self.hub = hub
        self.door = door
        self.user: User | None = None
        self._discarding = False
        self._resume = False
        # Set when the server, not the client, ends the connection.
        self.dropped = False

    @property
    def MAX_LENGTH(self) -> int:  # type: ignore[override]
        """
        The longest line accepted, in bytes (LineReceiver's name): C{[limits]
        max_line}, read for every line so that a reload applies at once.
        """
        return self.hub.limits.max_line

    def connectionMade(self) -> None:
        transport = self.transport
        if isinstance(transport, _TelnetTransport):
            queue = transport.queue
            self._send = queue.push if queue is not None else transport.write_wire
        self.hub.connect(self)

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self.user is not None:
            clean = reason is None or reason.check(ConnectionDone) is not None
            message = reason.getErrorMessage() if reason else "connection closed"
            self.hub.disconnect(self.user, message, clean=clean and not self.dropped)

    def dataReceived(self, data: bytes) -> None:
        # TelnetTransport has turned CR LF into LF and CR NUL into CR; a bare
        # CR (some raw clients) ends a line too.
        data = data.replace(b"\r", b"\n")
        if self._discarding:
            end = data.find(b"\n")
            if end < 0:
                return
            self._discarding = False
            data = data[end + 1 :]
        super().dataReceived(data)
        # LineReceiver stops its loop after lineLengthExceeded; carry on with
        # the lines that followed the long one.
        while self._resume:
            self._resume = False
            super().dataReceived(b"")

    def lineLengthExceeded(self, line: bytes) -> None:
        if self.user is not None and self.hub.received(self.user):
            self._error(
                "line-too-long",
                f"line too long (over {self.MAX_LENGTH} bytes); it was dropped",
            )
        end = line.find(self.delimiter)
        if end < 0:
            # The rest of this line is still to come: skip up to its end.
            self._discarding = True
        else:
            self._buffer = line[end + 1 :]
            self._resume = True

    def lineReceived(self, line: bytes) -> None:
        if self.user is None or not self.hub.received(self.user):
            # Lines that followed /quit in the same read, or over the limit.
            return
        text = line.decode("utf-8", errors="replace")
        try:
            command = parse_line(text)
        except CommandError as e:
            self._error(e.code, e.text)
            return
        if command is not None:
            self.hub.execute(self.user, command)

    def _error(self, code: events.ErrorCode, text: str) -> None:
        self.deliver(events.Error(code, text), events.Renderings())

    # -- IParticipant ------------------------------------------------------

    def attached(self, user: object) -> None:
        assert user is None or isinstance(user, User)
        self.user = user

    def deliver(self, event: object, renderings: object) -> None:
        user, send = self.user, self._send
        if user is None or send is None:
            return
        key: tuple[str, Variant]
        if event.__class__ is events.RoomMessage:
            # The hot path, every chat line to every member: what variant()
            # decides, without its calls and with keys made once.
            if event.nick == user.nick:
                return
            current = user.current
            key = _MESSAGE_KEYS[user.show_colours][
                current is None or current.name != event.room
            ]
        else:
            shown = variant(event, user)  # type: ignore[arg-type]
            if shown is None:
                return
            key = ("telnet", shown)
        assert isinstance(renderings, events.Renderings)
        wire = renderings.cache.get(key)
        if wire is None:
            wire = renderings.get(key, encode, event, key[1])
        send(wire)

    @property
    def address(self) -> str | None:
        """See L{IParticipant.address}."""
        return client_address(self.door, self.transport)

    @property
    def encrypted(self) -> bool:
        """
        Whether the connection is encrypted (a TLS listener, or the onion
        service): a password sent over plain telnet crosses the network
        readable, and its sender is told so.
        """
        if self.door == "onion":
            return True
        telnet: Any = self.transport
        return ISSLTransport.providedBy(getattr(telnet, "transport", None))

    def close(self, reason: str, why: str = "normal") -> None:
        transport = self.transport
        if isinstance(transport, _TelnetTransport):
            transport.loseConnection(drain=why == "policy")
        elif transport is not None:
            transport.loseConnection()

    def abort(self) -> None:
        transport = self.transport
        if transport is not None:
            assert isinstance(transport, _TelnetTransport)
            tcp = transport.transport
            if ITCPTransport.providedBy(tcp):
                tcp.abortConnection()
            elif tcp is not None:
                tcp.loseConnection()


def _plain(data: bytes) -> bytes | None:
    """
    What conch's telnet parser would make of C{data}, read in its C{data}
    state, when that is simple: no telnet command and no CR left hanging
    at the end; C{None} otherwise.

    conch goes byte by byte in Python, which would cost every chat line a
    few microseconds; the usual read (text and CR LF) needs only this.  A
    CR takes the byte after it: CR LF is LF, CR NUL is CR, CR and anything
    else stay as they are.  Two CRs in a row pair up differently, so they
    go to conch too.
    """
    if IAC in data or b"\r\r" in data or data[-1:] == b"\r":
        return None
    return data.replace(b"\r\n", b"\n").replace(b"\r\0", b"\r")


def _skipped(lines: int) -> bytes:
    """The marker in place of lines a slow reader missed."""
    plural = "line" if lines == 1 else "lines"
    return _lines(f"*** [{lines} {plural} skipped: you were not reading fast enough]")


_NONE: Mapping[Any, Any] = MappingProxyType({})

NEGOTIATION_MOST = 200
"""Telnet option requests one connection may have refused before it is
closed: a client asks for each option once, a flooder never stops."""

NEGOTIATION_FLOOD = f"flooding: over {NEGOTIATION_MOST} telnet option requests refused"
"""Why such a client is sent off."""


@implementer(IHandshakeListener)
class _TelnetTransport(TelnetTransport):
    """
    Twisted's telnet parser, with interactive-chat socket settings, a bare
    CR that ends a line at once, a clean goodbye for clients that break
    the telnet protocol, and a bounded output queue for slow readers.

    Everything the door sends goes through the queue: chat lines, and the
    refusals conch's negotiation code writes (gathered per read), so a
    client that floods C{IAC DO} and reads nothing costs at most
    C{[limits] output_queue}, then meets the stuck-reader policy.

    Over TLS the user arrives only once the handshake is done
    (L{handshakeCompleted}); a connection whose handshake does not finish
    within C{[limits] silent_timeout} is closed, as any silent one is.

    @ivar queue: What the client has not taken yet (L{OutputQueue}).
    """

    # One per connection, thousands held at a few KiB each: what it and its
    # conch and Twisted bases keep goes in slots, not in a dict of its own
    # (13 entries, with three small containers, before).
    __slots__ = (
        "_after_cr",
        "_clock",
        "_cut",
        "_handshake",
        "_hub",
        "_marker",
        "_marker_lines",
        "_refused",
        "_replies",
        "_started",
        "connected",
        "disconnecting",
        "factory",
        "options",
        "protocol",
        "protocolArgs",
        "protocolFactory",
        "queue",
        "state",
        "transport",
    )

    def __init__(self, hub: ChatFactory, door: str, clock: IReactorTime) -> None:
        # The bases' class defaults, which the slots hide.
        self.factory: Any = None
        self.connected = 0
        self.transport: Any = None
        self.protocol: Any = None
        self.disconnecting = False
        self.state = "data"
        super().__init__(TelnetChatProtocol, hub, door)
        self._hub = hub
        self._clock = clock
        # Set after a CR that ended a packet was taken as a line end, so
        # that the LF or NUL that may follow it in the next packet is not a
        # second one.
        self._after_cr = False
        self.queue: OutputQueue | None = None
        # The skipped-lines marker at the head of the queue, and its count.
        self._marker: bytes | None = None
        self._marker_lines = 0
        # Cuts a closed connection whose client does not close its side.
        self._cut: IDelayedCall | None = None
        # Negotiation replies of the read being parsed, pushed as one item
        # when it ends (a 64 KiB read of IAC DO is some 20,000 of them).
        self._replies: bytearray | None = None
        # Closes a TLS connection whose handshake never completes.
        self._handshake: IDelayedCall | None = None
        # Whether the user has arrived (the chat protocol is connected).
        self._started = False
        # Option requests refused so far (see NEGOTIATION_MOST).
        self._refused = 0

    def _command_map(self) -> dict[bytes, Callable[[bytes], Any]]:
        return {
            WILL: self.telnet_WILL,
            WONT: self.telnet_WONT,
            DO: self.telnet_DO,
            DONT: self.telnet_DONT,
        }

    # conch gives every connection a dict of four bound methods (about half
    # a KiB) for the rare telnet command; here it is made when one comes.
    commandMap = property(_command_map, lambda self, value: None)
    # And two empty dicts nothing here adds to: one, read-only, for all.
    negotiationMap = property(lambda self: _NONE, lambda self, value: None)
    protocolKwArgs = property(lambda self: _NONE, lambda self, value: None)

    def write_wire(self, data: bytes) -> None:
        """
        Write bytes already in telnet wire form (CR LF line ends, IAC
        doubled), as L{encode} makes them once per fan-out, so that no
        per-recipient rewriting happens.  They wait in the queue while
        the client is behind.

        @param data: The bytes.
        """
        queue = self.queue
        if queue is not None:
            queue.push(data)
        # Without a queue the connection is not set up yet (a TLS handshake
        # under way): nothing is said before that.

    def _write(self, data: bytes) -> None:
        # conch writes its negotiation replies (IAC WONT x, IAC DONT x) here,
        # straight to the socket; they take the queue like everything else.
        replies = self._replies
        if replies is not None:
            replies += data
        else:
            self.write_wire(data)

    def write(self, data: bytes) -> None:
        # ITransport.write for the chat protocol (LineReceiver.sendLine):
        # conch's line ends and IAC doubling, through the queue.
        self.write_wire(data.replace(b"\xff", b"\xff\xff").replace(b"\n", b"\r\n"))

    def writeSequence(self, seq: Any) -> None:
        self.write_wire(b"".join(seq))

    def makeConnection(self, transport: Any) -> None:
        super().makeConnection(unwrapped(transport))

    def connectionMade(self) -> None:
        if isinstance(self.transport, TLSMemoryBIOProtocol):
            # Nothing is said, and nobody arrives, before the handshake:
            # until then this is only a socket.
            timeout = self._hub.limits.silent_timeout
            if timeout:
                self._handshake = self._clock.callLater(
                    timeout, self._handshake_timed_out, timeout
                )
            return
        self._start()

    def handshakeCompleted(self) -> None:
        """
        See L{IHandshakeListener}: the user arrives now.  Called again on a
        renegotiation, which changes nothing.
        """
        handshake, self._handshake = self._handshake, None
        if handshake is not None and handshake.active():
            handshake.cancel()
        if not self._started and not self.disconnecting:
            self._start()

    def _handshake_timed_out(self, timeout: float) -> None:
        self._handshake = None
        _log.info(
            "closing a TLS connection whose handshake did not finish in {span}",
            span=describe_span(timeout),
        )
        self._hub.metrics.drop("silent")
        tcp: Any = self.transport
        if tcp is not None:
            tcp.abortConnection()

    def _start(self) -> None:
        """
        The connection is ready for chat: set it up, and the user arrives.
        """
        self._started = True
        tcp: Any = self.transport
        assert tcp is not None
        self.queue = client_queue(
            tcp,
            self._hub.limits.output_queue,
            self._overflow,
            self._clock,
            self._hub.batcher,
        )
        super().connectionMade()

    def _overflow(self, queue: OutputQueue) -> None:
        """
        The client is C{queue.limit} bytes behind: drop its oldest lines
        (they are replaced by a marker saying how many), or disconnect it
        if it has read nothing for C{[limits] stuck_timeout}.
        """
        protocol = self.protocol
        assert isinstance(protocol, TelnetChatProtocol)
        if queue.stuck_for() >= self._hub.limits.stuck_timeout:
            waiting = queue.size
            queue.stopProducing()
            if protocol.user is not None:
                protocol.hub.too_slow(protocol.user, waiting)
            protocol.dropped = True
            protocol.abort()
            return
        dropped = queue.drop_oldest(queue.limit // 2)
        lines = sum(chunk.count(b"\r\n") for chunk in dropped)
        if dropped and dropped[0] is self._marker:
            lines += self._marker_lines - 1
        if not lines:
            # Only negotiation replies went: nothing a reader would miss.
            return
        self._marker_lines = lines
        self._marker = _skipped(lines)
        queue.put_first(self._marker)
        self._hub.metrics.drop("slow-reader-lines")

    def loseConnection(self, drain: bool = False) -> None:
        """
        Close after writing what is queued.

        @param drain: Close only our side, read nothing more, and cut the
            connection a few seconds later: for a client sent off while
            still sending (a flooder).  It has that long to read its
            goodbye before the cut (a close with its input unread is a
            reset, which makes the client's kernel throw away what it has
            not read); its input costs nothing meanwhile, not even reading
            it, since the kernel's window stops it.
        """
        # TelnetTransport leaves "disconnecting" False for good, so the line
        # parser would go on running lines that arrived after /quit.
        self.disconnecting = True
        protocol = self.protocol
        if isinstance(protocol, TelnetChatProtocol):
            # Every close the server starts is, to others, a lost connection
            # (a /quit has already been announced by then).
            protocol.dropped = True
        queue, tcp = self.queue, cast(Any, self.transport)
        if self._cut is not None or tcp is None:
            return
        if queue is not None:
            # What is queued goes to the socket's buffer to be flushed
            # before the close; the producer must go or the close would
            # wait for it forever.
            tcp.writeSequence(queue.unsent())
            tcp.unregisterProducer()
        if not drain or not hasattr(tcp, "socket"):
            # Under TLS, the TLS layer closes in its own order.
            tcp.loseConnection()
            return
        tcp.loseWriteConnection()
        tcp.pauseProducing()
        self._cut = self._clock.callLater(GOODBYE_DRAIN, tcp.abortConnection)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        for call in (self._cut, self._handshake):
            if call is not None and call.active():
                call.cancel()
        super().connectionLost(reason)

    def dataReceived(self, data: bytes) -> None:
        if self.disconnecting:
            return  # told why and closing: nothing more is read
        if self._after_cr:
            self._after_cr = False
            if data[:1] in (b"\n", b"\0"):
                data = data[1:]
        try:
            plain = _plain(data) if self.state == "data" else None
            if plain is None:
                self._parse(data)
            elif plain:
                self.applicationDataReceived(plain)
        except ValueError:
            # IAC followed by a byte that is no telnet command: the stream
            # cannot be trusted any more, so say why and close.
            self.state = "data"
            _log.info("closing a telnet client that sent an invalid command")
            self.write_wire(_lines("!!! invalid telnet command sequence; closing"))
            self.loseConnection()
            return
        if self.state == "newline":
            # Twisted holds a CR until it sees what follows; a client that
            # ends lines with CR alone would see every line one line late.
            self.state = "data"
            self._after_cr = True
            self.applicationDataReceived(b"\r")

    def _parse(self, data: bytes) -> None:
        """
        conch's parser over C{data}, with its negotiation replies gathered
        and queued as one item when the read is parsed (or fails): in
        order with what the read makes the chat send, since a reply is
        flushed before any line the read delivers is handled.
        """
        self._replies = bytearray()
        try:
            super().dataReceived(data)
        finally:
            replies, self._replies = self._replies, None
            if replies:
                self.write_wire(bytes(replies))
                self._refused += len(replies) // 3
        if self._refused > NEGOTIATION_MOST and not self.disconnecting:
            # A client asks for each option once (RFC 1143): one that keeps
            # asking floods, and each request costs a parse byte by byte.
            protocol = self.protocol
            if isinstance(protocol, TelnetChatProtocol) and protocol.user:
                protocol.hub.misbehaved(protocol.user, NEGOTIATION_FLOOD)
            else:
                self.write_wire(_lines(f"*** Goodbye ({NEGOTIATION_FLOOD})"))
                self.loseConnection()

    def applicationDataReceived(self, data: bytes) -> None:
        # Replies gathered so far go before what the chat answers to this
        # data, so the client sees them in the order it asked.
        replies = self._replies
        if replies:
            self._replies = bytearray()
            self.write_wire(bytes(replies))
        super().applicationDataReceived(data)

    def negotiate(self, bytes: list[bytes]) -> None:
        # Twisted fails with IndexError on an empty subnegotiation
        # (IAC SB IAC SE); it asks for nothing, so there is nothing to do.
        if bytes:
            super().negotiate(bytes)

    def _subnegotiationLengthExceeded(self) -> None:
        # Twisted drops a client whose subnegotiation never ends, closing the
        # socket directly; close it ourselves, saying why.
        if not self.disconnecting:
            _log.info("closing a telnet client whose subnegotiation never ends")
            self.write_wire(_lines("!!! telnet subnegotiation too long; closing"))
            self.loseConnection()


class TelnetFactory(ServerFactory):
    """
    Builds the telnet door's protocols for one listener.

    @ivar door: What users of this listener are shown as (C{telnet}, or
        C{onion} when the listener is an onion service).
    """

    # ListenerService logs each listener once, with its real address.
    noisy = False

    def __init__(
        self, hub: ChatFactory, door: str = "telnet", clock: IReactorTime | None = None
    ):
        """
        @param clock: Times how long a slow reader is stuck; the hub's
            clock by default.
        """
        self.hub = hub
        self.door = door
        self._clock = clock if clock is not None else hub.clock

    refusal = staticmethod(line_refusal)
    """How a connection over the limits is told why (L{tchat.gate.Gate})."""

    def buildProtocol(self, addr: IAddress | None) -> TelnetTransport:
        transport = _TelnetTransport(self.hub, self.door, self._clock)
        transport.factory = self
        return transport
