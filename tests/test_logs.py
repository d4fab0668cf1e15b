"""
Tests for L{tchat.logs}: the JSON log format, where twistd's log goes, and
what SIGUSR1 does to a log file, on files in a temporary directory.  No
process is started: C{tests.integration.test_daemon} runs the real daemon.
"""

import io
import json
import os
import pwd
import signal
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    globalLogPublisher,
    textFileLogObserver,
)
from twisted.logger._legacy import publishToNewObserver
from twisted.python import log as legacy_log
from twisted.python.failure import Failure
from twisted.scripts._twistd_unix import ServerOptions
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from zope.interface import implementer

from tchat import logs, tap
from twisted.plugins.tchat_plugin import tchat as tchat_plugin


def user_logger() -> FileLogObserver:
    """
    A log observer factory of the user's own, for C{--logger}.
    """
    return FileLogObserver(io.StringIO(), str)


@implementer(ILogObserver)
class Events:
    """
    A log observer that keeps every event.
    """

    def __init__(self) -> None:
        self.events: list[LogEvent] = []

    def __call__(self, event: LogEvent) -> None:
        self.events.append(event)


def logged(emit: Callable[[Logger], None]) -> LogEvent:
    """
    The one event that C{emit} logs through a L{Logger}.
    """
    observer = Events()
    emit(Logger(namespace="tchat.test", observer=observer))
    [event] = observer.events
    return event


def decode(line: str) -> dict[str, Any]:
    """
    Check that C{line} is one line of JSON, and decode it.
    """
    assert line.endswith("\n") and line.count("\n") == 1, repr(line)
    value = json.loads(line)
    assert isinstance(value, dict), value
    return value


