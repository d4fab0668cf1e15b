# -*- test-case-name: tests.test_cluster -*-
"""
Several tchat nodes that behave as one chat, through one Redis.

Only imported when C{[cluster] redis} is set: the embedded server never
loads it, nor C{txredisapi}.

Every node keeps two connections to Redis, both reconnecting with backoff:
one for commands and one subscribed to the cluster's bus channel.

  - Room messages are numbered, kept (a capped stream per room) and
    published by one Lua script, so every node delivers every room's
    messages with the same ids and in the same order: the order in which
    Redis ran the scripts.  The sender's node, too, delivers them from the
    bus.
  - Everything else that crosses nodes (presence, topics, notices, private
    messages, operator actions) is published on the bus by the node where
    it happened, after that node has told its own users.
  - Nicks are claimed with an expiry in Redis, refreshed by each node's
    heartbeat.  A node whose heartbeat stops is buried by the first node
    that notices: its users are shown as lost and its nicks freed.
  - Membership (for C{/who} and C{/rooms}) lives in Redis hashes.

While Redis cannot be reached, each node serves its own users alone (see
C{docs/cluster.md}); when it comes back, the node re-registers its users
and rooms and sends its users what the other nodes said meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import asdict, fields
from typing import TYPE_CHECKING, Any

import txredisapi  # type: ignore[import-untyped]
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from tchat import events
from tchat.config import ClusterConfig
from tchat.palette import PALETTE, Colour
from tchat.text import room_key

if TYPE_CHECKING:
    from tchat.hub import ChatFactory, Room, User

_log = Logger()

OUTAGE = (
    "the cluster is unreachable: until it is back you chat only with people "
    "on this server"
)
"""What each user is told, once, when this node loses Redis."""
BACK = "the cluster is back: you chat with everyone again"
"""...and when it has it again."""


class ClusterDownError(ConnectionError):
    """Redis cannot be reached now: the request was not sent."""


# -- Lua: each script runs atomically in Redis -------------------------------

#: Number, keep and publish a room message.  A message whose client tag was
#: seen already (a client's retry reaching another node) is not said again:
#: the script answers with the first one's id.
#: KEYS: room hash, stream, tags hash, tags queue, rooms index.
#: ARGV: channel, messages kept, tag ("" for none), room name, message JSON
#: (without id and epoch), epoch for a new room, room key.
SAY = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[6]
  redis.call('HSET', KEYS[1], 'name', ARGV[4], 'epoch', epoch,
    'lineage', '[[' .. epoch .. ',1]]')
  redis.call('HSET', KEYS[5], ARGV[7], ARGV[4])
end
if ARGV[3] ~= '' then
  local prior = redis.call('HGET', KEYS[3], ARGV[3])
  if prior then return {0, tonumber(prior), epoch} end
end
local id = redis.call('HINCRBY', KEYS[1], 'last_id', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], id .. '-1', 'e', epoch,
  'm', ARGV[5])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[3], id)
  redis.call('RPUSH', KEYS[4], ARGV[3])
  if redis.call('LLEN', KEYS[4]) > tonumber(ARGV[2]) then
    redis.call('HDEL', KEYS[3], redis.call('LPOP', KEYS[4]))
  end
end
redis.call('PUBLISH', ARGV[1], '{"t":"msg","room":' .. cjson.encode(ARGV[4]) ..
  ',"id":' .. id .. ',"e":' .. epoch .. ',"m":' .. ARGV[5] .. '}')
return {1, id, epoch}
"""

#: Make sure a room exists, as this node knows it; answer how it is.  A
#: room Redis lost (a restart without persistence) is created again from
#: this node's view, in the new epoch the node proposes.
#: KEYS: room hash, rooms index.
#: ARGV: name, key, epoch, lineage JSON, last id, topic, topic's author,
#: and the last id this node had from the cluster: an existing room's
#: counter is raised to it (after a restart, the node that created the room
#: again may have seen fewer messages than another).
ROOM = """
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[3]) == 1 then
  redis.call('HSET', KEYS[1], 'name', ARGV[1], 'lineage', ARGV[4],
    'last_id', ARGV[5])
  if ARGV[6] ~= '' then
    redis.call('HSET', KEYS[1], 'topic', ARGV[6], 'topic_by', ARGV[7])
  end
elseif tonumber(redis.call('HGET', KEYS[1], 'last_id') or '0') < tonumber(ARGV[8]) then
  redis.call('HSET', KEYS[1], 'last_id', ARGV[8])
end
redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[1])
return redis.call('HMGET', KEYS[1], 'name', 'epoch', 'lineage', 'last_id',
  'topic', 'topic_by')
"""

