# -*- test-case-name: tests.test_fuzz -*-
"""
Property tests of every parser at its edges: telnet bytes, command lines,
WebSocket JSON frames and C{tap.ini} values, fed whatever Hypothesis makes.

Each property is the promise a user (or an operator) relies on: nothing they
send can crash the server, every mistake is answered with a sentence, and
nothing one user sends can reach another user's screen as a control code.

Hypothesis runs under the C{ci} profile by default: derandomized (the same
examples every run, so the unit suite stays fast and never flaky) and with no
example database.  C{HYPOTHESIS_PROFILE=deep} runs eight times as many, still
derandomized: the integration suite runs this module so
(C{tests.integration.test_fuzz_deep}).  C{HYPOTHESIS_PROFILE=dev} runs many
more, random, examples.
"""

import itertools
import json
import os
import random
import re
import string
import tempfile
import typing
import unicodedata
from pathlib import Path
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tchat import commands, events, telnet, terminal, webproto
from tchat.commands import COMMANDS, MAX_TEXT, OPERATOR_SPECS, CommandError
from tchat.config import (
    Config,
    ConfigError,
    LimitsConfig,
    OperatorsConfig,
    ServerConfig,
    WebConfig,
    config_from_string,
    known_keys,
    load_config,
)
from tchat.hub import ChatFactory
from tchat.interfaces import IParticipant
from tchat.model import User
from tchat.palette import PALETTE
from tchat.telnet import TelnetFactory
from tchat.text import (
    _prototypes,
    clean_text,
    nick_key,
    nick_problem,
    normalize_nick,
)
from tchat.web import WebChatFactory
from tchat.webproto import FrameError, Request, error_frame, parse_frame
from tests.support import TelnetClient as Client
from tests.support import autobahn_on

# -- Hypothesis profiles ----------------------------------------------------

# Hypothesis keeps caches (Unicode tables, constants) in .hypothesis under the
# directory it was imported from, the checkout: keep them out of it, unless
# told where to put them.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY",
    os.path.join(tempfile.gettempdir(), "tchat-hypothesis"),
)

settings.register_profile(
    "ci",
    # The same examples every run: a red CI run can be rerun, and the suite
    # never turns red on a run that merely drew an unlucky input.
    derandomize=True,
    # Example times vary with the machine; the suite's own run time is
    # what is kept small, through max_examples.
    deadline=None,
    max_examples=25,
    # No example database: nothing is kept from one run to the next.
    database=None,
    print_blob=False,
)
settings.register_profile(
    "deep",
    derandomize=True,
    deadline=None,
    max_examples=200,
    database=None,
    print_blob=False,
)
settings.register_profile(
    "dev",
    deadline=None,
    max_examples=2000,
    database=None,
    print_blob=True,
)
_PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _examples(share: float) -> settings:
    """
    The selected profile, scaled for one test: the costly tests (a hub and
    a connection per example) run fewer examples than the pure parsers.

    The profile is applied per test rather than loaded globally, so that
    importing this module changes nothing for any other test.

    @param share: The fraction of the profile's C{max_examples}.
    """
    return settings(_PROFILE, max_examples=max(10, int(_PROFILE.max_examples * share)))


# -- shared strategies ------------------------------------------------------

# Text that can come out of a UTF-8 decoder: everything but lone surrogates.
_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)

_NASTY_TEXT = st.sampled_from(
    [
        "\x1b[2J",
        "\x1b[31mred\x1b[0m",
        "\x1b]0;pwned\x07",
        "\x1b]8;;http://evil.example\x1b\\link\x1b]8;;\x1b\\",
        "\x1bP+q\x1b\\",
        "\x1b",
        "\x1b[",
        "\x9b2J",
        "\x9d0;t\x9c",
        "\x07",
        "\x08\x08\x08",
        "\x7f",
        "\u202eevil\u202c",
        "\u2066x\u2069",
        "\u2028",
        "\u2029",
        "\u200d",
        "\ufeff",
        "\ufffd",
        "\U0001f600",
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",
        "e\u0301",
        "\uff41\uff4c\uff49\uff43\uff45",
        "\t",
        "\x00",
        "\r",
        "\n",
    ]
)
"""Terminal escapes, C0/C1 controls, bidi overrides and awkward Unicode."""

_ERROR_CODES = frozenset(typing.get_args(events.ErrorCode))

_MAX_LINE = 64
"""The telnet door's line limit here: small, so long lines are cheap."""

_OPERATOR = ("boss", "pw")
"""The operator account of the hubs here, with a password the fake accepts."""


def _verify(password: str, encoded: str | None) -> Deferred[bool]:
    """
    A password check with no thread and no scrypt: C{pw} is right.
    """
    return succeed(password == _OPERATOR[1] and encoded is not None)


def _hub(clock: Clock | None = None, operators: bool = True) -> ChatFactory:
    """
    A hub on a fake clock.

    @param operators: Whether it has an operator account, C{_OPERATOR}.
        The tests of whole connections have none, so that the fuzzer
        cannot send the bystander off.
    """
    if clock is None:
        clock = Clock()
        clock.advance(1_700_000_000)
    accounts = ((_OPERATOR[0], "hash"),) if operators else ()
    return ChatFactory(
        ServerConfig(reconnect_grace=0, name="Hub", motd=("be kind",)),
        clock,
        random.Random(5),
        operators=OperatorsConfig(accounts),
        verify=_verify,
        # The shipped limits, but short lines: long ones are cheap to make.
        limits=LimitsConfig(max_line=_MAX_LINE),
    )


# Everything the server writes to a terminal must be plain text, CR LF line
# ends, and its own colour codes around a nick: nothing else that moves the
# cursor, paints or reorders text.
_ANSI = "|".join(c.ansi for c in PALETTE.values())
_PAINTED_NICK = re.compile(rf"\x1b\[(?:{_ANSI})m[\w-]+\x1b\[0m")
_BIDI = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def _controls(text: str) -> list[str]:
    """
    The characters of C{text} that must never reach a screen.
    """
    return [
        c
        for c in text
        if c in _BIDI or unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp")
    ]


