"""
Integration tests: attacks on the hub's limits, each as an attacker would
try it against a real C{twistd -n tchat} (issue 19), each failing on the
server before the fix:

  - a C{resume} frame that asks for thousands of rooms (every join goes
    through the same checks);
  - typed frames far longer than a typed line (every string has its
    maximum, whatever door it came through);
  - C{/rooms} on a server with many rooms (an answer bounded in size);
  - a full default room (newcomers land in an overflow room, where they
    can talk, and no room grows past its cap);
  - guessing resume codes and operator passwords from many addresses
    (guesses slowed for everyone, the owner never locked out).
"""

from __future__ import annotations

import re
import time

from twisted.trial.unittest import TestCase

from tests.integration.server import (
    TAP_INI,
    async_test,
    connect,
    connect_web,
    log_line,
    start_server,
)
from tests.integration.test_operations import (
    OPERATOR,
    OPERATOR_NOW,
    PASSWORD,
    require_loopback_aliases,
    tap_ini,
)

WEB = "tcp:0:interface=127.0.0.1"


def _limits(*lines: str) -> str:
    """The test configuration with more C{[limits]} keys."""
    return TAP_INI.replace(
        "[limits]\n", "[limits]\n" + "".join(f"{x}\n" for x in lines)
    )


class JoinAndLengthTests(TestCase):
    """
    Limits that held on one path and not another.
    """

    @async_test
    async def test_resume_frame_joins_as_join_does(self) -> None:
        """
        A C{resume} frame naming 100 rooms joins only as many as
        C{max_rooms_per_user} lets a user be in, and says why; one naming
        more rooms than a frame may is refused outright.
        """
        server = await start_server(self, _limits("max_rooms_per_user = 5"), web=WEB)
        assert server.web_port is not None
        mallory = await connect_web(self, server.web_port, "mallory")
        start = mallory.cursor
        mallory.send({"type": "resume", "rooms": {f"#r{n}": 0 for n in range(100)}})
        for _ in range(4):
            await mallory.wait_for(type="resumed", timeout=10)
        await mallory.sync()
        frames = mallory.frames[start : mallory.cursor]
        joined = [f for f in frames if f.get("event") == "join"]
        refused = [f for f in frames if f.get("type") == "error"]
        self.assertEqual(len(joined), 4, "the lobby and four more")
        self.assertEqual(
            refused,
            [
                {
                    "type": "error",
                    "code": "too-many-rooms",
                    "message": "one user may be in 5 rooms at most; /part one first",
                }
            ],
        )
        mallory.send({"type": "resume", "rooms": {f"#s{n}": 0 for n in range(2019)}})
        await mallory.wait_for(
            type="error", code="bad-request", message="at most 100 rooms at once"
        )
        admin = await connect(self, server.port, "admin")
        admin.say("/rooms")
        await admin.wait_for(b"*** Rooms:\r\n")
        listed = await admin.read_lines(5)
        self.assertEqual(
            [x.split()[0] for x in listed], [b"#lobby", b"#r0", b"#r1", b"#r2", b"#r3"]
        )
        self.assertEqual(await admin.sync(), b"", "no other room")

    @async_test
    async def test_typed_frames_capped_as_lines(self) -> None:
        """
        C{me}, C{topic}, C{msg} and a C{quit} reason of 60,000 characters
        are refused as a typed line of that length is, and nobody sees
        them; the same frames at 4,096 characters go through.
        """
        server = await start_server(self, web=WEB)
        assert server.web_port is not None
        bob = await connect(self, server.port, "bob")
        await bob.set_nick("bob")
        mallory = await connect_web(self, server.web_port, "mallory")
        await bob.wait_for(b"joined #lobby\r\n")
        long = "x" * 60_000
        for frame in (
            {"type": "me", "message": long},
            {"type": "topic", "topic": long},
            {"type": "msg", "to": "bob", "message": long},
        ):
            mallory.send(frame)
            await mallory.wait_for(
                type="error",
                code="bad-arguments",
                message="the text is longer than 4096 characters",
            )
        self.assertEqual(await bob.sync(), b"", "bob saw none of it")
        mallory.send({"type": "me", "message": "y" * 4096})
        await bob.wait_for(b"y" * 4096 + b"\r\n")
        mallory.send({"type": "quit", "reason": long})
        await mallory.wait_for(
            type="error",
            code="bad-arguments",
            message="the reason is longer than 4096 characters",
        )
        mallory.send({"type": "quit", "reason": "bye now"})
        await bob.wait_for(b"(bye now)\r\n")
        await mallory.expect_closed()

    @async_test
    async def test_rooms_answer_is_paged(self) -> None:
        """
        With 250 rooms, C{/rooms} answers with the first page of 100 and
        says how to see the rest; a page past the end says so.  The answer
        stays small whatever the number of rooms.
        """
        server = await start_server(self, _limits("max_rooms_per_user = 300"))
        owner = await connect(self, server.port, "owner")
        for n in range(250):
            owner.say(f"/join #room{n:03d}")
        await owner.wait_for(b"you joined #room249\r\n", timeout=20)
        asker = await connect(self, server.port, "asker")
        start = asker.received.cursor
        asker.say("/rooms")
        await asker.wait_for(
            b"*** Rooms (page 1 of 3, 251 in all; /rooms 2 for the next):\r\n"
        )
        lines = await asker.read_lines(100)
        self.assertTrue(all(b"#room" in x or b"#lobby" in x for x in lines), lines)
        self.assertLess(len(asker.received.data) - start, 8_000)
        asker.say("/rooms 3")
        await asker.wait_for(
            b"*** Rooms (page 3 of 3, 251 in all; /rooms 1 for the next):\r\n"
        )
        asker.say("/rooms 9")
        await asker.wait_for(b"!!! there are only 3 pages of rooms\r\n")


