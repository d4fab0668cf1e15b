# -*- test-case-name: tests.integration.test_admin_server -*-
"""
The admin door end to end: a real C{twistd tchat} process with its telnet,
web and admin doors on 127.0.0.1, real chat clients driving it, and a real
HTTP client (Twisted's L{Agent}) scraping the admin door as Prometheus and
a load balancer would, its answers read with C{prometheus_client}'s own
parsers.

The web door is asked for the same pages and must not serve them: the
operators' numbers are never on the public site.
"""

import json
from typing import Any

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from tests.integration.server import (
    ChatClient,
    TchatServer,
    WebClient,
    async_test,
    connect,
    connect_web,
    global_reactor,
    start_server,
)

WEB = "tcp:0:interface=127.0.0.1"
"""The C{--web} endpoint of every test server here."""

TIMEOUT = 10.0
"""Seconds any one HTTP request may take, body included."""

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,"
    "application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
"""The C{Accept} header a Prometheus server sends when it scrapes."""

ADMIN_PATHS = ("/metrics", "/stats", "/healthz")


class Samples:
    """
    The samples of one Prometheus exposition, by name and labels.
    """

    def __init__(self, families: Any) -> None:
        self.names: set[str] = set()
        self._values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in families:
            self.names.add(family.name)
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                self._values[key] = sample.value

    def value(self, name: str, **labels: str) -> float:
        """
        @return: The value of the sample C{name} with exactly C{labels}.
        @raise KeyError: If there is no such sample.
        """
        return self._values[(name, frozenset(labels.items()))]


