# -*- test-case-name: tests.test_metrics -*-
"""
What the hub counts while it runs, for the admin door and C{/stats}.

Counting happens on the hot path, so it is plain integer arithmetic on
plain attributes: no locks (one reactor thread), no Prometheus objects.
The admin door turns these into metrics when it is scraped.
"""

from bisect import bisect_left
from collections import deque

DOORS = ("telnet", "web", "ssh", "irc", "onion")

# Fan-out: from the hub taking a message to the last transport write.
FANOUT_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)

# One history batch's transaction, in the writer thread.
WRITE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Histogram:
    """
    A fixed-bucket histogram, in the shape Prometheus wants.

    @ivar buckets: Upper bounds, ascending; an implicit C{+Inf} follows.
    @ivar counts: Observations per bucket (not cumulative), one more than
        C{buckets} for C{+Inf}.
    """

    __slots__ = ("buckets", "count", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """
        Record one observation.
        """
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """
        @return: (upper bound as Prometheus writes it, observations at or
            below it) for each bucket, ending with C{+Inf}.
        """
        result, total = [], 0
        for bound, count in zip(
            (*self.buckets, float("inf")), self.counts, strict=True
        ):
            total += count
            result.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return result


class Rate:
    """
    Events per minute over a sliding window, kept in 10-second slots.
    """

    SLOT = 10.0

    def __init__(self, window: float = 900.0) -> None:
        self._slots: deque[list[float]] = deque()
        self._window = window

    def record(self, now: float) -> None:
        """
        Count one event at C{now}.
        """
        slot = now - now % self.SLOT
        slots = self._slots
        if slots and slots[-1][0] == slot:
            slots[-1][1] += 1
        else:
            slots.append([slot, 1])
            while slots[0][0] <= now - self._window - self.SLOT:
                slots.popleft()

    def per_minute(self, now: float, seconds: float) -> float:
        """
        @return: The average rate per minute over the last C{seconds}
            (whole slots).
        """
        since = now - seconds
        total = sum(count for start, count in self._slots if start >= since)
        return total * 60.0 / seconds


class Metrics:
    """
    The hub's counters.

    @ivar connections: Connections accepted, by door, since start.
    @ivar received: Room and private messages users sent, by door.
    @ivar delivered: Room and private messages written to users, by
        their door.
    @ivar fanout: Seconds from the hub taking a message to the write to
        its last recipient.
    @ivar history_write: Seconds per history batch transaction.
    @ivar dropped: Input refused and thrown away, by reason (an over-long
        line, a malformed frame, a muted user's message, ...).
    @ivar rate_limited: Requests refused by a rate limit, by reason.
    @ivar slow_consumer_disconnects: Clients cut off for not reading.
    @ivar reloads: Configuration reloads, by result (C{ok}, C{failed}).
    @ivar last_reload: When the last reload was tried (C{None}: never),
        and C{last_reload_ok} whether it succeeded.
    @ivar operator_actions: Operator commands carried out, by command.
    @ivar messages: The rate of room messages, for C{/stats}.
    """

    def __init__(self) -> None:
        self.connections = dict.fromkeys(DOORS, 0)
        self.received = dict.fromkeys(DOORS, 0)
        self.delivered = dict.fromkeys(DOORS, 0)
        self.fanout = Histogram(FANOUT_BUCKETS)
        self.history_write = Histogram(WRITE_BUCKETS)
        self.dropped: dict[str, int] = {}
        self.rate_limited: dict[str, int] = {}
        self.slow_consumer_disconnects = 0
        self.reloads = {"ok": 0, "failed": 0}
        self.last_reload: float | None = None
        self.last_reload_ok: bool | None = None
        self.operator_actions: dict[str, int] = {}
        self.messages = Rate()

    def connected(self, door: str) -> None:
        """
        Count one connection accepted through C{door}.
        """
        self.connections[door] = self.connections.get(door, 0) + 1

    def received_from(self, door: str) -> None:
        """
        Count one room or private message sent by a user of C{door}.
        """
        self.received[door] = self.received.get(door, 0) + 1

    def drop(self, reason: str) -> None:
        """
        Count one input thrown away for C{reason}.
        """
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def limit(self, reason: str) -> None:
        """
        Count one request refused by the rate limit C{reason}.
        """
        self.rate_limited[reason] = self.rate_limited.get(reason, 0) + 1

    def reloaded(self, now: float, ok: bool) -> None:
        """
        Count one configuration reload.
        """
        self.reloads["ok" if ok else "failed"] += 1
        self.last_reload, self.last_reload_ok = now, ok

    def operator_action(self, command: str) -> None:
        """
        Count one operator command carried out.
        """
        self.operator_actions[command] = self.operator_actions.get(command, 0) + 1
