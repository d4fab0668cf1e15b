"""
Tests for room history: ids, replay, paging, resume and duplicate
suppression in the hub (L{tchat.hub}), and the stores (L{tchat.history}).

Hub tests run on a L{Clock} with the in-memory store or a store whose reads
the test completes by hand; store tests use a real SQLite file in the
test's temporary directory, with a L{Clock} for the store's timers and a
stand-in for its thread that runs its work when the test says so.
"""

import os
import random
import sqlite3
from dataclasses import replace
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, execute
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import provider

from tchat import events
from tchat.commands import Join, Nick, Part, Resume, ResumeRooms, Say, ShowHistory
from tchat.config import HistoryConfig, ServerConfig
from tchat.history import (
    CLOSE_TIMEOUT,
    MAX_BATCH,
    Fault,
    Loaded,
    MemoryStore,
    RoomRecord,
    Session,
    SQLiteStore,
    StorageError,
)
from tchat.history.database import MessageWrite, describe_changes
from tchat.history.sqlite import FILE_CHECK_INTERVAL, REMINDER_INTERVAL
from tchat.hub import ChatFactory
from tchat.model import User
from tchat.palette import PALETTE
from tchat.resume import resume_point
from tchat.sessions import normalize_code
from tests.support import FakeParticipant, FakeThread

RED = PALETTE["red"]

T = TypeVar("T")


class SlowReads(MemoryStore):
    """
    An in-memory store whose reads finish only when the test says so.
    """

    def __init__(self, config: HistoryConfig) -> None:
        super().__init__(config)
        self.reads: list[tuple[Deferred[Any], Deferred[Any]]] = []

    def read(self, *args: Any, **kwargs: Any) -> Deferred[list[events.RoomMessage]]:
        pending: Deferred[list[events.RoomMessage]] = Deferred()
        self.reads.append((super().read(*args, **kwargs), pending))
        return pending

    def finish_reads(self) -> None:
        reads, self.reads = self.reads, []
        for done, pending in reads:
            done.chainDeferred(pending)


class HistoryTestCase(SynchronousTestCase):
    history = HistoryConfig(keep=50, replay=3)

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = self.make_store()
        self.hub = ChatFactory(
            ServerConfig(reconnect_grace=0, motd=("hi",)),
            self.clock,
            random.Random(2),
            history=self.history,
            store=self.store,
        )
        self.successResultOf(self.hub.start())

    def make_store(self) -> MemoryStore:
        return MemoryStore(self.history)

    def connect(self, nick: str, door: str = "telnet") -> tuple[FakeParticipant, User]:
        participant = FakeParticipant(door)
        user = self.hub.connect(participant)
        self.hub.execute(user, Nick(nick))
        participant.take()
        return participant, user

    def say(self, user: User, *texts: str, room: str | None = None) -> None:
        for text in texts:
            self.hub.execute(user, Say(text, room))

    @staticmethod
    def said(received: list[object]) -> list[tuple[str, int, str]]:
        """
        The room messages among what a participant received, live or as
        history, as (room, id, text).
        """
        found = []
        for event in received:
            if isinstance(event, events.RoomMessage):
                found.append((event.room, event.id, event.text))
            elif isinstance(event, events.History):
                found.extend((m.room, m.id, m.text) for m in event.messages)
        return found

    @staticmethod
    def histories(received: list[object]) -> list[events.History]:
        return [e for e in received if isinstance(e, events.History)]


class IdTests(HistoryTestCase):
    """
    Ids increase within a room, and every member sees the same order.
    """

    def test_ids_per_room(self) -> None:
        """
        Each room counts its own ids from 1; every message carries the
        room's epoch.
        """
        alice_p, alice = self.connect("alice")
        self.hub.execute(alice, Join("#dev"))
        self.say(alice, "one", "two", room="#lobby")
        self.say(alice, "three", room="#dev")
        self.say(alice, "four", room="#lobby")
        messages = [e for e in alice_p.take() if isinstance(e, events.RoomMessage)]
        self.assertEqual(
            [(m.room, m.id) for m in messages],
            [("#lobby", 1), ("#lobby", 2), ("#dev", 1), ("#lobby", 3)],
        )
        lobby, dev = (
            self.hub.directory.rooms["#lobby"],
            self.hub.directory.rooms["#dev"],
        )
        self.assertEqual(
            {m.epoch for m in messages if m.room == "#lobby"}, {lobby.epoch}
        )
        self.assertEqual({m.epoch for m in messages if m.room == "#dev"}, {dev.epoch})

    def test_same_order_for_everyone(self) -> None:
        """
        Interleaved senders on different doors: each member gets the same
        sequence, in id order.
        """
        people = [
            self.connect(n, d)
            for n, d in [("a", "telnet"), ("b", "web"), ("c", "onion")]
        ]
        for i in range(30):
            _, user = people[i % 3]
            self.say(user, f"m{i}")
        sequences = [self.said(p.take()) for p, _ in people]
        self.assertEqual(sequences[0], sequences[1])
        self.assertEqual(sequences[0], sequences[2])
        self.assertEqual([i for _, i, _ in sequences[0]], list(range(1, 31)))


class ReplayTests(HistoryTestCase):
    """
    Joining shows the latest messages, marked as history.
    """

    def test_replay_on_join(self) -> None:
        """
        A late joiner gets the last C{replay} messages, oldest first, after
        the join notice, as one C{join} history; then live ones.
        """
        _, alice = self.connect("alice")
        self.say(alice, "m1", "m2", "m3", "m4", "m5")
        bob_p, bob = self.connect("bob")
        self.hub.execute(alice, Join("#dev"))
        self.say(alice, "d1", "d2", room="#dev")
        self.hub.execute(bob, Join("#dev"))
        joined, history = bob_p.take()
        self.assertIsInstance(joined, events.Presence)
        assert isinstance(history, events.History)
        self.assertEqual(history.reason, "join")
        self.assertEqual([m.text for m in history.messages], ["d1", "d2"])
        self.say(alice, "d3", room="#dev")
        self.assertEqual(self.said(bob_p.take()), [("#dev", 3, "d3")])

    def test_replay_is_the_latest(self) -> None:
        """
        Only the last C{replay} (3 here) are replayed.
        """
        _, alice = self.connect("alice")
        self.say(alice, *[f"m{i}" for i in range(1, 8)])
        participant = FakeParticipant()
        self.hub.connect(participant)
        (history,) = self.histories(participant.take())
        self.assertEqual([m.id for m in history.messages], [5, 6, 7])

    def test_nothing_to_replay(self) -> None:
        """
        An empty room sends no history at all.
        """
        participant = FakeParticipant()
        self.hub.connect(participant)
        self.assertEqual(self.histories(participant.take()), [])


