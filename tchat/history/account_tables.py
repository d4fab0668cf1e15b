# -*- test-case-name: tests.test_account_store -*-
"""
The SQLite side of L{tchat.history.sqlite.SQLiteAccounts}: the account
tables, and each call of L{tchat.history.AccountStore} as the store's
writer thread makes it, inside the transaction L{Database.transact} opens.

An offline message or a login token is valid while C{expires} is later
than the time asked about: at C{expires} itself it has expired.
"""

import json
import sqlite3
from typing import Any

from tchat.events import Mention
from tchat.history.records import (
    MAX_KEYS,
    Account,
    KeyLimitError,
    KeyRecord,
    MailboxFullError,
    Offline,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL,
    created REAL NOT NULL,
    last_login REAL,
    last_seen REAL,
    rooms TEXT NOT NULL,
    ignores TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS offline (
    seq INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    ts REAL NOT NULL,
    sender TEXT NOT NULL,
    sender_door TEXT NOT NULL,
    colour TEXT NOT NULL,
    text TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS offline_account ON offline (account);
CREATE TABLE IF NOT EXISTS mentions (
    seq INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    room TEXT NOT NULL,
    id INTEGER NOT NULL,
    ts REAL NOT NULL,
    nick TEXT NOT NULL,
    text TEXT NOT NULL,
    action INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS mentions_account ON mentions (account);
CREATE TABLE IF NOT EXISTS tokens (
    digest TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tokens_account ON tokens (account);
CREATE TABLE IF NOT EXISTS ssh_keys (
    seq INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    account TEXT NOT NULL,
    line TEXT NOT NULL,
    added REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ssh_keys_account ON ssh_keys (account);
"""
"""The account tables (schema 3: schema 2 had all but C{ssh_keys}).
C{seq} (the rowid) keeps the order in which offline messages, mentions
and keys were kept: a new row's is always the highest."""

_ACCOUNT = "key, name, hash, created, last_login, last_seen, rooms, ignores"
_OFFLINE = "ts, sender, sender_door, colour, text"
_MENTION = "ts, room, id, nick, text, action"


def purge(db: sqlite3.Connection, now: float) -> None:
    """
    Forget the offline messages and login tokens expired at C{now}: at
    start, as sessions are.
    """
    db.execute("DELETE FROM offline WHERE expires <= ?", (now,))
    db.execute("DELETE FROM tokens WHERE expires <= ?", (now,))


def _account(row: tuple[Any, ...]) -> Account:
    key, name, hash, created, last_login, last_seen, rooms, ignores = row
    return Account(
        key,
        name,
        hash,
        created,
        last_login,
        last_seen,
        tuple((str(n), int(e), int(i)) for n, e, i in json.loads(rooms)),
        tuple(str(nick) for nick in json.loads(ignores)),
    )


def _values(account: Account) -> tuple[Any, ...]:
    return (
        account.key,
        account.name,
        account.hash,
        account.created,
        account.last_login,
        account.last_seen,
        json.dumps(account.rooms),
        json.dumps(account.ignores),
    )


def names(db: sqlite3.Connection) -> dict[str, str]:
    """@return: Every registered nick, by key."""
    return {str(k): str(n) for k, n in db.execute("SELECT key, name FROM accounts")}


def holder(db: sqlite3.Connection, key: str) -> str | None:
    """@return: See L{tchat.history.AccountStore.holder}."""
    row = db.execute("SELECT name FROM accounts WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def get(db: sqlite3.Connection, key: str) -> Account | None:
    """@return: See L{tchat.history.AccountStore.get}."""
    row = db.execute(
        f"SELECT {_ACCOUNT} FROM accounts WHERE key = ?", (key,)
    ).fetchone()
    return None if row is None else _account(row)


def _forget(db: sqlite3.Connection, key: str) -> None:
    """Forget what is kept for the account with key C{key}, but itself."""
    for table in ("offline", "mentions", "tokens", "ssh_keys"):
        db.execute(f"DELETE FROM {table} WHERE account = ?", (key,))


def create(db: sqlite3.Connection, account: Account) -> bool:
    """@return: See L{tchat.history.AccountStore.create}."""
    added = db.execute(
        f"INSERT INTO accounts ({_ACCOUNT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (key) DO NOTHING",
        _values(account),
    ).rowcount
    if added:
        # A new owner starts with nothing: a message or token kept for the
        # key after its previous account was deleted is not theirs.
        _forget(db, account.key)
    return bool(added)


def save(db: sqlite3.Connection, account: Account) -> None:
    """See L{tchat.history.AccountStore.save}."""
    key, *rest = _values(account)
    db.execute(
        "UPDATE accounts SET name = ?, hash = ?, created = ?, last_login = ?, "
        "last_seen = ?, rooms = ?, ignores = ? WHERE key = ?",
        (*rest, key),
    )


def delete(db: sqlite3.Connection, key: str) -> None:
    """See L{tchat.history.AccountStore.delete}."""
    db.execute("DELETE FROM accounts WHERE key = ?", (key,))
    _forget(db, key)


def leave_message(
    db: sqlite3.Connection, key: str, message: Offline, most: int, expires: float
) -> None:
    """
    See L{tchat.history.AccountStore.leave_message}: the messages kept are
    counted as of C{message.ts}, when it was sent; those expired by then
    are forgotten.

    @raise MailboxFullError: When C{most} are kept already.
    """
    db.execute(
        "DELETE FROM offline WHERE account = ? AND expires <= ?", (key, message.ts)
    )
    (kept,) = db.execute(
        "SELECT COUNT(*) FROM offline WHERE account = ?", (key,)
    ).fetchone()
    if kept >= most:
        raise MailboxFullError(key)
    db.execute(
        f"INSERT INTO offline (account, {_OFFLINE}, expires) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            key,
            message.ts,
            message.sender,
            message.sender_door,
            message.colour,
            message.text,
            expires,
        ),
    )


def take_messages(db: sqlite3.Connection, key: str, now: float) -> list[Offline]:
    """@return: See L{tchat.history.AccountStore.take_messages}."""
    rows = db.execute(
        f"SELECT {_OFFLINE} FROM offline WHERE account = ? AND expires > ? "
        "ORDER BY seq",
        (key, now),
    ).fetchall()
    db.execute("DELETE FROM offline WHERE account = ?", (key,))
    return [Offline(*row) for row in rows]


def add_mentions(
    db: sqlite3.Connection, key: str, found: list[Mention], most: int
) -> None:
    """See L{tchat.history.AccountStore.add_mentions}."""
    db.executemany(
        f"INSERT INTO mentions (account, {_MENTION}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(key, m.ts, m.room, m.id, m.nick, m.text, int(m.action)) for m in found],
    )
    db.execute(
        "DELETE FROM mentions WHERE account = ? AND seq NOT IN "
        "(SELECT seq FROM mentions WHERE account = ? ORDER BY seq DESC LIMIT ?)",
        (key, key, max(most, 0)),
    )


def mentions(db: sqlite3.Connection, key: str) -> list[Mention]:
    """@return: See L{tchat.history.AccountStore.mentions}."""
    rows = db.execute(
        f"SELECT {_MENTION} FROM mentions WHERE account = ? ORDER BY seq", (key,)
    ).fetchall()
    return [
        Mention(ts, room, id, nick, text, bool(action))
        for ts, room, id, nick, text, action in rows
    ]


def issue_token(db: sqlite3.Connection, key: str, digest: str, expires: float) -> None:
    """See L{tchat.history.AccountStore.issue_token}."""
    db.execute(
        "INSERT OR REPLACE INTO tokens (digest, account, expires) VALUES (?, ?, ?)",
        (digest, key, expires),
    )


def token_holder(db: sqlite3.Connection, digest: str, now: float) -> str | None:
    """@return: See L{tchat.history.AccountStore.token_holder}."""
    row = db.execute(
        "SELECT account FROM tokens WHERE digest = ? AND expires > ?", (digest, now)
    ).fetchone()
    return None if row is None else str(row[0])


def revoke_token(db: sqlite3.Connection, digest: str) -> None:
    """See L{tchat.history.AccountStore.revoke_token}."""
    db.execute("DELETE FROM tokens WHERE digest = ?", (digest,))


def revoke_tokens(db: sqlite3.Connection, key: str) -> None:
    """See L{tchat.history.AccountStore.revoke_tokens}."""
    db.execute("DELETE FROM tokens WHERE account = ?", (key,))


def tokens(db: sqlite3.Connection, key: str, now: float) -> int:
    """@return: See L{tchat.history.AccountStore.tokens}."""
    (count,) = db.execute(
        "SELECT COUNT(*) FROM tokens WHERE account = ? AND expires > ?", (key, now)
    ).fetchone()
    return int(count)


def waiting(db: sqlite3.Connection, key: str, now: float) -> int:
    """@return: See L{tchat.history.AccountStore.waiting}."""
    (count,) = db.execute(
        "SELECT COUNT(*) FROM offline WHERE account = ? AND expires > ?", (key, now)
    ).fetchone()
    return int(count)


def add_key(
    db: sqlite3.Connection, account: str, fingerprint: str, line: str, now: float
) -> bool:
    """
    @return: See L{tchat.history.AccountStore.add_key}.
    @raise KeyLimitError: When the account has L{MAX_KEYS} keys.
    """
    row = db.execute(
        "SELECT 1 FROM ssh_keys WHERE fingerprint = ?", (fingerprint,)
    ).fetchone()
    if row is not None:
        return False
    (count,) = db.execute(
        "SELECT COUNT(*) FROM ssh_keys WHERE account = ?", (account,)
    ).fetchone()
    if count >= MAX_KEYS:
        raise KeyLimitError(account)
    db.execute(
        "INSERT INTO ssh_keys (fingerprint, account, line, added) VALUES (?, ?, ?, ?)",
        (fingerprint, account, line, now),
    )
    return True


def remove_key(db: sqlite3.Connection, account: str, fingerprint: str) -> bool:
    """@return: See L{tchat.history.AccountStore.remove_key}."""
    return bool(
        db.execute(
            "DELETE FROM ssh_keys WHERE account = ? AND fingerprint = ?",
            (account, fingerprint),
        ).rowcount
    )


def keys(db: sqlite3.Connection, account: str) -> list[KeyRecord]:
    """@return: See L{tchat.history.AccountStore.keys}."""
    rows = db.execute(
        "SELECT fingerprint, line, added FROM ssh_keys WHERE account = ? ORDER BY seq",
        (account,),
    ).fetchall()
    return [KeyRecord(str(f), str(line), float(added)) for f, line, added in rows]


def key_owner(db: sqlite3.Connection, fingerprint: str) -> str | None:
    """@return: See L{tchat.history.AccountStore.key_owner}."""
    row = db.execute(
        "SELECT account FROM ssh_keys WHERE fingerprint = ?", (fingerprint,)
    ).fetchone()
    return None if row is None else str(row[0])
