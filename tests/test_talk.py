"""
Tests for L{tchat.talk.Talk}, driven directly through C{hub.concerns.talk}:
room messages (the checks, retries, and each numbered message shown to the
room) and private messages, on one node and across a L{FakeChat}.

The façade's end-to-end tests of the same paths are in C{tests/test_hub.py}
and C{tests/test_history.py}.
"""

import math
import time
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tchat import events
from tchat.backplane import LocalBackplane
from tchat.config import HistoryConfig, LimitsConfig
from tchat.history import MemoryStore
from tchat.hub import ChatFactory
from tchat.model import Room, User
from tchat.seam import Audience, Draft, IBackplane, NotKeptError, UnreachableError
from tchat.talk import Talk
from tests.support import FakeChat, FakeParticipant, of, started_hub

NOW = 1_700_000_000


class Unwritten(MemoryStore):
    """
    A store whose durable writes finish only when the test says so.

    @ivar commits: What each durable append waits on, in order.
    """

    def __init__(self, config: HistoryConfig) -> None:
        super().__init__(config)
        self.commits: list[Deferred[None]] = []

    def append(self, message: events.RoomMessage, durable: bool) -> Deferred[None]:
        super().append(message, durable)
        commit: Deferred[None] = Deferred()
        self.commits.append(commit)
        return commit


class LookupsByHand(LocalBackplane):
    """
    A node whose look-ups of nicks on other nodes wait for the test.

    @ivar lookups: Each nick looked up, and its answer.
    """

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self.lookups: list[tuple[str, Deferred[str | None]]] = []

    def locate(self, nick: str) -> Deferred[str | None]:
        answer: Deferred[str | None] = Deferred()
        self.lookups.append((nick, answer))
        return answer


class TalkTestCase(SynchronousTestCase):
    """
    A hub on a L{Clock}, with history in memory.
    """

    history = HistoryConfig(enabled=False)

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.participants: list[FakeParticipant] = []
        self.store = self.make_store()
        self.hub = self.make_hub()

    def make_store(self) -> MemoryStore:
        return MemoryStore(self.history)

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
    def talk(self) -> Talk:
        return self.hub.concerns.talk

    def connect(
        self, nick: str, hub: ChatFactory | None = None
    ) -> tuple[FakeParticipant, User]:
        """
        A user called C{nick}, in the lobby; what everyone was told so far
        is forgotten.
        """
        hub = hub if hub is not None else self.hub
        participant = FakeParticipant()
        user = hub.connect(participant)
        hub.concerns.presence.rename(user, nick)
        self.participants.append(participant)
        self.forget()
        return participant, user

    def forget(self) -> None:
        """Forget what every user was told so far."""
        for participant in self.participants:
            participant.take()

    @property
    def lobby(self) -> Room:
        return self.hub.directory.lobby

    def say(
        self,
        user: User,
        text: str,
        room: str | None = None,
        client_id: str | None = None,
        action: bool = False,
    ) -> None:
        self.talk.say(user, text, action, room, client_id)

    def message(
        self,
        user: User,
        id: int,
        text: str,
        client_id: str | None = None,
        room: Room | None = None,
    ) -> events.RoomMessage:
        """The message C{user} said as C{id}, as its room shows it."""
        room = room if room is not None else self.lobby
        return events.RoomMessage(
            room.name,
            id,
            NOW,
            user.nick,
            user.door,
            user.colour,
            text,
            False,
            client_id,
            room.epoch,
        )


