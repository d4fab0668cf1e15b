"""
The benchmark's regression guard: a few seconds of the matrix's load,
through both doors of a real C{twistd -n tchat} running the benchmark
configuration, must deliver every message exactly once and in order.
It fails on loss, duplicates or reordering, never on timing: speed is
measured by C{bench/matrix.py}, not asserted by tests.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

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


class BenchSmokeTests(TestCase):
    """
    Short runs of the benchmark scenarios, checked for exact delivery.
    """

    def check_exact(self, result: dict[str, Any]) -> None:
        self.assertGreater(result["expected"], 0, result)
        self.assertEqual(
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
