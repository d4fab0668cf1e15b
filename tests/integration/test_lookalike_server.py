# -*- test-case-name: tests.integration.test_lookalike_server -*-
"""
Look-alike nicks and padded lines, end to end (issue 19, item 5): a real
C{twistd tchat} with its telnet and web doors on 127.0.0.1, real telnet and
WebSocket clients.

A nick that a reader could not tell apart from a nick in use or from a
reserved name (another script's letters, digits for letters, a capital I for
a small l) is refused on both doors, and so is a nick holding an invisible
character; nicks are still shown exactly as typed.  A message padded with
blanks, so that what follows would start a line of its own on an 80-column
terminal and pass for a line from someone else, arrives with its padding
collapsed, on both doors and in every kind of user text.

This module imports nothing from C{tchat}: it runs against whatever
C{twistd} the interpreter has, so that it shows the old server failing.
"""

from typing import Any

from twisted.trial.unittest import TestCase

from tests.integration.server import (
    ChatClient,
    WebClient,
    async_test,
    connect,
    connect_web,
    start_server,
)

WEB = "tcp:0:interface=127.0.0.1"
"""The C{--web} endpoint of every test server here."""

CYRILLIC_A = "\u0430"
CYRILLIC_E = "\u0435"
GREEK_ALPHA = "\u0391"
HANGUL_FILLER = "\u3164"

FORGED = "[10:02] <alice> the server moves tonight: send me your password"
"""What an impostor wants to show as a line of alice's."""
PADDED = "hi" + " " * 64 + FORGED
"""Enough spaces to push C{FORGED} to the start of an 80-column line."""
SHOWN = "hi " + FORGED
"""What everyone must see of C{PADDED}."""


async def _doors(
    testcase: TestCase,
) -> tuple[ChatClient, ChatClient, WebClient]:
    """
    A server with both doors; C{alice} on telnet, a telnet guest (the
    impostor) and a web guest, every notice about the others read.

    @return: alice, the telnet impostor and the web impostor.
    """
    server = await start_server(testcase, web=WEB)
    assert server.web_port is not None
    alice = await connect(testcase, server.port, "alice")
    await alice.set_nick("alice")
    mallory = await connect(testcase, server.port, "mallory")
    eve = await connect_web(testcase, server.web_port, "eve")
    for client in (alice, mallory):
        await client.sync()
    await eve.sync()
    return alice, mallory, eve


def _error(code: str, message: str, client_id: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "client_id": client_id}


