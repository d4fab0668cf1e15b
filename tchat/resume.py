# -*- test-case-name: tests.test_resume -*-
"""
History pages and resuming: C{/history}, C{/resume CODE}, and a client's
own record of what it has seen.

A history read from the store holds the user's live messages for that room
until it is done, so that they always come after it, in order (see
C{docs/delivery.md}).
"""

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tchat import events
from tchat.bans import BanList, Mutes, banned_text
from tchat.delivery import Delivery
from tchat.guesses import Attempt, Guesses, sources_of
from tchat.history import HistoryStore, Session
from tchat.metrics import Metrics
from tchat.model import Directory, Room, User
from tchat.pacing import Pacing
from tchat.palette import PALETTE
from tchat.presence import Presence
from tchat.rooms import Rooms
from tchat.seam import IBackplane, UnreachableError
from tchat.sessions import Sessions, normalize_code
from tchat.text import room_key

RESUME_FAILURES = 5
"""Unknown resume codes tried from one address (or one onion connection)
within a minute before its next tries wait..."""
RESUME_ONION_FAILURES = 20
"""...from all onion users together before theirs wait..."""
RESUME_EVERYONE = 30
"""...and from everyone before everyone's wait (see L{Guesses})."""


def resume_point(
    room: Room, last_id: int, epoch: int | None, replay: int
) -> tuple[int, bool]:
    """
    Where to resume C{room} for a client that has its messages up to
    C{last_id} in C{epoch}.

    @param epoch: C{None} for the room's current epoch.
    @param replay: How many messages are shown when what the client saw
        is gone altogether.
    @return: The id after which to send messages, and whether that leaves
        nothing out.
    """
    after, complete = last_id, True
    if epoch is not None and epoch != room.epoch:
        epochs = [e for e, _ in room.lineage]
        if epoch not in epochs and not last_id:
            # The client saw nothing of the room, which was made again
            # since (a room where nothing was said is forgotten once
            # empty): it missed only what the room has now.
            after = 0
        elif epoch not in epochs:
            # History the client saw is gone altogether: show the latest,
            # and say there is a gap.
            after = max(room.delivered_id - replay, 0)
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


