"""
Tests for L{tchat.presence.Presence}, driven directly through
C{hub.concerns.presence}: arriving, the ways out, nicks and colours, the
outage notices, and everyone's departure when the server stops.

The façade's end-to-end tests of the same paths are in C{tests/test_hub.py}
and C{tests/test_operations.py}; these check each method of the concern on
its own, with the rest of the chat played by a L{FakeChat} or by a
backplane whose nick claims the test answers by hand.
"""

import random
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tchat import events
from tchat.backplane import LocalBackplane
from tchat.commands import Join, Say
from tchat.config import HistoryConfig, LimitsConfig, ServerConfig
from tchat.history import Ban, MemoryStore, Session
from tchat.hub import ChatFactory
from tchat.model import User
from tchat.naming import Naming
from tchat.palette import PALETTE
from tchat.presence import BACK, OUTAGE, Presence
from tchat.seam import IBackplane, UnreachableError
from tchat.text import nick_key
from tests.support import FakeChat, FakeParticipant, of, started_hub

NOW = 1_700_000_000

SHUTDOWN = events.Shutdown("the server is shutting down")


class ScriptedRandom(random.Random):
    """
    Draws the given numbers first (guest nicks C{guest-0005}, ...), then
    as a seeded generator does.
    """

    def __init__(self, *draws: int) -> None:
        super().__init__(7)
        self._draws = list(draws)

    def getrandbits(self, k: int) -> int:
        if self._draws:
            return self._draws.pop(0)
        return super().getrandbits(k)


class ClaimsByHand(LocalBackplane):
    """
    A node alone whose nick claims, once C{by_hand} is set, wait for the
    test to answer them.

    @ivar claims: Each claim asked by hand: the nick and its answer.
    @ivar released: The nicks freed.
    """

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self.by_hand = False
        self.claims: list[tuple[str, Deferred[bool]]] = []
        self.released: list[str] = []

    def claim(
        self, user: User, nick: str, takeover: bool = False, force: bool = False
    ) -> Deferred[bool]:
        if not self.by_hand:
            return super().claim(user, nick, takeover)
        answer: Deferred[bool] = Deferred()
        self.claims.append((nick, answer))
        return answer

    def release(self, user: User, nick: str) -> None:
        self.released.append(nick)


class PresenceTestCase(SynchronousTestCase):
    """
    A hub on a L{Clock} whose backplane is a L{ClaimsByHand}.
    """

    history = HistoryConfig(enabled=False)

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.participants: list[FakeParticipant] = []
        self.store = MemoryStore(self.history)
        self.node = ClaimsByHand(self.store)
        self.hub = self.make_hub(backplane=self.node)

    def make_hub(
        self,
        backplane: IBackplane | None = None,
        rng: random.Random | None = None,
        server: ServerConfig | None = None,
        history: HistoryConfig | None = None,
        **limits: Any,
    ) -> ChatFactory:
        limits.setdefault("silent_timeout", 0)
        return started_hub(
            self,
            self.clock,
            server=server,
            rng=rng,
            history=history if history is not None else self.history,
            store=self.store,
            limits=LimitsConfig(**limits),
            backplane=backplane,
        )

    @property
    def presence(self) -> Presence:
        return self.hub.concerns.presence

    @property
    def naming(self) -> Naming:
        return self.hub.concerns.naming

    def arrive(
        self,
        door: str = "telnet",
        address: str | None = "192.0.2.1",
        hub: ChatFactory | None = None,
    ) -> tuple[FakeParticipant, User]:
        """A newcomer, with everything they were told."""
        hub = hub if hub is not None else self.hub
        participant = FakeParticipant(door, address)
        self.participants.append(participant)
        return participant, hub.connect(participant)

    def connect(
        self, nick: str, hub: ChatFactory | None = None
    ) -> tuple[FakeParticipant, User]:
        """
        A user called C{nick}, in the lobby; what everyone was told so far
        is forgotten.
        """
        hub = hub if hub is not None else self.hub
        participant, user = self.arrive(hub=hub)
        hub.concerns.presence.rename(user, nick)
        self.forget()
        return participant, user

    def forget(self) -> None:
        """Forget what every user was told so far."""
        for participant in self.participants:
            participant.take()

    def session(self, user: User) -> Session:
        found = self.successResultOf(self.store.session(user.code, 0))
        assert found is not None
        return found


