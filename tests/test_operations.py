"""
Tests for what operators do in the hub: /oper, /kick, /ban, /mute,
/announce, /motd set, /rehash, /stats, a graceful stop and a reload.
"""

import random
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tchat import events
from tchat.commands import (
    Announce,
    Ban,
    Join,
    Kick,
    ListBans,
    Msg,
    Mute,
    Nick,
    Oper,
    Rehash,
    Resume,
    Say,
    SetMotd,
    ShowHelp,
    ShowMotd,
    ShowStats,
    Unban,
    Unmute,
)
from tchat.config import HistoryConfig, LimitsConfig, OperatorsConfig, ServerConfig
from tchat.history import MemoryStore
from tchat.hub import ChatFactory
from tchat.model import User
from tchat.oper import OPER_FAILURES
from tchat.operators import hash_password, verify_password
from tests.support import FakeParticipant

PASSWORD = "correct horse"
HASH = hash_password(PASSWORD, log2_n=4)


def verify_now(password: str, encoded: str | None) -> Deferred[bool]:
    """
    The real check, synchronously: tests need no thread.
    """
    return succeed(verify_password(password, encoded))


class OperatorTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = MemoryStore(HistoryConfig(enabled=False))
        self.hub = self.make_hub()

    def make_hub(self, verify: Any = verify_now) -> ChatFactory:
        hub = ChatFactory(
            ServerConfig(reconnect_grace=0, name="tchat", motd=("hello",)),
            self.clock,
            random.Random(1),
            store=self.store,
            operators=OperatorsConfig((("alice", HASH),)),
            verify=verify,
            # These users talk through hub.execute, not a door, so they
            # would look silent to the silent timeout (tests.test_limits).
            limits=LimitsConfig(silent_timeout=0),
        )
        self.successResultOf(hub.start())
        return hub

    def connect(
        self, nick: str, door: str = "telnet", address: str | None = "192.0.2.1"
    ) -> tuple[FakeParticipant, User]:
        participant = FakeParticipant(door, address if door != "onion" else None)
        user = self.hub.connect(participant)
        self.hub.execute(user, Nick(nick))
        participant.take()
        return participant, user

    def oper(self) -> tuple[FakeParticipant, User]:
        """
        Connect the operator alice, logged in.
        """
        participant, user = self.connect("alice", address="198.51.100.1")
        self.hub.execute(user, Oper("alice", PASSWORD))
        self.assertEqual(user.operator, "alice")
        participant.take()
        return participant, user

    def texts(self, participant: FakeParticipant) -> list[str]:
        """
        The texts of the notices C{participant} was shown since last asked.
        """
        return [e.text for e in participant.take() if isinstance(e, events.Notice)]


