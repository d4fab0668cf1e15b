"""
Tests for L{tchat.limits} and the limits the hub and doors apply: what a
flooder, a slow reader, a silent socket or a swarm of connections meets,
and that everyone else never notices.
"""

import random
import re
import socket
from typing import Any

from twisted.internet import tcp
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tchat import events
from tchat.commands import Join, Nick, Part, Say
from tchat.config import LimitsConfig, ServerConfig
from tchat.hub import ChatFactory, User
from tchat.limits import (
    Admission,
    Batcher,
    Gate,
    OutputQueue,
    TokenBucket,
    http_refusal,
    line_refusal,
    set_keepalive,
    socket_writer,
)
from tchat.metrics import Metrics
from tchat.telnet import TelnetFactory
from tests.test_hub import FakeParticipant
from tests.test_telnet import Client, TCPStringTransport
from tests.test_web import WebTestCase


class TokenBucketTests(SynchronousTestCase):
    def test_burst_then_rate(self) -> None:
        """
        A full bucket allows C{burst} at once, then C{rate} a second.
        """
        bucket = TokenBucket(5, 10, 0.0)
        self.assertEqual([bucket.take(0.0) for _ in range(11)], [True] * 10 + [False])
        self.assertFalse(bucket.full(0.0))
        self.assertTrue(bucket.take(0.2))
        self.assertFalse(bucket.take(0.2))
        self.assertTrue(bucket.full(10.0))


class AdmissionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.metrics = Metrics()

    def admission(self, **limits: Any) -> Admission:
        return Admission(LimitsConfig(exempt=(), **limits), self.clock, self.metrics)

    def test_per_address(self) -> None:
        """
        An address over C{per_address} is refused with the limit named;
        another address still gets in, and a closed connection frees a place.
        """
        admission = self.admission(per_address=2)
        keys = [admission.admit(False, "192.0.2.1") for _ in range(2)]
        self.assertEqual(keys, [(None, "192.0.2.1")] * 2)
        reason, _ = admission.admit(False, "192.0.2.1")
        assert reason is not None
        self.assertIn("too many connections from your address (limit 2)", reason)
        self.assertEqual(admission.admit(False, "192.0.2.2"), (None, "192.0.2.2"))
        admission.release(False, "192.0.2.1")
        self.assertEqual(admission.admit(False, "192.0.2.1"), (None, "192.0.2.1"))
        self.assertEqual(self.metrics.rate_limited["connection-per-address"], 1)

    def test_per_minute(self) -> None:
        """
        New connections from one address are limited per minute, even when
        each closes at once; a minute later it may come back.
        """
        admission = self.admission(connects_per_minute=3)
        for _ in range(3):
            reason, key = admission.admit(False, "192.0.2.1")
            self.assertIsNone(reason)
            admission.release(False, key)
        reason, _ = admission.admit(False, "192.0.2.1")
        assert reason is not None
        self.assertIn("over 3 a minute", reason)
        self.clock.advance(60)
        self.assertIsNone(admission.admit(False, "192.0.2.1")[0])

    def test_total(self) -> None:
        """
        Past C{max_connections} everyone is refused with a "full" reason.
        """
        admission = self.admission(max_connections=2)
        admission.admit(False, "192.0.2.1")
        admission.admit(True, None)
        reason, _ = admission.admit(False, "192.0.2.3")
        assert reason is not None
        self.assertIn("the server is full", reason)

    def test_exempt(self) -> None:
        """
        Exempt networks (loopback by default) skip the per-address limits.
        """
        admission = Admission(LimitsConfig(per_address=1), self.clock, self.metrics)
        for _ in range(5):
            self.assertEqual(admission.admit(False, "127.0.0.1"), (None, None))
            self.assertEqual(admission.admit(False, "::ffff:127.0.0.2"), (None, None))
        self.assertIsNone(admission.admit(False, "192.0.2.1")[0])
        self.assertIsNotNone(admission.admit(False, "192.0.2.1")[0])

    def test_onion_apart(self) -> None:
        """
        Onion connections, which all come from the local tor, are limited
        in aggregate by their own limits, not lumped into one address's.
        """
        admission = self.admission(
            per_address=1, onion_max_connections=3, onion_connects_per_minute=100
        )
        for _ in range(3):
            self.assertEqual(admission.admit(True, None), (None, None))
        reason, _ = admission.admit(True, None)
        assert reason is not None
        self.assertIn("the onion service is full (3 connections)", reason)
        # Clear-net users are not affected by a full onion door.
        self.assertIsNone(admission.admit(False, "192.0.2.1")[0])
        admission.release(True, None)
        self.assertIsNone(admission.admit(True, None)[0])

    def test_onion_rate(self) -> None:
        """
        New onion connections are limited per minute in aggregate.
        """
        admission = self.admission(onion_connects_per_minute=2)
        admission.admit(True, None)
        admission.admit(True, None)
        reason, _ = admission.admit(True, None)
        assert reason is not None
        self.assertIn("through the onion service (over 2 a minute)", reason)


