# -*- test-case-name: tests.integration.test_continuity_server -*-
"""
Reconnects nobody notices, against a real C{twistd -n tchat} with the
shipped reconnect grace: real telnet and WebSocket clients drop their
connections (RST) and come back, and a telnet user who watches the room
sees nothing of it.
"""

import re
import time
from typing import Any

from twisted.trial.unittest import TestCase

from tests.integration.server import (
    CHEAP_ACCOUNTS,
    GRACEFUL_TAP_INI,
    MOTD,
    WELCOME,
    ChatClient,
    TchatServer,
    WebClient,
    async_test,
    connect,
    connect_web,
    start_server,
)

WEB = "tcp:0:interface=127.0.0.1"


async def telnet_person(
    testcase: TestCase, server: TchatServer, nick: str
) -> ChatClient:
    """
    A telnet user called C{nick}, colours off, announced to the room (their
    first line that is not a nick settles them).
    """
    client = await connect(testcase, server.port, nick, welcome=False)
    match = await client.wait_for(WELCOME)
    client.code = match.group(3).decode()
    client.say(f"/nick {nick}")
    client.say("/color off")
    await client.wait_for(b"*** colours are off\r\n")
    client.nick = nick
    return client


async def web_person(
    testcase: TestCase, server: TchatServer, label: str, **hello: Any
) -> WebClient:
    """A page's connection (C{label} in failures): its welcome, then its
    C{hello}."""
    assert server.web_port is not None
    client = await connect_web(testcase, server.web_port, label, welcome=False)
    welcome = await client.wait_for(type="system", event="welcome")
    client.code = welcome["resume_code"]
    client.nick = welcome["name"]
    client.send({"type": "hello", **hello})
    return client


def quiet(seen: bytes) -> list[bytes]:
    """The presence lines among what a watcher was sent."""
    return re.findall(
        rb"[^\r\n]*(?:joined|left|quit|lost connection|known as)[^\r\n]*", seen
    )


class TelnetContinuationTests(TestCase):
    """A telnet user who drops and comes back with C{/resume CODE}."""

    @async_test
    async def test_reconnect_is_invisible(self) -> None:
        """
        carol's connection is reset; bob says a line; carol's new
        connection sends C{/resume CODE} first: she is carol again, gets
        the line she missed and not the MOTD, and bob saw nothing at all,
        even after the grace period.
        """
        server = await start_server(self, GRACEFUL_TAP_INI)
        bob = await telnet_person(self, server, "bob")
        carol = await telnet_person(self, server, "carol")
        await bob.wait_for(b"*** carol (telnet) joined #lobby\r\n")
        start = bob.received.cursor
        carol.abort()
        bob.say("are you there?")
        again = await connect(self, server.port, "carol again", welcome=False)
        await again.wait_for(WELCOME)
        again.say(f"/resume {carol.code}")
        await again.wait_for(
            b"*** Welcome back, carol: you are in #lobby. "
            b"Here is what you missed (1):\r\n"
        )
        await again.wait_for(re.compile(rb"<[^>]*bob[^>]*> are you there\?\r\n"))
        again.say("/color off")
        again.say("I am back")
        await bob.wait_for(b"<carol> I am back\r\n")
        self.assertEqual(quiet(bytes(bob.received.data[start:])), [])
        self.assertNotIn(MOTD[0].encode(), bytes(again.received.data))
        self.assertEqual(await bob.sync(), b"")
        self.assertTrue(
            bytes(bob.received.data).endswith(
                b"*** #lobby (2): bob (telnet), carol (telnet)\r\n"
            )
        )


