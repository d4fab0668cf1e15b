"""
Tests for registered nicks as their users notice them: L{tchat.accounts}
and the concerns it carries (L{tchat.proofs}, L{tchat.keeping},
L{tchat.credentials}, L{tchat.attention}), and the registered-nick rules
of L{tchat.naming}.

Every test drives a hub through C{hub.execute} on a L{Clock}, with its
store in memory and passwords "hashed" at once by L{FakePasswords}:
argon2 itself is tested in C{tests/test_passwords.py}, and the store's own
rules in C{tests/test_account_store.py}.
"""

from dataclasses import replace
from typing import TypeVar

from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import provider

from tchat import commands as c
from tchat import events
from tchat.accounts import CLEAR_TEXT, token_digest
from tchat.admin import make_admin_site
from tchat.config import AccountsConfig, HistoryConfig, OperatorsConfig
from tchat.history import Account, MemoryStore, Offline
from tchat.hub import ChatFactory
from tchat.model import User
from tchat.text import nick_key
from tests.support import (
    FakeParticipant,
    FakePasswords,
    Scrape,
    of,
    request,
    started_hub,
)

T = TypeVar("T")

NOW = 1_700_000_000
PASSWORD = "correct horse"
NEW_PASSWORD = "battery staple"
HOME = "192.0.2.1"
FAILED = events.Error("login-failed", "wrong nick or password")


class PageParticipant(FakeParticipant):
    """A user of the web page, which keeps login tokens."""

    keeps_tokens = True

    def __init__(self, address: str | None = HOME) -> None:
        super().__init__("web", address)


class PlainTelnet(FakeParticipant):
    """A telnet user on the plain, unencrypted port."""

    encrypted = False


class SecureTelnet(FakeParticipant):
    """A telnet user on the TLS port."""

    encrypted = True


class AccountsTestCase(SynchronousTestCase):
    """
    A hub on a L{Clock} with history and accounts in memory, and
    L{FakePasswords}.
    """

    accounts = AccountsConfig()
    operators = OperatorsConfig()
    history = HistoryConfig(keep=100, replay=5)

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.participants: list[FakeParticipant] = []
        self.store = MemoryStore(self.history)
        self.passwords = FakePasswords()
        self.hub = self.make_hub()

    def make_hub(
        self,
        accounts: AccountsConfig | None = None,
        operators: OperatorsConfig | None = None,
    ) -> ChatFactory:
        return started_hub(
            self,
            self.clock,
            history=self.history,
            store=self.store,
            accounts=accounts if accounts is not None else self.accounts,
            operators=operators if operators is not None else self.operators,
            passwords=self.passwords,
        )

    def arrive(
        self,
        nick: str | None = None,
        participant: FakeParticipant | None = None,
        address: str | None = HOME,
    ) -> tuple[FakeParticipant, User]:
        """
        Someone connects (and takes C{nick}); what everyone was told so far
        is forgotten.
        """
        if participant is None:
            participant = FakeParticipant("telnet", address)
        user = self.hub.connect(participant)
        self.participants.append(participant)
        if nick is not None:
            self.do(user, c.Nick(nick))
            self.assertEqual(user.nick, nick, participant.received)
        self.forget()
        return participant, user

    def registered(
        self,
        nick: str,
        password: str = PASSWORD,
        participant: FakeParticipant | None = None,
        address: str | None = HOME,
    ) -> tuple[FakeParticipant, User]:
        """Someone who took C{nick} and registered it, logged in to it."""
        participant, user = self.arrive(nick, participant, address)
        self.do(user, c.Register(password))
        self.assertTrue(user.registered, participant.received)
        self.forget()
        return participant, user

    def do(self, user: User, *commands: c.Command) -> None:
        for command in commands:
            self.hub.execute(user, command)

    def forget(self) -> None:
        """Forget what every user was told so far."""
        for participant in self.participants:
            participant.take()

    def stored(self, nick: str) -> Account | None:
        return self.successResultOf(self.store.accounts.get(nick_key(nick)))

    def error(self, participant: FakeParticipant) -> events.Error:
        """The one error among what C{participant} was told."""
        (error,) = of(events.Error, participant.take())
        return error

    def statuses(self, participant: FakeParticipant) -> list[str]:
        return [s.text for s in of(events.Status, participant.take())]

    def logged_in(self, participant: FakeParticipant) -> events.LoggedIn:
        """The one login among what C{participant} was told."""
        (login,) = of(events.LoggedIn, participant.take())
        return login