def _screen_text(wire: bytes) -> str:
    """
    What a telnet client shows for C{wire}: telnet decoding (doubled IAC,
    and the server's refusals of options, IAC WONT/DONT), then UTF-8.

    @raise AssertionError: For any other telnet command from the server.
    @raise UnicodeDecodeError: When the text is not UTF-8.
    """
    shown = bytearray()
    i = 0
    while i < len(wire):
        if wire[i] != 0xFF:
            shown.append(wire[i])
            i += 1
        elif wire[i + 1 : i + 2] == b"\xff":
            shown.append(0xFF)
            i += 2
        elif wire[i + 1 : i + 2] in (b"\xfc", b"\xfe") and i + 2 < len(wire):
            i += 3
        else:
            raise AssertionError(f"server sent telnet command {wire[i : i + 3]!r}")
    return shown.decode("utf-8")


def _assert_screen(case: SynchronousTestCase, text: str) -> None:
    """
    C{text}, as a telnet user's terminal gets it, is whole CR LF lines of
    plain text, coloured only by the server's own codes around nicks.
    """
    if text:
        case.assertTrue(text.endswith("\r\n"), f"unterminated line: {text!r}")
    plain = _PAINTED_NICK.sub("", text).replace("\r\n", "\n")
    case.assertEqual(set(_controls(plain)) - {"\n"}, set(), f"controls in {text!r}")


def _assert_sentence(
    case: SynchronousTestCase, text: object, longest: int | None = 600
) -> None:
    """
    C{text} is a message a person can read: non-empty, trimmed, one line,
    no control characters, and of a sensible length.

    @param longest: The most characters it may have; C{None} for no bound.
    """
    case.assertIsInstance(text, str)
    assert isinstance(text, str)
    case.assertTrue(text.strip(), f"empty message {text!r}")
    case.assertEqual(text, text.strip())
    case.assertEqual(_controls(text), [], f"controls in message {text!r}")
    if longest is not None:
        case.assertLessEqual(len(text), longest, text[:200])


@implementer(IParticipant)
class _Recorder:
    """
    A user who keeps every event the hub sends them.
    """

    def __init__(self, door: str = "telnet", address: str | None = None) -> None:
        self.door = door
        self.address = address
        self.user: User | None = None
        self.received: list[object] = []
        self.closed: str | None = None

    def attached(self, user: object) -> None:
        assert isinstance(user, User)
        self.user = user

    def deliver(self, event: object, renderings: object) -> None:
        self.received.append(event)

    def close(self, reason: str, why: str = "normal") -> None:
        self.closed = reason

    def abort(self) -> None:
        self.closed = "aborted"


def _assert_renders(case: SynchronousTestCase, recorder: _Recorder) -> None:
    """
    Every event C{recorder} got renders on both doors: telnet bytes that
    show as clean text, and UTF-8 JSON frames; errors are sentences.
    """
    viewer = recorder.user
    assert viewer is not None
    for event in recorder.received:
        if isinstance(event, events.Error):
            case.assertIn(event.code, _ERROR_CODES)
            # The hub quotes arguments cut short, so a 4000-character nick
            # is not echoed back whole.
            _assert_sentence(case, event.text)
        shown = terminal.variant(event, viewer)  # type: ignore[arg-type]
        if shown is not None:
            wire = terminal.encode(event, shown)  # type: ignore[arg-type]
            _assert_screen(case, _screen_text(wire))
        if isinstance(event, events.History):
            frames = webproto.history_frames(event)
        else:
            frames = [webproto.encode(event, True)]  # type: ignore[arg-type]
        for frame in frames:
            case.assertIsInstance(json.loads(frame.decode("utf-8")), dict)


# -- telnet bytes -----------------------------------------------------------

IAC, SB, SE = 0xFF, 0xFA, 0xF0
_NEGOTIATION = (0xFB, 0xFC, 0xFD, 0xFE)  # WILL, WONT, DO, DONT
_TWO_BYTE = (0xEF, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9)
"""EOR, NOP, DM, BRK, IP, AO, AYT, EC, EL, GA: commands without an option."""
_NOT_COMMANDS = [b for b in range(256) if b not in (IAC, SB, *_NEGOTIATION, *_TWO_BYTE)]
"""Bytes that make IAC an invalid command (SE outside a subnegotiation too)."""


def _iac_doubled(data: bytes) -> bytes:
    return data.replace(b"\xff", b"\xff\xff")


_SUBNEGOTIATION_BODY = st.one_of(
    # Empty too: Twisted's negotiate() failed on IAC SB IAC SE.
    st.binary(max_size=12).map(_iac_doubled),
    # Past Twisted's 4096-byte cap: a subnegotiation that never ends.
    st.sampled_from([4095, 4096, 4097, 5000]).map(lambda n: b"\x18" * n),
)

_TELNET_COMMAND = st.one_of(
    st.tuples(st.sampled_from(_NEGOTIATION), st.integers(0, 255)).map(
        lambda c: bytes([IAC, *c])
    ),
    st.sampled_from(_TWO_BYTE).map(lambda c: bytes([IAC, c])),
    _SUBNEGOTIATION_BODY.map(lambda body: bytes([IAC, SB]) + body + bytes([IAC, SE])),
    # Unterminated, or ended by a stray byte after IAC.
    _SUBNEGOTIATION_BODY.map(lambda body: bytes([IAC, SB]) + body),
    st.sampled_from([bytes([IAC, SB, 1, IAC, 7]), bytes([IAC, SB, IAC, IAC])]),
    st.just(bytes([IAC, IAC])),
    st.just(bytes([IAC])),
    st.sampled_from(_NOT_COMMANDS).map(lambda c: bytes([IAC, c])),
)
"""IAC sequences: valid, cut short, invalid."""


def _cut_utf8(text: str) -> bytes:
    """The UTF-8 of C{text} without its last byte: a character cut in two."""
    return text.encode("utf-8")[:-1]