class ArriveTests(PresenceTestCase):
    """
    L{Presence.arrive}: a user comes in through a door.
    """

    def test_welcome(self) -> None:
        """
        A newcomer is welcomed under a guest nick with their resume code,
        then joins the default room, where the members see them arrive.
        """
        alice_p, _ = self.connect("alice")
        participant, user = self.arrive()
        self.assertRegex(user.nick, r"^guest-[0-9a-f]{4}$")
        self.assertTrue(user.code)
        welcome, joined = participant.take()
        self.assertEqual(
            welcome,
            events.Welcome(
                "tchat",
                ServerConfig().motd,
                user.nick,
                "#lobby",
                user.colour,
                user.code,
            ),
        )
        self.assertEqual(alice_p.take(), [joined])
        self.assertIs(self.hub.directory.codes[user.code], user)
        self.assertFalse(user.named)

    def test_no_resume_code_without_ttl(self) -> None:
        """
        With C{resume_ttl = 0} the welcome offers no resume code.
        """
        self.hub = self.make_hub(history=HistoryConfig(enabled=False, resume_ttl=0))
        participant, _ = self.arrive()
        (welcome,) = of(events.Welcome, participant.take())
        self.assertEqual(welcome.resume_code, "")

    def test_onion_address(self) -> None:
        """
        Onion users are shown the onion address once it is published;
        users of other doors never are.
        """
        early_p, _ = self.arrive("onion", None)
        self.presence.onion_address = "abcdef.onion"
        onion_p, _ = self.arrive("onion", None)
        web_p, _ = self.arrive("web")
        onions = [
            of(events.Welcome, p.take())[0].onion for p in (early_p, onion_p, web_p)
        ]
        self.assertEqual(onions, ["", "abcdef.onion", ""])

    def test_closing(self) -> None:
        """
        While the server stops, a newcomer is told and closed as "going
        away", never joins the chat, and nobody sees them.
        """
        alice_p, _ = self.connect("alice")
        self.presence.closing = True
        participant, user = self.arrive()
        self.assertEqual(participant.take(), [SHUTDOWN])
        self.assertEqual(
            (participant.closed, participant.close_why),
            ("server shutting down", "going-away"),
        )
        self.assertFalse(user.connected)
        self.assertNotIn(user.key, self.hub.directory.users)
        self.assertEqual(alice_p.take(), [])

    def test_banned(self) -> None:
        """
        A banned address is told why and for how long and closed by policy;
        nobody sees it arrive.  A neighbour outside the ban comes in.
        """
        alice_p, _ = self.connect("alice")
        self.hub.concerns.bans.add(
            Ban(1, "address", "198.51.100.0/24", "spam", "root", NOW, NOW + 3600)
        )
        participant, user = self.arrive(address="198.51.100.7")
        self.assertEqual(
            participant.take(),
            [events.Error("banned", "you are banned from tchat for 1h: spam")],
        )
        self.assertEqual(
            (participant.closed, participant.close_why), ("banned", "policy")
        )
        self.assertFalse(user.connected)
        self.assertNotIn(user.key, self.hub.directory.users)
        self.assertEqual(alice_p.take(), [])
        self.assertEqual(self.hub.metrics.dropped.get("banned"), 1)
        _, other = self.arrive(address="198.51.101.7")
        self.assertTrue(other.connected)

    def test_ban_lapsed(self) -> None:
        """
        Once a ban's time is up, the address comes in again.
        """
        self.hub.concerns.bans.add(
            Ban(1, "address", "198.51.100.7/32", "", "root", NOW, NOW + 60)
        )
        self.clock.advance(60)
        participant, user = self.arrive(address="198.51.100.7")
        self.assertTrue(user.connected)
        self.assertEqual(of(events.Error, participant.take()), [])

    def test_overflow_when_lobby_full(self) -> None:
        """
        A newcomer who finds the default room full (C{max_users_per_room})
        lands in its first overflow room with room, made as needed, is
        welcomed there and told why; they can talk there, and no room
        grows past the cap.  An operator still gets into a full room.
        """
        self.hub = self.make_hub(max_users_per_room=1)
        alice_p, alice = self.connect("alice")
        second_p, second = self.arrive()
        third_p, third = self.arrive()
        welcome = of(events.Welcome, second_p.take())
        self.assertEqual([w.room for w in welcome], ["#lobby-2"])
        self.assertEqual(second.current and second.current.name, "#lobby-2")
        self.assertEqual(third.current and third.current.name, "#lobby-3")
        (told,) = of(events.Status, third_p.take())
        self.assertEqual(
            told.text,
            "#lobby is full (1 users): you are in #lobby-3, its overflow; "
            "/join #lobby later",
        )
        self.assertEqual(of(events.Presence, alice_p.take()), [])
        self.hub.execute(third, Say("heard?"))
        self.assertEqual(len(of(events.RoomMessage, third_p.take())), 1)
        self.assertEqual(
            [len(r.members) for r in self.hub.directory.rooms.values()], [1, 1, 1]
        )
        self.hub.execute(second, Join("#lobby"))
        self.assertEqual(
            [e.code for e in of(events.Error, second_p.take())], ["room-full"]
        )


