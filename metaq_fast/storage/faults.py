"""What a partition's writer does when the disk fails it: the offline error, segment files that
are created whole or not at all, and undoing an append that failed half-way.

Imports: stdlib (logging), metaq_fast.errors and the storage helpers (files, mapped, segment).

A full disk must leave a log able to go on once space frees: nothing half-created on disk, no
descriptor left open per failed attempt, no index entry of a batch that was not stored. A failed
flush is another matter: it fails the log for good (``PartitionOfflineError``, see log.py),
and the next open deals with what lay after the last good flush (``recover_after_failed_flush``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import SERVICE_UNAVAILABLE, StorageError
from . import files
from .mapped import allocate, search
from .segment import Segment

log = logging.getLogger(__name__)

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


def release_without_seal(segments) -> None:
    """Close a failed log's segments without flushing or cutting them (no flush may succeed
    after a failed one: the recovery point stays at the last good flush)."""
    for segment in segments:
        if segment is not None:
            segment.closed_for_append = True  # close() then skips the seal
            segment.close()


def recover_after_failed_flush(segment: Segment, trusted: int | None, group_commit: bool) -> int:
    """The last run of this log failed a flush (partition.state says so, and in which mode),
    and Linux may have kept the pages it could not write in its cache, clean, as if written.
    What passed recovery after the recovery point (``trusted`` bytes into the last segment, which
    holds it; None when the recovery point is unknown or before the segment) is therefore either
    dropped, for a failure in group commit (no put there was acknowledged: its waiters got 500,
    so a retry by the producer must not find a copy), or written again through the mapping so
    that the open's flush really writes it (acknowledged puts of ``unflushThreshold > 0``, or
    a tail whose start is unknown). Returns the bytes dropped."""
    start = 0 if trusted is None else trusted
    tail = segment.size - start
    if tail <= 0:
        return 0
    if group_commit and trusted is not None:
        segment.cut_back(trusted)
        log.warning("%s: a flush failed in the last run; dropped the %d bytes after its recovery "
                    "point (never acknowledged)", segment.path, tail)
        return tail
    segment.rewrite(start, segment.size)
    log.warning("%s: a flush failed in the last run; writing the %d bytes after %s again",
                segment.path, tail, "its recovery point" if trusted is not None else "its start")
    return 0
