"""
Tests for L{tchat.telnet}: the telnet door over in-memory transports.
"""

import random
import time

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import alsoProvides

from tchat import events, telnet
from tchat.config import LimitsConfig, ServerConfig
from tchat.events import Renderings
from tchat.hub import ChatFactory
from tchat.output import GOODBYE_DRAIN
from tchat.palette import PALETTE
from tchat.passwords import Checked
from tchat.telnet import NEGOTIATION_FLOOD, NEGOTIATION_MOST, TelnetFactory
from tchat.terminal import encode
from tests.support import TCPStringTransport
from tests.support import TelnetClient as Client

IAC, DO, DONT, WILL, WONT = b"\xff", b"\xfd", b"\xfe", b"\xfb", b"\xfc"
ECHO, TTYPE = b"\x01", b"\x18"


class TelnetTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.stamp = time.strftime("[%H:%M]", time.localtime(self.clock.seconds()))
        self.hub = ChatFactory(
            ServerConfig(reconnect_grace=0, name="Hub", motd=("line one", "line two")),
            self.clock,
            random.Random(2),
            limits=LimitsConfig(max_line=64),
        )
        self.factory = TelnetFactory(self.hub)

    def client(self, nick: str | None = None, colours: bool = False) -> Client:
        client = Client(self.factory)
        if nick is not None:
            client.send(f"/nick {nick}\r\n".encode())
        if not colours:
            client.send(b"/color off\r\n")
        return client

    def people(self, *nicks: str) -> list[Client]:
        clients = [self.client(nick) for nick in nicks]
        for client in clients:
            client.take()
        return clients


class ConnectTests(TelnetTestCase):
    """
    What a telnet user sees on arrival, and socket settings.
    """

    def test_welcome(self) -> None:
        """
        On connect: the server name, the MOTD, the guest nick with a hint to
        /help, then the join of the default room.
        """
        client = Client(self.factory)
        nick = client.user.nick
        self.assertEqual(
            client.lines(),
            [
                "*** Welcome to Hub",
                "  line one",
                "  line two",
                f"*** You are {nick}. /nick NAME changes it; /help lists commands.",
                f"*** Your resume code is {client.user.code}: after a reconnect, "
                f"/resume {client.user.code} brings back your nick, rooms and "
                "what you missed.",
                f"{self.stamp} *** you joined #lobby",
            ],
        )

    def test_nodelay(self) -> None:
        """
        Accepted TCP connections turn Nagle off: chat lines go out at once.
        """
        self.assertTrue(Client(self.factory).transport.nodelay)

    def test_no_negotiation_sent(self) -> None:
        """
        The server starts no telnet negotiation, so C{nc} users see no
        IAC bytes.
        """
        self.assertNotIn(IAC, Client(self.factory).take())


