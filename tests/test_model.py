# -*- test-case-name: tests.test_model -*-
"""
Tests for L{tchat.model}: a room's numbering, epochs, retry tags and replay
buffer (L{Room}), and the directory of users and rooms (L{Directory}),
driven directly, without a hub.
"""

from collections import deque

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tchat import events
from tchat.config import HistoryConfig, ServerConfig
from tchat.history import Loaded, RoomRecord
from tchat.model import Directory, Room, Settings, User, arrival
from tchat.palette import PALETTE
from tests.support import FakeParticipant

EPOCH = 1_000


def said(
    id: int, client_id: str | None = None, epoch: int = EPOCH, room: str = "#dev"
) -> events.RoomMessage:
    """A kept message of C{room}, numbered C{id}."""
    return events.RoomMessage(
        room,
        id,
        1_700_000_000.0 + id,
        "alice",
        "telnet",
        PALETTE["red"],
        f"message {id}",
        client_id=client_id,
        epoch=epoch,
    )


def make_room(name: str = "#dev", replay: int = 20) -> Room:
    """A room as the directory makes it, in epoch L{EPOCH}."""
    room = Room(name, EPOCH, deque(maxlen=replay))
    room.lineage = [(EPOCH, 1)]
    return room


def make_user(nick: str, door: str = "telnet", code: str = "") -> User:
    """A user connected through C{door}."""
    return User(FakeParticipant(door), nick, door, PALETTE["blue"], code=code or nick)


class TakeTests(SynchronousTestCase):
    """
    L{Room.take}: a numbered, kept message becomes the room's latest.
    """

    def test_latest_id_and_replay(self) -> None:
        """
        The message's id becomes the room's latest and the latest shown,
        and it is replayed on join after those before it.
        """
        room = make_room()
        first, second = said(1), said(2)
        room.take(first, keep=100)
        room.take(second, keep=100)
        self.assertEqual((room.last_id, room.delivered_id), (2, 2))
        self.assertEqual(list(room.recent), [first, second])

    def test_catches_up_delivered(self) -> None:
        """
        A message that waited to be kept brings C{delivered_id} level with
        C{last_id} again.
        """
        room = make_room()
        room.last_id, room.delivered_id = 7, 5
        room.take(said(7), keep=100)
        self.assertEqual((room.last_id, room.delivered_id), (7, 7))

    def test_replay_bounded(self) -> None:
        """
        Only the latest messages, as many as the replay buffer holds, are
        replayed.
        """
        room = make_room(replay=2)
        for id in (1, 2, 3):
            room.take(said(id), keep=100)
        self.assertEqual([m.id for m in room.recent], [2, 3])

    def test_new_epoch_in_lineage_once(self) -> None:
        """
        A message of a new epoch moves the room into it and records where it
        began; later messages of that epoch leave the lineage alone.
        """
        room = make_room()
        room.take(said(1), keep=100)
        room.take(said(2, epoch=2_000), keep=100)
        room.take(said(3, epoch=2_000), keep=100)
        self.assertEqual(room.epoch, 2_000)
        self.assertEqual(room.lineage, [(EPOCH, 1), (2_000, 2)])

    def test_known_epoch_not_repeated(self) -> None:
        """
        A message of an epoch the lineage already has moves the room back
        into it without recording it a second time.
        """
        room = make_room()
        room.lineage.append((2_000, 5))
        room.epoch = 2_000
        room.take(said(6, epoch=EPOCH), keep=100)
        self.assertEqual(room.epoch, EPOCH)
        self.assertEqual(room.lineage, [(EPOCH, 1), (2_000, 5)])

    def test_remembers_client_tags(self) -> None:
        """
        A message with a client tag is found by it (to recognise a retry);
        one without is not remembered.
        """
        room = make_room()
        tagged = said(1, client_id="c1")
        room.take(tagged, keep=100)
        room.take(said(2), keep=100)
        self.assertEqual(room.tagged, {"c1": tagged})

    def test_forgets_tags_past_keep(self) -> None:
        """
        Tags of messages that fall out of the kept history are forgotten,
        oldest first; the newer ones stay.
        """
        room = make_room()
        room.take(said(1, client_id="a"), keep=3)
        room.take(said(2, client_id="b"), keep=3)
        room.take(said(3), keep=3)
        self.assertEqual(set(room.tagged), {"a", "b"})
        room.take(said(4, client_id="d"), keep=3)
        self.assertEqual(set(room.tagged), {"b", "d"})
        room.take(said(5), keep=3)
        self.assertEqual(set(room.tagged), {"d"})

    def test_pruned_to_follows_keep(self) -> None:
        """
        What falls out of the kept history is marked pruned; the mark never
        moves back.
        """
        room = make_room()
        room.take(said(1), keep=3)
        self.assertEqual(room.pruned_to, 0)
        room.take(said(10), keep=3)
        self.assertEqual(room.pruned_to, 7)
        room.pruned_to = 50
        room.take(said(11), keep=3)
        self.assertEqual(room.pruned_to, 50)


