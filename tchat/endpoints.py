# -*- test-case-name: tests.test_tap -*-
"""
Listeners: endpoint strings checked before start-up, and a service that logs
where each one really listens.
"""

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Service
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.internet.testing import MemoryReactor
from twisted.logger import Logger
from twisted.python.failure import Failure

from tchat.config import ConfigError
from tchat.tls import ServerTLS, load_certificate, parse_ssl

DEFAULT_BACKLOG = 1024
"""
The listen queue tchat asks for when an endpoint string does not say.

Twisted's default of 50 is too small for a chat server: a burst of
connections overflows it while the hub is busy announcing arrivals, and the
kernel then drops handshakes, which clients retry only after a second. The
kernel caps the value at C{net.core.somaxconn}.
"""

_BACKLOG_KINDS = frozenset({"tcp", "tcp6", "ssl", "unix"})


def with_backlog(description: str) -> str:
    """
    Add C{backlog=DEFAULT_BACKLOG} to a stream endpoint string that does
    not set one.

    @param description: An endpoint string.
    @return: The string to listen with.
    """
    kind = description.partition(":")[0]
    if kind not in _BACKLOG_KINDS or "backlog=" in description:
        return description
    return f"{description}:backlog={DEFAULT_BACKLOG}"


def check_endpoint(section: str, description: str) -> None:
    """
    Check that an endpoint string can be used, without listening on it.

    Parsing happens against a L{MemoryReactor} so that nothing is bound;
    C{onion:} strings are only checked for txtorcon, because parsing them
    connects to (or launches) tor.  C{ssl:} strings have their key,
    certificate and chain files read and checked.

    @param section: The C{tap.ini} section it came from, for the message.
    @param description: The endpoint string.
    @raise ConfigError: Saying what is wrong with it.
    """
    kind = description.partition(":")[0]
    if kind == "onion":
        try:
            import txtorcon  # noqa: F401
        except ImportError:
            raise ConfigError(
                f"[{section}] listen: {description!r} is an onion endpoint, "
                "which needs txtorcon, part of tchat's install but cannot be "
                "imported: reinstall tchat (pip install .)"
            ) from None
        return
    try:
        if kind == "ssl":
            # What listening will do: tchat's own TLS, which reloads.
            load_certificate(parse_ssl(description))
        else:
            serverFromString(MemoryReactor(), description)
    except Exception as e:
        reason = str(e) or type(e).__name__
        raise ConfigError(
            f"[{section}] listen: {description!r} is not a usable endpoint: {reason}"
        ) from None


def server_endpoint(
    reactor: Any, description: str, factory: IProtocolFactory
) -> tuple[IStreamServerEndpoint, IProtocolFactory, ServerTLS | None]:
    """
    What to listen with for an endpoint string, with L{with_backlog}.

    An C{ssl:} string becomes a TCP endpoint and C{factory} wrapped in TLS
    from a L{ServerTLS}, so that its certificate can be reloaded; other
    strings go to C{serverFromString} and C{factory} is unchanged.

    @param reactor: The reactor to listen with.
    @param description: The endpoint string.
    @param factory: The door's factory.
    @return: The endpoint, the factory to listen with, and the TLS of an
        C{ssl:} string (else C{None}).
    @raise ValueError: If the string cannot be parsed.
    @raise CertificateError: If its key or certificate cannot be used.
    """
    full = with_backlog(description)
    if full.partition(":")[0] != "ssl":
        return serverFromString(reactor, full), factory, None
    tls = ServerTLS(description, parse_ssl(full))
    return tls.endpoint(reactor), tls.wrap(factory), tls


def client_address(door: str, transport: object) -> str | None:
    """
    The IP address a client connected from, as bans and limits see it.

    @param door: The door it came through; onion clients all come from the
        local tor, so they have none.
    @param transport: The connection's transport (C{None} once gone).
    @return: The address, or C{None} for onion clients and unix sockets.
    """
    if door == "onion" or transport is None:
        return None
    peer = transport.getPeer()  # type: ignore[attr-defined]
    host = getattr(peer, "host", None)
    return host if isinstance(host, str) else None


def describe_address(address: object) -> str:
    """
    Say where a port listens, the way people type it into clients.

    @param address: From C{IListeningPort.getHost()}.
    @return: C{127.0.0.1:4444}, C{[::1]:4444}, a unix path, or the address's
        own text for other kinds (onion addresses).
    """
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, UNIXAddress):
        name = address.name
        return name.decode() if isinstance(name, bytes) else str(name)
    return str(address)


class StartupError(Exception):
    """
    tchat cannot start; the message says why.
    """


class ListenerService(StreamServerEndpointService):
    """
    One door on one endpoint.  Logs the real address once listening (so
    C{tcp:0} is usable), and fails start-up with a plain sentence when the
    endpoint cannot be listened on.

    @ivar door: The door's name, for the log.
    @ivar description: The endpoint string, for the log.
    @ivar port: The listening port once started.
    @ivar tls: The TLS of an C{ssl:} listener, whose certificate a reload
        reloads; C{None} for other listeners.
    """

    _log = Logger()
    # Like strports.service: a listener that cannot listen stops start-up.
    _raiseSynchronously = True
    daemon = False
    """Whether twistd is daemonising, which changes how start-up fails."""

    def __init__(
        self,
        door: str,
        description: str,
        endpoint: IStreamServerEndpoint,
        factory: IProtocolFactory,
        ready: Deferred[None] | None = None,
        tls: ServerTLS | None = None,
    ) -> None:
        """
        @param ready: Fires when the hub is ready for users; until then the
            port is listening (so a taken port fails start-up at once) but
            connections wait in the listen queue.
        @param tls: See L{ListenerService.tls}.
        """
        super().__init__(endpoint, factory)
        self.tls = tls
        self._ready = ready
        self.door = door
        self.description = description
        self.port: IListeningPort | None = None
        self.failed: Deferred[str] | None = None
        """Set when started by a reload: fires with the reason if it
        cannot listen, which is then logged rather than fatal."""

    def privilegedStartService(self) -> None:
        if self.failed is not None:
            Service.privilegedStartService(self)
            self._waitingForPort = self.endpoint.listen(self.factory)
            self._waitingForPort.addCallbacks(self._listening, self._cannot_listen)
            return
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            message = (
                f"tchat: the {self.door} door cannot listen on "
                f"{self.description}: {e.socketError}"
            )
            if self.daemon:
                # A daemonising twistd reports an Exception to the waiting
                # parent (which exits 1); SystemExit would leave it waiting.
                raise StartupError(message) from None
            raise SystemExit(message) from None
        assert self._waitingForPort is not None
        self._waitingForPort.addCallback(self._listening)

    def _cannot_listen(self, why: Failure) -> None:
        error = why.value
        reason = (
            str(error.socketError)
            if isinstance(error, CannotListenError)
            else why.getErrorMessage()
        )
        self._log.error(
            "the {door} door cannot listen on {description}: {reason}",
            door=self.door,
            description=self.description,
            reason=reason,
        )
        assert self.failed is not None
        if not self.failed.called:
            self.failed.callback(reason)

    def _listening(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        ready = self._ready
        if ready is not None and not ready.called:
            pause = getattr(port, "stopReading", None)
            resume = getattr(port, "startReading", None)
            if pause is not None and resume is not None:
                pause()
                ready.addCallback(lambda _: resume())
        self._log.info(
            "{door} door listening on {address} ({description})",
            door=self.door,
            address=describe_address(port.getHost()),
            description=self.description,
        )
        return port
