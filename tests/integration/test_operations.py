# -*- test-case-name: tests.integration.test_operations -*-
"""
Running a live server end to end: a real C{twistd -n tchat} process on
127.0.0.1 stopped with SIGTERM and SIGINT, reloaded with SIGHUP, and
steered by operators' commands from real telnet and WebSocket clients.

Clients connect from different loopback addresses (all of 127.0.0.0/8 is
local on Linux), so that address bans, mutes and C{/oper} lock-outs hit
one client and not the others.
"""

from __future__ import annotations

import os
import re
import socket
import time
from typing import Any

from twisted.internet import error
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import FailTest, TestCase

from tchat.operators import hash_password
from tests.integration.server import (
    DOOR_LISTENING,
    LOOPBACK,
    MOTD,
    RECENT,
    TEST_LIMITS,
    ChatClient,
    TchatServer,
    WebClient,
    async_test,
    connect,
    connect_web,
    global_reactor,
    log_line,
    rewrite,
    start_server,
)
from tests.support import require

WEB = "tcp:0:interface=127.0.0.1"
"""The C{--web} endpoint of the servers that have a web door from the start."""

TAP_LISTENER = "tcp:0:interface=127.0.0.1"
"""An endpoint written into C{tap.ini} (not given on the command line, which
would override the file on reload too)."""

OPERATOR, PASSWORD = "boss", "correct horse battery"
"""The one operator account of the test servers."""

OPERATOR_HASH = hash_password(PASSWORD, log2_n=4)
"""Its C{[operators]} hash, cheap to check (the hash carries its cost)."""

GOING_DOWN = (
    "*** The server is going down (the server is shutting down). Reconnect "
    "in a moment; /resume with your code brings back your nick and rooms."
)
"""What a telnet user is told when the server stops."""

SHUTDOWN_FRAME = {
    "type": "system",
    "event": "shutdown",
    "message": "The server is going down (the server is shutting down); this "
    "page reconnects when it is back.",
    "reason": "the server is shutting down",
}
"""What a web user is told when the server stops."""

NOT_OPERATOR = "!!! that command is for operators; /oper NAME PASSWORD first"
"""What a telnet user who is no operator is told for an operator command."""

OPERATOR_NOW = (
    f"*** you are now an operator ({OPERATOR}); /help lists the operator commands"
)
"""What a telnet user is told when their C{/oper} succeeds."""

SLACK = 3.0
"""Seconds a stopping server may take beyond its shutdown grace to exit."""

MAIN, BANNED, MUTED, GUESSER = "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"
"""The loopback addresses clients connect from: most from the usual one; a
user to ban, one to mute and one who guesses passwords from their own."""


def tap_ini(
    *,
    name: str = "tchat",
    motd: tuple[str, ...] = MOTD,
    grace: float | None = None,
    web: str = "",
    history: str = "",
    operators: bool = True,
    server_extra: str = "",
) -> str:
    """
    A test server's configuration.

    @param name: C{[server] name}.
    @param motd: C{[server] motd}, one entry per line.
    @param grace: C{[server] shutdown_grace}; the default (5 s) if C{None}.
    @param web: C{[web] listen}: none by default (a test server started
        with C{--web} has its web door from the command line).
    @param history: More C{[history]} lines, e.g. C{"path = other"}.
    @param operators: Whether the C{[operators]} section has L{OPERATOR};
        the section is there either way (a reload refuses a file that lost
        a section, as a truncated file does).
    @param server_extra: More C{[server]} lines, for broken files.
    """
    text = "[server]\n"
    text += f"name = {name}\n"
    text += "motd = " + "\n    ".join(motd) + "\n"
    text += "default_room = #lobby\n"
    # Departures at once: the tests here watch people come and go.
    text += "reconnect_grace = 0\n"
    if grace is not None:
        text += f"shutdown_grace = {grace:g}\n"
    text += server_extra
    # Replaced by --telnet on the command line.
    text += "\n[telnet]\nlisten = tcp:4444:interface=127.0.0.1\n"
    text += "\n" + TEST_LIMITS
    text += f"\n[web]\nlisten = {web}\n"
    if history:
        text += f"\n[history]\n{history}\n"
    text += "\n[operators]\n"
    if operators:
        text += f"{OPERATOR} = {OPERATOR_HASH}\n"
    return text


def web_port(server: TchatServer) -> int:
    """
    The port of a server started with a web door.
    """
    assert server.web_port is not None
    return server.web_port


def require_loopback_aliases() -> None:
    """
    Skip (or, in CI, fail) where clients cannot connect from loopback
    addresses other than 127.0.0.1.
    """
    probe = socket.socket()
    try:
        probe.bind((BANNED, 0))
    except OSError:
        require(False, f"cannot bind to {BANNED}: 127.0.0.0/8 is not all local here")
    finally:
        probe.close()


