"""
C{twistd tchat} as a real daemon (no C{-n}): twistd's C{--pidfile},
C{--logfile}, C{--umask} and C{--uid}/C{--gid}, what SIGUSR1 does to its log
file, the JSON log, and C{contrib/logrotate} run by the real logrotate.

The daemon is not our child (twistd forks twice), so it is found through
its pidfile, and signalled only while C{/proc/PID/cmdline} still names
that pidfile: a PID used again by another process is never signalled.
Every test's cleanup stops its daemon (SIGTERM, then SIGKILL), and every
wait is bounded.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import signal
import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from twisted.internet.defer import ensureDeferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import FailTest, TestCase

from tests.integration.server import (
    DOOR_LISTENING,
    TAP_INI,
    TWISTD,
    ChatClient,
    async_test,
    connect,
    global_reactor,
    make_directory,
    run_process,
)
from tests.support import require

REPO = Path(__file__).resolve().parents[2]
"""The checkout these tests were loaded from."""

STOP_WITHIN = 20.0
"""Seconds a daemon may take to end after SIGTERM: its shutdown grace
(5 s by default) with room to spare."""


async def wait_until(check: Callable[[], bool], what: str, timeout: float) -> None:
    """
    Poll C{check} every 50 ms until it is true.

    @param what: What is awaited, for the failure message.
    @raise FailTest: If it is still false after C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise FailTest(f"{what} did not happen within {timeout} s")
        await deferLater(global_reactor(), 0.05)


def read(path: str | Path) -> str:
    """
    A file's text, or C{""} if it does not exist (yet).
    """
    try:
        return Path(path).read_text("utf-8", "replace")
    except FileNotFoundError:
        return ""


class Daemon:
    """
    One running C{twistd tchat} daemon, known by its pidfile.

    @ivar directory: Its working directory: C{tap.ini}, the history, the
        pidfile and the log are all here.
    @ivar pid: Its PID, from the pidfile.
    @ivar port: Where its telnet door listens on 127.0.0.1.
    @ivar web_port: Where its web door listens on 127.0.0.1.
    """

    def __init__(self, directory: str, pid: int) -> None:
        self.directory = directory
        self.pid = pid
        self.port = 0
        self.web_port = 0

    @property
    def pidfile(self) -> str:
        return os.path.join(self.directory, "twistd.pid")

    @property
    def logfile(self) -> str:
        return os.path.join(self.directory, "twistd.log")

    def log(self) -> str:
        """
        Everything it has logged, in every log file in its directory.
        """
        parts = []
        for name in sorted(os.listdir(self.directory)):
            if name.startswith("twistd.log"):
                parts.append(f"--- {name}\n{read(os.path.join(self.directory, name))}")
        return "\n".join(parts)

    def status(self) -> dict[str, str]:
        """
        Its C{/proc/PID/status} fields; empty once it has ended, or when the
        PID is no longer this daemon's.
        """
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return {}
        if self.pidfile.encode() not in cmdline.split(b"\0"):
            return {}
        fields = dict(
            line.split(":\t", 1) for line in text.splitlines() if ":\t" in line
        )
        if fields.get("State", "").startswith(("Z", "X")):
            return {}
        return fields

    def running(self) -> bool:
        """
        Whether it is still running (an ended, unreaped zombie is not).
        """
        return bool(self.status())

    def signal(self, number: signal.Signals) -> None:
        """
        Send it a signal, if it is still running.
        """
        if self.running():
            os.kill(self.pid, number)

    async def stop(self) -> None:
        """
        SIGTERM, then wait for the process to end and its pidfile to go;
        SIGKILL after L{STOP_WITHIN} seconds, and fail.  The exit status is
        not looked at.
        """
        self.signal(signal.SIGTERM)
        try:
            await wait_until(
                lambda: not self.running() and not os.path.exists(self.pidfile),
                "the daemon's end after SIGTERM",
                STOP_WITHIN,
            )
        except FailTest:
            self.signal(signal.SIGKILL)
            await wait_until(lambda: not self.running(), "the end after SIGKILL", 5)
            raise FailTest(
                f"the daemon did not end and remove its pidfile within "
                f"{STOP_WITHIN} s of SIGTERM; its log:\n{self.log()}"
            ) from None
        if "Traceback" in self.log():
            raise FailTest(f"the daemon logged a traceback:\n{self.log()}")

    async def logs(self, pattern: str | bytes, timeout: float = 10.0) -> None:
        """
        Wait until C{twistd.log} holds C{pattern} (a regex).
        """
        compiled = re.compile(pattern if isinstance(pattern, str) else pattern.decode())
        try:
            await wait_until(
                lambda: compiled.search(read(self.logfile)) is not None,
                f"the log line {compiled.pattern!r}",
                timeout,
            )
        except FailTest as e:
            raise FailTest(f"{e}; the logs:\n{self.log()}") from None


