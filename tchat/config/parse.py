# -*- test-case-name: tests.test_config -*-
"""
The whole configuration, L{Config}, and reading it: L{config_from_string},
L{load_config}, L{with_overrides} and L{known_keys}.

Each section's dataclass and its table of key parsers come from the module
of that section; this module only puts them together.
"""

import configparser
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tchat.config._base import ConfigError, Parsers
from tchat.config.accounts import ACCOUNTS_PARSERS, AccountsConfig
from tchat.config.cluster import CLUSTER_PARSERS, ClusterConfig
from tchat.config.history import HISTORY_PARSERS, HistoryConfig
from tchat.config.limits import LIMITS_PARSERS, LimitsConfig
from tchat.config.onion import ONION_PARSERS, OnionConfig
from tchat.config.operators import OperatorsConfig, _operators
from tchat.config.server import (
    ADMIN_PARSERS,
    IRC_PARSERS,
    LOG_PARSERS,
    SERVER_PARSERS,
    SSH_PARSERS,
    TELNET_PARSERS,
    WEB_PARSERS,
    AdminConfig,
    IRCConfig,
    LogConfig,
    ServerConfig,
    SSHConfig,
    TelnetConfig,
    WebConfig,
)


@dataclass(frozen=True)
class Config:
    """
    The whole configuration.

    @ivar source: Where it was read from, for messages.
    @ivar sections: The sections the file had, empty ones too, in the
        file's order (none for the built-in defaults), so that a reload can
        refuse a truncated file.  Not compared: configurations with the
        same values are equal.
    """

    server: ServerConfig = field(default_factory=ServerConfig)
    telnet: TelnetConfig = field(default_factory=TelnetConfig)
    web: WebConfig = field(default_factory=WebConfig)
    ssh: SSHConfig = field(default_factory=SSHConfig)
    irc: IRCConfig = field(default_factory=IRCConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    onion: OnionConfig = field(default_factory=OnionConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    accounts: AccountsConfig = field(default_factory=AccountsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    operators: OperatorsConfig = field(default_factory=OperatorsConfig)
    source: str = "built-in defaults"
    sections: tuple[str, ...] = field(default=(), compare=False)

    def chat_listeners(self) -> list[tuple[str, str]]:
        """
        Every (door, endpoint string) users chat through, onion aside.
        """
        return (
            [("telnet", d) for d in self.telnet.listen]
            + [("web", d) for d in self.web.listen]
            + [("ssh", d) for d in self.ssh.listen]
            + [("irc", d) for d in self.irc.listen]
        )

    def listeners(self) -> list[tuple[str, str]]:
        """
        Every (door, endpoint string) the configuration listens on.
        """
        return self.chat_listeners() + [("admin", d) for d in self.admin.listen]

    def serves_ssh(self, onion: bool = False) -> bool:
        """
        Whether SSH is served (and so needs C{[ssh]}'s host key): on an
        C{[ssh]} listener or an C{[onion]} port; only the latter with
        C{onion}.
        """
        on_onion = self.onion.enabled and any(
            door == "ssh" for _, door in self.onion.ports
        )
        return on_onion if onion else on_onion or bool(self.ssh.listen)


# The sections with a fixed set of keys, in the order messages and
# known_keys() list them.
_SECTIONS: Mapping[str, tuple[type[Any], Parsers]] = {
    "server": (ServerConfig, SERVER_PARSERS),
    "telnet": (TelnetConfig, TELNET_PARSERS),
    "web": (WebConfig, WEB_PARSERS),
    "ssh": (SSHConfig, SSH_PARSERS),
    "irc": (IRCConfig, IRC_PARSERS),
    "history": (HistoryConfig, HISTORY_PARSERS),
    "limits": (LimitsConfig, LIMITS_PARSERS),
    "onion": (OnionConfig, ONION_PARSERS),
    "admin": (AdminConfig, ADMIN_PARSERS),
    "cluster": (ClusterConfig, CLUSTER_PARSERS),
    "accounts": (AccountsConfig, ACCOUNTS_PARSERS),
    "log": (LogConfig, LOG_PARSERS),
}

# Keys that moved, so an old tap.ini gets a pointer rather than a riddle.
_MOVED = {
    ("telnet", "max_line"): "[limits] max_line",
    ("web", "max_message"): "[limits] max_frame",
}

# Sections whose keys are names the operator chooses.
_OPEN_SECTIONS = ("operators",)


def config_from_string(text: str, source: str = "<string>") -> Config:
    """
    Parse the text of a C{tap.ini}.

    @param text: The file's contents.
    @param source: A name for the text, used in error messages.
    @return: The configuration, with built-in defaults for what is missing.
    @raise ConfigError: If the text is not valid; the message names the
        section and key at fault.
    """
    parser = configparser.ConfigParser(
        interpolation=None, strict=True, default_section="\0no default section"
    )
    # Keys are case-sensitive like the rest of the file.
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text, source=source)
    except configparser.DuplicateSectionError as e:
        raise ConfigError(
            f"{source}: [{e.section}] appears twice (line {e.lineno})"
        ) from None
    except configparser.DuplicateOptionError as e:
        raise ConfigError(
            f"{source}: [{e.section}] {e.option}: set twice (line {e.lineno})"
        ) from None
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(
            f"{source}: line {e.lineno}: a setting outside any [section]: "
            f"{e.line.strip()!r}"
        ) from None
    except configparser.Error as e:
        raise ConfigError(f"{source}: cannot be parsed: {e.message}") from None

    sections: dict[str, object] = {}
    for section in parser.sections():
        if section == "operators":
            try:
                sections[section] = _operators(parser.items(section))
            except ConfigError as e:
                raise ConfigError(f"{source}: {e}") from None
            continue
        if section not in _SECTIONS:
            known = ", ".join(f"[{s}]" for s in (*_SECTIONS, *_OPEN_SECTIONS))
            raise ConfigError(
                f"{source}: [{section}] is not a known section (known: {known})"
            )
        cls, keys = _SECTIONS[section]
        values: dict[str, object] = {}
        for key, raw in parser.items(section):
            if (section, key) in _MOVED:
                raise ConfigError(
                    f"{source}: [{section}] {key}: moved to "
                    f"{_MOVED[section, key]}; set it there"
                )
            if key not in keys:
                raise ConfigError(
                    f"{source}: [{section}] {key}: not a known key "
                    f"(known: {', '.join(keys)})"
                )
            try:
                values[key] = keys[key](raw)
            except ValueError as e:
                raise ConfigError(f"{source}: [{section}] {key}: {e}") from None
        sections[section] = cls(**values)
    return Config(
        source=source,
        sections=tuple(parser.sections()),
        **sections,  # type: ignore[arg-type]
    )


def load_config(path: Path) -> Config:
    """
    Read and parse a C{tap.ini} file.

    This does blocking disk I/O and is meant for start-up, before the
    reactor runs.

    @param path: The file to read.
    @return: The configuration.
    @raise ConfigError: If the file cannot be read or is not valid.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: is not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read: {e.strerror}") from None
    return config_from_string(text, source=str(path))


def with_overrides(
    config: Config,
    *,
    telnet_listen: tuple[str, ...] | None,
    web_listen: tuple[str, ...] | None = None,
    admin_listen: tuple[str, ...] | None = None,
    ssh_listen: tuple[str, ...] | None = None,
    irc_listen: tuple[str, ...] | None = None,
) -> Config:
    """
    Apply command-line overrides on top of a configuration.

    @param config: What C{tap.ini} (or the defaults) said.
    @param telnet_listen: Telnet endpoints given on the command line, which
        replace those in C{tap.ini}; C{None} to keep them.
    @param web_listen: Likewise for the web door.
    @param admin_listen: Likewise for the admin door.
    @param ssh_listen: Likewise for the SSH door.
    @param irc_listen: Likewise for the IRC door.
    @return: The configuration in force.
    """
    if telnet_listen is not None:
        config = replace(config, telnet=replace(config.telnet, listen=telnet_listen))
    if web_listen is not None:
        config = replace(config, web=replace(config.web, listen=web_listen))
    if admin_listen is not None:
        config = replace(config, admin=replace(config.admin, listen=admin_listen))
    if ssh_listen is not None:
        config = replace(config, ssh=replace(config.ssh, listen=ssh_listen))
    if irc_listen is not None:
        config = replace(config, irc=replace(config.irc, listen=irc_listen))
    return config


def known_keys() -> dict[str, tuple[str, ...]]:
    """
    The sections and keys this version understands, for documentation tests.

    @return: Section name to its key names.
    """
    return {
        name: tuple(f.name for f in fields(cls)) for name, (cls, _) in _SECTIONS.items()
    }
