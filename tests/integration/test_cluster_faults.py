"""
Integration tests: a real Redis that restarts empty or freezes under a
cluster of real C{twistd -n tchat} nodes during traffic, and cluster state
that must not pile up (issue 19, items 11 to 13).

Under traffic, every message a web user sends is either acknowledged (its
own copy comes back with its C{client_id}) or refused (an error with its
C{client_id}), never both and never neither; no user is shown a message
twice; and an (epoch, id) never names two messages.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from twisted.internet.task import LoopingCall
from twisted.trial.unittest import TestCase

from tests.integration.cluster import (
    DEGRADED,
    HEALTHY,
    NODE_TIMEOUT,
    WEB,
    RedisServer,
    get,
    sleep,
    until,
    wait_health,
)
from tests.integration.server import (
    TAP_INI,
    TchatServer,
    WebClient,
    async_test,
    connect,
    global_reactor,
    start_server,
)
from tests.integration.test_cluster import (
    BACK,
    UNREACHABLE,
    has_frame,
    redis_and_nodes,
    web_user,
)


class Traffic:
    """
    Web users each saying a numbered line every 50 ms, each with a
    C{client_id}, until stopped.
    """

    def __init__(self, *senders: WebClient) -> None:
        self.senders = senders
        self.sent: dict[str, list[str]] = {s.name: [] for s in senders}
        self._loop = LoopingCall(self._talk)
        self._loop.clock = global_reactor()

    def _talk(self) -> None:
        for sender in self.senders:
            if sender.closed is None:
                client_id = f"{sender.name}-{len(self.sent[sender.name])}"
                self.sent[sender.name].append(client_id)
                sender.send(
                    {"type": "message", "message": client_id, "client_id": client_id}
                )

    def start(self) -> None:
        self._loop.start(0.05)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def outcomes(self, sender: WebClient) -> dict[str, list[str]]:
        """
        For each line C{sender} sent, what came back about it: C{"ack"}
        for its own copy, or the code of an error.
        """
        found: dict[str, list[str]] = {c: [] for c in self.sent[sender.name]}
        for frame in sender.frames:
            client_id = frame.get("client_id")
            if client_id not in found:
                continue
            if frame.get("type") == "usermsg":
                found[client_id].append("ack")
            elif frame.get("type") == "error":
                found[client_id].append(str(frame.get("code")))
        return found

    async def settled(self, timeout: float) -> None:
        """Wait until every line sent has an outcome."""
        for sender in self.senders:
            await until(
                lambda sender=sender: (  # type: ignore[misc]
                    f"an outcome for every line of {sender.name}: "
                    f"{[c for c, o in self.outcomes(sender).items() if not o]}"
                ),
                lambda sender=sender: all(self.outcomes(sender).values()),  # type: ignore[misc]
                timeout,
            )


def messages(frames: Iterable[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The room messages among C{frames}, live or caught up: (epoch, id, text)."""
    return [
        (f["room"], f["epoch"], f["id"], f["name"], f["message"])
        for f in frames
        if f.get("type") == "usermsg"
    ]


async def get_json(testcase: TestCase, port: int, path: str) -> tuple[int, Any]:
    """GET C{path} from an admin door: the status and the decoded body."""
    response, body = await get(testcase, port, path)
    return response.code, json.loads(body)


class FaultTestCase(TestCase):
    timeout = 180

    async def under_traffic(
        self,
    ) -> tuple[RedisServer, list[TchatServer], tuple[WebClient, WebClient], Traffic]:
        """
        A Redis, two nodes, and a web user on each saying a line every
        50 ms for a second already.
        """
        redis, (a, b) = await redis_and_nodes(self, "a", "b")
        amy = await web_user(self, a, "amy", [])
        bea = await web_user(self, b, "bea", [amy])
        traffic = Traffic(amy, bea)
        self.addCleanup(traffic.stop)
        traffic.start()
        await sleep(1.0)
        return redis, [a, b], (amy, bea), traffic

    def check_delivery(self, traffic: Traffic, *watchers: WebClient) -> None:
        """
        Every line sent has exactly one outcome; nobody saw a line twice,
        and no (room, epoch, id) named two lines.
        """
        for sender in traffic.senders:
            outcomes = traffic.outcomes(sender)
            wrong = {c: o for c, o in outcomes.items() if len(o) != 1}
            self.assertEqual(wrong, {}, f"{sender.name}: lines without one outcome")
        for watcher in watchers:
            # As docs/protocol.md asks of clients: one message per (room,
            # epoch, id), however often it came (live, caught up, acked).
            named: dict[tuple[Any, ...], str] = {}
            for room, epoch, id, _, text in messages(watcher.frames):
                self.assertEqual(
                    named.setdefault((room, epoch, id), text),
                    text,
                    f"{watcher.name}: ({room}, {epoch}, {id}) names two lines",
                )
            texts = list(named.values())
            twice = {t for t in texts if texts.count(t) > 1}
            self.assertEqual(twice, set(), f"{watcher.name} was shown lines twice")