class OperTests(OperatorTestCase):
    def test_oper_succeeds(self) -> None:
        """
        The right name and password make the user an operator, who is told
        so and then sees the operator commands in /help.
        """
        participant, user = self.connect("alice")
        self.hub.execute(user, Oper("alice", PASSWORD))
        (status,) = participant.take()
        assert isinstance(status, events.Status)
        self.assertIn("you are now an operator (alice)", status.text)
        self.hub.execute(user, ShowHelp())
        (help_,) = participant.take()
        assert isinstance(help_, events.Help)
        self.assertIn("/kick NICK [reason]", [usage for usage, _ in help_.operator])

    def test_help_hides_operator_commands(self) -> None:
        """
        Users who are not operators see no operator commands in /help.
        """
        participant, user = self.connect("bob")
        self.hub.execute(user, ShowHelp())
        (help_,) = participant.take()
        assert isinstance(help_, events.Help)
        self.assertEqual(help_.operator, ())

    def test_wrong_password_or_name(self) -> None:
        """
        A wrong password and an unknown name get the same answer, and the
        user stays an ordinary user.
        """
        participant, user = self.connect("bob")
        for name, password in (("alice", "wrong"), ("nobody", PASSWORD)):
            self.hub.execute(user, Oper(name, password))
            (error,) = participant.take()
            self.assertEqual(
                error, events.Error("oper-failed", "wrong operator name or password")
            )
        self.assertIsNone(user.operator)
        self.assertEqual(self.hub.metrics.dropped["oper-failed"], 2)

    def test_failures_slowed(self) -> None:
        """
        After three failures from one address within a minute, the next
        /oper from it waits before it is checked, and the user's other
        commands wait behind it; the right password then gets in: guessing
        is slowed, nobody is locked out.  Another address is not affected.
        """
        participant, user = self.connect("bob")
        for _ in range(OPER_FAILURES):
            self.hub.execute(user, Oper("alice", "wrong"))
        participant.take()
        self.hub.execute(user, Oper("alice", PASSWORD))
        self.hub.execute(user, ShowHelp())
        (status,) = participant.take()
        assert isinstance(status, events.Status)
        self.assertIn("too many failed /oper attempts lately", status.text)
        self.assertIsNone(user.operator)
        self.assertEqual(self.hub.metrics.rate_limited["oper"], 1)

        _, other = self.connect("carol", address="192.0.2.2")
        self.hub.execute(other, Oper("alice", PASSWORD))
        self.assertEqual(other.operator, "alice")

        self.clock.advance(1)
        self.assertEqual(user.operator, "alice")
        *_, done, help_ = participant.take()  # after carol's arrival
        self.assertEqual(done.text.split(" (")[0], "you are now an operator")  # type: ignore[attr-defined]
        assert isinstance(help_, events.Help)
        self.assertNotEqual(help_.operator, ())

    def test_onion_failures_per_connection_and_together(self) -> None:
        """
        Onion users all come from the local tor, so one onion user's
        failures do not slow another; only many failures from onion users
        together do.
        """
        first, one = self.connect("one", door="onion")
        for _ in range(OPER_FAILURES):
            self.hub.execute(one, Oper("alice", "wrong"))
        first.take()
        self.hub.execute(one, Oper("alice", PASSWORD))
        self.assertIn("too many failed", first.take()[0].text)  # type: ignore[attr-defined]
        _, two = self.connect("two", door="onion")
        self.hub.execute(two, Oper("alice", PASSWORD))
        self.assertEqual(two.operator, "alice")

    def test_check_in_progress(self) -> None:
        """
        While a password is being checked (off the reactor thread), the
        user's next commands wait for it, a second /oper included, so one
        user never has two checks running; users who leave meanwhile are
        simply forgotten.
        """
        checks: list[Deferred[bool]] = []

        def verify(password: str, encoded: str | None) -> Deferred[bool]:
            checks.append(Deferred())
            return checks[-1]

        self.hub = self.make_hub(verify=verify)
        participant, user = self.connect("bob")
        self.hub.execute(user, Oper("alice", PASSWORD))
        self.hub.execute(user, Oper("alice", PASSWORD))
        self.assertEqual((len(checks), participant.take()), (1, []))
        self.hub.disconnect(user, "gone")
        checks[0].callback(True)
        self.assertEqual(len(checks), 1)
        self.assertIsNone(user.operator)

    def test_check_fails(self) -> None:
        """
        A check that fails (the thread died) counts as a failure and is
        logged, never as a success.
        """
        self.hub = self.make_hub(
            verify=lambda password, encoded: fail(RuntimeError("thread gone"))
        )
        participant, user = self.connect("bob")
        self.hub.execute(user, Oper("alice", PASSWORD))
        self.assertIsNone(user.operator)
        self.assertEqual(participant.take()[0].code, "oper-failed")  # type: ignore[attr-defined]
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_password_never_in_repr(self) -> None:
        """
        A logged /oper command never shows the password.
        """
        self.assertNotIn(PASSWORD, repr(Oper("alice", PASSWORD)))

    def test_not_operator_refused(self) -> None:
        """
        Every operator command is refused to a user who is not one, with
        what to do, and changes nothing.
        """
        participant, user = self.connect("bob")
        _, carol = self.connect("carol")
        participant.take()
        for command in (
            Kick("carol", None),
            Ban("carol", None, None),
            Unban("1"),
            ListBans(),
            Mute("carol", None),
            Unmute("carol"),
            Announce("hello"),
            SetMotd(("new",)),
            Rehash(),
        ):
            self.hub.execute(user, command)
            self.assertEqual(
                participant.take(),
                [
                    events.Error(
                        "not-operator",
                        "that command is for operators; /oper NAME PASSWORD first",
                    )
                ],
            )
        self.assertTrue(carol.connected)
        self.assertEqual(self.hub.bans, 0)
        self.assertEqual(self.hub.config.motd, ("hello",))

    def test_reload_revokes_changed_accounts(self) -> None:
        """
        When a reload removes an operator account or changes its password,
        users logged in with it are operators no more, and are told.
        """
        participant, user = self.oper()
        self.hub.reconfigure(
            self.hub.config, self.hub.history, OperatorsConfig((("alice", HASH),))
        )
        self.assertEqual(user.operator, "alice")
        self.hub.reconfigure(self.hub.config, self.hub.history, OperatorsConfig())
        self.assertIsNone(user.operator)
        (status,) = participant.take()
        self.assertIn("you are no longer an operator", status.text)  # type: ignore[attr-defined]