async def start_daemon(
    testcase: TestCase,
    tap_ini: str = "",
    twistd_args: Sequence[str] = (),
    directory: str | None = None,
) -> Daemon:
    """
    Run C{twistd --pidfile twistd.pid --logfile twistd.log --umask 0077
    [twistd_args] tchat ...} in a directory and wait for the parent to
    return and for both doors of the daemon it leaves to listen.

    @param tap_ini: Added to the test servers' L{TAP_INI}, which gets a
        C{[history] path} in the directory too.
    @param twistd_args: More of twistd's options.
    @param directory: Where to run; a fresh directory by default.
    @return: The daemon; the test's cleanup stops it.
    """
    if directory is None:
        directory = make_directory(testcase)
    config = os.path.join(directory, "tap.ini")
    history = os.path.join(directory, "history.sqlite3")
    with open(config, "w", encoding="utf-8") as f:
        f.write(f"{TAP_INI}\n[history]\npath = {history}\n{tap_ini}")
    pidfile = os.path.join(directory, "twistd.pid")
    args = [
        TWISTD,
        "--pidfile",
        pidfile,
        "--logfile",
        os.path.join(directory, "twistd.log"),
        "--umask",
        "0077",
        *twistd_args,
        "tchat",
        "--config",
        config,
        # Port 0, read from the log: no race for a free port.
        "--telnet",
        "tcp:0:interface=127.0.0.1",
        "--web",
        "tcp:0:interface=127.0.0.1",
        "--admin",
        "none",
    ]
    parent = await run_process(testcase, TWISTD, args, path=directory, timeout=30)
    if parent.exit_code != 0 or not os.path.exists(pidfile):
        raise FailTest(
            f"twistd did not start a daemon: exit {parent.exit_code}, pidfile "
            f"{'there' if os.path.exists(pidfile) else 'missing'}\n{parent.output}\n"
            f"{read(os.path.join(directory, 'twistd.log'))}"
        )
    daemon = Daemon(directory, int(read(pidfile)))

    async def cleanup() -> None:
        if daemon.running():
            await daemon.stop()

    testcase.addCleanup(lambda: ensureDeferred(cleanup()))
    if not daemon.running():
        raise FailTest(f"no process {daemon.pid} from the pidfile:\n{daemon.log()}")
    ports: dict[str, int] = {}

    def listening() -> bool:
        for match in DOOR_LISTENING.finditer(read(daemon.logfile).encode()):
            ports[match.group(1).decode()] = int(match.group(2))
        return {"telnet", "web"} <= ports.keys()

    try:
        await wait_until(listening, "both doors listening", 15)
    except FailTest as e:
        raise FailTest(f"{e}; the log:\n{daemon.log()}") from None
    daemon.port, daemon.web_port = ports["telnet"], ports["web"]
    return daemon


async def visit(testcase: TestCase, daemon: Daemon, name: str) -> ChatClient:
    """
    Connect a telnet user, which the daemon logs as
    C{guest-xxxx connected by telnet}, and wait for that line.  The user
    leaves again before the daemon is stopped (see L{leave}).
    """
    client = await connect(testcase, daemon.port, name)
    testcase.addCleanup(lambda: ensureDeferred(leave(daemon, client)))
    await daemon.logs(rf"{client.nick} connected by telnet")
    return client


