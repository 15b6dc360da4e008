"""The small value types of the partition log's interface: its flush policy, what an append
returns, what a read returns, and the error for an offset inside a record.

Imports: numpy and metaq_fast.errors only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidArgumentError


@dataclass(frozen=True, slots=True)
class FlushPolicy:
    """``unflushThreshold`` (messages) and ``unflushInterval`` (ms) of server.ini."""

    threshold_messages: int = 1000
    interval_ms: int = 10_000

    @property
    def group_commit(self) -> bool:
        return self.threshold_messages <= 0


class AppendResult:
    """Where a batch went: ``offsets`` of its records (computed on demand) and their ids."""

    __slots__ = ("first_offset", "end_offset", "msg_ids", "_positions")

    def __init__(self, first_offset: int, end_offset: int, msg_ids: np.ndarray,
                 positions: np.ndarray):
        self.first_offset = first_offset
        self.end_offset = end_offset
        self.msg_ids = msg_ids
        self._positions = positions  # record starts relative to first_offset

    @property
    def offsets(self) -> np.ndarray:
        return self._positions + self.first_offset

    def __len__(self) -> int:
        return len(self.msg_ids)


@dataclass(frozen=True, slots=True)
class ReadSlice:
    """Stored bytes from one segment: ``view`` is zero-copy; ``fd``/``position``/``length``
    let a server ``sendfile`` the same bytes instead."""

    offset: int
    view: np.ndarray
    fd: int
    position: int
    length: int


@dataclass(frozen=True, slots=True)
class RecordSlice:
    """Whole records from one segment and their data lengths (for the getm extension).

    ``lengths`` is empty when the first record alone is larger than ``max_bytes``;
    ``first_record_bytes`` then says how large it is."""

    offset: int
    view: np.ndarray
    fd: int
    position: int
    length: int
    lengths: np.ndarray
    first_record_bytes: int


class NotRecordBoundaryError(InvalidArgumentError):
    """An offset inside a record (getm needs record starts); ``record_offset`` is its start."""

    def __init__(self, offset: int, record_offset: int):
        super().__init__(f"offset {offset} is inside the record starting at {record_offset}")
        self.offset = offset
        self.record_offset = record_offset