class SmallKeepTests(HistoryTestCase):
    history = HistoryConfig(keep=5, replay=20)

    def test_replay_within_keep(self) -> None:
        """
        The replay never shows more than is kept.
        """
        _, alice = self.connect("alice")
        self.say(alice, *[f"m{i}" for i in range(1, 11)])
        participant = FakeParticipant()
        self.hub.connect(participant)
        (history,) = self.histories(participant.take())
        self.assertEqual([m.id for m in history.messages], [6, 7, 8, 9, 10])


class NoReplayTests(HistoryTestCase):
    history = HistoryConfig(replay=0)

    def test_replay_off(self) -> None:
        """
        C{replay = 0} shows nothing on join.
        """
        _, alice = self.connect("alice")
        self.say(alice, "m1")
        participant = FakeParticipant()
        self.hub.connect(participant)
        self.assertEqual(self.histories(participant.take()), [])


class PagingTests(HistoryTestCase):
    """
    C{/history} and the web door's history request page backwards.
    """

    history = HistoryConfig(keep=10, replay=3)

    def test_latest_and_before(self) -> None:
        """
        Without C{before}: the newest N; with it: the N before that id;
        C{more} says whether older ones are kept.
        """
        alice_p, alice = self.connect("alice")
        self.say(alice, *[f"m{i}" for i in range(1, 9)])
        alice_p.take()
        self.hub.execute(alice, ShowHistory(3))
        (page,) = alice_p.take()
        assert isinstance(page, events.History)
        self.assertEqual(([m.id for m in page.messages], page.more), ([6, 7, 8], True))
        self.hub.execute(alice, ShowHistory(3, before=6))
        (page,) = alice_p.take()
        assert isinstance(page, events.History)
        self.assertEqual(([m.id for m in page.messages], page.more), ([3, 4, 5], True))
        self.hub.execute(alice, ShowHistory(5, before=3))
        (page,) = alice_p.take()
        assert isinstance(page, events.History)
        self.assertEqual(([m.id for m in page.messages], page.more), ([1, 2], False))

    def test_pruned(self) -> None:
        """
        Only the last C{keep} messages are kept: paging stops there.
        """
        alice_p, alice = self.connect("alice")
        self.say(alice, *[f"m{i}" for i in range(1, 26)])
        alice_p.take()
        self.hub.execute(alice, ShowHistory(200))
        (page,) = alice_p.take()
        assert isinstance(page, events.History)
        self.assertEqual([m.id for m in page.messages], list(range(16, 26)))
        self.assertFalse(page.more)

    def test_only_members(self) -> None:
        """
        A room's history is for its members.
        """
        alice_p, alice = self.connect("alice")
        self.hub.execute(alice, Join("#dev"))
        self.hub.execute(alice, Part("#lobby"))
        alice_p.take()
        self.hub.execute(alice, ShowHistory(5, "#lobby"))
        (error,) = alice_p.take()
        assert isinstance(error, events.Error)
        self.assertEqual(error.code, "not-in-room")


class ResumeTests(HistoryTestCase):
    """
    A reconnecting client gets exactly what it missed, once.
    """

    history = HistoryConfig(keep=10, replay=3)

    def test_resume_joined_room(self) -> None:
        """
        In the lobby (joined on connect, with a replay of the last 3), a
        resume from id 2 sends 3..5, the ones the replay did not cover, then
        says it is complete; nothing arrives twice.
        """
        _, alice = self.connect("alice")
        self.say(alice, *[f"m{i}" for i in range(1, 9)])
        bob_p = FakeParticipant("web")
        bob = self.hub.connect(bob_p)
        self.hub.execute(bob, ResumeRooms((("#lobby", 2, None),)))
        received = bob_p.take()
        self.assertEqual([i for _, i, _ in self.said(received)], [6, 7, 8, 3, 4, 5])
        resumed = self.histories(received)[-1]
        self.assertEqual(
            (resumed.reason, resumed.complete, resumed.last_id), ("resume", True, 8)
        )
        # Asking again sends nothing more.
        self.hub.execute(bob, ResumeRooms((("#lobby", 2, None),)))
        (again,) = bob_p.take()
        assert isinstance(again, events.History)
        self.assertEqual(again.messages, ())

    def test_resume_other_room(self) -> None:
        """
        A room the user is not in is joined without the replay, and the
        missed messages follow, then live ones.
        """
        _, alice = self.connect("alice")
        self.hub.execute(alice, Join("#dev"))
        self.say(alice, "d1", "d2", "d3", "d4", room="#dev")
        bob_p, bob = self.connect("bob")
        self.hub.execute(bob, ResumeRooms((("#dev", 1, None),)))
        self.say(alice, "d5", room="#dev")
        received = bob_p.take()
        self.assertEqual(
            self.said(received),
            [
                ("#dev", 2, "d2"),
                ("#dev", 3, "d3"),
                ("#dev", 4, "d4"),
                ("#dev", 5, "d5"),
            ],
        )
        self.assertIn("#dev", [r.name for r in bob.rooms])

    def test_gap_beyond_retention(self) -> None:
        """
        Missed messages older than C{keep} are gone: the resume sends what
        is kept and says it is not complete.
        """
        _, alice = self.connect("alice")
        self.say(alice, *[f"m{i}" for i in range(1, 31)])
        bob_p = FakeParticipant("web")
        bob = self.hub.connect(bob_p)
        bob_p.take()
        self.hub.execute(bob, ResumeRooms((("#lobby", 5, None),)))
        (resumed,) = self.histories(bob_p.take())
        self.assertFalse(resumed.complete)
        # Kept: 21..30; the replay gave 28..30.
        self.assertEqual([m.id for m in resumed.messages], list(range(21, 28)))

    def test_epochs(self) -> None:
        """
        After a crash the room is on a new epoch from the next id: a client
        whose last id survived resumes completely; one that saw lost ids is
        told of the gap; an unknown epoch gets the latest, with a gap.
        """
        _, alice = self.connect("alice")
        self.say(alice, *[f"m{i}" for i in range(1, 6)])
        lobby = self.hub.directory.rooms["#lobby"]
        old = lobby.epoch
        # As the store reports after an unclean stop: 5 messages survived.
        lobby.lineage.append((old + 1, 6))
        lobby.epoch = old + 1
        self.say(alice, "n6", "n7")
        self.assertEqual(resume_point(lobby, 4, old, self.history.replay), (4, True))
        self.assertEqual(resume_point(lobby, 5, old, self.history.replay), (5, True))
        self.assertEqual(resume_point(lobby, 6, old, self.history.replay), (5, False))
        self.assertEqual(
            resume_point(lobby, 6, old + 1, self.history.replay), (6, True)
        )
        self.assertEqual(resume_point(lobby, 2, 12345, self.history.replay), (4, False))
        self.assertEqual(resume_point(lobby, 99, None, self.history.replay), (7, True))


