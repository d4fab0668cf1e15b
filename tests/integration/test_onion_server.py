"""
The onion door for real: C{twistd -n tchat} publishes its doors through a
private Tor network on 127.0.0.1 (L{tests.integration.tornet}), and clients
reach them through the network's client tor.
"""

import base64
import json
import os
import re
import shutil
import stat
import time
from collections.abc import Awaitable, Callable

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.trial.unittest import FailTest, TestCase

from tests.integration.browser import (
    ChatPage,
    launch_chromium,
    on_reactor,
    require_browser,
)
from tests.integration.server import (
    TAP_INI,
    WELCOME,
    ChatClient,
    async_test,
    connect_web,
    global_reactor,
    make_directory,
    start_server,
)
from tests.integration.test_ssh_server import (
    KEYGEN,
    SSH,
    SSHUser,
    telnet_person,
    user_key,
)
from tests.integration.tornet import (
    OneProtocolFactory,
    SocksError,
    TorNetwork,
    close_control,
    connect_control,
    connect_onion,
    fetch_descriptor,
    shared_network,
)
from tests.support import require

PUBLISHED = re.compile(rb"onion service published at ([a-z2-7]{56}\.onion)")

MISSING_AUTH = "onion service missing client authorization"
"""Tor's SOCKS error for a client without the service's client key."""


def launch_tap_ini(network: TorNetwork, directory: str) -> str:
    """
    The default C{tor = launch}, with the network's settings (its
    directory authorities) given to the launched tor through C{torrc}.
    """
    lines = []
    for name, value in network.torrc_options_for_launch().items():
        for one in value if isinstance(value, list) else [value]:
            lines.append(f"{name} {one}")
    torrc = os.path.join(directory, "testnet.torrc")
    with open(torrc, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return TAP_INI + (
        "\n[onion]\n"
        "enabled = true\n"
        "tor = launch\n"
        f"torrc = {torrc}\n"
        "ports = 23 = telnet, 80 = web\n"
        "self_test_interval = 5\n"
    )


def control_tap_ini(network: TorNetwork, clients: str = "") -> str:
    """
    The onion published through the network's service tor's control port.
    """
    return TAP_INI + (
        "\n[onion]\n"
        "enabled = true\n"
        f"tor = tcp:127.0.0.1:{network.service_control_port}\n"
        "ports = 23 = telnet, 80 = web\n"
        f"client_auth = {clients}\n"
    )


class _HTTPGet(Protocol):
    """
    A one-shot HTTP/1.0 client: sends a request, keeps the whole answer.
    """

    def __init__(self, request: bytes) -> None:
        self._request = request
        self.data = b""
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self._request)

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.done.callback(self.data)


