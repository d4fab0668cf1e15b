# -*- test-case-name: tests.test_history -*-
"""
L{MemoryStore}: history that lives as long as the process, for C{path =
:memory:} or C{enabled = false}.
"""

from collections import deque
from collections.abc import Callable, Iterable

from twisted.internet.defer import Deferred, succeed

from tchat.config import HistoryConfig
from tchat.events import RoomMessage
from tchat.history.records import Ban, Loaded, RoomRecord, Session
from tchat.text import room_key


def _select(
    messages: Iterable[RoomMessage],
    after: int,
    upto: int | None,
    before: int | None,
    limit: int,
) -> list[RoomMessage]:
    chosen = [
        m
        for m in messages
        if m.id > after
        and (upto is None or m.id <= upto)
        and (before is None or m.id < before)
    ]
    return chosen[-limit:] if before is not None else chosen[:limit]


class MemoryStore:
    """
    History that lives as long as the process: the same behaviour as
    L{SQLiteStore}, with nothing on disk.
    """

    observe_write: Callable[[float], None] | None = None
    queued = 0

    def __init__(self, config: HistoryConfig, max_sessions: int = 10_000) -> None:
        self._keep = config.keep
        self._max_sessions = max_sessions
        self._messages: dict[str, deque[RoomMessage]] = {}
        self._sessions: dict[str, Session] = {}
        self._bans: dict[int, Ban] = {}
        why = "path = :memory:" if config.enabled else "enabled = false"
        self.description = f"in memory only ({why}); it is lost when tchat stops"

    def health(self) -> str | None:
        """
        @return: C{None}: memory never refuses a write.
        """
        return None

    def reconfigure(self, config: HistoryConfig) -> None:
        self._keep = config.keep

    def load(self, now: float) -> Deferred[Loaded]:
        return succeed(Loaded(bans=list(self._bans.values())))

    def save_ban(self, ban: Ban) -> None:
        self._bans[ban.id] = ban

    def delete_ban(self, ban_id: int) -> None:
        self._bans.pop(ban_id, None)

    def save_room(self, room: RoomRecord) -> None:
        pass

    def delete_room(self, key: str) -> None:
        self._messages.pop(key, None)

    def delete_session(self, code: str) -> None:
        self._sessions.pop(code, None)

    def append(self, message: RoomMessage, durable: bool) -> Deferred[None] | None:
        kept = self._messages.setdefault(room_key(message.room), deque())
        kept.append(message)
        floor = message.id - self._keep
        while kept[0].id <= floor:
            kept.popleft()
        return succeed(None) if durable else None

    def save_session(self, session: Session) -> None:
        self._sessions.pop(session.code, None)
        self._sessions[session.code] = session
        while len(self._sessions) > self._max_sessions:
            del self._sessions[next(iter(self._sessions))]

    def read(
        self,
        room_key: str,
        after: int = 0,
        upto: int | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> Deferred[list[RoomMessage]]:
        kept = self._messages.get(room_key, ())
        return succeed(_select(kept, after, upto, before, limit))

    def session(self, code: str, oldest: float) -> Deferred[Session | None]:
        found = self._sessions.get(code)
        if found is not None and found.saved < oldest:
            found = None
        return succeed(found)

    def close(self) -> Deferred[None]:
        return succeed(None)
