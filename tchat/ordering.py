# -*- test-case-name: tests.test_ordering -*-
"""
Each user's commands take effect in the order they were sent.

Most commands take effect at once.  Some wait on I/O: a nick claimed in the
whole chat, a password checked in a thread, a session or a page of history
read from the store.  While one of a user's commands waits, the commands
they send after it wait behind it, per user, so that a classic client's
C{{"name": "wes", "message": "hello"}} is shown as C{wes} saying hello,
never as the guest saying it and then becoming C{wes}.
"""

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from tchat.commands import Command
from tchat.delivery import Delivery
from tchat.metrics import Metrics
from tchat.model import User

MAX_WAITING = 100
"""Commands one user may have waiting behind one that waits on I/O."""

Run = Callable[[User, Command], Deferred[Any] | None]
"""Carries out a command; returns what its effect waits on, if anything."""


class InOrder:
    """
    Runs each user's commands one after the other, holding a user's next
    commands while one of theirs waits.
    """

    _log = Logger()

    def __init__(self, run: Run, delivery: Delivery, metrics: Metrics) -> None:
        self._run_one = run
        self._delivery = delivery
        self._metrics = metrics

    def execute(self, user: User, command: Command, tag: str | None) -> None:
        """
        Carry out C{command} for C{user} now, or after the commands they
        sent before it.

        @param tag: The client's tag of the request, which errors it causes
            carry.
        """
        waiting = user.waiting
        if waiting is not None:
            if len(waiting) < MAX_WAITING:
                waiting.append((command, tag))
                return
            self._metrics.limit("waiting")
            self._delivery.error(
                user,
                "rate-limited",
                "too many commands are waiting for your last one to finish; "
                "this one was dropped",
                tag,
            )
            return
        user.tag = tag
        try:
            pending = self._run_one(user, command)
        finally:
            user.tag = None
        if pending is not None:
            # Its effect may wait on I/O: the user's next commands wait for
            # it.  (A Deferred that has its result already calls _done at
            # once; "called" would not tell, as one may have fired and yet
            # wait on another.)
            user.waiting = deque()
            pending.addBoth(self._done, user)

    def _done(self, result: object, user: User) -> None:
        """C{user}'s command that waited is done: run what waited behind it."""
        if isinstance(result, Failure):
            self._log.failure(
                "carrying out a command of {nick}", result, nick=user.nick
            )
        waiting, user.waiting = user.waiting, None
        while waiting and user.connected and user.waiting is None:
            command, tag = waiting.popleft()
            try:
                self.execute(user, command, tag)
            except Exception:
                self._log.failure("carrying out a command of {nick}", nick=user.nick)
        if waiting and user.waiting is not None:
            # Another one waits now: the rest stay behind it, in order.
            user.waiting.extend(waiting)
