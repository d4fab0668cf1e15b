"""
Tests for L{tchat.moderation.Moderation}, driven directly through
C{hub.concerns.moderation}: kicks, mutes and bans of users on this node and
on another (through L{FakeChat}), the requests and bans other nodes send,
C{/unban}, C{/bans}, C{/announce}, C{/motd set} and C{/rehash}.

Who is told what is the point of most of these tests, so each one checks
what every kind of bystander saw: the target, their roommates, the
operator acting, the other operators, and someone with none of those ties.
"""

import itertools
import math
import random
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tchat import events
from tchat.commands import Join, Nick, Part
from tchat.config import HistoryConfig, OperatorsConfig, ServerConfig
from tchat.history import Ban, BanKind, HistoryStore, MemoryStore
from tchat.hub import ChatFactory
from tchat.model import User
from tchat.moderation import Moderation
from tchat.seam import (
    BansKnown,
    BansLifted,
    BansMade,
    IBackplane,
    OperatorRequest,
    Request,
    UnreachableError,
)
from tests.support import FakeChat, FakeNode, FakeParticipant, started_hub

NOBODY = events.Error("no-such-nick", "nobody here is called ghost")
HINT = events.Error(
    "bad-arguments", "/ban nick:ghost bans the nick itself, even when nobody has it"
)


class FlakyNode(FakeNode):
    """
    A node of a L{FakeChat} whose look-ups or requests fail when told to.
    """

    locating: Exception | None = None
    asking: Exception | None = None

    def locate(self, nick: str) -> Deferred[str | None]:
        if self.locating is not None:
            return fail(self.locating)
        return super().locate(nick)

    def ask(self, request: Request) -> Deferred[None]:
        if self.asking is not None:
            return fail(self.asking)
        return super().ask(request)


class ModerationTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = MemoryStore(HistoryConfig(enabled=False))
        self.participants: list[FakeParticipant] = []
        self.hosts = itertools.count(1)
        self.hub = self.make_hub(store=self.store)

    def make_hub(
        self,
        store: HistoryStore | None = None,
        backplane: IBackplane | None = None,
        seed: int = 1,
    ) -> ChatFactory:
        return started_hub(
            self,
            self.clock,
            server=ServerConfig(reconnect_grace=0, name="tchat", motd=("hello",)),
            rng=random.Random(seed),
            history=HistoryConfig(enabled=False),
            store=store,
            operators=OperatorsConfig((("root", "stored"),)),
            verify=lambda password, encoded: succeed(
                password == "right" and encoded == "stored"
            ),
            backplane=backplane,
        )

    def moderation(self, hub: ChatFactory | None = None) -> Moderation:
        return (hub or self.hub).concerns.moderation

    def connect(
        self,
        nick: str,
        hub: ChatFactory | None = None,
        door: str = "telnet",
        address: str | None = None,
        room: str | None = None,
    ) -> tuple[FakeParticipant, User]:
        """
        Connect C{nick}, from an address of their own (none through the
        onion), in the lobby or, with C{room}, only there.
        """
        hub = hub or self.hub
        if address is None and door != "onion":
            address = f"192.0.2.{next(self.hosts)}"
        participant = FakeParticipant(door, address)
        self.participants.append(participant)
        user = hub.connect(participant)
        hub.execute(user, Nick(nick))
        if room is not None:
            hub.execute(user, Join(room))
            hub.execute(user, Part("#lobby"))
        self.assertEqual(user.nick, nick)
        return participant, user

    def oper(
        self, nick: str, hub: ChatFactory | None = None, **kwargs: Any
    ) -> tuple[FakeParticipant, User]:
        """Connect C{nick} and log them in as the operator account root."""
        participant, user = self.connect(nick, hub, **kwargs)
        (hub or self.hub).concerns.login.oper(user, "root", "right")
        self.assertEqual(user.operator, "root")
        return participant, user

    def quiet(self) -> None:
        """Forget what everyone was told so far."""
        for participant in self.participants:
            participant.take()

    def notice(self, kind: events.NoticeKind, by: str, text: str) -> events.Notice:
        return events.Notice(self.clock.seconds(), kind, by, text)

    def quit(self, nick: str, door: str, reason: str) -> events.Presence:
        return events.Presence(self.clock.seconds(), "quit", nick, door, reason=reason)

    def ban(
        self,
        id: int,
        pattern: str,
        kind: BanKind = "address",
        expires: float | None = None,
        reason: str = "",
    ) -> Ban:
        return Ban(
            id,
            kind,
            pattern,
            reason,
            "root",
            self.clock.seconds(),
            expires,
        )


