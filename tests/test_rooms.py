"""
Tests for L{tchat.rooms.Rooms}, driven directly through
C{hub.concerns.rooms}: naming rooms, joining and leaving them, topics, and
the listings of who is where.

The façade's end-to-end tests of the same commands are in
C{tests/test_hub.py}; these check each method of the concern on its own,
including the waits on the rest of the chat (a L{FakeChat}).
"""

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tchat import events
from tchat.backplane import LocalBackplane
from tchat.commands import ROOMS_PAGE
from tchat.config import HistoryConfig, LimitsConfig
from tchat.history import MemoryStore, RoomRecord
from tchat.hub import ChatFactory
from tchat.model import Room, User
from tchat.rooms import EXPIRE_EVERY, ONLY_HERE, Rooms
from tchat.seam import IBackplane, Listing
from tests.support import FakeChat, FakeParticipant, started_hub

NOW = 1_700_000_000


class RecordingStore(MemoryStore):
    """
    An in-memory store that remembers every room it was asked to keep.
    """

    def __init__(self, config: HistoryConfig) -> None:
        super().__init__(config)
        self.saved_rooms: list[RoomRecord] = []
        self.deleted_rooms: list[str] = []

    def save_room(self, room: RoomRecord) -> None:
        self.saved_rooms.append(room)

    def delete_room(self, key: str) -> None:
        self.deleted_rooms.append(key)


class OnlyHere(LocalBackplane):
    """
    A node cut off from the rest of its chat: its listings are this node's
    own, marked partial.
    """

    def rooms(self, offset: int, count: int) -> Deferred[Listing[events.RoomInfo]]:
        return (
            super()
            .rooms(offset, count)
            .addCallback(lambda found: Listing(found.items, True, found.total))
        )

    def members(self, room: Room) -> Deferred[Listing[events.Member]]:
        return (
            super().members(room).addCallback(lambda found: Listing(found.items, True))
        )


class RoomsTestCase(SynchronousTestCase):
    """
    A hub on a L{Clock}, with history in memory and room records recorded.
    """

    history = HistoryConfig(enabled=False, replay=3)

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = RecordingStore(self.history)
        self.hub = self.make_hub()
        self.participants: list[FakeParticipant] = []

    def make_hub(
        self, backplane: IBackplane | None = None, **limits: Any
    ) -> ChatFactory:
        limits.setdefault("silent_timeout", 0)
        return started_hub(
            self,
            self.clock,
            history=self.history,
            store=self.store,
            limits=LimitsConfig(**limits),
            backplane=backplane,
        )

    @property
    def rooms(self) -> Rooms:
        return self.hub.concerns.rooms

    def connect(
        self, nick: str, door: str = "telnet", hub: ChatFactory | None = None
    ) -> tuple[FakeParticipant, User]:
        """
        A user called C{nick}, in the lobby; what everyone was told of
        their arrival is forgotten.
        """
        hub = hub if hub is not None else self.hub
        participant = FakeParticipant(door)
        user = hub.connect(participant)
        hub.concerns.presence.rename(user, nick)
        self.participants.append(participant)
        self.forget()
        return participant, user

    def forget(self) -> None:
        """Forget what every user was told so far."""
        for participant in self.participants:
            participant.take()

    def room(self, name: str) -> Room:
        found = self.hub.directory.room(name)
        assert found is not None, name
        return found

    def say(self, user: User, *texts: str) -> None:
        for text in texts:
            self.hub.concerns.talk.say(user, text, False, None, None)


