"""
Does a second node deliver more than one?  A fan-out benchmark of tchat's
cluster mode (issue 9), driven by the C load generator C{bench/gen/loadgen}
on 127.0.0.1.

    python bench/cluster.py                     # embedded, 1 node, 2 nodes; 3 rounds
    python bench/cluster.py --nodes 2           # one mode
    python bench/cluster.py --embedded --runs 5
    python bench/cluster.py --rate 40           # open loop instead of the window
    python bench/cluster.py --layout mixed      # the cross-check described below

Each run starts its own C{redis-server} (free loopback port, no
persistence; the embedded mode needs none) and fresh tchat nodes, each
C{twistd -n --pidfile= tchat} in a temporary directory of its own with a
C{tap.ini} made of C{bench/tap.ini} (flood limits and size caps off) plus,
in cluster modes, a C{[cluster]} section naming that Redis (prefix
C{bench}, node C{node-a}/C{node-b}).  Every door listens on a free port of
127.0.0.1; the admin door is used only to wait for C{/healthz} to answer
200 (in cluster mode: connected to Redis) before the load starts.

Modes (same total clients and senders in each):

  - C{embedded}: one node without C{[cluster]} (the SQLite history of
    C{bench/tap.ini}), for reference;
  - C{1}: one cluster node (history and ids in Redis);
  - C{2}: two cluster nodes sharing the room through Redis.

The load: C{--clients} telnet clients (C{--proto tchat}) in one room
(C{#lobby}), the first C{--senders} of them sending, closed loop
(C{--window}, the default) or open loop (C{--rate}), for C{--seconds}.

Counting deliveries across two generators (C{--layout split}, the
default).  C{loadgen} identifies a message by (sender index, sequence) and
only counts markers of senders it runs itself: a generator with no senders
counts every marker it receives as C{foreign}; two generators that both
send would mistake each other's sender 0 for their own (same index) and
count garbage.  So:

  - generator A (C{ceil(C/2)} clients on node A's telnet door) runs all the
    senders; its own figures are exact: delivered, loss, duplicates,
    reordering and latency at its clients;
  - generator B (C{floor(C/2)} clients on node B's telnet door) sends
    nothing; it is started first, is ready before A connects, and is
    stopped (SIGTERM, by PID) C{--tail} seconds after A has finished; every
    marker it received is one delivery (the room is fresh, so no history
    replay can add markers), and every message A sent was owed to each of
    its clients: B's expected = A's C{sent} x B's clients.

  Total delivered = A's C{delivered} + B's C{foreign}; lost = expected -
  delivered over both (B's duplicates, which it cannot tell apart, would
  hide as much loss: C{b_excess} counts any surplus).  Deliveries per
  second = total delivered / A's delivery span (first send to last
  delivery).  Latency is A's clients' (in cluster modes every message goes
  through Redis and back, also to the sender's own node).  In modes
  C{embedded} and C{1} both generators target the one node, so the method
  is the same in every mode.

C{--layout mixed} is the exact cross-check: one generator, its line
clients on node A's telnet door and its WebSocket clients on node B's web
door (C{--ws-share 0.5}; senders alternate, so half of them are on each
node); it counts every delivery, duplicate and latency, across nodes too,
but the two doors cost the nodes differently (the same mix runs on the one
node of the other modes).

CPU pinning (this machine has two cores): with two CPUs or more and
C{taskset}, node A runs on CPU 0 and node B on CPU 1.  In modes
C{embedded} and C{1} the one node has CPU 0 to itself and the generators
and Redis share CPU 1; with two nodes there is no core left, so the
generators and Redis are not pinned and take their share from both nodes.
That favours the single node (it never competes with its load), so a gain
measured for two nodes is a conservative one.  C{--no-pin} pins nothing.
Each run reports the CPU seconds of every process (nodes, Redis,
generators) over the load.

Output: one JSON line per run on stdout as it ends, then one summary JSON
line per mode (medians, with the min and max of each figure over the runs)
and a Markdown table with the ratios of 2 nodes to 1 node and to embedded.
Progress goes to stderr.  Bounded: every wait has a timeout; every process
(Redis, nodes, generators) is stopped by the PID this script started, in
C{finally} blocks, also on Ctrl-C or SIGTERM.  The default (3 rounds of the
three modes, 8 s of load each) takes about 2 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import math
import os
import re
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    HOST,
    REPO,
    Generator,
    Server,
    can_pin,
    cpu_seconds,
    machine,
    pinned,
    pump,
    raise_fd_limit,
    source_digest,
    spawn_child,
    stop_process,
)
from bench.matrix import NODE_DIR, TAP_INI, TWISTD, build_loadgen, guarded

BENCH = REPO / "bench"

LISTENING = re.compile(
    rf"(?P<door>telnet|web|admin) door listening on {re.escape(HOST)}:(?P<port>\d+)"
)

MODES = ("embedded", "1", "2")
"""The modes, in the order each round runs them."""

LABELS = {"embedded": "embedded (no [cluster])", "1": "1 node", "2": "2 nodes"}

NODE_NAMES = ("node-a", "node-b")

SERVER_GRACE = 15.0
"""SIGTERM to SIGKILL for a node (tchat gives connected users 5 s)."""

START_TIMEOUT = 30.0
"""Bound on a node's start: listening, then C{/healthz} answering 200."""

