"""
Tests for L{tchat.ssh}, the SSH door, with conch's in-memory pieces: the
host key, who a client is, what is refused, and the terminal.
"""

import base64
import hashlib
import os
import random
import stat
from typing import Any

from twisted.conch.error import ValidPublicKey
from twisted.conch.ssh import transport as transport_module
from twisted.cred import error
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tchat import commands as c
from tchat import events
from tchat.config import LimitsConfig, ServerConfig
from tchat.hub import ChatFactory
from tchat.ssh import (
    MAX_LINE,
    AnyKey,
    AnyPassword,
    ChatAvatar,
    ChatSession,
    ChatTerminal,
    ChatTransport,
    Identity,
    Screen,
    fingerprint,
    host_key,
    wrap,
)
from tests.support import FakeParticipant, of


class _Creds:
    """What conch hands a checker for a public key or a password."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


class HostKeyTests(SynchronousTestCase):
    def test_made_once_owner_only_then_reused(self) -> None:
        """
        The first start makes an ed25519 key readable by its owner alone;
        later starts read the same key.
        """
        path = os.path.join(self.mktemp())
        first = host_key(path)
        self.assertEqual(first.type(), "Ed25519")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(host_key(path).public(), first.public())

    def test_fingerprint_as_ssh_keygen_shows_it(self) -> None:
        """SHA256 of the public key blob, base64 without padding."""
        key = host_key(self.mktemp())
        digest = hashlib.sha256(key.public().blob()).digest()
        expected = "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
        self.assertEqual(fingerprint(key), expected)


class IdentityTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.key = host_key(self.mktemp())
        self.blob = self.key.public().blob()

    def test_any_key_is_welcome(self) -> None:
        """
        A key offered without a signature is acceptable; with a good
        signature its holder is that key's fingerprint, under the name
        they gave.
        """
        checker = AnyKey()
        offer = _Creds(username=b"alice", blob=self.blob, signature=None, sigData=b"")
        self.failureResultOf(checker.requestAvatarId(offer), ValidPublicKey)
        data = b"session data"
        proof = _Creds(
            username=b"alice",
            blob=self.blob,
            sigData=data,
            signature=self.key.sign(data),
        )
        identity = self.successResultOf(checker.requestAvatarId(proof))
        self.assertEqual(identity.name, "alice")
        self.assertEqual(identity.fingerprint, fingerprint(self.key))
        self.assertTrue(identity.key.startswith("ssh-ed25519 "))

    def test_bad_signature_refused(self) -> None:
        other = host_key(self.mktemp())
        proof = _Creds(
            username=b"alice",
            blob=self.blob,
            sigData=b"data",
            signature=other.sign(b"data"),
        )
        self.failureResultOf(AnyKey().requestAvatarId(proof), error.UnauthorizedLogin)

    def test_password_is_kept_for_the_login(self) -> None:
        creds = _Creds(username=b"al\x1b[2Jice", password=b"correct horse")
        identity = self.successResultOf(AnyPassword().requestAvatarId(creds))
        self.assertEqual(identity, Identity("alice", password="correct horse"))


class RefusalTests(SynchronousTestCase):
    """Nothing but a terminal: other requests are refused."""

    def test_refused(self) -> None:
        hub = ChatFactory(ServerConfig(reconnect_grace=0), Clock())
        avatar = ChatAvatar(hub, "ssh", Identity("alice"))
        self.assertEqual(avatar.gotGlobalRequest(b"tcpip-forward", b""), 0)
        self.assertEqual(list(avatar.channelLookup), [b"session"])
        channel = ChatSession(avatar=avatar)
        self.assertEqual(channel.request_exec(b"\x00\x00\x00\x02ls"), 0)
        self.assertEqual(channel.request_subsystem(b"\x00\x00\x00\x04sftp"), 0)
        self.assertEqual(channel.request_x11_req(b""), 0)


class _Channel:
    """
    Enough of an SSH session channel: its unsent buffer, its connection,
    and what is written to it (into C{sink}, beside what the terminal
    emulation writes).
    """

    def __init__(self, sink: StringTransport | None = None) -> None:
        self.sink = sink if sink is not None else StringTransport()
        self.buf = b""
        self.closing = False
        self.lost = False
        self.requests: list[bytes] = []
        self.conn = self
        self.transport = self

    def getPeer(self) -> Any:
        return _Creds(address=_Creds(host="192.0.2.9"))

    def sendRequest(self, channel: object, kind: bytes, data: bytes) -> None:
        self.requests.append(kind)

    def write(self, data: bytes) -> None:
        self.sink.write(data)

    def loseConnection(self) -> None:
        self.lost = True


class TerminalTests(SynchronousTestCase):
    """The terminal: line editing, and lines printed above the prompt."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.hub = ChatFactory(
            ServerConfig(reconnect_grace=0, motd=()),
            self.clock,
            random.Random(4),
            limits=LimitsConfig(silent_timeout=0, output_queue=8192),
        )
        self.successResultOf(self.hub.start())
        self.bob_p = FakeParticipant()
        self.bob = self.hub.connect(self.bob_p)
        self.hub.execute(self.bob, c.Nick("bob"))
        self.transport = StringTransport()
        self.channel = _Channel(self.transport)
        self.terminal = ChatTerminal(
            self.hub, "ssh", Identity("alice"), (40, 24), self.channel
        )
        self.server = Screen(lambda: self.terminal)
        self.server.makeConnection(self.transport)
        self.bob_p.take()

    def type(self, keys: bytes) -> None:
        self.server.dataReceived(keys)

    def said(self) -> list[str]:
        return [m.text for m in of(events.RoomMessage, self.bob_p.take())]

    def test_lines_are_chat(self) -> None:
        """alice@ is alice, in the lobby; what she types is said there."""
        user = self.terminal.user
        assert user is not None
        self.assertEqual((user.nick, user.door), ("alice", "ssh"))
        self.assertEqual(user.address, "192.0.2.9")
        self.type(b"hello\r")
        self.assertEqual(self.said(), ["hello"])

    def test_editing_keys(self) -> None:
        """Arrows, Ctrl-A/E/W/U, and the history of what was sent."""
        self.type(b"wrld\x1b[D\x1b[D\x1b[Do\r")
        self.type(b"ello\x01h\x05!\r")
        self.type(b"keep drop\x17me\r")
        self.type(b"gone\x15kept\r")
        self.type(b"\x1b[A\x1b[A\r")
        self.assertEqual(self.said(), ["world", "hello!", "keep me", "kept", "keep me"])

    def test_incoming_line_above_what_is_typed(self) -> None:
        """
        A line that arrives while alice types is printed on a cleared line,
        and her prompt and half-typed line are drawn again under it.
        """
        self.type(b"half typ")
        self.transport.clear()
        self.hub.execute(self.bob, c.Say("news", None))
        out = self.transport.value()
        self.assertIn(b"\r\x1b[2K", out)
        self.assertIn(b"<\x1b[35mbob\x1b[0m> news\r\n", out)
        self.assertTrue(out.endswith(b"#lobby> half typ"), out)
        self.bob_p.take()
        self.type(b"ed\r")
        self.assertEqual(self.said(), ["half typed"])

    def test_pasted_line_echoed_at_once(self) -> None:
        """
        A line that arrives in one piece (pasted, or sent whole by the
        client) is echoed in one write, not one per character, and is the
        same line typed key by key would be, UTF-8 included.
        """
        writes: list[bytes] = []
        self.transport.write = writes.append  # type: ignore[method-assign]
        self.type("pasted café line".encode())
        self.assertEqual(writes, ["pasted café line".encode()])
        self.type(b"\r")
        self.assertEqual(self.said(), ["pasted café line"])

    def test_paste_inside_the_line(self) -> None:
        """Pasted text goes where the cursor is, after it the rest."""
        self.type(b"ac\x1b[D")
        self.type(b"bbb")
        self.type(b"\r")
        self.assertEqual(self.said(), ["abbbc"])

    def test_paste_past_the_longest_line(self) -> None:
        """A paste stops at the longest line a terminal takes."""
        self.transport.clear()
        self.type(b"y" * (MAX_LINE + 100))
        self.assertEqual(self.transport.value(), b"y" * MAX_LINE)
        self.assertEqual(len(self.terminal.lineBuffer), MAX_LINE)

    def test_ctrl_d_leaves(self) -> None:
        """Ctrl-D on an empty line is /quit: exit status 0, the others told."""
        self.type(b"\x04")
        quits = [p.kind for p in of(events.Presence, self.bob_p.take())]
        self.assertEqual(quits, ["quit"])
        self.assertEqual(self.channel.requests, [b"exit-status"])

    def test_slow_reader_bounded(self) -> None:
        """
        A client that stops reading (its window shut, the channel's buffer
        past the output queue) is disconnected, and the others told why.
        """
        self.channel.buf = b"x" * 9000
        self.hub.execute(self.bob, c.Say("anyone?", None))
        self.assertTrue(self.channel.lost)
        gone = of(events.Presence, self.bob_p.take())
        self.assertEqual(
            [(p.kind, p.reason) for p in gone], [("quit", "could not keep up")]
        )


