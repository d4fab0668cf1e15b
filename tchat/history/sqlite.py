# -*- test-case-name: tests.test_history -*-
"""
L{SQLiteStore}: history in one SQLite file in WAL mode, used only from one
thread so the reactor never waits for the disk, and written in batches.
"""

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol, TypeVar, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from tchat.config import HistoryConfig
from tchat.events import RoomMessage
from tchat.history.records import Ban, Loaded, RoomRecord, Session
from tchat.palette import PALETTE
from tchat.text import room_key

T = TypeVar("T")

SCHEMA_VERSION = 1

# A batch is committed at once when it grows this large, whatever the window.
MAX_BATCH = 2000


class ThreadRunner(Protocol):
    """
    Runs the store's work off the reactor thread.

    C{run(f, *args)} calls C{f(*args)} and returns a L{Deferred} that fires
    on the reactor thread with its result or its exception.  Calls must run
    one at a time, in the order they were made: a read relies on every
    write queued before it having run.
    """

    def __call__(self, f: Callable[..., T], /, *args: Any) -> Deferred[T]: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
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
    action INTEGER NOT NULL,
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
    saved REAL NOT NULL
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

_COLUMNS = "room, id, epoch, ts, nick, door, colour, text, action, client_id"


def _message_row(m: RoomMessage) -> tuple[Any, ...]:
    return (
        room_key(m.room),
        m.id,
        m.epoch,
        m.ts,
        m.nick,
        m.door,
        m.colour.name,
        m.text,
        int(m.action),
        m.client_id,
    )


_FALLBACK_COLOUR = next(iter(PALETTE.values()))


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
        bool(action),
        client_id,
        epoch,
    )


_Op = Callable[[sqlite3.Connection], None]


class _MessageWrite:
    """
    The write of one room message.  A batch's messages are inserted with
    one statement, and each room's counters updated once per batch.  With
    C{sync = full} a message that failed to be written is dropped (its
    sender is told) rather than retried.
    """

    __slots__ = ("row",)

    def __init__(self, row: tuple[Any, ...]) -> None:
        self.row = row

    def __call__(self, db: sqlite3.Connection) -> None:
        raise AssertionError("written by SQLiteStore._write")


