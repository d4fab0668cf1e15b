# -*- test-case-name: tests.test_commands -*-
"""
The command layer every door shares: from a line of user text to a typed
command.

Parsing is pure: no hub, no transport.  A door that has structured requests
(the WebSocket door's JSON) builds the same L{Command} values directly, so
every door gets exactly the same behaviour from the hub.
"""

from dataclasses import dataclass

from tchat.events import ErrorCode
from tchat.text import clean_text


@dataclass(frozen=True)
class Say:
    """
    A plain line for a room.

    @ivar room: A room the user is in; C{None} for the current room.
    @ivar client_id: The client's own tag, returned in the sender's copy
        (its acknowledgement).
    """

    text: str
    room: str | None = None
    client_id: str | None = None


@dataclass(frozen=True)
class Me:
    """C{/me action}; C{room} and C{client_id} as for L{Say}."""

    text: str
    room: str | None = None
    client_id: str | None = None


@dataclass(frozen=True)
class Nick:
    """C{/nick NAME}."""

    name: str


@dataclass(frozen=True)
class Join:
    """C{/join #room}."""

    room: str


@dataclass(frozen=True)
class Part:
    """C{/part [#room]}: C{None} means the current room."""

    room: str | None


@dataclass(frozen=True)
class Rooms:
    """C{/rooms}."""


@dataclass(frozen=True)
class WhoIs:
    """C{/who [#room]}: C{None} means the current room."""

    room: str | None


@dataclass(frozen=True)
class SetTopic:
    """C{/topic [text]}: C{None} shows the topic."""

    text: str | None


@dataclass(frozen=True)
class Msg:
    """C{/msg NICK text}."""

    nick: str
    text: str


@dataclass(frozen=True)
class ShowMotd:
    """C{/motd}."""


@dataclass(frozen=True)
class ShowHelp:
    """C{/help}."""


@dataclass(frozen=True)
class Quit:
    """C{/quit [reason]}."""

    reason: str | None


@dataclass(frozen=True)
class Color:
    """C{/color NAME|on|off}; C{None} shows the palette."""

    choice: str | None


@dataclass(frozen=True)
class ShowHistory:
    """
    C{/history [N]}: earlier messages of a room.

    @ivar room: C{None} for the current room.
    @ivar before: Only messages with a smaller id (paging backwards);
        C{None} for the latest.
    """

    limit: int
    room: str | None = None
    before: int | None = None


@dataclass(frozen=True)
class Resume:
    """
    C{/resume CODE}: take back the nick, rooms and missed messages of an
    earlier connection.
    """

    code: str


@dataclass(frozen=True)
class ResumeRooms:
    """
    A reconnecting client's own record of what it has seen: for each room,
    the last message id it has and that id's epoch (C{None}: the room's
    current epoch).  The user joins rooms they are not in.
    """

    rooms: tuple[tuple[str, int, int | None], ...]


Command = (
    Say
    | Me
    | Nick
    | Join
    | Part
    | Rooms
    | WhoIs
    | SetTopic
    | Msg
    | ShowMotd
    | ShowHelp
    | Quit
    | Color
    | ShowHistory
    | Resume
    | ResumeRooms
)


class CommandError(Exception):
    """
    A line that is not a valid command.

    @ivar code: The error code users' clients see.
    @ivar text: A sentence saying what is expected.
    """

    def __init__(self, code: ErrorCode, text: str) -> None:
        super().__init__(text)
        self.code: ErrorCode = code
        self.text = text


@dataclass(frozen=True)
class CommandSpec:
    """
    How a command is typed and what it does, for C{/help} and parsing.
    """

    name: str
    usage: str
    description: str


DEFAULT_HISTORY = 20
MAX_HISTORY = 200
"""How many messages C{/history} shows by default, and at most."""

COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("nick", "/nick NAME", "take another nick"),
    CommandSpec("join", "/join #room", "join a room (creating it) and talk there"),
    CommandSpec(
        "part", "/part [#room]", "leave a room (the current one if none given)"
    ),
    CommandSpec("rooms", "/rooms", "list the rooms and how many are in each"),
    CommandSpec("who", "/who [#room]", "list who is in a room"),
    CommandSpec("topic", "/topic [text]", "show, or set, the current room's topic"),
    CommandSpec("me", "/me action", "tell the room what you are doing"),
    CommandSpec("msg", "/msg NICK text", "send a private message to one user"),
    CommandSpec(
        "history",
        "/history [N]",
        f"show the last N messages of the current room (default {DEFAULT_HISTORY}, "
        f"at most {MAX_HISTORY})",
    ),
    CommandSpec(
        "resume",
        "/resume CODE",
        "after a reconnect: take back your nick, rooms and the messages you missed",
    ),
    CommandSpec("motd", "/motd", "show the message of the day"),
    CommandSpec("help", "/help", "list the commands"),
    CommandSpec("quit", "/quit [reason]", "leave the chat"),
    CommandSpec(
        "color", "/color NAME|on|off", "pick your nick's colour, or turn colours on/off"
    ),
)

_SPECS = {spec.name: spec for spec in COMMANDS}

# Names people type from habit (IRC, other chats).
_ALIASES = {
    "colour": "color",
    "j": "join",
    "leave": "part",
    "list": "rooms",
    "names": "who",
    "exit": "quit",
    "m": "msg",
    "query": "msg",
}

MAX_TEXT = 4096
"""The longest message, topic or reason the hub accepts, in characters."""


_NO_ARGUMENTS: dict[str, Command] = {
    "rooms": Rooms(),
    "motd": ShowMotd(),
    "help": ShowHelp(),
}


def _usage(name: str) -> CommandError:
    return CommandError("bad-arguments", f"usage: {_SPECS[name].usage}")


def _text(name: str, value: str) -> str:
    if len(value) > MAX_TEXT:
        raise CommandError(
            "bad-arguments", f"/{name}: text is longer than {MAX_TEXT} characters"
        )
    return value


def _parse_command(name: str, args: str) -> Command:
    """
    Turn a command name and its argument text into a L{Command}.
    """
    words = args.split()
    match name:
        case "nick":
            if len(words) != 1:
                raise _usage(name)
            return Nick(words[0])
        case "join":
            if len(words) != 1:
                raise _usage(name)
            return Join(words[0])
        case "part":
            if len(words) > 1:
                raise _usage(name)
            return Part(words[0] if words else None)
        case "who":
            if len(words) > 1:
                raise _usage(name)
            return WhoIs(words[0] if words else None)
        case "rooms" | "motd" | "help":
            if words:
                raise _usage(name)
            return _NO_ARGUMENTS[name]
        case "topic":
            return SetTopic(_text(name, args) if args else None)
        case "me":
            if not args:
                raise _usage(name)
            return Me(_text(name, args))
        case "msg":
            nick, _, text = args.partition(" ")
            text = text.strip()
            if not nick or not text:
                raise _usage(name)
            return Msg(nick, _text(name, text))
        case "quit":
            return Quit(_text(name, args) if args else None)
        case "color":
            if len(words) > 1:
                raise _usage(name)
            return Color(words[0].lower() if words else None)
        case "history":
            if len(words) > 1 or (words and not words[0].isdecimal()):
                raise _usage(name)
            limit = int(words[0]) if words else DEFAULT_HISTORY
            if not 1 <= limit <= MAX_HISTORY:
                raise CommandError(
                    "bad-arguments", f"/history: N must be from 1 to {MAX_HISTORY}"
                )
            return ShowHistory(limit)
        case "resume":
            if len(words) != 1:
                raise _usage(name)
            return Resume(words[0])
    raise AssertionError(f"no parser for /{name}")  # pragma: no cover


def parse_line(line: str) -> Command | None:
    """
    Parse one line a user typed.

    The text is cleaned of control characters first.  A line starting with
    C{/} is a command; C{//} escapes a message that starts with C{/}.

    @param line: Decoded text, without its line end.
    @return: The command, or C{None} for a line with nothing to say.
    @raise CommandError: For an unknown command or wrong arguments.
    """
    line = clean_text(line).strip()
    if not line:
        return None
    if line.startswith("//"):
        return Say(_text("say", line[1:]))
    if not line.startswith("/"):
        return Say(_text("say", line))
    word, _, args = line[1:].partition(" ")
    name = _ALIASES.get(word.lower(), word.lower())
    if name not in _SPECS:
        shown = word if len(word) <= 32 else word[:32] + "…"
        raise CommandError(
            "unknown-command",
            f"unknown command /{shown}; type /help for the list "
            "(start a message with // to send a line beginning with /)",
        )
    return _parse_command(name, args.strip())
