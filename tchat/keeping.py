# -*- test-case-name: tests.test_accounts -*-
"""
What is kept for an account's owner while they are away: private messages
sent to them offline (bounded per account, expiring), and the lines of
their rooms that named them; and C{/account}, which shows all that is
kept about them.

Mentions cost nothing while their owner is away: at login, the history of
the rooms they were in when they left is read from where they left it,
and the lines naming them are kept (the latest C{[accounts] mentions}).
"""

import re
import time
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tchat import events
from tchat.delivery import Delivery
from tchat.history import (
    Account,
    AccountStore,
    HistoryStore,
    MailboxFullError,
    Offline,
)
from tchat.metrics import Metrics
from tchat.model import Directory, Settings, User
from tchat.palette import PALETTE
from tchat.proofs import logged_failure, unavailable
from tchat.resume import resume_point
from tchat.text import describe_span, nick_key

MENTION_SCAN = 1000
"""Messages of each room read at login when looking for mentions."""


def _mentioner(nick: str) -> re.Pattern[str]:
    """Finds C{nick} as a word of its own, in any case."""
    return re.compile(rf"(?<![\w-]){re.escape(nick)}(?![\w-])", re.IGNORECASE)


def describe_date(ts: float | None) -> str:
    """A time as C{/account} shows it (the server's local time), or C{never}."""
    if ts is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


