# -*- test-case-name: tests.integration.test_telnet_server -*-
"""
The telnet door end to end: a real C{twistd tchat} process on 127.0.0.1 and
real TCP clients (Twisted's, and the C{nc} binary) talking to it.

Each test starts its own server (about half a second), so that no test can
see another's users or rooms.
"""

import re
import shutil
from collections.abc import Callable
from typing import TypeVar

from twisted.trial.unittest import FailTest, TestCase

from tchat.palette import PALETTE
from tests.integration.server import (
    LOOPBACK,
    MOTD,
    async_test,
    chat,
    connect,
    make_directory,
    spawn,
    start_server,
    unstamp,
)
from tests.support import require

_F = TypeVar("_F", bound=Callable[..., object])

ESC = b"\x1b"
REPLACEMENT = "\ufffd".encode()
"""U+FFFD, the replacement character, as UTF-8."""

IAC, DO, DONT, WILL, WONT = b"\xff", b"\xfd", b"\xfe", b"\xfb", b"\xfc"
SB = b"\xfa"
TTYPE, ECHO = b"\x18", b"\x01"

UNKNOWN_COMMAND_HINT = (
    "; type /help for the list "
    "(start a message with // to send a line beginning with /)"
)


def _fullmatch(pattern: bytes, line: bytes) -> re.Match[bytes]:
    """
    Match a whole received line, failing the test with the line if it
    does not match.
    """
    match = re.fullmatch(pattern, line)
    if match is None:
        raise FailTest(f"{line!r} does not match {pattern!r}")
    return match


class ConnectTests(TestCase):
    """
    What a user sees on arrival.
    """

    @async_test
    async def test_welcome_and_guest_nick(self) -> None:
        """
        A new connection is greeted with the server's name, the MOTD from
        tap.ini (indented), a guest nick, a resume code and a join notice
        for #lobby (no replay in a room where nothing was said), and users
        already there are told a guest joined; each guest nick and resume
        code is distinct and /who lists both in joining order.
        """
        server = await start_server(self)
        first = await connect(self, server.port, "first", welcome=False)
        line = await first.next_line()
        self.assertEqual(line, b"*** Welcome to tchat")
        await first.expect_lines(*(f"  {text}" for text in MOTD))
        line = await first.next_line()
        match = _fullmatch(
            rb"\*\*\* You are (guest-[0-9a-f]{4})\. "
            rb"/nick NAME changes it; /help lists commands\.",
            line,
        )
        guest1 = match.group(1).decode()
        line = await first.next_line()
        match = _fullmatch(
            rb"\*\*\* Your resume code is ([A-Z2-7]{4}-[A-Z2-7]{4}): after a "
            rb"reconnect, /resume \1 brings back your nick, rooms and what you "
            rb"missed\.",
            line,
        )
        code1 = match.group(1).decode()
        await first.expect_lines("[HH:MM] *** you joined #lobby")

        second = await connect(self, server.port, "second")
        self.assertNotEqual(second.nick, guest1)
        self.assertNotEqual(second.code, code1)
        self.assertEqual(second.replay, [], "nothing was said: no replay")
        await first.expect_lines(f"[HH:MM] *** {second.nick} (telnet) joined #lobby")
        self.assertEqual(
            await first.sync(), b"", "nothing but the join notice reaches first"
        )
        first.say("/who")
        await first.expect_lines(
            f"*** #lobby (2): {guest1} (telnet), {second.nick} (telnet)"
        )
        first.say("/motd")
        await first.expect_lines(
            "*** Message of the day:", *(f"  {text}" for text in MOTD)
        )