class GuestClaimTests(PresenceTestCase):
    """
    L{Presence.claim_guest}: a guest nick must be free in the whole chat.
    """

    def test_drawn_on_another_node(self) -> None:
        """
        A guest nick another node's user has is drawn again before the
        newcomer joins the default room, without an error: they are shown
        the rename, and each user keeps their own nick.
        """
        chat = FakeChat()
        other = self.make_hub(chat.node("b"), ScriptedRandom(5))
        self.hub = self.make_hub(chat.node("a"), ScriptedRandom(5, 6))
        _, there = self.arrive(hub=other)
        participant, user = self.arrive()
        self.assertEqual((there.nick, user.nick), ("guest-0005", "guest-0006"))
        welcome, renamed, joined = participant.take()
        assert isinstance(welcome, events.Welcome)
        assert isinstance(joined, events.Presence)
        self.assertEqual(welcome.nick, "guest-0005")
        self.assertEqual(
            renamed,
            events.Presence(NOW, "nick", "guest-0005", "telnet", new_nick="guest-0006"),
        )
        self.assertEqual((joined.kind, joined.nick), ("join", "guest-0006"))
        self.assertFalse(user.named)
        self.assertEqual(chat.claims[nick_key("guest-0006")], ("a", user.code))

    def test_drawn_again_until_free(self) -> None:
        """
        Each guest nick refused is replaced by another, claimed in turn,
        until one is free.
        """
        self.hub = self.make_hub(self.node, ScriptedRandom(1, 2, 3))
        self.node.by_hand = True
        _, user = self.arrive()
        self.node.claims[0][1].callback(False)
        self.node.claims[1][1].callback(False)
        self.node.claims[2][1].callback(True)
        self.assertEqual(
            [nick for nick, _ in self.node.claims],
            ["guest-0001", "guest-0002", "guest-0003"],
        )
        self.assertEqual(user.nick, "guest-0003")

    def test_named_meanwhile(self) -> None:
        """
        A user who took a nick of their own before their guest nick was
        refused keeps it.
        """
        self.node.by_hand = True
        participant, user = self.arrive()
        self.presence.rename(user, "alice")
        participant.take()
        self.node.claims[0][1].callback(False)
        self.assertEqual(user.nick, "alice")
        self.assertEqual(len(self.node.claims), 1)
        self.assertEqual(participant.take(), [])

    def test_gone_meanwhile(self) -> None:
        """
        A guest who left before the claim was refused draws nothing more.
        """
        self.node.by_hand = True
        _, user = self.arrive()
        self.presence.disconnect(user, "reset")
        self.node.claims[0][1].callback(False)
        self.assertEqual(len(self.node.claims), 1)

    def test_claim_fails(self) -> None:
        """
        A guest claim that cannot be checked leaves the guest nick as it is
        and tells the user nothing.
        """
        self.node.by_hand = True
        participant, user = self.arrive()
        nick = user.nick
        participant.take()
        self.node.claims[0][1].errback(UnreachableError("down"))
        self.assertEqual((user.nick, participant.take()), (nick, []))


class LeaveTests(PresenceTestCase):
    """
    L{Presence.leave} and the ways out built on it.
    """

    def setUp(self) -> None:
        super().setUp()
        self.alice_p, self.alice = self.connect("alice")
        self.bob_p, self.bob = self.connect("bob")
        self.carol_p, self.carol = self.connect("carol")
        rooms = self.hub.concerns.rooms
        rooms.join_named(self.alice, "#dev")
        rooms.join_named(self.bob, "#dev")
        self.forget()

    def gone(self, nick: str, kind: events.PresenceKind, reason: str | None) -> Any:
        return events.Presence(NOW, kind, nick, "telnet", reason=reason)

    def test_leave(self) -> None:
        """
        Whoever shares a room with the leaver hears it once, with the
        reason; the leaver is out of every room and their nick is free.
        """
        self.presence.leave(self.bob, "quit", "bye")
        notice = self.gone("bob", "quit", "bye")
        self.assertEqual(self.alice_p.take(), [notice])
        self.assertEqual(self.carol_p.take(), [notice])
        self.assertEqual(self.bob_p.take(), [])
        self.assertFalse(self.bob.connected)
        self.assertEqual(self.bob.rooms, [])
        self.assertIsNone(self.hub.directory.user("bob"))
        self.assertEqual(list(self.hub.directory.rooms["#dev"].members), [self.alice])

    def test_last_member(self) -> None:
        """
        A room its last member leaves, where nothing was kept, is
        forgotten; nobody elsewhere hears of it.
        """
        self.hub.concerns.rooms.join_named(self.carol, "#solo")
        self.forget()
        self.presence.leave(self.carol, "lost", None)
        self.assertIsNone(self.hub.directory.room("#solo"))
        self.assertEqual(self.alice_p.take(), [self.gone("carol", "lost", None)])

    def test_session_kept(self) -> None:
        """
        The leaver's session is kept as they left it, for their resume
        code; a session gone on in another node's connection is not
        written over.
        """
        self.clock.advance(10)
        self.presence.leave(self.bob, "quit", None)
        session = self.session(self.bob)
        self.assertEqual(
            (session.nick, [name for name, _, _ in session.rooms], session.saved),
            ("bob", ["#lobby", "#dev"], NOW + 10),
        )
        self.alice.moved = True
        self.presence.leave(self.alice, "quit", None)
        self.assertEqual(self.session(self.alice).saved, NOW)

    def test_disconnect(self) -> None:
        """
        A broken connection is shown as lost and a clean close as a quit
        ("connection closed"), each once however often the door says so.
        """
        self.presence.disconnect(self.bob, "reset by peer")
        self.presence.disconnect(self.bob, "reset by peer")
        self.presence.disconnect(self.carol, "closed", clean=True)
        self.presence.disconnect(self.carol, "closed", clean=True)
        self.assertEqual(
            self.alice_p.take(),
            [
                self.gone("bob", "lost", None),
                self.gone("carol", "quit", "connection closed"),
            ],
        )

    def test_quit(self) -> None:
        """
        C{/quit REASON}: the quitter is told goodbye with the cleaned
        reason and closed; the others see that reason.
        """
        self.presence.quit(self.bob, "  off \x1b[2Jto lunch ")
        self.assertEqual(self.bob_p.take(), [events.Goodbye("off to lunch")])
        self.assertEqual(self.bob_p.closed, "quit")
        self.assertEqual(
            self.alice_p.take(), [self.gone("bob", "quit", "off to lunch")]
        )

    def test_quit_without_reason(self) -> None:
        """
        Without a reason, or with one that cleans to nothing, the quitter
        is told "bye" and the others see no reason.
        """
        self.presence.quit(self.bob, None)
        self.assertEqual(self.bob_p.take(), [events.Goodbye("bye")])
        self.assertEqual(self.alice_p.take(), [self.gone("bob", "quit", None)])
        self.forget()
        self.presence.quit(self.carol, "\x1b[2J\x07")
        self.assertEqual(self.carol_p.take(), [events.Goodbye("bye")])
        (carol,) = self.alice_p.take()
        assert isinstance(carol, events.Presence)
        self.assertFalse(carol.reason)

    def test_close_for(self) -> None:
        """
        A user closed for breaking a limit is told the words of the
        verdict and closed by policy; the others see the short reason,
        which the metrics count.
        """
        said = "flooding: 30 more lines after being told to slow down"
        self.presence.close_for(self.bob, "flooding", said)
        self.assertEqual(self.bob_p.take(), [events.Goodbye(said)])
        self.assertEqual((self.bob_p.closed, self.bob_p.close_why), (said, "policy"))
        self.assertEqual(self.alice_p.take(), [self.gone("bob", "quit", "flooding")])
        self.assertEqual(self.hub.metrics.dropped["flooding"], 1)

    def test_too_slow(self) -> None:
        """
        A user who stopped reading is not told anything more; the others
        see that they could not keep up, once; each one is counted.
        """
        self.presence.too_slow(self.bob, 300_000)
        self.presence.too_slow(self.bob, 400_000)
        self.assertEqual(self.bob_p.take(), [])
        self.assertEqual(
            self.alice_p.take(), [self.gone("bob", "quit", "could not keep up")]
        )
        self.assertEqual(self.hub.metrics.slow_consumer_disconnects, 2)

    def test_send_off(self) -> None:
        """
        A user sent off by an operator is told by whom and why and closed
        by policy; the others see the same words.
        """
        self.presence.send_off(self.bob, "root", "kicked", "spam")
        self.assertEqual(self.bob_p.take(), [events.Goodbye("kicked by root: spam")])
        self.assertEqual(
            (self.bob_p.closed, self.bob_p.close_why), ("kicked", "policy")
        )
        self.assertEqual(
            self.alice_p.take(), [self.gone("bob", "quit", "kicked by root: spam")]
        )
        self.forget()
        self.presence.send_off(self.carol, "root", "banned", None)
        self.assertEqual(self.carol_p.take(), [events.Goodbye("banned by root")])
        self.assertEqual(
            self.alice_p.take(), [self.gone("carol", "quit", "banned by root")]
        )

    def test_taken_over(self) -> None:
        """
        A connection whose session went on in a new one is told so and
        closed; the others see the user reconnected.
        """
        self.presence.taken_over(self.bob)
        self.assertEqual(
            self.bob_p.take(),
            [events.Goodbye("resumed by a new connection", elsewhere=True)],
        )
        self.assertEqual(self.bob_p.closed, "resumed by a new connection")
        self.assertEqual(self.alice_p.take(), [self.gone("bob", "quit", "reconnected")])


