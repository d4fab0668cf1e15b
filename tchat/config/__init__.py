# -*- test-case-name: tests.test_config -*-
"""
Reading and checking C{tap.ini}.

One section per concern, read with C{configparser} without interpolation,
checked against the keys this package knows, and turned into frozen objects.
Any mistake raises L{ConfigError} naming the section, the key and what is
wrong, so an operator never has to guess.

The package holds one module per section or small group of sections, each
with its dataclass and the parsers of its keys:

  - L{tchat.config._base}: L{ConfigError} and the value parsers the
    sections share;
  - L{tchat.config.server}: C{[server]}, C{[telnet]}, C{[web]}, C{[admin]}
    and C{[log]};
  - L{tchat.config.limits}: C{[limits]};
  - L{tchat.config.history}: C{[history]};
  - L{tchat.config.onion}: C{[onion]};
  - L{tchat.config.cluster}: C{[cluster]};
  - L{tchat.config.accounts}: C{[accounts]};
  - L{tchat.config.operators}: C{[operators]};
  - L{tchat.config.parse}: L{Config}, the whole, and reading it.

Everything is imported from here, as C{from tchat.config import X}.
"""

from tchat.config._base import ConfigError
from tchat.config.accounts import AccountsConfig
from tchat.config.cluster import ClusterConfig, RedisTarget
from tchat.config.history import HistoryConfig, SyncMode
from tchat.config.limits import LimitsConfig
from tchat.config.onion import OnionConfig, OnionDoor
from tchat.config.operators import OperatorsConfig
from tchat.config.parse import (
    Config,
    config_from_string,
    known_keys,
    load_config,
    with_overrides,
)
from tchat.config.server import (
    AdminConfig,
    IRCConfig,
    LogConfig,
    LogFormat,
    ServerConfig,
    SSHConfig,
    TelnetConfig,
    WebConfig,
)

__all__ = [
    "AccountsConfig",
    "AdminConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "HistoryConfig",
    "IRCConfig",
    "LimitsConfig",
    "LogConfig",
    "LogFormat",
    "OnionConfig",
    "OnionDoor",
    "OperatorsConfig",
    "RedisTarget",
    "SSHConfig",
    "ServerConfig",
    "SyncMode",
    "TelnetConfig",
    "WebConfig",
    "config_from_string",
    "known_keys",
    "load_config",
    "with_overrides",
]
