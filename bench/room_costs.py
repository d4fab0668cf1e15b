"""
How the cost of a join, a message and an idle member grows with the size
of a room (issue 24): in process, through the hub and the telnet door,
without sockets, for rooms of 100, 1,000 and 10,000 members.  Prints one
JSON line per room size, then a Markdown table.

    python bench/room_costs.py                    # 100, 1,000, 10,000
    python bench/room_costs.py --members 100 1000
    python bench/room_costs.py --big-room 0       # before: a line per join

For each size, a room is filled with that many telnet users, then:

  - C{join}: C{--churn} more users arrive and leave again, one after the
    other, with the big-room summaries (C{[limits] big_room_summary})
    they cause; CPU microseconds per arrival and departure pair, all the
    deliveries it causes included;
  - C{message}: one member says C{--messages} lines; CPU microseconds per
    line, and per delivery;
  - C{idle}: Python memory per member (C{tracemalloc}, over the second
    half of the fill): the hub's and the door's state; the kernel's
    socket and Twisted's connection come on top (see C{idle-10k} in
    C{bench/matrix.py} for a real socket's whole cost).

CPU is C{time.process_time}; every figure is the best of C{--rounds},
after a round that warms up.  The
writes go nowhere (a transport that keeps nothing), so what is measured is
tchat's work, not the kernel's C{send}.
"""

import argparse
import gc
import json
import random
import time
import tracemalloc
from dataclasses import replace
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from tchat.config import LimitsConfig, ServerConfig
from tchat.hub import ChatFactory
from tchat.telnet import TelnetFactory


class _Discard(StringTransport):
    """A transport that takes every write and keeps none of it."""

    def write(self, data: bytes) -> None:
        pass


def _hub(big_room: int, clock: Clock) -> tuple[ChatFactory, TelnetFactory]:
    limits = LimitsConfig(
        max_connections=0,
        per_address=0,
        sessions_per_address=0,
        connects_per_minute=0,
        messages_per_second=0,
        room_messages_per_second=0,
        joins_per_minute=0,
        max_users_per_room=0,
        output_queue=1 << 30,
        big_room=big_room,
    )
    # No reconnect grace: an arrival is told to the room at once.
    server = ServerConfig(reconnect_grace=0)
    hub = ChatFactory(server, clock, random.Random(1), limits=limits)
    hub.start()
    return hub, TelnetFactory(hub)


def _arrive(factory: TelnetFactory) -> Any:
    protocol = factory.buildProtocol(None)
    protocol.makeConnection(_Discard())
    return protocol


def measure(members: int, big_room: int, churn: int, messages: int) -> dict[str, float]:
    """One round for a room of C{members}."""
    clock = Clock()
    gc.collect()
    tracemalloc.start()
    # Filled with presence told together (a room of 10,000 told line by
    # line takes minutes to fill in process); measured with C{big_room}.
    hub, factory = _hub(100, clock)
    protocols = []
    half = members // 2
    for n in range(members):
        if n == half:
            clock.advance(hub.settings.limits.big_room_summary)
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
        protocols.append(_arrive(factory))
        if n % 500 == 499:
            clock.advance(hub.settings.limits.big_room_summary)
    clock.advance(hub.settings.limits.big_room_summary)
    gc.collect()
    # The slope over the second half: what one more member costs, without
    # what the first ones paid once for everybody.
    idle = (tracemalloc.get_traced_memory()[0] - before) / (members - half)
    tracemalloc.stop()

    hub.settings.limits = replace(hub.settings.limits, big_room=big_room)
    summary = hub.settings.limits.big_room_summary
    start = time.process_time()
    for n in range(churn):
        _arrive(factory).connectionLost(None)
        if n % 50 == 49:
            clock.advance(summary)
    clock.advance(summary)
    join = (time.process_time() - start) / churn

    sender = protocols[0]
    lines = [f"message {n} of the benchmark\r\n".encode() for n in range(messages)]
    start = time.process_time()
    for line in lines:
        sender.dataReceived(line)
    message = (time.process_time() - start) / messages
    for protocol in protocols:
        protocol.connectionLost(None)
    return {
        "join_us": join * 1e6,
        "message_us": message * 1e6,
        "delivery_us": message * 1e6 / (members - 1),
        "idle_bytes": idle,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument(
        "--big-room", type=int, default=100, help="[limits] big_room (0: off)"
    )
    parser.add_argument("--churn", type=int, default=200, help="arrivals timed")
    parser.add_argument("--messages", type=int, default=50, help="lines timed")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for members in args.members:
        measure(members, args.big_room, 10, 10)  # warm up
        runs = [
            measure(members, args.big_room, args.churn, args.messages)
            for _ in range(args.rounds)
        ]
        row = {key: min(run[key] for run in runs) for key in runs[0]}
        row = {"members": members, "big_room": args.big_room, **row}
        print(json.dumps({k: round(v, 2) for k, v in row.items()}), flush=True)
        rows.append(row)
    print()
    print("| members | join + leave, µs CPU | message, µs CPU | per delivery, µs |")
    print("| ---: | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['members']:,} | {row['join_us']:,.0f} | "
            f"{row['message_us']:,.0f} | {row['delivery_us']:.2f} |"
        )
    print()
    print("| members | Python memory per idle member |")
    print("| ---: | ---: |")
    for row in rows:
        print(f"| {row['members']:,} | {row['idle_bytes'] / 1024:.2f} KiB |")


if __name__ == "__main__":
    main()
