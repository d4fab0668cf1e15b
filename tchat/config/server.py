# -*- test-case-name: tests.test_config -*-
"""
The C{[server]}, C{[telnet]}, C{[web]}, C{[ssh]}, C{[admin]} and C{[log]} sections:
what users are told, the doors they come through, the operators' door and
the log's format.
"""

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from tchat.config._base import (
    Parsers,
    _bounded_int,
    _endpoints,
    _endpoints_or_none,
    _file,
    _seconds,
)
from tchat.text import clean_text, normalize_room, room_problem


@dataclass(frozen=True)
class ServerConfig:
    """
    The C{[server]} section: what users are told about the server.

    @ivar name: The server's name, shown on connect and reserved as a nick.
    @ivar motd: The message of the day, one string per line.
    @ivar default_room: The room every user starts in.
    @ivar shutdown_grace: Seconds a stop (SIGTERM, SIGINT) gives users'
        connections to close after they are told, before they are cut.
    @ivar reconnect_grace: Seconds a user whose connection broke (or who
        closed it without C{/quit}) stays in the chat, nobody told: a new
        connection that carries on the session within it is a
        continuation nobody notices; 0 makes every drop a departure.
    """

    name: str = "tchat"
    motd: tuple[str, ...] = (
        "Welcome to tchat: telnet, browser and Tor users share these rooms.",
        "Be kind. Type /help to see what you can do.",
    )
    default_room: str = "#lobby"
    shutdown_grace: float = 5.0
    reconnect_grace: float = 60.0


def _name(raw: str) -> str:
    value = clean_text(raw).strip()
    if not value:
        raise ValueError("must not be empty")
    if len(value) > 64:
        raise ValueError("must be at most 64 characters")
    if value != raw.strip():
        raise ValueError("must not contain control characters")
    return value


def _lines(raw: str) -> tuple[str, ...]:
    lines = [
        clean_text(line, collapse=False).rstrip()
        for line in raw.strip("\n").splitlines()
    ]
    if sum(len(line) for line in lines) > 4096:
        raise ValueError("must be at most 4096 characters")
    return tuple(lines)


def _room(raw: str) -> str:
    name = normalize_room(raw)
    problem = room_problem(name)
    if problem is not None:
        raise ValueError(f"{raw.strip()!r}: {problem}")
    return name


SERVER_PARSERS: Parsers = {
    "name": _name,
    "motd": _lines,
    "default_room": _room,
    "shutdown_grace": _seconds(0, 300),
    "reconnect_grace": _seconds(0, 3600),
}


@dataclass(frozen=True)
class TelnetConfig:
    """
    The C{[telnet]} section: the line-based door.

    @ivar listen: Twisted server endpoint strings, one listener each.
    """

    listen: tuple[str, ...] = ("tcp:4444:interface=127.0.0.1",)


TELNET_PARSERS: Parsers = {"listen": _endpoints}


@dataclass(frozen=True)
class WebConfig:
    """
    The C{[web]} section: the chat page and its WebSocket on one HTTP port.

    @ivar listen: Twisted server endpoint strings, one listener each.
    @ivar allowed_origins: Browser origins (C{scheme://host[:port]}) whose
        pages may open the WebSocket, besides the page's own origin; C{*}
        allows any.
    @ivar allowed_hosts: Names (C{chat.example.org}, C{*.example.org}) and
        addresses the web door answers to in the C{Host} header, on any
        port, besides its listen addresses, C{localhost}, C{127.0.0.1} and
        C{::1}; C{*} allows any (behind a reverse proxy that checks it).
        Lower case, without a trailing dot; addresses in their short form.
    @ivar ping_interval: Seconds between WebSocket pings (0: none).
    @ivar ping_timeout: Seconds to wait for a pong before dropping the peer.
    """

    listen: tuple[str, ...] = ("tcp:8080:interface=127.0.0.1",)
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    ping_interval: int = 30
    ping_timeout: int = 10


def _origins(raw: str) -> tuple[str, ...]:
    values = tuple(raw.split())
    for value in values:
        if value == "*":
            continue
        scheme, sep, rest = value.partition("://")
        if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
            raise ValueError(
                f"{value!r} is not an origin; expected scheme://host[:port] "
                "such as https://chat.example.org, or *"
            )
    return tuple(v.lower() for v in values)


_HOST_NAME = re.compile(
    r"(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*"
    r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
)
"""A host name, or C{*.} and a domain for every name under it."""


def _hosts(raw: str) -> tuple[str, ...]:
    hosts = []
    for value in raw.split():
        if value == "*":
            hosts.append(value)
            continue
        name = value.lower().rstrip(".")
        address = name[1:-1] if name.startswith("[") and name.endswith("]") else name
        try:
            hosts.append(str(ipaddress.ip_address(address)))
            continue
        except ValueError:
            pass
        if _HOST_NAME.fullmatch(name) and len(name) <= 253:
            hosts.append(name)
            continue
        base, colon, port = name.rpartition(":")
        hint = (
            f"; give it without the port ({base}): any port is allowed"
            if colon and port.isdigit() and base
            else ""
        )
        raise ValueError(
            f"{value!r} is not a host name or an IP address{hint}; expected "
            "names such as chat.example.org or *.example.org, addresses such "
            "as 192.0.2.7 or 2001:db8::7, or *"
        )
    return tuple(hosts)


WEB_PARSERS: Parsers = {
    "listen": _endpoints,
    "allowed_origins": _origins,
    "allowed_hosts": _hosts,
    "ping_interval": _bounded_int(0, 3600),
    "ping_timeout": _bounded_int(1, 3600),
}


@dataclass(frozen=True)
class SSHConfig:
    """
    The C{[ssh]} section: the encrypted terminal door (see C{docs/ssh.md}).

    @ivar listen: Endpoint strings; none by default (the door is off).
    @ivar host_key: The server's ed25519 host key, made at first start
        (owner-only permissions) and reused afterwards; relative to the
        directory tchat runs in.
    """

    listen: tuple[str, ...] = ()
    host_key: str = "ssh_host_ed25519_key"


SSH_PARSERS: Parsers = {"listen": _endpoints_or_none, "host_key": _file}


@dataclass(frozen=True)
class IRCConfig:
    """
    The C{[irc]} section: the door for IRC clients (see C{docs/irc.md}).

    @ivar listen: Endpoint strings; none by default (the door is off).
    """

    listen: tuple[str, ...] = ()


IRC_PARSERS: Parsers = {"listen": _endpoints_or_none}


@dataclass(frozen=True)
class AdminConfig:
    """
    The C{[admin]} section: health and metrics for operators, on a door of
    their own that is never the public web door nor an onion port.

    @ivar listen: Endpoint strings; empty for no admin door.
    """

    listen: tuple[str, ...] = ("tcp:9100:interface=127.0.0.1",)


ADMIN_PARSERS: Parsers = {"listen": _endpoints_or_none}


LogFormat = Literal["text", "json"]


@dataclass(frozen=True)
class LogConfig:
    """
    The C{[log]} section.

    @ivar format: C{text}: twistd's lines; C{json}: one JSON object per
        event, for log shippers.
    """

    format: LogFormat = "text"


def _log_format(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("text", "json"):
        raise ValueError(f"{raw.strip()!r} is not text or json")
    return value


LOG_PARSERS: Parsers = {"format": _log_format}
