# -*- test-case-name: tests.test_cluster -*-
"""
L{RedisBackplane}: one node among several that behave as one chat,
through one Redis.

  - Room messages are numbered, kept (a capped stream per room) and
    published by one Lua script, so every node delivers every room's
    messages with the same ids and in the same order: the order in which
    Redis ran the scripts.  The sender's node, too, delivers them from the
    bus.
  - Everything else that crosses nodes (presence, topics, notices, private
    messages, operator requests) is published on the bus by the node where
    it happened, after that node has told its own users.
  - Nicks and membership: see L{Roster}.  A node whose heartbeat stops is
    buried by the first node that notices: its users are shown as lost and
    its nicks freed.

While Redis cannot be reached, the node serves its own users alone, as a
L{LocalBackplane} does (see C{docs/cluster.md}); when it comes back, the
node registers its users and rooms again and sends its users what the
other nodes said meanwhile (L{RedisBackplane.resync}).
"""

import json
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from tchat import events
from tchat.backplane import LocalBackplane
from tchat.cluster import scripts
from tchat.cluster.ledger import Ledger
from tchat.cluster.outbox import Outbox
from tchat.cluster.redis import RedisLink, logged
from tchat.cluster.roster import Roster
from tchat.cluster.store import RedisStore
from tchat.cluster.wire import (
    BusValue,
    Lost,
    LostUser,
    SaidBatch,
    Shared,
    TakeOver,
    decode,
    encode,
)
from tchat.model import Directory, Room, User, arrival
from tchat.seam import (
    Audience,
    BansKnown,
    Draft,
    Health,
    IBackplane,
    IHubInbox,
    Listing,
    Request,
    TakenOver,
)
from tchat.text import nick_key

_log = Logger()

RESYNC_RETRY = 1.0
"""Seconds before a resynchronisation that failed while Redis answers is
tried again."""

QUIET_AFTER = 5.0
"""
Seconds a room stays without members on this node before the node stops
listening to its channel: a room that empties and fills again at once
(the last member's reconnect) keeps its subscription.
"""