class NamingTests(RoomsTestCase):
    """
    L{Rooms.name}, L{Rooms.find} and L{Rooms.joined}: what a user typed,
    as a room.
    """

    def test_name_normalised(self) -> None:
        """
        A room typed without its C{#} is given one, and nothing is said.
        """
        alice_p, alice = self.connect("alice")
        self.assertEqual(self.rooms.name(alice, "dev"), "#dev")
        self.assertEqual(alice_p.take(), [])

    def test_name_invalid(self) -> None:
        """
        An invalid name is refused, quoting what the user typed and the
        rule it breaks.
        """
        alice_p, alice = self.connect("alice")
        self.assertIsNone(self.rooms.name(alice, "no way"))
        self.assertEqual(
            alice_p.take(),
            [
                events.Error(
                    "room-invalid",
                    "'no way': a room name may hold only letters, digits, "
                    "'_' and '-' after '#'",
                )
            ],
        )

    def test_find_current(self) -> None:
        """
        No room named means the current room.
        """
        alice_p, alice = self.connect("alice")
        self.assertIs(self.rooms.find(alice, None), self.room("#lobby"))
        self.assertEqual(alice_p.take(), [])

    def test_find_no_current_room(self) -> None:
        """
        A user in no room who names none is told to name one.
        """
        alice_p, alice = self.connect("alice")
        self.rooms.part(alice, None)
        alice_p.take()
        self.assertIsNone(self.rooms.find(alice, None))
        self.assertEqual(
            alice_p.take(), [events.Error("no-room", "you are in no room; name one")]
        )

    def test_find_unknown(self) -> None:
        """
        A room nobody made is named back to the user, normalised.
        """
        alice_p, alice = self.connect("alice")
        self.assertIsNone(self.rooms.find(alice, "Nowhere"))
        self.assertEqual(
            alice_p.take(),
            [events.Error("no-such-room", "there is no room #Nowhere")],
        )
        self.assertIsNone(self.hub.directory.room("#nowhere"))

    def test_find_any_case(self) -> None:
        """
        A room is found whatever the case it is typed in, member or not.
        """
        _, alice = self.connect("alice")
        bob_p, bob = self.connect("bob")
        self.rooms.join_named(alice, "#Dev")
        self.assertIs(self.rooms.find(bob, "#DEV"), self.room("#dev"))
        self.assertEqual(bob_p.take(), [])

    def test_joined_not_member(self) -> None:
        """
        A room the user is not in is refused where they must be in it.
        """
        _, alice = self.connect("alice")
        bob_p, bob = self.connect("bob")
        self.rooms.join_named(alice, "#dev")
        bob_p.take()
        self.assertIsNone(self.rooms.joined(bob, "#dev"))
        self.assertEqual(
            bob_p.take(), [events.Error("not-in-room", "you are not in #dev")]
        )

    def test_joined_member(self) -> None:
        """
        A room the user is in is theirs to use, without a word.
        """
        alice_p, alice = self.connect("alice")
        self.rooms.join_named(alice, "#dev")
        alice_p.take()
        self.assertIs(self.rooms.joined(alice, "#lobby"), self.room("#lobby"))
        self.assertEqual(alice_p.take(), [])