class RegisterTests(AccountsTestCase):
    """
    C{/register PASSWORD}: the nick one has becomes theirs.
    """

    def test_registered(self) -> None:
        """
        The user is logged in to their new account, told the nick is
        theirs; their room sees them marked registered.  The store keeps
        the hash, never the password.
        """
        bob_p, _ = self.arrive("bob")
        alice_p, alice = self.arrive("alice")
        self.do(alice, c.Register(PASSWORD))
        login = events.Presence(NOW, "login", "alice", "telnet", registered=True)
        self.assertEqual(
            alice_p.take(),
            [login, events.LoggedIn("alice", None, None, None, True)],
        )
        self.assertEqual(bob_p.take(), [login])
        account = self.stored("alice")
        assert account is not None
        self.assertEqual(
            (account.name, account.hash, account.created, account.last_login),
            ("alice", f"v1${PASSWORD}", NOW, NOW),
        )
        self.assertTrue(alice.registered)

    def test_guest_nick(self) -> None:
        """
        A guest must choose a nick first, and not one that looks like a
        guest's.
        """
        refused = events.Error(
            "bad-arguments",
            "a guest nick cannot be registered: /nick NAME first, then "
            "/register PASSWORD",
        )
        participant, guest = self.arrive()
        self.do(guest, c.Register(PASSWORD))
        self.assertEqual(self.error(participant), refused)
        self.assertIsNone(self.stored(guest.nick))
        self.do(guest, c.Nick("Guest-Beef"), c.Register(PASSWORD))
        self.assertEqual(self.error(participant), refused)
        self.assertIsNone(self.stored("Guest-Beef"))

    def test_short_password(self) -> None:
        """
        A password shorter than C{min_password} is refused; one as long is
        taken.
        """
        participant, alice = self.arrive("alice")
        self.do(alice, c.Register("seven77"))
        self.assertEqual(
            self.error(participant),
            events.Error(
                "password-too-short", "a password needs at least 8 characters"
            ),
        )
        self.assertFalse(alice.registered)
        self.do(alice, c.Register("eight888"))
        self.assertTrue(alice.registered)

    def test_already_logged_in(self) -> None:
        """
        A user logged in already cannot register again.
        """
        participant, alice = self.registered("alice")
        self.do(alice, c.Register(PASSWORD))
        self.assertEqual(
            self.error(participant),
            events.Error(
                "already-registered",
                "you are logged in to the account alice already",
            ),
        )

    def test_registered_meanwhile(self) -> None:
        """
        A nick registered by someone else (on another node) while the user
        held it is not registered again: they are told to log in.
        """
        participant, alice = self.arrive("alice")
        self.store.accounts.create(Account(nick_key("alice"), "alice", "v1$x", NOW))
        self.do(alice, c.Register(PASSWORD))
        self.assertEqual(
            self.error(participant),
            events.Error(
                "already-registered",
                "alice is registered already; /login alice PASSWORD if it is yours",
            ),
        )
        self.assertFalse(alice.registered)
        self.assertEqual(self.stored("alice"), Account("allce", "alice", "v1$x", NOW))

    def test_disabled(self) -> None:
        """
        With C{[accounts] enabled = false} nobody registers, but registered
        nicks still log in.
        """
        self.registered("alice")
        self.hub = self.make_hub(AccountsConfig(enabled=False))
        participant, bob = self.arrive("bob")
        self.do(bob, c.Register(PASSWORD))
        self.assertEqual(
            self.error(participant),
            events.Error(
                "registrations-limited",
                "this server takes no new accounts; registered nicks can still log in",
            ),
        )
        self.do(bob, c.Login("alice", PASSWORD))
        self.assertEqual(bob.nick, "alice")
        self.assertTrue(bob.registered)

    def test_busy(self) -> None:
        """
        When the password checks are overloaded, the user is asked to try
        again, and nothing is registered.
        """
        participant, alice = self.arrive("alice")
        self.passwords.busy = True
        self.do(alice, c.Register(PASSWORD))
        self.assertEqual(
            self.error(participant),
            events.Error(
                "account-unavailable",
                "the server is busy checking passwords; try again in a moment",
            ),
        )
        self.assertIsNone(self.stored("alice"))

    def test_left_while_hashing(self) -> None:
        """
        A user who leaves while their password is hashed registers nothing.
        """
        participant, alice = self.arrive("alice")
        self.passwords.hold()
        self.do(alice, c.Register(PASSWORD))
        self.hub.disconnect(alice, "gone")
        self.passwords.release()
        self.assertIsNone(self.stored("alice"))
        self.assertEqual(participant.take(), [])

    def test_commands_wait(self) -> None:
        """
        Commands sent while the password is hashed run after the
        registration, in order.
        """
        participant, alice = self.arrive("alice")
        self.passwords.hold()
        self.do(alice, c.Register(PASSWORD), c.Away("lunch"))
        self.assertIsNone(alice.away)
        self.passwords.release()
        self.assertEqual(
            [type(e) for e in participant.take()],
            [events.Presence, events.LoggedIn, events.Status],
        )
        self.assertEqual(alice.away, "lunch")


class RegistrationPaceTests(AccountsTestCase):
    """
    One address registers C{registrations_per_hour} accounts an hour;
    onion users together, and an exempt address, ten times as many.
    """

    accounts = AccountsConfig(registrations_per_hour=2)

    def test_per_address(self) -> None:
        """
        Past the limit an address waits for the oldest registration to be
        an hour old; another address does not wait.
        """
        self.registered("alice")
        self.clock.advance(600)
        self.registered("bob")
        participant, carol = self.arrive("carol")
        self.do(carol, c.Register(PASSWORD))
        self.assertEqual(
            self.error(participant),
            events.Error(
                "registrations-limited",
                "too many accounts were registered from your address lately; "
                "try again in 50m",
            ),
        )
        self.assertFalse(carol.registered)
        self.assertEqual(self.hub.metrics.rate_limited, {"register": 1})
        self.registered("dave", address="198.51.100.7")
        self.clock.advance(3000)
        self.do(carol, c.Register(PASSWORD))
        self.assertTrue(carol.registered)

    def test_failures_not_counted(self) -> None:
        """
        Only registrations made count: refused ones do not.
        """
        participant, alice = self.arrive("alice")
        for _ in range(3):
            self.do(alice, c.Register("short"))
        self.registered("bob")
        self.do(alice, c.Register(PASSWORD))
        self.assertTrue(alice.registered)

    def test_onion_shares_more(self) -> None:
        """
        Onion users, who all come from the local tor, register ten times
        as many together; then every one of them waits.
        """
        for n in range(20):
            self.registered(f"onion{n}", address=None)
        participant, late = self.arrive("late", address=None)
        self.do(late, c.Register(PASSWORD))
        self.assertEqual(self.error(participant).code, "registrations-limited")

    def test_exempt_shares_more(self) -> None:
        """
        An exempt address (a proxy many share) registers ten times as many.
        """
        for n in range(20):
            self.registered(f"local{n}", address="127.0.0.1")
        participant, late = self.arrive("late", address="127.0.0.1")
        self.do(late, c.Register(PASSWORD))
        self.assertEqual(self.error(participant).code, "registrations-limited")


class ClearTextTests(AccountsTestCase):
    """
    A password sent over plain telnet crossed the network readable: its
    sender is told so.
    """

    def test_plain_telnet(self) -> None:
        """
        On the plain telnet port, C{/register}, C{/login}, C{/password}
        and C{/unregister} each warn, first.
        """
        participant, alice = self.arrive("alice", PlainTelnet("telnet", HOME))
        for command in (
            c.Register(PASSWORD),
            c.Password(PASSWORD, NEW_PASSWORD),
            c.Login("alice", NEW_PASSWORD),
            c.Unregister(NEW_PASSWORD),
        ):
            self.do(alice, command)
            self.assertEqual(participant.take()[0], events.Status(CLEAR_TEXT))

    def test_encrypted(self) -> None:
        """
        The TLS telnet port, the onion service and the page are not warned.
        """
        for participant in (
            SecureTelnet("telnet", HOME),
            FakeParticipant("onion", None),
            PageParticipant(),
        ):
            _, user = self.arrive(f"u{len(self.participants)}", participant)
            self.do(user, c.Register(PASSWORD))
            self.assertEqual(of(events.Status, participant.take()), [])


