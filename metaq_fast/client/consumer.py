"""Consumer groups: MetaQ's group protocol over ZooKeeper, a fetcher, at-least-once delivery.

Imports: stdlib, metaq_fast.errors / names, zk.paths, client (cluster_client: ZooKeeper, cluster
view and connections; group_coordinator: membership, rebalance, claims and commits; fetcher:
gets; balance, offsets, records).

    consumer = Consumer("127.0.0.1:2181", group="billing", topics=["orders"])
    for batch in consumer.poll(timeout_s=1.0):       # per-partition MessageBatch objects
        handle(batch.payloads())
    for msg in consumer:                             # or one ConsumerRecord at a time
        ...
    consumer.close()                                 # commits, leaves the group

Two threads do the work, as aiokafka splits its group coordinator and fetcher: the group
coordinator (client/group_coordinator.py: MetaQ's ZooKeeper protocol, so our consumers and
MetaQ's can share a group, and the periodic offset commits) and the fetcher
(client/fetcher.py: schedule, fetch, decode). This module is what the application sees.

Delivery: ``poll`` returns what was fetched; those records count as consumed when ``poll`` is
called again (or ``commit``/``close``), and only consumed positions are committed (every
``commit_interval_ms``, before a partition is released, and on close). A crash therefore
redelivers at most what was polled since the last commit: at-least-once.

Failed fetches back off (up to ``max_fetch_delay_ms``). ``max_fetch_failures`` failures in a row
at one offset (a damaged record the broker refuses to serve, an answer that fails its checksum)
are reported to the application once: ``on_error(PartitionStuckError)`` if given, else
``poll`` (and so iteration and ``run``) raises it, after the batches fetched before it. With
``skip_corrupt=True`` the consumer then goes on at the next record, where the broker says it
starts (protocol/get_errors.py), counted in ``skipped_records``; the skip counts as consumed
once the error has been reported and ``poll`` is called again. Without it, the partition stays
at that offset, retrying with back-off.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import uuid

from ..errors import InvalidArgumentError
from ..names import validate_group_name, validate_topic_name
from ..zk import paths
from . import balance
from .cluster_client import ClusterClient
from .fetcher import Fetcher
from .group_coordinator import GroupCoordinator
from .offsets import OffsetReader
from .records import ConsumerRecord, MessageBatch, PartitionState, PartitionStuckError

__all__ = ["Consumer", "ConsumerRecord", "MessageBatch", "PartitionStuckError"]

log = logging.getLogger(__name__)

LONG_MAX = 2**63 - 1


class Consumer(ClusterClient):
    def __init__(self, zk_connect: str | None = None, *, group: str, topics=(),
                 zk_root: str = "/meta", zk_client=None, consumer_id: str | None = None,
                 fetch_bytes: int = 1 << 20, commit_interval_ms: float = 5000.0,
                 auto_offset_reset: str = "earliest", max_fetch_delay_ms: float = 5000.0,
                 fetch_timeout_s: float = 10.0, check_crcs: bool = True,
                 queued_batches_max: int = 64, rebalance_backoff_ms: float = 200.0,
                 zk_timeout_s: float = 10.0, zk_session_timeout_s: float = 30.0,
                 strategy: str = "DEFAULT", max_fetch_failures: int = 5, on_error=None,
                 skip_corrupt: bool = False):
        validate_group_name(group)
        if auto_offset_reset not in ("earliest", "latest"):
            raise InvalidArgumentError("auto_offset_reset must be 'earliest' or 'latest'")
        if not isinstance(max_fetch_failures, int) or max_fetch_failures < 1:
            raise InvalidArgumentError("max_fetch_failures must be an int >= 1")
        if rebalance_backoff_ms <= 0 or commit_interval_ms <= 0:
            raise InvalidArgumentError("rebalance_backoff_ms and commit_interval_ms must be > 0")
        self.group = group
        self.root = paths.normalize_root(zk_root)
        id_part = consumer_id or f"{_local_ip()}-{os.getpid()}-{uuid.uuid4()}"
        self.consumer_id = paths.consumer_id(group, id_part)
        self.on_error = on_error
        start_offset = 0 if auto_offset_reset == "earliest" else LONG_MAX
        self._open_cluster("Consumer", zk_connect, zk_client, self.root, zk_timeout_s,
                           zk_session_timeout_s)
        self._polled: list[tuple[PartitionState, int, int]] = []  # awaiting "consumed"
        self._errors: list[Exception] = []  # for poll to raise, one per call
        self._closed = False
        self._fetcher = Fetcher(self.cluster, self.pool, group, fetch_timeout_s=fetch_timeout_s,
                                check_crcs=check_crcs, max_delay_s=max_fetch_delay_ms / 1000.0,
                                max_fetch_failures=max_fetch_failures, skip_corrupt=skip_corrupt,
                                queued_batches_max=queued_batches_max)
        self._group = GroupCoordinator(
            self.zk, self.cluster, root=self.root, group=group, consumer_id=self.consumer_id,
            strategy=balance.strategy(strategy),
            offsets=OffsetReader(self.zk, start_offset, auto_offset_reset),
            fetch_bytes=fetch_bytes, commit_interval_s=commit_interval_ms / 1000.0,
            rebalance_backoff_s=rebalance_backoff_ms / 1000.0,
            on_claimed=self._fetcher.start, on_released=self._forget_polled,
            on_suspended=self._fetcher.pause, on_resumed=self._fetcher.resume)
        self._lock = self._group.lock
        if topics:
            self.subscribe(topics)

    @property
    def topics(self) -> list[str]:
        return list(self._group.topics)

    @property
    def rebalances(self) -> int:
        return self._group.rebalances

    @property
    def fetch_timeouts(self) -> int:
        """Fetches given up because the broker did not answer within ``fetch_timeout_s``."""
        return self._fetcher.fetch_timeouts

    @property
    def skipped_records(self) -> int:
        """Damaged records skipped (``skip_corrupt=True``)."""
        return self._fetcher.skipped_records

    # ---- subscription and assignment ------------------------------------------------------

    def subscribe(self, topics) -> None:
        """Subscribe to ``topics`` (added to earlier subscriptions) and join the group."""
        if isinstance(topics, str):
            topics = [topics]
        for topic in topics:
            validate_topic_name(topic)
        self._group.subscribe(list(topics))

    def assignment(self) -> dict[str, list[str]]:
        """Partitions this consumer owns now, per topic."""
        return self._group.assignment()

    def wait_assignment(self, predicate=None, timeout_s: float = 30.0) -> dict[str, list[str]]:
        """Wait until the group has settled (and ``predicate(assignment)`` holds)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            current = self.assignment()
            if self._group.idle() and (predicate is None or predicate(current)):
                return current
            time.sleep(0.02)
        raise TimeoutError(f"consumer {self.consumer_id}: assignment not settled in {timeout_s} s")

    def _forget_polled(self, state: PartitionState) -> None:
        """A partition let go (called with the lock held): what of it was polled is not ours to
        mark consumed any more; its next owner starts at the committed offset."""
        self._polled = [p for p in self._polled if p[0] is not state]

    # ---- the application's side ------------------------------------------------------------

    def _mark_consumed(self) -> None:
        with self._lock:
            for state, next_offset, last_id in self._polled:
                if state.active:
                    state.consumed = next_offset
                    state.consumed_id = last_id
            self._polled.clear()

    def poll(self, timeout_s: float = 1.0, max_batches: int = 64) -> list[MessageBatch]:
        """Fetched batches (at most ``max_batches``), waiting up to ``timeout_s`` for the first.
        The batches of the previous poll count as consumed from now on."""
        self._mark_consumed()
        if self._errors:  # reported after the batches of the previous poll
            raise self._errors.pop(0)
        out = []
        deadline = time.monotonic() + timeout_s
        while self._fetcher.held:  # ownership in doubt: what is queued waits (or is dropped)
            if time.monotonic() >= deadline:
                return out
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        try:
            item = self._fetcher.fetched.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return out
        while True:
            state, batch = item
            if isinstance(batch, PartitionStuckError):
                error = self._stuck(state, batch)
                if error is not None and not out:
                    raise error
                if error is not None:  # the batches before it first
                    self._errors.append(error)
                    break
            else:
                with self._lock:
                    if state.active and batch.offsets[0] == state.delivered:
                        state.delivered = batch.next_offset
                        state.delivered_id = int(batch.msg_ids[-1])
                        self._polled.append((state, batch.next_offset, state.delivered_id))
                        out.append(batch)
            if len(out) >= max_batches:
                break
            try:
                item = self._fetcher.fetched.get_nowait()
            except queue.Empty:
                break
        return out

    def _stuck(self, state: PartitionState, error: PartitionStuckError) -> Exception | None:
        """An error item of the fetched queue, taken in order: a skip moves what was delivered
        past the damaged record (consumed at the next poll, as a batch would be). The error goes
        to ``on_error``; without one (or if it raises) it is returned for poll to raise."""
        with self._lock:
            if not state.active:
                return None
            if error.skip_to is not None and state.delivered == error.offset:
                state.delivered = error.skip_to
                self._polled.append((state, error.skip_to, state.delivered_id))
        if self.on_error is None:
            return error
        try:
            self.on_error(error)
        except Exception as exc:  # noqa: BLE001 - the application's own: raised by poll
            return exc
        return None

    def __iter__(self):
        """Records one at a time, forever (until ``close``); each counts as consumed when the
        next one is asked for."""
        while not self._closed:
            for batch in self.poll(timeout_s=0.5, max_batches=1):
                yield from batch

    def run(self, listener, stop: threading.Event | None = None, batch: bool = False) -> None:
        """Listener style: call ``listener(record)`` (or ``listener(batch)`` with ``batch=True``)
        for everything fetched, until ``stop`` is set or the consumer is closed. A listener
        that raises stops the loop; what it had not finished is redelivered later."""
        stop = stop or threading.Event()
        while not stop.is_set() and not self._closed:
            for b in self.poll(timeout_s=0.2):
                if batch:
                    listener(b)
                else:
                    for record in b:
                        listener(record)

    # ---- offsets --------------------------------------------------------------------------

    def commit(self) -> None:
        """Write the consumed position of every owned partition to ZooKeeper (changed ones)."""
        self._group.commit()

    def positions(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return {k: s.consumed for k, s in self._group.owned.items()}

    def close(self) -> None:
        """Mark what was polled as consumed, commit, leave the group, release everything."""
        if self._closed:
            return
        self._mark_consumed()
        self._group.close()
        self._closed = True
        self._fetcher.close()
        self._close_cluster()


def _local_ip() -> str:
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            address = info[4][0]
            if not address.startswith("127."):
                return address
    except OSError:
        pass
    return "127.0.0.1"
