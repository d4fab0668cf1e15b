# -*- test-case-name: tests.integration.test_ssh_server -*-
"""
The SSH door against a real C{twistd -n tchat}, with the real OpenSSH
client (Debian's C{openssh-client}) driven through a pseudo-terminal, as a
person at a terminal would use it, beside telnet and WebSocket users.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import struct
import termios

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tests.integration.server import (
    CHEAP_ACCOUNTS,
    TAP_INI,
    ChatClient,
    ProcessOutput,
    TchatServer,
    async_test,
    connect,
    connect_web,
    global_reactor,
    make_directory,
    start_server,
)
from tests.support import require

SSH = shutil.which("ssh")
KEYGEN = shutil.which("ssh-keygen")
LISTEN = "tcp:0:interface=127.0.0.1"
WEB = "tcp:0:interface=127.0.0.1"

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def plain(data: bytes) -> bytes:
    """A terminal's bytes without escape sequences and carriage returns."""
    return ANSI.sub(b"", data).replace(b"\r", b"")


class SSHUser:
    """
    One real C{ssh} client in a pseudo-terminal of C{columns} x C{rows},
    logging in as C{name} (with a key of its own unless C{key} is false),
    to the server's SSH door, or to C{host} and C{port} when given.
    """

    def __init__(
        self,
        testcase: TestCase,
        server: TchatServer,
        name: str,
        key: str | None = None,
        columns: int = 100,
        rows: int = 30,
        extra: tuple[str, ...] = (),
        command: str | None = None,
        method: str = "keyboard-interactive",
        host: str = "127.0.0.1",
        port: int | None = None,
        connect_timeout: int = 10,
    ) -> None:
        port = port if port is not None else server.ssh_port
        assert SSH is not None and port is not None
        self.process = ProcessOutput(f"ssh {name}")
        args = [
            SSH,
            "-p",
            str(port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            f"ConnectTimeout={connect_timeout}",
            "-o",
            "NumberOfPasswordPrompts=1",
        ]
        if key is not None:
            args += ["-i", key, "-o", "IdentitiesOnly=yes"]
        else:
            args += [
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                f"PreferredAuthentications={method}",
            ]
        args += [*extra, f"{name}@{host}"]
        if command is not None:
            args.append(command)
        script = f"stty cols {columns} rows {rows}; exec " + " ".join(
            f"'{a}'" for a in args
        )
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "xterm"}
        env["HOME"] = make_directory(testcase)
        self.transport = global_reactor().spawnProcess(
            self.process, "/bin/sh", ["sh", "-c", script], env=env, usePTY=True
        )
        testcase.addCleanup(self.stop)

    @property
    def seen(self) -> bytes:
        """Everything the terminal showed so far, as plain text."""
        return plain(bytes(self.process.output.data))

    def type(self, keys: bytes) -> None:
        self.transport.write(keys)

    async def wait_for(
        self, text: bytes | re.Pattern[bytes], timeout: float = 10.0
    ) -> None:
        """Wait until the terminal shows C{text} (escape sequences aside)."""
        pattern = text if isinstance(text, re.Pattern) else re.compile(re.escape(text))
        deadline = global_reactor().seconds() + timeout
        while not pattern.search(self.seen):
            if self.process.has_ended or global_reactor().seconds() > deadline:
                raise AssertionError(
                    f"{pattern.pattern!r} not shown; the terminal showed:\n"
                    + self.seen.decode(errors="replace")
                )
            await sleep(0.05)

    def resize(self, columns: int, rows: int) -> None:
        """Change the terminal's size, as a window resize does."""
        size = struct.pack("HHHH", rows, columns, 0, 0)
        fcntl.ioctl(self.transport.fd, termios.TIOCSWINSZ, size)
        self.transport.signalProcess(signal.SIGWINCH)

    async def ended(self, timeout: float = 10.0) -> int | None:
        assert await self.process.wait_ended(timeout), "ssh did not end"
        return self.process.exit_code

    async def stop(self) -> None:
        if not self.process.has_ended:
            self.process.signal_process("KILL")
            await self.process.wait_ended(5)


def sleep(seconds: float) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    global_reactor().callLater(seconds, d.callback, None)
    return d


