# -*- test-case-name: tests.test_bans -*-
"""
What is banned or muted, and whom it hits.

Pure state and rules, no events and no I/O: L{BanList} holds the bans in
force and L{Mutes} the muted addresses and sessions; the functions say
what a C{/ban} target bans, whom a ban hits and how it reads.
"""

import ipaddress
import math
from collections.abc import Callable
from fnmatch import fnmatchcase

from tchat.history import Ban, BanKind
from tchat.limits import parse_ip, parse_network
from tchat.model import User
from tchat.text import describe_span, nick_fold, nick_key, quoted

Pattern = tuple[BanKind, str]


def describe(ban: Ban) -> str:
    """C{address 10.0.0.0/8}, C{nick troll*}, C{onion session ABCD-EFGH}."""
    match ban.kind:
        case "address":
            return f"address {ban.pattern}"
        case "nick":
            return f"nick {ban.pattern}"
    return f"onion session {ban.pattern}"


def matches(
    ban: Ban, address: str | None, key: str | None, session: str | None
) -> bool:
    """
    Whether C{ban} covers a client's address, nick (as L{nick_key}) or
    session; C{None} for what is not known.

    A nick pattern is kept as typed (L{nick_fold}: readable in C{/bans})
    and folded by L{nick_key} here, as nicks are: C{troll*} bans C{tr0ll}
    and a Cyrillic C{troll} too, and bans made before nick keys were
    skeletons keep working.
    """
    match ban.kind:
        case "address":
            ip = parse_ip(address) if address else None
            return ip is not None and ip in parse_network(ban.pattern)
        case "nick":
            return key is not None and fnmatchcase(key, nick_key(ban.pattern))
        case "session":
            return session == ban.pattern
    return False  # pragma: no cover


def hits(ban: Ban, user: User) -> bool:
    """Whether C{ban} covers C{user}."""
    return matches(ban, user.address, user.key, user.code)


def banned_text(ban: Ban, server: str, now: float) -> str:
    """What a banned client is told."""
    until = "" if ban.expires is None else f" for {describe_span(ban.expires - now)}"
    because = f": {ban.reason}" if ban.reason else ""
    return f"you are banned from {server}{until}{because}"


def names_a_user(target: str) -> bool:
    """Whether C{/ban TARGET} names a user (not a nick pattern or address)."""
    kind, sep, _ = target.partition(":")
    if sep and kind.lower() in ("nick", "ip"):
        return False
    if "*" in target or "?" in target:
        return False
    try:
        ipaddress.ip_network(target, strict=False)
    except ValueError:
        return True
    return False


def target_patterns(target: str) -> list[Pattern] | None:
    """
    What C{/ban TARGET} bans, when TARGET does not name a user.

    @return: The patterns, or C{None} when TARGET names a user (see
        L{user_patterns}).
    @raise ValueError: With what to tell the operator, when TARGET cannot
        be banned.
    """
    kind, sep, rest = target.partition(":")
    if sep and kind.lower() == "nick":
        pattern = nick_fold(rest)
        if not pattern:
            raise ValueError("nick: needs a nick or pattern")
        return [("nick", pattern)]
    address = rest if sep and kind.lower() == "ip" else target
    try:
        network = parse_network(address)
    except ValueError:
        if sep and kind.lower() == "ip":
            raise ValueError(f"{quoted(rest)} is not an IP address") from None
    else:
        return [("address", str(network))]
    if "*" in target or "?" in target:
        return [("nick", nick_fold(target))]
    return None


def user_patterns(user: User) -> list[Pattern]:
    """What banning C{user} bans."""
    if user.address is not None:
        return [("address", str(parse_network(user.address)))]
    # Onion users all come from the local tor: their session (resume
    # code) and their nick are what can be banned.
    return [("session", user.code), ("nick", nick_fold(user.nick))]


def canonical(target: str) -> str:
    """
    The pattern C{/unban TARGET} looks for: an address or network as bans
    keep it, else a nick pattern as bans keep it (L{nick_fold}).
    """
    kind, sep, rest = target.partition(":")
    text = rest if sep and kind.lower() in ("ip", "nick") else target
    try:
        return str(parse_network(text))
    except ValueError:
        return nick_fold(text)


class BanList:
    """
    The bans in force, by number.

    Bans whose time is up are dropped as they are come across; C{lapsed}
    is told of each (to forget it in the store).
    """

    def __init__(self, lapsed: Callable[[Ban], object] = lambda ban: None) -> None:
        self.bans: dict[int, Ban] = {}
        self._lapsed = lapsed

    def __len__(self) -> int:
        return len(self.bans)

    def add(self, ban: Ban) -> None:
        """Put C{ban} in force (replacing one of the same number)."""
        self.bans[ban.id] = ban

    def remove(self, number: int) -> Ban | None:
        """Lift ban C{number}; C{None} if there is none."""
        return self.bans.pop(number, None)

    def highest(self) -> int:
        """The highest ban number in force; 0 for none."""
        return max(self.bans, default=0)

    def in_force(self, now: float) -> list[Ban]:
        """The bans in force at C{now}, by number (lapsed ones go)."""
        self.find(now)
        return sorted(self.bans.values(), key=lambda b: b.id)

    def find(
        self,
        now: float,
        address: str | None = None,
        nick: str | None = None,
        session: str | None = None,
    ) -> Ban | None:
        """
        The ban in force on an address, a nick or a session, if any.
        """
        if not self.bans:
            return None
        key = nick_key(nick) if nick is not None else None
        for ban in list(self.bans.values()):
            if ban.expires is not None and ban.expires <= now:
                del self.bans[ban.id]
                self._lapsed(ban)
                continue
            if matches(ban, address, key, session):
                return ban
        return None

    def with_pattern(self, pattern: str) -> list[Ban]:
        """The bans of C{pattern} (see L{canonical})."""
        return [b for b in self.bans.values() if b.pattern == pattern]


class Mutes:
    """
    Who is muted, by address (clear-net users) or session (onion users),
    so that a reconnect does not shake a mute off.
    """

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    @staticmethod
    def identity(user: User) -> str:
        """
        What a mute sticks to: the address of a clear-net user, the session
        of an onion user.
        """
        return user.address if user.address is not None else f"session:{user.code}"

    def mute(self, user: User, until: float) -> None:
        """Mute C{user} until C{until} (C{math.inf}: until lifted)."""
        user.muted_until = until
        self._until[self.identity(user)] = until

    def unmute(self, user: User) -> None:
        """Lift C{user}'s mute."""
        user.muted_until = None
        self._until.pop(self.identity(user), None)

    def apply(self, user: User, now: float) -> None:
        """Mute C{user} (a newcomer, or resumed) if their identity is muted."""
        key = self.identity(user)
        until = self._until.get(key)
        if until is None:
            return
        if until > now:
            user.muted_until = until
        else:
            del self._until[key]

    @staticmethod
    def left(user: User, now: float) -> float | None:
        """
        How long C{user} stays muted (C{math.inf}: until lifted); C{None}
        when they may talk.
        """
        until = user.muted_until
        if until is None:
            return None
        if until <= now:
            user.muted_until = None
            return None
        return math.inf if math.isinf(until) else until - now
