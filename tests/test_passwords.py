"""
Tests for L{tchat.passwords}: argon2id hashes of account passwords, and
L{Hashing}, which makes and checks them a few at a time off the reactor.

The hashes are real, made with the cheapest costs argon2 takes; no test
here starts a thread (L{Hashing} is only ever asked to queue).
"""

from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from tchat.config import AccountsConfig
from tchat.passwords import (
    MAX_WAITING,
    BusyError,
    Checked,
    Hashing,
    check_password,
    hash_password,
)

CHEAP = AccountsConfig(hash_memory=8, hash_time=1)
"""The least argon2id takes: fast enough for unit tests."""

DEARER = AccountsConfig(hash_memory=16, hash_time=2)
"""Other costs, as after an operator raised them."""


class HashTests(SynchronousTestCase):
    """
    L{hash_password} and L{check_password}.
    """

    def test_argon2id(self) -> None:
        """
        A hash is argon2id's encoding with the configured costs; it holds
        nothing of the password.
        """
        encoded = hash_password(CHEAP, "correct horse")
        self.assertTrue(encoded.startswith("$argon2id$v=19$m=8,t=1,p=1$"), encoded)
        self.assertNotIn("correct horse", encoded)

    def test_salted(self) -> None:
        """
        The same password hashes differently each time, and each hash
        matches it.
        """
        first = hash_password(CHEAP, "correct horse")
        second = hash_password(CHEAP, "correct horse")
        self.assertNotEqual(first, second)
        for encoded in (first, second):
            self.assertEqual(
                check_password(CHEAP, "correct horse", encoded), Checked(True)
            )

    def test_wrong(self) -> None:
        """
        Another password, even differing in case or by a space, does not
        match.
        """
        encoded = hash_password(CHEAP, "correct horse")
        for wrong in ("Correct horse", "correct horse ", "correcthorse", ""):
            self.assertEqual(check_password(CHEAP, wrong, encoded), Checked(False))

    def test_any_text(self) -> None:
        """
        Passwords are any text: spaces, accents, emoji.
        """
        password = "  é\U0001f600 two  spaces "
        encoded = hash_password(CHEAP, password)
        self.assertEqual(check_password(CHEAP, password, encoded), Checked(True))
        self.assertEqual(
            check_password(CHEAP, password.strip(), encoded), Checked(False)
        )

    def test_nobody(self) -> None:
        """
        A name nobody registered (no hash) matches no password.
        """
        self.assertEqual(check_password(CHEAP, "correct horse", None), Checked(False))
        self.assertEqual(check_password(CHEAP, "", None), Checked(False))

    def test_not_a_hash(self) -> None:
        """
        A stored value that is no argon2 hash matches nothing, without an
        exception.
        """
        for encoded in (
            "",
            "garbage",
            "$argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHQ$",
            "$2b$12$abcdefghijklmnopqrstuuJ9Qb3r2S1Lm0qXWq1e6b7m3u0i8F0W",
        ):
            self.assertEqual(
                check_password(CHEAP, "correct horse", encoded), Checked(False)
            )

    def test_rehashed(self) -> None:
        """
        A password that matches a hash made with other costs than today's
        comes with a hash made with today's, which matches it too and needs
        no rehash; a wrong one comes with none.
        """
        old = hash_password(CHEAP, "correct horse")
        result = check_password(DEARER, "correct horse", old)
        self.assertTrue(result.ok)
        assert result.rehashed is not None
        self.assertTrue(result.rehashed.startswith("$argon2id$v=19$m=16,t=2,p=1$"))
        self.assertEqual(
            check_password(DEARER, "correct horse", result.rehashed), Checked(True)
        )
        self.assertEqual(check_password(DEARER, "wrong", old), Checked(False))


class HashingTests(SynchronousTestCase):
    """
    L{Hashing}: a pool of its own, C{hash_threads} at once, a bounded
    queue.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactor()
        self.hashing = Hashing(AccountsConfig(hash_threads=1), self.reactor)
        self.addCleanup(self.hashing._pool.stop)
        # The one turn is taken, as by a check under way: every hash and
        # check asked for now waits, and no thread is started.
        self.hashing._turns.acquire()

    def test_waits_its_turn(self) -> None:
        """
        Past C{hash_threads} under way, hashes and checks wait their turn;
        the pool, started with no thread, is stopped at shutdown.
        """
        self.assertNoResult(self.hashing.hash("correct horse"))
        self.assertNoResult(self.hashing.check("correct horse", None))
        self.assertEqual(len(self.hashing._turns.waiting), 2)
        self.assertEqual(self.hashing._pool.threads, [])
        self.assertEqual(
            self.reactor.triggers["during"]["shutdown"],
            [(self.hashing._pool.stop, (), {})],
        )

    def test_busy(self) -> None:
        """
        Past C{MAX_WAITING} waiting, the next is refused at once with
        L{BusyError}, rather than grow the queue without bound.
        """
        for _ in range(MAX_WAITING):
            self.assertNoResult(self.hashing.check("guess", None))
        self.failureResultOf(self.hashing.check("guess", None), BusyError)
        self.failureResultOf(self.hashing.hash("correct horse"), BusyError)
        self.assertEqual(len(self.hashing._turns.waiting), MAX_WAITING)
