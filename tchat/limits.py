# -*- test-case-name: tests.test_limits -*-
"""
Rate-limit primitives that keep one client from hurting the others.

  - L{TokenBucket} and L{per_minute}: the rate limit behind messages,
    joins, nick changes and new connections.
  - L{parse_ip}, L{parse_network} and L{exempt}: client addresses, and the
    networks (C{[limits] exempt}, bans) they are checked against, each
    parsed once.
  - L{plural}: counts in the messages that tell a client which limit it
    met.

Who may open a connection at all is L{tchat.gate}; what a client is sent,
and how much of it may wait, is L{tchat.output}.  The settings are
C{[limits]} in C{tap.ini} (L{tchat.config.LimitsConfig}).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache


class TokenBucket:
    """
    C{rate} tokens a second, up to C{burst} saved up.

    Starts full, so a newcomer's first C{burst} actions are never limited.
    """

    __slots__ = ("_stamp", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self._stamp = now

    def _refill(self, now: float) -> None:
        elapsed = now - self._stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self._stamp = now

    def take(self, now: float) -> bool:
        """
        Spend one token if there is one.

        @return: Whether the action is allowed.
        """
        self._refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def full(self, now: float) -> bool:
        """
        @return: Whether the bucket has refilled completely (its owner has
            been quiet for long enough).
        """
        self._refill(now)
        return self.tokens >= self.burst


def per_minute(count: int, now: float) -> TokenBucket:
    """
    A bucket allowing C{count} actions a minute, all of them at once.
    """
    return TokenBucket(count / 60.0, count, now)


@lru_cache(maxsize=4096)
def parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """
    A client's address as an IP address (an IPv4-mapped IPv6 address as
    the IPv4 one), parsed once per address; C{None} if it is none.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def exempt(host: str, networks: tuple[str, ...]) -> bool:
    """
    Is C{host} in one of C{networks} (C{[limits] exempt})?
    """
    address = parse_ip(host)
    if address is None:
        return False
    return any(address in parse_network(n) for n in networks)


@lru_cache(maxsize=1024)
def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """
    A network from C{[limits] exempt} or a ban, parsed once, not once per
    connection checked against it.  IPv4-mapped IPv6 networks
    (C{::ffff:192.0.2.7/128}) are given as the IPv4 ones they stand for,
    since L{parse_ip} gives a client's mapped address as IPv4 too.

    @raise ValueError: If C{text} is not a network.
    """
    network = ipaddress.ip_network(text, strict=False)
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def plural(count: int, word: str) -> str:
    """C{1 connection}, C{2 connections}."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
