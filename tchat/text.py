# -*- test-case-name: tests.test_text -*-
"""
Cleaning user text, and the rules for nicks and room names.

Everything a user types passes through L{clean_text} before anyone else sees
it, whatever door it came in by, so that no user can repaint or clear another
user's terminal, reorder text on their screen, or pad a line with blanks
until a forged one starts a line of its own.

Nicks are shown as typed (after NFKC) but compared by L{nick_key}, a
confusable skeleton in the sense of Unicode TS #39: two nicks a reader
could not tell apart have the same key, so they cannot both be held, and a
look-alike of a reserved name is reserved too.
"""

import functools
import math
import re
import unicodedata

from confusable_homoglyphs import (  # type: ignore[import-untyped]
    categories as _scripts,
)
from confusable_homoglyphs import (
    confusables as _confusables,
)

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

# The Hangul fillers are letters (category Lo) that show as blank space, and
# the only Default_Ignorable_Code_Point characters that are not format
# characters, marks or unassigned: Python's unicodedata has no
# Default_Ignorable_Code_Point, so these four are named here and every
# other ignorable is found by its category (Cf, Mn, Me, Cn).
_HANGUL_FILLERS = "\u115f\u1160\u3164\uffa0"
# What shows as blank space without being whitespace: the fillers, and the
# blank Braille pattern (a symbol, So).
_BLANK_GLYPHS = _HANGUL_FILLERS + "\u2800"


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


_SPACES = re.compile(" {2,}")


@functools.cache
def _blank_runs() -> re.Pattern[str]:
    """
    Runs of two or more blanks (whitespace or L{_BLANK_GLYPHS}), with
    whatever takes no room among them: format characters (zero-width
    spaces and joiners, ...) and marks (variation selectors, ...).

    Built on first use: finding the zero-width characters takes a look at
    every code point of the planes that have any (0, 1 and 14).
    """

    def unseen(planes: tuple[int, ...]) -> str:
        ranges: list[tuple[int, int]] = []
        for plane in planes:
            for cp in range(plane, plane + 0x10000):
                if unicodedata.category(chr(cp)) not in ("Cf", "Mn", "Me"):
                    continue
                if ranges and ranges[-1][1] == cp - 1:
                    ranges[-1] = (ranges[-1][0], cp)
                else:
                    ranges.append((cp, cp))
        return "".join(f"{chr(a)}-{chr(b)}" for a, b in ranges)

    # Classes of BMP characters only are bitmaps to re, fast whatever their
    # size; so the whitespace characters are named rather than \s (a lookup
    # per character), and the zero-width characters of other planes are a
    # class of their own, tried only on characters past the BMP.
    bmp, beyond = unseen((0x00000,)), unseen((0x10000, 0xE0000))
    spaces = "".join(c for c in map(chr, range(0x10000)) if c.isspace())
    blanks = re.escape(spaces + _BLANK_GLYPHS)
    zero = f"(?:[{bmp}]|[{beyond}])"
    # Most blanks are single spaces before a letter: the look-ahead turns
    # them down before anything slower is tried.
    ahead = f"(?=[{blanks}{bmp}\\U00010000-\\U0010ffff])"
    return re.compile(f"[{blanks}]{ahead}(?:{zero}*[{blanks}])+{zero}*")


def clean_text(text: str, collapse: bool = True) -> str:
    """
    Remove terminal escape sequences and control characters from user text,
    and collapse runs of blanks.

    Tabs become a space; everything else that could move a cursor, change
    colours, ring a bell or reorder text is dropped.  A run of two or more
    blanks (spaces of any kind, Hangul fillers, blank Braille, with any
    zero-width characters among them) becomes one space, so that nobody can
    pad a message until what follows starts a line of its own on someone's
    terminal and passes for a line from someone else.  Printable text,
    including emoji and their joiners, is kept as it is.

    @param text: Text as a user typed it.
    @param collapse: Whether to collapse runs of blanks; C{False} for text
        whose spacing matters and that is not shown as a user's line (an
        operator's message of the day, a password).
    @return: The text, safe to show to any other user on any door.
    """
    if text.isprintable():
        # Every control, separator, bidi control and escape introducer is
        # unprintable, so there is nothing to remove: the usual case, and
        # one C call instead of a look at every character.
        if not collapse:
            return text
        if text.isascii():
            return text if "  " not in text else _SPACES.sub(" ", text)
        return _blank_runs().sub(" ", text)
    text = _ESCAPE_SEQUENCE.sub("", text.replace("\t", " "))
    text = "".join(c for c in text if not _is_unwanted(c))
    return _blank_runs().sub(" ", text) if collapse else text


NICK_MAX = 24
ROOM_MAX = 32
_NAME_EXTRA = frozenset("_-")


def _is_name_char(char: str) -> bool:
    return char.isalpha() or char.isdecimal() or char in _NAME_EXTRA