async def admin_get(port: int, path: str) -> tuple[int, bytes]:
    """
    GET a path from the admin door on 127.0.0.1.
    """
    page = _HTTPGet(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
    endpoint = TCP4ClientEndpoint(global_reactor(), "127.0.0.1", port)
    await connectProtocol(endpoint, page)
    answer = await page.done
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def onion_get(network: TorNetwork, address: str, path: str) -> bytes:
    """
    GET a path from the onion's web door, through the client tor.
    """
    page = _HTTPGet(f"GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n".encode())
    await connect_onion(
        network.client_socks_port, address, 80, OneProtocolFactory(page)
    )
    return await page.done


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise FailTest(f"{what} did not happen within {timeout} s")
        await deferLater(global_reactor(), 0.5)


class OnionDoorTests(TestCase):
    """
    Telnet and web users reach the same rooms through the onion address.
    """

    timeout = 600

    @async_test
    async def test_round_trip_and_stable_address(self) -> None:
        """
        With the default C{tor = launch}, tchat starts its own tor on the
        network and publishes both doors on one address: a telnet user
        through Tor and a clear-net web user chat both ways, the page loads
        over the onion, the self-test finds the service reachable, the
        admin door reports it and is not reachable through the onion, and
        a restart publishes the same address.
        """
        network = await shared_network()
        directory = make_directory(self)
        web = "tcp:0:interface=127.0.0.1"
        tap_ini = launch_tap_ini(network, directory)
        server = await start_server(self, tap_ini, web=web, directory=directory)
        found = await server.process.output.wait_for(PUBLISHED, 300.0)
        address = found.group(1).decode()
        log = server.log()
        self.assertIn("onion door (telnet) listening on 127.0.0.1:", log)
        self.assertIn("onion: tor bootstrapped 100%", log)
        self.assertIn("onion: descriptor uploaded to", log)

        # A telnet user through Tor, a web user on the clear-net door.
        client = ChatClient("onion telnet")
        self.addCleanup(lambda: ensureDeferred(client.close()))
        await connect_onion(
            network.client_socks_port, address, 23, OneProtocolFactory(client)
        )
        welcome = await client.wait_for(WELCOME, timeout=30.0)
        self.assertIn(
            f"*** You came through the onion service {address}\r\n".encode(),
            welcome.group(0),
        )
        await client.wait_for(b"you joined #lobby", timeout=30.0)
        client.say("/color off")
        await client.wait_for(b"*** colours are off\r\n", timeout=30.0)
        client.say("/nick hidden")
        await client.wait_for(b"now known as hidden\r\n", timeout=30.0)

        assert server.web_port is not None
        browser = await connect_web(self, server.web_port, "clear web")
        await browser.set_nick("clear")
        await client.wait_for(b"(web) is now known as clear\r\n", timeout=30.0)

        client.say("hello from the onion")
        said = await browser.wait_for(type="usermsg", message="hello from the onion")
        self.assertEqual((said["name"], said["door"]), ("hidden", "onion"))
        browser.send({"type": "message", "message": "hello, onion user"})
        await client.wait_for(b"<clear> hello, onion user\r\n", timeout=30.0)
        browser.send({"type": "who"})
        who = await browser.wait_for(type="system", event="who")
        self.assertIn(
            ("hidden", "onion", False, None),
            [
                (m["name"], m["door"], m["registered"], m["away"])
                for m in who["members"]
            ],
        )

        # The page itself, over the onion: relative URLs, no external
        # resources, so it works unchanged in Tor Browser.
        body = await onion_get(network, address, "/")
        self.assertEqual(body.split(b" ", 2)[1], b"200", body[:200])
        html = body.split(b"\r\n\r\n", 1)[1]
        self.assertIn(b"chat.js", html)
        self.assertNotIn(b"http://", html)
        self.assertNotIn(b"https://", html)
        # Operators' pages are on the admin door only, never the onion.
        for path in ("/metrics", "/stats", "/healthz"):
            answer = await onion_get(network, address, path)
            self.assertEqual(answer.split(b" ", 2)[1], b"404", answer[:100])

        # The self-test reaches the service through the launched tor, and
        # the admin door says so.
        async def reachable() -> bool:
            code, body = await admin_get(server.admin_port, "/stats")
            return json.loads(body)["onion"]["self_test"]["reachable"] is True

        await wait_until(reachable, 120.0, "a successful self-test")
        code, body = await admin_get(server.admin_port, "/stats")
        stats = json.loads(body)
        self.assertEqual(stats["onion"]["state"], "up")
        self.assertEqual(stats["onion"]["address"], address)
        self.assertGreater(stats["onion"]["self_test"]["rtt_seconds"], 0)
        self.assertEqual(stats["users_by_door"].get("onion"), 1)
        code, body = await admin_get(server.admin_port, "/healthz")
        self.assertEqual((code, json.loads(body)["checks"]["onion"]), (200, "up"))
        code, body = await admin_get(server.admin_port, "/metrics")
        self.assertIn(b"tchat_onion_up 1.0", body)
        self.assertIn(b"tchat_onion_reachable 1.0", body)
        self.assertIn(
            b"onion: self-test: " + address.encode(), server.process.output.data
        )

        # The key is kept: a restart publishes the same address.
        await client.close()
        await browser.close()
        await server.stop()
        again = await start_server(self, tap_ini, web=web, directory=directory)
        found = await again.process.output.wait_for(PUBLISHED, 300.0)
        self.assertEqual(found.group(1).decode(), address)
        with open(f"{directory}/onion/tchat.address", encoding="ascii") as f:
            self.assertEqual(f.read().strip(), address)

    @async_test
    async def test_client_auth(self) -> None:
        """
        With C{client_auth}, published through a running tor's control
        port: a client tor without the key tchat wrote cannot connect, and
        once given that file's key, it can.
        """
        network = await shared_network()
        server = await start_server(self, control_tap_ini(network, "alice"))
        found = await server.process.output.wait_for(PUBLISHED, 300.0)
        address = found.group(1).decode()
        self.assertIn("only for clients alice", server.log())
        path = os.path.join(server.directory, "onion", "clients", "alice.auth_private")
        with open(path, encoding="ascii") as f:
            onion_id, kind, scheme, private = f.read().strip().split(":")
        self.assertEqual(
            (onion_id + ".onion", kind, scheme), (address, "descriptor", "x25519")
        )
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

        # Wait until the client tor has fetched the descriptor, however long
        # its circuits take on a young network or a loaded machine, rather
        # than give the stranger a fixed few seconds for that.
        control = await connect_control(network.client_control_port)
        self.addCleanup(lambda: ensureDeferred(close_control(control)))
        await fetch_descriptor(control, onion_id)

        # Then tor's answer to the stranger is final: it fetches the
        # descriptor again and cannot decrypt it.  Other errors (a
        # directory or circuit slow on a loaded machine) are retried.
        stranger = ChatClient("no key")
        self.addCleanup(lambda: ensureDeferred(stranger.close()))
        with self.assertRaises(SocksError) as caught:
            await connect_onion(
                network.client_socks_port,
                address,
                23,
                OneProtocolFactory(stranger),
                final=(MISSING_AUTH,),
            )
        self.assertEqual(str(caught.exception), MISSING_AUTH)
        self.assertFalse(stranger.connected)
        self.assertNotIn(b"Welcome", bytes(stranger.received.data))

        # The file has the key in base32; the control command takes base64.
        raw = base64.b32decode(private + "=" * (-len(private) % 8))
        await control.protocol.queue_command(
            f"ONION_CLIENT_AUTH_ADD {onion_id} "
            f"x25519:{base64.b64encode(raw).decode('ascii')}"
        )
        self.addCleanup(
            lambda: control.protocol.queue_command(
                f"ONION_CLIENT_AUTH_REMOVE {onion_id}"
            )
        )
        alice = ChatClient("alice")
        self.addCleanup(lambda: ensureDeferred(alice.close()))
        await connect_onion(
            network.client_socks_port, address, 23, OneProtocolFactory(alice)
        )
        await alice.wait_for(WELCOME, timeout=30.0)

    @async_test
    async def test_ssh_through_tor(self) -> None:
        """
        C{22 = ssh} among the onion's ports: the real OpenSSH client,
        through the client tor's SOCKS port, logs in with its key and
        chats with a clear-net telnet user, who sees it come by onion;
        the host key it is shown is the one the log names.
        """
        require(SSH is not None and KEYGEN is not None, "ssh is missing")
        require(shutil.which("nc") is not None, "nc is missing: netcat-openbsd")
        network = await shared_network()
        tap_ini = control_tap_ini(network).replace(
            "ports = 23 = telnet, 80 = web", "ports = 23 = telnet, 80 = web, 22 = ssh"
        )
        server = await start_server(self, tap_ini)
        found = await server.process.output.wait_for(PUBLISHED, 300.0)
        address = found.group(1).decode()
        logged = re.search(r"ssh host key \S+: (SHA256:\S+)", server.log())
        assert logged is not None, server.log()
        self.assertIn("ssh on port 22", server.log())

        control = await connect_control(network.client_control_port)
        self.addCleanup(lambda: ensureDeferred(close_control(control)))
        await fetch_descriptor(control, address.removesuffix(".onion"))

        # A first connection through Tor waits for the circuits however
        # long a loaded machine takes (connect_onion retries until then).
        probe = ChatClient("probe")
        self.addCleanup(lambda: ensureDeferred(probe.close()))
        await connect_onion(
            network.client_socks_port, address, 23, OneProtocolFactory(probe)
        )
        await probe.wait_for(WELCOME, timeout=60.0)
        bob = await telnet_person(self, server, "bob")
        key = await user_key(self, "alice")
        proxy = f"ProxyCommand=nc -X 5 -x 127.0.0.1:{network.client_socks_port} %h %p"
        alice = SSHUser(
            self,
            server,
            "alice",
            key,
            host=address,
            port=22,
            extra=("-o", proxy),
            connect_timeout=120,
        )
        await alice.wait_for(b"you are now known as alice", timeout=120.0)
        await bob.wait_for(b"(onion) is now known as alice\r\n", timeout=30.0)
        alice.type(b"hello over tor\r")
        await bob.wait_for(b"<alice> hello over tor\r\n", timeout=30.0)
        bob.say("hi alice")
        await alice.wait_for(b"<bob> hi alice", timeout=30.0)
        bob.say("/who")
        await bob.wait_for(b"alice (onion)", timeout=30.0)

    @async_test
    async def test_page_in_a_browser_through_tor(self) -> None:
        """
        Headless Chromium with the client tor as its SOCKS proxy (as Tor
        Browser uses its own tor) loads the page from the onion address,
        is welcomed with that address, and chats over the onion's
        WebSocket with a telnet user who also came through Tor; both show
        the onion badge, and the page has no script errors.
        """
        require_browser()
        network = await shared_network()
        server = await start_server(self, control_tap_ini(network))
        found = await server.process.output.wait_for(PUBLISHED, 300.0)
        address = found.group(1).decode()
        client = ChatClient("onion telnet")
        self.addCleanup(lambda: ensureDeferred(client.close()))
        await connect_onion(
            network.client_socks_port, address, 23, OneProtocolFactory(client)
        )
        await client.wait_for(WELCOME, timeout=30.0)
        client.say("/color off")
        await client.wait_for(b"*** colours are off\r\n", timeout=30.0)
        client.say("/nick hidden")
        await client.wait_for(b"now known as hidden\r\n", timeout=30.0)
        await deferToThread(self._browse, network.client_socks_port, address, client)

    def _browse(self, socks_port: int, address: str, client: ChatClient) -> None:
        from playwright.sync_api import expect, sync_playwright

        with sync_playwright() as playwright:
            # Host names go to the proxy: the .onion is resolved by tor.
            proxy = {"server": f"socks5://127.0.0.1:{socks_port}"}
            browser = launch_chromium(playwright, proxy=proxy)
            try:
                page = ChatPage(browser, f"http://{address}/", "torbrowser", "onion")
                page.wait_welcomed()
                expect(page.locator("#messages")).to_contain_text(
                    f"You came through the onion service {address}."
                )
                page.set_nick("torbrowser")
                on_reactor(
                    client.wait_for,
                    b"(onion) is now known as torbrowser\r\n",
                    timeout=30.0,
                )
                page.expect_member("hidden", "onion")
                page.say("hello through tor")
                on_reactor(
                    client.wait_for, b"<torbrowser> hello through tor\r\n", timeout=30.0
                )
                on_reactor(client.say, "hello, onion page")
                page.expect_message("hidden", "onion", "hello, onion page")
                self.assertEqual((page.errors, page.dialogs), ([], []))
            finally:
                browser.close()
