# -*- test-case-name: tests.test_accounts -*-
"""
Proofs: that a user owns an account (its password), checked so that
guessing does not pay, and the pace of registrations.

Failed checks make the next ones wait (L{tchat.guesses}): per address (or,
for onion users, per connection and all of them together), per account,
and for everyone past a rate.  Nobody is ever refused: the real owner gets
in, at worst after a minute's wait.  Registrations are counted per address
over an hour.
"""

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tchat import events
from tchat.delivery import Delivery
from tchat.guesses import Attempt, Guesses, Source, sources_of
from tchat.history import Account, AccountStore
from tchat.limits import exempt
from tchat.metrics import Metrics
from tchat.model import Settings, User
from tchat.passwords import BusyError, Checked, Passwords
from tchat.text import describe_span

LOGIN_FAILURES = 5
"""Failed logins from one address (or one onion connection) within a
minute before its next ones wait..."""
LOGIN_ONION_FAILURES = 20
"""...from all onion users together..."""
ACCOUNT_FAILURES = 10
"""...against one account, from anywhere..."""
LOGIN_EVERYONE = 100
"""...and from everyone, before every login waits (see L{Guesses})."""

REGISTRATION_WINDOW = 3600.0
"""Registrations are counted per address over this many seconds."""
SHARED = 10
"""How many times C{registrations_per_hour} onion users (and an exempt
address, a proxy many share) get together."""

FAILED = "wrong nick or password"

_log = Logger()


def unavailable(
    delivery: Delivery, user: User, why: Failure, doing: str, tag: str | None
) -> None:
    """
    Tell C{user} that what they asked of accounts could not be done now:
    the password checks are overloaded, or the store failed (logged).
    """
    if why.check(BusyError):
        text = "the server is busy checking passwords; try again in a moment"
    else:
        _log.warn("accounts: {doing}: {why}", doing=doing, why=why.value)
        text = "accounts cannot be reached right now; try again soon"
    delivery.error(user, "account-unavailable", text, tag)


def logged_failure(doing: str) -> Callable[[Failure], None]:
    """An errback that logs, in one line, what failed while C{doing}."""

    def log(why: Failure) -> None:
        _log.warn("accounts: {doing}: {why}", doing=doing, why=why.value)

    return log


class Proofs:
    """
    Password checks against accounts, paced against guessing, and the pace
    of registrations.
    """

    _log = _log

    def __init__(
        self,
        settings: Settings,
        delivery: Delivery,
        store: AccountStore,
        passwords: Passwords,
        metrics: Metrics,
        clock: IReactorTime,
    ) -> None:
        self._settings = settings
        self._delivery = delivery
        self._store = store
        self.passwords = passwords
        self._metrics = metrics
        self._clock = clock
        self._guesses = Guesses(clock, LOGIN_EVERYONE)
        self._registrations: dict[str, deque[float]] = {}

    def guarded(
        self,
        user: User,
        key: str,
        what: str,
        check: Callable[[Attempt], Deferred[Any] | None],
    ) -> Deferred[Any] | None:
        """
        Run C{check} of a password for the account with key C{key} once the
        failures before it say so (see L{Guesses}), telling C{user} when it
        waits.
        """
        sources = [
            *sources_of(user, LOGIN_FAILURES, LOGIN_ONION_FAILURES),
            Source(f"account:{key}", ACCOUNT_FAILURES),
        ]
        wait, done = self._guesses.attempt(user, sources, check)
        if wait:
            self._metrics.limit(what)
            self._log.warn(
                "slowing {what} by {nick} ({door}, {address}): too many failed "
                "attempts; checked in {wait:g} s",
                what=what,
                nick=user.nick,
                door=user.door,
                address=user.address or "onion",
                wait=wait,
            )
            self._delivery.tell(
                user,
                events.Status(
                    "too many failed logins lately: yours is checked in "
                    f"{describe_span(wait)}"
                ),
            )
        return done

    def verify(
        self,
        user: User,
        key: str,
        password: str,
        attempt: Attempt,
        then: Callable[[Account, Checked], Deferred[Any] | None],
    ) -> Deferred[Any]:
        """
        Check C{password} against the account with key C{key} (a name
        nobody registered costs as long), then, if it matched, C{then}.
        """
        tag = user.tag

        def found(account: Account | None) -> Deferred[Any]:
            encoded = account.hash if account is not None else None
            checking = self.passwords.check(password, encoded)

            def checked(result: Checked) -> Deferred[Any] | None:
                if not user.connected:
                    if result.ok:
                        attempt.not_a_guess()
                    return None
                if account is None or not result.ok:
                    self._metrics.drop("login-failed")
                    # Only a registered nick is named: what was typed as a
                    # name may be a password typed in the wrong place.
                    self._log.warn(
                        "failed login to {account} by {nick} ({door}, {address})",
                        account=(
                            f"the account {account.name}"
                            if account is not None
                            else "a nick nobody registered"
                        ),
                        nick=user.nick,
                        door=user.door,
                        address=user.address or "onion",
                    )
                    self._delivery.error(user, "login-failed", FAILED, tag)
                    return None
                attempt.not_a_guess()
                user.tag = tag
                try:
                    return then(account, result)
                finally:
                    user.tag = None

            return checking.addCallback(checked)

        def failed(why: Failure) -> None:
            # Not a wrong guess: the check could not be made.
            attempt.not_a_guess()
            if user.connected:
                unavailable(self._delivery, user, why, "checking a password", tag)

        return self._store.get(key).addCallback(found).addErrback(failed)

    def long_enough(self, user: User, password: str) -> bool:
        least = self._settings.accounts.min_password
        if len(password) >= least:
            return True
        self._delivery.error(
            user,
            "password-too-short",
            f"a password needs at least {least} characters",
        )
        return False

    def _registration_key(self, user: User) -> tuple[str, int]:
        most = self._settings.accounts.registrations_per_hour
        address = user.address
        if address is None or exempt(address, self._settings.limits.exempt):
            return address or "onion", most * SHARED
        return address, most

    def registration_wait(self, user: User) -> float:
        """Seconds before C{user}'s address may register again; 0: now."""
        key, most = self._registration_key(user)
        if not self._settings.accounts.registrations_per_hour:
            return 0.0
        made = self._registrations.get(key)
        if made is None:
            return 0.0
        now = self._clock.seconds()
        while made and made[0] <= now - REGISTRATION_WINDOW:
            made.popleft()
        if not made:
            del self._registrations[key]
            return 0.0
        if len(made) < most:
            return 0.0
        return made[0] + REGISTRATION_WINDOW - now

    def note_registration(self, user: User) -> None:
        key, _ = self._registration_key(user)
        if len(self._registrations) > 10_000:
            # Forget the addresses whose registrations are all past.
            old = self._clock.seconds() - REGISTRATION_WINDOW
            for address, made in list(self._registrations.items()):
                if not made or made[-1] <= old:
                    del self._registrations[address]
        self._registrations.setdefault(key, deque()).append(self._clock.seconds())

    # -- logging in ----------------------------------------------------------
