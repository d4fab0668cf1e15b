"""
Tests for L{tchat.web}: the WebSocket door against a real Autobahn client,
connected in memory (L{twisted.test.iosim}) with the hub on a L{Clock}.
"""

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tchat import events
from tchat.output import GOODBYE_DRAIN
from tchat.web import WebChatFactory, origin_allowed
from tests.support import QuietParticipant, WebTestCase


class ConnectTests(WebTestCase):
    """
    Opening the socket.
    """

    def test_welcome(self) -> None:
        """
        A new web user gets the welcome (nick, room, colour, palette) and
        joins the default room, as a web user.
        """
        client, server, _ = self.connect()
        welcome, joined = client.take()
        nick = server.user.nick
        self.assertEqual(
            (welcome["type"], welcome["event"], welcome["name"], welcome["room"]),
            ("system", "welcome", nick, "#lobby"),
        )
        self.assertIn("red", welcome["palette"])
        self.assertEqual(
            joined,
            {
                "type": "system",
                "event": "join",
                "message": f"{nick} (web) joined #lobby",
                "name": nick,
                "door": "web",
                "room": "#lobby",
                "epoch": self.hub.directory.rooms["#lobby"].epoch,
                "last_id": 0,
                "ts": 1_700_000_000,
            },
        )

    def test_cross_origin_refused(self) -> None:
        """
        A page from another origin is refused during the handshake and never
        becomes a user.
        """
        client, _, _ = self.connect(origin="http://evil.example")
        self.assertFalse(client.opened)
        self.assertEqual(self.hub.users, 0)

    def test_own_origin_accepted(self) -> None:
        """
        The page's own origin (matching Host) is accepted.
        """
        client, _, _ = self.connect(origin="http://127.0.0.1:8080")
        self.assertTrue(client.opened)
        self.assertEqual(self.hub.users, 1)


class OriginTests(SynchronousTestCase):
    """
    L{origin_allowed}: the cross-site WebSocket hijacking check.
    """

    def test_rules(self) -> None:
        """
        No Origin (non-browser clients), the same host and port, and listed
        origins pass; others, C{null} and malformed ones do not.
        """
        host = "127.0.0.1:8080"
        self.assertTrue(origin_allowed(None, host, ()))
        self.assertTrue(origin_allowed("http://127.0.0.1:8080", host, ()))
        self.assertTrue(origin_allowed("HTTP://127.0.0.1:8080", host, ()))
        self.assertFalse(origin_allowed("http://127.0.0.1:8081", host, ()))
        self.assertFalse(origin_allowed("http://evil.example", host, ()))
        self.assertFalse(origin_allowed("null", host, ()))
        self.assertFalse(origin_allowed("http://127.0.0.1:bad", host, ()))
        self.assertTrue(origin_allowed("https://chat.example", "chat.example", ()))
        self.assertTrue(origin_allowed("http://chat.example", "chat.example:80", ()))
        self.assertTrue(
            origin_allowed("http://other.test", host, ("http://other.test",))
        )
        self.assertTrue(origin_allowed("http://anything", host, ("*",)))


class MessageTests(WebTestCase):
    """
    Chatting over the socket.
    """

    def test_room_message_and_ack(self) -> None:
        """
        Others get the C{usermsg}; the sender gets it back with its
        C{client_id} and the hub's id, as its acknowledgement.
        """
        alice, bob = self.people("alice", "bob")
        alice.send(type="message", message="hello", client_id="c-1")
        self.flush()
        expected = {
            "type": "usermsg",
            "name": "alice",
            "message": "hello",
            "color": self.hub.directory.users["alice"].colour.css,
            "room": "#lobby",
            "id": 1,
            "epoch": self.hub.directory.rooms["#lobby"].epoch,
            "ts": 1_700_000_000,
            "door": "web",
            "action": False,
        }
        self.assertEqual(bob.take(), [expected])
        self.assertEqual(alice.take(), [{**expected, "client_id": "c-1"}])

    def test_classic_frame(self) -> None:
        """
        The classic PHP chat's frame renames and sends.
        """
        alice, bob = self.people("alice", "bob")
        alice.send(message="hi all", name="classic", color="#ffffff")
        self.flush()
        nick, message = bob.take()
        self.assertEqual((nick["event"], nick["new_name"]), ("nick", "classic"))
        self.assertEqual((message["name"], message["message"]), ("classic", "hi all"))

    def test_encoded_once(self) -> None:
        """
        One room message to 20 web users is serialised and framed once.
        """
        sender, *others = self.people(*[f"u{i}" for i in range(20)])
        factory = self.factory()
        prepared: list[bytes] = []
        original = WebChatFactory.prepareMessage

        def spy(self: WebChatFactory, payload: bytes, isBinary: bool = False) -> Any:
            prepared.append(payload)
            return original(self, payload, isBinary)

        self.patch(WebChatFactory, "prepareMessage", spy)
        del factory
        sender.send(type="message", message="to everyone")
        self.flush()
        self.assertEqual(len(prepared), 1)
        self.assertTrue(all(c.take()[0]["message"] == "to everyone" for c in others))

    def test_errors_keep_connection(self) -> None:
        """
        Bad JSON, an unknown type, a missing field and a binary frame each
        get an error, and the connection still works afterwards.
        """
        alice, bob = self.people("alice", "bob")
        alice.sendMessage(b"{not json")
        alice.send(type="dance")
        alice.send(type="join")
        alice.sendMessage(b"\x00\x01", isBinary=True)
        alice.send(type="nick", name="server", client_id="n-1")
        self.flush()
        codes = [(f["type"], f["code"], f.get("client_id")) for f in alice.take()]
        self.assertEqual(
            codes,
            [
                ("error", "bad-json", None),
                ("error", "unknown-type", None),
                ("error", "bad-request", None),
                ("error", "binary-frame", None),
                ("error", "nick-reserved", "n-1"),
            ],
        )
        alice.send(type="message", message="still here")
        self.flush()
        self.assertEqual(bob.take()[0]["message"], "still here")

    def test_private_and_me(self) -> None:
        """
        C{msg} reaches only its target, echoed to the sender; C{me} is an
        action.
        """
        alice, bob, carol = self.people("alice", "bob", "carol")
        alice.send(type="msg", to="bob", message="psst")
        alice.send(type="me", message="waves")
        self.flush()
        private, action = bob.take()
        self.assertEqual(
            (private["type"], private["from"], private["outgoing"]),
            ("private", "alice", False),
        )
        self.assertTrue(action["action"])
        self.assertEqual([f["type"] for f in carol.take()], ["usermsg"])

    def test_telnet_and_web_share_rooms(self) -> None:
        """
        A telnet user's message reaches web users with door C{telnet}.
        """
        (bob,) = self.people("bob")
        telnet = QuietParticipant("telnet")
        user = self.hub.connect(telnet)
        from tchat.commands import Say

        self.hub.execute(user, Say("from telnet"))
        self.flush()
        frames = bob.take()
        self.assertEqual(frames[-1]["door"], "telnet")
        self.assertEqual(frames[-1]["message"], "from telnet")


