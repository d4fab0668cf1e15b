"""
Process plumbing for the benchmark matrix (C{bench/matrix.py}): start a
server or the load generator, keep its pipes drained, read its CPU time and
resident memory from C{/proc}, stop it by its PID, and describe the machine.

Nothing here picks what to run; C{bench/matrix.py} does.  Every wait has a
timeout, and every process is stopped by the PID this module started.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
"""The checkout this file is in: its tchat is the one benchmarked."""

HOST = "127.0.0.1"

LOG_TAIL = 200
"""How many of a process's last output lines are kept, to show on failure."""

PROBLEM = re.compile(r"Traceback|Unhandled")
"""A server log line that shows a bug (counted as C{server_errors})."""

STREAM_LIMIT = 4 * 1024 * 1024
"""The longest line read from a child (the generator's result line)."""


# -- /proc -------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """
    A process's user plus system CPU time (all its threads), or C{None}
    once it is gone.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int | None:
    """
    A process's resident memory (C{VmRSS}) in KiB, or C{None} once it is
    gone.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def raise_fd_limit() -> int:
    """
    Let this process and its children (which inherit it) hold as many
    sockets as the hard limit allows; return the new soft limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def can_pin() -> bool:
    """
    Whether the server and the generator can each have a core of their
    own: two CPUs or more, and C{taskset}.
    """
    return len(os.sched_getaffinity(0)) >= 2 and shutil.which("taskset") is not None


def pinned(argv: Sequence[str], cpu: int | None) -> list[str]:
    """C{argv}, run on CPU C{cpu} under C{taskset} (as is if C{None})."""
    if cpu is None:
        return list(argv)
    return ["taskset", "-c", str(cpu), *argv]


def child_env() -> dict[str, str]:
    """
    The environment of every child: unbuffered Python output (so that a
    peer's C{listening on} line arrives at once) and this checkout first on
    the path (so that C{twistd} finds this checkout's C{tchat} plugin).
    """
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), env.get("PYTHONPATH", "")) if p
    )
    return env


# -- children ----------------------------------------------------------------


async def pump(
    stream: asyncio.StreamReader | None, handle: Callable[[str], None]
) -> None:
    """
    Read C{stream} line by line until its end, handing each line (decoded,
    without its end) to C{handle}, so that the child never blocks on a
    full pipe.
    """
    if stream is None:
        return
    while True:
        try:
            line = await stream.readline()
        except ValueError:
            # A line longer than STREAM_LIMIT: drop what is buffered.
            await stream.read(STREAM_LIMIT)
            continue
        if not line:
            return
        handle(line.decode("utf-8", "replace").rstrip("\r\n"))


async def stop_process(process: asyncio.subprocess.Process, grace: float) -> int | None:
    """
    SIGTERM the process (by its PID), give it C{grace} seconds, then
    SIGKILL it; return its exit status (negative: killed by that signal).
    Even if this is cancelled (a second Ctrl-C), the process is killed.
    """
    try:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await asyncio.wait_for(process.wait(), 10)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        raise
    return process.returncode


async def spawn_child(
    argv: Sequence[str], cwd: Path, *, merge_stderr: bool
) -> asyncio.subprocess.Process:
    """
    Start a child in a session of its own (a Ctrl-C reaches only this
    harness, which then stops the child itself), with pipes for its output.
    """
    return await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=child_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
        start_new_session=True,
        limit=STREAM_LIMIT,
    )


