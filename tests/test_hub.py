"""
Tests for L{tchat.hub.ChatFactory}: chat semantics with no transport at all.
"""

import random

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tchat import events
from tchat.commands import (
    Color,
    Join,
    Me,
    Msg,
    Nick,
    Part,
    Quit,
    Rooms,
    Say,
    SetTopic,
    ShowHelp,
    ShowMotd,
    WhoIs,
)
from tchat.config import ServerConfig
from tchat.hub import ChatFactory
from tchat.interfaces import IParticipant
from tchat.palette import PALETTE
from tests.support import FakeParticipant


class HubTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.hub = ChatFactory(
            ServerConfig(reconnect_grace=0, name="tchat", motd=("hello",)),
            self.clock,
            random.Random(1),
        )

    def connect(self, nick: str | None = None, door: str = "telnet"):
        participant = FakeParticipant(door)
        user = self.hub.connect(participant)
        if nick is not None:
            self.hub.execute(user, Nick(nick))
        return participant, user

    def people(self, *nicks: str):
        """
        Connect users with these nicks and forget their arrival chatter.
        """
        result = [self.connect(nick) for nick in nicks]
        for participant, _ in result:
            participant.take()
        return result


class ConnectTests(HubTestCase):
    """
    Arriving and leaving.
    """

    def test_fake_provides_interface(self) -> None:
        """
        The test double really provides L{IParticipant}.
        """
        self.assertTrue(verifyObject(IParticipant, FakeParticipant()))

    def test_welcome_and_lobby(self) -> None:
        """
        A new user gets a guest nick, the welcome with the MOTD, and joins
        the default room, which they are told about.
        """
        participant, user = self.connect()
        self.assertRegex(user.nick, r"^guest-[0-9a-f]{4}$")
        self.assertIs(participant.user, user)
        welcome, joined = participant.take()
        self.assertEqual(
            welcome,
            events.Welcome(
                "tchat", ("hello",), user.nick, "#lobby", user.colour, user.code
            ),
        )
        self.assertEqual(
            joined,
            events.Presence(
                self.clock.seconds(),
                "join",
                user.nick,
                "telnet",
                "#lobby",
                epoch=self.hub.directory.rooms["#lobby"].epoch,
                last_id=0,
            ),
        )
        self.assertEqual(user.current and user.current.name, "#lobby")

    def test_guest_nicks_unique(self) -> None:
        """
        Guest nicks never collide, even when the random source repeats.
        """

        class Repeating(random.Random):
            values = iter([5, 5, 5, 6])

            def getrandbits(self, k: int) -> int:
                return next(self.values)

        hub = ChatFactory(ServerConfig(reconnect_grace=0), self.clock, Repeating())
        first = hub.connect(FakeParticipant())
        second = hub.connect(FakeParticipant())
        self.assertEqual((first.nick, second.nick), ("guest-0005", "guest-0006"))

    def test_others_see_arrival_with_door(self) -> None:
        """
        Members of the lobby see a join notice naming the door.
        """
        ((alice, _),) = self.people("alice")
        _, bob = self.connect(door="web")
        (notice,) = alice.take()
        self.assertEqual(
            notice,
            events.Presence(
                self.clock.seconds(),
                "join",
                bob.nick,
                "web",
                "#lobby",
                epoch=self.hub.directory.rooms["#lobby"].epoch,
                last_id=0,
            ),
        )

    def test_lost_connection(self) -> None:
        """
        A dropped connection is announced once as lost, and frees the nick.
        """
        (alice, _), (_, bob) = self.people("alice", "bob")
        self.hub.disconnect(bob, "reset by peer")
        self.hub.disconnect(bob, "again")
        self.assertEqual(
            alice.take(),
            [events.Presence(self.clock.seconds(), "lost", "bob", "telnet")],
        )
        self.assertEqual(self.hub.users, 1)
        _, carol = self.connect("bob")
        self.assertEqual(carol.nick, "bob")

    def test_clean_close(self) -> None:
        """
        A client that closes its connection itself is shown as having quit
        with "connection closed", not as lost.
        """
        (alice, _), (_, bob) = self.people("alice", "bob")
        self.hub.disconnect(bob, "closed", clean=True)
        self.assertEqual(
            alice.take(),
            [
                events.Presence(
                    self.clock.seconds(),
                    "quit",
                    "bob",
                    "telnet",
                    reason="connection closed",
                )
            ],
        )

    def test_quit(self) -> None:
        """
        C{/quit reason}: the quitter is told goodbye and disconnected; others
        see the reason; the nick is free again.
        """
        (alice, _), (bobp, bob) = self.people("alice", "bob")
        self.hub.execute(bob, Quit("off to \x1b[2Jlunch"))
        self.assertEqual(bobp.take(), [events.Goodbye("off to lunch")])
        self.assertEqual(bobp.closed, "quit")
        self.assertEqual(
            alice.take(),
            [
                events.Presence(
                    self.clock.seconds(), "quit", "bob", "telnet", reason="off to lunch"
                )
            ],
        )
        self.hub.execute(bob, Say("ghost"))
        self.assertEqual(alice.take(), [])
        self.assertEqual(self.hub.users, 1)

    def test_leaving_told_once(self) -> None:
        """
        Someone who shares two rooms with the leaver hears it once.
        """
        (alice, a), (_, b) = self.people("alice", "bob")
        self.hub.execute(a, Join("#dev"))
        self.hub.execute(b, Join("#dev"))
        alice.take()
        self.hub.disconnect(b, "reset")
        self.assertEqual(len(alice.take()), 1)