async def telnet_user(
    testcase: TestCase, server: TchatServer, nick: str, bind: str | None = None
) -> ChatClient:
    """
    Connect a telnet client (colours off, from C{bind}) and take C{nick}.
    """
    client = await connect(testcase, server.port, nick, bind=bind)
    await client.set_nick(nick)
    return client


async def web_user(
    testcase: TestCase, server: TchatServer, nick: str, bind: str | None = None
) -> WebClient:
    """
    Connect a web client (from C{bind}) and take C{nick}.
    """
    client = await connect_web(testcase, web_port(server), nick, bind=bind)
    await client.set_nick(nick)
    return client


async def settle(*clients: ChatClient | WebClient) -> None:
    """
    Read what each client has been sent so far (others arriving and taking
    nicks), up to a round trip, so that the test reads on from there.
    """
    for client in clients:
        await client.sync()


async def become_operator(client: ChatClient | WebClient) -> None:
    """
    C{/oper} with the right password, and check the answer.
    """
    if isinstance(client, ChatClient):
        client.say(f"/oper {OPERATOR} {PASSWORD}")
        await client.expect_lines(OPERATOR_NOW)
    else:
        client.send({"type": "message", "message": f"/oper {OPERATOR} {PASSWORD}"})
        await client.expect_frames(
            {"type": "system", "event": "status", "message": OPERATOR_NOW[4:]}
        )


def command(client: WebClient, text: str) -> None:
    """
    Type a line in the web page: a command when it starts with C{/}.
    """
    client.send({"type": "message", "message": text})


def notice(kind: str, by: str, text: str, **extra: Any) -> dict[str, Any]:
    """
    The frame of an operator's notice, as a web user gets it.
    """
    shown = f"Announcement from {by}: {text}" if kind == "announce" else text
    return {
        "type": "system",
        "event": "notice",
        "message": shown,
        "kind": kind,
        "by": by,
        "text": text,
        "room": None,
        "ts": RECENT,
        **extra,
    }


async def wait_for_exit(
    testcase: TestCase, server: TchatServer, signalled: float, within: float
) -> float:
    """
    Wait for a signalled server to exit, checking that it exits with
    status 0 (not killed by the signal) and logs no traceback.

    @param signalled: When it was sent the signal, by C{time.monotonic()}.
    @param within: Seconds it may take from then.
    @return: How long it took from then.
    """
    left = signalled + within - time.monotonic()
    if not await server.process.wait_ended(max(left, 0.01)):
        raise FailTest(
            f"the server still ran {within} s after the signal:\n{server.log()}"
        )
    took = time.monotonic() - signalled
    testcase.assertLess(took, within)
    testcase.assertEqual(
        (server.process.exit_code, server.process.signal), (0, None), server.log()
    )
    testcase.assertNotIn("Traceback", server.log())
    return took


async def refused(port: int) -> bool:
    """
    Whether a TCP connection to C{port} on 127.0.0.1 is refused.
    """
    endpoint = TCP4ClientEndpoint(global_reactor(), LOOPBACK, port, timeout=5)
    try:
        protocol = await connectProtocol(endpoint, Protocol())
    except error.ConnectionRefusedError:
        return True
    assert protocol.transport is not None
    protocol.transport.loseConnection()
    return False


def _holding_all(text: str) -> str:
    """
    A configuration whose output queue holds all a L{stuck_client} asks
    for (by default tchat would skip lines of it, and the rest would fit
    in the kernel's socket buffers, so the connection could close).
    """
    return text.replace("[limits]\n", "[limits]\noutput_queue = 67108864\n")


async def stuck_client(testcase: TestCase, server: TchatServer) -> ChatClient:
    """
    A telnet client that stops reading while the server has megabytes to
    send it, so that closing its connection cannot finish: the server's
    C{loseConnection} waits for the data to go out.

    A writer fills #lobby with 50 messages of 4000 characters, then the
    client asks for them with C{/history 50} 150 times (about 30 MB,
    more than the kernel buffers of both ends hold) without reading.
    """
    writer = await telnet_user(testcase, server, "writer")
    for n in range(50):
        writer.say(f"{n:02d} " + "x" * 4000)
    await writer.sync()
    stuck = await telnet_user(testcase, server, "stuck")
    await stuck.sync()
    await writer.close()
    assert stuck.transport is not None
    stuck.transport.pauseProducing()  # type: ignore[attr-defined]
    stuck.send(b"/history 50\r\n" * 150)
    # Give the server time to read the requests and queue the answers.
    await deferLater(global_reactor(), 1.0, lambda: None)
    return stuck


