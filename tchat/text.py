# -*- test-case-name: tests.test_text -*-
"""
Cleaning user text, and the rules for nicks and room names.

Everything a user types passes through L{clean_text} before anyone else sees
it, whatever door it came in by, so that no user can repaint or clear another
user's terminal or reorder text on their screen.
"""

import math
import re
import unicodedata

# Whole escape sequences are removed, not just their ESC byte, so that no
# "[2J" residue is left behind:
#   CSI  ESC [ params final
#   OSC  ESC ] ... BEL or ESC \
#   DCS/SOS/PM/APC  ESC P|X|^|_ ... ESC \
#   two-byte escapes  ESC any
# plus their 8-bit C1 forms (U+009B CSI, U+009D OSC, ...).
_ESCAPE_SEQUENCE = re.compile(
    r"""
    (?: \x1b\[ | \x9b ) [\x20-\x3f]* [\x40-\x7e]?
  | (?: \x1b[\]PX^_] | [\x90\x98\x9d\x9e\x9f] ) .*? (?: \x07 | \x1b\\ | \x9c | $ )
  | \x1b .?
    """,
    re.VERBOSE | re.DOTALL,
)

# Bidirectional overrides, embeddings and isolates can make text display in a
# different order from the one it was typed in ("Trojan Source").
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def _is_unwanted(char: str) -> bool:
    """
    Is C{char} a control character that must not reach another user?

    @param char: One character.
    @return: C{True} for C0 and C1 controls, DEL, bidi controls and the
        Unicode line and paragraph separators.
    """
    if char in _BIDI_CONTROLS:
        return True
    return unicodedata.category(char) in ("Cc", "Zl", "Zp")


def clean_text(text: str) -> str:
    """
    Remove terminal escape sequences and control characters from user text.

    Tabs become a space; everything else that could move a cursor, change
    colours, ring a bell or reorder text is dropped.  Printable text,
    including emoji and their joiners, is kept as it is.

    @param text: Text as a user typed it.
    @return: The text, safe to show to any other user on any door.
    """
    if text.isprintable():
        # Every control, separator, bidi control and escape introducer is
        # unprintable, so there is nothing to remove: the usual case, and
        # one C call instead of a look at every character.
        return text
    text = _ESCAPE_SEQUENCE.sub("", text.replace("\t", " "))
    return "".join(c for c in text if not _is_unwanted(c))


NICK_MAX = 24
ROOM_MAX = 32
_NAME_EXTRA = frozenset("_-")


def _is_name_char(char: str) -> bool:
    return char.isalpha() or char.isdecimal() or char in _NAME_EXTRA


def normalize_nick(nick: str) -> str:
    """
    Bring a nick into the form in which it is stored and shown.

    NFKC folds look-alike forms such as fullwidth letters into their plain
    form, so that fullwidth "alice" and plain "alice" are one nick.

    @param nick: A nick as a user typed it.
    @return: The normalised nick.
    """
    return unicodedata.normalize("NFKC", nick.strip())


def nick_key(nick: str) -> str:
    """
    The key under which nicks are compared: case-insensitive, via casefold.

    @param nick: A normalised nick.
    @return: Its comparison key.
    """
    return nick.casefold()


def nick_problem(nick: str) -> str | None:
    """
    Say what is wrong with a (normalised) nick, if anything.

    Reserved names are the hub's business, not this function's.

    @param nick: The nick to check.
    @return: A sentence for the user, or C{None} when the nick is well formed.
    """
    if not nick:
        return "a nick needs at least one character"
    if len(nick) > NICK_MAX:
        return f"a nick has at most {NICK_MAX} characters"
    if not all(_is_name_char(c) for c in nick):
        return "a nick may hold only letters, digits, '_' and '-'"
    return None


def normalize_room(name: str) -> str:
    """
    Bring a room name into its canonical form: NFKC, a leading C{#}.

    C{lobby} and C{#lobby} name the same room.

    @param name: A room name as a user typed it.
    @return: The normalised name.
    """
    name = unicodedata.normalize("NFKC", name.strip())
    return name if name.startswith("#") else "#" + name


def room_key(name: str) -> str:
    """
    The key under which room names are compared: case-insensitive.

    @param name: A normalised room name.
    @return: Its comparison key.
    """
    return name.casefold()


def room_problem(name: str) -> str | None:
    """
    Say what is wrong with a (normalised) room name, if anything.

    @param name: A room name that starts with C{#}.
    @return: A sentence for the user, or C{None} when the name is well formed.
    """
    body = name[1:]
    if not body:
        return "a room name needs at least one character after '#'"
    if len(body) > ROOM_MAX:
        return f"a room name has at most {ROOM_MAX} characters after '#'"
    if not all(_is_name_char(c) for c in body):
        return "a room name may hold only letters, digits, '_' and '-' after '#'"
    return None


def shortened(text: str, most: int = 40) -> str:
    """
    What someone typed, cut short for an error message, so that a long
    argument is not echoed back whole.
    """
    return text if len(text) <= most else text[:most] + "…"


def is_simple_name(name: str) -> bool:
    """
    Whether C{name} suits an account or client name in C{tap.ini}: ASCII
    letters, digits, C{-} and C{_}, at most 32, not starting with a digit.
    """
    return len(name) <= 32 and name.isascii() and name.replace("-", "_").isidentifier()


def quoted(text: str) -> str:
    """What a user typed, L{shortened} and quoted, for an error."""
    return repr(shortened(text))


def describe_span(seconds: float) -> str:
    """
    C{2h}, C{1d 6h}, C{45s}: the two largest units.
    """
    left, parts = round(seconds), list[str]()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def describe_duration(seconds: float | None) -> str:
    """
    C{for 2h}, C{for 1d 6h}, or C{until lifted}.
    """
    if seconds is None or math.isinf(seconds):
        return "until lifted"
    return "for " + describe_span(seconds)


def per_second(rate: float, word: str) -> str:
    """C{1 line a second}, C{2.5 lines a second}."""
    return f"{rate:g} {word}{'' if rate == 1 else 's'} a second"
