# -*- test-case-name: tests.test_moderation -*-
"""
Moderation: what operators do to users and to the chat.

Kicks, mutes, bans, announcements, the message of the day and reloading
C{tap.ini}.  An operator's action on a user of another node is carried out
by that node, through the same code as a local one (L{Moderation.request}).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tchat import events
from tchat.bans import (
    BanList,
    Mutes,
    Pattern,
    canonical,
    describe,
    hits,
    target_patterns,
    user_patterns,
)
from tchat.delivery import Delivery
from tchat.history import Ban, HistoryStore
from tchat.metrics import Metrics
from tchat.model import Directory, User
from tchat.presence import Presence
from tchat.seam import (
    Audience,
    BansKnown,
    BansLifted,
    BansMade,
    IBackplane,
    MotdChanged,
    OperatorAction,
    OperatorRequest,
)
from tchat.text import (
    clean_text,
    describe_duration,
    nick_key,
    normalize_nick,
    quoted,
    shortened,
)

Reloader = Callable[[], Deferred[tuple[bool, str]]]
"""Reloads C{tap.ini} for C{/rehash}: (success, what happened)."""


@dataclass(frozen=True)
class Operator:
    """
    An operator acting: a user of this node, or of another.

    @ivar account: Their operator account.
    @ivar user: The user, when they are on this node.
    """

    nick: str
    account: str
    door: str
    user: User | None = None

    @classmethod
    def of(cls, user: User) -> "Operator":
        """The operator C{user}, of this node."""
        assert user.operator is not None
        return cls(user.nick, user.operator, user.door, user)


def _rooms_of(user: User) -> tuple[str, ...]:
    return tuple(r.key for r in user.rooms)


class Moderation:
    """
    Operators' commands, and the requests other nodes' operators make of
    this node.

    @ivar reloader: Reloads C{tap.ini} for C{/rehash}, when it can be.
    """

    _log = Logger()

    def __init__(
        self,
        directory: Directory,
        delivery: Delivery,
        backplane: IBackplane,
        presence: Presence,
        bans: BanList,
        mutes: Mutes,
        store: HistoryStore,
        metrics: Metrics,
        clock: IReactorTime,
    ) -> None:
        self._directory = directory
        self._delivery = delivery
        self._backplane = backplane
        self._presence = presence
        self._bans = bans
        self._mutes = mutes
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self.reloader: Reloader | None = None

    def _notice(
        self,
        oper: Operator,
        kind: events.NoticeKind,
        text: str,
        audience: Audience | None = None,
    ) -> None:
        """
        Log an operator's action and show it to C{audience}, the operator
        and every operator, here and on the other nodes.
        """
        self._metrics.operator_action(kind)
        self._log.info(
            "operator {account} ({nick}, {door}): {text}",
            account=oper.account,
            nick=oper.nick,
            door=oper.door,
            text=text,
        )
        if audience is None:
            audience = Audience()
        users = audience.users if oper.user is None else (*audience.users, oper.user)
        notice = events.Notice(self._clock.seconds(), kind, oper.nick, text)
        self._delivery.deliver(notice, replace(audience, users=users, operators=True))

    def _elsewhere(
        self,
        oper: User,
        nick: str,
        action: OperatorAction,
        reason: str | None = None,
        duration: int | None = None,
    ) -> Deferred[Any] | None:
        """
        Nobody here has C{nick}: if someone on another node has, have their
        node carry out C{action} for C{oper}, else tell C{oper} so.
        """
        tag = oper.tag
        error = self._delivery.error

        def found(spelt: str | None) -> Deferred[Any] | None:
            if not oper.connected:
                return None
            if spelt is None:
                error(
                    oper,
                    "no-such-nick",
                    f"nobody here is called {shortened(nick)}",
                    tag,
                )
                if action == "ban":
                    error(
                        oper,
                        "bad-arguments",
                        f"/ban nick:{nick} bans the nick itself, even when nobody "
                        "has it",
                        tag,
                    )
                return None
            assert oper.operator is not None
            request = OperatorRequest(
                action,
                nick_key(normalize_nick(nick)),
                oper.nick,
                oper.operator,
                oper.door,
                reason,
                duration,
            )
            return self._backplane.ask(request).addErrback(
                lambda f: error(oper, "not-stored", "the cluster did not answer", tag)
            )

        def failed(why: Failure) -> None:
            if oper.connected:
                error(
                    oper,
                    "no-such-nick",
                    f"{shortened(nick)} cannot be looked up now",
                    tag,
                )

        return self._backplane.locate(nick).addCallbacks(found, failed)

    def request(self, request: OperatorRequest) -> None:
        """
        Another node's operator acts on a user of this node: do as a local
        operator's command would have.
        """
        target = self._directory.users.get(request.target)
        if target is None:
            return
        oper = Operator(request.by, request.account, request.door)
        match request.action:
            case "kick":
                self._kick(oper, target, request.reason)
            case "mute":
                self._mute(oper, target, request.duration)
            case "unmute":
                self._unmute(oper, target)
            case "ban":
                self._make_bans(
                    oper, user_patterns(target), request.duration, request.reason
                )

    # -- kicks and mutes -----------------------------------------------------

    def kick(self, oper: User, nick: str, reason: str | None) -> Deferred[Any] | None:
        """C{/kick NICK [REASON]}."""
        target = self._directory.user(normalize_nick(nick))
        if target is None:
            return self._elsewhere(oper, nick, "kick", reason=reason)
        self._kick(Operator.of(oper), target, reason)
        return None

    def _kick(self, oper: Operator, target: User, reason: str | None) -> None:
        text = f"{oper.nick} kicked {target.nick} ({target.door})" + (
            f": {reason}" if reason else ""
        )
        self._notice(oper, "kick", text, Audience(_rooms_of(target), users=(target,)))
        self._presence.send_off(target, oper.nick, "kicked", reason)

    def mute(self, oper: User, nick: str, duration: int | None) -> Deferred[Any] | None:
        """C{/mute NICK [DURATION]}."""
        target = self._directory.user(normalize_nick(nick))
        if target is None:
            return self._elsewhere(oper, nick, "mute", duration=duration)
        self._mute(Operator.of(oper), target, duration)
        return None

    def _mute(self, oper: Operator, target: User, duration: int | None) -> None:
        now = self._clock.seconds()
        self._mutes.mute(target, math.inf if duration is None else now + duration)
        text = (
            f"{oper.nick} muted {target.nick} ({target.door}) "
            f"{describe_duration(duration)}"
        )
        self._notice(oper, "mute", text, Audience(_rooms_of(target), users=(target,)))

    def unmute(self, oper: User, nick: str) -> Deferred[Any] | None:
        """C{/unmute NICK}."""
        target = self._directory.user(normalize_nick(nick))
        if target is None:
            return self._elsewhere(oper, nick, "unmute")
        self._unmute(Operator.of(oper), target)
        return None

    def _unmute(self, oper: Operator, target: User) -> None:
        self._mutes.unmute(target)
        text = f"{oper.nick} unmuted {target.nick} ({target.door})"
        self._notice(oper, "unmute", text, Audience(_rooms_of(target), users=(target,)))

    # -- bans ----------------------------------------------------------------

    def ban(
        self, oper: User, target: str, duration: int | None, reason: str | None
    ) -> Deferred[Any] | None:
        """C{/ban TARGET [DURATION] [REASON]}."""
        try:
            wanted = target_patterns(target)
        except ValueError as e:
            self._delivery.error(oper, "bad-arguments", str(e))
            return None
        if wanted is None:
            user = self._directory.user(normalize_nick(target))
            if user is None:
                return self._elsewhere(
                    oper, target, "ban", reason=reason, duration=duration
                )
            if user is oper:
                self._delivery.error(oper, "bad-arguments", "you cannot ban yourself")
                return None
            wanted = user_patterns(user)
        return self._make_bans(Operator.of(oper), wanted, duration, reason)

    def _make_bans(
        self,
        oper: Operator,
        wanted: list[Pattern],
        duration: int | None,
        reason: str | None,
    ) -> Deferred[Any] | None:
        """Number the bans C{wanted} (in the whole chat), then apply them."""
        numbering = self._backplane.ban_ids(len(wanted), self._bans.highest())
        numbering.addCallback(
            lambda ids: self._apply_bans(oper, wanted, ids, duration, reason)
        ).addErrback(lambda f: self._log.warn("ban not made: {why}", why=f.value))
        return numbering

    def _apply_bans(
        self,
        oper: Operator,
        wanted: list[Pattern],
        ids: list[int],
        duration: int | None,
        reason: str | None,
    ) -> None:
        now = self._clock.seconds()
        expires = now + duration if duration is not None else None
        made = tuple(
            Ban(number, kind, pattern, reason or "", oper.account, now, expires)
            for (kind, pattern), number in zip(wanted, ids, strict=True)
        )
        for ban in made:
            self._bans.add(ban)
            self._store.save_ban(ban)
        self._backplane.ask(BansMade(made, oper.nick, reason, duration)).addErrback(
            lambda f: None
        )
        text = self._ban_text(oper.nick, made, duration, reason)
        self._metrics.operator_action("ban")
        self._log.info(
            "operator {account} ({nick}, {door}): {text}",
            account=oper.account,
            nick=oper.nick,
            door=oper.door,
            text=text,
        )
        self._banned(oper.nick, made, text, reason, oper.user)

    def bans_made(self, request: BansMade) -> None:
        """Another node's operator made bans: apply them to this node's users."""
        for ban in request.bans:
            self._bans.add(ban)
        text = self._ban_text(
            request.by, request.bans, request.duration, request.reason
        )
        self._banned(request.by, request.bans, text, request.reason)

    @staticmethod
    def _ban_text(
        by: str, made: tuple[Ban, ...], duration: int | None, reason: str | None
    ) -> str:
        what = " and ".join(describe(b) for b in made)
        return f"{by} banned {what} {describe_duration(duration)}" + (
            f": {reason}" if reason else ""
        )

    def _banned(
        self,
        by: str,
        made: tuple[Ban, ...],
        text: str,
        reason: str | None,
        oper: User | None = None,
    ) -> None:
        """
        Tell this node's operators, and whoever shares a room with a user of
        this node the bans hit, then send off those users (operators are
        told, not thrown out).  Every node does this for its own users.
        """
        hit = [
            u
            for u in self._directory.users.values()
            if u is not oper and any(hits(b, u) for b in made)
        ]
        rooms = {key: None for user in hit for key in _rooms_of(user)}
        told = (*hit, oper) if oper is not None else tuple(hit)
        audience = Audience(tuple(rooms), users=told, operators=True)
        notice = events.Notice(self._clock.seconds(), "ban", by, text)
        self._delivery.here(notice, audience)
        for user in hit:
            if user.operator is None:
                self._presence.send_off(user, by, "banned", reason)

    def unban(self, oper: User, target: str) -> None:
        """C{/unban NUMBER|PATTERN}."""
        number = target.lstrip("#")
        if number.isdecimal():
            ban = self._bans.bans.get(int(number))
            found = [ban] if ban is not None else []
        else:
            found = self._bans.with_pattern(canonical(target))
        if not found:
            self._delivery.error(
                oper,
                "bad-arguments",
                f"no ban matches {quoted(target)}; /bans lists them",
            )
            return
        for ban in found:
            self._bans.remove(ban.id)
            self._store.delete_ban(ban.id)
        lifted = BansLifted(tuple(b.id for b in found))
        self._backplane.ask(lifted).addErrback(lambda f: None)
        what = " and ".join(f"#{b.id} ({describe(b)})" for b in found)
        self._notice(Operator.of(oper), "unban", f"{oper.nick} lifted the ban {what}")

    def bans_lifted(self, request: BansLifted) -> None:
        """Another node's operator lifted bans."""
        for number in request.ids:
            self._bans.remove(number)

    def bans_known(self, request: BansKnown) -> None:
        """Bans the chat keeps that this node did not know of."""
        for ban in request.bans:
            if ban.id not in self._bans.bans:
                self._bans.add(ban)

    def list_bans(self, oper: User) -> None:
        """C{/bans}."""
        now = self._clock.seconds()
        in_force = self._bans.in_force(now)
        lines = tuple(
            f"#{b.id} {describe(b)} by {b.by} "
            + describe_duration(None if b.expires is None else b.expires - now)
            + (f": {b.reason}" if b.reason else "")
            for b in in_force
        )
        data = {
            "bans": [
                {
                    "id": b.id,
                    "kind": b.kind,
                    "pattern": b.pattern,
                    "reason": b.reason,
                    "by": b.by,
                    "expires": b.expires,
                }
                for b in self._bans.bans.values()
            ]
        }
        title = f"{len(lines)} bans in force" if lines else "no bans in force"
        self._delivery.tell(oper, events.Listing("bans", title, lines, data))

    # -- the whole chat ------------------------------------------------------

    def announce(self, oper: User, text: str) -> None:
        """C{/announce TEXT}: to everyone."""
        text = clean_text(text).strip()
        if text:
            self._notice(Operator.of(oper), "announce", text, Audience(everyone=True))

    def set_motd(self, oper: User, lines: tuple[str, ...]) -> None:
        """C{/motd set ...}: a new message of the day, everywhere."""
        lines = tuple(clean_text(line, collapse=False).strip() for line in lines)
        self.motd_changed(MotdChanged(lines))
        self._backplane.ask(MotdChanged(lines)).addErrback(lambda f: None)
        self._notice(
            Operator.of(oper),
            "motd",
            f"{oper.nick} changed the message of the day (/motd shows it)",
            Audience(everyone=True),
        )

    def motd_changed(self, request: MotdChanged) -> None:
        """The message of the day is C{request.lines} from now on."""
        settings = self._directory.settings
        settings.server = replace(settings.server, motd=request.lines)

    def rehash(self, oper: User) -> Deferred[Any] | None:
        """C{/rehash}: reload C{tap.ini}."""
        reloader = self.reloader
        if reloader is None:
            self._delivery.error(
                oper, "bad-arguments", "this server cannot reload its tap.ini"
            )
            return None

        def done(result: tuple[bool, str]) -> None:
            _, summary = result
            if oper.connected and oper.operator is not None:
                self._notice(
                    Operator.of(oper),
                    "rehash",
                    f"{oper.nick} reloaded tap.ini: {summary}",
                )
            elif oper.connected:
                self._delivery.tell(oper, events.Status(f"tap.ini reloaded: {summary}"))

        reloading = reloader().addCallback(done)
        return reloading.addErrback(
            lambda f: self._log.failure("reloading for /rehash", f)
        )
