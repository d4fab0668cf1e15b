"""
Tests for L{tchat.web}: the WebSocket door against a real Autobahn client,
connected in memory (L{twisted.test.iosim}) with the hub on a L{Clock}.
"""

from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tchat import events
from tchat.config import LimitsConfig, WebConfig
from tchat.output import GOODBYE_DRAIN
from tchat.web import (
    ChatSite,
    HostRule,
    WebChatFactory,
    host_name,
    listen_addresses,
    make_site,
    origin_allowed,
)
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
                "registered": False,
                "color": server.user.colour.css,
                "color_name": server.user.colour.name,
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
            "color": self.hub.directory.user("alice").colour.css,  # type: ignore[union-attr]
            "color_name": self.hub.directory.user("alice").colour.name,  # type: ignore[union-attr]
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
        paused: list[bool] = []
        server.transport.pauseProducing = lambda: paused.append(True)
        server.close("flooding", "policy")
        # What it still sends is not read, let alone parsed.
        self.assertEqual(paused, [True])
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


class NotReadingTests(WebTestCase):
    """
    A client that reads nothing: what the server answers it (pongs
    included) waits in its output queue, and sending is no proof of life.
    """

    def setUp(self) -> None:
        super().setUp()
        self.hub.settings.limits = LimitsConfig(
            max_frame=1024, output_queue=4096, stuck_timeout=30
        )

    def test_pings_are_frames(self) -> None:
        """
        Pings take the sender's allowance like any frame: past it they go
        unanswered, and a client that keeps on is sent off for flooding.
        """
        (bob,) = self.people("bob")
        pinger, _, _ = self.connect(nick="pinger")
        self.flush()
        bob.take()
        pongs: list[bytes] = []
        pinger.onPong = pongs.append  # type: ignore[method-assign,assignment]
        for _ in range(15):
            pinger.sendPing(b"p")
        self.flush()
        self.assertEqual(len(pongs), 9, "the burst of 10, less the nick frame")
        for _ in range(30):
            pinger.sendPing(b"p")
        self.flush()
        self.assertEqual(pinger.closed[1], 1008)  # type: ignore[index]
        self.assertEqual(bob.take()[-1]["message"], "pinger (web) quit (flooding)")

    def test_pongs_take_the_output_queue(self) -> None:
        """
        The pongs to a client's pings wait in its output queue while the
        socket takes nothing; past C{output_queue} the client is closed
        with 1008 and the reason, and the room sees it could not keep up.
        (The rate limit, which pings take too, is lifted here.)
        """
        self.hub.settings.limits = LimitsConfig(
            max_frame=1024, output_queue=4096, stuck_timeout=30, messages_per_second=0
        )
        (bob,) = self.people("bob")
        pinger, server, _ = self.connect(nick="pinger")
        self.flush()
        bob.take()
        queue = server._queue
        queue.pauseProducing()  # what a full socket buffer does
        pongs: list[bytes] = []
        pinger.onPong = pongs.append  # type: ignore[method-assign,assignment]
        for _ in range(20):
            pinger.sendPing(b"p" * 125)
        self.flush()
        self.assertEqual(pongs, [])
        self.assertEqual(len(queue.pending), 20)
        self.assertTrue(all(frame[0] == 0x8A for frame in queue.pending))
        for _ in range(20):
            pinger.sendPing(b"p" * 125)
        self.flush()
        self.assertEqual(
            pinger.closed,
            (
                True,
                1008,
                "too slow: over 4 KiB of messages waiting; reconnect to catch up",
            ),
        )
        self.assertEqual(
            bob.take()[-1]["message"], "pinger (web) quit (could not keep up)"
        )

    def test_stuck_closed_however_much_it_sends(self) -> None:
        """
        A client the socket takes nothing from for C{stuck_timeout} is
        closed with 1008 and the reason, though its queue is far from full
        and it sends a frame and a ping every second meanwhile.
        """
        (bob,) = self.people("bob")
        mute, server, _ = self.connect(nick="mute")
        self.flush()
        bob.take()
        server._queue.pauseProducing()
        for _ in range(29):
            mute.sendMessage(b"")
            mute.sendPing(b"alive")
            self.clock.advance(1)
            self.flush()
        self.assertIsNone(mute.closed)
        self.clock.advance(1)
        self.flush()
        self.assertEqual(
            mute.closed,
            (True, 1008, "not reading: nothing taken for 30s; reconnect to catch up"),
        )
        self.assertEqual(
            bob.take()[-1]["message"], "mute (web) quit (could not keep up)"
        )
        self.assertEqual(self.hub.metrics.slow_consumer_disconnects, 1)

    def test_only_a_pong_answers_a_ping(self) -> None:
        """
        A client that sends frames but never answers the server's pings is
        dropped after C{ping_interval} and C{ping_timeout}: its frames do
        not count as an answer.
        """
        (bob,) = self.people("bob")
        deaf, _, _ = self.connect(nick="deaf")
        self.flush()
        bob.take()
        deaf.onPing = lambda payload: None  # type: ignore[method-assign]
        for _ in range(45):
            if deaf.state == deaf.STATE_OPEN:
                deaf.send(type="who")
            self.clock.advance(1)
            self.flush()
        self.assertEqual(bob.take()[-1]["message"], "deaf (web) lost connection")
        self.assertEqual(self.hub.users, 1)


