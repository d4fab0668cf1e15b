"""
The IRC door in memory: an L{IRCConnection} on a L{StringTransport} and a
hub on a L{Clock}, beside telnet-like users of the hub (L{FakeParticipant}).
"""

from __future__ import annotations

import base64

from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tchat import commands as c
from tchat import events
from tchat.config import AccountsConfig, HistoryConfig, LimitsConfig, OperatorsConfig
from tchat.history import MemoryStore
from tchat.hub import ChatFactory
from tchat.irc import IRCConnection
from tchat.irc.wire import (
    MAX_LINE,
    PING_AFTER,
    PING_TIMEOUT,
    parse_line,
    parse_msgid,
    split_text,
)
from tests.support import FakeParticipant, FakePasswords, of, started_hub

NOW = 1_700_000_000.0
PASSWORD = "correct horse"


class IRCClient:
    """One IRC client of the door, as bytes in and lines out."""

    def __init__(self, hub: ChatFactory, clock: Clock, host: str = "192.0.2.7"):
        self.connection = IRCConnection(hub, "irc", clock)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
        self.connection.makeConnection(self.transport)

    def send(self, *lines: str | bytes) -> None:
        data = b"".join(
            (line if isinstance(line, bytes) else line.encode()) + b"\r\n"
            for line in lines
        )
        self.connection.dataReceived(data)

    def lines(self) -> list[str]:
        """What the client was sent since last asked, line by line."""
        data = self.transport.value()
        self.transport.clear()
        for line in data.split(b"\r\n")[:-1]:
            assert len(line) + 2 <= MAX_LINE or line.startswith(b"@"), line
        return [line.decode() for line in data.split(b"\r\n")[:-1]]

    def numerics(self) -> list[str]:
        """The numerics (or commands) of what was sent since last asked."""
        return [parse_line(line)[1] for line in self.lines()]

    def register(self, nick: str, caps: str = "") -> list[str]:
        if caps:
            self.send("CAP LS 302", f"NICK {nick}", f"USER {nick} 0 * :{nick}")
            self.send(f"CAP REQ :{caps}", "CAP END")
        else:
            self.send(f"NICK {nick}", f"USER {nick} 0 * :{nick}")
        return self.lines()


