"""The producer's sender: the background thread that takes ready batches from the accumulator
and sends them (Kafka's Sender).

Imports: stdlib, numpy, xxhash, metaq_fast.message / backoff / errors / layout / protocol,
zk.paths, client (accumulator, connection, results). The sockets are the connection pool's.

For each batch the sender picks the connection: the worker that owns the partition (``admin
layout``, cached per broker) for a metaq_fast broker, else its main port; a MetaQ broker gets
pipelined MetaQ ``put`` commands. Our ``putm`` is encoded once per batch (records with
client-side CRCs, vectorised; one xxh3 over the request) and kept for its retries.

Every request has a deadline (``request_timeout_s``); an overdue one fails like a dropped
connection. A failed attempt that is retriable (no answer, connection lost, 403 closed
partition, 503 worker restarting) marks a broker it blames dead for ``dead_backoff_s`` and
sends the batch again on another partition (the same one if pinned) after the retry back-off,
up to ``retries`` times; then, or for any other error, its future fails. The reply callbacks
run on connection threads; they only parse and finish or requeue, never block.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future

import numpy as np
import xxhash

from .. import message
from ..backoff import Backoff
from ..errors import (
    BrokerConnectionError,
    MetaqError,
    ProducerClosedError,
    RequestTimeoutError,
    SendError,
)
from ..layout import owner_of
from ..protocol import ResultReply, parse_putm_ok
from ..zk.paths import Partition, parse_broker_url
from .accumulator import Accumulator, Batch
from .connection import next_opaque
from .results import BatchResult

log = logging.getLogger(__name__)

RETRY_BACKOFF_MAX_S = 1.0  # as Kafka's retry.backoff.max.ms


def encode_putm(batch: Batch) -> None:
    """Encode ``batch`` as a ``putm`` body once: ``batch.encoded`` = (index, records,
    positions of the records, xxh3 of index + records). Pure; ``send_batch`` calls it in the
    caller's thread so that the sender thread only routes."""
    datas = batch.datas
    lengths = batch.lengths if batch.lengths is not None else message.lengths_of(datas)
    flags = batch.flags
    flag_arg = 0 if flags is None or not any(flags) else np.asarray(flags, dtype=np.int32)
    crcs = message.crc32_many(datas)
    records = message.encode_records(datas, 0, flag_arg, crcs, lengths, batch.uniform)
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


