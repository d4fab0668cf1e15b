# -*- test-case-name: tests.test_account_store -*-
"""
Tests for the stores' accounts (L{tchat.history.AccountStore}): the same
behaviour tests run against L{MemoryStore}, L{SQLiteStore} on a real file
in the test's temporary directory, and L{RedisStore} on the fake Redis of
L{tests.test_cluster}; then what each store adds (a migration, a restart,
faults of the file; keys that expire in Redis).

Time is a L{Clock}: tests advance it and pass its time as C{now}, as the
hub does, so that Redis's expiries (timed by the same clock in the fake)
agree with the embedded stores'.
"""

import json
import os
import sqlite3
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar, cast

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tchat.cluster import RedisStore
from tchat.cluster.redis import ClusterDownError, RedisLink
from tchat.config import HistoryConfig
from tchat.events import Mention
from tchat.history import (
    CLOSE_TIMEOUT,
    MAX_KEYS,
    Account,
    AccountStore,
    KeyLimitError,
    KeyRecord,
    MailboxFullError,
    MemoryStore,
    Offline,
    RoomRecord,
    Session,
    SQLiteStore,
    StorageError,
)
from tests.support import FakeThread
from tests.test_cluster import FakeLink, FakeRedis

T = TypeVar("T")

START = 1_700_000_000.0

if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object


def _account(key: str = "al", **changes: Any) -> Account:
    """An account as registration makes it."""
    return replace(Account(key, key.capitalize(), "hash-1", START), **changes)


def _offline(text: str, ts: float = START) -> Offline:
    """A private message from bo, sent at C{ts}."""
    return Offline(ts, "bo", "web", "red", text)


def _mention(id: int, action: bool = False) -> Mention:
    """A message of #dev that named the account's owner."""
    return Mention(START + id, "#dev", id, "bo", f"al: {id}", action)


def _fingerprint(n: int) -> str:
    """The fingerprint of the test's SSH key C{n} (the store checks none)."""
    return f"SHA256:{n:043d}"


def _line(n: int) -> str:
    """The public key line of the test's SSH key C{n}."""
    return f"ssh-ed25519 AAAA{n} key-{n}"


