# -*- test-case-name: tests.test_sessions -*-
"""
Tests for L{tchat.sessions}: resume codes, and the sessions kept under them,
without a hub.  Resuming through the hub is tested in L{tests.test_history}.
"""

import base64
import re
from collections.abc import Iterator

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tchat import sessions
from tchat.config import HistoryConfig, LimitsConfig, ServerConfig
from tchat.history import MemoryStore, Session
from tchat.model import Directory, Settings, User
from tchat.palette import PALETTE
from tchat.sessions import Sessions, new_code, normalize_code
from tests.support import FakeParticipant

START = 1_700_000_000.0


class CodeTests(SynchronousTestCase):
    """
    L{new_code} and L{normalize_code}.
    """

    def test_new_code_format(self) -> None:
        """
        A code is two groups of four base32 letters and digits, holding 40
        random bits; codes differ.
        """
        codes = {new_code() for _ in range(50)}
        self.assertEqual(len(codes), 50)
        for code in codes:
            self.assertRegex(code, r"\A[A-Z2-7]{4}-[A-Z2-7]{4}\Z")
            self.assertEqual(len(base64.b32decode(code.replace("-", ""))), 5)

    def test_normalize(self) -> None:
        """
        A code typed with spaces, dashes anywhere or in lower case is read as
        the code it is.
        """
        typed = ("abcd-efgh", " abcd efgh ", "AB-CD-EF-GH", "abcdefgh", "ABCD-EFGH")
        self.assertEqual({normalize_code(t) for t in typed}, {"ABCD-EFGH"})

    def test_normalize_not_a_code(self) -> None:
        """
        Something too short or too long to be a code is left ungrouped, so
        it matches no code.
        """
        self.assertEqual(normalize_code("ab-c"), "ABC")
        self.assertEqual(normalize_code("abcd-efgh-i"), "ABCDEFGHI")


class SessionsTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.settings = Settings(
            ServerConfig(reconnect_grace=0), HistoryConfig(resume_ttl=3600)
        )
        self.directory = Directory(self.clock, self.settings)
        self.store = MemoryStore(self.settings.history)
        self.sessions = Sessions(self.store, self.directory, self.clock)

    def arrive(self, nick: str, code: str) -> User:
        user = User(FakeParticipant(), nick, "telnet", PALETTE["cyan"], code=code)
        self.directory.add(user)
        return user

    def found(self, code: str) -> Session | None:
        result: Session | None = self.successResultOf(self.sessions.find(code))
        return result


class UnusedCodeTests(SessionsTestCase):
    def test_avoids_codes_in_use(self) -> None:
        """
        A new code is never one a user of this node has.
        """
        self.arrive("alice", "AAAA-AAAA")
        self.arrive("bob", "BBBB-BBBB")
        drawn: Iterator[str] = iter(["AAAA-AAAA", "BBBB-BBBB", "CCCC-CCCC"])
        self.patch(sessions, "new_code", lambda: next(drawn))
        self.assertEqual(self.sessions.unused_code(), "CCCC-CCCC")

    def test_real_codes(self) -> None:
        """
        Without patching, the code given has the resume code format.
        """
        self.assertTrue(
            re.fullmatch(r"[A-Z2-7]{4}-[A-Z2-7]{4}", self.sessions.unused_code())
        )


class SnapshotTests(SessionsTestCase):
    def test_snapshot(self) -> None:
        """
        A session is the user's nick, colour and colour choice, each room
        with its epoch and the last message id they were shown, where they
        talk, and when it was taken.
        """
        user = self.arrive("alice", "ABCD-EFGH")
        user.show_colours = False
        lobby = self.directory.lobby
        dev = self.directory.new_room("#dev", epoch=77)
        lobby.delivered_id, dev.delivered_id = 12, 3
        self.directory.enter(user, dev, 1)
        self.directory.enter(user, lobby, 1)
        user.current = dev
        self.clock.advance(5)
        self.assertEqual(
            self.sessions.snapshot(user),
            Session(
                "ABCD-EFGH",
                "alice",
                "cyan",
                False,
                (("#dev", 77, 3), ("#lobby", lobby.epoch, 12)),
                "#dev",
                START + 5,
            ),
        )

    def test_snapshot_in_no_room(self) -> None:
        """
        A user in no room is kept with no rooms and nowhere to talk.
        """
        user = self.arrive("alice", "ABCD-EFGH")
        session = self.sessions.snapshot(user)
        self.assertEqual((session.rooms, session.current), ((), None))


