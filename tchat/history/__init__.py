# -*- test-case-name: tests.test_history -*-
"""
Room history: what tchat remembers of its rooms, and where.

Two stores share one interface, L{HistoryStore}:

  - L{SQLiteStore}, the embedded default: one SQLite file in WAL mode,
    locked for tchat alone, used only from one dedicated thread so the
    reactor never waits for the disk.  Writes are queued on the reactor
    thread and committed in batches, one transaction per batch; when the
    disk refuses them it says why (L{Fault}) and retries.
  - L{MemoryStore}, for C{path = :memory:} or C{enabled = false}: the same
    behaviour for the life of the process, nothing on disk.

The hub assigns message ids and keeps each room's latest messages itself;
the store is asked for older ones (paging, resuming) and for resume codes of
users who left.  See C{docs/delivery.md} for the guarantees this gives.
"""

from typing import Any

from tchat.config import HistoryConfig
from tchat.events import Mention
from tchat.history.database import SCHEMA_VERSION
from tchat.history.faults import Fault, StorageError
from tchat.history.memory import MemoryStore
from tchat.history.records import (
    MAX_KEYS,
    Account,
    AccountStore,
    Ban,
    BanKind,
    HistoryStore,
    KeyLimitError,
    KeyRecord,
    Loaded,
    MailboxFullError,
    Offline,
    RoomRecord,
    Session,
)
from tchat.history.sqlite import CLOSE_TIMEOUT, MAX_BATCH, SQLiteStore, ThreadRunner

__all__ = [
    "CLOSE_TIMEOUT",
    "MAX_BATCH",
    "MAX_KEYS",
    "SCHEMA_VERSION",
    "Account",
    "AccountStore",
    "Ban",
    "BanKind",
    "Fault",
    "HistoryStore",
    "KeyLimitError",
    "KeyRecord",
    "Loaded",
    "MailboxFullError",
    "MemoryStore",
    "Mention",
    "Offline",
    "RoomRecord",
    "SQLiteStore",
    "Session",
    "StorageError",
    "ThreadRunner",
    "open_store",
]


def open_store(config: HistoryConfig, reactor: Any) -> HistoryStore:
    """
    The store the configuration asks for.

    @param reactor: For the writer thread and the batch timer.
    """
    if config.in_memory:
        return MemoryStore(config)
    return SQLiteStore(config, reactor, recent=config.replay)
