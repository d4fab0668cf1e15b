# -*- test-case-name: tests.test_sshkeys -*-
"""
C{/key add}, C{/key list} and C{/key remove}: the SSH public keys bound
to an account.  Whoever connects to the SSH door with one of them is
logged in to the account with no password
(L{tchat.accounts.Accounts.key_login}).  A key is one account's alone, by
its fingerprint; an account has at most L{MAX_KEYS}.  The same commands
on every door: on the others the user pastes their public key's line.
"""

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tchat import events
from tchat.delivery import Delivery
from tchat.history import MAX_KEYS, Account, AccountStore, KeyLimitError, KeyRecord
from tchat.keeping import describe_date
from tchat.model import User
from tchat.proofs import unavailable
from tchat.sshkeys import (
    PublicKeyError,
    describe_line,
    normalize_fingerprint,
    parse_public_key,
)
from tchat.text import clean_text

NO_KEY = (
    "paste your public key: /key add ssh-ed25519 AAAA... (on this door "
    "there is no key to add)"
)
"""What C{/key add} alone says off the SSH door."""


class Logins(Protocol):
    """What of L{tchat.accounts.Accounts} the keyring uses."""

    def not_logged_in(self, user: User) -> bool:
        """Whether C{user} is not logged in (then they are told so)."""


class Keyring:
    """
    The SSH keys of accounts, as their owners manage them, and logins by
    them.
    """

    _log = Logger()

    def __init__(
        self,
        accounts: Logins,
        store: AccountStore,
        delivery: Delivery,
        clock: IReactorTime,
        take: Callable[[User, Account], Deferred[Any] | None],
    ) -> None:
        """
        @param take: Logs a user in to an account they proved is theirs, as
            a right password does (L{tchat.accounts.Accounts._take}).
        """
        self._accounts = accounts
        self._store = store
        self._delivery = delivery
        self._clock = clock
        self._take = take

    def login(self, user: User, fingerprint: str) -> Deferred[Any] | None:
        """
        C{user} connected to the SSH door with the key C{fingerprint}
        (L{tchat.sshkeys.fingerprint}), its signature checked.  When the
        key is on an account, log them in to it with no password, as a
        password login does once the password is right (carrying on the
        account's session if it is still here, on this node or another);
        when it is on none, do nothing and say nothing.

        Only the SSH door may ask, once it has checked the key: a
        fingerprint is no secret.

        @return: What the login waits on, if anything.
        """
        tag = user.tag

        def owner(key: str | None) -> Deferred[Any] | None:
            if key is None or not user.connected:
                return None
            if user.account is not None and user.account.key == key:
                return None
            return self._store.get(key).addCallback(found)

        def found(account: Account | None) -> Deferred[Any] | None:
            # None: the account was deleted meanwhile.
            if account is None or not user.connected:
                return None
            self._log.info(
                "{nick} ({door}) logs in to {name} with the SSH key {fingerprint}",
                nick=user.nick,
                door=user.door,
                name=account.name,
                fingerprint=fingerprint,
            )
            return self._take(user, account)

        failed = self._unavailable(user, "logging in by SSH key", tag)
        reading: Deferred[Any] = self._store.key_owner(fingerprint)
        return reading.addCallback(owner).addErrback(failed)

    def add(self, user: User, line: str | None) -> Deferred[Any] | None:
        """
        C{/key add [LINE]}: bind the pasted key, or (alone) the key of this
        SSH connection, to the user's account.
        """
        account = user.account
        if self._accounts.not_logged_in(user) or account is None:
            return None
        if line is None:
            line = user.ssh_key
            if line is None:
                self._delivery.error(user, "bad-arguments", NO_KEY)
                return None
        try:
            key = parse_public_key(clean_text(line))
        except PublicKeyError as e:
            self._delivery.error(user, "key-invalid", e.text)
            return None
        tag = user.tag
        shown = f"key {key.fingerprint} ({key.describe()})"

        def added(fresh: bool) -> None:
            if not user.connected:
                return
            if not fresh:
                self._delivery.error(
                    user,
                    "key-taken",
                    f"{shown} is on an account already (yours or another): "
                    "a key logs in to one account only",
                    tag,
                )
                return
            self._log.info(
                "{nick} added the SSH key {fingerprint} to {name}",
                nick=user.nick,
                fingerprint=key.fingerprint,
                name=account.name,
            )
            self._delivery.tell(user, events.Status(f"{shown} added to {account.name}"))

        def failed(why: Failure) -> None:
            if not user.connected:
                return
            if why.check(KeyLimitError):
                self._delivery.error(
                    user,
                    "too-many-keys",
                    f"{account.name} has {MAX_KEYS} keys, as many as an account "
                    "may: /key remove one first",
                    tag,
                )
                return
            self._unavailable(user, "adding an SSH key", tag)(why)

        adding = self._store.add_key(
            account.key, key.fingerprint, key.line, self._clock.seconds()
        )
        return adding.addCallbacks(added, failed)

    def list(self, user: User) -> Deferred[Any] | None:
        """C{/key list}: the account's keys, oldest first."""
        account = user.account
        if self._accounts.not_logged_in(user) or account is None:
            return None
        tag = user.tag

        def listed(found: list[KeyRecord]) -> None:
            if not user.connected:
                return
            lines = tuple(
                f"{r.fingerprint} ({describe_line(r.line)}), "
                f"added {describe_date(r.added)}"
                for r in found
            )
            title = (
                f"SSH keys of {account.name} ({len(found)} of {MAX_KEYS}):"
                if found
                else f"{account.name} has no SSH keys: /key add to add one"
            )
            data = {
                "keys": [
                    {"fingerprint": r.fingerprint, "key": r.line, "added": r.added}
                    for r in found
                ]
            }
            self._delivery.tell(user, events.Listing("keys", title, lines, data))

        failed = self._unavailable(user, "listing SSH keys", tag)
        return self._store.keys(account.key).addCallbacks(listed, failed)

    def remove(self, user: User, fingerprint: str) -> Deferred[Any] | None:
        """C{/key remove FINGERPRINT}."""
        account = user.account
        if self._accounts.not_logged_in(user) or account is None:
            return None
        wanted = normalize_fingerprint(fingerprint)
        if wanted is None:
            self._delivery.error(
                user,
                "bad-arguments",
                "a fingerprint looks like SHA256: and 43 letters, digits, + "
                "and /, as /key list shows them",
            )
            return None
        tag = user.tag

        def removed(had: bool) -> None:
            if not user.connected:
                return
            if not had:
                self._delivery.error(
                    user,
                    "no-such-key",
                    f"{account.name} has no key {wanted}; /key list shows them",
                    tag,
                )
                return
            self._log.info(
                "{nick} removed the SSH key {fingerprint} from {name}",
                nick=user.nick,
                fingerprint=wanted,
                name=account.name,
            )
            self._delivery.tell(
                user, events.Status(f"key {wanted} removed from {account.name}")
            )

        failed = self._unavailable(user, "removing an SSH key", tag)
        return self._store.remove_key(account.key, wanted).addCallbacks(removed, failed)

    def _unavailable(
        self, user: User, doing: str, tag: str | None
    ) -> Callable[[Failure], None]:
        """
        An errback: the store failed while C{doing}; it is logged, and
        C{user} told, if still here.
        """

        def failed(why: Failure) -> None:
            if user.connected:
                unavailable(self._delivery, user, why, doing, tag)

        return failed
