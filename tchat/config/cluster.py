# -*- test-case-name: tests.test_config -*-
"""
The C{[cluster]} section: several tchat nodes sharing rooms through one
Redis (used by L{tchat.cluster}), and L{RedisTarget}, where that Redis is.
"""

import re
from dataclasses import dataclass

from tchat.config._base import Parsers, _bounded_int


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


CLUSTER_PARSERS: Parsers = {
    "redis": _redis,
    "password": str.strip,
    "node": _node,
    "prefix": _prefix,
    "node_timeout": _bounded_int(2, 3600),
}