class RoomTests(SynchronousTestCase):
    """
    L{Room.split}, L{Room.adopt}, L{Room.refill} and L{Room.record}.
    """

    def test_split_next_epoch(self) -> None:
        """
        Splitting starts an epoch newer than the current one, beginning with
        the next id, even when the epoch offered is older.
        """
        room = make_room()
        room.last_id = 7
        room.split(5)
        self.assertEqual(room.epoch, EPOCH + 1)
        self.assertEqual(room.lineage, [(EPOCH, 1), (EPOCH + 1, 8)])

    def test_split_fresh_epoch(self) -> None:
        """
        A fresh epoch newer than the current one is taken as it is.
        """
        room = make_room()
        room.last_id = 3
        room.split(9_000)
        self.assertEqual(room.epoch, 9_000)
        self.assertEqual(room.lineage[-1], (9_000, 4))

    def test_adopt(self) -> None:
        """
        Another node's view replaces the room's epoch, lineage, latest id
        and topic, and marks it known to the store.
        """
        room = make_room()
        record = RoomRecord(
            "#dev", "#dev", 3_000, [(EPOCH, 1), (3_000, 4)], 9, 2, "hi", "bob"
        )
        room.adopt(record)
        self.assertEqual(room.epoch, 3_000)
        self.assertEqual(room.lineage, [(EPOCH, 1), (3_000, 4)])
        self.assertEqual((room.last_id, room.delivered_id, room.pruned_to), (9, 9, 2))
        self.assertEqual((room.topic, room.topic_by), ("hi", "bob"))
        self.assertTrue(room.stored)
        room.lineage.append((4_000, 10))
        self.assertEqual(record.lineage, [(EPOCH, 1), (3_000, 4)])

    def test_adopt_extends_lineage(self) -> None:
        """
        When the record's epoch is not the last of its lineage, the room's
        lineage gains it, beginning after the record's latest id.
        """
        room = make_room()
        room.adopt(RoomRecord("#dev", "#dev", 3_000, [(EPOCH, 1)], 9))
        self.assertEqual(room.lineage, [(EPOCH, 1), (3_000, 10)])
        other = make_room()
        other.adopt(RoomRecord("#dev", "#dev", 3_000, [], 0))
        self.assertEqual(other.lineage, [(3_000, 1)])

    def test_adopt_keeps_later_prune(self) -> None:
        """
        What this node already pruned stays pruned when the record says
        less was.
        """
        room = make_room()
        room.pruned_to = 6
        room.adopt(RoomRecord("#dev", "#dev", EPOCH, [(EPOCH, 1)], 9, 2))
        self.assertEqual(room.pruned_to, 6)

    def test_refill(self) -> None:
        """
        Refilling replaces what is replayed and the tags known with those of
        the messages given.
        """
        room = make_room()
        room.take(said(1, client_id="old"), keep=100)
        latest = [said(5), said(6, client_id="new")]
        room.refill(latest)
        self.assertEqual(list(room.recent), latest)
        self.assertEqual(room.tagged, {"new": latest[1]})

    def test_record(self) -> None:
        """
        The record of a room is what the store keeps of it, under its key,
        with a lineage of its own.
        """
        room = make_room("#Dev")
        room.last_id, room.pruned_to = 12, 3
        room.topic, room.topic_by = "plans", "carol"
        record = room.record()
        self.assertEqual(
            record,
            RoomRecord("#dev", "#Dev", EPOCH, [(EPOCH, 1)], 12, 3, "plans", "carol"),
        )
        record.lineage.append((2_000, 13))
        self.assertEqual(room.lineage, [(EPOCH, 1)])


