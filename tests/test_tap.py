"""
Tests for the twistd plugin and L{tchat.tap}: options, config loading and the
service tree, on a L{MemoryReactor}.
"""

import io
import json
import os
import sys
from pathlib import Path
from typing import Any

from twisted.application.service import IServiceMaker
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock as MemoryReactor
from twisted.internet.testing import RaisingMemoryReactor, StringTransport
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import provider

from tchat import tap
from tchat.control import SignalService
from tchat.endpoints import ListenerService, StartupError, describe_address
from tchat.gate import Gate


def _door(factory: object) -> str:
    """
    The name of the door factory a listener serves, behind the gate that
    applies the connection limits (the admin door has none).
    """
    if isinstance(factory, Gate):
        factory = factory.wrappedFactory
    return type(factory).__name__


class PluginTests(SynchronousTestCase):
    """
    twistd finds tchat.
    """

    def test_found(self) -> None:
        """
        The tapname C{tchat} is among the installed service makers and
        points at L{tchat.tap}.
        """
        makers = {m.tapname: m for m in getPlugins(IServiceMaker)}
        self.assertIn("tchat", makers)
        self.assertIs(makers["tchat"].options, tap.Options)


class OptionsTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        # Options look for ./tap.ini: run each test in an empty directory.
        directory = Path(self.mktemp())
        directory.mkdir()
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(directory)
        self.stdout, self.stderr = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", self.stdout)
        self.patch(sys, "stderr", self.stderr)

    def parse(self, *argv: str) -> tap.Options:
        options = tap.Options()
        options.parseOptions(list(argv))
        return options

    def exit_code(self, *argv: str) -> object:
        with self.assertRaises(SystemExit) as caught:
            self.parse(*argv)
        return caught.exception.code


