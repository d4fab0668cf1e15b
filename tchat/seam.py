# -*- test-case-name: tests.test_backplane -*-
"""
The seam between the hub and the other nodes of its chat, or none.

  - L{IBackplane}: everything the hub asks of "the other nodes": numbering
    and keeping room messages, sharing events, nick claims and lookups,
    listings of the whole chat, ban numbers, requests to other nodes.
  - L{IHubInbox}: what a backplane hands back to the hub.
  - The typed values that cross it: L{Audience}, L{Listing}, L{Health}, the
    requests one node makes of the others, and the failures it reports.

L{tchat.backplane.LocalBackplane} serves a node alone; the Redis one
(L{tchat.cluster}) serves a node among others.  C{tchat.tap} picks one at
start, and the hub never asks which it has.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, NamedTuple, TypeVar

from prometheus_client.metrics_core import Metric
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import Interface

from tchat import events
from tchat.history import Ban
from tchat.model import Directory, Room, User

T = TypeVar("T")


class UnreachableError(ConnectionError):
    """
    The other nodes cannot be reached now: what was asked was not sent.
    """


class NotKeptError(Exception):
    """
    A room message could not be kept (the store failed), so nobody was
    shown it.
    """


class UnconfirmedError(Exception):
    """
    Whether a room message was said cannot be told any more (the cluster
    never answered, and has moved on past what it keeps): it may have been
    shown.
    """


@dataclass(frozen=True)
class Audience:
    """
    Who is told an event: resolved against each node's own directory, so
    that one audience reaches the same kind of people on every node.

    @ivar rooms: The members of these rooms (by key).
    @ivar nicks: The users with these nicks (by key).
    @ivar operators: Every operator.
    @ivar everyone: Every user.
    @ivar users: Users of this node told as well; never shared.
    @ivar besides: Users of this node not told after all; never shared.
    """

    rooms: tuple[str, ...] = ()
    nicks: tuple[str, ...] = ()
    operators: bool = False
    everyone: bool = False
    users: tuple[User, ...] = field(default=(), compare=False)
    besides: tuple[User, ...] = field(default=(), compare=False)

    def resolve(self, directory: Directory) -> dict[User, None]:
        """
        @return: The users of C{directory} in this audience, once each.
        """
        told: dict[User, None] = dict.fromkeys(self.users)
        if self.everyone:
            told.update(dict.fromkeys(directory.users.values()))
        for key in self.rooms:
            room = directory.rooms.get(key)
            if room is not None:
                told.update(dict.fromkeys(room.members))
        for key in self.nicks:
            user = directory.users.get(key)
            if user is not None:
                told[user] = None
        if self.operators:
            told.update(dict.fromkeys(directory.operators()))
        for user in self.besides:
            told.pop(user, None)
        return told


class Draft(NamedTuple):
    """
    A room message as its sender said it, before it is numbered: the rest
    (nick, door, colour; room and epoch) comes from the sender and the
    room.  A tuple, not an event: one is made for every line said.

    @ivar ts: When it was said, by the hub's clock.
    @ivar client_id: The client's tag, to acknowledge it and recognise a
        retry.
    @ivar notice: Said as an IRC C{NOTICE} (see L{events.RoomMessage}).
    """

    text: str
    action: bool
    client_id: str | None
    ts: float
    notice: bool = False

    def message(self, sender: User, room: Room, id: int) -> events.RoomMessage:
        """The message numbered C{id} in C{room}, in the room's epoch."""
        return events.RoomMessage(
            room.name,
            id,
            self.ts,
            sender.nick,
            sender.door,
            sender.colour,
            self.text,
            self.action,
            self.client_id,
            room.epoch,
            self.notice,
        )


@dataclass(frozen=True)
class Listing(Generic[T]):
    """
    An answer about the whole chat (C{/rooms}, C{/who}).

    @ivar partial: Only this node could answer: the others are cut off.
    @ivar total: How many there are in all, when C{items} is one page of
        them; C{None} when it is all of them.
    """

    items: tuple[T, ...]
    partial: bool = False
    total: int | None = None


@dataclass(frozen=True)
class Health:
    """
    How a backplane is doing, for the admin door and operators' C{/stats}.

    @ivar checks: Named checks for C{/healthz} (none for a node alone).
    @ivar degraded: The node serves its users, but not all of the chat.
    @ivar stats: Fields added to operators' C{/stats}.
    @ivar lines: Lines added to the text of operators' C{/stats}.
    """

    checks: Mapping[str, str] = field(default_factory=dict)
    degraded: bool = False
    stats: Mapping[str, Any] = field(default_factory=dict)
    lines: tuple[str, ...] = ()


# -- what one node asks of the others -------------------------------------

OperatorAction = Literal["kick", "mute", "unmute", "ban"]


@dataclass(frozen=True)
class OperatorRequest:
    """
    An operator acts on a user of another node; that node carries it out.

    @ivar target: The key of the user's nick.
    @ivar by: The operator's nick; C{account} their operator account and
        C{door} their door.
    """

    action: OperatorAction
    target: str
    by: str
    account: str
    door: str
    reason: str | None = None
    duration: int | None = None


@dataclass(frozen=True)
class BansMade:
    """
    An operator made bans: every node applies them to its own users.

    @ivar by: The operator's nick.
    @ivar duration: Seconds; C{None} until lifted.
    """

    bans: tuple[Ban, ...]
    by: str
    reason: str | None = None
    duration: int | None = None


@dataclass(frozen=True)
class BansLifted:
    """An operator lifted these bans (by number)."""

    ids: tuple[int, ...]


