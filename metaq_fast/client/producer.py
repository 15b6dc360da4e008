"""Producer: finds a topic's partitions in ZooKeeper, picks one per message, sends in batches.

Imports: stdlib, numpy, xxhash, metaq_fast.message / protocol / errors / layout, zk.paths,
client (cluster_client: ZooKeeper, cluster view and connections; connection, selector).

    producer = Producer("127.0.0.1:2181")
    producer.send("topic", b"payload").result()          # -> SendResult(partition, offset, id)
    producer.send_batch("topic", [b"a", b"b"]).result()   # one request, one partition
    producer.close()

Partitions are every broker's ``topics-pub`` entry, ordered numerically by (brokerId,
partition) and kept current by ZooKeeper watches. ``send`` asks the selector for a partition per
message (round robin by default; MetaQ's first pick is index 1) and adds the message to that
partition's open batch; a background sender closes a batch when it holds ``batch_size`` messages
or ``batch_bytes`` bytes, or ``linger_ms`` after its first message, encodes it once (records with
client-side CRCs, vectorised; one xxh3 over the request) and sends it as our ``putm`` straight to
the worker that owns the partition (``admin layout``). Against a MetaQ broker the batch goes as
pipelined MetaQ ``put`` commands instead.

Failures: a broker that does not answer, a dropped connection or a retriable error (403 closed
partition, 503 worker restarting) fails the attempt; the batch is tried again on another
partition up to ``retries`` times, after ``retry_backoff_ms`` doubled per retry up to
``RETRY_BACKOFF_MAX_S`` (+-20%, so producers do not come back in step; the failed broker is
avoided for ``dead_broker_backoff_ms``), then its futures fail with the error. No future is ever left unresolved: ``flush`` and ``close``
wait for every batch. With no broker publishing the topic ``send`` raises ``NoBrokerError``
at once.
"""

from __future__ import annotations

import logging
from collections import deque
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import xxhash

from .. import message
from ..backoff import Backoff
from ..errors import (
    BrokerConnectionError,
    BufferFullError,
    InvalidArgumentError,
    MessageTooLargeError,
    MetaqError,
    NoBrokerError,
    ProducerClosedError,
    RequestTimeoutError,
    SendError,
)
from ..layout import owner_of
from ..limits import BATCH_BYTES_MAX_DEFAULT, MESSAGE_BYTES_MAX_DEFAULT
from ..protocol import ResultReply, parse_putm_ok
from ..zk.paths import Partition, parse_broker_url
from .cluster_client import ClusterClient
from .connection import next_opaque
from .selector import RoundRobinSelector, as_selector

log = logging.getLogger(__name__)

RETRY_BACKOFF_MAX_S = 1.0  # as Kafka's retry.backoff.max.ms


@dataclass(frozen=True, slots=True)
class SendResult:
    """Where a message went: MetaQ's SendResult (partition ``"<brokerId>-<partition>"``)."""

    topic: str
    partition: Partition
    offset: int
    msg_id: int


class BatchResult:
    """Where a batch went: one partition, consecutive records."""

    __slots__ = ("topic", "partition", "offsets", "msg_ids")

    def __init__(self, topic: str, partition: Partition, offsets: np.ndarray, msg_ids: np.ndarray):
        self.topic = topic
        self.partition = partition
        self.offsets = offsets
        self.msg_ids = msg_ids

    def __len__(self) -> int:
        return len(self.msg_ids)

    def __getitem__(self, i: int) -> SendResult:
        return SendResult(self.topic, self.partition, int(self.offsets[i]), int(self.msg_ids[i]))

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


class OutgoingMessage:
    """What a selector sees: ``value``, ``attribute`` and an optional ``key``."""

    __slots__ = ("topic", "value", "attribute", "key")

    def __init__(self, topic, value, attribute=None, key=None):
        self.topic, self.value, self.attribute, self.key = topic, value, attribute, key