class JoinNamedTests(RoomsTestCase):
    """
    L{Rooms.join_named}: C{/join ROOM}.
    """

    def test_creates_the_room(self) -> None:
        """
        Joining a room nobody is in makes it; the user is in it, talks
        there, and is told of their own arrival with the room's epoch.
        """
        alice_p, alice = self.connect("alice")
        done = self.rooms.join_named(alice, "dev")
        assert done is not None
        self.successResultOf(done)
        dev = self.room("#dev")
        self.assertIs(alice.current, dev)
        self.assertEqual(list(dev.members), [alice])
        self.assertEqual(
            alice_p.take(),
            [
                events.Presence(
                    NOW, "join", "alice", "telnet", "#dev", epoch=dev.epoch, last_id=0
                )
            ],
        )

    def test_already_joined_switches(self) -> None:
        """
        Joining a room one is in makes it current, with a status to the
        user and nothing to the other members.
        """
        alice_p, alice = self.connect("alice")
        bob_p, _ = self.connect("bob")
        self.rooms.join_named(alice, "#dev")
        alice_p.take()
        bob_p.take()
        self.assertIsNone(self.rooms.join_named(alice, "LOBBY"))
        self.assertIs(alice.current, self.room("#lobby"))
        self.assertEqual(alice_p.take(), [events.Status("now talking in #lobby")])
        self.assertEqual(bob_p.take(), [])
        self.assertEqual(len(self.room("#lobby").members), 2)

    def test_invalid(self) -> None:
        """
        An invalid name is refused and no room is made.
        """
        alice_p, alice = self.connect("alice")
        rooms = set(self.hub.directory.rooms)
        self.assertIsNone(self.rooms.join_named(alice, "#a b"))
        (error,) = alice_p.take()
        assert isinstance(error, events.Error)
        self.assertEqual(error.code, "room-invalid")
        self.assertEqual(set(self.hub.directory.rooms), rooms)

    def test_too_many_rooms(self) -> None:
        """
        Past C{max_rooms_per_user}, a join is refused with the pacing's
        reason, and the room is not made.
        """
        self.hub = self.make_hub(max_rooms_per_user=2)
        alice_p, alice = self.connect("alice")
        self.rooms.join_named(alice, "#a")
        alice_p.take()
        self.assertIsNone(self.rooms.join_named(alice, "#b"))
        self.assertEqual(
            alice_p.take(),
            [
                events.Error(
                    "too-many-rooms",
                    "one user may be in 2 rooms at most; /part one first",
                )
            ],
        )
        self.assertIsNone(self.hub.directory.room("#b"))
        self.assertEqual([r.name for r in alice.rooms], ["#lobby", "#a"])

    def test_joins_per_minute(self) -> None:
        """
        Past C{joins_per_minute}, a join is refused until the minute is
        up; switching to a room one is in is not a join and still works.
        """
        self.hub = self.make_hub(joins_per_minute=1)
        alice_p, alice = self.connect("alice")
        self.rooms.join_named(alice, "#a")
        alice_p.take()
        self.rooms.join_named(alice, "#b")
        self.assertEqual(
            alice_p.take(),
            [
                events.Error(
                    "rate-limited",
                    "too many joins (at most 1 a minute); try again in a minute",
                )
            ],
        )
        self.assertIsNone(self.hub.directory.room("#b"))
        self.rooms.join_named(alice, "#lobby")
        self.assertEqual(alice_p.take(), [events.Status("now talking in #lobby")])
        self.clock.advance(60)
        self.rooms.join_named(alice, "#b")
        self.assertIs(alice.current, self.room("#b"))

    def test_room_full(self) -> None:
        """
        Past C{max_users_per_room}, a join is refused with the pacing's
        reason; the members hear nothing.
        """
        self.hub = self.make_hub(max_users_per_room=1)
        bob_p, bob = self.connect("bob")
        self.rooms.join_named(bob, "#dev")
        bob_p.take()
        alice_p, alice = self.connect("alice")
        self.rooms.join_named(alice, "#dev")
        self.assertEqual(
            alice_p.take(),
            [events.Error("room-full", "#dev is full (1 user); /join another room")],
        )
        self.assertEqual(list(self.room("#dev").members), [bob])
        self.assertNotIn(self.room("#dev"), alice.rooms)
        self.assertEqual(bob_p.take(), [])