def normalize_nick(nick: str) -> str:
    """
    Bring a nick into the form in which it is stored and shown.

    NFKC folds compatibility forms such as fullwidth letters (U+FF41...)
    and Roman numerals (U+2170) into their plain form, so that fullwidth
    "alice" and plain "alice" are one nick, spelled the same.

    @param nick: A nick as a user typed it.
    @return: The normalised nick.
    """
    return unicodedata.normalize("NFKC", nick.strip())


def nick_fold(nick: str) -> str:
    """
    A nick or nick pattern in NFKC, case-folded: readable, and what nick
    bans keep (compared by L{nick_key} when they are applied).

    @param nick: A nick, or a pattern with C{*} and C{?}.
    @return: Its case-folded form.
    """
    return unicodedata.normalize("NFKC", nick).casefold()


@functools.cache
def _prototypes() -> dict[str, str]:
    """
    Each confusable character's prototype, from Unicode's confusables.txt
    (TS #39) as C{confusable_homoglyphs} ships it.

    That package keeps the table as a symmetric graph: each character
    with the characters it is confusable with.  Every line of
    confusables.txt maps a source character to its prototype (one or more
    characters that are never sources themselves) and each source has one
    line, so each group of look-alikes is a star: the prototype in the
    middle, its sources around it.  The centre of a star with two or more
    sources, or a target of several characters, is the prototype; in a
    pair of two single characters either may be, and the one that NFD
    leaves alone is taken as the source (NFD is applied before the mapping
    is), else the one with the higher code point.  Skeletons made with
    this table are equal exactly when TS #39 skeletons are: only which
    member of such a pair stands for both differs.

    @return: Source character to prototype string.
    """
    # The package reads the table's display columns, which carry left-to-
    # right marks around right-to-left text; they are not part of it.
    lrm = "\u200e"
    graph: dict[str, set[str]] = {}
    for key, entries in _confusables.confusables_data.items():
        node = key.replace(lrm, "")
        graph.setdefault(node, set()).update(e["c"].replace(lrm, "") for e in entries)
    prototypes: dict[str, str] = {}
    for node, around in graph.items():
        if len(node) > 1 or len(around) > 1:
            for source in around:
                if len(source) == 1:
                    prototypes[source] = node
            continue
        (other,) = around
        if len(other) > 1 or len(graph.get(other, ())) > 1:
            prototypes[node] = other
            continue
        pair = sorted((node, other), key=lambda c: (_nfd_stable(c), ord(c)))
        prototypes[pair[1]] = pair[0]
    # A prototype of several characters may hold one that a pair maps on.
    for source, target in prototypes.items():
        prototypes[source] = "".join(prototypes.get(c, c) for c in target)
    return prototypes


def _nfd_stable(char: str) -> bool:
    return unicodedata.normalize("NFD", char) == char


def _is_ignorable(char: str) -> bool:
    """
    Whether C{char} is default-ignorable: shown as nothing (or as a blank
    it has no business being), whatever it is.
    """
    return char in _HANGUL_FILLERS or unicodedata.category(char) == "Cf"


def skeleton(text: str) -> str:
    """
    The confusable skeleton of C{text} (Unicode TS #39, section 4): NFD,
    without default-ignorable characters, each character replaced by its
    prototype, NFD again.  Two strings that look alike have the same
    skeleton; a skeleton is for comparing, never for showing.

    @param text: Any text.
    @return: Its skeleton.
    """
    prototypes = _prototypes()
    decomposed = unicodedata.normalize("NFD", text)
    mapped = "".join(prototypes.get(c, c) for c in decomposed if not _is_ignorable(c))
    return unicodedata.normalize("NFD", mapped)


@functools.lru_cache(maxsize=16384)
def nick_key(nick: str) -> str:
    """
    The key under which nicks are compared: two nicks with one key cannot
    both be held, and a nick with the key of a reserved name is reserved.

    The key is the confusable skeleton (L{skeleton}) of the nick in NFKC,
    case-folded, put through NFKC and case-folded again (C{0} has the
    prototype C{O}), with C{i} and C{l} taken as one letter:
      - case-insensitive, as nicks always were: C{ALICE} is C{alice};
      - look-alikes from other scripts fold: C{alice} with a Cyrillic
        C{a} (U+0430), C{ADMIN} with a Greek C{A} (U+0391);
      - compatibility forms fold: fullwidth C{alice}, the Roman numeral
        C{i} (U+2170);
      - digits that look like letters fold: C{b0b} is C{bob}, C{a1ice} is
        C{alice}, and so does C{rn} with C{m};
      - C{i} and C{l}: TS #39 folds a capital C{I} with C{l}, which look the
        same in most sans-serif fonts (the web page's), but a key that is
        case-insensitive cannot keep C{I} apart from C{i}; so C{i} and C{l}
        fold too, and C{AIice} is C{Alice}.

    Cached: users are looked up by key all the time.

    @param nick: A nick (normalised or not), or a nick pattern: C{*}, C{?}
        and C{[]} are left as they are.
    @return: Its comparison key.
    """
    key = nick_fold(nick)
    # Folding the skeleton can make a character that has a prototype of
    # its own (U+2780 is U+2460, whose NFKC is 1, whose prototype is l):
    # fold until nothing changes, which takes two rounds at most.
    for _ in range(4):
        folded = nick_fold(skeleton(key)).replace("i", "l")
        if folded == key:
            break
        key = folded
    return key


