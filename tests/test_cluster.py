# -*- test-case-name: tests.test_cluster -*-
"""
Tests for L{tchat.cluster}: cluster mode with no Redis, no sockets and no
real time.

Several hubs share one L{FakeRedis}, each through its own L{FakeLink} (the
interface L{tchat.cluster.RedisBackplane} uses on L{RedisLink}), so
that two hubs behave as two nodes of one cluster.  The fake runs Python
versions of the cluster's Lua scripts, answers with the values
C{txredisapi} gives (strings, integers and lists), and delivers what is
published at once, encoded as JSON and decoded again as the bus carries it.
"""

from __future__ import annotations

import atexit
import json
import math
import random
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import txredisapi  # type: ignore[import-untyped]
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from tchat import events
from tchat.admin import make_admin_site
from tchat.cluster import RedisBackplane, RedisStore
from tchat.cluster import accounts as account_scripts
from tchat.cluster.backplane import QUIET_AFTER
from tchat.cluster.outbox import CHECK_AFTER
from tchat.cluster.redis import ClusterDownError, RedisLink
from tchat.cluster.scripts import (
    CLAIM,
    HEARTBEAT,
    LEAVE,
    MEMBER,
    RELEASE,
    ROOM,
    ROOMS,
    SAY,
    WHERE,
)
from tchat.cluster.wire import (
    decode_event,
    encode_event,
    message_fields,
    message_from,
)
from tchat.commands import (
    ROOMS_PAGE,
    Announce,
    Ban,
    Join,
    Kick,
    Login,
    Me,
    Msg,
    Mute,
    Nick,
    Oper,
    Part,
    Quit,
    Register,
    Resume,
    Rooms,
    Say,
    SetTopic,
    Unmute,
    WhoIs,
)
from tchat.config import (
    Config,
    ConfigError,
    HistoryConfig,
    LimitsConfig,
    OperatorsConfig,
    RedisTarget,
    ServerConfig,
    config_from_string,
)
from tchat.hub import ChatFactory
from tchat.model import User
from tchat.palette import PALETTE
from tchat.passwords import Checked
from tchat.presence import BACK, OUTAGE
from tests.support import FakeParticipant, Scrape, of, request

REPO = Path(__file__).resolve().parent.parent

PASSWORD = "right"

ONLY_HERE = "the cluster is unreachable: this lists only what is on this server"
"""What C{/who} and C{/rooms} say first while the cluster is unreachable."""

NODE_TIMEOUT = 3
"""The nodes' C{[cluster] node_timeout}, in seconds."""

_log = Logger()

_PROBE = subprocess.Popen(
    [
        sys.executable,
        "-c",
        "import sys, tchat.hub, tchat.tap; "
        "print('txredisapi' in sys.modules, 'tchat.cluster' in sys.modules)",
    ],
    cwd=REPO,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
)
"""
A fresh interpreter importing what the embedded server imports: started
with the module, so that its half second overlaps the other tests.
"""
atexit.register(_PROBE.wait)  # reaped even when its test is not run


def _verify(password: str, encoded: str | None) -> Deferred[bool]:
    """A password check without the hashing, so the tests stay fast."""
    return succeed(encoded == "stored" and password == PASSWORD)


