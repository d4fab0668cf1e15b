# -*- test-case-name: tests.test_irc -*-
"""
IRC on the wire: limits, numerics, message tags, masks and message ids,
and L{Wire}, the lines for one client's capabilities.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from twisted.words.protocols import irc as words

MAX_LINE = 512
"""An IRC line's bytes without its tags, CR LF included."""
MAX_TAGGED = 8191
"""A line with tags (the message-tags specification)."""
MAX_CLIENT_TAGS = 4095
"""The tags a client may send, their C{@} included."""
TOPIC_MAX = 390
"""The longest topic offered (ISUPPORT TOPICLEN); tchat keeps longer."""
HISTORY_MAX = 100
"""The most messages one CHATHISTORY request returns."""
PING_AFTER = 120.0
"""Seconds of silence from a client before the door sends it a PING."""
PING_TIMEOUT = 60.0
"""Seconds a client has to answer that PING (with anything)."""
QUERIES_PER_SECOND = 10.0
QUERY_BURST = 100
"""What a client may ask (WHO, MODE, NAMES, ...) besides chat: a client's
connection burst fits, a flood of queries does not."""
SASL_MOST = 4000
"""The longest SASL payload taken (base64): PLAIN with a long password."""
EARLY_MOST = 1000
"""Events kept for a client still registering (a session it carries on)."""

CAPABILITIES: dict[str, str | None] = {
    "sasl": "PLAIN",
    "server-time": None,
    "message-tags": None,
    "echo-message": None,
    "multi-prefix": None,
    "away-notify": None,
    "account-tag": None,
    "batch": None,
    "draft/chathistory": None,
}
"""What the door offers in C{CAP LS} (with C{302}, the values too)."""

# Numerics Twisted does not name.
RPL_TOPICWHOTIME = "333"
ERR_INPUTTOOLONG = "417"
RPL_LOGGEDIN = "900"
RPL_LOGGEDOUT = "901"
RPL_SASLSUCCESS = "903"
ERR_SASLFAIL = "904"
ERR_SASLTOOLONG = "905"
ERR_SASLABORTED = "906"
ERR_SASLALREADY = "907"
RPL_SASLMECHS = "908"

ERRORS: dict[str, str] = {
    "unknown-command": words.ERR_UNKNOWNCOMMAND,
    "bad-arguments": words.ERR_NEEDMOREPARAMS,
    "nick-invalid": words.ERR_ERRONEUSNICKNAME,
    "nick-taken": words.ERR_NICKNAMEINUSE,
    "nick-reserved": words.ERR_NICKNAMEINUSE,
    "nick-registered": words.ERR_NICKNAMEINUSE,
    "room-invalid": words.ERR_NOSUCHCHANNEL,
    "no-such-room": words.ERR_NOSUCHCHANNEL,
    "no-such-nick": words.ERR_NOSUCHNICK,
    "not-in-room": words.ERR_NOTONCHANNEL,
    "no-room": words.ERR_NORECIPIENT,
    "line-too-long": ERR_INPUTTOOLONG,
    "not-operator": words.ERR_NOPRIVILEGES,
    "oper-failed": words.ERR_PASSWDMISMATCH,
    "muted": words.ERR_CANNOTSENDTOCHAN,
    "banned": words.ERR_YOUREBANNEDCREEP,
    "room-full": words.ERR_CHANNELISFULL,
    "too-many-rooms": words.ERR_TOOMANYCHANNELS,
}
"""The numeric for each of the hub's error codes with one; the others are
notices from the server."""


