# -*- test-case-name: tests.test_crowds -*-
"""
Big rooms: arrivals and departures told together.

In a room of N members, every arrival told to everyone costs N deliveries,
so N people filling it cost N squared, and a busy door of a big room
drowns its chat in presence lines.  Above C{[limits] big_room} members, a
room's joins, parts and quits (and users lost with a node) are gathered
and told every C{[limits] big_room_summary} seconds in one
L{events.Crowd}: each member is told at most one a period, however many
come and go.

What stays at once: the user who comes or goes is told their own join or
part (it opens or closes the room in their client), and the members of
the small rooms they share are told as before.  Someone who comes and goes
within one period is never told of at all.  Each node gathers for its own
members, whichever node the events came from.
"""

from collections.abc import Callable, Iterable
from dataclasses import replace

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from tchat import events
from tchat.model import Directory, User
from tchat.seam import Audience
from tchat.text import nick_key

GATHERED = frozenset({"join", "part", "quit", "lost"})
"""The presence kinds a big room tells in its summary."""


class _Changes:
    """One big room's arrivals and departures since its last summary."""

    __slots__ = ("back", "joined", "left")

    def __init__(self) -> None:
        # Who came and who went, by nick key, as /who lists them.
        self.joined: dict[str, events.Member] = {}
        self.left: dict[str, events.Member] = {}
        # Who went and came back: a member before the period began.
        self.back: set[str] = set()

    def came(self, key: str, member: events.Member) -> None:
        if self.left.pop(key, None) is not None:
            self.back.add(key)
        self.joined[key] = member

    def went(self, key: str, member: events.Member) -> None:
        if key in self.joined and key not in self.back:
            # Came and went within the period: nobody needs to hear of it.
            del self.joined[key]
            return
        self.joined.pop(key, None)
        self.left[key] = member


class Crowds:
    """
    Gathers the presence of big rooms and tells it once a period.
    """

    def __init__(
        self,
        directory: Directory,
        clock: IReactorTime,
        fan_out: Callable[[Iterable[User], events.Event], None],
    ) -> None:
        self._directory = directory
        self._clock = clock
        self._fan_out = fan_out
        self._pending: dict[str, _Changes] = {}
        self._timer: IDelayedCall | None = None

    def divert(self, event: events.Presence, audience: Audience) -> Audience:
        """
        Keep the big rooms' share of C{event} for their next summary.

        @return: Who is to be told C{event} now: the members of its small
            rooms, and its subject if they are a user of this node.
        """
        most = self._directory.settings.limits.big_room
        if not most or not audience.rooms:
            return audience
        if event.kind == "nick":
            return self._renamed(event, audience)
        if event.kind not in GATHERED:
            return audience
        rooms = self._directory.rooms
        big = [
            key
            for key in audience.rooms
            if (room := rooms.get(key)) is not None and len(room.members) > most
        ]
        if not big:
            return audience
        key = nick_key(event.nick)
        member = events.Member(
            event.nick, event.door, event.registered, None, event.colour
        )
        for room_key in big:
            changes = self._pending.get(room_key)
            if changes is None:
                changes = self._pending[room_key] = _Changes()
            if event.kind == "join":
                changes.came(key, member)
            else:
                changes.went(key, member)
        if self._timer is None:
            interval = self._directory.settings.limits.big_room_summary
            self._timer = self._clock.callLater(interval, self.flush)
        return self._told_now(audience, big, self._directory.users.get(key))

    def _renamed(self, event: events.Presence, audience: Audience) -> Audience:
        """
        A nick change: in a big room whose members were not told yet that
        its author came, the pending arrival takes the new nick and nobody
        there is told the change.
        """
        if event.new_nick is None:
            return audience
        old, new = nick_key(event.nick), nick_key(event.new_nick)
        unheard = []
        for room_key in audience.rooms:
            changes = self._pending.get(room_key)
            if changes is None or old not in changes.joined or old in changes.back:
                continue
            member = changes.joined.pop(old)
            changes.joined[new] = replace(member, nick=event.new_nick)
            unheard.append(room_key)
        if not unheard:
            return audience
        users = self._directory.users
        return self._told_now(audience, unheard, users.get(new) or users.get(old))

    @staticmethod
    def _told_now(
        audience: Audience, gathered: list[str], subject: User | None
    ) -> Audience:
        """
        C{audience} without the rooms whose share was C{gathered} for their
        summary, and with the event's C{subject}, who is always told at once.
        """
        return replace(
            audience,
            rooms=tuple(k for k in audience.rooms if k not in gathered),
            users=audience.users + ((subject,) if subject is not None else ()),
        )

    def flush(self) -> None:
        """Tell each big room what changed since its last summary."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        pending, self._pending = self._pending, {}
        now = self._clock.seconds()
        for key, changes in pending.items():
            room = self._directory.rooms.get(key)
            if room is None or not (changes.joined or changes.left):
                continue
            crowd = events.Crowd(
                now,
                room.name,
                tuple(changes.joined.values()),
                tuple(changes.left.values()),
                len(room.members),
            )
            told: Iterable[User] = room.members
            if len(changes.joined) + len(changes.left) == 1:
                # Only one came: they know (they were told at once).
                (only,) = (*changes.joined, *changes.left)
                told = [u for u in room.members if u.key != only]
            self._fan_out(told, crowd)

    def stop(self) -> None:
        """The hub stops: everyone is leaving, so nothing pending is told."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._pending.clear()


def crowd_text(event: events.Crowd, most: int = 5) -> str:
    """
    A summary for people: C{12 joined #lobby (alice, bob, ...); 3 left
    (carol, ...)}, naming at most C{most} of each.
    """

    def named(nicks: list[str]) -> str:
        shown = ", ".join(nicks[:most])
        more = len(nicks) - most
        return f"{shown} and {more} more" if more > 0 else shown

    parts = []
    if event.joined:
        nicks = [m.nick for m in event.joined]
        parts.append(f"{len(nicks)} joined {event.room} ({named(nicks)})")
    if event.left:
        where = "" if event.joined else f" {event.room}"
        nicks = [m.nick for m in event.left]
        parts.append(f"{len(nicks)} left{where} ({named(nicks)})")
    return "; ".join(parts) + f"; {event.members} here"