class WithRoomsTests(RoomsTestCase):
    """
    L{Rooms.with_rooms}: nobody is shown a room new to this node before the
    rest of the chat has described it (the backplane's C{ensure}).
    """

    def setUp(self) -> None:
        super().setUp()
        self.chat = FakeChat()
        self.hub = self.make_hub(self.chat.node("a"))

    def test_waits_for_the_chat(self) -> None:
        """
        C{then} runs only once the backplane's C{ensure} has answered, and
        what it waits on is returned.
        """
        _, alice = self.connect("alice")
        ran: list[str] = []
        self.chat.hold()
        pending = self.rooms.with_rooms(alice, ["#dev"], lambda: ran.append("then"))
        assert pending is not None
        self.assertEqual(ran, [])
        self.assertNoResult(pending)
        self.chat.release()
        self.assertEqual(ran, ["then"])
        self.successResultOf(pending)

    def test_join_shown_after_the_chat_answers(self) -> None:
        """
        C{/join} of a room new to this node shows the user nothing, and
        puts them nowhere, until the chat has described the room.
        """
        alice_p, alice = self.connect("alice")
        self.chat.hold()
        self.rooms.join_named(alice, "#dev")
        self.assertEqual(alice_p.take(), [])
        self.assertIs(alice.current, self.room("#lobby"))
        self.chat.release()
        (joined,) = alice_p.take()
        assert isinstance(joined, events.Presence)
        self.assertEqual((joined.kind, joined.room), ("join", "#dev"))
        self.assertIs(alice.current, self.room("#dev"))

    def test_not_if_gone(self) -> None:
        """
        A user who left while the chat was asked is not put in the room,
        and the room made for them is forgotten.
        """
        alice_p, alice = self.connect("alice")
        ran: list[str] = []
        self.chat.hold()
        self.rooms.with_rooms(alice, ["#dev"], lambda: ran.append("then"))
        self.hub.concerns.presence.disconnect(alice, "reset")
        self.chat.release()
        self.assertEqual(ran, [])
        self.assertIsNone(self.hub.directory.room("#dev"))

    def test_empty_room_forgotten(self) -> None:
        """
        Rooms made for the wait that nobody joined in the end leave no
        trace; one that was joined stays.
        """
        alice_p, alice = self.connect("alice")
        self.chat.hold()
        self.rooms.with_rooms(
            alice,
            ["#dev", "#ops"],
            lambda: self.rooms.join(alice, self.room("#ops")),
        )
        self.chat.release()
        self.assertIsNone(self.hub.directory.room("#dev"))
        self.assertIn(alice, self.room("#ops").members)

    def test_gone_during_join(self) -> None:
        """
        A C{/join} whose user left while the chat was asked is dropped: no
        room is left behind and nobody is told of a join.
        """
        _, alice = self.connect("alice")
        bob_p, _ = self.connect("bob")
        self.chat.hold()
        self.rooms.join_named(alice, "#dev")
        self.hub.concerns.presence.disconnect(alice, "reset")
        bob_p.take()
        self.chat.release()
        self.assertIsNone(self.hub.directory.room("#dev"))
        self.assertEqual(bob_p.take(), [])


class JoinTests(RoomsTestCase):
    """
    L{Rooms.join}: into a room, with its latest messages.
    """

    def setUp(self) -> None:
        super().setUp()
        self.alice_p, self.alice = self.connect("alice")
        self.bob_p, self.bob = self.connect("bob")
        self.rooms.join_named(self.alice, "#dev")
        self.say(self.alice, *(f"m{i}" for i in range(1, 6)))
        self.alice_p.take()
        self.bob_p.take()
        self.dev = self.room("#dev")

    def test_replay(self) -> None:
        """
        The joiner is told of their arrival (with the room's epoch and its
        latest id), then shown the latest C{[history] replay} messages;
        the members see the join notice.
        """
        self.rooms.join(self.bob, self.dev)
        notice = events.Presence(
            NOW, "join", "bob", "telnet", "#dev", epoch=self.dev.epoch, last_id=5
        )
        received = self.bob_p.take()
        self.assertEqual(received[0], notice)
        history = received[1]
        assert isinstance(history, events.History)
        self.assertEqual(
            (history.room, history.epoch, history.reason),
            ("#dev", self.dev.epoch, "join"),
        )
        self.assertEqual([m.text for m in history.messages], ["m3", "m4", "m5"])
        self.assertEqual(len(received), 2)
        self.assertEqual(self.alice_p.take(), [notice])
        self.assertIs(self.bob.current, self.dev)

    def test_no_replay(self) -> None:
        """
        With C{replay=False} (a resume sends what was missed instead) the
        joiner is shown no earlier messages, and is given the room from the
        next message on.
        """
        self.rooms.join(self.bob, self.dev, replay=False)
        (notice,) = self.bob_p.take()
        assert isinstance(notice, events.Presence)
        self.assertEqual((notice.kind, notice.last_id), ("join", 5))
        self.assertEqual(self.dev.members[self.bob], 6)
        self.say(self.alice, "m6")
        (message,) = self.bob_p.take()
        assert isinstance(message, events.RoomMessage)
        self.assertEqual((message.id, message.text), (6, "m6"))

    def test_epoch_and_last_id_of_an_empty_room(self) -> None:
        """
        Even in a room where nothing was said, members learn its epoch
        and that its latest id is 0.
        """
        self.rooms.join_named(self.alice, "#quiet")
        self.alice_p.take()
        quiet = self.room("#quiet")
        self.rooms.join(self.bob, quiet)
        notice = events.Presence(
            NOW, "join", "bob", "telnet", "#quiet", epoch=quiet.epoch, last_id=0
        )
        self.assertEqual(self.bob_p.take(), [notice])
        self.assertEqual(self.alice_p.take(), [notice])


