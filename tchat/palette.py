# -*- test-case-name: tests.test_hub -*-
"""
The colours a nick can be shown in.

One palette serves every door: telnet shows the ANSI code, the web page the
CSS colour. Users pick from it by name (C{/color NAME}) and can never inject
a colour of their own.
"""

import zlib
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
    )
}


def colour_for(seed: str) -> Colour:
    """
    Pick a palette colour from a seed, the same one every time.

    @param seed: Any text; the hub uses a user's first nick so their colour
        stays put when they change nick.
    @return: A colour from L{PALETTE}.
    """
    colours = list(PALETTE.values())
    return colours[zlib.crc32(seed.encode("utf-8")) % len(colours)]
