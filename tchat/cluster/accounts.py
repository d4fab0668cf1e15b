# -*- test-case-name: tests.test_account_store -*-
"""
L{RedisAccounts}: the registered accounts in the cluster's Redis, shared by
every node, with their offline messages, mentions and login tokens.

The keys (after the cluster's prefix):

  - C{account:<key>}: the account, as JSON (L{tchat.history.Account}).
  - C{offline:<key>}: a list of its offline messages, oldest first, each as
    JSON C{{"x": expiry, "m": message}}; the list expires with its latest
    message.
  - C{mentions:<key>}: a list of its mentions, oldest first, as JSON.
  - C{token:<digest>}: the account key a login token is for, expiring with
    it.
  - C{tokens:<key>}: the set of the account's token digests, so that they
    can all be revoked; digests of expired tokens are dropped from it as
    tokens are issued, and it expires with its latest token.
  - C{sshkey:<fingerprint>}: the account key an SSH public key is on.
  - C{sshkeys:<key>}: a hash of the account's SSH keys, by fingerprint,
    each as JSON C{{"line", "added"}}.

Whatever must hold against other nodes' changes made meanwhile (a new
account, a mailbox's limit, revoking every token) is one Lua script.
Calls fail with L{tchat.cluster.redis.ClusterDownError} while Redis cannot
be reached.
"""

import json
import math
from dataclasses import asdict
from typing import Any

from twisted.internet.defer import Deferred

from tchat.cluster.redis import RedisLink, dumps
from tchat.events import Mention
from tchat.history import (
    MAX_KEYS,
    Account,
    KeyLimitError,
    KeyRecord,
    MailboxFullError,
    Offline,
)

_FORGET_OWNED = """
local function forget_owned(prefix, names, key)
  for _, name in ipairs(names) do
    local owned = prefix .. name
    if redis.call('GET', owned) == key then redis.call('DEL', owned) end
  end
end
local function forget_tokens(p, set, key)
  forget_owned(p .. ':token:', redis.call('SMEMBERS', set), key)
  redis.call('DEL', set)
end
local function forget_keys(p, hash, key)
  forget_owned(p .. ':sshkey:', redis.call('HKEYS', hash), key)
  redis.call('DEL', hash)
end
"""
"""
Lua for L{CREATE}, L{DELETE} and L{REVOKE_TOKENS}: revoke every token of
an account (the set of their digests), or unbind every SSH key of it (the
hash of its keys): each token or key still the account's is deleted.
"""

#: Register an account, unless its key is registered already: answers 1
#: when it was, 0 when not.  A new owner starts with nothing: messages,
#: mentions or tokens kept for the key after its previous account was
#: deleted (by another node, meanwhile) are not theirs.
#: KEYS: account, offline list, mentions list, tokens set, SSH keys hash.
#: ARGV: prefix, account key, account JSON.
CREATE = (
    _FORGET_OWNED
    + """
if not redis.call('SET', KEYS[1], ARGV[3], 'NX') then return 0 end
redis.call('DEL', KEYS[2], KEYS[3])
forget_tokens(ARGV[1], KEYS[4], ARGV[2])
forget_keys(ARGV[1], KEYS[5], ARGV[2])
return 1
"""
)

#: Forget an account and everything kept for it.
#: KEYS: account, offline list, mentions list, tokens set, SSH keys hash.
#: ARGV: prefix, account key.
DELETE = (
    _FORGET_OWNED
    + """
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
forget_tokens(ARGV[1], KEYS[4], ARGV[2])
forget_keys(ARGV[1], KEYS[5], ARGV[2])
return 0
"""
)

#: Bind an SSH key to an account, unless it is on an account already
#: (answers 0) or the account has as many as it may (answers -1); 1 when
#: it is bound.
#: KEYS: the key's owner, the account's SSH keys hash.
#: ARGV: account key, fingerprint, the entry (JSON), most kept.
ADD_KEY = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[4]) then return -1 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
"""

#: Unbind an SSH key from an account: answers 1 when it was the
#: account's, 0 when not.
#: KEYS: the key's owner, the account's SSH keys hash.
#: ARGV: account key, fingerprint.
REMOVE_KEY = """
if redis.call('HDEL', KEYS[2], ARGV[2]) == 0 then return 0 end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

#: Revoke every login token of an account.
#: KEYS: tokens set.  ARGV: prefix, account key.
REVOKE_TOKENS = (
    _FORGET_OWNED
    + """
forget_tokens(ARGV[1], KEYS[1], ARGV[2])
return 0
"""
)

