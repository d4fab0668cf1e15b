# -*- test-case-name: tests.test_irc -*-
"""
One IRC client's connection: reading lines within the limits, the
registration (C{CAP}, SASL, C{PASS}, C{NICK}, C{USER}), and the seam with
the hub (L{IParticipant}).
"""

from __future__ import annotations

import base64
from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IReactorTime,
    ISSLTransport,
    ITCPTransport,
)
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from twisted.words.protocols import irc as words
from zope.interface import implementer

from tchat import commands as c
from tchat import events
from tchat.endpoints import client_address
from tchat.gate import line_refusal, unwrapped
from tchat.hub import ChatFactory
from tchat.interfaces import IParticipant
from tchat.irc.commands import Commands
from tchat.irc.render import RENDER, Rendering, message_line
from tchat.irc.wire import (
    CAPABILITIES,
    EARLY_MOST,
    ERR_INPUTTOOLONG,
    ERR_SASLABORTED,
    ERR_SASLALREADY,
    ERR_SASLFAIL,
    ERR_SASLTOOLONG,
    HISTORY_MAX,
    MAX_CLIENT_TAGS,
    MAX_LINE,
    MAX_TAGGED,
    PING_AFTER,
    PING_TIMEOUT,
    QUERIES_PER_SECOND,
    QUERY_BURST,
    RPL_LOGGEDIN,
    RPL_SASLMECHS,
    SASL_MOST,
    TOPIC_MAX,
    Wire,
    mask,
    parse_line,
)
from tchat.limits import TokenBucket
from tchat.model import User
from tchat.output import OutputQueue, client_queue
from tchat.text import NICK_MAX, ROOM_MAX, clean_text, nick_key

_BEFORE_REGISTRATION = frozenset(
    {"CAP", "AUTHENTICATE", "PASS", "NICK", "USER", "PING", "PONG", "QUIT"}
)
_CHAT = frozenset(
    {"PRIVMSG", "NOTICE", "TOPIC", "NICK", "JOIN", "PART", "KICK", "OPER"}
)


_log = Logger()

SWEEP_EVERY = 5.0
"""Seconds between the keepalive's looks at every IRC connection."""


