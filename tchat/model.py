# -*- test-case-name: tests.test_model -*-
"""
What the hub knows: its users, its rooms, and the directory of both.

Plain state with no events and no I/O.  Every concern of the hub (rooms,
presence, talk, resume, moderation, ...) and the backplane share one
L{Directory}, as the concerns of L{twisted.words.service} share one realm.
"""

from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from twisted.internet.interfaces import IReactorTime

from tchat import events
from tchat.commands import Command
from tchat.config import (
    AccountsConfig,
    HistoryConfig,
    LimitsConfig,
    OperatorsConfig,
    ServerConfig,
)
from tchat.history import Account, Loaded, RoomRecord
from tchat.interfaces import IParticipant
from tchat.limits import TokenBucket
from tchat.palette import Colour
from tchat.text import nick_key, room_key


@dataclass
class Settings:
    """
    The configuration in force, shared by every concern and replaced
    section by section when C{tap.ini} is reloaded.

    @ivar server: C{[server]}.
    @ivar history: C{[history]}.
    @ivar limits: C{[limits]}.
    @ivar operators: C{[operators]}.
    @ivar accounts: C{[accounts]}.
    """

    server: ServerConfig = field(default_factory=ServerConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    operators: OperatorsConfig = field(default_factory=OperatorsConfig)
    accounts: AccountsConfig = field(default_factory=AccountsConfig)


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
    @ivar tag: The client's tag of the request the hub is carrying out for
        this user right now, if it has one: errors it causes carry it.
    @ivar waiting: While one of the user's commands waits on I/O (a nick
        claim, a password check, a history read), the commands they sent
        after it, with their tags, to run in order once it is done.
    @ivar account: The registered account the user is logged in to, as
        the store last gave it (its C{name} is the user's nick).
    @ivar token: The SHA-256 digest of the login token this connection
        holds, if any (L{logout<tchat.accounts.Accounts.logout>} revokes it).
    @ivar away: The user's away message, while they are away.
    @ivar ignoring: The nicks whose room lines and private messages the
        user does not see, by key, as they typed them; C{None}: none.
    @ivar settled: Whether the others have been told the user is here.  A
        new connection is not announced until it shows it is not carrying
        on a session that is still here (see L{Presence.settle
        <tchat.presence.Presence.settle>}): until then only the user sees
        their joins and renames, and lists leave them out.
    @ivar ssh_key: The OpenSSH public key line (C{ssh-ed25519 AAAA...},
        as L{Key.toString("OPENSSH")<twisted.conch.ssh.keys.Key.toString>}
        gives it, decoded) of the key the user's SSH connection
        authenticated with, set by the SSH door; C{None} on other doors.
        C{/key add} alone adds it to the user's account.
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
    tag: str | None = None
    waiting: deque[tuple[Command, str | None]] | None = None
    account: Account | None = None
    token: str | None = None
    away: str | None = None
    ignoring: dict[str, str] | None = None
    settled: bool = True
    ssh_key: str | None = None
    deliver: Callable[[object, object], None] = field(init=False)

    def __post_init__(self) -> None:
        self.deliver = self.participant.deliver

    @property
    def key(self) -> str:
        """The key of the user's nick (see L{nick_key})."""
        return nick_key(self.nick)

    @property
    def registered(self) -> bool:
        """Whether the user is logged in to their nick's account."""
        return self.account is not None


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
        behind C{last_id} only while a message waits to be kept.
    @ivar pruned_to: Messages up to this id are no longer kept.
    @ivar recent: The latest delivered messages, replayed on join.
    @ivar tagged: Kept messages that carried a client id, by that id, to
        recognise a client's retry.
    @ivar stored: Whether the store knows the room yet.
    @ivar quiet_since: When the room was made, or its last member left.
    @ivar sending: The room's message rate limit, once someone talks.
    @ivar doors: How many members came by each door, for the delivery
        counts of a fan-out to all of them.
    @ivar colours: How many members have each colour: a newcomer gets one
        nobody there has, while there is one.
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
    quiet_since: float = 0.0
    sending: TokenBucket | None = None
    doors: dict[str, int] = field(default_factory=dict)
    colours: Counter[Colour] = field(default_factory=Counter)

    @property
    def key(self) -> str:
        """The key of the room's name (see L{room_key})."""
        return room_key(self.name)

    def record(self) -> RoomRecord:
        """This room as the store keeps it."""
        return RoomRecord(
            self.key,
            self.name,
            self.epoch,
            list(self.lineage),
            self.last_id,
            self.pruned_to,
            self.topic,
            self.topic_by,
        )

    def take(self, message: events.RoomMessage, keep: int) -> None:
        """
        C{message}, numbered and kept, is the room's latest: follow its
        epoch, remember its client tag (to recognise a retry), forget what
        falls out of the kept history, and have it replayed on join.

        @param keep: How many messages the history keeps per room.
        """
        if message.epoch != self.epoch:
            if message.epoch not in (e for e, _ in self.lineage):
                self.lineage.append((message.epoch, message.id))
            self.epoch = message.epoch
            self.last_id = message.id
        elif message.id > self.last_id:
            self.last_id = message.id
        # Numbered ahead of this one, others may still wait for the disk
        # (sync = full): they keep their numbers.
        self.delivered_id = message.id
        tagged = self.tagged
        if message.client_id is not None:
            tagged[message.client_id] = message
        floor = message.id - keep
        while tagged:
            oldest = next(iter(tagged.values()))
            if oldest.id > floor:
                break
            del tagged[oldest.client_id]  # type: ignore[arg-type]
        self.pruned_to = max(self.pruned_to, floor)
        self.recent.append(message)

    def split(self, epoch: int) -> None:
        """
        Start a new epoch with the next id: what is numbered from now on
        may not be what others number (this node is cut off from them).

        @param epoch: A fresh epoch number; the room's next one at least.
        """
        self.epoch = max(epoch, self.epoch + 1)
        self.lineage.append((self.epoch, self.last_id + 1))

    def adopt(self, record: RoomRecord) -> None:
        """
        Take another node's view of this room: its epoch, lineage, latest
        id, what is no longer kept, and its topic.
        """
        lineage = list(record.lineage)
        if not lineage or lineage[-1][0] != record.epoch:
            lineage.append((record.epoch, record.last_id + 1))
        self.epoch, self.lineage = record.epoch, lineage
        self.last_id = self.delivered_id = record.last_id
        self.pruned_to = max(self.pruned_to, record.pruned_to)
        self.topic, self.topic_by = record.topic, record.topic_by
        self.stored = True

    def refill(self, latest: Iterable[events.RoomMessage]) -> None:
        """
        Replace what is replayed on join, and the tags known, with
        C{latest} (the room's latest kept messages, oldest first).
        """
        self.recent.clear()
        self.recent.extend(latest)
        self.tagged = {m.client_id: m for m in self.recent if m.client_id is not None}


def member(user: User) -> events.Member:
    """C{user} as a C{/who} answer lists them."""
    return events.Member(
        user.nick, user.door, user.account is not None, user.away, user.colour
    )


def arrival(user: User, room: Room, now: float) -> events.Presence:
    """
    The notice that C{user} is in C{room}: with the room's epoch and latest
    id, so a client knows where it stands even in an empty room.
    """
    return events.Presence(
        now,
        "join",
        user.nick,
        user.door,
        room=room.name,
        epoch=room.epoch,
        last_id=room.delivered_id,
        registered=user.account is not None,
        colour=user.colour,
    )


class Directory:
    """
    Every connected user by nick and by resume code, and every room by
    name: the state the hub's concerns share.

    @ivar users: This node's users, by the key of their nick.
    @ivar codes: This node's users, by resume code.
    @ivar rooms: The rooms this node knows, by key.
    @ivar settings: The configuration in force.
    @ivar remembers: Whether a room with history that nobody here is in
        stays in memory: a node alone keeps it (it serves the history), a
        cluster node does not (the cluster's Redis does).
    @ivar forgotten: Called with each room forgotten for good (nothing was
        said there and nobody is in it), to drop what the store has of it.
    @ivar emptied: Called with each room the last member here left (or
        that nobody here came into after all).
    @ivar ignorers: This node's users who ignore someone: while there are
        none, a fan-out costs nothing more per recipient for ignores.
    """

    def __init__(self, clock: IReactorTime, settings: Settings) -> None:
        self._clock = clock
        self.now = clock.seconds
        self.settings = settings
        self.users: dict[str, User] = {}
        self.codes: dict[str, User] = {}
        self.rooms: dict[str, Room] = {}
        self.remembers = True
        self.ignorers: set[User] = set()
        self.forgotten: Callable[[Room], None] = lambda room: None
        self.emptied: Callable[[Room], None] = lambda room: None
        self.new_room(settings.server.default_room)

    def new_epoch(self) -> int:
        """A new epoch number: the time in milliseconds."""
        return max(1, int(self._clock.seconds() * 1000))

    def new_room(self, name: str, epoch: int | None = None) -> Room:
        """
        Make a room (replacing any of the same key) in a new epoch, or in
        C{epoch}.
        """
        if epoch is None:
            epoch = self.new_epoch()
        history = self.settings.history
        room = Room(name, epoch, deque(maxlen=min(history.replay, history.keep) or 1))
        room.lineage = [(epoch, 1)]
        room.quiet_since = self._clock.seconds()
        self.rooms[room.key] = room
        return room

    def restore(self, found: Loaded) -> None:
        """
        Make the rooms the store kept, with their latest messages and the
        client tags they know.
        """
        keep = self.settings.history.keep
        for record in found.rooms:
            room = self.new_room(record.name, record.epoch)
            room.lineage = record.lineage
            room.last_id = room.delivered_id = record.last_id
            room.pruned_to = max(record.pruned_to, record.last_id - keep)
            room.topic, room.topic_by = record.topic, record.topic_by
            room.recent.extend(found.recent.get(record.key, ()))
            for message in found.tagged.get(record.key, ()):
                assert message.client_id is not None
                room.tagged[message.client_id] = message
            room.stored = True

    def room(self, name: str) -> Room | None:
        """The room called C{name} (in any case), if this node knows it."""
        return self.rooms.get(room_key(name))

    def user(self, nick: str) -> User | None:
        """This node's user called C{nick} (in any case), if any."""
        return self.users.get(nick_key(nick))

    @property
    def lobby(self) -> Room:
        """The default room, where users arrive (made if missing)."""
        default = self.settings.server.default_room
        return self.room(default) or self.new_room(default)

    def operators(self) -> Iterator[User]:
        """This node's users who are operators."""
        return (u for u in self.users.values() if u.operator is not None)

    def add(self, user: User) -> None:
        """C{user} has arrived, under their nick and code."""
        self.users[user.key] = user
        self.codes[user.code] = user

    def remove(self, user: User) -> None:
        """C{user} left: forget their nick and code (not their rooms)."""
        self.ignorers.discard(user)
        if self.codes.get(user.code) is user:
            del self.codes[user.code]
        if self.users.get(user.key) is user:
            del self.users[user.key]

    def ignore(self, user: User, ignoring: dict[str, str] | None) -> None:
        """
        C{user} ignores the nicks with the keys of C{ignoring} from now on
        (C{None} or empty: nobody).  Fan-out looks for ignored senders only
        while someone ignores anyone (see L{ignorers}).
        """
        user.ignoring = ignoring or None
        if user.ignoring is None:
            self.ignorers.discard(user)
        elif user.connected:
            self.ignorers.add(user)

    def rename(self, user: User, nick: str) -> None:
        """C{user} is called C{nick} from now on."""
        del self.users[user.key]
        user.nick = nick
        self.users[user.key] = user

    def recode(self, user: User, code: str) -> None:
        """C{user}'s session has the resume code C{code} from now on."""
        if self.codes.get(user.code) is user:
            del self.codes[user.code]
        user.code = code
        self.codes[code] = user

    def recolour(self, user: User, colour: Colour) -> None:
        """C{user}'s nick is shown in C{colour} from now on."""
        for room in user.rooms:
            room.colours[user.colour] -= 1
            room.colours[colour] += 1
        user.colour = colour

    def enter(self, user: User, room: Room, first: int) -> None:
        """
        C{user} becomes a member of C{room}, where they talk from now on.

        @param first: The first message id they are given.
        """
        room.members[user] = first
        room.doors[user.door] = room.doors.get(user.door, 0) + 1
        room.colours[user.colour] += 1
        user.rooms.append(room)
        user.current = room

    def leave(self, user: User, room: Room) -> None:
        """
        C{user} is no longer a member of C{room} (see L{tidy}).
        """
        del room.members[user]
        room.doors[user.door] -= 1
        room.colours[user.colour] -= 1
        user.rooms.remove(room)
        if user.current is room:
            user.current = user.rooms[-1] if user.rooms else None
        user.holding.pop(room, None)
        if not room.members:
            room.quiet_since = self._clock.seconds()
        self.tidy(room)

    def tidy(self, room: Room) -> None:
        """
        Forget C{room} once nobody is in it, unless it is the default room:
        for good if nothing was said there (its topic goes with it), or
        from memory only when the room's history lives elsewhere (see
        L{remembers}).
        """
        key = room.key
        if room.members or self.rooms.get(key) is not room:
            return
        self.emptied(room)
        if key == room_key(self.settings.server.default_room):
            return
        if not room.last_id:
            del self.rooms[key]
            if room.stored:
                self.forgotten(room)
        elif not self.remembers:
            del self.rooms[key]

    def around(self, user: User) -> dict[User, None]:
        """
        Everyone who shares a room with C{user}, and C{user}: the people
        told about a change that concerns all of C{user}'s rooms, once each.
        """
        audience: dict[User, None] = {user: None}
        for room in user.rooms:
            audience.update(dict.fromkeys(room.members))
        return audience

    def resize_replay(self) -> None:
        """Apply a new C{[history] replay} to every room's replay buffer."""
        history = self.settings.history
        replay = min(history.replay, history.keep) or 1
        for room in self.rooms.values():
            if room.recent.maxlen != replay:
                room.recent = deque(room.recent, maxlen=replay)
