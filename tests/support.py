"""
Helpers shared by the test suites: fakes of the hub's peers, in-memory
clients of its doors, and what the suites need to read their answers.
Test modules import these from here, never from one another.
"""

import dataclasses
import json
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import txaio
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, execute, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from twisted.web.server import Site
from zope.interface import implementer

from tchat import events
from tchat.config import LimitsConfig, ServerConfig, WebConfig
from tchat.hub import ChatFactory
from tchat.interfaces import IParticipant
from tchat.model import Directory, Room, User, member
from tchat.passwords import BusyError, Checked
from tchat.seam import (
    Audience,
    Draft,
    Health,
    IBackplane,
    IHubInbox,
    Listing,
    Request,
)
from tchat.telnet import TelnetFactory
from tchat.text import nick_key
from tchat.web import WebChatFactory

T = TypeVar("T")


def require(available: bool, what: str) -> None:
    """
    Skip the calling test when a system component is missing, unless
    C{TCHAT_REQUIRE_ALL=1} (as in CI), where a missing component is a failure:
    a suite that silently skips proves nothing.

    @param available: Whether the component is there.
    @param what: What is missing and how to get it, for the message.
    @raise SkipTest: When missing and not required.
    @raise AssertionError: When missing and required.
    """
    if available:
        return
    if os.environ.get("TCHAT_REQUIRE_ALL") == "1":
        raise AssertionError(f"TCHAT_REQUIRE_ALL=1 but {what}")
    raise SkipTest(what)


def of(kind: type[T], received: Iterable[object]) -> list[T]:
    """The events of C{kind} among C{received}, in order."""
    return [event for event in received if isinstance(event, kind)]


class FakePasswords:
    """
    Passwords "hashed" as C{v1$PASSWORD}, answered at once unless held.

    @ivar version: The hash version made now: a password that matches a
        hash of another version is hashed again (C{Checked.rehashed}).
    @ivar busy: Every hash and check fails with L{BusyError}.
    @ivar held: While not C{None}, the answers that wait for L{release}.
    @ivar checked: How many checks were asked for.
    """

    def __init__(self) -> None:
        self.version = 1
        self.busy = False
        self.held: list[Callable[[], None]] | None = None
        self.checked = 0

    def _answer(self, value: T) -> Deferred[T]:
        if self.busy:
            return fail(BusyError())
        if self.held is None:
            return succeed(value)
        d: Deferred[T] = Deferred()
        self.held.append(lambda: d.callback(value))
        return d

    def hash(self, password: str) -> Deferred[str]:
        return self._answer(f"v{self.version}${password}")

    def check(self, password: str, encoded: str | None) -> Deferred[Checked]:
        self.checked += 1
        ok = encoded is not None and encoded.partition("$")[2] == password
        fresh = f"v{self.version}${password}"
        return self._answer(Checked(ok, fresh if ok and encoded != fresh else None))

    def hold(self) -> None:
        """From now on, answers wait for L{release}."""
        self.held = []

    def release(self) -> None:
        """Answer everything held, in order, and stop holding."""
        held, self.held = self.held or [], None
        for answer in held:
            answer()


@implementer(IParticipant)
class QuietParticipant:
    """
    A user connected through C{door} who ignores what the hub tells them.
    """

    def __init__(self, door: str, address: str | None = None) -> None:
        self.door = door
        self.address = address

    def attached(self, user: object) -> None:
        pass

    def deliver(self, event: object, renderings: object) -> None:
        pass

    def close(self, reason: str, why: str = "normal") -> None:
        pass

    def abort(self) -> None:
        pass


@implementer(IParticipant)
class FakeParticipant:
    """
    Records what the hub tells one user.
    """

    def __init__(self, door: str = "telnet", address: str | None = None) -> None:
        self.door = door
        self.address = address
        self.user: User | None = None
        self.received: list[object] = []
        self.renderings: list[events.Renderings] = []
        self.closed: str | None = None
        self.close_why: str | None = None
        self.aborted = False

    def attached(self, user: object) -> None:
        assert user is None or isinstance(user, User)
        self.user = user

    def deliver(self, event: object, renderings: object) -> None:
        assert isinstance(renderings, events.Renderings)
        self.received.append(event)
        self.renderings.append(renderings)

    def close(self, reason: str, why: str = "normal") -> None:
        self.closed, self.close_why = reason, why

    def abort(self) -> None:
        self.aborted = True

    def take(self) -> list[object]:
        """
        Return and forget what was received so far.
        """
        received, self.received = self.received, []
        return received


