# -*- test-case-name: tests.test_control -*-
"""
Signals and reloads: how an operator steers a running tchat.

  - SIGTERM and SIGINT stop it gracefully: no new connections, every user
    told, history written, exit status 0.  A second one cuts the
    connections still open at once.
  - SIGHUP (and C{/rehash}) re-reads C{tap.ini} in a thread and applies
    what can change live; a file that no longer validates, or that looks
    truncated (empty, or without a section it had), is refused and the
    configuration in force stays.
"""

import signal
from collections.abc import Callable, Collection
from dataclasses import dataclass, fields, replace
from types import FrameType
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import (
    Deferred,
    DeferredLock,
    gatherResults,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from tchat.config import Config, ConfigError, LimitsConfig
from tchat.endpoints import ListenerService, server_endpoint
from tchat.hub import ChatFactory
from tchat.telnet import TelnetFactory
from tchat.web import WebChatFactory

# Keys applied the moment a reload reads them (besides the listeners).
_LIVE = {
    "server": ("name", "motd", "default_room", "shutdown_grace", "reconnect_grace"),
    "web": ("allowed_origins", "allowed_hosts", "ping_interval", "ping_timeout"),
    "history": ("keep", "replay", "resume_ttl", "room_ttl"),
    "limits": tuple(f.name for f in fields(LimitsConfig)),
}
_LISTENERS = {"telnet": "listen", "web": "listen", "irc": "listen", "admin": "listen"}
_SECTIONS = (
    "server",
    "telnet",
    "web",
    "ssh",
    "irc",
    "limits",
    "history",
    "onion",
    "admin",
    "log",
)


def truncated(running: Config, new: Config) -> str | None:
    """
    Whether C{new} looks like a truncated copy of the file C{running} was
    read from (a failed deploy, an editor that crashed while saving): it
    has no section at all, or lacks one that C{running} had.  Applying it
    would silently reset whole sections to their defaults, operator
    accounts and listeners included.

    Removing a key from a section is not truncation: the key then takes
    its default.  A server started on the built-in defaults or on an empty
    file has nothing to lose.

    @param running: The configuration in force.
    @param new: The configuration just read.
    @return: Why C{new} is refused, or C{None} if it is not truncated.
    """
    if not running.sections:
        return None
    advice = "to reset a section to its defaults, keep it, empty"
    if not new.sections:
        return (
            f"{new.source} has no sections, only comments or nothing "
            f"(a truncated file?); {advice}"
        )
    missing = [s for s in running.sections if s not in new.sections]
    if not missing:
        return None
    names = ", ".join(f"[{section}]" for section in missing)
    verb = "is" if len(missing) == 1 else "are"
    return f"{names} {verb} missing from {new.source} (a truncated file?); {advice}"


@dataclass(frozen=True)
class ReloadResult:
    """
    What a reload did.

    @ivar ok: C{False} when the new file was refused.
    @ivar changed: C{[section] key} applied live.
    @ivar restart: C{[section] key} that only a restart applies.
    @ivar listening: Endpoints now listened on; C{stopped}: no longer.
    @ivar failed: (endpoint, reason) for new endpoints that cannot listen.
    @ivar error: Why the file was refused.
    @ivar certificates: (endpoint, reason) for C{ssl:} listeners that kept
        their old certificate because the files cannot be used.
    """

    ok: bool
    changed: tuple[str, ...] = ()
    restart: tuple[str, ...] = ()
    listening: tuple[str, ...] = ()
    stopped: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()
    error: str = ""
    certificates: tuple[tuple[str, str], ...] = ()

    def summary(self) -> str:
        """
        @return: One sentence for the log and for C{/rehash}.
        """
        kept = [
            f"kept the old certificate for {description} ({reason})"
            for description, reason in self.certificates
        ]
        if not self.ok:
            refused = f"refused, the configuration in force is unchanged: {self.error}"
            return "; ".join([refused, *kept])
        parts = []
        if self.changed:
            parts.append("applied " + ", ".join(self.changed))
        if self.listening:
            parts.append("now listening on " + ", ".join(self.listening))
        if self.stopped:
            parts.append("stopped listening on " + ", ".join(self.stopped))
        for description, reason in self.failed:
            parts.append(f"cannot listen on {description} ({reason})")
        if self.restart:
            parts.append("needs restart: " + ", ".join(self.restart))
        parts += kept
        return "; ".join(parts) if parts else "nothing changed"


class Listeners:
    """
    The running listeners, by (door, endpoint string), so that a reload
    can add and remove them.
    """

    _log = Logger()

    def __init__(
        self,
        root: MultiService,
        reactor: Any,
        factories: dict[str, IProtocolFactory],
        daemon: bool = False,
    ) -> None:
        """
        @param daemon: Whether twistd is daemonising (see
            L{ListenerService.daemon}).
        """
        self._root = root
        self._reactor = reactor
        self._factories = factories
        self._daemon = daemon
        self.services: dict[tuple[str, str], ListenerService] = {}

    def add(self, door: str, description: str, ready: Deferred[None] | None) -> None:
        """
        A listener of the initial configuration: failing to listen stops
        start-up.
        """
        service = self._service(door, description, ready)
        service.daemon = self._daemon
        service.setServiceParent(self._root)
        self.services[door, description] = service

    def change(
        self, wanted: list[tuple[str, str]]
    ) -> Deferred[tuple[list[str], list[str], list[tuple[str, str]]]]:
        """
        Listen on exactly C{wanted}: stop the others, start the new ones
        (one that cannot listen is logged, not fatal).

        @return: Fires with (endpoints started, endpoints stopped, (endpoint,
            reason) that could not start) once the new ones are listening.
        """
        stopped = []
        stopping = []
        for key in list(self.services):
            if key not in wanted:
                stopping.append(self._stop(self.services.pop(key)))
                stopped.append(key[1])

        def start(_: object) -> Deferred[list[tuple[str, str | None]]]:
            attempts: list[Deferred[tuple[str, str | None]]] = []
            for door, description in wanted:
                if (door, description) in self.services:
                    continue
                try:
                    service = self._service(door, description, None)
                except Exception as e:
                    # Checked when read, but a key file may have gone since.
                    reason = str(e) or type(e).__name__
                    self._log.error(
                        "the {door} door cannot listen on {description}: {reason}",
                        door=door,
                        description=description,
                        reason=reason,
                    )
                    attempts.append(succeed((description, reason)))
                    continue
                service.failed = Deferred()
                self.services[door, description] = service
                service.setServiceParent(self._root)
                attempts.append(self._outcome(door, description, service))
            return gatherResults(attempts)

        def sort(
            outcomes: list[tuple[str, str | None]],
        ) -> tuple[list[str], list[str], list[tuple[str, str]]]:
            started = [d for d, why in outcomes if why is None]
            failed = [(d, why) for d, why in outcomes if why is not None]
            return started, stopped, failed

        # Only once the old ports are closed: a new endpoint may be an old
        # port written another way (an added option, another interface
        # spelling), which cannot be listened on while the old one is open.
        # It also makes "stopped listening" true when the reload says so.
        return gatherResults(stopping).addCallback(start).addCallback(sort)

    def _service(
        self, door: str, description: str, ready: Deferred[None] | None
    ) -> ListenerService:
        """
        A listener for C{door} on C{description}, not started yet.
        """
        endpoint, factory, tls = server_endpoint(
            self._reactor, description, self._factories[door]
        )
        return ListenerService(door, description, endpoint, factory, ready, tls)

    def reload_certificates(
        self, among: Collection[ListenerService] | None = None
    ) -> list[tuple[str, str]]:
        """
        Have every running C{ssl:} listener read its key and certificate
        files again (each logs the outcome); new connections get the new
        certificate, open ones keep theirs.

        @param among: Only these listeners (if still running); all by
            default.
        @return: (endpoint, reason) for those that kept the old one.
        """
        kept = []
        for service in list(self.services.values()):
            if among is not None and service not in among:
                continue
            if service.tls is not None:
                reason = service.tls.reload()
                if reason is not None:
                    kept.append((service.description, reason))
        return kept

    def _stop(self, service: ListenerService) -> Deferred[object]:
        """
        Stop one listener.

        @return: Fires once its port is closed (or failed to close, which
            is logged).
        """

        def failed(why: Failure) -> None:
            self._log.failure(
                "stopping the {door} door on {description}",
                why,
                door=service.door,
                description=service.description,
            )

        return maybeDeferred(service.disownServiceParent).addErrback(failed)

    def _outcome(
        self, door: str, description: str, service: ListenerService
    ) -> Deferred[tuple[str, str | None]]:
        result: Deferred[tuple[str, str | None]] = Deferred()
        assert service.failed is not None

        def failed(reason: str) -> None:
            # Forget it, so a later reload tries again.
            if self.services.get((door, description)) is service:
                del self.services[door, description]
            service.disownServiceParent()
            if not result.called:
                result.callback((description, reason))

        def listening(_: object) -> object:
            if not result.called and service.port is not None:
                result.callback((description, None))
            return _

        service.failed.addCallback(failed)
        waiting = service._waitingForPort
        assert waiting is not None
        waiting.addCallback(listening)
        return result


class Reloader:
    """
    Re-reads C{tap.ini} and applies it to the running server.

    @ivar config: The configuration in force.
    """

    _log = Logger()

    def __init__(
        self,
        reread: Callable[[], Config],
        config: Config,
        hub: ChatFactory,
        telnet: list[TelnetFactory],
        web: list[WebChatFactory],
        listeners: Listeners,
        reactor: Any,
        in_thread: Callable[[Callable[[], Config]], Deferred[Config]] | None = None,
    ) -> None:
        """
        @param reread: Reads and checks the file (and applies command-line
            overrides) as at start; run in a thread.
        @param telnet: The telnet doors' factories; C{web}: the web doors'.
        @param in_thread: Runs C{reread} off the reactor thread; the
            reactor's thread pool by default.
        """
        if in_thread is None:

            def in_thread(f: Callable[[], Config]) -> Deferred[Config]:
                return deferToThreadPool(reactor, reactor.getThreadPool(), f)

        self._in_thread = in_thread
        self._reread = reread
        self.config = config
        self._hub = hub
        self._telnet = telnet
        self._web = web
        self._listeners = listeners
        self._reactor = reactor
        self._lock = DeferredLock()

    def reload(self, why: str = "SIGHUP") -> Deferred[tuple[bool, str]]:
        """
        Re-read and apply the configuration; one reload at a time.

        @param why: What asked for it, for the log.
        @return: Fires with (success, summary); never fails.
        """
        d = self._lock.run(self._reload, why)
        return d.addCallback(lambda result: (result.ok, result.summary()))

    async def _reload(self, why: str) -> ReloadResult:
        self._log.info("{why}: reloading {source}", why=why, source=self.config.source)
        running = set(self._listeners.services.values())
        try:
            new = await self._in_thread(self._reread)
        except ConfigError as e:
            result = ReloadResult(False, error=str(e))
        except Exception as e:  # an unreadable file is refused too
            self._log.failure("reloading the configuration")
            result = ReloadResult(False, error=f"{type(e).__name__}: {e}")
        else:
            why_not = truncated(self.config, new)
            if why_not is None:
                result = await self._apply(new)
            else:
                result = ReloadResult(False, error=why_not)
        # Whatever became of tap.ini: a renewed certificate (certbot's hook
        # sends SIGHUP) must not wait for an unrelated typo to be fixed.
        # Listeners started by this reload have just read theirs.
        kept = self._listeners.reload_certificates(among=running)
        if kept:
            result = replace(result, certificates=tuple(kept))
        self._hub.metrics.reloaded(self._reactor.seconds(), result.ok)
        if result.ok:
            self._log.info("reload: {summary}", summary=result.summary())
        else:
            self._log.error("reload {summary}", summary=result.summary())
        return result

    async def _apply(self, new: Config) -> ReloadResult:
        old = self.config
        changed, restart = [], []
        for section in _SECTIONS:
            before, after = getattr(old, section), getattr(new, section)
            for f in fields(before):
                key = f.name
                if getattr(before, key) == getattr(after, key):
                    continue
                name = f"[{section}] {key}"
                if key in _LIVE.get(section, ()) or _LISTENERS.get(section) == key:
                    changed.append(name)
                else:
                    restart.append(name)
        if old.operators != new.operators:
            changed.append("[operators]")
        # Keys that need a restart keep their old values meanwhile.
        self._hub.reconfigure(
            new.server, new.history, new.operators, new.limits, new.accounts
        )
        for web in self._web:
            web.reconfigure(new.web)
        # The SSH door's listeners change with a restart (its host key is
        # read at start): those running stay.
        wanted = [x for x in new.listeners() if x[0] != "ssh"]
        wanted += [x for x in old.listeners() if x[0] == "ssh"]
        started, stopped, failed = await self._listeners.change(wanted)
        self.config = new
        if restart:
            self._log.warn(
                "reload: {keys} changed but only take effect after a restart",
                keys=", ".join(restart),
            )
        return ReloadResult(
            True,
            tuple(changed),
            tuple(restart),
            tuple(started),
            tuple(stopped),
            tuple(failed),
        )


class SignalService(Service):
    """
    Installs tchat's handlers for SIGTERM, SIGINT and SIGHUP once the
    reactor runs (after twistd's own), and puts the previous ones back
    when stopped.
    """

    _log = Logger()

    def __init__(self, reactor: Any, hub: ChatFactory, reload: Callable[[str], object]):
        self._reactor = reactor
        self._hub = hub
        self._reload = reload
        self._previous: dict[int, Any] = {}
        self._stopping = False

    def startService(self) -> None:
        super().startService()
        self._reactor.callWhenRunning(self._install)

    def _install(self) -> None:
        if not self.running:
            return
        for number in (signal.SIGTERM, signal.SIGINT):
            self._previous[number] = signal.signal(number, self._on_stop)
        self._previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hup)

    def stopService(self) -> None:
        super().stopService()
        # This service stops first, while the stop it started is still
        # telling users and waiting for them: keep handling SIGTERM and
        # SIGINT then, so a second one cuts the connections left.  The
        # previous handler would only try to stop the stopping reactor
        # again (ReactorNotRunning) and make twistd exit with 143.
        keep = (signal.SIGTERM, signal.SIGINT) if self._stopping else ()
        for number, handler in self._previous.items():
            if number not in keep:
                signal.signal(number, handler)
        self._previous.clear()

    def _on_stop(self, number: int, frame: FrameType | None) -> None:
        self._reactor.callFromThread(self.stop_gracefully, signal.Signals(number).name)

    def _on_hup(self, number: int, frame: FrameType | None) -> None:
        self._reactor.callFromThread(self._reload, "SIGHUP")

    def stop_gracefully(self, why: str) -> None:
        """
        Stop the reactor, so the services stop in order: the doors stop
        accepting, users are told and closed, history is written.  Unlike
        twistd's own handler, this leaves no signal for twistd to re-raise,
        so the exit status is 0.

        @param why: The signal's name, for the log.
        """
        if self._stopping:
            self._log.info("{why} again: cutting the connections still open", why=why)
            self._hub.cut_short()
            return
        self._stopping = True
        self._log.info(
            "{why}: stopping; {users} users are told and have up to {grace:g} s",
            why=why,
            users=self._hub.users,
            grace=self._hub.config.shutdown_grace,
        )
        self._reactor.stop()
