"""
Tests for L{tchat.oper.OperatorLogin} (C{/oper}), driven directly through
C{hub.concerns.login}: password checks a few at a time, guessers slowed
down (never the real operator locked out), and operators logged out when
their account changes.
"""

import random

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tchat import events
from tchat.config import HistoryConfig, OperatorsConfig
from tchat.guesses import WINDOW
from tchat.model import User
from tchat.oper import (
    MAX_VERIFYING,
    OPER_EVERYONE,
    OPER_FAILURES,
    OPER_ONION_FAILURES,
    OperatorLogin,
)
from tests.support import FakeParticipant, started_hub

WRONG = events.Error("oper-failed", "wrong operator name or password")


def slowed(seconds: float) -> events.Status:
    """What a user whose try waits is told."""
    return events.Status(
        f"too many failed /oper attempts lately: yours is checked in {seconds:g} s"
    )


class OperTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.checked: list[tuple[str, str | None]] = []
        self.pending: list[Deferred[bool]] | None = None
        self.broken = False
        self.hub = started_hub(
            self,
            self.clock,
            rng=random.Random(5),
            history=HistoryConfig(enabled=False),
            operators=OperatorsConfig((("root", "stored"), ("ops", "stored"))),
            verify=self.verify,
        )
        self.login: OperatorLogin = self.hub.concerns.login

    def verify(self, password: str, encoded: str | None) -> Deferred[bool]:
        """
        The password check: at once, or (with C{pending} set) when the test
        fires it; with C{broken} set, it fails.
        """
        self.checked.append((password, encoded))
        if self.broken:
            # The first check raises, the others fail later: both happen.
            if len(self.checked) == 1:
                raise RuntimeError("thread pool gone")
            return fail(RuntimeError("thread pool gone"))
        if self.pending is not None:
            self.pending.append(Deferred())
            return self.pending[-1]
        return succeed(password == "right" and encoded == "stored")

    def connect(
        self, door: str = "telnet", address: str | None = "192.0.2.1"
    ) -> tuple[FakeParticipant, User]:
        participant = FakeParticipant(door, address if door != "onion" else None)
        user = self.hub.connect(participant)
        participant.take()
        return participant, user


class OperTests(OperTestCase):
    def test_success(self) -> None:
        """
        The right name and password make the user an operator of that
        account, with the hash it had, and they are told so.
        """
        participant, user = self.connect()
        self.login.oper(user, "root", "right")
        self.assertEqual(self.checked, [("right", "stored")])
        self.assertEqual((user.operator, user.operator_hash), ("root", "stored"))
        self.assertEqual(
            participant.take(),
            [
                events.Status(
                    "you are now an operator (root); /help lists the operator commands"
                )
            ],
        )

    def test_failure(self) -> None:
        """
        A wrong password, and an account that does not exist (checked
        against no hash, so it takes as long), get the same error; each is
        counted.
        """
        participant, user = self.connect()
        self.login.oper(user, "root", "wrong")
        self.login.oper(user, "nobody", "right")
        self.assertEqual(self.checked, [("wrong", "stored"), ("right", None)])
        self.assertEqual(participant.take(), [WRONG, WRONG])
        self.assertIsNone(user.operator)
        self.assertEqual(self.hub.metrics.dropped["oper-failed"], 2)

    def test_error_carries_tag(self) -> None:
        """
        An answer that comes after the user's command was done carries that
        command's tag.
        """
        self.pending = []
        participant, user = self.connect()
        user.tag = "o-1"
        self.login.oper(user, "root", "wrong")
        user.tag = None
        self.pending[0].callback(False)
        self.assertEqual(
            participant.take(),
            [events.Error("oper-failed", "wrong operator name or password", "o-1")],
        )