class _TCP(TCPStringTransport):
    """A TCP transport with a real (unconnected) socket, for L{set_keepalive}."""

    def __init__(self) -> None:
        super().__init__()
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)


class KeepaliveTests(SynchronousTestCase):
    def test_keepalive_set(self) -> None:
        """
        Accepted sockets probe a silent peer after C{tcp_keepalive} seconds,
        so a vanished client is noticed.
        """
        tcp = _TCP()
        self.addCleanup(tcp.socket.close)
        set_keepalive(tcp, 45)
        self.assertTrue(tcp.keepalive)
        if hasattr(socket, "TCP_KEEPIDLE"):
            idle = tcp.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
            self.assertEqual(idle, 45)


class GateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = ChatFactory(
            ServerConfig(),
            self.clock,
            random.Random(1),
            limits=LimitsConfig(per_address=1, exempt=()),
        )
        self.telnet = Gate(
            TelnetFactory(self.hub), self.hub.admission, self.clock, line_refusal
        )

    def connect(self, gate: Gate, host: str) -> tuple[Any, StringTransport]:
        address = IPv4Address("TCP", host, 5000)
        protocol = gate.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        return protocol, transport

    def test_refused_told_why(self) -> None:
        """
        A telnet connection over the limit gets one line saying why, its
        write side is closed, and it never becomes a user; the first
        connection chats on.
        """
        first, first_transport = self.connect(self.telnet, "192.0.2.1")
        _, refused = self.connect(self.telnet, "192.0.2.1")
        self.assertEqual(
            refused.value(),
            b"!!! too many connections from your address (limit 1); close one "
            b"and try again\r\n",
        )
        self.assertEqual(self.hub.users, 1)
        first.dataReceived(b"/nick alice\r\n")
        self.assertIn(b"alice", first_transport.value())

    def test_refused_released(self) -> None:
        """
        Once the first connection closes, the address may connect again.
        """
        first, _ = self.connect(self.telnet, "192.0.2.1")
        first.connectionLost(None)
        protocol, transport = self.connect(self.telnet, "192.0.2.1")
        self.assertIn(b"Welcome", transport.value())

    def test_refused_cut_after_a_while(self) -> None:
        """
        A refused client that does not close is cut after a few seconds.
        """
        self.connect(self.telnet, "192.0.2.1")
        refused, transport = self.connect(self.telnet, "192.0.2.1")
        self.clock.advance(5)
        self.assertTrue(transport.disconnecting)

    def test_http_refusal(self) -> None:
        """
        The web door refuses with HTTP 503, Retry-After, and the reason.
        """
        response = http_refusal("the server is full")
        head, _, body = response.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"))
        self.assertIn(b"Retry-After: 60", head)
        self.assertIn(f"Content-Length: {len(body)}".encode(), head)
        self.assertEqual(body, b"the server is full\n")


class HubLimitsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.hub = self.make_hub()

    def make_hub(self, **limits: Any) -> ChatFactory:
        hub = ChatFactory(
            ServerConfig(), self.clock, random.Random(1), limits=LimitsConfig(**limits)
        )
        self.successResultOf(hub.start())
        self.addCleanup(hub.stop, 0)
        return hub

    def connect(self, nick: str) -> tuple[FakeParticipant, User]:
        participant = FakeParticipant(address="192.0.2.9")
        user = self.hub.connect(participant)
        self.hub.execute(user, Nick(nick))
        participant.take()
        return participant, user

    def say(self, user: User, text: str) -> None:
        """What a door does with a line: check it, then run it."""
        if self.hub.received(user):
            self.hub.execute(user, Say(text))

    def texts(self, participant: FakeParticipant) -> list[str]:
        return [
            e.text if isinstance(e, events.RoomMessage | events.Error) else repr(e)
            for e in participant.take()
        ]

    def test_flood_dropped_with_one_notice(self) -> None:
        """
        Past the burst, lines are dropped and the flooder told to slow down
        once; the others get exactly the lines that were allowed, in order.
        """
        flooder_p, flooder = self.connect("flooder")
        bob_p, _ = self.connect("bob")
        bob_p.take()
        for n in range(20):
            self.say(flooder, f"line {n}")
        self.assertEqual(self.texts(bob_p), [f"line {n}" for n in range(10)])
        errors = [e for e in flooder_p.take() if isinstance(e, events.Error)]
        self.assertEqual([e.code for e in errors], ["rate-limited"])
        self.assertIn("slow down", errors[0].text)
        self.assertTrue(flooder.connected)
        # At 5 a second, a line every 0.2 s goes through again.
        self.clock.advance(0.2)
        self.say(flooder, "calmer")
        self.assertEqual(self.texts(bob_p), ["calmer"])

    def test_flooder_disconnected(self) -> None:
        """
        Going on after the notice (C{flood_disconnect} more lines) closes
        the connection with a reason the flooder and the room see.
        """
        flooder_p, flooder = self.connect("flooder")
        bob_p, _ = self.connect("bob")
        bob_p.take()
        for n in range(10 + 1 + 30):
            self.say(flooder, f"line {n}")
        self.assertFalse(flooder.connected)
        self.assertEqual(flooder_p.close_why, "policy")
        goodbye = flooder_p.received[-1]
        assert isinstance(goodbye, events.Goodbye)
        self.assertIn("flooding", goodbye.reason)
        quit_notice = bob_p.received[-1]
        assert isinstance(quit_notice, events.Presence)
        self.assertEqual((quit_notice.kind, quit_notice.reason), ("quit", "flooding"))

    def test_calm_resets_the_warning(self) -> None:
        """
        A user who calmed down (their allowance refilled) starts afresh:
        a later burst earns a new notice rather than a disconnect.
        """
        flooder_p, flooder = self.connect("flooder")
        for n in range(11 + 25):
            self.say(flooder, f"line {n}")
        self.clock.advance(10)
        for n in range(11 + 25):
            self.say(flooder, f"again {n}")
        self.assertTrue(flooder.connected)
        errors = [e for e in flooder_p.take() if isinstance(e, events.Error)]
        self.assertEqual(len(errors), 2)

    def test_room_rate(self) -> None:
        """
        A room takes at most C{room_message_burst} at once from everyone;
        the sender of one over it is told it was not sent.
        """
        self.hub = self.make_hub(room_messages_per_second=1, room_message_burst=3)
        alice_p, alice = self.connect("alice")
        bob_p, bob = self.connect("bob")
        bob_p.take()
        alice_p.take()
        for n in range(2):
            self.say(alice, f"a{n}")
            self.say(bob, f"b{n}")
        *delivered, error = self.texts(bob_p)
        self.assertEqual(delivered, ["a0", "b0", "a1"])
        self.assertIn("#lobby is too busy (over 1 message a second)", error)
        self.assertEqual(self.texts(alice_p), ["a0", "b0", "a1"])

    def test_nick_changes(self) -> None:
        """
        Nick changes past C{nick_changes_per_minute} are refused.
        """
        participant, user = self.connect("n0")  # one change spent
        for n in range(1, 6):
            self.hub.execute(user, Nick(f"n{n}"))
        self.assertEqual(user.nick, "n4")
        error = participant.received[-1]
        assert isinstance(error, events.Error)
        self.assertIn("too many nick changes (at most 5 a minute)", error.text)
        self.clock.advance(12)
        self.hub.execute(user, Nick("n9"))
        self.assertEqual(user.nick, "n9")

    def test_joins_and_rooms(self) -> None:
        """
        Joins past C{joins_per_minute}, rooms past C{max_rooms_per_user}
        and full rooms are each refused with a reason; no room is created
        by a refused join.
        """
        self.hub = self.make_hub(
            joins_per_minute=3, max_rooms_per_user=3, max_users_per_room=1
        )
        participant, user = self.connect("alice")
        self.hub.execute(user, Join("#a"))
        self.hub.execute(user, Join("#b"))
        self.hub.execute(user, Join("#c"))
        error = participant.received[-1]
        assert isinstance(error, events.Error)
        self.assertEqual(error.code, "too-many-rooms")
        self.assertNotIn("#c", self.hub._rooms)
        self.hub.execute(user, Part("#a"))
        self.hub.execute(user, Join("#d"))
        self.hub.execute(user, Part("#d"))
        self.hub.execute(user, Join("#e"))
        error = participant.received[-1]
        assert isinstance(error, events.Error)
        self.assertIn("too many joins (at most 3 a minute)", error.text)
        # #lobby holds one user, and alice is that one.
        bob_p = FakeParticipant(address="192.0.2.10")
        bob = self.hub.connect(bob_p)
        self.assertEqual(bob.rooms, [])
        full = [e for e in bob_p.received if isinstance(e, events.Error)]
        self.assertEqual([e.code for e in full], ["room-full"])

    def test_silent_connection_closed(self) -> None:
        """
        A connection that sends nothing within C{silent_timeout} is closed
        with the reason; one that spoke stays.
        """
        silent_p = FakeParticipant(address="192.0.2.9")
        silent = self.hub.connect(silent_p)
        talker_p, talker = self.connect("talker")
        self.hub.received(talker)
        self.clock.advance(125)
        self.assertFalse(silent.connected)
        goodbye = silent_p.received[-1]
        assert isinstance(goodbye, events.Goodbye)
        self.assertEqual(goodbye.reason, "nothing received in 2m")
        self.assertTrue(talker.connected)

    def test_idle_warned_then_closed(self) -> None:
        """
        A telnet user idle for C{idle_timeout} is warned five minutes
        before and then disconnected; a web user (pinged by Autobahn) is
        not; any line resets the clock.
        """
        idle_p, idle = self.connect("idle")
        web_p = FakeParticipant("web", "192.0.2.11")
        web_p.pings = True  # type: ignore[attr-defined]
        web = self.hub.connect(web_p)
        for user in (idle, web):
            self.hub.received(user)
        self.clock.advance(3300 + 5)
        warning = idle_p.received[-1]
        assert isinstance(warning, events.Status)
        self.assertIn("you will be disconnected in 4m 55s unless", warning.text)
        self.clock.advance(300)
        self.assertFalse(idle.connected)
        self.assertTrue(web.connected)

    def test_login_timeout(self) -> None:
        """
        With C{login_timeout}, a guest who picks no nick in time is closed.
        """
        self.hub = self.make_hub(login_timeout=30)
        guest_p = FakeParticipant(address="192.0.2.9")
        guest = self.hub.connect(guest_p)
        self.hub.received(guest)
        named_p, named = self.connect("named")
        self.clock.advance(35)
        self.assertFalse(guest.connected)
        self.assertTrue(named.connected)

    def test_reload_applies(self) -> None:
        """
        New limits apply at once on reload, with fresh allowances.
        """
        flooder_p, flooder = self.connect("flooder")
        for n in range(11):
            self.say(flooder, f"line {n}")
        self.hub.reconfigure(
            self.hub.config,
            self.hub.history,
            self.hub.operators,
            LimitsConfig(messages_per_second=0, room_messages_per_second=0),
        )
        flooder_p.take()
        for n in range(100):
            self.say(flooder, f"more {n}")
        self.assertFalse([e for e in flooder_p.take() if isinstance(e, events.Error)])


class SlowTelnetTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.hub = ChatFactory(
            ServerConfig(),
            self.clock,
            random.Random(1),
            limits=LimitsConfig(
                output_queue=4096, messages_per_second=0, room_messages_per_second=0
            ),
        )
        self.factory = TelnetFactory(self.hub)

    def test_lines_skipped_then_stuck(self) -> None:
        """
        A client whose socket is full has its oldest lines replaced by one
        "[N lines skipped]" marker and gets the rest once it reads again;
        one that stays stuck for C{stuck_timeout} is cut, counted, and shown
        to the room as unable to keep up.  The sender never waits.
        """
        slow, fast, talker = (Client(self.factory) for _ in range(3))
        for client, nick in ((slow, "slow"), (fast, "fast"), (talker, "talker")):
            client.send(f"/nick {nick}\r\n/color off\r\n".encode())
        for client in (slow, fast, talker):
            client.take()
        queue = slow.protocol.queue  # type: ignore[attr-defined]
        assert queue is not None
        queue.pauseProducing()  # what a full socket buffer does
        for n in range(200):
            talker.send(f"message {n:03d} {'x' * 40}\r\n".encode())
        self.assertEqual(len(fast.lines()), 200)
        self.assertLessEqual(queue.size, 4096 + 100)
        queue.resumeProducing()
        lines = slow.lines()
        marker = re.fullmatch(
            r"\*\*\* \[(\d+) lines skipped: you were not reading fast enough\]",
            lines[0],
        )
        assert marker is not None, lines[0]
        skipped = int(marker.group(1))
        self.assertEqual(skipped + len(lines) - 1, 200)
        self.assertTrue(lines[-1].endswith(f"message 199 {'x' * 40}"))
        # Stuck for good: cut once the limit is hit after stuck_timeout.
        queue.pauseProducing()
        self.clock.advance(31)
        for n in range(200):
            talker.send(f"again {n:03d} {'x' * 40}\r\n".encode())
        self.assertTrue(slow.transport.disconnecting)
        self.assertEqual(self.hub.metrics.slow_consumer_disconnects, 1)
        self.assertIn(
            "*** slow (telnet) quit (could not keep up)", "\n".join(fast.lines())
        )


