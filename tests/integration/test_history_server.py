# -*- test-case-name: tests.integration.test_history_server -*-
"""
History, resume and delivery end to end: a real C{twistd tchat} process
on 127.0.0.1 with its SQLite history in the test's directory, killed
(SIGKILL), stopped (SIGTERM) and restarted on that directory, with real
WebSocket and telnet clients checking what survives and what a returning
client is shown.

Every message text in these tests is unique, so a message is recognised by
its text in the history (history frames carry no C{client_id}).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.python.failure import Failure
from twisted.trial.unittest import FailTest, TestCase

from tests.integration.server import (
    COLOUR_NAME,
    RECENT,
    TAP_INI,
    ChatClient,
    TchatServer,
    WebClient,
    async_test,
    connect,
    connect_web,
    expect_resume,
    global_reactor,
    start_server,
)

WEB = "tcp:0:interface=127.0.0.1"
"""The C{--web} endpoint of every test server here."""


def history_ini(**keys: object) -> str:
    """
    The test configuration with a C{[history]} section.

    @param keys: Its keys and values, e.g. C{sync="full"}.
    """
    lines = "".join(f"{key} = {value}\n" for key, value in keys.items())
    return f"{TAP_INI}\n[history]\n{lines}"


async def web_server(testcase: TestCase, tap_ini: str) -> TchatServer:
    """
    Start a server with both doors in a fresh directory.
    """
    return await start_server(testcase, tap_ini, web=WEB)


async def restart(testcase: TestCase, server: TchatServer, tap_ini: str) -> TchatServer:
    """
    Start a new server on the directory (and so the history) of C{server},
    which must have ended.
    """
    assert server.process.has_ended, "restart only a server that has ended"
    return await start_server(testcase, tap_ini, web=WEB, directory=server.directory)


def web_port(server: TchatServer) -> int:
    """
    The server's web port (every server here has a web door).
    """
    assert server.web_port is not None
    return server.web_port


async def web_user(
    testcase: TestCase, server: TchatServer, name: str, nick: str | None = None
) -> WebClient:
    """
    Connect a web client, read its join replay into L{WebClient.replay},
    and take C{nick} (C{name} by default).
    """
    client = await connect_web(testcase, web_port(server), name, replay=True)
    await client.set_nick(nick or name)
    return client


async def telnet_user(testcase: TestCase, server: TchatServer, nick: str) -> ChatClient:
    """
    Connect a telnet client (colours off) and take C{nick}.
    """
    client = await connect(testcase, server.port, nick)
    await client.set_nick(nick)
    return client


async def say(
    client: WebClient, text: str, client_id: str, room: str | None = None
) -> dict[str, Any]:
    """
    Send a room message with a client id and wait for its acknowledgement.

    @return: The acknowledgement: the sender's own C{usermsg} copy.
    """
    request: dict[str, Any] = {"type": "message", "message": text}
    request["client_id"] = client_id
    if room is not None:
        request["room"] = room
    client.send(request)
    ack = await client.wait_for(type="usermsg", client_id=client_id)
    if ack["message"] != text:
        raise FailTest(f"the acknowledgement of {client_id} is {ack!r}")
    return ack


async def read_history(
    client: WebClient, room: str, limit: int = 50, pages: int = 100
) -> list[dict[str, Any]]:
    """
    Page backwards through a room's whole history with C{history}
    requests, C{limit} messages at a time, checking every page.

    @return: Every kept message, oldest first.
    """
    found: list[dict[str, Any]] = []
    before: int | None = None
    for _ in range(pages):
        request: dict[str, Any] = {"type": "history", "room": room, "limit": limit}
        if before is not None:
            request["before"] = before
        client.send(request)
        page = await client.wait_for(type="history", room=room)
        messages = page["messages"]
        if len(messages) > limit:
            raise FailTest(f"a page of {len(messages)} over the limit {limit}")
        for message in messages:
            if message.get("history") is not True or message["room"] != room:
                raise FailTest(f"not a history message of {room}: {message!r}")
            if before is not None and message["id"] >= before:
                raise FailTest(f"{message!r} is not before {before}")
        found[:0] = messages
        if not page["more"]:
            return found
        if not messages:
            raise FailTest(f"an empty page that says there is more: {page!r}")
        before = messages[0]["id"]
    raise FailTest(f"the history of {room} did not end within {pages} pages")


def ids(frames: list[dict[str, Any]]) -> list[int]:
    """
    The C{id}s of C{usermsg} frames, in order.
    """
    return [int(f["id"]) for f in frames]


def texts(frames: list[dict[str, Any]]) -> list[str]:
    """
    The texts of C{usermsg} frames, in order.
    """
    return [str(f["message"]) for f in frames]


def usermsgs(
    frames: list[dict[str, Any]], room: str = "#lobby"
) -> list[dict[str, Any]]:
    """
    The C{usermsg} frames of C{room} among C{frames}, in order.
    """
    return [f for f in frames if f.get("type") == "usermsg" and f["room"] == room]


def history_message(
    sender: str,
    text: str,
    id: int,
    epoch: int,
    colour: str,
    *,
    room: str = "#lobby",
    door: str = "web",
    action: bool = False,
) -> dict[str, Any]:
    """
    A C{usermsg} frame sent as history.
    """
    return {
        "type": "usermsg",
        "name": sender,
        "message": text,
        "color": colour,
        "color_name": COLOUR_NAME,
        "room": room,
        "id": id,
        "epoch": epoch,
        "ts": RECENT,
        "door": door,
        "action": action,
        "history": True,
    }


# -- streams of messages, for the crash and shutdown tests -----------------


@dataclass
class Stream:
    """
    One web client sending numbered messages as fast as the server
    acknowledges them, with up to C{window} unacknowledged at a time, until
    its connection ends.

    @ivar sent: Each message sent: client id to text, in order.
    @ivar acks: Each acknowledgement received, in order.
    """

    client: WebClient
    prefix: str
    window: int = 8
    limit: int = 100_000
    sent: dict[str, str] = field(default_factory=dict)
    acks: list[dict[str, Any]] = field(default_factory=list)

    def _send_more(self) -> None:
        while len(self.sent) < self.limit and len(self.sent) - len(self.acks) < (
            self.window
        ):
            number = len(self.sent) + 1
            client_id = f"{self.prefix}-{number}"
            self.sent[client_id] = f"{self.prefix} message {number}"
            self.client.send(
                {
                    "type": "message",
                    "message": self.sent[client_id],
                    "client_id": client_id,
                }
            )

    async def run(self, acked: Callable[[], None]) -> None:
        """
        Send and collect acknowledgements until the connection ends (or
        C{limit} messages were acknowledged).

        @param acked: Called after each acknowledgement.
        """
        while len(self.acks) < self.limit:
            self._send_more()
            try:
                ack = await self.client.wait_frame(
                    lambda f: f.get("type") == "usermsg" and "client_id" in f,
                    "an acknowledgement",
                    timeout=15.0,
                )
            except FailTest:
                if self.client.closed is not None:
                    return
                raise
            expected = list(self.sent)[len(self.acks)]
            if ack["client_id"] != expected or ack["message"] != self.sent[expected]:
                raise FailTest(
                    f"{self.prefix}: expected the acknowledgement of {expected}, "
                    f"got {ack!r}"
                )
            self.acks.append(ack)
            acked()

    @property
    def unacknowledged(self) -> dict[str, str]:
        """The messages sent but not acknowledged: client id to text."""
        return dict(list(self.sent.items())[len(self.acks) :])


async def stream_until(
    streams: list[Stream],
    total: int,
    then: Callable[[], Awaitable[None]],
    timeout: float = 20.0,
) -> None:
    """
    Run C{streams} at once; once C{total} acknowledgements arrived in all,
    call C{then} (which ends the server) while they go on sending, and wait
    for every stream to see its connection end.
    """
    count = 0
    reached: Deferred[None] = Deferred()

    def acked() -> None:
        nonlocal count
        count += 1
        if count >= total and not reached.called:
            reached.callback(None)

    running = gatherResults(
        [ensureDeferred(s.run(acked)) for s in streams], consumeErrors=True
    )

    def failed(why: Failure) -> Failure:
        if not reached.called:
            reached.errback(why)
        return why

    running.addErrback(failed)
    timer = global_reactor().callLater(timeout, reached.cancel)
    try:
        await reached
    except Exception as e:
        raise FailTest(
            f"{count} acknowledgements within {timeout} s, not {total}: {e!r}"
        ) from None
    finally:
        if timer.active():
            timer.cancel()
    await then()
    await running


def check_complete(
    testcase: TestCase,
    history: list[dict[str, Any]],
    streams: list[Stream],
    seen: list[dict[str, Any]],
) -> None:
    """
    Assert what the crash and shutdown tests promise: the history holds
    every acknowledged message, once, with the id and text of its
    acknowledgement, in order of id; it holds nothing that was not sent,
    and no message is missing between its first and last (batches are
    written whole and in order); each sender's messages come in the order
    sent.

    @param seen: Other messages that must be there too (those other
        clients were shown).
    """
    numbers = ids(history)
    testcase.assertEqual(
        numbers,
        list(range(1, len(history) + 1)),
        "the history is ids 1 to N, each once, in order",
    )
    by_id = {f["id"]: f["message"] for f in history}
    sent = {t for s in streams for t in s.sent.values()}
    stray = [f for f in history if f["message"] not in sent]
    testcase.assertEqual(stray, [], "the history holds only messages sent")
    testcase.assertEqual(len(set(by_id.values())), len(history), "no text twice")
    for stream in streams:
        for ack in stream.acks:
            testcase.assertEqual(
                by_id.get(ack["id"]),
                ack["message"],
                f"acknowledged {ack['client_id']} (id {ack['id']}) is kept",
            )
        own = [
            f["message"]
            for f in history
            if f["message"].startswith(f"{stream.prefix} ")
        ]
        numbers = [int(t.rsplit(" ", 1)[1]) for t in own]
        testcase.assertEqual(
            numbers, list(range(1, len(numbers) + 1)), f"{stream.prefix} in order"
        )
    for frame in seen:
        testcase.assertEqual(
            by_id.get(frame["id"]), frame["message"], f"{frame!r} was shown: kept"
        )


class CrashTests(TestCase):
    """
    C{kill -9} while clients send: what was acknowledged survives.
    """

    @async_test
    async def test_kill_with_sync_full(self) -> None:
        """
        With C{sync = full}, four web clients send numbered messages at
        once; the server is killed (SIGKILL) mid-stream, with messages in
        flight, and restarted on its directory.  The history (paged
        backwards with C{history}, and again through the join replay plus
        a resume from 0) holds every acknowledged message, and every
        message another client was shown, once, in order of id, with its
        text, and nothing else; the room keeps its epoch (nothing that was
        shown can have been lost), and ids go on from the last one.  Then
        each client retries what was not acknowledged, with the same
        client ids: those the server had written are acknowledged with
        their first id and not repeated, the others are taken now, so
        every message sent is in the history exactly once.
        """
        tap_ini = history_ini(sync="full")
        server = await web_server(self, tap_ini)
        clients = [await web_user(self, server, f"w{n}") for n in range(4)]
        watcher = await web_user(self, server, "watcher")
        for client in clients:
            await client.sync()
        streams = [Stream(client, client.nick) for client in clients]
        await stream_until(streams, 300, server.kill)
        self.assertTrue(
            any(s.unacknowledged for s in streams), "killed with messages in flight"
        )
        seen = usermsgs(watcher.frames)
        epoch = streams[0].acks[0]["epoch"]
        self.assertEqual(
            {a["epoch"] for s in streams for a in s.acks}, {epoch}, "one epoch"
        )

        server = await restart(self, server, tap_ini)
        reader = await web_user(self, server, "reader")
        history = await read_history(reader, "#lobby", limit=64)
        check_complete(self, history, streams, seen)
        self.assertEqual({f["epoch"] for f in history}, {epoch}, "the same epoch")

        # The join replay plus a resume from 0 give the same messages.
        replay = usermsgs(reader.replay)
        self.assertEqual(replay, history[-20:], "the replay is the latest 20")
        start = reader.cursor
        reader.send({"type": "resume", "rooms": {"#lobby": 0}})
        resumed = await reader.wait_for(type="resumed", room="#lobby")
        missed = reader.frames[start : reader.cursor - 1]
        self.assertEqual(missed + replay, history, "resume from 0 + replay")
        self.assertEqual(
            resumed,
            {
                "type": "resumed",
                "room": "#lobby",
                "epoch": epoch,
                "complete": True,
                "last_id": len(history),
                "count": len(history) - len(replay),
            },
        )

        # Ids go on after the last kept one, in the same epoch.
        ack = await say(reader, "after the crash", "r-1")
        self.assertEqual((ack["id"], ack["epoch"]), (len(history) + 1, epoch))

        # Each client retries what it had no acknowledgement for.
        kept = {f["message"]: f["id"] for f in history}
        for stream in streams:
            if not stream.unacknowledged:
                continue
            again = await web_user(
                self, server, f"{stream.prefix} again", stream.prefix
            )
            for client_id, text in stream.unacknowledged.items():
                ack = await say(again, text, client_id)
                if text in kept:
                    self.assertEqual(ack["id"], kept[text], "the first id again")
        history = await read_history(reader, "#lobby", limit=200)
        self.assertEqual(ids(history), list(range(1, len(history) + 1)))
        sent = sorted(t for s in streams for t in s.sent.values())
        self.assertEqual(
            sorted(texts(history)), sorted([*sent, "after the crash"]), "each once"
        )

    @async_test
    async def test_kill_with_sync_normal_starts_a_new_epoch(self) -> None:
        """
        With C{sync = normal} and a long batch window, messages 1 to 5 of
        #dev are written (a history read flushes the queue), 6 to 8 are
        acknowledged but still queued when the server is killed: after the
        restart the server warns that the last run did not stop cleanly,
        #dev holds 1 to 5 only, and its next message takes id 6 again but
        in a new epoch.  A client resuming with the old epoch and id 8
        (beyond what survived) is sent what follows id 5 and told
        C{complete: false}; one that had up to id 5, or id 3, of the old
        epoch lost nothing and gets everything after it, across both
        epochs, with C{complete: true}; one with an epoch the room never
        had gets the latest C{replay} messages and C{complete: false}.
        """
        tap_ini = history_ini(sync="normal", batch_window=10, replay=2)
        server = await web_server(self, tap_ini)
        writer = await web_user(self, server, "writer")
        writer.send({"type": "join", "room": "#dev"})
        await writer.wait_for(type="system", event="join", room="#dev")
        acks = [await say(writer, f"dev {n}", f"d-{n}") for n in range(1, 6)]
        old, colour = acks[0]["epoch"], acks[0]["color"]
        writer.send({"type": "history", "room": "#dev", "before": 3, "limit": 5})
        page = await writer.wait_for(type="history", room="#dev")
        self.assertEqual(texts(page["messages"]), ["dev 1", "dev 2"])
        acks += [await say(writer, f"dev {n}", f"d-{n}") for n in range(6, 9)]
        self.assertEqual(ids(acks), list(range(1, 9)))
        self.assertEqual({a["epoch"] for a in acks}, {old})
        await server.kill()

        server = await restart(self, server, tap_ini)
        await server.process.output.wait_for("the last run did not stop cleanly")
        writer = await web_user(self, server, "writer")
        colour_now = writer.colour
        writer.send({"type": "join", "room": "#dev"})
        await writer.wait_for(type="system", event="join", room="#dev")
        replay = await writer.sync("#dev")
        self.assertEqual(
            replay,
            [
                history_message("writer", "dev 4", 4, old, colour, room="#dev"),
                history_message("writer", "dev 5", 5, old, colour, room="#dev"),
            ],
            "6 to 8 were never written",
        )
        self.assertEqual(
            texts(await read_history(writer, "#dev")), [f"dev {n}" for n in range(1, 6)]
        )
        ack = await say(writer, "after the crash", "a-1", room="#dev")
        new = ack["epoch"]
        self.assertEqual(ack["id"], 6)
        self.assertNotEqual(new, old, "a new epoch: id 6 is not the 6 seen before")
        after_crash = history_message(
            "writer", "after the crash", 6, new, colour_now, room="#dev"
        )

        async def resume(name: str, point: dict[str, int]) -> list[dict[str, Any]]:
            client = await web_user(self, server, name)
            start = client.cursor
            client.send({"type": "resume", "rooms": {"#dev": point}})
            await client.wait_for(type="resumed", room="#dev")
            frames = client.frames[start : client.cursor]
            join = frames.pop(0)
            self.assertEqual(
                (join["event"], join["room"], join["name"]), ("join", "#dev", name)
            )
            self.assertEqual((join["epoch"], join["last_id"]), (new, 6))
            return frames

        def resumed(complete: bool, count: int) -> dict[str, Any]:
            return {
                "type": "resumed",
                "room": "#dev",
                "epoch": new,
                "complete": complete,
                "last_id": 6,
                "count": count,
            }

        got = await resume("beyond", {"id": 8, "epoch": old})
        self.assertEqual(got, [after_crash, resumed(False, 1)])
        got = await resume("intact", {"id": 5, "epoch": old})
        self.assertEqual(got, [after_crash, resumed(True, 1)])
        got = await resume("earlier", {"id": 3, "epoch": old})
        self.assertEqual(
            got,
            [
                history_message("writer", "dev 4", 4, old, colour, room="#dev"),
                history_message("writer", "dev 5", 5, old, colour, room="#dev"),
                after_crash,
                resumed(True, 3),
            ],
        )
        got = await resume("stranger", {"id": 8, "epoch": 12345})
        self.assertEqual(
            got,
            [
                history_message("writer", "dev 5", 5, old, colour, room="#dev"),
                after_crash,
                resumed(False, 2),
            ],
        )

    @async_test
    async def test_resume_code_after_a_crash(self) -> None:
        """
        With C{sync = full}, a resume code saved before a crash still
        works after it: alice's code brings back her nick and rooms, and
        shows what was said in #dev since her code was last saved (she
        joined #dev) -- lines she may have seen, but none fewer.
        """
        tap_ini = history_ini(sync="full")
        server = await start_server(self, tap_ini)
        alice = await telnet_user(self, server, "alice")
        alice.say("/join #dev")
        await alice.expect_lines("[HH:MM] *** you joined #dev")
        bob = await telnet_user(self, server, "bob")
        bob.say("/join #dev")
        await bob.expect_lines("[HH:MM] *** you joined #dev")
        for line in ("first", "second"):
            bob.say(line)
        await alice.wait_for("<bob> second\r\n")
        await server.kill()

        server = await restart(self, server, tap_ini)
        again = await connect(self, server.port, "alice again")
        again.say(f"/resume {alice.code}")
        await expect_resume(
            again,
            "[HH:MM] *** you are now known as alice",
            "*** welcome back, alice: restoring #lobby, #dev",
            "*** Nothing new in #lobby since you left",
            "*** 2 messages in #dev since you left:",
            "[HH:MM] <bob> first",
            "[HH:MM] <bob> second",
            "*** End of missed messages in #dev",
            joined=("#dev",),
        )


class WebResumeTests(TestCase):
    """
    A WebSocket client that drops and comes back with C{resume}.
    """

    @async_test
    async def test_resume_gets_exactly_the_missed_messages(self) -> None:
        """
        anna (web) has #lobby up to id 3 when her connection drops; ben
        (web) and cara (telnet) say 30 messages meanwhile.  Her new
        connection gets the latest 20 as its join replay; her C{resume}
        with id 3 and its epoch then brings the 10 before those, oldest
        first, marked as history, then C{resumed} with C{complete: true},
        the room's latest id and the count; a message she sends right after
        the C{resume} is acknowledged after it.  Together, replay and
        resume are ids 4 to 33, each once, with the texts said.
        """
        server = await web_server(self, history_ini())
        anna = await web_user(self, server, "anna")
        ben = await web_user(self, server, "ben")
        cara = await telnet_user(self, server, "cara")
        await say(anna, "anna 1", "a-1")
        await say(anna, "anna 2", "a-2")
        last = await say(ben, "ben 0", "b-0")
        epoch = last["epoch"]
        await anna.wait_for(type="usermsg", message="ben 0")
        self.assertEqual(last["id"], 3)
        anna.abort()
        await cara.wait_for("anna (web) lost connection")

        for n in range(1, 16):
            ben.send({"type": "message", "message": f"ben {n}", "client_id": f"b-{n}"})
            cara.say(f"cara {n}")
        for _ in range(30):
            await ben.wait_frame(lambda f: f.get("type") == "usermsg", "a message")
        said = {f["id"]: f["message"] for f in usermsgs(ben.frames) if f["id"] > 3}
        self.assertEqual(sorted(said), list(range(4, 34)))

        again = await web_user(self, server, "anna again", "anna")
        self.assertEqual((again.joined["epoch"], again.joined["last_id"]), (epoch, 33))
        replay = usermsgs(again.replay)
        self.assertEqual(ids(replay), list(range(14, 34)), "the latest 20")
        self.assertTrue(all(f["history"] is True for f in replay))
        start = again.cursor
        again.send({"type": "resume", "rooms": {"#lobby": {"id": 3, "epoch": epoch}}})
        again.send({"type": "message", "message": "I am back", "client_id": "a-3"})
        await again.wait_for(type="usermsg", client_id="a-3")
        frames = again.frames[start : again.cursor]
        missed, resumed, ack = frames[:-2], frames[-2], frames[-1]
        self.assertEqual(ids(missed), list(range(4, 14)), "the 10 before the replay")
        self.assertEqual(
            resumed,
            {
                "type": "resumed",
                "room": "#lobby",
                "epoch": epoch,
                "complete": True,
                "last_id": 33,
                "count": 10,
            },
        )
        self.assertEqual((ack["id"], ack["message"]), (34, "I am back"))
        both = missed + replay
        self.assertEqual({f["id"]: f["message"] for f in both}, said)
        self.assertEqual(ids(both), list(range(4, 34)), "each once, in order")
        for frame in both:
            self.assertEqual(
                (frame["epoch"], frame["history"], frame["ts"]), (epoch, True, RECENT)
            )
            self.assertNotIn("client_id", frame)
        door = {f["message"]: f["door"] for f in both}
        self.assertEqual((door["ben 1"], door["cara 1"]), ("web", "telnet"))
        self.assertEqual(await again.sync(), [], "nothing more, nothing twice")

    @async_test
    async def test_resume_beyond_retention(self) -> None:
        """
        With C{keep = 5} (and C{replay = 2}), anna's connection drops at id
        1 and 10 more messages follow: her new connection's replay has ids
        10 and 11, and her resume from id 1 brings 7 to 9 and says
        C{complete: false} (2 to 6 are gone); replay and resume are just
        what is kept, which a C{history} request confirms.  A resume from
        the latest id brings nothing and says C{complete: true}.
        """
        server = await web_server(self, history_ini(keep=5, replay=2))
        anna = await web_user(self, server, "anna")
        ben = await web_user(self, server, "ben")
        first = await say(anna, "anna 1", "a-1")
        epoch = first["epoch"]
        anna.abort()
        for n in range(2, 12):
            await say(ben, f"ben {n}", f"b-{n}")

        again = await web_user(self, server, "anna again", "anna")
        self.assertEqual(texts(usermsgs(again.replay)), ["ben 10", "ben 11"])
        start = again.cursor
        again.send({"type": "resume", "rooms": {"#lobby": {"id": 1, "epoch": epoch}}})
        resumed = await again.wait_for(type="resumed", room="#lobby")
        missed = again.frames[start : again.cursor - 1]
        self.assertEqual(texts(missed), ["ben 7", "ben 8", "ben 9"])
        self.assertEqual(
            (resumed["complete"], resumed["count"], resumed["last_id"]), (False, 3, 11)
        )
        kept = await read_history(again, "#lobby")
        self.assertEqual(missed + usermsgs(again.replay), kept)
        self.assertEqual(ids(kept), list(range(7, 12)))

        again.send({"type": "resume", "rooms": {"#lobby": 11}})
        resumed = await again.wait_for(type="resumed", room="#lobby")
        self.assertEqual(
            (resumed["complete"], resumed["count"], resumed["last_id"]), (True, 0, 11)
        )
        self.assertEqual(await again.sync(), [])


class DuplicateTests(TestCase):
    """
    Retries with the same C{client_id} create no second message.
    """

    @async_test
    async def test_retry_is_acknowledged_once_and_shown_once(self) -> None:
        """
        The same C{client_id} and text sent twice is one message: both
        acknowledgements carry id 1, ben (web) and cara (telnet) see it
        once, and the next message is id 2.  A retry from a new connection
        under the same nick (after a drop) is recognised too, and so is a
        retry after a server restart.
        """
        tap_ini = history_ini()
        server = await web_server(self, tap_ini)
        anna = await web_user(self, server, "anna")
        ben = await web_user(self, server, "ben")
        cara = await telnet_user(self, server, "cara")
        anna.send({"type": "message", "message": "only once", "client_id": "x-1"})
        anna.send({"type": "message", "message": "only once", "client_id": "x-1"})
        first = await anna.wait_for(type="usermsg", client_id="x-1")
        second = await anna.wait_for(type="usermsg", client_id="x-1")
        self.assertEqual(first, second)
        self.assertEqual(first["id"], 1)
        self.assertEqual(ids(usermsgs(await ben.sync())), [1], "ben sees it once")
        await cara.expect_lines("[HH:MM] <anna> only once")
        self.assertEqual(await cara.sync(), b"", "cara sees it once")
        self.assertEqual((await say(anna, "next", "x-2"))["id"], 2)
        self.assertEqual(texts(usermsgs(await ben.sync())), ["next"])

        anna.abort()
        again = await web_user(self, server, "anna again", "anna")
        retry = await say(again, "only once", "x-1")
        self.assertEqual((retry["id"], retry["epoch"]), (1, first["epoch"]))
        self.assertEqual(usermsgs(await ben.sync()), [], "nothing new for ben")

        await server.stop()
        server = await restart(self, server, tap_ini)
        later = await web_user(self, server, "anna later", "anna")
        retry = await say(later, "next", "x-2")
        self.assertEqual((retry["id"], retry["epoch"]), (2, first["epoch"]))
        self.assertEqual(
            texts(await read_history(later, "#lobby")), ["only once", "next"]
        )


class TelnetResumeTests(TestCase):
    """
    C{/resume CODE} on the telnet door.
    """

    @async_test
    async def test_resume_after_a_reconnect(self) -> None:
        """
        alice, in #lobby and #dev, says something in #dev and leaves;
        bob says 3 lines in #dev and carol 3 in #lobby.  alice's new
        connection (a guest) is shown the latest 2 of #lobby on joining;
        C{/resume CODE} then gives her back her nick and #dev, and shows
        exactly what she missed: the 1 line of #lobby before that replay
        and the 3 of #dev, each under a header naming the room and its
        count.  She talks in #dev again (her current room), others see
        her as alice, and C{/history} shows #dev's whole history, her own
        lines too.
        """
        server = await start_server(self, history_ini(replay=2))
        alice = await telnet_user(self, server, "alice")
        alice.say("/join #dev")
        await alice.expect_lines("[HH:MM] *** you joined #dev")
        alice.say("before I go")
        bob = await telnet_user(self, server, "bob")
        bob.say("/join #dev")
        await bob.expect_lines(
            "[HH:MM] *** you joined #dev",
            "*** Recent messages in #dev:",
            "[HH:MM] <alice> before I go",
            "*** End of recent messages",
        )
        carol = await telnet_user(self, server, "carol")
        await alice.close()
        await bob.wait_for("alice (telnet) quit (connection closed)\r\n")
        for n in range(1, 4):
            bob.say(f"dev {n}")
            carol.say(f"lobby {n}")
        await bob.wait_for("#lobby <carol> lobby 3\r\n")
        await bob.sync()
        await carol.sync()

        again = await connect(self, server.port, "alice again")
        guest = again.nick
        self.assertEqual(
            again.replay, [b"[HH:MM] <carol> lobby 2", b"[HH:MM] <carol> lobby 3"]
        )
        again.say(f"/resume {alice.code.lower()}")
        await expect_resume(
            again,
            "[HH:MM] *** you are now known as alice",
            "*** welcome back, alice: restoring #lobby, #dev",
            "*** 1 message in #lobby since you left:",
            "[HH:MM] <carol> lobby 1",
            "*** End of missed messages in #lobby",
            "*** 3 messages in #dev since you left:",
            "[HH:MM] <bob> dev 1",
            "[HH:MM] <bob> dev 2",
            "[HH:MM] <bob> dev 3",
            "*** End of missed messages in #dev",
            joined=("#dev",),
        )
        self.assertEqual(await again.sync(), b"", "nothing more, nothing twice")
        await bob.expect_lines(
            f"[HH:MM] *** {guest} (telnet) joined #lobby",
            f"[HH:MM] *** {guest} (telnet) is now known as alice",
            "[HH:MM] *** alice (telnet) joined #dev",
        )
        again.say("I am back")
        await bob.expect_lines("[HH:MM] <alice> I am back")
        await carol.expect_lines(
            f"[HH:MM] *** {guest} (telnet) joined #lobby",
            f"[HH:MM] *** {guest} (telnet) is now known as alice",
        )
        self.assertEqual(await carol.sync(), b"", "#dev talk stays in #dev")

        again.say("/history")
        await again.expect_lines(
            "*** Last 5 messages in #dev:",
            "[HH:MM] <alice> before I go",
            "[HH:MM] <bob> dev 1",
            "[HH:MM] <bob> dev 2",
            "[HH:MM] <bob> dev 3",
            "[HH:MM] <alice> I am back",
            "*** End of history",
        )
        again.say("/history 2")
        await again.expect_lines(
            "*** Last 2 messages in #dev:",
            "[HH:MM] <bob> dev 3",
            "[HH:MM] <alice> I am back",
            "*** End of history; older messages are kept too (/history N shows more)",
        )

    @async_test
    async def test_resume_takes_over_an_open_connection(self) -> None:
        """
        When alice's old connection is still open, C{/resume CODE} from a
        new one carries her session on: the old one is told why and closed,
        the new one is alice in her only room, #dev, with nothing missed.
        bob sees only the guest the new connection was go (the reconnect
        grace is off here, so it was announced at once).
        """
        server = await start_server(self, history_ini())
        alice = await telnet_user(self, server, "alice")
        alice.say("/join #dev")
        await alice.expect_lines("[HH:MM] *** you joined #dev")
        alice.say("/part #lobby")
        await alice.expect_lines(
            "[HH:MM] *** you left #lobby", "*** now talking in #dev"
        )
        bob = await telnet_user(self, server, "bob")
        bob.say("/join #dev")
        await bob.expect_lines("[HH:MM] *** you joined #dev")
        bob.say("hello alice")
        await alice.expect_lines(
            "[HH:MM] *** bob (telnet) joined #dev", "[HH:MM] <bob> hello alice"
        )

        again = await connect(self, server.port, "alice again")
        guest = again.nick
        await bob.expect_lines(f"[HH:MM] *** {guest} (telnet) joined #lobby")
        again.say(f"/resume {alice.code}")
        await again.expect_lines(
            "*** Welcome back, alice: you are in #dev. You missed nothing."
        )
        await alice.expect_closed()
        self.assertEqual(
            alice.received.rest(),
            b"*** Goodbye (resumed by a new connection)\r\n",
            "the old connection is told why it is closed",
        )
        await bob.expect_lines(
            f"[HH:MM] *** {guest} (telnet) quit (came back as alice)",
        )
        again.say("here again")
        await bob.expect_lines("[HH:MM] <alice> here again")
        bob.say("/who #dev")
        await bob.expect_lines("*** #dev (2): alice (telnet), bob (telnet)")

    @async_test
    async def test_unknown_and_own_codes(self) -> None:
        """
        A code no session has is refused with a sentence saying codes
        expire 24 hours after one leaves, and a connection's own code is
        refused too; the user stays who they were.
        """
        _, (alice,) = await _telnet_chat(self, "alice")
        alice.say("/resume ZZZZ-ZZZZ")
        await alice.expect_lines(
            "!!! no session has the code 'ZZZZ-ZZZZ' (codes expire 24 hours "
            "after you leave)"
        )
        alice.say(f"/resume {alice.code}")
        await alice.expect_lines("!!! that is this connection's own code")
        alice.say("/resume")
        await alice.expect_lines("!!! usage: /resume CODE")
        alice.say("/who")
        await alice.expect_lines("*** #lobby (1): alice (telnet)")


async def _telnet_chat(
    testcase: TestCase, *nicks: str
) -> tuple[TchatServer, list[ChatClient]]:
    server = await start_server(testcase, history_ini())
    return server, [await telnet_user(testcase, server, nick) for nick in nicks]


class ShutdownTests(TestCase):
    """
    A clean stop writes out everything, and a restart brings it all back.
    """

    @async_test
    async def test_sigterm_during_load_flushes_everything(self) -> None:
        """
        With C{sync = normal} and the default 50 ms batch window, four web
        clients send numbered messages at once; SIGTERM arrives while they
        send.  The server exits cleanly (status 0, no traceback, no SIGKILL
        needed), and after a restart the history holds every
        message that was acknowledged (and every one another client was
        shown), once, in order, and nothing else; the restarted server
        does not warn of an unclean stop and keeps the room's epoch.
        """
        tap_ini = history_ini()
        server = await web_server(self, tap_ini)
        clients = [await web_user(self, server, f"w{n}") for n in range(4)]
        watcher = await web_user(self, server, "watcher")
        for client in clients:
            await client.sync()
        streams = [Stream(client, client.nick) for client in clients]
        await stream_until(streams, 400, server.stop)
        # A graceful stop exits 0 (twistd alone would end itself with
        # the signal); stop() checked it needed no SIGKILL and logged no
        # traceback.
        self.assertEqual(
            (server.process.exit_code, server.process.signal),
            (0, None),
            server.log(),
        )
        seen = usermsgs(watcher.frames)
        epoch = streams[0].acks[0]["epoch"]

        server = await restart(self, server, tap_ini)
        reader = await web_user(self, server, "reader")
        history = await read_history(reader, "#lobby", limit=200)
        self.assertGreaterEqual(len(history), 400)
        check_complete(self, history, streams, seen)
        self.assertEqual({f["epoch"] for f in history}, {epoch}, "the same epoch")
        ack = await say(reader, "after the restart", "r-1")
        self.assertEqual((ack["id"], ack["epoch"]), (len(history) + 1, epoch))
        self.assertNotIn("did not stop cleanly", server.log())

    @async_test
    async def test_rooms_topics_history_and_codes_survive_a_restart(self) -> None:
        """
        After a clean restart: #dev, where alice set a topic and talked,
        is listed by C{/rooms} with its topic, though empty; C{/topic}
        shows it and who set it; joining #dev replays its messages
        (C{/me} too), and C{/history} pages them; #lobby's message is
        replayed to a web client with its id and epoch; and alice's
        resume code from before the restart gives her back her nick and
        rooms, with what was said since.
        """
        tap_ini = history_ini()
        server = await web_server(self, tap_ini)
        alice = await telnet_user(self, server, "alice")
        wendy = await web_user(self, server, "wendy")
        lobby = await say(wendy, "hello lobby", "w-1")
        await alice.wait_for("<wendy> hello lobby\r\n")
        alice.say("/join #dev")
        await alice.expect_lines("[HH:MM] *** you joined #dev")
        alice.say("/topic Design talk")
        await alice.expect_lines("[HH:MM] *** alice set the topic of #dev: Design talk")
        for line in ("one", "two", "/me three"):
            alice.say(line)
        await alice.sync()
        await server.stop()
        await alice.expect_closed()

        server = await restart(self, server, tap_ini)
        bob = await connect(self, server.port, "bob")
        self.assertEqual(bob.replay, [b"[HH:MM] <wendy> hello lobby"])
        await bob.set_nick("bob")
        bob.say("/rooms")
        await bob.expect_lines(
            "*** Rooms:", "  #dev  0 users  Design talk", "  #lobby  1 user"
        )
        bob.say("/join #dev")
        await bob.expect_lines(
            "[HH:MM] *** you joined #dev",
            "*** Recent messages in #dev:",
            "[HH:MM] <alice> one",
            "[HH:MM] <alice> two",
            "[HH:MM] * alice three",
            "*** End of recent messages",
        )
        bob.say("/topic")
        await bob.expect_lines("*** Topic of #dev (set by alice): Design talk")
        bob.say("/history 2")
        await bob.expect_lines(
            "*** Last 2 messages in #dev:",
            "[HH:MM] <alice> two",
            "[HH:MM] * alice three",
            "*** End of history; older messages are kept too (/history N shows more)",
        )
        bob.say("after the restart")

        web = await connect_web(self, web_port(server), "web", replay=True)
        self.assertEqual(
            web.replay,
            [
                history_message(
                    "wendy", "hello lobby", lobby["id"], lobby["epoch"], lobby["color"]
                )
            ],
        )

        again = await connect(self, server.port, "alice again")
        again.say(f"/resume {alice.code}")
        await expect_resume(
            again,
            "[HH:MM] *** you are now known as alice",
            "*** welcome back, alice: restoring #lobby, #dev",
            "*** Nothing new in #lobby since you left",
            "*** 1 message in #dev since you left:",
            "[HH:MM] <bob> after the restart",
            "*** End of missed messages in #dev",
            joined=("#dev",),
        )


class ReplayTests(TestCase):
    """
    What a user joining a room is shown of its past.
    """

    @async_test
    async def test_late_joiners_get_the_replay(self) -> None:
        """
        With C{replay = 3}, after alice said four things in #lobby (one a
        C{/me}), a telnet user joining later is shown the latest three
        between "Recent messages" and "End of recent messages", a web user
        gets them as C{usermsg} frames marked C{history} (the action with
        C{action: true}), and alice, leaving and joining again, is shown
        her own lines; then live messages follow, unmarked.
        """
        server = await web_server(self, history_ini(replay=3))
        alice = await telnet_user(self, server, "alice")
        for line in ("first", "second", "/me waves", "fourth"):
            alice.say(line)
        await alice.sync()
        late = await connect(self, server.port, "late")
        self.assertEqual(
            late.replay,
            [
                b"[HH:MM] <alice> second",
                b"[HH:MM] * alice waves",
                b"[HH:MM] <alice> fourth",
            ],
        )
        web = await connect_web(self, web_port(server), "web", replay=True)
        await alice.expect_lines(
            f"[HH:MM] *** {late.nick} (telnet) joined #lobby",
            f"[HH:MM] *** {web.nick} (web) joined #lobby",
        )
        self.assertEqual(
            [(f["id"], f["message"], f["action"], f["history"]) for f in web.replay],
            [
                (2, "second", False, True),
                (3, "waves", True, True),
                (4, "fourth", False, True),
            ],
        )
        alice.say("/part #lobby")
        await alice.expect_lines(
            "[HH:MM] *** you left #lobby", "*** you are in no room now; /join #room"
        )
        alice.say("/join #lobby")
        await alice.expect_lines(
            "[HH:MM] *** you joined #lobby",
            "*** Recent messages in #lobby:",
            "[HH:MM] <alice> second",
            "[HH:MM] * alice waves",
            "[HH:MM] <alice> fourth",
            "*** End of recent messages",
        )
        alice.say("live")
        await late.wait_for("<alice> live\r\n")
        frame = await web.wait_for(type="usermsg", message="live")
        self.assertEqual((frame["id"], "history" in frame), (5, False))
        web.send({"type": "history", "room": "#lobby", "before": 2})
        page = await web.wait_for(type="history", room="#lobby")
        self.assertEqual((texts(page["messages"]), page["more"]), (["first"], False))
        late.say("/join #empty")
        await late.expect_lines("[HH:MM] *** you joined #empty")
        late.say("/history")
        await late.expect_lines("*** No earlier messages in #empty")