class WebContinuationTests(TestCase):
    """A page whose connection drops, or that is opened again."""

    @async_test
    async def test_page_reload_is_invisible(self) -> None:
        """
        anna's WebSocket is reset; bob (telnet) says a line and messages
        her; her next connection's hello carries her code: a C{continued}
        frame (her nick, colour, rooms), then exactly the two things she
        missed, and no MOTD; bob sees nothing.
        """
        server = await start_server(self, GRACEFUL_TAP_INI, web=WEB)
        bob = await telnet_person(self, server, "bob")
        anna = await web_person(self, server, "anna", name="anna")
        joined = await anna.wait_for(type="system", event="join")
        await bob.wait_for(b"*** anna (web) joined #lobby\r\n")
        start = bob.received.cursor
        anna.abort()
        bob.say("hello anna")
        bob.say("/msg anna are you there?")
        await bob.wait_for(b"-> *anna* are you there?\r\n")
        again = await web_person(self, server, "anna again", code=anna.code)
        continued = await again.wait_for(type="continued")
        self.assertEqual(
            (continued["name"], continued["rooms"], continued["current"]),
            ("anna", ["#lobby"], "#lobby"),
        )
        self.assertEqual(continued["color"], joined["color"])
        self.assertEqual(continued["missed"], 2)
        said = await again.wait_for(type="usermsg")
        private = await again.next_frame()
        self.assertEqual(
            (said["message"], private["type"], private["message"]),
            ("hello anna", "private", "are you there?"),
        )
        again.send({"type": "message", "message": "back"})
        await bob.wait_for(b"<anna> back\r\n")
        self.assertEqual(quiet(bytes(bob.received.data[start:])), [])
        motds = [f for f in again.frames if f.get("event") == "motd"]
        self.assertEqual(motds, [])

    @async_test
    async def test_new_tab_carries_on_the_account(self) -> None:
        """
        A second tab logging in with the saved token carries on the first
        tab's session: the first is told why and closed, the second is anna
        (logged in) in her rooms, and bob sees nothing.
        """
        server = await start_server(self, GRACEFUL_TAP_INI + CHEAP_ACCOUNTS, web=WEB)
        bob = await telnet_person(self, server, "bob")
        tab = await web_person(self, server, "tab one", name="anna")
        await tab.wait_for(type="system", event="join")
        tab.send({"type": "join", "room": "#dev"})
        tab.send({"type": "register", "password": "correct horse"})
        login = await tab.wait_for(type="system", event="login")
        await bob.wait_for(b"*** anna (web) joined #lobby\r\n")
        start = bob.received.cursor
        second = await web_person(self, server, "tab two", token=login["token"])
        continued = await second.wait_for(type="continued")
        self.assertEqual(
            (continued["name"], continued["rooms"], continued["account"]),
            ("anna", ["#lobby", "#dev"], "anna"),
        )
        goodbye = await tab.wait_for(type="system", event="goodbye")
        self.assertEqual(goodbye["reason"], "logged in from another connection")
        await tab.expect_closed()
        second.send({"type": "message", "room": "#lobby", "message": "two tabs"})
        await bob.wait_for(b"<anna> two tabs\r\n")
        self.assertEqual(quiet(bytes(bob.received.data[start:])), [])


class GraceTests(TestCase):
    """Nobody came back."""

    @async_test
    async def test_one_line_when_the_grace_ends(self) -> None:
        """
        With a 2 s grace, bob sees carol's "lost connection" once, no
        sooner than 2 s after her connection broke.
        """
        ini = GRACEFUL_TAP_INI.replace("reconnect_grace = 60", "reconnect_grace = 2")
        server = await start_server(self, ini)
        bob = await telnet_person(self, server, "bob")
        carol = await telnet_person(self, server, "carol")
        await bob.wait_for(b"*** carol (telnet) joined #lobby\r\n")
        start = bob.received.cursor
        dropped = time.monotonic()
        carol.abort()
        await bob.wait_for(b"*** carol (telnet) lost connection\r\n", timeout=10)
        self.assertGreaterEqual(time.monotonic() - dropped, 1.9)
        await bob.sync()
        lines = quiet(bytes(bob.received.data[start:]))
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].endswith(b"*** carol (telnet) lost connection"))
