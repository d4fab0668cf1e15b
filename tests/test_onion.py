"""
Tests for L{tchat.onion}: the onion door with a fake tor, so they run
without tor installed.  The real thing, on a private Tor network, is in
C{tests/integration/test_onion_server.py}.
"""

import base64
import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import provider

from tchat import onion
from tchat.config import ConfigError, OnionConfig, config_from_string

SERVICE_ID = "a" * 56
NEW_KEY = "ED25519-V3:bmV3IGtleQ=="


def in_place(f: Any, *args: Any) -> Deferred[Any]:
    try:
        return succeed(f(*args))
    except Exception:
        return fail()


class FakeTransport:
    def __init__(self, protocol: "FakeControl") -> None:
        self._protocol = protocol

    def loseConnection(self) -> None:
        self._protocol.lose()


class FakeControl:
    """
    A tor control connection: records commands, answers C{ADD_ONION} like
    tor, and delivers events when the test says so.
    """

    def __init__(self, socks: str = '"127.0.0.1:9050"') -> None:
        self.commands: list[str] = []
        self.listeners: dict[str, list[Any]] = {}
        self.info = {
            "status/bootstrap-phase": "NOTICE BOOTSTRAP PROGRESS=85 TAG=ap_conn "
            'SUMMARY="Connecting to a relay to build circuits"',
            "net/listeners/socks": socks,
        }
        self.disconnected: Deferred[None] = Deferred()
        self.transport = FakeTransport(self)

    def add_event_listener(self, name: str, callback: Any) -> Deferred[None]:
        self.listeners.setdefault(name, []).append(callback)
        return succeed(None)

    def get_info(self, key: str) -> Deferred[dict[str, str]]:
        return succeed({key: self.info[key]})

    def queue_command(self, command: str) -> Deferred[str]:
        self.commands.append(command)
        if command.startswith("ADD_ONION NEW:"):
            return succeed(f"ServiceID={SERVICE_ID}\nPrivateKey={NEW_KEY}")
        if command.startswith("ADD_ONION"):
            return succeed(f"ServiceID={SERVICE_ID}")
        return succeed("")

    def event(self, name: str, text: str) -> None:
        for callback in self.listeners.get(name, []):
            callback(text)

    def uploaded(self) -> None:
        self.event("HS_DESC", f"UPLOAD {SERVICE_ID} UNKNOWN $ABCD~relay1 xyz")
        self.event("HS_DESC", f"UPLOADED {SERVICE_ID} UNKNOWN $ABCD~relay1")

    def when_disconnected(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.disconnected.addBoth(lambda _: d.callback(None))
        return d

    def lose(self) -> None:
        if not self.disconnected.called:
            self.disconnected.callback(None)


class FakeTor:
    def __init__(self, protocol: FakeControl) -> None:
        self.protocol = protocol
        self.quit_called = False

    def quit(self) -> Deferred[None]:
        self.quit_called = True
        self.protocol.lose()
        return succeed(None)


class OnionServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.controls: list[FakeControl] = []
        self.connects: list[Any] = []
        self.key_file = os.path.abspath(self.mktemp()) + "/onion/tchat.key"
        self.config = OnionConfig(
            enabled=True,
            tor="tcp:127.0.0.1:9051",
            key_file=self.key_file,
            self_test_interval=60,
        )
        self.logged: list[str] = []
        self.addresses: list[str | None] = []
        self.probes: list[tuple[tuple[str, int], str, int]] = []
        self.answers: list[Deferred[None]] = []

        @provider(ILogObserver)
        def observe(event: LogEvent) -> None:
            self.logged.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    @property
    def control(self) -> FakeControl:
        return self.controls[-1]

    async def connect(self, reactor: Any, endpoint: Any, password: Any) -> FakeTor:
        self.connects.append(endpoint)
        self.controls.append(FakeControl())
        return FakeTor(self.control)

    async def probe(
        self, reactor: Any, socks: tuple[str, int], host: str, port: int
    ) -> None:
        self.probes.append((socks, host, port))
        self.answers.append(Deferred())
        await self.answers[-1]

    def start(
        self, config: OnionConfig | None = None, connect: Any = None
    ) -> onion.OnionService:
        factories: dict[str, IProtocolFactory] = {
            "telnet": Factory.forProtocol(Protocol),
            "web": Factory.forProtocol(Protocol),
        }
        service = onion.OnionService(
            config or self.config,
            self.reactor,
            factories,
            connect=connect or self.connect,
            blocking=in_place,
            published=self.addresses.append,
            probe=self.probe,
        )
        service.startService()
        self.addCleanup(service.stopService)
        return service

    def published(self, config: OnionConfig | None = None) -> onion.OnionService:
        service = self.start(config)
        self.control.uploaded()
        self.assertEqual(service.state, "up")
        return service

    def test_local_listeners(self) -> None:
        """
        Each onion port gets its own listener on 127.0.0.1, started at once.
        """
        service = self.start()
        servers = [
            (port, interface) for port, _, _, interface in self.reactor.tcpServers
        ]
        self.assertEqual(servers, [(0, "127.0.0.1"), (0, "127.0.0.1")])
        self.assertEqual(sorted(service.local_ports), [23, 80])

    def test_publish_new_key(self) -> None:
        """
        The first start creates a key, saves it with mode 0600, writes the
        address next to it, logs the address and tells the hub, once tor
        has uploaded the descriptor.
        """
        service = self.start()
        self.assertEqual(service.state, "publishing")
        self.assertEqual(
            self.control.commands,
            [
                f"ADD_ONION NEW:ED25519-V3 Port=23,127.0.0.1:{service.local_ports[23]} "
                f"Port=80,127.0.0.1:{service.local_ports[80]}"
            ],
        )
        self.assertEqual(self.addresses, [])
        self.control.uploaded()
        address = SERVICE_ID + ".onion"
        self.assertEqual((service.state, service.address), ("up", address))
        self.assertEqual(self.addresses, [address])
        key = Path(self.key_file)
        self.assertEqual(key.read_text().strip(), NEW_KEY)
        self.assertEqual(stat.S_IMODE(key.stat().st_mode), 0o600)
        self.assertEqual(onion.address_file(self.config).read_text().strip(), address)
        self.assertIn(
            f"onion service published at {address} (telnet on port 23, web on port 80)",
            self.logged,
        )
        self.assertIn("onion: uploading the descriptor to $ABCD~relay1", self.logged)
        self.assertEqual(service.status()["descriptor_uploads"], 1)

    def test_saved_key_reused(self) -> None:
        """
        A saved key is given to tor, so the address survives restarts.
        """
        key = Path(self.key_file)
        key.parent.mkdir(parents=True)
        key.write_text("ED25519-V3:c2F2ZWQ=\n")
        self.start()
        self.assertTrue(
            self.control.commands[0].startswith("ADD_ONION ED25519-V3:c2F2ZWQ= Port=")
        )

    def test_ephemeral(self) -> None:
        """
        An ephemeral service writes nothing to disk, but keeps its address
        in memory when the control connection comes back.
        """
        service = self.published(replace(self.config, ephemeral=True))
        self.assertFalse(Path(self.key_file).parent.exists())
        self.control.lose()
        self.assertEqual(service.state, "down")
        self.assertEqual(self.addresses, [SERVICE_ID + ".onion", None])
        self.assertEqual(len(self.controls), 2)
        self.assertTrue(self.control.commands[0].startswith(f"ADD_ONION {NEW_KEY} "))
        self.control.uploaded()
        self.assertEqual(service.state, "up")
        self.assertFalse(Path(self.key_file).parent.exists())

    def test_client_auth(self) -> None:
        """
        Each authorized client gets a key pair, made once: tor is given the
        public halves, and each client's private key file is written
        (0600) in the form a client tor reads.
        """
        from cryptography.hazmat.primitives.asymmetric.x25519 import (
            X25519PrivateKey,
        )

        config = replace(self.config, client_auth=("alice", "bob"))
        self.published(config)
        command = self.control.commands[0]
        self.assertIn(" Flags=V3Auth ", command)
        folder = onion.clients_folder(config)
        publics = []
        for name in ("alice", "bob"):
            path = folder / f"{name}.auth_private"
            self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
            address, kind, scheme, private = path.read_text().strip().split(":")
            self.assertEqual(
                (address, kind, scheme), (SERVICE_ID, "descriptor", "x25519")
            )
            raw = base64.b32decode(private + "=" * (-len(private) % 8))
            public = X25519PrivateKey.from_private_bytes(raw).public_key()
            encoded = base64.b32encode(public.public_bytes_raw()).decode().rstrip("=")
            self.assertIn(f" ClientAuthV3={encoded}", command)
            publics.append(encoded)
        self.assertNotEqual(publics[0], publics[1])

        # A restart keeps the clients' keys.
        again = self.start(config)
        self.assertEqual(again.state, "publishing")
        for encoded in publics:
            self.assertIn(f" ClientAuthV3={encoded}", self.control.commands[0])

    def test_bootstrap_progress_from_tor(self) -> None:
        """
        Tor's bootstrap progress is logged and reported, from its status
        at connect time and from later events.
        """
        service = self.start()
        self.assertEqual(service.status()["bootstrap_percent"], 85)
        self.control.event(
            "STATUS_CLIENT",
            'NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"',
        )
        self.assertEqual(service.progress, 100)
        self.assertIn(
            "onion: tor bootstrapped 85%: Connecting to a relay to build circuits",
            self.logged,
        )
        self.assertIn("onion: tor bootstrapped 100%: Done", self.logged)

    def test_tor_unreachable(self) -> None:
        """
        When tor cannot be reached, tchat tries again, then reports the
        onion down with one clear error, and keeps trying quietly; its
        listeners stay as they are.
        """
        refused: list[Any] = []

        async def refuse(reactor: Any, endpoint: Any, password: Any) -> Any:
            refused.append(endpoint)
            raise ConnectionRefusedError("Connection refused")

        service = self.start(connect=refuse)
        for _ in range(200):
            self.reactor.advance(1)
        self.assertEqual(service.state, "down")
        self.assertEqual(service.status()["state"], "down")
        self.assertIn("ConnectionRefusedError", service.error or "")
        errors = [line for line in self.logged if "onion service is down" in line]
        self.assertEqual(len(errors), 1)
        self.assertIn("control port at tcp:127.0.0.1:9051", errors[0])
        self.assertEqual(len(self.reactor.tcpServers), 2)
        tried = len(refused)
        self.reactor.advance(onion.RETRY_DOWN + 20)
        self.assertGreater(len(refused), tried)
        self.assertEqual(
            len([line for line in self.logged if "onion service is down" in line]), 1
        )

    def test_tor_missing(self) -> None:
        """
        With C{tor = launch} and no tor program, the onion goes down after
        its attempts with one error that says to install tor; nothing
        hangs.
        """

        class NoTor(MemoryReactorClock):
            def spawnProcess(self, *args: Any, **kwargs: Any) -> Any:
                raise FileNotFoundError(2, "No such file or directory")

        self.reactor = NoTor()
        config = replace(self.config, tor="launch", tor_binary="/nonexistent/tor")
        service = self.start(config)
        for _ in range(20):
            self.reactor.advance(1)
        self.assertEqual(service.state, "down")
        errors = [line for line in self.logged if "onion service is down" in line]
        self.assertEqual(len(errors), 1)
        self.assertIn(
            "cannot run '/nonexistent/tor': No such file or directory", errors[0]
        )
        self.assertIn("is installed (apt install tor)", errors[0])

    def test_publish_timeout(self) -> None:
        """
        Publishing that never finishes is given up after
        C{bootstrap_timeout}, and tried again on a new connection.
        """
        service = self.start(replace(self.config, bootstrap_timeout=30))
        first = self.control
        self.reactor.advance(31)
        self.assertIn("bootstrap_timeout", service.error or "")
        self.assertTrue(first.disconnected.called)
        self.reactor.advance(3)
        self.assertEqual(len(self.controls), 2)
        self.assertTrue(self.control.commands[0].startswith("ADD_ONION"))

    def test_self_test_reachable(self) -> None:
        """
        Every C{self_test_interval} the service asks its own web door for
        its page through tor's SOCKS port, and records the round trip.
        """
        service = self.published()
        self.reactor.advance(59)
        self.assertEqual(self.probes, [])
        self.reactor.advance(1)
        self.assertEqual(
            self.probes, [(("127.0.0.1", 9050), SERVICE_ID + ".onion", 80)]
        )
        self.reactor.advance(2.5)
        self.answers[0].callback(None)
        test = service.status()["self_test"]
        self.assertEqual((test["reachable"], test["rtt_seconds"]), (True, 2.5))
        self.assertEqual((test["checks"], test["failures"]), (1, 0))
        self.assertIn(
            f"onion: self-test: {SERVICE_ID}.onion is reachable through tor "
            "(2.5 s round trip)",
            self.logged,
        )

    def test_self_test_republishes(self) -> None:
        """
        After C{republish_after} failed self-tests in a row (a timeout is
        a failure), the service is removed and published again with the
        same key, and it says so.
        """
        service = self.published()
        for n in range(3):
            self.reactor.advance(60)
            self.answers[-1].errback(ConnectionRefusedError("SOCKS error"))
            if n < 2:
                self.assertEqual(len(self.control.commands), 1)
        self.assertEqual(
            self.control.commands[1:],
            [
                f"DEL_ONION {SERVICE_ID}",
                self.control.commands[0].replace("NEW:ED25519-V3", NEW_KEY),
            ],
        )
        self.assertEqual(service.state, "publishing")
        self.control.uploaded()
        self.assertEqual(service.state, "up")
        status = service.status()
        self.assertEqual(status["republished"], 1)
        self.assertEqual(status["self_test"]["failures"], 3)
        self.assertEqual(status["self_test"]["reachable"], False)
        self.assertTrue(
            any(
                "failed 3 self-tests in a row; publishing it again" in line
                for line in self.logged
            )
        )

        # A probe that never answers times out and counts as a failure.
        self.reactor.advance(60)
        self.reactor.advance(onion.PROBE_TIMEOUT)
        self.assertEqual(service.status()["self_test"]["consecutive_failures"], 1)
        self.assertIn(
            "onion: self-test failed (1 in a row): no answer within 60 s", self.logged
        )

    def test_no_socks_no_self_test(self) -> None:
        """
        A tor without a SOCKS port cannot reach the service; the self-test
        says so once instead of failing forever.
        """

        async def connect(reactor: Any, endpoint: Any, password: Any) -> FakeTor:
            self.controls.append(FakeControl(socks=""))
            return FakeTor(self.control)

        service = self.start(connect=connect)
        self.control.uploaded()
        self.reactor.advance(600)
        self.assertEqual(self.probes, [])
        self.assertIsNone(service.status()["self_test"]["reachable"])
        self.assertIn(
            "onion: no self-test: tor at tcp:127.0.0.1:9051 has no SOCKS port",
            self.logged,
        )

    def test_lost_control_connection(self) -> None:
        """
        When tor's control connection drops (tor restarted), the onion is
        reported down and published again on a new connection.
        """
        service = self.published()
        self.control.lose()
        self.assertEqual(service.state, "down")
        self.assertIn(
            "onion: lost the control connection to tor; publishing again", self.logged
        )
        self.assertEqual(len(self.controls), 2)
        self.control.uploaded()
        self.assertEqual(service.state, "up")

    def test_bootstrap_progress(self) -> None:
        """
        A launched tor's bootstrap lines become progress reports.
        """
        seen: list[tuple[int, str]] = []
        process = onion._TorProcess(lambda p, s: seen.append((p, s)))
        process.outReceived(b"Nov 21 [notice] Bootstrapped 5% (conn): Connecting\n")
        process.outReceived(b"Nov 21 [notice] Bootstrapped 100% (done): Done\nNov 21 x")
        self.assertEqual(seen, [(5, "Connecting"), (100, "Done")])


class OnionConfigTests(SynchronousTestCase):
    def test_client_auth(self) -> None:
        """
        C{client_auth} is a list of client names.
        """
        config = config_from_string("[onion]\nclient_auth = alice, bob_2\n")
        self.assertEqual(config.onion.client_auth, ("alice", "bob_2"))

    def test_ports(self) -> None:
        config = config_from_string("[onion]\nports = 2323 = telnet, 8080 = web\n")
        self.assertEqual(config.onion.ports, ((2323, "telnet"), (8080, "web")))
        self.assertFalse(config.serves_ssh())

    def test_ssh_port(self) -> None:
        """
        C{22 = ssh} publishes the SSH door on the onion, with the host key
        of C{[ssh]} though C{[ssh]} listens nowhere else.
        """
        config = config_from_string("[onion]\nenabled = true\nports = 22 = ssh\n")
        self.assertEqual(config.onion.ports, ((22, "ssh"),))
        self.assertEqual(config.ssh.listen, ())
        self.assertTrue(config.serves_ssh(onion=True))
        self.assertTrue(config.serves_ssh())

    def test_bad(self) -> None:
        for text, words in [
            ("[onion]\nports = 23 = ftp\n", "not a door"),
            ("[onion]\nports = 23 = telnet, 23 = web\n", "twice"),
            ("[onion]\nports = x\n", "PORT = DOOR"),
            ("[onion]\ntor = http://x\n", "control endpoint"),
            ("[onion]\nbootstrap_timeout = 1\n", "between"),
            ("[onion]\nclient_auth = ../evil\n", "not a client name"),
            ("[onion]\nclient_auth = a, a\n", "twice"),
            ("[onion]\nself_test_interval = 2\n", "at least 5"),
            ("[onion]\nrepublish_after = 0\n", "between"),
        ]:
            with self.assertRaises(ConfigError) as caught:
                config_from_string(text, "tap.ini")
            self.assertIn(words, str(caught.exception))
            self.assertIn("[onion]", str(caught.exception))