def _ciphers(mac: bytes) -> transport_module.SSHCiphers:
    """aes256-ctr and C{mac} both ways, one set of keys for either side."""
    ciphers = transport_module.SSHCiphers(b"aes256-ctr", b"aes256-ctr", mac, mac)
    iv, key, mac_key = b"i" * 16, b"k" * 32, b"m" * 64
    ciphers.setKeys(iv, key, iv, key, mac_key, mac_key)
    return ciphers


class PacketTests(SynchronousTestCase):
    """The door's packet writer makes the packets conch itself reads."""

    def test_conch_reads_what_the_door_writes(self) -> None:
        """
        Packets of every size, across the 2**32 wrap of the sequence
        number, with each MAC conch offers: conch's own reader decrypts
        them and finds each MAC right, in order.
        """
        for mac in (b"hmac-sha2-512", b"hmac-sha2-256", b"hmac-sha1"):
            writer = ChatTransport()
            writer.currentEncryptions = _ciphers(mac)
            writer.transport = StringTransport()
            writer.outgoingPacketSequence = 2**32 - 2
            payloads = [b"x" * n for n in range(0, 70)]
            for payload in payloads:
                writer.sendPacket(94, payload)
            reader = transport_module.SSHServerTransport()
            reader.currentEncryptions = _ciphers(mac)
            reader.buf = writer.transport.value()
            reader.incomingPacketSequence = 2**32 - 2
            got = []
            for _ in payloads:
                reader.incomingPacketSequence &= 0xFFFFFFFF
                got.append(reader.getPacket())
            self.assertEqual(got, [bytes([94]) + p for p in payloads], mac)
            self.assertEqual(reader.buf, b"")

    def test_padding_is_random(self) -> None:
        """Two equal packets differ on the wire after their first block."""
        writer = ChatTransport()
        writer.currentEncryptions = _ciphers(b"hmac-sha2-256")
        writer.transport = StringTransport()
        writer.sendPacket(94, b"same")
        first = writer.transport.value()
        writer.transport.clear()
        writer.outgoingPacketSequence = 0
        writer.currentEncryptions = _ciphers(b"hmac-sha2-256")
        writer.sendPacket(94, b"same")
        self.assertNotEqual(first, writer.transport.value())


