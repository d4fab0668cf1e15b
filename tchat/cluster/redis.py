# -*- test-case-name: tests.test_cluster -*-
"""
One node's connections to the cluster's Redis, through C{txredisapi}.

Every node keeps two connections, both reconnecting with backoff: one for
commands and one subscribed to the cluster's bus channel.  Only imported in
cluster mode: the embedded server never loads this, nor C{txredisapi}.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any

import txredisapi  # type: ignore[import-untyped]
from twisted.internet.defer import Deferred, fail, gatherResults
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IStreamClientEndpoint
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
    """The subscribed connection: hands what the bus carries to the link."""

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
        self.subscribe(self.link.channel).addCallbacks(
            lambda _: self.link._changed(True), self.link._failed
        )

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
        self.link._changed(False)


class RedisLink:
    """
    One node's connections to Redis, and the commands the cluster uses.

    @ivar up: Whether the bus subscription is live, so that what other
        nodes say arrives; commands are refused with L{ClusterDownError} while
        it is not.
    """

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        node: str,
        on_event: Callable[[dict[str, Any]], None],
        on_state: Callable[[bool], None],
        prefix: str = "tchat",
        password: str | None = None,
        dbid: int | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.node = node
        self.on_event = on_event
        self.on_state = on_state
        self.prefix = prefix
        self.channel = f"{prefix}:bus"
        self.up = False
        self._password = password
        self._dbid = dbid
        self._commands: Any = None
        self._factories: list[Any] = []

    def start(self) -> None:
        """Connect, and keep reconnecting until L{stop}."""
        commands = txredisapi.RedisFactory(
            None,
            self._dbid,
            1,
            isLazy=True,
            password=self._password,
            replyTimeout=10,
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

    def stop(self) -> Deferred[Any]:
        """Close both connections and stop reconnecting."""
        return gatherResults(
            [f.disconnect() for f in self._factories], consumeErrors=True
        )

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
        d: Deferred[Any] = self._commands.execute_command(*args)
        return d

    def eval(
        self, script: str, keys: Sequence[str], args: Sequence[Any]
    ) -> Deferred[Any]:
        """Run a Lua script (by its hash once Redis knows it)."""
        if not self.up:
            return fail(ClusterDownError())
        d: Deferred[Any] = self._commands.eval(script, list(keys), list(args))
        return d

    def publish(self, event: dict[str, Any]) -> Deferred[Any]:
        """Publish an event to every node, this one included."""
        event["n"] = self.node
        return self.command("PUBLISH", self.channel, dumps(event))

    def _changed(self, up: bool) -> None:
        if up != self.up:
            self.up = up
            self.on_state(up)

    def _failed(self, why: Failure) -> None:
        _log.warn("cluster: could not subscribe to the bus: {why}", why=why.value)


def link_for(config: ClusterConfig, reactor: Any) -> RedisLink:
    """The link C{[cluster]} describes."""
    target = config.target()
    return RedisLink(
        clientFromString(reactor, target.endpoint),
        config.node_name(),
        lambda event: None,
        lambda up: None,
        prefix=config.prefix,
        password=target.password,
        dbid=target.db,
    )
