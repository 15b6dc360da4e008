"""The consumer's fetcher: schedules, sends and decodes the gets of the partitions it is given.

Imports: stdlib, metaq_fast.errors / protocol, client (connection, records). No ZooKeeper: which
partitions to fetch is the group coordinator's business (client/group_coordinator.py); where a
partition's broker is comes from the cluster view lent to it.

One thread keeps a heap of (due time, partition) and the deadline of every fetch in flight; a
partition has at most one fetch in flight, and its answer (on the connection's reader thread)
schedules the next one: at once after records, later after an empty or failed answer (MetaQ's
rule, ``maxDelayFetchTimeInMills``: a tenth of the maximum more per empty fetch). What was
fetched goes, in order, into ``fetched``: ``(state, MessageBatch)`` or ``(state,
PartitionStuckError)`` for the consumer's ``poll``. Fetching pauses while ``queued_batches_max``
batches wait there (the application is behind).

Failed fetches back off. ``max_fetch_failures`` failures in a row at one offset (a damaged record
the broker refuses to serve, an answer that fails its checksum) are put in ``fetched`` once as a
``PartitionStuckError``; with ``skip_corrupt`` the fetcher then goes on at the next record, where
the broker says it starts (protocol/get_errors.py), counted in ``skipped_records``.
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time

from ..errors import CorruptRecordError, MetaqError, RequestTimeoutError
from ..protocol import ResultReply, ValueReply
from ..protocol.get_errors import next_record_offset
from .connection import next_opaque
from .records import MessageBatch, PartitionState, PartitionStuckError, before_damage, decode_answer

log = logging.getLogger(__name__)

FETCH_BYTES_MAX = 2 * 1024 * 1024  # MetaQ clients refuse records above 2 MiB anyway
BEHIND_RECHECK_S = 0.01  # how soon a fetch held back for a full queue is tried again


class Fetcher:
    def __init__(self, cluster, pool, group: str, *, fetch_timeout_s: float, check_crcs: bool,
                 max_delay_s: float, max_fetch_failures: int, skip_corrupt: bool,
                 queued_batches_max: int):
        self.cluster = cluster
        self.pool = pool
        self.group = group
        self.fetch_timeout_s = fetch_timeout_s
        self.check_crcs = check_crcs
        self.max_delay_s = max_delay_s
        self.max_fetch_failures = max_fetch_failures
        self.skip_corrupt = skip_corrupt
        # Unbounded so that a connection's reader thread never blocks on it; fetches are not
        # started while queued_batches_max batches wait, and each partition has at most one
        # fetch in flight, so it holds at most that plus one batch per partition.
        self.queued_batches_max = max(1, queued_batches_max)
        self.fetched: queue.Queue = queue.Queue()
        self.fetch_timeouts = 0  # fetches given up because the broker did not answer in time
        self.skipped_records = 0  # damaged records skipped (skip_corrupt=True)
        self._cond = threading.Condition()
        self._schedule: list = []  # heap (due_s, seq, state)
        self._seq = 0
        self._deadlines: dict[int, tuple[float, object]] = {}  # opaque -> (deadline, conn)
        self._closed = False
        self._pause_at: float | None = None  # monotonic time from which ownership is in doubt
        self._parked: list[PartitionState] = []  # waiting for resume()
        self._thread = threading.Thread(target=self._run, name="metaq-consumer-fetch", daemon=True)
        self._thread.start()

    def start(self, state: PartitionState) -> None:
        """Begin fetching a partition just claimed (it stops when ``state.active`` goes false)."""
        self._schedule_fetch(state, 0.0)

    def pause(self, after_s: float = 0.0) -> None:
        """From ``after_s`` seconds on, start no fetch, take no answer and let ``poll`` hand out
        nothing (``held``) until ``resume``. What is in ``fetched`` stays for after the resume:
        on a session expiry the coordinator deactivates those partitions and poll drops it."""
        with self._cond:
            if self._pause_at is None:
                self._pause_at = time.monotonic() + after_s

    def resume(self) -> None:
        with self._cond:
            self._pause_at = None
            parked, self._parked = self._parked, []
        for state in parked:
            self._schedule_fetch(state, 0.0)

    @property
    def held(self) -> bool:
        """Paused now: nothing may be delivered (ownership in doubt)."""
        pause_at = self._pause_at
        return pause_at is not None and time.monotonic() >= pause_at

    def _park_if_paused(self, state: PartitionState) -> bool:
        with self._cond:
            if self.held:
                self._parked.append(state)
                return True
        return False

    def close(self, timeout_s: float = 10.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout_s)

    # ---- the fetch thread --------------------------------------------------------------------

    def _schedule_fetch(self, state: PartitionState, delay_s: float) -> None:
        with self._cond:
            self._seq += 1
            heapq.heappush(self._schedule, (time.monotonic() + delay_s, self._seq, state))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._wait_for_work_locked():
                    return
                due = []
                while self._schedule and self._schedule[0][0] <= time.monotonic():
                    due.append(heapq.heappop(self._schedule)[2])
                expired = self._take_expired_locked()
            self.fetch_timeouts += len(expired)
            for opaque, conn in expired:  # a broker that stopped answering: give up on it
                conn.fail_request(opaque, RequestTimeoutError(
                    f"no answer to a fetch from broker {conn.name} in {self.fetch_timeout_s} s"))
            for state in due:
                if state.active and not state.in_flight:
                    self._fetch(state)

    def _wait_for_work_locked(self) -> bool:
        """Sleep until a fetch is due or one in flight is past its deadline; False once closed."""
        while not self._closed:
            now = time.monotonic()
            wait = None
            if self._schedule:
                wait = self._schedule[0][0] - now
            if self._deadlines:  # insertion order is deadline order (one timeout for all)
                first = next(iter(self._deadlines.values()))[0] - now
                wait = first if wait is None else min(wait, first)
            if wait is not None and wait <= 0:
                return True
            self._cond.wait(wait)
        return False

    def _take_expired_locked(self) -> list:
        expired = []
        now = time.monotonic()
        for opaque, (deadline, conn) in self._deadlines.items():
            if deadline > now:
                break
            expired.append((opaque, conn))
        for opaque, _conn in expired:
            del self._deadlines[opaque]
        return expired

    def _fetch(self, state: PartitionState) -> None:
        if self._park_if_paused(state):
            return
        if self.fetched.qsize() >= self.queued_batches_max:  # the application is behind
            self._schedule_fetch(state, BEHIND_RECHECK_S)
            return
        url = self.cluster.read_url(state.broker_id)  # the master, or a slave if it is gone
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
        with self._cond:
            self._deadlines[opaque] = (time.monotonic() + self.fetch_timeout_s, conn)
            self._cond.notify()
        future = conn.submit(opaque, request)
        future.add_done_callback(lambda f: self._on_fetched(state, offset, f, opaque))

    def _back_off(self, state: PartitionState, why: str | None = None) -> None:
        step = self.max_delay_s / 10
        state.delay_s = min(state.delay_s + step, self.max_delay_s)
        if why:
            log.debug("fetch %s:%s backs off %.2f s: %s", state.topic, state.name, state.delay_s, why)
        self._schedule_fetch(state, state.delay_s)

    # ---- answers (on the connection's reader thread) ---------------------------------------

    def _on_fetched(self, state: PartitionState, offset: int, future, opaque: int) -> None:
        with self._cond:
            self._deadlines.pop(opaque, None)
        state.in_flight = False
        if not state.active:
            return
        if self._park_if_paused(state):
            return  # not taken: fetch_offset stays, the same records are fetched on resume
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
            self._take_refusal(state, offset, reply)
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
        self.fetched.put((state, MessageBatch(state.topic, state.name, decoded)))
        self._schedule_fetch(state, 0.0)

    def _take_refusal(self, state: PartitionState, offset: int, reply: ResultReply) -> None:
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
        self.fetched.put((state, error))  # after the batches before it
        if go_on is None:
            self._back_off(state)
            return
        self.skipped_records += 1
        state.fetch_offset = go_on
        state.fail_count = 0
        self._schedule_fetch(state, state.delay_s)  # the back-off reached so far stays
