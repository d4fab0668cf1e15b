# -*- test-case-name: tests.test_config -*-
"""
The C{[accounts]} section: registered nicks (L{tchat.accounts} carries
them out), what is kept for them, and how passwords are hashed.
"""

from dataclasses import dataclass

from tchat.config._base import Parsers, _bool, _bounded_int

DAY = 24 * 3600


@dataclass(frozen=True)
class AccountsConfig:
    """
    The C{[accounts]} section.

    @ivar enabled: Whether users may register nicks; registered ones stay
        protected and may still log in when it is off.
    @ivar min_password: The shortest password taken, in characters.
    @ivar offline_messages: Private messages kept per account while its
        owner is offline; past it, senders are told the mailbox is full.
    @ivar offline_ttl: Seconds an offline message is kept undelivered.
    @ivar mentions: Mentions kept per account (the latest).
    @ivar token_ttl: Seconds a login token (the page's "stay logged in")
        is valid.
    @ivar registrations_per_hour: Accounts one address may register an
        hour; onion users, who all come from the local tor, share ten
        times as many.
    @ivar hash_memory: Argon2id's memory per password check, in KiB.
    @ivar hash_time: Argon2id's passes over it.
    @ivar hash_threads: Password checks run at once, each in its own
        thread; the others wait their turn.
    """

    enabled: bool = True
    min_password: int = 8
    offline_messages: int = 100
    offline_ttl: int = 30 * DAY
    mentions: int = 50
    token_ttl: int = 30 * DAY
    registrations_per_hour: int = 3
    hash_memory: int = 65536
    hash_time: int = 3
    hash_threads: int = 1


ACCOUNTS_PARSERS: Parsers = {
    "enabled": _bool,
    "min_password": _bounded_int(1, 1024),
    "offline_messages": _bounded_int(0, 10_000),
    "offline_ttl": _bounded_int(60, 3650 * DAY),
    "mentions": _bounded_int(0, 10_000),
    "token_ttl": _bounded_int(60, 3650 * DAY),
    "registrations_per_hour": _bounded_int(0, 100_000),
    "hash_memory": _bounded_int(8, 4 * 1024 * 1024),
    "hash_time": _bounded_int(1, 100),
    "hash_threads": _bounded_int(1, 64),
}
