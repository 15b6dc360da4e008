"""How the put path answers storage failures, logs them once per change of state, counts them.

Imports: stdlib (logging), metaq_fast.errors / storage and broker.counters.

Three kinds of failure reach a put (handler.py asks ``refusal`` for the code and detail):

* disk full (ENOSPC or EDQUOT anywhere in the cause chain): 500 ``disk full: ...``, counted in
  ``disk_full_refusals``. Reads go on, and puts succeed again by themselves once space frees
  (storage/faults.py keeps the log able to go on).
* offline: a failed flush or seal (storage/log.py). The owning worker marks the partition in the
  broker's shared block (closed.py), so every worker refuses its puts with 503 and the reason and
  /health reports it, until the broker restarts; ``fsync_failures`` counts it once. The puts
  whose replies waited for the failed flush get 500 (``unflushed``), never a later success.
* anything else (a partition directory that cannot be made, EMFILE, a bug): 500 with the reason.

One log line per change of a partition's state, never one per request (a full disk refuses
thousands of puts a second)::

    WRITABLE --refused(cause)--> FAILING(cause) --refused(other cause)--> FAILING(other cause)
    FAILING --a put stored--> WRITABLE          (each arrow is one log line)
"""

from __future__ import annotations

import logging

from ..errors import INTERNAL_SERVER_ERROR, SERVICE_UNAVAILABLE, MetaqError, StorageError
from ..storage.faults import PartitionOfflineError
from ..storage.mapped import DISK_FULL_ERRNOS
from .counters import CounterRow

log = logging.getLogger(__name__)

FAILING_PARTITIONS_MAX = 10_000  # partitions whose failing state is remembered (and logged)
RECOVERY_HINT = ("it takes no puts until the broker restarts, whose recovery re-validates what "
                 "was written after the last good flush; reads go on")


def offline_detail(reason: str) -> str:
    return f"partition offline after a storage failure ({reason}); {RECOVERY_HINT}"


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` or what caused it is a full disk (or an exhausted quota)."""
    for _ in range(8):  # a cause chain is short; never loop on a cycle
        if exc is None:
            return False
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _cause(exc: BaseException) -> str:
    """What two failures must share to count as the same cause (the log key)."""
    if is_disk_full(exc):
        return "disk full"
    found = exc
    while found is not None and not isinstance(found, OSError):
        found = found.__cause__ or found.__context__
    if found is not None:
        return f"{type(found).__name__} errno {found.errno}"
    return type(exc).__name__


class StorageFaults:
    """The put path's failure states (one per worker; see the module docstring)."""

    def __init__(self, counters: CounterRow, offline_block):
        self.counters = counters
        self.offline_block = offline_block  # closed.ClosedPartitions: shared with the others
        self.failing: dict[tuple[str, int], list] = {}  # (topic, partition) -> [cause, refused]
        self._offline: set[tuple[str, int]] = set()  # taken offline by this worker
        self._too_many_logged = False

    def refusal(self, topic: str, partition: int, exc: BaseException,
                requests: int = 1) -> tuple[int, str]:
        """(code, detail) for ``requests`` puts that storing failed for with ``exc``."""
        if isinstance(exc, PartitionOfflineError):
            self.partition_failed(topic, partition, exc.reason)
            return SERVICE_UNAVAILABLE, offline_detail(exc.reason)
        if isinstance(exc, MetaqError) and not isinstance(exc, StorageError):
            return exc.code, str(exc)  # the request's own fault (too large...): no state
        text = str(exc) if isinstance(exc, StorageError) else f"{type(exc).__name__}: {exc}"
        if is_disk_full(exc):
            self.counters.add_for(topic, partition, CounterRow.DISK_FULL_REFUSALS, requests)
            detail = text if text.startswith("disk full") else f"disk full: {text}"
        else:
            detail = text
        self._note(topic, partition, exc, detail, requests)
        return INTERNAL_SERVER_ERROR, detail

    def unflushed(self, topic: str, partition: int, exc: BaseException) -> tuple[int, str]:
        """(code, detail) for a put whose reply waited for a flush, or for its replicas, and
        that failed."""
        if getattr(exc, "replication", False):  # replica_leader.NotEnoughReplicasError: 503
            return exc.code, f"stored here but not acknowledged: {exc}"
        reason = exc.reason if isinstance(exc, PartitionOfflineError) else str(exc)
        return INTERNAL_SERVER_ERROR, (f"not stored durably: the flush failed ({reason}); the "
                                       f"partition is offline, {RECOVERY_HINT}")

    def stored(self, topic: str, partition: int) -> None:
        """A put to the partition was stored: it is writable (again)."""
        state = self.failing.pop((topic, partition), None)
        if state is not None:
            log.info("puts to %s-%d are stored again (%d refused while %s)", topic, partition,
                        state[1], state[0])

    def partition_failed(self, topic: str, partition: int, reason: str) -> None:
        """Its log failed a flush: offline for every worker until the broker restarts."""
        key = (topic, partition)
        if key in self._offline:
            return
        self._offline.add(key)
        self.offline_block.take_offline(topic, partition, reason)
        self.counters.add_for(topic, partition, CounterRow.FSYNC_FAILURES)
        log.error("%s-%d is offline: %s; %s", topic, partition, reason, RECOVERY_HINT)

    def _note(self, topic: str, partition: int, exc: BaseException, detail: str,
              requests: int) -> None:
        key = (topic, partition)
        cause = _cause(exc)
        state = self.failing.get(key)
        if state is not None and state[0] == cause:
            state[1] += requests
            return
        if state is None and len(self.failing) >= FAILING_PARTITIONS_MAX:
            if not self._too_many_logged:
                self._too_many_logged = True
                log.error("puts to more than %d partitions are failing; the others are counted "
                          "(put_failed) but not logged: %s-%d: %s", FAILING_PARTITIONS_MAX,
                          topic, partition, detail)
            return
        self.failing[key] = [cause, requests]
        unexpected = not isinstance(exc, (OSError, MetaqError))
        log.error("puts to %s-%d refused: %s (logged once; refusals are counted until a put is "
                  "stored again)", topic, partition, detail, exc_info=exc if unexpected else None)
