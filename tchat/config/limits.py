# -*- test-case-name: tests.test_config -*-
"""
The C{[limits]} section: what one client may do (L{tchat.limits} enforces
it).
"""

import ipaddress
from dataclasses import dataclass

from tchat.config._base import Parsers, _bounded, _bounded_int, _seconds, _shown


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
    @ivar big_room: Members above which a room is big: its arrivals and
        departures are told every C{big_room_summary} seconds, together
        (L{tchat.crowds}), instead of one line each.
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
    @ivar sessions_per_address: Resume codes kept for the users who left,
        per client address (the oldest go first); C{exempt} addresses, and
        onion users together, keep a hundred times as many.
    """

    max_connections: int = 10_000
    per_address: int = 20
    sessions_per_address: int = 50
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
    big_room: int = 100
    big_room_summary: float = 2.0
    silent_timeout: float = 120.0
    idle_timeout: float = 3600.0
    login_timeout: float = 0.0
    output_queue: int = 256 * 1024
    stuck_timeout: float = 30.0
    tcp_keepalive: int = 60


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


def _idle_timeout(raw: str) -> float:
    value = _seconds(0, 7 * 86400)(raw)
    if 0 < value < 600:
        raise ValueError(
            f"must be 0 (never) or at least 600 (users are warned five "
            f"minutes before), not {_shown(value)}"
        )
    return value


LIMITS_PARSERS: Parsers = {
    "max_connections": _bounded_int(0, 1_000_000),
    "per_address": _bounded_int(0, 1_000_000),
    "sessions_per_address": _bounded_int(0, 1_000_000),
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
    "big_room": _bounded_int(0, 10_000_000),
    "big_room_summary": _seconds(0.1, 60),
    "silent_timeout": _seconds(0, 86400),
    "idle_timeout": _idle_timeout,
    "login_timeout": _seconds(0, 86400),
    "output_queue": _bounded_int(4096, 64 * 1024 * 1024),
    "stuck_timeout": _seconds(1, 3600),
    "tcp_keepalive": _bounded_int(0, 7200),
}