class DefaultRoomTests(TestCase):
    @async_test
    async def test_newcomers_land_where_they_can_talk(self) -> None:
        """
        With C{max_users_per_room = 2} and #lobby full, the third and
        fourth users land in #lobby-2, are told why, and hear each other;
        no room holds more than two.
        """
        server = await start_server(self, _limits("max_users_per_room = 2"))
        await connect(self, server.port, "alice")
        await connect(self, server.port, "bob")
        arrivals = []
        for name in ("carol", "dave"):
            client = await connect(self, server.port, name, welcome=False)
            await client.wait_for(b"*** you joined #lobby-2\r\n")
            await client.wait_for(
                b"*** #lobby is full (2 users): you are in #lobby-2, its "
                b"overflow; /join #lobby later\r\n"
            )
            arrivals.append(client)
        carol, dave = arrivals
        carol.say("heard in the overflow")
        await dave.wait_for(b"> heard in the overflow\r\n")
        dave.say("/rooms")
        await dave.wait_for(
            b"*** Rooms:\r\n  #lobby  2 users\r\n  #lobby-2  2 users\r\n"
        )


class GuessingTests(TestCase):
    def setUp(self) -> None:
        require_loopback_aliases()

    @async_test
    async def test_resume_codes_from_many_addresses(self) -> None:
        """
        Ten connections from ten addresses trying three unknown codes each
        (no address over its own allowance): the next code, from an
        eleventh address, waits before it is checked, and the real owner's
        code still works once it has.
        """
        server = await start_server(self)
        owner = await connect(self, server.port, "owner")
        await owner.set_nick("owner")
        code = owner.code
        await owner.close()
        guessers = [
            await connect(self, server.port, f"guesser{n}", bind=f"127.0.1.{n}")
            for n in range(10)
        ]
        for n, guesser in enumerate(guessers):
            for k in range(3):
                guesser.say(f"/resume AAAA-{n:02d}{k:02d}")
        for guesser in guessers:
            for _ in range(3):
                await guesser.wait_for(rb"!!! no session has the code ")
        late = await connect(self, server.port, "late", bind="127.0.2.1")
        late.say(f"/resume {code}")
        started = time.monotonic()
        await late.expect_lines(
            "*** too many unknown resume codes lately: yours is checked in 1 s"
        )
        await late.wait_for(b"welcome back, owner", timeout=10)
        self.assertGreaterEqual(time.monotonic() - started, 0.9)

    @async_test
    async def test_operator_passwords_from_many_addresses(self) -> None:
        """
        Twenty addresses failing one C{/oper} each slow everyone's next
        try: the real operator's waits a second, then gets in.
        """
        server = await start_server(self, tap_ini())
        guessers = [
            await connect(self, server.port, f"guesser{n}", bind=f"127.0.3.{n}")
            for n in range(20)
        ]
        for guesser in guessers:
            guesser.say(f"/oper {OPERATOR} guess")
        for guesser in guessers:
            await guesser.wait_for(b"!!! wrong operator name or password\r\n")
        alice = await connect(self, server.port, "alice", bind="127.0.4.1")
        alice.say(f"/oper {OPERATOR} {PASSWORD}")
        await alice.expect_lines(
            "*** too many failed /oper attempts lately: yours is checked in 1 s"
        )
        await alice.expect_lines(OPERATOR_NOW, timeout=10)
        await log_line(server, re.compile(rb"slowing /oper from guest-\w+ \(telnet"))
