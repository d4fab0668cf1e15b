# -*- test-case-name: tests.test_cluster -*-
"""
L{Outbox}: this node's room messages on their way through Redis, until
each is known to be said or not.

A message is said by the C{SAY} script, which numbers, keeps and
publishes it at once, with the others this node took in during the same
turn of its reactor: one script and one round trip for all of them, and
one bus message per room.  Whatever else the node sends in that turn (a
part, a topic) goes after them, never before.

A message's answer may never come back (Redis stalled, or the connection
broke with the script sent): then the message may or may not
have been said, and the node must neither call it failed (its sender would
say it twice) nor drop it.  Every message carries a stamp of this node's
(see L{tchat.cluster.wire.draft_fields}); one in doubt is settled when its
stamp comes back on the bus, or else once Redis answers again, by looking
for the stamp in the room's stream: found, it was said (and the node's
catch-up shows it); not found, it is sent again.  A message that falls in
doubt while Redis answers (its connection broke and came back between two
heartbeats, or it was in flight while the node resynchronised) is checked
a moment later by the outbox itself: no message waits for an outcome until
the next outage.

When Redis does not have the room as this node knew it (Redis restarted),
the script says so instead of numbering the message in a room it would
have to make up; the node records the room again and sends the message
once more (L{tchat.cluster.ledger.Ledger.record}).
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from txredisapi import ResponseError  # type: ignore[import-untyped]

from tchat import events
from tchat.cluster import scripts
from tchat.cluster.ledger import Ledger, Position
from tchat.cluster.redis import ClusterDownError, RedisLink, dumps
from tchat.cluster.wire import Said, draft_fields, message_from
from tchat.model import Directory, Room, User
from tchat.seam import Audience, Draft, IHubInbox, NotKeptError, UnconfirmedError

_log = Logger()

TRIES = 3
"""How often a message is sent for a room Redis does not have, at most."""

TOLD = 1024
"""How many of the stamps of messages whose senders were given their copy
apart from the room's are remembered, so that none is given it twice."""

CHECK_AFTER = 1.0
"""
Seconds after a message falls in doubt while Redis answers before the
outbox looks for it in its room's stream (and again while that fails).
"""


@dataclass
class Sending:
    """
    One message on its way: who said what where, the fields it is sent
    with (its stamp among them), and where the room stood when it was sent.
    """

    sender: User
    room: Room
    draft: Draft
    fields: dict[str, Any]
    after: Position
    tries: int = field(default=0)

    @property
    def stamp(self) -> str:
        stamp: str = self.fields["s"]
        return stamp