class LineTests(TelnetTestCase):
    """
    Line splitting, decoding and limits.
    """

    def test_line_ends(self) -> None:
        """
        CR LF, LF and a bare CR each end a line, even split across reads.
        """
        alice, bob = self.people("alice", "bob")
        alice.send(b"one\r\ntwo\nthree\rfo")
        alice.send(b"ur\r")
        alice.send(b"\n")
        self.assertEqual(
            bob.lines(),
            [f"{self.stamp} <alice> {w}" for w in ("one", "two", "three", "four")],
        )

    def test_bare_cr_at_end_of_read(self) -> None:
        """
        A CR that ends a read ends the line at once (clients that send CR
        alone are not a line behind); an LF in the next read is not taken
        as a second, empty line.
        """
        alice, bob = self.people("alice", "bob")
        alice.send(b"first\r")
        self.assertEqual(bob.lines(), [f"{self.stamp} <alice> first"])
        alice.send(b"\nsecond\r")
        alice.send(b"\x00third\r\n")
        self.assertEqual(
            bob.lines(), [f"{self.stamp} <alice> second", f"{self.stamp} <alice> third"]
        )

    def test_nothing_after_quit(self) -> None:
        """
        Lines that arrive after C{/quit} in the same read are ignored: the
        goodbye is the last thing the user gets.
        """
        alice, bob = self.people("alice", "bob")
        alice.send(b"/quit bye\r\n/bogus\r\nafter quit\r\n")
        self.assertEqual(alice.lines(), ["*** Goodbye (bye)"])
        self.assertEqual(bob.lines(), [f"{self.stamp} *** alice (telnet) quit (bye)"])

    def test_invalid_utf8_replaced(self) -> None:
        """
        Invalid UTF-8 becomes U+FFFD instead of breaking anything.
        """
        alice, bob = self.people("alice", "bob")
        alice.send(b"bad \xc3\x28 utf \xff\xff8\r\n")
        self.assertEqual(bob.lines(), [f"{self.stamp} <alice> bad \ufffd( utf \ufffd8"])

    def test_escape_sequences_never_relayed(self) -> None:
        """
        A user cannot clear or retitle another user's terminal.
        """
        alice, bob = self.people("alice", "bob")
        alice.send(b"hello \x1b[2J\x1b[H\x1b]0;pwned\x07there\x07\x08\r\n")
        received = bob.take()
        self.assertNotIn(b"\x1b", received)
        self.assertEqual(received.decode(), f"{self.stamp} <alice> hello there\r\n")

    def test_long_line_refused_connection_kept(self) -> None:
        """
        A line over the limit gets one error and is dropped whole, even when
        it arrives in pieces; the next line is delivered.
        """
        alice, bob = self.people("alice", "bob")
        alice.send(b"x" * 50)
        alice.send(b"y" * 50)
        alice.send(b"z" * 50)
        alice.send(b"zz\r\nnext line\r\n")
        self.assertEqual(
            alice.lines(), ["!!! line too long (over 64 bytes); it was dropped"]
        )
        self.assertEqual(bob.lines(), [f"{self.stamp} <alice> next line"])
        self.assertFalse(alice.transport.disconnecting)

    def test_long_line_in_one_read(self) -> None:
        """
        A complete over-long line followed by good lines in the same read:
        only the long one is lost.
        """
        alice, bob = self.people("alice", "bob")
        alice.send(b"a\r\n" + b"x" * 100 + b"\r\nb\r\n")
        self.assertEqual(
            bob.lines(), [f"{self.stamp} <alice> a", f"{self.stamp} <alice> b"]
        )
        self.assertEqual(len(alice.lines()), 1)

    def test_line_at_limit_accepted(self) -> None:
        """
        A line of exactly the limit is fine.
        """
        alice, bob = self.people("alice", "bob")
        alice.send(b"x" * 64 + b"\r\n")
        self.assertEqual(bob.lines(), [f"{self.stamp} <alice> " + "x" * 64])


