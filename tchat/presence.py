# -*- test-case-name: tests.test_presence -*-
"""
Presence: who is here and under what name.

Arrival (the welcome, a guest nick, the default room), the one way out
(L{Presence.leave}, whatever the reason), nick changes and colours, and
the end of everyone's stay when the server stops.
"""

import functools
import random
from collections.abc import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from tchat import events
from tchat.bans import BanList, Mutes, banned_text
from tchat.delivery import Delivery
from tchat.interfaces import IParticipant
from tchat.metrics import Metrics
from tchat.model import Directory, Room, User, arrival
from tchat.pacing import ALLOW, Close, Drop, Pacing
from tchat.palette import colour_for
from tchat.rooms import Rooms
from tchat.seam import Audience, IBackplane
from tchat.sessions import Sessions
from tchat.text import (
    ROOM_MAX,
    clean_text,
    nick_fold,
    nick_key,
)

RESERVED_NICKS = frozenset({"server", "admin", "operator", "system", "root"})
"""Nobody may take these, nor anything that looks like them (see L{nick_key})."""


@functools.cache
def _reserved_keys() -> dict[str, str]:
    """Each reserved nick by its key."""
    return {nick_key(name): name for name in RESERVED_NICKS}


def _looks_like(nick: str, other: str) -> str:
    """
    C{": it looks like OTHER"} when C{nick} has the key of C{other} without
    being C{other} in another case; else nothing.
    """
    return "" if nick_fold(nick) == nick_fold(other) else f": it looks like {other}"


OUTAGE = (
    "the cluster is unreachable: until it is back you chat only with people "
    "on this server"
)
"""What each user is told, once, when this node loses the other nodes."""
BACK = "the cluster is back: you chat with everyone again"
"""...and when it has them again."""

QUIET_ARRIVAL = 3.0
"""Seconds a new connection that says nothing stays unannounced (see
L{Presence.settle}): a client carrying on a session sends its code or login
at once, and whoever it was stays the only one the others ever saw."""


