# -*- test-case-name: tests.test_commands -*-
"""
The command layer every door shares: from a line of user text to a command.

Parsing is pure: no hub, no transport.  A door with structured requests (the
page's JSON, IRC) builds the same L{Command} values: the hub's one behaviour.
"""

import re
from dataclasses import dataclass, fields

from tchat.events import ErrorCode, Help
from tchat.sshkeys import MAX_KEY_LINE
from tchat.text import clean_text


@dataclass(frozen=True)
class Say:
    """
    A plain line for C{room} (one the user is in; C{None}: the current one).

    @ivar client_id: The client's own tag, returned in its sender's copy.
    @ivar notice: An IRC C{NOTICE}, which no client or bot answers.
    """

    text: str
    room: str | None = None
    client_id: str | None = None
    notice: bool = False


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
    """C{/part [#room]}: C{None} means the current room (C{reason}: why)."""

    room: str | None
    reason: str | None = None


@dataclass(frozen=True)
class Rooms:
    """C{/rooms [PAGE]}: the rooms, a page (L{ROOMS_PAGE} of them) at a time."""

    page: int = 1


@dataclass(frozen=True)
class WhoIs:
    """C{/who [#room]}: C{None} means the current room."""

    room: str | None


@dataclass(frozen=True)
class SetTopic:
    """C{/topic [text]} (C{room}'s, or the current one's): C{None} shows it."""

    text: str | None
    room: str | None = None


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
class Settle:
    """
    The client said who it is (a page's C{hello}, or a first line neither
    C{/resume} nor a login): unless it carried on a session still here, the
    others are told it arrived.  Never typed.
    """


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
    C{/history [N]}: earlier messages of a room (C{room} C{None}: the current).

    @ivar before: Only messages with a smaller id (paging backwards).
    @ivar after: Only those with a larger id, the oldest first (forwards).
    """

    limit: int
    room: str | None = None
    before: int | None = None
    after: int | None = None


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


@dataclass(frozen=True)
class ShowStats:
    """C{/stats}: users, rooms, uptime and message rates (more for operators)."""


@dataclass(frozen=True)
class Oper:
    """C{/oper NAME PASSWORD}: become an operator."""

    name: str
    password: str

    def __repr__(self) -> str:
        # Never let a password reach a log line.
        return f"Oper(name={self.name!r}, password=<hidden>)"


@dataclass(frozen=True)
class Register:
    """C{/register PASSWORD}: register the current nick as an account."""

    password: str

    def __repr__(self) -> str:
        return "Register(password=<hidden>)"


@dataclass(frozen=True)
class Login:
    """
    C{/login NICK PASSWORD} (C{/identify [NICK] PASSWORD}): log in to an
    account and take its nick.  C{name} is C{None} for the current nick.
    """

    name: str | None
    password: str

    def __repr__(self) -> str:
        return f"Login(name={self.name!r}, password=<hidden>)"


@dataclass(frozen=True)
class TokenLogin:
    """The page logs in again with the login token it was given."""

    token: str

    def __repr__(self) -> str:
        return "TokenLogin(token=<hidden>)"


@dataclass(frozen=True)
class KeyLogin:
    """
    The SSH door logs its user in to the account its key is on, if any
    (L{tchat.accounts.Accounts.key_login}).  Never typed, nor built from
    what a client sends: only the SSH door, once it checked the key, may
    make it (a fingerprint is no secret).

    @ivar fingerprint: The key's, as L{tchat.sshkeys.fingerprint} gives it.
    """

    fingerprint: str


@dataclass(frozen=True)
class Logout:
    """C{/logout}."""


@dataclass(frozen=True)
class Password:
    """C{/password OLD NEW}."""

    old: str
    new: str

    def __repr__(self) -> str:
        return "Password(old=<hidden>, new=<hidden>)"


@dataclass(frozen=True)
class Unregister:
    """C{/unregister PASSWORD}: delete the account and all kept for it."""

    password: str

    def __repr__(self) -> str:
        return "Unregister(password=<hidden>)"


@dataclass(frozen=True)
class ShowAccount:
    """C{/account}: what the server keeps about you."""


@dataclass(frozen=True)
class Away:
    """C{/away [message]}."""

    text: str | None


@dataclass(frozen=True)
class Back:
    """C{/back}."""


@dataclass(frozen=True)
class Ignore:
    """C{/ignore [NICK]}: C{None} lists whom you ignore."""

    nick: str | None


@dataclass(frozen=True)
class Unignore:
    """C{/unignore NICK}."""

    nick: str


@dataclass(frozen=True)
class ShowMentions:
    """C{/mentions}."""


@dataclass(frozen=True)
class AddKey:
    """C{/key add [LINE]}: C{None}, the key of this SSH connection."""

    line: str | None


@dataclass(frozen=True)
class ListKeys:
    """C{/key list}: the account's SSH keys."""


