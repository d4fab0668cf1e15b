# -*- test-case-name: tests.test_admin -*-
"""
The admin door: health and metrics for operators, on a listener of its own.

It is never the public web site: bind it to loopback (or a private network)
and let a Prometheus server or a load balancer's health check reach it.
"""

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol, TypeVar

from prometheus_client import (
    CollectorRegistry,
    ProcessCollector,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from twisted.internet.interfaces import IReactorTime
from twisted.web import http
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

import tchat
from tchat.hub import ChatFactory
from tchat.metrics import DOORS, Histogram
from tchat.onion import STATES


class OnionStatus(Protocol):
    """
    The onion door as the admin door sees it.
    """

    def status(self) -> dict[str, Any]:
        """
        @return: A JSON-ready summary: C{state}, C{address},
            C{bootstrap_percent}, C{descriptor_uploads}, C{error},
            C{republished} and a C{self_test} dict.
        """


class _Vitals:
    """
    What the admin door reports, read afresh for every request.
    """

    def __init__(
        self, hub: ChatFactory, clock: IReactorTime, onion: OnionStatus | None
    ) -> None:
        self.hub, self.clock, self.onion = hub, clock, onion

    def uptime(self) -> float:
        """
        @return: Seconds since the hub was made.
        """
        return self.clock.seconds() - self.hub.concerns.stats.started

    def onion_status(self) -> dict[str, Any] | None:
        """
        @return: The onion door's status, or C{None} when it is not configured.
        """
        return None if self.onion is None else self.onion.status()


class _Collector(Collector):
    """
    Turns L{_Vitals} and the hub's L{Metrics} into Prometheus metrics at
    scrape time.

    It runs for every scrape, so it only reads counters the hub already
    keeps: nothing here walks history or touches the disk.
    """

    def __init__(self, vitals: _Vitals) -> None:
        self._vitals = vitals

    def collect(self) -> Iterator[Metric]:
        """
        @return: Every metric, read from the hub and onion door right now.
        """
        v = self._vitals
        hub = v.hub
        open_by_door = hub.concerns.stats.users_by_door()
        yield _labelled(
            GaugeMetricFamily(
                "tchat_users", "Users connected, by door.", labels=["door"]
            ),
            open_by_door,
            DOORS,
        )
        yield GaugeMetricFamily("tchat_rooms", "Rooms that exist.", hub.rooms)
        yield GaugeMetricFamily(
            "tchat_uptime_seconds", "Seconds since the hub started.", v.uptime()
        )
        yield GaugeMetricFamily(
            "tchat_ready", "1 once the hub has loaded its history.", int(hub.ready)
        )
        yield from self._traffic(open_by_door)
        yield from self._history()
        yield from self._control()
        yield from self._onion()
        # The other nodes of the chat, if any: their backplane says how.
        yield from hub.backplane.metrics()

    def _traffic(self, open_by_door: dict[str, int]) -> Iterator[Metric]:
        """
        @param open_by_door: Users connected now, by door.
        @return: Connections, messages and fan-out.
        """
        m = self._vitals.hub.metrics
        yield _labelled(
            GaugeMetricFamily(
                "tchat_connections_open",
                "Chat connections open now, by door: one per connected user.",
                labels=["door"],
            ),
            open_by_door,
            DOORS,
        )
        yield _labelled(
            CounterMetricFamily(
                "tchat_connections",
                "Chat connections accepted since the server started, by door.",
                labels=["door"],
            ),
            m.connections,
            DOORS,
        )
        yield _labelled(
            CounterMetricFamily(
                "tchat_messages_received",
                "Room and private messages users sent, by the sender's door.",
                labels=["door"],
            ),
            m.received,
            DOORS,
        )
        yield _labelled(
            CounterMetricFamily(
                "tchat_messages_delivered",
                "Room and private messages handed to recipients, by the "
                "recipient's door.",
                labels=["door"],
            ),
            m.delivered,
            DOORS,
        )
        yield _histogram(
            "tchat_fanout_seconds",
            "Seconds from the hub receiving a room message to writing it to "
            "its last recipient's transport.",
            m.fanout,
        )
        yield _labelled(
            CounterMetricFamily(
                "tchat_dropped",
                "Input refused and thrown away, by reason (such as muted, "
                "banned or oper-failed).",
                labels=["reason"],
            ),
            m.dropped,
        )
        yield _labelled(
            CounterMetricFamily(
                "tchat_rate_limited",
                "Requests refused by a rate limit, by reason (such as oper or "
                "oper-busy).",
                labels=["reason"],
            ),
            m.rate_limited,
        )
        yield CounterMetricFamily(
            "tchat_slow_consumer_disconnects",
            "Clients disconnected for not reading what they were sent.",
            m.slow_consumer_disconnects,
        )

    def _history(self) -> Iterator[Metric]:
        """
        @return: How the history store keeps up.
        """
        hub = self._vitals.hub
        yield _histogram(
            "tchat_history_write_seconds",
            "Seconds each batch of history writes took to commit.",
            hub.metrics.history_write,
        )
        yield GaugeMetricFamily(
            "tchat_history_queue_depth",
            "History writes queued or being committed now.",
            hub.store.queued,
        )

    def _control(self) -> Iterator[Metric]:
        """
        @return: Reloads, operator actions and bans.
        """
        hub = self._vitals.hub
        m = hub.metrics
        yield _labelled(
            CounterMetricFamily(
                "tchat_reloads",
                "Configuration reloads since the server started, by result.",
                labels=["result"],
            ),
            m.reloads,
            ("ok", "failed"),
        )
        # Before the first reload there is no success to report, and a 0
        # would page someone for a failure that never happened.
        if m.last_reload is not None:
            yield GaugeMetricFamily(
                "tchat_last_reload_success",
                "1 if the last configuration reload succeeded, 0 if it "
                "failed; absent until the first reload.",
                int(bool(m.last_reload_ok)),
            )
            yield GaugeMetricFamily(
                "tchat_last_reload_timestamp_seconds",
                "When the last configuration reload was tried, in seconds "
                "since the epoch; absent until the first reload.",
                m.last_reload,
            )
        yield _labelled(
            CounterMetricFamily(
                "tchat_operator_actions",
                "Operator commands carried out, by command.",
                labels=["action"],
            ),
            m.operator_actions,
        )
        yield GaugeMetricFamily("tchat_bans", "Bans in force now.", hub.bans)

    def _onion(self) -> Iterator[Metric]:
        """
        @return: The onion service's state, when there is an onion door.
        """
        onion = self._vitals.onion_status()
        if onion is None:
            return
        state, test = onion["state"], onion["self_test"]
        yield GaugeMetricFamily(
            "tchat_onion_up",
            "1 when the onion service is published.",
            int(state == "up"),
        )
        states = GaugeMetricFamily(
            "tchat_onion_state",
            "The onion service's state: 1 for the current one.",
            labels=["state"],
        )
        for name in STATES:
            states.add_metric([name], int(name == state))
        yield states
        yield GaugeMetricFamily(
            "tchat_onion_bootstrap_percent",
            "How far Tor has bootstrapped, 0 to 100.",
            onion["bootstrap_percent"],
        )
        yield CounterMetricFamily(
            "tchat_onion_descriptor_uploads",
            "Onion service descriptors uploaded to directories.",
            onion["descriptor_uploads"],
        )
        if test["reachable"] is not None:
            yield GaugeMetricFamily(
                "tchat_onion_reachable",
                "1 when the last self-test reached the onion address over Tor.",
                int(test["reachable"]),
            )
        if test["rtt_seconds"] is not None:
            yield GaugeMetricFamily(
                "tchat_onion_self_test_rtt_seconds",
                "Round trip of the last successful self-test, in seconds.",
                test["rtt_seconds"],
            )
        tests = CounterMetricFamily(
            "tchat_onion_self_tests",
            "Self-tests of the onion address, by result.",
            labels=["result"],
        )
        tests.add_metric(["ok"], test["checks"] - test["failures"])
        tests.add_metric(["failed"], test["failures"])
        yield tests
        yield CounterMetricFamily(
            "tchat_onion_republished",
            "Times failed self-tests had the onion service published again.",
            onion["republished"],
        )


_Family = TypeVar("_Family", GaugeMetricFamily, CounterMetricFamily)


def _labelled(
    family: _Family, values: Mapping[str, float], always: Iterable[str] = ()
) -> _Family:
    """
    Add one sample per label value to a family with one label.

    @param values: The samples, by label value.
    @param always: Label values to export even when missing from C{values}
        (as 0), so that dashboards show a line for each; first, in order.
    @return: C{family}.
    """
    for key in dict.fromkeys((*always, *values)):
        family.add_metric([key], values.get(key, 0))
    return family


def _histogram(name: str, documentation: str, histogram: Histogram) -> Metric:
    """
    @return: C{histogram} as a Prometheus histogram called C{name}.
    """
    return HistogramMetricFamily(
        name, documentation, buckets=histogram.cumulative(), sum_value=histogram.sum
    )


class _Tree(Resource):
    """
    A resource whose unknown children get a plain-text 404, not Twisted's
    HTML page.
    """

    def getChild(self, path: bytes, request: Request) -> IResource:
        return _NotFound()


class _Page(_Tree):
    """
    One admin page: GET and HEAD only, and nothing below it.
    """

    content_type = b"text/plain; charset=utf-8"

    def render(self, request: Request) -> bytes:
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(http.NOT_ALLOWED)
            request.setHeader(b"Allow", b"GET, HEAD")
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"Only GET and HEAD are allowed here.\n"
        request.setHeader(b"Content-Type", self.content_type)
        request.setHeader(b"Cache-Control", b"no-store")
        return _reply(request, self.page(request))

    def page(self, request: Request) -> bytes:
        """
        @return: The body of a GET; set the response code on C{request}.
        """
        raise NotImplementedError


class _NotFound(Resource):
    """
    A plain-text 404 for whatever is asked of it.
    """

    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(http.NOT_FOUND)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return _reply(request, b"Not found. Try /healthz, /stats or /metrics.\n")


class _Index(_Page):
    """
    C{/}: what the admin door serves.
    """

    def page(self, request: Request) -> bytes:
        return (
            b"tchat admin\n"
            b"/healthz  health check: 200 when serving, 503 otherwise\n"
            b"/stats    users, rooms, traffic, history, reloads and onion "
            b"status as JSON\n"
            b"/metrics  the same and more (latency, process) for Prometheus\n"
        )


class _JSONPage(_Page):
    """
    A page of JSON about the running server.
    """

    content_type = b"application/json; charset=utf-8"

    def __init__(self, vitals: _Vitals) -> None:
        super().__init__()
        self._vitals = vitals


class _Health(_JSONPage):
    """
    C{/healthz}: 200 while the chat serves, 503 while the hub is starting
    or the onion service is down, and 503 "degraded" while the chat serves
    but not all of it works: the cluster cannot be reached, or the history
    cannot be written (the C{history} check, present only then, names
    why).  A bootstrapping onion is not a failure.
    """

    def page(self, request: Request) -> bytes:
        hub = self._vitals.hub
        checks = {"hub": "ok" if hub.ready else "starting"}
        onion = self._vitals.onion_status()
        if onion is not None:
            checks["onion"] = onion["state"]
        health = hub.backplane.health()
        checks.update(health.checks)
        history = hub.store.health()
        if history is not None:
            checks["history"] = history
        # A down onion is the worse news, so it wins over a starting hub.
        if checks.get("onion") == "down":
            status = "down"
        elif not hub.ready:
            status = "starting"
        elif health.degraded or history is not None:
            status = "degraded"
        else:
            status = "ok"
        if status != "ok":
            request.setResponseCode(http.SERVICE_UNAVAILABLE)
        return _json({"status": status, "checks": checks})


class _Stats(_JSONPage):
    """
    C{/stats}: what operators see with C{/stats} in the chat, the version,
    and the onion door's status (C{null} without one), for people and
    scripts.
    """

    def page(self, request: Request) -> bytes:
        vitals = self._vitals
        stats = vitals.hub.concerns.stats.figures(full=True)
        # Name and version first, for whoever reads it by eye.
        return _json(
            {
                "server": stats.pop("server"),
                "version": tchat.__version__,
                **stats,
                "uptime_seconds": vitals.uptime(),
                "onion": vitals.onion_status(),
            }
        )


class _Metrics(_Page):
    """
    C{/metrics}: the Prometheus text exposition of one registry.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def page(self, request: Request) -> bytes:
        # The format the scraper asks for (OpenMetrics, or the classic
        # text format that every Prometheus version reads).
        accept = request.getHeader(b"accept")
        encode, content_type = choose_encoder(
            accept.decode("latin-1") if accept else ""
        )
        request.setHeader(b"Content-Type", content_type.encode("ascii"))
        return bytes(encode(self._registry))


def _reply(request: Request, body: bytes) -> bytes:
    """
    @return: C{body}, or for a HEAD nothing, with C{body}'s length set:
        Twisted logs a warning for each HEAD whose resource returns a body.
    """
    if request.method == b"HEAD":
        request.setHeader(b"Content-Length", b"%d" % (len(body),))
        return b""
    return body


def _json(value: dict[str, Any]) -> bytes:
    """
    @return: C{value} as a line of UTF-8 JSON.
    """
    return json.dumps(value).encode("utf-8") + b"\n"


class AdminSite(Site):
    """
    A L{Site} that writes no access log: Prometheus scrapes every few
    seconds, and a line for each scrape would drown the chat's own log.
    """

    def log(self, request: http.Request) -> None:
        """
        Write nothing; L{http.HTTPFactory.log} would write a line per request.
        """


def make_admin_site(
    hub: ChatFactory, clock: IReactorTime, onion: OnionStatus | None = None
) -> Site:
    """
    Build the admin door's web site.

    @param hub: The chat hub to report on.
    @param clock: Measures uptime and times out idle connections.
    @param onion: The onion door, or C{None} when it is not configured.
    @return: A site serving C{/}, C{/healthz}, C{/stats} and C{/metrics}.
    """
    vitals = _Vitals(hub, clock, onion)
    # A registry per site, never the global one, so that each site (and
    # each test) counts only its own hub.
    registry = CollectorRegistry()
    registry.register(_Collector(vitals))
    ProcessCollector(registry=registry)
    root = _Tree()
    root.putChild(b"", _Index())
    root.putChild(b"healthz", _Health(vitals))
    root.putChild(b"stats", _Stats(vitals))
    root.putChild(b"metrics", _Metrics(registry))
    return AdminSite(root, reactor=clock)
