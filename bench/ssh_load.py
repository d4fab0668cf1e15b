"""
The SSH door's load generator: C{bench/gen/loadgen}'s conventions and
result fields, spoken through asyncssh (a client library from PyPI, the
C{bench} extra) to tchat's SSH door, on 127.0.0.1 only.

    python bench/ssh_load.py --ssh 127.0.0.1:2222 --clients 100 \\
        --senders 10 --rate 10 --seconds 10
    python bench/ssh_load.py --ssh 127.0.0.1:2222 --clients 1000 --idle \\
        --rooms 100

Every client is one SSH connection with one session channel, a pty
(C{xterm}, 200 columns so that no chat line wraps) and a shell, logged in
with one ed25519 key made for the run (the door takes any key) as
C{s<index>}, which becomes its nick.  A client is ready once the prompt
C{#lobby> } arrives (it has joined the lobby).

As C{loadgen}: each message is C{bm:<sender>:<seq>:<t_ns>} (C{t_ns}:
C{CLOCK_MONOTONIC} at send time), padded with a space and C{x}s to
C{--size} bytes and typed as a line ending in CR; receivers find C{bm:} in
every complete line of their terminal's output, wherever the door puts it
(C{[12:00] <s3> bm:...}), timestamp it as it arrives and count loss,
duplicates and reordering per (receiver, sender).  C{--rate R} sends R
msg/s per sender, the senders offset as C{loadgen}'s; C{--idle} connects
and holds (C{--rooms N}: each client then joins C{#bench-<i mod N>} and
leaves the lobby, as C{loadgen --rooms} does).

Output (stdout): JSON lines, C{loadgen}'s: C{{"event": "ready", ...}} once
an idle run is connected and settled, then C{{"event": "result", ...}} with
the same fields (C{sent expected delivered lost duplicates reordered
self_echoes foreign deliveries_per_s latency_ms late_sends connect_s
connected errors error_samples server_closes gen_cpu_s gen_cpu_pct wall_s
error}) plus C{ssh}: the algorithms negotiated.  Exit 0 when the run
completed (even with loss), 1 when it did not, 2 for usage.

Bounded: C{--connect-timeout}, C{--max-seconds} for the whole run, at most
C{--conc} handshakes at once, every connection closed at the end.  The
driver is one asyncio process: at C{fanout-100} it decrypts about 10,000
SSH packets a second, and reports its own CPU (C{gen_cpu_pct}) so that a
run where it, not the server, is the bottleneck shows as one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import asyncssh

HOST = "127.0.0.1"
PROMPT = b"#lobby> "
MARK = re.compile(rb"bm:(\d+):(\d+):(\d+)")
MAX_CARRY = 1 << 16
"""The longest unfinished line a client keeps (the prompt and its echo)."""
LATE_NS = 1_000_000
N_SAMPLES = 5


@dataclass
class Stats:
    """What the run counts, as C{loadgen} does."""

    sent: int = 0
    expected: int = 0
    delivered: int = 0
    duplicates: int = 0
    reordered: int = 0
    self_echoes: int = 0
    foreign: int = 0
    late_sends: int = 0
    errors: int = 0
    server_closes: int = 0
    error_samples: list[str] = field(default_factory=list)
    close_samples: list[dict[str, Any]] = field(default_factory=list)
    latencies: list[int] = field(default_factory=list)
    send_start: int = 0
    first_send: int = 0
    last_delivery: int = 0
    first_connect: int = 0
    last_ready: int = 0

    def error(self, text: str) -> None:
        """Count an error, keeping the first few."""
        self.errors += 1
        if len(self.error_samples) < N_SAMPLES:
            self.error_samples.append(text[:200])


class Run:
    """The shared state of one run: options, counters and every client."""

    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.stats = Stats()
        self.sent_by = [0] * opts.senders
        self.clients: list[Client] = []
        self.ending = False
        self.all_ready = asyncio.Event()
        self.ready = 0


class Client(asyncssh.SSHClientSession[bytes]):
    """
    One SSH user: reads its terminal's output, finds the markers in it.
    """

    def __init__(self, run: Run, idx: int) -> None:
        self.run = run
        self.idx = idx
        self.carry = b""
        self.is_ready = False
        self.closed = False
        self.chan: asyncssh.SSHClientChannel[bytes] | None = None
        self.conn: asyncssh.SSHClientConnection | None = None
        # Per sender: the seqs received and the highest one.
        self.seen: dict[int, set[int]] = {}
        self.max_seq: dict[int, int] = {}

    def connection_made(self, chan: asyncssh.SSHClientChannel[bytes]) -> None:
        self.chan = chan

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        t = time.monotonic_ns()
        buf = self.carry + data if self.carry else data
        if not self.is_ready and PROMPT in buf:
            self.become_ready(t)
        end = buf.rfind(b"\n")
        if end < 0:
            self.carry = buf[-MAX_CARRY:]
            return
        self.carry = buf[end + 1 :][-MAX_CARRY:]
        if self.is_ready:
            for m in MARK.finditer(buf, 0, end):
                self.marker(int(m[1]), int(m[2]), int(m[3]), t)

    def become_ready(self, t: int) -> None:
        """The prompt of the lobby arrived: this user is in."""
        self.is_ready = True
        run = self.run
        run.ready += 1
        run.stats.last_ready = t
        rooms = run.opts.rooms
        if rooms and self.chan is not None:
            self.chan.write(
                f"/join #bench-{self.idx % rooms}\r/part #lobby\r".encode("ascii")
            )
        if run.ready == run.opts.clients:
            run.all_ready.set()

    def marker(self, s: int, seq: int, tns: int, t: int) -> None:
        """One C{bm:} marker received at C{t}."""
        run = self.run
        st = run.stats
        if (
            s >= len(run.sent_by)
            or seq >= run.sent_by[s]
            or not st.send_start
            or tns < st.send_start
            or tns > t
        ):
            st.foreign += 1
            return
        if s == self.idx:
            st.self_echoes += 1
            return
        seen = self.seen.setdefault(s, set())
        if seq in seen:
            st.duplicates += 1
            return
        seen.add(seq)
        if seq < self.max_seq.get(s, -1):
            st.reordered += 1
        else:
            self.max_seq[s] = seq
        st.delivered += 1
        st.last_delivery = t
        st.latencies.append(t - tns)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        if self.run.ending:
            return
        st = self.run.stats
        st.server_closes += 1
        if len(st.close_samples) < N_SAMPLES:
            st.close_samples.append(
                {
                    "client": self.idx,
                    "door": "ssh",
                    "code": None,
                    "reason": str(exc or "eof")[:200],
                }
            )

    def write(self, data: bytes) -> bool:
        """Type C{data}; C{False} if the channel is gone."""
        if self.closed or self.chan is None:
            return False
        self.chan.write(data)
        return True


async def connect_one(
    run: Run, idx: int, key: asyncssh.SSHKey, gate: asyncio.Semaphore
) -> None:
    """Open client C{idx}: connection, session, pty and shell."""
    opts = run.opts
    async with gate:
        if not run.stats.first_connect:
            run.stats.first_connect = time.monotonic_ns()
        try:
            conn = await asyncssh.connect(
                opts.host,
                opts.port,
                username=f"s{idx}",
                client_keys=[key],
                known_hosts=None,
                agent_path=None,
                config=[],
                preferred_auth="publickey",
                compression_algs=["none"],
                connect_timeout=opts.connect_timeout,
            )
            client = run.clients[idx]
            client.conn = conn
            await conn.create_session(
                lambda: client,
                term_type="xterm",
                term_size=(200, 50),
                encoding=None,
            )
        except (OSError, asyncssh.Error, TimeoutError) as e:
            run.stats.error(f"client {idx}: {type(e).__name__}: {e}")


def algorithms(run: Run) -> dict[str, Any] | None:
    """The algorithms the first connection negotiated."""
    for c in run.clients:
        if c.conn is not None:
            conn = c.conn
            return {
                key: conn.get_extra_info(key)
                for key in ("send_cipher", "send_mac", "recv_cipher", "recv_mac")
            }
    return None


async def send_loop(run: Run, end: int) -> None:
    """Open loop: C{--rate} messages a second per sender, spread out."""
    opts = run.opts
    st = run.stats
    interval = 1e9 / (opts.rate * opts.senders)
    m = 0
    while not run.ending:
        t = time.monotonic_ns()
        if t >= end:
            return
        due = st.send_start + int(m * interval)
        if due >= end:
            return
        if due > t:
            await asyncio.sleep((due - t) / 1e9)
            continue
        s = m % opts.senders
        m += 1
        client = run.clients[s]
        if not client.is_ready or client.closed:
            continue
        if t - due >= LATE_NS:
            st.late_sends += 1
        now = time.monotonic_ns()
        text = f"bm:{s}:{run.sent_by[s]}:{now}".encode("ascii")
        if len(text) < opts.size:
            text += b" " + b"x" * (opts.size - len(text) - 1)
        if not client.write(text + b"\r"):
            continue
        if not st.first_send:
            st.first_send = now
        run.sent_by[s] += 1
        st.sent += 1
        st.expected += sum(
            1 for c in run.clients if c.is_ready and not c.closed and c is not client
        )


def percentile(ordered: list[int], q: float) -> float:
    """C{loadgen}'s rank rule: the ceil(q n)-th smallest, in ms."""
    rank = max(1, math.ceil(q * len(ordered)))
    return round(ordered[rank - 1] / 1e6, 3)


