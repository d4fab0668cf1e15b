# -*- test-case-name: tests.test_talk -*-
"""
Talk: room messages and private messages.

A room message takes one path for one node and for many: L{Talk.say}
checks it and hands it to the backplane, which numbers and keeps it; the
backplane hands it back, numbered, to L{Talk.arrived} on every node, the
sender's included, and each shows it to its members there.
"""

import time
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from tchat import events
from tchat.bans import Mutes
from tchat.delivery import Delivery
from tchat.keeping import Keeping
from tchat.metrics import Metrics
from tchat.model import Directory, Room, User
from tchat.pacing import Pacing
from tchat.presence import Presence
from tchat.rooms import Rooms
from tchat.seam import Audience, Draft, IBackplane, NotKeptError, UnconfirmedError
from tchat.text import (
    clean_text,
    describe_duration,
    nick_key,
    normalize_nick,
    shortened,
)


class Talk:
    """
    What users say, to a room or to one another.
    """

    def __init__(
        self,
        directory: Directory,
        delivery: Delivery,
        backplane: IBackplane,
        pacing: Pacing,
        rooms: Rooms,
        presence: Presence,
        keeping: Keeping,
        metrics: Metrics,
        clock: IReactorTime,
    ) -> None:
        self._directory = directory
        self._keeping = keeping
        self._delivery = delivery
        self._backplane = backplane
        self._pacing = pacing
        self._rooms = rooms
        self._presence = presence
        self._metrics = metrics
        self._clock = clock

    def muted(self, user: User, tag: str | None = None) -> bool:
        """
        Whether C{user} may not talk now; tells them so.
        """
        if user.muted_until is None:
            return False
        left = Mutes.left(user, self._clock.seconds())
        if left is None:
            return False
        self._metrics.drop("muted")
        until = "" if left == float("inf") else " " + describe_duration(left)
        self._delivery.error(
            user, "muted", f"an operator muted you{until}; you can still read", tag
        )
        return True

    # -- room messages -------------------------------------------------------

    def say(
        self,
        user: User,
        text: str,
        action: bool,
        room_name: str | None,
        client_id: str | None,
        notice: bool = False,
    ) -> None:
        """
        A line for a room (C{room_name}, or the user's current one); an
        action with C{/me}; a C{notice} from an IRC C{NOTICE}.

        @param client_id: The client's tag, returned in the sender's copy
            (its acknowledgement) and recognised in a retry.
        """
        text = clean_text(text).strip()
        if not text or self.muted(user):
            return
        if self._presence.closing:
            # The store is being closed: a message now could not be kept.
            self._delivery.error(
                user,
                "not-stored",
                "the server is shutting down; your message was not sent",
            )
            return
        if room_name is None:
            room = user.current
            if room is None:
                self._delivery.error(
                    user, "no-room", "you are in no room; /join #room first"
                )
                return
        else:
            found = self._rooms.joined(user, room_name)
            if found is None:
                return
            room = found
        busy = self._pacing.room_busy(room)
        if busy is not None:
            self._delivery.refuse(user, busy.notice)
            return
        if client_id is not None:
            prior = room.tagged.get(client_id)
            if (
                prior is not None
                and prior.text == text
                and prior.action == action
                and nick_key(prior.nick) == user.key
            ):
                # A retry of a message already taken: acknowledge it again
                # (the sender's copy), but create nothing.
                if prior.id <= room.delivered_id:
                    self._delivery.tell(user, prior)
                return
        now = self._clock.seconds()
        self._metrics.received_from(user.door)
        self._metrics.messages.record(now)
        self._backplane.say(user, room, Draft(text, action, client_id, now, notice))

    def arrived(self, room: Room, message: events.RoomMessage, received: float) -> None:
        """
        A room message, numbered and kept: show it to the room's members
        on this node.

        @param received: When this node took it in (C{time.perf_counter}).
        """
        room.take(message, self._directory.settings.history.keep)
        self._delivery.fan_out(room.members, message, room.doors)
        self._metrics.fanout.observe(time.perf_counter() - received)

    def repeated(self, sender: User, room: Room, client_id: str, id: int) -> None:
        """
        C{sender}'s retry of message C{id}: acknowledge it again once it is
        shown, create nothing.
        """
        prior = room.tagged.get(client_id)
        if (
            sender.connected
            and prior is not None
            and prior.id == id
            and prior.id <= room.delivered_id
        ):
            self._delivery.tell(sender, prior)

    def unsaid(self, sender: User, draft: Draft, why: Failure) -> None:
        """C{sender}'s message could not be kept or sent: nobody saw it."""
        if not sender.connected:
            return
        if why.check(NotKeptError):
            self._delivery.error(
                sender,
                "not-stored",
                "your message could not be saved, so nobody was shown it; try again",
                draft.client_id,
            )
        elif why.check(UnconfirmedError):
            self._delivery.error(
                sender,
                "unconfirmed",
                "the cluster never confirmed your message and can no longer tell "
                "whether it was shown; look at the room before sending it again",
                draft.client_id,
            )
        else:
            self._delivery.error(
                sender,
                "not-stored",
                "your message could not be sent to the cluster, so nobody was "
                "shown it; try again",
                draft.client_id,
            )

    # -- private messages ----------------------------------------------------

    def private(self, user: User, nick: str, text: str) -> Deferred[Any] | None:
        """
        C{/msg NICK TEXT}, to a user of this node or of another, or kept
        for the owner of a registered nick who is offline.
        """
        text = clean_text(text).strip()
        target = self._directory.user(normalize_nick(nick))
        if target is not None:
            if text and not self.muted(user):
                self._metrics.received_from(user.door)
                now = self._clock.seconds()
                ignored = target.ignoring is not None and user.key in target.ignoring
                for recipient, outgoing in ((target, False), (user, True)):
                    if ignored and not outgoing:
                        # The sender is not told: an ignore is not a block
                        # that invites a way around it.
                        continue
                    message = events.PrivateMessage(
                        now,
                        user.nick,
                        user.door,
                        user.colour,
                        target.nick,
                        text,
                        outgoing,
                    )
                    self._delivery.tell(recipient, message)
                if target.away is not None:
                    self._delivery.tell(
                        user,
                        events.Status(
                            f"{target.nick} is away: {target.away}",
                            {"name": target.nick, "away": target.away},
                        ),
                    )
            return None
        tag = user.tag

        def found(spelt: str | None) -> Deferred[Any] | None:
            if not user.connected:
                return None
            if spelt is None:
                return self._keeping.holder(nick).addCallbacks(offline, failed)
            if text and not self.muted(user, tag):
                self._send_away(user, spelt, text)
            return None

        def offline(registered: str | None) -> Deferred[Any] | None:
            if not user.connected:
                return None
            if registered is None:
                self._delivery.error(
                    user,
                    "no-such-nick",
                    f"nobody here is called {shortened(nick)}",
                    tag,
                )
                return None
            if not text or self.muted(user, tag):
                return None
            user.tag = tag
            try:
                return self._keeping.leave_message(user, registered, text)
            finally:
                user.tag = None

        def failed(why: Failure) -> None:
            if user.connected:
                self._delivery.error(
                    user,
                    "no-such-nick",
                    f"{shortened(nick)} cannot be looked up now",
                    tag,
                )

        return self._backplane.locate(nick).addCallbacks(found, failed)

    def _send_away(self, user: User, nick: str, text: str) -> None:
        """Send a private message to C{nick}, on another node."""
        self._metrics.received_from(user.door)
        message = events.PrivateMessage(
            self._clock.seconds(),
            user.nick,
            user.door,
            user.colour,
            normalize_nick(nick),
            text,
            True,
        )
        self._backplane.share(
            replace(message, outgoing=False),
            Audience(nicks=(nick_key(normalize_nick(nick)),)),
        )
        self._delivery.tell(user, message)

    def private_arrived(
        self, message: events.PrivateMessage, audience: Audience
    ) -> None:
        """
        A private message from another node, for C{audience}: each
        recipient sees their nick as they spell it.
        """
        sender = nick_key(message.sender)
        for user in audience.resolve(self._directory):
            if user.ignoring is not None and sender in user.ignoring:
                continue
            self._delivery.tell(user, replace(message, recipient=user.nick))