class NickTests(PresenceTestCase):
    """
    L{Presence.nick}: C{/nick NAME}.
    """

    def setUp(self) -> None:
        super().setUp()
        self.alice_p, self.alice = self.connect("alice")
        self.bob_p, self.bob = self.connect("bob")

    def error(self, participant: FakeParticipant) -> events.Error:
        (error,) = participant.take()
        assert isinstance(error, events.Error)
        return error

    def test_invalid(self) -> None:
        """
        A malformed nick is refused, quoted, with the rule it breaks.
        """
        self.assertIsNone(self.naming.nick(self.alice, "a b"))
        self.assertEqual(
            self.error(self.alice_p),
            events.Error(
                "nick-invalid",
                "'a b' cannot be a nick: a nick may hold only letters, digits, "
                "'_' and '-'",
            ),
        )

    def test_reserved(self) -> None:
        """
        The reserved names and the server's configured name are refused;
        another server's name is not.
        """
        self.hub = self.make_hub(
            self.node, server=ServerConfig(reconnect_grace=0, name="Relay")
        )
        alice_p, alice = self.connect("alice")
        for name in ("RELAY", "root", "Admin"):
            self.naming.nick(alice, name)
            self.assertEqual(
                self.error(alice_p),
                events.Error("nick-reserved", f"{name} is reserved; pick another"),
            )
        self.naming.nick(alice, "tchat")
        self.assertEqual(alice.nick, "tchat")

    def test_taken(self) -> None:
        """
        A nick another user of this node has, in any case, is refused
        without asking the chat.
        """
        self.node.by_hand = True
        self.naming.nick(self.alice, "BOB")
        self.assertEqual(
            self.error(self.alice_p),
            events.Error("nick-taken", "BOB is taken; pick another"),
        )
        self.assertEqual(self.node.claims, [])

    def test_same_nick_names_a_guest(self) -> None:
        """
        Asking for the nick one has counts as picking it (the login
        timeout is met), and changes nothing else.
        """
        participant, guest = self.arrive()
        self.forget()
        self.node.by_hand = True
        self.assertIsNone(self.naming.nick(guest, guest.nick))
        self.assertTrue(guest.named)
        self.assertEqual(participant.take(), [])
        self.assertEqual(self.node.claims, [])
        self.assertIsNone(guest.nick_changes)

    def test_case_change(self) -> None:
        """
        Changing only the case of one's nick takes effect at once, without
        a claim in the chat.
        """
        self.node.by_hand = True
        self.assertIsNone(self.naming.nick(self.alice, "ALICE"))
        self.assertEqual(self.alice.nick, "ALICE")
        self.assertEqual(self.node.claims, [])
        notice = events.Presence(NOW, "nick", "alice", "telnet", new_nick="ALICE")
        self.assertEqual(self.bob_p.take(), [notice])

    def test_banned_nick(self) -> None:
        """
        A banned nick is refused, except to an operator.
        """
        self.hub.concerns.bans.add(Ban(1, "nick", "troll*", "", "root", NOW))
        self.naming.nick(self.alice, "TrollFace")
        self.assertEqual(
            self.error(self.alice_p),
            events.Error("banned", "the nick TrollFace is banned; pick another"),
        )
        self.assertEqual(self.alice.nick, "alice")
        self.bob.operator = "root"
        self.naming.nick(self.bob, "TrollFace")
        self.assertEqual(self.bob.nick, "TrollFace")

    def test_look_alike_taken(self) -> None:
        """
        A look-alike of a nick in use (digits for letters, another script's
        letters, a capital I for a small l) is refused as taken, saying
        whom it looks like, without asking the chat; a form that NFKC makes
        the nick itself (mathematical bold) is simply taken.
        """
        self.connect("coco")
        self.node.by_hand = True
        looks = "is taken: it looks like"
        for name, said in [
            ("b0b", f"b0b {looks} bob"),
            ("B0B", f"B0B {looks} bob"),
            ("\u0441\u043e\u0441\u043e", f"\u0441\u043e\u0441\u043e {looks} coco"),
            ("\U0001d41b\U0001d428\U0001d41b", "bob is taken"),
        ]:
            self.naming.nick(self.alice, name)
            self.assertEqual(
                self.error(self.alice_p),
                events.Error("nick-taken", f"{said}; pick another"),
            )
        self.naming.nick(self.bob, "AIice")
        self.assertEqual(
            self.error(self.bob_p),
            events.Error("nick-taken", f"AIice {looks} alice; pick another"),
        )
        self.assertEqual((self.alice.nick, self.bob.nick), ("alice", "bob"))
        self.assertEqual(self.node.claims, [])

    def test_look_alike_of_a_mixed_nick(self) -> None:
        """
        A look-alike that mixes scripts is refused as taken when its nick
        is in use (the more useful answer), and for the mix when not.
        """
        self.naming.nick(self.bob, "\u0430lice")
        self.assertEqual(
            self.error(self.bob_p),
            events.Error(
                "nick-taken",
                "\u0430lice is taken: it looks like alice; pick another",
            ),
        )
        self.naming.nick(self.bob, "\u0422om")
        self.assertEqual(
            self.error(self.bob_p),
            events.Error(
                "nick-invalid",
                "'\u0422om' cannot be a nick: it mixes Latin letters with Cyrillic "
                "ones (U+0422 CYRILLIC CAPITAL LETTER TE), and a mix like that can "
                "pass for another nick",
            ),
        )
        self.assertEqual(self.bob.nick, "bob")

    def test_own_look_alike(self) -> None:
        """
        The holder of a nick may change to a look-alike of it, as to
        another case of it: at once, without a claim in the chat.
        """
        self.node.by_hand = True
        self.assertIsNone(self.naming.nick(self.bob, "B0B"))
        self.assertEqual(self.bob.nick, "B0B")
        self.assertEqual(self.node.claims, [])

    def test_look_alike_reserved(self) -> None:
        """
        A look-alike of a reserved name or of the server's name is
        reserved, saying which name it looks like.
        """
        self.hub = self.make_hub(
            self.node, server=ServerConfig(reconnect_grace=0, name="Relay")
        )
        alice_p, alice = self.connect("alice")
        for name, like in [
            ("\u0430dmin", "admin"),
            ("S\u0435rver", "server"),
            ("\u0391DMIN", "admin"),
            ("r00t", "root"),
            ("0perator", "operator"),
            ("Re1ay", "Relay"),
            ("R\u0435lay", "Relay"),
        ]:
            self.naming.nick(alice, name)
            self.assertEqual(
                self.error(alice_p),
                events.Error(
                    "nick-reserved",
                    f"{name} is reserved: it looks like {like}; pick another",
                ),
            )
        self.assertEqual(alice.nick, "alice")

    def test_invisible_refused(self) -> None:
        """
        A nick with an invisible character is refused, naming it as typed:
        C{alice} with a Hangul filler (which NFKC turns into another).
        """
        self.naming.nick(self.bob, "alice\u3164")
        self.assertEqual(
            self.error(self.bob_p),
            events.Error(
                "nick-invalid",
                "'alice\u1160' cannot be a nick: U+3164 HANGUL FILLER is invisible, "
                "and a nick may not hold what nobody can see",
            ),
        )
        self.naming.nick(self.bob, "bob\u200b")
        self.assertEqual(
            self.error(self.bob_p),
            events.Error(
                "nick-invalid",
                "'bob\\u200b' cannot be a nick: U+200B ZERO WIDTH SPACE is "
                "invisible, and a nick may not hold what nobody can see",
            ),
        )
        self.assertEqual(self.bob.nick, "bob")

    def test_banned_look_alike(self) -> None:
        """
        A ban on a nick pattern bans its look-alikes too.
        """
        self.hub.concerns.bans.add(Ban(1, "nick", "troll*", "", "root", NOW))
        for name in ("Tr0llFace", "TR0LL", "tr\u043ell"):
            self.naming.nick(self.alice, name)
            (error,) = of(events.Error, self.alice_p.take())
            self.assertIn(error.code, ("banned", "nick-invalid"), name)
        self.assertEqual(self.alice.nick, "alice")

    def test_rate_limited(self) -> None:
        """
        Past C{nick_changes_per_minute}, a change is refused until the
        minute is up.
        """
        self.hub = self.make_hub(self.node, nick_changes_per_minute=1)
        alice_p, alice = self.connect("alice")
        self.naming.nick(alice, "alicia")
        alice_p.take()
        self.naming.nick(alice, "ally")
        self.assertEqual(
            self.error(alice_p),
            events.Error(
                "rate-limited",
                "too many nick changes (at most 1 a minute); try again in a minute",
            ),
        )
        self.assertEqual(alice.nick, "alicia")
        self.clock.advance(60)
        self.naming.nick(alice, "ally")
        self.assertEqual(alice.nick, "ally")

    def test_waits_for_the_claim(self) -> None:
        """
        A new nick is taken only once the chat grants it: nobody is told
        anything before.
        """
        self.node.by_hand = True
        pending = self.naming.nick(self.alice, "wes")
        assert pending is not None
        self.assertNoResult(pending)
        self.assertEqual((self.alice.nick, self.bob_p.take()), ("alice", []))
        self.node.claims[0][1].callback(True)
        self.assertEqual(self.alice.nick, "wes")
        self.assertTrue(self.alice.named)
        self.assertEqual(
            self.bob_p.take(),
            [events.Presence(NOW, "nick", "alice", "telnet", new_nick="wes")],
        )

    def test_refused_by_the_chat(self) -> None:
        """
        A nick another node's user has is refused once the chat answers,
        with the tag of the request that asked for it.
        """
        chat = FakeChat()
        other = self.make_hub(chat.node("b"))
        self.hub = self.make_hub(chat.node("a"))
        _, there = self.connect("x", hub=other)
        other.concerns.naming.nick(there, "wes")
        alice_p, alice = self.connect("alice")
        chat.hold()
        alice.tag = "n1"
        self.naming.nick(alice, "wes")
        alice.tag = None
        chat.release()
        self.assertEqual(
            alice_p.take(),
            [events.Error("nick-taken", "wes is taken; pick another", "n1")],
        )
        self.assertEqual(alice.nick, "alice")

    def test_taken_here_meanwhile(self) -> None:
        """
        When two users of this node ask for the same nick, the one whose
        claim is answered last is refused even if the chat said yes.
        """
        self.node.by_hand = True
        self.naming.nick(self.alice, "wes")
        self.naming.nick(self.bob, "wes")
        self.node.claims[0][1].callback(True)
        self.bob_p.take()
        self.node.claims[1][1].callback(True)
        self.assertEqual(
            self.bob_p.take(),
            [events.Error("nick-taken", "wes is taken; pick another")],
        )
        self.assertEqual((self.alice.nick, self.bob.nick), ("wes", "bob"))

    def test_unreachable(self) -> None:
        """
        While the other nodes cannot be reached, a nick cannot be checked:
        the user is told to try again when they are back.
        """
        self.node.by_hand = True
        self.alice.tag = "n2"
        self.naming.nick(self.alice, "wes")
        self.alice.tag = None
        self.node.claims[0][1].errback(UnreachableError("down"))
        self.assertEqual(
            self.error(self.alice_p),
            events.Error(
                "nick-taken",
                "the cluster is unreachable, so nicks cannot be checked; "
                "try again when it is back",
                "n2",
            ),
        )
        self.assertEqual(self.alice.nick, "alice")

    def test_check_failed(self) -> None:
        """
        A claim that fails otherwise says the nick could not be checked.
        """
        self.node.by_hand = True
        self.naming.nick(self.alice, "wes")
        self.node.claims[0][1].errback(Failure(RuntimeError("boom")))
        self.assertEqual(
            self.error(self.alice_p),
            events.Error(
                "nick-taken", "wes could not be checked with the cluster; try again"
            ),
        )

    def test_gone_before_the_answer(self) -> None:
        """
        A nick granted to a user who left meanwhile is freed in the chat
        at once, so another can take it.
        """
        chat = FakeChat()
        self.hub = self.make_hub(chat.node("a"))
        other = self.make_hub(chat.node("b"))
        alice_p, alice = self.connect("alice")
        chat.hold()
        self.naming.nick(alice, "wes")
        self.presence.disconnect(alice, "reset")
        chat.release()
        self.assertNotIn("wes", chat.claims)
        self.assertEqual(alice_p.take(), [])
        _, there = self.connect("x", hub=other)
        other.concerns.naming.nick(there, "wes")
        self.assertEqual(there.nick, "wes")

    def test_failure_after_leaving(self) -> None:
        """
        A user who left before their claim failed is told nothing.
        """
        self.node.by_hand = True
        self.naming.nick(self.alice, "wes")
        self.presence.disconnect(self.alice, "reset")
        self.node.claims[0][1].errback(UnreachableError("down"))
        self.assertEqual(self.alice_p.take(), [])


