# -*- test-case-name: tests.test_cluster -*-
"""
One node's connections to the cluster's Redis, through C{txredisapi}.

Every node keeps two connections, both reconnecting with backoff: one for
commands and one subscribed to the cluster's bus channel.  Only imported in
cluster mode: the embedded server never loads this, nor C{txredisapi}.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any

import txredisapi  # type: ignore[import-untyped]
from twisted.internet.defer import (
    Deferred,
    FirstError,
    fail,
    gatherResults,
    succeed,
)
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from tchat.config import ClusterConfig
from tchat.seam import UnreachableError

_log = Logger()


class ClusterDownError(UnreachableError):
    """Redis cannot be reached now: the request was not sent."""


def dumps(value: Any) -> str:
    """C{value} as compact JSON, as the bus and the keys carry it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def logged(what: str) -> Callable[[Failure], None]:
    """
    An errback that logs a failed request (but not one refused because
    Redis is unreachable: that was said once already).
    """

    def log(why: Failure) -> None:
        if why.check(ClusterDownError):
            return
        _log.warn("cluster: {what} failed: {why}", what=what, why=why.value)

    return log


def _no_delay(transport: Any) -> None:
    """
    Turn Nagle's algorithm off: every message is a small write that must go
    at once, not wait for the previous one's acknowledgement.
    """
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        with suppress(OSError):  # not TCP (a unix socket)
            set_no_delay(True)


class _Commands(txredisapi.RedisProtocol):  # type: ignore[misc]
    """The command connection."""

    def connectionMade(self) -> Any:
        _no_delay(self.transport)
        return super().connectionMade()


class _BusSubscriber(txredisapi.SubscriberProtocol):  # type: ignore[misc]
    """
    The subscribed connection: hands what the bus carries to the link.

    One channel per C{SUBSCRIBE}: Redis answers a command naming several
    once per channel, and C{txredisapi} would take the later answers for
    those of the commands after it.
    """

    link: RedisLink

    def connectionMade(self) -> Any:
        _no_delay(self.transport)
        d = super().connectionMade()
        if isinstance(d, Deferred):
            d.addCallback(lambda _: self._subscribe())
        else:
            self._subscribe()
        return d

    def _subscribe(self) -> None:
        if not self.connected:
            return
        link = self.link
        link._bus = self
        keys = list(link.rooms)
        channels = [link.channel, *(link.room_channel(k) for k in keys)]
        subscribed = gatherResults(
            [self.subscribe(c) for c in channels], consumeErrors=True
        )
        subscribed.addCallback(lambda _: link._subscribed.update(keys))
        subscribed.addCallback(lambda _: link._learn_run())
        subscribed.addCallbacks(lambda _: link._changed(True), self._failed)

    def _failed(self, why: Failure) -> None:
        if isinstance(why.value, FirstError):
            why = why.value.subFailure
        self.link._failed(why)
        # Try again from the start, as after any lost connection.
        self.transport.loseConnection()

    def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
        try:
            event = json.loads(message)
        except (TypeError, ValueError):
            _log.warn("cluster: ignored a bus message that is not JSON")
            return
        try:
            self.link.on_event(event)
        except Exception:
            _log.failure("cluster: handling a bus message")

    def connectionLost(self, why: Failure) -> None:
        super().connectionLost(why)
        link = self.link
        if link._bus is self:
            link._bus = None
            link._subscribed.clear()
        link._changed(False)


