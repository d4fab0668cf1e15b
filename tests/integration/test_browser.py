# -*- test-case-name: tests.integration.test_browser -*-
"""
The chat page in a real browser: headless Chromium (the system's
C{/usr/bin/chromium}) driven by Playwright, two pages and a telnet client
talking through a real C{twistd tchat}.

Playwright's sync API runs in one worker thread (it must stay on the thread
that started it), with the whole browser side of the scenario written there
in order; whatever the scenario does with telnet clients or the server runs
on the reactor thread, through L{blockingCallFromThread}.  Every browser
wait has a timeout (L{WAIT_MS}), and every reactor-side wait is bounded by
the helpers in L{tests.integration.server}.

To take a page away while the server runs on, Chromium's offline emulation
keeps it from reconnecting, and an init script that records the page's
WebSockets lets the test close the open one (see L{ChatPage.go_offline}).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.integration.browser import (
    RECONNECT_MS,
    WAIT_MS,
    ChatPage,
    in_browser,
    on_reactor,
    require_browser,
)
from tests.integration.server import (
    LOOPBACK,
    TAP_INI,
    ChatClient,
    TchatServer,
    async_test,
    connect,
    make_directory,
    start_server,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser

SCREENSHOT = "/tmp/tchat-browser.png"
"""A copy of one screenshot, for people to look at."""

XSS = "<img src=x onerror=alert(1)>"


def free_port() -> int:
    """
    A TCP port on 127.0.0.1 that was free a moment ago: bound to port 0,
    read, and closed again.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


async def say_lines(client: ChatClient, lines: Sequence[str]) -> None:
    """
    A telnet client says each of C{lines} in its current room; returns once
    the server has handled them all.
    """
    for line in lines:
        client.say(line)
    await client.sync()


LOST = re.compile(rb"\*\*\* alice \(web\) lost connection\r\n")
"""What telnet users see once the server noticed alice's page went."""

GAP = ("", "(gap)")
"""A gap marker, as L{lines_of} shows it."""