class RenameTests(PresenceTestCase):
    """
    L{Presence.rename} and L{Presence.nick_lost}.
    """

    def test_audience(self) -> None:
        """
        Everyone sharing a room with the user hears of the rename once,
        however many rooms they share; the user too, even in no room;
        nobody else.
        """
        alice_p, alice = self.connect("alice")
        bob_p, bob = self.connect("bob")
        carol_p, _ = self.connect("carol")
        dave_p, dave = self.connect("dave")
        rooms = self.hub.concerns.rooms
        rooms.join_named(alice, "#dev")
        rooms.join_named(bob, "#dev")
        rooms.part(dave, None)
        self.forget()
        self.presence.rename(alice, "alicia")
        notice = events.Presence(NOW, "nick", "alice", "telnet", new_nick="alicia")
        for participant in (alice_p, bob_p, carol_p):
            self.assertEqual(participant.take(), [notice])
        self.assertEqual(dave_p.take(), [])
        self.presence.rename(dave, "david")
        self.assertEqual(
            dave_p.take(),
            [events.Presence(NOW, "nick", "dave", "telnet", new_nick="david")],
        )
        self.assertEqual(alice_p.take(), [])

    def test_chosen_or_not(self) -> None:
        """
        A nick the user chose counts as picked (and is kept in their
        session); a guest nick they were given does not count.
        """
        _, user = self.arrive()
        self.presence.rename(user, "guest-beef", chosen=False)
        self.assertFalse(user.named)
        self.presence.rename(user, "alice")
        self.assertTrue(user.named)
        self.assertEqual(self.session(user).nick, "alice")
        self.presence.rename(user, "guest-cafe", chosen=False)
        self.assertTrue(user.named)

    def test_nick_lost(self) -> None:
        """
        A user whose nick another node's user was given meanwhile takes a
        guest nick, is told why, and the others see the rename; the guest
        nick is claimed in turn.
        """
        # bob's and alice's guest nicks, then the one alice is given.
        self.hub = self.make_hub(self.node, ScriptedRandom(1, 2, 0xBEEF))
        bob_p, _ = self.connect("bob")
        alice_p, alice = self.connect("alice")
        self.node.by_hand = True
        self.presence.nick_lost(alice)
        notice = events.Presence(NOW, "nick", "alice", "telnet", new_nick="guest-beef")
        self.assertEqual(
            alice_p.take(),
            [
                notice,
                events.Error(
                    "nick-taken",
                    "alice is in use on another server of this chat; "
                    "you are guest-beef now",
                ),
            ],
        )
        self.assertEqual(bob_p.take(), [notice])
        self.assertEqual([nick for nick, _ in self.node.claims], ["guest-beef"])