class NegotiationTests(TelnetTestCase):
    """
    Telnet IAC sequences are refused or consumed, never shown.
    """

    def test_do_refused(self) -> None:
        """
        IAC DO TTYPE is answered IAC WONT TTYPE; the text around it arrives
        clean.
        """
        alice, bob = self.people("alice", "bob")
        alice.send(b"hel" + IAC + DO + TTYPE + b"lo\r\n")
        self.assertEqual(alice.take(), IAC + WONT + TTYPE)
        self.assertEqual(bob.lines(), [f"{self.stamp} <alice> hello"])

    def test_will_refused(self) -> None:
        """
        IAC WILL ECHO is answered IAC DONT ECHO.
        """
        (alice,) = self.people("alice")
        alice.send(IAC + WILL + ECHO)
        self.assertEqual(alice.take(), IAC + DONT + ECHO)

    def test_negotiation_flood_closed(self) -> None:
        """
        A client that keeps asking for options it was refused (each request
        costs a parse byte by byte, and it need not count as a line) is
        told why and closed once it has been refused 200 times; everyone
        else goes on.
        """
        alice, bob = self.people("alice", "bob")
        alice.send((IAC + DO + TTYPE) * NEGOTIATION_MOST)
        self.assertEqual(alice.take(), (IAC + WONT + TTYPE) * NEGOTIATION_MOST)
        self.assertFalse(alice.transport.disconnecting)
        alice.send(IAC + DO + TTYPE + IAC + DO + ECHO)
        self.assertEqual(
            alice.take(),
            IAC + WONT + TTYPE + IAC + WONT + ECHO
            + f"*** Goodbye ({NEGOTIATION_FLOOD})\r\n".encode(),
        )  # fmt: skip
        self.assertTrue(alice.transport.disconnecting)
        self.assertEqual(
            bob.lines(), [f"{self.stamp} *** alice (telnet) quit (flooding)"]
        )
        alice.send(b"still here?\r\n")
        self.assertEqual(bob.lines(), [], "nothing more is read from it")

    def test_sent_off_reads_nothing_more(self) -> None:
        """
        A client sent off for flooding gets its goodbye, our side closes,
        and nothing more is read from it (its input would cost a core to
        read at loopback speed); it is cut a few seconds later.
        """

        class Socket(TCPStringTransport):
            socket = object()
            write_closed = False

            def loseWriteConnection(self) -> None:
                self.write_closed = True

        protocol = self.factory.buildProtocol(None)
        tcp = Socket()
        protocol.makeConnection(tcp)
        tcp.clear()
        protocol.dataReceived((IAC + DO + TTYPE) * (NEGOTIATION_MOST + 1))
        self.assertTrue(tcp.value().endswith(f"({NEGOTIATION_FLOOD})\r\n".encode()))
        self.assertEqual((tcp.write_closed, tcp.producerState), (True, "paused"))
        self.assertFalse(tcp.disconnecting)
        self.clock.advance(GOODBYE_DRAIN)
        self.assertTrue(tcp.disconnecting)

    def test_commands_and_subnegotiation_consumed(self) -> None:
        """
        Interrupt, are-you-there and a subnegotiation vanish from the text.
        """
        alice, bob = self.people("alice", "bob")
        alice.send(
            b"a"
            + IAC
            + b"\xf4"
            + b"b"
            + IAC
            + b"\xf6c"
            + IAC
            + b"\xfa\x18\x00xterm"
            + IAC
            + b"\xf0d\r\n"
        )
        self.assertEqual(bob.lines(), [f"{self.stamp} <alice> abcd"])

    def test_invalid_command_closes_cleanly(self) -> None:
        """
        IAC followed by a byte that is no telnet command: the client is told
        why and disconnected; others see it lost and carry on.
        """
        alice, bob = self.people("alice", "bob")
        alice.send(IAC + b"\x01")
        self.assertEqual(
            alice.take(), b"!!! invalid telnet command sequence; closing\r\n"
        )
        self.assertTrue(alice.transport.disconnecting)
        # The server closed it: a clean close at TCP level, but not the
        # user's choice, so others see it lost.
        alice.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(
            bob.lines(), [f"{self.stamp} *** alice (telnet) lost connection"]
        )

    def test_endless_subnegotiation_dropped(self) -> None:
        """
        A subnegotiation that never ends is cut off with a reason, and others
        see the connection lost, not a quit.
        """
        alice, bob = self.people("alice", "bob")
        alice.send(IAC + b"\xfa" + TTYPE + b"z" * 5000)
        self.assertEqual(alice.lines(), ["!!! telnet subnegotiation too long; closing"])
        self.assertTrue(alice.transport.disconnecting)
        alice.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(
            bob.lines(), [f"{self.stamp} *** alice (telnet) lost connection"]
        )
        self.flushLoggedErrors()

    def test_replies_in_order_with_answers(self) -> None:
        """
        The refusals a read asks for and the answers to its lines reach the
        client in the order it asked.
        """
        (alice,) = self.people("alice")
        alice.send(IAC + DO + ECHO + b"/motd\r\n" + IAC + WILL + TTYPE)
        data = alice.take()
        self.assertTrue(data.startswith(IAC + WONT + ECHO + b"*** Message of the day"))
        self.assertTrue(data.endswith(b"line two\r\n" + IAC + DONT + TTYPE))

    def test_refusals_take_the_output_queue(self) -> None:
        """
        A client that floods C{IAC DO} and reads nothing: its refusals wait
        in its output queue (one item per read), never in the transport,
        bounded by C{output_queue}; once it has read nothing for
        C{stuck_timeout} and hits the bound again it is cut, and the room
        is told it could not keep up.  (Refusals are counted too, and a
        client refused too often is closed: that is lifted here, to show
        the queue's bound on its own.)
        """
        self.patch(telnet, "NEGOTIATION_MOST", 10**9)
        self.hub.settings.limits = LimitsConfig(max_line=64, output_queue=4096)
        alice, bob = self.people("alice", "bob")
        queue = bob.protocol.queue  # type: ignore[attr-defined]
        assert queue is not None
        queue.pauseProducing()  # what a full socket buffer does
        flood = b"".join(IAC + DO + bytes([n % 40]) for n in range(1000))
        bob.send(flood)
        refusals = b"".join(IAC + WONT + bytes([n % 40]) for n in range(1000))
        self.assertEqual(list(queue.pending), [refusals])
        for _ in range(20):
            bob.send(flood)
        self.assertLessEqual(queue.size, 4096)
        self.assertEqual(bob.take(), b"")
        self.assertFalse(bob.transport.disconnecting)
        self.clock.advance(30)
        bob.send(flood)
        bob.send(flood)
        self.assertTrue(bob.transport.disconnecting)
        self.assertEqual(
            alice.lines(), [f"{self.stamp} *** bob (telnet) quit (could not keep up)"]
        )

    def test_escaped_iac_is_data(self) -> None:
        """
        IAC IAC is a literal 0xFF byte: invalid UTF-8, so U+FFFD.
        """
        alice, bob = self.people("alice", "bob")
        alice.send(b"a" + IAC + IAC + b"b\r\n")
        self.assertEqual(bob.lines(), [f"{self.stamp} <alice> a\ufffdb"])


