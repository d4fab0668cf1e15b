# -*- test-case-name: tests.test_logs -*-
"""
Where and how C{twistd tchat} logs.

twistd decides where the log goes: standard output with C{--nodaemon},
else C{--logfile PATH} (C{twistd.log} by default).  tchat keeps those
choices and adds two things:

  - C{[log] format = json} in C{tap.ini} writes one JSON object per line
    and event, for log shippers (L{format_json_event}).
  - SIGUSR1 works with logrotate as well as on its own: if the log file was
    moved away (or replaced) since it was opened, tchat reopens it at its
    path; otherwise it rotates it as twistd does (C{twistd.log} becomes
    C{twistd.log.1}, and so on).  twistd's own SIGUSR1 only rotates, and
    silently does nothing once logrotate has renamed the file, so tchat
    would go on writing to the renamed file for ever.

twistd's C{--logger}, C{--syslog} and C{--logfile} keep working as they
always have: a C{--logger} or C{--syslog} of the user's own wins.
"""

from __future__ import annotations

import json
import math
import os
import pwd
import signal
import stat
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from string import Formatter
from types import FrameType
from typing import IO, Any, Literal, cast

from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    PredicateResult,
    formatEvent,
    formatEventAsClassicLogText,
    formatTime,
)
from twisted.python import threadable, usage
from twisted.python.failure import Failure
from twisted.python.logfile import LogFile
from twisted.python.reflect import safe_repr
from zope.interface import implementer

_log = Logger()

RESERVED = ("time", "level", "namespace", "system", "text", "traceback")
"""The keys tchat's JSON lines always use; an event field with one of these
names is written as C{field_NAME} instead."""

_LEGACY_KEYS = frozenset(
    {"message", "time", "system", "isError", "format", "why", "failure", "logLevel"}
)
"""What L{twisted.python.log} events carry (and what twisted.logger adds to
events passed on to old-style observers): all of it is already in
C{text}, C{time}, C{system} or C{traceback}."""

SignalOutcome = Literal["rotated", "reopened"]

_LEVELS = frozenset(LogLevel.iterconstants())