class SayTests(TalkTestCase):
    """
    L{Talk.say}: the checks a room message passes before it is numbered.
    """

    def setUp(self) -> None:
        super().setUp()
        self.alice_p, self.alice = self.connect("alice")
        self.bob_p, self.bob = self.connect("bob")

    def test_said(self) -> None:
        """
        A line is numbered and shown to every member of the current room,
        the sender included, with the sender's tag.
        """
        self.say(self.alice, " hi ", client_id="c1")
        message = self.message(self.alice, 1, "hi", "c1")
        self.assertEqual(self.alice_p.take(), [message])
        self.assertEqual(self.bob_p.take(), [message])

    def test_action(self) -> None:
        """
        C{/me} is said as an action.
        """
        self.say(self.alice, "waves", action=True)
        (message,) = self.bob_p.take()
        assert isinstance(message, events.RoomMessage)
        self.assertEqual((message.text, message.action), ("waves", True))

    def test_empty_ignored(self) -> None:
        """
        A line that is empty once cleaned says nothing, takes no number
        and earns no error.
        """
        self.say(self.alice, "  \x1b[2J\t\x07 ")
        self.assertEqual((self.alice_p.take(), self.bob_p.take()), ([], []))
        self.assertEqual(self.lobby.last_id, 0)

    def test_muted(self) -> None:
        """
        A muted user is told for how long, and nobody sees the line; once
        the mute is over they talk again.
        """
        self.alice.muted_until = NOW + 90
        self.say(self.alice, "hello?")
        self.assertEqual(
            self.alice_p.take(),
            [
                events.Error(
                    "muted", "an operator muted you for 1m 30s; you can still read"
                )
            ],
        )
        self.assertEqual(self.bob_p.take(), [])
        self.assertEqual(self.hub.metrics.dropped["muted"], 1)
        self.clock.advance(90)
        self.say(self.alice, "back")
        self.assertEqual(len(self.bob_p.take()), 1)

    def test_muted_until_lifted(self) -> None:
        """
        A mute without an end says no time.
        """
        self.alice.muted_until = math.inf
        self.say(self.alice, "hello?")
        self.assertEqual(
            self.alice_p.take(),
            [events.Error("muted", "an operator muted you; you can still read")],
        )

    def test_closing(self) -> None:
        """
        While the server stops a line is refused, since it could not be
        kept, and nothing is numbered.
        """
        self.hub.concerns.presence.closing = True
        self.say(self.alice, "too late")
        self.assertEqual(
            self.alice_p.take(),
            [
                events.Error(
                    "not-stored",
                    "the server is shutting down; your message was not sent",
                )
            ],
        )
        self.assertEqual(self.bob_p.take(), [])
        self.assertEqual(self.lobby.last_id, 0)

    def test_no_room(self) -> None:
        """
        A user in no room is told to join one.
        """
        self.hub.concerns.rooms.part(self.alice, None)
        self.forget()
        self.say(self.alice, "anyone?")
        self.assertEqual(
            self.alice_p.take(),
            [events.Error("no-room", "you are in no room; /join #room first")],
        )

    def test_named_room(self) -> None:
        """
        A line for a named room goes there, if the user is in it, and the
        current room stays; a room they are not in, or that does not
        exist, is refused.
        """
        rooms = self.hub.concerns.rooms
        rooms.join_named(self.alice, "#dev")
        rooms.join_named(self.alice, "#lobby")
        rooms.join_named(self.bob, "#ops")
        self.forget()
        self.say(self.alice, "to dev", room="DEV")
        (message,) = self.alice_p.take()
        assert isinstance(message, events.RoomMessage)
        self.assertEqual((message.room, message.id), ("#dev", 1))
        self.assertIs(self.alice.current, self.lobby)
        self.say(self.alice, "to ops", room="#ops")
        self.say(self.alice, "to void", room="#void")
        self.assertEqual(
            self.alice_p.take(),
            [
                events.Error("not-in-room", "you are not in #ops"),
                events.Error("no-such-room", "there is no room #void"),
            ],
        )
        self.assertEqual(self.bob_p.take(), [])

    def test_room_busy(self) -> None:
        """
        A room that took all it may this second refuses the next line with
        the pacing's reason; the next second it takes one again.
        """
        self.hub = self.make_hub(room_messages_per_second=1, room_message_burst=1)
        alice_p, alice = self.connect("alice")
        self.say(alice, "one")
        self.say(alice, "two")
        self.assertEqual(
            alice_p.take()[1:],
            [
                events.Error(
                    "rate-limited",
                    "#lobby is too busy (over 1 message a second); your "
                    "message was not sent, try again",
                )
            ],
        )
        self.clock.advance(1)
        self.say(alice, "three")
        self.assertEqual(self.hub.directory.lobby.last_id, 2)

    def test_retry_acknowledged(self) -> None:
        """
        A retry of a kept tagged message (same text, same sender) is
        acknowledged again to the sender, with the same id, and shown to
        nobody else.
        """
        self.say(self.alice, "hello", client_id="c1")
        self.forget()
        self.say(self.alice, "hello", client_id="c1")
        self.assertEqual(
            self.alice_p.take(), [self.message(self.alice, 1, "hello", "c1")]
        )
        self.assertEqual(self.bob_p.take(), [])
        self.assertEqual(self.lobby.last_id, 1)

    def test_not_a_retry(self) -> None:
        """
        The same tag on an action instead of a line, or in another room,
        is a new message.
        """
        self.hub.concerns.rooms.join_named(self.alice, "#dev")
        self.say(self.alice, "hello", room="#lobby", client_id="c1")
        self.say(self.alice, "hello", room="#lobby", client_id="c1", action=True)
        self.say(self.alice, "hello", room="#dev", client_id="c1")
        self.assertEqual(self.lobby.last_id, 2)
        dev = self.hub.directory.room("#dev")
        assert dev is not None
        self.assertEqual(dev.last_id, 1)


