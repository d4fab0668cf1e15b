# -*- test-case-name: tests.test_accounts -*-
"""
Attention: C{/away} and C{/back}, C{/ignore} and C{/unignore}.

An away user's correspondents are told their away message; C{/who} shows
it.  An ignored user's room lines and private messages are not shown (the
ignored are not told); a logged-in user's ignores are kept with their
account.
"""

from collections.abc import Callable
from dataclasses import replace

from tchat import events
from tchat.delivery import Delivery
from tchat.history import Account
from tchat.model import Directory, User
from tchat.seam import Audience, IBackplane
from tchat.text import clean_text, nick_key, normalize_nick

MAX_IGNORES = 100
"""Nicks one user may ignore."""


class Attention:
    """Who a user is there for, and whom they do not want to hear."""

    def __init__(
        self,
        directory: Directory,
        delivery: Delivery,
        backplane: IBackplane,
        keep: Callable[[Account], None],
    ) -> None:
        """
        @param keep: Saves a changed account.
        """
        self._directory = directory
        self._delivery = delivery
        self._backplane = backplane
        self._keep = keep

    def away(self, user: User, text: str | None) -> None:
        """C{/away [message]}."""
        message = clean_text(text).strip() if text else ""
        user.away = message or "away"
        self._backplane.updated(user)
        self._tell_rooms(user)
        self._delivery.tell(
            user,
            events.Status(
                f"you are marked away ({user.away}); those who write to you "
                "are told. /back when you return"
            ),
        )

    def back(self, user: User) -> None:
        """C{/back}."""
        if user.away is None:
            self._delivery.tell(user, events.Status("you were not marked away"))
            return
        user.away = None
        self._backplane.updated(user)
        self._tell_rooms(user)
        self._delivery.tell(user, events.Status("welcome back: you are no longer away"))

    def _tell_rooms(self, user: User) -> None:
        """
        Tell the others in C{user}'s rooms that they went away or came
        back (IRC's away-notify, the page's member list; telnet shows it
        in /who).
        """
        if not user.settled or not user.rooms:
            return
        notice = events.Presence(
            self._directory.now(),
            "away",
            user.nick,
            user.door,
            reason=user.away,
            registered=user.account is not None,
        )
        audience = Audience(rooms=tuple(r.key for r in user.rooms), besides=(user,))
        self._delivery.deliver(notice, audience)

    def ignore(self, user: User, nick: str | None) -> None:
        """C{/ignore [NICK]}."""
        ignoring = user.ignoring or {}
        if nick is None or not nick.strip():
            # The page sends an empty name for the list: no nick is blank.
            names = ", ".join(ignoring.values()) or "nobody"
            self._delivery.tell(user, events.Status(f"you ignore: {names}"))
            return
        name = normalize_nick(nick)
        key = nick_key(name)
        if key == user.key:
            self._delivery.error(user, "bad-arguments", "you cannot ignore yourself")
            return
        if key not in ignoring and len(ignoring) >= MAX_IGNORES:
            self._delivery.error(
                user, "bad-arguments", f"you ignore {MAX_IGNORES} nicks already"
            )
            return
        ignoring[key] = name
        self._directory.ignore(user, ignoring)
        self._kept_ignores(user)
        kept = " (kept with your account)" if user.account is not None else ""
        self._delivery.tell(
            user,
            events.Status(
                f"you ignore {name}: their room lines and private messages are "
                f"hidden{kept}; /unignore {name} to see them again"
            ),
        )

    def unignore(self, user: User, nick: str) -> None:
        """C{/unignore NICK}."""
        name = normalize_nick(nick)
        ignoring = user.ignoring or {}
        if ignoring.pop(nick_key(name), None) is None:
            self._delivery.error(user, "bad-arguments", f"you do not ignore {name}")
            return
        self._directory.ignore(user, ignoring)
        self._kept_ignores(user)
        self._delivery.tell(user, events.Status(f"you see {name} again"))

    def _kept_ignores(self, user: User) -> None:
        account = user.account
        if account is None:
            return
        ignores = tuple((user.ignoring or {}).values())
        user.account = replace(account, ignores=ignores)
        self._keep(user.account)

    # -- helpers -------------------------------------------------------------
