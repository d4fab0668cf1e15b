# -*- test-case-name: tests.test_output, tests.test_limits -*-
"""
What a client is sent.

  - L{OutputQueue}: a bounded queue of what a client has not read yet,
    driven by Twisted's producer/consumer machinery, so a slow reader
    costs bounded memory and never holds anyone else up.
  - L{Batcher} and L{socket_writer}: a client's first write of a reactor
    turn goes to its socket at once, and the writes after it in that turn
    go out together at the start of the next.
  - L{GOODBYE_DRAIN}: how long a client sent off for breaking a limit
    gets to read its goodbye.

The queue's bound is C{[limits] output_queue} in C{tap.ini}
(L{tchat.config.LimitsConfig}).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import tcp
from twisted.internet.interfaces import (
    IDelayedCall,
    IPushProducer,
    IReactorTime,
    ITCPTransport,
)
from twisted.logger import Logger
from zope.interface import implementer

_log = Logger()

#: Seconds a client sent off for breaking a limit (while it may still be
#: sending) gets to read its goodbye before its connection is cut.
GOODBYE_DRAIN = 5.0


class Batcher:
    """
    Gathers what each client is sent during one turn of the reactor, after
    its first write of the turn, and writes it in one piece at the start of
    the next turn.

    A chat line to a room is one write per member.  Twisted would buffer
    each and come back for every socket through the poller (two
    C{epoll_ctl} calls and a dispatch per socket per turn); instead a
    client's first line of a turn goes to its socket at once (see
    L{socket_writer}), which gives a quiet server the latency of an
    immediate write, and the lines after it in that turn are joined and
    sent once, which gives a busy one the throughput of batching.

    @ivar turn: Counts the turns (flushes); a queue remembers the turn of
        its last immediate write.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._dirty: list[OutputQueue] = []
        self._call: IDelayedCall | None = None
        self.turn = 0

    def add(self, queue: OutputQueue) -> None:
        """
        C{queue} has a batch to write: write it at the start of next turn.
        """
        self._dirty.append(queue)
        self.touch()

    def touch(self) -> None:
        """
        Make sure this turn ends with a L{flush}: a queue that wrote at once
        batches its next writes only until then.
        """
        if self._call is None:
            self._call = self._clock.callLater(0, self.flush)

    def flush(self) -> None:
        """
        Write every batch gathered so far, and start a new turn.
        """
        self._call = None
        self.turn += 1
        dirty, self._dirty = self._dirty, []
        for queue in dirty:
            try:
                queue.flush()
            except Exception:
                _log.failure("writing to a client")


def client_queue(
    transport: Any,
    limit: int,
    overflow: Callable[[OutputQueue], None],
    clock: IReactorTime,
    batcher: Batcher | None,
) -> OutputQueue:
    """
    A connection's output queue (L{OutputQueue.for_transport}), registered
    as its transport's producer, with Nagle's algorithm off on TCP: it would
    hold small chat lines back about 40 ms.
    """
    if ITCPTransport.providedBy(transport):
        transport.setTcpNoDelay(True)
    queue = OutputQueue.for_transport(transport, limit, overflow, clock, batcher)
    transport.registerProducer(queue, True)
    return queue


def socket_writer(transport: Any) -> Callable[[bytes], None]:
    """
    C{transport.write}, except that on a plain TCP connection whose own
    buffer is empty the bytes go to the socket at once: one C{send} call
    instead of a trip through the poller.  What the socket does not take
    goes to C{transport.write} as usual, so Twisted's buffering, its flow
    control (it pauses the producer) and its error handling apply from
    there on.  TLS connections and other transports just use C{write}.
    """
    if not isinstance(transport, tcp.Connection) or transport.TLS:
        return transport.write  # type: ignore[no-any-return]
    return _SocketWriter(transport)


class _SocketWriter:
    """
    L{socket_writer} for one TCP connection (a small object rather than a
    closure: every connection has one).
    """

    __slots__ = ("_transport",)

    def __init__(self, transport: tcp.Connection) -> None:
        self._transport = transport

    def __call__(self, data: bytes) -> None:
        transport: Any = self._transport
        if (
            not transport._tempDataLen
            and transport.offset == len(transport.dataBuffer)
            and transport.connected
            and not transport.disconnecting
        ):
            try:
                sent = transport.socket.send(data)
            except OSError:
                # EAGAIN, or an error Twisted reports when it writes.
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)