class RedisRestartTests(FaultTestCase):
    @async_test
    async def test_restart_empty_loses_nothing(self) -> None:
        """
        Redis killed during traffic from both nodes, and started again
        empty a second later, while lines keep coming: once every line has
        its outcome, each has exactly one, nobody saw a line twice, and no
        (epoch, id) names two lines.  Lines cross nodes again.
        """
        redis, (a, b), (amy, bea), traffic = await self.under_traffic()
        await redis.kill()
        await sleep(1.0)
        await redis.restart()
        for web in (amy, bea):
            await has_frame(web, 20.0, type="system", event="status", message=BACK)
        await sleep(2.0)
        traffic.stop()
        await traffic.settled(20.0)
        amy.send({"type": "message", "message": "after", "client_id": "last"})
        await bea.wait_for(15.0, type="usermsg", message="after")
        self.check_delivery(traffic, amy, bea)


class RedisFreezeTests(FaultTestCase):
    @async_test
    async def test_frozen_redis(self) -> None:
        """
        Redis stopped (SIGSTOP) for 10 s during traffic: within a few
        seconds each node takes it as unreachable (C{/healthz} 503, its
        users told) and serves its users alone; once Redis goes on, the
        nodes are back, and no line that was shown was called failed:
        each has exactly one outcome, nobody saw a line twice, and no
        (epoch, id) names two lines.
        """
        redis, (a, b), (amy, bea), traffic = await self.under_traffic()
        redis.freeze()
        frozen = time.monotonic()
        for node in (a, b):
            await wait_health(self, node, 503, DEGRADED, NODE_TIMEOUT + 2.0)
        noticed = time.monotonic() - frozen
        for web in (amy, bea):
            await has_frame(
                web, 5.0, type="system", event="status", message=UNREACHABLE
            )
        await sleep(10.0 - (time.monotonic() - frozen))
        redis.thaw()
        for node in (a, b):
            await wait_health(self, node, 200, HEALTHY, 20.0)
        for web in (amy, bea):
            await has_frame(web, 20.0, type="system", event="status", message=BACK)
        await sleep(1.0)
        traffic.stop()
        await traffic.settled(20.0)
        self.check_delivery(traffic, amy, bea)
        for sender in (amy, bea):
            refused = [c for c, o in traffic.outcomes(sender).items() if o != ["ack"]]
            self.assertEqual(refused, [], f"{sender.name}: lines called failed")
        self.assertLess(noticed, NODE_TIMEOUT + 2.0)


class RoomPileTests(TestCase):
    """
    Rooms, listings and resume codes do not pile up in Redis or in the
    nodes (issue 19, item 13).
    """

    timeout = 120

    @async_test
    async def test_rooms_and_codes_do_not_pile_up(self) -> None:
        """
        Twenty connections from one address each make ten rooms, set a
        topic in each and say a line in half of them, leave them all and
        go, twice over: the rooms where nothing was said are gone from
        Redis, the others are set to expire after C{room_ttl}; the node
        keeps none of them in memory; C{/rooms} answers one page; and that
        address keeps at most C{sessions_per_address} resume codes.
        """
        redis = RedisServer(self)
        await redis.start()
        limits = "exempt =\nsessions_per_address = 5\nper_address = 0\n"
        text = TAP_INI.replace("[limits]\n", "[limits]\n" + limits) + (
            f"\n[history]\nroom_ttl = 600\n\n[cluster]\nredis = {redis.url}\n"
            f"node = a\nnode_timeout = {NODE_TIMEOUT}\n"
        )
        node = await start_server(self, text, web=WEB)
        await wait_health(self, node, 200, HEALTHY, 15.0)
        for round in range(2):
            for n in range(20):
                client = await connect(self, node.port, f"c{n}", bind="127.0.0.2")
                for r in range(10):
                    room = f"#r{round}-{n}-{r}"
                    client.say(f"/join {room}")
                    client.say("/topic passing through")
                    if r % 2:
                        client.say(f"a line in {room}")
                    client.say(f"/part {room}")
                await client.sync()
                await client.close()
        keys = await redis.command("KEYS", "tchat:room:#r*")
        rooms = {k for k in keys if not k.endswith((":log", ":tags", ":tagq"))}
        self.assertEqual(len(rooms), 2 * 20 * 5, "only rooms where a line was said")
        for key in rooms:
            ttl = await redis.command("TTL", key)
            self.assertTrue(0 < ttl <= 600, f"{key} expires in {ttl}")
        sessions = await redis.command("KEYS", "tchat:session:*")
        self.assertLessEqual(len(sessions), 5)
        _, stats = await get_json(self, node.admin_port, "/stats")
        self.assertEqual(stats["rooms"], 1, "the node keeps only #lobby")
        asker = await connect(self, node.port, "asker")
        # #lobby went with its last member (nothing was said there); the
        # asker's arrival records it again, once Redis says it lacks it.
        deadline = time.monotonic() + 5
        while await redis.command("ZSCORE", "tchat:roomindex", "#lobby") is None:
            self.assertLess(time.monotonic(), deadline, "#lobby never recorded again")
            await sleep(0.05)
        start = asker.received.cursor
        asker.say("/rooms")
        await asker.wait_for(
            b"*** Rooms (page 1 of 3, 201 in all; /rooms 2 for the next):\r\n"
        )
        await asker.read_lines(100)
        self.assertLess(len(asker.received.data) - start, 6_000)