class LocalTests(ModerationTestCase):
    """
    An operator acts on a user of this node.
    """

    def setUp(self) -> None:
        super().setUp()
        self.alice_p, self.alice = self.oper("alice")
        self.olga_p, _ = self.oper("olga", room="#elsewhere")
        self.bob_p, self.bob = self.connect("bob", door="web")
        self.carol_p, _ = self.connect("carol")
        self.dave_p, _ = self.connect("dave", room="#elsewhere")
        self.quiet()

    def test_kick(self) -> None:
        """
        A kick is shown once to the target, their roommates (the operator
        among them), and every operator; the target is told why and closed,
        and the room sees them leave.  Nobody else hears of it.
        """
        self.assertIsNone(self.moderation().kick(self.alice, "BOB", "spam"))
        notice = self.notice("kick", "alice", "alice kicked bob (web): spam")
        quit_ = self.quit("bob", "web", "kicked by alice: spam")
        self.assertEqual(
            self.bob_p.take(), [notice, events.Goodbye("kicked by alice: spam")]
        )
        self.assertEqual(
            (self.bob_p.closed, self.bob_p.close_why), ("kicked", "policy")
        )
        self.assertFalse(self.bob.connected)
        self.assertIsNone(self.hub.directory.user("bob"))
        self.assertEqual(self.carol_p.take(), [notice, quit_])
        self.assertEqual(self.alice_p.take(), [notice, quit_])
        self.assertEqual(self.olga_p.take(), [notice])
        self.assertEqual(self.dave_p.take(), [])
        self.assertEqual(self.hub.metrics.operator_actions, {"kick": 1})

    def test_mute_and_unmute(self) -> None:
        """
        A mute lasts its duration, or until lifted; the target, their
        roommates and every operator are shown each mute and unmute once,
        and nobody is disconnected.
        """
        moderation, now = self.moderation(), self.clock.seconds()
        moderation.mute(self.alice, "bob", 600)
        self.assertEqual(self.bob.muted_until, now + 600)
        notice = self.notice("mute", "alice", "alice muted bob (web) for 10m")
        for participant in (self.bob_p, self.carol_p, self.alice_p, self.olga_p):
            self.assertEqual(participant.take(), [notice])
        self.assertEqual(self.dave_p.take(), [])

        moderation.mute(self.alice, "bob", None)
        self.assertEqual(self.bob.muted_until, math.inf)
        self.assertEqual(
            self.bob_p.take(),
            [self.notice("mute", "alice", "alice muted bob (web) until lifted")],
        )

        moderation.unmute(self.alice, "bob")
        self.assertIsNone(self.bob.muted_until)
        notice = self.notice("unmute", "alice", "alice unmuted bob (web)")
        self.assertEqual(self.bob_p.take(), [notice])
        self.assertEqual(self.olga_p.take()[-1], notice)
        self.assertTrue(self.bob.connected)
        self.assertEqual(self.dave_p.take(), [])

    def test_ban(self) -> None:
        """
        Banning a clear-net user bans their address, in this node's list
        and in the store; the notice goes to the target, their roommates
        and every operator, once each, and the target is sent off.
        """
        address = self.bob.address
        done = self.moderation().ban(self.alice, "bob", 3600, "flood")
        assert done is not None
        self.successResultOf(done)
        now = self.clock.seconds()
        made = Ban(1, "address", f"{address}/32", "flood", "root", now, now + 3600)
        self.assertEqual(self.hub.concerns.bans.bans, {1: made})
        notice = self.notice(
            "ban", "alice", f"alice banned address {address}/32 for 1h: flood"
        )
        quit_ = self.quit("bob", "web", "banned by alice: flood")
        self.assertEqual(
            self.bob_p.take(), [notice, events.Goodbye("banned by alice: flood")]
        )
        self.assertEqual(
            (self.bob_p.closed, self.bob_p.close_why), ("banned", "policy")
        )
        self.assertEqual(self.carol_p.take(), [notice, quit_])
        self.assertEqual(self.alice_p.take(), [notice, quit_])
        self.assertEqual(self.olga_p.take(), [notice])
        self.assertEqual(self.dave_p.take(), [])
        self.assertEqual(self.make_hub(store=self.store).concerns.bans.bans, {1: made})

    def test_ban_refused(self) -> None:
        """
        An operator cannot ban themself, nor something that is neither a
        user, a nick nor an address; nothing is banned.
        """
        moderation = self.moderation()
        moderation.ban(self.alice, "Alice", None, None)
        moderation.ban(self.alice, "ip:nonsense", None, None)
        moderation.ban(self.alice, "nick:", None, None)
        self.assertEqual(
            self.alice_p.take(),
            [
                events.Error("bad-arguments", "you cannot ban yourself"),
                events.Error("bad-arguments", "'nonsense' is not an IP address"),
                events.Error("bad-arguments", "nick: needs a nick or pattern"),
            ],
        )
        self.assertEqual(len(self.hub.concerns.bans), 0)
        self.assertTrue(self.alice.connected)

    def test_nobody_by_that_name(self) -> None:
        """
        Acting on a nick nobody has, here or elsewhere, says so; a /ban adds
        how to ban the nick itself.  Nobody else hears of it.
        """
        moderation = self.moderation()
        moderation.kick(self.alice, "ghost", None)
        moderation.mute(self.alice, "ghost", 60)
        moderation.unmute(self.alice, "ghost")
        self.assertEqual(self.alice_p.take(), [NOBODY] * 3)
        moderation.ban(self.alice, "ghost", None, None)
        self.assertEqual(self.alice_p.take(), [NOBODY, HINT])
        self.assertEqual(len(self.hub.concerns.bans), 0)
        self.assertEqual(self.olga_p.take(), [])


