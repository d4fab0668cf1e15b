# -*- test-case-name: tests.integration -*-
"""
Helpers for the integration suite: a real C{twistd tchat} process listening
on 127.0.0.1, real TCP line clients talking to it, and bounded runs of other
programs (C{nc}, C{pip}, C{twistd --check}).

Failures are raised as trial's L{FailTest}, so they are reported as test
failures rather than errors.  Every wait here is bounded in time, and every
process or connection a helper starts is stopped again by the test's
cleanup, by its own PID or transport: nothing else is ever signalled.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
)
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import (
    ProcessDone,
    ProcessExitedAlready,
    ProcessTerminated,
)
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import FailTest, TestCase

from tchat.palette import PALETTE

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
"""The C{twistd} of the interpreter running the tests."""

LOOPBACK = "127.0.0.1"

DOOR_LISTENING = re.compile(
    rb"(telnet|web|ssh|irc|admin) door listening on 127\.0\.0\.1:(\d+)"
)
"""What the server logs once one of its doors is listening."""

MOTD = ("Integration tests were here.", "Second line of the MOTD.")

TEST_LIMITS = """\
[limits]
# The tests type faster than people do: per-connection and per-room rates
# are lifted here, and checked by tests.integration.test_siege and
# tests.test_limits instead. Every other limit keeps its default.
messages_per_second = 0
room_messages_per_second = 0
nick_changes_per_minute = 0
joins_per_minute = 0
"""
"""The C{[limits]} section of the test servers' configuration."""

TAP_INI = """\
# Written by tests/integration/server.py for one test's server.
[server]
name = tchat
motd = {motd}
default_room = #lobby
# Off here: most tests watch people come and go at once. Tests of
# reconnects nobody notices use GRACEFUL_TAP_INI.
reconnect_grace = 0

[telnet]
# Replaced by --telnet on the command line.
listen = tcp:4444:interface=127.0.0.1

{limits}
[web]
# No web door unless a test asks for one with --web.
listen =
""".format(motd="\n    ".join(MOTD), limits=TEST_LIMITS)
"""The configuration every test server runs with unless told otherwise."""

CHEAP_ACCOUNTS = "\n[accounts]\nhash_memory = 1024\nhash_time = 1\n"
"""An C{[accounts]} section with Argon2id at a cost a test can pay many
times over: the tests check logins, not Argon2."""

GRACEFUL_TAP_INI = TAP_INI.replace("reconnect_grace = 0", "reconnect_grace = 60")
"""L{TAP_INI} with the shipped reconnect grace: a dropped connection that
comes back within a minute is a continuation nobody notices."""

STAMP = b"[HH:MM]"
"""How L{ChatClient.expect_lines} shows a current C{[HH:MM]} time stamp."""

ANSI = re.compile(rb"\x1b\[[0-9;]*m")
"""An ANSI colour escape, as the server paints nicks with."""

_Self = TypeVar("_Self", bound=TestCase)


def global_reactor() -> Any:
    """
    The global reactor, which trial runs; looked up when needed rather than
    held at module level.
    """
    from twisted.internet import reactor

    return reactor


def async_test(
    method: Callable[[_Self], Coroutine[Any, Any, None]],
) -> Callable[[_Self], Deferred[None]]:
    """
    Let trial run an C{async def} test method: it waits for the Deferred.

    @param method: The coroutine test method.
    @return: A method returning a Deferred, with the same name and docstring.
    """

    @functools.wraps(method)
    def run(self: _Self) -> Deferred[None]:
        return ensureDeferred(method(self))

    return run


def _recent_stamps() -> set[bytes]:
    """
    The C{HH:MM} stamps a line received in the last few seconds may carry,
    as the server writes them (local time, like ours: it has our TZ).
    """
    now = time.time()
    return {time.strftime("%H:%M", time.localtime(t)).encode() for t in (now, now - 60)}


def unstamp(line: bytes) -> bytes:
    """
    Replace a leading C{[HH:MM]} stamp that shows the current time by the
    literal L{STAMP}, so tests can compare whole lines.  A stamp showing any
    other time is left as it is, and so makes the comparison fail.

    @param line: One received line.
    @return: The line with its stamp normalised.
    """
    match = re.match(rb"\[(\d\d:\d\d)\]", line)
    if match and match.group(1) in _recent_stamps():
        return STAMP + line[match.end() :]
    return line


def _as_bytes(text: str | bytes) -> bytes:
    return text.encode("utf-8") if isinstance(text, str) else text


def _pattern(pattern: str | bytes | re.Pattern[bytes]) -> re.Pattern[bytes]:
    if isinstance(pattern, re.Pattern):
        return pattern
    return re.compile(re.escape(_as_bytes(pattern)))


Matcher = Callable[[bytearray, int], "re.Match[bytes] | None"]


class _Waiter:
    """
    One pending wait on a L{Received}: a matcher and the Deferred to fire.
    """

    def __init__(self, matcher: Matcher, what: str) -> None:
        self.matcher = matcher
        self.what = what
        self.deferred: Deferred[re.Match[bytes]] = Deferred()
        self.timer: Any = None


class _OneWait:
    """
    The bounded single-wait machinery shared by byte streams (L{Received})
    and frame streams (L{WebClient}): at most one pending waiter, failed at
    its timeout with everything received so far.

    Users provide C{name}, C{describe()} and C{_check()}, and keep the
    pending waiter (anything with C{what}, C{deferred} and C{timer}) in
    C{_waiter}.
    """

    name: str
    _waiter: Any

    def describe(self) -> str:
        raise NotImplementedError

    def _check(self) -> None:
        raise NotImplementedError

    def _start_wait(self, waiter: Any, timeout: float) -> Deferred[Any]:
        assert self._waiter is None, f"{self.name}: already waiting"
        self._waiter = waiter
        waiter.timer = global_reactor().callLater(
            timeout, self._fail, waiter, f"did not arrive within {timeout} s"
        )
        self._check()
        return waiter.deferred  # type: ignore[no-any-return]

    def _fail(self, waiter: Any, why: str) -> None:
        if self._waiter is not waiter:
            return
        self._waiter = None
        if waiter.timer.active():
            waiter.timer.cancel()
        waiter.deferred.errback(
            FailTest(f"{self.name}: {waiter.what} {why}.\n{self.describe()}")
        )