class FullSyncTests(TalkTestCase):
    """
    C{sync = full}: nobody sees a message before the store has it.
    """

    history = HistoryConfig(enabled=False, sync="full")

    def make_store(self) -> Unwritten:
        return Unwritten(self.history)

    def test_retry_while_unwritten(self) -> None:
        """
        A retry of a message still waiting for the disk is neither
        numbered again nor written twice; once written, the message is
        shown once, and a later retry is acknowledged with its id.
        """
        store = self.store
        assert isinstance(store, Unwritten)
        alice_p, alice = self.connect("alice")
        bob_p, _ = self.connect("bob")
        self.say(alice, "hello", client_id="c1")
        self.say(alice, "hello", client_id="c1")
        self.assertEqual((alice_p.take(), bob_p.take()), ([], []))
        self.assertEqual(len(store.commits), 1)
        store.commits[0].callback(None)
        message = self.message(alice, 1, "hello", "c1")
        self.assertEqual(alice_p.take(), [message])
        self.assertEqual(bob_p.take(), [message])
        self.say(alice, "hello", client_id="c1")
        self.assertEqual(alice_p.take(), [message])
        self.assertEqual(len(store.commits), 1)
        self.assertEqual(self.lobby.last_id, 1)


class ArrivedTests(TalkTestCase):
    """
    L{Talk.arrived}: a numbered, kept message shown to the room.
    """

    def test_shown_to_members(self) -> None:
        """
        The room's members here are shown the message, and it is the
        room's latest, replayed to whoever joins next; others see nothing.
        """
        alice_p, alice = self.connect("alice")
        bob_p, _ = self.connect("bob")
        carol_p, carol = self.connect("carol")
        self.hub.concerns.rooms.part(carol, None)
        self.forget()
        message = self.message(alice, 7, "from afar")
        self.talk.arrived(self.lobby, message, time.perf_counter())
        self.assertEqual(alice_p.take(), [message])
        self.assertEqual(bob_p.take(), [message])
        self.assertEqual(carol_p.take(), [])
        self.assertEqual((self.lobby.last_id, self.lobby.delivered_id), (7, 7))
        self.hub.concerns.rooms.join_named(carol, "#lobby")
        (history,) = of(events.History, carol_p.take())
        self.assertEqual(history.messages, (message,))

    def test_fan_out_timed(self) -> None:
        """
        The time from the node taking the message in to its fan-out is
        recorded in the fan-out histogram.
        """
        _, alice = self.connect("alice")
        fanout = self.hub.metrics.fanout
        before = fanout.count
        message = self.message(alice, 1, "hi")
        self.talk.arrived(self.lobby, message, time.perf_counter() - 0.2)
        self.assertEqual(fanout.count, before + 1)
        self.assertGreaterEqual(fanout.sum, 0.2)


class RepeatedTests(TalkTestCase):
    """
    L{Talk.repeated}: the backplane found a retry of a numbered message.
    """

    def setUp(self) -> None:
        super().setUp()
        self.alice_p, self.alice = self.connect("alice")
        self.bob_p, _ = self.connect("bob")
        self.say(self.alice, "hello", client_id="c1")
        self.forget()

    def test_acknowledged(self) -> None:
        """
        The sender is shown their message again; nobody else is.
        """
        self.talk.repeated(self.alice, self.lobby, "c1", 1)
        self.assertEqual(
            self.alice_p.take(), [self.message(self.alice, 1, "hello", "c1")]
        )
        self.assertEqual(self.bob_p.take(), [])

    def test_not_that_message(self) -> None:
        """
        A retry naming another id, or a tag the room does not know, is
        acknowledged with nothing.
        """
        self.talk.repeated(self.alice, self.lobby, "c1", 2)
        self.talk.repeated(self.alice, self.lobby, "c9", 1)
        self.assertEqual(self.alice_p.take(), [])

    def test_sender_gone(self) -> None:
        """
        A sender who left is shown nothing.
        """
        self.hub.concerns.presence.disconnect(self.alice, "reset")
        self.talk.repeated(self.alice, self.lobby, "c1", 1)
        self.assertEqual(self.alice_p.take(), [])