class HeldTests(HistoryTestCase):
    """
    Live messages wait for a history read in flight.
    """

    def make_store(self) -> MemoryStore:
        return SlowReads(self.history)

    def test_held_until_read(self) -> None:
        """
        While missed messages are read from the store, live ones for that
        room wait, so the user gets them in id order.
        """
        store = self.store
        assert isinstance(store, SlowReads)
        _, alice = self.connect("alice")
        self.hub.execute(alice, Join("#dev"))
        self.say(alice, "d1", "d2", "d3", "d4", "d5", room="#dev")
        self.hub.directory.rooms["#dev"].recent.clear()
        bob_p, bob = self.connect("bob")
        self.hub.execute(bob, ResumeRooms((("#dev", 1, None),)))
        self.say(alice, "d6", room="#dev")
        self.say(alice, "lobby", room="#lobby")
        self.assertEqual(self.said(bob_p.take()), [("#lobby", 1, "lobby")])
        store.finish_reads()
        self.assertEqual([i for _, i, _ in self.said(bob_p.take())], [2, 3, 4, 5, 6])


class DuplicateTests(HistoryTestCase):
    """
    A retried message (same client id and text) is not said twice.
    """

    def test_retry_is_acknowledged_not_repeated(self) -> None:
        alice_p, alice = self.connect("alice", "web")
        bob_p, _ = self.connect("bob")
        alice_p.take()
        self.hub.execute(alice, Say("hello", client_id="c-1"))
        self.hub.execute(alice, Say("hello", client_id="c-1"))
        first, second = alice_p.take()
        self.assertEqual(first, second)
        assert isinstance(first, events.RoomMessage)
        self.assertEqual((first.id, first.client_id), (1, "c-1"))
        self.assertEqual(self.said(bob_p.take()), [("#lobby", 1, "hello")])

    def test_after_reconnect(self) -> None:
        """
        The retry may come on a new connection, under the same nick.
        """
        alice_p, alice = self.connect("alice", "web")
        self.hub.execute(alice, Say("hello", client_id="c-1"))
        self.hub.disconnect(alice, "gone")
        again_p, again = self.connect("alice", "web")
        self.hub.execute(again, Say("hello", client_id="c-1"))
        (ack,) = again_p.take()
        assert isinstance(ack, events.RoomMessage)
        self.assertEqual(ack.id, 1)
        self.assertEqual(self.hub.directory.rooms["#lobby"].last_id, 1)

    def test_not_a_retry(self) -> None:
        """
        The same client id with other text, or from someone else, is a new
        message: a careless client loses nothing.
        """
        _, alice = self.connect("alice")
        _, bob = self.connect("bob")
        self.hub.execute(alice, Say("one", client_id="c-1"))
        self.hub.execute(alice, Say("two", client_id="c-1"))
        self.hub.execute(bob, Say("two", client_id="c-1"))
        self.assertEqual(self.hub.directory.rooms["#lobby"].last_id, 3)

    def test_forgotten_after_retention(self) -> None:
        """
        Client ids are remembered as long as their message is kept.
        """
        _, alice = self.connect("alice")
        self.hub.execute(alice, Say("first", client_id="c-1"))
        self.say(alice, *[f"m{i}" for i in range(60)])
        self.assertNotIn("c-1", self.hub.directory.rooms["#lobby"].tagged)
        self.assertLessEqual(len(self.hub.directory.rooms["#lobby"].tagged), 50)


class ResumeCodeTests(HistoryTestCase):
    """
    C{/resume CODE} brings back a user who left.
    """

    history = HistoryConfig(keep=50, replay=2)

    def test_resume(self) -> None:
        alice_p, alice = self.connect("alice")
        self.hub.execute(alice, Join("#dev"))
        self.say(alice, "before", room="#dev")
        code = alice.code
        self.assertEqual(normalize_code(code.lower().replace("-", " ")), code)
        self.hub.disconnect(alice, "network")
        _, bob = self.connect("bob")
        self.hub.execute(bob, Join("#dev"))
        self.say(bob, "d1", "d2", "d3", room="#dev")
        self.say(bob, "l1", room="#lobby")
        back_p = FakeParticipant()
        back = self.hub.connect(back_p)
        connected = back_p.take()
        self.hub.execute(back, Resume(code.lower()))
        received = back_p.take()
        self.assertEqual(back.nick, "alice")
        self.assertEqual(back.code, code)
        self.assertEqual([r.name for r in back.rooms], ["#lobby", "#dev"])
        self.assertEqual(back.current and back.current.name, "#dev")
        histories = {
            h.room: h for h in self.histories(received) if h.reason == "resume"
        }
        self.assertEqual(
            [m.text for m in histories["#dev"].messages], ["d1", "d2", "d3"]
        )
        # The lobby's missed message came with the join replay: once.
        self.assertEqual(histories["#lobby"].messages, ())
        self.assertEqual(
            [t for _, _, t in self.said(connected + received)].count("l1"), 1
        )

    def test_take_over_live_connection(self) -> None:
        """
        When the old connection is still open, the new one carries on its
        session, and the old one is closed.
        """
        alice_p, alice = self.connect("alice")
        code = alice.code
        back_p = FakeParticipant()
        back = self.hub.connect(back_p)
        self.hub.execute(back, Resume(code))
        self.assertEqual(alice_p.closed, "resumed by a new connection")
        self.assertFalse(back.connected)
        self.assertTrue(alice.connected)
        self.assertIs(back_p.user, alice)

    def test_unknown_code(self) -> None:
        participant, user = self.connect("carol")
        self.hub.execute(user, Resume("ZZZZ-ZZZZ"))
        (error,) = participant.take()
        assert isinstance(error, events.Error)
        self.assertEqual(error.code, "no-such-session")

    def test_expired(self) -> None:
        """
        Codes expire C{resume_ttl} seconds after their user left.
        """
        _, alice = self.connect("alice")
        code = alice.code
        self.hub.disconnect(alice, "gone")
        self.clock.advance(self.history.resume_ttl + 1)
        participant, user = self.connect("carol")
        self.hub.execute(user, Resume(code))
        (error,) = participant.take()
        assert isinstance(error, events.Error)
        self.assertEqual(error.code, "no-such-session")

    def test_nick_taken_meanwhile(self) -> None:
        """
        If someone took the nick, the user keeps their new one, is told so,
        and still gets their rooms back.
        """
        _, alice = self.connect("alice")
        self.hub.execute(alice, Join("#dev"))
        code = alice.code
        self.hub.disconnect(alice, "gone")
        self.connect("alice")
        back_p = FakeParticipant()
        back = self.hub.connect(back_p)
        self.hub.execute(back, Resume(code))
        errors = [e for e in back_p.take() if isinstance(e, events.Error)]
        self.assertEqual([e.code for e in errors], ["nick-taken"])
        self.assertIn("#dev", [r.name for r in back.rooms])