_TELNET_TEXT = st.one_of(
    _TEXT.map(lambda t: t.encode("utf-8")),
    _NASTY_TEXT.map(lambda t: t.encode("utf-8")),
    st.characters(min_codepoint=0x80, exclude_categories=["Cs"]).map(_cut_utf8),
    st.sampled_from(
        [
            b"\x80",
            b"\xc0\xaf",  # an overlong "/"
            b"\xe0\x80\xaf",
            b"\xed\xa0\x80",  # an encoded surrogate
            b"\xf4\x90\x80\x80",  # past U+10FFFF
            b"\xfe",
            b"\xc3",
            b"\xf0\x9f\x98",
        ]
    ),
    st.sampled_from(
        [b"\r", b"\n", b"\r\n", b"\r\0", b"\n\r", b"\0", b"\r\r", b"\r\n\r\n", b"\0\r"]
    ),
    st.sampled_from(
        [
            b"/nick fuzzer",
            b"/join #fuzz",
            b"/join #lobby",
            b"/part",
            b"/who",
            b"/me ",
            b"/msg watcher ",
            b"/topic ",
            b"/color ",
            b"/history 3",
            b"/resume ",
            b"/oper boss pw",
            b"/kick nobody",  # not the watcher: it must stay
            b"/quit",
            b"//",
            b"/",
        ]
    ),
    # Lines at and past the limit.
    st.sampled_from([_MAX_LINE - 1, _MAX_LINE, _MAX_LINE + 1, 3 * _MAX_LINE]).map(
        lambda n: b"x" * n
    ),
    st.binary(max_size=20),
)


@st.composite
def _chunks(draw: st.DrawFn, pieces: st.SearchStrategy[bytes]) -> list[bytes]:
    """
    Bytes as a network delivers them: the stream cut anywhere, even inside
    an IAC sequence or a UTF-8 character, never into empty reads.
    """
    stream = draw(st.lists(pieces, max_size=12).map(b"".join))
    cuts = draw(st.lists(st.integers(0, len(stream)), max_size=8))
    edges = sorted({0, len(stream), *cuts})
    return [stream[a:b] for a, b in itertools.pairwise(edges) if b > a]


_TELNET_STREAM = _chunks(st.one_of(_TELNET_TEXT, _TELNET_COMMAND))


class _TelnetUser(Client):
    """
    One telnet connection on an in-memory transport (L{tests.test_telnet}'s
    client), that knows when it was closed and how to finish what a fuzzed
    stream left open.
    """

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)

    def screen(self) -> str:
        """Everything the user was sent so far, as their terminal shows it."""
        return _screen_text(self.transport.value())

    def resync(self) -> bytes:
        """
        The bytes a client sends to finish whatever telnet sequence it left
        open, as a well-behaved client would have.
        """
        match self.protocol.state:
            case "escaped":
                return bytes([IAC, 0xF1])  # IAC NOP
            case "command":
                return b"\x00"  # an option for the pending WILL/DO/...
            case "subnegotiation":
                return bytes([IAC, SE])
            case "subnegotiation-escaped":
                return bytes([SE] if self.protocol.commands else [IAC, IAC, SE])
        return b""


class TelnetFastPathTests(SynchronousTestCase):
    """
    The telnet door reads plain text without conch's byte-by-byte parser.
    """

    @_examples(0.5)
    @given(_TELNET_STREAM)
    @example([b"hi\r\n", b"a\r\r\nb\r\n"])
    @example([b"a\r", b"\nb\r\x00c\rd\n"])
    @example([b"x\r\n\xff\xfb\x01y\r\n"])
    def test_same_as_conch(self, chunks: list[bytes]) -> None:
        """
        Whatever a client sends, in whatever packets, both users see exactly
        what they would if every byte went through conch's parser.
        """

        def run(plain: object) -> tuple[str, str, str]:
            self.patch(telnet, "_plain", plain)
            clock = Clock()
            clock.advance(1_700_000_000)
            factory = TelnetFactory(_hub(clock, operators=False))
            watcher = _TelnetUser(factory)
            watcher.send(b"/nick watcher\r\n")
            sender = _TelnetUser(factory)
            for chunk in chunks:
                if sender.closed:
                    break
                sender.send(chunk)
            # Resume codes are random whatever the hub's seed.
            code = re.compile(r"\b[A-Z2-7]{4}-[A-Z2-7]{4}\b")
            return (
                code.sub("CODE", sender.screen()),
                code.sub("CODE", watcher.screen()),
                sender.protocol.state,
            )

        self.assertEqual(run(telnet._plain), run(lambda data: None))