class RenderTests(TelnetTestCase):
    """
    How events look on a terminal.
    """

    def test_no_echo(self) -> None:
        """
        The sender does not get their own room message back.
        """
        alice, bob = self.people("alice", "bob")
        alice.send(b"hi\r\n")
        self.assertEqual(alice.take(), b"")

    def test_away_not_shown(self) -> None:
        """
        Someone going away or coming back prints no line (it shows in
        /who, and to whoever writes to them).
        """
        alice, bob = self.people("alice", "bob")
        alice.send(b"/away lunch\r\n/back\r\n")
        self.assertEqual(bob.take(), b"")

    def test_colour(self) -> None:
        """
        Nicks are painted in the sender's ANSI colour unless the viewer
        turned colours off; C{/color NAME} changes it.
        """
        alice = self.client("alice")
        bob = self.client("bob", colours=True)
        alice.send(b"/color blue\r\nhi\r\n")
        bob.take()
        alice.send(b"again\r\n")
        self.assertEqual(bob.lines(), [f"{self.stamp} <\x1b[34malice\x1b[0m> again"])
        bob.send(b"/color off\r\n")
        bob.take()
        alice.send(b"plain\r\n")
        self.assertEqual(bob.lines(), [f"{self.stamp} <alice> plain"])

    def test_action(self) -> None:
        """
        C{/me waves} shows as C{* alice waves}.
        """
        alice, bob = self.people("alice", "bob")
        alice.send(b"/me waves\r\n")
        self.assertEqual(bob.lines(), [f"{self.stamp} * alice waves"])

    def test_other_room_named(self) -> None:
        """
        A message from a room that is not the viewer's current room shows the
        room's name.
        """
        alice, bob = self.people("alice", "bob")
        alice.send(b"/join #dev\r\n")
        bob.send(b"/join #dev\r\n/join #lobby\r\n")
        alice.take()
        bob.take()
        alice.send(b"over here\r\n/me points\r\n")
        self.assertEqual(
            bob.lines(),
            [
                f"{self.stamp} #dev <alice> over here",
                f"{self.stamp} #dev * alice points",
            ],
        )

    def test_private(self) -> None:
        """
        The receiver sees C{*alice* text}; the sender C{-> *bob* text}.
        """
        alice, bob = self.people("alice", "bob")
        alice.send(b"/msg bob psst\r\n")
        self.assertEqual(bob.lines(), [f"{self.stamp} *alice* psst"])
        self.assertEqual(alice.lines(), [f"{self.stamp} -> *bob* psst"])

    def test_notices(self) -> None:
        """
        Presence notices name the door, never the address.
        """
        alice, bob = self.people("alice", "bob")
        bob.send(
            b"/nick robert\r\n/join #dev\r\n/part\r\n/topic hello\r\n/quit bye all\r\n"
        )
        self.assertEqual(
            alice.lines(),
            [
                f"{self.stamp} *** bob (telnet) is now known as robert",
                f"{self.stamp} *** robert set the topic of #lobby: hello",
                f"{self.stamp} *** robert (telnet) quit (bye all)",
            ],
        )
        self.assertTrue(bob.transport.disconnecting)
        self.assertEqual(bob.lines()[-1], "*** Goodbye (bye all)")

    def test_replies(self) -> None:
        """
        C{/who}, C{/rooms}, C{/topic}, errors, C{/motd} and C{/help} read well.
        """
        alice, bob = self.people("alice", "bob")
        alice.send(b"/who\r\n/rooms\r\n/topic\r\n/nope\r\n/motd\r\n")
        self.assertEqual(
            alice.lines(),
            [
                "*** #lobby (2): alice (telnet), bob (telnet)",
                "*** Rooms:",
                "  #lobby  2 users",
                "*** #lobby has no topic",
                "!!! unknown command /nope; type /help for the list "
                "(start a message with // to send a line beginning with /)",
                "*** Message of the day:",
                "  line one",
                "  line two",
            ],
        )
        alice.send(b"/help\r\n")
        help_lines = alice.lines()
        self.assertEqual(help_lines[0], "*** Commands:")
        self.assertIn(
            "  //text                send a line that starts with /", help_lines
        )
        self.assertIn(
            "  /register PASSWORD    register your nick, so nobody else can take "
            "it (8 characters or more)",
            help_lines,
        )


