# -*- test-case-name: tests.test_telnet -*-
"""
How the hub's events read on a terminal: the text of the telnet door, which
the SSH door wraps to its users' widths.

Each event is rendered once per distinct L{Variant} (what besides the event
decides the bytes: colours on or off, whose nick it is) and shared by all
its recipients with that variant (see L{events.Renderings}).
"""

import time

from tchat import events
from tchat.crowds import crowd_text
from tchat.model import User
from tchat.palette import Colour

RESET = "\x1b[0m"


def _clock_time(ts: float) -> str:
    return time.strftime("%H:%M", time.localtime(ts))


def _paint(nick: str, colour: Colour, colours: bool) -> str:
    return f"\x1b[{colour.ansi}m{nick}{RESET}" if colours else nick


def _who(
    nick: str, door: str, registered: bool = False, away: str | None = None
) -> str:
    """
    C{alice (web)}; a user logged in to their registered nick is marked, so
    a guest can never pass for them: C{alice (web, registered)}.
    """
    marks = (", registered" if registered else "") + (
        f", away: {away}" if away is not None else ""
    )
    return f"{nick} ({door}{marks})"


def _presence_text(event: events.Presence, is_self: bool) -> str:
    """The words of a presence notice, as the viewer should read them."""
    # A rename's mark is the new nick's: the old one is shown as it was.
    marked = event.registered and event.kind != "nick"
    who = "you" if is_self else _who(event.nick, event.door, marked)
    why = f" ({event.reason})" if event.reason else ""
    match event.kind:
        case "join":
            return f"{who} joined {event.room}"
        case "part":
            return f"{who} left {event.room}{why}"
        case "quit":
            return f"{who} quit{why}"
        case "lost":
            return f"{who} lost connection"
        case "nick":
            verb = "are" if is_self else "is"
            return f"{who} {verb} now known as {event.new_nick}" + (
                " (registered)" if event.registered else ""
            )
        case "login":
            verb = "are" if is_self else "is"
            return f"{who} {verb} logged in to the registered nick {event.nick}"
        case "away":  # (not shown: see variant)
            return f"{who} is away{why}" if event.reason else f"{who} is back"


def _lines(*lines: str) -> bytes:
    """
    Lines as they go on the wire: UTF-8, CR LF ends, IAC bytes doubled.
    """
    data = "".join(line + "\r\n" for line in lines).encode("utf-8")
    # UTF-8 never contains 0xFF, but the wire form must not depend on that.
    return data.replace(b"\xff", b"\xff\xff")


Variant = tuple[bool, ...]

# The rendering keys of a room message, by [colours][elsewhere].
_MESSAGE_KEYS: tuple[tuple[tuple[str, Variant], ...], ...] = tuple(
    tuple(("telnet", (colours, elsewhere)) for elsewhere in (False, True))
    for colours in (False, True)
)


def variant(event: events.Event, viewer: User) -> Variant | None:
    """
    What, besides the event itself, decides the bytes C{viewer} gets.

    This is computed per recipient and must stay cheap; the text is produced
    by L{encode} once per distinct variant.

    @return: The variant, or C{None} when the viewer is not shown the event
        (their own room message: they typed it, so no echo).
    """
    match event:
        case events.RoomMessage():
            if event.nick == viewer.nick:
                return None
            current = viewer.current
            elsewhere = current is None or current.name != event.room
            return (viewer.show_colours, elsewhere)
        case events.PrivateMessage():
            return (viewer.show_colours,)
        case events.Presence():
            if event.kind == "away":
                return None  # in /who, and told to those who write to them
            return (event.nick == viewer.nick or event.new_nick == viewer.nick,)
        case events.History():
            return (viewer.show_colours,)
    return ()


