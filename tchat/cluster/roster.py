# -*- test-case-name: tests.test_cluster -*-
"""
L{Roster}: this node's users as the cluster knows them.

  - Nicks are claimed in Redis with an expiry, renewed by each node's
    heartbeat; leaving releases a claim, if it is still this user's.
  - Membership lives in Redis hashes: C{users:NODE} (each user of a node,
    with their rooms) and C{who:ROOM} (each member of a room, on any
    node), which C{/who} and C{/rooms} read.
"""

import json
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.defer import Deferred, succeed

from tchat import events
from tchat.cluster import scripts
from tchat.cluster.redis import RedisLink, dumps, logged
from tchat.cluster.wire import TakeOver, encode
from tchat.model import User
from tchat.palette import PALETTE
from tchat.text import nick_key, normalize_nick


class Roster:
    """
    Nick claims and membership hashes of one node's users.
    """

    def __init__(self, link: RedisLink, node_timeout: float) -> None:
        self._link = link
        self.node = link.node
        self.timeout_ms = int(node_timeout * 1000)
        # C{[history] room_ttl}, as the hub has it now (set on attach).
        self.room_ttl: Callable[[], int] = lambda: 0
        # Told the keys of rooms a member is in that Redis does not have.
        self.missing: Callable[[list[str]], None] = lambda keys: None
        # The owner each nick key of this node's was claimed with: a user's
        # session code may change (a resume) while a claim made before
        # stands.
        self._claims: dict[str, str] = {}

    def owner(self, user: User) -> str:
        """What a new claim for C{user} holds: this node and their session."""
        return f"{self.node} {user.code}"

    def owner_of(self, user: User) -> str:
        """What the claim of C{user}'s nick holds."""
        return self._claims.get(user.key) or self.owner(user)

    # -- nicks ---------------------------------------------------------------

    def claim(
        self, user: User, nick: str, takeover: bool = False, force: bool = False
    ) -> Deferred[bool]:
        """
        Claim C{nick} for C{user}.

        @param takeover: Take it from another connection of the same
            session (a resume), which is then closed.
        @param force: Take it from whoever has it, who is then closed (the
            account's owner logged in).
        @return: Fires with whether it was claimed; fails with
            L{tchat.cluster.redis.ClusterDownError} when Redis cannot be
            reached.
        """
        link, key, owner = self._link, nick_key(nick), self.owner(user)
        d = link.eval(
            scripts.CLAIM,
            [link.key("nick", key)],
            [owner, self.timeout_ms, "*" if force else user.code if takeover else ""],
        )

        def claimed(result: list[Any]) -> bool:
            outcome, old = int(result[0]), result[1]
            if outcome == 2:
                node, _, code = old.partition(" ")
                link.publish(encode(TakeOver(node, code, force))).addErrback(
                    logged("closing a resumed session elsewhere")
                )
            if outcome:
                self._claims[key] = owner
            return bool(outcome)

        return d.addCallback(claimed)

    def release(self, key: str) -> None:
        """Free the nick with key C{key}, if this node claimed it."""
        owner = self._claims.pop(key, None)
        if owner is not None and self._link.up:
            self._link.eval(
                scripts.RELEASE, [self._link.key("nick", key)], [owner]
            ).addErrback(logged("freeing a nick"))

    def lost(self, key: str) -> None:
        """Another node has the nick with key C{key} now."""
        self._claims.pop(key, None)

    def heartbeat(self, users: Iterable[User]) -> list[Any]:
        """The (nick key, owner) pairs the heartbeat renews."""
        pairs: list[Any] = []
        for user in users:
            pairs += [user.key, self.owner_of(user)]
        return pairs

    def locate(self, nick: str) -> Deferred[str | None]:
        """
        Who has C{nick}: the nick as they spell it, or C{None}.
        """
        link = self._link
        if not link.up:
            return succeed(None)
        normal = normalize_nick(nick)
        key = nick_key(normal)
        d = link.eval(scripts.WHERE, [link.key("nick", key)], [link.prefix, key])
        return d.addCallback(lambda found: (found[1] or normal) if found else None)

    # -- membership ----------------------------------------------------------

    def register(self, user: User) -> None:
        """
        Record where C{user} is now: their nick, door and rooms (which are
        kept from expiring while they are in them).
        """
        link = self._link
        if not link.up:
            return
        key = user.key
        rooms = [r.key for r in user.rooms]
        link.command(
            "HSET",
            link.key("users", self.node),
            key,
            dumps([user.nick, user.door, rooms, self.owner_of(user)]),
        ).addErrback(logged("recording a user"))
        if rooms:
            entry = dumps(
                [
                    user.nick,
                    user.door,
                    self.node,
                    user.account is not None,
                    user.away,
                    user.colour.name,
                ]
            )
            recorded = link.eval(scripts.MEMBER, [], [link.prefix, key, entry, *rooms])
            recorded.addCallback(lambda missing: missing and self.missing(missing))
            recorded.addErrback(logged("recording a member"))

    def unregister(self, key: str, rooms: Iterable[str], user: User | None) -> None:
        """
        Forget the member whose nick has the key C{key} in C{rooms} (a room
        left empty goes or expires: see L{scripts.LEAVE}), then record
        C{user} as they are now (C{None}: they left).
        """
        link = self._link
        if not link.up:
            return
        if user is not None:
            # First, so that a room they stay in (under a new nick) is
            # never seen empty.
            self.register(user)
        left = list(rooms)
        if left:
            link.eval(
                scripts.LEAVE,
                [],
                [link.prefix, self.room_ttl(), key, self.node, *left],
            ).addErrback(logged("forgetting a member"))
        if user is None or user.key != key:
            link.command("HDEL", link.key("users", self.node), key).addErrback(
                logged("forgetting a user")
            )

    def who(self, room: str) -> Deferred[list[events.Member]]:
        """Every member of the room with key C{room}."""
        link = self._link
        d = link.command("HGETALL", link.key("who", room))

        def members(flat: list[str]) -> list[events.Member]:
            found = [json.loads(v) for v in flat[1::2]]
            found.sort(key=lambda m: m[0].casefold())
            # Entries of nodes from before accounts have three fields, from
            # before colours five.
            return [
                events.Member(
                    m[0],
                    m[1],
                    bool(m[3:4] and m[3]),
                    (m[4:5] or [None])[0],
                    PALETTE.get((m[5:6] or [""])[0]),
                )
                for m in found
            ]

        return d.addCallback(members)

    def rooms(
        self, offset: int, count: int
    ) -> Deferred[tuple[int, list[events.RoomInfo]]]:
        """
        C{count} rooms of the cluster from the C{offset}th on, by key, and
        how many there are in all.
        """
        d = self._link.eval(scripts.ROOMS, [], [self._link.prefix, offset, count])

        def listed(answer: list[Any]) -> tuple[int, list[events.RoomInfo]]:
            total, rows = answer
            return int(total), [
                events.RoomInfo(str(n), int(c), t or None) for n, c, t in rows
            ]

        return d.addCallback(listed)
