# -*- test-case-name: tests.test_irc -*-
"""
The hub's events as IRC lines: each rendering made once per wire variant
and shared by every IRC recipient of the event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.words.protocols import irc as words

from tchat import commands as c
from tchat import events
from tchat.hub import ChatFactory
from tchat.irc.base import Base
from tchat.irc.wire import (
    ERR_SASLFAIL,
    ERRORS,
    MAX_LINE,
    RPL_LOGGEDIN,
    RPL_LOGGEDOUT,
    RPL_SASLSUCCESS,
    RPL_TOPICWHOTIME,
    Wire,
    escape_tag,
    mask,
    msgid,
)
from tchat.text import nick_key

_LOGIN_ERRORS = frozenset(
    {"login-failed", "account-unavailable", "not-logged-in", "bad-arguments"}
)
"""The hub's answers to a login that failed."""


class Rendering(Base):
    """How each of the hub's events is shown to an IRC client."""

    __slots__ = ()

    def _private(
        self, event: events.PrivateMessage, renderings: events.Renderings
    ) -> None:
        wire = self.wire
        if event.outgoing:
            if "echo-message" not in self.caps:
                return
            source = mask(self.nick, self.door)
            target = event.recipient
        else:
            source = mask(event.sender, event.sender_door)
            target = self.nick
        text = event.text
        if event.offline and not wire.time:
            when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(event.ts))
            text = f"[{when} UTC, while you were away] {text}"
        tags = wire.tags(event.ts if event.offline or wire.time else None)
        self.send(wire.message(source, "PRIVMSG", target, text, tags))

    def _presence(self, event: events.Presence, renderings: events.Renderings) -> None:
        user = self.user
        assert user is not None
        kind = event.kind
        if kind == "nick" and not self.registered:
            self._try_register()  # the client's own, as it registers
            return
        if kind == "away" and "away-notify" not in self.caps:
            return
        # One rendering per wire variant, shared by every IRC recipient.
        key = ("irc-presence", self.wire.time)
        line = renderings.cache.get(key)
        if line is None:
            line = renderings.get(key, presence_line, self.wire, event)
        if line:
            self.send(line)
        if kind == "join" and event.room is not None:
            if event.nick == user.nick:
                self._joined(event.room)
            elif "away-notify" in self.caps:
                joiner = self.hub.directory.user(event.nick)
                if joiner is not None and joiner.away:
                    source = mask(event.nick, event.door)
                    self.send(f":{source} AWAY :{joiner.away}\r\n".encode())

    def _crowd(self, event: events.Crowd, renderings: events.Renderings) -> None:
        user = self.user
        assert user is not None
        lines = renderings.get("irc-crowd", crowd_lines, event)
        whole, keys = renderings.get("irc-crowd-whole", _whole, lines)
        own = nick_key(user.nick)
        if own not in keys:
            self.send(whole)  # one rendering for everyone but the newcomers
        else:
            self.send(b"".join(line for key, line in lines if key != own))

    def _topic_changed(
        self, event: events.TopicChanged, renderings: events.Renderings
    ) -> None:
        user = self.user
        assert user is not None
        source = mask(event.nick, user.door if event.nick == user.nick else "web")
        who = self.hub.directory.user(event.nick)
        if who is not None:
            source = mask(who.nick, who.door)
        self.send(f":{source} TOPIC {event.room} :{event.topic}\r\n".encode())

    def _topic(self, event: events.Topic, renderings: events.Renderings) -> None:
        if event.topic:
            self.reply(words.RPL_TOPIC, event.room, event.topic)
            if event.set_by:
                self.reply(RPL_TOPICWHOTIME, event.room, event.set_by, "0")
        else:
            self.reply(words.RPL_NOTOPIC, event.room, "No topic is set")

    def _who(self, event: events.Who, renderings: events.Renderings) -> None:
        kind = "names"
        asked = self._asked or []
        for i, (asked_kind, name) in enumerate(asked):
            if name.casefold() == event.room.casefold():
                kind = asked_kind
                del asked[i]
                break
        if not asked:
            self._asked = None  # (idle connections keep no empty list)
        if kind == "who":
            for member in event.members:
                self._who_line(event.room, member)
            self.reply(words.RPL_ENDOFWHO, event.room, "End of /WHO list")
            return
        nicks = [m.nick for m in event.members]
        head = f":{self.server} 353 {self.nick} = {event.room} :"
        line: list[str] = []
        size = len(head)
        for nick in nicks:
            if line and size + len(nick) + 1 > MAX_LINE - 2:
                self.send((head + " ".join(line) + "\r\n").encode())
                line, size = [], len(head)
            line.append(nick)
            size += len(nick.encode()) + 1
        if line:
            self.send((head + " ".join(line) + "\r\n").encode())
        self.reply(words.RPL_ENDOFNAMES, event.room, "End of /NAMES list")

    def _rooms(self, event: events.RoomList, renderings: events.Renderings) -> None:
        if self._listing is None:
            self._listing = []
        self._listing.extend(event.rooms)
        if event.page < event.pages:
            self.execute(c.Rooms(event.page + 1), ("LIST", ""))
            return
        only = self._list_only
        for room in self._listing:
            # As on IRC, a channel nobody is in is not listed.
            if room.members and (only is None or room.name.casefold() in only):
                self.reply(
                    words.RPL_LIST, room.name, str(room.members), room.topic or ""
                )
        self._listing = None
        self.reply(words.RPL_LISTEND, "End of /LIST")

    def _history(self, event: events.History, renderings: events.Renderings) -> None:
        """
        Earlier messages: the room's latest on joining (as every door shows
        them), what a CHATHISTORY asked for; in a C{chathistory} batch for
        clients that take batches, each with its time and msgid.
        """
        if not event.messages and event.reason == "join":
            return
        wire = self.wire
        batched = "batch" in self.caps
        ref = f"h{id(event) & 0xFFFFFF:x}"
        if batched:
            self.send(
                f":{self.server} BATCH +{ref} chathistory {event.room}\r\n".encode()
            )
        for message in event.messages:
            tags = wire.tags(message.ts, msgid(message.room, message.epoch, message.id))
            if batched:
                tags = {"batch": ref, **tags}
            text = message.text
            if not wire.time:
                text = f"[{time.strftime('%H:%M', time.gmtime(message.ts))}] {text}"
            if message.action:
                text = f"\x01ACTION {text}\x01"
            self.send(
                wire.message(
                    mask(message.nick, message.door),
                    "NOTICE" if message.notice else "PRIVMSG",
                    message.room,
                    text,
                    tags,
                )
            )
        if batched:
            self.send(f":{self.server} BATCH -{ref}\r\n".encode())

    def _status(self, event: events.Status, renderings: events.Renderings) -> None:
        if self.oper_pending and event.text.startswith("you are now an operator"):
            self.oper_pending = False
            self.reply(words.RPL_YOUREOPER, "You are now an IRC operator")
            self.send(f":{self.nick} MODE {self.nick} :+o\r\n".encode())
            return
        if self._quiet or not self.registered:
            return
        away = event.data.get("away")
        if away is not None and self._context[0] in ("PRIVMSG", "NOTICE"):
            if self._context[0] == "PRIVMSG":
                self.reply(words.RPL_AWAY, str(event.data.get("name")), str(away))
            return
        self.notice(event.text)

    def _error(self, event: events.Error, renderings: events.Renderings) -> None:
        command, target = self._context
        code = event.code
        if command == "NOTICE":
            return  # never answered with an error
        if self.sasl_pending and code in _LOGIN_ERRORS:
            # (The answer may come after the password check, out of context.)
            self.sasl_pending = False
            self.reply(ERR_SASLFAIL, event.text)
            if self.login_by == "PASS":
                self._try_register()
            return
        if self.oper_pending and code in ("oper-failed", "not-operator"):
            self.oper_pending = False
            self.reply(words.ERR_PASSWDMISMATCH, "Password incorrect")
            return
        if not self.registered and code.startswith("nick"):
            self.reply(
                words.ERR_NICKNAMEINUSE
                if code != "nick-invalid"
                else words.ERR_ERRONEUSNICKNAME,
                self.nick_wanted or "*",
                event.text,
            )
            return
        numeric = ERRORS.get(code)
        if numeric is None:
            self.notice(event.text)
            return
        if numeric in (words.ERR_NICKNAMEINUSE, words.ERR_ERRONEUSNICKNAME):
            self.reply(numeric, target or "*", event.text)
        elif numeric in (
            words.ERR_NOSUCHCHANNEL,
            words.ERR_NOTONCHANNEL,
            words.ERR_CANNOTSENDTOCHAN,
            words.ERR_CHANNELISFULL,
            words.ERR_TOOMANYCHANNELS,
            words.ERR_NOSUCHNICK,
        ):
            if command in ("NAMES", "WHO"):
                self._answer_nothing(command, target)
                if numeric == words.ERR_NOSUCHCHANNEL:
                    return
            self.reply(numeric, target or "*", event.text)
        elif numeric == words.ERR_NORECIPIENT:
            self.reply(numeric, event.text)
        else:
            self.reply(numeric, event.text)

    def _answer_nothing(self, command: str, target: str) -> None:
        """A NAMES or WHO the hub could not answer: its end, empty."""
        kind = command.lower()
        if self._asked and (kind, target) in self._asked:
            self._asked.remove((kind, target))
            if not self._asked:
                self._asked = None
        if kind == "who":
            self.reply(words.RPL_ENDOFWHO, target, "End of /WHO list")
        else:
            self.reply(words.RPL_ENDOFNAMES, target, "End of /NAMES list")

    def _goodbye(
        self, event: events.Goodbye | events.Shutdown, renderings: events.Renderings
    ) -> None:
        self.send(f"ERROR :Closing link: {event.reason}\r\n".encode())

    def _logged_in(self, event: events.LoggedIn, renderings: events.Renderings) -> None:
        user = self.user
        assert user is not None
        sasl = self.sasl_pending and self.login_by == "SASL"
        if self.registered or sasl:
            self.reply(
                RPL_LOGGEDIN,
                mask(user.nick, self.door),
                event.name,
                f"You are now logged in as {event.name}",
            )
        if self.sasl_pending:
            self.sasl_pending = False
            if sasl:
                self.reply(RPL_SASLSUCCESS, "SASL authentication successful")
            if not self.registered:
                # An account's nick is its name: the welcome is under it.
                self.nick_wanted = user.nick
            self._try_register()

    def _continued(
        self, event: events.Continued, renderings: events.Renderings
    ) -> None:
        """A session carried on here: its rooms joined, as the client sees it."""
        user = self.user
        assert user is not None
        if not self.registered:
            self.nick_wanted = event.nick
            self.sasl_pending = False
            self._welcome()
        source = mask(event.nick, self.door)
        for room in event.rooms:
            self.send(f":{source} JOIN {room}\r\n".encode())
            self._joined(room)


