# -*- test-case-name: tests.test_oper -*-
"""
Operator login: C{/oper NAME PASSWORD}, with lock-outs for guessers.

Passwords are checked off the reactor thread (each check costs tens of
milliseconds of CPU and 32 MiB), a few at a time at most.  Failed attempts
make the next ones wait (L{tchat.guesses}): per address, or for onion users
per connection and for all of them together, since they all come from the
local tor; and for everyone past a rate of failures in all.  Nobody is
refused: the real operator always gets in, at worst after a wait.
"""

from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.defer import Deferred, DeferredSemaphore, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tchat import events
from tchat.delivery import Delivery
from tchat.guesses import Attempt, Guesses, sources_of
from tchat.metrics import Metrics
from tchat.model import Settings, User

OPER_FAILURES = 3
"""Failed C{/oper} attempts from one address (or one onion connection)
within a minute before its next ones wait..."""
OPER_ONION_FAILURES = 10
"""...from all onion users together before theirs wait..."""
OPER_EVERYONE = 20
"""...and from everyone before everyone's wait (see L{Guesses})."""
MAX_VERIFYING = 4
"""Password checks run at once at most; the others wait their turn."""

Verifier = Callable[[str, str | None], Deferred[bool]]
"""Checks a password against a hash (or C{None}), off the reactor thread."""


def verify_in_thread(password: str, encoded: str | None) -> Deferred[bool]:
    """A L{Verifier} on the global reactor's thread pool."""
    from twisted.internet.threads import deferToThread

    from tchat.operators import verify_password

    return deferToThread(verify_password, password, encoded)


class OperatorLogin:
    """
    Who may become an operator, and who is one.
    """

    _log = Logger()

    def __init__(
        self,
        settings: Settings,
        delivery: Delivery,
        metrics: Metrics,
        clock: IReactorTime,
        verify: Verifier,
    ) -> None:
        self._settings = settings
        self._delivery = delivery
        self._metrics = metrics
        self._clock = clock
        self._verify = verify
        self._guesses = Guesses(clock, OPER_EVERYONE)
        self._checks = DeferredSemaphore(MAX_VERIFYING)

    def oper(self, user: User, name: str, password: str) -> Deferred[Any] | None:
        """
        C{/oper NAME PASSWORD}.  After failed tries, the next ones wait (see
        L{Guesses}); a few checks run at once, the others wait their turn.
        """
        sources = sources_of(user, OPER_FAILURES, OPER_ONION_FAILURES)
        wait, done = self._guesses.attempt(
            user, sources, lambda attempt: self._check(user, name, password, attempt)
        )
        if wait:
            self._metrics.limit("oper")
            self._log.warn(
                "slowing /oper from {nick} ({door}, {address}): too many failed "
                "attempts; checked in {wait:g} s",
                nick=user.nick,
                door=user.door,
                address=user.address or "onion",
                wait=wait,
            )
            self._delivery.tell(
                user,
                events.Status(
                    "too many failed /oper attempts lately: yours is checked "
                    f"in {wait:g} s"
                ),
            )
        return done

    def _check(
        self, user: User, name: str, password: str, attempt: Attempt
    ) -> Deferred[Any]:
        encoded = self._settings.operators.hash_for(name)
        tag = user.tag

        def checked(ok: object) -> None:
            if not user.connected:
                return
            if ok is True and self._settings.operators.hash_for(name) == encoded:
                attempt.not_a_guess()
                user.operator, user.operator_hash = name, encoded
                self._log.info(
                    "{nick} ({door}, {address}) is now operator {account}",
                    nick=user.nick,
                    door=user.door,
                    address=user.address or "onion",
                    account=name,
                )
                self._delivery.tell(
                    user,
                    events.Status(
                        f"you are now an operator ({name}); /help lists "
                        "the operator commands"
                    ),
                )
                return
            if isinstance(ok, Failure):
                self._log.failure("checking an operator password", ok)
            self._metrics.drop("oper-failed")
            self._log.warn(
                "failed /oper as {account!r} by {nick} ({door}, {address})",
                account=name[:32],
                nick=user.nick,
                door=user.door,
                address=user.address or "onion",
            )
            self._delivery.error(
                user, "oper-failed", "wrong operator name or password", tag
            )

        # Each check costs tens of ms of CPU and 32 MiB: a few at once.
        checking = self._checks.run(maybeDeferred, self._verify, password, encoded)
        return checking.addBoth(checked)

    def reconfigured(self, users: Iterable[User]) -> None:
        """
        New C{[operators]} are in force: whoever is an operator by an
        account that was changed or removed is one no longer.
        """
        operators = self._settings.operators
        for user in users:
            account = user.operator
            entry = dict(operators.accounts).get(account or "")
            if account is None or entry == user.operator_hash:
                continue
            user.operator = user.operator_hash = None
            self._log.info(
                "{nick} is no longer operator {account}: its password "
                "changed or it was removed",
                nick=user.nick,
                account=account,
            )
            self._delivery.tell(
                user,
                events.Status(
                    f"you are no longer an operator: the account {account} "
                    "was changed or removed; /oper again"
                ),
            )