class AccountStoreTests(_Base):
    """
    What every store's accounts do.  A test case mixes it in with
    L{make_store}, which returns a started store whose time is C{clock}.
    """

    clock: Clock

    def make_store(self) -> Any:
        raise NotImplementedError()

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        super().setUp()
        self.store = self.make_store()
        self.accounts: AccountStore = self.store.accounts

    def now(self) -> float:
        return self.clock.seconds()

    def done(self, d: Deferred[T]) -> T:
        """What a call answered."""
        return self.successResultOf(d)

    def test_create_and_get(self) -> None:
        """
        A registered account is kept as it was given, and its nick is held
        as it was registered; nothing is held under other keys.
        """
        account = _account(
            last_login=START + 1,
            last_seen=START + 2,
            rooms=(("#Dev", 7, 12), ("#lobby", 1, 3)),
            ignores=("Troll", "spam*"),
        )
        self.assertTrue(self.done(self.accounts.create(account)))
        self.assertEqual(self.done(self.accounts.get("al")), account)
        self.assertEqual(self.done(self.accounts.holder("al")), "Al")
        self.assertIsNone(self.done(self.accounts.get("bo")))
        self.assertIsNone(self.done(self.accounts.holder("bo")))

    def test_create_taken(self) -> None:
        """
        Registering a nick already registered is refused, and the first
        owner's account (their password) is left as it was.
        """
        first = _account()
        self.assertTrue(self.done(self.accounts.create(first)))
        second = _account(name="AL", hash="hash-2", created=START + 5)
        self.assertFalse(self.done(self.accounts.create(second)))
        self.assertEqual(self.done(self.accounts.get("al")), first)

    def test_save(self) -> None:
        """
        Saving replaces what is kept of an account: a new password, times,
        rooms and ignores; saving one that no longer exists brings nothing
        back.
        """
        self.done(self.accounts.create(_account()))
        changed = _account(
            hash="hash-2",
            last_login=START + 10,
            last_seen=START + 20,
            rooms=(("#dev", 3, 9),),
            ignores=("bo",),
        )
        self.assertIsNone(self.done(self.accounts.save(changed)))
        self.assertEqual(self.done(self.accounts.get("al")), changed)
        self.done(self.accounts.save(_account("cy")))
        self.assertIsNone(self.done(self.accounts.get("cy")))
        self.assertIsNone(self.done(self.accounts.holder("cy")))

    def test_delete(self) -> None:
        """
        Deleting an account forgets it and everything kept for it, and
        frees its nick; another account keeps what it has.
        """
        for key in ("al", "bo"):
            self.done(self.accounts.create(_account(key)))
            self.done(self.accounts.leave_message(key, _offline("hi"), 5, START + 60))
            self.done(self.accounts.add_mentions(key, [_mention(1)], 5))
            self.done(self.accounts.issue_token(key, f"digest-{key}", START + 60))
        self.assertIsNone(self.done(self.accounts.delete("al")))
        now = self.now()
        self.assertIsNone(self.done(self.accounts.get("al")))
        self.assertIsNone(self.done(self.accounts.holder("al")))
        self.assertEqual(self.done(self.accounts.waiting("al", now)), 0)
        self.assertEqual(self.done(self.accounts.take_messages("al", now)), [])
        self.assertEqual(self.done(self.accounts.mentions("al")), [])
        self.assertIsNone(self.done(self.accounts.token_holder("digest-al", now)))
        self.assertEqual(self.done(self.accounts.tokens("al", now)), 0)
        self.assertEqual(self.done(self.accounts.holder("bo")), "Bo")
        self.assertEqual(self.done(self.accounts.waiting("bo", now)), 1)
        self.assertEqual(self.done(self.accounts.mentions("bo")), [_mention(1)])
        self.assertEqual(self.done(self.accounts.token_holder("digest-bo", now)), "bo")
        self.assertTrue(self.done(self.accounts.create(_account("al"))))

    def test_new_owner_starts_empty(self) -> None:
        """
        Messages, mentions and tokens kept for a nick while it had no
        account (left for the deleted account as it was being deleted) are
        not given to whoever registers it next.
        """
        self.done(self.accounts.create(_account()))
        self.done(self.accounts.delete("al"))
        self.done(self.accounts.leave_message("al", _offline("hi"), 5, START + 60))
        self.done(self.accounts.add_mentions("al", [_mention(1)], 5))
        self.done(self.accounts.issue_token("al", "old", START + 60))
        self.assertTrue(self.done(self.accounts.create(_account(hash="new"))))
        now = self.now()
        self.assertEqual(self.done(self.accounts.take_messages("al", now)), [])
        self.assertEqual(self.done(self.accounts.mentions("al")), [])
        self.assertIsNone(self.done(self.accounts.token_holder("old", now)))

    def test_messages_delivered_once(self) -> None:
        """
        Offline messages are delivered oldest first, once: taking them
        forgets them.
        """
        self.done(self.accounts.create(_account()))
        sent = [_offline(f"m{i}", START + i) for i in range(3)]
        for message in sent:
            self.done(self.accounts.leave_message("al", message, 5, START + 60))
        self.assertEqual(self.done(self.accounts.waiting("al", self.now())), 3)
        self.assertEqual(self.done(self.accounts.take_messages("al", START)), sent)
        self.assertEqual(self.done(self.accounts.take_messages("al", START)), [])
        self.assertEqual(self.done(self.accounts.waiting("al", START)), 0)

    def test_expired_messages(self) -> None:
        """
        A message not delivered by its expiry is not delivered at all, nor
        counted as waiting (at its expiry it has expired); taking the
        others forgets the expired ones too.
        """
        self.done(self.accounts.create(_account()))
        short, long = _offline("short"), _offline("long", START + 1)
        self.done(self.accounts.leave_message("al", short, 5, START + 10))
        self.done(self.accounts.leave_message("al", long, 5, START + 100))
        self.assertEqual(self.done(self.accounts.waiting("al", START + 9)), 2)
        self.clock.advance(10)
        self.assertEqual(self.done(self.accounts.waiting("al", self.now())), 1)
        taken = self.done(self.accounts.take_messages("al", self.now()))
        self.assertEqual(taken, [long])
        self.assertEqual(self.done(self.accounts.waiting("al", START)), 0)
        self.assertEqual(self.done(self.accounts.take_messages("al", START)), [])

    def test_mailbox_full(self) -> None:
        """
        Past C{most} messages, the next one is refused with
        L{MailboxFullError} and not kept; once they are delivered there is
        room again.
        """
        self.done(self.accounts.create(_account()))
        for text in ("m1", "m2"):
            self.done(self.accounts.leave_message("al", _offline(text), 2, START + 60))
        refused = self.accounts.leave_message("al", _offline("m3"), 2, START + 60)
        self.failureResultOf(refused, MailboxFullError)
        taken = self.done(self.accounts.take_messages("al", self.now()))
        self.assertEqual([m.text for m in taken], ["m1", "m2"])
        self.done(self.accounts.leave_message("al", _offline("m4"), 2, START + 60))
        self.assertEqual(self.done(self.accounts.waiting("al", self.now())), 1)

    def test_mailbox_counts_unexpired(self) -> None:
        """
        Expired messages do not fill the mailbox: only those not expired
        when a message is sent count.
        """
        self.done(self.accounts.create(_account()))
        self.done(self.accounts.leave_message("al", _offline("old"), 2, START + 10))
        self.done(self.accounts.leave_message("al", _offline("kept"), 2, START + 90))
        self.clock.advance(10)
        later = _offline("new", self.now())
        self.done(self.accounts.leave_message("al", later, 2, START + 90))
        refused = self.accounts.leave_message(
            "al", _offline("one too many", self.now()), 2, START + 90
        )
        self.failureResultOf(refused, MailboxFullError)
        taken = self.done(self.accounts.take_messages("al", self.now()))
        self.assertEqual([m.text for m in taken], ["kept", "new"])

    def test_mentions(self) -> None:
        """
        Mentions are kept oldest first, the latest C{most} of them;
        whether each was an action is kept.
        """
        self.done(self.accounts.create(_account()))
        self.assertEqual(self.done(self.accounts.mentions("al")), [])
        first = [_mention(1), _mention(2, action=True), _mention(3)]
        self.done(self.accounts.add_mentions("al", first, 5))
        self.assertEqual(self.done(self.accounts.mentions("al")), first)
        more = [_mention(4), _mention(5), _mention(6)]
        self.done(self.accounts.add_mentions("al", more, 4))
        self.assertEqual(self.done(self.accounts.mentions("al")), [first[2], *more])
        self.done(self.accounts.add_mentions("al", [], 4))
        self.assertEqual(len(self.done(self.accounts.mentions("al"))), 4)

    def test_tokens(self) -> None:
        """
        A login token names its account until it is revoked, one by one
        or all of an account's at once; another account's stay.
        """
        self.done(self.accounts.create(_account()))
        self.done(self.accounts.create(_account("bo")))
        for digest in ("d1", "d2", "d3"):
            self.done(self.accounts.issue_token("al", digest, START + 60))
        self.done(self.accounts.issue_token("bo", "d4", START + 60))
        now = self.now()
        self.assertEqual(self.done(self.accounts.token_holder("d1", now)), "al")
        self.assertIsNone(self.done(self.accounts.token_holder("d9", now)))
        self.assertEqual(self.done(self.accounts.tokens("al", now)), 3)
        self.done(self.accounts.revoke_token("d1"))
        self.assertIsNone(self.done(self.accounts.token_holder("d1", now)))
        self.assertEqual(self.done(self.accounts.tokens("al", now)), 2)
        self.done(self.accounts.revoke_tokens("al"))
        self.assertIsNone(self.done(self.accounts.token_holder("d2", now)))
        self.assertEqual(self.done(self.accounts.tokens("al", now)), 0)
        self.assertEqual(self.done(self.accounts.token_holder("d4", now)), "bo")
        self.assertEqual(self.done(self.accounts.tokens("bo", now)), 1)

    def test_tokens_expire(self) -> None:
        """
        A token is valid until its expiry, and neither names its account
        nor counts from then on.
        """
        self.done(self.accounts.create(_account()))
        self.done(self.accounts.issue_token("al", "short", START + 60))
        self.done(self.accounts.issue_token("al", "long", START + 600))
        self.clock.advance(59)
        now = self.now()
        self.assertEqual(self.done(self.accounts.token_holder("short", now)), "al")
        self.assertEqual(self.done(self.accounts.tokens("al", now)), 2)
        self.clock.advance(1)
        now = self.now()
        self.assertIsNone(self.done(self.accounts.token_holder("short", now)))
        self.assertEqual(self.done(self.accounts.tokens("al", now)), 1)
        self.assertEqual(self.done(self.accounts.token_holder("long", now)), "al")

    def add_key(self, key: str, n: int, at: float = START) -> bool:
        """Add the test's SSH key C{n} to the account C{key}."""
        return self.done(self.accounts.add_key(key, _fingerprint(n), _line(n), at))

    def test_keys(self) -> None:
        """
        SSH keys are listed oldest first, with their line and when they
        were added; each names its account; removing one unbinds it.
        """
        self.done(self.accounts.create(_account()))
        self.assertEqual(self.done(self.accounts.keys("al")), [])
        self.assertTrue(self.add_key("al", 2, START + 5))
        self.assertTrue(self.add_key("al", 1, START + 9))
        self.assertEqual(
            self.done(self.accounts.keys("al")),
            [
                KeyRecord(_fingerprint(2), _line(2), START + 5),
                KeyRecord(_fingerprint(1), _line(1), START + 9),
            ],
        )
        self.assertEqual(self.done(self.accounts.key_owner(_fingerprint(1))), "al")
        self.assertIsNone(self.done(self.accounts.key_owner(_fingerprint(3))))
        self.assertTrue(self.done(self.accounts.remove_key("al", _fingerprint(2))))
        self.assertFalse(self.done(self.accounts.remove_key("al", _fingerprint(2))))
        self.assertIsNone(self.done(self.accounts.key_owner(_fingerprint(2))))
        self.assertEqual(
            [r.fingerprint for r in self.done(self.accounts.keys("al"))],
            [_fingerprint(1)],
        )

    def test_one_key_one_account(self) -> None:
        """
        A key on an account cannot be added again, to it or to another,
        nor removed by another; once removed, another may add it.
        """
        self.done(self.accounts.create(_account()))
        self.done(self.accounts.create(_account("bo")))
        self.assertTrue(self.add_key("al", 1))
        self.assertFalse(self.add_key("al", 1))
        self.assertFalse(self.add_key("bo", 1))
        self.assertFalse(self.done(self.accounts.remove_key("bo", _fingerprint(1))))
        self.assertEqual(self.done(self.accounts.key_owner(_fingerprint(1))), "al")
        self.assertEqual(self.done(self.accounts.keys("bo")), [])
        self.done(self.accounts.remove_key("al", _fingerprint(1)))
        self.assertTrue(self.add_key("bo", 1))
        self.assertEqual(self.done(self.accounts.key_owner(_fingerprint(1))), "bo")

    def test_key_limit(self) -> None:
        """
        An account has at most L{MAX_KEYS} keys: the next one fails with
        L{KeyLimitError} and is not bound; another account is not limited
        by it, and a removal makes room.
        """
        self.done(self.accounts.create(_account()))
        self.done(self.accounts.create(_account("bo")))
        for n in range(MAX_KEYS):
            self.assertTrue(self.add_key("al", n))
        refused = self.accounts.add_key("al", _fingerprint(99), _line(99), START)
        self.failureResultOf(refused, KeyLimitError)
        self.assertIsNone(self.done(self.accounts.key_owner(_fingerprint(99))))
        self.assertTrue(self.add_key("bo", 99))
        self.done(self.accounts.remove_key("al", _fingerprint(0)))
        self.assertTrue(self.add_key("al", 100))
        self.assertEqual(len(self.done(self.accounts.keys("al"))), MAX_KEYS)

    def test_keys_deleted_with_the_account(self) -> None:
        """
        Deleting an account unbinds its keys (others' stay), and whoever
        registers the nick next starts with none.
        """
        self.done(self.accounts.create(_account()))
        self.done(self.accounts.create(_account("bo")))
        self.add_key("al", 1)
        self.add_key("bo", 2)
        self.done(self.accounts.delete("al"))
        self.assertIsNone(self.done(self.accounts.key_owner(_fingerprint(1))))
        self.assertEqual(self.done(self.accounts.keys("al")), [])
        self.assertEqual(self.done(self.accounts.key_owner(_fingerprint(2))), "bo")
        # Left for the deleted account as it was being deleted.
        self.add_key("al", 3)
        self.assertTrue(self.done(self.accounts.create(_account(hash="new"))))
        self.assertEqual(self.done(self.accounts.keys("al")), [])
        self.assertIsNone(self.done(self.accounts.key_owner(_fingerprint(3))))
        self.assertTrue(self.add_key("bo", 1))

    def test_session_account(self) -> None:
        """
        A resume code brings back the account its user was logged in to,
        and none for a user who was not.
        """
        rooms = (("#dev", 7, 3),)
        now = self.now()
        self.store.save_session(
            Session("AAAA", "Al", "red", True, rooms, "#dev", now, "al")
        )
        self.store.save_session(Session("BBBB", "cy", "blue", False, (), None, now))
        found = self.done(self.store.session("AAAA", now - 60))
        assert found is not None
        self.assertEqual((found.account, found.rooms), ("al", rooms))
        other = self.done(self.store.session("BBBB", now - 60))
        assert other is not None
        self.assertIsNone(other.account)