@dataclass(frozen=True)
class RemoveKey:
    """C{/key remove FINGERPRINT}."""

    fingerprint: str


@dataclass(frozen=True)
class Kick:
    """C{/kick NICK [reason]}."""

    nick: str
    reason: str | None


@dataclass(frozen=True)
class Ban:
    """
    C{/ban TARGET [DURATION] [reason]}.

    @ivar target: A nick, an IP address or network, a nick pattern with
        C{*} or C{?}, or C{nick:NAME} / C{ip:ADDRESS} to say which.
    @ivar duration: Seconds; C{None} until lifted.
    """

    target: str
    duration: int | None
    reason: str | None


@dataclass(frozen=True)
class Unban:
    """C{/unban ID|PATTERN}."""

    target: str


@dataclass(frozen=True)
class ListBans:
    """C{/bans}."""


@dataclass(frozen=True)
class Mute:
    """C{/mute NICK [DURATION]}: C{duration} in seconds, C{None} for no end."""

    nick: str
    duration: int | None


@dataclass(frozen=True)
class Unmute:
    """C{/unmute NICK}."""

    nick: str


@dataclass(frozen=True)
class Announce:
    """C{/announce text}: to every user, in every room, on every door."""

    text: str


@dataclass(frozen=True)
class SetMotd:
    """C{/motd set text}: C{|} separates lines."""

    lines: tuple[str, ...]


@dataclass(frozen=True)
class Rehash:
    """C{/rehash}: reload C{tap.ini}."""


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
    | ShowStats
    | Oper
    | Kick
    | Ban
    | Unban
    | ListBans
    | Mute
    | Unmute
    | Announce
    | SetMotd
    | Rehash
    | Register
    | Login
    | TokenLogin
    | KeyLogin
    | Logout
    | Password
    | Unregister
    | ShowAccount
    | Away
    | Back
    | Ignore
    | Unignore
    | ShowMentions
    | AddKey
    | ListKeys
    | RemoveKey
    | Settle
)

IDENTIFYING = (Resume, Login, TokenLogin, KeyLogin, Nick, Settle)
"""What a new connection may do before it is announced: carry on a session,
log in, pick a nick (see L{Settle})."""

OPERATOR_COMMANDS = (
    Kick,
    Ban,
    Unban,
    ListBans,
    Mute,
    Unmute,
    Announce,
    SetMotd,
    Rehash,
)
"""The commands only operators may use."""


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
    CommandSpec("rooms", "/rooms [page]", "list the rooms and how many are in each"),
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
    CommandSpec("stats", "/stats", "users, rooms, uptime and message rates"),
    CommandSpec(
        "register",
        "/register PASSWORD",
        "register your nick, so nobody else can take it (8 characters or more)",
    ),
    CommandSpec(
        "login",
        "/login NICK PASSWORD",
        "log in to your registered nick (also /identify)",
    ),
    CommandSpec("logout", "/logout", "log out of your account"),
    CommandSpec("password", "/password OLD NEW", "change your account's password"),
    CommandSpec(
        "unregister",
        "/unregister PASSWORD",
        "delete your account and everything kept for it",
    ),
    CommandSpec("account", "/account", "show what the server keeps about you"),
    CommandSpec(
        "mentions", "/mentions", "show the lines that named you while you were away"
    ),
    CommandSpec("away", "/away [message]", "tell those who write to you you're away"),
    CommandSpec("back", "/back", "you are back"),
    CommandSpec(
        "key",
        "/key add|list|remove",
        "the SSH keys that log you in with no password: /key add PUBLIC-KEY "
        "(alone: this SSH connection's key), /key list, /key remove FINGERPRINT",
    ),
    CommandSpec(
        "ignore",
        "/ignore [NICK]",
        "hide a user's room lines and private messages (none: list)",
    ),
    CommandSpec("unignore", "/unignore NICK", "see a user you ignored again"),
    CommandSpec("oper", "/oper NAME PASSWORD", "log in as an operator"),
    CommandSpec("help", "/help", "list the commands"),
    CommandSpec("quit", "/quit [reason]", "leave the chat"),
    CommandSpec(
        "color", "/color NAME|on|off", "pick your nick's colour, or turn colours on/off"
    ),
)

