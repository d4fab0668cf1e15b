# -*- test-case-name: tests.test_cluster -*-
"""
L{Ledger}: where each room stands in the cluster, as this node knows it.

For every room it has heard of from Redis, a node keeps the room's epoch
and the id of its latest message there (its I{position}).  With it, the
node hands each message from the bus to the hub once, knows which rooms
Redis has not been told of yet, and, after being cut off, what its users
missed.
"""

import json
import time
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, gatherResults, succeed

from tchat import events
from tchat.cluster import scripts
from tchat.cluster.redis import RedisLink, dumps, logged
from tchat.cluster.store import RedisStore
from tchat.cluster.wire import Said
from tchat.history import Ban, RoomRecord
from tchat.model import Directory, Room
from tchat.seam import Audience, IHubInbox
from tchat.text import room_key

Position = tuple[int, int]
"""A room's epoch and the id of its latest message, as the cluster has it."""


class Ledger:
    """
    Each room's position in the cluster, the rooms being recorded in Redis,
    and the bus messages held while a room catches up.

    @ivar skipped: Called with each bus message not handed over because
        the room was recorded past it.
    """

    def __init__(self, link: RedisLink, store: RedisStore) -> None:
        self._link = link
        self._store = store
        self._inbox: IHubInbox | None = None
        self._directory: Directory | None = None
        self._positions: dict[str, Position] = {}
        self._ensuring: dict[str, list[Deferred[None]]] = {}
        self._holding: dict[str, list[Said]] | None = None
        self.skipped: Callable[[Room, Said], None] = lambda room, said: None

    def attach(self, inbox: IHubInbox, directory: Directory) -> None:
        """Where messages go, and the rooms they go to."""
        self._inbox, self._directory = inbox, directory

    def _hub(self) -> tuple[IHubInbox, Directory]:
        assert self._inbox is not None and self._directory is not None
        return self._inbox, self._directory

    def position(self, room: Room) -> Position:
        """Where C{room} stands in the cluster; (0, 0) for not known."""
        return self._positions.get(room.key, (0, 0))

    # -- messages ------------------------------------------------------------

    def arrived(self, said: Said) -> None:
        """
        A room message from the bus: hand it to the hub, once, unless its
        room is catching up (then after the catch-up).
        """
        key = room_key(said.room)
        held = self._holding
        if held is not None and key in held:
            held[key].append(said)
        else:
            self._deliver(key, said)

    def _deliver(self, key: str, said: Said) -> None:
        inbox, directory = self._hub()
        room = directory.rooms.get(key)
        if room is None or not room.stored:
            # Nobody here is in it (or it is being recorded, which gives
            # its position): this node keeps nothing of it.
            self._positions.pop(key, None)
            return
        epoch, last = self._positions.get(key, (0, 0))
        if said.epoch == epoch and said.id <= last:
            # Had it already: the room was recorded past it (a resync, a
            # join), and a catch-up or a replay showed it, not this copy.
            self.skipped(room, said)
            return
        self._positions[key] = (said.epoch, said.id)
        inbox.message(room, said.message(room.name), time.perf_counter())

    def hold(self, rooms: list[Room]) -> None:
        """Hold the bus messages of C{rooms} until each is caught up."""
        self._holding = {room.key: [] for room in rooms}

    def caught_up(self, room: Room) -> None:
        """C{room} is caught up: hand over what was held for it."""
        if self._holding is not None:
            for said in self._holding.pop(room.key, []):
                self._deliver(room.key, said)

    def release(self) -> None:
        """Hold nothing more; hand over whatever is still held."""
        held, self._holding = self._holding or {}, None
        for key, saids in held.items():
            for said in saids:
                self._deliver(key, said)

    # -- rooms -----------------------------------------------------------------

    def ensure(self, rooms: list[Room]) -> Deferred[None]:
        """
        Record in Redis the rooms of C{rooms} this node has not taken the
        cluster's view of, take it, and load their latest messages (for the
        join replay), once even when asked for several times at once.
        """
        waits = []
        for room in rooms:
            key = room.key
            if key not in self._ensuring:
                if key in self._positions and room.stored and key in self._link.rooms:
                    continue
                self._ensuring[key] = []
                viewed = Deferred.fromCoroutine(self._view(room))
                viewed.addErrback(logged("recording a room")).addBoth(
                    self._recorded, key
                )
                if key not in self._ensuring:
                    continue  # Redis answered at once
            done: Deferred[None] = Deferred()
            self._ensuring[key].append(done)
            waits.append(done)
        if not waits:
            return succeed(None)
        return gatherResults(waits).addCallback(lambda _: None)

    async def _view(self, room: Room) -> None:
        # Listening first: whatever is said after the record arrives.
        await self._link.listen(room.key)
        await self.record(room)
        await self.refill(room)

    @property
    def ensuring(self) -> bool:
        """Whether rooms are being recorded for users about to join them."""
        return bool(self._ensuring)

    def _recorded(self, result: object, key: str) -> None:
        for done in self._ensuring.pop(key, []):
            done.callback(None)

    def forget(self, key: str) -> None:
        """
        Take room C{key}'s view again before anything more is said there:
        Redis does not have it as this node knew it (it restarted), or
        nobody here is in it any more (the next member here has it
        recorded and loaded again).
        """
        self._positions.pop(key, None)

    def record(self, room: Room) -> Deferred[None]:
        """
        Make sure Redis has C{room} (as this node knows it), then take the
        cluster's view of it: its epoch, lineage, last id and topic.  A room
        Redis lost, or kept from before it restarted, goes on in a fresh
        epoch (see L{scripts.ROOM}).
        """
        link, key = self._link, room.key
        _, directory = self._hub()
        base = link.key("room", key)
        d = link.eval(
            scripts.ROOM,
            [
                base,
                f"{base}:log",
                f"{base}:tags",
                f"{base}:tagq",
                link.key("roomindex"),
            ],
            [
                room.name,
                key,
                directory.new_epoch(),
                dumps(list(room.lineage) if room.last_id else []),
                room.last_id,
                room.topic or "",
                room.topic_by or "",
                self._positions.get(key, (0, 0))[1],
                link.run,
            ],
        )

        def adopt(row: list[Any]) -> None:
            _, epoch, lineage, last_id, topic, topic_by = row
            record = RoomRecord(
                key,
                room.name,
                int(epoch),
                [tuple(x) for x in json.loads(lineage)],
                int(last_id),
                int(last_id) - directory.settings.history.keep,
                topic or None,
                topic_by or None,
            )
            self._adopt(room, record)

        return d.addCallback(adopt)

    def _adopt(self, room: Room, record: RoomRecord) -> None:
        room.adopt(record)
        self._positions[room.key] = (record.epoch, record.last_id)

    # -- coming back -----------------------------------------------------------

    async def learn(self) -> list[Ban]:
        """The bans the cluster keeps."""
        return await self._store.bans()

    async def refill(self, room: Room) -> None:
        """Load C{room}'s latest messages, for replay on join."""
        want = room.recent.maxlen or 1
        found = await self._store.read(
            room.key, room.pruned_to, room.last_id, room.last_id + 1, want
        )
        room.refill(found)

    async def catch_up(self, room: Room, before: Position) -> None:
        """
        After a split: send C{room}'s members what the cluster said after
        the position C{before}, as a resume, and refill the room.  When the
        room went on in another epoch meanwhile (Redis restarted), what it
        has in that epoch is all new here.
        """
        inbox, directory = self._hub()
        epoch, after = before
        now_epoch, last = self._positions.get(room.key, (0, 0))
        if now_epoch != epoch:
            first = next((f for e, f in room.lineage if e == now_epoch), None)
            after = last if first is None else first - 1
        if last > after and room.members:
            found = await self._store.read(
                room.key, after, last, limit=directory.settings.history.keep
            )
            complete = bool(found) and found[0].id == after + 1
            history = events.History(
                room.name,
                room.epoch,
                tuple(found),
                "resume",
                complete=complete and now_epoch == epoch,
                last_id=last,
            )
            inbox.event(history, Audience(rooms=(room.key,)))
        await self.refill(room)