def result(
    run: Run,
    t0: float,
    cpu: tuple[float, float],
    connected: int,
    error: str | None,
) -> dict[str, Any]:
    """The C{result} event."""
    opts = run.opts
    st = run.stats
    ordered = sorted(st.latencies)
    span = (st.last_delivery - st.first_send) / 1e9 if st.first_send else 0.0
    latency = None
    if ordered:
        latency = {
            "p50": percentile(ordered, 0.5),
            "p90": percentile(ordered, 0.9),
            "p99": percentile(ordered, 0.99),
            "p999": percentile(ordered, 0.999),
            "max": round(ordered[-1] / 1e6, 3),
        }
    cpu_s, cpu_wall = cpu
    connect_s = (
        (st.last_ready - st.first_connect) / 1e9
        if st.last_ready and st.first_connect
        else 0.0
    )
    return {
        "event": "result",
        "clients": opts.clients,
        "line_clients": 0,
        "ws_clients": 0,
        "ssh_clients": opts.clients,
        "senders": opts.senders,
        "mode": "idle" if opts.idle else "rate",
        "proto": "tchat",
        "rooms": opts.rooms,
        "rate": None if opts.idle else opts.rate,
        "window": None,
        "size": opts.size,
        "seconds": opts.seconds if not opts.idle else 0.0,
        "sent": st.sent,
        "expected": st.expected,
        "delivered": st.delivered,
        "lost": st.expected - st.delivered,
        "duplicates": st.duplicates,
        "reordered": st.reordered,
        "self_echoes": st.self_echoes,
        "foreign": st.foreign,
        "deliveries_per_s": round(st.delivered / span, 1) if span > 0 else 0.0,
        "latency_ms": latency,
        "late_sends": st.late_sends,
        "skipped_sends": 0,
        "connect_s": round(connect_s, 3),
        "connected": connected,
        "errors": st.errors,
        "error_samples": st.error_samples,
        "server_closes": st.server_closes,
        "server_close_samples": st.close_samples,
        "gen_cpu_s": round(cpu_s, 3),
        "gen_cpu_pct": round(100 * cpu_s / cpu_wall, 1) if cpu_wall > 0 else 0.0,
        "wall_s": round(time.monotonic() - t0, 3),
        "ssh": algorithms(run),
        "error": error,
    }


