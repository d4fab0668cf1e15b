# -*- test-case-name: tests.test_admin -*-
"""
Tests for L{tchat.admin}: the operators' health and metrics door.

Requests go through the real L{twisted.web.server.Site} on a
L{StringTransport}: no sockets and no real time.
"""

import json
import os
import random
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site
from zope.interface import provider

import tchat
from tchat.admin import make_admin_site
from tchat.commands import Ban, Msg, Mute, Oper, Say
from tchat.config import HistoryConfig, OperatorsConfig, ServerConfig
from tchat.history import MemoryStore
from tchat.hub import ChatFactory
from tchat.metrics import FANOUT_BUCKETS
from tchat.oper import OPER_FAILURES
from tests.support import QuietParticipant, Scrape, request

PASSWORD = "right"


def _verify(password: str, encoded: str | None) -> Deferred[bool]:
    """
    A password check without the hashing, so the tests stay fast.
    """
    return succeed(encoded == "stored" and password == PASSWORD)


class _BusyStore(MemoryStore):
    """
    History with writes waiting, as an SQLite store has under load.
    """

    queued = 7


class _FaultyStore(MemoryStore):
    """
    History the disk refuses, as an SQLite store reports it (see
    L{tchat.history.SQLiteStore.health}).
    """

    fault: str | None = "disk-full"

    def health(self) -> str | None:
        return self.fault


class _Onion:
    """
    An onion door whose status the test sets.
    """

    def __init__(self, state: str = "up") -> None:
        self.state: dict[str, Any] = {
            "state": state,
            "address": "abc.onion" if state == "up" else None,
            "bootstrap_percent": 100 if state == "up" else 40,
            "descriptor_uploads": 3,
            "error": None,
            "republished": 2,
            "self_test": {
                "reachable": None,
                "rtt_seconds": None,
                "checked_at": None,
                "checks": 0,
                "failures": 0,
                "consecutive_failures": 0,
            },
        }

    def status(self) -> dict[str, Any]:
        return self.state


