# -*- test-case-name: tests.test_cluster -*-
"""
L{RedisStore}: history in Redis, shared by every node of the cluster.

The same interface as the embedded stores (L{tchat.history.HistoryStore}).
Room messages are written by the backplane's C{SAY} script, not by
L{RedisStore.append}: a message is kept before any node shows it.
"""

import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from twisted.internet.defer import Deferred, succeed

from tchat import events
from tchat.cluster.accounts import RedisAccounts
from tchat.cluster.redis import RedisLink, dumps, logged
from tchat.cluster.wire import message_from
from tchat.config import HistoryConfig
from tchat.history import AccountStore, Ban, Loaded, RoomRecord, Session


class RedisStore:
    """
    Rooms, messages, resume codes and bans, in the cluster's Redis.

    @ivar names: The name of a room from its key (set by the backplane).
    @ivar accounts: The registered accounts, in the same Redis.
    """

    observe_write: Callable[[float], None] | None = None
    queued = 0

    def __init__(self, link: RedisLink, keep: int, resume_ttl: int) -> None:
        self._link = link
        self.keep = keep
        self.resume_ttl = resume_ttl
        # Typed as the interface's: the protocol's attribute is settable.
        self.accounts: AccountStore = RedisAccounts(link)
        self.names: Callable[[str], str] = lambda key: key
        self.description = (
            f"in Redis, shared by the cluster (node {link.node}, "
            f"prefix {link.prefix!r})"
        )

    def health(self) -> str | None:
        """
        @return: C{None}: whether Redis can be reached is the backplane's
            C{cluster} check.
        """
        return None

    def reconfigure(self, config: HistoryConfig) -> None:
        self.keep = config.keep
        self.resume_ttl = config.resume_ttl

    def load(self, now: float) -> Deferred[Loaded]:
        # The backplane learns the cluster's rooms and bans when it reaches
        # Redis (see RedisBackplane.start), not before.
        return succeed(Loaded())

    async def bans(self) -> list[Ban]:
        """Every ban the cluster keeps."""
        link = self._link
        flat = await link.command("HGETALL", link.key("bans"))
        return [Ban(**json.loads(raw)) for raw in flat[1::2]]

    def save_room(self, room: RoomRecord) -> None:
        link = self._link
        if not link.up:
            return
        args: list[Any] = ["name", room.name]
        args += ["topic", room.topic or "", "topic_by", room.topic_by or ""]
        link.command("HSET", link.key("room", room.key), *args).addErrback(
            logged("saving a room")
        )
        link.command("ZADD", link.key("roomindex"), 0, room.key).addErrback(
            logged("saving a room")
        )

    def append(self, message: events.RoomMessage, durable: bool) -> None:
        # Said through the cluster, a message is kept by the script that
        # numbers it; said while Redis is unreachable, it cannot be kept.
        return None

    def save_session(self, session: Session) -> None:
        link = self._link
        if not link.up or not self.resume_ttl:
            return
        link.command(
            "SET",
            link.key("session", session.code),
            dumps(asdict(session)),
            "PX",
            self.resume_ttl * 1000,
        ).addErrback(logged("saving a resume code"))

    def read(
        self,
        room_key: str,
        after: int = 0,
        upto: int | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> Deferred[list[events.RoomMessage]]:
        low = after + 1
        high = upto if upto is not None else 2**62
        if before is not None:
            high = min(high, before - 1)
        if high < low or limit <= 0:
            return succeed([])
        link, newest = self._link, before is not None
        stream = link.key("room", room_key, "log")
        if newest:
            d = link.command(
                "XREVRANGE", stream, f"{high}-1", f"{low}-0", "COUNT", limit
            )
        else:
            d = link.command("XRANGE", stream, f"{low}-0", f"{high}-1", "COUNT", limit)
        name = self.names(room_key)

        def parsed(entries: list[Any]) -> list[events.RoomMessage]:
            found = []
            for entry_id, flat in entries:
                entry = dict(zip(flat[::2], flat[1::2], strict=False))
                found.append(
                    message_from(
                        name,
                        int(entry_id.partition("-")[0]),
                        int(entry["e"]),
                        json.loads(entry["m"]),
                    )
                )
            if newest:
                found.reverse()
            return found

        return d.addCallback(parsed)

    def session(self, code: str, oldest: float) -> Deferred[Session | None]:
        link = self._link

        def parsed(raw: str | None) -> Session | None:
            if not raw:
                return None
            data = json.loads(raw)
            data["rooms"] = tuple(tuple(r) for r in data["rooms"])
            # (A session kept by an older tchat has no "account": none.)
            found = Session(**data)
            return found if found.saved >= oldest else None

        return link.command("GET", link.key("session", code)).addCallback(parsed)

    def delete_room(self, key: str) -> None:
        # The cluster's scripts delete or expire a room once nobody is in
        # it on any node (scripts.LEAVE).
        return None

    def delete_session(self, code: str) -> None:
        link = self._link
        if link.up:
            link.command("DEL", link.key("session", code)).addErrback(
                logged("forgetting a resume code")
            )

    def save_ban(self, ban: Ban) -> None:
        link = self._link
        link.command("HSET", link.key("bans"), ban.id, dumps(asdict(ban))).addErrback(
            logged("saving a ban")
        )

    def delete_ban(self, ban_id: int) -> None:
        link = self._link
        link.command("HDEL", link.key("bans"), ban_id).addErrback(
            logged("forgetting a ban")
        )

    def close(self) -> Deferred[None]:
        # The backplane closes the connections, after the last sessions
        # were kept.
        return succeed(None)