class MessageFuture:
    """The result of one ``send``: resolves with its ``SendResult`` (or the batch's error)."""

    __slots__ = ("_batch", "_index")

    def __init__(self, batch_future: Future, index: int):
        self._batch = batch_future
        self._index = index

    def result(self, timeout: float | None = None) -> SendResult:
        return self._batch.result(timeout)[self._index]

    def exception(self, timeout: float | None = None):
        return self._batch.exception(timeout)

    def done(self) -> bool:
        return self._batch.done()

    def add_done_callback(self, fn) -> None:
        self._batch.add_done_callback(lambda _f: fn(self))


class _Batch:
    __slots__ = ("topic", "partition", "datas", "flags", "nbytes", "future", "created_s",
                 "attempts", "not_before_s", "first_message", "closed", "lengths", "encoded",
                 "pinned", "uniform")

    def __init__(self, topic: str, partition: Partition, first_message):
        self.topic = topic
        self.partition = partition
        self.datas: list = []
        self.flags: list[int] = []
        self.nbytes = 0
        self.future: Future = Future()
        self.created_s = time.monotonic()
        self.attempts = 0
        self.not_before_s = 0.0
        self.first_message = first_message
        self.closed = False
        self.pinned = False  # the user named the partition: retries stay on it
        self.lengths = None  # data lengths, when already known
        self.uniform = None  # whether all data blocks have one size, when already known
        self.encoded = None  # (index bytes, records, positions, xxh3) once encoded

    @property
    def key(self) -> tuple:
        return (self.topic, self.partition.broker_id, self.partition.partition, self.pinned)

    def add(self, data, flag: int) -> int:
        self.datas.append(data)
        self.flags.append(flag)
        self.nbytes += 20 + len(data)
        return len(self.datas) - 1