async def release(client: ChatClient) -> None:
    """
    Let a L{stuck_client} read again, and wait for the server's cut to
    reach it.
    """
    assert client.transport is not None
    client.transport.resumeProducing()  # type: ignore[attr-defined]
    await client.expect_closed(timeout=10)


class StopTests(TestCase):
    """
    SIGTERM and SIGINT stop the server gracefully: users are told, history
    is written, and the process exits with status 0.
    """

    @async_test
    async def test_sigterm_tells_everyone_and_keeps_history(self) -> None:
        """
        On SIGTERM a telnet user reads that the server is going down, then
        the connection ends; a web user gets a C{shutdown} frame, then a
        close with code 1001 "going away".  The process exits with status
        0 within the shutdown grace (5 s) and 3 s more, logging no
        traceback.  What both said before is replayed to a user who joins
        the restarted server.
        """
        server = await start_server(self, tap_ini(), web=WEB)
        alice = await telnet_user(self, server, "alice")
        wendy = await web_user(self, server, "wendy")
        await settle(alice, wendy)
        alice.say("said before the stop")
        await wendy.wait_for(type="usermsg", message="said before the stop")
        command(wendy, "web says goodbye")
        await wendy.wait_for(type="usermsg", message="web says goodbye")
        await alice.expect_lines("[HH:MM] <wendy> web says goodbye")

        signalled = time.monotonic()
        server.process.signal_process("TERM")
        await alice.expect_lines(GOING_DOWN)
        await alice.expect_closed()
        self.assertEqual(alice.received.rest(), b"", "nothing after the notice")
        await wendy.expect_frames(SHUTDOWN_FRAME)
        closed = await wendy.expect_closed()
        self.assertEqual(
            (closed.server_code, closed.server_reason, closed.clean),
            (1001, "going away", True),
        )
        self.assertEqual(wendy.rest(), [], "nothing after the shutdown frame")
        await wait_for_exit(self, server, signalled, 5 + SLACK)
        self.assertIn(
            "SIGTERM: stopping; 2 users are told and have up to 5 s", server.log()
        )
        await server.stop()

        again = await start_server(self, tap_ini(), directory=server.directory)
        bob = await connect(self, again.port, "bob")
        self.assertEqual(
            bob.replay,
            [
                b"[HH:MM] <alice> said before the stop",
                b"[HH:MM] <wendy> web says goodbye",
            ],
        )
        self.assertNotIn("did not stop cleanly", again.log())

    @async_test
    async def test_sigint_exits_zero(self) -> None:
        """
        SIGINT (Ctrl-C in a terminal) stops the server like SIGTERM: the
        user is told, and the process exits with status 0.
        """
        server = await start_server(self, tap_ini())
        alice = await telnet_user(self, server, "alice")
        signalled = time.monotonic()
        server.process.signal_process("INT")
        await alice.expect_lines(GOING_DOWN)
        await alice.expect_closed()
        await wait_for_exit(self, server, signalled, 5 + SLACK)
        self.assertIn("SIGINT: stopping; 1 users are told", server.log())

    @async_test
    async def test_stuck_connection_is_cut_after_the_grace(self) -> None:
        """
        With C{shutdown_grace = 1}, a connection that cannot be closed
        (its client reads nothing while the server has megabytes queued
        for it) is cut after a second, and the server exits with status 0
        within 3 s of SIGTERM.
        """
        server = await start_server(self, _holding_all(tap_ini(grace=1)))
        stuck = await stuck_client(self, server)
        signalled = time.monotonic()
        server.process.signal_process("TERM")
        await wait_for_exit(self, server, signalled, 1 + SLACK)
        self.assertIn("cutting 1 connections still open after 1 s", server.log())
        await release(stuck)

    @async_test
    async def test_second_sigterm_cuts_at_once(self) -> None:
        """
        With a grace of a minute, a second SIGTERM while the server waits
        for a connection that cannot be closed cuts it at once, and the
        server exits with status 0 within 3 s of it.
        """
        server = await start_server(self, _holding_all(tap_ini(grace=60)))
        stuck = await stuck_client(self, server)
        server.process.signal_process("TERM")
        await log_line(server, "waiting up to 60 s for their connections to close")
        signalled = time.monotonic()
        server.process.signal_process("TERM")
        await wait_for_exit(self, server, signalled, SLACK)
        self.assertIn("SIGTERM again: cutting the connections still open", server.log())
        await release(stuck)


