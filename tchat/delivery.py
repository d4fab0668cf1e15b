# -*- test-case-name: tests.test_delivery -*-
"""
Delivery: who is told what, on this node and on the others.

Every event the hub tells goes through L{Delivery}: to one user
(L{Delivery.tell}), to many rendered once per wire format
(L{Delivery.fan_out}), or to an L{Audience} here and on every other node
(L{Delivery.deliver}), which each node resolves against its own directory.
"""

from collections.abc import Iterable
from dataclasses import replace

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tchat import events
from tchat.crowds import Crowds
from tchat.metrics import Metrics
from tchat.model import Directory, User
from tchat.seam import Audience, IBackplane
from tchat.text import nick_key, room_key


class Delivery:
    """
    Tells users events, isolating each recipient's failure from the others.
    """

    _log = Logger()

    def __init__(
        self,
        directory: Directory,
        backplane: IBackplane,
        metrics: Metrics,
        clock: IReactorTime,
    ) -> None:
        self._directory = directory
        self._backplane = backplane
        self._metrics = metrics
        # The presence of big rooms, told once a period (see tchat.crowds).
        self.crowds = Crowds(directory, clock, self.fan_out)

    def tell(self, user: User, event: events.Event) -> None:
        """Tell C{event} to C{user} alone (of history, without the lines of
        those they ignore)."""
        if user.ignoring is not None and isinstance(event, events.History):
            ignoring = user.ignoring
            shown = tuple(m for m in event.messages if nick_key(m.nick) not in ignoring)
            if len(shown) != len(event.messages):
                event = replace(event, messages=shown)
        self.fan_out((user,), event)

    def error(
        self,
        user: User,
        code: events.ErrorCode,
        text: str,
        client_id: str | None = None,
    ) -> None:
        """
        Tell C{user} that what they asked could not be done.

        @param client_id: The tag of the request it answers; by default the
            one the hub is carrying out for C{user} now, if any.
        """
        tag = client_id if client_id is not None else user.tag
        self.fan_out((user,), events.Error(code, text, tag))

    def refuse(self, user: User, notice: events.Error | None) -> None:
        """
        Tell C{user} why what they sent was refused, if there is a reason
        to tell (a pacing verdict's notice).
        """
        if notice is not None:
            self.error(user, notice.code, notice.text)

    def deliver(self, event: events.Event, audience: Audience) -> None:
        """
        Tell C{event} to C{audience} on this node, then on the others.
        """
        self.here(event, audience)
        self._backplane.share(event, audience)

    def here(self, event: events.Event, audience: Audience) -> None:
        """
        Tell C{event} to C{audience} on this node only (the big rooms'
        share of a join, part or quit in their next summary).
        """
        if event.__class__ is events.Presence:
            audience = self.crowds.divert(event, audience)
        told = audience.resolve(self._directory)
        if told:
            self.fan_out(told, event)

    def fan_out(
        self,
        recipients: Iterable[User],
        event: events.Event,
        doors: dict[str, int] | None = None,
    ) -> None:
        """
        Deliver one event to many users, rendered once per wire format.

        A door that fails on one recipient must not cost the others the
        message, so failures are logged and delivery goes on.  A room
        message for a user whose history read of that room is still in
        flight waits for it (see L{User.holding}).

        @param doors: For a room message to every member, the room's
            members by door: the delivery counts, added up front instead
            of one recipient at a time.
        """
        renderings = events.Renderings()
        kind = event.__class__
        message = kind is events.RoomMessage
        delivered = self._metrics.delivered
        count = kind is events.PrivateMessage or (message and doors is None)
        if message and doors is not None:
            for door, members in doors.items():
                delivered[door] = delivered.get(door, 0) + members
        ignored: str | None = None
        # Only while someone ignores anyone does a room message look at
        # each recipient's ignores.
        filtering = message and bool(self._directory.ignorers)
        for recipient in list(recipients):
            if filtering and recipient.ignoring is not None:
                if ignored is None:
                    ignored = nick_key(event.nick)  # type: ignore[union-attr]
                if ignored in recipient.ignoring:
                    if not count:
                        delivered[recipient.door] -= 1
                    continue
            if message and recipient.holding:
                key = room_key(event.room)  # type: ignore[union-attr, arg-type]
                room = self._directory.rooms.get(key)
                held = recipient.holding.get(room) if room is not None else None
                if held is not None:
                    held[1].append(event)
                    if not count:
                        delivered[recipient.door] -= 1
                    continue
            if count:
                delivered[recipient.door] = delivered.get(recipient.door, 0) + 1
            try:
                recipient.deliver(event, renderings)
            except Exception:
                self._log.failure(
                    "delivering a {kind} to {nick}",
                    kind=kind.__name__,
                    nick=recipient.nick,
                )
