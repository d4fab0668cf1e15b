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
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import ensureDeferred
from twisted.internet.threads import blockingCallFromThread, deferToThread
from twisted.trial.unittest import TestCase

from tests.integration.server import (
    LOOPBACK,
    ChatClient,
    TchatServer,
    async_test,
    connect,
    global_reactor,
    make_directory,
    start_server,
)
from tests.support import require

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator

CHROMIUM = "/usr/bin/chromium"

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""See FACTS.md: without the background-networking flags Chromium keeps
trying to reach outside hosts."""

WAIT_MS = 10_000
"""The longest any single browser wait may take."""

RECONNECT_MS = 25_000
"""How long a page may take to reconnect: its back-off grows to a few
seconds while the server is down."""

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


def on_reactor(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """
    From the browser thread: call C{function} on the reactor thread (where
    every client and process of the test lives) and wait for its result,
    awaiting it first if it is a coroutine; its exception is raised here.
    """

    def call() -> Any:
        result = function(*args, **kwargs)
        if inspect.iscoroutine(result):
            return ensureDeferred(result)
        return result

    return blockingCallFromThread(global_reactor(), call)


def _playwright_available() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


class _Page:
    """
    One browser tab on the chat page, with what it noticed on the side.

    @ivar page: The Playwright page.
    @ivar name: Who it is in the test, for messages.
    @ivar dialogs: The messages of any dialogs (C{alert}) it opened.
    @ivar errors: Uncaught script errors on the page.
    """

    def __init__(self, browser: Browser, url: str, name: str) -> None:
        self.name = name
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        context = browser.new_context(viewport={"width": 1100, "height": 700})
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        # Every connection state the page ever shows, however briefly.
        page.add_init_script(
            """
            window.tchatStates = [];
            document.addEventListener("DOMContentLoaded", () => {
              const status = document.getElementById("status");
              window.tchatStates.push(status.dataset.state);
              new MutationObserver(() => window.tchatStates.push(status.dataset.state))
                .observe(status, {attributes: true, attributeFilter: ["data-state"]});
            });
            """
        )
        page.goto(url, timeout=WAIT_MS)
        self.page = page

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def locator(self, selector: str) -> Locator:
        return self.page.locator(selector)

    def states(self) -> list[str]:
        """
        Every C{data-state} C{#status} has had, in order.
        """
        states: list[str] = self.page.evaluate("window.tchatStates")
        return states

    def wait_welcomed(self) -> str:
        """
        Wait until the page is connected and welcomed: its nick field shows
        a guest nick.

        @return: The guest nick.
        """
        from playwright.sync_api import expect

        self.expect_state("open")
        field = self.locator("#nick")
        expect(field).to_have_value(re.compile(r"^guest-[0-9a-f]{4}$"), timeout=WAIT_MS)
        return field.input_value()

    def set_nick(self, nick: str) -> None:
        """
        Type a nick into the nick field and press Enter, then wait until
        the member list shows it.
        """
        self.page.fill("#nick", nick)
        self.page.press("#nick", "Enter")
        self.expect_member(nick, "web")

    def say(self, text: str) -> None:
        """
        Type a line into the message field and press Enter.
        """
        self.page.fill("#message", text)
        self.page.press("#message", "Enter")

    def expect_member(self, name: str, door: str) -> None:
        """
        Wait until the member list shows C{name} with a C{door} badge.
        """
        from playwright.sync_api import expect

        member = self.locator(f'#members [data-name="{name}"]')
        expect(member).to_have_count(1, timeout=WAIT_MS)
        expect(member.locator(".badge")).to_have_text(door, timeout=WAIT_MS)

    def expect_members(self, *names: str) -> None:
        """
        Wait until the member list shows exactly C{names}, in any order.
        """
        from playwright.sync_api import expect

        members = self.locator("#members [data-name]")
        expect(members).to_have_count(len(names), timeout=WAIT_MS)
        for name in names:
            expect(self.locator(f'#members [data-name="{name}"]')).to_have_count(
                1, timeout=WAIT_MS
            )

    def expect_message(
        self, nick: str, door: str, text: str, room: str = "#lobby"
    ) -> Locator:
        """
        Wait until the last user message shown is C{text} from C{nick},
        then check its nick, door badge and room.

        @return: That message.
        """
        from playwright.sync_api import expect

        last = self.locator("#messages .msg-user").last
        expect(last.locator(".text")).to_have_text(text, timeout=WAIT_MS)
        expect(last.locator(".nick")).to_have_text(nick, timeout=WAIT_MS)
        expect(last.locator(".badge")).to_have_text(door, timeout=WAIT_MS)
        expect(last).to_have_attribute("data-room", room, timeout=WAIT_MS)
        return last

    def expect_state(self, state: str, timeout: float = WAIT_MS) -> None:
        """
        Wait until C{#status} has C{data-state=state}.
        """
        self.locator(f'#status[data-state="{state}"]').wait_for(
            state="attached", timeout=timeout
        )


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
        require(
            os.access(CHROMIUM, os.X_OK),
            f"{CHROMIUM} is missing: apt-get install chromium",
        )
        require(
            _playwright_available(),
            "Python playwright is missing: pip install '.[test]'",
        )
        port = free_port()
        web = f"tcp:{port}:interface={LOOPBACK}"
        server = await start_server(self, web=web)
        carol = await connect(self, server.port, "carol")
        await carol.set_nick("carol")
        shots = make_directory(self)
        await deferToThread(self._scenario, server, carol, web, shots)

    def _scenario(
        self, server: TchatServer, carol: ChatClient, web: str, shots: str
    ) -> None:
        """
        The browser side of the test, on the worker thread.
        """
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=CHROMIUM_ARGS,
                headless=True,
                timeout=WAIT_MS * 3,
            )
            try:
                self._chat(browser, server, carol, web, shots)
            finally:
                browser.close()

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
            page = _Page(browser, url, name)
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
