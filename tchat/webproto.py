# -*- test-case-name: tests.test_webproto -*-
"""
The web door's JSON protocol, as pure functions: frames in, commands out;
events in, JSON out.  See C{docs/protocol.md}.

It is a superset of the classic PHP WebSocket chat: C{usermsg} and C{system}
frames out, C{{"message", "name", "color"}} frames in.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

from tchat import commands, events
from tchat.commands import MAX_RESUME_ROOMS, Command, CommandError, parse_line
from tchat.crowds import crowd_text
from tchat.palette import PALETTE, Colour

MAX_CLIENT_ID = 64


class FrameError(Exception):
    """
    A frame the door cannot act on; answered with an C{error} frame.

    @ivar code: C{bad-json}, C{bad-request}, C{unknown-type} or a command
        layer code.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.client_id: str | None = None


@dataclass(frozen=True)
class Request:
    """
    One client frame, parsed.

    @ivar commands: What to run, in order (a classic frame can be a nick
        change and a message).
    @ivar client_id: The client's tag, echoed in acknowledgements and errors.
    """

    commands: tuple[Command, ...]
    client_id: str | None = None


_COLOURS_BY_CSS = {c.css.lower(): c for c in PALETTE.values()}


def palette_colour(value: str) -> Colour | None:
    """
    The palette colour a client named, by name or by CSS value.

    @return: The colour, or C{None} if it is not in the palette.
    """
    value = value.strip().lower()
    return PALETTE.get(value) or _COLOURS_BY_CSS.get(value)


