"""
Tests for L{tchat.control}: reloading C{tap.ini} and stopping on signals.
"""

from dataclasses import replace
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tchat.config import Config, ConfigError, config_from_string
from tchat.control import Listeners, Reloader, ReloadResult, SignalService
from tchat.hub import ChatFactory
from tchat.telnet import TelnetFactory
from tchat.web import make_site
from tests.support import FakeParticipant

START = """\
[telnet]
listen = tcp:4444:interface=127.0.0.1
[web]
listen =
[history]
enabled = false
[admin]
listen = none
"""


class ReloadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.config = config_from_string(START, "tap.ini")
        self.text = START
        self.hub = ChatFactory(self.config.server, self.reactor)
        self.successResultOf(self.hub.start())
        self.telnet = TelnetFactory(self.hub, "telnet")
        self.site = make_site(self.hub, self.config.web)
        root = MultiService()
        root.startService()
        self.addCleanup(root.stopService)
        factories: dict[str, Any] = {
            "telnet": self.telnet,
            "web": self.site,
            "admin": self.site,
        }
        self.listeners = Listeners(root, self.reactor, factories)
        self.listeners.add("telnet", "tcp:4444:interface=127.0.0.1", None)
        self.reloader = Reloader(
            self.reread,
            self.config,
            self.hub,
            [self.telnet],
            [self.site.chat],
            self.listeners,
            self.reactor,
            in_thread=maybeDeferred,
        )

    def reread(self) -> Config:
        return config_from_string(self.text, "tap.ini")

    def reload(self, text: str) -> tuple[bool, str]:
        self.text = text
        result: tuple[bool, str] = self.successResultOf(self.reloader.reload("test"))
        return result

    def ports(self) -> list[int]:
        return [port for port, *_ in self.reactor.tcpServers]

    def test_live_changes(self) -> None:
        """
        A changed MOTD, line limit and allowed origins apply at once, to a
        user who stays connected; the summary names them.
        """
        participant = FakeParticipant()
        user = self.hub.connect(participant)
        ok, summary = self.reload(
            START.replace("[web]\n", "[web]\nallowed_origins = https://chat.example\n")
            + "[server]\nmotd = new\n[limits]\nmax_line = 100\nper_address = 3\n"
        )
        self.assertTrue(ok)
        self.assertEqual(
            summary,
            "applied [server] motd, [web] allowed_origins, [limits] per_address, "
            "[limits] max_line",
        )
        self.assertEqual(
            self.site.chat.config.allowed_origins, ("https://chat.example",)
        )
        self.assertEqual(self.hub.config.motd, ("new",))
        self.assertEqual(self.hub.limits.max_line, 100)
        self.assertEqual(self.hub.admission.limits.per_address, 3)
        self.assertTrue(user.connected)
        self.assertEqual(self.hub.metrics.reloads, {"ok": 1, "failed": 0})
        self.assertTrue(self.hub.metrics.last_reload_ok)

    def test_broken_file_refused(self) -> None:
        """
        A file that no longer validates is refused with its error; the
        configuration in force stays.
        """
        ok, summary = self.reload(START + "[server]\nmotd = new\nnam = x\n")
        self.assertFalse(ok)
        self.assertIn("refused, the configuration in force is unchanged", summary)
        self.assertIn("[server] nam: not a known key", summary)
        self.assertEqual(self.hub.config.motd, Config().server.motd)
        self.assertEqual(self.hub.metrics.reloads, {"ok": 0, "failed": 1})
        self.assertFalse(self.hub.metrics.last_reload_ok)

    def test_unreadable_file_refused(self) -> None:
        """
        Any error while reading is a refusal too, never a crash.
        """

        def broken() -> Config:
            raise ConfigError("tap.ini: cannot be read: Permission denied")

        self.reloader._reread = broken
        ok, summary = self.successResultOf(self.reloader.reload("test"))
        self.assertFalse(ok)
        self.assertIn("Permission denied", summary)

    def test_restart_needed(self) -> None:
        """
        Keys that cannot change live are named as needing a restart and
        keep their old effect.
        """
        ok, summary = self.reload(START.replace("enabled = false", "enabled = true"))
        self.assertTrue(ok)
        self.assertEqual(summary, "needs restart: [history] enabled")

    def test_listeners_added_and_removed(self) -> None:
        """
        A new endpoint is listened on, a removed one no longer.
        """
        self.assertEqual(self.ports(), [4444])
        ok, summary = self.reload(
            START.replace(
                "[web]\nlisten =", "[web]\nlisten = tcp:8081:interface=127.0.0.1"
            )
        )
        self.assertEqual(
            summary,
            "applied [web] listen; now listening on tcp:8081:interface=127.0.0.1",
        )
        self.assertEqual(self.ports(), [4444, 8081])
        self.assertIs(self.reactor.tcpServers[1][1], self.site)
        ok, summary = self.reload(START.replace("tcp:4444", "tcp:4445"))
        self.assertIn(
            "stopped listening on tcp:4444:interface=127.0.0.1, "
            "tcp:8081:interface=127.0.0.1",
            summary,
        )
        self.assertEqual(
            sorted(self.listeners.services),
            [("telnet", "tcp:4445:interface=127.0.0.1")],
        )

    def test_nothing_changed(self) -> None:
        """
        Reloading the same file says so.
        """
        self.assertEqual(self.reload(START), (True, "nothing changed"))

    def test_one_at_a_time(self) -> None:
        """
        A reload asked for while one reads the file waits for it.
        """
        reading: list[Deferred[Config]] = []

        def slow(f: Any) -> Deferred[Config]:
            d: Deferred[Config] = Deferred()
            reading.append(d)
            return d

        self.reloader._in_thread = slow
        first = self.reloader.reload("one")
        second = self.reloader.reload("two")
        self.assertEqual(len(reading), 1)
        reading[0].callback(self.config)
        self.assertEqual(len(reading), 2)
        reading[1].callback(replace(self.config))
        self.assertEqual(self.successResultOf(first), (True, "nothing changed"))
        self.assertEqual(self.successResultOf(second), (True, "nothing changed"))


class SummaryTests(SynchronousTestCase):
    def test_parts(self) -> None:
        """
        The summary says everything that happened, in one line.
        """
        result = ReloadResult(
            True,
            changed=("[server] motd",),
            restart=("[history] path",),
            listening=("tcp:1",),
            failed=(("tcp:2", "Address already in use"),),
        )
        self.assertEqual(
            result.summary(),
            "applied [server] motd; now listening on tcp:1; cannot listen on "
            "tcp:2 (Address already in use); needs restart: [history] path",
        )


class _Reactor:
    def __init__(self) -> None:
        self.stopped = 0

    def stop(self) -> None:
        self.stopped += 1

    def callWhenRunning(self, f: Any) -> None:
        pass


class SignalTests(SynchronousTestCase):
    def test_stop_then_cut(self) -> None:
        """
        The first stop signal stops the reactor (the services then stop
        gracefully); a second one cuts the connections still open.
        """
        reactor = _Reactor()
        hub = ChatFactory(Config().server, MemoryReactorClock())
        participant = FakeParticipant()
        hub.connect(participant)
        service = SignalService(reactor, hub, lambda why: None)
        service.stop_gracefully("SIGTERM")
        self.assertEqual(reactor.stopped, 1)
        hub.stop(grace=5)
        service.stop_gracefully("SIGTERM")
        self.assertEqual(reactor.stopped, 1)
        self.assertTrue(participant.aborted)