class NoReplayTests(RoomsTestCase):
    """
    C{[history] replay = 0}.
    """

    history = HistoryConfig(enabled=False, replay=0)

    def test_nothing_shown(self) -> None:
        """
        A joiner is shown no earlier messages at all.
        """
        _, alice = self.connect("alice")
        bob_p, bob = self.connect("bob")
        self.rooms.join_named(alice, "#dev")
        self.say(alice, "one", "two")
        self.rooms.join_named(bob, "#dev")
        received = bob_p.take()
        self.assertEqual([type(e) for e in received], [events.Presence])


class PartTests(RoomsTestCase):
    """
    L{Rooms.part} (C{/part}) and L{Rooms.part_from}.
    """

    def test_part_current(self) -> None:
        """
        Leaving the current room tells its members (the leaver too), and
        the leaver where they talk now.
        """
        alice_p, alice = self.connect("alice")
        bob_p, bob = self.connect("bob")
        self.rooms.join_named(alice, "#dev")
        self.rooms.join_named(bob, "#dev")
        alice_p.take()
        bob_p.take()
        self.rooms.part(bob, None)
        notice = events.Presence(NOW, "part", "bob", "telnet", "#dev")
        self.assertEqual(alice_p.take(), [notice])
        self.assertEqual(bob_p.take(), [notice, events.Status("now talking in #lobby")])
        self.assertEqual(list(self.room("#dev").members), [alice])

    def test_part_other_room(self) -> None:
        """
        Leaving a room that is not the current one keeps the current one.
        """
        alice_p, alice = self.connect("alice")
        self.rooms.join_named(alice, "#dev")
        alice_p.take()
        self.rooms.part(alice, "#lobby")
        self.assertEqual(alice_p.take()[-1], events.Status("now talking in #dev"))
        self.assertEqual(alice.rooms, [self.room("#dev")])

    def test_part_last_room(self) -> None:
        """
        Leaving one's last room says how to join another; the default room
        stays, empty.
        """
        alice_p, alice = self.connect("alice")
        self.rooms.part(alice, None)
        self.assertEqual(
            alice_p.take()[-1], events.Status("you are in no room now; /join #room")
        )
        self.assertIsNone(alice.current)
        self.assertEqual(self.room("#lobby").members, {})

    def test_part_refused(self) -> None:
        """
        Leaving a room one is not in is refused, and nobody is told of it.
        """
        alice_p, alice = self.connect("alice")
        bob_p, bob = self.connect("bob")
        self.rooms.join_named(alice, "#dev")
        alice_p.take()
        bob_p.take()
        self.rooms.part(bob, "#dev")
        self.assertEqual(
            bob_p.take(), [events.Error("not-in-room", "you are not in #dev")]
        )
        self.assertEqual(alice_p.take(), [])

    def test_empty_room_forgotten(self) -> None:
        """
        A room emptied where nothing was said and no topic set is
        forgotten: C{/rooms} no longer lists it.
        """
        alice_p, alice = self.connect("alice")
        self.rooms.join_named(alice, "#dev")
        self.rooms.part(alice, "#dev")
        self.assertIsNone(self.hub.directory.room("#dev"))
        alice_p.take()
        self.rooms.list_rooms(alice)
        self.assertEqual(
            alice_p.take(), [events.RoomList((events.RoomInfo("#lobby", 1, None),))]
        )

    def test_room_with_history_kept(self) -> None:
        """
        A room emptied after something was said in it is kept, with its
        latest id, so whoever joins next carries on its numbering.
        """
        _, alice = self.connect("alice")
        self.rooms.join_named(alice, "#dev")
        self.say(alice, "hello")
        self.rooms.part(alice, "#dev")
        dev = self.room("#dev")
        self.assertEqual((dev.members, dev.last_id), ({}, 1))

    def test_part_from(self) -> None:
        """
        L{Rooms.part_from} takes the user out and tells the members,
        without a status to the user (its callers say what they must).
        """
        alice_p, alice = self.connect("alice")
        bob_p, bob = self.connect("bob")
        self.rooms.part_from(bob, self.room("#lobby"))
        notice = events.Presence(NOW, "part", "bob", "telnet", "#lobby")
        self.assertEqual(alice_p.take(), [notice])
        self.assertEqual(bob_p.take(), [notice])
        self.assertEqual(bob.rooms, [])
        self.assertIsNone(bob.current)