#: Keep an offline message, unless the account keeps as many as it may
#: (counting those not expired when it was sent; the others are dropped):
#: answers 1 when kept, 0 when not.  The list expires with its latest
#: message.
#: KEYS: offline list.
#: ARGV: when it was sent (s), most kept, the entry (JSON, with its
#: expiry "x" in seconds).
LEAVE = """
local now, most = tonumber(ARGV[1]), tonumber(ARGV[2])
local all = redis.call('LRANGE', KEYS[1], 0, -1)
local kept, latest = {}, cjson.decode(ARGV[3]).x
for _, entry in ipairs(all) do
  local expires = cjson.decode(entry).x
  if expires > now then
    table.insert(kept, entry)
    latest = math.max(latest, expires)
  end
end
if #kept >= most then return 0 end
if #kept < #all then
  redis.call('DEL', KEYS[1])
  if #kept > 0 then redis.call('RPUSH', KEYS[1], unpack(kept)) end
end
redis.call('RPUSH', KEYS[1], ARGV[3])
redis.call('PEXPIREAT', KEYS[1], string.format('%d', math.ceil(latest * 1000)))
return 1
"""

#: Take an account's offline messages: answers the list, and deletes it.
#: KEYS: offline list.
TAKE = """
local all = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
return all
"""

#: Add mentions to an account's, keeping the latest ones.
#: KEYS: mentions list.  ARGV: most kept, then the mentions (JSON).
MENTION = """
local most = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
if most > 0 then
  redis.call('LTRIM', KEYS[1], -most, -1)
else
  redis.call('DEL', KEYS[1])
end
return 0
"""

#: Keep a login token, and drop the digests of expired ones from the
#: account's set, which expires with its latest token.
#: KEYS: the token, the account's tokens set.
#: ARGV: prefix, account key, digest, expiry (ms since the epoch).
ISSUE = """
redis.call('SET', KEYS[1], ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[3])
local longest = 0
for _, digest in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local ttl = redis.call('PTTL', ARGV[1] .. ':token:' .. digest)
  if ttl == -2 then
    redis.call('SREM', KEYS[2], digest)
  elseif ttl > longest then
    longest = ttl
  end
end
if longest > 0 then redis.call('PEXPIRE', KEYS[2], longest) end
return 0
"""


def _ms(seconds: float) -> int:
    """A time in seconds since the epoch, as Redis's expiries take it."""
    return math.ceil(seconds * 1000)


def _account(raw: str | None) -> Account | None:
    if not raw:
        return None
    data = json.loads(raw)
    data["rooms"] = tuple((str(n), int(e), int(i)) for n, e, i in data["rooms"])
    data["ignores"] = tuple(data["ignores"])
    return Account(**data)


