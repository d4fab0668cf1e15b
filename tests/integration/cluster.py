# -*- test-case-name: tests.integration.test_cluster -*-
"""
Helpers for the cluster tests: a real C{redis-server} on a free loopback
port with no persistence, and real C{twistd -n tchat} nodes pointed at it.

Every process here is one the test started, stopped by its own PID in the
test's cleanup; every wait is bounded in time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.trial.unittest import FailTest, TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from tests.certificates import certificate_pem, key_pem, make_certificate, make_key
from tests.integration.server import (
    LOOPBACK,
    TAP_INI,
    ProcessOutput,
    TchatServer,
    global_reactor,
    start_server,
)
from tests.support import require

WEB = "tcp:0:interface=127.0.0.1"
"""The C{--web} endpoint of a node that has a web door."""

NODE_TIMEOUT = 3
"""The C{[cluster] node_timeout} of test nodes: short, so a dead node is
noticed quickly."""

HTTP_TIMEOUT = 10.0
"""Seconds any one HTTP request to an admin door may take, body included."""


def redis_server_path() -> str:
    """
    The C{redis-server} binary, or skip the test (fail it under
    C{TCHAT_REQUIRE_ALL=1}) when it is not installed.
    """
    path = shutil.which("redis-server")
    require(
        path is not None,
        "redis-server is not on PATH (apt-get install redis-server)",
    )
    assert path is not None
    return path


def free_port() -> int:
    """
    A TCP port on 127.0.0.1 that nothing listens on right now.
    """
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


async def sleep(seconds: float) -> None:
    """
    Let the reactor run for C{seconds}.
    """
    await deferLater(global_reactor(), seconds, lambda: None)


async def until(
    what: str | Callable[[], str],
    condition: Callable[[], bool],
    timeout: float,
    step: float = 0.05,
) -> None:
    """
    Wait until C{condition()} is true, checking every C{step} seconds.

    @param what: What is awaited, for the failure message; a callable is
        called at the failure, so it can show the state then.
    @raise FailTest: If it is still false after C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            shown = what() if callable(what) else what
            raise FailTest(f"waited {timeout} s for {shown}")
        await sleep(step)


class _Ping(Protocol):
    """
    Sends one inline C{PING} and collects the answer.
    """

    def __init__(self) -> None:
        self.received = b""
        self.answered: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"PING\r\n")

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if b"\r\n" in self.received and not self.answered.called:
            self.answered.callback(self.received)
            assert self.transport is not None
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        if not self.answered.called:
            self.answered.callback(self.received)


