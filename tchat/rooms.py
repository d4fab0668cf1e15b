# -*- test-case-name: tests.test_rooms -*-
"""
Rooms: joining, leaving, topics, and who is where (C{/join}, C{/part},
C{/topic}, C{/who}, C{/rooms}).
"""

from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tchat import events
from tchat.commands import ROOMS_PAGE
from tchat.delivery import Delivery
from tchat.history import HistoryStore
from tchat.model import Directory, Room, User, arrival
from tchat.pacing import Pacing
from tchat.seam import Audience, IBackplane, Listing
from tchat.sessions import Sessions
from tchat.text import clean_text, normalize_room, quoted, room_key, room_problem

ONLY_HERE = "the cluster is unreachable: this lists only what is on this server"
"""Said before a listing that only this node could answer."""

EXPIRE_EVERY = 60.0
"""Seconds between two looks for rooms nobody was in for C{room_ttl}."""


class Rooms:
    """
    Who is in which room, and what each room is about.
    """

    _log = Logger()

    def __init__(
        self,
        directory: Directory,
        delivery: Delivery,
        backplane: IBackplane,
        pacing: Pacing,
        sessions: Sessions,
        store: HistoryStore,
        clock: IReactorTime,
    ) -> None:
        self._directory = directory
        self._delivery = delivery
        self._backplane = backplane
        self._pacing = pacing
        self._sessions = sessions
        self._store = store
        self._clock = clock
        directory.forgotten = lambda room: store.delete_room(room.key)
        self._expired_at = clock.seconds()

    def expire(self) -> None:
        """
        Forget, history and all, the rooms nobody has been in for
        C{[history] room_ttl} (looking once a minute at most), but the
        default room.  A node of a cluster keeps no such rooms: Redis
        expires them.
        """
        now, ttl = self._clock.seconds(), self._directory.settings.history.room_ttl
        if not ttl or now - self._expired_at < EXPIRE_EVERY:
            return
        self._expired_at = now
        lobby = room_key(self._directory.settings.server.default_room)
        for key, room in list(self._directory.rooms.items()):
            if not room.members and key != lobby and room.quiet_since + ttl <= now:
                self._log.info(
                    "forgot {room}: nobody was in it for {ttl} s",
                    room=room.name,
                    ttl=ttl,
                )
                del self._directory.rooms[key]
                self._store.delete_room(key)

    # -- naming rooms ------------------------------------------------------

    def name(self, user: User, name: str) -> str | None:
        """
        Normalise a room name a user typed, telling them if it is invalid.
        """
        normal = normalize_room(name)
        problem = room_problem(normal)
        if problem is not None:
            self._delivery.error(user, "room-invalid", f"{quoted(name)}: {problem}")
            return None
        return normal

    def find(self, user: User, name: str | None) -> Room | None:
        """
        Resolve a room argument (C{None}: the current room), telling the
        user if it cannot be.
        """
        if name is None:
            if user.current is None:
                self._delivery.error(user, "no-room", "you are in no room; name one")
            return user.current
        room = self._directory.room(name)
        if room is not None and room.name == name:
            return room  # a known room's own name, valid by construction
        normal = self.name(user, name)
        if normal is None:
            return None
        room = self._directory.room(normal)
        if room is None:
            self._delivery.error(user, "no-such-room", f"there is no room {normal}")
        return room

    def joined(self, user: User, name: str | None) -> Room | None:
        """
        Resolve a room argument that must be a room the user is in.
        """
        room = self.find(user, name)
        if room is not None and user not in room.members:
            self._delivery.error(user, "not-in-room", f"you are not in {room.name}")
            return None
        return room

    # -- joining and leaving -------------------------------------------------

    def join_named(self, user: User, name: str) -> Deferred[Any] | None:
        """C{/join ROOM}: join it (making it), or switch to it."""
        normal = self.name(user, name)
        if normal is None:
            return None
        room = self._directory.room(normal)
        if room is not None and user in room.members:
            user.current = room
            self._delivery.tell(user, events.Status(f"now talking in {room.name}"))
            return None
        refusal = self._pacing.join(user)
        if refusal is not None:
            self._delivery.refuse(user, refusal.notice)
            return None
        return self.with_rooms(user, (normal,), lambda: self._join_known(user, normal))

    def _join_known(self, user: User, name: str) -> None:
        room = self._directory.room(name) or self._directory.new_room(name)
        if user in room.members:
            return
        refusal = self._pacing.room_full(user, room)
        if refusal is not None:
            self._delivery.refuse(user, refusal.notice)
            self._directory.tidy(room)
            return
        self.join(user, room)

    def with_rooms(
        self, user: User, names: Iterable[str], then: Callable[[], None]
    ) -> Deferred[Any] | None:
        """
        Call C{then} once every room in C{names} is known as the whole chat
        knows it (its epoch, latest id and topic), so that nobody is shown
        a room under an epoch of this node's own; not at all if C{user}
        has left meanwhile.

        @return: What C{then} waits for, if it could not run at once.
        """
        rooms = [self._directory.room(n) or self._directory.new_room(n) for n in names]

        def ready(_: object) -> None:
            if user.connected:
                then()
            for room in rooms:
                self._directory.tidy(room)

        return self._backplane.ensure(rooms).addCallback(ready)

    def join(
        self, user: User, room: Room, replay: bool = True, save: bool = True
    ) -> None:
        """
        Add C{user} to C{room}, tell its members, and show the user the
        room's latest messages (unless C{replay} is false: a resume sends
        what the user missed instead).
        """
        count = self._directory.settings.history.replay
        shown = tuple(room.recent)[-count:] if replay and count else ()
        self._directory.enter(
            user, room, shown[0].id if shown else room.delivered_id + 1
        )
        notice = arrival(user, room, self._clock.seconds())
        if user.settled:
            self._delivery.deliver(notice, Audience(rooms=(room.key,)))
        else:
            self._delivery.tell(user, notice)
        self._backplane.joined(user, room)
        if shown:
            self._delivery.tell(
                user, events.History(room.name, room.epoch, shown, "join")
            )
        if save:
            self._sessions.save(user)

    def part(self, user: User, name: str | None, reason: str | None = None) -> None:
        """C{/part [ROOM]}."""
        room = self.joined(user, name)
        if room is None:
            return
        self.part_from(user, room, clean_text(reason).strip() if reason else None)
        self._sessions.save(user)
        if user.current is None:
            text = "you are in no room now; /join #room"
        else:
            text = f"now talking in {user.current.name}"
        self._delivery.tell(user, events.Status(text))

    def part_from(self, user: User, room: Room, reason: str | None = None) -> None:
        """Take C{user} out of C{room}, telling its members everywhere."""
        notice = events.Presence(
            self._clock.seconds(),
            "part",
            user.nick,
            user.door,
            room=room.name,
            reason=reason or None,
            registered=user.account is not None,
        )
        if user.settled:
            self._delivery.deliver(notice, Audience(rooms=(room.key,)))
        else:
            self._delivery.tell(user, notice)
        self._directory.leave(user, room)
        self._backplane.parted(user, room)

    # -- what is where -------------------------------------------------------

    def list_rooms(self, user: User, page: int = 1) -> Deferred[Any] | None:
        """
        C{/rooms [PAGE]}: the rooms of the chat, a page at a time, so that
        the answer stays small however many rooms there are.
        """

        def listed(listing: Listing[events.RoomInfo]) -> None:
            if not self._answered(user, listing.partial):
                return
            total = len(listing.items) if listing.total is None else listing.total
            if total <= ROOMS_PAGE:
                self._delivery.tell(user, events.RoomList(listing.items))
                return
            pages = -(-total // ROOMS_PAGE)
            if page > pages:
                self._delivery.error(
                    user, "bad-arguments", f"there are only {pages} pages of rooms"
                )
                return
            answer = events.RoomList(listing.items, page, pages, total)
            self._delivery.tell(user, answer)

        offset = (page - 1) * ROOMS_PAGE
        return self._backplane.rooms(offset, ROOMS_PAGE).addCallback(listed)

    def who(self, user: User, name: str | None) -> Deferred[Any] | None:
        """C{/who [ROOM]}: everyone in a room."""
        room = self.find(user, name)
        if room is None:
            return None

        def listed(listing: Listing[events.Member]) -> None:
            if self._answered(user, listing.partial):
                self._delivery.tell(user, events.Who(room.name, listing.items))

        return self._backplane.members(room).addCallback(listed)

    def _answered(self, user: User, partial: bool) -> bool:
        """
        Whether a listing is still wanted; say first when it covers only
        this node.
        """
        if not user.connected:
            return False
        if partial:
            self._delivery.tell(user, events.Status(ONLY_HERE))
        return True

    def topic(self, user: User, text: str | None, name: str | None = None) -> None:
        """
        C{/topic [TEXT]}: show or set the topic of the current room (or of
        C{name}, a room the user is in).
        """
        if name is not None:
            room = self.joined(user, name)
            if room is None:
                return
        else:
            room = user.current
        if room is None:
            self._delivery.error(
                user, "no-room", "you are in no room; /join #room first"
            )
            return
        if text is None:
            self._delivery.tell(
                user, events.Topic(room.name, room.topic, room.topic_by)
            )
            return
        topic = clean_text(text).strip()
        room.topic, room.topic_by = topic or None, user.nick
        self._store.save_room(room.record())
        room.stored = True
        notice = events.TopicChanged(self._clock.seconds(), room.name, user.nick, topic)
        self._delivery.deliver(notice, Audience(rooms=(room.key,)))

    def topic_changed(self, event: events.TopicChanged) -> None:
        """Someone on another node set a room's topic."""
        room = self._directory.room(event.room)
        if room is not None:
            room.topic, room.topic_by = event.topic or None, event.nick