class Outbox:
    """
    This node's room messages whose fate is not known yet.

    @ivar sending: The messages sent and not yet answered (by Redis, or by
        their coming back on the bus), by stamp.
    @ivar unsure: Those of them whose answer is known never to come.
    @ivar alone: Says a message to this node's users only, as while Redis
        cannot be reached: for those gathered in a turn that ended after
        Redis was lost, so never sent.
    """

    def __init__(
        self,
        link: RedisLink,
        ledger: Ledger,
        hub: Callable[[], tuple[IHubInbox, Directory]],
        clock: IReactorTime,
    ) -> None:
        self._link = link
        self._ledger = ledger
        self._hub = hub
        self._clock = clock
        self._sent = 0
        self._check: IDelayedCall | None = None
        self._flush: IDelayedCall | None = None
        self._batch: list[Sending] = []
        self._told: dict[str, None] = {}
        self._mine = f"{link.node}/"
        self.alone: Callable[[User, Room, Draft], None] = lambda *said: None
        link.before = self.send_now
        self.sending: dict[str, Sending] = {}
        self.unsure: dict[str, Sending] = {}

    def say(self, sender: User, room: Room, draft: Draft) -> None:
        """Send C{sender}'s C{draft} to C{room}, through Redis."""
        self._sent += 1
        stamp = f"{self._link.node}/{self._sent}"
        sending = Sending(
            sender,
            room,
            draft,
            draft_fields(sender, draft, stamp),
            self._ledger.position(room),
        )
        self.sending[stamp] = sending
        self._send(sending)

    def _send(self, sending: Sending) -> None:
        """
        Send C{sending} with the others of this reactor turn: one script,
        one round trip and one bus message per room for all of them.
        """
        sending.tries += 1
        self._batch.append(sending)
        if self._flush is None:
            self._flush = self._clock.callLater(0, self._send_batch)

    def send_now(self) -> None:
        """
        Send what this turn gathered now: another command is about to go
        (a part, a topic), and must not overtake it.
        """
        if self._batch:
            assert self._flush is not None
            self._flush.cancel()
            self._send_batch()

    def _send_batch(self) -> None:
        self._flush = None
        batch, self._batch = self._batch, []
        link, (_, directory) = self._link, self._hub()
        if not link.up:
            # Redis was lost before the turn ended: what was never sent is
            # said as anything said while cut off is; the rest is not sent.
            fresh = [s for s in batch if s.tries == 1]
            batch = [s for s in batch if s.tries > 1]
            for sending in fresh:
                self.sending.pop(sending.stamp, None)
                self.alone(sending.sender, sending.room, sending.draft)
            if not batch:
                return
        keys: list[str] = []
        args: list[Any] = [directory.settings.history.keep, link.run]
        for sending in batch:
            room, tag = sending.room, sending.draft.client_id
            base = link.key("room", room.key)
            keys += (base, f"{base}:log", f"{base}:tags", f"{base}:tagq")
            args += (
                link.room_channel(room.key),
                tag or "",
                room.name,
                dumps(sending.fields),
            )
        d = link.eval(scripts.SAY, keys, args)
        d.addCallbacks(
            self._answered,
            self._batch_failed,
            callbackArgs=(batch,),
            errbackArgs=(batch,),
        )

    def _answered(self, result: list[Any], batch: list[Sending]) -> None:
        inbox, _ = self._hub()
        for i, sending in enumerate(batch):
            outcome, id = int(result[3 * i]), int(result[3 * i + 1])
            if outcome == 2:
                self._room_unknown(sending)
                continue
            self.sending.pop(sending.stamp, None)
            tag = sending.draft.client_id
            if not outcome and tag is not None:
                inbox.repeated(sending.sender, sending.room, tag, id)

    def _batch_failed(self, why: Failure, batch: list[Sending]) -> None:
        for sending in batch:
            self._failed(sending, why)

    def _room_unknown(self, sending: Sending) -> None:
        """
        Redis does not have the room as this node knew it: record it again,
        then send once more.
        """
        room = sending.room
        if sending.tries >= TRIES:
            self._unsaid(sending, NotKeptError(f"Redis keeps losing {room.name}"))
            return
        self._ledger.forget(room.key)

        def again(_: object) -> None:
            sending.after = self._ledger.position(room)
            self._send(sending)

        recorded = self._ledger.record(room)
        recorded.addCallbacks(again, lambda why: self._failed(sending, why))

    def _failed(self, sending: Sending, why: Failure) -> None:
        if sending.stamp not in self.sending:
            return  # it came back on the bus meanwhile: said
        if why.check(ClusterDownError, ResponseError):
            # Never sent, or refused by Redis: nobody was shown it.
            self._unsaid(sending, why)
            return
        # Sent, but no answer came: it may have been said.  Settled when
        # its stamp comes back, or once Redis answers again (settle).
        _log.warn(
            "cluster: no answer for a message of {nick} in {room} ({why}): "
            "it is checked once Redis answers",
            nick=sending.sender.nick,
            room=sending.room.name,
            why=why.value,
        )
        self.unsure[sending.stamp] = sending
        self._check_soon()

    def _check_soon(self) -> None:
        """
        Settle the messages in doubt in a moment, if Redis answers by then;
        if it does not, the node's resynchronisation settles them once it
        does.
        """
        if self._check is None or not self._check.active():
            self._check = self._clock.callLater(CHECK_AFTER, self._check_now)

    def _check_now(self) -> None:
        self._check = None
        if not self.unsure or not self._link.up:
            return

        def failed(why: Failure) -> None:
            _log.warn(
                "cluster: checking messages in doubt: {why}; trying again",
                why=why.value,
            )
            self._check_soon()

        Deferred.fromCoroutine(self.settle()).addErrback(failed)

    def stop(self) -> None:
        """Stop checking on messages in doubt (the node is stopping)."""
        if self._check is not None and self._check.active():
            self._check.cancel()
        self._check = None

    def _unsaid(self, sending: Sending, why: Failure | Exception) -> None:
        self.sending.pop(sending.stamp, None)
        _log.warn(
            "cluster: a message of {nick} in {room} was not sent: {why}",
            nick=sending.sender.nick,
            room=sending.room.name,
            why=why.value if isinstance(why, Failure) else why,
        )
        inbox, _ = self._hub()
        failure = why if isinstance(why, Failure) else Failure(why)
        inbox.unsaid(sending.sender, sending.draft, failure)

    def arrived(self, said: Said) -> None:
        """A message came back on the bus: it was said."""
        stamp = said.stamp
        if stamp is not None and self.sending:
            self.sending.pop(stamp, None)
            self.unsure.pop(stamp, None)

    async def settle(self) -> None:
        """
        Redis answers again: find out which messages in doubt were said
        (their stamp is in their room's stream), and send the others again.
        A message whose room moved on past what Redis keeps cannot be told:
        its sender is told so rather than shown it twice.
        """
        unsure, self.unsure = self.unsure, {}
        by_room: dict[str, list[Sending]] = {}
        for sending in unsure.values():
            by_room.setdefault(sending.room.key, []).append(sending)
        link, (_, directory) = self._link, self._hub()
        keep = directory.settings.history.keep
        for key, sendings in list(by_room.items()):
            low = min(s.after[1] for s in sendings) + 1
            stream = link.key("room", key, "log")
            try:
                entries = await link.command(
                    "XRANGE", stream, f"{low}-0", "+", "COUNT", keep
                )
            except BaseException:
                # Still in doubt: settled on the next try, never dropped.
                for left in by_room.values():
                    for sending in left:
                        self.unsure.setdefault(sending.stamp, sending)
                raise
            del by_room[key]
            said: dict[str, Any] = {}
            first = None
            for entry_id, flat in entries:
                id = int(entry_id.partition("-")[0])
                if first is None:
                    first = id
                entry = dict(zip(flat[::2], flat[1::2], strict=False))
                fields = json.loads(entry["m"])
                if fields.get("s") in unsure:
                    said[fields["s"]] = (id, int(entry["e"]), fields)
            for sending in sendings:
                found = said.get(sending.stamp)
                if found is not None:
                    # Said: the catch-up showed it to the room; the sender
                    # gets their own copy too, which acknowledges it.
                    self.sending.pop(sending.stamp, None)
                    self._confirm(sending, *found)
                    continue
                if first is not None and first > sending.after[1] + 1:
                    self._unsaid(sending, UnconfirmedError(sending.room.name))
                    continue
                sending.tries = 0
                self._send(sending)

    def _confirm(
        self, sending: Sending, id: int, epoch: int, fields: dict[str, Any]
    ) -> None:
        sender = sending.sender
        if sender.connected and sending.draft.client_id is not None:
            copy = message_from(sending.room.name, id, epoch, fields)
            self._tell(sender, copy, sending.stamp)

    def skipped(self, room: Room, said: Said) -> None:
        """
        The bus brought C{said} after its room was recorded past it (it
        was in flight while the node resynchronised): the room was shown
        it in the catch-up, which does not acknowledge it.  If it is this
        node's, its sender still gets their own copy.
        """
        stamp = said.stamp
        if (
            stamp is None
            or not stamp.startswith(self._mine)
            or stamp in self._told
            or not said.fields.get("client_id")
        ):
            return
        _, directory = self._hub()
        sender = directory.user(str(said.fields.get("nick")))
        if sender is not None and sender.connected:
            self._tell(sender, said.message(room.name), stamp)

    def _tell(self, sender: User, copy: events.RoomMessage, stamp: str) -> None:
        """
        Give C{sender} their own copy of a message shown without it, once.
        """
        told = self._told
        told[stamp] = None
        if len(told) > TOLD:
            del told[next(iter(told))]
        inbox, _ = self._hub()
        inbox.event(copy, Audience(users=(sender,)))
