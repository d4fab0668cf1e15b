# -*- test-case-name: tests.integration.test_fuzz_deep -*-
"""
The property tests of every parser (C{tests.test_fuzz}), with eight times
the examples the unit suite runs: too slow for a unit suite that must stay
under ten seconds, cheap enough for CI.
"""

import os
import sys
from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.integration.server import async_test, run_process

REPO = Path(__file__).resolve().parent.parent.parent


class DeepFuzzTests(TestCase):
    """
    Hypothesis's C{deep} profile over every parser.
    """

    timeout = 300

    @async_test
    async def test_every_parser_deeply(self) -> None:
        """
        C{tests.test_fuzz} passes with C{HYPOTHESIS_PROFILE=deep}: no input
        crashes a parser, reaches another user as a control code, or goes
        unanswered.
        """
        env = {**os.environ, "HYPOTHESIS_PROFILE": "deep"}
        temp = self.mktemp()
        result = await run_process(
            self,
            sys.executable,
            [
                sys.executable,
                "-m",
                "twisted.trial",
                f"--temp-directory={temp}",
                "tests.test_fuzz",
            ],
            path=str(REPO),
            env=env,
            timeout=240,
        )
        self.assertEqual(result.exit_code, 0, result.output)
        self.assertIn("PASSED", result.output)
