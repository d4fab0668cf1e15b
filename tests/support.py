"""
Helpers shared by the test suites.
"""

import os

from twisted.trial.unittest import SkipTest
from zope.interface import implementer

from tchat.interfaces import IParticipant


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


@implementer(IParticipant)
class QuietParticipant:
    """
    A user connected through C{door} who ignores what the hub tells them.
    """

    def __init__(self, door: str, address: str | None = None) -> None:
        self.door = door
        self.address = address

    def attached(self, user: object) -> None:
        pass

    def deliver(self, event: object, renderings: object) -> None:
        pass

    def close(self, reason: str, why: str = "normal") -> None:
        pass

    def abort(self) -> None:
        pass
