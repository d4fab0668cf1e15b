"""
The benchmark matrix: tchat's doors against bare peers of the same job,
driven by the C load generator C{bench/gen/loadgen}, on 127.0.0.1.

    python bench/matrix.py                          # every scenario, 3 runs
    python bench/matrix.py --scenario saturate-50   # one scenario
    python bench/matrix.py --quick                  # 1 run, 0.3x time, 2,000 idle
    python bench/matrix.py --scenario idle-10k --server tchat-web --runs 5
    python bench/matrix.py --json-out runs.json --markdown-out table.md

Scenarios (the C{SCENARIOS} table below):

  - C{fanout-100}: 100 clients in one room, 10 senders x 10 msg/s, 10 s;
  - C{fanout-1000}: 1,000 clients, 10 senders x 2 msg/s, 15 s (with
    tchat's IRC door and ngIRCd too);
  - C{saturate-50}: 50 clients, 5 senders, closed loop (window 16), 10 s
    (with tchat's IRC door and ngIRCd too);
  - C{mixed-1000}: tchat only, 1,000 clients half telnet half web, as
    C{fanout-1000};
  - C{idle-10k}: 10,000 idle connections per door (tchat and the IRC
    servers: in 100 rooms, IRC channels); server KiB per connection and
    the time to connect them all;
  - C{join-storm}: 10,000 clients in one room, 10 of them saying a line a
    second for 30 s, while 1,000 more join and leave in waves (one
    C{loadgen --idle --hold 1} after another); the talkers' latency and
    whether anyone was sent off as too slow;
  - C{idle-max}: 19,000 idle connections, as many as one process may
    hold here (its open-file limit is 20,000), half telnet and half web,
    in 100 rooms; KiB per connection and the time to connect them all;
  - C{fill-10k}: 10,000 idle connections per tchat door all in one room
    (C{#lobby}): the time until the last one is in;
  - C{idle-ssh}: 1,000 idle connections (C{--ssh-idle-clients}) on the
    telnet door and on the SSH door, side by side;
  - C{history}: C{saturate-50} on each tchat door, SQLite history on and off.

Servers: C{tchat-telnet}, C{tchat-web}, C{tchat-mixed} (both doors of one
C{twistd -n tchat} with C{bench/tap.ini}, in a fresh temporary directory),
C{tchat-ssh} (the same server with C{--ssh} too, driven through its SSH
door by C{loadgen --ssh}, libssh; in C{fanout-100} and C{idle-ssh}),
C{tchat-irc} (the same server with C{--irc} too, driven through its IRC
door by C{loadgen --irc}: NICK, USER, JOIN, PRIVMSG; in C{saturate-50},
C{fanout-1000} and C{idle-10k}), and the peers in C{bench/peers/}:
C{twisted-line}, C{asyncio-line}, C{autobahn}, C{websockets}, C{node-ws}
(skipped, with the reason, when C{node} or C{bench/peers/node/node_modules}
is missing) and C{ngircd} (Debian's ngIRCd, an IRC server in C, through
C{bench/peers/ngircd_peer.py}, driven like C{tchat-irc}; skipped when
C{ngircd} is not installed: C{apt-get install ngircd}).

Each (scenario, server) runs C{--runs} times, all servers of a scenario in
each round, a fresh server process per run.  With two CPUs or more and
C{taskset}, the server runs on CPU 0 and the generator on CPU 1.

Output: one JSON line per run on stdout as soon as it ends (the
generator's result fields, plus the server's CPU seconds, microseconds per
delivery, RSS, logged errors and exit status); at the end, the machine, a
Markdown table of medians and the issue's targets, each met or MISSED.
Progress goes to stderr.  C{--json-out} writes every run and the summary as
one JSON document, C{--markdown-out} the Markdown.

Exit status: 0 when every run ran (whatever the figures), 1 when a run
could not run at all (the others still run and are reported), 2 for usage.
Bounded: every run has a timeout, every process started is stopped by its
PID, even on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field, replace
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
    raise_fd_limit,
    rss_kib,
    source_digest,
)

BENCH = REPO / "bench"
GEN_DIR = BENCH / "gen"
PEERS = BENCH / "peers"
NODE_DIR = PEERS / "node"
TAP_INI = BENCH / "tap.ini"
TWISTD = Path(sys.executable).parent / "twistd"

TCHAT_LISTENING = re.compile(
    rf"(?P<door>telnet|web|ssh|irc) door listening on {re.escape(HOST)}:(?P<port>\d+)"
)
PEER_LISTENING = re.compile(rf"(?P<door>)listening on {re.escape(HOST)}:(?P<port>\d+)")

SERVER_CPU, GEN_CPU = 0, 1
"""The CPUs of the server and the generator, when pinning."""

SERVER_GRACE = 15.0
"""SIGTERM to SIGKILL for a server (tchat gives its users 5 s)."""

IDLE_SETTLE = 2.0
"""Seconds between the generator's C{ready} and the RSS reading."""

IDLE_CONNECT_TIMEOUT = 120.0
IDLE_HOLD = 60.0
GEN_DRAIN, GEN_SETTLE = 5.0, 1.0
"""The generator's defaults for C{--drain} and C{--settle}."""

RUN_MARGIN = 60.0
"""Seconds the harness allows a run beyond the generator's own limit."""


# -- servers -----------------------------------------------------------------