class Producer(ClusterClient):
    def __init__(self, zk_connect: str | None = None, *, zk_root: str = "/meta",
                 zk_client=None, selector=None, batch_size: int = 1000,
                 batch_bytes: int = 1 << 20, linger_ms: float = 5.0, max_in_flight: int = 8,
                 retries: int = 3, retry_backoff_ms: float = 100.0,
                 dead_broker_backoff_ms: float = 2000.0, request_timeout_s: float = 10.0,
                 max_message_bytes: int = MESSAGE_BYTES_MAX_DEFAULT, direct: bool = True,
                 zk_timeout_s: float = 10.0, zk_session_timeout_s: float = 30.0,
                 buffer_bytes: int = 64 << 20, block_s: float = 10.0):
        if batch_size < 1 or batch_bytes < 1 or max_in_flight < 1 or retries < 0:
            raise InvalidArgumentError("batch_size, batch_bytes, max_in_flight must be >= 1 and "
                                       "retries >= 0")
        self._open_cluster("Producer", zk_connect, zk_client, zk_root, zk_timeout_s,
                           zk_session_timeout_s)
        self.selector = as_selector(selector) if selector is not None else RoundRobinSelector()
        self.batch_size = batch_size
        self.batch_bytes = min(batch_bytes, BATCH_BYTES_MAX_DEFAULT)
        self.linger_s = linger_ms / 1000.0
        self.max_in_flight = max_in_flight
        self.retries = retries
        self.retry_backoff_s = retry_backoff_ms / 1000.0
        self._retry_backoff = (Backoff(self.retry_backoff_s,
                                       max(self.retry_backoff_s, RETRY_BACKOFF_MAX_S), jitter=0.2)
                               if self.retry_backoff_s > 0 else None)
        self.dead_backoff_s = dead_broker_backoff_ms / 1000.0
        self.request_timeout_s = request_timeout_s
        self.max_message_bytes = max_message_bytes
        self.direct = direct
        self.buffer_bytes = buffer_bytes  # unsent data held at most; send() blocks beyond it
        self.block_s = block_s
        self._buffered = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._filling: dict[tuple, _Batch] = {}  # (topic, broker id, partition) -> open batch
        self._queues: dict[tuple, deque] = {}  # closed batches waiting to go, per partition
        self._queued = 0
        self._in_flight: dict[tuple, int] = {}
        self._unfinished = 0  # batches whose future is not resolved yet
        self._dead_until: dict[int, float] = {}
        # opaque -> (deadline, connection) of every put request waiting for its reply
        self._deadlines: dict[int, tuple[float, object]] = {}
        self._layouts: dict[str, tuple[int, dict[int, int]] | None] = {}
        self._flushing = 0
        self._closed = False
        self._stop = False
        self.failed_attempts = 0
        self._sender = threading.Thread(target=self._run, name="metaq-producer-sender", daemon=True)
        self._sender.start()

    # ---- public API ---------------------------------------------------------------------

    def partitions_for(self, topic: str) -> list[Partition]:
        """The topic's partitions, ordered by (brokerId, partition), from ZooKeeper."""
        return self.cluster.publish_partitions(topic)

    def send(self, topic: str, value, *, attribute: str | None = None, key=None,
             partition: Partition | str | None = None) -> MessageFuture:
        """Queue one message; its future resolves to a ``SendResult`` once stored."""
        self._check_open()
        if not isinstance(value, (bytes, bytearray, memoryview)):
            # caught here, not in the sender thread where it would fail a whole shared batch
            raise InvalidArgumentError(f"a message value must be bytes-like, got {type(value).__name__}")
        data, flag = message.encode_data(value, attribute) if attribute is not None else (value, 0)
        if len(data) > self.max_message_bytes:
            raise MessageTooLargeError(
                f"message of {len(data)} bytes is larger than the limit of {self.max_message_bytes}")
        outgoing = OutgoingMessage(topic, value, attribute, key)
        target = self._choose(topic, outgoing, partition)
        pinned = partition is not None
        slot = (topic, target.broker_id, target.partition, pinned)
        with self._lock:
            self._reserve_buffer_locked(20 + len(data))
            batch = self._filling.get(slot)
            if batch is None:
                batch = self._filling[slot] = _Batch(topic, target, outgoing)
                batch.pinned = pinned
                self._unfinished += 1
                self._wake.notify()
            index = batch.add(data, flag)
            if len(batch.datas) >= self.batch_size or batch.nbytes >= self.batch_bytes:
                self._close_batch(batch)
        return MessageFuture(batch.future, index)

    def send_sync(self, topic: str, value, *, attribute: str | None = None, key=None,
                  partition: Partition | str | None = None, timeout_s: float | None = None) -> SendResult:
        """Send one message now and wait for its ``SendResult``."""
        future = self.send(topic, value, attribute=attribute, key=key, partition=partition)
        self.flush_partition(topic)
        return future.result(timeout_s if timeout_s is not None else self.request_timeout_s * (self.retries + 2))

    def send_batch(self, topic: str, values, *, attributes=None, key=None,
                   partition: Partition | str | None = None) -> Future:
        """Send ``values`` together, to one partition, as one request; the future resolves to
        a ``BatchResult`` (offsets and ids of every message, in order)."""
        self._check_open()
        values = list(values)
        if not values:
            raise InvalidArgumentError("send_batch needs at least one value")
        if attributes is not None:
            attributes = list(attributes)
            if len(attributes) != len(values):  # zip would drop the extra messages silently
                raise InvalidArgumentError(f"{len(values)} values but {len(attributes)} attributes")
            encoded = [message.encode_data(v, a) if a is not None else (v, 0)
                       for v, a in zip(values, attributes)]
            datas = [d for d, _ in encoded]
            flags = [f for _, f in encoded]
        else:
            datas, flags = values, None
        lengths = message.lengths_of(datas)
        longest = int(lengths.max())
        if longest > self.max_message_bytes:
            raise MessageTooLargeError(f"a message of the batch is larger than the limit of "
                                       f"{self.max_message_bytes}")
        nbytes = int(lengths.sum()) + 20 * len(datas)
        if nbytes > self.batch_bytes:
            raise MessageTooLargeError(f"batch of {nbytes} bytes is larger than batch_bytes "
                                       f"{self.batch_bytes}")
        target = self._choose(topic, OutgoingMessage(topic, values[0], None, key), partition)
        batch = _Batch(topic, target, OutgoingMessage(topic, values[0], None, key))
        batch.datas = datas
        batch.flags = flags  # None: every flag is 0
        batch.nbytes = nbytes
        batch.lengths = lengths
        batch.uniform = longest * len(datas) + 20 * len(datas) == nbytes  # all of one size
        batch.pinned = partition is not None
        self._encode_putm(batch)  # here, in the caller's thread: the sender thread only routes
        with self._lock:
            self._reserve_buffer_locked(batch.nbytes)
            self._unfinished += 1
            self._close_batch(batch)
        return batch.future

    def flush_partition(self, topic: str) -> None:
        """Close the open batches of ``topic`` now (no linger)."""
        with self._lock:
            for slot, batch in list(self._filling.items()):
                if slot[0] == topic:
                    self._close_batch(batch)

    def flush(self, timeout_s: float | None = None) -> None:
        """Send every queued message now and wait until each one is stored or has failed."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._lock:
            self._flushing += 1
            for batch in list(self._filling.values()):
                self._close_batch(batch)
            try:
                while self._unfinished:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise RequestTimeoutError(f"flush: {self._unfinished} batch(es) still "
                                                  f"unanswered after {timeout_s} s")
                    self._wake.wait(remaining if remaining is not None else 0.5)
            finally:
                self._flushing -= 1

    def close(self, timeout_s: float | None = 60.0) -> None:
        """Flush, then release connections and the ZooKeeper session. Messages that could not
        be sent in time fail with ``ProducerClosedError``; none is dropped silently."""
        if self._closed:
            return
        try:
            self.flush(timeout_s)
        except RequestTimeoutError as exc:
            log.error("%s", exc)
        with self._lock:
            self._closed = True
            self._stop = True
            leftovers = list(self._filling.values()) + [b for q in self._queues.values() for b in q]
            self._filling.clear()
            self._queues.clear()
            self._queued = 0
            self._wake.notify_all()
        for batch in leftovers:
            self._finish(batch, error=ProducerClosedError(
                f"producer closed before {len(batch.datas)} message(s) to {batch.topic} were sent"))
        self._sender.join(10)
        self._close_cluster()

    def _reserve_buffer_locked(self, nbytes: int) -> None:
        """Hold ``nbytes`` more unsent data, waiting (up to ``block_s``) while the buffer is
        full: a producer faster than the brokers slows down instead of eating memory."""
        if self._buffered + nbytes > self.buffer_bytes and self._buffered:
            deadline = time.monotonic() + self.block_s
            while self._buffered + nbytes > self.buffer_bytes and self._buffered:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    raise BufferFullError(
                        f"{self._buffered} bytes wait to be sent (buffer_bytes={self.buffer_bytes}) "
                        f"and none left in {self.block_s} s; are the brokers reachable?")
                self._wake.wait(remaining)
        self._buffered += nbytes

    # ---- partition choice -----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ProducerClosedError("the producer is closed")

    def _choose(self, topic: str, outgoing, partition, exclude: Partition | None = None) -> Partition:
        if partition is not None:
            return partition if isinstance(partition, Partition) else Partition.parse(partition)
        partitions = self.cluster.publish_partitions(topic)
        if not partitions:
            raise NoBrokerError(f"There is no aviable partition for topic {topic},maybe you don't "
                                "publish it at first? (no broker publishes it in ZooKeeper)")
        now = time.monotonic()
        alive = [p for p in partitions
                 if self._dead_until.get(p.broker_id, 0) <= now and p != exclude]
        return self.selector.select(topic, alive or partitions, outgoing)

    # ---- the sender ------------------------------------------------------------------------

    def _close_batch(self, batch: _Batch) -> None:
        """Move a batch from filling to its partition's queue (lock held)."""
        if batch.closed:
            return
        batch.closed = True
        key = batch.key
        if self._filling.get(key) is batch:
            del self._filling[key]
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
        queue.append(batch)
        self._queued += 1
        self._wake.notify_all()

    def _run(self) -> None:
        while True:
            to_send = []
            expired = []
            with self._lock:
                while not self._stop:
                    now = time.monotonic()
                    wait = None
                    if self._filling:
                        for batch in list(self._filling.values()):
                            due = batch.created_s + self.linger_s
                            if due <= now or self._flushing:
                                self._close_batch(batch)
                            else:
                                wait = due - now if wait is None else min(wait, due - now)
                    if self._queued:
                        for key, queue in self._queues.items():
                            flying = self._in_flight.get(key, 0)
                            while queue and flying < self.max_in_flight:
                                head = queue[0]
                                if head.not_before_s > now:
                                    delay = head.not_before_s - now
                                    wait = delay if wait is None else min(wait, delay)
                                    break
                                to_send.append(queue.popleft())
                                flying += 1
                            self._in_flight[key] = flying
                        self._queued -= len(to_send)
                    expired = self._expired_locked(now)
                    if to_send or expired:
                        break
                    if self._deadlines:  # the first one is the earliest (see _track)
                        due = next(iter(self._deadlines.values()))[0] - now
                        wait = due if wait is None else min(wait, due)
                    self._wake.wait(wait if wait is not None else 1.0)
                if self._stop and not to_send:
                    return
            for opaque, conn in expired:
                conn.fail_request(opaque, RequestTimeoutError(
                    f"no answer from broker {conn.name} in {self.request_timeout_s} s"))
            for batch in to_send:
                self._dispatch(batch)

    def _track(self, opaque: int, conn) -> None:
        """Wait at most ``request_timeout_s`` for the reply to ``opaque``: ``_run`` fails it
        with ``RequestTimeoutError`` after that (retriable: the batch goes elsewhere). Called
        on the sender thread, before the request goes out; with one timeout for all, the
        dict's insertion order is deadline order."""
        with self._lock:
            self._deadlines[opaque] = (time.monotonic() + self.request_timeout_s, conn)

    def _untrack(self, opaque: int) -> None:
        with self._lock:
            self._deadlines.pop(opaque, None)

    def _expired_locked(self, now: float) -> list:
        """Pop the requests whose reply is overdue (lock held); ``_run`` fails them."""
        expired = []
        for opaque, (deadline, conn) in self._deadlines.items():
            if deadline > now:
                break
            expired.append((opaque, conn))
        for opaque, _conn in expired:
            del self._deadlines[opaque]
        return expired

    def _dispatch(self, batch: _Batch) -> None:
        batch.attempts += 1
        try:
            conn, fast = self._connection_for(batch.topic, batch.partition)
            if fast:
                future, positions, opaque = self._send_putm(conn, batch)
                future.add_done_callback(
                    lambda f: self._on_putm_reply(batch, f, positions, opaque))
            else:
                self._send_puts(conn, batch)
        except MetaqError as exc:
            self._attempt_failed(batch, exc)
        except Exception as exc:  # a bug must not kill the sender and hang every future
            log.exception("sending a batch to %s-%s failed unexpectedly", batch.topic, batch.partition)
            self._finish(batch, error=SendError(500, f"internal error: {exc!r}"))

    def _connection_for(self, topic: str, partition: Partition):
        url = self.cluster.broker_url(partition.broker_id)
        if url is None:
            raise BrokerConnectionError(f"broker {partition.broker_id} (partition "
                                        f"{topic}-{partition}) is not registered in ZooKeeper")
        host, port = parse_broker_url(url)
        conn = self.pool.get(host, port)
        if not conn.is_metaq_fast(self.request_timeout_s):
            return conn, False
        if not self.direct:
            return conn, True
        layout = self._layout(url, conn)
        if layout is None:
            return conn, True
        workers, ports = layout
        direct_port = ports.get(owner_of(topic, partition.partition, workers))
        if direct_port is None:
            return conn, True
        try:
            return self.pool.get(host, direct_port), True
        except BrokerConnectionError:
            self._layouts.pop(url, None)  # worker restarting or layout stale: main port
            return conn, True

    def _layout(self, url: str, conn):
        if url in self._layouts:
            return self._layouts[url]
        opaque = next_opaque()
        reply = conn.call(opaque, b"admin layout %d\r\n" % opaque, self.request_timeout_s)
        layout = None
        if isinstance(reply, ResultReply) and reply.code == 200:
            lines = bytes(reply.body).decode().splitlines()
            workers = int(lines[0].split()[1])
            ports = {int(slot): int(port) for _w, slot, port in (l.split() for l in lines[2:])}
            layout = (workers, ports)
        self._layouts[url] = layout
        return layout

    def _encode(self, batch: _Batch):
        datas = batch.datas
        lengths = batch.lengths if batch.lengths is not None else message.lengths_of(datas)
        flags = batch.flags
        flag_arg = 0 if flags is None or not any(flags) else np.asarray(flags, dtype=np.int32)
        crcs = message.crc32_many(datas)
        records = message.encode_records(datas, 0, flag_arg, crcs, lengths, batch.uniform)
        return lengths, crcs, records

    def _encode_putm(self, batch: _Batch) -> None:
        lengths, _crcs, records = self._encode(batch)
        index = lengths.astype(">u4").tobytes()
        digest = xxhash.xxh3_64()
        digest.update(index)
        digest.update(records)
        if batch.uniform:
            stride = int(lengths[0]) + 20
            positions = np.arange(0, stride * len(lengths), stride, dtype=np.int64)
        else:
            positions = message.positions_from_lengths(lengths)
        batch.encoded = (index, records, positions, digest.intdigest())

    def _send_putm(self, conn, batch: _Batch):
        if batch.encoded is None:
            self._encode_putm(batch)
        index, records, positions, checksum = batch.encoded
        opaque = next_opaque()
        head = b"putm %s %d %d %d %d %d\r\n" % (
            batch.topic.encode("utf-8"), batch.partition.partition, len(batch.datas),
            len(index) + len(records), checksum, opaque)
        self._track(opaque, conn)
        future = conn.submit(opaque, [head, index, memoryview(records)])
        return future, positions, opaque

    def _on_putm_reply(self, batch: _Batch, future: Future, positions, opaque: int) -> None:
        self._untrack(opaque)
        try:
            reply = future.result()
        except MetaqError as exc:
            self._attempt_failed(batch, exc)
            return
        if not isinstance(reply, ResultReply):
            self._attempt_failed(batch, SendError(500, f"unexpected reply {reply!r}"))
            return
        if reply.code != 200:
            self._attempt_failed(batch, SendError(reply.code, bytes(reply.body).decode("utf-8", "replace")))
            return
        try:
            _partition, first_offset, ids = parse_putm_ok(reply.body)
        except MetaqError as exc:
            self._attempt_failed(batch, exc)
            return
        if len(ids) != len(positions):
            self._finish(batch, error=SendError(500, f"putm answer holds {len(ids)} ids for "
                                                     f"{len(positions)} messages"))
            return
        self._finish(batch, BatchResult(batch.topic, batch.partition, positions + first_offset, ids))

    def _send_puts(self, conn, batch: _Batch) -> None:
        """A MetaQ broker: the batch as pipelined MetaQ puts (7-token form, with checksums)."""
        crcs = message.crc32_many(batch.datas)
        topic_b = batch.topic.encode("utf-8")
        futures = []
        buffers = []
        flags = batch.flags if batch.flags is not None else [0] * len(batch.datas)
        for data, flag, crc in zip(batch.datas, flags, crcs.tolist()):
            opaque = next_opaque()
            buffers.append(b"put %s %d %d %d %d %d\r\n" % (topic_b, batch.partition.partition,
                                                          len(data), flag, crc, opaque))
            buffers.append(data)
            futures.append((opaque, conn.submit_later(opaque)))
            self._track(opaque, conn)
        conn.send_buffers(buffers)
        remaining = [len(futures)]
        offsets = np.zeros(len(futures), dtype=np.int64)
        ids = np.zeros(len(futures), dtype=np.int64)
        failed = []

        def done(i, f):
            self._untrack(futures[i][0])
            try:
                reply = f.result()
                if not isinstance(reply, ResultReply) or reply.code != 200:
                    raise SendError(getattr(reply, "code", 500),
                                    bytes(getattr(reply, "body", b"")).decode("utf-8", "replace"))
                msg_id, _p, offset = bytes(reply.body).split(b" ")
                ids[i], offsets[i] = int(msg_id), int(offset)
            except MetaqError as exc:
                failed.append(exc)
            except ValueError:  # a callback must not die: the batch's future would hang
                failed.append(SendError(500, f"malformed put answer {bytes(reply.body)[:80]!r}"))
            remaining[0] -= 1
            if remaining[0] == 0:
                if failed:
                    self._attempt_failed(batch, failed[0])  # the whole batch is tried again
                else:
                    self._finish(batch, BatchResult(batch.topic, batch.partition, offsets, ids))

        for i, (_opaque, f) in enumerate(futures):
            f.add_done_callback(lambda fut, i=i: done(i, fut))

    def _attempt_failed(self, batch: _Batch, exc: BaseException) -> None:
        self.failed_attempts += 1
        retriable = getattr(exc, "retriable", False)
        if isinstance(exc, BrokerConnectionError) or getattr(exc, "refresh_metadata", False):
            with self._lock:
                self._dead_until[batch.partition.broker_id] = time.monotonic() + self.dead_backoff_s
        if retriable and batch.attempts <= self.retries and not self._closed:
            if batch.pinned:
                target = batch.partition  # the user chose it: never move the batch elsewhere
            else:
                try:
                    target = self._choose(batch.topic, batch.first_message, None,
                                          exclude=batch.partition)
                except Exception as no_target:  # noqa: BLE001 - incl. a user selector's error
                    self._finish(batch, error=no_target)
                    return
            log.info("send to %s-%s failed (%s); retrying on %s", batch.topic, batch.partition,
                     exc, target)
            with self._lock:
                requeued = not self._closed  # else close() has emptied the queues meanwhile
                if requeued:
                    self._release(batch)
                    batch.partition = target
                    batch.not_before_s = time.monotonic() + (
                        self._retry_backoff.delay(batch.attempts) if self._retry_backoff else 0.0)
                    batch.closed = False
                    self._close_batch(batch)
                    self._wake.notify_all()
            if not requeued:  # fail it rather than strand it in a queue nobody reads
                self._finish(batch, error=ProducerClosedError(
                    f"producer closed while {len(batch.datas)} message(s) to {batch.topic} "
                    f"waited for a retry (last error: {exc})"))
            return
        self._finish(batch, error=exc)

    def _release(self, batch: _Batch) -> None:
        key = batch.key
        count = self._in_flight.get(key, 0) - 1
        if count > 0:
            self._in_flight[key] = count
        else:
            self._in_flight.pop(key, None)

    def _finish(self, batch: _Batch, result: BatchResult | None = None,
                error: BaseException | None = None) -> None:
        with self._lock:
            if batch.future.done():
                return
            self._release(batch)
            self._unfinished -= 1
            self._buffered -= batch.nbytes
            self._wake.notify_all()
        if error is not None:
            batch.future.set_exception(error)
        else:
            batch.future.set_result(result)


__all__ = ["BatchResult", "MessageFuture", "OutgoingMessage", "Producer", "SendResult"]