class AdminTestCase(SynchronousTestCase):
    """
    A started hub with two telnet users, one web user and one onion user.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.hub = ChatFactory(
            ServerConfig(reconnect_grace=0, name="testchat"),
            self.clock,
            random.Random(1),
            operators=OperatorsConfig((("root", "stored"),)),
            verify=_verify,
        )
        self.successResultOf(self.hub.start())
        self.users = [
            self.hub.connect(QuietParticipant(door))
            for door in ("telnet", "telnet", "web", "onion")
        ]

    def get_json(self, site: Site, path: bytes) -> tuple[int, Any]:
        """
        @return: The status code and the decoded JSON body of a GET.
        """
        code, headers, body = request(site, path)
        self.assertEqual(headers[b"content-type"], b"application/json; charset=utf-8")
        return code, json.loads(body)

    def metrics(self, site: Site) -> str:
        """
        @return: The text of C{/metrics}.
        """
        code, headers, body = request(site, b"/metrics")
        self.assertEqual(code, 200)
        self.assertEqual(
            headers[b"content-type"], b"text/plain; version=0.0.4; charset=utf-8"
        )
        return body.decode("utf-8")

    def scrape(self, site: Site) -> Scrape:
        """
        @return: C{/metrics}, parsed.
        """
        return Scrape(self.metrics(site))


class HealthTests(AdminTestCase):
    """
    C{/healthz}, which load balancers and monitors poll.
    """

    def test_ok(self) -> None:
        """
        A ready hub without an onion door is healthy: 200, status ok, no
        onion check, and the answer must not be cached.
        """
        code, headers, body = request(
            make_admin_site(self.hub, self.clock), b"/healthz"
        )
        self.assertEqual(code, 200)
        self.assertEqual(headers[b"cache-control"], b"no-store")
        self.assertEqual(json.loads(body), {"status": "ok", "checks": {"hub": "ok"}})

    def test_starting(self) -> None:
        """
        Until the hub has loaded its history the check answers 503
        "starting", and 200 once it has.
        """
        hub = ChatFactory(ServerConfig(reconnect_grace=0), self.clock)
        site = make_admin_site(hub, self.clock)
        self.assertEqual(
            self.get_json(site, b"/healthz"),
            (503, {"status": "starting", "checks": {"hub": "starting"}}),
        )
        self.successResultOf(hub.start())
        self.assertEqual(self.get_json(site, b"/healthz")[0], 200)

    def test_onion_not_yet_up(self) -> None:
        """
        An onion service still bootstrapping or publishing is not a failure:
        200, with its state shown under checks.
        """
        onion = _Onion("bootstrapping")
        site = make_admin_site(self.hub, self.clock, onion)
        for state in ("bootstrapping", "publishing", "up"):
            onion.state["state"] = state
            self.assertEqual(
                self.get_json(site, b"/healthz"),
                (200, {"status": "ok", "checks": {"hub": "ok", "onion": state}}),
            )

    def test_onion_down(self) -> None:
        """
        A down onion service makes the check fail with 503 "down", even
        while the hub is still starting.
        """
        site = make_admin_site(self.hub, self.clock, _Onion("down"))
        self.assertEqual(
            self.get_json(site, b"/healthz"),
            (503, {"status": "down", "checks": {"hub": "ok", "onion": "down"}}),
        )
        starting = make_admin_site(
            ChatFactory(ServerConfig(reconnect_grace=0), self.clock),
            self.clock,
            _Onion("down"),
        )
        code, body = self.get_json(starting, b"/healthz")
        self.assertEqual((code, body["status"]), (503, "down"))


class HistoryHealthTests(SynchronousTestCase):
    """
    C{/healthz} while the history store cannot write: the chat still
    serves, but not all of it works.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = _FaultyStore(HistoryConfig())
        self.hub = ChatFactory(
            ServerConfig(reconnect_grace=0), self.clock, store=self.store
        )
        self.successResultOf(self.hub.start())

    def health(self, site: Site) -> tuple[int, Any]:
        code, _, body = request(site, b"/healthz")
        return code, json.loads(body)

    def test_degraded(self) -> None:
        """
        A store that reports a fault makes C{/healthz} answer 503
        "degraded", naming the fault in a C{history} check; once the store
        is well again the check is gone and the answer is 200 ok.
        """
        site = make_admin_site(self.hub, self.clock)
        self.assertEqual(
            self.health(site),
            (
                503,
                {
                    "status": "degraded",
                    "checks": {"hub": "ok", "history": "disk-full"},
                },
            ),
        )
        self.store.fault = None
        self.assertEqual(
            self.health(site), (200, {"status": "ok", "checks": {"hub": "ok"}})
        )

    def test_worse_news_wins(self) -> None:
        """
        A down onion service is still "down", and a starting hub still
        "starting", whatever the history says; the history check is shown
        with them.
        """
        self.store.fault = "deleted"
        code, body = self.health(make_admin_site(self.hub, self.clock, _Onion("down")))
        self.assertEqual((code, body["status"]), (503, "down"))
        self.assertEqual(body["checks"]["history"], "deleted")
        starting = ChatFactory(
            ServerConfig(reconnect_grace=0), self.clock, store=self.store
        )
        code, body = self.health(make_admin_site(starting, self.clock))
        self.assertEqual((code, body["status"]), (503, "starting"))

    def test_memory_store_never_faulty(self) -> None:
        """
        History in memory never reports a fault.
        """
        self.assertIsNone(MemoryStore(HistoryConfig()).health())