class FormatJsonEventTests(SynchronousTestCase):
    """
    L{logs.format_json_event}: one JSON object per event, on one line.
    """

    def test_fields(self) -> None:
        """
        The line has the time in ISO 8601 UTC, the level, the namespace, the
        formatted text, and the event's own fields.
        """
        event = logged(
            lambda log: log.info("{nick} connected by {door}", nick="zoë", door="web")
        )
        line = logs.format_json_event(event)
        self.assertTrue(line.isascii())
        value = decode(line)
        self.assertEqual(
            value,
            {
                "time": value["time"],
                "level": "info",
                "namespace": "tchat.test",
                "text": "zoë connected by web",
                "nick": "zoë",
                "door": "web",
            },
        )
        when = datetime.fromisoformat(value["time"])
        self.assertEqual(when.utcoffset(), UTC.utcoffset(None))
        self.assertTrue(value["time"].endswith("Z"))
        self.assertAlmostEqual(when.timestamp(), event["log_time"], places=5)

    def test_levels(self) -> None:
        """
        Each level is named as L{LogLevel} names it.
        """
        for level in LogLevel.iterconstants():

            def emit(log: Logger, level: Any = level) -> None:
                log.emit(level, "x")

            event = logged(emit)
            self.assertEqual(decode(logs.format_json_event(event))["level"], level.name)

    def test_traceback(self) -> None:
        """
        An event logged with a failure carries its traceback; the text is
        the message it was logged with.
        """
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            failure = Failure()
        event = logged(lambda log: log.failure("reading {room}", failure, room="#a"))
        value = decode(logs.format_json_event(event))
        self.assertEqual(value["level"], "critical")
        self.assertEqual(value["text"], "reading #a")
        self.assertEqual(value["room"], "#a")
        self.assertIn("Traceback", value["traceback"])
        self.assertIn("ZeroDivisionError", value["traceback"])

    def test_no_traceback_without_failure(self) -> None:
        """
        An event without a failure has no C{traceback} key.
        """
        value = decode(logs.format_json_event(logged(lambda log: log.warn("x"))))
        self.assertNotIn("traceback", value)

    def test_values_json_cannot_carry(self) -> None:
        """
        A field JSON cannot carry is written as its C{repr}; the rest are
        kept as they are, nested lists and objects included.
        """

        class Thing:
            def __repr__(self) -> str:
                return "<thing>"

        event = logged(
            lambda log: log.info(
                "x",
                thing=Thing(),
                rooms={"#a"},
                nan=float("nan"),
                counts={"a": [1, 2.5, None, True]},
                nested={"a": Thing()},
            )
        )
        value = decode(logs.format_json_event(event))
        self.assertEqual(value["thing"], "<thing>")
        self.assertEqual(value["rooms"], "{'#a'}")
        self.assertEqual(value["nan"], "nan")
        self.assertEqual(value["counts"], {"a": [1, 2.5, None, True]})
        self.assertEqual(value["nested"], "{'a': <thing>}")

    def test_unrepresentable_value(self) -> None:
        """
        A field whose C{repr} raises is still written, as a description.
        """

        class Hostile:
            def __repr__(self) -> str:
                raise RuntimeError("no")

        value = decode(
            logs.format_json_event(logged(lambda log: log.info("x", h=Hostile())))
        )
        self.assertIn("Hostile", value["h"])

    def test_reserved_field_names(self) -> None:
        """
        A field named like one of the line's own keys is written as
        C{field_NAME}, and does not replace the key.
        """
        event = logged(lambda log: log.info("{text}", text="hello", time="noon"))
        value = decode(logs.format_json_event(event))
        self.assertEqual(value["text"], "hello")
        self.assertTrue(value["time"].endswith("Z"))
        self.assertEqual(value["field_text"], "hello")
        self.assertEqual(value["field_time"], "noon")

    def test_legacy_event(self) -> None:
        """
        An event from L{twisted.python.log} (as Twisted's own modules still
        log) gives its message as text and its system, without the
        old-style keys that repeat them.
        """
        observer = Events()
        publishToNewObserver(
            observer,
            {
                "message": ("TelnetFactory starting on 4444",),
                "isError": 0,
                "system": "-",
                "time": 1700000000.25,
            },
            legacy_log.textFromEventDict,
        )
        value = decode(logs.format_json_event(observer.events[0]))
        self.assertEqual(
            value,
            {
                "time": "2023-11-14T22:13:20.250000Z",
                "level": "info",
                "namespace": "log_legacy",
                "system": "-",
                "text": "TelnetFactory starting on 4444",
            },
        )

    def test_never_raises(self) -> None:
        """
        An event that cannot be formatted at all still gives one JSON line,
        at level error, saying so.
        """

        class Broken(dict[str, Any]):
            def items(self) -> Any:
                raise RuntimeError("broken event")

        value = decode(logs.format_json_event(Broken(log_format="x")))
        self.assertEqual(value["level"], "error")
        self.assertIn("Unable to format event", value["text"])
        self.assertIn("broken event", value["text"])

    def test_observer_writes_lines(self) -> None:
        """
        L{logs.json_file_observer} writes one line per event to its file.
        """
        out = io.StringIO()
        log = Logger(namespace="tchat.test", observer=logs.json_file_observer(out))
        log.info("one")
        log.info("two\nlines")
        lines = out.getvalue().splitlines(keepends=True)
        self.assertEqual(
            [decode(line)["text"] for line in lines], ["one", "two\nlines"]
        )