class MemoryAccountTests(AccountStoreTests, SynchronousTestCase):
    """
    The accounts of L{MemoryStore}.
    """

    def make_store(self) -> MemoryStore:
        store = MemoryStore(HistoryConfig(path=":memory:"))
        self.successResultOf(store.load(self.clock.seconds()))
        return store


class SQLiteCase(SynchronousTestCase):
    """
    A real SQLite file in the test's temporary directory, opened by a
    store whose thread is a L{FakeThread} and whose timers run on
    C{clock}.
    """

    clock: Clock

    def setUp(self) -> None:
        self.thread = FakeThread()
        self.path = os.path.abspath(self.mktemp()) + ".sqlite3"
        super().setUp()

    def config(self) -> HistoryConfig:
        return HistoryConfig(path=self.path, keep=5, batch_window=0.01)

    def open(self) -> SQLiteStore:
        """A store on the file, loaded; closed at the end of the test."""
        store = SQLiteStore(self.config(), self.clock, 3, run_in_thread=self.thread)
        self.successResultOf(store.load(self.clock.seconds()))
        self.addCleanup(self.close, store)
        return store

    def close(self, store: SQLiteStore) -> None:
        """
        Close the store (again: a second close does nothing), running what
        its thread holds and giving it the time a stop may take.
        """
        self.thread.held = False
        self.thread.run()
        closing = store.close()
        self.clock.pump([0.05] * int(CLOSE_TIMEOUT / 0.05 + 40))
        self.successResultOf(closing)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """What another program reads from the file (closed by tchat)."""
        db = sqlite3.connect(self.path)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()