async def leave(daemon: Daemon, client: ChatClient) -> None:
    """
    Close a user's connection, and wait until the daemon has seen it go:
    these tests are about the daemon, not about users present when it
    stops (the telnet suite's are).
    """
    if not client.connected:
        return
    await client.close()
    await daemon.logs(rf"{client.nick} disconnected")


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


class DaemonTests(TestCase):
    """
    C{twistd tchat} without C{-n}: a daemon, found by its pidfile.
    """

    timeout = 120

    @async_test
    async def test_daemonises(self) -> None:
        """
        The command returns at once, leaving a daemon detached from the
        terminal whose PID is in the pidfile; telnet users get the welcome;
        the history and the log are private to its user (C{--umask 0077});
        SIGTERM by the pidfile's PID stops it and removes the pidfile.
        """
        daemon = await start_daemon(self)
        status = daemon.status()
        self.assertNotEqual(int(status["PPid"]), os.getpid())
        self.assertEqual(os.readlink(f"/proc/{daemon.pid}/fd/0"), "/dev/null")
        self.assertNotEqual(os.getsid(daemon.pid), os.getsid(0))

        client = await visit(self, daemon, "alice")
        self.assertRegex(bytes(client.received.data), rb"^\*\*\* Welcome to tchat")
        self.assertEqual(mode(os.path.join(daemon.directory, "history.sqlite3")), 0o600)
        self.assertEqual(mode(daemon.logfile), 0o600)
        self.assertEqual(mode(daemon.pidfile), 0o600)

        await leave(daemon, client)
        await daemon.stop()
        self.assertFalse(os.path.exists(daemon.pidfile))

    @async_test
    async def test_sigusr1_rotates(self) -> None:
        """
        SIGUSR1 with the log in place rotates it as twistd does:
        twistd.log.1 holds everything logged before, and new lines go to a
        new twistd.log.
        """
        daemon = await start_daemon(self)
        alice = await visit(self, daemon, "alice")
        daemon.signal(signal.SIGUSR1)
        await daemon.logs(r"log: SIGUSR1: rotated \S+twistd\.log to \S+twistd\.log\.1")
        bob = await visit(self, daemon, "bob")

        rotated = read(daemon.logfile + ".1")
        self.assertIn("telnet door listening on", rotated)
        self.assertIn(f"{alice.nick} connected by telnet", rotated)
        self.assertNotIn(f"{bob.nick} connected", rotated)
        current = read(daemon.logfile)
        self.assertNotIn("door listening on", current)
        self.assertIn(f"{bob.nick} connected by telnet", current)
        self.assertEqual(mode(daemon.logfile), 0o600)

    @async_test
    async def test_sigusr1_reopens_moved_log(self) -> None:
        """
        After the log was moved away (as logrotate does), SIGUSR1 makes the
        daemon start a new twistd.log and write there; the moved file keeps
        the earlier lines.
        """
        daemon = await start_daemon(self)
        alice = await visit(self, daemon, "alice")
        moved = os.path.join(daemon.directory, "twistd.log-moved")
        os.rename(daemon.logfile, moved)
        daemon.signal(signal.SIGUSR1)
        await daemon.logs(r"log: SIGUSR1: \S+twistd\.log had been moved away; reopened")
        bob = await visit(self, daemon, "bob")

        self.assertIn(f"{alice.nick} connected by telnet", read(moved))
        self.assertNotIn(f"{bob.nick} connected", read(moved))
        self.assertIn(f"{bob.nick} connected by telnet", read(daemon.logfile))
        self.assertFalse(os.path.exists(daemon.logfile + ".1"))
        self.assertEqual(mode(daemon.logfile), 0o600)

    @async_test
    async def test_json_log(self) -> None:
        """
        With C{[log] format = json}, every line of the log is one JSON
        object with C{time}, C{level}, C{namespace} and C{text}; a telnet
        user's arrival carries its C{nick} and C{door} as fields.
        """
        daemon = await start_daemon(self, "[log]\nformat = json\n")
        client = await visit(self, daemon, "alice")
        lines = read(daemon.logfile).splitlines()
        events = []
        for line in lines:
            try:
                events.append(json.loads(line))
            except ValueError:
                self.fail(f"not JSON: {line!r}\nthe log:\n{daemon.log()}")
        for event in events:
            self.assertLessEqual({"time", "level", "namespace", "text"}, event.keys())
        arrivals = [e for e in events if e.get("nick") == client.nick]
        self.assertEqual(len(arrivals), 1, lines)
        self.assertEqual(arrivals[0]["door"], "telnet")
        self.assertEqual(arrivals[0]["level"], "info")
        self.assertEqual(arrivals[0]["text"], f"{client.nick} connected by telnet")
        self.assertRegex(arrivals[0]["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$")

    @async_test
    async def test_uid_gid(self) -> None:
        """
        Started by root with C{--uid}/C{--gid} of C{nobody}, the daemon runs
        as that user and still serves; its history and log belong to that
        user, and SIGUSR1 can still rotate the log.
        """
        require(os.geteuid() == 0, "--uid/--gid need the tests to run as root")
        nobody = pwd.getpwnam("nobody")
        group = grp.getgrgid(nobody.pw_gid).gr_name
        directory = make_directory(self)
        # twistd reads tap.ini and opens the log as root, but the history
        # is written once it runs as nobody: nobody must reach the folder
        # (trial's temporary folders are 0700) and write in it.
        here = Path.cwd()
        for folder in Path(directory).parents:
            if folder != here and here not in folder.parents:
                break
            os.chmod(folder, os.stat(folder).st_mode | 0o011)
        os.chown(directory, nobody.pw_uid, nobody.pw_gid)
        daemon = await start_daemon(
            self, twistd_args=["--uid", "nobody", "--gid", group], directory=directory
        )
        status = daemon.status()
        self.assertEqual(status["Uid"].split(), [str(nobody.pw_uid)] * 4)
        self.assertEqual(status["Gid"].split(), [str(nobody.pw_gid)] * 4)

        alice = await visit(self, daemon, "alice")
        self.assertTrue(alice.nick)
        owners = {
            name: os.stat(os.path.join(directory, name)).st_uid
            for name in ("history.sqlite3", "twistd.log")
        }
        self.assertEqual(owners, dict.fromkeys(owners, nobody.pw_uid))

        daemon.signal(signal.SIGUSR1)
        await daemon.logs(r"log: SIGUSR1: rotated")
        self.assertIn(f"{alice.nick} connected", read(daemon.logfile + ".1"))
        self.assertEqual(os.stat(daemon.logfile).st_uid, nobody.pw_uid)

    @async_test
    async def test_contrib_logrotate(self) -> None:
        """
        C{contrib/logrotate}, run by the real logrotate with this daemon's
        paths, leaves the earlier lines in twistd.log.1 and has the daemon
        write new ones to a new twistd.log.
        """
        logrotate = shutil.which("logrotate") or shutil.which("/usr/sbin/logrotate")
        require(
            logrotate is not None, "logrotate is not installed (apt install logrotate)"
        )
        assert logrotate is not None
        daemon = await start_daemon(self)
        alice = await visit(self, daemon, "alice")
        config = os.path.join(daemon.directory, "logrotate.conf")
        text = (REPO / "contrib" / "logrotate").read_text()
        self.assertIn("/var/log/tchat/twistd.log {", text)
        self.assertIn("pidfile=/run/tchat/tchat.pid", text)
        text = text.replace("/var/log/tchat/twistd.log", daemon.logfile).replace(
            "/run/tchat/tchat.pid", daemon.pidfile
        )
        with open(config, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(config, 0o644)
        state = os.path.join(daemon.directory, "logrotate.state")
        done = await run_process(
            self,
            logrotate,
            [logrotate, "--state", state, "--force", config],
            path=daemon.directory,
        )
        self.assertEqual(done.exit_code, 0, done.output)
        await daemon.logs(r"log: SIGUSR1: \S+twistd\.log had been moved away; reopened")
        bob = await visit(self, daemon, "bob")

        rotated = read(daemon.logfile + ".1")
        self.assertIn(f"{alice.nick} connected by telnet", rotated)
        self.assertNotIn(f"{bob.nick} connected", rotated)
        self.assertIn(f"{bob.nick} connected by telnet", read(daemon.logfile))