def encode(event: events.Event, variant: Variant) -> bytes:
    """
    The telnet bytes of C{event} for every viewer with C{variant}.
    """
    match event, variant:
        case events.RoomMessage(), (colours, elsewhere):
            where = f"{event.room} " if elsewhere else ""
            nick = _paint(event.nick, event.colour, colours)
            body = (
                f"* {nick} {event.text}" if event.action else f"<{nick}> {event.text}"
            )
            return _lines(f"[{_clock_time(event.ts)}] {where}{body}")
        case events.PrivateMessage(), (colours,):
            stamp = _clock_time(event.ts)
            if event.offline:
                nick = _paint(event.sender, event.sender_colour, colours)
                when = _stamp(event.ts, time.localtime())
                return _lines(f"[{when}] *{nick}* (while you were away) {event.text}")
            if event.outgoing:
                return _lines(f"[{stamp}] -> *{event.recipient}* {event.text}")
            nick = _paint(event.sender, event.sender_colour, colours)
            return _lines(f"[{stamp}] *{nick}* {event.text}")
        case events.Presence(), (is_self,):
            text = _presence_text(event, is_self)
            return _lines(f"[{_clock_time(event.ts)}] *** {text}")
        case events.History(), (colours,):
            return _history(event, colours)
        case events.Crowd(), _:
            return _lines(f"[{_clock_time(event.ts)}] *** {crowd_text(event)}")
        case events.Notice(), _:
            text = (
                f"Announcement from {event.by}: {event.text}"
                if event.kind == "announce"
                else event.text
            )
            return _lines(f"[{_clock_time(event.ts)}] *** {text}")
        case events.TopicChanged(), _:
            if event.topic:
                text = f"{event.nick} set the topic of {event.room}: {event.topic}"
            else:
                text = f"{event.nick} cleared the topic of {event.room}"
            return _lines(f"[{_clock_time(event.ts)}] *** {text}")
    return _reply(event)


def _stamp(ts: float, today: time.struct_time) -> str:
    """
    A history line's time: the date too when it is not from today.
    """
    when = time.localtime(ts)
    if when[:3] == today[:3]:
        return time.strftime("%H:%M", when)
    return time.strftime("%b %d %H:%M", when)


def _history(event: events.History, colours: bool) -> bytes:
    """
    Earlier messages, between a header and a footer so they stand apart
    from live ones; the user's own messages are shown too.
    """
    room, count = event.room, len(event.messages)
    today = time.localtime()
    body = []
    for m in event.messages:
        nick = _paint(m.nick, m.colour, colours)
        said = f"* {nick} {m.text}" if m.action else f"<{nick}> {m.text}"
        body.append(f"[{_stamp(m.ts, today)}] {said}")
    match event.reason:
        case "join":
            head = f"*** Recent messages in {room}:"
            foot = "*** End of recent messages"
        case "resume":
            gap = (
                []
                if event.complete
                else [f"*** Some earlier messages of {room} are no longer kept"]
            )
            if not count:
                return _lines(*gap, f"*** Nothing new in {room} since you left")
            plural = "message" if count == 1 else "messages"
            head = f"*** {count} {plural} in {room} since you left:"
            return _lines(*gap, head, *body, f"*** End of missed messages in {room}")
        case "page":
            if not count:
                return _lines(f"*** No earlier messages in {room}")
            plural = "message" if count == 1 else "messages"
            head = f"*** Last {count} {plural} in {room}:"
            foot = "*** End of history" + (
                "; older messages are kept too (/history N shows more)"
                if event.more
                else ""
            )
    return _lines(head, *body, foot)


