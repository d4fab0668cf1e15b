"""
Tests for L{tchat.continuity} and the quiet arrival of new connections
(L{tchat.presence.Presence.settle}): a connection that comes back within
the reconnect grace period is a continuation nobody else notices.
"""

import random
import time

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tchat import commands as c
from tchat import events
from tchat.config import HistoryConfig, LimitsConfig, ServerConfig
from tchat.continuity import MISSED_MOST
from tchat.history import MemoryStore
from tchat.hub import ChatFactory
from tchat.model import User
from tchat.palette import PALETTE, hue
from tchat.presence import QUIET_ARRIVAL
from tchat.telnet import TelnetFactory
from tests.support import (
    FakeParticipant,
    FakePasswords,
    TelnetClient,
    of,
    started_hub,
)

GRACE = 60.0
MOTD = ("be kind",)


class ContinuityTestCase(SynchronousTestCase):
    """A hub with the reconnect grace on, and history in memory."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        history = HistoryConfig(resume_ttl=3600, keep=2000)
        self.store = MemoryStore(history)
        self.hub = started_hub(
            self,
            self.clock,
            server=ServerConfig(name="tchat", motd=MOTD, reconnect_grace=GRACE),
            rng=random.Random(3),
            history=history,
            store=self.store,
            passwords=FakePasswords(),
            limits=LimitsConfig(
                silent_timeout=0,
                messages_per_second=1e6,
                message_burst=10_000,
                room_messages_per_second=1e6,
                room_message_burst=10_000,
            ),
        )

    def arrive(self, *first: c.Command) -> tuple[FakeParticipant, User]:
        """A new connection, which sends C{first} (by default: settles)."""
        participant = FakeParticipant("telnet", "192.0.2.1")
        user = self.hub.connect(participant)
        for command in first or (c.Settle(),):
            self.hub.execute(user, command)
        return participant, user

    def people(self, *nicks: str) -> list[tuple[FakeParticipant, User]]:
        """
        Everyone in C{nicks}, settled, in the default room; what they were
        told so far forgotten.
        """
        found = [self.arrive(c.Nick(nick), c.Settle()) for nick in nicks]
        for participant, _ in found:
            participant.take()
        return found

    def presence(self, participant: FakeParticipant) -> list[tuple[str, str]]:
        """The presence lines C{participant} was told, as (kind, nick)."""
        return [(p.kind, p.nick) for p in of(events.Presence, participant.take())]


class QuietArrivalTests(ContinuityTestCase):
    """
    A new connection is announced once it shows it is not carrying on a
    session: at its first command other than a resume or a login, at a
    page's hello, or after L{QUIET_ARRIVAL} seconds of silence.
    """

    def test_silent_then_announced(self) -> None:
        """
        Nobody sees a new connection come until it settles; it sees its own
        join at once, the MOTD once settled; /who leaves it out till then.
        """
        ((bob_p, bob),) = self.people("bob")
        participant, guest = self.arrive(c.Nick("carol"))
        told = participant.take()
        self.assertEqual(of(events.Welcome, told)[0].motd, ())
        self.assertIn("join", [p.kind for p in of(events.Presence, told)])
        self.assertEqual(bob_p.take(), [])
        self.hub.execute(bob, c.WhoIs(None))
        (who,) = of(events.Who, bob_p.take())
        self.assertEqual([m.nick for m in who.members], ["bob"])
        self.clock.advance(QUIET_ARRIVAL)
        self.assertEqual(self.presence(bob_p), [("join", "carol")])
        self.assertEqual(of(events.Motd, participant.take()), [events.Motd(MOTD)])

    def test_first_line_settles(self) -> None:
        """A first line that is not about who one is announces them first."""
        ((bob_p, _),) = self.people("bob")
        participant, guest = self.arrive(c.Say("hi", None))
        told = bob_p.take()
        self.assertEqual([type(e).__name__ for e in told], ["Presence", "RoomMessage"])
        self.assertEqual(of(events.Motd, participant.take()), [events.Motd(MOTD)])
        self.clock.advance(QUIET_ARRIVAL)
        self.assertEqual(bob_p.take(), [])

    def test_leaving_unannounced_is_silent(self) -> None:
        """A connection that goes before it settles was never seen, and is not."""
        ((bob_p, _),) = self.people("bob")
        _, guest = self.arrive(c.Nick("carol"))
        self.hub.disconnect(guest, "gone")
        self.clock.advance(GRACE + QUIET_ARRIVAL)
        self.assertEqual(bob_p.take(), [])
        self.assertIsNone(self.hub.directory.user("carol"))

    def test_colours_differ_in_the_room(self) -> None:
        """
        Newcomers to a room get colours nobody there has, as long as the
        palette has them.
        """
        users = [self.arrive()[1] for _ in PALETTE]
        self.assertEqual(len({u.colour for u in users}), len(PALETTE))

    def test_first_colours_look_apart(self) -> None:
        """
        The first few people in a room get hues far apart, not red beside
        bright red.
        """
        hues = [hue(self.arrive()[1].colour) for _ in range(6)]
        gaps = [
            min(abs(a - b), 360 - abs(a - b))
            for i, a in enumerate(hues)
            for b in hues[i + 1 :]
        ]
        self.assertGreaterEqual(min(gaps), 30, hues)


class AccountColourTests(ContinuityTestCase):
    """A registered user's colour is their account's, at every login."""

    def test_same_colour_at_every_login(self) -> None:
        ((_, alice),) = self.people("alice")
        self.hub.execute(alice, c.Register("correct horse"))
        self.hub.execute(alice, c.Quit(None))
        colours = set()
        for _ in range(3):
            # Others around take other colours first.
            self.arrive()
            _, again = self.arrive(c.Login("alice", "correct horse"))
            colours.add(again.colour)
            self.hub.execute(again, c.Quit(None))
        self.assertEqual(len(colours), 1)


class ContinuationTests(ContinuityTestCase):
    """
    A connection lost without /quit keeps its user for the grace period;
    a new connection carrying on its session takes it over unnoticed.
    """

    def test_resume_within_grace_is_invisible(self) -> None:
        """
        carol's connection breaks; bob talks, and messages her; she comes
        back with her code: bob sees nothing at all, and she is who she was
        (nick, colour, rooms, current room) and gets exactly what she
        missed, in order, without the MOTD.
        """
        (bob_p, bob), (carol_p, carol) = self.people("bob", "carol")
        self.hub.execute(carol, c.Join("#dev"))
        self.hub.execute(bob, c.Join("#dev"))
        self.hub.execute(carol, c.Join("#lobby"))
        bob_p.take()
        colour, code = carol.colour, carol.code
        self.hub.disconnect(carol, "connection reset")
        self.hub.execute(bob, c.Say("one", "#dev"))
        self.hub.execute(bob, c.Msg("carol", "are you there?"))
        self.hub.execute(bob, c.Say("two", "#lobby"))
        self.clock.advance(GRACE - 1)
        back_p, fresh = self.arrive(c.Resume(code))
        self.assertFalse(fresh.connected)
        self.assertIs(back_p.user, carol)
        told = back_p.take()
        self.assertEqual(of(events.Motd, told), [])
        continued = of(events.Continued, told)[0]
        self.assertEqual(
            (continued.nick, continued.colour, continued.rooms, continued.current),
            ("carol", colour, ("#lobby", "#dev"), "#lobby"),
        )
        after = told[told.index(continued) + 1 :]
        self.assertEqual(continued.missed, len(after))
        self.assertEqual(
            [getattr(e, "text", None) for e in after],
            ["one", "are you there?", "two"],
        )
        self.assertEqual(self.presence(bob_p), [])
        self.clock.advance(GRACE)
        self.assertEqual(self.presence(bob_p), [])
        self.assertTrue(carol.connected)
        self.hub.execute(bob, c.Say("still here?", "#lobby"))
        self.assertEqual(of(events.RoomMessage, back_p.take())[0].text, "still here?")

    def test_grace_ends_with_one_line(self) -> None:
        """Nobody came back: the others see one "lost connection", at the end."""
        (bob_p, _), (_, carol) = self.people("bob", "carol")
        self.hub.disconnect(carol, "reset")
        self.clock.advance(GRACE - 1)
        self.assertEqual(bob_p.take(), [])
        self.assertIs(self.hub.directory.user("carol"), carol)
        self.clock.advance(1)
        self.assertEqual(self.presence(bob_p), [("lost", "carol")])
        self.assertIsNone(self.hub.directory.user("carol"))

    def test_closed_connection_quits_at_the_end(self) -> None:
        """A client that closed its connection (a tab closed) is seen quit then."""
        (bob_p, _), (_, carol) = self.people("bob", "carol")
        self.hub.disconnect(carol, "closed", clean=True)
        self.clock.advance(GRACE)
        (quit,) = of(events.Presence, bob_p.take())
        self.assertEqual((quit.kind, quit.reason), ("quit", "connection closed"))

    def test_quit_is_at_once(self) -> None:
        """/quit is a departure: no grace."""
        (bob_p, _), (_, carol) = self.people("bob", "carol")
        self.hub.execute(carol, c.Quit("bye"))
        self.assertEqual(self.presence(bob_p), [("quit", "carol")])

    def test_old_connection_still_open(self) -> None:
        """
        A second connection carrying on a session whose connection is still
        open (another tab): the old one is told why and closed, and nothing
        it does afterwards touches the session.
        """
        (bob_p, _), (old_p, carol) = self.people("bob", "carol")
        new_p, _ = self.arrive(c.Resume(carol.code))
        self.assertEqual(
            old_p.take(),
            [events.Goodbye("resumed by a new connection", elsewhere=True)],
        )
        self.assertEqual(old_p.closed, "resumed by a new connection")
        self.assertIsNone(old_p.user)
        self.assertIs(new_p.user, carol)
        self.assertEqual(bob_p.take(), [])

    def test_login_carries_on_the_account(self) -> None:
        """
        A new tab logging in (its saved token) to an account whose session
        lingers carries that session on, still logged in: nobody sees it.
        """
        (bob_p, bob), (alice_p, alice) = self.people("bob", "alice")
        self.hub.execute(alice, c.Register("correct horse"))
        alice_p.take()
        bob_p.take()
        self.hub.disconnect(alice, "reset")
        self.hub.execute(bob, c.Msg("alice", "hello"))
        tab_p, _ = self.arrive(c.Login("alice", "correct horse"))
        self.assertIs(tab_p.user, alice)
        told = tab_p.take()
        (continued,) = of(events.Continued, told)
        self.assertEqual(continued.account, "alice")
        self.assertEqual([m.text for m in of(events.PrivateMessage, told)], ["hello"])
        self.assertTrue(alice.registered)
        self.assertEqual(self.presence(bob_p), [])

    def test_too_much_missed_comes_from_history(self) -> None:
        """
        Past what is kept for an absent user, what was said in their rooms
        is read back from history: still every message, once.
        """
        (bob_p, bob), (_, carol) = self.people("bob", "carol")
        self.hub.disconnect(carol, "reset")
        self.hub.execute(bob, c.Msg("carol", "psst"))
        count = MISSED_MOST + 5
        for n in range(count):
            self.hub.execute(bob, c.Say(f"m{n}", None))
        back_p, _ = self.arrive(c.Resume(carol.code))
        told = back_p.take()
        (continued,) = of(events.Continued, told)
        told = told[told.index(continued) :]
        self.assertEqual([m.text for m in of(events.PrivateMessage, told)], ["psst"])
        shown = [m.text for m in of(events.RoomMessage, told)] + [
            m.text for h in of(events.History, told) for m in h.messages
        ]
        self.assertEqual(shown, [f"m{n}" for n in range(count)])

    def test_carried_on_before_anyone_was_told(self) -> None:
        """
        A session taken over before it was announced is announced once,
        when it settles, as any new connection is.
        """
        ((bob_p, _),) = self.people("bob")
        _, first = self.arrive(c.Nick("carol"))
        second_p, _ = self.arrive(c.Resume(first.code))
        self.assertIs(second_p.user, first)
        self.assertEqual(self.presence(bob_p), [])
        self.clock.advance(QUIET_ARRIVAL)
        self.assertEqual(self.presence(bob_p), [("join", "carol")])

    def test_lingering_bounded_per_address(self) -> None:
        """
        Connecting, talking and dropping again and again from one address
        leaves no more people lingering than it may have connected: past
        that, the one who dropped first is seen go at once.
        """
        ((bob_p, _),) = self.people("bob")
        most = self.hub.settings.limits.per_address
        dropped = []
        for n in range(most + 1):
            _, user = self.arrive(c.Nick(f"drop{n}"), c.Settle())
            self.hub.disconnect(user, "reset")
            dropped.append(user)
        gone = [(p.kind, p.nick) for p in of(events.Presence, bob_p.take())]
        self.assertEqual(gone[-1], ("lost", "drop0"))
        self.assertEqual([u.connected for u in dropped].count(True), most)

    def test_stop_with_someone_away(self) -> None:
        """A stop does not wait for a connection that is already gone."""
        ((_, carol),) = self.people("carol")
        self.hub.disconnect(carol, "reset")
        self.successResultOf(self.hub.stop(grace=5))
        self.assertFalse(carol.connected)

    def test_grace_off(self) -> None:
        """With the grace at 0, a drop is a departure at once."""
        hub = ChatFactory(ServerConfig(reconnect_grace=0), self.clock, random.Random(1))
        self.successResultOf(hub.start())
        bob_p = FakeParticipant()
        hub.connect(bob_p)
        carol = hub.connect(FakeParticipant())
        bob_p.take()
        hub.disconnect(carol, "reset")
        self.assertEqual([p.kind for p in of(events.Presence, bob_p.take())], ["lost"])


class TelnetContinuationTests(SynchronousTestCase):
    """The same through the telnet door, as its users see it."""

    def test_resume_as_first_line(self) -> None:
        clock = Clock()
        clock.advance(1_700_000_000)
        hub = ChatFactory(
            ServerConfig(name="Hub", motd=("line one",)), clock, random.Random(2)
        )
        factory = TelnetFactory(hub)
        stamp = time.strftime("[%H:%M]", time.localtime(clock.seconds()))
        bob = TelnetClient(factory)
        bob.send(b"/nick bob\r\n/color off\r\n")
        carol = TelnetClient(factory)
        carol.send(b"/nick carol\r\n")
        clock.advance(QUIET_ARRIVAL)
        code = carol.user.code
        bob.take()
        carol.transport.loseConnection()
        carol.protocol.connectionLost(None)
        bob.send(b"are you there?\r\n")
        back = TelnetClient(factory)
        greeting = back.lines()
        self.assertNotIn("  line one", greeting)
        back.send(f"/resume {code}\r\n".encode())
        self.assertEqual(
            back.lines(),
            [
                "*** Welcome back, carol: you are in #lobby. "
                "Here is what you missed (1):",
                f"{stamp} <\x1b[{bob.user.colour.ansi}mbob\x1b[0m> are you there?",
            ],
        )
        clock.advance(GRACE * 2)
        self.assertEqual(bob.lines(), [])
        back.send(b"I am back\r\n")
        stamp = time.strftime("[%H:%M]", time.localtime(clock.seconds()))
        self.assertEqual(bob.lines(), [f"{stamp} <carol> I am back"])
