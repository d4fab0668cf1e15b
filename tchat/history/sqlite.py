# -*- test-case-name: tests.test_history -*-
"""
L{SQLiteStore}: history in one SQLite file in WAL mode, used only from one
thread so the reactor never waits for the disk, and written in batches.

The file is tchat's alone while it runs (see L{tchat.history.database}).
When the disk refuses writes (full, read-only, the file deleted), the store
says what is wrong in words (L{Fault}), once and then every few minutes,
keeps the writes queued and retries them; L{SQLiteStore.health} reports it
to the admin door.  A stop retries for a bounded time, then gives up and
logs what is lost: it always finishes.
"""

import sqlite3
from collections.abc import Callable
from dataclasses import replace
from threading import Thread
from typing import Any, Protocol, TypeVar, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorThreads, IReactorTime
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from tchat.config import HistoryConfig
from tchat.events import Mention, RoomMessage
from tchat.history import account_tables
from tchat.history.database import (
    Database,
    MessageWrite,
    Op,
    ban_change,
    describe_changes,
    message_row,
    plural,
    room_change,
    room_gone_change,
    session_change,
    session_gone_change,
    unban_change,
)
from tchat.history.faults import STOPPED, Fault, StorageError
from tchat.history.records import (
    Account,
    Ban,
    KeyRecord,
    Loaded,
    Offline,
    RoomRecord,
    Session,
)

T = TypeVar("T")

# A batch is committed at once when it grows this large, whatever the window.
MAX_BATCH = 2000

MAX_RETRY_DELAY = 30.0
"""The longest wait, in seconds, between two tries of a refused batch."""

CLOSE_TIMEOUT = 5.0
"""Seconds a stop keeps trying to write what the disk refuses (and waits
for a disk that does not answer) before it gives up on it.  With
C{[server] shutdown_grace} it must stay well within what supervisors allow
a stop (systemd's C{TimeoutStopSec}: 30 s in C{contrib/tchat.service})."""

FILE_CHECK_INTERVAL = 30.0
"""Seconds between two checks, when nothing is written, that the database
file is still the one tchat has open (every batch checks it too)."""

REMINDER_INTERVAL = 300.0
"""Seconds between two log lines about the same fault while it lasts."""


class ThreadRunner(Protocol):
    """
    Runs the store's work off the reactor thread.

    C{run(f, *args)} calls C{f(*args)} and returns a L{Deferred} that fires
    on the reactor thread with its result or its exception.  Calls must run
    one at a time, in the order they were made: a read relies on every
    write queued before it having run.
    """

    def __call__(self, f: Callable[..., T], /, *args: Any) -> Deferred[T]: ...