class OptionsTests(OptionsTestCase):
    """
    Command line and C{tap.ini}.
    """

    def test_defaults_without_file(self) -> None:
        """
        With no tap.ini and no options, telnet listens on loopback port 4444.
        """
        options = self.parse()
        self.assertEqual(
            options.config.telnet.listen, ("tcp:4444:interface=127.0.0.1",)
        )
        self.assertEqual(options.config.source, "built-in defaults")

    def test_reads_local_tap_ini(self) -> None:
        """
        ./tap.ini is read when present.
        """
        Path("tap.ini").write_text("[server]\nname = Local\n")
        self.assertEqual(self.parse().config.server.name, "Local")

    def test_config_option(self) -> None:
        """
        C{--config PATH} reads that file instead.
        """
        Path("other.ini").write_text("[server]\nname = Other\n")
        Path("tap.ini").write_text("[server]\nname = Local\n")
        self.assertEqual(
            self.parse("--config", "other.ini").config.server.name, "Other"
        )

    def test_telnet_repeatable_overrides(self) -> None:
        """
        C{--telnet} can be given several times and replaces the file's list.
        """
        Path("tap.ini").write_text("[telnet]\nlisten = tcp:1:interface=127.0.0.1\n")
        options = self.parse(
            "--telnet", "tcp:0:interface=127.0.0.1", "--telnet", "unix:t.sock"
        )
        self.assertEqual(
            options.config.telnet.listen, ("tcp:0:interface=127.0.0.1", "unix:t.sock")
        )

    def test_bad_file_exits_with_message(self) -> None:
        """
        A broken tap.ini stops start-up with exit 1 and one line naming the
        section and key, without twistd's whole usage text.
        """
        Path("tap.ini").write_text("[server]\nbogus = 1\n")
        self.assertEqual(self.exit_code(), 1)
        message = self.stderr.getvalue()
        self.assertIn("tap.ini: [server] bogus: not a known key", message)
        self.assertEqual(message.count("\n"), 1)

    def test_missing_config_file(self) -> None:
        """
        C{--config} naming a missing file is an error, not silently defaults.
        """
        self.assertEqual(self.exit_code("--config", "nope.ini"), 1)
        self.assertIn("nope.ini: cannot be read", self.stderr.getvalue())

    def test_bad_endpoint(self) -> None:
        """
        An endpoint that does not parse is refused before start-up.
        """
        self.assertEqual(self.exit_code("--telnet", "tcp:notaport"), 1)
        self.assertIn("[telnet] listen: 'tcp:notaport'", self.stderr.getvalue())

    def test_unknown_endpoint_type(self) -> None:
        """
        An unknown endpoint type is named.
        """
        self.assertEqual(self.exit_code("--telnet", "carrierpigeon:1"), 1)
        self.assertIn(
            "'carrierpigeon:1' is not a usable endpoint", self.stderr.getvalue()
        )

    def test_onion_without_txtorcon(self) -> None:
        """
        An C{onion:} endpoint without txtorcon says to install it, rather than
        "Unknown endpoint type".
        """
        previous = sys.modules.get("txtorcon")
        # None in sys.modules makes "import txtorcon" raise ImportError.
        sys.modules["txtorcon"] = None  # type: ignore[assignment]

        def restore() -> None:
            if previous is None:
                del sys.modules["txtorcon"]
            else:
                sys.modules["txtorcon"] = previous

        self.addCleanup(restore)
        self.assertEqual(self.exit_code("--telnet", "onion:23:controlPort=9051"), 1)
        self.assertIn("needs txtorcon", self.stderr.getvalue())

    def test_no_listener(self) -> None:
        """
        A configuration that listens nowhere is refused.
        """
        Path("tap.ini").write_text("[telnet]\nlisten =\n[web]\nlisten =\n")
        self.assertEqual(self.exit_code(), 1)
        self.assertIn("no listener", self.stderr.getvalue())

    def test_check_ok(self) -> None:
        """
        C{--check} prints what would listen and exits 0.
        """
        Path("tap.ini").write_text("[server]\nname = x\n")
        self.assertEqual(self.exit_code("--check"), 0)
        self.assertEqual(
            self.stdout.getvalue(),
            "tchat: configuration OK (tap.ini)\n"
            "telnet: tcp:4444:interface=127.0.0.1\n"
            "web: tcp:8080:interface=127.0.0.1\n"
            "admin: tcp:9100:interface=127.0.0.1\n",
        )

    def test_check_shows_the_ssh_host_key(self) -> None:
        """
        With the SSH door on, C{--check} also shows the host key's
        fingerprint (making the key, owner-only, at first), so users can
        be told what to expect; the same key every time.
        """
        Path("tap.ini").write_text("[ssh]\nlisten = tcp:2222:interface=127.0.0.1\n")
        self.assertEqual(self.exit_code("--check"), 0)
        out = self.stdout.getvalue()
        self.assertIn("ssh: tcp:2222:interface=127.0.0.1\n", out)
        shown = out.rsplit("ssh host key: ", 1)[1]
        self.assertTrue(shown.startswith("SHA256:"), out)
        self.assertEqual(Path("ssh_host_ed25519_key").stat().st_mode & 0o777, 0o600)
        self.stdout.truncate(0)
        self.stdout.seek(0)
        self.assertEqual(self.exit_code("--check", "--ssh", "tcp:2223"), 0)
        self.assertIn(f"ssh host key: {shown}", self.stdout.getvalue())

    def test_check_bad(self) -> None:
        """
        C{--check} with a broken file exits 1 with the error.
        """
        Path("tap.ini").write_text("[limits]\nmax_line = 1\n")
        self.assertEqual(self.exit_code("--check"), 1)
        self.assertIn("[limits] max_line: must be between 64", self.stderr.getvalue())


