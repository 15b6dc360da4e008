"""Names and places of a partition's files; the only module that builds storage paths.

Imports: stdlib and metaq_fast.errors / names only.

Layout under ``dataPath`` (MetaQ's, plus our sidecars which MetaQ ignores)::

    <dataPath>/<topic>-<partition>/
        00000000000000000000.meta     records, byte for byte as MetaQ stores them
        00000000000000000000.idx      our record index: positions (rebuildable cache)
        00000000000000000000.chk      our record index: id/flag checks (rebuildable cache)
        00000000000000000000.sum      our batch checksums (rebuildable cache)
        partition.state               visible end and recovery point, shared by processes
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import InvalidArgumentError, InvalidNameError, SegmentGapError
from ..names import validate_topic_name

log = logging.getLogger(__name__)

DATA_SUFFIX = ".meta"
INDEX_SUFFIX = ".idx"
CHECKS_SUFFIX = ".chk"
SUMS_SUFFIX = ".sum"
TMP_SUFFIX = ".tmp"
ARCHIVE_SUFFIX = ".arc"
ZIP_SUFFIX = ".zip"
STATE_NAME = "partition.state"
OFFSET_DIGITS = 20


def segment_stem(start_offset: int) -> str:
    """``00000000000001073741824``: a segment's start offset, 20 digits, as MetaQ names it."""
    if start_offset < 0:
        raise InvalidArgumentError(f"negative segment start offset {start_offset}")
    return f"{start_offset:0{OFFSET_DIGITS}d}"


def data_file(directory: Path, start_offset: int) -> Path:
    return directory / (segment_stem(start_offset) + DATA_SUFFIX)


def index_file(directory: Path, start_offset: int) -> Path:
    return directory / (segment_stem(start_offset) + INDEX_SUFFIX)


def checks_file(directory: Path, start_offset: int) -> Path:
    return directory / (segment_stem(start_offset) + CHECKS_SUFFIX)


def sums_file(directory: Path, start_offset: int) -> Path:
    return directory / (segment_stem(start_offset) + SUMS_SUFFIX)


def parse_data_file_name(name: str) -> int | None:
    """Start offset of a ``<digits>.meta`` file name, or None for any other name."""
    if not name.endswith(DATA_SUFFIX):
        return None
    stem = name[: -len(DATA_SUFFIX)]
    if not stem.isdigit() or not stem.isascii():
        return None
    return int(stem)


def list_segment_starts(directory: Path) -> list[int]:
    """Start offsets of the data files in a partition directory, ascending."""
    starts = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for name in names:
        start = parse_data_file_name(name)
        if start is not None:
            starts.append(start)
    starts.sort()
    return starts


def partition_dir_name(topic: str, partition: int) -> str:
    validate_topic_name(topic)
    if not isinstance(partition, int) or partition < 0:
        raise InvalidArgumentError(f"partition must be a non-negative integer, got {partition!r}")
    return f"{topic}-{partition}"


def partition_dir(data_path: Path | str, topic: str, partition: int) -> Path:
    """``<dataPath>/<topic>-<partition>``; refuses any name that could leave ``dataPath``."""
    root = Path(data_path).resolve()
    path = (root / partition_dir_name(topic, partition)).resolve()
    if path.parent != root:
        raise InvalidNameError(f"topic {topic!r} does not name a directory inside {root}")
    return path


def parse_partition_dir_name(name: str) -> tuple[str, int] | None:
    """(topic, partition) of a ``<topic>-<partition>`` directory name, split at the last ``-``
    as MetaQ does (topics may contain ``-``); None when the name is not one."""
    topic, sep, number = name.rpartition("-")
    if not sep or not topic or not number.isdigit() or not number.isascii():
        return None
    try:
        validate_topic_name(topic)
    except InvalidNameError:
        return None
    return topic, int(number)


def fsync_dir(directory: Path) -> None:
    """Make a created, renamed or deleted name in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_contiguous(directory: Path, starts: list[int]) -> None:
    """Segments must touch (MetaQ refuses to start otherwise). A segment longer than the gap to
    the next is the remains of an interrupted roll and is cut back."""
    for start, next_start in zip(starts, starts[1:]):
        path = data_file(directory, start)
        size = path.stat().st_size
        expected = next_start - start
        if size > expected:
            log.warning("%s is %d bytes, %d expected before the next segment: cutting the "
                        "remains of an interrupted roll", path, size, expected)
            os.truncate(path, expected)
        elif size < expected:
            raise SegmentGapError(
                f"The following segments don't validate: {path}, "
                f"{data_file(directory, next_start)} ({size} bytes, {expected} expected)"
            )
