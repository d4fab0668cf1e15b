# -*- test-case-name: tests.integration.test_bench_smoke -*-
"""
Cluster siege: two C{twistd -n tchat} nodes sharing one Redis, with web
users on both saying numbered lines at a steady rate, while Redis is
killed and started again empty, and later frozen; then every line is
accounted for.

    python bench/siege_cluster.py                   # 40 s, 10 users a node
    python bench/siege_cluster.py --seconds 12 --users 4 --freeze 4   # CI

It starts its own C{redis-server} (a free loopback port, no persistence)
and two nodes, each in a temporary directory with C{bench/tap.ini} (flood
limits off) plus C{[cluster]} naming that Redis, with C{node_timeout =
--node-timeout} (3 s).  Users (C{--users} a node, WebSocket, in
C{--rooms} rooms shared by both nodes) each send a line every
C{--interval} seconds with a C{client_id} and a text of their own.
During the traffic, as C{tests/integration/test_cluster_faults.py} does
with two users:

  1. at C{--kill-at} seconds: SIGKILL to Redis; one second later it is
     started again, empty, on the same port; once both nodes answer
     C{/healthz} 200 again, two seconds pass;
  2. SIGSTOP to Redis for C{--freeze} seconds (10), then SIGCONT; once the
     nodes are healthy again the traffic goes on for three seconds and for
     at least C{--seconds} in all.

Then it waits (at most C{--settle-timeout} s) until every line has an
outcome, and checks:

  - every line has exactly one outcome: its sender's own copy with its
    C{client_id} (acknowledged) or an error with it (refused);
  - nobody was shown a line twice, once copies are de-duplicated by
    (room, epoch, id) as C{docs/protocol.md} asks of clients;
  - no (room, epoch, id) names two lines, across all users;
  - no line refused with C{not-stored} was shown to anyone (the error
    says nobody was).

It prints a readable summary on stderr and one JSON line on stdout: the
checks, lines acknowledged and refused (by code), how long the nodes took
to notice and to recover, how much of the acknowledged traffic reached
every member of its room (lines said during an outage reach only their own
node, by design), and each node's RSS (before, peak, C{--after} seconds
after the traffic) and CPU.  Exit status 1 when a check fails.

Bounded: at most 300 s of traffic and 100 users a node, every wait has a
timeout, and Redis and the nodes are stopped by their PIDs (Redis thawed
first) in C{finally} blocks, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cluster import (
    LISTENING,
    NODE_NAMES,
    REDIS_TIMEOUT,
    SERVER_GRACE,
    free_port,
    healthz,
    node_argv,
    node_ini,
    wait_healthy,
)
from bench.harness import HOST, Server, pump, spawn_child, stop_process
from bench.siege import Usage, counters, mib, report_run
from bench.siege_clients import loopback
from bench.soak import WebConn

UNREACHABLE = "the cluster is unreachable"
BACK = "the cluster is back"
"""The starts of the status lines a node's users get at an outage and after."""


def progress(text: str) -> None:
    """A line for whoever watches (stderr)."""
    print(text, file=sys.stderr, flush=True)


# -- Redis -------------------------------------------------------------------


@dataclass
class Redis:
    """
    A C{redis-server} on C{port} without persistence: started again after
    L{kill}, it comes back empty on the same port.
    """

    binary: str
    port: int
    workdir: Path
    process: asyncio.subprocess.Process | None = None
    frozen: bool = False
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=50))
    _pumps: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        """Start it and wait until it answers PING."""
        argv = [self.binary, "--port", str(self.port), "--bind", HOST]
        argv += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        argv += ["--dir", str(self.workdir)]
        self.process = await spawn_child(argv, self.workdir, merge_stderr=True)
        self._pumps.append(
            asyncio.create_task(pump(self.process.stdout, self.tail.append))
        )
        deadline = time.monotonic() + REDIS_TIMEOUT
        while not await self.ping():
            if self.process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"redis-server did not answer PING on port {self.port}: "
                    + " | ".join(list(self.tail)[-5:])
                )
            await asyncio.sleep(0.05)

    async def ping(self) -> bool:
        """Whether it answers C{PING} within a second."""
        with contextlib.suppress(OSError, TimeoutError):
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(HOST, self.port), 1
            )
            try:
                writer.write(b"PING\r\n")
                return (await asyncio.wait_for(reader.readline(), 1)) == b"+PONG\r\n"
            finally:
                writer.close()
        return False

    async def kill(self) -> None:
        """SIGKILL, as a crash; wait (10 s at most) until it is gone."""
        assert self.process is not None
        self.process.kill()
        await asyncio.wait_for(self.process.wait(), 10)

    def freeze(self) -> None:
        """SIGSTOP: its sockets stay open, and nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        """SIGCONT, after L{freeze}."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGCONT)
        self.frozen = False

    async def stop(self) -> None:
        """Thaw it if need be, then stop it by its PID."""
        if self.process is None:
            return
        if self.frozen:
            self.thaw()
        await stop_process(self.process, 10)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._pumps), 5)