class MakeServiceTests(OptionsTestCase):
    """
    The service tree on a memory reactor.
    """

    def setUp(self) -> None:
        super().setUp()
        # Only the telnet listeners these tests name; history in memory.
        Path("tap.ini").write_text(
            "[web]\nlisten =\n[history]\nenabled = false\n[admin]\nlisten = none\n"
        )

    def test_web_listener(self) -> None:
        """
        C{--web} listens with the web site (page and WebSocket) as factory,
        next to the telnet door.
        """
        reactor = MemoryReactor()
        options = self.parse("--web", "tcp:8081:interface=127.0.0.1")
        service = tap.makeService(options, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        kinds = [(port, _door(factory)) for port, factory, _, _ in reactor.tcpServers]
        self.assertEqual(kinds, [(4444, "TelnetFactory"), (8081, "ChatSite")])

    def test_listens_where_configured(self) -> None:
        """
        Each telnet endpoint becomes a listener of the telnet factory,
        bound as configured, once the service starts.
        """
        reactor = MemoryReactor()
        options = self.parse(
            "--telnet",
            "tcp:4444:interface=127.0.0.1",
            "--telnet",
            "tcp6:5555:interface=\\:\\:1",
        )
        service = tap.makeService(options, reactor)
        self.assertEqual(reactor.tcpServers, [])
        service.startService()
        self.addCleanup(service.stopService)
        self.assertEqual(
            [(port, interface) for port, _, _, interface in reactor.tcpServers],
            [(4444, "127.0.0.1"), (5555, "::1")],
        )
        factories = {_door(factory) for _, factory, _, _ in reactor.tcpServers}
        self.assertEqual(factories, {"TelnetFactory"})

    def test_backlog(self) -> None:
        """
        Listeners get a listen queue of 1024 unless the string sets one, so a
        burst of connections is not dropped by the kernel.
        """
        reactor = MemoryReactor()
        options = self.parse(
            "--telnet",
            "tcp:1:interface=127.0.0.1",
            "--telnet",
            "tcp:2:interface=127.0.0.1:backlog=7",
        )
        service = tap.makeService(options, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        self.assertEqual(
            [backlog for _, _, backlog, _ in reactor.tcpServers], [1024, 7]
        )

    def test_logs_bound_address(self) -> None:
        """
        One log line per listener gives its real address.
        """
        logged: list[str] = []

        @provider(ILogObserver)
        def observer(event: LogEvent) -> None:
            logged.append(formatEvent(event))

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        service = tap.makeService(
            self.parse("--telnet", "tcp:0:interface=127.0.0.1"), MemoryReactor()
        )
        service.startService()
        self.addCleanup(service.stopService)
        self.assertIn(
            "telnet door listening on 0.0.0.0:0 (tcp:0:interface=127.0.0.1)", logged
        )

    def test_cannot_listen(self) -> None:
        """
        A port that cannot be bound ends start-up with a plain sentence.
        """
        reactor = _RaisingReactorClock(
            listenException=CannotListenError(
                "127.0.0.1", 4444, OSError(98, "Address already in use")
            )
        )
        service = tap.makeService(self.parse(), reactor)  # type: ignore[arg-type]
        with self.assertRaises(SystemExit) as caught:
            service.privilegedStartService()
        self.assertIn(
            "the telnet door cannot listen on tcp:4444:interface=127.0.0.1",
            str(caught.exception.code),
        )
        self.assertIn("Address already in use", str(caught.exception.code))

    def test_cannot_listen_as_daemon(self) -> None:
        """
        Daemonising, the same failure is an ordinary exception, which twistd
        reports to the waiting parent (it prints it and exits 1) instead of
        leaving it waiting.
        """
        reactor = _RaisingReactorClock(
            listenException=CannotListenError(
                "127.0.0.1", 4444, OSError(98, "Address already in use")
            )
        )
        options = self.parse()
        options.parent = {"nodaemon": False}  # type: ignore[assignment]
        service = tap.makeService(options, reactor)  # type: ignore[arg-type]
        with self.assertRaises(StartupError) as caught:
            service.privilegedStartService()
        self.assertIn("the telnet door cannot listen", str(caught.exception))

    def test_service_type(self) -> None:
        """
        The history service comes first, then the listeners, which are
        L{ListenerService}s, and the signal handlers.
        """
        service = tap.makeService(self.parse(), MemoryReactor())
        self.assertEqual(
            [type(s) for s in service],  # type: ignore[attr-defined]
            [tap.HistoryService, ListenerService, SignalService],
        )

    def started(self, *argv: str) -> MemoryReactor:
        """
        Start the service tree for these options on a memory reactor.

        @return: The reactor, with the listeners it was asked for.
        """
        reactor = MemoryReactor()
        service = tap.makeService(self.parse(*argv), reactor)
        service.startService()
        self.addCleanup(service.stopService)
        return reactor

    def _get(self, factory: Any, path: str) -> bytes:
        """
        What an HTTP site answers to C{GET path}.
        """
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        answer: bytes = transport.value()
        return answer

    def test_admin_door(self) -> None:
        """
        C{--admin} listens with the admin site, which answers C{/healthz},
        C{/stats} and C{/metrics}; the public web site answers none of
        them.
        """
        reactor = self.started(
            "--web",
            "tcp:8081:interface=127.0.0.1",
            "--admin",
            "tcp:9101:interface=127.0.0.1",
        )
        factories = {port: factory for port, factory, _, _ in reactor.tcpServers}
        self.assertEqual(
            [(port, interface) for port, _, _, interface in reactor.tcpServers],
            [(4444, "127.0.0.1"), (8081, "127.0.0.1"), (9101, "127.0.0.1")],
        )
        for path in ("/healthz", "/stats", "/metrics"):
            self.assertTrue(
                self._get(factories[9101], path).startswith(b"HTTP/1.0 200"), path
            )
            self.assertTrue(
                self._get(factories[8081], path).startswith(b"HTTP/1.0 404"), path
            )

    def test_admin_door_default(self) -> None:
        """
        Without C{[admin]} in C{tap.ini}, the admin door listens on
        127.0.0.1:9100 only; C{--admin none} turns it off.
        """
        Path("tap.ini").write_text("[web]\nlisten =\n[history]\nenabled = false\n")
        reactor = self.started()
        self.assertEqual(
            [(port, interface) for port, _, _, interface in reactor.tcpServers],
            [(4444, "127.0.0.1"), (9100, "127.0.0.1")],
        )
        reactor = self.started("--admin", "none")
        self.assertEqual([port for port, _, _, _ in reactor.tcpServers], [4444])

    def test_onion_on_admin_door(self) -> None:
        """
        With the onion door on, its local listeners serve the onion doors
        (never the admin site), and C{/stats} and C{/healthz} report the
        onion's state while tor is still being reached.
        """
        Path("tap.ini").write_text(
            "[web]\nlisten =\n[history]\nenabled = false\n"
            "[onion]\nenabled = true\ntor = tcp:127.0.0.1:9051\n"
        )
        reactor = self.started("--admin", "tcp:9101:interface=127.0.0.1")
        kinds = [(port, _door(factory)) for port, factory, _, _ in reactor.tcpServers]
        self.assertEqual(
            kinds,
            [
                (0, "TelnetFactory"),
                (0, "ChatSite"),
                (4444, "TelnetFactory"),
                (9101, "AdminSite"),
            ],
        )
        admin = reactor.tcpServers[-1][1]
        stats = self._get(admin, "/stats").partition(b"\r\n\r\n")[2]
        self.assertEqual(json.loads(stats)["onion"]["state"], "bootstrapping")
        health = self._get(admin, "/healthz")
        self.assertTrue(health.startswith(b"HTTP/1.0 200"), health)
        self.assertEqual(
            json.loads(health.partition(b"\r\n\r\n")[2])["checks"]["onion"],
            "bootstrapping",
        )

    def test_history_in_memory_is_announced(self) -> None:
        """
        A history that will not outlive the process is said so at start.
        """
        logged: list[str] = []

        @provider(ILogObserver)
        def observer(event: LogEvent) -> None:
            logged.append(formatEvent(event))

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        service = tap.makeService(self.parse(), MemoryReactor())
        service.startService()
        self.addCleanup(service.stopService)
        self.assertIn(
            "history: in memory only (enabled = false); it is lost when tchat stops",
            logged,
        )


class _RaisingReactorClock(RaisingMemoryReactor, Clock):
    """
    A reactor that cannot listen, with a clock.
    """

    def __init__(self, **kwargs: Any) -> None:
        RaisingMemoryReactor.__init__(self, **kwargs)
        Clock.__init__(self)


class DescribeAddressTests(SynchronousTestCase):
    """
    Addresses as people type them.
    """

    def test_kinds(self) -> None:
        """
        IPv4, IPv6 (bracketed) and unix paths.
        """
        self.assertEqual(
            describe_address(IPv4Address("TCP", "127.0.0.1", 4444)), "127.0.0.1:4444"
        )
        self.assertEqual(
            describe_address(IPv6Address("TCP", "::1", 4444)), "[::1]:4444"
        )
        self.assertEqual(describe_address(UNIXAddress(b"/run/t.sock")), "/run/t.sock")


class OtherEndpointTests(OptionsTestCase):
    """
    Any Twisted endpoint string works for the telnet door.
    """

    def setUp(self) -> None:
        super().setUp()
        Path("tap.ini").write_text("[history]\nenabled = false\n")

    def test_unix(self) -> None:
        """
        A C{unix:} endpoint listens on that path with the telnet factory.
        """
        reactor = MemoryReactor()
        service = tap.makeService(self.parse("--telnet", "unix:chat.sock"), reactor)
        service.startService()
        self.addCleanup(service.stopService)
        ((path, factory, _, _, _),) = reactor.unixServers
        self.assertEqual(path, "chat.sock")
        self.assertEqual(_door(factory), "TelnetFactory")