class ClosingTests(WebTestCase):
    """
    Ways a web user leaves.
    """

    def test_quit(self) -> None:
        """
        C{quit}: a goodbye, then a clean close with 1000; others see a quit.
        """
        alice, bob = self.people("alice", "bob")
        alice.send(type="quit", reason="lunch")
        self.flush()
        self.assertEqual(alice.take()[-1]["event"], "goodbye")
        self.assertEqual(alice.closed and alice.closed[1], 1000)
        self.assertEqual(bob.take()[-1]["message"], "alice (web) quit (lunch)")

    def test_server_stop_goes_away(self) -> None:
        """
        When the server stops, the page is told (a C{shutdown} system
        message) and its socket closes with 1001 "going away".
        """
        (alice,) = self.people("alice")
        stopping = self.hub.stop(grace=5)
        self.flush()
        self.assertEqual(alice.take()[-1]["event"], "shutdown")
        self.assertEqual(alice.closed, (True, 1001, "going away"))
        self.successResultOf(stopping)

    def test_sent_off_by_policy(self) -> None:
        """
        A user an operator sends off is closed with 1008 and the reason.
        """
        bob, server, _ = self.connect(nick="bob")
        server.close("kicked", "policy")
        self.flush()
        self.assertEqual(bob.closed, (True, 1008, "kicked"))
        self.assertEqual(self.hub.users, 0)

    def test_sent_off_gets_time_to_read(self) -> None:
        """
        A client sent off with 1008 that is slow to read its close frame
        (a flooder with a backlog) is not cut after Autobahn's usual one
        second, which would reset the socket and lose the frame: it gets
        L{GOODBYE_DRAIN} seconds, then is cut.
        """
        bob, server, pump = self.connect(nick="bob")
        carol, carol_server, carol_pump = self.connect(nick="carol")
        self.pumps.remove(pump)
        self.pumps.remove(carol_pump)
        server.close("flooding", "policy")
        carol_server.close("flooding", "policy")
        for _ in range(3):
            self.clock.advance(1)
        self.assertFalse(server.transport.disconnecting)
        # Bob gets to it late, and still reads why.
        pump.flush()
        pump.flush()
        self.assertEqual(bob.closed, (True, 1008, "flooding"))
        # Carol never answers: her connection is cut after the drain.
        self.assertFalse(carol_server.transport.disconnecting)
        self.clock.advance(GOODBYE_DRAIN)
        self.assertTrue(carol_server.transport.disconnecting)

    def test_oversized_message(self) -> None:
        """
        A message over C{[limits] max_frame} closes with 1009; others carry on.
        """
        alice, bob, carol = self.people("alice", "bob", "carol")
        alice.send(type="message", message="x" * 2000)
        self.flush()
        self.assertEqual(alice.closed and alice.closed[1], 1009)
        notice = bob.take()[-1]
        self.assertEqual(notice["event"], "lost")
        carol.send(type="message", message="fine")
        self.flush()
        self.assertEqual(bob.take()[-1]["message"], "fine")

    def test_dead_peer_pinged_out(self) -> None:
        """
        A peer that stops answering pings is dropped and shown as lost.
        """
        (bob,) = self.people("bob")
        alice, _, pump = self.connect(nick="alice")
        self.flush()
        bob.take()
        self.pumps.remove(pump)  # alice's network goes silent
        # Autobahn batches its timers into one-second buckets.
        for _ in range(45):
            self.clock.advance(1)
            self.flush()  # bob keeps answering his pings
        # Deliver what the server did meanwhile: it gave up on alice.
        pump.flush()
        self.flush()
        self.assertEqual(bob.take()[-1]["message"], "alice (web) lost connection")
        self.assertEqual(self.hub.users, 1)


class RenderingsTests(SynchronousTestCase):
    """
    The shared renderings cache itself.
    """

    def test_counts(self) -> None:
        """
        A key renders once however often it is asked for.
        """
        renderings = events.Renderings()
        calls: list[int] = []

        def render(x: int) -> int:
            calls.append(x)
            return x

        for _ in range(5):
            renderings.get("k", render, 1)
        self.assertEqual((renderings.encoded, calls), (1, [1]))
