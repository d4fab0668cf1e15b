# -*- test-case-name: tests.test_onion -*-
"""
The onion door: tchat's doors published as one Tor onion service.

Each onion port is served by a listener of its own on 127.0.0.1 that only
tor connects to, so the hub knows who came "via onion".  Tor is reached
through txtorcon, either a running tor's control port or one tchat starts;
bootstrapping and publishing happen in the background, so the clear-net
doors never wait for Tor, and a Tor that fails costs only the onion door.

The service is added with C{ADD_ONION} on tchat's control connection, so
it lives exactly as long as that connection: if tchat dies, tor removes
it.  (txtorcon's C{create_onion_service} is not used because it cannot ask
for v3 client authorization.)
"""

import base64
import os
import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    clientFromString,
    connectProtocol,
)
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.internet.task import LoopingCall, deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure

from tchat.config import OnionConfig

STATES = ("starting", "bootstrapping", "publishing", "up", "down")
"""What L{OnionService.state} can be."""

ATTEMPTS = 3
"""Failed attempts to reach tor and publish before the onion is down."""

RETRY_DOWN = 300.0
"""Seconds between quiet attempts once the onion is reported down."""

PROBE_TIMEOUT = 60.0
"""Seconds a self-test may take before it counts as a failure."""

_PROGRESS = re.compile(r'PROGRESS=(\d+)(?:.*?SUMMARY="([^"]*)")?')


def address_file(config: OnionConfig) -> Path:
    """
    Where the onion address is written: next to the key.
    """
    return Path(config.key_file).with_suffix(".address")


def clients_folder(config: OnionConfig) -> Path:
    """
    Where the client authorization keys are kept: C{clients/} next to the
    service's key, one C{NAME.auth_private} file per client.
    """
    return Path(config.key_file).parent / "clients"


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


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class ClientKey:
    """
    One client's v3 authorization key pair (x25519, base32 as tor writes
    them).
    """

    name: str
    private: str
    public: str

    def auth_private(self, address: str) -> str:
        """
        The line of the client's C{.auth_private} file, for its tor's
        C{ClientOnionAuthDir}.
        """
        return f"{address.removesuffix('.onion')}:descriptor:x25519:{self.private}"


def client_keys(names: tuple[str, ...], folder: Path) -> list[ClientKey]:
    """
    Each named client's key pair: read from its C{.auth_private} file, or
    made now if it has none (written by L{write_client_files} once the
    address is known).  Blocking.
    """
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    keys = []
    for name in names:
        saved = _read_key(folder / f"{name}.auth_private")
        if saved is not None:
            encoded = saved.rpartition(":")[2]
            raw = base64.b32decode(encoded + "=" * (-len(encoded) % 8))
            key = X25519PrivateKey.from_private_bytes(raw)
        else:
            key = X25519PrivateKey.generate()
        private = key.private_bytes_raw()
        public = key.public_key().public_bytes_raw()
        keys.append(ClientKey(name, _b32(private), _b32(public)))
    return keys


def write_client_files(folder: Path, address: str, keys: list[ClientKey]) -> None:
    """
    Write each client's C{NAME.auth_private} (mode 0600, to hand to that
    client) and C{NAME.auth} (its public half, in tor's
    C{authorized_clients} form).  Blocking.
    """
    for key in keys:
        _write_private(folder / f"{key.name}.auth_private", key.auth_private(address))
        _write_private(folder / f"{key.name}.auth", f"descriptor:x25519:{key.public}")


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
                    # " (conn): Connecting to a relay"
                    summary = summary.partition("): ")[2] or summary
                    self._progress(int(percent), summary.strip(" :()"))

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)

    def start(self, reactor: Any, binary: str, torrc: Path) -> None:
        """
        Run tor with this as its process protocol.

        @param binary: The tor program.
        @param torrc: Its configuration, from L{_write_torrc}.
        @raise RuntimeError: When it cannot be run, saying why.
        """
        try:
            reactor.spawnProcess(self, binary, [binary, "-f", str(torrc)], env=None)
        except OSError as e:
            raise RuntimeError(f"cannot run {binary!r}: {e.strerror or e}") from None

    async def control_endpoint(
        self,
        reactor: Any,
        blocking: Callable[..., Deferred[Any]],
        binary: str,
        port_file: Path,
    ) -> Any:
        """
        Wait until tor has written where its control port is.

        @param blocking: Runs file access off the reactor thread.
        @param binary: The tor program, to say which one exited.
        @param port_file: Its C{ControlPortWriteToFile}.
        @return: A client endpoint for that control port.
        @raise RuntimeError: When tor exits first, with its last words.
        """
        while True:
            written = await blocking(_read_key, port_file)
            if written is not None and written.startswith("PORT="):
                host, _, port = written[len("PORT=") :].rpartition(":")
                return clientFromString(reactor, f"tcp:{host}:{port}")
            if self.ended.called:
                raise RuntimeError(f"{binary} exited: " + " / ".join(self.output[-3:]))
            await deferLater(reactor, 0.2, lambda: None)