class FullSyncTests(HistoryTestCase):
    """
    With C{sync = full} nobody sees a message before the store has it.
    """

    history = HistoryConfig(sync="full")

    def make_store(self) -> MemoryStore:
        hub_test = self

        class Committing(MemoryStore):
            def append(self, message: events.RoomMessage, durable: bool) -> Any:
                super().append(message, durable)
                hub_test.commits.append(Deferred())
                return hub_test.commits[-1]

        self.commits: list[Deferred[None]] = []
        return Committing(self.history)

    def test_shown_after_commit(self) -> None:
        alice_p, alice = self.connect("alice", "web")
        bob_p, _ = self.connect("bob")
        self.say(alice, "safe")
        self.assertEqual(self.said(bob_p.take()), [])
        self.commits.pop().callback(None)
        self.assertEqual(self.said(bob_p.take()), [("#lobby", 1, "safe")])
        self.assertEqual(self.said(alice_p.take()), [("#lobby", 1, "safe")])

    def test_numbers_while_writing(self) -> None:
        """
        Messages said while earlier ones are still being written get the
        next numbers, whatever order the writes finish in: no id is ever
        given twice (a kept message would be overwritten by another).
        """
        alice_p, alice = self.connect("alice", "web")
        bob_p, _ = self.connect("bob")
        self.say(alice, "one", "two")
        first, second = self.commits
        first.callback(None)
        self.say(alice, "three")
        second.callback(None)
        self.commits[-1].callback(None)
        self.assertEqual(
            self.said(bob_p.take()),
            [("#lobby", 1, "one"), ("#lobby", 2, "two"), ("#lobby", 3, "three")],
        )
        stored = self.successResultOf(self.store.read("#lobby"))
        self.assertEqual(
            [(m.id, m.text) for m in stored], [(1, "one"), (2, "two"), (3, "three")]
        )

    def test_failed_commit(self) -> None:
        """
        A message the store could not keep is shown to nobody, and its
        sender is told to send it again.
        """
        alice_p, alice = self.connect("alice", "web")
        bob_p, _ = self.connect("bob")
        alice_p.take()
        self.say(alice, "lost")
        self.commits.pop().errback(sqlite3.OperationalError("disk full"))
        self.assertEqual(self.said(bob_p.take()), [])
        (error,) = alice_p.take()
        assert isinstance(error, events.Error)
        self.assertEqual(error.code, "not-stored")
        self.flushLoggedErrors(sqlite3.OperationalError)


# -- the SQLite store ------------------------------------------------------


def message(
    room: str, id: int, text: str, client_id: str | None = None
) -> events.RoomMessage:
    return events.RoomMessage(
        room, id, 1000.0 + id, "al", "web", RED, text, False, client_id, 7
    )