class ColourTests(PresenceTestCase):
    """
    L{Presence.colour}: C{/color [NAME|on|off]}.
    """

    def setUp(self) -> None:
        super().setUp()
        self.alice_p, self.alice = self.connect("alice")
        self.alice.colour = PALETTE["red"]
        self.names = ", ".join(PALETTE)

    def test_show(self) -> None:
        """
        Without an argument, the user is shown their colour, whether
        colours are shown, and the choices.
        """
        self.naming.colour(self.alice, None)
        self.assertEqual(
            self.alice_p.take(),
            [
                events.Status(
                    f"your colour is red; colours are on; choose from: {self.names}"
                )
            ],
        )

    def test_on_off(self) -> None:
        """
        C{off} and C{on} turn showing colours off and on, and say so.
        """
        self.naming.colour(self.alice, "off")
        self.assertFalse(self.alice.show_colours)
        self.naming.colour(self.alice, None)
        self.naming.colour(self.alice, "on")
        self.assertTrue(self.alice.show_colours)
        off, shown, on = self.alice_p.take()
        self.assertEqual(off, events.Status("colours are off"))
        assert isinstance(shown, events.Status)
        self.assertIn("colours are off;", shown.text)
        self.assertEqual(on, events.Status("colours are on"))

    def test_pick(self) -> None:
        """
        A palette name becomes the user's colour.
        """
        self.naming.colour(self.alice, "bright-blue")
        self.assertEqual(self.alice.colour, PALETTE["bright-blue"])
        self.assertEqual(
            self.alice_p.take(), [events.Status("your colour is now bright-blue")]
        )

    def test_unknown(self) -> None:
        """
        Anything else is refused with the choices; the colour stays.
        """
        self.naming.colour(self.alice, "#ff0000")
        self.assertEqual(
            self.alice_p.take(),
            [
                events.Error(
                    "bad-arguments",
                    f"no colour called '#ff0000'; choose from: {self.names}, or on/off",
                )
            ],
        )
        self.assertEqual(self.alice.colour, PALETTE["red"])