class Scrape:
    """
    One C{/metrics} answer as Prometheus parses it.

    @ivar families: The metric families, by name (a counter's without its
        C{_total}).
    """

    def __init__(self, text: str) -> None:
        self.families: dict[str, Metric] = {
            family.name: family for family in text_string_to_metric_families(text)
        }
        self._values = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in self.families.values()
            for sample in family.samples
        }

    def value(self, name: str, **labels: str) -> float:
        """
        @return: The value of the sample C{name} with exactly C{labels}.
        @raise KeyError: If there is no such sample.
        """
        return self._values[(name, frozenset(labels.items()))]

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """
        @return: The values of the samples C{name}, by their C{label}.
        """
        return {
            dict(labels)[label]: value
            for (sample, labels), value in self._values.items()
            if sample == name
        }


def request(
    site: Site, path: bytes, method: bytes = b"GET", extra: bytes = b""
) -> tuple[int, dict[bytes, bytes], bytes]:
    """
    Send one HTTP/1.1 request to C{site}.

    @param extra: More header lines, each ended with CR LF.

    @return: The response's status code, headers (lower-cased names) and body.
    """
    protocol = site.buildProtocol(None)
    assert protocol is not None
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(
        method
        + b" "
        + path
        + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + extra
        + b"\r\n"
    )
    head, _, body = transport.value().partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b": ")
        headers[name.lower()] = value
    protocol.connectionLost(Failure(ConnectionDone()))
    return int(status.split()[1]), headers, body


@implementer(ITCPTransport)
class TCPStringTransport(StringTransport):
    """
    A string transport that records TCP socket options.
    """

    nodelay = False
    keepalive = False

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.nodelay = enabled

    def getTcpNoDelay(self) -> bool:
        return self.nodelay

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self.keepalive = enabled

    def getTcpKeepAlive(self) -> bool:
        return self.keepalive

    def loseWriteConnection(self) -> None:
        self.loseConnection()


class TelnetClient:
    """
    One telnet user on an in-memory transport.
    """

    def __init__(self, factory: TelnetFactory) -> None:
        self.protocol = factory.buildProtocol(None)
        self.transport = TCPStringTransport()
        self.protocol.makeConnection(self.transport)

    @property
    def user(self) -> User:
        user = self.protocol.protocol.user  # type: ignore[union-attr]
        assert isinstance(user, User)
        return user

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def take(self) -> bytes:
        value: bytes = self.transport.value()
        self.transport.clear()
        return value

    def lines(self) -> list[str]:
        return self.take().decode("utf-8").split("\r\n")[:-1]


