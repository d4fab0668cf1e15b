"""
Take the chat page's pictures in docs/images/, from a real server.

    .venv/bin/python tools/screenshots.py [--out docs/images]

Starts its own C{twistd -n tchat} on free ports of 127.0.0.1 (in a
temporary directory), has three telnet users and two browser pages (the
system's headless Chromium, as the browser tests drive it) talk in a room,
in a second room and privately, takes the pictures from the page of one of
them (desktop 1280x800 and phone 390x844, light and dark), and stops the
server it started.  docs/page.md shows them.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.browser import WAIT_MS, ChatPage, launch_chromium  # noqa: E402
from tests.integration.server import DOOR_LISTENING, LOOPBACK  # noqa: E402

TAP_INI = """\
[server]
name = tchat
motd = Welcome to tchat: telnet, browser and Tor users share these rooms.
    Be kind. Type /help to see what you can do.
default_room = #lobby
"""

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
START_S = 20.0
"""How long the server may take to listen."""


@contextmanager
def tchat_server(directory: str) -> Iterator[tuple[int, int]]:
    """
    Run C{twistd -n tchat} in C{directory} until the block ends.

    @return: Its telnet and web ports.
    """
    config = os.path.join(directory, "tap.ini")
    with open(config, "w", encoding="utf-8") as f:
        f.write(TAP_INI)
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    endpoint = f"tcp:0:interface={LOOPBACK}"
    args = [twistd, "-n", "--pidfile=", "tchat", "--config", config]
    args += ["--telnet", endpoint, "--web", endpoint, "--admin", "none"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log_path = os.path.join(directory, "twistd.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            args, cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        ports: dict[str, int] = {}
        deadline = time.monotonic() + START_S
        while len(ports) < 2:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"tchat did not start; its log:\n{read(log_path)}")
            for match in DOOR_LISTENING.finditer(read(log_path).encode()):
                ports[match.group(1).decode()] = int(match.group(2))
            time.sleep(0.05)
        yield ports["telnet"], ports["web"]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


class Telnet:
    """
    A telnet user, colours off, who waits for what the server says.
    """

    def __init__(self, port: int, nick: str) -> None:
        self.nick = nick
        self.sock = socket.create_connection((LOOPBACK, port), timeout=5)
        self.seen = b""
        self.say("/color off")
        self.wait("colours are off")
        self.say(f"/nick {nick}")
        self.wait(f"you are now known as {nick}")

    def say(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def wait(self, text: str, timeout: float = 5.0) -> None:
        """Read until C{text} has arrived (after what earlier waits read)."""
        deadline = time.monotonic() + timeout
        while text.encode() not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                seen = self.seen[-500:]
                raise SystemExit(f"{self.nick} never saw {text!r}: {seen!r}")
            if select.select([self.sock], [], [], left)[0]:
                data = self.sock.recv(65536)
                if not data:
                    raise SystemExit(f"{self.nick}: the server closed the connection")
                self.seen += data
        self.seen = self.seen.split(text.encode(), 1)[1]

    def close(self) -> None:
        self.sock.close()


def shoot(page: ChatPage, out: Path, name: str, **viewport: Any) -> None:
    if viewport:
        page.page.set_viewport_size(viewport)  # type: ignore[arg-type]
    # Let layout and the scroll position settle; no text cursor, and the
    # mouse over the top bar's empty middle, where nothing lights up.
    page.page.evaluate("document.activeElement && document.activeElement.blur()")
    size = page.page.viewport_size
    assert size is not None
    page.page.mouse.move(size["width"] * 0.4, 4)
    page.page.evaluate(
        "new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))"
    )
    page.page.screenshot(path=str(out / f"{name}.png"))
    print(f"wrote {out / name}.png")


def scenario(browser: Any, web: int, telnet: int, out: Path) -> None:
    from playwright.sync_api import expect

    url = f"http://{LOOPBACK}:{web}/"
    carol, dave = Telnet(telnet, "carol"), Telnet(telnet, "dave")
    alice = ChatPage(browser, url, "alice", viewport=DESKTOP)
    alice.wait_welcomed()
    alice.set_nick("alice")
    bob = ChatPage(browser, url, "bob", viewport=DESKTOP)
    bob.wait_welcomed()
    bob.set_nick("bob")
    for user in (carol, dave):
        user.say("/join #dev")
        user.wait("you joined #dev")
        user.say("/join #lobby")
        user.wait("now talking in #lobby")
    alice.page.fill("#join-room", "#dev")
    alice.page.press("#join-room", "Enter")
    expect(alice.locator("#room-name")).to_have_text("#dev", timeout=WAIT_MS)
    alice.show_room("#lobby")
    carol.say("/topic Release day: 2.0 ships at 16:00")
    carol.wait("set the topic")

    lines: list[tuple[Telnet | ChatPage, str]] = [
        (carol, "morning all"),
        (carol, "the build is green again"),
        (carol, "it was a test that slept instead of waiting for the page"),
        (bob, "nice, that one bit me twice last week"),
        (dave, "/me puts the kettle on"),
        (bob, "@carol did the changelog make it in?"),
        (carol, "yes, one line per change, as usual"),
        (dave, "alice: can you read the release notes before four?"),
    ]
    for who, text in lines:
        if isinstance(who, ChatPage):
            who.say_confirmed(text, "#lobby")
        else:
            who.say(text)
            shown = text.removeprefix("/me ")
            expect(alice.locator("#messages .msg .text").last).to_have_text(
                shown, timeout=WAIT_MS
            )
    erin = Telnet(telnet, "erin")
    alice.expect_member("erin", "telnet")
    erin.say("hi! first day here, where do bugs go?")
    expect(alice.locator("#messages .msg .text").last).to_have_text(
        "hi! first day here, where do bugs go?", timeout=WAIT_MS
    )

    # Elsewhere: #dev talks, dave writes privately.
    carol.say("/join #dev")
    carol.wait("now talking in #dev")
    carol.say("deploy script is ready for review")
    carol.say("and the staging box is up")
    dave.say("/msg alice are you around for a quick call after lunch?")
    conversation = alice.locator('#conversations [data-nick="dave"] .unread')
    expect(conversation).to_have_text("1", timeout=WAIT_MS)
    expect(alice.locator('#rooms [data-room="#dev"] .unread')).to_have_text(
        "2", timeout=WAIT_MS
    )

    alice.page.emulate_media(color_scheme="light")
    shoot(alice, out, "desktop-light")
    alice.page.emulate_media(color_scheme="dark")
    shoot(alice, out, "desktop-dark")

    # The conversation with dave, answered.
    alice.locator('#conversations [data-nick="dave"] button').click()
    expect(alice.locator("#room-name")).to_have_text("dave", timeout=WAIT_MS)
    alice.say("sure, after two works for me")
    dave.wait("sure, after two works for me")
    dave.say("/msg alice great, I'll call you then")
    expect(alice.locator("#messages .msg-private .text").last).to_have_text(
        "great, I'll call you then", timeout=WAIT_MS
    )
    alice.page.emulate_media(color_scheme="light")
    shoot(alice, out, "conversation-light")

    alice.show_room("#lobby")
    shoot(alice, out, "phone-light", **PHONE)
    alice.page.emulate_media(color_scheme="dark")
    shoot(alice, out, "phone-dark")
    alice.locator("#toggle-rooms").click()
    expect(alice.locator("#rooms-panel")).to_be_visible(timeout=WAIT_MS)
    alice.page.wait_for_function(  # the drawer has slid in
        "() => document.getElementById('rooms-panel').getBoundingClientRect().left >= 0"
    )
    shoot(alice, out, "phone-rooms-dark")
    for user in (carol, dave, erin):
        user.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"))
    options = parser.parse_args()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with (
        tempfile.TemporaryDirectory(prefix="tchat-shots-") as directory,
        tchat_server(directory) as (telnet, web),
        sync_playwright() as pw,
    ):
        browser = launch_chromium(pw)
        try:
            scenario(browser, web, telnet, out)
        finally:
            browser.close()


if __name__ == "__main__":
    main()
