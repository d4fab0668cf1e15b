# -*- test-case-name: tests.test_cluster -*-
"""
Several tchat nodes that behave as one chat, through one Redis.

Only imported when C{[cluster] redis} is set (L{tchat.tap} chooses the
backplane once, at start): the embedded server never loads this package,
nor C{txredisapi}.

  - L{tchat.cluster.redis}: the connections to Redis (C{txredisapi}).
  - L{tchat.cluster.scripts}: the Lua scripts that keep nodes consistent.
  - L{tchat.cluster.wire}: what crosses the bus, as typed values.
  - L{tchat.cluster.roster}: nick claims, membership, the heartbeat's pairs.
  - L{tchat.cluster.backplane}: L{RedisBackplane}, the hub's backplane.
  - L{tchat.cluster.store}: history, sessions and bans in Redis.
"""

from typing import Any

from tchat.cluster.backplane import RedisBackplane
from tchat.cluster.redis import link_for
from tchat.cluster.store import RedisStore
from tchat.config import ClusterConfig, HistoryConfig

__all__ = ["RedisBackplane", "RedisStore", "redis_backplane"]


def redis_backplane(
    config: ClusterConfig, history: HistoryConfig, reactor: Any
) -> tuple[RedisBackplane, RedisStore]:
    """
    The backplane C{[cluster]} describes, and the store it keeps history
    in: the hub is given both.
    """
    link = link_for(config, reactor)
    store = RedisStore(link, history.keep, history.resume_ttl)
    return RedisBackplane(link, store, reactor, config.node_timeout), store
