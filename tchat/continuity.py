# -*- test-case-name: tests.test_continuity -*-
"""
Reconnects nobody notices.

A connection that ends without C{/quit} (a network that drops, a page
reloaded, a laptop lid closed) does not end its user's session at once:
for C{[server] reconnect_grace} seconds the user stays in their rooms,
their nick held, nobody told, and what they miss is kept by an L{Absent}
stand-in for the connection.  A new connection that shows it carries on
the session (its resume code, or a login to the session's account) within
that time takes the user over: same nick, colour, rooms and account, and
it is given what was missed, in order.  The new connection was never
announced (see L{Presence.settle<tchat.presence.Presence.settle>}), so
the others see nothing at all.  Only when the grace period ends do they
see the user go, once.

The same takeover serves a session whose old connection is still open (a
second tab, a dead peer not noticed yet): that connection is told why and
closed, and nobody else sees anything either.
"""

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from tchat import events
from tchat.delivery import Delivery
from tchat.interfaces import IParticipant
from tchat.limits import exempt
from tchat.model import Directory, User
from tchat.presence import Presence
from tchat.resume import Resume
from tchat.sessions import Sessions

MISSED_MOST = 1000
"""Events kept for an absent user.  Past it, what was said in their rooms
is read back from history instead, and other events past it are lost
(they are told how many)."""


@implementer(IParticipant)
class Absent:
    """
    Stands in for the connection of a user whose connection ended, while
    they may come back: keeps what they are told.

    @ivar points: For each of the user's rooms (by key), the id of the
        latest message when the connection ended: they have what came
        before it.
    @ivar missed: What they were told since, in order (without room
        messages once L{overflowed}).
    @ivar overflowed: More than L{MISSED_MOST} events came: room messages
        are no longer kept here.
    @ivar dropped: Events other than room messages that did not fit.
    @ivar clean: Whether the client closed the connection itself.
    @ivar timer: The end of the grace period.
    """

    address = None

    def __init__(self, door: str, points: dict[str, int], clean: bool) -> None:
        self.door = door
        self.points = points
        self.clean = clean
        self.missed: list[object] = []
        self.overflowed = False
        self.dropped = 0
        self.timer: IDelayedCall | None = None
        self.ended = lambda: None

    def attached(self, user: object) -> None:
        pass

    def deliver(self, event: object, renderings: object) -> None:
        missed = self.missed
        if self.overflowed and event.__class__ is events.RoomMessage:
            return
        if len(missed) < MISSED_MOST:
            missed.append(event)
            return
        if not self.overflowed:
            # From now on what is said in the rooms is read from history.
            self.overflowed = True
            missed[:] = [e for e in missed if e.__class__ is not events.RoomMessage]
            self.deliver(event, renderings)
            return
        self.dropped += 1

    def close(self, reason: str, why: str = "normal") -> None:
        # The server is stopping, or an operator sent the user off: there
        # is no connection to wait for.
        self.ended()

    def abort(self) -> None:
        self.ended()


