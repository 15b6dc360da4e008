"""What a partition's writer does when the disk fails it: the offline error, segment files that
are created whole or not at all, and undoing an append that failed half-way.

Imports: metaq_fast.errors and the storage helpers (files, mapped, segment) only.

A full disk must leave a log able to go on once space frees: nothing half-created on disk, no
descriptor left open per failed attempt, no index entry of a batch that was not stored. A failed
flush is another matter: it fails the log for good (``PartitionOfflineError``, see log.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import SERVICE_UNAVAILABLE, StorageError
from . import files
from .mapped import allocate, search
from .segment import Segment

SIDECAR_RESERVE_BYTES = 64 * 1024  # first blocks of each new sidecar table, reserved up front


class PartitionOfflineError(StorageError):
    """The partition's log failed to flush (or seal) and takes no more appends; ``reason`` says
    what failed. Retriable: another partition may take the message."""

    code = SERVICE_UNAVAILABLE
    retriable = True

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def create_segment(directory: Path, start_offset: int, capacity_bytes: int) -> Segment:
    """A new, empty writable segment. On failure nothing of it is left on disk (a later attempt
    must find the name free) and no descriptor stays open: the sidecars' first blocks are
    reserved before the segment opens its files, so a full disk fails here, before them."""
    sidecars = (files.index_file(directory, start_offset),
                files.checks_file(directory, start_offset),
                files.sums_file(directory, start_offset))
    data_path = files.data_file(directory, start_offset)
    if data_path.exists():
        raise StorageError(f"cannot start a segment at {start_offset}: {data_path} exists")
    try:
        for path in sidecars:
            _reserve_file(path, SIDECAR_RESERVE_BYTES)
        return Segment(directory, start_offset, writable=True, create=True,
                       capacity_bytes=capacity_bytes)
    except BaseException:
        for path in (data_path, *sidecars):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        raise


def _reserve_file(path: Path, nbytes: int) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        allocate(fd, 0, nbytes, path)
    finally:
        os.close(fd)


def drop_unfinished_entries(segment: Segment) -> None:
    """After an append that failed half-way (a sidecar that could not grow), forget the index
    entries it published at or past the segment's end: the next append reuses that room."""
    index = segment.index
    index.set_count(search(index.position_array(), segment.size))
