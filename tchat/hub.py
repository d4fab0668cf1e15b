# -*- test-case-name: tests.test_hub -*-
"""
L{ChatFactory}: the one hub every door shares.

The hub owns users and rooms and applies the chat's rules. It knows no wire
format and no transport: doors adapt to it, turning bytes into
L{tchat.commands} values and rendering L{tchat.events} values back into bytes.
"""

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

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
    Rooms,
    Say,
    SetTopic,
    ShowHelp,
    ShowMotd,
    WhoIs,
)
from tchat.config import ServerConfig
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


@dataclass(eq=False)
class Room:
    """
    One room: its members in joining order and its topic.

    @ivar last_id: The id of the latest message; ids increase by one.
    """

    name: str
    members: dict[User, None] = field(default_factory=dict)
    topic: str | None = None
    topic_by: str | None = None
    last_id: int = 0


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
    ) -> None:
        """
        @param config: The C{[server]} section.
        @param clock: Where timestamps come from.
        @param rng: Picks guest nicks; tests pass a seeded one.
        """
        self.config = config
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._users: dict[str, User] = {}
        self._rooms: dict[str, Room] = {}
        self._rooms[room_key(config.default_room)] = Room(config.default_room)

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
        participant.attached(user)
        lobby = self._rooms[room_key(self.config.default_room)]
        self._tell(
            user,
            events.Welcome(
                self.config.name, self.config.motd, nick, lobby.name, user.colour
            ),
        )
        self._join(user, lobby)
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
        if room_name is None:
            room = user.current
            if room is None:
                self._error(user, "no-room", "you are in no room; /join #room first")
                return
        else:
            room = self._find_room(user, room_name)
            if room is None:
                return
            if user not in room.members:
                self._error(user, "not-in-room", f"you are not in {room.name}")
                return
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
        )
        self._fan_out(room.members, message)

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
        old = user.nick
        del self._users[nick_key(old)]
        user.nick = nick
        self._users[key] = user
        notice = events.Presence(
            self._clock.seconds(), "nick", old, user.door, new_nick=nick
        )
        self._fan_out(self._audience(user), notice)

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

    def _join_named(self, user: User, name: str) -> None:
        normal = self._room_name(user, name)
        if normal is None:
            return
        room = self._rooms.get(room_key(normal))
        if room is None:
            room = self._rooms[room_key(normal)] = Room(normal)
        if user in room.members:
            user.current = room
            self._tell(user, events.Status(f"now talking in {room.name}"))
            return
        self._join(user, room)

    def _join(self, user: User, room: Room) -> None:
        room.members[user] = None
        user.rooms.append(room)
        user.current = room
        notice = events.Presence(
            self._clock.seconds(), "join", user.nick, user.door, room=room.name
        )
        self._fan_out(room.members, notice)

    def _part(self, user: User, name: str | None) -> None:
        room = self._find_room(user, name)
        if room is None:
            return
        if user not in room.members:
            self._error(user, "not-in-room", f"you are not in {room.name}")
            return
        notice = events.Presence(
            self._clock.seconds(), "part", user.nick, user.door, room=room.name
        )
        self._fan_out(room.members, notice)
        self._remove_member(user, room)
        if user.current is None:
            self._tell(user, events.Status("you are in no room now; /join #room"))
        else:
            self._tell(user, events.Status(f"now talking in {user.current.name}"))

    def _remove_member(self, user: User, room: Room) -> None:
        del room.members[user]
        user.rooms.remove(room)
        if user.current is room:
            user.current = user.rooms[-1] if user.rooms else None
        if not room.members and room.name != self.config.default_room:
            del self._rooms[room_key(room.name)]

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
            audience.update(room.members)
        return audience

    def _leave(self, user: User, kind: events.PresenceKind, reason: str | None) -> None:
        user.connected = False
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
        for recipient in list(recipients):
            try:
                recipient.participant.deliver(event, renderings)
            except Exception:
                self._log.failure(
                    "delivering {event!r} to {nick}", event=event, nick=recipient.nick
                )
