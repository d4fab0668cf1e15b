# -*- test-case-name: tests.test_gate -*-
"""
Tests for L{tchat.gate}: who may open a connection (a swarm of them from
one address, a full server, the onion door in aggregate), how a refused
client is told why, and TCP keepalive on accepted sockets.
"""

import random
import socket
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tchat.config import LimitsConfig, ServerConfig
from tchat.gate import Admission, Gate, http_refusal, line_refusal, set_keepalive
from tchat.hub import ChatFactory
from tchat.metrics import Metrics
from tchat.telnet import TelnetFactory
from tests.support import TCPStringTransport


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
            ServerConfig(reconnect_grace=0),
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
