# -*- test-case-name: tests.integration.test_tornet -*-
"""
The private Tor network of L{tests.integration.tornet} works: a line goes
through a client tor's SOCKS port to a v3 onion service and back, all on
127.0.0.1.

The tests of L{TorNetworkTests} share one network (started by the first,
about 20 s); L{TorNetworkStopTests} starts one of its own to stop it.
Without tor, tor-gencert or txtorcon they skip (or fail under
C{TCHAT_REQUIRE_ALL=1}).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import time
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, connectionDone
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from twisted.trial.unittest import FailTest, TestCase

from tests.integration.server import (
    LOOPBACK,
    ChatClient,
    async_test,
    global_reactor,
    make_directory,
)
from tests.integration.tornet import (
    OneProtocolFactory,
    TorNetwork,
    TorNetworkError,
    close_control,
    connect_control,
    connect_onion,
    find_program,
    in_thread,
    require_tor,
    shared_network,
)

ONION_PORT = 23
"""The virtual port of every onion service here."""

ONION = re.compile(r"[a-z2-7]{56}\.onion")
"""A v3 onion address."""


class _Echo(LineReceiver):
    """
    Sends every line back.
    """

    factory: _EchoFactory

    def connectionMade(self) -> None:
        self.factory.connections.append(self)

    def lineReceived(self, line: bytes) -> None:
        self.sendLine(line)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.connections.remove(self)


ED25519_BASE_POINT = bytes.fromhex("58" + "66" * 31)
"""A valid ed25519 public key (the curve's base point) that no onion service
here uses."""


def _onion_address(public_key: bytes) -> str:
    """
    The v3 onion address of an ed25519 public key (rend-spec-v3, 6).
    """
    version = b"\x03"
    checksum = hashlib.sha3_256(b".onion checksum" + public_key + version).digest()
    raw = public_key + checksum[:2] + version
    return base64.b32encode(raw).decode("ascii").lower() + ".onion"


class _EchoFactory(Factory[_Echo]):
    """
    Builds L{_Echo}s and knows which are connected, so that a test can
    wait until tor has closed them.
    """

    def __init__(self) -> None:
        self.connections: list[_Echo] = []

    def buildProtocol(self, addr: IAddress | None) -> _Echo:
        protocol = _Echo()
        protocol.factory = self
        return protocol


async def _wait_for(what: str, done: Any, timeout: float) -> None:
    """
    Poll C{done()} until it is true.

    @raise FailTest: After C{timeout} seconds.
    """
    reactor = global_reactor()
    for _ in range(int(timeout / 0.05)):
        if done():
            return
        d: Deferred[None] = Deferred()
        reactor.callLater(0.05, d.callback, None)
        await d
    raise FailTest(f"waited {timeout} s for {what}")


class TorNetworkTests(TestCase):
    """
    A shared private Tor network carries onion traffic.
    """

    timeout = 300

    async def _echo_server(self) -> tuple[int, _EchoFactory]:
        """
        A line echo server on 127.0.0.1; stopped in cleanup after tor has
        closed every connection to it.

        @return: Its port and factory.
        """
        factory = _EchoFactory()
        port = global_reactor().listenTCP(0, factory, interface=LOOPBACK)

        async def stop() -> None:
            await _wait_for(
                "tor to close its connections to the echo server",
                lambda: not factory.connections,
                30,
            )
            await port.stopListening()

        self.addCleanup(lambda: Deferred.fromCoroutine(stop()))
        return port.getHost().port, factory

    async def _control(self, port: int) -> Any:
        """
        A txtorcon control connection, closed in cleanup.
        """
        tor = await connect_control(port)
        self.addCleanup(lambda: Deferred.fromCoroutine(close_control(tor)))
        return tor

    @async_test
    async def test_onion_round_trip(self) -> None:
        """
        A line sent to a v3 onion service through the client tor's SOCKS
        port reaches a local echo server through the onion-service tor and
        comes back; no tor has a socket off loopback.
        """
        network = await shared_network()
        local_port, echo = await self._echo_server()
        tor = await self._control(network.service_control_port)
        progress: list[str] = []
        creating = tor.create_onion_service(
            [(ONION_PORT, f"{LOOPBACK}:{local_port}")],
            version=3,
            progress=lambda percent, tag, text: progress.append(
                f"{percent}% {tag}: {text}"
            ),
        )
        creating.addTimeout(180, global_reactor())
        try:
            service = await creating
        except Exception as e:
            raise FailTest(
                f"no onion service within 180 s: {e!r}\nprogress: {progress}\n"
                f"{network.describe()}"
            ) from None
        host = service.hostname
        self.assertRegex(host, ONION)

        client = ChatClient("onion client")
        await connect_onion(
            network.client_socks_port,
            host,
            ONION_PORT,
            OneProtocolFactory(client),
            timeout=120,
        )
        self.addCleanup(lambda: Deferred.fromCoroutine(client.close(timeout=30)))
        client.say("hello over the onion")
        self.assertEqual(await client.next_line(timeout=30), b"hello over the onion")
        client.say("and again")
        self.assertEqual(await client.next_line(timeout=30), b"and again")
        self.assertEqual(len(echo.connections), 1)
        self.assertEqual(network.foreign_sockets(), [])

    @async_test
    async def test_unknown_onion(self) -> None:
        """
        Connecting to a well-formed onion address that no service has
        fails with L{TorNetworkError} after the given time, listing each
        attempt, and leaves no connection open, whether tor refused the
        attempts or they timed out.
        """
        network = await shared_network()
        started = time.monotonic()
        with self.assertRaises(TorNetworkError) as caught:
            await connect_onion(
                network.client_socks_port,
                _onion_address(ED25519_BASE_POINT),
                ONION_PORT,
                OneProtocolFactory(ChatClient("nobody")),
                timeout=8,
                attempt_timeout=5,
            )
        self.assertGreaterEqual(time.monotonic() - started, 8)
        self.assertIn("onion service descriptor not found", str(caught.exception))

        # Attempts cut short by their own timeout, before tor answers.
        with self.assertRaises(TorNetworkError) as caught:
            await connect_onion(
                network.client_socks_port,
                _onion_address(ED25519_BASE_POINT),
                ONION_PORT,
                OneProtocolFactory(ChatClient("nobody")),
                timeout=2,
                attempt_timeout=0.05,
            )
        self.assertIn("TimeoutError", str(caught.exception))

    @async_test
    async def test_add_onion_same_address(self) -> None:
        """
        Re-adding an onion service with the private key tor returned for it
        gives the same address; raw C{ADD_ONION} answers at once, with no
        descriptor upload to wait for.
        """
        network = await shared_network()
        local_port, _ = await self._echo_server()
        tor = await self._control(network.service_control_port)
        target = f"Port={ONION_PORT},{LOOPBACK}:{local_port}"

        reply = await tor.protocol.queue_command(f"ADD_ONION NEW:ED25519-V3 {target}")
        fields = dict(re.findall(r"^(\w+)=(\S+)$", reply, re.MULTILINE))
        service_id, key = fields.get("ServiceID"), fields.get("PrivateKey")
        self.assertIsNotNone(service_id, reply)
        self.assertRegex(f"{service_id}.onion", ONION)
        assert key is not None, reply
        self.assertTrue(key.startswith("ED25519-V3:"), reply)
        self.assertEqual(
            (await tor.protocol.queue_command(f"DEL_ONION {service_id}")).strip(),
            "OK",
        )

        again = await tor.protocol.queue_command(f"ADD_ONION {key} {target}")
        self.assertIn(f"ServiceID={service_id}", again)
        self.assertNotIn("PrivateKey", again)
        await tor.protocol.queue_command(f"DEL_ONION {service_id}")

    @async_test
    async def test_launch_options(self) -> None:
        """
        The options for a tor that tchat launches into the network, set on
        a C{txtorcon.TorConfig}, make a torrc that tor accepts, with one
        C{DirAuthority} per authority and none of the per-node options.
        """
        import txtorcon

        network = await shared_network()
        options = network.torrc_options_for_launch()
        self.assertEqual(options["DirAuthority"], network.dir_authority_lines)
        self.assertEqual(len(network.dir_authority_lines), 3)
        for name in ("DataDirectory", "ControlPort", "Log", "SocksPort"):
            self.assertNotIn(name, options)
        self.assertNotIn("__OwningControllerProcess", options)

        config = txtorcon.TorConfig()
        for name, value in options.items():
            setattr(config, name, value)
        directory = make_directory(self)
        torrc = os.path.join(directory, "torrc")
        with open(torrc, "w", encoding="utf-8") as f:
            f.write(config.create_torrc())
            f.write(f"DataDirectory {directory}/data\nSocksPort 0\n")
        tor = find_program("tor")
        assert tor is not None
        result = await in_thread(
            lambda: subprocess.run(
                [tor, "--verify-config", "-f", torrc],
                capture_output=True,
                timeout=60,
                check=False,
            )
        )
        output = (result.stdout + result.stderr).decode("utf-8", "replace")
        self.assertEqual(result.returncode, 0, output)


class TorNetworkStopTests(TestCase):
    """
    L{TorNetwork.stop} ends every tor it started.
    """

    timeout = 120

    @async_test
    async def test_stop(self) -> None:
        """
        After L{TorNetwork.stop} no tor of the network runs, and a second
        stop does nothing.
        """
        require_tor()
        network = TorNetwork(os.path.join(make_directory(self), "net"))
        self.addCleanup(lambda: Deferred.fromCoroutine(in_thread(network.stop)))
        await in_thread(network.start)
        self.assertEqual(len(network.pids), 8)
        self.assertEqual(network.running_pids(), network.pids)
        for line in network.dir_authority_lines:
            self.assertIn(f" {LOOPBACK}:", line)
        with open(network.nodes[0].torrc, encoding="utf-8") as f:
            self.assertIn(f"__OwningControllerProcess {os.getpid()}\n", f.read())
        # Let them get going, so that stop meets running tors.
        await connect_and_close(network.service_control_port)
        await in_thread(network.stop)
        self.assertEqual(network.running_pids(), [])
        for pid in network.pids:
            self.assertFalse(os.path.exists(f"/proc/{pid}"), pid)
        await in_thread(network.stop)


async def connect_and_close(control_port: int) -> None:
    """
    Connect txtorcon to a control port (retrying while tor starts) and
    close the connection again.
    """
    tor = await connect_control(control_port)
    await close_control(tor)