# -- users -------------------------------------------------------------------


@dataclass
class User:
    """
    A web user of one node: what it sent, and every frame it got that
    matters (room messages, errors, status lines).
    """

    label: str
    node: int
    room: str
    sent: dict[str, str] = field(default_factory=dict)
    frames: list[dict[str, Any]] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    name: str = ""
    conn: WebConn | None = None

    def on_json(self, message: dict[str, Any], now_ns: int) -> None:
        """One frame from the server."""
        kind = message.get("type")
        if kind in ("usermsg", "error"):
            self.frames.append(message)
        elif kind == "system":
            event, text = message.get("event"), str(message.get("message"))
            if event == "welcome":
                self.name = str(message.get("name"))
            elif event == "status" and text.startswith((UNREACHABLE, BACK)):
                self.statuses[text.split(":")[0]] += 1
            elif event == "join" and message.get("name") == self.name:
                self.frames.append(message)

    def outcomes(self) -> dict[str, list[str]]:
        """
        For each line sent, what came back about it: C{ack} for the
        sender's own copy, or the error's code.
        """
        found: dict[str, list[str]] = {c: [] for c in self.sent}
        for frame in self.frames:
            client_id = frame.get("client_id")
            if client_id in found:
                kind = frame.get("type")
                found[client_id].append(
                    "ack" if kind == "usermsg" else str(frame.get("code"))
                )
        return found

    def shown(self) -> dict[tuple[Any, Any, Any], str]:
        """
        The room messages shown, by (room, epoch, id), after
        de-duplication; C{(room, epoch, id, "?")} keys hold a second text
        for a key that already had one.
        """
        named: dict[tuple[Any, ...], str] = {}
        for f in self.frames:
            if f.get("type") == "usermsg":
                key = (f.get("room"), f.get("epoch"), f.get("id"))
                text = str(f.get("message"))
                if named.setdefault(key, text) != text:
                    named[(*key, text)] = text
        return named


# -- the run -----------------------------------------------------------------


@dataclass
class Timeline:
    """When the faults happened, and how long the nodes took, in seconds."""

    events: dict[str, float] = field(default_factory=dict)
    _started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        """Seconds since the traffic began."""
        return time.monotonic() - self._started

    def note(self, name: str) -> None:
        """Remember this instant as C{name}."""
        self.events[name] = round(self.elapsed(), 2)
        progress(f"  {self.events[name]:6.2f} s  {name}")


