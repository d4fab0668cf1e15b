# -*- test-case-name: tests.test_pacing -*-
"""
Tests for L{tchat.pacing.Pacing}: the verdicts on what one user or room
may do now, on a L{Clock}, without a hub.  What the hub does with them is
tested in L{tests.test_limits}.
"""

from collections import deque
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tchat import events
from tchat.config import LimitsConfig
from tchat.metrics import Metrics
from tchat.model import Room, Settings, User
from tchat.pacing import ALLOW, Close, Drop, Pacing, Verdict, Warn
from tchat.palette import PALETTE
from tests.support import FakeParticipant

START = 1_700_000_000.0

FLOODING = Close("flooding", "flooding: 3 more lines after being told to slow down")
"""The verdict on a flooder with C{flood_disconnect = 3}."""


class PacingTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.metrics = Metrics()
        self.settings = Settings()
        self.pacing = Pacing(self.settings, self.clock, self.metrics)

    def limits(self, **limits: Any) -> None:
        """Put C{[limits]} with these values in force."""
        self.settings.limits = LimitsConfig(**limits)

    def user(self, nick: str = "alice", named: bool = True) -> User:
        """A user who connected just now."""
        return User(
            FakeParticipant(),
            nick,
            "telnet",
            PALETTE["red"],
            connected_at=self.clock.seconds(),
            named=named,
        )

    def room(self, name: str = "#dev") -> Room:
        return Room(name, 1, deque(maxlen=1))

    def send(self, user: User, count: int) -> list[Verdict]:
        """The verdicts on C{count} lines from C{user}, all at once."""
        return [self.pacing.received(user) for _ in range(count)]


class ReceivedTests(PacingTestCase):
    """
    L{Pacing.received}: lines and frames against C{messages_per_second}.
    """

    def setUp(self) -> None:
        super().setUp()
        self.limits(messages_per_second=1, message_burst=3, flood_disconnect=3)

    def test_burst_allowed(self) -> None:
        """
        A user may send a burst at once; nothing is counted as limited.
        """
        self.assertEqual(self.send(self.user(), 3), [ALLOW] * 3)
        self.assertEqual(self.metrics.rate_limited, {})

    def test_flood_told_once_then_closed(self) -> None:
        """
        Past the burst, the first line dropped earns a notice to slow down,
        the next are dropped silently, and C{flood_disconnect} of them after
        the notice close the connection; every refusal is counted.
        """
        user = self.user()
        self.send(user, 3)
        verdicts = self.send(user, 4)
        self.assertEqual(
            verdicts,
            [
                Drop(
                    events.Error(
                        "rate-limited",
                        "slow down: you may send 1 line a second (3 at once); "
                        "what you send now is dropped until you slow down",
                    )
                ),
                Drop(),
                Drop(),
                FLOODING,
            ],
        )
        self.assertEqual(self.metrics.rate_limited, {"messages": 4})

    def test_no_flood_close(self) -> None:
        """
        With C{flood_disconnect = 0} a flooder is dropped, never closed.
        """
        self.limits(messages_per_second=1, message_burst=1, flood_disconnect=0)
        user = self.user()
        verdicts = self.send(user, 50)
        self.assertFalse(any(isinstance(v, Close) for v in verdicts))
        self.assertEqual(verdicts[-1], Drop())

    def test_allowed_again_after_refill(self) -> None:
        """
        Once the bucket refilled, lines are allowed again; one who calmed
        down fully is told again should they flood again.
        """
        user = self.user()
        self.send(user, 5)
        self.clock.advance(3)
        self.assertEqual(self.send(user, 3), [ALLOW] * 3)
        again = self.pacing.received(user)
        assert isinstance(again, Drop)
        self.assertIsNotNone(again.notice)

    def test_partial_calm_not_told_again(self) -> None:
        """
        A flooder who paused only long enough for one more line is let
        through for it, but not warned again: the next excess counts towards
        being closed.
        """
        user = self.user()
        self.send(user, 5)
        self.clock.advance(1)
        self.assertEqual(self.send(user, 3), [ALLOW, Drop(), FLOODING])

    def test_off(self) -> None:
        """
        With C{messages_per_second = 0} every line is allowed and nothing
        is counted.
        """
        self.limits(messages_per_second=0)
        user = self.user()
        self.assertEqual(set(self.send(user, 100)), {ALLOW})
        self.assertIsNone(user.sending)
        self.assertEqual(self.metrics.rate_limited, {})

    def test_heard(self) -> None:
        """
        Every line received, allowed or not, marks the user as heard now and
        no longer warned of idleness.
        """
        self.limits(messages_per_second=0)
        user = self.user()
        user.idle_warned = True
        self.clock.advance(12)
        self.pacing.received(user)
        self.assertEqual(user.heard_at, START + 12)
        self.assertFalse(user.idle_warned)

        self.limits(messages_per_second=1, message_burst=1)
        self.send(user, 2)
        self.clock.advance(0.5)
        user.idle_warned = True
        self.assertNotEqual(self.pacing.received(user), ALLOW)
        self.assertEqual(user.heard_at, START + 12.5)
        self.assertFalse(user.idle_warned)


