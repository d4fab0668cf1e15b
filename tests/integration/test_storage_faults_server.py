# -*- test-case-name: tests.integration.test_storage_faults_server -*-
"""
The history's disk failing under a running server: a real C{twistd tchat}
on 127.0.0.1 with its SQLite history in the test's directory, a real
WebSocket client sending messages with C{sync = full}, and real faults made
to the files under it:

  - a full disk: a tmpfs of 1 MiB mounted for the test (root only), filled
    to the last byte;
  - the database's shared-memory file made immutable (C{chattr +i}), as
    made read-only, which crashed tchat with SIGBUS while SQLite mapped it;
    and the WAL file made immutable, so that the database cannot be
    written;
  - the database file deleted.

For each: a log line that names the fault in words, C{/healthz} answering
503 "degraded" with a C{history} check, the sender of a message that could
not be kept told so with its C{client_id}, and a SIGTERM (by the server's
PID) after which the server exits, with status 0, within a bounded time,
having logged what was lost.  Every wait is bounded; the mount and the
immutable flags are undone by the test's cleanup.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import time
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import FailTest, TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from tchat.history import CLOSE_TIMEOUT
from tests.integration.server import (
    LOOPBACK,
    TAP_INI,
    TchatServer,
    WebClient,
    async_test,
    connect_web,
    global_reactor,
    log_line,
    make_directory,
    run_process,
    start_server,
)
from tests.support import require

WEB = "tcp:0:interface=127.0.0.1"
"""The C{--web} endpoint of every test server here."""

HTTP_TIMEOUT = 10.0
"""Seconds any one request to the admin door may take, body included."""

STOP_BOUND = CLOSE_TIMEOUT + 10.0
"""Seconds a SIGTERM may take to end the server: the store's bounded
retries, the users' connections closing, and slack for a slow machine."""

DISK_SIZE = "1m"
"""The size of the tmpfs that plays the full disk."""


def faulty_ini(path: str) -> str:
    """
    The test configuration with its history at C{path}, written with
    C{sync = full}: a message is shown (and acknowledged) only once it is
    on disk, so one the disk refuses is reported to its sender.
    """
    return f"{TAP_INI}\n[history]\npath = {path}\nsync = full\n"


async def say(client: WebClient, text: str, client_id: str) -> dict[str, Any]:
    """
    Send a room message with a client id.

    @return: What answered it: the acknowledgement (the sender's own
        C{usermsg}) or an C{error}, either carrying the C{client_id}.
    """
    client.send({"type": "message", "message": text, "client_id": client_id})
    frame: dict[str, Any] = await client.wait_frame(
        lambda f: (
            f.get("client_id") == client_id and f.get("type") in ("usermsg", "error")
        ),
        f"the answer to {client_id}",
        timeout=10.0,
    )
    return frame


async def health(testcase: TestCase, server: TchatServer) -> tuple[int, Any]:
    """
    GET C{/healthz} from the server's admin door, on a fresh connection.

    @return: The HTTP status and the decoded JSON body.
    """
    pool = HTTPConnectionPool(global_reactor(), persistent=False)
    testcase.addCleanup(pool.closeCachedConnections)
    agent = Agent(global_reactor(), pool=pool, connectTimeout=5)
    url = f"http://{LOOPBACK}:{server.admin_port}/healthz".encode("ascii")
    asked: Deferred[IResponse] = agent.request(b"GET", url, Headers())
    response = await asked.addTimeout(HTTP_TIMEOUT, global_reactor())
    read: Deferred[bytes] = readBody(response)
    body = await read.addTimeout(HTTP_TIMEOUT, global_reactor())
    try:
        return response.code, json.loads(body)
    except ValueError:
        raise FailTest(f"/healthz answered {response.code} {body!r}") from None


def degraded(check: str) -> tuple[int, Any]:
    """
    What C{/healthz} answers while the history store reports C{check}.
    """
    return 503, {"status": "degraded", "checks": {"hub": "ok", "history": check}}


def fill(folder: str) -> None:
    """
    Fill the file system of C{folder} to the last byte with a file of its
    own, as a disk fills up: every later write to it fails with ENOSPC.
    """
    chunk = b"\0" * 4096
    with open(os.path.join(folder, "filler"), "ab", buffering=0) as f:
        for _ in range(1 << 20):
            try:
                f.write(chunk)
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    return
                raise
    raise FailTest(f"{folder} did not fill up")


