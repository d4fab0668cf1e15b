# -*- test-case-name: tests.test_hub -*-
"""
L{ChatFactory}: the one hub every door shares.

The hub owns users and rooms and applies the chat's rules. It knows no wire
format and no transport: doors adapt to it, turning bytes into
L{tchat.commands} values and rendering L{tchat.events} values back into bytes.
"""

import base64
import random
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tchat import events
from tchat.commands import (
    COMMANDS,
    Color,
    Command,
    Join,
    Me,
    Msg,
    Nick,
    Part,
    Quit,
    Resume,
    ResumeRooms,
    Rooms,
    Say,
    SetTopic,
    ShowHelp,
    ShowHistory,
    ShowMotd,
    WhoIs,
)
from tchat.config import HistoryConfig, ServerConfig
from tchat.history import HistoryStore, Loaded, MemoryStore, RoomRecord, Session
from tchat.interfaces import IParticipant
from tchat.palette import PALETTE, Colour, colour_for
from tchat.text import (
    clean_text,
    nick_key,
    nick_problem,
    normalize_nick,
    normalize_room,
    room_key,
    room_problem,
)

RESERVED_NICKS = frozenset({"server", "admin", "operator", "system", "root"})


@dataclass(eq=False)
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
    ) -> None:
        """
        @param config: The C{[server]} section.
        @param clock: Where timestamps come from.
        @param rng: Picks guest nicks; tests pass a seeded one.
        @param history: The C{[history]} section.
        @param store: Where history is kept; in memory by default.  Call
            L{start} before connecting anyone.
        """
        self.config = config
        self.history = history if history is not None else HistoryConfig()
        self.store: HistoryStore = (
            store if store is not None else MemoryStore(self.history)
        )
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
                room.recent.extend(found.recent.get(record.key, ()))
                for message in found.tagged.get(record.key, ()):
                    assert message.client_id is not None
                    room.tagged[message.client_id] = message
                room.stored = True
            if room_key(self.config.default_room) not in {r.key for r in found.rooms}:
                lobby = self._rooms[room_key(self.config.default_room)]
                self.store.save_room(lobby.record())
                lobby.stored = True
            waiting, self._ready = self._ready or [], None
            for d in waiting:
                d.callback(None)
            if found.lossy:
                self._log.warn(
                    "history: the last run did not stop cleanly, so its last "
                    "batch of messages may be lost; every room starts a new "
                    "epoch and resuming clients are told of the gap"
                )

        return self.store.load(self._clock.seconds()).addCallback(loaded)

    def stop(self) -> Deferred[None]:
        """
        Save everyone's resume code and write all queued history.

        @return: Fires when everything is on disk.
        """
        self._stopping = True
        for user in self._users.values():
            self._save_session(user)
        return self.store.close()

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
        user = User(participant, nick, participant.door, colour_for(nick))
        self._users[nick_key(nick)] = user
        user.code = self._unused_code()
        self._by_code[user.code] = user
        participant.attached(user)
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

    @property
    def users(self) -> int:
        """How many users are connected."""
        return len(self._users)

    @property
    def rooms(self) -> int:
        """How many rooms exist."""
        return len(self._rooms)

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
                self._tell(user, self._room_list())
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
                    events.Help(tuple((c.usage, c.description) for c in COMMANDS)),
                )
            case Quit(reason):
                self._quit(user, reason)
            case Color(choice):
                self._colour(user, choice)
            case ShowHistory(limit, room, before):
                self._page(user, limit, room, before)
            case Resume(code):
                self._resume_code(user, code)
            case ResumeRooms(points):
                # Rooms are joined as needed, but where the user talks
                # stays theirs to choose.
                current = user.current
                for name, last_id, epoch in points:
                    self._resume_named(user, name, last_id, epoch)
                if current is not None and current in user.rooms:
                    user.current = current

    def _error(self, user: User, code: events.ErrorCode, text: str) -> None:
        self._tell(user, events.Error(code, text))

    def _say(
        self,
        user: User,
        text: str,
        action: bool,
        room_name: str | None,
        client_id: str | None,
    ) -> None:
        text = clean_text(text).strip()
        if not text:
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
        if not room.stored:
            self.store.save_room(room.record())
            room.stored = True
        room.last_id += 1
        message = events.RoomMessage(
            room.name,
            room.last_id,
            self._clock.seconds(),
            user.nick,
            user.door,
            user.colour,
            text,
            action,
            client_id,
            room.epoch,
        )
        if client_id is not None:
            room.tagged[client_id] = message
        floor = room.last_id - self.history.keep
        tagged = room.tagged
        while tagged:
            oldest = next(iter(tagged.values()))
            if oldest.id > floor:
                break
            del tagged[oldest.client_id]  # type: ignore[arg-type]
        room.pruned_to = max(room.pruned_to, floor)
        full = self.history.sync == "full"
        committed = self.store.append(message, durable=full)
        if committed is None:
            self._deliver_message(room, message)
        else:
            committed.addCallbacks(
                lambda _: self._deliver_message(room, message),
                lambda f: self._not_stored(user, room, message, f),
            )

    def _deliver_message(self, room: Room, message: events.RoomMessage) -> None:
        room.delivered_id = message.id
        room.recent.append(message)
        self._fan_out(room.members, message)

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
            self._error(user, "nick-invalid", f"{nick!r} cannot be a nick: {problem}")
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
            return
        self._rename(user, nick)

    def _rename(self, user: User, nick: str) -> None:
        key = nick_key(nick)
        old = user.nick
        del self._users[nick_key(old)]
        user.nick = nick
        self._users[key] = user
        notice = events.Presence(
            self._clock.seconds(), "nick", old, user.door, new_nick=nick
        )
        self._fan_out(self._audience(user), notice)
        self._save_session(user)

    def _room_name(self, user: User, name: str) -> str | None:
        """
        Normalise a room name a user typed, telling them if it is invalid.
        """
        normal = normalize_room(name)
        problem = room_problem(normal)
        if problem is not None:
            self._error(user, "room-invalid", f"{name!r}: {problem}")
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
        if room is None:
            room = self._new_room(normal)
        if user in room.members:
            user.current = room
            self._tell(user, events.Status(f"now talking in {room.name}"))
            return
        self._join(user, room)

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
        if shown:
            self._tell(user, events.History(room.name, room.epoch, shown, "join"))
        if save:
            self._save_session(user)

    def _part(self, user: User, name: str | None) -> None:
        room = self._joined_room(user, name)
        if room is None:
            return
        notice = events.Presence(
            self._clock.seconds(), "part", user.nick, user.door, room=room.name
        )
        self._fan_out(room.members, notice)
        self._remove_member(user, room)
        self._save_session(user)
        if user.current is None:
            self._tell(user, events.Status("you are in no room now; /join #room"))
        else:
            self._tell(user, events.Status(f"now talking in {user.current.name}"))

    def _remove_member(self, user: User, room: Room) -> None:
        del room.members[user]
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

    def _who(self, user: User, name: str | None) -> None:
        room = self._find_room(user, name)
        if room is not None:
            members = tuple((m.nick, m.door) for m in room.members)
            self._tell(user, events.Who(room.name, members))

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

    def _msg(self, user: User, nick: str, text: str) -> None:
        text = clean_text(text).strip()
        target = self._users.get(nick_key(normalize_nick(nick)))
        if target is None:
            self._error(user, "no-such-nick", f"nobody here is called {nick}")
            return
        if not text:
            return
        now = self._clock.seconds()
        for recipient, outgoing in ((target, False), (user, True)):
            message = events.PrivateMessage(
                now, user.nick, user.door, user.colour, target.nick, text, outgoing
            )
            self._tell(recipient, message)

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
                f"no colour called {choice!r}; choose from: {', '.join(PALETTE)}, "
                "or on/off",
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

        found.addCallback(restore).addErrback(
            lambda f: self._log.failure("history: reading a session", f)
        )

    def _restore(self, user: User, session: Session) -> None:
        """
        Make C{user} who they were in C{session}: code, nick, colour,
        rooms, and the messages they missed.
        """
        del self._by_code[user.code]
        user.code = session.code
        self._by_code[user.code] = user
        if session.nick != user.nick:
            holder = self._users.get(nick_key(session.nick))
            if holder is None:
                self._rename(user, session.nick)
            else:
                self._error(
                    user,
                    "nick-taken",
                    f"{session.nick} is in use by someone else now; "
                    f"you stay {user.nick}",
                )
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
                notice = events.Presence(
                    self._clock.seconds(), "part", user.nick, user.door, room=room.name
                )
                self._fan_out(room.members, notice)
                self._remove_member(user, room)
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
        self._save_session(user)
        user.connected = False
        if self._by_code.get(user.code) is user:
            del self._by_code[user.code]
        audience = self._audience(user)
        del audience[user]
        for room in list(user.rooms):
            self._remove_member(user, room)
        del self._users[nick_key(user.nick)]
        notice = events.Presence(
            self._clock.seconds(), kind, user.nick, user.door, reason=reason
        )
        self._fan_out(audience, notice)

    # -- delivery ----------------------------------------------------------

    def _guest_nick(self) -> str:
        while True:
            nick = f"guest-{self._rng.getrandbits(16):04x}"
            if nick_key(nick) not in self._users:
                return nick

    def _tell(self, user: User, event: events.Event) -> None:
        self._fan_out((user,), event)

    def _fan_out(self, recipients: Iterable[User], event: events.Event) -> None:
        """
        Deliver one event to many users, rendered once per wire format.

        A door that fails on one recipient must not cost the others the
        message, so failures are logged and delivery goes on.
        """
        renderings = events.Renderings()
        message = isinstance(event, events.RoomMessage)
        for recipient in list(recipients):
            if recipient.holding and message:
                held = recipient.holding.get(self._rooms.get(room_key(event.room)))  # type: ignore[union-attr, arg-type]
                if held is not None:
                    held[1].append(event)
                    continue
            try:
                recipient.participant.deliver(event, renderings)
            except Exception:
                self._log.failure(
                    "delivering {event!r} to {nick}", event=event, nick=recipient.nick
                )