class WebClient(WebSocketClientProtocol):
    """
    A real Autobahn WebSocket client that records what it gets.
    """

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[dict[str, Any]] = []
        self.opened = False
        self.closed: tuple[bool, int | None, str | None] | None = None

    def onOpen(self) -> None:
        self.opened = True

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.frames.append(json.loads(payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed = (wasClean, code, reason)

    def send(self, **fields: Any) -> None:
        self.sendMessage(json.dumps(fields).encode())

    def take(self) -> list[dict[str, Any]]:
        frames, self.frames = self.frames, []
        return frames


def started_hub(
    testcase: SynchronousTestCase,
    clock: Clock,
    *,
    server: ServerConfig | None = None,
    rng: random.Random | None = None,
    backplane: IBackplane | None = None,
    **options: Any,
) -> ChatFactory:
    """
    A started hub on C{clock}, for tests that drive users through
    C{hub.execute} or the hub's concerns, never through a door: those users
    would look silent, so there is no silent-connection sweep
    (C{[limits] silent_timeout = 0}) unless C{limits} says otherwise.

    @param options: Further arguments of L{ChatFactory} (C{history},
        C{store}, C{operators}, C{verify}, C{limits}).
    """
    options.setdefault("limits", LimitsConfig(silent_timeout=0))
    hub = ChatFactory(
        server if server is not None else ServerConfig(reconnect_grace=0),
        clock,
        rng if rng is not None else random.Random(1),
        backplane=backplane,
        **options,
    )
    testcase.successResultOf(hub.start())
    return hub


def autobahn_on(testcase: SynchronousTestCase, clock: Clock) -> None:
    """
    Run Autobahn's timers (handshake timeouts, pings) on C{clock} for the
    rest of C{testcase}: they run on txaio's loop.
    """
    config: Any = txaio.config  # type: ignore[attr-defined]
    previous = config.loop
    config.loop = clock
    testcase.addCleanup(setattr, config, "loop", previous)


class WebTestCase(SynchronousTestCase):
    """
    A hub on a L{Clock} and real Autobahn clients connected to its web
    door in memory.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        autobahn_on(self, self.clock)
        self.hub = ChatFactory(
            ServerConfig(reconnect_grace=0),
            self.clock,
            random.Random(3),
            limits=LimitsConfig(max_frame=1024),
        )
        self.config = WebConfig(ping_interval=30, ping_timeout=10)
        self.pumps: list[iosim.IOPump] = []

    def factory(self, config: WebConfig | None = None) -> WebChatFactory:
        return WebChatFactory(self.hub, config or self.config)

    def connect(
        self,
        factory: WebChatFactory | None = None,
        origin: str | None = None,
        nick: str | None = None,
    ) -> tuple[WebClient, Any, iosim.IOPump]:
        """
        Connect one client through the full WebSocket handshake.
        """
        factory = factory or self.factory()
        address = IPv4Address("TCP", "127.0.0.1", 8080)
        server = factory.buildProtocol(address)
        client_factory = WebSocketClientFactory("ws://127.0.0.1:8080/ws", origin=origin)
        client_factory.protocol = WebClient
        client = client_factory.buildProtocol(address)
        assert isinstance(client, WebClient)
        pump = iosim.connect(
            server,
            iosim.FakeTransport(server, isServer=True),
            client,
            iosim.FakeTransport(client, isServer=False),
            greet=False,
        )
        self.pumps.append(pump)
        pump.flush()
        if nick is not None:
            client.send(type="nick", name=nick)
            self.flush()
            client.take()
        return client, server, pump

    def flush(self) -> None:
        for _ in range(3):
            for pump in self.pumps:
                pump.flush()

    def people(self, *nicks: str) -> list[WebClient]:
        clients = [self.connect(nick=nick)[0] for nick in nicks]
        self.flush()
        for client in clients:
            client.take()
        return clients


class FakeChat:
    """
    The other nodes of one chat, in memory: several hubs, each given a
    L{FakeNode} as its backplane, share room numbering, nick claims,
    membership and events, without Redis, sockets or real time.

    Replies can be held back (L{hold}, then L{release}) to play a slow
    network: what each node asks then waits, in order.

    @ivar nodes: Every node, by name.
    """

    def __init__(self) -> None:
        self.nodes: dict[str, FakeNode] = {}
        self.last_ids: dict[str, int] = {}
        self.claims: dict[str, tuple[str, str]] = {}
        self.ban_id = 0
        self._held: list[Callable[[], None]] | None = None

    def node(self, name: str) -> "FakeNode":
        """A new node of the chat."""
        node = self.nodes[name] = FakeNode(self, name)
        return node

    def later(self, answer: Callable[[], T]) -> Deferred[T]:
        """C{answer()}, at once or, while held, on L{release}."""
        if self._held is None:
            return succeed(answer())
        d: Deferred[T] = Deferred()
        self._held.append(lambda: d.callback(answer()))
        return d

    def hold(self) -> None:
        """From now on, answers wait for L{release}."""
        self._held = []

    def release(self) -> None:
        """Answer everything held, in order, and stop holding."""
        held, self._held = self._held or [], None
        for answer in held:
            answer()


@implementer(IBackplane)
class FakeNode:
    """
    One node's backplane in a L{FakeChat}: what the Redis backplane does,
    minus Redis.
    """

    def __init__(self, chat: FakeChat, name: str) -> None:
        self.chat = chat
        self.name = name
        self.inbox: IHubInbox | None = None
        self.directory: Directory | None = None

    def _others(self) -> list["FakeNode"]:
        return [n for n in self.chat.nodes.values() if n is not self]

    def attach(self, inbox: IHubInbox, directory: Directory) -> None:
        self.inbox, self.directory = inbox, directory

    def start(self) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        return succeed(None)

    def say(self, sender: User, room: Room, draft: Draft) -> None:
        def number() -> None:
            key = room.key
            last = self.chat.last_ids[key] = self.chat.last_ids.get(key, 0) + 1
            for node in self.chat.nodes.values():
                assert node.inbox is not None and node.directory is not None
                here = node.directory.room(room.name)
                if here is None:
                    here = node.directory.new_room(room.name, room.epoch)
                message = draft.message(sender, here, last)
                node.inbox.message(here, message, time.perf_counter())

        self.chat.later(number)

    def ensure(self, rooms: Sequence[Room]) -> Deferred[None]:
        return self.chat.later(lambda: None)

    def share(self, event: events.Event, audience: Audience) -> None:
        shared = dataclasses.replace(audience, users=())
        for node in self._others():
            assert node.inbox is not None
            node.inbox.event(event, shared)

    def ask(self, request: Request) -> Deferred[None]:
        for node in self._others():
            assert node.inbox is not None
            node.inbox.request(request)
        return succeed(None)

    def joined(self, user: User, room: Room) -> None:
        pass

    def parted(self, user: User, room: Room) -> None:
        pass

    def renamed(self, user: User, old: str) -> None:
        if nick_key(old) != user.key:
            self.release(user, old)

    def left(self, user: User) -> None:
        if not user.moved:
            self.chat.claims.pop(user.key, None)

    def claim(
        self, user: User, nick: str, takeover: bool = False, force: bool = False
    ) -> Deferred[bool]:
        def answer() -> bool:
            key, owner = nick_key(nick), (self.name, user.code)
            return self.chat.claims.setdefault(key, owner) == owner

        return self.chat.later(answer)

    def release(self, user: User, nick: str) -> None:
        if self.chat.claims.get(nick_key(nick)) == (self.name, user.code):
            del self.chat.claims[nick_key(nick)]

    def locate(self, nick: str) -> Deferred[str | None]:
        def answer() -> str | None:
            for node in self._others():
                assert node.directory is not None
                user = node.directory.user(nick)
                if user is not None:
                    return user.nick
            return None

        return self.chat.later(answer)

    def rooms(self, offset: int, count: int) -> Deferred[Listing[events.RoomInfo]]:
        def answer() -> Listing[events.RoomInfo]:
            counts: dict[str, tuple[str, int, str | None]] = {}
            for node in self.chat.nodes.values():
                assert node.directory is not None
                for room in node.directory.rooms.values():
                    _, members, topic = counts.get(room.key, (room.name, 0, None))
                    counts[room.key] = (room.name, members + len(room.members), topic)
            page = sorted(counts)[offset : offset + count]
            return Listing(
                tuple(events.RoomInfo(*counts[key]) for key in page), total=len(counts)
            )

        return self.chat.later(answer)

    def updated(self, user: User) -> None:
        pass

    def members(self, room: Room) -> Deferred[Listing[events.Member]]:
        def answer() -> Listing[events.Member]:
            found = []
            for node in self.chat.nodes.values():
                assert node.directory is not None
                here = node.directory.room(room.name)
                if here is not None:
                    found += [member(m) for m in here.members]
            return Listing(tuple(sorted(found, key=lambda m: m.nick.casefold())))

        return self.chat.later(answer)

    def ban_ids(self, count: int, above: int) -> Deferred[list[int]]:
        first = self.chat.ban_id + 1
        self.chat.ban_id += count
        return succeed(list(range(first, first + count)))

    def health(self) -> Health:
        return Health()

    def metrics(self) -> Iterable[Metric]:
        return ()


class FakeThread:
    """
    Stands in for L{SQLiteStore}'s thread.  Each call runs at once, or,
    while C{held}, waits until the test calls L{run}: a test can then look
    at the store with a batch in flight.
    """

    def __init__(self) -> None:
        self.held = False
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]]
        self.calls = []

    def __call__(self, f: Callable[..., T], /, *args: Any) -> Deferred[T]:
        if not self.held:
            return execute(f, *args)
        done: Deferred[T] = Deferred()
        self.calls.append((f, args, done))
        return done

    def run(self) -> int:
        """
        Run the held calls, and those they lead to, in order.

        @return: How many ran.
        """
        ran = 0
        while self.calls:
            f, args, done = self.calls.pop(0)
            execute(f, *args).chainDeferred(done)
            ran += 1
        return ran
