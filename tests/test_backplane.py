"""
Tests for L{tchat.backplane.LocalBackplane}, the backplane of a node alone,
driven directly: a recording L{IHubInbox} stands in for the hub, and a
L{Directory} holds the node's users and rooms.
"""

import random
import sqlite3

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tchat import events
from tchat.backplane import LocalBackplane
from tchat.config import HistoryConfig, ServerConfig
from tchat.config.history import SyncMode
from tchat.history import MemoryStore, RoomRecord
from tchat.hub import ChatFactory
from tchat.model import Directory, Room, Settings, User
from tchat.palette import PALETTE
from tchat.seam import (
    Audience,
    Draft,
    Health,
    IBackplane,
    IHubInbox,
    Listing,
    MotdChanged,
    NotKeptError,
    Request,
)
from tests.support import FakeParticipant

RED = PALETTE["red"]


@implementer(IHubInbox)
class RecordingInbox:
    """
    What a backplane hands the hub, recorded in the order it came.

    @ivar calls: (method name, arguments) for every call.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    def take(self) -> list[tuple[str, tuple[object, ...]]]:
        calls, self.calls = self.calls, []
        return calls

    def message(self, room: Room, message: events.RoomMessage, received: float) -> None:
        self.calls.append(("message", (room, message)))

    def repeated(self, sender: User, room: Room, client_id: str, id: int) -> None:
        self.calls.append(("repeated", (sender, room, client_id, id)))

    def unsaid(self, sender: User, draft: Draft, why: Failure) -> None:
        self.calls.append(("unsaid", (sender, draft, why)))

    def event(self, event: events.Event, audience: Audience) -> None:
        self.calls.append(("event", (event, audience)))

    def request(self, request: Request) -> None:
        self.calls.append(("request", (request,)))

    def nick_lost(self, user: User) -> None:
        self.calls.append(("nick_lost", (user,)))

    def reachable(self, up: bool) -> None:
        self.calls.append(("reachable", (up,)))


class RecordingStore(MemoryStore):
    """
    An in-memory store that records the rooms it is asked to save and, when
    C{hold} is set, answers each durable append with a L{Deferred} the test
    fires.
    """

    def __init__(self, config: HistoryConfig) -> None:
        super().__init__(config)
        self.saved: list[RoomRecord] = []
        self.appended: list[events.RoomMessage] = []
        self.commits: list[Deferred[None]] = []
        self.hold = False

    def save_room(self, room: RoomRecord) -> None:
        self.saved.append(room)

    def append(
        self, message: events.RoomMessage, durable: bool
    ) -> Deferred[None] | None:
        self.appended.append(message)
        done = super().append(message, durable)
        if durable and self.hold:
            self.commits.append(Deferred())
            return self.commits[-1]
        return done


def draft(
    room: str, text: str, client_id: str | None = None, action: bool = False
) -> Draft:
    """A message as the hub hands it to C{say}: not numbered yet (the room
    is the one C{say} is given)."""
    return Draft(text, action, client_id, 1_700_000_000.5)


class BackplaneTestCase(SynchronousTestCase):
    sync: SyncMode = "normal"

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        history = HistoryConfig(enabled=False, sync=self.sync)
        self.directory = Directory(
            self.clock, Settings(ServerConfig(reconnect_grace=0), history)
        )
        self.store = RecordingStore(history)
        self.inbox = RecordingInbox()
        self.backplane = LocalBackplane(self.store)
        self.backplane.attach(self.inbox, self.directory)
        self.alice = self.user("alice", "web")

    def user(self, nick: str, door: str = "telnet") -> User:
        user = User(FakeParticipant(door), nick, door, RED)
        self.directory.add(user)
        return user

    def numbered(self) -> list[tuple[str, int, str]]:
        """(room, id, text) of the messages handed on since last asked."""
        found = []
        for name, args in self.inbox.take():
            self.assertEqual(name, "message")
            message = args[1]
            assert isinstance(message, events.RoomMessage)
            found.append((message.room, message.id, message.text))
        return found


class InterfaceTests(SynchronousTestCase):
    def test_local_backplane_provides_interface(self) -> None:
        """
        L{LocalBackplane} provides every method of L{IBackplane}, with the
        interface's signatures.
        """
        store = MemoryStore(HistoryConfig(enabled=False))
        self.assertTrue(verifyObject(IBackplane, LocalBackplane(store)))

    def test_hub_is_an_inbox(self) -> None:
        """
        The hub provides L{IHubInbox}: it is what a backplane hands back to.
        """
        hub = ChatFactory(ServerConfig(reconnect_grace=0), Clock(), random.Random(1))
        self.assertTrue(verifyObject(IHubInbox, hub))


class NumberingTests(BackplaneTestCase):
    def test_numbered_from_room_last_id(self) -> None:
        """
        Each room numbers its messages from its own latest id on, in the
        room's epoch, keeping everything else of the draft.
        """
        lobby = self.directory.lobby
        lobby.last_id = 41
        dev = self.directory.new_room("#dev")
        self.backplane.say(self.alice, lobby, draft("#lobby", "one", action=True))
        self.backplane.say(self.alice, dev, draft("#dev", "two"))
        self.backplane.say(self.alice, lobby, draft("#lobby", "three"))
        calls = self.inbox.take()
        self.assertEqual([name for name, _ in calls], ["message"] * 3)
        self.assertEqual([args[0] for _, args in calls], [lobby, dev, lobby])
        messages = []
        for _, args in calls:
            message = args[1]
            assert isinstance(message, events.RoomMessage)
            messages.append(message)
        self.assertEqual(
            messages[0],
            events.RoomMessage(
                "#lobby",
                42,
                1_700_000_000.5,
                "alice",
                "web",
                RED,
                "one",
                True,
                None,
                lobby.epoch,
            ),
        )
        self.assertEqual(
            [(m.room, m.id, m.epoch) for m in messages],
            [
                ("#lobby", 42, lobby.epoch),
                ("#dev", 1, dev.epoch),
                ("#lobby", 43, lobby.epoch),
            ],
        )
        self.assertEqual((lobby.last_id, dev.last_id), (43, 1))
        self.assertEqual([m.id for m in self.store.appended], [42, 1, 43])

    def test_room_saved_the_first_time(self) -> None:
        """
        A room the store does not know yet is saved before its first
        message (as it was before that message), and only then; a room the
        store knows is not saved again.
        """
        dev = self.directory.new_room("#dev")
        self.backplane.say(self.alice, dev, draft("#dev", "one"))
        self.backplane.say(self.alice, dev, draft("#dev", "two"))
        self.assertEqual(len(self.store.saved), 1)
        record = self.store.saved[0]
        self.assertEqual(
            (record.key, record.name, record.epoch, record.last_id),
            ("#dev", "#dev", dev.epoch, 0),
        )
        self.assertTrue(dev.stored)
        known = self.directory.new_room("#known")
        known.stored = True
        self.backplane.say(self.alice, known, draft("#known", "hi"))
        self.assertEqual(len(self.store.saved), 1)

    def test_normal_sync_hands_on_at_once(self) -> None:
        """
        With C{sync = normal} a message is handed to the hub as soon as it
        is queued for the store.
        """
        self.store.hold = True
        lobby = self.directory.lobby
        self.backplane.say(self.alice, lobby, draft("#lobby", "hi", "c-1"))
        self.assertEqual(self.numbered(), [("#lobby", 1, "hi")])
        self.assertEqual(self.store.commits, [])


class FullSyncTests(BackplaneTestCase):
    sync = "full"

    def setUp(self) -> None:
        super().setUp()
        self.store.hold = True
        self.lobby = self.directory.lobby

    def test_handed_on_once_kept(self) -> None:
        """
        With C{sync = full} a message reaches the hub only once the store
        has committed it, with the id it was given at once.
        """
        self.backplane.say(self.alice, self.lobby, draft("#lobby", "safe"))
        self.assertEqual(self.inbox.calls, [])
        self.assertEqual(self.lobby.last_id, 1)
        self.store.commits.pop().callback(None)
        self.assertEqual(self.numbered(), [("#lobby", 1, "safe")])

    def test_retry_while_writing(self) -> None:
        """
        A retry of a tagged message still being written is reported as
        repeated, with the first one's id: it is not numbered or written
        again.  The same tag in another room is another message.
        """
        self.backplane.say(self.alice, self.lobby, draft("#lobby", "once", "c-1"))
        self.backplane.say(self.alice, self.lobby, draft("#lobby", "once", "c-1"))
        self.assertEqual(
            self.inbox.take(), [("repeated", (self.alice, self.lobby, "c-1", 1))]
        )
        self.assertEqual(self.lobby.last_id, 1)
        self.assertEqual(len(self.store.appended), 1)
        dev = self.directory.new_room("#dev")
        self.backplane.say(self.alice, dev, draft("#dev", "once", "c-1"))
        self.assertEqual(dev.last_id, 1)
        self.assertEqual(len(self.store.commits), 2)

    def test_tag_forgotten_once_kept(self) -> None:
        """
        Once its message is kept, the backplane forgets a tag: recognising
        later retries is the hub's (from the room's kept messages).
        """
        self.backplane.say(self.alice, self.lobby, draft("#lobby", "once", "c-1"))
        self.store.commits.pop().callback(None)
        self.inbox.take()
        self.backplane.say(self.alice, self.lobby, draft("#lobby", "once", "c-1"))
        self.assertEqual(self.lobby.last_id, 2)
        self.store.commits.pop().callback(None)
        self.assertEqual(self.numbered(), [("#lobby", 2, "once")])

    def test_failed_write(self) -> None:
        """
        A message the store could not keep is handed back as unsaid, with
        a L{NotKeptError} saying why; the store's failure is logged, and a
        retry of it is numbered afresh.
        """
        said = draft("#lobby", "lost", "c-1")
        self.backplane.say(self.alice, self.lobby, said)
        self.store.commits.pop().errback(sqlite3.OperationalError("disk full"))
        ((name, (sender, unsaid, why)),) = self.inbox.take()
        self.assertEqual(name, "unsaid")
        self.assertIs(sender, self.alice)
        self.assertEqual(unsaid, said)
        assert isinstance(why, Failure)
        self.assertTrue(why.check(NotKeptError))
        self.assertEqual(why.getErrorMessage(), "disk full")
        self.assertEqual(len(self.flushLoggedErrors(sqlite3.OperationalError)), 1)
        self.backplane.say(self.alice, self.lobby, draft("#lobby", "lost", "c-1"))
        self.assertEqual(self.inbox.calls, [])
        self.assertEqual(self.lobby.last_id, 2)


class ListingTests(BackplaneTestCase):
    def test_rooms(self) -> None:
        """
        C{rooms()} lists the rooms of this node, sorted by key (case
        aside), with member counts and topics, as the whole chat, a page at
        a time.
        """
        zeta = self.directory.new_room("#Zeta")
        alpha = self.directory.new_room("#alpha")
        alpha.topic = "first things"
        bob = self.user("bob")
        self.directory.enter(self.alice, zeta, 1)
        self.directory.enter(bob, zeta, 1)
        self.directory.enter(bob, self.directory.lobby, 1)
        listing = self.successResultOf(self.backplane.rooms(0, 10))
        self.assertEqual(
            listing,
            Listing(
                (
                    events.RoomInfo("#alpha", 0, "first things"),
                    events.RoomInfo("#lobby", 1, None),
                    events.RoomInfo("#Zeta", 2, None),
                ),
                total=3,
            ),
        )
        page = self.successResultOf(self.backplane.rooms(1, 1))
        self.assertEqual(page, Listing((events.RoomInfo("#lobby", 1, None),), total=3))
        self.assertFalse(listing.partial)

    def test_members_in_joining_order(self) -> None:
        """
        C{members()} lists a room's members in the order they joined, with
        their doors.
        """
        dev = self.directory.new_room("#dev")
        for nick, door in (("zed", "onion"), ("alice", "web"), ("bob", "telnet")):
            user = self.alice if nick == "alice" else self.user(nick, door)
            self.directory.enter(user, dev, 1)
        self.assertEqual(
            self.successResultOf(self.backplane.members(dev)),
            Listing(
                (
                    events.Member("zed", "onion"),
                    events.Member("alice", "web"),
                    events.Member("bob", "telnet"),
                )
            ),
        )


class AloneTests(BackplaneTestCase):
    def test_ban_ids(self) -> None:
        """
        Ban numbers increase and are never reused, nor at or below the
        highest number the node knows (C{above}).
        """
        ids = self.backplane.ban_ids
        self.assertEqual(self.successResultOf(ids(2, 0)), [1, 2])
        self.assertEqual(self.successResultOf(ids(1, 0)), [3])
        self.assertEqual(self.successResultOf(ids(2, 10)), [11, 12])
        self.assertEqual(self.successResultOf(ids(1, 5)), [13])

    def test_answers_at_once(self) -> None:
        """
        As the only node, it answers at once: any nick may be claimed,
        nobody is elsewhere, every room is known, requests go to nobody,
        and nothing comes back to the hub.
        """
        bp, lobby = self.backplane, self.directory.lobby
        self.assertIsNone(self.successResultOf(bp.start()))
        self.assertTrue(self.successResultOf(bp.claim(self.alice, "bob")))
        self.assertTrue(self.successResultOf(bp.claim(self.alice, "bob", True)))
        self.assertIsNone(self.successResultOf(bp.locate("alice")))
        self.assertIsNone(self.successResultOf(bp.ensure([lobby])))
        self.assertIsNone(self.successResultOf(bp.ask(MotdChanged(("hi",)))))
        bp.share(events.Motd(("hi",)), Audience(everyone=True))
        bp.joined(self.alice, lobby)
        bp.parted(self.alice, lobby)
        bp.renamed(self.alice, "al")
        bp.release(self.alice, "alice")
        bp.left(self.alice)
        self.assertIsNone(self.successResultOf(bp.stop()))
        self.assertEqual(self.inbox.calls, [])

    def test_health(self) -> None:
        """
        A node alone has no checks, is never degraded, and adds nothing to
        C{/stats} or the metrics.
        """
        health = self.backplane.health()
        self.assertEqual(health, Health())
        self.assertEqual(
            (dict(health.checks), health.degraded, dict(health.stats), health.lines),
            ({}, False, {}, ()),
        )
        self.assertEqual(list(self.backplane.metrics()), [])
