"""
websockets broadcast server: a benchmark peer for C{bench/matrix.py}.

The C{websockets} library's asyncio implementation
(C{websockets.asyncio.server.serve}) with its defaults, relaying each
message through its C{broadcast()} helper.  Each client is greeted with the
text message C{welcome}; every message a client sends goes to every
connected client, the sender included, with the same type (text or binary)
and payload.  Any path is accepted.  Binds on loopback only.

    python bench/peers/websockets_broadcast.py --port 0

Prints C{listening on 127.0.0.1:PORT} once listening; SIGTERM or SIGINT
stops it with exit status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import signal
import socket

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

# The listen queue tchat asks for (tchat.endpoints.DEFAULT_BACKLOG), so that a
# burst of connections meets the same queue here as there; the library default
# (Twisted 50, asyncio 100) overflows and the kernel then delays handshakes.
BACKLOG = 1024

CLIENTS: set[ServerConnection] = set()


async def handler(websocket: ServerConnection) -> None:
    # asyncio already sets TCP_NODELAY on TCP transports; say so anyway.
    sock = websocket.transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    CLIENTS.add(websocket)
    try:
        await websocket.send("welcome")
        async for message in websocket:
            broadcast(CLIENTS, message)
    except ConnectionClosed:
        pass
    finally:
        CLIENTS.discard(websocket)


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


async def run(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serve(handler, host, port, backlog=BACKLOG) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(f"listening on {host}:{bound}", flush=True)
        await stop.wait()


def main() -> None:
    args = parse_args()
    asyncio.run(run(args.host, args.port))


if __name__ == "__main__":
    main()