class NickChangeTests(PacingTestCase):
    """
    L{Pacing.nick_change}: C{nick_changes_per_minute}.
    """

    def test_per_minute(self) -> None:
        """
        A user may change nick as often as allowed a minute, then is refused
        (and counted) until the allowance refills.
        """
        self.limits(nick_changes_per_minute=2)
        user = self.user()
        self.assertEqual([self.pacing.nick_change(user) for _ in range(2)], [None] * 2)
        self.assertEqual(
            self.pacing.nick_change(user),
            Drop(
                events.Error(
                    "rate-limited",
                    "too many nick changes (at most 2 a minute); try again in a minute",
                )
            ),
        )
        self.assertEqual(self.metrics.rate_limited, {"nick-changes": 1})
        self.clock.advance(30)
        self.assertIsNone(self.pacing.nick_change(user))
        self.assertIsNotNone(self.pacing.nick_change(user))

    def test_off(self) -> None:
        """
        With C{nick_changes_per_minute = 0} nick changes are never refused.
        """
        self.limits(nick_changes_per_minute=0)
        user = self.user()
        self.assertEqual({self.pacing.nick_change(user) for _ in range(50)}, {None})

    def test_per_user(self) -> None:
        """
        One user's nick changes do not use up another's.
        """
        self.limits(nick_changes_per_minute=1)
        alice, bob = self.user("alice"), self.user("bob")
        self.pacing.nick_change(alice)
        self.assertIsNotNone(self.pacing.nick_change(alice))
        self.assertIsNone(self.pacing.nick_change(bob))


class JoinTests(PacingTestCase):
    """
    L{Pacing.join}: C{max_rooms_per_user}, then C{joins_per_minute}.
    """

    def test_too_many_rooms_first(self) -> None:
        """
        A user in as many rooms as allowed is told so, even when out of
        joins too, and the refusal spends none of their joins.
        """
        self.limits(max_rooms_per_user=2, joins_per_minute=1)
        user = self.user()
        user.rooms = [self.room("#a"), self.room("#b")]
        self.assertEqual(
            self.pacing.join(user),
            Drop(
                events.Error(
                    "too-many-rooms",
                    "one user may be in 2 rooms at most; /part one first",
                )
            ),
        )
        self.assertEqual(self.metrics.rate_limited, {"rooms-per-user": 1})
        user.rooms.pop()
        self.assertIsNone(self.pacing.join(user))

    def test_joins_per_minute(self) -> None:
        """
        Joins past the allowance a minute are refused and counted.
        """
        self.limits(max_rooms_per_user=0, joins_per_minute=2)
        user = self.user()
        self.assertEqual([self.pacing.join(user) for _ in range(2)], [None] * 2)
        self.assertEqual(
            self.pacing.join(user),
            Drop(
                events.Error(
                    "rate-limited",
                    "too many joins (at most 2 a minute); try again in a minute",
                )
            ),
        )
        self.assertEqual(self.metrics.rate_limited, {"joins": 1})

    def test_off(self) -> None:
        """
        With both limits off, joins are never refused.
        """
        self.limits(max_rooms_per_user=0, joins_per_minute=0)
        user = self.user()
        user.rooms = [self.room(f"#r{i}") for i in range(100)]
        self.assertIsNone(self.pacing.join(user))