class NickTests(TestCase):
    """
    Changing nicks, and the rules nicks follow.
    """

    @async_test
    async def test_nick_change_notices(self) -> None:
        """
        A guest taking a nick is told "you are now known as X", others in
        its room see "OLD (telnet) is now known as NEW", and the new nick is
        what others then see on messages.
        """
        server = await start_server(self)
        watcher = await connect(self, server.port, "watcher")
        guest = await connect(self, server.port, "guest")
        await watcher.sync()
        old = guest.nick
        guest.say("/nick Alicia")
        await guest.expect_lines("[HH:MM] *** you are now known as Alicia")
        await watcher.expect_lines(f"[HH:MM] *** {old} (telnet) is now known as Alicia")
        guest.say("it is me")
        await watcher.expect_lines("[HH:MM] <Alicia> it is me")
        guest.say("/nick Alicia")
        self.assertEqual(await guest.sync(), b"", "the same nick again is a no-op")
        self.assertEqual(await watcher.sync(), b"")

    @async_test
    async def test_nick_collision_is_case_insensitive(self) -> None:
        """
        A nick that differs from a taken one only in case (or is its
        fullwidth look-alike) is refused with "X is taken" and nobody else
        hears of it; the holder may change the case of their own nick.
        """
        _, (alice, bob) = await chat(self, "alice", "bob")
        bob.say("/nick ALICE")
        await bob.expect_lines("!!! ALICE is taken; pick another")
        bob.say("/nick \uff41\uff4c\uff49\uff43\uff45")  # fullwidth "alice"
        await bob.expect_lines("!!! alice is taken; pick another")
        self.assertEqual(await bob.sync(), b"")
        self.assertEqual(await alice.sync(), b"", "alice hears nothing of it")
        bob.say("/who")
        await bob.expect_lines("*** #lobby (2): alice (telnet), bob (telnet)")

        alice.say("/nick Alice")
        await alice.expect_lines("[HH:MM] *** you are now known as Alice")
        await bob.expect_lines("[HH:MM] *** alice (telnet) is now known as Alice")

    @async_test
    async def test_reserved_and_invalid_nicks(self) -> None:
        """
        Reserved nicks (admin, root, the server's own name, in any case) and
        malformed ones are refused with an error to the asker alone, and
        the asker keeps their nick.
        """
        _, (alice, bob) = await chat(self, "alice", "bob")
        alice.say("/nick admin")
        await alice.expect_lines("!!! admin is reserved; pick another")
        alice.say("/nick ROOT")
        await alice.expect_lines("!!! ROOT is reserved; pick another")
        alice.say("/nick TChat")
        await alice.expect_lines("!!! TChat is reserved; pick another")
        alice.say("/nick bad!nick")
        await alice.expect_lines(
            "!!! 'bad!nick' cannot be a nick: "
            "a nick may hold only letters, digits, '_' and '-'"
        )
        alice.say("/nick " + "n" * 25)
        await alice.expect_lines(
            f"!!! {'n' * 25!r} cannot be a nick: a nick has at most 24 characters"
        )
        alice.say("/nick")
        await alice.expect_lines("!!! usage: /nick NAME")
        self.assertEqual(await bob.sync(), b"", "bob hears nothing of it")
        bob.say("/who")
        await bob.expect_lines("*** #lobby (2): alice (telnet), bob (telnet)")


