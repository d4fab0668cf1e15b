"""
In-process cost of one room message through the hub and a door, without
sockets: C{--users} users of the door in one room, one of them says
C{--messages} lines, each shown to all the others.  Prints one JSON line:
CPU microseconds per message and per delivery, best of C{--rounds}.

    python bench/hub_fanout.py                  # the telnet door
    python bench/hub_fanout.py --door web       # the WebSocket door
    python bench/hub_fanout.py --door irc       # the IRC door
    PYTHONPATH=/path/to/other/checkout python bench/hub_fanout.py

The web door's users open their WebSocket through Autobahn's real
handshake, in memory; then the sender's frames are handed to the door as
Autobahn hands them (C{onMessage}), and what the door writes is kept and
never read.

The second form measures another version of tchat with the same script
(the hub's public API is all it uses), so two versions can be compared
side by side in one session, free of the noise of sockets and scheduling.
"""

import argparse
import json
import random
import time
from typing import Any

import txaio
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.test import iosim

import tchat
from tchat.config import HistoryConfig, LimitsConfig, ServerConfig, WebConfig
from tchat.hub import ChatFactory
from tchat.irc import IRCFactory
from tchat.telnet import TelnetFactory
from tchat.web import WebChatFactory


class _Discard(StringTransport):
    """A transport that takes every write and keeps none of it."""

    def write(self, data: bytes) -> None:
        pass


def _web_users(hub: ChatFactory, clock: Clock, users: int) -> Any:
    """
    Open C{users} WebSockets through the real handshake, in memory.

    @return: The door's protocol of the first one (the sender).
    """
    config: Any = txaio.config  # type: ignore[attr-defined]
    config.loop = clock
    factory = WebChatFactory(hub, WebConfig(ping_interval=0))
    address = IPv4Address("TCP", "127.0.0.1", 8080)
    servers = []
    for _ in range(users):
        server = factory.buildProtocol(address)
        client_factory = WebSocketClientFactory("ws://127.0.0.1:8080/ws")
        client_factory.protocol = WebSocketClientProtocol
        client = client_factory.buildProtocol(address)
        pump = iosim.connect(
            server,
            iosim.FakeTransport(server, isServer=True),
            client,
            iosim.FakeTransport(client, isServer=False),
            greet=False,
        )
        pump.flush()
        servers.append(server)
    return servers[0]


def run(users: int, messages: int, history: bool, door: str) -> float:
    """
    @return: CPU seconds for the sender's lines to reach everyone.
    """
    clock = Clock()
    hub = ChatFactory(
        ServerConfig(),
        clock,
        random.Random(1),
        history=HistoryConfig(enabled=history, path=":memory:"),
        limits=LimitsConfig(
            messages_per_second=0, room_messages_per_second=0, output_queue=1 << 30
        ),
    )
    hub.start()
    if door == "web":
        sender = _web_users(hub, clock, users)
        frames = [
            json.dumps({"type": "message", "message": f"message {n}"}).encode()
            for n in range(messages)
        ]
        start = time.process_time()
        for frame in frames:
            sender.onMessage(frame, False)
        return time.process_time() - start
    if door == "irc":
        factory: Any = IRCFactory(hub)
        lines = [
            f"PRIVMSG #lobby :message {n} of the benchmark\r\n".encode()
            for n in range(messages)
        ]
    else:
        factory = TelnetFactory(hub)
        lines = [f"message {n} of the benchmark\r\n".encode() for n in range(messages)]
    protocols = []
    for n in range(users):
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(_Discard())
        if door == "irc":
            protocol.dataReceived(
                f"NICK u{n}\r\nUSER u{n} 0 * :u{n}\r\nJOIN #lobby\r\n".encode()
            )
        protocols.append(protocol)
    sender = protocols[0]
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
    parser.add_argument("--door", choices=("telnet", "web", "irc"), default="telnet")
    args = parser.parse_args()
    best = min(
        run(args.users, args.messages, args.history, args.door)
        for _ in range(args.rounds)
    )
    deliveries = args.messages * (args.users - 1)
    print(
        json.dumps(
            {
                "scenario": f"hub-fanout-{args.users}-{args.door}",
                "tchat": tchat.__file__,
                "messages": args.messages,
                "us_per_message": round(best * 1e6 / args.messages, 3),
                "us_per_delivery": round(best * 1e6 / deliveries, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