REDIS_TIMEOUT = 10.0
"""Bound on Redis's start (until it answers PING)."""

GEN_SETTLE = 1.0
"""Generator A's C{--settle}: its joins are done before it sends."""

GEN_B_READY = 30.0
"""Bound on generator B's connect phase."""


# -- small helpers -------------------------------------------------------------


def progress(text: str) -> None:
    """A line for whoever watches (stderr)."""
    print(text, file=sys.stderr, flush=True)


def emit(record: dict[str, Any]) -> None:
    """One JSON line on stdout, now."""
    print(json.dumps(record), flush=True)


def free_port() -> int:
    """
    A TCP port of 127.0.0.1 free right now (for Redis, which cannot report
    the port it bound itself; the race with other programs is accepted).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def median(values: Sequence[float]) -> float | None:
    """The median of C{values}, or C{None} when there are none."""
    return statistics.median(values) if values else None


def numbers(runs: Sequence[dict[str, Any]], key: str) -> list[float]:
    """The numeric values of C{key} over C{runs}."""
    return [
        float(r[key])
        for r in runs
        if isinstance(r.get(key), int | float) and not isinstance(r.get(key), bool)
    ]


# -- processes -----------------------------------------------------------------


@dataclass
class Redis:
    """A C{redis-server} this script started, and the tail of its log."""

    process: asyncio.subprocess.Process
    port: int
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=50))
    _pump: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, cpu: int | None, workdir: Path) -> Redis:
        """
        Start Redis on a free loopback port (no persistence, foreground)
        and wait until it answers PING.  The caller must L{stop} it (also
        when this raises: the process is in the returned object only on
        success, so on failure this stops it itself).
        """
        port = free_port()
        argv = [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(workdir),
        ]
        process = await spawn_child(pinned(argv, cpu), workdir, merge_stderr=True)
        redis = cls(process, port)
        redis._pump = asyncio.create_task(pump(process.stdout, redis.tail.append))
        try:
            await redis._wait_ready()
        except BaseException:
            await redis.stop()
            raise
        return redis

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + REDIS_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                break
            with contextlib.suppress(OSError, TimeoutError):
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(HOST, self.port), 2
                )
                try:
                    writer.write(b"PING\r\n")
                    answer = await asyncio.wait_for(reader.readline(), 2)
                finally:
                    writer.close()
                if answer.startswith(b"+PONG"):
                    return
            await asyncio.sleep(0.1)
        raise RuntimeError(
            f"redis-server did not answer PING on port {self.port}: "
            + " | ".join(list(self.tail)[-5:])
        )

    async def command(self, line: bytes) -> bytes:
        """One inline command's first answer line (a few bytes, bounded)."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(HOST, self.port), 2
        )
        try:
            writer.write(line + b"\r\n")
            return await asyncio.wait_for(reader.readline(), 2)
        finally:
            writer.close()

    async def dbsize(self) -> int | None:
        """How many keys Redis holds (None if it does not say)."""
        with contextlib.suppress(OSError, TimeoutError, ValueError):
            answer = await self.command(b"DBSIZE")
            if answer.startswith(b":"):
                return int(answer[1:])
        return None

    async def stop(self) -> int | None:
        """Stop Redis by its PID; return its exit status."""
        status = await stop_process(self.process, 10)
        if self._pump is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pump, 5)
        return status