class SlowWebTests(WebTestCase):
    def test_slow_reader_closed_with_policy(self) -> None:
        """
        A WebSocket client that falls C{output_queue} behind is closed with
        1008 and a reason; the others got every message.
        """
        self.hub.limits = LimitsConfig(
            output_queue=4096, messages_per_second=0, room_messages_per_second=0
        )
        alice, bob = self.people("alice", "bob")
        slow, server, _ = self.connect(nick="slow")
        self.flush()
        alice.take()
        server._queue.pauseProducing()
        for n in range(100):
            bob.send(type="message", message=f"message {n} {'x' * 50}")
        self.flush()
        self.assertEqual(
            len([f for f in alice.take() if f.get("type") == "usermsg"]), 100
        )
        self.assertEqual(self.hub.metrics.slow_consumer_disconnects, 1)
        self.clock.advance(2)
        self.flush()
        assert slow.closed is not None
        self.assertEqual(slow.closed[1], 1008)
        self.assertIn("too slow", slow.closed[2] or "")


class BatchedOutputTests(SynchronousTestCase):
    """
    A running server gathers each client's writes per reactor turn.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.writes: list[bytes] = []
        self.overflows = 0
        self.queue = OutputQueue(
            self.writes.append, 100, self.overflowed, self.clock, Batcher(self.clock)
        )

    def overflowed(self, queue: OutputQueue) -> None:
        self.overflows += 1

    def test_first_write_at_once_then_one_per_turn(self) -> None:
        """
        A client's first line of a turn goes out at once (a quiet server
        adds no delay); the lines after it in that turn reach the socket
        as one write, in order, at the start of the next turn.  The next
        turn's first line goes out at once again.
        """
        self.queue.push(b"one\r\n")
        self.assertEqual(self.writes, [b"one\r\n"])
        self.queue.push(b"two\r\n")
        self.queue.push(b"three\r\n")
        self.assertEqual(self.writes, [b"one\r\n"])
        self.clock.advance(0)
        self.assertEqual(self.writes, [b"one\r\n", b"two\r\nthree\r\n"])
        self.queue.push(b"four\r\n")
        self.assertEqual(self.writes[-1], b"four\r\n")

    def test_each_client_first_write_at_once(self) -> None:
        """
        In a fan-out, every client's first line of the turn goes out at
        once, not only the first client's.
        """
        batcher = Batcher(self.clock)
        other: list[bytes] = []
        mine = OutputQueue(
            self.writes.append, 100, self.overflowed, self.clock, batcher
        )
        theirs = OutputQueue(other.append, 100, self.overflowed, self.clock, batcher)
        mine.push(b"a")
        theirs.push(b"a")
        self.assertEqual((self.writes, other), ([b"a"], [b"a"]))

    def test_pause_keeps_order(self) -> None:
        """
        When the transport pauses the queue before the turn's batch went
        out, the batch waits ahead of what comes after, and a resume sends
        everything in the order it was delivered.
        """
        self.queue.push(b"a")
        self.queue.push(b"b")
        self.queue.pauseProducing()
        self.queue.push(b"c")
        self.clock.advance(0)
        self.assertEqual(self.writes, [b"a"])
        self.assertEqual(list(self.queue.pending), [b"b", b"c"])
        self.queue.resumeProducing()
        self.assertEqual(self.writes, [b"a", b"b", b"c"])
        self.queue.push(b"d")
        self.clock.advance(0)
        self.assertEqual(self.writes, [b"a", b"b", b"c", b"d"])

    def test_unsent(self) -> None:
        """
        A closing connection gets everything not written yet, in order, and
        the queue takes nothing more.
        """
        self.queue.push(b"a")
        self.queue.push(b"b")
        self.queue.push(b"c")
        self.assertEqual(self.queue.unsent(), [b"b", b"c"])
        self.queue.push(b"d")
        self.clock.advance(0)
        self.assertEqual(self.writes, [b"a"])

    def test_overflow_while_paused(self) -> None:
        """
        Only what waits for a paused transport counts against the limit.
        """
        self.queue.push(b"x" * 90)
        self.clock.advance(0)
        self.queue.pauseProducing()
        self.queue.push(b"y" * 90)
        self.assertEqual(self.overflows, 0)
        self.queue.push(b"z" * 20)
        self.assertEqual(self.overflows, 1)

    def test_failing_write_spares_others(self) -> None:
        """
        A client whose write fails costs the others nothing, whether the
        write was at once or batched.
        """

        def broken(data: bytes) -> None:
            raise OSError("gone")

        batcher = Batcher(self.clock)
        bad = OutputQueue(broken, 100, self.overflowed, self.clock, batcher)
        good = OutputQueue(
            self.writes.append, 100, self.overflowed, self.clock, batcher
        )
        for line in (b"a", b"b"):
            bad.push(line)
            good.push(line)
        self.assertEqual(self.writes, [b"a"])
        self.clock.advance(0)
        self.assertEqual(self.writes, [b"a", b"b"])
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 2)


class SocketWriterTests(SynchronousTestCase):
    """
    L{socket_writer} sends straight to the socket only when Twisted holds
    nothing for it.
    """

    def test_other_transports_write(self) -> None:
        """
        A transport that is no TCP connection is written to as usual.
        """
        transport = StringTransport()
        socket_writer(transport)(b"hello")
        self.assertEqual(transport.value(), b"hello")

    def test_straight_to_socket_then_buffered(self) -> None:
        """
        On a real TCP connection with an empty buffer the bytes go to the
        socket at once; what it does not take is left to Twisted's write,
        and while Twisted holds bytes new ones queue behind them.
        """

        sent: list[bytes] = []
        written: list[bytes] = []

        class Socket:
            takes = 3

            def send(self, data: bytes) -> int:
                sent.append(bytes(data[: self.takes]))
                return min(len(data), self.takes)

        connection = tcp.Connection.__new__(tcp.Connection)
        connection.socket = Socket()  # type: ignore[assignment]
        connection.connected = True
        connection.disconnecting = False
        connection.dataBuffer = b""
        connection.offset = 0
        connection._tempDataLen = 0
        connection.write = written.append  # type: ignore[method-assign]
        write = socket_writer(connection)
        write(b"hello")
        self.assertEqual((sent, written), ([b"hel"], [b"lo"]))
        connection._tempDataLen = 2
        write(b"more")
        self.assertEqual((sent, written), ([b"hel"], [b"lo", b"more"]))
