# -*- test-case-name: tests.test_config -*-
"""
Reading and checking C{tap.ini}.

One section per concern, read with C{configparser} without interpolation,
checked against the keys this module knows, and turned into frozen objects.
Any mistake raises L{ConfigError} naming the section, the key and what is
wrong, so an operator never has to guess.
"""

import configparser
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from tchat.text import (
    clean_text,
    is_simple_name,
    normalize_room,
    room_problem,
    shortened,
)

N = TypeVar("N", int, float)


class ConfigError(Exception):
    """
    The configuration cannot be used; the message says where and why.
    """


@dataclass(frozen=True)
class ServerConfig:
    """
    The C{[server]} section: what users are told about the server.

    @ivar name: The server's name, shown on connect and reserved as a nick.
    @ivar motd: The message of the day, one string per line.
    @ivar default_room: The room every user starts in.
    @ivar shutdown_grace: Seconds a stop (SIGTERM, SIGINT) gives users'
        connections to close after they are told, before they are cut.
    """

    name: str = "tchat"
    motd: tuple[str, ...] = (
        "Welcome to tchat: telnet, browser and Tor users share these rooms.",
        "Be kind. Type /help to see what you can do.",
    )
    default_room: str = "#lobby"
    shutdown_grace: float = 5.0


@dataclass(frozen=True)
class TelnetConfig:
    """
    The C{[telnet]} section: the line-based door.

    @ivar listen: Twisted server endpoint strings, one listener each.
    """

    listen: tuple[str, ...] = ("tcp:4444:interface=127.0.0.1",)


@dataclass(frozen=True)
class WebConfig:
    """
    The C{[web]} section: the chat page and its WebSocket on one HTTP port.

    @ivar listen: Twisted server endpoint strings, one listener each.
    @ivar allowed_origins: Browser origins (C{scheme://host[:port]}) whose
        pages may open the WebSocket, besides the page's own origin; C{*}
        allows any.
    @ivar ping_interval: Seconds between WebSocket pings (0: none).
    @ivar ping_timeout: Seconds to wait for a pong before dropping the peer.
    """

    listen: tuple[str, ...] = ("tcp:8080:interface=127.0.0.1",)
    allowed_origins: tuple[str, ...] = ()
    ping_interval: int = 30
    ping_timeout: int = 10


@dataclass(frozen=True)
class LimitsConfig:
    """
    The C{[limits]} section: what one client may do, so that a flooder, a
    slow reader or a swarm of sockets cannot hurt everyone else.  A limit
    of 0 is off.

    @ivar max_connections: Open connections, all doors together (page
        loads count too).
    @ivar per_address: Open connections per client IP address.
    @ivar connects_per_minute: New connections per client IP a minute.
    @ivar exempt: Networks the per-address limits skip (a local reverse
        proxy or stunnel makes every user look like 127.0.0.1).
    @ivar onion_max_connections: Open connections through the onion
        service, together (they all come from the local tor).
    @ivar onion_connects_per_minute: New onion connections a minute,
        together.
    @ivar messages_per_second: Lines or frames a connection may send a
        second on average; the excess is dropped with a notice.
    @ivar message_burst: How many it may send at once.
    @ivar flood_disconnect: Lines dropped after the notice before the
        connection is closed for flooding.
    @ivar room_messages_per_second: Messages a room takes a second, from
        everyone together; C{room_message_burst} at once.
    @ivar nick_changes_per_minute: Nick changes per user a minute.
    @ivar joins_per_minute: Room joins per user a minute.
    @ivar max_line: The longest telnet line accepted, in bytes; a longer
        one is refused with an error and the connection stays open.
    @ivar max_frame: The largest WebSocket message accepted, in bytes; a
        larger one closes the connection with code 1009.
    @ivar max_rooms_per_user: Rooms one user may be in at once.
    @ivar max_users_per_room: Members a room may have.
    @ivar silent_timeout: Seconds a connection may stay without sending a
        single line or frame before it is closed.
    @ivar idle_timeout: Seconds a telnet user may send nothing at all
        before being disconnected (warned five minutes before).
    @ivar login_timeout: Seconds a newcomer has to pick a nick of their
        own before being disconnected.
    @ivar output_queue: Bytes a client may fall behind by, beyond the
        socket's own buffer, before the slow-reader policy applies.
    @ivar stuck_timeout: Seconds a telnet client may stay that far behind,
        reading nothing, before it is disconnected.
    @ivar tcp_keepalive: Seconds of silence on a connection before TCP
        keepalive probes check that the peer is still there.
    """

    max_connections: int = 10_000
    per_address: int = 20
    connects_per_minute: int = 60
    exempt: tuple[str, ...] = ("127.0.0.0/8", "::1")
    onion_max_connections: int = 500
    onion_connects_per_minute: int = 300
    messages_per_second: float = 5.0
    message_burst: int = 10
    flood_disconnect: int = 30
    room_messages_per_second: float = 30.0
    room_message_burst: int = 60
    nick_changes_per_minute: int = 5
    joins_per_minute: int = 20
    max_line: int = 4096
    max_frame: int = 64 * 1024
    max_rooms_per_user: int = 20
    max_users_per_room: int = 1000
    silent_timeout: float = 120.0
    idle_timeout: float = 3600.0
    login_timeout: float = 0.0
    output_queue: int = 256 * 1024
    stuck_timeout: float = 30.0
    tcp_keepalive: int = 60