def lines_of(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """
    A room's log (from L{ChatPage.room_log}) as C{(nick, text)} pairs, with
    L{GAP} for a gap marker.
    """
    return [GAP if e.get("gap") else (e["nick"], e["text"]) for e in entries]


class BrowserTests(TestCase):
    """
    The chat page in headless Chromium, against a real server.
    """

    # The scenario aims at well under a minute; this only stops a hung one.
    timeout = 120

    @async_test
    async def test_pages_and_telnet_chat(self) -> None:
        """
        Two browser pages and a telnet user chat in every direction; the
        member list shows everyone with their door badge and follows joins,
        nick changes, quits and room switches; a page joins #dev and a
        telnet user there sees its messages; HTML in a message is shown as
        literal text (no element, no dialog); and after the server is
        stopped and started again on the same port the pages show they were
        disconnected, reconnect by themselves, take their nicks back and
        chat again.
        """
        require_browser()
        port = free_port()
        web = f"tcp:{port}:interface={LOOPBACK}"
        server = await start_server(self, web=web)
        carol = await connect(self, server.port, "carol")
        await carol.set_nick("carol")
        shots = make_directory(self)
        await deferToThread(self._in_browser, self._chat, server, carol, web, shots)

    @async_test
    async def test_cluster_telnet_and_page_on_two_nodes(self) -> None:
        """
        Two nodes of one cluster (a real redis-server): a telnet user on
        node A and a page on node B share #lobby as if on one server.  Each
        sees the other arrive, their nick changes and messages both ways;
        the page's member list shows the telnet user with its door badge;
        HTML the telnet user types shows as text on the page; and the
        telnet user sees the page leave.
        """
        from tests.integration.cluster import RedisServer, start_node

        require_browser()
        redis = RedisServer(self)
        await redis.start()
        node_a = await start_node(self, redis, "a", web=False)
        node_b = await start_node(self, redis, "b")
        carol = await connect(self, node_a.port, "carol")
        await carol.set_nick("carol")
        shots = make_directory(self)
        await deferToThread(self._in_browser, self._across_nodes, node_b, carol, shots)

    def _across_nodes(
        self, browser: Browser, node_b: TchatServer, carol: ChatClient, shots: str
    ) -> None:
        url = f"http://{LOOPBACK}:{node_b.web_port}/"
        alice = ChatPage(browser, url, "alice")
        guest = alice.wait_welcomed()
        alice.set_nick("alice")
        on_reactor(
            carol.expect_lines,
            f"[HH:MM] *** {guest} (web) joined #lobby",
            f"[HH:MM] *** {guest} (web) is now known as alice",
        )
        alice.expect_members("carol", "alice")
        alice.expect_member("carol", "telnet")

        alice.say("hello from node b")
        on_reactor(carol.expect_lines, "[HH:MM] <alice> hello from node b")
        on_reactor(carol.say, "hello from node a <b>bold</b><script>alert(1)</script>")
        alice.expect_message(
            "carol", "telnet", "hello from node a <b>bold</b><script>alert(1)</script>"
        )
        assert alice.page.locator("#messages b").count() == 0
        assert not alice.dialogs, alice.dialogs
        alice.page.screenshot(path=os.path.join(shots, "cluster-node-b.png"))

        alice.page.context.close()
        on_reactor(
            carol.expect_lines, "[HH:MM] *** alice (web) quit (connection closed)"
        )
        assert not alice.errors, alice.errors

    def _in_browser(self, scenario: Callable[..., None], *args: Any) -> None:
        in_browser(scenario, *args)

    def _chat(
        self,
        browser: Browser,
        server: TchatServer,
        carol: ChatClient,
        web: str,
        shots: str,
    ) -> None:
        from playwright.sync_api import expect

        url = f"http://{LOOPBACK}:{server.web_port}/"

        # -- two pages arrive and take nicks --------------------------------
        pages = []
        for name in ("alice", "bob"):
            page = ChatPage(browser, url, name)
            guest = page.wait_welcomed()
            page.set_nick(name)
            on_reactor(
                carol.expect_lines,
                f"[HH:MM] *** {guest} (web) joined #lobby",
                f"[HH:MM] *** {guest} (web) is now known as {name}",
            )
            pages.append(page)
        alice, bob = pages
        for page in (alice, bob):
            page.expect_members("carol", "alice", "bob")
            page.expect_member("carol", "telnet")
            page.expect_member("alice", "web")
            page.expect_member("bob", "web")

        # -- messages in every direction ------------------------------------
        alice.say("hello from alice")
        bob.expect_message("alice", "web", "hello from alice")
        on_reactor(carol.expect_lines, "[HH:MM] <alice> hello from alice")
        own = alice.expect_message("alice", "web", "hello from alice")
        expect(own).not_to_have_class(re.compile(r"msg-pending"), timeout=WAIT_MS)

        bob.say("hello from bob")
        alice.expect_message("bob", "web", "hello from bob")
        on_reactor(carol.expect_lines, "[HH:MM] <bob> hello from bob")

        on_reactor(carol.say, "hello from telnet")
        alice.expect_message("carol", "telnet", "hello from telnet")
        bob.expect_message("carol", "telnet", "hello from telnet")

        # -- the member list follows joins, nick changes and quits ---------
        assert server.web_port is not None
        dave = on_reactor(connect, self, server.port, "dave")
        guest = dave.nick
        alice.expect_member(guest, "telnet")
        on_reactor(dave.set_nick, "dave")
        for page in (alice, bob):
            page.expect_member("dave", "telnet")
            page.expect_members("carol", "alice", "bob", "dave")
        on_reactor(dave.say, "/quit off I go")
        for page in (alice, bob):
            page.expect_members("carol", "alice", "bob")
        on_reactor(
            carol.expect_lines,
            f"[HH:MM] *** {guest} (telnet) joined #lobby",
            f"[HH:MM] *** {guest} (telnet) is now known as dave",
            "[HH:MM] *** dave (telnet) quit (off I go)",
        )
        self.assertEqual(on_reactor(carol.sync), b"")

        # -- HTML in a message is text --------------------------------------
        alice.say(XSS)
        for page in (bob, alice):
            line = page.expect_message("alice", "web", XSS)
            self.assertEqual(line.locator(".text").evaluate("e => e.textContent"), XSS)
            self.assertEqual(page.locator("#messages img").count(), 0)
        on_reactor(carol.expect_lines, f"[HH:MM] <alice> {XSS}")
        alice.page.screenshot(path=os.path.join(shots, "alice-lobby.png"))
        bob.page.screenshot(path=os.path.join(shots, "bob-lobby.png"))
        shutil.copyfile(os.path.join(shots, "bob-lobby.png"), SCREENSHOT)

        # -- a page switches to #dev ----------------------------------------
        on_reactor(carol.say, "/join #dev")
        on_reactor(carol.expect_lines, "[HH:MM] *** you joined #dev")
        alice.page.fill("#join-room", "#dev")
        alice.page.press("#join-room", "Enter")
        expect(alice.locator('#rooms [data-room="#dev"]')).to_have_count(1)
        on_reactor(carol.expect_lines, "[HH:MM] *** alice (web) joined #dev")
        alice.expect_members("carol", "alice")
        alice.say("talk in dev")
        alice.expect_message("alice", "web", "talk in dev", room="#dev")
        on_reactor(carol.expect_lines, "[HH:MM] <alice> talk in dev")
        on_reactor(carol.say, "answer in dev")
        alice.expect_message("carol", "telnet", "answer in dev", room="#dev")
        bob.expect_members("carol", "alice", "bob")
        bob.expect_message("alice", "web", XSS)  # nothing from #dev reached bob
        alice.page.screenshot(path=os.path.join(shots, "alice-dev.png"))

        # -- the server restarts on the same port ---------------------------
        on_reactor(server.stop)
        for page in (alice, bob):
            page.locator('#status:not([data-state="open"])').wait_for(
                state="attached", timeout=WAIT_MS
            )
        again = on_reactor(start_server, self, web=web)
        self.assertEqual(again.web_port, server.web_port)
        for page in (alice, bob):
            page.expect_state("open", timeout=RECONNECT_MS)
            # Shown: connected, then closed (with a count-down) while the
            # server was away, then connected again.
            states = page.states()
            self.assertIn("open", states, page.name)
            self.assertIn("closed", states[states.index("open") :], page.name)
            self.assertEqual(states[-1], "open", page.name)
        expect(alice.locator("#nick")).to_have_value("alice", timeout=WAIT_MS)
        expect(bob.locator("#nick")).to_have_value("bob", timeout=WAIT_MS)
        alice.expect_members("alice")  # back in #dev, alone on the new server
        bob.expect_members("alice", "bob")
        erin = on_reactor(connect, self, again.port, "erin")
        on_reactor(erin.set_nick, "erin")
        on_reactor(erin.say, "/join #dev")
        on_reactor(erin.expect_lines, "[HH:MM] *** you joined #dev")
        alice.expect_member("erin", "telnet")
        alice.say("back again")
        on_reactor(erin.expect_lines, "[HH:MM] <alice> back again")
        on_reactor(erin.say, "welcome back")
        alice.expect_message("erin", "telnet", "welcome back", room="#dev")
        bob.say("lobby is back too")
        on_reactor(erin.expect_lines, "[HH:MM] #lobby <bob> lobby is back too")
        alice.page.screenshot(path=os.path.join(shots, "alice-reconnected.png"))

        for page in (alice, bob):
            self.assertEqual(page.dialogs, [], f"{page.name}: no dialog opened")
            self.assertEqual(page.errors, [], f"{page.name}: no script errors")

    @async_test
    async def test_reconnect_resumes(self) -> None:
        """
        A page in two rooms (#lobby, the server's default room, and #dev)
        misses messages twice, more each time than a join replays: once
        across a server restart (SIGTERM, then a new server on the same
        port and history, with telnet users talking before the page is back
        on the network), and once when only its own connection drops.  Each
        time it reconnects by itself, takes its nick and current room back
        and catches up with one resume: both rooms then show every message
        exactly once, in the order said, the missed ones marked as catch-up,
        with ids increasing in one epoch and no gap marker, since nothing
        was lost.
        """
        require_browser()
        port = free_port()
        web = f"tcp:{port}:interface={LOOPBACK}"
        server = await start_server(self, web=web)
        carol = await connect(self, server.port, "carol")
        await carol.set_nick("carol")
        dave = await connect(self, server.port, "dave")
        await dave.set_nick("dave")
        dave.say("/join #dev")
        await dave.expect_lines("[HH:MM] *** you joined #dev")
        await deferToThread(self._in_browser, self._resume, server, carol, dave, web)

    def _resume(
        self,
        browser: Browser,
        server: TchatServer,
        carol: ChatClient,
        dave: ChatClient,
        web: str,
    ) -> None:
        """
        The browser side of L{test_reconnect_resumes}, on the worker thread.
        """
        from playwright.sync_api import expect

        url = f"http://{LOOPBACK}:{server.web_port}/"
        lobby: list[tuple[str, str]] = []  # what each room's log must show
        dev: list[tuple[str, str]] = []
        missed: set[tuple[str, str]] = set()  # of those, said while away

        def check(page: ChatPage, room: str, expected: list[tuple[str, str]]) -> None:
            entries = page.room_log(room)
            self.assertEqual(lines_of(entries), expected, room)
            self.assertEqual(
                [e for e in entries if e["pending"] or e["failed"]], [], room
            )
            ids = [e["id"] for e in entries]
            self.assertEqual(ids, sorted(set(ids)), f"{room}: ids increase")
            self.assertEqual(len({e["epoch"] for e in entries}), 1, room)
            self.assertEqual(
                [(e["nick"], e["text"]) for e in entries if e["history"]],
                [line for line in expected if line in missed],
                f"{room}: exactly the missed messages are catch-up",
            )

        # -- alice chats in #lobby and #dev ---------------------------------
        alice = ChatPage(browser, url, "alice")
        alice.wait_welcomed()
        alice.set_nick("alice")
        on_reactor(carol.say, "lobby 1")
        alice.expect_message("carol", "telnet", "lobby 1")
        alice.say_confirmed("lobby 2", "#lobby")
        on_reactor(carol.say, "lobby 3")
        alice.expect_message("carol", "telnet", "lobby 3")
        lobby += [("carol", "lobby 1"), ("alice", "lobby 2"), ("carol", "lobby 3")]
        alice.page.fill("#join-room", "#dev")
        alice.page.press("#join-room", "Enter")
        expect(alice.locator("#room-name")).to_have_text("#dev")
        on_reactor(dave.say, "dev 1")
        alice.expect_message("dave", "telnet", "dev 1", room="#dev")
        alice.say_confirmed("dev 2", "#dev")
        dev += [("dave", "dev 1"), ("alice", "dev 2")]

        # -- the server restarts while alice is away ------------------------
        on_reactor(server.stop)
        alice.locator('#status:not([data-state="open"])').wait_for(state="attached")
        # Offline, the page cannot reconnect to the new server until told.
        alice.go_offline(cut=False)
        alice.expect_state("closed")
        alice.page.wait_for_timeout(2000)  # the server stays down a while
        again = on_reactor(start_server, self, web=web, directory=server.directory)
        self.assertEqual(again.web_port, server.web_port)
        carol = on_reactor(connect, self, again.port, "carol again")
        on_reactor(carol.set_nick, "carol")
        dave = on_reactor(connect, self, again.port, "dave again")
        on_reactor(dave.set_nick, "dave")
        on_reactor(dave.say, "/join #dev")
        on_reactor(dave.expect_lines, "[HH:MM] *** you joined #dev")
        # More than a join replays (20), in both rooms.
        said = [f"lobby away {n}" for n in range(1, 26)]
        on_reactor(say_lines, carol, said)
        lobby += [("carol", text) for text in said]
        said = [f"dev away {n}" for n in range(1, 26)]
        on_reactor(say_lines, dave, said)
        dev += [("dave", text) for text in said]
        missed.update(lobby[3:] + dev[2:])
        self.assertIn("closed", alice.states()[-1:])

        alice.go_online()
        alice.expect_state("open", timeout=RECONNECT_MS)
        expect(alice.locator("#nick")).to_have_value("alice")
        expect(alice.locator("#room-name")).to_have_text("#dev")
        alice.say_confirmed("dev 3", "#dev")
        dev.append(("alice", "dev 3"))
        check(alice, "#dev", dev)
        alice.show_room("#lobby")
        alice.say_confirmed("lobby 4", "#lobby")
        lobby.append(("alice", "lobby 4"))
        check(alice, "#lobby", lobby)

        # -- only alice's connection drops, the server runs on --------------
        alice.go_offline()
        on_reactor(carol.wait_for, LOST)
        said = [f"lobby gone {n}" for n in range(1, 4)]  # the replay has them
        on_reactor(say_lines, carol, said)
        lobby += [("carol", text) for text in said]
        said = [f"dev gone {n}" for n in range(1, 23)]  # the replay has not
        on_reactor(say_lines, dave, said)
        dev += [("dave", text) for text in said]
        missed.update(lobby[-3:] + dev[-22:])
        alice.go_online()
        alice.expect_state("open", timeout=RECONNECT_MS)
        expect(alice.locator("#nick")).to_have_value("alice")
        # Back in #lobby, its current room, though in #dev too.
        expect(alice.locator("#room-name")).to_have_text("#lobby")
        expect(alice.locator('#rooms [data-room="#dev"]')).to_have_attribute(
            "data-joined", "true"
        )
        alice.say_confirmed("lobby 5", "#lobby")
        lobby.append(("alice", "lobby 5"))
        check(alice, "#lobby", lobby)
        alice.show_room("#dev")
        alice.say_confirmed("dev 4", "#dev")
        dev.append(("alice", "dev 4"))
        check(alice, "#dev", dev)

        # It showed it was disconnected, twice, and is connected now.
        states = [s for s in alice.states() if s != "connecting"]
        shown = [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]
        self.assertEqual(shown, ["open", "closed", "open", "closed", "open"])
        self.assertEqual(alice.dialogs, [])
        self.assertEqual(alice.errors, [])

    @async_test
    async def test_gap_and_older_messages(self) -> None:
        """
        With a server that keeps only 5 messages per room and replays 2, a
        page that misses 8 messages comes back to the ones still kept, in
        order, after a gap marker where the others were; coming back again
        with nothing missed adds no second marker.  A page that joins later
        shows the 2 replayed messages and a "load older messages" control,
        which brings the rest of what is kept and then hides, as nothing
        older is kept.
        """
        require_browser()
        small = TAP_INI + "\n[history]\nkeep = 5\nreplay = 2\n"
        server = await start_server(self, small, web=f"tcp:0:interface={LOOPBACK}")
        carol = await connect(self, server.port, "carol")
        await carol.set_nick("carol")
        await deferToThread(self._in_browser, self._gap, server, carol)

    def _gap(self, browser: Browser, server: TchatServer, carol: ChatClient) -> None:
        """
        The browser side of L{test_gap_and_older_messages}, on the worker thread.
        """
        from playwright.sync_api import expect

        url = f"http://{LOOPBACK}:{server.web_port}/"
        alice = ChatPage(browser, url, "alice")
        alice.wait_welcomed()
        alice.set_nick("alice")
        on_reactor(say_lines, carol, ["kept 1", "kept 2"])
        alice.expect_message("carol", "telnet", "kept 2")

        # Ids 3 to 10; with keep = 5 only 6 to 10 (gone 4 to 8) stay.
        alice.go_offline()
        on_reactor(carol.wait_for, LOST)
        on_reactor(say_lines, carol, [f"gone {n}" for n in range(1, 9)])
        alice.go_online()
        alice.expect_state("open", timeout=RECONNECT_MS)
        expect(alice.locator("#nick")).to_have_value("alice")
        alice.say_confirmed("after", "#lobby")
        expected = [("carol", "kept 1"), ("carol", "kept 2"), GAP]
        expected += [("carol", f"gone {n}") for n in range(4, 9)]
        expected.append(("alice", "after"))
        self.assertEqual(lines_of(alice.room_log("#lobby")), expected)
        gap = alice.locator("#messages .gap")
        expect(gap).to_have_text(re.compile("no longer available"))

        # Away again, with nothing said: nothing is missing this time.
        alice.go_offline()
        on_reactor(carol.wait_for, LOST)
        alice.go_online()
        alice.expect_state("open", timeout=RECONNECT_MS)
        expect(alice.locator("#nick")).to_have_value("alice")
        alice.say_confirmed("after again", "#lobby")
        expected.append(("alice", "after again"))
        self.assertEqual(lines_of(alice.room_log("#lobby")), expected)

        # A newcomer sees the replay, then pages back to what is kept.
        bob = ChatPage(browser, url, "bob")
        bob.wait_welcomed()
        bob.expect_message("alice", "web", "after again")
        self.assertEqual(lines_of(bob.room_log("#lobby")), expected[-2:])
        older = bob.locator("#messages #older")
        expect(older).to_be_visible()
        older.click()
        kept = [("carol", f"gone {n}") for n in range(6, 9)]
        expect(bob.locator("#messages .msg-user")).to_have_count(5)
        self.assertEqual(lines_of(bob.room_log("#lobby")), kept + expected[-2:])
        expect(older).to_be_hidden()

        for page in (alice, bob):
            self.assertEqual(page.dialogs, [], f"{page.name}: no dialog opened")
            self.assertEqual(page.errors, [], f"{page.name}: no script errors")

    @async_test
    async def test_lost_history_shows_gap(self) -> None:
        """
        When the server comes back without its history (its SQLite file
        removed while it was stopped), the room starts a new epoch with ids
        from 1 again: the page, resuming from an epoch the server no longer
        knows, keeps what it showed, marks a gap, and shows the new epoch's
        messages after it, in order, though their ids are lower.
        """
        require_browser()
        web = f"tcp:{free_port()}:interface={LOOPBACK}"
        server = await start_server(self, web=web)
        carol = await connect(self, server.port, "carol")
        await carol.set_nick("carol")
        await deferToThread(self._in_browser, self._lost_history, server, carol, web)

    def _lost_history(
        self, browser: Browser, server: TchatServer, carol: ChatClient, web: str
    ) -> None:
        """
        The browser side of L{test_lost_history_shows_gap}, on the worker thread.
        """
        from playwright.sync_api import expect

        url = f"http://{LOOPBACK}:{server.web_port}/"
        alice = ChatPage(browser, url, "alice")
        alice.wait_welcomed()
        alice.set_nick("alice")
        on_reactor(say_lines, carol, ["old 1", "old 2"])
        alice.expect_message("carol", "telnet", "old 2")

        on_reactor(server.stop)
        alice.go_offline(cut=False)
        alice.expect_state("closed")
        for name in os.listdir(server.directory):
            if name.startswith("tchat.sqlite3"):
                os.remove(os.path.join(server.directory, name))
        again = on_reactor(start_server, self, web=web, directory=server.directory)
        carol = on_reactor(connect, self, again.port, "carol again")
        on_reactor(carol.set_nick, "carol")
        on_reactor(say_lines, carol, ["new 1", "new 2"])
        alice.go_online()
        alice.expect_state("open", timeout=RECONNECT_MS)
        expect(alice.locator("#nick")).to_have_value("alice")
        alice.say_confirmed("new 3", "#lobby")

        entries = alice.room_log("#lobby")
        self.assertEqual(
            lines_of(entries),
            [
                ("carol", "old 1"),
                ("carol", "old 2"),
                GAP,
                ("carol", "new 1"),
                ("carol", "new 2"),
                ("alice", "new 3"),
            ],
        )
        old, new = entries[:2], entries[3:]
        self.assertEqual([e["id"] for e in old], [1, 2])
        self.assertEqual([e["id"] for e in new], [1, 2, 3])
        self.assertEqual(len({e["epoch"] for e in old}), 1)
        self.assertEqual(len({e["epoch"] for e in new}), 1)
        self.assertGreater(new[0]["epoch"], old[0]["epoch"])
        self.assertEqual(alice.errors, [])

    @async_test
    async def test_unconfirmed_message_sent_once(self) -> None:
        """
        A message whose connection closes before the server acknowledges it
        is shown once, acknowledged, after the page reconnects: whether the
        server had it (the page sends it again with the same client id,
        and the server answers with the original) or not (sent again, it is
        said then).  A line typed as soon as the page is back waits until
        the page has its nick back and has sent the other again: it is said
        after it, by the same nick.
        """
        require_browser()
        server = await start_server(self, web=f"tcp:0:interface={LOOPBACK}")
        carol = await connect(self, server.port, "carol")
        await carol.set_nick("carol")
        await deferToThread(self._in_browser, self._unconfirmed, server, carol)

    def _unconfirmed(
        self, browser: Browser, server: TchatServer, carol: ChatClient
    ) -> None:
        """
        The browser side of L{test_unconfirmed_message_sent_once}, on the worker thread.
        """
        from playwright.sync_api import expect

        url = f"http://{LOOPBACK}:{server.web_port}/"
        alice = ChatPage(browser, url, "alice")
        alice.wait_welcomed()
        alice.set_nick("alice")
        expected = []
        cases = ((True, "reached the server"), (False, "did not"))
        for n, (deliver, text) in enumerate(cases, 1):
            sockets = alice.cut_at_message(text, deliver)
            alice.say(text)
            said = f"] <alice> {text}\r\n"
            if deliver:  # said before the connection closed
                on_reactor(carol.wait_for, said)
            on_reactor(carol.wait_for, LOST)
            alice.expect_reconnected(sockets)
            alice.say_confirmed(f"after {n}", "#lobby")
            expect(alice.locator("#nick")).to_have_value("alice")
            if not deliver:  # said once the page is back
                on_reactor(carol.wait_for, said)
            on_reactor(carol.wait_for, f"] <alice> after {n}\r\n")
            expected += [("alice", text), ("alice", f"after {n}")]
        self.assertEqual(lines_of(alice.room_log("#lobby")), expected)
        # carol too saw each message once.
        on_reactor(carol.sync)
        heard = on_reactor(lambda: bytes(carol.received.data))
        lines = re.findall(rb"\] <alice> ([^\r]*)\r\n", heard)
        self.assertEqual([line.decode() for line in lines], [t for _, t in expected])
        self.assertEqual(alice.errors, [])

    @async_test
    async def test_accounts(self) -> None:
        """
        A page registers its nick through the login panel (name, password
        twice); reloaded, it is the same user without the password typed
        again: logged in (the account button names the account, the member
        list marks it registered), in the same rooms, showing the same
        room, with the room's earlier messages.  Closed, then opened again
        as a new tab of the same browser, it logs in by itself, and shows
        the private message sent to it meanwhile (with its date, marked)
        and the message that mentioned it.  A guest page reloaded keeps its
        guest nick and its rooms; a guest who asks for the registered nick
        gets the login panel with the name filled in, which Esc closes.
        The password is kept nowhere: not in the fields, not in storage.
        """
        require_browser()
        # Cheap password hashing: the test checks the page, not Argon2.
        ini = TAP_INI + "\n[accounts]\nhash_memory = 8192\nhash_time = 1\n"
        server = await start_server(self, ini, web=f"tcp:0:interface={LOOPBACK}")
        carol = await connect(self, server.port, "carol")
        await carol.set_nick("carol")
        await deferToThread(self._in_browser, self._accounts, server, carol)

    def _accounts(
        self, browser: Browser, server: TchatServer, carol: ChatClient
    ) -> None:
        """
        The browser side of L{test_accounts}, on the worker thread.
        """
        from playwright.sync_api import expect

        url = f"http://{LOOPBACK}:{server.web_port}/"
        password = "correct horse battery"

        def logged_in(page: ChatPage) -> None:
            """The page is alice, logged in, and marked registered."""
            expect(page.locator("#nick")).to_have_value("alice")
            expect(page.locator("#account")).to_have_text("alice")
            mark = page.locator('#members [data-name="alice"] .reg')
            expect(mark).to_have_attribute("aria-label", "registered")
            expect(mark).to_have_attribute("title", "registered")

        def kept(page: ChatPage) -> str:
            """Everything the page keeps in storage, as text."""
            text: str = page.page.evaluate(
                "() => JSON.stringify([{...localStorage}, {...sessionStorage}])"
            )
            return text

        # -- alice registers through the panel ------------------------------
        alice = ChatPage(browser, url, "alice")
        guest = alice.wait_welcomed()
        expect(alice.locator("#account")).to_have_text("Log in")
        alice.locator("#account").click()
        panel = alice.locator("#account-panel")
        expect(panel).to_be_visible()
        expect(alice.locator("#account-name")).to_be_focused()
        alice.page.fill("#account-name", "alice")
        alice.page.fill("#account-password", password)
        alice.locator("#account-switch").click()  # Register: the password again
        expect(alice.locator("#account-repeat")).to_be_focused()
        expect(alice.locator("#account-password")).to_have_attribute(
            "autocomplete", "new-password"
        )
        alice.page.fill("#account-repeat", password)
        alice.locator("#account-submit").click()
        expect(panel).to_be_hidden()
        logged_in(alice)
        on_reactor(carol.wait_for, f"*** {guest} (web) is now known as alice")
        self.assertEqual(alice.locator("#account-password").input_value(), "")
        self.assertEqual(alice.locator("#account-repeat").input_value(), "")
        self.assertNotIn(password, kept(alice))
        self.assertTrue(alice.page.evaluate("localStorage.getItem('tchat.token')"))

        # alice talks in #dev, then shows #lobby.
        alice.page.fill("#join-room", "#dev")
        alice.page.press("#join-room", "Enter")
        expect(alice.locator("#room-name")).to_have_text("#dev")
        alice.say_confirmed("hello dev", "#dev")
        alice.show_room("#lobby")

        # -- reloaded: the same alice, logged in, in the same rooms ---------
        alice.page.reload()
        alice.expect_state("open")
        logged_in(alice)
        expect(alice.locator("#room-name")).to_have_text("#lobby")
        expect(alice.locator('#rooms [data-room="#dev"]')).to_have_attribute(
            "data-joined", "true"
        )
        alice.show_room("#dev")
        alice.expect_message("alice", "web", "hello dev", room="#dev")
        self.assertNotIn(password, kept(alice))
        # carol saw the reloaded page go, and come back as alice.
        on_reactor(carol.wait_for, re.compile(rb"\*\*\* alice \(web[^)]*\) quit"))
        on_reactor(carol.wait_for, re.compile(rb"is now known as alice\b.*\r\n"))

        # -- a guest page reloaded keeps its guest nick and rooms -----------
        bob = ChatPage(browser, url, "bob")
        bob_guest = bob.wait_welcomed()
        bob.page.fill("#join-room", "#dev")
        bob.page.press("#join-room", "Enter")
        expect(bob.locator("#room-name")).to_have_text("#dev")
        bob.page.reload()
        bob.expect_state("open")
        expect(bob.locator("#nick")).to_have_value(bob_guest)
        expect(bob.locator("#room-name")).to_have_text("#dev")
        bob.expect_members("alice", bob_guest)
        expect(bob.locator("#account")).to_have_text("Log in")
        expect(bob.locator(f'#members [data-name="{bob_guest}"]')).to_have_attribute(
            "data-registered", "false"
        )

        # -- alice goes; what is said to her and of her waits ---------------
        alice.page.close()
        on_reactor(carol.wait_for, re.compile(rb"\*\*\* alice \(web[^)]*\) quit"))
        said = ["/msg alice see you tomorrow", "alice: are you there?"]
        on_reactor(say_lines, carol, said)

        # A guest asking for her nick is offered the login panel.
        bob.page.fill("#nick", "alice")
        bob.page.press("#nick", "Enter")
        expect(bob.locator("#account-panel")).to_be_visible()
        expect(bob.locator("#account-name")).to_have_value("alice")
        expect(bob.locator("#account-error")).to_have_text(re.compile("registered"))
        expect(bob.locator("#account-password")).to_be_focused()
        bob.page.keyboard.press("Escape")
        expect(bob.locator("#account-panel")).to_be_hidden()
        expect(bob.locator("#nick")).to_have_value(bob_guest)

        # -- a new tab of alice's browser logs in by itself ------------------
        tab = ChatPage(browser, url, "alice", context=alice.context)
        tab.expect_state("open")
        logged_in(tab)
        # The private message waits in its conversation, not a room's log.
        conversation = tab.locator('#conversations [data-nick="carol"]')
        expect(conversation.locator(".unread")).to_have_text("1")
        offline = tab.locator("#messages .msg-private.msg-offline")
        expect(offline).to_have_count(0)
        mention = tab.locator('#messages .msg[data-event="mentions"] .mention')
        expect(mention).to_have_count(1)
        expect(mention.locator(".text")).to_have_text("alice: are you there?")
        expect(mention.locator(".nick")).to_have_text("carol")
        conversation.locator("button").click()
        expect(tab.locator("#room-name")).to_have_text("carol")
        expect(offline.locator(".text")).to_have_text("see you tomorrow")
        expect(offline.locator(".time")).to_have_text(
            re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d\]$")
        )
        expect(offline.locator(".offline-mark")).to_be_visible()
        tab.locator("#leave").click()  # "Close": back to the room
        expect(tab.locator("#room-name")).to_have_text("#lobby")
        self.assertNotIn(password, kept(tab))

        # -- its connection drops: back by itself, logged in by its token ---
        tab.go_offline()
        on_reactor(carol.wait_for, "*** alice (web, registered) lost connection")
        tab.go_online()
        tab.expect_state("open", timeout=RECONNECT_MS)
        logged_in(tab)
        tab.say_confirmed("back again", "#lobby")
        on_reactor(carol.wait_for, "] <alice> back again\r\n")

        for page in (tab, bob):
            self.assertEqual(page.dialogs, [], f"{page.name}: no dialog opened")
            self.assertEqual(page.errors, [], f"{page.name}: no script errors")
        self.assertEqual(alice.errors, [])