class LoginTests(AccountsTestCase):
    """
    C{/login NICK PASSWORD} from any door.
    """

    def test_renamed(self) -> None:
        """
        A guest who logs in takes the account's nick as registered,
        whatever case they typed; their room sees them take it, marked
        registered; they are told when they last logged in.
        """
        _, alice = self.registered("alice")
        self.do(alice, c.Quit(None))
        bob_p, _ = self.arrive("bob")
        self.clock.advance(60)
        participant, guest = self.arrive()
        old = guest.nick
        self.do(guest, c.Login("ALICE", PASSWORD))
        renamed = events.Presence(
            NOW + 60, "nick", old, "telnet", new_nick="alice", registered=True
        )
        self.assertEqual(
            participant.take(),
            [renamed, events.LoggedIn("alice", None, None, NOW, False)],
        )
        self.assertEqual(bob_p.take(), [renamed])
        self.assertEqual((guest.nick, guest.registered), ("alice", True))
        account = self.stored("alice")
        assert account is not None
        self.assertEqual(account.last_login, NOW + 60)

    def test_wrong_password_or_unknown_nick(self) -> None:
        """
        A wrong password and a nick nobody registered get the same answer,
        and cost a check each: nobody learns which nicks are registered.
        """
        _, alice = self.registered("alice")
        self.do(alice, c.Quit(None))
        participant, guest = self.arrive()
        nick = guest.nick
        self.do(guest, c.Login("alice", "not the password"))
        self.assertEqual(self.error(participant), FAILED)
        self.do(guest, c.Login("nobody", PASSWORD))
        self.assertEqual(self.error(participant), FAILED)
        self.assertEqual((guest.nick, guest.registered), (nick, False))
        self.assertEqual(self.passwords.checked, 2)
        self.assertEqual(self.hub.metrics.dropped["login-failed"], 2)

    def test_takes_over(self) -> None:
        """
        Logging in from a new connection while the account's session is
        open elsewhere carries that session on there: the old connection is
        told why and closed, the new one is the same user (nick, rooms,
        account).
        """
        bob_p, _ = self.arrive("bob")
        old_p, old = self.registered("alice")
        self.do(old, c.Join("#dev"))
        self.forget()
        participant, new = self.arrive(address="198.51.100.7")
        guest = new.nick
        self.do(new, c.Login("alice", PASSWORD))
        self.assertEqual(
            of(events.Goodbye, old_p.take()),
            [events.Goodbye("logged in from another connection", elsewhere=True)],
        )
        self.assertEqual(old_p.closed, "logged in from another connection")
        self.assertIsNone(old_p.user)
        self.assertIs(participant.user, old)
        self.assertFalse(new.connected)
        self.assertTrue(old.connected)
        self.assertEqual((old.nick, old.registered), ("alice", True))
        self.assertEqual([r.name for r in old.rooms], ["#lobby", "#dev"])
        (continued,) = of(events.Continued, participant.take())
        self.assertEqual(continued.rooms, ("#lobby", "#dev"))
        self.assertEqual(continued.account, "alice")
        # Only the guest is seen go (the reconnect grace is off here, so it
        # was announced at once; see test_continuity for it on).
        self.assertEqual(
            [(p.kind, p.nick, p.reason) for p in of(events.Presence, bob_p.take())],
            [("quit", guest, "came back as alice")],
        )

    def test_ignores_carried(self) -> None:
        """
        The nicks ignored with the account are ignored again at login, with
        those the user ignored as a guest added to the account's.
        """
        _, alice = self.registered("alice")
        self.do(alice, c.Ignore("bob"), c.Quit(None))
        participant, guest = self.arrive()
        self.do(guest, c.Ignore("carol"), c.Login("alice", PASSWORD))
        self.assertEqual(
            guest.ignoring, {nick_key("bob"): "bob", nick_key("carol"): "carol"}
        )
        account = self.stored("alice")
        assert account is not None
        self.assertEqual(account.ignores, ("bob", "carol"))

    def test_rehashed(self) -> None:
        """
        A password hashed with older parameters is hashed again at login,
        and the new hash kept.
        """
        _, alice = self.registered("alice")
        self.do(alice, c.Quit(None))
        self.passwords.version = 2
        participant, guest = self.arrive()
        self.do(guest, c.Login("alice", PASSWORD))
        self.assertTrue(guest.registered)
        account = self.stored("alice")
        assert account is not None
        self.assertEqual(account.hash, f"v2${PASSWORD}")
        self.assertEqual(guest.account, account)

    def test_identify(self) -> None:
        """
        C{/identify PASSWORD} logs in to the current nick's account: a
        user logged in to it already is told so; a guest nick has none.
        """
        participant, alice = self.registered("alice")
        self.do(alice, c.Login(None, PASSWORD))
        self.assertEqual(
            participant.take(),
            [events.Status("you are logged in as alice already")],
        )
        guest_p, guest = self.arrive()
        self.do(guest, c.Login(None, PASSWORD))
        self.assertEqual(self.error(guest_p), FAILED)

    def test_to_another_account(self) -> None:
        """
        A user logged in who logs in to another account is logged out of
        the first, which stays registered.
        """
        _, bob = self.registered("bob")
        self.do(bob, c.Quit(None))
        participant, alice = self.registered("alice")
        self.do(alice, c.Login("bob", PASSWORD))
        self.assertEqual((alice.nick, alice.registered), ("bob", True))
        self.assertIsNotNone(self.stored("alice"))
        self.assertEqual(self.logged_in(participant).name, "bob")

    def test_busy_is_not_a_guess(self) -> None:
        """
        A check the server was too busy to make is refused, and does not
        count as a failed login.
        """
        self.registered("alice")
        participant, guest = self.arrive()
        self.passwords.busy = True
        for _ in range(10):
            self.do(guest, c.Login("alice", PASSWORD))
            self.assertEqual(self.error(participant).code, "account-unavailable")
        self.passwords.busy = False
        self.do(guest, c.Login("alice", PASSWORD))
        self.assertEqual(self.logged_in(participant).name, "alice")

    def test_left_while_checking(self) -> None:
        """
        A user who leaves while their password is checked is not logged in,
        and the connection holding the nick stays.
        """
        alice_p, alice = self.registered("alice")
        participant, guest = self.arrive()
        self.passwords.hold()
        self.do(guest, c.Login("alice", PASSWORD))
        self.hub.disconnect(guest, "gone")
        self.passwords.release()
        self.assertTrue(alice.connected)
        self.assertIsNone(alice_p.closed)
        self.assertFalse(guest.registered)


class OperatorAccountTests(AccountsTestCase):
    """
    C{[operators] NAME = account}: the account's owner is that operator.
    """

    operators = OperatorsConfig((("alice", "account"),))

    def test_login(self) -> None:
        """
        Logging in makes the owner operator, and tells them; logging out
        ends it.
        """
        _, alice = self.registered("alice")
        self.do(alice, c.Quit(None))
        participant, guest = self.arrive()
        self.do(guest, c.Login("alice", PASSWORD))
        self.assertEqual(guest.operator, "alice")
        self.assertIn(
            "you are now an operator (alice); /help lists the operator commands",
            self.statuses(participant),
        )
        self.do(guest, c.Logout())
        self.assertIsNone(guest.operator)

    def test_other_accounts(self) -> None:
        """
        The owner of another account is no operator.
        """
        _, bob = self.registered("bob")
        self.assertIsNone(bob.operator)


