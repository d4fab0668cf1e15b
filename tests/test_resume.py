"""
Tests for L{tchat.resume}: the pure L{resume_point}, and L{Resume} driven
directly through C{hub.concerns.resume} (C{/history} pages, a client's own
resume points, C{/resume CODE}).

The hub's end-to-end behaviour (through C{hub.execute}) is in
C{tests.test_history}; these pin down each branch of the concern, with a
store whose reads and session look-ups the test answers by hand.
"""

import random
from collections import deque
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tchat import commands, events
from tchat.backplane import LocalBackplane
from tchat.commands import Color, Join, Nick, Part, Say
from tchat.config import HistoryConfig, LimitsConfig, ServerConfig
from tchat.history import Ban, MemoryStore, Session
from tchat.hub import ChatFactory
from tchat.model import Room, User
from tchat.palette import PALETTE
from tchat.resume import RESUME_FAILURES, Resume, resume_point
from tchat.seam import IBackplane, OperatorRequest, UnreachableError
from tests.support import FakeChat, FakeNode, FakeParticipant, of, started_hub


class ControlledStore(MemoryStore):
    """
    An in-memory store whose reads and session look-ups can be held until
    the test answers them, or fail.

    @ivar reads: The arguments of every read, as (room key, after, upto,
        before, limit).
    @ivar held: The reads or look-ups held: the store's answer, and what
        was returned in its place.
    """

    def __init__(self, config: HistoryConfig) -> None:
        super().__init__(config)
        self.reads: list[tuple[str, int, int | None, int | None, int]] = []
        self.held: list[tuple[Deferred[Any], Deferred[Any]]] = []
        self.hold_reads = False
        self.hold_sessions = False
        self.session_error: Exception | None = None

    def _maybe_hold(self, answer: Deferred[Any], hold: bool) -> Deferred[Any]:
        if not hold:
            return answer
        pending: Deferred[Any] = Deferred()
        self.held.append((answer, pending))
        return pending

    def read(
        self,
        room_key: str,
        after: int = 0,
        upto: int | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> Deferred[list[events.RoomMessage]]:
        self.reads.append((room_key, after, upto, before, limit))
        answer = super().read(room_key, after, upto, before, limit)
        return self._maybe_hold(answer, self.hold_reads)

    def session(self, code: str, oldest: float) -> Deferred[Session | None]:
        if self.session_error is not None:
            return fail(self.session_error)
        return self._maybe_hold(super().session(code, oldest), self.hold_sessions)

    def answer(self, index: int = 0) -> None:
        """Let the held read or look-up C{index} have the store's answer."""
        answer, pending = self.held.pop(index)
        answer.chainDeferred(pending)

    def refuse(self, index: int, why: Exception) -> None:
        """Fail the held read or look-up C{index} with C{why}."""
        _, pending = self.held.pop(index)
        pending.errback(why)


class CutOffBackplane(LocalBackplane):
    """
    A node's backplane whose nick claims fail with C{claim_error}, once set.
    """

    claim_error: Exception | None = None

    def claim(
        self, user: User, nick: str, takeover: bool = False, force: bool = False
    ) -> Deferred[bool]:
        if self.claim_error is not None:
            return fail(self.claim_error)
        return super().claim(user, nick, takeover)


class SlowClaims(FakeNode):
    """
    A node of a L{FakeChat} whose nick claims, once C{held} is a list, are
    answered only when the test says so (the chat's other answers are not
    held).
    """

    held: list[tuple[Deferred[bool], Deferred[bool]]] | None = None

    def claim(
        self, user: User, nick: str, takeover: bool = False, force: bool = False
    ) -> Deferred[bool]:
        answer = super().claim(user, nick, takeover)
        if self.held is None:
            return answer
        pending: Deferred[bool] = Deferred()
        self.held.append((answer, pending))
        return pending

    def answer(self) -> None:
        """Answer the first claim held."""
        assert self.held
        answer, pending = self.held.pop(0)
        answer.chainDeferred(pending)


class ResumeTestCase(SynchronousTestCase):
    history = HistoryConfig(keep=10, replay=3)

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = ControlledStore(self.history)
        self.hub = self.make_hub(store=self.store)

    def make_hub(
        self,
        store: ControlledStore | None = None,
        backplane: IBackplane | None = None,
        seed: int = 1,
    ) -> ChatFactory:
        return started_hub(
            self,
            self.clock,
            server=ServerConfig(reconnect_grace=0, name="tchat"),
            rng=random.Random(seed),
            history=self.history,
            store=store,
            backplane=backplane,
        )

    @property
    def resume(self) -> Resume:
        return self.hub.concerns.resume

    def connect(
        self,
        nick: str | None = None,
        hub: ChatFactory | None = None,
        door: str = "telnet",
    ) -> tuple[FakeParticipant, User]:
        """Connect someone (named C{nick}), forgetting their arrival."""
        hub = hub or self.hub
        participant = FakeParticipant(door, None if door == "onion" else "192.0.2.1")
        user = hub.connect(participant)
        if nick is not None:
            hub.execute(user, Nick(nick))
            self.assertEqual(user.nick, nick)
        participant.take()
        return participant, user

    def say(self, user: User, *texts: str, room: str | None = None) -> None:
        for text in texts:
            self.hub.execute(user, Say(text, room))

    def room(self, name: str) -> Room:
        room = self.hub.directory.room(name)
        assert room is not None
        return room

    @staticmethod
    def ids(history: object) -> list[int]:
        assert isinstance(history, events.History)
        return [m.id for m in history.messages]

    @staticmethod
    def histories(received: list[object]) -> list[events.History]:
        """C{received}, which must be histories only."""
        found = []
        for event in received:
            assert isinstance(event, events.History), event
            found.append(event)
        return found

    @staticmethod
    def of(kind: type[Any], received: list[object]) -> list[Any]:
        return [e for e in received if isinstance(e, kind)]


# -- resume_point -------------------------------------------------------------


def room(
    lineage: list[tuple[int, int]], delivered: int, pruned: int = 0, last: int = 0
) -> Room:
    """A room with these epochs, its latest delivered id, and what is pruned."""
    made = Room("#r", lineage[-1][0], deque(maxlen=5))
    made.lineage = list(lineage)
    made.delivered_id = delivered
    made.last_id = max(last, delivered)
    made.pruned_to = pruned
    return made


THREE_EPOCHS = [(100, 1), (200, 11), (300, 21)]
"""Epoch 100 had ids 1..10, epoch 200 ids 11..20, epoch 300 ids from 21."""


class ResumePointTests(SynchronousTestCase):
    def test_same_epoch(self) -> None:
        """
        In the room's epoch (or none given), resume after the client's last
        id, with nothing left out.
        """
        r = room(THREE_EPOCHS, 30)
        self.assertEqual(resume_point(r, 25, 300, 5), (25, True))
        self.assertEqual(resume_point(r, 25, None, 5), (25, True))
        self.assertEqual(resume_point(r, 0, None, 5), (0, True))
        self.assertEqual(resume_point(r, 30, 300, 5), (30, True))

    def test_older_epoch_before_next(self) -> None:
        """
        An older epoch of the lineage shares its ids up to the next epoch's
        first: a client whose last id is before that resumes completely.
        """
        r = room(THREE_EPOCHS, 30)
        self.assertEqual(resume_point(r, 10, 100, 5), (10, True))
        self.assertEqual(resume_point(r, 4, 100, 5), (4, True))
        self.assertEqual(resume_point(r, 20, 200, 5), (20, True))
        self.assertEqual(resume_point(r, 15, 200, 5), (15, True))

    def test_older_epoch_after_next(self) -> None:
        """
        A client that saw ids at or past the next epoch's first saw
        messages that were lost: resume from the last shared id, with a gap.
        """
        r = room(THREE_EPOCHS, 30)
        self.assertEqual(resume_point(r, 11, 100, 5), (10, False))
        self.assertEqual(resume_point(r, 25, 100, 5), (10, False))
        self.assertEqual(resume_point(r, 21, 200, 5), (20, False))

    def test_epoch_not_in_lineage(self) -> None:
        """
        An epoch the room never had: what the client saw is gone, so it is
        shown the latest C{replay} messages (or all there are), with a gap.
        """
        r = room(THREE_EPOCHS, 30)
        self.assertEqual(resume_point(r, 3, 999, 5), (25, False))
        self.assertEqual(resume_point(r, 29, 999, 5), (25, False))
        self.assertEqual(resume_point(r, 3, 999, 50), (0, False))

    def test_nothing_seen_of_a_room_made_again(self) -> None:
        """
        A client that saw no message of a room under an epoch it no longer
        has (the room was forgotten, nothing having been said there, and
        made again) missed only what the room has now: all of it, no gap.
        """
        r = room(THREE_EPOCHS, 30)
        self.assertEqual(resume_point(r, 0, 999, 5), (0, True))
        r.pruned_to = 10
        self.assertEqual(resume_point(r, 0, 999, 5), (10, False))

    def test_ids_past_the_room(self) -> None:
        """
        A last id past the room's latest delivered one (not its latest
        numbered, which may not be shown yet) resumes after that one.
        """
        r = room(THREE_EPOCHS, 30, last=32)
        self.assertEqual(resume_point(r, 99, None, 5), (30, True))
        self.assertEqual(resume_point(r, 31, 300, 5), (30, True))

    def test_pruned(self) -> None:
        """
        What is no longer kept cannot be sent: resuming below C{pruned_to}
        starts there, with a gap; at it, nothing is missing.
        """
        r = room(THREE_EPOCHS, 30, pruned=24)
        self.assertEqual(resume_point(r, 22, None, 5), (24, False))
        self.assertEqual(resume_point(r, 24, None, 5), (24, True))
        self.assertEqual(resume_point(r, 5, 100, 5), (24, False))
        self.assertEqual(resume_point(r, 3, 999, 50), (24, False))


# -- pages ------------------------------------------------------------------


class MemoryPageTests(ResumeTestCase):
    """Pages when the room's replay buffer holds all it keeps."""

    history = HistoryConfig(keep=10, replay=10)

    def test_from_memory(self) -> None:
        """
        When the room's latest messages cover the page, it comes from
        memory, without a read; C{more} says whether older ones are kept.
        """
        alice_p, alice = self.connect("alice")
        self.say(alice, *[f"m{i}" for i in range(1, 16)])
        alice_p.take()
        resume = self.resume
        self.assertIsNone(resume.page(alice, 3, None, None))
        self.assertIsNone(resume.page(alice, 3, "#LOBBY", 8))
        self.assertIsNone(resume.page(alice, 20, None, None))
        pages = self.histories(alice_p.take())
        self.assertEqual(
            [self.ids(p) for p in pages], [[13, 14, 15], [6, 7], list(range(6, 16))]
        )
        self.assertEqual([p.more for p in pages], [True, False, False])
        self.assertEqual(
            pages[0],
            events.History(
                "#lobby",
                self.room("#lobby").epoch,
                tuple(self.room("#lobby").recent)[-3:],
                "page",
                more=True,
            ),
        )
        self.assertEqual(self.store.reads, [])


class PageTests(ResumeTestCase):
    def test_from_store(self) -> None:
        """
        A page the room's latest messages do not cover is read from the
        store, the newest C{limit} (and one more, to tell if there are
        older ones) before C{before}.
        """
        alice_p, alice = self.connect("alice")
        self.say(alice, "m1", "m2", "m3")
        alice_p.take()
        self.resume.page(alice, 5, None, None)
        self.assertEqual(self.store.reads, [])
        self.say(alice, *[f"m{i}" for i in range(4, 9)])
        alice_p.take()
        self.resume.page(alice, 3, None, None)
        self.resume.page(alice, 3, None, 4)
        self.assertEqual(
            self.store.reads,
            [("#lobby", 0, None, 9, 4), ("#lobby", 0, None, 4, 4)],
        )
        pages = self.histories(alice_p.take())
        self.assertEqual([self.ids(p) for p in pages], [[6, 7, 8], [1, 2, 3]])
        self.assertEqual([p.more for p in pages], [True, False])
        self.assertEqual(pages[0].messages[0].text, "m6")

    def test_not_a_member(self) -> None:
        """
        Only a member of a room may page it.
        """
        alice_p, alice = self.connect("alice")
        self.hub.execute(alice, Join("#dev"))
        self.hub.execute(alice, Part("#lobby"))
        alice_p.take()
        self.assertIsNone(self.resume.page(alice, 3, "#lobby", None))
        self.assertEqual(
            alice_p.take(), [events.Error("not-in-room", "you are not in #lobby")]
        )

    def test_live_held_until_read(self) -> None:
        """
        While a page is read from the store, the reader's live messages of
        that room wait, and follow the page; other rooms' are not held.
        """
        alice_p, alice = self.connect("alice")
        bob_p, bob = self.connect("bob")
        self.hub.execute(bob, Join("#dev"))
        self.hub.execute(alice, Join("#dev"))
        self.say(alice, *[f"m{i}" for i in range(1, 6)], room="#lobby")
        bob_p.take()
        self.store.hold_reads = True
        reading = self.resume.page(bob, 2, "#lobby", None)
        assert reading is not None
        self.say(alice, "live", room="#lobby")
        self.say(alice, "dev", room="#dev")
        self.assertEqual(
            [(m.room, m.text) for m in self.of(events.RoomMessage, bob_p.take())],
            [("#dev", "dev")],
        )
        self.store.answer()
        page, live = bob_p.take()
        assert isinstance(page, events.History)
        self.assertEqual((self.ids(page), page.more), ([4, 5], True))
        assert isinstance(live, events.RoomMessage)
        self.assertEqual((live.id, live.text), (6, "live"))
        self.assertEqual(bob.holding, {})
        self.successResultOf(reading)
        self.say(alice, "later", room="#lobby")
        self.assertEqual(len(bob_p.take()), 1)

    def test_two_reads(self) -> None:
        """
        With two reads of a room in flight, live messages wait for both.
        """
        alice_p, alice = self.connect("alice")
        bob_p, bob = self.connect("bob")
        self.say(alice, *[f"m{i}" for i in range(1, 6)])
        bob_p.take()
        self.store.hold_reads = True
        self.resume.page(bob, 2, None, None)
        self.resume.page(bob, 2, None, 3)
        self.say(alice, "live")
        self.store.answer(0)
        (first,) = bob_p.take()
        self.assertEqual(self.ids(first), [4, 5])
        self.store.answer(0)
        second, live = bob_p.take()
        self.assertEqual(
            (self.ids(second), getattr(live, "text", None)), ([1, 2], "live")
        )
        self.assertEqual(bob.holding, {})

    def test_store_fails(self) -> None:
        """
        A read that fails tells the reader the history cannot be read, and
        releases what was held behind it: nothing is held forever.  The
        failure is logged.
        """
        alice_p, alice = self.connect("alice")
        bob_p, bob = self.connect("bob")
        self.say(alice, *[f"m{i}" for i in range(1, 6)])
        bob_p.take()
        self.store.hold_reads = True
        bob.tag = "h-1"
        reading = self.resume.page(bob, 2, None, None)
        bob.tag = None
        assert reading is not None
        self.say(alice, "live")
        self.assertEqual(bob_p.take(), [])
        self.store.refuse(0, RuntimeError("disk gone"))
        error, live = bob_p.take()
        self.assertEqual(
            error,
            events.Error(
                "history-unavailable",
                "the history of #lobby cannot be read right now",
                "h-1",
            ),
        )
        self.assertEqual(getattr(live, "text", None), "live")
        self.assertEqual(bob.holding, {})
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.successResultOf(reading)
        self.say(alice, "later")
        self.assertEqual(len(bob_p.take()), 1)

    def test_store_unreachable(self) -> None:
        """
        A store that cannot be reached (the cluster's) is told to the
        reader the same way, but is no error to log: it was said already.
        """
        alice_p, alice = self.connect("alice")
        self.say(alice, *[f"m{i}" for i in range(1, 6)])
        alice_p.take()
        self.store.hold_reads = True
        self.resume.page(alice, 2, None, None)
        self.store.refuse(0, ConnectionRefusedError("no redis"))
        (error,) = alice_p.take()
        self.assertEqual(getattr(error, "code", None), "history-unavailable")
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(alice.holding, {})


# -- a client's own resume points -------------------------------------------


class ResumeRoomsTests(ResumeTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice_p, self.alice = self.connect("alice")
        self.hub.execute(self.alice, Join("#dev"))
        self.say(self.alice, "d1", "d2", "d3", "d4", room="#dev")
        self.bob_p, self.bob = self.connect("bob")
        self.alice_p.take()

    def test_joins_rooms_not_joined(self) -> None:
        """
        A room the client has seen but this connection is not in is joined
        without the join replay; what the client missed follows, and says
        it is complete.
        """
        done = self.resume.resume_rooms(self.bob, (("#dev", 2, None),))
        assert done is not None
        self.successResultOf(done)
        dev = self.room("#dev")
        self.assertIn(self.bob, dev.members)
        received = self.bob_p.take()
        (history,) = self.of(events.History, received)
        self.assertEqual(
            history,
            events.History(
                "#dev",
                dev.epoch,
                tuple(dev.recent)[-2:],
                "resume",
                complete=True,
                last_id=4,
            ),
        )
        self.assertEqual(self.ids(history), [3, 4])
        joined = self.of(events.Presence, self.alice_p.take())
        self.assertEqual(
            [(p.kind, p.nick, p.room) for p in joined], [("join", "bob", "#dev")]
        )

    def test_keeps_current_room(self) -> None:
        """
        Rooms joined by a resume do not change where the user talks.
        """
        self.assertIs(self.bob.current, self.room("#lobby"))
        self.resume.resume_rooms(self.bob, (("#dev", 4, None), ("#ops", 0, None)))
        self.assertEqual([r.name for r in self.bob.rooms], ["#lobby", "#dev", "#ops"])
        self.assertIs(self.bob.current, self.room("#lobby"))

    def test_skips_invalid_names(self) -> None:
        """
        A room name that cannot be a room is refused, once; the others are
        resumed.
        """
        self.resume.resume_rooms(self.bob, (("#no way", 1, None), ("dev", 4, None)))
        received = self.bob_p.take()
        self.assertEqual(
            self.of(events.Error, received),
            [
                events.Error(
                    "room-invalid",
                    "'#no way': a room name may hold only letters, digits, '_' "
                    "and '-' after '#'",
                )
            ],
        )
        self.assertEqual([r.name for r in self.bob.rooms], ["#lobby", "#dev"])
        self.assertIsNone(self.hub.directory.room("#no way"))


# -- /resume CODE -----------------------------------------------------------


class ResumeCodeTests(ResumeTestCase):
    def left(self, nick: str = "alice", door: str = "telnet") -> str:
        """
        C{nick} was in the lobby and #dev (talking in #dev), and left:
        their resume code.
        """
        participant, user = self.connect(nick, door=door)
        self.hub.execute(user, Join("#dev"))
        self.hub.disconnect(user, "gone")
        return user.code

    def test_banned_session(self) -> None:
        """
        A banned session's code (as typed, in any case) is refused: the
        user is told why and closed, and nothing of the session comes back.
        """
        dave_p, _ = self.connect("dave")
        code = self.left()
        self.hub.concerns.bans.add(
            Ban(1, "session", code, "evading", "root", self.clock.seconds())
        )
        back_p, back = self.connect()
        guest = back.nick
        dave_p.take()
        typed = code.lower().replace("-", " ")
        self.assertIsNone(self.resume.resume_code(back, typed))
        self.assertEqual(
            back_p.take(),
            [events.Error("banned", "you are banned from tchat: evading")],
        )
        self.assertEqual((back_p.closed, back_p.close_why), ("banned", "policy"))
        self.assertFalse(back.connected)
        self.assertNotEqual(back.code, code)
        self.assertEqual(
            dave_p.take(),
            [
                events.Presence(
                    self.clock.seconds(), "quit", guest, "telnet", reason="banned"
                )
            ],
        )

    def test_own_code(self) -> None:
        """
        A connection cannot resume its own code; nothing changes.
        """
        participant, user = self.connect("carol")
        self.assertIsNone(self.resume.resume_code(user, user.code))
        self.assertEqual(
            participant.take(),
            [events.Error("bad-arguments", "that is this connection's own code")],
        )
        self.assertTrue(user.connected)
        self.assertEqual(user.nick, "carol")

    def test_take_over_live_session(self) -> None:
        """
        When the code's connection is still here, it is told it was resumed
        by a new one and closed; the new one carries on its session, rooms
        and current room included.
        """
        old_p, old = self.connect("alice")
        self.hub.execute(old, Join("#dev"))
        code = old.code
        back_p, back = self.connect()
        old_p.take()
        self.assertIsNone(self.resume.resume_code(back, code))
        self.assertEqual(
            of(events.Goodbye, old_p.take()),
            [events.Goodbye("resumed by a new connection", elsewhere=True)],
        )
        self.assertEqual(old_p.closed, "resumed by a new connection")
        self.assertFalse(back.connected)
        self.assertIs(back_p.user, old)
        self.assertEqual((old.nick, old.code), ("alice", code))
        self.assertIs(self.hub.directory.codes[code], old)
        self.assertEqual([r.name for r in old.rooms], ["#lobby", "#dev"])
        self.assertIs(old.current, self.room("#dev"))

    def test_unknown_or_expired(self) -> None:
        """
        A code no session has, or one that expired, is told as such, with
        the tag of the request even when the store answers after it.
        """
        code = self.left()
        self.clock.advance(self.history.resume_ttl + 1)
        participant, user = self.connect()
        self.store.hold_sessions = True
        for typed, tag in (("zzzz-zzzz", "r-1"), (code, "r-2")):
            user.tag = tag
            self.resume.resume_code(user, typed)
            user.tag = None
        self.assertEqual(participant.take(), [])
        self.store.answer(0)
        self.store.answer(0)
        self.assertEqual(
            participant.take(),
            [
                events.Error(
                    "no-such-session",
                    f"no session has the code {typed!r} (codes expire 24 hours "
                    "after you leave)",
                    tag,
                )
                for typed, tag in (("zzzz-zzzz", "r-1"), (code, "r-2"))
            ],
        )
        self.assertNotEqual(user.code, code)

    def test_store_fails(self) -> None:
        """
        When sessions cannot be looked up, the user is told to try again,
        with the request's tag.
        """
        code = self.left()
        participant, user = self.connect()
        self.store.session_error = ConnectionRefusedError("no redis")
        user.tag = "r-1"
        self.resume.resume_code(user, code)
        self.assertEqual(
            participant.take(),
            [
                events.Error(
                    "history-unavailable",
                    "resume codes cannot be checked right now; try again soon",
                    "r-1",
                )
            ],
        )

    def test_gone_meanwhile(self) -> None:
        """
        A user who leaves while the code is looked up is not restored, and
        the session stays for someone else to resume.
        """
        code = self.left()
        participant, user = self.connect()
        self.store.hold_sessions = True
        self.resume.resume_code(user, code)
        self.hub.disconnect(user, "gone")
        self.store.answer()
        self.assertEqual(participant.take(), [])
        self.assertNotIn(code, self.hub.directory.codes)
        self.store.hold_sessions = False
        _, again = self.connect()
        self.resume.resume_code(again, code)
        self.assertEqual(again.nick, "alice")

    def test_same_code_twice(self) -> None:
        """
        Two connections resuming one code at once: the first to be answered
        becomes the session; the other is told no session has that code.
        """
        code = self.left()
        first_p, first = self.connect()
        second_p, second = self.connect()
        self.store.hold_sessions = True
        self.resume.resume_code(first, code)
        self.resume.resume_code(second, code)
        self.store.answer(0)
        self.store.answer(0)
        self.assertEqual((first.nick, first.code), ("alice", code))
        self.assertNotEqual(second.code, code)
        (error,) = self.of(events.Error, second_p.take())
        self.assertEqual(error.code, "no-such-session")

    def test_guessing_slowed(self) -> None:
        """
        After five unknown codes from one address within a minute, the
        next try waits (the user is told how long) and is then checked: the
        owner of a real code still gets it back, while guessing crawls.  A
        user elsewhere is not slowed.
        """
        code = self.left()
        participant, user = self.connect()
        for n in range(RESUME_FAILURES):
            self.resume.resume_code(user, f"zzzz-zzz{n}")
        self.assertEqual(
            [e.code for e in self.of(events.Error, participant.take())],
            ["no-such-session"] * RESUME_FAILURES,
        )
        waiting = self.resume.resume_code(user, code)
        assert waiting is not None
        (status,) = participant.take()
        self.assertEqual(
            status,
            events.Status(
                "too many unknown resume codes lately: yours is checked in 1 s"
            ),
        )
        self.assertNotEqual(user.nick, "alice")
        self.assertEqual(self.hub.metrics.rate_limited["resume"], 1)
        self.clock.advance(1)
        self.assertEqual((user.nick, user.code), ("alice", code))

    def test_guessing_at_once(self) -> None:
        """
        Codes tried at once from many connections of one address wait one
        after another, each twice as long, up to a minute; a right code
        among them is still taken, in its turn.
        """
        code = self.left()
        tries = [self.connect() for _ in range(RESUME_FAILURES + 8)]
        for n, (_, user) in enumerate(tries[:-1]):
            self.resume.resume_code(user, f"zzzz-zz{n:02d}")
        self.resume.resume_code(tries[-1][1], code)
        waits = [
            status.text.rsplit(" ", 2)[1]
            for participant, _ in tries
            for status in self.of(events.Status, participant.take())
        ]
        self.assertEqual(waits, ["1", "2", "4", "8", "16", "32", "60", "60"])
        self.clock.advance(59)
        self.assertNotEqual(tries[-1][1].nick, "alice")
        self.clock.advance(1)
        self.assertEqual(tries[-1][1].nick, "alice")

    def test_guesser_leaves_while_waiting(self) -> None:
        """
        A try whose user leaves while it waits is forgotten.
        """
        code = self.left()
        participant, user = self.connect()
        for n in range(RESUME_FAILURES):
            self.resume.resume_code(user, f"zzzz-zzz{n}")
        self.resume.resume_code(user, code)
        self.hub.disconnect(user, "gone")
        participant.take()
        self.clock.advance(1)
        self.assertEqual(participant.take(), [])
        self.assertNotIn(code, self.hub.directory.codes)

    def test_onion_guessers(self) -> None:
        """
        Onion users share one address (the local tor): one onion user's
        failures slow only that connection, until onion users together
        fail twenty times.
        """
        one_p, one = self.connect(door="onion")
        for n in range(RESUME_FAILURES):
            self.resume.resume_code(one, f"zzzz-zzz{n}")
        one_p.take()
        self.resume.resume_code(one, "zzzz-zzzz")
        self.assertEqual(len(self.of(events.Status, one_p.take())), 1)
        two_p, two = self.connect(door="onion")
        self.resume.resume_code(two, "zzzz-zzzz")
        self.assertEqual(self.of(events.Status, two_p.take()), [])


class RestoreTests(ResumeTestCase):
    """
    What C{/resume CODE} brings back: nick, code, colour, rooms.
    """

    def left(self, user: User) -> str:
        self.hub.disconnect(user, "gone")
        return user.code

    def test_same_nick_other_case(self) -> None:
        """
        A user who took their session's nick in another case before
        resuming is given its spelling back, not told it is someone
        else's.
        """
        _, alice = self.connect("alice")
        code = self.left(alice)
        back_p, back = self.connect("ALICE")
        self.hub.execute(back, commands.Resume(code))
        self.assertEqual(back.nick, "alice")
        self.assertEqual([e for e in back_p.take() if isinstance(e, events.Error)], [])

    def test_everything_back(self) -> None:
        """
        The session's nick, colour and colour setting, rooms (leaving those
        it was not in) and current room come back, after a welcome.
        """
        _, alice = self.connect("alice")
        self.hub.execute(alice, Join("#dev"))
        self.hub.execute(alice, Join("#ops"))
        self.hub.execute(alice, Part("#lobby"))
        self.hub.execute(alice, Join("#dev"))
        self.hub.execute(alice, Color("cyan"))
        self.hub.execute(alice, Color("off"))
        code = self.left(alice)
        back_p, back = self.connect()
        self.resume.resume_code(back, code)
        self.assertEqual((back.nick, back.code), ("alice", code))
        self.assertEqual((back.colour, back.show_colours), (PALETTE["cyan"], False))
        self.assertEqual([r.name for r in back.rooms], ["#dev", "#ops"])
        self.assertIs(back.current, self.room("#dev"))
        statuses = self.of(events.Status, back_p.take())
        self.assertEqual(statuses[0].text, "welcome back, alice: restoring #dev, #ops")

    def test_mute_follows_session(self) -> None:
        """
        An onion user's mute sticks to their session: resuming it on a new
        connection brings the mute back.
        """
        _, eve = self.connect("eve", door="onion")
        self.hub.concerns.moderation.request(
            OperatorRequest("mute", "eve", "zed", "root", "web", duration=600)
        )
        code = self.left(eve)
        _, back = self.connect(door="onion")
        self.assertIsNone(back.muted_until)
        self.resume.resume_code(back, code)
        self.assertEqual(back.muted_until, self.clock.seconds() + 600)

    def test_nick_taken(self) -> None:
        """
        When someone here has the session's nick now, the user keeps theirs
        and is told; the rest of the session comes back.
        """
        _, alice = self.connect("alice")
        self.hub.execute(alice, Join("#dev"))
        code = self.left(alice)
        self.connect("alice")
        back_p, back = self.connect()
        guest = back.nick
        self.resume.resume_code(back, code)
        self.assertEqual(
            self.of(events.Error, back_p.take()),
            [
                events.Error(
                    "nick-taken",
                    f"alice is in use by someone else now; you stay {guest}",
                )
            ],
        )
        self.assertEqual((back.nick, back.code), (guest, code))
        self.assertEqual([r.name for r in back.rooms], ["#lobby", "#dev"])

    def test_nick_banned(self) -> None:
        """
        When the session's nick is banned now, the user keeps theirs and is
        told; the rest of the session comes back.
        """
        _, alice = self.connect("alice")
        self.hub.execute(alice, Join("#dev"))
        code = self.left(alice)
        self.hub.concerns.bans.add(
            Ban(1, "nick", "ali*", "", "root", self.clock.seconds())
        )
        back_p, back = self.connect()
        guest = back.nick
        self.resume.resume_code(back, code)
        self.assertEqual(
            self.of(events.Error, back_p.take()),
            [events.Error("banned", f"the nick alice is banned; you stay {guest}")],
        )
        self.assertEqual((back.nick, back.code), (guest, code))
        self.assertEqual([r.name for r in back.rooms], ["#lobby", "#dev"])


class ClaimTests(ResumeTestCase):
    """
    The session's nick is claimed in the whole chat before the rest comes
    back.
    """

    def test_claim_answered_later(self) -> None:
        """
        Until the chat answers the nick claim, nothing else of the session
        comes back (not even the question of its rooms); then the nick
        first, and the rest after it, once.
        """
        chat = FakeChat()
        node = SlowClaims(chat, "a")
        chat.nodes["a"] = node
        self.hub = self.make_hub(backplane=node)
        self.make_hub(backplane=chat.node("b"), seed=2)
        _, alice = self.connect("alice")
        self.hub.execute(alice, Join("#dev"))
        self.hub.disconnect(alice, "gone")
        back_p, back = self.connect()
        guest = back.nick
        node.held = []
        restoring = self.resume.resume_code(back, alice.code)
        assert restoring is not None
        self.assertNoResult(restoring)
        self.assertEqual(back_p.take(), [])
        self.assertEqual((back.nick, [r.name for r in back.rooms]), (guest, ["#lobby"]))
        self.assertEqual(len(node.held), 1)
        node.answer()
        self.successResultOf(restoring)
        received = back_p.take()
        renamed = received[0]
        assert isinstance(renamed, events.Presence)
        self.assertEqual(
            (renamed.kind, renamed.nick, renamed.new_nick), ("nick", guest, "alice")
        )
        self.assertEqual(
            self.of(events.Status, received),
            [events.Status("welcome back, alice: restoring #lobby, #dev")],
        )
        self.assertEqual(received[1], self.of(events.Status, received)[0])
        self.assertEqual([r.name for r in back.rooms], ["#lobby", "#dev"])

    def test_claim_refused(self) -> None:
        """
        When another node's user has the nick, the user keeps theirs and is
        told, with the request's tag; the rest comes back.
        """
        chat = FakeChat()
        self.hub = self.make_hub(backplane=chat.node("a"))
        other = self.make_hub(backplane=chat.node("b"), seed=2)
        _, alice = self.connect("alice")
        self.hub.execute(alice, Join("#dev"))
        self.hub.disconnect(alice, "gone")
        self.connect("alice", hub=other)
        back_p, back = self.connect()
        guest = back.nick
        chat.hold()
        back.tag = "r-1"
        self.resume.resume_code(back, alice.code)
        back.tag = None
        chat.release()
        self.assertEqual(
            self.of(events.Error, back_p.take()),
            [
                events.Error(
                    "nick-taken",
                    f"alice is in use by someone else now; you stay {guest}",
                    "r-1",
                )
            ],
        )
        self.assertEqual((back.nick, back.code), (guest, alice.code))
        self.assertEqual([r.name for r in back.rooms], ["#lobby", "#dev"])

    def test_unreachable(self) -> None:
        """
        When the other nodes cannot be reached, this node decides alone:
        the nick is restored; a claim that fails otherwise counts as taken.
        """
        backplane = CutOffBackplane(self.store)
        self.hub = self.make_hub(store=self.store, backplane=backplane)
        _, alice = self.connect("alice")
        _, bob = self.connect("bob")
        self.hub.disconnect(alice, "gone")
        self.hub.disconnect(bob, "gone")
        backplane.claim_error = UnreachableError("no redis")
        back_p, back = self.connect()
        self.resume.resume_code(back, alice.code)
        self.assertEqual(back.nick, "alice")
        self.assertEqual(self.of(events.Error, back_p.take()), [])

        backplane.claim_error = RuntimeError("confused")
        again_p, again = self.connect()
        self.resume.resume_code(again, bob.code)
        self.assertNotEqual(again.nick, "bob")
        (error,) = self.of(events.Error, again_p.take())
        self.assertEqual(error.code, "nick-taken")
        self.assertEqual(again.code, bob.code)


class JoinLimitsTests(ResumeTestCase):
    """
    A resume joins rooms through the same checks as C{/join}: rooms per
    user, joins per minute, and full rooms.
    """

    def setUp(self) -> None:
        super().setUp()
        self.hub = started_hub(
            self,
            self.clock,
            history=self.history,
            store=self.store,
            limits=LimitsConfig(
                silent_timeout=0,
                max_rooms_per_user=3,
                joins_per_minute=4,
                max_users_per_room=1,
            ),
        )

    def points(self, *names: str) -> tuple[tuple[str, int, int | None], ...]:
        return tuple((name, 0, None) for name in names)

    def test_rooms_per_user(self) -> None:
        """
        A resume naming more rooms than one may be in joins as many as
        fit (the lobby counts), says once why not the rest, and makes no
        room for them.
        """
        participant, user = self.connect("alice")
        self.hub.execute(
            user, commands.ResumeRooms(self.points("#a", "#b", "#c", "#d", "#e"))
        )
        self.assertEqual([r.name for r in user.rooms], ["#lobby", "#a", "#b"])
        errors = self.of(events.Error, participant.take())
        self.assertEqual([e.code for e in errors], ["too-many-rooms"])
        self.assertNotIn("#c", self.hub.directory.rooms)

    def test_joins_per_minute(self) -> None:
        """
        Resumes on one connection count against its joins a minute: one
        cannot join rooms faster by resuming than by joining.
        """
        participant, user = self.connect("alice")
        for name in ("#a", "#b", "#c", "#d", "#e"):
            self.hub.execute(user, commands.ResumeRooms(self.points(name)))
            if self.hub.directory.room(name) is not None:
                self.hub.execute(user, Part(name))
        errors = self.of(events.Error, participant.take())
        self.assertEqual([e.code for e in errors], ["rate-limited"])
        self.assertIn("too many joins", errors[0].text)
        self.assertNotIn("#e", self.hub.directory.rooms)

    def test_full_room(self) -> None:
        """
        A resume does not get anyone into a full room.
        """
        _, alice = self.connect("alice")
        self.hub.execute(alice, Join("#small"))
        participant, bob = self.connect("bob")
        self.hub.execute(bob, commands.ResumeRooms(self.points("#small")))
        self.assertEqual([r.name for r in bob.rooms], ["#lobby-2"])
        errors = self.of(events.Error, participant.take())
        self.assertEqual([e.code for e in errors], ["room-full"])

    def test_resume_code_counts_rooms_left(self) -> None:
        """
        C{/resume CODE} of a session in as many rooms as allowed, without
        the lobby, gets them all back: the lobby it leaves makes room.
        """
        _, alice = self.connect("alice")
        self.hub.execute(alice, Join("#a"))
        self.hub.execute(alice, Join("#b"))
        self.hub.execute(alice, Part("#lobby"))
        self.hub.execute(alice, Join("#c"))
        code = alice.code
        self.hub.disconnect(alice, "gone")
        self.clock.advance(60)
        participant, back = self.connect()
        self.hub.execute(back, commands.Resume(code))
        self.assertEqual([r.name for r in back.rooms], ["#a", "#b", "#c"])
        self.assertEqual(self.of(events.Error, participant.take()), [])