class Keeping:
    """
    Offline messages, mentions, and the C{/account} view.
    """

    _log = Logger()

    def __init__(
        self,
        settings: Settings,
        directory: Directory,
        delivery: Delivery,
        store: HistoryStore,
        metrics: Metrics,
        clock: IReactorTime,
    ) -> None:
        self._settings = settings
        self._directory = directory
        self._delivery = delivery
        self._history = store
        self._store: AccountStore = store.accounts
        self._metrics = metrics
        self._clock = clock

    def holder(self, nick: str) -> Deferred[str | None]:
        """The nick registered with C{nick}'s key, as registered, if any."""
        return self._store.holder(nick_key(nick))

    def leave_message(self, user: User, name: str, text: str) -> Deferred[Any]:
        """
        Keep C{user}'s private message for the offline owner of account
        C{name}, and tell C{user} so.
        """
        config = self._settings.accounts
        now = self._clock.seconds()
        message = Offline(now, user.nick, user.door, user.colour.name, text)
        tag = user.tag
        kept = self._store.leave_message(
            nick_key(name), message, config.offline_messages, now + config.offline_ttl
        )

        def done(_: object) -> None:
            self._metrics.received_from(user.door)
            self._delivery.tell(
                user,
                events.PrivateMessage(
                    now, user.nick, user.door, user.colour, name, text, True
                ),
            )
            self._delivery.tell(
                user,
                events.Status(
                    f"{name} is offline: your message is kept for them until "
                    f"they log in (for {describe_span(config.offline_ttl)} "
                    "at most)"
                ),
            )

        def failed(why: Failure) -> None:
            if not user.connected:
                return
            if why.check(MailboxFullError):
                self._delivery.error(
                    user,
                    "mailbox-full",
                    f"{name} is offline and has as many messages waiting as "
                    "are kept; yours was not kept",
                    tag,
                )
            else:
                unavailable(
                    self._delivery, user, why, "keeping an offline message", tag
                )

        return kept.addCallbacks(done, failed)

    # -- registering ---------------------------------------------------------

    def catch_up(self, user: User, account: Account, now: float) -> None:
        """
        Give C{user} the private messages kept for them, then the lines of
        their rooms that named them since they left.
        """
        key = account.key

        def delivered(kept: list[Offline]) -> None:
            ignoring = user.ignoring or {}
            for m in kept:
                if nick_key(m.sender) in ignoring:
                    # Kept while they were away, but an ignored sender's
                    # private messages are hidden all the same.
                    continue
                colour = PALETTE.get(m.colour) or next(iter(PALETTE.values()))
                self._delivery.tell(
                    user,
                    events.PrivateMessage(
                        m.ts,
                        m.sender,
                        m.sender_door,
                        colour,
                        # Not user.nick: resuming, they are logged in
                        # before their nick is given back.
                        account.name,
                        m.text,
                        False,
                        offline=True,
                    ),
                )

        taken = self._store.take_messages(key, now).addCallback(
            lambda kept: delivered(kept) if user.connected else None
        )
        taken.addErrback(logged_failure("delivering offline messages"))
        if account.last_seen is None or not account.rooms:
            return
        self._scan(user, account)

    def _scan(self, user: User, account: Account) -> None:
        """Look for mentions of C{user} in their rooms since they left."""
        found: list[events.Mention] = []
        pattern = _mentioner(account.name)
        reads = []
        replay = self._settings.history.replay
        for name, epoch, last_id in account.rooms:
            room = self._directory.room(name)
            if room is None:
                continue
            after, _ = resume_point(room, last_id, epoch, replay)
            if after >= room.delivered_id:
                continue
            reading = self._history.read(
                room.key, after, upto=room.delivered_id, limit=MENTION_SCAN
            )

            def matched(messages: list[events.RoomMessage]) -> None:
                ignoring = user.ignoring or {}
                for m in messages:
                    sender = nick_key(m.nick)
                    if (
                        sender != account.key
                        and sender not in ignoring
                        and pattern.search(m.text)
                    ):
                        found.append(
                            events.Mention(m.ts, m.room, m.id, m.nick, m.text, m.action)
                        )

            reads.append(reading.addCallback(matched))
        if not reads:
            return

        async def gather() -> None:
            for reading in reads:
                try:
                    await reading
                except Exception:
                    self._log.failure("reading history for mentions")
            if not found or not user.connected:
                return
            found.sort(key=lambda m: m.ts)
            most = self._settings.accounts.mentions
            if not most:
                return
            kept = found[-most:]
            self._store.add_mentions(account.key, kept, most).addErrback(
                logged_failure("keeping mentions")
            )
            self._delivery.tell(user, events.Mentions(tuple(kept), fresh=True))

        Deferred.fromCoroutine(gather())

    def show(self, user: User) -> Deferred[Any] | None:
        """C{/account}: what the server keeps about the user."""
        account = user.account
        if account is None:
            self._delivery.error(
                user,
                "not-logged-in",
                "you are not logged in: /login NICK PASSWORD, or /register PASSWORD",
            )
            return None
        now = self._clock.seconds()
        config = self._settings.accounts
        tag = user.tag

        async def showing() -> None:
            tokens = await self._store.tokens(account.key, now)
            waiting = await self._store.waiting(account.key, now)
            mentions = await self._store.mentions(account.key)
            if not user.connected:
                return
            rooms = ", ".join(n for n, _, _ in account.rooms) or "none"
            ignores = ", ".join(account.ignores) or "nobody"
            lines = (
                f"nick: {account.name} (registered {describe_date(account.created)})",
                "password: an argon2id hash (the password itself is never kept)",
                f"last login: {describe_date(account.last_login)}",
                f"rooms when you last left: {rooms}",
                f"ignoring: {ignores}",
                f"offline messages waiting: {waiting} "
                f"(kept {describe_span(config.offline_ttl)} at most)",
                f"mentions kept: {len(mentions)} (the latest {config.mentions})",
                f"saved logins (pages): {tokens} "
                f"(each valid {describe_span(config.token_ttl)}; /logout "
                "ends this one, /password ends all)",
                "/unregister PASSWORD deletes all of it",
            )
            self._delivery.tell(
                user,
                events.Listing(
                    "account",
                    f"Account {account.name}",
                    lines,
                    {
                        "name": account.name,
                        "created": account.created,
                        "last_login": account.last_login,
                        "rooms": [n for n, _, _ in account.rooms],
                        "ignores": list(account.ignores),
                        "offline_waiting": waiting,
                        "mentions": len(mentions),
                        "tokens": tokens,
                    },
                ),
            )

        def failed(why: Failure) -> None:
            if user.connected:
                unavailable(self._delivery, user, why, "reading an account", tag)

        return Deferred.fromCoroutine(showing()).addErrback(failed)

    def mentions(self, user: User) -> Deferred[Any] | None:
        """C{/mentions}: those kept for the account."""
        account = user.account
        if account is None:
            self._delivery.error(
                user,
                "not-logged-in",
                "mentions are kept for registered nicks: /register PASSWORD "
                "or /login NICK PASSWORD",
            )
            return None
        tag = user.tag

        def found(kept: list[events.Mention]) -> None:
            if user.connected:
                self._delivery.tell(user, events.Mentions(tuple(kept)))

        def failed(why: Failure) -> None:
            if user.connected:
                unavailable(self._delivery, user, why, "reading mentions", tag)

        return self._store.mentions(account.key).addCallbacks(found, failed)