class SlowDownTests(OperTestCase):
    def test_slowed_per_address(self) -> None:
        """
        After C{OPER_FAILURES} failures from one address (whichever user
        made them), the next try from it waits before it is checked, even
        with the right password, which then gets in; another address is
        not slowed.
        """
        first_p, first = self.connect()
        second_p, second = self.connect()
        for _ in range(OPER_FAILURES - 1):
            self.login.oper(first, "root", "wrong")
        self.login.oper(second, "root", "wrong")
        second_p.take()
        checks = len(self.checked)
        waiting = self.login.oper(second, "root", "right")
        self.assertEqual(second_p.take(), [slowed(1)])
        self.assertEqual((second.operator, len(self.checked)), (None, checks))
        self.assertEqual(self.hub.metrics.rate_limited["oper"], 1)
        self.clock.advance(1)
        self.assertEqual(second.operator, "root")
        assert waiting is not None
        self.successResultOf(waiting)
        _, other = self.connect(address="192.0.2.2")
        self.login.oper(other, "root", "right")
        self.assertEqual(other.operator, "root")

    def test_doubling(self) -> None:
        """
        Each further failure doubles the wait (up to C{MOST}, see
        L{tests.test_guesses}); failures older than C{WINDOW} no longer
        count.
        """
        participant, user = self.connect()
        for _ in range(OPER_FAILURES):
            self.login.oper(user, "root", "wrong")
        waits = []
        for _ in range(5):
            participant.take()
            self.login.oper(user, "root", "wrong")
            (status,) = participant.take()
            assert isinstance(status, events.Status)
            waits.append(float(status.text.split(" in ")[1].split()[0]))
            self.clock.advance(waits[-1])
        self.assertEqual(waits, [1, 2, 4, 8, 16])
        self.clock.advance(WINDOW)
        participant.take()
        self.login.oper(user, "root", "right")
        self.assertEqual(user.operator, "root")

    def test_onion_per_connection(self) -> None:
        """
        Onion users all come from the local tor, so failures are counted
        per connection: one onion user slowed down does not slow another.
        """
        one_p, one = self.connect("onion")
        for _ in range(OPER_FAILURES):
            self.login.oper(one, "root", "wrong")
        one_p.take()
        self.login.oper(one, "root", "right")
        self.assertEqual(one_p.take(), [slowed(1)])
        _, two = self.connect("onion")
        self.login.oper(two, "root", "right")
        self.assertEqual(two.operator, "root")

    def test_onion_in_aggregate(self) -> None:
        """
        C{OPER_ONION_FAILURES} failures from onion users together slow
        every onion user, a new connection too, until the window passes;
        clear-net users are not slowed.
        """
        made = 0
        while made < OPER_ONION_FAILURES:
            _, user = self.connect("onion")
            for _ in range(min(OPER_FAILURES, OPER_ONION_FAILURES - made)):
                self.login.oper(user, "root", "wrong")
                made += 1
        late_p, late = self.connect("onion")
        self.login.oper(late, "root", "right")
        self.assertEqual(late_p.take(), [slowed(1)])
        _, clear = self.connect()
        self.login.oper(clear, "root", "right")
        self.assertEqual(clear.operator, "root")
        self.clock.advance(1)
        self.assertEqual(late.operator, "root")

    def test_everyone(self) -> None:
        """
        Past C{OPER_EVERYONE} failures from all addresses together, even a
        try from an address that never failed waits, and the real operator
        still gets in once it is checked: guessing from many addresses
        slows down, nobody is locked out.
        """
        for n in range(OPER_EVERYONE):
            _, user = self.connect(address=f"198.51.100.{n}")
            self.login.oper(user, "root", "wrong")
        owner_p, owner = self.connect(address="192.0.2.200")
        self.login.oper(owner, "root", "right")
        self.assertEqual(owner_p.take(), [slowed(1)])
        self.assertIsNone(owner.operator)
        self.clock.advance(1)
        self.assertEqual(owner.operator, "root")


