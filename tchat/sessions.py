# -*- test-case-name: tests.test_sessions -*-
"""
Sessions: resume codes, and what a code brings back.

Every user is given a resume code on arrival.  What they are (nick, colour,
rooms and the last message of each they were shown) is kept under it while
they are here and for C{[history] resume_ttl} after they leave, so that
C{/resume CODE} (or the page, on its own) brings it all back.
"""

import base64
import secrets

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from tchat.history import HistoryStore, Session
from tchat.model import Directory, User


def new_code() -> str:
    """
    A new resume code: 40 random bits, as two groups of four letters and
    digits that are easy to read out and type.
    """
    raw = base64.b32encode(secrets.token_bytes(5)).decode("ascii")
    return f"{raw[:4]}-{raw[4:]}"


def normalize_code(text: str) -> str:
    """
    A resume code as typed, in its canonical form.
    """
    raw = "".join(text.split()).replace("-", "").upper()
    return f"{raw[:4]}-{raw[4:]}" if len(raw) == 8 else raw


class Sessions:
    """
    Keeps each user's session under their resume code, in the store.
    """

    def __init__(
        self, store: HistoryStore, directory: Directory, clock: IReactorTime
    ) -> None:
        self._store = store
        self._directory = directory
        self._clock = clock

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
        )

    def save(self, user: User) -> None:
        """Keep C{user}'s session (unless resume codes are off)."""
        if self._directory.settings.history.resume_ttl:
            self._store.save_session(self.snapshot(user))

    def find(self, code: str) -> Deferred[Session | None]:
        """The session kept under C{code}, unless it expired."""
        ttl = self._directory.settings.history.resume_ttl
        return self._store.session(code, self._clock.seconds() - ttl)