def _field(frame: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = frame.get(name)
    if value is None:
        if required:
            raise FrameError("bad-request", f"'{name}' is missing")
        return None
    if not isinstance(value, str):
        raise FrameError("bad-request", f"'{name}' must be a string")
    return value


def _text_command(
    text: str, room: str | None, client_id: str | None, action: bool = False
) -> Command | None:
    """
    A message text: a command when it starts with C{/}, else a room message.
    """
    if action:
        if not text.strip():
            raise FrameError("bad-request", "'message' is empty")
        return commands.Me(text, room, client_id)
    try:
        command = parse_line(text)
    except CommandError as e:
        raise FrameError(e.code, e.text) from None
    if isinstance(command, commands.Say):
        return commands.Say(command.text, room, client_id)
    if isinstance(command, commands.Me):
        return commands.Me(command.text, room, client_id)
    return command


MAX_PAGE = 200
DEFAULT_PAGE = 50


def _int(
    frame: dict[str, Any], name: str, low: int, high: int | None, default: int | None
) -> Any:
    value = frame.get(name)
    if value is None:
        return default
    # bool is an int to Python, not to a client.
    if not isinstance(value, int) or isinstance(value, bool):
        raise FrameError("bad-request", f"'{name}' must be a whole number")
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise FrameError("bad-request", f"'{name}' must be {bound}")
    return value


def _resume(frame: dict[str, Any]) -> commands.Command:
    """
    C{{"type": "resume", "rooms": {ROOM: LAST_ID or {"id", "epoch"}}}}.
    """
    rooms = frame.get("rooms")
    if not isinstance(rooms, dict):
        raise FrameError("bad-request", "'rooms' must be an object: room to last id")
    if len(rooms) > MAX_RESUME_ROOMS:
        raise FrameError("bad-request", f"at most {MAX_RESUME_ROOMS} rooms at once")
    points: list[tuple[str, int, int | None]] = []
    for room, point in rooms.items():
        epoch = None
        if isinstance(point, dict):
            epoch = _int(point, "epoch", 0, None, None)
            point = point.get("id")
        if not isinstance(point, int) or isinstance(point, bool) or point < 0:
            raise FrameError(
                "bad-request",
                f"'rooms': {room[:32]!r} needs a last id (a whole number >= 0)",
            )
        points.append((room, point, epoch))
    return commands.ResumeRooms(tuple(points))


def _hello(frame: dict[str, Any]) -> list[Command]:
    """
    C{{"type": "hello", "code": CODE, "token": TOKEN, "name": NICK,
    "resume": {ROOM: LAST_ID, ...}}}: a page's first frame: carry on (or
    resume) the session of its code, log in with its login token, take back
    its nick, settle (see L{commands.Settle}) and resume its rooms, in
    that order; every part is optional.
    """
    result: list[Command] = []
    code = _field(frame, "code", required=False)
    if code is not None and code.strip():
        result.append(commands.Resume(code.strip()))
    token = _field(frame, "token", required=False)
    if token is not None and token.strip():
        result.append(commands.TokenLogin(token.strip()))
    name = _field(frame, "name", required=False)
    if name is not None and name.strip():
        result.append(commands.Nick(name.strip()))
    result.append(commands.Settle())
    rooms = frame.get("resume")
    if rooms is not None:
        result.append(_resume({"rooms": rooms}))
    return result


def _key(frame: dict[str, Any]) -> Command:
    """
    C{{"type": "key", "action": "add"|"list"|"remove", "key": LINE,
    "fingerprint": FP}}: C{/key}; C{key} is optional for C{add}.
    """
    match _field(frame, "action"):
        case "add":
            line = _field(frame, "key", required=False)
            return commands.AddKey(line if line and line.strip() else None)
        case "list":
            return commands.ListKeys()
        case "remove":
            fingerprint = _field(frame, "fingerprint")
            assert fingerprint is not None
            return commands.RemoveKey(fingerprint)
    raise FrameError("bad-request", "'action' must be add, list or remove")


def _typed(kind: str, frame: dict[str, Any], client_id: str | None) -> list[Command]:
    def get(name: str, required: bool = True) -> str | None:
        return _field(frame, name, required)

    def req(name: str) -> str:
        value = get(name)
        assert value is not None
        return value

    command: Command | None
    match kind:
        case "message" | "me":
            command = _text_command(
                req("message"), get("room", False), client_id, action=kind == "me"
            )
        case "nick":
            command = commands.Nick(req("name"))
        case "join":
            command = commands.Join(req("room"))
        case "part":
            command = commands.Part(get("room", False))
        case "rooms":
            command = commands.Rooms(
                _int(frame, "page", 1, commands.MAX_ROOMS_PAGES, 1)
            )
        case "who":
            command = commands.WhoIs(get("room", False))
        case "topic":
            command = commands.SetTopic(get("topic", False))
        case "msg":
            command = commands.Msg(req("to"), req("message"))
        case "motd":
            command = commands.ShowMotd()
        case "help":
            command = commands.ShowHelp()
        case "quit":
            command = commands.Quit(get("reason", False))
        case "color":
            command = commands.Color(req("color").strip().lower())
        case "history":
            command = commands.ShowHistory(
                _int(frame, "limit", 1, MAX_PAGE, DEFAULT_PAGE),
                get("room", False),
                _int(frame, "before", 1, None, None),
            )
        case "resume":
            command = _resume(frame)
        case "hello":
            return _hello(frame)
        case "register":
            command = commands.Register(req("password"))
        case "login" | "identify":
            command = commands.Login(get("name", False), req("password"))
        case "logout":
            command = commands.Logout()
        case "password":
            command = commands.Password(req("old"), req("new"))
        case "unregister":
            command = commands.Unregister(req("password"))
        case "account":
            command = commands.ShowAccount()
        case "mentions":
            command = commands.ShowMentions()
        case "away":
            command = commands.Away(get("message", False) or None)
        case "back":
            command = commands.Back()
        case "ignore":
            command = commands.Ignore(get("name", False))
        case "unignore":
            command = commands.Unignore(req("name"))
        case "key":
            command = _key(frame)
        case _:
            raise FrameError("unknown-type", f"unknown request type {kind[:32]!r}")
    return [command] if command is not None else []


def _classic(
    frame: dict[str, Any], nick: str, client_id: str | None
) -> tuple[list[Command], bool]:
    """
    A classic PHP-chat frame: optional nick change, colour, then the message.

    @return: The commands, and whether anything was asked for at all.
    """
    result: list[Command] = []
    name = _field(frame, "name", required=False)
    if name is not None and name.strip() and name.strip() != nick:
        result.append(commands.Nick(name.strip()))
    colour = _field(frame, "color", required=False)
    if colour is not None:
        chosen = palette_colour(colour)
        # Classic clients pick colours of their own; only palette colours
        # are taken, anything else is ignored rather than nagged about.
        if chosen is not None:
            result.append(commands.Color(chosen.name))
    text = _field(frame, "message", required=False)
    if text is not None:
        command = _text_command(text, None, client_id)
        if command is not None:
            result.append(command)
    return result, name is not None or text is not None


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_lone_surrogate(value: object) -> bool:
    """
    Whether a decoded JSON value holds a lone UTF-16 surrogate, in a string
    or a key, at any depth.

    JSON lets a string escape one (C{"\\ud800"}) and Python's decoder
    accepts it, but it is not text: no door can encode it, so it must not
    get past the edge.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _LONE_SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def parse_frame(payload: bytes, nick: str) -> Request:
    """
    Parse one text frame from a client.

    @param payload: The frame's bytes (UTF-8 JSON).
    @param nick: The user's current nick, to tell a classic frame's C{name}
        apart from a nick change.
    @return: What to run.
    @raise FrameError: For anything that cannot be acted on; the connection
        stays open.
    """
    try:
        frame = json.loads(payload)
    except (ValueError, RecursionError):
        raise FrameError("bad-json", "the frame is not valid JSON") from None
    if (b"\\u" in payload or b"\xed" in payload) and _has_lone_surrogate(frame):
        raise FrameError(
            "bad-json",
            "the frame holds a lone surrogate (\\ud800 to \\udfff), "
            "which is not text; send whole characters",
        )
    if not isinstance(frame, dict):
        raise FrameError("bad-request", "a frame must be a JSON object")
    client_id = _field(frame, "client_id", required=False)
    if client_id is not None and len(client_id) > MAX_CLIENT_ID:
        raise FrameError(
            "bad-request", f"'client_id' is longer than {MAX_CLIENT_ID} characters"
        )
    try:
        kind = _field(frame, "type", required=False)
        if kind is None:
            found, asked = _classic(frame, nick, client_id)
            if not asked:
                raise FrameError("bad-request", "a frame needs a 'type' or a 'message'")
            return Request(tuple(found), client_id)
        return Request(tuple(_typed(kind, frame, client_id)), client_id)
    except FrameError as e:
        e.client_id = client_id
        raise


# -- events to JSON --------------------------------------------------------


def _who(nick: str, door: str, registered: bool = False) -> str:
    return f"{nick} ({door}, registered)" if registered else f"{nick} ({door})"


def _member(m: events.Member) -> dict[str, Any]:
    """One member as C{who} and C{crowd} list them."""
    return {
        "name": m.nick,
        "door": m.door,
        "registered": m.registered,
        "away": m.away,
        **(
            {"color": m.colour.css, "color_name": m.colour.name}
            if m.colour is not None
            else {}
        ),
    }


def _arrival(m: events.Member) -> dict[str, Any]:
    """
    One newcomer in a C{crowd} frame: only what is not a default (every
    member of a room of 10,000 is told of every other once, so each byte
    here is paid 50 million times filling it).
    """
    entry: dict[str, Any] = {"name": m.nick, "door": m.door}
    if m.registered:
        entry["registered"] = True
    if m.colour is not None:
        entry["color_name"] = m.colour.name
    return entry


def _system(event: str, message: str, **fields: Any) -> dict[str, Any]:
    return {"type": "system", "event": event, "message": message, **fields}


def _presence(event: events.Presence) -> dict[str, Any]:
    # A rename's mark is the new nick's: the old one is shown as it was.
    who = _who(event.nick, event.door, event.registered and event.kind != "nick")
    common = {
        "name": event.nick,
        "door": event.door,
        "ts": event.ts,
        "registered": event.registered,
    }
    if event.colour is not None:
        common["color"] = event.colour.css
        common["color_name"] = event.colour.name
    match event.kind:
        case "join":
            return _system(
                "join",
                f"{who} joined {event.room}",
                room=event.room,
                epoch=event.epoch,
                last_id=event.last_id,
                **common,
            )
        case "part":
            reason = f" ({event.reason})" if event.reason else ""
            return _system(
                "part",
                f"{who} left {event.room}{reason}",
                room=event.room,
                reason=event.reason,
                **common,
            )
        case "quit":
            reason = f" ({event.reason})" if event.reason else ""
            return _system("quit", f"{who} quit{reason}", reason=event.reason, **common)
        case "lost":
            return _system("lost", f"{who} lost connection", **common)
        case "nick":
            return _system(
                "nick",
                f"{who} is now known as {event.new_nick}"
                + (" (registered)" if event.registered else ""),
                new_name=event.new_nick,
                **common,
            )
        case "login":
            return _system(
                "account_login",
                f"{who} is logged in to the registered nick {event.nick}",
                **common,
            )
        case "away":
            text = (
                f"{who} is away: {event.reason}" if event.reason else f"{who} is back"
            )
            return _system("away", text, away=event.reason, **common)


def _message(event: events.RoomMessage, sender_copy: bool) -> dict[str, Any]:
    frame = {
        "type": "usermsg",
        "name": event.nick,
        "message": event.text,
        "color": event.colour.css,
        "color_name": event.colour.name,
        "room": event.room,
        "id": event.id,
        "epoch": event.epoch,
        "ts": event.ts,
        "door": event.door,
        "action": event.action,
    }
    if sender_copy and event.client_id is not None:
        frame["client_id"] = event.client_id
    return frame


def _earlier(event: events.RoomMessage) -> dict[str, Any]:
    frame = _message(event, False)
    frame["history"] = True
    return frame


def history_frames(event: events.History) -> list[bytes]:
    """
    The frames for a batch of history.

    On join and resume each message is its own C{usermsg} frame marked
    C{"history": true} (classic clients show them like any other), and a
    resume ends with a C{resumed} frame; a requested page is one C{history}
    frame.
    """
    if event.reason == "page":
        return [
            _dumps(
                {
                    "type": "history",
                    "room": event.room,
                    "epoch": event.epoch,
                    "messages": [_earlier(m) for m in event.messages],
                    "more": event.more,
                }
            )
        ]
    frames = [_dumps(_earlier(m)) for m in event.messages]
    if event.reason == "resume":
        frames.append(
            _dumps(
                {
                    "type": "resumed",
                    "room": event.room,
                    "epoch": event.epoch,
                    "complete": event.complete,
                    "last_id": event.last_id,
                    "count": len(event.messages),
                }
            )
        )
    return frames


def to_json(event: events.Event, sender_copy: bool = False) -> dict[str, Any]:
    """
    The JSON object for an event.

    @param sender_copy: For a room message, whether this is the sender's
        copy, which carries its C{client_id}.
    """
    match event:
        case events.RoomMessage():
            return _message(event, sender_copy)
        case events.PrivateMessage():
            return {
                "type": "private",
                "from": event.sender,
                "to": event.recipient,
                "message": event.text,
                "color": event.sender_colour.css,
                "color_name": event.sender_colour.name,
                "door": event.sender_door,
                "ts": event.ts,
                "outgoing": event.outgoing,
                **({"offline": True} if event.offline else {}),
            }
        case events.Presence():
            return _presence(event)
        case events.TopicChanged():
            text = (
                f"{event.nick} set the topic of {event.room}: {event.topic}"
                if event.topic
                else f"{event.nick} cleared the topic of {event.room}"
            )
            return _system(
                "topic",
                text,
                room=event.room,
                name=event.nick,
                topic=event.topic,
                ts=event.ts,
            )
        case events.Welcome():
            return _system(
                "welcome",
                f"Welcome to {event.server}. You are {event.nick}."
                + (
                    f" You came through the onion service {event.onion}."
                    if event.onion
                    else ""
                ),
                server=event.server,
                motd=list(event.motd),
                name=event.nick,
                room=event.room,
                color=event.colour.css,
                color_name=event.colour.name,
                palette={c.name: c.css for c in PALETTE.values()},
                resume_code=event.resume_code,
                **({"onion": event.onion} if event.onion else {}),
            )
        case events.RoomList(rooms, page, pages, total):
            listed = ", ".join(f"{r.name} ({r.members})" for r in rooms)
            more = (
                {} if total is None else {"page": page, "pages": pages, "total": total}
            )
            if total is not None:
                listed += f" (page {page} of {pages}; {total} rooms in all)"
            return _system(
                "rooms",
                f"Rooms: {listed}",
                rooms=[
                    {"name": r.name, "members": r.members, "topic": r.topic}
                    for r in rooms
                ],
                **more,
            )
        case events.Who(room, members):
            names = ", ".join(
                _who(m.nick, m.door, m.registered)
                + (f" (away: {m.away})" if m.away is not None else "")
                for m in members
            )
            return _system(
                "who",
                f"{room} ({len(members)}): {names}",
                room=room,
                members=[_member(m) for m in members],
            )
        case events.Crowd(ts, room, joined, left, count):
            return _system(
                "crowd",
                crowd_text(event),
                room=room,
                joined=[_arrival(m) for m in joined],
                left=[m.nick for m in left],
                members=count,
                ts=ts,
            )
        case events.Mentions(mentions, fresh):
            head = (
                "While you were away you were mentioned:"
                if fresh
                else "Mentions of you (the latest kept):"
            )
            lines = [
                f"{m.room} <{m.nick}> {m.text}"
                if not m.action
                else f"{m.room} * {m.nick} {m.text}"
                for m in mentions
            ]
            return _system(
                "mentions",
                "\n".join([head, *lines])
                if mentions
                else "No mentions of you are kept",
                fresh=fresh,
                mentions=[
                    {
                        "ts": m.ts,
                        "room": m.room,
                        "id": m.id,
                        "name": m.nick,
                        "message": m.text,
                        "action": m.action,
                    }
                    for m in mentions
                ],
            )
        case events.LoggedIn(name, token, expires, last_login, registered):
            text = (
                f"{name} is registered to you: nobody else can take it."
                if registered
                else f"You are logged in as {name}."
            )
            return _system(
                "login",
                text,
                name=name,
                registered=registered,
                last_login=last_login,
                **({"token": token, "expires": expires} if token is not None else {}),
            )
        case events.LoggedOut(nick, reason):
            return _system(
                "logout",
                f"{reason[:1].upper()}{reason[1:]}; you are {nick} now.",
                name=nick,
                reason=reason,
            )
        case events.Topic(room, topic, set_by):
            text = (
                f"{room} has no topic"
                if topic is None
                else f"Topic of {room} (set by {set_by}): {topic}"
            )
            return _system("topic_info", text, room=room, topic=topic, set_by=set_by)
        case events.Motd(lines):
            return _system("motd", "\n".join(lines), lines=list(lines))
        case events.Help(listed, operator):
            text = "\n".join(f"{u}: {d}" for u, d in listed)
            if operator:
                text += "\nOperator commands:\n" + "\n".join(
                    f"{u}: {d}" for u, d in operator
                )
            return _system(
                "help",
                text + "\n//text: send a line that starts with /",
                commands=[{"usage": u, "description": d} for u, d in listed],
                operator_commands=[{"usage": u, "description": d} for u, d in operator],
            )
        case events.Notice(ts, kind, by, text, room):
            shown = f"Announcement from {by}: {text}" if kind == "announce" else text
            return _system(
                "notice", shown, kind=kind, by=by, text=text, room=room, ts=ts
            )
        case events.Listing(kind, title, lines, data):
            return _system(
                kind, "\n".join((title, *lines)), title=title, lines=list(lines), **data
            )
        case events.Shutdown(reason):
            return _system(
                "shutdown",
                f"The server is going down ({reason}); this page reconnects "
                "when it is back.",
                reason=reason,
            )
        case events.Status(text, data):
            return _system("status", text, **data)
        case events.Error(code, text, _, name):
            frame = {"type": "error", "code": code, "message": text}
            if name is not None:
                frame["name"] = name
            return frame
        case events.Goodbye(reason, elsewhere):
            return _system(
                "goodbye",
                f"Goodbye ({reason})",
                reason=reason,
                **({"code": "taken-over"} if elsewhere else {}),
            )
        case events.Continued(nick, colour, rooms, current, code, account, away, n):
            return {
                "type": "continued",
                "message": f"Welcome back, {nick}.",
                "name": nick,
                "color": colour.css,
                "color_name": colour.name,
                "rooms": list(rooms),
                "current": current,
                "resume_code": code,
                "account": account,
                "away": away,
                "missed": n,
            }
    raise TypeError(f"the web door cannot encode {event!r}")


def error_frame(
    code: str, message: str, client_id: str | None = None, name: str | None = None
) -> bytes:
    """
    The payload of an C{error} frame, for one client only.

    @param client_id: The tag of the request that failed, if it had one.
    @param name: See L{events.Error.name}.
    """
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if client_id is not None:
        frame["client_id"] = client_id
    if name is not None:
        frame["name"] = name
    return _dumps(frame)


def _dumps(frame: dict[str, Any]) -> bytes:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def encode(event: events.Event, sender_copy: bool = False) -> bytes:
    """
    The frame payload for an event: compact UTF-8 JSON.
    """
    return _dumps(to_json(event, sender_copy))