class StatsTests(AdminTestCase):
    """
    C{/stats}, a JSON summary for people.
    """

    def test_contents(self) -> None:
        """
        Stats name the server and version, count users by door and rooms,
        and carry the hub's full statistics (what operators see with
        C{/stats}); uptime follows the clock; without an onion door, onion
        is null.
        """
        site = make_admin_site(self.hub, self.clock)
        self.clock.advance(90)
        code, stats = self.get_json(site, b"/stats")
        self.assertEqual(code, 200)
        rss = stats.pop("rss_bytes")
        self.assertIsInstance(rss, int)
        if os.path.exists("/proc/self/statm"):
            self.assertGreater(rss, 0)
        self.assertEqual(
            stats,
            {
                "server": "testchat",
                "version": tchat.__version__,
                "uptime_seconds": 90.0,
                "users": 4,
                "users_by_door": {"telnet": 2, "web": 1, "onion": 1},
                "rooms": 1,
                "messages_per_minute": {"1m": 0.0, "15m": 0.0},
                "connections_total": {
                    "telnet": 2,
                    "web": 1,
                    "ssh": 0,
                    "irc": 0,
                    "onion": 1,
                },
                "messages_received": {
                    "telnet": 0,
                    "web": 0,
                    "ssh": 0,
                    "irc": 0,
                    "onion": 0,
                },
                "messages_delivered": {
                    "telnet": 0,
                    "web": 0,
                    "ssh": 0,
                    "irc": 0,
                    "onion": 0,
                },
                "operators_online": 0,
                "bans": 0,
                "muted": 0,
                "history_queue": 0,
                "dropped": {},
                "rate_limited": {},
                "reloads": {"ok": 0, "failed": 0},
                "last_reload_ok": None,
                "onion": None,
            },
        )
        self.assertEqual(list(stats)[:2], ["server", "version"])
        self.clock.advance(10)
        self.assertEqual(self.get_json(site, b"/stats")[1]["uptime_seconds"], 100.0)

    def test_traffic(self) -> None:
        """
        Messages show up in the stats as they happen: received by the
        sender's door, delivered by each recipient's, and in the rate.
        """
        site = make_admin_site(self.hub, self.clock)
        self.hub.execute(self.users[2], Say("hi"))
        self.hub.metrics.reloaded(self.clock.seconds(), False)
        stats = self.get_json(site, b"/stats")[1]
        self.assertEqual(
            stats["messages_received"],
            {"telnet": 0, "web": 1, "ssh": 0, "irc": 0, "onion": 0},
        )
        self.assertEqual(
            stats["messages_delivered"],
            {"telnet": 2, "web": 1, "ssh": 0, "irc": 0, "onion": 1},
        )
        self.assertEqual(stats["messages_per_minute"]["1m"], 1.0)
        self.assertEqual(stats["reloads"], {"ok": 0, "failed": 1})
        self.assertIs(stats["last_reload_ok"], False)

    def test_onion(self) -> None:
        """
        With an onion door, stats carry its status as it is now.
        """
        onion = _Onion("publishing")
        site = make_admin_site(self.hub, self.clock, onion)
        self.assertEqual(self.get_json(site, b"/stats")[1]["onion"], onion.state)
        onion.state = _Onion("up").state
        self.assertEqual(
            self.get_json(site, b"/stats")[1]["onion"]["address"], "abc.onion"
        )