def _time_tag(ts: float) -> str:
    """The C{server-time} tag's value: UTC, milliseconds."""
    seconds = int(ts)
    millis = int((ts - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def escape_tag(value: str) -> str:
    """A tag value escaped as the message-tags specification says."""
    return (
        value.replace("\\", "\\\\")
        .replace(";", "\\:")
        .replace(" ", "\\s")
        .replace("\r", "\\r")
        .replace("\n", "\\n")
    )


def _unescape_tag(value: str) -> str:
    out, chars = [], iter(value)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        nxt = next(chars, "")
        out.append({":": ";", "s": " ", "r": "\r", "n": "\n"}.get(nxt, nxt))
    return "".join(out)


def parse_line(line: str) -> tuple[dict[str, str], str, list[str]]:
    """
    One IRC line: its tags, its command (upper case) and its parameters.

    @raise ValueError: It has no command.
    """
    tags: dict[str, str] = {}
    if line.startswith("@"):
        raw, _, line = line[1:].partition(" ")
        for item in raw.split(";"):
            if item:
                key, _, value = item.partition("=")
                tags[key] = _unescape_tag(value)
    line = line.lstrip(" ")
    if line.startswith(":"):
        _, _, line = line.partition(" ")
    if not line.strip():
        raise ValueError("no command")
    _prefix, command, params = words.parsemsg(line)
    return tags, command.upper(), params


def mask(nick: str, door: str) -> str:
    """How a user is shown to IRC clients: C{nick!nick@door.tchat}."""
    return f"{nick}!{nick}@{door}.tchat"


def msgid(room: str, epoch: int, id: int) -> str:
    """A room message's C{msgid}: its room, the room's epoch and its id."""
    return f"{epoch}.{id}.{room}"


def parse_msgid(value: str) -> tuple[int, int, str] | None:
    """The (epoch, id, room) of a L{msgid}, or C{None}."""
    epoch, _, rest = value.partition(".")
    number, _, room = rest.partition(".")
    if not (epoch.isdecimal() and number.isdecimal() and room):
        return None
    return int(epoch), int(number), room


def split_text(text: str, room: int) -> list[str]:
    """C{text} cut (between characters) into pieces of at most C{room} bytes."""
    data = text.encode("utf-8")
    if len(data) <= room:
        return [text]
    pieces, start = [], 0
    while start < len(data):
        end = min(start + room, len(data))
        while end < len(data) and end > start and (data[end] & 0xC0) == 0x80:
            end -= 1  # not inside a character
        pieces.append(data[start:end].decode("utf-8", errors="replace"))
        start = end
    return pieces


class Wire:
    """
    What tags one client takes, and the lines for it.

    @ivar time: C{server-time}.
    @ivar ids: C{message-tags} (msgid on messages).
    @ivar account: C{account-tag}.
    @ivar key: What a rendering for this client depends on.
    """

    __slots__ = ("account", "ids", "key", "time")

    def __init__(self, caps: Iterable[str] = ()) -> None:
        caps = set(caps)
        self.time = "server-time" in caps
        self.ids = "message-tags" in caps
        self.account = "account-tag" in caps
        self.key = ("irc", self.time, self.ids, self.account)

    def message(
        self,
        source: str,
        command: str,
        target: str,
        text: str,
        tags: dict[str, str] | None = None,
    ) -> bytes:
        """
        C{:source COMMAND target :text}, as many lines as the 512 bytes
        need, each with C{tags}.
        """
        head = f":{source} {command} {target} :"
        room = MAX_LINE - 2 - len(head.encode("utf-8"))
        prefix = ""
        if tags:
            prefix = (
                "@" + ";".join(f"{k}={escape_tag(v)}" for k, v in tags.items()) + " "
            )
        return b"".join(
            f"{prefix}{head}{piece}\r\n".encode() for piece in split_text(text, room)
        )

    def tags(
        self, ts: float | None, id: str | None = None, account: str | None = None
    ) -> dict[str, str]:
        """The tags this client takes of those given."""
        tags: dict[str, str] = {}
        if self.time and ts is not None:
            tags["time"] = _time_tag(ts)
        if self.ids and id is not None:
            tags["msgid"] = id
        if self.account and account is not None:
            tags["account"] = account
        return tags


PLAIN = Wire()
"""The lines for a client that enabled no capability (most of them)."""