class RequestTests(ModerationTestCase):
    """
    Another node's operator, zed (account root), acts on a user of this
    node: L{Moderation.request}.
    """

    def setUp(self) -> None:
        super().setUp()
        self.olga_p, _ = self.oper("olga", room="#elsewhere")
        self.bob_p, self.bob = self.connect("bob")
        self.carol_p, _ = self.connect("carol")
        self.dave_p, _ = self.connect("dave", room="#elsewhere")
        self.quiet()

    def request(
        self,
        action: Any,
        target: str = "bob",
        reason: str | None = None,
        duration: int | None = None,
    ) -> None:
        self.moderation().request(
            OperatorRequest(action, target, "zed", "root", "web", reason, duration)
        )

    def test_kick(self) -> None:
        """
        A kick from another node is carried out as a local one: the
        target, roommates and this node's operators see the notice; the
        target is sent off.
        """
        self.request("kick", reason="spam")
        notice = self.notice("kick", "zed", "zed kicked bob (telnet): spam")
        self.assertEqual(
            self.bob_p.take(), [notice, events.Goodbye("kicked by zed: spam")]
        )
        self.assertFalse(self.bob.connected)
        self.assertEqual(
            self.carol_p.take(),
            [notice, self.quit("bob", "telnet", "kicked by zed: spam")],
        )
        self.assertEqual(self.olga_p.take(), [notice])
        self.assertEqual(self.dave_p.take(), [])

    def test_mute_and_unmute(self) -> None:
        """
        A mute from another node lasts its duration; an unmute lifts it;
        both are shown as local ones are.
        """
        self.request("mute", duration=120)
        self.assertEqual(self.bob.muted_until, self.clock.seconds() + 120)
        notice = self.notice("mute", "zed", "zed muted bob (telnet) for 2m")
        for participant in (self.bob_p, self.carol_p, self.olga_p):
            self.assertEqual(participant.take(), [notice])
        self.request("unmute")
        self.assertIsNone(self.bob.muted_until)
        notice = self.notice("unmute", "zed", "zed unmuted bob (telnet)")
        for participant in (self.bob_p, self.carol_p, self.olga_p):
            self.assertEqual(participant.take(), [notice])
        self.assertEqual(self.dave_p.take(), [])

    def test_ban(self) -> None:
        """
        A ban from another node bans the target's address here, numbered
        and kept under the operator's account, and sends the target off.
        """
        address = self.bob.address
        self.request("ban", reason="troll")
        self.assertEqual(
            self.hub.concerns.bans.bans,
            {1: self.ban(1, f"{address}/32", reason="troll")},
        )
        notice = self.notice(
            "ban", "zed", f"zed banned address {address}/32 until lifted: troll"
        )
        self.assertEqual(
            self.bob_p.take(), [notice, events.Goodbye("banned by zed: troll")]
        )
        self.assertEqual(self.olga_p.take(), [notice])
        self.assertEqual(self.dave_p.take(), [])

    def test_ban_onion_user(self) -> None:
        """
        Banning an onion user from another node bans their session and
        their nick.
        """
        eve_p, eve = self.connect("eve", door="onion")
        self.request("ban", target="eve")
        self.assertEqual(
            [(b.kind, b.pattern) for b in self.hub.concerns.bans.in_force(0)],
            [("session", eve.code), ("nick", "eve")],
        )
        self.assertFalse(eve.connected)

    def test_nobody_here(self) -> None:
        """
        A request for a nick nobody here has (they left meanwhile) does
        nothing at all.
        """
        for action in ("kick", "mute", "unmute", "ban"):
            self.request(action, target="ghost")
        for participant in self.participants:
            self.assertEqual(participant.take(), [])
        self.assertEqual(len(self.hub.concerns.bans), 0)