class SQLiteAccountTests(AccountStoreTests, SQLiteCase):
    """
    The accounts of L{SQLiteStore}, on a real file.
    """

    def make_store(self) -> SQLiteStore:
        return self.open()


_SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE rooms (
    key TEXT PRIMARY KEY, name TEXT NOT NULL, epoch INTEGER NOT NULL,
    last_id INTEGER NOT NULL DEFAULT 0, pruned_to INTEGER NOT NULL DEFAULT 0,
    topic TEXT, topic_by TEXT
);
CREATE TABLE epochs (
    room TEXT NOT NULL, epoch INTEGER NOT NULL, first_id INTEGER NOT NULL,
    PRIMARY KEY (room, epoch)
);
CREATE TABLE messages (
    room TEXT NOT NULL, id INTEGER NOT NULL, epoch INTEGER NOT NULL,
    ts REAL NOT NULL, nick TEXT NOT NULL, door TEXT NOT NULL,
    colour TEXT NOT NULL, text TEXT NOT NULL, action INTEGER NOT NULL,
    client_id TEXT, PRIMARY KEY (room, id)
) WITHOUT ROWID;
CREATE TABLE sessions (
    code TEXT PRIMARY KEY, nick TEXT NOT NULL, colour TEXT NOT NULL,
    show_colours INTEGER NOT NULL, rooms TEXT NOT NULL, current TEXT,
    saved REAL NOT NULL
);
CREATE INDEX sessions_saved ON sessions (saved);
CREATE TABLE bans (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, pattern TEXT NOT NULL,
    reason TEXT NOT NULL, by TEXT NOT NULL, created REAL NOT NULL, expires REAL
);
"""
"""The schema tchat wrote before accounts (schema 1), as it was."""

_ACCOUNTS_2 = """
ALTER TABLE sessions ADD COLUMN account TEXT;
CREATE TABLE accounts (
    key TEXT PRIMARY KEY, name TEXT NOT NULL, hash TEXT NOT NULL,
    created REAL NOT NULL, last_login REAL, last_seen REAL,
    rooms TEXT NOT NULL, ignores TEXT NOT NULL
);
CREATE TABLE offline (
    seq INTEGER PRIMARY KEY, account TEXT NOT NULL, ts REAL NOT NULL,
    sender TEXT NOT NULL, sender_door TEXT NOT NULL, colour TEXT NOT NULL,
    text TEXT NOT NULL, expires REAL NOT NULL
);
CREATE INDEX offline_account ON offline (account);
CREATE TABLE mentions (
    seq INTEGER PRIMARY KEY, account TEXT NOT NULL, room TEXT NOT NULL,
    id INTEGER NOT NULL, ts REAL NOT NULL, nick TEXT NOT NULL,
    text TEXT NOT NULL, action INTEGER NOT NULL
);
CREATE INDEX mentions_account ON mentions (account);
CREATE TABLE tokens (
    digest TEXT PRIMARY KEY, account TEXT NOT NULL, expires REAL NOT NULL
);
CREATE INDEX tokens_account ON tokens (account);
"""
"""What schema 2 added to schema 1 (accounts), as it was."""


class SQLiteFileTests(SQLiteCase):
    """
    The accounts in the embedded store's file: they outlive a restart,
    an older tchat's file is brought up to date, a newer one's refused,
    and faults of the file are said as for the history.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        super().setUp()

    def test_restart(self) -> None:
        """
        Accounts, their offline messages, mentions and tokens outlive a
        restart; what expired meanwhile is gone from the file.
        """
        store = self.open()
        accounts = store.accounts
        self.successResultOf(accounts.create(_account(rooms=(("#dev", 7, 3),))))
        self.successResultOf(
            accounts.leave_message("al", _offline("kept"), 5, START + 600)
        )
        self.successResultOf(
            accounts.leave_message("al", _offline("lapses"), 5, START + 60)
        )
        self.successResultOf(accounts.add_mentions("al", [_mention(1)], 5))
        self.successResultOf(accounts.issue_token("al", "kept", START + 600))
        self.successResultOf(accounts.issue_token("al", "lapses", START + 60))
        self.close(store)
        self.clock.advance(120)

        store = self.open()
        accounts = store.accounts
        now = self.clock.seconds()
        self.assertEqual(
            self.successResultOf(accounts.get("al")),
            _account(rooms=(("#dev", 7, 3),)),
        )
        self.assertEqual(self.successResultOf(accounts.token_holder("kept", now)), "al")
        self.assertEqual(self.successResultOf(accounts.tokens("al", now)), 1)
        self.assertEqual(self.successResultOf(accounts.mentions("al")), [_mention(1)])
        taken = self.successResultOf(accounts.take_messages("al", now))
        self.assertEqual([m.text for m in taken], ["kept"])
        self.close(store)
        self.assertEqual(self.query("SELECT digest FROM tokens"), [("kept",)])

    def test_expired_purged_at_open(self) -> None:
        """
        Offline messages and tokens that expired while tchat was stopped
        are deleted from the file when it opens.
        """
        store = self.open()
        accounts = store.accounts
        self.successResultOf(accounts.create(_account()))
        self.successResultOf(accounts.leave_message("al", _offline("m"), 5, START + 60))
        self.successResultOf(accounts.issue_token("al", "d", START + 60))
        self.close(store)
        self.assertEqual(len(self.query("SELECT * FROM offline")), 1)
        self.clock.advance(60)
        self.close(self.open())
        self.assertEqual(self.query("SELECT * FROM offline"), [])
        self.assertEqual(self.query("SELECT * FROM tokens"), [])
        self.assertEqual(self.query("SELECT key FROM accounts"), [("al",)])

    def write_schema_1(self) -> None:
        """A file as the tchat before accounts left it."""
        db = sqlite3.connect(self.path)
        db.executescript(_SCHEMA_1)
        db.executescript(
            """
            INSERT INTO meta VALUES ('schema', '1'), ('clean', '1'),
                ('sync', 'normal');
            INSERT INTO rooms VALUES ('#dev', '#Dev', 7, 2, 0, 'plans', 'al');
            INSERT INTO epochs VALUES ('#dev', 7, 1);
            INSERT INTO messages VALUES
                ('#dev', 1, 7, 1000.0, 'al', 'web', 'red', 'one', 0, NULL),
                ('#dev', 2, 7, 1001.0, 'bo', 'telnet', 'blue', 'two', 1, 'c2');
            INSERT INTO bans VALUES (1, 'nick', 'troll*', 'spam', 'root',
                1000.0, NULL);
            """
        )
        db.execute(
            "INSERT INTO sessions VALUES ('AAAA', 'al', 'red', 1, "
            "'[[\"#Dev\", 7, 2]]', '#Dev', ?)",
            (START,),
        )
        db.commit()
        db.close()

    def test_migration(self) -> None:
        """
        A file written before accounts existed opens with its rooms,
        messages, resume codes and bans, and accounts can be registered
        in it at once; it is schema 3 from then on.
        """
        self.write_schema_1()
        store = SQLiteStore(self.config(), self.clock, 3, run_in_thread=self.thread)
        loaded = self.successResultOf(store.load(self.clock.seconds()))
        self.addCleanup(self.close, store)
        (room,) = loaded.rooms
        self.assertEqual(
            (room.name, room.epoch, room.last_id, room.topic, loaded.lossy),
            ("#Dev", 7, 2, "plans", False),
        )
        self.assertEqual(
            [(m.text, m.action) for m in loaded.recent["#dev"]],
            [("one", False), ("two", True)],
        )
        self.assertEqual([m.client_id for m in loaded.tagged["#dev"]], ["c2"])
        self.assertEqual([b.pattern for b in loaded.bans], ["troll*"])
        session = self.successResultOf(store.session("AAAA", START - 60))
        self.assertEqual(
            session,
            Session("AAAA", "al", "red", True, (("#Dev", 7, 2),), "#Dev", START),
        )
        assert session is not None
        accounts = store.accounts
        self.assertTrue(self.successResultOf(accounts.create(_account())))
        self.assertEqual(self.successResultOf(accounts.holder("al")), "Al")
        store.save_session(replace(session, code="BBBB", account="al"))
        again = self.successResultOf(store.session("BBBB", START - 60))
        assert again is not None
        self.assertEqual(again.account, "al")
        self.close(store)
        self.assertEqual(
            self.query("SELECT value FROM meta WHERE key = 'schema'"), [("3",)]
        )
        self.assertEqual(
            self.query("SELECT code, account FROM sessions ORDER BY code"),
            [("AAAA", None), ("BBBB", "al")],
        )

    def write_schema_2(self) -> None:
        """A file as the tchat before SSH keys left it, with an account."""
        self.write_schema_1()
        db = sqlite3.connect(self.path)
        db.executescript(_ACCOUNTS_2)
        db.executescript(
            f"""
            UPDATE meta SET value = '2' WHERE key = 'schema';
            INSERT INTO accounts VALUES ('al', 'Al', 'hash-1', {START},
                {START + 1}, {START + 2}, '[["#Dev", 7, 2]]', '["troll"]');
            INSERT INTO offline (account, ts, sender, sender_door, colour,
                text, expires) VALUES ('al', {START}, 'bo', 'web', 'red',
                'kept', {START + 600});
            INSERT INTO mentions (account, room, id, ts, nick, text, action)
                VALUES ('al', '#dev', 1, {START + 1}, 'bo', 'al: 1', 0);
            INSERT INTO tokens VALUES ('digest', 'al', {START + 600});
            """
        )
        db.commit()
        db.close()

    def test_migration_from_2(self) -> None:
        """
        A file written before SSH keys existed opens with its accounts and
        all kept for them, and keys can be added at once; it is schema 3
        from then on, and its keys outlive a restart.
        """
        self.write_schema_2()
        store = self.open()
        accounts = store.accounts
        now = self.clock.seconds()
        self.assertEqual(
            self.successResultOf(accounts.get("al")),
            _account(
                last_login=START + 1,
                last_seen=START + 2,
                rooms=(("#Dev", 7, 2),),
                ignores=("troll",),
            ),
        )
        self.assertEqual(self.successResultOf(accounts.waiting("al", now)), 1)
        self.assertEqual(self.successResultOf(accounts.mentions("al")), [_mention(1)])
        self.assertEqual(
            self.successResultOf(accounts.token_holder("digest", now)), "al"
        )
        self.assertEqual(self.successResultOf(accounts.keys("al")), [])
        added = accounts.add_key("al", _fingerprint(1), _line(1), now)
        self.assertTrue(self.successResultOf(added))
        self.close(store)
        self.assertEqual(
            self.query("SELECT value FROM meta WHERE key = 'schema'"), [("3",)]
        )
        store = self.open()
        self.assertEqual(
            self.successResultOf(store.accounts.key_owner(_fingerprint(1))), "al"
        )

    def test_newer_schema_refused(self) -> None:
        """
        A file written by a newer tchat (schema 4) is refused, saying so,
        and left as it was: no table of this tchat's is added to it.
        """
        self.write_schema_1()
        db = sqlite3.connect(self.path)
        db.execute("UPDATE meta SET value = '4' WHERE key = 'schema'")
        db.commit()
        db.close()
        store = SQLiteStore(self.config(), self.clock, 3, run_in_thread=self.thread)
        failure = self.failureResultOf(store.load(START), sqlite3.DatabaseError)
        self.assertIn("written by a newer tchat (schema 4)", failure.getErrorMessage())
        tables = self.query("SELECT name FROM sqlite_master WHERE type = 'table'")
        self.assertNotIn(("accounts",), tables)

    def test_deleted_file(self) -> None:
        """
        Once the file is deleted under tchat, a change to an account fails
        with L{StorageError} saying so (it would be lost with the file);
        what the open file holds can still be read, so its owner can log
        in.
        """
        store = self.open()
        accounts = store.accounts
        self.successResultOf(accounts.create(_account()))
        os.unlink(self.path)
        failure = self.failureResultOf(accounts.create(_account("bo")), StorageError)
        self.assertIn("the database file was deleted", failure.getErrorMessage())
        self.failureResultOf(accounts.issue_token("al", "d", START + 60), StorageError)
        self.assertEqual(self.successResultOf(accounts.get("al")), _account())
        self.assertIsNone(self.successResultOf(accounts.holder("bo")))

    def test_read_only(self) -> None:
        """
        An error of SQLite's is given as L{StorageError}, in the words the
        history uses for it (here, a read-only database), and nothing is
        kept; once the fault is gone, calls work again.
        """
        store = self.open()

        def query_only(on: int) -> None:
            assert store._database.db is not None
            store._database.db.execute(f"PRAGMA query_only = {on}")

        self.successResultOf(store._in_thread(query_only, 1))
        failure = self.failureResultOf(store.accounts.create(_account()), StorageError)
        error = failure.value
        assert isinstance(error, StorageError)
        self.assertEqual(error.fault.check, "read-only")
        self.successResultOf(store._in_thread(query_only, 0))
        self.assertIsNone(self.successResultOf(store.accounts.get("al")))
        self.assertTrue(self.successResultOf(store.accounts.create(_account())))

    def test_in_order_on_the_thread(self) -> None:
        """
        Account calls run on the store's thread, never the reactor's, and
        after the history writes queued before them.
        """
        store = self.open()
        self.thread.held = True
        store.save_room(RoomRecord("#a", "#a", 1, [(1, 1)]))
        created = store.accounts.create(_account())
        self.assertNoResult(created)
        self.assertEqual(store.queued, 1)  # the room, being written first
        self.assertEqual(self.thread.run(), 2)
        self.assertTrue(self.successResultOf(created))
        self.assertEqual(store.queued, 0)

    def test_closed(self) -> None:
        """
        A call after the store closed fails with L{StorageError}.
        """
        store = self.open()
        self.close(store)
        self.failureResultOf(store.accounts.holder("al"), StorageError)