class StoreTestCase(SynchronousTestCase):
    """
    A real SQLite file in the test's temporary directory; the store's
    thread is a L{FakeThread} and its timers run on a L{Clock}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.thread = FakeThread()

    def config(self, **changes: Any) -> HistoryConfig:
        path = os.path.abspath(self.mktemp()) + ".sqlite3"
        return replace(HistoryConfig(path=path, keep=5, batch_window=0.01), **changes)

    def store(self, config: HistoryConfig, recent: int = 3) -> SQLiteStore:
        return SQLiteStore(config, self.clock, recent, run_in_thread=self.thread)

    def close(self, store: SQLiteStore) -> None:
        """
        Close the store, running whatever its thread still holds, and
        giving it the time a stop may take (a disk that refuses writes is
        retried for L{CLOSE_TIMEOUT} seconds).
        """
        self.thread.held = False
        self.thread.run()
        closing = store.close()
        self.clock.pump([0.05] * int(CLOSE_TIMEOUT / 0.05 + 40))
        self.successResultOf(closing)


class SQLiteStoreTests(StoreTestCase):
    """
    The embedded store, on a real file.
    """

    def open(self, config: HistoryConfig) -> tuple[SQLiteStore, Loaded]:
        store = self.store(config)
        loaded = self.successResultOf(store.load(2000.0))
        return store, loaded

    def test_round_trip(self) -> None:
        """
        Rooms, messages, topics and sessions survive a clean close; on
        reopening the latest messages and the tagged ones are loaded; the
        stop is clean, so no new epoch.
        """
        config = self.config()
        now = self.clock.seconds()
        store, loaded = self.open(config)
        self.assertEqual(loaded.rooms, [])
        store.save_room(
            RoomRecord("#dev", "#Dev", 7, [(7, 1)], topic="t", topic_by="al")
        )
        for i in range(1, 9):
            store.append(message("#Dev", i, f"m{i}", f"c{i}" if i % 2 else None), False)
        store.save_session(
            Session("AAAA-BBBB", "al", "red", True, (("#Dev", 7, 8),), "#Dev", now)
        )
        self.successResultOf(store.close())

        store, loaded = self.open(config)
        self.addCleanup(self.close, store)
        (room,) = loaded.rooms
        self.assertEqual(
            (
                room.name,
                room.epoch,
                room.last_id,
                room.pruned_to,
                room.topic,
                loaded.lossy,
            ),
            ("#Dev", 7, 8, 3, "t", False),
        )
        self.assertEqual([m.text for m in loaded.recent["#dev"]], ["m6", "m7", "m8"])
        self.assertEqual([m.client_id for m in loaded.tagged["#dev"]], ["c5", "c7"])
        self.assertEqual(loaded.recent["#dev"][0], message("#Dev", 6, "m6"))
        page = self.successResultOf(store.read("#dev", before=6, limit=10))
        self.assertEqual([m.id for m in page], [4, 5])
        after = self.successResultOf(store.read("#dev", after=5, upto=7))
        self.assertEqual([m.id for m in after], [6, 7])
        session = self.successResultOf(store.session("AAAA-BBBB", now - 60))
        assert session is not None
        self.assertEqual(session.rooms, (("#Dev", 7, 8),))
        self.assertIsNone(self.successResultOf(store.session("AAAA-BBBB", now + 60)))

    def test_kinds_of_line(self) -> None:
        """
        A line, a C{/me} and an IRC C{NOTICE} come back from disk as what
        they were.
        """
        config = self.config()
        store, _ = self.open(config)
        store.save_room(RoomRecord("#dev", "#dev", 7, [(7, 1)]))
        said = [
            message("#dev", 1, "a line"),
            replace(message("#dev", 2, "waves"), action=True),
            replace(message("#dev", 3, "a bot's notice"), notice=True),
        ]
        for m in said:
            store.append(m, False)
        self.successResultOf(store.close())
        store, loaded = self.open(config)
        self.addCleanup(self.close, store)
        self.assertEqual(loaded.recent["#dev"], said)
        self.assertEqual(self.successResultOf(store.read("#dev", before=4)), said)

    def test_batches(self) -> None:
        """
        Messages queued within the batch window are written in one
        transaction, and a read sees queued messages at once.
        """
        config = self.config(keep=1000, batch_window=5.0)
        store, _ = self.open(config)
        self.addCleanup(self.close, store)
        store.save_room(RoomRecord("#a", "#a", 1, [(1, 1)]))
        for i in range(1, 201):
            store.append(message("#a", i, f"m{i}"), False)
        self.assertEqual(store.queued, 201)
        found = self.successResultOf(store.read("#a", after=0, limit=1000))
        self.assertEqual(len(found), 200)
        self.assertEqual((store.queued, store.batches), (0, 1))

    def test_batch_window(self) -> None:
        """
        Without a read, what is queued is written when the batch window
        ends, in one transaction.
        """
        store, _ = self.open(self.config(batch_window=1.0))
        self.addCleanup(self.close, store)
        store.save_room(RoomRecord("#a", "#a", 1, [(1, 1)]))
        self.clock.advance(0.5)
        store.append(message("#a", 1, "m1"), False)
        self.clock.advance(0.25)
        self.assertEqual((store.queued, store.batches), (2, 0))
        self.clock.advance(0.25)
        self.assertEqual((store.queued, store.batches), (0, 1))

    def test_wal_and_durable_append(self) -> None:
        """
        The file is in WAL mode; with C{sync = full} an append's Deferred
        fires once the message is committed: a crash right then keeps it.
        """
        config = self.config(sync="full")
        store, _ = self.open(config)
        store.save_room(RoomRecord("#a", "#a", 1, [(1, 1)]))
        committed = store.append(message("#a", 1, "safe"), True)
        assert committed is not None
        self.assertNoResult(committed)
        self.clock.advance(0)
        self.successResultOf(committed)
        self.crash(store)
        other = sqlite3.connect(config.path)
        self.addCleanup(other.close)
        self.assertEqual(other.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertEqual(
            other.execute("SELECT text FROM messages").fetchall(), [("safe",)]
        )

    def test_locked_for_tchat_alone(self) -> None:
        """
        While the store is open its file is locked against every other
        connection, and SQLite keeps the WAL index in memory: there is no
        C{-shm} file to map (one left by an older tchat is removed).  Once
        closed, the file can be read again.
        """
        config = self.config()
        with open(config.path + "-shm", "wb") as f:
            f.write(b"\0" * 32768)
        store, _ = self.open(config)
        store.save_room(RoomRecord("#a", "#a", 1, [(1, 1)]))
        store.append(message("#a", 1, "mine"), False)
        self.successResultOf(store.read("#a"))
        self.assertFalse(os.path.exists(config.path + "-shm"))
        self.assertTrue(os.path.exists(config.path + "-wal"))
        other = sqlite3.connect(config.path, timeout=0)
        self.addCleanup(other.close)
        with self.assertRaises(sqlite3.OperationalError) as raised:
            other.execute("SELECT text FROM messages").fetchall()
        self.assertEqual(str(raised.exception), "database is locked")
        self.close(store)
        self.assertEqual(
            sorted(os.listdir(os.path.dirname(config.path))),
            [os.path.basename(config.path)],
        )
        self.assertEqual(
            other.execute("SELECT text FROM messages").fetchall(), [("mine",)]
        )

    def test_group_commit(self) -> None:
        """
        With C{sync = full} a batch is written as soon as the disk is free:
        what arrives while one is being committed waits for it, then goes
        in the next batch, whatever the batch window.
        """
        store, _ = self.open(self.config(sync="full", batch_window=5.0))
        self.addCleanup(self.close, store)
        self.thread.held = True
        store.save_room(RoomRecord("#a", "#a", 1, [(1, 1)]))
        first = store.append(message("#a", 1, "m1"), True)
        self.clock.advance(0)
        self.assertEqual((len(self.thread.calls), store.queued), (1, 2))
        second = store.append(message("#a", 2, "m2"), True)
        third = store.append(message("#a", 3, "m3"), True)
        assert first is not None and second is not None and third is not None
        self.clock.advance(10)
        self.assertEqual((len(self.thread.calls), store.queued), (1, 4))
        self.thread.run()
        self.successResultOf(first)
        self.assertNoResult(second)
        self.clock.advance(0)
        self.thread.run()
        self.successResultOf(second)
        self.successResultOf(third)
        self.assertEqual((store.queued, store.batches), (0, 2))

    def test_closing_waits_for_batch_in_flight(self) -> None:
        """
        Closing while a batch is being committed waits for it, then
        records a clean stop.
        """
        config = self.config(batch_window=5.0)
        store, _ = self.open(config)
        self.thread.held = True
        store.save_room(RoomRecord("#a", "#a", 1, [(1, 1)]))
        store.append(message("#a", 1, "m1"), False)
        store._flush()
        closing = store.close()
        self.assertEqual(self.thread.run(), 1)
        self.assertNoResult(closing)
        self.clock.advance(0.01)
        self.assertEqual(self.thread.run(), 1)
        self.successResultOf(closing)
        self.assertEqual((store.queued, store.batches), (0, 1))
        other = sqlite3.connect(config.path)
        self.addCleanup(other.close)
        self.assertEqual(other.execute("SELECT id FROM messages").fetchall(), [(1,)])
        self.assertEqual(
            other.execute("SELECT value FROM meta WHERE key = 'clean'").fetchall(),
            [("1",)],
        )

    def test_unclean_stop_starts_new_epoch(self) -> None:
        """
        After a run that did not close (a crash), each room starts a new
        epoch from the id after the last one on disk.
        """
        config = self.config()
        store, _ = self.open(config)
        store.save_room(RoomRecord("#a", "#a", 7, [(7, 1)]))
        store.append(message("#a", 1, "kept"), False)
        self.successResultOf(store.read("#a"))  # written
        store.append(message("#a", 2, "lost in the crash"), False)
        self.crash(store)

        store, loaded = self.open(config)
        self.addCleanup(self.close, store)
        (room,) = loaded.rooms
        self.assertTrue(loaded.lossy)
        self.assertEqual(room.last_id, 1)
        self.assertEqual(room.lineage, [(7, 1), (2_000_000, 2)])
        self.assertEqual(room.epoch, 2_000_000)

    def test_unclean_stop_with_full_sync(self) -> None:
        """
        With C{sync = full} nothing shown was lost in a crash: same epoch.
        """
        config = self.config(sync="full")
        store, _ = self.open(config)
        store.save_room(RoomRecord("#a", "#a", 7, [(7, 1)]))
        committed = store.append(message("#a", 1, "kept"), True)
        assert committed is not None
        self.clock.advance(0)
        self.successResultOf(committed)
        self.crash(store)
        store, loaded = self.open(config)
        self.addCleanup(self.close, store)
        self.assertFalse(loaded.lossy)
        self.assertEqual(loaded.rooms[0].epoch, 7)

    def test_pruned_on_write(self) -> None:
        """
        Each batch deletes what is beyond C{keep} and records how far the
        room was pruned.
        """
        config = self.config(keep=3)
        store, _ = self.open(config)
        store.save_room(RoomRecord("#a", "#a", 1, [(1, 1)]))
        for i in range(1, 8):
            store.append(message("#a", i, f"m{i}"), False)
        found = self.successResultOf(store.read("#a", limit=100))
        self.assertEqual([m.id for m in found], [5, 6, 7])
        self.successResultOf(store.close())
        store, loaded = self.open(config)
        self.addCleanup(self.close, store)
        self.assertEqual(loaded.rooms[0].pruned_to, 4)

    def crash(self, store: SQLiteStore) -> None:
        """
        Stop the store's thread without flushing or marking a clean stop.
        """
        store._pending.clear()
        for timer in (store._timer, store._watch):
            if timer is not None and timer.active():
                timer.cancel()

        def drop() -> None:
            assert store._database.db is not None
            store._database.db.close()

        self.successResultOf(store._in_thread(drop))
        store._running = False  # its thread is gone

    def test_hub_on_sqlite(self) -> None:
        """
        The hub on the real store: messages said before a restart are
        replayed to a joiner after it, and a resume reads them from disk.
        """
        config = self.config(keep=100, replay=2)
        clock = Clock()

        def start() -> ChatFactory:
            store = SQLiteStore(
                config, clock, recent=config.replay, run_in_thread=self.thread
            )
            hub = ChatFactory(
                ServerConfig(reconnect_grace=0), clock, history=config, store=store
            )
            self.successResultOf(hub.start())
            return hub

        hub = start()
        participant = FakeParticipant()
        user = hub.connect(participant)
        for i in range(1, 11):
            hub.execute(user, Say(f"m{i}"))
        stopping = hub.stop()
        clock.advance(hub.config.shutdown_grace + 1)  # the user's connection is cut
        self.successResultOf(stopping)

        hub = start()
        self.addCleanup(lambda: self.successResultOf(hub.stop(0)))
        late = FakeParticipant("web")
        user = hub.connect(late)
        hub.execute(user, ResumeRooms((("#lobby", 4, None),)))
        self.successResultOf(hub.store.read("#lobby"))  # the resume's read is done
        texts = [
            [m.text for m in e.messages]
            for e in late.take()
            if isinstance(e, events.History)
        ]
        self.assertEqual(texts, [["m9", "m10"], ["m5", "m6", "m7", "m8"]])


class WriteFailureTests(StoreTestCase):
    """
    A batch the disk refuses is retried (C{sync = normal}) or reported to
    its senders (C{sync = full}); nothing else is lost.
    """

    def store_failing(self, times: int = 1, **changes: Any) -> SQLiteStore:
        """
        An open store whose first C{times} batches fail.
        """
        path = os.path.abspath(self.mktemp()) + ".sqlite3"
        config = replace(HistoryConfig(path=path, batch_window=0.01), **changes)
        store = self.store(config)
        self.successResultOf(store.load(self.clock.seconds()))
        self.addCleanup(self.close, store)
        write = store._database.write
        calls: list[int] = []

        def flaky(ops: Any) -> float:
            calls.append(len(ops))
            if len(calls) <= times:
                raise sqlite3.OperationalError("database or disk is full")
            return write(ops)

        store._database.write = flaky  # type: ignore[method-assign]
        return store

    def test_retried(self) -> None:
        store = self.store_failing()
        store.save_room(RoomRecord("#a", "#a", 1, [(1, 1)]))
        store.append(message("#a", 1, "kept"), False)
        store._flush()
        self.clock.advance(0.7)  # the first retry: 0.5 s
        found = self.successResultOf(store.read("#a"))
        self.assertEqual([m.text for m in found], ["kept"])
        self.assertEqual((store.failed_batches, store.batches), (1, 1))

    def test_backoff(self) -> None:
        """
        The first retry comes 0.5 s after a failure; each further failure
        doubles the wait.  Nothing queued is lost meanwhile.
        """
        store = self.store_failing(times=2)
        store.save_room(RoomRecord("#a", "#a", 1, [(1, 1)]))
        store.append(message("#a", 1, "kept"), False)
        store._flush()
        self.assertEqual((store.failed_batches, store.queued), (1, 2))
        store.append(message("#a", 2, "later"), False)
        self.clock.advance(0.49)
        self.assertEqual(store.failed_batches, 1)
        self.clock.advance(0.01)
        self.assertEqual((store.failed_batches, store.queued), (2, 3))
        self.clock.advance(0.99)
        self.assertEqual((store.failed_batches, store.batches), (2, 0))
        self.clock.advance(0.01)
        self.assertEqual((store.failed_batches, store.batches), (2, 1))
        self.assertEqual(store.queued, 0)
        found = self.successResultOf(store.read("#a"))
        self.assertEqual([m.text for m in found], ["kept", "later"])

    def test_order_kept_when_batches_in_flight_fail(self) -> None:
        """
        Two batches in flight that both fail are written again in the
        order they were first queued, ahead of what came since.
        """
        store = self.store_failing(times=2, keep=100)
        self.thread.held = True
        store.save_room(RoomRecord("#a", "#a", 1, [(1, 1)]))
        store.append(message("#a", 1, "first"), False)
        store._flush()
        store.append(message("#a", 2, "second"), False)
        store._flush()
        self.assertEqual(self.thread.run(), 2)
        store.append(message("#a", 3, "third"), False)
        self.assertEqual(
            [op.row[1] for op in store._pending if isinstance(op, MessageWrite)],
            [1, 2, 3],
        )
        self.thread.held = False
        self.clock.advance(1)
        found = self.successResultOf(store.read("#a"))
        self.assertEqual([m.text for m in found], ["first", "second", "third"])

    def test_no_early_flush_while_failing(self) -> None:
        """
        While the disk refuses writes, a full batch waits for the retry
        timer rather than trying again at every new message.
        """
        store = self.store_failing(times=1000)
        store.append(message("#a", 1, "m"), False)
        self.clock.advance(0.01)
        self.assertEqual(store.failed_batches, 1)
        for i in range(2, MAX_BATCH + 10):
            store.append(message("#a", i, "m"), False)
        self.assertEqual(store.failed_batches, 1)
        self.clock.advance(0.5)
        self.assertEqual(store.failed_batches, 2)

    def test_full_sync_reports(self) -> None:
        store = self.store_failing(sync="full")
        store.save_room(RoomRecord("#a", "#a", 1, [(1, 1)]))
        committed = store.append(message("#a", 1, "refused"), True)
        assert committed is not None
        self.clock.advance(0)
        self.failureResultOf(committed, sqlite3.OperationalError)
        self.clock.advance(0.7)
        self.assertEqual(self.successResultOf(store.read("#a")), [])
        self.assertEqual(store.batches, 1)  # the room itself, on retry


class StorageFaultTests(StoreTestCase):
    """
    What the store does when the disk refuses its writes: it says why in
    words, once and then every few minutes, reports it as its health,
    tells the senders of messages it could not keep, and still stops in
    bounded time, saying what it lost.  The faults are real SQLite ones
    where SQLite can make them: C{max_page_count} (a full disk, exactly as
    SQLite reports one) and C{query_only} (a read-only database).
    """

    def setUp(self) -> None:
        super().setUp()
        self.events: list[LogEvent] = []
        events = self.events

        @provider(ILogObserver)
        def observe(event: LogEvent) -> None:
            events.append(event)

        self.observe = observe

    def open(self, **changes: Any) -> SQLiteStore:
        """
        An open store whose log lines go to L{lines}; closed in cleanup.
        """
        store = SQLiteStore(
            self.config(keep=1000, **changes),
            self.clock,
            3,
            run_in_thread=self.thread,
        )
        store._log = Logger(observer=self.observe)
        self.successResultOf(store.load(self.clock.seconds()))
        self.addCleanup(self.close, store)
        store.save_room(RoomRecord("#a", "#a", 1, [(1, 1)]))
        self.successResultOf(store.read("#a"))
        return store

    def lines(self) -> list[str]:
        """
        What the store logged since the last call.
        """
        events, self.events[:] = list(self.events), []
        return [f"{e['log_level'].name}: {formatEvent(e)}" for e in events]

    def pragma(self, store: SQLiteStore, pragma: str) -> None:
        """
        Set a pragma on the store's own connection, in its thread.
        """

        def run() -> None:
            assert store._database.db is not None
            store._database.db.execute(f"PRAGMA {pragma}")

        self.successResultOf(store._in_thread(run))

    def fill_disk(self, store: SQLiteStore) -> None:
        """
        Let the database grow no more: SQLite then answers SQLITE_FULL.
        """

        def pages() -> int:
            assert store._database.db is not None
            return int(store._database.db.execute("PRAGMA page_count").fetchone()[0])

        count = self.successResultOf(store._in_thread(pages))
        self.pragma(store, f"max_page_count={count}")

    def test_disk_full(self) -> None:
        """
        A full disk is named as such (not "cannot rollback"), with what is
        waiting and how it is retried, without a traceback; the store's
        health says C{disk-full}; once there is room again the waiting
        writes go through, the log says so and the health clears.
        """
        store = self.open()
        self.fill_disk(store)
        for i in range(1, 4):
            store.append(message("#a", i, "x" * 5000), False)
        self.clock.advance(0.01)
        self.assertEqual(
            self.lines(),
            [
                "error: history: the disk is full (database or disk is full): "
                "3 changes waiting, retrying up to every 30 s. Free some space "
                "on it."
            ],
        )
        self.assertEqual((store.health(), store.queued), ("disk-full", 3))
        assert store.fault is not None
        self.assertEqual(store.fault.what, "the disk is full")
        self.pragma(store, "max_page_count=1000000")
        self.clock.advance(0.5)
        self.assertEqual(
            self.lines(),
            [
                "info: history: writes work again after 0 s of failing (the disk "
                "is full); 3 waiting changes written"
            ],
        )
        self.assertEqual((store.health(), store.queued), (None, 0))
        found = self.successResultOf(store.read("#a"))
        self.assertEqual([m.id for m in found], [1, 2, 3])

    def test_reminders(self) -> None:
        """
        While the same fault lasts, the log reminds of it every
        L{REMINDER_INTERVAL} seconds, not at every retry.
        """
        store = self.open()
        self.fill_disk(store)
        store.append(message("#a", 1, "x" * 5000), False)
        self.clock.advance(0.01)
        self.assertEqual(len(self.lines()), 1)
        retries = store.failed_batches
        self.clock.pump([1.0] * int(REMINDER_INTERVAL - 2))
        self.assertGreater(store.failed_batches, retries + 5)
        self.assertEqual(self.lines(), [])
        self.clock.pump([1.0] * 40)
        (reminder,) = self.lines()
        self.assertIn("the disk is full", reminder)

    def test_full_sync_refusal_named(self) -> None:
        """
        With C{sync = full} a message the full disk refused fails with an
        error that names the fault, and the log counts it as not kept.
        """
        store = self.open(sync="full")
        self.fill_disk(store)
        committed = store.append(message("#a", 1, "x" * 5000), True)
        assert committed is not None
        self.clock.advance(0)
        failure = self.failureResultOf(committed, StorageError)
        self.assertEqual(
            failure.getErrorMessage(), "the disk is full (database or disk is full)"
        )
        self.assertEqual(
            self.lines(),
            [
                "error: history: the disk is full (database or disk is full): "
                "0 changes waiting; 1 room message not kept, their senders told, "
                "retrying up to every 30 s. Free some space on it."
            ],
        )
        self.assertEqual(store.health(), "disk-full")

    def test_read_only(self) -> None:
        """
        A database SQLite may not write is named as read-only.
        """
        store = self.open()
        self.pragma(store, "query_only=1")
        store.append(message("#a", 1, "m1"), False)
        self.clock.advance(0.01)
        (line,) = self.lines()
        self.assertTrue(
            line.startswith(
                "error: history: the database is read-only (attempt to write a "
                "readonly database): 1 change waiting"
            ),
            line,
        )
        self.assertEqual(store.health(), "read-only")

    def test_left_in_a_transaction(self) -> None:
        """
        A connection left inside a transaction (a rollback that failed) is
        rolled back before the next batch, which then goes through.
        """
        store = self.open()

        def begin() -> None:
            assert store._database.db is not None
            store._database.db.execute("BEGIN IMMEDIATE")
            store._database.db.execute("DELETE FROM rooms")

        self.successResultOf(store._in_thread(begin))
        store.append(message("#a", 1, "m1"), False)
        found = self.successResultOf(store.read("#a"))
        self.assertEqual([m.text for m in found], ["m1"])
        self.assertEqual((store.health(), self.lines()), (None, []))

    def test_deleted_on_write(self) -> None:
        """
        A database deleted under the store is noticed at the next batch,
        which is not written into the deleted file; the log says so once,
        and the health says C{deleted}; with C{sync = full} the sender is
        told.
        """
        store = self.open(sync="full")
        path = store._database.path
        os.unlink(path)
        committed = store.append(message("#a", 1, "m1"), True)
        assert committed is not None
        self.clock.advance(0)
        failure = self.failureResultOf(committed, StorageError)
        self.assertIn("the database file was deleted", failure.getErrorMessage())
        self.assertEqual(
            self.lines(),
            [
                "error: history: the database file was deleted while tchat runs "
                f"({path}): 0 changes waiting; 1 room message not kept, "
                "their senders told. Nothing more can be kept; what the file "
                "held is lost when tchat stops. Restart tchat to start a new file."
            ],
        )
        self.assertEqual(store.health(), "deleted")
        self.assertEqual(self.successResultOf(store.read("#a")), [])
        again = store.append(message("#a", 2, "m2"), True)
        assert again is not None
        self.clock.advance(1)
        self.failureResultOf(again, StorageError)
        self.assertEqual(self.lines(), [])

    def test_deleted_while_idle(self) -> None:
        """
        While nothing is written, the store checks its file every
        L{FILE_CHECK_INTERVAL} seconds, off the reactor thread.
        """
        store = self.open()
        self.thread.held = True
        os.unlink(store._database.path)
        self.clock.advance(FILE_CHECK_INTERVAL - 1)
        self.assertEqual(self.thread.calls, [])
        self.clock.advance(1)
        self.assertIsNone(store.health())
        self.assertEqual(self.thread.run(), 1)
        self.assertEqual(store.health(), "deleted")
        (line,) = self.lines()
        self.assertIn("the database file was deleted while tchat runs", line)
        self.clock.advance(FILE_CHECK_INTERVAL * 3)
        self.assertEqual((self.thread.calls, self.lines()), ([], []))

    def test_replaced(self) -> None:
        """
        Another file put in the database's place is not written to either.
        """
        store = self.open()
        os.rename(store._database.path, store._database.path + ".old")
        sqlite3.connect(store._database.path).close()
        store.append(message("#a", 1, "m1"), False)
        self.clock.advance(0.01)
        self.assertEqual(store.health(), "replaced")
        (line,) = self.lines()
        self.assertIn(
            "the database file was replaced by another while tchat runs", line
        )

    def test_stop_gives_up(self) -> None:
        """
        A stop retries what the disk refuses for L{CLOSE_TIMEOUT} seconds,
        then gives up, says what is lost, and closes the database without
        marking a clean stop, so that the next start gives every room a new
        epoch.
        """
        store = self.open()
        self.fill_disk(store)
        store.append(message("#a", 1, "x" * 5000), False)
        store.append(message("#a", 2, "x" * 5000), False)
        store.save_session(Session("AAAA-BBBB", "al", "red", True, (), None, 0.0))
        self.clock.advance(0.01)
        self.lines()
        closing = store.close()
        self.clock.pump([0.05] * int(CLOSE_TIMEOUT / 0.05 - 10))
        self.assertNoResult(closing)
        self.clock.pump([0.05] * 20)
        self.successResultOf(closing)
        last = self.lines()[-1]
        self.assertRegex(last, r"^critical: history: stopping: gave up after 4\.\d s: ")
        self.assertEqual(
            last.partition(" s: ")[2],
            "the disk is full (database or disk is full). Lost 3 changes that "
            "could not be written: 2 room messages (#a: ids 1 to 2), 1 resume "
            "code. Every room starts a new epoch at the next start, so clients "
            "are told of the gap.",
        )
        self.assertIsNone(store._database.db)
        again = self.store(store._config)
        loaded = self.successResultOf(again.load(self.clock.seconds()))
        self.addCleanup(self.close, again)
        self.assertTrue(loaded.lossy)

    def test_stop_deleted(self) -> None:
        """
        With the file deleted a stop gives up at once: retrying cannot
        help.
        """
        store = self.open()
        path = store._database.path
        os.unlink(path)
        store.append(message("#a", 1, "m1"), False)
        self.clock.advance(0.01)
        self.lines()
        self.successResultOf(store.close())
        (line,) = self.lines()
        self.assertEqual(
            line,
            "critical: history: stopping: gave up after 0.0 s: the database file "
            f"was deleted while tchat runs ({path}). Lost 1 change that "
            "could not be written: 1 room message (#a: id 1); so is everything "
            "the deleted or replaced file held. Every room starts a new epoch at "
            "the next start, so clients are told of the gap.",
        )

    def test_stop_with_a_stuck_disk(self) -> None:
        """
        A batch the disk never finishes does not hold the stop: after
        L{CLOSE_TIMEOUT} seconds it finishes without it, and says so.
        """
        store = self.open()
        self.thread.held = True
        store.append(message("#a", 1, "m1"), False)
        store._flush()
        closing = store.close()
        self.clock.pump([0.01] * int(CLOSE_TIMEOUT / 0.01 + 10))
        self.successResultOf(closing)
        (line,) = self.lines()
        self.assertEqual(
            line,
            "critical: history: stopping: the disk has not finished writing a "
            "batch of 1 change in 5 s; tchat stops without it, so it may be "
            "lost",
        )
        self.thread.held = False
        self.thread.run()

    def test_stop_when_marking_clean_fails(self) -> None:
        """
        When even recording a clean stop fails, the connection is closed
        all the same and the stop finishes, saying so.
        """
        store = self.open()
        self.pragma(store, "query_only=1")
        self.successResultOf(store.close())
        self.assertIsNone(store._database.db)
        self.assertEqual(
            self.lines(),
            [
                "error: history: stopping: could not record a clean stop: "
                "attempt to write a readonly database"
            ],
        )


class FaultTests(SynchronousTestCase):
    """
    L{Fault.of} and L{describe_changes}: the words the log uses.
    """

    def test_of_sqlite_errors(self) -> None:
        """
        SQLite's errors are named by their code (or, raised without one, by
        their text).
        """
        for text, check in [
            ("database or disk is full", "disk-full"),
            ("attempt to write a readonly database", "read-only"),
            ("disk I/O error", "io-error"),
            ("database disk image is malformed", "damaged"),
            ("database is locked", "locked"),
            ("something else", "failing"),
        ]:
            fault = Fault.of(sqlite3.OperationalError(text))
            self.assertEqual((fault.check, fault.detail), (check, text))
        self.assertEqual(Fault.of(ValueError("bug")).check, "failing")
        full = Fault("disk-full", "the disk is full", "no room")
        self.assertIs(Fault.of(StorageError(full)), full)

    def test_describe_changes(self) -> None:
        """
        Lost changes are counted by kind, room messages by room with their
        ids.
        """
        store = SQLiteStore(
            HistoryConfig(path="unused.sqlite3"), Clock(), 3, run_in_thread=execute
        )
        store.save_room(RoomRecord("#a", "#a", 1, [(1, 1)]))
        for room, id in [("#a", 4), ("#b", 9), ("#a", 5), ("#a", 6)]:
            store.append(message(room, id, "m"), False)
        store.save_ban(events_ban := _ban())
        store.delete_ban(events_ban.id)
        self.assertEqual(
            describe_changes(store._pending),
            "4 room messages (#a: ids 4 to 6; #b: id 9), 1 room, 1 ban, 1 lifted ban",
        )
        self.assertEqual(describe_changes([]), "nothing")


def _ban() -> Any:
    from tchat.history import Ban

    return Ban(1, "nick", "troll*", "spam", "root", 0.0)


class StoppingTests(HistoryTestCase):
    def test_no_messages_while_stopping(self) -> None:
        """
        Once the hub is stopping, a message is refused with a reason rather
        than acknowledged and then lost with the closed store.
        """
        alice_p, alice = self.connect("alice")
        alice_p.take()
        stopping = self.hub.stop()
        self.say(alice, "too late")
        self.clock.advance(self.hub.config.shutdown_grace + 1)
        self.successResultOf(stopping)
        shutdown, error = alice_p.take()
        self.assertEqual(shutdown, events.Shutdown("the server is shutting down"))
        assert isinstance(error, events.Error)
        self.assertEqual(error.code, "not-stored")
        self.assertEqual(self.hub.directory.rooms["#lobby"].last_id, 0)