def describe_char(char: str) -> str:
    """
    C{U+3164 HANGUL FILLER}: a character by code point and name, for an
    error about a character that may not show.
    """
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X} {name}" if name else f"U+{ord(char):04X}"


def _invisible(text: str) -> str | None:
    """
    Say which character of C{text}, if any, cannot be seen.
    """
    for char in text:
        if _is_ignorable(char) or char in _BLANK_GLYPHS:
            return (
                f"{describe_char(char)} is invisible, and a nick may not hold "
                "what nobody can see"
            )
    return None


def _not_a_letter(text: str) -> str | None:
    """
    Say which character of C{text}, if any, is a combining mark, or no
    character at all (unassigned, private use, a surrogate).
    """
    for char in text:
        category = unicodedata.category(char)
        if category in ("Mn", "Me", "Mc"):
            return (
                f"{describe_char(char)} is a combining mark, not a letter; "
                "a nick may hold only letters, digits, '_' and '-'"
            )
        if category in ("Cn", "Co", "Cs"):
            return f"{describe_char(char)} is not a character a nick may hold"
    return None


def nick_problem(nick: str, typed: str | None = None) -> str | None:
    """
    Say what is wrong with a (normalised) nick, if anything.

    Invisible and default-ignorable characters (Hangul fillers, zero-width
    spaces and joiners, other format characters) are named, and so are
    combining marks that NFKC could not fold into a letter (variation
    selectors among them): a nick that holds one would look the same as
    the nick without it.  Reserved names and look-alikes of nicks in use
    are the hub's business, not this function's; so are mixed scripts
    (L{script_problem}).

    @param nick: The nick to check.
    @param typed: The nick as it was typed, if it differs: its invisible
        characters are named as typed (NFKC turns U+3164 into U+1160).
    @return: A sentence for the user, or C{None} when the nick is well formed.
    """
    if not nick:
        return "a nick needs at least one character"
    problem = _invisible(typed) if typed is not None else None
    if problem is not None:
        return problem
    if len(nick) > NICK_MAX:
        return f"a nick has at most {NICK_MAX} characters"
    problem = _invisible(nick) or _not_a_letter(nick)
    if problem is not None:
        return problem
    if not all(_is_name_char(c) for c in nick):
        return "a nick may hold only letters, digits, '_' and '-'"
    return None


_IGNORED_SCRIPTS = frozenset({"COMMON", "INHERITED"})
_LOOK_ALIKE_SCRIPTS = frozenset({"CYRILLIC", "GREEK"})
_HAN_SETS = (
    frozenset({"HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"HAN", "HANGUL"}),
    frozenset({"HAN", "BOPOMOFO"}),
)


def script_problem(nick: str) -> str | None:
    """
    Say whether C{nick} mixes scripts in a way that lets it pass for
    another nick, as the Moderately Restrictive level of Unicode TS #39
    (section 5.2) has it.

    A nick may use one script, or Latin with one other script that is not
    Cyrillic or Greek, or the Han-based sets (Japanese, Korean, Chinese),
    with digits, C{_} and C{-} anywhere.  This catches the look-alikes the
    case-insensitive L{nick_key} cannot: a capital Cyrillic or Greek
    letter beside Latin ones (C{Tom} with a Cyrillic C{T}, U+0422),
    whose small form looks like no Latin letter.

    @param nick: A well-formed nick (see L{nick_problem}).
    @return: A sentence for the user, or C{None} when the mix is fine.
    """
    seen: dict[str, str] = {}
    for char in nick:
        script = _scripts.alias(char)
        if script not in _IGNORED_SCRIPTS:
            seen.setdefault(script, char)
    scripts = frozenset(seen)
    others = scripts - {"LATIN"}
    if len(scripts) <= 1 or any(others <= group for group in _HAN_SETS):
        return None
    if len(others) == 1 and not others & _LOOK_ALIKE_SCRIPTS and "LATIN" in scripts:
        return None
    if "LATIN" in scripts:
        # Name a Cyrillic or Greek letter if there is one: they are why.
        odd = min(
            (seen[s] for s in (others & _LOOK_ALIKE_SCRIPTS or others)), key=nick.index
        )
        first = "Latin"
    else:
        first_script = _scripts.alias(min(seen.values(), key=nick.index))
        first = first_script.title()
        odd = min((c for s, c in seen.items() if s != first_script), key=nick.index)
    second = str(_scripts.alias(odd)).title()
    return (
        f"it mixes {first} letters with {second} ones ({describe_char(odd)}), "
        "and a mix like that can pass for another nick"
    )


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
