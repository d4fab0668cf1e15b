# -*- test-case-name: tests.integration.test_siege -*-
"""
What the siege test (C{tests/integration/test_siege.py}) and the soak
benchmark (C{bench/soak.py}) send and parse, shared by both.

  - A minimal client side of RFC 6455: the upgrade request, masked frames
    (well-formed or deliberately not), and a reader for the server's frames.
  - Garbage for both doors: one call makes one malformed input (a telnet
    line or sequence, a WebSocket frame), chosen and filled from the
    C{random.Random} it is given, so a seed replays a run exactly.
  - The honest users' payload: sender id, sequence number and monotonic send
    time, and how to find it again in what a receiver got.

No I/O and no clock: every function here is pure in its arguments.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

# -- RFC 6455, the client side -----------------------------------------------

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_key(rng: random.Random) -> str:
    """
    A C{Sec-WebSocket-Key}: 16 random bytes, base64.
    """
    return base64.b64encode(rng.randbytes(16)).decode("ascii")


def ws_accept(key: str) -> str:
    """
    The C{Sec-WebSocket-Accept} a server must answer C{key} with.
    """
    digest = hashlib.sha1(key.encode("ascii") + _GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def ws_upgrade(host: str, port: int, key: str, path: str = "/ws") -> bytes:
    """
    The HTTP request that opens a WebSocket, as a non-browser client sends
    it (no C{Origin}, no extensions).
    """
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    ).encode("ascii")


_STATUS = re.compile(rb"\AHTTP/1\.1 (\d{3}) ")


def http_status(head: bytes) -> int | None:
    """
    The status code of an HTTP response head, if it starts like one.
    """
    match = _STATUS.match(head)
    return int(match.group(1)) if match else None


def _xor(payload: bytes, mask: bytes) -> bytes:
    """Mask (or unmask) a payload with a 4-byte key."""
    if not payload or mask == b"\0\0\0\0":
        return payload
    # One big-integer XOR instead of a Python loop over the bytes.
    repeated = (mask * (len(payload) // 4 + 1))[: len(payload)]
    value = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return value.to_bytes(len(payload), "big")


def ws_frame(
    payload: bytes,
    opcode: int = OP_TEXT,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = b"\x37\xfa\x21\x3d",
    length: int | None = None,
) -> bytes:
    """
    One frame as a client sends it.

    @param mask: The masking key (four bytes); C{None} sends the frame
        unmasked, which a server must refuse.
    @param rsv: The three reserved bits (0 unless breaking the protocol).
    @param length: The payload length to announce, if not the real one (a
        lie, to break the protocol).
    @return: The frame's bytes.
    """
    size = len(payload) if length is None else length
    head = bytearray([(0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0xF)])
    masked = 0x80 if mask is not None else 0
    if size < 126:
        head.append(masked | size)
    elif size < 1 << 16:
        head.append(masked | 126)
        head += struct.pack("!H", size)
    else:
        head.append(masked | 127)
        head += struct.pack("!Q", size)
    if mask is None:
        return bytes(head) + payload
    return bytes(head) + mask + _xor(payload, mask)


def ws_close(code: int, reason: str = "") -> bytes:
    """
    A client's close frame.
    """
    return ws_frame(struct.pack("!H", code) + reason.encode("utf-8"), OP_CLOSE)


@dataclass(frozen=True)
class Frame:
    """
    One frame received from the server.
    """

    opcode: int
    fin: bool
    payload: bytes

    def close_code(self) -> tuple[int | None, str]:
        """
        The code and reason of a close frame (C{None} and C{""} if it has
        none).
        """
        if len(self.payload) < 2:
            return None, ""
        (code,) = struct.unpack("!H", self.payload[:2])
        return code, self.payload[2:].decode("utf-8", "replace")


class FrameReader:
    """
    Splits the bytes a server sends into frames, however they were cut.

    @ivar limit: The largest frame accepted; a larger one raises
        L{ValueError} (a server never sends one, so it is a bug).
    """

    def __init__(self, limit: int = 16 * 1024 * 1024) -> None:
        self.limit = limit
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        """
        More bytes arrived.

        @return: The frames now complete, in order.
        """
        self._buffer += data
        frames: list[Frame] = []
        buffer = self._buffer
        offset = 0
        while len(buffer) - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            size = second & 0x7F
            at = offset + 2
            if size == 126:
                if len(buffer) - at < 2:
                    break
                (size,) = struct.unpack_from("!H", buffer, at)
                at += 2
            elif size == 127:
                if len(buffer) - at < 8:
                    break
                (size,) = struct.unpack_from("!Q", buffer, at)
                at += 8
            if size > self.limit:
                raise ValueError(f"a frame of {size} bytes")
            mask = b""
            if second & 0x80:
                if len(buffer) - at < 4:
                    break
                mask = bytes(buffer[at : at + 4])
                at += 4
            if len(buffer) - at < size:
                break
            payload = bytes(buffer[at : at + size])
            if mask:
                payload = _xor(payload, mask)
            frames.append(Frame(first & 0xF, bool(first & 0x80), payload))
            offset = at + size
        if offset:
            del buffer[:offset]
        return frames


# -- garbage -----------------------------------------------------------------

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240

_ESCAPES = (
    b"\x1b[31m",
    b"\x1b[2J\x1b[H",
    b"\x1b]0;owned\x07",
    b"\x1b]52;c;aGVsbG8=\x1b\\",
    b"\x1b]8;;http://127.0.0.1/\x1b\\link\x1b]8;;\x1b\\",
    b"\x1bP+q544e\x1b\\",
    b"\x1b[999999999999;1H",
    b"\x1b[" + b"9;" * 500 + b"m",
    b"\x9b31m",
    b"\x1b",
    "\u202etxet desrever\u202c".encode(),
    "\u2066\u2067\u2068\u2069\u200b\ufeff".encode(),
)

_BAD_UTF8 = (
    b"\xc3",
    b"\xe2\x82",
    b"\xf0\x9f\x98",
    b"\xc0\xaf",
    b"\xe0\x80\xaf",
    b"\xed\xa0\x80",
    b"\xf8\x88\x80\x80\x80",
    b"\xff\xfe",
    b"\x80\x80\x80",
    b"\xf4\x90\x80\x80",
)

_COMMANDS = (
    "/nick",
    "/join",
    "/part",
    "/rooms",
    "/who",
    "/topic",
    "/me",
    "/msg",
    "/history",
    "/resume",
    "/motd",
    "/stats",
    "/oper",
    "/help",
    "/color",
    "/kick",
    "/ban",
    "/unban",
    "/bans",
    "/mute",
    "/unmute",
    "/announce",
    "/rehash",
    "/j",
    "/query",
    "/names",
    "/frobnicate",
    "/",
    "//",
    "/NICK",
)

_ARGS = (
    "",
    " ",
    " #",
    " ##",
    " #" + "x" * 300,
    " -1",
    " 0",
    " 99999999999999999999",
    " 1e9",
    " nan",
    " guest-0000",
    " server",
    " ADMIN",
    " ZZZZ-ZZZZ",
    " a b c d e f",
    " \t\v\f",
    " %s%n%x",
    " ${jndi:ldap://127.0.0.1/x}",
    " '; DROP TABLE messages; --",
    " ../../etc/passwd",
    " 203.0.113.0/24 7d why",
)


def _random_text(rng: random.Random, size: int) -> bytes:
    """
    Printable-ish UTF-8 with a sprinkle of everything else.
    """
    alphabet = "abcXYZ019 #/-_.:;!?<>{}[]\"'\\\t\x00\x07\x1b\x7f\u00e9\u4e2d\U0001f600"
    return "".join(rng.choice(alphabet) for _ in range(size)).encode("utf-8")


def _telnet_random(rng: random.Random) -> bytes:
    data = rng.randbytes(rng.randint(1, 200))
    # A lone IAC followed by a non-command closes the connection: keep the
    # random kind mostly parseable by doubling IAC bytes, so that the kinds
    # meant to close are what closes.
    return data.replace(b"\xff", b"\xff\xff") + rng.choice((b"", b"\r\n", b"\n"))


def _telnet_iac(rng: random.Random) -> bytes:
    parts = bytearray()
    for _ in range(rng.randint(1, 8)):
        match rng.randrange(5):
            case 0:
                verb = rng.choice((WILL, WONT, DO, DONT))
                parts += bytes([IAC, verb, rng.randrange(256)])
            case 1:
                # NOP, DM, BRK, IP, AO, AYT, EC, EL, GA.
                parts += bytes([IAC, rng.randrange(241, 250)])
            case 2:
                body = rng.randbytes(rng.randint(0, 40)).replace(b"\xff", b"\xff\xff")
                parts += bytes([IAC, SB, rng.randrange(256)]) + body + bytes([IAC, SE])
            case 3:
                parts += b"\xff\xff"
            case _:
                parts += b"text between options "
    return bytes(parts) + rng.choice((b"", b"\r\n"))


def _telnet_iac_invalid(rng: random.Random) -> bytes:
    # IAC then a byte that is no telnet command (239, EOR, is one): the
    # server closes.
    return b"hello " + bytes([IAC, rng.randrange(0, 239)]) + b"\r\n"


def _telnet_subnegotiation(rng: random.Random) -> bytes:
    # Never ended: 8 KiB without IAC SE overruns the parser's 4 KiB limit.
    return bytes([IAC, SB, rng.randrange(256)]) + b"\x00" * 8192


def _telnet_utf8(rng: random.Random) -> bytes:
    pieces = [rng.choice(_BAD_UTF8) for _ in range(rng.randint(1, 6))]
    return b"utf8 " + b"x".join(pieces) + b" end\r\n"


def _telnet_escapes(rng: random.Random) -> bytes:
    pieces = [rng.choice(_ESCAPES) for _ in range(rng.randint(1, 5))]
    return b"esc " + b" ".join(pieces) + b"\r\n"


def _telnet_long(rng: random.Random) -> bytes:
    # Over max_line (4096): refused with an error, the connection stays.
    return b"L" * rng.randint(4097, 12000) + b"\r\n"


def _telnet_nuls(rng: random.Random) -> bytes:
    return b"nul\x00\x00 in \x00 line" + b"\x00" * rng.randint(0, 50) + b"\r\0\r\n"


def _telnet_bare_cr(rng: random.Random) -> bytes:
    return b"one\rtwo\r\rthree" + b"\r" * rng.randint(1, 20)


def _telnet_command(rng: random.Random) -> bytes:
    line = rng.choice(_COMMANDS).encode() + rng.choice(_ARGS).encode()
    if rng.random() < 0.3:
        line += b" " + _random_text(rng, rng.randint(1, 60))
    return line.replace(b"\r", b"").replace(b"\n", b"") + b"\r\n"


def _telnet_text(rng: random.Random) -> bytes:
    return _random_text(rng, rng.randint(0, 120)).replace(b"\n", b" ") + b"\r\n"


Generator = Callable[[random.Random], bytes]

TELNET_GARBAGE: tuple[tuple[str, int, Generator], ...] = (
    ("random-bytes", 20, _telnet_random),
    ("iac", 12, _telnet_iac),
    ("iac-invalid", 1, _telnet_iac_invalid),
    ("subnegotiation-endless", 1, _telnet_subnegotiation),
    ("bad-utf8", 10, _telnet_utf8),
    ("escapes", 10, _telnet_escapes),
    ("long-line", 2, _telnet_long),
    ("nuls", 8, _telnet_nuls),
    ("bare-cr", 8, _telnet_bare_cr),
    ("command", 20, _telnet_command),
    ("text", 8, _telnet_text),
)
"""Kinds of telnet garbage: name, weight, generator."""

TELNET_CLOSING = frozenset({"iac-invalid", "subnegotiation-endless"})
"""The telnet kinds after which the server closes the connection."""


def _json_malformed(rng: random.Random) -> bytes:
    good = json.dumps({"type": "message", "message": "hi", "room": "#lobby"})
    return rng.choice(
        (
            good[: rng.randint(0, len(good) - 1)],
            "{",
            "}",
            "nul",
            "{'type': 'message'}",
            '{"type": "message",}',
            '{"message": NaN}',
            '{"message": 1e999999}',
            '{"a":1}{"b":2}',
            '{"type" "message"}',
            "\ufeff{}",
            '"\\ud800"',
            '{"message": "\\ud800\\udc00\\udfff"}',
            "",
            " ",
        )
    ).encode("utf-8")


_WRONG: tuple[object, ...] = (
    {"type": 5},
    {"type": None},
    {"type": ["message"]},
    {"type": "message", "message": 123},
    {"type": "message", "message": None},
    {"type": "message", "message": {"nested": True}},
    {"type": "message", "message": "x", "room": 7},
    {"type": "message", "message": "x", "client_id": 7},
    {"type": "message", "message": "x", "client_id": "c" * 5000},
    {"type": "join", "room": ["#a"]},
    {"type": "join"},
    {"type": "nick", "name": True},
    {"type": "nick", "name": "x" * 1000},
    {"type": "history", "room": "#lobby", "before": "x", "limit": 1e308},
    {"type": "history", "room": "#lobby", "before": -1, "limit": -5},
    {"type": "history", "room": "#lobby", "limit": 10**40},
    {"type": "resume", "rooms": "x"},
    {"type": "resume", "rooms": {"#lobby": "x", "#a": {"id": []}}},
    {"type": "resume", "rooms": {f"#r{i}": i for i in range(300)}},
    {"type": "hello", "name": 5, "resume": []},
    {"type": "msg", "to": None, "message": "x"},
    {"type": "topic", "topic": 42},
    {"type": "color", "color": {"r": 1}},
    {"type": "quit", "reason": ["x"]},
    {"message": None},
    {"name": {}, "message": "x"},
    {"name": "", "message": ""},
    {"color": "red"},
    [],
    [1, 2, 3],
    "string",
    17,
    None,
    True,
)


def _json_wrong_type(rng: random.Random) -> bytes:
    return json.dumps(rng.choice(_WRONG)).encode("utf-8")


def _json_unknown_type(rng: random.Random) -> bytes:
    kind = rng.choice(("frobnicate", "", "MESSAGE", "__proto__", "usermsg", "x" * 200))
    return json.dumps({"type": kind, "message": "x"}).encode("utf-8")


def _json_hostile_text(rng: random.Random) -> bytes:
    text = b" ".join(rng.choice(_ESCAPES) for _ in range(3)).decode("utf-8", "replace")
    command = rng.choice(_COMMANDS) + rng.choice(_ARGS)
    frame = rng.choice(
        (
            {"type": "message", "message": text + "\u0000"},
            {"type": "message", "message": command},
            {"message": command, "name": "guest-" + rng.choice(_ARGS).strip()},
            {"type": "me", "message": text},
            {"type": "join", "room": rng.choice(_ARGS).strip() or "#"},
        )
    )
    return json.dumps(frame).encode("utf-8")


def _json_nested(rng: random.Random) -> bytes:
    depth = rng.randint(1000, 30000)
    if rng.random() < 0.5:
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def _web_text(rng: random.Random, payload: bytes) -> bytes:
    return ws_frame(payload, OP_TEXT, mask=rng.randbytes(4))


def _web_malformed(rng: random.Random) -> bytes:
    return _web_text(rng, _json_malformed(rng))


def _web_wrong_type(rng: random.Random) -> bytes:
    return _web_text(rng, _json_wrong_type(rng))


def _web_unknown(rng: random.Random) -> bytes:
    return _web_text(rng, _json_unknown_type(rng))


def _web_hostile(rng: random.Random) -> bytes:
    return _web_text(rng, _json_hostile_text(rng))


def _web_nested(rng: random.Random) -> bytes:
    return _web_text(rng, _json_nested(rng))


def _web_binary(rng: random.Random) -> bytes:
    return ws_frame(
        rng.randbytes(rng.randint(0, 300)), OP_BINARY, mask=rng.randbytes(4)
    )


def _web_fragmented(rng: random.Random) -> bytes:
    payload = _json_wrong_type(rng)
    cut = rng.randint(0, len(payload))
    return ws_frame(payload[:cut], OP_TEXT, fin=False) + ws_frame(
        payload[cut:], OP_CONTINUATION
    )


def _web_ping(rng: random.Random) -> bytes:
    return ws_frame(rng.randbytes(rng.randint(0, 125)), OP_PING)


def _web_oversized(rng: random.Random) -> bytes:
    # Over max_frame (65536): the server closes with 1009.
    match rng.randrange(3):
        case 0:
            return ws_frame(b"x" * rng.randint(65537, 70000), OP_TEXT)
        case 1:
            # Announce 2**40 bytes; send a little.
            return ws_frame(b"x" * 100, OP_TEXT, length=1 << 40)
        case _:
            # A message over the limit in fragments each under it.
            piece = b"y" * 40000
            return ws_frame(piece, OP_TEXT, fin=False) + ws_frame(
                piece, OP_CONTINUATION
            )


def _web_bad_utf8(rng: random.Random) -> bytes:
    # Invalid UTF-8 in a text frame: the server closes with 1007.
    bad = rng.choice(_BAD_UTF8)
    return ws_frame(b'{"type":"message","message":"' + bad + b'"}', OP_TEXT)


def _web_violation(rng: random.Random) -> bytes:
    # Frames RFC 6455 forbids: the server closes with 1002.
    match rng.randrange(7):
        case 0:
            return ws_frame(b"{}", rng.choice((3, 4, 5, 6, 7, 11, 12, 15)))
        case 1:
            return ws_frame(b"{}", OP_TEXT, rsv=rng.randint(1, 7))
        case 2:
            return ws_frame(b'{"type":"rooms"}', OP_TEXT, mask=None)
        case 3:
            return ws_frame(b"p" * 126, OP_PING)
        case 4:
            return ws_frame(b"p", OP_PING, fin=False)
        case 5:
            return ws_frame(b"lost", OP_CONTINUATION)
        case _:
            return ws_frame(b"\x03\xe7", OP_CLOSE)


WEB_GARBAGE: tuple[tuple[str, int, Generator], ...] = (
    ("malformed-json", 20, _web_malformed),
    ("wrong-types", 20, _web_wrong_type),
    ("unknown-type", 8, _web_unknown),
    ("hostile-text", 15, _web_hostile),
    ("deep-nesting", 2, _web_nested),
    ("binary", 10, _web_binary),
    ("fragmented", 6, _web_fragmented),
    ("ping", 4, _web_ping),
    ("oversized", 1, _web_oversized),
    ("bad-utf8-text", 1, _web_bad_utf8),
    ("protocol-violation", 1, _web_violation),
)
"""Kinds of WebSocket garbage: name, weight, generator (whole frames)."""

WEB_CLOSING = frozenset({"oversized", "bad-utf8-text", "protocol-violation"})
"""The WebSocket kinds after which the server closes the connection."""


class GarbagePicker:
    """
    Draws kinds of garbage by weight, from one seeded generator.
    """

    def __init__(
        self, kinds: tuple[tuple[str, int, Generator], ...], rng: random.Random
    ) -> None:
        self._names = [name for name, _, _ in kinds]
        self._weights = [weight for _, weight, _ in kinds]
        self._makers = {name: make for name, _, make in kinds}
        self.rng = rng

    def pick(self) -> tuple[str, bytes]:
        """
        @return: The kind drawn, and one input of that kind.
        """
        (name,) = self.rng.choices(self._names, self._weights)
        return name, self._makers[name](self.rng)


# -- honest payloads ---------------------------------------------------------

HONEST = re.compile(r"honest (\d+) (\d+) (\d+)")
"""Finds an honest payload in a received line or message text."""


def honest_text(sender: int, seq: int, sent_ns: int) -> str:
    """
    What an honest user says: who, which message, when (monotonic ns).
    """
    return f"honest {sender} {seq} {sent_ns}"


def parse_honest(text: str) -> tuple[int, int, int] | None:
    """
    The sender, sequence number and send time of an honest payload.
    """
    match = HONEST.search(text)
    if match is None:
        return None
    sender, seq, sent = match.groups()
    return int(sender), int(seq), int(sent)


def loopback(index: int, first: int = 10) -> str:
    """
    The C{index}th client address in 127.0.C{first}.1 onwards (skipping
    .0 and .255), so clients can spread over many source addresses.
    """
    high, low = divmod(index, 254)
    if first + high > 254:
        raise ValueError(f"no loopback address number {index}")
    return f"127.0.{first + high}.{low + 1}"
