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
import os
import re
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

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

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
"""The C{twistd} of the interpreter running the tests."""

LOOPBACK = "127.0.0.1"

LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")
"""What the server logs once its telnet door is listening."""

MOTD = ("Integration tests were here.", "Second line of the MOTD.")

TAP_INI = """\
# Written by tests/integration/server.py for one test's server.
[server]
name = tchat
motd = {motd}
default_room = #lobby

[telnet]
# Replaced by --telnet on the command line.
listen = tcp:4444:interface=127.0.0.1
max_line = 4096

[web]
# No web door unless a test asks for one with --web.
listen =
""".format(motd="\n    ".join(MOTD))
"""The configuration every test server runs with unless told otherwise."""

STAMP = b"[HH:MM]"
"""How L{ChatClient.expect_lines} shows a current C{[HH:MM]} time stamp."""

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


class Received:
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
        assert self._waiter is None, f"{self.name}: already waiting"
        waiter = self._waiter = _Waiter(matcher, what)
        waiter.timer = global_reactor().callLater(
            timeout, self._expire, waiter, timeout
        )
        self._check()
        return waiter.deferred

    def _expire(self, waiter: _Waiter, timeout: float) -> None:
        self._fail(waiter, f"did not arrive within {timeout} s")

    def _fail(self, waiter: _Waiter, why: str) -> None:
        if self._waiter is not waiter:
            return
        self._waiter = None
        if waiter.timer.active():
            waiter.timer.cancel()
        waiter.deferred.errback(
            FailTest(f"{self.name}: {waiter.what} {why}.\n{self.describe()}")
        )

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
    @ivar received: What the server sent.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.nick = ""
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


WELCOME = re.compile(
    rb"\A\*\*\* Welcome to tchat\r\n"
    rb"((?:  [^\r\n]*\r\n)*)"
    rb"\*\*\* You are (guest-[0-9a-f]{4})\. "
    rb"/nick NAME changes it; /help lists commands\.\r\n"
)


async def connect(
    testcase: TestCase,
    port: int,
    name: str,
    *,
    welcome: bool = True,
    colours: bool = False,
) -> ChatClient:
    """
    Connect a L{ChatClient} to a test server; closed again in cleanup.

    @param testcase: Whose cleanup closes the connection.
    @param port: The server's telnet port on 127.0.0.1.
    @param name: Who the client is, for failure messages.
    @param welcome: Read the welcome and the join notice that follows it,
        and take the guest nick from it; otherwise the cursor stays at 0.
    @param colours: Leave colours on; by default C{/color off} is sent (and
        confirmed) so lines compare as plain text.
    @return: The connected client.
    """
    client = ChatClient(name)
    endpoint = TCP4ClientEndpoint(global_reactor(), LOOPBACK, port, timeout=5)
    await connectProtocol(endpoint, client)
    testcase.addCleanup(lambda: ensureDeferred(client.close()))
    if welcome:
        match = await client.wait_for(WELCOME)
        client.nick = match.group(2).decode()
        await client.expect_lines("[HH:MM] *** you joined #lobby")
        if not colours:
            client.say("/color off")
            await client.expect_lines("*** colours are off")
    return client


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
    """

    process: ProcessOutput
    port: int
    directory: str

    def log(self) -> str:
        """
        Everything it has logged so far.
        """
        return bytes(self.process.output.data).decode("utf-8", "replace")


async def start_server(
    testcase: TestCase,
    tap_ini: str = TAP_INI,
    *,
    telnet: str = "tcp:0:interface=127.0.0.1",
    timeout: float = 15.0,
) -> TchatServer:
    """
    Start C{twistd -n tchat} in a fresh directory and wait until its telnet
    door listens.

    Cleanup stops it with SIGTERM (SIGKILL after 10 s) and then fails the
    test if it needed SIGKILL or logged a traceback, since either is a
    server bug whatever the test was looking at.

    @param tap_ini: The configuration file's text.
    @param telnet: The C{--telnet} endpoint.
    @param timeout: Seconds to wait for the listening line.
    @return: The running server.
    """
    directory = make_directory(testcase)
    config = os.path.join(directory, "tap.ini")
    with open(config, "w", encoding="utf-8") as f:
        f.write(tap_ini)
    args = [TWISTD, "-n", "--pidfile=", "tchat", "--config", config]
    args += ["--telnet", telnet]
    process = ProcessOutput("twistd tchat")
    global_reactor().spawnProcess(
        process, TWISTD, args, env=dict(os.environ), path=directory
    )

    async def stop() -> None:
        graceful = await process.stop(grace=10.0)
        log = bytes(process.output.data).decode("utf-8", "replace")
        if not process.has_ended:
            raise FailTest(f"the server did not end after SIGKILL:\n{log}")
        if not graceful:
            raise FailTest(f"the server ignored SIGTERM for 10 s:\n{log}")
        if "Traceback" in log:
            raise FailTest(f"the server logged a traceback:\n{log}")

    testcase.addCleanup(lambda: ensureDeferred(stop()))
    try:
        match = await process.output.wait_for(LISTENING, timeout)
    except FailTest:
        raise FailTest(
            f"twistd tchat did not log its listening port within {timeout} s; "
            f"its log:\n{bytes(process.output.data).decode('utf-8', 'replace')}"
        ) from None
    return TchatServer(process, int(match.group(1)), directory)


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
        await client.set_nick(nick)
        clients.append(client)
    for client in clients:
        await client.sync()
    return server, clients