class UnsaidTests(TalkTestCase):
    """
    L{Talk.unsaid}: a message nobody was shown.
    """

    def setUp(self) -> None:
        super().setUp()
        self.alice_p, self.alice = self.connect("alice")
        self.bob_p, _ = self.connect("bob")
        self.draft = Draft("lost", False, "c1", NOW)

    def test_not_kept(self) -> None:
        """
        When the store could not keep it, the sender is told it could not
        be saved and to send it again, with the message's tag (so a page
        can mark that message); nobody else hears of it.
        """
        self.talk.unsaid(self.alice, self.draft, Failure(NotKeptError("disk full")))
        (error,) = self.alice_p.take()
        assert isinstance(error, events.Error)
        self.assertEqual(
            (error.code, error.text, error.client_id),
            (
                "not-stored",
                "your message could not be saved, so nobody was shown it; try again",
                self.draft.client_id,
            ),
        )
        self.assertEqual(self.bob_p.take(), [])

    def test_not_sent(self) -> None:
        """
        When the other nodes could not be reached, the sender is told it
        could not be sent to the cluster, with the message's tag.
        """
        self.talk.unsaid(self.alice, self.draft, Failure(UnreachableError("down")))
        self.assertEqual(
            self.alice_p.take(),
            [
                events.Error(
                    "not-stored",
                    "your message could not be sent to the cluster, so nobody "
                    "was shown it; try again",
                    "c1",
                )
            ],
        )
        self.assertEqual(self.bob_p.take(), [])

    def test_sender_gone(self) -> None:
        """
        A sender who left is told nothing.
        """
        self.hub.concerns.presence.disconnect(self.alice, "reset")
        self.talk.unsaid(self.alice, self.draft, Failure(NotKeptError("disk full")))
        self.talk.unsaid(self.alice, self.draft, Failure(UnreachableError("down")))
        self.assertEqual(self.alice_p.take(), [])


class PrivateTests(TalkTestCase):
    """
    L{Talk.private} (C{/msg}) and L{Talk.private_arrived}.
    """

    def setUp(self) -> None:
        super().setUp()
        self.alice_p, self.alice = self.connect("alice")
        self.bob_p, self.bob = self.connect("Bob")
        self.carol_p, _ = self.connect("carol")

    def private(
        self, sender: User, recipient: str, text: str, outgoing: bool
    ) -> events.PrivateMessage:
        return events.PrivateMessage(
            NOW, sender.nick, sender.door, sender.colour, recipient, text, outgoing
        )

    def test_local(self) -> None:
        """
        The recipient gets the cleaned text under their own spelling, the
        sender an outgoing copy; nobody else sees it.
        """
        self.assertIsNone(self.talk.private(self.alice, "BOB", " psst\x1b[5m "))
        self.assertEqual(
            self.bob_p.take(), [self.private(self.alice, "Bob", "psst", False)]
        )
        self.assertEqual(
            self.alice_p.take(), [self.private(self.alice, "Bob", "psst", True)]
        )
        self.assertEqual(self.carol_p.take(), [])

    def test_empty(self) -> None:
        """
        A private message that is empty once cleaned sends nothing.
        """
        self.talk.private(self.alice, "bob", "\x1b[2J ")
        self.assertEqual((self.alice_p.take(), self.bob_p.take()), ([], []))

    def test_muted(self) -> None:
        """
        A muted user's private message is refused and not delivered.
        """
        self.alice.muted_until = NOW + 60
        self.talk.private(self.alice, "bob", "psst")
        (error,) = self.alice_p.take()
        assert isinstance(error, events.Error)
        self.assertEqual(error.code, "muted")
        self.assertEqual(self.bob_p.take(), [])

    def test_nobody(self) -> None:
        """
        A nick nobody in the chat has is named back, shortened, with the
        request's tag.
        """
        self.alice.tag = "m1"
        self.talk.private(self.alice, "z" * 50, "hi")
        self.alice.tag = None
        self.assertEqual(
            self.alice_p.take(),
            [events.Error("no-such-nick", f"nobody here is called {'z' * 40}…", "m1")],
        )

    def test_lookup_fails(self) -> None:
        """
        When the other nodes cannot say who has a nick, the sender is told
        it cannot be looked up now, with the request's tag.
        """
        node = LookupsByHand(self.store)
        self.hub = self.make_hub(node)
        alice_p, alice = self.connect("alice")
        alice.tag = "m2"
        pending = self.talk.private(alice, "zed", "hi")
        alice.tag = None
        assert pending is not None
        self.assertEqual(alice_p.take(), [])
        node.lookups[0][1].errback(UnreachableError("down"))
        self.assertEqual(
            alice_p.take(),
            [events.Error("no-such-nick", "zed cannot be looked up now", "m2")],
        )


