"""
Integration tests: C{[limits]} on a real C{twistd -n tchat} over real
sockets: refusals users can read, limits that change on SIGHUP, TCP
keepalive on accepted sockets, and connections that never speak.

The flood, slow-reader and swarm tests of the issue are in
L{tests.integration.test_siege}.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess

from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.integration.server import (
    TAP_INI,
    async_test,
    connect,
    global_reactor,
    log_line,
    rewrite,
    start_server,
)
from tests.support import require


def _limits(*lines: str) -> str:
    """The test configuration with more C{[limits]} keys."""
    return TAP_INI.replace(
        "[limits]\n", "[limits]\n" + "".join(f"{x}\n" for x in lines)
    )


async def _raw(port: int, bind: str, send: bytes = b"", wait: float = 5.0) -> bytes:
    """
    Connect from C{bind}, send C{send}, and read until the server closes
    (or C{wait} seconds pass): what a refused client gets.
    """

    def run() -> bytes:
        with socket.create_connection(
            ("127.0.0.1", port), timeout=wait, source_address=(bind, 0)
        ) as s:
            if send:
                s.sendall(send)
            data = b""
            try:
                while chunk := s.recv(65536):
                    data += chunk
            except TimeoutError:
                pass
            return data

    return await deferToThread(run)


class RefusalTests(TestCase):
    """
    Per-address limits over real sockets, and reloading them.
    """

    @async_test
    async def test_refused_with_reason_then_reloaded(self) -> None:
        """
        With C{per_address = 2} and loopback not exempt, a third telnet
        connection from 127.0.0.2 gets a line saying why and is closed,
        while a user from 127.0.0.3 gets in; the web door answers 503 with
        the reason.  After SIGHUP with C{per_address = 5}, the third
        connection is welcomed.
        """
        server = await start_server(
            self,
            _limits("per_address = 2", "exempt ="),
            web="tcp:0:interface=127.0.0.1",
        )
        first = await connect(self, server.port, "first", bind="127.0.0.2")
        second = await connect(self, server.port, "second", bind="127.0.0.2")
        third = await _raw(server.port, "127.0.0.2")
        self.assertEqual(
            third,
            b"!!! too many connections from your address (limit 2); "
            b"close one and try again\r\n",
        )
        other = await connect(self, server.port, "other", bind="127.0.0.3")
        assert server.web_port is not None
        web = await _raw(
            server.web_port, "127.0.0.2", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        self.assertTrue(web.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), web)
        self.assertTrue(
            web.endswith(
                b"too many connections from your address "
                b"(limit 2); close one and try again\n"
            )
        )

        rewrite(server, _limits("per_address = 5", "exempt ="))
        server.process.signal_process("HUP")
        await log_line(server, "reload: applied [limits] per_address")
        third_again = await connect(self, server.port, "third", bind="127.0.0.2")
        first.say("all of us")
        for client in (second, other, third_again):
            await client.wait_for(re.compile(rb"<guest-[0-9a-f]{4}> all of us"))


class HygieneTests(TestCase):
    """
    Dead and silent connections are reaped.
    """

    @async_test
    async def test_keepalive_on_accepted_sockets(self) -> None:
        """
        The server's side of an accepted connection has TCP keepalive on
        with C{tcp_keepalive} seconds of idle time (C{ss} shows its timer),
        so a peer that vanished is noticed.
        """
        require(shutil.which("ss") is not None, "ss (iproute2) is not installed")
        server = await start_server(self, _limits("tcp_keepalive = 45"))
        await connect(self, server.port, "alice")

        def sockets() -> str:
            return subprocess.run(
                ["ss", "-tnoH", "state", "established", f"sport = :{server.port}"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout

        # Right after the welcome the socket's timer is a retransmit one;
        # once everything is acknowledged it shows the keepalive timer.
        keepalive = re.compile(r"timer:\(keepalive,(4[0-5]|[0-3]\d)(sec|\.\d+sec)")
        for _ in range(20):
            listing = await deferToThread(sockets)
            if keepalive.search(listing):
                break
            await deferLater(global_reactor(), 0.25, lambda: None)
        self.assertRegex(listing, keepalive)

    @async_test
    async def test_silent_connection_closed(self) -> None:
        """
        A telnet connection that sends nothing within C{silent_timeout} is
        told why and closed; one that spoke stays.
        """
        server = await start_server(self, _limits("silent_timeout = 1"))
        silent = await connect(self, server.port, "silent", colours=True)
        talker = await connect(self, server.port, "talker")
        talker.say("/motd")
        await silent.wait_for(
            re.compile(rb"\*\*\* Goodbye \(nothing received in 1s\)\r\n"), timeout=10
        )
        await silent.expect_closed()
        # The sweep that closed the silent one has passed the talker by.
        talker.say("/motd")
        await talker.wait_for(b"Message of the day")
        await talker.wait_for(b"Message of the day")
