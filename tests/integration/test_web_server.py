# -*- test-case-name: tests.integration.test_web_server -*-
"""
The web door end to end: a real C{twistd tchat} process with its telnet and
web doors on 127.0.0.1, real WebSocket clients (Autobahn's) and real telnet
clients talking to each other through it, and real HTTP requests for the
page.

Each test starts its own server, so that no test can see another's users or
rooms; message C{id}s therefore start at 1 in every test.
"""

import json
from typing import Any

from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from tests.integration.server import (
    COLOUR,
    COLOUR_NAME,
    RECENT,
    TAP_INI,
    ChatClient,
    Epoch,
    TchatServer,
    WebClient,
    async_test,
    connect,
    connect_web,
    global_reactor,
    start_server,
)

WEB = "tcp:0:interface=127.0.0.1"
"""The C{--web} endpoint of every test server here."""

CSP = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)
"""The page's C{Content-Security-Policy}: it may load nothing but itself."""

REFUSED_ORIGIN = (
    b"HTTP/1.1 403 this page's origin may not use the chat; "
    b"see [web] allowed_origins\r\n\r\n"
)
"""The whole answer to a handshake from a refused origin."""


def _with_web(*lines: str) -> str:
    """
    The test configuration with more C{[web]} keys (its last section).
    """
    return TAP_INI + "".join(line + "\n" for line in lines)


async def web_chat(
    testcase: TestCase,
    telnet: tuple[str, ...] = (),
    web: tuple[str, ...] = (),
    *,
    tap_ini: str = TAP_INI,
) -> tuple[TchatServer, list[ChatClient], list[WebClient]]:
    """
    Start a server with both doors and connect telnet and web clients, each
    in C{#lobby} under its nick (telnet ones first), with every notice
    about the others already read.

    @param telnet: The telnet clients' nicks.
    @param web: The web clients' nicks.
    @return: The server, the telnet clients and the web clients, each in
        the order of their nicks.
    """
    server = await start_server(testcase, tap_ini, web=WEB)
    assert server.web_port is not None
    telnets = []
    for nick in telnet:
        client = await connect(testcase, server.port, nick)
        await client.set_nick(nick)
        telnets.append(client)
    webs = []
    for nick in web:
        browser = await connect_web(testcase, server.web_port, nick)
        await browser.set_nick(nick)
        webs.append(browser)
    for client in telnets:
        await client.sync()
    for browser in webs:
        await browser.sync()
    return server, telnets, webs


