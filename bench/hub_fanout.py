"""
In-process cost of one room message through the hub and the telnet door,
without sockets: C{--users} telnet users in one room, one of them says
C{--messages} lines, each shown to all the others.  Prints one JSON line:
CPU microseconds per message and per delivery, best of C{--rounds}.

    python bench/hub_fanout.py
    PYTHONPATH=/path/to/other/checkout python bench/hub_fanout.py

The second form measures another version of tchat with the same script
(the hub's public API is all it uses), so two versions can be compared
side by side in one session, free of the noise of sockets and scheduling.
"""

import argparse
import json
import random
import time

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

import tchat
from tchat.config import HistoryConfig, LimitsConfig, ServerConfig
from tchat.hub import ChatFactory
from tchat.telnet import TelnetFactory


class _Discard(StringTransport):
    """A transport that takes every write and keeps none of it."""

    def write(self, data: bytes) -> None:
        pass


def run(users: int, messages: int, history: bool) -> float:
    """
    @return: CPU seconds for the sender's lines to reach everyone.
    """
    hub = ChatFactory(
        ServerConfig(),
        Clock(),
        random.Random(1),
        history=HistoryConfig(enabled=history, path=":memory:"),
        limits=LimitsConfig(messages_per_second=0, room_messages_per_second=0),
    )
    hub.start()
    factory = TelnetFactory(hub)
    protocols = []
    for _ in range(users):
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(_Discard())
        protocols.append(protocol)
    sender = protocols[0]
    lines = [f"message {n} of the benchmark\r\n".encode() for n in range(messages)]
    start = time.process_time()
    for line in lines:
        sender.dataReceived(line)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--history", action="store_true", help="memory history on")
    args = parser.parse_args()
    best = min(
        run(args.users, args.messages, args.history) for _ in range(args.rounds)
    )
    deliveries = args.messages * (args.users - 1)
    print(
        json.dumps(
            {
                "scenario": f"hub-fanout-{args.users}",
                "tchat": tchat.__file__,
                "messages": args.messages,
                "us_per_message": round(best * 1e6 / args.messages, 3),
                "us_per_delivery": round(best * 1e6 / deliveries, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
