# -*- test-case-name: tests.integration.test_tornet -*-
"""
A private Tor network on 127.0.0.1 for onion tests that need no internet:
three directory authorities, three relays, a client tor (SOCKS port) and an
onion-service tor (control port only), as measured in
C{/work/shared/tor-testnet.md}.

L{TorNetwork} builds one in a directory of its own: fresh keys, a torrc
per node, free ports, and the eight tor processes, each in its own process
group.  It stops them again by PID only.  Starting and stopping block, so
trial tests run them in a thread (L{shared_network} does).

A cold network reaches C{Bootstrapped 100%} in about 20 s, 60 s at worst,
so tests share one per trial process: L{shared_network} starts it for the
first test that asks and stops it at exit.  Only the tor processes outlive
a test, never a Twisted connection, so trial's reactor stays clean.

The helpers at the end (L{connect_control}, L{close_control},
L{connect_onion}) do the Twisted side: bounded, retried, and leaving no
connection behind.

Nothing here listens or connects anywhere but 127.0.0.1, and the network
has no exit relays, so no traffic can leave loopback; the DirAuthority
lines replace tor's public authorities, and C{UseDefaultFallbackDirs 0}
keeps tor away from the public fallback directories.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any
from typing import Protocol as TypingProtocol

from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import (
    IAddress,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from zope.interface import implementer

from tests.integration.server import LOOPBACK, global_reactor
from tests.support import require

_log = Logger()

BOOTSTRAP_TIMEOUT = 120.0
"""Seconds to wait for C{Bootstrapped 100%}: about twice the slowest cold
start measured."""

STOP_GRACE = 10.0
"""Seconds between SIGTERM and SIGKILL."""

_SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""Where to look for tor besides C{PATH}: Debian installs it in C{/usr/sbin},
which a non-root C{PATH} often lacks."""


def find_program(name: str) -> str | None:
    """
    The path of a program, from C{PATH} or the usual system directories.

    @param name: The program's name, e.g. C{"tor"}.
    @return: Its absolute path, or C{None} if it is nowhere.
    """
    return shutil.which(name) or shutil.which(name, path=_SBIN_PATH)


def require_tor() -> None:
    """
    Skip the calling test unless C{tor}, C{tor-gencert} and txtorcon are all
    there (a failure instead under C{TCHAT_REQUIRE_ALL=1}; see
    L{tests.support.require}).
    """
    require(
        find_program("tor") is not None,
        "tor is not installed (Debian: apt-get install tor)",
    )
    require(
        find_program("tor-gencert") is not None,
        "tor-gencert is not installed (Debian: apt-get install tor)",
    )
    require(
        importlib.util.find_spec("txtorcon") is not None,
        "txtorcon is not installed (pip install txtorcon)",
    )


class TorNetworkError(Exception):
    """
    The network could not be built, did not bootstrap in time, or lost a
    node.  The message ends with the tail of every node's logs.
    """


