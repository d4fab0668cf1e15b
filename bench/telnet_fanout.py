"""
Fan-out benchmark for the telnet door: a real C{twistd -n tchat} on
127.0.0.1, C{--clients} raw TCP clients in one room, C{--senders} of them
sending C{--rate} messages a second each for C{--seconds}.

Every payload carries a sender id, a sequence number and a monotonic send
time; receivers compute latency and count loss and reordering.  Prints one
JSON line.  Bounded in time and count; stops the server it started.

    python bench/telnet_fanout.py --clients 100 --senders 10 --rate 10

C{--history off} runs the server with C{[history] enabled = false} (memory
only), C{--history full} with C{sync = full}; the default is the embedded
default, SQLite with C{sync = normal}, in a temporary directory.
"""

import argparse
import asyncio
import functools
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

PAYLOAD = re.compile(rb"<[^>]+> b (\d+) (\d+) (\d+)\r\n")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


HISTORY = {
    "on": "",
    "off": "[history]\nenabled = false\n",
    "full": "[history]\nsync = full\n",
}


async def start_server(
    workdir: str, history: str = "on"
) -> tuple[asyncio.subprocess.Process, int]:
    # The matrix's configuration: flood limits off, or the senders here
    # would be told to slow down.
    bench = Path(__file__).with_name("tap.ini").read_text()
    Path(workdir, "tap.ini").write_text(bench + "[web]\nlisten =\n" + HISTORY[history])
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    proc = await asyncio.create_subprocess_exec(
        twistd,
        "-n",
        "--pidfile=",
        "tchat",
        "--telnet",
        "tcp:0:interface=127.0.0.1",
        cwd=workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    async with asyncio.timeout(20):
        while True:
            line = await proc.stdout.readline()
            if not line:
                raise RuntimeError("server exited before listening")
            found = re.search(rb"listening on 127\.0\.0\.1:(\d+)", line)
            if found:
                return proc, int(found.group(1))


class Receiver(asyncio.Protocol):
    """
    One client: parses payload lines as they arrive, in the loop's own
    callback, so that timing is not distorted by task switches.
    """

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.last: dict[int, int] = {}
        self.reordered = 0
        self.transport: asyncio.Transport | None = None
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        *lines, self._buffer = (self._buffer + data).split(b"\r\n")
        for line in lines:
            m = PAYLOAD.search(line + b"\r\n")
            if m:
                sender, seq, sent = (int(g) for g in m.groups())
                self.latencies.append((now - sent) / 1e6)
                if seq <= self.last.get(sender, -1):
                    self.reordered += 1
                self.last[sender] = seq


async def main(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as workdir:
        proc, port = await start_server(workdir, args.history)
        try:
            rss_before = rss_kib(proc.pid)
            t0 = time.monotonic()
            loop = asyncio.get_running_loop()
            receivers = [Receiver() for _ in range(args.clients)]
            for receiver in receivers:
                await loop.create_connection(
                    functools.partial(lambda r: r, receiver), "127.0.0.1", port
                )
            conns = [r.transport for r in receivers]
            connect_s = time.monotonic() - t0
            for conn in conns:
                assert conn is not None
                conn.write(b"/color off\r\n")
            await asyncio.sleep(1.0)
            rss_idle = rss_kib(proc.pid)
            for receiver in receivers:
                receiver.latencies.clear()
            await asyncio.sleep(0.5)

            async def send(index: int) -> int:
                writer = conns[index]
                assert writer is not None
                interval = 1 / args.rate
                count = int(args.seconds * args.rate)
                start = time.monotonic()
                for seq in range(count):
                    writer.write(f"b {index} {seq} {time.monotonic_ns()}\r\n".encode())
                    await asyncio.sleep(
                        max(0.0, start + (seq + 1) * interval - time.monotonic())
                    )
                return count

            cpu0, server0 = os.times(), cpu_s(proc.pid)
            sent = sum(await asyncio.gather(*(send(i) for i in range(args.senders))))
            await asyncio.sleep(1.0)
            cpu1, server1 = os.times(), cpu_s(proc.pid)
            latencies = sorted(x for r in receivers for x in r.latencies)
            expected = sent * (args.clients - 1)
            for conn in conns:
                assert conn is not None
                conn.close()
            return {
                "scenario": f"telnet-fanout-{args.clients}",
                "history": args.history,
                "clients": args.clients,
                "senders": args.senders,
                "rate_per_sender": args.rate,
                "seconds": args.seconds,
                "sent": sent,
                "delivered": len(latencies),
                "lost": expected - len(latencies),
                "reordered": sum(r.reordered for r in receivers),
                "deliveries_per_s": round(len(latencies) / args.seconds),
                "p50_ms": round(statistics.median(latencies), 2) if latencies else None,
                "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2)
                if latencies
                else None,
                "max_ms": round(latencies[-1], 2) if latencies else None,
                "connect_all_s": round(connect_s, 3),
                "server_kib_per_idle_conn": round(
                    (rss_idle - rss_before) / args.clients, 1
                ),
                "server_cpu_s": round(server1 - server0, 2),
                "server_us_per_delivery": round(
                    (server1 - server0) * 1e6 / max(1, len(latencies)), 2
                ),
                "generator_cpu_s": round(
                    (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system), 2
                ),
                "python": sys.version.split()[0],
            }
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                # communicate() also drains and closes the log pipe.
                await asyncio.wait_for(proc.communicate(), 10)
            except TimeoutError:
                proc.kill()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--history", choices=sorted(HISTORY), default="on")
    args = parser.parse_args()
    if not (
        2 <= args.clients <= 5000
        and 1 <= args.senders <= args.clients
        and args.seconds <= 120
    ):
        parser.error("bounded: 2..5000 clients, senders <= clients, at most 120 s")
    print(json.dumps(asyncio.run(main(args))))