def _arg(value: Any) -> str:
    """An argument as Redis receives it: a string."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def _stream_id(raw: str, high: bool) -> tuple[float, float]:
    """A stream entry id (or C{-} / C{+}) as a comparable pair."""
    if raw == "-":
        return (0, 0)
    if raw == "+":
        return (float("inf"), float("inf"))
    ms, _, seq = raw.partition("-")
    if not seq:
        return (int(ms), float("inf") if high else 0)
    return (int(ms), int(seq))


class FakeRedis:
    """
    The state one Redis keeps for a cluster, in memory: strings (with
    expiry, timed by the cluster's clock), hashes, lists, sets, sorted
    sets and streams, and the links subscribed to the bus.

    @ivar errors: Tracebacks of requests the fake could not handle (a
        command or script it does not know): the test fails on them.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.strings: dict[str, tuple[str, float | None]] = {}
        self.hashes: dict[str, dict[str, str]] = {}
        self.lists: dict[str, list[str]] = {}
        self.sets: dict[str, set[str]] = {}
        self.zsets: dict[str, dict[str, float]] = {}
        self.streams: dict[str, list[tuple[str, list[str]]]] = {}
        self.expires: dict[str, float] = {}
        self.run = "run-1"
        self.subscribers: list[FakeLink] = []
        self.errors: list[str] = []
        self.published: list[dict[str, Any]] = []
        self._scripts: dict[str, Callable[[list[str], list[str]], Any]] = {
            SAY: self._say,
            ROOM: self._room,
            CLAIM: self._claim,
            RELEASE: self._release,
            HEARTBEAT: self._heartbeat,
            ROOMS: self._rooms,
            WHERE: self._where,
            LEAVE: self._leave,
            MEMBER: self._member,
            account_scripts.CREATE: self._create_account,
            account_scripts.DELETE: self._delete_account,
            account_scripts.REVOKE_TOKENS: self._revoke_tokens,
            account_scripts.LEAVE: self._leave_message,
            account_scripts.TAKE: self._take_messages,
            account_scripts.MENTION: self._add_mentions,
            account_scripts.ISSUE: self._issue_token,
            account_scripts.ADD_KEY: self._add_key,
            account_scripts.REMOVE_KEY: self._remove_key,
        }

    def restart(self, persisted: bool) -> None:
        """
        Redis restarts: a new run, with everything lost, or with what it
        had written to disk (here, all of it).
        """
        self.run = f"run-{int(self.run.split('-')[1]) + 1}"
        if not persisted:
            for kind in (self.strings, self.hashes, self.lists, self.zsets):
                kind.clear()
            self.sets.clear()
            self.streams.clear()
            self.expires.clear()

    # -- requests ----------------------------------------------------------

    def request(self, run: Callable[[], Any]) -> Any:
        """Run one request, noting what the fake could not do."""
        try:
            return run()
        except Exception:
            self.errors.append(traceback.format_exc())
            raise

    def eval(self, script: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run one of the cluster's Lua scripts, as Python."""
        run = self._scripts.get(script)
        if run is None:
            raise AssertionError(f"a script the fake does not know: {script[:60]!r}")
        return run([_arg(k) for k in keys], [_arg(a) for a in args])

    def command(self, *raw: Any) -> Any:
        """Run one command; values come back shaped as txredisapi's."""
        name, *args = [_arg(a) for a in raw]
        now = self.clock.seconds()
        for key, when in list(self.expires.items()):
            if when <= now:
                self._delete(key)
        match (name.upper(), *args):
            case ("GET", key):
                return self._get(key)
            case ("SET", key, value, *options):
                ttl: float | None = None
                words = [o.upper() for o in options]
                if "NX" in words or "XX" in words:
                    if self._exists(key) != ("XX" in words):
                        return None
                    words.remove("NX" if "NX" in words else "XX")
                if words:
                    unit, amount = words
                    ttl = int(amount) / (1000 if unit == "PX" else 1)
                    assert unit in ("PX", "EX"), options
                self._delete(key)  # (a new value has no expiry but its own)
                self.strings[key] = (
                    value,
                    None if ttl is None else self.clock.seconds() + ttl,
                )
                return "OK"
            case ("MGET", *keys):
                return [self._get(key) for key in keys]
            case ("DEL", *keys):
                return sum(self._delete(key) for key in keys)
            case ("EXISTS", key):
                return int(self._exists(key))
            case ("EXPIRE", key, seconds):
                if not self._exists(key):
                    return 0
                self.expires[key] = now + int(seconds)
                return 1
            case ("PEXPIRE", key, ms):
                return self._expire_at(key, now + int(ms) / 1000)
            case ("PEXPIREAT", key, ms):
                return self._expire_at(key, int(ms) / 1000)
            case ("PTTL", key):
                if not self._exists(key):
                    return -2
                held = self.strings.get(key)
                expiry = (held and held[1]) or self.expires.get(key)
                return -1 if expiry is None else math.ceil((expiry - now) * 1000)
            case ("PERSIST", key):
                return int(self.expires.pop(key, None) is not None)
            case ("TTL", key):
                if not self._exists(key):
                    return -2
                expiry = self.expires.get(key)
                return -1 if expiry is None else int(expiry - now)
            case ("HSET", key, *pairs):
                assert pairs and len(pairs) % 2 == 0, pairs
                found = self.hashes.setdefault(key, {})
                new = sum(1 for f in pairs[::2] if f not in found)
                found.update(zip(pairs[::2], pairs[1::2], strict=True))
                return new
            case ("HSETNX", key, field, value):
                found = self.hashes.setdefault(key, {})
                if field in found:
                    return 0
                found[field] = value
                return 1
            case ("HGET", key, field):
                return self.hashes.get(key, {}).get(field)
            case ("HDEL", key, *fields):
                found = self.hashes.get(key, {})
                gone = sum(1 for f in fields if found.pop(f, None) is not None)
                if not found:
                    self.hashes.pop(key, None)
                return gone
            case ("HGETALL", key):
                return [x for pair in self.hashes.get(key, {}).items() for x in pair]
            case ("HMGET", key, *fields):
                found = self.hashes.get(key, {})
                return [found.get(f) for f in fields]
            case ("HLEN", key):
                return len(self.hashes.get(key, {}))
            case ("HINCRBY", key, field, amount):
                found = self.hashes.setdefault(key, {})
                total = int(found.get(field, "0")) + int(amount)
                found[field] = str(total)
                return total
            case ("INCRBY", key, amount):
                total = int(self._get(key) or "0") + int(amount)
                self.strings[key] = (str(total), None)
                return total
            case ("RPUSH", key, *values):
                self.lists.setdefault(key, []).extend(values)
                return len(self.lists[key])
            case ("LPOP", key):
                items = self.lists.get(key)
                if not items:
                    return None
                value = items.pop(0)
                if not items:
                    del self.lists[key]
                return value
            case ("LLEN", key):
                return len(self.lists.get(key, []))
            case ("LRANGE", key, start, stop):
                items = self.lists.get(key, [])
                return items[_range(len(items), int(start), int(stop))]
            case ("LTRIM", key, start, stop):
                items = self.lists.get(key, [])
                items[:] = items[_range(len(items), int(start), int(stop))]
                if not items:
                    self._delete(key)
                return "OK"
            case ("SADD", key, *members):
                found_set = self.sets.setdefault(key, set())
                new = sum(1 for m in members if m not in found_set)
                found_set.update(members)
                return new
            case ("SREM", key, *members):
                found_set = self.sets.get(key, set())
                gone = sum(1 for m in members if m in found_set)
                found_set.difference_update(members)
                if not found_set:
                    self._delete(key)
                return gone
            case ("SMEMBERS", key):
                return sorted(self.sets.get(key, ()))
            case ("ZADD", key, score, member):
                zset = self.zsets.setdefault(key, {})
                new = int(member not in zset)
                zset[member] = float(score)
                return new
            case ("ZREM", key, *members):
                zset = self.zsets.get(key, {})
                gone = sum(1 for m in members if zset.pop(m, None) is not None)
                if not zset:
                    self.zsets.pop(key, None)
                return gone
            case ("ZRANGE", key, start, stop):
                ranked = sorted(
                    self.zsets.get(key, {}).items(), key=lambda i: (i[1], i[0])
                )
                end = int(stop) if int(stop) >= 0 else len(ranked) + int(stop)
                return [m for m, _ in ranked[int(start) : end + 1]]
            case ("ZCARD", key):
                return len(self.zsets.get(key, {}))
            case ("ZRANGEBYSCORE", key, low, high):
                zset = self.zsets.get(key, {})
                return [
                    m
                    for m, s in sorted(zset.items(), key=lambda i: (i[1], i[0]))
                    if float(low) <= s <= float(high)
                ]
            case ("XADD", key, "MAXLEN", "~", most, entry, *flat):
                stream = self.streams.setdefault(key, [])
                if stream:
                    assert _stream_id(entry, False) > _stream_id(stream[-1][0], False)
                stream.append((entry, flat))
                del stream[: max(len(stream) - int(most), 0)]
                return entry
            case ("XRANGE", key, start, end, "COUNT", count):
                first, last = _stream_id(start, False), _stream_id(end, True)
                return [
                    [i, list(flat)]
                    for i, flat in self.streams.get(key, [])
                    if first <= _stream_id(i, False) <= last
                ][: int(count)]
            case ("XREVRANGE", key, end, start, "COUNT", count):
                first, last = _stream_id(start, False), _stream_id(end, True)
                return [
                    [i, list(flat)]
                    for i, flat in reversed(self.streams.get(key, []))
                    if first <= _stream_id(i, False) <= last
                ][: int(count)]
            case ("PUBLISH", channel, message):
                return self._publish(channel, message)
        raise AssertionError(f"a command the fake does not know: {raw!r}")

    # -- the data ------------------------------------------------------------

    def _get(self, key: str) -> str | None:
        found = self.strings.get(key)
        if found is None:
            return None
        value, expires = found
        if expires is not None and self.clock.seconds() >= expires:
            del self.strings[key]
            return None
        return value

    def _exists(self, key: str) -> bool:
        return self._get(key) is not None or any(
            key in kind
            for kind in (self.hashes, self.lists, self.sets, self.zsets, self.streams)
        )

    def _delete(self, key: str) -> int:
        self.expires.pop(key, None)
        found = self._get(key) is not None
        self.strings.pop(key, None)
        for kind in (self.hashes, self.lists, self.sets, self.zsets, self.streams):
            if kind.pop(key, None) is not None:
                found = True
        return int(found)

    def _expire_at(self, key: str, when: float) -> int:
        """C{PEXPIREAT}: a time already past deletes the key at once."""
        if not self._exists(key):
            return 0
        if when <= self.clock.seconds():
            self._delete(key)
            return 1
        found = self.strings.get(key)
        if found is not None:
            self.strings[key] = (found[0], when)
        else:
            self.expires[key] = when
        return 1

    def _publish(self, channel: str, message: str) -> int:
        event = json.loads(message)
        self.published.append(event)
        told = 0
        for link in list(self.subscribers):
            if not link.up or not link.hearing or not link.hears(channel):
                continue
            told += 1
            try:
                # Each subscriber decodes its own copy, as from the wire.
                link.on_event(json.loads(message))
            except Exception:
                _log.failure("a node handling a bus message")
        return told

    # -- the scripts, as the Lua in tchat.cluster does them -----------------

    def _say(self, keys: list[str], argv: list[str]) -> list[Any]:
        keep, run = argv[:2]
        call = self.command
        out: list[Any] = []
        batches: dict[str, tuple[str, list[str]]] = {}
        for i in range(len(keys) // 4):
            room, stream, tags, queue = keys[4 * i : 4 * i + 4]
            channel, tag, name, message = argv[2 + 4 * i : 6 + 4 * i]
            epoch, had_run = call("HMGET", room, "epoch", "run")
            if epoch is None or had_run != run:
                out += [2, 0, 0]
                continue
            prior = call("HGET", tags, tag) if tag != "" else None
            if prior is not None:
                out += [0, int(prior), epoch]
                continue
            id = call("HINCRBY", room, "last_id", 1)
            call(
                "XADD", stream, "MAXLEN", "~", keep, f"{id}-1", "e", epoch, "m", message
            )
            if tag != "":
                call("HSET", tags, tag, id)
                call("RPUSH", queue, tag)
                if call("LLEN", queue) > int(keep):
                    call("HDEL", tags, call("LPOP", queue))
            if room not in batches:
                encoded = json.dumps(name, ensure_ascii=False)
                head = f'{{"t":"said","room":{encoded},"e":{epoch},"b":['
                batches[room] = (channel, [head])
            else:
                batches[room][1].append(",")
            batches[room][1].append(f"[{id},{message}]")
            out += [1, id, epoch]
        for channel, parts in batches.values():
            call("PUBLISH", channel, "".join(parts) + "]}")
        return out

    def _room(self, keys: list[str], argv: list[str]) -> list[Any]:
        room, stream, tags, queue, index = keys
        name, key, fresh, lineage, last_id, topic, topic_by, seen, run = argv
        call = self.command

        def extend(steps_json: str, last: int) -> tuple[str, str]:
            steps = json.loads(steps_json or "[]")
            epoch = int(fresh)
            if steps:
                epoch = max(epoch, steps[-1][0] + 1)
            steps.append([epoch, last + 1])
            return json.dumps(steps, separators=(",", ":")), str(epoch)

        had_epoch, had_run, had_lineage, had_last = call(
            "HMGET", room, "epoch", "run", "lineage", "last_id"
        )
        if had_epoch is None:
            last = max(int(last_id), int(seen))
            steps, epoch = extend(lineage, last)
            call(
                "HSET", room, "name", name, "epoch", epoch, "run", run,
                "lineage", steps, "last_id", last,
            )  # fmt: skip
            if topic != "":
                call("HSET", room, "topic", topic, "topic_by", topic_by)
        elif had_run != run:
            last = max(int(had_last or "0"), int(seen))
            steps, epoch = extend(had_lineage or "", last)
            call(
                "HSET", room, "epoch", epoch, "run", run, "lineage", steps,
                "last_id", last,
            )  # fmt: skip
            call("DEL", tags, queue)
        elif int(had_last or "0") < int(seen):
            call("HSET", room, "last_id", seen)
        for part in (room, stream, tags, queue):
            call("PERSIST", part)
        call("ZADD", index, 0, key)
        found: list[Any] = call(
            "HMGET", room, "name", "epoch", "lineage", "last_id", "topic", "topic_by"
        )
        return found

    def _emptied(self, p: str, r: str, ttl: int) -> None:
        call = self.command
        if call("EXISTS", f"{p}:who:{r}"):
            return
        room = f"{p}:room:{r}"
        parts = (room, f"{room}:log", f"{room}:tags", f"{room}:tagq")
        if int(call("HGET", room, "last_id") or "0") == 0:
            call("DEL", *parts)
            call("ZREM", f"{p}:roomindex", r)
        elif ttl > 0:
            for part in parts:
                call("EXPIRE", part, ttl)

    def _leave(self, keys: list[str], argv: list[str]) -> int:
        p, ttl, member, node, *rooms = argv
        for r in rooms:
            entry = self.command("HGET", f"{p}:who:{r}", member)
            if entry is not None and json.loads(entry)[2] == node:
                self.command("HDEL", f"{p}:who:{r}", member)
            self._emptied(p, r, int(ttl))
        return 0

    def _member(self, keys: list[str], argv: list[str]) -> list[str]:
        p, member, entry, *rooms = argv
        missing = []
        for r in rooms:
            room = f"{p}:room:{r}"
            self.command("HSET", f"{p}:who:{r}", member, entry)
            for part in (room, f"{room}:log", f"{room}:tags", f"{room}:tagq"):
                self.command("PERSIST", part)
            if not self.command("EXISTS", room):
                missing.append(r)
        return missing

    def _claim(self, keys: list[str], argv: list[str]) -> list[Any]:
        (key,) = keys
        owner, expiry, code = argv
        call = self.command
        held = call("GET", key)
        if held is None or held == owner:
            call("SET", key, owner, "PX", expiry)
            return [1, ""]
        _, space, session = held.partition(" ")
        if space and (code == "*" or (code != "" and session == code)):
            call("SET", key, owner, "PX", expiry)
            return [2, held]
        return [0, held]

    def _release(self, keys: list[str], argv: list[str]) -> int:
        (key,) = keys
        (owner,) = argv
        if self.command("GET", key) == owner:
            deleted: int = self.command("DEL", key)
            return deleted
        return 0

    def _heartbeat(self, keys: list[str], argv: list[str]) -> list[Any]:
        p, node, timeout, expiry, ttl = argv[:5]
        call = self.command
        now = int(self.clock.seconds() * 1000)
        call("ZADD", f"{p}:nodes", now, node)
        was_buried = call("DEL", f"{p}:buried:{node}")
        lost = []
        for nick, owner in zip(argv[5::2], argv[6::2], strict=True):
            key = f"{p}:nick:{nick}"
            held = call("GET", key)
            if held is None or held == owner:
                call("SET", key, owner, "PX", expiry)
            else:
                lost.append(nick)
        buried = []
        for name in call("ZRANGEBYSCORE", f"{p}:nodes", "-inf", now - int(timeout)):
            call("ZREM", f"{p}:nodes", name)
            users_key = f"{p}:users:{name}"
            users = call("HGETALL", users_key)
            for nick, raw in zip(users[::2], users[1::2], strict=True):
                user = json.loads(raw)
                for room in user[2]:
                    call("HDEL", f"{p}:who:{room}", nick)
                    self._emptied(p, room, int(ttl))
                nick_key = f"{p}:nick:{nick}"
                if call("GET", nick_key) == user[3]:
                    call("DEL", nick_key)
                buried.append(raw)
            call("DEL", users_key)
            call("SET", f"{p}:buried:{name}", "1", "EX", 86400)
        return [lost, was_buried, buried]

    def _where(self, keys: list[str], argv: list[str]) -> list[str] | None:
        (key,) = keys
        p, nick = argv
        held = self.command("GET", key)
        if held is None:
            return None
        node = held.partition(" ")[0]
        user = self.command("HGET", f"{p}:users:{node}", nick)
        return [node, json.loads(user)[0] if user else ""]

    def _rooms(self, keys: list[str], argv: list[str]) -> list[Any]:
        p, offset, count = argv[0], int(argv[1]), int(argv[2])
        call = self.command
        index = f"{p}:roomindex"
        out: list[Any] = []
        while len(out) < count:
            found = call("ZRANGE", index, offset + len(out), offset + count - 1)
            if not found:
                break
            for key in found:
                name, topic = call("HMGET", f"{p}:room:{key}", "name", "topic")
                if name is None:
                    call("ZREM", index, key)
                else:
                    out.append([name, call("HLEN", f"{p}:who:{key}"), topic or ""])
        return [call("ZCARD", index), out]

    # -- the account scripts (tchat.cluster.accounts) ------------------------

    def _forget_tokens(self, p: str, tokens: str, key: str) -> None:
        for digest in self.command("SMEMBERS", tokens):
            token = f"{p}:token:{digest}"
            if self.command("GET", token) == key:
                self.command("DEL", token)
        self.command("DEL", tokens)

    def _forget_keys(self, p: str, ssh_keys: str, key: str) -> None:
        for fingerprint in self.command("HGETALL", ssh_keys)[::2]:
            owner = f"{p}:sshkey:{fingerprint}"
            if self.command("GET", owner) == key:
                self.command("DEL", owner)
        self.command("DEL", ssh_keys)

    def _create_account(self, keys: list[str], argv: list[str]) -> int:
        account, offline, mentions, tokens, ssh_keys = keys
        p, key, raw = argv
        if self.command("SET", account, raw, "NX") is None:
            return 0
        self.command("DEL", offline, mentions)
        self._forget_tokens(p, tokens, key)
        self._forget_keys(p, ssh_keys, key)
        return 1

    def _delete_account(self, keys: list[str], argv: list[str]) -> int:
        account, offline, mentions, tokens, ssh_keys = keys
        p, key = argv
        self.command("DEL", account, offline, mentions)
        self._forget_tokens(p, tokens, key)
        self._forget_keys(p, ssh_keys, key)
        return 0

    def _add_key(self, keys: list[str], argv: list[str]) -> int:
        owner, ssh_keys = keys
        key, fingerprint, entry, most = argv
        if self.command("EXISTS", owner):
            return 0
        if self.command("HLEN", ssh_keys) >= int(most):
            return -1
        self.command("SET", owner, key)
        self.command("HSET", ssh_keys, fingerprint, entry)
        return 1

    def _remove_key(self, keys: list[str], argv: list[str]) -> int:
        owner, ssh_keys = keys
        key, fingerprint = argv
        if not self.command("HDEL", ssh_keys, fingerprint):
            return 0
        if self.command("GET", owner) == key:
            self.command("DEL", owner)
        return 1

    def _revoke_tokens(self, keys: list[str], argv: list[str]) -> int:
        (tokens,) = keys
        p, key = argv
        self._forget_tokens(p, tokens, key)
        return 0

    def _leave_message(self, keys: list[str], argv: list[str]) -> int:
        (offline,) = keys
        now, most, entry = float(argv[0]), int(argv[1]), argv[2]
        call = self.command
        every = call("LRANGE", offline, 0, -1)
        kept = [e for e in every if json.loads(e)["x"] > now]
        if len(kept) >= most:
            return 0
        if len(kept) < len(every):
            call("DEL", offline)
            if kept:
                call("RPUSH", offline, *kept)
        call("RPUSH", offline, entry)
        latest = max(json.loads(e)["x"] for e in [*kept, entry])
        call("PEXPIREAT", offline, math.ceil(latest * 1000))
        return 1

    def _take_messages(self, keys: list[str], argv: list[str]) -> list[str]:
        (offline,) = keys
        every: list[str] = self.command("LRANGE", offline, 0, -1)
        self.command("DEL", offline)
        return every

    def _add_mentions(self, keys: list[str], argv: list[str]) -> int:
        (mentions,) = keys
        most, *entries = argv
        for entry in entries:
            self.command("RPUSH", mentions, entry)
        if int(most) > 0:
            self.command("LTRIM", mentions, -int(most), -1)
        else:
            self.command("DEL", mentions)
        return 0

    def _issue_token(self, keys: list[str], argv: list[str]) -> int:
        token, tokens = keys
        p, key, digest, expires = argv
        call = self.command
        call("SET", token, key)
        call("PEXPIREAT", token, expires)
        call("SADD", tokens, digest)
        longest = 0
        for member in call("SMEMBERS", tokens):
            ttl = call("PTTL", f"{p}:token:{member}")
            if ttl == -2:
                call("SREM", tokens, member)
            elif ttl > longest:
                longest = ttl
        if longest > 0:
            call("PEXPIRE", tokens, longest)
        return 0


def _range(length: int, start: int, stop: int) -> slice:
    """
    The items C{LRANGE} and C{LTRIM} take, from Redis's inclusive and
    possibly negative indexes.
    """
    first = max(start + length if start < 0 else start, 0)
    last = stop + length if stop < 0 else stop
    return slice(first, max(last + 1, first))


class FakeLink:
    """
    One node's connections to a L{FakeRedis}: what L{RedisBackplane} uses of
    L{tchat.cluster.redis.RedisLink}.

    Requests are answered at once; while the link is down they fail with
    L{ClusterDownError}, and the node hears nothing of the bus.
    """

    def __init__(self, redis: FakeRedis, node: str, prefix: str = "tchat") -> None:
        self.redis = redis
        self.node = node
        self.prefix = prefix
        self.channel = f"{prefix}:bus"
        self.up = False
        self.run = ""
        self.stalls = 0
        self.hearing = True
        self.rooms: set[str] = set()
        self._losing: bool | None = None
        self.on_event: Callable[[dict[str, Any]], None] = lambda event: None
        self.on_state: Callable[[bool], None] = lambda up: None
        self._held: list[tuple[Deferred[Any], Callable[[], Any]]] | None = None
        self.before: Callable[[], None] = lambda: None

    def start(self) -> None:
        """Connect: subscribed to the bus at once."""
        if self not in self.redis.subscribers:
            self.redis.subscribers.append(self)
        self.come_up()

    def stop(self) -> Deferred[Any]:
        """Disconnect for good."""
        if self in self.redis.subscribers:
            self.redis.subscribers.remove(self)
        self._changed(False)
        return succeed(None)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def command(self, *args: Any) -> Deferred[Any]:
        return self._send(lambda: self.redis.command(*args))

    def eval(
        self, script: str, keys: Sequence[str], args: Sequence[Any]
    ) -> Deferred[Any]:
        return self._send(lambda: self.redis.eval(script, keys, args))

    def lose_answers(self, executed: bool | None) -> None:
        """
        From now on, every request fails as one whose connection broke
        after it was sent: run by Redis first if C{executed}; C{None}: as
        usual again.
        """
        self._losing = executed

    def _send(self, run: Callable[[], Any]) -> Deferred[Any]:
        if not self.up:
            return fail(ClusterDownError())
        self.before()
        if self._losing is not None:
            if self._losing:
                self.redis.request(run)
            return fail(txredisapi.ConnectionError("Lost connection"))
        if self._held is not None:
            d: Deferred[Any] = Deferred()
            self._held.append((d, run))
            return d
        try:
            return succeed(self.redis.request(run))
        except Exception:
            return fail()

    def hold(self) -> None:
        """
        From now on, requests reach Redis, and their answers come back,
        only on L{release}: a network's delay.
        """
        self._held = []

    def release(self) -> None:
        """Send the held requests, in order, and answer each."""
        held, self._held = self._held or [], None
        for d, run in held:
            try:
                d.callback(self.redis.request(run))
            except Exception:
                d.errback()

    def publish(self, event: dict[str, Any], room: str | None = None) -> Deferred[Any]:
        event["n"] = self.node
        return self.command(
            "PUBLISH",
            self.channel if room is None else self.room_channel(room),
            json.dumps(event, separators=(",", ":"), ensure_ascii=False),
        )

    def room_channel(self, key: str) -> str:
        return f"{self.channel}:{key}"

    def listen(self, key: str) -> Deferred[None]:
        """Subscribed at once (while up; when it comes up otherwise)."""
        self.rooms.add(key)
        return succeed(None)

    def ignore(self, key: str) -> None:
        self.rooms.discard(key)

    def hears(self, channel: str) -> bool:
        """Whether this node is subscribed to C{channel}."""
        if channel == self.channel:
            return True
        prefix = self.channel + ":"
        return channel.startswith(prefix) and channel[len(prefix) :] in self.rooms

    def go_down(self) -> None:
        """Redis became unreachable."""
        self._changed(False)

    def come_up(self) -> None:
        """Redis can be reached (again)."""
        self._changed(True)

    def _changed(self, up: bool) -> None:
        if up:
            self.run = self.redis.run
        if up != self.up:
            self.up = up
            self.on_state(up)


class TurnParticipant(FakeParticipant):
    """
    A user of a node whose reactor turn ends before they read: what the
    node gathered in that turn (room messages on their way to Redis) has
    gone out by then.
    """

    def __init__(self, clock: Clock, door: str = "telnet", address: str | None = None):
        super().__init__(door, address)
        self._clock = clock

    def take(self) -> list[object]:
        self._clock.advance(0)
        return super().take()


class ClearPasswords:
    """
    Account passwords "hashed" as themselves, at once: the cluster tests
    are about where accounts live, not about argon2.
    """

    def hash(self, password: str) -> Deferred[str]:
        return succeed("clear:" + password)

    def check(self, password: str, encoded: str | None) -> Deferred[Checked]:
        return succeed(Checked(encoded == "clear:" + password))


class Node:
    """
    One tchat node, wired as L{tchat.tap.makeService} wires cluster mode,
    with a fake link to the shared fake Redis.
    """

    def __init__(
        self,
        redis: FakeRedis,
        name: str,
        seed: int,
        history: HistoryConfig,
    ) -> None:
        self.redis = redis
        self.link = FakeLink(redis, name)
        link = cast("RedisLink", self.link)
        self.store = RedisStore(link, history.keep, history.resume_ttl)
        self.cluster = RedisBackplane(link, self.store, redis.clock, NODE_TIMEOUT)
        self.hub = ChatFactory(
            ServerConfig(reconnect_grace=0, name="tchat", motd=("hello",)),
            redis.clock,
            random.Random(seed),
            history=history,
            store=self.store,
            operators=OperatorsConfig((("root", "stored"),)),
            verify=_verify,
            backplane=self.cluster,
            passwords=ClearPasswords(),
        )

    def connect(
        self, nick: str | None = None, door: str = "telnet"
    ) -> tuple[FakeParticipant, User]:
        """A user arrives, and picks C{nick}."""
        participant = TurnParticipant(self.redis.clock, door)
        user = self.hub.connect(participant)
        if nick is not None:
            self.hub.execute(user, Nick(nick))
        return participant, user

    def user(self, nick: str, door: str = "telnet") -> tuple[FakeParticipant, User]:
        """A user called C{nick}, with their arrival chatter forgotten."""
        participant, user = self.connect(nick, door)
        self.assert_named(user, nick)
        participant.take()
        return participant, user

    @staticmethod
    def assert_named(user: User, nick: str) -> None:
        if user.nick != nick:
            raise AssertionError(f"{user.nick!r} could not become {nick!r}")


class ClusterTestCase(SynchronousTestCase):
    """
    Two started nodes, C{a} and C{b}, of one cluster.
    """

    history = HistoryConfig(path=":memory:", keep=50, replay=5, resume_ttl=3600)

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.redis = FakeRedis(self.clock)
        self.a = self.node("a", 1)
        self.b = self.node("b", 2)

    def tearDown(self) -> None:
        self.assertEqual(self.redis.errors, [], "the fake could not answer")

    def node(self, name: str, seed: int) -> Node:
        """A new node of the cluster, started."""
        node = Node(self.redis, name, seed, self.history)
        self.successResultOf(node.hub.start())
        self.assertTrue(node.cluster.up)
        return node

    def advance(self, seconds: float, step: float = 0.25) -> None:
        """Let C{seconds} go by, heartbeats and all."""
        self.clock.pump([step] * int(seconds / step))

    def turn(self) -> None:
        """End the reactor's turn: the messages said in it go to Redis."""
        self.clock.advance(0)

    def everyone(self, *participants: FakeParticipant) -> None:
        """Forget what these participants were told so far."""
        for participant in participants:
            participant.take()


class ConfigTests(SynchronousTestCase):
    """
    The C{[cluster]} section of C{tap.ini}.
    """

    def cluster(self, text: str) -> Any:
        return config_from_string("[cluster]\n" + text, source="test.ini").cluster

    def assertConfigError(self, text: str, *fragments: str) -> None:
        with self.assertRaises(ConfigError) as caught:
            self.cluster(text)
        message = str(caught.exception)
        self.assertTrue(message.startswith("test.ini: [cluster] "), message)
        for fragment in fragments:
            self.assertIn(fragment, message)

    def test_off_by_default(self) -> None:
        """
        Without C{[cluster]} (or without its C{redis}), tchat is the
        embedded single-process server.
        """
        self.assertFalse(Config().cluster.enabled)
        self.assertFalse(config_from_string("").cluster.enabled)
        self.assertFalse(self.cluster("node = n1\n").enabled)

    def test_redis_url(self) -> None:
        """
        C{redis://HOST:PORT/DB} becomes a TCP endpoint and a database
        number; the port defaults to 6379; a password in the URL is used.
        """
        config = self.cluster("redis = redis://10.0.0.5:6380/2\n")
        self.assertTrue(config.enabled)
        self.assertEqual(
            config.target(), RedisTarget("tcp:host=10.0.0.5:port=6380", None, 2)
        )
        self.assertEqual(
            self.cluster("redis = redis://cache.example\n").target(),
            RedisTarget("tcp:host=cache.example:port=6379", None, None),
        )
        self.assertEqual(
            self.cluster("redis = redis://:s%40cret@127.0.0.1:6379/0\n").target(),
            RedisTarget("tcp:host=127.0.0.1:port=6379", "s@cret", 0),
        )

    def test_rediss_is_tls(self) -> None:
        """
        C{rediss://} connects with TLS.
        """
        self.assertEqual(
            self.cluster("redis = rediss://redis.example:6390/1\n").target(),
            RedisTarget("tls:host=redis.example:port=6390", None, 1),
        )

    def test_ipv6(self) -> None:
        """
        An IPv6 address in brackets works (its colons escaped for the
        endpoint string).
        """
        target = self.cluster("redis = redis://[::1]:6379\n").target()
        self.assertEqual(target.endpoint, "tcp:host=\\:\\:1:port=6379")

    def test_endpoint_strings(self) -> None:
        """
        Any Twisted client endpoint string is taken as it is.
        """
        for endpoint in (
            "tcp:host=127.0.0.1:port=6379",
            "unix:path=/run/redis/redis.sock",
            "tls:host=redis.example:port=6380",
        ):
            config = self.cluster(f"redis = {endpoint}\n")
            self.assertEqual(config.target(), RedisTarget(endpoint, None, None))

    def test_password_overrides(self) -> None:
        """
        C{password} wins over a password in the URL, and is used with an
        endpoint string too.
        """
        config = self.cluster(
            "redis = redis://:inurl@127.0.0.1:6379/0\npassword = better\n"
        )
        self.assertEqual(config.target().password, "better")
        config = self.cluster(
            "redis = tcp:host=127.0.0.1:port=6379\npassword = secret\n"
        )
        self.assertEqual(config.target().password, "secret")

    def test_other_settings(self) -> None:
        """
        C{node}, C{prefix} and C{node_timeout} are read; the node's name
        defaults to the host name and process id.
        """
        config = self.cluster(
            "redis = redis://127.0.0.1\nnode = web-1\nprefix = chat2\n"
            "node_timeout = 30\n"
        )
        self.assertEqual(
            (config.node_name(), config.prefix, config.node_timeout),
            ("web-1", "chat2", 30),
        )
        unnamed = self.cluster("redis = redis://127.0.0.1\n")
        self.assertRegex(unnamed.node_name(), r"-\d+$")
        self.assertEqual(unnamed.prefix, "tchat")

    def test_bad_redis(self) -> None:
        """
        A C{redis} value that cannot be used is refused with a message
        saying what is expected.
        """
        self.assertConfigError(
            "redis = localhost:6379\n", "redis:", "redis://HOST:PORT/DB"
        )
        self.assertConfigError("redis = http://h:1/0\n", "unknown scheme 'http'")
        self.assertConfigError("redis = redis://h:port/0\n", "invalid port")
        self.assertConfigError("redis = redis:///0\n", "names no host")
        self.assertConfigError("redis = redis://h/first\n", "must be a number")
        self.assertConfigError("redis = tcp:6379\n", "not a usable endpoint")

    def test_bad_others(self) -> None:
        """
        A bad node name, prefix or timeout is refused, naming the option.
        """
        self.assertConfigError("node = two words\n", "node:")
        self.assertConfigError("prefix = a:b\n", "prefix:")
        self.assertConfigError("node_timeout = 1\n", "node_timeout:")
        self.assertConfigError("nodes = 3\n", "not a known key")


class EncodingTests(SynchronousTestCase):
    """
    How events other nodes deliver travel on the bus.
    """

    def test_round_trip(self) -> None:
        """
        Every event that crosses nodes comes out of its JSON as it went in,
        colours included.
        """
        colour = PALETTE["bright-magenta"]
        for event in (
            events.Presence(1.5, "join", "alice", "web", "#dev", epoch=7, last_id=3),
            events.Presence(2.0, "nick", "alice", "telnet", new_nick="alicia"),
            events.Presence(2.0, "quit", "bob", "onion", reason="bye"),
            events.TopicChanged(3.25, "#dev", "alice", "shipping friday"),
            events.Notice(4.0, "kick", "root", "root kicked bob", "#dev"),
            events.Notice(4.0, "announce", "root", "maintenance at 5"),
            events.PrivateMessage(5.0, "alice", "web", colour, "bob", "hi", False),
            events.Status("now talking in #dev", {"room": "#dev"}),
        ):
            wire = json.loads(json.dumps(encode_event(event)))
            decoded = decode_event(wire)
            self.assertEqual(decoded, event)
            if isinstance(event, events.PrivateMessage):
                self.assertIs(decoded.sender_colour, colour)
            if isinstance(event, events.Status):
                self.assertEqual(decoded.data, event.data)

    def test_room_messages_round_trip(self) -> None:
        """
        A line, a C{/me} and an IRC C{NOTICE} come out of their stream
        entry as they went in.
        """
        line = events.RoomMessage(
            "#dev", 3, 9.5, "al", "irc", PALETTE["red"], "hi", False, "c-1", 7
        )
        for message in (line, replace(line, action=True), replace(line, notice=True)):
            fields = json.loads(json.dumps(message_fields(message)))
            self.assertEqual(message_from("#dev", 3, 7, fields), message)

    def test_unknown_kind(self) -> None:
        """
        Anything but a shared event is refused with L{ValueError}.
        """
        message = events.RoomMessage(
            "#dev", 1, 1.0, "a", "web", next(iter(PALETTE.values())), "x"
        )
        for data in ({"k": "RoomMessage"}, {"k": "Welcome"}, {}, {"k": "Nope"}):
            self.assertRaises(ValueError, decode_event, data)
        self.assertRaises(ValueError, decode_event, encode_event(message))


class MessageTests(ClusterTestCase):
    """
    Room messages, numbered in Redis and delivered on every node.
    """

    def test_both_nodes(self) -> None:
        """
        What a user on one node says reaches the room's members on both,
        as the same message (same id, same epoch), and the sender sees it
        exactly once.
        """
        alice, user = self.a.user("alice")
        carol, _ = self.a.user("carol")
        bob, _ = self.b.user("bob", "web")
        self.everyone(alice, carol, bob)
        self.a.hub.execute(user, Say("hello"))
        seen = [of(events.RoomMessage, p.take()) for p in (alice, carol, bob)]
        self.assertEqual(len(seen[0]), 1, seen)
        (message,) = seen[0]
        self.assertEqual(seen, [[message]] * 3)
        self.assertEqual(
            (message.room, message.id, message.nick, message.text, message.door),
            ("#lobby", 1, "alice", "hello", "telnet"),
        )
        lobby = self.b.hub.directory.rooms["#lobby"]
        self.assertEqual(message.epoch, lobby.epoch)
        self.assertEqual(self.a.hub.directory.rooms["#lobby"].epoch, lobby.epoch)

    def test_ids_across_senders(self) -> None:
        """
        Messages from both nodes are numbered in one sequence, and every
        member on every node sees them in the same order with the same ids.
        """
        alice, ua = self.a.user("alice")
        bob, ub = self.b.user("bob")
        dave, _ = self.b.user("dave")
        self.everyone(alice, bob, dave)
        for user, hub, text in (
            (ua, self.a.hub, "one"),
            (ub, self.b.hub, "two"),
            (ua, self.a.hub, "three"),
            (ub, self.b.hub, "four"),
        ):
            hub.execute(user, Say(text))
            self.turn()
        for participant in (alice, bob, dave):
            said = [(m.id, m.text) for m in of(events.RoomMessage, participant.take())]
            self.assertEqual(said, [(1, "one"), (2, "two"), (3, "three"), (4, "four")])

    def test_me_and_other_rooms(self) -> None:
        """
        C{/me} crosses nodes too, and a room's messages reach only its
        members.
        """
        alice, ua = self.a.user("alice")
        bob, ub = self.b.user("bob")
        dave, ud = self.b.user("dave")
        self.a.hub.execute(ua, Join("#dev"))
        self.b.hub.execute(ub, Join("#dev"))
        self.everyone(alice, bob, dave)
        self.a.hub.execute(ua, Me("waves", room="#dev"))
        (message,) = of(events.RoomMessage, bob.take())
        self.assertEqual((message.room, message.action, message.id), ("#dev", True, 1))
        self.assertEqual(of(events.RoomMessage, dave.take()), [])

    def test_join_room_new_here(self) -> None:
        """
        Joining, on B, a room created on A that B has not seen yet: the
        joiner is told the room's epoch as the cluster has it (the one its
        messages carry), even though Redis answers a moment later.
        """
        alice, ua = self.a.user("alice")
        bob, ub = self.b.user("bob")
        self.a.hub.execute(ua, Join("#dev"))
        epoch = self.a.hub.directory.rooms["#dev"].epoch
        self.advance(1)
        bob.take()
        self.b.link.hold()
        self.b.hub.execute(ub, Join("#dev"))
        self.b.link.release()
        joined = [p for p in of(events.Presence, bob.take()) if p.nick == "bob"]
        self.assertEqual([(p.room, p.epoch) for p in joined], [("#dev", epoch)])
        self.a.hub.execute(ua, Say("hi bob", room="#dev"))
        (message,) = of(events.RoomMessage, bob.take())
        self.assertEqual(message.epoch, epoch)

    def test_late_node_sees_history(self) -> None:
        """
        A node started later knows the rooms and their latest messages: a
        user joining there is shown them with the same ids.
        """
        alice, ua = self.a.user("alice")
        self.a.hub.execute(ua, Join("#dev"))
        for text in ("one", "two"):
            self.a.hub.execute(ua, Say(text))
        c = self.node("c", 3)
        eve, ue = c.user("eve")
        c.hub.execute(ue, Join("#dev"))
        (history,) = of(events.History, eve.take())
        self.assertEqual(
            [(m.id, m.text) for m in history.messages], [(1, "one"), (2, "two")]
        )
        self.assertEqual(history.epoch, self.a.hub.directory.rooms["#dev"].epoch)


class BusTests(ClusterTestCase):
    """
    What crosses the bus costs a node little (issue 24): the messages said
    in one reactor turn go to Redis in one script and come back in one bus
    message per room, and a node hears only the rooms its users are in.
    """

    def setUp(self) -> None:
        super().setUp()
        self.alice, self.ua = self.a.user("alice")
        self.carol, self.uc = self.a.user("carol")
        self.bob, self.ub = self.b.user("bob")
        self.heard: list[dict[str, Any]] = []
        received = self.b.link.on_event

        def hearing(event: dict[str, Any]) -> None:
            self.heard.append(event)
            received(event)

        self.b.link.on_event = hearing
        self.evals: list[str] = []
        run = self.redis.eval

        def counted(script: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
            self.evals.append(script)
            return run(script, keys, args)

        self.redis.eval = counted  # type: ignore[method-assign]

    def heard_about(self, room: str) -> list[dict[str, Any]]:
        """What node B heard about C{room}, of what it heard."""
        return [e for e in self.heard if room in (e.get("room"), *(e.get("r") or ()))]

    def test_one_turn_one_script(self) -> None:
        """
        Lines said in one turn on one node, in two rooms, take one script
        and one bus message per room; every member sees them in the order
        they were said, with the same ids on both nodes.
        """
        self.a.hub.execute(self.ua, Join("#dev"))
        self.a.hub.execute(self.uc, Join("#dev"))
        self.b.hub.execute(self.ub, Join("#dev"))
        self.everyone(self.alice, self.bob, self.carol)
        self.evals.clear()
        self.heard.clear()
        lines = [
            (self.ua, "#lobby", "one"),
            (self.uc, "#dev", "two"),
            (self.ua, "#lobby", "three"),
            (self.uc, "#lobby", "four"),
            (self.ua, "#dev", "five"),
        ]
        for user, room, text in lines:
            self.a.hub.execute(user, Say(text, room=room))
        self.assertEqual(self.evals, [], "nothing is sent before the turn ends")
        self.turn()
        self.assertEqual(self.evals, [SAY])
        said = [e for e in self.heard if e["t"] == "said"]
        self.assertEqual(
            [(e["room"], [m["text"] for _, m in e["b"]]) for e in said],
            [("#lobby", ["one", "three", "four"]), ("#dev", ["two", "five"])],
        )
        for participant in (self.alice, self.bob):
            seen = [
                (m.room, m.id, m.text)
                for m in of(events.RoomMessage, participant.take())
            ]
            self.assertEqual(
                seen,
                [
                    ("#lobby", 1, "one"),
                    ("#lobby", 2, "three"),
                    ("#lobby", 3, "four"),
                    ("#dev", 1, "two"),
                    ("#dev", 2, "five"),
                ],
            )

    def test_nothing_overtakes_a_line(self) -> None:
        """
        What a user does after speaking in the same turn (leaving the
        room) reaches the other nodes after their line, not before.
        """
        self.everyone(self.bob)
        self.a.hub.execute(self.uc, Say("bye all"))
        self.a.hub.execute(self.uc, Part("#lobby"))
        self.turn()
        seen = [
            (type(e).__name__, getattr(e, "text", getattr(e, "kind", None)))
            for e in self.bob.take()
            if isinstance(e, events.RoomMessage | events.Presence)
        ]
        self.assertEqual(seen, [("RoomMessage", "bye all"), ("Presence", "part")])

    def test_only_rooms_with_members_here(self) -> None:
        """
        A node hears nothing of a room none of its users is in: not its
        lines, not its comings and goings.  Once one of them joins, they
        get its latest lines and everything after; a while after the last
        one leaves, the node stops hearing it, and a later join there
        replays what was said meanwhile.
        """
        self.a.hub.execute(self.ua, Join("#dev"))
        self.a.hub.execute(self.uc, Join("#dev"))
        self.a.hub.execute(self.ua, Say("only on a", room="#dev"))
        self.turn()
        self.assertEqual(self.heard_about("#dev"), [])
        self.assertNotIn("#dev", self.b.link.rooms)
        self.b.hub.execute(self.ub, Join("#dev"))
        (replay,) = of(events.History, self.bob.take())
        self.assertEqual([m.text for m in replay.messages], ["only on a"])
        self.a.hub.execute(self.ua, Say("now on b too", room="#dev"))
        self.turn()
        self.assertEqual(
            [m.text for m in of(events.RoomMessage, self.bob.take())],
            ["now on b too"],
        )
        self.b.hub.execute(self.ub, Part("#dev"))
        self.assertIn("#dev", self.b.link.rooms, "kept a moment")
        self.advance(QUIET_AFTER + 1)
        self.assertNotIn("#dev", self.b.link.rooms)
        self.heard.clear()
        self.a.hub.execute(self.ua, Say("missed by b", room="#dev"))
        self.a.hub.execute(self.uc, Part("#dev"))
        self.a.hub.execute(self.uc, Join("#dev"))
        self.turn()
        self.assertEqual(self.heard_about("#dev"), [])
        self.bob.take()
        self.b.hub.execute(self.ub, Join("#dev"))
        (replay,) = of(events.History, self.bob.take())
        self.assertEqual(
            [m.text for m in replay.messages],
            ["only on a", "now on b too", "missed by b"],
        )
        self.a.hub.execute(self.ua, Say("and live again", room="#dev"))
        self.assertEqual(
            [m.text for m in of(events.RoomMessage, self.bob.take())],
            ["and live again"],
        )

    def test_back_at_once(self) -> None:
        """
        The last member here who leaves and comes straight back (a
        reconnect) misses nothing: the node kept listening.
        """
        self.b.hub.execute(self.ub, Join("#dev"))
        self.b.hub.execute(self.ub, Part("#dev"))
        self.advance(QUIET_AFTER / 2)
        self.b.hub.execute(self.ub, Join("#dev"))
        self.advance(QUIET_AFTER)
        self.assertIn("#dev", self.b.link.rooms)
        self.bob.take()
        self.a.hub.execute(self.ua, Join("#dev"))
        self.a.hub.execute(self.ua, Say("still there?", room="#dev"))
        self.assertEqual(
            [m.text for m in of(events.RoomMessage, self.bob.take())],
            ["still there?"],
        )


class PresenceTests(ClusterTestCase):
    """
    Joins, parts, nick changes and quits are seen on every node.
    """

    def setUp(self) -> None:
        super().setUp()
        self.alice, self.ua = self.a.user("alice")
        self.carol, self.uc = self.a.user("carol")
        self.bob, self.ub = self.b.user("bob", "web")
        self.dave, self.ud = self.b.user("dave")
        self.b.hub.execute(self.ud, Join("#other"))
        self.b.hub.execute(self.ud, Part("#lobby"))
        self.a.hub.execute(self.uc, Join("#dev"))
        self.b.hub.execute(self.ub, Join("#dev"))
        self.everyone(self.alice, self.carol, self.bob, self.dave)

    def presence(self, participant: FakeParticipant) -> list[events.Presence]:
        return of(events.Presence, participant.take())

    def test_join_and_part(self) -> None:
        """
        A user joining and leaving a room on A is seen, as on A, by the
        room's members on B; nobody else on B hears of it.
        """
        self.a.hub.execute(self.ua, Join("#dev"))
        (joined,) = self.presence(self.carol)
        self.assertEqual(
            (joined.kind, joined.nick, joined.room), ("join", "alice", "#dev")
        )
        self.assertEqual(self.presence(self.bob), [joined])
        self.a.hub.execute(self.ua, Part("#dev"))
        (parted,) = self.presence(self.carol)
        self.assertEqual((parted.kind, parted.room), ("part", "#dev"))
        self.assertEqual(self.presence(self.bob), [parted])
        self.assertEqual(self.dave.take(), [])

    def test_nick(self) -> None:
        """
        A nick change on A is seen once by each member of its rooms on B,
        however many rooms they share.
        """
        self.a.hub.execute(self.ua, Join("#dev"))
        self.everyone(self.carol, self.bob)
        self.a.hub.execute(self.ua, Nick("alicia"))
        (changed,) = self.presence(self.carol)
        self.assertEqual(
            (changed.kind, changed.nick, changed.new_nick), ("nick", "alice", "alicia")
        )
        self.assertEqual(self.presence(self.bob), [changed])
        self.assertEqual(self.dave.take(), [])

    def test_quit(self) -> None:
        """
        A user quitting on A is seen on B, with their words, by those who
        shared a room with them.
        """
        self.a.hub.execute(self.ua, Quit("off to lunch"))
        (gone,) = self.presence(self.carol)
        self.assertEqual(
            (gone.kind, gone.nick, gone.reason), ("quit", "alice", "off to lunch")
        )
        self.assertEqual(self.presence(self.bob), [gone])
        self.assertEqual(self.dave.take(), [])

    def test_lost(self) -> None:
        """
        A dropped connection on A shows as lost on B.
        """
        self.a.hub.disconnect(self.ua, "reset by peer")
        (gone,) = self.presence(self.bob)
        self.assertEqual((gone.kind, gone.nick), ("lost", "alice"))

    def test_arrival(self) -> None:
        """
        A new user on A, arriving in the lobby, is seen by B's lobby members.
        """
        _, eve = self.a.connect()
        (joined,) = self.presence(self.bob)
        self.assertEqual(
            (joined.kind, joined.nick, joined.room), ("join", eve.nick, "#lobby")
        )
        self.assertEqual(self.dave.take(), [])


class NickTests(ClusterTestCase):
    """
    Nicks are unique in the whole cluster.
    """

    def test_taken_elsewhere(self) -> None:
        """
        A nick held on A is refused on B, whatever its case, with the usual
        error; once its holder quits, B can take it.
        """
        _, ua = self.a.user("alice")
        bob, ub = self.b.user("bob")
        for name in ("alice", "ALICE"):
            self.b.hub.execute(ub, Nick(name))
            self.assertEqual(
                bob.take(),
                [events.Error("nick-taken", f"{name} is taken; pick another")],
            )
            self.assertEqual(ub.nick, "bob")
        self.a.hub.execute(ua, Quit(None))
        self.b.hub.execute(ub, Nick("alice"))
        self.assertEqual(ub.nick, "alice")
        _, other = self.a.connect("alice")
        self.assertNotEqual(other.nick, "alice")

    def test_old_nick_freed(self) -> None:
        """
        A nick left behind by a change on one node can be taken on another.
        """
        _, ua = self.a.user("alice")
        _, ub = self.b.user("bob")
        self.a.hub.execute(ua, Nick("alicia"))
        self.b.hub.execute(ub, Nick("alice"))
        self.assertEqual(ub.nick, "alice")
        self.b.hub.execute(ub, Nick("alicia"))
        self.assertEqual(ub.nick, "alice")

    def test_guest_collision(self) -> None:
        """
        Two nodes drawing the same guest nick: the later user draws another,
        and the two are told apart everywhere.
        """
        c = self.node("c", 1)  # the same random draws as node a
        first, ua = self.a.connect()
        second, uc = c.connect()
        self.assertNotEqual(ua.nick, uc.nick)
        self.assertRegex(uc.nick, r"^guest-[0-9a-f]{4}$")
        (welcome,) = of(events.Welcome, second.received)
        self.assertEqual(welcome.nick, ua.nick)
        (renamed,) = of(events.Presence, second.received)[:1]
        self.assertEqual((renamed.kind, renamed.new_nick), ("nick", uc.nick))
        # Both are listed, each under their own nick.
        self.a.hub.execute(ua, WhoIs(None))
        (who,) = of(events.Who, first.take())
        self.assertIn(events.Member(uc.nick, "telnet"), who.members)
        self.assertIn(events.Member(ua.nick, "telnet"), who.members)

    def test_nick_while_cut_off(self) -> None:
        """
        While the cluster is unreachable a nick cannot be checked, so a
        change is refused with a clear error.
        """
        alice, ua = self.a.user("alice")
        self.a.link.go_down()
        alice.take()
        self.a.hub.execute(ua, Nick("alicia"))
        (error,) = of(events.Error, alice.take())
        self.assertEqual(error.code, "nick-taken")
        self.assertIn("unreachable", error.text)
        self.assertEqual(ua.nick, "alice")


class ListingTests(ClusterTestCase):
    """
    C{/who} and C{/rooms} show the whole cluster.
    """

    def test_who(self) -> None:
        """
        C{/who} on either node lists the room's members on both, with their
        doors.
        """
        alice, ua = self.a.user("alice")
        bob, ub = self.b.user("bob", "web")
        _, _ = self.a.user("carol", "onion")
        self.everyone(alice, bob)
        want = events.Who(
            "#lobby",
            (
                events.Member("alice", "telnet"),
                events.Member("bob", "web"),
                events.Member("carol", "onion"),
            ),
        )
        self.a.hub.execute(ua, WhoIs(None))
        self.assertEqual(alice.take(), [want])
        self.b.hub.execute(ub, WhoIs("#lobby"))
        self.assertEqual(bob.take(), [want])

    def test_who_after_changes(self) -> None:
        """
        C{/who} follows nick changes, parts and quits on the other node.
        """
        _, ua = self.a.user("alice")
        _, uc = self.a.user("carol")
        bob, ub = self.b.user("bob")
        self.a.hub.execute(ua, Nick("alicia"))
        self.a.hub.execute(uc, Quit(None))
        self.b.hub.execute(ub, WhoIs(None))
        self.assertEqual(
            of(events.Who, bob.take()),
            [
                events.Who(
                    "#lobby",
                    (events.Member("alicia", "telnet"), events.Member("bob", "telnet")),
                )
            ],
        )

    def test_rooms(self) -> None:
        """
        C{/rooms} lists the rooms of both nodes, with cluster-wide member
        counts and topics.
        """
        _, ua = self.a.user("alice")
        bob, ub = self.b.user("bob")
        _, ud = self.b.user("dave")
        self.a.hub.execute(ua, Join("#dev"))
        self.a.hub.execute(ua, SetTopic("shipping"))
        self.b.hub.execute(ud, Join("#dev"))
        self.b.hub.execute(ud, Join("#ops"))
        bob.take()
        self.b.hub.execute(ub, Rooms())
        self.assertEqual(
            bob.take(),
            [
                events.RoomList(
                    (
                        events.RoomInfo("#dev", 2, "shipping"),
                        events.RoomInfo("#lobby", 3, None),
                        events.RoomInfo("#ops", 1, None),
                    )
                )
            ],
        )


class PrivateMessageTests(ClusterTestCase):
    """
    C{/msg} to a user on another node.
    """

    def test_across(self) -> None:
        """
        A private message from A reaches its recipient on B, and the sender
        gets their copy.
        """
        alice, ua = self.a.user("alice", "web")
        bob, _ = self.b.user("bob")
        carol, _ = self.b.user("carol")
        self.everyone(alice, bob, carol)
        self.a.hub.execute(ua, Msg("bob", "psst"))
        now = self.clock.seconds()
        self.assertEqual(
            bob.take(),
            [
                events.PrivateMessage(
                    now, "alice", "web", ua.colour, "bob", "psst", False
                )
            ],
        )
        self.assertEqual(
            alice.take(),
            [
                events.PrivateMessage(
                    now, "alice", "web", ua.colour, "bob", "psst", True
                )
            ],
        )
        self.assertEqual(carol.take(), [])

    def test_recipient_as_known(self) -> None:
        """
        As on one server, the sender's copy names the recipient by their
        nick, not as the sender typed it.
        """
        alice, ua = self.a.user("alice")
        bob, _ = self.b.user("bob")
        self.a.hub.execute(ua, Msg("BOB", "psst"))
        (mine,) = of(events.PrivateMessage, alice.take())
        (theirs,) = of(events.PrivateMessage, bob.take())
        self.assertEqual((mine.recipient, theirs.recipient), ("bob", "bob"))

    def test_nobody(self) -> None:
        """
        A private message to a nick nobody has, on any node, is answered
        with the usual error.
        """
        alice, ua = self.a.user("alice")
        self.a.hub.execute(ua, Msg("nobody", "hello?"))
        self.assertEqual(
            alice.take(), [events.Error("no-such-nick", "nobody here is called nobody")]
        )


class TopicTests(ClusterTestCase):
    """
    Topics are the room's, on every node.
    """

    def test_topic(self) -> None:
        """
        A topic set on A is announced to B's members and shown by C{/topic}
        on B.
        """
        alice, ua = self.a.user("alice")
        bob, ub = self.b.user("bob")
        self.a.hub.execute(ua, SetTopic("release on friday"))
        (changed,) = of(events.TopicChanged, alice.take())
        self.assertEqual(bob.take(), [changed])
        self.assertEqual(
            (changed.room, changed.nick, changed.topic),
            ("#lobby", "alice", "release on friday"),
        )
        self.b.hub.execute(ub, SetTopic(None))
        self.assertEqual(
            bob.take(), [events.Topic("#lobby", "release on friday", "alice")]
        )

    def test_topic_for_late_node(self) -> None:
        """
        A node started after the topic was set knows it too.
        """
        _, ua = self.a.user("alice")
        self.a.hub.execute(ua, SetTopic("release on friday"))
        c = self.node("c", 3)
        eve, ue = c.user("eve")
        c.hub.execute(ue, SetTopic(None))
        self.assertEqual(
            eve.take(), [events.Topic("#lobby", "release on friday", "alice")]
        )


class OutageTests(ClusterTestCase):
    """
    Redis unreachable: a node serves its own users alone, says so once, and
    catches up when it is back.
    """

    def setUp(self) -> None:
        super().setUp()
        self.alice, self.ua = self.a.user("alice")
        self.carol, self.uc = self.a.user("carol")
        self.bob, self.ub = self.b.user("bob")
        self.a.hub.execute(self.ua, Say("before"))
        self.everyone(self.alice, self.carol, self.bob)

    def statuses(self, participant: FakeParticipant) -> list[str]:
        return [s.text for s in of(events.Status, participant.received)]

    def test_told_once(self) -> None:
        """
        Each user of the cut-off node is told once that the cluster is
        unreachable (a user arriving meanwhile too), and once that it is
        back; a later outage is told again.
        """
        self.a.link.go_down()
        self.a.link.go_down()
        self.a.hub.execute(self.ua, Say("anyone?"))
        newcomer, _ = self.a.connect()
        for participant in (self.alice, self.carol, newcomer):
            self.assertEqual(self.statuses(participant), [OUTAGE])
        self.assertEqual(self.statuses(self.bob), [])
        self.a.link.come_up()
        for participant in (self.alice, self.carol, newcomer):
            self.assertEqual(self.statuses(participant), [OUTAGE, BACK])
            participant.take()
        self.assertEqual(self.bob.take(), [])
        self.a.link.go_down()
        for participant in (self.alice, self.carol, newcomer):
            self.assertEqual(self.statuses(participant), [OUTAGE])

    def test_local_only(self) -> None:
        """
        What is said on the cut-off node reaches its own users, in a new
        epoch (its ids are its own), and not the other node's.
        """
        before = self.a.hub.directory.rooms["#lobby"].epoch
        self.advance(1)
        self.a.link.go_down()
        self.everyone(self.alice, self.carol)
        self.a.hub.execute(self.ua, Say("anyone?"))
        (message,) = of(events.RoomMessage, self.carol.take())
        self.assertEqual(self.alice.take(), [message])
        self.assertEqual(message.text, "anyone?")
        self.assertNotEqual(message.epoch, before)
        self.assertEqual(self.bob.take(), [])

    def test_other_side(self) -> None:
        """
        What B's users say during A's outage does not reach A's users then.
        """
        self.a.link.go_down()
        self.everyone(self.alice, self.carol)
        self.b.hub.execute(self.ub, Say("hello a?"))
        self.assertEqual(len(of(events.RoomMessage, self.bob.take())), 1)
        self.assertEqual(of(events.RoomMessage, self.alice.take()), [])

    def test_who_cut_off(self) -> None:
        """
        C{/who} and C{/rooms} during an outage say that they list only this
        server, then list it.
        """
        self.a.link.go_down()
        self.alice.take()
        self.a.hub.execute(self.ua, WhoIs(None))
        self.assertEqual(
            self.alice.take(),
            [
                events.Status(ONLY_HERE),
                events.Who(
                    "#lobby",
                    (
                        events.Member("alice", "telnet"),
                        events.Member("carol", "telnet"),
                    ),
                ),
            ],
        )
        self.a.hub.execute(self.ua, Rooms())
        self.assertEqual(
            self.alice.take(),
            [
                events.Status(ONLY_HERE),
                events.RoomList((events.RoomInfo("#lobby", 2, None),)),
            ],
        )

    def test_catch_up(self) -> None:
        """
        Back in touch, the node's users are sent, as a resume, what the
        other node's users said meanwhile; then talk goes on with the ids
        every node agrees on.
        """
        lobby = self.a.hub.directory.rooms["#lobby"]
        epoch = lobby.epoch
        self.a.link.go_down()
        self.b.hub.execute(self.ub, Say("while you were away"))
        self.b.hub.execute(self.ub, Say("still away?"))
        self.everyone(self.alice, self.carol, self.bob)
        self.a.link.come_up()
        for participant in (self.alice, self.carol):
            (history,) = of(events.History, participant.take())
            self.assertEqual(history.reason, "resume")
            self.assertEqual(history.epoch, epoch)
            self.assertTrue(history.complete)
            self.assertEqual(
                [(m.id, m.text) for m in history.messages],
                [(2, "while you were away"), (3, "still away?")],
            )
        self.assertEqual(self.bob.take(), [])
        self.a.hub.execute(self.ua, Say("back"))
        (mine,) = of(events.RoomMessage, self.alice.take())
        (theirs,) = of(events.RoomMessage, self.bob.take())
        self.assertEqual(mine, theirs)
        self.assertEqual((mine.id, mine.epoch), (4, epoch))

    def test_users_back_in_cluster(self) -> None:
        """
        Once back, the node's users are listed and their nicks held in the
        cluster again.
        """
        self.a.link.go_down()
        self.a.link.come_up()
        self.b.hub.execute(self.ub, WhoIs(None))
        self.assertEqual(
            of(events.Who, self.bob.take()),
            [
                events.Who(
                    "#lobby",
                    (
                        events.Member("alice", "telnet"),
                        events.Member("bob", "telnet"),
                        events.Member("carol", "telnet"),
                    ),
                )
            ],
        )
        self.b.hub.execute(self.ub, Nick("alice"))
        self.assertEqual(self.ub.nick, "bob")


class NodeDeathTests(ClusterTestCase):
    """
    A node that stops (killed, frozen, cut off for long) is buried by the
    others within the node timeout.
    """

    def setUp(self) -> None:
        super().setUp()
        self.alice, self.ua = self.a.user("alice")
        self.carol, self.uc = self.a.user("carol", "web")
        self.a.hub.execute(self.uc, Join("#dev"))
        self.bob, self.ub = self.b.user("bob")
        self.dave, self.ud = self.b.user("dave")
        self.b.hub.execute(self.ud, Join("#dev"))
        self.b.hub.execute(self.ud, Part("#lobby"))
        self.erin, self.ue = self.b.user("erin")
        self.b.hub.execute(self.ue, Join("#other"))
        self.b.hub.execute(self.ue, Part("#lobby"))
        self.advance(1)
        self.everyone(self.alice, self.carol, self.bob, self.dave, self.erin)

    def kill_a(self) -> None:
        """Node a stops dead: no heartbeat, no goodbye."""
        self.a.link.up = False

    def test_lost(self) -> None:
        """
        Within node_timeout (and a heartbeat) of a node's death, each of its
        users is shown as lost to the other node's users who shared a room
        with them, and to nobody else.
        """
        self.kill_a()
        self.advance(NODE_TIMEOUT - 0.5)
        self.assertEqual(self.bob.take(), [])
        self.advance(1.5)
        lost = self.clock.seconds()
        self.assertEqual(
            sorted(
                (p.kind, p.nick, p.door) for p in of(events.Presence, self.bob.take())
            ),
            [("lost", "alice", "telnet"), ("lost", "carol", "web")],
        )
        presence = of(events.Presence, self.dave.take())
        self.assertEqual(
            [(p.kind, p.nick, p.door) for p in presence], [("lost", "carol", "web")]
        )
        self.assertLessEqual(presence[0].ts, lost)
        self.assertEqual(self.erin.take(), [])
        self.advance(5)
        self.assertEqual(of(events.Presence, self.bob.take()), [])  # once

    def test_nicks_freed(self) -> None:
        """
        A dead node's nicks can be taken again, and its users are no
        longer listed.
        """
        self.kill_a()
        self.advance(NODE_TIMEOUT + 1)
        self.bob.take()
        self.b.hub.execute(self.ub, WhoIs(None))
        self.assertEqual(
            self.bob.take(), [events.Who("#lobby", (events.Member("bob", "telnet"),))]
        )
        self.b.hub.execute(self.ub, Nick("alice"))
        self.assertEqual(self.ub.nick, "alice")

    def test_alive_not_buried(self) -> None:
        """
        Nodes that keep beating are never buried, however long they run.
        """
        self.advance(4 * NODE_TIMEOUT)
        for participant in (self.alice, self.carol, self.bob, self.dave):
            self.assertEqual(of(events.Presence, participant.take()), [])
        self.b.hub.execute(self.ub, Nick("alice"))
        self.assertEqual(self.ub.nick, "bob")

    def test_comes_back(self) -> None:
        """
        A node taken for dead that comes back shows its users joining
        their rooms again; a user whose nick was taken meanwhile gets a
        guest nick and is told why.
        """
        self.a.link.go_down()
        self.advance(NODE_TIMEOUT + 1)
        self.b.hub.execute(self.ub, Nick("alice"))
        self.assertEqual(self.ub.nick, "alice")
        self.everyone(self.alice, self.carol, self.bob, self.dave)
        self.a.link.come_up()
        errors = of(events.Error, self.alice.take())
        self.assertEqual([e.code for e in errors], ["nick-taken"])
        self.assertNotEqual(self.ua.nick, "alice")
        joined = of(events.Presence, self.dave.take())
        self.assertIn(
            ("join", "carol", "#dev"), [(p.kind, p.nick, p.room) for p in joined]
        )


class OperatorTests(ClusterTestCase):
    """
    Operators act on users of every node.
    """

    def setUp(self) -> None:
        super().setUp()
        self.root, self.ur = self.a.user("root1")
        self.a.hub.execute(self.ur, Oper("root", PASSWORD))
        self.assertIsNotNone(self.ur.operator)
        self.carol, self.uc = self.a.user("carol")
        self.bob, self.ub = self.b.user("bob", "web")
        self.dave, self.ud = self.b.user("dave")
        self.b.hub.execute(self.ud, Join("#other"))
        self.b.hub.execute(self.ud, Part("#lobby"))
        self.everyone(self.root, self.carol, self.bob, self.dave)

    def test_kick(self) -> None:
        """
        An operator on A kicks a user on B: the user is told why and
        disconnected, the room on both nodes sees the notice and the quit,
        and the nick is free again.
        """
        self.a.hub.execute(self.ur, Kick("bob", "spam"))
        received = self.bob.take()
        self.assertIn(events.Goodbye("kicked by root1: spam"), received)
        self.assertEqual(self.bob.closed, "kicked")
        self.assertFalse(self.ub.connected)
        for participant in (self.root, self.carol):
            seen = participant.take()
            (notice,) = of(events.Notice, seen)
            self.assertEqual(
                (notice.kind, notice.by, notice.text),
                ("kick", "root1", "root1 kicked bob (web): spam"),
            )
            (gone,) = of(events.Presence, seen)
            self.assertEqual((gone.kind, gone.nick), ("quit", "bob"))
        self.assertEqual(of(events.Notice, self.dave.take()), [])
        _, other = self.a.connect("bob")
        self.assertEqual(other.nick, "bob")

    def test_kick_nobody(self) -> None:
        """
        Kicking a nick nobody has on any node is answered with the usual
        error.
        """
        self.a.hub.execute(self.ur, Kick("nobody", None))
        self.assertEqual(
            self.root.take(),
            [events.Error("no-such-nick", "nobody here is called nobody")],
        )

    def test_mute(self) -> None:
        """
        A user on B muted by an operator on A cannot talk (and is told
        so) until unmuted; the room is told on both nodes.
        """
        self.a.hub.execute(self.ur, Mute("bob", None))
        (notice,) = of(events.Notice, self.carol.take())
        self.assertEqual(
            (notice.kind, notice.text), ("mute", "root1 muted bob (web) until lifted")
        )
        self.assertEqual(of(events.Notice, self.bob.take()), [notice])
        self.b.hub.execute(self.ub, Say("can you hear me"))
        (error,) = of(events.Error, self.bob.take())
        self.assertEqual(error.code, "muted")
        self.assertEqual(of(events.RoomMessage, self.carol.take()), [])
        self.a.hub.execute(self.ur, Unmute("bob"))
        self.everyone(self.root, self.carol, self.bob)
        self.b.hub.execute(self.ub, Say("thanks"))
        self.assertEqual(len(of(events.RoomMessage, self.carol.take())), 1)

    def test_ban(self) -> None:
        """
        An operator on A bans a user on B by nick: the user is sent off,
        and their address is refused on both nodes afterwards.
        """
        self.bob.take()
        self.b.hub.disconnect(self.ub, "gone")
        bob = TurnParticipant(self.clock, "telnet", "192.0.2.7")
        ub = self.b.hub.connect(bob)
        self.b.hub.execute(ub, Nick("bob"))
        bob.take()
        self.a.hub.execute(self.ur, Ban("bob", None, "spam"))
        self.assertEqual(bob.closed, "banned")
        self.assertFalse(ub.connected)
        self.assertIn(events.Goodbye("banned by root1: spam"), bob.take())
        for node in (self.a, self.b):
            again = TurnParticipant(self.clock, "web", "192.0.2.7")
            node.hub.connect(again)
            self.assertEqual(again.closed, "banned")

    def test_announce(self) -> None:
        """
        An announcement on A reaches every user on every node, in every room.
        """
        self.a.hub.execute(self.ur, Announce("restart at noon"))
        want = [
            events.Notice(self.clock.seconds(), "announce", "root1", "restart at noon")
        ]
        for participant in (self.root, self.carol, self.bob, self.dave):
            self.assertEqual(participant.take(), want)


class ResumeTests(ClusterTestCase):
    """
    A resume code from one node works on another.
    """

    def test_resume_on_other_node(self) -> None:
        """
        A user leaving A comes back on B with their code: their nick and
        rooms are restored and they are sent what was said meanwhile.
        """
        alice, ua = self.a.user("alice")
        carol, uc = self.a.user("carol")
        self.a.hub.execute(ua, Join("#dev"))
        self.a.hub.execute(uc, Join("#dev"))
        self.a.hub.execute(uc, Say("before", room="#dev"))
        self.turn()
        code = ua.code
        self.a.hub.disconnect(ua, "reset by peer")
        self.a.hub.execute(uc, Say("missed one", room="#dev"))
        self.a.hub.execute(uc, Say("missed two", room="#dev"))
        back, ub = self.b.connect()
        back.take()
        self.b.hub.execute(ub, Resume(code))
        self.assertEqual(ub.nick, "alice")
        self.assertEqual(sorted(r.name for r in ub.rooms), ["#dev", "#lobby"])
        received = back.take()
        self.assertIn(
            events.Status("welcome back, alice: restoring #lobby, #dev"), received
        )
        dev = [h for h in of(events.History, received) if h.room == "#dev"]
        self.assertEqual(len(dev), 1, received)
        self.assertEqual(dev[0].reason, "resume")
        self.assertTrue(dev[0].complete)
        self.assertEqual(
            [(m.id, m.text) for m in dev[0].messages],
            [(2, "missed one"), (3, "missed two")],
        )
        # Everyone sees alice back under her nick, and the cluster holds it.
        self.assertIn(
            ("join", "alice", "#dev"),
            [(p.kind, p.nick, p.room) for p in of(events.Presence, carol.take())],
        )
        _, other = self.a.connect("alice")
        self.assertNotEqual(other.nick, "alice")

    def test_resume_room_unknown_there(self) -> None:
        """
        A session's room that the other node never had a member or a
        message of is restored there as the cluster has it: same epoch, and
        the resume says nothing is missing.
        """
        alice, ua = self.a.user("alice")
        self.a.hub.execute(ua, Join("#quiet"))
        self.a.hub.execute(ua, Say("anyone?"))
        epoch = self.a.hub.directory.rooms["#quiet"].epoch
        code = ua.code
        self.advance(1)
        self.a.hub.disconnect(ua, "reset by peer")
        self.assertNotIn("#quiet", self.a.hub.directory.rooms, "nobody there")
        back, ub = self.b.connect()
        self.b.hub.execute(ub, Resume(code))
        (quiet,) = [h for h in of(events.History, back.take()) if h.room == "#quiet"]
        self.assertEqual((quiet.epoch, quiet.complete), (epoch, True))
        self.assertEqual(self.b.hub.directory.rooms["#quiet"].epoch, epoch)

    def test_resume_room_forgotten(self) -> None:
        """
        A session's room where nothing was said is forgotten once empty;
        a resume makes it again, and says nothing is missing.
        """
        alice, ua = self.a.user("alice")
        self.a.hub.execute(ua, Join("#quiet"))
        code = ua.code
        self.advance(1)
        self.a.hub.disconnect(ua, "reset by peer")
        self.assertNotIn("tchat:room:#quiet", self.redis.hashes)
        back, ub = self.b.connect()
        self.b.hub.execute(ub, Resume(code))
        (quiet,) = [h for h in of(events.History, back.take()) if h.room == "#quiet"]
        self.assertEqual((quiet.messages, quiet.complete), ((), True))
        self.assertIn(self.b.hub.directory.rooms["#quiet"], ub.rooms)

    def test_takeover_of_live_connection(self) -> None:
        """
        A resume on B of a session still connected on A takes it over: the
        old connection is closed, and the nick moves to B.
        """
        old, ua = self.a.user("alice")
        code = ua.code
        back, ub = self.b.connect()
        self.b.hub.execute(ub, Resume(code))
        self.assertEqual(ub.nick, "alice")
        self.assertIn(
            events.Goodbye("resumed by a new connection", elsewhere=True), old.take()
        )
        self.assertFalse(ua.connected)
        self.advance(2 * NODE_TIMEOUT)
        self.assertEqual(ub.nick, "alice")
        _, other = self.a.connect("alice")
        self.assertNotEqual(other.nick, "alice")


class UnconfirmedTests(ClusterTestCase):
    """
    A message whose answer from Redis never came is neither called failed
    nor dropped: it is settled once Redis answers again (issue 19).
    """

    def setUp(self) -> None:
        super().setUp()
        self.alice, self.ua = self.a.user("alice")
        self.bob, self.ub = self.b.user("bob")
        self.everyone(self.alice, self.bob)

    def texts(self, participant: FakeParticipant) -> list[str]:
        received = participant.take()
        live = [m.text for m in of(events.RoomMessage, received)]
        caught_up = [m.text for h in of(events.History, received) for m in h.messages]
        self.assertEqual(of(events.Error, received), [], "nobody is told it failed")
        return live + caught_up

    def test_lost_before_the_turn_ends(self) -> None:
        """
        Redis is lost in the turn a line was said, before it was sent: it
        is said as lines are while cut off (this node's users see it, its
        sender gets their copy), never called failed.
        """
        carol, _ = self.a.user("carol")
        self.a.hub.execute(self.ua, Say("just in time", client_id="c-t"))
        self.a.link.go_down()
        self.turn()
        received = self.alice.take()
        self.assertEqual(of(events.Error, received), [])
        acks = [m.client_id for m in of(events.RoomMessage, received)]
        self.assertEqual(acks, ["c-t"])
        self.assertEqual(
            [m.text for m in of(events.RoomMessage, carol.take())], ["just in time"]
        )
        self.assertNotIn("tchat:room:#lobby:log", self.redis.streams, "never sent")

    def test_said_during_resync(self) -> None:
        """
        A line in flight while its node resynchronises is shown to the
        room in the catch-up, and its bus copy comes after the room was
        recorded past it: its sender is still given their own copy (the
        acknowledgement their client waits for), once.
        """
        self.a.link.hold()
        self.a.hub.execute(self.ua, Say("mid-resync", client_id="c-r"))
        self.turn()
        self.a.cluster.resync()
        self.a.link.release()
        received = self.alice.take()
        acks = [m for m in of(events.RoomMessage, received) if m.client_id == "c-r"]
        self.assertEqual([m.text for m in acks], ["mid-resync"], received)
        self.assertEqual(of(events.Error, received), [])
        self.assertEqual(self.texts(self.bob), ["mid-resync"])
        self.a.link.hold()
        self.a.link.release()
        self.advance(CHECK_AFTER * 2)
        self.assertEqual(of(events.RoomMessage, self.alice.take()), [], "once")

    def test_answer_lost_message_heard(self) -> None:
        """
        Said by Redis, its answer lost but the message heard on the bus:
        everyone sees it once, the sender is not told it failed.
        """
        self.a.link.lose_answers(executed=True)
        self.a.hub.execute(self.ua, Say("did it go?", client_id="c-1"))
        self.a.link.lose_answers(None)
        self.assertEqual(self.texts(self.alice), ["did it go?"])
        self.assertEqual(self.texts(self.bob), ["did it go?"])
        self.assertEqual(self.a.cluster.outbox.unsure, {})

    def test_said_while_unheard(self) -> None:
        """
        Said by Redis while neither its answer nor the bus reached the
        sender's node: once back, the node finds it said (its stamp is in
        the room's stream) and shows it in the catch-up, without saying it
        again.
        """
        self.a.link.hearing = False
        self.a.link.lose_answers(executed=True)
        self.a.hub.execute(self.ua, Say("in the dark"))
        self.turn()
        self.assertEqual(len(self.a.cluster.outbox.unsure), 1)
        self.assertEqual(self.a.cluster.health().stats["cluster"]["unconfirmed"], 1)
        self.a.link.go_down()
        self.a.link.lose_answers(None)
        self.a.link.hearing = True
        self.a.link.come_up()
        self.assertEqual(self.texts(self.alice), ["in the dark"])
        self.assertEqual(self.texts(self.bob), ["in the dark"])
        self.assertEqual(self.a.cluster.outbox.unsure, {})
        self.assertEqual(
            len(self.redis.streams["tchat:room:#lobby:log"]), 1, "said once"
        )

    def test_not_said_is_sent_again(self) -> None:
        """
        Lost before Redis ran it: once back, the node finds it was not said
        and sends it again; everyone sees it once.
        """
        self.a.link.lose_answers(executed=False)
        self.a.hub.execute(self.ua, Say("second chance"))
        self.turn()
        self.a.link.go_down()
        self.a.link.lose_answers(None)
        self.everyone(self.alice)
        self.a.link.come_up()
        self.assertEqual(self.texts(self.alice), ["second chance"])
        self.assertEqual(self.texts(self.bob), ["second chance"])

    def test_in_doubt_while_redis_answers(self) -> None:
        """
        A message whose answer is lost while Redis stays reachable (its
        connection broke and came back between two heartbeats, or it was in
        flight while the node resynchronised) does not wait for the next
        outage: the node checks on it a moment later, and everyone sees it
        once.
        """
        self.a.link.hearing = False
        self.a.link.lose_answers(executed=False)
        self.a.hub.execute(self.ua, Say("no outage", client_id="c-9"))
        self.turn()
        self.a.link.lose_answers(None)
        self.a.link.hearing = True
        self.assertEqual(len(self.a.cluster.outbox.unsure), 1)
        self.assertEqual(self.texts(self.alice), [], "not yet known")
        self.advance(CHECK_AFTER)
        (copy,) = of(events.RoomMessage, self.alice.take())
        self.assertEqual((copy.text, copy.client_id), ("no outage", "c-9"))
        self.assertEqual(self.texts(self.bob), ["no outage"])
        self.assertEqual(self.a.cluster.outbox.unsure, {})
        self.assertEqual(len(self.redis.streams["tchat:room:#lobby:log"]), 1)

    def test_in_doubt_said_while_redis_answers(self) -> None:
        """
        Said, but neither its answer nor its copy on the bus reached the
        sender's node, with no outage: the check finds it in the stream and
        acknowledges it without saying it twice.
        """
        self.a.link.hearing = False
        self.a.link.lose_answers(executed=True)
        self.a.hub.execute(self.ua, Say("heard by bob", client_id="c-10"))
        self.a.link.lose_answers(None)
        self.a.link.hearing = True
        self.assertEqual(self.texts(self.bob), ["heard by bob"])
        self.advance(CHECK_AFTER)
        received = self.alice.take()
        self.assertEqual(
            [(m.text, m.client_id) for m in of(events.RoomMessage, received)],
            [("heard by bob", "c-10")],
        )
        self.assertEqual(self.a.cluster.outbox.unsure, {})
        self.assertEqual(len(self.redis.streams["tchat:room:#lobby:log"]), 1)
        self.assertEqual(self.texts(self.bob), [], "bob saw it once")

    def test_settled_after_a_failed_resync(self) -> None:
        """
        When Redis answers again but fails while the node looks for its
        messages in doubt (still loading after a restart, say), they are
        not dropped: the node tries again, and everyone sees the message
        once.
        """
        self.a.link.lose_answers(executed=False)
        self.a.hub.execute(self.ua, Say("try, try again"))
        self.turn()
        self.a.link.go_down()
        self.a.link.lose_answers(None)
        self.everyone(self.alice)
        command, refused = self.redis.command, list[tuple[Any, ...]]()

        def loading(*args: Any) -> Any:
            if args[0] == "XRANGE" and not refused:
                refused.append(args)
                raise txredisapi.ResponseError("LOADING Redis is loading")
            return command(*args)

        self.redis.command = loading  # type: ignore[method-assign]
        self.a.link.come_up()
        self.assertEqual(len(refused), 1)
        self.assertEqual(len(self.redis.errors), 1)  # the refusal, as planned
        self.redis.errors.clear()
        self.assertEqual(len(self.a.cluster.outbox.unsure), 1, "still in doubt")
        self.advance(2)
        self.assertEqual(self.texts(self.alice), ["try, try again"])
        self.assertEqual(self.texts(self.bob), ["try, try again"])
        self.assertEqual(self.a.cluster.outbox.unsure, {})

    def test_too_late_to_tell(self) -> None:
        """
        When the room moved on past what Redis keeps before the node could
        look, the sender is told it cannot be known whether their message
        was shown, rather than having it shown twice.
        """
        self.a.link.hearing = False
        self.a.link.lose_answers(executed=True)
        self.a.hub.execute(self.ua, Say("lost in the crowd", client_id="c-9"))
        self.turn()
        self.a.link.go_down()
        self.a.link.lose_answers(None)
        self.a.link.hearing = True
        for n in range(self.history.keep + 5):
            self.b.hub.execute(self.ub, Say(f"crowd {n}"))
        self.everyone(self.alice)
        self.a.link.come_up()
        errors = of(events.Error, self.alice.take())
        self.assertEqual(
            [(e.code, e.client_id) for e in errors], [("unconfirmed", "c-9")]
        )


class RedisRestartTests(ClusterTestCase):
    """
    Redis restarts, losing some or all of what it had: no message is lost
    without a word, and an (epoch, id) never names two messages (issue 19).
    """

    def setUp(self) -> None:
        super().setUp()
        self.alice, self.ua = self.a.user("alice")
        self.bob, self.ub = self.b.user("bob")
        for n in range(3):
            self.a.hub.execute(self.ua, Say(f"before {n}"))
        self.seen: dict[tuple[int, int], str] = {}
        self.note(self.alice, self.bob)

    def note(self, *participants: FakeParticipant) -> list[str]:
        """
        Check that no (epoch, id) the participants were shown names two
        messages; what they were shown.
        """
        texts = []
        for participant in participants:
            received = participant.take()
            self.assertEqual(of(events.Error, received), [])
            messages = [
                m
                for e in received
                for m in (e.messages if isinstance(e, events.History) else (e,))
                if isinstance(m, events.RoomMessage)
            ]
            for m in messages:
                self.assertEqual(self.seen.setdefault((m.epoch, m.id), m.text), m.text)
                texts.append(m.text)
        return texts

    def test_empty_restart_message_before_room(self) -> None:
        """
        Redis restarts empty, and B's first message reaches it before any
        node has recorded the room again: the message is not numbered in a
        room made up on the spot (where both nodes would drop it as seen):
        B records the room (in a fresh epoch, after the ids already used)
        and sends it again.  Everyone gets it once.
        """
        self.redis.restart(persisted=False)
        self.a.link.go_down()
        self.b.link.go_down()
        self.b.link.hold()
        self.b.link.come_up()
        self.b.hub.execute(self.ub, Say("first after"))
        self.b.link.release()
        self.a.link.come_up()
        self.assertEqual(self.note(self.bob), ["first after"])
        self.assertEqual(self.note(self.alice), ["first after"])
        lobby = self.b.hub.directory.rooms["#lobby"]
        self.assertEqual(lobby.last_id, 4, "ids go on after those used")
        self.a.hub.execute(self.ua, Say("and on"))
        self.assertEqual(self.note(self.alice, self.bob), ["and on", "and on"])

    def test_stale_restart(self) -> None:
        """
        Redis restarts from a copy that lost its latest writes: the room
        goes on in a fresh epoch after the highest id any node saw, so the
        ids it lost are not handed out again under the old epoch.
        """
        self.redis.restart(persisted=True)
        self.redis.hashes["tchat:room:#lobby"]["last_id"] = "1"
        for node in (self.a, self.b):
            node.link.go_down()
        self.b.link.come_up()
        self.b.hub.execute(self.ub, Say("after"))
        self.a.link.come_up()
        self.a.hub.execute(self.ua, Say("again"))
        self.assertEqual(self.note(self.bob), ["after", "again"])
        self.assertEqual(self.note(self.alice), ["after", "again"])
        lobby = self.a.hub.directory.rooms["#lobby"]
        self.assertEqual([e for e, _ in lobby.lineage][-1], lobby.epoch)
        self.assertEqual(lobby.lineage[-1][1], 4)


class RoomLifeTests(ClusterTestCase):
    """
    Rooms nobody is in go away, at once or after C{room_ttl}; nodes keep
    only the rooms their users are in; C{/rooms} costs a page (issue 19).
    """

    history = HistoryConfig(
        path=":memory:", keep=50, replay=5, resume_ttl=3600, room_ttl=600
    )

    def setUp(self) -> None:
        super().setUp()
        self.alice, self.ua = self.a.user("alice")
        self.bob, self.ub = self.b.user("bob")

    def test_unused_room_goes(self) -> None:
        """
        A room where nothing was said is deleted once its last member
        leaves, topic and all; each node forgets it too.
        """
        self.a.hub.execute(self.ua, Join("#tmp"))
        self.a.hub.execute(self.ua, SetTopic("passing through"))
        self.b.hub.execute(self.ub, Join("#tmp"))
        self.a.hub.execute(self.ua, Part("#tmp"))
        self.assertIn("tchat:room:#tmp", self.redis.hashes)
        self.b.hub.execute(self.ub, Part("#tmp"))
        self.assertNotIn("tchat:room:#tmp", self.redis.hashes)
        self.assertNotIn("#tmp", self.redis.zsets.get("tchat:roomindex", {}))
        for node in (self.a, self.b):
            self.assertNotIn("#tmp", node.hub.directory.rooms)

    def test_quiet_room_expires(self) -> None:
        """
        A room with history that nobody is in expires after C{room_ttl}
        unless someone joins it; nodes keep none of it meanwhile, and a
        join there replays its latest messages from Redis.
        """
        self.a.hub.execute(self.ua, Join("#keep"))
        self.a.hub.execute(self.ua, Say("remember me"))
        self.a.hub.execute(self.ua, Part("#keep"))
        self.assertEqual(self.redis.command("TTL", "tchat:room:#keep"), 600)
        self.assertNotIn("#keep", self.a.hub.directory.rooms)
        self.assertNotIn("#keep", self.b.hub.directory.rooms)
        self.bob.take()
        self.b.hub.execute(self.ub, Join("#keep"))
        (replay,) = of(events.History, self.bob.take())
        self.assertEqual([m.text for m in replay.messages], ["remember me"])
        self.assertEqual(self.redis.command("TTL", "tchat:room:#keep"), -1)
        self.b.hub.execute(self.ub, Part("#keep"))
        self.advance(601)
        self.assertEqual(self.redis.command("EXISTS", "tchat:room:#keep"), 0)
        self.assertEqual(self.redis.command("EXISTS", "tchat:room:#keep:log"), 0)
        carol, uc = self.b.user("carol")  # everyone else timed out meanwhile
        self.b.hub.execute(uc, Rooms())
        (listing,) = of(events.RoomList, carol.take())
        self.assertEqual([r.name for r in listing.rooms], ["#lobby"])
        self.assertNotIn("#keep", self.redis.zsets["tchat:roomindex"])

    def test_dead_node_empties_rooms(self) -> None:
        """
        Rooms left empty when a dead node's users are buried go as when
        they leave.
        """
        self.a.hub.execute(self.ua, Join("#only-a"))
        self.a.link.go_down()
        self.a.link.stop()
        self.advance(2 * NODE_TIMEOUT)
        self.assertNotIn("tchat:room:#only-a", self.redis.hashes)

    def test_rooms_paged(self) -> None:
        """
        C{/rooms} on a cluster with more rooms than a page lists one page,
        by key, with the total: its cost does not grow with the rooms.
        """
        self.a.hub.settings.limits = LimitsConfig(
            max_rooms_per_user=0, joins_per_minute=0
        )
        for n in range(ROOMS_PAGE + 20):
            self.a.hub.execute(self.ua, Join(f"#r{n:03}"))
        self.bob.take()
        self.b.hub.execute(self.ub, Rooms(2))
        (listing,) = of(events.RoomList, self.bob.take())
        self.assertEqual(
            (listing.page, listing.pages, listing.total), (2, 2, ROOMS_PAGE + 21)
        )
        self.assertEqual(
            [r.name for r in listing.rooms][:2], [f"#r{ROOMS_PAGE - 1:03}", "#r100"]
        )
        self.assertEqual(len(listing.rooms), 21)


class StallTests(SynchronousTestCase):
    """
    L{RedisLink} notices a Redis that stops answering (issue 19).
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.states: list[bool] = []
        self.link = RedisLink(
            cast(Any, None),
            "a",
            self.clock,
            lambda event: None,
            self.states.append,
            stall_after=2.0,
        )
        self.answers: list[Deferred[Any]] = []
        self.transports = [StringTransport(), StringTransport()]
        link = self.link

        class Commands:
            def execute_command(_, *args: Any) -> Deferred[Any]:
                self.answers.append(Deferred())
                return self.answers[-1]

        class Factory:
            def __init__(self, transport: StringTransport) -> None:
                self.pool = [type("Connection", (), {"transport": transport})()]

        link._commands = Commands()
        link._factories = [Factory(t) for t in self.transports]
        link._watch.start(0.5, now=False)
        link._changed(True)

    def tearDown(self) -> None:
        if self.link._watch.running:
            self.link._watch.stop()

    def test_stuck(self) -> None:
        """
        A command without an answer for longer than C{stall_after}: the
        link drops its connections and counts as down, and says why.
        """
        self.link.command("PING")
        self.clock.pump([0.5] * 4)
        self.assertEqual((self.states, self.link.stalls), ([True], 0))
        self.clock.advance(0.5)
        self.assertEqual((self.states, self.link.stalls), ([True, False], 1))
        self.assertTrue(all(t.disconnecting for t in self.transports))
        self.assertFalse(self.link.up)

    def test_slow_but_answering(self) -> None:
        """
        Answers that keep coming, however many commands wait, are no stall.
        """
        for _ in range(10):
            self.link.command("PING")
            self.clock.advance(0.5)
            self.answers.pop(0).callback("PONG")
        self.assertEqual((self.states, self.link.stalls), ([True], 0))

    def test_idle(self) -> None:
        """Nothing asked, nothing awaited: no stall, however long."""
        self.clock.pump([0.5] * 100)
        self.assertEqual(self.link.stalls, 0)

    def test_this_process_was_stuck(self) -> None:
        """
        When the check itself ran late (this process was busy, and the
        answer may be waiting to be read), it looks again before deciding.
        """
        self.link.command("PING")
        self.clock.advance(5)
        self.assertEqual(self.link.stalls, 0)
        self.answers[0].callback("PONG")
        self.clock.advance(0.5)
        self.assertEqual(self.link.stalls, 0)


class OrderTests(ClusterTestCase):
    """
    A user's commands take effect in the order sent, even when one waits
    on Redis.
    """

    def test_rename_then_message(self) -> None:
        """
        A classic client's first frame (a name and a message) is shown on
        the other node as the rename, then the message under the new name,
        though the nick claim is still on its way to Redis when the message
        arrives.
        """
        reader, _ = self.b.user("reader")
        wes_p, wes = self.a.connect(door="web")
        guest = wes.nick
        self.everyone(reader, wes_p)
        self.a.link.hold()
        self.a.hub.execute(wes, Nick("wes"), "c1")
        self.a.hub.execute(wes, Say("hello"), "c1")
        self.assertEqual(reader.take(), [])
        self.a.link.release()
        self.a.link.release()
        seen = [
            e
            for e in reader.take()
            if isinstance(e, events.RoomMessage)
            or (isinstance(e, events.Presence) and e.kind == "nick")
        ]
        self.assertEqual(
            [(type(e).__name__, e.nick) for e in seen],
            [("Presence", guest), ("RoomMessage", "wes")],
        )


class RetryTests(ClusterTestCase):
    """
    A client's retry of a tagged message, reaching another node.
    """

    def test_retry_elsewhere(self) -> None:
        """
        A message resent (same client tag) through another node after a
        reconnection is not said twice: the sender gets the first one
        back as its acknowledgement, and nobody else sees it again.
        """
        old, ua = self.a.user("alice", "web")
        bob, _ = self.b.user("bob")
        self.a.hub.execute(ua, Say("only once", client_id="c-1"))
        (first,) = of(events.RoomMessage, old.take())
        self.assertEqual(of(events.RoomMessage, bob.take()), [first])
        back, ub = self.b.connect(door="web")
        self.b.hub.execute(ub, Resume(ua.code))
        back.take()
        bob.take()
        self.b.hub.execute(ub, Say("only once", client_id="c-1"))
        self.assertEqual(of(events.RoomMessage, back.take()), [first])
        self.assertEqual(of(events.RoomMessage, bob.take()), [])


class StopTests(ClusterTestCase):
    """
    A node shut down cleanly.
    """

    def test_stop(self) -> None:
        """
        The other node's users see a stopped node's users quit because the
        server is shutting down (not lost later), and their nicks are free.
        """
        _, ua = self.a.user("alice")
        bob, ub = self.b.user("bob")
        self.successResultOf(self.a.hub.stop(grace=0))
        (gone,) = of(events.Presence, bob.take())
        self.assertEqual(
            (gone.kind, gone.nick, gone.reason),
            ("quit", "alice", "server shutting down"),
        )
        self.assertFalse(self.a.link.up)
        self.advance(3 * NODE_TIMEOUT)
        self.assertEqual(bob.take(), [])
        self.b.hub.execute(ub, Nick("alice"))
        self.assertEqual(ub.nick, "alice")


class WithoutClusterTests(SynchronousTestCase):
    """
    Without C{[cluster]}, tchat is the embedded server, unchanged.
    """

    def test_embedded_imports_no_cluster(self) -> None:
        """
        The embedded server never imports the cluster's code nor
        C{txredisapi}.
        """
        out, err = _PROBE.communicate(timeout=60)
        self.assertEqual((_PROBE.returncode, err), (0, ""))
        self.assertEqual(out.split(), ["False", "False"])


class AdminTests(ClusterTestCase):
    """
    The admin door reports the cluster's state.
    """

    def test_health(self) -> None:
        """
        C{/healthz} answers 200 with the cluster ok while Redis answers, and
        503 "degraded" with the cluster unreachable while it does not.
        """
        site = make_admin_site(self.a.hub, self.clock)
        code, _, body = request(site, b"/healthz")
        self.assertEqual(
            (code, json.loads(body)),
            (200, {"status": "ok", "checks": {"hub": "ok", "cluster": "ok"}}),
        )
        self.a.link.go_down()
        code, _, body = request(site, b"/healthz")
        self.assertEqual(
            (code, json.loads(body)),
            (
                503,
                {
                    "status": "degraded",
                    "checks": {"hub": "ok", "cluster": "unreachable"},
                },
            ),
        )

    def test_metrics(self) -> None:
        """
        C{tchat_cluster_up} is 1 while Redis answers and 0 while it does not;
        outages are counted.
        """
        site = make_admin_site(self.a.hub, self.clock)

        def scrape() -> Scrape:
            code, _, body = request(site, b"/metrics")
            self.assertEqual(code, 200)
            return Scrape(body.decode("utf-8"))

        self.assertEqual(scrape().value("tchat_cluster_up"), 1)
        self.a.link.go_down()
        found = scrape()
        self.assertEqual(found.value("tchat_cluster_up"), 0)
        self.assertEqual(found.value("tchat_cluster_outages_total"), 1)


class AccountTests(ClusterTestCase):
    """
    Accounts live in Redis: registered on one node, they hold on every node.
    """

    def register(self, node: Node, nick: str) -> tuple[FakeParticipant, User]:
        participant, user = node.user(nick)
        node.hub.execute(user, Register("password1"))
        self.assertTrue(user.registered, participant.received)
        participant.take()
        return participant, user

    def test_protected_on_every_node(self) -> None:
        """
        A nick registered on A cannot be taken on B, online or offline, and
        B's /who marks its owner registered.
        """
        alice, ua = self.register(self.a, "alice")
        bob, ub = self.b.user("bob")
        self.b.hub.execute(ub, WhoIs(None))
        (who,) = of(events.Who, bob.take())
        self.assertIn(events.Member("alice", "telnet", True), who.members)
        self.a.hub.execute(ua, Quit(None))
        self.b.hub.execute(ub, Nick("alice"))
        (error,) = of(events.Error, bob.take())
        self.assertEqual(error.code, "nick-registered")
        self.assertEqual(ub.nick, "bob")

    def test_login_on_another_node_takes_over(self) -> None:
        """
        Logging in on B while a connection on A holds the nick closes the
        one on A; B's user becomes alice, logged in.
        """
        alice, ua = self.register(self.a, "alice")
        there, uc = self.b.connect()
        self.b.hub.execute(uc, Login("alice", "password1"))
        self.assertEqual((uc.nick, uc.registered), ("alice", True))
        self.assertFalse(ua.connected)
        self.assertTrue(alice.closed)
        (goodbye,) = of(events.Goodbye, alice.take())
        self.assertEqual(goodbye.reason, "logged in as alice from another connection")
        told = there.take()
        (login,) = of(events.LoggedIn, told)
        self.assertEqual(login.name, "alice")
        # The new alice is not told she quit, and both nodes list her.
        self.assertEqual([p for p in of(events.Presence, told) if p.kind == "quit"], [])
        carol, uca = self.a.user("carol")
        for node, participant, user in ((self.a, carol, uca), (self.b, there, uc)):
            node.hub.execute(user, WhoIs(None))
            (who,) = of(events.Who, participant.take())
            self.assertIn(events.Member("alice", "telnet", True), who.members)

    def test_offline_message_across_nodes(self) -> None:
        """
        A private message sent on B to alice, registered on A and offline,
        is kept in Redis and given to her when she logs in on A again.
        """
        alice, ua = self.register(self.a, "alice")
        self.a.hub.execute(ua, Quit(None))
        bob, ub = self.b.user("bob")
        self.b.hub.execute(ub, Msg("alice", "see you at six"))
        (status,) = of(events.Status, bob.take())
        self.assertIn("alice is offline: your message is kept", status.text)
        back, ua2 = self.a.connect()
        self.a.hub.execute(ua2, Login("alice", "password1"))
        (kept,) = of(events.PrivateMessage, back.take())
        self.assertEqual(
            (kept.sender, kept.text, kept.offline), ("bob", "see you at six", True)
        )
