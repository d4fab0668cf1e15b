"""
Plain asyncio line broadcast server: a benchmark peer for C{bench/matrix.py}.

The idiomatic fast asyncio API (C{asyncio.Protocol} and C{transport.write}),
default event loop, no uvloop.  Each client is greeted with C{welcome\\r\\n};
every line a client sends (LF or CRLF terminated) goes to every connected
client, the sender included, re-terminated with CRLF.  A line longer than
16 KiB drops its connection.  Binds on loopback only.

    python bench/peers/asyncio_line.py --port 0

Prints C{listening on 127.0.0.1:PORT} once listening; SIGTERM or SIGINT
stops it with exit status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import signal
import socket

MAX_LENGTH = 16384
# The listen queue tchat asks for (tchat.endpoints.DEFAULT_BACKLOG), so that a
# burst of connections meets the same queue here as there; the library default
# (Twisted 50, asyncio 100) overflows and the kernel then delays handshakes.
BACKLOG = 1024
CLIENTS: set[LineBroadcast] = set()


class LineBroadcast(asyncio.Protocol):
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""
        # asyncio already sets TCP_NODELAY on TCP transports; say so anyway.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        CLIENTS.add(self)
        transport.write(b"welcome\r\n")

    def data_received(self, data: bytes) -> None:
        lines = (self.buffer + data).split(b"\n")
        self.buffer = lines.pop()
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > MAX_LENGTH:
                self.transport.abort()
                return
            # Each line is its own write to each client, as the Twisted
            # peer's sendLine and tchat's deliveries are (no coalescing of
            # the lines of one read, which would measure something else).
            line += b"\r\n"
            for client in CLIENTS:
                client.transport.write(line)
        if len(self.buffer) > MAX_LENGTH:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        CLIENTS.discard(self)


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


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(LineBroadcast, host, port, backlog=BACKLOG)
    bound = server.sockets[0].getsockname()[1]
    print(f"listening on {host}:{bound}", flush=True)
    await stop.wait()
    server.close()
    for client in list(CLIENTS):
        client.transport.abort()


def main() -> None:
    args = parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
