# -*- test-case-name: tests.integration.test_page -*-
"""
What a person sees on the chat page, in a real browser against a real
C{twistd tchat}: reconnects nobody notices, conversations, mentions and
notifications, a readable log, settings and themes, keyboard use, and
axe-core's accessibility checks (see docs/page.md).

Each test runs its browser side on a worker thread, as
L{tests.integration.test_browser} does; every wait has a timeout.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tchat.palette import PALETTE
from tests.integration.browser import (
    ChatPage,
    in_browser,
    on_reactor,
    require_axe,
    require_browser,
)
from tests.integration.server import (
    GRACEFUL_TAP_INI,
    LOOPBACK,
    MOTD,
    TAP_INI,
    ChatClient,
    TchatServer,
    async_test,
    connect,
    start_server,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser

WEB = f"tcp:0:interface={LOOPBACK}"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
ACCOUNTS_INI = GRACEFUL_TAP_INI + "\n[accounts]\nhash_memory = 8192\nhash_time = 1\n"
"""A shipped reconnect grace, and cheap password hashing: the tests check
the page, not Argon2."""


def url_of(server: TchatServer) -> str:
    return f"http://{LOOPBACK}:{server.web_port}/"


def texts(page: ChatPage, selector: str) -> list[str]:
    """The text of each element C{selector} finds, in order."""
    found: list[str] = page.locator(selector).all_text_contents()
    return found


def arrive(
    browser: Browser, server: TchatServer, name: str, **options: Any
) -> ChatPage:
    """A new page on C{server}, welcomed, with the nick C{name}."""
    page = ChatPage(browser, url_of(server), name, **options)
    page.wait_welcomed()
    page.set_nick(name)
    return page


def hide(page: ChatPage, hidden: bool) -> None:
    """Hide the page's tab (or show it again), as switching tabs does."""
    page.page.evaluate("(hidden) => window.tchatSetHidden(hidden)", hidden)


def no_script_errors(*pages: ChatPage) -> None:
    for page in pages:
        assert page.errors == [], f"{page.name}: script errors {page.errors}"
        assert page.dialogs == [], f"{page.name}: dialogs {page.dialogs}"


STATIC = Path(__file__).resolve().parents[2] / "tchat" / "static"