class TelnetBytesTests(SynchronousTestCase):
    """
    Arbitrary bytes, in arbitrary packets, from a telnet client.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)

    @_examples(1.5)
    @given(_TELNET_STREAM)
    @example([b"\xff"])
    @example([b"\xff\x00/nick a\r\n"])
    @example([b"\xff\xfa" + b"\x18" * 5000])
    @example([b"\xe2\x82", b"\xac\r", b"\n/who\r\n"])
    @example([b"\x1b]0;pwned\x07hi \x1b[2J\r\n"])
    @example([b"x" * 200, b"y" * 100 + b"\r\nhello\r\n"])
    @example([b"hi\r\n" * 50])
    @example([b"/quit bye\r\n/who\r\n"])
    def test_any_bytes(self, chunks: list[bytes]) -> None:
        """
        Whatever a telnet client sends, in whatever packets: the server
        never fails; what it writes back is whole UTF-8 lines with no
        control codes but its own nick colours; and the connection either
        still works (after the client finishes any telnet sequence it left
        open, C{/nick}, C{/join} and C{/who} are answered) or was closed
        with a line saying why.  Another user in the room sees only clean
        text and stays connected.
        """
        hub = _hub(self.clock, operators=False)
        factory = TelnetFactory(hub)
        watcher = _TelnetUser(factory)
        watcher.send(b"/nick watcher\r\n")
        fuzzer = _TelnetUser(factory)
        # After the fuzz (None), the client finishes what it left open: a
        # telnet sequence, a line.
        for chunk in [*chunks, None]:
            if fuzzer.closed:
                # The reactor reads nothing more from a closing connection.
                break
            fuzzer.send(fuzzer.resync() + b"\r\n" if chunk is None else chunk)
        screen = fuzzer.screen()
        _assert_screen(self, screen)
        if fuzzer.closed:
            last = screen.splitlines()[-1]
            self.assertTrue(
                last.startswith("!!! ") or last.startswith("*** Goodbye ("), last
            )
        else:
            fuzzer.transport.clear()
            # A client that calms down gets its rate limits back.
            self.clock.advance(61)
            fuzzer.send(b"/nick fuzzok\r\n/join #fuzzcheck\r\n/who\r\n")
            self.assertFalse(fuzzer.closed)
            screen = fuzzer.screen()
            _assert_screen(self, screen)
            last = screen.splitlines()[-1]
            self.assertRegex(last, r"^\*\*\* #fuzzcheck \(\d+\): .*fuzzok \(telnet\)")
        seen = watcher.screen()
        _assert_screen(self, seen)
        self.assertFalse(watcher.closed)
        self.assertEqual(watcher.user.nick, "watcher")
        # The hub logs, rather than raises, what fails in a delivery.
        self.assertEqual(self.flushLoggedErrors(), [])


# -- command lines ----------------------------------------------------------

_COMMAND_NAMES = sorted(
    {spec.name for spec in (*COMMANDS, *OPERATOR_SPECS)}
    | {"j", "m", "query", "colour", "leave", "list", "names", "exit", "me"}
)

_WORD = st.one_of(
    _TEXT.filter(lambda w: " " not in w),
    st.sampled_from(
        [
            "alice",
            "ALICE",
            "boss",
            "pw",
            "guest-1",
            "server",
            "Hub",
            "#lobby",
            "#dev",
            "lobby",
            "#",
            "##",
            "#" + "r" * 40,
            "n" * 30,
            "set",
            "on",
            "off",
            "red",
            "bright-red",
            "0",
            "1",
            "200",
            "201",
            "-1",
            "9" * 30,
            "\u0663",  # ARABIC-INDIC DIGIT THREE: a decimal
            "\u00b2",  # SUPERSCRIPT TWO: a digit, not a decimal
            "30m",
            "0s",
            "1W",
            "9999999w",
            "366d",
            "367d",
            "10.0.0.0/8",
            "1.2.3.4",
            "1.2.3.4/33",
            "::1",
            "fe80::1%eth0",
            "troll*",
            "?",
            "*",
            "nick:alice",
            "ip:1.2.3.4",
            "ip:",
            "nick:",
            "ABCD-EFGH",
            "|",
            "a|b||c",
        ]
    ),
    _NASTY_TEXT,
)

_SPACE = st.sampled_from(
    [" ", " ", "  ", "\t", "\u00a0", "\u3000", "\x0b", "\x0c", "\u2028", "\u200b", ""]
)


@st.composite
def _command_lines(draw: st.DrawFn) -> str:
    """
    Lines that look like commands: known and unknown names in any case,
    any words and spacing, and texts at and past the length limit.
    """
    head = draw(st.sampled_from(["/", "/", "//", " /", "/ ", ""]))
    name = draw(st.sampled_from(_COMMAND_NAMES) | _TEXT.filter(lambda n: " " not in n))
    if draw(st.booleans()):
        name = name.upper()
    parts = [head + name]
    for word in draw(st.lists(_WORD, max_size=5)):
        parts.append(draw(_SPACE))
        parts.append(word)
    if draw(st.integers(0, 9)) == 0:
        parts.append(" ")
        length = draw(st.sampled_from([MAX_TEXT - 1, MAX_TEXT, MAX_TEXT + 1, 10_000]))
        parts.append("x" * length)
    return "".join(parts)


_LINE = st.one_of(_command_lines(), _TEXT, _NASTY_TEXT)


class CommandLineTests(SynchronousTestCase):
    """
    Lines a user types, through the command layer and into the hub.
    """

    def assertParses(self, line: str) -> commands.Command | None:
        """
        C{line} parses to a command, to nothing, or to a clear error.
        """
        try:
            command = commands.parse_line(line)
        except CommandError as e:
            self.assertIn(e.code, _ERROR_CODES)
            _assert_sentence(self, e.text)
            return None
        if command is not None:
            self.assertIsInstance(command, typing.get_args(commands.Command))
        return command

    @_examples(3)
    @given(_LINE)
    @example("/")
    @example("//")
    @example("/ nick")
    @example("/history \u0663")
    @example("/history \u00b2")
    @example("/ban alice 9999999w")
    @example("/motd set")
    @example("/msg alice\u3000hi")
    @example("/" + "x" * 10_000)
    def test_parse_line(self, line: str) -> None:
        """
        Whatever a user types is a command, nothing at all, or an error
        that says in one clean sentence what is expected; it never fails.
        """
        self.assertParses(line)

    @_examples(1)
    @given(st.lists(_LINE, max_size=8), st.booleans())
    @example(["/ban *", "/ban ip:", "/unban *", "/bans", "hi"], True)
    @example(["/mute alice 1w", "/kick alice", "/msg alice hi"], True)
    def test_execute(self, lines: list[str], operator: bool) -> None:
        """
        Whatever commands a user (or an operator) runs, the hub never
        fails: mistakes come back as errors with a code and a sentence,
        and everything the user and a bystander are told renders on both
        doors, as clean text and as JSON.
        """
        hub = _hub()
        alice = _Recorder()
        hub.execute(hub.connect(alice), commands.Nick("alice"))
        fuzzer = _Recorder("web", "192.0.2.7")
        user = hub.connect(fuzzer)
        if operator:
            hub.execute(user, commands.Oper(*_OPERATOR))
            self.assertEqual(user.operator, _OPERATOR[0])
        for line in lines:
            command = self.assertParses(line)
            if command is not None:
                hub.execute(user, command)
        _assert_renders(self, fuzzer)
        _assert_renders(self, alice)
        self.assertEqual(self.flushLoggedErrors(), [])


# -- JSON frames ------------------------------------------------------------

# Text as a JSON string can carry it: lone surrogates too, as \ud800 escapes
# (drawn on their own too, or they would be rare).
_ANY_TEXT = st.text(
    st.characters(codec=None) | st.characters(categories=["Cs"]), max_size=20
)

_JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(),
    st.sampled_from([0, -1, 1, 2**53 + 1, 10**400, 1e308, -0.0]),
    _ANY_TEXT,
    _NASTY_TEXT,
)
_JSON = st.recursive(
    _JSON_LEAF,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(_ANY_TEXT, children, max_size=4)
    ),
    max_leaves=10,
)

_FRAME_TYPES = (
    "message",
    "me",
    "nick",
    "join",
    "part",
    "rooms",
    "who",
    "topic",
    "msg",
    "motd",
    "help",
    "quit",
    "color",
    "history",
    "resume",
    "hello",
)
_FRAME_FIELDS = (
    "message",
    "name",
    "room",
    "to",
    "topic",
    "reason",
    "color",
    "limit",
    "before",
    "rooms",
    "resume",
    "client_id",
)

_ROOM_POINTS = st.dictionaries(
    st.sampled_from(["#lobby", "#dev", "lobby", "#", ""]) | _ANY_TEXT,
    st.integers(-2, 10**20)
    | st.fixed_dictionaries({"id": _JSON_LEAF}, optional={"epoch": _JSON_LEAF})
    | _JSON_LEAF,
    max_size=4,
)
"""C{resume} maps: room to last id, or to C{{"id", "epoch"}}."""

_FIELD_VALUE = st.one_of(
    _WORD,
    _LINE,
    st.sampled_from(["#c62828", "blue", "RED ", "#FFFFFF", "/join #dev", "/quit"]),
    st.integers(-5, 300),
    _ROOM_POINTS,
    _JSON,
)


@st.composite
def _near_frames(draw: st.DrawFn) -> dict[str, object]:
    """
    Frames close to the documented ones: a known (or unknown) type with
    some of the documented fields, holding anything.
    """
    frame: dict[str, object] = {}
    if draw(st.integers(0, 4)):
        frame["type"] = draw(st.sampled_from(_FRAME_TYPES) | _JSON_LEAF)
    for name in draw(st.lists(st.sampled_from(_FRAME_FIELDS), unique=True, max_size=4)):
        frame[name] = draw(_FIELD_VALUE)
    return frame


@st.composite
def _serialised(draw: st.DrawFn, values: st.SearchStrategy[object]) -> bytes:
    """
    A JSON value as a client might put it in a frame, well or badly: with
    NaN and Infinity, escaped or raw non-ASCII, a byte-order mark, a
    duplicate key, cut short, a bad UTF-8 byte, nested deep.
    """
    value = draw(values)
    text = json.dumps(value, ensure_ascii=draw(st.booleans()))
    match draw(st.integers(0, 11)):
        case 0 if text.endswith("}"):
            key = draw(st.sampled_from(["type", "message", "client_id", "name"]))
            extra = json.dumps({key: draw(_FIELD_VALUE)})[1:-1]
            text = text[:-1] + ("," if text != "{}" else "") + extra + "}"
        case 1:
            text = text[: draw(st.integers(0, len(text)))]
        case 2:
            depth = draw(st.sampled_from([50, 500, 5000, 100_000]))
            text = "[" * depth + text + "]" * depth
        case 3:
            text = draw(st.sampled_from(["\ufeff", " \n\t", ""])) + text
    payload = text.encode("utf-8", "surrogatepass")
    match draw(st.integers(0, 9)):
        case 0:
            at = draw(st.integers(0, len(payload)))
            bad = draw(st.sampled_from([b"\xff", b"\x80", b"\xc3", b"\xed\xa0\x80"]))
            payload = payload[:at] + bad + payload[at:]
        case 1:
            payload = b"\xef\xbb\xbf" + payload
    return payload


_FRAME_PAYLOAD = st.one_of(
    _serialised(_near_frames()),
    _serialised(_JSON),
    st.binary(max_size=40),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b"{}",
            b'{"type": NaN}',
            b'{"type": "history", "limit": Infinity}',
            b'{"type": "history", "limit": 1e999}',
            b'{"type": "history", "limit": ' + b"9" * 5000 + b"}",
            b'{"type": "message", "message": "a\\ud800b"}',
            b'{"type": "me", "message": "\\udfff"}',
            b'{"type": "message", "message": "hi", "client_id": "\\ud800"}',
            b'{"type": "dance", "client_id": "\\udbff"}',
            b'{"type": "nick", "name": "\\ud83d"}',
            b'{"type": "join", "room": "#\\udc00"}',
            b'{"type": "resume", "rooms": {"#\\ud800": 1}}',
            b'{"message": "\xed\xa0\x80"}',
            b'{"type": "nick", "type": "join", "room": "#dev"}',
            b"\xef\xbb\xbf" + b'{"type": "rooms"}',
            b'\x00{\x00"\x00t\x00y\x00p\x00e\x00"\x00:\x00"\x00h\x00e\x00l\x00p\x00"\x00}',
            b"[" * 100_000,
        ]
    ),
)

_FRAME_CODES = {"bad-json", "bad-request", "unknown-type"} | _ERROR_CODES


class JSONFrameTests(SynchronousTestCase):
    """
    Frames from a WebSocket client, through L{parse_frame} and into the hub.
    """

    def assertParses(self, payload: bytes, nick: str) -> Request | None:
        """
        C{payload} parses to a request, or to an error whose frame says in
        one clean sentence what is wrong.
        """
        try:
            request = parse_frame(payload, nick)
        except FrameError as e:
            self.assertIn(e.code, _FRAME_CODES)
            _assert_sentence(self, e.message)
            wire = error_frame(e.code, e.message, e.client_id)
            self.assertEqual(json.loads(wire.decode("utf-8"))["type"], "error")
            return None
        self.assertIsInstance(request, Request)
        for command in request.commands:
            self.assertIsInstance(command, typing.get_args(commands.Command))
        return request

    @_examples(4)
    @given(_FRAME_PAYLOAD, st.sampled_from(["guest-1", "alice"]))
    def test_parse_frame(self, payload: bytes, nick: str) -> None:
        """
        Whatever a client sends in a text frame becomes a request or an
        C{error} frame with a clean sentence; parsing never fails.
        """
        self.assertParses(payload, nick)

    @_examples(1)
    @given(st.lists(_FRAME_PAYLOAD, max_size=6))
    def test_requests_run(self, payloads: list[bytes]) -> None:
        """
        Whatever requests a web user makes, the hub never fails, and all
        that they and a bystander are told renders on both doors.
        """
        hub = _hub()
        alice = _Recorder()
        hub.execute(hub.connect(alice), commands.Nick("alice"))
        fuzzer = _Recorder("web", "192.0.2.7")
        user = hub.connect(fuzzer)
        for payload in payloads:
            request = self.assertParses(payload, user.nick)
            if request is not None:
                for command in request.commands:
                    hub.execute(user, command)
        _assert_renders(self, fuzzer)
        _assert_renders(self, alice)
        self.assertEqual(self.flushLoggedErrors(), [])


class _WebClient(WebSocketClientProtocol):
    """
    A real Autobahn client that keeps every frame it gets.
    """

    def __init__(self) -> None:
        super().__init__()
        self.payloads: list[bytes] = []
        self.closed: tuple[bool, int | None, str | None] | None = None

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.payloads.append(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed = (wasClean, code, reason)

    def send(self, **fields: object) -> None:
        self.sendMessage(json.dumps(fields).encode())

    def take(self) -> list[dict[str, Any]]:
        """The frames received since the last call, decoded."""
        payloads, self.payloads = self.payloads, []
        frames = [json.loads(p.decode("utf-8")) for p in payloads]
        for frame in frames:
            assert isinstance(frame, dict), frame
        return frames


_WEB_FRAME = st.one_of(
    _FRAME_PAYLOAD.map(lambda p: (p, False)),
    st.binary(max_size=20).map(lambda p: (p, True)),
)
"""(payload, binary) pairs, text frames mostly."""


class WebSocketFrameTests(SynchronousTestCase):
    """
    Arbitrary frames through the real web door: Autobahn on both ends,
    connected in memory.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        autobahn_on(self, self.clock)

    def connect(
        self, factory: WebChatFactory, pumps: list[iosim.IOPump]
    ) -> tuple[_WebClient, Any]:
        """
        Open one WebSocket through the full handshake.
        """
        address = IPv4Address("TCP", "127.0.0.1", 8080)
        server = factory.buildProtocol(address)
        client_factory = WebSocketClientFactory("ws://127.0.0.1:8080/ws")
        client_factory.protocol = _WebClient
        client = client_factory.buildProtocol(address)
        assert isinstance(client, _WebClient)
        pumps.append(
            iosim.connect(
                server,
                iosim.FakeTransport(server, isServer=True),
                client,
                iosim.FakeTransport(client, isServer=False),
                greet=False,
            )
        )
        _flush(pumps)
        return client, server

    @_examples(0.6)
    @given(st.lists(_WEB_FRAME, max_size=6))
    @example([(b'{"type": "message", "message": "a\\ud800b"}', False)])
    @example([(b'{"type": "message", "message": "\\u001b[2Jhi"}', False)])
    @example([(b"\xff\xfe", False), (b"\x00", True)])
    @example([(b'{"type": "quit"}', False)])
    def test_any_frames(self, frames: list[tuple[bytes, bool]]) -> None:
        """
        Whatever frames a web client sends: the server never fails; a frame
        it cannot use is answered with an C{error} frame saying why and the
        connection goes on (after a quiet minute, a nick change, a join and
        C{who} are answered), unless the client quit or broke the WebSocket
        protocol itself (text that is not UTF-8), which is closed with a
        code and a reason.  A bystander gets only JSON, and clean text.
        """
        hub = _hub(self.clock, operators=False)
        # No pings: a minute passes at once below, with nobody to answer.
        factory = WebChatFactory(hub, WebConfig(ping_interval=0))
        pumps: list[iosim.IOPump] = []
        watcher, _ = self.connect(factory, pumps)
        watcher.send(type="nick", name="watcher")
        client, server = self.connect(factory, pumps)
        client.take()
        for payload, binary in frames:
            if client.closed is not None:
                break
            expected: FrameError | None = None
            try:
                parse_frame(payload, server.user.nick)
            except FrameError as e:
                expected = e
            client.sendMessage(payload, isBinary=binary)
            _flush(pumps)
            replies = client.take()
            for reply in replies:
                if reply["type"] == "error":
                    self.assertIn(reply["code"], _FRAME_CODES | {"binary-frame"})
                    _assert_sentence(self, reply["message"])
            if client.closed is not None:
                continue
            if binary:
                self.assertEqual(
                    [(r["type"], r["code"]) for r in replies],
                    [("error", "binary-frame")],
                )
            elif expected is not None:
                _assert_sentence(self, expected.message)
                error = {
                    "type": "error",
                    "code": expected.code,
                    "message": expected.message,
                }
                if expected.client_id is not None:
                    error["client_id"] = expected.client_id
                self.assertEqual(replies, [error])
        if client.closed is not None:
            _, code, reason = client.closed
            self.assertIn(code, (1000, 1007, 1009))
            self.assertTrue(reason, client.closed)
        else:
            self.clock.advance(61)
            client.send(type="nick", name="fuzzok")
            client.send(type="join", room="#fuzzcheck")
            client.send(type="who")
            _flush(pumps)
            who = client.take()[-1]
            self.assertEqual((who["type"], who["event"]), ("system", "who"))
            self.assertIn(
                ("fuzzok", "web", False, None),
                [
                    (m["name"], m["door"], m["registered"], m["away"])
                    for m in who["members"]
                ],
            )
        for frame in watcher.take():
            if frame["type"] in ("usermsg", "private"):
                self.assertEqual(_controls(frame["message"]), [], frame)
        self.assertIsNone(watcher.closed)
        self.assertEqual(self.flushLoggedErrors(), [])