class RedisServer:
    """
    A C{redis-server} the test started on 127.0.0.1, with no persistence
    (C{--save ""}, no AOF): a restart brings it back empty, as a crashed
    Redis without persistence comes back.

    @ivar port: Its port; the same across L{restart}.
    @ivar process: The running (or last) process's output collector.
    @ivar url: The C{[cluster] redis} value that reaches it.
    """

    def __init__(
        self,
        testcase: TestCase,
        port: int | None = None,
        *,
        tls: bool = False,
        password: str | None = None,
    ) -> None:
        self._testcase = testcase
        self._binary = redis_server_path()
        self._directory = os.path.abspath(str(testcase.mktemp()))
        os.makedirs(self._directory)
        self.port = free_port() if port is None else port
        self.process: ProcessOutput | None = None
        self.starts = 0
        self.tls = tls
        self.password = password
        if tls:
            self._write_certificates()

    def _write_certificates(self) -> None:
        """
        A CA of the test's own, and a certificate it signed for 127.0.0.1:
        nodes trust the CA (C{trustRoots}, a directory of C{.pem} files).
        """
        ca_key, key = make_key(), make_key()
        ca = make_certificate(ca_key, "tchat test CA", authority=True)
        server = make_certificate(key, "127.0.0.1", issuer=(ca, ca_key))
        roots = os.path.join(self._directory, "roots")
        os.makedirs(roots)
        for path, data in (
            (os.path.join(roots, "ca.pem"), certificate_pem(ca)),
            (os.path.join(self._directory, "ca.pem"), certificate_pem(ca)),
            (os.path.join(self._directory, "redis.pem"), certificate_pem(server)),
            (os.path.join(self._directory, "redis.key"), key_pem(key)),
        ):
            with open(path, "wb") as f:
                f.write(data)
        self.roots = roots

    @property
    def url(self) -> str:
        if self.tls:
            return f"tls:host={LOOPBACK}:port={self.port}:trustRoots={self.roots}"
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and not self.process.has_ended

    async def start(self, timeout: float = 10.0) -> None:
        """
        Start it and wait until it answers C{PING}; cleanup stops it.
        """
        assert not self.running, "redis-server is already running"
        self.starts += 1
        process = ProcessOutput(f"redis-server :{self.port} #{self.starts}")
        args = [
            self._binary,
            "--port",
            str(self.port),
            "--bind",
            LOOPBACK,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            self._directory,
        ]
        if self.password is not None:
            args += ["--requirepass", self.password]
        if self.tls:
            d = self._directory
            args[args.index("--port") + 1] = "0"
            args += [
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                os.path.join(d, "redis.pem"),
                "--tls-key-file",
                os.path.join(d, "redis.key"),
                "--tls-ca-cert-file",
                os.path.join(d, "ca.pem"),
                "--tls-auth-clients",
                "no",
            ]
        global_reactor().spawnProcess(
            process, self._binary, args, env=dict(os.environ), path=self._directory
        )
        self.process = process
        self._testcase.addCleanup(self._stop, process)
        deadline = time.monotonic() + timeout
        while True:
            if process.has_ended:
                raise FailTest(f"redis-server ended at start:\n{self.log()}")
            if await self.ping():
                return
            if (self.tls or self.password) and "Ready to accept" in self.log():
                # PING needs TLS or AUTH: the log says when it listens.
                return
            if time.monotonic() > deadline:
                raise FailTest(
                    f"redis-server on port {self.port} did not answer PING "
                    f"within {timeout} s:\n{self.log()}"
                )
            await sleep(0.05)

    async def ping(self) -> bool:
        """
        Whether it answers C{PING} with C{+PONG} within a second.
        """
        endpoint = TCP4ClientEndpoint(global_reactor(), LOOPBACK, self.port, timeout=1)
        protocol = _Ping()
        try:
            await connectProtocol(endpoint, protocol)
            answer = await protocol.answered.addTimeout(1.0, global_reactor())
        except Exception:
            return False
        return answer.startswith(b"+PONG")

    def log(self) -> str:
        """
        What the current (or last) process wrote.
        """
        if self.process is None:
            return ""
        return bytes(self.process.output.data).decode("utf-8", "replace")

    async def kill(self) -> None:
        """
        End it with SIGKILL, as a crash would, and wait until it has ended.
        """
        process = self.process
        assert process is not None and not process.has_ended
        process.signal_process("KILL")
        if not await process.wait_ended(10.0):
            raise FailTest("redis-server did not end after SIGKILL")

    def freeze(self) -> None:
        """
        Stop it with SIGSTOP, as a stuck host or a swapping Redis is: its
        sockets stay open and nothing answers.
        """
        assert self.process is not None and not self.process.has_ended
        self.process.signal_process(signal.SIGSTOP)  # type: ignore[arg-type]
        self._testcase.addCleanup(self.thaw)

    def thaw(self) -> None:
        """Let it go on (SIGCONT) after L{freeze}."""
        if self.process is not None:
            self.process.signal_process(signal.SIGCONT)  # type: ignore[arg-type]

    async def command(self, *args: str) -> Any:
        """
        Run one command on it (the test's own connection, not a node's)
        and return the decoded answer: a string, an integer, a list or
        C{None}.
        """

        def run() -> Any:
            with socket.create_connection((LOOPBACK, self.port), timeout=5) as s:
                request = f"*{len(args)}\r\n" + "".join(
                    f"${len(a.encode())}\r\n{a}\r\n" for a in args
                )
                s.sendall(request.encode())
                reader = s.makefile("rb")
                return _reply(reader)

        return await deferToThread(run)

    async def restart(self) -> None:
        """
        Start it again on the same port (after L{kill}), empty.
        """
        if self.running:
            await self.kill()
        await self.start()

    async def _stop(self, process: ProcessOutput) -> None:
        await process.stop(grace=5.0)


def _reply(reader: Any) -> Any:
    """One RESP reply, decoded."""
    line = reader.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:].decode()
    if kind in (b"+", b"-"):
        return rest
    if kind == b":":
        return int(rest)
    if kind == b"$":
        if rest == "-1":
            return None
        data = reader.read(int(rest) + 2)
        return data[:-2].decode()
    if kind == b"*":
        return None if rest == "-1" else [_reply(reader) for _ in range(int(rest))]
    raise FailTest(f"not a Redis reply: {line!r}")


