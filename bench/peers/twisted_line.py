"""
Bare Twisted line broadcast server: a benchmark peer for C{bench/matrix.py}.

A C{LineReceiver} (CRLF delimiter, default C{MAX_LENGTH}) on the default
reactor, and a C{Factory} holding the set of connected protocols.  Each
client is greeted with C{welcome\\r\\n}; every line a client sends goes to
every connected client, the sender included, with C{sendLine}.  Binds on
loopback only.

    python bench/peers/twisted_line.py --port 0

Prints C{listening on 127.0.0.1:PORT} once listening; SIGTERM or SIGINT
stops it with exit status 0.
"""

from __future__ import annotations

import argparse
import ipaddress

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import quoteStringArgument, serverFromString
from twisted.internet.interfaces import IReactorCore, ITCPTransport
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver

# The listen queue tchat asks for (tchat.endpoints.DEFAULT_BACKLOG), so that a
# burst of connections meets the same queue here as there; the library default
# (Twisted 50, asyncio 100) overflows and the kernel then delays handshakes.
BACKLOG = 1024


class LineBroadcast(LineReceiver):
    delimiter = b"\r\n"

    def __init__(self, clients: set[LineBroadcast]) -> None:
        self.clients = clients

    def connectionMade(self) -> None:
        if ITCPTransport.providedBy(self.transport):
            self.transport.setTcpNoDelay(True)
        self.clients.add(self)
        self.sendLine(b"welcome")

    def lineReceived(self, line: bytes) -> None:
        for client in self.clients:
            client.sendLine(line)

    def connectionLost(self, reason: object = None) -> None:
        self.clients.discard(self)


class BroadcastFactory(Factory):
    def __init__(self) -> None:
        self.clients: set[LineBroadcast] = set()

    def buildProtocol(self, addr: object) -> LineBroadcast:
        return LineBroadcast(self.clients)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        parser.error(f"--host must be a loopback address, not {args.host!r}")
    return args


async def serve(reactor: IReactorCore, host: str, port: int) -> None:
    description = f"tcp:{port}:interface={quoteStringArgument(host)}:backlog={BACKLOG}"
    listening = await serverFromString(reactor, description).listen(BroadcastFactory())
    print(f"listening on {host}:{listening.getHost().port}", flush=True)
    # Serve until SIGTERM or SIGINT stops the reactor.
    await Deferred()


def main() -> None:
    args = parse_args()
    task.react(serve, [args.host, args.port])


if __name__ == "__main__":
    main()