class KickTests(OperatorTestCase):
    def test_kick(self) -> None:
        """
        A kicked user is told why and disconnected; the room sees the
        operator's notice and the user quitting with the reason.
        """
        alice_p, alice = self.oper()
        bob_p, bob = self.connect("bob", door="web")
        carol_p, _ = self.connect("carol")
        carol_p.take()
        self.hub.execute(alice, Kick("bob", "spamming"))
        self.assertEqual(bob_p.take()[-1], events.Goodbye("kicked by alice: spamming"))
        self.assertEqual((bob_p.closed, bob_p.close_why), ("kicked", "policy"))
        self.assertFalse(bob.connected)
        notice, quit_ = carol_p.take()
        self.assertEqual(
            notice,
            events.Notice(
                self.clock.seconds(),
                "kick",
                "alice",
                "alice kicked bob (web): spamming",
            ),
        )
        assert isinstance(quit_, events.Presence)
        self.assertEqual(
            (quit_.kind, quit_.reason), ("quit", "kicked by alice: spamming")
        )
        self.assertIn("alice kicked bob (web): spamming", self.texts(alice_p))
        self.assertEqual(self.hub.metrics.operator_actions, {"kick": 1})

    def test_kick_nobody(self) -> None:
        """
        Kicking a nick nobody has says so.
        """
        alice_p, alice = self.oper()
        self.hub.execute(alice, Kick("ghost", None))
        self.assertEqual(
            alice_p.take(),
            [events.Error("no-such-nick", "nobody here is called ghost")],
        )


class BanTests(OperatorTestCase):
    def test_ban_nick_bans_address(self) -> None:
        """
        Banning a clear-net user by nick bans their address: they are sent
        off, and a new connection from that address is refused with the
        reason, while other addresses still get in.
        """
        alice_p, alice = self.oper()
        bob_p, bob = self.connect("bob", address="192.0.2.7")
        self.hub.execute(alice, Ban("bob", 3600, "flooding"))
        self.assertFalse(bob.connected)
        self.assertEqual(bob_p.take()[-1], events.Goodbye("banned by alice: flooding"))
        self.assertIn(
            "alice banned address 192.0.2.7/32 for 1h: flooding", self.texts(alice_p)
        )

        again = FakeParticipant("web", "192.0.2.7")
        user = self.hub.connect(again)
        self.assertFalse(user.connected)
        (error,) = again.take()
        self.assertEqual(
            error,
            events.Error("banned", "you are banned from tchat for 1h: flooding"),
        )
        self.assertEqual(again.close_why, "policy")
        _, other = self.connect("dave", address="192.0.2.8")
        self.assertTrue(other.connected)

    def test_ban_expires(self) -> None:
        """
        A ban with a duration lapses by itself.
        """
        _, alice = self.oper()
        self.hub.execute(alice, Ban("192.0.2.0/24", 60, None))
        self.clock.advance(61)
        _, bob = self.connect("bob", address="192.0.2.7")
        self.assertTrue(bob.connected)
        self.assertEqual(self.hub.bans, 0)

    def test_ban_network_and_ipv6(self) -> None:
        """
        Networks ban every address in them, IPv6 too.
        """
        _, alice = self.oper()
        self.hub.execute(alice, Ban("2001:db8::/32", None, None))
        self.hub.execute(alice, Ban("ip:192.0.2.0/25", None, None))
        for address, allowed in (
            ("2001:db8::5", False),
            ("2001:db9::5", True),
            ("192.0.2.100", False),
            ("192.0.2.200", True),
        ):
            user = self.hub.connect(FakeParticipant("telnet", address))
            self.assertEqual(user.connected, allowed, address)

    def test_ban_onion_user(self) -> None:
        """
        An onion user has no address of their own: banning them bans their
        session (resume code) and their nick.
        """
        alice_p, alice = self.oper()
        eve_p, eve = self.connect("eve", door="onion")
        code = eve.code
        self.hub.execute(alice, Ban("eve", None, None))
        self.assertFalse(eve.connected)
        (notice,) = self.texts(alice_p)
        self.assertEqual(
            notice, f"alice banned onion session {code} and nick eve until lifted"
        )
        # Another onion user is not affected...
        zed_p, zed = self.connect("zed", door="onion")
        self.assertTrue(zed.connected)
        # ...but may not take the nick, nor resume the session.
        self.hub.execute(zed, Nick("EVE"))
        self.assertEqual(
            zed_p.take(),
            [events.Error("banned", "the nick EVE is banned; pick another")],
        )
        self.hub.execute(zed, Resume(code))
        self.assertFalse(zed.connected)

    def test_nick_pattern(self) -> None:
        """
        A pattern bans matching nicks, sending off their holders.
        """
        _, alice = self.oper()
        _, troll = self.connect("Troll42")
        self.hub.execute(alice, Ban("troll*", None, None))
        self.assertFalse(troll.connected)

    def test_bans_listed_unbanned_and_kept(self) -> None:
        """
        /bans lists bans with their number; /unban by number or by pattern
        lifts them; bans are in the store, so a restarted hub keeps them.
        """
        alice_p, alice = self.oper()
        self.hub.execute(alice, Ban("192.0.2.0/24", None, "spam"))
        self.hub.execute(alice, Ban("nick:mallory", 86400, None))
        alice_p.take()
        self.hub.execute(alice, ListBans())
        (listing,) = alice_p.take()
        assert isinstance(listing, events.Listing)
        self.assertEqual(
            listing.lines,
            (
                "#1 address 192.0.2.0/24 by alice until lifted: spam",
                "#2 nick mallory by alice for 1d",
            ),
        )

        restarted = self.make_hub()
        self.assertEqual(restarted.bans, 2)
        self.hub = restarted
        _, alice = self.oper()
        self.hub.execute(alice, Unban("#1"))
        self.hub.execute(alice, Unban("mallory"))
        self.assertEqual(self.hub.bans, 0)
        self.assertEqual(self.make_hub().bans, 0)

    def test_unban_unknown(self) -> None:
        """
        /unban of something not banned says so.
        """
        alice_p, alice = self.oper()
        self.hub.execute(alice, Unban("7"))
        self.assertEqual(alice_p.take()[0].code, "bad-arguments")  # type: ignore[attr-defined]

    def test_ban_absent_nick(self) -> None:
        """
        /ban of a nick nobody has explains how to ban the nick itself.
        """
        alice_p, alice = self.oper()
        self.hub.execute(alice, Ban("ghost", None, None))
        errors = alice_p.take()
        self.assertIn("/ban nick:ghost", errors[-1].text)  # type: ignore[attr-defined]
        self.assertEqual(self.hub.bans, 0)

    def test_operators_not_sent_off(self) -> None:
        """
        An operator caught by a wide ban is told, not thrown out.
        """
        _, alice = self.oper()
        _, bob = self.oper_as("bob")
        self.hub.execute(alice, Ban("198.51.100.0/24", None, None))
        self.assertTrue(bob.connected)
        self.assertTrue(alice.connected)

    def oper_as(self, nick: str) -> tuple[FakeParticipant, User]:
        participant, user = self.connect(nick, address="198.51.100.2")
        self.hub.execute(user, Oper("alice", PASSWORD))
        return participant, user


class MuteTests(OperatorTestCase):
    def test_mute_and_unmute(self) -> None:
        """
        A muted user's messages are refused (others see nothing) while they
        can still read; /unmute lets them talk again.
        """
        _, alice = self.oper()
        bob_p, bob = self.connect("bob")
        carol_p, _ = self.connect("carol")
        self.hub.execute(alice, Mute("bob", 600))
        bob_p.take()
        carol_p.take()
        self.hub.execute(bob, Say("hello?"))
        self.hub.execute(bob, Msg("carol", "psst"))
        self.assertEqual(carol_p.take(), [])
        errors = bob_p.take()
        self.assertEqual(
            errors[0],
            events.Error("muted", "an operator muted you for 10m; you can still read"),
        )
        self.hub.execute(alice, Say("still here"))
        self.assertEqual(len(bob_p.take()), 1)
        self.hub.execute(alice, Unmute("bob"))
        self.hub.execute(bob, Say("thanks"))
        self.assertIn("thanks", [getattr(e, "text", "") for e in carol_p.take()])

    def test_mute_survives_reconnect_and_lapses(self) -> None:
        """
        Reconnecting from the same address does not shake off a mute; it
        lapses after its duration.
        """
        _, alice = self.oper()
        _, bob = self.connect("bob")
        self.hub.execute(alice, Mute("bob", 60))
        self.hub.disconnect(bob, "gone")
        again_p, again = self.connect("bob2")
        self.hub.execute(again, Say("hi"))
        self.assertEqual(again_p.take()[0].code, "muted")  # type: ignore[attr-defined]
        self.clock.advance(61)
        self.hub.execute(again, Say("hi"))
        self.assertNotIn("muted", [getattr(e, "code", "") for e in again_p.take()])


class AnnounceMotdTests(OperatorTestCase):
    def test_announce_reaches_everyone(self) -> None:
        """
        An announcement reaches every user, in any room, on any door,
        rendered once for all of them.
        """
        _, alice = self.oper()
        others = [self.connect(n, door=d) for n, d in (("b", "web"), ("c", "onion"))]
        self.hub.execute(others[0][1], Join("#elsewhere"))
        for participant, _ in others:
            participant.take()
        self.hub.execute(alice, Announce("restart at noon"))
        notices = [p.take() for p, _ in others]
        for received in notices:
            self.assertEqual(
                received,
                [
                    events.Notice(
                        self.clock.seconds(), "announce", "alice", "restart at noon"
                    )
                ],
            )
        self.assertIs(others[0][0].renderings[-1], others[1][0].renderings[-1])

    def test_motd_set(self) -> None:
        """
        /motd set changes what /motd and new users see; everyone is told.
        """
        _, alice = self.oper()
        bob_p, bob = self.connect("bob")
        self.hub.execute(alice, SetMotd(("Be nice", "Really")))
        self.assertIn(
            "alice changed the message of the day (/motd shows it)", self.texts(bob_p)
        )
        self.hub.execute(bob, ShowMotd())
        self.assertEqual(bob_p.take(), [events.Motd(("Be nice", "Really"))])
        new = FakeParticipant()
        self.hub.connect(new)
        self.assertEqual(new.received[0].motd, ("Be nice", "Really"))  # type: ignore[attr-defined]

    def test_rehash(self) -> None:
        """
        /rehash runs the reloader and tells operators what it did.
        """
        alice_p, alice = self.oper()
        self.hub.reloader = lambda: succeed((True, "applied [server] motd"))
        self.hub.execute(alice, Rehash())
        self.assertEqual(
            self.texts(alice_p), ["alice reloaded tap.ini: applied [server] motd"]
        )

    def test_rehash_unavailable(self) -> None:
        """
        Without a reloader (tests, embedding), /rehash says it cannot.
        """
        alice_p, alice = self.oper()
        self.hub.execute(alice, Rehash())
        self.assertEqual(alice_p.take()[0].code, "bad-arguments")  # type: ignore[attr-defined]


class StatsTests(OperatorTestCase):
    def test_stats_for_anyone(self) -> None:
        """
        /stats shows users, rooms, uptime and message rates; not the
        operators' details.
        """
        bob_p, bob = self.connect("bob")
        self.clock.advance(125)
        for _ in range(3):
            self.hub.execute(bob, Say("hi"))
        bob_p.take()
        self.hub.execute(bob, ShowStats())
        (listing,) = bob_p.take()
        assert isinstance(listing, events.Listing)
        self.assertEqual(
            listing.lines,
            (
                "users: 1   rooms: 1   up 2m 5s",
                "messages per minute: 3 (last minute), 0.2 (last 15 minutes)",
            ),
        )
        self.assertNotIn("users_by_door", listing.data)

    def test_stats_for_operators(self) -> None:
        """
        Operators see doors, connections, bans and reloads too.
        """
        alice_p, alice = self.oper()
        self.connect("bob", door="web")
        alice_p.take()
        self.hub.execute(alice, ShowStats())
        (listing,) = alice_p.take()
        assert isinstance(listing, events.Listing)
        self.assertIn("users by door: telnet 1, web 1", listing.lines)
        self.assertEqual(listing.data["operators_online"], 1)