class ReachableTests(PresenceTestCase):
    """
    L{Presence.reachable}: the other nodes lost, and back.
    """

    def statuses(self, participant: FakeParticipant) -> list[str]:
        return [s.text for s in of(events.Status, participant.take())]

    def test_outage_told_once(self) -> None:
        """
        Each user is told once that the cluster is unreachable, however
        often it is reported.
        """
        alice_p, _ = self.connect("alice")
        bob_p, _ = self.connect("bob")
        self.presence.reachable(False)
        self.presence.reachable(False)
        self.assertEqual(self.statuses(alice_p), [OUTAGE])
        self.assertEqual(self.statuses(bob_p), [OUTAGE])

    def test_newcomer_told(self) -> None:
        """
        A user arriving during an outage is told right after the welcome.
        """
        self.presence.reachable(False)
        participant, _ = self.arrive()
        welcome, outage, *_ = participant.take()
        self.assertIsInstance(welcome, events.Welcome)
        self.assertEqual(outage, events.Status(OUTAGE))

    def test_back(self) -> None:
        """
        When the cluster is back, those told of the outage and still here
        hear so; a later outage is told again.
        """
        alice_p, _ = self.connect("alice")
        bob_p, bob = self.connect("bob")
        self.presence.reachable(False)
        self.presence.disconnect(bob, "reset")
        self.forget()
        self.presence.reachable(True)
        self.assertEqual(self.statuses(alice_p), [BACK])
        self.assertEqual(self.statuses(bob_p), [])
        self.presence.reachable(True)
        self.assertEqual(self.statuses(alice_p), [])
        self.presence.reachable(False)
        self.assertEqual(self.statuses(alice_p), [OUTAGE])

    def test_back_without_outage(self) -> None:
        """
        Nobody hears "back" who was not told of an outage.
        """
        alice_p, _ = self.connect("alice")
        self.presence.reachable(True)
        self.assertEqual(alice_p.take(), [])