class MetricsTests(AdminTestCase):
    """
    C{/metrics}, scraped by Prometheus.
    """

    def test_chat(self) -> None:
        """
        Users by door (every door, even with nobody in it), rooms, uptime and
        readiness are exported, and no onion metrics without an onion door.
        """
        self.hub.disconnect(self.users[0], "test")
        site = make_admin_site(self.hub, self.clock)
        self.clock.advance(5)
        text = self.metrics(site)
        self.assertIn('tchat_users{door="onion"} 1.0\n', text)
        self.assertIn('tchat_users{door="web"} 1.0\n', text)
        self.assertIn('tchat_users{door="telnet"} 1.0\n', text)
        self.assertIn("tchat_rooms 1.0\n", text)
        self.assertIn("tchat_uptime_seconds 5.0\n", text)
        self.assertIn("tchat_ready 1.0\n", text)
        self.assertIn("# HELP tchat_users ", text)
        self.assertNotIn("tchat_onion", text)

    def test_empty_doors(self) -> None:
        """
        A door nobody uses still reports 0, so dashboards show a line; a
        hub not yet ready reports tchat_ready 0.
        """
        hub = ChatFactory(ServerConfig(reconnect_grace=0), self.clock)
        text = self.metrics(make_admin_site(hub, self.clock))
        for door in ("telnet", "web", "onion"):
            self.assertIn(f'tchat_users{{door="{door}"}} 0.0\n', text)
        self.assertIn("tchat_ready 0.0\n", text)

    def test_onion(self) -> None:
        """
        The onion door's state (one-hot), bootstrap progress, uploads,
        republishes and self-test results are exported.
        """
        onion = _Onion("up")
        onion.state["self_test"].update(
            reachable=True, rtt_seconds=2.5, checked_at=1.0, checks=5, failures=1
        )
        text = self.metrics(make_admin_site(self.hub, self.clock, onion))
        for line in [
            "tchat_onion_up 1.0",
            'tchat_onion_state{state="up"} 1.0',
            'tchat_onion_state{state="starting"} 0.0',
            'tchat_onion_state{state="bootstrapping"} 0.0',
            'tchat_onion_state{state="publishing"} 0.0',
            'tchat_onion_state{state="down"} 0.0',
            "tchat_onion_bootstrap_percent 100.0",
            "tchat_onion_descriptor_uploads_total 3.0",
            "tchat_onion_reachable 1.0",
            "tchat_onion_self_test_rtt_seconds 2.5",
            'tchat_onion_self_tests_total{result="ok"} 4.0',
            'tchat_onion_self_tests_total{result="failed"} 1.0',
            "tchat_onion_republished_total 2.0",
        ]:
            self.assertIn(line + "\n", text)

    def test_onion_unchecked(self) -> None:
        """
        Before the first self-test there is no reachability or round trip to
        report, so those series are absent rather than a misleading 0.
        """
        text = self.metrics(
            make_admin_site(self.hub, self.clock, _Onion("bootstrapping"))
        )
        self.assertIn("tchat_onion_up 0.0\n", text)
        self.assertIn('tchat_onion_state{state="bootstrapping"} 1.0\n', text)
        self.assertIn('tchat_onion_self_tests_total{result="ok"} 0.0\n', text)
        self.assertNotIn("tchat_onion_reachable", text)
        self.assertNotIn("tchat_onion_self_test_rtt_seconds", text)

    def test_onion_unreachable(self) -> None:
        """
        A failed self-test is exported as tchat_onion_reachable 0.
        """
        onion = _Onion("up")
        onion.state["self_test"].update(reachable=False, checks=1, failures=1)
        text = self.metrics(make_admin_site(self.hub, self.clock, onion))
        self.assertIn("tchat_onion_reachable 0.0\n", text)
        self.assertIn('tchat_onion_self_tests_total{result="failed"} 1.0\n', text)

    def test_parses(self) -> None:
        """
        The whole exposition parses as Prometheus text, with every family
        of the chat under its documented name and type, and process CPU
        and memory where the platform has them.
        """
        self.hub.metrics.reloaded(self.clock.seconds(), True)
        scrape = self.scrape(make_admin_site(self.hub, self.clock, _Onion()))
        types = {name: family.type for name, family in scrape.families.items()}
        expected = {
            "tchat_users": "gauge",
            "tchat_rooms": "gauge",
            "tchat_uptime_seconds": "gauge",
            "tchat_ready": "gauge",
            "tchat_connections_open": "gauge",
            "tchat_connections": "counter",
            "tchat_messages_received": "counter",
            "tchat_messages_delivered": "counter",
            "tchat_fanout_seconds": "histogram",
            "tchat_dropped": "counter",
            "tchat_rate_limited": "counter",
            "tchat_slow_consumer_disconnects": "counter",
            "tchat_history_write_seconds": "histogram",
            "tchat_history_queue_depth": "gauge",
            "tchat_reloads": "counter",
            "tchat_last_reload_success": "gauge",
            "tchat_last_reload_timestamp_seconds": "gauge",
            "tchat_operator_actions": "counter",
            "tchat_bans": "gauge",
            "tchat_onion_up": "gauge",
            "tchat_onion_self_tests": "counter",
        }
        self.assertEqual({name: types.get(name) for name in expected}, expected)
        for name in expected:
            documentation = scrape.families[name].documentation
            self.assertTrue(documentation.endswith("."), name)
        if os.path.exists("/proc/self/stat"):
            self.assertGreater(scrape.value("process_resident_memory_bytes"), 0)
            self.assertGreaterEqual(scrape.value("process_cpu_seconds_total"), 0)

    def test_sites_independent(self) -> None:
        """
        Each site counts only its own hub: many sites (and many tests) can
        exist in one process without clashing in a shared registry.
        """
        first = make_admin_site(self.hub, self.clock)
        second = make_admin_site(
            ChatFactory(ServerConfig(reconnect_grace=0), self.clock), self.clock
        )
        self.assertIn('tchat_users{door="web"} 1.0\n', self.metrics(first))
        self.assertIn('tchat_users{door="web"} 0.0\n', self.metrics(second))


