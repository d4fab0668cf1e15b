# -*- test-case-name: tests.test_hub -*-
"""
L{ChatFactory}: the one hub every door shares.

The hub owns users and rooms and applies the chat's rules. It knows no wire
format and no transport: doors adapt to it, turning bytes into
L{tchat.commands} values and rendering L{tchat.events} values back into bytes.
"""

import base64
import ipaddress
import math
import random
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from tchat import events
from tchat.commands import (
    COMMANDS,
    OPERATOR_COMMANDS,
    OPERATOR_SPECS,
    Announce,
    Ban,
    Color,
    Command,
    Join,
    Kick,
    ListBans,
    Me,
    Msg,
    Mute,
    Nick,
    Oper,
    Part,
    Quit,
    Rehash,
    Resume,
    ResumeRooms,
    Rooms,
    Say,
    SetMotd,
    SetTopic,
    ShowHelp,
    ShowHistory,
    ShowMotd,
    ShowStats,
    Unban,
    Unmute,
    WhoIs,
)
from tchat.config import HistoryConfig, LimitsConfig, OperatorsConfig, ServerConfig
from tchat.history import (
    Ban as BanRecord,
)
from tchat.history import (
    BanKind,
    HistoryStore,
    Loaded,
    MemoryStore,
    RoomRecord,
    Session,
)
from tchat.interfaces import IParticipant
from tchat.limits import (
    Admission,
    Batcher,
    TokenBucket,
    parse_ip,
    parse_network,
    per_minute,
    plural,
)
from tchat.metrics import Metrics
from tchat.palette import PALETTE, Colour, colour_for
from tchat.text import (
    clean_text,
    nick_key,
    nick_problem,
    normalize_nick,
    normalize_room,
    room_key,
    room_problem,
    shortened,
)

if TYPE_CHECKING:
    from tchat.cluster import Cluster

RESERVED_NICKS = frozenset({"server", "admin", "operator", "system", "root"})

OPER_WINDOW = 60.0
"""Failed C{/oper} attempts are counted over this many seconds..."""
OPER_FAILURES = 3
"""...and this many from one address (or one onion connection) lock it out;"""
OPER_ONION_FAILURES = 10
"""this many from all onion users together lock onion users out."""
MAX_VERIFYING = 4

SWEEP_INTERVAL = 5.0
"""Seconds between checks of the silent, idle and login timeouts."""

IDLE_WARNING = 300.0
"""Seconds before the idle timeout that a telnet user is warned."""
"""Password checks (each tens of ms of CPU and 32 MiB) run at once at most."""

Verifier = Callable[[str, str | None], Deferred[bool]]
"""Checks a password against a hash (or C{None}), off the reactor thread."""


def _verify_in_thread(password: str, encoded: str | None) -> Deferred[bool]:
    from twisted.internet.threads import deferToThread

    from tchat.operators import verify_password

    return deferToThread(verify_password, password, encoded)


def describe_span(seconds: float) -> str:
    """
    C{2h}, C{1d 6h}, C{45s}: the two largest units.
    """
    left, parts = round(seconds), list[str]()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def describe_duration(seconds: float | None) -> str:
    """
    C{for 2h}, C{for 1d 6h}, or C{until lifted}.
    """
    if seconds is None or math.isinf(seconds):
        return "until lifted"
    return "for " + describe_span(seconds)


@dataclass(eq=False, slots=True)
class User:
    """
    One connected user, as the hub keeps them.

    @ivar participant: How the hub reaches the user's door.
    @ivar code: The user's resume code.
    @ivar holding: Rooms whose live messages wait for a history read to
        finish, so the user gets them after it, in order: the number of
        reads in flight and the held events.
    @ivar door: The door's name, shown to others in notices.
    @ivar rooms: The rooms the user is in, in the order they joined them.
    @ivar current: Where a plain line goes; C{None} when in no room.
    @ivar colour: The colour the user's nick is shown in.
    @ivar show_colours: Whether this user wants to see colours.
    @ivar address: The client's IP address on clear-net doors; C{None}
        through the onion (all of them come from the local tor) or a unix
        socket.
    @ivar operator: The operator account the user logged in as, and
        C{operator_hash} its hash then (a changed hash logs them out).
    @ivar muted_until: While set and in the future, the user may not talk.
    @ivar connected_at: When the connection was made.
    @ivar heard_at: When the user last sent a line or frame; C{None} until
        the first one.
    @ivar named: Whether the user picked a nick (or resumed one).
    @ivar pings: Whether the door checks that the peer is alive itself
        (WebSocket pings), so the idle timeout does not apply.
    @ivar idle_warned: Whether the user was told the idle timeout nears.
    @ivar sending: The user's message rate limit, once they send.
    @ivar flood_dropped: Lines dropped since the user was told to slow
        down; -1 when they have not been told.
    @ivar nick_changes: The user's nick-change rate limit, once used.
    @ivar joins: The user's room-join rate limit, once used.
    @ivar moved: The user's session went on in another connection on
        another node (a resume there): leaving must not save it.
    @ivar deliver: C{participant.deliver}, bound once: fan-out calls it
        for every recipient of every event.
    """

    participant: IParticipant
    nick: str
    door: str
    colour: Colour
    rooms: list["Room"] = field(default_factory=list)
    current: "Room | None" = None
    show_colours: bool = True
    connected: bool = True
    code: str = ""
    holding: dict["Room", tuple[int, list[events.Event]]] = field(default_factory=dict)
    address: str | None = None
    operator: str | None = None
    operator_hash: str | None = None
    oper_pending: bool = False
    muted_until: float | None = None
    connected_at: float = 0.0
    heard_at: float | None = None
    named: bool = False
    pings: bool = False
    idle_warned: bool = False
    sending: TokenBucket | None = None
    flood_dropped: int = -1
    nick_changes: TokenBucket | None = None
    joins: TokenBucket | None = None
    moved: bool = False
    deliver: Callable[[object, object], None] = field(init=False)

    def __post_init__(self) -> None:
        self.deliver = self.participant.deliver


@dataclass(eq=False)
class Room:
    """
    One room: its members, its topic and its latest messages.

    @ivar members: Each member, in joining order, with the first message id
        their connection was given (by replay or live): they have every
        message of the room from that id on.
    @ivar epoch: Changes only when the room's history may have lost
        messages that clients saw (see C{docs/delivery.md}).
    @ivar lineage: (epoch, first id) of each of the room's epochs.
    @ivar last_id: The id of the latest message; ids only increase.
    @ivar delivered_id: The id of the latest message shown to members;
        behind C{last_id} only while C{sync = full} waits for the disk.
    @ivar pruned_to: Messages up to this id are no longer kept.
    @ivar recent: The latest delivered messages, replayed on join.
    @ivar tagged: Kept messages that carried a client id, by that id, to
        recognise a client's retry.
    @ivar stored: Whether the store knows the room yet.
    @ivar sending: The room's message rate limit, once someone talks.
    @ivar doors: How many members came by each door, for the delivery
        counts of a fan-out to all of them.
    @ivar cluster_epoch: In cluster mode, the epoch and id of the latest
        message this node had from the cluster (C{cluster_id}): what it
        missed while cut off follows them.
    """

    name: str
    epoch: int
    recent: deque[events.RoomMessage]
    members: dict[User, int] = field(default_factory=dict)
    topic: str | None = None
    topic_by: str | None = None
    lineage: list[tuple[int, int]] = field(default_factory=list)
    last_id: int = 0
    delivered_id: int = 0
    pruned_to: int = 0
    tagged: dict[str, events.RoomMessage] = field(default_factory=dict)
    stored: bool = False
    sending: TokenBucket | None = None
    doors: dict[str, int] = field(default_factory=dict)
    cluster_epoch: int = 0
    cluster_id: int = 0

    def record(self) -> RoomRecord:
        """This room as the store keeps it."""
        return RoomRecord(
            room_key(self.name),
            self.name,
            self.epoch,
            list(self.lineage),
            self.last_id,
            self.pruned_to,
            self.topic,
            self.topic_by,
        )


def _code() -> str:
    """
    A new resume code: 40 random bits, as two groups of four letters and
    digits that are easy to read out and type.
    """
    raw = base64.b32encode(secrets.token_bytes(5)).decode("ascii")
    return f"{raw[:4]}-{raw[4:]}"


def normalize_code(text: str) -> str:
    """
    A resume code as typed, in its canonical form.
    """
    raw = "".join(text.split()).replace("-", "").upper()
    return f"{raw[:4]}-{raw[4:]}" if len(raw) == 8 else raw