def _get(
    site: ChatSite,
    path: bytes,
    host: bytes | None,
    extra: bytes = b"",
    method: bytes = b"HEAD",
) -> int:
    """
    The status of the site's answer to C{HEAD path} (HEAD: a file is then
    answered at once, without its producer) with C{Host: host} (none if
    C{None}).
    """
    protocol = site.buildProtocol(None)
    assert protocol is not None
    transport = StringTransport()
    protocol.makeConnection(transport)
    header = b"" if host is None else b"Host: " + host + b"\r\n"
    protocol.dataReceived(
        method
        + b" "
        + path
        + b" HTTP/1.1\r\n"
        + header
        + extra
        + b"Connection: close\r\n\r\n"
    )
    status = int(transport.value().split(b" ", 2)[1])
    protocol.connectionLost(Failure(ConnectionDone()))
    return status


class HostTests(WebTestCase):
    """
    The page, its files and the WebSocket answer only to the names the
    server has: DNS rebinding gets 421.
    """

    def test_host_name(self) -> None:
        """
        The name of a C{Host} header: lower case, no port, no final dot,
        addresses in their short form; C{None} for a malformed one.
        """
        for header, name in [
            ("Chat.Example.org:8080", "chat.example.org"),
            ("localhost.", "localhost"),
            ("127.0.0.1", "127.0.0.1"),
            ("[::1]:8080", "::1"),
            ("[0:0::1]", "::1"),
            ("evil.example:8080:1", None),
            ("evil.example:http", None),
            ("[::1", None),
            ("", None),
            ("a b", None),
        ]:
            self.assertEqual(host_name(header), name, header)

    def test_listen_addresses(self) -> None:
        """
        The interfaces of C{tcp}, C{tcp6} and C{ssl} listeners, by name or
        position; listeners on every address are flagged, others skipped.
        """
        self.assertEqual(
            listen_addresses(
                [
                    "tcp:8080:interface=127.0.0.1",
                    "tcp:8081:192.0.2.7",
                    r"tcp6:8082:interface=2001\:db8\:\:1",
                    "ssl:8443:k.pem:c.pem:TLS_METHOD:198.51.100.3",
                    "unix:/run/tchat.sock",
                ]
            ),
            (
                frozenset({"127.0.0.1", "192.0.2.7", "2001:db8::1", "198.51.100.3"}),
                False,
            ),
        )
        self.assertEqual(listen_addresses(["tcp:8080"]), (frozenset(), True))
        self.assertEqual(listen_addresses(["tcp6:8080"]), (frozenset(), True))
        self.assertEqual(
            listen_addresses(["tcp:8080:interface=0.0.0.0"]), (frozenset(), True)
        )

    def test_rule(self) -> None:
        """
        By default the loopback names and the listen addresses, on any
        port; C{allowed_hosts} adds names and domains; a listener on every
        address allows any address (never a name); C{*} allows anything.
        """
        rule = HostRule.for_config(WebConfig(listen=("tcp:80:interface=192.0.2.7",)))
        for name in ("localhost", "127.0.0.1", "::1", "192.0.2.7"):
            self.assertTrue(rule.allows(name), name)
        for name in ("evil.example", "192.0.2.8", "localhost.evil.example"):
            self.assertFalse(rule.allows(name), name)
        rule = HostRule.for_config(
            WebConfig(allowed_hosts=("chat.example.org", "*.example.net"))
        )
        for name in ("chat.example.org", "a.example.net", "a.b.example.net"):
            self.assertTrue(rule.allows(name), name)
        for name in ("example.net", "evilexample.net", "www.chat.example.org"):
            self.assertFalse(rule.allows(name), name)
        anywhere = HostRule.for_config(WebConfig(listen=("tcp:80",)))
        self.assertTrue(anywhere.allows("203.0.113.9"))
        self.assertTrue(anywhere.allows("2001:db8::9"))
        self.assertFalse(anywhere.allows("evil.example"))
        self.assertTrue(
            HostRule.for_config(WebConfig(allowed_hosts=("*",))).allows("x")
        )

    def test_onion_rule(self) -> None:
        """
        The onion door answers to its address and the names under it (and
        the loopback names); before it is published, to any C{.onion}.
        """
        onion = "a" * 56 + ".onion"
        rule = HostRule.for_onion(onion)
        for name in (onion, "www." + onion, "localhost"):
            self.assertTrue(rule.allows(name), name)
        for name in ("b" * 56 + ".onion", "evil.example", "x" + onion):
            self.assertFalse(rule.allows(name), name)
        self.assertTrue(HostRule.for_onion(None).allows(onion))
        self.assertFalse(HostRule.for_onion(None).allows("evil.example"))

    def test_site(self) -> None:
        """
        Under a name it does not have, the page, a file and the WebSocket
        upgrade get 421 and the refusal is logged; an unknown path is
        still 404; without C{Host}, or under its own names, the page is
        served (the WebSocket under its own names: L{WebTestCase}).
        """
        site = make_site(self.hub, WebConfig())
        upgrade = (
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n"
        )
        with capturedLogs() as logged:
            for path, extra in [
                (b"/", b""),
                (b"/static/chat.js", b""),
                (b"/ws", upgrade),
            ]:
                self.assertEqual(
                    _get(site, path, b"evil.example:8080", extra, b"GET"), 421, path
                )
        self.assertEqual(
            len([e for e in logged if "DNS rebinding" in e["log_format"]]), 3
        )
        self.assertEqual(_get(site, b"/healthz", b"evil.example:8080"), 404)
        self.assertEqual(_get(site, b"/", None), 200)
        for host in (b"127.0.0.1:8080", b"localhost:9999", b"[::1]:8080"):
            self.assertEqual(_get(site, b"/", host), 200, host)

    def test_reload(self) -> None:
        """
        A reload's C{allowed_hosts} applies at once, and so does a
        published onion address on the onion door.
        """
        site = make_site(self.hub, WebConfig())
        self.assertEqual(_get(site, b"/", b"chat.example.org"), 421)
        site.chat.reconfigure(WebConfig(allowed_hosts=("chat.example.org",)))
        self.assertEqual(_get(site, b"/", b"chat.example.org"), 200)
        onion = make_site(self.hub, WebConfig(), door="onion")
        address = "a" * 56 + ".onion"
        self.hub.onion_address = address
        self.assertEqual(_get(onion, b"/", address.encode()), 200)
        self.assertEqual(_get(onion, b"/", b"b" * 56 + b".onion"), 421)
        self.assertEqual(_get(onion, b"/", b"chat.example.org"), 421)


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