OPERATOR_SPECS: tuple[CommandSpec, ...] = (
    CommandSpec("kick", "/kick NICK [reason]", "disconnect a user"),
    CommandSpec(
        "ban",
        "/ban NICK|MASK [DURATION] [reason]",
        "ban a user (by address; onion users by session and nick), an IP "
        "address or network, or a nick pattern (troll*); DURATION like 30m, "
        "2h, 7d (none: until /unban)",
    ),
    CommandSpec("unban", "/unban ID|MASK", "lift a ban"),
    CommandSpec("bans", "/bans", "list the bans in force"),
    CommandSpec("mute", "/mute NICK [DURATION]", "stop a user talking"),
    CommandSpec("unmute", "/unmute NICK", "let a muted user talk again"),
    CommandSpec("announce", "/announce text", "tell every user in every room"),
    CommandSpec(
        "motd", "/motd set text", "change the message of the day (| starts a line)"
    ),
    CommandSpec("rehash", "/rehash", "reload tap.ini (as SIGHUP does)"),
)
"""What operators see in C{/help} besides L{COMMANDS}."""

_SPECS = {spec.name: spec for spec in COMMANDS} | {
    spec.name: spec for spec in OPERATOR_SPECS if spec.name != "motd"
}

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
    "identify": "login",
}

MAX_TEXT = 4096
"""The longest message, topic or reason the hub accepts, in characters."""


ROOMS_PAGE = 100
"""Rooms one C{/rooms} lists: a bounded answer, however many rooms exist."""
MAX_ROOMS_PAGES = 10_000

_NO_ARGUMENTS: dict[str, Command] = {
    "help": ShowHelp(),
    "stats": ShowStats(),
    "bans": ListBans(),
    "rehash": Rehash(),
    "logout": Logout(),
    "account": ShowAccount(),
    "mentions": ShowMentions(),
    "back": Back(),
}