def _write_torrc(config: OnionConfig) -> tuple[Path, Path]:
    """
    Prepare the data folder (0700, C{tor-data/} next to the key) of a tor
    tchat starts, and write its torrc there.  Blocking.

    @return: The torrc, and the file tor will write its control port to.
    """
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
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data, 0o700)
    port_file.unlink(missing_ok=True)
    (data / "torrc").write_text(torrc + "\n", encoding="utf-8")
    return data / "torrc", port_file


class _Probe(Protocol):
    """
    The self-test's client: asks the web door for its page's headers and
    waits for the first bytes of the answer.
    """

    def __init__(self, host: str) -> None:
        self._host = host
        self.answered: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(
            b"HEAD / HTTP/1.0\r\nHost: " + self._host.encode("ascii") + b"\r\n\r\n"
        )

    def dataReceived(self, data: bytes) -> None:
        if not self.answered.called:
            self.answered.callback(data)
            assert self.transport is not None
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        if not self.answered.called:
            self.answered.errback(ConnectionError("closed before answering"))


async def probe_through_tor(
    reactor: Any, socks: tuple[str, int], host: str, port: int
) -> None:
    """
    Ask C{host:port} (an onion web door) for its page through tor's SOCKS
    port; returns once it answers like an HTTP server.
    """
    from txtorcon import TorClientEndpoint

    endpoint = TorClientEndpoint(
        host, port, socks_endpoint=TCP4ClientEndpoint(reactor, *socks)
    )
    probe = _Probe(host)
    await connectProtocol(endpoint, probe)
    first = await probe.answered
    if not first.startswith(b"HTTP/1."):
        raise ConnectionError(f"the web door answered {first[:20]!r}")