class GuessingTests(AccountsTestCase):
    """
    Failed logins make the next ones wait, per address and per account,
    but the owner always gets in.
    """

    def setUp(self) -> None:
        super().setUp()
        _, alice = self.registered("alice")
        self.do(alice, c.Quit(None))

    def test_per_address(self) -> None:
        """
        After five failed logins from one address, the next waits a second
        (the user is told), and with the right password then succeeds.
        """
        participant, guest = self.arrive()
        for _ in range(5):
            self.do(guest, c.Login("alice", "guess"))
            self.assertEqual(self.error(participant), FAILED)
        self.do(guest, c.Login("alice", PASSWORD))
        self.assertEqual(
            participant.take(),
            [events.Status("too many failed logins lately: yours is checked in 1s")],
        )
        self.assertFalse(guest.registered)
        self.clock.advance(1)
        self.assertEqual(self.logged_in(participant).name, "alice")
        self.assertEqual(self.hub.metrics.rate_limited, {"login": 1})

    def test_doubles(self) -> None:
        """
        Each further failure doubles the wait.
        """
        participant, guest = self.arrive()
        for _ in range(5):
            self.do(guest, c.Login("nobody", "guess"))
        self.do(guest, c.Login("nobody", "guess"))
        self.clock.advance(1)
        participant.take()
        self.do(guest, c.Login("alice", PASSWORD))
        self.assertEqual(
            self.statuses(participant),
            ["too many failed logins lately: yours is checked in 2s"],
        )
        self.clock.advance(2)
        self.assertTrue(guest.registered)

    def test_other_address(self) -> None:
        """
        Another address is not slowed by one address's failures.
        """
        guesser_p, guesser = self.arrive()
        for _ in range(6):
            self.do(guesser, c.Login("nobody", "guess"))
        participant, guest = self.arrive(address="198.51.100.7")
        self.do(guest, c.Login("alice", PASSWORD))
        self.assertTrue(guest.registered)

    def test_per_account(self) -> None:
        """
        After ten failed logins to one account from ten addresses, the next
        login to it waits, from anywhere; other accounts do not.
        """
        for n in range(10):
            participant, guesser = self.arrive(address=f"203.0.113.{n}")
            self.do(guesser, c.Login("alice", "guess"))
            self.assertEqual(self.error(participant), FAILED)
        participant, owner = self.arrive(address="198.51.100.7")
        self.do(owner, c.Login("alice", PASSWORD))
        self.assertEqual(
            self.statuses(participant),
            ["too many failed logins lately: yours is checked in 1s"],
        )
        other_p, other = self.arrive(address="198.51.100.8")
        self.do(other, c.Login("bob", PASSWORD))
        self.assertEqual(self.error(other_p), FAILED)
        self.clock.advance(1)
        self.assertTrue(owner.registered)


class TokenTests(AccountsTestCase):
    """
    The page's "stay logged in": a login token per page, checked by its
    digest.
    """

    def test_issued_to_the_page(self) -> None:
        """
        The page gets a token valid for C{token_ttl}; the store keeps its
        digest only.  Telnet gets none.
        """
        participant, alice = self.arrive("alice", PageParticipant())
        self.do(alice, c.Register(PASSWORD))
        login = self.logged_in(participant)
        assert login.token is not None
        self.assertEqual(login.expires, NOW + AccountsConfig().token_ttl)
        self.assertEqual(
            self.successResultOf(
                self.store.accounts.token_holder(token_digest(login.token), NOW)
            ),
            "allce",
        )
        self.assertEqual(
            self.successResultOf(self.store.accounts.token_holder(login.token, NOW)),
            None,
        )
        telnet_p, bob = self.arrive("bob")
        self.do(bob, c.Register(PASSWORD))
        self.assertIsNone(self.logged_in(telnet_p).token)

    def token(self) -> str:
        """alice registered on a page, which was closed: its token."""
        participant, alice = self.arrive("alice", PageParticipant())
        self.do(alice, c.Register(PASSWORD))
        token = self.logged_in(participant).token
        assert token is not None
        self.do(alice, c.Quit(None))
        return token

    def test_login(self) -> None:
        """
        A page that comes back with its token is logged in, and given no
        new token.
        """
        token = self.token()
        participant, guest = self.arrive(participant=PageParticipant())
        self.do(guest, c.TokenLogin(token))
        self.assertEqual((guest.nick, guest.registered), ("alice", True))
        self.assertEqual(
            self.logged_in(participant), events.LoggedIn("alice", None, None, NOW)
        )

    def test_unknown(self) -> None:
        """
        A token the server never issued is refused.
        """
        self.token()
        participant, guest = self.arrive(participant=PageParticipant())
        self.do(guest, c.TokenLogin("made up"))
        self.assertEqual(
            self.error(participant),
            events.Error(
                "token-invalid", "your saved login expired or was ended; log in again"
            ),
        )
        self.assertFalse(guest.registered)

    def test_expired(self) -> None:
        """
        A token is refused once C{token_ttl} has passed.
        """
        token = self.token()
        self.clock.advance(AccountsConfig().token_ttl)
        participant, guest = self.arrive(participant=PageParticipant())
        self.do(guest, c.TokenLogin(token))
        self.assertEqual(self.error(participant).code, "token-invalid")
        self.assertFalse(guest.registered)


class LogoutTests(AccountsTestCase):
    """
    C{/logout}: back to a guest nick; the registered one stays protected.
    """

    def test_logout(self) -> None:
        """
        The user gets a guest nick, the room sees the change unmarked, the
        page's token is ended, and the nick stays the account's.
        """
        bob_p, _ = self.arrive("bob")
        participant, alice = self.arrive("alice", PageParticipant())
        self.do(alice, c.Register(PASSWORD))
        token = self.logged_in(participant).token
        assert token is not None
        self.forget()
        self.do(alice, c.Logout())
        guest = alice.nick
        self.assertRegex(guest, r"^guest-[0-9a-f]{4}$")
        renamed = events.Presence(NOW, "nick", "alice", "web", new_nick=guest)
        self.assertEqual(
            participant.take(), [renamed, events.LoggedOut(guest, "you logged out")]
        )
        self.assertEqual(bob_p.take(), [renamed])
        self.assertFalse(alice.registered)
        self.do(alice, c.Nick("alice"))
        self.assertEqual(self.error(participant).code, "nick-registered")
        page_p, page = self.arrive(participant=PageParticipant())
        self.do(page, c.TokenLogin(token))
        self.assertEqual(self.error(page_p).code, "token-invalid")
        self.assertIsNotNone(self.stored("alice"))

    def test_not_logged_in(self) -> None:
        """
        A guest cannot log out.
        """
        participant, guest = self.arrive()
        nick = guest.nick
        self.do(guest, c.Logout())
        self.assertEqual(
            self.error(participant),
            events.Error(
                "not-logged-in",
                "you are not logged in: /login NICK PASSWORD, or /register PASSWORD",
            ),
        )
        self.assertEqual(guest.nick, nick)