class TextLogTests(SynchronousTestCase):
    """
    tchat's text log is twistd's, line for line, with its time stamps made
    once a second.
    """

    def test_same_as_twistd(self) -> None:
        """
        Events in one second, in the next, and an hour on (and a zone's
        change, had there been one) read exactly as twistd's own observer
        writes them.
        """
        ours, theirs = io.StringIO(), io.StringIO()
        observers = (logs.text_file_observer(ours), textFileLogObserver(theirs))
        for when in (
            1_700_000_000.1,
            1_700_000_000.9,
            1_700_000_001.0,
            1_700_003_600.5,
        ):
            for observer in observers:
                observer(
                    {
                        "log_time": when,
                        "log_level": LogLevel.info,
                        "log_namespace": "tchat.test",
                        "log_format": "{nick} connected by {door}",
                        "nick": "alice",
                        "door": "telnet",
                    }
                )
        self.assertEqual(ours.getvalue(), theirs.getvalue())
        stamps = [line.split(" ")[0] for line in ours.getvalue().splitlines()]
        self.assertEqual(len(set(stamps)), 3, stamps)

    def test_every_kind_of_event_as_twistd(self) -> None:
        """
        Whatever the event (a format of plain names, with conversions and
        specs, attributes, calls, a missing or bad field, a failure, a
        system, several lines, nothing to say), the line is twistd's.
        """

        class Thing:
            name = "thing"

            def __repr__(self) -> str:
                return "<Thing>"

        failure = Failure(ZeroDivisionError("division by zero"))
        base = {
            "log_time": 1_700_000_000.5,
            "log_level": LogLevel.warn,
            "log_namespace": "tchat.test",
        }
        variants: list[dict[str, Any]] = [
            {"log_format": "{nick} said {text!r}", "nick": "al", "text": "hi"},
            {"log_format": "{n:>5} {x!s:^9}|{y!a}", "n": 42, "x": "mid", "y": "é"},
            {"log_format": "{thing.name} {thing!r}", "thing": Thing()},
            {"log_format": "{f()}", "f": lambda: "called"},
            {"log_format": "{missing} here"},
            {"log_format": "{n:{w}}", "n": 1, "w": 4},
            {"log_format": "{n!x}", "n": 1},
            {"log_format": "{n:d}", "n": "not a number"},
            {"log_format": "{}", "n": 1},
            {"log_format": "two\nlines {n}", "n": 2},
            {"log_format": "{n}", "n": 3, "log_system": "a system"},
            {"log_format": "{n}", "n": 4, "log_level": None, "log_system": None},
            {"log_format": "failed: {n}", "n": 5, "log_failure": failure},
            {"log_format": ""},
            {"log_format": "{n}", "n": ""},
            {"message": ("legacy",)},
            {"log_format": b"bytes {n}", "n": 6},
            {"log_format": "{n}", "n": 7, "log_time": None},
        ]
        for variant in variants:
            event = {**base, **variant}
            ours, theirs = io.StringIO(), io.StringIO()
            logs.text_file_observer(ours)(dict(event))
            textFileLogObserver(theirs)(dict(event))
            self.assertEqual(ours.getvalue(), theirs.getvalue(), variant)


class InDirectory(SynchronousTestCase):
    """
    Each test runs in a fresh directory, with SIGUSR1's handler put back
    afterwards.
    """

    def setUp(self) -> None:
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        self.directory = directory
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(directory)
        self.addCleanup(signal.signal, signal.SIGUSR1, signal.getsignal(signal.SIGUSR1))

    def factory(
        self, log_format: str = "text", logfile: str | None = None, **kwargs: Any
    ) -> tuple[logs.ObserverFactory, list[Callable[[], None]], io.StringIO]:
        """
        An L{logs.ObserverFactory} whose SIGUSR1 actions and standard
        output the test keeps.

        @return: The factory, its SIGUSR1 actions, its standard output.
        """
        actions: list[Callable[[], None]] = []
        stdout = io.StringIO()
        kwargs.setdefault("nodaemon", False)
        factory = logs.ObserverFactory(
            log_format, logfile, stdout=stdout, on_sigusr1=actions.append, **kwargs
        )
        return factory, actions, stdout