class RoomTests(TestCase):
    """
    Joining, leaving and listing rooms; topics.
    """

    @async_test
    async def test_messages_in_another_room_name_the_room(self) -> None:
        """
        After /join #dev a user talks in #dev; lines from #lobby (which they
        are still in) are shown with "#lobby " before the nick, lines from
        the current room without it, and people outside #dev never see what
        is said there.
        """
        _, (alice, bob, carol) = await chat(self, "alice", "bob", "carol")
        alice.say("/join #dev")
        await alice.expect_lines("[HH:MM] *** you joined #dev")
        bob.say("/join dev")
        await bob.expect_lines("[HH:MM] *** you joined #dev")
        await alice.expect_lines("[HH:MM] *** bob (telnet) joined #dev")
        self.assertEqual(await carol.sync(), b"", "carol is not told about #dev")

        carol.say("lobby talk")
        await alice.expect_lines("[HH:MM] #lobby <carol> lobby talk")
        await bob.expect_lines("[HH:MM] #lobby <carol> lobby talk")
        alice.say("dev talk")
        await bob.expect_lines("[HH:MM] <alice> dev talk")
        self.assertEqual(await carol.sync(), b"", "#dev talk stays in #dev")

        alice.say("/join #LOBBY")
        await alice.expect_lines("*** now talking in #lobby")
        carol.say("back here")
        await alice.expect_lines("[HH:MM] <carol> back here")
        await bob.expect_lines("[HH:MM] #lobby <carol> back here")

    @async_test
    async def test_part_rooms_who_and_topic(self) -> None:
        """
        /who, /topic (show, set, and the notice everyone in the room sees),
        /rooms with member counts and topics, /part of the current and of a
        named room, the removal of an emptied room where nothing was said
        (its topic with it, as on IRC), and talking in no room.
        """
        _, (alice, bob) = await chat(self, "alice", "bob")
        for client in (alice, bob):
            client.say("/join #dev")
            await client.expect_lines("[HH:MM] *** you joined #dev")
        await alice.expect_lines("[HH:MM] *** bob (telnet) joined #dev")

        alice.say("/who")
        await alice.expect_lines("*** #dev (2): alice (telnet), bob (telnet)")
        alice.say("/topic")
        await alice.expect_lines("*** #dev has no topic")
        alice.say("/topic Design talk")
        await alice.expect_lines("[HH:MM] *** alice set the topic of #dev: Design talk")
        await bob.expect_lines("[HH:MM] *** alice set the topic of #dev: Design talk")
        bob.say("/topic")
        await bob.expect_lines("*** Topic of #dev (set by alice): Design talk")
        bob.say("/rooms")
        await bob.expect_lines(
            "*** Rooms:", "  #dev  2 users  Design talk", "  #lobby  2 users"
        )

        alice.say("/part")
        await alice.expect_lines(
            "[HH:MM] *** you left #dev", "*** now talking in #lobby"
        )
        await bob.expect_lines("[HH:MM] *** alice (telnet) left #dev")
        bob.say("/part #dev")
        await bob.expect_lines("[HH:MM] *** you left #dev", "*** now talking in #lobby")
        bob.say("/rooms")
        # Nothing was said in #dev: emptied, it is gone, topic and all.
        await bob.expect_lines("*** Rooms:", "  #lobby  2 users")
        bob.say("/part #dev")
        await bob.expect_lines("!!! there is no room #dev")
        bob.say("/join #scratch")
        await bob.expect_lines("[HH:MM] *** you joined #scratch")
        bob.say("/part")
        await bob.expect_lines(
            "[HH:MM] *** you left #scratch", "*** now talking in #lobby"
        )
        bob.say("/rooms")
        await bob.expect_lines("*** Rooms:", "  #lobby  2 users")
        bob.say("/part #scratch")
        await bob.expect_lines("!!! there is no room #scratch")
        bob.say("/join #bad.name")
        await bob.expect_lines(
            "!!! '#bad.name': a room name may hold only letters, digits, "
            "'_' and '-' after '#'"
        )

        alice.say("/part #lobby")
        await alice.expect_lines(
            "[HH:MM] *** you left #lobby", "*** you are in no room now; /join #room"
        )
        await bob.expect_lines("[HH:MM] *** alice (telnet) left #lobby")
        alice.say("anyone?")
        await alice.expect_lines("!!! you are in no room; /join #room first")
        alice.say("/who")
        await alice.expect_lines("!!! you are in no room; name one")
        self.assertEqual(await bob.sync(), b"", "a line said in no room goes nowhere")
        bob.say("/who")
        await bob.expect_lines("*** #lobby (1): bob (telnet)")