class PasswordTests(AccountsTestCase):
    """
    C{/password OLD NEW}.
    """

    def test_wrong_old(self) -> None:
        """
        The old password must be right; the hash is unchanged otherwise.
        """
        participant, alice = self.registered("alice")
        self.do(alice, c.Password("not it at all", NEW_PASSWORD))
        self.assertEqual(self.error(participant), FAILED)
        account = self.stored("alice")
        assert account is not None
        self.assertEqual(account.hash, f"v1${PASSWORD}")

    def test_changed(self) -> None:
        """
        The new password logs in from then on; the old one does not.
        """
        participant, alice = self.registered("alice")
        self.do(alice, c.Password(PASSWORD, NEW_PASSWORD))
        self.assertEqual(
            participant.take(),
            [
                events.Status(
                    "your password is changed; every other saved login (pages "
                    "that kept you logged in) is ended"
                )
            ],
        )
        self.do(alice, c.Quit(None))
        guest_p, guest = self.arrive()
        self.do(guest, c.Login("alice", PASSWORD))
        self.assertEqual(self.error(guest_p), FAILED)
        self.do(guest, c.Login("alice", NEW_PASSWORD))
        self.assertTrue(guest.registered)

    def test_tokens_ended(self) -> None:
        """
        Every saved login ends, this page's included, which is given a new
        token.
        """
        first_p, first = self.arrive("alice", PageParticipant())
        self.do(first, c.Register(PASSWORD))
        first_token = self.logged_in(first_p).token
        second_p, fresh = self.arrive(participant=PageParticipant())
        self.do(fresh, c.Login("alice", PASSWORD))
        second_token = self.logged_in(second_p).token
        # The second page carries on the first one's session.
        second = second_p.user
        assert second is first
        self.do(second, c.Password(PASSWORD, NEW_PASSWORD))
        login = self.logged_in(second_p)
        self.assertEqual(login.name, "alice")
        assert first_token and second_token and login.token
        self.assertEqual(
            self.successResultOf(self.store.accounts.tokens(nick_key("alice"), NOW)),
            1,
        )
        self.do(second, c.Quit(None))
        for token, works in (
            (first_token, False),
            (second_token, False),
            (login.token, True),
        ):
            page_p, page = self.arrive(participant=PageParticipant())
            self.do(page, c.TokenLogin(token))
            self.assertEqual(page.registered, works)
            self.do(page, c.Quit(None))

    def test_short(self) -> None:
        """
        The new password must be long enough.
        """
        participant, alice = self.registered("alice")
        self.do(alice, c.Password(PASSWORD, "short"))
        self.assertEqual(self.error(participant).code, "password-too-short")

    def test_not_logged_in(self) -> None:
        """
        A guest has no password to change.
        """
        participant, guest = self.arrive("bob")
        self.do(guest, c.Password(PASSWORD, NEW_PASSWORD))
        self.assertEqual(self.error(participant).code, "not-logged-in")


class UnregisterTests(AccountsTestCase):
    """
    C{/unregister PASSWORD}: the account, and all kept for it, go.
    """

    def test_wrong_password(self) -> None:
        """
        The password must be right; the account stays otherwise.
        """
        participant, alice = self.registered("alice")
        self.do(alice, c.Unregister("not it at all"))
        self.assertEqual(self.error(participant), FAILED)
        self.assertIsNotNone(self.stored("alice"))
        self.assertTrue(alice.registered)

    def test_deleted(self) -> None:
        """
        The user becomes a guest, told why; the account, its messages,
        mentions and tokens are gone, and the nick is free for anyone.
        """
        participant, alice = self.arrive("alice", PageParticipant())
        self.do(alice, c.Register(PASSWORD))
        key = nick_key("alice")
        self.store.accounts.leave_message(
            key, Offline(NOW, "bob", "telnet", "red", "hi"), 10, NOW + 60
        )
        self.store.accounts.add_mentions(
            key, [events.Mention(NOW, "#lobby", 1, "bob", "alice?")], 10
        )
        participant.take()
        self.do(alice, c.Unregister(PASSWORD))
        guest = alice.nick
        self.assertEqual(
            of(events.LoggedOut, participant.take()),
            [
                events.LoggedOut(
                    guest,
                    "the account alice is deleted, with everything kept for it",
                )
            ],
        )
        self.assertFalse(alice.registered)
        self.assertIsNone(self.stored("alice"))
        accounts = self.store.accounts
        self.assertEqual(self.successResultOf(accounts.waiting(key, NOW)), 0)
        self.assertEqual(self.successResultOf(accounts.mentions(key)), [])
        self.assertEqual(self.successResultOf(accounts.tokens(key, NOW)), 0)
        _, bob = self.arrive("alice")
        self.assertEqual(bob.nick, "alice")

    def test_not_logged_in(self) -> None:
        """
        A guest has no account to delete.
        """
        participant, guest = self.arrive("bob")
        self.do(guest, c.Unregister(PASSWORD))
        self.assertEqual(self.error(participant).code, "not-logged-in")


class NickTests(AccountsTestCase):
    """
    A registered nick, and anything that looks like it, is its owner's.
    """

    def test_offline(self) -> None:
        """
        While its owner is away, a registered nick is refused in any case,
        and so is a look-alike of it, saying what it looks like.
        """
        _, alice = self.registered("alice")
        self.do(alice, c.Quit(None))
        participant, bob = self.arrive("bob")
        for name, said in (
            ("alice", "alice is registered"),
            ("ALICE", "ALICE is registered"),
            ("AIice", "AIice is registered: it looks like alice"),
        ):
            self.do(bob, c.Nick(name))
            error = self.error(participant)
            self.assertEqual(
                (error.code, error.text),
                ("nick-registered", f"{said}; if it is yours, /login alice PASSWORD"),
            )
            self.assertEqual(error.name, "alice")
        self.do(bob, c.Nick("\u0430lice"))
        self.assertEqual(self.error(participant).code, "nick-invalid")
        self.assertEqual(bob.nick, "bob")

    def test_online(self) -> None:
        """
        While its owner is here, it is taken.
        """
        self.registered("alice")
        participant, bob = self.arrive("bob")
        self.do(bob, c.Nick("Alice"))
        self.assertEqual(self.error(participant).code, "nick-taken")
        self.assertEqual(bob.nick, "bob")

    def test_owner_changes_case(self) -> None:
        """
        Its owner may write it in another case, and stays logged in.
        """
        _, alice = self.registered("alice")
        self.do(alice, c.Nick("ALICE"))
        self.assertEqual((alice.nick, alice.registered), ("ALICE", True))

    def test_owner_keeps_it(self) -> None:
        """
        A logged-in user cannot take another nick without logging out.
        """
        participant, alice = self.registered("alice")
        self.do(alice, c.Nick("alicia"))
        self.assertEqual(
            self.error(participant),
            events.Error(
                "nick-registered",
                "you are logged in as alice; /logout first to take another nick",
            ),
        )
        self.assertEqual(alice.nick, "alice")


class OfflineMessageTests(AccountsTestCase):
    """
    Private messages to a registered nick whose owner is away are kept for
    them.
    """

    def setUp(self) -> None:
        super().setUp()
        _, alice = self.registered("alice")
        self.do(alice, c.Quit(None))
        self.bob_p, self.bob = self.arrive("bob")

    def login(self) -> FakeParticipant:
        participant, guest = self.arrive(address="198.51.100.7")
        self.do(guest, c.Login("alice", PASSWORD))
        self.assertTrue(guest.registered)
        return participant

    def test_kept(self) -> None:
        """
        The sender sees their message, and is told it is kept and for how
        long.
        """
        self.do(self.bob, c.Msg("alice", "see you at six"))
        sent, status = self.bob_p.take()
        assert isinstance(sent, events.PrivateMessage)
        self.assertEqual(
            (sent.recipient, sent.text, sent.outgoing),
            ("alice", "see you at six", True),
        )
        self.assertEqual(
            status,
            events.Status(
                "alice is offline: your message is kept for them until they log "
                "in (for 30d at most)"
            ),
        )

    def test_delivered_at_login(self) -> None:
        """
        At login the owner gets the messages kept, marked offline, with
        when they were sent; once only.
        """
        self.do(self.bob, c.Msg("alice", "one"))
        self.clock.advance(3600)
        self.do(self.bob, c.Msg("ALICE", "two"))
        self.clock.advance(3600)
        participant = self.login()
        self.assertEqual(
            [
                (m.ts, m.sender, m.text, m.outgoing, m.offline)
                for m in of(events.PrivateMessage, participant.received)
            ],
            [
                (NOW, "bob", "one", False, True),
                (NOW + 3600, "bob", "two", False, True),
            ],
        )
        self.assertEqual(
            self.successResultOf(self.store.accounts.waiting(nick_key("alice"), NOW)),
            0,
        )

    def test_mailbox_full(self) -> None:
        """
        Past C{offline_messages} the sender is told theirs was not kept.
        """
        self.hub = self.make_hub(AccountsConfig(offline_messages=2))
        bob_p, bob = self.arrive("bob2")
        self.do(bob, c.Msg("alice", "one"), c.Msg("alice", "two"))
        bob_p.take()
        self.do(bob, c.Msg("alice", "three"))
        self.assertEqual(
            bob_p.take(),
            [
                events.Error(
                    "mailbox-full",
                    "alice is offline and has as many messages waiting as are "
                    "kept; yours was not kept",
                )
            ],
        )

    def test_expired(self) -> None:
        """
        A message kept longer than C{offline_ttl} is not delivered.
        """
        self.hub = self.make_hub(AccountsConfig(offline_ttl=3600))
        _, bob = self.arrive("bob2")
        self.do(bob, c.Msg("alice", "old news"))
        self.clock.advance(3600)
        self.do(bob, c.Msg("alice", "fresh"))
        participant = self.login()
        self.assertEqual(
            [m.text for m in of(events.PrivateMessage, participant.received)],
            ["fresh"],
        )

    def test_nobody(self) -> None:
        """
        A nick that is neither here nor registered is nobody.
        """
        self.do(self.bob, c.Msg("carol", "hi"))
        self.assertEqual(
            self.error(self.bob_p),
            events.Error("no-such-nick", "nobody here is called carol"),
        )

    def test_ignored_sender(self) -> None:
        """
        The messages of a sender the owner ignores are not delivered to
        them; the sender is not told.
        """
        _, alice = self.arrive(address="198.51.100.7")
        self.do(alice, c.Login("alice", PASSWORD), c.Ignore("bob"), c.Quit(None))
        self.forget()
        self.do(self.bob, c.Msg("alice", "you ignore me"))
        self.assertEqual(
            [type(e) for e in self.bob_p.take()],
            [events.PrivateMessage, events.Status],
        )
        _, carol = self.arrive("carol")
        self.do(carol, c.Msg("alice", "not me"))
        participant = self.login()
        self.assertEqual(
            [m.text for m in of(events.PrivateMessage, participant.received)],
            ["not me"],
        )


class MentionTests(AccountsTestCase):
    """
    Lines naming a registered user in their rooms while they were away
    are found at their login.
    """

    def setUp(self) -> None:
        super().setUp()
        self.alice_p, self.alice = self.registered("alice")
        self.do(self.alice, c.Join("#dev"))
        self.bob_p, self.bob = self.arrive("bob")
        self.do(self.bob, c.Join("#dev"), c.Join("#lobby"))

    def say(self, user: User, text: str, room: str = "#lobby") -> None:
        self.do(user, c.Say(text, room))
        self.clock.advance(1)

    def login(self) -> list[object]:
        participant, guest = self.arrive(address="198.51.100.7")
        self.do(guest, c.Login("alice", PASSWORD))
        self.assertTrue(guest.registered)
        self.guest = guest
        return participant.take()

    def test_found(self) -> None:
        """
        Lines naming her as a word of its own, in any case, in any of her
        rooms, said after she left, are given at login, oldest first;
        C{/mentions} gives them again.
        """
        self.say(self.bob, "alice: before you left")
        self.do(self.alice, c.Quit(None))
        start = self.clock.seconds()
        for text, room in (
            ("hi alice", "#lobby"),
            ("ALICE, look", "#dev"),
            ("malice aforethought", "#lobby"),
            ("alice-bot is down", "#lobby"),
            ("alice_2 is someone else", "#dev"),
            ("where is alice?", "#dev"),
        ):
            self.say(self.bob, text, room)
        self.do(self.bob, c.Me("waves at alice"))
        received = self.login()
        found = (
            events.Mention(start, "#lobby", 2, "bob", "hi alice"),
            events.Mention(start + 1, "#dev", 1, "bob", "ALICE, look"),
            events.Mention(start + 5, "#dev", 3, "bob", "where is alice?"),
            events.Mention(start + 6, "#lobby", 5, "bob", "waves at alice", True),
        )
        self.assertEqual(of(events.Mentions, received), [events.Mentions(found, True)])
        participant = self.participants[-1]
        self.do(self.guest, c.ShowMentions())
        self.assertEqual(participant.take(), [events.Mentions(found)])

    def test_none(self) -> None:
        """
        Nothing is told when nobody named her.
        """
        self.do(self.alice, c.Quit(None))
        self.say(self.bob, "quiet day")
        self.assertEqual(of(events.Mentions, self.login()), [])

    def test_own_lines(self) -> None:
        """
        Her own lines that name her are no mentions.
        """
        self.say(self.alice, "alice was here")
        self.say(self.bob, "bye alice")
        self.do(self.alice, c.Quit(None))
        account = self.stored("alice")
        assert account is not None
        # Her rooms as if she had left before both lines were said.
        rewound = tuple((name, epoch, 0) for name, epoch, _ in account.rooms)
        self.store.accounts.save(replace(account, rooms=rewound))
        (mentions,) = of(events.Mentions, self.login())
        self.assertEqual([m.text for m in mentions.mentions], ["bye alice"])

    def test_ignored(self) -> None:
        """
        The lines of those she ignores are no mentions.
        """
        self.do(self.alice, c.Ignore("bob"), c.Quit(None))
        _, carol = self.arrive("carol")
        self.say(self.bob, "alice!")
        self.say(carol, "alice?")
        (mentions,) = of(events.Mentions, self.login())
        self.assertEqual([m.nick for m in mentions.mentions], ["carol"])

    def test_none_kept(self) -> None:
        """
        With C{[accounts] mentions = 0} none are kept, and nothing is told.
        """
        self.hub = self.make_hub(AccountsConfig(mentions=0))
        self.alice_p, self.alice = self.registered("alice2")
        bob_p, bob = self.arrive("bob2")
        self.do(self.alice, c.Quit(None))
        self.say(bob, "alice2?")
        participant, guest = self.arrive(address="198.51.100.7")
        self.do(guest, c.Login("alice2", PASSWORD))
        self.assertTrue(guest.registered)
        self.assertEqual(of(events.Mentions, participant.take()), [])

    def test_not_logged_in(self) -> None:
        """
        A guest has no mentions kept.
        """
        participant, guest = self.arrive()
        self.do(guest, c.ShowMentions())
        self.assertEqual(
            self.error(participant),
            events.Error(
                "not-logged-in",
                "mentions are kept for registered nicks: /register PASSWORD or "
                "/login NICK PASSWORD",
            ),
        )