class DoorTestCase(SynchronousTestCase):
    """A hub with accounts and history in memory, and telnet-like bob."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.passwords = FakePasswords()
        self.hub = started_hub(
            self,
            self.clock,
            history=HistoryConfig(keep=100, replay=5),
            store=MemoryStore(HistoryConfig(keep=100, replay=5)),
            accounts=AccountsConfig(),
            passwords=self.passwords,
            operators=OperatorsConfig((("root", "stored"),)),
            verify=lambda password, encoded: succeed(
                encoded == "stored" and password == PASSWORD
            ),
        )
        self.bob_p = FakeParticipant()
        self.bob = self.hub.connect(self.bob_p)
        self.hub.execute(self.bob, c.Nick("bob"))
        self.hub.execute(self.bob, c.Settle())
        self.bob_p.take()

    def client(self, nick: str | None = None, caps: str = "") -> IRCClient:
        client = IRCClient(self.hub, self.clock)
        if nick is not None:
            client.register(nick, caps)
        return client

    def registered_account(self, nick: str) -> None:
        participant = FakeParticipant()
        user = self.hub.connect(participant)
        self.hub.execute(user, c.Nick(nick))
        self.hub.execute(user, c.Register(PASSWORD))
        self.hub.execute(user, c.Quit(None))


class RegistrationTests(DoorTestCase):
    """NICK, USER and CAP: the welcome, and nothing joined."""

    def test_welcome(self) -> None:
        """
        The welcome numerics 001-005 (an ISUPPORT that says what tchat
        does), then the MOTD; the client is in no room, and nobody in
        the lobby was told anything.
        """
        client = self.client()
        lines = client.register("alice")
        codes = [parse_line(line)[1] for line in lines]
        self.assertEqual(codes[:5], ["001", "002", "003", "004", "005"])
        self.assertIn(codes[-1], ("376", "422"))
        self.assertIn("alice!alice@irc.tchat", lines[0])
        isupport = lines[4]
        for token in ("CASEMAPPING=", "CHANTYPES=#", "NICKLEN=24", "CHANNELLEN=32"):
            self.assertIn(token, isupport)
        user = client.connection.user
        assert user is not None
        self.assertEqual((user.nick, user.door, user.rooms), ("alice", "irc", []))
        self.assertEqual(self.bob_p.take(), [])

    def test_cap_negotiation(self) -> None:
        """
        CAP LS 302 lists the capabilities with values; registration waits
        for CAP END; an unknown capability is refused whole (NAK).
        """
        client = self.client()
        client.send("CAP LS 302", "NICK alice", "USER alice 0 * :Alice")
        lines = client.lines()
        self.assertEqual(len(lines), 1)
        self.assertIn("sasl=PLAIN", lines[0])
        self.assertIn("server-time", lines[0])
        client.send("CAP REQ :server-time bogus")
        self.assertIn("NAK", client.lines()[0])
        client.send("CAP REQ :server-time echo-message")
        self.assertIn("ACK :server-time echo-message", client.lines()[0])
        client.send("CAP END")
        self.assertEqual(client.numerics()[0], "001")
        self.assertEqual(client.connection.caps, {"server-time", "echo-message"})

    def test_commands_before_registration(self) -> None:
        """Chat before NICK and USER gets 451; nonsense gets 421."""
        client = self.client()
        client.send("JOIN #lobby", "FROB x")
        self.assertEqual(client.numerics(), ["451", "421"])

    def test_nick_in_use(self) -> None:
        """
        bob (a telnet user) has the nick: 433, and the client picks
        another, as clients do.
        """
        client = self.client()
        client.send("NICK Bob", "USER x 0 * :x")
        self.assertEqual(client.numerics(), ["433"])
        client.send("NICK bob_")
        self.assertEqual(client.numerics()[0], "001")
        assert client.connection.user is not None
        self.assertEqual(client.connection.user.nick, "bob_")

    def test_erroneous_nick(self) -> None:
        """A nick tchat does not take: 432."""
        client = self.client()
        client.send("NICK a!b", "USER x 0 * :x")
        self.assertEqual(client.numerics(), ["432"])

    def test_sasl_plain(self) -> None:
        """SASL PLAIN against a tchat account: 900 and 903, then the welcome."""
        self.registered_account("carol")
        client = self.client()
        client.send("CAP LS 302", "NICK carol", "USER carol 0 * :Carol")
        client.send("CAP REQ :sasl", "AUTHENTICATE PLAIN")
        client.lines()
        token = base64.b64encode(f"carol\0carol\0{PASSWORD}".encode()).decode()
        client.send(f"AUTHENTICATE {token}")
        self.assertIn("903", client.numerics())
        client.send("CAP END")
        codes = client.numerics()
        self.assertEqual(codes[0], "001")
        self.assertIn("900", codes)
        user = client.connection.user
        assert user is not None and user.account is not None
        self.assertEqual(user.account.name, "carol")

    def test_sasl_wrong_password(self) -> None:
        """A wrong password: 904, and the client may go on as a guest nick."""
        self.registered_account("carol")
        client = self.client()
        client.send("CAP REQ :sasl", "AUTHENTICATE PLAIN")
        client.lines()
        token = base64.b64encode(b"carol\0carol\0wrong password").decode()
        client.send(f"AUTHENTICATE {token}")
        self.assertIn("904", client.numerics())
        client.send("NICK carol", "USER carol 0 * :Carol", "CAP END")
        # The nick is registered: refused, as for every door.
        self.assertEqual(client.numerics(), ["433"])


class ChatTests(DoorTestCase):
    """Channels and messages, across doors."""

    def test_join_names_and_chat_both_ways(self) -> None:
        """
        JOIN: the client's own JOIN, then NAMES with bob (telnet); bob sees
        alice (irc) join; lines go both ways, /me as CTCP ACTION.
        """
        self.hub.execute(self.bob, c.Join("#lobby"))
        self.bob_p.take()
        client = self.client("alice")
        client.send("JOIN #lobby")
        lines = client.lines()
        self.assertEqual(lines[0], ":alice!alice@irc.tchat JOIN #lobby")
        names = [line for line in lines if " 353 " in line]
        self.assertEqual(len(names), 1)
        self.assertEqual(set(names[0].split(":")[-1].split()), {"alice", "bob"})
        self.assertIn(" 366 ", lines[-1])
        joined = of(events.Presence, self.bob_p.take())
        self.assertEqual(
            [(p.kind, p.nick, p.door) for p in joined], [("join", "alice", "irc")]
        )
        client.send("PRIVMSG #lobby :hello bob", "PRIVMSG #lobby :\x01ACTION waves\x01")
        said = of(events.RoomMessage, self.bob_p.take())
        self.assertEqual(
            [(m.text, m.action) for m in said],
            [("hello bob", False), ("waves", True)],
        )
        self.assertEqual(client.lines(), [])  # no echo-message: no echo
        self.hub.execute(self.bob, c.Say("hi alice"))
        self.hub.execute(self.bob, c.Me("smiles"))
        self.assertEqual(
            client.lines(),
            [
                ":bob!bob@telnet.tchat PRIVMSG #lobby :hi alice",
                ":bob!bob@telnet.tchat PRIVMSG #lobby :\x01ACTION smiles\x01",
            ],
        )

    def test_tags_and_echo(self) -> None:
        """
        With server-time, message-tags and echo-message: the client's own
        line comes back, and every line carries its time and msgid.
        """
        client = self.client("alice", "server-time message-tags echo-message")
        client.send("JOIN #lobby")
        client.lines()
        client.send("PRIVMSG #lobby :tagged")
        (line,) = client.lines()
        tags, command, params = parse_line(line)
        self.assertEqual((command, params), ("PRIVMSG", ["#lobby", "tagged"]))
        self.assertEqual(tags["time"][-1], "Z")
        self.assertEqual(parse_msgid(tags["msgid"])[2], "#lobby")  # type: ignore[index]

    def test_long_line_split(self) -> None:
        """A telnet line longer than IRC's 512 bytes comes as several lines."""
        client = self.client("alice")
        client.send("JOIN #lobby")
        self.hub.execute(self.bob, c.Join("#lobby"))
        client.lines()
        text = "é" * 700
        self.hub.execute(self.bob, c.Say(text))
        lines = client.lines()
        self.assertGreater(len(lines), 1)
        self.assertEqual("".join(parse_line(x)[2][1] for x in lines), text)

    def test_private_messages(self) -> None:
        """PRIVMSG to a nick is a private message, both ways; 401 for nobody."""
        client = self.client("alice")
        client.send("PRIVMSG bob :psst")
        self.assertEqual(
            [(m.sender, m.text) for m in of(events.PrivateMessage, self.bob_p.take())],
            [("alice", "psst")],
        )
        self.hub.execute(self.bob, c.Msg("alice", "yes?"))
        self.assertEqual(client.lines(), [":bob!bob@telnet.tchat PRIVMSG alice :yes?"])
        client.send("PRIVMSG nobody :hello")
        self.assertEqual(client.numerics(), ["401"])

    def test_part_topic_quit(self) -> None:
        """PART, TOPIC and QUIT are what bob sees, and what alice is shown."""
        self.hub.execute(self.bob, c.Join("#dev"))
        client = self.client("alice")
        client.send("JOIN #dev")
        client.lines()
        self.bob_p.take()
        client.send("TOPIC #dev :shipping on friday")
        self.assertEqual(
            client.lines(), [":alice!alice@irc.tchat TOPIC #dev :shipping on friday"]
        )
        client.send("TOPIC #dev")
        self.assertIn("332", client.numerics())
        client.send("PART #dev")
        self.assertEqual(client.lines()[0], ":alice!alice@irc.tchat PART #dev")
        client.send("PART #dev", "PRIVMSG #dev :still here?")
        self.assertEqual(client.numerics(), ["442", "404"])
        self.bob_p.take()
        client.send("QUIT :gone fishing")
        self.assertEqual(client.lines(), ["ERROR :Closing link: gone fishing"])
        self.assertTrue(client.transport.disconnecting)

    def test_others_leave_and_rename(self) -> None:
        """bob's nick change and quit are NICK and QUIT lines."""
        self.hub.execute(self.bob, c.Join("#lobby"))
        client = self.client("alice")
        client.send("JOIN #lobby")
        client.lines()
        self.hub.execute(self.bob, c.Nick("robert"))
        self.hub.execute(self.bob, c.Quit("later"))
        self.assertEqual(
            client.lines(),
            [
                ":bob!bob@telnet.tchat NICK :robert",
                ":robert!robert@telnet.tchat QUIT :later",
            ],
        )

    def test_queries(self) -> None:
        """WHO, WHOIS, LIST, MODE, ISON, USERHOST, AWAY: the numerics."""
        self.hub.execute(self.bob, c.Join("#lobby"))
        client = self.client("alice")
        client.send("JOIN #lobby")
        client.lines()
        client.send("WHO #lobby")
        self.assertEqual(client.numerics(), ["352", "352", "315"])
        client.send("WHOIS bob")
        self.assertEqual(client.numerics(), ["311", "319", "312", "318"])
        client.send("LIST")
        self.assertEqual(client.numerics(), ["321", "322", "323"])
        client.send("MODE #lobby", "MODE #lobby b", "MODE alice", "MODE #lobby +o bob")
        self.assertEqual(client.numerics(), ["324", "368", "221", "482"])
        client.send("ISON bob nobody", "USERHOST bob")
        lines = client.lines()
        self.assertTrue(lines[0].endswith(":bob"))
        self.assertIn("bob=+bob@telnet.tchat", lines[1])
        client.send("AWAY :lunch", "AWAY")
        self.assertEqual(client.numerics(), ["306", "305"])

    def test_away_notify(self) -> None:
        """
        With away-notify, others going away and coming back are AWAY lines;
        without it, nothing. The hub tells every door (the page marks its
        member list; telnet shows it in /who).
        """
        self.hub.execute(self.bob, c.Join("#lobby"))
        told = self.client("alice", "away-notify")
        plain = self.client("carol")
        for client in (told, plain):
            client.send("JOIN #lobby")
        self.hub.execute(self.bob, c.Away("lunch"))
        self.hub.execute(self.bob, c.Back())
        told.lines()  # (the JOINs)
        plain_lines = [line for line in plain.lines() if "AWAY" in line]
        self.assertEqual(plain_lines, [])
        self.hub.execute(self.bob, c.Away("tea"))
        self.hub.execute(self.bob, c.Back())
        self.assertEqual(
            told.lines(),
            [":bob!bob@telnet.tchat AWAY :tea", ":bob!bob@telnet.tchat AWAY"],
        )
        told.send("AWAY :brb")
        gone = of(events.Presence, self.bob_p.take())
        self.assertEqual(
            [(p.kind, p.nick, p.reason) for p in gone if p.kind == "away"],
            [("away", "alice", "brb")],
        )

    def test_chathistory(self) -> None:
        """
        CHATHISTORY LATEST and BEFORE: the room's messages in a batch,
        each with its time and msgid, oldest first.
        """
        self.hub.execute(self.bob, c.Join("#lobby"))
        for n in range(5):
            self.hub.execute(self.bob, c.Say(f"line {n}"))
        client = self.client("alice", "batch server-time message-tags")
        client.send("JOIN #lobby")
        client.lines()
        client.send("CHATHISTORY LATEST #lobby * 3")
        lines = client.lines()
        self.assertTrue(lines[0].endswith("chathistory #lobby"))
        self.assertTrue(" BATCH -" in lines[-1])
        texts = [parse_line(line)[2][1] for line in lines[1:-1]]
        self.assertEqual(texts, ["line 2", "line 3", "line 4"])
        first = parse_line(lines[1])[0]["msgid"]
        client.send(f"CHATHISTORY BEFORE #lobby msgid={first} 10")
        texts = [parse_line(line)[2][1] for line in client.lines()[1:-1]]
        self.assertEqual(texts, ["line 0", "line 1"])