class RoomTests(PacingTestCase):
    """
    L{Pacing.room_full} and L{Pacing.room_busy}.
    """

    def test_room_full(self) -> None:
        """
        A room with as many members as allowed is full for a newcomer.
        """
        self.limits(max_users_per_room=2)
        room, newcomer = self.room(), self.user("carol")
        room.members = {self.user("alice"): 1}
        self.assertIsNone(self.pacing.room_full(newcomer, room))
        room.members[self.user("bob")] = 1
        self.assertEqual(
            self.pacing.room_full(newcomer, room),
            Drop(
                events.Error("room-full", "#dev is full (2 users); /join another room")
            ),
        )
        self.assertEqual(self.metrics.rate_limited, {"room-full": 1})

    def test_default_room_capped_too(self) -> None:
        """
        The default room has the cap of any room (newcomers who find it
        full land in an overflow room instead); L{Pacing.full} asks without
        counting a refusal.
        """
        self.limits(max_users_per_room=1)
        lobby = Room("#Lobby", 1, deque())
        lobby.members = {self.user("alice"): 1}
        self.assertTrue(self.pacing.full(self.user("bob"), lobby))
        self.assertEqual(self.metrics.rate_limited, {})
        self.assertIsNotNone(self.pacing.room_full(self.user("bob"), lobby))

    def test_operators_always_fit(self) -> None:
        """
        An operator may join a full room, and is not counted as refused.
        """
        self.limits(max_users_per_room=1)
        room, operator = self.room(), self.user("root")
        room.members = {self.user("alice"): 1}
        operator.operator = "root"
        self.assertIsNone(self.pacing.room_full(operator, room))
        self.assertEqual(self.metrics.rate_limited, {})

    def test_room_size_off(self) -> None:
        """
        With C{max_users_per_room = 0} rooms are never full.
        """
        self.limits(max_users_per_room=0)
        room = self.room()
        room.members = {self.user(f"u{i}"): 1 for i in range(20)}
        self.assertIsNone(self.pacing.room_full(self.user(), room))

    def test_room_busy(self) -> None:
        """
        A room takes a burst of messages, then as many a second as allowed;
        each room has its own allowance.
        """
        self.limits(room_messages_per_second=1, room_message_burst=2)
        room, other = self.room(), self.room("#other")
        self.assertEqual([self.pacing.room_busy(room) for _ in range(2)], [None] * 2)
        self.assertEqual(
            self.pacing.room_busy(room),
            Drop(
                events.Error(
                    "rate-limited",
                    "#dev is too busy (over 1 message a second); your message "
                    "was not sent, try again",
                )
            ),
        )
        self.assertEqual(self.metrics.rate_limited, {"room": 1})
        self.assertIsNone(self.pacing.room_busy(other))
        self.clock.advance(1)
        self.assertIsNone(self.pacing.room_busy(room))

    def test_room_busy_off(self) -> None:
        """
        With C{room_messages_per_second = 0} a room is never too busy.
        """
        self.limits(room_messages_per_second=0)
        room = self.room()
        self.assertEqual({self.pacing.room_busy(room) for _ in range(500)}, {None})


