"""Producer: finds a topic's partitions in ZooKeeper, picks one per message, sends in batches.

Imports: stdlib, metaq_fast.message / errors / limits, zk.paths, client (cluster_client:
ZooKeeper, cluster view and connections; selector; accumulator, sender, results).

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
``sender.RETRY_BACKOFF_MAX_S`` (+-20%, so producers do not come back in step; the failed broker
is avoided for ``dead_broker_backoff_ms``), then its futures fail with the error. No future is
ever left unresolved: ``flush`` and ``close`` wait for every batch. With no broker publishing
the topic ``send`` raises ``NoBrokerError`` at once.

The work is split as in Kafka's Java client: ``accumulator.py`` batches (one open batch per
partition, closed by size or linger; the ``buffer_bytes`` bound; the queues of ready batches),
``sender.py`` is the thread that sends them (connection choice, encoding, replies, retries,
deadlines, finishing the futures). This module is the public face: the configuration, the
calls above, the partition choice, and the result types (``SendResult`` and ``BatchResult``
live in ``results.py``).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future

from .. import message
from ..errors import (
    InvalidArgumentError,
    MessageTooLargeError,
    NoBrokerError,
    ProducerClosedError,
    RequestTimeoutError,
)
from ..limits import BATCH_BYTES_MAX_DEFAULT, MESSAGE_BYTES_MAX_DEFAULT
from ..zk.paths import Partition
from .accumulator import Accumulator, Batch
from .cluster_client import ClusterClient
from .results import BatchResult, SendResult
from .selector import RoundRobinSelector, as_selector
from .sender import Sender, encode_putm

log = logging.getLogger(__name__)


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
        # The configuration as given; the accumulator and the sender keep their own copies.
        self.batch_size = batch_size
        self.batch_bytes = min(batch_bytes, BATCH_BYTES_MAX_DEFAULT)
        self.linger_s = linger_ms / 1000.0
        self.max_in_flight = max_in_flight
        self.retries = retries
        self.retry_backoff_s = retry_backoff_ms / 1000.0
        self.dead_backoff_s = dead_broker_backoff_ms / 1000.0
        self.request_timeout_s = request_timeout_s
        self.max_message_bytes = max_message_bytes
        self.direct = direct
        self.buffer_bytes = buffer_bytes  # unsent data held at most; send() blocks beyond it
        self.block_s = block_s
        self._closed = False
        self._accumulator = Accumulator(
            batch_size=batch_size, batch_bytes=self.batch_bytes, linger_s=self.linger_s,
            max_in_flight=max_in_flight, buffer_bytes=buffer_bytes, block_s=block_s)
        self._append = self._accumulator.append  # bound once: send() calls it per message
        self._sender = Sender(
            self._accumulator, self.cluster, self.pool, self._choose, retries=retries,
            retry_backoff_s=self.retry_backoff_s, dead_backoff_s=self.dead_backoff_s,
            request_timeout_s=request_timeout_s, direct=direct)
        self._dead_until = self._sender.dead_until  # the same dict: _choose reads it per message
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
        future, index = self._append((topic, target.broker_id, target.partition, pinned), topic,
                                     target, outgoing, data, flag)
        return MessageFuture(future, index)

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
        batch = Batch(topic, target, OutgoingMessage(topic, values[0], None, key))
        batch.datas = datas
        batch.flags = flags  # None: every flag is 0
        batch.nbytes = nbytes
        batch.lengths = lengths
        batch.uniform = longest * len(datas) + 20 * len(datas) == nbytes  # all of one size
        batch.pinned = partition is not None
        encode_putm(batch)  # here, in the caller's thread: the sender thread only routes
        self._accumulator.add_closed(batch)
        return batch.future

    def flush_partition(self, topic: str) -> None:
        """Close the open batches of ``topic`` now (no linger)."""
        self._accumulator.flush_topic(topic)

    def flush(self, timeout_s: float | None = None) -> None:
        """Send every queued message now and wait until each one is stored or has failed."""
        self._accumulator.flush(timeout_s)

    def close(self, timeout_s: float | None = 60.0) -> None:
        """Flush, then release connections and the ZooKeeper session. Messages that could not
        be sent in time fail with ``ProducerClosedError``; none is dropped silently."""
        if self._closed:
            return
        try:
            self.flush(timeout_s)
        except RequestTimeoutError as exc:
            log.error("%s", exc)
        self._closed = True
        for batch in self._accumulator.close():  # also stops the sender thread
            self._sender.finish(batch, error=ProducerClosedError(
                f"producer closed before {len(batch.datas)} message(s) to {batch.topic} were sent"))
        self._sender.join(10)
        self._close_cluster()

    @property
    def failed_attempts(self) -> int:
        """Send attempts that failed so far (each retried or the end of its batch)."""
        return self._sender.failed_attempts

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

    # ---- state, for diagnostics (tests print it when a wait fails) ------------------------

    @property
    def _unfinished(self) -> int:
        return self._accumulator.unfinished

    @property
    def _queued(self) -> int:
        return self._accumulator.queued

    @property
    def _in_flight(self) -> dict:
        return self._accumulator.in_flight

    @property
    def _filling(self) -> dict:
        return self._accumulator.filling


__all__ = ["BatchResult", "MessageFuture", "OutgoingMessage", "Producer", "SendResult"]
