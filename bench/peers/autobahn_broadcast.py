"""
Bare AutobahnPython broadcast server: a benchmark peer for C{bench/matrix.py}.

C{WebSocketServerProtocol} and C{WebSocketServerFactory} on the default
Twisted reactor with default protocol options, broadcasting as Autobahn's
own broadcast example does efficiently: the factory prepares each message
once (C{prepareMessage}) and every client gets it with
C{sendPreparedMessage}.  Each client is greeted with the text message
C{welcome}; every message a client sends goes to every connected client, the
sender included, with the same type (text or binary) and payload.  Any path
is accepted.  Binds on loopback only.

    python bench/peers/autobahn_broadcast.py --port 0

Prints C{listening on 127.0.0.1:PORT} once listening; SIGTERM or SIGINT
stops it with exit status 0.
"""

from __future__ import annotations

import argparse
import ipaddress

from autobahn.twisted.websocket import (
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import quoteStringArgument, serverFromString
from twisted.internet.interfaces import IReactorCore, ITCPTransport

# The listen queue tchat asks for (tchat.endpoints.DEFAULT_BACKLOG), so that a
# burst of connections meets the same queue here as there; the library default
# (Twisted 50, asyncio 100) overflows and the kernel then delays handshakes.
BACKLOG = 1024


class BroadcastProtocol(WebSocketServerProtocol):
    def onOpen(self) -> None:
        if ITCPTransport.providedBy(self.transport):
            self.transport.setTcpNoDelay(True)
        self.factory.clients.add(self)
        self.sendMessage(b"welcome", isBinary=False)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        prepared = self.factory.prepareMessage(payload, isBinary)
        for client in self.factory.clients:
            # Like ws's readyState check: no data frames after a close frame.
            if client.state == WebSocketServerProtocol.STATE_OPEN:
                client.sendPreparedMessage(prepared)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.clients.discard(self)


class BroadcastFactory(WebSocketServerFactory):
    protocol = BroadcastProtocol

    def __init__(self) -> None:
        super().__init__()
        self.clients: set[BroadcastProtocol] = set()


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
