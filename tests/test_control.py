"""
Tests for L{tchat.control}: reloading C{tap.ini} and stopping on signals.
"""

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tchat import tap
from tchat.config import Config, ConfigError, LimitsConfig, config_from_string
from tchat.control import Listeners, Reloader, ReloadResult, SignalService
from tchat.hub import ChatFactory
from tchat.operators import hash_password
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


class ReloaderTestCase(SynchronousTestCase):
    """
    A hub, a telnet door, a web site and their listeners, and a reloader
    over them, started from C{FILE} (read as C{PATH}).
    """

    FILE = START
    PATH = "tap.ini"

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.config = config_from_string(self.FILE, self.PATH)
        self.text = self.FILE
        self.hub = ChatFactory(
            self.config.server,
            self.reactor,
            operators=self.config.operators,
            limits=self.config.limits,
        )
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
        return config_from_string(self.text, self.PATH)

    def reload(self, text: str) -> tuple[bool, str]:
        self.text = text
        result: tuple[bool, str] = self.successResultOf(self.reloader.reload("test"))
        return result


class ReloadTests(ReloaderTestCase):
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


BOSS = hash_password("correct horse battery", log2_n=4)
"""An operator's password hash, cheap to check."""

FULL = (
    START
    + "[limits]\nexempt =\nmax_line = 100\n"
    + "[operators]\n# the only account\n"
    + f"boss = {BOSS}\n"
)
"""A file whose last sections a truncation would lose: an operator
account, and no loopback exemption from the per-address limits."""


class TruncatedFileTests(ReloaderTestCase):
    """
    A reload refuses a file that looks truncated (empty, comments only, or
    without a section the configuration in force was read from) and keeps
    everything as it is; a key removed from a section still resets it.
    """

    FILE = FULL
    PATH = "/etc/tchat/tap.ini"

    def assertUnchanged(self) -> None:
        """
        The operator account, the limits and the listener are those of
        L{FULL}, and the reload was counted as failed.
        """
        self.assertEqual(self.hub.settings.operators.hash_for("boss"), BOSS)
        self.assertEqual(self.hub.admission.limits.exempt, ())
        self.assertEqual(self.hub.limits.max_line, 100)
        self.assertEqual([port for port, *_ in self.reactor.tcpServers], [4444])
        self.assertEqual(
            list(self.listeners.services), [("telnet", "tcp:4444:interface=127.0.0.1")]
        )
        self.assertIs(self.reloader.config, self.config)
        self.assertEqual(self.hub.metrics.reloads["ok"], 0)
        self.assertFalse(self.hub.metrics.last_reload_ok)

    def test_empty_file_refused(self) -> None:
        """
        An empty file is refused, and says so; nothing changes.
        """
        ok, summary = self.reload("")
        self.assertFalse(ok)
        self.assertEqual(
            summary,
            "refused, the configuration in force is unchanged: /etc/tchat/tap.ini "
            "has no sections, only comments or nothing (a truncated file?); to "
            "reset a section to its defaults, keep it, empty",
        )
        self.assertUnchanged()

    def test_comments_only_refused(self) -> None:
        """
        A file of comments and blank lines is refused like an empty one.
        """
        ok, summary = self.reload("# tchat\n\n; nothing else survived\n   \n")
        self.assertFalse(ok)
        self.assertIn("has no sections, only comments or nothing", summary)
        self.assertUnchanged()

    def test_missing_sections_refused(self) -> None:
        """
        A file cut short, which lost its last sections, is refused and
        names them; the operator account and the limits stay.
        """
        cut = FULL[: FULL.index("max_line")]
        self.assertEqual(config_from_string(cut).sections[-1], "limits")
        ok, summary = self.reload(cut.replace("[limits]\nexempt =\n", ""))
        self.assertFalse(ok)
        self.assertEqual(
            summary,
            "refused, the configuration in force is unchanged: [limits], "
            "[operators] are missing from /etc/tchat/tap.ini (a truncated "
            "file?); to reset a section to its defaults, keep it, empty",
        )
        self.assertUnchanged()
        ok, summary = self.reload(cut)
        self.assertFalse(ok)
        self.assertIn(
            ": [operators] is missing from /etc/tchat/tap.ini (a truncated file?)",
            summary,
        )
        self.assertUnchanged()

    def test_emptied_section_applied(self) -> None:
        """
        A section kept but emptied is applied: its keys take their
        defaults, here no operator accounts and the loopback exemption.
        """
        emptied = FULL[: FULL.index("[limits]")] + "[limits]\n[operators]\n"
        self.assertEqual(
            self.reload(emptied),
            (True, "applied [limits] exempt, [limits] max_line, [operators]"),
        )
        self.assertIsNone(self.hub.settings.operators.hash_for("boss"))
        self.assertEqual(self.hub.admission.limits.exempt, LimitsConfig().exempt)
        self.assertEqual(self.hub.limits.max_line, LimitsConfig().max_line)

    def test_removed_key_applied(self) -> None:
        """
        A key removed from a section that is still there takes its default.
        """
        ok, summary = self.reload(FULL.replace("max_line = 100\n", ""))
        self.assertEqual((ok, summary), (True, "applied [limits] max_line"))
        self.assertEqual(self.hub.limits.max_line, LimitsConfig().max_line)
        self.assertEqual(self.hub.admission.limits.exempt, ())

    def test_new_file_compared_with_the_last_applied(self) -> None:
        """
        Sections are checked against the configuration in force, which a
        reload replaces: a section added by one reload may not vanish in
        the next, and one emptied stays required.
        """
        self.assertEqual(
            self.reload(FULL + "[server]\nmotd = new\n"),
            (True, "applied [server] motd"),
        )
        ok, summary = self.reload(FULL)
        self.assertFalse(ok)
        self.assertIn("[server] is missing from", summary)

    def test_started_empty(self) -> None:
        """
        A server started on an empty file (the built-in defaults) has
        nothing to lose: an empty file reloads, and so does a full one.
        """
        self.reloader.config = config_from_string("", "tap.ini")
        self.assertEqual(self.reload("# nothing yet\n")[0], True)
        self.assertEqual(self.reloader.config.sections, ())
        self.reloader.config = Config()
        ok, summary = self.reload(FULL)
        self.assertTrue(ok, summary)
        self.assertEqual(self.reloader.config.sections, tuple(self.config.sections))