class ObserverFactoryTests(InDirectory):
    """
    L{logs.ObserverFactory} logs where twistd would, in the format asked for.
    """

    def test_foreground_to_stdout(self) -> None:
        """
        With C{--nodaemon} and no C{--logfile}, or C{--logfile=-}, the log is
        twistd's text on standard output, and SIGUSR1 is left alone.
        """
        for logfile in (None, "-"):
            factory, actions, stdout = self.factory(logfile=logfile, nodaemon=True)
            Logger(namespace="tchat.test", observer=factory()).info("hello")
            self.assertRegex(stdout.getvalue(), r"^\S+ \[tchat\.test#info\] hello\n$")
            self.assertEqual(actions, [])
        self.assertEqual(os.listdir("."), [])

    def test_no_ssh_library_chatter(self) -> None:
        """
        twisted.conch's debug lines (a dozen for every SSH connection) are
        left out; its other lines, and everyone's debug lines, are kept.
        """
        factory, actions, stdout = self.factory(nodaemon=True)
        observer = factory()
        Logger(namespace="twisted.conch.ssh.transport", observer=observer).debug(
            "kex alg"
        )
        Logger(namespace="twisted.conch.ssh.transport", observer=observer).info(
            "connection lost"
        )
        Logger(namespace="tchat.test", observer=observer).debug("ours")
        out = stdout.getvalue()
        self.assertNotIn("kex alg", out)
        self.assertIn("connection lost", out)
        self.assertIn("ours", out)

    def test_foreground_json(self) -> None:
        """
        C{[log] format = json} in the foreground writes JSON lines to
        standard output.
        """
        factory, actions, stdout = self.factory("json", nodaemon=True)
        Logger(namespace="tchat.test", observer=factory()).info("hello")
        self.assertEqual(decode(stdout.getvalue())["text"], "hello")

    def test_daemon_cannot_log_to_stdout(self) -> None:
        """
        A daemon with C{--logfile=-} stops with twistd's own message.
        """
        factory, actions, stdout = self.factory(logfile="-")
        with self.assertRaises(SystemExit) as caught:
            factory()
        self.assertEqual(
            caught.exception.code, "Daemons cannot log to stdout, exiting!"
        )

    def test_daemon_default_file(self) -> None:
        """
        A daemon without C{--logfile} logs to C{twistd.log}, readable by its
        user only (twistd's default umask for daemons, 0077), and SIGUSR1
        gets an action.
        """
        factory, actions, stdout = self.factory()
        Logger(namespace="tchat.test", observer=factory()).info("hello")
        text = Path("twistd.log").read_text()
        self.assertRegex(text, r"^\S+ \[tchat\.test#info\] hello\n$")
        self.assertEqual(stat.S_IMODE(os.stat("twistd.log").st_mode), 0o600)
        self.assertEqual(len(actions), 1)
        self.assertEqual(stdout.getvalue(), "")

    def test_logfile(self) -> None:
        """
        C{--logfile PATH} names the file, in the foreground too; C{--umask}
        sets a new file's mode; JSON lines go there.
        """
        factory, actions, stdout = self.factory(
            "json", "logs/tchat.log", nodaemon=True, umask=0o027
        )
        os.mkdir("logs")
        Logger(namespace="tchat.test", observer=factory()).info("hello")
        self.assertEqual(decode(Path("logs/tchat.log").read_text())["text"], "hello")
        self.assertEqual(stat.S_IMODE(os.stat("logs/tchat.log").st_mode), 0o640)
        self.assertEqual(len(actions), 1)

    def test_existing_file_keeps_its_mode(self) -> None:
        """
        A log file that already exists is appended to, and keeps its mode.
        """
        Path("twistd.log").write_text("earlier\n")
        os.chmod("twistd.log", 0o640)
        factory, actions, stdout = self.factory()
        Logger(namespace="tchat.test", observer=factory()).info("hello")
        self.assertRegex(Path("twistd.log").read_text(), r"^earlier\n\S+ .* hello\n$")
        self.assertEqual(stat.S_IMODE(os.stat("twistd.log").st_mode), 0o640)

    def test_no_rotation_by_size(self) -> None:
        """
        The file never rotates by itself (twistd's rotates at 1 MB): only
        SIGUSR1 does, so logrotate's numbering is not disturbed.
        """
        factory, actions, stdout = self.factory()
        log = Logger(namespace="tchat.test", observer=factory())
        for _ in range(3):
            log.info("{x}", x="x" * 500_000)
        self.assertEqual(sorted(os.listdir(".")), ["twistd.log"])
        self.assertGreater(os.path.getsize("twistd.log"), 1_500_000)

    def test_given_to_uid(self) -> None:
        """
        When root starts a daemon with C{--uid}, the log file is handed to
        that user (and the user's group), so it can still rotate it.
        """
        if os.geteuid() != 0:
            raise SkipTest("only root can hand a file to another user")
        nobody = pwd.getpwnam("nobody")
        factory, actions, stdout = self.factory(uid=nobody.pw_uid)
        factory()
        status = os.stat("twistd.log")
        self.assertEqual((status.st_uid, status.st_gid), (nobody.pw_uid, nobody.pw_gid))

    def test_dev_null_untouched(self) -> None:
        """
        C{--logfile /dev/null} logs nowhere without changing C{/dev/null}'s
        mode or owner.
        """
        before = os.stat("/dev/null")
        factory, actions, stdout = self.factory(logfile="/dev/null", uid=65534)
        Logger(namespace="tchat.test", observer=factory()).info("hello")
        after = os.stat("/dev/null")
        self.assertEqual(
            (after.st_mode, after.st_uid, after.st_gid),
            (before.st_mode, before.st_uid, before.st_gid),
        )


