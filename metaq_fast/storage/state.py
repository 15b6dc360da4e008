"""``partition.state``: the few numbers of a partition that other processes and restarts need.

Imports: numpy and metaq_fast.storage.mapped only.

Layout (eight little-endian u64, 64 bytes, memory-mapped by the owner read-write and by readers
read-only)::

    [0] magic   [1] visible_end   [2] recovery_point   [3] recovery_point ^ CHECK_KEY
    [4] first_offset   [5] owner_pid   [6] flush_failed   [7] truncations

* ``visible_end``: the log offset up to which records are whole and acknowledged-or-about-to-be;
  written by the owner after each append, read by any worker serving ``get``. It only ever points
  at the end of a completely written batch, which recovery keeps, so a reader never serves bytes
  that a restart would drop (short of power loss, which takes the readers down too).
* ``recovery_point``: every byte before it has been flushed (fdatasync) and its batch checksums
  with it; recovery verifies only what lies after it. It is written after the flush, so it never
  claims more than is durable; the XOR copy detects a torn update (then recovery starts earlier).
* ``flush_failed``: 0, or the flush mode in which a flush of the partition failed
  (``FAILED_IN_GROUP_COMMIT`` or ``FAILED_WITH_THRESHOLD``; storage/log.py), cleared by the next
  open once it has dealt with what lay after the recovery point (storage/faults.py). Both
  changes are msynced at once, with the recovery point beside them.
* ``truncations``: how many times the owner cut the log back (a replica that diverged from its
  master, storage/replica.py). A reader that sees it change drops the segments it has mapped:
  a file it mapped may have been deleted and created again under the same name.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .mapped import allocate, map_fd, msync

MAGIC = int.from_bytes(b"MQSTATE1", "little")
CHECK_KEY = 0x5A5A_A5A5_0F0F_F0F0
STATE_BYTES = 64

VISIBLE_END, RECOVERY_POINT, RECOVERY_CHECK, FIRST_OFFSET, OWNER_PID, FLUSH_FAILED = 1, 2, 3, 4, 5, 6
TRUNCATIONS = 7
FAILED_IN_GROUP_COMMIT, FAILED_WITH_THRESHOLD = 1, 2  # values of flush_failed


class PartitionState:
    def __init__(self, path: Path, *, writable: bool):
        self.path = Path(path)
        self.writable = writable
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT if writable else os.O_RDONLY, 0o644)
        try:
            size = os.fstat(fd).st_size
            fresh = size < STATE_BYTES
            if fresh and writable:
                allocate(fd, 0, STATE_BYTES, self.path)
            self._map = map_fd(fd, STATE_BYTES, writable)
            self._words = self._map.view("<u8")
        finally:
            os.close(fd)
        if writable and (fresh or int(self._words[0]) != MAGIC):
            self._words[:] = 0
            self._words[0] = MAGIC

    @property
    def valid(self) -> bool:
        return int(self._words[0]) == MAGIC

    @property
    def visible_end(self) -> int:
        return int(self._words[VISIBLE_END])

    @visible_end.setter
    def visible_end(self, offset: int) -> None:
        self._words[VISIBLE_END] = offset

    @property
    def recovery_point(self) -> int | None:
        """The recovery point, or None when it is missing or torn."""
        point = int(self._words[RECOVERY_POINT])
        if not self.valid or point ^ CHECK_KEY != int(self._words[RECOVERY_CHECK]):
            return None
        return point

    @recovery_point.setter
    def recovery_point(self, offset: int) -> None:
        self._words[RECOVERY_POINT] = offset
        self._words[RECOVERY_CHECK] = offset ^ CHECK_KEY

    @property
    def first_offset(self) -> int:
        return int(self._words[FIRST_OFFSET])

    @first_offset.setter
    def first_offset(self, offset: int) -> None:
        self._words[FIRST_OFFSET] = offset

    @property
    def owner_pid(self) -> int:
        return int(self._words[OWNER_PID])

    @owner_pid.setter
    def owner_pid(self, pid: int) -> None:
        self._words[OWNER_PID] = pid

    @property
    def flush_failed(self) -> int:
        """0, or the mode a flush failed in (``FAILED_IN_GROUP_COMMIT``/``FAILED_WITH_THRESHOLD``)."""
        mode = int(self._words[FLUSH_FAILED]) if self.valid else 0
        return mode if mode in (FAILED_IN_GROUP_COMMIT, FAILED_WITH_THRESHOLD) else 0

    @flush_failed.setter
    def flush_failed(self, mode: int) -> None:
        self._words[FLUSH_FAILED] = mode
        try:
            self.flush()  # now: a later open must find the mark, and no stale one
        except OSError:
            pass  # the disk fails: the mark is in the page cache for a restart of the process

    @property
    def truncations(self) -> int:
        return int(self._words[TRUNCATIONS])

    def count_truncation(self) -> None:
        self._words[TRUNCATIONS] = self.truncations + 1

    def flush(self) -> None:
        if self.writable:
            msync(self._map)  # 64 bytes: holding the GIL for this msync is harmless

    def close(self) -> None:
        self._map = None
        self._words = np.zeros(8, dtype="<u8")