def usermsg(
    sender: WebClient | ChatClient,
    colour: str,
    message: str,
    id: int,
    epoch: Epoch,
    *,
    room: str = "#lobby",
    action: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """
    The C{usermsg} frame a web client should get for a room message.

    @param sender: Who said it; its door is the client's kind.
    @param colour: The sender's CSS colour.
    @param id: The message's id in its room.
    @param epoch: The room's epoch: the same for every message of the room.
    @param extra: More fields (C{client_id} for the sender's own copy).
    """
    return {
        "type": "usermsg",
        "name": sender.nick,
        "message": message,
        "color": colour,
        "room": room,
        "id": id,
        "epoch": epoch,
        "ts": RECENT,
        "door": "web" if isinstance(sender, WebClient) else "telnet",
        "action": action,
        **extra,
    }


async def red(telnet: ChatClient, browser: WebClient) -> str:
    """
    Make a telnet user's nick red, so the colour web clients see is known.

    @return: Red's CSS value, from the palette in C{browser}'s welcome.
    """
    telnet.say("/color red")
    await telnet.expect_lines("*** your colour is now red")
    return str(browser.palette["red"])


class RoomMessageTests(TestCase):
    """
    Room messages and actions between the web and telnet doors.
    """

    @async_test
    async def test_messages_both_ways(self) -> None:
        """
        A web user's message reaches a telnet user as "[HH:MM] <alice>
        text" and comes back to the web user as its acknowledgement; a
        telnet user's line reaches the web user as a C{usermsg} frame with
        every field: name, message, the sender's colour, room, id, ts,
        C{door: "telnet"} and C{action: false}.
        """
        lobby = Epoch()
        _, (bob,), (alice,) = await web_chat(self, ("bob",), ("alice",))
        colour = await red(bob, alice)
        alice.send({"type": "message", "message": "hello from the web"})
        await bob.expect_lines("[HH:MM] <alice> hello from the web")
        await alice.expect_frames(
            usermsg(alice, alice.colour, "hello from the web", 1, lobby)
        )
        bob.say("hello from telnet")
        await alice.expect_frames(usermsg(bob, colour, "hello from telnet", 2, lobby))
        self.assertEqual(await alice.sync(), [])
        self.assertEqual(await bob.sync(), b"", "no echo to the telnet sender")

    @async_test
    async def test_actions_both_ways(self) -> None:
        """
        /me works both ways: a web user's C{me} request, or a message
        C{/me ...}, reaches telnet as "* alice waves"; a telnet user's /me
        reaches the web as a C{usermsg} with C{action: true}.
        """
        lobby = Epoch()
        _, (bob,), (alice,) = await web_chat(self, ("bob",), ("alice",))
        colour = await red(bob, alice)
        alice.send({"type": "me", "message": "waves"})
        await bob.expect_lines("[HH:MM] * alice waves")
        await alice.expect_frames(
            usermsg(alice, alice.colour, "waves", 1, lobby, action=True)
        )
        alice.send({"type": "message", "message": "/me dances"})
        await bob.expect_lines("[HH:MM] * alice dances")
        await alice.expect_frames(
            usermsg(alice, alice.colour, "dances", 2, lobby, action=True)
        )
        bob.say("/me bows")
        await alice.expect_frames(usermsg(bob, colour, "bows", 3, lobby, action=True))
        self.assertEqual(await alice.sync(), [])

    @async_test
    async def test_acknowledgement_carries_client_id(self) -> None:
        """
        A message sent with C{client_id: "c-1"} comes back to its sender
        with that C{client_id} and the id the hub gave it; another web user
        gets the same message without C{client_id}, and a telnet user sees
        the plain line.
        """
        lobby = Epoch()
        _, (carol,), (alice, bob) = await web_chat(self, ("carol",), ("alice", "bob"))
        alice.send({"type": "message", "message": "x", "client_id": "c-1"})
        await alice.expect_frames(
            usermsg(alice, alice.colour, "x", 1, lobby, client_id="c-1")
        )
        await bob.expect_frames(usermsg(alice, alice.colour, "x", 1, lobby))
        await carol.expect_lines("[HH:MM] <alice> x")
        alice.send({"type": "me", "message": "nods", "client_id": "c-2"})
        await alice.expect_frames(
            usermsg(alice, alice.colour, "nods", 2, lobby, action=True, client_id="c-2")
        )
        await bob.expect_frames(
            usermsg(alice, alice.colour, "nods", 2, lobby, action=True)
        )

    @async_test
    async def test_classic_frame(self) -> None:
        """
        A frame of the classic PHP chat, C{{"message", "name", "color"}},
        works unchanged: its name becomes the nick (announced to telnet as a
        nick change), its colour (not a palette colour) is ignored, and its
        message is delivered; a second classic frame with the same name
        just talks.
        """
        lobby = Epoch()
        _, (bob,), (alice,) = await web_chat(self, ("bob",), ("alice",))
        alice.send({"message": "hi", "name": "classic", "color": "#abcdef"})
        await bob.expect_lines(
            "[HH:MM] *** alice (web) is now known as classic",
            "[HH:MM] <classic> hi",
        )
        await alice.expect_frames(
            {
                "type": "system",
                "event": "nick",
                "message": "alice (web) is now known as classic",
                "name": "alice",
                "new_name": "classic",
                "door": "web",
                "ts": RECENT,
                "registered": False,
            }
        )
        alice.nick = "classic"
        await alice.expect_frames(usermsg(alice, alice.colour, "hi", 1, lobby))
        alice.send({"message": "again", "name": "classic", "color": "#abcdef"})
        await bob.expect_lines("[HH:MM] <classic> again")
        await alice.expect_frames(usermsg(alice, alice.colour, "again", 2, lobby))
        self.assertEqual(await bob.sync(), b"")

    @async_test
    async def test_rooms(self) -> None:
        """
        A web user's C{join} is answered with its own C{join} event and
        makes #dev its current room: its messages then go to #dev (a telnet
        user there sees them, one only in #lobby does not); C{join} of a
        room it is in switches back with C{status} "now talking in
        #lobby"; a message naming a C{room} goes to that room, and naming a
        room that does not exist, or one it is not in, is an error (and
        reaches nobody).
        """
        lobby = Epoch()
        dev = Epoch()
        _, (bob, carol), (alice,) = await web_chat(self, ("bob", "carol"), ("alice",))
        bob.say("/join #dev")
        await bob.expect_lines("[HH:MM] *** you joined #dev")
        alice.send({"type": "join", "room": "#dev"})
        await alice.expect_frames(
            {
                "type": "system",
                "event": "join",
                "message": "alice (web) joined #dev",
                "name": "alice",
                "door": "web",
                "room": "#dev",
                "epoch": dev,
                "last_id": 0,
                "ts": RECENT,
                "registered": False,
                "color": COLOUR,
                "color_name": COLOUR_NAME,
            }
        )
        self.assertEqual(await alice.sync(), [])
        await bob.expect_lines("[HH:MM] *** alice (web) joined #dev")
        alice.send({"type": "message", "message": "dev talk"})
        await bob.expect_lines("[HH:MM] <alice> dev talk")
        await alice.expect_frames(
            usermsg(alice, alice.colour, "dev talk", 1, dev, room="#dev")
        )
        self.assertEqual(await carol.sync(), b"", "#dev talk stays in #dev")

        alice.send({"type": "join", "room": "#lobby"})
        await alice.expect_frames(
            {"type": "system", "event": "status", "message": "now talking in #lobby"}
        )
        alice.send({"type": "message", "message": "lobby talk"})
        await carol.expect_lines("[HH:MM] <alice> lobby talk")
        await bob.expect_lines("[HH:MM] #lobby <alice> lobby talk")
        await alice.expect_frames(usermsg(alice, alice.colour, "lobby talk", 1, lobby))
        alice.send({"type": "message", "message": "named", "room": "#dev"})
        await bob.expect_lines("[HH:MM] <alice> named")
        await alice.expect_frames(
            usermsg(alice, alice.colour, "named", 2, dev, room="#dev")
        )
        alice.send({"type": "message", "message": "lost", "room": "#nowhere"})
        carol.say("/join #quiet")
        await carol.expect_lines("[HH:MM] *** you joined #quiet")
        alice.send({"type": "message", "message": "not mine", "room": "#quiet"})
        await alice.expect_frames(
            {
                "type": "error",
                "code": "no-such-room",
                "message": "there is no room #nowhere",
            },
            {
                "type": "error",
                "code": "not-in-room",
                "message": "you are not in #quiet",
            },
        )
        self.assertEqual(await carol.sync(), b"")
        self.assertEqual(await bob.sync(), b"")


class PrivateMessageTests(TestCase):
    """
    Private messages between the web and telnet doors.
    """

    @async_test
    async def test_private_messages_both_ways(self) -> None:
        """
        A web user's C{msg} request reaches the telnet user alone as
        "*alice* psst" and is confirmed to the sender as C{private} with
        C{outgoing: true}; a telnet /msg reaches the web user as C{private}
        with C{outgoing: false}, the sender's colour and door; nobody else
        sees either.
        """
        _, (bob, carol), (alice, dave) = await web_chat(
            self, ("bob", "carol"), ("alice", "dave")
        )
        colour = await red(bob, alice)
        alice.send({"type": "msg", "to": "BOB", "message": "psst"})
        await bob.expect_lines("[HH:MM] *alice* psst")
        await alice.expect_frames(
            {
                "type": "private",
                "from": "alice",
                "to": "bob",
                "message": "psst",
                "color": alice.colour,
                "door": "web",
                "ts": RECENT,
                "outgoing": True,
            }
        )
        bob.say("/msg alice a secret")
        await bob.expect_lines("[HH:MM] -> *alice* a secret")
        await alice.expect_frames(
            {
                "type": "private",
                "from": "bob",
                "to": "alice",
                "message": "a secret",
                "color": colour,
                "door": "telnet",
                "ts": RECENT,
                "outgoing": False,
            }
        )
        alice.send({"type": "message", "message": "/msg bob via the command"})
        await bob.expect_lines("[HH:MM] *alice* via the command")
        await alice.wait_for(type="private", message="via the command", outgoing=True)
        self.assertEqual(await carol.sync(), b"", "carol sees none of it")
        self.assertEqual(await dave.sync(), [], "dave sees none of it")
        self.assertEqual(await alice.sync(), [])


class NickTests(TestCase):
    """
    Nick changes seen across doors.
    """

    @async_test
    async def test_nick_changes_both_ways(self) -> None:
        """
        A web user's C{nick} request is announced to telnet as "guest-x
        (web) is now known as bob"; a telnet /nick reaches the web as a
        C{system} C{nick} event; a nick taken on the other door is refused
        with C{nick-taken}, carrying the request's C{client_id}.
        """
        server = await start_server(self, web=WEB)
        assert server.web_port is not None
        carol = await connect(self, server.port, "carol")
        await carol.set_nick("carol")
        web = await connect_web(self, server.web_port, "web")
        await carol.expect_lines(f"[HH:MM] *** {web.nick} (web) joined #lobby")
        guest = web.nick
        web.send({"type": "nick", "name": "bob"})
        await carol.expect_lines(f"[HH:MM] *** {guest} (web) is now known as bob")
        await web.expect_frames(
            {
                "type": "system",
                "event": "nick",
                "message": f"{guest} (web) is now known as bob",
                "name": guest,
                "new_name": "bob",
                "door": "web",
                "ts": RECENT,
                "registered": False,
            }
        )
        carol.say("/nick caroline")
        await carol.expect_lines("[HH:MM] *** you are now known as caroline")
        await web.expect_frames(
            {
                "type": "system",
                "event": "nick",
                "message": "carol (telnet) is now known as caroline",
                "name": "carol",
                "new_name": "caroline",
                "door": "telnet",
                "ts": RECENT,
                "registered": False,
            }
        )
        web.send({"type": "nick", "name": "Caroline", "client_id": "n-1"})
        await web.expect_frames(
            {
                "type": "error",
                "code": "nick-taken",
                "message": "Caroline is taken; pick another",
                "client_id": "n-1",
            }
        )
        carol.say("/nick bob")
        await carol.expect_lines("!!! bob is taken; pick another")
        self.assertEqual(await carol.sync(), b"")
        self.assertEqual(await web.sync(), [])


class ErrorFrameTests(TestCase):
    """
    Frames the door cannot act on: an error each, and the connection stays.
    """

    @async_test
    async def test_errors_do_not_close(self) -> None:
        """
        Bad JSON, a JSON value that is not an object, an unknown type, a
        missing field, a field of the wrong type, a binary frame and a hub
        error are each answered with exactly one C{error} frame (the hub's
        carrying the C{client_id}), nothing reaches the others, and the
        connection still works afterwards.
        """
        lobby = Epoch()
        _, (bob,), (alice,) = await web_chat(self, ("bob",), ("alice",))
        alice.send_raw(b"{not json")
        alice.send_raw(b"[1, 2]")
        alice.send({"type": "dance"})
        alice.send({"type": "msg", "to": "bob"})
        alice.send({"type": "message", "message": 42})
        alice.send_raw(b"\x00\x01binary", binary=True)
        alice.send({"type": "msg", "to": "nobody", "message": "hi", "client_id": "e-1"})
        alice.send({"type": "message", "message": "/frobnicate", "client_id": "e-2"})
        await alice.expect_frames(
            {
                "type": "error",
                "code": "bad-json",
                "message": "the frame is not valid JSON",
            },
            {
                "type": "error",
                "code": "bad-request",
                "message": "a frame must be a JSON object",
            },
            {
                "type": "error",
                "code": "unknown-type",
                "message": "unknown request type 'dance'",
            },
            {"type": "error", "code": "bad-request", "message": "'message' is missing"},
            {
                "type": "error",
                "code": "bad-request",
                "message": "'message' must be a string",
            },
            {
                "type": "error",
                "code": "binary-frame",
                "message": "binary frames are not understood; send JSON text",
            },
            {
                "type": "error",
                "code": "no-such-nick",
                "message": "nobody here is called nobody",
                "client_id": "e-1",
            },
            {
                "type": "error",
                "code": "unknown-command",
                "message": "unknown command /frobnicate; type /help for the list "
                "(start a message with // to send a line beginning with /)",
                "client_id": "e-2",
            },
        )
        self.assertEqual(await bob.sync(), b"", "bob hears nothing of it")
        alice.send({"type": "message", "message": "still here"})
        await bob.expect_lines("[HH:MM] <alice> still here")
        await alice.expect_frames(usermsg(alice, alice.colour, "still here", 1, lobby))
        self.assertIsNone(alice.closed)


class PageTests(TestCase):
    """
    The chat page over HTTP, on the web door's port.
    """

    async def _get(self, server: TchatServer, path: str) -> tuple[IResponse, bytes]:
        """
        GET C{path} from the web door.

        @return: The response and its body.
        """
        pool = HTTPConnectionPool(global_reactor(), persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        agent = Agent(global_reactor(), pool=pool, connectTimeout=5)
        url = f"http://127.0.0.1:{server.web_port}{path}".encode()
        response = await agent.request(b"GET", url, Headers())
        body = await readBody(response)
        return response, body

    def _header(self, response: IResponse, name: str) -> list[str]:
        """
        The values of one response header, as text.
        """
        return [v.decode() for v in response.headers.getRawHeaders(name.encode(), [])]

    @async_test
    async def test_page_and_script(self) -> None:
        """
        C{GET /} is the chat page: 200, HTML, with the Content-Security-
        Policy and the other security headers; C{GET /static/chat.js} is the
        script it loads, 200 and JavaScript; a missing file is 404.
        """
        server = await start_server(self, web=WEB)
        response, body = await self._get(server, "/")
        self.assertEqual(response.code, 200)
        # The page declares its charset itself (<meta charset="utf-8">).
        [kind] = self._header(response, "Content-Type")
        self.assertEqual(kind.split(";")[0], "text/html")
        self.assertEqual(self._header(response, "Content-Security-Policy"), [CSP])
        self.assertEqual(self._header(response, "X-Content-Type-Options"), ["nosniff"])
        self.assertEqual(self._header(response, "X-Frame-Options"), ["DENY"])
        self.assertEqual(self._header(response, "Referrer-Policy"), ["no-referrer"])
        self.assertTrue(body.lstrip().lower().startswith(b"<!doctype html>"), body)
        self.assertIn(b'<meta charset="utf-8">', body)
        self.assertIn(b'src="/static/chat.js"', body)

        response, body = await self._get(server, "/static/chat.js")
        self.assertEqual(response.code, 200)
        [kind] = self._header(response, "Content-Type")
        self.assertIn("javascript", kind)
        self.assertEqual(self._header(response, "Content-Security-Policy"), [CSP])
        self.assertIn(b"/ws", body)

        response, _ = await self._get(server, "/static/no-such-file.js")
        self.assertEqual(response.code, 404)


def _handshake(port: int, origin: str | None) -> bytes:
    """
    A WebSocket opening handshake for C{/ws}, as a browser would send it.
    """
    lines = [
        "GET /ws HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class OriginTests(TestCase):
    """
    Which pages may open the WebSocket (cross-site WebSocket hijacking).
    """

    async def _refused(
        self, server: TchatServer, origin: str, answer: bytes = REFUSED_ORIGIN
    ) -> None:
        """
        Assert that a handshake from C{origin} is answered with exactly
        C{answer} and closed.
        """
        assert server.web_port is not None
        raw = await connect(self, server.web_port, f"from {origin}", welcome=False)
        raw.send(_handshake(server.web_port, origin))
        await raw.expect_closed()
        self.assertEqual(bytes(raw.received.data), answer)

    @async_test
    async def test_other_origin_refused(self) -> None:
        """
        A handshake with C{Origin: http://evil.example}, or from the same
        host on another port, gets HTTP 403 and the connection closed; an
        opaque C{Origin: null} (sandboxed frames, file: pages) is refused by
        Autobahn itself, with 400.  Nobody joins: a telnet user in #lobby
        sees no notice and /who lists only themselves.
        """
        server = await start_server(self, web=WEB)
        bob = await connect(self, server.port, "bob")
        await bob.set_nick("bob")
        await self._refused(server, "http://evil.example")
        await self._refused(server, "http://127.0.0.1:1")
        await self._refused(
            server,
            "null",
            b"HTTP/1.1 400 WebSocket connection denied: origin 'null' not allowed"
            b"\r\n\r\n",
        )
        self.assertEqual(await bob.sync(), b"", "nobody joined")
        bob.say("/who")
        await bob.expect_lines("*** #lobby (1): bob (telnet)")

    @async_test
    async def test_own_origin_and_no_origin_accepted(self) -> None:
        """
        A page from the web door's own origin (C{http://127.0.0.1:PORT},
        the same as the C{Host}) may connect, and so may a client that
        sends no C{Origin} at all; a telnet user sees both join.
        """
        server = await start_server(self, web=WEB)
        bob = await connect(self, server.port, "bob")
        port = server.web_port
        assert port is not None
        own = await connect_web(self, port, "own", origin=f"http://127.0.0.1:{port}")
        await bob.expect_lines(f"[HH:MM] *** {own.nick} (web) joined #lobby")
        bare = await connect_web(self, port, "no origin")
        await bob.expect_lines(f"[HH:MM] *** {bare.nick} (web) joined #lobby")
        raw = await connect(self, port, "raw", welcome=False)
        raw.send(_handshake(port, f"http://127.0.0.1:{port}"))
        await raw.wait_for(b"HTTP/1.1 101 Switching Protocols\r\n")

    @async_test
    async def test_allowed_origins(self) -> None:
        """
        With C{[web] allowed_origins = http://other.test}, a page from
        http://other.test may connect; http://evil.example still may not.
        """
        server = await start_server(
            self, _with_web("allowed_origins = http://other.test"), web=WEB
        )
        bob = await connect(self, server.port, "bob")
        assert server.web_port is not None
        other = await connect_web(
            self, server.web_port, "other", origin="http://other.test"
        )
        await bob.expect_lines(f"[HH:MM] *** {other.nick} (web) joined #lobby")
        await self._refused(server, "http://evil.example")
        self.assertEqual(await bob.sync(), b"")


class LimitTests(TestCase):
    """
    C{[limits] max_frame}.
    """

    @async_test
    async def test_oversized_message_closes_with_1009(self) -> None:
        """
        With C{max_frame = 1024}, a message of 1024 bytes is delivered,
        while a 2000-byte one gets its sender's connection closed with code
        1009 (and a reason naming the limit); the others see "alice (web)
        lost connection" (the server, not alice, ended it) and go on
        chatting across doors.
        """
        _, (bob,), (alice, carol) = await web_chat(
            self,
            ("bob",),
            ("alice", "carol"),
            tap_ini=TAP_INI.replace("[limits]\n", "[limits]\nmax_frame = 1024\n"),
        )
        at_limit = "a" * (1024 - len('{"type": "message", "message": ""}'))
        alice.send({"type": "message", "message": at_limit})
        await bob.expect_lines(f"[HH:MM] <alice> {at_limit}")

        alice.send({"type": "message", "message": "x" * 2000})
        closed = await alice.expect_closed()
        reason = (
            "received WebSocket message size 2034 exceeds payload limit of 1024 octets"
        )
        self.assertEqual(
            (closed.server_code, closed.server_reason, closed.clean),
            (1009, reason, True),
        )
        await bob.expect_lines("[HH:MM] *** alice (web) lost connection")
        await carol.wait_for(type="usermsg", name="alice", message=at_limit)
        await carol.expect_frames(
            {
                "type": "system",
                "event": "lost",
                "message": "alice (web) lost connection",
                "name": "alice",
                "door": "web",
                "ts": RECENT,
                "registered": False,
            }
        )
        carol.send({"type": "message", "message": "still chatting"})
        await bob.expect_lines("[HH:MM] <carol> still chatting")
        bob.say("me too")
        await carol.wait_for(type="usermsg", name="bob", message="me too")
        self.assertNotIn(b"xxxxxxxx", bytes(bob.received.data))
        self.assertNotIn("xxxxxxxx", json.dumps(carol.frames))


class LeavingTests(TestCase):
    """
    /quit, closing and dropping web connections.
    """

    @async_test
    async def test_quit(self) -> None:
        """
        A web user's /quit (as a C{quit} request or typed as a message) is
        answered with C{system}/C{goodbye} as the last frame, then a close
        with code 1000; telnet sees "bob (web) quit" (with the reason, if
        one was given).
        """
        _, (carol,), (bob, dave) = await web_chat(self, ("carol",), ("bob", "dave"))
        bob.send({"type": "quit"})
        await bob.expect_frames(
            {
                "type": "system",
                "event": "goodbye",
                "message": "Goodbye (bye)",
                "reason": "bye",
            }
        )
        closed = await bob.expect_closed()
        self.assertEqual((closed.server_code, closed.clean), (1000, True))
        self.assertEqual(bob.rest(), [], "nothing after the goodbye")
        await carol.expect_lines("[HH:MM] *** bob (web) quit")

        dave.send({"type": "message", "message": "/quit lunch"})
        await dave.wait_for(type="system", event="goodbye", reason="lunch")
        closed = await dave.expect_closed()
        self.assertEqual((closed.server_code, closed.clean), (1000, True))
        await carol.expect_lines("[HH:MM] *** dave (web) quit (lunch)")
        carol.say("/who")
        await carol.expect_lines("*** #lobby (1): carol (telnet)")

    @async_test
    async def test_client_closes(self) -> None:
        """
        A web client that closes its WebSocket (code 1000) without /quit is
        announced as "alice (web) quit (connection closed)".
        """
        _, (bob,), (alice,) = await web_chat(self, ("bob",), ("alice",))
        await alice.close()
        await bob.expect_lines("[HH:MM] *** alice (web) quit (connection closed)")

    @async_test
    async def test_abrupt_disconnect(self) -> None:
        """
        A web client whose TCP connection just drops is announced as "alice
        (web) lost connection", to telnet and web users alike, and its nick
        is free again.
        """
        server, (bob,), (alice, carol) = await web_chat(
            self, ("bob",), ("alice", "carol")
        )
        alice.abort()
        await bob.expect_lines("[HH:MM] *** alice (web) lost connection")
        await carol.expect_frames(
            {
                "type": "system",
                "event": "lost",
                "message": "alice (web) lost connection",
                "name": "alice",
                "door": "web",
                "ts": RECENT,
                "registered": False,
            }
        )
        assert server.web_port is not None
        again = await connect_web(self, server.web_port, "alice again")
        await again.set_nick("alice")