class ReloadTests(TestCase):
    """
    SIGHUP re-reads C{tap.ini} and applies it without disconnecting anyone;
    a file that does not validate changes nothing.
    """

    @async_test
    async def test_good_file_is_applied_live(self) -> None:
        """
        After SIGHUP with a new name, a new MOTD and a web door in
        C{tap.ini}: connected users still chat; a new telnet user is
        welcomed with the new name and MOTD; the new web door accepts a
        WebSocket, whose welcome says the same; the log says what was
        applied.  After SIGHUP with the same port written another way (the
        old listener must close before the new one can listen), the web
        door still accepts.  After SIGHUP without the web door, it refuses
        connections, while the WebSocket opened through it stays.
        """
        server = await start_server(self, tap_ini())
        alice = await telnet_user(self, server, "alice")
        bob = await telnet_user(self, server, "bob")
        await settle(alice, bob)

        reloaded = tap_ini(name="Night Owl", motd=("Reloaded MOTD.",), web=TAP_LISTENER)
        rewrite(server, reloaded)
        server.process.signal_process("HUP")
        match = await log_line(server, DOOR_LISTENING)
        self.assertEqual(match.group(1), b"web")
        port = int(match.group(2))
        await log_line(
            server,
            "reload: applied [server] name, [server] motd, [web] listen; "
            f"now listening on {TAP_LISTENER}",
        )

        alice.say("still here after the reload")
        await bob.expect_lines("[HH:MM] <alice> still here after the reload")
        carol = await connect(self, server.port, "carol", welcome=False)
        await carol.wait_for(
            re.compile(
                rb"\A\*\*\* Welcome to Night Owl\r\n  Reloaded MOTD\.\r\n"
                rb"\*\*\* You are guest-[0-9a-f]{4}\. "
            )
        )
        wendy = await connect_web(self, port, "wendy", welcome=False)
        welcome = await wendy.next_frame()
        self.assertEqual(
            (welcome["event"], welcome["server"], welcome["motd"]),
            ("welcome", "Night Owl", ["Reloaded MOTD."]),
        )
        await wendy.next_frame()  # its join
        command(wendy, "hello through the new door")
        await alice.wait_for(re.compile(rb"<guest-[0-9a-f]{4}> hello through the new"))

        same_port = f"tcp:{port}:interface=127.0.0.1"
        rewrite(
            server, tap_ini(name="Night Owl", motd=("Reloaded MOTD.",), web=same_port)
        )
        server.process.signal_process("HUP")
        await log_line(
            server,
            f"reload: applied [web] listen; now listening on {same_port}; "
            f"stopped listening on {TAP_LISTENER}",
        )
        friend = await connect_web(self, port, "wendy's friend", welcome=False)
        await friend.wait_for(type="system", event="welcome", server="Night Owl")

        rewrite(server, tap_ini(name="Night Owl", motd=("Reloaded MOTD.",)))
        server.process.signal_process("HUP")
        await log_line(
            server, f"reload: applied [web] listen; stopped listening on {same_port}"
        )
        self.assertTrue(await refused(port), "the removed web door still accepts")
        command(wendy, "the old connection stays")
        await alice.wait_for(re.compile(rb"<guest-[0-9a-f]{4}> the old connection"))
        self.assertIsNone(wendy.closed)

    @async_test
    async def test_broken_file_is_refused(self) -> None:
        """
        After SIGHUP with an unknown key in C{tap.ini}, then with an
        invalid value, the log says each reload was refused and why,
        connected users still chat, and a new user still gets the old
        MOTD.  Once the file is fixed, SIGHUP applies it.
        """
        server = await start_server(self, tap_ini())
        alice = await telnet_user(self, server, "alice")
        bob = await telnet_user(self, server, "bob")
        await settle(alice, bob)
        path = os.path.join(server.directory, "tap.ini")

        rewrite(server, tap_ini(motd=("Never shown.",), server_extra="motd_typo = x\n"))
        server.process.signal_process("HUP")
        await log_line(
            server,
            "reload refused, the configuration in force is unchanged: "
            f"{path}: [server] motd_typo: not a known key",
        )
        rewrite(server, tap_ini(motd=("Never shown.",), grace=-1))
        server.process.signal_process("HUP")
        await log_line(
            server,
            "reload refused, the configuration in force is unchanged: "
            f"{path}: [server] shutdown_grace: ",
        )

        alice.say("still here")
        await bob.expect_lines("[HH:MM] <alice> still here")
        carol = await connect(self, server.port, "carol")
        carol.say("/motd")
        await carol.expect_lines(
            "*** Message of the day:", *(f"  {line}" for line in MOTD)
        )

        rewrite(server, tap_ini(motd=("Fixed MOTD.",)))
        server.process.signal_process("HUP")
        await log_line(server, "reload: applied [server] motd\n")
        carol.say("/motd")
        await carol.expect_lines("*** Message of the day:", "  Fixed MOTD.")
        self.assertNotIn("Traceback", server.log())

    @async_test
    async def test_history_path_needs_a_restart(self) -> None:
        """
        After SIGHUP with another C{[history] path}, the log says it only
        takes effect after a restart; users still chat, and no new history
        file is made.
        """
        server = await start_server(self, tap_ini())
        alice = await telnet_user(self, server, "alice")
        bob = await telnet_user(self, server, "bob")
        await settle(alice, bob)

        rewrite(server, tap_ini(history="path = elsewhere.sqlite3"))
        server.process.signal_process("HUP")
        await log_line(
            server,
            "reload: [history] path changed but only take effect after a restart",
        )
        await log_line(server, "reload: needs restart: [history] path")
        alice.say("same history as before")
        await bob.expect_lines("[HH:MM] <alice> same history as before")
        self.assertFalse(
            os.path.exists(os.path.join(server.directory, "elsewhere.sqlite3"))
        )

    @async_test
    async def test_unusable_listener_is_logged_not_fatal(self) -> None:
        """
        After SIGHUP with a web door on a port already taken, the log says
        it cannot listen there and the server goes on; once the port is
        changed to a free one, SIGHUP listens there.
        """
        server = await start_server(self, tap_ini())
        alice = await telnet_user(self, server, "alice")
        bob = await telnet_user(self, server, "bob")
        await settle(alice, bob)

        taken = f"tcp:{server.port}:interface=127.0.0.1"
        rewrite(server, tap_ini(web=taken))
        server.process.signal_process("HUP")
        await log_line(server, f"the web door cannot listen on {taken}: ")
        await log_line(
            server, f"reload: applied [web] listen; cannot listen on {taken} ("
        )
        alice.say("still running")
        await bob.expect_lines("[HH:MM] <alice> still running")

        rewrite(server, tap_ini(web=TAP_LISTENER))
        server.process.signal_process("HUP")
        match = await log_line(server, DOOR_LISTENING)
        await log_line(server, f"now listening on {TAP_LISTENER}")
        await connect_web(self, int(match.group(2)), "wendy")

    @async_test
    async def test_truncated_file_is_refused(self) -> None:
        """
        After SIGHUP with C{tap.ini} cut short (a failed deploy: its
        C{[web]} and C{[operators]} sections lost), then C{/rehash} with
        it empty but for a comment: each reload is refused, and the log
        and the operator's C{/rehash} answer say why.  The operator stays
        logged in, the web door keeps its port and accepts (it does not
        move to the default 8080), and the test limits stay (no "slow
        down").  Once the file is whole again, with C{[operators]} kept but
        emptied, SIGHUP applies it and logs the operator out.
        """
        text = tap_ini(web=TAP_LISTENER)
        server = await start_server(self, text)
        port = server.web_port
        if port is None:
            listening = rb"web door listening on 127\.0\.0\.1:(\d+)"
            match = await log_line(server, re.compile(listening))
            port = int(match.group(1))
        path = os.path.join(server.directory, "tap.ini")
        alice = await telnet_user(self, server, "alice")
        bob = await telnet_user(self, server, "bob")
        await settle(alice, bob)
        await become_operator(alice)
        advice = (
            "(a truncated file?); to reset a section to its defaults, keep it, empty"
        )

        rewrite(server, text[: text.index("\n[web]")])
        server.process.signal_process("HUP")
        await log_line(
            server,
            "reload refused, the configuration in force is unchanged: [web], "
            f"[operators] are missing from {path} {advice}\n",
        )

        rewrite(server, "# tchat\n")
        alice.say("/rehash")
        refused = (
            "alice reloaded tap.ini: refused, the configuration in force is "
            f"unchanged: {path} has no sections, only comments or nothing {advice}"
        )
        await alice.expect_lines(f"[HH:MM] *** {refused}")
        await log_line(server, f"{path} has no sections, only comments or nothing")

        alice.say("/bans")
        await alice.expect_lines("*** no bans in force:")
        for n in range(15):
            bob.say(f"line {n} under the test limits")
        await bob.sync()
        await alice.read_lines(15)
        wendy = await connect_web(self, port, "wendy")
        command(wendy, "through the web door")
        await alice.wait_for(b"> through the web door\r\n")
        log = server.log()
        self.assertNotIn("stopped listening", log)
        self.assertNotIn("8080", log)
        self.assertNotIn("slow down", log)
        self.assertNotIn(b"no longer an operator", bytes(alice.received.data))
        self.assertNotIn(b"slow down", bytes(bob.received.data))

        rewrite(server, tap_ini(web=TAP_LISTENER, operators=False))
        server.process.signal_process("HUP")
        await alice.wait_for(b"you are no longer an operator")
        await log_line(server, "reload: applied [operators]\n")

    @async_test
    async def test_removed_operator_account_ends_its_sessions(self) -> None:
        """
        After SIGHUP with the operator's account gone from C{[operators]},
        its user is told they are no longer an operator, and their next
        operator command is refused.
        """
        server = await start_server(self, tap_ini())
        alice = await telnet_user(self, server, "alice")
        await become_operator(alice)

        rewrite(server, tap_ini(operators=False))
        server.process.signal_process("HUP")
        await alice.expect_lines(
            f"*** you are no longer an operator: the account {OPERATOR} was "
            "changed or removed; /oper again"
        )
        await log_line(server, "reload: applied [operators]")
        alice.say("/bans")
        await alice.expect_lines(NOT_OPERATOR)