class SQLiteStore:
    """
    History in one SQLite file, in WAL mode, from one thread of its own.

    @ivar description: For the start-up log line.
    @ivar batches: Transactions committed; C{failed_batches}: not.
    """

    _log = Logger()

    def __init__(
        self,
        config: HistoryConfig,
        clock: IReactorTime,
        recent: int,
        run_in_thread: ThreadRunner | None = None,
    ) -> None:
        """
        @param clock: For the batch window, the delays before retrying a
            failed batch and the wait for a batch in flight when closing.
            Without C{run_in_thread} it must be the reactor, providing
            L{IReactorThreads} too.
        @param recent: How many of each room's latest messages L{load}
            returns.
        @param run_in_thread: Runs every call that touches the database,
            one at a time and in order (see L{ThreadRunner}).  C{None}
            for a thread pool of one thread on C{clock}, started by
            L{load} and stopped by L{close}.
        """
        self._config = config
        self._clock = clock
        self._recent = recent
        self._pool: ThreadPool | None = None
        if run_in_thread is None:
            pool = ThreadPool(minthreads=1, maxthreads=1, name="tchat-history")
            threads = cast(IReactorThreads, clock)

            def in_pool(f: Callable[..., T], /, *args: Any) -> Deferred[T]:
                return deferToThreadPool(threads, pool, f, *args)

            self._pool, run_in_thread = pool, in_pool
        self._in_thread: ThreadRunner = run_in_thread
        self._running = False
        self._db: sqlite3.Connection | None = None
        self._pending: list[_Op] = []
        self._waiters: list[Deferred[None]] = []
        self._inflight = 0
        self._inflight_ops = 0
        self._timer: Any = None
        self._retry_delay = 0.0
        self._closing = False
        self.failed_batches = 0
        self.batches = 0
        self.observe_write: Callable[[float], None] | None = None
        self.description = (
            f"SQLite at {config.path} (WAL; keep {config.keep} per room, "
            f"replay {config.replay}, sync {config.sync}, "
            f"batch window {config.batch_window * 1000:g} ms)"
        )

    # -- thread side: everything that touches self._db ----------------------

    def _open(self, now: float) -> Loaded:
        db = sqlite3.connect(self._config.path, isolation_level=None)
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise sqlite3.OperationalError(f"cannot use WAL mode (got {mode})")
            sync = "FULL" if self._config.sync == "full" else "NORMAL"
            db.execute(f"PRAGMA synchronous={sync}")
            db.execute("PRAGMA busy_timeout=5000")
            # executescript commits as it goes: schema first, then one
            # transaction for the start-up changes.
            db.executescript(_SCHEMA)
            db.execute("BEGIN IMMEDIATE")
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            version = int(meta.get("schema", SCHEMA_VERSION))
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"written by a newer tchat (schema {version}); "
                    f"this one knows schema {SCHEMA_VERSION}"
                )
            lossy = meta.get("clean") == "0" and meta.get("sync") != "full"
            loaded = Loaded(lossy=lossy)
            if lossy:
                self._new_epochs(db, now)
            self._prune_all(db)
            self._expire_sessions(db, now)
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [
                    ("schema", str(SCHEMA_VERSION)),
                    ("clean", "0"),
                    ("sync", self._config.sync),
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
        except BaseException:
            db.close()
            raise
        self._db = db
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
        keep = self._config.keep
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
            "DELETE FROM sessions WHERE saved < ?", (now - self._config.resume_ttl,)
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

    def _write(self, ops: list[_Op]) -> float:
        """
        @return: How many seconds the transaction took.
        """
        started = time.perf_counter()
        db = self._db
        assert db is not None
        rows = [op.row for op in ops if isinstance(op, _MessageWrite)]
        latest: dict[str, int] = {}
        for row in rows:
            latest[row[0]] = max(latest.get(row[0], 0), row[1])
        db.execute("BEGIN IMMEDIATE")
        try:
            # Rooms (and sessions) first: the messages' rooms then exist.
            for op in ops:
                if not isinstance(op, _MessageWrite):
                    op(db)
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
                self._prune(db, key, last_id - self._config.keep)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return time.perf_counter() - started

    def _read(
        self, key: str, after: int, upto: int | None, before: int | None, limit: int
    ) -> list[RoomMessage]:
        db = self._db
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

    def _read_session(self, code: str, oldest: float) -> Session | None:
        db = self._db
        assert db is not None
        row = db.execute(
            "SELECT code, nick, colour, show_colours, rooms, current, saved "
            "FROM sessions WHERE code = ? AND saved >= ?",
            (code, oldest),
        ).fetchone()
        if row is None:
            return None
        code, nick, colour, show, rooms, current, saved = row
        return Session(
            code,
            nick,
            colour,
            bool(show),
            tuple((str(n), int(e), int(i)) for n, e, i in json.loads(rooms)),
            current,
            saved,
        )

    def _finish(self, now: float) -> None:
        db = self._db
        if db is None:
            return
        self._expire_sessions(db, now)
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('clean', '1')")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        self._db = None

    # -- reactor side ------------------------------------------------------

    def load(self, now: float) -> Deferred[Loaded]:
        self._running = True
        if self._pool is not None:
            self._pool.start()
        return self._in_thread(self._open, now)

    def _queue(self, op: _Op) -> None:
        self._pending.append(op)
        if len(self._pending) >= MAX_BATCH:
            self._flush()
        elif self._timer is None and not self._closing:
            delay: float | None = self._config.batch_window
            if self._config.sync == "full":
                # Group commit: write as soon as the disk is free; what
                # arrives meanwhile goes in the next batch.
                delay = 0 if self._inflight == 0 else None
            if delay is not None:
                self._timer = self._clock.callLater(
                    max(delay, self._retry_delay), self._flush
                )

    def save_room(self, room: RoomRecord) -> None:
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

        def op(db: sqlite3.Connection) -> None:
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

        self._queue(op)

    def append(self, message: RoomMessage, durable: bool) -> Deferred[None] | None:
        self._queue(_MessageWrite(_message_row(message)))
        if not durable:
            return None
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def save_session(self, session: Session) -> None:
        values = (
            session.code,
            session.nick,
            session.colour,
            int(session.show_colours),
            json.dumps(session.rooms),
            session.current,
            session.saved,
        )

        def op(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO sessions "
                "(code, nick, colour, show_colours, rooms, current, saved) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                values,
            )

        self._queue(op)

    def save_ban(self, ban: Ban) -> None:
        values = (
            ban.id,
            ban.kind,
            ban.pattern,
            ban.reason,
            ban.by,
            ban.created,
            ban.expires,
        )

        def op(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO bans "
                "(id, kind, pattern, reason, by, created, expires) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                values,
            )

        self._queue(op)

    def delete_ban(self, ban_id: int) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM bans WHERE id = ?", (ban_id,))

        self._queue(op)

    def reconfigure(self, config: HistoryConfig) -> None:
        # Where and how history is written is fixed at start; how much is
        # kept is not.
        self._config = replace(
            self._config, keep=config.keep, resume_ttl=config.resume_ttl
        )

    @property
    def queued(self) -> int:
        """Writes waiting for the next batch or being committed."""
        return len(self._pending) + self._inflight_ops

    def _flush(self) -> Deferred[None] | None:
        """
        Send what is queued to the thread as one transaction.

        @return: Fires when it is committed (or failed and re-queued), or
            C{None} if nothing was queued.
        """
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        if not self._pending:
            return None
        ops, self._pending = self._pending, []
        waiters, self._waiters = self._waiters, []
        self._inflight += 1
        self._inflight_ops += len(ops)
        return self._in_thread(self._write, ops).addBoth(self._written, ops, waiters)

    def _written(
        self,
        result: Failure | float,
        ops: list[_Op],
        waiters: list[Deferred[None]],
    ) -> None:
        self._inflight -= 1
        self._inflight_ops -= len(ops)
        if not isinstance(result, Failure) and self.observe_write is not None:
            self.observe_write(result)
        if isinstance(result, Failure):
            self.failed_batches += 1
            self._retry_delay = min(max(self._retry_delay * 2, 0.5), 30.0)
            self._log.failure(
                "history: could not write {count} queued changes; "
                "retrying in {delay:g} s",
                result,
                count=len(ops),
                delay=self._retry_delay,
            )
            if self._closing:
                self._log.error(
                    "history: stopping; {count} changes could not be written "
                    "and are lost",
                    count=len(ops),
                )
                for waiter in waiters:
                    waiter.errback(result)
                return
            if waiters:
                # sync = full: nobody saw these messages; their senders are
                # told, and only the other writes are retried.
                ops = [op for op in ops if not isinstance(op, _MessageWrite)]
                for waiter in waiters:
                    waiter.errback(result)
            # Keep them, in order, ahead of anything queued since.
            self._pending[:0] = ops
        else:
            self.batches += 1
            self._retry_delay = 0.0
            for waiter in waiters:
                waiter.callback(None)
        if self._pending and self._timer is None and not self._closing:
            self._timer = self._clock.callLater(
                self._retry_delay
                if self._config.sync == "full"
                else max(self._retry_delay, self._config.batch_window),
                self._flush,
            )

    def read(
        self,
        room_key: str,
        after: int = 0,
        upto: int | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> Deferred[list[RoomMessage]]:
        # The one thread runs jobs in order: flushing first makes the read
        # see every message queued before it.
        self._flush()
        return self._in_thread(self._read, room_key, after, upto, before, limit)

    def session(self, code: str, oldest: float) -> Deferred[Session | None]:
        self._flush()
        return self._in_thread(self._read_session, code, oldest)

    async def _close(self) -> None:
        self._closing = True
        while self._pending or self._inflight:
            d = self._flush()
            if d is None:
                # Something is in flight; give it a moment.
                wait: Deferred[None] = Deferred()
                self._clock.callLater(0.01, wait.callback, None)
                d = wait
            await d
        await self._in_thread(self._finish, self._clock.seconds())
        self._running = False
        if self._pool is not None:
            self._pool.stop()

    def close(self) -> Deferred[None]:
        if not self._running:
            return succeed(None)
        return Deferred.fromCoroutine(self._close())