class MessageTests(HubTestCase):
    """
    Room and private messages.
    """

    def test_room_message(self) -> None:
        """
        A line goes to everyone in the current room, sender included (doors
        decide about echo), with an increasing id and the clock's time.
        """
        (alice, a), (bob, b) = self.people("alice", "bob")
        self.hub.execute(a, Say("hi"))
        self.clock.advance(60)
        self.hub.execute(b, Me("waves"))
        epoch = self.hub.directory.rooms["#lobby"].epoch
        expected = [
            events.RoomMessage(
                "#lobby",
                1,
                1_700_000_000,
                "alice",
                "telnet",
                a.colour,
                "hi",
                epoch=epoch,
            ),
            events.RoomMessage(
                "#lobby",
                2,
                1_700_000_060,
                "bob",
                "telnet",
                b.colour,
                "waves",
                action=True,
                epoch=epoch,
            ),
        ]
        self.assertEqual(alice.take(), expected)
        self.assertEqual(bob.take(), expected)

    def test_text_cleaned_by_hub(self) -> None:
        """
        Whatever door sent it, control sequences never reach anyone.
        """
        (alice, a), (bob, _) = self.people("alice", "bob")
        self.hub.execute(a, Say("a\x1b[2Jb\u202ec"))
        (message,) = bob.take()
        assert isinstance(message, events.RoomMessage)
        self.assertEqual(message.text, "abc")

    def test_empty_after_cleaning_not_sent(self) -> None:
        """
        A message that is only control codes sends nothing.
        """
        (alice, a), (bob, _) = self.people("alice", "bob")
        self.hub.execute(a, Say("\x1b[2J"))
        self.assertEqual(bob.take(), [])

    def test_only_current_room(self) -> None:
        """
        A line goes to the current room only.
        """
        (alice, a), (bob, _) = self.people("alice", "bob")
        self.hub.execute(a, Join("#dev"))
        bob.take()
        self.hub.execute(a, Say("in dev"))
        self.assertEqual(bob.take(), [])

    def test_say_to_named_room(self) -> None:
        """
        A message may name a room the user is in without switching to it;
        the sender's tag comes back on the message.
        """
        ((alice, a), (bob, b)) = self.people("alice", "bob")
        self.hub.execute(a, Join("#dev"))
        self.hub.execute(b, Join("#dev"))
        self.hub.execute(b, Join("#lobby"))
        alice.take()
        self.hub.execute(b, Say("to dev", room="dev", client_id="c1"))
        (message,) = alice.take()
        assert isinstance(message, events.RoomMessage)
        self.assertEqual((message.room, message.client_id), ("#dev", "c1"))
        self.assertEqual(b.current and b.current.name, "#lobby")

    def test_say_to_room_not_joined(self) -> None:
        """
        Naming a room you are not in is an error; nobody there hears it.
        """
        ((alice, a), (bob, b)) = self.people("alice", "bob")
        self.hub.execute(a, Join("#dev"))
        alice.take()
        self.hub.execute(b, Say("sneaky", room="#dev"))
        self.assertEqual(
            bob.take(), [events.Error("not-in-room", "you are not in #dev")]
        )
        self.assertEqual(alice.take(), [])

    def test_ids_per_room(self) -> None:
        """
        Each room numbers its own messages from 1.
        """
        ((alice, a),) = self.people("alice")
        self.hub.execute(a, Say("one"))
        self.hub.execute(a, Join("#dev"))
        self.hub.execute(a, Say("two"))
        ids = [
            (e.room, e.id) for e in alice.take() if isinstance(e, events.RoomMessage)
        ]
        self.assertEqual(ids, [("#lobby", 1), ("#dev", 1)])

    def test_private_message(self) -> None:
        """
        C{/msg}: the receiver gets it marked incoming, the sender an echo.
        """
        (alice, a), (bob, _), (carol, _) = self.people("alice", "bob", "carol")
        self.hub.execute(a, Msg("BOB", "psst"))
        now = self.clock.seconds()
        self.assertEqual(
            bob.take(),
            [
                events.PrivateMessage(
                    now, "alice", "telnet", a.colour, "bob", "psst", False
                )
            ],
        )
        self.assertEqual(
            alice.take(),
            [
                events.PrivateMessage(
                    now, "alice", "telnet", a.colour, "bob", "psst", True
                )
            ],
        )
        self.assertEqual(carol.take(), [])

    def test_private_message_unknown_nick(self) -> None:
        """
        C{/msg} to nobody is an error naming the nick.
        """
        ((alice, a),) = self.people("alice")
        self.hub.execute(a, Msg("zed", "hi"))
        self.assertEqual(
            alice.take(), [events.Error("no-such-nick", "nobody here is called zed")]
        )

    def test_say_in_no_room(self) -> None:
        """
        After leaving every room, a line gets an error saying to join one.
        """
        ((alice, a),) = self.people("alice")
        self.hub.execute(a, Part(None))
        alice.take()
        self.hub.execute(a, Say("hello?"))
        (error,) = alice.take()
        assert isinstance(error, events.Error)
        self.assertEqual(error.code, "no-room")
        self.assertIn("/join", error.text)


