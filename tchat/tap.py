# -*- test-case-name: tests.test_tap -*-
"""
C{twistd tchat}: command-line options and the service tree.
"""

import sys
from pathlib import Path

from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IProtocolFactory, IReactorCore
from twisted.python import usage

from tchat import __version__
from tchat.config import Config, ConfigError, load_config, with_overrides
from tchat.endpoints import ListenerService, check_endpoint, with_backlog
from tchat.hub import ChatFactory
from tchat.telnet import TelnetFactory
from tchat.web import make_site

DEFAULT_CONFIG = Path("tap.ini")


class Options(usage.Options):
    """
    Options for C{twistd tchat}.  Anything given here overrides C{tap.ini}.

    @ivar config: The configuration in force, after L{postOptions}.
    """

    synopsis = "[--config PATH] [--telnet ENDPOINT ...] [--web ENDPOINT ...] [--check]"
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
            for door, description in _listeners(self.config):
                print(f"{door}: {description}")
            raise SystemExit(0)

    def _read_config(self) -> Config:
        if self["config"] is not None:
            config = load_config(Path(self["config"]))
        elif DEFAULT_CONFIG.exists():
            config = load_config(DEFAULT_CONFIG)
        else:
            config = Config()
        config = with_overrides(
            config,
            telnet_listen=tuple(self["telnet"]) or None,
            web_listen=tuple(self["web"]) or None,
        )
        listeners = _listeners(config)
        for door, description in listeners:
            check_endpoint(door, description)
        if not listeners:
            raise ConfigError("no listener is configured in [telnet] or [web]")
        return config


def _listeners(config: Config) -> list[tuple[str, str]]:
    """
    Every (door, endpoint string) the configuration listens on.
    """
    return [("telnet", d) for d in config.telnet.listen] + [
        ("web", d) for d in config.web.listen
    ]


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
    hub = ChatFactory(config.server, reactor)  # type: ignore[arg-type]
    root = MultiService()
    factories: dict[str, IProtocolFactory] = {
        "telnet": TelnetFactory(hub, "telnet", config.telnet.max_line),
        "web": make_site(hub, config.web),
    }
    for door, description in _listeners(config):
        endpoint = serverFromString(reactor, with_backlog(description))
        service = ListenerService(door, description, endpoint, factories[door])
        service.setServiceParent(root)
    return root
