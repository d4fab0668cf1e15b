# -*- test-case-name: tests.test_passwords -*-
"""
Account passwords: argon2id (C{argon2-cffi}), hashed and checked in
threads of their own, a few at a time.

Each hash or check costs C{[accounts] hash_memory} KiB and tens of
milliseconds of CPU on purpose.  It never runs on the reactor thread, and
never in the reactor's shared thread pool (name lookups use that one):
L{Hashing} has its own pool of C{hash_threads} threads, and a bounded
queue in front of it, so that a flood of C{/login} can make logins wait
but never starves the reactor or grows memory without bound.
"""

import contextlib
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, TypeVar, cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from twisted.internet.defer import Deferred, DeferredSemaphore, fail
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from tchat.config import AccountsConfig

T = TypeVar("T")

MAX_WAITING = 200
"""Password checks that may wait for a thread; past it, the next ones are
refused with L{BusyError} (the user is asked to try again)."""


class BusyError(Exception):
    """
    Too many password checks wait already: this one was not made.
    """


class Checked(NamedTuple):
    """
    A password check's outcome.

    @ivar ok: Whether the password matched.
    @ivar rehashed: When it matched a hash made with other parameters than
        today's: the password hashed again with today's, to keep instead.
    """

    ok: bool
    rehashed: str | None = None


def hasher(config: AccountsConfig) -> PasswordHasher:
    """The argon2id hasher with C{config}'s costs."""
    return PasswordHasher(
        time_cost=config.hash_time,
        memory_cost=config.hash_memory,
        parallelism=1,
    )


def hash_password(config: AccountsConfig, password: str) -> str:
    """Hash C{password}.  Slow on purpose: call it from a thread."""
    return hasher(config).hash(password)


_DUMMY: dict[AccountsConfig, str] = {}


def check_password(
    config: AccountsConfig, password: str, encoded: str | None
) -> Checked:
    """
    Whether C{password} matches C{encoded}, in constant time.  Slow on
    purpose: call it from a thread.

    @param encoded: The account's hash; C{None} for a name nobody
        registered, checked against a dummy hash so that it takes as long.
    """
    ph = hasher(config)
    if encoded is None:
        dummy = _DUMMY.get(config)
        if dummy is None:
            dummy = _DUMMY[config] = ph.hash("not a password of anyone")
        with contextlib.suppress(VerificationError):
            ph.verify(dummy, password)
        return Checked(False)
    try:
        ph.verify(encoded, password)
    except (VerificationError, InvalidHashError):
        return Checked(False)
    if ph.check_needs_rehash(encoded):
        return Checked(True, ph.hash(password))
    return Checked(True)


class Passwords(Protocol):
    """Hashes and checks account passwords, off the reactor thread."""

    def hash(self, password: str) -> Deferred[str]:
        """The hash of C{password} with today's parameters."""

    def check(self, password: str, encoded: str | None) -> Deferred[Checked]:
        """See L{check_password}; fails with L{BusyError} when overloaded."""


class Hashing:
    """
    L{Passwords} in a thread pool of its own, C{hash_threads} at once, at
    most L{MAX_WAITING} waiting.

    @ivar config: The C{[accounts]} in force (costs change on reload).
    """

    def __init__(self, config: AccountsConfig, reactor: Any) -> None:
        self.config = config
        self._reactor = cast(IReactorThreads, reactor)
        self._pool = ThreadPool(
            minthreads=0, maxthreads=config.hash_threads, name="tchat-passwords"
        )
        self._turns = DeferredSemaphore(config.hash_threads)
        self._started = False

    def _run(self, f: Callable[..., T], *args: Any) -> Deferred[T]:
        if len(self._turns.waiting) >= MAX_WAITING:
            return fail(BusyError())
        if not self._started:
            self._started = True
            self._pool.start()
            self._reactor.addSystemEventTrigger(  # type: ignore[attr-defined]
                "during", "shutdown", self._pool.stop
            )
        return self._turns.run(deferToThreadPool, self._reactor, self._pool, f, *args)

    def hash(self, password: str) -> Deferred[str]:
        return self._run(hash_password, self.config, password)

    def check(self, password: str, encoded: str | None) -> Deferred[Checked]:
        return self._run(check_password, self.config, password, encoded)
