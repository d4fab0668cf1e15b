# -*- test-case-name: tests.test_tap -*-
"""
C{twistd tchat}: command-line options and the service tree.
"""

import os
import sys
from pathlib import Path
from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocolFactory, IReactorCore
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from tchat import __version__
from tchat.admin import make_admin_site
from tchat.config import Config, ConfigError, load_config, with_overrides
from tchat.control import Listeners, Reloader, SignalService
from tchat.endpoints import check_endpoint
from tchat.gate import Gate
from tchat.history import HistoryStore, open_store
from tchat.hub import ChatFactory
from tchat.irc import IRCFactory
from tchat.logs import install_log_observer
from tchat.onion import OnionService
from tchat.operators import verify_password
from tchat.output import Batcher
from tchat.passwords import Hashing
from tchat.seam import IBackplane
from tchat.telnet import TelnetFactory
from tchat.web import make_site

DEFAULT_CONFIG = Path("tap.ini")


class Options(usage.Options):
    """
    Options for C{twistd tchat}.  Anything given here overrides C{tap.ini}.

    @ivar config: The configuration in force, after L{postOptions}.
    """

    synopsis = (
        "[--config PATH] [--telnet ENDPOINT ...] [--web ENDPOINT ...] "
        "[--ssh ENDPOINT ...] [--irc ENDPOINT ...] [--admin ENDPOINT ...] "
        "[--check]"
    )
    longdesc = (
        "Run the tchat hub. Settings come from tap.ini (./tap.ini when present, "
        "else built-in defaults); options given here override it. Endpoints are "
        "Twisted endpoint strings such as tcp:4444:interface=127.0.0.1, "
        "ssl:4443:privateKey=key.pem:certKey=cert.pem or unix:/run/tchat.sock."
    )
    optParameters = [
        ["config", "c", None, "Read this tap.ini (default: ./tap.ini when present)."],
    ]
    optFlags = [
        ["check", None, "Check the configuration, print what would listen, exit."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["telnet"] = []
        self["web"] = []
        self["ssh"] = []
        self["irc"] = []
        self["admin"] = []
        self.config = Config()

    def opt_telnet(self, endpoint: str) -> None:
        """
        Listen for telnet users on this endpoint (repeatable; replaces
        [telnet] listen).
        """
        self["telnet"].append(endpoint)

    def opt_web(self, endpoint: str) -> None:
        """
        Serve the chat page and its WebSocket on this endpoint (repeatable;
        replaces [web] listen).
        """
        self["web"].append(endpoint)

    def opt_ssh(self, endpoint: str) -> None:
        """
        Listen for SSH users on this endpoint (repeatable; replaces [ssh]
        listen).
        """
        self["ssh"].append(endpoint)

    def opt_irc(self, endpoint: str) -> None:
        """
        Listen for IRC clients on this endpoint (repeatable; replaces [irc]
        listen; ssl: for TLS, as on 6697).
        """
        self["irc"].append(endpoint)

    def opt_admin(self, endpoint: str) -> None:
        """
        Serve /healthz, /stats and /metrics on this endpoint (repeatable;
        replaces [admin] listen; none for no admin door).
        """
        self["admin"].append(endpoint)

    def opt_version(self) -> None:
        """
        Print tchat's version and exit.
        """
        print(f"tchat {__version__}")
        raise SystemExit(0)

    def postOptions(self) -> None:
        try:
            self.config = self._read_config()
        except ConfigError as e:
            # Not UsageError: twistd would print all of its own --help first
            # and bury the one line that matters.
            print(f"tchat: configuration error: {e}", file=sys.stderr)
            raise SystemExit(1) from None
        if self["check"]:
            print(f"tchat: configuration OK ({self.config.source})")
            for door, description in self.config.listeners():
                print(f"{door}: {description}")
            if self.config.serves_ssh():
                print(f"ssh host key: {_ssh_fingerprint(self.config)}")
            raise SystemExit(0)
        install_log_observer(getattr(self, "parent", None), self.config.log.format)

    def reread(self) -> Config:
        """
        Read C{tap.ini} again, as at start (with the same command-line
        overrides), for a reload.  Blocking: call it from a thread.

        @raise ConfigError: If it is no longer valid, or no longer there:
            a C{./tap.ini} read at start that has gone since is an error,
            not the built-in defaults.
        """
        return self._read_config(reloading=True)

    def _read_config(self, reloading: bool = False) -> Config:
        if self["config"] is not None:
            config = load_config(Path(self["config"]))
        elif DEFAULT_CONFIG.exists() or (
            reloading and self.config.source == str(DEFAULT_CONFIG)
        ):
            config = load_config(DEFAULT_CONFIG)
        else:
            config = Config()
        config = with_overrides(
            config,
            telnet_listen=tuple(self["telnet"]) or None,
            web_listen=tuple(self["web"]) or None,
            ssh_listen=tuple(self["ssh"]) or None,
            irc_listen=tuple(self["irc"]) or None,
            admin_listen=(
                tuple(e for e in self["admin"] if e.lower() != "none")
                if self["admin"]
                else None
            ),
        )
        listeners = config.listeners()
        for door, description in listeners:
            check_endpoint(door, description)
        if not config.chat_listeners() and not config.onion.enabled:
            raise ConfigError(
                "no listener is configured in [telnet], [web], [ssh] or [irc]"
            )
        if config.onion.enabled:
            _check_txtorcon(config)
        if config.cluster.enabled:
            _check_txredisapi(config)
        _check_history(config)
        return config


def _ssh_fingerprint(config: Config) -> str:
    """The SSH host key's fingerprint (made now if there is none yet)."""
    from tchat.ssh import fingerprint, host_key

    try:
        return fingerprint(host_key(config.ssh.host_key))
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"{config.source}: [ssh] host_key: {config.ssh.host_key!r}: {e}"
        ) from None


def _check_txtorcon(config: Config) -> None:
    try:
        import txtorcon  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"{config.source}: [onion] enabled: the onion door needs txtorcon, "
            "which is part of tchat's install but cannot be imported: "
            "reinstall tchat (pip install .)"
        ) from None