class _DaemonThread(Thread):
    """
    The writer thread: a daemon, so that a disk that never answers cannot
    keep the process alive once a stop has given up on it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, daemon=True, **kwargs)


class SQLiteStore:
    """
    History in one SQLite file, in WAL mode, from one thread of its own.

    @ivar description: For the start-up log line.
    @ivar accounts: The registered accounts, in the same file.
    @ivar batches: Transactions committed; C{failed_batches}: not.
    @ivar fault: Why writes fail now, or C{None} while they work.
    """

    _log = Logger()

    def __init__(
        self,
        config: HistoryConfig,
        clock: IReactorTime,
        recent: int,
        run_in_thread: ThreadRunner | None = None,
        close_timeout: float = CLOSE_TIMEOUT,
        check_interval: float = FILE_CHECK_INTERVAL,
    ) -> None:
        """
        @param clock: For the batch window, the delays before retrying a
            failed batch, the checks of the file and the bounds of a stop.
            Without C{run_in_thread} it must be the reactor, providing
            L{IReactorThreads} too.
        @param recent: How many of each room's latest messages L{load}
            returns.
        @param run_in_thread: Runs every call that touches the database,
            one at a time and in order (see L{ThreadRunner}).  C{None}
            for a thread pool of one thread on C{clock}, started by
            L{load} and stopped by L{close}.
        @param close_timeout: Seconds L{close} tries to write what is
            queued, and waits for the disk, before giving up on it.
        @param check_interval: Seconds between checks that the file is
            still there when nothing is written.
        """
        self._config = config
        self._clock = clock
        self._database = Database(config, recent)
        self._close_timeout = close_timeout
        self._check_interval = check_interval
        self._pool: ThreadPool | None = None
        if run_in_thread is None:
            pool = ThreadPool(minthreads=1, maxthreads=1, name="tchat-history")
            # A daemon thread: if the disk stops answering altogether, a
            # stop gives up on it (see close) and the process still exits.
            pool.threadFactory = _DaemonThread
            threads = cast(IReactorThreads, clock)

            def in_pool(f: Callable[..., T], /, *args: Any) -> Deferred[T]:
                return deferToThreadPool(threads, pool, f, *args)

            self._pool, run_in_thread = pool, in_pool
        self._in_thread: ThreadRunner = run_in_thread
        self._running = False
        self._pending: list[Op] = []
        self._waiters: list[Deferred[None]] = []
        self._inflight = 0
        self._inflight_ops = 0
        # How many writes at the head of _pending are those of failed
        # batches, put back in the order they were first queued.
        self._requeued = 0
        self._timer: IDelayedCall | None = None
        self._watch: IDelayedCall | None = None
        self._retry_delay = 0.0
        self._closing = False
        self.fault: Fault | None = None
        self._fault_since = 0.0
        self._fault_told = 0.0
        self.failed_batches = 0
        self.batches = 0
        self.observe_write: Callable[[float], None] | None = None
        # Typed as the interface's: the protocol's attribute is settable.
        self.accounts = SQLiteAccounts(self)
        self.description = (
            f"SQLite at {config.path} (WAL, locked for tchat alone; "
            f"keep {config.keep} per room, replay {config.replay}, "
            f"sync {config.sync}, batch window {config.batch_window * 1000:g} ms)"
        )

    # -- reactor side ------------------------------------------------------

    def load(self, now: float) -> Deferred[Loaded]:
        self._running = True
        if self._pool is not None:
            self._pool.start()
        opened = self._in_thread(self._database.open, now)
        opened.addCallback(self._opened)
        return opened

    def _opened(self, loaded: Loaded) -> Deferred[Loaded]:
        self._watch = self._clock.callLater(self._check_interval, self._check)
        return self.accounts.prime().addCallback(lambda _: loaded)

    def health(self) -> str | None:
        """
        @return: C{None} while writes work; else one word naming what is
            wrong (L{Fault.check}), for C{/healthz}.
        """
        return None if self.fault is None else self.fault.check

    def _queue(self, op: Op) -> None:
        self._pending.append(op)
        if len(self._pending) >= MAX_BATCH and not self._retry_delay:
            # (Not while the disk refuses writes: the retry timer is set,
            # and a write per message would fail just as fast.)
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
        self._queue(room_change(room))

    def append(self, message: RoomMessage, durable: bool) -> Deferred[None] | None:
        self._queue(MessageWrite(message_row(message)))
        if not durable:
            return None
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def save_session(self, session: Session) -> None:
        self._queue(session_change(session))

    def save_ban(self, ban: Ban) -> None:
        self._queue(ban_change(ban))

    def delete_ban(self, ban_id: int) -> None:
        self._queue(unban_change(ban_id))

    def delete_room(self, key: str) -> None:
        self._queue(room_gone_change(key))

    def delete_session(self, code: str) -> None:
        self._queue(session_gone_change(code))

    def reconfigure(self, config: HistoryConfig) -> None:
        # Where and how history is written is fixed at start; how much is
        # kept is not.
        self._config = replace(
            self._config, keep=config.keep, resume_ttl=config.resume_ttl
        )
        self._database.config = self._config

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
        self._requeued = 0
        waiters, self._waiters = self._waiters, []
        self._inflight += 1
        self._inflight_ops += len(ops)
        return self._in_thread(self._database.write, ops).addBoth(
            self._written, ops, waiters
        )

    def _written(
        self,
        result: Failure | float,
        ops: list[Op],
        waiters: list[Deferred[None]],
    ) -> None:
        self._inflight -= 1
        self._inflight_ops -= len(ops)
        if isinstance(result, Failure):
            self.failed_batches += 1
            self._retry_delay = min(max(self._retry_delay * 2, 0.5), MAX_RETRY_DELAY)
            refused = 0
            if waiters:
                # sync = full: nobody saw these messages; their senders are
                # told, and only the other writes are retried.
                refused = sum(isinstance(op, MessageWrite) for op in ops)
                ops = [op for op in ops if not isinstance(op, MessageWrite)]
                for waiter in waiters:
                    waiter.errback(result)
            # Keep them, in order, ahead of anything queued since (and
            # behind those of an earlier batch that failed too).
            at = self._requeued
            self._pending[at:at] = ops
            self._requeued += len(ops)
            self._failed(result, refused)
        else:
            if self.observe_write is not None:
                self.observe_write(result)
            self.batches += 1
            self._retry_delay = 0.0
            if self.fault is not None and not self.fault.lasting:
                self._log.info(
                    "history: writes work again after {seconds:.0f} s of "
                    "failing ({what}); {written} written",
                    seconds=self._clock.seconds() - self._fault_since,
                    what=self.fault.what,
                    written=plural(len(ops), "waiting change"),
                )
                self.fault = None
            for waiter in waiters:
                waiter.callback(None)
        if self._pending and self._timer is None and not self._closing:
            self._timer = self._clock.callLater(
                self._retry_delay
                if self._config.sync == "full"
                else max(self._retry_delay, self._config.batch_window),
                self._flush,
            )

    def _failed(self, why: Failure, refused: int = 0) -> None:
        """
        A write failed, or the periodic check found the file gone: say
        what is wrong, when it starts and then every few minutes while it
        lasts, in words rather than with a traceback.

        @param refused: Room messages of the batch that are not retried
            (C{sync = full}), their senders told.
        """
        error = why.value
        assert error is not None
        fault = Fault.of(error)
        now = self._clock.seconds()
        if not isinstance(error, StorageError | sqlite3.Error):
            # Not the disk: a bug, whose traceback is wanted.
            self._log.failure("history: a batch of changes failed", why)
        new = self.fault is None or (self.fault.check, self.fault.detail) != (
            fault.check,
            fault.detail,
        )
        if self.fault is None:
            self._fault_since = now
        self.fault = fault
        if not new and now - self._fault_told < REMINDER_INTERVAL:
            return
        self._fault_told = now
        told = (
            f"; {plural(refused, 'room message')} not kept, their senders told"
            if refused
            else ""
        )
        retrying = (
            "" if fault.lasting else f", retrying up to every {MAX_RETRY_DELAY:g} s"
        )
        self._log.error(
            "history: {fault}: {waiting} waiting{told}{retrying}. {advice}.",
            fault=fault,
            waiting=plural(self.queued, "change"),
            told=told,
            retrying=retrying,
            advice=fault.advice[:1].upper() + fault.advice[1:],
        )

    def _check(self) -> None:
        """
        Every C{check_interval} seconds, in the thread: is the file still
        there?  Writes check it too; this notices while nothing is written.
        """
        self._watch = self._clock.callLater(self._check_interval, self._check)
        if self.fault is not None and self.fault.lasting:
            return
        self._in_thread(self._database.check).addErrback(self._failed)

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
        return self._in_thread(
            self._database.read, room_key, after, upto, before, limit
        )

    def session(self, code: str, oldest: float) -> Deferred[Session | None]:
        self._flush()
        return self._in_thread(self._database.read_session, code, oldest)

    def _transact(
        self, work: Callable[..., T], writes: bool, *args: Any
    ) -> Deferred[T]:
        """
        Run C{work(db, *args)} in the thread, in a transaction of its own
        (see L{Database.transact}), after every write queued before it.
        """
        self._flush()
        return self._in_thread(self._database.transact, work, writes, *args)

    async def _close(self) -> None:
        self._closing = True
        if self._watch is not None and self._watch.active():
            self._watch.cancel()
        started = self._clock.seconds()
        deadline = started + self._close_timeout
        pause = 0.05
        stuck = False
        while self._pending or self._inflight:
            if self._inflight:
                # A batch is being written: wait for it, within the bound.
                if self._clock.seconds() >= deadline:
                    stuck = True
                    break
                await self._sleep(0.01)
                continue
            if self.fault is not None and self.fault.lasting:
                break
            failed = self.failed_batches
            d = self._flush()
            if d is not None:
                await d
            if self.failed_batches > failed:
                # Refused again: try again a little later, within the bound.
                if self._clock.seconds() + pause > deadline:
                    break
                await self._sleep(pause)
                pause = min(pause * 2, 1.0)
        lost, self._pending = self._pending, []
        waiters, self._waiters = self._waiters, []
        if lost:
            self._lost(lost, self._clock.seconds() - started)
        for waiter in waiters:
            waiter.errback(StorageError(self.fault or STOPPED))
        if stuck:
            self._log.critical(
                "history: stopping: the disk has not finished writing a batch "
                "of {changes} in {seconds:g} s; tchat stops without it, so it "
                "may be lost",
                changes=plural(self._inflight_ops, "change"),
                seconds=self._close_timeout,
            )
        else:
            finishing = self._in_thread(
                self._database.finish,
                self._clock.seconds(),
                not lost and self.fault is None,
            )
            finishing.addTimeout(
                max(deadline - self._clock.seconds(), 1.0), self._clock
            )
            try:
                problems = await finishing
            except Exception:
                stuck = True
                self._log.critical(
                    "history: stopping: the disk did not let tchat close the "
                    "database within {seconds:g} s; tchat stops without it",
                    seconds=self._close_timeout,
                )
            else:
                for problem in problems:
                    self._log.error("history: stopping: {problem}", problem=problem)
        self._running = False
        if self._pool is not None and not stuck:
            # Only an idle thread is joined; a stuck one is a daemon thread,
            # left behind.
            self._pool.stop()

    def _lost(self, lost: list[Op], seconds: float) -> None:
        """
        Say what a stop gave up on.
        """
        fault = self.fault
        why = f"{fault}" if fault is not None else "the writes failed"
        gone = (
            "; so is everything the deleted or replaced file held"
            if fault is not None and fault.lasting
            else ""
        )
        epochs = (
            " Every room starts a new epoch at the next start, so clients "
            "are told of the gap."
            if self._config.sync != "full"
            and any(isinstance(op, MessageWrite) for op in lost)
            else ""
        )
        self._log.critical(
            "history: stopping: gave up after {seconds:.1f} s: {why}. "
            "Lost {changes} that could not be written: {what}{gone}.{epochs}",
            seconds=seconds,
            why=why,
            changes=plural(len(lost), "change"),
            what=describe_changes(lost),
            gone=gone,
            epochs=epochs,
        )

    def _sleep(self, seconds: float) -> Deferred[None]:
        return deferLater(self._clock, seconds, lambda: None)

    def close(self) -> Deferred[None]:
        """
        Write everything queued and record a clean stop.  It always
        finishes: writes the disk still refuses after C{close_timeout}
        seconds are given up on, and logged as lost.
        """
        if not self._running:
            return succeed(None)
        return Deferred.fromCoroutine(self._close())


class SQLiteAccounts:
    """
    The accounts of an L{SQLiteStore}, in its file: each call is one
    transaction on the store's thread, made after the history writes
    queued before it (L{tchat.history.account_tables} has the SQL).  The
    reactor thread never touches the file.

    A call fails with L{StorageError} when the file cannot be read or
    written, and a change when the file is no longer tchat's (deleted or
    replaced: what was written there would be lost when tchat stops).
    """

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        # Every registered nick by key, read once at start and kept up to
        # date by create and delete: holder() is asked at every nick change
        # and every message to someone absent, and answers at once (so its
        # answer comes in the order of the user's other requests).
        self._names: dict[str, str] | None = None

    def prime(self) -> Deferred[None]:
        """Read every registered nick, once the file is open."""

        def known(names: dict[str, str]) -> None:
            self._names = names

        return self._store._transact(account_tables.names, False).addCallback(known)

    def holder(self, key: str) -> Deferred[str | None]:
        if self._names is not None and not self._store._closing:
            return succeed(self._names.get(key))
        return self._store._transact(account_tables.holder, False, key)

    def get(self, key: str) -> Deferred[Account | None]:
        return self._store._transact(account_tables.get, False, key)

    def create(self, account: Account) -> Deferred[bool]:
        def created(fresh: bool) -> bool:
            if fresh and self._names is not None:
                self._names[account.key] = account.name
            return fresh

        made = self._store._transact(account_tables.create, True, account)
        return made.addCallback(created)

    def save(self, account: Account) -> Deferred[None]:
        return self._store._transact(account_tables.save, True, account)

    def delete(self, key: str) -> Deferred[None]:
        def deleted(_: object) -> None:
            if self._names is not None:
                self._names.pop(key, None)

        return self._store._transact(account_tables.delete, True, key).addCallback(
            deleted
        )

    def leave_message(
        self, key: str, message: Offline, most: int, expires: float
    ) -> Deferred[None]:
        return self._store._transact(
            account_tables.leave_message, True, key, message, most, expires
        )

    def take_messages(self, key: str, now: float) -> Deferred[list[Offline]]:
        return self._store._transact(account_tables.take_messages, True, key, now)

    def add_mentions(self, key: str, found: list[Mention], most: int) -> Deferred[None]:
        return self._store._transact(
            account_tables.add_mentions, True, key, list(found), most
        )

    def mentions(self, key: str) -> Deferred[list[Mention]]:
        return self._store._transact(account_tables.mentions, False, key)

    def issue_token(self, key: str, digest: str, expires: float) -> Deferred[None]:
        return self._store._transact(
            account_tables.issue_token, True, key, digest, expires
        )

    def token_holder(self, digest: str, now: float) -> Deferred[str | None]:
        return self._store._transact(account_tables.token_holder, False, digest, now)

    def revoke_token(self, digest: str) -> Deferred[None]:
        return self._store._transact(account_tables.revoke_token, True, digest)

    def revoke_tokens(self, key: str) -> Deferred[None]:
        return self._store._transact(account_tables.revoke_tokens, True, key)

    def tokens(self, key: str, now: float) -> Deferred[int]:
        return self._store._transact(account_tables.tokens, False, key, now)

    def waiting(self, key: str, now: float) -> Deferred[int]:
        return self._store._transact(account_tables.waiting, False, key, now)

    def add_key(
        self, account_key: str, fingerprint: str, line: str, now: float
    ) -> Deferred[bool]:
        return self._store._transact(
            account_tables.add_key, True, account_key, fingerprint, line, now
        )

    def remove_key(self, account_key: str, fingerprint: str) -> Deferred[bool]:
        return self._store._transact(
            account_tables.remove_key, True, account_key, fingerprint
        )

    def keys(self, account_key: str) -> Deferred[list[KeyRecord]]:
        return self._store._transact(account_tables.keys, False, account_key)

    def key_owner(self, fingerprint: str) -> Deferred[str | None]:
        return self._store._transact(account_tables.key_owner, False, fingerprint)