class BansFromElsewhereTests(ModerationTestCase):
    """
    Bans made, lifted or kept by the rest of the chat.
    """

    def setUp(self) -> None:
        super().setUp()
        self.alice_p, self.alice = self.oper("alice", address="198.51.100.1")
        self.olga_p, self.olga = self.oper("olga", address="192.0.2.200")
        self.bob_p, self.bob = self.connect("bob", address="192.0.2.7")
        self.carol_p, _ = self.connect("carol", address="203.0.113.5")
        self.dave_p, self.dave = self.connect(
            "dave", address="203.0.113.6", room="#elsewhere"
        )
        self.quiet()

    def test_bans_made(self) -> None:
        """
        Bans made on another node hit this node's users: those who are not
        operators are sent off, operators hit are told and stay; every
        operator and everyone sharing a room with a user hit is told; the
        ban keeps newcomers out.
        """
        made = self.ban(7, "192.0.2.0/24", reason="spam")
        self.moderation().bans_made(BansMade((made,), "zed", "spam"))
        self.assertEqual(self.hub.concerns.bans.bans, {7: made})
        notice = self.notice(
            "ban", "zed", "zed banned address 192.0.2.0/24 until lifted: spam"
        )
        self.assertEqual(
            self.bob_p.take(), [notice, events.Goodbye("banned by zed: spam")]
        )
        self.assertFalse(self.bob.connected)
        self.assertTrue(self.olga.connected)
        quit_ = self.quit("bob", "telnet", "banned by zed: spam")
        self.assertEqual(self.olga_p.take(), [notice, quit_])
        self.assertEqual(self.alice_p.take(), [notice, quit_])
        self.assertEqual(self.carol_p.take(), [notice, quit_])
        self.assertEqual(self.dave_p.take(), [])
        newcomer = self.hub.connect(FakeParticipant("web", "192.0.2.9"))
        self.assertFalse(newcomer.connected)

    def test_bans_lifted(self) -> None:
        """
        Bans lifted on another node are lifted here, by number; the others
        stay.
        """
        moderation = self.moderation()
        first = self.ban(1, "198.18.0.0/16")
        second = self.ban(2, "198.19.0.0/16")
        moderation.bans_made(BansMade((first, second), "zed"))
        moderation.bans_lifted(BansLifted((1, 99)))
        self.assertEqual(self.hub.concerns.bans.bans, {2: second})
        self.assertTrue(
            self.hub.connect(FakeParticipant("web", "198.18.0.1")).connected
        )
        self.assertFalse(
            self.hub.connect(FakeParticipant("web", "198.19.0.1")).connected
        )

    def test_bans_known(self) -> None:
        """
        Bans the chat keeps that this node did not know are added, those
        it knew are kept as they are, and nobody is sent off or told: they
        apply to whoever comes in from now on.
        """
        moderation = self.moderation()
        known = self.ban(1, "198.18.0.0/16")
        moderation.bans_made(BansMade((known,), "zed"))
        self.quiet()
        new = self.ban(2, "203.0.113.0/24")
        moderation.bans_known(BansKnown((self.ban(1, "198.20.0.0/16"), new)))
        self.assertEqual(self.hub.concerns.bans.bans, {1: known, 2: new})
        self.assertTrue(self.dave.connected)
        for participant in self.participants:
            self.assertEqual(participant.take(), [])
        newcomer = self.hub.connect(FakeParticipant("web", "203.0.113.9"))
        self.assertFalse(newcomer.connected)