@dataclass(frozen=True)
class ServerDef:
    """
    A server the matrix can run.

    @ivar name: What C{--server} names.
    @ivar transport: C{line}, C{ws}, C{both} (tchat's two doors), C{ssh}
        (tchat's SSH door, driven by C{loadgen --ssh}) or C{irc} (tchat's
        IRC door or an IRC server, driven by C{loadgen --irc}).
    @ivar peer: The peer's program (under C{bench/peers/}); C{None} for
        tchat.
    @ivar requires: A program the peer runs that must be installed (with
        C{apt-get install} of the same name), e.g. C{ngircd}.
    @ivar history: For tchat: C{None} runs C{bench/tap.ini} as it is (SQLite
        history on), C{True}/C{False} labels the run history on/off (off
        appends C{[history] enabled = false}).
    @ivar baseline: For tchat: the C{twistd} of another installation to run
        instead of this one's (C{--baseline}), to compare two versions of
        tchat side by side in one session.
    """

    name: str
    transport: str
    peer: str | None = None
    history: bool | None = None
    baseline: Path | None = None
    requires: str | None = None

    @property
    def is_tchat(self) -> bool:
        """Whether this is tchat (C{--proto tchat}), not a peer."""
        return self.peer is None

    @property
    def proto(self) -> str:
        """The generator's C{--proto}."""
        return "tchat" if self.is_tchat else "raw"

    @property
    def door(self) -> str:
        """The door the generator uses: telnet, web, mixed, ssh, irc, line or ws."""
        if self.is_tchat:
            return {
                "line": "telnet",
                "ws": "web",
                "both": "mixed",
                "ssh": "ssh",
                "irc": "irc",
            }[self.transport]
        return self.transport

    @property
    def label(self) -> str:
        """The name in the tables (with the history variant, if any)."""
        name = self.name if self.baseline is None else f"{self.name} [baseline]"
        if self.history is None:
            return name
        return f"{name} (history {'on' if self.history else 'off'})"

    def argv(self) -> list[str]:
        """The command line that starts this server, listening on port 0."""
        if self.is_tchat:
            extra = (
                [f"--{self.transport}", f"tcp:0:interface={HOST}"]
                if self.transport in ("ssh", "irc")
                else []
            )
            return [
                str(self.baseline or TWISTD),
                "-n",
                "--pidfile=",
                "tchat",
                "--config",
                "tap.ini",
                "--telnet",
                f"tcp:0:interface={HOST}",
                "--web",
                f"tcp:0:interface={HOST}",
                *extra,
            ]
        assert self.peer is not None
        program = str(PEERS / self.peer)
        if self.peer.endswith(".js"):
            return ["node", program, "--port", "0"]
        return [sys.executable, program, "--port", "0"]

    def doors(self) -> frozenset[str]:
        """The doors whose listening line the harness waits for."""
        if not self.is_tchat:
            return frozenset({""})
        if self.transport in ("ssh", "irc"):
            return frozenset({"telnet", "web", self.transport})
        return frozenset({"telnet", "web"})

    def skipped(self) -> str | None:
        """Why this server cannot run here, or C{None} if it can."""
        if self.is_tchat:
            twistd = self.baseline or TWISTD
            if not twistd.exists():
                return f"{twistd} not found"
            return None
        assert self.peer is not None
        if not (PEERS / self.peer).exists():
            return f"bench/peers/{self.peer} not found"
        if self.requires is not None and find_program(self.requires) is None:
            return f"{self.requires} is not installed (apt-get install {self.requires})"
        if self.peer.endswith(".js"):
            if shutil.which("node") is None:
                return "node is not on PATH"
            if not (NODE_DIR / "node_modules").is_dir():
                return (
                    "bench/peers/node/node_modules is missing "
                    "(npm ci --prefix bench/peers/node)"
                )
        return None

    def targets(self, ports: dict[str, int]) -> list[str]:
        """The generator's target flags for the ports this server opened."""
        telnet = ["--telnet", f"{HOST}:{ports.get('telnet', ports.get(''))}"]
        web = ["--ws", f"{HOST}:{ports.get('web', ports.get(''))}", "--ws-path", "/ws"]
        if self.transport == "ssh":
            return ["--ssh", f"{HOST}:{ports['ssh']}"]
        if self.transport == "irc":
            return ["--irc", f"{HOST}:{ports.get('irc', ports.get(''))}"]
        if self.transport == "line":
            return telnet
        if self.transport == "ws":
            return web
        return [*telnet, *web, "--ws-share", "0.5"]


SERVERS = {
    s.name: s
    for s in (
        ServerDef("tchat-telnet", "line"),
        ServerDef("tchat-web", "ws"),
        ServerDef("tchat-mixed", "both"),
        ServerDef("tchat-ssh", "ssh"),
        ServerDef("tchat-irc", "irc"),
        ServerDef("twisted-line", "line", "twisted_line.py"),
        ServerDef("asyncio-line", "line", "asyncio_line.py"),
        ServerDef("autobahn", "ws", "autobahn_broadcast.py"),
        ServerDef("websockets", "ws", "websockets_broadcast.py"),
        ServerDef("node-ws", "ws", "node/server.js"),
        ServerDef("ngircd", "irc", "ngircd_peer.py", requires="ngircd"),
    )
}


def find_program(name: str) -> str | None:
    """
    A program on PATH, or in C{/usr/sbin} (where Debian puts daemons such
    as ngircd, and which not every user has on PATH).
    """
    found = shutil.which(name)
    if found is not None:
        return found
    sbin = Path("/usr/sbin") / name
    return str(sbin) if sbin.exists() else None


# -- scenarios ---------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """
    One load, and the servers it runs against.

    @ivar rate: Open loop: messages a second per sender.
    @ivar window: Closed loop: messages per sender not yet received by all.
    @ivar idle: Connect C{clients} and hold them; measure memory.
    @ivar rooms: tchat and IRC servers only: spread the clients over this
        many rooms (IRC: channels).
    @ivar history: Run each tchat server with history on, then off.
    @ivar ssh_idle: An idle scenario whose count is C{--ssh-idle-clients}
        (SSH handshakes are slow to make by the ten thousand).
    @ivar churn: While the senders talk, this many more users join the
        room and leave it again, in waves (one C{loadgen --idle --hold 1}
        after another), until the run ends.
    @ivar most: An idle scenario whose count is as many connections as one
        process may hold here (the open-file limit, 20,000, less what the
        server needs besides): C{--idle-clients} scales it (10,000 is 1x).
    """

    name: str
    servers: tuple[str, ...]
    clients: int
    senders: int = 0
    rate: float | None = None
    window: int | None = None
    seconds: float = 0.0
    idle: bool = False
    rooms: int | None = None
    history: bool = False
    ssh_idle: bool = False
    most: bool = False
    churn: int = 0

    def server_defs(
        self, only: Sequence[str], baseline: Path | None = None
    ) -> list[ServerDef]:
        """
        The scenario's servers (those in C{only}, if given), in order; with
        a C{baseline}, each tchat server followed by its baseline twin.
        """
        defs = [SERVERS[n] for n in self.servers if not only or n in only]
        if baseline is not None:
            defs = [
                twin
                for d in defs
                for twin in ([d, replace(d, baseline=baseline)] if d.is_tchat else [d])
            ]
        if self.history:
            return [replace(d, history=h) for d in defs for h in (True, False)]
        return defs

    def load_flags(self, server: ServerDef) -> list[str]:
        """The generator's flags for this load (not the targets)."""
        flags = ["--proto", server.proto, "--clients", str(self.clients)]
        if self.rooms is not None and (server.is_tchat or server.transport == "irc"):
            flags += ["--rooms", str(self.rooms)]
        if self.idle:
            return [
                *flags,
                "--idle",
                "--hold",
                f"{IDLE_HOLD:g}",
                "--connect-timeout",
                f"{IDLE_CONNECT_TIMEOUT:g}",
                "--max-seconds",
                f"{self.max_seconds:g}",
            ]
        flags += ["--senders", str(self.senders)]
        if self.window is not None:
            flags += ["--window", str(self.window)]
        else:
            flags += ["--rate", f"{self.rate:g}"]
        return [
            *flags,
            "--seconds",
            f"{self.seconds:g}",
            "--max-seconds",
            f"{self.max_seconds:g}",
        ]

    @property
    def max_seconds(self) -> float:
        """The generator's C{--max-seconds}: its whole run, connecting included."""
        if self.idle:
            return IDLE_CONNECT_TIMEOUT + IDLE_HOLD + 30
        return round(GEN_SETTLE + self.seconds + GEN_DRAIN + 60, 1)

    @property
    def timeout(self) -> float:
        """The harness's limit on one run, server start and stop included."""
        return self.max_seconds + RUN_MARGIN + SERVER_GRACE