def node_ini(redis_port: int | None, name: str) -> str:
    """
    A node's C{tap.ini}: C{bench/tap.ini}, plus C{[cluster]} when
    C{redis_port} is given.
    """
    text = TAP_INI.read_text()
    if redis_port is not None:
        if re.search(r"^\s*\[cluster\]", text, re.MULTILINE):
            raise RuntimeError("bench/tap.ini already has a [cluster] section")
        text += (
            "\n[cluster]\n"
            f"redis = redis://{HOST}:{redis_port}/0\n"
            f"node = {name}\n"
            "prefix = bench\n"
        )
    return text


def node_argv(cpu: int | None, twistd: Path = TWISTD) -> list[str]:
    """
    A node's command line: every door on a free port of 127.0.0.1.

    @param twistd: The installation of tchat to run.
    """
    argv = [
        str(twistd),
        "-n",
        "--pidfile=",
        "tchat",
        "--config",
        "tap.ini",
        "--telnet",
        f"tcp:0:interface={HOST}",
        "--web",
        f"tcp:0:interface={HOST}",
        "--admin",
        f"tcp:0:interface={HOST}",
    ]
    return pinned(argv, cpu)


async def healthz(port: int) -> tuple[int | None, dict[str, Any]]:
    """
    The HTTP status of C{/healthz} on the admin door (C{None} if it did not
    answer) and its JSON body (empty if none).
    """
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 2)
    except (OSError, TimeoutError):
        return None, {}
    try:
        writer.write(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(65536), 2)
    except (OSError, TimeoutError):
        return None, {}
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    parts = head.split(b"\r\n", 1)[0].split()
    status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
    try:
        document = json.loads(body)
    except ValueError:
        document = {}
    return status, document if isinstance(document, dict) else {}


async def wait_healthy(node: Server, name: str, clustered: bool) -> None:
    """
    Wait until the node listens on every door and its C{/healthz} says
    200, with C{"cluster": "ok"} among its checks in cluster mode (so that
    a node that ignored C{[cluster]} cannot pass for a cluster node).

    @raise RuntimeError: It exited, or was not healthy in time.
    """
    deadline = time.monotonic() + START_TIMEOUT
    await node.wait_listening(START_TIMEOUT)
    last: tuple[int | None, dict[str, Any]] = (None, {})
    while time.monotonic() < deadline and node.alive:
        last = await healthz(node.ports["admin"])
        status, document = last
        checks = document.get("checks")
        cluster = checks.get("cluster") if isinstance(checks, dict) else None
        if status == 200 and not clustered and cluster is None:
            return
        # A cluster node: connected, as /healthz says (or, from a /healthz
        # that has no cluster check, as the log says).
        logged = any("connected to Redis" in line for line in node.tail)
        if (
            status == 200
            and clustered
            and (cluster == "ok" or (cluster is None and logged))
        ):
            return
        await asyncio.sleep(0.2)
    if not node.alive:
        raise RuntimeError(f"{name} exited ({node.process.returncode})")
    raise RuntimeError(
        f"{name}: /healthz answered {last[0]} {json.dumps(last[1])} for "
        f"{START_TIMEOUT:g} s (cluster mode {'on' if clustered else 'off'} wanted)"
    )