@implementer(IBackplane)
class RedisBackplane:
    """
    The other nodes of the chat, through Redis.

    @ivar link: The connections to Redis.
    @ivar node: This node's name.
    @ivar outages: How often this node lost Redis.
    @ivar buried: How often this node found other nodes dead.
    """

    def __init__(
        self,
        link: RedisLink,
        store: RedisStore,
        clock: IReactorTime,
        node_timeout: float = 10.0,
    ) -> None:
        self.link = link
        self.node = link.node
        self._store = store
        self._clock = clock
        self.node_timeout = node_timeout
        self.outages = 0
        self.buried = 0
        self.roster = Roster(link, node_timeout)
        # Serves this node's users while Redis cannot be reached.
        self._alone = LocalBackplane(store)
        self._inbox: IHubInbox | None = None
        self._directory: Directory | None = None
        self._started = False
        self._stopping = False
        self.ledger = Ledger(link, store)
        self.outbox = Outbox(link, self.ledger, self._hub, clock)
        self.outbox.alone = self._say_alone
        self.ledger.skipped = self.outbox.skipped
        self._quiet: set[str] = set()
        self._unlisten: IDelayedCall | None = None
        self._heartbeat = LoopingCall(self.beat)
        self._heartbeat.clock = clock
        link.on_event = self._received
        link.on_state = self._changed

    @property
    def up(self) -> bool:
        """Whether this node is in touch with the others."""
        return bool(self.link.up)

    def _hub(self) -> tuple[IHubInbox, Directory]:
        assert self._inbox is not None and self._directory is not None
        return self._inbox, self._directory

    def attach(self, inbox: IHubInbox, directory: Directory) -> None:
        self._inbox, self._directory = inbox, directory
        # Redis keeps every room: this node keeps those its users are in.
        directory.remembers = False
        directory.emptied = self._emptied
        self.roster.room_ttl = lambda: directory.settings.history.room_ttl
        self.roster.missing = self._missing
        self._alone.attach(inbox, directory)
        self.ledger.attach(inbox, directory)
        self._store.names = lambda key: (
            room.name if (room := directory.rooms.get(key)) is not None else key
        )

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> Deferred[None]:
        async def starting() -> None:
            self.link.start()
            if not await self._when_up(10.0):
                _log.warn(
                    "cluster: Redis did not answer within 10 s: starting alone, "
                    "joining the cluster when it does"
                )
                self._started = True
                self._hub()[0].reachable(False)
                return
            self._started = True
            await self.resync()

        return Deferred.fromCoroutine(starting())

    def _when_up(self, timeout: float) -> Deferred[bool]:
        """
        Fires with C{True} once Redis answers, or C{False} after C{timeout}
        seconds without it.
        """
        if self.up:
            return succeed(True)
        d: Deferred[bool] = Deferred()
        deadline = self._clock.seconds() + timeout

        def check() -> None:
            if d.called:
                return
            if self.up or self._clock.seconds() >= deadline:
                d.callback(self.up)
            else:
                self._clock.callLater(0.05, check)

        check()
        return d

    def stop(self) -> Deferred[None]:
        """
        Leave the cluster cleanly: this node's users are gone already (the
        hub told the others), so drop the node's heartbeat, then close.
        """
        self._stopping = True
        if self._heartbeat.running:
            self._heartbeat.stop()
        if self._unlisten is not None and self._unlisten.active():
            self._unlisten.cancel()
        self.outbox.stop()

        async def stopping() -> None:
            if self.up:
                try:
                    await self.link.command("ZREM", self.link.key("nodes"), self.node)
                    await self.link.command("DEL", self.link.key("users", self.node))
                except Exception as e:
                    _log.warn("cluster: leaving: {error}", error=e)
            await self.link.stop()

        return Deferred.fromCoroutine(stopping())

    def _changed(self, up: bool) -> None:
        """The bus subscription came up or went down."""
        if up:
            _log.info("cluster: connected to Redis as node {node}", node=self.node)
            if not self._heartbeat.running:
                self._heartbeat.start(max(self.node_timeout / 4, 0.5), now=False)
            if self._started:
                self.resync()
            return
        if self._heartbeat.running:
            self._heartbeat.stop()
        if self._stopping:
            return
        self.outages += 1
        _log.warn(
            "cluster: lost Redis; serving this node's users alone until it is "
            "back (reconnecting with backoff)"
        )
        if self._started:
            self._hub()[0].reachable(False)

    # -- room messages -------------------------------------------------------

    def say(self, sender: User, room: Room, draft: Draft) -> None:
        if not self.up:
            self._say_alone(sender, room, draft)
            return
        self.outbox.say(sender, room, draft)

    def _say_alone(self, sender: User, room: Room, draft: Draft) -> None:
        """Say it to this node's users only: Redis cannot be reached."""
        _, directory = self._hub()
        if room.epoch == self.ledger.position(room)[0]:
            # Said while cut off from the cluster: these ids are this
            # node's own, so they get an epoch of their own.
            room.split(directory.new_epoch())
        self._alone.say(sender, room, draft)

    def _missing(self, keys: list[str]) -> None:
        """
        Redis lacks rooms this node's users are in (they emptied, or Redis
        restarted, as a user joined): record them again.
        """
        _, directory = self._hub()
        rooms = [room for key in keys if (room := directory.rooms.get(key))]
        for room in rooms:
            self.ledger.forget(room.key)
        self.ensure(rooms)

    def ensure(self, rooms: Sequence[Room]) -> Deferred[None]:
        if not self.up:
            return succeed(None)
        return self.ledger.ensure(list(rooms))

    def _emptied(self, room: Room) -> None:
        """
        The last member here left C{room}: stop listening to its channel
        in a while, unless someone here is in it again by then.
        """
        self._quiet.add(room.key)
        if self._unlisten is None or not self._unlisten.active():
            self._unlisten = self._clock.callLater(QUIET_AFTER, self._stop_listening)

    def _stop_listening(self) -> None:
        _, directory = self._hub()
        if self.ledger.ensuring:
            # A room being joined may be among them: look again later.
            self._unlisten = self._clock.callLater(QUIET_AFTER, self._stop_listening)
            return
        self._unlisten = None
        quiet, self._quiet = self._quiet, set()
        for key in quiet:
            room = directory.rooms.get(key)
            if room is None or not room.members:
                self.link.ignore(key)
                # Joined again, it is recorded and caught up again.
                self.ledger.forget(key)

    # -- events and requests -------------------------------------------------

    def share(self, event: events.Event, audience: Audience) -> None:
        if not self.up:
            return
        # What only one room's members are told goes on that room's
        # channel: a node none of them is on never hears of it.
        rooms = audience.rooms
        only = len(rooms) == 1 and not (
            audience.nicks or audience.operators or audience.everyone
        )
        shared = encode(Shared(event, audience))
        self.link.publish(shared, rooms[0] if only else None).addErrback(
            logged("sharing an event")
        )

    def ask(self, request: Request) -> Deferred[None]:
        return self.link.publish(encode(request)).addCallback(lambda _: None)

    def _received(self, data: dict[str, Any]) -> None:
        """One message from the bus."""
        try:
            sender, value = decode(data)
        except (ValueError, KeyError, TypeError) as e:
            _log.warn("cluster: ignored a bus message: {error}", error=e)
            return
        inbox, _ = self._hub()
        self._dispatch(inbox, sender, value)

    def _dispatch(self, inbox: IHubInbox, sender: str | None, value: BusValue) -> None:
        match value:
            case SaidBatch(said):
                for one in said:
                    self.outbox.arrived(one)
                    self.ledger.arrived(one)
            case Lost(users):
                # Every node shows them lost, the one that buried them too.
                now = self._clock.seconds()
                for user in users:
                    lost = events.Presence(now, "lost", user.nick, user.door)
                    inbox.event(lost, Audience(rooms=user.rooms))
            case _ if sender == self.node:
                return  # this node did it already
            case Shared(event, audience):
                inbox.event(event, audience)
            case TakeOver(node, code, login):
                if node == self.node:
                    inbox.request(TakenOver(code, login))
            case _:
                inbox.request(value)

    # -- presence ------------------------------------------------------------

    def joined(self, user: User, room: Room) -> None:
        self.roster.register(user)

    def parted(self, user: User, room: Room) -> None:
        self.roster.unregister(user.key, (room.key,), user)

    def renamed(self, user: User, old: str) -> None:
        key = nick_key(old)
        self.roster.unregister(key, [r.key for r in user.rooms], user)
        if key != user.key:
            self.roster.release(key)

    def left(self, user: User) -> None:
        self.roster.unregister(user.key, [r.key for r in user.rooms], None)
        if not user.moved:
            self.roster.release(user.key)

    def claim(
        self, user: User, nick: str, takeover: bool = False, force: bool = False
    ) -> Deferred[bool]:
        return self.roster.claim(user, nick, takeover, force)

    def updated(self, user: User) -> None:
        self.roster.register(user)

    def release(self, user: User, nick: str) -> None:
        self.roster.release(nick_key(nick))

    def locate(self, nick: str) -> Deferred[str | None]:
        return self.roster.locate(nick)

    def beat(self) -> Deferred[None]:
        """
        Say this node is alive, renew its users' nicks, and bury the nodes
        that are not.
        """
        _, directory = self._hub()
        timeout = self.roster.timeout_ms
        ttl = directory.settings.history.room_ttl
        args: list[Any] = [self.link.prefix, self.node, timeout, timeout, ttl]
        args += self.roster.heartbeat(directory.users.values())
        d = self.link.eval(scripts.HEARTBEAT, [], args)
        return d.addCallback(self._beaten).addErrback(logged("heartbeat"))

    def _beaten(self, result: list[Any]) -> None:
        lost, was_buried, buried = result
        inbox, directory = self._hub()
        for key in lost:
            self.roster.lost(key)
            user = directory.users.get(key)
            if user is not None:
                inbox.nick_lost(user)
        if buried:
            self.buried += 1
            dead = []
            for raw in buried:
                nick, door, rooms, owner = json.loads(raw)
                dead.append(LostUser(nick, door, tuple(rooms), owner))
            self.link.publish(encode(Lost(tuple(dead)))).addErrback(
                logged("announcing a dead node's users")
            )
        if int(was_buried):
            # The others took this node for dead (it was cut off too long)
            # and showed its users as lost: they come back into their rooms.
            _log.warn("cluster: the other nodes had taken this node for dead")
            now = self._clock.seconds()
            for user in list(directory.users.values()):
                self.roster.register(user)
                for room in user.rooms:
                    self.share(arrival(user, room, now), Audience(rooms=(room.key,)))

    # -- listings ------------------------------------------------------------

    def rooms(self, offset: int, count: int) -> Deferred[Listing[events.RoomInfo]]:
        if not self.up:
            return self._alone.rooms(offset, count).addCallback(_partial)
        listed = self.roster.rooms(offset, count).addCallback(
            lambda found: Listing(tuple(found[1]), total=found[0])
        )
        return listed.addErrback(
            lambda f: self._alone.rooms(offset, count).addCallback(_partial)
        )

    def members(self, room: Room) -> Deferred[Listing[events.Member]]:
        if not self.up:
            return self._alone.members(room).addCallback(_partial)
        listed = self.roster.who(room.key).addCallback(lambda m: Listing(tuple(m)))
        return listed.addErrback(lambda f: self._alone.members(room))

    def ban_ids(self, count: int, above: int) -> Deferred[list[int]]:
        if not self.up:
            return self._alone.ban_ids(count, above)
        d = self.link.command("INCRBY", self.link.key("ban_id"), count)
        return d.addCallback(
            lambda last: list(range(int(last) - count + 1, int(last) + 1))
        )

    # -- coming back ---------------------------------------------------------

    def _retry_resync(self) -> None:
        if self.link.up:
            self.resync()

    def resync(self) -> Deferred[None]:
        """
        Redis is back (or this node just started): register this node's
        rooms and users again, take the cluster's view of every room, and
        send local members what was said while this node was cut off.
        """
        inbox, directory = self._hub()
        rooms = list(directory.rooms.values())
        ledger = self.ledger
        ledger.hold(rooms)

        async def resyncing() -> None:
            try:
                # Listening before recording: nothing said after a room's
                # record can miss this node.
                await gatherResults([self.link.listen(room.key) for room in rooms])
                await self.beat()
                bans = await ledger.learn()
                if bans:
                    inbox.request(BansKnown(tuple(bans)))
                for room in rooms:
                    before = ledger.position(room)
                    await ledger.record(room)
                    await ledger.catch_up(room, before)
                    ledger.caught_up(room)
                await self.outbox.settle()
                for user in list(directory.users.values()):
                    if not await self.roster.claim(user, user.nick):
                        inbox.nick_lost(user)
                    self.roster.register(user)
            except Exception as e:
                _log.warn("cluster: resynchronising after reconnecting: {e}", e=e)
                if self.link.up:
                    # Redis answers but failed midway (still loading after a
                    # restart, say): try again, so that no message in doubt
                    # waits for an outcome until the next outage.
                    self._clock.callLater(RESYNC_RETRY, self._retry_resync)
            finally:
                ledger.release()
            inbox.reachable(True)

        return Deferred.fromCoroutine(resyncing())

    # -- health ----------------------------------------------------------------

    def health(self) -> Health:
        state = "ok" if self.up else "unreachable"
        stalls = self.link.stalls
        return Health(
            checks={"cluster": state},
            degraded=not self.up,
            stats={
                "cluster": {
                    "node": self.node,
                    "state": state,
                    "outages": self.outages,
                    "stalls": stalls,
                    "unconfirmed": len(self.outbox.unsure),
                }
            },
            lines=(
                f"cluster: node {self.node}, {state}; Redis lost {self.outages} "
                f"times, stuck {stalls} times",
            ),
        )

    def metrics(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "tchat_cluster_up",
            "1 while this node is in touch with the cluster's Redis; 0 while it "
            "serves its own users alone.",
            int(self.up),
        )
        yield CounterMetricFamily(
            "tchat_cluster_outages",
            "Times this node lost the cluster's Redis.",
            self.outages,
        )
        yield CounterMetricFamily(
            "tchat_cluster_stalls",
            "Times Redis stopped answering and this node took it as unreachable.",
            self.link.stalls,
        )
        yield GaugeMetricFamily(
            "tchat_cluster_unconfirmed_messages",
            "Messages this node sent whose answer never came, waiting to be "
            "checked once Redis answers.",
            len(self.outbox.unsure),
        )
        yield CounterMetricFamily(
            "tchat_cluster_nodes_buried",
            "Times this node found other nodes dead and showed their users as lost.",
            self.buried,
        )


def _partial(listing: Listing[Any]) -> Listing[Any]:
    return Listing(listing.items, partial=True, total=listing.total)