EVERY_SERVER = (
    "tchat-telnet",
    "tchat-web",
    "twisted-line",
    "asyncio-line",
    "autobahn",
    "websockets",
    "node-ws",
)
PEER_SERVERS = EVERY_SERVER[2:]
IRC_SERVERS = ("tchat-irc", "ngircd")

SCENARIOS = {
    s.name: s
    for s in (
        Scenario(
            "fanout-100",
            (*EVERY_SERVER, "tchat-ssh"),
            100,
            senders=10,
            rate=10,
            seconds=10,
        ),
        Scenario(
            "fanout-1000",
            (*EVERY_SERVER, *IRC_SERVERS),
            1000,
            senders=10,
            rate=2,
            seconds=15,
        ),
        Scenario(
            "saturate-50",
            (*EVERY_SERVER, *IRC_SERVERS),
            50,
            senders=5,
            window=16,
            seconds=10,
        ),
        Scenario("mixed-1000", ("tchat-mixed",), 1000, senders=10, rate=2, seconds=15),
        Scenario(
            "idle-10k",
            ("tchat-telnet", "tchat-web", "tchat-mixed", *PEER_SERVERS, *IRC_SERVERS),
            10_000,
            idle=True,
            rooms=100,
        ),
        Scenario(
            # A 10,000-member room, 10 talkers, 1,000 more coming and going.
            "join-storm",
            ("tchat-telnet", "tchat-web"),
            10_000,
            senders=10,
            rate=1,
            seconds=30,
            churn=1000,
        ),
        Scenario(
            # As many as one process may hold (its file limit is 20,000
            # here), half telnet and half web, in 100 rooms of 190.
            "idle-max",
            ("tchat-mixed",),
            19_000,
            idle=True,
            rooms=100,
            most=True,
        ),
        Scenario(
            # Everyone in one room (#lobby): how fast a big room fills.
            "fill-10k",
            ("tchat-telnet", "tchat-web", "tchat-irc"),
            10_000,
            idle=True,
        ),
        Scenario(
            "idle-ssh",
            ("tchat-telnet", "tchat-ssh"),
            1000,
            idle=True,
            rooms=100,
            ssh_idle=True,
        ),
        Scenario(
            "history",
            ("tchat-telnet", "tchat-web"),
            50,
            senders=5,
            window=16,
            seconds=10,
            history=True,
        ),
    )
}


