# -*- test-case-name: tests.test_config -*-
"""
The C{[onion]} section: the doors published as one Tor onion service
(used by L{tchat.onion}).
"""

from dataclasses import dataclass
from typing import Literal

from tchat.config._base import Parsers, _bool, _bounded_int, _path
from tchat.text import is_simple_name, shortened

OnionDoor = Literal["telnet", "web", "ssh", "irc"]


@dataclass(frozen=True)
class OnionConfig:
    """
    The C{[onion]} section: the doors published as one Tor onion service.

    @ivar tor: C{launch} to start a private tor, or the control endpoint of
        a running one (C{tcp:127.0.0.1:9051}, C{unix:/run/tor/control}).
    @ivar password: The control port's password, if it uses one (cookie
        authentication needs nothing here).
    @ivar ports: (onion port, door) pairs, all on one onion address; the
        doors are C{telnet}, C{web}, C{irc} and C{ssh} (with C{[ssh]}'s host key,
        whether or not C{[ssh]} listens elsewhere).
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
        if door not in ("telnet", "web", "ssh", "irc"):
            raise ValueError(f"{door!r} is not a door; use telnet, web, ssh or irc")
        if int(port) in {p for p, _ in pairs}:
            raise ValueError(f"onion port {port} is given twice")
        pairs.append((int(port), door))
    if not pairs:
        raise ValueError("needs at least one PORT = DOOR")
    return tuple(pairs)


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


def _self_test_interval(raw: str) -> int:
    value = _bounded_int(0, 86400)(raw)
    if 0 < value < 5:
        raise ValueError(f"must be 0 (no self-test) or at least 5, not {value}")
    return value


ONION_PARSERS: Parsers = {
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
}