class Resume:
    """
    Earlier messages on request, and what a returning user missed.
    """

    _log = Logger()

    def __init__(
        self,
        directory: Directory,
        delivery: Delivery,
        backplane: IBackplane,
        store: HistoryStore,
        sessions: Sessions,
        rooms: Rooms,
        presence: Presence,
        pacing: Pacing,
        bans: BanList,
        mutes: Mutes,
        metrics: Metrics,
        clock: IReactorTime,
    ) -> None:
        self._directory = directory
        self._delivery = delivery
        self._backplane = backplane
        self._store = store
        self._sessions = sessions
        self._rooms = rooms
        self._presence = presence
        self._pacing = pacing
        self._bans = bans
        self._mutes = mutes
        self._metrics = metrics
        self._clock = clock
        self._guesses = Guesses(clock, RESUME_EVERYONE)
        # Set by the hub: whether a session's nick may be given back (it is
        # not registered, or the session was logged in to its account,
        # which it is again then); see tchat.accounts.
        self.restore_account: Callable[[User, Session], Deferred[bool]] = (
            lambda user, session: succeed(True)
        )
        # Set by the hub: a new connection carries on a session that is
        # still here (see tchat.continuity).
        self.carry_on: Callable[[User, User, str], None] = lambda fresh, held, why: None

    # -- history pages -------------------------------------------------------

    def page(
        self,
        user: User,
        limit: int,
        name: str | None,
        before: int | None,
        after: int | None = None,
    ) -> Deferred[Any] | None:
        """
        C{/history [N]}: the latest messages, or those before C{before}; or
        the oldest after C{after} (what IRC's CHATHISTORY AFTER asks).
        """
        room = self._rooms.joined(user, name)
        if room is None:
            return None
        newest = after is None
        lower = room.pruned_to if after is None else max(after, room.pruned_to)
        upto = (
            room.delivered_id if before is None else min(before - 1, room.delivered_id)
        )

        def show(found: list[events.RoomMessage] | None) -> None:
            found = found or []
            shown = tuple(found[-limit:] if newest else found[:limit])
            history = events.History(
                room.name, room.epoch, shown, "page", more=len(found) > limit
            )
            self._delivery.tell(user, history)

        return self._read(user, room, lower, upto, limit + 1, show, newest=newest)

    def _read(
        self,
        user: User,
        room: Room,
        after: int,
        upto: int,
        limit: int,
        then: Callable[[list[events.RoomMessage] | None], None],
        newest: bool = False,
        on_error: bool = False,
    ) -> Deferred[Any] | None:
        """
        Fetch C{room}'s messages with C{after < id <= upto} (the oldest
        C{limit} of them, or the newest with C{newest}), from memory when
        the latest ones cover it, else from the store; meanwhile, hold
        C{user}'s live messages for the room so they follow, in order.

        @param on_error: Call C{then} with C{None} when the store fails
            (the user is told either way).
        @return: What the read waits for, if it could not be done at once.
        """
        if upto <= after:
            then([])
            return None
        recent = room.recent
        if recent and recent[0].id <= after + 1 and recent[-1].id >= upto:
            chosen = [m for m in recent if after < m.id <= upto]
            then(chosen[-limit:] if newest else chosen[:limit])
            return None
        count, held = user.holding.get(room, (0, []))
        user.holding[room] = (count + 1, held)
        tag = user.tag
        if newest:
            reading = self._store.read(room.key, after, before=upto + 1, limit=limit)
        else:
            reading = self._store.read(room.key, after, upto, limit=limit)

        def release(result: list[events.RoomMessage] | Failure) -> None:
            if not user.connected:
                return
            if isinstance(result, Failure):
                if result.check(ConnectionError):
                    # The other nodes' store is unreachable: said once already.
                    self._log.warn(
                        "history: reading {room}: {why}",
                        room=room.name,
                        why=result.value,
                    )
                else:
                    self._log.failure("history: reading {room}", result, room=room.name)
                self._delivery.error(
                    user,
                    "history-unavailable",
                    f"the history of {room.name} cannot be read right now",
                    tag,
                )
                if on_error:
                    then(None)
            else:
                then(result)
            count, held = user.holding.get(room, (1, []))
            if count > 1:
                user.holding[room] = (count - 1, held)
                return
            user.holding.pop(room, None)
            if user in room.members:
                for event in held:
                    self._delivery.tell(user, event)

        return reading.addBoth(release)

    # -- resuming ------------------------------------------------------------

    def resume_rooms(
        self, user: User, points: tuple[tuple[str, int, int | None], ...]
    ) -> Deferred[Any] | None:
        """
        A reconnecting client's own record of what it has seen: for each
        room, the last message id it has (and that id's epoch).  Rooms are
        joined as needed, but where the user talks stays theirs to choose.
        """
        wanted = []
        for name, last_id, epoch in points:
            normal = self._rooms.name(user, name)
            if normal is not None:
                wanted.append((normal, last_id, epoch))
        names = self._joinable(user, [name for name, _, _ in wanted])
        keys = {room_key(name) for name in names}

        def resume() -> None:
            current = user.current
            for name, last_id, epoch in wanted:
                if room_key(name) in keys:
                    room = self._directory.room(name)
                    if room is None:
                        room = self._directory.new_room(name)
                    self._resume_room(user, room, last_id, epoch)
            if current is not None and current in user.rooms:
                user.current = current

        return self._rooms.with_rooms(user, names, resume)

    def _joinable(self, user: User, names: list[str], leaving: int = 0) -> list[str]:
        """
        Of the rooms C{names}, those C{user} is in or may join now: each
        room they are not in goes through the join checks every join goes
        through (rooms per user, joins per minute); past them, the user is
        told why once, and the rest are left out.

        @param leaving: How many of the user's rooms they are about to leave.
        """
        allowed, joining, refused = [], -leaving, False
        for name in {room_key(name): name for name in names}.values():
            room = self._directory.room(name)
            if room is not None and user in room.members:
                allowed.append(name)
                continue
            if refused:
                continue
            refusal = self._pacing.join(user, joining)
            if refusal is not None:
                self._delivery.refuse(user, refusal.notice)
                refused = True
                continue
            joining += 1
            allowed.append(name)
        return allowed

    def catch_up(self, user: User, room: Room, after: int) -> None:
        """
        Send C{user}, a member of C{room}, the messages after C{after} up to
        those their connection was given live (see L{tchat.continuity}).
        """
        self._resume_room(user, room, after, None)

    def _resume_room(
        self, user: User, room: Room, last_id: int, epoch: int | None
    ) -> None:
        """
        Send C{user} the messages of C{room} they missed, joining it first
        if needed, then a C{resume} history that says if anything is gone.
        """
        replay = self._directory.settings.history.replay
        after, complete = resume_point(room, last_id, epoch, replay)
        if user in room.members:
            # This connection already has what follows its replay.
            upto = room.members[user] - 1
            room.members[user] = min(room.members[user], after + 1)
        else:
            refusal = self._pacing.room_full(user, room)
            if refusal is not None:
                self._delivery.refuse(user, refusal.notice)
                return
            self._rooms.join(user, room, replay=False)
            upto = room.delivered_id
        snapshot = room.delivered_id

        def send(found: list[events.RoomMessage] | None) -> None:
            # None: the store could not be read; the user was told, and
            # the resume ends as incomplete.
            self._delivery.tell(
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

        keep = self._directory.settings.history.keep
        self._read(user, room, after, upto, keep, send, on_error=True)

    def resume_code(self, user: User, typed: str) -> Deferred[Any] | None:
        """
        C{/resume CODE}: become who the code's session was.  After codes
        that matched nothing, the next tries wait (see L{Guesses}): codes
        cannot be guessed, and the owner of one is never refused.
        """
        sources = sources_of(user, RESUME_FAILURES, RESUME_ONION_FAILURES)
        wait, done = self._guesses.attempt(
            user, sources, lambda attempt: self._resume_code(user, typed, attempt)
        )
        if wait:
            self._metrics.limit("resume")
            self._delivery.tell(
                user,
                events.Status(
                    "too many unknown resume codes lately: yours is checked in "
                    f"{wait:g} s"
                ),
            )
        return done

    def _resume_code(
        self, user: User, typed: str, attempt: Attempt
    ) -> Deferred[Any] | None:
        code = normalize_code(typed)
        now = self._clock.seconds()
        ban = self._bans.find(now, session=code)
        live = self._directory.codes.get(code)
        if ban is not None or live is not None:
            attempt.not_a_guess()  # the code is real
        if ban is not None:
            server = self._directory.settings.server.name
            self._delivery.error(user, "banned", banned_text(ban, server, now))
            self._presence.leave(user, "quit", "banned")
            user.participant.close("banned", "policy")
            return None
        if code == user.code:
            self._delivery.error(
                user, "bad-arguments", "that is this connection's own code"
            )
            return None
        if live is not None and not live.moved:
            # The session is still here (its connection lost or not):
            # this connection carries it on, nobody else the wiser.
            self.carry_on(user, live, "resumed by a new connection")
            return None
        if live is not None:
            session = self._sessions.snapshot(live)
            self._presence.taken_over(live)
            return self._restore(user, session)
        tag = user.tag
        ttl = self._directory.settings.history.resume_ttl

        def restore(session: Session | None) -> Deferred[Any] | None:
            if not user.connected:
                return None
            if session is None or session.code in self._directory.codes:
                self._delivery.error(
                    user,
                    "no-such-session",
                    f"no session has the code {typed.strip()[:16]!r} (codes "
                    f"expire {ttl // 3600} hours after you leave)",
                    tag,
                )
                return None
            attempt.not_a_guess()
            return self._restore(user, session)

        def failed(why: Failure) -> None:
            attempt.not_a_guess()
            self._log.warn("history: reading a session: {why}", why=why.value)
            if user.connected:
                self._delivery.error(
                    user,
                    "history-unavailable",
                    "resume codes cannot be checked right now; try again soon",
                    tag,
                )

        found = self._sessions.find(code)
        return found.addCallback(restore).addErrback(failed)

    def _restore(self, user: User, session: Session) -> Deferred[Any] | None:
        """
        Make C{user} who they were in C{session}: code, nick, colour,
        rooms, and the messages they missed.
        """
        self._directory.recode(user, session.code)
        now = self._clock.seconds()
        self._mutes.apply(user, now)
        tag = user.tag

        def allowed(may: bool) -> Deferred[Any] | None:
            if not user.connected:
                return None
            user.tag = tag
            try:
                return self._restore_nick(user, session, may)
            finally:
                user.tag = None

        return self.restore_account(user, session).addCallback(allowed)

    def _restore_nick(
        self, user: User, session: Session, may: bool
    ) -> Deferred[Any] | None:
        """
        Give C{user} their session's nick back, if it is still free, and
        C{may} (it is not a nick registered by someone else now).
        """
        now = self._clock.seconds()
        if session.nick == user.nick:
            return self._restored(user, session)
        error = self._delivery.error
        if not may:
            error(
                user,
                "nick-registered",
                f"{session.nick} is a registered nick now; you stay {user.nick}",
            )
            return self._restored(user, session)
        holder = self._directory.user(session.nick)
        if self._bans.find(now, nick=session.nick) is not None:
            error(
                user,
                "banned",
                f"the nick {session.nick} is banned; you stay {user.nick}",
            )
        elif holder is user:
            # The same nick but for case: theirs already.
            self._presence.rename(user, session.nick)
        elif holder is None:
            tag = user.tag

            def claimed(ok: bool) -> Deferred[Any] | None:
                if not user.connected:
                    return None
                if ok and self._directory.user(session.nick) is None:
                    self._presence.rename(user, session.nick)
                else:
                    error(
                        user,
                        "nick-taken",
                        f"{session.nick} is in use by someone else now; "
                        f"you stay {user.nick}",
                        tag,
                    )
                return self._restored(user, session)

            def failed(why: Failure) -> Deferred[Any] | None:
                # Cut off from the other nodes, this node decides alone.
                return claimed(why.check(UnreachableError) is not None)

            claim = self._backplane.claim(user, session.nick, takeover=True)
            return claim.addCallbacks(claimed, failed)
        else:
            error(
                user,
                "nick-taken",
                f"{session.nick} is in use by someone else now; you stay {user.nick}",
            )
        return self._restored(user, session)

    def _restored(self, user: User, session: Session) -> Deferred[Any] | None:
        """The rest of L{_restore}, once the nick is settled."""
        names = [name for name, _, _ in session.rooms]
        wanted = {room_key(name) for name in names}
        leaving = sum(1 for room in user.rooms if room.key not in wanted)
        names = self._joinable(user, names, leaving)
        keys = {room_key(name) for name in names}
        return self._rooms.with_rooms(
            user, names, lambda: self._rejoin(user, session, keys)
        )

    def _rejoin(self, user: User, session: Session, keys: set[str]) -> None:
        if session.colour in PALETTE:
            self._directory.recolour(user, PALETTE[session.colour])
        user.show_colours = session.show_colours
        self._delivery.tell(
            user,
            events.Status(
                f"welcome back, {user.nick}: "
                + (
                    "restoring " + ", ".join(n for n, _, _ in session.rooms)
                    if session.rooms
                    else "you were in no room"
                ),
                {
                    "rooms": [n for n, _, _ in session.rooms],
                    "resume_code": user.code,
                },
            ),
        )
        for name, epoch, last_id in session.rooms:
            if room_key(name) in keys:
                room = self._directory.room(name) or self._directory.new_room(name)
                self._resume_room(user, room, last_id, epoch)
        wanted = {room_key(name) for name, _, _ in session.rooms}
        for room in list(user.rooms):
            if room.key not in wanted:
                self._rooms.part_from(user, room)
        current = self._directory.room(session.current or "")
        if current is not None and current in user.rooms:
            user.current = current
        self._sessions.save(user)