class BanListTests(ModerationTestCase):
    """
    C{/unban} and C{/bans}.
    """

    def setUp(self) -> None:
        super().setUp()
        self.alice_p, self.alice = self.oper("alice", address="198.51.100.1")
        self.olga_p, _ = self.oper("olga", room="#elsewhere")
        self.bob_p, _ = self.connect("bob")
        self.quiet()

    def make(
        self, target: str, duration: int | None = None, reason: str | None = None
    ) -> None:
        done = self.moderation().ban(self.alice, target, duration, reason)
        assert done is not None
        self.successResultOf(done)

    def numbers(self) -> list[int]:
        return sorted(self.hub.concerns.bans.bans)

    def test_numbers_never_reused(self) -> None:
        """
        A new ban never takes the number of one lifted meanwhile, nor one at
        or below the highest this node knows of.
        """
        self.make("192.0.2.100")
        self.moderation().unban(self.alice, "1")
        self.make("192.0.2.101")
        self.assertEqual(self.numbers(), [2])
        self.moderation().bans_known(BansKnown((self.ban(9, "198.18.0.0/16"),)))
        self.make("192.0.2.102")
        self.assertEqual(self.numbers(), [2, 9, 10])

    def test_unban_by_number(self) -> None:
        """
        /unban N (or #N) lifts that ban, here, in the store and on the
        other nodes; every operator is told, and nobody else.
        """
        self.make("192.0.2.0/24")
        self.make("nick:mallory")
        self.quiet()
        self.moderation().unban(self.alice, "#1")
        self.assertEqual(self.numbers(), [2])
        notice = self.notice(
            "unban", "alice", "alice lifted the ban #1 (address 192.0.2.0/24)"
        )
        self.assertEqual(self.alice_p.take(), [notice])
        self.assertEqual(self.olga_p.take(), [notice])
        self.assertEqual(self.bob_p.take(), [])
        self.moderation().unban(self.alice, "2")
        self.assertEqual(self.numbers(), [])
        self.assertEqual(len(self.make_hub(store=self.store).concerns.bans), 0)

    def test_unban_by_pattern(self) -> None:
        """
        /unban PATTERN lifts every ban of that pattern, however it is
        written, in one notice.
        """
        self.make("192.0.2.0/24")
        self.make("ip:192.0.2.0/24")
        self.make("nick:Mallory")
        self.make("troll*")
        self.quiet()
        self.moderation().unban(self.alice, "ip:192.0.2.0/24")
        self.assertEqual(
            self.alice_p.take(),
            [
                self.notice(
                    "unban",
                    "alice",
                    "alice lifted the ban #1 (address 192.0.2.0/24) and "
                    "#2 (address 192.0.2.0/24)",
                )
            ],
        )
        self.moderation().unban(self.alice, "MALLORY")
        self.moderation().unban(self.alice, "nick:troll*")
        self.assertEqual(self.numbers(), [])

    def test_unban_no_match(self) -> None:
        """
        /unban of a number or a pattern no ban has says so, and lifts
        nothing.
        """
        self.make("192.0.2.0/24")
        self.quiet()
        for target in ("7", "#7", "192.0.3.0/24", "nobody"):
            self.moderation().unban(self.alice, target)
        self.assertEqual(
            self.alice_p.take(),
            [
                events.Error(
                    "bad-arguments", f"no ban matches {target!r}; /bans lists them"
                )
                for target in ("7", "#7", "192.0.3.0/24", "nobody")
            ],
        )
        self.assertEqual(self.numbers(), [1])
        self.assertEqual(self.olga_p.take(), [])

    def test_list_bans(self) -> None:
        """
        /bans lists the bans in force, by number, with what is left of
        each; lapsed bans are gone from it.
        """
        self.moderation().list_bans(self.alice)
        self.assertEqual(
            self.alice_p.take(),
            [events.Listing("bans", "no bans in force", (), {"bans": []})],
        )
        self.make("192.0.2.0/24", reason="spam")
        self.make("nick:mallory", 60)
        self.clock.advance(30)
        self.quiet()
        self.moderation().list_bans(self.alice)
        (listing,) = self.alice_p.take()
        assert isinstance(listing, events.Listing)
        self.assertEqual(
            (listing.title, listing.lines),
            (
                "2 bans in force",
                (
                    "#1 address 192.0.2.0/24 by root until lifted: spam",
                    "#2 nick mallory by root for 30s",
                ),
            ),
        )
        self.clock.advance(30)
        self.moderation().list_bans(self.alice)
        (listing,) = self.alice_p.take()
        assert isinstance(listing, events.Listing)
        self.assertEqual(
            (listing.title, listing.lines),
            (
                "1 bans in force",
                ("#1 address 192.0.2.0/24 by root until lifted: spam",),
            ),
        )
        self.assertEqual(
            listing.data,
            {
                "bans": [
                    {
                        "id": 1,
                        "kind": "address",
                        "pattern": "192.0.2.0/24",
                        "reason": "spam",
                        "by": "root",
                        "expires": None,
                    }
                ]
            },
        )
        self.assertEqual(self.numbers(), [1])