class TrafficMetricsTests(AdminTestCase):
    """
    Connections and messages in C{/metrics}, as an operator watching
    Prometheus sees the chat's load.
    """

    def test_connections(self) -> None:
        """
        Open connections go down when someone leaves, while the total
        accepted per door only grows; every door has a series.
        """
        site = make_admin_site(self.hub, self.clock)
        self.hub.disconnect(self.users[0], "test")
        self.hub.connect(QuietParticipant("web"))
        scrape = self.scrape(site)
        self.assertEqual(
            scrape.by_label("tchat_connections_open", "door"),
            {"telnet": 1.0, "web": 2.0, "ssh": 0.0, "irc": 0.0, "onion": 1.0},
        )
        self.assertEqual(
            scrape.by_label("tchat_connections_total", "door"),
            {"telnet": 2.0, "web": 2.0, "ssh": 0.0, "irc": 0.0, "onion": 1.0},
        )

    def test_messages(self) -> None:
        """
        A message counts once as received, by the sender's door, and once
        per copy written as delivered, by each recipient's door: for a room
        message one per member, for a private message the recipient's and
        the sender's own copy.
        """
        site = make_admin_site(self.hub, self.clock)
        before = self.scrape(site)
        self.assertEqual(
            before.by_label("tchat_messages_received_total", "door"),
            {"telnet": 0.0, "web": 0.0, "ssh": 0.0, "irc": 0.0, "onion": 0.0},
        )
        telnet, _, web, onion = self.users
        self.hub.execute(telnet, Say("hi"))
        self.hub.execute(onion, Msg(web.nick, "psst"))
        scrape = self.scrape(site)
        self.assertEqual(
            scrape.by_label("tchat_messages_received_total", "door"),
            {"telnet": 1.0, "web": 0.0, "ssh": 0.0, "irc": 0.0, "onion": 1.0},
        )
        self.assertEqual(
            scrape.by_label("tchat_messages_delivered_total", "door"),
            {"telnet": 2.0, "web": 2.0, "ssh": 0.0, "irc": 0.0, "onion": 2.0},
        )

    def test_fanout(self) -> None:
        """
        Each room message delivered is one fan-out observation, in
        cumulative buckets with the hub's bounds; private messages are not
        fanned out.
        """
        site = make_admin_site(self.hub, self.clock)
        self.assertEqual(self.scrape(site).value("tchat_fanout_seconds_count"), 0)
        self.hub.execute(self.users[0], Say("one"))
        self.hub.execute(self.users[2], Say("two"))
        self.hub.execute(self.users[3], Msg(self.users[2].nick, "psst"))
        scrape = self.scrape(site)
        self.assertEqual(scrape.value("tchat_fanout_seconds_count"), 2)
        total = scrape.value("tchat_fanout_seconds_sum")
        self.assertTrue(0 <= total < 2, total)
        buckets = scrape.by_label("tchat_fanout_seconds_bucket", "le")
        self.assertEqual(
            list(buckets), [repr(bound) for bound in FANOUT_BUCKETS] + ["+Inf"]
        )
        counts = list(buckets.values())
        self.assertEqual(counts, sorted(counts))
        self.assertEqual(counts[-1], 2)

    def test_slow_consumers(self) -> None:
        """
        Clients cut off for not reading are counted.
        """
        site = make_admin_site(self.hub, self.clock)
        self.assertEqual(
            self.scrape(site).value("tchat_slow_consumer_disconnects_total"), 0
        )
        self.hub.metrics.slow_consumer_disconnects += 1
        self.assertEqual(
            self.scrape(site).value("tchat_slow_consumer_disconnects_total"), 1
        )


