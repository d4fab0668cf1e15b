# -*- test-case-name: tests.test_cluster -*-
"""
What crosses the cluster's bus, as typed values with named fields.

Each bus message is one JSON object: C{t} names its kind, C{n} the node
that published it, and the rest are its fields.  L{decode} turns one into
a typed value (one of this module's, or a request of L{tchat.seam}) and
L{encode} does the reverse, as Synapse's replication commands do with
C{from_line} and C{to_line}; nothing past this module sees a bus dict.
"""

from dataclasses import asdict, dataclass, fields
from typing import Any

from tchat import events
from tchat.history import Ban
from tchat.model import User
from tchat.palette import PALETTE, Colour
from tchat.seam import (
    Audience,
    BansLifted,
    BansMade,
    Draft,
    MotdChanged,
    OperatorRequest,
    Request,
)

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
"""The events one node has the others tell their users."""

_FALLBACK_COLOUR = next(iter(PALETTE.values()))


def encode_event(event: Any) -> dict[str, Any]:
    """An event other nodes deliver, as JSON-ready values."""
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
            if f.name.endswith("colour") and value is not None:
                value = PALETTE.get(value, _FALLBACK_COLOUR)
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
        **({"notice": True} if message.notice else {}),
    }


def draft_fields(sender: User, draft: Draft, stamp: str) -> dict[str, Any]:
    """
    What L{message_fields} gives for C{sender}'s C{draft}, once numbered,
    and the sending node's C{stamp} on it (C{s}), by which that node knows
    its message when its outcome was in doubt (see L{tchat.cluster.outbox}).
    """
    return {
        "ts": draft.ts,
        "nick": sender.nick,
        "door": sender.door,
        "colour": sender.colour.name,
        "text": draft.text,
        "action": draft.action,
        "client_id": draft.client_id,
        **({"notice": True} if draft.notice else {}),
        "s": stamp,
    }


def message_from(
    room: str, id: int, epoch: int, data: dict[str, Any]
) -> events.RoomMessage:
    """A room message from its stream entry or its bus message."""
    return events.RoomMessage(
        room,
        id,
        float(data["ts"]),
        str(data["nick"]),
        str(data["door"]),
        PALETTE.get(data.get("colour", ""), _FALLBACK_COLOUR),
        str(data["text"]),
        bool(data.get("action")),
        data.get("client_id") or None,
        epoch,
        bool(data.get("notice")),
    )


@dataclass(frozen=True)
class Said:
    """
    A room message Redis numbered and kept (published by the C{SAY}
    script, never by a node itself).

    @ivar room: The room's name; C{fields} the message's (see
        L{message_fields}).
    """

    room: str
    id: int
    epoch: int
    fields: dict[str, Any]

    @property
    def stamp(self) -> str | None:
        """The sending node's stamp on it (see L{draft_fields})."""
        stamp = self.fields.get("s")
        return stamp if isinstance(stamp, str) else None

    def message(self, name: str) -> events.RoomMessage:
        """The message, in the room called C{name} here."""
        return message_from(name, self.id, self.epoch, self.fields)


@dataclass(frozen=True)
class SaidBatch:
    """
    The messages one C{SAY} script numbered in one room, in order: what
    a node gathered in one turn of its reactor.
    """

    said: tuple[Said, ...]


@dataclass(frozen=True)
class Shared:
    """An event for the users in C{audience} on every other node."""

    event: Any
    audience: Audience


@dataclass(frozen=True)
class LostUser:
    """
    A user of a node found dead: their nick, door, rooms (by key) and
    the owner of their nick's claim.
    """

    nick: str
    door: str
    rooms: tuple[str, ...]
    owner: str


@dataclass(frozen=True)
class Lost:
    """The users of nodes found dead, to show as lost in their rooms."""

    users: tuple[LostUser, ...]


@dataclass(frozen=True)
class TakeOver:
    """
    The session C{code} on node C{node} went on elsewhere: close it there.
    C{login}: its nick's account was logged in to elsewhere (not a resume).
    """

    node: str
    code: str
    login: bool = False


BusValue = SaidBatch | Shared | Lost | TakeOver | Request


def encode(value: BusValue) -> dict[str, Any]:
    """
    The bus message of C{value} (L{SaidBatch} is never encoded here: the
    C{SAY} script publishes it).
    """
    match value:
        case Shared(event, audience):
            return {
                "t": "ev",
                "ev": encode_event(event),
                "r": list(audience.rooms),
                "u": list(audience.nicks),
                "o": audience.operators,
                "a": audience.everyone,
            }
        case Lost(users):
            return {
                "t": "lost",
                "users": [[u.nick, u.door, list(u.rooms), u.owner] for u in users],
            }
        case TakeOver(node, code, login):
            return {"t": "takeover", "node": node, "code": code, "login": login}
        case OperatorRequest():
            return {
                "t": "op",
                "to": value.target,
                "by": value.by,
                "account": value.account,
                "door": value.door,
                "do": value.action,
                "reason": value.reason,
                "duration": value.duration,
            }
        case BansMade(bans, by, reason, duration):
            return {
                "t": "ban",
                "bans": [asdict(b) for b in bans],
                "by": by,
                "reason": reason,
                "duration": duration,
            }
        case BansLifted(ids):
            return {"t": "unban", "ids": list(ids)}
        case MotdChanged(lines):
            return {"t": "motd", "lines": list(lines)}
    raise TypeError(f"not a bus value: {value!r}")


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def decode(data: dict[str, Any]) -> tuple[str | None, BusValue]:
    """
    A bus message as (the node that published it, its typed value).

    @raise ValueError: If it is not a bus message this version knows
        (a C{KeyError} or C{TypeError} for missing or ill-typed fields).
    """
    sender = data.get("n")
    node = str(sender) if sender is not None else None
    match data.get("t"):
        case "said":
            room, epoch = str(data["room"]), int(data["e"])
            said = tuple(Said(room, int(id), epoch, dict(m)) for id, m in data["b"])
            return node, SaidBatch(said)
        case "ev":
            audience = Audience(
                rooms=tuple(str(r) for r in data.get("r", ())),
                nicks=tuple(str(u) for u in data.get("u", ())),
                operators=bool(data.get("o")),
                everyone=bool(data.get("a")),
            )
            return node, Shared(decode_event(data["ev"]), audience)
        case "lost":
            users = tuple(
                LostUser(str(nick), str(door), tuple(str(r) for r in rooms), str(owner))
                for nick, door, rooms, owner in data["users"]
            )
            return node, Lost(users)
        case "takeover":
            return node, TakeOver(
                str(data["node"]), str(data["code"]), bool(data.get("login"))
            )
        case "op":
            action = data["do"]
            if action not in ("kick", "mute", "unmute", "ban"):
                raise ValueError(f"not an operator action: {action!r}")
            return node, OperatorRequest(
                action,
                str(data["to"]),
                str(data["by"]),
                str(data["account"]),
                str(data["door"]),
                _optional_str(data.get("reason")),
                _optional_int(data.get("duration")),
            )
        case "ban":
            return node, BansMade(
                tuple(Ban(**b) for b in data["bans"]),
                str(data["by"]),
                _optional_str(data.get("reason")),
                _optional_int(data.get("duration")),
            )
        case "unban":
            return node, BansLifted(tuple(int(i) for i in data.get("ids", ())))
        case "motd":
            return node, MotdChanged(tuple(str(line) for line in data["lines"]))
    raise ValueError(f"not a bus message: {str(data.get('t'))[:32]!r}")