class RehashTests(ModerationTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice_p, self.alice = self.oper("alice")
        self.olga_p, _ = self.oper("olga", room="#elsewhere")
        self.bob_p, _ = self.connect("bob")
        self.quiet()

    def test_no_reloader(self) -> None:
        """
        Without a reloader (tests, embedding), /rehash says it cannot.
        """
        self.assertIsNone(self.moderation().rehash(self.alice))
        self.assertEqual(
            self.alice_p.take(),
            [events.Error("bad-arguments", "this server cannot reload its tap.ini")],
        )

    def test_result_shown(self) -> None:
        """
        What the reloader reports, success or not, is shown when it is
        done to every operator as a notice, and to nobody else.
        """
        reloading: Deferred[tuple[bool, str]] = Deferred()
        self.moderation().reloader = lambda: reloading
        self.moderation().rehash(self.alice)
        self.assertEqual(self.alice_p.take(), [])
        reloading.callback((False, "[server] name: too long"))
        notice = self.notice(
            "rehash", "alice", "alice reloaded tap.ini: [server] name: too long"
        )
        self.assertEqual(self.alice_p.take(), [notice])
        self.assertEqual(self.olga_p.take(), [notice])
        self.assertEqual(self.bob_p.take(), [])

    def test_reload_took_operator_away(self) -> None:
        """
        An operator whose account the reload changed is told the result
        as a status line, not as an operator's notice.
        """

        def reload() -> Deferred[tuple[bool, str]]:
            self.alice.operator = None
            return succeed((True, "applied [operators]"))

        self.moderation().reloader = reload
        self.moderation().rehash(self.alice)
        self.assertEqual(
            self.alice_p.take(),
            [events.Status("tap.ini reloaded: applied [operators]")],
        )
        self.assertEqual(self.olga_p.take(), [])

    def test_reloader_fails(self) -> None:
        """
        A reloader that fails is logged; nobody is told a result.
        """
        self.moderation().reloader = lambda: fail(RuntimeError("disk gone"))
        self.moderation().rehash(self.alice)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.alice_p.take(), [])