class SelfTest:
    """
    The onion service's self-test: every C{[onion] self_test_interval}
    seconds it asks the service's own web door for its page through tor,
    records whether it answered and how long it took, and has the service
    published again after C{[onion] republish_after} failures in a row.

    @ivar reachable: Whether the last test was answered; C{None} before
        the first.
    @ivar rtt: Seconds the last answered test took.
    @ivar checked_at: When the last test ended, in reactor seconds.
    @ivar checks: Tests that ended, answered or not.
    @ivar failures: Tests that were not answered.
    @ivar failures_in_a_row: Failures since the last answer or the last
        time the service was published again.
    """

    _log = Logger()

    def __init__(
        self,
        service: "OnionService",
        config: OnionConfig,
        reactor: Any,
        probe: Callable[..., Coroutine[Any, Any, None]],
    ) -> None:
        """
        @param service: The service under test: it says whether it is up
            and where, and publishes itself again when asked.
        @param probe: Connects to the service through tor:
            L{probe_through_tor}'s signature.
        """
        self._service = service
        self._config = config
        self._reactor = reactor
        self._probe = probe
        self._socks: tuple[str, int] | None = None
        self._loop: LoopingCall | None = None
        self.reachable: bool | None = None
        self.rtt: float | None = None
        self.checked_at: float | None = None
        self.checks = 0
        self.failures = 0
        self.failures_in_a_row = 0

    def status(self) -> dict[str, Any]:
        """
        @return: The C{self_test} part of L{OnionService.status}.
        """
        return {
            "reachable": self.reachable,
            "rtt_seconds": self.rtt,
            "checked_at": self.checked_at,
            "checks": self.checks,
            "failures": self.failures,
            "consecutive_failures": self.failures_in_a_row,
        }

    def start(self, socks: tuple[str, int] | None) -> None:
        """
        Test every C{self_test_interval} seconds from now on, unless that
        is 0, no web door is published, or tor has no SOCKS port (the last
        two are logged, once per connection to tor).

        @param socks: Tor's SOCKS port, which the tests go through.
        """
        self._socks = socks
        interval = self._config.self_test_interval
        web = [port for port, door in self._config.ports if door == "web"]
        if not interval or self._loop is not None:
            return
        if not web:
            self._log.info(
                "onion: no self-test: it asks the web door for its page, and "
                "[onion] ports publishes none"
            )
            return
        if socks is None:
            self._log.info(
                "onion: no self-test: tor at {tor} has no SOCKS port",
                tor=self._config.tor,
            )
            return
        self._loop = LoopingCall(self.check, web[0])
        self._loop.clock = self._reactor
        self._loop.start(interval, now=False).addErrback(
            lambda f: self._log.failure("onion: the self-test broke", f)
        )

    def stop(self) -> None:
        """
        Test no more until L{start} is called again.
        """
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()

    def check(self, port: int) -> Deferred[None]:
        """
        Connect to the service's own address through tor and record
        whether it answered and how long it took; publish it again after
        C{[onion] republish_after} failures in a row.

        @param port: The onion port of a web door.
        """
        return Deferred.fromCoroutine(self._check(port))

    async def _check(self, port: int) -> None:
        service = self._service
        if service.state != "up" or service.address is None or self._socks is None:
            return
        began = self._reactor.seconds()
        attempt: Deferred[None] = Deferred.fromCoroutine(
            self._probe(self._reactor, self._socks, service.address, port)
        )
        attempt.addTimeout(PROBE_TIMEOUT, self._reactor)
        try:
            await attempt
        except Exception as e:
            if not service.running:
                return
            error = (
                f"no answer within {PROBE_TIMEOUT:g} s"
                if isinstance(e, DeferredTimeout)
                else _describe(e)
            )
            self.checks += 1
            self.failures += 1
            self.failures_in_a_row += 1
            self.reachable = False
            self.checked_at = self._reactor.seconds()
            self._log.warn(
                "onion: self-test failed ({n} in a row): {error}",
                n=self.failures_in_a_row,
                error=error,
            )
            if self.failures_in_a_row >= self._config.republish_after:
                # Counting starts again for the service published anew.
                self.failures_in_a_row = 0
                await service.republish()
            return
        self.checks += 1
        was, self.reachable = self.reachable, True
        self.failures_in_a_row = 0
        self.checked_at = self._reactor.seconds()
        self.rtt = self.checked_at - began
        if was is not True:
            self._log.info(
                "onion: self-test: {address} is reachable through tor "
                "({rtt:.1f} s round trip)",
                address=service.address,
                rtt=self.rtt,
            )


