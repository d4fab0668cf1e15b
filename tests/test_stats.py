# -*- test-case-name: tests.test_stats -*-
"""
Tests for L{tchat.stats.Stats}: the figures of C{/stats} for anyone and
for operators, and the listing a user is shown, without a hub.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tchat import events, stats
from tchat.backplane import LocalBackplane
from tchat.bans import BanList
from tchat.config import HistoryConfig, ServerConfig
from tchat.delivery import Delivery
from tchat.history import Ban, MemoryStore
from tchat.metrics import Metrics
from tchat.model import Directory, Settings, User
from tchat.palette import PALETTE
from tchat.seam import Health
from tchat.stats import Stats
from tests.support import FakeParticipant

START = 1_700_000_000.0

PUBLIC = {"server", "users", "rooms", "uptime_seconds", "messages_per_minute"}
"""The figures anyone sees."""


class ReportingBackplane(LocalBackplane):
    """
    A node alone whose health says what the test wants.

    @ivar health_now: What L{health} answers.
    """

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self.health_now = Health()

    def health(self) -> Health:
        return self.health_now


class StatsTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.directory = Directory(
            self.clock,
            Settings(ServerConfig(reconnect_grace=0, name="testchat"), HistoryConfig()),
        )
        self.store = MemoryStore(HistoryConfig(enabled=False))
        self.backplane = ReportingBackplane(self.store)
        self.metrics = Metrics()
        self.bans = BanList()
        self.stats = Stats(
            self.directory,
            Delivery(self.directory, self.backplane, self.metrics, self.clock),
            self.backplane,
            self.bans,
            self.store,
            self.metrics,
            self.clock,
        )
        self.patch(stats, "rss_bytes", lambda: 3 * 1048576)
        self.participants: dict[User, FakeParticipant] = {}

    def arrive(self, nick: str, door: str = "telnet", operator: bool = False) -> User:
        participant = FakeParticipant(door)
        user = User(participant, nick, door, PALETTE["red"], code=nick)
        user.operator = "root" if operator else None
        self.directory.add(user)
        self.participants[user] = participant
        return user

    def shown(self, user: User) -> events.Listing:
        """What C{/stats} shows C{user}."""
        self.stats.show(user)
        (listing,) = self.participants[user].take()
        assert isinstance(listing, events.Listing)
        return listing

    def busy_hour(self) -> None:
        """Three users, a room, a ban, a mute, traffic and counts."""
        self.arrive("root", "web", operator=True)
        self.arrive("bob", "telnet").muted_until = START + 7200
        self.arrive("carol", "telnet")
        self.directory.new_room("#dev")
        self.bans.add(Ban(1, "nick", "troll*", "", "root", START))
        for door in ("telnet", "telnet", "web"):
            self.metrics.connected(door)
            self.metrics.received_from(door)
        self.metrics.drop("line-too-long")
        self.metrics.limit("messages")
        self.metrics.reloaded(START, ok=True)
        self.clock.advance(3725)
        for _ in range(6):
            self.metrics.messages.record(self.clock.seconds())


class FiguresTests(StatsTestCase):
    """
    L{Stats.figures}.
    """

    def test_for_anyone(self) -> None:
        """
        Anyone sees the server, how many users and rooms, the uptime and the
        message rates, and nothing else.
        """
        self.busy_hour()
        self.backplane.health_now = Health(stats={"cluster_nodes": 3})
        self.assertEqual(
            self.stats.figures(),
            {
                "server": "testchat",
                "users": 3,
                "rooms": 2,
                "uptime_seconds": 3725,
                "messages_per_minute": {"1m": 6, "15m": 0.4},
            },
        )

    def test_lapsed_mute_not_counted(self) -> None:
        """
        A mute whose time is up no longer counts as a mute, even before the
        user talks again.
        """
        self.busy_hour()
        self.assertEqual(self.stats.figures(full=True)["muted"], 1)
        self.clock.advance(3600)
        self.assertEqual(self.stats.figures(full=True)["muted"], 0)

    def test_full(self) -> None:
        """
        Operators and the admin door see users by door, the counters,
        operators online, mutes, bans and the history writes queued too.
        """
        self.busy_hour()
        self.store.queued = 4
        data = self.stats.figures(full=True)
        self.assertLessEqual(PUBLIC, set(data))
        self.assertEqual(
            {key: value for key, value in data.items() if key not in PUBLIC},
            {
                "users_by_door": {"web": 1, "telnet": 2},
                "connections_total": {
                    "telnet": 2,
                    "web": 1,
                    "ssh": 0,
                    "irc": 0,
                    "onion": 0,
                },
                "messages_received": {
                    "telnet": 2,
                    "web": 1,
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
                "operators_online": 1,
                "bans": 1,
                "muted": 1,
                "history_queue": 4,
                "dropped": {"line-too-long": 1},
                "rate_limited": {"messages": 1},
                "reloads": {"ok": 1, "failed": 0},
                "last_reload_ok": True,
                "rss_bytes": 3 * 1048576,
            },
        )

    def test_figures_are_copies(self) -> None:
        """
        The figures handed out do not change as the hub goes on counting.
        """
        data = self.stats.figures(full=True)
        self.metrics.connected("web")
        self.assertEqual(data["connections_total"]["web"], 0)

    def test_backplane_and_onion(self) -> None:
        """
        The backplane's own figures, and the onion door's status when there
        is one, are part of the full figures.
        """
        self.assertNotIn("onion", self.stats.figures(full=True))
        self.backplane.health_now = Health(stats={"cluster_nodes": 3, "redis": "up"})
        self.stats.onion_status = lambda: {"state": "published"}
        data = self.stats.figures(full=True)
        self.assertEqual(data["onion"], {"state": "published"})
        self.assertEqual((data["cluster_nodes"], data["redis"]), (3, "up"))


class ShowTests(StatsTestCase):
    """
    L{Stats.show}: the listing of C{/stats}.
    """

    def test_for_anyone(self) -> None:
        """
        A user who is not an operator is shown the public figures, as lines
        and as data.
        """
        self.busy_hour()
        bob = self.directory.user("bob")
        assert bob is not None
        listing = self.shown(bob)
        self.assertEqual(
            (listing.kind, listing.title, listing.lines),
            (
                "stats",
                "testchat stats",
                (
                    "users: 3   rooms: 2   up 1h 2m",
                    "messages per minute: 6 (last minute), 0.4 (last 15 minutes)",
                ),
            ),
        )
        self.assertEqual(listing.data, self.stats.figures())

    def test_for_operators(self) -> None:
        """
        An operator is shown every figure, the backplane's lines and the
        onion door's state last.
        """
        self.busy_hour()
        self.store.queued = 4
        self.backplane.health_now = Health(
            stats={"cluster_nodes": 3}, lines=("cluster: 3 nodes", "redis: up")
        )
        self.stats.onion_status = lambda: {"state": "published"}
        root = self.directory.user("root")
        assert root is not None
        listing = self.shown(root)
        self.assertEqual(
            listing.lines,
            (
                "users: 3   rooms: 2   up 1h 2m",
                "messages per minute: 6 (last minute), 0.4 (last 15 minutes)",
                "users by door: telnet 2, web 1",
                "connections since start: telnet 2, web 1, ssh 0, irc 0, onion 0",
                "messages received: telnet 2, web 1, ssh 0, irc 0, onion 0",
                "operators online: 1   bans: 1   muted: 1",
                "history writes queued: 4",
                "reloads: 1 ok, 0 failed",
                "memory: 3.0 MiB",
                "onion: published",
                "cluster: 3 nodes",
                "redis: up",
            ),
        )
        self.assertEqual(listing.data, self.stats.figures(full=True))

    def test_quiet_operator_view(self) -> None:
        """
        Without a memory figure or an onion door, operators are not shown
        those lines.
        """
        self.patch(stats, "rss_bytes", lambda: 0)
        lines = self.shown(self.arrive("root", operator=True)).lines
        self.assertEqual(len(lines), 8)
        self.assertFalse(any(line.startswith(("memory", "onion")) for line in lines))

    def test_only_to_asker(self) -> None:
        """
        The listing goes to the user who asked, and nobody else.
        """
        alice, bob = self.arrive("alice"), self.arrive("bob")
        self.shown(alice)
        self.assertEqual(self.participants[bob].take(), [])