class TwoNodeTestCase(ModerationTestCase):
    """
    Two nodes of one chat: an operator on node a, users on both.
    """

    def setUp(self) -> None:
        super().setUp()
        self.chat = FakeChat()
        self.node = FlakyNode(self.chat, "a")
        self.chat.nodes["a"] = self.node
        self.a = self.make_hub(backplane=self.node, seed=1)
        self.b = self.make_hub(backplane=self.chat.node("b"), seed=2)
        self.alice_p, self.alice = self.oper("alice", self.a, room="#ops")
        self.amy_p, _ = self.connect("amy", self.a)
        self.bob_p, self.bob = self.connect("bob", self.b)
        self.ben_p, _ = self.connect("ben", self.b)
        self.olga_p, _ = self.oper("olga", self.b, room="#elsewhere")
        self.dave_p, _ = self.connect("dave", self.b, room="#elsewhere")
        self.quiet()


class OtherNodeTests(TwoNodeTestCase):
    """
    An operator on node a acts on users of node b.
    """

    def test_kick(self) -> None:
        """
        Kicking a user of another node has their node carry it out: the
        target is sent off there, the room sees it on both nodes, and the
        operator and every operator see the notice once.
        """
        done = self.moderation(self.a).kick(self.alice, "bob", "spam")
        assert done is not None
        self.successResultOf(done)
        notice = self.notice("kick", "alice", "alice kicked bob (telnet): spam")
        quit_ = self.quit("bob", "telnet", "kicked by alice: spam")
        self.assertEqual(
            self.bob_p.take(), [notice, events.Goodbye("kicked by alice: spam")]
        )
        self.assertFalse(self.bob.connected)
        self.assertEqual(self.ben_p.take(), [notice, quit_])
        self.assertEqual(self.amy_p.take(), [notice, quit_])
        self.assertEqual(self.alice_p.take(), [notice])
        self.assertEqual(self.olga_p.take(), [notice])
        self.assertEqual(self.dave_p.take(), [])

    def test_mute_and_unmute(self) -> None:
        """
        Muting a user of another node mutes them there; unmuting lifts it;
        the operator sees both.
        """
        self.moderation(self.a).mute(self.alice, "Bob", 60)
        self.assertEqual(self.bob.muted_until, self.clock.seconds() + 60)
        notice = self.notice("mute", "alice", "alice muted bob (telnet) for 1m")
        self.assertEqual(self.alice_p.take(), [notice])
        self.assertEqual(self.bob_p.take(), [notice])
        self.moderation(self.a).unmute(self.alice, "bob")
        self.assertIsNone(self.bob.muted_until)
        self.assertEqual(
            self.alice_p.take(),
            [self.notice("unmute", "alice", "alice unmuted bob (telnet)")],
        )

    def test_ban(self) -> None:
        """
        Banning a user of another node bans their address in the whole
        chat, under the operator's account; they are sent off there and the
        operator sees the notice once.
        """
        address = self.bob.address
        self.moderation(self.a).ban(self.alice, "bob", None, "troll")
        made = self.ban(1, f"{address}/32", reason="troll")
        self.assertEqual(self.b.concerns.bans.bans, {1: made})
        self.assertEqual(self.a.concerns.bans.bans, {1: made})
        notice = self.notice(
            "ban", "alice", f"alice banned address {address}/32 until lifted: troll"
        )
        self.assertEqual(self.alice_p.take(), [notice])
        self.assertEqual(
            self.bob_p.take(), [notice, events.Goodbye("banned by alice: troll")]
        )
        self.assertEqual(self.olga_p.take(), [notice])
        self.assertFalse(self.a.connect(FakeParticipant("web", address)).connected)

    def test_unban_everywhere(self) -> None:
        """
        A ban made on one node is in force on the others, and lifting it
        lifts it there too.
        """
        self.moderation(self.a).ban(self.alice, "198.18.0.0/16", None, None)
        self.assertEqual(list(self.b.concerns.bans.bans), [1])
        self.moderation(self.a).unban(self.alice, "1")
        self.assertEqual(len(self.b.concerns.bans), 0)
        self.assertTrue(self.b.connect(FakeParticipant("web", "198.18.0.1")).connected)

    def test_nobody_anywhere(self) -> None:
        """
        A nick nobody in the chat has is an error that carries the tag of
        the operator's command, even when the chat answers after it was
        done; a /ban adds how to ban the nick itself.
        """
        self.chat.hold()
        self.alice.tag = "k-1"
        self.moderation(self.a).kick(self.alice, "ghost", None)
        self.alice.tag = "b-1"
        self.moderation(self.a).ban(self.alice, "ghost", None, None)
        self.alice.tag = None
        self.assertEqual(self.alice_p.take(), [])
        self.chat.release()
        self.assertEqual(
            self.alice_p.take(),
            [
                events.Error(NOBODY.code, NOBODY.text, "k-1"),
                events.Error(NOBODY.code, NOBODY.text, "b-1"),
                events.Error(HINT.code, HINT.text, "b-1"),
            ],
        )
        self.assertEqual(len(self.a.concerns.bans), 0)

    def test_operator_gone_meanwhile(self) -> None:
        """
        An operator who leaves before the chat says where the target is
        has nothing carried out for them.
        """
        self.chat.hold()
        self.moderation(self.a).kick(self.alice, "bob", None)
        self.a.disconnect(self.alice, "gone")
        self.chat.release()
        self.assertTrue(self.bob.connected)

    def test_lookup_fails(self) -> None:
        """
        When the chat cannot say who has the nick, the operator is told so.
        """
        self.node.locating = UnreachableError("no redis")
        self.moderation(self.a).kick(self.alice, "bob", None)
        self.assertEqual(
            self.alice_p.take(),
            [events.Error("no-such-nick", "bob cannot be looked up now")],
        )
        self.assertTrue(self.bob.connected)

    def test_request_not_sent(self) -> None:
        """
        When the request cannot be sent to the target's node, the operator
        is told the cluster did not answer.
        """
        self.node.asking = UnreachableError("no redis")
        self.moderation(self.a).mute(self.alice, "bob", None)
        self.assertEqual(
            self.alice_p.take(),
            [events.Error("not-stored", "the cluster did not answer")],
        )
        self.assertIsNone(self.bob.muted_until)


