"""Checks of a segment's stored records, on bytes already in memory: which are whole and valid.

Imports: numpy, xxhash and metaq_fast.message only (``RecordIndex`` of storage/record_index.py
as a type). Sans-IO: every function takes the caller's buffer (a numpy array or anything
sliceable as bytes) and, where positions or id/flag checks help, an open ``RecordIndex``;
opening, mapping and cutting files stays in segment.py, which calls these for recovery, damage
location and scrubbing.

A record is valid when its header is whole and not zeroed space, its length fits, MetaQ's CRC of
its data matches, and (where the index has one for that position) the 32-bit check of its id and
flag matches (``message.header_checks``). A batch is valid when the xxh3-64 of its bytes matches
its ``.sum`` entry (``batch_hash``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import xxhash

from .. import message

if TYPE_CHECKING:  # only the type: the caller opened the index (record_index.py maps files)
    from .record_index import RecordIndex

# Recovery's warnings are the segment's (logged under its name, as before this module existed).
log = logging.getLogger("metaq_fast.storage.segment")

HEADER = message.HEADER_BYTES
ZERO_HEADER = bytes(HEADER)

batch_hash = xxhash.xxh3_64_intdigest  # of a batch's bytes, as the .sum table stores it


def good_batch_prefix(data, sums: np.ndarray, file_end: int, index_count: int,
                      trusted_end: int) -> tuple[int, int, int, list[int]]:
    """The batches of ``sums`` (entries of the ``.sum`` table) that are sane and, past
    ``trusted_end``, match their hash, up to the first that is not: (batch count, their end, the
    record count at their end, the batches hashed here). Those ending by ``trusted_end`` are
    taken as they are (the recovery point vouches for them)."""
    good_batches, good_end, good_records = 0, 0, 0
    prev_end = prev_records = 0
    hashed = []
    for batch in range(len(sums)):
        end, end_record, digest = (int(x) for x in sums[batch])
        sane = prev_end < end <= file_end and prev_records < end_record <= index_count
        if not sane:
            break
        if end > trusted_end:
            if batch_hash(data[prev_end:end]) != digest:
                break
            hashed.append(batch)
        good_batches, good_end, good_records = batch + 1, end, end_record
        prev_end, prev_records = end, end_record
    return good_batches, good_end, good_records, hashed


# ---- record-by-record checks (recovery and damage location) -------------------------------


def _read_header(data, pos: int):
    length = int.from_bytes(bytes(data[pos : pos + 4]), "big", signed=True)
    crc = int.from_bytes(bytes(data[pos + 4 : pos + 8]), "big", signed=True)
    msg_id = int.from_bytes(bytes(data[pos + 8 : pos + 16]), "big", signed=True)
    flag = int.from_bytes(bytes(data[pos + 16 : pos + 20]), "big", signed=True)
    return length, crc, msg_id, flag


def record_problem(data, pos: int, end: int, expected_check: int | None) -> tuple[str | None, int]:
    """What is wrong with the record at ``pos`` (None if nothing) and its size."""
    if pos + HEADER > end:
        return "record header cut", 0
    if bytes(data[pos : pos + HEADER]) == ZERO_HEADER:
        return "end of data (zeroed space)", 0
    length, crc, msg_id, flag = _read_header(data, pos)
    if length < 0:
        return f"negative length {length}", 0
    size = HEADER + length
    if pos + size > end:
        return f"record of {size} bytes cut at {end - pos}", 0
    if message.crc32(data[pos + HEADER : pos + size]) != crc:
        return "checksum failure", size
    if expected_check is not None:
        check = int(message.header_checks(np.array([msg_id], dtype=np.int64), flag)[0])
        if check != expected_check:
            return "id or flag damaged", size
    return None, size


def _indexed_check(index: RecordIndex | None, record: int, pos: int) -> int | None:
    if index is None or record >= index.count or index.position(record) != pos:
        return None
    return index.check(record)


def check_records(data, start: int, end: int, index: RecordIndex | None,
                  first_record: int) -> list[tuple[int, str]]:
    """Every damaged record of ``data[start:end]``. Positions come from the index when it
    agrees with the data, so one damaged record does not hide the ones after it."""
    found = []
    positions = None
    if index is not None and index.count > first_record:
        candidate = index.position_array()[first_record:].astype(np.int64)
        candidate = candidate[(candidate >= start) & (candidate < end)]
        if len(candidate) and int(candidate[0]) == start:
            positions = candidate
    if positions is None:
        positions, _ = message.scan_positions(data, start, end)
    for i, pos in enumerate(positions.tolist()):
        next_pos = int(positions[i + 1]) if i + 1 < len(positions) else end
        problem, size = record_problem(data, pos, end, _indexed_check(index, first_record + i, pos))
        if problem is None and pos + size != next_pos:
            problem = f"length field says {size - HEADER} bytes, next record is at {next_pos}"
        if problem is not None:
            found.append((pos, problem))
    return found


def scan_valid_records(data, start: int, end: int, index: RecordIndex | None, first_record: int):
    """Records that are whole and valid from ``start`` on, stopping at the first bad one:
    (positions, checks, end of the last good record), or an empty tuple if none."""
    positions, checks = [], []
    pos, record = start, first_record
    while True:
        expected = _indexed_check(index, record, pos)
        problem, size = record_problem(data, pos, end, expected)
        if problem is not None:
            if pos < end and problem != "end of data (zeroed space)":
                log.warning("recovery stops at position %d: %s", pos, problem)
            break
        length, _crc, msg_id, flag = _read_header(data, pos)
        positions.append(pos)
        checks.append(int(message.header_checks(np.array([msg_id], dtype=np.int64), flag)[0]))
        pos += size
        record += 1
    if not positions:
        return ()
    return np.array(positions, dtype=np.uint32), np.array(checks, dtype=np.uint32), pos


def last_nonzero(data, start: int, stop: int) -> int:
    """Index of the last non-zero byte of ``data[start:stop]``, or -1."""
    step = 8 << 20
    pos = stop
    while pos > start:
        lo = max(start, pos - step)
        nz = np.flatnonzero(np.asarray(data[lo:pos]))
        if len(nz):
            return lo + int(nz[-1])
        pos = lo
    return -1