class Keepalive:
    """
    One timer for all of a door's IRC connections (not one each: an idle
    connection should cost only its memory): every L{SWEEP_EVERY} seconds
    each connection checks its own silence (L{IRCConnection.check}).
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._connections: set[IRCConnection] = set()
        self._loop: LoopingCall | None = None

    def add(self, connection: IRCConnection) -> None:
        self._connections.add(connection)
        if self._loop is None:
            self._loop = LoopingCall(self._sweep)
            self._loop.clock = self._clock
            self._loop.start(SWEEP_EVERY, now=False)

    def discard(self, connection: IRCConnection) -> None:
        self._connections.discard(connection)
        if not self._connections and self._loop is not None:
            self._loop.stop()
            self._loop = None

    def _sweep(self) -> None:
        now = self._clock.seconds()
        for connection in list(self._connections):
            try:
                connection.check(now)
            except Exception:
                _log.failure("checking an IRC connection")


@implementer(IParticipant)
class IRCConnection(Rendering, Commands, LineReceiver):
    """
    One IRC client: its lines in, the hub's events out.
    """

    delimiter = b"\n"
    MAX_LENGTH = MAX_TAGGED
    lands = False
    """The hub does not put IRC users in the default room."""
    pings = True
    """The door checks that the client is alive itself (PING)."""

    __slots__ = ("connected_at", "heard_at", "keepalive", "pinged_at")

    def __init__(
        self,
        hub: ChatFactory,
        door: str,
        clock: IReactorTime,
        keepalive: Keepalive | None = None,
    ) -> None:
        super().__init__(hub, door, clock)
        self.keepalive = keepalive if keepalive is not None else Keepalive(clock)
        self.heard_at = self.connected_at = 0.0
        self.pinged_at: float | None = None

    def connectionMade(self) -> None:
        self.queue = client_queue(
            unwrapped(self.transport),
            self.hub.limits.output_queue,
            self._overflow,
            self.clock,
            self.hub.batcher,
        )
        self.heard_at = self.connected_at = self.clock.seconds()
        self.keepalive.add(self)

    def check(self, now: float) -> None:
        """
        Called by the L{Keepalive} every few seconds: let go of a client that
        did not register within C{[limits] silent_timeout}; PING one that
        has been silent for L{PING_AFTER}, and close one that did not answer
        within L{PING_TIMEOUT}.
        """
        if not self.registered:
            deadline = self.hub.limits.silent_timeout
            if deadline and now - self.connected_at >= deadline:
                _log.info("irc: a client that did not register in time was let go")
                self.hub.metrics.drop("silent")
                self._end("registration timed out")
                return
        quiet = now - self.heard_at
        if self.pinged_at is not None:
            if now - self.pinged_at >= PING_TIMEOUT:
                self._end("ping timeout")
        elif quiet >= PING_AFTER:
            self.pinged_at = now
            self.send(f"PING :{self.server}\r\n".encode())

    def _end(self, why: str) -> None:
        """Close the connection with an ERROR saying C{why}."""
        self.keepalive.discard(self)
        self.send(f"ERROR :Closing link: {why}\r\n".encode())
        if self.user is not None:
            self.hub.disconnect(self.user, why)
        self.close(why)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.keepalive.discard(self)
        user = self.user
        if user is not None:
            clean = reason.check(ConnectionDone) is not None
            message = reason.getErrorMessage()
            self.hub.disconnect(user, message, clean=clean and not self.dropped)

    def _overflow(self, queue: OutputQueue) -> None:
        """
        The client is C{queue.limit} bytes behind: drop its oldest lines
        (with a notice saying so), or send it off if it has read nothing
        for C{[limits] stuck_timeout}.
        """
        if queue.stuck_for() >= self.hub.limits.stuck_timeout:
            waiting = queue.size
            queue.stopProducing()
            if self.user is not None:
                self.hub.too_slow(self.user, waiting)
            self.dropped = True
            self.abort()
            return
        dropped = queue.drop_oldest(queue.limit // 2)
        lines = sum(chunk.count(b"\r\n") for chunk in dropped)
        if lines:
            queue.put_first(
                self._notice_line(f"{lines} lines were dropped: you read too slowly")
            )
            self.hub.metrics.drop("slow-reader-lines")

    def dataReceived(self, data: bytes) -> None:
        if self.transport is None or getattr(self.transport, "disconnecting", False):
            return
        # Alive: any line answers a PING.
        self.heard_at = self.clock.seconds()
        self.pinged_at = None
        if self._discarding:
            end = data.find(b"\n")
            if end < 0:
                return
            self._discarding = False
            data = data[end + 1 :]
        super().dataReceived(data)

    def lineLengthExceeded(self, line: bytes) -> None:
        self.reply(ERR_INPUTTOOLONG, "Input line was too long")
        end = line.find(b"\n")
        if end < 0:
            self._discarding = True
            self.clearLineBuffer()
        else:
            rest = line[end + 1 :]
            self.clearLineBuffer()
            self.dataReceived(rest)

    def lineReceived(self, line: bytes) -> None:
        line = line.rstrip(b"\r")
        if not line.strip():
            return
        tags, _, body = (
            line.partition(b" ") if line.startswith(b"@") else (b"", b"", line)
        )
        if len(body) > MAX_LINE - 2 or len(tags) > MAX_CLIENT_TAGS:
            self.reply(ERR_INPUTTOOLONG, "Input line was too long")
            return
        text = line.decode("utf-8", errors="replace").replace("\0", "")
        try:
            _tags, command, params = parse_line(text)
        except ValueError:
            return  # a prefix or tags and nothing else: ignored, as servers do
        if not command.isascii() or not command.isalnum():
            self.reply(words.ERR_UNKNOWNCOMMAND, command[:32], "Unknown command")
            return
        handler = getattr(self, f"irc_{command}", None)
        if not self.registered and command not in _BEFORE_REGISTRATION:
            if handler is None:
                self.reply(words.ERR_UNKNOWNCOMMAND, command, "Unknown command")
            else:
                self.reply(words.ERR_NOTREGISTERED, "You have not registered")
            return
        if handler is None:
            self.reply(words.ERR_UNKNOWNCOMMAND, command, "Unknown command")
            return
        if self.registered and not self._allowed(command):
            return
        handler(params)

    def _allowed(self, command: str) -> bool:
        """
        Whether a line may be handled now: chat counts against the hub's
        flood limits, the rest against the door's query bucket.
        """
        user = self.user
        assert user is not None
        if command in _CHAT:
            return self.hub.received(user)
        if command in ("PING", "PONG", "QUIT"):
            return True
        now = self.clock.seconds()
        if self._queries is None:
            self._queries = TokenBucket(QUERIES_PER_SECOND, QUERY_BURST, now)
        if self._queries.take(now):
            self._query_drops = 0
            return True
        self._query_drops += 1
        if self._query_drops == 1:
            self.notice("slow down: your queries are dropped until you do")
        limit = self.hub.limits.flood_disconnect
        if limit and self._query_drops >= limit:
            self.hub.misbehaved(user, "flooding: too many queries")
        return False

    def irc_CAP(self, params: list[str]) -> None:
        if not params:
            self.reply(words.ERR_NEEDMOREPARAMS, "CAP", "Not enough parameters")
            return
        sub = params[0].upper()
        if sub == "LS":
            if not self.registered:
                self.negotiating = True
            new = len(params) > 1 and params[1].isdecimal() and int(params[1]) >= 302
            offered = " ".join(
                f"{name}={value}" if new and value else name
                for name, value in CAPABILITIES.items()
            )
            self.send(f":{self.server} CAP {self.nick} LS :{offered}\r\n".encode())
        elif sub == "LIST":
            enabled = " ".join(sorted(self.caps))
            self.send(f":{self.server} CAP {self.nick} LIST :{enabled}\r\n".encode())
        elif sub == "REQ":
            if not self.registered:
                self.negotiating = True
            asked = params[1] if len(params) > 1 else ""
            names = asked.split()
            wanted = {n.lstrip("-") for n in names}
            if not names or not wanted <= set(CAPABILITIES):
                self.send(f":{self.server} CAP {self.nick} NAK :{asked}\r\n".encode())
                return
            caps = set(self.caps)
            for name in names:
                if name.startswith("-"):
                    caps.discard(name[1:])
                else:
                    caps.add(name)
            self.caps = frozenset(caps)
            self.wire = Wire(caps)
            self.send(f":{self.server} CAP {self.nick} ACK :{asked}\r\n".encode())
        elif sub == "END":
            self.negotiating = False
            self._try_register()
        else:
            self.reply("410", params[0], "Invalid CAP command")

    def irc_AUTHENTICATE(self, params: list[str]) -> None:
        if "sasl" not in self.caps or (self.registered and self.user is None):
            self.reply(ERR_SASLFAIL, "SASL authentication failed")
            return
        if not params:
            self.reply(
                words.ERR_NEEDMOREPARAMS, "AUTHENTICATE", "Not enough parameters"
            )
            return
        value = params[0]
        if self.user is not None and self.user.account is not None:
            self.reply(ERR_SASLALREADY, "You have already authenticated using SASL")
            return
        if value == "*":
            self.sasl, self.sasl_buffer = None, ""
            self.reply(ERR_SASLABORTED, "SASL authentication aborted")
            return
        if self.sasl is None:
            if value.upper() != "PLAIN":
                self.reply(RPL_SASLMECHS, "PLAIN", "are available SASL mechanisms")
                self.reply(ERR_SASLFAIL, "SASL authentication failed")
                return
            self.sasl = "PLAIN"
            self.send(b"AUTHENTICATE +\r\n")
            return
        if len(value) > 400:
            self.reply(ERR_SASLTOOLONG, "SASL message too long")
            self.sasl, self.sasl_buffer = None, ""
            return
        if value != "+":
            self.sasl_buffer += value
        if len(self.sasl_buffer) > SASL_MOST:
            self.reply(ERR_SASLTOOLONG, "SASL message too long")
            self.sasl, self.sasl_buffer = None, ""
            return
        if len(value) == 400:
            return  # more to come
        payload, self.sasl_buffer, self.sasl = self.sasl_buffer, "", None
        try:
            fields = base64.b64decode(payload, validate=True).split(b"\0")
            authzid, name, password = (f.decode("utf-8") for f in fields)
        except ValueError:
            self.reply(ERR_SASLFAIL, "SASL authentication failed")
            return
        if authzid and authzid != name:
            # Nobody may act for another account here.
            self.reply(ERR_SASLFAIL, "SASL authentication failed")
            return
        user = self._arrive()
        if user is None:
            return
        self.sasl_pending, self.login_by = True, "SASL"
        self.execute(c.Login(name or None, password), ("SASL", name))

    def irc_PASS(self, params: list[str]) -> None:
        if self.registered:
            self.reply(words.ERR_ALREADYREGISTRED, "You may not reregister")
            return
        if not params:
            self.reply(words.ERR_NEEDMOREPARAMS, "PASS", "Not enough parameters")
            return
        # tchat has no server password: this is the nick's account password
        # (or ACCOUNT:PASSWORD), for clients without SASL.
        self.password = params[0]

    def irc_NICK(self, params: list[str]) -> None:
        if not params or not params[0]:
            self.reply(words.ERR_NONICKNAMEGIVEN, "No nickname given")
            return
        nick = params[0]
        if self.registered:
            self.execute(c.Nick(nick), ("NICK", nick))
            return
        self.nick_wanted = nick
        self._nick_tried = None
        self._try_register()

    def irc_USER(self, params: list[str]) -> None:
        if self.registered:
            self.reply(words.ERR_ALREADYREGISTRED, "You may not reregister")
            return
        if len(params) < 4 or not params[0] or not params[3]:
            self.reply(words.ERR_NEEDMOREPARAMS, "USER", "Not enough parameters")
            return
        # Shown in WHOIS and WHO, as given (cleaned, bounded).
        self.realname = clean_text(params[3]).strip()[:64] or self.nick_wanted or "*"
        self.user_given = True
        self._try_register()

    def _arrive(self) -> User | None:
        """This client's user in the hub, made on first need."""
        if self.user is None:
            self.hub.connect(self)
        user = self.user
        return user if user is not None and user.connected else None

    def _try_register(self) -> None:
        """
        Once NICK and USER are in and negotiation is over: log in (PASS),
        take the nick, then the welcome.
        """
        if (
            self.registered
            or self.nick_wanted is None
            or not self.user_given
            or self.negotiating
            or self.sasl_pending
        ):
            return
        user = self._arrive()
        if user is None:
            return
        if self.password is not None and user.account is None:
            name, sep, password = self.password.partition(":")
            self.password = None
            login = c.Login(name, password) if sep else c.Login(self.nick_wanted, name)
            self.sasl_pending, self.login_by = True, "PASS"
            self.execute(login, ("PASS", self.nick_wanted))
            if self.sasl_pending or self.registered:
                return  # the login answers later, or answered and welcomed
        if user.account is not None:
            # Logged in (SASL, PASS): an account's nick is its name, whatever
            # NICK said; the welcome tells the client.
            self.nick_wanted = user.nick
        wanted = nick_key(self.nick_wanted)
        if nick_key(user.nick) != wanted and self._nick_tried != wanted:
            # Once per nick the client gives: a refusal (433) waits for
            # the next NICK.
            self._nick_tried = wanted
            self.execute(c.Nick(self.nick_wanted), ("NICK", self.nick_wanted))
        user = self.user
        if user is not None and nick_key(user.nick) == wanted:
            self._welcome()

    def _welcome(self) -> None:
        """Registration is complete: the welcome numerics, the MOTD."""
        user = self.user
        if self.registered or user is None:
            return
        self.registered = True
        # What registration needed is let go: the user's nick is the nick
        # now, and a password is kept no longer than its use.
        self.nick_wanted = self._nick_tried = self.password = None
        self.hub.received(user)  # it has spoken: not a silent connection
        self.execute(c.Settle())
        server = self.server
        settings = self.hub.settings
        network = settings.server.name
        self.reply(
            words.RPL_WELCOME,
            f"Welcome to {network}, {mask(user.nick, self.door)}",
        )
        self.reply(words.RPL_YOURHOST, f"Your host is {server}, running tchat")
        self.reply(words.RPL_CREATED, "This server was made to chat")
        self.send(f":{server} 004 {user.nick} {server} tchat i n\r\n".encode())
        isupport = [
            "CASEMAPPING=rfc8265",
            "CHANTYPES=#",
            f"NICKLEN={NICK_MAX}",
            f"CHANNELLEN={ROOM_MAX}",
            f"TOPICLEN={TOPIC_MAX}",
            f"LINELEN={MAX_LINE}",
            f"NETWORK={server}",
            "PREFIX=(o)@",
            "CHANMODES=,,,n",
            f"CHATHISTORY={HISTORY_MAX}",
            "MSGREFTYPES=msgid",
            "UTF8ONLY",
            "SAFELIST",
        ]
        self.reply(words.RPL_ISUPPORT, *isupport, "are supported by this server")
        self._motd(settings.server.motd)
        if user.account is not None:
            self.reply(
                RPL_LOGGEDIN,
                mask(user.nick, self.door),
                user.account.name,
                f"You are now logged in as {user.account.name}",
            )
        early, self._early = self._early, None
        for event, renderings in early or ():
            self.deliver(event, renderings)

    def attached(self, user: object) -> None:
        assert user is None or isinstance(user, User)
        self.user = user

    @property
    def address(self) -> str | None:
        """See L{IParticipant.address}."""
        return client_address(self.door, self.transport)

    @property
    def encrypted(self) -> bool:
        """Whether a password sent here crosses the network readable."""
        if self.door == "onion":
            return True
        return ISSLTransport.providedBy(unwrapped(self.transport))

    def close(self, reason: str, why: str = "normal") -> None:
        transport = self.transport
        if transport is None:
            return
        tcp: Any = unwrapped(transport)
        queue = self.queue
        if queue is not None:
            tcp.writeSequence(queue.unsent())
            tcp.unregisterProducer()
            self.queue = None
        transport.loseConnection()

    def abort(self) -> None:
        transport = self.transport
        if transport is None:
            return
        tcp: Any = unwrapped(transport)
        if ITCPTransport.providedBy(tcp):
            tcp.abortConnection()
        else:
            transport.loseConnection()

    def deliver(self, event: object, renderings: object) -> None:
        user = self.user
        if user is None:
            return
        if event.__class__ is events.RoomMessage and self._early is None:
            # The hot path, every chat line to every member, in as few
            # steps as it takes (RENDER has no entry for room messages).
            message = event
            if message.nick == user.nick and "echo-message" not in self.caps:
                return
            wire = self.wire
            data = renderings.cache.get(wire.key)  # type: ignore[attr-defined]
            if data is None:
                data = renderings.get(  # type: ignore[attr-defined]
                    wire.key, message_line, wire, message, self.hub
                )
            queue = self.queue
            if queue is not None:
                queue.push(data)
            return
        assert isinstance(renderings, events.Renderings)
        if self._early is not None and not self._registering(event):
            if len(self._early) < EARLY_MOST:
                self._early.append((event, renderings))
            return
        render = RENDER.get(type(event))
        if render is not None:
            render(self, event, renderings)

    def _registering(self, event: object) -> bool:
        """Whether an event before the welcome is part of registering."""
        if isinstance(event, (events.Welcome, events.Motd, events.Status)):
            return True
        if isinstance(event, events.Error):
            return event.code.startswith("nick") or event.code in (
                "login-failed",
                "account-unavailable",
                "banned",
                "rate-limited",
            )
        if isinstance(event, events.LoggedIn | events.Goodbye | events.Shutdown):
            return True
        return isinstance(event, events.Presence) and event.kind == "nick"


class IRCFactory(ServerFactory):
    """The IRC door's factory for one listener (or the onion's)."""

    noisy = False
    refusal = staticmethod(line_refusal)
    """How a connection over the limits is told why (L{tchat.gate.Gate})."""

    def __init__(self, hub: ChatFactory, door: str = "irc") -> None:
        self.hub = hub
        self.door = door
        self.keepalive = Keepalive(hub.clock)

    def buildProtocol(self, addr: Any) -> IRCConnection:
        protocol = IRCConnection(self.hub, self.door, self.hub.clock, self.keepalive)
        protocol.factory = self
        return protocol
