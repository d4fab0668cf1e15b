# -*- test-case-name: tests.test_stats -*-
"""
Statistics: what C{/stats} shows, to anyone or to operators, and what the
admin door's C{/stats} serves.
"""

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime

from tchat import events
from tchat.bans import BanList
from tchat.delivery import Delivery
from tchat.history import HistoryStore
from tchat.metrics import Metrics
from tchat.model import Directory, User
from tchat.seam import IBackplane
from tchat.text import describe_span


def rss_bytes() -> int:
    """
    The process's resident memory, from /proc (a memory read, not disk);
    0 where there is no /proc.
    """
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    import resource

    return pages * resource.getpagesize()


class Stats:
    """
    The figures of C{/stats}.

    @ivar started: When the hub was made.
    @ivar onion_status: The onion door's status, when there is one.
    """

    def __init__(
        self,
        directory: Directory,
        delivery: Delivery,
        backplane: IBackplane,
        bans: BanList,
        store: HistoryStore,
        metrics: Metrics,
        clock: IReactorTime,
    ) -> None:
        self._directory = directory
        self._delivery = delivery
        self._backplane = backplane
        self._bans = bans
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self.started = clock.seconds()
        self.onion_status: Callable[[], dict[str, Any]] | None = None

    def users_by_door(self) -> dict[str, int]:
        """How many users are connected through each door."""
        counts: dict[str, int] = {}
        for user in self._directory.users.values():
            counts[user.door] = counts.get(user.door, 0) + 1
        return counts

    def figures(self, full: bool = False) -> dict[str, Any]:
        """
        What C{/stats} shows: to anyone, or (C{full}) to operators and the
        admin door.
        """
        now = self._clock.seconds()
        m = self._metrics
        users = self._directory.users
        data: dict[str, Any] = {
            "server": self._directory.settings.server.name,
            "users": len(users),
            "rooms": len(self._directory.rooms),
            "uptime_seconds": round(now - self.started, 3),
            "messages_per_minute": {
                "1m": round(m.messages.per_minute(now, 60), 2),
                "15m": round(m.messages.per_minute(now, 900), 2),
            },
        }
        if full:
            data.update(
                users_by_door=self.users_by_door(),
                connections_total=dict(m.connections),
                messages_received=dict(m.received),
                messages_delivered=dict(m.delivered),
                operators_online=sum(1 for u in users.values() if u.operator),
                bans=len(self._bans),
                muted=sum(1 for u in users.values() if (u.muted_until or 0) > now),
                history_queue=self._store.queued,
                dropped=dict(m.dropped),
                rate_limited=dict(m.rate_limited),
                reloads=dict(m.reloads),
                last_reload_ok=m.last_reload_ok,
                rss_bytes=rss_bytes(),
            )
            if self.onion_status is not None:
                data["onion"] = self.onion_status()
            data.update(self._backplane.health().stats)
        return data

    def show(self, user: User) -> None:
        """C{/stats}: the figures as a listing for C{user}."""
        full = user.operator is not None
        data = self.figures(full)
        rates = data["messages_per_minute"]
        lines = [
            f"users: {data['users']}   rooms: {data['rooms']}   "
            f"up {describe_span(data['uptime_seconds'])}",
            f"messages per minute: {rates['1m']:g} (last minute), "
            f"{rates['15m']:g} (last 15 minutes)",
        ]
        if full:
            doors = ", ".join(
                f"{d} {n}" for d, n in sorted(data["users_by_door"].items())
            )
            lines += [
                f"users by door: {doors or 'none'}",
                "connections since start: "
                + ", ".join(f"{d} {n}" for d, n in data["connections_total"].items()),
                "messages received: "
                + ", ".join(f"{d} {n}" for d, n in data["messages_received"].items()),
                f"operators online: {data['operators_online']}   bans: "
                f"{data['bans']}   muted: {data['muted']}",
                f"history writes queued: {data['history_queue']}",
                f"reloads: {data['reloads']['ok']} ok, {data['reloads']['failed']} "
                "failed",
            ]
            if data["rss_bytes"]:
                lines.append(f"memory: {data['rss_bytes'] / 1048576:.1f} MiB")
            if "onion" in data:
                lines.append(f"onion: {data['onion'].get('state')}")
            lines += self._backplane.health().lines
        name = self._directory.settings.server.name
        listing = events.Listing("stats", f"{name} stats", tuple(lines), data)
        self._delivery.tell(user, listing)
