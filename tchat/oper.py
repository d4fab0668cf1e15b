# -*- test-case-name: tests.test_oper -*-
"""
Operator login: C{/oper NAME PASSWORD}, with lock-outs for guessers.

Passwords are checked off the reactor thread (each check costs tens of
milliseconds of CPU and 32 MiB), a few at a time at most.  Failed attempts
are counted per address, or for onion users per connection and for all of
them together, since they all come from the local tor.
"""

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tchat import events
from tchat.delivery import Delivery
from tchat.metrics import Metrics
from tchat.model import Settings, User

OPER_WINDOW = 60.0
"""Failed C{/oper} attempts are counted over this many seconds..."""
OPER_FAILURES = 3
"""...and this many from one address (or one onion connection) lock it out;"""
OPER_ONION_FAILURES = 10
"""this many from all onion users together lock onion users out."""
MAX_VERIFYING = 4
"""Password checks run at once at most."""

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
        self._failures: dict[str, deque[float]] = {}
        self._verifying = 0

    def oper(self, user: User, name: str, password: str) -> Deferred[Any] | None:
        """C{/oper NAME PASSWORD}."""
        now = self._clock.seconds()
        keys = (
            [(f"address:{user.address}", OPER_FAILURES)]
            if user.address is not None
            else [
                (f"connection:{id(user)}", OPER_FAILURES),
                ("onion", OPER_ONION_FAILURES),
            ]
        )
        for key, limit in keys:
            failures = self._failures.get(key)
            while failures and failures[0] <= now - OPER_WINDOW:
                failures.popleft()
            if failures is not None and not failures:
                del self._failures[key]
            elif failures is not None and len(failures) >= limit:
                wait = int(failures[0] + OPER_WINDOW - now) + 1
                self._metrics.limit("oper")
                self._log.warn(
                    "refused /oper from {nick} ({door}, {address}): too many "
                    "failed attempts",
                    nick=user.nick,
                    door=user.door,
                    address=user.address or "onion",
                )
                self._delivery.error(
                    user,
                    "rate-limited",
                    f"too many failed /oper attempts; try again in {wait} s",
                )
                return None
        if self._verifying >= MAX_VERIFYING:
            self._metrics.limit("oper-busy")
            self._delivery.error(
                user,
                "rate-limited",
                "the server is busy checking passwords; try again in a moment",
            )
            return None
        encoded = self._settings.operators.hash_for(name)
        self._verifying += 1
        tag = user.tag

        def checked(ok: object) -> None:
            self._verifying -= 1
            if not user.connected:
                return
            if ok is True and self._settings.operators.hash_for(name) == encoded:
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
            for key, _ in keys:
                self._failures.setdefault(key, deque()).append(now)
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

        return maybeDeferred(self._verify, password, encoded).addBoth(checked)

    def reconfigured(self, users: Iterable[User]) -> None:
        """
        New C{[operators]} are in force: whoever is an operator by an
        account that was changed or removed is one no longer.
        """
        operators = self._settings.operators
        for user in users:
            account = user.operator
            if account is None or operators.hash_for(account) == user.operator_hash:
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
