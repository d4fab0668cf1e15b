# -*- test-case-name: tests.test_backplane -*-
"""
L{LocalBackplane}: the backplane of a node alone, the embedded default.

It numbers room messages and keeps them through the history store, hands
each back to the hub once kept, and answers for "the whole chat" from this
node's own directory.  The Redis backplane (L{tchat.cluster}) uses one too,
while it cannot reach the other nodes.
"""

import heapq
import time
from collections.abc import Iterable, Sequence

from prometheus_client.metrics_core import Metric
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tchat import events
from tchat.history import HistoryStore, StorageError
from tchat.model import Directory, Room, User, member
from tchat.seam import (
    Audience,
    Draft,
    Health,
    IBackplane,
    IHubInbox,
    Listing,
    NotKeptError,
    Request,
)


@implementer(IBackplane)
class LocalBackplane:
    """
    The chat is this node: messages are numbered here and kept in C{store}.
    """

    _log = Logger()

    def __init__(self, store: HistoryStore) -> None:
        self._store = store
        self._inbox: IHubInbox | None = None
        self._directory: Directory | None = None
        self._last_ban = 0
        # Messages with a client tag waiting for the disk (sync = full), by
        # room key and tag: a retry meanwhile is not numbered again.
        self._unkept: dict[tuple[str, str], int] = {}

    def attach(self, inbox: IHubInbox, directory: Directory) -> None:
        self._inbox = inbox
        self._directory = directory

    def start(self) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        return succeed(None)

    # -- room messages -------------------------------------------------------

    def say(self, sender: User, room: Room, draft: Draft) -> None:
        received = time.perf_counter()
        inbox, tag = self._inbox, draft.client_id
        assert inbox is not None
        if tag is not None and self._unkept:
            number = self._unkept.get((room.key, tag))
            if number is not None:
                inbox.repeated(sender, room, tag, number)
                return
        if not room.stored:
            self._store.save_room(room.record())
            room.stored = True
        room.last_id += 1
        message = draft.message(sender, room, room.last_id)
        committed = self._store.append(message, self._durable)
        if committed is None:
            inbox.message(room, message, received)
            return
        if tag is not None:
            self._unkept[room.key, tag] = message.id

        def kept(_: object) -> None:
            if tag is not None:
                self._unkept.pop((room.key, tag), None)
            inbox.message(room, message, received)

        def lost(why: Failure) -> None:
            if tag is not None:
                self._unkept.pop((room.key, tag), None)
            if why.check(StorageError):
                # The store has said why, in words; this is its sender's
                # message, expected while the fault lasts.
                self._log.warn(
                    "history: message {id} in {room} not kept ({why}); its "
                    "sender is told",
                    id=message.id,
                    room=room.name,
                    why=why.getErrorMessage(),
                )
            else:
                self._log.failure(
                    "history: message {id} in {room} lost",
                    why,
                    id=message.id,
                    room=room.name,
                )
            inbox.unsaid(sender, draft, Failure(NotKeptError(why.getErrorMessage())))

        committed.addCallbacks(kept, lost)

    @property
    def _durable(self) -> bool:
        """Whether a message waits for the disk (C{sync = full})."""
        assert self._directory is not None
        return self._directory.settings.history.sync == "full"

    def ensure(self, rooms: Sequence[Room]) -> Deferred[None]:
        return succeed(None)

    # -- events and requests -------------------------------------------------

    def share(self, event: events.Event, audience: Audience) -> None:
        pass

    def ask(self, request: Request) -> Deferred[None]:
        return succeed(None)

    # -- presence ------------------------------------------------------------

    def joined(self, user: User, room: Room) -> None:
        pass

    def parted(self, user: User, room: Room) -> None:
        pass

    def renamed(self, user: User, old: str) -> None:
        pass

    def left(self, user: User) -> None:
        pass

    def claim(
        self, user: User, nick: str, takeover: bool = False, force: bool = False
    ) -> Deferred[bool]:
        return succeed(True)

    def release(self, user: User, nick: str) -> None:
        pass

    def locate(self, nick: str) -> Deferred[str | None]:
        return succeed(None)

    # -- listings ------------------------------------------------------------

    def rooms(self, offset: int, count: int) -> Deferred[Listing[events.RoomInfo]]:
        assert self._directory is not None
        rooms = self._directory.rooms
        keys = heapq.nsmallest(offset + count, rooms)[offset:]
        page = (rooms[key] for key in keys)
        return succeed(
            Listing(
                tuple(events.RoomInfo(r.name, len(r.members), r.topic) for r in page),
                total=len(rooms),
            )
        )

    def members(self, room: Room) -> Deferred[Listing[events.Member]]:
        # Those not announced yet are nobody's business (see Presence.settle).
        return succeed(Listing(tuple(member(u) for u in room.members if u.settled)))

    def updated(self, user: User) -> None:
        pass

    def ban_ids(self, count: int, above: int) -> Deferred[list[int]]:
        # Never the number of a ban lifted since start: "/unban 3" must not
        # lift another ban than the one the operator saw as #3.
        first = max(self._last_ban, above) + 1
        self._last_ban = first + count - 1
        return succeed(list(range(first, first + count)))

    def health(self) -> Health:
        return Health()

    def metrics(self) -> Iterable[Metric]:
        return ()