async def wait_status(nodes: list[Server], status: int, timeout: float) -> bool:
    """
    Poll every node's C{/healthz} until each answers C{status} (at most
    C{timeout} seconds).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answers = [await healthz(n.ports["admin"]) for n in nodes]
        if all(code == status for code, _ in answers):
            return True
        await asyncio.sleep(0.1)
    return False


class ClusterSiege:
    """One run: Redis, two nodes, users, faults, and the accounting."""

    def __init__(self, args: argparse.Namespace, redis: Redis, nodes: list[Server]):
        self.args = args
        self.redis = redis
        self.nodes = nodes
        self.users: list[User] = []
        self.rng = random.Random(args.seed)
        self.timeline = Timeline()
        self.talking = True
        self.failures: list[str] = []

    async def arrive(self) -> None:
        """Connect every user, each in its room, and wait until all are in."""
        for node_index, node in enumerate(self.nodes):
            for n in range(self.args.users):
                user = User(
                    f"{'ab'[node_index]}{n}", node_index, f"#c{n % self.args.rooms}"
                )
                bind = loopback(node_index * self.args.users + n, first=30)
                user.conn = await self.connect(user, node.ports["web"], bind)
                user.conn.send({"type": "join", "room": user.room})
                self.users.append(user)
        deadline = time.monotonic() + 20
        while not all(self.joined(u) for u in self.users):
            if time.monotonic() > deadline:
                late = [u.label for u in self.users if not self.joined(u)]
                raise RuntimeError(f"users not in their rooms after 20 s: {late}")
            await asyncio.sleep(0.05)

    async def connect(self, user: User, port: int, bind: str) -> WebConn:
        """A WebSocket for C{user} to C{port}, from C{bind}, open."""
        rng = random.Random(self.rng.getrandbits(64))
        conn = WebConn(port, rng, user.on_json)
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(
            loop.create_connection(lambda: conn, HOST, port, local_addr=(bind, 0)), 10
        )
        if not await asyncio.wait_for(asyncio.shield(conn.opened), 10):
            raise RuntimeError(f"user {user.label}: HTTP {conn.status}")
        return conn

    @staticmethod
    def joined(user: User) -> bool:
        """Whether the user's join of its room has been seen."""
        return any(
            f.get("event") == "join" and f.get("room") == user.room for f in user.frames
        )

    async def talk(self, user: User) -> None:
        """Say a numbered line every C{--interval} seconds while L{talking}."""
        conn = user.conn
        assert conn is not None
        await asyncio.sleep(self.rng.uniform(0, self.args.interval))
        seq = 0
        while self.talking and conn.open:
            client_id = f"{user.label}-{seq}"
            text = f"{client_id} said at {time.monotonic_ns()}"
            user.sent[client_id] = text
            conn.send(
                {
                    "type": "message",
                    "message": text,
                    "room": user.room,
                    "client_id": client_id,
                }
            )
            seq += 1
            await asyncio.sleep(self.args.interval)

    async def faults(self) -> None:
        """Kill and restart Redis, then freeze and thaw it, during the traffic."""
        args, note = self.args, self.timeline.note
        await asyncio.sleep(args.kill_at)
        await self.redis.kill()
        note("redis killed")
        await asyncio.sleep(1.0)
        await self.redis.start()
        note("redis started again, empty")
        if not await wait_status(self.nodes, 200, 30):
            self.failures.append("the nodes were not healthy 30 s after the restart")
        note("nodes healthy")
        await asyncio.sleep(2.0)
        self.redis.freeze()
        note("redis frozen")
        if await wait_status(self.nodes, 503, args.node_timeout + 5):
            note("nodes degraded")
        else:
            self.failures.append("the nodes never answered 503 while Redis was frozen")
        await asyncio.sleep(max(0.0, args.freeze - self.since("redis frozen")))
        self.redis.thaw()
        note("redis thawed")
        if not await wait_status(self.nodes, 200, 30):
            self.failures.append("the nodes were not healthy 30 s after the thaw")
        note("nodes healthy again")
        await asyncio.sleep(max(3.0, args.seconds - self.timeline.elapsed()))

    def since(self, name: str) -> float:
        """Seconds since event C{name}."""
        return self.timeline.elapsed() - self.timeline.events[name]

    async def run(self, usages: list[Usage]) -> dict[str, Any]:
        """The traffic and the faults, then the accounting."""
        args = self.args
        await self.arrive()
        for usage in usages:
            usage.mark("before")
        self.timeline = Timeline()
        talkers = [asyncio.create_task(self.talk(u)) for u in self.users]
        try:
            await asyncio.wait_for(self.faults(), args.seconds + 120)
        finally:
            self.talking = False
            await asyncio.gather(*talkers)
        self.timeline.note("traffic stopped")
        for usage in usages:
            usage.mark("end")
        deadline = time.monotonic() + args.settle_timeout
        while any(not o for u in self.users for o in u.outcomes().values()):
            if time.monotonic() > deadline:
                self.timeline.note("still lines without an outcome")
                break
            await asyncio.sleep(0.1)
        else:
            self.timeline.note("every line has an outcome")
        # Late doubles and second outcomes would come meanwhile.
        await asyncio.sleep(args.after)
        for usage in usages:
            usage.mark("after")
        metrics = [await counters(n.ports["admin"]) for n in self.nodes]
        return self.report(usages, metrics)

    def report(
        self, usages: list[Usage], metrics: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Check every line, and gather the figures."""
        outcomes: Counter[str] = Counter()
        without, several = [], []
        refused: set[str] = set()
        for user in self.users:
            for client_id, found in user.outcomes().items():
                outcomes.update(found)
                if not found:
                    without.append(client_id)
                elif len(found) > 1:
                    several.append(f"{client_id}: {found}")
                elif found[0] == "not-stored":
                    refused.add(user.sent[client_id])
        doubled, conflicts, refused_shown = [], [], set()
        every: dict[tuple[Any, ...], str] = {}
        for user in self.users:
            shown = user.shown()
            conflicts += [f"{user.label}: {k}" for k in shown if len(k) == 4]
            texts = Counter(shown.values())
            doubled += [f"{user.label}: {t}" for t, n in texts.items() if n > 1]
            refused_shown |= refused & set(shown.values())
            for key, text in shown.items():
                if len(key) == 3 and every.setdefault(key, text) != text:
                    conflicts.append(f"across users: {key}")
        checks = {
            "one_outcome_each": not without and not several,
            "none_doubled": not doubled,
            "ids_name_one_line": not conflicts,
            "refused_lines_unseen": not refused_shown,
            "faults_as_planned": not self.failures,
        }
        sent = sum(len(u.sent) for u in self.users)
        return {
            "scenario": "siege-cluster",
            "seconds": self.args.seconds,
            "nodes": len(self.nodes),
            "users_per_node": self.args.users,
            "rooms": self.args.rooms,
            "interval_s": self.args.interval,
            "node_timeout": self.args.node_timeout,
            "freeze_s": self.args.freeze,
            "timeline_s": self.timeline.events,
            "lines_sent": sent,
            "outcomes": dict(outcomes.most_common()),
            "acked": outcomes["ack"],
            "refused": sent - outcomes["ack"] - len(without),
            "without_outcome": without[:20],
            "several_outcomes": several[:20],
            "doubled": doubled[:20],
            "id_conflicts": conflicts[:20],
            "refused_but_shown": sorted(refused_shown)[:20],
            "reach": self.reach(),
            "users_disconnected": [
                u.label for u in self.users if u.conn is not None and not u.conn.open
            ],
            "status_lines": dict(sum((u.statuses for u in self.users), Counter())),
            "node_usage": [self.usage(u) for u in usages],
            "node_metrics": [
                {
                    k: v
                    for k, v in m.items()
                    if "cluster" in k or k == "tchat_dropped_total"
                }
                for m in metrics
            ],
            "failures": self.failures,
            "checks": checks,
        }

    def reach(self) -> dict[str, Any]:
        """
        How many of the deliveries owed for acknowledged lines were made:
        to users of the sender's node and of the other node.
        """
        seen = [set(u.shown().values()) for u in self.users]
        owed: Counter[str] = Counter()
        made: Counter[str] = Counter()
        for sender in self.users:
            acked = {c for c, o in sender.outcomes().items() if o == ["ack"]}
            for i, user in enumerate(self.users):
                if user is sender or user.room != sender.room:
                    continue
                where = "same_node" if user.node == sender.node else "other_node"
                for client_id in acked:
                    owed[where] += 1
                    made[where] += sender.sent[client_id] in seen[i]
        return {
            where: {
                "owed": owed[where],
                "made": made[where],
                "pct": round(100 * made[where] / owed[where], 2)
                if owed[where]
                else None,
            }
            for where in ("same_node", "other_node")
        }

    @staticmethod
    def usage(usage: Usage) -> dict[str, Any]:
        """One node's memory and CPU."""
        during = usage.between("before", "end")
        return {
            "rss_kib": {
                "before": usage.rss_at("before"),
                "peak": during["rss_peak_kib"],
                "after": usage.rss_at("after"),
            },
            "cpu_traffic": during,
        }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start Redis and the nodes, run the siege, stop everything by PID."""
    with tempfile.TemporaryDirectory(prefix="tchat-siege-cluster-") as workdir:
        root = Path(workdir)
        (root / "redis").mkdir()
        redis = Redis(args.redis_server, free_port(), root / "redis")
        nodes: list[Server] = []
        samplers: list[asyncio.Task[None]] = []
        try:
            await redis.start()
            for name in NODE_NAMES:
                node_dir = root / name
                node_dir.mkdir()
                text = (
                    node_ini(redis.port, name) + f"node_timeout = {args.node_timeout}\n"
                )
                (node_dir / "tap.ini").write_text(text)
                nodes.append(
                    await Server.spawn(
                        node_argv(None),
                        node_dir,
                        LISTENING,
                        frozenset({"telnet", "web", "admin"}),
                    )
                )
            for name, node in zip(NODE_NAMES, nodes, strict=True):
                await wait_healthy(node, name, clustered=True)
            usages = [Usage(n.pid, 0.5) for n in nodes]
            samplers = [asyncio.create_task(u.run()) for u in usages]
            siege = ClusterSiege(args, redis, nodes)
            watchdog = args.seconds + args.settle_timeout + args.after + 240
            report = await asyncio.wait_for(siege.run(usages), watchdog)
        finally:
            for sampler in samplers:
                sampler.cancel()
            exits = []
            for node in nodes:
                exits.append(await node.stop(SERVER_GRACE))
            await redis.stop()
        report["node_exits"] = exits
        report["node_errors"] = [n.errors for n in nodes]
        report["checks"]["nodes_clean"] = not any(n.errors for n in nodes)
        report["ok"] = all(report["checks"].values())
        if not report["ok"]:
            # What each node said about the cluster, to tell why.
            report["node_cluster_log"] = {
                name: [line for line in node.tail if "cluster:" in line][-40:]
                for name, node in zip(NODE_NAMES, nodes, strict=True)
            }
        return report


def summary(report: dict[str, Any]) -> str:
    """The report, for people."""
    reach = report["reach"]
    lines = [
        f"siege-cluster: {report['nodes']} nodes x {report['users_per_node']} web "
        f"users, a line each every {report['interval_s']} s; Redis killed and "
        f"restarted empty, then frozen {report['freeze_s']} s",
        f"  timeline (s): {report['timeline_s']}",
        f"  lines: {report['lines_sent']} sent, {report['acked']} acknowledged, "
        f"{report['refused']} refused; outcomes {report['outcomes']}",
        f"  reach of acknowledged lines: same node {reach['same_node']['pct']}%, "
        f"other node {reach['other_node']['pct']}%",
        f"  status lines: {report['status_lines']}; users disconnected: "
        f"{report['users_disconnected']}",
    ]
    for name, usage in zip(NODE_NAMES, report["node_usage"], strict=True):
        rss, cpu = usage["rss_kib"], usage["cpu_traffic"]
        lines.append(
            f"  {name}: RSS {mib(rss['before'])} before, {mib(rss['peak'])} peak, "
            f"{mib(rss['after'])} after; CPU {cpu['cpu_s']} s in {cpu['seconds']} s "
            f"= {cpu['cpu_pct_of_one_core']}% of one core"
        )
    lines.append(f"  checks: {report['checks']}")
    for key in (
        "without_outcome",
        "several_outcomes",
        "doubled",
        "id_conflicts",
        "refused_but_shown",
        "failures",
    ):
        if report[key]:
            lines.append(f"  {key.upper()}: {report[key]}")
    for name, said in report.get("node_cluster_log", {}).items():
        lines.append(f"  {name} said:")
        lines.extend(f"    {line}" for line in said)
    return "\n".join(lines)


def parse_args(argv: Iterable[str] | None = None) -> argparse.Namespace:
    """The command line, checked against its bounds."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=40.0, help="traffic, at least")
    parser.add_argument("--users", type=int, default=10, help="web users a node")
    parser.add_argument("--rooms", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.5, help="s between lines")
    parser.add_argument("--kill-at", type=float, default=6.0)
    parser.add_argument("--freeze", type=float, default=10.0)
    parser.add_argument("--node-timeout", type=int, default=3)
    parser.add_argument("--settle-timeout", type=float, default=30.0)
    parser.add_argument("--after", type=float, default=5.0, help="s before RSS 'after'")
    parser.add_argument("--seed", type=int, default=20261207)
    parser.add_argument("--redis-server", default=shutil.which("redis-server"))
    args = parser.parse_args(None if argv is None else list(argv))
    if args.redis_server is None:
        parser.error("redis-server not found (apt-get install -y redis-server)")
    if not (1 <= args.seconds <= 300 and 1 <= args.users <= 100):
        parser.error("bounded: --seconds 1..300, --users 1..100")
    if not (1 <= args.rooms <= 20 and 0.05 <= args.interval <= 10):
        parser.error("bounded: --rooms 1..20, --interval 0.05..10")
    if not (1 <= args.kill_at <= 120 and 1 <= args.freeze <= 60):
        parser.error("bounded: --kill-at 1..120, --freeze 1..60")
    if not (1 <= args.node_timeout <= 30 and 1 <= args.settle_timeout <= 120):
        parser.error("bounded: --node-timeout 1..30, --settle-timeout 1..120")
    if not 2 <= args.after <= 60:
        parser.error("bounded: --after 2..60")
    return args


def main(argv: Iterable[str] | None = None) -> int:
    """Run it; print the summary and the JSON line."""
    return report_run(run, summary, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