SyncMode = Literal["normal", "full"]


@dataclass(frozen=True)
class HistoryConfig:
    """
    The C{[history]} section: what is kept of each room, and where.

    @ivar enabled: C{False} keeps history in memory only, for the life of
        the process; so does C{path = :memory:}.
    @ivar path: The SQLite file, relative to the working directory.
    @ivar keep: Messages kept per room; older ones are pruned.
    @ivar replay: Messages shown to a user who joins a room.
    @ivar batch_window: Seconds a room message may wait before it is
        written, so writes go in batches; what a crash can lose.
    @ivar sync: C{normal}: a message is acknowledged once queued for the
        store; C{full}: only once committed to disk, and shown to nobody
        before that.
    @ivar resume_ttl: Seconds a resume code stays valid after its user left.
    """

    enabled: bool = True
    path: str = "tchat.sqlite3"
    keep: int = 1000
    replay: int = 20
    batch_window: float = 0.05
    sync: SyncMode = "normal"
    resume_ttl: int = 24 * 3600

    @property
    def in_memory(self) -> bool:
        """Whether history lives only as long as the process."""
        return not self.enabled or self.path == ":memory:"


OnionDoor = Literal["telnet", "web"]


@dataclass(frozen=True)
class OnionConfig:
    """
    The C{[onion]} section: the doors published as one Tor onion service.

    @ivar tor: C{launch} to start a private tor, or the control endpoint of
        a running one (C{tcp:127.0.0.1:9051}, C{unix:/run/tor/control}).
    @ivar password: The control port's password, if it uses one (cookie
        authentication needs nothing here).
    @ivar ports: (onion port, door) pairs, all on one onion address.
    @ivar key_file: Where the service's private key is kept (mode 0600);
        its address is written next to it, with C{.address} for suffix.
    @ivar ephemeral: A fresh address each start, nothing on disk.
    @ivar bootstrap_timeout: Seconds to wait for tor and the first
        descriptor upload before giving up (and retrying later).
    @ivar tor_binary: The C{tor} program for C{launch}.
    @ivar torrc: Extra torrc lines for a launched tor, from this file.
    @ivar client_auth: Names of the clients allowed in by v3 client
        authorization; empty for a service anyone with the address can use.
    @ivar self_test_interval: Seconds between self-tests through tor (0:
        none).
    @ivar republish_after: Failed self-tests in a row before the service
        is published again.
    """

    enabled: bool = False
    tor: str = "launch"
    password: str = ""
    ports: tuple[tuple[int, OnionDoor], ...] = ((23, "telnet"), (80, "web"))
    key_file: str = "onion/tchat.key"
    ephemeral: bool = False
    bootstrap_timeout: int = 180
    tor_binary: str = "tor"
    torrc: str = ""
    client_auth: tuple[str, ...] = ()
    self_test_interval: int = 300
    republish_after: int = 3