async def wait_gen_ready(gen: Generator, timeout: float) -> None:
    """
    Wait until a generator run with C{-v} says its connect phase is over
    (C{N ready, M failed}); C{--idle} alone prints a C{ready} event.

    @raise RuntimeError: It exited first, or took too long.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(" ready, " in line for line in gen.tail):
            return
        if gen.process.returncode is not None:
            raise RuntimeError(
                f"generator B exited ({gen.process.returncode}): "
                + " | ".join(list(gen.tail)[-5:])
            )
        await asyncio.sleep(0.05)
    raise RuntimeError(f"generator B not connected after {timeout:g} s")


# -- one run -------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """
    The load of every run.

    @ivar layout: C{split} (two generators, telnet) or C{mixed} (one
        generator: telnet on node A, WebSocket on node B).
    @ivar tail: Split layout: seconds generator B keeps reading after A
        has finished.
    """

    clients: int
    senders: int
    window: int | None
    rate: float | None
    seconds: float
    drain: float
    size: int
    layout: str
    tail: float

    def mode_flags(self) -> list[str]:
        """Generator A's sending flags."""
        flags = ["--senders", str(self.senders)]
        if self.rate is not None:
            flags += ["--rate", f"{self.rate:g}"]
        else:
            flags += ["--window", str(self.window)]
        return [
            *flags,
            "--seconds",
            f"{self.seconds:g}",
            "--drain",
            f"{self.drain:g}",
            "--size",
            str(self.size),
            "--settle",
            f"{GEN_SETTLE:g}",
            "--max-seconds",
            f"{self.gen_max_seconds:g}",
        ]

    @property
    def gen_max_seconds(self) -> float:
        """Generator A's C{--max-seconds}."""
        return round(self.seconds + self.drain + GEN_SETTLE + 60, 1)

    @property
    def receiver_seconds(self) -> float:
        """
        Generator B's listening period: long enough to outlast A (it is
        stopped once A is done plus C{tail}).
        """
        return round(self.gen_max_seconds + GEN_B_READY + self.tail + 30, 1)

    @property
    def run_timeout(self) -> float:
        """The bound on one run, start and stop of everything included."""
        return self.receiver_seconds + START_TIMEOUT + REDIS_TIMEOUT + 2 * SERVER_GRACE


@dataclass
class Setup:
    """What every run shares."""

    loadgen: Path
    pin: bool
    load: Load
    twistd: Path = TWISTD

    def node_cpu(self, index: int) -> int | None:
        """Node A on CPU 0, node B on CPU 1 (when pinning)."""
        return index if self.pin else None

    def helper_cpu(self, nodes: int) -> int | None:
        """
        Redis's and the generators' CPU: the one the single node leaves
        free; none with two nodes (no core is free).
        """
        return 1 if self.pin and nodes == 1 else None


def split_result(
    record: dict[str, Any], a: dict[str, Any], b: dict[str, Any] | None
) -> None:
    """
    The run's figures from generator A's result and B's (split layout) or
    A's alone (mixed layout): see the module docstring.
    """
    sent = int(a.get("sent") or 0)
    a_delivered = int(a.get("delivered") or 0)
    a_expected = int(a.get("expected") or 0)
    b_clients = int(b.get("connected") or 0) if b is not None else 0
    b_received = int(b.get("foreign") or 0) if b is not None else 0
    b_expected = sent * b_clients
    delivered = a_delivered + b_received
    expected = a_expected + b_expected
    a_dps = a.get("deliveries_per_s") or 0.0
    span = a_delivered / a_dps if a_dps else None
    record.update(
        sent=sent,
        expected=expected,
        delivered=delivered,
        lost=max(0, expected - delivered),
        a_clients=a.get("connected"),
        a_delivered=a_delivered,
        a_expected=a_expected,
        a_lost=a_expected - a_delivered,
        b_clients=b_clients if b is not None else None,
        b_received=b_received if b is not None else None,
        b_expected=b_expected if b is not None else None,
        b_lost=max(0, b_expected - b_received) if b is not None else None,
        b_excess=max(0, b_received - b_expected) if b is not None else None,
        duplicates=a.get("duplicates"),
        reordered=a.get("reordered"),
        delivery_span_s=None if span is None else round(span, 3),
        deliveries_per_s=None if not span else round(delivered / span, 1),
        latency_ms=a.get("latency_ms"),
        server_closes=int(a.get("server_closes") or 0)
        + (int(b.get("server_closes") or 0) if b is not None else 0),
        gen_errors=int(a.get("errors") or 0)
        + (int(b.get("errors") or 0) if b is not None else 0),
        late_sends=a.get("late_sends"),
        skipped_sends=a.get("skipped_sends"),
        send_seconds=a.get("seconds"),
    )


