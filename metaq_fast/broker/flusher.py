"""When a worker's partitions are flushed, off the event loop thread.

Imports: stdlib (asyncio, concurrent.futures), metaq_fast.storage.faults and broker.counters.

``fdatasync`` runs in one background thread (it releases the GIL), so a flush never stalls the
event loop. Normal mode (``unflushThreshold > 0``): a partition is flushed when MetaQ's rule says
so (more than ``unflushThreshold`` messages since the last flush, or ``unflushInterval`` ms with
something unflushed), checked after each append and by a timer. Group commit
(``unflushThreshold <= 0``): a flush is started at the end of the loop iteration that appended,
so every put of that iteration shares one fdatasync; puts that arrive while it runs share the
next one. Their replies wait on ``flushed_future``.

A flush that fails fails its partition's log for good (storage/log.py): every reply waiting for
it, or for any later flush of that log, gets the exception instead of a success (a later
fdatasync that succeeds says nothing about the pages the failed one lost; replies an earlier
flush already covered still succeed), the log is never flushed again, and
``on_failure(topic, partition, reason)`` takes the partition offline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from ..storage.faults import PartitionOfflineError
from .counters import CounterRow

log = logging.getLogger(__name__)

TICK_S = 0.1  # how often the timer checks interval-based flushes


class Flusher:
    def __init__(self, loop: asyncio.AbstractEventLoop, counters: CounterRow):
        self.loop = loop
        self.counters = counters
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metaq-flush")
        self._running: dict[int, object] = {}  # id(log) -> log, while a flush runs
        self._again: set[int] = set()
        self._waiters: dict[int, list[tuple[int, asyncio.Future]]] = {}
        self._scheduled: set[int] = set()
        self._logs: dict[int, object] = {}
        self._timer = None
        self.closed = False
        self.on_failure = None  # callable(topic, partition, reason), set by the handler
        self.on_flushed = None  # callable(): a flush made records visible (group commit)

    def start(self) -> None:
        self._timer = self.loop.call_later(TICK_S, self._tick)

    def track(self, partition_log) -> None:
        self._logs[id(partition_log)] = partition_log

    # ---- called by the handler ----------------------------------------------------------

    def appended(self, partition_log) -> None:
        key = id(partition_log)
        if partition_log.failed is not None:  # e.g. a seal failed while the append rolled
            self._failed(key, partition_log, None)
            return
        self._logs[key] = partition_log
        if partition_log.flush_policy.group_commit:
            if key not in self._scheduled:
                self._scheduled.add(key)
                self.loop.call_soon(self._start_scheduled, key)
        elif partition_log.flush_due():
            self._start(partition_log)

    def flushed_future(self, partition_log, offset: int) -> asyncio.Future:
        """Done once ``offset`` is durable (and visible)."""
        future = self.loop.create_future()
        if partition_log.visible_end >= offset and partition_log.flushed_offset >= offset:
            future.set_result(offset)  # durable (a roll's seal may have done it), failed or not
            return future
        if partition_log.failed is not None:
            future.set_exception(PartitionOfflineError(partition_log.failed))
            return future
        self._waiters.setdefault(id(partition_log), []).append((offset, future))
        return future

    # ---- flushing ------------------------------------------------------------------------

    def _start_scheduled(self, key: int) -> None:
        self._scheduled.discard(key)
        partition_log = self._logs.get(key)
        if partition_log is not None:
            self._start(partition_log)

    def _start(self, partition_log) -> None:
        key = id(partition_log)
        if key in self._running:
            self._again.add(key)
            return
        if self.closed:
            return
        if partition_log.failed is not None:  # failed outside a flush (a seal, a directory
            self._failed(key, partition_log, None)  # sync): its waiters must hear it too
            return
        self._running[key] = partition_log
        future = self.loop.run_in_executor(self.executor, _flush, partition_log)
        future.add_done_callback(lambda f, k=key: self._done(k, f))

    def _done(self, key: int, future) -> None:
        partition_log = self._running.pop(key)
        try:
            end, seconds = future.result()
        except Exception as exc:
            self._failed(key, partition_log, exc)
            return
        self.counters.add(CounterRow.FLUSHES)
        self.counters.add(CounterRow.FLUSH_US_TOTAL, int(seconds * 1e6))
        if self.on_flushed is not None and partition_log.flush_policy.group_commit:
            self.on_flushed()  # visible only now: a replication fetch waiting for them
        waiters = self._waiters.get(key)
        if waiters:
            still = []
            for offset, waiter in waiters:
                if offset <= end:
                    if not waiter.done():
                        waiter.set_result(end)
                else:
                    still.append((offset, waiter))
            self._waiters[key] = still
        if key in self._again or self._waiters.get(key):
            self._again.discard(key)
            self._start(partition_log)

    def _failed(self, key: int, partition_log, exc: Exception | None) -> None:
        """The log failed (a flush raised ``exc``, or a seal did): fail every waiter, never
        flush it again, and have the partition taken offline."""
        if partition_log.failed is None:  # not an I/O error the log caught: a bug; fail anyway
            log.error("flush of %s-%d failed", partition_log.topic, partition_log.partition,
                      exc_info=exc)
            partition_log.fail(f"flush failed: {type(exc).__name__}: {exc}")
        error = PartitionOfflineError(partition_log.failed)
        # What an earlier flush made durable (and visible) stands: only the rest failed.
        durable = min(partition_log.flushed_offset, partition_log.visible_end)
        for offset, waiter in self._waiters.pop(key, ()):
            if waiter.done():
                continue
            if offset <= durable:
                waiter.set_result(offset)
            else:
                waiter.set_exception(error)
        self._logs.pop(key, None)
        self._again.discard(key)
        self._scheduled.discard(key)
        if self.on_failure is not None:
            self.on_failure(partition_log.topic, partition_log.partition, partition_log.failed)

    def _tick(self) -> None:
        if self.closed:
            return
        for partition_log in list(self._logs.values()):
            if id(partition_log) not in self._running and partition_log.flush_due():
                self._start(partition_log)
        self._timer = self.loop.call_later(TICK_S, self._tick)

    def close(self) -> None:
        """Stop the timer; wait for running flushes (the caller closes the logs after)."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        self.executor.shutdown(wait=True)


def _flush(partition_log) -> tuple[int, float]:
    began = time.monotonic()
    end = partition_log.flush()
    return end, time.monotonic() - began