class HistoryMetricsTests(AdminTestCase):
    """
    How the history store keeps up, in C{/metrics}.
    """

    def test_write_latency(self) -> None:
        """
        Each batch the store commits is one observation of
        C{tchat_history_write_seconds}, in the right bucket.
        """
        site = make_admin_site(self.hub, self.clock)
        self.assertEqual(
            self.scrape(site).value("tchat_history_write_seconds_count"), 0
        )
        observe = self.hub.store.observe_write
        assert observe is not None
        observe(0.003)
        scrape = self.scrape(site)
        self.assertEqual(scrape.value("tchat_history_write_seconds_count"), 1)
        self.assertEqual(scrape.value("tchat_history_write_seconds_sum"), 0.003)
        self.assertEqual(
            scrape.value("tchat_history_write_seconds_bucket", le="0.0025"), 0
        )
        self.assertEqual(
            scrape.value("tchat_history_write_seconds_bucket", le="0.005"), 1
        )

    def test_queue_depth(self) -> None:
        """
        The store's queue of writes not yet committed is a gauge: 0 for an
        idle store, and what the store says when writes are waiting.
        """
        idle = self.scrape(make_admin_site(self.hub, self.clock))
        self.assertEqual(idle.value("tchat_history_queue_depth"), 0)
        busy = ChatFactory(
            ServerConfig(reconnect_grace=0),
            self.clock,
            store=_BusyStore(HistoryConfig()),
        )
        scrape = self.scrape(make_admin_site(busy, self.clock))
        self.assertEqual(scrape.value("tchat_history_queue_depth"), 7)


class ControlMetricsTests(AdminTestCase):
    """
    Reloads, refusals and operators' actions in C{/metrics}.
    """

    def test_reloads(self) -> None:
        """
        Before any reload there is no last-reload success or time (rather
        than a 0 that would look like a failure); after one, a failed
        reload shows 0 and its time, and a later good one 1.
        """
        site = make_admin_site(self.hub, self.clock)
        scrape = self.scrape(site)
        self.assertEqual(
            scrape.by_label("tchat_reloads_total", "result"),
            {"ok": 0.0, "failed": 0.0},
        )
        self.assertNotIn("tchat_last_reload_success", scrape.families)
        self.assertNotIn("tchat_last_reload_timestamp_seconds", scrape.families)

        failed_at = self.clock.seconds()
        self.hub.metrics.reloaded(failed_at, False)
        scrape = self.scrape(site)
        self.assertEqual(scrape.value("tchat_last_reload_success"), 0)
        self.assertEqual(scrape.value("tchat_last_reload_timestamp_seconds"), failed_at)
        self.assertEqual(scrape.value("tchat_reloads_total", result="failed"), 1)

        self.clock.advance(60)
        self.hub.metrics.reloaded(self.clock.seconds(), True)
        scrape = self.scrape(site)
        self.assertEqual(scrape.value("tchat_last_reload_success"), 1)
        self.assertEqual(
            scrape.value("tchat_last_reload_timestamp_seconds"), failed_at + 60
        )
        self.assertEqual(
            scrape.by_label("tchat_reloads_total", "result"),
            {"ok": 1.0, "failed": 1.0},
        )

    def test_oper_guessing(self) -> None:
        """
        Someone guessing operator passwords shows up: each wrong password
        as a drop for oper-failed, and attempts slowed down as rate limited
        for oper.  Nothing is reported under a reason that has not
        happened.
        """
        site = make_admin_site(self.hub, self.clock)
        scrape = self.scrape(site)
        self.assertEqual(scrape.by_label("tchat_dropped_total", "reason"), {})
        self.assertEqual(scrape.by_label("tchat_rate_limited_total", "reason"), {})
        guesser = self.hub.connect(QuietParticipant("telnet", "192.0.2.7"))
        for _ in range(OPER_FAILURES + 2):
            self.hub.execute(guesser, Oper("root", "guess"))
        # The first slowed try is checked a second later; the next waits.
        self.clock.advance(1)
        scrape = self.scrape(site)
        self.assertEqual(
            scrape.by_label("tchat_dropped_total", "reason"),
            {"oper-failed": OPER_FAILURES + 1},
        )
        self.assertEqual(
            scrape.by_label("tchat_rate_limited_total", "reason"), {"oper": 2}
        )

    def test_moderation(self) -> None:
        """
        An operator's mutes and bans are counted by action; the muted
        user's message is counted as dropped (and not as received); the
        bans in force are a gauge (an onion user's ban is two: session and
        nick); a banned address coming back is counted as dropped.
        """
        site = make_admin_site(self.hub, self.clock)
        oper, _, web, onion = self.users
        self.hub.execute(oper, Oper("root", PASSWORD))
        self.assertEqual(self.scrape(site).value("tchat_bans"), 0)
        self.hub.execute(oper, Mute(web.nick, None))
        self.hub.execute(web, Say("let me speak"))
        self.hub.execute(oper, Ban(onion.nick, None, None))
        self.hub.execute(oper, Ban("ip:192.0.2.0/24", 3600, None))
        self.hub.connect(QuietParticipant("telnet", "192.0.2.9"))
        scrape = self.scrape(site)
        self.assertEqual(
            scrape.by_label("tchat_operator_actions_total", "action"),
            {"mute": 1.0, "ban": 2.0},
        )
        self.assertEqual(
            scrape.by_label("tchat_dropped_total", "reason"),
            {"muted": 1.0, "banned": 1.0},
        )
        self.assertEqual(scrape.value("tchat_messages_received_total", door="web"), 0)
        self.assertEqual(scrape.value("tchat_bans"), 3)


