# -*- test-case-name: tests.test_guesses -*-
"""
Guesses: secrets found by trying them (resume codes, operator passwords).

Every failed try makes the next ones wait: tries from the same source (a
client's address, or one onion connection) after a few free ones, and
everyone's once the failures of all sources together pass a rate.  A try
counts as failed from the moment it is made until it is known to be right,
so many tries sent at once (from many connections) wait one after another.  The
wait doubles with each failure, up to a minute.  A try is never refused,
so whoever knows the secret always gets in, at worst after a wait, while
guessing slows to a crawl.
"""

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from tchat.model import User

WINDOW = 60.0
"""Failures are counted over this many seconds."""

MOST = 60.0
"""The longest a try waits, in seconds."""

_KEYS_SWEPT = 10_000
"""Past this many sources with failures, those with none left are dropped."""


@dataclass(frozen=True)
class Source:
    """
    Where tries come from, and how many may fail within L{WINDOW} before
    the next ones wait.
    """

    key: str
    free: int


def wait_for(failures: int, free: int) -> float:
    """
    How long the next try waits after C{failures} failures, C{free} of
    which cost nothing: 1 s, then twice as long each time, up to L{MOST}.
    """
    if failures < free:
        return 0.0
    return min(MOST, 2.0 ** (failures - free))


class Attempt:
    """
    One try, counted as failed from the moment it is made (so tries made
    at once wait one after the other) until it is known it was not a wrong
    guess.
    """

    def __init__(self, failures: dict[str, deque[float]], keys: list[str], at: float):
        self._failures = failures
        self._keys = keys
        self._at = at

    def not_a_guess(self) -> None:
        """The try was right, or could not be checked: it does not count."""
        for key in self._keys:
            failures = self._failures.get(key)
            if failures is not None and self._at in failures:
                failures.remove(self._at)
                if not failures:
                    del self._failures[key]
        self._keys = []


class Guesses:
    """
    The recent failures of one kind of secret, by source and in all.
    """

    def __init__(self, clock: IReactorTime, everyone: int) -> None:
        """
        @param everyone: Failures of all sources together within L{WINDOW}
            before every try waits.
        """
        self._clock = clock
        self._everyone = Source("*", everyone)
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> int:
        failures = self._failures.get(key)
        if failures is None:
            return 0
        while failures and failures[0] <= now - WINDOW:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return 0
        return len(failures)

    def wait(self, sources: Sequence[Source]) -> float:
        """How long the next try from C{sources} must wait, in seconds."""
        now = self._clock.seconds()
        return max(
            wait_for(self._recent(s.key, now), s.free)
            for s in (*sources, self._everyone)
        )

    def attempt(
        self,
        user: User,
        sources: Sequence[Source],
        check: Callable[[Attempt], Deferred[Any] | None],
    ) -> tuple[float, Deferred[Any] | None]:
        """
        C{user} tries a secret from C{sources}: C{check} it now, or once the
        failures before it say so, as part of the same request (its errors
        carry its tag), and not if the user left meanwhile.

        @return: How long the try waits, and what checking it returned.
        """
        wait = self.wait(sources)
        now = self._clock.seconds()
        if len(self._failures) > _KEYS_SWEPT:
            for key in list(self._failures):
                self._recent(key, now)
        keys = [source.key for source in (*sources, self._everyone)]
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)
        attempt = Attempt(self._failures, keys, now)
        if not wait:
            return 0.0, check(attempt)
        tag = user.tag

        def carry_on(_: object) -> Deferred[Any] | None:
            if not user.connected:
                return None
            user.tag = tag
            try:
                return check(attempt)
            finally:
                user.tag = None

        later: Deferred[None] = Deferred()
        self._clock.callLater(wait, later.callback, None)
        return wait, later.addCallback(carry_on)


def sources_of(user: User, free: int, onion_free: int) -> list[Source]:
    """
    Where C{user}'s tries come from: their address, or, for onion users
    (who all come from the local tor), their connection and all of them.
    """
    if user.address is not None:
        return [Source(f"address:{user.address}", free)]
    return [Source(f"connection:{id(user)}", free), Source("onion", onion_free)]