class ConformanceTests(DoorTestCase):
    """What an IRC conformance suite (irctest) found, checked here."""

    def test_away_reply(self) -> None:
        """A PRIVMSG to an away user gets 301 with their message."""
        self.hub.execute(self.bob, c.Away("lunch"))
        client = self.client("alice")
        client.send("PRIVMSG bob :there?")
        self.assertEqual(client.lines(), [":tchat 301 alice bob :lunch"])

    def test_notice_never_answered_with_an_error(self) -> None:
        """NOTICE to nobody, nowhere, or with no text: no reply at all."""
        client = self.client("alice")
        client.send("NOTICE nobody :hi", "NOTICE #nowhere :hi", "NOTICE", "NOTICE bob")
        self.assertEqual(client.lines(), [])

    def test_notice_to_a_channel(self) -> None:
        """
        A NOTICE to a channel reaches IRC clients as a NOTICE, which no
        client or bot answers automatically (so two bots cannot loop),
        live, echoed and in history; the other doors show it as a line.
        """
        self.hub.execute(self.bob, c.Join("#lobby"))
        bot = self.client("bot", "echo-message")
        bot.send("JOIN #lobby")
        alice = self.client("alice", "batch server-time message-tags")
        alice.send("JOIN #lobby")
        bot.lines(), alice.lines(), self.bob_p.take()
        bot.send("NOTICE #lobby :build 42 passed")
        self.assertEqual(
            alice.lines()[-1].split(" ", 1)[1],
            ":bot!bot@irc.tchat NOTICE #lobby :build 42 passed",
        )
        self.assertEqual(
            bot.lines(), [":bot!bot@irc.tchat NOTICE #lobby :build 42 passed"]
        )
        (line,) = of(events.RoomMessage, self.bob_p.take())
        self.assertEqual((line.text, line.notice), ("build 42 passed", True))
        self.hub.execute(self.bob, c.Say("thanks, bot"))
        self.assertTrue(alice.lines()[-1].endswith(" PRIVMSG #lobby :thanks, bot"))
        alice.send("CHATHISTORY LATEST #lobby * 2")
        commands = [parse_line(line)[1] for line in alice.lines()[1:-1]]
        self.assertEqual(commands, ["NOTICE", "PRIVMSG"])

    def test_part_reason(self) -> None:
        """PART's reason is shown to the room, on every door."""
        self.hub.execute(self.bob, c.Join("#dev"))
        client = self.client("alice")
        client.send("JOIN #dev")
        client.lines()
        self.bob_p.take()
        client.send("PART #dev :see you")
        self.assertEqual(client.lines(), [":alice!alice@irc.tchat PART #dev :see you"])
        (part,) = of(events.Presence, self.bob_p.take())
        self.assertEqual((part.kind, part.reason), ("part", "see you"))

    def test_no_such_channel(self) -> None:
        """TOPIC and PRIVMSG to a room that does not exist: 403."""
        client = self.client("alice")
        client.send("TOPIC #nowhere", "PRIVMSG #nowhere :hi")
        self.assertEqual(client.numerics(), ["403", "403"])

    def test_list_named(self) -> None:
        """LIST #room lists that room only."""
        self.hub.execute(self.bob, c.Join("#dev"))
        client = self.client("alice")
        client.send("LIST #dev")
        lines = client.lines()
        self.assertEqual([parse_line(x)[1] for x in lines], ["321", "322", "323"])
        self.assertIn(" #dev 1 ", lines[1])

    def test_ping_needs_a_token(self) -> None:
        client = self.client("alice")
        client.send("PING", "PING :x")
        lines = client.lines()
        self.assertEqual([parse_line(line)[1] for line in lines], ["461", "PONG"])
        self.assertEqual(lines[1], ":tchat PONG tchat :x")

    def test_sasl_logged_in_before_success(self) -> None:
        """900 (logged in) comes before 903 (SASL success), as clients expect."""
        self.registered_account("carol")
        client = self.client()
        client.send("CAP REQ :sasl", "AUTHENTICATE PLAIN")
        client.lines()
        token = base64.b64encode(f"\0carol\0{PASSWORD}".encode()).decode()
        client.send(f"AUTHENTICATE {token}")
        self.assertEqual(client.numerics(), ["900", "903"])
        client.send("NICK someone", "USER x 0 * :Carol C.", "CAP END")
        lines = client.lines()
        self.assertIn(" 001 carol ", lines[0])

    def test_realname(self) -> None:
        """WHOIS shows the real name an IRC user gave; others: nick (door)."""
        client = self.client()
        client.register("alice")
        other = self.client()
        other.send("NICK dora", "USER dora 0 * :Dora the Explorer")
        other.lines()
        client.send("WHOIS dora", "WHOIS bob")
        lines = [x for x in client.lines() if " 311 " in x]
        self.assertTrue(lines[0].endswith(":Dora the Explorer"), lines)
        self.assertTrue(lines[1].endswith(":bob (telnet)"), lines)

    def test_away_notify_on_join(self) -> None:
        """Someone away who joins: with away-notify, an AWAY line after it."""
        client = self.client("alice", "away-notify")
        client.send("JOIN #dev")
        client.lines()
        self.hub.execute(self.bob, c.Away("out"))
        self.hub.execute(self.bob, c.Join("#dev"))
        self.assertEqual(
            client.lines(),
            [":bob!bob@telnet.tchat JOIN #dev", ":bob!bob@telnet.tchat AWAY :out"],
        )

    def test_tags_too_long(self) -> None:
        """Client tags over 4,094 bytes: 417."""
        client = self.client("alice")
        client.send("@+x=" + "y" * 4100 + " PRIVMSG bob :hi")
        self.assertEqual(client.numerics(), ["417"])

    def test_sasl_failure_after_the_check(self) -> None:
        """
        A wrong password answered after the password check (on its thread):
        904 still, and registration then goes on.
        """
        self.registered_account("carol")
        client = self.client()
        client.send("CAP REQ :sasl", "NICK carl", "USER x 0 * :x", "AUTHENTICATE PLAIN")
        client.lines()
        self.passwords.hold()
        token = base64.b64encode(b"carol\0carol\0not it at all").decode()
        client.send(f"AUTHENTICATE {token}")
        self.passwords.release()
        self.assertEqual(client.numerics(), ["904"])
        client.send("CAP END")
        self.assertEqual(client.numerics()[0], "001")

    def test_sasl_limits(self) -> None:
        """Acting for another account: 904. A payload without end: 905."""
        self.registered_account("carol")
        client = self.client()
        client.send("CAP REQ :sasl", "AUTHENTICATE PLAIN")
        client.lines()
        token = base64.b64encode(f"dave\0carol\0{PASSWORD}".encode()).decode()
        client.send(f"AUTHENTICATE {token}")
        self.assertEqual(client.numerics(), ["904"])
        client.send("AUTHENTICATE PLAIN")
        client.lines()
        client.send(*(["AUTHENTICATE " + "A" * 400] * 11))
        self.assertEqual(client.numerics(), ["905"])

    def test_oper(self) -> None:
        """OPER: 464 for a wrong password; 381 and +o for the right one."""
        client = self.client("alice")
        client.send("OPER root wrong")
        self.assertEqual(client.numerics(), ["464"])
        client.send(f"OPER root :{PASSWORD}")
        self.assertEqual(
            client.lines(),
            [
                ":tchat 381 alice :You are now an IRC operator",
                ":alice MODE alice :+o",
            ],
        )

    def test_who_mask(self) -> None:
        """WHO with a mask lists the users it matches."""
        client = self.client("alice")
        client.send("WHO b*")
        lines = client.lines()
        self.assertEqual([parse_line(x)[1] for x in lines], ["352", "315"])
        self.assertIn(" bob ", lines[0])

    def test_empty_realname(self) -> None:
        """USER with an empty real name: 461, and no welcome."""
        client = self.client()
        client.send("NICK alice", "USER alice 0 * :")
        self.assertEqual(client.numerics(), ["461"])


