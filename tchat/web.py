# -*- test-case-name: tests.test_web -*-
"""
The web door: the chat page and its WebSocket on one HTTP port.

Autobahn does the WebSocket protocol (handshake, framing, limits, pings);
this module only adapts it to the hub, and serves the page with
L{twisted.web}.
"""

from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import (
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.util import encode_truncate
from autobahn.websocket.protocol import PreparedMessage
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.interfaces import ITCPTransport
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from twisted.web.static import File
from zope.interface import implementer

from tchat import events
from tchat.config import WebConfig
from tchat.endpoints import client_address
from tchat.hub import ChatFactory, User
from tchat.interfaces import IParticipant
from tchat.limits import OutputQueue, http_refusal, unwrapped
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

    @property
    def door(self) -> str:
        """C{web}, or C{onion} behind the onion service."""
        return self.factory.door

    def __init__(self) -> None:
        super().__init__()
        self.user: User | None = None
        self._client_id: str | None = None
        self._queue: OutputQueue[PreparedMessage | bytes] | None = None

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
        if ITCPTransport.providedBy(self.transport):
            # Nagle's algorithm would hold small chat frames back ~40 ms.
            self.transport.setTcpNoDelay(True)
        hub = self.factory.hub
        self._queue = OutputQueue(
            self._write_item, _size, hub.limits.output_queue, self._overflow, hub.clock
        )
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
        self._client_id = request.client_id
        try:
            for command in request.commands:
                self.factory.hub.execute(user, command)
        finally:
            self._client_id = None

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.user is not None:
            # Only a close the client started counts as leaving; one the
            # server started (limits, dead peer) is a lost connection.
            clean = wasClean and not self.closedByMe and code in (1000, 1001)
            self.factory.hub.disconnect(self.user, f"{code} {reason}", clean=clean)

    def _error(self, code: str, message: str, client_id: str | None = None) -> None:
        self._push(error_frame(code, message, client_id))

    def _push(self, item: PreparedMessage | bytes) -> None:
        queue = self._queue
        if queue is not None:
            queue.push(item)
        else:
            self._write_item(item)

    def _write_item(self, item: PreparedMessage | bytes) -> None:
        if isinstance(item, bytes):
            # Prepared, because Autobahn applies the incoming size limit
            # (max_frame) to sendMessage too, and a page of history may
            # be larger than what a client may send.
            self.sendPreparedMessage(self.factory.prepareMessage(item, isBinary=False))
        else:
            self.sendPreparedMessage(item)

    def _overflow(self, queue: OutputQueue[PreparedMessage | bytes]) -> None:
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
        assert isinstance(user, User)
        self.user = user

    def deliver(self, event: object, renderings: object) -> None:
        assert isinstance(renderings, events.Renderings)
        if self.user is None or self.state != WebSocketServerProtocol.STATE_OPEN:
            return
        if isinstance(event, events.Error) and self._client_id is not None:
            self._error(event.code, event.text, self._client_id)
            return
        if isinstance(event, events.History):
            for payload in history_frames(event):
                self._push(payload)
            return
        sender_copy = (
            isinstance(event, events.RoomMessage)
            and event.nick == self.user.nick
            and event.client_id is not None
        )
        prepared = renderings.get(
            ("web", sender_copy), self.factory.prepare, event, sender_copy
        )
        self._push(prepared)

    @property
    def address(self) -> str | None:
        """See L{IParticipant.address}."""
        return client_address(self.door, self.transport)

    def close(self, reason: str, why: str = "normal") -> None:
        queue = self._queue
        if queue is not None and not queue.stopped:
            # What was delivered goes out before the close frame.
            pending = list(queue.pending)
            queue.stopProducing()
            for item in pending:
                self._write_item(item)
        code = _CLOSE_CODES.get(why, 1000)
        text = "going away" if code == 1001 else reason[:100]
        # Autobahn's sendClose only takes the codes an application may pick
        # (1000, 3000-4999) and raises for 1001 and 1008, which are the
        # protocol's own; send the frame as Autobahn does for its own
        # closes.  A close reason must fit a control frame (123 bytes).
        self.sendCloseFrame(code, encode_truncate(text, 123), isReply=False)

    def abort(self) -> None:
        self.dropConnection(abort=True)


def _size(item: PreparedMessage | bytes) -> int:
    return len(item) if isinstance(item, bytes) else len(item.payloadHybi)


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
        self.reconfigure(config)

    def reconfigure(self, config: WebConfig) -> None:
        """
        Apply C{[web]} settings, and the hub's C{[limits] max_frame}:
        allowed origins at once, sizes and pings to connections made from
        now on.
        """
        self.config = config
        max_frame = self.hub.limits.max_frame
        self.setProtocolOptions(
            maxFramePayloadSize=max_frame,
            maxMessagePayloadSize=max_frame,
            autoPingInterval=config.ping_interval or None,
            autoPingTimeout=config.ping_timeout,
            # Close offenders (oversized frames, protocol errors) with a code
            # and reason they can see, instead of just dropping TCP.
            failByDrop=False,
            # permessage-deflate stays off: memory per connection matters
            # more than bandwidth for short chat lines.
            perMessageCompressionAccept=lambda offers: None,
        )

    def prepare(self, event: events.Event, sender_copy: bool) -> Any:
        """
        Serialise and frame one event, once for all its web recipients.
        """
        return self.prepareMessage(encode(event, sender_copy), isBinary=False)


class _Static(File):
    """
    The page's files, with the security headers.
    """

    def render(self, request: Request) -> bytes | int:
        for name, value in _SECURITY_HEADERS.items():
            request.setHeader(name, value)
        return super().render(request)  # type: ignore[no-any-return]


class ChatSite(Site):
    """
    The web door's site.

    @ivar chat: Its WebSocket factory, to reconfigure on reload.
    """

    refusal = staticmethod(http_refusal)
    """How a connection over the limits is told why (L{tchat.limits.Gate})."""

    def __init__(self, root: Resource, chat: WebChatFactory) -> None:
        # An HTTP connection that sends no request is closed after the
        # silent timeout, as a chat connection that says nothing is.
        super().__init__(root, timeout=chat.hub.limits.silent_timeout or None)
        self.chat = chat


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