def _flush(pumps: list[iosim.IOPump]) -> None:
    for _ in range(3):
        for pump in pumps:
            pump.flush()


# -- tap.ini values ---------------------------------------------------------

_KNOWN = known_keys()
"""Every section and key this version reads: new ones are fuzzed too."""

_OPEN_SECTIONS = ("operators",)
"""Sections whose keys the operator names (account names)."""

_A_HASH = "scrypt$1$1$1$AAAAAAAAAAA$" + "A" * 43
"""A well-formed password hash, for C{[operators]}."""

_CONFIG_EDGES = [
    "",
    " ",
    "0",
    "1",
    "-1",
    "64",
    "1024",
    "true",
    "False",
    "yes",
    "off",
    "nan",
    "inf",
    "-inf",
    "1e309",
    "1_000",
    "0x10",
    "\u0661\u0662",
    "9" * 5000,
    "tcp:4444",
    "tcp:4444:interface=127.0.0.1",
    "unix:/tmp/x.sock",
    "onion:80",
    ":",
    "tcp:",
    ":4444",
    "launch",
    "tcp:127.0.0.1:9051",
    "none",
    "None",
    "*",
    "https://chat.example.org",
    "http://x/",
    "ftp://x",
    "23 = telnet",
    "80=web, 23=telnet",
    "23 = telnet, 23 = web",
    "0 = web",
    "99999 = web",
    # Over Python's 4300-digit limit for int(): once leaked its message.
    "9" * 5000 + " = telnet",
    "9" * 5000,
    "=",
    ",",
    "normal",
    "full",
    "text",
    "json",
    ":memory:",
    "lobby",
    "#lobby",
    "#",
    "scrypt$15$8$1$AAAA$BBBB",
    _A_HASH,
    "scrypt$99$1$1$AAAAAAAAAAA$" + "A" * 43,
    "127.0.0.0/8 ::1",
    "::1/129",
    "10.0.0.0/33",
    "alice, bob",
    "alice alice",
    "%(x)s",
    "%",
    "[server]",
    "a = b",
]
"""Values at the edges of what C{tap.ini} keys take."""