async def mount_tmpfs(testcase: TestCase, folder: str) -> None:
    """
    Mount a tmpfs of L{DISK_SIZE} on C{folder}, unmounted by the test's
    cleanup (after the server, which is started later, has stopped).
    Skips the test (fails it under C{TCHAT_REQUIRE_ALL=1}) where mounting
    is not allowed.
    """
    mount, umount = shutil.which("mount"), shutil.which("umount")
    require(
        os.geteuid() == 0 and mount is not None and umount is not None,
        "a tiny tmpfs as a full disk needs root and mount(8)",
    )
    assert mount is not None and umount is not None
    mounted = await run_process(
        testcase,
        mount,
        [mount, "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0700", "tchat", folder],
        path=folder,
        timeout=10.0,
    )
    require(
        mounted.exit_code == 0, f"cannot mount a tmpfs here: {mounted.output.strip()}"
    )

    async def unmount() -> None:
        done = await run_process(testcase, umount, [umount, folder], path="/")
        if done.exit_code != 0:
            await run_process(testcase, umount, [umount, "-l", folder], path="/")

    testcase.addCleanup(lambda: ensureDeferred(unmount()))


async def immutable(testcase: TestCase, path: str) -> None:
    """
    Make C{path} immutable (C{chattr +i}): not even root may write it, or
    write through a shared mapping of it.  Undone by the test's cleanup.
    Skips the test (fails it under C{TCHAT_REQUIRE_ALL=1}) where the file
    system or the process cannot.
    """
    chattr = shutil.which("chattr")
    require(chattr is not None, "chattr is not on PATH (apt-get install e2fsprogs)")
    assert chattr is not None
    made = await run_process(
        testcase, chattr, [chattr, "+i", path], path="/", timeout=10.0
    )
    require(made.exit_code == 0, f"chattr +i {path} failed: {made.output.strip()}")

    async def undo() -> None:
        await run_process(testcase, chattr, [chattr, "-i", path], path="/")

    testcase.addCleanup(lambda: ensureDeferred(undo()))