class RedisAccounts:
    """
    The registered accounts, in the cluster's Redis (see the module's
    docstring for the keys).  Requests go out in the order of the calls,
    on the node's one command connection.
    """

    def __init__(self, link: RedisLink) -> None:
        self._link = link

    def _keys(self, key: str) -> list[str]:
        """An account's keys, as L{CREATE} and L{DELETE} take them."""
        link = self._link
        return [
            link.key("account", key),
            link.key("offline", key),
            link.key("mentions", key),
            link.key("tokens", key),
            link.key("sshkeys", key),
        ]

    def holder(self, key: str) -> Deferred[str | None]:
        def name(raw: str | None) -> str | None:
            found = _account(raw)
            return None if found is None else found.name

        return self._link.command("GET", self._link.key("account", key)).addCallback(
            name
        )

    def get(self, key: str) -> Deferred[Account | None]:
        return self._link.command("GET", self._link.key("account", key)).addCallback(
            _account
        )

    def create(self, account: Account) -> Deferred[bool]:
        link = self._link
        return link.eval(
            CREATE,
            self._keys(account.key),
            [link.prefix, account.key, dumps(asdict(account))],
        ).addCallback(lambda created: bool(created))

    def save(self, account: Account) -> Deferred[None]:
        # XX: an account deleted meanwhile (by another node) stays deleted.
        link = self._link
        return link.command(
            "SET", link.key("account", account.key), dumps(asdict(account)), "XX"
        ).addCallback(lambda _: None)

    def delete(self, key: str) -> Deferred[None]:
        link = self._link
        return link.eval(DELETE, self._keys(key), [link.prefix, key]).addCallback(
            lambda _: None
        )

    def leave_message(
        self, key: str, message: Offline, most: int, expires: float
    ) -> Deferred[None]:
        entry = dumps({"x": expires, "m": asdict(message)})

        def kept(answer: int) -> None:
            if not answer:
                raise MailboxFullError(key)

        return self._link.eval(
            LEAVE, [self._link.key("offline", key)], [message.ts, most, entry]
        ).addCallback(kept)

    def _offline(self, entries: list[str], now: float) -> list[Offline]:
        found = []
        for raw in entries:
            entry = json.loads(raw)
            if entry["x"] > now:
                found.append(Offline(**entry["m"]))
        return found

    def take_messages(self, key: str, now: float) -> Deferred[list[Offline]]:
        return self._link.eval(TAKE, [self._link.key("offline", key)], []).addCallback(
            self._offline, now
        )

    def add_mentions(self, key: str, found: list[Mention], most: int) -> Deferred[None]:
        entries = [dumps(asdict(m)) for m in found]
        return self._link.eval(
            MENTION, [self._link.key("mentions", key)], [most, *entries]
        ).addCallback(lambda _: None)

    def mentions(self, key: str) -> Deferred[list[Mention]]:
        def parsed(entries: list[str]) -> list[Mention]:
            return [Mention(**json.loads(raw)) for raw in entries]

        return self._link.command(
            "LRANGE", self._link.key("mentions", key), 0, -1
        ).addCallback(parsed)

    def issue_token(self, key: str, digest: str, expires: float) -> Deferred[None]:
        link = self._link
        return link.eval(
            ISSUE,
            [link.key("token", digest), link.key("tokens", key)],
            [link.prefix, key, digest, _ms(expires)],
        ).addCallback(lambda _: None)

    def token_holder(self, digest: str, now: float) -> Deferred[str | None]:
        # An expired token's key has expired with it (see ISSUE).
        return self._link.command("GET", self._link.key("token", digest))

    def revoke_token(self, digest: str) -> Deferred[None]:
        # Its digest stays in its account's set until the next token is
        # issued: it names no token any more.
        return self._link.command("DEL", self._link.key("token", digest)).addCallback(
            lambda _: None
        )

    def revoke_tokens(self, key: str) -> Deferred[None]:
        link = self._link
        return link.eval(
            REVOKE_TOKENS, [link.key("tokens", key)], [link.prefix, key]
        ).addCallback(lambda _: None)

    def tokens(self, key: str, now: float) -> Deferred[int]:
        link = self._link

        def count(digests: list[str]) -> Deferred[int] | int:
            if not digests:
                return 0
            d = link.command("MGET", *(link.key("token", x) for x in digests))
            return d.addCallback(lambda held: sum(h == key for h in held))

        d: Deferred[Any] = link.command("SMEMBERS", link.key("tokens", key))
        return d.addCallback(lambda digests: count(list(digests)))

    def waiting(self, key: str, now: float) -> Deferred[int]:
        return self._link.command(
            "LRANGE", self._link.key("offline", key), 0, -1
        ).addCallback(lambda entries: len(self._offline(entries, now)))

    def add_key(
        self, account_key: str, fingerprint: str, line: str, now: float
    ) -> Deferred[bool]:
        link = self._link

        def added(answer: int) -> bool:
            if answer < 0:
                raise KeyLimitError(account_key)
            return bool(answer)

        return link.eval(
            ADD_KEY,
            [link.key("sshkey", fingerprint), link.key("sshkeys", account_key)],
            [account_key, fingerprint, dumps({"line": line, "added": now}), MAX_KEYS],
        ).addCallback(added)

    def remove_key(self, account_key: str, fingerprint: str) -> Deferred[bool]:
        link = self._link
        return link.eval(
            REMOVE_KEY,
            [link.key("sshkey", fingerprint), link.key("sshkeys", account_key)],
            [account_key, fingerprint],
        ).addCallback(lambda removed: bool(removed))

    def keys(self, account_key: str) -> Deferred[list[KeyRecord]]:
        def records(flat: list[str]) -> list[KeyRecord]:
            found = []
            for fingerprint, raw in zip(flat[::2], flat[1::2], strict=True):
                entry = json.loads(raw)
                found.append(KeyRecord(fingerprint, entry["line"], entry["added"]))
            # A hash has no order: oldest first, by when each was added.
            return sorted(found, key=lambda r: (r.added, r.fingerprint))

        return self._link.command(
            "HGETALL", self._link.key("sshkeys", account_key)
        ).addCallback(records)

    def key_owner(self, fingerprint: str) -> Deferred[str | None]:
        return self._link.command("GET", self._link.key("sshkey", fingerprint))
