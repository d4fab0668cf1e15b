"""
Helpers shared by the test suites.
"""

import os

from twisted.trial.unittest import SkipTest


def require(available: bool, what: str) -> None:
    """
    Skip the calling test when a system component is missing, unless
    C{TCHAT_REQUIRE_ALL=1} (as in CI), where a missing component is a failure:
    a suite that silently skips proves nothing.

    @param available: Whether the component is there.
    @param what: What is missing and how to get it, for the message.
    @raise SkipTest: When missing and not required.
    @raise AssertionError: When missing and required.
    """
    if available:
        return
    if os.environ.get("TCHAT_REQUIRE_ALL") == "1":
        raise AssertionError(f"TCHAT_REQUIRE_ALL=1 but {what}")
    raise SkipTest(what)
