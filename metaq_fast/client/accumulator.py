"""The producer's accumulator: outgoing messages gathered into one open batch per partition,
closed by size or linger, and queued until the sender takes them (Kafka's RecordAccumulator).

Imports: the standard library and metaq_fast.errors only. Pure in-memory: no socket, no
ZooKeeper, no encoding; ``sender.py`` drains it and reports back when a batch is done.

A batch is filled per ``(topic, broker id, partition, pinned)`` slot (``pinned``: the user
named the partition, so its retries stay there). It is closed - moved to its slot's queue of
ready batches - when it holds ``batch_size`` messages or ``batch_bytes`` bytes, ``linger_s``
after its first message, or at once by a flush. ``drain_locked`` hands the sender the queued
batches that may go: at most ``max_in_flight`` per slot, none before its retry back-off ends.

Retry order (as Kafka's ``insertInSequenceOrder``): each batch gets a sequence number when it
is first closed. A retry that stays on its partition goes back into its slot's queue before the
first queued batch with a higher number, so the retries of several batches in flight keep
their order among themselves and go before the batches closed after them. A retry moved to
another partition waits out its back-off outside any queue, then joins the back of its new
slot's queue: it holds up no batch of that partition.

Memory: ``buffer_bytes`` bounds the data held until its batch is finished (20 bytes of record
header per message plus its data); beyond it ``append`` waits up to ``block_s`` for room, then
raises ``BufferFullError``, so a producer faster than its brokers slows down instead of
eating memory.

One lock (``lock``, with its condition ``wake``) guards the accumulator and the sender's
request deadlines, so the sender thread waits in one place for all it reacts to: a batch
closed or due, a retry's back-off over, a deadline passed. ``flush`` and a blocked ``append``
wait on the same condition for batches to finish.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future

from ..errors import BufferFullError, ProducerClosedError, RequestTimeoutError

RECORD_OVERHEAD_BYTES = 20  # what a message costs beyond its data (record header)


class Batch:
    """Messages to one partition, sent (and retried) as one request."""

    __slots__ = ("topic", "partition", "datas", "flags", "nbytes", "future", "created_s",
                 "attempts", "not_before_s", "first_message", "closed", "lengths", "encoded",
                 "pinned", "uniform", "sequence")

    def __init__(self, topic: str, partition, first_message):
        self.topic = topic
        self.partition = partition
        self.datas: list = []
        self.flags: list[int] = []
        self.nbytes = 0
        self.future: Future = Future()
        self.created_s = time.monotonic()
        self.attempts = 0
        self.not_before_s = 0.0
        self.first_message = first_message  # what the selector sees when a retry moves it
        self.closed = False
        self.pinned = False  # the user named the partition: retries stay on it
        self.lengths = None  # data lengths, when already known
        self.uniform = None  # whether all data blocks have one size, when already known
        self.encoded = None  # (index bytes, records, positions, xxh3) once encoded
        self.sequence = None  # the order it was first closed in (see Accumulator._close_locked)

    @property
    def key(self) -> tuple:
        return (self.topic, self.partition.broker_id, self.partition.partition, self.pinned)

    def add(self, data, flag: int) -> int:
        self.datas.append(data)
        self.flags.append(flag)
        self.nbytes += RECORD_OVERHEAD_BYTES + len(data)
        return len(self.datas) - 1


class Accumulator:
    def __init__(self, *, batch_size: int, batch_bytes: int, linger_s: float,
                 max_in_flight: int, buffer_bytes: int, block_s: float):
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.linger_s = linger_s
        self.max_in_flight = max_in_flight
        self.buffer_bytes = buffer_bytes
        self.block_s = block_s
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.filling: dict[tuple, Batch] = {}  # slot -> its open batch
        self.queues: dict[tuple, deque] = {}  # slot -> closed batches waiting to go
        self.queued = 0
        # retries moved to another partition, waiting out their back-off (see requeue)
        self.moved: list[Batch] = []
        self.next_sequence = 0
        self.in_flight: dict[tuple, int] = {}  # slot -> batches taken by the sender, not done
        self.unfinished = 0  # batches whose future is not resolved yet
        self.buffered = 0  # bytes of those batches
        self.flushing = 0  # flush() calls waiting: batches close without linger meanwhile
        self.closed = False

    # ---- adding (the caller's thread) -----------------------------------------------------

    def append(self, slot: tuple, topic: str, partition, first_message, data, flag: int):
        """Add one message to ``slot``'s open batch (opened if there is none); returns the
        batch's future and the message's index in it."""
        with self.lock:
            self._check_open_locked()
            self._reserve_locked(RECORD_OVERHEAD_BYTES + len(data))
            batch = self.filling.get(slot)
            if batch is None:
                batch = self.filling[slot] = Batch(topic, partition, first_message)
                batch.pinned = slot[3]
                self.unfinished += 1
                self.wake.notify()
            index = batch.add(data, flag)
            if len(batch.datas) >= self.batch_size or batch.nbytes >= self.batch_bytes:
                self._close_locked(batch)
        return batch.future, index

    def add_closed(self, batch: Batch) -> None:
        """Queue a batch built whole by the caller (``send_batch``)."""
        with self.lock:
            self._check_open_locked()
            self._reserve_locked(batch.nbytes)
            self.unfinished += 1
            self._close_locked(batch)

    def _check_open_locked(self) -> None:
        # Checked under the lock: a send racing close() would otherwise add to an accumulator
        # whose leftovers close() already took, a future nobody would ever resolve.
        if self.closed:
            raise ProducerClosedError("producer is closed")

    def _reserve_locked(self, nbytes: int) -> None:
        """Hold ``nbytes`` more unsent data, waiting (up to ``block_s``) while the buffer is
        full. One batch is always let in, however large: it can never fit otherwise."""
        if self.buffered + nbytes > self.buffer_bytes and self.buffered:
            deadline = time.monotonic() + self.block_s
            while self.buffered + nbytes > self.buffer_bytes and self.buffered:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed:
                    raise BufferFullError(
                        f"{self.buffered} bytes wait to be sent (buffer_bytes={self.buffer_bytes}) "
                        f"and none left in {self.block_s} s; are the brokers reachable?")
                self.wake.wait(remaining)
        self.buffered += nbytes

    def _close_locked(self, batch: Batch, in_sequence: bool = False) -> None:
        """Move a batch from filling to its slot's queue: at the back, or (``in_sequence``, a
        retry on its own partition) before the first queued batch closed after it, which it
        was sent before. Its sequence number is given the first time only."""
        if batch.closed:
            return
        batch.closed = True
        if batch.sequence is None:
            batch.sequence = self.next_sequence
            self.next_sequence += 1
        key = batch.key
        if self.filling.get(key) is batch:
            del self.filling[key]
        queue = self.queues.get(key)
        if queue is None:
            queue = self.queues[key] = deque()
        if in_sequence:
            for i, queued in enumerate(queue):
                if queued.sequence > batch.sequence:
                    queue.insert(i, batch)
                    break
            else:
                queue.append(batch)
        else:
            queue.append(batch)
        self.queued += 1
        self.wake.notify_all()

    # ---- flushing and closing -------------------------------------------------------------

    def flush_topic(self, topic: str) -> None:
        """Close the open batches of ``topic`` now (no linger)."""
        with self.lock:
            for slot, batch in list(self.filling.items()):
                if slot[0] == topic:
                    self._close_locked(batch)

    def flush(self, timeout_s: float | None = None) -> None:
        """Close every open batch now and wait until every batch is finished."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self.lock:
            self.flushing += 1
            for batch in list(self.filling.values()):
                self._close_locked(batch)
            try:
                while self.unfinished:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise RequestTimeoutError(f"flush: {self.unfinished} batch(es) still "
                                                  f"unanswered after {timeout_s} s")
                    self.wake.wait(remaining if remaining is not None else 0.5)
            finally:
                self.flushing -= 1

    def close(self) -> list[Batch]:
        """Refuse retries from now on and stop the sender; returns the batches not taken yet
        (open or queued), for the caller to fail."""
        with self.lock:
            self.closed = True
            leftovers = (list(self.filling.values()) + self.moved
                         + [b for q in self.queues.values() for b in q])
            self.filling.clear()
            self.moved = []
            self.queues.clear()
            self.queued = 0
            self.wake.notify_all()
        return leftovers

    # ---- the sender's side ----------------------------------------------------------------

    def drain_locked(self, now: float) -> tuple[list[Batch], float | None]:
        """Close the batches whose linger is over (all of them while a flush waits), and take
        the queued batches that may go now. Returns them and the seconds until the next one is
        due (None: nothing is). Lock held."""
        to_send: list[Batch] = []
        wait = None
        if self.filling:
            for batch in list(self.filling.values()):
                due = batch.created_s + self.linger_s
                if due <= now or self.flushing:
                    self._close_locked(batch)
                else:
                    wait = due - now if wait is None else min(wait, due - now)
        if self.moved:
            waiting = []
            for batch in self.moved:
                if batch.not_before_s <= now:
                    self._close_locked(batch)  # at the back of its new slot's queue
                else:
                    waiting.append(batch)
                    delay = batch.not_before_s - now
                    wait = delay if wait is None else min(wait, delay)
            self.moved = waiting
        if self.queued:
            in_flight = self.in_flight
            for key, queue in self.queues.items():
                flying = in_flight.get(key, 0)
                while queue and flying < self.max_in_flight:
                    head = queue[0]
                    if head.not_before_s > now:
                        delay = head.not_before_s - now
                        wait = delay if wait is None else min(wait, delay)
                        break
                    to_send.append(queue.popleft())
                    flying += 1
                in_flight[key] = flying
            self.queued -= len(to_send)
        return to_send, wait

    def requeue(self, batch: Batch, partition, not_before_s: float) -> bool:
        """Queue a failed batch again, to ``partition``, not before ``not_before_s``; False
        (and nothing done) once closed, as nobody would read the queue.

        On the same partition it goes before the queued batches closed after it (sequence
        order, as Kafka re-enqueues): they were sent after it and wait behind its back-off, so
        with ``max_in_flight=1`` a partition's messages are stored in send order across
        retries, and several retries of one slot come out in the order they were first sent.

        Moved to another partition, it goes behind what is queued there, and only once its
        back-off is over (it waits in ``moved`` meanwhile): queued at once, its back-off would
        hold that healthy partition's queue, as ``drain_locked`` stops at a head backing off.
        The back-off itself is kept because, without it, when every broker fails the batch
        would hop from one failing partition to the next with no pause (once all are marked
        dead the partition choice falls back to all of them) and spend all its retries in a few
        milliseconds instead of riding out the outage."""
        with self.lock:
            if self.closed:
                return False
            self._release_locked(batch)  # under the old key, before the partition changes
            moved = partition != batch.partition
            batch.partition = partition
            batch.not_before_s = not_before_s
            batch.closed = False
            if moved and not_before_s > time.monotonic():
                self.moved.append(batch)
                self.wake.notify_all()  # the sender's wait may now end sooner
            else:
                self._close_locked(batch, in_sequence=not moved)
        return True

    def done(self, batch: Batch) -> bool:
        """Account for a finished batch (its slot's in-flight count, its buffer bytes) and
        wake the waiters; False if it was finished already. The caller resolves its future."""
        with self.lock:
            if batch.future.done():
                return False
            self._release_locked(batch)
            self.unfinished -= 1
            self.buffered -= batch.nbytes
            self.wake.notify_all()
        return True

    def _release_locked(self, batch: Batch) -> None:
        key = batch.key
        count = self.in_flight.get(key, 0) - 1
        if count > 0:
            self.in_flight[key] = count
        else:
            self.in_flight.pop(key, None)
