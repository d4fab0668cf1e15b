# -*- test-case-name: tests.test_presence -*-
"""
Naming: C{/nick} and C{/color}.

A nick is checked here (its form, reserved names, look-alikes of someone
else's, bans, the pace of changes, registered nicks), then claimed in the
whole chat, then taken (L{Presence.rename}).
"""

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tchat import events
from tchat.bans import BanList
from tchat.delivery import Delivery
from tchat.model import Directory, User
from tchat.pacing import Pacing
from tchat.palette import PALETTE
from tchat.presence import Presence, _looks_like, _reserved_keys
from tchat.seam import IBackplane, UnreachableError
from tchat.text import nick_key, nick_problem, normalize_nick, quoted, script_problem


class Naming:
    """
    What users are called, and in what colour.

    @ivar registered: The nick registered with a nick's key, if any:
        registered nicks are their owners' alone (set by the hub, see
        L{tchat.accounts}).
    """

    _log = Logger()

    def __init__(
        self,
        directory: Directory,
        delivery: Delivery,
        backplane: IBackplane,
        pacing: Pacing,
        presence: Presence,
        bans: BanList,
        clock: IReactorTime,
    ) -> None:
        self._directory = directory
        self._delivery = delivery
        self._backplane = backplane
        self._pacing = pacing
        self._presence = presence
        self._bans = bans
        self._clock = clock
        self.registered: Callable[[str], Deferred[str | None]] = lambda nick: succeed(
            None
        )

    def nick(self, user: User, name: str) -> Deferred[Any] | None:
        """C{/nick NAME}."""
        nick = normalize_nick(name)
        error = self._delivery.error
        problem = nick_problem(nick, typed=name)
        if problem is not None:
            error(user, "nick-invalid", f"{quoted(nick)} cannot be a nick: {problem}")
            return None
        # Keys are confusable skeletons: a look-alike of a reserved name or
        # of someone's nick is refused as that name or nick would be.
        key = nick_key(nick)
        server = self._directory.settings.server.name
        reserved = server if key == nick_key(server) else _reserved_keys().get(key)
        if reserved is not None:
            like = _looks_like(nick, reserved)
            error(user, "nick-reserved", f"{nick} is reserved{like}; pick another")
            return None
        holder = self._directory.users.get(key)
        if holder is not None and holder is not user:
            like = _looks_like(nick, holder.nick)
            error(user, "nick-taken", f"{nick} is taken{like}; pick another")
            return None
        problem = script_problem(nick)
        if problem is not None:
            error(user, "nick-invalid", f"{quoted(nick)} cannot be a nick: {problem}")
            return None
        if nick == user.nick:
            user.named = True
            return None
        ban = self._bans.find(self._clock.seconds(), nick=nick)
        if ban is not None and user.operator is None:
            error(user, "banned", f"the nick {nick} is banned; pick another")
            return None
        account = user.account
        if account is not None and key != account.key:
            error(
                user,
                "nick-registered",
                f"you are logged in as {account.name}; /logout first to take "
                "another nick",
            )
            return None
        refusal = self._pacing.nick_change(user)
        if refusal is not None:
            self._delivery.refuse(user, refusal.notice)
            return None
        if key == user.key:
            self._presence.rename(user, nick)
            return None
        tag = user.tag

        def protected(owner: str | None) -> Deferred[Any] | None:
            if not user.connected:
                return None
            if owner is not None and (user.account is None or user.account.key != key):
                like = _looks_like(nick, owner)
                text = (
                    f"{nick} is registered{like}; if it is yours, /login {owner} "
                    "PASSWORD"
                )
                self._delivery.tell(
                    user, events.Error("nick-registered", text, tag, owner)
                )
                return None
            return self._claim_nick(user, nick, key, tag)

        def unknown(why: Failure) -> Deferred[Any] | None:
            if why.check(UnreachableError):
                # Cut off from the cluster: the claim says so.
                return self._claim_nick(user, nick, key, tag)
            if user.connected:
                self._log.warn("accounts: checking a nick: {why}", why=why.value)
                error(
                    user,
                    "account-unavailable",
                    f"{nick} cannot be checked against registered nicks now; "
                    "try again soon",
                    tag,
                )
            return None

        return self.registered(nick).addCallbacks(protected, unknown)

    def _claim_nick(
        self, user: User, nick: str, key: str, tag: str | None
    ) -> Deferred[Any]:
        """Claim C{nick} in the whole chat, then take it."""
        error = self._delivery.error

        def claimed(ok: bool) -> None:
            if not user.connected:
                self._backplane.release(user, nick)
            elif not ok or self._directory.users.get(key, user) is not user:
                error(user, "nick-taken", f"{nick} is taken; pick another", tag)
            else:
                self._presence.rename(user, nick)

        def failed(why: Failure) -> None:
            if not user.connected:
                return
            if why.check(UnreachableError):
                text = (
                    "the cluster is unreachable, so nicks cannot be checked; "
                    "try again when it is back"
                )
            else:
                text = f"{nick} could not be checked with the cluster; try again"
            error(user, "nick-taken", text, tag)

        return self._backplane.claim(user, nick).addCallbacks(claimed, failed)

    def colour(self, user: User, choice: str | None) -> None:
        """C{/color [NAME|on|off]}."""
        if choice is None:
            names = ", ".join(PALETTE)
            state = "on" if user.show_colours else "off"
            self._delivery.tell(
                user,
                events.Status(
                    f"your colour is {user.colour.name}; colours are {state}; "
                    f"choose from: {names}"
                ),
            )
        elif choice in ("on", "off"):
            user.show_colours = choice == "on"
            self._delivery.tell(user, events.Status(f"colours are {choice}"))
        elif choice in PALETTE:
            self._directory.recolour(user, PALETTE[choice])
            self._delivery.tell(user, events.Status(f"your colour is now {choice}"))
        else:
            self._delivery.error(
                user,
                "bad-arguments",
                f"no colour called {quoted(choice)}; choose from: "
                f"{', '.join(PALETTE)}, or on/off",
            )