def free_ports(count: int) -> list[int]:
    """
    Ports on 127.0.0.1 that nothing listens on right now, all different:
    the kernel picks each by a bind to port 0, and all sockets stay open
    until every port is picked.

    @param count: How many.
    """
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind((LOOPBACK, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _tail(path: str, lines: int) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except FileNotFoundError:
        return "(no such file)\n"


@dataclass(frozen=True)
class TorNode:
    """
    One tor of the network.

    @ivar nick: Its nickname, e.g. C{test000a}.
    @ivar role: C{"authority"}, C{"relay"}, C{"client"} or C{"service"}.
    @ivar directory: Its DataDirectory, which also holds its C{torrc},
        C{notice.log} and C{stdout.log}.
    @ivar control_port: Its ControlPort on 127.0.0.1 (cookie authentication;
        the cookie is C{control_auth_cookie} in L{directory}).
    @ivar or_port: Its ORPort; authorities and relays only.
    @ivar dir_port: Its DirPort; authorities and relays only.
    @ivar socks_port: Its SocksPort; the client only.
    """

    nick: str
    role: str
    directory: str
    control_port: int
    or_port: int | None = None
    dir_port: int | None = None
    socks_port: int | None = None

    @property
    def torrc(self) -> str:
        """
        The path of its torrc.
        """
        return os.path.join(self.directory, "torrc")

    @property
    def notice_log(self) -> str:
        """
        The path of the log it writes at notice level.
        """
        return os.path.join(self.directory, "notice.log")

    @property
    def stdout_log(self) -> str:
        """
        The path of its stdout and stderr: what it says before its torrc's
        C{Log} line takes effect, such as configuration errors.
        """
        return os.path.join(self.directory, "stdout.log")

    @property
    def relays(self) -> bool:
        """
        Whether it is relay-capable (an authority or a relay).
        """
        return self.role in ("authority", "relay")


Options = dict[str, "str | list[str]"]
"""Torrc options: a name and its value, or a list of values for an option
given once per value (C{DirAuthority})."""


class TorNetwork:
    """
    A private Tor network on 127.0.0.1, in a directory of its own.

    Typical use, from a thread (both calls block)::

        network = TorNetwork(directory)
        network.start()
        network.wait_bootstrapped(120)
        ...  # client_socks_port, service_control_port, ...
        network.stop()

    L{start} registers L{stop} with C{atexit}, so the tors end with the
    Python process that started them; each tor's
    C{__OwningControllerProcess} also ends it about 12 s after that process
    dies, however it dies.

    @ivar base_dir: The directory holding one subdirectory per node.
    @ivar nodes: The nodes, authorities first, then relays, the client and
        the onion-service host; empty until L{start}.
    @ivar dir_authority_lines: The values of the C{DirAuthority} option
        every node has, one per authority; empty until L{start}.
    @ivar common_options: The torrc options every node has besides the
        C{DirAuthority} lines and its own C{DataDirectory}, C{Nickname},
        C{ControlPort} and C{Log}.
    @ivar pids: The PIDs of the tor processes started, in L{nodes} order.
    """

    def __init__(
        self,
        base_dir: str,
        *,
        authorities: int = 3,
        relays: int = 3,
        tor: str | None = None,
        tor_gencert: str | None = None,
    ) -> None:
        """
        @param base_dir: An empty or missing directory for the network's
            files; made absolute.
        @param authorities: How many directory authorities (at least 1).
        @param relays: How many non-exit relays besides the authorities.
            Authorities and relays together must be at least 4: with fewer,
            clients never reached the onion service in the measurements.
        @param tor: The tor binary; found by L{find_program} by default.
        @param tor_gencert: The tor-gencert binary; likewise.
        """
        if authorities < 1 or authorities + relays < 4:
            raise ValueError("need at least 1 authority and 4 relay-capable nodes")
        self.base_dir = os.path.abspath(base_dir)
        self._authorities = authorities
        self._relays = relays
        self._tor = tor or find_program("tor") or "tor"
        self._tor_gencert = tor_gencert or find_program("tor-gencert") or "tor-gencert"
        self.nodes: list[TorNode] = []
        self.dir_authority_lines: list[str] = []
        self.common_options: dict[str, str] = self._common_options()
        self.pids: list[int] = []
        self._processes: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._started = False
        self._stopped = False

    # -- what tests use ----------------------------------------------------

    def _node(self, role: str) -> TorNode:
        for node in self.nodes:
            if node.role == role:
                return node
        raise RuntimeError("the Tor network has not been started")

    @property
    def client_socks_port(self) -> int:
        """
        The client tor's SOCKS port on 127.0.0.1: connect to onion services
        through it.
        """
        port = self._node("client").socks_port
        assert port is not None
        return port

    @property
    def client_control_port(self) -> int:
        """
        The client tor's control port on 127.0.0.1.
        """
        return self._node("client").control_port

    @property
    def service_control_port(self) -> int:
        """
        The onion-service tor's control port on 127.0.0.1: add onion services
        there (it has no SOCKS port).
        """
        return self._node("service").control_port

    @property
    def service_data_dir(self) -> str:
        """
        The onion-service tor's DataDirectory, which holds its control
        cookie, C{control_auth_cookie}.
        """
        return self._node("service").directory

    @property
    def client_data_dir(self) -> str:
        """
        The client tor's DataDirectory.
        """
        return self._node("client").directory

    def torrc_options_for_launch(self) -> Options:
        """
        The options a tor launched by someone else (e.g. tchat with
        C{txtorcon.launch}) needs to join this network: the common options
        and the C{DirAuthority} lines, as a list.  Without
        C{__OwningControllerProcess}, which txtorcon's C{launch} sets
        itself, and without C{DataDirectory}, C{ControlPort}, C{SocksPort}
        and C{Log}, which are the launcher's.

        Set each on a C{txtorcon.TorConfig} (C{setattr(config, name,
        value)}); txtorcon gives a list as one command-line option per
        value.

        @return: A fresh dict each call.
        """
        if not self.dir_authority_lines:
            raise RuntimeError("the Tor network has not been started")
        options: Options = {
            name: value
            for name, value in self.common_options.items()
            if name != "__OwningControllerProcess"
        }
        options["DirAuthority"] = list(self.dir_authority_lines)
        return options

    def describe(self, lines: int = 15) -> str:
        """
        The tail of every node's C{notice.log}, and for a node that has
        ended, its exit status and the tail of its stdout, for failure
        messages.

        @param lines: How many lines of each log.
        """
        parts = [f"Tor network in {self.base_dir}:"]
        for index, node in enumerate(self.nodes):
            state = "not started"
            ended = False
            if index < len(self._processes):
                process = self._processes[index]
                code = process.poll()
                ended = code is not None
                state = f"pid {process.pid}, " + (
                    f"ended with {code}" if ended else "running"
                )
            parts.append(f"--- {node.nick} ({node.role}, {state}) notice.log:")
            parts.append(_tail(node.notice_log, lines).rstrip("\n"))
            if ended:
                parts.append(f"--- {node.nick} stdout:")
                parts.append(_tail(node.stdout_log, lines).rstrip("\n"))
        return "\n".join(parts)

    def running_pids(self) -> list[int]:
        """
        The PIDs of the tors started here that have not ended.
        """
        return [p.pid for p in self._processes if p.poll() is None]

    def check_running(self) -> None:
        """
        @raise TorNetworkError: If a tor has ended (or was never started).
        """
        if not self._started or self._stopped:
            raise TorNetworkError(f"the Tor network is not running\n{self.describe()}")
        ended = [
            node.nick
            for node, process in zip(self.nodes, self._processes, strict=True)
            if process.poll() is not None
        ]
        if ended:
            raise TorNetworkError(
                f"tor {', '.join(ended)} ended unexpectedly\n{self.describe()}"
            )

    # -- start and stop ----------------------------------------------------

    def start(self) -> None:
        """
        Pick free ports, generate fresh keys, write every torrc and start
        every tor (blocking, a few seconds).  It does not wait for the
        network to bootstrap: see L{wait_bootstrapped}.

        @raise TorNetworkError: If key generation fails; the tors already
            started are stopped again.
        """
        with self._lock:
            if self._started:
                raise RuntimeError("a TorNetwork starts only once")
            self._started = True
            atexit.register(self.stop)
            try:
                self._layout()
                self._generate_keys()
                for node in self.nodes:
                    self._write_torrc(node)
                self._spawn_all()
            except BaseException:
                self._stop_locked()
                raise

    def wait_bootstrapped(self, timeout: float = BOOTSTRAP_TIMEOUT) -> None:
        """
        Block until the client and the onion-service tors have logged
        C{Bootstrapped 100%}.

        @param timeout: Seconds to wait.
        @raise TorNetworkError: On timeout, or as soon as a tor ends, with
            the tail of every node's logs.
        """
        waiting = [self._node("client"), self._node("service")]
        deadline = time.monotonic() + timeout
        while True:
            self.check_running()
            waiting = [
                node
                for node in waiting
                if "Bootstrapped 100%" not in _tail(node.notice_log, 10**6)
            ]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise TorNetworkError(
                    f"{', '.join(n.nick for n in waiting)} did not reach "
                    f"Bootstrapped 100% within {timeout} s\n{self.describe()}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        """
        Stop every tor started here: SIGTERM, then SIGKILL after
        L{STOP_GRACE} seconds, each by its PID (and only while it is our
        unreaped child, so no other process can be hit).  Blocks until all
        have ended.  Calling it again does nothing.
        """
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        running = [p for p in self._processes if p.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for process in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(deadline - time.monotonic(), 0))
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(10)

    # -- building ----------------------------------------------------------

    def _layout(self) -> None:
        relaying = self._authorities + self._relays
        # ORPort, DirPort and ControlPort per relay; ControlPort and
        # SocksPort for the client; ControlPort for the service.
        ports = iter(free_ports(3 * relaying + 3))
        roles = ["authority"] * self._authorities + ["relay"] * self._relays
        for index, role in enumerate(roles):
            nick = f"test{index:03d}{role[0]}"
            self.nodes.append(
                TorNode(
                    nick,
                    role,
                    os.path.join(self.base_dir, nick),
                    control_port=next(ports),
                    or_port=next(ports),
                    dir_port=next(ports),
                )
            )
        client = f"test{relaying:03d}c"
        self.nodes.append(
            TorNode(
                client,
                "client",
                os.path.join(self.base_dir, client),
                control_port=next(ports),
                socks_port=next(ports),
            )
        )
        service = f"test{relaying + 1:03d}h"
        self.nodes.append(
            TorNode(
                service,
                "service",
                os.path.join(self.base_dir, service),
                control_port=next(ports),
            )
        )
        os.makedirs(self.base_dir, exist_ok=True)
        for node in self.nodes:
            os.makedirs(os.path.join(node.directory, "keys"), mode=0o700)
            os.chmod(node.directory, 0o700)

    def _common_options(self) -> dict[str, str]:
        # A GeoIP file that does not exist saves about 34 MB per tor.
        no_geoip = os.path.join(self.base_dir, "no-geoip")
        return {
            "TestingTorNetwork": "1",
            "PathsNeededToBuildCircuits": "0.67",
            "TestingDirAuthVoteExit": "*",
            "TestingDirAuthVoteHSDir": "*",
            "TestingDirAuthVoteGuard": "*",
            "TestingMinExitFlagThreshold": "0",
            "V3AuthNIntervalsValid": "2",
            "UseDefaultFallbackDirs": "0",
            "ClientUseIPv6": "0",
            "ConnLimit": "60",
            "ShutdownWaitLength": "0",
            "CookieAuthentication": "1",
            "SafeLogging": "0",
            "LogTimeGranularity": "1",
            "GeoIPFile": no_geoip,
            "GeoIPv6File": no_geoip,
            "__OwningControllerProcess": str(os.getpid()),
        }

    def _generate_keys(self) -> None:
        """
        An authority certificate per authority (its v3ident) and an identity
        per relay-capable node (its fingerprint), then the DirAuthority
        lines.  Each step runs its processes in parallel.
        """
        authorities = [n for n in self.nodes if n.role == "authority"]
        gencerts = []
        for node in authorities:
            keys = os.path.join(node.directory, "keys")
            args = [
                self._tor_gencert,
                "--create-identity-key",
                "--passphrase-fd",
                "0",
                "-i",
                os.path.join(keys, "authority_identity_key"),
                "-s",
                os.path.join(keys, "authority_signing_key"),
                "-c",
                os.path.join(keys, "authority_certificate"),
                "-m",
                "12",
                "-a",
                f"{LOOPBACK}:{node.dir_port}",
            ]
            gencerts.append((node, args))
        self._run_all(gencerts, stdin=b"\n")

        fingerprints = []
        for node in self.nodes:
            if not node.relays:
                continue
            torrc = os.path.join(node.directory, "torrc.fingerprint")
            with open(torrc, "w", encoding="utf-8") as f:
                f.write(
                    f"DataDirectory {node.directory}\n"
                    f"Nickname {node.nick}\n"
                    f"ORPort {LOOPBACK}:{node.or_port}\n"
                    "DisableNetwork 1\n"
                    f"GeoIPFile {self.common_options['GeoIPFile']}\n"
                    f"GeoIPv6File {self.common_options['GeoIPv6File']}\n"
                )
            args = [
                self._tor,
                "--ignore-missing-torrc",
                "-f",
                torrc,
                "--list-fingerprint",
            ]
            fingerprints.append((node, args))
        self._run_all(fingerprints, stdin=b"")

        for node in authorities:
            v3ident = self._read_field(
                os.path.join(node.directory, "keys", "authority_certificate"),
                r"^fingerprint ([0-9A-F]{40})$",
            )
            fingerprint = self._read_field(
                os.path.join(node.directory, "fingerprint"),
                rf"^{node.nick} ([0-9A-F]{{40}})$",
            )
            self.dir_authority_lines.append(
                f"{node.nick} orport={node.or_port} no-v2 v3ident={v3ident} "
                f"{LOOPBACK}:{node.dir_port} {fingerprint}"
            )

    def _run_all(self, commands: list[tuple[TorNode, list[str]]], stdin: bytes) -> None:
        """
        Run programs in parallel, each in its node's directory, to their
        end (at most 60 s each).

        @raise TorNetworkError: If one fails, with its output.
        """
        running = [
            (
                node,
                args,
                subprocess.Popen(
                    args,
                    cwd=node.directory,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    process_group=0,
                ),
            )
            for node, args in commands
        ]
        failures = []
        for node, args, process in running:
            try:
                output, _ = process.communicate(stdin, timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                output, _ = process.communicate()
            if process.returncode != 0:
                text = output.decode("utf-8", "replace")
                failures.append(
                    f"{node.nick}: {args!r} ended with {process.returncode}:\n{text}"
                )
        if failures:
            raise TorNetworkError("key generation failed:\n" + "\n".join(failures))

    @staticmethod
    def _read_field(path: str, pattern: str) -> str:
        try:
            with open(path, encoding="ascii") as f:
                text = f.read()
        except FileNotFoundError:
            raise TorNetworkError(f"key generation did not write {path}") from None
        match = re.search(pattern, text, re.MULTILINE)
        if match is None:
            raise TorNetworkError(f"no {pattern!r} in {path}:\n{text}")
        return match.group(1)

    def _torrc_options(self, node: TorNode) -> list[tuple[str, str]]:
        """
        The node's torrc, as (option, value) pairs in order.
        """
        options = list(self.common_options.items())
        options += [
            ("DataDirectory", node.directory),
            ("Nickname", node.nick),
            ("ControlPort", f"{LOOPBACK}:{node.control_port}"),
            ("Log", f"notice file {node.notice_log}"),
        ]
        options += [("DirAuthority", line) for line in self.dir_authority_lines]
        if node.relays:
            options += [
                ("SocksPort", "0"),
                # Always with the address: a bare port listens on every
                # interface.
                ("ORPort", f"{LOOPBACK}:{node.or_port}"),
                ("DirPort", f"{LOOPBACK}:{node.dir_port}"),
                ("Address", LOOPBACK),
                ("AddressDisableIPv6", "1"),
                # Publish at once rather than after a reachability
                # self-test of about 65 s: the biggest speed-up measured.
                ("AssumeReachable", "1"),
                ("ExitRelay", "0"),
                ("ExitPolicy", "reject *:*"),
                ("ServerDNSDetectHijacking", "0"),
                ("ServerDNSTestAddresses", ""),
                ("ServerDNSResolvConfFile", "/dev/null"),
            ]
        if node.role == "authority":
            options += [
                ("AuthoritativeDirectory", "1"),
                ("V3AuthoritativeDirectory", "1"),
                ("ContactInfo", f"{node.nick}@test.test"),
                # The smallest voting schedule tor accepts under
                # TestingTorNetwork.
                ("TestingV3AuthInitialVotingInterval", "5"),
                ("TestingV3AuthInitialVoteDelay", "2"),
                ("TestingV3AuthInitialDistDelay", "2"),
                ("V3AuthVotingInterval", "10"),
                ("V3AuthVoteDelay", "2"),
                ("V3AuthDistDelay", "2"),
            ]
        if node.role == "client":
            # ExtendedErrors: say why an onion connection failed (e.g.
            # missing client authorization), not just "general failure".
            options.append(
                ("SocksPort", f"{LOOPBACK}:{node.socks_port} ExtendedErrors")
            )
        if node.role == "service":
            options.append(("SocksPort", "0"))
        return options

    def _write_torrc(self, node: TorNode) -> None:
        with open(node.torrc, "w", encoding="utf-8") as f:
            f.write(
                f"# {node.nick}: {node.role}, written by tests/integration/tornet.py\n"
            )
            for name, value in self._torrc_options(node):
                # ServerDNSTestAddresses is given with an empty value.
                f.write(f"{name} {value}".rstrip() + "\n")

    def _spawn_all(self) -> None:
        for node in self.nodes:
            with open(node.stdout_log, "wb") as out:
                process = subprocess.Popen(
                    [self._tor, "-f", node.torrc],
                    cwd=node.directory,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    process_group=0,
                )
            self._processes.append(process)
            self.pids.append(process.pid)

    # -- hygiene -------------------------------------------------------------

    def foreign_sockets(self) -> list[str]:
        """
        The TCP and UDP sockets of the running tors whose local or remote
        address is neither loopback nor unspecified, read from C{/proc}
        (Linux only; empty elsewhere).

        @return: One description per socket, e.g.
            C{"test006c tcp 10.0.0.5:4321 -> 1.2.3.4:443"}.
        """
        table = _proc_net_sockets()
        found = []
        for node, process in zip(self.nodes, self._processes, strict=True):
            if process.poll() is not None:
                continue
            for inode in _socket_inodes(process.pid):
                entry = table.get(inode)
                if entry is None:
                    continue
                kind, local, remote = entry
                if not (_harmless(local[0]) and _harmless(remote[0])):
                    found.append(
                        f"{node.nick} {kind} {local[0]}:{local[1]} -> "
                        f"{remote[0]}:{remote[1]}"
                    )
        return found


_Address = tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]


def _proc_address(text: str) -> _Address:
    """
    Decode an address from C{/proc/net/tcp*}: hex, in host byte order per
    32-bit word (little-endian here).
    """
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(raw)
    return address, int(port, 16)


def _proc_net_sockets() -> dict[str, tuple[str, _Address, _Address]]:
    """
    Every TCP and UDP socket of this network namespace, by inode.
    """
    table = {}
    for kind in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open(f"/proc/net/{kind}", encoding="ascii") as f:
                rows = f.readlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            table[fields[9]] = (
                kind,
                _proc_address(fields[1]),
                _proc_address(fields[2]),
            )
    return table


def _socket_inodes(pid: int) -> Iterable[str]:
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []
    inodes = []
    for name in names:
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{name}")
            if target.startswith("socket:["):
                inodes.append(target[len("socket:[") : -1])
    return inodes


def _harmless(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


# -- one network per process ---------------------------------------------------

_shared_lock = threading.Lock()
_shared: dict[str, TorNetwork] = {}
_shared_failures: dict[str, str] = {}


def _shared_blocking(name: str, timeout: float) -> TorNetwork:
    with _shared_lock:
        if name in _shared_failures:
            raise TorNetworkError(
                f"the shared Tor network {name!r} failed to start earlier in this "
                f"run:\n{_shared_failures[name]}"
            )
        network = _shared.get(name)
        if network is None:
            # Under trial the working directory is _trial_temp, so the
            # logs stay there for a failed CI run to upload.
            base_dir = tempfile.mkdtemp(prefix=f"tornet-{name}-", dir=os.getcwd())
            network = TorNetwork(base_dir)
            try:
                network.start()
                network.wait_bootstrapped(timeout)
            except BaseException as e:
                network.stop()
                _shared_failures[name] = str(e)
                raise
            _shared[name] = network
        network.check_running()
        return network


async def shared_network(
    name: str = "default", timeout: float = BOOTSTRAP_TIMEOUT
) -> TorNetwork:
    """
    The bootstrapped network of this process called C{name}, started for
    the first caller (in a thread, so the reactor keeps running) and
    stopped at exit.  A network that failed to start is not tried again:
    later callers fail at once with the first error.

    Skips the test (or fails it, under C{TCHAT_REQUIRE_ALL=1}) without tor,
    tor-gencert or txtorcon.

    @param name: Which network; tests that must not share one use
        different names.  Each costs eight tors (about 0.5 GB).
    @param timeout: Seconds to wait for it to bootstrap.
    @raise TorNetworkError: If it cannot be started, or a tor of it has
        ended.
    """
    require_tor()
    reactor = global_reactor()
    network: TorNetwork = await deferToThreadPool(
        reactor, reactor.getThreadPool(), _shared_blocking, name, timeout
    )
    return network


async def in_thread(function: Callable[[], Any]) -> Any:
    """
    Run a blocking call, such as L{TorNetwork.start} or L{TorNetwork.stop},
    in the reactor's thread pool.
    """
    reactor = global_reactor()
    return await deferToThreadPool(reactor, reactor.getThreadPool(), function)


# -- the Twisted side ------------------------------------------------------------


async def connect_control(control_port: int, timeout: float = 30.0) -> Any:
    """
    Connect txtorcon to a tor's control port on 127.0.0.1, retrying while
    it refuses (a tor just started opens it after a moment).  Close it
    with L{close_control}.

    @param control_port: The port.
    @param timeout: Seconds to keep trying.
    @return: A C{txtorcon.Tor}.
    @raise TorNetworkError: If no attempt worked in time.
    """
    import txtorcon

    reactor = global_reactor()
    deadline = time.monotonic() + timeout
    while True:
        endpoint = TCP4ClientEndpoint(reactor, LOOPBACK, control_port, timeout=5)
        try:
            return await txtorcon.connect(reactor, endpoint)
        except ConnectError as e:
            if time.monotonic() > deadline:
                raise TorNetworkError(
                    f"could not connect to tor's control port {control_port} "
                    f"within {timeout} s: {e}"
                ) from e
        await deferLater(reactor, 0.25)


async def close_control(tor: Any, timeout: float = 10.0) -> None:
    """
    Close a txtorcon control connection and wait until it is closed, so
    that trial finds a clean reactor.  Onion services it added, unless
    detached, go away with it.

    @param tor: A C{txtorcon.Tor} from L{connect_control}.
    """
    protocol = tor.protocol
    if protocol.transport is None or not protocol.transport.connected:
        return
    closed: Deferred[Any] = protocol.when_disconnected()
    closed.addTimeout(timeout, global_reactor())
    protocol.transport.loseConnection()
    try:
        await closed
    except TimeoutError:
        protocol.transport.abortConnection()
        await _until_closed([protocol.transport])
    except Exception:
        # It fires with the reason, a Failure (TorDisconnectError): that is
        # the expected end here.
        pass


@implementer(IStreamClientEndpoint)
class _RecordingEndpoint:
    """
    An endpoint that remembers the protocols it connected, so that a
    SOCKS attempt that failed or was cancelled half-way can be closed
    (txtorcon leaves that connection open).
    """

    def __init__(self, wrapped: IStreamClientEndpoint) -> None:
        self._wrapped = wrapped
        self.protocols: list[Any] = []

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[Any]:
        d = self._wrapped.connect(protocolFactory)

        def record(protocol: Any) -> Any:
            self.protocols.append(protocol)
            return protocol

        return d.addCallback(record)

    def abort(self) -> list[Any]:
        """
        Abort every connection made here that is still open.

        @return: The transports of all of them, open or not.
        """
        transports = [p.transport for p in self.protocols if p.transport]
        for transport in transports:
            if transport.connected:
                transport.abortConnection()
        return transports


class BuildsProtocols(TypingProtocol):
    """
    What L{connect_onion} needs of a factory: txtorcon only calls its
    C{buildProtocol}, once the SOCKS handshake has succeeded.
    """

    def buildProtocol(self, addr: Any) -> Any: ...


class OneProtocolFactory(Factory[Any]):
    """
    A protocol factory that builds exactly the one protocol it was given:
    for L{connect_onion} with a protocol made beforehand.
    """

    def __init__(self, protocol: Protocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        return self._protocol


async def _until_closed(transports: list[Any], timeout: float = 10.0) -> None:
    reactor = global_reactor()
    deadline = time.monotonic() + timeout
    while any(t.connected for t in transports) and time.monotonic() < deadline:
        await deferLater(reactor, 0.02)


async def connect_onion(
    socks_port: int,
    host: str,
    port: int,
    factory: BuildsProtocols,
    *,
    timeout: float = 120.0,
    attempt_timeout: float = 60.0,
    final: Collection[str] = (),
) -> Any:
    """
    Connect to C{host:port} (an onion address) through a tor's SOCKS port on
    127.0.0.1, retrying until C{timeout}: a client tor may not find a new
    service's descriptor at first.

    A failed attempt leaves no connection open.

    @param socks_port: The SOCKS port, e.g. L{TorNetwork.client_socks_port}.
    @param host: The C{….onion} address.
    @param port: The virtual port.
    @param factory: Builds the protocol.
    @param timeout: Seconds for all attempts.
    @param attempt_timeout: Seconds for one attempt.
    @param final: SOCKS errors (L{SocksError} messages, such as C{"onion
        service missing client authorization"}) that are tor's last word:
        the first one ends the attempts and is raised as it is.
    @return: The connected protocol.
    @raise SocksError: At once, for an error in C{final}.
    @raise TorNetworkError: If no attempt worked in time, with every error.
    """
    reactor = global_reactor()
    deadline = time.monotonic() + timeout
    errors: list[str] = []
    while True:
        socks = _RecordingEndpoint(
            TCP4ClientEndpoint(reactor, LOOPBACK, socks_port, timeout=10)
        )
        started = time.monotonic()
        handshake = _Socks5(host, port, factory)
        attempt: Deferred[Any] = socks.connect(OneProtocolFactory(handshake))
        attempt.addCallback(_when_done, handshake)
        attempt.addTimeout(min(attempt_timeout, max(deadline - started, 1.0)), reactor)
        try:
            return await attempt
        except CancelledError:
            # The caller gave up (not our timeout: addTimeout turns that
            # into TimeoutError); close what we opened, and give up too.
            socks.abort()
            raise
        except Exception as e:
            errors.append(f"after {time.monotonic() - started:.1f} s: {e!r}")
            _log.info(
                "connect_onion: {host}:{port}: {error}",
                host=host,
                port=port,
                error=errors[-1],
            )
            if isinstance(e, SocksError) and str(e) in final:
                await _until_closed(socks.abort())
                raise
        await _until_closed(socks.abort())
        if time.monotonic() > deadline:
            raise TorNetworkError(
                f"could not connect to {host}:{port} through SOCKS port "
                f"{socks_port} within {timeout} s; attempts:\n  " + "\n  ".join(errors)
            )
        await deferLater(reactor, 1.0)


async def fetch_descriptor(tor: Any, onion_id: str, timeout: float = 120.0) -> float:
    """
    Have a tor fetch an onion service's descriptor (C{HSFETCH}) and wait
    until it has it: C{HS_DESC RECEIVED}, which tor reports once an HSDir
    has answered with the descriptor, even one it cannot decrypt for want
    of client authorization.  That can take a while after the service is
    published: a client tor of a young network, though bootstrapped, may
    build no circuit for ten seconds or more while it fetches the
    microdescriptors of relays new to its consensus ("Failed to find node
    for hop #2"), and a new service's descriptor may not be on the
    directories the client asks yet (tchat reports it published after the
    first upload).  Each C{FAILED} (or a request tor left unanswered for
    30 s) is asked again a second later, until C{timeout}.

    @param tor: A C{txtorcon.Tor} from L{connect_control}, on the client tor.
    @param onion_id: The address without C{.onion}.
    @param timeout: Seconds for all requests.
    @return: Seconds it took.
    @raise TorNetworkError: If tor did not get it in time, with the events.
    """
    reactor = global_reactor()
    started = time.monotonic()
    deadline = started + timeout
    events: list[str] = []
    received: list[float] = []
    answer: Deferred[None] | None = None

    def heard(text: str) -> None:
        words = text.split()
        if len(words) < 2 or words[1] != onion_id:
            return
        events.append(f"{time.monotonic() - started:.1f} s: {text}")
        if words[0] == "RECEIVED":
            # Also from a fetch tor retried by itself after a FAILED.
            received.append(time.monotonic() - started)
        if words[0] in ("RECEIVED", "FAILED") and answer and not answer.called:
            answer.callback(None)

    await tor.protocol.add_event_listener("HS_DESC", heard)
    try:
        while not received:
            if time.monotonic() > deadline:
                raise TorNetworkError(
                    f"the client tor did not get the descriptor of {onion_id} "
                    f"within {timeout} s; HS_DESC events:\n  " + "\n  ".join(events)
                )
            answer = Deferred()
            await tor.protocol.queue_command(f"HSFETCH {onion_id}")
            answer.addTimeout(min(30.0, max(deadline - time.monotonic(), 0.1)), reactor)
            try:
                await answer
            except TimeoutError:
                events.append(f"{time.monotonic() - started:.1f} s: no answer")
            if not received:
                await deferLater(reactor, 1.0)
    finally:
        await tor.protocol.remove_event_listener("HS_DESC", heard)
    _log.info(
        "fetch_descriptor: {onion_id}: {events}",
        onion_id=onion_id,
        events="; ".join(events),
    )
    return received[0]


def _when_done(_: object, handshake: _Socks5) -> Deferred[Any]:
    return handshake.done


class SocksError(Exception):
    """
    Tor's SOCKS port refused a connection; the message says why.
    """


_SOCKS_REPLIES = {
    0x01: "general failure",
    0x02: "not allowed by ruleset",
    0x03: "network unreachable",
    0x04: "host unreachable",
    0x05: "connection refused",
    0x06: "TTL expired",
    0x07: "command not supported",
    0x08: "address type not supported",
    0xF0: "onion service descriptor not found",
    0xF1: "onion service descriptor invalid",
    0xF2: "onion service introduction failed",
    0xF3: "onion service rendezvous failed",
    0xF4: "onion service missing client authorization",
    0xF5: "onion service wrong client authorization",
    0xF6: "invalid onion address",
    0xF7: "onion service introduction timed out",
}


class _Socks5(Protocol):
    """
    A SOCKS5 CONNECT by host name, then the given factory's protocol on
    the same connection.

    Not txtorcon's SOCKS client: it keeps bytes that arrive in the same
    read as the SOCKS reply until more arrive, so a server that speaks
    first (tchat's welcome) looked silent.
    """

    def __init__(self, host: str, port: int, factory: BuildsProtocols) -> None:
        self._host = host.encode("idna")
        self._port = port
        self._factory = factory
        self._buffer = b""
        self._inner: Protocol | None = None
        self._asked = False
        self.done: Deferred[Any] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"\x05\x01\x00")  # version 5, one method: none

    def dataReceived(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.dataReceived(data)
            return
        self._buffer += data
        try:
            self._parse()
        except SocksError as e:
            self.done.errback(e)
            assert self.transport is not None
            self.transport.loseConnection()

    def _parse(self) -> None:
        assert self.transport is not None
        if not self._asked:
            if len(self._buffer) < 2:
                return
            if self._buffer[:2] != b"\x05\x00":
                raise SocksError(f"unexpected method reply {self._buffer[:2]!r}")
            self._buffer = self._buffer[2:]
            self._asked = True
            self.transport.write(
                b"\x05\x01\x00\x03"  # CONNECT to a host name
                + bytes([len(self._host)])
                + self._host
                + self._port.to_bytes(2, "big")
            )
        reply = self._buffer
        if len(reply) < 5:
            return
        if reply[1] != 0:
            raise SocksError(_SOCKS_REPLIES.get(reply[1], f"reply {reply[1]:#x}"))
        size = {1: 4, 4: 16, 3: 1 + reply[4]}.get(reply[3])
        if size is None:
            raise SocksError(f"unexpected address type {reply[3]}")
        end = 4 + size + 2
        if len(reply) < end:
            return
        rest, self._buffer = reply[end:], b""
        inner = self._factory.buildProtocol(None)
        inner.makeConnection(self.transport)
        self._inner = inner
        self.done.callback(inner)
        if rest:
            # What the server said first, in the same read as the reply.
            inner.dataReceived(rest)

    def connectionLost(self, reason: Any = None) -> None:
        if self._inner is not None:
            self._inner.connectionLost(reason)
        elif not self.done.called:
            self.done.errback(
                SocksError(f"closed during the SOCKS handshake: {reason}")
            )
