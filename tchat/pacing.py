# -*- test-case-name: tests.test_pacing -*-
"""
Pacing: how fast and how much one user may do, as verdicts.

Each check answers with a verdict the hub carries out: L{ALLOW}; L{Drop},
what was sent is dropped and the user may be told why; L{Close}, the
connection goes, with the reason others see and the words the user is
told; L{Warn}, a word to the user and nothing else.  Pacing counts what it
refuses in the metrics but tells and closes nothing itself.

The limits are C{[limits]} in C{tap.ini} (L{tchat.config.LimitsConfig});
the rate limits are L{TokenBucket}s.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from twisted.internet.interfaces import IReactorTime

from tchat import events
from tchat.limits import TokenBucket, per_minute, plural
from tchat.metrics import Metrics
from tchat.model import Room, Settings, User
from tchat.text import describe_span, per_second

SWEEP_INTERVAL = 5.0
"""Seconds between checks of the silent, idle and login timeouts."""

IDLE_WARNING = 300.0
"""Seconds before the idle timeout that a telnet user is warned."""


class _Allow:
    """Go ahead."""

    def __repr__(self) -> str:
        return "ALLOW"


ALLOW: Final = _Allow()
"""The verdict that lets something through."""


@dataclass(frozen=True)
class Drop:
    """
    Drop what was sent; tell the user C{notice}, when there is one.
    """

    notice: events.Error | None = None


@dataclass(frozen=True)
class Close:
    """
    Close the connection for breaking a limit.

    @ivar reason: Why, as others are told ("quit (flooding)") and the
        metrics count it.
    @ivar said: What the user is told.
    """

    reason: str
    said: str


@dataclass(frozen=True)
class Warn:
    """Tell the user C{notice}, and nothing else."""

    notice: events.Status


Verdict = _Allow | Drop | Close | Warn

_SILENT = Drop()


def _drop(code: events.ErrorCode, text: str) -> Drop:
    return Drop(events.Error(code, text))


class Pacing:
    """
    The rate and size limits of C{[limits]}, checked per user and per room.
    """

    def __init__(self, settings: Settings, clock: IReactorTime, metrics: Metrics):
        self._settings = settings
        self._clock = clock
        self._metrics = metrics

    def received(self, user: User) -> Verdict:
        """
        A door got a line or frame from C{user}: may it be handled?

        Every line or frame counts against C{[limits] messages_per_second}.
        Over it, the first one dropped earns a notice to slow down, and
        C{flood_disconnect} more before the user calms down (the limit
        refills) close the connection.
        """
        now = self._clock.seconds()
        user.heard_at = now
        user.idle_warned = False
        limits = self._settings.limits
        if not limits.messages_per_second:
            return ALLOW
        bucket = user.sending
        if bucket is None:
            bucket = user.sending = TokenBucket(
                limits.messages_per_second, limits.message_burst, now
            )
        elif user.flood_dropped >= 0 and bucket.full(now):
            user.flood_dropped = -1
        if bucket.take(now):
            return ALLOW
        self._metrics.limit("messages")
        if user.flood_dropped < 0:
            user.flood_dropped = 0
            return _drop(
                "rate-limited",
                "slow down: you may send "
                f"{per_second(limits.messages_per_second, 'line')} "
                f"({limits.message_burst} at once); what you send now is "
                "dropped until you slow down",
            )
        user.flood_dropped += 1
        if limits.flood_disconnect and user.flood_dropped >= limits.flood_disconnect:
            return Close(
                "flooding",
                f"flooding: {user.flood_dropped} more lines after being told to "
                "slow down",
            )
        return _SILENT

    def nick_change(self, user: User) -> Drop | None:
        """May C{user} change nick now?  (C{nick_changes_per_minute})"""
        return self._per_minute(
            user,
            "nick_changes",
            self._settings.limits.nick_changes_per_minute,
            "nick changes",
        )

    def join(self, user: User, besides: int = 0) -> Drop | None:
        """
        May C{user} join another room now?  (C{max_rooms_per_user},
        C{joins_per_minute})  Every join goes through this, whatever asks
        for it (C{/join}, a resume).

        @param besides: Rooms the user is about to join (or, negative,
            leave) besides this one, when several are joined at once.
        """
        limits = self._settings.limits
        most = limits.max_rooms_per_user
        if most and len(user.rooms) + besides >= most:
            self._metrics.limit("rooms-per-user")
            return _drop(
                "too-many-rooms",
                f"one user may be in {plural(most, 'room')} at most; /part one first",
            )
        return self._per_minute(user, "joins", limits.joins_per_minute, "joins")

    def _per_minute(self, user: User, which: str, count: int, what: str) -> Drop | None:
        """
        Take one of C{user}'s C{count}-a-minute allowance for C{which}
        (C{nick_changes} or C{joins}), or refuse.
        """
        if not count:
            return None
        now = self._clock.seconds()
        bucket = getattr(user, which)
        if bucket is None:
            bucket = per_minute(count, now)
            setattr(user, which, bucket)
        if bucket.take(now):
            return None
        self._metrics.limit(which.replace("_", "-"))
        return _drop(
            "rate-limited",
            f"too many {what} (at most {count} a minute); try again in a minute",
        )

    def full(self, user: User, room: Room) -> bool:
        """Is C{room} full for C{user}?  Operators always fit."""
        most = self._settings.limits.max_users_per_room
        return bool(most) and len(room.members) >= most and user.operator is None

    def room_full(self, user: User, room: Room) -> Drop | None:
        """
        Is C{room} full for C{user}?  Operators always fit; newcomers who
        find the default room full land in an overflow room (see
        L{tchat.presence.Presence.arrive}).
        """
        most = self._settings.limits.max_users_per_room
        if not self.full(user, room):
            return None
        self._metrics.limit("room-full")
        return _drop(
            "room-full",
            f"{room.name} is full ({plural(most, 'user')}); /join another room",
        )

    def room_busy(self, room: Room) -> Drop | None:
        """Has C{room} taken all the messages it may this second?"""
        limits = self._settings.limits
        if not limits.room_messages_per_second:
            return None
        now = self._clock.seconds()
        bucket = room.sending
        if bucket is None:
            bucket = room.sending = TokenBucket(
                limits.room_messages_per_second, limits.room_message_burst, now
            )
        if bucket.take(now):
            return None
        self._metrics.limit("room")
        return _drop(
            "rate-limited",
            f"{room.name} is too busy (over "
            f"{per_second(limits.room_messages_per_second, 'message')}); "
            "your message was not sent, try again",
        )

    def sweep(self, users: Iterable[User]) -> Iterator[tuple[User, Close | Warn]]:
        """
        Find connections that never said anything, telnet users idle too
        long (to warn first), and guests who did not pick a nick in time.
        """
        limits, now = self._settings.limits, self._clock.seconds()
        silent, idle, login = (
            limits.silent_timeout,
            limits.idle_timeout,
            limits.login_timeout,
        )
        for user in users:
            age = now - user.connected_at
            if login and not user.named and age >= login:
                yield (
                    user,
                    Close("no-nick", f"no nick picked in {describe_span(login)}"),
                )
            elif user.heard_at is None:
                if silent and age >= silent:
                    said = f"nothing received in {describe_span(silent)}"
                    yield user, Close("silent", said)
            elif idle and not user.pings:
                quiet = now - user.heard_at
                if quiet >= idle:
                    yield user, Close("idle", f"idle for {describe_span(quiet)}")
                elif quiet >= idle - IDLE_WARNING and not user.idle_warned:
                    user.idle_warned = True
                    yield (
                        user,
                        Warn(
                            events.Status(
                                f"you have been idle for {describe_span(quiet)}; "
                                "you will be disconnected in "
                                f"{describe_span(idle - quiet)} unless you send "
                                "something (an empty line will do)"
                            )
                        ),
                    )

    def restart(self, users: Iterable[User], rooms: Iterable[Room]) -> None:
        """New limits are in force: every rate starts afresh."""
        for user in users:
            user.sending = user.nick_changes = user.joins = None
            user.flood_dropped = -1
        for room in rooms:
            room.sending = None