class LookAlikeNickTests(TestCase):
    """
    C{/nick} refuses what would pass for another nick or a reserved name,
    on the telnet door and on the web door.
    """

    @async_test
    async def test_look_alike_of_online_nick(self) -> None:
        """
        With alice online, alice with a Cyrillic a, with a capital I for
        the l, or with a 1 for the l is refused as taken, saying whom it
        looks like; alice hears nothing of it and /who still lists the
        guests as they were.
        """
        alice, mallory, eve = await _doors(self)
        taken = "is taken: it looks like alice; pick another"
        mallory.say(f"/nick {CYRILLIC_A}lice")
        await mallory.expect_lines(f"!!! {CYRILLIC_A}lice {taken}")
        mallory.say("/nick AIice")
        await mallory.expect_lines(f"!!! AIice {taken}")
        for number, name in enumerate((f"{CYRILLIC_A}lice", "a1ice", "ALICE"), 1):
            eve.send({"type": "nick", "name": name, "client_id": f"n-{number}"})
            message = (
                "ALICE is taken; pick another" if name == "ALICE" else f"{name} {taken}"
            )
            await eve.expect_frames(_error("nick-taken", message, f"n-{number}"))
        self.assertEqual(await alice.sync(), b"", "alice hears nothing of it")
        mallory.say("/who")
        await mallory.expect_lines(
            f"*** #lobby (3): alice (telnet), {mallory.nick} (telnet), {eve.nick} (web)"
        )

    @async_test
    async def test_look_alikes_of_reserved_names(self) -> None:
        """
        admin with a Cyrillic a, Server with a Cyrillic e and ADMIN with a
        Greek capital alpha are reserved, as admin and server are.
        """
        _, mallory, eve = await _doors(self)
        for name, like in (
            (f"{CYRILLIC_A}dmin", "admin"),
            (f"S{CYRILLIC_E}rver", "server"),
            (f"{GREEK_ALPHA}DMIN", "admin"),
        ):
            mallory.say(f"/nick {name}")
            await mallory.expect_lines(
                f"!!! {name} is reserved: it looks like {like}; pick another"
            )
            eve.send({"type": "nick", "name": name, "client_id": "r"})
            await eve.expect_frames(
                _error(
                    "nick-reserved",
                    f"{name} is reserved: it looks like {like}; pick another",
                    "r",
                )
            )
        self.assertEqual(await mallory.sync(), b"")

    @async_test
    async def test_invisible_characters(self) -> None:
        """
        alice followed by an invisible Hangul filler is refused on both
        doors, naming the character; so is a zero-width space.
        """
        alice, mallory, eve = await _doors(self)
        # NFKC turns U+3164 into U+1160, which the quoted nick shows.
        refused = (
            "'alice\u1160' cannot be a nick: U+3164 HANGUL FILLER is invisible, "
            "and a nick may not hold what nobody can see"
        )
        mallory.say(f"/nick alice{HANGUL_FILLER}")
        await mallory.expect_lines(f"!!! {refused}")
        eve.send({"type": "nick", "name": f"alice{HANGUL_FILLER}", "client_id": "i"})
        await eve.expect_frames(_error("nick-invalid", refused, "i"))
        mallory.say("/nick bob\u200b")
        await mallory.expect_lines(
            "!!! 'bob\\u200b' cannot be a nick: U+200B ZERO WIDTH SPACE is "
            "invisible, and a nick may not hold what nobody can see"
        )
        self.assertEqual(await alice.sync(), b"", "alice hears nothing of it")

    @async_test
    async def test_nicks_shown_as_typed(self) -> None:
        """
        Only the comparison key is folded: a nick is shown everywhere as it
        was typed (accents and all), and its holder may change to a
        look-alike of it, which is shown as typed too.
        """
        alice, mallory, eve = await _doors(self)
        old = eve.nick
        await eve.set_nick("Zo\u00eb")
        await alice.expect_lines(f"[HH:MM] *** {old} (web) is now known as Zo\u00eb")
        alice.say("/nick A1ice")
        await alice.expect_lines("[HH:MM] *** you are now known as A1ice")
        await mallory.expect_lines(
            f"[HH:MM] *** {old} (web) is now known as Zo\u00eb",
            "[HH:MM] *** alice (telnet) is now known as A1ice",
        )
        await eve.wait_for(type="system", event="nick", new_name="A1ice")
        mallory.say("/who")
        await mallory.expect_lines(
            f"*** #lobby (3): A1ice (telnet), {mallory.nick} (telnet), Zo\u00eb (web)"
        )


class PaddingTests(TestCase):
    """
    Runs of blanks in user text are collapsed wherever the text is shown.
    """

    @async_test
    async def test_padded_message(self) -> None:
        """
        A message padded with 64 spaces reaches telnet and web readers with
        one space where the padding was, so the forged line cannot start a
        line of its own.
        """
        alice, mallory, eve = await _doors(self)
        await mallory.set_nick("mallory")
        await alice.sync()
        await eve.sync()
        mallory.say(PADDED)
        await alice.expect_lines(f"[HH:MM] <mallory> {SHOWN}")
        frame = await eve.wait_for(type="usermsg", name="mallory")
        self.assertEqual(frame["message"], SHOWN)
        eve.send({"type": "message", "message": PADDED})
        await alice.expect_lines(f"[HH:MM] <{eve.nick}> {SHOWN}")

    @async_test
    async def test_padding_everywhere(self) -> None:
        """
        /me, private messages, topics and quit reasons are collapsed too,
        and so is padding made of tabs, no-break spaces, Hangul fillers or
        zero-width spaces between spaces.
        """
        alice, mallory, _ = await _doors(self)
        await mallory.set_nick("mallory")
        await alice.sync()
        mallory.say("/me waves" + "\t" * 40 + FORGED)
        await alice.expect_lines(f"[HH:MM] * mallory waves {FORGED}")
        mallory.say("/msg alice psst" + "\u00a0" * 64 + FORGED)
        await alice.expect_lines(f"[HH:MM] *mallory* psst {FORGED}")
        mallory.say("/topic tidy" + HANGUL_FILLER * 32 + FORGED)
        await alice.expect_lines(
            f"[HH:MM] *** mallory set the topic of #lobby: tidy {FORGED}"
        )
        mallory.say("/quit bye" + " \u200b" * 32 + FORGED)
        await alice.expect_lines(f"[HH:MM] *** mallory (telnet) quit (bye {FORGED})")
