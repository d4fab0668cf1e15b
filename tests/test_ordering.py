"""
Tests for L{tchat.ordering}: each user's commands take effect in the order
they were sent, on one node and on several, even when one of them waits on
I/O (a nick claimed in the whole chat, a password checked in a thread).
"""

import random
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tchat import events
from tchat.backplane import LocalBackplane
from tchat.commands import Join, Kick, Nick, Oper, Say
from tchat.config import HistoryConfig, OperatorsConfig, ServerConfig
from tchat.delivery import Delivery
from tchat.history import MemoryStore
from tchat.hub import ChatFactory
from tchat.metrics import Metrics
from tchat.model import Directory, Settings, User
from tchat.ordering import MAX_WAITING, InOrder
from tchat.palette import PALETTE
from tests.support import FakeChat, FakeParticipant, WebTestCase, of


def chatter(received: list[object]) -> list[str]:
    """Renames and room messages, as a reader of the room sees them."""
    said = []
    for event in received:
        if isinstance(event, events.Presence) and event.kind == "nick":
            said.append(f"{event.nick} is now {event.new_nick}")
        elif isinstance(event, events.RoomMessage):
            said.append(f"<{event.nick}> {event.text}")
    return said


class InOrderTests(SynchronousTestCase):
    """
    L{InOrder} on its own: commands that wait hold back those after them.
    """

    def setUp(self) -> None:
        clock = Clock()
        self.metrics = Metrics()
        directory = Directory(clock, Settings())
        backplane = LocalBackplane(MemoryStore(HistoryConfig()))
        delivery = Delivery(directory, backplane, self.metrics, clock)
        self.done: list[str] = []
        self.waits: dict[str, Deferred[None]] = {}
        self.in_order = InOrder(self.carry_out, delivery, self.metrics)
        self.participant = FakeParticipant()
        self.user = User(self.participant, "alice", "telnet", PALETTE["red"])

    def carry_out(self, user: User, command: Any) -> Deferred[None] | None:
        """Carry out a L{Say}: those whose text is in C{waits} wait on it."""
        self.done.append(f"{command.text} (tag {user.tag})")
        return self.waits.get(command.text)

    def test_in_order(self) -> None:
        """
        While a command waits, the next ones wait behind it; when it is
        done they run in order, each with its own tag, until one waits
        again.
        """
        self.waits = {"one": Deferred(), "three": Deferred()}
        for text in ("one", "two", "three", "four"):
            self.in_order.execute(self.user, Say(text), f"t-{text}")
        self.assertEqual(self.done, ["one (tag t-one)"])
        self.waits["one"].callback(None)
        self.assertEqual(
            self.done, ["one (tag t-one)", "two (tag t-two)", "three (tag t-three)"]
        )
        self.waits["three"].callback(None)
        self.assertEqual(self.done[-1], "four (tag t-four)")
        self.assertIsNone(self.user.waiting)

    def test_done_at_once(self) -> None:
        """
        A command whose Deferred fired already holds nothing back.
        """
        self.waits = {"one": succeed(None)}
        self.in_order.execute(self.user, Say("one"), None)
        self.in_order.execute(self.user, Say("two"), None)
        self.assertEqual(len(self.done), 2)
        self.assertIsNone(self.user.waiting)

    def test_chained(self) -> None:
        """
        A command whose Deferred has fired but waits on another (as a Redis
        client's replies do) still holds the next commands back until that
        one fires.
        """
        inner: Deferred[None] = Deferred()
        self.waits = {"one": succeed(None).addCallback(lambda _: inner)}
        self.in_order.execute(self.user, Say("one"), None)
        self.in_order.execute(self.user, Say("two"), None)
        self.assertEqual(len(self.done), 1)
        inner.callback(None)
        self.assertEqual(len(self.done), 2)

    def test_failure_does_not_stop_the_rest(self) -> None:
        """
        A command that fails while waiting is logged, and what waited
        behind it still runs.
        """
        self.waits = {"one": Deferred()}
        self.in_order.execute(self.user, Say("one"), None)
        self.in_order.execute(self.user, Say("two"), None)
        self.waits["one"].errback(RuntimeError("boom"))
        self.assertEqual(len(self.done), 2)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_gone_meanwhile(self) -> None:
        """
        Nothing that waited runs once the user has left.
        """
        self.waits = {"one": Deferred()}
        self.in_order.execute(self.user, Say("one"), None)
        self.in_order.execute(self.user, Say("two"), None)
        self.user.connected = False
        self.waits["one"].callback(None)
        self.assertEqual(len(self.done), 1)

    def test_bounded(self) -> None:
        """
        At most L{MAX_WAITING} commands wait; past that each one is dropped
        with an error carrying its tag, and counted.
        """
        self.waits = {"one": Deferred()}
        self.in_order.execute(self.user, Say("one"), None)
        for n in range(MAX_WAITING + 2):
            self.in_order.execute(self.user, Say(f"more {n}"), f"m{n}")
        errors = of(events.Error, self.participant.take())
        self.assertEqual(
            [(e.code, e.client_id) for e in errors],
            [
                ("rate-limited", f"m{MAX_WAITING}"),
                ("rate-limited", f"m{MAX_WAITING + 1}"),
            ],
        )
        self.assertEqual(self.metrics.rate_limited, {"waiting": 2})
        self.waits["one"].callback(None)
        self.assertEqual(len(self.done), 1 + MAX_WAITING)