class StorageFaultTests(TestCase):
    """
    A running server whose history's disk fails under it.
    """

    async def serve(self, path: str) -> tuple[TchatServer, WebClient]:
        """
        Start a server with its history at C{path}, connect alice on the
        web door and have one message of hers kept, as before any fault.
        """
        server = await start_server(self, faulty_ini(path), web=WEB)
        assert server.web_port is not None
        alice = await connect_web(self, server.web_port, "alice")
        await alice.set_nick("alice")
        ack = await say(alice, "before the fault", "m0")
        self.assertEqual((ack["type"], ack["message"]), ("usermsg", "before the fault"))
        return server, alice

    async def refused(self, server: TchatServer, alice: WebClient, cid: str) -> None:
        """
        A message alice sends now is not kept: she is told, with its
        C{client_id}, and the server is still running.
        """
        answer = await say(alice, f"said during the fault ({cid})", cid)
        self.assertEqual(
            answer,
            {
                "type": "error",
                "code": "not-stored",
                "message": "your message could not be saved, so nobody was shown "
                "it; try again",
                "client_id": cid,
            },
        )
        self.assertFalse(server.process.has_ended, server.log())

    async def stop(self, server: TchatServer, lost: str) -> None:
        """
        SIGTERM the server by its PID: it ends within L{STOP_BOUND} seconds
        with status 0, having logged that it gave up on the writes the disk
        refused, and what they were.
        """
        transport = server.process.transport
        assert transport is not None and transport.pid is not None
        started = time.monotonic()
        os.kill(transport.pid, signal.SIGTERM)
        ended = await server.process.wait_ended(STOP_BOUND)
        took = time.monotonic() - started
        if not ended:
            raise FailTest(
                f"the server still ran {STOP_BOUND} s after SIGTERM:\n{server.log()}"
            )
        self.assertEqual(
            (server.process.exit_code, server.process.signal), (0, None), server.log()
        )
        self.assertLess(took, STOP_BOUND)
        gave_up = re.search(
            r"#critical\] history: stopping: gave up after [\d.]+ s: (.*)",
            server.log(),
        )
        if gave_up is None:
            raise FailTest(f"the server did not log what it lost:\n{server.log()}")
        self.assertIn(lost, gave_up.group(1))

    @async_test
    async def test_disk_full(self) -> None:
        """
        A full disk (a tmpfs filled to the last byte) is logged as "the
        disk is full", not as "cannot rollback" tracebacks; C{/healthz} is
        degraded with C{disk-full}; alice's message is refused with its
        C{client_id}.  Once there is room again her next message is kept
        and C{/healthz} is well.  With the disk full again, SIGTERM ends
        the server within a bounded time (it used to hang), and the log
        names the resume code it could not write.
        """
        disk = os.path.join(make_directory(self), "disk")
        os.mkdir(disk)
        await mount_tmpfs(self, disk)
        server, alice = await self.serve(os.path.join(disk, "tchat.sqlite3"))

        fill(disk)
        await self.refused(server, alice, "m1")
        await log_line(
            server,
            re.compile(
                rb"#error\] history: the disk is full \(database or disk is full\): "
                rb"\d+ changes? waiting; 1 room message not kept, their senders "
                rb"told, retrying up to every 30 s\. Free some space on it\.",
            ),
        )
        self.assertEqual(await health(self, server), degraded("disk-full"))

        os.remove(os.path.join(disk, "filler"))
        ack = await say(alice, "after the fault", "m2")
        self.assertEqual(ack["type"], "usermsg", alice.describe())
        await log_line(
            server,
            re.compile(rb"#info\] history: writes work again after \d+ s of failing"),
        )
        self.assertEqual(
            await health(self, server),
            (200, {"status": "ok", "checks": {"hub": "ok"}}),
        )

        fill(disk)
        await self.stop(
            server,
            "the disk is full (database or disk is full). Lost 1 change that "
            "could not be written: 1 resume code.",
        )

    @async_test
    async def test_shared_memory_and_read_only(self) -> None:
        """
        SQLite keeps no shared-memory file to map: the database is locked
        for tchat alone.  (While it did, making that file immutable, as
        read-only, made the server die with SIGBUS at its next write,
        logging nothing.)  Then the WAL file made immutable: the database
        cannot be written, which the log says naming the file, C{/healthz}
        is degraded with C{not-writable}, alice's message is refused with
        its C{client_id}, and SIGTERM ends the server logging the loss.
        """
        path = os.path.join(make_directory(self), "tchat.sqlite3")
        server, alice = await self.serve(path)
        if os.path.exists(path + "-shm"):
            await immutable(self, path + "-shm")
        for i in range(1, 21):
            ack = await say(alice, f"message {i} " + "x" * 2000, f"s{i}")
            self.assertEqual(ack["type"], "usermsg", alice.describe())
        self.assertFalse(server.process.has_ended, server.log())
        # The database and its WAL, and no -shm file.
        self.assertEqual(
            sorted(os.listdir(os.path.dirname(path))),
            ["tchat.sqlite3", "tchat.sqlite3-wal"],
        )

        await immutable(self, path + "-wal")
        await self.refused(server, alice, "m1")
        await log_line(
            server,
            re.compile(
                rb"#error\] history: the database cannot be written \(disk I/O "
                rb"error; \S+/tchat\.sqlite3-wal is not writable\): ",
            ),
        )
        self.assertEqual(await health(self, server), degraded("not-writable"))
        await self.stop(
            server,
            "tchat.sqlite3-wal is not writable). Lost 1 change that could not "
            "be written: 1 resume code.",
        )

    @async_test
    async def test_deleted(self) -> None:
        """
        The database file deleted under the server is noticed at the next
        write, which is not made into the deleted file: the log says so,
        C{/healthz} is degraded with C{deleted}, alice's message is refused
        with its C{client_id}; SIGTERM ends the server at once, logging
        that the deleted file's history is lost with it.
        """
        path = os.path.join(make_directory(self), "tchat.sqlite3")
        server, alice = await self.serve(path)
        os.unlink(path)
        await self.refused(server, alice, "m1")
        await log_line(
            server,
            re.compile(
                rb"#error\] history: the database file was deleted while tchat "
                rb"runs \(\S+/tchat\.sqlite3\): ",
            ),
        )
        self.assertEqual(await health(self, server), degraded("deleted"))
        await self.stop(
            server,
            "the database file was deleted while tchat runs "
            f"({path}). Lost 1 change that could not be written: 1 resume "
            "code; so is everything the deleted or replaced file held.",
        )
