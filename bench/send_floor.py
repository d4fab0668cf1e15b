"""
The floor under C{fanout-1000}: how long a bare Python loop takes to
C{send} one short line to each of N loopback TCP sockets.

No server framework, no chat: a listening socket on 127.0.0.1, a reader
process (on CPU 1 where it can be pinned) holding N connections and
reading everything, and the writer (on CPU 0) sending one 60-byte line to
every connection, C{--rounds} times, 50 ms apart, as C{fanout-1000}'s
messages are.  The time of one fan-out is the lowest p99 a single-core
Python server can have in that scenario on this machine today.

    python bench/send_floor.py                 # 1,000 sockets, 60 rounds
    python bench/send_floor.py --clients 100

Prints one JSON line: microseconds per C{send} and milliseconds per
fan-out (median, p90, max).  Bounded: at most C{--rounds} rounds, and the
reader gives up after 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import statistics
import time

LINE = b"x" * 59 + b"\n"
READER_LIMIT = 60.0


def pin(cpu: int) -> None:
    """Run on C{cpu} when this machine has it (Linux only)."""
    if hasattr(os, "sched_setaffinity") and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})


def reader(port: int, clients: int, lines: int) -> None:
    """The receiving side: connect C{clients} sockets and read C{lines}."""
    pin(1)
    selector = selectors.DefaultSelector()
    for _ in range(clients):
        connection = socket.create_connection(("127.0.0.1", port))
        connection.setblocking(False)
        selector.register(connection, selectors.EVENT_READ)
    got, end = 0, time.monotonic() + READER_LIMIT
    while got < lines and time.monotonic() < end:
        for key, _ in selector.select(1):
            got += key.fileobj.recv(65536).count(b"\n")  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    clients, rounds = max(1, min(args.clients, 10_000)), max(1, min(args.rounds, 1000))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(2048)
    port = listener.getsockname()[1]
    child = os.fork()
    if child == 0:
        try:
            reader(port, clients, clients * rounds)
        finally:
            os._exit(0)
    pin(0)
    sockets = []
    for _ in range(clients):
        connection, _ = listener.accept()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.setblocking(False)
        sockets.append(connection)
    time.sleep(0.5)
    fanouts = []
    for _ in range(rounds):
        started = time.perf_counter()
        for connection in sockets:
            connection.send(LINE)
        fanouts.append((time.perf_counter() - started) * 1000)
        time.sleep(0.05)
    os.waitpid(child, 0)
    fanouts.sort()
    median = statistics.median(fanouts)
    print(
        json.dumps(
            {
                "clients": clients,
                "rounds": rounds,
                "us_per_send": round(median * 1000 / clients, 2),
                "fanout_ms": {
                    "median": round(median, 2),
                    "p90": round(fanouts[int(len(fanouts) * 0.9)], 2),
                    "max": round(fanouts[-1], 2),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
