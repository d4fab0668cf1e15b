# -*- test-case-name: tests.integration.test_irc_server -*-
"""
The IRC door against a real C{twistd -n tchat}: raw IRC over TCP, an IRC
client library written by others (C{irc} from PyPI), and a real terminal
client (Debian's C{weechat}, in C{tmux}), beside telnet and WebSocket
users.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Any

from twisted.internet.defer import ensureDeferred
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.integration.server import (
    CHEAP_ACCOUNTS,
    TAP_INI,
    ChatClient,
    TchatServer,
    async_test,
    connect,
    connect_web,
    global_reactor,
    make_directory,
    start_server,
)
from tests.integration.test_ssh_server import KEYGEN, SSH, SSHUser, user_key
from tests.support import require

LISTEN = "tcp:0:interface=127.0.0.1"
PASSWORD = "a long enough password"
INI = TAP_INI + CHEAP_ACCOUNTS


async def sleep(seconds: float) -> None:
    from twisted.internet.task import deferLater

    await deferLater(global_reactor(), seconds)


async def irc_client(testcase: TestCase, server: TchatServer, name: str) -> ChatClient:
    """A raw TCP client of the IRC door (lines in, lines out)."""
    assert server.irc_port is not None
    return await connect(testcase, server.irc_port, name, welcome=False)


async def register(
    client: ChatClient, nick: str, caps: str = "", sasl: str | None = None
) -> None:
    """NICK, USER and CAP (and SASL PLAIN with C{sasl}, a password)."""
    client.say("CAP LS 302")
    client.say(f"NICK {nick}")
    client.say(f"USER {nick} 0 * :{nick}")
    await client.wait_for(b"CAP * LS :")
    wanted = " ".join(filter(None, [caps, "sasl" if sasl else ""]))
    if wanted:
        client.say(f"CAP REQ :{wanted}")
        await client.wait_for(b" ACK :")
    if sasl is not None:
        client.say("AUTHENTICATE PLAIN")
        await client.wait_for(b"AUTHENTICATE +")
        token = base64.b64encode(f"{nick}\0{nick}\0{sasl}".encode()).decode()
        client.say(f"AUTHENTICATE {token}")
        await client.wait_for(b" 903 ", timeout=20.0)
    client.say("CAP END")
    await client.wait_for(f" 001 {nick} ".encode(), timeout=20.0)
    await client.wait_for(re.compile(rb" (376|422) "))


async def telnet_user(testcase: TestCase, server: TchatServer, nick: str) -> ChatClient:
    client = await connect(testcase, server.port, nick)
    await client.set_nick(nick)
    return client


async def registered(testcase: TestCase, server: TchatServer, nick: str) -> None:
    """An account for C{nick}, made on the telnet door."""
    client = await telnet_user(testcase, server, nick)
    client.say(f"/register {PASSWORD}")
    await client.wait_for(b"registered", timeout=20.0)
    client.say("/quit")
    await client.wait_for(b"bye")


class RawIRCTests(TestCase):
    """The door as a raw IRC client sees it, beside the other doors."""

    @async_test
    async def test_chat_across_doors(self) -> None:
        """
        alice (IRC) registers and is in no room; she joins #lobby, where bob
        (telnet), carol (web) and dan (the real ssh) are; they talk, /me
        included; bob's /who says irc; her QUIT is what they see.
        """
        require(SSH is not None and KEYGEN is not None, "ssh is missing")
        server = await start_server(self, INI, web=LISTEN, irc=LISTEN, ssh=LISTEN)
        dan = SSHUser(self, server, "dan", await user_key(self, "dan"))
        await dan.wait_for(b"you are now known as dan")
        bob = await telnet_user(self, server, "bob")
        assert server.web_port is not None
        carol = await connect_web(self, server.web_port, "carol")
        await carol.set_nick("carol")
        alice = await irc_client(self, server, "alice")
        await register(alice, "alice", "server-time message-tags echo-message")
        alice.say("JOIN #lobby")
        await alice.wait_for(b":alice!alice@irc.tchat JOIN #lobby\r\n")
        names = await alice.wait_for(re.compile(rb" 353 alice = #lobby :([^\r]*)\r\n"))
        self.assertEqual(
            set(names.group(1).split()), {b"alice", b"bob", b"carol", b"dan"}
        )
        await alice.wait_for(b" 366 alice #lobby ")
        await bob.wait_for(b"*** alice (irc) joined #lobby\r\n")

        alice.say("PRIVMSG #lobby :hello, other doors")
        await bob.wait_for(b"<alice> hello, other doors\r\n")
        said = await carol.wait_for(type="usermsg", message="hello, other doors")
        self.assertEqual((said["name"], said["door"]), ("alice", "irc"))
        echo = await alice.wait_for(
            re.compile(
                rb"@([^ ]+) :alice!alice@irc.tchat PRIVMSG #lobby :hello, other doors"
            )
        )
        self.assertIn(b"msgid=", echo.group(1))
        self.assertIn(b"time=", echo.group(1))

        bob.say("hi alice")
        await alice.wait_for(b":bob!bob@telnet.tchat PRIVMSG #lobby :hi alice\r\n")
        carol.send({"type": "message", "message": "hello from the page"})
        await alice.wait_for(
            b":carol!carol@web.tchat PRIVMSG #lobby :hello from the page\r\n"
        )
        await dan.wait_for(b"<alice> hello, other doors")
        dan.type(b"hello from a terminal\r")
        await alice.wait_for(
            b":dan!dan@ssh.tchat PRIVMSG #lobby :hello from a terminal\r\n"
        )
        bob.say("/me waves")
        await alice.wait_for(b"PRIVMSG #lobby :\x01ACTION waves\x01\r\n")
        alice.say("PRIVMSG #lobby :\x01ACTION bows\x01")
        await bob.wait_for(b"* alice bows\r\n")

        alice.say("PRIVMSG bob :a word in private")
        await bob.wait_for(b"a word in private")
        bob.say("/msg alice likewise")
        await alice.wait_for(b":bob!bob@telnet.tchat PRIVMSG alice :likewise\r\n")

        bob.say("/who")
        await bob.wait_for(b"alice (irc)")
        alice.say("QUIT :off to lunch")
        await alice.wait_for(b"ERROR :Closing link: off to lunch")
        await bob.wait_for(b"*** alice (irc) quit (off to lunch)\r\n")

    @async_test
    async def test_sasl_and_catching_up(self) -> None:
        """
        erin logs in with SASL PLAIN to her tchat account; she drops; bob
        says 25 lines; back (SASL again), she rejoins #lobby, which shows
        the latest 20 (the join replay, in a chathistory batch), and
        CHATHISTORY AFTER the last message she had gives exactly the 25
        she missed, in order.
        """
        server = await start_server(self, INI, irc=LISTEN)
        await registered(self, server, "erin")
        bob = await telnet_user(self, server, "bob")
        caps = "batch server-time message-tags"
        erin = await irc_client(self, server, "erin")
        await register(erin, "erin", caps, sasl=PASSWORD)
        await erin.wait_for(b" 900 erin ")
        erin.say("JOIN #lobby")
        await erin.wait_for(b" 366 erin #lobby ")
        bob.say("before she goes")
        seen = await erin.wait_for(
            re.compile(
                rb"msgid=([^; ]+)[^ ]* :bob!bob@telnet.tchat PRIVMSG #lobby "
                rb":before she goes\r\n"
            )
        )
        last = seen.group(1).decode()
        await erin.close()
        await bob.wait_for(b"*** erin (irc, registered) quit")
        missed = [f"missed {n}".encode() for n in range(25)]
        for line in missed:
            bob.say(line)
        bob.say("/who")  # answered after his lines are taken
        await bob.wait_for(b"bob (telnet)")
        erin = await irc_client(self, server, "erin again")
        await register(erin, "erin", caps, sasl=PASSWORD)
        erin.say("JOIN #lobby")
        await erin.wait_for(b" 366 erin #lobby ")
        # The rejoin shows the latest, in a batch of its own.
        joined = await erin.wait_for(re.compile(rb"BATCH -\S+\r\n"))
        replay = re.findall(
            rb"PRIVMSG #lobby :([^\r]*)\r\n", bytes(erin.received.data)[: joined.end()]
        )
        self.assertEqual(replay[-20:], missed[-20:])
        erin.say(f"CHATHISTORY AFTER #lobby msgid={last} 100")
        start = await erin.wait_for(
            re.compile(rb"BATCH \+(\S+) chathistory #lobby\r\n")
        )
        end = await erin.wait_for(b"BATCH -" + start.group(1) + b"\r\n")
        batch = bytes(erin.received.data)[start.end() : end.start()]
        got = re.findall(rb"PRIVMSG #lobby :([^\r]*)\r\n", batch)
        self.assertEqual(got, missed)

    @async_test
    async def test_nicks_of_other_doors(self) -> None:
        """
        Nicks are one namespace across doors: bob's (telnet) is refused
        in any case and as a look-alike, a registered one too; a free
        one is taken.
        """
        server = await start_server(self, INI, irc=LISTEN)
        await registered(self, server, "zoe")
        await telnet_user(self, server, "bob")
        client = await irc_client(self, server, "collider")
        client.say("NICK bob")
        client.say("USER x 0 * :x")
        await client.wait_for(b" 433 bob ")
        client.say("NICK BOB")
        await client.wait_for(b" 433 BOB ")
        client.say("NICK b\u043eb")  # a Cyrillic o
        await client.wait_for(re.compile(rb" 43[23] "))
        client.say("NICK zoe")
        await client.wait_for(b" 433 zoe ")
        client.say("NICK bobby")
        await client.wait_for(b" 001 bobby ")
        client.say("NICK bob")
        await client.wait_for(b" 433 bobby bob ")

    @async_test
    async def test_bad_input(self) -> None:
        """
        Garbage, an over-long line, bad UTF-8 and a flood from an IRC
        client: numerics and finally a disconnect for it; bob and ann
        (telnet) go on talking throughout.
        """
        ini = INI.replace("messages_per_second = 0", "messages_per_second = 5")
        server = await start_server(self, ini, irc=LISTEN)
        bob = await telnet_user(self, server, "bob")
        ann = await telnet_user(self, server, "ann")
        rogue = await irc_client(self, server, "rogue")
        rogue.send(b"\x16\x03\x01 not irc at all\r\n")
        await rogue.wait_for(b" 421 ")
        await register(rogue, "rogue")
        rogue.say("PRIVMSG bob :" + "x" * 600)
        await rogue.wait_for(b" 417 rogue :Input line was too long")
        rogue.send(b"PRIVMSG bob :caf\xe9\r\n")
        await bob.wait_for("caf\ufffd".encode())
        rogue.send(b"".join(b"PRIVMSG #lobby :flood %d\r\n" % n for n in range(500)))
        await rogue.wait_for(b"slow down", timeout=10.0)
        await rogue.wait_for(b"ERROR :Closing link", timeout=20.0)
        bob.say("still here")
        await ann.wait_for(b"<bob> still here\r\n")


class LibraryTests(TestCase):
    """A client library written by others: C{irc} (jaraco) from PyPI."""

    @async_test
    async def test_irc_library(self) -> None:
        """
        The library registers, joins #lobby, and chats with bob (telnet)
        in both directions.
        """
        try:
            import irc.client  # type: ignore[import-untyped]
        except ImportError:
            require(False, "the irc package is missing: pip install '.[test]'")
        server = await start_server(self, INI, irc=LISTEN)
        bob = await telnet_user(self, server, "bob")
        bob.say("/join #lobby")
        heard: list[str] = []
        done = threading.Event()
        port = server.irc_port
        assert port is not None

        def run() -> None:
            reactor = irc.client.Reactor()
            connection = reactor.server().connect("127.0.0.1", port, "libby")

            def on_welcome(conn: Any, event: Any) -> None:
                conn.join("#lobby")

            def on_join(conn: Any, event: Any) -> None:
                if event.source.nick == "libby":
                    conn.privmsg("#lobby", "hello from a library")

            def on_pubmsg(conn: Any, event: Any) -> None:
                heard.append(f"{event.source} {event.arguments[0]}")
                if event.arguments[0] == "hello, library":
                    conn.quit("done")

            reactor.add_global_handler("welcome", on_welcome)
            reactor.add_global_handler("join", on_join)
            reactor.add_global_handler("pubmsg", on_pubmsg)
            deadline = time.monotonic() + 30
            while not done.is_set() and time.monotonic() < deadline:
                reactor.process_once(0.05)
            connection.close()

        thread = deferToThread(run)
        await bob.wait_for(b"<libby> hello from a library\r\n", timeout=20.0)
        bob.say("hello, library")
        await bob.wait_for(b"*** libby (irc) quit (done)", timeout=20.0)
        done.set()
        await thread
        self.assertIn("bob!bob@telnet.tchat hello, library", heard)


class WeechatTests(TestCase):
    """Debian's weechat, in a real terminal (tmux), as a person uses it."""

    def setUp(self) -> None:
        require(
            shutil.which("tmux") is not None and shutil.which("weechat") is not None,
            "weechat or tmux is missing: apt-get install weechat-curses tmux",
        )

    @async_test
    async def test_weechat(self) -> None:
        """
        weechat logs in with SASL, joins #lobby, chats both ways with bob
        (telnet), carol (the page's WebSocket) and dan (the real ssh);
        disconnected, it misses what they say, and shown it when it
        connects again (its autojoin's replay, with server-time); then it
        quits.
        """
        require(SSH is not None and KEYGEN is not None, "ssh is missing")
        server = await start_server(self, INI, web=LISTEN, irc=LISTEN, ssh=LISTEN)
        await registered(self, server, "wendy")
        dan = SSHUser(self, server, "dan", await user_key(self, "dan"))
        await dan.wait_for(b"you are now known as dan")
        bob = await telnet_user(self, server, "bob")
        assert server.web_port is not None
        carol = await connect_web(self, server.web_port, "carol")
        await carol.set_nick("carol")
        home = make_directory(self)
        # A unix socket's path has at most 107 bytes; the test's directory
        # may be deeper than that allows.
        short = tempfile.mkdtemp(prefix="tchat-tmux-")
        self.addCleanup(shutil.rmtree, short, True)
        socket = os.path.join(short, "s")
        commands = ";".join(
            [
                f"/server add tchat 127.0.0.1/{server.irc_port} -notls -nicks=wendy",
                "/set irc.server.tchat.sasl_mechanism plain",
                "/set irc.server.tchat.sasl_username wendy",
                f"/set irc.server.tchat.sasl_password {PASSWORD}",
                "/set irc.server.tchat.autojoin #lobby",
                "/connect tchat",
            ]
        )

        def tmux(*args: str, check: bool = False) -> str:
            done = subprocess.run(
                ["tmux", "-S", socket, *args],
                capture_output=True,
                text=True,
                timeout=10,
                env={**os.environ, "TERM": "xterm"},
            )
            if check and done.returncode != 0:
                self.fail(f"tmux {args[0]} failed: {done.stderr}")
            return done.stdout

        tmux(
            "new-session", "-d", "-x", "150", "-y", "40",
            f"weechat --dir {home}/weechat --run-command '{commands}'",
            check=True,
        )  # fmt: skip
        self.addCleanup(lambda: tmux("kill-server"))

        async def shown(text: str, timeout: float = 20.0) -> None:
            deadline = time.monotonic() + timeout
            while text not in tmux("capture-pane", "-p", "-J"):
                if time.monotonic() > deadline:
                    screen = tmux("capture-pane", "-p", "-J")
                    self.fail(f"weechat did not show {text!r}:\n{screen}")
                await sleep(0.1)

        await bob.wait_for(b"*** wendy (irc, registered) joined #lobby\r\n", 30.0)
        tmux("send-keys", "hello from weechat", "Enter")
        await bob.wait_for(b"<wendy> hello from weechat\r\n")
        said = await carol.wait_for(type="usermsg", message="hello from weechat")
        self.assertEqual((said["name"], said["door"]), ("wendy", "irc"))
        await dan.wait_for(b"<wendy> hello from weechat")
        bob.say("hi wendy")
        await shown("hi wendy")
        carol.send({"type": "message", "message": "hi from the page"})
        await shown("hi from the page")
        dan.type(b"hi from a terminal\r")
        await shown("hi from a terminal")

        tmux("send-keys", "/disconnect tchat", "Enter")
        await bob.wait_for(b"*** wendy (irc, registered) quit")
        bob.say("missed line one")
        carol.send({"type": "message", "message": "missed line two"})
        await bob.wait_for(b"<carol> missed line two\r\n")
        tmux("send-keys", "/connect tchat", "Enter")
        await bob.wait_for(b"*** wendy (irc, registered) joined #lobby\r\n", 30.0)
        await shown("missed line one")
        await shown("missed line two")
        tmux("send-keys", "back again", "Enter")
        await bob.wait_for(b"<wendy> back again\r\n")

        tmux("send-keys", "/quit leaving now", "Enter")
        await bob.wait_for(b"*** wendy (irc, registered) quit (leaving now)")
        await ensureDeferred(bob.close())
        await ensureDeferred(carol.close())