class EncodeOnceTests(TelnetTestCase):
    """
    Fan-out encodes once per distinct rendering, not once per recipient.
    """

    def test_one_encoding_for_many_viewers(self) -> None:
        """
        A line to 50 telnet users with the same settings is encoded once;
        users with colours on share a second encoding.
        """
        encodings: list[Renderings] = []
        original = Renderings.get

        def spy(self: Renderings, key: object, render, *args):
            if self not in encodings:
                encodings.append(self)
            return original(self, key, render, *args)

        self.patch(Renderings, "get", spy)
        sender, *viewers = self.people(*[f"u{i}" for i in range(50)])
        for viewer in viewers[:10]:
            viewer.send(b"/color on\r\n")
        encodings.clear()
        sender.send(b"hello all\r\n")
        (renderings,) = encodings
        self.assertEqual(renderings.encoded, 2)
        self.assertEqual(viewers[20].lines(), [f"{self.stamp} <u0> hello all"])


class DisconnectTests(TelnetTestCase):
    """
    Connections that end.
    """

    def test_clean_close(self) -> None:
        """
        A client that closes the connection (telnet's "quit", nc at end of
        input) is shown as having quit.
        """
        alice, bob = self.people("alice", "bob")
        bob.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(
            alice.lines(), [f"{self.stamp} *** bob (telnet) quit (connection closed)"]
        )

    def test_abrupt_disconnect(self) -> None:
        """
        A connection that drops is announced as lost to the others.
        """
        alice, bob = self.people("alice", "bob")
        bob.protocol.connectionLost(Failure(ConnectionLost("reset")))
        self.assertEqual(
            alice.lines(), [f"{self.stamp} *** bob (telnet) lost connection"]
        )
        self.assertEqual(self.hub.users, 1)


class OperationsRenderTests(SynchronousTestCase):
    """
    What telnet users see of operators' notices, listings and a stop.
    """

    def test_notice(self) -> None:
        """
        A notice is a stamped C{***} line; an announcement says who made it.
        """
        ts = time.mktime((2026, 11, 21, 14, 3, 0, 0, 0, -1))
        kick = events.Notice(ts, "kick", "alice", "alice kicked bob (web): spam")
        self.assertEqual(
            encode(kick, ()),
            b"[14:03] *** alice kicked bob (web): spam\r\n",
        )
        said = events.Notice(ts, "announce", "alice", "back at noon")
        self.assertEqual(
            encode(said, ()), b"[14:03] *** Announcement from alice: back at noon\r\n"
        )

    def test_rooms_paged(self) -> None:
        """
        A page of C{/rooms} says which page of how many, how many rooms
        there are, and which command shows the next (the first, after the
        last); a list that fits one page says nothing of pages.
        """
        rooms = (events.RoomInfo("#a", 1, None), events.RoomInfo("#b", 2, "x"))
        self.assertEqual(
            encode(events.RoomList(rooms, 2, 3, 250), ()),
            b"*** Rooms (page 2 of 3, 250 in all; /rooms 3 for the next):\r\n"
            b"  #a  1 user\r\n  #b  2 users  x\r\n",
        )
        self.assertTrue(
            encode(events.RoomList(rooms, 3, 3, 250), ()).startswith(
                b"*** Rooms (page 3 of 3, 250 in all; /rooms 1 for the next):"
            )
        )
        self.assertTrue(
            encode(events.RoomList(rooms), ()).startswith(b"*** Rooms:\r\n")
        )

    def test_listing_and_shutdown(self) -> None:
        """
        A listing is a title and indented lines; a stop says what to do.
        """
        listing = events.Listing(
            "bans", "1 bans in force", ("#1 address 192.0.2.1/32",)
        )
        self.assertEqual(
            encode(listing, ()),
            b"*** 1 bans in force:\r\n  #1 address 192.0.2.1/32\r\n",
        )
        self.assertTrue(
            encode(events.Shutdown("the server is shutting down"), ()).startswith(
                b"*** The server is going down (the server is shutting down)."
            )
        )


