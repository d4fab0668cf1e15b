# -*- test-case-name: tests.test_history -*-
"""
L{Fault}: why the history cannot be written, in words an operator
understands, from SQLite's errors or the store's own checks; and
L{StorageError}, the exception that carries one.
"""

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    """
    Why the history cannot be written, in words an operator understands.

    @ivar check: One word for the C{history} check of C{/healthz}:
        C{disk-full}, C{read-only}, C{not-writable}, C{io-error},
        C{deleted}, C{replaced}, C{locked}, C{damaged}, C{cannot-open} or
        C{failing}.
    @ivar what: What is wrong: C{"the disk is full"}.
    @ivar detail: The error as SQLite or the system said it, or the path.
    @ivar advice: What the operator can do about it.
    @ivar lasting: Retrying cannot help while tchat runs (the file it has
        open is no longer the one at its path).
    """

    check: str
    what: str
    detail: str
    advice: str = ""
    lasting: bool = False

    def __str__(self) -> str:
        return f"{self.what} ({self.detail})"

    @classmethod
    def of(cls, error: BaseException) -> "Fault":
        """
        @return: The fault an exception of a write shows.
        """
        if isinstance(error, StorageError):
            return error.fault
        if not isinstance(error, sqlite3.Error):
            return cls("failing", "writes fail", f"{type(error).__name__}: {error}")
        detail = str(error)
        code = getattr(error, "sqlite_errorcode", 0) & 0xFF
        if code == 0:
            # Only the text to go by (an error raised without a code).
            code = next((c for c, text in _TEXTS if text in detail), 0)
        what, check, advice = _BY_CODE.get(code, _FAILING)
        return cls(check, what, detail, advice)


_FAILING = ("writes fail", "failing", "check the disk and the file")

_BY_CODE = {
    # SQLITE_FULL: also what PRAGMA max_page_count answers.
    13: ("the disk is full", "disk-full", "free some space on it"),
    8: (
        "the database is read-only",
        "read-only",
        "make the file, its folder and its -wal file writable by tchat's user",
    ),
    10: (
        "the disk reported an I/O error",
        "io-error",
        "check the disk and the system log",
    ),
    14: (
        "the database file cannot be opened",
        "cannot-open",
        "check the file and its folder",
    ),
    11: (
        "the database file is damaged",
        "damaged",
        "stop tchat and restore the file from a backup",
    ),
    26: (
        "the database file is damaged",
        "damaged",
        "stop tchat and restore the file from a backup",
    ),
    5: ("another program holds the database", "locked", "stop that program"),
    6: ("another program holds the database", "locked", "stop that program"),
}

_TEXTS = (
    (13, "database or disk is full"),
    (8, "readonly database"),
    (10, "disk I/O error"),
    (14, "unable to open database file"),
    (11, "database disk image is malformed"),
    (26, "file is not a database"),
    (5, "database is locked"),
)


class StorageError(Exception):
    """
    A write refused for a L{Fault} (raised in the writer thread).

    @ivar fault: Why.
    """

    def __init__(self, fault: Fault) -> None:
        super().__init__(str(fault))
        self.fault = fault


STOPPED = Fault("failing", "tchat stopped before it could write them", "stopping")