_DURATION = re.compile(r"(\d{1,7})([smhdw])", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_DURATION = 366 * 86400


def parse_duration(word: str) -> int | None:
    """
    A duration as operators type it: C{30s}, C{10m}, C{2h}, C{7d}, C{1w}.

    @return: Seconds, or C{None} if C{word} is not a duration.
    @raise CommandError: For a duration over a year, or of zero.
    """
    match = _DURATION.fullmatch(word)
    if match is None:
        return None
    seconds = int(match.group(1)) * _UNITS[match.group(2).lower()]
    if not 0 < seconds <= MAX_DURATION:
        raise CommandError(
            "bad-arguments", "a duration must be more than 0 and at most 366d"
        )
    return seconds


def _target_and_rest(name: str, args: str) -> tuple[str, int | None, str | None]:
    """
    C{TARGET [DURATION] [text]}, as /ban and /mute take them.
    """
    target, _, rest = args.partition(" ")
    if not target:
        raise _usage(name)
    first, _, after = rest.strip().partition(" ")
    duration = parse_duration(first) if first else None
    text = (after if duration is not None else rest).strip()
    return target, duration, _text(name, text) if text else None


def _usage(name: str) -> CommandError:
    return CommandError("bad-arguments", f"usage: {_SPECS[name].usage}")


def _text(name: str, value: str) -> str:
    if len(value) > MAX_TEXT:
        raise CommandError(
            "bad-arguments", f"/{name}: text is longer than {MAX_TEXT} characters"
        )
    return value


KEY_USAGE = "usage: /key add [PUBLIC-KEY], /key list, /key remove FINGERPRINT"


def _key(args: str) -> Command:
    """C{/key add [LINE]}, C{/key list}, C{/key remove FINGERPRINT}."""
    action, _, rest = args.partition(" ")
    rest = rest.strip()
    match action.lower():
        case "add":
            return AddKey(rest or None)
        case "list" if not rest:
            return ListKeys()
        case "remove" | "rm" | "del" | "delete" if rest and " " not in rest:
            return RemoveKey(rest)
    raise CommandError("bad-arguments", KEY_USAGE)


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
        case "rooms":
            if len(words) > 1 or (words and not words[0].isdecimal()):
                raise _usage(name)
            page = int(words[0]) if words else 1
            if not 1 <= page <= MAX_ROOMS_PAGES:
                raise CommandError(
                    "bad-arguments", f"/rooms: the page must be 1 to {MAX_ROOMS_PAGES}"
                )
            return Rooms(page)
        case (
            "help"
            | "stats"
            | "bans"
            | "rehash"
            | "logout"
            | "account"
            | "mentions"
            | "back"
        ):
            if words:
                raise _usage(name)
            return _NO_ARGUMENTS[name]
        case "motd":
            if not words:
                return ShowMotd()
            if words[0].lower() != "set" or len(words) < 2:
                raise CommandError(
                    "bad-arguments", "usage: /motd, or /motd set text (operators)"
                )
            text = _text(name, args.split(None, 1)[1])
            return SetMotd(tuple(line.strip() for line in text.split("|")))
        case "oper":
            account, _, password = args.partition(" ")
            if not account or not password.strip():
                raise _usage(name)
            return Oper(account, password.strip())
        case "register" | "unregister":
            # The password is everything after the command, spaces and all.
            if not args:
                raise _usage(name)
            return Register(args) if name == "register" else Unregister(args)
        case "login":
            if not words:
                raise _usage(name)
            if len(words) == 1:
                # /identify PASSWORD: the current nick's account.
                return Login(None, args)
            nick, _, password = args.partition(" ")
            return Login(nick, password.strip())
        case "password":
            if len(words) != 2:
                raise CommandError(
                    "bad-arguments",
                    "usage: /password OLD NEW (passwords without spaces here; "
                    "the page's account panel takes any)",
                )
            return Password(words[0], words[1])
        case "away":
            return Away(_text(name, args) if args else None)
        case "ignore":
            if len(words) > 1:
                raise _usage(name)
            return Ignore(words[0] if words else None)
        case "unignore":
            if len(words) != 1:
                raise _usage(name)
            return Unignore(words[0])
        case "key":
            return _key(args)
        case "kick":
            nick, _, reason = args.partition(" ")
            if not nick:
                raise _usage(name)
            return Kick(nick, _text(name, reason.strip()) if reason.strip() else None)
        case "ban":
            return Ban(*_target_and_rest(name, args))
        case "mute":
            nick, duration, extra = _target_and_rest(name, args)
            if extra is not None:
                raise _usage(name)
            return Mute(nick, duration)
        case "unban" | "unmute":
            if len(words) != 1:
                raise _usage(name)
            return Unban(words[0]) if name == "unban" else Unmute(words[0])
        case "announce":
            if not args:
                raise _usage(name)
            return Announce(_text(name, args))
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
    # Runs of blanks are collapsed where text is shown (talk, topics), not
    # here: a password may hold two spaces in a row.
    line = clean_text(line, collapse=False).strip()
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


def help_for(operator: bool) -> Help:
    """C{/help}: the commands, and the operator commands for operators."""
    return Help(
        tuple((spec.usage, spec.description) for spec in COMMANDS),
        tuple((spec.usage, spec.description) for spec in OPERATOR_SPECS)
        if operator
        else (),
    )


MAX_NAME = 64
"""The longest nick, room name, ban target, colour or resume code the hub
takes, in characters (the rules of each are stricter still)."""
MAX_PASSWORD = 1024
"""The longest password the hub takes, in characters."""
MAX_RESUME_ROOMS = 100
"""The most rooms one resume names."""

_MAXIMA = {
    "text": ("the text", MAX_TEXT),
    "reason": ("the reason", MAX_TEXT),
    "lines": ("the message of the day", MAX_TEXT),
    "room": ("the room name", MAX_NAME),
    "nick": ("the nick", MAX_NAME),
    "name": ("the name", MAX_NAME),
    "target": ("the target", MAX_NAME),
    "choice": ("the colour", MAX_NAME),
    "code": ("the code", MAX_NAME),
    "client_id": ("the client_id", MAX_NAME),
    "password": ("the password", MAX_PASSWORD),
    "old": ("the old password", MAX_PASSWORD),
    "new": ("the new password", MAX_PASSWORD),
    "token": ("the login token", MAX_NAME * 2),
    "line": ("the key", MAX_KEY_LINE),
    "fingerprint": ("the fingerprint", MAX_NAME),
}
"""The maximum of every string a command carries, by field name, with what
the user calls it."""

_CHECKS: dict[type, tuple[tuple[str, str, int], ...]] = {
    kind: tuple((f.name, *_MAXIMA[f.name]) for f in fields(kind) if f.name in _MAXIMA)
    for kind in Command.__args__
}


def too_long(command: Command) -> str | None:
    """
    What in C{command} is longer than the hub takes, whatever door built
    it, as a sentence for the user; C{None} when nothing is.
    """
    for name, called, most in _CHECKS[type(command)]:
        value = getattr(command, name)
        if value is None:
            continue
        size = sum(map(len, value)) if isinstance(value, tuple) else len(value)
        if size > most:
            return f"{called} is longer than {most} characters"
    if isinstance(command, ResumeRooms):
        if len(command.rooms) > MAX_RESUME_ROOMS:
            return f"at most {MAX_RESUME_ROOMS} rooms at once"
        for room, _, _ in command.rooms:
            if len(room) > MAX_NAME:
                return f"a room name is longer than {MAX_NAME} characters"
    return None