class ClearPasswords:
    """
    Account passwords "hashed" as themselves, at once: these tests are
    about what a terminal shows, not about argon2.
    """

    def hash(self, password: str) -> Deferred[str]:
        return succeed("clear:" + password)

    def check(self, password: str, encoded: str | None) -> Deferred[Checked]:
        return succeed(Checked(encoded == "clear:" + password))


class AccountRenderTests(SynchronousTestCase):
    """
    How accounts read on a terminal.
    """

    ts = time.mktime((2020, 1, 2, 14, 3, 0, 0, 0, -1))
    """A moment long past: history-like lines show its date."""

    def test_logged_in(self) -> None:
        """
        A registration says the nick is the user's and how to log in to it
        elsewhere; a login says when the last one was, if ever.
        """
        self.assertEqual(
            encode(events.LoggedIn("alice", registered=True), ()),
            b"*** alice is registered to you: nobody else can take it. Log in "
            b"from any door with /login alice PASSWORD\r\n",
        )
        self.assertEqual(
            encode(events.LoggedIn("alice", None, None, self.ts), ()),
            b"*** You are logged in as alice (last login Jan 02 14:03)\r\n",
        )
        self.assertEqual(
            encode(events.LoggedIn("alice", "never shown", 9.0), ()),
            b"*** You are logged in as alice\r\n",
        )

    def test_logged_out(self) -> None:
        """
        A logout says why, and the nick the user has now.
        """
        self.assertEqual(
            encode(events.LoggedOut("guest-1", "you logged out"), ()),
            b"*** You logged out; you are guest-1 now\r\n",
        )

    def test_mentions(self) -> None:
        """
        Mentions are dated lines between a header and a footer; none is
        said so.
        """
        found = (
            events.Mention(self.ts, "#a", 3, "bo", "hi al"),
            events.Mention(self.ts, "#b", 4, "bo", "pokes al", True),
        )
        self.assertEqual(
            encode(events.Mentions(found, fresh=True), ()),
            b"*** While you were away you were mentioned:\r\n"
            b"  [Jan 02 14:03] #a <bo> hi al\r\n"
            b"  [Jan 02 14:03] #b * bo pokes al\r\n"
            b"*** End of mentions (/mentions shows them again)\r\n",
        )
        self.assertTrue(
            encode(events.Mentions(found[:1]), ()).startswith(
                b"*** Mentions of you (the latest kept):\r\n"
            )
        )
        self.assertEqual(
            encode(events.Mentions(()), ()), b"*** No mentions of you are kept\r\n"
        )

    def test_members(self) -> None:
        """
        C{/who} marks members logged in to their registered nick, and shows
        away messages.
        """
        who = events.Who(
            "#a",
            (
                events.Member("al", "web", True),
                events.Member("bo", "telnet", False, "lunch"),
                events.Member("cy", "onion", True, "brb"),
            ),
        )
        self.assertEqual(
            encode(who, ()),
            b"*** #a (3): al (web, registered), bo (telnet, away: lunch), "
            b"cy (onion, registered, away: brb)\r\n",
        )

    def test_private_offline(self) -> None:
        """
        A private message kept while its recipient was away says so, with
        the date it was sent.
        """
        kept = events.PrivateMessage(
            self.ts, "bo", "web", PALETTE["red"], "al", "hi", False, offline=True
        )
        self.assertEqual(
            encode(kept, (False,)), b"[Jan 02 14:03] *bo* (while you were away) hi\r\n"
        )
        self.assertEqual(
            encode(kept, (True,)),
            b"[Jan 02 14:03] *\x1b[31mbo\x1b[0m* (while you were away) hi\r\n",
        )

    def test_presence(self) -> None:
        """
        A user logged in to their registered nick is marked; a rename marks
        the new nick only; a login reads as one, to others and to oneself.
        """
        stamp = time.strftime("[%H:%M]", time.localtime(self.ts)).encode()
        for event, is_self, text in (
            (
                events.Presence(self.ts, "join", "al", "web", "#a", registered=True),
                False,
                b"al (web, registered) joined #a",
            ),
            (
                events.Presence(self.ts, "lost", "al", "web", registered=True),
                False,
                b"al (web, registered) lost connection",
            ),
            (
                events.Presence(
                    self.ts, "nick", "g-1", "web", new_nick="al", registered=True
                ),
                False,
                b"g-1 (web) is now known as al (registered)",
            ),
            (
                events.Presence(
                    self.ts, "nick", "g-1", "web", new_nick="al", registered=True
                ),
                True,
                b"you are now known as al (registered)",
            ),
            (
                events.Presence(self.ts, "nick", "al", "web", new_nick="g-2"),
                False,
                b"al (web) is now known as g-2",
            ),
            (
                events.Presence(self.ts, "login", "al", "web", registered=True),
                False,
                b"al (web, registered) is logged in to the registered nick al",
            ),
            (
                events.Presence(self.ts, "login", "al", "web", registered=True),
                True,
                b"you are logged in to the registered nick al",
            ),
        ):
            self.assertEqual(
                encode(event, (is_self,)), stamp + b" *** " + text + b"\r\n"
            )