class SignalTests(InDirectory):
    """
    What SIGUSR1 does to the log file: rotate it in place, or reopen it once
    logrotate has moved it away.
    """

    def setUp(self) -> None:
        super().setUp()
        self.observer = Events()
        globalLogPublisher.addObserver(self.observer)
        self.addCleanup(globalLogPublisher.removeObserver, self.observer)
        factory, actions, stdout = self.factory()
        self.log = Logger(namespace="tchat.test", observer=factory())
        [self.sigusr1] = actions
        self.log.info("before")

    def said(self) -> list[str]:
        """
        What tchat itself logged about SIGUSR1.
        """
        return [
            e["log_format"].format(**e)
            for e in self.observer.events
            if e.get("log_namespace") == "tchat.logs"
        ]

    def test_rotates_in_place(self) -> None:
        """
        With the file where it was, twistd.log becomes twistd.log.1 (and
        twistd.log.1 becomes twistd.log.2), and new lines go to a new
        twistd.log.
        """
        self.sigusr1()
        self.log.info("between")
        self.sigusr1()
        self.log.info("after")
        self.assertRegex(Path("twistd.log.2").read_text(), r"^\S+ .* before\n$")
        self.assertRegex(Path("twistd.log.1").read_text(), r"^\S+ .* between\n$")
        self.assertRegex(Path("twistd.log").read_text(), r"^\S+ .* after\n$")
        path = str(self.directory / "twistd.log")
        self.assertEqual(self.said(), [f"log: SIGUSR1: rotated {path} to {path}.1"] * 2)

    def test_reopens_moved_file(self) -> None:
        """
        Once the file was moved away (as logrotate does), SIGUSR1 starts a
        new file at the same path, with the same mode; the moved file keeps
        what was written before.
        """
        os.rename("twistd.log", "twistd.log-20261121")
        self.log.info("moved")
        self.sigusr1()
        self.log.info("after")
        self.assertRegex(
            Path("twistd.log-20261121").read_text(), r"^\S+ .* before\n\S+ .* moved\n$"
        )
        self.assertRegex(Path("twistd.log").read_text(), r"^\S+ .* after\n$")
        self.assertEqual(stat.S_IMODE(os.stat("twistd.log").st_mode), 0o600)
        self.assertFalse(os.path.exists("twistd.log.1"))
        self.assertEqual(
            self.said(),
            [
                f"log: SIGUSR1: {self.directory / 'twistd.log'} had been moved away; "
                "reopened it"
            ],
        )

    def test_reopens_replaced_file(self) -> None:
        """
        When another file took its place (logrotate's C{create}), SIGUSR1
        writes to that file, and leaves its mode as it was made.
        """
        os.rename("twistd.log", "twistd.log.1")
        Path("twistd.log").write_text("")
        os.chmod("twistd.log", 0o640)
        self.sigusr1()
        self.log.info("after")
        self.assertRegex(Path("twistd.log.1").read_text(), r"^\S+ .* before\n$")
        self.assertRegex(Path("twistd.log").read_text(), r"^\S+ .* after\n$")
        self.assertEqual(stat.S_IMODE(os.stat("twistd.log").st_mode), 0o640)
        self.assertFalse(os.path.exists("twistd.log.2"))

    def test_cannot_reopen(self) -> None:
        """
        When nothing can be opened at the path, the moved file stays in use,
        and the failure is logged.
        """
        os.rename("twistd.log", "moved.log")
        os.mkdir("twistd.log")
        self.sigusr1()
        self.log.info("after")
        self.assertRegex(
            Path("moved.log").read_text(), r"^\S+ .* before\n\S+ .* after\n$"
        )
        [said] = self.said()
        self.assertIn("cannot rotate or reopen", said)
        self.assertIn("still writing to the same file", said)

    def test_cannot_rotate(self) -> None:
        """
        When this user may not rename the file (twistd's rotation would
        silently do nothing), the file stays in use and the failure is
        logged.
        """
        self.patch(os, "access", lambda path, mode: False)
        self.sigusr1()
        self.log.info("after")
        self.assertEqual(os.listdir("."), ["twistd.log"])
        self.assertRegex(
            Path("twistd.log").read_text(), r"^\S+ .* before\n\S+ .* after\n$"
        )
        [said] = self.said()
        self.assertIn("may not rename", said)