class SiteTests(AdminTestCase):
    """
    What the admin site does with any request.
    """

    def test_index(self) -> None:
        """
        C{/} lists the three paths as plain text.
        """
        code, headers, body = request(make_admin_site(self.hub, self.clock), b"/")
        self.assertEqual(code, 200)
        self.assertEqual(headers[b"content-type"], b"text/plain; charset=utf-8")
        for path in (b"/healthz", b"/stats", b"/metrics"):
            self.assertIn(path, body)

    def test_not_found(self) -> None:
        """
        Unknown paths, including ones below a real page, are a plain-text 404.
        """
        site = make_admin_site(self.hub, self.clock)
        for path in (b"/nope", b"/healthz/extra", b"/metrics/", b"/index.html"):
            code, headers, body = request(site, path)
            self.assertEqual(code, 404, path)
            self.assertEqual(headers[b"content-type"], b"text/plain; charset=utf-8")
            self.assertIn(b"Not found", body)

    def test_method_not_allowed(self) -> None:
        """
        Anything but GET or HEAD is refused with 405 and an Allow header.
        """
        site = make_admin_site(self.hub, self.clock)
        for method in (b"POST", b"PUT", b"DELETE"):
            for path in (b"/", b"/healthz", b"/stats", b"/metrics"):
                code, headers, _ = request(site, path, method)
                self.assertEqual(code, 405, (method, path))
                self.assertEqual(headers[b"allow"], b"GET, HEAD")

    def test_head(self) -> None:
        """
        HEAD answers like GET, including the status and the length, with no
        body.
        """
        site = make_admin_site(self.hub, self.clock, _Onion("down"))
        for path in (b"/", b"/stats", b"/healthz"):
            get_code, get_headers, get_body = request(site, path)
            code, headers, body = request(site, path, b"HEAD")
            self.assertEqual(code, get_code)
            self.assertEqual(body, b"")
            self.assertEqual(headers[b"content-length"], b"%d" % (len(get_body),))
        self.assertEqual(code, 503)

    def test_no_access_log(self) -> None:
        """
        A started admin site logs nothing per request, so frequent scrapes
        don't flood the log, while an ordinary site would log each one.
        """
        events: list[LogEvent] = []

        @provider(ILogObserver)
        def observer(event: LogEvent) -> None:
            events.append(event)

        admin = make_admin_site(self.hub, self.clock)
        plain = Site(admin.resource, reactor=self.clock)
        for site in (admin, plain):
            site.doStart()
            self.addCleanup(site.doStop)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

        for method in (b"GET", b"HEAD"):
            for path in (b"/metrics", b"/healthz", b"/nope"):
                request(admin, path, method)
        self.assertEqual([formatEvent(e) for e in events], [])

        request(plain, b"/metrics")
        self.assertIn('"GET /metrics HTTP/1.1" 200', formatEvent(events[0]))


class NegotiationTests(AdminTestCase):
    """
    C{/metrics} speaks the format the scraper asks for.
    """

    def test_openmetrics(self) -> None:
        """
        A scraper that accepts OpenMetrics gets OpenMetrics (with its
        C{# EOF} end marker); one that says nothing gets the classic text
        format that every Prometheus version reads.
        """
        site = make_admin_site(self.hub, self.clock)
        code, headers, body = request(
            site,
            b"/metrics",
            extra=b"Accept: application/openmetrics-text; version=1.0.0\r\n",
        )
        self.assertEqual(code, 200)
        self.assertTrue(
            headers[b"content-type"].startswith(b"application/openmetrics-text;")
        )
        self.assertTrue(body.endswith(b"# EOF\n"))
        self.assertIn(b'tchat_users{door="onion"} 1.0', body)