def scaled(
    scenario: Scenario, seconds_scale: float, idle_clients: int, ssh_idle: int = 1000
) -> Scenario:
    """The scenario with C{--seconds-scale} and the idle counts applied."""
    if scenario.ssh_idle:
        return replace(scenario, clients=ssh_idle)
    if scenario.most:
        return replace(scenario, clients=scenario.clients * idle_clients // 10_000)
    if scenario.idle:
        return replace(scenario, clients=idle_clients)
    return replace(
        scenario, seconds=max(1.0, round(scenario.seconds * seconds_scale, 1))
    )


# -- one run -----------------------------------------------------------------


@dataclass
class Setup:
    """What every run shares: the generator binary and whether to pin."""

    loadgen: Path
    pin: bool

    def server_argv(self, server: ServerDef) -> list[str]:
        """The server's command, on its own CPU when pinning."""
        return pinned(server.argv(), SERVER_CPU if self.pin else None)

    def gen_argv(self, flags: Sequence[str], server: ServerDef) -> list[str]:
        """The generator's command (C{loadgen}), on its own CPU when pinning."""
        return pinned([str(self.loadgen), *flags], GEN_CPU if self.pin else None)

    @property
    def ssh(self) -> bool:
        """Whether this C{loadgen} speaks SSH (it was built with libssh)."""
        return loadgen_speaks_ssh(self.loadgen)

    @property
    def irc(self) -> bool:
        """Whether this C{loadgen} has IRC clients (C{--irc})."""
        return loadgen_speaks_irc(self.loadgen)


def loadgen_speaks_ssh(loadgen: Path) -> bool:
    """Whether C{loadgen --help} offers C{--ssh} (a build with libssh)."""
    done = subprocess.run(
        [str(loadgen), "--help"], capture_output=True, text=True, timeout=10
    )
    return "--ssh A:P" in done.stdout and "without libssh" not in done.stdout


def loadgen_speaks_irc(loadgen: Path) -> bool:
    """Whether C{loadgen --help} offers C{--irc} (not an older build)."""
    done = subprocess.run(
        [str(loadgen), "--help"], capture_output=True, text=True, timeout=10
    )
    return "--irc A:P" in done.stdout


@dataclass
class Measure:
    """A run's figures from the server's side, filled in as it goes."""

    record: dict[str, Any]
    cpu_before: float | None = None
    notes: list[str] = field(default_factory=list)

    def before(self, pid: int) -> None:
        """Just before the generator starts."""
        self.cpu_before = cpu_seconds(pid)
        self.record["server_rss_before_kib"] = rss_kib(pid)

    def after(self, pid: int) -> None:
        """Just after the generator ends (the server still runs)."""
        cpu_after = cpu_seconds(pid)
        self.record["server_rss_after_kib"] = rss_kib(pid)
        if cpu_after is not None and self.cpu_before is not None:
            self.record["server_cpu_s"] = round(cpu_after - self.cpu_before, 3)

    def per_delivery(self) -> None:
        """Server CPU per delivery, once the generator's figures are in."""
        cpu = self.record.get("server_cpu_s")
        delivered = self.record.get("delivered")
        if isinstance(cpu, float) and isinstance(delivered, int) and delivered > 0:
            self.record["server_us_per_delivery"] = round(cpu * 1e6 / delivered, 3)
        else:
            self.record["server_us_per_delivery"] = None


def tap_ini(workdir: Path, history: bool | None) -> None:
    """Copy C{bench/tap.ini} into C{workdir}; history off appends its section."""
    text = TAP_INI.read_text()
    if history is False:
        if re.search(r"^\s*\[history\]", text, re.MULTILINE):
            raise RuntimeError("bench/tap.ini already has a [history] section")
        text += "\n[history]\nenabled = false\n"
    (workdir / "tap.ini").write_text(text)


async def drive(
    setup: Setup, scenario: Scenario, server: ServerDef, live: Server, m: Measure
) -> None:
    """
    Run the generator against a listening server and record what it says.
    Raises RuntimeError when the generator could not run.
    """
    if not live.alive:
        raise RuntimeError(
            f"the server died before the run ({live.process.returncode})"
        )
    flags = [*server.targets(live.ports), *scenario.load_flags(server)]
    m.record["gen_argv"] = flags
    m.before(live.pid)
    gen = await Generator.start(setup.gen_argv(flags, server), BENCH)
    storm = (
        asyncio.create_task(churn(setup, server, live, scenario.churn, m))
        if scenario.churn
        else None
    )
    try:
        if scenario.idle:
            await hold_idle(gen, live, m)
        elif not await gen.exited(scenario.max_seconds + 30):
            m.notes.append("the generator overran its --max-seconds")
    finally:
        if storm is not None:
            storm.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await storm
        m.record["gen_exit"] = await gen.stop(10)
        m.after(live.pid)
        if gen.result is None or m.record["gen_exit"] != 0:
            m.record["gen_tail"] = list(gen.tail)[-20:]
    if gen.result is None:
        raise RuntimeError(
            f"the generator exited ({m.record['gen_exit']}) without a result line"
        )
    m.record.update(
        {k: v for k, v in gen.result.items() if k not in m.record and k != "event"}
    )
    m.per_delivery()
    if m.record["gen_exit"] != 0:
        why = gen.result.get("error") or "no reason given"
        raise RuntimeError(f"the generator exited with {m.record['gen_exit']}: {why}")


async def churn(
    setup: Setup, server: ServerDef, live: Server, count: int, m: Measure
) -> None:
    """
    Join-storm: C{count} users join the room, stay a second and leave, in
    one wave after another, until cancelled; the waves and the joins made
    go in the record.
    """
    flags = [
        *server.targets(live.ports),
        *("--proto", server.proto, "--clients", str(count), "--idle"),
        *("--hold", "1", "--connect-timeout", "20", "--max-seconds", "40"),
    ]
    waves = joins = 0
    try:
        while True:
            wave = await Generator.start(setup.gen_argv(flags, server), BENCH)
            try:
                await wave.exited(45)
            finally:
                await wave.stop(5)
            waves += 1
            if wave.ready_event is not None:
                joins += int(wave.ready_event.get("connected", 0))
    finally:
        m.record["churn_waves"], m.record["churn_joins"] = waves, joins


async def hold_idle(gen: Generator, live: Server, m: Measure) -> None:
    """
    Idle mode: wait for C{ready}, let the server settle, read its RSS, then
    SIGTERM the generator (the caller reads its result).
    """
    ready = asyncio.create_task(gen.ready.wait())
    exited = asyncio.create_task(gen.process.wait())
    try:
        await asyncio.wait(
            {ready, exited},
            timeout=IDLE_CONNECT_TIMEOUT + 30,
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        ready.cancel()
        exited.cancel()
    if gen.ready_event is None:
        m.notes.append("no ready line from the generator")
        return
    await asyncio.sleep(IDLE_SETTLE)
    ready_rss = rss_kib(live.pid)
    before = m.record.get("server_rss_before_kib")
    connected = gen.ready_event.get("connected") or gen.ready_event.get("clients")
    m.record["server_rss_ready_kib"] = ready_rss
    m.record["ready_connected"] = connected
    m.record["ready_connect_s"] = gen.ready_event.get("connect_s")
    if ready_rss is not None and before is not None and connected:
        m.record["kib_per_conn"] = round((ready_rss - before) / connected, 2)


async def one_run(
    setup: Setup, scenario: Scenario, server: ServerDef, index: int
) -> dict[str, Any]:
    """
    One run: a fresh server, the generator against it, the server stopped.
    Returns the run's record (C{ok} false, with C{failure}, if it could not
    run); never leaves a process behind.
    """
    record: dict[str, Any] = {
        "type": "run",
        "scenario": scenario.name,
        "server": server.name,
        "label": server.label,
        "door": server.door,
        "proto": server.proto,
        "history": server.history,
        "run": index,
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "pinned": setup.pin,
    }
    m = Measure(record)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tchat-matrix-") as tmp:
        workdir = Path(tmp)
        live: Server | None = None
        try:
            if server.is_tchat:
                tap_ini(workdir, server.history)
                if server.baseline is None:
                    record["tchat_source"] = source_digest()
                else:
                    record["baseline"] = str(server.baseline)
            live = await Server.spawn(
                setup.server_argv(server),
                workdir,
                TCHAT_LISTENING if server.is_tchat else PEER_LISTENING,
                server.doors(),
            )
            await live.wait_listening(30)
            try:
                await asyncio.wait_for(
                    drive(setup, scenario, server, live, m), scenario.timeout
                )
            except TimeoutError:
                raise RuntimeError(
                    f"the run overran the harness's {scenario.timeout:g} s"
                ) from None
            record["ok"] = True
        except Exception as e:
            record["ok"] = False
            record["failure"] = str(e) or type(e).__name__
            if not isinstance(e, RuntimeError | OSError):
                record["failure"] = f"{type(e).__name__}: {e}"
        finally:
            if live is not None:
                record["server_exit"] = await live.stop(SERVER_GRACE)
                record["server_errors"] = live.errors
                if not record.get("ok"):
                    record["server_tail"] = list(live.tail)
                elif live.errors:
                    record["server_tail"] = list(live.tail)[-40:]
    if record["ok"] and record.get("server_exit") != 0:
        m.notes.append(f"server exit status {record.get('server_exit')}")
    record["notes"] = m.notes
    record["run_wall_s"] = round(time.monotonic() - started, 1)
    return record


# -- summary -----------------------------------------------------------------


def median(values: Iterable[Any]) -> float | None:
    """The median of the numbers among C{values}, or C{None}."""
    numbers = [
        v for v in values if isinstance(v, int | float) and not isinstance(v, bool)
    ]
    return statistics.median(numbers) if numbers else None


def total(values: Iterable[Any]) -> int:
    """The sum of the integers among C{values}."""
    return sum(v for v in values if isinstance(v, int) and not isinstance(v, bool))


def latency(run: dict[str, Any], key: str) -> Any:
    """One latency percentile of a run (ms), if it has any."""
    lat = run.get("latency_ms")
    return lat.get(key) if isinstance(lat, dict) else None


@dataclass
class Row:
    """The medians (and totals) of one scenario and server over its runs."""

    scenario: str
    label: str
    runs: int
    ok: int
    deliveries_per_s: float | None
    p50_ms: float | None
    p99_ms: float | None
    lost: int
    duplicates: int
    reordered: int
    server_us_per_delivery: float | None
    gen_cpu_pct: float | None
    kib_per_conn: float | None
    rss_ready_kib: float | None
    connect_s: float | None
    clients: int | None
    connected_min: int | None
    server_errors: int
    gen_errors: int
    bad_exits: int
    idle: bool
    notes: list[str]
    server_closes: int = 0
    churn_joins: int = 0

    @classmethod
    def of(cls, scenario: Scenario, label: str, runs: list[dict[str, Any]]) -> Row:
        """Summarise a scenario's runs of one server."""
        good = [r for r in runs if r.get("ok")]
        connected = [
            r["connected"] for r in good if isinstance(r.get("connected"), int)
        ]
        return cls(
            scenario=scenario.name,
            label=label,
            runs=len(runs),
            ok=len(good),
            deliveries_per_s=median(r.get("deliveries_per_s") for r in good),
            p50_ms=median(latency(r, "p50") for r in good),
            p99_ms=median(latency(r, "p99") for r in good),
            lost=total(r.get("lost") for r in good),
            duplicates=total(r.get("duplicates") for r in good),
            reordered=total(r.get("reordered") for r in good),
            server_us_per_delivery=median(
                r.get("server_us_per_delivery") for r in good
            ),
            gen_cpu_pct=median(r.get("gen_cpu_pct") for r in good),
            kib_per_conn=median(r.get("kib_per_conn") for r in good),
            rss_ready_kib=median(r.get("server_rss_ready_kib") for r in good),
            connect_s=median(r.get("connect_s") for r in good),
            clients=scenario.clients,
            connected_min=min(connected) if connected else None,
            server_errors=total(r.get("server_errors") for r in runs),
            gen_errors=total(r.get("errors") for r in good),
            bad_exits=sum(1 for r in runs if r.get("server_exit") not in (0, None)),
            idle=scenario.idle,
            notes=list(dict.fromkeys(n for r in runs for n in r.get("notes", []))),
            server_closes=total(r.get("server_closes") for r in good),
            churn_joins=total(r.get("churn_joins") for r in good),
        )

    def problems(self) -> str:
        """What went wrong, for the table's last column."""
        found = []
        if self.ok < self.runs:
            found.append(f"FAILED {self.runs - self.ok}/{self.runs}")
        if self.server_errors:
            found.append(f"server errors {self.server_errors}")
        if self.bad_exits:
            found.append(f"bad server exit x{self.bad_exits}")
        if self.gen_errors:
            found.append(f"gen errors {self.gen_errors}")
        if self.server_closes:
            found.append(f"sent off by the server {self.server_closes}")
        short = self.clients is not None and (self.connected_min or 0) < self.clients
        if self.idle and self.connected_min is not None and short:
            found.append(f"connected only {self.connected_min}")
        found += self.notes
        shown = "**" + "; ".join(found) + "**" if found else ""
        if self.churn_joins:
            shown = f"{self.churn_joins:,} joins and leaves around it {shown}".strip()
        return shown


Summary = dict[tuple[str, str], Row]


def summarise(scenarios: Sequence[Scenario], runs: list[dict[str, Any]]) -> Summary:
    """One row per scenario and server that ran, in run order."""
    rows: Summary = {}
    by_name = {s.name: s for s in scenarios}
    for key in dict.fromkeys((r["scenario"], r["label"]) for r in runs):
        mine = [r for r in runs if (r["scenario"], r["label"]) == key]
        rows[key] = Row.of(by_name[key[0]], key[1], mine)
    return rows


# -- targets -----------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """
    One of the issue's targets: a figure from the summary, and its bound.

    @ivar measure: The figure and how it was reached (or C{None} when a
        side did not run).
    """

    text: str
    measure: Callable[[Summary], tuple[float, str] | None]
    met: Callable[[float], bool]
    unit: str = ""


def figure(rows: Summary, scenario: str, label: str, attr: str) -> float | None:
    """One median from the summary, if that run happened."""
    row = rows.get((scenario, label))
    if row is None or row.ok == 0:
        return None
    value = getattr(row, attr)
    return float(value) if value is not None else None


def ratio(
    scenario: str, top: str, bottom: str, attr: str = "deliveries_per_s"
) -> Callable[[Summary], Any]:
    """One server's median of C{attr} (deliveries/s) over another's."""
    shown = ",.0f" if attr == "deliveries_per_s" else ",.2f"

    def measure(rows: Summary) -> tuple[float, str] | None:
        a = figure(rows, scenario, top, attr)
        b = figure(rows, scenario, bottom, attr)
        if a is None or not b:
            return None
        return a / b, f"{a:{shown}} / {b:{shown}}"

    return measure


def single(scenario: str, label: str, attr: str) -> Callable[[Summary], Any]:
    """One median (or total) as it is."""

    def measure(rows: Summary) -> tuple[float, str] | None:
        value = figure(rows, scenario, label, attr)
        return None if value is None else (value, "")

    return measure


def held(scenario: str, label: str) -> Callable[[Summary], Any]:
    """The share (%) of the idle clients that every run held."""

    def measure(rows: Summary) -> tuple[float, str] | None:
        row = rows.get((scenario, label))
        if row is None or row.connected_min is None or not row.clients:
            return None
        share = 100 * row.connected_min / row.clients
        return share, f"{row.connected_min} / {row.clients}"

    return measure


def history_cost(door: str) -> Callable[[Summary], Any]:
    """(off - on) / off of deliveries/s, in %."""

    def measure(rows: Summary) -> tuple[float, str] | None:
        on = figure(rows, "history", f"{door} (history on)", "deliveries_per_s")
        off = figure(rows, "history", f"{door} (history off)", "deliveries_per_s")
        if on is None or not off:
            return None
        return (off - on) / off * 100, f"on {on:,.0f} / off {off:,.0f}"

    return measure


def beside(
    scenario: str, label: str, other: str, attr: str
) -> Callable[[Summary], Any]:
    """One median as it is, with another server's figure beside it."""

    def measure(rows: Summary) -> tuple[float, str] | None:
        value = figure(rows, scenario, label, attr)
        theirs = figure(rows, scenario, other, attr)
        if value is None:
            return None
        shown = "-" if theirs is None else f"{theirs:,.2f}"
        return value, f"{other}: {shown}"

    return measure


def at_least(bound: float) -> Callable[[float], bool]:
    """The figure must be C{bound} or more."""
    return lambda value: value >= bound


def at_most(bound: float) -> Callable[[float], bool]:
    """The figure must be C{bound} or less."""
    return lambda value: value <= bound


TARGETS = (
    Target(
        "saturate-50 deliveries/s: tchat-web / websockets >= 2.0",
        ratio("saturate-50", "tchat-web", "websockets"),
        at_least(2.0),
    ),
    Target(
        "saturate-50 deliveries/s: tchat-web / node-ws >= 1.3",
        ratio("saturate-50", "tchat-web", "node-ws"),
        at_least(1.3),
    ),
    Target(
        "saturate-50 deliveries/s: tchat-telnet / asyncio-line >= 2.0",
        ratio("saturate-50", "tchat-telnet", "asyncio-line"),
        at_least(2.0),
    ),
    Target(
        "saturate-50 deliveries/s: tchat-telnet / twisted-line >= 0.7",
        ratio("saturate-50", "tchat-telnet", "twisted-line"),
        at_least(0.7),
    ),
    Target(
        "saturate-50 deliveries/s: tchat-web / autobahn >= 0.7",
        ratio("saturate-50", "tchat-web", "autobahn"),
        at_least(0.7),
    ),
    Target(
        "saturate-50 deliveries/s: tchat-irc / tchat-telnet >= 0.9",
        ratio("saturate-50", "tchat-irc", "tchat-telnet"),
        at_least(0.9),
    ),
    Target(
        "saturate-50 deliveries/s: tchat-irc / ngircd >= 0.5",
        ratio("saturate-50", "tchat-irc", "ngircd"),
        at_least(0.5),
    ),
    *(
        target
        for scenario, label in (
            ("fanout-1000", "tchat-telnet"),
            ("fanout-1000", "tchat-web"),
            ("fanout-1000", "tchat-irc"),
            ("mixed-1000", "tchat-mixed"),
        )
        for target in (
            Target(
                f"{scenario} {label}: p99 <= 15 ms",
                single(scenario, label, "p99_ms"),
                at_most(15.0),
                " ms",
            ),
            Target(
                f"{scenario} {label}: lost == 0",
                single(scenario, label, "lost"),
                at_most(0),
            ),
        )
    ),
    Target(
        "idle-10k tchat-telnet: KiB/conn <= 4",
        single("idle-10k", "tchat-telnet", "kib_per_conn"),
        at_most(4.0),
        " KiB",
    ),
    Target(
        "idle-10k tchat-web: KiB/conn <= 8",
        single("idle-10k", "tchat-web", "kib_per_conn"),
        at_most(8.0),
        " KiB",
    ),
    Target(
        "idle-10k tchat-irc: KiB/conn <= 4 (ngircd's beside it)",
        beside("idle-10k", "tchat-irc", "ngircd", "kib_per_conn"),
        at_most(4.0),
        " KiB",
    ),
    Target(
        "idle-10k tchat-mixed: every connection held",
        held("idle-10k", "tchat-mixed"),
        at_least(100.0),
        "%",
    ),
    *(
        target
        for label in ("tchat-telnet", "tchat-web")
        for target in (
            Target(
                f"join-storm {label}: talkers' p99 < 50 ms",
                single("join-storm", label, "p99_ms"),
                at_most(50.0),
                " ms",
            ),
            Target(
                f"join-storm {label}: nobody sent off as too slow",
                single("join-storm", label, "server_closes"),
                at_most(0),
            ),
        )
    ),
    Target(
        "idle-max tchat-mixed: every connection held",
        held("idle-max", "tchat-mixed"),
        at_least(100.0),
        "%",
    ),
    Target(
        "idle-max tchat-mixed: KiB/conn <= 6 (half telnet at 4, half web at 8)",
        single("idle-max", "tchat-mixed", "kib_per_conn"),
        at_most(6.0),
        " KiB",
    ),
    Target(
        "idle-max tchat-mixed: all connected within 20 s",
        single("idle-max", "tchat-mixed", "connect_s"),
        at_most(20.0),
        " s",
    ),
    Target(
        "fill-10k tchat-telnet: all in one room within 5 s",
        single("fill-10k", "tchat-telnet", "connect_s"),
        at_most(5.0),
        " s",
    ),
    Target(
        "fill-10k tchat-web: all in one room within 15 s",
        single("fill-10k", "tchat-web", "connect_s"),
        at_most(15.0),
        " s",
    ),
    Target(
        "idle-ssh tchat-ssh: KiB/conn <= 48 (telnet's beside it)",
        beside("idle-ssh", "tchat-ssh", "tchat-telnet", "kib_per_conn"),
        at_most(48.0),
        " KiB",
    ),
    Target(
        "fanout-100 p99 ms: tchat-ssh / tchat-telnet <= 2.0",
        ratio("fanout-100", "tchat-ssh", "tchat-telnet", "p99_ms"),
        at_most(2.0),
    ),
    Target(
        "fanout-100 tchat-ssh: lost == 0",
        single("fanout-100", "tchat-ssh", "lost"),
        at_most(0),
    ),
    Target(
        "history tchat-telnet: cost <= 20%",
        history_cost("tchat-telnet"),
        at_most(20.0),
        "%",
    ),
    Target(
        "history tchat-web: cost <= 20%",
        history_cost("tchat-web"),
        at_most(20.0),
        "%",
    ),
)


def judge(rows: Summary) -> list[dict[str, Any]]:
    """Every target: its figure and whether it is met (None: not measured)."""
    verdicts = []
    for target in TARGETS:
        found = target.measure(rows)
        verdicts.append(
            {
                "target": target.text,
                "measured": None if found is None else round(found[0], 3),
                "unit": target.unit,
                "detail": None if found is None else found[1],
                "met": None if found is None else target.met(found[0]),
            }
        )
    return verdicts


# -- Markdown ----------------------------------------------------------------


def num(value: float | None, digits: int = 1) -> str:
    """A figure for a table cell (C{-} when there is none)."""
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def mib(kib: float | None) -> float | None:
    """KiB as MiB."""
    return None if kib is None else kib / 1024


def loud(value: int) -> str:
    """A count that must be zero: bold with a mark when it is not."""
    return f"**{value} !**" if value else "0"


def load_table(rows: Iterable[Row]) -> list[str]:
    """The table of the load scenarios."""
    lines = [
        "| scenario | server | ok/runs | deliveries/s | p50 ms | p99 ms | lost "
        "| dup | reord | server µs/delivery | gen CPU % | problems |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.scenario} | {r.label} | {r.ok}/{r.runs} "
            f"| {num(r.deliveries_per_s, 0)} | {num(r.p50_ms, 2)} "
            f"| {num(r.p99_ms, 2)} | {loud(r.lost)} | {loud(r.duplicates)} "
            f"| {loud(r.reordered)} | {num(r.server_us_per_delivery, 2)} "
            f"| {num(r.gen_cpu_pct)} | {r.problems()} |"
        )
    return lines


def idle_table(rows: Iterable[Row]) -> list[str]:
    """The table of the idle scenario."""
    lines = [
        "| scenario | server | ok/runs | clients | connected (min) | KiB/conn "
        "| connect s | server RSS MiB | problems |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.scenario} | {r.label} | {r.ok}/{r.runs} | {r.clients} "
            f"| {r.connected_min if r.connected_min is not None else '-'} "
            f"| {num(r.kib_per_conn, 2)} | {num(r.connect_s, 2)} "
            f"| {num(mib(r.rss_ready_kib))} | {r.problems()} |"
        )
    return lines


def targets_table(verdicts: Sequence[dict[str, Any]]) -> list[str]:
    """The targets, each met, MISSED, or not measured."""
    lines = ["| target | measured | |", "| --- | --- | --- |"]
    for v in verdicts:
        if v["met"] is None:
            shown, verdict = "not measured", "n/a"
        else:
            value = v["measured"]
            shown = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
            shown += v["unit"]
            if v["detail"]:
                shown += f" ({v['detail']})"
            verdict = "met" if v["met"] else "**MISSED**"
        lines.append(f"| {v['target']} | {shown} | {verdict} |")
    return lines


def baseline_table(rows: Summary) -> list[str]:
    """
    Each tchat run beside its baseline twin (C{--baseline}): the ratio of
    deliveries/s and of server CPU per delivery, and both p99s.
    """
    lines = [
        "| scenario | server | deliveries/s | ratio | server µs/delivery | ratio "
        "| p99 ms (this / baseline) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    found = False
    for (scenario, label), row in rows.items():
        if "[baseline]" in label or row.idle:
            continue
        name, sep, rest = label.partition(" (")
        twin = rows.get((scenario, f"{name} [baseline]" + (sep + rest if sep else "")))
        if twin is None:
            continue
        found = True

        def share(a: float | None, b: float | None) -> str:
            return "-" if a is None or not b else f"{a / b:.3f}"

        lines.append(
            f"| {scenario} | {label} "
            f"| {num(row.deliveries_per_s, 0)} / {num(twin.deliveries_per_s, 0)} "
            f"| {share(row.deliveries_per_s, twin.deliveries_per_s)} "
            f"| {num(row.server_us_per_delivery, 2)} / "
            f"{num(twin.server_us_per_delivery, 2)} "
            f"| {share(row.server_us_per_delivery, twin.server_us_per_delivery)} "
            f"| {num(row.p99_ms, 2)} / {num(twin.p99_ms, 2)} |"
        )
    return lines if found else []


def markdown(
    info: dict[str, Any],
    rows: Summary,
    verdicts: Sequence[dict[str, Any]],
    skipped: Sequence[dict[str, Any]],
) -> str:
    """The whole report: machine, tables, skips and targets."""
    lines = ["# tchat benchmark matrix", ""]
    lines += [f"- {key}: {value}" for key, value in info.items()]
    sources = set(info.get("tchat_sources") or ())
    if len(sources) > 1:
        lines += [
            f"- **WARNING: tchat's source changed during the session "
            f"({len(sources)} versions: {', '.join(sorted(sources))}); "
            "runs of different versions are mixed**"
        ]
    load = [r for r in rows.values() if not r.idle]
    idle = [r for r in rows.values() if r.idle]
    if load:
        lines += ["", "## Load (medians over runs; lost/dup/reord: totals)", ""]
        lines += load_table(load)
    if idle:
        lines += ["", "## Idle connections (medians over runs)", ""]
        lines += idle_table(idle)
    if skipped:
        lines += ["", "## Skipped", ""]
        lines += [f"- {s['scenario']} {s['server']}: {s['reason']}" for s in skipped]
    compared = baseline_table(rows)
    if compared:
        lines += ["", "## Against the baseline (this / baseline, medians)", ""]
        lines += compared
    lines += ["", "## Targets", ""]
    lines += targets_table(verdicts)
    missed = sum(1 for v in verdicts if v["met"] is False)
    lines += ["", f"Targets missed: {missed} of {len(verdicts)}."]
    return "\n".join(lines) + "\n"


# -- the matrix --------------------------------------------------------------


def emit(record: dict[str, Any]) -> None:
    """One JSON line on stdout, now."""
    print(json.dumps(record), flush=True)


def progress(text: str) -> None:
    """A line for whoever watches (stderr)."""
    print(text, file=sys.stderr, flush=True)


def brief(record: dict[str, Any]) -> str:
    """A run in one line, for the progress output."""
    if not record.get("ok"):
        return f"FAILED: {record.get('failure')}"
    if record.get("kib_per_conn") is not None or record.get("mode") == "idle":
        return (
            f"connected {record.get('connected')}, {record.get('kib_per_conn')} "
            f"KiB/conn, connect {record.get('connect_s')} s"
        )
    return (
        f"{record.get('deliveries_per_s')} deliveries/s, p99 "
        f"{latency(record, 'p99')} ms, lost {record.get('lost')}, server "
        f"{record.get('server_us_per_delivery')} µs/delivery"
    )


async def run_scenario(
    setup: Setup,
    scenario: Scenario,
    servers: list[ServerDef],
    runs: int,
    out: list[dict[str, Any]],
) -> None:
    """Every round of one scenario: each server once per round."""
    for index in range(1, runs + 1):
        for server in servers:
            progress(f"[{scenario.name} {index}/{runs}] {server.label} ...")
            record = await one_run(setup, scenario, server, index)
            emit(record)
            out.append(record)
            progress(
                f"[{scenario.name} {index}/{runs}] {server.label}: {brief(record)}"
            )
            if not record["ok"]:
                for line in record.get("server_tail", []):
                    progress(f"    server| {line}")
                for line in record.get("gen_tail", []):
                    progress(f"    gen| {line}")


async def run_matrix(
    setup: Setup,
    scenarios: Sequence[Scenario],
    only: Sequence[str],
    runs: int,
    out: list[dict[str, Any]],
    skipped: list[dict[str, Any]],
    baseline: Path | None = None,
) -> None:
    """Every scenario in turn; every run's record goes to C{out} as it ends."""
    for scenario in scenarios:
        servers = []
        for server in scenario.server_defs(only, baseline):
            reason = server.skipped()
            if reason is None and server.transport == "ssh" and not setup.ssh:
                reason = (
                    f"{setup.loadgen} was built without libssh (apt-get install "
                    "libssh-dev pkg-config; make -C bench/gen clean all)"
                )
            if reason is None and server.transport == "irc" and not setup.irc:
                reason = f"{setup.loadgen} has no --irc (make -C bench/gen)"
            if reason is None:
                servers.append(server)
                continue
            skip = {
                "type": "skip",
                "scenario": scenario.name,
                "server": server.label,
                "reason": reason,
            }
            emit(skip)
            skipped.append(skip)
            progress(f"[{scenario.name}] {server.label}: skipped: {reason}")
        if not servers:
            progress(f"[{scenario.name}] no server to run")
        await run_scenario(setup, scenario, servers, runs, out)


async def guarded(coro: Coroutine[Any, Any, None]) -> None:
    """
    Run C{coro} as a task that SIGTERM (like Ctrl-C) cancels, so that the
    C{finally} clauses stop every process it started.
    """
    task = asyncio.ensure_future(coro)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await task
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def build_loadgen() -> Path:
    """C{make -C bench/gen}; the generator's path. Exits if it fails."""
    try:
        done = subprocess.run(
            ["make", "-C", str(GEN_DIR)], capture_output=True, text=True, timeout=300
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise SystemExit(f"make -C bench/gen: {e}") from None
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"make -C bench/gen failed ({done.returncode})")
    loadgen = GEN_DIR / "loadgen"
    if not loadgen.exists():
        raise SystemExit(f"make -C bench/gen made no {loadgen}")
    return loadgen


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, checked and with C{--quick} applied."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scenario", action="append", choices=list(SCENARIOS), default=[]
    )
    parser.add_argument("--server", action="append", choices=list(SERVERS), default=[])
    parser.add_argument("--runs", type=int, help="runs per server (default 3)")
    parser.add_argument(
        "--seconds-scale", type=float, help="multiply the scenarios' durations"
    )
    parser.add_argument(
        "--idle-clients", type=int, help="idle-10k's connections (default 10,000)"
    )
    parser.add_argument(
        "--ssh-idle-clients",
        type=int,
        default=1000,
        help="idle-ssh's connections per door (default 1,000)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="--runs 1 --seconds-scale 0.3 --idle-clients 2000 (unless given)",
    )
    parser.add_argument("--json-out", type=Path, help="write all runs and the summary")
    parser.add_argument("--markdown-out", type=Path, help="write the Markdown report")
    parser.add_argument(
        "--loadgen",
        type=Path,
        help="use this generator binary instead of building bench/gen",
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin server and generator"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also run the tchat of this twistd (another installation, e.g. "
        "the main branch's) in every round, side by side",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    if args.runs is None:
        args.runs = 1 if quick else 3
    if args.seconds_scale is None:
        args.seconds_scale = 0.3 if quick else 1.0
    if args.idle_clients is None:
        args.idle_clients = 2000 if quick else 10_000
    if not 1 <= args.runs <= 20:
        parser.error("--runs: 1..20")
    if not 0.05 <= args.seconds_scale <= 4:
        parser.error("--seconds-scale: 0.05..4")
    if not 2 <= args.idle_clients <= 10_000:
        parser.error("--idle-clients: 2..10000")
    if not 2 <= args.ssh_idle_clients <= 10_000:
        parser.error("--ssh-idle-clients: 2..10000")
    return args


def write_outputs(
    args: argparse.Namespace,
    info: dict[str, Any],
    runs: list[dict[str, Any]],
    rows: Summary,
    verdicts: list[dict[str, Any]],
    skipped: list[dict[str, Any]],
    report: str,
) -> None:
    """C{--json-out} and C{--markdown-out}."""
    if args.json_out is not None:
        document = {
            "machine": info,
            "runs": runs,
            "skipped": skipped,
            "summary": [vars(row) for row in rows.values()],
            "targets": verdicts,
        }
        args.json_out.write_text(json.dumps(document, indent=1) + "\n")
    if args.markdown_out is not None:
        args.markdown_out.write_text(report)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the matrix; print and write the report; return the exit status."""
    args = parse_args(argv)
    fd_limit = raise_fd_limit()
    loadgen = args.loadgen.resolve() if args.loadgen else build_loadgen()
    chosen = args.scenario or list(SCENARIOS)
    scenarios = [
        scaled(
            SCENARIOS[name],
            args.seconds_scale,
            args.idle_clients,
            args.ssh_idle_clients,
        )
        for name in dict.fromkeys(chosen)
    ]
    needed = max((s.clients for s in scenarios), default=0) + 100
    if fd_limit < needed:
        progress(f"warning: file descriptor limit {fd_limit} < {needed}")
    setup = Setup(loadgen, pin=can_pin() and not args.no_pin)
    info = machine(setup.pin, NODE_DIR)
    info.update(
        runs=args.runs,
        seconds_scale=args.seconds_scale,
        idle_clients=args.idle_clients,
        ssh_idle_clients=args.ssh_idle_clients,
    )
    progress("machine: " + json.dumps(info))
    skipped: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    interrupted = False
    try:
        asyncio.run(
            guarded(
                run_matrix(
                    setup,
                    scenarios,
                    args.server,
                    args.runs,
                    runs,
                    skipped,
                    args.baseline,
                )
            )
        )
    except (KeyboardInterrupt, asyncio.CancelledError):
        interrupted = True
        progress("interrupted: every process started was stopped")
    info["tchat_sources"] = sorted(
        {str(r["tchat_source"]) for r in runs if r.get("tchat_source")}
    )
    rows = summarise(scenarios, runs)
    verdicts = judge(rows)
    report = markdown(info, rows, verdicts, skipped)
    print(report, flush=True)
    write_outputs(args, info, runs, rows, verdicts, skipped, report)
    if interrupted:
        return 130
    return 0 if all(r["ok"] for r in runs) else 1


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