class Received(_OneWait):
    """
    Bytes arriving from one peer over time, and bounded waits for patterns in
    them.

    A cursor marks how far the test has read: each successful wait moves it
    past what matched, so consecutive waits assert the order of arrival.

    @ivar name: Who is receiving, for failure messages.
    @ivar data: Everything received so far.
    @ivar cursor: The offset in L{data} up to which the test has read.
    @ivar ended: Whether no more bytes can arrive.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.data = bytearray()
        self.cursor = 0
        self.ended = False
        self._waiter: _Waiter | None = None

    def feed(self, data: bytes) -> None:
        """
        More bytes arrived.
        """
        self.data += data
        self._check()

    def end(self) -> None:
        """
        The stream ended: a pending wait that is not satisfied yet fails now
        rather than at its timeout.
        """
        self.ended = True
        self._check()

    def rest(self) -> bytes:
        """
        What arrived after the cursor.
        """
        return bytes(self.data[self.cursor :])

    def describe(self) -> str:
        """
        Everything received, split at the cursor, for failure messages.
        """
        state = "closed" if self.ended else "open"
        return (
            f"{self.name} ({state}) had read {bytes(self.data[: self.cursor])!r}\n"
            f"and then received {self.rest()!r}"
        )

    def wait(self, matcher: Matcher, what: str, timeout: float) -> Deferred[Any]:
        """
        Wait until C{matcher} matches at or after the cursor, then move the
        cursor past the match.

        @param matcher: Called with the data and the cursor; returns a match.
        @param what: What is awaited, for the failure message.
        @param timeout: Seconds to wait before failing.
        @return: A Deferred firing with the match, or failing with an
            L{FailTest} that shows everything received.
        """
        return self._start_wait(_Waiter(matcher, what), timeout)

    def _check(self) -> None:
        waiter = self._waiter
        if waiter is None:
            return
        match = waiter.matcher(self.data, self.cursor)
        if match is None:
            if self.ended:
                self._fail(waiter, "did not arrive before the stream ended")
            return
        self._waiter = None
        waiter.timer.cancel()
        self.cursor = match.end()
        waiter.deferred.callback(match)

    async def wait_for(
        self, pattern: str | bytes | re.Pattern[bytes], timeout: float = 5.0
    ) -> re.Match[bytes]:
        """
        Wait for a literal (C{str} is UTF-8 encoded) or a regex to arrive
        anywhere after the cursor.

        @return: The match; the cursor is now past it.
        """
        compiled = _pattern(pattern)
        result: re.Match[bytes] = await self.wait(
            compiled.search, f"{compiled.pattern!r}", timeout
        )
        return result


_LINE = re.compile(rb"([^\n]*)\r\n")


class ChatClient(Protocol):
    """
    A real TCP client of the telnet door, as a test drives it.

    @ivar name: Who this client is in the test, for failure messages.
    @ivar nick: The client's nick, as last set through L{ChatClient.set_nick}
        or read from the welcome.
    @ivar code: The resume code from the welcome.
    @ivar replay: The recent messages of #lobby shown after the welcome, as
        read by L{connect} (see L{ChatClient.read_block}).
    @ivar received: What the server sent.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.nick = ""
        self.code = ""
        self.replay: list[bytes] = []
        self.received = Received(name)
        self._lost: list[Deferred[None]] = []
        self.connected = False

    # -- Protocol ----------------------------------------------------------

    def connectionMade(self) -> None:
        self.connected = True

    def dataReceived(self, data: bytes) -> None:
        self.received.feed(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.connected = False
        self.received.end()
        waiting, self._lost = self._lost, []
        for d in waiting:
            d.callback(None)

    # -- what tests do -----------------------------------------------------

    def send(self, data: bytes) -> None:
        """
        Send raw bytes, exactly as given.
        """
        assert self.transport is not None
        self.transport.write(data)

    def say(self, text: str | bytes) -> None:
        """
        Send one line, ended with CR LF as telnet does.
        """
        self.send(_as_bytes(text) + b"\r\n")

    async def wait_for(
        self, pattern: str | bytes | re.Pattern[bytes], timeout: float = 5.0
    ) -> re.Match[bytes]:
        """
        See L{Received.wait_for}.
        """
        return await self.received.wait_for(pattern, timeout)

    async def next_line(self, timeout: float = 5.0) -> bytes:
        """
        Read the next whole line after the cursor.

        @return: The line without its CR LF.
        """
        match: re.Match[bytes] = await self.received.wait(
            _LINE.match, "a next line", timeout
        )
        return match.group(1)

    async def expect_lines(self, *expected: str | bytes, timeout: float = 5.0) -> None:
        """
        Assert that the next lines are exactly C{expected}, in order.

        A current time stamp at the start of a received line compares equal
        to the literal C{[HH:MM]} (L{STAMP}).

        @param expected: Lines without line ends; C{str} is UTF-8 encoded.
        @raise FailTest: Showing the lines and everything received.
        """
        want = [_as_bytes(line) for line in expected]
        got: list[bytes] = []
        start = self.received.cursor
        try:
            for _ in want:
                got.append(unstamp(await self.next_line(timeout)))
        except FailTest as e:
            raise FailTest(
                f"{self.name}: expected lines {want!r}, got only {got!r}\n{e}"
            ) from None
        if got != want:
            raise FailTest(
                f"{self.name}: expected lines\n  {want!r}\nbut got\n  {got!r}\n"
                f"(received from offset {start}: "
                f"{bytes(self.received.data[start:])!r})"
            )

    async def read_lines(self, count: int, timeout: float = 5.0) -> list[bytes]:
        """
        Read the next C{count} lines, with current time stamps shown as
        L{STAMP}.
        """
        return [unstamp(await self.next_line(timeout)) for _ in range(count)]

    async def read_block(
        self, end: bytes, timeout: float = 5.0, limit: int = 1000
    ) -> list[bytes]:
        """
        Read lines up to one equal to C{end}: the body of a block such as
        a replay, between its header (already read) and its footer.

        Colour escapes are taken out and a current time stamp is shown as
        L{STAMP}, so lines compare as plain text.

        @param end: The footer, without its line end.
        @param limit: Fail if the footer has not come after this many lines.
        @return: The lines between the cursor and the footer.
        """
        lines: list[bytes] = []
        while len(lines) <= limit:
            line = await self.next_line(timeout)
            if line == end:
                return lines
            lines.append(unstamp(ANSI.sub(b"", line)))
        raise FailTest(
            f"{self.name}: no {end!r} within {limit} lines\n{self.received.describe()}"
        )

    async def sync(self, timeout: float = 5.0) -> bytes:
        """
        A round trip: send C{/who #lobby} and wait for its answer.

        Whatever the server had written to this client before it read the
        C{/who} arrives before the answer, so the bytes returned are all
        that arrived in between; a test asserts on them to show something
        did I{not} arrive.

        @return: What arrived between the cursor and the C{/who} answer.
        """
        start = self.received.cursor
        self.say("/who #lobby")
        match = await self.wait_for(
            re.compile(rb"\*\*\* #lobby \(\d+\): [^\r\n]*\r\n"), timeout
        )
        return bytes(self.received.data[start : match.start()])

    async def set_nick(self, nick: str) -> None:
        """
        Take a nick and check the server's confirmation.
        """
        self.say(f"/nick {nick}")
        await self.expect_lines(f"[HH:MM] *** you are now known as {nick}")
        self.nick = nick

    async def expect_closed(self, timeout: float = 5.0) -> None:
        """
        Wait for the server to close this connection.
        """
        await self._wait_lost(timeout, "the server to close the connection")

    def abort(self) -> None:
        """
        Drop the connection abruptly (RST), as a crashed client would.
        """
        assert self.transport is not None
        self.transport.abortConnection()  # type: ignore[attr-defined]

    async def close(self, timeout: float = 5.0) -> None:
        """
        Close the connection, if still open, and wait until it is closed.
        """
        if not self.connected:
            return
        assert self.transport is not None
        self.transport.loseConnection()
        await self._wait_lost(timeout, "the connection to close")

    async def _wait_lost(self, timeout: float, what: str) -> None:
        if not self.connected:
            return
        d: Deferred[None] = Deferred()
        self._lost.append(d)
        timer = global_reactor().callLater(timeout, d.cancel)
        try:
            await d
        except Exception:
            raise FailTest(
                f"{self.name}: waited {timeout} s for {what}.\n"
                f"{self.received.describe()}"
            ) from None
        finally:
            if timer.active():
                timer.cancel()


RESUME_CODE = re.compile(r"[A-Z2-7]{4}-[A-Z2-7]{4}")
"""A resume code: eight base32 characters in two groups."""

WELCOME = re.compile(
    rb"\A\*\*\* Welcome to tchat\r\n"
    rb"((?:  [^\r\n]*\r\n)*)"
    rb"\*\*\* You are (guest-[0-9a-f]{4})\. "
    rb"/nick NAME changes it; /help lists commands\.\r\n"
    rb"(?:\*\*\* You came through the onion service [a-z2-7]{56}\.onion\r\n)?"
    rb"\*\*\* Your resume code is ([A-Z2-7]{4}-[A-Z2-7]{4}): after a reconnect, "
    rb"/resume \3 brings back your nick, rooms and what you missed\.\r\n"
)
"""The telnet welcome: the MOTD lines, the guest nick and the resume code
(the same code twice)."""


def _endpoint(port: int, bind: str | None) -> TCP4ClientEndpoint:
    """
    A client endpoint to a test server's C{port} on 127.0.0.1, from the
    loopback address C{bind} (another one of 127.0.0.0/8) if given.
    """
    return TCP4ClientEndpoint(
        global_reactor(),
        LOOPBACK,
        port,
        timeout=5,
        bindAddress=None if bind is None else (bind, 0),
    )


async def connect(
    testcase: TestCase,
    port: int,
    name: str,
    *,
    welcome: bool = True,
    colours: bool = False,
    bind: str | None = None,
) -> ChatClient:
    """
    Connect a L{ChatClient} to a test server; closed again in cleanup.

    @param testcase: Whose cleanup closes the connection.
    @param port: The server's telnet port on 127.0.0.1.
    @param name: Who the client is, for failure messages.
    @param welcome: Read the welcome and the join notice that follows it,
        and take the guest nick and resume code from it; otherwise the
        cursor stays at 0.
    @param colours: Leave colours on; by default C{/color off} is sent (and
        confirmed) so lines compare as plain text.  With colours on, the
        replay of #lobby's recent messages (if any) is left unread.
    @param bind: Connect from this loopback address (all of 127.0.0.0/8
        is local), so that the server sees a client address other than
        127.0.0.1; the system's choice by default.
    @return: The connected client; without C{colours}, the replay of
        #lobby's recent messages that followed the join notice is in its
        L{ChatClient.replay}.
    """
    client = ChatClient(name)
    await connectProtocol(_endpoint(port, bind), client)
    testcase.addCleanup(lambda: ensureDeferred(client.close()))
    if welcome:
        match = await client.wait_for(WELCOME)
        client.nick = match.group(2).decode()
        client.code = match.group(3).decode()
        await client.expect_lines("[HH:MM] *** you joined #lobby")
        if not colours:
            client.say("/color off")
            # The replay is written with the join notice, so it comes
            # before the answer to /color off, if at all.
            line = await client.next_line()
            if line == b"*** Recent messages in #lobby:":
                client.replay = await client.read_block(b"*** End of recent messages")
                line = await client.next_line()
            if line != b"*** colours are off":
                raise FailTest(
                    f"{name}: expected the replay or '*** colours are off' after "
                    f"the join, got {line!r}\n{client.received.describe()}"
                )
    return client


def _opens_block(line: str, room: str) -> bool:
    """
    Whether a line starts what a C{/resume} shows of C{room}.
    """
    return line in (
        f"*** Nothing new in {room} since you left",
        f"*** Some earlier messages of {room} are no longer kept",
    ) or (line.startswith("*** ") and line.endswith(f" in {room} since you left:"))


async def expect_resume(
    client: ChatClient, *expected: str, joined: tuple[str, ...] = ()
) -> None:
    """
    Assert the lines a C{/resume} shows: C{expected}, in order, plus a
    "you joined ROOM" line for each of C{joined} (rooms the connection was
    not in), which may come anywhere after "welcome back" and before that
    room's own block, since a room whose missed messages are read from the
    store shows them later than one served from memory.
    """
    got = [
        line.decode() for line in await client.read_lines(len(expected) + len(joined))
    ]
    rest = list(got)
    for room in joined:
        notice = f"[HH:MM] *** you joined {room}"
        block = next(
            (i for i, line in enumerate(rest) if _opens_block(line, room)),
            len(rest),
        )
        welcome = next(
            (i for i, line in enumerate(rest) if line.startswith("*** welcome back")),
            len(rest),
        )
        if notice not in rest[welcome:block]:
            raise FailTest(f"no {notice!r} before the block of {room} in {got!r}")
        rest.remove(notice)
    if rest != list(expected):
        raise FailTest(f"expected\n  {list(expected)!r}\nbut got\n  {got!r}")


# -- processes -------------------------------------------------------------


class ProcessOutput(ProcessProtocol):
    """
    Collects a child process's output and tells when it has ended.

    @ivar stdout: What it wrote to stdout.
    @ivar stderr: What it wrote to stderr.
    @ivar output: Both, interleaved in the order they were read.
    @ivar exit_code: Its exit status; C{None} until it ends or if a signal
        ended it.
    @ivar signal: The signal that ended it, if one did.
    """

    def __init__(self, name: str) -> None:
        self.stdout = Received(f"{name} stdout")
        self.stderr = Received(f"{name} stderr")
        self.output = Received(f"{name} output")
        self.exit_code: int | None = None
        self.signal: int | None = None
        self.has_ended = False
        self._ended: list[Deferred[None]] = []

    def outReceived(self, data: bytes) -> None:
        self.stdout.feed(data)
        self.output.feed(data)

    def errReceived(self, data: bytes) -> None:
        self.stderr.feed(data)
        self.output.feed(data)

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        assert isinstance(value, ProcessDone | ProcessTerminated), value
        self.exit_code = value.exitCode
        self.signal = value.signal
        self.has_ended = True
        for received in (self.stdout, self.stderr, self.output):
            received.end()
        waiting, self._ended = self._ended, []
        for d in waiting:
            d.callback(None)

    def signal_process(self, name: str) -> None:
        """
        Signal the process this protocol started, if it still runs.
        """
        if self.has_ended or self.transport is None:
            return
        with contextlib.suppress(ProcessExitedAlready):
            self.transport.signalProcess(name)

    async def wait_ended(self, timeout: float) -> bool:
        """
        Wait for the process to end.

        @return: Whether it ended within C{timeout} seconds.
        """
        if self.has_ended:
            return True
        d: Deferred[None] = Deferred()
        self._ended.append(d)
        timer = global_reactor().callLater(timeout, d.cancel)
        try:
            await d
        except Exception:
            return False
        finally:
            if timer.active():
                timer.cancel()
        return True

    async def stop(self, grace: float = 10.0) -> bool:
        """
        SIGTERM, then SIGKILL if it has not ended after C{grace} seconds.

        @return: Whether it ended within C{grace} seconds of SIGTERM (or had
            already ended).
        """
        self.signal_process("TERM")
        if await self.wait_ended(grace):
            return True
        self.signal_process("KILL")
        await self.wait_ended(5.0)
        return False


def spawn(
    testcase: TestCase,
    name: str,
    executable: str,
    args: Sequence[str],
    *,
    path: str,
    env: Mapping[str, str] | None = None,
) -> ProcessOutput:
    """
    Start a program; the test's cleanup kills it (by its PID) if it still
    runs.

    @param name: What it is, for failure messages.
    @param executable: Its path.
    @param args: Its argument list, C{argv[0]} included.
    @param path: Its working directory.
    @param env: Its environment; a copy of ours by default.
    @return: Its output collector; C{.transport} is the process.
    """
    process = ProcessOutput(name)
    environment = dict(os.environ if env is None else env)
    global_reactor().spawnProcess(
        process, executable, list(args), env=environment, path=path
    )
    testcase.addCleanup(lambda: ensureDeferred(process.stop(grace=5.0)))
    return process


@dataclass(frozen=True)
class Finished:
    """
    How a program run by L{run_process} ended.
    """

    exit_code: int | None
    stdout: bytes
    stderr: bytes

    @property
    def output(self) -> str:
        """
        Both streams as text, for assertions and failure messages.
        """
        return (self.stdout + self.stderr).decode("utf-8", "replace")


async def run_process(
    testcase: TestCase,
    executable: str,
    args: Sequence[str],
    *,
    path: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Finished:
    """
    Run a program to its end, at most C{timeout} seconds (then it is killed
    and the test fails, showing its output).
    """
    process = spawn(
        testcase, os.path.basename(executable), executable, args, path=path, env=env
    )
    if not await process.wait_ended(timeout):
        await process.stop(grace=0.5)
        raise FailTest(
            f"{args!r} did not finish within {timeout} s; output so far:\n"
            f"{bytes(process.output.data).decode('utf-8', 'replace')}"
        )
    return Finished(
        process.exit_code, bytes(process.stdout.data), bytes(process.stderr.data)
    )


def make_directory(testcase: TestCase) -> str:
    """
    A fresh, empty, absolute directory for one test.
    """
    directory = os.path.abspath(str(testcase.mktemp()))
    os.makedirs(directory)
    return directory


@dataclass
class TchatServer:
    """
    A running C{twistd -n tchat}.

    @ivar process: Its output collector.
    @ivar port: Where its telnet door listens on 127.0.0.1.
    @ivar directory: Its working directory, holding its C{tap.ini}.
    @ivar web_port: Where its web door listens on 127.0.0.1, if it has one.
    @ivar ssh_port: Where its SSH door listens on 127.0.0.1, if it has one.
    @ivar irc_port: Where its IRC door listens on 127.0.0.1, if it has one.
    @ivar admin_port: Where its admin door listens on 127.0.0.1.
    """

    process: ProcessOutput
    port: int
    directory: str
    web_port: int | None = None
    ssh_port: int | None = None
    irc_port: int | None = None
    admin_port: int = 0

    def log(self) -> str:
        """
        Everything it has logged so far.
        """
        return bytes(self.process.output.data).decode("utf-8", "replace")

    async def stop(self) -> None:
        """
        Stop the server with SIGTERM (SIGKILL after 10 s), then fail the test
        if it needed SIGKILL or logged a traceback, since either is a server
        bug whatever the test was looking at.  Calling it again does nothing
        more than check again.
        """
        graceful = await self.process.stop(grace=10.0)
        log = self.log()
        # Kept in the trial temp directory, for a failed CI run to read.
        with open(os.path.join(self.directory, "twistd.log"), "w") as f:
            f.write(log)
        if not self.process.has_ended:
            raise FailTest(f"the server did not end after SIGKILL:\n{log}")
        if not graceful:
            raise FailTest(f"the server ignored SIGTERM for 10 s:\n{log}")
        if "Traceback" in log:
            raise FailTest(f"the server logged a traceback:\n{log}")

    async def kill(self) -> None:
        """
        End the server with SIGKILL, as a crash would: nothing is flushed.
        Its cleanup then only checks that it logged no traceback.
        """
        self.process.signal_process("KILL")
        if not await self.process.wait_ended(10.0):
            raise FailTest(f"the server did not end after SIGKILL:\n{self.log()}")


async def start_server(
    testcase: TestCase,
    tap_ini: str = TAP_INI,
    *,
    telnet: str = "tcp:0:interface=127.0.0.1",
    web: str | None = None,
    timeout: float = 15.0,
    directory: str | None = None,
    ssh: str | None = None,
    irc: str | None = None,
) -> TchatServer:
    """
    Start C{twistd -n tchat} in a fresh directory and wait until its telnet
    door (and its web door, if asked for) listens.

    Cleanup stops it with L{TchatServer.stop}, which fails the test if the
    server needed SIGKILL or logged a traceback.

    @param tap_ini: The configuration file's text.
    @param telnet: The C{--telnet} endpoint.
    @param web: The C{--web} endpoint; C{None} for no web door (the
        default L{TAP_INI} configures none).
    @param ssh: The C{--ssh} endpoint; C{None} for no SSH door.
    @param irc: The C{--irc} endpoint; C{None} for no IRC door.
    @param timeout: Seconds to wait for the listening lines.
    @param directory: Run in this directory (that of an earlier, stopped
        server, to restart it on its history) instead of a fresh one.
    @return: The running server.
    """
    if directory is None:
        directory = make_directory(testcase)
    config = os.path.join(directory, "tap.ini")
    with open(config, "w", encoding="utf-8") as f:
        f.write(tap_ini)
    args = [TWISTD, "-n", "--pidfile=", "tchat", "--config", config]
    args += ["--telnet", telnet]
    # Every test server has an admin door, on a port of its own.
    args += ["--admin", "tcp:0:interface=127.0.0.1"]
    doors = {"telnet", "admin"}
    if web is not None:
        args += ["--web", web]
        doors.add("web")
    if ssh is not None:
        args += ["--ssh", ssh]
        doors.add("ssh")
    if irc is not None:
        args += ["--irc", irc]
        doors.add("irc")
    process = ProcessOutput("twistd tchat")
    global_reactor().spawnProcess(
        process, TWISTD, args, env=dict(os.environ), path=directory
    )
    server = TchatServer(process, 0, directory)
    testcase.addCleanup(lambda: ensureDeferred(server.stop()))

    # Each door logs one line once it listens; wait for all of them, in
    # whatever order they come.
    ports: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    while not doors <= ports.keys():
        try:
            match = await process.output.wait_for(
                DOOR_LISTENING, max(deadline - time.monotonic(), 0.01)
            )
        except FailTest:
            raise FailTest(
                f"twistd tchat did not log where its {sorted(doors - ports.keys())} "
                f"doors listen within {timeout} s; its log:\n{server.log()}"
            ) from None
        ports[match.group(1).decode()] = int(match.group(2))
    server.port = ports["telnet"]
    server.web_port = ports.get("web")
    server.ssh_port = ports.get("ssh")
    server.irc_port = ports.get("irc")
    server.admin_port = ports["admin"]
    return server


async def chat(
    testcase: TestCase, *nicks: str, colours: bool = False
) -> tuple[TchatServer, list[ChatClient]]:
    """
    Start a server and connect one client per nick, each in C{#lobby} under
    that nick, with every notice about the others already read.

    @param colours: Leave colours on for every client.
    @return: The server and the clients, in the order of C{nicks}.
    """
    server = await start_server(testcase)
    clients = []
    for nick in nicks:
        client = await connect(testcase, server.port, nick, colours=colours)
        if client.replay:
            raise FailTest(f"{nick}: a new server replayed {client.replay!r}")
        await client.set_nick(nick)
        clients.append(client)
    for client in clients:
        await client.sync()
    return server, clients


def rewrite(server: TchatServer, text: str) -> None:
    """
    Replace a running server's C{tap.ini}.
    """
    path = os.path.join(server.directory, "tap.ini")
    with open(path + ".new", "w", encoding="utf-8") as f:
        f.write(text)
    # Atomic, so the server never reads half a file.
    os.replace(path + ".new", path)


async def log_line(
    server: TchatServer, pattern: str | bytes | re.Pattern[bytes], timeout: float = 5.0
) -> re.Match[bytes]:
    """
    Wait for the server to log C{pattern} (after what earlier waits read).
    """
    return await server.process.output.wait_for(pattern, timeout)


# -- WebSocket clients -------------------------------------------------------


class _Recent:
    """
    Compares equal to a C{float} time stamp (seconds since the epoch) from
    the last minute: stands for a fresh C{ts} in expected frames.
    """

    def __eq__(self, other: object) -> bool:
        return isinstance(other, float) and abs(other - time.time()) < 60

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "RECENT"


RECENT: Any = _Recent()
"""Put in an expected frame where a current C{ts} belongs."""


class _Whole:
    """
    Compares equal to any whole number from 0 (not a C{bool}).
    """

    def __eq__(self, other: object) -> bool:
        return isinstance(other, int) and not isinstance(other, bool) and other >= 0

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "WHOLE"


WHOLE: Any = _Whole()
"""Put in an expected frame where any message id (0 for none) belongs."""


class _PaletteColour:
    """
    Compares equal to the CSS colour, or with C{name} the name, of any
    colour of the server's palette.
    """

    def __init__(self, name: bool) -> None:
        self._name = name

    def __eq__(self, other: object) -> bool:
        if self._name:
            return other in PALETTE
        return other in {c.css for c in PALETTE.values()}

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "COLOUR_NAME" if self._name else "COLOUR"


COLOUR: Any = _PaletteColour(name=False)
"""Put in an expected frame where a nick's CSS colour belongs."""
COLOUR_NAME: Any = _PaletteColour(name=True)
"""...and where its name belongs."""


class Epoch:
    """
    Stands for one room's C{epoch} in expected frames: it compares equal to
    the first whole number it is compared with (and that looks like a
    fresh epoch, if asked), and from then on to that number alone.  So
    every frame expected with the same L{Epoch} must carry the same epoch.

    @ivar value: The epoch seen first, once one has been.
    """

    def __init__(self, fresh: bool = True) -> None:
        """
        @param fresh: The room is new on this server, so its epoch is the
            time it was made, in milliseconds: within the last ten minutes.
        """
        self.fresh = fresh
        self.value: int | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, int) or isinstance(other, bool) or other <= 0:
            return False
        if self.value is None:
            if self.fresh and abs(other / 1000 - time.time()) > 600:
                return False
            self.value = other
        return other == self.value

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"EPOCH({self.value})" if self.value is not None else "EPOCH(?)"


@dataclass(frozen=True)
class Closed:
    """
    How a WebSocket connection ended, as Autobahn reported it.

    @ivar clean: Whether the WebSocket closing handshake completed.
    @ivar code: The close code reported to the application (1006 when the
        connection was dropped without a closing handshake).
    @ivar reason: The close reason reported to the application.
    @ivar server_code: The code in the server's close frame, if it sent one.
    @ivar server_reason: The reason in the server's close frame, if any.
    """

    clean: bool
    code: int | None
    reason: str | None
    server_code: int | None
    server_reason: str | None


class WebClient(_OneWait, WebSocketClientProtocol):  # type: ignore[misc]
    """
    A real WebSocket client of the web door, as a test drives it: every text
    frame it receives is decoded as JSON and kept, in order.

    A cursor marks how far the test has read: each successful wait moves it
    past the frame it returns, so consecutive waits assert the order of
    arrival.

    @ivar name: Who this client is in the test, for failure messages.
    @ivar nick: The client's nick, from the welcome or L{WebClient.set_nick}.
    @ivar colour: The client's CSS colour, from the welcome.
    @ivar palette: The palette from the welcome: colour names to CSS.
    @ivar code: The resume code from the welcome.
    @ivar joined: The notice of its joining #lobby, as read by
        L{connect_web}: it gives the room's C{epoch} and C{last_id}.
    @ivar replay: The frames that followed the join notice, up to a round
        trip, when L{connect_web} was asked to read them: the join replay.
    @ivar frames: Every frame received: JSON objects, or C{{"binary": hex}}
        for a binary frame (which the server never sends).
    @ivar cursor: The index in L{frames} up to which the test has read.
    @ivar closed: How the connection ended, once it has.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.nick = ""
        self.colour = ""
        self.palette: dict[str, str] = {}
        self.code = ""
        self.joined: dict[str, Any] = {}
        self.replay: list[dict[str, Any]] = []
        self.frames: list[dict[str, Any]] = []
        self.cursor = 0
        self.opened = False
        self.closed: Closed | None = None
        self._waiter: _FrameWaiter | None = None
        self._state_waiters: list[tuple[Callable[[], bool], Deferred[None]]] = []

    # -- WebSocketClientProtocol -------------------------------------------

    def onOpen(self) -> None:
        self.opened = True
        self._state_changed()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            frame: Any = {"binary": payload.hex()}
        else:
            frame = json.loads(payload.decode("utf-8"))
        self.frames.append(frame)
        self._check()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed = Closed(
            wasClean, code, reason, self.remoteCloseCode, self.remoteCloseReason
        )
        self._check()
        self._state_changed()

    # -- waiting -----------------------------------------------------------

    def describe(self) -> str:
        """
        Everything received, split at the cursor, and how the connection
        ended, for failure messages.
        """
        read = "\n  ".join(json.dumps(f) for f in self.frames[: self.cursor])
        rest = "\n  ".join(json.dumps(f) for f in self.frames[self.cursor :])
        return (
            f"{self.name} ({self.closed or 'open'}) had read:\n  {read}\n"
            f"and then received:\n  {rest}"
        )

    def rest(self) -> list[dict[str, Any]]:
        """
        The frames after the cursor.
        """
        return self.frames[self.cursor :]

    def wait_frame(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float = 5.0,
    ) -> Deferred[dict[str, Any]]:
        """
        Wait for the first frame after the cursor for which C{predicate} is
        true, then move the cursor past it.

        @param what: What is awaited, for the failure message.
        @return: A Deferred firing with the frame, or failing with an
            L{FailTest} that shows everything received.
        """
        return self._start_wait(_FrameWaiter(predicate, what), timeout)

    def _check(self) -> None:
        waiter = self._waiter
        if waiter is None:
            return
        for index in range(self.cursor, len(self.frames)):
            if waiter.predicate(self.frames[index]):
                self._waiter = None
                waiter.timer.cancel()
                self.cursor = index + 1
                waiter.deferred.callback(self.frames[index])
                return
        if self.closed is not None:
            self._fail(waiter, "did not arrive before the connection closed")

    async def next_frame(self, timeout: float = 5.0) -> dict[str, Any]:
        """
        Read the next frame after the cursor.
        """
        frame: dict[str, Any] = await self.wait_frame(
            lambda frame: True, "a next frame", timeout
        )
        return frame

    async def wait_for(self, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        """
        Wait for the first frame after the cursor that has all of C{fields}
        (other frames before it are skipped).
        """
        frame: dict[str, Any] = await self.wait_frame(
            lambda frame: all(frame.get(k, _MISSING) == v for k, v in fields.items()),
            f"a frame with {fields!r}",
            timeout,
        )
        return frame

    async def expect_frames(
        self, *expected: dict[str, Any], timeout: float = 5.0
    ) -> None:
        """
        Assert that the next frames are exactly C{expected}, in order.  Use
        L{RECENT} for a current C{ts}.

        @raise FailTest: Showing the frames and everything received.
        """
        start = self.cursor
        got: list[dict[str, Any]] = []
        try:
            for _ in expected:
                got.append(await self.next_frame(timeout))
        except FailTest as e:
            raise FailTest(
                f"{self.name}: expected frames {list(expected)!r}, got only "
                f"{got!r}\n{e}"
            ) from None
        got = [_named_colour(g, e) for g, e in zip(got, expected, strict=True)]
        if got != list(expected):
            raise FailTest(
                f"{self.name}: expected frames\n  {list(expected)!r}\nbut got\n"
                f"  {got!r}\n(received from frame {start}: {self.frames[start:]!r})"
            )

    async def sync(self, room: str = "#lobby", timeout: float = 5.0) -> list[Any]:
        """
        A round trip: ask who is in C{room} and wait for the answer.

        Whatever the server had sent this client before it read the request
        arrives before the answer, so the frames returned are all that
        arrived in between; a test asserts on them to show something did
        I{not} arrive.

        @return: The frames between the cursor and the answer.
        """
        start = self.cursor
        self.send({"type": "who", "room": room})
        answer = await self.wait_for(timeout, type="system", event="who", room=room)
        return self.frames[start : self.frames.index(answer, start)]

    async def wait_state(
        self, what: str, done: Callable[[], bool], timeout: float
    ) -> None:
        """
        Wait until C{done()}, checked whenever the connection opens or
        closes, is true.

        @param what: What is awaited, for the failure message.
        """
        if done():
            return
        d: Deferred[None] = Deferred()
        self._state_waiters.append((done, d))
        timer = global_reactor().callLater(timeout, d.cancel)
        try:
            await d
        except Exception:
            raise FailTest(
                f"{self.name}: waited {timeout} s for {what}.\n{self.describe()}"
            ) from None
        finally:
            if timer.active():
                timer.cancel()

    def _state_changed(self) -> None:
        waiting, self._state_waiters = self._state_waiters, []
        for done, d in waiting:
            if d.called:
                continue
            if done():
                d.callback(None)
            else:
                self._state_waiters.append((done, d))

    # -- what tests do -----------------------------------------------------

    def send(self, frame: Any) -> None:
        """
        Send one JSON text frame.
        """
        self.sendMessage(json.dumps(frame).encode("utf-8"), isBinary=False)

    def send_raw(self, payload: bytes, binary: bool = False) -> None:
        """
        Send one frame with exactly this payload.
        """
        self.sendMessage(payload, isBinary=binary)

    async def set_nick(self, nick: str) -> None:
        """
        Take a nick with a typed request and check the server's
        confirmation.
        """
        old = self.nick
        self.send({"type": "nick", "name": nick})
        await self.expect_frames(
            {
                "type": "system",
                "event": "nick",
                "message": f"{old} (web) is now known as {nick}",
                "name": old,
                "new_name": nick,
                "door": "web",
                "ts": RECENT,
                "registered": False,
            }
        )
        self.nick = nick

    async def expect_closed(self, timeout: float = 5.0) -> Closed:
        """
        Wait for the connection to end.

        @return: How it ended.
        """
        await self.wait_state(
            "the connection to close", lambda: self.closed is not None, timeout
        )
        assert self.closed is not None
        return self.closed

    def abort(self) -> None:
        """
        Drop the TCP connection abruptly (RST), as a crashed browser would.
        """
        assert self.transport is not None
        self.transport.abortConnection()  # type: ignore[attr-defined]

    async def close(self, timeout: float = 5.0) -> None:
        """
        Close the connection with code 1000, if still open, and wait until
        it is closed.
        """
        if self.closed is not None:
            return
        if self.opened:
            self.sendClose(1000)
        else:
            self.dropConnection(abort=True)
        await self.expect_closed(timeout)


_MISSING = object()


def _named_colour(got: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """
    C{got} without its C{color_name} where C{expected} names no colour,
    once it is checked to be the palette name of its C{color}: every frame
    with a colour names it.
    """
    if "color_name" in expected or "color_name" not in got:
        return got
    name = got["color_name"]
    if name not in PALETTE or PALETTE[name].css != got.get("color"):
        raise FailTest(f"{name!r} is not the palette name of the colour in {got!r}")
    return {key: value for key, value in got.items() if key != "color_name"}


class _FrameWaiter:
    """
    One pending wait on a L{WebClient}: a predicate and the Deferred to fire.
    """

    def __init__(self, predicate: Callable[[dict[str, Any]], bool], what: str):
        self.predicate = predicate
        self.what = what
        self.deferred: Deferred[dict[str, Any]] = Deferred()
        self.timer: Any = None


class _OneClientFactory(WebSocketClientFactory):
    """
    Builds exactly the one L{WebClient} it was given.
    """

    def __init__(self, client: WebClient, url: str, origin: str | None) -> None:
        super().__init__(url, origin=origin)
        self._client = client

    def buildProtocol(self, addr: object) -> WebClient:
        self._client.factory = self
        return self._client


def web_welcome(
    nick: str, room: str = "#lobby", epoch: Any = None, last_id: Any = None
) -> list[dict[str, Any]]:
    """
    The frames a new web user gets first: the welcome, then its own join.
    Its colour, the palette and the resume code are left out (see
    L{connect_web}).

    @param epoch: The room's epoch in the join notice; any epoch (an
        L{Epoch} that is not checked for freshness) by default.
    @param last_id: The room's latest message id in the join notice; any
        id (L{WHOLE}) by default.
    """
    return [
        {
            "type": "system",
            "event": "welcome",
            "message": f"Welcome to tchat. You are {nick}.",
            "server": "tchat",
            "motd": list(MOTD),
            "name": nick,
            "room": room,
        },
        {
            "type": "system",
            "event": "join",
            "message": f"{nick} (web) joined {room}",
            "name": nick,
            "door": "web",
            "room": room,
            "epoch": Epoch(fresh=False) if epoch is None else epoch,
            "last_id": WHOLE if last_id is None else last_id,
            "ts": RECENT,
            "registered": False,
            "color": COLOUR,
            "color_name": COLOUR_NAME,
        },
    ]


GUEST = re.compile(r"guest-[0-9a-f]{4}")


async def connect_web(
    testcase: TestCase,
    port: int,
    name: str,
    *,
    origin: str | None = None,
    welcome: bool = True,
    replay: bool = False,
    last_id: int | None = None,
    timeout: float = 5.0,
    bind: str | None = None,
) -> WebClient:
    """
    Open a WebSocket to a test server's C{/ws}; closed again in cleanup.

    @param port: The server's web port on 127.0.0.1.
    @param name: Who the client is, for failure messages.
    @param origin: The C{Origin} header to send; none by default.
    @param welcome: Read the welcome and the join notice that follows it
        (checking both), and take the guest nick, colour, palette and
        resume code from it; otherwise the cursor stays at 0.  The replay
        of #lobby's recent messages, if any, follows and is left unread
        unless C{replay} is true.
    @param replay: After the welcome, read up to the answer of a round trip
        (L{WebClient.sync}), and keep the frames before it, the join
        replay, in L{WebClient.replay}.
    @param last_id: The latest message id of #lobby the join notice must
        give; any by default.
    @param bind: Connect from this loopback address, as for L{connect}.
    @return: The open client; L{WebClient.joined} is its join notice.
    @raise FailTest: If the handshake fails.
    """
    client = WebClient(name)
    factory = _OneClientFactory(client, f"ws://{LOOPBACK}:{port}/ws", origin)
    # The handshake gets the caller's timeout, not Autobahn's own 5 s.
    factory.setProtocolOptions(openHandshakeTimeout=timeout)
    await _endpoint(port, bind).connect(factory)
    testcase.addCleanup(lambda: ensureDeferred(client.close()))
    await client.wait_state(
        "the handshake", lambda: client.opened or client.closed is not None, timeout
    )
    if not client.opened:
        raise FailTest(f"{name}: the WebSocket handshake failed: {client.closed}")
    if welcome:
        first = await client.next_frame(timeout)
        nick = first.get("name", "")
        if not isinstance(nick, str) or not GUEST.fullmatch(nick):
            raise FailTest(f"{name}: no guest nick in the welcome {first!r}")
        palette = first.pop("palette", None)
        colour = first.pop("color", None)
        colour_name = first.pop("color_name", None)
        if not isinstance(palette, dict) or palette.get(colour_name) != colour:
            raise FailTest(f"{name}: the welcome's colour is not in its palette")
        code = first.pop("resume_code", None)
        if not isinstance(code, str) or not RESUME_CODE.fullmatch(code):
            raise FailTest(f"{name}: no resume code in the welcome: {code!r}")
        expected = web_welcome(nick, last_id=last_id)
        if first != expected[0]:
            raise FailTest(f"{name}: expected welcome {expected[0]!r}, got {first!r}")
        await client.expect_frames(expected[1], timeout=timeout)
        client.joined = client.frames[client.cursor - 1]
        client.nick = nick
        client.colour = colour
        client.palette = palette
        client.code = code
        if replay:
            client.replay = await client.sync(timeout=timeout)
    return client