class MessageTests(TestCase):
    """
    Room messages, private messages, actions, and how lines are parsed.
    """

    @async_test
    async def test_room_message_is_not_echoed(self) -> None:
        """
        A line is shown to the others in the room as "[HH:MM] <nick> text"
        and never echoed back to its sender.
        """
        _, (alice, bob, carol) = await chat(self, "alice", "bob", "carol")
        alice.say("hello, room")
        await bob.expect_lines("[HH:MM] <alice> hello, room")
        await carol.expect_lines("[HH:MM] <alice> hello, room")
        self.assertEqual(await alice.sync(), b"", "no echo to the sender")

    @async_test
    async def test_private_message(self) -> None:
        """
        /msg shows "-> *bob* text" to the sender and "*alice* text" to the
        recipient alone (the nick matched case-insensitively); a missing
        nick and a missing text are errors.
        """
        _, (alice, bob, carol) = await chat(self, "alice", "bob", "carol")
        alice.say("/msg BOB psst, a secret")
        await alice.expect_lines("[HH:MM] -> *bob* psst, a secret")
        await bob.expect_lines("[HH:MM] *alice* psst, a secret")
        self.assertEqual(await carol.sync(), b"", "carol does not see it")
        alice.say("/msg nobody hello")
        await alice.expect_lines("!!! nobody here is called nobody")
        alice.say("/msg bob")
        await alice.expect_lines("!!! usage: /msg NICK text")
        self.assertEqual(await bob.sync(), b"")

    @async_test
    async def test_me_action(self) -> None:
        """
        /me is shown to others as "* alice waves", not to the sender.
        """
        _, (alice, bob) = await chat(self, "alice", "bob")
        alice.say("/me waves")
        await bob.expect_lines("[HH:MM] * alice waves")
        self.assertEqual(await alice.sync(), b"")
        alice.say("/me")
        await alice.expect_lines("!!! usage: /me action")

    @async_test
    async def test_double_slash_and_unknown_command(self) -> None:
        """
        A line starting with // is sent as text starting with one /, and an
        unknown command is answered with an error to its sender alone.
        """
        _, (alice, bob) = await chat(self, "alice", "bob")
        alice.say("//etc/motd is a file")
        await bob.expect_lines("[HH:MM] <alice> /etc/motd is a file")
        alice.say("/frobnicate now")
        await alice.expect_lines(
            f"!!! unknown command /frobnicate{UNKNOWN_COMMAND_HINT}"
        )
        self.assertEqual(await bob.sync(), b"", "bob sees nothing of /frobnicate")

    @async_test
    async def test_colours(self) -> None:
        """
        A viewer with colours on sees the sender's nick wrapped in its ANSI
        colour (the one chosen with /color red) in messages, actions and
        private messages; a viewer who typed /color off sees no escape byte.
        """
        server = await start_server(self)
        alice = await connect(self, server.port, "alice", colours=True)
        await alice.set_nick("alice")
        bob = await connect(self, server.port, "bob", colours=True)
        await bob.set_nick("bob")
        carol = await connect(self, server.port, "carol")
        await carol.set_nick("carol")
        for client in (alice, bob, carol):
            await client.sync()

        alice.say("/color red")
        await alice.expect_lines("*** your colour is now red")
        alice.say("/color")
        await alice.expect_lines(
            "*** your colour is red; colours are on; choose from: " + ", ".join(PALETTE)
        )
        alice.say("/color mauve")
        line = await alice.next_line()
        self.assertTrue(
            line.startswith(b"!!! no colour called 'mauve'; choose from: red, "), line
        )

        red_alice = b"\x1b[31malice\x1b[0m"
        alice.say("in red")
        await bob.expect_lines(b"[HH:MM] <" + red_alice + b"> in red")
        await carol.expect_lines("[HH:MM] <alice> in red")
        alice.say("/me blushes")
        await bob.expect_lines(b"[HH:MM] * " + red_alice + b" blushes")
        await carol.expect_lines("[HH:MM] * alice blushes")
        alice.say("/msg bob psst")
        await bob.expect_lines(b"[HH:MM] *" + red_alice + b"* psst")
        await alice.expect_lines("[HH:MM] -> *bob* psst")

        carol.say("plain carol")
        line = await bob.next_line()
        match = _fullmatch(
            rb"(\[\d\d:\d\d\]) <\x1b\[(3[1-6]|9[1-6]|38;5;\d+)mcarol"
            rb"\x1b\[0m> plain carol",
            line,
        )
        self.assertEqual(unstamp(match.group(1)), b"[HH:MM]")

        bob.say("/color off")
        await bob.expect_lines("*** colours are off")
        alice.say("red no more")
        await bob.expect_lines("[HH:MM] <alice> red no more")
        self.assertNotIn(ESC, bytes(carol.received.data), "carol never gets ESC")