async def drive(
    setup: Setup,
    nodes: list[Server],
    cpus: dict[str, int],
    record: dict[str, Any],
) -> None:
    """
    Run the generator(s) against the listening nodes and fill in
    C{record}; every generator is stopped by its PID before this returns.
    """
    load = setup.load
    a_node, b_node = nodes[0], nodes[-1]
    helper = setup.helper_cpu(len(nodes))

    def argv(flags: list[str]) -> list[str]:
        return pinned([str(setup.loadgen), *flags], helper)

    common = ["--proto", "tchat", "--connect-timeout", f"{GEN_B_READY:g}"]
    before: dict[str, float | None] = {}
    gens: list[Generator] = []
    try:
        b_gen: Generator | None = None
        if load.layout == "split":
            a_clients = math.ceil(load.clients / 2)
            b_flags = [
                "--telnet",
                f"{HOST}:{b_node.ports['telnet']}",
                *common,
                "--clients",
                str(load.clients - a_clients),
                "--senders",
                "0",
                "--rate",
                "1",
                "--settle",
                "0",
                "--drain",
                "0",
                "--seconds",
                f"{load.receiver_seconds:g}",
                "--max-seconds",
                f"{load.receiver_seconds + 30:g}",
                "-v",
            ]
            a_targets = ["--telnet", f"{HOST}:{a_node.ports['telnet']}"]
            record["gen_b_argv"] = b_flags
            b_gen = await Generator.start(argv(b_flags), BENCH)
            gens.append(b_gen)
            cpus["gen_b"] = b_gen.process.pid
            await wait_gen_ready(b_gen, GEN_B_READY + 5)
        else:
            a_clients = load.clients
            a_targets = [
                "--telnet",
                f"{HOST}:{a_node.ports['telnet']}",
                "--ws",
                f"{HOST}:{b_node.ports['web']}",
                "--ws-path",
                "/ws",
                "--ws-share",
                "0.5",
            ]
        a_flags = [*a_targets, *common, "--clients", str(a_clients), *load.mode_flags()]
        record["gen_a_argv"] = a_flags
        for name, pid in cpus.items():
            before[name] = cpu_seconds(pid)
        t0 = time.monotonic()
        a_gen = await Generator.start(argv(a_flags), BENCH)
        gens.append(a_gen)
        cpus["gen_a"] = a_gen.process.pid
        before["gen_a"] = 0.0
        if not await a_gen.exited(load.gen_max_seconds + 30):
            record["notes"].append("generator A overran its --max-seconds")
        record["gen_a_exit"] = await a_gen.stop(10)
        if b_gen is not None:
            await asyncio.sleep(load.tail)
            # Read B's CPU before SIGTERM: its reading period is over.
            after_b = cpu_seconds(b_gen.process.pid)
            record["gen_b_exit"] = await b_gen.stop(10)
        else:
            after_b = None
        record["load_wall_s"] = round(time.monotonic() - t0, 2)
        usage: dict[str, float] = {}
        for name, pid in cpus.items():
            now = after_b if name == "gen_b" else cpu_seconds(pid)
            start = before.get(name)
            if name == "gen_a":
                now = (a_gen.result or {}).get("gen_cpu_s")
            if isinstance(now, float) and isinstance(start, float):
                usage[name] = round(now - start, 3)
        record["cpu_s"] = usage
    finally:
        for gen in reversed(gens):
            await gen.stop(10)
    if a_gen.result is None:
        raise RuntimeError(
            f"generator A exited ({record.get('gen_a_exit')}) without a result: "
            + " | ".join(list(a_gen.tail)[-5:])
        )
    if record.get("gen_a_exit") != 0:
        why = a_gen.result.get("error") or "no reason given"
        raise RuntimeError(f"generator A exited with {record['gen_a_exit']}: {why}")
    b_result = None
    if b_gen is not None:
        b_result = b_gen.result
        if b_result is None:
            raise RuntimeError(
                "generator B left no result: " + " | ".join(list(b_gen.tail)[-5:])
            )
    split_result(record, a_gen.result, b_result)
    node_cpu = sum(v for k, v in usage.items() if k.startswith("node"))
    if record["delivered"]:
        record["nodes_us_per_delivery"] = round(node_cpu * 1e6 / record["delivered"], 3)


async def one_run(setup: Setup, mode: str, index: int) -> dict[str, Any]:
    """
    One run of one mode: fresh Redis and nodes, the load, everything
    stopped.  Never leaves a process behind.
    """
    count = 2 if mode == "2" else 1
    clustered = mode != "embedded"
    record: dict[str, Any] = {
        "type": "run",
        "mode": mode,
        "label": LABELS[mode],
        "layout": setup.load.layout,
        "run": index,
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "pinned": setup.pin,
        "tchat_source": source_digest(),
        # Other work on the machine shows here (the figures are noisier).
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "notes": [],
    }
    started = time.monotonic()
    redis: Redis | None = None
    nodes: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="tchat-cluster-bench-") as tmp:
        root = Path(tmp)
        try:
            if clustered:
                redis_dir = root / "redis"
                redis_dir.mkdir()
                redis = await Redis.start(setup.helper_cpu(count), redis_dir)
            cpus: dict[str, int] = {}
            for i in range(count):
                name = NODE_NAMES[i]
                workdir = root / name
                workdir.mkdir()
                (workdir / "tap.ini").write_text(
                    node_ini(redis.port if redis is not None else None, name)
                )
                node = await Server.spawn(
                    node_argv(setup.node_cpu(i), setup.twistd),
                    workdir,
                    LISTENING,
                    frozenset({"telnet", "web", "admin"}),
                )
                nodes.append(node)
                cpus[name] = node.pid
            for i, node in enumerate(nodes):
                await wait_healthy(node, NODE_NAMES[i], clustered)
            if redis is not None:
                cpus["redis"] = redis.process.pid
            try:
                await asyncio.wait_for(
                    drive(setup, nodes, cpus, record), setup.load.run_timeout
                )
            except TimeoutError:
                raise RuntimeError(
                    f"the run overran {setup.load.run_timeout:g} s"
                ) from None
            if redis is not None:
                # The nodes really were a cluster: they left keys in Redis.
                record["redis_keys"] = await redis.dbsize()
                if not record["redis_keys"]:
                    raise RuntimeError(
                        f"Redis holds {record['redis_keys']} keys after the run: "
                        "the nodes did not use it"
                    )
            dead = [NODE_NAMES[i] for i, n in enumerate(nodes) if not n.alive]
            if dead:
                raise RuntimeError(f"died during the run: {', '.join(dead)}")
            record["ok"] = True
        except Exception as e:
            record["ok"] = False
            record["failure"] = (
                str(e) if isinstance(e, RuntimeError | OSError) else repr(e)
            )
        finally:
            if "ok" not in record:
                record.update(ok=False, failure="interrupted")
            try:
                stops = await asyncio.gather(
                    *(n.stop(SERVER_GRACE) for n in nodes), return_exceptions=True
                )
                record["node_exits"] = [
                    s if isinstance(s, int | None) else repr(s) for s in stops
                ]
                record["node_errors"] = [n.errors for n in nodes]
                if not record["ok"] or any(n.errors for n in nodes):
                    record["node_tails"] = [list(n.tail)[-30:] for n in nodes]
            finally:
                if redis is not None:
                    record["redis_exit"] = await redis.stop()
                    if not record["ok"]:
                        record["redis_tail"] = list(redis.tail)[-10:]
    if record["ok"] and any(s != 0 for s in record.get("node_exits", [])):
        record["notes"].append(f"node exit statuses {record['node_exits']}")
    record["run_wall_s"] = round(time.monotonic() - started, 1)
    return record


# -- summary -------------------------------------------------------------------


def latency(run: dict[str, Any], key: str) -> float | None:
    """One latency percentile of a run (ms), if it has any."""
    lat = run.get("latency_ms")
    value = lat.get(key) if isinstance(lat, dict) else None
    return float(value) if isinstance(value, int | float) else None