@dataclass
class Server:
    """
    A running server: its process, the ports its doors listen on (read
    from its log), the tail of its log and how many log lines showed a bug.

    @ivar listening: Set once every wanted door is listening, or the log
        ended (the server exited) first.
    """

    process: asyncio.subprocess.Process
    listen_pattern: re.Pattern[str]
    wanted: frozenset[str]
    ports: dict[str, int] = field(default_factory=dict)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL))
    errors: int = 0
    listening: asyncio.Event = field(default_factory=asyncio.Event)
    _pump: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        """The server's PID (the one C{taskset} became)."""
        return self.process.pid

    @property
    def alive(self) -> bool:
        """Whether the server has not exited yet."""
        return self.process.returncode is None

    def line(self, text: str) -> None:
        """One log line: keep it, count it if it shows a bug, find doors."""
        self.tail.append(text)
        if PROBLEM.search(text):
            self.errors += 1
        if not self.listening.is_set():
            found = self.listen_pattern.search(text)
            if found:
                self.ports[found.group("door")] = int(found.group("port"))
                if self.wanted <= self.ports.keys():
                    self.listening.set()

    async def _read_log(self) -> None:
        try:
            await pump(self.process.stdout, self.line)
        finally:
            self.listening.set()

    @classmethod
    async def spawn(
        cls,
        argv: Sequence[str],
        cwd: Path,
        listen_pattern: re.Pattern[str],
        wanted: frozenset[str],
    ) -> Server:
        """
        Start a server; its log is read from now on until it ends.  The
        caller must L{stop} it.

        @param listen_pattern: Finds a door in a log line: groups C{door}
            and C{port}.
        @param wanted: The doors to wait for in L{wait_listening}.
        """
        process = await spawn_child(argv, cwd, merge_stderr=True)
        server = cls(process, listen_pattern, wanted)
        server._pump = asyncio.create_task(server._read_log())
        return server

    async def wait_listening(self, timeout: float) -> None:
        """
        Wait (at most C{timeout} s) until every wanted door is listening.

        @raise RuntimeError: The server exited, or did not listen in time.
        """
        try:
            await asyncio.wait_for(self.listening.wait(), timeout)
        except TimeoutError:
            raise RuntimeError(
                f"not listening on {sorted(self.wanted)} after {timeout:g} s"
            ) from None
        if not self.wanted <= self.ports.keys():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 10)
            raise RuntimeError(f"exited ({self.process.returncode}) before listening")

    async def stop(self, grace: float) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL); return its exit status."""
        status = await stop_process(self.process, grace)
        if self._pump is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pump, 5)
        return status


@dataclass
class Generator:
    """
    A running load generator: its JSON events as they arrive on stdout,
    and the tail of its other output.

    @ivar ready: Set when the C{ready} event arrives (idle mode).
    @ivar result: The C{result} event, once it arrives.
    """

    process: asyncio.subprocess.Process
    ready_event: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL))
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    _pumps: list[asyncio.Task[None]] = field(default_factory=list)

    def out(self, text: str) -> None:
        """One stdout line: an event, or something to keep for a report."""
        try:
            event = json.loads(text)
        except ValueError:
            self.tail.append(text)
            return
        if not isinstance(event, dict):
            self.tail.append(text)
        elif event.get("event") == "ready":
            self.ready_event = event
            self.ready.set()
        elif event.get("event") == "result":
            self.result = event

    @classmethod
    async def start(cls, argv: Sequence[str], cwd: Path) -> Generator:
        """Start the generator; the caller must L{stop} it."""
        process = await spawn_child(argv, cwd, merge_stderr=False)
        generator = cls(process)
        generator._pumps = [
            asyncio.create_task(pump(process.stdout, generator.out)),
            asyncio.create_task(pump(process.stderr, generator.tail.append)),
        ]
        return generator

    async def exited(self, timeout: float) -> bool:
        """Wait (at most C{timeout} s) for the generator to exit by itself."""
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            return False
        await self._drained()
        return True

    async def stop(self, grace: float) -> int | None:
        """Stop the generator (SIGTERM, then SIGKILL); return its status."""
        status = await stop_process(self.process, grace)
        await self._drained()
        return status

    async def _drained(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._pumps), 5)


# -- the machine -------------------------------------------------------------


def _output(argv: Sequence[str], cwd: Path | None = None) -> str | None:
    """The first line a command prints, or C{None} if it cannot run."""
    try:
        done = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=20, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.strip().splitlines()
    return lines[0] if lines else ""


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def _ws_version(node_dir: Path) -> str | None:
    with contextlib.suppress(OSError, ValueError):
        package = json.loads((node_dir / "node_modules/ws/package.json").read_text())
        return str(package["version"])
    return None


def _tchat_dirty() -> bool | None:
    """Whether C{tchat/} differs from the commit (read-only C{git diff})."""
    try:
        done = subprocess.run(
            ["git", "diff", "--quiet", "HEAD", "--", "tchat"],
            cwd=REPO,
            capture_output=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {0: False, 1: True}.get(done.returncode)


def source_digest() -> str:
    """
    A short digest of tchat's Python source as it is on disk now, so that a
    report can tell when the code changed between runs of one session.
    """
    digest = hashlib.sha256()
    for path in sorted((REPO / "tchat").rglob("*.py")):
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\0")
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def machine(pin: bool, node_dir: Path) -> dict[str, Any]:
    """The machine and the versions of everything the matrix runs."""
    return {
        "cpu": _cpu_model(),
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "twisted": _version("twisted"),
        "autobahn": _version("autobahn"),
        "websockets": _version("websockets"),
        "node": _output(["node", "--version"]),
        "ws": _ws_version(node_dir),
        "gcc": _output(["gcc", "-dumpfullversion"]),
        "tchat": _version("tchat"),
        "commit": _output(["git", "rev-parse", "--short", "HEAD"], cwd=REPO),
        "tchat_dirty": _tchat_dirty(),
        "tchat_source": source_digest(),
        "pinned": pin,
        "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }
