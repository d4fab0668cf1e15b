# -*- test-case-name: tests.test_accounts -*-
"""
Accounts: registered nicks, and what is kept for their owners.

A user registers the nick they have with a password; from then on nobody
else may take it (or anything that looks like it: nicks are compared by
their confusable skeleton), online or offline.  Its owner logs in from any
door, by password, on the page with a login token the server issued, or
on the SSH door with a key they added (L{tchat.keyring}); a connection of
theirs still holding the nick elsewhere is closed.  While
they are offline, private messages to them are kept (bounded, expiring),
and at their next login they get those and the lines of their rooms that
named them.

Passwords are argon2id hashes (L{tchat.passwords}), made and checked off
the reactor thread, a few at a time.  Failed logins make the next ones
wait, per address and per account (L{tchat.guesses}): never a lock-out,
at worst a minute's wait for the real owner.  See C{docs/accounts.md}.
"""

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tchat import events
from tchat.attention import MAX_IGNORES, Attention
from tchat.config.operators import ACCOUNT
from tchat.credentials import Credentials
from tchat.delivery import Delivery
from tchat.guesses import Attempt
from tchat.history import Account, AccountStore, HistoryStore, Session
from tchat.keeping import Keeping
from tchat.keyring import Keyring
from tchat.metrics import Metrics
from tchat.model import Directory, Settings, User
from tchat.palette import colour_for
from tchat.passwords import Checked, Passwords
from tchat.presence import Presence
from tchat.proofs import Proofs, logged_failure, unavailable
from tchat.seam import IBackplane, UnreachableError
from tchat.sessions import Sessions, sealed
from tchat.text import describe_span, nick_key, normalize_nick

CLEAR_TEXT = (
    "note: telnet is not encrypted, so your password crossed the network "
    "readable; use the TLS telnet port, the onion service or (soon) SSH "
    "to log in"
)
"""What a plain telnet user is told when they send a password."""


