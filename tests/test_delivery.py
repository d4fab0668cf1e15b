# -*- test-case-name: tests.test_delivery -*-
"""
Tests for L{tchat.delivery.Delivery} and L{tchat.seam.Audience.resolve}:
who an audience reaches, how one event is fanned out to many users, what
is counted, and what is handed to the other nodes.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tchat import events
from tchat.backplane import LocalBackplane
from tchat.config import ServerConfig
from tchat.delivery import Delivery
from tchat.history import MemoryStore
from tchat.metrics import Metrics
from tchat.model import Directory, Room, Settings, User
from tchat.palette import PALETTE
from tchat.seam import Audience
from tchat.text import nick_key
from tests.support import FakeParticipant


class RecordingBackplane(LocalBackplane):
    """
    A node alone that records what it is asked to share with other nodes.

    @ivar shared: Each C{(event, audience)} given to L{share}.
    """

    def __init__(self) -> None:
        super().__init__(MemoryStore(Settings().history))
        self.shared: list[tuple[events.Event, Audience]] = []

    def share(self, event: events.Event, audience: Audience) -> None:
        self.shared.append((event, audience))


def said(room: str, id: int = 1) -> events.RoomMessage:
    """A room message of C{room}."""
    return events.RoomMessage(
        room, id, 1_700_000_000.0, "alice", "telnet", PALETTE["red"], "hello"
    )


def private(recipient: str) -> events.PrivateMessage:
    """A private message from alice to C{recipient}."""
    return events.PrivateMessage(
        1_700_000_000.0, "alice", "telnet", PALETTE["red"], recipient, "psst", False
    )


class DeliveryTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.directory = Directory(
            self.clock, Settings(ServerConfig(reconnect_grace=0))
        )
        self.backplane = RecordingBackplane()
        self.metrics = Metrics()
        self.delivery = Delivery(
            self.directory, self.backplane, self.metrics, self.clock
        )
        self.participants: dict[User, FakeParticipant] = {}

    def arrive(self, nick: str, door: str = "telnet", *rooms: str) -> User:
        """A user of this node, in C{rooms}."""
        participant = FakeParticipant(door)
        user = User(participant, nick, door, PALETTE["blue"], code=nick.upper())
        self.directory.add(user)
        for name in rooms:
            room = self.directory.room(name) or self.directory.new_room(name)
            self.directory.enter(user, room, 1)
        self.participants[user] = participant
        return user

    def told(self, user: User) -> list[object]:
        """What C{user} was told since last asked."""
        return self.participants[user].take()

    def room(self, name: str) -> Room:
        room = self.directory.room(name)
        assert room is not None
        return room


class AudienceTests(DeliveryTestCase):
    """
    L{Audience.resolve} against one node's directory.
    """

    def test_rooms(self) -> None:
        """
        A room audience reaches the members of those rooms only; rooms this
        node does not know reach nobody.
        """
        alice = self.arrive("alice", "telnet", "#a")
        bob = self.arrive("bob", "telnet", "#b")
        self.arrive("carol", "telnet", "#c")
        told = Audience(rooms=("#a", "#b", "#nowhere")).resolve(self.directory)
        self.assertEqual(list(told), [alice, bob])

    def test_nicks(self) -> None:
        """
        A nick audience reaches the users with those nick keys, in any case
        they chose; unknown nicks reach nobody.
        """
        alice = self.arrive("Alice")
        self.arrive("bob")
        told = Audience(nicks=(nick_key("alice"), "nobody")).resolve(self.directory)
        self.assertEqual(list(told), [alice])

    def test_operators(self) -> None:
        """
        The operators audience reaches every operator and nobody else.
        """
        alice, _ = self.arrive("alice"), self.arrive("bob")
        alice.operator = "root"
        told = Audience(operators=True).resolve(self.directory)
        self.assertEqual(list(told), [alice])

    def test_everyone(self) -> None:
        """
        The everyone audience reaches every user of the node, in no room too.
        """
        alice = self.arrive("alice", "telnet", "#a")
        bob = self.arrive("bob")
        told = Audience(everyone=True).resolve(self.directory)
        self.assertEqual(list(told), [alice, bob])

    def test_users(self) -> None:
        """
        Users named in the audience are told even when they are no longer in
        the directory (someone who just left).
        """
        gone = self.arrive("gone")
        self.directory.remove(gone)
        told = Audience(users=(gone,)).resolve(self.directory)
        self.assertEqual(list(told), [gone])

    def test_nobody(self) -> None:
        """
        An empty audience reaches nobody.
        """
        self.arrive("alice", "telnet", "#a")
        self.assertEqual(Audience().resolve(self.directory), {})

    def test_once_each(self) -> None:
        """
        A user in several parts of the audience is told once.
        """
        alice = self.arrive("alice", "telnet", "#a", "#b")
        bob = self.arrive("bob", "telnet", "#b")
        alice.operator = "root"
        told = Audience(
            rooms=("#a", "#b"), nicks=("alice", "bob"), operators=True, users=(alice,)
        ).resolve(self.directory)
        self.assertEqual(list(told), [alice, bob])


class FanOutTests(DeliveryTestCase):
    """
    L{Delivery.fan_out}: one event, many recipients.
    """

    def test_one_renderings_per_event(self) -> None:
        """
        Every recipient of one event is handed the same renderings, and the
        next event gets fresh ones.
        """
        users = [self.arrive(f"u{i}", "telnet", "#a") for i in range(3)]
        self.delivery.fan_out(users, said("#a", 1))
        self.delivery.fan_out(users, said("#a", 2))
        per_event = [
            {id(self.participants[u].renderings[i]) for u in users} for i in (0, 1)
        ]
        self.assertEqual([len(caches) for caches in per_event], [1, 1])
        self.assertNotEqual(per_event[0], per_event[1])

    def test_failure_isolated_and_logged(self) -> None:
        """
        A recipient whose door raises costs the others nothing: those before
        and after are told, and the failure is logged.
        """
        alice, bob, carol = (self.arrive(n) for n in ("alice", "bob", "carol"))

        def explode(event: object, renderings: object) -> None:
            raise RuntimeError("door bug")

        bob.deliver = explode
        status = events.Status("hello")
        self.delivery.fan_out([alice, bob, carol], status)
        self.assertEqual((self.told(alice), self.told(carol)), ([status], [status]))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_room_message_counted_by_doors(self) -> None:
        """
        A room message to every member is counted up front from the room's
        members by door, not once more per recipient.
        """
        members = [
            self.arrive("alice", "telnet", "#a"),
            self.arrive("bob", "web", "#a"),
            self.arrive("carol", "web", "#a"),
        ]
        self.delivery.fan_out(members, said("#a", 1), self.room("#a").doors)
        self.assertEqual(
            self.metrics.delivered,
            {"telnet": 1, "web": 2, "ssh": 0, "irc": 0, "onion": 0},
        )
        self.delivery.fan_out(members[:1], said("#a", 2), {"telnet": 1, "web": 2})
        self.assertEqual(
            self.metrics.delivered,
            {"telnet": 2, "web": 4, "ssh": 0, "irc": 0, "onion": 0},
        )

    def test_counted_one_by_one(self) -> None:
        """
        Private messages, and room messages without door counts, are counted
        per recipient's door; other events are not counted.
        """
        alice, bob = self.arrive("alice"), self.arrive("bob", "onion")
        self.delivery.fan_out([alice, bob], private("bob"))
        self.delivery.fan_out([bob], said("#a"))
        self.delivery.fan_out([alice, bob], events.Status("not a message"))
        self.assertEqual(
            self.metrics.delivered,
            {"telnet": 1, "web": 0, "ssh": 0, "irc": 0, "onion": 2},
        )

    def test_held_behind_history_read(self) -> None:
        """
        A room message for a user whose history read of that room is in
        flight waits with the read, uncounted; the others get it, and
        events of other kinds or rooms are not held.
        """
        alice = self.arrive("alice", "telnet", "#a", "#b")
        bob = self.arrive("bob", "web", "#a")
        room = self.room("#a")
        alice.holding[room] = (1, [])
        message = said("#a")
        self.delivery.fan_out([alice, bob], message, room.doors)
        self.assertEqual(self.told(alice), [])
        self.assertEqual(self.told(bob), [message])
        self.assertEqual(alice.holding[room], (1, [message]))
        self.assertEqual(
            self.metrics.delivered,
            {"telnet": 0, "web": 1, "ssh": 0, "irc": 0, "onion": 0},
        )

        elsewhere, status = said("#b"), events.Status("hi")
        self.delivery.fan_out([alice], elsewhere)
        self.delivery.fan_out([alice], status)
        self.assertEqual(self.told(alice), [elsewhere, status])
        self.assertEqual(alice.holding[room], (1, [message]))
        self.assertEqual(self.metrics.delivered["telnet"], 1)

    def test_held_one_by_one_uncounted(self) -> None:
        """
        A room message told one recipient at a time (no door counts) is not
        counted for a recipient it waits for.
        """
        alice = self.arrive("alice", "telnet", "#a")
        alice.holding[self.room("#a")] = (1, [])
        self.delivery.fan_out([alice], said("#a"))
        self.assertEqual(self.metrics.delivered["telnet"], 0)


class TellTests(DeliveryTestCase):
    """
    L{Delivery.tell}, L{Delivery.error} and L{Delivery.refuse}: one user.
    """

    def test_tell(self) -> None:
        """
        Telling an event reaches that user alone.
        """
        alice, bob = self.arrive("alice", "telnet", "#a"), self.arrive("bob")
        self.delivery.tell(alice, events.Status("yours"))
        self.assertEqual(self.told(alice), [events.Status("yours")])
        self.assertEqual(self.told(bob), [])

    def test_error_carries_current_tag(self) -> None:
        """
        An error answers the request the hub is carrying out for the user:
        it carries that request's tag, or none when it had none.
        """
        alice = self.arrive("alice")
        self.delivery.error(alice, "no-such-room", "no room #x")
        alice.tag = "req-7"
        self.delivery.error(alice, "no-such-nick", "nobody is called x")
        self.assertEqual(
            self.told(alice),
            [
                events.Error("no-such-room", "no room #x", None),
                events.Error("no-such-nick", "nobody is called x", "req-7"),
            ],
        )

    def test_error_given_tag(self) -> None:
        """
        An error given the tag of the request it answers carries that tag,
        whatever the hub is carrying out now.
        """
        alice = self.arrive("alice")
        alice.tag = "now"
        self.delivery.error(alice, "muted", "you are muted", client_id="then")
        self.assertEqual(
            self.told(alice), [events.Error("muted", "you are muted", "then")]
        )

    def test_refuse(self) -> None:
        """
        A refusal with a notice tells it, with the current tag; one without
        tells nothing.
        """
        alice = self.arrive("alice")
        alice.tag = "t"
        self.delivery.refuse(alice, None)
        self.delivery.refuse(alice, events.Error("rate-limited", "slow down"))
        self.assertEqual(
            self.told(alice), [events.Error("rate-limited", "slow down", "t")]
        )


class DeliverTests(DeliveryTestCase):
    """
    L{Delivery.deliver} and L{Delivery.here}: this node, and the others.
    """

    def test_deliver_here_and_shared(self) -> None:
        """
        Delivering tells this node's users in the audience and hands the
        same event and audience to the backplane for the other nodes.
        """
        alice = self.arrive("alice", "telnet", "#a")
        bob = self.arrive("bob", "telnet", "#b")
        event = events.TopicChanged(1.0, "#a", "alice", "plans")
        audience = Audience(rooms=("#a",))
        self.delivery.deliver(event, audience)
        self.assertEqual(self.told(alice), [event])
        self.assertEqual(self.told(bob), [])
        self.assertEqual(self.backplane.shared, [(event, audience)])
        self.assertIs(self.backplane.shared[0][1], audience)

    def test_deliver_shared_with_nobody_here(self) -> None:
        """
        An event for nobody on this node is still handed to the other nodes,
        whose users may be in the audience.
        """
        event = events.Notice(1.0, "announce", "root", "hello all")
        self.delivery.deliver(event, Audience(nicks=("elsewhere",)))
        self.assertEqual(
            self.backplane.shared, [(event, Audience(nicks=("elsewhere",)))]
        )

    def test_here_not_shared(self) -> None:
        """
        Telling an audience here alone reaches this node's users and hands
        nothing to the other nodes.
        """
        alice = self.arrive("alice")
        event = events.Status("local")
        self.delivery.here(event, Audience(everyone=True))
        self.assertEqual(self.told(alice), [event])
        self.assertEqual(self.backplane.shared, [])