class ProtectionTests(DoorTestCase):
    """Bad input, floods and silence."""

    def test_long_line(self) -> None:
        """Over 512 bytes: 417, that line dropped, the next one taken."""
        client = self.client("alice")
        client.send("PRIVMSG bob :" + "x" * 600, "PRIVMSG bob :short")
        self.assertEqual(client.numerics(), ["417"])
        self.assertEqual(
            [m.text for m in of(events.PrivateMessage, self.bob_p.take())], ["short"]
        )

    def test_huge_line(self) -> None:
        """Past the tagged limit, in pieces: 417, then the client goes on."""
        client = self.client("alice")
        client.connection.dataReceived(b"PRIVMSG bob :" + b"y" * 10_000)
        client.connection.dataReceived(b"y" * 10_000 + b"\r\nPRIVMSG bob :ok\r\n")
        self.assertEqual(client.numerics(), ["417"])
        self.assertEqual(
            [m.text for m in of(events.PrivateMessage, self.bob_p.take())], ["ok"]
        )

    def test_bad_utf8_and_controls(self) -> None:
        """Invalid UTF-8 is replaced and control characters stripped."""
        client = self.client("alice")
        client.send(b"PRIVMSG bob :caf\xe9 \x1b[31mred\x07")
        (message,) = of(events.PrivateMessage, self.bob_p.take())
        self.assertEqual(message.text, "caf\ufffd red")

    def test_garbage(self) -> None:
        """Lines that are not IRC: a numeric or nothing, never a crash."""
        client = self.client("alice")
        client.send(":prefix-only", "@tags=only", "\x01\x02\x03", ": :", "PRIVMSG")
        self.assertEqual(client.numerics(), ["421", "411"])
        self.assertFalse(client.transport.disconnecting)

    def test_connection_burst_is_not_flooding(self) -> None:
        """
        A client's burst after registering (JOINs, then MODE and WHO for
        each channel) is answered in full.
        """
        client = self.client("alice")
        rooms = [f"#r{n}" for n in range(8)]
        client.send("JOIN " + ",".join(rooms))
        client.send(*(f"MODE {room}" for room in rooms), *(f"WHO {r}" for r in rooms))
        codes = client.numerics()
        self.assertEqual(codes.count("JOIN"), 8)
        self.assertEqual(codes.count("324"), 8)
        self.assertEqual(codes.count("315"), 8)
        self.assertNotIn("NOTICE", codes)

    def test_flood(self) -> None:
        """
        A flood of chat lines meets the hub's limit: a notice, then the
        lines are dropped; bob gets only what the limit allows.
        """
        hub = started_hub(
            self,
            self.clock,
            limits=LimitsConfig(
                silent_timeout=0, messages_per_second=5, message_burst=10
            ),
        )
        bob_p = FakeParticipant()
        hub.execute(hub.connect(bob_p), c.Nick("bob"))
        client = IRCClient(hub, self.clock)
        client.register("alice")
        client.send(*(f"PRIVMSG bob :{n}" for n in range(40)))
        got = of(events.PrivateMessage, bob_p.take())
        self.assertEqual(len(got), 9)  # the burst of 10, less registering
        self.assertIn("slow down", client.lines()[0])

    def test_ping_timeout(self) -> None:
        """
        A silent client is sent a PING; one that does not answer is closed
        with an ERROR; one that does stays.
        """
        client = self.client("alice")
        self.clock.advance(PING_AFTER)
        self.assertEqual(client.lines(), ["PING :tchat"])
        client.send("PONG :tchat")
        self.clock.advance(PING_TIMEOUT)
        self.assertFalse(client.transport.disconnecting)
        self.clock.advance(PING_AFTER - PING_TIMEOUT)
        self.assertEqual(client.lines(), ["PING :tchat"])
        self.clock.advance(PING_TIMEOUT)
        self.assertEqual(client.lines(), ["ERROR :Closing link: ping timeout"])
        self.assertTrue(client.transport.disconnecting)

    def test_registration_lets_go(self) -> None:
        """
        Once registered through PASS, the connection keeps no password and
        nothing in a dict of its own: thousands of idle clients cost a few
        KiB each (the matrix's idle-10k).
        """
        self.registered_account("carol")
        client = IRCClient(self.hub, self.clock)
        client.send(f"PASS :{PASSWORD}", "NICK carol", "USER carol 0 * :Carol")
        self.assertIn("001", client.numerics())
        connection = client.connection
        self.assertIsNone(connection.password)
        self.assertIsNone(connection.nick_wanted)
        self.assertEqual(connection.nick, "carol")
        client.send("JOIN #lobby", "NAMES #lobby", "WHO #lobby")
        self.assertIn("315", client.numerics())
        self.assertEqual(vars(connection), {}, "state in slots, no dict")


class DeadlineTests(SynchronousTestCase):
    """A client that connects and never registers is let go."""

    def test_unregistered(self) -> None:
        clock = Clock()
        hub = started_hub(self, clock, limits=LimitsConfig(silent_timeout=30))
        client = IRCClient(hub, clock)
        client.send("NICK halfway")
        clock.advance(30)
        self.assertEqual(
            client.lines(), ["ERROR :Closing link: registration timed out"]
        )
        self.assertTrue(client.transport.disconnecting)
        registered = IRCClient(hub, clock)
        registered.register("whole")
        clock.advance(30)
        self.assertFalse(registered.transport.disconnecting)


class WireTests(SynchronousTestCase):
    """The pieces: line parsing, message ids, splitting."""

    def test_parse(self) -> None:
        self.assertEqual(
            parse_line("@time=x;a=b\\sc :n!u@h privmsg #r :hi there"),
            ({"time": "x", "a": "b c"}, "PRIVMSG", ["#r", "hi there"]),
        )

    def test_split_keeps_characters(self) -> None:
        pieces = split_text("aé" * 10, 5)
        self.assertEqual("".join(pieces), "aé" * 10)
        self.assertTrue(all(len(p.encode()) <= 5 for p in pieces))