def token_digest(token: str) -> str:
    """What the store keeps of a login token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Accounts:
    """
    C{/register}, C{/login}, C{/logout}, C{/password}, C{/unregister},
    C{/account}, C{/mentions}, C{/away}, C{/back}, C{/ignore} and
    C{/unignore}; offline messages; and the protection of registered nicks.
    """

    _log = Logger()

    def __init__(
        self,
        settings: Settings,
        directory: Directory,
        delivery: Delivery,
        backplane: IBackplane,
        store: HistoryStore,
        presence: Presence,
        sessions: Sessions,
        passwords: Passwords,
        metrics: Metrics,
        clock: IReactorTime,
    ) -> None:
        self._settings = settings
        self._directory = directory
        self._delivery = delivery
        self._backplane = backplane
        self._store: AccountStore = store.accounts
        self._presence = presence
        self._sessions = sessions
        self._metrics = metrics
        self._clock = clock
        self._proofs = Proofs(
            settings, delivery, store.accounts, passwords, metrics, clock
        )
        self.keeping = Keeping(settings, directory, delivery, store, metrics, clock)
        self.attention = Attention(directory, delivery, backplane, self.keep)
        self.credentials = Credentials(self, self._proofs, store.accounts, delivery)
        self.keyring = Keyring(self, store.accounts, delivery, clock, self._take)
        # Set by the hub: a new connection carries on a session that is
        # still here (see tchat.continuity).
        self.carry_on: Callable[[User, User, str], None] = lambda fresh, held, why: None

    # -- what other concerns ask -------------------------------------------

    def holder(self, nick: str) -> Deferred[str | None]:
        """The nick registered with C{nick}'s key, as registered, if any."""
        return self.keeping.holder(nick)

    def left(self, user: User) -> None:
        """
        C{user} is leaving: remember, with their account, the rooms they
        were in (where mentions of them are looked for) and when.
        """
        account = user.account
        if account is None:
            return
        snapshot = self._sessions.snapshot(user)
        self.keep(
            replace(account, rooms=snapshot.rooms, last_seen=self._clock.seconds())
        )

    def register(self, user: User, password: str) -> Deferred[Any] | None:
        """C{/register PASSWORD}."""
        error = self._delivery.error
        self.warn_clear_text(user)
        if user.account is not None:
            error(
                user,
                "already-registered",
                f"you are logged in to the account {user.account.name} already",
            )
            return None
        if not self._settings.accounts.enabled:
            error(
                user,
                "registrations-limited",
                "this server takes no new accounts; registered nicks can still log in",
            )
            return None
        if not user.named or user.nick.lower().startswith("guest-"):
            error(
                user,
                "bad-arguments",
                "a guest nick cannot be registered: /nick NAME first, then "
                "/register PASSWORD",
            )
            return None
        if not self._proofs.long_enough(user, password):
            return None
        wait = self._proofs.registration_wait(user)
        if wait:
            self._metrics.limit("register")
            error(
                user,
                "registrations-limited",
                "too many accounts were registered from your address lately; "
                f"try again in {describe_span(wait)}",
            )
            return None
        nick, key, tag = user.nick, user.key, user.tag

        def hashed(encoded: str) -> Deferred[Any] | None:
            if not user.connected:
                return None
            if user.key != key:
                error(user, "bad-arguments", f"you are no longer {nick}", tag)
                return None
            now = self._clock.seconds()
            account = Account(key, nick, encoded, now, last_login=now)

            def created(fresh: bool) -> None:
                if not user.connected:
                    return
                if not fresh:
                    error(
                        user,
                        "already-registered",
                        f"{nick} is registered already; /login {nick} PASSWORD "
                        "if it is yours",
                        tag,
                    )
                    return
                self._proofs.note_registration(user)
                self._log.info(
                    "{nick} ({door}, {address}) registered the account {name}",
                    nick=nick,
                    door=user.door,
                    address=user.address or "onion",
                    name=nick,
                )
                self._logged_in(user, account, None, registered=True)

            return self._store.create(account).addCallback(created)

        def failed(why: Failure) -> None:
            if user.connected:
                unavailable(self._delivery, user, why, "registering an account", tag)

        return (
            self._proofs.passwords.hash(password).addCallback(hashed).addErrback(failed)
        )

    def login(
        self, user: User, name: str | None, password: str
    ) -> Deferred[Any] | None:
        """C{/login NICK PASSWORD}, C{/identify [NICK] PASSWORD}."""
        self.warn_clear_text(user)
        nick = normalize_nick(name) if name is not None else user.nick
        key = nick_key(nick)
        if user.account is not None and user.account.key == key:
            self._delivery.tell(
                user, events.Status(f"you are logged in as {user.account.name} already")
            )
            return None
        return self._proofs.guarded(
            user,
            key,
            "login",
            lambda attempt: self._check_login(user, key, password, attempt),
        )

    def _check_login(
        self, user: User, key: str, password: str, attempt: Attempt
    ) -> Deferred[Any]:
        def matched(account: Account, result: Checked) -> Deferred[Any] | None:
            if result.rehashed is not None:
                account = replace(account, hash=result.rehashed)
            return self._take(user, account)

        return self._proofs.verify(user, key, password, attempt, matched)

    def token_login(self, user: User, token: str) -> Deferred[Any] | None:
        """The page logs in again with the login token it kept."""
        digest = token_digest(token)
        tag = user.tag

        def held(key: str | None) -> Deferred[Any] | None:
            if key is None:
                return succeed(None)
            return self._store.get(key)

        def found(account: Account | None) -> Deferred[Any] | None:
            if not user.connected:
                return None
            if account is None:
                self._delivery.error(
                    user,
                    "token-invalid",
                    "your saved login expired or was ended; log in again",
                    tag,
                )
                return None
            if user.account is not None and user.account.key == account.key:
                user.token = digest
                return None
            user.tag = tag
            try:
                return self._take(user, account, token=digest)
            finally:
                user.tag = None

        def failed(why: Failure) -> None:
            if user.connected:
                unavailable(self._delivery, user, why, "checking a login token", tag)

        reading = self._store.token_holder(digest, self._clock.seconds())
        return reading.addCallback(held).addCallback(found).addErrback(failed)

    def key_login(self, user: User, fingerprint: str) -> Deferred[Any] | None:
        """
        The SSH door: C{user} connected with the SSH key C{fingerprint}, its
        signature checked; see L{Keyring.login}.
        """
        return self.keyring.login(user, fingerprint)

    def _take(
        self, user: User, account: Account, token: str | None = None
    ) -> Deferred[Any] | None:
        """
        C{user} proved they own C{account}: close whatever connection holds
        its nick here, claim it in the whole chat (closing whoever holds it
        on another node), and log them in under it.

        @param token: The digest of the login token they used, if any.
        """
        holder = self._directory.users.get(account.key)
        if (
            holder is not None
            and holder is not user
            and holder.account is not None
            and holder.account.key == account.key
            and not holder.moved
        ):
            # The account's session is here (its connection lost, or open
            # elsewhere): this connection carries it on.
            self.carry_on(user, holder, "logged in from another connection")
            if token is not None:
                holder.token = token
            else:
                issued, expires = self.issue_token(holder, holder.account)
                self._delivery.tell(
                    holder,
                    events.LoggedIn(
                        holder.account.name,
                        issued,
                        expires,
                        holder.account.last_login,
                        False,
                    ),
                )
            return None
        if holder is not None and holder is not user:
            if holder.account is not None and holder.account.key == account.key:
                # Where that connection is: the store's copy is older.
                rooms = self._sessions.snapshot(holder).rooms
                account = replace(
                    holder.account,
                    hash=account.hash,
                    rooms=rooms,
                    last_seen=self._clock.seconds(),
                )
            self._presence.taken_over(holder, login=True)
        if user.account is not None:
            self.end(user, keep=True)
        tag = user.tag

        def claimed(ok: object) -> None:
            if not user.connected:
                self._backplane.release(user, account.name)
                return
            holder = self._directory.users.get(account.key)
            if ok is False or (holder is not None and holder is not user):
                self._delivery.error(
                    user,
                    "account-unavailable",
                    f"{account.name} could not be taken over; try again",
                    tag,
                )
                return
            user.account = account
            user.named = True
            # The account's own colour, the same at every login.
            self._directory.recolour(user, colour_for(account.key))
            if user.nick != account.name:
                self._presence.rename(user, account.name)
            else:
                self._announce(user, "login")
            self._logged_in(user, account, token)

        def failed(why: Failure) -> None:
            # Cut off from the other nodes, this node decides alone.
            claimed(None if why.check(UnreachableError) else False)

        claim = self._backplane.claim(user, account.name, force=True)
        return claim.addCallbacks(claimed, failed)

    def _announce(self, user: User, kind: events.PresenceKind) -> None:
        """Tell everyone who shares a room with C{user} they logged in or out."""
        notice = events.Presence(
            self._clock.seconds(),
            kind,
            user.nick,
            user.door,
            registered=user.account is not None,
        )
        audience = self._presence.audience(user)
        self._delivery.deliver(notice, audience)
        self._backplane.updated(user)

    def _logged_in(
        self,
        user: User,
        account: Account,
        token: str | None,
        registered: bool = False,
        issue: bool = True,
    ) -> None:
        """
        The rest of a login (or a registration): operator status, ignores,
        a login token for the page (unless C{issue} is false), then what was
        kept while they were away.
        """
        now = self._clock.seconds()
        if registered:
            user.account = account
            self._announce(user, "login")
        previous = account.last_login if not registered else None
        ignores = account.ignores
        if user.ignoring:
            # Those ignored as a guest are kept with the account.
            merged = dict.fromkeys(ignores) | dict.fromkeys(user.ignoring.values())
            ignores = tuple(merged)[:MAX_IGNORES]
        account = replace(account, last_login=now, ignores=ignores)
        user.account = account
        self.keep(account)
        self._directory.ignore(user, {nick_key(n): n for n in account.ignores})
        issued: str | None = None
        expires: float | None = None
        if token is not None:
            user.token = token
        elif issue:
            issued, expires = self.issue_token(user, account)
        self._delivery.tell(
            user,
            events.LoggedIn(account.name, issued, expires, previous, registered),
        )
        self._sessions.save(user)
        operator = self._settings.operators.by_account(account.key)
        if operator is not None and user.operator is None:
            user.operator, user.operator_hash = operator, ACCOUNT
            self._log.info(
                "{nick} is now operator {account} (by their account)",
                nick=user.nick,
                account=operator,
            )
            self._delivery.tell(
                user,
                events.Status(
                    f"you are now an operator ({operator}); /help lists the "
                    "operator commands"
                ),
            )
        self._log.info(
            "{nick} ({door}, {address}) logged in{how}",
            nick=user.nick,
            door=user.door,
            address=user.address or "onion",
            how=" with a login token" if token is not None else "",
        )
        if not registered:
            self.keeping.catch_up(user, account, now)

    def resumed(self, user: User, session: Session) -> Deferred[bool]:
        """
        C{user} resumes C{session}: may they have its nick back?  Yes when
        nobody registered it, or when the session was logged in to its
        account: then they are logged in to it again.
        """
        key = nick_key(session.nick)
        if user.account is not None and user.account.key == key:
            return succeed(True)

        def owner(name: str | None) -> Deferred[Any] | bool:
            if name is None:
                return True
            if session.account is None or session.account.split(" ")[0] != key:
                return False
            return self._store.get(key).addCallback(restore)

        def restore(account: Account | None) -> bool:
            if account is None or not user.connected:
                return False
            if sealed(account) != session.account:
                # The password changed since the session was kept, or the
                # account was deleted and the nick registered again by
                # someone else: its code no longer logs in.
                return False
            holder = self._directory.users.get(key)
            if holder is not None and holder is not user:
                # Its owner logged in again on another connection: that one
                # stays the account's, and this one keeps its guest nick.
                return True
            if user.account is not None:
                self.end(user, keep=True)
            user.account = account
            self._logged_in(user, account, None, issue=False)
            return True

        def failed(why: Failure) -> bool:
            self._log.warn("accounts: resuming a session: {why}", why=why.value)
            return False

        found: Deferred[Any] = self._store.holder(key)
        return found.addCallback(owner).addErrback(failed)

    # -- logging out and the rest --------------------------------------------

    def end(self, user: User, keep: bool) -> None:
        """
        End C{user}'s login: revoke this connection's login token, and
        remember their rooms with the account (unless C{keep} is false: it
        is being deleted).
        """
        account = user.account
        if account is None:
            return
        if keep:
            self.left(user)
        if user.token is not None:
            self._store.revoke_token(user.token).addErrback(
                logged_failure("ending a login token")
            )
        user.account = user.token = None
        if user.operator_hash == ACCOUNT:
            user.operator = user.operator_hash = None

    def logout(self, user: User, reason: str = "you logged out") -> None:
        """C{/logout}: back to a guest nick; the registered one stays theirs."""
        if self.not_logged_in(user):
            return
        self.end(user, keep=True)
        self.as_guest(user, reason)

    def as_guest(self, user: User, reason: str) -> None:
        self._presence.rename(user, self._presence.guest_nick(), chosen=False)
        self._presence.claim_guest(user)
        self._delivery.tell(user, events.LoggedOut(user.nick, reason))
        self._sessions.save(user)

    def issue_token(
        self, user: User, account: Account
    ) -> tuple[str | None, float | None]:
        """
        Give C{user}'s connection a new login token for C{account}, if its
        door keeps one (the page).

        @return: The token and when it expires, or C{(None, None)}.
        """
        if not getattr(user.participant, "keeps_tokens", False):
            return None, None
        token = secrets.token_urlsafe(32)
        expires = self._clock.seconds() + self._settings.accounts.token_ttl
        user.token = token_digest(token)
        self._store.issue_token(account.key, user.token, expires).addErrback(
            logged_failure("keeping a login token")
        )
        return token, expires

    def keep(self, account: Account) -> None:
        self._store.save(account).addErrback(logged_failure("saving an account"))

    def not_logged_in(self, user: User) -> bool:
        if user.account is not None:
            return False
        self._delivery.error(
            user,
            "not-logged-in",
            "you are not logged in: /login NICK PASSWORD, or /register PASSWORD",
        )
        return True

    def warn_clear_text(self, user: User) -> None:
        if user.door == "telnet" and not getattr(user.participant, "encrypted", True):
            self._delivery.tell(user, events.Status(CLEAR_TEXT))
