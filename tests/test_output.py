# -*- test-case-name: tests.test_output -*-
"""
Tests for L{tchat.output}: the L{OutputQueue} a running server gives each
client, the L{Batcher} that gathers a reactor turn's writes, and
L{socket_writer}.  What a slow reader meets through a door is in
L{tests.test_limits}.
"""

from twisted.internet import tcp
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tchat.output import Batcher, OutputQueue, socket_writer


class BatchedOutputTests(SynchronousTestCase):
    """
    A running server gathers each client's writes per reactor turn.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.writes: list[bytes] = []
        self.overflows = 0
        self.queue = OutputQueue(
            self.writes.append, 100, self.overflowed, self.clock, Batcher(self.clock)
        )
        self.clock.advance(0)  # the connection's first turn is over

    def overflowed(self, queue: OutputQueue) -> None:
        self.overflows += 1

    def test_first_turn_one_write(self) -> None:
        """
        A new connection is told several things in the turn it comes (its
        welcome, its room): they reach its socket as one write at the end
        of that turn.
        """
        writes: list[bytes] = []
        queue = OutputQueue(
            writes.append, 100, self.overflowed, self.clock, Batcher(self.clock)
        )
        queue.push(b"welcome\r\n")
        queue.push(b"joined\r\n")
        self.assertEqual(writes, [])
        self.clock.advance(0)
        self.assertEqual(writes, [b"welcome\r\njoined\r\n"])
        queue.push(b"later\r\n")
        self.assertEqual(writes[-1], b"later\r\n", "then at once again")

    def test_first_write_at_once_then_one_per_turn(self) -> None:
        """
        A client's first line of a turn goes out at once (a quiet server
        adds no delay); the lines after it in that turn reach the socket
        as one write, in order, at the start of the next turn.  The next
        turn's first line goes out at once again.
        """
        self.queue.push(b"one\r\n")
        self.assertEqual(self.writes, [b"one\r\n"])
        self.queue.push(b"two\r\n")
        self.queue.push(b"three\r\n")
        self.assertEqual(self.writes, [b"one\r\n"])
        self.clock.advance(0)
        self.assertEqual(self.writes, [b"one\r\n", b"two\r\nthree\r\n"])
        self.queue.push(b"four\r\n")
        self.assertEqual(self.writes[-1], b"four\r\n")

    def test_each_client_first_write_at_once(self) -> None:
        """
        In a fan-out, every client's first line of the turn goes out at
        once, not only the first client's.
        """
        batcher = Batcher(self.clock)
        other: list[bytes] = []
        mine = OutputQueue(
            self.writes.append, 100, self.overflowed, self.clock, batcher
        )
        theirs = OutputQueue(other.append, 100, self.overflowed, self.clock, batcher)
        self.clock.advance(0)
        mine.push(b"a")
        theirs.push(b"a")
        self.assertEqual((self.writes, other), ([b"a"], [b"a"]))

    def test_pause_keeps_order(self) -> None:
        """
        When the transport pauses the queue before the turn's batch went
        out, the batch waits ahead of what comes after, and a resume sends
        everything in the order it was delivered.
        """
        self.queue.push(b"a")
        self.queue.push(b"b")
        self.queue.pauseProducing()
        self.queue.push(b"c")
        self.clock.advance(0)
        self.assertEqual(self.writes, [b"a"])
        self.assertEqual(list(self.queue.pending), [b"b", b"c"])
        self.queue.resumeProducing()
        self.assertEqual(self.writes, [b"a", b"b", b"c"])
        self.queue.push(b"d")
        self.clock.advance(0)
        self.assertEqual(self.writes, [b"a", b"b", b"c", b"d"])

    def test_unsent(self) -> None:
        """
        A closing connection gets everything not written yet, in order, and
        the queue takes nothing more.
        """
        self.queue.push(b"a")
        self.queue.push(b"b")
        self.queue.push(b"c")
        self.assertEqual(self.queue.unsent(), [b"b", b"c"])
        self.queue.push(b"d")
        self.clock.advance(0)
        self.assertEqual(self.writes, [b"a"])

    def test_overflow_while_paused(self) -> None:
        """
        Only what waits for a paused transport counts against the limit.
        """
        self.queue.push(b"x" * 90)
        self.clock.advance(0)
        self.queue.pauseProducing()
        self.queue.push(b"y" * 90)
        self.assertEqual(self.overflows, 0)
        self.queue.push(b"z" * 20)
        self.assertEqual(self.overflows, 1)

    def test_failing_write_spares_others(self) -> None:
        """
        A client whose write fails costs the others nothing, whether the
        write was at once or batched.
        """

        def broken(data: bytes) -> None:
            raise OSError("gone")

        batcher = Batcher(self.clock)
        bad = OutputQueue(broken, 100, self.overflowed, self.clock, batcher)
        good = OutputQueue(
            self.writes.append, 100, self.overflowed, self.clock, batcher
        )
        self.clock.advance(0)
        for line in (b"a", b"b"):
            bad.push(line)
            good.push(line)
        self.assertEqual(self.writes, [b"a"])
        self.clock.advance(0)
        self.assertEqual(self.writes, [b"a", b"b"])
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 2)


class SocketWriterTests(SynchronousTestCase):
    """
    L{socket_writer} sends straight to the socket only when Twisted holds
    nothing for it.
    """

    def test_other_transports_write(self) -> None:
        """
        A transport that is no TCP connection is written to as usual.
        """
        transport = StringTransport()
        socket_writer(transport)(b"hello")
        self.assertEqual(transport.value(), b"hello")

    def test_straight_to_socket_then_buffered(self) -> None:
        """
        On a real TCP connection with an empty buffer the bytes go to the
        socket at once; what it does not take is left to Twisted's write,
        and while Twisted holds bytes new ones queue behind them.
        """

        sent: list[bytes] = []
        written: list[bytes] = []

        class Socket:
            takes = 3

            def send(self, data: bytes) -> int:
                sent.append(bytes(data[: self.takes]))
                return min(len(data), self.takes)

        connection = tcp.Connection.__new__(tcp.Connection)
        connection.socket = Socket()  # type: ignore[assignment]
        connection.connected = True
        connection.disconnecting = False
        connection.dataBuffer = b""
        connection.offset = 0
        connection._tempDataLen = 0
        connection.write = written.append  # type: ignore[method-assign]
        write = socket_writer(connection)
        write(b"hello")
        self.assertEqual((sent, written), ([b"hel"], [b"lo"]))
        connection._tempDataLen = 2
        write(b"more")
        self.assertEqual((sent, written), ([b"hel"], [b"lo", b"more"]))


class StuckTests(SynchronousTestCase):
    """
    A queue with a C{stuck} callback reports a client the transport keeps
    paused for the stuck timeout, whatever the client sends meanwhile.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.timeout = 30.0
        self.stuck: list[OutputQueue] = []
        self.written: list[bytes] = []
        self.queue = OutputQueue(
            self.written.append,
            1000,
            lambda queue: None,
            self.clock,
            stuck=self.stuck.append,
            stuck_timeout=lambda: self.timeout,
        )

    def test_paused_for_the_timeout(self) -> None:
        """
        Paused for the whole timeout: reported once, with nothing waiting
        needed (a queue far below its bound).
        """
        self.queue.pauseProducing()
        self.clock.advance(29.9)
        self.assertEqual(self.stuck, [])
        self.clock.advance(0.1)
        self.assertEqual(self.stuck, [self.queue])
        self.clock.advance(100)
        self.assertEqual(self.stuck, [self.queue])

    def test_reading_client_not_stuck(self) -> None:
        """
        A client that takes what it is sent now and then (the transport
        resumes the queue) is never reported, however often it pauses;
        one check is pending at a time.
        """
        for _ in range(10):
            self.queue.pauseProducing()
            self.assertLessEqual(len(self.clock.getDelayedCalls()), 1)
            self.clock.advance(20)
            self.queue.resumeProducing()
        self.clock.advance(100)
        self.assertEqual(self.stuck, [])

    def test_counted_from_the_last_pause(self) -> None:
        """
        Resumed and paused again: the timeout runs from the new pause, and
        a timeout changed meanwhile (a reload) applies.
        """
        self.queue.pauseProducing()
        self.clock.advance(20)
        self.queue.resumeProducing()
        self.queue.pauseProducing()
        self.timeout = 15.0
        self.clock.advance(10)
        self.assertEqual(self.stuck, [])
        self.clock.advance(5)
        self.assertEqual(self.stuck, [self.queue])

    def test_stopped_queue_forgets(self) -> None:
        """
        A stopped queue (a closed connection) has nothing pending on the
        clock and reports nothing.
        """
        self.queue.pauseProducing()
        self.queue.stopProducing()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.queue.pauseProducing()
        self.clock.advance(100)
        self.assertEqual(self.stuck, [])

    def test_no_callback_no_timer(self) -> None:
        """
        Without a C{stuck} callback (the telnet door), a pause costs no
        timer.
        """
        queue = OutputQueue(self.written.append, 1000, lambda queue: None, self.clock)
        queue.pauseProducing()
        self.assertEqual(self.clock.getDelayedCalls(), [])
