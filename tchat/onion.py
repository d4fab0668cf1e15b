# -*- test-case-name: tests.test_onion -*-
"""
The onion door: tchat's doors published as one Tor onion service.

Each onion port is served by a listener of its own on 127.0.0.1 that only
tor connects to, so the hub knows who came "via onion".  Tor is reached
through txtorcon, either a running tor's control port or one tchat starts;
bootstrapping and publishing happen in the background, so the clear-net
doors never wait for Tor, and a Tor that fails costs only the onion door.
"""

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure

from tchat.config import OnionConfig

ATTEMPTS = 3
"""How many times tchat tries to reach tor and publish before giving up."""


def address_file(config: OnionConfig) -> Path:
    """
    Where the onion address is written: next to the key.
    """
    return Path(config.key_file).with_suffix(".address")


def _read_key(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip() or None
    except FileNotFoundError:
        return None


def _write_private(path: Path, text: str) -> None:
    """
    Write a secret with mode 0600, creating its folder (0700) if needed.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text + "\n")
    os.chmod(path, 0o600)


def _write_public(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="ascii")


class _TorProcess(ProcessProtocol):
    """
    A tor tchat started: reports bootstrap progress from its log and
    tells when it ends.
    """

    _log = Logger()

    def __init__(self, progress: Callable[[int, str], None]) -> None:
        self._progress = progress
        self.ended: Deferred[None] = Deferred()
        self.output: list[str] = []
        self._buffer = b""

    def outReceived(self, data: bytes) -> None:
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip()
            self.output = [*self.output, line][-20:]
            marker = line.find("Bootstrapped ")
            if marker >= 0:
                rest = line[marker + len("Bootstrapped ") :]
                percent, _, summary = rest.partition("%")
                if percent.isdecimal():
                    self._progress(int(percent), summary.strip(" :()"))

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


class OnionService(Service):
    """
    Publishes the configured doors as one onion service.

    @ivar state: C{starting}, C{bootstrapping}, C{publishing}, C{up} or
        C{down}, for health checks and C{/stats}.
    @ivar address: The C{.onion} host name, once published.
    @ivar progress: Tor's bootstrap percentage.
    @ivar error: Why the onion is down, when it is.
    @ivar local_ports: Onion port to the local port that backs it.
    """

    _log = Logger()

    def __init__(
        self,
        config: OnionConfig,
        reactor: Any,
        factories: dict[str, IProtocolFactory],
        connect: Callable[..., Awaitable[Any]] | None = None,
        blocking: Callable[..., Deferred[Any]] = deferToThread,
    ) -> None:
        """
        @param factories: The onion variant of each door's factory, by
            door name.
        @param connect: C{txtorcon.connect}; tests pass a fake.
        @param blocking: Runs file access off the reactor thread; tests
            run it in place.
        """
        self._blocking = blocking
        self._config = config
        self._reactor = reactor
        self._factories = factories
        self._connect = connect
        self._listening: list[IListeningPort] = []
        self._tor: Any = None
        self._process: _TorProcess | None = None
        self._task: Deferred[None] | None = None
        self.state = "starting"
        self.address: str | None = None
        self.progress = 0
        self.error: str | None = None
        self.local_ports: dict[int, int] = {}

    # -- starting ------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        for onion_port, door in self._config.ports:
            port = self._reactor.listenTCP(
                0, self._factories[door], backlog=1024, interface="127.0.0.1"
            )
            self._listening.append(port)
            self.local_ports[onion_port] = port.getHost().port
            self._log.info(
                "onion door ({door}) listening on 127.0.0.1:{local} for onion "
                "port {onion_port}",
                door=door,
                local=port.getHost().port,
                onion_port=onion_port,
            )
        self._task = Deferred.fromCoroutine(self._run())

    async def _run(self) -> None:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await self._publish()
                return
            except Exception as e:
                self.error = _describe(e)
                await self._close_tor()
                if not self.running:
                    return
                if attempt < ATTEMPTS:
                    self._log.warn(
                        "onion: attempt {attempt} of {attempts} failed: {error}; "
                        "trying again",
                        attempt=attempt,
                        attempts=ATTEMPTS,
                        error=self.error,
                    )
                    await deferLater(self._reactor, 2.0 * attempt, lambda: None)
        self.state = "down"
        self._log.error(
            "onion: the onion service is down: {error}. The other doors keep "
            "serving. {advice}",
            error=self.error,
            advice=self._advice(),
        )

    def _advice(self) -> str:
        if self._config.tor == "launch":
            return (
                f"Check that {self._config.tor_binary!r} is installed (apt install "
                "tor) and can reach the Tor network, or set [onion] tor to the "
                "control port of a running tor."
            )
        return (
            f"Check that tor runs with its control port at {self._config.tor} "
            "and that tchat may use it (cookie file readable, or [onion] "
            "password)."
        )

    def _timeout(self, d: Deferred[Any], what: str) -> Deferred[Any]:
        def timed_out(f: Failure) -> Failure:
            if f.check(DeferredTimeout):
                raise TimeoutError(
                    f"{what} took longer than {self._config.bootstrap_timeout} s "
                    "([onion] bootstrap_timeout)"
                )
            return f

        d.addTimeout(self._config.bootstrap_timeout, self._reactor)
        return d.addErrback(timed_out)

    async def _publish(self) -> None:
        config = self._config
        self.state = "bootstrapping"
        self._tor = await self._timeout(
            Deferred.fromCoroutine(self._get_tor()), "reaching tor"
        )
        key = None
        if not config.ephemeral:
            key = await self._blocking(_read_key, Path(config.key_file))
        self.state = "publishing"
        self._log.info(
            "onion: publishing the onion service ({how} key)",
            how="new" if key is None else "saved",
        )
        ports = [
            (onion_port, f"127.0.0.1:{self.local_ports[onion_port]}")
            for onion_port, _ in config.ports
        ]
        service = await self._timeout(
            self._tor.create_onion_service(
                ports,
                private_key=key if key is not None else self._discard_or_new(),
                version=3,
                progress=self._upload_progress,
            ),
            "publishing the onion service",
        )
        address = service.hostname
        if key is None and not config.ephemeral:
            await self._blocking(
                _write_private, Path(config.key_file), service.private_key
            )
        if not config.ephemeral:
            await self._blocking(_write_public, address_file(config), address)
        self.address = address
        self.state = "up"
        self.error = None
        doors = ", ".join(f"{door} on port {port}" for port, door in config.ports)
        self._log.info(
            "onion service published at {address} ({doors})",
            address=address,
            doors=doors,
        )

    def _discard_or_new(self) -> Any:
        if self._config.ephemeral:
            import txtorcon

            return txtorcon.DISCARD
        return None

    def _upload_progress(self, percent: float, tag: str, summary: str) -> None:
        self._log.info(
            "onion: publishing {percent:.0f}%: {summary}",
            percent=percent,
            summary=summary,
        )

    def _bootstrap_progress(self, percent: int, summary: str) -> None:
        if percent != self.progress:
            self.progress = percent
            self._log.info(
                "onion: tor bootstrapped {percent}%: {summary}",
                percent=percent,
                summary=summary,
            )

    async def _get_tor(self) -> Any:
        connect = self._connect
        if connect is None:
            import txtorcon

            connect = txtorcon.connect
        if self._config.tor == "launch":
            endpoint = await self._launch()
        else:
            endpoint = clientFromString(self._reactor, self._config.tor)
        password = self._config.password

        def password_function() -> str | None:
            return password or None

        # A tor just started may refuse its control port for a moment.
        deadline = self._reactor.seconds() + 15
        while True:
            try:
                return await connect(self._reactor, endpoint, password_function)
            except Exception:
                if self._reactor.seconds() >= deadline:
                    raise
                await deferLater(self._reactor, 0.5, lambda: None)

    async def _launch(self) -> Any:
        """
        Start a tor of our own (not C{txtorcon.launch}, whose control
        socket race can hang it; txtorcon issue 349) and return its
        control endpoint once it has written it.
        """
        config = self._config
        data = Path(config.key_file).parent / "tor-data"
        port_file = data / "control-port"
        torrc = "\n".join(
            [
                f"DataDirectory {data}",
                "ControlPort 127.0.0.1:auto",
                f"ControlPortWriteToFile {port_file}",
                "CookieAuthentication 1",
                "SocksPort 127.0.0.1:auto",
                f"__OwningControllerProcess {os.getpid()}",
                "Log notice stdout",
                f"%include {config.torrc}" if config.torrc else "",
            ]
        )

        def prepare() -> None:
            data.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(data, 0o700)
            port_file.unlink(missing_ok=True)
            (data / "torrc").write_text(torrc + "\n", encoding="utf-8")

        await self._blocking(prepare)
        self._process = process = _TorProcess(self._bootstrap_progress)
        self._reactor.spawnProcess(
            process,
            config.tor_binary,
            [config.tor_binary, "-f", str(data / "torrc")],
            env=None,
        )
        while True:
            written = await self._blocking(_read_key, port_file)
            if written is not None and written.startswith("PORT="):
                host, _, port = written[len("PORT=") :].rpartition(":")
                return clientFromString(self._reactor, f"tcp:{host}:{port}")
            if process.ended.called:
                raise RuntimeError(
                    f"{config.tor_binary} exited: " + " / ".join(process.output[-3:])
                )
            await deferLater(self._reactor, 0.2, lambda: None)

    # -- stopping ----------------------------------------------------------

    async def _close_tor(self) -> None:
        tor, self._tor = self._tor, None
        if tor is not None:
            try:
                await tor.quit()
            except Exception:
                self._log.failure("onion: closing the tor control connection")
        process, self._process = self._process, None
        if process is not None and not process.ended.called:
            if process.transport is not None:
                process.transport.signalProcess("TERM")
            await process.ended

    async def _stop(self) -> None:
        if self._task is not None and not self._task.called:
            self._task.cancel()
        await self._close_tor()
        for port in self._listening:
            stopped = port.stopListening()
            if stopped is not None:
                await stopped
        self._listening = []
        self.state = "down"

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())


def _describe(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