class ListingTests(RoomsTestCase):
    """
    L{Rooms.list_rooms} (C{/rooms}) and L{Rooms.who} (C{/who}).
    """

    def test_whole_chat(self) -> None:
        """
        A listing of the whole chat is given without any warning.
        """
        alice_p, alice = self.connect("alice")
        self.connect("bob", door="web")
        self.rooms.list_rooms(alice)
        self.rooms.who(alice, None)
        self.assertEqual(
            alice_p.take(),
            [
                events.RoomList((events.RoomInfo("#lobby", 2, None),)),
                events.Who(
                    "#lobby",
                    (events.Member("alice", "telnet"), events.Member("bob", "web")),
                ),
            ],
        )

    def test_paged(self) -> None:
        """
        Past one page of rooms, C{/rooms} answers with one page, by name,
        saying which and how many there are, so that the answer stays
        small however many rooms exist; a page past the last is an error.
        """
        alice_p, alice = self.connect("alice")
        for n in range(ROOMS_PAGE + 50):
            self.hub.directory.new_room(f"#r{n:03}").stored = True
        total = ROOMS_PAGE + 51
        self.rooms.list_rooms(alice)
        (first,) = alice_p.take()
        assert isinstance(first, events.RoomList)
        self.assertEqual(
            (len(first.rooms), first.page, first.pages, first.total),
            (ROOMS_PAGE, 1, 2, total),
        )
        self.assertEqual(first.rooms[0].name, "#lobby")
        self.rooms.list_rooms(alice, 2)
        (second,) = alice_p.take()
        assert isinstance(second, events.RoomList)
        self.assertEqual(
            [r.name for r in second.rooms], [f"#r{n:03}" for n in range(99, 150)]
        )
        self.rooms.list_rooms(alice, 3)
        self.assertEqual(
            alice_p.take(),
            [events.Error("bad-arguments", "there are only 2 pages of rooms")],
        )

    def test_only_this_node(self) -> None:
        """
        When only this node could answer, the user is first told that the
        listing covers only this server, then given it.
        """
        self.hub = self.make_hub(OnlyHere(self.store))
        alice_p, alice = self.connect("alice")
        self.rooms.list_rooms(alice)
        self.rooms.who(alice, "#lobby")
        self.assertEqual(
            alice_p.take(),
            [
                events.Status(ONLY_HERE),
                events.RoomList((events.RoomInfo("#lobby", 1, None),)),
                events.Status(ONLY_HERE),
                events.Who("#lobby", (events.Member("alice", "telnet"),)),
            ],
        )

    def test_who_unknown_room(self) -> None:
        """
        C{/who} of a room that does not exist is refused, asking nothing
        of the chat.
        """
        alice_p, alice = self.connect("alice")
        self.assertIsNone(self.rooms.who(alice, "#nowhere"))
        self.assertEqual(
            alice_p.take(),
            [events.Error("no-such-room", "there is no room #nowhere")],
        )

    def test_across_nodes(self) -> None:
        """
        C{/who} and C{/rooms} count the members of every node, once the
        chat has answered.
        """
        chat = FakeChat()
        self.hub = self.make_hub(chat.node("a"))
        other = self.make_hub(chat.node("b"))
        alice_p, alice = self.connect("alice")
        self.connect("bob", door="web", hub=other)
        alice_p.take()
        chat.hold()
        self.rooms.who(alice, None)
        self.rooms.list_rooms(alice)
        self.assertEqual(alice_p.take(), [])
        chat.release()
        self.assertEqual(
            alice_p.take(),
            [
                events.Who(
                    "#lobby",
                    (events.Member("alice", "telnet"), events.Member("bob", "web")),
                ),
                events.RoomList((events.RoomInfo("#lobby", 2, None),)),
            ],
        )

    def test_gone_before_the_answer(self) -> None:
        """
        A user who left before the chat answered is told nothing.
        """
        chat = FakeChat()
        self.hub = self.make_hub(chat.node("a"))
        alice_p, alice = self.connect("alice")
        chat.hold()
        self.rooms.list_rooms(alice)
        self.rooms.who(alice, None)
        self.hub.concerns.presence.disconnect(alice, "reset")
        chat.release()
        self.assertEqual(alice_p.take(), [])