class AccountDoorTests(TelnetTestCase):
    """
    Accounts through the telnet door, plain and over TLS.
    """

    def setUp(self) -> None:
        super().setUp()
        self.hub = ChatFactory(
            ServerConfig(reconnect_grace=0, name="Hub"),
            self.clock,
            random.Random(2),
            passwords=ClearPasswords(),
        )
        self.factory = TelnetFactory(self.hub)

    def test_plain_register(self) -> None:
        """
        On the plain port, a password is answered with a warning first;
        the room sees the user marked registered.
        """
        alice, bob = self.people("alice", "bob")
        alice.send(b"/register correct horse\r\n")
        self.assertEqual(
            alice.lines(),
            [
                "*** note: telnet is not encrypted, so your password crossed the "
                "network readable; use the TLS telnet port, the onion service or "
                "(soon) SSH to log in",
                f"{self.stamp} *** you are logged in to the registered nick alice",
                "*** alice is registered to you: nobody else can take it. Log in "
                "from any door with /login alice PASSWORD",
            ],
        )
        self.assertEqual(
            bob.lines(),
            [
                f"{self.stamp} *** alice (telnet, registered) is logged in to the "
                "registered nick alice"
            ],
        )
        bob.send(b"/who\r\n")
        self.assertEqual(
            bob.lines(), ["*** #lobby (2): alice (telnet, registered), bob (telnet)"]
        )

    def test_tls_login(self) -> None:
        """
        Over TLS there is no warning; logging in carries on the session
        of the connection that held the nick, which is told why and closed.
        The others see only the guest go (announced at once here: the
        reconnect grace is off).
        """
        alice, bob = self.people("alice", "bob")
        alice.send(b"/register correct horse\r\n")
        bob.take()
        guest = self.client()
        alsoProvides(guest.transport, ISSLTransport)
        nick = guest.user.nick
        guest.take()
        bob.take()
        guest.send(b"/identify alice correct horse\r\n")
        last = time.strftime("%b %d %H:%M", time.localtime(self.clock.seconds()))
        self.assertEqual(
            guest.lines(),
            [
                "*** Welcome back, alice: you are in #lobby, logged in as alice. "
                "You missed nothing.",
                f"*** You are logged in as alice (last login {last})",
            ],
        )
        self.assertEqual(
            alice.lines()[-1], "*** Goodbye (logged in from another connection)"
        )
        self.assertEqual(
            bob.lines(), [f"{self.stamp} *** {nick} (telnet) quit (came back as alice)"]
        )