#: Claim a nick.  Answers {1, ""} when claimed (or already this owner's),
#: {2, old owner} when taken over from the same session on another
#: connection (a resume), {0, owner} when someone else has it.
#: KEYS: the nick's key.  ARGV: owner ("node code"), expiry (ms), code.
CLAIM = """
local v = redis.call('GET', KEYS[1])
if not v or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, ''}
end
local space = string.find(v, ' ', 1, true)
if ARGV[3] ~= '' and space and string.sub(v, space + 1) == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {2, v}
end
return {0, v}
"""

#: Release a nick, if this owner still has it.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

#: A node's heartbeat: note it is alive, renew its users' nick claims
#: (claiming again those Redis forgot), and bury nodes silent too long:
#: their users are taken out of every room and their nicks freed.
#: ARGV: prefix, node, node timeout (ms), nick expiry (ms), then
#: (nick key, owner) pairs.
#: Answers {nicks this node lost to others, whether this node had been
#: buried (it was cut off too long), the buried nodes' users as JSON
#: [nick, door, room keys, owner]}.
HEARTBEAT = """
local p, node = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', p .. ':nodes', now, node)
local was_buried = redis.call('DEL', p .. ':buried:' .. node)
local lost = {}
for i = 5, #ARGV, 2 do
  local key = p .. ':nick:' .. ARGV[i]
  local v = redis.call('GET', key)
  if not v or v == ARGV[i + 1] then
    redis.call('SET', key, ARGV[i + 1], 'PX', ARGV[4])
  else
    table.insert(lost, ARGV[i])
  end
end
local buried = {}
local old = redis.call('ZRANGEBYSCORE', p .. ':nodes', '-inf',
  now - tonumber(ARGV[3]))
for _, name in ipairs(old) do
  redis.call('ZREM', p .. ':nodes', name)
  local ukey = p .. ':users:' .. name
  local users = redis.call('HGETALL', ukey)
  for j = 1, #users, 2 do
    local u = cjson.decode(users[j + 1])
    for _, r in ipairs(u[3]) do
      redis.call('HDEL', p .. ':who:' .. r, users[j])
    end
    local nk = p .. ':nick:' .. users[j]
    if redis.call('GET', nk) == u[4] then redis.call('DEL', nk) end
    table.insert(buried, users[j + 1])
  end
  redis.call('DEL', ukey)
  redis.call('SET', p .. ':buried:' .. name, '1', 'EX', 86400)
end
return {lost, was_buried, buried}
"""

#: Who has a nick: {node, nick as they spell it}, or nil.
#: KEYS: the nick's key.  ARGV: prefix, nick key.
WHERE = """
local v = redis.call('GET', KEYS[1])
if not v then return false end
local node = string.sub(v, 1, (string.find(v, ' ', 1, true) or (#v + 1)) - 1)
local user = redis.call('HGET', ARGV[1] .. ':users:' .. node, ARGV[2])
if not user then return {node, ''} end
return {node, cjson.decode(user)[1]}
"""

#: Every room, with its member count and topic: C{/rooms}.
ROOMS = """
local p = ARGV[1]
local rooms = redis.call('HGETALL', p .. ':rooms')
local out = {}
for i = 1, #rooms, 2 do
  local topic = redis.call('HGET', p .. ':room:' .. rooms[i], 'topic')
  table.insert(out, {rooms[i + 1], redis.call('HLEN', p .. ':who:' .. rooms[i]),
    topic or ''})
end
return out
"""


# -- the bus's encoding of events ------------------------------------------

_SHARED: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        events.Presence,
        events.TopicChanged,
        events.Notice,
        events.PrivateMessage,
        events.Status,
    )
}


def encode_event(event: Any) -> dict[str, Any]:
    """
    An event other nodes deliver, as JSON-ready values.
    """
    out: dict[str, Any] = {"k": type(event).__name__}
    for f in fields(event):
        value = getattr(event, f.name)
        out[f.name] = value.name if isinstance(value, Colour) else value
    return out


