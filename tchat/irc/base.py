# -*- test-case-name: tests.test_irc -*-
"""
What the IRC door's parts share: one client's state, and how it is
answered (L{Base}).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.words.protocols import irc as words

from tchat import commands as c
from tchat import events
from tchat.hub import ChatFactory
from tchat.irc.wire import (
    PLAIN,
    RPL_TOPICWHOTIME,
    Wire,
)
from tchat.limits import TokenBucket
from tchat.model import User
from tchat.output import OutputQueue


@lru_cache(maxsize=4)
def server_word(name: str) -> str:
    """
    C{[server] name} as one word for IRC (every reply starts with it: made
    once per name, not per reply).
    """
    return "".join(ch if ch.isalnum() or ch in ".-_" else "-" for ch in name) or (
        "tchat"
    )


NO_CAPS: frozenset[str] = frozenset()
"""The capabilities of a client that enabled none (one set for them all)."""


class Base:
    """
    One IRC client's state and the ways to answer it, shared by the
    commands (L{tchat.irc.commands}), the rendering of events
    (L{tchat.irc.render}) and the connection (L{tchat.irc.protocol}).

    @ivar user: The hub's record of this user: from the first need of one
        (registration, or SASL before it) on.
    @ivar registered: The welcome numerics were sent.
    @ivar caps: The capabilities the client enabled.
    """

    # One per connection, thousands held at a few KiB each: what it and
    # its Twisted bases (Protocol, LineReceiver: _buffer, _busyReceiving,
    # connected, factory, transport) keep goes in slots, set in __init__,
    # not in a dict per connection (such a dict was 0.8 KiB).
    __slots__ = (
        "_asked",
        "_buffer",
        "_busyReceiving",
        "_context",
        "_discarding",
        "_early",
        "_list_only",
        "_listing",
        "_nick_tried",
        "_queries",
        "_query_drops",
        "_quiet",
        "caps",
        "clock",
        "connected",
        "door",
        "dropped",
        "factory",
        "hub",
        "login_by",
        "negotiating",
        "nick_wanted",
        "oper_pending",
        "password",
        "queue",
        "realname",
        "registered",
        "sasl",
        "sasl_buffer",
        "sasl_pending",
        "transport",
        "user",
        "user_given",
        "wire",
    )

    def __init__(self, hub: ChatFactory, door: str, clock: IReactorTime) -> None:
        self.factory: Any = None
        self.connected = 0
        self.transport: Any = None
        self._buffer = b""
        self._busyReceiving = False
        self.hub = hub
        self.door = door
        self.clock = clock
        self.user: User | None = None
        self.registered = False
        self.caps: frozenset[str] = NO_CAPS
        self.wire: Wire = PLAIN
        self.nick_wanted: str | None = None
        self._nick_tried: str | None = None
        self.user_given = False
        self.negotiating = False
        self.password: str | None = None
        self.sasl: str | None = None
        self.sasl_buffer = ""
        self.sasl_pending = False
        self.login_by: str | None = None
        """C{SASL} or C{PASS}: what the login in flight (C{sasl_pending}) came by."""
        self.oper_pending = False
        self.queue: OutputQueue | None = None
        self.dropped = False
        # Events that come before the welcome wait here (see deliver).
        self._early: list[tuple[object, events.Renderings]] | None = []
        self._asked: list[tuple[str, str]] | None = None
        self.realname: str | None = None
        self._listing: list[events.RoomInfo] | None = None
        self._list_only: set[str] | None = None
        self._context: tuple[str, str] = ("", "")
        self._quiet = 0
        self._discarding = False
        self._queries: TokenBucket | None = None
        self._query_drops = 0

    @property
    def server(self) -> str:
        """The server's name on IRC: one word."""
        return server_word(self.hub.settings.server.name)

    @property
    def nick(self) -> str:
        """The nick IRC replies are addressed to (C{*} before one is known)."""
        if self.user is not None and self.registered:
            return self.user.nick
        return self.nick_wanted or "*"

    def send(self, data: bytes) -> None:
        """Send IRC lines (CR LF ended) through the output queue."""
        queue = self.queue
        if queue is not None:
            queue.push(data)
        elif self.transport is not None:
            self.transport.write(data)

    def reply(self, numeric: str, *params: str) -> None:
        """A numeric to this client; the last parameter is the trailing one."""
        *middle, last = params if params else ("",)
        head = " ".join((f":{self.server}", numeric, self.nick, *middle))
        self.send(f"{head} :{last}\r\n".encode())

    def _notice_line(self, text: str) -> bytes:
        return self.wire.message(self.server, "NOTICE", self.nick, text)

    def notice(self, text: str) -> None:
        """A notice from the server to this client."""
        self.send(self._notice_line(text))

    def execute(self, command: Any, context: tuple[str, str] = ("", "")) -> None:
        """Run a hub command for this user, remembering what it was for."""
        user = self.user
        if user is None or not user.connected:
            return
        self._context = context
        try:
            self.hub.execute(user, command)
        finally:
            self._context = ("", "")

    def quietly(self, command: Any, context: tuple[str, str] = ("", "")) -> None:
        """L{execute}, its confirmations (the IRC replies say it) unsaid."""
        self._quiet += 1
        try:
            self.execute(command, context)
        finally:
            self._quiet -= 1

    def _motd(self, lines: Iterable[str]) -> None:
        lines = list(lines)
        if not lines:
            self.reply(words.ERR_NOMOTD, "MOTD File is missing")
            return
        self.reply(words.RPL_MOTDSTART, f"- {self.server} Message of the day -")
        for line in lines:
            self.reply(words.RPL_MOTD, f"- {line}")
        self.reply(words.RPL_ENDOFMOTD, "End of /MOTD command")

    def _room_named(self, name: str) -> str | None:
        """The name of the user's room called C{name}, if they are in it."""
        user = self.user
        assert user is not None
        folded = name.casefold()
        for room in user.rooms:
            if room.name.casefold() == folded:
                return room.name
        return None

    def _ask(self, kind: str, name: str) -> None:
        """NAMES or WHO of a room: the hub's member list, shown as C{kind}."""
        if self._asked is None:
            self._asked = []
        self._asked.append((kind, name))
        # (An error in answer is turned into the list's end: see _error.)
        self.execute(c.WhoIs(name), (kind.upper(), name))

    def realname_of(self, nick: str, door: str) -> str:
        """What WHO and WHOIS show as a user's real name."""
        other = self.hub.directory.user(nick)
        given = getattr(other.participant, "realname", None) if other else None
        return given if isinstance(given, str) else f"{nick} ({door})"

    def _who_line(self, room: str, member: events.Member) -> None:
        flags = ("G" if member.away else "H") + ("r" if member.registered else "")
        self.reply(
            words.RPL_WHOREPLY,
            room,
            member.nick,
            f"{member.door}.tchat",
            self.server,
            member.nick,
            flags,
            f"0 {self.realname_of(member.nick, member.door)}",
        )

    def _joined(self, room: str) -> None:
        """The client's own JOIN: the topic, then the names, as servers do."""
        known = self.hub.directory.room(room)
        if known is not None and known.topic:
            self.reply(words.RPL_TOPIC, room, known.topic)
            if known.topic_by:
                self.reply(RPL_TOPICWHOTIME, room, known.topic_by, "0")
        self._ask("names", room)

    def _lines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.notice(line)

    # What the connection does (L{tchat.irc.protocol.IRCConnection}).

    def _welcome(self) -> None:
        raise NotImplementedError

    def _try_register(self) -> None:
        raise NotImplementedError

    def close(self, reason: str, why: str = "normal") -> None:
        raise NotImplementedError
