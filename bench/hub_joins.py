"""
In-process cost of the hub and the telnet door's fan-out, without sockets:
1000 telnet users join one room, so every arrival is announced to everyone
already there (500,500 deliveries). Prints one JSON line; best of 3.

    python bench/hub_joins.py
"""

import json
import random
import time

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from tchat.config import ServerConfig
from tchat.hub import ChatFactory
from tchat.telnet import TelnetFactory

USERS = 1000


def run() -> float:
    hub = ChatFactory(ServerConfig(), Clock(), random.Random(1))
    factory = TelnetFactory(hub)
    start = time.perf_counter()
    for _ in range(USERS):
        factory.buildProtocol(None).makeConnection(StringTransport())
    return time.perf_counter() - start


if __name__ == "__main__":
    best = min(run() for _ in range(3))
    deliveries = USERS * (USERS + 1) // 2
    print(
        json.dumps(
            {
                "scenario": "hub-joins-1000",
                "seconds": round(best, 3),
                "us_per_delivery": round(best * 1e6 / deliveries, 2),
            }
        )
    )
