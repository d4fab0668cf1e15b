"""
Tests for L{tchat.crowds}: in a big room arrivals and departures are told
together once a period, on every door; small rooms are told as before.
"""

import json

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tchat import commands as c
from tchat import events
from tchat.config import LimitsConfig
from tchat.crowds import crowd_text
from tchat.irc.render import crowd_lines
from tchat.model import User
from tchat.terminal import encode, variant
from tchat.webproto import to_json
from tests.support import FakeParticipant, of, started_hub
from tests.test_irc import IRCClient

NOW = 1_700_000_000
BIG = 3
PERIOD = 2.0


class CrowdTestCase(SynchronousTestCase):
    """A hub whose rooms are big above three members."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.hub = started_hub(
            self,
            self.clock,
            limits=LimitsConfig(
                silent_timeout=0,
                big_room=BIG,
                big_room_summary=PERIOD,
                joins_per_minute=0,
            ),
        )

    def user(self, nick: str) -> tuple[FakeParticipant, User]:
        """C{nick}, settled in the lobby, told nothing yet."""
        participant = FakeParticipant()
        user = self.hub.connect(participant)
        self.hub.execute(user, c.Nick(nick))
        self.hub.execute(user, c.Settle())
        participant.take()
        return participant, user


class CrowdTests(CrowdTestCase):
    def test_small_room_as_before(self) -> None:
        """Up to C{big_room} members, each arrival is told at once."""
        alice, _ = self.user("alice")
        _, bob = self.user("bob")
        joined, renamed = of(events.Presence, alice.take())
        self.assertEqual((joined.kind, renamed.kind), ("join", "nick"))
        self.assertEqual((joined.nick, renamed.new_nick), (renamed.nick, "bob"))

    def test_big_room_told_once_a_period(self) -> None:
        """
        Past C{big_room} members, arrivals and departures reach the members
        in one L{events.Crowd} a period, under the nicks the newcomers took
        meanwhile (nobody is told a guest's rename); the newcomer is told
        their own join at once; the summary counts who is here.
        """
        alice, _ = self.user("alice")
        for nick in ("bob", "carol"):
            self.user(nick)
        alice.take()
        dan, _ = self.user("dan")
        erin_p = FakeParticipant()
        erin = self.hub.connect(erin_p)
        self.hub.execute(erin, c.Nick("erin"))
        self.hub.execute(erin, c.Settle())
        own = [p.kind for p in of(events.Presence, erin_p.take())]
        self.assertEqual(own, ["join", "nick"], "her own join, at once")
        self.hub.disconnect(self.hub.directory.users["bob"], "gone")
        self.assertEqual(of(events.Presence, alice.take()), [], "nothing yet")
        self.clock.advance(PERIOD)
        (crowd,) = of(events.Crowd, alice.take())
        self.assertEqual(
            ([m.nick for m in crowd.joined], [m.nick for m in crowd.left]),
            (["dan", "erin"], ["bob"]),
        )
        self.assertEqual((crowd.room, crowd.members), ("#lobby", 4))
        self.assertEqual(len(of(events.Crowd, dan.take())), 1)
        self.clock.advance(PERIOD)
        self.assertEqual(of(events.Crowd, alice.take()), [], "nothing new: silence")

    def test_alone_in_the_summary(self) -> None:
        """A summary of one arrival is not sent to the one who arrived."""
        alice, _ = self.user("alice")
        for nick in ("bob", "carol"):
            self.user(nick)
        self.clock.advance(PERIOD)
        alice.take()
        dan, _ = self.user("dan")
        self.clock.advance(PERIOD)
        (crowd,) = of(events.Crowd, alice.take())
        self.assertEqual([m.nick for m in crowd.joined], ["dan"])
        self.assertEqual(of(events.Crowd, dan.take()), [])

    def test_irc_client(self) -> None:
        """
        An IRC client in a big room gets a JOIN for each newcomer, from the
        summary, and never its own JOIN twice.
        """
        for nick in ("alice", "bob", "carol"):
            self.user(nick)
        irc = IRCClient(self.hub, self.clock)
        irc.register("ivy")
        irc.send("JOIN #lobby")
        self.assertIn(":ivy!ivy@irc.tchat JOIN #lobby", irc.lines())
        self.user("dan")
        self.clock.advance(PERIOD)
        joins = [line for line in irc.lines() if " JOIN " in line]
        self.assertEqual(joins, [":dan!dan@telnet.tchat JOIN #lobby"])

    def test_came_and_went(self) -> None:
        """
        Someone who comes and goes within a period is not told of; someone
        who went and came back is told as back.
        """
        alice, _ = self.user("alice")
        for nick in ("bob", "carol", "dan"):
            self.user(nick)
        self.clock.advance(PERIOD)
        alice.take()
        _, eve = self.user("eve")
        self.hub.disconnect(eve, "gone")
        self.hub.execute(self.hub.directory.users["bob"], c.Part("#lobby"))
        self.hub.execute(self.hub.directory.users["bob"], c.Join("#lobby"))
        self.clock.advance(PERIOD)
        (crowd,) = of(events.Crowd, alice.take())
        self.assertEqual(([m.nick for m in crowd.joined], crowd.left), (["bob"], ()))

    def test_shared_small_room_told_at_once(self) -> None:
        """
        A quit is told at once to those who share a small room with the
        one who quits, and in the summary of the big room.
        """
        alice_p, alice = self.user("alice")
        for nick in ("bob", "carol", "dan", "erin"):
            self.user(nick)
        self.hub.execute(alice, c.Join("#dev"))
        bob = self.hub.directory.users["bob"]
        self.hub.execute(bob, c.Join("#dev"))
        self.clock.advance(PERIOD)
        alice_p.take()
        self.hub.disconnect(bob, "gone")
        (quit,) = of(events.Presence, alice_p.take())
        self.assertEqual((quit.kind, quit.nick), ("lost", "bob"))
        self.clock.advance(PERIOD)
        (crowd,) = of(events.Crowd, alice_p.take())
        self.assertEqual([m.nick for m in crowd.left], ["bob"])

    def test_stop_tells_nothing_more(self) -> None:
        """A stopping hub leaves no summary pending, nor a timer."""
        for nick in ("alice", "bob", "carol", "dan"):
            self.user(nick)
        self.assertTrue(self.clock.getDelayedCalls())
        self.successResultOf(self.hub.stop(grace=0))
        self.assertFalse(
            [d for d in self.clock.getDelayedCalls() if d.active()],
            "no timer left",
        )

    def test_off(self) -> None:
        """C{big_room = 0}: every arrival is told at once, however many."""
        self.hub.settings.limits = LimitsConfig(silent_timeout=0, big_room=0)
        alice, _ = self.user("alice")
        for nick in ("bob", "carol", "dan", "erin"):
            self.user(nick)
        told = of(events.Presence, alice.take())
        self.assertEqual(
            [p.new_nick for p in told if p.kind == "nick"],
            ["bob", "carol", "dan", "erin"],
        )
        self.assertEqual(len([p for p in told if p.kind == "join"]), 4)


class RenderingTests(CrowdTestCase):
    """How each door shows a summary."""

    def crowd(self, joined: int, left: int = 0) -> events.Crowd:
        return events.Crowd(
            NOW,
            "#lobby",
            tuple(events.Member(f"u{n}", "web") for n in range(joined)),
            tuple(events.Member(f"x{n}", "irc") for n in range(left)),
            1012,
        )

    def test_text(self) -> None:
        """Named up to five of each, the rest counted."""
        self.assertEqual(
            crowd_text(self.crowd(7, 2)),
            "7 joined #lobby (u0, u1, u2, u3, u4 and 2 more); 2 left (x0, x1); "
            "1012 here",
        )
        self.assertEqual(crowd_text(self.crowd(0, 1)), "1 left #lobby (x0); 1012 here")

    def test_telnet(self) -> None:
        """One line, with its time, as any presence line."""
        _, viewer = self.user("viewer")
        event = self.crowd(1)
        shown = variant(event, viewer)
        assert shown is not None
        self.assertTrue(
            encode(event, shown)
            .decode()
            .endswith("*** 1 joined #lobby (u0); 1012 here\r\n")
        )

    def test_web(self) -> None:
        """A C{crowd} frame the page updates its member list from."""
        frame = json.loads(json.dumps(to_json(self.crowd(1, 1))))
        self.assertEqual(
            (frame["type"], frame["event"], frame["room"], frame["members"]),
            ("system", "crowd", "#lobby", 1012),
        )
        self.assertEqual([m["name"] for m in frame["joined"]], ["u0"])
        self.assertEqual(frame["left"], ["x0"])

    def test_irc(self) -> None:
        """A JOIN for each who came and a PART for each who went."""
        self.assertEqual(
            [line for _, line in crowd_lines(self.crowd(1, 1))],
            [
                b":u0!u0@web.tchat JOIN #lobby\r\n",
                b":x0!x0@irc.tchat PART #lobby\r\n",
            ],
        )
