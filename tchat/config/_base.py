# -*- test-case-name: tests.test_config -*-
"""
What every section of C{tap.ini} shares: L{ConfigError}, and the value
parsers more than one section uses.

A value parser takes the raw string of one key and returns the value, or
raises C{ValueError} with a sentence saying what is expected; the caller
(L{tchat.config.parse.config_from_string}) adds the section and the key.
Each section module declares a L{Parsers} table, key to parser, next to
its dataclass.
"""

from collections.abc import Callable, Mapping
from typing import TypeVar

N = TypeVar("N", int, float)

# A section's keys, in the order they are documented and listed in messages,
# each with the parser of its value.
Parsers = Mapping[str, Callable[[str], object]]


class ConfigError(Exception):
    """
    The configuration cannot be used; the message says where and why.
    """


# -- value parsers: each takes the raw string and returns the value or raises
# ValueError with a sentence saying what is expected.


def _endpoints(raw: str) -> tuple[str, ...]:
    # One endpoint per line; endpoint strings may contain spaces only in
    # unix paths, which we do not support splitting around.
    values = tuple(line.strip() for line in raw.splitlines() if line.strip())
    for value in values:
        kind, sep, _ = value.partition(":")
        if not sep or not kind:
            raise ValueError(
                f"{value!r} is not an endpoint string; "
                "expected TYPE:ARGS such as tcp:4444:interface=127.0.0.1"
            )
    return values


def _endpoints_or_none(raw: str) -> tuple[str, ...]:
    if raw.strip().lower() == "none":
        return ()
    return _endpoints(raw)


def _shown(number: float) -> str:
    return f"{number:g}" if isinstance(number, float) else str(number)


def _bounded(
    convert: Callable[[str], N], low: N, high: N, what: str
) -> Callable[[str], N]:
    """
    A parser for a number from C{low} to C{high}; C{what} names the kind
    of number for the message when the text is not one.
    """

    def parse(raw: str) -> N:
        text = raw.strip()
        if len(text) > 40:
            # Python refuses to convert very long numbers (and a message
            # quoting one would be as long): no limit here is that big.
            raise ValueError(
                f"must be between {_shown(low)} and {_shown(high)}, "
                f"not a {len(text)}-character value"
            )
        try:
            value = convert(text)
        except ValueError:
            raise ValueError(f"{text!r} is not {what}") from None
        if not low <= value <= high:
            raise ValueError(
                f"must be between {_shown(low)} and {_shown(high)}, not {_shown(value)}"
            )
        return value

    return parse


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    return _bounded(int, low, high, "a whole number")


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"{raw.strip()!r} is not true or false")


def _seconds(low: float, high: float) -> Callable[[str], float]:
    return _bounded(float, low, high, "a number of seconds")


def _path(raw: str, empty: str = "must not be empty (use :memory: for no file)") -> str:
    value = raw.strip()
    if not value:
        raise ValueError(empty)
    if "\0" in value:
        raise ValueError("must not contain NUL")
    return value


def _file(raw: str) -> str:
    """A path that must name a file (no :memory: hint)."""
    return _path(raw, "must not be empty")