class RereadTests(SynchronousTestCase):
    """
    L{tap.Options.reread}, as a reload calls it: a file that cannot be read
    is refused, whatever became of it between the SIGHUP and the read.
    """

    def setUp(self) -> None:
        directory = Path(self.mktemp())
        directory.mkdir()
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(directory)

    def options(self, *argv: str) -> tap.Options:
        options = tap.Options()
        options.parseOptions(list(argv))
        return options

    def reload(self, options: tap.Options) -> tuple[bool, str]:
        reactor = MemoryReactorClock()
        hub = ChatFactory(options.config.server, reactor)
        self.successResultOf(hub.start())
        telnet = TelnetFactory(hub, "telnet")
        site = make_site(hub, options.config.web)
        root = MultiService()
        root.startService()
        self.addCleanup(root.stopService)
        factories: dict[str, Any] = {"telnet": telnet, "web": site, "admin": site}
        listeners = Listeners(root, reactor, factories)
        reloader = Reloader(
            options.reread,
            options.config,
            hub,
            [telnet],
            [site.chat],
            listeners,
            reactor,
            in_thread=maybeDeferred,
        )
        result: tuple[bool, str] = self.successResultOf(reloader.reload("test"))
        return result

    def test_not_utf8(self) -> None:
        """
        A file that is no longer UTF-8 is refused.
        """
        Path("chat.ini").write_text(START)
        options = self.options("--config", "chat.ini")
        Path("chat.ini").write_bytes(START.encode() + b"[server]\nmotd = caf\xe9\n")
        ok, summary = self.reload(options)
        self.assertFalse(ok)
        self.assertIn("chat.ini: is not UTF-8 text", summary)

    def test_vanished_config_option(self) -> None:
        """
        The C{--config} file gone by the time it is read is refused.
        """
        Path("chat.ini").write_text(START)
        options = self.options("--config", "chat.ini")
        os.remove("chat.ini")
        ok, summary = self.reload(options)
        self.assertFalse(ok)
        self.assertIn("chat.ini: cannot be read: No such file or directory", summary)

    def test_vanished_local_tap_ini(self) -> None:
        """
        A C{./tap.ini} read at start and gone since is refused, rather
        than read as the built-in defaults (which would move the listeners
        and log operators out).
        """
        Path("tap.ini").write_text(START)
        options = self.options()
        self.assertEqual(options.config.source, "tap.ini")
        os.remove("tap.ini")
        ok, summary = self.reload(options)
        self.assertFalse(ok)
        self.assertIn("tap.ini: cannot be read: No such file or directory", summary)

    def test_local_tap_ini_appears(self) -> None:
        """
        A server started on the built-in defaults (no C{./tap.ini}) reads
        one that has appeared since, as before.
        """
        options = self.options()
        self.assertEqual(options.config.source, "built-in defaults")
        Path("tap.ini").write_text(START + "[server]\nmotd = new\n")
        ok, summary = self.reload(options)
        self.assertTrue(ok, summary)
        self.assertIn("applied [server] motd", summary)
        self.assertIn("now listening on tcp:4444:interface=127.0.0.1", summary)
        self.assertNotIn("cannot listen", summary)


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