class ChatFactory:
    """
    The chat hub: users, rooms, and the fan-out of what they say.

    The name is the design's: it is the one place chat is made, whatever
    the door. It is not a Twisted protocol factory; each door has its own.

    @ivar config: The C{[server]} settings in force.
    """

    _log = Logger()

    def __init__(
        self,
        config: ServerConfig,
        clock: IReactorTime,
        rng: random.Random | None = None,
        history: HistoryConfig | None = None,
        store: HistoryStore | None = None,
        operators: OperatorsConfig | None = None,
        verify: Verifier | None = None,
        metrics: Metrics | None = None,
        limits: LimitsConfig | None = None,
    ) -> None:
        """
        @param config: The C{[server]} section.
        @param clock: Where timestamps come from.
        @param rng: Picks guest nicks; tests pass a seeded one.
        @param history: The C{[history]} section.
        @param store: Where history is kept; in memory by default.  Call
            L{start} before connecting anyone.
        @param operators: The C{[operators]} section.
        @param verify: Checks operator passwords; by default in a thread.
        @param metrics: Where the hub counts what it does.
        @param limits: The C{[limits]} section.
        """
        self.config = config
        self.operators = operators if operators is not None else OperatorsConfig()
        self._verify: Verifier = verify if verify is not None else _verify_in_thread
        self.metrics = metrics if metrics is not None else Metrics()
        self.limits = limits if limits is not None else LimitsConfig()
        self.admission = Admission(self.limits, clock, self.metrics)
        """Who may connect: the doors' gates share it."""
        self._sweeping = LoopingCall(self._sweep)
        self._sweeping.clock = clock
        self._bans: dict[int, BanRecord] = {}
        self._last_ban = 0
        self._muted: dict[str, float] = {}
        self._oper_failures: dict[str, deque[float]] = {}
        self._verifying = 0
        self._drained: Deferred[None] | None = None
        self.reloader: Callable[[], Deferred[tuple[bool, str]]] | None = None
        """Reloads C{tap.ini} for C{/rehash}: (success, what happened)."""
        self.onion_status: Callable[[], dict[str, Any]] | None = None
        """The onion door's status, for operators' C{/stats}."""
        self.batcher: Batcher | None = None
        """Gathers each client's writes per reactor turn (the running
        server sets one; without it, doors write at once)."""
        self.history = history if history is not None else HistoryConfig()
        self.store: HistoryStore = (
            store if store is not None else MemoryStore(self.history)
        )
        self.store.observe_write = self.metrics.history_write.observe
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._users: dict[str, User] = {}
        self._by_code: dict[str, User] = {}
        self._rooms: dict[str, Room] = {}
        self._new_room(config.default_room)
        self._ready: list[Deferred[None]] | None = []
        self._stopping = False
        self.started = clock.seconds()
        self.onion_address: str | None = None
        """The onion service's address once published, shown to onion users."""
        self.cluster: Cluster | None = None
        """The other nodes, in cluster mode (set before L{start})."""
        self._ensuring: dict[str, list[Deferred[None]]] = {}

    @property
    def clock(self) -> IReactorTime:
        """Where the hub's time comes from; doors time their limits by it."""
        return self._clock

    @property
    def ready(self) -> bool:
        """Whether L{start} has loaded the store, so users may come in."""
        return self._ready is None

    def when_ready(self) -> Deferred[None]:
        """
        @return: Fires once L{start} has loaded the store.
        """
        d: Deferred[None] = Deferred()
        if self._ready is None:
            d.callback(None)
        else:
            self._ready.append(d)
        return d

    def start(self) -> Deferred[None]:
        """
        Load rooms and their latest messages from the store.

        @return: Fires when the hub is ready for users.
        """

        def loaded(found: Loaded) -> None:
            for record in found.rooms:
                room = self._new_room(record.name, record.epoch)
                room.lineage = record.lineage
                room.last_id = room.delivered_id = record.last_id
                room.pruned_to = max(
                    record.pruned_to, record.last_id - self.history.keep
                )
                room.topic, room.topic_by = record.topic, record.topic_by
                room.cluster_epoch, room.cluster_id = record.epoch, record.last_id
                room.recent.extend(found.recent.get(record.key, ()))
                for message in found.tagged.get(record.key, ()):
                    assert message.client_id is not None
                    room.tagged[message.client_id] = message
                room.stored = True
            now = self._clock.seconds()
            for ban in found.bans:
                if ban.expires is None or ban.expires > now:
                    self._bans[ban.id] = ban
            if room_key(self.config.default_room) not in {r.key for r in found.rooms}:
                lobby = self._rooms[room_key(self.config.default_room)]
                self.store.save_room(lobby.record())
                lobby.stored = True
            if found.lossy:
                self._log.warn(
                    "history: the last run did not stop cleanly, so its last "
                    "batch of messages may be lost; every room starts a new "
                    "epoch and resuming clients are told of the gap"
                )

        async def starting() -> None:
            loaded(await self.store.load(self._clock.seconds()))
            if self.cluster is not None and self.cluster.up:
                await self.cluster.resync()
            waiting, self._ready = self._ready or [], None
            self._sweeping.start(SWEEP_INTERVAL, now=False)
            for d in waiting:
                d.callback(None)

        return Deferred.fromCoroutine(starting())

    def stop(self, grace: float | None = None) -> Deferred[None]:
        """
        Tell every user the server is going down and close their
        connections (cutting those still open after C{grace} seconds), then
        write all queued history with everyone's resume code.

        @param grace: Seconds to wait for connections to close; C{[server]
            shutdown_grace} by default.
        @return: Fires when everything is on disk.
        """
        self._stopping = True
        if self._sweeping.running:
            self._sweeping.stop()
        if grace is None:
            grace = self.config.shutdown_grace

        async def stopping() -> None:
            await self._send_away(grace)
            for user in self._users.values():
                self._save_session(user)
            await self.store.close()

        return Deferred.fromCoroutine(stopping())

    async def _send_away(self, grace: float) -> None:
        users = list(self._users.values())
        if not users:
            return
        self._log.info(
            "telling {count} users the server is going down; waiting up to "
            "{grace:g} s for their connections to close",
            count=len(users),
            grace=grace,
        )
        self._fan_out(users, events.Shutdown("the server is shutting down"))
        for user in users:
            try:
                user.participant.close("server shutting down", "going-away")
            except Exception:
                # One door's failure must not keep history from being
                # written: that user is cut when the grace period ends.
                self._log.failure("closing {nick}'s connection", nick=user.nick)
        drained: Deferred[None] = Deferred()
        self._drained = drained
        if not self._users:
            return

        def cut() -> None:
            if self._users:
                self._log.info(
                    "cutting {count} connections still open after {grace:g} s",
                    count=len(self._users),
                    grace=grace,
                )
            self.cut_short()

        timer = self._clock.callLater(grace, cut) if grace > 0 else None
        if timer is None:
            cut()
        try:
            await drained
        finally:
            if timer is not None and timer.active():
                timer.cancel()

    def cut_short(self) -> None:
        """
        A second stop signal: cut every connection still open now.
        """
        if not self._stopping:
            return
        for user in list(self._users.values()):
            user.participant.abort()
            # Its connectionLost comes in a later reactor turn: do not wait.
            self.disconnect(user, "cut off while stopping")

    def _new_room(self, name: str, epoch: int | None = None) -> Room:
        if epoch is None:
            epoch = max(1, int(self._clock.seconds() * 1000))
        room = Room(
            name, epoch, deque(maxlen=min(self.history.replay, self.history.keep) or 1)
        )
        room.lineage = [(epoch, 1)]
        self._rooms[room_key(name)] = room
        return room

    # -- connections -------------------------------------------------------

    def connect(self, participant: IParticipant) -> User:
        """
        A user arrived through a door: give them a guest nick, welcome them
        and put them in the default room.

        @param participant: The door's side of the user.
        @return: The user, also given to the participant's C{attached}.
        """
        nick = self._guest_nick()
        door = participant.door
        user = User(participant, nick, door, colour_for(nick))
        user.address = getattr(participant, "address", None)
        user.pings = getattr(participant, "pings", False)
        user.connected_at = self._clock.seconds()
        participant.attached(user)
        self.metrics.connected(door)
        if self._stopping:
            user.connected = False
            self._tell(user, events.Shutdown("the server is shutting down"))
            participant.close("server shutting down", "going-away")
            return user
        ban = self._find_ban(address=user.address)
        if ban is not None:
            user.connected = False
            self._log.info(
                "refused {address} ({door}): {ban}",
                address=user.address,
                door=door,
                ban=_describe_ban(ban),
            )
            self.metrics.drop("banned")
            self._error(user, "banned", self._banned_text(ban))
            participant.close("banned", "policy")
            return user
        self._users[nick_key(nick)] = user
        user.code = self._unused_code()
        self._by_code[user.code] = user
        self._take_mute(user)
        lobby = self._rooms[room_key(self.config.default_room)]
        self._tell(
            user,
            events.Welcome(
                self.config.name,
                self.config.motd,
                nick,
                lobby.name,
                user.colour,
                user.code if self.history.resume_ttl else "",
                self.onion_address or "" if participant.door == "onion" else "",
            ),
        )
        cluster = self.cluster
        if cluster is not None:
            if cluster.up:
                self._claim_guest(user)
            else:
                cluster.tell_outage(user)
        if self._room_full(user, lobby):
            user.current = None
        else:
            self._join(user, lobby, save=False)
        self._log.info("{nick} connected by {door}", nick=nick, door=participant.door)
        return user

    def disconnect(self, user: User, reason: str, clean: bool = False) -> None:
        """
        A user's connection ended without C{/quit}.  Idempotent.

        @param user: Who left.
        @param reason: Why, for the log.
        @param clean: C{True} when the client closed the connection itself
            (others see "quit (connection closed)"); C{False} when it broke
            or was dropped (others see "lost connection").
        """
        if not user.connected:
            return
        if clean:
            self._leave(user, "quit", "connection closed")
        else:
            self._leave(user, "lost", None)
        self._log.info("{nick} disconnected: {reason}", nick=user.nick, reason=reason)

    # -- limits --------------------------------------------------------------

    def received(self, user: User) -> bool:
        """
        A door got a line or frame from C{user}: may it be handled?

        Every line or frame counts against C{[limits] messages_per_second}.
        Over it, the first one dropped earns a notice to slow down, and
        C{flood_disconnect} more before the user calms down (the limit
        refills) close the connection.

        @return: C{False} when it must be dropped.
        """
        if not user.connected:
            return False
        now = self._clock.seconds()
        user.heard_at = now
        user.idle_warned = False
        limits = self.limits
        if not limits.messages_per_second:
            return True
        bucket = user.sending
        if bucket is None:
            bucket = user.sending = TokenBucket(
                limits.messages_per_second, limits.message_burst, now
            )
        elif user.flood_dropped >= 0 and bucket.full(now):
            user.flood_dropped = -1
        if bucket.take(now):
            return True
        self.metrics.limit("messages")
        if user.flood_dropped < 0:
            user.flood_dropped = 0
            self._error(
                user,
                "rate-limited",
                "slow down: you may send "
                f"{_per_second(limits.messages_per_second, 'line')} "
                f"({limits.message_burst} at once); what you send now is "
                "dropped until you slow down",
            )
            return False
        user.flood_dropped += 1
        if limits.flood_disconnect and user.flood_dropped >= limits.flood_disconnect:
            self._close_for(
                user,
                "flooding",
                f"flooding: {user.flood_dropped} more lines after being told to "
                "slow down",
            )
        return False

    def too_slow(self, user: User, waiting: int) -> None:
        """
        A door is closing C{user}'s connection because they stopped
        reading: count it and tell the others why they left.

        @param waiting: Bytes they had not taken.
        """
        self.metrics.slow_consumer_disconnects += 1
        self._log.info(
            "closing {nick} ({door}): not reading, {kib} KiB waiting",
            nick=user.nick,
            door=user.door,
            kib=waiting // 1024,
        )
        if user.connected:
            self._leave(user, "quit", "could not keep up")

    def _close_for(self, user: User, reason: str, said: str) -> None:
        """
        Disconnect C{user} for breaking a limit, telling them and the
        people in their rooms why.
        """
        self._log.info(
            "closing {nick} ({door}): {said}", nick=user.nick, door=user.door, said=said
        )
        self.metrics.drop(reason)
        self._tell(user, events.Goodbye(said))
        self._leave(user, "quit", reason)
        user.participant.close(said, "policy")

    def _sweep(self) -> None:
        """
        Close connections that never said anything, telnet users idle too
        long (warning them first), and guests who did not pick a nick in
        time.
        """
        limits, now = self.limits, self._clock.seconds()
        silent, idle, login = (
            limits.silent_timeout,
            limits.idle_timeout,
            limits.login_timeout,
        )
        for user in list(self._users.values()):
            age = now - user.connected_at
            if login and not user.named and age >= login:
                self._close_for(
                    user, "no-nick", f"no nick picked in {describe_span(login)}"
                )
            elif user.heard_at is None:
                if silent and age >= silent:
                    self._close_for(
                        user, "silent", f"nothing received in {describe_span(silent)}"
                    )
            elif idle and not user.pings:
                quiet = now - user.heard_at
                if quiet >= idle:
                    self._close_for(user, "idle", f"idle for {describe_span(quiet)}")
                elif quiet >= idle - IDLE_WARNING and not user.idle_warned:
                    user.idle_warned = True
                    self._tell(
                        user,
                        events.Status(
                            f"you have been idle for {describe_span(quiet)}; you "
                            f"will be disconnected in {describe_span(idle - quiet)} "
                            "unless you send something (an empty line will do)"
                        ),
                    )

    def _allowed(self, user: User, which: str, count: int, what: str) -> bool:
        """
        Take one of C{user}'s C{count}-a-minute allowance for C{which}
        (C{nick_changes} or C{joins}), or tell them they are over it.
        """
        if not count:
            return True
        now = self._clock.seconds()
        bucket = getattr(user, which)
        if bucket is None:
            bucket = per_minute(count, now)
            setattr(user, which, bucket)
        if bucket.take(now):
            return True
        self.metrics.limit(which.replace("_", "-"))
        self._error(
            user,
            "rate-limited",
            f"too many {what} (at most {count} a minute); try again in a minute",
        )
        return False

    def _room_full(self, user: User, room: Room) -> bool:
        """
        Is C{room} full for C{user}?  Tells them so; operators always fit.
        """
        most = self.limits.max_users_per_room
        if not most or len(room.members) < most or user.operator is not None:
            return False
        self.metrics.limit("room-full")
        self._error(
            user,
            "room-full",
            f"{room.name} is full ({plural(most, 'user')}); /join another room",
        )
        return True

    def _room_busy(self, user: User, room: Room) -> bool:
        """
        Has C{room} taken all the messages it may this second?  Tells the
        sender so.
        """
        limits = self.limits
        if not limits.room_messages_per_second:
            return False
        now = self._clock.seconds()
        bucket = room.sending
        if bucket is None:
            bucket = room.sending = TokenBucket(
                limits.room_messages_per_second, limits.room_message_burst, now
            )
        if bucket.take(now):
            return False
        self.metrics.limit("room")
        self._error(
            user,
            "rate-limited",
            f"{room.name} is too busy (over "
            f"{_per_second(limits.room_messages_per_second, 'message')}); "
            "your message was not sent, try again",
        )
        return True

    @property
    def users(self) -> int:
        """How many users are connected."""
        return len(self._users)

    @property
    def rooms(self) -> int:
        """How many rooms exist."""
        return len(self._rooms)

    @property
    def bans(self) -> int:
        """How many bans are in force."""
        return len(self._bans)

    def users_by_door(self) -> dict[str, int]:
        """
        @return: How many users are connected through each door.
        """
        counts: dict[str, int] = {}
        for user in self._users.values():
            counts[user.door] = counts.get(user.door, 0) + 1
        return counts

    # -- commands ----------------------------------------------------------

    def execute(self, user: User, command: Command) -> None:
        """
        Carry out one command for C{user}.

        Mistakes are answered with an L{events.Error} to the user alone.

        @param user: Who asked.
        @param command: What they asked for, parsed by the door.
        """
        if not user.connected:
            return
        if isinstance(command, OPERATOR_COMMANDS) and user.operator is None:
            self._log.info(
                "refused /{command} to {nick}, who is not an operator",
                command=type(command).__name__.lower(),
                nick=user.nick,
            )
            self._error(
                user,
                "not-operator",
                "that command is for operators; /oper NAME PASSWORD first",
            )
            return
        match command:
            case Say(text, room, client_id):
                self._say(user, text, False, room, client_id)
            case Me(text, room, client_id):
                self._say(user, text, True, room, client_id)
            case Nick(name):
                self._nick(user, name)
            case Join(name):
                self._join_named(user, name)
            case Part(name):
                self._part(user, name)
            case Rooms():
                self._rooms_for(user)
            case WhoIs(name):
                self._who(user, name)
            case SetTopic(text):
                self._topic(user, text)
            case Msg(nick, text):
                self._msg(user, nick, text)
            case ShowMotd():
                self._tell(user, events.Motd(self.config.motd))
            case ShowHelp():
                self._tell(
                    user,
                    events.Help(
                        tuple((c.usage, c.description) for c in COMMANDS),
                        tuple((c.usage, c.description) for c in OPERATOR_SPECS)
                        if user.operator is not None
                        else (),
                    ),
                )
            case ShowStats():
                self._show_stats(user)
            case Oper(name, password):
                self._oper(user, name, password)
            case Kick(nick, why):
                self._kick(user, nick, why)
            case Ban(target, duration, why):
                self._ban(user, target, duration, why)
            case Unban(target):
                self._unban(user, target)
            case ListBans():
                self._list_bans(user)
            case Mute(nick, duration):
                self._mute(user, nick, duration)
            case Unmute(nick):
                self._unmute(user, nick)
            case Announce(text):
                self._announce(user, text)
            case SetMotd(lines):
                self._set_motd(user, lines)
            case Rehash():
                self._rehash(user)
            case Quit(reason):
                self._quit(user, reason)
            case Color(choice):
                self._colour(user, choice)
            case ShowHistory(limit, room, before):
                self._page(user, limit, room, before)
            case Resume(code):
                self._resume_code(user, code)
            case ResumeRooms(points):
                self._with_rooms(
                    user,
                    [
                        n
                        for n in (normalize_room(p[0]) for p in points)
                        if not room_problem(n)
                    ],
                    lambda: self._resume_points(user, points),
                )

    def _error(
        self,
        user: User,
        code: events.ErrorCode,
        text: str,
        client_id: str | None = None,
    ) -> None:
        self._tell(user, events.Error(code, text, client_id))

    @staticmethod
    def _tag(user: User) -> str | None:
        """
        The tag of the request C{user}'s door is handing the hub now, for
        an answer that comes later (after asking the cluster).
        """
        tag = getattr(user.participant, "client_id", None)
        return tag if isinstance(tag, str) else None

    def _say(
        self,
        user: User,
        text: str,
        action: bool,
        room_name: str | None,
        client_id: str | None,
    ) -> None:
        received = time.perf_counter()
        text = clean_text(text).strip()
        if not text:
            return
        if self._is_muted(user):
            return
        if self._stopping:
            # The store is being closed: a message now could not be kept.
            self._error(
                user,
                "not-stored",
                "the server is shutting down; your message was not sent",
            )
            return
        if room_name is None:
            room = user.current
            if room is None:
                self._error(user, "no-room", "you are in no room; /join #room first")
                return
        else:
            room = self._joined_room(user, room_name)
            if room is None:
                return
        if self._room_busy(user, room):
            return
        if client_id is not None:
            prior = room.tagged.get(client_id)
            if (
                prior is not None
                and prior.text == text
                and prior.action == action
                and nick_key(prior.nick) == nick_key(user.nick)
            ):
                # A retry of a message already taken: acknowledge it again
                # (the sender's copy), but create nothing.
                if prior.id <= room.delivered_id:
                    self._tell(user, prior)
                return
        self.metrics.received_from(user.door)
        self.metrics.messages.record(self._clock.seconds())
        cluster = self.cluster
        if cluster is not None:
            if cluster.up:
                # Redis numbers it; every node shows it from the bus.
                draft = self._message(user, room, 0, text, action, client_id)
                self._say_in_cluster(user, room, draft)
                return
            if room.epoch == room.cluster_epoch:
                # Said while cut off from the cluster: these ids are this
                # node's own, so they get an epoch of their own.
                room.epoch = max(self.new_epoch(), room.epoch + 1)
                room.lineage.append((room.epoch, room.last_id + 1))
        if not room.stored:
            self.store.save_room(room.record())
            room.stored = True
        room.last_id += 1
        message = self._message(user, room, room.last_id, text, action, client_id)
        self._kept(room, message)
        full = self.history.sync == "full"
        committed = self.store.append(message, durable=full)
        if committed is None:
            self._deliver_message(room, message, received)
        else:
            committed.addCallbacks(
                lambda _: self._deliver_message(room, message, received),
                lambda f: self._not_stored(user, room, message, f),
            )

    def _kept(self, room: Room, message: events.RoomMessage) -> None:
        """
        C{message} is C{room}'s latest: remember its client tag (for a
        retry) and forget what falls out of the kept history.
        """
        if message.client_id is not None:
            room.tagged[message.client_id] = message
        floor = message.id - self.history.keep
        tagged = room.tagged
        while tagged:
            oldest = next(iter(tagged.values()))
            if oldest.id > floor:
                break
            del tagged[oldest.client_id]  # type: ignore[arg-type]
        room.pruned_to = max(room.pruned_to, floor)

    def _message(
        self,
        user: User,
        room: Room,
        id: int,
        text: str,
        action: bool,
        client_id: str | None,
    ) -> events.RoomMessage:
        return events.RoomMessage(
            room.name,
            id,
            self._clock.seconds(),
            user.nick,
            user.door,
            user.colour,
            text,
            action,
            client_id,
            room.epoch,
        )

    def _say_in_cluster(
        self, user: User, room: Room, message: events.RoomMessage
    ) -> None:
        """
        Have Redis number and keep a room message; every node, this one
        included, delivers it when the bus brings it back.
        """
        assert self.cluster is not None
        client_id = message.client_id

        def said(result: tuple[bool, int]) -> None:
            new, id = result
            if new or client_id is None or not user.connected:
                return
            prior = room.tagged.get(client_id)
            if prior is not None and prior.id == id and prior.id <= room.delivered_id:
                self._tell(user, prior)

        def failed(why: Failure) -> None:
            self._log.warn(
                "cluster: a message of {nick} in {room} was not sent: {why}",
                nick=user.nick,
                room=room.name,
                why=why.value,
            )
            if user.connected:
                self._error(
                    user,
                    "not-stored",
                    "your message could not be sent to the cluster, so nobody "
                    "was shown it; try again",
                    client_id,
                )

        self.cluster.say(room, message, self.history.keep).addCallbacks(said, failed)

    def _deliver_message(
        self, room: Room, message: events.RoomMessage, received: float
    ) -> None:
        room.delivered_id = message.id
        room.recent.append(message)
        self._fan_out(room.members, message, room.doors)
        self.metrics.fanout.observe(time.perf_counter() - received)

    def _not_stored(
        self, user: User, room: Room, message: events.RoomMessage, why: Failure
    ) -> None:
        if message.client_id is not None:
            room.tagged.pop(message.client_id, None)
        self._log.failure(
            "history: message {id} in {room} lost", why, id=message.id, room=room.name
        )
        if user.connected:
            self._error(
                user,
                "not-stored",
                "your message could not be saved, so nobody was shown it; try again",
            )

    def _nick(self, user: User, name: str) -> None:
        nick = normalize_nick(name)
        problem = nick_problem(nick)
        if problem is not None:
            self._error(
                user, "nick-invalid", f"{_quoted(nick)} cannot be a nick: {problem}"
            )
            return
        key = nick_key(nick)
        if key in RESERVED_NICKS or key == nick_key(self.config.name):
            self._error(user, "nick-reserved", f"{nick} is reserved; pick another")
            return
        holder = self._users.get(key)
        if holder is not None and holder is not user:
            self._error(user, "nick-taken", f"{nick} is taken; pick another")
            return
        if nick == user.nick:
            user.named = True
            return
        ban = self._find_ban(nick=nick)
        if ban is not None and user.operator is None:
            self._error(user, "banned", f"the nick {nick} is banned; pick another")
            return
        if not self._allowed(
            user, "nick_changes", self.limits.nick_changes_per_minute, "nick changes"
        ):
            return
        cluster = self.cluster
        if cluster is None or key == nick_key(user.nick):
            self._rename(user, nick)
            return
        if not cluster.up:
            self._error(
                user,
                "nick-taken",
                "the cluster is unreachable, so nicks cannot be checked; "
                "try again when it is back",
            )
            return

        tag = self._tag(user)

        def claimed(outcome: int) -> None:
            if not user.connected:
                cluster.release(key, cluster.owner(user))
            elif not outcome or self._users.get(key, user) is not user:
                self._error(user, "nick-taken", f"{nick} is taken; pick another", tag)
            else:
                self._rename(user, nick)

        def failed(why: Failure) -> None:
            if user.connected:
                self._error(
                    user,
                    "nick-taken",
                    f"{nick} could not be checked with the cluster; try again",
                    tag,
                )

        cluster.claim(user, key).addCallbacks(claimed, failed)

    def _claim_guest(self, user: User) -> None:
        """
        Claim C{user}'s guest nick in the cluster; another node's user may
        have drawn the same one, and then this one draws again.
        """
        assert self.cluster is not None
        key = nick_key(user.nick)

        def claimed(outcome: int) -> None:
            if outcome or not user.connected or nick_key(user.nick) != key:
                return
            self._rename(user, self._guest_nick(), chosen=False)
            self._claim_guest(user)

        self.cluster.claim(user, key).addCallbacks(
            claimed, lambda f: None if f.check(Exception) else f
        )

    def _rename(self, user: User, nick: str, chosen: bool = True) -> None:
        key = nick_key(nick)
        old = user.nick
        user.named = user.named or chosen
        del self._users[nick_key(old)]
        user.nick = nick
        self._users[key] = user
        notice = events.Presence(
            self._clock.seconds(), "nick", old, user.door, new_nick=nick
        )
        self._fan_out(self._audience(user), notice)
        cluster = self.cluster
        if cluster is not None:
            rooms = [room_key(r.name) for r in user.rooms]
            cluster.share(notice, rooms)
            cluster.unregister(nick_key(old), rooms, user)
            if nick_key(old) != key:
                cluster.release(nick_key(old), cluster.owner(user))
        self._save_session(user)

    def _room_name(self, user: User, name: str) -> str | None:
        """
        Normalise a room name a user typed, telling them if it is invalid.
        """
        normal = normalize_room(name)
        problem = room_problem(normal)
        if problem is not None:
            self._error(user, "room-invalid", f"{_quoted(name)}: {problem}")
            return None
        return normal

    def _find_room(self, user: User, name: str | None) -> Room | None:
        """
        Resolve a room argument, telling the user if it cannot be.
        """
        if name is None:
            if user.current is None:
                self._error(user, "no-room", "you are in no room; name one")
            return user.current
        normal = self._room_name(user, name)
        if normal is None:
            return None
        room = self._rooms.get(room_key(normal))
        if room is None:
            self._error(user, "no-such-room", f"there is no room {normal}")
        return room

    def _joined_room(self, user: User, name: str | None) -> Room | None:
        """
        Resolve a room argument that must be a room the user is in.
        """
        room = self._find_room(user, name)
        if room is not None and user not in room.members:
            self._error(user, "not-in-room", f"you are not in {room.name}")
            return None
        return room

    def _join_named(self, user: User, name: str) -> None:
        normal = self._room_name(user, name)
        if normal is None:
            return
        room = self._rooms.get(room_key(normal))
        if room is not None and user in room.members:
            user.current = room
            self._tell(user, events.Status(f"now talking in {room.name}"))
            return
        most = self.limits.max_rooms_per_user
        if most and len(user.rooms) >= most:
            self.metrics.limit("rooms-per-user")
            self._error(
                user,
                "too-many-rooms",
                f"you are in {plural(len(user.rooms), 'room')}, the most allowed; "
                "/part one first",
            )
            return
        if not self._allowed(user, "joins", self.limits.joins_per_minute, "joins"):
            return
        self._with_rooms(user, (normal,), lambda: self._join_known(user, normal))

    def _join_known(self, user: User, name: str) -> None:
        room = self._rooms.get(room_key(name))
        if room is None:
            room = self._new_room(name)
        elif user in room.members or self._room_full(user, room):
            return
        self._join(user, room)

    def _with_rooms(
        self, user: User, names: Iterable[str], then: Callable[[], None]
    ) -> None:
        """
        Call C{then} once every room in C{names} this node does not know is
        known: in cluster mode, as the cluster has it (its epoch, last id
        and topic), so that nobody is shown a room under an epoch of this
        node's own.  Not at all if C{user} has left meanwhile.
        """
        cluster = self.cluster
        keys = {room_key(n): n for n in names}
        missing = [k for k in keys if k not in self._rooms or k in self._ensuring]
        if cluster is None or not cluster.up or not missing:
            then()
            return
        waits, asks = [], []
        for key in missing:
            done: Deferred[None] = Deferred()
            waits.append(done)
            if key in self._ensuring:
                self._ensuring[key].append(done)
            else:
                self._ensuring[key] = [done]
                asks.append(key)
        for key in asks:
            cluster.ensure(self._new_room(keys[key])).addErrback(
                lambda f: self._log.warn(
                    "cluster: recording a room: {why}", why=f.value
                )
            ).addBoth(self._ensured, key)
        gatherResults(waits).addCallback(lambda _: then() if user.connected else None)

    def _ensured(self, result: object, key: str) -> None:
        for done in self._ensuring.pop(key, []):
            done.callback(None)

    def _join(
        self, user: User, room: Room, replay: bool = True, save: bool = True
    ) -> None:
        """
        Add C{user} to C{room}, tell its members, and show the user the
        room's latest messages (unless C{replay} is false: a resume sends
        what the user missed instead).
        """
        shown = tuple(room.recent)[-self.history.replay :] if replay else ()
        if not self.history.replay:
            shown = ()
        room.members[user] = shown[0].id if shown else room.delivered_id + 1
        room.doors[user.door] = room.doors.get(user.door, 0) + 1
        user.rooms.append(room)
        user.current = room
        notice = events.Presence(
            self._clock.seconds(),
            "join",
            user.nick,
            user.door,
            room=room.name,
            epoch=room.epoch,
            last_id=room.delivered_id,
        )
        self._fan_out(room.members, notice)
        if self.cluster is not None:
            self.cluster.share(notice, (room_key(room.name),))
            self.cluster.register(user)
        if shown:
            self._tell(user, events.History(room.name, room.epoch, shown, "join"))
        if save:
            self._save_session(user)

    def _part(self, user: User, name: str | None) -> None:
        room = self._joined_room(user, name)
        if room is None:
            return
        self._part_from(user, room)
        self._save_session(user)
        if user.current is None:
            self._tell(user, events.Status("you are in no room now; /join #room"))
        else:
            self._tell(user, events.Status(f"now talking in {user.current.name}"))

    def _part_from(self, user: User, room: Room) -> None:
        """Take C{user} out of C{room}, telling its members everywhere."""
        notice = events.Presence(
            self._clock.seconds(), "part", user.nick, user.door, room=room.name
        )
        self._fan_out(room.members, notice)
        self._remove_member(user, room)
        if self.cluster is not None:
            key = room_key(room.name)
            self.cluster.share(notice, (key,))
            self.cluster.unregister(nick_key(user.nick), (key,), user)

    def _remove_member(self, user: User, room: Room) -> None:
        del room.members[user]
        room.doors[user.door] -= 1
        user.rooms.remove(room)
        if user.current is room:
            user.current = user.rooms[-1] if user.rooms else None
        user.holding.pop(room, None)
        key = room_key(room.name)
        if (
            not room.members
            and not room.stored
            and key != room_key(self.config.default_room)
        ):
            # Nothing was said there and no topic set: no trace to keep.
            del self._rooms[key]

    def _room_list(self) -> events.RoomList:
        rooms = sorted(self._rooms.values(), key=lambda r: room_key(r.name))
        return events.RoomList(
            tuple(events.RoomInfo(r.name, len(r.members), r.topic) for r in rooms)
        )

    def _rooms_for(self, user: User) -> None:
        cluster = self.cluster
        if cluster is None or not cluster.up:
            if cluster is not None:
                self._tell(user, events.Status(_ONLY_HERE))
            self._tell(user, self._room_list())
            return

        def listed(rows: list[tuple[str, int, str | None]]) -> None:
            rows.sort(key=lambda r: room_key(r[0]))
            infos = tuple(events.RoomInfo(n, c, t) for n, c, t in rows)
            if user.connected:
                self._tell(user, events.RoomList(infos))

        cluster.rooms().addCallbacks(
            listed, lambda f: self._tell(user, self._room_list())
        )

    def _who(self, user: User, name: str | None) -> None:
        room = self._find_room(user, name)
        if room is None:
            return
        local = tuple((m.nick, m.door) for m in room.members)
        cluster = self.cluster
        if cluster is None or not cluster.up:
            if cluster is not None:
                self._tell(user, events.Status(_ONLY_HERE))
            self._tell(user, events.Who(room.name, local))
            return

        def listed(members: list[tuple[str, str]]) -> None:
            if user.connected:
                self._tell(user, events.Who(room.name, tuple(members)))

        cluster.who(room_key(room.name)).addCallbacks(
            listed, lambda f: self._tell(user, events.Who(room.name, local))
        )

    def _topic(self, user: User, text: str | None) -> None:
        room = user.current
        if room is None:
            self._error(user, "no-room", "you are in no room; /join #room first")
            return
        if text is None:
            self._tell(user, events.Topic(room.name, room.topic, room.topic_by))
            return
        topic = clean_text(text).strip()
        room.topic, room.topic_by = topic or None, user.nick
        self.store.save_room(room.record())
        room.stored = True
        notice = events.TopicChanged(self._clock.seconds(), room.name, user.nick, topic)
        self._fan_out(room.members, notice)
        if self.cluster is not None:
            self.cluster.share(notice, (room_key(room.name),))

    def _msg(self, user: User, nick: str, text: str) -> None:
        text = clean_text(text).strip()
        cluster = self.cluster
        key = nick_key(normalize_nick(nick))
        if cluster is not None and cluster.up and key not in self._users:
            if text and not self._is_muted(user):
                self._remote(
                    user, nick, lambda spelt: self._msg_remote(user, spelt, text)
                )
            return
        target = self._target(user, nick)
        if target is None:
            return
        if not text or self._is_muted(user):
            return
        self.metrics.received_from(user.door)
        now = self._clock.seconds()
        for recipient, outgoing in ((target, False), (user, True)):
            message = events.PrivateMessage(
                now, user.nick, user.door, user.colour, target.nick, text, outgoing
            )
            self._tell(recipient, message)

    def _remote(self, user: User, nick: str, then: Callable[[str], object]) -> None:
        """
        Call C{then} with the nick as its holder spells it if someone on
        another node has C{nick}, else tell C{user} there is nobody by that
        name.
        """
        assert self.cluster is not None
        tag = self._tag(user)

        def found(holder: tuple[str, str] | None) -> None:
            if not user.connected:
                return
            if holder is None:
                self._error(
                    user,
                    "no-such-nick",
                    f"nobody here is called {shortened(nick)}",
                    tag,
                )
            else:
                then(holder[1] or normalize_nick(nick))

        self.cluster.whereabouts(nick_key(normalize_nick(nick))).addCallbacks(
            found,
            lambda f: (
                self._error(
                    user,
                    "no-such-nick",
                    f"{shortened(nick)} cannot be looked up now",
                    tag,
                )
                if user.connected
                else None
            ),
        )

    def _msg_remote(self, user: User, nick: str, text: str) -> None:
        assert self.cluster is not None
        self.metrics.received_from(user.door)
        message = events.PrivateMessage(
            self._clock.seconds(),
            user.nick,
            user.door,
            user.colour,
            normalize_nick(nick),
            text,
            True,
        )
        self.cluster.share(
            replace(message, outgoing=False), nicks=(nick_key(normalize_nick(nick)),)
        )
        self._tell(user, message)

    def _colour(self, user: User, choice: str | None) -> None:
        if choice is None:
            names = ", ".join(PALETTE)
            state = "on" if user.show_colours else "off"
            self._tell(
                user,
                events.Status(
                    f"your colour is {user.colour.name}; colours are {state}; "
                    f"choose from: {names}"
                ),
            )
        elif choice in ("on", "off"):
            user.show_colours = choice == "on"
            self._tell(user, events.Status(f"colours are {choice}"))
        elif choice in PALETTE:
            user.colour = PALETTE[choice]
            self._tell(user, events.Status(f"your colour is now {choice}"))
        else:
            self._error(
                user,
                "bad-arguments",
                f"no colour called {_quoted(choice)}; choose from: "
                f"{', '.join(PALETTE)}, or on/off",
            )

    # -- history -----------------------------------------------------------

    def _page(
        self, user: User, limit: int, name: str | None, before: int | None
    ) -> None:
        room = self._joined_room(user, name)
        if room is None:
            return
        upto = (
            room.delivered_id if before is None else min(before - 1, room.delivered_id)
        )

        def show(found: list[events.RoomMessage]) -> None:
            more = len(found) > limit
            shown = tuple(found[-limit:])
            self._tell(
                user,
                events.History(room.name, room.epoch, shown, "page", more=more),
            )

        self._read(user, room, room.pruned_to, upto, limit + 1, show, newest=True)

    def _read(
        self,
        user: User,
        room: Room,
        after: int,
        upto: int,
        limit: int,
        then: Callable[[list[events.RoomMessage]], None],
        newest: bool = False,
        on_error: bool = False,
    ) -> None:
        """
        Fetch C{room}'s messages with C{after < id <= upto} (the oldest
        C{limit} of them, or the newest with C{newest}), from memory when
        the latest ones cover it, else from the store; meanwhile, hold
        C{user}'s live messages for the room so they follow, in order.
        """
        if upto <= after:
            then([])
            return
        recent = room.recent
        if recent and recent[0].id <= after + 1 and recent[-1].id >= upto:
            chosen = [m for m in recent if after < m.id <= upto]
            then(chosen[-limit:] if newest else chosen[:limit])
            return
        count, held = user.holding.get(room, (0, []))
        user.holding[room] = (count + 1, held)
        if newest:
            reading = self.store.read(
                room_key(room.name), after, before=upto + 1, limit=limit
            )
        else:
            reading = self.store.read(room_key(room.name), after, upto, limit=limit)

        def release(result: object) -> None:
            if not user.connected:
                return
            if isinstance(result, Failure):
                if result.check(ConnectionError):
                    # The cluster's Redis is unreachable: said once already.
                    self._log.warn(
                        "history: reading {room}: {why}",
                        room=room.name,
                        why=result.value,
                    )
                else:
                    self._log.failure("history: reading {room}", result, room=room.name)
                self._error(
                    user,
                    "history-unavailable",
                    f"the history of {room.name} cannot be read right now",
                )
                if on_error:
                    then(None)  # type: ignore[arg-type]
            else:
                then(result)  # type: ignore[arg-type]
            count, held = user.holding.get(room, (1, []))
            if count > 1:
                user.holding[room] = (count - 1, held)
                return
            user.holding.pop(room, None)
            if user in room.members:
                for event in held:
                    self._tell(user, event)

        reading.addBoth(release)

    def _resume_point(
        self, room: Room, last_id: int, epoch: int | None
    ) -> tuple[int, bool]:
        """
        Where to resume C{room} for a client that has its messages up to
        C{last_id} in C{epoch}.

        @return: The id after which to send messages, and whether that
            leaves nothing out.
        """
        after, complete = last_id, True
        if epoch is not None and epoch != room.epoch:
            epochs = [e for e, _ in room.lineage]
            if epoch not in epochs:
                # History the client saw is gone altogether: show the
                # latest, and say there is a gap.
                after = max(room.delivered_id - self.history.replay, 0)
                complete = False
            else:
                # Ids before the next epoch's first are shared by both.
                following = room.lineage[epochs.index(epoch) + 1][1]
                if last_id >= following:
                    after, complete = following - 1, False
        after = min(after, room.delivered_id)
        if after < room.pruned_to:
            after, complete = room.pruned_to, False
        return max(after, 0), complete

    def _resume_points(
        self, user: User, points: Iterable[tuple[str, int, int | None]]
    ) -> None:
        # Rooms are joined as needed, but where the user talks stays theirs
        # to choose.
        current = user.current
        for name, last_id, epoch in points:
            self._resume_named(user, name, last_id, epoch)
        if current is not None and current in user.rooms:
            user.current = current

    def _resume_named(
        self, user: User, name: str, last_id: int, epoch: int | None
    ) -> None:
        normal = self._room_name(user, name)
        if normal is None:
            return
        room = self._rooms.get(room_key(normal))
        if room is None:
            room = self._new_room(normal)
        self._resume_room(user, room, last_id, epoch)

    def _resume_room(
        self, user: User, room: Room, last_id: int, epoch: int | None
    ) -> None:
        """
        Send C{user} the messages of C{room} they missed, joining it first
        if needed, then a C{resume} history that says if anything is gone.
        """
        after, complete = self._resume_point(room, last_id, epoch)
        if user in room.members:
            # This connection already has what follows its replay.
            upto = room.members[user] - 1
            room.members[user] = min(room.members[user], after + 1)
        else:
            self._join(user, room, replay=False)
            upto = room.delivered_id
        snapshot = room.delivered_id

        def send(found: list[events.RoomMessage] | None) -> None:
            # None: the store could not be read; the user was told, and
            # the resume ends as incomplete.
            self._tell(
                user,
                events.History(
                    room.name,
                    room.epoch,
                    tuple(found or ()),
                    "resume",
                    complete=complete and found is not None,
                    last_id=snapshot,
                ),
            )

        self._read(user, room, after, upto, self.history.keep, send, on_error=True)

    def _resume_code(self, user: User, typed: str) -> None:
        code = normalize_code(typed)
        ban = self._find_ban(session=code)
        if ban is not None:
            self._error(user, "banned", self._banned_text(ban))
            self._leave(user, "quit", "banned")
            user.participant.close("banned", "policy")
            return
        if code == user.code:
            self._error(user, "bad-arguments", "that is this connection's own code")
            return
        live = self._by_code.get(code)
        if live is not None:
            # The old connection is still here (its loss not yet noticed):
            # take over from it.
            session = self._session(live)
            self._tell(live, events.Goodbye("resumed by a new connection"))
            live.participant.close("resumed by a new connection")
            self._leave(live, "quit", "reconnected")
            self._restore(user, session)
            return
        found = self.store.session(
            code, self._clock.seconds() - self.history.resume_ttl
        )

        def restore(session: Session | None) -> None:
            if not user.connected:
                return
            if session is None or session.code in self._by_code:
                self._error(
                    user,
                    "no-such-session",
                    f"no session has the code {typed.strip()[:16]!r} (codes "
                    f"expire {self.history.resume_ttl // 3600} hours after you leave)",
                )
                return
            self._restore(user, session)

        def failed(why: Failure) -> None:
            self._log.warn("history: reading a session: {why}", why=why.value)
            if user.connected:
                self._error(
                    user,
                    "history-unavailable",
                    "resume codes cannot be checked right now; try again soon",
                )

        found.addCallback(restore).addErrback(failed)

    def _restore(self, user: User, session: Session) -> None:
        """
        Make C{user} who they were in C{session}: code, nick, colour,
        rooms, and the messages they missed.
        """
        cluster = self.cluster
        old = cluster.owner(user) if cluster is not None else ""
        del self._by_code[user.code]
        user.code = session.code
        self._by_code[user.code] = user
        self._take_mute(user)
        if session.nick == user.nick:
            self._restored(user, session)
            return
        holder = self._users.get(nick_key(session.nick))
        if self._find_ban(nick=session.nick) is not None:
            self._error(
                user,
                "banned",
                f"the nick {session.nick} is banned; you stay {user.nick}",
            )
        elif holder is None and cluster is not None and cluster.up:

            def claimed(outcome: int) -> None:
                if not user.connected:
                    return
                if outcome and nick_key(session.nick) not in self._users:
                    cluster.release(nick_key(user.nick), old)
                    self._rename(user, session.nick)
                else:
                    self._error(
                        user,
                        "nick-taken",
                        f"{session.nick} is in use by someone else now; "
                        f"you stay {user.nick}",
                    )
                self._restored(user, session)

            cluster.claim(user, nick_key(session.nick), takeover=True).addCallbacks(
                claimed, lambda f: claimed(0)
            )
            return
        elif holder is None:
            self._rename(user, session.nick)
        else:
            self._error(
                user,
                "nick-taken",
                f"{session.nick} is in use by someone else now; you stay {user.nick}",
            )
        self._restored(user, session)

    def _restored(self, user: User, session: Session) -> None:
        """The rest of L{_restore}, once the nick is settled."""
        self._with_rooms(
            user,
            [name for name, _, _ in session.rooms],
            lambda: self._rejoin(user, session),
        )

    def _rejoin(self, user: User, session: Session) -> None:
        if session.colour in PALETTE:
            user.colour = PALETTE[session.colour]
        user.show_colours = session.show_colours
        wanted = {room_key(name) for name, _, _ in session.rooms}
        self._tell(
            user,
            events.Status(
                f"welcome back, {user.nick}: "
                + (
                    "restoring " + ", ".join(n for n, _, _ in session.rooms)
                    if session.rooms
                    else "you were in no room"
                ),
            ),
        )
        for name, epoch, last_id in session.rooms:
            room = self._rooms.get(room_key(name)) or self._new_room(name)
            self._resume_room(user, room, last_id, epoch)
        for room in list(user.rooms):
            if room_key(room.name) not in wanted:
                self._part_from(user, room)
        current = self._rooms.get(room_key(session.current or ""))
        if current is not None and current in user.rooms:
            user.current = current
        self._save_session(user)

    def _session(self, user: User) -> Session:
        return Session(
            user.code,
            user.nick,
            user.colour.name,
            user.show_colours,
            tuple((r.name, r.epoch, r.delivered_id) for r in user.rooms),
            user.current.name if user.current is not None else None,
            self._clock.seconds(),
        )

    def _save_session(self, user: User) -> None:
        if self.history.resume_ttl:
            self.store.save_session(self._session(user))

    def _unused_code(self) -> str:
        while True:
            code = _code()
            if code not in self._by_code:
                return code

    def _quit(self, user: User, reason: str | None) -> None:
        reason = clean_text(reason).strip() if reason else None
        self._tell(user, events.Goodbye(reason or "bye"))
        self._leave(user, "quit", reason)
        user.participant.close("quit")

    # -- reloading -----------------------------------------------------------

    def reconfigure(
        self,
        server: ServerConfig,
        history: HistoryConfig,
        operators: OperatorsConfig,
        limits: LimitsConfig | None = None,
    ) -> None:
        """
        Apply a reloaded C{tap.ini}: the server's name, MOTD, default room
        and shutdown grace; how much history is kept, replayed and resumed
        (where it is kept needs a restart); the operator accounts; and the
        limits (rates start afresh).  Nobody is disconnected.
        """
        if limits is not None and limits != self.limits:
            self.limits = limits
            self.admission.reconfigure(limits)
            for user in self._users.values():
                user.sending = user.nick_changes = user.joins = None
                user.flood_dropped = -1
            for room in self._rooms.values():
                room.sending = None
        if room_key(server.default_room) not in self._rooms:
            room = self._new_room(server.default_room)
            self.store.save_room(room.record())
            room.stored = True
        self.config = server
        replay = min(history.replay, history.keep) or 1
        self.history = replace(
            self.history,
            keep=history.keep,
            replay=history.replay,
            resume_ttl=history.resume_ttl,
        )
        for room in self._rooms.values():
            if room.recent.maxlen != replay:
                room.recent = deque(room.recent, maxlen=replay)
        self.store.reconfigure(self.history)
        self.operators = operators
        for user in list(self._users.values()):
            account = user.operator
            if (
                account is not None
                and operators.hash_for(account) != user.operator_hash
            ):
                user.operator = user.operator_hash = None
                self._log.info(
                    "{nick} is no longer operator {account}: its password "
                    "changed or it was removed",
                    nick=user.nick,
                    account=account,
                )
                self._tell(
                    user,
                    events.Status(
                        f"you are no longer an operator: the account {account} "
                        "was changed or removed; /oper again"
                    ),
                )

    # -- operators ---------------------------------------------------------

    def _identity(self, user: User) -> str:
        """
        What a mute or a lock-out sticks to: the address of a clear-net
        user, the session of an onion user.
        """
        return user.address if user.address is not None else f"session:{user.code}"

    def _take_mute(self, user: User) -> None:
        """
        Mute C{user} if their address (or onion session) is muted: a
        reconnect does not shake off a mute.
        """
        key = self._identity(user)
        until = self._muted.get(key)
        if until is None:
            return
        if until > self._clock.seconds():
            user.muted_until = until
        else:
            del self._muted[key]

    def _oper(self, user: User, name: str, password: str) -> None:
        if user.oper_pending:
            self._error(user, "rate-limited", "your last /oper is still being checked")
            return
        now = self._clock.seconds()
        keys = (
            [(f"address:{user.address}", OPER_FAILURES)]
            if user.address is not None
            else [
                (f"connection:{id(user)}", OPER_FAILURES),
                ("onion", OPER_ONION_FAILURES),
            ]
        )
        for key, limit in keys:
            failures = self._oper_failures.get(key)
            while failures and failures[0] <= now - OPER_WINDOW:
                failures.popleft()
            if failures is not None and not failures:
                del self._oper_failures[key]
            elif failures is not None and len(failures) >= limit:
                wait = int(failures[0] + OPER_WINDOW - now) + 1
                self.metrics.limit("oper")
                self._log.warn(
                    "refused /oper from {nick} ({door}, {address}): too many "
                    "failed attempts",
                    nick=user.nick,
                    door=user.door,
                    address=user.address or "onion",
                )
                self._error(
                    user,
                    "rate-limited",
                    f"too many failed /oper attempts; try again in {wait} s",
                )
                return
        if self._verifying >= MAX_VERIFYING:
            self.metrics.limit("oper-busy")
            self._error(
                user,
                "rate-limited",
                "the server is busy checking passwords; try again in a moment",
            )
            return
        encoded = self.operators.hash_for(name)
        user.oper_pending = True
        self._verifying += 1

        def checked(ok: object) -> None:
            self._verifying -= 1
            user.oper_pending = False
            if not user.connected:
                return
            if ok is True and self.operators.hash_for(name) == encoded:
                user.operator, user.operator_hash = name, encoded
                self._log.info(
                    "{nick} ({door}, {address}) is now operator {account}",
                    nick=user.nick,
                    door=user.door,
                    address=user.address or "onion",
                    account=name,
                )
                self._tell(
                    user,
                    events.Status(
                        f"you are now an operator ({name}); /help lists "
                        "the operator commands"
                    ),
                )
                return
            if ok is not True and ok is not False:
                self._log.failure("checking an operator password", ok)  # type: ignore[arg-type]
            for key, _ in keys:
                self._oper_failures.setdefault(key, deque()).append(now)
            self.metrics.drop("oper-failed")
            self._log.warn(
                "failed /oper as {account!r} by {nick} ({door}, {address})",
                account=name[:32],
                nick=user.nick,
                door=user.door,
                address=user.address or "onion",
            )
            self._error(user, "oper-failed", "wrong operator name or password")

        maybeDeferred(self._verify, password, encoded).addBoth(checked)

    def _operator_notice(
        self,
        oper: "User | _Acting",
        kind: events.NoticeKind,
        text: str,
        audience: Iterable[User] = (),
        room: str | None = None,
    ) -> None:
        """
        Log an operator's action and show it to C{audience}, the operator
        and every other operator.
        """
        assert oper.operator is not None
        self.metrics.operator_action(kind)
        self._log.info(
            "operator {account} ({nick}, {door}): {text}",
            account=oper.operator,
            nick=oper.nick,
            door=oper.door,
            text=text,
        )
        told: dict[User, None] = dict.fromkeys(audience)
        if isinstance(oper, User):
            told[oper] = None
        told.update(dict.fromkeys(u for u in self._users.values() if u.operator))
        notice = events.Notice(self._clock.seconds(), kind, oper.nick, text, room)
        self._fan_out(told, notice)
        if self.cluster is not None:
            # Elsewhere: the operators, and whoever shares a room with the
            # people concerned (everyone for an announcement).
            rooms = {room_key(r.name) for u in told for r in u.rooms if u is not oper}
            self.cluster.share(
                notice,
                sorted(rooms),
                operators=True,
                everyone=kind in ("announce", "motd"),
            )

    def _target(self, oper: User, nick: str) -> User | None:
        """
        The user called C{nick}, or C{None} after telling C{oper} there is
        nobody by that name.
        """
        target = self._users.get(nick_key(normalize_nick(nick)))
        if target is None:
            self._error(
                oper, "no-such-nick", f"nobody here is called {shortened(nick)}"
            )
        return target

    def _send_off(self, target: User, by: str, why: str, reason: str | None) -> None:
        """
        Disconnect C{target} on an operator's order, telling them why.
        """
        said = f"{why} by {by}" + (f": {reason}" if reason else "")
        self._tell(target, events.Goodbye(said))
        self._leave(target, "quit", said)
        target.participant.close(why, "policy")

    def _elsewhere(self, oper: User, nick: str, **request: Any) -> bool:
        """
        If someone on another node has C{nick}, have their node carry out
        C{request} for C{oper} (an operator command) and return C{True}.
        """
        cluster = self.cluster
        key = nick_key(normalize_nick(nick))
        if cluster is None or not cluster.up or key in self._users:
            return False
        by = {"by": oper.nick, "account": oper.operator, "door": oper.door}
        self._remote(
            oper,
            nick,
            lambda _: cluster.send("op", to=key, **by, **request).addErrback(
                lambda f: self._error(oper, "not-stored", "the cluster did not answer")
            ),
        )
        return True

    def bus_op(self, request: dict[str, Any]) -> None:
        """
        Another node's operator acts on a user of this node: do as
        L{_kick}, L{_mute} or L{_unmute} would have, on their behalf.
        """
        target = self._users.get(str(request.get("to")))
        if target is None:
            return
        oper = _Acting(
            str(request["by"]), str(request["account"]), str(request["door"])
        )
        match request.get("do"):
            case "kick":
                self._kick_user(oper, target, request.get("reason"))
            case "mute":
                self._mute_user(oper, target, request.get("duration"))
            case "unmute":
                self._unmute_user(oper, target)
            case "ban":
                self._make_bans(
                    oper,
                    self._user_ban_patterns(target),
                    request.get("duration"),
                    request.get("reason"),
                )

    def _kick(self, oper: User, nick: str, reason: str | None) -> None:
        if self._elsewhere(oper, nick, do="kick", reason=reason):
            return
        target = self._target(oper, nick)
        if target is None:
            return
        self._kick_user(oper, target, reason)

    def _kick_user(
        self, oper: "User | _Acting", target: User, reason: str | None
    ) -> None:
        text = f"{oper.nick} kicked {target.nick} ({target.door})" + (
            f": {reason}" if reason else ""
        )
        self._operator_notice(oper, "kick", text, self._audience(target))
        self._send_off(target, oper.nick, "kicked", reason)

    def _ban(
        self, oper: User, target: str, duration: int | None, reason: str | None
    ) -> None:
        assert oper.operator is not None
        if _names_a_user(target) and self._elsewhere(
            oper, target, do="ban", duration=duration, reason=reason
        ):
            return
        wanted = self._ban_patterns(oper, target)
        if wanted is None:
            return
        self._make_bans(oper, wanted, duration, reason)

    def _make_bans(
        self,
        oper: "User | _Acting",
        wanted: list[tuple[BanKind, str]],
        duration: int | None,
        reason: str | None,
    ) -> None:
        """Number the bans C{wanted} (in the cluster, if any), then apply them."""
        cluster = self.cluster
        if cluster is not None and cluster.up:
            numbering = cluster.ban_numbers(len(wanted))
            numbering.addCallback(
                lambda ids: self._apply_bans(oper, wanted, ids, duration, reason)
            ).addErrback(lambda f: self._log.warn("ban not made: {why}", why=f.value))
            return
        ids = []
        for _ in wanted:
            # Never the number of a ban lifted since start: "/unban 3" must
            # not lift another ban than the one the operator saw as #3.
            self._last_ban = max(self._last_ban, *self._bans, 0) + 1
            ids.append(self._last_ban)
        self._apply_bans(oper, wanted, ids, duration, reason)

    def _apply_bans(
        self,
        oper: "User | _Acting",
        wanted: list[tuple[BanKind, str]],
        ids: Iterable[int],
        duration: int | None,
        reason: str | None,
    ) -> None:
        assert oper.operator is not None
        now = self._clock.seconds()
        expires = now + duration if duration is not None else None
        made = []
        for (kind, pattern), number in zip(wanted, ids, strict=True):
            ban = BanRecord(
                number,
                kind,
                pattern,
                reason or "",
                oper.operator,
                now,
                expires,
            )
            self._bans[ban.id] = ban
            self.store.save_ban(ban)
            made.append(ban)
        if self.cluster is not None:
            self.cluster.send(
                "ban",
                bans=[asdict(b) for b in made],
                by=oper.nick,
                reason=reason,
                duration=duration,
            ).addErrback(lambda f: None)
        self._banned(oper, made, duration, reason)

    def bus_ban(self, request: dict[str, Any]) -> None:
        """Another node's operator made bans: apply them to this node's users."""
        made = [BanRecord(**data) for data in request["bans"]]
        for ban in made:
            self._bans[ban.id] = ban
        hit = [
            u for u in self._users.values() if any(self._ban_hits(b, u) for b in made)
        ]
        if not hit:
            return
        by, reason = str(request["by"]), request.get("reason")
        what = " and ".join(_describe_ban(b) for b in made)
        text = f"{by} banned {what} {describe_duration(request.get('duration'))}" + (
            f": {reason}" if reason else ""
        )
        audience: dict[User, None] = {}
        for user in hit:
            audience.update(self._audience(user))
        self._fan_out(audience, events.Notice(self._clock.seconds(), "ban", by, text))
        for user in hit:
            if user.operator is None:
                self._send_off(user, by, "banned", reason)

    def _banned(
        self,
        oper: "User | _Acting",
        made: list[BanRecord],
        duration: int | None,
        reason: str | None,
    ) -> None:
        hit = [
            u
            for u in self._users.values()
            if u is not oper and any(self._ban_hits(b, u) for b in made)
        ]
        what = " and ".join(_describe_ban(b) for b in made)
        text = f"{oper.nick} banned {what} {describe_duration(duration)}" + (
            f": {reason}" if reason else ""
        )
        audience: dict[User, None] = {}
        for user in hit:
            audience.update(self._audience(user))
        if self.cluster is not None:
            # Their node tells the people who share a room with the others.
            self._operator_notice(oper, "ban", text, ())
            self._fan_out(
                audience, events.Notice(self._clock.seconds(), "ban", oper.nick, text)
            )
        else:
            self._operator_notice(oper, "ban", text, audience)
        for user in hit:
            if user.operator is not None:
                continue  # operators are told, not thrown out
            self._send_off(user, oper.nick, "banned", reason)

    def _ban_patterns(
        self, oper: User, target: str
    ) -> list[tuple[BanKind, str]] | None:
        """
        What C{/ban TARGET} bans, telling the operator when it cannot be.
        """
        kind, sep, rest = target.partition(":")
        if sep and kind.lower() == "nick":
            pattern = nick_key(rest)
            if not pattern:
                self._error(oper, "bad-arguments", "nick: needs a nick or pattern")
                return None
            return [("nick", pattern)]
        address = rest if sep and kind.lower() == "ip" else target
        try:
            network = ipaddress.ip_network(address, strict=False)
        except ValueError:
            if sep and kind.lower() == "ip":
                self._error(
                    oper, "bad-arguments", f"{_quoted(rest)} is not an IP address"
                )
                return None
        else:
            return [("address", str(network))]
        if "*" in target or "?" in target:
            return [("nick", nick_key(target))]
        user = self._target(oper, target)
        if user is None:
            self._error(
                oper,
                "bad-arguments",
                f"/ban nick:{target} bans the nick itself, even when nobody has it",
            )
            return None
        if user is oper:
            self._error(oper, "bad-arguments", "you cannot ban yourself")
            return None
        return self._user_ban_patterns(user)

    def _user_ban_patterns(self, user: User) -> list[tuple[BanKind, str]]:
        """What banning C{user} bans."""
        if user.address is not None:
            return [("address", str(ipaddress.ip_network(user.address)))]
        # Onion users all come from the local tor: their session (resume
        # code) and their nick are what can be banned.
        return [("session", user.code), ("nick", nick_key(user.nick))]

    def _ban_hits(self, ban: BanRecord, user: User) -> bool:
        return _ban_matches(ban, user.address, nick_key(user.nick), user.code)

    def _find_ban(
        self,
        address: str | None = None,
        nick: str | None = None,
        session: str | None = None,
    ) -> BanRecord | None:
        """
        The ban in force on an address, a nick or a session, if any;
        lapsed bans are dropped on the way.
        """
        if not self._bans:
            return None
        now = self._clock.seconds()
        key = nick_key(nick) if nick is not None else None
        for ban in list(self._bans.values()):
            if ban.expires is not None and ban.expires <= now:
                del self._bans[ban.id]
                self.store.delete_ban(ban.id)
                continue
            if _ban_matches(ban, address, key, session):
                return ban
        return None

    def _banned_text(self, ban: BanRecord) -> str:
        until = (
            ""
            if ban.expires is None
            else f" for {describe_span(ban.expires - self._clock.seconds())}"
        )
        because = f": {ban.reason}" if ban.reason else ""
        return f"you are banned from {self.config.name}{until}{because}"

    def _unban(self, oper: User, target: str) -> None:
        number = target.lstrip("#")
        found: list[BanRecord] = []
        if number.isdecimal():
            ban = self._bans.get(int(number))
            found = [ban] if ban is not None else []
        else:
            kind, sep, rest = target.partition(":")
            text = rest if sep and kind.lower() in ("ip", "nick") else target
            try:
                canonical = str(ipaddress.ip_network(text, strict=False))
            except ValueError:
                canonical = nick_key(text)
            found = [b for b in self._bans.values() if b.pattern == canonical]
        if not found:
            self._error(
                oper,
                "bad-arguments",
                f"no ban matches {_quoted(target)}; /bans lists them",
            )
            return
        for ban in found:
            del self._bans[ban.id]
            self.store.delete_ban(ban.id)
        if self.cluster is not None:
            self.cluster.send("unban", ids=[b.id for b in found]).addErrback(
                lambda f: None
            )
        what = " and ".join(f"#{b.id} ({_describe_ban(b)})" for b in found)
        self._operator_notice(oper, "unban", f"{oper.nick} lifted the ban {what}")

    def _list_bans(self, oper: User) -> None:
        self._find_ban()  # drops lapsed ones
        now = self._clock.seconds()
        lines = tuple(
            f"#{b.id} {_describe_ban(b)} by {b.by} "
            + describe_duration(None if b.expires is None else b.expires - now)
            + (f": {b.reason}" if b.reason else "")
            for b in sorted(self._bans.values(), key=lambda b: b.id)
        )
        data = {
            "bans": [
                {
                    "id": b.id,
                    "kind": b.kind,
                    "pattern": b.pattern,
                    "reason": b.reason,
                    "by": b.by,
                    "expires": b.expires,
                }
                for b in self._bans.values()
            ]
        }
        title = f"{len(lines)} bans in force" if lines else "no bans in force"
        self._tell(oper, events.Listing("bans", title, lines or (), data))

    def _is_muted(self, user: User) -> bool:
        """
        Whether C{user} may not talk now; tells them so.
        """
        until = user.muted_until
        if until is None:
            return False
        now = self._clock.seconds()
        if until <= now:
            user.muted_until = None
            return False
        self.metrics.drop("muted")
        left = "" if math.isinf(until) else " " + describe_duration(until - now)
        self._error(user, "muted", f"an operator muted you{left}; you can still read")
        return True

    def _mute(self, oper: User, nick: str, duration: int | None) -> None:
        if self._elsewhere(oper, nick, do="mute", duration=duration):
            return
        target = self._target(oper, nick)
        if target is None:
            return
        self._mute_user(oper, target, duration)

    def _mute_user(
        self, oper: "User | _Acting", target: User, duration: int | None
    ) -> None:
        until = math.inf if duration is None else self._clock.seconds() + duration
        target.muted_until = until
        self._muted[self._identity(target)] = until
        text = (
            f"{oper.nick} muted {target.nick} ({target.door}) "
            f"{describe_duration(duration)}"
        )
        self._operator_notice(oper, "mute", text, self._audience(target))

    def _unmute(self, oper: User, nick: str) -> None:
        if self._elsewhere(oper, nick, do="unmute"):
            return
        target = self._target(oper, nick)
        if target is None:
            return
        self._unmute_user(oper, target)

    def _unmute_user(self, oper: "User | _Acting", target: User) -> None:
        target.muted_until = None
        self._muted.pop(self._identity(target), None)
        text = f"{oper.nick} unmuted {target.nick} ({target.door})"
        self._operator_notice(oper, "unmute", text, self._audience(target))

    def _announce(self, oper: User, text: str) -> None:
        text = clean_text(text).strip()
        if text:
            self._operator_notice(oper, "announce", text, self._users.values())

    def _set_motd(self, oper: User, lines: tuple[str, ...]) -> None:
        lines = tuple(clean_text(line).strip() for line in lines)
        self.config = replace(self.config, motd=lines)
        if self.cluster is not None:
            self.cluster.send("motd", lines=list(lines)).addErrback(lambda f: None)
        self._operator_notice(
            oper,
            "motd",
            f"{oper.nick} changed the message of the day (/motd shows it)",
            self._users.values(),
        )

    def _rehash(self, oper: User) -> None:
        reloader = self.reloader
        if reloader is None:
            self._error(oper, "bad-arguments", "this server cannot reload its tap.ini")
            return

        def done(result: tuple[bool, str]) -> None:
            _, summary = result
            if oper.connected and oper.operator is not None:
                self._operator_notice(
                    oper, "rehash", f"{oper.nick} reloaded tap.ini: {summary}"
                )
            elif oper.connected:
                self._tell(oper, events.Status(f"tap.ini reloaded: {summary}"))

        reloader().addCallback(done).addErrback(
            lambda f: self._log.failure("reloading for /rehash", f)
        )

    # -- statistics ----------------------------------------------------------

    def stats(self, full: bool = False) -> dict[str, Any]:
        """
        What C{/stats} shows: to anyone, or (C{full}) to operators and the
        admin door.
        """
        now = self._clock.seconds()
        m = self.metrics
        data: dict[str, Any] = {
            "server": self.config.name,
            "users": self.users,
            "rooms": self.rooms,
            "uptime_seconds": round(now - self.started, 3),
            "messages_per_minute": {
                "1m": round(m.messages.per_minute(now, 60), 2),
                "15m": round(m.messages.per_minute(now, 900), 2),
            },
        }
        if full:
            data.update(
                users_by_door=self.users_by_door(),
                connections_total=dict(m.connections),
                messages_received=dict(m.received),
                messages_delivered=dict(m.delivered),
                operators_online=sum(1 for u in self._users.values() if u.operator),
                bans=len(self._bans),
                muted=sum(1 for u in self._users.values() if u.muted_until),
                history_queue=self.store.queued,
                dropped=dict(m.dropped),
                rate_limited=dict(m.rate_limited),
                reloads=dict(m.reloads),
                last_reload_ok=m.last_reload_ok,
                rss_bytes=_rss_bytes(),
            )
            if self.onion_status is not None:
                data["onion"] = self.onion_status()
            if self.cluster is not None:
                data["cluster"] = {
                    "node": self.cluster.node,
                    "state": "ok" if self.cluster.up else "unreachable",
                    "outages": self.cluster.outages,
                }
        return data

    def _show_stats(self, user: User) -> None:
        full = user.operator is not None
        data = self.stats(full)
        rates = data["messages_per_minute"]
        lines = [
            f"users: {data['users']}   rooms: {data['rooms']}   "
            f"up {describe_span(data['uptime_seconds'])}",
            f"messages per minute: {rates['1m']:g} (last minute), "
            f"{rates['15m']:g} (last 15 minutes)",
        ]
        if full:
            doors = ", ".join(
                f"{d} {n}" for d, n in sorted(data["users_by_door"].items())
            )
            lines += [
                f"users by door: {doors or 'none'}",
                "connections since start: "
                + ", ".join(f"{d} {n}" for d, n in data["connections_total"].items()),
                "messages received: "
                + ", ".join(f"{d} {n}" for d, n in data["messages_received"].items()),
                f"operators online: {data['operators_online']}   bans: "
                f"{data['bans']}   muted: {data['muted']}",
                f"history writes queued: {data['history_queue']}",
                f"reloads: {data['reloads']['ok']} ok, {data['reloads']['failed']} "
                "failed",
            ]
            if data["rss_bytes"]:
                lines.append(f"memory: {data['rss_bytes'] / 1048576:.1f} MiB")
            if "onion" in data:
                lines.append(f"onion: {data['onion'].get('state')}")
            if "cluster" in data:
                lines.append(
                    f"cluster: node {data['cluster']['node']}, "
                    f"{data['cluster']['state']}"
                )
        self._tell(
            user,
            events.Listing("stats", f"{self.config.name} stats", tuple(lines), data),
        )

    # -- leaving -----------------------------------------------------------

    def _audience(self, user: User) -> dict[User, None]:
        """
        Everyone who shares a room with C{user}, and C{user}: the people
        told about a change that concerns all of C{user}'s rooms, once each.
        """
        audience: dict[User, None] = {user: None}
        for room in user.rooms:
            audience.update(dict.fromkeys(room.members))
        return audience

    def _leave(self, user: User, kind: events.PresenceKind, reason: str | None) -> None:
        if not user.moved:
            self._save_session(user)
        user.connected = False
        if self._by_code.get(user.code) is user:
            del self._by_code[user.code]
        audience = self._audience(user)
        del audience[user]
        rooms = [room_key(r.name) for r in user.rooms]
        for room in list(user.rooms):
            self._remove_member(user, room)
        del self._users[nick_key(user.nick)]
        cluster = self.cluster
        if cluster is not None:
            if self._stopping:
                kind, reason = "quit", "server shutting down"
            cluster.share(
                events.Presence(
                    self._clock.seconds(), kind, user.nick, user.door, reason=reason
                ),
                rooms,
            )
            cluster.unregister(nick_key(user.nick), rooms, None)
            if not user.moved:
                cluster.release(nick_key(user.nick), cluster.owner(user))
            cluster.forget(user)
        if self._stopping:
            # Everyone is leaving: nobody needs to hear about the others.
            drained = self._drained
            if not self._users and drained is not None and not drained.called:
                drained.callback(None)
            return
        notice = events.Presence(
            self._clock.seconds(), kind, user.nick, user.door, reason=reason
        )
        self._fan_out(audience, notice)

    # -- the cluster's side: what Cluster asks of this node ---------------

    @property
    def stopping(self) -> bool:
        """Whether L{stop} was called."""
        return self._stopping

    def new_epoch(self) -> int:
        """A new epoch number: the time in milliseconds."""
        return max(1, int(self._clock.seconds() * 1000))

    def local_users(self) -> list[User]:
        """The users connected to this node."""
        return list(self._users.values())

    def all_rooms(self) -> list[Room]:
        """The rooms this node knows."""
        return list(self._rooms.values())

    def user_by_key(self, key: str) -> User | None:
        """This node's user whose nick has the key C{key}."""
        return self._users.get(key)

    @staticmethod
    def key_of(user: User) -> str:
        """The key of C{user}'s nick."""
        return nick_key(user.nick)

    @staticmethod
    def key_of_room(room: Room) -> str:
        """The key of C{room}'s name."""
        return room_key(room.name)

    def room_name(self, key: str) -> str:
        """The name of the room with key C{key}."""
        room = self._rooms.get(key)
        return room.name if room is not None else key

    def tell(self, user: User, event: events.Event) -> None:
        """Deliver C{event} to C{user}."""
        self._tell(user, event)

    def nick_lost(self, user: User) -> None:
        """
        Another node's user has C{user}'s nick (both were given it while
        the cluster was split): this one takes a guest nick.
        """
        old = user.nick
        self._rename(user, self._guest_nick(), chosen=False)
        self._error(
            user,
            "nick-taken",
            f"{old} is in use on another server of this chat; you are {user.nick} now",
        )
        if self.cluster is not None and self.cluster.up:
            self._claim_guest(user)

    def share_presence(self, user: User, kind: events.PresenceKind, room: Room) -> None:
        """Tell the other nodes that C{user} is in C{room} (after a split)."""
        if self.cluster is not None:
            notice = events.Presence(
                self._clock.seconds(),
                kind,
                user.nick,
                user.door,
                room=room.name,
                epoch=room.epoch,
                last_id=room.delivered_id,
            )
            self.cluster.share(notice, (room_key(room.name),))

    def adopt_room(
        self,
        room: Room,
        epoch: int,
        lineage: list[tuple[int, int]],
        last_id: int,
        topic: str | None,
        topic_by: str | None,
    ) -> None:
        """Take the cluster's view of C{room}."""
        if not lineage or lineage[-1][0] != epoch:
            lineage = [*lineage, (epoch, last_id + 1)]
        room.epoch, room.lineage = epoch, lineage
        room.last_id = room.delivered_id = last_id
        room.cluster_epoch, room.cluster_id = epoch, last_id
        room.pruned_to = max(room.pruned_to, last_id - self.history.keep)
        room.topic, room.topic_by = topic, topic_by
        room.stored = True

    async def load_cluster_rooms(self) -> None:
        """Learn the rooms and bans the cluster has and this node does not."""
        from tchat.cluster import RedisStore

        store = self.store
        assert isinstance(store, RedisStore)
        loaded = await store.load_all()
        for record in loaded.rooms:
            room = self._rooms.get(record.key)
            if room is None:
                room = self._new_room(record.name, record.epoch)
            elif (
                room.cluster_epoch == record.epoch and room.cluster_id >= record.last_id
            ):
                continue
            if room.members:
                continue  # Cluster.resync catches it up for its members
            self.adopt_room(
                room,
                record.epoch,
                record.lineage,
                record.last_id,
                record.topic,
                record.topic_by,
            )
            await self._refill(room)
        for ban in loaded.bans:
            self._bans.setdefault(ban.id, ban)

    async def _refill(self, room: Room) -> None:
        """Load C{room}'s latest messages, for replay on join."""
        want = room.recent.maxlen or 1
        found = await self.store.read(
            room_key(room.name), room.pruned_to, room.last_id, room.last_id + 1, want
        )
        room.recent.clear()
        room.recent.extend(found)
        room.tagged = {m.client_id: m for m in found if m.client_id is not None}

    async def catch_up(self, room: Room, epoch: int, after: int) -> None:
        """
        After a split: send C{room}'s members what the cluster said after
        message C{after} of C{epoch}, as a resume, and refill the room.
        """
        if room.cluster_epoch == epoch and room.cluster_id > after and room.members:
            found = await self.store.read(
                room_key(room.name), after, room.cluster_id, limit=self.history.keep
            )
            complete = bool(found) and found[0].id == after + 1
            history = events.History(
                room.name,
                room.epoch,
                tuple(found),
                "resume",
                complete=complete,
                last_id=room.cluster_id,
            )
            self._fan_out(list(room.members), history)
        await self._refill(room)

    def bus_message(self, name: str, id: int, epoch: int, data: dict[str, Any]) -> None:
        """A room message from the bus, numbered by Redis: deliver it."""
        from tchat.cluster import message_from

        key = room_key(name)
        room = self._rooms.get(key)
        if room is None:
            room = self._new_room(name, epoch)
            room.stored = True
        elif epoch == room.cluster_epoch and id <= room.cluster_id:
            return  # had it already (a catch-up after a split sent it)
        message = message_from(room.name, id, epoch, data)
        if room.epoch != epoch:
            if epoch not in (e for e, _ in room.lineage):
                room.lineage.append((epoch, id))
            room.epoch = epoch
        room.cluster_epoch, room.cluster_id = epoch, id
        room.last_id = id
        self._kept(room, message)
        self._deliver_message(room, message, time.perf_counter())

    def bus_event(
        self,
        event: events.Event,
        rooms: Iterable[str],
        nicks: Iterable[str],
        operators: bool,
        everyone: bool,
    ) -> None:
        """Another node's event for users of this one."""
        if isinstance(event, events.TopicChanged):
            room = self._rooms.get(room_key(event.room))
            if room is not None:
                room.topic, room.topic_by = event.topic or None, event.nick
        audience: dict[User, None] = {}
        if everyone:
            audience.update(dict.fromkeys(self._users.values()))
        for key in rooms:
            room = self._rooms.get(key)
            if room is not None:
                audience.update(dict.fromkeys(room.members))
        for key in nicks:
            user = self._users.get(key)
            if user is not None:
                if isinstance(event, events.PrivateMessage):
                    event = replace(event, recipient=user.nick)
                audience[user] = None
        if operators:
            audience.update(
                dict.fromkeys(u for u in self._users.values() if u.operator)
            )
        if audience:
            self._fan_out(audience, event)

    def bus_lost(self, users: list[list[Any]]) -> None:
        """A node died: show its users as lost in their rooms."""
        now = self._clock.seconds()
        for nick, door, rooms, _ in users:
            audience: dict[User, None] = {}
            for key in rooms:
                room = self._rooms.get(key)
                if room is not None:
                    audience.update(dict.fromkeys(room.members))
            if audience:
                self._fan_out(audience, events.Presence(now, "lost", nick, door))

    def bus_request(self, kind: str, request: dict[str, Any]) -> None:
        """Another node asks this one to do something."""
        match kind:
            case "op":
                self.bus_op(request)
            case "ban":
                self.bus_ban(request)
            case "unban":
                for number in request.get("ids", ()):
                    self._bans.pop(int(number), None)
            case "motd":
                self.config = replace(self.config, motd=tuple(request["lines"]))
            case "takeover":
                if request.get("node") != (self.cluster and self.cluster.node):
                    return
                user = self._by_code.get(str(request.get("code")))
                if user is not None:
                    # The session went on on another node.
                    user.moved = True
                    self._tell(user, events.Goodbye("resumed by a new connection"))
                    user.participant.close("resumed by a new connection")
                    self._leave(user, "quit", "reconnected")

    # -- delivery ----------------------------------------------------------

    def _guest_nick(self) -> str:
        while True:
            nick = f"guest-{self._rng.getrandbits(16):04x}"
            if nick_key(nick) not in self._users:
                return nick

    def _tell(self, user: User, event: events.Event) -> None:
        self._fan_out((user,), event)

    def _fan_out(
        self,
        recipients: Iterable[User],
        event: events.Event,
        doors: dict[str, int] | None = None,
    ) -> None:
        """
        Deliver one event to many users, rendered once per wire format.

        A door that fails on one recipient must not cost the others the
        message, so failures are logged and delivery goes on.

        @param doors: For a room message to every member, the room's
            members by door: the delivery counts, added up front instead
            of one recipient at a time.
        """
        renderings = events.Renderings()
        kind = event.__class__
        message = kind is events.RoomMessage
        delivered = self.metrics.delivered
        count = kind is events.PrivateMessage or (message and doors is None)
        if message and doors is not None:
            for door, members in doors.items():
                delivered[door] = delivered.get(door, 0) + members
        for recipient in list(recipients):
            if message and recipient.holding:
                held = recipient.holding.get(self._rooms.get(room_key(event.room)))  # type: ignore[union-attr, arg-type]
                if held is not None:
                    held[1].append(event)
                    if not count:
                        delivered[recipient.door] -= 1
                    continue
            if count:
                delivered[recipient.door] = delivered.get(recipient.door, 0) + 1
            try:
                recipient.deliver(event, renderings)
            except Exception:
                self._log.failure(
                    "delivering a {kind} to {nick}",
                    kind=kind.__name__,
                    nick=recipient.nick,
                )