class LeavingTests(TestCase):
    """
    /quit and lost connections.
    """

    @async_test
    async def test_quit_with_reason(self) -> None:
        """
        /quit REASON: the quitter is told goodbye and the server closes the
        connection; someone sharing two rooms with them is told
        "alice (telnet) quit (REASON)" once, and alice is gone from /who.
        """
        _, (alice, bob) = await chat(self, "alice", "bob")
        for client in (alice, bob):
            client.say("/join #dev")
            await client.expect_lines("[HH:MM] *** you joined #dev")
        await alice.expect_lines("[HH:MM] *** bob (telnet) joined #dev")

        alice.say("/quit gone fishing")
        await alice.expect_lines("*** Goodbye (gone fishing)")
        await alice.expect_closed()
        self.assertEqual(alice.received.rest(), b"", "nothing after the goodbye")
        await bob.expect_lines("[HH:MM] *** alice (telnet) quit (gone fishing)")
        self.assertEqual(await bob.sync(), b"", "the quit notice comes once")
        bob.say("/who #dev")
        await bob.expect_lines("*** #dev (1): bob (telnet)")

    @async_test
    async def test_quit_without_reason(self) -> None:
        """
        /quit alone says "Goodbye (bye)" to the quitter and "alice (telnet)
        quit" without a reason to the others.
        """
        _, (alice, bob) = await chat(self, "alice", "bob")
        alice.say("/quit")
        await alice.expect_lines("*** Goodbye (bye)")
        await alice.expect_closed()
        await bob.expect_lines("[HH:MM] *** alice (telnet) quit")

    @async_test
    async def test_client_closes(self) -> None:
        """
        A client that closes its connection without /quit is announced as
        "alice (telnet) quit (connection closed)".
        """
        _, (alice, bob) = await chat(self, "alice", "bob")
        await alice.close()
        await bob.expect_lines("[HH:MM] *** alice (telnet) quit (connection closed)")
        self.assertEqual(await bob.sync(), b"")

    @async_test
    async def test_goodbye_is_the_last_line(self) -> None:
        """
        The goodbye is the last thing a quitter is sent, even when more lines
        followed /quit in the same packet; those lines reach nobody.
        """
        _, (alice, bob) = await chat(self, "alice", "bob")
        alice.send(b"/quit bye\r\n/bogus\r\nafter quit\r\n")
        await alice.expect_lines("*** Goodbye (bye)")
        await alice.expect_closed()
        await bob.expect_lines("[HH:MM] *** alice (telnet) quit (bye)")
        self.assertEqual(await bob.sync(), b"")
        self.assertEqual(alice.received.rest(), b"", "nothing after the goodbye")

    @async_test
    async def test_abrupt_disconnect(self) -> None:
        """
        A connection that drops without /quit is announced as "alice
        (telnet) lost connection", and the nick is free again.
        """
        server, (alice, bob) = await chat(self, "alice", "bob")
        alice.abort()
        await bob.expect_lines("[HH:MM] *** alice (telnet) lost connection")
        bob.say("/who")
        await bob.expect_lines("*** #lobby (1): bob (telnet)")
        again = await connect(self, server.port, "alice again")
        await again.set_nick("alice")


class TelnetNegotiationTests(TestCase):
    """
    Telnet IAC sequences from clients: refused, and never shown as text.
    """

    @async_test
    async def test_options_are_refused(self) -> None:
        """
        IAC DO TTYPE is answered with exactly IAC WONT TTYPE, and IAC WILL
        ECHO with exactly IAC DONT ECHO; nothing else is sent back.
        """
        _, (alice,) = await chat(self, "alice")
        alice.send(IAC + DO + TTYPE)
        self.assertEqual(await alice.sync(), IAC + WONT + TTYPE)
        alice.send(IAC + WILL + ECHO)
        self.assertEqual(await alice.sync(), IAC + DONT + ECHO)

    @async_test
    async def test_negotiation_inside_a_line_is_not_text(self) -> None:
        """
        Negotiation bytes in the middle of a line are refused and taken out:
        the others see the line's text alone, and an escaped IAC IAC data
        byte (not UTF-8) arrives as U+FFFD.
        """
        _, (alice, bob) = await chat(self, "alice", "bob")
        alice.send(b"hel" + IAC + DO + TTYPE + b"lo" + IAC + WILL + ECHO + b"!\r\n")
        self.assertEqual(await alice.sync(), IAC + WONT + TTYPE + IAC + DONT + ECHO)
        await bob.expect_lines("[HH:MM] <alice> hello!")
        alice.send(b"a" + IAC + IAC + b"b\r\n")
        await bob.expect_lines(b"[HH:MM] <alice> a" + REPLACEMENT + b"b")
        self.assertEqual(await bob.sync(), b"")
        self.assertNotIn(IAC, bytes(bob.received.data))

    @async_test
    async def test_endless_subnegotiation_is_dropped(self) -> None:
        """
        A subnegotiation that never ends (IAC SB and 5000 bytes) gets the
        connection dropped by the server, and the others see "lost
        connection", as for any connection the server drops.
        """
        _, (alice, bob) = await chat(self, "alice", "bob")
        alice.send(IAC + SB + TTYPE + b"z" * 5000)
        await alice.expect_closed()
        await bob.expect_lines("[HH:MM] *** alice (telnet) lost connection")

    @async_test
    async def test_invalid_command_closes(self) -> None:
        """
        IAC followed by a byte that is no telnet command gets one error line
        and the connection closed; the others see "lost connection".
        """
        _, (alice, bob) = await chat(self, "alice", "bob")
        alice.send(IAC + b"A")
        await alice.expect_lines("!!! invalid telnet command sequence; closing")
        await alice.expect_closed()
        await bob.expect_lines("[HH:MM] *** alice (telnet) lost connection")


