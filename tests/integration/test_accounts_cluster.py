# -*- test-case-name: tests.integration.test_accounts_cluster -*-
"""
Registered accounts in cluster mode, end to end: a real C{redis-server} on
a free loopback port with no persistence, two real C{twistd -n tchat}
nodes A and B pointed at it, and real telnet clients on each node.

The account lives in Redis, so each node knows it whatever node it was
registered on: a guest on the other node cannot take the nick, private
messages to its offline owner are kept and delivered on whichever node
they log in on, a login on one node closes the owner's connection on the
other, and a node that restarts still knows every account.

Each test starts its own Redis and nodes, as L{tests.integration.test_cluster}
does; what crosses nodes is waited for (bounded by L{CROSS}), never slept
on.  Password hashing is cheap here (C{hash_memory = 1024},
C{hash_time = 1}).
"""

from __future__ import annotations

import re

from twisted.trial.unittest import FailTest, TestCase

from tests.integration.cluster import RedisServer, start_node, until
from tests.integration.server import (
    CHEAP_ACCOUNTS,
    WELCOME,
    ChatClient,
    TchatServer,
    async_test,
    connect,
)

CROSS = 10.0
"""Seconds anything sent through Redis may take to reach another node."""


PASSWORD = "Tr0ub4dor-alice-17"
"""Alice's password."""

ACCOUNT_KEY = "account:allce"
"""The end of alice's account key in Redis (her nick's confusable
skeleton, after the cluster's prefix)."""

CLEAR_TEXT = (
    "*** note: telnet is not encrypted, so your password crossed the network "
    "readable; use the TLS telnet port, the onion service or (soon) SSH to "
    "log in"
)
"""What a plain telnet user is told whenever they send a password."""

REFUSED = "!!! alice is registered; if it is yours, /login alice PASSWORD"
"""What a guest who asks for C{/nick alice} is told."""

LOGGED_IN = "*** you are now known as alice (registered)"

LAST_LOGIN = re.compile(
    rb"\*\*\* You are logged in as alice \(last login \d\d:\d\d\)\r\n"
)
"""A telnet login's confirmation, with the time of the previous login."""

STAMPED = re.compile(r"^\[\d\d:\d\d\] ")
"""A time stamp at the start of a telnet line."""

TAKEN_OVER = "*** Goodbye (logged in as alice from another connection)"
"""What alice's connection is told when she logs in elsewhere."""


# -- helpers ------------------------------------------------------------------


async def redis_and_nodes(
    testcase: TestCase,
) -> tuple[RedisServer, TchatServer, TchatServer]:
    """
    Start a Redis and nodes A and B on it (cheap hashing, no web door),
    and wait until both say they are in the cluster.
    """
    redis = RedisServer(testcase)
    await redis.start()
    a = await start_node(testcase, redis, "a", web=False, extra=CHEAP_ACCOUNTS)
    b = await start_node(testcase, redis, "b", web=False, extra=CHEAP_ACCOUNTS)
    return redis, a, b


def count_lines(client: ChatClient, text: str) -> int:
    """How many lines the client received that end with C{text}."""
    return sum(
        1
        for line in bytes(client.received.data).split(b"\r\n")
        if line.endswith(text.encode())
    )


def lines_with(client: ChatClient, text: str) -> list[str]:
    """The lines the client received that start with C{text}, time
    stamps taken off."""
    return [
        STAMPED.sub("", line)
        for line in bytes(client.received.data).decode().split("\r\n")
        if STAMPED.sub("", line).startswith(text)
    ]


async def guest(testcase: TestCase, node: TchatServer, name: str) -> ChatClient:
    """
    Connect a telnet client (colours off) to C{node} under its guest nick.
    Notices from the other node may come at any point after the join, so
    they are skipped rather than expected in order.
    """
    client = await connect(testcase, node.port, name, welcome=False)
    match = await client.wait_for(WELCOME)
    client.nick = match.group(2).decode()
    client.code = match.group(3).decode()
    await client.wait_for("*** you joined #lobby\r\n")
    client.say("/color off")
    await client.wait_for("*** colours are off\r\n")
    return client