@dataclass(frozen=True)
class RedisTarget:
    """
    Where a cluster's Redis is, as L{ClusterConfig.target} works it out.

    @ivar endpoint: A Twisted client endpoint string.
    @ivar password: The C{AUTH} password, if any.
    @ivar db: The database number, if not the default.
    """

    endpoint: str
    password: str | None = None
    db: int | None = None


@dataclass(frozen=True)
class ClusterConfig:
    """
    The C{[cluster]} section: several tchat nodes sharing rooms through one
    Redis.  Cluster mode is on when C{redis} is set.

    @ivar redis: C{redis://[:PASSWORD@]HOST[:PORT][/DB]}, C{rediss://...}
        for TLS, or a Twisted client endpoint string (C{tcp:host=...:port=...},
        C{unix:path=...}, C{tls:host=...:port=...}); empty: no cluster.
    @ivar password: Redis's password; overrides one given in C{redis}.
    @ivar node: This node's name, unique in the cluster; empty: the host
        name and the process id.
    @ivar prefix: What every key and the bus channel start with, so that
        several chats can share one Redis.
    @ivar node_timeout: Seconds without a heartbeat after which a node is
        taken for dead: its users are shown as lost and its nicks freed.
    """

    redis: str = ""
    password: str = ""
    node: str = ""
    prefix: str = "tchat"
    node_timeout: int = 10

    @property
    def enabled(self) -> bool:
        """Whether this node is part of a cluster."""
        return bool(self.redis)

    def target(self) -> RedisTarget:
        """
        Where Redis is, from C{redis} and C{password}.
        """
        endpoint, password, db = _redis_target(self.redis)
        return RedisTarget(endpoint, self.password or password, db)

    def node_name(self) -> str:
        """This node's name: C{node}, or the host name and process id."""
        if self.node:
            return self.node
        import os
        import socket

        return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class AdminConfig:
    """
    The C{[admin]} section: health and metrics for operators, on a door of
    their own that is never the public web door nor an onion port.

    @ivar listen: Endpoint strings; empty for no admin door.
    """

    listen: tuple[str, ...] = ("tcp:9100:interface=127.0.0.1",)


LogFormat = Literal["text", "json"]


@dataclass(frozen=True)
class LogConfig:
    """
    The C{[log]} section.

    @ivar format: C{text}: twistd's lines; C{json}: one JSON object per
        event, for log shippers.
    """

    format: LogFormat = "text"


@dataclass(frozen=True)
class OperatorsConfig:
    """
    The C{[operators]} section: operator names and their password hashes
    (see L{tchat.operators.hash_password}).

    @ivar accounts: (name, hash) pairs, in file order.
    """

    accounts: tuple[tuple[str, str], ...] = ()

    def hash_for(self, name: str) -> str | None:
        """
        @return: The hash of operator C{name}, or C{None} if there is none.
        """
        return dict(self.accounts).get(name)


