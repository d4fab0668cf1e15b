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
    """

    def __init__(self, link: RedisLink, store: RedisStore) -> None:
        self._link = link
        self._store = store
        self._inbox: IHubInbox | None = None
        self._directory: Directory | None = None
        self._positions: dict[str, Position] = {}
        self._ensuring: dict[str, list[Deferred[None]]] = {}
        self._holding: dict[str, list[Said]] | None = None

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
        if room is None:
            room = directory.new_room(said.room, said.epoch)
            room.stored = True
        else:
            epoch, last = self._positions.get(key, (0, 0))
            if said.epoch == epoch and said.id <= last:
                return  # had it already (a catch-up after a split sent it)
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
        Record in Redis the rooms of C{rooms} it may not have, and take
        its view of each, once even when asked for several times at once.
        """
        waits = []
        for room in rooms:
            key = room.key
            if key not in self._ensuring:
                if key in self._positions:
                    continue
                self._ensuring[key] = []
                self.record(room).addErrback(logged("recording a room")).addBoth(
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

    def _recorded(self, result: object, key: str) -> None:
        for done in self._ensuring.pop(key, []):
            done.callback(None)

    def record(self, room: Room, fresh_epoch: int | None = None) -> Deferred[None]:
        """
        Make sure Redis has C{room} (as this node knows it), then take the
        cluster's view of it: its epoch, lineage, last id and topic.

        @param fresh_epoch: The epoch to propose if Redis lost the room.
        """
        link, key = self._link, room.key
        lineage, epoch = list(room.lineage), room.epoch
        if fresh_epoch is not None:
            epoch = fresh_epoch
            lineage = [*lineage, (fresh_epoch, room.last_id + 1)]
        d = link.eval(
            scripts.ROOM,
            [link.key("room", key), link.key("rooms")],
            [
                room.name,
                key,
                epoch,
                dumps(lineage),
                room.last_id,
                room.topic or "",
                room.topic_by or "",
                self._positions.get(key, (0, 0))[1],
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
                int(last_id) - self._hub()[1].settings.history.keep,
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
        """
        Learn the rooms the cluster has that this node does not (or has
        an older view of), with their latest messages.

        @return: The bans the cluster keeps.
        """
        _, directory = self._hub()
        loaded = await self._store.load_all()
        for record in loaded.rooms:
            room = directory.rooms.get(record.key)
            if room is None:
                room = directory.new_room(record.name, record.epoch)
            else:
                epoch, last = self._positions.get(record.key, (0, 0))
                if epoch == record.epoch and last >= record.last_id:
                    continue
            if room.members:
                continue  # caught up for its members (see catch_up)
            self._adopt(room, record)
            await self.refill(room)
        return loaded.bans

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
        the position C{before}, as a resume, and refill the room.
        """
        inbox, directory = self._hub()
        epoch, after = before
        now_epoch, last = self._positions.get(room.key, (0, 0))
        if now_epoch == epoch and last > after and room.members:
            found = await self._store.read(
                room.key, after, last, limit=directory.settings.history.keep
            )
            complete = bool(found) and found[0].id == after + 1
            history = events.History(
                room.name,
                room.epoch,
                tuple(found),
                "resume",
                complete=complete,
                last_id=last,
            )
            inbox.event(history, Audience(rooms=(room.key,)))
        await self.refill(room)