def presence_line(wire: Wire, event: events.Presence) -> bytes:
    """A presence event as the IRC line every client with C{wire}'s tags gets."""
    source = mask(event.nick, event.door)
    tags = wire.tags(event.ts)
    prefix = ""
    if tags:
        prefix = "@" + ";".join(f"{k}={escape_tag(v)}" for k, v in tags.items()) + " "
    kind = event.kind
    if kind == "join" and event.room is not None:
        line = f"JOIN {event.room}"
    elif kind == "part" and event.room is not None:
        line = f"PART {event.room}" + (f" :{event.reason}" if event.reason else "")
    elif kind in ("quit", "lost"):
        reason = event.reason or ("Connection lost" if kind == "lost" else "Quit")
        line = f"QUIT :{reason}"
    elif kind == "away":
        line = "AWAY" + (f" :{event.reason}" if event.reason else "")
    elif kind == "nick" and event.new_nick is not None:
        line = f"NICK :{event.new_nick}"
    else:
        return b""
    return f"{prefix}:{source} {line}\r\n".encode()


def crowd_lines(event: events.Crowd) -> list[tuple[str, bytes]]:
    """
    A big room's summary as IRC clients keep nick lists: a JOIN for each
    who came, a PART for each who went, each with the nick's key (a
    client is not sent its own JOIN twice).
    """
    lines = [
        (nick_key(m.nick), f":{mask(m.nick, m.door)} JOIN {event.room}\r\n".encode())
        for m in event.joined
    ]
    lines.extend(
        (nick_key(m.nick), f":{mask(m.nick, m.door)} PART {event.room}\r\n".encode())
        for m in event.left
    )
    return lines