LONG_LINE_ERROR = "!!! line too long (over 4096 bytes); it was dropped"


class InputTests(TestCase):
    """
    Hostile or unusual input: long lines, bad UTF-8, escapes, line ends.
    """

    @async_test
    async def test_long_line(self) -> None:
        """
        A 10 KB line, then its CR LF, then a normal line: the sender is told
        once that the line was dropped, the next line reaches the others
        intact, and no part of the long line reaches anyone.
        """
        _, (alice, bob) = await chat(self, "alice", "bob")
        alice.send(b"x" * 10240)
        await alice.expect_lines(LONG_LINE_ERROR)
        alice.send(b"\r\n")
        self.assertEqual(await alice.sync(), b"", "the error comes once")
        alice.say("after the long line")
        await bob.expect_lines("[HH:MM] <alice> after the long line")
        self.assertEqual(await bob.sync(), b"")
        self.assertEqual(await alice.sync(), b"")
        for client in (alice, bob):
            self.assertNotIn(b"xxxxxxxx", bytes(client.received.data))

    @async_test
    async def test_long_line_pasted_with_the_next(self) -> None:
        """
        A 10 KB line and a normal line sent together (a paste, one read on
        the server): the sender is told once that the long line was dropped,
        and the normal line reaches the others at once, without the sender
        having to type anything more.
        """
        _, (alice, bob) = await chat(self, "alice", "bob")
        alice.send(b"y" * 10240 + b"\r\nafter the pasted line\r\n")
        await alice.expect_lines(LONG_LINE_ERROR)
        await bob.expect_lines("[HH:MM] <alice> after the pasted line")
        self.assertEqual(await alice.sync(), b"", "the error comes once")
        self.assertEqual(await bob.sync(), b"")
        for client in (alice, bob):
            self.assertNotIn(b"yyyyyyyy", bytes(client.received.data))

    @async_test
    async def test_a_line_at_the_limit(self) -> None:
        """
        A line of exactly 4096 bytes is accepted and delivered whole; one of
        4097 is refused.
        """
        _, (alice, bob) = await chat(self, "alice", "bob")
        alice.say("a" * 4096)
        await bob.expect_lines("[HH:MM] <alice> " + "a" * 4096)
        alice.say("b" * 4097)
        await alice.expect_lines(LONG_LINE_ERROR)
        self.assertEqual(await bob.sync(), b"")

    @async_test
    async def test_invalid_utf8(self) -> None:
        """
        Invalid UTF-8 is shown to others as text with U+FFFD in its place,
        sent as valid UTF-8.
        """
        _, (alice, bob) = await chat(self, "alice", "bob")
        alice.send(b"bad \xc3\x28 utf\r\n")
        await bob.expect_lines(b"[HH:MM] <alice> bad " + REPLACEMENT + b"( utf")
        alice.send("caf\u00e9 \U0001f600\r\n".encode())
        await bob.expect_lines("[HH:MM] <alice> caf\u00e9 \U0001f600")
        bytes(bob.received.data).decode("utf-8")  # all of it is valid UTF-8

    @async_test
    async def test_terminal_escapes_are_removed(self) -> None:
        """
        Escape sequences (CSI, OSC with its payload, 8-bit CSI), other
        control characters and bidi overrides are removed from what others
        see: no ESC byte ever reaches them.
        """
        _, (alice, bob) = await chat(self, "alice", "bob")
        alice.send(b"hello \x1b[2J\x1b]0;pwned\x07there\r\n")
        await bob.expect_lines("[HH:MM] <alice> hello there")
        alice.send("a\u009b2Jb \x07bell\x08 \u202eevil\r\n".encode())
        await bob.expect_lines("[HH:MM] <alice> ab bell evil")
        alice.send(b"/me \x1b[31mpaints\r\n")
        await bob.expect_lines("[HH:MM] * alice paints")
        alice.send(b"/topic \x1b]0;owned\x07tidy\r\n")
        await bob.expect_lines("[HH:MM] *** alice set the topic of #lobby: tidy")
        alice.send(b"/quit \x1b[2Jbye\r\n")
        await bob.expect_lines("[HH:MM] *** alice (telnet) quit (bye)")
        self.assertNotIn(ESC, bytes(bob.received.data))

    @async_test
    async def test_line_ends(self) -> None:
        """
        Lines may end in CR LF, LF, CR NUL, or a CR followed by more input,
        mixed in one packet; empty lines are ignored.
        """
        _, (alice, bob) = await chat(self, "alice", "bob")
        alice.send(b"crlf line\r\n")
        await bob.expect_lines("[HH:MM] <alice> crlf line")
        alice.send(b"lf line\n")
        await bob.expect_lines("[HH:MM] <alice> lf line")
        alice.send(b"cr nul line\r\x00")
        await bob.expect_lines("[HH:MM] <alice> cr nul line")
        alice.send(b"one\rtwo\nthree\r\n\r\n\n\r\x00four\r\n")
        await bob.expect_lines(
            "[HH:MM] <alice> one",
            "[HH:MM] <alice> two",
            "[HH:MM] <alice> three",
            "[HH:MM] <alice> four",
        )
        self.assertEqual(await bob.sync(), b"")

    @async_test
    async def test_bare_cr_ends_a_line(self) -> None:
        """
        A line ended by a bare CR (socat's cr option, old Mac clients) is
        delivered when it arrives, not when the client next types.
        """
        _, (alice, bob) = await chat(self, "alice", "bob")
        alice.send(b"cr line\r")
        await bob.expect_lines("[HH:MM] <alice> cr line", timeout=2)