class OneNodeTests(WebTestCase):
    """
    On a node alone.
    """

    def test_classic_frame(self) -> None:
        """
        A classic client's first frame, a name and a message, is shown as
        the rename, then the message under the new name.
        """
        (reader,) = self.people("reader")
        wes, server, _ = self.connect()
        self.flush()
        reader.take()
        guest = server.user.nick
        wes.sendMessage(b'{"name": "wes", "message": "hello"}')
        self.flush()
        rename, message = reader.take()
        self.assertEqual(
            (rename["event"], rename["name"], rename["new_name"]),
            ("nick", guest, "wes"),
        )
        self.assertEqual(
            (message["type"], message["name"], message["message"]),
            ("usermsg", "wes", "hello"),
        )

    def test_operator_command_after_oper(self) -> None:
        """
        An operator command sent right after C{/oper} waits for the password
        check (done in a thread) instead of being refused.
        """
        check: Deferred[bool] = Deferred()
        clock = Clock()
        hub = ChatFactory(
            ServerConfig(reconnect_grace=0),
            clock,
            random.Random(1),
            history=HistoryConfig(enabled=False),
            operators=OperatorsConfig((("root", "stored"),)),
            verify=lambda password, encoded: check,
        )
        self.successResultOf(hub.start())
        root_p = FakeParticipant()
        root = hub.connect(root_p)
        bob_p = FakeParticipant()
        bob = hub.connect(bob_p)
        hub.execute(bob, Nick("bob"))
        hub.execute(root, Oper("root", "secret"))
        hub.execute(root, Kick("bob", "go"))
        self.assertIsNone(bob_p.closed)
        check.callback(True)
        self.assertEqual(bob_p.closed, "kicked")
        self.assertEqual(of(events.Error, root_p.take()), [])


class TwoNodeTests(SynchronousTestCase):
    """
    On two nodes of one chat, with the other nodes slow to answer.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.chat = FakeChat()
        self.a = self.hub("a", 1)
        self.b = self.hub("b", 2)

    def hub(self, name: str, seed: int) -> ChatFactory:
        hub = ChatFactory(
            ServerConfig(reconnect_grace=0),
            self.clock,
            random.Random(seed),
            history=HistoryConfig(enabled=False),
            backplane=self.chat.node(name),
        )
        self.successResultOf(hub.start())
        return hub

    def test_rename_then_message(self) -> None:
        """
        A rename that waits on the chat's nick claim and a message sent
        right after it are shown on the other node in the order sent: the
        rename, then the message under the new name.
        """
        reader_p = FakeParticipant()
        self.b.connect(reader_p)
        wes_p = FakeParticipant("web")
        wes = self.a.connect(wes_p)
        guest = wes.nick
        reader_p.take()
        self.chat.hold()
        self.a.execute(wes, Nick("wes"), "c1")
        self.a.execute(wes, Say("hello"), "c1")
        self.assertEqual(chatter(reader_p.take()), [])
        self.chat.release()
        self.chat.release()
        self.assertEqual(
            chatter(reader_p.take()), [f"{guest} is now wes", "<wes> hello"]
        )
        self.assertEqual(chatter(wes_p.take()), [f"{guest} is now wes", "<wes> hello"])

    def test_join_then_message(self) -> None:
        """
        A message sent to a room right after joining it (which waits on the
        chat's view of the room) is said there, not refused.
        """
        reader_p = FakeParticipant()
        reader = self.b.connect(reader_p)
        self.b.execute(reader, Join("#dev"))
        reader_p.take()
        alice_p = FakeParticipant()
        alice = self.a.connect(alice_p)
        self.chat.hold()
        self.a.execute(alice, Join("#dev"))
        self.a.execute(alice, Say("hi dev", "#dev"))
        self.chat.release()
        self.chat.release()
        self.assertEqual(of(events.Error, alice_p.take()), [])
        self.assertEqual(chatter(reader_p.take()), [f"<{alice.nick}> hi dev"])

    def test_taken_nick_then_message(self) -> None:
        """
        When the claim fails (someone on the other node has the nick), the
        message sent after it goes out under the old name, after the error
        that carries the rename's tag.
        """
        self.b.execute(self.b.connect(FakeParticipant()), Nick("wes"))
        reader_p = FakeParticipant()
        self.b.connect(reader_p)
        wes_p = FakeParticipant("web")
        wes = self.a.connect(wes_p)
        reader_p.take()
        wes_p.take()
        self.chat.hold()
        self.a.execute(wes, Nick("wes"), "n1")
        self.a.execute(wes, Say("hello"), "s1")
        self.chat.release()
        self.chat.release()
        (error,) = of(events.Error, wes_p.take())
        self.assertEqual((error.code, error.client_id), ("nick-taken", "n1"))
        self.assertEqual(chatter(reader_p.take()), [f"<{wes.nick}> hello"])

    def test_failed_claim_is_not_fatal(self) -> None:
        """
        A claim that cannot be checked is reported, and the user's next
        commands run.
        """
        node = self.a.backplane
        wes_p = FakeParticipant()
        wes = self.a.connect(wes_p)
        wes_p.take()
        failing: Deferred[bool] = Deferred()
        node.claim = lambda user, nick, takeover=False, force=False: failing  # type: ignore[method-assign]
        self.a.execute(wes, Nick("wes"))
        self.a.execute(wes, Say("hello"))
        failing.errback(RuntimeError("down"))
        received = wes_p.take()
        self.assertEqual(of(events.Error, received)[0].code, "nick-taken")
        self.assertEqual([m.text for m in of(events.RoomMessage, received)], ["hello"])
