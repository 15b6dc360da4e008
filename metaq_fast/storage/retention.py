"""Retention: MetaQ's ``delete`` and ``archive`` policies over a partition's closed segments.

Imports: stdlib, metaq_fast.storage.log / files.

A segment may go when it is not the active one and its file was last modified more than the
policy's retention ago (strictly, as MetaQ). Unlike MetaQ, only the oldest segments go, in
order: removing one from the middle would leave a gap that MetaQ (and we) refuse at start-up.
``delete`` removes the file; ``archive`` renames it to ``<name>.arc``, or zips it to
``<name>.zip`` (one entry named like the file) when the policy asks for compression. Sidecar
files go with their segment. The schedule (``deleteWhen``, a Quartz cron) is the broker's job.
"""

from __future__ import annotations

import logging
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import files
from .log import PartitionLog

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """``deletePolicy`` of server.ini: ``delete,N`` or ``archive,N[,true]``."""

    name: str  # "delete" or "archive"
    retention_ms: int
    compress: bool = False


@dataclass(frozen=True, slots=True)
class RetentionAction:
    start_offset: int
    path: Path
    action: str  # "deleted", "archived", "zipped"


def expired(path: Path, retention_ms: int, now_s: float) -> bool:
    return (now_s - path.stat().st_mtime) * 1000.0 > retention_ms


def apply_retention(partition_log: PartitionLog, policy: RetentionPolicy,
                    now_s: float | None = None) -> list[RetentionAction]:
    """Remove (or archive) the expired oldest closed segments of one partition."""
    return [dispose(partition_log.directory, start, path, policy)
            for start, path in expire(partition_log, policy, now_s)]


def expire(partition_log: PartitionLog, policy: RetentionPolicy,
           now_s: float | None = None) -> list[tuple[int, Path]]:
    """Take the expired oldest closed segments out of the log (fast: no file is touched but
    their sidecars); returns (start offset, data file) of each, for ``dispose``. Call on the
    thread that appends to the log."""
    now_s = time.time() if now_s is None else now_s
    gone = []
    for start, path in partition_log.closed_segments():
        if not expired(path, policy.retention_ms, now_s):
            break
        partition_log.drop_oldest_segment()
        gone.append((start, path))
    return gone


def dispose(directory: Path, start: int, path: Path, policy: RetentionPolicy) -> RetentionAction:
    """Delete or archive the data file of a segment ``expire`` took out (may be slow: zip)."""
    action = RetentionAction(start, path, _dispose(path, policy))
    files.fsync_dir(directory)
    log.info("retention (%s) %s: %s", policy.name, action.action, path)
    return action


def _dispose(path: Path, policy: RetentionPolicy) -> str:
    if policy.name == "delete":
        path.unlink()
        return "deleted"
    if policy.compress:
        target = path.with_name(path.name + files.ZIP_SUFFIX)
        tmp = target.with_name(target.name + files.TMP_SUFFIX)
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.write(path, arcname=path.name)
        os.replace(tmp, target)
        path.unlink()
        return "zipped"
    os.replace(path, path.with_name(path.name + files.ARCHIVE_SUFFIX))
    return "archived"
