# -*- test-case-name: tests.test_limits -*-
"""
Tests for L{tchat.limits} and the limits the hub and doors apply: what a
flooder, a slow reader or a silent socket meets, and that everyone else
never notices.  Who may connect at all is tested in L{tests.test_gate}, the
output queue and its batching in L{tests.test_output}.
"""

import random
import re
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tchat import events
from tchat.commands import Join, Nick, Part, Say
from tchat.config import LimitsConfig, ServerConfig
from tchat.hub import ChatFactory
from tchat.limits import TokenBucket
from tchat.model import User
from tchat.telnet import TelnetFactory
from tests.support import FakeParticipant, WebTestCase
from tests.support import TelnetClient as Client


class TokenBucketTests(SynchronousTestCase):
    def test_burst_then_rate(self) -> None:
        """
        A full bucket allows C{burst} at once, then C{rate} a second.
        """
        bucket = TokenBucket(5, 10, 0.0)
        self.assertEqual([bucket.take(0.0) for _ in range(11)], [True] * 10 + [False])
        self.assertFalse(bucket.full(0.0))
        self.assertTrue(bucket.take(0.2))
        self.assertFalse(bucket.take(0.2))
        self.assertTrue(bucket.full(10.0))


class HubLimitsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.hub = self.make_hub()

    def make_hub(self, **limits: Any) -> ChatFactory:
        hub = ChatFactory(
            ServerConfig(reconnect_grace=0),
            self.clock,
            random.Random(1),
            limits=LimitsConfig(**limits),
        )
        self.successResultOf(hub.start())
        self.addCleanup(hub.stop, 0)
        return hub

    def connect(self, nick: str) -> tuple[FakeParticipant, User]:
        participant = FakeParticipant(address="192.0.2.9")
        user = self.hub.connect(participant)
        self.hub.execute(user, Nick(nick))
        participant.take()
        return participant, user

    def say(self, user: User, text: str) -> None:
        """What a door does with a line: check it, then run it."""
        if self.hub.received(user):
            self.hub.execute(user, Say(text))

    def texts(self, participant: FakeParticipant) -> list[str]:
        return [
            e.text if isinstance(e, events.RoomMessage | events.Error) else repr(e)
            for e in participant.take()
        ]

    def test_flood_dropped_with_one_notice(self) -> None:
        """
        Past the burst, lines are dropped and the flooder told to slow down
        once; the others get exactly the lines that were allowed, in order.
        """
        flooder_p, flooder = self.connect("flooder")
        bob_p, _ = self.connect("bob")
        bob_p.take()
        for n in range(20):
            self.say(flooder, f"line {n}")
        self.assertEqual(self.texts(bob_p), [f"line {n}" for n in range(10)])
        errors = [e for e in flooder_p.take() if isinstance(e, events.Error)]
        self.assertEqual([e.code for e in errors], ["rate-limited"])
        self.assertIn("slow down", errors[0].text)
        self.assertTrue(flooder.connected)
        # At 5 a second, a line every 0.2 s goes through again.
        self.clock.advance(0.2)
        self.say(flooder, "calmer")
        self.assertEqual(self.texts(bob_p), ["calmer"])

    def test_flooder_disconnected(self) -> None:
        """
        Going on after the notice (C{flood_disconnect} more lines) closes
        the connection with a reason the flooder and the room see.
        """
        flooder_p, flooder = self.connect("flooder")
        bob_p, _ = self.connect("bob")
        bob_p.take()
        for n in range(10 + 1 + 30):
            self.say(flooder, f"line {n}")
        self.assertFalse(flooder.connected)
        self.assertEqual(flooder_p.close_why, "policy")
        goodbye = flooder_p.received[-1]
        assert isinstance(goodbye, events.Goodbye)
        self.assertIn("flooding", goodbye.reason)
        quit_notice = bob_p.received[-1]
        assert isinstance(quit_notice, events.Presence)
        self.assertEqual((quit_notice.kind, quit_notice.reason), ("quit", "flooding"))

    def test_calm_resets_the_warning(self) -> None:
        """
        A user who calmed down (their allowance refilled) starts afresh:
        a later burst earns a new notice rather than a disconnect.
        """
        flooder_p, flooder = self.connect("flooder")
        for n in range(11 + 25):
            self.say(flooder, f"line {n}")
        self.clock.advance(10)
        for n in range(11 + 25):
            self.say(flooder, f"again {n}")
        self.assertTrue(flooder.connected)
        errors = [e for e in flooder_p.take() if isinstance(e, events.Error)]
        self.assertEqual(len(errors), 2)

    def test_room_rate(self) -> None:
        """
        A room takes at most C{room_message_burst} at once from everyone;
        the sender of one over it is told it was not sent.
        """
        self.hub = self.make_hub(room_messages_per_second=1, room_message_burst=3)
        alice_p, alice = self.connect("alice")
        bob_p, bob = self.connect("bob")
        bob_p.take()
        alice_p.take()
        for n in range(2):
            self.say(alice, f"a{n}")
            self.say(bob, f"b{n}")
        *delivered, error = self.texts(bob_p)
        self.assertEqual(delivered, ["a0", "b0", "a1"])
        self.assertIn("#lobby is too busy (over 1 message a second)", error)
        self.assertEqual(self.texts(alice_p), ["a0", "b0", "a1"])

    def test_nick_changes(self) -> None:
        """
        Nick changes past C{nick_changes_per_minute} are refused.
        """
        participant, user = self.connect("n0")  # one change spent
        for n in range(1, 6):
            self.hub.execute(user, Nick(f"n{n}"))
        self.assertEqual(user.nick, "n4")
        error = participant.received[-1]
        assert isinstance(error, events.Error)
        self.assertIn("too many nick changes (at most 5 a minute)", error.text)
        self.clock.advance(12)
        self.hub.execute(user, Nick("n9"))
        self.assertEqual(user.nick, "n9")

    def test_joins_and_rooms(self) -> None:
        """
        Joins past C{joins_per_minute}, rooms past C{max_rooms_per_user}
        and full rooms are each refused with a reason; no room is created
        by a refused join.
        """
        self.hub = self.make_hub(
            joins_per_minute=3, max_rooms_per_user=3, max_users_per_room=1
        )
        participant, user = self.connect("alice")
        self.hub.execute(user, Join("#a"))
        self.hub.execute(user, Join("#b"))
        self.hub.execute(user, Join("#c"))
        error = participant.received[-1]
        assert isinstance(error, events.Error)
        self.assertEqual(error.code, "too-many-rooms")
        self.assertNotIn("#c", self.hub.directory.rooms)
        self.hub.execute(user, Part("#a"))
        self.hub.execute(user, Join("#d"))
        self.hub.execute(user, Part("#d"))
        self.hub.execute(user, Join("#e"))
        error = participant.received[-1]
        assert isinstance(error, events.Error)
        self.assertIn("too many joins (at most 3 a minute)", error.text)
        # #lobby and #b hold one user each, and alice is that one: bob
        # arrives in #lobby's overflow room, and #b is full for him.
        bob_p = FakeParticipant(address="192.0.2.10")
        bob = self.hub.connect(bob_p)
        self.assertEqual([r.name for r in bob.rooms], ["#lobby-2"])
        self.hub.execute(bob, Join("#b"))
        full = [e for e in bob_p.received if isinstance(e, events.Error)]
        self.assertEqual([e.code for e in full], ["room-full"])

    def test_silent_connection_closed(self) -> None:
        """
        A connection that sends nothing within C{silent_timeout} is closed
        with the reason; one that spoke stays.
        """
        silent_p = FakeParticipant(address="192.0.2.9")
        silent = self.hub.connect(silent_p)
        talker_p, talker = self.connect("talker")
        self.hub.received(talker)
        self.clock.advance(125)
        self.assertFalse(silent.connected)
        goodbye = silent_p.received[-1]
        assert isinstance(goodbye, events.Goodbye)
        self.assertEqual(goodbye.reason, "nothing received in 2m")
        self.assertTrue(talker.connected)

    def test_idle_warned_then_closed(self) -> None:
        """
        A telnet user idle for C{idle_timeout} is warned five minutes
        before and then disconnected; a web user (pinged by Autobahn) is
        not; any line resets the clock.
        """
        idle_p, idle = self.connect("idle")
        web_p = FakeParticipant("web", "192.0.2.11")
        web_p.pings = True  # type: ignore[attr-defined]
        web = self.hub.connect(web_p)
        for user in (idle, web):
            self.hub.received(user)
        self.clock.advance(3300 + 5)
        warning = idle_p.received[-1]
        assert isinstance(warning, events.Status)
        self.assertIn("you will be disconnected in 4m 55s unless", warning.text)
        self.clock.advance(300)
        self.assertFalse(idle.connected)
        self.assertTrue(web.connected)

    def test_login_timeout(self) -> None:
        """
        With C{login_timeout}, a guest who picks no nick in time is closed.
        """
        self.hub = self.make_hub(login_timeout=30)
        guest_p = FakeParticipant(address="192.0.2.9")
        guest = self.hub.connect(guest_p)
        self.hub.received(guest)
        named_p, named = self.connect("named")
        self.clock.advance(35)
        self.assertFalse(guest.connected)
        self.assertTrue(named.connected)

    def test_reload_applies(self) -> None:
        """
        New limits apply at once on reload, with fresh allowances.
        """
        flooder_p, flooder = self.connect("flooder")
        for n in range(11):
            self.say(flooder, f"line {n}")
        self.hub.reconfigure(
            self.hub.config,
            self.hub.history,
            self.hub.settings.operators,
            LimitsConfig(messages_per_second=0, room_messages_per_second=0),
        )
        flooder_p.take()
        for n in range(100):
            self.say(flooder, f"more {n}")
        self.assertFalse([e for e in flooder_p.take() if isinstance(e, events.Error)])


class SlowTelnetTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.hub = ChatFactory(
            ServerConfig(reconnect_grace=0),
            self.clock,
            random.Random(1),
            limits=LimitsConfig(
                output_queue=4096, messages_per_second=0, room_messages_per_second=0
            ),
        )
        self.factory = TelnetFactory(self.hub)

    def test_lines_skipped_then_stuck(self) -> None:
        """
        A client whose socket is full has its oldest lines replaced by one
        "[N lines skipped]" marker and gets the rest once it reads again;
        one that stays stuck for C{stuck_timeout} is cut, counted, and shown
        to the room as unable to keep up.  The sender never waits.
        """
        slow, fast, talker = (Client(self.factory) for _ in range(3))
        for client, nick in ((slow, "slow"), (fast, "fast"), (talker, "talker")):
            client.send(f"/nick {nick}\r\n/color off\r\n".encode())
        for client in (slow, fast, talker):
            client.take()
        queue = slow.protocol.queue  # type: ignore[attr-defined]
        assert queue is not None
        queue.pauseProducing()  # what a full socket buffer does
        for n in range(200):
            talker.send(f"message {n:03d} {'x' * 40}\r\n".encode())
        self.assertEqual(len(fast.lines()), 200)
        self.assertLessEqual(queue.size, 4096 + 100)
        queue.resumeProducing()
        lines = slow.lines()
        marker = re.fullmatch(
            r"\*\*\* \[(\d+) lines skipped: you were not reading fast enough\]",
            lines[0],
        )
        assert marker is not None, lines[0]
        skipped = int(marker.group(1))
        self.assertEqual(skipped + len(lines) - 1, 200)
        self.assertTrue(lines[-1].endswith(f"message 199 {'x' * 40}"))
        # Stuck for good: cut once the limit is hit after stuck_timeout.
        queue.pauseProducing()
        self.clock.advance(31)
        for n in range(200):
            talker.send(f"again {n:03d} {'x' * 40}\r\n".encode())
        self.assertTrue(slow.transport.disconnecting)
        self.assertEqual(self.hub.metrics.slow_consumer_disconnects, 1)
        self.assertIn(
            "*** slow (telnet) quit (could not keep up)", "\n".join(fast.lines())
        )


class SlowWebTests(WebTestCase):
    def test_slow_reader_closed_with_policy(self) -> None:
        """
        A WebSocket client that falls C{output_queue} behind is closed with
        1008 and a reason; the others got every message.
        """
        self.hub.settings.limits = LimitsConfig(
            output_queue=4096, messages_per_second=0, room_messages_per_second=0
        )
        alice, bob = self.people("alice", "bob")
        slow, server, _ = self.connect(nick="slow")
        self.flush()
        alice.take()
        server._queue.pauseProducing()
        for n in range(100):
            bob.send(type="message", message=f"message {n} {'x' * 50}")
        self.flush()
        self.assertEqual(
            len([f for f in alice.take() if f.get("type") == "usermsg"]), 100
        )
        self.assertEqual(self.hub.metrics.slow_consumer_disconnects, 1)
        self.clock.advance(2)
        self.flush()
        assert slow.closed is not None
        self.assertEqual(slow.closed[1], 1008)
        self.assertIn("too slow", slow.closed[2] or "")