async def user_key(testcase: TestCase, name: str) -> str:
    """A fresh ed25519 key pair of C{name}'s; the private key's path."""
    assert KEYGEN is not None
    path = os.path.join(make_directory(testcase), name)
    process = ProcessOutput("ssh-keygen")
    global_reactor().spawnProcess(
        process, KEYGEN, [KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", path]
    )
    assert await process.wait_ended(10) and process.exit_code == 0
    return path


async def telnet_person(
    testcase: TestCase, server: TchatServer, nick: str
) -> ChatClient:
    client = await connect(testcase, server.port, nick)
    await client.set_nick(nick)
    return client


class SSHDoorTests(TestCase):
    """Logging in, chatting, the terminal, and what is refused."""

    def setUp(self) -> None:
        require(SSH is not None and KEYGEN is not None, "ssh is not installed")

    async def _server(self, ini: str = TAP_INI, web: bool = False) -> TchatServer:
        return await start_server(self, ini, ssh=LISTEN, web=WEB if web else None)

    @async_test
    async def test_key_login_and_chat_across_doors(self) -> None:
        """
        alice logs in with a key as alice@: her nick is alice, she is in
        #lobby with a telnet and a WebSocket user, shown as (ssh), and the
        three talk; what she types is never garbled by lines that arrive.
        """
        server = await self._server(web=True)
        bob = await telnet_person(self, server, "bob")
        assert server.web_port is not None
        carol = await connect_web(self, server.web_port, "carol")
        await carol.set_nick("carol")
        key = await user_key(self, "alice")
        alice = SSHUser(self, server, "alice", key=key)
        await alice.wait_for(b"you are now known as alice")
        # (Announced at once here, as a guest: the reconnect grace is off.)
        await bob.wait_for(b"(ssh) is now known as alice\r\n")
        # She starts typing; lines arrive meanwhile; her line is intact.
        alice.type(b"hello from")
        bob.say("a line while alice types")
        await alice.wait_for(b"<bob> a line while alice types")
        await alice.wait_for(re.compile(rb"#lobby> hello from$"))
        alice.type(b" ssh\r")
        await bob.wait_for(b"<alice> hello from ssh\r\n")
        await carol.wait_for(type="usermsg", name="alice", message="hello from ssh")
        carol.send({"type": "message", "message": "hi from the web"})
        await alice.wait_for(b"<carol> hi from the web")
        bob.say("/who")
        await bob.wait_for(
            b"*** #lobby (3): bob (telnet), carol (web), alice (ssh)\r\n"
        )

    @async_test
    async def test_guest_and_ctrl_d(self) -> None:
        """
        Logging in as guest@ gives a guest nick; Ctrl-D on an empty line
        ends the session cleanly (exit status 0), and others see the quit.
        """
        server = await self._server()
        bob = await telnet_person(self, server, "bob")
        key = await user_key(self, "someone")
        guest = SSHUser(self, server, "guest", key=key)
        await guest.wait_for(re.compile(rb"You are (guest-[0-9a-f]{4})"))
        nick = re.search(rb"You are (guest-[0-9a-f]{4})", guest.seen).group(1)  # type: ignore[union-attr]
        await bob.wait_for(b"*** " + nick + b" (ssh) joined #lobby\r\n")
        await guest.wait_for(b"#lobby> ")
        guest.type(b"\x04")
        self.assertEqual(await guest.ended(), 0)
        await bob.wait_for(b"*** " + nick + b" (ssh) quit\r\n")

    @async_test
    async def test_line_editing_and_history(self) -> None:
        """
        Arrows move in the line, Ctrl-A/E jump to its ends, Ctrl-W cuts a
        word, Ctrl-U the line, and the up arrow brings back what was sent.
        """
        server = await self._server()
        bob = await telnet_person(self, server, "bob")
        key = await user_key(self, "alice")
        alice = SSHUser(self, server, "alice", key=key)
        await alice.wait_for(b"you are now known as alice")
        await alice.wait_for(b"#lobby> ")
        alice.type(b"wrld\x1b[D\x1b[D\x1b[Do\r")
        await bob.wait_for(b"<alice> world\r\n")
        alice.type(b"ello\x01h\x05 there\r")
        await bob.wait_for(b"<alice> hello there\r\n")
        alice.type(b"keep drop\x17me\r")
        await bob.wait_for(b"<alice> keep me\r\n")
        alice.type(b"all of this goes\x15kept\r")
        await bob.wait_for(b"<alice> kept\r\n")
        alice.type(b"\x1b[A\x1b[A\r")
        await bob.wait_for(b"<alice> keep me\r\n")

    @async_test
    async def test_window_resize_wraps_lines(self) -> None:
        """
        Lines are wrapped to the terminal's width, and a window resize
        changes where they wrap.
        """
        server = await self._server()
        bob = await telnet_person(self, server, "bob")
        key = await user_key(self, "alice")
        alice = SSHUser(self, server, "alice", key=key, columns=100)
        await alice.wait_for(b"you are now known as alice")
        word = b"0123456789" * 6
        bob.say(word.decode())
        await alice.wait_for(b"<bob> " + word)
        alice.resize(40, 20)
        await sleep(0.5)
        bob.say("x" + word.decode())
        # 40 columns: the 60 characters do not fit on the line.
        await alice.wait_for(re.compile(rb"<bob> x[0-9]+\n  [0-9]+"))

    @async_test
    async def test_password_login(self) -> None:
        """
        Without a key, the keyboard-interactive prompt (or the password
        method) logs in to the account of the user name; a wrong password
        leaves a guest who is told why; an empty answer is a guest.
        """
        server = await self._server(TAP_INI + CHEAP_ACCOUNTS)
        owner = await telnet_person(self, server, "alice")
        owner.say("/register correct horse")
        await owner.wait_for(b"is registered to you")
        owner.say("/quit")
        await owner.expect_closed()
        alice = SSHUser(self, server, "alice")
        await alice.wait_for(
            b"Password of alice's account (Enter: come in as a guest):"
        )
        alice.type(b"correct horse\r")
        await alice.wait_for(b"You are logged in as alice")
        wrong = SSHUser(self, server, "alice", method="password")
        await wrong.wait_for(b"password:")
        wrong.type(b"battery staple\r")
        await wrong.wait_for(b"wrong nick or password")
        guest = SSHUser(self, server, "nobody")
        await guest.wait_for(b"(Enter: come in as a guest):")
        guest.type(b"\r")
        await guest.wait_for(re.compile(rb"you are now known as nobody|You are guest-"))

    @async_test
    async def test_key_bound_to_an_account(self) -> None:
        """
        alice registers over SSH and binds her key with /key add; next time
        that key logs her in to her account with no password, whatever name
        she gives, and /key list shows it by its fingerprint.
        """
        server = await self._server(TAP_INI + CHEAP_ACCOUNTS)
        bob = await telnet_person(self, server, "bob")
        key = await user_key(self, "alice")
        first = SSHUser(self, server, "alice", key=key)
        await first.wait_for(b"you are now known as alice")
        first.type(b"/register correct horse\r")
        await first.wait_for(b"is registered to you")
        first.type(b"/key add\r")
        await first.wait_for(b"added to alice")
        first.type(b"\x04")
        self.assertEqual(await first.ended(), 0)
        await bob.wait_for(b"*** alice (ssh, registered) quit\r\n")
        again = SSHUser(self, server, "whoever", key=key)
        await again.wait_for(b"You are logged in as alice")
        again.type(b"/key list\r")
        await again.wait_for(re.compile(rb"SHA256:[A-Za-z0-9+/]{43}"))
        again.type(b"back with my key\r")
        await bob.wait_for(b"<alice> back with my key\r\n")

    @async_test
    async def test_only_chat_is_reachable(self) -> None:
        """
        A command, a subsystem and remote port forwarding are refused; a
        local forward gets nowhere; the chat goes on for the others.
        """
        server = await self._server()
        bob = await telnet_person(self, server, "bob")
        key = await user_key(self, "mallory")
        command = SSHUser(self, server, "mallory", key=key, command="cat /etc/passwd")
        self.assertEqual(await command.ended(), 255)
        self.assertIn(b"request failed", command.seen)
        self.assertNotIn(b"root:", command.seen)
        sftp = SSHUser(self, server, "mallory", key=key, extra=("-s",), command="sftp")
        self.assertEqual(await sftp.ended(), 255)
        forward = SSHUser(
            self,
            server,
            "mallory",
            key=key,
            extra=(
                "-N",
                "-o",
                "ExitOnForwardFailure=yes",
                "-R",
                "127.0.0.1:0:127.0.0.1:22",
            ),
        )
        self.assertEqual(await forward.ended(), 255)
        self.assertIn(b"forwarding failed", forward.seen)
        bob.say("still here")
        await bob.sync()


class BadInputTests(TestCase):
    """What is not SSH, or not finished, goes; nobody else notices."""

    def setUp(self) -> None:
        require(SSH is not None and KEYGEN is not None, "ssh is not installed")

    @async_test
    async def test_garbage_stalls_and_floods(self) -> None:
        """
        Garbage instead of a banner is disconnected; a client that sends
        its banner and stops is let go after C{silent_timeout}; a
        100 KB paste is cut to the longest line taken; bob chats on.
        """
        ini = TAP_INI.replace("[limits]\n", "[limits]\nsilent_timeout = 2\n")
        server = await start_server(self, ini, ssh=LISTEN)
        assert server.ssh_port is not None
        bob = await telnet_person(self, server, "bob")
        garbage = await connect(self, server.ssh_port, "garbage", welcome=False)
        garbage.send(b"GET / HTTP/1.0\r\n\r\n" + b"\x00\xff" * 1000 + b"\r\n")
        await garbage.expect_closed(timeout=10)
        stalled = await connect(self, server.ssh_port, "stalled", welcome=False)
        stalled.send(b"SSH-2.0-OpenSSH_9.2\r\n")
        await stalled.expect_closed(timeout=10)
        key = await user_key(self, "paster")
        paster = SSHUser(self, server, "paster", key=key)
        await paster.wait_for(b"you are now known as paster")
        await paster.wait_for(b"#lobby> ")
        paster.type(b"y" * 100_000 + b"\r")
        line = await bob.wait_for(re.compile(rb"<paster> (y+)\r\n"), timeout=20)
        self.assertEqual(len(line.group(1)), 4096)
        bob.say("/who")
        await bob.wait_for(b"*** #lobby (2): bob (telnet), paster (ssh)\r\n")