class NickTests(HubTestCase):
    """
    C{/nick}.
    """

    def test_change_told_to_audience_once(self) -> None:
        """
        A nick change reaches the user and everyone sharing a room, once.
        """
        (alice, a), (bob, b), (carol, c) = self.people("alice", "bob", "carol")
        self.hub.execute(c, Part(None))
        for user in (a, b):
            self.hub.execute(user, Join("#dev"))
        for p in (alice, bob, carol):
            p.take()
        self.hub.execute(a, Nick("alicia"))
        notice = events.Presence(
            self.clock.seconds(), "nick", "alice", "telnet", new_nick="alicia"
        )
        self.assertEqual(alice.take(), [notice])
        self.assertEqual(bob.take(), [notice])
        self.assertEqual(carol.take(), [])
        self.assertEqual(a.nick, "alicia")

    def test_taken_case_insensitive(self) -> None:
        """
        Another user's nick in another case is taken.
        """
        (alice, a), (bob, b) = self.people("alice", "bob")
        self.hub.execute(b, Nick("ALICE"))
        self.assertEqual(
            bob.take(), [events.Error("nick-taken", "ALICE is taken; pick another")]
        )
        self.assertEqual(b.nick, "bob")

    def test_own_case_change(self) -> None:
        """
        A user may change the case of their own nick.
        """
        ((alice, a),) = self.people("alice")
        self.hub.execute(a, Nick("Alice"))
        self.assertEqual(a.nick, "Alice")
        self.assertEqual(len(alice.take()), 1)

    def test_same_nick_silent(self) -> None:
        """
        Taking the nick you have does nothing.
        """
        ((alice, a),) = self.people("alice")
        self.hub.execute(a, Nick("alice"))
        self.assertEqual(alice.take(), [])

    def test_reserved(self) -> None:
        """
        Reserved names and the server's own name are refused.
        """
        ((alice, a),) = self.people("alice")
        for name in ("server", "Admin", "OPERATOR", "system", "tchat", "TChat"):
            self.hub.execute(a, Nick(name))
            (error,) = alice.take()
            assert isinstance(error, events.Error)
            self.assertEqual(error.code, "nick-reserved", name)
        self.assertEqual(a.nick, "alice")

    def test_invalid(self) -> None:
        """
        A malformed nick is refused with the rule.
        """
        ((alice, a),) = self.people("alice")
        self.hub.execute(a, Nick("x" * 25))
        (error,) = alice.take()
        assert isinstance(error, events.Error)
        self.assertEqual(error.code, "nick-invalid")
        self.assertIn("24", error.text)