def decode_event(data: dict[str, Any]) -> Any:
    """
    The event L{encode_event} encoded.

    @raise ValueError: If it is not one.
    """
    cls = _SHARED.get(data.get("k", ""))
    if cls is None:
        raise ValueError(f"not a shared event: {data.get('k')!r}")
    values = {}
    for f in fields(cls):
        if f.name in data:
            value = data[f.name]
            if f.name.endswith("colour"):
                value = PALETTE.get(value, next(iter(PALETTE.values())))
            values[f.name] = value
    return cls(**values)


def message_fields(message: events.RoomMessage) -> dict[str, Any]:
    """A room message as kept in its stream (without id and epoch)."""
    return {
        "ts": message.ts,
        "nick": message.nick,
        "door": message.door,
        "colour": message.colour.name,
        "text": message.text,
        "action": message.action,
        "client_id": message.client_id,
    }


def message_from(
    room: str, id: int, epoch: int, data: dict[str, Any]
) -> events.RoomMessage:
    """A room message from its stream entry or bus event."""
    return events.RoomMessage(
        room,
        id,
        float(data["ts"]),
        str(data["nick"]),
        str(data["door"]),
        PALETTE.get(data.get("colour", ""), next(iter(PALETTE.values()))),
        str(data["text"]),
        bool(data.get("action")),
        data.get("client_id") or None,
        epoch,
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# -- the connections -----------------------------------------------------------


def _no_delay(transport: Any) -> None:
    """
    Turn Nagle's algorithm off: every message is a small write that must go
    at once, not wait for the previous one's acknowledgement.
    """
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        with suppress(OSError):  # not TCP (a unix socket)
            set_no_delay(True)


class _Commands(txredisapi.RedisProtocol):  # type: ignore[misc]
    """The command connection."""

    def connectionMade(self) -> Any:
        _no_delay(self.transport)
        return super().connectionMade()


class _BusSubscriber(txredisapi.SubscriberProtocol):  # type: ignore[misc]
    """The subscribed connection: hands what the bus carries to the link."""

    link: RedisLink

    def connectionMade(self) -> Any:
        _no_delay(self.transport)
        d = super().connectionMade()
        if isinstance(d, Deferred):
            d.addCallback(lambda _: self._subscribe())
        else:
            self._subscribe()
        return d

    def _subscribe(self) -> None:
        if not self.connected:
            return
        self.subscribe(self.link.channel).addCallbacks(
            lambda _: self.link._changed(True), self.link._failed
        )

    def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
        try:
            event = json.loads(message)
        except (TypeError, ValueError):
            _log.warn("cluster: ignored a bus message that is not JSON")
            return
        try:
            self.link.on_event(event)
        except Exception:
            _log.failure("cluster: handling a bus message")

    def connectionLost(self, why: Failure) -> None:
        super().connectionLost(why)
        self.link._changed(False)


class RedisLink:
    """
    One node's connections to Redis, and the commands the cluster uses.

    @ivar up: Whether the bus subscription is live, so that what other
        nodes say arrives; commands are refused with L{ClusterDownError} while
        it is not.
    """

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        node: str,
        on_event: Callable[[dict[str, Any]], None],
        on_state: Callable[[bool], None],
        prefix: str = "tchat",
        password: str | None = None,
        dbid: int | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.node = node
        self.on_event = on_event
        self.on_state = on_state
        self.prefix = prefix
        self.channel = f"{prefix}:bus"
        self.up = False
        self._password = password
        self._dbid = dbid
        self._commands: Any = None
        self._factories: list[Any] = []

    def start(self) -> None:
        """Connect, and keep reconnecting until L{stop}."""
        commands = txredisapi.RedisFactory(
            None,
            self._dbid,
            1,
            isLazy=True,
            password=self._password,
            replyTimeout=10,
            convertNumbers=False,
        )
        commands.protocol = _Commands
        commands.startConnecting(self.endpoint)
        self._commands = commands.handler

        class Subscriber(_BusSubscriber):
            link = self

        bus = txredisapi.RedisFactory(
            None, self._dbid, 1, isLazy=True, password=self._password
        )
        bus.protocol = Subscriber
        for factory in (commands, bus):
            # Back within a few seconds of Redis: 1 s, 2 s, then every 5 s.
            factory.initialDelay, factory.factor, factory.maxDelay = 1.0, 2.0, 5.0
        bus.startConnecting(self.endpoint)
        self._factories = [commands, bus]

    def stop(self) -> Deferred[Any]:
        """Close both connections and stop reconnecting."""
        return gatherResults(
            [f.disconnect() for f in self._factories], consumeErrors=True
        )

    def key(self, *parts: str) -> str:
        """A key of this cluster: the prefix and C{parts}, with colons."""
        return ":".join((self.prefix, *parts))

    def command(self, *args: Any) -> Deferred[Any]:
        """
        Send one command, unless Redis is unreachable (then fail at once
        with L{ClusterDownError} rather than wait for it).
        """
        if not self.up:
            return fail(ClusterDownError())
        d: Deferred[Any] = self._commands.execute_command(*args)
        return d

    def eval(
        self, script: str, keys: Sequence[str], args: Sequence[Any]
    ) -> Deferred[Any]:
        """Run a Lua script (by its hash once Redis knows it)."""
        if not self.up:
            return fail(ClusterDownError())
        d: Deferred[Any] = self._commands.eval(script, list(keys), list(args))
        return d

    def publish(self, event: dict[str, Any]) -> Deferred[Any]:
        """Publish an event to every node, this one included."""
        event["n"] = self.node
        return self.command("PUBLISH", self.channel, _dumps(event))

    def _changed(self, up: bool) -> None:
        if up != self.up:
            self.up = up
            self.on_state(up)

    def _failed(self, why: Failure) -> None:
        _log.warn("cluster: could not subscribe to the bus: {why}", why=why.value)


def link_for(
    config: ClusterConfig,
    reactor: Any,
    on_event: Callable[[dict[str, Any]], None],
    on_state: Callable[[bool], None],
) -> RedisLink:
    """The link C{[cluster]} describes."""
    target = config.target()
    return RedisLink(
        clientFromString(reactor, target.endpoint),
        config.node_name(),
        on_event,
        on_state,
        prefix=config.prefix,
        password=target.password,
        dbid=target.db,
    )


def _logged(what: str) -> Callable[[Failure], None]:
    def log(why: Failure) -> None:
        if why.check(ClusterDownError):
            return
        _log.warn("cluster: {what} failed: {why}", what=what, why=why.value)

    return log


class Cluster:
    """
    The hub's side of the cluster: what it asks of the other nodes, and
    what it does for them.

    @ivar link: The connections to Redis.
    @ivar node: This node's name.
    """

    def __init__(
        self,
        hub: ChatFactory,
        link: RedisLink,
        clock: IReactorTime,
        node_timeout: float = 10.0,
    ) -> None:
        self.hub = hub
        self.link = link
        self.node = link.node
        self.clock = clock
        self.node_timeout = node_timeout
        self.outages = 0
        self.buried = 0
        self._told: set[User] = set()
        self._heartbeat = LoopingCall(self.beat)
        self._heartbeat.clock = clock
        self._resyncing: dict[str, list[dict[str, Any]]] | None = None
        link.on_event = self.received
        link.on_state = self.changed

    @property
    def up(self) -> bool:
        """Whether this node is in touch with the others."""
        return self.link.up

    # -- lifecycle -------------------------------------------------------

    def start(self) -> None:
        """Connect to Redis (and keep reconnecting)."""
        self.link.start()

    def when_up(self, timeout: float) -> Deferred[bool]:
        """
        Fires with C{True} once Redis answers, or C{False} after C{timeout}
        seconds without it.
        """
        if self.up:
            return succeed(True)
        d: Deferred[bool] = Deferred()

        def check() -> None:
            if d.called:
                return
            if self.up or self.clock.seconds() >= deadline:
                d.callback(self.up)
            else:
                self.clock.callLater(0.05, check)

        deadline = self.clock.seconds() + timeout
        check()
        return d

    async def stop(self) -> None:
        """
        Leave the cluster cleanly: this node's users are gone already (the
        hub told the others), so drop the node's heartbeat, then close.
        """
        if self._heartbeat.running:
            self._heartbeat.stop()
        if self.up:
            try:
                await self.link.command("ZREM", self.link.key("nodes"), self.node)
                await self.link.command("DEL", self.link.key("users", self.node))
            except Exception as e:
                _log.warn("cluster: leaving: {error}", error=e)
        await self.link.stop()

    def changed(self, up: bool) -> None:
        """The bus subscription came up or went down."""
        hub = self.hub
        if up:
            _log.info("cluster: connected to Redis as node {node}", node=self.node)
            if not self._heartbeat.running:
                self._heartbeat.start(max(self.node_timeout / 4, 0.5), now=False)
            if hub.ready:
                self.resync()
            return
        if self._heartbeat.running:
            self._heartbeat.stop()
        if hub.stopping:
            return
        self.outages += 1
        _log.warn(
            "cluster: lost Redis; serving this node's users alone until it is "
            "back (reconnecting with backoff)"
        )
        if hub.ready:
            for user in hub.local_users():
                self.tell_outage(user)

    def tell_outage(self, user: User) -> None:
        """Tell C{user}, once per outage, that the cluster is unreachable."""
        if user not in self._told:
            self._told.add(user)
            self.hub.tell(user, events.Status(OUTAGE))

    def forget(self, user: User) -> None:
        """C{user} left."""
        self._told.discard(user)

    # -- heartbeat ---------------------------------------------------------

    def beat(self) -> Deferred[Any]:
        """
        Say this node is alive, renew its users' nicks, and bury the nodes
        that are not.
        """
        args: list[Any] = [
            self.link.prefix,
            self.node,
            int(self.node_timeout * 1000),
            int(self.node_timeout * 1000),
        ]
        for user in self.hub.local_users():
            args += [self.hub.key_of(user), self.owner(user)]
        d = self.link.eval(HEARTBEAT, [], args)
        d.addCallback(self._beaten)
        d.addErrback(_logged("heartbeat"))
        return d

    def _beaten(self, result: list[Any]) -> None:
        lost, was_buried, buried = result
        hub = self.hub
        for key in lost:
            user = hub.user_by_key(key)
            if user is not None:
                hub.nick_lost(user)
        if buried:
            self.buried += 1
            self.link.publish(
                {"t": "lost", "users": [json.loads(u) for u in buried]}
            ).addErrback(_logged("announcing a dead node's users"))
        if int(was_buried):
            # The others took this node for dead (it was cut off too long)
            # and showed its users as lost: they come back into their rooms.
            _log.warn("cluster: the other nodes had taken this node for dead")
            for user in hub.local_users():
                for room in user.rooms:
                    hub.share_presence(user, "join", room)

    def owner(self, user: User) -> str:
        """What a user's nick claim holds: this node and their session."""
        return f"{self.node} {user.code}"

    # -- membership ---------------------------------------------------------

    def register(self, user: User) -> None:
        """Record where C{user} is now: their nick, door and rooms."""
        if not self.up:
            return
        link, key = self.link, self.hub.key_of(user)
        rooms = [self.hub.key_of_room(r) for r in user.rooms]
        link.command(
            "HSET",
            link.key("users", self.node),
            key,
            _dumps([user.nick, user.door, rooms, self.owner(user)]),
        ).addErrback(_logged("recording a user"))
        entry = _dumps([user.nick, user.door, self.node])
        for room in rooms:
            link.command("HSET", link.key("who", room), key, entry).addErrback(
                _logged("recording a member")
            )

    def unregister(self, key: str, rooms: Iterable[str], user: User | None) -> None:
        """
        Forget the member whose nick has the key C{key} in C{rooms}, then
        record C{user} as they are now (C{None}: they left).
        """
        if not self.up:
            return
        link = self.link
        for room in rooms:
            link.command("HDEL", link.key("who", room), key).addErrback(
                _logged("forgetting a member")
            )
        if user is None or self.hub.key_of(user) != key:
            link.command("HDEL", link.key("users", self.node), key).addErrback(
                _logged("forgetting a user")
            )
        if user is not None:
            self.register(user)

    def claim(self, user: User, key: str, takeover: bool = False) -> Deferred[int]:
        """
        Claim the nick whose key is C{key} for C{user}.

        @param takeover: Take it from another connection of the same
            session (a resume), which is then closed.
        @return: Fires with 1 when claimed, 0 when someone else has it;
            fails with L{ClusterDownError} when Redis cannot be reached.
        """
        d = self.link.eval(
            CLAIM,
            [self.link.key("nick", key)],
            [
                self.owner(user),
                int(self.node_timeout * 1000),
                user.code if takeover else "",
            ],
        )

        def claimed(result: list[Any]) -> int:
            outcome, old = int(result[0]), result[1]
            if outcome == 2:
                node, _, code = old.partition(" ")
                self.link.publish({"t": "takeover", "node": node, "code": code})
                return 1
            return outcome

        return d.addCallback(claimed)

    def release(self, key: str, owner: str) -> None:
        """Free a nick this node claimed."""
        if self.up:
            self.link.eval(RELEASE, [self.link.key("nick", key)], [owner]).addErrback(
                _logged("freeing a nick")
            )

    def whereabouts(self, key: str) -> Deferred[tuple[str, str] | None]:
        """
        The node of the user who has the nick with key C{key}, and the nick
        as they spell it (empty if not known yet); C{None} if nobody has it.
        """
        d = self.link.eval(WHERE, [self.link.key("nick", key)], [self.link.prefix, key])
        return d.addCallback(lambda found: (found[0], found[1]) if found else None)

    def who(self, room: str) -> Deferred[list[tuple[str, str]]]:
        """Every member of the room with key C{room}: (nick, door)."""
        d = self.link.command("HGETALL", self.link.key("who", room))

        def members(flat: list[str]) -> list[tuple[str, str]]:
            found = [json.loads(v) for v in flat[1::2]]
            found.sort(key=lambda m: m[0].casefold())
            return [(m[0], m[1]) for m in found]

        return d.addCallback(members)

    def rooms(self) -> Deferred[list[tuple[str, int, str | None]]]:
        """Every room: (name, members, topic)."""
        d = self.link.eval(ROOMS, [], [self.link.prefix])
        return d.addCallback(
            lambda rows: [(str(n), int(c), t or None) for n, c, t in rows]
        )

    # -- rooms and messages ---------------------------------------------------

    def say(
        self, room: Room, message: events.RoomMessage, keep: int
    ) -> Deferred[tuple[bool, int]]:
        """
        Number, keep and publish a room message; it comes back on the bus.

        @return: (whether it is new, its id).
        """
        link, key = self.link, self.hub.key_of_room(room)
        base = link.key("room", key)
        d = link.eval(
            SAY,
            [base, f"{base}:log", f"{base}:tags", f"{base}:tagq", link.key("rooms")],
            [
                link.channel,
                keep,
                message.client_id or "",
                room.name,
                _dumps(message_fields(message)),
                room.epoch,
                key,
            ],
        )
        return d.addCallback(lambda r: (bool(int(r[0])), int(r[1])))

    def ensure(self, room: Room, fresh_epoch: int | None = None) -> Deferred[None]:
        """
        Make sure Redis has C{room} (as this node knows it), then take the
        cluster's view of it: its epoch, lineage, last id and topic.

        @param fresh_epoch: The epoch to propose if Redis lost the room.
        """
        link, key = self.link, self.hub.key_of_room(room)
        lineage = list(room.lineage)
        epoch = room.epoch
        if fresh_epoch is not None:
            epoch = fresh_epoch
            lineage = [*lineage, (fresh_epoch, room.last_id + 1)]
        d = link.eval(
            ROOM,
            [link.key("room", key), link.key("rooms")],
            [
                room.name,
                key,
                epoch,
                _dumps(lineage),
                room.last_id,
                room.topic or "",
                room.topic_by or "",
                room.cluster_id,
            ],
        )

        def adopt(row: list[Any]) -> None:
            _, epoch, lineage, last_id, topic, topic_by = row
            self.hub.adopt_room(
                room,
                int(epoch),
                [tuple(x) for x in json.loads(lineage)],
                int(last_id),
                topic or None,
                topic_by or None,
            )

        return d.addCallback(adopt)

    def read(
        self, key: str, name: str, low: int, high: int, limit: int, newest: bool
    ) -> Deferred[list[events.RoomMessage]]:
        """
        Kept messages of a room with C{low <= id <= high}: the oldest
        C{limit}, or the newest.
        """
        if high < low or limit <= 0:
            return succeed([])
        stream = self.link.key("room", key, "log")
        if newest:
            d = self.link.command(
                "XREVRANGE", stream, f"{high}-1", f"{low}-0", "COUNT", limit
            )
        else:
            d = self.link.command(
                "XRANGE", stream, f"{low}-0", f"{high}-1", "COUNT", limit
            )

        def parsed(entries: list[Any]) -> list[events.RoomMessage]:
            found = []
            for entry_id, flat in entries:
                entry = dict(zip(flat[::2], flat[1::2], strict=False))
                found.append(
                    message_from(
                        name,
                        int(entry_id.partition("-")[0]),
                        int(entry["e"]),
                        json.loads(entry["m"]),
                    )
                )
            if newest:
                found.reverse()
            return found

        return d.addCallback(parsed)

    def share(
        self,
        event: Any,
        rooms: Iterable[str] = (),
        nicks: Iterable[str] = (),
        operators: bool = False,
        everyone: bool = False,
    ) -> None:
        """
        Have the other nodes deliver C{event} to their users in C{rooms}
        (keys), with C{nicks} (keys), their operators or everyone.
        """
        if not self.up:
            return
        self.link.publish(
            {
                "t": "ev",
                "ev": encode_event(event),
                "r": list(rooms),
                "u": list(nicks),
                "o": operators,
                "a": everyone,
            }
        ).addErrback(_logged("sharing an event"))

    def ban_numbers(self, count: int) -> Deferred[list[int]]:
        """C{count} new ban numbers, unique in the cluster."""
        d = self.link.command("INCRBY", self.link.key("ban_id"), count)
        return d.addCallback(
            lambda last: list(range(int(last) - count + 1, int(last) + 1))
        )

    def send(self, kind: str, **values: Any) -> Deferred[Any]:
        """Publish a request or notice of kind C{kind} to every node."""
        return self.link.publish({"t": kind, **values})

    # -- what the bus brings ---------------------------------------------------

    def received(self, event: dict[str, Any]) -> None:
        """One event from the bus."""
        kind = event.get("t")
        if kind == "msg":
            held = self._resyncing
            if held is not None and room_key(event["room"]) in held:
                held[room_key(event["room"])].append(event)
                return
            self._deliver(event)
            return
        if kind == "lost":
            self.hub.bus_lost(event["users"])
            return
        if event.get("n") == self.node:
            return  # this node did it already
        if kind == "ev":
            self.hub.bus_event(
                decode_event(event["ev"]),
                event.get("r", ()),
                event.get("u", ()),
                bool(event.get("o")),
                bool(event.get("a")),
            )
        else:
            self.hub.bus_request(str(kind), event)

    def _deliver(self, event: dict[str, Any]) -> None:
        """Have the hub deliver a room message from the bus."""
        self.hub.bus_message(
            event["room"], int(event["id"]), int(event["e"]), event["m"]
        )

    # -- coming back ---------------------------------------------------------

    def resync(self) -> Deferred[None]:
        """
        Redis is back (or this node just started): register this node's
        rooms and users again, take the cluster's view of every room, and
        send local members what was said while this node was cut off.
        """
        hub = self.hub
        rooms = list(hub.all_rooms())
        holding: dict[str, list[dict[str, Any]]] = {room_key(r.name): [] for r in rooms}
        self._resyncing = holding

        async def resyncing() -> None:
            try:
                await self.beat()
                await hub.load_cluster_rooms()
                for room in rooms:
                    before = (room.cluster_epoch, room.cluster_id)
                    await self.ensure(room, fresh_epoch=hub.new_epoch())
                    await hub.catch_up(room, *before)
                    for event in holding.pop(room_key(room.name), []):
                        self._deliver(event)
                for user in list(hub.local_users()):
                    outcome = await self.claim(user, hub.key_of(user))
                    if not outcome:
                        hub.nick_lost(user)
                    self.register(user)
            except Exception as e:
                _log.warn("cluster: resynchronising after reconnecting: {e}", e=e)
            finally:
                held_rooms, self._resyncing = self._resyncing or {}, None
                for held in held_rooms.values():
                    for event in held:
                        self._deliver(event)
            told, self._told = self._told, set()
            for user in told:
                if user.connected:
                    hub.tell(user, events.Status(BACK))

        return Deferred.fromCoroutine(resyncing())


class RedisStore:
    """
    History in Redis, for cluster mode: the same interface as the embedded
    stores (L{tchat.history.HistoryStore}), shared by every node.

    Room messages are written by L{Cluster.say}'s script, not by
    L{append}: a message is kept before any node shows it.
    """

    observe_write: Callable[[float], None] | None = None
    queued = 0

    def __init__(self, cluster: Cluster, keep: int, resume_ttl: int) -> None:
        self.cluster = cluster
        self.keep = keep
        self.resume_ttl = resume_ttl
        self.description = (
            f"in Redis, shared by the cluster (node {cluster.node}, "
            f"prefix {cluster.link.prefix!r})"
        )

    def reconfigure(self, config: Any) -> None:
        self.keep = config.keep
        self.resume_ttl = config.resume_ttl

    def load(self, now: float) -> Deferred[Any]:
        from tchat.history import Loaded

        async def loading() -> Loaded:
            self.cluster.start()
            if not await self.cluster.when_up(10.0):
                _log.warn(
                    "cluster: Redis did not answer within 10 s: starting alone, "
                    "joining the cluster when it does"
                )
                return Loaded()
            loaded: Loaded = await self.load_all()
            return loaded

        return Deferred.fromCoroutine(loading())

    async def load_all(self) -> Any:
        """Every room (with its latest messages) and ban Redis has."""
        from tchat.history import Ban, Loaded, RoomRecord

        link = self.cluster.link
        loaded = Loaded()
        flat = await link.command("HGETALL", link.key("rooms"))
        for key in flat[::2]:
            row = await link.command(
                "HMGET",
                link.key("room", key),
                "name",
                "epoch",
                "lineage",
                "last_id",
                "topic",
                "topic_by",
            )
            name, epoch, lineage, last_id, topic, topic_by = row
            if not name or not epoch:
                continue
            record = RoomRecord(
                key,
                name,
                int(epoch),
                [tuple(x) for x in json.loads(lineage or "[]")],
                int(last_id or 0),
                max(int(last_id or 0) - self.keep, 0),
                topic or None,
                topic_by or None,
            )
            loaded.rooms.append(record)
        bans = await link.command("HGETALL", link.key("bans"))
        for raw in bans[1::2]:
            data = json.loads(raw)
            loaded.bans.append(Ban(**data))
        return loaded

    def save_room(self, room: Any) -> None:
        link = self.cluster.link
        if not link.up:
            return
        args: list[Any] = ["name", room.name]
        args += ["topic", room.topic or "", "topic_by", room.topic_by or ""]
        link.command("HSET", link.key("room", room.key), *args).addErrback(
            _logged("saving a room")
        )
        link.command("HSETNX", link.key("rooms"), room.key, room.name).addErrback(
            _logged("saving a room")
        )

    def append(self, message: events.RoomMessage, durable: bool) -> None:
        # Said through the cluster, a message is kept by the script that
        # numbers it; said while Redis is unreachable, it cannot be kept.
        return None

    def save_session(self, session: Any) -> None:
        link = self.cluster.link
        if not link.up or not self.resume_ttl:
            return
        data = asdict(session)
        link.command(
            "SET",
            link.key("session", session.code),
            _dumps(data),
            "PX",
            self.resume_ttl * 1000,
        ).addErrback(_logged("saving a resume code"))

    def read(
        self,
        room_key: str,
        after: int = 0,
        upto: int | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> Deferred[list[events.RoomMessage]]:
        hub = self.cluster.hub
        high = upto if upto is not None else 2**62
        if before is not None:
            high = min(high, before - 1)
        return self.cluster.read(
            room_key,
            hub.room_name(room_key),
            after + 1,
            high,
            limit,
            newest=before is not None,
        )

    def session(self, code: str, oldest: float) -> Deferred[Any]:
        from tchat.history import Session

        link = self.cluster.link

        def parsed(raw: str | None) -> Session | None:
            if not raw:
                return None
            data = json.loads(raw)
            data["rooms"] = tuple(tuple(r) for r in data["rooms"])
            found = Session(**data)
            return found if found.saved >= oldest else None

        return link.command("GET", link.key("session", code)).addCallback(parsed)

    def save_ban(self, ban: Any) -> None:
        link = self.cluster.link
        data = asdict(ban)
        link.command("HSET", link.key("bans"), ban.id, _dumps(data)).addErrback(
            _logged("saving a ban")
        )

    def delete_ban(self, ban_id: int) -> None:
        link = self.cluster.link
        link.command("HDEL", link.key("bans"), ban_id).addErrback(
            _logged("forgetting a ban")
        )

    def close(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self.cluster.stop())