def _iso_time(seconds: float) -> str:
    """
    A time stamp as ISO 8601 in UTC, to the microsecond:
    C{2026-11-21T12:04:05.123456Z}.
    """
    return (
        datetime.fromtimestamp(seconds, UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


def _json_value(value: object) -> object:
    """
    C{value} itself if JSON can carry it as it is, else its C{repr}.
    """
    if value is None or type(value) in (str, int, bool):
        return value
    if type(value) is float:
        return value if math.isfinite(value) else safe_repr(value)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return safe_repr(value)
    return value


def _json_object(event: LogEvent) -> dict[str, object]:
    """
    The JSON object for one event, without any check that it serialises.
    """
    level = event.get("log_level")
    when = event.get("log_time")
    line: dict[str, object] = {
        "time": _iso_time(when if isinstance(when, int | float) else time.time()),
        # LogLevel's members are NamedConstants, not LogLevel instances.
        "level": level.name if level is not None and level in _LEVELS else "info",
        "namespace": str(event.get("log_namespace", "")),
    }
    system = event.get("log_system")
    if system is not None:
        line["system"] = str(system)
    line["text"] = formatEvent(event)
    failure = event.get("log_failure")
    if isinstance(failure, Failure):
        try:
            line["traceback"] = failure.getTraceback()
        except Exception:
            line["traceback"] = safe_repr(failure)
    legacy = "isError" in event
    for key, value in event.items():
        name = str(key)
        if name.startswith("log_") or (legacy and name in _LEGACY_KEYS):
            continue
        line[f"field_{name}" if name in RESERVED else name] = _json_value(value)
    return line


def format_json_event(event: LogEvent) -> str:
    """
    One event as one line of JSON, for log shippers.

    The object has C{time} (ISO 8601, UTC), C{level} (C{debug}, C{info},
    C{warn}, C{error} or C{critical}), C{namespace} (the module or class that
    logged it), C{system} when the event has one, C{text} (the message as
    the text log shows it), C{traceback} when the event carries a failure,
    and every field the event was logged with (as its C{repr} when JSON
    cannot carry the value; named C{field_NAME} when C{NAME} is one of the
    keys above).  Non-ASCII text is escaped, so the line is plain ASCII.

    This never raises: an event that cannot be formatted gives a line that
    says so.

    @param event: A L{twisted.logger} event.
    @return: The JSON object and a newline.
    """
    try:
        return json.dumps(_json_object(event), allow_nan=False) + "\n"
    except Exception as e:
        try:
            text = f"Unable to format event {safe_repr(event)}: {safe_repr(e)}"
            return (
                json.dumps(
                    {
                        "time": _iso_time(time.time()),
                        "level": "error",
                        "namespace": __name__,
                        "text": text,
                    }
                )
                + "\n"
            )
        except Exception:
            return '{"level": "error", "text": "Unable to format an event"}\n'


def json_file_observer(out: IO[Any]) -> FileLogObserver:
    """
    An observer writing L{format_json_event}'s lines to C{out}.

    @param out: A file, or anything with C{write(str)} and C{flush()}, as
        L{twisted.logger.textFileLogObserver} takes.
    """
    return FileLogObserver(out, format_json_event)


class _SecondStamp:
    """
    The time stamp twistd puts on a text log line (C{2026-12-08T00:43:54+0000}),
    made once a second rather than for every line: it has no finer part,
    and working out the time zone for each line was a third of the cost of
    logging an arrival.
    """

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second: int | None = None
        self._text = "-"

    def __call__(self, when: float | None) -> str:
        if when is None:
            return "-"
        second = math.floor(when)
        if second != self._second:
            self._second, self._text = second, formatTime(second)
        return self._text


_Parsed = tuple[tuple[str, str | None, str | None, str | None], ...]

_FORMATS: dict[str, _Parsed | None] = {}
"""Log formats parsed once each (they are the source's literals)."""

_MOST_FORMATS = 1000
"""Past this many, a format is not kept (a format made at run time)."""


def _parsed(format: str) -> _Parsed | None:
    """
    C{format}'s parts, if every field in it is a plain name (no attribute,
    index or call, no nested field): what L{_message} can format.
    """
    found = _FORMATS.get(format, False)
    if found is not False:
        return found  # type: ignore[return-value]
    try:
        parts: _Parsed | None = tuple(Formatter().parse(format))
    except ValueError:
        parts = None
    for _, name, spec, _ in parts or ():
        if name is not None and (not name.isidentifier() or "{" in (spec or "")):
            parts = None
            break
    if len(_FORMATS) < _MOST_FORMATS:
        _FORMATS[format] = parts
    return parts


_CONVERSIONS: dict[str | None, Callable[[Any], Any]] = {
    None: lambda value: value,
    "r": repr,
    "s": str,
    "a": ascii,
}


def _message(event: LogEvent) -> str | None:
    """
    The event's text as Twisted's L{formatEvent} makes it, for the events
    a server logs all the time (a format of plain names, no failure), from
    a format parsed once; C{None} for any other event.
    """
    text_format = event.get("log_format")
    if (
        type(text_format) is not str
        or "log_failure" in event
        or "log_flattened" in event
    ):
        return None
    parts = _parsed(text_format)
    if parts is None:
        return None
    out = []
    try:
        for literal, name, spec, conversion in parts:
            out.append(literal)
            if name is not None:
                value = _CONVERSIONS[conversion](event[name])
                out.append(format(value, spec or ""))
    except Exception:
        return None  # Twisted says what went wrong
    return "".join(out) or None


def _system(event: LogEvent) -> str:
    """The bracketed part of a line, as Twisted's C{_formatSystem} makes it."""
    system = event.get("log_system")
    if system is None:
        level = event.get("log_level")
        name = "-" if level is None else level.name
        return f"{event.get('log_namespace', '-')}#{name}"
    try:
        return str(system)
    except Exception:
        return "UNFORMATTABLE"


def text_file_observer(out: IO[Any]) -> FileLogObserver:
    """
    twistd's text log (L{twisted.logger.textFileLogObserver}), line for line,
    with its time stamps made once a second, and the formats of the lines
    a server writes all the time (an arrival, a departure) parsed once.
    """
    stamp = _SecondStamp()

    def text(event: LogEvent) -> str | None:
        message = _message(event)
        if message is None:
            return formatEventAsClassicLogText(event, formatTime=stamp)
        line = f"{stamp(event.get('log_time'))} [{_system(event)}] {message}"
        return line.replace("\n", "\n\t") + "\n"

    return FileLogObserver(out, text)


def json_observer() -> FileLogObserver:
    """
    JSON lines on standard output, for C{twistd --nodaemon --logger
    tchat.logs.json_observer tchat}: the JSON log without changing
    C{tap.ini}.  twistd ignores C{--logfile} when given C{--logger}, and a
    daemon's standard output is C{/dev/null}: use C{[log] format = json}
    for a daemon's log file.
    """
    return json_file_observer(sys.stdout)


class TchatLogFile(LogFile):
    """
    A twistd log file that SIGUSR1 rotates or reopens, whichever is needed
    (see L{rotate_or_reopen}).
    """

    # twisted.logger calls observers in whichever thread logs, so writes
    # may come from other threads: like LogFile.write and rotate, hold the
    # file's lock while the open file changes.
    synchronized = ["rotate_or_reopen"]

    def moved(self) -> bool:
        """
        Whether the path no longer names the open file: it was moved away
        (by logrotate, or by hand), or another file took its place.
        """
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return not os.path.samestat(on_disk, os.fstat(self._file.fileno()))

    def rotate_or_reopen(self) -> SignalOutcome:
        """
        What SIGUSR1 does: reopen the path if the file was moved away (the
        renamed file is left as it is, for logrotate to compress), else
        rotate as twistd does: C{PATH.N} becomes C{PATH.N+1}, C{PATH}
        becomes C{PATH.1}, and a new C{PATH} is opened.

        On failure the current file stays open, so nothing logged is lost.

        @return: Which of the two it did.
        @raise OSError: If the new file could not be opened, or this user
            may not rename the file.
        """
        if self.moved():
            old, mode = self._file, self.defaultMode
            if os.path.exists(self.path):
                # Whoever put a file there (logrotate's "create") chose its
                # mode: keep it.
                self.defaultMode = None
            try:
                # LogFile.reopen closes first; open first instead, so a
                # failure leaves the old file in use.
                self._openFile()
            finally:
                self.defaultMode = mode
            old.close()
            return "reopened"
        if not (os.access(self.directory, os.W_OK) and os.access(self.path, os.W_OK)):
            # LogFile.rotate would return without a word.
            raise PermissionError(
                f"uid {os.geteuid()} may not rename {self.path} or write in "
                f"{self.directory}"
            )
        try:
            self.rotate()
        except OSError:
            if self.closed or self._file.closed:
                self._openFile()
            raise
        return "rotated"


threadable.synchronize(TchatLogFile)


def _signalled(log_file: TchatLogFile) -> None:
    """
    Rotate or reopen, then say which (in the new file).
    """
    try:
        outcome = log_file.rotate_or_reopen()
    except OSError as e:
        _log.warn(
            "log: SIGUSR1: cannot rotate or reopen {path}: {error}; "
            "still writing to the same file",
            path=log_file.path,
            error=str(e),
        )
        return
    if outcome == "reopened":
        _log.info(
            "log: SIGUSR1: {path} had been moved away; reopened it",
            path=log_file.path,
        )
    else:
        _log.info("log: SIGUSR1: rotated {path} to {path}.1", path=log_file.path)


def install_sigusr1(
    action: Callable[[], None], reactor: IReactorFromThreads | None = None
) -> None:
    """
    Run C{action} in the reactor thread on SIGUSR1, as twistd's file log
    does, unless SIGUSR1 already has a handler.

    @param action: What to do.
    @param reactor: The reactor to run it in; the global one by default.
    """
    if signal.getsignal(signal.SIGUSR1) not in (None, signal.SIG_DFL):
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if reactor is not None:
            reactor.callFromThread(action)
            return
        from twisted.internet import reactor as global_reactor

        cast(IReactorFromThreads, global_reactor).callFromThread(action)

    signal.signal(signal.SIGUSR1, handler)


class ObserverFactory:
    """
    The log observer factory tchat gives twistd (as C{--logger} would): it
    logs where twistd would have, in the format C{[log] format} asks for.

    twistd calls it once, before it daemonises and sheds privileges.

    @ivar log_format: C{text} or C{json}.
    @ivar logfile: twistd's C{--logfile}: C{None}, C{"-"} or a path.
    @ivar nodaemon: twistd's C{--nodaemon}.
    @ivar umask: twistd's C{--umask}, if given.
    @ivar uid: twistd's C{--uid}, if given.
    @ivar gid: twistd's C{--gid}, if given.
    """

    def __init__(
        self,
        log_format: str,
        logfile: str | None,
        nodaemon: bool,
        *,
        umask: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        stdout: IO[Any] | None = None,
        on_sigusr1: Callable[[Callable[[], None]], None] = install_sigusr1,
    ) -> None:
        """
        @param stdout: Standard output, when logging there; C{sys.stdout}
            when called by default.
        @param on_sigusr1: Called with what SIGUSR1 should do, when logging
            to a file; installs a signal handler by default.
        """
        self.log_format = log_format
        self.logfile = logfile
        self.nodaemon = nodaemon
        self.umask = umask
        self.uid = uid
        self.gid = gid
        self._stdout = stdout
        self._on_sigusr1 = on_sigusr1

    def __repr__(self) -> str:
        return f"<tchat log observer factory: {self.log_format}, {self.logfile!r}>"

    def destination(self) -> str:
        """
        Where the log goes: C{"-"} for standard output, else a path.

        @raise SystemExit: For C{--logfile=-} without C{--nodaemon}, as twistd.
        """
        if self.logfile == "-":
            if not self.nodaemon:
                sys.exit("Daemons cannot log to stdout, exiting!")
            return "-"
        if self.nodaemon and not self.logfile:
            return "-"
        return self.logfile or "twistd.log"

    def __call__(self) -> ILogObserver:
        """
        Open the log and make its observer, without the SSH library's debug
        chatter (a dozen lines for every SSH connection: key exchange,
        ciphers, each authentication method tried).

        @return: An L{ILogObserver}.
        """
        path = self.destination()
        out: IO[Any]
        if path == "-":
            out = self._stdout if self._stdout is not None else sys.stdout
        else:
            log_file = self.open_file(path)
            self._on_sigusr1(lambda: _signalled(log_file))
            out = cast(IO[Any], log_file)
        if self.log_format == "json":
            observer = json_file_observer(out)
        else:
            observer = text_file_observer(out)
        return FilteringLogObserver(observer, [_NoConchDebug()])

    def open_file(self, path: str) -> TchatLogFile:
        """
        Open (or create) the log file as twistd would, but:

          - It never rotates by size (twistd's rotates at 1 MB): only
            SIGUSR1 rotates it, so logrotate and twistd's numbering never
            fight over C{PATH.1}.
          - A new file's mode follows C{--umask} (0077 for a daemon without
            one), as does everything else tchat writes: twistd opens its log
            before it applies the umask.  An existing file keeps its mode.
          - When root starts tchat with C{--uid}/C{--gid}, the file is handed
            to that user, so SIGUSR1 can still rotate it after twistd sheds
            privileges.

        @param path: The log file's path.
        @return: The open file.
        """
        umask = self.umask
        if umask is None and not self.nodaemon:
            umask = 0o077
        mode = None
        if umask is not None and not os.path.lexists(path):
            mode = 0o666 & ~umask & 0o777
        log_file = TchatLogFile.fromFullPath(path, rotateLength=None, defaultMode=mode)
        if os.geteuid() == 0 and (self.uid is not None or self.gid is not None):
            gid = self.gid
            if gid is None and self.uid is not None:
                try:
                    gid = pwd.getpwuid(self.uid).pw_gid
                except KeyError:
                    gid = None
            try:
                if stat.S_ISREG(os.stat(log_file.path).st_mode):
                    os.chown(
                        log_file.path,
                        -1 if self.uid is None else self.uid,
                        -1 if gid is None else gid,
                    )
            except OSError:
                # Not fatal: the log works, SIGUSR1 will say it cannot rotate.
                pass
        assert isinstance(log_file, TchatLogFile)
        return log_file


@implementer(ILogFilterPredicate)
class _NoConchDebug:
    """
    Drops the debug events of twisted.conch (and of the SSH door's classes
    built on it, which log under their own names); leaves everything else.
    """

    def __call__(self, event: LogEvent) -> Any:
        if event.get("log_level") is LogLevel.debug and str(
            event.get("log_namespace", "")
        ).startswith(("twisted.conch", "tchat.ssh")):
            return PredicateResult.no
        return PredicateResult.maybe


def install_log_observer(parent: usage.Options | None, log_format: str) -> None:
    """
    Make twistd log through an L{ObserverFactory}, unless the user chose a
    C{--logger} or C{--syslog} of their own.

    twistd's L{ServerOptions<twisted.scripts._twistd_unix.ServerOptions>}
    (C{parent}) resolves its C{logger} option with C{namedAny} in its
    C{postOptions}, which runs after this plugin's, and fails on anything
    but a dotted name.  So the factory is set after that, by wrapping the
    parent's C{postOptions}, for this one parse only.  The runner made next
    reads it and calls it when logging starts.

    @param parent: twistd's options, the C{parent} of tchat's; nothing
        happens when it is C{None} (tests build tchat's options directly)
        or when it is not twistd's Unix one (it lacks C{logger},
        C{logfile} or C{nodaemon}).
    @param log_format: C{[log] format}: C{text} or C{json}.
    """
    if parent is None or not all(
        key in parent for key in ("logger", "logfile", "nodaemon")
    ):
        return
    if parent["logger"] is not None or parent.get("syslog"):
        return
    factory = ObserverFactory(
        log_format,
        parent["logfile"],
        bool(parent["nodaemon"]),
        umask=parent.get("umask"),
        uid=parent.get("uid"),
        gid=parent.get("gid"),
    )
    post_options = parent.postOptions

    def then_install() -> None:
        post_options()
        if parent["logger"] is None:
            parent["logger"] = factory

    # This one instance's hook, for this one parse.
    parent.postOptions = then_install  # type: ignore[method-assign]