class StopTests(OperatorTestCase):
    def test_everyone_told_then_closed(self) -> None:
        """
        Stopping tells every user once, closes them as "going away", and
        finishes when their connections are gone, without telling the
        others about each one leaving.
        """
        alice_p, alice = self.connect("alice")
        bob_p, bob = self.connect("bob", door="web")
        alice_p.take()
        stopping = self.hub.stop(grace=5)
        for participant in (alice_p, bob_p):
            self.assertEqual(
                participant.take(), [events.Shutdown("the server is shutting down")]
            )
            self.assertEqual(participant.close_why, "going-away")
        self.assertNoResult(stopping)
        self.hub.disconnect(alice, "closed", clean=True)
        self.assertEqual(bob_p.take(), [])
        self.hub.disconnect(bob, "closed", clean=True)
        self.successResultOf(stopping)

    def test_stragglers_cut_after_grace(self) -> None:
        """
        Connections still open after the grace period are cut.
        """
        alice_p, _ = self.connect("alice")
        stopping = self.hub.stop(grace=5)
        self.clock.advance(4.9)
        self.assertFalse(alice_p.aborted)
        self.clock.advance(0.2)
        self.assertTrue(alice_p.aborted)
        self.successResultOf(stopping)

    def test_second_signal_cuts_at_once(self) -> None:
        """
        L{ChatFactory.cut_short} (a second SIGTERM) does not wait out the
        grace period.
        """
        alice_p, _ = self.connect("alice")
        stopping = self.hub.stop(grace=5)
        self.hub.cut_short()
        self.assertTrue(alice_p.aborted)
        self.successResultOf(stopping)

    def test_newcomer_while_stopping(self) -> None:
        """
        Someone arriving during the stop is told and closed at once.
        """
        self.connect("alice")
        self.hub.stop(grace=5)
        late = FakeParticipant()
        user = self.hub.connect(late)
        self.assertFalse(user.connected)
        self.assertEqual(late.take(), [events.Shutdown("the server is shutting down")])
        self.assertEqual(late.close_why, "going-away")


class ReconfigureTests(OperatorTestCase):
    def test_live_settings(self) -> None:
        """
        A reload's server name, MOTD and default room apply to the next
        user; history replay changes at once; nobody is disconnected.
        """
        bob_p, bob = self.connect("bob")
        self.hub.reconfigure(
            ServerConfig(
                reconnect_grace=0, name="Hub", motd=("new",), default_room="#main"
            ),
            HistoryConfig(enabled=False, replay=5),
            self.hub.settings.operators,
        )
        self.assertTrue(bob.connected)
        new = FakeParticipant()
        self.hub.connect(new)
        welcome = new.received[0]
        assert isinstance(welcome, events.Welcome)
        self.assertEqual(
            (welcome.server, welcome.motd, welcome.room), ("Hub", ("new",), "#main")
        )
        self.assertEqual(self.hub.history.replay, 5)


class RobustnessTests(OperatorTestCase):
    def test_ban_numbers_not_reused(self) -> None:
        """
        A new ban never takes the number of one lifted meanwhile, so
        C{/unban N} lifts the ban the operator saw as #N.
        """
        oper, alice = self.oper()
        self.hub.execute(alice, Ban("192.0.2.1", None, None))
        self.hub.execute(alice, Unban("1"))
        self.hub.execute(alice, Ban("192.0.2.2", None, None))
        self.hub.execute(alice, ListBans())
        listing = [e for e in oper.received if isinstance(e, events.Listing)][-1]
        self.assertEqual([b["id"] for b in listing.data["bans"]], [2])

    def test_failing_close_does_not_stop_the_stop(self) -> None:
        """
        A door that fails to close one user does not keep history from
        being written: that user is cut when the grace period ends.
        """
        broken, _ = self.connect("bob")

        def close(reason: str, why: str = "normal") -> None:
            raise RuntimeError("door broken")

        broken.close = close  # type: ignore[method-assign]
        stopping = self.hub.stop(grace=1)
        self.clock.advance(1)
        self.successResultOf(stopping)
        self.assertTrue(broken.aborted)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
