# -*- test-case-name: tests.test_config -*-
"""
The C{[history]} section: what is kept of each room, and where (used by
L{tchat.history}).
"""

from dataclasses import dataclass
from typing import Literal

from tchat.config._base import Parsers, _bool, _bounded_int, _path, _seconds

SyncMode = Literal["normal", "full"]


@dataclass(frozen=True)
class HistoryConfig:
    """
    The C{[history]} section: what is kept of each room, and where.

    @ivar enabled: C{False} keeps history in memory only, for the life of
        the process; so does C{path = :memory:}.
    @ivar path: The SQLite file, relative to the working directory.
    @ivar keep: Messages kept per room; older ones are pruned.
    @ivar replay: Messages shown to a user who joins a room.
    @ivar batch_window: Seconds a room message may wait before it is
        written, so writes go in batches; what a crash can lose.
    @ivar sync: C{normal}: a message is acknowledged once queued for the
        store; C{full}: only once committed to disk, and shown to nobody
        before that.
    @ivar resume_ttl: Seconds a resume code stays valid after its user left.
    @ivar room_ttl: Seconds a room nobody is in, and nobody talks in, is
        kept with its history before it is forgotten; 0 keeps such rooms.
        A room where nothing was said is forgotten once its last member
        leaves, whatever this says.
    """

    enabled: bool = True
    path: str = "tchat.sqlite3"
    keep: int = 1000
    replay: int = 20
    batch_window: float = 0.05
    sync: SyncMode = "normal"
    resume_ttl: int = 24 * 3600
    room_ttl: int = 30 * 24 * 3600

    @property
    def in_memory(self) -> bool:
        """Whether history lives only as long as the process."""
        return not self.enabled or self.path == ":memory:"


def _sync(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("normal", "full"):
        raise ValueError(f"{raw.strip()!r} is not normal or full")
    return value


HISTORY_PARSERS: Parsers = {
    "enabled": _bool,
    "path": _path,
    "keep": _bounded_int(1, 1_000_000),
    "replay": _bounded_int(0, 1000),
    "batch_window": _seconds(0, 10),
    "sync": _sync,
    "resume_ttl": _bounded_int(0, 365 * 24 * 3600),
    "room_ttl": _bounded_int(0, 10 * 365 * 24 * 3600),
}