class InstallSigusr1Tests(InDirectory):
    """
    L{logs.install_sigusr1} hands SIGUSR1 to the reactor thread.
    """

    def test_signal_calls_from_thread(self) -> None:
        """
        A real SIGUSR1 asks the reactor to run the action in its thread.
        """

        class Reactor:
            def __init__(self) -> None:
                self.calls: list[Callable[[], None]] = []

            def callFromThread(self, f: Callable[[], None]) -> None:
                self.calls.append(f)

        reactor = Reactor()
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)

        def action() -> None:
            pass

        logs.install_sigusr1(action, reactor)  # type: ignore[arg-type]
        os.kill(os.getpid(), signal.SIGUSR1)
        self.assertEqual(reactor.calls, [action])

    def test_existing_handler_kept(self) -> None:
        """
        A SIGUSR1 handler someone else installed is left in place, as
        twistd does.
        """

        def theirs(signum: int, frame: object) -> None:
            pass

        signal.signal(signal.SIGUSR1, theirs)
        logs.install_sigusr1(lambda: None)
        self.assertIs(signal.getsignal(signal.SIGUSR1), theirs)


class InstallLogObserverTests(InDirectory):
    """
    L{logs.install_log_observer}, as C{twistd ... tchat} calls it while
    parsing the command line.
    """

    def setUp(self) -> None:
        super().setUp()
        Path("tap.ini").write_text(
            "[telnet]\nlisten = tcp:0:interface=127.0.0.1\n[web]\nlisten =\n"
            "[admin]\nlisten = none\n[history]\nenabled = false\n"
        )

    def twistd(self, *argv: str) -> ServerOptions:
        """
        Parse a C{twistd} command line that runs tchat, as twistd does.
        """
        options = ServerOptions()
        self.patch(options, "_getPlugins", lambda interface: [tchat_plugin])
        options.parseOptions(list(argv))
        return options

    def test_foreground(self) -> None:
        """
        C{twistd -n tchat} gets tchat's observer factory, logging to
        standard output in C{[log] format}.
        """
        with open("tap.ini", "a") as f:
            f.write("[log]\nformat = json\n")
        options = self.twistd("-n", "tchat")
        factory = options["logger"]
        self.assertIsInstance(factory, logs.ObserverFactory)
        self.assertEqual(
            (factory.log_format, factory.logfile, factory.nodaemon),
            ("json", None, True),
        )
        self.assertEqual(factory.destination(), "-")

    def test_daemon(self) -> None:
        """
        twistd's C{--logfile}, C{--umask}, C{--uid} and C{--gid} reach the
        factory.
        """
        options = self.twistd(
            "--logfile",
            "t.log",
            "--umask",
            "027",
            "--uid",
            "65534",
            "--gid",
            "65534",
            "tchat",
        )
        factory = options["logger"]
        self.assertIsInstance(factory, logs.ObserverFactory)
        self.assertEqual(
            (factory.log_format, factory.logfile, factory.nodaemon),
            ("text", "t.log", False),
        )
        self.assertEqual(
            (factory.umask, factory.uid, factory.gid), (0o027, 65534, 65534)
        )

    def test_user_logger_wins(self) -> None:
        """
        A C{--logger} of the user's own is used as twistd would use it.
        """
        options = self.twistd("-n", "--logger", "tests.test_logs.user_logger", "tchat")
        self.assertIs(options["logger"], user_logger)

    def test_json_logger(self) -> None:
        """
        C{--logger tchat.logs.json_observer} is a factory twistd accepts:
        JSON lines without editing C{tap.ini}.
        """
        options = self.twistd("-n", "--logger", "tchat.logs.json_observer", "tchat")
        self.assertIs(options["logger"], logs.json_observer)

    def test_syslog_wins(self) -> None:
        """
        With C{--syslog}, twistd's own syslog observer is left to start.
        """
        self.assertIsNone(self.twistd("--syslog", "tchat")["logger"])

    def test_without_parent(self) -> None:
        """
        tchat's options parsed on their own (as tests do) change nothing.
        """
        options = tap.Options()
        options.parseOptions([])
        parent = getattr(options, "parent", None)
        self.assertIsNone(parent)
        logs.install_log_observer(parent, options.config.log.format)

    def test_parent_without_twistd_keys(self) -> None:
        """
        A parent that is not twistd's Unix C{ServerOptions} is left alone.
        """
        parent: dict[str, Any] = {"logger": None}
        options = tap.Options()
        options.parseOptions([])
        logs.install_log_observer(parent, options.config.log.format)  # type: ignore[arg-type]
        self.assertEqual(parent, {"logger": None})