class CheckTests(OperTestCase):
    def test_at_most_max_verifying(self) -> None:
        """
        At most C{MAX_VERIFYING} passwords are checked at once: one more
        waits its turn (it is not refused, nor counted as a failure) and is
        checked as soon as a check is done.
        """
        self.pending = []
        users = [self.connect(address=f"192.0.2.{i}")[1] for i in range(MAX_VERIFYING)]
        for user in users:
            self.login.oper(user, "root", "right")
        late_p, late = self.connect(address="192.0.2.99")
        self.login.oper(late, "root", "right")
        self.assertEqual(late_p.take(), [])
        self.assertEqual(len(self.pending), MAX_VERIFYING)
        self.assertNotIn("oper-failed", self.hub.metrics.dropped)
        self.pending[0].callback(True)
        self.assertEqual(users[0].operator, "root")
        self.assertEqual(len(self.pending), MAX_VERIFYING + 1)
        self.pending[-1].callback(True)
        self.assertEqual(late.operator, "root")

    def test_gone_meanwhile(self) -> None:
        """
        A user who leaves while their password is checked is not told
        anything, nor made an operator, and their check frees its place.
        """
        self.pending = []
        people = [self.connect(address=f"192.0.2.{i}") for i in range(MAX_VERIFYING)]
        for _, user in people:
            self.login.oper(user, "root", "right")
        for participant, user in people:
            self.hub.disconnect(user, "gone")
            participant.take()
        for check in self.pending:
            check.callback(True)
        for participant, user in people:
            self.assertIsNone(user.operator)
            self.assertEqual(participant.take(), [])
        _, late = self.connect(address="192.0.2.99")
        self.login.oper(late, "root", "right")
        self.assertEqual(len(self.pending), MAX_VERIFYING + 1)

    def test_verifier_fails(self) -> None:
        """
        A check that fails (or raises) is a failed attempt: never a
        success, logged, and counted towards slowing that address down.
        """
        self.broken = True
        participant, user = self.connect()
        for _ in range(OPER_FAILURES):
            self.login.oper(user, "root", "right")
        self.assertEqual(participant.take(), [WRONG] * OPER_FAILURES)
        self.assertIsNone(user.operator)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), OPER_FAILURES)
        self.login.oper(user, "root", "right")
        self.assertEqual(participant.take(), [slowed(1)])

    def test_hash_changed_meanwhile(self) -> None:
        """
        An account whose hash changed (a reload) between the check and its
        answer is refused: the password was checked against the old one.
        """
        self.pending = []
        participant, user = self.connect()
        self.login.oper(user, "root", "right")
        self.hub.settings.operators = OperatorsConfig((("root", "new"),))
        self.pending[0].callback(True)
        self.assertIsNone(user.operator)
        self.assertEqual(participant.take(), [WRONG])
        self.assertEqual(self.hub.metrics.dropped["oper-failed"], 1)


class ReconfiguredTests(OperTestCase):
    def test_changed_or_removed_account(self) -> None:
        """
        When C{[operators]} changes, whoever is an operator by an account
        that was removed or whose hash changed is one no longer, and told;
        the others, operators or not, are left alone.
        """
        root_p, root = self.connect()
        ops_p, ops = self.connect()
        plain_p, plain = self.connect()
        self.login.oper(root, "root", "right")
        self.login.oper(ops, "ops", "right")
        root_p.take()
        ops_p.take()
        users = [root, ops, plain]

        self.hub.settings.operators = OperatorsConfig((("root", "stored"),))
        self.login.reconfigured(users)
        self.assertEqual((root.operator, ops.operator), ("root", None))
        self.assertIsNone(ops.operator_hash)
        self.assertEqual(
            ops_p.take(),
            [
                events.Status(
                    "you are no longer an operator: the account ops was "
                    "changed or removed; /oper again"
                )
            ],
        )
        self.assertEqual((root_p.take(), plain_p.take()), ([], []))

        self.hub.settings.operators = OperatorsConfig((("root", "rehashed"),))
        self.login.reconfigured(users)
        self.assertIsNone(root.operator)
        (status,) = root_p.take()
        assert isinstance(status, events.Status)
        self.assertIn("the account root was changed or removed", status.text)
        self.assertEqual((ops_p.take(), plain_p.take()), ([], []))