_CONFIG_LINE = st.one_of(
    _TEXT,
    _NASTY_TEXT.filter(lambda t: "\n" not in t),
    st.integers().map(str),
    st.integers(-(10**30), 10**30).map(str),
    st.floats().map(str),
    st.floats().map(repr),
    st.sampled_from(_CONFIG_EDGES),
).map(lambda line: line.replace("\n", " "))
"""One line of a value; values are read without interpolation."""

_CONFIG_VALUE = st.one_of(
    _CONFIG_LINE,
    # Multi-line values: continuation lines are indented.
    st.lists(_CONFIG_LINE, min_size=2, max_size=3).map(
        lambda lines: lines[0] + "".join(f"\n    {line}" for line in lines[1:])
    ),
)

_OPERATOR_NAME = st.one_of(
    st.sampled_from(["boss", "a", "a" * 33, "1st", "ops-team", "root_2", "é"]),
    st.text(string.ascii_letters + string.digits + "-_.!é", min_size=1, max_size=12),
)

_SETTING = st.one_of(
    st.sampled_from(
        [(section, key) for section, keys in _KNOWN.items() for key in keys]
    ),
    st.tuples(st.sampled_from(_OPEN_SECTIONS), _OPERATOR_NAME),
)
"""A (section, key) this version reads."""

