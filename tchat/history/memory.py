# -*- test-case-name: tests.test_history -*-
"""
L{MemoryStore}: history that lives as long as the process, for C{path =
:memory:} or C{enabled = false}.
"""

from collections import deque
from collections.abc import Callable, Iterable

from twisted.internet.defer import Deferred, fail, succeed

from tchat.config import HistoryConfig
from tchat.events import Mention, RoomMessage
from tchat.history.records import (
    MAX_KEYS,
    Account,
    AccountStore,
    Ban,
    KeyLimitError,
    KeyRecord,
    Loaded,
    MailboxFullError,
    Offline,
    RoomRecord,
    Session,
)
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


class MemoryAccounts:
    """
    Accounts that live as long as the process: the same behaviour as
    L{tchat.history.sqlite.SQLiteAccounts}, with nothing on disk.  Each
    call is answered at once.

    An offline message or a login token is valid while C{expires} is later
    than the time asked about: at C{expires} itself it has expired.
    """

    def __init__(self) -> None:
        self._accounts: dict[str, Account] = {}
        # Each account's offline messages, oldest first, with their expiry.
        self._offline: dict[str, list[tuple[Offline, float]]] = {}
        self._mentions: dict[str, list[Mention]] = {}
        # Each token's account and expiry, by its digest.
        self._tokens: dict[str, tuple[str, float]] = {}
        # Each SSH key's account and record, by its fingerprint, oldest
        # first.
        self._keys: dict[str, tuple[str, KeyRecord]] = {}

    def holder(self, key: str) -> Deferred[str | None]:
        found = self._accounts.get(key)
        return succeed(None if found is None else found.name)

    def get(self, key: str) -> Deferred[Account | None]:
        return succeed(self._accounts.get(key))

    def create(self, account: Account) -> Deferred[bool]:
        if account.key in self._accounts:
            return succeed(False)
        self._accounts[account.key] = account
        # A new owner starts with nothing: a message or token kept for the
        # key after its previous account was deleted is not theirs.
        self._forget(account.key)
        return succeed(True)

    def save(self, account: Account) -> Deferred[None]:
        if account.key in self._accounts:
            self._accounts[account.key] = account
        return succeed(None)

    def delete(self, key: str) -> Deferred[None]:
        self._accounts.pop(key, None)
        self._forget(key)
        return succeed(None)

    def _forget(self, key: str) -> None:
        """Forget what is kept for the account with key C{key}, but itself."""
        self._offline.pop(key, None)
        self._mentions.pop(key, None)
        for digest, (holder, _) in list(self._tokens.items()):
            if holder == key:
                del self._tokens[digest]
        for fingerprint, (owner, _) in list(self._keys.items()):
            if owner == key:
                del self._keys[fingerprint]

    def leave_message(
        self, key: str, message: Offline, most: int, expires: float
    ) -> Deferred[None]:
        # Counted as of when the message was sent; those expired by then
        # are forgotten.
        kept = [(m, x) for m, x in self._offline.get(key, ()) if x > message.ts]
        if len(kept) >= most:
            return fail(MailboxFullError(key))
        kept.append((message, expires))
        self._offline[key] = kept
        return succeed(None)

    def take_messages(self, key: str, now: float) -> Deferred[list[Offline]]:
        kept = self._offline.pop(key, [])
        return succeed([m for m, x in kept if x > now])

    def add_mentions(self, key: str, found: list[Mention], most: int) -> Deferred[None]:
        kept = self._mentions.get(key, []) + list(found)
        self._mentions[key] = kept[-most:] if most > 0 else []
        return succeed(None)

    def mentions(self, key: str) -> Deferred[list[Mention]]:
        return succeed(list(self._mentions.get(key, ())))

    def issue_token(self, key: str, digest: str, expires: float) -> Deferred[None]:
        self._tokens[digest] = (key, expires)
        return succeed(None)

    def token_holder(self, digest: str, now: float) -> Deferred[str | None]:
        found = self._tokens.get(digest)
        if found is None or found[1] <= now:
            return succeed(None)
        return succeed(found[0])

    def revoke_token(self, digest: str) -> Deferred[None]:
        self._tokens.pop(digest, None)
        return succeed(None)

    def revoke_tokens(self, key: str) -> Deferred[None]:
        for digest, (holder, _) in list(self._tokens.items()):
            if holder == key:
                del self._tokens[digest]
        return succeed(None)

    def tokens(self, key: str, now: float) -> Deferred[int]:
        # Expired tokens are forgotten as they are come across.
        count = 0
        for digest, (holder, expires) in list(self._tokens.items()):
            if expires <= now:
                del self._tokens[digest]
            elif holder == key:
                count += 1
        return succeed(count)

    def waiting(self, key: str, now: float) -> Deferred[int]:
        return succeed(sum(x > now for _, x in self._offline.get(key, ())))

    def add_key(
        self, account_key: str, fingerprint: str, line: str, now: float
    ) -> Deferred[bool]:
        if fingerprint in self._keys:
            return succeed(False)
        if sum(owner == account_key for owner, _ in self._keys.values()) >= MAX_KEYS:
            return fail(KeyLimitError(account_key))
        self._keys[fingerprint] = (account_key, KeyRecord(fingerprint, line, now))
        return succeed(True)

    def remove_key(self, account_key: str, fingerprint: str) -> Deferred[bool]:
        found = self._keys.get(fingerprint)
        if found is None or found[0] != account_key:
            return succeed(False)
        del self._keys[fingerprint]
        return succeed(True)

    def keys(self, account_key: str) -> Deferred[list[KeyRecord]]:
        return succeed([r for owner, r in self._keys.values() if owner == account_key])

    def key_owner(self, fingerprint: str) -> Deferred[str | None]:
        found = self._keys.get(fingerprint)
        return succeed(None if found is None else found[0])


class MemoryStore:
    """
    History that lives as long as the process: the same behaviour as
    L{SQLiteStore}, with nothing on disk.

    @ivar accounts: The registered accounts, in memory too.
    """

    observe_write: Callable[[float], None] | None = None
    queued = 0

    def __init__(self, config: HistoryConfig, max_sessions: int = 10_000) -> None:
        self._keep = config.keep
        self._max_sessions = max_sessions
        self._messages: dict[str, deque[RoomMessage]] = {}
        self._sessions: dict[str, Session] = {}
        self._bans: dict[int, Ban] = {}
        # Typed as the interface's: the protocol's attribute is settable.
        self.accounts: AccountStore = MemoryAccounts()
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