class WholeChatTests(TwoNodeTestCase):
    """
    C{/announce} and C{/motd set} reach everyone, on every node.
    """

    def test_announce(self) -> None:
        """
        An announcement, cleaned, reaches every user of every node once,
        whatever room they are in; one with nothing left to say reaches
        nobody.
        """
        self.moderation(self.a).announce(self.alice, "  restart\x07 at noon ")
        notice = self.notice("announce", "alice", "restart at noon")
        for participant in self.participants:
            self.assertEqual(participant.take(), [notice])
        self.moderation(self.a).announce(self.alice, " \x07 ")
        for participant in self.participants:
            self.assertEqual(participant.take(), [])

    def test_set_motd(self) -> None:
        """
        A new message of the day, cleaned, is in force on every node (the
        others get it as L{MotdChanged}), and every user is told.
        """
        self.moderation(self.a).set_motd(self.alice, ("  Be nice\x07 ", "Really"))
        for hub in (self.a, self.b):
            self.assertEqual(hub.settings.server.motd, ("Be nice", "Really"))
        notice = self.notice(
            "motd", "alice", "alice changed the message of the day (/motd shows it)"
        )
        for participant in self.participants:
            self.assertEqual(participant.take(), [notice])
        late = FakeParticipant()
        self.b.connect(late)
        welcome = late.received[0]
        assert isinstance(welcome, events.Welcome)
        self.assertEqual(welcome.motd, ("Be nice", "Really"))