def _reply(event: events.Event) -> bytes:
    """
    Render an event meant for one user: answers, errors, the welcome.
    """
    match event:
        case events.Welcome(server, motd, nick, _, _, code, onion):
            via = [f"*** You came through the onion service {onion}"] if onion else []
            resume = (
                [
                    f"*** Your resume code is {code}: after a reconnect, "
                    f"/resume {code} brings back your nick, rooms and what you missed."
                ]
                if code
                else []
            )
            return _lines(
                f"*** Welcome to {server}",
                *(f"  {line}" for line in motd),
                f"*** You are {nick}. /nick NAME changes it; /help lists commands.",
                *via,
                *resume,
            )
        case events.Motd(lines):
            return _lines("*** Message of the day:", *(f"  {line}" for line in lines))
        case events.Help(commands, operator):
            width = max(len(usage) for usage, _ in (*commands, *operator))
            extra = (
                ["*** Operator commands:"]
                + [f"  {usage:<{width}}  {text}" for usage, text in operator]
                if operator
                else []
            )
            return _lines(
                "*** Commands:",
                *(f"  {usage:<{width}}  {text}" for usage, text in commands),
                f"  {'//text':<{width}}  send a line that starts with /",
                *extra,
            )
        case events.Listing(_, title, lines):
            return _lines(f"*** {title}:", *(f"  {line}" for line in lines))
        case events.Shutdown(reason):
            return _lines(
                f"*** The server is going down ({reason}). Reconnect in a "
                "moment; /resume with your code brings back your nick and rooms."
            )
        case events.RoomList(rooms, page, pages, total):
            head = (
                "*** Rooms:"
                if total is None
                else f"*** Rooms (page {page} of {pages}, {total} in all; "
                f"/rooms {page % pages + 1} for the next):"
            )
            return _lines(
                head,
                *(
                    f"  {r.name}  {r.members} "
                    + ("user" if r.members == 1 else "users")
                    + (f"  {r.topic}" if r.topic else "")
                    for r in rooms
                ),
            )
        case events.Who(room, members):
            names = ", ".join(
                _who(m.nick, m.door, m.registered, m.away) for m in members
            )
            return _lines(f"*** {room} ({len(members)}): {names}")
        case events.Mentions(mentions, fresh):
            if not mentions:
                return _lines("*** No mentions of you are kept")
            today = time.localtime()
            head = (
                "*** While you were away you were mentioned:"
                if fresh
                else "*** Mentions of you (the latest kept):"
            )
            return _lines(
                head,
                *(
                    f"  [{_stamp(m.ts, today)}] {m.room} "
                    + (f"* {m.nick} {m.text}" if m.action else f"<{m.nick}> {m.text}")
                    for m in mentions
                ),
                "*** End of mentions (/mentions shows them again)",
            )
        case events.LoggedIn(name, _, _, last_login, registered):
            if registered:
                return _lines(
                    f"*** {name} is registered to you: nobody else can take it. "
                    f"Log in from any door with /login {name} PASSWORD"
                )
            before = (
                f" (last login {_stamp(last_login, time.localtime())})"
                if last_login is not None
                else ""
            )
            return _lines(f"*** You are logged in as {name}{before}")
        case events.LoggedOut(nick, reason):
            return _lines(f"*** {reason[:1].upper()}{reason[1:]}; you are {nick} now")
        case events.Topic(room, topic, set_by):
            if topic is None:
                return _lines(f"*** {room} has no topic")
            return _lines(f"*** Topic of {room} (set by {set_by}): {topic}")
        case events.Status(text):
            return _lines(f"*** {text}")
        case events.Error(_, text):
            return _lines(f"!!! {text}")
        case events.Goodbye(reason):
            return _lines(f"*** Goodbye ({reason})")
        case events.Continued(nick, _, rooms, current, _, account, away, missed):
            where = f"you are in {', '.join(rooms)}" if rooms else "you are in no room"
            talking = f", talking in {current}" if current and len(rooms) > 1 else ""
            login = f", logged in as {account}" if account else ""
            still = f" You are still away: {away}" if away else ""
            follows = (
                f" Here is what you missed ({missed}):"
                if missed
                else " You missed nothing."
            )
            return _lines(
                f"*** Welcome back, {nick}: {where}{talking}{login}.{still}{follows}"
            )
    raise TypeError(f"the telnet door cannot render {event!r}")