class OnionService(Service):
    """
    Publishes the configured doors as one onion service, checks that it
    stays reachable, and publishes it again when it does not.

    @ivar state: C{starting}, C{bootstrapping}, C{publishing}, C{up} or
        C{down}, for health checks and C{/stats}.
    @ivar address: The C{.onion} host name, once published.
    @ivar progress: Tor's bootstrap percentage.
    @ivar uploads: Descriptor uploads tor confirmed for the service.
    @ivar error: Why the onion is down, when it is.
    @ivar local_ports: Onion port to the local port that backs it.
    @ivar republished: How often failed self-tests had it published again.
    """

    _log = Logger()

    def __init__(
        self,
        config: OnionConfig,
        reactor: Any,
        factories: dict[str, IProtocolFactory],
        connect: Callable[..., Awaitable[Any]] | None = None,
        blocking: Callable[..., Deferred[Any]] = deferToThread,
        published: Callable[[str | None], None] = lambda address: None,
        probe: Callable[..., Coroutine[Any, Any, None]] = probe_through_tor,
    ) -> None:
        """
        @param factories: The onion variant of each door's factory, by
            door name.
        @param connect: C{txtorcon.connect}; tests pass a fake.
        @param blocking: Runs file access off the reactor thread; tests
            run it in place.
        @param published: Told the address once the service is up (and
            C{None} when it goes down), to show it to onion users.
        @param probe: Connects to the service through tor for the
            self-test: L{probe_through_tor}'s signature.
        """
        self._blocking = blocking
        self._config = config
        self._reactor = reactor
        self._factories = factories
        self._connect = connect
        self._published = published
        self._listening: list[IListeningPort] = []
        self._tor: Any = None
        self._process: _TorProcess | None = None
        self._task: Deferred[None] | None = None
        self._key: str | None = None
        self._clients: list[ClientKey] = []
        self._service_id: str | None = None
        self._uploaded: Deferred[None] | None = None
        self._socks: tuple[str, int] | None = None
        self._self_test = SelfTest(self, config, reactor, probe)
        self.state = "starting"
        self.address: str | None = None
        self.progress = 0
        self.uploads = 0
        self.error: str | None = None
        self.local_ports: dict[int, int] = {}
        self.republished = 0

    def status(self) -> dict[str, Any]:
        """
        @return: The onion's state for C{/stats}, C{/healthz} and metrics.
        """
        return {
            "state": self.state,
            "address": self.address,
            "bootstrap_percent": self.progress,
            "descriptor_uploads": self.uploads,
            "error": self.error,
            "republished": self.republished,
            "self_test": self._self_test.status(),
        }

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
        self._task.addErrback(self._ended)

    async def _run(self) -> None:
        failed = 0
        while self.running:
            try:
                await self._publish()
            except Exception as e:
                if isinstance(e, CancelledError) or not self.running:
                    return
                failed += 1
                self.error = _describe(e)
                await self._close_tor()
                if failed < ATTEMPTS:
                    self._log.warn(
                        "onion: attempt {attempt} of {attempts} failed: {error}; "
                        "trying again",
                        attempt=failed,
                        attempts=ATTEMPTS,
                        error=self.error,
                    )
                    await deferLater(self._reactor, 2.0 * failed, lambda: None)
                    continue
                if failed == ATTEMPTS:
                    self._go_down()
                    self._log.error(
                        "onion: the onion service is down: {error}. The other "
                        "doors keep serving; tchat tries again every {every:.0f} "
                        "s. {advice}",
                        error=self.error,
                        every=RETRY_DOWN,
                        advice=self._advice(),
                    )
                await deferLater(self._reactor, RETRY_DOWN, lambda: None)
                continue
            failed = 0
            self._self_test.start(self._socks)
            await self._tor.protocol.when_disconnected()
            self._self_test.stop()
            self._tor = None
            if not self.running:
                return
            self.error = "lost the control connection to tor"
            self._go_down()
            self._log.warn(
                "onion: lost the control connection to tor; publishing again"
            )
            await self._close_tor()

    def _ended(self, why: Failure) -> None:
        # Stopping cancels the loop wherever it waits; anything else is a bug.
        if not why.check(CancelledError):
            self._log.failure("onion: the onion door stopped working", why)

    def _go_down(self) -> None:
        self.state = "down"
        self._published(None)

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
        if self.state != "down":
            self.state = "bootstrapping"
        self._tor = await self._timeout(
            Deferred.fromCoroutine(self._get_tor()), "reaching tor"
        )
        protocol = self._tor.protocol
        if self._process is None:
            self.progress = 0  # a tor we did not start reports its own
        await protocol.add_event_listener("STATUS_CLIENT", self._status_event)
        await protocol.add_event_listener("HS_DESC", self._descriptor_event)
        phase = await protocol.get_info("status/bootstrap-phase")
        self._status_event(phase.get("status/bootstrap-phase", ""))
        self._socks = _first_socks(
            (await protocol.get_info("net/listeners/socks")).get(
                "net/listeners/socks", ""
            )
        )
        if self._key is None and not config.ephemeral:
            self._key = await self._blocking(_read_key, Path(config.key_file))
        if config.client_auth:
            self._clients = await self._blocking(
                client_keys, config.client_auth, clients_folder(config)
            )
        if self.state != "down":
            self.state = "publishing"
        self._log.info(
            "onion: publishing the onion service ({how} key{auth})",
            how="new" if self._key is None else "saved",
            auth=f", {len(self._clients)} authorized clients" if self._clients else "",
        )
        await self._timeout(
            Deferred.fromCoroutine(self._add_onion()), "publishing the onion service"
        )
        assert self._service_id is not None
        address = f"{self._service_id}.onion"
        if not config.ephemeral:
            await self._blocking(_write_private, Path(config.key_file), self._key)
            await self._blocking(_write_public, address_file(config), address)
        if self._clients:
            await self._blocking(
                write_client_files, clients_folder(config), address, self._clients
            )
        self.address = address
        self.state = "up"
        self.error = None
        self._published(address)
        doors = ", ".join(f"{door} on port {port}" for port, door in config.ports)
        self._log.info(
            "onion service published at {address} ({doors}{auth})",
            address=address,
            doors=doors,
            auth=(
                "; only for clients "
                + ", ".join(c.name for c in self._clients)
                + f", whose keys are in {clients_folder(config)}"
                if self._clients
                else ""
            ),
        )

    async def _add_onion(self) -> None:
        """
        Add the service on our control connection and wait until tor has
        uploaded its descriptor at least once.
        """
        args = [self._key or "NEW:ED25519-V3"]
        if self._clients:
            args.append("Flags=V3Auth")
        args += [
            f"Port={onion_port},127.0.0.1:{self.local_ports[onion_port]}"
            for onion_port, _ in self._config.ports
        ]
        args += [f"ClientAuthV3={client.public}" for client in self._clients]
        self._uploaded = Deferred()
        reply = await self._tor.protocol.queue_command("ADD_ONION " + " ".join(args))
        fields: dict[str, str] = {}
        for line in reply.splitlines():
            name, sep, value = line.partition("=")
            if sep:
                fields[name.strip()] = value.strip()
        self._service_id = fields["ServiceID"]
        if "PrivateKey" in fields:
            self._key = fields["PrivateKey"]
        await self._uploaded

    async def _remove_onion(self) -> None:
        if self._service_id is not None and self._tor is not None:
            await self._tor.protocol.queue_command(f"DEL_ONION {self._service_id}")

    def _descriptor_event(self, text: str) -> None:
        # Action HSAddress AuthType HsDir [DescriptorID] [REASON=...]
        words = text.split()
        if len(words) < 4 or words[1] != self._service_id:
            return
        action, directory = words[0], words[3]
        if action == "UPLOADED":
            self.uploads += 1
            if self._uploaded is not None and not self._uploaded.called:
                self._log.info(
                    "onion: descriptor uploaded to {directory}",
                    directory=directory[:41],
                )
                self._uploaded.callback(None)
        elif action == "UPLOAD" and self.state == "publishing":
            self._log.info(
                "onion: uploading the descriptor to {directory}",
                directory=directory[:41],
            )
        elif action == "FAILED" and self.state == "publishing":
            reason = next((w[7:] for w in words if w.startswith("REASON=")), "")
            self._log.info(
                "onion: descriptor upload to {directory} failed ({reason}); tor "
                "tries other directories",
                directory=directory[:41],
                reason=reason or "no reason given",
            )

    def _status_event(self, text: str) -> None:
        if "BOOTSTRAP" not in text:
            return
        found = _PROGRESS.search(text)
        if found is not None:
            self._bootstrap_progress(int(found.group(1)), found.group(2) or "")

    def _bootstrap_progress(self, percent: int, summary: str) -> None:
        # Both a launched tor's log and its status events report progress;
        # only news is logged.
        if percent > self.progress:
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
        torrc, port_file = await self._blocking(_write_torrc, self._config)
        self.progress = 0
        process = _TorProcess(self._bootstrap_progress)
        process.start(self._reactor, self._config.tor_binary, torrc)
        # Kept before tor has said where it listens, so that giving up on
        # it (bootstrap_timeout, stopping) still ends the process.
        self._process = process
        return await process.control_endpoint(
            self._reactor, self._blocking, self._config.tor_binary, port_file
        )

    # -- publishing again ----------------------------------------------------

    async def republish(self) -> None:
        """
        Remove the service from tor and publish it again with the same
        key, for a self-test that failed C{[onion] republish_after} times
        in a row; if that fails, reconnect to tor and start from scratch.
        """
        self.republished += 1
        self._log.warn(
            "onion: {address} failed {n} self-tests in a row; publishing it again",
            address=self.address,
            n=self._config.republish_after,
        )
        self.state = "publishing"
        try:
            await self._remove_onion()
            await self._timeout(
                Deferred.fromCoroutine(self._add_onion()),
                "publishing the onion service again",
            )
        except Exception as e:
            if not self.running or self._tor is None:
                return
            self._log.warn(
                "onion: publishing again failed ({error}); reconnecting to tor",
                error=_describe(e),
            )
            # Losing the control connection makes _run start from scratch.
            self._tor.protocol.transport.loseConnection()
            return
        self.state = "up"
        self._log.info("onion: {address} published again", address=self.address)

    # -- stopping ----------------------------------------------------------

    async def _close_tor(self) -> None:
        self._self_test.stop()
        tor, self._tor = self._tor, None
        if tor is not None:
            try:
                await tor.quit()
            except Exception:
                self._log.failure("onion: closing the tor control connection")
        process, self._process = self._process, None
        if process is not None and process.transport is not None:
            if not process.ended.called:
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


def _first_socks(listeners: str) -> tuple[str, int] | None:
    """
    The first TCP SOCKS listener in tor's C{net/listeners/socks} answer
    (quoted C{host:port} items), or C{None}.
    """
    for item in listeners.split():
        host, sep, port = item.strip('"').rpartition(":")
        if sep and port.isdecimal() and not host.startswith("unix"):
            return host.strip("[]"), int(port)
    return None


def _describe(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