def held(run: Run) -> int:
    """The clients ready and still connected."""
    return sum(1 for c in run.clients if c.is_ready and not c.closed)


def emit(event: dict[str, Any]) -> None:
    """One JSON line on stdout, now."""
    print(json.dumps(event), flush=True)


async def connect_all(run: Run) -> str | None:
    """Open every client; C{None}, or why the run cannot go on."""
    opts = run.opts
    key = asyncssh.generate_private_key("ssh-ed25519")
    run.clients = [Client(run, i) for i in range(opts.clients)]
    gate = asyncio.Semaphore(opts.conc)
    tasks = [
        asyncio.ensure_future(connect_one(run, i, key, gate))
        for i in range(opts.clients)
    ]
    deadline = time.monotonic() + opts.connect_timeout
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), opts.connect_timeout)
        left = deadline - time.monotonic()
        if left > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.all_ready.wait(), left)
    except TimeoutError:
        for task in tasks:
            task.cancel()
    if run.ready == 0:
        return "no client connected"
    if not opts.idle and run.ready < opts.clients:
        return f"only {run.ready} of {opts.clients} clients ready"
    return None


async def close_all(run: Run) -> None:
    """Close every connection (at most 5 s)."""
    run.ending = True
    conns = [c.conn for c in run.clients if c.conn is not None]
    for conn in conns:
        conn.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(c.wait_closed() for c in conns), return_exceptions=True),
            5,
        )