class NetcatTests(TestCase):
    """
    The real C{nc} binary as a client.
    """

    @async_test
    async def test_nc_client(self) -> None:
        """
        Lines piped through nc (LF line ends) reach a TCP client: nc's nick
        change and messages are seen by alice, alice's reply reaches nc,
        and nc's /quit is announced; nc's whole transcript is as expected.
        """
        nc = shutil.which("nc")
        require(nc is not None, "nc is not installed: apt-get install netcat-openbsd")
        assert nc is not None
        server, (alice,) = await chat(self, "alice")
        process = spawn(
            self,
            "nc",
            nc,
            [nc, "-q", "1", LOOPBACK, str(server.port)],
            path=make_directory(self),
        )
        assert process.transport is not None
        process.transport.write(
            b"/color off\n/nick netcat\nhello from nc\n/me waves from a pipe\n"
        )
        line = await alice.next_line()
        match = _fullmatch(
            rb"\[\d\d:\d\d\] \*\*\* (guest-[0-9a-f]{4}) \(telnet\) joined #lobby",
            line,
        )
        guest = match.group(1).decode()
        await alice.expect_lines(
            f"[HH:MM] *** {guest} (telnet) is now known as netcat",
            "[HH:MM] <netcat> hello from nc",
            "[HH:MM] * netcat waves from a pipe",
        )
        alice.say("hello netcat")
        await process.stdout.wait_for(b"hello netcat\r\n")
        process.transport.write(b"/quit piped out\n")
        process.transport.closeStdin()
        await alice.expect_lines("[HH:MM] *** netcat (telnet) quit (piped out)")
        self.assertTrue(await process.wait_ended(10), "nc exits")
        self.assertEqual(process.exit_code, 0, process.stderr.describe())

        found = re.search(
            rb"resume code is ([A-Z2-7]{4}-[A-Z2-7]{4})", process.stdout.data
        )
        assert found is not None, process.stdout.describe()
        code = found.group(1).decode()
        transcript = [
            unstamp(line) for line in bytes(process.stdout.data).split(b"\r\n")
        ]
        self.assertEqual(
            transcript,
            [
                b"*** Welcome to tchat",
                *(f"  {text}".encode() for text in MOTD),
                f"*** You are {guest}. /nick NAME changes it; "
                "/help lists commands.".encode(),
                f"*** Your resume code is {code}: after a reconnect, /resume "
                f"{code} brings back your nick, rooms and what you missed.".encode(),
                b"[HH:MM] *** you joined #lobby",
                b"*** colours are off",
                b"[HH:MM] *** you are now known as netcat",
                b"[HH:MM] <alice> hello netcat",
                b"*** Goodbye (piped out)",
                b"",
            ],
        )