class SweepTests(PacingTestCase):
    """
    L{Pacing.sweep}: the login, silent and idle timeouts.
    """

    def sweep(self, *users: User) -> list[tuple[User, Close | Warn]]:
        return list(self.pacing.sweep(users))

    def test_login_timeout(self) -> None:
        """
        A guest who picked no nick in time is closed; one who did is not.
        """
        self.limits(login_timeout=60, silent_timeout=0)
        guest, named = self.user("guest-1", named=False), self.user("alice")
        self.clock.advance(59)
        self.assertEqual(self.sweep(guest, named), [])
        self.clock.advance(1)
        self.assertEqual(
            self.sweep(guest, named),
            [(guest, Close("no-nick", "no nick picked in 1m"))],
        )

    def test_silent_timeout(self) -> None:
        """
        A connection that never sent anything is closed after
        C{silent_timeout}; one that did is not.
        """
        self.limits(silent_timeout=120, idle_timeout=0)
        silent, talker = self.user("silent"), self.user("talker")
        self.pacing.received(talker)
        self.clock.advance(119)
        self.assertEqual(self.sweep(silent, talker), [])
        self.clock.advance(1)
        self.assertEqual(
            self.sweep(silent, talker),
            [(silent, Close("silent", "nothing received in 2m"))],
        )

    def test_timeouts_off(self) -> None:
        """
        With the timeouts off, nobody is ever swept.
        """
        self.limits(silent_timeout=0, idle_timeout=0, login_timeout=0)
        guest, talker = self.user("g", named=False), self.user("t")
        self.pacing.received(talker)
        self.clock.advance(30 * 86400)
        self.assertEqual(self.sweep(guest, talker), [])

    def test_idle_warned_once_then_closed(self) -> None:
        """
        A user idle until five minutes before C{idle_timeout} is warned,
        once; at the timeout they are closed.
        """
        self.limits(idle_timeout=900, silent_timeout=0)
        user = self.user()
        self.pacing.received(user)
        self.clock.advance(599)
        self.assertEqual(self.sweep(user), [])
        self.clock.advance(1)
        self.assertEqual(
            self.sweep(user),
            [
                (
                    user,
                    Warn(
                        events.Status(
                            "you have been idle for 10m; you will be disconnected "
                            "in 5m unless you send something (an empty line will "
                            "do)"
                        )
                    ),
                )
            ],
        )
        self.clock.advance(60)
        self.assertEqual(self.sweep(user), [])
        self.clock.advance(240)
        self.assertEqual(self.sweep(user), [(user, Close("idle", "idle for 15m"))])

    def test_heard_after_warning(self) -> None:
        """
        A warned user who sends something is idle afresh, and warned again
        when they go quiet again.
        """
        self.limits(idle_timeout=900, silent_timeout=0)
        user = self.user()
        self.pacing.received(user)
        self.clock.advance(600)
        self.assertEqual(len(self.sweep(user)), 1)
        self.pacing.received(user)
        self.clock.advance(899)
        (found,) = self.sweep(user)
        self.assertIsInstance(found[1], Warn)

    def test_pings_exempt_from_idle(self) -> None:
        """
        A user whose door checks the peer itself (WebSocket pings) is never
        warned or closed for idleness.
        """
        self.limits(idle_timeout=900, silent_timeout=0)
        user = self.user()
        user.pings = True
        self.pacing.received(user)
        self.clock.advance(86400)
        self.assertEqual(self.sweep(user), [])


class RestartTests(PacingTestCase):
    """
    L{Pacing.restart}: new limits, fresh allowances.
    """

    def test_allowances_start_afresh(self) -> None:
        """
        After a restart a flooder, an eager nick changer and joiner, and a
        busy room all get their full allowance under the new limits, and
        the flooder is told afresh.
        """
        self.limits(
            messages_per_second=1,
            message_burst=1,
            nick_changes_per_minute=1,
            joins_per_minute=1,
            room_messages_per_second=1,
            room_message_burst=1,
        )
        user, room = self.user(), self.room()
        self.send(user, 3)
        self.pacing.nick_change(user)
        self.pacing.join(user)
        self.pacing.room_busy(room)
        self.limits(
            messages_per_second=1,
            message_burst=2,
            nick_changes_per_minute=2,
            joins_per_minute=2,
            room_messages_per_second=1,
            room_message_burst=2,
        )
        self.pacing.restart([user], [room])
        self.assertEqual(self.send(user, 2), [ALLOW, ALLOW])
        notice = self.pacing.received(user)
        assert isinstance(notice, Drop)
        self.assertIsNotNone(notice.notice)
        self.assertEqual([self.pacing.nick_change(user) for _ in range(2)], [None] * 2)
        self.assertEqual([self.pacing.join(user) for _ in range(2)], [None] * 2)
        self.assertEqual([self.pacing.room_busy(room) for _ in range(2)], [None] * 2)