async def user(
    testcase: TestCase,
    node: TchatServer,
    nick: str,
    watchers: list[ChatClient],
) -> ChatClient:
    """
    A telnet client on C{node} that took C{nick}, once each of
    C{watchers} (in #lobby, on either node) has seen it do so.
    """
    client = await guest(testcase, node, nick)
    was = client.nick
    client.say(f"/nick {nick}")
    await client.wait_for(f"*** you are now known as {nick}\r\n", CROSS)
    client.nick = nick
    for watcher in watchers:
        await watcher.wait_for(f"*** {was} (telnet) is now known as {nick}\r\n", CROSS)
    return client


async def register(client: ChatClient) -> None:
    """
    Register C{client}'s nick (alice) with L{PASSWORD}, checking what it is
    told, in order.
    """
    client.say(f"/register {PASSWORD}")
    await client.wait_for(CLEAR_TEXT + "\r\n", CROSS)
    await client.wait_for(
        f"*** you are logged in to the registered nick {client.nick}\r\n", CROSS
    )
    await client.wait_for(
        f"*** {client.nick} is registered to you: nobody else can take it. "
        f"Log in from any door with /login {client.nick} PASSWORD\r\n",
        CROSS,
    )


async def login(client: ChatClient, password: str = PASSWORD) -> None:
    """
    C{/login alice PASSWORD}, which succeeds: the clear-text warning, the
    nick, then the confirmation, in that order (notices from the other node
    may come in between).
    """
    client.say(f"/login alice {password}")
    await client.wait_for(CLEAR_TEXT + "\r\n", CROSS)
    await client.wait_for(LOGGED_IN + "\r\n", CROSS)
    await client.wait_for(LAST_LOGIN, CROSS)
    client.nick = "alice"


async def who(client: ChatClient) -> list[str]:
    """
    C{/who #lobby}: the members as shown ("alice (telnet, registered)"),
    sorted, after checking that the count matches them.
    """
    client.say("/who #lobby")
    match = await client.wait_for(
        re.compile(rb"\*\*\* #lobby \((\d+)\): ([^\r\n]*)\r\n")
    )
    # A member is "nick (door)" or "nick (door, registered)": split at the
    # commas between members, not those inside the parentheses.
    members = sorted(re.findall(r"[^,\s][^,(]* \([^)]*\)", match.group(2).decode()))
    if int(match.group(1)) != len(members):
        raise FailTest(f"{client.name}: /who counts wrong: {match.group(0)!r}")
    return members


async def refused(client: ChatClient) -> None:
    """
    A guest's C{/nick alice} is refused as a registered nick: the next line
    says so (nothing else is going on), and the guest keeps its nick.
    """
    client.say("/nick alice")
    await client.expect_lines(REFUSED, timeout=CROSS)
    members = await who(client)
    if f"{client.nick} (telnet)" not in members:
        raise FailTest(f"{client.name} lost its nick: {members!r}")


async def account_keys(redis: RedisServer, kind: str) -> list[str]:
    """The keys of C{kind} (C{account}, C{offline}...) in Redis, sorted."""
    keys = await redis.command("KEYS", f"*:{kind}:*")
    assert isinstance(keys, list)
    return sorted(keys)


# -- the tests ----------------------------------------------------------------