class SaveFindTests(SessionsTestCase):
    def test_saved_and_found(self) -> None:
        """
        A saved session is found under its code, as it was when saved.
        """
        user = self.arrive("alice", "ABCD-EFGH")
        self.directory.enter(user, self.directory.lobby, 1)
        self.sessions.save(user)
        expected = self.sessions.snapshot(user)
        self.directory.leave(user, self.directory.lobby)
        self.assertEqual(self.found("ABCD-EFGH"), expected)
        self.assertIsNone(self.found("WXYZ-2345"))

    def test_resave_replaces(self) -> None:
        """
        Saving again keeps the newer session only.
        """
        user = self.arrive("alice", "ABCD-EFGH")
        self.sessions.save(user)
        self.directory.rename(user, "wes")
        self.sessions.save(user)
        found = self.found("ABCD-EFGH")
        assert found is not None
        self.assertEqual(found.nick, "wes")

    def test_resume_off(self) -> None:
        """
        With C{resume_ttl = 0} nothing is kept.
        """
        self.settings.history = HistoryConfig(resume_ttl=0)
        user = self.arrive("alice", "ABCD-EFGH")
        self.sessions.save(user)
        self.assertIsNone(self.successResultOf(self.store.session("ABCD-EFGH", 0)))

    def test_expired_ignored(self) -> None:
        """
        A session is found for C{resume_ttl} after it was saved, not after.
        """
        self.sessions.save(self.arrive("alice", "ABCD-EFGH"))
        self.clock.advance(3600)
        self.assertIsNotNone(self.found("ABCD-EFGH"))
        self.clock.advance(1)
        self.assertIsNone(self.found("ABCD-EFGH"))

    def test_ttl_read_when_found(self) -> None:
        """
        A longer C{resume_ttl} put in force later applies to sessions saved
        before it.
        """
        self.sessions.save(self.arrive("alice", "ABCD-EFGH"))
        self.clock.advance(7200)
        self.assertIsNone(self.found("ABCD-EFGH"))
        self.settings.history = HistoryConfig(resume_ttl=86400)
        self.assertIsNotNone(self.found("ABCD-EFGH"))


class PerAddressTests(SessionsTestCase):
    """
    Each client address keeps at most C{sessions_per_address} resume codes
    (issue 19): connecting again and again does not fill the store.
    """

    def setUp(self) -> None:
        super().setUp()
        self.settings.limits = LimitsConfig(sessions_per_address=3, exempt=())
        self.codes = (f"AAAA-AAA{n}" for n in range(2, 8))

    def leave(self, address: str | None) -> str:
        """Someone from C{address} comes and goes: their code."""
        user = self.arrive("guest", next(self.codes))
        user.address = address
        self.sessions.save(user)
        self.directory.remove(user)
        return user.code

    def test_oldest_go(self) -> None:
        """
        Past the limit, the oldest session from that address is forgotten;
        other addresses keep theirs.
        """
        mine = [self.leave("192.0.2.1") for _ in range(4)]
        theirs = self.leave("192.0.2.2")
        self.assertIsNone(self.found(mine[0]))
        for code in (*mine[1:], theirs):
            self.assertIsNotNone(self.found(code))

    def test_live_sessions_kept(self) -> None:
        """
        A session whose user is still connected is never forgotten; it is
        saved again when they leave anyway.
        """
        here = self.arrive("alice", "ZZZZ-ZZZ2")
        here.address = "192.0.2.1"
        self.sessions.save(here)
        for _ in range(3):
            self.leave("192.0.2.1")
        self.assertIsNotNone(self.found(here.code))

    def test_shared_addresses(self) -> None:
        """
        Onion users (who all come through the local tor) and exempt
        addresses (a reverse proxy's) keep a hundred times as many.
        """
        onion = [self.leave(None) for _ in range(5)]
        for code in onion:
            self.assertIsNotNone(self.found(code))
        self.assertEqual(sessions.SHARED, 100)