def _check_txredisapi(config: Config) -> None:
    try:
        import txredisapi  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"{config.source}: [cluster] redis: cluster mode needs txredisapi: "
            "pip install 'tchat[cluster]'"
        ) from None


def _check_history(config: Config) -> None:
    """
    Refuse a history file that cannot be written before anything starts.
    """
    history = config.history
    if history.in_memory:
        return
    path = Path(history.path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ConfigError(
            f"{config.source}: [history] path: the folder {str(folder)!r} "
            "does not exist"
        )
    if not os.access(folder, os.W_OK) or (
        path.exists() and not os.access(path, os.W_OK)
    ):
        raise ConfigError(
            f"{config.source}: [history] path: {history.path!r} is not writable "
            "by this user"
        )


class HistoryService(Service):
    """
    Loads the hub's history before users are let in, and writes it all out
    when tchat stops.  It is the first service, so it stops last, after the
    doors.
    """

    _log = Logger()

    def __init__(self, hub: ChatFactory, description: str, reactor: Any) -> None:
        self._hub = hub
        self._description = description
        self._reactor = reactor
        self._started: Deferred[None] | None = None

    def startService(self) -> None:
        super().startService()
        self._log.info("history: {description}", description=self._description)
        self._started = self._hub.start()
        self._started.addErrback(self._failed)

    def _failed(self, why: Failure) -> None:
        self._log.critical(
            "tchat: cannot open the history store ({description}): {error}. "
            "Check [history] path in tap.ini, or set enabled = false.",
            description=self._description,
            error=why.getErrorMessage(),
        )
        self._started = None
        # twistd has no exit status of its own for this; stop, then leave
        # with 1 so supervisors see a failed start.
        self._reactor.addSystemEventTrigger("after", "shutdown", _exit_failed)
        self._reactor.stop()

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self._started is None:
            return None
        return self._started.addCallback(lambda _: self._hub.stop())


def _exit_failed() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def _gated(hub: ChatFactory, door: Any, onion: bool = False) -> Gate:
    """
    A chat door behind the hub's connection limits.
    """
    return Gate(door, hub.admission, hub.clock, door.refusal, onion=onion)


def raise_file_limit(connections: int) -> None:
    """
    Raise the open-file limit to its hard limit, since every connection
    takes a file descriptor, and warn when even that is too low for
    C{[limits] max_connections}.
    """
    try:
        import resource
    except ImportError:  # not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    # History, logs, listeners and the thread pool need some too.
    if connections and soft != resource.RLIM_INFINITY and soft < connections + 100:
        Logger().warn(
            "[limits] max_connections is {connections} but this process may "
            "open only {soft} files; raise it (ulimit -n, or LimitNOFILE= in "
            "the systemd unit) or connections beyond that are refused by the "
            "system",
            connections=connections,
            soft=soft,
        )


def makeService(options: Options, reactor: IReactorCore | None = None) -> IService:
    """
    Build the service tree: the hub, and one listener per endpoint.

    @param options: Parsed options; C{options.config} is the configuration.
    @param reactor: The reactor to listen with; the global one by default.
    @return: A service that listens on every door when started.
    """
    if reactor is None:
        from twisted.internet import reactor as _global

        reactor = _global
    config = options.config
    store: HistoryStore
    backplane: IBackplane | None = None
    if config.cluster.enabled:
        # Chosen once, here; only now: the embedded server never imports
        # the cluster's code.
        from tchat.cluster import redis_backplane

        backplane, store = redis_backplane(config.cluster, config.history, reactor)
    else:
        store = open_store(config.history, reactor)

    def verify(password: str, encoded: str | None) -> Deferred[bool]:
        threads: Any = reactor
        return deferToThreadPool(
            threads, threads.getThreadPool(), verify_password, password, encoded
        )

    hub = ChatFactory(
        config.server,
        reactor,  # type: ignore[arg-type]
        history=config.history,
        store=store,
        operators=config.operators,
        verify=verify,
        limits=config.limits,
        backplane=backplane,
        accounts=config.accounts,
        passwords=Hashing(config.accounts, reactor),
    )
    hub.batcher = Batcher(reactor)  # type: ignore[arg-type]
    raise_file_limit(config.limits.max_connections)
    root = MultiService()
    HistoryService(hub, hub.store.description, reactor).setServiceParent(root)
    telnet = TelnetFactory(hub, "telnet")
    web = make_site(hub, config.web)
    factories: dict[str, IProtocolFactory] = {
        "telnet": _gated(hub, telnet),
        "web": _gated(hub, web),
        "irc": _gated(hub, IRCFactory(hub)),
    }
    ssh_key = None
    if config.serves_ssh():
        from tchat.ssh import SSHDoor, fingerprint, host_key

        ssh_key = host_key(config.ssh.host_key)
        Logger().info(
            "ssh host key {path}: {fingerprint}",
            path=config.ssh.host_key,
            fingerprint=fingerprint(ssh_key),
        )
    if ssh_key is not None and config.ssh.listen:
        factories["ssh"] = _gated(hub, SSHDoor(hub, ssh_key))
    telnets, webs = [telnet], [web.chat]
    onion: OnionService | None = None
    if config.onion.enabled:
        onion_telnet = TelnetFactory(hub, "onion")
        onion_web = make_site(hub, config.web, door="onion")
        telnets.append(onion_telnet)
        webs.append(onion_web.chat)
        onion_doors: dict[str, IProtocolFactory] = {
            "telnet": _gated(hub, onion_telnet, onion=True),
            "web": _gated(hub, onion_web, onion=True),
        }
        if any(door == "irc" for _, door in config.onion.ports):
            onion_doors["irc"] = _gated(hub, IRCFactory(hub, "onion"), onion=True)
        if ssh_key is not None and config.serves_ssh(onion=True):
            onion_ssh = SSHDoor(hub, ssh_key, door="onion")
            onion_doors["ssh"] = _gated(hub, onion_ssh, onion=True)

        def published(address: str | None) -> None:
            hub.onion_address = address

        onion = OnionService(config.onion, reactor, onion_doors, published=published)
        onion.setServiceParent(root)
        hub.onion_status = onion.status
    # Its own listeners only: never the public web site, never an onion
    # port.  It answers at once, so /healthz can say "starting".  Made even
    # when [admin] listen is none, so that a reload can turn it on.
    factories["admin"] = make_admin_site(hub, reactor, onion)  # type: ignore[arg-type]
    parent = getattr(options, "parent", None)
    daemon = parent is not None and not parent.get("nodaemon", True)
    listeners = Listeners(root, reactor, factories, daemon=daemon)
    for door, description in config.listeners():
        listeners.add(door, description, None if door == "admin" else hub.when_ready())
    reloader = Reloader(options.reread, config, hub, telnets, webs, listeners, reactor)
    hub.reloader = lambda: reloader.reload("/rehash")
    SignalService(reactor, hub, reloader.reload).setServiceParent(root)
    return root