class AccountClusterTests(TestCase):
    """
    One account, two nodes, one Redis.
    """

    timeout = 60
    maxDiff = None

    @async_test
    async def test_registered_on_a_protected_on_b(self) -> None:
        """
        alice registers on A; B's users see her marked registered (the
        login notice, and C{/who} on B says C{alice (telnet, registered)}),
        and the account is in Redis.  A guest on B asking for C{/nick alice},
        while she is online and after she has quit, is refused with the
        registered message and keeps its guest nick.
        """
        redis, a, b = await redis_and_nodes(self)
        alice = await user(self, a, "alice", [])
        watcher = await guest(self, b, "guest on B")
        await alice.wait_for(f"*** {watcher.nick} (telnet) joined #lobby\r\n", CROSS)
        self.assertEqual(await account_keys(redis, "account"), [])

        await register(alice)
        await watcher.wait_for(
            b"*** alice (telnet, registered) is logged in to the registered "
            b"nick alice\r\n",
            CROSS,
        )
        keys = await account_keys(redis, "account")
        self.assertEqual(len(keys), 1, keys)
        self.assertTrue(keys[0].endswith(":" + ACCOUNT_KEY), keys)
        self.assertNotIn(PASSWORD, await redis.command("GET", keys[0]))
        self.assertEqual(
            await who(watcher),
            sorted(["alice (telnet, registered)", f"{watcher.nick} (telnet)"]),
        )
        await refused(watcher)

        alice.say("/quit")
        await alice.expect_closed()
        await watcher.wait_for(b"*** alice (telnet, registered) quit\r\n", CROSS)
        await refused(watcher)
        self.assertEqual(await who(watcher), [f"{watcher.nick} (telnet)"])
        self.assertEqual(count_lines(watcher, "you are now known as alice"), 0)

    @async_test
    async def test_kept_for_offline_owner_across_nodes(self) -> None:
        """
        alice registers on A and quits.  bob on B sends her a private
        message (he is told it is kept) and says C{alice: look} in #lobby.
        alice logs in on B: she gets the message marked "(while you were
        away)" and the mention, and bob sees her take the nick.  The kept
        message is gone from Redis once delivered, and a second login does
        not get it again.
        """
        redis, a, b = await redis_and_nodes(self)
        alice = await user(self, a, "alice", [])
        carol = await user(self, a, "carol", [alice])
        bob = await user(self, b, "bob", [alice, carol])
        await register(alice)
        await bob.wait_for(b"is logged in to the registered nick alice\r\n", CROSS)
        alice.say("/quit")
        await alice.expect_lines("*** Goodbye (bye)")
        await alice.expect_closed()
        await bob.wait_for(b"*** alice (telnet, registered) quit\r\n", CROSS)

        bob.say("/msg alice hello while you were out")
        await bob.expect_lines(
            "[HH:MM] -> *alice* hello while you were out",
            "*** alice is offline: your message is kept for them until they "
            "log in (for 30d at most)",
            timeout=CROSS,
        )
        self.assertEqual(len(await account_keys(redis, "offline")), 1)
        bob.say("alice: look")
        # On A too: it went through Redis, and is in #lobby's history there.
        await carol.wait_for(b"<bob> alice: look\r\n", CROSS)
        await bob.sync()

        back = await guest(self, b, "alice on B")
        was = back.nick
        await bob.wait_for(f"*** {was} (telnet) joined #lobby\r\n", CROSS)
        await back.sync()
        await login(back)
        await back.expect_lines(
            "[HH:MM] *bob* (while you were away) hello while you were out",
            "*** While you were away you were mentioned:",
            timeout=CROSS,
        )
        self.assertRegex(
            await back.next_line(CROSS), rb"  \[\d\d:\d\d\] #lobby <bob> alice: look"
        )
        await back.expect_lines("*** End of mentions (/mentions shows them again)")
        await bob.wait_for(
            f"*** {was} (telnet) is now known as alice (registered)\r\n", CROSS
        )
        self.assertEqual(await account_keys(redis, "offline"), [])

        # A live message is not marked; logging in again delivers nothing
        # twice.
        bob.say("/msg alice are you there now?")
        await back.wait_for("*bob* are you there now?\r\n", CROSS)
        back.say("/quit")
        await back.expect_closed()
        again = await guest(self, a, "alice again on A")
        await again.sync()
        await login(again)
        # /account reads Redis after the login's read of the kept messages:
        # whatever that read found has been delivered before the answer.
        again.say("/account")
        waiting = await again.wait_for(
            re.compile(rb"offline messages waiting: (\d+) "), CROSS
        )
        self.assertEqual(waiting.group(1), b"0")
        self.assertEqual(count_lines(again, "hello while you were out"), 0)
        self.assertEqual(count_lines(again, "are you there now?"), 0)
        self.assertEqual(count_lines(back, "hello while you were out"), 1)

    @async_test
    async def test_login_on_b_closes_alice_on_a(self) -> None:
        """
        alice is logged in on A; a second client, on B, logs in as alice.
        A's connection is told C{*** Goodbye (logged in as alice from
        another connection)} and is closed; carol on A sees that connection
        quit for that reason and the B client take the nick.  The B client
        is alice: it is never told that it quit, C{/who} on both nodes
        lists it as C{alice (telnet, registered)}, and room lines and
        private messages go both ways under her nick.

        What the users saw is gathered first (waiting only for what comes
        whatever the reasons given) and compared at once, so a failure
        shows every difference.
        """
        _, a, b = await redis_and_nodes(self)
        alice = await user(self, a, "alice", [])
        carol = await user(self, a, "carol", [alice])
        await register(alice)
        await carol.wait_for(b"is logged in to the registered nick alice\r\n")

        other = await guest(self, b, "alice on B")
        was = other.nick
        for client in (alice, carol):
            await client.wait_for(f"*** {was} (telnet) joined #lobby\r\n", CROSS)
        await other.sync()
        await login(other)

        await alice.expect_closed(CROSS)
        renamed = f"*** {was} (telnet) is now known as alice (registered)"
        quit = re.compile(rb"\*\*\* alice \(telnet, registered\) quit[^\r\n]*\r\n")
        await until(
            lambda: (
                f"carol to see alice quit and {was} take the nick:\n"
                f"{carol.received.describe()}"
            ),
            lambda: (
                count_lines(carol, renamed) == 1
                and quit.search(carol.received.data) is not None
            ),
            CROSS,
        )
        # A line carol says now reaches B after everything A said before.
        carol.say("hello alice")
        await other.wait_for(b"<carol> hello alice\r\n", CROSS)
        other.say("it is me, on B")
        await carol.wait_for(b"<alice> it is me, on B\r\n", CROSS)
        carol.say("/msg alice private hi")
        await other.wait_for(b"*carol* private hi\r\n", CROSS)
        other.say("/msg carol private back")
        await carol.wait_for(b"*alice* private back\r\n", CROSS)

        everyone = ["alice (telnet, registered)", "carol (telnet)"]
        seen = {
            "A's alice was told": lines_with(alice, "*** Goodbye"),
            "carol saw alice quit": [
                m.group(0).decode().strip() for m in quit.finditer(carol.received.data)
            ],
            "carol saw the nick taken": count_lines(carol, renamed),
            "B's alice was told it quit": lines_with(other, "*** you quit"),
            "/who on B": await who(other),
            "/who on A": await who(carol),
        }
        self.assertEqual(
            seen,
            {
                "A's alice was told": [TAKEN_OVER],
                "carol saw alice quit": [
                    "*** alice (telnet, registered) quit (logged in from another "
                    "connection)"
                ],
                "carol saw the nick taken": 1,
                "B's alice was told it quit": [],
                "/who on B": everyone,
                "/who on A": everyone,
            },
        )

    @async_test
    async def test_account_outlives_restart_of_b(self) -> None:
        """
        alice registers on B.  B is stopped with SIGTERM (it ends cleanly,
        and alice's connection with it; carol on A sees her go) and started
        again in a fresh directory, so all it knows of alice is in Redis:
        a guest on the new B cannot take her nick, a wrong password is
        refused, and her password logs her in on B, which carol sees.
        carol saw alice leave with B as a registered user: C{*** alice
        (telnet, registered) quit (server shutting down)}.
        """
        redis, a, b = await redis_and_nodes(self)
        carol = await user(self, a, "carol", [])
        alice = await user(self, b, "alice", [carol])
        await register(alice)
        await carol.wait_for(b"is logged in to the registered nick alice\r\n", CROSS)

        await b.stop()
        self.assertEqual(b.process.exit_code, 0, b.log())
        await alice.expect_closed()
        # Checked at the end: here only that she went, whatever the line says.
        went = await carol.wait_for(
            re.compile(rb"\*\*\* alice \(telnet[^)]*\) quit [^\r\n]*\r\n"), CROSS
        )
        self.assertEqual(await who(carol), ["carol (telnet)"])
        self.assertEqual(len(await account_keys(redis, "account")), 1)

        b = await start_node(self, redis, "b", web=False, extra=CHEAP_ACCOUNTS)
        mallory = await guest(self, b, "mallory on B")
        await carol.wait_for(f"*** {mallory.nick} (telnet) joined #lobby\r\n", CROSS)
        await mallory.sync()
        await refused(mallory)
        mallory.say("/login alice not-her-password")
        await mallory.expect_lines(
            CLEAR_TEXT, "!!! wrong nick or password", timeout=CROSS
        )

        back = await guest(self, b, "alice on the new B")
        was = back.nick
        await carol.wait_for(f"*** {was} (telnet) joined #lobby\r\n", CROSS)
        await back.sync()
        await login(back)
        await carol.wait_for(
            f"*** {was} (telnet) is now known as alice (registered)\r\n", CROSS
        )
        self.assertEqual(
            await who(carol),
            sorted(
                [
                    "alice (telnet, registered)",
                    "carol (telnet)",
                    f"{mallory.nick} (telnet)",
                ]
            ),
        )
        self.assertEqual(
            went.group(0),
            b"*** alice (telnet, registered) quit (server shutting down)\r\n",
            "carol saw alice leave with B",
        )