class Continuity:
    """
    Keeps users whose connection ended for the grace period, and lets a
    new connection carry on their session.
    """

    _log = Logger()

    def __init__(
        self,
        directory: Directory,
        delivery: Delivery,
        presence: Presence,
        resume: Resume,
        sessions: Sessions,
        clock: IReactorTime,
    ) -> None:
        self._directory = directory
        self._delivery = delivery
        self._presence = presence
        self._resume = resume
        self._sessions = sessions
        self._clock = clock
        # Those lingering, by client address, oldest first (see linger).
        self._lingering: dict[str, dict[User, None]] = {}
        # Those lingering who came with an SSH key, by that key: the key is
        # who they are (see by_key).
        self._keys: dict[str, User] = {}

    def linger(self, user: User, clean: bool) -> bool:
        """
        C{user}'s connection ended without C{/quit}: keep them for the
        reconnect grace period, unless it is off or the server is stopping.

        @param clean: Whether the client closed the connection itself
            (when the grace period ends the others see "quit (connection
            closed)" rather than "lost connection").
        @return: Whether they are kept.
        """
        settings = self._directory.settings
        grace = settings.server.reconnect_grace
        if not grace or self._presence.closing:
            return False
        absent = Absent(
            user.door, {room.key: room.delivered_id for room in user.rooms}, clean
        )
        absent.timer = self._clock.callLater(grace, self._expire, user, absent)
        absent.ended = lambda: self._expire(user, absent)
        self._attach(user, absent)
        if user.ssh_key is not None:
            self._keys[user.ssh_key] = user
        # Connecting, talking and dropping again and again must not fill the
        # chat with people who are not there: per client address, as many
        # may linger as may be connected; past that the oldest goes.
        address, most = user.address, settings.limits.per_address
        if most and address is not None and not exempt(address, settings.limits.exempt):
            waiting = self._lingering.setdefault(address, {})
            waiting[user] = None
            if len(waiting) > most:
                self._expire(next(iter(waiting)))
        return True

    def lingering(self, user: User) -> bool:
        """Whether C{user}'s connection ended and they may come back."""
        return isinstance(user.participant, Absent)

    def by_key(self, key: str) -> User | None:
        """
        The user lingering after a connection made with the SSH key
        C{key} (an OpenSSH public key line), if any: a new connection that
        proved it holds the key carries their session on.
        """
        return self._keys.get(key)

    def _forget(self, user: User, absent: Absent) -> None:
        """C{user} is no longer waited for (back, or gone)."""
        if absent.timer is not None and absent.timer.active():
            absent.timer.cancel()
        if user.ssh_key is not None and self._keys.get(user.ssh_key) is user:
            del self._keys[user.ssh_key]
        waiting = self._lingering.get(user.address or "")
        if waiting is not None:
            waiting.pop(user, None)
            if not waiting:
                del self._lingering[user.address or ""]

    def _expire(self, user: User, absent: Absent | None = None) -> None:
        """Nobody came back for C{user}: the others see them go, once."""
        if absent is None:
            assert isinstance(user.participant, Absent)
            absent = user.participant
        self._forget(user, absent)
        if user.participant is not absent or not user.connected:
            return
        self._log.info("{nick} did not come back", nick=user.nick)
        if absent.clean:
            self._presence.leave(user, "quit", "connection closed")
        else:
            self._presence.leave(user, "lost", None)

    def _attach(self, user: User, participant: IParticipant) -> None:
        """Make C{participant} the connection C{user} is told things through."""
        door = participant.door
        if door != user.door:
            for room in user.rooms:
                room.doors[user.door] -= 1
                room.doors[door] = room.doors.get(door, 0) + 1
            user.door = door
        user.participant = participant
        user.deliver = participant.deliver

    def take(self, fresh: User, held: User, why: str) -> None:
        """
        C{fresh}'s connection carries on C{held}'s session: C{fresh} goes
        without a word (nobody was told it came, unless it talked), and
        C{held} is told through it who they are and what they missed.

        @param why: What C{held}'s old connection is told, if still open.
        """
        participant = fresh.participant
        old = held.participant
        self._presence.discard(fresh, f"came back as {held.nick}")
        if isinstance(old, Absent):
            self._forget(held, old)
            absent: Absent | None = old
        else:
            absent = None
            old.deliver(events.Goodbye(why, elsewhere=True), events.Renderings())
            old.close(why)
            # From now on that connection speaks for nobody.
            old.attached(None)
        self._attach(held, participant)
        held.address = getattr(participant, "address", None)
        # The key this connection authenticated with, if any (SSH).
        held.ssh_key = fresh.ssh_key
        held.pings = getattr(participant, "pings", False)
        held.heard_at = self._clock.seconds()
        held.idle_warned = False
        participant.attached(held)
        missed = absent.missed if absent is not None else []
        self._delivery.tell(
            held,
            events.Continued(
                held.nick,
                held.colour,
                tuple(room.name for room in held.rooms),
                held.current.name if held.current is not None else None,
                held.code,
                held.account.name if held.account is not None else None,
                held.away,
                len(missed),
            ),
        )
        for event in missed:
            held.deliver(event, events.Renderings())
        for room in held.rooms:
            # What this connection has of each room from now on: what the
            # old one had, and what was just given (a client can ask for
            # what it lacks before that with a resume).
            point = absent.points.get(room.key) if absent is not None else None
            if point is None or absent is None or absent.overflowed:
                room.members[held] = room.delivered_id + 1
                if point is not None:
                    self._resume.catch_up(held, room, point)
            else:
                room.members[held] = point + 1
        if absent is not None and absent.dropped:
            self._delivery.tell(
                held,
                events.Status(
                    f"{absent.dropped} notices for you came while you were away "
                    "and could not be kept"
                ),
            )
        self._sessions.save(held)
        self._log.info(
            "{nick} carried on their session by {door}",
            nick=held.nick,
            door=held.door,
        )