@implementer(IPushProducer)
class OutputQueue:
    """
    What one client has not been able to take yet.

    Registered as a streaming producer with the client's transport: while
    the socket keeps up, bytes go straight to it (with a L{Batcher}, the
    first of each turn at once and the rest gathered until the turn ends);
    once the transport's own buffer is full it pauses this queue, and
    bytes wait here, up to C{limit}, until it resumes.  Past the limit,
    C{overflow} decides (drop the oldest, or close the connection).  With
    a C{stuck} callback, a client the transport keeps paused for the stuck
    timeout (one that reads nothing, however much it sends) is reported
    too, whether or not the limit is reached.

    Everything a door sends goes through here, its protocol's own replies
    included (telnet negotiation, WebSocket pongs and pings), so that a
    client which makes the server answer without reading the answers is
    bounded like any slow reader.

    L{push} is on every delivery's path, so the common case (the client
    keeps up) is a flag test, a turn comparison and a write or a list
    append; the deque is only made
    for a client that falls behind.

    @ivar size: The total size in bytes of what waits.
    @ivar paused_since: When the transport paused us; C{None} when it is
        taking data.
    @ivar flowing: Whether pushed bytes go out without waiting: not
        paused, not stopped, and nothing waiting.
    """

    __slots__ = (
        "_batch",
        "_batcher",
        "_clock",
        "_overflow",
        "_pending",
        "_send",
        "_stuck",
        "_stuck_timeout",
        "_turn",
        "_watch",
        "flowing",
        "limit",
        "paused_since",
        "size",
        "stopped",
    )

    def __init__(
        self,
        send: Callable[[bytes], None],
        limit: int,
        overflow: Callable[[OutputQueue], None],
        clock: IReactorTime,
        batcher: Batcher | None = None,
        stuck: Callable[[OutputQueue], None] | None = None,
        stuck_timeout: Callable[[], float] | None = None,
    ) -> None:
        """
        @param send: Writes bytes to the client's transport.
        @param limit: Bytes that may wait before C{overflow} is called.
        @param overflow: Decides what becomes of a client C{limit} bytes
            behind.
        @param batcher: Gathers a reactor turn's writes (a running server).
        @param stuck: If given, called once the transport has kept the queue
            paused (the client took nothing, whatever it sent) for
            C{stuck_timeout()} seconds, read at each pause so that a reload
            applies.
        """
        self._send = send
        self.limit = limit
        self._overflow = overflow
        self._clock = clock
        self._batcher = batcher
        self._stuck = stuck
        self._stuck_timeout = stuck_timeout
        self._watch: IDelayedCall | None = None
        self._batch: list[bytes] | None = None
        self._turn = -1
        if batcher is not None:
            # A new connection is told several things in the turn it comes
            # (its welcome, the room, what was said): one write at the end
            # of the turn instead of one at once and one after.
            self._turn = batcher.turn
            batcher.touch()
        self._pending: deque[bytes] | None = None
        self.size = 0
        self.paused_since: float | None = None
        self.stopped = False
        self.flowing = True

    @classmethod
    def for_transport(
        cls,
        transport: Any,
        limit: int,
        overflow: Callable[[OutputQueue], None],
        clock: IReactorTime,
        batcher: Batcher | None,
        stuck: Callable[[OutputQueue], None] | None = None,
        stuck_timeout: Callable[[], float] | None = None,
    ) -> OutputQueue:
        """
        The queue of a connection: batched and written straight to its
        socket when there is a L{Batcher} (a running server), written
        through C{transport.write} one by one otherwise (tests that look
        at a transport right after a delivery).
        """
        send = transport.write if batcher is None else socket_writer(transport)
        return cls(send, limit, overflow, clock, batcher, stuck, stuck_timeout)

    @property
    def pending(self) -> Sequence[bytes]:
        """What waits for the transport to resume, oldest first."""
        return self._pending if self._pending is not None else ()

    def push(self, data: bytes) -> None:
        """
        Send C{data} now (or with the rest of this turn's), or queue it
        while the client is behind.
        """
        if self.flowing:
            batcher = self._batcher
            if batcher is None:
                self._send(data)
            elif self._batch is not None:
                self._batch.append(data)
            elif self._turn != batcher.turn:
                # The client's first write this turn goes out at once (a
                # quiet server's latency); later ones wait for the turn's
                # end and go out together (a busy one's throughput).
                self._turn = batcher.turn
                batcher.touch()
                try:
                    self._send(data)
                except Exception:
                    _log.failure("writing to a client")
            else:
                self._batch = [data]
                batcher.add(self)
            return
        if self.stopped:
            return
        pending = self._pending
        if self.paused_since is None and not pending:
            self.flowing = True
            self.push(data)
            return
        if pending is None:
            pending = self._pending = deque()
        pending.append(data)
        self.size += len(data)
        if self.size > self.limit:
            self._overflow(self)

    def flush(self) -> None:
        """
        Write this turn's batch (the L{Batcher} calls this).
        """
        batch, self._batch = self._batch, None
        if batch and not self.stopped:
            self._send(batch[0] if len(batch) == 1 else b"".join(batch))

    def put_first(self, data: bytes) -> None:
        """
        Queue C{data} ahead of everything waiting (a marker standing for
        what L{drop_oldest} dropped).
        """
        if self._pending is None:
            self._pending = deque()
        self._pending.appendleft(data)
        self.size += len(data)
        self.flowing = False

    def drop_oldest(self, down_to: int) -> list[bytes]:
        """
        Drop the oldest items until at most C{down_to} bytes wait.

        @return: What was dropped.
        """
        dropped = []
        pending = self._pending
        while pending and self.size > down_to:
            data = pending.popleft()
            self.size -= len(data)
            dropped.append(data)
        return dropped

    def stuck_for(self) -> float:
        """
        @return: Seconds the client has taken nothing for (0 when it is
            reading).
        """
        if self.paused_since is None:
            return 0.0
        return self._clock.seconds() - self.paused_since

    def unsent(self) -> list[bytes]:
        """
        Stop, and return everything not written yet, in order: what a
        connection about to close still owes its client.
        """
        left = [*(self._batch or ()), *self.pending]
        self.stopProducing()
        return left

    def clear(self) -> None:
        """Forget everything waiting."""
        self._batch = None
        self._pending = None
        self.size = 0

    def _check_stuck(self) -> None:
        """
        The stuck timeout has passed since a pause: if the transport has
        kept us paused since then, the client is stuck; if it resumed and
        paused again since, wait for the rest of the timeout from then.
        """
        self._watch = None
        since, stuck = self.paused_since, self._stuck
        if since is None or self.stopped or stuck is None:
            return
        assert self._stuck_timeout is not None
        left = since + self._stuck_timeout() - self._clock.seconds()
        if left > 0:
            self._watch = self._clock.callLater(left, self._check_stuck)
            return
        stuck(self)

    # -- IPushProducer ---------------------------------------------------

    def pauseProducing(self) -> None:
        self.flowing = False
        if self.paused_since is None:
            self.paused_since = self._clock.seconds()
            if self._stuck is not None and self._watch is None and not self.stopped:
                # One check per pause at most, and none cancelled on resume:
                # a busy client paused and resumed many times a second costs
                # one timer per stuck_timeout, not one per pause.
                assert self._stuck_timeout is not None
                self._watch = self._clock.callLater(
                    self._stuck_timeout(), self._check_stuck
                )
        batch, self._batch = self._batch, None
        if batch:
            # Gathered before the pause: first in line when it ends.
            self.put_first(b"".join(batch))

    def resumeProducing(self) -> None:
        self.paused_since = None
        pending = self._pending
        while pending and self.paused_since is None and not self.stopped:
            data = pending.popleft()
            self.size -= len(data)
            self._send(data)
        if not pending and self.paused_since is None and not self.stopped:
            # Caught up: free the deque (most clients never need one again).
            self._pending = None
            self.flowing = True

    def stopProducing(self) -> None:
        self.stopped = True
        self.flowing = False
        self.clear()
        watch, self._watch = self._watch, None
        if watch is not None and watch.active():
            watch.cancel()