@dataclass(frozen=True)
class BansKnown:
    """Bans kept by the chat that this node did not know: they apply to
    whoever comes in from now on."""

    bans: tuple[Ban, ...]


@dataclass(frozen=True)
class MotdChanged:
    """An operator changed the message of the day."""

    lines: tuple[str, ...]


@dataclass(frozen=True)
class TakenOver:
    """
    The session with resume C{code} went on in a new connection on another
    node: its connection here must go, without saving it or freeing its nick.
    C{login}: its nick's account was logged in to there (not a resume).
    """

    code: str
    login: bool = False


Request = OperatorRequest | BansMade | BansLifted | BansKnown | MotdChanged | TakenOver


class IHubInbox(Interface):
    """
    What a backplane hands the hub: typed values, never raw bus data.
    """

    def message(room: Room, message: events.RoomMessage, received: float) -> None:
        """
        A room message, numbered and kept: show it.  Every node of the
        chat, the sender's included, is handed each message once, in the
        room's order (a room new to this node is in its directory first).

        @param received: When this node took it in (C{time.perf_counter}),
            to time the fan-out.
        """

    def repeated(sender: User, room: Room, client_id: str, id: int) -> None:
        """
        C{sender}'s message tagged C{client_id} was numbered already (as
        C{id}): a retry, not said again.
        """

    def unsaid(sender: User, draft: Draft, why: Failure) -> None:
        """
        C{sender}'s message C{draft} could not be numbered or kept, so
        nobody was shown it.

        @param why: L{NotKeptError} when the store failed; anything else when
            the other nodes could not be reached.
        """

    def event(event: events.Event, audience: Audience) -> None:
        """
        Another node's event, for this node's users in C{audience}.
        """

    def request(request: Request) -> None:
        """
        Another node asks this one to act.
        """

    def nick_lost(user: User) -> None:
        """
        Another node's user has C{user}'s nick (both were given it while
        the nodes could not reach each other): C{user} must take another.
        """

    def reachable(up: bool) -> None:
        """
        The other nodes can no longer (C{False}), or again (C{True}), be
        reached; meanwhile this node serves its own users alone.
        """


class IBackplane(Interface):
    """
    What the hub asks of the other nodes of its chat, or of none.

    While the other nodes cannot be reached, a backplane serves as one for
    a node alone would.
    """

    def attach(inbox: IHubInbox, directory: Directory) -> None:
        """
        Called once, before L{start}: where to hand what arrives, and the
        directory of this node's users and rooms.
        """

    def start() -> Deferred[None]:
        """
        Join the chat (the hub has loaded its store): connect, catch up.

        @return: Fires when users may come in.
        """

    def stop() -> Deferred[None]:
        """
        Leave the chat: this node's users are gone already.
        """

    def say(sender: User, room: Room, draft: Draft) -> None:
        """
        Number, keep and publish C{sender}'s message C{draft} in C{room}.
        It reaches L{IHubInbox.message} on every node; a retry of a message
        already numbered reaches L{IHubInbox.repeated}, and one that could
        not be numbered or kept, L{IHubInbox.unsaid}.
        """

    def ensure(rooms: Sequence[Room]) -> Deferred[None]:
        """
        C{rooms} are new to this node: take the chat's view of them (epoch,
        latest id, topic) before anyone is shown them.
        """

    def share(event: events.Event, audience: Audience) -> None:
        """
        Have the other nodes tell C{event} to their users in C{audience}.
        """

    def ask(request: Request) -> Deferred[None]:
        """
        Have the other nodes carry out C{request}.

        @return: Fires once it is sent; fails when it cannot be.
        """

    def joined(user: User, room: Room) -> None:
        """C{user}, of this node, is in C{room} now."""

    def parted(user: User, room: Room) -> None:
        """C{user}, of this node, left C{room}."""

    def renamed(user: User, old: str) -> None:
        """C{user}, of this node, was called C{old} until now."""

    def left(user: User) -> None:
        """C{user} left this node (their rooms are still listed)."""

    def claim(
        user: User, nick: str, takeover: bool = False, force: bool = False
    ) -> Deferred[bool]:
        """
        Claim C{nick} for C{user} in the whole chat (this node has checked
        its own users already).

        @param takeover: Take it from another connection of the same
            session (a resume), which is then closed.
        @param force: Take it from whoever has it, who is then closed: the
            owner of the nick's account logged in.
        @return: Fires with C{True} when claimed, C{False} when someone
            else has it; fails with L{UnreachableError} when that cannot be
            known now.
        """

    def release(user: User, nick: str) -> None:
        """Free C{nick}, claimed for C{user}."""

    def locate(nick: str) -> Deferred[str | None]:
        """
        Who has C{nick} on another node: the nick as they spell it, or
        C{None} when nobody does.
        """

    def rooms(offset: int, count: int) -> Deferred[Listing[events.RoomInfo]]:
        """
        One page of the rooms of the chat, by key: C{count} of them from
        the C{offset}th on, with how many there are in all.  What it costs
        grows with C{count}, not with the number of rooms.
        """

    def members(room: Room) -> Deferred[Listing[events.Member]]:
        """Everyone in C{room}, in the whole chat."""

    def updated(user: User) -> None:
        """
        C{user}, of this node, logged in or out, or went away or came back:
        what listings show of them changed.
        """

    def ban_ids(count: int, above: int) -> Deferred[list[int]]:
        """
        C{count} new ban numbers, unique in the chat.

        @param above: The highest number this node knows.
        """

    def health() -> Health:
        """How the backplane is doing now."""

    def metrics() -> Iterable[Metric]:
        """Prometheus metrics of its own, read at scrape time."""