def summarise(mode: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A mode's medians over its good runs, with min and max."""
    good = [r for r in runs if r.get("ok")]
    summary: dict[str, Any] = {
        "type": "summary",
        "mode": mode,
        "label": LABELS[mode],
        "runs": len(runs),
        "ok": len(good),
    }
    series: dict[str, list[float]] = {
        "deliveries_per_s": numbers(good, "deliveries_per_s"),
        "p50_ms": [v for r in good if (v := latency(r, "p50")) is not None],
        "p99_ms": [v for r in good if (v := latency(r, "p99")) is not None],
        "nodes_us_per_delivery": numbers(good, "nodes_us_per_delivery"),
    }
    for name in ("redis", "gen_a", "gen_b"):
        series[f"{name}_cpu_s"] = [
            float(r["cpu_s"][name]) for r in good if name in r.get("cpu_s", {})
        ]
    for key, values in series.items():
        summary[key] = median(values)
        summary[f"{key}_min"] = min(values) if values else None
        summary[f"{key}_max"] = max(values) if values else None
    for key in ("lost", "duplicates", "reordered", "server_closes", "gen_errors"):
        summary[key] = int(sum(numbers(good, key)))
    summary["b_excess"] = int(sum(numbers(good, "b_excess")))
    summary["node_errors"] = sum(sum(r.get("node_errors", [])) for r in runs)
    summary["failures"] = [r.get("failure") for r in runs if not r.get("ok")]
    return summary


def cell(value: float | None, digits: int = 0) -> str:
    """A figure for a table cell."""
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def spread(summary: dict[str, Any], key: str, digits: int = 0) -> str:
    """C{median (min-max)} of one figure."""
    low, high = summary.get(f"{key}_min"), summary.get(f"{key}_max")
    text = cell(summary.get(key), digits)
    if low is not None and high is not None and high != low:
        text += f" ({cell(low, digits)}-{cell(high, digits)})"
    return text


def markdown(info: dict[str, Any], load: Load, summaries: list[dict[str, Any]]) -> str:
    """The Markdown report: the load, a table of medians, the ratios."""
    how = f"window {load.window}" if load.rate is None else f"{load.rate:g} msg/s each"
    doors = (
        "telnet; two generators, one per node, all senders in node A's"
        if load.layout == "split"
        else "half telnet on node A, half WebSocket on node B; one generator"
    )
    lines = [
        "# tchat cluster fan-out",
        "",
        f"- load: {load.clients} clients in one room ({doors}), {load.senders} "
        f"senders ({how}), {load.seconds:g} s, {load.size}-byte messages, "
        f"layout {load.layout}",
        f"- machine: {info.get('cpu')}, {info.get('nproc')} CPUs, pinned "
        f"{info.get('pinned')}; tchat {info.get('commit')} "
        f"(source {info.get('tchat_source')}, dirty {info.get('tchat_dirty')})",
        "",
        "| mode | ok/runs | deliveries/s median (min-max) | p50 ms | p99 ms "
        "| lost | dup | reord | nodes µs/delivery | redis CPU s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in summaries:
        lines.append(
            f"| {s['label']} | {s['ok']}/{s['runs']} "
            f"| {spread(s, 'deliveries_per_s')} | {spread(s, 'p50_ms', 2)} "
            f"| {spread(s, 'p99_ms', 2)} | {s['lost']} | {s['duplicates']} "
            f"| {s['reordered']} | {cell(s['nodes_us_per_delivery'], 2)} "
            f"| {cell(s['redis_cpu_s'], 2)} |"
        )
    by_mode = {s["mode"]: s.get("deliveries_per_s") for s in summaries}
    two = by_mode.get("2")
    for other in ("1", "embedded"):
        base = by_mode.get(other)
        if two and base:
            lines.append("")
            lines.append(
                f"2 nodes / {LABELS[other]}: {two / base:.2f}x deliveries per second"
            )
    return "\n".join(lines) + "\n"


# -- main ----------------------------------------------------------------------


async def run_all(
    setup: Setup, modes: Sequence[str], runs: int, out: list[dict[str, Any]]
) -> None:
    """Every round: each mode once per round, alternating."""
    for index in range(1, runs + 1):
        for mode in modes:
            progress(f"[{index}/{runs}] {LABELS[mode]} ...")
            record = await one_run(setup, mode, index)
            emit(record)
            out.append(record)
            if record["ok"]:
                progress(
                    f"[{index}/{runs}] {LABELS[mode]}: "
                    f"{record.get('deliveries_per_s')} deliveries/s, p50 "
                    f"{latency(record, 'p50')} p99 {latency(record, 'p99')} ms, "
                    f"lost {record.get('lost')}, cpu {record.get('cpu_s')}"
                )
            else:
                progress(
                    f"[{index}/{runs}] {LABELS[mode]}: FAILED: {record['failure']}"
                )
                for i, tail in enumerate(record.get("node_tails", [])):
                    for line in tail[-15:]:
                        progress(f"    {NODE_NAMES[i]}| {line}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, checked."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--nodes", type=int, choices=(1, 2), help="one cluster mode")
    which.add_argument(
        "--embedded", action="store_true", help="only the node without [cluster]"
    )
    parser.add_argument("--runs", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--twistd",
        type=Path,
        default=TWISTD,
        help="the twistd of the tchat to run (default: this Python's); "
        "another installation's, to compare two versions",
    )
    parser.add_argument("--clients", type=int, default=200, help="default 200")
    parser.add_argument("--senders", type=int, default=10, help="default 10")
    loop = parser.add_mutually_exclusive_group()
    loop.add_argument(
        "--window", type=int, help="closed loop: W per sender (default 16)"
    )
    loop.add_argument("--rate", type=float, help="open loop: msg/s per sender")
    parser.add_argument("--seconds", type=float, default=8.0, help="default 8")
    parser.add_argument(
        "--drain", type=float, default=3.0, help="generator A's --drain (default 3)"
    )
    parser.add_argument(
        "--tail",
        type=float,
        default=2.0,
        help="split: seconds B reads after A is done (default 2)",
    )
    parser.add_argument("--size", type=int, default=48, help="message bytes")
    parser.add_argument(
        "--layout", choices=("split", "mixed"), default="split", help="default split"
    )
    parser.add_argument("--no-pin", action="store_true", help="pin nothing")
    parser.add_argument(
        "--loadgen", type=Path, help="this generator instead of building bench/gen"
    )
    parser.add_argument("--json-out", type=Path, help="write runs and summaries")
    parser.add_argument("--markdown-out", type=Path, help="write the Markdown")
    args = parser.parse_args(argv)
    if args.rate is None and args.window is None:
        args.window = 16
    if not 1 <= args.runs <= 20:
        parser.error("--runs: 1..20")
    if not 2 <= args.clients <= 10_000:
        parser.error("--clients: 2..10000")
    if not 1 <= args.senders <= math.ceil(args.clients / 2):
        parser.error("--senders: 1..clients/2 (generator A holds them all)")
    if not 0.5 <= args.seconds <= 120:
        parser.error("--seconds: 0.5..120")
    if not 0 <= args.drain <= 30 or not 0 <= args.tail <= 30:
        parser.error("--drain, --tail: 0..30")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the modes; print the runs, the summaries and the table."""
    args = parse_args(argv)
    if args.embedded:
        modes: tuple[str, ...] = ("embedded",)
    elif args.nodes is not None:
        modes = (str(args.nodes),)
    else:
        modes = MODES
    if any(m != "embedded" for m in modes) and shutil.which("redis-server") is None:
        raise SystemExit("redis-server not found (apt-get install -y redis-server)")
    raise_fd_limit()
    loadgen = args.loadgen.resolve() if args.loadgen else build_loadgen()
    load = Load(
        clients=args.clients,
        senders=args.senders,
        window=args.window,
        rate=args.rate,
        seconds=args.seconds,
        drain=args.drain,
        size=args.size,
        layout=args.layout,
        tail=args.tail,
    )
    setup = Setup(
        loadgen, pin=can_pin() and not args.no_pin, load=load, twistd=args.twistd
    )
    info = machine(setup.pin, NODE_DIR)
    progress("machine: " + json.dumps(info))
    out: list[dict[str, Any]] = []
    interrupted = False
    try:
        asyncio.run(guarded(run_all(setup, modes, args.runs, out)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        interrupted = True
        progress("interrupted: every process started was stopped")
    summaries = [summarise(m, [r for r in out if r["mode"] == m]) for m in modes]
    for s in summaries:
        emit(s)
    report = markdown(info, load, summaries)
    print(report, flush=True)
    if args.json_out is not None:
        document: dict[str, Any] = {"machine": info, "load": vars(args)}
        document.update(runs=out, summaries=summaries)
        args.json_out.write_text(json.dumps(document, indent=1, default=str) + "\n")
    if args.markdown_out is not None:
        args.markdown_out.write_text(report)
    if interrupted:
        return 130
    return 0 if out and all(r["ok"] for r in out) else 1


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