class RedisAccountTests(AccountStoreTests, SynchronousTestCase):
    """
    The accounts of L{RedisStore}, in a fake Redis on the test's clock.
    """

    def make_store(self) -> RedisStore:
        self.redis = FakeRedis(self.clock)
        self.link = FakeLink(self.redis, "a")
        self.link.start()
        return RedisStore(cast(RedisLink, self.link), 50, 3600)

    def tearDown(self) -> None:
        self.assertEqual(self.redis.errors, [], "the fake could not answer")

    def test_shared_by_nodes(self) -> None:
        """
        Every node sees an account another registered, and cannot register
        the same nick again.
        """
        other = FakeLink(self.redis, "b")
        other.start()
        accounts = RedisStore(cast(RedisLink, other), 50, 3600).accounts
        self.assertTrue(self.done(self.accounts.create(_account())))
        self.assertEqual(self.done(accounts.holder("al")), "Al")
        self.assertFalse(self.done(accounts.create(_account(hash="mine"))))
        self.done(accounts.issue_token("al", "d", START + 60))
        self.assertEqual(self.done(self.accounts.token_holder("d", START)), "al")

    def test_keys_expire(self) -> None:
        """
        Redis forgets offline messages and tokens by itself once they all
        expired, so that nothing is kept for an account that never logs
        in again.
        """
        self.done(self.accounts.create(_account()))
        self.done(self.accounts.leave_message("al", _offline("a"), 5, START + 60))
        self.done(self.accounts.leave_message("al", _offline("b"), 5, START + 120))
        self.done(self.accounts.issue_token("al", "d1", START + 60))
        self.done(self.accounts.issue_token("al", "d2", START + 120))
        self.clock.advance(60)
        self.assertEqual(self.redis.command("EXISTS", "tchat:token:d1"), 0)
        self.assertEqual(self.redis.command("EXISTS", "tchat:token:d2"), 1)
        self.assertEqual(self.redis.command("EXISTS", "tchat:offline:al"), 1)
        self.clock.advance(60)
        self.assertEqual(self.redis.command("EXISTS", "tchat:offline:al"), 0)
        self.assertEqual(self.redis.command("EXISTS", "tchat:token:d2"), 0)
        self.assertEqual(self.redis.command("EXISTS", "tchat:tokens:al"), 0)
        self.assertEqual(self.redis.command("EXISTS", "tchat:account:al"), 1)

    def test_old_session(self) -> None:
        """
        A resume code kept by a tchat from before accounts (its JSON has no
        account) still resumes, logged in to none.
        """
        self.redis.command(
            "SET",
            "tchat:session:AAAA",
            json.dumps(
                {
                    "code": "AAAA",
                    "nick": "al",
                    "colour": "red",
                    "show_colours": True,
                    "rooms": [["#dev", 7, 3]],
                    "current": "#dev",
                    "saved": START,
                }
            ),
        )
        found = self.done(self.store.session("AAAA", START - 60))
        self.assertEqual(
            found, Session("AAAA", "al", "red", True, (("#dev", 7, 3),), "#dev", START)
        )

    def test_unreachable(self) -> None:
        """
        While Redis cannot be reached, calls fail at once, saying so.
        """
        self.link.go_down()
        self.failureResultOf(self.accounts.holder("al"), ClusterDownError)
        self.failureResultOf(self.accounts.create(_account()), ClusterDownError)