class RoomTests(HubTestCase):
    """
    C{/join}, C{/part}, C{/rooms}, C{/who}, C{/topic}.
    """

    def test_join_creates_and_switches(self) -> None:
        """
        Joining creates the room, makes it current, and tells its members.
        """
        (alice, a), (bob, b) = self.people("alice", "bob")
        self.hub.execute(a, Join("dev"))
        self.hub.execute(b, Join("#DEV"))
        now = self.clock.seconds()
        epoch = self.hub.directory.rooms["#dev"].epoch
        self.assertEqual(
            alice.take(),
            [
                events.Presence(
                    now, "join", "alice", "telnet", "#dev", epoch=epoch, last_id=0
                ),
                events.Presence(
                    now, "join", "bob", "telnet", "#dev", epoch=epoch, last_id=0
                ),
            ],
        )
        self.assertEqual(b.current and b.current.name, "#dev")
        self.assertEqual([r.name for r in b.rooms], ["#lobby", "#dev"])

    def test_join_again_switches(self) -> None:
        """
        Joining a room you are in makes it current without a notice to others.
        """
        (alice, a), (bob, b) = self.people("alice", "bob")
        self.hub.execute(a, Join("#dev"))
        self.hub.execute(a, Join("#lobby"))
        bob.take()
        self.assertEqual(a.current and a.current.name, "#lobby")
        self.assertEqual(alice.take()[-1], events.Status("now talking in #lobby"))
        self.assertEqual(bob.take(), [])

    def test_join_invalid(self) -> None:
        """
        A bad room name is refused with the rule.
        """
        ((alice, a),) = self.people("alice")
        self.hub.execute(a, Join("#no way"))
        (error,) = alice.take()
        assert isinstance(error, events.Error)
        self.assertEqual(error.code, "room-invalid")

    def test_part_current(self) -> None:
        """
        Leaving the current room tells its members and falls back to the
        room joined last.
        """
        (alice, a), (bob, b) = self.people("alice", "bob")
        self.hub.execute(a, Join("#dev"))
        self.hub.execute(b, Join("#dev"))
        alice.take()
        self.hub.execute(b, Part(None))
        now = self.clock.seconds()
        self.assertEqual(
            alice.take(), [events.Presence(now, "part", "bob", "telnet", "#dev")]
        )
        self.assertEqual(b.current and b.current.name, "#lobby")
        self.assertEqual(bob.take()[-1], events.Status("now talking in #lobby"))

    def test_part_not_member(self) -> None:
        """
        Leaving a room you are not in is an error.
        """
        (alice, a), (bob, b) = self.people("alice", "bob")
        self.hub.execute(a, Join("#dev"))
        self.hub.execute(b, Part("#dev"))
        self.assertEqual(
            bob.take()[-1], events.Error("not-in-room", "you are not in #dev")
        )

    def test_part_unknown(self) -> None:
        """
        Leaving a room that does not exist is an error.
        """
        ((alice, a),) = self.people("alice")
        self.hub.execute(a, Part("#nowhere"))
        self.assertEqual(
            alice.take(), [events.Error("no-such-room", "there is no room #nowhere")]
        )

    def test_empty_rooms_vanish_but_lobby_stays(self) -> None:
        """
        An empty room is gone from C{/rooms}; the default room never is.
        """
        ((alice, a),) = self.people("alice")
        self.hub.execute(a, Join("#dev"))
        self.hub.execute(a, Part("#dev"))
        self.hub.execute(a, Part("#lobby"))
        alice.take()
        self.hub.execute(a, Rooms())
        self.assertEqual(
            alice.take(), [events.RoomList((events.RoomInfo("#lobby", 0, None),))]
        )

    def test_rooms_and_who(self) -> None:
        """
        C{/rooms} counts members and shows topics; C{/who} lists members with
        their doors in joining order.
        """
        ((alice, a),) = self.people("alice")
        _, web = self.connect("bob", door="web")
        self.hub.execute(a, Join("#dev"))
        self.hub.execute(a, SetTopic("shipping"))
        alice.take()
        self.hub.execute(a, Rooms())
        self.hub.execute(a, WhoIs("#lobby"))
        self.hub.execute(a, WhoIs(None))
        self.assertEqual(
            alice.take(),
            [
                events.RoomList(
                    (
                        events.RoomInfo("#dev", 1, "shipping"),
                        events.RoomInfo("#lobby", 2, None),
                    )
                ),
                events.Who(
                    "#lobby",
                    (events.Member("alice", "telnet"), events.Member("bob", "web")),
                ),
                events.Who("#dev", (events.Member("alice", "telnet"),)),
            ],
        )

    def test_topic(self) -> None:
        """
        Setting a topic tells the room; asking shows it and who set it.
        """
        (alice, a), (bob, b) = self.people("alice", "bob")
        self.hub.execute(b, SetTopic(None))
        self.hub.execute(a, SetTopic("be \x1b[5mkind"))
        self.hub.execute(b, SetTopic(None))
        self.assertEqual(
            bob.take(),
            [
                events.Topic("#lobby", None, None),
                events.TopicChanged(self.clock.seconds(), "#lobby", "alice", "be kind"),
                events.Topic("#lobby", "be kind", "alice"),
            ],
        )


