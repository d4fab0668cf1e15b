"""
Tests for L{tchat.onion}: the onion door with a fake tor, so they run
without tor installed.  The real thing, on a private Tor network, is in
C{tests/integration/test_onion_server.py}.
"""

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


def in_place(f: Any, *args: Any) -> Deferred[Any]:
    try:
        return succeed(f(*args))
    except Exception:
        return fail()


class FakeService:
    hostname = "a" * 56 + ".onion"
    private_key = "ED25519-V3:c2VjcmV0"


class FakeTor:
    """
    Records the onion services asked for; publishes when told to.
    """

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []
        self.publishing: list[Deferred[FakeService]] = []
        self.quit_called = False

    def create_onion_service(self, ports: Any, **kwargs: Any) -> Deferred[FakeService]:
        self.asked.append({"ports": ports, **kwargs})
        kwargs["progress"](50.0, "uploading", "uploading descriptor")
        self.publishing.append(Deferred())
        return self.publishing[-1]

    def quit(self) -> Deferred[None]:
        self.quit_called = True
        return succeed(None)


class OnionServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.tor = FakeTor()
        self.connects: list[Any] = []
        self.key_file = os.path.abspath(self.mktemp()) + "/onion/tchat.key"
        self.config = OnionConfig(
            enabled=True, tor="tcp:127.0.0.1:9051", key_file=self.key_file
        )
        self.logged: list[str] = []

        @provider(ILogObserver)
        def observe(event: LogEvent) -> None:
            self.logged.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    async def connect(self, reactor: Any, endpoint: Any, password: Any) -> FakeTor:
        self.connects.append(endpoint)
        return self.tor

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
        )
        service.startService()
        self.addCleanup(service.stopService)
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
        address next to it, and logs the address.
        """
        service = self.start()
        self.assertEqual(service.state, "publishing")
        (asked,) = self.tor.asked
        self.assertEqual(
            asked["ports"],
            [
                (23, f"127.0.0.1:{service.local_ports[23]}"),
                (80, f"127.0.0.1:{service.local_ports[80]}"),
            ],
        )
        self.assertIsNone(asked["private_key"])
        self.assertEqual(asked["version"], 3)
        self.tor.publishing[0].callback(FakeService())
        self.assertEqual((service.state, service.address), ("up", FakeService.hostname))
        key = Path(self.key_file)
        self.assertEqual(key.read_text().strip(), FakeService.private_key)
        self.assertEqual(stat.S_IMODE(key.stat().st_mode), 0o600)
        self.assertEqual(
            onion.address_file(self.config).read_text().strip(), FakeService.hostname
        )
        self.assertTrue(any(FakeService.hostname in line for line in self.logged))
        self.assertTrue(any("publishing 50%" in line for line in self.logged))

    def test_saved_key_reused(self) -> None:
        """
        A saved key is given to tor, so the address survives restarts.
        """
        key = Path(self.key_file)
        key.parent.mkdir(parents=True)
        key.write_text("ED25519-V3:c2F2ZWQ=\n")
        self.start()
        self.assertEqual(self.tor.asked[0]["private_key"], "ED25519-V3:c2F2ZWQ=")

    def test_ephemeral(self) -> None:
        """
        An ephemeral service asks tor to keep no key and writes nothing.
        """
        import txtorcon

        service = self.start(replace(self.config, ephemeral=True))
        self.assertIs(self.tor.asked[0]["private_key"], txtorcon.DISCARD)
        self.tor.publishing[0].callback(FakeService())
        self.assertEqual(service.state, "up")
        self.assertFalse(Path(self.key_file).parent.exists())

    def test_tor_unreachable(self) -> None:
        """
        When tor cannot be reached, tchat tries again, then reports the
        onion down with one clear error; its listeners stay as they are.
        """

        async def refuse(reactor: Any, endpoint: Any, password: Any) -> Any:
            raise ConnectionRefusedError("Connection refused")

        service = self.start(connect=refuse)
        for _ in range(200):
            self.reactor.advance(1)
        self.assertEqual(service.state, "down")
        self.assertIn("ConnectionRefusedError", service.error or "")
        errors = [line for line in self.logged if "onion service is down" in line]
        self.assertEqual(len(errors), 1)
        self.assertIn("control port at tcp:127.0.0.1:9051", errors[0])
        self.assertEqual(len(self.reactor.tcpServers), 2)

    def test_publish_timeout(self) -> None:
        """
        Publishing that never finishes is given up after
        C{bootstrap_timeout}, and tried again.
        """
        service = self.start(replace(self.config, bootstrap_timeout=30))
        self.reactor.advance(31)
        self.assertIn("bootstrap_timeout", service.error or "")
        self.assertTrue(self.tor.quit_called)
        self.reactor.advance(3)
        self.assertEqual(len(self.tor.asked), 2)

    def test_bootstrap_progress(self) -> None:
        """
        A launched tor's bootstrap lines become progress reports.
        """
        seen: list[tuple[int, str]] = []
        process = onion._TorProcess(lambda p, s: seen.append((p, s)))
        process.outReceived(b"Nov 21 [notice] Bootstrapped 5% (conn): Connecting\n")
        process.outReceived(b"Nov 21 [notice] Bootstrapped 100% (done): Done\nNov 21 x")
        self.assertEqual(seen, [(5, "conn): Connecting"), (100, "done): Done")])


class OnionConfigTests(SynchronousTestCase):
    def test_ports(self) -> None:
        config = config_from_string("[onion]\nports = 2323 = telnet, 8080 = web\n")
        self.assertEqual(config.onion.ports, ((2323, "telnet"), (8080, "web")))

    def test_bad(self) -> None:
        for text, words in [
            ("[onion]\nports = 23 = ftp\n", "not a door"),
            ("[onion]\nports = 23 = telnet, 23 = web\n", "twice"),
            ("[onion]\nports = x\n", "PORT = DOOR"),
            ("[onion]\ntor = http://x\n", "control endpoint"),
            ("[onion]\nbootstrap_timeout = 1\n", "between"),
        ]:
            with self.assertRaises(ConfigError) as caught:
                config_from_string(text, "tap.ini")
            self.assertIn(words, str(caught.exception))
            self.assertIn("[onion]", str(caught.exception))