# Wording of Python's own exceptions, which must not stand in for a sentence.
_PYTHON_SPEAK = re.compile(
    r"invalid literal|could not convert|Exceeds the limit|set_int_max_str_digits"
    r"|object has no attribute|NoneType|Traceback|unexpected keyword"
)


class ConfigValueTests(SynchronousTestCase):
    """
    What an operator may write in C{tap.ini}, through L{config_from_string}.
    """

    def assertConfig(self, text: str) -> Config | str:
        """
        C{text} gives a configuration, or a L{ConfigError} that starts with
        the file's name and says what is wrong in words.

        @return: The configuration, or the error's message.
        """
        try:
            config = config_from_string(text, source="fuzz.ini")
        except ConfigError as e:
            message = str(e)
            self.assertTrue(message.startswith("fuzz.ini: "), message)
            self.assertTrue(message[len("fuzz.ini: ") :].strip(), message)
            self.assertIsNone(_PYTHON_SPEAK.search(message), message)
            return message
        self.assertIsInstance(config, Config)
        self.assertEqual(config.source, "fuzz.ini")
        return config

    def assertSetting(self, section: str, key: str, value: str) -> None:
        """
        C{key = value} alone in C{[section]} is taken, or refused with an
        error that names the section and the key.
        """
        found = self.assertConfig(f"[{section}]\n{key} = {value}\n")
        if isinstance(found, str):
            prefix = f"fuzz.ini: [{section}] {key}: "
            self.assertTrue(found.startswith(prefix), found[:300])
        elif section not in _OPEN_SECTIONS:
            self.assertTrue(hasattr(getattr(found, section), key))

    @_examples(3)
    @given(_SETTING, _CONFIG_VALUE)
    @example(("server", "name"), "\x1b[2J")
    @example(("history", "keep"), "9" * 5000)
    @example(("server", "shutdown_grace"), "nan")
    @example(("operators", "boss"), "scrypt$15$8$1$\u00e9$x")
    def test_each_key(self, setting: tuple[str, str], value: str) -> None:
        """
        Any value of any key of any section (new sections included, as
        this version lists them) is taken, or refused with
        C{file: [section] key: what is wrong}.
        """
        self.assertSetting(*setting, value)

    def test_every_key_every_edge(self) -> None:
        """
        Every key of every section, each value at the edges (numbers too
        big, endpoints cut short, NaN, empty...), is taken or refused
        with C{file: [section] key: what is wrong}: a sweep, so that no
        key depends on Hypothesis drawing it.
        """
        settings = [
            *((section, key) for section, keys in _KNOWN.items() for key in keys),
            *((section, "boss") for section in _OPEN_SECTIONS),
        ]
        for section, key in settings:
            for value in _CONFIG_EDGES:
                self.assertSetting(section, key, value)

    @_examples(2)
    @given(
        st.lists(
            st.one_of(
                st.sampled_from(
                    [*_KNOWN, *_OPEN_SECTIONS, "DEFAULT", "", " server "]
                ).map(lambda s: f"[{s}]"),
                _TEXT.filter(lambda t: "\n" not in t and "]" not in t).map(
                    lambda s: f"[{s}]"
                ),
                st.tuples(
                    st.sampled_from(
                        [k for keys in _KNOWN.values() for k in keys] + ["", "max_line"]
                    )
                    | _OPERATOR_NAME,
                    st.sampled_from([" = ", "=", ": ", " "]),
                    _CONFIG_VALUE,
                ).map("".join),
                _CONFIG_LINE.map(lambda line: "    " + line),
                _CONFIG_LINE,
                st.sampled_from(["", "# a comment", "; a comment", "  ", "\t"]),
            ),
            max_size=12,
        ).map("\n".join)
    )
    @example("[server]\nname = a\n[server]\n")
    @example("[server]\nname = a\nname = b\n")
    @example("name = a\n")
    @example("[server\n")
    @example("[\0no default section]\nname = x\n[server]\n")
    def test_whole_files(self, text: str) -> None:
        """
        Any file at all, sections, keys, duplicates and garbage lines mixed,
        gives a configuration or an error that names the file and says
        what is wrong.
        """
        self.assertConfig(text)

    @_examples(0.3)
    @given(
        st.one_of(
            st.binary(max_size=60),
            st.tuples(_SETTING, _CONFIG_VALUE, st.binary(min_size=1, max_size=3)).map(
                lambda t: f"[{t[0][0]}]\n{t[0][1]} = ".encode() + t[2] + t[1].encode()
            ),
        )
    )
    @example(b"[server]\nname = \xff\n")
    @example(b"\xef\xbb\xbf[server]\nname = x\n")
    def test_file_bytes(self, data: bytes) -> None:
        """
        Any bytes in C{tap.ini}, not UTF-8 included, give a configuration
        or an error that names the file.
        """
        path = Path(self.mktemp())
        path.write_bytes(data)
        try:
            load_config(path)
        except ConfigError as e:
            message = str(e)
            self.assertTrue(message.startswith(f"{path}: "), message)
            self.assertIsNone(_PYTHON_SPEAK.search(message), message)


