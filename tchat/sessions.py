# -*- test-case-name: tests.test_sessions -*-
"""
Sessions: resume codes, and what a code brings back.

Every user is given a resume code on arrival.  What they are (nick, colour,
rooms and the last message of each they were shown) is kept under it while
they are here and for C{[history] resume_ttl} after they leave, so that
C{/resume CODE} (or the page, on its own) brings it all back.
"""

import base64
import hashlib
import secrets
from collections import OrderedDict

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from tchat.history import Account, HistoryStore, Session
from tchat.limits import exempt
from tchat.model import Directory, User

SHARED = 100
"""How many times C{sessions_per_address} an address many users share
(an exempt one, or the onion) keeps."""

ADDRESSES_SWEPT = 100_000
"""Past this many addresses noted, those whose codes all expired go."""


def new_code() -> str:
    """
    A new resume code: 40 random bits, as two groups of four letters and
    digits that are easy to read out and type.
    """
    raw = base64.b32encode(secrets.token_bytes(5)).decode("ascii")
    return f"{raw[:4]}-{raw[4:]}"


def sealed(account: Account) -> str:
    """
    What a session keeps of the account it is logged in to: its key and a
    digest of its password's hash, so that a new password (or the account
    deleted and registered again by someone else) ends what the session's
    resume code can log in to.
    """
    digest = hashlib.sha256(account.hash.encode("utf-8")).hexdigest()[:16]
    return f"{account.key} {digest}"


def normalize_code(text: str) -> str:
    """
    A resume code as typed, in its canonical form.
    """
    raw = "".join(text.split()).replace("-", "").upper()
    return f"{raw[:4]}-{raw[4:]}" if len(raw) == 8 else raw


class Sessions:
    """
    Keeps each user's session under their resume code, in the store, and
    no more of them per client address than C{[limits]
    sessions_per_address}: a client connecting again and again cannot fill
    the store with codes nobody will use.
    """

    def __init__(
        self, store: HistoryStore, directory: Directory, clock: IReactorTime
    ) -> None:
        self._store = store
        self._directory = directory
        self._clock = clock
        # The codes saved from each address, oldest first, with when.
        self._by_address: dict[str, OrderedDict[str, float]] = {}

    def unused_code(self) -> str:
        """A resume code no user of this node has."""
        while True:
            code = new_code()
            if code not in self._directory.codes:
                return code

    def snapshot(self, user: User) -> Session:
        """What C{user} is now, as their code brings it back."""
        return Session(
            user.code,
            user.nick,
            user.colour.name,
            user.show_colours,
            tuple((r.name, r.epoch, r.delivered_id) for r in user.rooms),
            user.current.name if user.current is not None else None,
            self._clock.seconds(),
            sealed(user.account) if user.account is not None else None,
        )

    def save(self, user: User) -> None:
        """Keep C{user}'s session (unless resume codes are off)."""
        if self._directory.settings.history.resume_ttl:
            self._store.save_session(self.snapshot(user))
            self._count(user)

    def forget(self, user: User) -> None:
        """C{user}'s code will never be used: drop whatever was kept under it."""
        codes = self._by_address.get(user.address or "onion")
        if codes is not None and codes.pop(user.code, None) is not None:
            self._store.delete_session(user.code)

    def _count(self, user: User) -> None:
        """
        Note C{user}'s code among those of their address, and forget the
        oldest sessions of users who left from there past the limit.
        """
        settings = self._directory.settings
        most = settings.limits.sessions_per_address
        if not most:
            return
        address = user.address
        if address is None or exempt(address, settings.limits.exempt):
            most *= SHARED
        key = address or "onion"
        now = self._clock.seconds()
        if key not in self._by_address and len(self._by_address) >= ADDRESSES_SWEPT:
            self._sweep(now - settings.history.resume_ttl)
        codes = self._by_address.setdefault(key, OrderedDict())
        codes[user.code] = now
        codes.move_to_end(user.code)
        oldest = now - settings.history.resume_ttl
        live = self._directory.codes
        # From the oldest, only as far as needed: a save costs O(1), however
        # many codes the address has (10,000 users behind one NAT, say).
        while codes:
            code, saved = next(iter(codes.items()))
            if len(codes) <= most and saved > oldest:
                break
            del codes[code]
            if saved > oldest and code not in live:
                self._store.delete_session(code)
        if not codes:
            del self._by_address[key]

    def _sweep(self, oldest: float) -> None:
        """Forget the addresses whose every code has expired."""
        for key, codes in list(self._by_address.items()):
            if next(reversed(codes.values())) <= oldest:
                del self._by_address[key]

    def find(self, code: str) -> Deferred[Session | None]:
        """The session kept under C{code}, unless it expired."""
        ttl = self._directory.settings.history.resume_ttl
        return self._store.session(code, self._clock.seconds() - ttl)
