# -*- test-case-name: tests.integration.test_browser -*-
"""
Helpers for the integration tests that open the chat page in a real
browser (L{tests.integration.test_browser}, and the page over the onion
service in L{tests.integration.test_onion_server}): the system's headless
Chromium driven by Playwright, L{ChatPage} for one tab of the chat page,
and L{on_reactor} for the browser side to reach the reactor thread, where
the test's servers and clients live.

Playwright's sync API runs in one worker thread (it must stay on the
thread that started it), and every browser wait has a timeout
(L{WAIT_MS}).  Tests skip without Chromium or Playwright
(L{require_browser}).
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import ensureDeferred
from twisted.internet.threads import blockingCallFromThread
from twisted.trial.unittest import FailTest

from tests.integration.server import global_reactor
from tests.support import require

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Locator

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

FRAMES = 60
"""How many of its latest WebSocket frames a page keeps for failure messages."""


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


def launch_chromium(playwright: Any, **options: Any) -> Browser:
    """
    Start the system's headless Chromium with the flags FACTS.md asks for.

    @param options: More options for Playwright's C{launch} (a C{proxy}).
    """
    browser: Browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=CHROMIUM_ARGS,
        headless=True,
        timeout=WAIT_MS * 3,
        **options,
    )
    return browser


def describe_pages(browser: Browser) -> str:
    """
    What each page of C{browser} shows and did, for failure messages: its
    nick, its connection states, the lines of the room it shows, and its
    latest WebSocket frames (see L{ChatPage}).
    """
    parts = []
    for context in browser.contexts:
        for page in context.pages:
            try:
                shown: dict[str, Any] = page.evaluate(
                    """() => ({
                         nick: document.getElementById("nick").value,
                         states: window.tchatStates,
                         lines: [...document.querySelectorAll("#messages .msg")].map(
                           (n) => `[${n.className}`
                             + (n.dataset.id ? ` id=${n.dataset.id}` : "")
                             + (n.title ? ` (${n.title})` : "")
                             + `] ${n.textContent}`),
                         frames: window.tchatFrames,
                       })"""
                )
            except Exception as e:
                parts.append(f"a page that cannot be read: {e}")
                continue
            parts += [
                f"The page of {shown['nick']}, connection states {shown['states']}:",
                "  its messages:",
                *(f"    {line}" for line in shown["lines"]),
                f"  its last {len(shown['frames'])} WebSocket frames (seconds):",
                *(f"    {frame}" for frame in shown["frames"]),
            ]
    return "\n".join(parts)


def in_browser(scenario: Callable[..., None], *args: Any, **options: Any) -> None:
    """
    On a worker thread: launch Chromium and run the browser side of a
    test, C{scenario(browser, *args)}; close the browser after.  A failure
    says what every page showed and its latest frames (L{describe_pages}).
    """
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, **options)
        try:
            scenario(browser, *args)
        except (AssertionError, PlaywrightError) as e:
            raise FailTest(f"{e}\n\n{describe_pages(browser)}") from e
        finally:
            browser.close()


AXE_HOME = os.path.expanduser("~/.cache/tchat-axe/node_modules/axe-core/axe.min.js")
"""Where C{.ci/run} installs axe-core (npm's C{axe-core@4})."""


def axe_script() -> str | None:
    """
    The path of C{axe.min.js}: C{$TCHAT_AXE}, where C{.ci/run} installs it,
    or a C{node_modules} of this checkout; C{None} when none is there.
    Nothing is ever downloaded while the tests run.
    """
    checkout = os.path.join(
        os.path.dirname(__file__), "..", "..", "node_modules", "axe-core", "axe.min.js"
    )
    for path in (os.environ.get("TCHAT_AXE"), AXE_HOME, checkout):
        if path and os.path.isfile(path):
            return os.path.abspath(path)
    return None


def require_axe() -> str:
    """
    Skip the test without axe-core (fail under C{TCHAT_REQUIRE_ALL=1}).

    @return: The path of C{axe.min.js}.
    """
    path = axe_script()
    require(
        path is not None,
        "axe-core is missing: npm install --no-save --prefix ~/.cache/tchat-axe "
        "axe-core@4 (or set TCHAT_AXE to its axe.min.js)",
    )
    assert path is not None
    return path


def _playwright_available() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


def require_browser() -> None:
    """
    Skip the test unless Chromium and Python's Playwright are installed.
    """
    require(
        os.access(CHROMIUM, os.X_OK),
        f"{CHROMIUM} is missing: apt-get install chromium",
    )
    require(
        _playwright_available(),
        "Python playwright is missing: pip install '.[test]'",
    )


class ChatPage:
    """
    One browser tab on the chat page, with what it noticed on the side.

    @ivar page: The Playwright page.
    @ivar context: Its browser context (its own network, cookies, storage).
    @ivar name: Who it is in the test, for messages.
    @ivar door: The door others see it come through.
    @ivar dialogs: The messages of any dialogs (C{alert}) it opened.
    @ivar errors: Uncaught script errors on the page.
    """

    def __init__(
        self,
        browser: Browser,
        url: str,
        name: str,
        door: str = "web",
        context: BrowserContext | None = None,
        **options: Any,
    ) -> None:
        """
        @param context: Open the page as a new tab of this browser context
            (sharing its storage) instead of in a context of its own.
        @param options: For a context of its own: more options of
            Playwright's C{new_context} (C{viewport}, C{color_scheme},
            C{bypass_csp} to inject axe-core).
        """
        self.name = name
        self.door = door
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        if context is None:
            options.setdefault("viewport", {"width": 1100, "height": 700})
            context = browser.new_context(**options)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        # Every connection state the page ever shows, however briefly; every
        # WebSocket it opens, so that the test can cut one (see go_offline);
        # and the latest frames in and out, for failure messages (with
        # passwords hidden).  The subclass behaves exactly like WebSocket.
        page.add_init_script(
            """
            window.tchatStates = [];
            window.tchatSockets = [];
            window.tchatFrames = [];
            // Desktop notifications the page shows, granted at once; and a
            // way to hide the tab (headless Chromium's tab is never hidden).
            window.tchatNotes = [];
            window.Notification = class {
              static permission = "granted";
              static requestPermission() { return Promise.resolve("granted"); }
              constructor(title, options) {
                window.tchatNotes.push({title, body: (options || {}).body});
              }
              close() {}
            };
            let hidden = false;
            Object.defineProperty(document, "hidden", {get: () => hidden});
            Object.defineProperty(document, "visibilityState",
              {get: () => hidden ? "hidden" : "visible"});
            window.tchatSetHidden = (value) => {
              hidden = value;
              document.dispatchEvent(new Event("visibilitychange"));
            };
            // For each line added to the log: whether screen readers were
            // to announce it (the log's aria-live when it went in).
            window.tchatLive = [];
            window.WebSocket = class extends window.WebSocket {
              constructor(...args) {
                super(...args);
                window.tchatSockets.push(this);
                const n = window.tchatSockets.length;
                const note = (what) => {
                  window.tchatFrames.push(
                    `${(performance.now() / 1000).toFixed(3)} socket ${n} ${what}`);
                  if (window.tchatFrames.length > FRAMES) window.tchatFrames.shift();
                };
                const send = this.send.bind(this);
                const secret = /^[/](login|identify|register|password|unregister) /i;
                this.send = (data) => {
                  let shown = data;
                  try {
                    const frame = JSON.parse(data);
                    for (const key of ["password", "old", "new"]) {
                      if (key in frame) frame[key] = "(hidden)";
                    }
                    if (secret.test(frame.message)) frame.message = "(hidden)";
                    shown = JSON.stringify(frame);
                  } catch (e) {}
                  note(`out ${shown}`);
                  return send(data);
                };
                this.addEventListener("open", () => note("open"));
                this.addEventListener("message", (e) => note(`in ${e.data}`));
                this.addEventListener("close", (e) => note(`closed ${e.code}`));
              }
            };
            document.addEventListener("DOMContentLoaded", () => {
              const status = document.getElementById("status");
              if (status === null) return;  // not the chat page (about:blank)
              window.tchatStates.push(status.dataset.state);
              new MutationObserver(() => window.tchatStates.push(status.dataset.state))
                .observe(status, {attributes: true, attributeFilter: ["data-state"]});
              const log = document.getElementById("messages");
              new MutationObserver((records) => {
                for (const r of records) for (const n of r.addedNodes) {
                  if (!n.classList || !n.classList.contains("msg")) continue;
                  const text = n.querySelector(".text");
                  window.tchatLive.push({
                    text: text ? text.textContent : "",
                    live: log.getAttribute("aria-live"),
                  });
                }
                if (window.tchatLive.length > 500) window.tchatLive.splice(0, 100);
              }).observe(log, {childList: true});
            });
            """.replace("FRAMES", str(FRAMES))
        )
        page.goto(url, timeout=WAIT_MS)
        self.page = page
        self.context = context

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def locator(self, selector: str) -> Locator:
        return self.page.locator(selector)

    def axe(self, script: str, what: str) -> list[str]:
        """
        Run axe-core on the page as it is (its context must bypass the
        CSP, which forbids injected scripts).

        @param script: The path of C{axe.min.js}.
        @param what: What the page shows, for the messages.
        @return: A line per violation of serious or critical impact.
        """
        if not self.page.evaluate("typeof window.axe === 'object'"):
            self.page.add_script_tag(path=script)
        found: list[dict[str, Any]] = self.page.evaluate(
            """() => axe.run(document, {resultTypes: ["violations"]})
                 .then((r) => r.violations
                   .filter((v) => v.impact === "serious" || v.impact === "critical")
                   .map((v) => ({id: v.id, impact: v.impact, help: v.help,
                     nodes: v.nodes.slice(0, 5).map((n) =>
                       n.target.join(" ") + ": " + n.failureSummary)})))"""
        )
        return [
            f"{what}: {v['id']} ({v['impact']}): {v['help']}\n    "
            + "\n    ".join(v["nodes"])
            for v in found
        ]

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
        the member list shows it.  On a phone, where the composer has the
        width, the nick field is in the settings panel.
        """
        if self.locator("#nick").is_visible():
            self.page.fill("#nick", nick)
            self.page.press("#nick", "Enter")
        else:
            self.locator("#open-settings").click()
            self.page.fill("#settings-nick", nick)
            self.page.press("#settings-nick", "Enter")
            self.page.keyboard.press("Escape")
        self.expect_member(nick, self.door)

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
        then check its nick, door (on the line and in its nick's title: a
        line shows no door badge) and room.

        @return: That message.
        """
        from playwright.sync_api import expect

        last = self.locator("#messages .msg-user").last
        expect(last.locator(".text")).to_have_text(text, timeout=WAIT_MS)
        expect(last.locator(".nick")).to_have_text(nick, timeout=WAIT_MS)
        expect(last).to_have_attribute("data-door", door, timeout=WAIT_MS)
        expect(last.locator(".nick")).to_have_attribute(
            "title", f"{nick} ({door})", timeout=WAIT_MS
        )
        expect(last).to_have_attribute("data-room", room, timeout=WAIT_MS)
        return last

    def expect_state(self, state: str, timeout: float = WAIT_MS) -> None:
        """
        Wait until C{#status} has C{data-state=state}.
        """
        self.locator(f'#status[data-state="{state}"]').wait_for(
            state="attached", timeout=timeout
        )

    def go_offline(self, cut: bool = True) -> None:
        """
        Take the page off the network: Chromium's offline emulation fails
        every new connection (so the page cannot reconnect) and fires
        C{offline}.

        It does not end a WebSocket that is open, though (Chromium 156 only
        stalls its frames), so with C{cut} the page's open sockets are
        closed as a network failure would end them (code 4000), and this
        waits until the page shows it is disconnected.  The server sees the
        close at once, so the page's nick is free again when it comes back.
        """
        self.context.set_offline(True)
        if cut:
            self.page.evaluate(
                """() => window.tchatSockets
                     .filter((ws) => ws.readyState <= WebSocket.OPEN)
                     .forEach((ws) => ws.close(4000, "network down (test)"))"""
            )
            self.expect_state("closed")

    def cut_at_message(self, text: str, deliver: bool) -> int:
        """
        Make the page's connection close (code 4000) when the page sends
        the message C{text}, before any acknowledgement can arrive: right
        after its frame if C{deliver}, else instead of it (the message
        never reaches the server).  The page reconnects by itself.

        Only that message's frame cuts: not one the page sends again on
        its own, nor anything else it sends first.

        @return: How many WebSockets the page had opened, for
            L{expect_reconnected}.
        """
        sockets: int = self.page.evaluate(
            """([text, deliver]) => {
                 const ws = window.tchatSockets.at(-1);
                 const send = ws.send.bind(ws);
                 ws.send = (data) => {
                   const frame = JSON.parse(data);
                   if (frame.type !== "message" || frame.message !== text) {
                     return send(data);
                   }
                   ws.send = send;
                   if (deliver) send(data);
                   window.tchatFrames.push(`the test cuts the socket ${deliver
                     ? "after" : "instead of"} sending ${data}`);
                   ws.close(4000, "network down (test)");
                 };
                 return window.tchatSockets.length;
               }""",
            [text, deliver],
        )
        return sockets

    def expect_reconnected(self, sockets: int, timeout: float = RECONNECT_MS) -> None:
        """
        Wait until the page is connected and welcomed again on a WebSocket
        opened after the first C{sockets}.

        C{#status} alone cannot tell: until the page notices that its
        connection closed (which may be after the server did) it still
        shows the old connection as open.
        """
        self.page.wait_for_function(
            """(sockets) => window.tchatSockets.length > sockets
                 && document.getElementById("status").dataset.state === 'open'""",
            arg=sockets,
            timeout=timeout,
        )

    def go_online(self) -> None:
        """
        Put the page back on the network: C{online} fires, and the page
        reconnects at once.
        """
        self.context.set_offline(False)

    def show_room(self, room: str) -> None:
        """
        Make C{room} (one the page is in) the room shown, by clicking it in
        the room list, and wait until it is.
        """
        from playwright.sync_api import expect

        if self.locator("#room-name").text_content() != room:
            self.locator(f'#rooms [data-room="{room}"] button').click()
        expect(self.locator("#room-name")).to_have_text(room, timeout=WAIT_MS)

    def say_confirmed(self, text: str, room: str) -> None:
        """
        Say C{text} in C{room} (shown) and wait for the server's
        acknowledgement.

        The server holds the page's live messages of a room while it
        catches the page up on that room, so once the acknowledgement is
        shown, every message of the room the page is owed has arrived.
        """
        from playwright.sync_api import expect

        self.say(text)
        own = self.expect_message(self.name, self.door, text, room=room)
        expect(own).not_to_have_class(re.compile(r"msg-pending"), timeout=WAIT_MS)
        expect(own).to_have_attribute("data-id", re.compile(r"^[0-9]+$"))

    def room_log(self, room: str) -> list[dict[str, Any]]:
        """
        Show C{room}, then read its log: its messages and gap markers, in
        the order shown.

        @return: For a message: its C{nick}, C{text}, C{id}, C{epoch}, and
            whether it is C{history} (sent to catch up), C{pending} or
            C{failed}; for a gap marker: C{{"gap": True}}.
        """
        self.show_room(room)
        entries: list[dict[str, Any]] = self.page.evaluate(
            """() => [...document.querySelectorAll(
                       "#messages .msg-user, #messages .msg-action, #messages .gap")]
                 .map((n) => n.classList.contains("gap") ? {gap: true} : {
                   nick: n.querySelector(".nick").textContent,
                   text: n.querySelector(".text").textContent,
                   id: n.dataset.id ? Number(n.dataset.id) : null,
                   epoch: n.dataset.epoch ? Number(n.dataset.epoch) : null,
                   room: n.dataset.room,
                   history: n.classList.contains("msg-history"),
                   pending: n.classList.contains("msg-pending"),
                   failed: n.classList.contains("msg-failed"),
                 })"""
        )
        return entries