class StopTests(PresenceTestCase):
    """
    L{Presence.send_away} and L{Presence.cut_short}: everyone's departure
    when the server stops.
    """

    def send_away(self, grace: float) -> Deferred[None]:
        return Deferred.fromCoroutine(self.presence.send_away(grace))

    def test_nobody_here(self) -> None:
        """
        With nobody connected, sending everyone away is done at once, and
        newcomers are refused from then on.
        """
        self.successResultOf(self.send_away(5))
        participant, user = self.arrive()
        self.assertFalse(user.connected)
        self.assertEqual(participant.take(), [SHUTDOWN])

    def test_told_and_drained(self) -> None:
        """
        Each user is told once and closed as "going away"; it is done when
        the last connection is gone, and nobody here hears of the others
        leaving.
        """
        alice_p, alice = self.connect("alice")
        bob_p, bob = self.connect("bob")
        stopping = self.send_away(5)
        for participant in (alice_p, bob_p):
            self.assertEqual(participant.take(), [SHUTDOWN])
            self.assertEqual(participant.close_why, "going-away")
        self.presence.disconnect(alice, "closed", clean=True)
        self.assertNoResult(stopping)
        self.assertEqual(bob_p.take(), [])
        self.presence.disconnect(bob, "closed", clean=True)
        self.successResultOf(stopping)
        self.clock.advance(5)
        self.assertFalse(alice_p.aborted or bob_p.aborted)

    def test_grace(self) -> None:
        """
        Connections still open when the grace period ends are cut, and
        the departure is then done.
        """
        alice_p, _ = self.connect("alice")
        stopping = self.send_away(2)
        self.clock.advance(1.9)
        self.assertFalse(alice_p.aborted)
        self.assertNoResult(stopping)
        self.clock.advance(0.1)
        self.assertTrue(alice_p.aborted)
        self.assertEqual(self.hub.directory.users, {})
        self.successResultOf(stopping)

    def test_no_grace(self) -> None:
        """
        With no grace period, connections are cut at once.
        """
        alice_p, _ = self.connect("alice")
        self.successResultOf(self.send_away(0))
        self.assertTrue(alice_p.aborted)

    def test_cut_short(self) -> None:
        """
        A second stop signal cuts every connection still open without
        waiting out the grace period; outside a stop it does nothing.
        """
        alice_p, alice = self.connect("alice")
        self.presence.cut_short()
        self.assertFalse(alice_p.aborted)
        self.assertTrue(alice.connected)
        stopping = self.send_away(60)
        self.presence.cut_short()
        self.assertTrue(alice_p.aborted)
        self.successResultOf(stopping)

    def test_failing_abort(self) -> None:
        """
        A door that fails to cut one connection does not keep the others
        from being cut, nor the departure from being done.
        """
        alice_p, _ = self.connect("alice")
        bob_p, _ = self.connect("bob")

        def fails() -> None:
            raise RuntimeError("door broken")

        alice_p.abort = fails  # type: ignore[method-assign]
        stopping = self.send_away(1)
        self.clock.advance(1)
        self.assertTrue(bob_p.aborted)
        self.successResultOf(stopping)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_other_nodes_told_why(self) -> None:
        """
        Users of other nodes see this node's users leave because the
        server is shutting down.
        """
        chat = FakeChat()
        self.hub = self.make_hub(chat.node("a"))
        other = self.make_hub(chat.node("b"))
        _, alice = self.connect("alice")
        bob_p, _ = self.connect("bob", hub=other)
        self.send_away(5)
        self.presence.disconnect(alice, "closed", clean=True)
        self.assertEqual(
            bob_p.take(),
            [
                events.Presence(
                    NOW, "quit", "alice", "telnet", reason="server shutting down"
                )
            ],
        )