class ArrivalTests(SynchronousTestCase):
    def test_arrival(self) -> None:
        """
        The notice of a user in a room names them, their door and the room,
        with its epoch and the latest id shown there (not one still waiting
        to be kept).
        """
        room = make_room("#Dev")
        room.last_id, room.delivered_id = 9, 8
        self.assertEqual(
            arrival(make_user("alice", "web"), room, 5.0),
            events.Presence(
                5.0, "join", "alice", "web", room="#Dev", epoch=EPOCH, last_id=8
            ),
        )


class DirectoryTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000.25)
        self.settings = Settings(
            ServerConfig(reconnect_grace=0, default_room="#Lobby"),
            HistoryConfig(keep=100, replay=5),
        )
        self.directory = Directory(self.clock, self.settings)

    def arrive(self, nick: str, door: str = "telnet") -> User:
        user = make_user(nick, door)
        self.directory.add(user)
        return user


class DirectoryRoomTests(DirectoryTestCase):
    """
    Rooms by name, and the default room.
    """

    def test_default_room_made(self) -> None:
        """
        A new directory has the default room, in an epoch taken from the
        clock in milliseconds, starting at id 1.
        """
        (room,) = self.directory.rooms.values()
        self.assertEqual(room.name, "#Lobby")
        self.assertEqual(room.epoch, 1_700_000_000_250)
        self.assertEqual(room.lineage, [(1_700_000_000_250, 1)])

    def test_new_room_case_insensitive(self) -> None:
        """
        A room is found by its name in any case, and a new room of the same
        key replaces it.
        """
        room = self.directory.new_room("#Dev", epoch=42)
        self.assertIs(self.directory.room("#DEV"), room)
        self.assertEqual((room.epoch, room.lineage), (42, [(42, 1)]))
        self.assertIsNone(self.directory.room("#other"))
        again = self.directory.new_room("#dev")
        self.assertIs(self.directory.room("#Dev"), again)

    def test_replay_buffer_size(self) -> None:
        """
        A room replays as many messages as C{replay} says, never more than
        are kept, and keeps one even when replay is off.
        """
        self.assertEqual(self.directory.new_room("#a").recent.maxlen, 5)
        self.settings.history = HistoryConfig(keep=3, replay=20)
        self.assertEqual(self.directory.new_room("#b").recent.maxlen, 3)
        self.settings.history = HistoryConfig(replay=0)
        self.assertEqual(self.directory.new_room("#c").recent.maxlen, 1)

    def test_lobby_made_if_missing(self) -> None:
        """
        The lobby is the default room; when it is gone it is made again, once.
        """
        lobby = self.directory.lobby
        self.assertIs(self.directory.room("#lobby"), lobby)
        self.directory.rooms.clear()
        made = self.directory.lobby
        self.assertIsNot(made, lobby)
        self.assertEqual(made.name, "#Lobby")
        self.assertIs(self.directory.lobby, made)

    def test_resize_replay(self) -> None:
        """
        A new C{replay} setting resizes every room's replay buffer, keeping
        the latest messages.
        """
        room = self.directory.new_room("#dev")
        for id in range(1, 6):
            room.take(said(id), keep=100)
        self.settings.history = HistoryConfig(keep=100, replay=2)
        self.directory.resize_replay()
        self.assertEqual([m.id for m in room.recent], [4, 5])
        self.assertEqual(self.directory.lobby.recent.maxlen, 2)
        room.take(said(6), keep=100)
        self.assertEqual([m.id for m in room.recent], [5, 6])

    def test_restore(self) -> None:
        """
        Restoring makes the stored rooms with their epochs, lineage, ids,
        topics, latest messages and retry tags; what is older than C{keep}
        counts as pruned.
        """
        tagged = said(150, client_id="t")
        found = Loaded(
            rooms=[
                RoomRecord(
                    "#dev", "#Dev", 2_000, [(EPOCH, 1), (2_000, 90)], 160, 10, "t", "x"
                ),
                RoomRecord("#quiet", "#quiet", 3_000, [(3_000, 1)], 4, 0),
            ],
            recent={"#dev": [said(159), said(160)]},
            tagged={"#dev": [tagged]},
        )
        self.directory.restore(found)
        dev = self.directory.room("#dev")
        assert dev is not None
        self.assertEqual(dev.name, "#Dev")
        self.assertEqual((dev.epoch, dev.lineage), (2_000, [(EPOCH, 1), (2_000, 90)]))
        self.assertEqual((dev.last_id, dev.delivered_id), (160, 160))
        self.assertEqual(dev.pruned_to, 60)
        self.assertEqual((dev.topic, dev.topic_by), ("t", "x"))
        self.assertEqual([m.id for m in dev.recent], [159, 160])
        self.assertEqual(dev.tagged, {"t": tagged})
        self.assertTrue(dev.stored)
        quiet = self.directory.room("#quiet")
        assert quiet is not None
        self.assertEqual(
            (quiet.last_id, quiet.pruned_to, list(quiet.recent)), (4, 0, [])
        )
        self.assertTrue(quiet.stored)


