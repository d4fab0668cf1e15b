# -*- test-case-name: tests.test_history -*-
"""
The SQLite side of L{tchat.history.SQLiteStore}: the schema, the queued
writes (L{Change}, L{MessageWrite}) and L{Database}, the file as the
store's writer thread uses it.

The file is tchat's alone while it is open (C{locking_mode = EXCLUSIVE}):
the WAL index lives in the process's memory rather than in a C{-shm} file
mapped into it, so nothing another program does to such a file can crash
tchat, and no other program can read or write the database meanwhile.
"""

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from tchat.config import HistoryConfig
from tchat.events import RoomMessage
from tchat.history import account_tables
from tchat.history.faults import STOPPED, Fault, StorageError
from tchat.history.records import Ban, Loaded, RoomRecord, Session
from tchat.palette import PALETTE
from tchat.text import room_key

T = TypeVar("T")

SCHEMA_VERSION = 3
"""
Schema 2 adds the accounts (L{account_tables.SCHEMA}) and the account of
a session; schema 3, the accounts' SSH keys (the C{ssh_keys} table).  An
older file is brought to it in place when opened, keeping what it holds.
"""

_META = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
)
"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    last_id INTEGER NOT NULL DEFAULT 0,
    pruned_to INTEGER NOT NULL DEFAULT 0,
    topic TEXT,
    topic_by TEXT
);
CREATE TABLE IF NOT EXISTS epochs (
    room TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    first_id INTEGER NOT NULL,
    PRIMARY KEY (room, epoch)
);
CREATE TABLE IF NOT EXISTS messages (
    room TEXT NOT NULL,
    id INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    ts REAL NOT NULL,
    nick TEXT NOT NULL,
    door TEXT NOT NULL,
    colour TEXT NOT NULL,
    text TEXT NOT NULL,
    action INTEGER NOT NULL, -- 0: a line, 1: /me, 2: an IRC NOTICE
    client_id TEXT,
    PRIMARY KEY (room, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
    code TEXT PRIMARY KEY,
    nick TEXT NOT NULL,
    colour TEXT NOT NULL,
    show_colours INTEGER NOT NULL,
    rooms TEXT NOT NULL,
    current TEXT,
    saved REAL NOT NULL,
    account TEXT
);
CREATE INDEX IF NOT EXISTS sessions_saved ON sessions (saved);
CREATE TABLE IF NOT EXISTS bans (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    pattern TEXT NOT NULL,
    reason TEXT NOT NULL,
    by TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL
);
"""


def _create_tables(db: sqlite3.Connection) -> None:
    """
    Create what the file lacks of the schema (the tables schemas 2 and 3
    added), and add the column schema 2 added to a table of a schema 1
    file.  Statement by statement, in the
    caller's transaction (C{executescript} would commit it first): a
    migration that fails leaves the file as it was.
    """
    for statement in (_SCHEMA + account_tables.SCHEMA).split(";"):
        if statement.strip():
            db.execute(statement)
    # By the columns rather than the schema number: a file whose first
    # opening stopped before its meta were written has none.
    columns = {row[1] for row in db.execute("PRAGMA table_info(sessions)")}
    if "account" not in columns:
        db.execute("ALTER TABLE sessions ADD COLUMN account TEXT")


_COLUMNS = "room, id, epoch, ts, nick, door, colour, text, action, client_id"


def message_row(m: RoomMessage) -> tuple[Any, ...]:
    return (
        room_key(m.room),
        m.id,
        m.epoch,
        m.ts,
        m.nick,
        m.door,
        m.colour.name,
        m.text,
        NOTICE if m.notice else int(m.action),
        m.client_id,
    )


_FALLBACK_COLOUR = next(iter(PALETTE.values()))

NOTICE = 2
"""The C{action} column of a message said as an IRC C{NOTICE} (0: a line, 1:
C{/me}): older databases, with only 0 and 1, read as before."""


def _message(name: str, row: tuple[Any, ...]) -> RoomMessage:
    _, id, epoch, ts, nick, door, colour, text, action, client_id = row
    return RoomMessage(
        name,
        id,
        ts,
        nick,
        door,
        PALETTE.get(colour, _FALLBACK_COLOUR),
        text,
        action == 1,
        client_id,
        epoch,
        action == NOTICE,
    )


class Change:
    """
    One queued write other than a room message: a room, a resume code or
    a ban (C{kind}), made by C{run} inside the batch's transaction.
    """

    __slots__ = ("kind", "run")

    def __init__(self, kind: str, run: Callable[[sqlite3.Connection], None]) -> None:
        self.kind = kind
        self.run = run


class MessageWrite:
    """
    The write of one room message.  A batch's messages are inserted with
    one statement, and each room's counters updated once per batch.  With
    C{sync = full} a message that failed to be written is dropped (its
    sender is told) rather than retried.
    """

    __slots__ = ("row",)

    kind = "room message"

    def __init__(self, row: tuple[Any, ...]) -> None:
        self.row = row


Op = Change | MessageWrite


def plural(count: int, noun: str) -> str:
    """
    @return: C{"1 change"}, C{"2 changes"}.
    """
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def describe_changes(ops: Iterable[Op]) -> str:
    """
    What a list of queued writes holds, for a log line about losing it:
    C{"3 room messages (#dev: ids 4 to 6), 1 resume code"}.
    """
    ids: dict[str, list[int]] = {}
    others: dict[str, int] = {}
    for op in ops:
        if isinstance(op, MessageWrite):
            ids.setdefault(op.row[0], []).append(op.row[1])
        else:
            others[op.kind] = others.get(op.kind, 0) + 1
    parts = []
    if ids:
        rooms = "; ".join(
            f"{room}: id {min(found)}"
            if len(found) == 1
            else f"{room}: ids {min(found)} to {max(found)}"
            for room, found in ids.items()
        )
        count = sum(len(found) for found in ids.values())
        parts.append(f"{plural(count, 'room message')} ({rooms})")
    parts.extend(plural(count, kind) for kind, count in others.items())
    return ", ".join(parts) or "nothing"


def in_transaction(db: sqlite3.Connection, work: Callable[[], None]) -> None:
    """
    Run C{work} in one C{BEGIN IMMEDIATE} transaction, committed at its end.

    On an error the transaction is rolled back if it is still open: SQLite
    rolls some back by itself (a full disk), and a C{ROLLBACK} then would
    only say "cannot rollback - no transaction is active", hiding the
    error that matters.  A failed rollback leaves the connection as SQLite
    left it; the next batch tries again (see L{Database.write}).
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        work()
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise


def room_change(room: RoomRecord) -> Change:
    """
    @return: The write that creates C{room} or records its new name, epoch
        or topic (its counters only ever go up).
    """
    values = (
        room.key,
        room.name,
        room.epoch,
        room.last_id,
        room.pruned_to,
        room.topic,
        room.topic_by,
    )
    lineage = [(room.key, e, f) for e, f in room.lineage]

    def run(db: sqlite3.Connection) -> None:
        db.execute(
            "INSERT INTO rooms "
            "(key, name, epoch, last_id, pruned_to, topic, topic_by) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
            "name = excluded.name, epoch = excluded.epoch, "
            "topic = excluded.topic, topic_by = excluded.topic_by, "
            "last_id = MAX(last_id, excluded.last_id), "
            "pruned_to = MAX(pruned_to, excluded.pruned_to)",
            values,
        )
        db.executemany(
            "INSERT OR IGNORE INTO epochs (room, epoch, first_id) VALUES (?, ?, ?)",
            lineage,
        )

    return Change("room", run)


def room_gone_change(key: str) -> Change:
    """
    @return: The write that forgets the room with key C{key}: its record,
        epochs and messages.
    """

    def run(db: sqlite3.Connection) -> None:
        for table, column in (
            ("messages", "room"),
            ("epochs", "room"),
            ("rooms", "key"),
        ):
            db.execute(f"DELETE FROM {table} WHERE {column} = ?", (key,))

    return Change("forgotten room", run)


def session_gone_change(code: str) -> Change:
    """
    @return: The write that forgets the resume code C{code}.
    """

    def run(db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM sessions WHERE code = ?", (code,))

    return Change("forgotten resume code", run)


def session_change(session: Session) -> Change:
    """
    @return: The write that keeps C{session} under its resume code.
    """
    values = (
        session.code,
        session.nick,
        session.colour,
        int(session.show_colours),
        json.dumps(session.rooms),
        session.current,
        session.saved,
        session.account,
    )

    def run(db: sqlite3.Connection) -> None:
        db.execute(
            "INSERT OR REPLACE INTO sessions "
            "(code, nick, colour, show_colours, rooms, current, saved, account) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            values,
        )

    return Change("resume code", run)


def ban_change(ban: Ban) -> Change:
    """
    @return: The write that keeps C{ban}.
    """
    values = (
        ban.id,
        ban.kind,
        ban.pattern,
        ban.reason,
        ban.by,
        ban.created,
        ban.expires,
    )

    def run(db: sqlite3.Connection) -> None:
        db.execute(
            "INSERT OR REPLACE INTO bans "
            "(id, kind, pattern, reason, by, created, expires) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            values,
        )

    return Change("ban", run)


def unban_change(ban_id: int) -> Change:
    """
    @return: The write that forgets ban C{ban_id}.
    """

    def run(db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM bans WHERE id = ?", (ban_id,))

    return Change("lifted ban", run)


class Database:
    """
    The history's SQLite file, as the store's writer thread uses it: every
    method but the constructor runs on that thread, one call at a time.

    @ivar config: The C{[history]} in force (C{keep} and C{resume_ttl}
        change on reload).
    @ivar path: The file's absolute path.
    @ivar db: The connection, between L{open} and L{finish}.
    """

    def __init__(self, config: HistoryConfig, recent: int) -> None:
        """
        @param recent: How many of each room's latest messages L{open}
            returns.
        """
        self.config = config
        self.path = os.path.abspath(config.path)
        self.db: sqlite3.Connection | None = None
        self._recent = recent
        self._identity: tuple[int, int] | None = None

    def open(self, now: float) -> Loaded:
        """
        Open the file, locked for this process alone, and load what the
        hub needs to start.

        @param now: The current time, for new epochs after a crash.
        """
        db = sqlite3.connect(self.config.path, isolation_level=None)
        try:
            # Before the first access, so that SQLite never maps a -shm
            # file: the WAL index stays in this process's memory (tchat is
            # the only user of its database), and the file stays locked
            # against other programs while tchat runs.
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            db.execute("PRAGMA busy_timeout=5000")
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise sqlite3.OperationalError(f"cannot use WAL mode (got {mode})")
            sync = "FULL" if self.config.sync == "full" else "NORMAL"
            db.execute(f"PRAGMA synchronous={sync}")
            db.execute(_META)
            # One transaction for the start-up changes, a migration
            # included; the schema is read before anything is created, so
            # that a newer tchat's file is left as it was.
            db.execute("BEGIN IMMEDIATE")
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            version = int(meta.get("schema", SCHEMA_VERSION))
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"written by a newer tchat (schema {version}); "
                    f"this one knows schema {SCHEMA_VERSION}"
                )
            _create_tables(db)
            lossy = meta.get("clean") == "0" and meta.get("sync") != "full"
            loaded = Loaded(lossy=lossy)
            if lossy:
                self._new_epochs(db, now)
            self._prune_all(db)
            self._expire_sessions(db, now)
            account_tables.purge(db, now)
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [
                    ("schema", str(SCHEMA_VERSION)),
                    ("clean", "0"),
                    ("sync", self.config.sync),
                ],
            )
            self._read_rooms(db, loaded)
            db.execute("DELETE FROM bans WHERE expires <= ?", (now,))
            loaded.bans = [
                Ban(*row)
                for row in db.execute(
                    "SELECT id, kind, pattern, reason, by, created, expires "
                    "FROM bans ORDER BY id"
                )
            ]
            db.execute("COMMIT")
            stat = os.stat(self.path)
        except BaseException:
            db.close()
            raise
        self._identity = (stat.st_dev, stat.st_ino)
        # A -shm file left by an older tchat that crashed: the file is
        # locked for this process now, so nothing else is using it.
        with contextlib.suppress(OSError):
            os.remove(self.path + "-shm")
        self.db = db
        return loaded

    def _new_epochs(self, db: sqlite3.Connection, now: float) -> None:
        # The last batch of the previous run may be gone, and with it ids
        # that clients saw: start each room on a new epoch from the next id.
        stamp = int(now * 1000)
        rooms = db.execute("SELECT key, epoch, last_id FROM rooms").fetchall()
        for key, epoch, last_id in rooms:
            new = max(stamp, epoch + 1)
            db.execute("UPDATE rooms SET epoch = ? WHERE key = ?", (new, key))
            db.execute(
                "INSERT OR REPLACE INTO epochs (room, epoch, first_id) "
                "VALUES (?, ?, ?)",
                (key, new, last_id + 1),
            )

    def _prune_all(self, db: sqlite3.Connection) -> None:
        keep = self.config.keep
        for key, last_id in db.execute("SELECT key, last_id FROM rooms").fetchall():
            self._prune(db, key, last_id - keep)

    def _prune(self, db: sqlite3.Connection, key: str, floor: int) -> None:
        if floor <= 0:
            return
        db.execute("DELETE FROM messages WHERE room = ? AND id <= ?", (key, floor))
        db.execute(
            "UPDATE rooms SET pruned_to = MAX(pruned_to, ?) WHERE key = ?",
            (floor, key),
        )

    def _expire_sessions(self, db: sqlite3.Connection, now: float) -> None:
        db.execute(
            "DELETE FROM sessions WHERE saved < ?", (now - self.config.resume_ttl,)
        )

    def _read_rooms(self, db: sqlite3.Connection, loaded: Loaded) -> None:
        lineages: dict[str, list[tuple[int, int]]] = {}
        for key, epoch, first_id in db.execute(
            "SELECT room, epoch, first_id FROM epochs ORDER BY room, first_id, epoch"
        ):
            lineages.setdefault(key, []).append((epoch, first_id))
        for row in db.execute(
            "SELECT key, name, epoch, last_id, pruned_to, topic, topic_by FROM rooms"
        ).fetchall():
            key, name, epoch, last_id, pruned_to, topic, topic_by = row
            lineage = lineages.get(key) or [(epoch, 1)]
            room = RoomRecord(
                key, name, epoch, lineage, last_id, pruned_to, topic, topic_by
            )
            loaded.rooms.append(room)
            recent = db.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE room = ? "
                "ORDER BY id DESC LIMIT ?",
                (key, self._recent),
            ).fetchall()
            loaded.recent[key] = [_message(name, r) for r in reversed(recent)]
            tagged = db.execute(
                f"SELECT {_COLUMNS} FROM messages "
                "WHERE room = ? AND client_id IS NOT NULL ORDER BY id",
                (key,),
            ).fetchall()
            loaded.tagged[key] = [_message(name, r) for r in tagged]

    def write(self, ops: list[Op]) -> float:
        """
        Write a batch in one transaction, if the file is still tchat's.

        @return: How many seconds the transaction took.
        @raise StorageError: Saying why the batch was not written.
        """
        started = time.perf_counter()
        db = self.db
        assert db is not None
        self.check()
        rows = [op.row for op in ops if isinstance(op, MessageWrite)]
        latest: dict[str, int] = {}
        for row in rows:
            latest[row[0]] = max(latest.get(row[0], 0), row[1])

        def work() -> None:
            # Rooms (and sessions) first: the messages' rooms then exist.
            for op in ops:
                if isinstance(op, Change):
                    op.run(db)
            db.executemany(
                f"INSERT OR REPLACE INTO messages ({_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            for key, last_id in latest.items():
                db.execute(
                    "UPDATE rooms SET last_id = MAX(last_id, ?) WHERE key = ?",
                    (last_id, key),
                )
                self._prune(db, key, last_id - self.config.keep)

        try:
            if db.in_transaction:
                # The rollback of an earlier batch failed.
                db.execute("ROLLBACK")
            in_transaction(db, work)
        except sqlite3.Error as e:
            raise StorageError(self._diagnose(e)) from e
        return time.perf_counter() - started

    def check(self) -> None:
        """
        Check that the file at the configured path is the one open: a
        database deleted or replaced under tchat takes every write with it
        when tchat stops, so none is made.

        @raise StorageError: If it is not.
        """
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            raise StorageError(
                Fault(
                    "deleted",
                    "the database file was deleted while tchat runs",
                    self.path,
                    "nothing more can be kept; what the file held is lost when "
                    "tchat stops. Restart tchat to start a new file",
                    lasting=True,
                )
            ) from None
        except OSError as e:
            raise StorageError(
                Fault(
                    "cannot-open",
                    "the database file cannot be found",
                    f"{self.path}: {e.strerror}",
                    "check the file's folder",
                )
            ) from None
        if (stat.st_dev, stat.st_ino) != self._identity:
            raise StorageError(
                Fault(
                    "replaced",
                    "the database file was replaced by another while tchat runs",
                    self.path,
                    "nothing more can be kept in the file tchat has open, which "
                    "is lost when tchat stops. Restart tchat to use the new file",
                    lasting=True,
                )
            )

    def _diagnose(self, error: sqlite3.Error) -> Fault:
        """
        @return: The fault C{error} shows, named more precisely when one of
            the database's files cannot be written: SQLite only calls that
            an I/O error.
        """
        fault = Fault.of(error)
        if fault.check in ("io-error", "read-only", "cannot-open", "failing"):
            # os.access, not open(): closing another descriptor of the file
            # would drop SQLite's locks on it.
            for path in (self.path, self.path + "-wal"):
                if os.path.exists(path) and not os.access(path, os.W_OK):
                    return Fault(
                        "not-writable",
                        "the database cannot be written",
                        f"{error}; {path} is not writable",
                        "make it writable by tchat's user again (chmod, "
                        "chattr -i, a read-only mount)",
                    )
        return fault

    def read(
        self, key: str, after: int, upto: int | None, before: int | None, limit: int
    ) -> list[RoomMessage]:
        """
        @return: See L{tchat.history.HistoryStore.read}.
        """
        db = self.db
        assert db is not None
        conditions = ["room = ?", "id > ?"]
        args: list[Any] = [key, after]
        if upto is not None:
            conditions.append("id <= ?")
            args.append(upto)
        if before is not None:
            conditions.append("id < ?")
            args.append(before)
        order = "DESC" if before is not None else "ASC"
        rows = db.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE {' AND '.join(conditions)} "
            f"ORDER BY id {order} LIMIT ?",
            (*args, limit),
        ).fetchall()
        if before is not None:
            rows.reverse()
        name = db.execute("SELECT name FROM rooms WHERE key = ?", (key,)).fetchone()
        return [_message(name[0] if name else key, r) for r in rows]

    def read_session(self, code: str, oldest: float) -> Session | None:
        """
        @return: See L{tchat.history.HistoryStore.session}.
        """
        db = self.db
        assert db is not None
        row = db.execute(
            "SELECT code, nick, colour, show_colours, rooms, current, saved, "
            "account FROM sessions WHERE code = ? AND saved >= ?",
            (code, oldest),
        ).fetchone()
        if row is None:
            return None
        code, nick, colour, show, rooms, current, saved, account = row
        return Session(
            code,
            nick,
            colour,
            bool(show),
            tuple((str(n), int(e), int(i)) for n, e, i in json.loads(rooms)),
            current,
            saved,
            account,
        )

    def transact(self, work: Callable[..., T], writes: bool, *args: Any) -> T:
        """
        Run C{work(db, *args)} in a transaction of its own: one call of the
        accounts (L{tchat.history.sqlite.SQLiteAccounts}).

        @param writes: C{work} changes the file, so it is not run when the
            file is no longer tchat's (see L{check}): what it wrote would
            be lost when tchat stops.  Reads are answered from the file
            open, which still holds everything.
        @raise StorageError: Saying why it could not be done, as for
            L{write}; what C{work} raises otherwise (L{MailboxFullError})
            is raised as it is, after the transaction is rolled back.
        """
        db = self.db
        if db is None:
            raise StorageError(STOPPED)
        if writes:
            self.check()
        done: list[T] = []
        try:
            if db.in_transaction:
                # The rollback of an earlier batch failed.
                db.execute("ROLLBACK")
            in_transaction(db, lambda: done.append(work(db, *args)))
        except sqlite3.Error as e:
            raise StorageError(self._diagnose(e)) from e
        return done[0]

    def finish(self, now: float, clean: bool) -> list[str]:
        """
        Record a clean stop (if C{clean}) and close the database, whatever
        fails on the way.

        @return: What failed, if anything, for the log.
        """
        db, self.db = self.db, None
        if db is None:
            return []
        problems = []
        try:
            if clean:
                self.check()

                def work() -> None:
                    self._expire_sessions(db, now)
                    db.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES ('clean', '1')"
                    )

                in_transaction(db, work)
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except (sqlite3.Error, StorageError) as e:
            problems.append(f"could not record a clean stop: {e}")
        finally:
            try:
                db.close()
            except sqlite3.Error as e:
                problems.append(f"could not close the database: {e}")
        return problems
