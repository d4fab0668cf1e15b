# -*- test-case-name: tests.integration.test_cluster -*-
"""
Cluster mode end to end (issue 9): a real C{redis-server} on a free
loopback port with no persistence, two real C{twistd -n tchat} nodes
pointed at it, and real telnet and WebSocket clients on each node, checking
that the nodes feel like one server: presence, messages with the same ids
in the same order, private messages, unique nicks, shared history and
resume, a Redis restart during traffic and a node killed with C{kill -9}.

Each test starts its own Redis and nodes, so no test sees another's users,
rooms or ids.  What crosses nodes goes through Redis and so arrives a
moment later than what stays on one node: tests wait for it (bounded by
L{CROSS}) rather than expect it at once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from twisted.internet.task import LoopingCall
from twisted.trial.unittest import FailTest, TestCase

from tchat.cluster.backplane import QUIET_AFTER
from tests.integration.cluster import (
    DEGRADED,
    HEALTHY,
    NODE_TIMEOUT,
    RedisServer,
    cluster_up_metric,
    node_ini,
    sleep,
    start_node,
    until,
    wait_health,
)
from tests.integration.server import (
    RECENT,
    WELCOME,
    ChatClient,
    TchatServer,
    WebClient,
    async_test,
    connect,
    connect_web,
    expect_resume,
    global_reactor,
    start_server,
)

CROSS = 10.0
"""Seconds anything sent through Redis may take to reach another node."""

UNREACHABLE = (
    "the cluster is unreachable: until it is back you chat only with people "
    "on this server"
)
"""The status line each user gets once when their node loses Redis."""

BACK = "the cluster is back: you chat with everyone again"
"""The status line each user gets once when their node has Redis again."""

Client = ChatClient | WebClient

STAMPED = re.compile(rb"^\[\d\d:\d\d\] ")
"""A time stamp at the start of a telnet line."""


# -- setting up users --------------------------------------------------------


async def redis_and_nodes(
    testcase: TestCase, *names: str, extra: str = ""
) -> tuple[RedisServer, list[TchatServer]]:
    """
    Start a Redis and one node per name on it, each with a web door, and
    wait until every node says it is in the cluster.
    """
    redis = RedisServer(testcase)
    await redis.start()
    nodes = [await start_node(testcase, redis, name, extra=extra) for name in names]
    return redis, nodes


def web_port(node: TchatServer) -> int:
    """
    The node's web port (every node here has a web door).
    """
    assert node.web_port is not None
    return node.web_port


async def take_nick(client: Client, nick: str) -> None:
    """
    Take C{nick} and wait for the confirmation, skipping notices about
    others that may come first (they cross nodes at their own pace).
    """
    if isinstance(client, ChatClient):
        client.say(f"/nick {nick}")
        await client.wait_for(f"*** you are now known as {nick}\r\n", CROSS)
    else:
        old = client.nick
        client.send({"type": "nick", "name": nick})
        await client.wait_for(
            CROSS, type="system", event="nick", name=old, new_name=nick
        )
    client.nick = nick


async def saw_nick(watchers: list[Client], guest: str, door: str, nick: str) -> None:
    """
    Wait until each of C{watchers} has seen C{guest} take C{nick}.
    """
    for watcher in watchers:
        if isinstance(watcher, ChatClient):
            await watcher.wait_for(
                f"*** {guest} ({door}) is now known as {nick}\r\n", CROSS
            )
        else:
            await watcher.wait_for(
                CROSS, type="system", event="nick", name=guest, new_name=nick
            )


async def telnet_user(
    testcase: TestCase, node: TchatServer, nick: str, watchers: list[Client]
) -> ChatClient:
    """
    Connect a telnet client (colours off) to C{node}, take C{nick}, and
    wait until each of C{watchers} (in #lobby) has seen it.  Its join
    replay, if any, is skipped.
    """
    client = await connect(testcase, node.port, nick, welcome=False)
    match = await client.wait_for(WELCOME)
    guest = client.nick = match.group(2).decode()
    client.code = match.group(3).decode()
    # Notices from other nodes may come right after the join, before the
    # replay or the answer to /color off: skip them.
    await client.wait_for("*** you joined #lobby\r\n")
    client.say("/color off")
    await client.wait_for("*** colours are off\r\n")
    if count_lines(client, "*** you joined #lobby") != 1:
        raise FailTest(
            f"{nick}: told more than once that it joined #lobby:\n"
            f"{client.received.describe()}"
        )
    await take_nick(client, nick)
    await saw_nick(watchers, guest, "telnet", nick)
    return client


async def web_user(
    testcase: TestCase, node: TchatServer, nick: str, watchers: list[Client]
) -> WebClient:
    """
    Connect a WebSocket client to C{node}, read its join replay, take
    C{nick}, and wait until each of C{watchers} (in #lobby) has seen it.
    """
    client = await connect_web(testcase, web_port(node), nick, replay=True)
    guest = client.nick
    await take_nick(client, nick)
    await saw_nick(watchers, guest, "web", nick)
    return client


async def telnet_who(client: ChatClient, room: str = "#lobby") -> list[str]:
    """
    Ask C{/who ROOM} on the telnet door.

    @return: The members as shown ("alice (telnet)"), sorted, after
        checking that the count matches them.
    """
    client.say(f"/who {room}")
    match = await client.wait_for(
        re.compile(
            rb"\*\*\* " + re.escape(room.encode()) + rb" \((\d+)\): ([^\r\n]*)\r\n"
        )
    )
    members = sorted(match.group(2).decode().split(", "))
    if int(match.group(1)) != len(members):
        raise FailTest(f"{client.name}: /who counts wrong: {match.group(0)!r}")
    return members


async def web_who(client: WebClient, room: str = "#lobby") -> list[str]:
    """
    Ask C{who ROOM} on the web door.

    @return: The members as "alice (telnet)", sorted.
    """
    client.send({"type": "who", "room": room})
    frame = await client.wait_for(type="system", event="who", room=room)
    return sorted(f"{m['name']} ({m['door']})" for m in frame["members"])


async def say(
    client: WebClient, text: str, client_id: str, room: str | None = None
) -> dict[str, Any]:
    """
    Send a room message from a web client and wait for its acknowledgement
    (the sender's own copy, which carries the id the cluster gave it).
    """
    request: dict[str, Any] = {
        "type": "message",
        "message": text,
        "client_id": client_id,
    }
    if room is not None:
        request["room"] = room
    client.send(request)
    ack = await client.wait_for(CROSS, type="usermsg", client_id=client_id)
    if ack["message"] != text:
        raise FailTest(f"{client.name}: the acknowledgement of {client_id}: {ack!r}")
    return ack


def seen(frames: list[dict[str, Any]], room: str = "#lobby") -> list[tuple[int, str]]:
    """
    The (id, text) of each C{usermsg} frame of C{room}, in order.
    """
    return [
        (int(f["id"]), str(f["message"]))
        for f in frames
        if f.get("type") == "usermsg" and f.get("room") == room
    ]


def count_lines(client: ChatClient, line: str) -> int:
    """
    How many times a whole line (stamped or not) came to a telnet client.
    """
    target = line.encode()
    return sum(
        1
        for got in bytes(client.received.data).split(b"\r\n")
        if STAMPED.sub(b"", got) == target
    )


def count_frames(client: WebClient, **fields: Any) -> int:
    """
    How many frames with all of C{fields} came to a web client.
    """
    return sum(
        1
        for f in client.frames
        if all(f.get(key, object()) == value for key, value in fields.items())
    )


async def has_line(client: ChatClient, line: str, timeout: float) -> None:
    """
    Wait until a whole line (stamped or not) has come to a telnet client at
    any point, whatever its cursor; the cursor does not move.
    """
    await until(
        lambda: f"{client.name} to receive {line!r}:\n{client.received.describe()}",
        lambda: count_lines(client, line) > 0,
        timeout,
    )


async def has_frame(client: WebClient, timeout: float, **fields: Any) -> None:
    """
    Wait until a frame with all of C{fields} has come to a web client at
    any point, whatever its cursor; the cursor does not move.
    """
    await until(
        lambda: (
            f"{client.name} to receive a frame with {fields!r}:\n{client.describe()}"
        ),
        lambda: count_frames(client, **fields) > 0,
        timeout,
    )


# -- the tests ---------------------------------------------------------------


class SharedRoomTests(TestCase):
    """
    A telnet user on one node and a web user on another share #lobby.
    """

    timeout = 120

    @async_test
    async def test_presence_messages_who_and_rooms(self) -> None:
        """
        alice (telnet, node A) sees bob (web, node B) join and take his
        nick, and bob sees wendy (web, node A) join; alice's line reaches
        bob as a C{usermsg} from the telnet door, bob's message reaches
        alice as "<bob> text"; C{/who} on either node lists both with
        their doors and C{/rooms} counts 2 in #lobby; wendy, joining on A,
        is replayed both messages with the ids bob saw on B, and later
        messages carry the same id (and epoch) on both nodes, ids going
        up; alice's C{/quit} reaches bob.
        """
        _, (a, b) = await redis_and_nodes(self, "a", "b")
        alice = await connect(self, a.port, "alice")
        await take_nick(alice, "alice")

        bob = await connect_web(self, web_port(b), "bob")
        guest = bob.nick
        await alice.expect_lines(
            f"[HH:MM] *** {guest} (web) joined #lobby", timeout=CROSS
        )
        await take_nick(bob, "bob")
        await alice.expect_lines(
            f"[HH:MM] *** {guest} (web) is now known as bob", timeout=CROSS
        )

        both = ["alice (telnet)", "bob (web)"]
        self.assertEqual(await telnet_who(alice), both, "/who on node A")
        self.assertEqual(await web_who(bob), both, "who on node B")
        alice.say("/rooms")
        await alice.expect_lines("*** Rooms:", "  #lobby  2 users")
        bob.send({"type": "rooms"})
        rooms = await bob.wait_for(type="system", event="rooms")
        self.assertEqual(
            rooms["rooms"], [{"name": "#lobby", "members": 2, "topic": None}]
        )

        alice.say("hello from telnet")
        first = await bob.wait_for(CROSS, type="usermsg", message="hello from telnet")
        self.assertEqual(
            {k: first[k] for k in ("name", "room", "door", "action")},
            {"name": "alice", "room": "#lobby", "door": "telnet", "action": False},
        )
        second = await say(bob, "hello from the web", "b-1")
        await alice.expect_lines("[HH:MM] <bob> hello from the web", timeout=CROSS)
        self.assertLess(first["id"], second["id"])

        wendy = await connect_web(self, web_port(a), "wendy", replay=True)
        await bob.wait_for(
            CROSS,
            type="system",
            event="join",
            name=wendy.nick,
            door="web",
            room="#lobby",
        )
        await alice.expect_lines(f"[HH:MM] *** {wendy.nick} (web) joined #lobby")
        self.assertEqual(
            [(f["id"], f["epoch"], f["message"], f["history"]) for f in wendy.replay],
            [
                (first["id"], first["epoch"], "hello from telnet", True),
                (second["id"], second["epoch"], "hello from the web", True),
            ],
            "node A replays #lobby with the ids and epoch node B showed",
        )
        self.assertEqual(wendy.joined["last_id"], second["id"])

        alice.say("third")
        on_b = await bob.wait_for(CROSS, type="usermsg", message="third")
        on_a = await wendy.wait_for(CROSS, type="usermsg", message="third")
        fourth = await say(bob, "fourth", "b-2")
        on_a_too = await wendy.wait_for(CROSS, type="usermsg", message="fourth")
        self.assertEqual(
            [(f["id"], f["epoch"]) for f in (on_a, on_a_too)],
            [(f["id"], f["epoch"]) for f in (on_b, fourth)],
            "the same ids and epoch on both nodes",
        )
        self.assertLess(second["id"], on_b["id"])
        self.assertLess(on_b["id"], fourth["id"])

        alice.say("/quit see you")
        await bob.wait_for(
            CROSS,
            type="system",
            event="quit",
            name="alice",
            door="telnet",
            reason="see you",
        )
        self.assertEqual(
            await web_who(bob), sorted(["bob (web)", f"{wendy.nick} (web)"])
        )


class PrivateMessageTests(TestCase):
    """
    C{/msg} between users on different nodes.
    """

    timeout = 120

    @async_test
    async def test_private_messages_across_nodes(self) -> None:
        """
        alice (telnet, A) to bob (web, B) and back, and alice to carol
        (telnet, B): each reaches its recipient alone, with the sender's
        door, and the sender gets their usual confirmation; dave (web, A)
        sees none of it; C{/msg} to a nick that exists on no node is the
        usual "nobody here is called" error on both doors.  Last, the
        recipient's nick is matched case-insensitively across nodes, and
        the sender's confirmation shows it as its holder spells it, as on
        one server.
        """
        _, (a, b) = await redis_and_nodes(self, "a", "b")
        alice = await telnet_user(self, a, "alice", [])
        bob = await web_user(self, b, "bob", [alice])
        carol = await telnet_user(self, b, "carol", [alice, bob])
        dave = await web_user(self, a, "dave", [alice, bob, carol])

        alice.say("/msg bob psst")
        await alice.expect_lines("[HH:MM] -> *bob* psst", timeout=CROSS)
        frame = await bob.wait_for(CROSS, type="private", message="psst")
        self.assertEqual(
            frame,
            {
                "type": "private",
                "from": "alice",
                "to": "bob",
                "message": "psst",
                "color": frame["color"],
                "color_name": frame["color_name"],
                "door": "telnet",
                "ts": RECENT,
                "outgoing": False,
            },
        )

        bob.send({"type": "msg", "to": "alice", "message": "a secret"})
        await alice.expect_lines("[HH:MM] *bob* a secret", timeout=CROSS)
        mine = await bob.wait_for(CROSS, type="private", message="a secret")
        self.assertEqual(
            (mine["from"], mine["to"], mine["outgoing"]), ("bob", "alice", True)
        )

        alice.say("/msg carol across telnets")
        await alice.expect_lines("[HH:MM] -> *carol* across telnets", timeout=CROSS)
        await carol.expect_lines("[HH:MM] *alice* across telnets", timeout=CROSS)

        alice.say("/msg nobody hello")
        await alice.expect_lines("!!! nobody here is called nobody", timeout=CROSS)
        bob.send({"type": "msg", "to": "nobody", "message": "hi", "client_id": "e-1"})
        unknown = await bob.wait_for(
            CROSS,
            type="error",
            code="no-such-nick",
            message="nobody here is called nobody",
        )

        # Give anything misrouted time to arrive before looking for it.
        await sleep(1.0)
        await carol.sync()
        await dave.sync()
        for frame in dave.frames:
            self.assertNotEqual(frame.get("type"), "private", "dave sees none")
        for text in (b"psst", b"a secret"):
            self.assertNotIn(text, bytes(carol.received.data), "carol sees none")
        self.assertEqual(count_frames(bob, type="private", message="psst"), 1)

        bob.send({"type": "msg", "to": "ALICE", "message": "any case"})
        await alice.expect_lines("[HH:MM] *bob* any case", timeout=CROSS)
        mine = await bob.wait_for(CROSS, type="private", message="any case")
        alice.say("/msg CAROL any case too")
        await carol.expect_lines("[HH:MM] *alice* any case too", timeout=CROSS)
        await alice.expect_lines("[HH:MM] -> *carol* any case too", timeout=CROSS)
        self.assertEqual(mine["to"], "alice", "the holder's spelling, on the web")
        self.assertEqual(
            unknown.get("client_id"), "e-1", "the error carries the client_id"
        )


class NickTests(TestCase):
    """
    Nicks are unique across the cluster.
    """

    timeout = 120
    maxDiff = None

    @async_test
    async def test_simultaneous_claims(self) -> None:
        """
        A telnet user on node A and a web user on node B ask for the same
        fresh nick in the same instant, ten rounds over: each round
        exactly one of them gets it and the other is told "NICK is taken;
        pick another" (once, and nothing else), and in the end C{/who}
        shows each with the nick they last won.
        """
        _, (a, b) = await redis_and_nodes(self, "a", "b")
        left = await telnet_user(self, a, "left", [])
        right = await web_user(self, b, "right", [left])
        winners: list[str] = []

        def answer(
            client_id: str, old: str, nick: str
        ) -> Callable[[dict[str, Any]], bool]:
            # The web racer's answer: its error, or its own nick change
            # (not the telnet racer's, which it sees too when that wins).
            def is_answer(frame: dict[str, Any]) -> bool:
                if frame.get("type") == "error":
                    # Matched by its text, not its client_id, so that a
                    # missing client_id is reported on its own below.
                    return frame.get("message") == f"{nick} is taken; pick another"
                return (
                    frame.get("event"),
                    frame.get("name"),
                    frame.get("new_name"),
                ) == (
                    "nick",
                    old,
                    nick,
                )

            return is_answer

        for turn in range(1, 11):
            nick = f"race{turn}"
            old_right = right.nick
            # Both requests leave in the same reactor turn; which is
            # written first alternates, so neither side always leads.
            to_right = {"type": "nick", "name": nick, "client_id": f"r-{turn}"}
            if turn % 2:
                left.say(f"/nick {nick}")
                right.send(to_right)
            else:
                right.send(to_right)
                left.say(f"/nick {nick}")
            line = await left.wait_for(
                re.compile(
                    rb"(\*\*\* you are now known as "
                    + nick.encode()
                    + rb"|!!! "
                    + nick.encode()
                    + rb" is taken; pick another)\r\n"
                ),
                CROSS,
            )
            left_won = line.group(1).startswith(b"***")
            frame = await right.wait_frame(
                answer(f"r-{turn}", old_right, nick), f"the answer to {nick}", CROSS
            )
            right_won = frame.get("event") == "nick"
            if right_won:
                self.assertEqual(frame["door"], "web")
            else:
                self.assertEqual(
                    (frame["code"], frame["message"]),
                    ("nick-taken", f"{nick} is taken; pick another"),
                )
            self.assertEqual(
                (left_won or right_won, left_won and right_won),
                (True, False),
                f"round {turn}: exactly one of them gets {nick}",
            )
            if left_won:
                left.nick = nick
                winners.append("left")
            else:
                right.nick = nick
                winners.append("right")

        # Any second answer to a round would have come by now.
        await sleep(1.0)
        await left.sync()
        await right.sync()
        for turn in range(1, 11):
            nick = f"race{turn}"
            answers = (
                count_lines(left, f"*** you are now known as {nick}")
                + count_lines(left, f"!!! {nick} is taken; pick another"),
                count_frames(
                    right, type="error", message=f"{nick} is taken; pick another"
                )
                + count_frames(right, event="nick", new_name=nick, door="web"),
            )
            self.assertEqual(answers, (1, 1), f"one answer each in round {turn}")
        self.assertEqual(
            await telnet_who(left),
            sorted([f"{left.nick} (telnet)", f"{right.nick} (web)"]),
            f"winners by round: {winners}",
        )
        # The web door's errors carry the request's client_id, as on one
        # server (tests.integration.test_web_server.NickTests).
        refused = [
            (f["message"], f.get("client_id"))
            for f in right.frames
            if f.get("type") == "error"
        ]
        self.assertEqual(
            refused,
            [
                (f"race{turn} is taken; pick another", f"r-{turn}")
                for turn, winner in enumerate(winners, 1)
                if winner == "left"
            ],
        )

    @async_test
    async def test_held_nick_frees_when_its_holder_quits(self) -> None:
        """
        While keeper (telnet, node A) is connected, nobody on node B can
        take "keeper" or "KEEPER"; once keeper quits, a user on B who saw
        them go takes it at once.
        """
        _, (a, b) = await redis_and_nodes(self, "a", "b")
        keeper = await telnet_user(self, a, "keeper", [])
        taker = await telnet_user(self, b, "taker", [keeper])
        web = await web_user(self, b, "web", [keeper, taker])
        taker.say("/nick keeper")
        await taker.expect_lines("!!! keeper is taken; pick another", timeout=CROSS)
        taker.say("/nick KEEPER")
        await taker.expect_lines("!!! KEEPER is taken; pick another", timeout=CROSS)
        web.send({"type": "nick", "name": "Keeper", "client_id": "n-1"})
        refused = await web.wait_for(
            CROSS,
            type="error",
            code="nick-taken",
            message="Keeper is taken; pick another",
        )

        keeper.say("/quit")
        await taker.expect_lines("[HH:MM] *** keeper (telnet) quit", timeout=CROSS)
        taker.say("/nick keeper")
        await taker.expect_lines("[HH:MM] *** you are now known as keeper")
        await web.wait_for(
            CROSS, type="system", event="nick", name="taker", new_name="keeper"
        )
        self.assertEqual(
            refused.get("client_id"), "n-1", "the error carries the client_id"
        )


class HistoryAcrossNodesTests(TestCase):
    """
    History and resume codes are the cluster's, not one node's.
    """

    timeout = 120

    @async_test
    async def test_resume_on_another_node(self) -> None:
        """
        alice (web) and tom (telnet) are on node A in #lobby and #dev;
        alice says something in #dev; both leave.  bob on node B says three
        lines in each room.  alice, back on node B as a guest, is replayed
        #lobby and sends C{/resume CODE} with the code of her first
        welcome: she is alice again, told "welcome back" naming both rooms,
        and gets #dev's three lines (and #lobby's, less what the replay
        showed) in order with the ids bob's acknowledgements carried, then
        a complete C{resumed} per room.  tom does the same on B's telnet
        door and is shown what he missed, as on one server.
        """
        _, (a, b) = await redis_and_nodes(self, "a", "b")
        bob = await web_user(self, b, "bob", [])
        bob.send({"type": "join", "room": "#dev"})
        await bob.wait_for(type="system", event="join", room="#dev", name="bob")
        alice = await web_user(self, a, "alice", [bob])
        code = alice.code
        alice.send({"type": "join", "room": "#dev"})
        await alice.wait_for(type="system", event="join", room="#dev", name="alice")
        tom = await telnet_user(self, a, "tom", [bob, alice])
        tom.say("/join #dev")
        await tom.wait_for("*** you joined #dev\r\n")
        await bob.wait_for(CROSS, type="system", event="join", room="#dev", name="tom")

        before = await say(alice, "before I go", "a-1", room="#dev")
        await tom.wait_for("<alice> before I go\r\n", CROSS)
        await bob.wait_for(CROSS, type="usermsg", message="before I go")
        await alice.close()
        await tom.close()
        await until(
            lambda: f"bob to see alice and tom leave:\n{bob.describe()}",
            lambda: all(
                any(
                    f.get("event") in ("quit", "lost") and f.get("name") == name
                    for f in bob.frames
                )
                for name in ("alice", "tom")
            ),
            CROSS,
        )

        lobby = [
            await say(bob, f"lobby {n}", f"l-{n}", room="#lobby") for n in range(1, 4)
        ]
        dev = [await say(bob, f"dev {n}", f"d-{n}", room="#dev") for n in range(1, 4)]
        self.assertLess(before["id"], dev[0]["id"])

        again = await connect_web(self, web_port(b), "alice again", replay=True)
        guest = again.nick
        start = again.cursor
        again.send({"type": "message", "message": f"/resume {code}"})
        for room in ("#lobby", "#dev"):
            await has_frame(again, CROSS, type="resumed", room=room)
        got = again.frames[start:]
        self.assertIn(
            {
                "type": "system",
                "event": "nick",
                "message": f"{guest} (web) is now known as alice",
                "name": guest,
                "new_name": "alice",
                "door": "web",
                "ts": RECENT,
                "registered": False,
            },
            got,
        )
        self.assertIn(
            {
                "type": "system",
                "event": "status",
                "message": "welcome back, alice: restoring #lobby, #dev",
                "rooms": ["#lobby", "#dev"],
                "resume_code": code,
            },
            got,
        )
        history = [f for f in got if f.get("type") == "usermsg"]
        self.assertTrue(all(f.get("history") is True for f in history), history)
        self.assertEqual(seen(history, "#dev"), seen(dev, "#dev"), "#dev as on B")
        self.assertEqual(
            seen(again.replay) + seen(history),
            seen(lobby),
            "#lobby: the replay, then the rest of what she missed",
        )
        for room, acks in (("#lobby", lobby), ("#dev", dev)):
            [resumed] = [
                f for f in got if f.get("type") == "resumed" and f["room"] == room
            ]
            self.assertEqual(
                (resumed["complete"], resumed["last_id"], resumed["epoch"]),
                (True, acks[-1]["id"], acks[-1]["epoch"]),
                room,
            )
        await bob.wait_for(
            CROSS, type="system", event="nick", name=guest, new_name="alice"
        )
        back = await say(again, "I am back", "a-2", room="#dev")
        frame = await bob.wait_for(CROSS, type="usermsg", message="I am back")
        self.assertEqual((frame["name"], frame["id"]), ("alice", back["id"]))

        tom_again = await connect(self, b.port, "tom again")
        self.assertEqual(
            tom_again.replay,
            [f"[HH:MM] <bob> lobby {n}".encode() for n in range(1, 4)],
        )
        tom_again.say(f"/resume {tom.code}")
        await expect_resume(
            tom_again,
            "[HH:MM] *** you are now known as tom",
            "*** welcome back, tom: restoring #lobby, #dev",
            "*** Nothing new in #lobby since you left",
            "*** 4 messages in #dev since you left:",
            "[HH:MM] <bob> dev 1",
            "[HH:MM] <bob> dev 2",
            "[HH:MM] <bob> dev 3",
            "[HH:MM] <alice> I am back",
            "*** End of missed messages in #dev",
            joined=("#dev",),
        )

    @async_test
    async def test_join_replays_what_another_node_heard(self) -> None:
        """
        Three lines said on node A (one a C{/me}) are replayed to a telnet
        user joining #lobby on node B, and to a web user there with the
        ids a web user on A saw live.
        """
        _, (a, b) = await redis_and_nodes(self, "a", "b")
        alice = await telnet_user(self, a, "alice", [])
        wendy = await web_user(self, a, "wendy", [alice])
        for line in ("one", "two", "/me three"):
            alice.say(line)
        await wendy.wait_for(CROSS, type="usermsg", message="three")
        live = seen(wendy.frames)

        late = await connect(self, b.port, "late")
        self.assertEqual(
            late.replay,
            [b"[HH:MM] <alice> one", b"[HH:MM] <alice> two", b"[HH:MM] * alice three"],
        )
        web = await connect_web(self, web_port(b), "web", replay=True)
        self.assertEqual(seen(web.replay), live)
        self.assertEqual(
            [(f["action"], f["history"], f["door"]) for f in web.replay],
            [(False, True, "telnet"), (False, True, "telnet"), (True, True, "telnet")],
        )


class RoomChannelTests(TestCase):
    """
    A node listens to the channel of each room its users are in, and only
    those (issue 24): what Redis says of its subscriptions.
    """

    timeout = 60

    async def reaches(
        self, redis: RedisServer, want: int, timeout: float, *command: str
    ) -> None:
        """Wait until Redis answers C{command} with C{want} (last of a list)."""
        deadline = time.monotonic() + timeout
        while True:
            answer = await redis.command(*command)
            found = int(answer[-1] if isinstance(answer, list) else answer)
            if found == want:
                return
            if time.monotonic() > deadline:
                raise FailTest(f"{' '.join(command)} gave {found}, not {want}")
            await sleep(0.05)

    async def listeners(self, redis: RedisServer, count: int, room: str) -> None:
        """Wait until C{count} nodes listen to C{room}'s channel."""
        channel = f"tchat:bus:{room}"
        await self.reaches(redis, count, QUIET_AFTER + 10, "PUBSUB", "NUMSUB", channel)

    async def kept(self, redis: RedisServer, count: int, room: str) -> None:
        """Wait until Redis keeps C{count} lines of C{room}."""
        await self.reaches(redis, count, CROSS, "XLEN", f"tchat:room:{room}:log")

    @async_test
    async def test_a_node_listens_while_its_users_are_in_the_room(self) -> None:
        """
        Node B listens to #dev only while bob is in it, and a while after
        he leaves stops; joining again, bob is replayed what was said
        meanwhile (he was not there to get it live), and then gets #dev's
        lines live again.
        """
        redis, (a, b) = await redis_and_nodes(self, "a", "b")
        alice = await telnet_user(self, a, "alice", [])
        bob = await telnet_user(self, b, "bob", [alice])
        await self.listeners(redis, 2, "#lobby")
        alice.say("/join #dev")
        await alice.wait_for("*** you joined #dev\r\n")
        await self.listeners(redis, 1, "#dev")
        alice.say("before bob")
        await self.kept(redis, 1, "#dev")
        bob.say("/join #dev")
        await bob.wait_for("<alice> before bob\r\n", CROSS)
        await self.listeners(redis, 2, "#dev")
        alice.say("with bob")
        await bob.wait_for("<alice> with bob\r\n", CROSS)
        bob.say("/part #dev")
        await self.listeners(redis, 1, "#dev")
        alice.say("after bob")
        await self.kept(redis, 3, "#dev")
        bob.say("/join #dev")
        await bob.wait_for("<alice> after bob\r\n", CROSS)
        await self.listeners(redis, 2, "#dev")
        alice.say("live again")
        await bob.wait_for("<alice> live again\r\n", CROSS)


class OrderTests(TestCase):
    """
    One order of messages for the whole cluster.
    """

    timeout = 120

    @async_test
    async def test_two_senders_one_order(self) -> None:
        """
        Two web senders, one per node, each send 50 numbered messages into
        #lobby at once (the test limits let them); a web listener on each
        node receives all 100, in the same order with the same ids on both,
        ids strictly increasing, each sender's messages in the order sent,
        and each acknowledgement carries the id the listeners saw.
        """
        _, (a, b) = await redis_and_nodes(self, "a", "b")
        listen_a = await web_user(self, a, "listen-a", [])
        listen_b = await web_user(self, b, "listen-b", [listen_a])
        send_a = await web_user(self, a, "send-a", [listen_a, listen_b])
        send_b = await web_user(self, b, "send-b", [listen_a, listen_b, send_a])
        marks = {c.name: len(c.frames) for c in (listen_a, listen_b, send_a, send_b)}

        count = 50
        for n in range(1, count + 1):
            for sender in (send_a, send_b):
                sender.send(
                    {
                        "type": "message",
                        "message": f"{sender.nick} {n}",
                        "client_id": f"{sender.nick}-{n}",
                    }
                )

        def arrived(client: WebClient) -> list[tuple[int, str]]:
            return seen(client.frames[marks[client.name] :])

        clients = (listen_a, listen_b, send_a, send_b)
        await until(
            lambda: (
                "every client to have all messages; they have "
                + ", ".join(f"{c.name}: {len(arrived(c))}" for c in clients)
            ),
            lambda: all(len(arrived(c)) >= 2 * count for c in clients),
            30.0,
        )
        await sleep(0.5)
        on_a, on_b = arrived(listen_a), arrived(listen_b)
        self.assertEqual(len(on_a), 2 * count, "nothing twice")
        self.assertEqual(on_a, on_b, "the same order and ids on both nodes")
        numbers = [i for i, _ in on_a]
        self.assertEqual(numbers, sorted(set(numbers)), "ids strictly increasing")
        expected = {f"{s.nick} {n}" for s in (send_a, send_b) for n in range(1, 51)}
        self.assertEqual({t for _, t in on_a}, expected, "nothing lost")
        for sender in (send_a, send_b):
            mine = [t for _, t in on_a if t.startswith(f"{sender.nick} ")]
            self.assertEqual(mine, [f"{sender.nick} {n}" for n in range(1, count + 1)])
            self.assertEqual(arrived(sender), on_a, f"{sender.name} sees it too")
            acks = {
                f["client_id"]: f["id"]
                for f in sender.frames
                if f.get("type") == "usermsg" and "client_id" in f
            }
            self.assertEqual(
                acks,
                {
                    f"{t.replace(' ', '-')}": i
                    for i, t in on_a
                    if t.startswith(f"{sender.nick} ")
                },
            )

    @async_test
    async def test_rename_and_message_in_order(self) -> None:
        """
        A classic client's first frame, a name and a message together
        (C{{"name": "wes", "message": "hello"}}), is shown on the other node
        as the rename, then the message under the new name: the message
        waits for the nick's claim in Redis, and is never shown under the
        guest nick.
        """
        _, (a, b) = await redis_and_nodes(self, "a", "b")
        reader = await telnet_user(self, b, "reader", [])
        wes = await connect_web(self, web_port(a), "wes")
        guest = wes.nick
        await reader.wait_for(f"*** {guest} (web) joined #lobby\r\n", CROSS)
        wes.send({"name": "wes", "message": "hello"})
        await reader.wait_for(f"*** {guest} (web) is now known as wes\r\n", CROSS)
        await reader.wait_for("<wes> hello\r\n", CROSS)
        self.assertEqual(count_lines(reader, f"<{guest}> hello"), 0)


class RedisRestartTests(TestCase):
    """
    Redis goes away during traffic and comes back, empty.
    """

    timeout = 120

    @async_test
    async def test_redis_killed_and_restarted(self) -> None:
        """
        With a telnet and a web user on each node, and the web users each
        saying a line every 50 ms until messages cross again, SIGKILL Redis: every
        user is told the cluster is unreachable, C{/healthz} of both nodes
        answers 503 "degraded" with the cluster "unreachable", and
        C{tchat_cluster_up} is 0; users on one node still chat.  Redis
        restarts (empty) on its port: every user is told the cluster is
        back, C{/healthz} is 200 again, C{tchat_cluster_up} 1, messages
        cross nodes again within 15 s with the same id on both, C{/who}
        lists all four again and a nick held on one node is refused on the
        other.  Each user got each of the two status lines exactly once;
        no node logged a traceback (checked when they stop).
        """
        redis, (a, b) = await redis_and_nodes(self, "a", "b")
        alice = await telnet_user(self, a, "alice", [])
        amy = await web_user(self, a, "amy", [alice])
        bob = await telnet_user(self, b, "bob", [alice, amy])
        bea = await web_user(self, b, "bea", [alice, amy, bob])
        alice.say("before")
        await bob.expect_lines("[HH:MM] <alice> before", timeout=CROSS)
        await bea.wait_for(CROSS, type="usermsg", message="before")
        telnets, webs = (alice, bob), (amy, bea)

        # Traffic from both nodes throughout: Redis dies and comes back with
        # commands in flight.
        sent = 0

        def talk() -> None:
            nonlocal sent
            sent += 1
            for web in webs:
                if web.closed is None:
                    web.send({"type": "message", "message": f"traffic {sent}"})

        traffic = LoopingCall(talk)
        traffic.clock = global_reactor()
        traffic.start(0.05)

        def stop_traffic() -> None:
            if traffic.running:
                traffic.stop()

        self.addCleanup(stop_traffic)
        await sleep(0.5)

        await redis.kill()
        for telnet in telnets:
            await telnet.wait_for(f"*** {UNREACHABLE}\r\n", 15.0)
        for web in webs:
            await web.wait_for(15.0, type="system", event="status", message=UNREACHABLE)
        for node in (a, b):
            await wait_health(self, node, 503, DEGRADED, 5.0)
            self.assertEqual(await cluster_up_metric(self, node), 0.0)

        alice.say("local on a")
        frame = await amy.wait_for(type="usermsg", message="local on a")
        self.assertEqual((frame["name"], frame["door"]), ("alice", "telnet"))
        bea.send({"type": "message", "message": "local on b"})
        await bob.wait_for("<bea> local on b\r\n")
        amy.send({"type": "msg", "to": "alice", "message": "still here"})
        await alice.wait_for("*amy* still here\r\n")

        await redis.restart()
        for telnet in telnets:
            await telnet.wait_for(f"*** {BACK}\r\n", 15.0)
        for web in webs:
            await web.wait_for(15.0, type="system", event="status", message=BACK)
        for node in (a, b):
            await wait_health(self, node, 200, HEALTHY, 5.0)
            self.assertEqual(await cluster_up_metric(self, node), 1.0)

        # Messages cross nodes again within 15 s of the restart.
        deadline = time.monotonic() + 15.0
        probes = 0
        while b"<alice> probe " not in bob.received.data:
            if time.monotonic() > deadline:
                raise FailTest(
                    f"no probe from alice reached bob within 15 s:\n"
                    f"{bob.received.describe()}\n{a.log()}\n{b.log()}"
                )
            probes += 1
            alice.say(f"probe {probes}")
            await sleep(0.5)
        stop_traffic()
        ack = await say(bea, "after the restart", "b-1")
        on_a = await amy.wait_for(CROSS, type="usermsg", message="after the restart")
        self.assertEqual(on_a["id"], ack["id"], "the same id on both nodes")
        await alice.wait_for("<bea> after the restart\r\n", CROSS)

        everyone = ["alice (telnet)", "amy (web)", "bea (web)", "bob (telnet)"]
        self.assertEqual(await telnet_who(alice), everyone, "/who on A")
        self.assertEqual(await web_who(bea), everyone, "who on B")
        bob.say("/nick alice")
        await bob.wait_for("!!! alice is taken; pick another\r\n", CROSS)
        amy.send({"type": "nick", "name": "bob", "client_id": "n-1"})
        refused = await amy.wait_for(
            CROSS,
            type="error",
            code="nick-taken",
            message="bob is taken; pick another",
        )

        await sleep(1.0)
        for telnet in telnets:
            await telnet.sync()
            self.assertEqual(
                (
                    count_lines(telnet, f"*** {UNREACHABLE}"),
                    count_lines(telnet, f"*** {BACK}"),
                ),
                (1, 1),
                f"{telnet.name} is told each once",
            )
        for web in webs:
            await web.sync()
            self.assertEqual(
                (
                    count_frames(web, event="status", message=UNREACHABLE),
                    count_frames(web, event="status", message=BACK),
                ),
                (1, 1),
                f"{web.name} is told each once",
            )
        self.assertEqual(
            refused.get("client_id"), "n-1", "the error carries the client_id"
        )


class NodeDeathTests(TestCase):
    """
    A node killed with C{kill -9}.
    """

    timeout = 120

    @async_test
    async def test_killed_node_users_are_lost(self) -> None:
        """
        Node B is killed with SIGKILL while bob (telnet) and bea (web) are
        on it: within node_timeout + 5 s, alice (telnet) and amy (web) on
        node A each see each of them as "lost connection", once, and not as
        a quit; C{/who} on A lists A's users alone, and alice and amy can
        then take the nicks bob and bea.
        """
        _, (a, b) = await redis_and_nodes(self, "a", "b")
        alice = await telnet_user(self, a, "alice", [])
        amy = await web_user(self, a, "amy", [alice])
        bob = await telnet_user(self, b, "bob", [alice, amy])
        bea = await web_user(self, b, "bea", [alice, amy, bob])
        bob.say("still alive")
        await alice.wait_for("<bob> still alive\r\n", CROSS)
        await amy.wait_for(CROSS, type="usermsg", message="still alive")

        killed = time.monotonic()
        await b.kill()
        lost = [("bob", "telnet"), ("bea", "web")]

        def all_lost() -> bool:
            return all(
                count_lines(alice, f"*** {nick} ({door}) lost connection") > 0
                and count_frames(amy, event="lost", name=nick, door=door) > 0
                for nick, door in lost
            )

        await until(
            lambda: (
                f"A's users to see B's as lost:\n{alice.received.describe()}\n"
                f"{amy.describe()}\n{a.log()}"
            ),
            all_lost,
            NODE_TIMEOUT + 5.0,
        )
        elapsed = time.monotonic() - killed
        self.assertLessEqual(elapsed, NODE_TIMEOUT + 5.0)

        self.assertEqual(
            await telnet_who(alice), ["alice (telnet)", "amy (web)"], "/who on A"
        )
        await take_nick(alice, "bob")
        await take_nick(amy, "bea")
        await has_frame(
            amy, CROSS, type="system", event="nick", name="alice", new_name="bob"
        )
        await sleep(0.5)
        await amy.sync()
        for nick, door in lost:
            self.assertEqual(
                count_lines(alice, f"*** {nick} ({door}) lost connection"), 1, nick
            )
            self.assertEqual(count_frames(amy, event="lost", name=nick), 1, nick)
            self.assertEqual(count_lines(alice, f"*** {nick} ({door}) quit"), 0)
            self.assertEqual(count_frames(amy, event="quit", name=nick), 0)
        await bob.expect_closed()
        await bea.expect_closed()


class SecuredRedisTests(TestCase):
    """
    A Redis reached over TLS (a CA of the test's own) with a password, as
    across hosts.
    """

    timeout = 120

    @async_test
    async def test_tls_and_password(self) -> None:
        """
        Two nodes given C{tls:...:trustRoots=DIR} and the password chat
        through a TLS-only Redis that requires it; a third node with a
        wrong password stays out: its C{/healthz} answers 503 degraded and
        its log says Redis refused it, and its own users, told so, can still
        chat among themselves.
        """
        redis = RedisServer(self, tls=True, password="s3cret pass")
        await redis.start()
        a = await start_node(self, redis, "a", web=False)
        b = await start_node(self, redis, "b", web=False)
        alice = await telnet_user(self, a, "alice", [])
        bob = await telnet_user(self, b, "bob", [alice])
        alice.say("over tls")
        await bob.wait_for(re.compile(rb"<alice> over tls\r\n"), CROSS)

        wrong = RedisServer(self, tls=True, password="right")
        wrong.port, wrong.roots = redis.port, redis.roots
        wrong.password = "wrong"
        c = await start_server(self, node_ini(wrong, "c"), web=None, timeout=30.0)
        await wait_health(self, c, 503, DEGRADED, 30.0)
        await until(
            lambda: f"node c never said why Redis refused it:\n{c.log()}",
            lambda: "could not auth" in c.log(),
            15.0,
        )
        outage = (
            "*** the cluster is unreachable: until it is back you chat only "
            "with people on this server\r\n"
        )
        carol = await connect(self, c.port, "carol", welcome=False)
        dan = await connect(self, c.port, "dan", welcome=False)
        for client in (carol, dan):
            await client.wait_for(outage)
            await client.wait_for("*** you joined #lobby\r\n")
        carol.say("only here")
        await dan.wait_for(re.compile(rb"> only here\r\n"))