class DirectoryUserTests(DirectoryTestCase):
    """
    Users by nick and by resume code.
    """

    def test_add_case_insensitive(self) -> None:
        """
        An arrived user is found by their nick in any case and by their code.
        """
        alice = self.arrive("Alice")
        self.assertIs(self.directory.user("ALICE"), alice)
        self.assertIs(self.directory.codes["Alice"], alice)
        self.assertIsNone(self.directory.user("bob"))

    def test_remove(self) -> None:
        """
        A user who left is found neither by nick nor by code.
        """
        alice = self.arrive("alice")
        self.directory.remove(alice)
        self.assertIsNone(self.directory.user("alice"))
        self.assertNotIn("alice", self.directory.codes)

    def test_remove_spares_successor(self) -> None:
        """
        Removing a user whose nick and code someone else has now (a resumed
        session) leaves that someone in place.
        """
        old = make_user("alice", code="CODE-0001")
        self.directory.add(old)
        new = make_user("Alice", code="CODE-0001")
        self.directory.add(new)
        self.directory.remove(old)
        self.assertIs(self.directory.user("alice"), new)
        self.assertIs(self.directory.codes["CODE-0001"], new)

    def test_rename(self) -> None:
        """
        A renamed user is found by their new nick only.
        """
        alice = self.arrive("alice")
        self.directory.rename(alice, "Wes")
        self.assertEqual(alice.nick, "Wes")
        self.assertIs(self.directory.user("wes"), alice)
        self.assertIsNone(self.directory.user("alice"))

    def test_recode(self) -> None:
        """
        A user given a new code is found by it and no longer by the old one.
        """
        alice = self.arrive("alice")
        self.directory.recode(alice, "ABCD-EFGH")
        self.assertEqual(alice.code, "ABCD-EFGH")
        self.assertIs(self.directory.codes["ABCD-EFGH"], alice)
        self.assertNotIn("alice", self.directory.codes)

    def test_recode_spares_other_owner(self) -> None:
        """
        Recoding a user leaves their old code to another user who has it now.
        """
        old = make_user("alice", code="CODE-0001")
        self.directory.add(old)
        other = make_user("bob", code="CODE-0001")
        self.directory.add(other)
        self.directory.recode(old, "CODE-0002")
        self.assertIs(self.directory.codes["CODE-0001"], other)
        self.assertIs(self.directory.codes["CODE-0002"], old)

    def test_operators(self) -> None:
        """
        Only users logged in as operators are listed as operators.
        """
        alice, _ = self.arrive("alice"), self.arrive("bob")
        alice.operator = "root"
        self.assertEqual(list(self.directory.operators()), [alice])