def node_ini(redis: RedisServer, node: str, extra: str = "") -> str:
    """
    The test configuration of one node: L{TAP_INI} with a C{[cluster]}
    section pointing at C{redis}.

    @param extra: More configuration text appended at the end.
    """
    return (
        f"{TAP_INI}\n"
        "[cluster]\n"
        f"redis = {redis.url}\n"
        f"node = {node}\n"
        f"node_timeout = {NODE_TIMEOUT}\n"
        + (f"password = {redis.password}\n" if redis.password else "")
        + extra
    )


async def get(testcase: TestCase, port: int, path: str) -> tuple[IResponse, bytes]:
    """
    GET C{path} from a port on 127.0.0.1 within L{HTTP_TIMEOUT} seconds,
    on a fresh connection.

    @return: The response and its body.
    """
    pool = HTTPConnectionPool(global_reactor(), persistent=False)
    testcase.addCleanup(pool.closeCachedConnections)
    agent = Agent(global_reactor(), pool=pool, connectTimeout=5)
    url = f"http://{LOOPBACK}:{port}{path}".encode("ascii")
    asked: Deferred[IResponse] = agent.request(b"GET", url, Headers())
    response = await asked.addTimeout(HTTP_TIMEOUT, global_reactor())
    read: Deferred[bytes] = readBody(response)
    body = await read.addTimeout(HTTP_TIMEOUT, global_reactor())
    return response, body


async def health(testcase: TestCase, node: TchatServer) -> tuple[int, Any]:
    """
    Ask a node's admin door for C{/healthz}.

    @return: The HTTP status and the decoded JSON body.
    """
    response, body = await get(testcase, node.admin_port, "/healthz")
    try:
        answer = json.loads(body)
    except ValueError:
        raise FailTest(f"/healthz answered {response.code} {body!r}") from None
    return response.code, answer


HEALTHY = {"status": "ok", "checks": {"hub": "ok", "cluster": "ok"}}
"""What C{/healthz} of a node connected to its cluster answers (with 200)."""

DEGRADED = {"status": "degraded", "checks": {"hub": "ok", "cluster": "unreachable"}}
"""What C{/healthz} of a node cut off from Redis answers (with 503)."""


async def wait_health(
    testcase: TestCase,
    node: TchatServer,
    code: int,
    answer: dict[str, Any],
    timeout: float,
) -> None:
    """
    Poll C{/healthz} until it answers C{code} with C{answer}.

    @raise FailTest: Showing the last answer and the node's log.
    """
    deadline = time.monotonic() + timeout
    last: tuple[int, Any] | None = None
    while True:
        last = await health(testcase, node)
        if last == (code, answer):
            return
        if time.monotonic() > deadline:
            raise FailTest(
                f"/healthz did not answer {code} {answer!r} within {timeout} s; "
                f"the last answer was {last!r}; the node's log:\n{node.log()}"
            )
        await sleep(0.1)


async def start_node(
    testcase: TestCase,
    redis: RedisServer,
    node: str = "a",
    web: bool = True,
    extra: str = "",
    timeout: float = 15.0,
) -> TchatServer:
    """
    Start a real C{twistd -n tchat} node of the cluster on C{redis} and
    wait until its doors listen and its C{/healthz} says it is in the
    cluster.  Cleanup stops it (and fails the test if it logged a
    traceback).

    @param node: The node's name (C{[cluster] node}).
    @param web: Give it a web door.
    @param extra: More configuration text, appended to L{node_ini}.
    """
    server = await start_server(
        testcase, node_ini(redis, node, extra), web=WEB if web else None
    )
    await wait_health(testcase, server, 200, HEALTHY, timeout)
    return server


async def cluster_up_metric(testcase: TestCase, node: TchatServer) -> float:
    """
    The value of C{tchat_cluster_up} in a node's C{/metrics}.
    """
    response, body = await get(testcase, node.admin_port, "/metrics")
    if response.code != 200:
        raise FailTest(f"/metrics answered {response.code}: {body!r}")
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            if sample.name == "tchat_cluster_up":
                return float(sample.value)
    raise FailTest(f"no tchat_cluster_up in /metrics:\n{body.decode()}")
