"""
The benchmark's regression guard: a few seconds of the matrix's load,
through both doors of a real C{twistd -n tchat} running the benchmark
configuration, must deliver every message exactly once and in order.
It fails on loss, duplicates or reordering, never on timing: speed is
measured by C{bench/matrix.py}, not asserted by tests.

Short runs of the sieges (C{bench/siege.py}, C{bench/siege_cluster.py})
must pass their own checks: the honest users' delivery complete under
every attack at once, and every line accounted for while Redis is killed
and frozen under two nodes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import FailTest, TestCase

from tests.integration.cluster import redis_server_path
from tests.integration.server import async_test, start_server
from tests.support import require

BENCH = Path(__file__).resolve().parents[2] / "bench"
LOADGEN = BENCH / "gen" / "loadgen"


def build_loadgen() -> Path:
    """
    Build the benchmark's C load generator (C{make -C bench/gen}), or skip
    (fail in CI) without a C compiler.
    """
    require(
        shutil.which("make") is not None and shutil.which("cc") is not None,
        "make or cc is missing: apt-get install make gcc libc6-dev",
    )
    subprocess.run(
        ["make", "-s", "-C", str(BENCH / "gen")],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return LOADGEN


def run_loadgen(*args: str) -> dict[str, Any]:
    """
    Run the generator to completion and return its result line.
    """
    done = subprocess.run(
        [str(LOADGEN), "--proto", "tchat", "--max-seconds", "60", *args],
        capture_output=True,
        text=True,
        timeout=90,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line]
    results = [line for line in lines if line.get("event") == "result"]
    assert results, f"no result from loadgen {args}: {done.stdout} {done.stderr}"
    result: dict[str, Any] = results[-1]
    assert done.returncode == 0, f"loadgen exited {done.returncode}: {result}"
    return result


def check_exact(testcase: TestCase, result: dict[str, Any]) -> None:
    """
    Fail C{testcase} unless a generator's C{result} shows exact delivery:
    every expected copy once, in order, no error and no disconnect.
    """
    testcase.assertGreater(result["expected"], 0, result)
    testcase.assertEqual(
        (
            result["delivered"],
            result["lost"],
            result["duplicates"],
            result["reordered"],
            result["errors"],
            result["server_closes"],
        ),
        (result["expected"], 0, 0, 0, 0, 0),
        result,
    )


class BenchSmokeTests(TestCase):
    """
    Short runs of the benchmark scenarios, checked for exact delivery.
    """

    def check_exact(self, result: dict[str, Any]) -> None:
        check_exact(self, result)

    @async_test
    async def test_every_message_once_in_order(self) -> None:
        """
        A mixed room (half telnet, half web) at a steady rate, then a
        saturating closed loop on each door: everyone gets every message of
        every sender once, in the order it was sent.
        """
        await deferToThread(build_loadgen)
        server = await start_server(
            self,
            (BENCH / "tap.ini").read_text(encoding="utf-8"),
            web="tcp:0:interface=127.0.0.1",
        )
        telnet = f"127.0.0.1:{server.port}"
        web = f"127.0.0.1:{server.web_port}"
        common = ("--settle", "0.5", "--drain", "5")
        mixed = await deferToThread(
            run_loadgen,
            *("--telnet", telnet, "--ws", web, "--clients", "60", "--senders", "6"),
            *("--rate", "20", "--seconds", "2", *common),
        )
        self.check_exact(mixed)
        self.assertEqual((mixed["line_clients"], mixed["ws_clients"]), (30, 30))
        for door in (("--telnet", telnet), ("--ws", web)):
            saturated = await deferToThread(
                run_loadgen,
                *door,
                *("--clients", "30", "--senders", "3", "--window", "16"),
                *("--seconds", "2", *common),
            )
            self.check_exact(saturated)


class SSHLoadSmokeTests(TestCase):
    """
    The generator's SSH clients (C{loadgen --ssh}, libssh), as the matrix
    runs them against the SSH door, on a short run.
    """

    @async_test
    async def test_ssh_fanout_exact(self) -> None:
        """
        Five SSH users in the lobby, two of them typing five lines a second
        for two seconds: every other user gets every line once, in order.
        """
        loadgen = build_loadgen()
        help_text = subprocess.run(
            [str(loadgen), "--help"], capture_output=True, text=True, timeout=10
        ).stdout
        require(
            "without libssh" not in help_text,
            "loadgen was built without libssh: apt-get install libssh-dev pkg-config",
        )
        server = await start_server(
            self,
            (BENCH / "tap.ini").read_text(encoding="utf-8"),
            ssh="tcp:0:interface=127.0.0.1",
        )
        result = await deferToThread(
            run_loadgen,
            *("--ssh", f"127.0.0.1:{server.ssh_port}", "--clients", "5"),
            *("--senders", "2", "--rate", "5", "--seconds", "2"),
            *("--settle", "0.5", "--drain", "5"),
        )
        self.assertEqual((result["connected"], result["error"]), (5, None), result)
        self.assertEqual(result["ssh_clients"], 5, result)
        check_exact(self, result)
        self.assertEqual(result["expected"], result["sent"] * 4, result)
        self.assertIsNotNone(result["latency_ms"], result)


class IRCLoadSmokeTests(TestCase):
    """
    The generator's IRC clients (C{loadgen --irc}), as the matrix runs them
    against the IRC door, on a short run.
    """

    @async_test
    async def test_irc_fanout_exact(self) -> None:
        """
        Twenty IRC clients join #lobby themselves, four say ten lines a
        second for two seconds: every other client gets every line once,
        in order.
        """
        build_loadgen()
        server = await start_server(
            self,
            (BENCH / "tap.ini").read_text(encoding="utf-8"),
            irc="tcp:0:interface=127.0.0.1",
        )
        result = await deferToThread(
            run_loadgen,
            *("--irc", f"127.0.0.1:{server.irc_port}", "--clients", "20"),
            *("--senders", "4", "--rate", "10", "--seconds", "2"),
            *("--settle", "0.5", "--drain", "5"),
        )
        self.assertEqual((result["connected"], result["error"]), (20, None), result)
        self.assertEqual(result["irc_clients"], 20, result)
        check_exact(self, result)
        self.assertEqual(result["expected"], result["sent"] * 19, result)


def run_bench(script: str, *args: str, timeout: float = 90) -> dict[str, Any]:
    """
    Run C{bench/SCRIPT} with this interpreter and return the JSON line it
    prints last.  On a timeout it gets SIGTERM (so that it stops the
    servers it started, by their PIDs), then SIGKILL.

    @raise FailTest: It exited with a status other than 0, or printed no
        JSON line.
    """
    argv = [sys.executable, str(BENCH / script), *args]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                out, err = process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                out, err = process.communicate()
            raise FailTest(f"{script} ran over {timeout} s:\n{err[-3000:]}") from None
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise FailTest(f"{script} printed no JSON (exit {process.returncode}):\n{err}")
    report: dict[str, Any] = json.loads(lines[-1])
    if process.returncode != 0:
        raise FailTest(f"{script} exited {process.returncode}:\n{err[-3000:]}")
    return report


class SiegeSmokeTests(TestCase):
    """
    Short runs of the two sieges, each under 40 s, checked by their own
    pass/fail checks.
    """

    timeout = 150

    @async_test
    async def test_siege(self) -> None:
        """
        Ten seconds of every attack at once (IAC and ping floods, resume
        and C{/rooms} amplification, look-alike nicks, slow readers,
        stalled TLS handshakes) beside 16 honest users: every honest
        message reaches every other member of its room once, in order
        (100%), no look-alike nick is taken, and each attack met the
        server (the floods were sent off for flooding).
        """
        report = await deferToThread(
            run_bench,
            "siege.py",
            *("--seconds", "10", "--honest", "16", "--scale", "0.3"),
            *("--drain", "3", "--settle", "2"),
        )
        honest = report["honest"]
        self.assertEqual(
            (honest["joined"], honest["delivery_pct"], honest["complete"]),
            (16, 100.0, True),
            honest,
        )
        self.assertGreater(honest["expected_deliveries"], 0, honest)
        self.assertTrue(all(report["checks"].values()), report["checks"])
        attacks = report["attacks"]
        for flood in ("iac_flood", "ping_flood"):
            self.assertTrue(
                any("flooding" in why for why in attacks[flood]["outcomes"]),
                attacks[flood],
            )
        self.assertGreater(attacks["lookalike_nicks"]["attempts"], 0)
        self.assertGreater(attacks["resume_flood"]["frames"], 0)
        self.assertGreater(attacks["rooms"]["answers"], 0)
        self.assertGreater(attacks["stalled_tls"]["connections"], 0)

    @async_test
    async def test_siege_cluster(self) -> None:
        """
        Two nodes and four web users on each, Redis killed and started
        again empty, then frozen for 4 s, under traffic: every line has
        exactly one outcome, nobody sees a line twice, no (room, epoch,
        id) names two lines, and no refused line was shown.
        """
        redis = redis_server_path()
        report = await deferToThread(
            run_bench,
            "siege_cluster.py",
            *("--seconds", "10", "--users", "4", "--kill-at", "2"),
            *("--freeze", "4", "--after", "2", "--redis-server", redis),
        )
        self.assertTrue(all(report["checks"].values()), report["checks"])
        self.assertGreater(report["acked"], 0, report)
        self.assertEqual(report["lines_sent"], report["acked"] + report["refused"])