async def main_async(opts: argparse.Namespace, stop: asyncio.Event) -> int:
    """One run; prints its events; returns the exit status."""
    t0 = time.monotonic()
    run = Run(opts)
    st = run.stats
    error: str | None = None
    cpu0, wall0 = time.process_time(), time.monotonic()
    try:
        error = await connect_all(run)
        if error is None:
            await asyncio.sleep(opts.settle)
            cpu0, wall0 = time.process_time(), time.monotonic()
            if opts.idle:
                emit(
                    {
                        "event": "ready",
                        "clients": opts.clients,
                        "connected": held(run),
                        "connect_s": round((st.last_ready - st.first_connect) / 1e9, 3),
                    }
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), opts.hold)
            else:
                st.send_start = time.monotonic_ns()
                end = st.send_start + int(opts.seconds * 1e9)
                sender = asyncio.ensure_future(send_loop(run, end))
                stopped = asyncio.ensure_future(stop.wait())
                await asyncio.wait({sender, stopped}, return_when="FIRST_COMPLETED")
                if stopped.done():
                    sender.cancel()
                    error = "interrupted by a signal"
                else:
                    stopped.cancel()
                    drain_end = time.monotonic() + opts.drain
                    while st.delivered < st.expected and time.monotonic() < drain_end:
                        await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        error = f"--max-seconds {opts.max_seconds:g} reached"
    cpu = time.process_time() - cpu0, time.monotonic() - wall0
    # The result first: a harness that stops this process once it has the
    # result line (SIGTERM, then SIGKILL) must not wait for the goodbyes.
    emit(result(run, t0, cpu, held(run), error))
    with contextlib.suppress(asyncio.CancelledError):
        await close_all(run)
    return 0 if error is None else 1


async def guarded(opts: argparse.Namespace) -> int:
    """L{main_async} under C{--max-seconds}, SIGTERM/SIGINT ending it."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.ensure_future(main_async(opts, stop))
    done, _ = await asyncio.wait({task}, timeout=opts.max_seconds)
    if not done:
        task.cancel()
    return await task


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ssh", required=True, help="HOST:PORT of the SSH door")
    parser.add_argument("--proto", default="tchat", choices=["tchat"])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--senders", type=int, default=0)
    parser.add_argument("--rate", type=float, help="messages a second per sender")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--idle", action="store_true")
    parser.add_argument("--hold", type=float, default=60.0)
    parser.add_argument("--rooms", type=int, default=0)
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument("--drain", type=float, default=5.0)
    parser.add_argument("--conc", type=int, default=50, help="handshakes at once")
    parser.add_argument("--connect-timeout", type=float, default=120.0)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    opts = parser.parse_args(argv)
    host, _, port = opts.ssh.rpartition(":")
    if host not in (HOST, "localhost") or not port.isdigit():
        parser.error("--ssh: 127.0.0.1:PORT (loopback only)")
    opts.host, opts.port = HOST, int(port)
    if not 1 <= opts.clients <= 10_000:
        parser.error("--clients: 1..10000")
    if opts.idle:
        opts.senders = 0
    else:
        if opts.rate is None or opts.rate <= 0:
            parser.error("--rate R (> 0) or --idle")
        if not 1 <= opts.senders <= opts.clients:
            parser.error("--senders: 1..clients")
    if not 0 < opts.seconds <= 600 or not 0 < opts.max_seconds <= 3600:
        parser.error("--seconds: 0..600, --max-seconds: 0..3600")
    if not 1 <= opts.conc <= 1000 or opts.rooms < 0:
        parser.error("--conc: 1..1000, --rooms >= 0")
    return opts


def main(argv: list[str] | None = None) -> int:
    """Run once; the exit status."""
    opts = parse_args(argv)
    return asyncio.run(guarded(opts))


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