class Presence:
    """
    Users coming, going and renaming themselves.

    @ivar closing: Whether the server is stopping: nobody new comes in.
    @ivar onion_address: The onion service's address once published,
        shown to onion users.
    """

    _log = Logger()

    def __init__(
        self,
        directory: Directory,
        delivery: Delivery,
        backplane: IBackplane,
        pacing: Pacing,
        sessions: Sessions,
        rooms: Rooms,
        bans: BanList,
        mutes: Mutes,
        metrics: Metrics,
        clock: IReactorTime,
        rng: random.Random,
    ) -> None:
        self._directory = directory
        self._delivery = delivery
        self._backplane = backplane
        self._pacing = pacing
        self._sessions = sessions
        self._rooms = rooms
        self._bans = bans
        self._mutes = mutes
        self._metrics = metrics
        self._clock = clock
        self._rng = rng
        self.closing = False
        self.onion_address: str | None = None
        # Set by the hub: the nick registered with a nick's key, if any
        # (registered nicks are their owners' alone), and what is done
        # when a logged-in user leaves (see tchat.accounts).
        self.registered: Callable[[str], Deferred[str | None]] = lambda nick: succeed(
            None
        )
        self.on_leave: Callable[[User], None] = lambda user: None
        # Set by the hub: keep a user whose connection ended in the chat
        # for the reconnect grace period (see tchat.continuity); whether
        # it did.
        self.linger: Callable[[User, bool], bool] = lambda user, clean: False
        self._unsettled: dict[User, IDelayedCall] = {}
        self._cut_off = False
        self._told: set[User] = set()
        self._drained: Deferred[None] | None = None

    # -- arriving ----------------------------------------------------------

    def arrive(self, participant: IParticipant) -> User:
        """A guest nick, a welcome, and the default room unless C{lands} is false."""
        nick = self.guest_nick()
        door = participant.door
        user = User(participant, nick, door, colour_for(nick))
        user.address = getattr(participant, "address", None)
        user.pings = getattr(participant, "pings", False)
        now = user.connected_at = self._clock.seconds()
        participant.attached(user)
        self._metrics.connected(door)
        server = self._directory.settings.server
        if self.closing:
            user.connected = False
            self._delivery.tell(user, events.Shutdown("the server is shutting down"))
            participant.close("server shutting down", "going-away")
            return user
        ban = self._bans.find(now, address=user.address)
        if ban is not None:
            user.connected = False
            self._log.info(
                "refused {address} ({door}): {ban}",
                address=user.address,
                door=door,
                ban=f"{ban.kind} {ban.pattern}",
            )
            self._metrics.drop("banned")
            self._delivery.error(user, "banned", banned_text(ban, server.name, now))
            participant.close("banned", "policy")
            return user
        user.code = self._sessions.unused_code()
        self._directory.add(user)
        if server.reconnect_grace:
            user.settled = False
            self._unsettled[user] = self._clock.callLater(
                QUIET_ARRIVAL, self.settle, user
            )
        self._mutes.apply(user, now)
        lobby = self._directory.lobby
        landing = self._landing(user, lobby)
        # A colour nobody in the room has, while the palette has one.
        taken = {colour for colour, count in landing.colours.items() if count}
        user.colour = colour_for(nick, taken)
        resume_ttl = self._directory.settings.history.resume_ttl
        self._delivery.tell(
            user,
            events.Welcome(
                server.name,
                # Not shown again to a connection that turns out to carry
                # on a session: it comes when this one settles.
                server.motd if user.settled else (),
                nick,
                landing.name,
                user.colour,
                user.code if resume_ttl else "",
                self.onion_address or "" if door == "onion" else "",
            ),
        )
        if self._cut_off:
            self._tell_cut_off(user)
        self.claim_guest(user)
        if getattr(participant, "lands", True):  # (IRC clients pick their own)
            self._rooms.join(user, landing, save=False)
        if landing is not lobby and landing in user.rooms:
            most = self._directory.settings.limits.max_users_per_room
            self._delivery.tell(
                user,
                events.Status(
                    f"{lobby.name} is full ({most} users): you are in "
                    f"{landing.name}, its overflow; /join {lobby.name} later"
                ),
            )
        self._log.info("{nick} connected by {door}", nick=nick, door=door)
        return user

    def _landing(self, user: User, lobby: Room) -> Room:
        """
        Where C{user} arrives: the default room, or while it is full, the
        first of its overflow rooms (C{#lobby-2}, C{#lobby-3}...) with
        room, made as needed.  A newcomer always lands where they can talk,
        and no room grows past C{max_users_per_room}.
        """
        room, number = lobby, 1
        while self._pacing.full(user, room):
            number += 1
            suffix = f"-{number}"
            name = lobby.name[: ROOM_MAX + 1 - len(suffix)] + suffix
            room = self._directory.room(name) or self._directory.new_room(name)
        return room

    def settle(self, user: User) -> None:
        """
        Tell the others C{user} is here: in each of their rooms, the join
        only they saw so far; and show the user the message of the day,
        held back until now.  A new connection is not announced at once:
        if it carries on a session still here (a page reloaded, a network
        that came back), it is dropped without a word and nobody sees it
        (see L{tchat.continuity}).  Idempotent.
        """
        timer = self._unsettled.pop(user, None)
        if timer is not None and timer.active():
            timer.cancel()
        if user.settled or not user.connected:
            return
        user.settled = True
        motd = self._directory.settings.server.motd
        if motd:
            self._delivery.tell(user, events.Motd(motd))
        now = self._clock.seconds()
        for room in user.rooms:
            self._delivery.deliver(
                arrival(user, room, now), Audience(rooms=(room.key,), besides=(user,))
            )
        # (Debug: the connection was logged as it came; a room of 10,000
        # filling would log twice as many lines, at a sixth of its CPU.)
        self._log.debug("{nick} announced", nick=user.nick)

    def discard(self, user: User, reason: str) -> None:
        """
        C{user}'s connection carries on another session now: this one goes,
        silently unless the others were told it arrived.
        """
        self._sessions.forget(user)
        self.leave(user, "quit", reason)

    def guest_nick(self) -> str:
        """A guest nick nobody on this node has."""
        while True:
            nick = f"guest-{self._rng.getrandbits(16):04x}"
            if nick_key(nick) not in self._directory.users:
                return nick

    def claim_guest(self, user: User) -> None:
        """
        Claim C{user}'s guest nick in the whole chat; another node's user
        may have drawn the same one, and then this one draws again.
        """
        key = user.key

        def claimed(ok: bool) -> None:
            if ok or not user.connected or user.key != key:
                return
            self.rename(user, self.guest_nick(), chosen=False)
            self.claim_guest(user)

        self._backplane.claim(user, user.nick).addCallbacks(claimed, lambda f: None)

    # -- leaving -------------------------------------------------------------

    def disconnect(self, user: User, reason: str, clean: bool = False) -> None:
        """
        C{user}'s connection ended without C{/quit}.  Idempotent.

        @param clean: C{True} when the client closed the connection itself
            (others see "quit (connection closed)"); C{False} when it broke
            or was dropped (others see "lost connection").
        """
        if not user.connected:
            return
        if user.settled and self.linger(user, clean):
            self._log.info(
                "{nick} lost their connection ({reason}); they may come back",
                nick=user.nick,
                reason=reason,
            )
            return
        if clean:
            self.leave(user, "quit", "connection closed")
        else:
            self.leave(user, "lost", None)
        self._log.info("{nick} disconnected: {reason}", nick=user.nick, reason=reason)

    def quit(self, user: User, reason: str | None) -> None:
        """C{/quit [REASON]}."""
        reason = clean_text(reason).strip() if reason else None
        self._delivery.tell(user, events.Goodbye(reason or "bye"))
        self.leave(user, "quit", reason)
        user.participant.close("quit")

    def received(self, user: User) -> bool:
        """
        A door got a line or frame from C{user}: may it be handled?  (See
        L{Pacing.received}.)  Past the limits it is dropped, with a notice,
        or the user is sent off.
        """
        if not user.connected:
            return False
        verdict = self._pacing.received(user)
        if verdict is ALLOW:
            return True
        if isinstance(verdict, Close):
            self.close_for(user, verdict.reason, verdict.said)
        elif isinstance(verdict, Drop):
            self._delivery.refuse(user, verdict.notice)
        return False

    def close_for(self, user: User, reason: str, said: str) -> None:
        """
        Disconnect C{user} for breaking a limit, telling them and the
        people in their rooms why.
        """
        self._log.info(
            "closing {nick} ({door}): {said}", nick=user.nick, door=user.door, said=said
        )
        self._metrics.drop(reason)
        self._delivery.tell(user, events.Goodbye(said))
        self.leave(user, "quit", reason)
        user.participant.close(said, "policy")

    def too_slow(self, user: User, waiting: int) -> None:
        """
        A door is closing C{user}'s connection because they stopped
        reading: count it and tell the others why they left.

        @param waiting: Bytes they had not taken.
        """
        self._metrics.slow_consumer_disconnects += 1
        self._log.info(
            "closing {nick} ({door}): not reading, {kib} KiB waiting",
            nick=user.nick,
            door=user.door,
            kib=waiting // 1024,
        )
        if user.connected:
            self.leave(user, "quit", "could not keep up")

    def send_off(self, user: User, by: str, why: str, reason: str | None) -> None:
        """
        Disconnect C{user} on an operator's order (or a ban), telling them
        why.
        """
        said = f"{why} by {by}" + (f": {reason}" if reason else "")
        self._delivery.tell(user, events.Goodbye(said))
        self.leave(user, "quit", said)
        user.participant.close(why, "policy")

    def taken_over(self, user: User, login: bool = False) -> None:
        """
        C{user}'s session went on in a new connection (or, with C{login},
        their nick's account was logged in to there): this one goes.
        """
        if login:
            reason = "logged in from another connection"
            said = f"logged in as {user.nick} from another connection"
            self._delivery.tell(user, events.Goodbye(said, elsewhere=True))
            user.participant.close(reason)
            self.leave(user, "quit", reason)
            return
        self._delivery.tell(
            user, events.Goodbye("resumed by a new connection", elsewhere=True)
        )
        user.participant.close("resumed by a new connection")
        self.leave(user, "quit", "reconnected")

    def leave(self, user: User, kind: events.PresenceKind, reason: str | None) -> None:
        """
        C{user} is gone: keep their session, take them out of their rooms
        and tell the people there (everywhere).
        """
        if not user.moved and user.settled:
            self._sessions.save(user)
        if user.account is not None:
            self.on_leave(user)
        user.connected = False
        timer = self._unsettled.pop(user, None)
        if timer is not None and timer.active():
            timer.cancel()
        self._told.discard(user)
        rooms = tuple(r.key for r in user.rooms)
        self._backplane.left(user)
        for room in list(user.rooms):
            self._directory.leave(user, room)
        self._directory.remove(user)
        now = self._clock.seconds()
        if self.closing:
            # Everyone is leaving: nobody here needs to hear about the
            # others; elsewhere they see why.
            self._backplane.share(
                events.Presence(
                    now,
                    "quit",
                    user.nick,
                    user.door,
                    reason="server shutting down",
                    registered=user.account is not None,
                ),
                Audience(rooms=rooms),
            )
            drained = self._drained
            if not self._directory.users and drained is not None and not drained.called:
                drained.callback(None)
            return
        notice = events.Presence(
            now,
            kind,
            user.nick,
            user.door,
            reason=reason,
            registered=user.account is not None,
        )
        if not user.settled:
            # Nobody was told this connection came.
            return
        if user.moved:
            # The session goes on on another node, under the same nick:
            # only the people here see this connection go.
            self._delivery.here(notice, Audience(rooms=rooms))
            return
        self._delivery.deliver(notice, Audience(rooms=rooms))

    # -- names and colours ---------------------------------------------------

    def audience(self, user: User) -> Audience:
        """
        C{user} and everyone who shares a room with them, everywhere; only
        C{user} until the others are told they are here.
        """
        if not user.settled:
            return Audience(users=(user,))
        return Audience(rooms=tuple(r.key for r in user.rooms), users=(user,))

    def rename(self, user: User, nick: str, chosen: bool = True) -> None:
        """
        C{user} is called C{nick} from now on; everyone who shares a room
        with them is told.

        @param chosen: Whether the user chose it (not a guest nick).
        """
        old = user.nick
        user.named = user.named or chosen
        self._directory.rename(user, nick)
        notice = events.Presence(
            self._clock.seconds(),
            "nick",
            old,
            user.door,
            new_nick=nick,
            registered=user.account is not None,
        )
        if user.settled:
            self._delivery.deliver(notice, self.audience(user))
        else:
            self._delivery.tell(user, notice)
        self._backplane.renamed(user, old)
        self._sessions.save(user)

    def nick_lost(self, user: User) -> None:
        """
        Another node's user has C{user}'s nick (both were given it while
        the nodes could not reach each other): this one takes a guest nick.
        """
        old = user.nick
        self.rename(user, self.guest_nick(), chosen=False)
        self._delivery.error(
            user,
            "nick-taken",
            f"{old} is in use on another server of this chat; you are {user.nick} now",
        )
        self.claim_guest(user)

    # -- the other nodes -----------------------------------------------------

    def reachable(self, up: bool) -> None:
        """
        The other nodes were lost (everyone here is told, once) or are back
        (those told hear so).
        """
        if not up:
            self._cut_off = True
            for user in list(self._directory.users.values()):
                self._tell_cut_off(user)
            return
        self._cut_off = False
        told, self._told = self._told, set()
        for user in told:
            if user.connected:
                self._delivery.tell(user, events.Status(BACK))

    def _tell_cut_off(self, user: User) -> None:
        if user not in self._told:
            self._told.add(user)
            self._delivery.tell(user, events.Status(OUTAGE))

    # -- stopping ------------------------------------------------------------

    async def send_away(self, grace: float) -> None:
        """
        Tell every user the server is going down and close their
        connections, cutting those still open after C{grace} seconds.
        """
        self.closing = True
        users = list(self._directory.users.values())
        if not users:
            return
        self._log.info(
            "telling {count} users the server is going down; waiting up to "
            "{grace:g} s for their connections to close",
            count=len(users),
            grace=grace,
        )
        self._delivery.fan_out(users, events.Shutdown("the server is shutting down"))
        for user in users:
            try:
                user.participant.close("server shutting down", "going-away")
            except Exception:
                # One door's failure must not keep history from being
                # written: that user is cut when the grace period ends.
                self._log.failure("closing {nick}'s connection", nick=user.nick)
        drained: Deferred[None] = Deferred()
        self._drained = drained
        if not self._directory.users:
            return

        def cut() -> None:
            if self._directory.users:
                self._log.info(
                    "cutting {count} connections still open after {grace:g} s",
                    count=len(self._directory.users),
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
        if not self.closing:
            return
        for user in list(self._directory.users.values()):
            try:
                user.participant.abort()
            except Exception:
                # As in send_away: the others are cut all the same.
                self._log.failure("cutting {nick}'s connection", nick=user.nick)
            # Its connectionLost comes in a later reactor turn: do not wait.
            self.disconnect(user, "cut off while stopping")


Then = Callable[[], None]