class PrivateAcrossTests(TalkTestCase):
    """
    L{Talk.private} to a user of another node, and L{Talk.private_arrived}.
    """

    def setUp(self) -> None:
        super().setUp()
        self.chat = FakeChat()
        self.hub = self.make_hub(self.chat.node("a"))
        self.there = self.make_hub(self.chat.node("b"))
        self.alice_p, self.alice = self.connect("alice")
        self.bob_p, self.bob = self.connect("Bob", hub=self.there)
        self.carol_p, _ = self.connect("carol", hub=self.there)

    def test_delivered(self) -> None:
        """
        Once the chat says who has the nick, the recipient on the other
        node gets it under their own spelling, and the sender an outgoing
        copy; nobody else sees it.
        """
        self.chat.hold()
        self.talk.private(self.alice, "bob", "psst")
        self.assertEqual(self.bob_p.take(), [])
        self.chat.release()
        colour = self.alice.colour
        self.assertEqual(
            self.bob_p.take(),
            [
                events.PrivateMessage(
                    NOW, "alice", "telnet", colour, "Bob", "psst", False
                )
            ],
        )
        self.assertEqual(
            self.alice_p.take(),
            [
                events.PrivateMessage(
                    NOW, "alice", "telnet", colour, "Bob", "psst", True
                )
            ],
        )
        self.assertEqual(self.carol_p.take(), [])

    def test_nobody_after_waiting(self) -> None:
        """
        A nick nobody has is named back once the chat answers, with the
        tag of the request, not of what runs then.
        """
        self.chat.hold()
        self.alice.tag = "m3"
        self.talk.private(self.alice, "zed", "hi")
        self.alice.tag = None
        self.chat.release()
        self.assertEqual(
            self.alice_p.take(),
            [events.Error("no-such-nick", "nobody here is called zed", "m3")],
        )

    def test_muted_after_waiting(self) -> None:
        """
        A sender muted by the time the chat answers is refused, with the
        request's tag, and nothing is sent.
        """
        self.chat.hold()
        self.alice.tag = "m4"
        self.talk.private(self.alice, "bob", "psst")
        self.alice.tag = None
        self.alice.muted_until = NOW + 60
        self.chat.release()
        (error,) = self.alice_p.take()
        assert isinstance(error, events.Error)
        self.assertEqual((error.code, error.client_id), ("muted", "m4"))
        self.assertEqual(self.bob_p.take(), [])

    def test_sender_gone(self) -> None:
        """
        A sender who left before the chat answered sends nothing.
        """
        self.chat.hold()
        self.talk.private(self.alice, "bob", "psst")
        self.hub.concerns.presence.disconnect(self.alice, "reset")
        self.forget()
        self.chat.release()
        self.assertEqual((self.alice_p.take(), self.bob_p.take()), ([], []))

    def test_arrived(self) -> None:
        """
        A private message from another node reaches the users of its
        audience here, each under their own spelling, and nobody else.
        """
        message = events.PrivateMessage(
            NOW, "zed", "web", self.alice.colour, "BOB", "hey", False
        )
        self.there.concerns.talk.private_arrived(message, Audience(nicks=("bob",)))
        self.assertEqual(
            self.bob_p.take(),
            [
                events.PrivateMessage(
                    NOW, "zed", "web", self.alice.colour, "Bob", "hey", False
                )
            ],
        )
        self.assertEqual(self.carol_p.take(), [])
        self.there.concerns.talk.private_arrived(message, Audience(nicks=("nobody",)))
        self.assertEqual(self.bob_p.take(), [])