class ComingBackTests(SynchronousTestCase):
    """The same key within the reconnect grace carries the session on."""

    def test_same_key_carries_on(self) -> None:
        clock = Clock()
        clock.advance(1_700_000_000)
        hub = ChatFactory(ServerConfig(motd=()), clock, random.Random(5))
        self.successResultOf(hub.start())
        bob_p = FakeParticipant()
        bob = hub.connect(bob_p)
        hub.execute(bob, c.Nick("bob"))
        hub.execute(bob, c.Settle())
        key = host_key(self.mktemp()).public().toString("OPENSSH").decode()
        identity = Identity("alice", key, "SHA256:x")

        def arrive() -> ChatTerminal:
            terminal = ChatTerminal(hub, "ssh", identity, (80, 24), _Channel())
            Screen(lambda: terminal).makeConnection(StringTransport())
            return terminal

        first = arrive()
        alice = first.user
        assert alice is not None
        bob_p.take()
        first.connectionLost(None)
        hub.execute(bob, c.Msg("alice", "still there?"))
        bob_p.take()
        again = arrive()
        self.assertIs(again.user, alice)
        self.assertEqual(alice.nick, "alice")
        clock.advance(120)
        self.assertEqual(of(events.Presence, bob_p.take()), [])


class WrapTests(SynchronousTestCase):
    def test_wrapped_to_width_colours_aside(self) -> None:
        line = b"<\x1b[31mbob\x1b[0m> " + b"x" * 30
        pieces = wrap(line, 20)
        self.assertEqual(pieces[0], b"<\x1b[31mbob\x1b[0m> " + b"x" * 14)
        self.assertTrue(
            all(
                len(p.replace(b"\x1b[31m", b"").replace(b"\x1b[0m", b"")) <= 20
                for p in pieces
            )
        )
        self.assertEqual(b"".join(pieces).replace(b"  ", b"").count(b"x"), 30)

    def test_short_line_untouched(self) -> None:
        self.assertEqual(wrap(b"short", 80), [b"short"])
