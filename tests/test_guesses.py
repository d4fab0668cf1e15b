"""
Tests for L{tchat.guesses}: how long a try waits after failed ones.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tchat.guesses import MOST, WINDOW, Attempt, Guesses, Source, sources_of, wait_for
from tchat.model import User
from tchat.palette import PALETTE
from tests.support import FakeParticipant


def a_user(door: str, address: str | None) -> User:
    return User(
        FakeParticipant(door, address), "alice", door, PALETTE["red"], address=address
    )


class WaitForTests(SynchronousTestCase):
    def test_free_then_doubling(self) -> None:
        """
        The first failures cost nothing; then the wait is 1 s, doubling
        with each failure, up to a minute.
        """
        self.assertEqual(
            [wait_for(n, 3) for n in range(12)],
            [0, 0, 0, 1, 2, 4, 8, 16, 32, MOST, MOST, MOST],
        )


class GuessesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.guesses = Guesses(self.clock, everyone=10)
        self.here = [Source("address:192.0.2.1", 2)]
        self.there = [Source("address:192.0.2.2", 2)]
        self.user = a_user("telnet", "192.0.2.1")
        self.checked: list[tuple[Attempt, str | None]] = []

    def check(self, attempt: Attempt) -> None:
        self.checked.append((attempt, self.user.tag))

    def guess_wrong(self, sources: list[Source], times: int = 1) -> None:
        for _ in range(times):
            self.guesses.attempt(self.user, sources, self.check)
        self.clock.advance(0)

    def test_per_source(self) -> None:
        """
        Failures from one source make its tries wait, not another's.
        """
        self.guess_wrong(self.here, 3)
        self.assertEqual(self.guesses.wait(self.here), 2)
        self.assertEqual(self.guesses.wait(self.there), 0)

    def test_at_once(self) -> None:
        """
        Tries made at once count as they are made: each waits longer than
        the one before, so many connections guessing together gain nothing.
        """
        waits = [
            self.guesses.attempt(self.user, self.here, self.check)[0] for _ in range(6)
        ]
        self.assertEqual(waits, [0, 0, 1, 2, 4, 8])
        self.assertEqual(len(self.checked), 2)
        self.clock.advance(8)
        self.assertEqual(len(self.checked), 6)

    def test_not_a_guess(self) -> None:
        """
        A try found right (or that could not be checked) does not count.
        """
        self.guess_wrong(self.here, 2)
        self.guesses.attempt(self.user, self.here, self.check)
        self.assertEqual(self.guesses.wait(self.here), 2)
        for attempt, _ in self.checked:
            attempt.not_a_guess()
            attempt.not_a_guess()
        self.assertEqual(self.guesses.wait(self.here), 0)

    def test_forgotten_after_window(self) -> None:
        """
        Failures older than the window no longer count.
        """
        self.guess_wrong(self.here)
        self.clock.advance(WINDOW / 2)
        self.guess_wrong(self.here)
        self.assertEqual(self.guesses.wait(self.here), 1)
        self.clock.advance(WINDOW / 2)
        self.assertEqual(self.guesses.wait(self.here), 0)

    def test_everyone(self) -> None:
        """
        Failures spread over many sources slow everyone once together they
        pass the rate for all: a guesser with many addresses crawls too.
        """
        for n in range(10):
            self.guess_wrong([Source(f"address:198.51.100.{n}", 2)])
        self.assertEqual(self.guesses.wait(self.there), 1)

    def test_bounded(self) -> None:
        """
        However many failures, no try waits more than a minute.
        """
        self.guess_wrong(self.here, 20)
        self.assertEqual(self.guesses.wait(self.here), MOST)

    def test_later_as_the_request(self) -> None:
        """
        A try checked later is checked with the tag of its request, and not
        at all if its user left meanwhile.
        """
        self.guess_wrong(self.here, 2)
        self.user.tag = "r-1"
        wait, _ = self.guesses.attempt(self.user, self.here, self.check)
        self.user.tag = None
        self.clock.advance(wait)
        self.assertEqual(self.checked[-1][1], "r-1")
        self.assertIsNone(self.user.tag)
        wait, _ = self.guesses.attempt(self.user, self.here, self.check)
        self.user.connected = False
        self.clock.advance(wait)
        self.assertEqual(len(self.checked), 3)


class SourcesTests(SynchronousTestCase):
    def test_address(self) -> None:
        """A user with an address is one source: that address."""
        user = a_user("telnet", "192.0.2.1")
        self.assertEqual(sources_of(user, 3, 10), [Source("address:192.0.2.1", 3)])

    def test_onion(self) -> None:
        """
        An onion user is their own connection, and one of all onion users.
        """
        one = a_user("onion", None)
        two = a_user("onion", None)
        first, everyone = sources_of(one, 3, 10)
        self.assertEqual(everyone, Source("onion", 10))
        self.assertNotEqual(first, sources_of(two, 3, 10)[0])
