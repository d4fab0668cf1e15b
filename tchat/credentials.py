# -*- test-case-name: tests.test_accounts -*-
"""
Credentials: C{/password OLD NEW} and C{/unregister PASSWORD}, each
proved with the current password (paced as logins are, see
L{tchat.proofs}).  A new password ends every saved login (the page's
login tokens) but this connection's; an account deleted takes everything
kept for it.
"""

from dataclasses import replace
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from tchat import events
from tchat.delivery import Delivery
from tchat.history import Account, AccountStore
from tchat.model import User
from tchat.passwords import Checked
from tchat.proofs import Proofs, logged_failure, unavailable


class Logins(Protocol):
    """What of L{tchat.accounts.Accounts} credentials use."""

    def warn_clear_text(self, user: User) -> None:
        """Tell a plain telnet user their password crossed the network readable."""

    def not_logged_in(self, user: User) -> bool:
        """Whether C{user} is not logged in (then they are told so)."""

    def keep(self, account: Account) -> None:
        """Save a changed account."""

    def end(self, user: User, keep: bool) -> None:
        """End C{user}'s login (their token is revoked)."""

    def as_guest(self, user: User, reason: str) -> None:
        """Give C{user} a guest nick, telling them C{reason}."""

    def issue_token(
        self, user: User, account: Account
    ) -> tuple[str | None, float | None]:
        """A new login token for C{user}'s connection, if its door keeps one."""


class Credentials:
    """Changing a password, and deleting an account."""

    _log = Logger()

    def __init__(
        self,
        accounts: Logins,
        proofs: Proofs,
        store: AccountStore,
        delivery: Delivery,
    ) -> None:
        self._accounts = accounts
        self._proofs = proofs
        self._store = store
        self._delivery = delivery

    def password(self, user: User, old: str, new: str) -> Deferred[Any] | None:
        """C{/password OLD NEW}: other saved logins end."""
        self._accounts.warn_clear_text(user)
        account = user.account
        if self._accounts.not_logged_in(user) or account is None:
            return None
        if not self._proofs.long_enough(user, new):
            return None

        def matched(current: Account, result: Checked) -> Deferred[Any]:
            tag = user.tag

            def hashed(encoded: str) -> None:
                if not user.connected or user.account is None:
                    return
                changed = replace(user.account, hash=encoded)
                user.account = changed
                self._accounts.keep(changed)
                self._store.revoke_tokens(changed.key).addErrback(
                    logged_failure("ending login tokens")
                )
                user.token = None
                issued, expires = self._accounts.issue_token(user, changed)
                self._log.info("{nick} changed their password", nick=user.nick)
                self._delivery.tell(
                    user,
                    events.Status(
                        "your password is changed; every other saved login "
                        "(pages that kept you logged in) is ended"
                    ),
                )
                if issued is not None:
                    self._delivery.tell(
                        user, events.LoggedIn(changed.name, issued, expires)
                    )

            def failed(why: Failure) -> None:
                if user.connected:
                    unavailable(self._delivery, user, why, "changing a password", tag)

            return self._proofs.passwords.hash(new).addCallbacks(hashed, failed)

        return self._proofs.guarded(
            user,
            account.key,
            "password",
            lambda attempt: self._proofs.verify(
                user, account.key, old, attempt, matched
            ),
        )

    def unregister(self, user: User, password: str) -> Deferred[Any] | None:
        """C{/unregister PASSWORD}: the account and all kept for it go."""
        self._accounts.warn_clear_text(user)
        account = user.account
        if self._accounts.not_logged_in(user) or account is None:
            return None

        def matched(current: Account, result: Checked) -> Deferred[Any]:
            tag = user.tag

            def deleted(_: object) -> None:
                self._log.info(
                    "{nick} deleted their account {name}",
                    nick=user.nick,
                    name=account.name,
                )
                if not user.connected or user.account is None:
                    return
                user.token = None  # deleted with the account
                self._accounts.end(user, keep=False)
                self._accounts.as_guest(
                    user,
                    f"the account {account.name} is deleted, with everything "
                    "kept for it",
                )

            def failed(why: Failure) -> None:
                if user.connected:
                    unavailable(self._delivery, user, why, "deleting an account", tag)

            return self._store.delete(account.key).addCallbacks(deleted, failed)

        return self._proofs.guarded(
            user,
            account.key,
            "unregister",
            lambda attempt: self._proofs.verify(
                user, account.key, password, attempt, matched
            ),
        )