class RedisLink:
    """
    One node's connections to Redis, and the commands the cluster uses.

    A Redis that stops answering (stopped, swapping, its host frozen) is
    noticed within C{stall_after} seconds, from the answers to the commands
    the node sends (its heartbeat sends one every few seconds): the link
    then drops its connections and counts as down, so the node serves its
    users alone, and reconnects until Redis answers again.

    @ivar up: Whether the bus subscription is live, so that what other
        nodes say arrives; commands are refused with L{ClusterDownError} while
        it is not.
    @ivar run: Which run of Redis the link is connected to (its C{run_id}):
        it changes when Redis restarts, which may have lost its latest
        writes.
    @ivar stalls: How often Redis stopped answering.
    @ivar rooms: The rooms (by key) whose channels this node listens to:
        those its users are in.
    @ivar before: Called before each command is sent: what waits to be
        sent in a batch (see L{tchat.cluster.outbox}) goes first, so that
        no command overtakes it.
    """

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        node: str,
        clock: IReactorTime,
        on_event: Callable[[dict[str, Any]], None],
        on_state: Callable[[bool], None],
        prefix: str = "tchat",
        password: str | None = None,
        dbid: int | None = None,
        stall_after: float = 2.5,
    ) -> None:
        self.endpoint = endpoint
        self.node = node
        self.on_event = on_event
        self.on_state = on_state
        self.prefix = prefix
        self.channel = f"{prefix}:bus"
        self.up = False
        self.run = ""
        self.stalls = 0
        self._password = password
        self._dbid = dbid
        self._commands: Any = None
        self._factories: list[Any] = []
        self._clock = clock
        self._stall_after = stall_after
        self._waiting = 0
        self._since = 0.0
        self._watch = LoopingCall(self._watch_answers)
        self._watch.clock = clock
        self._watched_at = 0.0
        self.rooms: set[str] = set()
        self._bus: _BusSubscriber | None = None
        self._subscribed: set[str] = set()
        self._subscribing: dict[str, list[Deferred[None]]] = {}
        self.before: Callable[[], None] = lambda: None

    def start(self) -> None:
        """Connect, and keep reconnecting until L{stop}."""
        commands = txredisapi.RedisFactory(
            None,
            self._dbid,
            1,
            isLazy=True,
            password=self._password,
            # A backstop: a stuck Redis is noticed sooner (_watch_answers).
            replyTimeout=30,
            convertNumbers=False,
        )
        commands.protocol = _Commands
        commands.startConnecting(self.endpoint)
        self._commands = commands.handler

        class Subscriber(_BusSubscriber):
            link = self

        bus = txredisapi.RedisFactory(
            None, self._dbid, 1, isLazy=True, password=self._password
        )
        bus.protocol = Subscriber
        for factory in (commands, bus):
            # Back within a few seconds of Redis: 1 s, 2 s, then every 5 s.
            factory.initialDelay, factory.factor, factory.maxDelay = 1.0, 2.0, 5.0
        bus.startConnecting(self.endpoint)
        self._factories = [commands, bus]
        self._watched_at = self._clock.seconds()
        self._watch.start(self._stall_after / 4, now=False)

    def stop(self) -> Deferred[Any]:
        """Close both connections and stop reconnecting."""
        if self._watch.running:
            self._watch.stop()
        return gatherResults(
            [f.disconnect() for f in self._factories], consumeErrors=True
        )

    def _answered(self, result: object) -> object:
        self._waiting -= 1
        self._since = self._clock.seconds()
        return result

    def _sent(self, d: Deferred[Any]) -> Deferred[Any]:
        """Watch for the answer to a command just sent."""
        if not self._waiting:
            self._since = self._clock.seconds()
        self._waiting += 1
        return d.addBoth(self._answered)

    def _watch_answers(self) -> None:
        """
        Drop the connections when Redis has not answered for
        C{stall_after} seconds while commands wait: it is stuck.
        """
        now = self._clock.seconds()
        late = now - self._watched_at > self._stall_after / 2
        self._watched_at = now
        if late:
            # This process was stuck itself (its answers may be waiting
            # to be read): look again next time.
            return
        if not (self.up and self._waiting and now - self._since > self._stall_after):
            return
        self.stalls += 1
        _log.warn(
            "cluster: Redis has not answered for {seconds:.1f} s: taking it as "
            "unreachable (serving this node's users alone) until it answers",
            seconds=now - self._since,
        )
        for factory in self._factories:
            for connection in list(factory.pool):
                connection.transport.abortConnection()
        self._changed(False)

    def _learn_run(self) -> Deferred[None]:
        """
        Find which run of Redis this is (C{INFO server}'s C{run_id}); where
        C{INFO} is not allowed, a token kept in Redis stands for it.
        """

        def parsed(info: Any) -> None:
            for line in str(info).splitlines():
                name, _, value = line.partition(":")
                if name == "run_id" and value.strip():
                    self.run = value.strip()
                    return
            raise ValueError("INFO server gave no run_id")

        def token(why: Failure) -> Deferred[None]:
            _log.info(
                "cluster: cannot read Redis's run id ({why}); keeping a token "
                "in {key} instead",
                why=why.value,
                key=self.key("run"),
            )
            key = self.key("run")
            d: Deferred[Any] = self._commands.execute_command(
                "SET", key, secrets.token_hex(8), "NX"
            )
            d.addCallback(lambda _: self._commands.execute_command("GET", key))
            return d.addCallback(lambda value: setattr(self, "run", str(value)))

        info: Deferred[Any] = self._commands.execute_command("INFO", "server")
        return info.addCallback(parsed).addErrback(token)

    def key(self, *parts: str) -> str:
        """A key of this cluster: the prefix and C{parts}, with colons."""
        return ":".join((self.prefix, *parts))

    def command(self, *args: Any) -> Deferred[Any]:
        """
        Send one command, unless Redis is unreachable (then fail at once
        with L{ClusterDownError} rather than wait for it).
        """
        if not self.up:
            return fail(ClusterDownError())
        self.before()
        return self._sent(self._commands.execute_command(*args))

    def eval(
        self, script: str, keys: Sequence[str], args: Sequence[Any]
    ) -> Deferred[Any]:
        """Run a Lua script (by its hash once Redis knows it)."""
        if not self.up:
            return fail(ClusterDownError())
        self.before()
        return self._sent(self._commands.eval(script, list(keys), list(args)))

    def publish(self, event: dict[str, Any], room: str | None = None) -> Deferred[Any]:
        """
        Publish an event to every node, this one included; with C{room}
        (a key), to the nodes listening to that room.
        """
        event["n"] = self.node
        channel = self.channel if room is None else self.room_channel(room)
        return self.command("PUBLISH", channel, dumps(event))

    # -- room channels ---------------------------------------------------------

    def room_channel(self, key: str) -> str:
        """The channel of the room whose key is C{key}."""
        return f"{self.channel}:{key}"

    def listen(self, key: str) -> Deferred[None]:
        """
        Receive what is published for room C{key}: fires once Redis has
        the subscription (what is published from then on arrives), at once
        while Redis cannot be reached (the link subscribes when it can).
        """
        self.rooms.add(key)
        bus = self._bus
        if key in self._subscribed or bus is None or not self.up:
            return succeed(None)
        waiters = self._subscribing.get(key)
        if waiters is None:
            waiters = self._subscribing[key] = []
            subscribed = bus.subscribe(self.room_channel(key))
            subscribed.addBoth(self._listened, key, bus)
        waiting: Deferred[None] = Deferred()
        waiters.append(waiting)
        return waiting

    def _listened(self, result: object, key: str, bus: _BusSubscriber) -> None:
        waiters = self._subscribing.pop(key, [])
        if isinstance(result, Failure):
            for waiting in waiters:
                waiting.errback(result)
            return
        if self._bus is bus:
            self._subscribed.add(key)
            if key not in self.rooms:
                self.ignore(key)  # ignored while subscribing
        for waiting in waiters:
            waiting.callback(None)

    def ignore(self, key: str) -> None:
        """Stop receiving what is published for room C{key}."""
        self.rooms.discard(key)
        bus = self._bus
        if key in self._subscribed and bus is not None:
            self._subscribed.discard(key)
            bus.unsubscribe(self.room_channel(key)).addErrback(
                logged("leaving a room's channel")
            )

    def _changed(self, up: bool) -> None:
        if up != self.up:
            self.up = up
            self.on_state(up)

    def _failed(self, why: Failure) -> None:
        _log.warn("cluster: could not join the bus: {why}", why=why.value)


def link_for(config: ClusterConfig, reactor: Any) -> RedisLink:
    """
    The link C{[cluster]} describes: Redis is taken as stuck after a
    quarter of C{node_timeout} without an answer (at least a second).
    """
    target = config.target()
    return RedisLink(
        clientFromString(reactor, target.endpoint),
        config.node_name(),
        reactor,
        lambda event: None,
        lambda up: None,
        prefix=config.prefix,
        password=target.password,
        dbid=target.db,
        stall_after=max(1.0, config.node_timeout / 4),
    )