# -- look-alike nicks and blank runs ----------------------------------------


_PLAIN_CHARACTERS = frozenset(string.ascii_lowercase + string.digits)


def _disguises() -> dict[str, list[str]]:
    """
    For each lowercase ASCII letter and digit, the characters of other
    scripts or forms (from the confusables table) that pass for it in a
    nick: letters or digits with the same key, that a nick may hold.
    """
    found: dict[str, list[str]] = {}
    for source, target in _prototypes().items():
        for plain in {target, target.lower()}:
            if (
                plain in _PLAIN_CHARACTERS
                and nick_problem(normalize_nick(source), source) is None
                and nick_key(source) == nick_key(plain)
            ):
                found.setdefault(plain, []).append(source)
    return {plain: sorted(set(chars)) for plain, chars in found.items()}


_DISGUISES = _disguises()

_PLAIN_NICK = st.from_regex(r"\A[a-z][a-z0-9_-]{0,11}\Z")
"""Nicks as people pick them, in plain ASCII."""


@st.composite
def _disguised(draw: st.DrawFn, nick: str) -> str:
    """
    C{nick} as an impostor would spell it: some letters swapped for
    look-alikes (another script, fullwidth, a digit), some in capitals.
    """
    out = []
    for char in nick:
        match draw(st.integers(0, 3)):
            case 0 if char in _DISGUISES:
                out.append(draw(st.sampled_from(_DISGUISES[char])))
            case 1:
                out.append(char.upper())
            case 2 if char.isalnum():
                out.append(chr(ord(char.upper()) + 0xFEE0))  # fullwidth
            case _:
                out.append(char)
    return "".join(out)


@st.composite
def _nick_and_impostor(draw: st.DrawFn) -> tuple[str, str]:
    nick = draw(_PLAIN_NICK)
    return nick, draw(_disguised(nick))


class LookAlikeNickTests(SynchronousTestCase):
    """
    Two nicks with one key cannot both be held, whoever asks first and
    however the second is spelled.
    """

    @_examples(2)
    @given(_nick_and_impostor())
    @example(("alice", "\u0430lice"))
    @example(("bob", "B0B"))
    @example(("mike", "rnike"))
    @example(("admin", "\u0430dmin"))
    def test_same_key(self, pair: tuple[str, str]) -> None:
        """
        A disguised nick has the key of the nick it disguises.
        """
        nick, impostor = pair
        self.assertEqual(nick_key(normalize_nick(impostor)), nick_key(nick))

    @_examples(1)
    @given(_nick_and_impostor(), st.booleans())
    @example(("alice", "\u0430l\u0456\u0441\u0435"), False)
    @example(("server", "S\u0435rver"), True)
    def test_not_both_held(self, pair: tuple[str, str], impostor_first: bool) -> None:
        """
        Whichever of a nick and its disguise is asked for first, the other
        is refused with a sentence: at most one of them is held.
        """
        hub = _hub()
        first, second = _Recorder(), _Recorder("web")
        names = pair[::-1] if impostor_first else pair
        users = [hub.connect(first), hub.connect(second)]
        for user, name in zip(users, names, strict=True):
            hub.execute(user, commands.Nick(name))
        held = [u.nick for u in users if u.named]
        self.assertLessEqual(
            sum(nick_key(n) == nick_key(pair[0]) for n in held), 1, held
        )
        for recorder in (first, second):
            _assert_renders(self, recorder)


_BLANKS = "\u3164\u115f\u1160\uffa0\u2800"
_SPACES_AND_UNSEEN = st.text(
    st.sampled_from(
        [" ", "\t", "\u00a0", "\u3000", "\u2003", *_BLANKS, "\u200b", "\u200d"]
    )
    | st.sampled_from(["\u2060", "\ufeff", "\ufe0f", "\u00ad", "x", "\u00e9"]),
    max_size=40,
)


def _shown(text: str) -> str:
    """C{text} without what takes no room on a screen."""
    return "".join(c for c in text if unicodedata.category(c) not in ("Cf", "Mn", "Me"))


class BlankRunTests(SynchronousTestCase):
    """
    No user text reaches anyone with two blanks in a row, however they are
    disguised: padding cannot push a forged line onto a line of its own.
    """

    @_examples(2)
    @given(st.one_of(_SPACES_AND_UNSEEN, _TEXT, _NASTY_TEXT))
    @example("hi" + " " * 64 + "[10:02] <alice> hi")
    @example("a \u200b\u3164\ufe0f\u00a0b")
    def test_no_blank_runs(self, text: str) -> None:
        """
        L{clean_text} leaves no run of two blanks, zero-width characters
        between them or not, and is idempotent.
        """
        cleaned = clean_text(text)
        self.assertIsNone(
            re.search(rf"[\s{_BLANKS}]{{2}}", _shown(cleaned)), ascii(cleaned)
        )
        self.assertEqual(clean_text(cleaned), cleaned)
