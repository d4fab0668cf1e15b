"""
Tests for L{tchat.operators}: operator password hashes and the command
that makes them.
"""

import io
import sys

from twisted.trial.unittest import SynchronousTestCase

from tchat.config import ConfigError, config_from_string
from tchat.operators import check_hash, hash_password, main, verify_password


class HashTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """
        A hash verifies its own password and no other; the same password
        hashes differently each time (a random salt).
        """
        encoded = hash_password("s3cret pass", log2_n=4)
        self.assertTrue(encoded.startswith("scrypt$4$8$1$"))
        self.assertTrue(verify_password("s3cret pass", encoded))
        self.assertFalse(verify_password("s3cret pasS", encoded))
        self.assertNotEqual(encoded, hash_password("s3cret pass", log2_n=4))

    def test_unknown_account(self) -> None:
        """
        No hash (an unknown operator name) never verifies.
        """
        self.assertFalse(verify_password("", None))

    def test_damaged_hashes_refused(self) -> None:
        """
        C{tap.ini} refuses what is not a usable hash, saying how to make one.
        """
        good = hash_password("x" * 8, log2_n=4)
        for bad, fragment in (
            ("plaintext", "python -m tchat.operators NAME"),
            (good.replace("scrypt$4", "scrypt$x"), "damaged"),
            (good.replace("scrypt$4", "scrypt$40"), "out of range"),
            (good[:-4], "wrong length"),
        ):
            with self.assertRaises(ValueError) as caught:
                check_hash(bad)
            self.assertIn(fragment, str(caught.exception))
            with self.assertRaises(ConfigError) as error:
                config_from_string(f"[operators]\nalice = {bad}\n", "t.ini")
            self.assertIn("t.ini: [operators] alice:", str(error.exception))

    def test_config_accounts(self) -> None:
        """
        C{[operators]} takes any valid names, in order.
        """
        a, b = hash_password("a" * 8, log2_n=4), hash_password("b" * 8, log2_n=4)
        config = config_from_string(f"[operators]\nalice = {a}\nbob-2 = {b}\n")
        self.assertEqual(config.operators.accounts, (("alice", a), ("bob-2", b)))
        self.assertEqual(config.operators.hash_for("bob-2"), b)
        self.assertIsNone(config.operators.hash_for("carol"))
        with self.assertRaises(ConfigError):
            config_from_string(f"[operators]\n2bad = {a}\n")


class MainTests(SynchronousTestCase):
    def run_main(self, argv: list[str], stdin: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdin", io.StringIO(stdin))
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        return main(argv), out.getvalue(), err.getvalue()

    def test_prints_config_line(self) -> None:
        """
        C{python -m tchat.operators NAME} with the password on standard
        input prints a line to paste into C{[operators]}, which verifies.
        """
        status, out, _ = self.run_main(["alice"], "long enough pw\n")
        self.assertEqual(status, 0)
        name, equals, encoded = out.strip().split(" ", 2)
        self.assertEqual((name, equals), ("alice", "="))
        config = config_from_string(f"[operators]\n{out}")
        self.assertEqual(config.operators.hash_for("alice"), encoded)
        self.assertTrue(verify_password("long enough pw", encoded))

    def test_refusals(self) -> None:
        """
        A short password, a bad name and a missing name are refused.
        """
        self.assertEqual(self.run_main(["alice"], "short\n")[0], 1)
        self.assertEqual(self.run_main(["9lives"], "long enough pw\n")[0], 2)
        self.assertEqual(self.run_main([], "")[0], 2)