class AdminDoorTests(TestCase):
    """
    The admin door of a running server, and the web door next to it.
    """

    def setUp(self) -> None:
        pool = HTTPConnectionPool(global_reactor(), persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        self.agent = Agent(global_reactor(), pool=pool, connectTimeout=5)

    async def get(
        self, port: int, path: str, accept: str | None = None
    ) -> tuple[IResponse, bytes]:
        """
        GET C{path} from a port on 127.0.0.1, within L{TIMEOUT} seconds.

        @param accept: The C{Accept} header to send, if any.
        @return: The response and its body.
        """
        headers = Headers()
        if accept is not None:
            headers.addRawHeader(b"Accept", accept.encode("ascii"))
        url = f"http://127.0.0.1:{port}{path}".encode("ascii")
        asked: Deferred[IResponse] = self.agent.request(b"GET", url, headers)
        response = await asked.addTimeout(TIMEOUT, global_reactor())
        read: Deferred[bytes] = readBody(response)
        body = await read.addTimeout(TIMEOUT, global_reactor())
        return response, body

    def content_type(self, response: IResponse) -> str:
        """
        @return: The response's one C{Content-Type}.
        """
        [value] = response.headers.getRawHeaders(b"Content-Type", [])
        return bytes(value).decode("latin-1")

    async def scrape(self, server: TchatServer) -> Samples:
        """
        Scrape C{/metrics} as a client that asks for nothing in particular,
        and parse it as the classic Prometheus text format.
        """
        response, body = await self.get(server.admin_port, "/metrics")
        self.assertEqual(response.code, 200, body)
        self.assertEqual(
            self.content_type(response), "text/plain; version=0.0.4; charset=utf-8"
        )
        return Samples(text_string_to_metric_families(body.decode("utf-8")))

    async def two_users(self) -> tuple[TchatServer, ChatClient, WebClient]:
        """
        Start a server with a web door; connect alice by telnet and bob on
        the web, each with every notice about the other read.
        """
        server = await start_server(self, web=WEB)
        assert server.web_port is not None
        alice = await connect(self, server.port, "alice")
        await alice.set_nick("alice")
        bob = await connect_web(self, server.web_port, "bob")
        await bob.set_nick("bob")
        await alice.sync()
        await bob.sync()
        return server, alice, bob

    @async_test
    async def test_metrics(self) -> None:
        """
        C{/metrics} counts the users on each door, and once alice (telnet)
        has said something bob (web) has seen, the message as received on
        the telnet door, delivered on the web door and fanned out once; the
        process's memory and CPU are there too.
        """
        server, alice, bob = await self.two_users()
        before = await self.scrape(server)
        for name in ("tchat_users", "tchat_connections_open"):
            self.assertEqual(before.value(name, door="telnet"), 1, name)
            self.assertEqual(before.value(name, door="web"), 1, name)
            self.assertEqual(before.value(name, door="onion"), 0, name)
        self.assertEqual(before.value("tchat_connections_total", door="web"), 1)
        self.assertEqual(before.value("tchat_ready"), 1)
        self.assertEqual(
            before.value("tchat_messages_received_total", door="telnet"), 0
        )

        alice.say("numbers, please")
        await bob.wait_for(type="usermsg", message="numbers, please")
        after = await self.scrape(server)
        self.assertEqual(after.value("tchat_messages_received_total", door="telnet"), 1)
        self.assertEqual(after.value("tchat_messages_received_total", door="web"), 0)
        self.assertGreaterEqual(
            after.value("tchat_messages_delivered_total", door="web"), 1
        )
        self.assertGreaterEqual(
            after.value("tchat_messages_delivered_total", door="telnet"), 1
        )
        self.assertEqual(after.value("tchat_fanout_seconds_count"), 1)
        self.assertEqual(after.value("tchat_fanout_seconds_bucket", le="+Inf"), 1)
        self.assertLess(after.value("tchat_fanout_seconds_sum"), TIMEOUT)
        self.assertGreaterEqual(after.value("tchat_history_queue_depth"), 0)
        self.assertGreater(after.value("process_resident_memory_bytes"), 0)
        self.assertGreater(after.value("process_cpu_seconds_total"), 0)

    @async_test
    async def test_openmetrics(self) -> None:
        """
        A scrape with the C{Accept} header Prometheus sends gets OpenMetrics,
        which C{prometheus_client}'s strict OpenMetrics parser accepts.
        """
        server, _, _ = await self.two_users()
        response, body = await self.get(
            server.admin_port, "/metrics", accept=PROMETHEUS_ACCEPT
        )
        self.assertEqual(response.code, 200)
        self.assertTrue(
            self.content_type(response).startswith("application/openmetrics-text"),
            self.content_type(response),
        )
        samples = Samples(openmetrics_families(body.decode("utf-8")))
        self.assertEqual(samples.value("tchat_users", door="web"), 1)
        self.assertIn("tchat_fanout_seconds", samples.names)

    @async_test
    async def test_stats_and_health(self) -> None:
        """
        C{/stats} is JSON counting both users by door and alice's message;
        C{/healthz} answers 200 with status ok while the chat serves.
        """
        server, alice, bob = await self.two_users()
        alice.say("for the stats")
        await bob.wait_for(type="usermsg", message="for the stats")

        response, body = await self.get(server.admin_port, "/stats")
        self.assertEqual(response.code, 200)
        self.assertEqual(self.content_type(response), "application/json; charset=utf-8")
        stats = json.loads(body)
        self.assertEqual(stats["server"], "tchat")
        self.assertEqual(stats["users"], 2)
        self.assertEqual(stats["users_by_door"], {"telnet": 1, "web": 1})
        self.assertEqual(stats["messages_received"]["telnet"], 1)
        self.assertGreaterEqual(stats["messages_delivered"]["web"], 1)
        self.assertIsNone(stats["onion"])
        self.assertGreater(stats["rss_bytes"], 0)

        response, body = await self.get(server.admin_port, "/healthz")
        self.assertEqual(response.code, 200)
        self.assertEqual(json.loads(body), {"status": "ok", "checks": {"hub": "ok"}})

    @async_test
    async def test_not_on_web_door(self) -> None:
        """
        The web door, which serves the public, has no C{/metrics},
        C{/stats} or C{/healthz}: each is a 404 carrying none of the
        admin door's content, however the client asks; its page is there,
        so the 404s come from the right door.
        """
        server = await start_server(self, web=WEB)
        assert server.web_port is not None
        response, body = await self.get(server.web_port, "/")
        self.assertEqual(response.code, 200)
        self.assertIn(b"<html", body.lower())
        for path in ADMIN_PATHS:
            for accept in (None, PROMETHEUS_ACCEPT, "application/json"):
                response, body = await self.get(server.web_port, path, accept)
                self.assertEqual(response.code, 404, (path, accept))
                for admin_text in (b"# TYPE", b"tchat_", b'"status"', b'"users"'):
                    self.assertNotIn(admin_text, body, (path, accept))
        # The admin door answers the same paths, so the test asks for the
        # right ones.
        for path in ADMIN_PATHS:
            response, _ = await self.get(server.admin_port, path)
            self.assertEqual(response.code, 200, path)