_ONLY_HERE = "the cluster is unreachable: this lists only what is on this server"


def _names_a_user(target: str) -> bool:
    """Whether C{/ban TARGET} names a user (not a nick pattern or address)."""
    kind, sep, _ = target.partition(":")
    if sep and kind.lower() in ("nick", "ip"):
        return False
    if "*" in target or "?" in target:
        return False
    try:
        ipaddress.ip_network(target, strict=False)
    except ValueError:
        return True
    return False


@dataclass(frozen=True)
class _Acting:
    """An operator on another node, acting on a user of this one."""

    nick: str
    operator: str
    door: str


def _quoted(text: str) -> str:
    """What a user typed, L{shortened} and quoted, for an error."""
    return repr(shortened(text))


def _per_second(rate: float, word: str) -> str:
    """C{1 line a second}, C{2.5 lines a second}."""
    return f"{rate:g} {word}{'' if rate == 1 else 's'} a second"


def _describe_ban(ban: BanRecord) -> str:
    match ban.kind:
        case "address":
            return f"address {ban.pattern}"
        case "nick":
            return f"nick {ban.pattern}"
    return f"onion session {ban.pattern}"


def _ban_matches(
    ban: BanRecord, address: str | None, key: str | None, session: str | None
) -> bool:
    """
    Whether C{ban} covers a client's address, nick (as L{nick_key}) or
    session; C{None} for what is not known.
    """
    match ban.kind:
        case "address":
            ip = parse_ip(address) if address else None
            return ip is not None and ip in parse_network(ban.pattern)
        case "nick":
            return key is not None and fnmatchcase(key, ban.pattern)
        case "session":
            return session == ban.pattern
    return False  # pragma: no cover


def _rss_bytes() -> int:
    """
    The process's resident memory, from /proc (a memory read, not disk);
    0 where there is no /proc.
    """
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    import resource

    return pages * resource.getpagesize()
