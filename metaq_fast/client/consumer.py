"""Consumer groups: MetaQ's ZooKeeper protocol, a fetcher, and at-least-once delivery.

Imports: stdlib, kazoo, metaq_fast.protocol / errors / names, zk.paths, client (cluster_client:
ZooKeeper, cluster view and connections; connection, balance, offsets, records: the record and
batch types live there).

    consumer = Consumer("127.0.0.1:2181", group="billing", topics=["orders"])
    for batch in consumer.poll(timeout_s=1.0):       # per-partition MessageBatch objects
        handle(batch.payloads())
    for msg in consumer:                             # or one ConsumerRecord at a time
        ...
    consumer.close()                                 # commits, leaves the group

Group protocol (reference sections 8.1-8.5, so our consumers and MetaQ's can share a group):

* the consumer registers ``consumers/<group>/ids/<group>_<id>`` (ephemeral, data: its topics);
* on every change of the group's ids, of a topic's ``topics-sub`` brokers, or of the ZooKeeper
  session, a coordinator thread rebalances: consumer ids and ``<brokerId>-<partition>`` strings
  sorted as strings, MetaQ's DEFAULT split (``balance.assign``);
* partitions it no longer gets are released: fetching stops, offsets are committed, then its
  ``owners`` node is deleted; partitions it gets are claimed with an ephemeral ``owners`` node.
  A node still held by another consumer (it has not released yet) makes the claim wait and retry
  (bounded back-off) until it is free: a partition never has two owners in a group;
* a claimed partition starts at its committed ``offsets`` node (``<msgId>-<offset>``), else (no
  node, or one that does not hold an offset: logged once, client/offsets.py) at the earliest (or
  latest) offset.

States of the coordinator (kazoo partitioner style): JOINING -> BALANCED <-> REBALANCING; on
SUSPENDED it claims nothing new; on LOST (session expired) it stops fetching everything at once
(another consumer may own those partitions now) and rejoins when the session is back.

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

import heapq
import logging
import os
import queue
import socket
import threading
import time
import uuid

from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError
from kazoo.protocol.states import KazooState

from ..errors import (
    CorruptRecordError,
    RequestTimeoutError,
    InvalidArgumentError,
    MetaqError,
    ZooKeeperError,
)
from ..names import validate_group_name, validate_topic_name
from ..protocol import ResultReply, ValueReply
from ..protocol.get_errors import next_record_offset
from ..zk import paths
from . import balance
from .cluster_client import ClusterClient
from .connection import next_opaque
from .offsets import OffsetReader
from .records import (ConsumerRecord, MessageBatch, PartitionState, PartitionStuckError,
                      before_damage, decode_answer)

__all__ = ["Consumer", "ConsumerRecord", "MessageBatch", "PartitionStuckError"]

log = logging.getLogger(__name__)

LONG_MAX = 2**63 - 1
FETCH_BYTES_MAX = 2 * 1024 * 1024  # MetaQ clients refuse records above 2 MiB anyway


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
        self.group = group
        self.root = paths.normalize_root(zk_root)
        id_part = consumer_id or f"{_local_ip()}-{os.getpid()}-{uuid.uuid4()}"
        self.consumer_id = paths.consumer_id(group, id_part)
        self.fetch_bytes = fetch_bytes
        self.commit_interval_s = commit_interval_ms / 1000.0
        self.start_offset = 0 if auto_offset_reset == "earliest" else LONG_MAX
        self.max_delay_s = max_fetch_delay_ms / 1000.0
        self.fetch_timeout_s = fetch_timeout_s
        self.check_crcs = check_crcs
        self.rebalance_backoff_s = rebalance_backoff_ms / 1000.0
        self.max_fetch_failures = max_fetch_failures
        self.on_error = on_error
        self.skip_corrupt = skip_corrupt
        self.assign_strategy = balance.strategy(strategy)
        self._open_cluster("Consumer", zk_connect, zk_client, self.root, zk_timeout_s,
                           zk_session_timeout_s)
        self._offsets = OffsetReader(self.zk, self.start_offset, auto_offset_reset)
        self.topics: list[str] = []
        self._lock = threading.RLock()
        self._owned: dict[tuple[str, str], PartitionState] = {}
        # Unbounded so that a connection's reader thread never blocks on it; fetches are not
        # started while queued_batches_max batches wait, and each partition has at most one
        # fetch in flight, so it holds at most that plus one batch per partition.
        self._queued_batches_max = max(1, queued_batches_max)
        self._fetched: queue.Queue = queue.Queue()
        self._polled: list[tuple[PartitionState, int, int, int]] = []  # awaiting "consumed"
        self._events: queue.Queue = queue.Queue()
        self._schedule: list = []  # heap (due_s, seq, state)
        self._schedule_cond = threading.Condition(self._lock)
        self._seq = 0
        self._deadlines: dict[int, tuple[float, object]] = {}  # opaque -> (deadline, conn)
        self._closed = False
        self._iter_batch = None
        self.rebalances = 0
        self.fetch_timeouts = 0  # fetches given up because the broker did not answer in time
        self.skipped_records = 0  # damaged records skipped (skip_corrupt=True)
        self._errors: list[Exception] = []  # for poll to raise, one per call
        self._unwatch = []
        self._session_lost = threading.Event()
        self._registered = False
        self.zk.add_listener(self._on_zk_state)
        self._coordinator = threading.Thread(target=self._coordinate, name="metaq-consumer-group",
                                             daemon=True)
        self._fetcher = threading.Thread(target=self._fetch_loop, name="metaq-consumer-fetch",
                                         daemon=True)
        self._coordinator.start()
        self._fetcher.start()
        if topics:
            self.subscribe(topics)

    # ---- subscription and assignment ------------------------------------------------------

    def subscribe(self, topics) -> None:
        """Subscribe to ``topics`` (added to earlier subscriptions) and join the group."""
        if isinstance(topics, str):
            topics = [topics]
        for topic in topics:
            validate_topic_name(topic)
        with self._lock:
            new = [t for t in topics if t not in self.topics]
            self.topics.extend(new)
        for topic in new:
            self._unwatch.append(self.cluster.watch_topic(topic, lambda t: self._events.put("topic")))
        self._events.put("subscribe")

    def assignment(self) -> dict[str, list[str]]:
        """Partitions this consumer owns now, per topic."""
        with self._lock:
            out: dict[str, list[str]] = {}
            for (topic, name), state in self._owned.items():
                if state.active:
                    out.setdefault(topic, []).append(name)
            return {t: sorted(v) for t, v in out.items()}

    def wait_assignment(self, predicate=None, timeout_s: float = 30.0) -> dict[str, list[str]]:
        """Wait until the group has settled (and ``predicate(assignment)`` holds)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            current = self.assignment()
            if self._events.empty() and (predicate is None or predicate(current)):
                return current
            time.sleep(0.02)
        raise TimeoutError(f"consumer {self.consumer_id}: assignment not settled in {timeout_s} s")

    # ---- ZooKeeper: membership and rebalance ---------------------------------------------

    def _on_zk_state(self, state) -> None:
        if state == KazooState.LOST:
            self._session_lost.set()
            self._events.put("lost")
        elif state == KazooState.CONNECTED:
            self._events.put("connected")

    def _ids_path(self) -> str:
        return paths.consumer_ids_path(self.root, self.group)

    def _register(self) -> None:
        path = paths.consumer_id_path(self.root, self.group, self.consumer_id)
        data = paths.encode_consumer_topics(self.topics)
        self.zk.ensure_path(self._ids_path())
        try:
            self.zk.create(path, data, ephemeral=True)
        except NodeExistsError:
            self.zk.set(path, data)
        if not self._registered:
            self._registered = True
            self._unwatch.append(self._watch_ids())

    def _watch_ids(self):
        from kazoo.recipe.watchers import ChildrenWatch
        stopped = [False]

        def on_children(_children):
            if stopped[0]:
                return False
            self._events.put("ids")
            return True

        ChildrenWatch(self.zk, self._ids_path(), on_children)

        def stop():
            stopped[0] = True
        return stop

    def _coordinate(self) -> None:
        """The coordinator thread: waits for events, rebalances until the group is settled."""
        pending = False
        while True:
            try:
                event = self._events.get(timeout=self.rebalance_backoff_s if pending else None)
            except queue.Empty:
                event = "retry"
            if event == "close":
                return
            while True:  # coalesce a burst of events into one rebalance
                try:
                    nxt = self._events.get_nowait()
                except queue.Empty:
                    break
                if nxt == "close":
                    return
                if nxt == "lost":
                    event = "lost"
            if event == "lost":
                self._drop_all("ZooKeeper session expired")
                pending = True
                continue
            if not self.topics:
                continue
            try:
                if self._session_lost.is_set() and self.zk.state == KazooState.CONNECTED:
                    self._session_lost.clear()
                self._register()
                pending = not self._rebalance()
            except (KazooException, ZooKeeperError, OSError) as exc:
                log.warning("consumer %s: rebalance failed (%s); retrying", self.consumer_id, exc)
                pending = True
            except Exception:
                log.exception("consumer %s: rebalance failed", self.consumer_id)
                pending = True

    def _group_members(self) -> dict[str, list[str]]:
        """Consumer ids of the group per subscribed topic, sorted as strings."""
        members: dict[str, list[str]] = {t: [] for t in self.topics}
        for child in self.zk.get_children(self._ids_path()):
            try:
                data, _ = self.zk.get(f"{self._ids_path()}/{child}")
            except NoNodeError:
                continue
            for topic in paths.parse_consumer_topics(data):
                if topic in members:
                    members[topic].append(child)
        return {t: sorted(ids) for t, ids in members.items()}

    def _rebalance(self) -> bool:
        """One attempt; True when every assigned partition is owned by us."""
        self.rebalances += 1
        members = self._group_members()
        wanted: set[tuple[str, str]] = set()
        for topic in self.topics:
            partitions = self.cluster.subscribe_partitions(topic)
            for name in self.assign_strategy(self.consumer_id, members[topic], partitions):
                wanted.add((topic, name))
        with self._lock:
            owned = set(k for k, s in self._owned.items() if s.active)
        for key in sorted(owned - wanted):
            self._release(*key)
        complete = True
        for key in sorted(wanted - owned):
            if not self._claim(*key):
                complete = False
        if complete:
            log.info("consumer %s owns %s", self.consumer_id,
                     ", ".join(f"{t}:{p}" for t, p in sorted(wanted)) or "nothing")
        return complete

    def _claim(self, topic: str, name: str) -> bool:
        path = paths.owner_path(self.root, self.group, topic, name)
        self.zk.ensure_path(paths.owners_topic_path(self.root, self.group, topic))
        me = paths.encode_text(self.consumer_id)
        try:
            self.zk.create(path, me, ephemeral=True)
        except NodeExistsError:
            try:
                data, _ = self.zk.get(path)
            except NoNodeError:
                return False
            if data != me:
                return False  # still owned by another consumer: try again shortly
        # The offset is read once we own the partition (the previous owner commits before it
        # lets go); a bad node reads as no offset. If reading fails all the same (ZooKeeper),
        # the claim is given back so that no partition stays owned and unfetched.
        try:
            offset, msg_id = self._offsets.load(
                paths.offset_path(self.root, self.group, topic, name))
        except BaseException:
            try:
                self.zk.delete(path)
            except KazooException:
                pass  # ephemeral: it goes with the session at worst
            raise
        state = PartitionState(topic, name, offset, msg_id, self.fetch_bytes)
        with self._lock:
            self._owned[(topic, name)] = state
        self._schedule_fetch(state, 0.0)
        return True

    def _release(self, topic: str, name: str) -> None:
        with self._lock:
            state = self._owned.pop((topic, name), None)
            if state is not None:
                state.active = False
                self._polled = [p for p in self._polled if p[0] is not state]
        if state is None:
            return
        self._commit_state(state)
        try:
            path = paths.owner_path(self.root, self.group, topic, name)
            data, _ = self.zk.get(path)
            if data == paths.encode_text(self.consumer_id):
                self.zk.delete(path)
        except NoNodeError:
            pass
        log.info("consumer %s released %s:%s at offset %d", self.consumer_id, topic, name,
                 state.consumed)

    def _drop_all(self, why: str) -> None:
        """Stop fetching everything now (the session is gone: others may own it already)."""
        with self._lock:
            dropped = list(self._owned.values())
            for state in dropped:
                state.active = False
            self._owned.clear()
            self._polled.clear()
        if dropped:
            log.warning("consumer %s dropped %d partition(s): %s", self.consumer_id, len(dropped), why)

    # ---- fetching ---------------------------------------------------------------------------

    def _schedule_fetch(self, state: PartitionState, delay_s: float) -> None:
        with self._schedule_cond:
            self._seq += 1
            heapq.heappush(self._schedule, (time.monotonic() + delay_s, self._seq, state))
            self._schedule_cond.notify()

    def _fetch_loop(self) -> None:
        next_commit = time.monotonic() + self.commit_interval_s
        while True:
            with self._schedule_cond:
                while not self._closed:
                    now = time.monotonic()
                    if now >= next_commit:
                        break
                    if self._schedule and self._schedule[0][0] <= now:
                        break
                    wait = next_commit - now
                    if self._schedule:
                        wait = min(wait, self._schedule[0][0] - now)
                    if self._deadlines:  # insertion order is deadline order (one timeout)
                        first = next(iter(self._deadlines.values()))[0]
                        if first <= now:
                            break
                        wait = min(wait, first - now)
                    self._schedule_cond.wait(wait)
                if self._closed:
                    return
                due = []
                while self._schedule and self._schedule[0][0] <= time.monotonic():
                    due.append(heapq.heappop(self._schedule)[2])
                expired = []
                now = time.monotonic()
                for opaque, (deadline, conn) in self._deadlines.items():
                    if deadline > now:
                        break
                    expired.append((opaque, conn))
                for opaque, _conn in expired:
                    del self._deadlines[opaque]
            self.fetch_timeouts += len(expired)
            for opaque, conn in expired:  # a broker that stopped answering: give up on it
                conn.fail_request(opaque, RequestTimeoutError(
                    f"no answer to a fetch from broker {conn.name} in {self.fetch_timeout_s} s"))
            if time.monotonic() >= next_commit:
                next_commit = time.monotonic() + self.commit_interval_s
                try:
                    self.commit()
                except MetaqError as exc:
                    log.warning("periodic offset commit failed: %s", exc)
            for state in due:
                if state.active and not state.in_flight:
                    self._fetch(state)

    def _fetch(self, state: PartitionState) -> None:
        if self._fetched.qsize() >= self._queued_batches_max:  # the application is behind
            self._schedule_fetch(state, 0.01)
            return
        url = self.cluster.broker_url(state.broker_id)
        if url is None:
            self._back_off(state, f"broker {state.broker_id} not registered")
            return
        try:
            conn = self.pool.get_url(url)
            fast = conn.is_metaq_fast(self.fetch_timeout_s)
        except MetaqError as exc:
            self._back_off(state, str(exc))
            return
        opaque = next_opaque()
        verb = b"getm" if fast else b"get"
        request = b"%s %s %s %d %d %d %d\r\n" % (verb, state.topic.encode(), self.group.encode(),
                                                  state.number, state.fetch_offset,
                                                  state.max_bytes, opaque)
        state.in_flight = True
        offset = state.fetch_offset
        with self._schedule_cond:
            self._deadlines[opaque] = (time.monotonic() + self.fetch_timeout_s, conn)
        future = conn.submit(opaque, request)
        future.add_done_callback(lambda f: self._on_fetched(state, offset, f, opaque))

    def _back_off(self, state: PartitionState, why: str | None = None) -> None:
        step = self.max_delay_s / 10
        state.delay_s = min(state.delay_s + step, self.max_delay_s)
        if why:
            log.debug("fetch %s:%s backs off %.2f s: %s", state.topic, state.name, state.delay_s, why)
        self._schedule_fetch(state, state.delay_s)

    def _on_fetched(self, state: PartitionState, offset: int, future, opaque: int) -> None:
        with self._schedule_cond:
            self._deadlines.pop(opaque, None)
        state.in_flight = False
        if not state.active:
            return
        try:
            self._take_fetched(state, offset, future)
        except Exception:  # noqa: BLE001 - a bad answer must not stop this partition for good
            log.exception("fetch %s:%s at %d: unexpected answer; backing off", state.topic,
                          state.name, offset)
            self._back_off(state)

    def _take_fetched(self, state: PartitionState, offset: int, future) -> None:
        try:
            reply = future.result()
        except MetaqError as exc:
            self._back_off(state, str(exc))
            return
        if isinstance(reply, ResultReply):
            body = bytes(reply.body)
            if reply.code == 301:  # moved: the nearest valid offset
                state.fetch_offset = int(body)
                if state.delivered == offset:
                    state.delivered = state.consumed = state.fetch_offset
                state.delay_s = 0.0
                self._schedule_fetch(state, 0.0)
            elif reply.code in (404, 403):  # nothing there now / partition closed
                self._back_off(state)
            elif reply.code == 400 and b"more than maxSize" in body and state.max_bytes < FETCH_BYTES_MAX:
                state.max_bytes = min(state.max_bytes * 2, FETCH_BYTES_MAX)
                self._schedule_fetch(state, 0.0)
            else:  # a refused get (500 at a damaged record): it may say where the next one is
                self._failed(state, offset, f"broker answered {reply.code} "
                             f"{body[:500].decode('utf-8', 'replace')}", next_record_offset(body))
            return
        try:
            decoded = decode_answer(reply, offset, self.check_crcs)
        except CorruptRecordError as exc:  # the good records before the damage, if any
            decoded, skip_to = before_damage(reply, offset, exc, self.check_crcs)
            if decoded is None:
                self._failed(state, offset, str(exc), skip_to)
                return
        if not len(decoded):
            if isinstance(reply, ValueReply) and len(reply.data) and state.max_bytes < FETCH_BYTES_MAX:
                state.max_bytes = min(state.max_bytes * 2, FETCH_BYTES_MAX)  # record > maxSize
                self._schedule_fetch(state, 0.0)
            else:
                self._back_off(state)
            return
        state.delay_s = 0.0
        state.fail_count = 0
        state.fetch_offset = decoded.next_offset
        self._fetched.put((state, state.generation, MessageBatch(state.topic, state.name, decoded)))
        self._schedule_fetch(state, 0.0)

    def _failed(self, state: PartitionState, offset: int, reason: str, skip_to: int | None) -> None:
        """A fetch at ``offset`` that failed for a reason retrying may not cure. Logged on the
        first failure at an offset; after ``max_fetch_failures`` in a row, reported once to the
        application and, with ``skip_corrupt`` and a known next record, skipped."""
        if state.fail_offset != offset or state.fail_count == 0:
            state.fail_offset, state.fail_count = offset, 0
            log.warning("fetch %s:%s at %d failed (retrying with back-off): %s", state.topic,
                        state.name, offset, reason)
        state.fail_count += 1
        if state.fail_count != self.max_fetch_failures:
            self._back_off(state, reason)
            return
        why_not = None
        if not self.skip_corrupt:
            why_not = "skip_corrupt is off"
        elif skip_to is None or skip_to <= offset:
            why_not = "where the next record starts is not known"
        go_on = skip_to if why_not is None else None
        error = PartitionStuckError(state.topic, state.name, offset, reason, state.fail_count,
                                    go_on, why_not)
        log.error("%s", error)
        self._fetched.put((state, state.generation, error))  # after the batches before it
        if go_on is None:
            self._back_off(state)
            return
        self.skipped_records += 1
        state.fetch_offset = go_on
        state.fail_count = 0
        self._schedule_fetch(state, state.delay_s)  # the back-off reached so far stays

    # ---- the application's side ------------------------------------------------------------

    def _mark_consumed(self) -> None:
        with self._lock:
            for state, _generation, next_offset, last_id in self._polled:
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
        try:
            item = self._fetched.get(timeout=timeout_s)
        except queue.Empty:
            return out
        while True:
            state, _gen, batch = item
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
                        self._polled.append((state, 0, batch.next_offset, state.delivered_id))
                        out.append(batch)
            if len(out) >= max_batches:
                break
            try:
                item = self._fetched.get_nowait()
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
                self._polled.append((state, 0, error.skip_to, state.delivered_id))
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

    def _commit_state(self, state: PartitionState) -> None:
        if state.consumed == state.committed:
            return
        path = paths.offset_path(self.root, self.group, state.topic, state.name)
        data = paths.encode_offset(state.consumed_id, state.consumed)
        try:
            try:
                self.zk.set(path, data)
            except NoNodeError:
                self.zk.create(path, data, makepath=True)
        except KazooException as exc:
            raise ZooKeeperError(f"cannot commit offset of {state.topic}:{state.name}: {exc}") from exc
        state.committed = state.consumed

    def commit(self) -> None:
        """Write the consumed position of every owned partition to ZooKeeper (changed ones)."""
        with self._lock:
            states = list(self._owned.values())
        for state in states:
            self._commit_state(state)

    def positions(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return {k: s.consumed for k, s in self._owned.items()}

    def close(self) -> None:
        """Mark what was polled as consumed, commit, leave the group, release everything."""
        if self._closed:
            return
        self._mark_consumed()
        with self._lock:
            owned = list(self._owned)
        self._events.put("close")
        self._coordinator.join(10)
        try:
            for key in owned:
                self._release(*key)
            try:
                self.zk.delete(paths.consumer_id_path(self.root, self.group, self.consumer_id))
            except NoNodeError:
                pass
        except (KazooException, MetaqError) as exc:
            log.warning("consumer %s: leaving the group cleanly failed: %s", self.consumer_id, exc)
        with self._schedule_cond:
            self._closed = True
            self._schedule_cond.notify_all()
        self._fetcher.join(10)
        for stop in self._unwatch:
            stop()
        self.zk.remove_listener(self._on_zk_state)
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