class OperatorTests(TestCase):
    """
    Operators' commands, from both doors, and what everyone else sees.
    """

    def setUp(self) -> None:
        require_loopback_aliases()

    @async_test
    async def test_users_are_refused_and_passwords_guarded(self) -> None:
        """
        A user who is no operator is refused every operator command, and
        nobody else sees them; C{/stats} shows them users, rooms, uptime
        and message rates.  Wrong C{/oper} names or passwords are refused
        alike, and after three from one address the next try from there
        waits a second before it is checked (the right password then gets
        in: guessing is slowed, nobody is locked out), while another
        address logs in at once.  An operator's C{/stats} shows more, such
        as users by door.
        """
        server = await start_server(self, tap_ini())
        alice = await telnet_user(self, server, "alice")
        guesser = await telnet_user(self, server, "guesser", bind=GUESSER)
        await settle(alice, guesser)
        for line in (
            "/kick alice",
            "/ban alice",
            "/ban 203.0.113.0/24 1h",
            "/unban 1",
            "/bans",
            "/mute alice 10m",
            "/unmute alice",
            "/announce hello everyone",
            "/motd set mine now",
            "/rehash",
        ):
            guesser.say(line)
            await guesser.expect_lines(NOT_OPERATOR)
        self.assertEqual(await alice.sync(), b"", "others saw nothing")

        guesser.say("/stats")
        lines = await guesser.read_lines(3)
        self.assertEqual(lines[0], b"*** tchat stats:")
        self.assertRegex(lines[1], rb"\A  users: 2   rooms: 1   up \d+s\Z")
        self.assertRegex(
            lines[2],
            rb"\A  messages per minute: [\d.]+ \(last minute\), "
            rb"[\d.]+ \(last 15 minutes\)\Z",
        )
        self.assertEqual(await guesser.sync(), b"", "no more to a user")

        for attempt in (
            f"/oper {OPERATOR} wrong",
            f"/oper nobody {PASSWORD}",
            f"/oper {OPERATOR.upper()} {PASSWORD.upper()}",
        ):
            guesser.say(attempt)
            await guesser.expect_lines("!!! wrong operator name or password")
        guesser.say(f"/oper {OPERATOR} {PASSWORD}")
        await guesser.expect_lines(
            "*** too many failed /oper attempts lately: yours is checked in 1 s"
        )
        guessing = f"by guesser (telnet, {GUESSER})"
        await log_line(server, f"failed /oper as 'nobody' {guessing}")
        await log_line(
            server,
            f"slowing /oper from guesser (telnet, {GUESSER}): too many failed "
            "attempts; checked in 1 s",
        )
        await guesser.expect_lines(OPERATOR_NOW, timeout=10)

        await become_operator(alice)
        alice.say("/stats")
        lines = await alice.read_lines(9)
        self.assertEqual(lines[0], b"*** tchat stats:")
        self.assertRegex(lines[1], rb"\A  users: 2   rooms: 1   up \d+s\Z")
        self.assertIn(b"  users by door: telnet 2", lines)
        self.assertIn(b"  operators online: 2   bans: 0   muted: 0", lines)
        self.assertIn(b"  reloads: 0 ok, 0 failed", lines)
        await log_line(server, f"alice (telnet, {MAIN}) is now operator {OPERATOR}")

    @async_test
    async def test_kick_announce_motd_and_rehash(self) -> None:
        """
        A telnet operator kicks a web user: the web user reads the notice
        and a goodbye, then the WebSocket closes with 1008; a telnet user
        in the room sees the notice and the quit.  An announcement reaches
        a telnet user and a web user in another room.  A web operator
        sets the MOTD, which new users of both doors are welcomed with.
        C{/rehash} tells operators what the reload did.  The log has every
        operator action.
        """
        server = await start_server(self, tap_ini(), web=WEB)
        alice = await telnet_user(self, server, "alice")
        carol = await telnet_user(self, server, "carol")
        bob = await web_user(self, server, "bob")
        dave = await web_user(self, server, "dave")
        dave.send({"type": "join", "room": "#side"})
        await dave.wait_for(type="system", event="join", room="#side", name="dave")
        dave.send({"type": "part", "room": "#lobby"})
        await dave.wait_for(type="system", event="part", room="#lobby", name="dave")
        await settle(alice, carol, bob, dave)
        await become_operator(alice)
        await become_operator(dave)

        alice.say("/kick bob flooding the room")
        kicked = "alice kicked bob (web): flooding the room"
        for client in (alice, carol):
            await client.expect_lines(
                f"[HH:MM] *** {kicked}",
                "[HH:MM] *** bob (web) quit (kicked by alice: flooding the room)",
            )
        await bob.expect_frames(
            notice("kick", "alice", kicked),
            {
                "type": "system",
                "event": "goodbye",
                "message": "Goodbye (kicked by alice: flooding the room)",
                "reason": "kicked by alice: flooding the room",
            },
        )
        closed = await bob.expect_closed()
        self.assertEqual((closed.server_code, closed.server_reason), (1008, "kicked"))
        await dave.wait_for(**notice("kick", "alice", kicked))
        await log_line(server, f"operator {OPERATOR} (alice, telnet): {kicked}")

        alice.say("/announce Maintenance at noon")
        for client in (alice, carol):
            await client.expect_lines(
                "[HH:MM] *** Announcement from alice: Maintenance at noon"
            )
        await dave.expect_frames(notice("announce", "alice", "Maintenance at noon"))

        command(dave, "/motd set Fresh MOTD | Second line")
        changed = "dave changed the message of the day (/motd shows it)"
        for client in (alice, carol):
            await client.expect_lines(f"[HH:MM] *** {changed}")
        await dave.expect_frames(notice("motd", "dave", changed))
        erin = await connect(self, server.port, "erin")
        self.assertIn(
            b"\r\n  Fresh MOTD\r\n  Second line\r\n*** You are ", erin.received.data
        )
        frank = await connect_web(self, web_port(server), "frank", welcome=False)
        welcome = await frank.next_frame()
        self.assertEqual(welcome["motd"], ["Fresh MOTD", "Second line"])
        await settle(alice, carol, erin)
        await log_line(server, f"operator {OPERATOR} (dave, web): {changed}")

        alice.say("/rehash")
        rehashed = "alice reloaded tap.ini: nothing changed"
        await alice.expect_lines(f"[HH:MM] *** {rehashed}")
        await dave.expect_frames(notice("rehash", "alice", rehashed))
        self.assertEqual(await carol.sync(), b"", "only operators see it")
        await log_line(server, "/rehash: reloading")

    @async_test
    async def test_ban_survives_a_restart_until_lifted(self) -> None:
        """
        An operator bans a connected user by nick: the user (from
        127.0.0.2) is told and cut off, and others see the notice and the
        quit.  From 127.0.0.2, telnet and WebSocket connections are then
        refused with the ban's text, while 127.0.0.1 still connects.  After
        a restart the ban still holds and C{/bans} lists it; C{/unban}
        lifts it, and 127.0.0.2 connects again.  A nick pattern ban stops
        users taking matching nicks until it is lifted.  A ban of a
        network is kept and listed alike, and lifted by its mask.
        """
        server = await start_server(self, tap_ini(), web=WEB)
        alice = await telnet_user(self, server, "alice")
        carol = await telnet_user(self, server, "carol")
        mallory = await telnet_user(self, server, "mallory", bind=BANNED)
        await settle(alice, carol, mallory)
        await become_operator(alice)

        alice.say("/ban mallory 2h trolling")
        banned = f"alice banned address {BANNED}/32 for 2h: trolling"
        await mallory.expect_lines(
            f"[HH:MM] *** {banned}", "*** Goodbye (banned by alice: trolling)"
        )
        await mallory.expect_closed()
        for client in (alice, carol):
            await client.expect_lines(
                f"[HH:MM] *** {banned}",
                "[HH:MM] *** mallory (telnet) quit (banned by alice: trolling)",
            )
        alice.say("/ban 203.0.113.0/24 7d open proxies")
        await alice.expect_lines(
            "[HH:MM] *** alice banned address 203.0.113.0/24 for 7d: open proxies"
        )
        refusal = re.compile(
            rb"\A!!! you are banned from tchat for (2h|1h 59m): trolling\r\n\Z"
        )
        await self._refused(server, refusal)
        await connect(self, server.port, "from 127.0.0.1")
        await log_line(server, f"operator {OPERATOR} (alice, telnet): {banned}")

        await server.stop()
        server = await start_server(
            self, tap_ini(), web=WEB, directory=server.directory
        )
        await self._refused(server, refusal)
        alice = await telnet_user(self, server, "alice")
        await become_operator(alice)
        alice.say("/bans")
        lines = await alice.read_lines(3)
        self.assertEqual(lines[0], b"*** 2 bans in force:")
        listed = f"  #1 address {BANNED}/32 by {OPERATOR} for "
        self.assertRegex(
            lines[1], re.escape(listed).encode() + rb"(2h|1h 59m): trolling\Z"
        )
        listed = f"  #2 address 203.0.113.0/24 by {OPERATOR} for "
        self.assertRegex(
            lines[2], re.escape(listed).encode() + rb"(7d|6d 23h): open proxies\Z"
        )
        alice.say("/unban 203.0.113.0/24")
        await alice.expect_lines(
            "[HH:MM] *** alice lifted the ban #2 (address 203.0.113.0/24)"
        )
        alice.say("/unban 1")
        await alice.expect_lines(
            f"[HH:MM] *** alice lifted the ban #1 (address {BANNED}/32)"
        )
        mallory = await telnet_user(self, server, "mallory", bind=BANNED)
        await settle(alice, mallory)

        alice.say("/ban troll* 10m")
        await alice.expect_lines("[HH:MM] *** alice banned nick troll* for 10m")
        trudy = await connect(self, server.port, "trudy")
        await settle(alice, trudy)
        trudy.say("/nick TrollFace")
        await trudy.expect_lines("!!! the nick TrollFace is banned; pick another")
        alice.say("/unban troll*")
        await alice.expect_lines("[HH:MM] *** alice lifted the ban #1 (nick troll*)")
        await trudy.set_nick("TrollFace")

    async def _refused(self, server: TchatServer, refusal: re.Pattern[bytes]) -> None:
        """
        Check that telnet and WebSocket connections from L{BANNED} are
        refused with the ban's text, while nobody else is told.
        """
        again = await connect(self, server.port, "banned", welcome=False, bind=BANNED)
        await again.expect_closed()
        self.assertRegex(bytes(again.received.data), refusal)
        web = await connect_web(
            self, web_port(server), "banned web", welcome=False, bind=BANNED
        )
        frame = await web.next_frame()
        self.assertEqual((frame["type"], frame["code"]), ("error", "banned"))
        self.assertRegex(b"!!! " + frame["message"].encode() + b"\r\n", refusal)
        closed = await web.expect_closed()
        self.assertEqual((closed.server_code, closed.server_reason), (1008, "banned"))

    @async_test
    async def test_mute_and_unmute(self) -> None:
        """
        A muted user's lines are refused (they are told so) and nobody sees
        them, also after they reconnect from the same address; others in
        the room see the mute notice.  Once unmuted, they are heard again.
        """
        server = await start_server(self, tap_ini())
        alice = await telnet_user(self, server, "alice")
        carol = await telnet_user(self, server, "carol", bind=MUTED)
        dave = await telnet_user(self, server, "dave")
        await settle(alice, carol, dave)
        await become_operator(alice)

        alice.say("/mute carol 10m")
        muted = "alice muted carol (telnet) for 10m"
        for client in (alice, carol, dave):
            await client.expect_lines(f"[HH:MM] *** {muted}")
        refusal = (
            rb"\A!!! an operator muted you for (10m|9m \d+s); you can still read\Z"
        )
        carol.say("can anyone hear me")
        self.assertRegex(await carol.next_line(), refusal)
        self.assertEqual(await dave.sync(), b"", "nobody sees a muted line")

        await carol.close()
        await dave.expect_lines("[HH:MM] *** carol (telnet) quit (connection closed)")
        carol = await telnet_user(self, server, "carol", bind=MUTED)
        await settle(alice, carol, dave)
        carol.say("back again")
        self.assertRegex(await carol.next_line(), refusal)
        self.assertEqual(await dave.sync(), b"", "still muted after a reconnect")

        alice.say("/unmute carol")
        unmuted = "alice unmuted carol (telnet)"
        for client in (alice, carol, dave):
            await client.expect_lines(f"[HH:MM] *** {unmuted}")
        carol.say("heard again")
        await dave.expect_lines("[HH:MM] <carol> heard again")
        await log_line(server, f"operator {OPERATOR} (alice, telnet): {unmuted}")