def _whole(lines: list[tuple[str, bytes]]) -> tuple[bytes, frozenset[str]]:
    """L{crowd_lines} as one piece, and the nick keys it names."""
    return b"".join(line for _, line in lines), frozenset(key for key, _ in lines)


def message_line(wire: Wire, event: events.RoomMessage, hub: ChatFactory) -> bytes:
    """A room message for IRC clients that take C{wire}'s tags."""
    text = f"\x01ACTION {event.text}\x01" if event.action else event.text
    account = None
    if wire.account:
        sender = hub.directory.user(event.nick)
        account = sender.account.name if sender and sender.account else None
    tags = wire.tags(event.ts, msgid(event.room, event.epoch, event.id), account)
    command = "NOTICE" if event.notice else "PRIVMSG"
    return wire.message(mask(event.nick, event.door), command, event.room, text, tags)


RENDER: dict[type, Callable[[Any, Any, events.Renderings], None]] = {
    events.PrivateMessage: Rendering._private,
    events.Presence: Rendering._presence,
    events.Crowd: Rendering._crowd,
    events.TopicChanged: Rendering._topic_changed,
    events.Topic: Rendering._topic,
    events.Who: Rendering._who,
    events.RoomList: Rendering._rooms,
    events.History: Rendering._history,
    events.Status: Rendering._status,
    events.Error: Rendering._error,
    events.Goodbye: Rendering._goodbye,
    events.Shutdown: Rendering._goodbye,
    events.LoggedIn: Rendering._logged_in,
    events.Continued: Rendering._continued,
    events.Motd: lambda self, e, r: self._motd(e.lines) if self.registered else None,
    events.Help: lambda self, e, r: self._lines(f"{u}: {d}" for u, d in e.commands),
    events.Listing: lambda self, e, r: self._lines((e.title, *e.lines)),
    events.Notice: lambda self, e, r: self.notice(f"*** {e.text}"),
    events.Mentions: lambda self, e, r: self._lines(
        f"{m.room} <{m.nick}> {m.text}" for m in e.mentions
    ),
    events.LoggedOut: lambda self, e, r: self.reply(
        RPL_LOGGEDOUT, mask(e.nick, self.door), f"You are now logged out ({e.reason})"
    ),
}