@dataclass(frozen=True)
class Config:
    """
    The whole configuration.

    @ivar source: Where it was read from, for messages.
    """

    server: ServerConfig = field(default_factory=ServerConfig)
    telnet: TelnetConfig = field(default_factory=TelnetConfig)
    web: WebConfig = field(default_factory=WebConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    onion: OnionConfig = field(default_factory=OnionConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    log: LogConfig = field(default_factory=LogConfig)
    operators: OperatorsConfig = field(default_factory=OperatorsConfig)
    source: str = "built-in defaults"

    def chat_listeners(self) -> list[tuple[str, str]]:
        """
        Every (door, endpoint string) users chat through, onion aside.
        """
        return [("telnet", d) for d in self.telnet.listen] + [
            ("web", d) for d in self.web.listen
        ]

    def listeners(self) -> list[tuple[str, str]]:
        """
        Every (door, endpoint string) the configuration listens on.
        """
        return self.chat_listeners() + [("admin", d) for d in self.admin.listen]


# -- value parsers: each takes the raw string and returns the value or raises
# ValueError with a sentence saying what is expected.


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
    lines = [clean_text(line).rstrip() for line in raw.strip("\n").splitlines()]
    if sum(len(line) for line in lines) > 4096:
        raise ValueError("must be at most 4096 characters")
    return tuple(lines)


def _room(raw: str) -> str:
    name = normalize_room(raw)
    problem = room_problem(name)
    if problem is not None:
        raise ValueError(f"{raw.strip()!r}: {problem}")
    return name


def _endpoints(raw: str) -> tuple[str, ...]:
    # One endpoint per line; endpoint strings may contain spaces only in
    # unix paths, which we do not support splitting around.
    values = tuple(line.strip() for line in raw.splitlines() if line.strip())
    for value in values:
        kind, sep, _ = value.partition(":")
        if not sep or not kind:
            raise ValueError(
                f"{value!r} is not an endpoint string; "
                "expected TYPE:ARGS such as tcp:4444:interface=127.0.0.1"
            )
    return values


def _endpoints_or_none(raw: str) -> tuple[str, ...]:
    if raw.strip().lower() == "none":
        return ()
    return _endpoints(raw)


def _client_names(raw: str) -> tuple[str, ...]:
    names = tuple(raw.replace(",", " ").split())
    for name in names:
        if not is_simple_name(name):
            raise ValueError(
                f"{name!r} is not a client name: letters, digits, - and _, "
                "at most 32, starting with a letter"
            )
    if len(set(names)) != len(names):
        raise ValueError("a client name is given twice")
    return names


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


def _networks(raw: str) -> tuple[str, ...]:
    values = tuple(raw.replace(",", " ").split())
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(
                f"{value!r} is not an IP address or network such as "
                "127.0.0.0/8, ::1 or 192.0.2.0/24"
            ) from None
    return values


def _shown(number: float) -> str:
    return f"{number:g}" if isinstance(number, float) else str(number)


def _bounded(
    convert: Callable[[str], N], low: N, high: N, what: str
) -> Callable[[str], N]:
    """
    A parser for a number from C{low} to C{high}; C{what} names the kind
    of number for the message when the text is not one.
    """

    def parse(raw: str) -> N:
        text = raw.strip()
        if len(text) > 40:
            # Python refuses to convert very long numbers (and a message
            # quoting one would be as long): no limit here is that big.
            raise ValueError(
                f"must be between {_shown(low)} and {_shown(high)}, "
                f"not a {len(text)}-character value"
            )
        try:
            value = convert(text)
        except ValueError:
            raise ValueError(f"{text!r} is not {what}") from None
        if not low <= value <= high:
            raise ValueError(
                f"must be between {_shown(low)} and {_shown(high)}, not {_shown(value)}"
            )
        return value

    return parse


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    return _bounded(int, low, high, "a whole number")


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"{raw.strip()!r} is not true or false")


def _seconds(low: float, high: float) -> Callable[[str], float]:
    return _bounded(float, low, high, "a number of seconds")


def _path(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("must not be empty (use :memory: for no file)")
    if "\0" in value:
        raise ValueError("must not contain NUL")
    return value


def _sync(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("normal", "full"):
        raise ValueError(f"{raw.strip()!r} is not normal or full")
    return value


def _control(raw: str) -> str:
    value = raw.strip()
    if value == "launch":
        return value
    kind, sep, rest = value.partition(":")
    if kind not in ("tcp", "unix") or not sep or not rest:
        raise ValueError(
            f"{value!r} is neither launch nor a control endpoint such as "
            "tcp:127.0.0.1:9051 or unix:/run/tor/control"
        )
    return value


def _onion_ports(raw: str) -> tuple[tuple[int, str], ...]:
    pairs: list[tuple[int, str]] = []
    for item in raw.replace("\n", ",").split(","):
        if not item.strip():
            continue
        port, sep, door = (part.strip() for part in item.partition("="))
        if (
            not sep
            or not port.isascii()
            or not port.isdecimal()
            or len(port) > 5
            or not 1 <= int(port) <= 65535
        ):
            raise ValueError(
                f"{shortened(item.strip())!r} is not PORT = DOOR "
                "(e.g. 23 = telnet, 80 = web)"
            )
        if door not in ("telnet", "web"):
            raise ValueError(f"{door!r} is not a door; use telnet or web")
        if int(port) in {p for p, _ in pairs}:
            raise ValueError(f"onion port {port} is given twice")
        pairs.append((int(port), door))
    if not pairs:
        raise ValueError("needs at least one PORT = DOOR")
    return tuple(pairs)


def _log_format(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("text", "json"):
        raise ValueError(f"{raw.strip()!r} is not text or json")
    return value


def _operators(items: list[tuple[str, str]]) -> OperatorsConfig:
    """
    The C{[operators]} section: any names, each with a password hash.
    """
    from tchat.operators import check_hash

    accounts: list[tuple[str, str]] = []
    for name, raw in items:
        if not is_simple_name(name):
            raise ConfigError(
                f"[operators] {name}: not an operator name: letters, digits, "
                "- and _, at most 32, starting with a letter"
            )
        try:
            accounts.append((name, check_hash(raw.strip())))
        except ValueError as e:
            raise ConfigError(f"[operators] {name}: {e}") from None
    return OperatorsConfig(tuple(accounts))


def _idle_timeout(raw: str) -> float:
    value = _seconds(0, 7 * 86400)(raw)
    if 0 < value < 600:
        raise ValueError(
            f"must be 0 (never) or at least 600 (users are warned five "
            f"minutes before), not {_shown(value)}"
        )
    return value


def _redis_target(raw: str) -> tuple[str, str | None, int | None]:
    """
    A C{redis} setting as (client endpoint string, password, database).

    @raise ValueError: Saying what is expected.
    """
    from urllib.parse import unquote, urlsplit

    raw = raw.strip()
    if "://" not in raw:
        if raw.split(":", 1)[0] not in ("tcp", "tls", "unix", "ssl"):
            raise ValueError(
                "must be redis://HOST:PORT/DB, rediss://HOST:PORT/DB (TLS) or "
                f"a client endpoint such as tcp:host=127.0.0.1:port=6379, not {raw!r}"
            )
        return raw, None, None
    url = urlsplit(raw)
    if url.scheme not in ("redis", "rediss"):
        raise ValueError(f"unknown scheme {url.scheme!r}: use redis:// or rediss://")
    try:
        port = url.port or 6379
    except ValueError:
        raise ValueError(f"{raw!r} has an invalid port") from None
    host = url.hostname
    if not host:
        raise ValueError(f"{raw!r} names no host")
    path = url.path.strip("/")
    if path and not path.isdecimal():
        raise ValueError(f"the database must be a number, not {path!r}")
    db = int(path) if path else None
    password = unquote(url.password) if url.password else None
    kind = "tls" if url.scheme == "rediss" else "tcp"
    quoted = host.replace(":", "\\:")
    return f"{kind}:host={quoted}:port={port}", password, db


def _redis(raw: str) -> str:
    raw = raw.strip()
    if raw:
        endpoint = _redis_target(raw)[0]
        from twisted.internet.endpoints import clientFromString
        from twisted.internet.testing import MemoryReactor

        try:
            clientFromString(MemoryReactor(), endpoint)
        except Exception as e:
            reason = (
                "its options are not a client endpoint's (such as "
                "tcp:host=HOST:port=PORT)"
                if isinstance(e, TypeError)
                else str(e) or type(e).__name__
            )
            raise ValueError(
                f"{endpoint!r} is not a usable endpoint: {reason}"
            ) from None
    return raw


def _prefix(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        raise ValueError("must be 1 to 64 letters, digits, dots, dashes or underscores")
    return value


def _node(raw: str) -> str:
    value = raw.strip()
    if value and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        raise ValueError(
            "must be empty (host name and pid) or 1 to 64 letters, digits, "
            "dots, dashes or underscores"
        )
    return value


def _self_test_interval(raw: str) -> int:
    value = _bounded_int(0, 86400)(raw)
    if 0 < value < 5:
        raise ValueError(f"must be 0 (no self-test) or at least 5, not {value}")
    return value


_SECTIONS: Mapping[str, tuple[type[Any], Mapping[str, Callable[[str], object]]]] = {
    "server": (
        ServerConfig,
        {
            "name": _name,
            "motd": _lines,
            "default_room": _room,
            "shutdown_grace": _seconds(0, 300),
        },
    ),
    "telnet": (TelnetConfig, {"listen": _endpoints}),
    "web": (
        WebConfig,
        {
            "listen": _endpoints,
            "allowed_origins": _origins,
            "ping_interval": _bounded_int(0, 3600),
            "ping_timeout": _bounded_int(1, 3600),
        },
    ),
    "history": (
        HistoryConfig,
        {
            "enabled": _bool,
            "path": _path,
            "keep": _bounded_int(1, 1_000_000),
            "replay": _bounded_int(0, 1000),
            "batch_window": _seconds(0, 10),
            "sync": _sync,
            "resume_ttl": _bounded_int(0, 365 * 24 * 3600),
        },
    ),
    "limits": (
        LimitsConfig,
        {
            "max_connections": _bounded_int(0, 1_000_000),
            "per_address": _bounded_int(0, 1_000_000),
            "connects_per_minute": _bounded_int(0, 1_000_000),
            "exempt": _networks,
            "onion_max_connections": _bounded_int(0, 1_000_000),
            "onion_connects_per_minute": _bounded_int(0, 1_000_000),
            "messages_per_second": _bounded(float, 0.0, 1e6, "a number"),
            "message_burst": _bounded_int(1, 1_000_000),
            "flood_disconnect": _bounded_int(0, 1_000_000),
            "room_messages_per_second": _bounded(float, 0.0, 1e6, "a number"),
            "room_message_burst": _bounded_int(1, 1_000_000),
            "nick_changes_per_minute": _bounded_int(0, 10_000),
            "joins_per_minute": _bounded_int(0, 10_000),
            "max_line": _bounded_int(64, 1024 * 1024),
            "max_frame": _bounded_int(1024, 16 * 1024 * 1024),
            "max_rooms_per_user": _bounded_int(0, 10_000),
            "max_users_per_room": _bounded_int(0, 10_000_000),
            "silent_timeout": _seconds(0, 86400),
            "idle_timeout": _idle_timeout,
            "login_timeout": _seconds(0, 86400),
            "output_queue": _bounded_int(4096, 64 * 1024 * 1024),
            "stuck_timeout": _seconds(1, 3600),
            "tcp_keepalive": _bounded_int(0, 7200),
        },
    ),
    "onion": (
        OnionConfig,
        {
            "enabled": _bool,
            "tor": _control,
            "password": str.strip,
            "ports": _onion_ports,
            "key_file": _path,
            "ephemeral": _bool,
            "bootstrap_timeout": _bounded_int(10, 3600),
            "tor_binary": _path,
            "torrc": str.strip,
            "client_auth": _client_names,
            "self_test_interval": _self_test_interval,
            "republish_after": _bounded_int(1, 100),
        },
    ),
    "admin": (AdminConfig, {"listen": _endpoints_or_none}),
    "cluster": (
        ClusterConfig,
        {
            "redis": _redis,
            "password": str.strip,
            "node": _node,
            "prefix": _prefix,
            "node_timeout": _bounded_int(2, 3600),
        },
    ),
    "log": (LogConfig, {"format": _log_format}),
}

# Keys that moved, so an old tap.ini gets a pointer rather than a riddle.
_MOVED = {
    ("telnet", "max_line"): "[limits] max_line",
    ("web", "max_message"): "[limits] max_frame",
}

# Sections whose keys are names the operator chooses.
_OPEN_SECTIONS = ("operators",)


def config_from_string(text: str, source: str = "<string>") -> Config:
    """
    Parse the text of a C{tap.ini}.

    @param text: The file's contents.
    @param source: A name for the text, used in error messages.
    @return: The configuration, with built-in defaults for what is missing.
    @raise ConfigError: If the text is not valid; the message names the
        section and key at fault.
    """
    parser = configparser.ConfigParser(
        interpolation=None, strict=True, default_section="\0no default section"
    )
    # Keys are case-sensitive like the rest of the file.
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text, source=source)
    except configparser.DuplicateSectionError as e:
        raise ConfigError(
            f"{source}: [{e.section}] appears twice (line {e.lineno})"
        ) from None
    except configparser.DuplicateOptionError as e:
        raise ConfigError(
            f"{source}: [{e.section}] {e.option}: set twice (line {e.lineno})"
        ) from None
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(
            f"{source}: line {e.lineno}: a setting outside any [section]: "
            f"{e.line.strip()!r}"
        ) from None
    except configparser.Error as e:
        raise ConfigError(f"{source}: cannot be parsed: {e.message}") from None

    sections: dict[str, object] = {}
    for section in parser.sections():
        if section == "operators":
            try:
                sections[section] = _operators(parser.items(section))
            except ConfigError as e:
                raise ConfigError(f"{source}: {e}") from None
            continue
        if section not in _SECTIONS:
            known = ", ".join(f"[{s}]" for s in (*_SECTIONS, *_OPEN_SECTIONS))
            raise ConfigError(
                f"{source}: [{section}] is not a known section (known: {known})"
            )
        cls, keys = _SECTIONS[section]
        values: dict[str, object] = {}
        for key, raw in parser.items(section):
            if (section, key) in _MOVED:
                raise ConfigError(
                    f"{source}: [{section}] {key}: moved to "
                    f"{_MOVED[section, key]}; set it there"
                )
            if key not in keys:
                raise ConfigError(
                    f"{source}: [{section}] {key}: not a known key "
                    f"(known: {', '.join(keys)})"
                )
            try:
                values[key] = keys[key](raw)
            except ValueError as e:
                raise ConfigError(f"{source}: [{section}] {key}: {e}") from None
        sections[section] = cls(**values)
    return Config(source=source, **sections)  # type: ignore[arg-type]


def load_config(path: Path) -> Config:
    """
    Read and parse a C{tap.ini} file.

    This does blocking disk I/O and is meant for start-up, before the
    reactor runs.

    @param path: The file to read.
    @return: The configuration.
    @raise ConfigError: If the file cannot be read or is not valid.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: is not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read: {e.strerror}") from None
    return config_from_string(text, source=str(path))


def with_overrides(
    config: Config,
    *,
    telnet_listen: tuple[str, ...] | None,
    web_listen: tuple[str, ...] | None = None,
    admin_listen: tuple[str, ...] | None = None,
) -> Config:
    """
    Apply command-line overrides on top of a configuration.

    @param config: What C{tap.ini} (or the defaults) said.
    @param telnet_listen: Telnet endpoints given on the command line, which
        replace those in C{tap.ini}; C{None} to keep them.
    @param web_listen: Likewise for the web door.
    @param admin_listen: Likewise for the admin door.
    @return: The configuration in force.
    """
    if telnet_listen is not None:
        config = replace(config, telnet=replace(config.telnet, listen=telnet_listen))
    if web_listen is not None:
        config = replace(config, web=replace(config.web, listen=web_listen))
    if admin_listen is not None:
        config = replace(config, admin=replace(config.admin, listen=admin_listen))
    return config


def known_keys() -> dict[str, tuple[str, ...]]:
    """
    The sections and keys this version understands, for documentation tests.

    @return: Section name to its key names.
    """
    return {
        name: tuple(f.name for f in fields(cls)) for name, (cls, _) in _SECTIONS.items()
    }