class AwayTests(AccountsTestCase):
    """
    C{/away} and C{/back}.
    """

    def test_away(self) -> None:
        """
        Those who write to an away user are told their message; C{/who}
        shows it; C{/back} ends it.
        """
        alice_p, alice = self.arrive("alice")
        bob_p, bob = self.arrive("bob")
        self.do(alice, c.Away("at lunch"))
        self.assertEqual(
            self.statuses(alice_p),
            [
                "you are marked away (at lunch); those who write to you are "
                "told. /back when you return"
            ],
        )
        self.do(bob, c.Msg("alice", "hi"))
        self.assertEqual(self.statuses(bob_p), ["alice is away: at lunch"])
        self.assertEqual(len(of(events.PrivateMessage, alice_p.take())), 1)
        self.do(bob, c.WhoIs(None))
        (who,) = of(events.Who, bob_p.take())
        self.assertIn(events.Member("alice", "telnet", False, "at lunch"), who.members)
        self.do(alice, c.Back())
        self.assertEqual(
            self.statuses(alice_p), ["welcome back: you are no longer away"]
        )
        self.do(bob, c.Msg("alice", "hi again"))
        self.assertEqual(self.statuses(bob_p), [])

    def test_without_message(self) -> None:
        """
        C{/away} alone says "away"; C{/back} when not away says so.
        """
        participant, alice = self.arrive("alice")
        self.do(alice, c.Back())
        self.assertEqual(self.statuses(participant), ["you were not marked away"])
        self.do(alice, c.Away(None))
        self.assertEqual(alice.away, "away")


class IgnoreTests(AccountsTestCase):
    """
    C{/ignore} and C{/unignore}.
    """

    def setUp(self) -> None:
        super().setUp()
        self.alice_p, self.alice = self.arrive("alice")
        self.bob_p, self.bob = self.arrive("bob")
        self.carol_p, self.carol = self.arrive("carol")

    def test_room_lines(self) -> None:
        """
        The room lines of someone ignored are not shown; others see them.
        """
        self.do(self.alice, c.Ignore("BOB"))
        self.forget()
        self.do(self.bob, c.Say("spam"), c.Me("spams"))
        self.assertEqual(self.alice_p.take(), [])
        self.assertEqual(len(of(events.RoomMessage, self.carol_p.take())), 2)

    def test_private(self) -> None:
        """
        The private messages of someone ignored are not shown; they are not
        told.
        """
        self.do(self.alice, c.Ignore("bob"))
        self.forget()
        self.do(self.bob, c.Msg("alice", "psst"))
        self.assertEqual(self.alice_p.take(), [])
        (sent,) = self.bob_p.take()
        assert isinstance(sent, events.PrivateMessage)
        self.assertTrue(sent.outgoing)

    def test_history(self) -> None:
        """
        Joining a room replays its latest lines without theirs.
        """
        self.do(self.bob, c.Join("#dev"), c.Say("one", "#dev"))
        self.do(self.carol, c.Join("#dev"), c.Say("two", "#dev"))
        self.do(self.alice, c.Ignore("bob"), c.Join("#dev"))
        (history,) = of(events.History, self.alice_p.take())
        self.assertEqual([m.text for m in history.messages], ["two"])

    def test_kept_with_the_account(self) -> None:
        """
        A logged-in user's ignores are kept with their account, across
        logout and login; C{/unignore} is kept too.
        """
        self.do(self.alice, c.Register(PASSWORD), c.Ignore("bob"), c.Ignore("carol"))
        self.do(self.alice, c.Logout(), c.Quit(None))
        participant, again = self.arrive(address="198.51.100.7")
        self.do(again, c.Login("alice", PASSWORD))
        self.forget()
        self.do(self.bob, c.Say("still here"))
        self.assertEqual(participant.take(), [])
        self.do(again, c.Unignore("bob"))
        account = self.stored("alice")
        assert account is not None
        self.assertEqual(account.ignores, ("carol",))

    def test_list_and_mistakes(self) -> None:
        """
        C{/ignore} alone (or with a blank name, as the page may send) lists;
        oneself cannot be ignored; C{/unignore} of someone not ignored says
        so.
        """
        self.do(self.alice, c.Ignore(None), c.Ignore(""), c.Ignore("  "))
        self.assertEqual(self.statuses(self.alice_p), ["you ignore: nobody"] * 3)
        self.assertIsNone(self.alice.ignoring)
        self.do(self.alice, c.Ignore("bob"), c.Ignore(None))
        self.assertEqual(
            self.statuses(self.alice_p)[-1],
            "you ignore: bob",
        )
        self.do(self.alice, c.Ignore("ALICE"))
        self.assertEqual(
            self.error(self.alice_p),
            events.Error("bad-arguments", "you cannot ignore yourself"),
        )
        self.do(self.alice, c.Unignore("carol"))
        self.assertEqual(
            self.error(self.alice_p),
            events.Error("bad-arguments", "you do not ignore carol"),
        )
        self.do(self.alice, c.Unignore("bob"))
        self.assertEqual(self.statuses(self.alice_p), ["you see bob again"])
        self.assertIsNone(self.alice.ignoring)
        self.do(self.bob, c.Say("back"))
        self.assertEqual(len(of(events.RoomMessage, self.alice_p.take())), 1)


