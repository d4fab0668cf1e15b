# -*- test-case-name: tests.test_hub -*-
"""
The colours a nick can be shown in.

One palette serves every door: telnet shows the ANSI code (the first twelve
are the classic ones, the rest from the 256-colour set every terminal in
use has), the web page the CSS colour (and, by the colour's name, its
variant for the page's theme).  Users pick from it by name (C{/color
NAME}) and can never inject a colour of their own.
"""

import colorsys
import zlib
from collections.abc import Collection
from dataclasses import dataclass


@dataclass(frozen=True)
class Colour:
    """
    One colour of the palette.

    @ivar name: What users type after C{/color}.
    @ivar ansi: The SGR parameter for terminals (C{"31"} is red).
    @ivar css: The colour for browsers.
    """

    name: str
    ansi: str
    css: str


PALETTE: dict[str, Colour] = {
    c.name: c
    for c in (
        Colour("red", "31", "#c62828"),
        Colour("green", "32", "#2e7d32"),
        Colour("yellow", "33", "#a66d00"),
        Colour("blue", "34", "#1565c0"),
        Colour("magenta", "35", "#ad1457"),
        Colour("cyan", "36", "#00838f"),
        Colour("bright-red", "91", "#e53935"),
        Colour("bright-green", "92", "#43a047"),
        Colour("bright-yellow", "93", "#c79100"),
        Colour("bright-blue", "94", "#1e88e5"),
        Colour("bright-magenta", "95", "#8e24aa"),
        Colour("bright-cyan", "96", "#00897b"),
        Colour("orange", "38;5;208", "#b34700"),
        Colour("pink", "38;5;205", "#c2185b"),
        Colour("purple", "38;5;135", "#6a1b9a"),
        Colour("teal", "38;5;30", "#00695c"),
        Colour("lime", "38;5;112", "#4f7a00"),
        Colour("indigo", "38;5;63", "#3949ab"),
        Colour("brown", "38;5;130", "#8d4e1f"),
        Colour("olive", "38;5;142", "#6b6b00"),
        Colour("sky", "38;5;39", "#0b6fa8"),
        Colour("coral", "38;5;209", "#c2402a"),
        Colour("violet", "38;5;177", "#8e44ad"),
        Colour("gold", "38;5;178", "#8a6a00"),
    )
}


_COLOURS = tuple(PALETTE.values())


def hue(colour: Colour) -> float:
    """The hue of C{colour}'s CSS value, in degrees."""
    r, g, b = (int(colour.css[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return colorsys.rgb_to_hsv(r, g, b)[0] * 360


_HUES = {colour: hue(colour) for colour in _COLOURS}


def _gap(a: Colour, b: Colour) -> float:
    """The distance between two colours' hues, in degrees."""
    turn = abs(_HUES[a] - _HUES[b])
    return min(turn, 360 - turn)


_GAPS = [[_gap(a, b) for b in _COLOURS] for a in _COLOURS]
"""The hue distance between every two colours (by their place in the
palette), in degrees."""

_PLACE = {colour: place for place, colour in enumerate(_COLOURS)}


def colour_for(seed: str, taken: Collection[Colour] = ()) -> Colour:
    """
    Pick a palette colour from a seed, the same one every time for the
    same colours C{taken}.

    @param seed: Any text; the hub uses a user's first nick so their colour
        stays put when they change nick.
    @param taken: Colours to avoid while the palette has others (those of
        the people in the room a newcomer lands in): of the free ones, the
        one whose hue is farthest from theirs, so that colours look apart,
        not merely differ by name.
    @return: A colour from L{PALETTE}.
    """
    count = len(_COLOURS)
    start = zlib.crc32(seed.encode("utf-8")) % count
    if not taken:
        return _COLOURS[start]
    if len(taken) >= count:
        return _COLOURS[start]
    places = [_PLACE[colour] for colour in taken]
    best, farthest = start, -1.0
    for step in range(count):
        place = (start + step) % count
        if place in places:
            continue
        gaps = _GAPS[place]
        # The nearest colour taken; the first of the farthest wins, in the
        # seed's order, so that ties go by the seed.
        apart = min([gaps[other] for other in places])
        if apart > farthest:
            best, farthest = place, apart
    return _COLOURS[best]