class Sender:
    """Owns the sender thread, the request deadlines, the dead-broker marks and the cached
    worker layouts. ``choose(topic, first_message, None, exclude=partition)`` picks where a
    retried batch goes (the producer's partition choice, which reads ``dead_until``)."""

    def __init__(self, accumulator: Accumulator, cluster, pool, choose, *, retries: int,
                 retry_backoff_s: float, dead_backoff_s: float, request_timeout_s: float,
                 direct: bool):
        self.acc = accumulator
        self.cluster = cluster
        self.pool = pool
        self.choose = choose
        self.retries = retries
        self.retry_backoff = (Backoff(retry_backoff_s, max(retry_backoff_s, RETRY_BACKOFF_MAX_S),
                                      jitter=0.2)
                              if retry_backoff_s > 0 else None)
        self.dead_backoff_s = dead_backoff_s
        self.request_timeout_s = request_timeout_s
        self.direct = direct
        self.dead_until: dict[int, float] = {}  # broker id -> when to try it again
        # opaque -> (deadline, connection) of every put request waiting for its reply
        self.deadlines: dict[int, tuple[float, object]] = {}
        self.layouts: dict[str, tuple[int, dict[int, int]] | None] = {}
        self.failed_attempts = 0
        self.thread = threading.Thread(target=self._run, name="metaq-producer-sender",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout_s: float | None = None) -> None:
        self.thread.join(timeout_s)

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    # ---- the loop -------------------------------------------------------------------------

    def _run(self) -> None:
        acc = self.acc
        while True:
            to_send = []
            expired = []
            with acc.lock:
                while not acc.closed:
                    now = time.monotonic()
                    to_send, wait = acc.drain_locked(now)
                    expired = self._expired_locked(now)
                    if to_send or expired:
                        break
                    if self.deadlines:  # the first one is the earliest (see _track)
                        due = next(iter(self.deadlines.values()))[0] - now
                        wait = due if wait is None else min(wait, due)
                    acc.wake.wait(wait if wait is not None else 1.0)
                if acc.closed and not to_send:
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
        with self.acc.lock:
            self.deadlines[opaque] = (time.monotonic() + self.request_timeout_s, conn)

    def _untrack(self, opaque: int) -> None:
        with self.acc.lock:
            self.deadlines.pop(opaque, None)

    def _expired_locked(self, now: float) -> list:
        """Pop the requests whose reply is overdue (lock held); ``_run`` fails them."""
        expired = []
        for opaque, (deadline, conn) in self.deadlines.items():
            if deadline > now:
                break
            expired.append((opaque, conn))
        for opaque, _conn in expired:
            del self.deadlines[opaque]
        return expired

    # ---- sending --------------------------------------------------------------------------

    def _dispatch(self, batch: Batch) -> None:
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
            self.finish(batch, error=SendError(500, f"internal error: {exc!r}"))

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
            self.layouts.pop(url, None)  # worker restarting or layout stale: main port
            return conn, True

    def _layout(self, url: str, conn):
        if url in self.layouts:
            return self.layouts[url]
        opaque = next_opaque()
        reply = conn.call(opaque, b"admin layout %d\r\n" % opaque, self.request_timeout_s)
        layout = None
        if isinstance(reply, ResultReply) and reply.code == 200:
            lines = bytes(reply.body).decode().splitlines()
            workers = int(lines[0].split()[1])
            ports = {int(slot): int(port) for _w, slot, port in (l.split() for l in lines[2:])}
            layout = (workers, ports)
        self.layouts[url] = layout
        return layout

    def _send_putm(self, conn, batch: Batch):
        if batch.encoded is None:
            encode_putm(batch)
        index, records, positions, checksum = batch.encoded
        opaque = next_opaque()
        head = b"putm %s %d %d %d %d %d\r\n" % (
            batch.topic.encode("utf-8"), batch.partition.partition, len(batch.datas),
            len(index) + len(records), checksum, opaque)
        self._track(opaque, conn)
        future = conn.submit(opaque, [head, index, memoryview(records)])
        return future, positions, opaque

    def _on_putm_reply(self, batch: Batch, future: Future, positions, opaque: int) -> None:
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
            self.finish(batch, error=SendError(500, f"putm answer holds {len(ids)} ids for "
                                                    f"{len(positions)} messages"))
            return
        self.finish(batch, BatchResult(batch.topic, batch.partition, positions + first_offset, ids))

    def _send_puts(self, conn, batch: Batch) -> None:
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
                    self.finish(batch, BatchResult(batch.topic, batch.partition, offsets, ids))

        for i, (_opaque, f) in enumerate(futures):
            f.add_done_callback(lambda fut, i=i: done(i, fut))

    # ---- outcomes -------------------------------------------------------------------------

    def _attempt_failed(self, batch: Batch, exc: BaseException) -> None:
        self.failed_attempts += 1
        acc = self.acc
        retriable = getattr(exc, "retriable", False)
        if isinstance(exc, BrokerConnectionError) or getattr(exc, "refresh_metadata", False):
            with acc.lock:
                self.dead_until[batch.partition.broker_id] = time.monotonic() + self.dead_backoff_s
        if retriable and batch.attempts <= self.retries and not acc.closed:
            if batch.pinned:
                target = batch.partition  # the user chose it: never move the batch elsewhere
            else:
                try:
                    target = self.choose(batch.topic, batch.first_message, None,
                                         exclude=batch.partition)
                except Exception as no_target:  # noqa: BLE001 - incl. a user selector's error
                    self.finish(batch, error=no_target)
                    return
            log.info("send to %s-%s failed (%s); retrying on %s", batch.topic, batch.partition,
                     exc, target)
            not_before = time.monotonic() + (
                self.retry_backoff.delay(batch.attempts) if self.retry_backoff else 0.0)
            if not acc.requeue(batch, target, not_before):
                # close() has emptied the queues meanwhile: fail it rather than strand it
                self.finish(batch, error=ProducerClosedError(
                    f"producer closed while {len(batch.datas)} message(s) to {batch.topic} "
                    f"waited for a retry (last error: {exc})"))
            return
        self.finish(batch, error=exc)

    def finish(self, batch: Batch, result: BatchResult | None = None,
               error: BaseException | None = None) -> None:
        """Resolve the batch's future (once), outside the lock: its callbacks are the user's."""
        if not self.acc.done(batch):
            return
        if error is not None:
            batch.future.set_exception(error)
        else:
            batch.future.set_result(result)