class TopicTests(RoomsTestCase):
    """
    L{Rooms.topic} (C{/topic}) and L{Rooms.topic_changed}.
    """

    def test_show_none(self) -> None:
        """
        C{/topic} in a room without one says so.
        """
        alice_p, alice = self.connect("alice")
        self.rooms.topic(alice, None)
        self.assertEqual(alice_p.take(), [events.Topic("#lobby", None, None)])

    def test_set(self) -> None:
        """
        Setting a topic tells the room's members the cleaned text and who
        set it; the store keeps it; C{/topic} then shows it.
        """
        alice_p, alice = self.connect("alice")
        bob_p, bob = self.connect("bob")
        carol_p, carol = self.connect("carol")
        self.rooms.part(carol, None)
        self.forget()
        self.rooms.topic(alice, "  ship \x1b[5mit  ")
        changed = events.TopicChanged(NOW, "#lobby", "alice", "ship it")
        self.assertEqual(alice_p.take(), [changed])
        self.assertEqual(bob_p.take(), [changed])
        self.assertEqual(carol_p.take(), [])
        record = self.store.saved_rooms[-1]
        self.assertEqual(
            (record.name, record.topic, record.topic_by),
            ("#lobby", "ship it", "alice"),
        )
        self.rooms.topic(bob, None)
        self.assertEqual(bob_p.take(), [events.Topic("#lobby", "ship it", "alice")])

    def test_clear(self) -> None:
        """
        A blank topic clears it: the room is told, and the store keeps
        none.
        """
        alice_p, alice = self.connect("alice")
        self.rooms.topic(alice, "ship it")
        self.rooms.topic(alice, "   ")
        self.assertEqual(
            alice_p.take()[-1], events.TopicChanged(NOW, "#lobby", "alice", "")
        )
        self.assertIsNone(self.store.saved_rooms[-1].topic)
        self.rooms.topic(alice, None)
        self.assertEqual(alice_p.take(), [events.Topic("#lobby", None, "alice")])

    def test_forgotten_when_emptied(self) -> None:
        """
        A room with a topic where nothing was said is forgotten, topic and
        all, when its last member leaves (a topic alone does not keep a
        room, as it does not on IRC): the store is told, and C{/rooms} no
        longer shows it.
        """
        alice_p, alice = self.connect("alice")
        self.rooms.join_named(alice, "#dev")
        self.rooms.topic(alice, "builds")
        self.rooms.part(alice, "#dev")
        alice_p.take()
        self.assertEqual(self.store.deleted_rooms, ["#dev"])
        self.rooms.list_rooms(alice)
        self.assertEqual(
            alice_p.take(),
            [events.RoomList((events.RoomInfo("#lobby", 1, None),))],
        )

    def test_kept_with_history(self) -> None:
        """
        A room where something was said stays when emptied, with its topic,
        until nobody has been in it for C{room_ttl}; then it is forgotten,
        history and all (the default room never is).
        """
        alice_p, alice = self.connect("alice")
        self.rooms.join_named(alice, "#dev")
        self.rooms.topic(alice, "builds")
        self.hub.directory.rooms["#dev"].last_id = 5
        self.rooms.part(alice, "#dev")
        alice_p.take()
        self.rooms.list_rooms(alice)
        (listing,) = alice_p.take()
        self.assertIn(events.RoomInfo("#dev", 0, "builds"), listing.rooms)  # type: ignore[attr-defined]
        ttl = self.hub.settings.history.room_ttl
        self.clock.advance(ttl - 1)
        self.rooms.expire()
        self.assertIn("#dev", self.hub.directory.rooms)
        self.clock.advance(EXPIRE_EVERY)
        self.rooms.expire()
        self.assertNotIn("#dev", self.hub.directory.rooms)
        self.assertIn("#lobby", self.hub.directory.rooms)
        self.assertEqual(self.store.deleted_rooms, ["#dev"])

    def test_no_room(self) -> None:
        """
        C{/topic} in no room says to join one, and keeps nothing.
        """
        alice_p, alice = self.connect("alice")
        self.rooms.part(alice, None)
        alice_p.take()
        saved = len(self.store.saved_rooms)
        self.rooms.topic(alice, "hello")
        self.assertEqual(
            alice_p.take(),
            [events.Error("no-room", "you are in no room; /join #room first")],
        )
        self.assertEqual(len(self.store.saved_rooms), saved)

    def test_changed_elsewhere(self) -> None:
        """
        A topic set on another node is what C{/topic} shows here; an empty
        one clears it.
        """
        alice_p, alice = self.connect("alice")
        self.rooms.topic_changed(events.TopicChanged(NOW, "#LOBBY", "zed", "news"))
        self.rooms.topic(alice, None)
        self.assertEqual(alice_p.take(), [events.Topic("#lobby", "news", "zed")])
        self.rooms.topic_changed(events.TopicChanged(NOW, "#lobby", "yan", ""))
        self.rooms.topic(alice, None)
        self.assertEqual(alice_p.take(), [events.Topic("#lobby", None, "yan")])

    def test_changed_elsewhere_unknown_room(self) -> None:
        """
        A topic of a room this node does not know makes no room here.
        """
        self.rooms.topic_changed(events.TopicChanged(NOW, "#far", "zed", "news"))
        self.assertIsNone(self.hub.directory.room("#far"))

    def test_across_nodes(self) -> None:
        """
        A topic set on one node is told to the room's members on another,
        whose C{/topic} then shows it.
        """
        chat = FakeChat()
        self.hub = self.make_hub(chat.node("a"))
        other = self.make_hub(chat.node("b"))
        _, alice = self.connect("alice")
        bob_p, bob = self.connect("bob", hub=other)
        self.rooms.topic(alice, "news")
        self.assertEqual(
            bob_p.take(), [events.TopicChanged(NOW, "#lobby", "alice", "news")]
        )
        other.concerns.rooms.topic(bob, None)
        self.assertEqual(bob_p.take(), [events.Topic("#lobby", "news", "alice")])