def luminance(colour: str) -> float:
    """WCAG 2 relative luminance of C{#rrggbb}."""
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (
        c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels
    )
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two C{#rrggbb} colours."""
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


class NickColourTests(SynchronousTestCase):
    """
    The page's table of nick colours against the server's palette and the
    page's backgrounds (no browser: axe-core sees only the nicks on
    screen, this sees every colour).
    """

    def test_every_palette_colour_readable_in_both_themes(self) -> None:
        """
        Every colour of the server's palette has a light-theme and a
        dark-theme value in chat.js, each at least WCAG AA (4.5:1) against
        every background of its theme a nick is shown on: the log, the
        side panels, a dialog, a mention's highlight.
        """
        script = (STATIC / "chat.js").read_text(encoding="utf-8")
        table = re.search(r"const NICK_COLOURS = \{(.*?)\n  \};", script, re.S)
        assert table is not None
        pairs = {
            name: (light, dark)
            for name, light, dark in re.findall(
                r'"?([a-z-]+)"?: \["(#[0-9a-f]{6})", "(#[0-9a-f]{6})"\]', table.group(1)
            )
        }
        self.assertEqual(sorted(PALETTE), sorted(pairs))
        css = (STATIC / "chat.css").read_text(encoding="utf-8")
        themes: tuple[list[str], list[str]] = ([], [])
        for variable in ("bg", "panel", "raised", "mention-soft"):
            found = re.search(
                rf"--{variable}: light-dark\((#[0-9a-f]{{6}}), (#[0-9a-f]{{6}})\);", css
            )
            assert found is not None, variable
            themes[0].append(found.group(1))
            themes[1].append(found.group(2))
        poor = [
            f"{name} {colour} on {background}: {contrast(colour, background):.2f}"
            for name, colours in pairs.items()
            for colour, backgrounds in zip(colours, themes, strict=True)
            for background in backgrounds
            if contrast(colour, background) < 4.5
        ]
        self.assertEqual(poor, [], json.dumps(poor, indent=1))


class PageTests(TestCase):
    """
    The chat page's features, one real server per test.
    """

    timeout = 90

    async def _start(
        self, ini: str = TAP_INI, nicks: tuple[str, ...] = ("carol",)
    ) -> tuple[TchatServer, list[ChatClient]]:
        require_browser()
        server = await start_server(self, ini, web=WEB)
        clients = []
        for nick in nicks:
            # A newcomer is announced once settled: by its first line.
            client = await connect(self, server.port, nick, welcome=False)
            client.say(f"/nick {nick}")
            client.say("/color off")
            await client.wait_for(b"*** colours are off\r\n")
            await client.sync()
            client.nick = nick
            clients.append(client)
        return server, clients

    # -- 1. reconnects nobody notices -----------------------------------------

    @async_test
    async def test_reload_nobody_notices(self) -> None:
        """
        With the shipped reconnect grace, a page reloaded (here: left, and
        opened again in the same tab, so that a line is said while it is
        away) is the same session: the same nick, colour and rooms, the
        line it missed shown once under "New since you left", no MOTD and
        no welcome line, its private conversation there again with the
        message that came meanwhile as new; and nobody else (a telnet user,
        another page) sees anything of it.
        """
        server, (carol,) = await self._start(GRACEFUL_TAP_INI)
        await deferToThread(in_browser, self._reload, server, carol)

    def _reload(self, browser: Browser, server: TchatServer, carol: ChatClient) -> None:
        from playwright.sync_api import expect

        bob = arrive(browser, server, "bob")
        alice = arrive(browser, server, "alice")
        alice.page.fill("#join-room", "#dev")
        alice.page.press("#join-room", "Enter")
        expect(alice.locator("#room-name")).to_have_text("#dev")
        alice.show_room("#lobby")
        alice.say_confirmed("before", "#lobby")
        colour = alice.locator("#messages .msg-own .nick").last.evaluate(
            "(n) => getComputedStyle(n).color"
        )
        on_reactor(carol.wait_for, "] <alice> before\r\n")
        bob.expect_message("alice", "web", "before")
        bob_lines = len(texts(bob, "#messages .msg"))
        on_reactor(carol.say, "/msg alice psst")
        conv = alice.locator('#conversations [data-nick="carol"]')
        expect(conv.locator(".unread")).to_have_text("1")

        alice.page.goto("about:blank")
        on_reactor(carol.say, "said while you were away")
        bob.expect_message("carol", "telnet", "said while you were away")
        on_reactor(carol.say, "/msg alice and one more")
        on_reactor(carol.wait_for, "-> *alice* and one more\r\n")
        alice.page.goto(url_of(server))
        alice.expect_state("open")
        expect(alice.locator("#nick")).to_have_value("alice")
        expect(alice.locator("#room-name")).to_have_text("#lobby")
        expect(alice.locator('#rooms [data-room="#dev"]')).to_have_attribute(
            "data-joined", "true"
        )
        alice.expect_message("carol", "telnet", "said while you were away")
        marker = alice.locator("#unread-marker + .msg .text")
        expect(marker).to_have_text("said while you were away")
        alice.say_confirmed("after", "#lobby")
        own = alice.locator("#messages .msg-own .nick").last
        self.assertEqual(own.evaluate("(n) => getComputedStyle(n).color"), colour)
        self.assertEqual(
            texts(alice, "#messages .msg-user .text").count("said while you were away"),
            1,
        )
        expect(alice.locator('#messages .msg[data-event="welcome"]')).to_have_count(0)
        expect(alice.locator("#messages")).not_to_contain_text(MOTD[0])
        # The conversation this tab showed is there again, with what came
        # while away as its one unread line.
        expect(conv.locator(".unread")).to_have_text("1")
        conv.locator("button").click()
        expect(alice.locator("#messages .msg-private .text")).to_have_text(
            ["psst", "and one more"]
        )
        expect(alice.locator("#unread-marker + .msg .text")).to_have_text(
            "and one more"
        )
        alice.show_room("#lobby")

        # Nobody saw alice go or come back: only what she said.
        heard = on_reactor(carol.sync)
        self.assertEqual(re.sub(rb"\[\d\d:\d\d\] ", b"", heard), b"<alice> after\r\n")
        bob.expect_message("alice", "web", "after")
        expect(bob.locator("#messages .msg")).to_have_count(bob_lines + 2)
        no_script_errors(alice, bob)

    @async_test
    async def test_new_tab_takes_over(self) -> None:
        """
        A logged-in user opening the chat in a new tab (no resume code, a
        kept login token) continues the same session there, without the
        MOTD; the old tab says calmly that the chat went on elsewhere and
        does not reconnect by itself until its "Reconnect here" is pressed,
        which takes the session back.  A telnet user sees none of it.
        """
        server, (carol,) = await self._start(ACCOUNTS_INI)
        await deferToThread(in_browser, self._new_tab, server, carol)

    def _new_tab(
        self, browser: Browser, server: TchatServer, carol: ChatClient
    ) -> None:
        from playwright.sync_api import expect

        alice = arrive(browser, server, "alice")
        alice.say("/register correct horse battery")
        expect(alice.locator("#account")).to_have_text("alice")
        on_reactor(carol.sync)

        tab = ChatPage(browser, url_of(server), "alice", context=alice.context)
        tab.expect_state("open")
        expect(tab.locator("#nick")).to_have_value("alice")
        expect(tab.locator("#account")).to_have_text("alice")
        expect(tab.locator("#messages")).not_to_contain_text(MOTD[0])

        expect(alice.locator("#notice")).to_be_visible()
        expect(alice.locator("#notice-reconnect")).to_be_visible()
        alice.expect_state("elsewhere")
        tab.say_confirmed("from the new tab", "#lobby")
        on_reactor(carol.wait_for, "] <alice> from the new tab\r\n")
        states = alice.states()
        self.assertEqual(states[-1], "elsewhere")
        self.assertEqual(alice.page.evaluate("window.tchatSockets.length"), 1)

        alice.locator("#notice-reconnect").click()
        alice.expect_state("open")
        expect(alice.locator("#notice")).to_be_hidden()
        expect(alice.locator("#nick")).to_have_value("alice")
        tab.expect_state("elsewhere")
        alice.say_confirmed("back in the first tab", "#lobby")
        on_reactor(carol.wait_for, "] <alice> back in the first tab\r\n")
        heard = on_reactor(carol.sync)
        self.assertNotIn(b"***", heard, "carol saw no one come or go")
        no_script_errors(alice, tab)

    @async_test
    async def test_comes_back_by_name(self) -> None:
        """
        Someone who chose a nick, quit, and opens the chat again later (a
        new session: no code, no login) arrives under that nick: the others
        see "zed joined #lobby" and no guest renamed, and the page shows
        presence lines without the door.
        """
        server, (carol,) = await self._start(GRACEFUL_TAP_INI)
        await deferToThread(in_browser, self._by_name, server, carol)

    def _by_name(
        self, browser: Browser, server: TchatServer, carol: ChatClient
    ) -> None:
        from playwright.sync_api import expect

        first = arrive(browser, server, "zed")
        on_reactor(carol.wait_for, "(web) is now known as zed\r\n")
        first.say("/quit")
        on_reactor(carol.wait_for, "*** zed (web) quit\r\n")
        on_reactor(carol.sync)
        again = ChatPage(browser, url_of(server), "zed again", context=first.context)
        expect(again.locator("#nick")).to_have_value("zed")
        on_reactor(carol.wait_for, "*** zed (web) joined #lobby\r\n")
        heard = on_reactor(carol.sync)
        self.assertNotIn(b"known as", heard)
        self.assertNotIn(b"guest-", heard)
        on_reactor(carol.say, "/nick carla")
        line = again.locator('#messages .msg[data-event="nick"]').last
        expect(line).to_have_text(re.compile(r"carol is now known as carla$"))
        no_script_errors(again)

    @async_test
    async def test_big_room(self) -> None:
        """
        In a big room (more than C{[limits] big_room} members, two here)
        comings and goings reach everyone in one summary a period: the
        page's member list has exactly who is there, one line on the page
        and one on telnet say who came and went.
        """
        ini = TAP_INI.replace(
            "joins_per_minute = 0\n",
            "joins_per_minute = 0\nbig_room = 2\nbig_room_summary = 0.5\n",
        )
        server, clients = await self._start(ini, ("carol", "dave", "erin"))
        await deferToThread(in_browser, self._big_room, server, clients)

    def _big_room(
        self, browser: Browser, server: TchatServer, clients: list[ChatClient]
    ) -> None:
        from playwright.sync_api import expect

        carol, dave, _ = clients
        page = arrive(browser, server, "zoe")
        page.expect_members("carol", "dave", "erin", "zoe")
        on_reactor(dave.say, "/quit")
        fred = on_reactor(connect, self, server.port, "fred", welcome=False)
        on_reactor(fred.say, "/nick fred")
        page.expect_members("carol", "erin", "fred", "zoe")
        summary = page.locator('#messages .msg[data-event="crowd"]')
        expect(summary.filter(has_text="left (dave)")).to_have_count(1)
        on_reactor(carol.wait_for, re.compile(rb"\*\*\* .*left \(dave\); 4 here"))
        no_script_errors(page)

    # -- 2 and 3. conversations, mentions, notifications ---------------------

    @async_test
    async def test_conversations_mentions_notifications(self) -> None:
        """
        A private message opens a conversation in the sidebar with an
        unread count, never a line in a room's log; the conversation shows
        it under "New since you left", and what alice types there goes to
        carol privately.  A room that talked while alice was in the
        conversation has an unread count and the marker.  With the tab
        hidden and notifications switched on, a mention and a private
        message each add to the title's count and show a desktop
        notification; the mention is highlighted, counted, and listed in
        the Mentions view, whose entry leads back to the room.
        """
        server, (carol,) = await self._start()
        await deferToThread(in_browser, self._conversations, server, carol)

    def _conversations(
        self, browser: Browser, server: TchatServer, carol: ChatClient
    ) -> None:
        from playwright.sync_api import expect

        alice = arrive(browser, server, "alice")
        bob = arrive(browser, server, "bob")
        on_reactor(carol.say, "/msg alice psst, a secret")
        conv = alice.locator('#conversations [data-nick="carol"]')
        expect(conv.locator(".unread")).to_have_text("1")
        expect(alice.locator("#messages .msg-private")).to_have_count(0)
        conv.locator("button").click()
        expect(alice.locator("#room-name")).to_have_text("carol")
        expect(alice.locator("#unread-marker + .msg .text")).to_have_text(
            "psst, a secret"
        )
        expect(conv.locator(".unread")).to_have_count(0)
        alice.say("a secret back")
        on_reactor(carol.wait_for, re.compile(rb"\*alice\* a secret back\r\n"))
        expect(
            alice.locator("#messages .msg-outgoing:not(.msg-pending)")
        ).to_have_count(1)

        # #lobby talks while alice reads the conversation.
        bob.say("one")
        bob.say("two")
        lobby = alice.locator('#rooms [data-room="#lobby"] .unread')
        expect(lobby).to_have_text("2")
        alice.show_room("#lobby")
        expect(alice.locator("#unread-marker + .msg .text")).to_have_text("one")
        expect(lobby).to_have_count(0)
        expect(bob.locator("#messages .msg-private")).to_have_count(0)

        # Away from the tab, with notifications on.
        alice.locator("#open-settings").click()
        alice.locator("#set-notify").check()
        alice.page.keyboard.press("Escape")
        expect(alice.locator("#settings-panel")).to_be_hidden()
        hide(alice, True)
        bob.say("alice: lunch at noon?")
        expect(alice.page).to_have_title("(1) tchat")
        on_reactor(carol.say, "/msg alice are you there?")
        expect(alice.page).to_have_title("(2) tchat")
        notes = alice.page.evaluate("window.tchatNotes")
        self.assertEqual(
            [n["body"] for n in notes], ["alice: lunch at noon?", "are you there?"]
        )
        mention = alice.locator("#messages .msg-mention")
        expect(mention.locator(".text")).to_have_text("alice: lunch at noon?")
        expect(alice.locator("#mention-count")).to_have_text("1")
        hide(alice, False)
        expect(alice.page).to_have_title("tchat")

        alice.locator("#open-mentions").click()
        entries = alice.locator("#mention-list li")
        expect(entries).to_have_count(1)
        expect(entries.locator(".text")).to_have_text("alice: lunch at noon?")
        expect(entries.locator(".mention-room")).to_have_text("#lobby")
        expect(alice.locator("#mention-count")).to_be_hidden()
        entries.locator("button").click()
        expect(alice.locator("#mentions-panel")).to_be_hidden()
        expect(alice.locator("#room-name")).to_have_text("#lobby")

        # A member's name starts a conversation.
        alice.locator('#members [data-name="bob"] button').click()
        expect(alice.locator("#room-name")).to_have_text("bob")
        expect(alice.locator("#message")).to_be_focused()
        alice.say("just between us")
        expect(bob.locator('#conversations [data-nick="alice"] .unread')).to_have_text(
            "1"
        )
        no_script_errors(alice, bob)

    # -- 4. a readable log ------------------------------------------------------

    @async_test
    async def test_readable_log(self) -> None:
        """
        Lines in a row from one person are grouped (the nick shown once),
        and no line carries a door badge (the nick's title names the door;
        the member list shows it).  Joins, leaves and quits can be hidden
        in the settings, which a reload remembers.  /help opens the help
        panel instead of filling the log; /history 2 lists the two latest
        lines; /msg opens its conversation; an error shows next to the
        composer, not in the log.  The log is a polite live region, and
        lines that are not news (the join's replay) go in unannounced.  A
        12-hour clock is a setting too.
        """
        server, (carol, dave) = await self._start(nicks=("carol", "dave"))
        for text in ("early 1", "early 2"):
            carol.say(text)
        await carol.sync()
        await deferToThread(in_browser, self._readable, server, carol, dave)

    def _readable(
        self, browser: Browser, server: TchatServer, carol: ChatClient, dave: ChatClient
    ) -> None:
        from playwright.sync_api import expect

        alice = arrive(browser, server, "alice")
        for text in ("one", "two", "three"):
            on_reactor(carol.say, text)
        alice.expect_message("carol", "telnet", "three")
        lines = alice.locator("#messages .msg-user")
        grouped = lines.evaluate_all(
            "(ns) => ns.map((n) => [n.querySelector('.text').textContent,"
            " n.classList.contains('msg-cont')])"
        )
        self.assertEqual(
            grouped,
            [
                ["early 1", False],
                ["early 2", True],
                ["one", False],
                ["two", True],
                ["three", True],
            ],
        )
        expect(alice.locator("#messages .badge")).to_have_count(0)
        expect(alice.locator("#members .badge")).to_have_count(3)

        # Live region: the replay went in unannounced, live lines politely.
        log = alice.locator("#messages")
        expect(log).to_have_attribute("role", "log")
        expect(log).to_have_attribute("aria-live", "polite")
        on_reactor(carol.say, "four")
        alice.expect_message("carol", "telnet", "four")
        live = {e["text"]: e["live"] for e in alice.page.evaluate("window.tchatLive")}
        self.assertEqual((live["early 1"], live["four"]), ("off", "polite"))

        # A newcomer who names themselves at once reads as one line.
        erin = on_reactor(connect, self, server.port, "erin")
        on_reactor(erin.set_nick, "erin")
        joined = alice.locator('#messages .msg-presence[data-who="erin"]')
        expect(joined).to_have_text(re.compile(r"erin joined #lobby$"))
        renames = alice.locator('#messages .msg[data-event="nick"]')
        expect(renames.filter(has_text="erin")).to_have_count(0)

        # Joins and quits, shown, then hidden by a setting that stays.
        on_reactor(dave.say, "/quit bye")
        presence = alice.locator("#messages .msg-presence")
        expect(presence.last).to_have_text(re.compile(r"dave quit \(bye\)$"))
        alice.locator("#open-settings").click()
        alice.locator("#set-presence").uncheck()
        alice.locator('#settings-panel input[name="clock"][value="12"]').check()
        alice.page.keyboard.press("Escape")
        expect(presence.last).to_be_hidden()
        expect(alice.locator("#messages .msg-user .time").last).to_have_text(
            re.compile(r"^\[\d{1,2}:\d\d [AP]M\]$")
        )

        # Commands typed in the page: each answers where it is seen.
        alice.say("/help")
        expect(alice.locator("#help-panel")).to_be_visible()
        expect(alice.locator("#help-commands")).to_contain_text("/nick")
        alice.page.keyboard.press("Escape")
        expect(alice.locator("#help-panel")).to_be_hidden()
        expect(alice.locator('#messages .msg[data-event="help"]')).to_have_count(0)

        alice.say("/history 2")
        listed = alice.locator('#messages .msg[data-event="history"] li .text')
        expect(listed).to_have_text(["three", "four"])

        alice.say("/frobnicate")
        error = alice.locator("#composer-error")
        expect(error).to_be_visible()
        expect(error).to_contain_text("frobnicate")
        expect(alice.locator("#messages .msg-error")).to_have_count(0)

        alice.say("/msg carol hello there")
        expect(alice.locator("#room-name")).to_have_text("carol")
        expect(alice.locator("#messages .msg-outgoing .text")).to_have_text(
            "hello there"
        )
        expect(error).to_be_hidden()
        on_reactor(carol.wait_for, "*alice* hello there")

        alice.page.reload()
        alice.expect_state("open")
        expect(alice.locator("body")).to_have_class(re.compile("hide-presence"))
        alice.locator("#open-settings").click()
        expect(alice.locator("#set-presence")).not_to_be_checked()
        expect(
            alice.locator('#settings-panel input[name="clock"][value="12"]')
        ).to_be_checked()
        no_script_errors(alice)

    # -- 5 and 6. themes, phones, keyboard --------------------------------------

    @async_test
    async def test_themes_phone_keyboard(self) -> None:
        """
        The page follows the system's dark scheme; the theme switch in the
        settings pins light (remembered over a reload) or follows the
        system again.  On a phone the message field takes the width, the
        nick is changed in the settings, and the rooms drawer opens and
        closes with Esc.  By keyboard alone: Enter sends, the arrow keys
        move between rooms, Esc closes panels.
        """
        server, (carol,) = await self._start()
        await deferToThread(in_browser, self._themes, server, carol)

    def _themes(self, browser: Browser, server: TchatServer, carol: ChatClient) -> None:
        from playwright.sync_api import expect

        def background(page: ChatPage) -> str:
            colour: str = page.page.evaluate(
                "() => getComputedStyle(document.body).backgroundColor"
            )
            return colour

        dark, light = "rgb(21, 23, 28)", "rgb(255, 255, 255)"
        alice = arrive(browser, server, "alice", color_scheme="dark", viewport=DESKTOP)
        self.assertEqual(background(alice), dark)
        alice.locator("#open-settings").click()
        alice.locator('#settings-panel input[name="theme"][value="light"]').check()
        self.assertEqual(background(alice), light)
        alice.page.keyboard.press("Escape")
        alice.page.reload()
        alice.expect_state("open")
        self.assertEqual(background(alice), light)
        alice.locator("#open-settings").click()
        alice.locator('#settings-panel input[name="theme"][value="system"]').check()
        self.assertEqual(background(alice), dark)
        alice.page.keyboard.press("Escape")
        expect(alice.locator("#settings-panel")).to_be_hidden()

        # Keyboard only: Enter sends; the arrows move between rooms.
        alice.locator("#message").focus()
        alice.page.keyboard.type("typed, not clicked")
        alice.page.keyboard.press("Enter")
        on_reactor(carol.wait_for, "] <alice> typed, not clicked\r\n")
        alice.locator("#join-room").focus()
        alice.page.keyboard.type("#dev")
        alice.page.keyboard.press("Enter")
        expect(alice.locator("#room-name")).to_have_text("#dev")
        rooms = alice.locator("#rooms li > button")
        expect(rooms).to_have_count(2)
        expect(alice.locator('#rooms button[tabindex="0"]')).to_have_count(1)
        rooms.first.focus()
        alice.page.keyboard.press("ArrowDown")
        expect(rooms.nth(1)).to_be_focused()
        alice.page.keyboard.press("Home")
        expect(rooms.first).to_be_focused()
        alice.page.keyboard.press("Enter")
        expect(alice.locator("#room-name")).to_have_text("#dev")
        alice.locator("#open-help").focus()
        alice.page.keyboard.press("Enter")
        expect(alice.locator("#help-panel")).to_be_visible()
        alice.page.keyboard.press("Escape")
        expect(alice.locator("#help-panel")).to_be_hidden()

        # A phone: the composer has the width; the nick is in the settings.
        bob = arrive(browser, server, "bob", viewport=PHONE, is_mobile=True)
        expect(bob.locator("#nick")).to_be_hidden()
        box = bob.locator("#message").bounding_box()
        assert box is not None
        self.assertGreater(box["width"], PHONE["width"] * 0.7)
        bob.locator("#open-settings").click()
        field = bob.locator("#settings-nick")
        expect(field).to_be_visible()
        expect(field).to_have_value("bob")
        field.fill("robert")
        field.press("Enter")
        on_reactor(carol.wait_for, "bob (web) is now known as robert")
        bob.page.keyboard.press("Escape")
        bob.locator("#toggle-members").click()
        expect(bob.locator('#members [data-name="robert"]')).to_be_visible()
        bob.page.keyboard.press("Escape")
        expect(bob.locator("#toggle-members")).to_be_focused()
        expect(bob.locator("#members-panel")).to_be_hidden()
        bob.locator("#toggle-rooms").click()
        expect(bob.locator('#rooms [data-room="#lobby"]')).to_be_visible()
        bob.page.keyboard.press("Escape")
        expect(bob.locator("#rooms-panel")).to_be_hidden()
        no_script_errors(alice, bob)

    @async_test
    async def test_axe_no_serious_violations(self) -> None:
        """
        axe-core finds no violation of serious or critical impact (colour
        contrast, names, roles, ...) in either theme, on a desktop and a
        phone, with the settings, help and Mentions panels open, in a
        private conversation, and, on the phone, with each drawer open.
        """
        script = require_axe()
        server, (carol, _) = await self._start(nicks=("carol", "dave"))
        await deferToThread(in_browser, self._axe, server, carol, script)

    def _axe(
        self, browser: Browser, server: TchatServer, carol: ChatClient, script: str
    ) -> None:
        from playwright.sync_api import expect

        alice = arrive(browser, server, "alice", bypass_csp=True, viewport=DESKTOP)
        alice.page.fill("#join-room", "#dev")
        alice.page.press("#join-room", "Enter")
        expect(alice.locator("#room-name")).to_have_text("#dev")
        alice.show_room("#lobby")
        for text in ("hello all", "alice: a question for you", "/me waves"):
            on_reactor(carol.say, text)
        on_reactor(carol.say, "/msg alice a private word")
        on_reactor(carol.say, "/topic Release day")
        expect(alice.locator('#conversations [data-nick="carol"]')).to_have_count(1)
        expect(alice.locator("#topic")).to_have_text("Release day")
        alice.say("hi carol")
        alice.say("/help")
        expect(alice.locator("#help-panel")).to_be_visible()
        alice.page.keyboard.press("Escape")

        found: list[str] = []

        def check(what: str) -> None:
            found.extend(alice.axe(script, what))

        def panel(opener: str, dialog: str, what: str) -> None:
            alice.locator(opener).click()
            expect(alice.locator(dialog)).to_be_visible()
            check(what)
            alice.page.keyboard.press("Escape")
            expect(alice.locator(dialog)).to_be_hidden()

        for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            alice.page.set_viewport_size(viewport)  # type: ignore[arg-type]
            for scheme in ("light", "dark"):
                alice.page.emulate_media(color_scheme=scheme)
                where = f"{size}, {scheme}"
                check(f"{where}: #lobby")
                panel("#open-settings", "#settings-panel", f"{where}: settings")
                panel("#open-help", "#help-panel", f"{where}: help")
                panel("#account", "#account-panel", f"{where}: login")
                if size == "phone":
                    for drawer in ("rooms", "members"):
                        alice.locator(f"#toggle-{drawer}").click()
                        expect(alice.locator(f"#{drawer}-panel")).to_be_visible()
                        check(f"{where}: the {drawer} drawer")
                        alice.page.keyboard.press("Escape")
                    alice.locator("#toggle-rooms").click()
                panel("#open-mentions", "#mentions-panel", f"{where}: mentions")
                if size == "phone":
                    alice.locator("#toggle-rooms").click()
                alice.locator('#conversations [data-nick="carol"] button').click()
                expect(alice.locator("#room-name")).to_have_text("carol")
                check(f"{where}: a conversation")
                alice.locator("#leave").click()  # close it: back to #lobby
                expect(alice.locator("#room-name")).to_have_text("#lobby")
                on_reactor(carol.say, "/msg alice and another")
                expect(
                    alice.locator('#conversations [data-nick="carol"]')
                ).to_have_count(1)
        self.assertEqual(found, [], "\n".join(found))
        no_script_errors(alice)