class MiscCommandTests(HubTestCase):
    """
    C{/motd}, C{/help}, C{/color}, and what every command is checked for.
    """

    def test_too_long_from_any_door(self) -> None:
        """
        A command carrying a string past its maximum is refused whatever
        door built it (a typed web frame, here), with the request's tag;
        nobody else hears of it.
        """
        (alice, a), (bob, _) = self.people("alice", "bob")
        self.hub.execute(a, Me("waves " * 1000), "c-1")
        self.hub.execute(a, SetTopic("t" * 5000), "c-2")
        self.assertEqual(
            alice.take(),
            [
                events.Error(
                    "bad-arguments", "the text is longer than 4096 characters", "c-1"
                ),
                events.Error(
                    "bad-arguments", "the text is longer than 4096 characters", "c-2"
                ),
            ],
        )
        self.assertEqual(bob.take(), [])

    def test_motd(self) -> None:
        """
        C{/motd} shows the configured message.
        """
        ((alice, a),) = self.people("alice")
        self.hub.execute(a, ShowMotd())
        self.assertEqual(alice.take(), [events.Motd(("hello",))])

    def test_help_lists_every_command(self) -> None:
        """
        C{/help} has a usage and description for each command.
        """
        ((alice, a),) = self.people("alice")
        self.hub.execute(a, ShowHelp())
        (help,) = alice.take()
        assert isinstance(help, events.Help)
        usages = " ".join(u for u, _ in help.commands)
        for name in (
            "nick",
            "join",
            "part",
            "rooms",
            "who",
            "topic",
            "me",
            "msg",
            "motd",
            "help",
            "quit",
            "color",
        ):
            self.assertIn(f"/{name}", usages)

    def test_colour(self) -> None:
        """
        C{/color NAME} picks from the palette; C{off}/C{on} toggle showing
        colours; an unknown name lists the choices.
        """
        ((alice, a),) = self.people("alice")
        self.hub.execute(a, Color("blue"))
        self.assertEqual(a.colour, PALETTE["blue"])
        self.hub.execute(a, Color("off"))
        self.assertFalse(a.show_colours)
        self.hub.execute(a, Color("on"))
        self.assertTrue(a.show_colours)
        self.hub.execute(a, Color("#ff0000"))
        *_, error = alice.take()
        assert isinstance(error, events.Error)
        self.assertIn("bright-cyan", error.text)

    def test_colour_stable(self) -> None:
        """
        A user's colour survives a nick change.
        """
        ((alice, a),) = self.people("alice")
        before = a.colour
        self.hub.execute(a, Nick("zzzzzz"))
        self.assertEqual(a.colour, before)


class FanOutTests(HubTestCase):
    """
    One event, many recipients.
    """

    def test_one_renderings_per_event(self) -> None:
        """
        Every recipient of one message shares the same rendering cache, so a
        door encodes it once, not once per recipient.
        """
        people = self.people(*[f"u{i}" for i in range(20)])
        self.hub.execute(people[0][1], Say("hi"))
        caches = {id(p.renderings[-1]) for p, _ in people}
        self.assertEqual(len(caches), 1)

    def test_failing_recipient_does_not_stop_others(self) -> None:
        """
        A door that raises while delivering costs nobody else the message,
        and the failure is logged.
        """
        (alice, a), (bob, b), (carol, _) = self.people("alice", "bob", "carol")

        def explode(event: object, renderings: object) -> None:
            raise RuntimeError("door bug")

        # The hub calls the door's deliver as it was bound at connect.
        b.deliver = explode
        self.hub.execute(a, Say("still here"))
        self.assertEqual(len(carol.take()), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
