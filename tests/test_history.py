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
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, execute
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tchat import events
from tchat.commands import Join, Nick, Part, Resume, ResumeRooms, Say, ShowHistory
from tchat.config import HistoryConfig, ServerConfig
from tchat.history import Loaded, MemoryStore, RoomRecord, Session, SQLiteStore
from tchat.hub import ChatFactory
from tchat.model import User
from tchat.palette import PALETTE
from tchat.resume import resume_point
from tchat.sessions import normalize_code
from tests.support import FakeParticipant

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
            ServerConfig(motd=("hi",)),
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
        When the old connection is still open, the new one takes over.
        """
        alice_p, alice = self.connect("alice")
        code = alice.code
        back_p = FakeParticipant()
        back = self.hub.connect(back_p)
        self.hub.execute(back, Resume(code))
        self.assertEqual(alice_p.closed, "resumed by a new connection")
        self.assertFalse(alice.connected)
        self.assertEqual(back.nick, "alice")

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


class FakeThread:
    """
    Stands in for L{SQLiteStore}'s thread.  Each call runs at once, or,
    while C{held}, waits until the test calls L{run}: a test can then look
    at the store with a batch in flight.
    """

    def __init__(self) -> None:
        self.held = False
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]]
        self.calls = []

    def __call__(self, f: Callable[..., T], /, *args: Any) -> Deferred[T]:
        if not self.held:
            return execute(f, *args)
        done: Deferred[T] = Deferred()
        self.calls.append((f, args, done))
        return done

    def run(self) -> int:
        """
        Run the held calls, and those they lead to, in order.

        @return: How many ran.
        """
        ran = 0
        while self.calls:
            f, args, done = self.calls.pop(0)
            execute(f, *args).chainDeferred(done)
            ran += 1
        return ran


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
        Close the store, running whatever its thread still holds.
        """
        self.thread.held = False
        self.thread.run()
        self.successResultOf(store.close())


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
        fires once another connection can read the message.
        """
        config = self.config(sync="full")
        store, _ = self.open(config)
        self.addCleanup(self.close, store)
        store.save_room(RoomRecord("#a", "#a", 1, [(1, 1)]))
        committed = store.append(message("#a", 1, "safe"), True)
        assert committed is not None
        self.assertNoResult(committed)
        self.clock.advance(0)
        self.successResultOf(committed)
        other = sqlite3.connect(config.path)
        self.addCleanup(other.close)
        self.assertEqual(other.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertEqual(
            other.execute("SELECT text FROM messages").fetchall(), [("safe",)]
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
        if store._timer is not None and store._timer.active():
            store._timer.cancel()

        def drop() -> None:
            assert store._db is not None
            store._db.close()

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
            hub = ChatFactory(ServerConfig(), clock, history=config, store=store)
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
        write = store._write
        calls: list[int] = []

        def flaky(ops: Any) -> float:
            calls.append(len(ops))
            if len(calls) <= times:
                raise sqlite3.OperationalError("database or disk is full")
            return write(ops)

        store._write = flaky  # type: ignore[method-assign]
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
        self.flushLoggedErrors(sqlite3.OperationalError)

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
        self.flushLoggedErrors(sqlite3.OperationalError)

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
        self.flushLoggedErrors(sqlite3.OperationalError)


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
