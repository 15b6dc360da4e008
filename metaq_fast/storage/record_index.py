"""A segment's record index: per record, its position in the data file (``.idx``) and a 32-bit
check of its id and flag (``.chk``); both rebuildable caches of the data file (segment.py).

Imports: numpy, metaq_fast.errors and storage.files / mapped only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import StorageError
from . import files
from .mapped import MappedTable

INDEX_MAGIC = b"MQFIDX02"
CHECKS_MAGIC = b"MQFCHK01"


class RecordIndex:
    """Per record: its position in the data file (``.idx``) and its id/flag check (``.chk``).

    Two files so that positions form one contiguous array: ``np.searchsorted`` on a strided
    column would copy the whole index on every lookup. Positions are published last, so a
    reader never sees a position whose check is not written yet.
    """

    def __init__(self, directory: Path, start_offset: int, *, writable: bool):
        self.positions = MappedTable(files.index_file(directory, start_offset), np.dtype("<u4"),
                                     INDEX_MAGIC, writable=writable)
        try:
            self.checks = MappedTable(files.checks_file(directory, start_offset),
                                      np.dtype("<u4"), CHECKS_MAGIC, writable=writable)
        except (FileNotFoundError, StorageError):
            if writable:
                self.positions.close(shrink=False)
                raise
            self.checks = None  # a reader can still serve; only damage location needs checks
        except BaseException:  # EMFILE, ENOMEM: nothing of a failed open stays open
            self.positions.close(shrink=False)
            raise
        if writable and self.checks.count != self.positions.count:
            self.set_count(min(self.checks.count, self.positions.count))

    @property
    def count(self) -> int:
        return self.positions.count

    def reset(self) -> None:
        self.positions.reset()
        self.checks.reset()

    def append(self, positions: np.ndarray, checks: np.ndarray, base: int = 0) -> None:
        """Index records at ``positions + base`` (``base``: where their batch starts)."""
        self.checks.reserve(len(checks))[:] = checks
        self.checks.publish(len(checks))
        np.add(positions, base, out=self.positions.reserve(len(positions)), casting="unsafe")
        self.positions.publish(len(positions))

    def append_one(self, position: int, check: int) -> None:
        self.checks.reserve(1)[0] = check
        self.checks.publish(1)
        self.positions.reserve(1)[0] = position
        self.positions.publish(1)

    def position_array(self) -> np.ndarray:
        return self.positions.entries()

    def position(self, record: int) -> int:
        return int(self.positions.entries(record, record + 1)[0])

    def check(self, record: int) -> int | None:
        if self.checks is None or record >= self.checks.count:
            return None
        return int(self.checks.entries(record, record + 1)[0])

    def set_count(self, count: int) -> None:
        self.positions.set_count(count)
        self.checks.set_count(count)

    def refresh(self) -> None:
        self.positions.refresh()
        if self.checks is not None:
            self.checks.refresh()

    def flush(self) -> None:
        self.positions.flush()
        self.checks.flush()

    def close(self, shrink: bool) -> None:
        self.positions.close(shrink)
        if self.checks is not None:
            self.checks.close(shrink)