class ResumeTests(AccountsTestCase):
    """
    Resume codes and registered nicks.
    """

    def test_logged_in_again(self) -> None:
        """
        Resuming the session of a logged-in user logs them in again.
        """
        _, alice = self.registered("alice")
        code = alice.code
        self.hub.disconnect(alice, "gone")
        participant, back = self.arrive(address="198.51.100.7")
        self.do(back, c.Resume(code))
        self.assertEqual((back.nick, back.registered), ("alice", True))
        self.assertEqual(self.logged_in(participant).name, "alice")

    def test_kept_meanwhile(self) -> None:
        """
        What was kept for a user whose connection dropped is theirs when
        they resume: the private messages sent to them, addressed to their
        nick, and the lines that named them.
        """
        _, alice = self.registered("alice")
        code = alice.code
        bob_p, bob = self.arrive("bob")
        self.hub.disconnect(alice, "gone")
        self.do(bob, c.Msg("alice", "are you there?"), c.Say("alice dropped"))
        self.assertIn("alice is offline", self.statuses(bob_p)[0])
        participant, back = self.arrive(address="198.51.100.7")
        self.do(back, c.Resume(code))
        self.assertEqual((back.nick, back.registered), ("alice", True))
        (kept,) = of(events.PrivateMessage, participant.received)
        self.assertEqual(
            (kept.recipient, kept.text, kept.offline), ("alice", "are you there?", True)
        )
        (mentions,) = of(events.Mentions, participant.received)
        self.assertEqual([m.text for m in mentions.mentions], ["alice dropped"])

    def test_registered_by_someone_else(self) -> None:
        """
        A guest's session whose nick someone else registered since does not
        get the nick back; the rest of it comes back.
        """
        _, bob = self.arrive("bob")
        self.do(bob, c.Join("#dev"))
        code = bob.code
        self.hub.disconnect(bob, "gone")
        _, other = self.registered("bob")
        self.do(other, c.Quit(None))
        participant, back = self.arrive()
        guest = back.nick
        self.do(back, c.Resume(code))
        self.assertEqual((back.nick, back.registered), (guest, False))
        self.assertIn(
            events.Error(
                "nick-registered", f"bob is a registered nick now; you stay {guest}"
            ),
            participant.received,
        )
        self.assertEqual([r.name for r in back.rooms], ["#lobby", "#dev"])

    def test_account_made_again(self) -> None:
        """
        The session of a logged-in user whose account was deleted does not
        log in to an account of the same nick registered since: that is
        someone else's.
        """
        first_p, first = self.registered("alice")
        code = first.code
        self.do(first, c.Quit(None))
        self.clock.advance(10)
        _, second = self.arrive(address="198.51.100.7")
        self.do(second, c.Login("alice", PASSWORD))
        self.assertTrue(second.registered)
        self.clock.advance(10)
        self.do(second, c.Unregister(PASSWORD))
        self.clock.advance(10)
        _, owner = self.registered("alice", NEW_PASSWORD, address="198.51.100.8")
        self.do(owner, c.Quit(None))
        participant, back = self.arrive(address="198.51.100.9")
        guest = back.nick
        self.do(back, c.Resume(code))
        self.assertEqual((back.nick, back.registered), (guest, False))
        self.assertEqual(of(events.LoggedIn, participant.received), [])
        self.assertEqual(self.error(participant).code, "nick-registered")

    def test_logged_in_elsewhere(self) -> None:
        """
        A session of a user who has since logged in on another connection
        does not log in again beside it: only one connection is logged in
        to an account, and a guest is never marked registered.
        """
        _, alice = self.registered("alice")
        code = alice.code
        self.hub.disconnect(alice, "gone")
        _, there = self.arrive(address="198.51.100.7")
        self.do(there, c.Login("alice", PASSWORD))
        participant, back = self.arrive(address="198.51.100.8")
        guest = back.nick
        self.do(back, c.Resume(code))
        self.assertEqual((back.nick, back.registered), (guest, False))
        self.assertTrue(there.connected)
        self.assertEqual(of(events.LoggedIn, participant.received), [])
        self.assertEqual(self.error(participant).code, "nick-taken")


class AccountViewTests(AccountsTestCase):
    """
    C{/account}: what the server keeps about the user.
    """

    def test_listing(self) -> None:
        """
        The listing says what is kept, never the password or its hash.
        """
        participant, alice = self.arrive("alice", PageParticipant())
        self.do(alice, c.Register(PASSWORD), c.Ignore("bob"))
        participant.take()
        self.do(alice, c.ShowAccount())
        (listing,) = participant.take()
        assert isinstance(listing, events.Listing)
        self.assertEqual(listing.title, "Account alice")
        self.assertIn("ignoring: bob", listing.lines)
        self.assertIn(
            "password: an argon2id hash (the password itself is never kept)",
            listing.lines,
        )
        self.assertEqual(
            (listing.data["ignores"], listing.data["tokens"]), (["bob"], 1)
        )
        self.assertNotIn(PASSWORD, repr(listing))

    def test_not_logged_in(self) -> None:
        """
        A guest has no account to show.
        """
        participant, guest = self.arrive()
        self.do(guest, c.ShowAccount())
        self.assertEqual(self.error(participant).code, "not-logged-in")


class SecrecyTests(AccountsTestCase):
    """
    Passwords and login tokens are never logged, nor counted by name.
    """

    def test_never_logged(self) -> None:
        """
        No log event of registering, logging in (rightly or not, by
        password or token), changing a password and deleting an account
        holds a password or a token, nor do the metrics.
        """
        logged: list[LogEvent] = []

        @provider(ILogObserver)
        def observer(event: LogEvent) -> None:
            logged.append(event)

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        secrets = [PASSWORD, NEW_PASSWORD, "wrong password"]
        participant, alice = self.arrive("alice", PageParticipant())
        self.do(alice, c.Register(PASSWORD))
        token = self.logged_in(participant).token
        assert token is not None
        secrets.append(token)
        self.do(alice, c.Quit(None))
        page_p, page = self.arrive(participant=PageParticipant())
        self.do(
            page,
            c.TokenLogin(token),
            c.Password(PASSWORD, NEW_PASSWORD),
            c.Password("wrong password", PASSWORD),
            c.Logout(),
        )
        for _ in range(6):
            self.do(page, c.Login("alice", "wrong password"))
        self.clock.advance(60)
        self.do(page, c.Login("alice", NEW_PASSWORD), c.Unregister(NEW_PASSWORD))
        self.assertTrue(logged)
        text = "\n".join(formatEvent(e) + repr(sorted(e.items())) for e in logged)
        self.assertIn("deleted their account alice", text)
        _, _, body = request(make_admin_site(self.hub, self.clock), b"/metrics")
        metrics = body.decode("utf-8")
        self.assertEqual(
            Scrape(metrics).value("tchat_dropped_total", reason="login-failed"), 7
        )
        for secret in secrets:
            self.assertNotIn(secret, text)
            self.assertNotIn(secret, metrics)

    def test_not_in_repr(self) -> None:
        """
        A command that carries a password or a token does not show it.
        """
        for command in (
            c.Register(PASSWORD),
            c.Login("alice", PASSWORD),
            c.Password(PASSWORD, NEW_PASSWORD),
            c.Unregister(PASSWORD),
            c.TokenLogin(PASSWORD),
        ):
            self.assertNotIn(PASSWORD, repr(command))
            self.assertNotIn(NEW_PASSWORD, repr(command))
