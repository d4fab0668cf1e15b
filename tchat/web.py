# -*- test-case-name: tests.test_web -*-
"""
The web door: the chat page and its WebSocket on one HTTP port.

Autobahn does the WebSocket protocol (handshake, framing, limits, pings);
this module only adapts it to the hub, and serves the page with
L{twisted.web}.

Every frame a connection is sent, Autobahn's own (pongs, pings) included,
goes through its bounded L{OutputQueue}; a client that reads nothing for
C{[limits] stuck_timeout} is closed however much it sends.  The page, its
files and the WebSocket answer only to the names the server has
(C{[web] allowed_hosts}): a page that reaches it through another name, as
a DNS rebinding attack does, gets 421.
"""

import ipaddress
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from types import FunctionType
from typing import Any, cast
from urllib.parse import urlsplit

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import (
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.util import encode_truncate
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.interfaces import ITCPTransport
from twisted.logger import Logger
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site
from twisted.web.static import File
from zope.interface import implementer

from tchat import events
from tchat.config import WebConfig
from tchat.endpoints import client_address
from tchat.gate import http_refusal, unwrapped
from tchat.hub import ChatFactory
from tchat.interfaces import IParticipant
from tchat.model import User
from tchat.output import GOODBYE_DRAIN, OutputQueue
from tchat.text import describe_span
from tchat.tls import split_description
from tchat.webproto import (
    FrameError,
    encode,
    error_frame,
    history_frames,
    parse_frame,
)

STATIC = Path(str(files("tchat") / "static"))

# What the page may load: only itself. User text is always inserted as
# text; this is the second line of defence.
_SECURITY_HEADERS = {
    b"Content-Security-Policy": (
        b"default-src 'self'; connect-src 'self'; img-src 'self' data:; "
        b"style-src 'self'; script-src 'self'; frame-ancestors 'none'; "
        b"base-uri 'none'; form-action 'none'"
    ),
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
    b"X-Frame-Options": b"DENY",
}


def origin_allowed(origin: str | None, host: str, allowed: tuple[str, ...]) -> bool:
    """
    May a page from C{origin} open the WebSocket on C{host}?

    @param origin: The handshake's C{Origin} header; C{None} when absent
        (non-browser clients, which are allowed).
    @param host: The handshake's C{Host} header.
    @param allowed: C{[web] allowed_origins}.
    @return: C{True} for no origin, the page's own origin, or a listed one.
    """
    if origin is None:
        return True
    origin = origin.lower()
    if "*" in allowed or origin in allowed:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    default = 443 if parts.scheme == "https" else 80
    own = urlsplit(f"//{host.lower()}")
    try:
        origin_port = parts.port or default
        host_port = own.port or default
    except ValueError:
        return False
    return parts.hostname == own.hostname and origin_port == host_port


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
"""Names every web door answers to: only a program on this machine sends
them, never a page that found the server through a name of its own."""


def host_name(header: str) -> str | None:
    """
    The name in a C{Host} header: lower case, without the port or a final
    dot, an IP address in its short form (IPv6 without brackets).

    @param header: The header's value, e.g. C{Chat.Example.org:8080} or
        C{[::1]:8080}.
    @return: The name, or C{None} if the header is not a host and port.
    """
    text = header.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        name, rest = text[1:end], text[end + 1 :]
        if end < 0 or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
    else:
        name, colon, port = text.partition(":")
        if colon and not port.isdigit():
            return None
    name = name.rstrip(".")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    if not name or any(not (c.isalnum() or c in "-_.") for c in name):
        return None
    return name


def listen_addresses(listen: Iterable[str]) -> tuple[frozenset[str], bool]:
    """
    The IP addresses the web door's endpoints listen on.

    @param listen: C{[web] listen}: endpoint strings.
    @return: The addresses, and whether any endpoint listens on every
        address (C{tcp:8080}, C{interface=0.0.0.0} or C{::}), whose
        addresses cannot be known from the string.
    """
    addresses: set[str] = set()
    wildcard = False
    # Where Twisted takes the interface by position, and its default.
    interfaces = {"tcp": (2, ""), "tcp6": (3, "::"), "ssl": (5, "")}
    for description in listen:
        try:
            positional, keywords = split_description(description)
        except ValueError:
            continue
        where = interfaces.get(positional[0].lower())
        if where is None:
            # unix sockets and the like: their clients' Host is a name.
            continue
        index, default = where
        interface = keywords.get(
            "interface",
            positional[index] if len(positional) > index else default,
        )
        try:
            address = ipaddress.ip_address(interface or "0.0.0.0")
        except ValueError:
            continue
        if address.is_unspecified:
            wildcard = True
        else:
            addresses.add(str(address))
    return frozenset(addresses), wildcard


@dataclass(frozen=True)
class HostRule:
    """
    The names a web door answers to in the C{Host} header, on any port.

    @ivar names: Names and addresses allowed as they are.
    @ivar domains: Domains every name under which is allowed
        (C{*.example.org} is C{.example.org}).
    @ivar any_address: Whether any IP address is allowed (a listener on
        every address): a page that uses an address as its host cannot have
        reached the server through DNS rebinding.
    @ivar any_host: C{*}: every host (behind a reverse proxy that checks).
    """

    names: frozenset[str]
    domains: tuple[str, ...] = ()
    any_address: bool = False
    any_host: bool = False

    @classmethod
    def for_config(cls, config: WebConfig) -> "HostRule":
        """
        The rule of C{[web]}: C{allowed_hosts}, the listen addresses and
        the loopback names.
        """
        addresses, wildcard = listen_addresses(config.listen)
        listed = config.allowed_hosts
        return cls(
            LOOPBACK_NAMES | addresses | {h for h in listed if not h.startswith("*")},
            tuple(h[1:] for h in listed if h.startswith("*.")),
            wildcard,
            "*" in listed,
        )

    @classmethod
    def for_onion(cls, address: str | None) -> "HostRule":
        """
        The rule of an onion door: its published address and the names
        under it (Tor ignores what comes before the address), or any
        C{.onion} name before it is published; and the loopback names.
        """
        if address is None:
            return cls(LOOPBACK_NAMES, (".onion",))
        return cls(LOOPBACK_NAMES | {address}, (f".{address}",))

    def allows(self, name: str) -> bool:
        """
        @param name: From L{host_name}.
        """
        if self.any_host or name in self.names:
            return True
        if self.any_address and _is_address(name):
            return True
        return bool(self.domains) and name.endswith(self.domains)


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


# How IParticipant.close's reasons map to WebSocket close codes.
_CLOSE_CODES = {"normal": 1000, "going-away": 1001, "policy": 1008}


@implementer(IParticipant)
class WebChatProtocol(WebSocketServerProtocol):
    """
    One browser (or any WebSocket client) user.

    Autobahn owns C{log} and C{factory.server}; tchat's names are C{_log}
    and C{hub}.

    @ivar user: The hub's record of this user, once the socket is open.
    """

    _log = Logger()
    factory: "WebChatFactory"
    keeps_tokens = True
    """A page keeps a login token, to come back logged in (docs/accounts.md)."""

    # One per connection, thousands held at a few KiB each: what Autobahn,
    # Twisted and the door keep of an open connection goes in slots rather
    # than a 60-entry dict per connection (1.5 KiB).  An attribute missing
    # here still works, in a dict of its own.
    __slots__ = (
        "_out",
        "_perMessageCompress",
        "_queue",
        "_results",
        "_transport_details",
        "_valid_events",
        "_wskey",
        "autoPingPending",
        "autoPingPendingCall",
        "autoPingPendingSent",
        "autoPingPendingSeq",
        "autoPingTimeoutCall",
        "closeHandshakeTimeoutCall",
        "closedByMe",
        "connected",
        "current_frame",
        "data",
        "droppedByMe",
        "factory",
        "failedByMe",
        "http_headers",
        "http_request_data",
        "http_request_host",
        "http_request_params",
        "http_request_path",
        "http_request_uri",
        "http_response_data",
        "http_status_line",
        "inside_message",
        "is_closed",
        "is_open",
        "localCloseCode",
        "localCloseReason",
        "openHandshakeTimeoutCall",
        "peer",
        "remoteCloseCode",
        "remoteCloseReason",
        "send_queue",
        "send_state",
        "state",
        "trackedTimings",
        "trafficStats",
        "transport",
        "triggered",
        "user",
        "utf8validator",
        "wasClean",
        "wasCloseHandshakeTimeout",
        "wasMaxFramePayloadSizeExceeded",
        "wasMaxMessagePayloadSizeExceeded",
        "wasNotCleanReason",
        "wasOpenHandshakeTimeout",
        "wasServerConnectionDropTimeout",
        "wasServingFlashSocketPolicyFile",
        "websocket_extensions",
        "websocket_extensions_in_use",
        "websocket_origin",
        "websocket_protocol_in_use",
        "websocket_protocols",
        "websocket_version",
    )

    @property
    def door(self) -> str:
        """C{web}, or C{onion} behind the onion service."""
        return self.factory.door

    def __init__(self) -> None:
        # The bases' class defaults, which the slots hide.
        for name, value in _INHERITED.items():
            setattr(self, name, value)
        super().__init__()
        self.user: User | None = None
        self._queue: OutputQueue | None = None
        # Where framed messages go once the socket is open: the queue.
        self._out: Callable[[bytes], None] | None = None

    @property
    def pings(self) -> bool:
        """Whether Autobahn pings this client to check it is alive."""
        return bool(self.factory.config.ping_interval)

    def makeConnection(self, transport: Any) -> None:
        super().makeConnection(unwrapped(transport))

    def onConnect(self, request: ConnectionRequest) -> None:
        allowed = self.factory.config.allowed_origins
        # request.host has lost its port; the same-origin check needs it.
        host = request.headers.get("host", "")
        if not origin_allowed(request.headers.get("origin"), host, allowed):
            self._log.info(
                "refused a WebSocket from origin {origin}",
                origin=request.headers.get("origin"),
            )
            raise ConnectionDeny(
                403,
                "this page's origin may not use the chat; see [web] allowed_origins",
            )

    def onOpen(self) -> None:
        # What Autobahn kept of the handshake is not needed again; an idle
        # connection is mostly these and the send queue below.
        for name in _HANDSHAKE_LEFTOVERS:
            setattr(self, name, None)
        self.send_queue = _LazyQueue()  # type: ignore[assignment]
        if ITCPTransport.providedBy(self.transport):
            # Nagle's algorithm would hold small chat frames back ~40 ms.
            self.transport.setTcpNoDelay(True)
        hub = self.factory.hub
        # Frames go to the socket, as Autobahn's sendData does when nothing
        # is chopped or synchronous (tchat never asks for either), without
        # its per-send debug logging call; batched as telnet's are.
        self._queue = OutputQueue.for_transport(
            self.transport,
            hub.limits.output_queue,
            self._overflow,
            hub.clock,
            hub.batcher,
            stuck=self._stuck,
            stuck_timeout=self.factory.stuck_timeout,
        )
        self._out = self._queue.push
        # The HTTP channel that carried the handshake is still registered
        # as the socket's producer; from now on this queue is.
        self.unregisterProducer()
        self.registerProducer(self._queue, True)
        try:
            self.factory.hub.connect(self)
        except Exception:
            # Autobahn would swallow this; say so and drop the client.
            self._log.failure("connecting a web user to the hub")
            self.dropConnection(abort=True)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        user = self.user
        if user is None or not self.factory.hub.received(user):
            return
        if isBinary:
            self._error(
                "binary-frame", "binary frames are not understood; send JSON text"
            )
            return
        try:
            request = parse_frame(payload, user.nick)
        except FrameError as e:
            self._error(e.code, e.message, e.client_id)
            return
        # Errors the hub reports while running this request carry its tag.
        for command in request.commands:
            self.factory.hub.execute(user, command, request.client_id)

    def onPing(self, payload: bytes) -> None:
        # A ping is a frame like any other: it takes the sender's allowance
        # (and past it goes unanswered), so pings cannot flood the door
        # where text frames could not.
        user = self.user
        if user is not None and self.factory.hub.received(user):
            super().onPing(payload)

    def onPong(self, payload: bytes) -> None:
        # The answer to the door's own ping counts too: a client sending
        # pongs unasked must not go beyond what it may send.
        user = self.user
        if user is not None:
            self.factory.hub.received(user)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        queue = self._queue
        if queue is not None:
            queue.stopProducing()
        if self.user is not None:
            # Only a close the client started counts as leaving; one the
            # server started (limits, dead peer) is a lost connection.
            clean = wasClean and not self.closedByMe and code in (1000, 1001)
            self.factory.hub.disconnect(self.user, f"{code} {reason}", clean=clean)

    def _error(self, code: str, message: str, client_id: str | None = None) -> None:
        self._push(error_frame(code, message, client_id))

    def _push(self, payload: bytes) -> None:
        """
        Send one JSON payload as a text message, after what is queued.
        """
        # Framed by hand (prepareMessage), because Autobahn applies the
        # incoming size limit (max_frame) to sendMessage too, and a page of
        # history may be larger than what a client may send.
        frame = self.factory.frame(payload)
        if self._out is not None:
            self._out(frame)
        else:
            self.sendData(frame)

    def sendData(
        self, data: bytes, sync: bool = False, chopsize: int | None = None
    ) -> None:
        """
        Autobahn writes its own frames (pongs, pings, close frames) here;
        once the socket is open they wait in the output queue like chat
        frames, so that a client that makes the server answer without
        reading the answers meets the queue's bound.  Before that (the
        handshake), and once the queue is stopped (closing), they go
        straight to the transport.
        """
        queue = self._queue
        if queue is not None and not queue.stopped and not sync and not chopsize:
            queue.push(data)
        else:
            super().sendData(data, sync, chopsize)

    def sendCloseFrame(
        self,
        code: int | None = None,
        reasonUtf8: bytes | None = None,
        isReply: bool = False,
    ) -> None:
        """
        Whoever closes (tchat, Autobahn on a protocol error, the reply to
        the client's close), what was queued goes out first, and the close
        frame after it, straight to the transport.
        """
        queue = self._queue
        if queue is not None and not queue.stopped and self.state == _OPEN:
            for frame in queue.unsent():
                super().sendData(frame)
        super().sendCloseFrame(code, reasonUtf8, isReply)

    def _stuck(self, queue: OutputQueue) -> None:
        """
        The client has taken nothing for C{[limits] stuck_timeout} seconds,
        whatever it sent meanwhile: close it with 1008 and a reason (if it
        ever reads again, its page reconnects and resumes).
        """
        if self.state != _OPEN:
            return
        waiting = queue.size
        queue.stopProducing()
        if self.user is not None:
            self.factory.hub.too_slow(self.user, waiting)
        span = describe_span(self.factory.hub.limits.stuck_timeout)
        self.close(
            f"not reading: nothing taken for {span}; reconnect to catch up", "policy"
        )

    def _overflow(self, queue: OutputQueue) -> None:
        """
        The client fell C{[limits] output_queue} bytes behind: close it
        with 1008 and a reason (its page reconnects and resumes).
        """
        waiting = queue.size
        queue.stopProducing()
        if self.user is not None:
            self.factory.hub.too_slow(self.user, waiting)
        # The close frame waits behind what the socket already holds: give
        # a reader that is slow (not gone) the time to get to it.
        self.closeHandshakeTimeout = self.factory.hub.limits.stuck_timeout
        self.close(
            f"too slow: over {queue.limit // 1024} KiB of messages waiting; "
            "reconnect to catch up",
            "policy",
        )

    # -- IParticipant ------------------------------------------------------

    def attached(self, user: object) -> None:
        assert user is None or isinstance(user, User)
        self.user = user

    def deliver(self, event: object, renderings: object) -> None:
        user, out = self.user, self._out
        if user is None or out is None or self.state != _OPEN:
            return
        kind = event.__class__
        if kind is events.RoomMessage:
            # The hot path, every chat line to every member.
            message = cast(events.RoomMessage, event)
            sender_copy = message.client_id is not None and message.nick == user.nick
        elif kind is events.Error and cast(events.Error, event).client_id:
            # The answer to one request: for this client alone.
            error = cast(events.Error, event)
            self._push(error_frame(error.code, error.text, error.client_id, error.name))
            return
        elif kind is events.History:
            for payload in history_frames(cast(events.History, event)):
                self._push(payload)
            return
        else:
            sender_copy = False
        key = _KEYS[sender_copy]
        assert isinstance(renderings, events.Renderings)
        frame = renderings.cache.get(key)
        if frame is None:
            frame = renderings.get(key, self.factory.prepare, event, sender_copy)
        out(frame)

    @property
    def address(self) -> str | None:
        """See L{IParticipant.address}."""
        return client_address(self.door, self.transport)

    def close(self, reason: str, why: str = "normal") -> None:
        # What was delivered goes out before the close frame (sendCloseFrame).
        code = _CLOSE_CODES.get(why, 1000)
        text = "going away" if code == 1001 else reason[:100]
        if code == 1008:
            # Someone sent off (a flooder) may have a lot to read before the
            # close frame, and Autobahn's answer to a late reply is a reset,
            # which makes the client's kernel throw away the close frame
            # and the reason in it: give them the time telnet users get.
            self.closeHandshakeTimeout = max(self.closeHandshakeTimeout, GOODBYE_DRAIN)
        # Autobahn's sendClose only takes the codes an application may pick
        # (1000, 3000-4999) and raises for 1001 and 1008, which are the
        # protocol's own; send the frame as Autobahn does for its own
        # closes.  A close reason must fit a control frame (123 bytes).
        self.sendCloseFrame(code, encode_truncate(text, 123), isReply=False)
        pause = getattr(self.transport, "pauseProducing", None)
        if code == 1008 and pause is not None:
            # What a client sent off still sends is not worth parsing (a
            # ping flooder's frames would keep a core busy for the whole
            # handshake timeout): read nothing more; the kernel's window
            # stops it, and the timeout cuts the connection.
            pause()

    def abort(self) -> None:
        self.dropConnection(abort=True)


_OPEN = WebSocketServerProtocol.STATE_OPEN

_INHERITED = {
    name: getattr(WebSocketServerProtocol, name)
    for name in WebChatProtocol.__slots__
    if hasattr(WebSocketServerProtocol, name)
}
"""The defaults Autobahn and Twisted keep on their classes, for the slots."""

_HANDSHAKE_LEFTOVERS = (
    "http_request_data",
    "http_response_data",
    "http_status_line",
    "http_headers",
    "http_request_params",
    "http_request_path",
    "http_request_uri",
    "http_request_host",
    "websocket_protocols",
    "websocket_extensions",
    "websocket_origin",
    "_wskey",
)


class _LazyQueue:
    """
    Autobahn's send queue, made only when used: it holds chopped or
    synchronous sends, which tchat never asks for, and an empty deque costs
    every connection most of a KiB.
    """

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: deque[Any] | None = None

    def __len__(self) -> int:
        return len(self._items) if self._items is not None else 0

    def append(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)

    def popleft(self) -> Any:
        if self._items is None:
            raise IndexError("pop from an empty queue")
        return self._items.popleft()


# The rendering keys of an event for web users, by [sender's own copy].
_KEYS = (("web", False), ("web", True))


class WebChatFactory(WebSocketServerFactory):
    """
    The WebSocket side of the web door.

    @ivar hub: The chat hub.
    @ivar config: The C{[web]} settings.
    """

    protocol = WebChatProtocol  # type: ignore[assignment]

    def __init__(self, hub: ChatFactory, config: WebConfig, door: str = "web") -> None:
        super().__init__()
        self.hub = hub
        self.door = door
        # One bound method for every connection's queue.
        self.stuck_timeout: Callable[[], float] = self._stuck_timeout
        self.reconfigure(config)

    def _stuck_timeout(self) -> float:
        return self.hub.limits.stuck_timeout

    def reconfigure(self, config: WebConfig) -> None:
        """
        Apply C{[web]} settings, and the hub's C{[limits] max_frame}:
        allowed origins and hosts at once, sizes and pings to connections
        made from now on.
        """
        self.config = config
        self._hosts = HostRule.for_config(config)
        max_frame = self.hub.limits.max_frame
        self.setProtocolOptions(
            maxFramePayloadSize=max_frame,
            maxMessagePayloadSize=max_frame,
            autoPingInterval=config.ping_interval or None,
            autoPingTimeout=config.ping_timeout,
            # Only the pong to its ping proves a peer alive: a client that
            # sends but reads nothing could otherwise stay for ever.
            autoPingRestartOnAnyTraffic=False,
            # Close offenders (oversized frames, protocol errors) with a code
            # and reason they can see, instead of just dropping TCP.
            failByDrop=False,
            # permessage-deflate stays off: memory per connection matters
            # more than bandwidth for short chat lines.
            perMessageCompressionAccept=lambda offers: None,
        )
        # Autobahn copies every protocol option (29 of them) from the
        # factory into each connection, unless the protocol class already
        # has it; connections made from now on share them through a class.
        options: dict[str, Any] = {
            # A function in a class would become a method: keep it plain.
            name: staticmethod(value) if isinstance(value, FunctionType) else value
            for name in WebChatProtocol.CONFIG_ATTRS
            for value in [getattr(self, name)]
        }
        # With every option on the class, nothing is left for Autobahn to
        # copy; its loop over them also pretty-printed the list for a debug
        # log on every connection, a fifth of a web arrival's CPU.
        options["CONFIG_ATTRS"] = ()
        self.protocol = cast(
            type[WebChatProtocol],
            type(WebChatProtocol.__name__, (WebChatProtocol,), options),
        )

    def host_allowed(self, header: str) -> bool:
        """
        Does this door answer to the C{Host} header C{header}?  The web
        door to C{[web] allowed_hosts}, its listen addresses and the
        loopback names; the onion door to its C{.onion} address.
        """
        name = host_name(header)
        if name is None:
            return False
        if self.door == "onion":
            return HostRule.for_onion(self.hub.onion_address).allows(name)
        return self._hosts.allows(name)

    def prepare(self, event: events.Event, sender_copy: bool) -> bytes:
        """
        Serialise and frame one event, once for all its web recipients.
        """
        return self.frame(encode(event, sender_copy))

    def frame(self, payload: bytes) -> bytes:
        """
        The wire bytes of one text message carrying C{payload}.
        """
        return self.prepareMessage(payload, isBinary=False).payloadHybi  # type: ignore[no-any-return]


class _Static(File):
    """
    The page's files, with the security headers.
    """

    def render(self, request: Request) -> bytes | int:
        for name, value in _SECURITY_HEADERS.items():
            request.setHeader(name, value)
        return super().render(request)  # type: ignore[no-any-return]


class _Misdirected(Resource):
    """
    421 Misdirected Request, for a request whose C{Host} the door does not
    answer to, saying why.
    """

    isLeaf = True

    def __init__(self, host: str) -> None:
        super().__init__()
        self._host = host

    def render(self, request: Request) -> bytes:
        request.setResponseCode(421, b"Misdirected Request")
        for name, value in _SECURITY_HEADERS.items():
            request.setHeader(name, value)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        shown = "".join(
            c if c.isascii() and c.isprintable() else "?" for c in self._host[:100]
        )
        return (
            f"This chat server does not answer to the name {shown}. A page "
            "that reaches it through a name that is not one of its own may be "
            "a DNS rebinding attack, so it is refused. If the name is the "
            "server's, its operator can add it to [web] allowed_hosts in "
            "tap.ini.\n"
        ).encode()


class ChatSite(Site):
    """
    The web door's site.

    The page, its files and the WebSocket answer only to the C{Host} names
    of L{WebChatFactory.host_allowed} (421 otherwise); a request without
    C{Host} (HTTP/1.0 tools) is served.

    @ivar chat: Its WebSocket factory, to reconfigure on reload.
    """

    _log = Logger()

    refusal = staticmethod(http_refusal)
    """How a connection over the limits is told why (L{tchat.gate.Gate})."""

    def __init__(self, root: Resource, chat: WebChatFactory) -> None:
        # An HTTP connection that sends no request is closed after the
        # silent timeout, as a chat connection that says nothing is.
        super().__init__(root, timeout=chat.hub.limits.silent_timeout or None)
        self.chat = chat

    def getResourceFor(self, request: Request) -> IResource:
        resource: IResource = super().getResourceFor(request)
        if not isinstance(resource, (_Static, WebSocketResource)):
            # Not found: a 404 tells a page nothing either way.
            return resource
        raw = request.getHeader(b"host")
        if raw is None:
            return resource
        host = raw.decode("latin-1")
        if self.chat.host_allowed(host):
            return resource
        self._log.info(
            "refused a request for host {host!r} ({door} door): not one of its "
            "names (DNS rebinding?); see [web] allowed_hosts",
            host=host[:100],
            door=self.chat.door,
        )
        return _Misdirected(host)


def make_site(hub: ChatFactory, config: WebConfig, door: str = "web") -> ChatSite:
    """
    The web door's HTTP site: the page at C{/}, its files under C{/static/},
    the WebSocket at C{/ws}.
    """
    root = Resource()
    page = _Static(str(STATIC / "index.html"), defaultType="text/html; charset=utf-8")
    root.putChild(b"", page)
    root.putChild(b"static", _Static(str(STATIC)))
    chat = WebChatFactory(hub, config, door)
    root.putChild(b"ws", WebSocketResource(chat))
    site = ChatSite(root, chat)
    site.displayTracebacks = False
    site.noisy = False
    return site