class MembershipTests(DirectoryTestCase):
    """
    L{Directory.enter}, L{Directory.leave}, L{Directory.tidy} and
    L{Directory.around}.
    """

    def test_enter(self) -> None:
        """
        Entering a room makes the user a member from the id given, counts
        them under their door, and makes it where they talk.
        """
        alice, bob = self.arrive("alice"), self.arrive("bob", "web")
        dev = self.directory.new_room("#dev")
        self.directory.enter(alice, dev, 4)
        self.directory.enter(bob, dev, 6)
        self.assertEqual(dev.members, {alice: 4, bob: 6})
        self.assertEqual(dev.doors, {"telnet": 1, "web": 1})
        self.assertEqual(alice.rooms, [dev])
        self.assertIs(alice.current, dev)

    def test_leave_current_moves_to_last_joined(self) -> None:
        """
        Leaving the room a user talks in moves them to the room they joined
        last; leaving another room leaves it be; leaving the last, to none.
        """
        alice = self.arrive("alice")
        rooms = [self.directory.new_room(name) for name in ("#a", "#b", "#c")]
        for room in rooms:
            self.directory.enter(alice, room, 1)
        a, b, c = rooms
        self.directory.leave(alice, c)
        self.assertIs(alice.current, b)
        self.directory.leave(alice, a)
        self.assertIs(alice.current, b)
        self.assertEqual(alice.rooms, [b])
        self.directory.leave(alice, b)
        self.assertIsNone(alice.current)
        self.assertEqual(alice.rooms, [])

    def test_leave_counts_and_holding(self) -> None:
        """
        Leaving takes the user off the room's members and door count, and
        drops what was held back for them in that room only.
        """
        alice, bob = self.arrive("alice"), self.arrive("bob")
        dev, ops = self.directory.new_room("#dev"), self.directory.new_room("#ops")
        for room in (dev, ops):
            self.directory.enter(alice, room, 1)
        self.directory.enter(bob, dev, 1)
        alice.holding = {dev: (1, [said(2)]), ops: (1, [])}
        self.directory.leave(alice, dev)
        self.assertEqual(dev.members, {bob: 1})
        self.assertEqual(dev.doors, {"telnet": 1})
        self.assertEqual(list(alice.holding), [ops])

    def test_tidy_forgets_empty_new_room(self) -> None:
        """
        A room left empty that the store does not know, and that is not the
        default room, is forgotten when its last member leaves.
        """
        alice = self.arrive("alice")
        dev = self.directory.new_room("#dev")
        self.directory.enter(alice, dev, 1)
        self.directory.leave(alice, dev)
        self.assertIsNone(self.directory.room("#dev"))

    def test_tidy_keeps_traces(self) -> None:
        """
        Rooms with members, rooms where something was said and the default
        room (in any case) stay; a room with only a topic goes, and the
        store is told to forget it.
        """
        forgotten: list[str] = []
        self.directory.forgotten = lambda room: forgotten.append(room.name)
        alice = self.arrive("alice")
        busy = self.directory.new_room("#busy")
        self.directory.enter(alice, busy, 1)
        kept = self.directory.new_room("#kept")
        kept.stored, kept.last_id = True, 3
        topical = self.directory.new_room("#topical")
        topical.stored, topical.topic = True, "passing through"
        lobby = self.directory.lobby
        self.assertFalse(lobby.stored)
        for room in (busy, kept, topical, lobby):
            self.directory.tidy(room)
        self.assertEqual(set(self.directory.rooms), {"#busy", "#kept", "#lobby"})
        self.assertEqual(forgotten, ["#topical"])

    def test_cluster_node_keeps_only_rooms_in_use(self) -> None:
        """
        A node whose history lives elsewhere (a cluster's) forgets even a
        room with history once nobody here is in it, without telling the
        store.
        """
        forgotten: list[str] = []
        self.directory.forgotten = lambda room: forgotten.append(room.name)
        self.directory.remembers = False
        kept = self.directory.new_room("#kept")
        kept.stored, kept.last_id = True, 3
        self.directory.tidy(kept)
        self.assertIsNone(self.directory.room("#kept"))
        self.assertEqual(forgotten, [])

    def test_tidy_spares_replacement(self) -> None:
        """
        Tidying a stale room leaves a newer room of the same name alone.
        """
        stale = self.directory.new_room("#dev")
        fresh = self.directory.new_room("#dev")
        self.directory.tidy(stale)
        self.assertIs(self.directory.room("#dev"), fresh)

    def test_around(self) -> None:
        """
        Around a user are they and everyone sharing one of their rooms, once
        each, and nobody else.
        """
        alice, bob, carol, dave = (
            self.arrive(n) for n in ("alice", "bob", "carol", "dave")
        )
        a, b = self.directory.new_room("#a"), self.directory.new_room("#b")
        for user, room in ((alice, a), (bob, a), (alice, b), (bob, b), (carol, b)):
            self.directory.enter(user, room, 1)
        self.directory.enter(dave, self.directory.new_room("#c"), 1)
        around = self.directory.around(alice)
        self.assertEqual(list(around), [alice, bob, carol])
        eve = self.arrive("eve")
        self.assertEqual(list(self.directory.around(eve)), [eve])
